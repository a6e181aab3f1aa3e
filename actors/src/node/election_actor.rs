//! The election actor: wraps the pure [`ElectionCore`], turning NATS messages and ticks into
//! its inputs and performing its outputs. It has almost no logic of its own.
//!
//! After every step it publishes the [`ClusterView`] (role, term, leader, lease, the
//! leader's view of each follower) and tells the other actors when the role changes.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use instaface_bus::messages::{
    Ack, AckConfirm, CandidacyState, EventKind, Role, TimeoutNow, VoteReply, VoteRequest,
};
use instaface_bus::NodeId;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tracing::Instrument;

use super::cache_actor::CacheMsg;
use super::heartbeat_actor::HeartbeatMsg;
use super::store_actor::StoreMsg;
use super::view::{ClusterView, FollowerProgress};
use super::{cast_to, NodeContext};
use crate::election::{ElectionConfig, ElectionCore, Input, Output};

/// How often the core is ticked. Its own deadlines are far coarser (heartbeat 100 ms).
const TICK: Duration = Duration::from_millis(10);

pub enum ElectionMsg {
    Tick,
    /// A heartbeat from a leader, after its invalidations were applied to the cache.
    Heartbeat {
        term: u64,
        leader: NodeId,
        hb: u64,
        members: Vec<NodeId>,
    },
    VoteRequest(VoteRequest),
    VoteReply(VoteReply),
    /// An ack at the leader; `reply` is where its confirmation goes.
    Ack {
        ack: Ack,
        reply: Option<String>,
    },
    AckConfirm(AckConfirm),
    /// Send an ack now (after an invalidation was applied).
    AckNow,
    TimeoutNow(TimeoutNow),
    Membership(BTreeSet<NodeId>),
    /// The store could not raise the fence: a later term exists; step down.
    Fenced {
        term: u64,
    },
    /// Graceful shutdown: hand leadership over; replies whether it was handed over.
    Transfer(RpcReplyPort<bool>),
    /// Test hook: panic inside the handler.
    Panic,
}

pub struct ElectionActor;

pub struct ElectionState {
    ctx: NodeContext,
    core: ElectionCore,
    last_role: (Role, u64, Option<NodeId>),
}

impl ElectionState {
    fn instant(&self, d: Duration) -> Instant {
        self.ctx.origin + d
    }

    fn span(&self) -> tracing::Span {
        tracing::info_span!("election", node = %self.ctx.cfg.id, term = self.core.term())
    }
}

impl Actor for ElectionActor {
    type Msg = ElectionMsg;
    type State = ElectionState;
    type Arguments = NodeContext;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        ctx: NodeContext,
    ) -> Result<Self::State, ActorProcessingErr> {
        let cfg = &ctx.cfg;
        let ecfg = ElectionConfig {
            id: cfg.id.clone(),
            heartbeat: cfg.heartbeat,
            election_min: cfg.election_min,
            election_max: cfg.election_max,
            lease: cfg.lease,
            drift: cfg.drift,
        };
        ecfg.validate()
            .map_err(|e| format!("election config: {e}"))?;
        let seed = rand::random::<u64>();
        let core = ElectionCore::new(ecfg, seed, ctx.now(), Default::default());
        myself.send_interval(TICK, || ElectionMsg::Tick);
        let last_role = (core.role(), core.term(), core.leader().cloned());
        Ok(ElectionState {
            ctx,
            core,
            last_role,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let span = state.span();
        async move {
            let now = state.ctx.now();
            let mut ack_reply = None;
            let mut ack_applied = 0;
            let input = match msg {
                ElectionMsg::Tick => Input::Tick,
                ElectionMsg::Heartbeat {
                    term,
                    leader,
                    hb,
                    members,
                } => {
                    state.ctx.metrics.heartbeats_received.inc();
                    Input::Heartbeat {
                        term,
                        leader,
                        hb,
                        members,
                        applied_seq: state.ctx.applied_seq(),
                    }
                }
                ElectionMsg::VoteRequest(r) => Input::VoteRequest(r),
                ElectionMsg::VoteReply(r) => Input::VoteReply(r),
                ElectionMsg::Ack { ack, reply } => {
                    state.ctx.metrics.acks_received.inc();
                    ack_reply = reply;
                    ack_applied = ack.applied_seq;
                    Input::Ack { ack, may_confirm: true }
                }
                ElectionMsg::AckConfirm(c) => Input::AckConfirm(c),
                ElectionMsg::AckNow => Input::AckNow {
                    applied_seq: state.ctx.applied_seq(),
                },
                ElectionMsg::TimeoutNow(t) => Input::TimeoutNow(t),
                ElectionMsg::Membership(m) => Input::Membership(m),
                // A later leader raised the fence: our term is over.
                ElectionMsg::Fenced { term } => Input::ObservedTerm(term),
                ElectionMsg::Transfer(reply) => {
                    let was_leader = state.core.role() == Role::Leader;
                    let outs = state.core.step(now, Input::TransferLeadership);
                    publish_view(state);
                    perform(state, outs, None).await;
                    let _ = reply.send(was_leader);
                    return;
                }
                ElectionMsg::Panic => panic!("test hook: election actor panic"),
            };
            let outs = state.core.step(now, input);
            // The view first, so actors told of a role change already see it.
            publish_view(state);
            let was_ack = ack_reply.is_some();
            perform(state, outs, ack_reply.map(|r| (r, ack_applied))).await;
            if was_ack && state.core.role() == Role::Leader {
                // A follower's progress moved: pending writes may be covered now (the
                // heartbeat actor's own tick is only the fallback for lapsing leases).
                cast_to(&state.ctx.names.heartbeat, HeartbeatMsg::CheckCovered);
            }
        }
        .instrument(span)
        .await;
        Ok(())
    }
}

/// Performs the core's outputs: sends, replies, events and notifications.
///
/// `ack_reply` is where the confirmation of the ack just stepped goes, with that ack's
/// `applied_seq`: a leader that has not loaded its outbox yet, or a follower that has not
/// applied what it replayed, gets no confirmation, hence no read lease.
async fn perform(state: &mut ElectionState, outs: Vec<Output>, ack_reply: Option<(String, u64)>) {
    let ctx = state.ctx.clone();
    let subjects = ctx.net.subjects().clone();
    for out in outs {
        match out {
            Output::BroadcastHeartbeat { term, hb, members } => {
                cast_to(
                    &ctx.names.heartbeat,
                    HeartbeatMsg::Publish { term, hb, members },
                );
            }
            Output::SendAck { to, mut ack } => {
                ack.applied_seq = ctx.applied_seq();
                let net = ctx.net.clone();
                let election = ctx.names.election.clone();
                let timeout = ctx.cfg.heartbeat * 3;
                tokio::spawn(async move {
                    match net
                        .request::<_, AckConfirm>(net.subjects().ack(&to), &ack, timeout)
                        .await
                    {
                        Ok(confirm) => {
                            cast_to(&election, ElectionMsg::AckConfirm(confirm));
                        }
                        Err(e) => tracing::trace!(error = %e, "ack not confirmed"),
                    }
                });
            }
            Output::AckReply { to: _, mut confirm } => {
                if let Some((reply, applied)) = &ack_reply {
                    confirm.confirmed &= ctx.leader_ready().is_some_and(|ready| *applied >= ready);
                    if let Err(e) = ctx.net.send(reply.clone(), &confirm).await {
                        tracing::debug!(error = %e, "ack confirmation not sent");
                    }
                }
            }
            Output::BroadcastVoteRequest(req) => {
                let _ = ctx.net.send(subjects.vote(), &req).await;
            }
            Output::SendVoteReply { to, reply } => {
                if reply.granted {
                    ctx.metrics.votes_granted.inc();
                }
                let _ = ctx.net.send(subjects.vote_reply(&to), &reply).await;
            }
            Output::SendTimeoutNow { to, msg } => {
                tracing::info!(target_node = %to, "handing leadership over");
                let _ = ctx.net.send(subjects.timeout_now(&to), &msg).await;
            }
            Output::Persist(_) => {}
            Output::RoleChanged { role, term, leader } => {
                role_changed(state, role, term, leader).await;
            }
            Output::Candidacy {
                state: cstate,
                pre_vote,
                term,
            } => {
                if cstate == CandidacyState::Started && pre_vote {
                    ctx.metrics.elections_started.inc();
                }
                tracing::info!(?cstate, pre_vote, term, "candidacy");
                ctx.net
                    .event(
                        term,
                        EventKind::Candidacy {
                            state: cstate,
                            pre_vote,
                        },
                    )
                    .await;
            }
            Output::Reachability { peer, reachable } => {
                tracing::info!(%peer, reachable, "follower reachability changed");
                ctx.net
                    .event(state.core.term(), EventKind::Reachable { peer, reachable })
                    .await;
            }
        }
    }
}

async fn role_changed(state: &mut ElectionState, role: Role, term: u64, leader: Option<NodeId>) {
    let ctx = &state.ctx;
    let current = (role, term, leader.clone());
    if current == state.last_role {
        return;
    }
    state.last_role = current;
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
            let members: Vec<NodeId> = state.core.members().iter().cloned().collect();
            ctx.net.event(term, EventKind::Leader { members }).await;
        }
        Role::Follower => {
            tracing::info!(term, leader = ?leader, "follower");
            ctx.net
                .event(
                    term,
                    EventKind::Follower {
                        leader: leader.clone(),
                    },
                )
                .await;
        }
        Role::PreCandidate | Role::Candidate => {}
    }
    cast_to(&ctx.names.store, StoreMsg::RoleChanged { role, term });
    cast_to(
        &ctx.names.heartbeat,
        HeartbeatMsg::RoleChanged {
            role,
            term,
            leader: leader.clone(),
        },
    );
    cast_to(
        &ctx.names.cache,
        CacheMsg::RoleChanged { role, term, leader },
    );
}

/// Publishes the node's view for the other actors (only when it changed).
fn publish_view(state: &ElectionState) {
    let now = state.ctx.now();
    let core = &state.core;
    let ready = core.role() != Role::Leader || state.ctx.leader_ready().is_some();
    let lease_until = core
        .read_lease_until(now)
        .filter(|_| ready)
        .map(|d| state.instant(d));
    let followers = if core.role() == Role::Leader {
        core.followers()
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
        members: core.members().iter().cloned().collect(),
        lease_until,
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
