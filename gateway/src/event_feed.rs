//! The one subscription to `P.events`: each event is decoded once, applied to the
//! [`ClusterState`], turned into JSON with the same fields (`type`, `node`, `term`, `ts`, …)
//! and sent on a `broadcast` channel that every websocket (see `routes::events`) reads.
//!
//! An event of a kind this gateway does not know is still relayed: it is decoded as a
//! generic value first, and only then, where it can be, as a typed [`Event`].

use axum::extract::ws::Utf8Bytes;
use futures::StreamExt;
use instaface_bus::client::Subscription;
use instaface_bus::codec::DecodeLog;
use instaface_bus::messages::Event;
use instaface_bus::{Bus, BusError};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::cluster_state::ClusterState;
use crate::metrics::Metrics;

/// Subscribes to `P.events` (so nothing published after this returns is missed).
pub async fn subscribe(bus: &Bus) -> Result<Subscription<serde_json::Value>, BusError> {
    bus.subscribe::<serde_json::Value>(bus.subjects().events()).await
}

/// Relays every event to `cluster` and `feed` until the subscription ends.
pub fn spawn_relay(
    mut events: Subscription<serde_json::Value>,
    cluster: ClusterState,
    feed: broadcast::Sender<Utf8Bytes>,
    metrics: Metrics,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut decode_log = DecodeLog::default();
        while let Some(msg) = events.next().await {
            let value = match msg.payload {
                Ok(v) if v.is_object() => v,
                Ok(_) => {
                    metrics.events_undecodable.inc();
                    continue;
                }
                Err(e) => {
                    metrics.events_undecodable.inc();
                    decode_log.record(&msg.subject, &e);
                    continue;
                }
            };
            if let Ok(event) = serde_json::from_value::<Event>(value.clone()) {
                cluster.observe_event(&event);
            }
            metrics.events_relayed.inc();
            // No receivers is fine: nobody is watching.
            let _ = feed.send(Utf8Bytes::from(value.to_string()));
        }
        tracing::warn!("the P.events subscription ended");
    })
}
