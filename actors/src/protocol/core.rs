//! [`NodeCore`]: one node's whole protocol — the election core and the invalidation log
//! stepped together, so the rules that tie them (which acks earn a lease, when a write is
//! answered, what a heartbeat claims, what a new leader must replay before it serves) sit
//! in one synchronous `step`.

use std::time::Duration;

use instaface_bus::messages::{Heartbeat, Invalidate, Role};
use instaface_bus::NodeId;

use super::signals::{BatchedWrite, Command, Event, WriteAnswer};
use crate::election::{ElectionConfig, ElectionCore, FollowerView, Input, Output, PersistedVote, MAX_TERM};
use crate::invalidation::{apply_one, apply_window, CacheEffect, InvalidationMode, LeaderLog, LogConfig, PlantedBug};

/// Why a message was dropped without being stepped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reject {
    /// It names a node that is not a member.
    NotAMember,
    /// It names a node with an id no node can have.
    InvalidId,
    /// Its term is above [`MAX_TERM`].
    TermTooHigh,
}

impl Reject {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Reject::NotAMember => "not_a_member",
            Reject::InvalidId => "invalid_id",
            Reject::TermTooHigh => "term_too_high",
        }
    }
}

/// One node's protocol state. No I/O, no clock reads, no async: time comes in as `now`
/// (monotonic, since an arbitrary origin of this node's own).
#[derive(Debug)]
pub struct NodeCore {
    election: ElectionCore,
    log: LogConfig,
    /// Every invalidation up to here has been applied to this node's cache.
    applied: u64,
    /// While leading: the invalidation log of this term in office.
    leader_log: Option<LeaderLog>,
}

impl NodeCore {
    /// A node (re)starting at `now` with the term and vote it persisted.
    pub fn new(
        election: ElectionConfig,
        log: LogConfig,
        seed: u64,
        now: Duration,
        persisted: PersistedVote,
    ) -> NodeCore {
        let mut election = ElectionCore::new(election, seed, now, persisted);
        if log.bug(PlantedBug::ForgetEarlierLeases) {
            election.plant_forget_earlier_leases();
        }
        NodeCore { election, log, applied: 0, leader_log: None }
    }

    /// Whether `event` may be stepped at all: a message must come from a member (members
    /// come from the configuration and Redis only), name its nodes with valid ids, and
    /// carry a term no higher than [`MAX_TERM`]. `Err` says why it is dropped (the
    /// runtime counts it); [`step`](Self::step) drops it the same way.
    pub fn admit(&self, event: &Event) -> Result<(), Reject> {
        let (term, from) = match event {
            Event::Heartbeat(h) => (h.term, Some(&h.leader)),
            Event::Invalidate(i) => (i.term, Some(&i.leader)),
            Event::VoteRequest(r) => (r.term, Some(&r.candidate)),
            Event::VoteReply(r) => (r.term, Some(&r.voter)),
            Event::Ack(a) => (a.term, Some(&a.node)),
            Event::AckConfirm(c) => (c.term, Some(&c.leader)),
            Event::TimeoutNow(t) => (t.term, Some(&t.leader)),
            Event::Fenced { term } => (*term, None),
            Event::Membership(ids) => {
                return if ids.iter().all(|id| instaface_bus::valid_node_id(id)) {
                    Ok(())
                } else {
                    Err(Reject::InvalidId)
                };
            }
            _ => return Ok(()),
        };
        if term > MAX_TERM {
            return Err(Reject::TermTooHigh);
        }
        match from {
            Some(id) if !instaface_bus::valid_node_id(id) => Err(Reject::InvalidId),
            Some(id) if !self.election.members().contains(id) => Err(Reject::NotAMember),
            _ => Ok(()),
        }
    }

    /// Feeds one event at `now`; returns what the runtime must do, in order. An event
    /// [`admit`](Self::admit) refuses changes nothing.
    pub fn step(&mut self, now: Duration, event: Event) -> Vec<Command> {
        let mut out = Vec::new();
        if self.admit(&event).is_err() {
            return out;
        }
        match event {
            Event::Tick => self.elect(now, Input::Tick, &mut out),
            Event::Membership(m) => self.elect(now, Input::Membership(m), &mut out),
            Event::Heartbeat(hb) => self.on_heartbeat(now, hb, &mut out),
            Event::Invalidate(inv) => self.on_invalidate(now, inv, &mut out),
            Event::VoteRequest(r) => self.elect(now, Input::VoteRequest(r), &mut out),
            Event::VoteReply(r) => self.elect(now, Input::VoteReply(r), &mut out),
            Event::Ack(ack) => {
                let may_confirm = self.may_confirm(ack.term, ack.applied_seq);
                self.elect(now, Input::Ack { ack, may_confirm }, &mut out);
            }
            Event::AckConfirm(c) => self.elect(now, Input::AckConfirm(c), &mut out),
            Event::TimeoutNow(t) => self.elect(now, Input::TimeoutNow(t), &mut out),
            Event::TransferLeadership { to } => self.elect(now, Input::TransferLeadership { to }, &mut out),
            Event::Fenced { term } => self.elect(now, Input::ObservedTerm(term), &mut out),
            Event::OutboxLoaded { term, latest, entries } => self.on_loaded(term, latest, entries, &mut out),
            Event::Committed { term, writes } => self.on_committed(term, writes, &mut out),
        }
        self.settle(now, &mut out);
        out
    }

    // ----- queries -----

    /// The election core (role, term, leader, leases, the leader's view of followers).
    pub fn election(&self) -> &ElectionCore {
        &self.election
    }

    pub fn id(&self) -> &NodeId {
        self.election.id()
    }

    pub fn role(&self) -> Role {
        self.election.role()
    }

    pub fn term(&self) -> u64 {
        self.election.term()
    }

    pub fn leader(&self) -> Option<&NodeId> {
        self.election.leader()
    }

    /// Every invalidation up to here has been applied to this node's cache.
    pub fn applied_seq(&self) -> u64 {
        self.applied
    }

    /// While leading: this term's invalidation log.
    pub fn leader_log(&self) -> Option<&LeaderLog> {
        self.leader_log.as_ref()
    }

    /// The invalidation log's settings.
    pub fn log_config(&self) -> &LogConfig {
        &self.log
    }

    /// Until when this node may serve reads from its cache (`None`: it may not): a
    /// follower under its read lease, a leader under its own lease once it is ready.
    pub fn serving_until(&self, now: Duration) -> Option<Duration> {
        if self.role() == Role::Leader && !self.leader_log.as_ref().is_some_and(|l| l.is_ready()) {
            return None;
        }
        self.election.read_lease_until(now)
    }

    /// When the runtime should deliver the next [`Event::Tick`] (it may be in the past):
    /// the election's next deadline, or the moment the oldest waiting write is covered by
    /// its lease bounds, whichever comes first.
    pub fn next_deadline(&self) -> Duration {
        let election = self.election.next_deadline();
        let coverage = self.leader_log.as_ref().and_then(|l| {
            let followers: Vec<FollowerView<'_>> = self.election.followers().collect();
            l.coverage_deadline(&followers)
        });
        coverage.map_or(election, |c| c.min(election))
    }

    // ----- the follower side of the log -----

    fn on_heartbeat(&mut self, now: Duration, hb: Heartbeat, out: &mut Vec<Command>) {
        let foreign = hb.leader != *self.id();
        if foreign && hb.term >= self.term() && self.role() != Role::Leader {
            let effect = apply_window(&mut self.applied, hb.floor, hb.seq, &hb.invalidations);
            push_effect(effect, out);
        }
        let input = Input::Heartbeat { term: hb.term, leader: hb.leader, hb: hb.hb, applied_seq: self.applied };
        self.elect(now, input, out);
    }

    fn on_invalidate(&mut self, now: Duration, inv: Invalidate, out: &mut Vec<Command>) {
        if inv.leader == *self.id() || inv.term < self.term() || self.role() == Role::Leader {
            return;
        }
        let effect = apply_one(&mut self.applied, inv.prev_seq, inv.seq, &inv.keys);
        push_effect(Some(effect), out);
        let from_leader = inv.term == self.term() && self.leader() == Some(&inv.leader);
        if from_leader && self.role() == Role::Follower {
            let applied_seq = self.applied;
            self.elect(now, Input::AckNow { applied_seq }, out);
        }
    }

    // ----- the leader side of the log -----

    /// The gate on ack confirmations (see the invalidation module's rules).
    fn may_confirm(&self, term: u64, applied_seq: u64) -> bool {
        let Some(log) = &self.leader_log else {
            return false;
        };
        let gap_ok = self.log.mode == InvalidationMode::Async || self.log.bug(PlantedBug::ConfirmWithGap);
        log.term() == term && log.may_confirm(applied_seq, gap_ok)
    }

    fn on_loaded(
        &mut self,
        term: u64,
        latest: u64,
        entries: Vec<instaface_bus::messages::InvalidationEntry>,
        out: &mut Vec<Command>,
    ) {
        let window_max = self.log.window_max;
        let Some(log) = self.leader_log.as_mut() else {
            return;
        };
        if log.term() != term || log.is_ready() {
            return;
        }
        let (floor, window) = log.load(latest, entries, window_max);
        // The leader's own cache, filled while it followed, may miss what it replays
        // now: it catches up exactly as a follower would, before it is ready.
        let effect = apply_window(&mut self.applied, floor, latest, &window);
        push_effect(effect, out);
        log.mark_ready();
    }

    /// A batch committed: its keys leave this cache; its invalidations join the window
    /// and go out as one broadcast covering the batch's seqs; each write waits for its
    /// own seq to be covered (a write that changed nothing, for the seq it observed).
    ///
    /// The store may apply a batch's writes in any order (they are concurrent), so their
    /// seqs need not follow the order they come in: the log takes them in seq order.
    fn on_committed(&mut self, term: u64, mut writes: Vec<BatchedWrite>, out: &mut Vec<Command>) {
        writes.sort_by_key(|w| w.seq);
        let keys: Vec<String> = writes.iter().flat_map(|w| w.keys.iter().cloned()).collect();
        // Whatever happens to the answers, the committed writes' keys leave this cache.
        if !keys.is_empty() {
            out.push(Command::CacheInvalidate(keys.clone()));
        }
        let window_max = self.log.window_max;
        let async_mode = self.log.mode == InvalidationMode::Async;
        let (uncovered_bug, unchanged_bug, last_keys_bug) = (
            self.log.bug(PlantedBug::AnswerUncovered),
            self.log.bug(PlantedBug::AnswerUnchangedAtOnce),
            self.log.bug(PlantedBug::BatchLastKeysOnly),
        );
        let id = self.id().clone();
        let applied = &mut self.applied;
        let Some(log) = self.leader_log.as_mut().filter(|l| l.term() == term && l.is_ready()) else {
            for w in writes {
                out.push(unconfirmed(w.write, w.seq));
            }
            return;
        };
        let prev_seq = log.seq();
        let mut last = prev_seq;
        for w in writes.iter().filter(|w| !w.keys.is_empty()) {
            log.commit(w.seq, w.keys.clone(), window_max);
            last = last.max(w.seq);
        }
        *applied = (*applied).max(last);
        if last > prev_seq {
            // One message for the batch: every seq in (prev_seq, last] is one of its
            // writes (the fence serialises transactions), so a follower at prev_seq that
            // drops all these keys is at last.
            let keys = match writes.iter().rev().find(|w| !w.keys.is_empty()) {
                Some(w) if last_keys_bug => w.keys.clone(),
                _ => keys,
            };
            out.push(Command::BroadcastInvalidate(Invalidate { term, leader: id, seq: last, prev_seq, keys }));
        }
        for w in writes {
            let at_once = async_mode || (uncovered_bug && !w.keys.is_empty()) || (unchanged_bug && w.keys.is_empty());
            if at_once {
                log.answered_at_once(w.seq);
                out.push(covered(w.write, w.seq, Vec::new()));
            } else {
                log.wait(w.seq, w.write);
            }
        }
    }

    /// After every step, at the leader: answer the writes now covered, trim the window.
    fn settle(&mut self, now: Duration, out: &mut Vec<Command>) {
        let Some(log) = self.leader_log.as_mut() else {
            return;
        };
        let followers: Vec<FollowerView<'_>> = self.election.followers().collect();
        let uncovered_ok = self.log.bug(PlantedBug::AnswerUncovered);
        for c in log.take_covered(now, &followers, uncovered_ok) {
            out.push(covered(c.write, c.seq, c.acked_by));
        }
        if let Some(through) = log.trim(&followers, self.log.window_max) {
            out.push(Command::PruneOutbox { through });
        }
    }

    // ----- the election, and role changes -----

    /// Steps the election core and turns its outputs into commands, adding the
    /// data-path fields and following role changes with the log.
    fn elect(&mut self, now: Duration, input: Input, out: &mut Vec<Command>) {
        for o in self.election.step(now, input) {
            match o {
                Output::Persist(p) => out.push(Command::Persist(p)),
                Output::RoleChanged { role, term, leader } => {
                    out.push(Command::RoleChanged { role, term, leader });
                    self.on_role(role, term, out);
                }
                Output::BroadcastHeartbeat { term, hb, members } => {
                    let (seq, floor, invalidations) =
                        self.leader_log.as_ref().map(LeaderLog::heartbeat_fields).unwrap_or_default();
                    out.push(Command::BroadcastHeartbeat(Heartbeat {
                        term,
                        leader: self.id().clone(),
                        seq,
                        floor,
                        invalidations,
                        hb,
                        members,
                    }));
                }
                Output::SendAck { to, mut ack } => {
                    ack.applied_seq = self.applied;
                    out.push(Command::SendAck { to, ack });
                }
                Output::AckReply { to, confirm } => out.push(Command::AckReply { to, confirm }),
                Output::BroadcastVoteRequest(r) => out.push(Command::BroadcastVoteRequest(r)),
                Output::SendVoteReply { to, reply } => out.push(Command::SendVoteReply { to, reply }),
                Output::SendTimeoutNow { to, msg } => out.push(Command::SendTimeoutNow { to, msg }),
                Output::Candidacy { state, pre_vote, term } => out.push(Command::Candidacy { state, pre_vote, term }),
                Output::Reachability { peer, reachable } => out.push(Command::Reachability { peer, reachable }),
            }
        }
    }

    /// A new term in office starts a new log (not ready until the outbox is loaded); an
    /// office that ends answers its waiting writes as unconfirmed.
    fn on_role(&mut self, role: Role, term: u64, out: &mut Vec<Command>) {
        let leading = role == Role::Leader;
        if let Some(log) = self.leader_log.as_mut() {
            if leading && log.term() == term {
                return;
            }
            for p in log.drain_pending() {
                out.push(unconfirmed(p.write, p.seq));
            }
            self.leader_log = None;
        }
        if leading {
            let mut log = LeaderLog::new(term);
            if self.log.bug(PlantedBug::SkipReadyGate) {
                // The bug: trust what this node applied as a follower instead of the
                // outbox.
                log.load(self.applied, Vec::new(), self.log.window_max);
                log.mark_ready();
            }
            self.leader_log = Some(log);
        }
    }
}

fn push_effect(effect: Option<CacheEffect>, out: &mut Vec<Command>) {
    match effect {
        Some(CacheEffect::Invalidate(keys)) => out.push(Command::CacheInvalidate(keys)),
        Some(CacheEffect::Clear) => out.push(Command::CacheClear),
        None => {}
    }
}

fn covered(write: crate::invalidation::WriteId, seq: u64, acked_by: Vec<NodeId>) -> Command {
    Command::Answer { write, seq, answer: WriteAnswer::Covered { acked_by } }
}

fn unconfirmed(write: crate::invalidation::WriteId, seq: u64) -> Command {
    Command::Answer { write, seq, answer: WriteAnswer::Unconfirmed }
}
