//! The read path: a read is served here only under a read lease (and, for `strong`, by
//! the leader; for `min_seq`, once that seq is applied), through the query engine over the
//! cache; a range past the cached window is read from MySQL by the leader, and what a
//! follower cannot serve from its cache is forwarded to the leader. A query's later levels
//! follow associations into other shards: their keys go to those shards' groups on this node.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use instaface_bus::graph::{
    self, CacheKey, CacheValue, Consistency, EntityId, ErrorBody, ErrorCode, ReadBatch, ReadQuery, ReadRequest,
    ReadResult, Reply,
};
use instaface_bus::messages::Role;
use instaface_bus::NodeId;

use super::{cache_get, cache_get_across, err, CACHE_TIMEOUT};
use crate::node::messages::StoreMsg;
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
    let view = ReadView::now(ctx);
    let kind = kind_of(&req.query);
    admit(ctx, &view, started, &req.consistency)?;
    let result = run_query(ctx, req.query, &view).await;
    count(ctx, kind, started);
    result
}

/// What a read needs of the cluster view, taken once per read (or batch) without cloning
/// the members' and followers' lists.
struct ReadView {
    role: Role,
    leader: Option<NodeId>,
    lease_until: Option<Instant>,
}

impl ReadView {
    fn now(ctx: &NodeContext) -> ReadView {
        let view = ctx.view.borrow();
        ReadView { role: view.role, leader: view.leader.clone(), lease_until: view.lease_until }
    }

    fn lease_holds(&self, now: Instant) -> bool {
        crate::node::view::lease_holds(self.lease_until, now)
    }
}

/// Whether this node may serve a read of `consistency` now: under a read lease, a `strong`
/// one only as the leader, a `min_seq` one once that seq is applied.
fn admit(ctx: &NodeContext, view: &ReadView, now: Instant, consistency: &Consistency) -> Result<(), ErrorBody> {
    if !view.lease_holds(now) {
        return Err(err(ErrorCode::Unavailable, format!("{} holds no read lease", ctx.cfg.id)));
    }
    match consistency {
        Consistency::Strong if view.role != Role::Leader => {
            Err(err(ErrorCode::NotLeader, format!("strong reads go to the leader ({:?})", view.leader)))
        }
        Consistency::MinSeq { min_seq } if ctx.applied_seq() < *min_seq => Err(err(
            ErrorCode::Unavailable,
            format!("{} has applied seq {} < min_seq {min_seq}", ctx.cfg.id, ctx.applied_seq()),
        )),
        _ => Ok(()),
    }
}

/// The `kind` label of a read's metrics.
fn kind_of(query: &ReadQuery) -> &'static str {
    match query {
        ReadQuery::Entities { .. } => "entities",
        ReadQuery::Assocs { .. } => "assocs",
        ReadQuery::Query { .. } => "query",
        ReadQuery::Timeline { .. } => "timeline",
        ReadQuery::Random { .. } => "random",
    }
}

/// Counts an admitted read in the metrics.
fn count(ctx: &NodeContext, kind: &str, started: Instant) {
    ctx.metrics.reads.with_label_values(&[kind]).inc();
    ctx.metrics.read_seconds.observe(started.elapsed().as_secs_f64());
}

/// Serves a batch of reads (`P.graph.reads`): each read as [`read`] would alone, all at
/// once, the answers in the order asked. The batch's entity and association-list reads —
/// nearly all of a batch — share one view of the cluster and one cache lookup
/// (each read is admitted as it would be alone, and answered from the values of its own
/// keys); the others run as they would alone, beside them.
pub async fn read_batch(ctx: &NodeContext, batch: ReadBatch) -> Result<Vec<Reply<ReadResult>>, ErrorBody> {
    if batch.reads.len() > graph::MAX_READS_PER_BATCH {
        return Err(err(
            ErrorCode::Invalid,
            format!("{} reads in one batch (at most {})", batch.reads.len(), graph::MAX_READS_PER_BATCH),
        ));
    }
    ctx.metrics.read_batch_size.observe(batch.reads.len() as f64);
    let started = Instant::now();
    let view = ReadView::now(ctx);
    // Each read's answer once, by its place in the batch.
    let mut answers: Vec<(usize, Result<ReadResult, ErrorBody>)> = Vec::with_capacity(batch.reads.len());
    let mut cached: Vec<(usize, &'static str, Cached)> = Vec::new();
    let mut alone = Vec::new();
    let mut uses: HashMap<CacheKey, usize> = HashMap::new();
    for (at, ReadRequest { consistency, query }) in batch.reads.into_iter().enumerate() {
        let kind = kind_of(&query);
        let read = match Cached::of(query) {
            Ok(read) => read,
            Err(query) => {
                alone.push(async move { (at, read(ctx, ReadRequest { consistency, query }).await) });
                continue;
            }
        };
        if let Err(e) = admit(ctx, &view, started, &consistency) {
            answers.push((at, Err(e)));
        } else if let Err(e) = read.check() {
            count(ctx, kind, started);
            answers.push((at, Err(e)));
        } else {
            read.count_uses(&mut uses);
            cached.push((at, kind, read));
        }
    }
    let cache_call = async {
        let keys = uses.keys().cloned().collect();
        cache_get(ctx, keys).await.map(|values| Values::new(values, &uses))
    };
    let (values, alone) = futures::future::join(cache_call, futures::future::join_all(alone)).await;
    answers.extend(alone);
    match values {
        Ok(mut values) => {
            let view = &view;
            let served = cached.into_iter().map(|(at, kind, read)| {
                let answer = read.answer(&mut values);
                async move {
                    let result = answer.finish(ctx, view).await;
                    count(ctx, kind, started);
                    (at, result)
                }
            });
            answers.extend(futures::future::join_all(served).await);
        }
        Err(e) => {
            for (at, kind, _) in cached {
                count(ctx, kind, started);
                answers.push((at, Err(e.clone())));
            }
        }
    }
    answers.sort_by_key(|(at, _)| *at);
    Ok(answers.into_iter().map(|(_, answer)| Reply::from(answer)).collect())
}

/// A read answered from cache values alone: entities by id, or an association list. A read
/// alone ([`run_query`]) and the reads of a batch ([`read_batch`]) are answered the same way.
enum Cached {
    /// `ids` each once, of the `asked` the read named.
    Entities {
        ids: Vec<EntityId>,
        asked: usize,
    },
    Assocs {
        from: EntityId,
        atype: String,
        limit: u32,
        offset: u32,
    },
}

/// A cached read's answer: ready, or a range past the cached window to read from MySQL.
enum Answer {
    Ready(Result<ReadResult, ErrorBody>),
    BeyondWindow { from: EntityId, atype: String, limit: u32, offset: u32 },
}

impl Answer {
    async fn finish(self, ctx: &NodeContext, view: &ReadView) -> Result<ReadResult, ErrorBody> {
        match self {
            Answer::Ready(result) => result,
            Answer::BeyondWindow { from, atype, limit, offset } => {
                beyond_window(ctx, view, from, atype, limit, offset).await
            }
        }
    }
}

impl Cached {
    /// The read, if it is one of these; else the query back.
    fn of(query: ReadQuery) -> Result<Cached, ReadQuery> {
        match query {
            // Each id once, as the cache answers a read alone.
            ReadQuery::Entities { ids } => {
                let mut seen = HashSet::with_capacity(ids.len());
                let asked = ids.len();
                Ok(Cached::Entities { ids: ids.into_iter().filter(|id| seen.insert(*id)).collect(), asked })
            }
            ReadQuery::Assocs { from, atype, limit, offset } => {
                Ok(Cached::Assocs { from, atype, limit: limit.min(graph::MAX_ASSOC_LIMIT), offset })
            }
            other => Err(other),
        }
    }

    /// The bounds checked before the cache is asked.
    fn check(&self) -> Result<(), ErrorBody> {
        match self {
            Cached::Entities { asked, .. } => check_ids(*asked),
            Cached::Assocs { offset, .. } => check_offset(*offset),
        }
    }

    /// Counts each key this read needs in `uses`.
    fn count_uses(&self, uses: &mut HashMap<CacheKey, usize>) {
        match self {
            Cached::Entities { ids, .. } => {
                for id in ids {
                    *uses.entry(CacheKey::Entity(*id)).or_default() += 1;
                }
            }
            Cached::Assocs { from, atype, .. } => {
                *uses.entry(CacheKey::Assocs { from: *from, atype: atype.clone() }).or_default() += 1;
            }
        }
    }

    /// Answers this read alone: its checks, its keys from the cache, its answer.
    async fn serve(self, ctx: &NodeContext, view: &ReadView) -> Result<ReadResult, ErrorBody> {
        self.check()?;
        let mut uses = HashMap::new();
        self.count_uses(&mut uses);
        let values = cache_get(ctx, uses.keys().cloned().collect()).await?;
        let mut values = Values::new(values, &uses);
        self.answer(&mut values).finish(ctx, view).await
    }

    fn answer(self, values: &mut Values) -> Answer {
        match self {
            Cached::Entities { ids, .. } => {
                let entities = ids.iter().filter_map(|id| values.take(&CacheKey::Entity(*id))).collect::<Vec<_>>();
                Answer::Ready(Ok(entities_from(entities)))
            }
            Cached::Assocs { from, atype, limit, offset } => {
                let value = values.take(&CacheKey::Assocs { from, atype: atype.clone() });
                match assocs_from(value, limit, offset) {
                    Some(result) => Answer::Ready(result),
                    None => Answer::BeyondWindow { from, atype, limit, offset },
                }
            }
        }
    }
}

/// The cache's values for the keys of one or more reads, each handed out as often as the
/// reads use its key (moved out at its last use, cloned before).
#[derive(Default)]
struct Values {
    values: HashMap<CacheKey, (CacheValue, usize)>,
}

impl Values {
    fn new(values: Vec<(CacheKey, CacheValue)>, uses: &HashMap<CacheKey, usize>) -> Values {
        let values = (values.into_iter())
            .map(|(key, value)| {
                let n = uses.get(&key).copied().unwrap_or(0);
                (key, (value, n))
            })
            .collect();
        Values { values }
    }

    fn take(&mut self, key: &CacheKey) -> Option<CacheValue> {
        let (value, left) = self.values.get_mut(key)?;
        *left = left.saturating_sub(1);
        if *left == 0 {
            self.values.remove(key).map(|(value, _)| value)
        } else {
            Some(value.clone())
        }
    }
}

/// The answer to an entities read from its keys' values (missing entities left out).
fn entities_from(values: Vec<CacheValue>) -> ReadResult {
    let entities = values
        .into_iter()
        .filter_map(|v| match v {
            CacheValue::Entity { entity } => entity,
            _ => None,
        })
        .collect();
    ReadResult::Entities { entities }
}

/// The answer to an association-list read from its key's value, or `None` when the range
/// reaches past the cached window (the leader reads it from MySQL).
fn assocs_from(value: Option<CacheValue>, limit: u32, offset: u32) -> Option<Result<ReadResult, ErrorBody>> {
    match value {
        Some(CacheValue::Assocs { count, items, complete }) => {
            let end = offset.saturating_add(limit) as usize;
            if complete || end <= items.len() {
                let items = items.into_iter().skip(offset as usize).take(limit as usize).collect();
                Some(Ok(ReadResult::Assocs { count, items }))
            } else {
                None
            }
        }
        _ => Some(Err(err(ErrorCode::Internal, "the cache returned no association list"))),
    }
}

/// An association range starts at most [`graph::MAX_ASSOC_OFFSET`] in.
fn check_offset(offset: u32) -> Result<(), ErrorBody> {
    if offset > graph::MAX_ASSOC_OFFSET {
        return Err(err(
            ErrorCode::Invalid,
            format!("offset {offset} is past the largest, {}", graph::MAX_ASSOC_OFFSET),
        ));
    }
    Ok(())
}

/// At most [`graph::MAX_IDS_PER_READ`] ids in one read.
fn check_ids(asked: usize) -> Result<(), ErrorBody> {
    if asked > graph::MAX_IDS_PER_READ {
        return Err(err(ErrorCode::Invalid, format!("at most {} ids per request", graph::MAX_IDS_PER_READ)));
    }
    Ok(())
}

async fn run_query(ctx: &NodeContext, query: ReadQuery, view: &ReadView) -> Result<ReadResult, ErrorBody> {
    let started = Instant::now();
    match query {
        query @ (ReadQuery::Entities { .. } | ReadQuery::Assocs { .. }) => match Cached::of(query) {
            Ok(read) => read.serve(ctx, view).await,
            Err(_) => Err(err(ErrorCode::Internal, "not a cached read")),
        },
        ReadQuery::Query { entities, template } => {
            check_ids(entities.len())?;
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
    view: &ReadView,
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
async fn forward_to_leader(ctx: &NodeContext, view: &ReadView, query: ReadQuery) -> Result<ReadResult, ErrorBody> {
    let leader = view.leader.clone().ok_or_else(|| err(ErrorCode::Unavailable, "no leader"))?;
    let req = ReadRequest { consistency: Consistency::Strong, query };
    // A client's read relayed, not a cluster message: plain, like any client's.
    match ctx.net.bus().request::<_, Reply<ReadResult>>(ctx.net.subjects().read_at(&leader), &req, CACHE_TIMEOUT).await
    {
        Ok(reply) => reply.into(),
        Err(e) => Err(err(ErrorCode::Unavailable, format!("forwarding to the leader failed: {e}"))),
    }
}
