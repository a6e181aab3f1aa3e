//! The cache actor: this node's cache of entities and association lists.
//!
//! It is told, by the protocol actor and in the order the protocol core decided, which
//! keys to drop ([`CacheMsg::Invalidate`], [`CacheMsg::Clear`]) and until when it may
//! serve ([`CacheMsg::Serving`]); it answers lookups ([`CacheMsg::Get`]) only while it
//! may serve. Because those commands and the lookups share one mailbox, a lookup that
//! arrives after the node acked an invalidation never sees the dropped value.
//!
//! Lookups are answered from the [`CacheCore`], which decides what must be fetched
//! (single flight, and never handing a reader a value fetched before an invalidation it
//! came after). The actor never awaits the network: a fetch runs as a task — a fill
//! request to the leader on a follower, a MySQL read through the store actor on the
//! leader — that sends its result back as [`CacheMsg::Filled`]. Fetch numbers never repeat
//! within a process, so a fill started before a restart cannot complete a later fetch.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use instaface_bus::graph::{CacheKey, ErrorBody, ErrorCode, FillReply, FillRequest};
use instaface_bus::messages::{EventKind, Role};
use instaface_bus::NodeId;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tracing::Instrument;

use super::messages::{CacheMsg, StoreMsg, Waiter};
use super::{cast_to, lookup, NodeContext};
use crate::cache::{Answer, CacheCore, FetchOrder};

/// How often cache counters are published as a `cache` event.
const STATS_EVERY: Duration = Duration::from_secs(1);

/// How long a fetch may take before it fails (its waiters get an error).
const FILL_TIMEOUT: Duration = Duration::from_secs(3);

/// Each cache actor of the process numbers its fetches from its own base.
static INCARNATIONS: AtomicU64 = AtomicU64::new(0);

pub struct CacheActor;

pub struct CacheState {
    ctx: NodeContext,
    core: CacheCore<Waiter, ErrorBody>,
    serving_until: Option<Instant>,
    term: u64,
    role: Role,
    leader: Option<NodeId>,
    last_published: (u64, u64, u64),
}

impl CacheState {
    fn invalidate(&mut self, keys: &[String]) {
        let parsed: Vec<CacheKey> = keys.iter().filter_map(|k| k.parse().ok()).collect();
        if parsed.len() != keys.len() {
            tracing::warn!(?keys, "invalidation with unparsable keys: clearing the cache");
            self.core.clear();
        } else {
            self.core.invalidate(&parsed);
        }
    }

    fn serving(&self) -> bool {
        self.serving_until.is_some_and(|u| Instant::now() < u)
    }
}

impl Actor for CacheActor {
    type Msg = CacheMsg;
    type State = CacheState;
    type Arguments = NodeContext;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        ctx: NodeContext,
    ) -> Result<Self::State, ActorProcessingErr> {
        myself.send_interval(STATS_EVERY, || CacheMsg::PublishStats);
        let base = INCARNATIONS.fetch_add(1, Ordering::SeqCst) << 40;
        Ok(CacheState {
            core: CacheCore::with_fetch_base(ctx.cfg.cache_capacity, base),
            ctx,
            serving_until: None,
            term: 0,
            role: Role::Follower,
            leader: None,
            last_published: (0, 0, 0),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let span = tracing::info_span!("cache", node = %state.ctx.cfg.id, term = state.term);
        on_message(msg, state).instrument(span).await
    }
}

async fn on_message(msg: CacheMsg, state: &mut CacheState) -> Result<(), ActorProcessingErr> {
    match msg {
        CacheMsg::Invalidate(keys) => state.invalidate(&keys),
        CacheMsg::Clear => state.core.clear(),
        CacheMsg::Serving { until, role, term, leader } => {
            state.serving_until = until;
            state.role = role;
            state.term = term;
            state.leader = leader;
        }
        CacheMsg::Get { keys, reply } => {
            if !state.serving() {
                let _ = reply.send(Err(ErrorBody::new(
                    ErrorCode::Unavailable,
                    format!("{} holds no read lease", state.ctx.cfg.id),
                )));
                return Ok(());
            }
            let found = state.core.lookup(&keys, reply);
            state.ctx.metrics.cache_hits.inc_by(found.hits as u64);
            state.ctx.metrics.cache_misses.inc_by(found.misses as u64);
            if let Some(answer) = found.answer {
                deliver(answer);
            }
            if let Some(order) = found.fetch {
                start_fetch(state, order);
            }
        }
        CacheMsg::Filled { id, result } => {
            for answer in state.core.complete_fetch_in_order(id, result) {
                deliver(answer);
            }
        }
        CacheMsg::PublishStats => publish_stats(state).await,
        CacheMsg::Panic => panic!("test hook: cache actor panic"),
    }
    Ok(())
}

async fn publish_stats(state: &mut CacheState) {
    let s = state.core.stats();
    state.ctx.metrics.cache_entries.set(s.entries as i64);
    if let Ok(mut c) = state.ctx.counters.lock() {
        c.hits = s.hits;
        c.misses = s.misses;
        c.entries = s.entries;
        c.fills = state.ctx.metrics.cache_fills.get();
    }
    let now = (s.hits, s.misses, s.entries);
    if now != state.last_published {
        state.last_published = now;
        state
            .ctx
            .net
            .event(
                state.term,
                EventKind::Cache {
                    hits: s.hits,
                    misses: s.misses,
                    entries: s.entries,
                    fills: s.fills,
                    applied_seq: state.ctx.applied_seq(),
                },
            )
            .await;
    }
}

/// Sends a lookup's answer to its waiter.
fn deliver(answer: Answer<Waiter, ErrorBody>) {
    let (waiter, values) = answer.into_values();
    let _ = waiter.send(values.map_err(|e| match e {
        crate::cache::FetchError::Failed(body) => body,
        crate::cache::FetchError::Missing => ErrorBody::new(ErrorCode::Internal, "a fill brought no value for a key"),
    }));
}

/// Starts a fetch as a task: from MySQL through the store actor on the leader, from the
/// leader's cache (a fill request) on a follower. The result comes back as `Filled`.
fn start_fetch(state: &CacheState, order: FetchOrder) {
    let ctx = state.ctx.clone();
    let leader = state.leader.clone();
    let leading = state.role == Role::Leader;
    let term = state.term;
    ctx.metrics.cache_fills.inc();
    tokio::spawn(async move {
        let FetchOrder { id, keys } = order;
        let result = if leading {
            fetch_from_mysql(&ctx, keys).await
        } else if let Some(leader) = leader {
            fetch_from_leader(&ctx, &leader, term, keys).await
        } else {
            Err(ErrorBody::new(ErrorCode::Unavailable, "no leader to fill from"))
        };
        cast_to(&ctx.names.cache, CacheMsg::Filled { id, result });
    });
}

async fn fetch_from_mysql(
    ctx: &NodeContext,
    keys: Vec<CacheKey>,
) -> Result<Vec<instaface_bus::graph::CacheValue>, ErrorBody> {
    let Some(store) = lookup::<StoreMsg>(&ctx.names.store) else {
        return Err(ErrorBody::new(ErrorCode::Unavailable, "the store actor is restarting"));
    };
    match store.call(|reply| StoreMsg::Fill { keys, reply }, Some(FILL_TIMEOUT)).await {
        Ok(ractor::rpc::CallResult::Success(r)) => r.map(|(_, values)| values),
        _ => Err(ErrorBody::new(ErrorCode::Unavailable, "the store did not answer the fill")),
    }
}

async fn fetch_from_leader(
    ctx: &NodeContext,
    leader: &NodeId,
    term: u64,
    keys: Vec<CacheKey>,
) -> Result<Vec<instaface_bus::graph::CacheValue>, ErrorBody> {
    let req = FillRequest { term, node: ctx.cfg.id.clone(), keys };
    match ctx
        .net
        .request::<_, instaface_bus::graph::Reply<FillReply>>(ctx.net.subjects().fill(leader), &req, FILL_TIMEOUT)
        .await
    {
        Ok(instaface_bus::graph::Reply::Ok(fill)) => Ok(fill.values),
        Ok(instaface_bus::graph::Reply::Error(e)) => Err(e),
        Err(e) => Err(ErrorBody::new(ErrorCode::Unavailable, format!("fill from the leader failed: {e}"))),
    }
}
