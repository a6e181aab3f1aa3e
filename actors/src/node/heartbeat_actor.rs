//! The heartbeat actor: the invalidation log on both sides of the wire.
//!
//! Leader: publishes heartbeats carrying the retained invalidations (`seq > floor`), takes
//! each committed write from the store actor, invalidates its own cache, broadcasts the
//! invalidation on `P.invalidate`, and answers the write once it is covered — every
//! follower acked it or its read lease has certainly lapsed (`INVALIDATION=lease`), or at
//! once (`async`). It prunes the window and the MySQL outbox past what every member applied.
//!
//! Follower: applies the invalidations of each heartbeat and broadcast to its cache (the
//! cache actor answers with its `applied_seq`), then hands the heartbeat to the election
//! actor, whose ack carries that `applied_seq`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use instaface_bus::graph::{ErrorBody, ErrorCode, WriteOutcome};
use instaface_bus::messages::{EventKind, Heartbeat, Invalidate, InvalidationEntry, Role};
use instaface_bus::NodeId;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tracing::Instrument;

use super::cache_actor::CacheMsg;
use super::config::InvalidationMode;
use super::election_actor::ElectionMsg;
use super::store_actor::StoreMsg;
use super::{cast_to, lookup, NodeContext};

/// Invalidations a heartbeat carries at most; a follower behind them clears its cache.
pub const WINDOW_MAX: usize = 512;
/// How often pending writes are checked against the followers' progress.
const COVER_TICK: Duration = Duration::from_millis(5);

pub enum HeartbeatMsg {
    /// Leader: the election core's heartbeat is due.
    Publish {
        term: u64,
        hb: u64,
        members: Vec<NodeId>,
    },
    /// Follower: a heartbeat from a leader.
    Received(Heartbeat),
    /// Follower: an invalidation broadcast.
    Invalidate(Invalidate),
    RoleChanged {
        role: Role,
        term: u64,
        leader: Option<NodeId>,
    },
    /// Leader: the outbox as loaded from MySQL on taking office.
    OutboxLoaded {
        term: u64,
        latest: u64,
        entries: Vec<InvalidationEntry>,
    },
    /// Leader: a write committed; answer `reply` once its invalidation is covered.
    Committed {
        term: u64,
        outcome: WriteOutcome,
        keys: Vec<String>,
        op: &'static str,
        reply: RpcReplyPort<Result<WriteOutcome, ErrorBody>>,
    },
    /// Check pending writes against the followers' progress.
    CheckCovered,
    /// Test hook: stop (or resume) sending invalidations, broadcast and in heartbeats.
    Hold(bool),
}

struct PendingWrite {
    seq: u64,
    outcome: WriteOutcome,
    reply: RpcReplyPort<Result<WriteOutcome, ErrorBody>>,
    since: Instant,
}

pub struct HeartbeatActor;

pub struct HeartbeatState {
    ctx: NodeContext,
    role: Role,
    term: u64,
    /// Leader: retained invalidations, oldest first; all with `seq > floor` are here.
    window: VecDeque<InvalidationEntry>,
    floor: u64,
    /// Leader: the latest seq committed or loaded.
    seq: u64,
    /// Leader: the outbox has been loaded for this term (writes may be answered).
    loaded: bool,
    pending: VecDeque<PendingWrite>,
    /// Through which seq the MySQL outbox was last pruned.
    pruned_through: u64,
    /// Test hook: invalidations are held back.
    hold: bool,
}

impl Actor for HeartbeatActor {
    type Msg = HeartbeatMsg;
    type State = HeartbeatState;
    type Arguments = NodeContext;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        ctx: NodeContext,
    ) -> Result<Self::State, ActorProcessingErr> {
        myself.send_interval(COVER_TICK, || HeartbeatMsg::CheckCovered);
        let view = ctx.view.borrow().clone();
        Ok(HeartbeatState {
            role: view.role,
            term: view.term,
            ctx,
            window: VecDeque::new(),
            floor: 0,
            seq: 0,
            loaded: false,
            pending: VecDeque::new(),
            pruned_through: 0,
            hold: false,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let span = tracing::info_span!("heartbeat", node = %state.ctx.cfg.id, term = state.term);
        on_message(myself, msg, state).instrument(span).await
    }
}

async fn on_message(
    _myself: ActorRef<HeartbeatMsg>,
    msg: HeartbeatMsg,
    state: &mut HeartbeatState,
) -> Result<(), ActorProcessingErr> {
    match msg {
        HeartbeatMsg::Publish { term, hb, members } => {
            if state.role != Role::Leader || term != state.term {
                return Ok(());
            }
            // Until the outbox is loaded this leader knows no seq and claims none (0);
            // the test hook `hold` keeps invalidations back.
            let (seq, invalidations) = if !state.loaded || state.hold {
                (state.floor, Vec::new())
            } else {
                (state.seq, state.window.iter().cloned().collect())
            };
            let heartbeat = Heartbeat {
                term,
                leader: state.ctx.cfg.id.clone(),
                seq,
                floor: state.floor,
                invalidations,
                hb,
                members,
            };
            state.ctx.metrics.heartbeats_sent.inc();
            if let Err(e) = state
                .ctx
                .net
                .send(state.ctx.net.subjects().heartbeat(), &heartbeat)
                .await
            {
                tracing::debug!(error = %e, "heartbeat not published");
            }
        }
        HeartbeatMsg::Received(hb) => {
            let applied = apply_at_cache(
                &state.ctx,
                CacheApply::Window {
                    floor: hb.floor,
                    seq: hb.seq,
                    entries: hb.invalidations,
                },
            )
            .await;
            if applied.is_some() {
                cast_to(
                    &state.ctx.names.election,
                    ElectionMsg::Heartbeat {
                        term: hb.term,
                        leader: hb.leader,
                        hb: hb.hb,
                        members: hb.members,
                    },
                );
            }
        }
        HeartbeatMsg::Invalidate(inv) => {
            if state.role == Role::Leader {
                return Ok(());
            }
            let applied = apply_at_cache(
                &state.ctx,
                CacheApply::One {
                    prev_seq: inv.prev_seq,
                    seq: inv.seq,
                    keys: inv.keys,
                },
            )
            .await;
            if applied.is_some() {
                cast_to(&state.ctx.names.election, ElectionMsg::AckNow);
            }
        }
        HeartbeatMsg::RoleChanged { role, term, .. } => {
            if role != state.role || term != state.term {
                // Writes still waiting belong to a term that is over: their outcome is
                // committed but unconfirmed, which the client must hear as such.
                for p in state.pending.drain(..) {
                    let _ = p.reply.send(Err(ErrorBody::new(
                            ErrorCode::Unavailable,
                            format!(
                                "write committed as seq {} but leadership changed before its invalidation was confirmed; it will be applied",
                                p.seq
                            ),
                        )));
                }
                state.loaded = false;
                // A past tenure's log says nothing about this one: a heartbeat claiming its
                // old `seq` would move followers past invalidations they never saw.
                state.window.clear();
                state.seq = 0;
                state.floor = 0;
                state.pruned_through = 0;
                state
                    .ctx
                    .ready_seq
                    .store(super::NOT_READY, std::sync::atomic::Ordering::SeqCst);
            }
            state.role = role;
            state.term = term;
        }
        HeartbeatMsg::OutboxLoaded {
            term,
            latest,
            entries,
        } => {
            if term != state.term || state.role != Role::Leader {
                return Ok(());
            }
            state.floor = entries
                .first()
                .map(|e| e.seq.saturating_sub(1))
                .unwrap_or(latest);
            state.window = entries.into_iter().collect();
            while state.window.len() > WINDOW_MAX {
                if let Some(e) = state.window.pop_front() {
                    state.floor = e.seq;
                }
            }
            state.seq = latest;
            state.pruned_through = state.floor;
            // This node's own cache, filled while it followed, may miss what it
            // replays now: apply the retained window to it like any follower would.
            let applied = apply_at_cache(
                &state.ctx,
                CacheApply::Window {
                    floor: state.floor,
                    seq: latest,
                    entries: state.window.iter().cloned().collect(),
                },
            )
            .await;
            if applied.is_none_or(|a| a < latest) {
                tracing::warn!(
                    ?applied,
                    latest,
                    "own cache could not catch up; not serving yet"
                );
                return Ok(());
            }
            state.loaded = true;
            state
                .ctx
                .ready_seq
                .store(latest, std::sync::atomic::Ordering::SeqCst);
            tracing::info!(
                term,
                latest,
                retained = state.window.len(),
                "outbox loaded; replaying it in heartbeats"
            );
        }
        HeartbeatMsg::Committed {
            term,
            outcome,
            keys,
            op,
            reply,
        } => {
            if term != state.term || state.role != Role::Leader {
                let _ = reply.send(Err(ErrorBody::new(
                    ErrorCode::Unavailable,
                    format!(
                        "write committed as seq {} but this node stopped leading",
                        outcome.seq
                    ),
                )));
                return Ok(());
            }
            let prev_seq = state.seq;
            let seq = outcome.seq;
            state.seq = seq.max(state.seq);
            state.window.push_back(InvalidationEntry {
                seq,
                keys: keys.clone(),
            });
            while state.window.len() > WINDOW_MAX {
                if let Some(e) = state.window.pop_front() {
                    state.floor = e.seq;
                }
            }
            // Own cache first, then the followers.
            apply_at_cache(
                &state.ctx,
                CacheApply::Own {
                    seq,
                    keys: keys.clone(),
                },
            )
            .await;
            let inv = Invalidate {
                term,
                leader: state.ctx.cfg.id.clone(),
                seq,
                prev_seq,
                keys: keys.clone(),
            };
            if state.hold {
                tracing::warn!(seq, "test hook: invalidation held back");
            } else if let Err(e) = state
                .ctx
                .net
                .send(state.ctx.net.subjects().invalidate(), &inv)
                .await
            {
                tracing::debug!(error = %e, "invalidation not broadcast; heartbeats carry it");
            }
            state
                .ctx
                .net
                .event(
                    term,
                    EventKind::Write {
                        seq,
                        op: op.to_string(),
                        keys,
                    },
                )
                .await;
            let pending = PendingWrite {
                seq,
                outcome,
                reply,
                since: Instant::now(),
            };
            match state.ctx.cfg.invalidation {
                InvalidationMode::Async => answer(&state.ctx, pending),
                InvalidationMode::Lease => state.pending.push_back(pending),
            }
        }
        HeartbeatMsg::Hold(on) => {
            state.hold = on;
        }
        HeartbeatMsg::CheckCovered => {
            if state.role == Role::Leader {
                check_covered(state).await;
            }
        }
    }
    Ok(())
}

fn answer(ctx: &NodeContext, p: PendingWrite) {
    ctx.metrics
        .write_seconds
        .observe(p.since.elapsed().as_secs_f64());
    let _ = p.reply.send(Ok(p.outcome));
}

/// Answers every pending write that is covered; prunes what every member applied.
async fn check_covered(state: &mut HeartbeatState) {
    let view = state.ctx.view.borrow().clone();
    if view.role != Role::Leader || view.term != state.term {
        return;
    }
    let now = Instant::now();
    let me = &state.ctx.cfg.id;
    let others: Vec<_> = view.followers.iter().filter(|f| &f.id != me).collect();
    while let Some(p) = state.pending.front() {
        let covered = others
            .iter()
            .all(|f| f.applied_seq >= p.seq || now >= f.lease_bound);
        if !covered {
            break;
        }
        if let Some(p) = state.pending.pop_front() {
            let acked_by = others
                .iter()
                .filter(|f| f.applied_seq >= p.seq)
                .map(|f| f.id.clone())
                .collect();
            state
                .ctx
                .net
                .event(
                    state.term,
                    EventKind::Invalidation {
                        seq: p.seq,
                        acked_by,
                    },
                )
                .await;
            answer(&state.ctx, p);
        }
    }
    // Every member (each follower that acked, and this leader) applied up to `min`.
    let min_applied = others
        .iter()
        .map(|f| f.applied_seq)
        .min()
        .unwrap_or(state.seq);
    let all_applied = min_applied.min(state.seq);
    while state.window.front().is_some_and(|e| e.seq <= all_applied) {
        if let Some(e) = state.window.pop_front() {
            state.floor = e.seq;
        }
    }
    let prune_to = state.floor;
    if state.loaded && prune_to > state.pruned_through {
        state.pruned_through = prune_to;
        cast_to(
            &state.ctx.names.store,
            StoreMsg::PruneOutbox { through: prune_to },
        );
    }
}

/// What a cache is asked to apply.
pub enum CacheApply {
    /// A heartbeat's window: every invalidation with `seq > floor`, up to `seq`.
    Window {
        floor: u64,
        seq: u64,
        entries: Vec<InvalidationEntry>,
    },
    /// One broadcast invalidation that follows `prev_seq`.
    One {
        prev_seq: u64,
        seq: u64,
        keys: Vec<String>,
    },
    /// The leader's own write.
    Own { seq: u64, keys: Vec<String> },
}

/// Applies invalidations at the cache actor and returns its `applied_seq` afterwards
/// (`None` if the cache actor is not running).
async fn apply_at_cache(ctx: &NodeContext, apply: CacheApply) -> Option<u64> {
    let cache = lookup::<CacheMsg>(&ctx.names.cache)?;
    match cache
        .call(
            |reply| CacheMsg::Apply(apply, reply),
            Some(Duration::from_secs(2)),
        )
        .await
    {
        Ok(ractor::rpc::CallResult::Success(seq)) => Some(seq),
        _ => None,
    }
}
