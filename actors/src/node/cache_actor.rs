//! The cache actor: this node's cache of entities and association lists, and the
//! invalidations applied to it.
//!
//! It applies invalidations in seq order (a heartbeat's window, a broadcast, or the
//! leader's own write) and keeps `applied_seq`, which the node's acks carry; a follower
//! that finds itself behind the leader's retained window clears its whole cache.
//!
//! Lookups ([`CacheMsg::Get`]) are answered from the [`CacheCore`], which decides what
//! must be fetched (single flight, and never handing a reader a value fetched before an
//! invalidation it came after). The actor never awaits the network: a fetch runs as a task
//! — a fill request to the leader on a follower, a MySQL read through the store actor on
//! the leader — that sends its result back as [`CacheMsg::Filled`].

use std::sync::atomic::Ordering;
use std::time::Duration;

use instaface_bus::graph::{CacheKey, CacheValue, ErrorBody, ErrorCode, FillReply, FillRequest};
use instaface_bus::messages::{EventKind, Role};
use instaface_bus::NodeId;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tracing::Instrument;

use super::heartbeat_actor::CacheApply;
use super::store_actor::StoreMsg;
use super::{cast_to, lookup, NodeContext};
use crate::cache::{Answer, CacheCore, FetchId, FetchOrder};

/// How often cache counters are published as a `cache` event.
const STATS_EVERY: Duration = Duration::from_secs(1);

pub enum CacheMsg {
    /// Apply invalidations; replies with `applied_seq` afterwards.
    Apply(CacheApply, RpcReplyPort<u64>),
    RoleChanged {
        role: Role,
        term: u64,
        leader: Option<NodeId>,
    },
    PublishStats,
    /// Values for `keys` (in order), from the cache or filled. Refused without a lease.
    Get {
        keys: Vec<CacheKey>,
        reply: Waiter,
    },
    /// A fetch finished.
    Filled {
        id: FetchId,
        result: Result<Vec<CacheValue>, ErrorBody>,
    },
    /// Test hook: panic inside the handler.
    Panic,
}

/// What a failed fetch carries.
pub type FillError = ErrorBody;

/// Where a lookup's answer goes: the values of the keys asked, in order.
pub type Waiter = RpcReplyPort<Result<Vec<(CacheKey, CacheValue)>, ErrorBody>>;

/// How long a fetch may take before it fails (its waiters get an error).
const FILL_TIMEOUT: Duration = Duration::from_secs(3);

pub struct CacheActor;

pub struct CacheState {
    ctx: NodeContext,
    core: CacheCore<Waiter, FillError>,
    applied_seq: u64,
    term: u64,
    role: Role,
    leader: Option<NodeId>,
    last_published: (u64, u64, u64),
}

impl CacheState {
    fn set_applied(&mut self, seq: u64) {
        self.applied_seq = seq;
        self.ctx.applied_seq.store(seq, Ordering::SeqCst);
        self.ctx.metrics.applied_seq.set(seq as i64);
    }

    fn invalidate_strings(&mut self, keys: &[String]) {
        let parsed: Vec<CacheKey> = keys.iter().filter_map(|k| k.parse().ok()).collect();
        if parsed.len() != keys.len() {
            tracing::warn!(
                ?keys,
                "invalidation with unparsable keys: clearing the cache"
            );
            self.core.clear();
        } else {
            self.core.invalidate(&parsed);
        }
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
        // A restarted cache starts empty, so it may claim no more than it can prove: 0
        // unless the process already knew more (then the next heartbeat's window clears it
        // or brings it up to date).
        let core = CacheCore::new(ctx.cfg.cache_capacity);
        let view = ctx.view.borrow().clone();
        let mut state = CacheState {
            ctx,
            core,
            applied_seq: 0,
            term: view.term,
            role: view.role,
            leader: view.leader,
            last_published: (0, 0, 0),
        };
        let known = state.ctx.applied_seq.load(Ordering::SeqCst);
        state.set_applied(known);
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let span = tracing::info_span!("cache", node = %state.ctx.cfg.id, term = state.term);
        on_message(myself, msg, state).instrument(span).await
    }
}

async fn on_message(
    _myself: ActorRef<CacheMsg>,
    msg: CacheMsg,
    state: &mut CacheState,
) -> Result<(), ActorProcessingErr> {
    match msg {
        CacheMsg::Apply(apply, reply) => {
            match apply {
                CacheApply::Window {
                    floor,
                    seq,
                    entries,
                } => {
                    if state.applied_seq >= seq {
                        // Nothing new.
                    } else if state.applied_seq >= floor {
                        let applied = state.applied_seq;
                        for e in entries.iter().filter(|e| e.seq > applied) {
                            state.invalidate_strings(&e.keys);
                        }
                        state.set_applied(seq);
                    } else {
                        tracing::warn!(
                            applied = state.applied_seq,
                            floor,
                            seq,
                            "behind the leader's retained invalidations: clearing the cache"
                        );
                        state.core.clear();
                        state.set_applied(seq);
                    }
                }
                CacheApply::One {
                    prev_seq,
                    seq,
                    keys,
                } => {
                    state.invalidate_strings(&keys);
                    if state.applied_seq >= prev_seq && seq > state.applied_seq {
                        state.set_applied(seq);
                    }
                }
                CacheApply::Own { seq, keys } => {
                    state.invalidate_strings(&keys);
                    if seq > state.applied_seq {
                        state.set_applied(seq);
                    }
                }
            }
            let _ = reply.send(state.applied_seq);
        }
        CacheMsg::RoleChanged { role, term, leader } => {
            state.term = term;
            state.role = role;
            state.leader = leader;
        }
        CacheMsg::Get { keys, reply } => {
            let lease_holds = state.ctx.view.borrow().lease_holds(std::time::Instant::now());
            if !lease_holds {
                let _ = reply.send(Err(ErrorBody::new(
                    ErrorCode::Unavailable,
                    "this node holds no read lease",
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
        CacheMsg::Panic => panic!("test hook: cache actor panic"),
        CacheMsg::Filled { id, result } => {
            for answer in state.core.complete_fetch_in_order(id, result) {
                deliver(answer);
            }
        }
        CacheMsg::PublishStats => {
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
                            applied_seq: state.applied_seq,
                        },
                    )
                    .await;
            }
        }
    }
    Ok(())
}

/// Sends a lookup's answer to its waiter.
fn deliver(answer: Answer<Waiter, FillError>) {
    let (waiter, values) = answer.into_values();
    let _ = waiter.send(values.map_err(|e| match e {
        crate::cache::FetchError::Failed(body) => body,
        crate::cache::FetchError::Missing => {
            ErrorBody::new(ErrorCode::Internal, "a fill brought no value for a key")
        }
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
            match lookup::<StoreMsg>(&ctx.names.store) {
                Some(store) => match store
                    .call(|reply| StoreMsg::Fill { keys, reply }, Some(FILL_TIMEOUT))
                    .await
                {
                    Ok(ractor::rpc::CallResult::Success(r)) => r.map(|(_, values)| values),
                    _ => Err(ErrorBody::new(
                        ErrorCode::Unavailable,
                        "the store did not answer the fill",
                    )),
                },
                None => Err(ErrorBody::new(
                    ErrorCode::Unavailable,
                    "the store actor is restarting",
                )),
            }
        } else if let Some(leader) = leader {
            let req = FillRequest {
                term,
                node: ctx.cfg.id.clone(),
                keys,
            };
            match ctx
                .net
                .request::<_, instaface_bus::graph::Reply<FillReply>>(
                    ctx.net.subjects().fill(&leader),
                    &req,
                    FILL_TIMEOUT,
                )
                .await
            {
                Ok(instaface_bus::graph::Reply::Ok(fill)) => Ok(fill.values),
                Ok(instaface_bus::graph::Reply::Error(e)) => Err(e),
                Err(e) => Err(ErrorBody::new(
                    ErrorCode::Unavailable,
                    format!("fill from the leader failed: {e}"),
                )),
            }
        } else {
            Err(ErrorBody::new(
                ErrorCode::Unavailable,
                "no leader to fill from",
            ))
        };
        cast_to(&ctx.names.cache, CacheMsg::Filled { id, result });
    });
}
