//! The node's NATS micro service registration (`instaface-node`), so `$SRV.PING`, `INFO`
//! and `STATS` answer for every node, with one endpoint: `P.node.<id>.status`, answering a
//! MessagePack [`NodeStatus`].
//!
//! Endpoints of a micro service join a queue group by default; this one is addressed to one
//! node, so that is harmless. Heartbeats and votes, which must reach every node, use plain
//! subscriptions in [`super::intake`] instead.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_nats::service::ServiceExt;
use futures::StreamExt;
use instaface_bus::encode;
use instaface_bus::messages::{CacheCounters, NodeStatus};
use tokio::task::JoinHandle;

use super::NodeContext;

/// The latest cache counters, written by the cache actor (every second), read by the status endpoint.
pub type SharedCounters = Arc<Mutex<CacheCounters>>;

/// This node's status right now.
pub fn status(ctx: &NodeContext, counters: &SharedCounters) -> NodeStatus {
    let view = ctx.view.borrow().clone();
    let now = Instant::now();
    NodeStatus {
        node: ctx.cfg.id.clone(),
        role: view.role,
        term: view.term,
        leader: view.leader.clone(),
        members: view.members.clone(),
        unplugged: ctx.net.unplugged(),
        clients_unplugged: ctx.net.clients_cut(),
        serving: view.lease_holds(now) && !ctx.net.clients_cut(),
        applied_seq: ctx.applied_seq(),
        lease_ms: view.lease_until.map(|u| u.saturating_duration_since(now).as_millis() as u64).unwrap_or(0),
        cache: CacheCounters {
            hits: ctx.metrics.cache_hits.get(),
            misses: ctx.metrics.cache_misses.get(),
            fills: ctx.metrics.cache_fills.get(),
            entries: counters.lock().map(|c| c.entries).unwrap_or_default(),
        },
    }
}

/// Registers the micro service and serves its status endpoint.
pub async fn start(ctx: &NodeContext, counters: SharedCounters) -> anyhow::Result<JoinHandle<()>> {
    let metadata = HashMap::from([
        ("node".to_string(), ctx.cfg.id.clone()),
        ("prefix".to_string(), ctx.net.subjects().prefix().to_string()),
        ("shard".to_string(), ctx.cfg.shard.to_string()),
    ]);
    let service = ctx
        .net
        .bus()
        .raw()
        .service_builder()
        .description("Instaface graph node")
        .metadata(metadata)
        .start("instaface-node", env!("CARGO_PKG_VERSION"))
        .await
        .map_err(|e| anyhow::anyhow!("registering the NATS micro service: {e}"))?;
    let mut endpoint = service
        .endpoint(ctx.net.subjects().node(&ctx.cfg.id, "status"))
        .await
        .map_err(|e| anyhow::anyhow!("adding the status endpoint: {e}"))?;
    let ctx = ctx.clone();
    Ok(tokio::spawn(async move {
        let _service = service;
        while let Some(request) = endpoint.next().await {
            let body = encode(&status(&ctx, &counters));
            if let Err(e) = request.respond(Ok(body.into())).await {
                tracing::debug!(error = %e, "status reply not sent");
            }
        }
    }))
}
