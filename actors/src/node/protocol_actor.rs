//! The protocol actor: the shell around the node's [`NodeCore`]. It turns NATS messages,
//! ticks, Redis reads and the store's results into [`Event`]s and performs the
//! [`Command`]s that come out, in an order that keeps the core's promises:
//!
//! 1. the term and vote are persisted (fsynced) before anything else of the step;
//! 2. cache commands, then the node's serving right, are applied to the shared
//!    [`NodeCache`](super::node_cache::NodeCache) before anything of the step leaves the
//!    node — so an ack reporting an `applied_seq`, or a vote reply that gives up a lease,
//!    is sent only after the cache has dropped those keys, or stopped serving, for every
//!    read that starts later;
//! 3. the [`ClusterView`] is published; then the rest, in order.
//!
//! It holds the replies of writes waiting for coverage, and has no other logic.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use instaface_bus::graph::{ErrorBody, ErrorCode, WriteOutcome};
use instaface_bus::messages::{AckConfirm, EventKind, Role};
use instaface_bus::NodeId;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tracing::Instrument;

use super::messages::{CommittedWrite, ProtocolMsg, StoreMsg, WriteReply};
use super::view::{ClusterView, FollowerProgress};
use super::vote_file::VoteFile;
use super::{cast_to, NodeContext};
use crate::election::ElectionConfig;
use crate::invalidation::{LogConfig, WriteId};
use crate::protocol::{BatchedWrite, Command, Event, NodeCore, WriteAnswer};

/// How often the core is ticked. Its own deadlines are far coarser (heartbeat 100 ms).
const TICK: Duration = Duration::from_millis(10);

pub struct ProtocolActor;

/// A write waiting for its seq to be covered.
struct Waiting {
    outcome: WriteOutcome,
    reply: WriteReply,
    since: Instant,
}

pub struct ProtocolState {
    ctx: NodeContext,
    core: NodeCore,
    votes: VoteFile,
    waiting: HashMap<WriteId, Waiting>,
    next_write: u64,
    /// What the cache was last told about serving.
    told_cache: Option<(Option<Instant>, Role, u64, Option<NodeId>)>,
    /// Test hook: invalidations are held back.
    hold: bool,
}

impl ProtocolState {
    fn instant(&self, d: Duration) -> Instant {
        self.ctx.origin + d
    }
}

/// The election settings of this node, validated.
pub fn election_config(ctx: &NodeContext) -> Result<ElectionConfig, String> {
    let cfg = &ctx.cfg;
    let ecfg = ElectionConfig {
        id: cfg.id.clone(),
        heartbeat: cfg.heartbeat,
        election_min: cfg.election_min,
        election_max: cfg.election_max,
        lease: cfg.lease,
        drift: cfg.drift,
    };
    ecfg.validate().map(|()| ecfg)
}

impl Actor for ProtocolActor {
    type Msg = ProtocolMsg;
    type State = ProtocolState;
    type Arguments = NodeContext;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        ctx: NodeContext,
    ) -> Result<Self::State, ActorProcessingErr> {
        let ecfg = election_config(&ctx).map_err(|e| format!("election config: {e}"))?;
        let log =
            LogConfig { mode: ctx.cfg.invalidation, window_max: LogConfig::WINDOW_MAX, planted: ctx.cfg.planted_bug };
        let votes = VoteFile::new(&ctx.cfg.state_dir, ctx.net.subjects().group_prefix(), &ctx.cfg.id);
        let persisted = votes.load()?;
        tracing::info!(term = persisted.term, voted_for = ?persisted.voted_for, file = %votes.path().display(), "term and vote loaded");
        if ctx.net.bus().authenticates() {
            tracing::info!("cluster messages are authenticated with the cluster key");
        } else {
            tracing::warn!("no CLUSTER_KEY: cluster messages are not authenticated (anyone who may publish on the cluster's subjects can forge them)");
        }
        let mut core = NodeCore::new(ecfg, log, rand::random(), ctx.now(), persisted);
        // The configured members are trusted like Redis's: the node knows its cluster
        // before Redis answers.
        if !ctx.cfg.members.is_empty() {
            let mut members: std::collections::BTreeSet<NodeId> = ctx.cfg.members.iter().cloned().collect();
            members.insert(ctx.cfg.id.clone());
            core.step(ctx.now(), Event::Membership(members));
        }
        // A (re)started tree starts from nothing applied: its cache is new and empty.
        ctx.applied_seq.store(0, Ordering::SeqCst);
        myself.send_interval(TICK, || ProtocolMsg::Tick);
        let mut state =
            ProtocolState { ctx, core, votes, waiting: HashMap::new(), next_write: 0, told_cache: None, hold: false };
        publish(&mut state);
        Ok(state)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let span = tracing::info_span!("protocol", node = %state.ctx.cfg.id, term = state.core.term());
        on_message(msg, state).instrument(span).await
    }
}

async fn on_message(msg: ProtocolMsg, state: &mut ProtocolState) -> Result<(), ActorProcessingErr> {
    let mut ack_reply = None;
    let event = match msg {
        ProtocolMsg::Tick => Event::Tick,
        ProtocolMsg::Heartbeat(hb) => {
            state.ctx.metrics.heartbeats_received.inc();
            Event::Heartbeat(hb)
        }
        ProtocolMsg::Invalidate(inv) => Event::Invalidate(inv),
        ProtocolMsg::VoteRequest(r) => Event::VoteRequest(r),
        ProtocolMsg::VoteReply(r) => Event::VoteReply(r),
        ProtocolMsg::Ack { ack, reply } => {
            state.ctx.metrics.acks_received.inc();
            ack_reply = reply;
            Event::Ack(ack)
        }
        ProtocolMsg::AckConfirm(c) => Event::AckConfirm(c),
        ProtocolMsg::TimeoutNow(t) => Event::TimeoutNow(t),
        ProtocolMsg::Membership(m) => Event::Membership(m),
        ProtocolMsg::Fenced { term } => Event::Fenced { term },
        ProtocolMsg::OutboxLoaded { term, latest, entries } => {
            tracing::info!(term, latest, rows = entries.len(), "outbox loaded; replaying it");
            Event::OutboxLoaded { term, latest, entries }
        }
        ProtocolMsg::Committed { term, writes } => {
            let mut batch = Vec::with_capacity(writes.len());
            for CommittedWrite { outcome, keys, op, reply } in writes {
                let seq = outcome.seq;
                if !keys.is_empty() {
                    state.ctx.net.event(term, EventKind::Write { seq, op: op.to_string(), keys: keys.clone() }).await;
                }
                let write = wait(state, outcome, reply);
                batch.push(BatchedWrite { seq, keys, write });
            }
            Event::Committed { term, writes: batch }
        }
        ProtocolMsg::Transfer(reply) => return transfer(state, None, reply).await,
        ProtocolMsg::TransferTo(to, reply) => return transfer(state, Some(to), reply).await,
        ProtocolMsg::Hold(on) => {
            state.hold = on;
            return Ok(());
        }
        ProtocolMsg::Panic => panic!("test hook: protocol actor panic"),
    };
    if let Err(reject) = state.core.admit(&event) {
        state.ctx.net.rejected(reject.label(), describe(&event));
        return Ok(());
    }
    let commands = state.core.step(state.ctx.now(), event);
    perform(state, commands, ack_reply).await
}

/// Hands leadership over (to `to`, if it may take it); replies whether this node led.
async fn transfer(
    state: &mut ProtocolState,
    to: Option<NodeId>,
    reply: ractor::RpcReplyPort<bool>,
) -> Result<(), ActorProcessingErr> {
    let was_leader = state.core.role() == Role::Leader;
    let commands = state.core.step(state.ctx.now(), Event::TransferLeadership { to });
    perform(state, commands, None).await?;
    let _ = reply.send(was_leader);
    Ok(())
}

/// Who a refused message came from, for the log.
fn describe(event: &Event) -> String {
    match event {
        Event::Heartbeat(h) => format!("heartbeat from {:?} of term {}", h.leader, h.term),
        Event::Invalidate(i) => format!("invalidation from {:?} of term {}", i.leader, i.term),
        Event::VoteRequest(r) => format!("vote request from {:?} for term {}", r.candidate, r.term),
        Event::VoteReply(r) => format!("vote reply from {:?} of term {}", r.voter, r.term),
        Event::Ack(a) => format!("ack from {:?} of term {}", a.node, a.term),
        Event::AckConfirm(c) => format!("ack confirmation from {:?} of term {}", c.leader, c.term),
        Event::TimeoutNow(t) => format!("leadership transfer from {:?} of term {}", t.leader, t.term),
        Event::Membership(m) => format!("membership {m:?}"),
        other => format!("{other:?}"),
    }
}

/// Files a write's reply until the core answers it.
fn wait(state: &mut ProtocolState, outcome: WriteOutcome, reply: WriteReply) -> WriteId {
    let id = WriteId(state.next_write);
    state.next_write += 1;
    state.waiting.insert(id, Waiting { outcome, reply, since: Instant::now() });
    id
}

/// Performs a step's commands in the order the module docs give. `ack_reply` is where
/// the confirmation of the ack just stepped goes.
async fn perform(
    state: &mut ProtocolState,
    commands: Vec<Command>,
    mut ack_reply: Option<String>,
) -> Result<(), ActorProcessingErr> {
    // 1. The term and vote, durably, before anything that depends on them.
    for c in &commands {
        if let Command::Persist(vote) = c {
            let (file, vote) = (state.votes.clone(), vote.clone());
            tokio::task::spawn_blocking(move || file.save(&vote))
                .await
                .map_err(|e| format!("persisting the vote: {e}"))??;
        }
    }
    // 2. The cache, in order, then its serving right.
    for c in &commands {
        match c {
            Command::CacheInvalidate(keys) => state.ctx.cache().invalidate(keys),
            Command::CacheClear => state.ctx.cache().clear(),
            _ => {}
        }
    }
    // 3. What the rest of the node reads.
    publish(state);
    // 4. Everything else, in order.
    let ctx = state.ctx.clone();
    let subjects = ctx.net.subjects().clone();
    for c in commands {
        match c {
            Command::Persist(_) | Command::CacheInvalidate(_) | Command::CacheClear => {}
            Command::RoleChanged { role, term, leader } => role_changed(state, role, term, leader).await,
            Command::BroadcastHeartbeat(mut hb) => {
                if state.hold {
                    // Claim nothing past what every follower already has.
                    hb.seq = hb.floor;
                    hb.invalidations.clear();
                }
                ctx.metrics.heartbeats_sent.inc();
                if let Err(e) = ctx.net.send(subjects.heartbeat(), &hb).await {
                    tracing::debug!(error = %e, "heartbeat not published");
                }
            }
            Command::BroadcastInvalidate(inv) => {
                if state.hold {
                    tracing::warn!(seq = inv.seq, "test hook: invalidation held back");
                } else if let Err(e) = ctx.net.send(subjects.invalidate(), &inv).await {
                    tracing::debug!(error = %e, "invalidation not broadcast; heartbeats carry it");
                }
            }
            Command::SendAck { to, ack } => {
                let net = ctx.net.clone();
                let protocol = ctx.names.protocol.clone();
                let timeout = ctx.cfg.heartbeat * 3;
                tokio::spawn(async move {
                    match net.request::<_, AckConfirm>(net.subjects().ack(&to), &ack, timeout).await {
                        Ok(confirm) => {
                            cast_to(&protocol, ProtocolMsg::AckConfirm(confirm));
                        }
                        Err(e) => tracing::trace!(error = %e, "ack not confirmed"),
                    }
                });
            }
            Command::AckReply { confirm, .. } => {
                if let Some(reply) = ack_reply.take() {
                    if let Err(e) = ctx.net.send(reply, &confirm).await {
                        tracing::debug!(error = %e, "ack confirmation not sent");
                    }
                }
            }
            Command::BroadcastVoteRequest(req) => {
                let _ = ctx.net.send(subjects.vote(), &req).await;
            }
            Command::SendVoteReply { to, reply } => {
                if reply.granted {
                    ctx.metrics.votes_granted.inc();
                }
                let _ = ctx.net.send(subjects.vote_reply(&to), &reply).await;
            }
            Command::SendTimeoutNow { to, msg } => {
                tracing::info!(target_node = %to, "handing leadership over");
                let _ = ctx.net.send(subjects.timeout_now(&to), &msg).await;
            }
            Command::Answer { write, seq, answer } => answer_write(state, write, seq, answer).await,
            Command::PruneOutbox { through } => {
                cast_to(&ctx.names.store, StoreMsg::PruneOutbox { through });
            }
            Command::Candidacy { state: cstate, pre_vote, term } => {
                if cstate == instaface_bus::messages::CandidacyState::Started && pre_vote {
                    ctx.metrics.elections_started.inc();
                }
                tracing::info!(?cstate, pre_vote, term, "candidacy");
                ctx.net.event(term, EventKind::Candidacy { state: cstate, pre_vote }).await;
            }
            Command::Reachability { peer, reachable } => {
                tracing::info!(%peer, reachable, "follower reachability changed");
                ctx.net.event(state.core.term(), EventKind::Reachable { peer, reachable }).await;
            }
        }
    }
    Ok(())
}

async fn answer_write(state: &mut ProtocolState, write: WriteId, seq: u64, answer: WriteAnswer) {
    let Some(w) = state.waiting.remove(&write) else {
        return;
    };
    let ctx = &state.ctx;
    match answer {
        WriteAnswer::Covered { acked_by } => {
            ctx.metrics.write_seconds.observe(w.since.elapsed().as_secs_f64());
            let _ = w.reply.send(Ok(w.outcome));
            ctx.net.event(state.core.term(), EventKind::Invalidation { seq, acked_by }).await;
        }
        WriteAnswer::Unconfirmed => {
            let _ = w.reply.send(Err(ErrorBody::new(
                ErrorCode::Unavailable,
                format!(
                    "the write's outcome is unknown: it committed (or observed seq {seq}) but this node stopped leading before every follower had it; a later leader replays it"
                ),
            )));
        }
    }
}

/// Publishes the node's view and tells the cache its serving right when it changed.
fn publish(state: &mut ProtocolState) {
    let now = state.ctx.now();
    let core = &state.core;
    let serving_until = core.serving_until(now).map(|d| state.instant(d));
    let told = (serving_until, core.role(), core.term(), core.leader().cloned());
    if state.told_cache.as_ref() != Some(&told) {
        let (until, role, term, leader) = told.clone();
        state.ctx.cache().set_serving(until, role, term, leader);
        state.told_cache = Some(told);
    }
    let applied = core.applied_seq();
    state.ctx.applied_seq.store(applied, Ordering::SeqCst);
    state.ctx.metrics.applied_seq.set(applied as i64);
    let followers = if core.role() == Role::Leader {
        core.election()
            .followers()
            .map(|f| FollowerProgress {
                lease_bound: state.instant(f.lease_bound),
                last_ack: f.last_ack.map(|d| state.instant(d)),
                applied_seq: f.applied_seq.unwrap_or(0),
                id: f.id.clone(),
            })
            .collect()
    } else {
        Vec::new()
    };
    let view = ClusterView {
        role: core.role(),
        term: core.term(),
        leader: core.leader().cloned(),
        members: core.election().members().iter().cloned().collect(),
        lease_until: serving_until,
        followers,
    };
    state.ctx.view.send_if_modified(|v| {
        if *v != view {
            *v = view;
            true
        } else {
            false
        }
    });
}

async fn role_changed(state: &mut ProtocolState, role: Role, term: u64, leader: Option<NodeId>) {
    let ctx = &state.ctx;
    ctx.metrics.term.set(term as i64);
    ctx.metrics.role.set(match role {
        Role::Follower => 0,
        Role::PreCandidate => 1,
        Role::Candidate => 2,
        Role::Leader => 3,
    });
    match role {
        Role::Leader => {
            ctx.metrics.elections_won.inc();
            tracing::info!(term, "became leader");
            let members: Vec<NodeId> = state.core.election().members().iter().cloned().collect();
            ctx.net.event(term, EventKind::Leader { members }).await;
        }
        Role::Follower => {
            tracing::info!(term, ?leader, "following");
            ctx.net.event(term, EventKind::Follower { leader }).await;
        }
        Role::PreCandidate | Role::Candidate => {}
    }
}
