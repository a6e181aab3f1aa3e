//! The REST gateway served inside a node (`GATEWAY_LISTEN`): the gateway crate's whole
//! router, on a NATS connection of its own, whose graph client asks this node's groups
//! first ([`NodeReads`]). A read this node may serve — it holds its group's read lease,
//! and for `strong` it leads, for `min_seq` it has applied that seq — is answered from
//! its own cache in the request's task, with no NATS hop; any other goes over the bus as
//! from a gateway process. Writes always go over the bus to the leader.
//!
//! Why this keeps "no stale read after an acknowledgement": the local read runs the same
//! function a read from NATS runs ([`super::requests::read::read`]), under the same lease
//! check and the same cache the protocol actor invalidates before it acks; a write is
//! acknowledged only once every lease-holding member (this one too) acked its
//! invalidation. Nothing is cached on the gateway's side.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::future::BoxFuture;
use instaface_bus::graph::{ErrorBody, ReadRequest, ReadResult};
use instaface_bus::graph_client::ClientConfig;
use instaface_bus::local_reads::{LocalReader, LocalReads};
use instaface_bus::shards::ShardId;
use instaface_bus::Bus;
use instaface_gateway::config::{self, GatewayConfig};
use instaface_gateway::AppState;
use prometheus::IntCounter;
use tokio::task::JoinHandle;

use super::config::InNodeGateway;
use super::NodeContext;

/// This node's groups, by shard, as the in-node gateway's local reader.
pub struct NodeReads {
    groups: Vec<Arc<Group>>,
}

/// One group and its `local_reads_total` counters, resolved once (not per read).
struct Group {
    ctx: NodeContext,
    served: IntCounter,
    elsewhere: IntCounter,
    error: IntCounter,
}

impl NodeReads {
    /// The reader over `groups`, one per shard in shard order (as `run` builds them).
    pub fn new(groups: &[NodeContext]) -> NodeReads {
        let group = |g: &NodeContext| {
            let count = |outcome| g.metrics.local_reads.with_label_values(&[outcome]);
            Arc::new(Group {
                ctx: g.clone(),
                served: count("served"),
                elsewhere: count("elsewhere"),
                error: count("error"),
            })
        };
        NodeReads { groups: groups.iter().map(group).collect() }
    }
}

impl LocalReads for NodeReads {
    fn read(&self, shard: ShardId, req: ReadRequest) -> Option<BoxFuture<'static, Result<ReadResult, ErrorBody>>> {
        let group = self.groups.get(shard as usize)?.clone();
        Some(Box::pin(async move {
            let Group { ctx, served, elsewhere, error } = &*group;
            let result = super::requests::read_here(ctx, req).await;
            match &result {
                Ok(_) => served.inc(),
                Err(e) if e.code.ask_elsewhere() => elsewhere.inc(),
                Err(_) => error.inc(),
            }
            result
        }))
    }
}

/// Binds the gateway's address (`GATEWAY_LISTEN`), before anything of the node starts, so
/// an address in use fails the start with one line naming the setting.
pub async fn bind(gw: &InNodeGateway) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(gw.listen).await.with_context(|| format!("GATEWAY_LISTEN {}", gw.listen))
}

/// Connects the gateway's own NATS client, starts its state and serves its router on
/// `listener` (from [`bind`]); the task serves until the process ends. Its settings are
/// the gateway process's defaults (leader wait and request timeout 5 s, body limit 1 MiB,
/// 256 websockets), with the node's `ADMIN_TOKEN` and Redis.
pub async fn start(
    gw: &InNodeGateway,
    listener: tokio::net::TcpListener,
    groups: &[NodeContext],
) -> anyhow::Result<JoinHandle<()>> {
    let node = groups.first().map(|g| g.id().to_string()).unwrap_or_default();
    let bus = Bus::connect(&gw.bus, &format!("instaface-node-{node}-gateway"))
        .await
        .context("connecting the in-node gateway to NATS")?;
    let client_config = ClientConfig {
        shards: gw.bus.shards,
        request_timeout: Duration::from_millis(config::DEFAULT_REQUEST_TIMEOUT_MS),
        deadline: Duration::from_millis(config::DEFAULT_LEADER_WAIT_MS),
        local: Some(LocalReader(Arc::new(NodeReads::new(groups)))),
        ..ClientConfig::default()
    };
    let config = GatewayConfig {
        admin_token: gw.admin_token.clone(),
        redis_url: Some(gw.bus.redis_url.clone()),
        ..GatewayConfig::default()
    };
    let state = AppState::start(bus, client_config, config).await.context("starting the in-node gateway")?;
    tracing::info!(addr = %listener.local_addr()?, "gateway listening in the node (local reads first)");
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, instaface_gateway::service(state)).await {
            tracing::error!(error = %e, "in-node gateway stopped");
        }
    }))
}
