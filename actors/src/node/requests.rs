//! Request handling on a node: reads (the `readers` queue group while this node serves
//! as a follower, and `P.node.<id>.read` always), writes, and fills from followers. Each
//! request runs in a task of its own; the query engine runs there too, asking the cache
//! actor one batch per level. Client requests are dropped only while the node is isolated
//! from clients; fills (peer traffic) while it is unplugged from its peers.

use std::time::{Duration, Instant};

use futures::StreamExt;
use instaface_bus::codec::DecodeLog;
use instaface_bus::graph::{
    CacheKey, CacheValue, Consistency, ErrorBody, ErrorCode, FillReply, FillRequest, ReadQuery,
    ReadRequest, ReadResult, Reply, WriteOutcome, WriteRequest,
};
use instaface_bus::messages::Role;
use instaface_bus::subjects::READERS_GROUP;
use instaface_bus::Incoming;
use serde::{de::DeserializeOwned, Serialize};
use tokio::task::JoinHandle;

use super::messages::{CacheMsg, StoreMsg};
use super::net::Audience;
use super::{lookup, NodeContext};
use crate::query::{timeline_plan, QueryError, QueryPlan};

/// How long a request may wait on the cache actor.
const CACHE_TIMEOUT: Duration = Duration::from_secs(4);

fn err(code: ErrorCode, msg: impl Into<String>) -> ErrorBody {
    ErrorBody::new(code, msg)
}

fn query_err(e: QueryError) -> ErrorBody {
    match e {
        QueryError::NotFound(id) => err(ErrorCode::NotFound, format!("no entity {id}")),
        other => err(ErrorCode::Invalid, other.to_string()),
    }
}

/// Starts the request intakes: `P.node.<id>.{read,write,fill}` and the `readers` queue
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
            |ctx, req| async move { read(&ctx, req).await },
        )
        .await?,
    );
    tasks.push(
        serve::<WriteRequest, WriteOutcome, _, _>(
            ctx,
            s.write(&me),
            Audience::Clients,
            |ctx, req| async move { write(&ctx, req).await },
        )
        .await?,
    );
    tasks.push(
        serve::<FillRequest, FillReply, _, _>(
            ctx,
            s.fill(&me),
            Audience::Peers,
            |ctx, req| async move { fill(&ctx, req).await },
        )
        .await?,
    );
    tasks.push(spawn_readers_group(ctx));
    Ok(tasks)
}

/// Subscribes to `subject` and answers each request in a task with `handler`'s [`Reply`];
/// requests are dropped while the node is cut off from their `audience`.
async fn serve<Req, Res, F, Fut>(
    ctx: &NodeContext,
    subject: String,
    audience: Audience,
    handler: F,
) -> anyhow::Result<JoinHandle<()>>
where
    Req: DeserializeOwned + Send + 'static,
    Res: Serialize + Send + Sync + 'static,
    F: Fn(NodeContext, Req) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = Result<Res, ErrorBody>> + Send + 'static,
{
    // Peers' requests (fills) must carry the cluster key's MAC, and get signed replies.
    let sub = match audience {
        Audience::Peers => ctx.net.bus().subscribe_signed::<Req>(subject).await?,
        Audience::Clients => ctx.net.bus().subscribe::<Req>(subject).await?,
    };
    Ok(tokio::spawn(answer_all(ctx.clone(), sub, audience, handler)))
}

async fn answer_all<Req, Res, F, Fut>(
    ctx: NodeContext,
    mut sub: instaface_bus::client::Subscription<Req>,
    audience: Audience,
    handler: F,
) where
    Req: DeserializeOwned + Send + 'static,
    Res: Serialize + Send + Sync + 'static,
    F: Fn(NodeContext, Req) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = Result<Res, ErrorBody>> + Send + 'static,
{
    let mut decode_log = DecodeLog::default();
    while let Some(Incoming {
        subject,
        reply,
        payload,
        forged,
    }) = sub.next().await
    {
        if forged {
            ctx.net.rejected("unauthenticated", &subject);
            continue;
        }
        if ctx.net.cut_from(audience) {
            ctx.net.dropped("unplugged_in");
            continue;
        }
        let Some(reply) = reply else { continue };
        let ctx = ctx.clone();
        match payload {
            Ok(req) => {
                // At most `MAX_INFLIGHT_REQUESTS` handled at once: past that, shed with a
                // clear error (the client tries another node) instead of piling up tasks.
                let Ok(permit) = ctx.inflight.clone().try_acquire_owned() else {
                    ctx.net.dropped("overloaded");
                    let answer: Reply<()> = Reply::Error(err(
                        ErrorCode::Unavailable,
                        format!("{} is overloaded; retry shortly", ctx.cfg.id),
                    ));
                    let _ = reply_to(&ctx, audience, reply, &answer).await;
                    continue;
                };
                let handler = handler.clone();
                tokio::spawn(async move {
                    let answer: Reply<Res> = handler(ctx.clone(), req).await.into();
                    drop(permit);
                    if let Err(e) = reply_to(&ctx, audience, reply, &answer).await {
                        tracing::debug!(error = %e, "reply not sent");
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
        let mut serving: Option<JoinHandle<()>> = None;
        loop {
            let (should, until) = {
                let view = view_rx.borrow_and_update();
                let should = view.role == Role::Follower
                    && view.lease_holds(Instant::now())
                    && !ctx.net.clients_cut();
                (should, view.lease_until)
            };
            match (should, serving.is_some()) {
                (true, false) => {
                    let subject = ctx.net.subjects().graph_read();
                    match ctx
                        .net
                        .bus()
                        .queue_subscribe::<ReadRequest>(subject, READERS_GROUP)
                        .await
                    {
                        Ok(sub) => {
                            tracing::info!("read lease held: joined the readers group");
                            let c = ctx.clone();
                            serving = Some(tokio::spawn(answer_all(
                                c,
                                sub,
                                Audience::Clients,
                                |ctx, req| async move { read(&ctx, req).await },
                            )));
                        }
                        Err(e) => tracing::warn!(error = %e, "could not join the readers group"),
                    }
                }
                (false, true) => {
                    if let Some(task) = serving.take() {
                        // Dropping the subscription (with its task) unsubscribes.
                        task.abort();
                        tracing::info!("no read lease: left the readers group");
                    }
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

/// Values for `keys` from the cache actor (which fills misses).
async fn cache_get(
    ctx: &NodeContext,
    keys: Vec<CacheKey>,
) -> Result<Vec<(CacheKey, CacheValue)>, ErrorBody> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let cache = lookup::<CacheMsg>(&ctx.names.cache)
        .ok_or_else(|| err(ErrorCode::Unavailable, "the cache is restarting"))?;
    match cache
        .call(|reply| CacheMsg::Get { keys, reply }, Some(CACHE_TIMEOUT))
        .await
    {
        Ok(ractor::rpc::CallResult::Success(r)) => r,
        Ok(_) => Err(err(
            ErrorCode::Unavailable,
            "the cache did not answer in time",
        )),
        Err(e) => Err(err(
            ErrorCode::Unavailable,
            format!("the cache is unavailable: {e}"),
        )),
    }
}

/// Serves a read here, if this node may: it holds a read lease, and for `strong` it is the
/// leader, for `min_seq` it has applied that seq.
pub async fn read(ctx: &NodeContext, req: ReadRequest) -> Result<ReadResult, ErrorBody> {
    let started = Instant::now();
    let view = ctx.view.borrow().clone();
    if !view.lease_holds(started) {
        return Err(err(
            ErrorCode::Unavailable,
            format!("{} holds no read lease", ctx.cfg.id),
        ));
    }
    match req.consistency {
        Consistency::Strong if view.role != Role::Leader => {
            return Err(err(
                ErrorCode::NotLeader,
                format!("strong reads go to the leader ({:?})", view.leader),
            ));
        }
        Consistency::MinSeq { min_seq } if ctx.applied_seq() < min_seq => {
            return Err(err(
                ErrorCode::Unavailable,
                format!(
                    "{} has applied seq {} < min_seq {min_seq}",
                    ctx.cfg.id,
                    ctx.applied_seq()
                ),
            ));
        }
        _ => {}
    }
    let kind = match &req.query {
        ReadQuery::Entities { .. } => "entities",
        ReadQuery::Assocs { .. } => "assocs",
        ReadQuery::Query { .. } => "query",
        ReadQuery::Timeline { .. } => "timeline",
        ReadQuery::Random { .. } => "random",
    };
    let result = run_query(ctx, req.query, &view).await;
    ctx.metrics.reads.with_label_values(&[kind]).inc();
    ctx.metrics
        .read_seconds
        .observe(started.elapsed().as_secs_f64());
    result
}

async fn run_query(
    ctx: &NodeContext,
    query: ReadQuery,
    view: &super::view::ClusterView,
) -> Result<ReadResult, ErrorBody> {
    let started = Instant::now();
    match query {
        ReadQuery::Entities { ids } => {
            if ids.len() > 1000 {
                return Err(err(ErrorCode::Invalid, "at most 1000 ids per request"));
            }
            let keys = ids.iter().map(|id| CacheKey::Entity(*id)).collect();
            let values = cache_get(ctx, keys).await?;
            let entities = values
                .into_iter()
                .filter_map(|(_, v)| match v {
                    CacheValue::Entity { entity } => entity,
                    _ => None,
                })
                .collect();
            Ok(ReadResult::Entities { entities })
        }
        ReadQuery::Assocs {
            from,
            atype,
            limit,
            offset,
        } => {
            if offset > instaface_bus::graph::MAX_ASSOC_OFFSET {
                return Err(err(
                    ErrorCode::Invalid,
                    format!(
                        "offset {offset} is past the largest, {}",
                        instaface_bus::graph::MAX_ASSOC_OFFSET
                    ),
                ));
            }
            let key = CacheKey::Assocs {
                from,
                atype: atype.clone(),
            };
            let values = cache_get(ctx, vec![key]).await?;
            match values.into_iter().next() {
                Some((
                    _,
                    CacheValue::Assocs {
                        count,
                        items,
                        complete,
                    },
                )) => {
                    let end = offset.saturating_add(limit) as usize;
                    if complete || end <= items.len() {
                        let items = items
                            .into_iter()
                            .skip(offset as usize)
                            .take(limit as usize)
                            .collect();
                        Ok(ReadResult::Assocs { count, items })
                    } else {
                        beyond_window(ctx, view, from, atype, limit, offset).await
                    }
                }
                _ => Err(err(
                    ErrorCode::Internal,
                    "the cache returned no association list",
                )),
            }
        }
        ReadQuery::Query { entities, template } => {
            let mut plan = QueryPlan::new(&entities, &template, ctx.cfg.assoc_window as usize)
                .map_err(query_err)?;
            while let Some(keys) = plan.next_batch() {
                let values = cache_get(ctx, keys).await?;
                plan.feed(values).map_err(query_err)?;
            }
            let (entities, mut stats) = plan.finish().map_err(query_err)?;
            stats.node = ctx.cfg.id.clone();
            stats.micros = started.elapsed().as_micros() as u64;
            Ok(ReadResult::Query { entities, stats })
        }
        ReadQuery::Timeline { user, limit } => {
            let mut plan = timeline_plan(user, limit.min(1000) as usize);
            while let Some(keys) = plan.next_batch() {
                let values = cache_get(ctx, keys).await?;
                plan.feed(values).map_err(query_err)?;
            }
            let (timeline, _stats) = plan.finish().map_err(query_err)?;
            Ok(ReadResult::Timeline { timeline })
        }
        ReadQuery::Random { etype, count } => {
            if view.role == Role::Leader {
                let store = lookup::<StoreMsg>(&ctx.names.store)
                    .ok_or_else(|| err(ErrorCode::Unavailable, "the store is restarting"))?;
                match store
                    .call(
                        |reply| StoreMsg::Random {
                            etype,
                            count: count.min(1000),
                            reply,
                        },
                        Some(CACHE_TIMEOUT),
                    )
                    .await
                {
                    Ok(ractor::rpc::CallResult::Success(r)) => {
                        r.map(|ids| ReadResult::Random { ids })
                    }
                    _ => Err(err(ErrorCode::Unavailable, "the store did not answer")),
                }
            } else {
                forward_to_leader(ctx, view, ReadQuery::Random { etype, count }).await
            }
        }
    }
}

/// An association range past the cached window: the leader reads it from MySQL.
async fn beyond_window(
    ctx: &NodeContext,
    view: &super::view::ClusterView,
    from: u64,
    atype: String,
    limit: u32,
    offset: u32,
) -> Result<ReadResult, ErrorBody> {
    if view.role == Role::Leader {
        let store = lookup::<StoreMsg>(&ctx.names.store)
            .ok_or_else(|| err(ErrorCode::Unavailable, "the store is restarting"))?;
        match store
            .call(
                |reply| StoreMsg::ListAssocs {
                    from,
                    atype,
                    limit,
                    offset,
                    reply,
                },
                Some(CACHE_TIMEOUT),
            )
            .await
        {
            Ok(ractor::rpc::CallResult::Success(r)) => {
                r.map(|(count, items)| ReadResult::Assocs { count, items })
            }
            _ => Err(err(ErrorCode::Unavailable, "the store did not answer")),
        }
    } else {
        forward_to_leader(
            ctx,
            view,
            ReadQuery::Assocs {
                from,
                atype,
                limit,
                offset,
            },
        )
        .await
    }
}

/// Sends a read this follower cannot serve from its cache to the leader (strong).
async fn forward_to_leader(
    ctx: &NodeContext,
    view: &super::view::ClusterView,
    query: ReadQuery,
) -> Result<ReadResult, ErrorBody> {
    let leader = view
        .leader
        .clone()
        .ok_or_else(|| err(ErrorCode::Unavailable, "no leader"))?;
    let req = ReadRequest {
        consistency: Consistency::Strong,
        query,
    };
    // A client's read relayed, not a cluster message: plain, like any client's.
    match ctx
        .net
        .bus()
        .request::<_, Reply<ReadResult>>(ctx.net.subjects().read_at(&leader), &req, CACHE_TIMEOUT)
        .await
    {
        Ok(reply) => reply.into(),
        Err(e) => Err(err(
            ErrorCode::Unavailable,
            format!("forwarding to the leader failed: {e}"),
        )),
    }
}

/// A write addressed to this node: the leader runs it; anyone else refuses it, naming the
/// leader it knows of.
pub async fn write(ctx: &NodeContext, req: WriteRequest) -> Result<WriteOutcome, ErrorBody> {
    let view = ctx.view.borrow().clone();
    if view.role != Role::Leader {
        return Err(err(
            ErrorCode::NotLeader,
            format!(
                "{} is not the leader (leader: {:?})",
                ctx.cfg.id, view.leader
            ),
        ));
    }
    // NotLeader means "certainly not run": the client may retry it; Unavailable means the
    // outcome is unknown.
    let store = lookup::<StoreMsg>(&ctx.names.store)
        .ok_or_else(|| err(ErrorCode::NotLeader, "the store is restarting; the write did not run"))?;
    // A lease-mode write waits at most one lease for a cut-off follower, once.
    let timeout = ctx.cfg.lease * 3 + Duration::from_secs(5);
    match store
        .call(|reply| StoreMsg::Write { req, reply }, Some(timeout))
        .await
    {
        Ok(ractor::rpc::CallResult::Success(r)) => r,
        Ok(_) => Err(err(
            ErrorCode::Unavailable,
            "the write's outcome is unknown (no answer in time)",
        )),
        Err(e) => Err(err(
            ErrorCode::NotLeader,
            format!("the store is unavailable; the write did not run: {e}"),
        )),
    }
}

/// A follower's fill, served from the leader's cache (which fills from MySQL) under the
/// leader's own lease.
pub async fn fill(ctx: &NodeContext, req: FillRequest) -> Result<FillReply, ErrorBody> {
    let view = ctx.view.borrow().clone();
    if view.role != Role::Leader {
        return Err(err(ErrorCode::NotLeader, "fills go to the leader"));
    }
    if req.keys.len() > 10_000 {
        return Err(err(ErrorCode::Invalid, "at most 10000 keys per fill"));
    }
    let values = cache_get(ctx, req.keys).await?;
    Ok(FillReply {
        term: view.term,
        seq: ctx.applied_seq(),
        values: values.into_iter().map(|(_, v)| v).collect(),
    })
}
