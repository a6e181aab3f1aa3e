//! [`AppState`]: what every handler shares — the graph client, the cluster view, the event
//! feed, the metrics and the configuration — and the background tasks that keep the view and
//! the feed running for as long as the state lives.

use std::ops::Deref;
use std::sync::{Arc, Mutex};

use axum::extract::ws::Utf8Bytes;
use instaface_bus::graph_client::{ClientConfig, GraphClient};
use instaface_bus::{Bus, BusError};
use tokio::sync::{broadcast, Semaphore};
use tokio::task::JoinHandle;

use crate::cluster_state::{self, ClusterState};
use crate::config::GatewayConfig;
use crate::event_feed;
use crate::metrics::Metrics;

/// The handlers' shared state. Cheap to clone; the background tasks stop with the last clone.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub client: GraphClient,
    pub cluster: ClusterState,
    /// Every event from `P.events`, as JSON text.
    pub events: broadcast::Sender<Utf8Bytes>,
    pub metrics: Metrics,
    pub config: GatewayConfig,
    /// One permit per open `/api/events` websocket (`max_ws_clients` in all).
    pub ws_slots: Arc<Semaphore>,
    /// `/api/openapi.json`, built once (it states this gateway's body limit and shards).
    pub openapi: axum::body::Bytes,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Ok(tasks) = self.tasks.lock() {
            for t in tasks.iter() {
                t.abort();
            }
        }
    }
}

impl AppState {
    /// Starts the gateway's view of the cluster on `bus`: the graph client, the one
    /// `P.events` subscription, the first membership read (bounded) and the membership
    /// reader, and the status poller.
    pub async fn start(bus: Bus, client_config: ClientConfig, config: GatewayConfig) -> Result<AppState, BusError> {
        let client = GraphClient::new(bus.clone(), client_config).await?;
        let cluster = ClusterState::new();
        let metrics = Metrics::new();
        let (events, _) = broadcast::channel(config.ws_buffer.max(1));

        let subscription = event_feed::subscribe(&bus).await?;
        let relay = event_feed::spawn_relay(subscription, cluster.clone(), events.clone(), metrics.clone());

        // Read the membership once before serving, so the view and the unplug route know the
        // members from the first request on; the reader keeps trying if Redis is not there
        // yet, and re-reads it from then on.
        let mut tasks = vec![relay];
        if let Some(url) = &config.redis_url {
            let mut membership = None;
            cluster_state::refresh_members(&cluster, &mut membership, url, bus.subjects(), cluster_state::READ_TIMEOUT)
                .await;
            tasks.push(cluster_state::spawn_membership_reader(
                cluster.clone(),
                bus.subjects().clone(),
                url.clone(),
                membership,
                config.membership_poll,
                config.membership_backoff_max,
            ));
        }
        // The node view is of each node's member of shard 0's leader group: its status
        // endpoint is under that group's subjects (the graph client's bus).
        tasks.push(cluster_state::spawn_poller(
            cluster.clone(),
            client.bus().clone(),
            config.cluster_poll,
            config.status_timeout,
        ));
        let ws_slots = Arc::new(Semaphore::new(config.max_ws_clients.clamp(1, Semaphore::MAX_PERMITS)));

        let openapi = crate::openapi::document_json_for(config.body_limit, client.shards());
        let openapi = axum::body::Bytes::from(openapi.to_string());
        Ok(AppState(Arc::new(Shared {
            client,
            cluster,
            events,
            metrics,
            config,
            ws_slots,
            openapi,
            tasks: Mutex::new(tasks),
        })))
    }
}
