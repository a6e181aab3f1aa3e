//! The read path: a read is served here only under a read lease (and, for `strong`, by
//! the leader; for `min_seq`, once that seq is applied), through the query engine over the
//! cache; a range past the cached window is read from MySQL by the leader, and what a
//! follower cannot serve from its cache is forwarded to the leader. A query's later levels
//! follow associations into other shards: their keys go to those shards' groups on this node.

use std::time::Instant;

use instaface_bus::graph::{
    self, CacheKey, CacheValue, Consistency, EntityId, ErrorBody, ErrorCode, ReadBatch, ReadQuery, ReadRequest,
    ReadResult, Reply,
};
use instaface_bus::messages::Role;

use super::{cache_get, cache_get_across, err, CACHE_TIMEOUT};
use crate::node::messages::StoreMsg;
use crate::node::view::ClusterView;
use crate::node::{lookup, NodeContext};
use crate::query::{timeline_plan, QueryError, QueryPlan};

fn query_err(e: QueryError) -> ErrorBody {
    match e {
        QueryError::NotFound(id) => err(ErrorCode::NotFound, format!("no entity {id}")),
        other => err(ErrorCode::Invalid, other.to_string()),
    }
}

/// Serves a read here, if this node may: it holds a read lease, and for `strong` it is the
/// leader, for `min_seq` it has applied that seq.
pub async fn read(ctx: &NodeContext, req: ReadRequest) -> Result<ReadResult, ErrorBody> {
    let started = Instant::now();
    let view = ctx.view.borrow().clone();
    if !view.lease_holds(started) {
        return Err(err(ErrorCode::Unavailable, format!("{} holds no read lease", ctx.cfg.id)));
    }
    match req.consistency {
        Consistency::Strong if view.role != Role::Leader => {
            return Err(err(ErrorCode::NotLeader, format!("strong reads go to the leader ({:?})", view.leader)));
        }
        Consistency::MinSeq { min_seq } if ctx.applied_seq() < min_seq => {
            return Err(err(
                ErrorCode::Unavailable,
                format!("{} has applied seq {} < min_seq {min_seq}", ctx.cfg.id, ctx.applied_seq()),
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
    ctx.metrics.read_seconds.observe(started.elapsed().as_secs_f64());
    result
}

/// Serves a batch of reads (`P.graph.reads`): each read as [`read`] would alone, all at
/// once, the answers in the order asked.
pub async fn read_batch(ctx: &NodeContext, batch: ReadBatch) -> Result<Vec<Reply<ReadResult>>, ErrorBody> {
    if batch.reads.len() > graph::MAX_READS_PER_BATCH {
        return Err(err(
            ErrorCode::Invalid,
            format!("{} reads in one batch (at most {})", batch.reads.len(), graph::MAX_READS_PER_BATCH),
        ));
    }
    ctx.metrics.read_batch_size.observe(batch.reads.len() as f64);
    let answers = futures::future::join_all(batch.reads.into_iter().map(|req| read(ctx, req))).await;
    Ok(answers.into_iter().map(Reply::from).collect())
}

/// At most [`graph::MAX_IDS_PER_READ`] ids in one read.
fn check_ids(ids: &[EntityId]) -> Result<(), ErrorBody> {
    if ids.len() > graph::MAX_IDS_PER_READ {
        return Err(err(ErrorCode::Invalid, format!("at most {} ids per request", graph::MAX_IDS_PER_READ)));
    }
    Ok(())
}

async fn run_query(ctx: &NodeContext, query: ReadQuery, view: &ClusterView) -> Result<ReadResult, ErrorBody> {
    let started = Instant::now();
    match query {
        ReadQuery::Entities { ids } => {
            check_ids(&ids)?;
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
        ReadQuery::Assocs { from, atype, limit, offset } => {
            let limit = limit.min(graph::MAX_ASSOC_LIMIT);
            if offset > graph::MAX_ASSOC_OFFSET {
                return Err(err(
                    ErrorCode::Invalid,
                    format!("offset {offset} is past the largest, {}", graph::MAX_ASSOC_OFFSET),
                ));
            }
            let key = CacheKey::Assocs { from, atype: atype.clone() };
            let values = cache_get(ctx, vec![key]).await?;
            match values.into_iter().next() {
                Some((_, CacheValue::Assocs { count, items, complete })) => {
                    let end = offset.saturating_add(limit) as usize;
                    if complete || end <= items.len() {
                        let items = items.into_iter().skip(offset as usize).take(limit as usize).collect();
                        Ok(ReadResult::Assocs { count, items })
                    } else {
                        beyond_window(ctx, view, from, atype, limit, offset).await
                    }
                }
                _ => Err(err(ErrorCode::Internal, "the cache returned no association list")),
            }
        }
        ReadQuery::Query { entities, template } => {
            check_ids(&entities)?;
            let mut plan = QueryPlan::new(&entities, &template, ctx.cfg.assoc_window as usize).map_err(query_err)?;
            while let Some(keys) = plan.next_batch() {
                let values = cache_get_across(ctx, keys).await?;
                plan.feed(values).map_err(query_err)?;
            }
            let (entities, mut stats) = plan.finish().map_err(query_err)?;
            stats.node = ctx.cfg.id.clone();
            stats.micros = started.elapsed().as_micros() as u64;
            Ok(ReadResult::Query { entities, stats })
        }
        ReadQuery::Timeline { user, limit } => {
            let mut plan = timeline_plan(user, limit.min(graph::MAX_TIMELINE_LIMIT) as usize);
            while let Some(keys) = plan.next_batch() {
                let values = cache_get_across(ctx, keys).await?;
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
                        |reply| StoreMsg::Random { etype, count: count.min(graph::MAX_RANDOM_COUNT), reply },
                        Some(CACHE_TIMEOUT),
                    )
                    .await
                {
                    Ok(ractor::rpc::CallResult::Success(r)) => r.map(|ids| ReadResult::Random { ids }),
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
    view: &ClusterView,
    from: u64,
    atype: String,
    limit: u32,
    offset: u32,
) -> Result<ReadResult, ErrorBody> {
    if view.role == Role::Leader {
        let store = lookup::<StoreMsg>(&ctx.names.store)
            .ok_or_else(|| err(ErrorCode::Unavailable, "the store is restarting"))?;
        match store.call(|reply| StoreMsg::ListAssocs { from, atype, limit, offset, reply }, Some(CACHE_TIMEOUT)).await
        {
            Ok(ractor::rpc::CallResult::Success(r)) => r.map(|(count, items)| ReadResult::Assocs { count, items }),
            _ => Err(err(ErrorCode::Unavailable, "the store did not answer")),
        }
    } else {
        forward_to_leader(ctx, view, ReadQuery::Assocs { from, atype, limit, offset }).await
    }
}

/// Sends a read this follower cannot serve from its cache to the leader (strong).
async fn forward_to_leader(ctx: &NodeContext, view: &ClusterView, query: ReadQuery) -> Result<ReadResult, ErrorBody> {
    let leader = view.leader.clone().ok_or_else(|| err(ErrorCode::Unavailable, "no leader"))?;
    let req = ReadRequest { consistency: Consistency::Strong, query };
    // A client's read relayed, not a cluster message: plain, like any client's.
    match ctx.net.bus().request::<_, Reply<ReadResult>>(ctx.net.subjects().read_at(&leader), &req, CACHE_TIMEOUT).await
    {
        Ok(reply) => reply.into(),
        Err(e) => Err(err(ErrorCode::Unavailable, format!("forwarding to the leader failed: {e}"))),
    }
}
