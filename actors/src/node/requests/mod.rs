//! Request handling on a node: reads (the `readers` queue group while this node serves
//! as a follower, and `P.node.<id>.read` always), writes, and fills from followers. The
//! requests of a subscription run concurrently in its one task; the query engine runs there
//! too, looking up the cache one batch per level. Client requests are dropped only while the node is isolated
//! from clients; fills (peer traffic) while it is unplugged from its peers.
//!
//! This module holds the subscription plumbing every path shares: the intakes, the
//! in-flight bound, replies (signed for peers), the `readers` queue group and the cache
//! actor call. The paths themselves:
//!
//! - [`read`]: reads — lease and consistency checks, the query engine, ranges past the
//!   cached window and reads forwarded to the leader.
//! - [`write`]: writes, run by the leader's store actor, and other shards' intents
//!   (`P.shard.<k>.node.<id>.intent`, peers only), run the same way.
//! - [`fill`]: followers' cache fills, served by the leader.

mod fill;
mod read;
mod write;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use instaface_bus::codec::DecodeLog;
use instaface_bus::graph::{
    CacheKey, CacheValue, ErrorBody, ErrorCode, FillReply, FillRequest, ReadBatch, ReadRequest, ReadResult, Reply,
    WriteOutcome, WriteRequest,
};
use instaface_bus::intents::IntentDelivery;
use instaface_bus::messages::Role;
use instaface_bus::subjects::READERS_GROUP;
use instaface_bus::Incoming;
use serde::{de::DeserializeOwned, Serialize};
use tokio::task::JoinHandle;

use super::net::Audience;
use super::NodeContext;
use instaface_bus::shards::ShardId;

pub use fill::fill;
pub use read::{read, read_batch};
pub use write::{apply_intent, write};

/// How long a request may wait on the store actor or the leader.
pub(super) const CACHE_TIMEOUT: Duration = Duration::from_secs(4);

pub(super) fn err(code: ErrorCode, msg: impl Into<String>) -> ErrorBody {
    ErrorBody::new(code, msg)
}

/// Starts the request intakes: `P.node.<id>.{read,write,fill}` (and `intent` with several
/// shards) and the `readers` queue
/// group on `P.graph.read`, joined only while this node holds a read lease as a follower.
pub async fn start(ctx: &NodeContext) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let s = ctx.net.subjects().clone();
    let me = ctx.cfg.id.clone();
    let mut tasks = Vec::new();
    tasks.push(
        serve::<ReadRequest, ReadResult, _, _>(
            ctx,
            s.read_at(&me),
            Audience::Clients,
            ErrorCode::Unavailable,
            |ctx, req| async move { read(&ctx, req).await },
        )
        .await?,
    );
    tasks.push(
        serve::<WriteRequest, WriteOutcome, _, _>(
            ctx,
            s.write(&me),
            Audience::Clients,
            // A shed write did not run: `NotLeader` tells a client to retry it
            // (`Unavailable` would read as "outcome unknown").
            ErrorCode::NotLeader,
            |ctx, req| async move { write(&ctx, req).await },
        )
        .await?,
    );
    if ctx.cfg.bus.shards.split() {
        tasks.push(
            serve::<IntentDelivery, WriteOutcome, _, _>(
                ctx,
                s.intent(&me),
                Audience::Peers,
                ErrorCode::NotLeader,
                |ctx, delivery| async move { apply_intent(&ctx, delivery).await },
            )
            .await?,
        );
    }
    tasks.push(
        serve::<FillRequest, FillReply, _, _>(
            ctx,
            s.fill(&me),
            Audience::Peers,
            ErrorCode::Unavailable,
            |ctx, req| async move { fill(&ctx, req).await },
        )
        .await?,
    );
    tasks.push(spawn_readers_group(ctx));
    Ok(tasks)
}

/// Subscribes to `subject` and answers each request in a task with `handler`'s [`Reply`];
/// requests are dropped while the node is cut off from their `audience`, and answered
/// `shed` (they did not run) past the in-flight bound.
async fn serve<Req, Res, F, Fut>(
    ctx: &NodeContext,
    subject: String,
    audience: Audience,
    shed: ErrorCode,
    handler: F,
) -> anyhow::Result<JoinHandle<()>>
where
    Req: DeserializeOwned + Weighed + Send + 'static,
    Res: Serialize + Send + Sync + 'static,
    F: Fn(Arc<NodeContext>, Req) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = Result<Res, ErrorBody>> + Send + 'static,
{
    // Peers' requests (fills) must carry the cluster key's MAC, and get signed replies.
    let sub = match audience {
        Audience::Peers => ctx.net.bus().subscribe_signed::<Req>(subject).await?,
        Audience::Clients => ctx.net.bus().subscribe::<Req>(subject).await?,
    };
    Ok(tokio::spawn(answer_all(ctx.clone(), sub, audience, shed, handler, None)))
}

/// Answers each request of `sub` with `handler`, until the subscription ends or `stop`
/// fires (or its sender is dropped): then it unsubscribes, answers what was delivered
/// already and finishes the requests it took.
/// The handlers run concurrently inside this one task (no task spawned per request: on a
/// small machine the hand-over to another thread costs more than the cache lookup).
async fn answer_all<Req, Res, F, Fut>(
    ctx: NodeContext,
    mut sub: instaface_bus::client::Subscription<Req>,
    audience: Audience,
    shed: ErrorCode,
    handler: F,
    mut stop: Option<tokio::sync::oneshot::Receiver<()>>,
) where
    Req: DeserializeOwned + Weighed + Send + 'static,
    Res: Serialize + Send + Sync + 'static,
    F: Fn(Arc<NodeContext>, Req) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = Result<Res, ErrorBody>> + Send + 'static,
{
    // Shared by the requests: a context clone per request costs more than a cache hit.
    let ctx = Arc::new(ctx);
    let mut decode_log = DecodeLog::default();
    let mut running = futures::stream::FuturesUnordered::new();
    loop {
        let stopped = async {
            match stop.as_mut() {
                Some(stop) => {
                    let _ = stop.await;
                }
                None => std::future::pending().await,
            }
        };
        let next = tokio::select! {
            biased;
            () = stopped => None,
            Some(()) = running.next(), if !running.is_empty() => continue,
            incoming = sub.next() => Some(incoming),
        };
        let Some(incoming) = next else {
            // Stopped: no new request comes; those already delivered here are still
            // answered (a read refused at once when the lease is gone), and then the
            // subscription's stream ends.
            sub.unsubscribe().await;
            stop = None;
            continue;
        };
        let Some(Incoming { subject, reply, payload, forged }) = incoming else { break };
        if forged {
            ctx.net.rejected("unauthenticated", &subject);
            continue;
        }
        if ctx.net.cut_from(audience) {
            ctx.net.dropped("unplugged_in");
            continue;
        }
        let Some(reply) = reply else { continue };
        match payload {
            Ok(req) => {
                // At most `MAX_INFLIGHT_REQUESTS` handled at once (a batch counts each of
                // its reads): past that, shed with a clear error (the client tries another
                // node) instead of piling up work.
                let Ok(permit) = ctx.inflight.clone().try_acquire_many_owned(req.weight()) else {
                    ctx.net.dropped("overloaded");
                    let answer: Reply<()> = Reply::Error(err(
                        shed,
                        format!("{} is overloaded; retry shortly (the request did not run)", ctx.cfg.id),
                    ));
                    let _ = reply_to(&ctx, audience, reply, &answer).await;
                    continue;
                };
                let (ctx, handler) = (ctx.clone(), handler.clone());
                running.push(async move {
                    // A handler that panics fails its own request, not the intake.
                    let handled = std::panic::AssertUnwindSafe(handler(ctx.clone(), req)).catch_unwind().await;
                    let answer: Reply<Res> = match handled {
                        Ok(result) => result.into(),
                        Err(_) => Reply::Error(err(ErrorCode::Internal, "the request failed inside the node")),
                    };
                    drop(permit);
                    if let Err(e) = reply_to(&ctx, audience, reply.clone(), &answer).await {
                        // Most likely an answer larger than the server takes in one
                        // message: say so rather than leave the asker to time out (not
                        // `Unavailable`: asking again elsewhere would not help).
                        tracing::debug!(error = %e, "reply not sent");
                        let failed: Reply<()> = Reply::Error(err(ErrorCode::Internal, format!("no answer: {e}")));
                        let _ = reply_to(&ctx, audience, reply, &failed).await;
                    }
                });
            }
            Err(e) => {
                ctx.net.dropped("undecodable");
                decode_log.record(&subject, &e);
                let answer: Reply<()> = Reply::Error(err(ErrorCode::Invalid, e.to_string()));
                let _ = reply_to(&ctx, audience, reply, &answer).await;
            }
        }
    }
    // The stream ended (unsubscribed or closed): the requests taken are answered.
    while running.next().await.is_some() {}
}

/// Serves a read asked in this process (the node's own gateway, [`crate::node::gateway`])
/// under the rules a client's read from NATS gets in [`answer_all`]: nothing while the node
/// is isolated from clients, one of the in-flight permits (past the bound: "overloaded",
/// and the asker goes elsewhere), a panic failing this read only. `Unavailable` or
/// `NotLeader`: not here, ask another node.
pub(crate) async fn read_here(ctx: &NodeContext, req: ReadRequest) -> Result<ReadResult, ErrorBody> {
    if ctx.net.cut_from(Audience::Clients) {
        return Err(err(ErrorCode::Unavailable, format!("{} is isolated from clients", ctx.cfg.id)));
    }
    let Ok(_permit) = ctx.inflight.clone().try_acquire_many_owned(req.weight()) else {
        ctx.net.dropped("overloaded");
        return Err(err(ErrorCode::Unavailable, format!("{} is overloaded", ctx.cfg.id)));
    };
    std::panic::AssertUnwindSafe(read::read(ctx, req))
        .catch_unwind()
        .await
        .unwrap_or_else(|_| Err(err(ErrorCode::Internal, "the read failed inside the node")))
}

/// How many of the in-flight permits a request takes: one per read it carries.
trait Weighed {
    fn weight(&self) -> u32 {
        1
    }
}

impl Weighed for ReadRequest {}
impl Weighed for WriteRequest {}
impl Weighed for FillRequest {}
impl Weighed for IntentDelivery {}
impl Weighed for ReadBatch {
    fn weight(&self) -> u32 {
        // A batch past the bound is refused by its handler: it costs one.
        self.reads.len().clamp(1, instaface_bus::graph::MAX_READS_PER_BATCH) as u32
    }
}

/// Answers a request: signed for a peer, plain for a client.
async fn reply_to<T: Serialize>(
    ctx: &NodeContext,
    audience: Audience,
    reply: String,
    answer: &T,
) -> Result<(), instaface_bus::BusError> {
    match audience {
        Audience::Peers => ctx.net.bus().publish_signed(reply, answer).await,
        Audience::Clients => ctx.net.bus().publish(reply, answer).await,
    }
}

/// Joins the `readers` queue group while this node is a follower that may serve (it
/// holds a read lease) and clients reach it, and leaves it as soon as that ends.
fn spawn_readers_group(ctx: &NodeContext) -> JoinHandle<()> {
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let mut view_rx = ctx.view.subscribe();
        // The readers' tasks, and what stops them (dropped: they unsubscribe and finish
        // the reads they took).
        let mut serving: Vec<(JoinHandle<()>, tokio::sync::oneshot::Sender<()>)> = Vec::new();
        loop {
            let (should, until) = {
                let view = view_rx.borrow_and_update();
                let should = view.role == Role::Follower && view.lease_holds(Instant::now()) && !ctx.net.clients_cut();
                (should, view.lease_until)
            };
            match (should, serving.is_empty()) {
                (true, true) => match join_readers(&ctx).await {
                    Ok(tasks) => {
                        tracing::info!("read lease held: joined the readers group");
                        serving = tasks;
                    }
                    Err(e) => tracing::warn!(error = %e, "could not join the readers group"),
                },
                (false, false) => {
                    // Dropping the stops unsubscribes; the reads taken are still answered.
                    serving.clear();
                    tracing::info!("no read lease: left the readers group");
                }
                _ => {}
            }
            // Re-check when the view changes, when the lease runs out (it lapses without a
            // view change), or soon (the isolation switch has no notification).
            let now = Instant::now();
            let wake = until
                .filter(|u| *u > now)
                .map_or(Duration::from_millis(25), |u| (u - now).min(Duration::from_millis(25)));
            let _ = tokio::time::timeout(wake, view_rx.changed()).await;
        }
    })
}

/// Queue-subscribes to reads alone (`P.graph.read`) and in batches (`P.graph.reads`) in
/// the `readers` group, and answers them.
async fn join_readers(
    ctx: &NodeContext,
) -> Result<Vec<(JoinHandle<()>, tokio::sync::oneshot::Sender<()>)>, instaface_bus::BusError> {
    let subjects = ctx.net.subjects();
    let bus = ctx.net.bus();
    let alone = bus.queue_subscribe::<ReadRequest>(subjects.graph_read(), READERS_GROUP).await?;
    let batches = bus.queue_subscribe::<ReadBatch>(subjects.graph_reads(), READERS_GROUP).await?;
    let (stop_alone, stopped_alone) = tokio::sync::oneshot::channel();
    let (stop_batches, stopped_batches) = tokio::sync::oneshot::channel();
    Ok(vec![
        (
            tokio::spawn(answer_all(
                ctx.clone(),
                alone,
                Audience::Clients,
                ErrorCode::Unavailable,
                |ctx, req| async move { read(&ctx, req).await },
                Some(stopped_alone),
            )),
            stop_alone,
        ),
        (
            tokio::spawn(answer_all(
                ctx.clone(),
                batches,
                Audience::Clients,
                ErrorCode::Unavailable,
                |ctx, req| async move { read_batch(&ctx, req).await },
                Some(stopped_batches),
            )),
            stop_batches,
        ),
    ])
}

/// Values for `keys` from this group's cache (which fills misses).
pub(super) async fn cache_get(
    ctx: &NodeContext,
    keys: Vec<CacheKey>,
) -> Result<Vec<(CacheKey, CacheValue)>, ErrorBody> {
    ctx.cache().get(keys).await
}

/// Values for `keys` that may belong to any shard (a query's later levels, which follow
/// associations across shards): each shard's from that shard's group's cache on this
/// node — which serves only under its own group's read lease, as this one does — all
/// shards at once, in the order the shards' parts come back.
pub(super) async fn cache_get_across(
    ctx: &NodeContext,
    keys: Vec<CacheKey>,
) -> Result<Vec<(CacheKey, CacheValue)>, ErrorBody> {
    let shards = ctx.cfg.bus.shards;
    if !shards.split() {
        return cache_get(ctx, keys).await;
    }
    let mut parts: std::collections::BTreeMap<ShardId, Vec<CacheKey>> = Default::default();
    for key in keys {
        let id = match &key {
            CacheKey::Entity(id) | CacheKey::Assocs { from: id, .. } => *id,
        };
        // An id of no shard is looked up here (and found nowhere).
        parts.entry(shards.of(id).unwrap_or(ctx.cfg.shard)).or_default().push(key);
    }
    let calls = parts.into_iter().map(|(k, keys)| async move {
        let cache =
            ctx.caches.get(k as usize).ok_or_else(|| err(ErrorCode::Internal, format!("no cache of shard {k}")))?;
        cache.get(keys).await
    });
    let mut values = Vec::new();
    for part in futures::future::join_all(calls).await {
        values.extend(part?);
    }
    Ok(values)
}
