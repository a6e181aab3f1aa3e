//! [`ElectionCore`]: one node's election state — term, vote, role, members, timers and
//! leases — the `step` that feeds it one [`Input`] at a time, what a follower does with
//! heartbeats and ack confirmations, and the queries the runtime asks between steps.
//! Campaigning and voting are in [`campaign`](super::campaign); what a leader does is in
//! [`leading`](super::leading).

use std::collections::BTreeSet;
use std::time::Duration;

use instaface_bus::messages::{Ack, AckConfirm, CandidacyState, Role};
use instaface_bus::NodeId;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::config::ElectionConfig;
use super::lease::{FollowerLease, Tenure};
use super::signals::{FollowerView, Input, Output, PersistedVote};

/// The election state machine of one node. No I/O, no clock reads: time comes in as
/// `now`, a monotonic reading since an arbitrary origin of this node's own.
///
/// Across restarts the core keeps its term and vote (the runtime persists every
/// [`Output::Persist`] and hands the latest back to [`ElectionCore::new`]); a restarted
/// node also waits [`ElectionConfig::restart_quarantine`] before it votes, because it
/// forgot the heartbeats that made it refuse votes (see the module docs).
#[derive(Debug)]
pub struct ElectionCore {
    pub(super) cfg: ElectionConfig,
    pub(super) rng: StdRng,
    /// `lease * (1 + drift)`: added to an ack's receipt to bound the follower's lease.
    pub(super) lease_bound_span: Duration,
    /// Before this the node neither votes nor campaigns.
    pub(super) quarantine_until: Duration,
    /// The latest `now` stepped (time never runs backwards inside the core).
    pub(super) now: Duration,
    pub(super) term: u64,
    pub(super) vote: Vote,
    pub(super) state: State,
    pub(super) leader: Option<NodeId>,
    pub(super) members: BTreeSet<NodeId>,
    /// Whether a `Membership` input arrived; never campaign before.
    pub(super) membership_known: bool,
    /// When a follower or a campaign times out.
    pub(super) election_deadline: Duration,
    /// Receipt of the latest heartbeat accepted from a leader (kept across terms: votes
    /// are refused until `election_min` after it).
    pub(super) last_heartbeat: Option<Duration>,
    pub(super) applied_seq: u64,
    pub(super) lease: FollowerLease,
    /// The latest leader this node knew of, with its term: if this node wins the very
    /// next term, that leader can hold no lease any more (see `Tenure::new`).
    pub(super) last_leader: Option<(u64, NodeId)>,
    /// A planted bug (negative controls only): a new leader assumes no follower holds a
    /// lease from an earlier leader.
    pub(super) forget_earlier_leases: bool,
}

/// The vote of the current term.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Vote {
    Free,
    For(NodeId),
    /// The term was learned without voting (from its leader's heartbeat or from outside):
    /// it has or had a leader, so granting a vote in it could only make a second one.
    Barred,
}

impl Vote {
    fn from_persisted(p: &PersistedVote) -> Vote {
        match (&p.voted_for, p.barred) {
            (Some(c), _) => Vote::For(c.clone()),
            (None, true) => Vote::Barred,
            (None, false) => Vote::Free,
        }
    }

    pub(super) fn allows(&self, candidate: &str) -> bool {
        match self {
            Vote::Free => true,
            Vote::For(c) => c == candidate,
            Vote::Barred => false,
        }
    }
}

/// What the node is doing.
#[derive(Debug)]
pub(super) enum State {
    Follower,
    Campaign(Campaign),
    Leader(Tenure),
}

/// A pre-vote or a real campaign in progress.
#[derive(Debug)]
pub(super) struct Campaign {
    pub(super) pre_vote: bool,
    /// The term campaigned for (for a pre-vote, the term proposed).
    pub(super) term: u64,
    /// Members that granted, this node included.
    pub(super) granted: BTreeSet<NodeId>,
    /// Members that refused (real campaigns only).
    pub(super) refused: BTreeSet<NodeId>,
}

impl ElectionCore {
    /// A node starting (or restarting) at `now` as a follower of the term it persisted
    /// (`PersistedVote::default()` on a first start), with the vote it cast in it.
    ///
    /// `seed` drives the randomized election timeouts and the first ack number; it must
    /// differ between starts of the same node (draw it from entropy in production), so a
    /// confirmation meant for an ack of an earlier incarnation matches nothing.
    /// `cfg` should have passed [`ElectionConfig::validate`]; an invalid one makes no
    /// panic, only a badly timed election.
    pub fn new(cfg: ElectionConfig, seed: u64, now: Duration, persisted: PersistedVote) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let first_ack = rng.random_range(1..1u64 << 62);
        let members = BTreeSet::from([cfg.id.clone()]);
        let mut core = ElectionCore {
            lease_bound_span: cfg.lease_bound_span(),
            quarantine_until: now.saturating_add(cfg.restart_quarantine()),
            cfg,
            rng,
            now,
            term: persisted.term,
            vote: Vote::from_persisted(&persisted),
            state: State::Follower,
            leader: None,
            members,
            membership_known: false,
            election_deadline: now,
            last_heartbeat: None,
            applied_seq: 0,
            lease: FollowerLease::new(first_ack),
            last_leader: None,
            forget_earlier_leases: false,
        };
        core.reset_election_timer(now);
        core
    }

    /// Feeds one input at `now`; returns what the runtime must do, in order.
    ///
    /// Timers due at `now` fire first. A `now` earlier than a previous one is taken as
    /// the previous one.
    pub fn step(&mut self, now: Duration, input: Input) -> Vec<Output> {
        let now = now.max(self.now);
        self.now = now;
        let before = (self.role(), self.term, self.leader.clone());
        let before_vote = self.persisted();
        let mut out = Vec::new();
        self.fire_timers(now, &mut out);
        match input {
            Input::Tick => {}
            Input::Membership(ids) => self.add_members(ids),
            Input::Heartbeat { term, leader, hb, applied_seq } => {
                self.applied_seq = applied_seq;
                self.on_heartbeat(now, term, leader, hb, &mut out);
            }
            Input::VoteRequest(req) => self.on_vote_request(now, req, &mut out),
            Input::VoteReply(reply) => self.on_vote_reply(now, reply, &mut out),
            Input::Ack { ack, may_confirm } => self.on_ack(now, ack, may_confirm, &mut out),
            Input::AckConfirm(confirm) => self.on_ack_confirm(confirm, &mut out),
            Input::AckNow { applied_seq } => {
                self.applied_seq = applied_seq;
                self.send_ack(now, 0, &mut out);
            }
            Input::TimeoutNow(msg) => self.on_timeout_now(now, msg, &mut out),
            Input::TransferLeadership { to } => self.transfer_leadership(now, to, &mut out),
            Input::ObservedTerm(term) => {
                if term > self.term {
                    self.raise_term(term, &mut out);
                    self.vote = Vote::Barred;
                }
            }
        }
        let after = (self.role(), self.term, self.leader.clone());
        if before != after {
            let (role, term, leader) = after;
            out.insert(0, Output::RoleChanged { role, term, leader });
        }
        let persisted = self.persisted();
        if persisted != before_vote {
            out.insert(0, Output::Persist(persisted));
        }
        out
    }

    /// Plants a bug on purpose, for negative controls: as leader, assume no follower
    /// still holds a lease from an earlier leader.
    #[doc(hidden)]
    pub fn plant_forget_earlier_leases(&mut self) {
        self.forget_earlier_leases = true;
    }

    /// The term and vote as they must be persisted.
    pub fn persisted(&self) -> PersistedVote {
        PersistedVote {
            term: self.term,
            voted_for: match &self.vote {
                Vote::For(c) => Some(c.clone()),
                _ => None,
            },
            barred: self.vote == Vote::Barred,
        }
    }

    // ----- queries -----

    /// This node's id.
    pub fn id(&self) -> &NodeId {
        &self.cfg.id
    }

    /// The settings the core runs with.
    pub fn config(&self) -> &ElectionConfig {
        &self.cfg
    }

    /// The current role.
    pub fn role(&self) -> Role {
        match &self.state {
            State::Follower => Role::Follower,
            State::Campaign(c) if c.pre_vote => Role::PreCandidate,
            State::Campaign(_) => Role::Candidate,
            State::Leader(_) => Role::Leader,
        }
    }

    /// The current term.
    pub fn term(&self) -> u64 {
        self.term
    }

    /// The leader of the current term, if known (this node's id when it leads).
    pub fn leader(&self) -> Option<&NodeId> {
        self.leader.as_ref()
    }

    /// Every member known so far (the configuration, Redis, and this node).
    pub fn members(&self) -> &BTreeSet<NodeId> {
        &self.members
    }

    /// When the runtime should deliver the next [`Input::Tick`] (it may be in the past).
    pub fn next_deadline(&self) -> Duration {
        match &self.state {
            State::Leader(t) => {
                let window = self.cfg.check_quorum_window();
                let mut next = t.next_heartbeat().min(t.quorum_deadline(window));
                if let Some(r) = t.reachability_deadline(window) {
                    next = next.min(r);
                }
                next
            }
            _ => self.election_deadline,
        }
    }

    /// Leader only: whether a majority (counting this node) acked a heartbeat sent at
    /// `h` with `now < h + lease`. Only then does the leader serve reads or confirm acks.
    pub fn leader_lease_holds(&self, now: Duration) -> bool {
        self.leader_lease_until().is_some_and(|u| now < u)
    }

    /// Whether this node may serve reads at `now`: a follower under a lease confirmed by
    /// its current leader, or a leader under its own lease.
    pub fn read_lease_holds(&self, now: Duration) -> bool {
        match self.state {
            State::Leader(_) => self.leader_lease_holds(now),
            State::Follower => self.leader.is_some() && self.lease.holds(now),
            State::Campaign(_) => false,
        }
    }

    /// When the read lease that holds at `now` ends (`None` if none holds): for the
    /// runtime to schedule leaving the readers' queue group.
    pub fn read_lease_until(&self, now: Duration) -> Option<Duration> {
        let until = match self.state {
            State::Leader(_) => self.leader_lease_until(),
            State::Follower if self.leader.is_some() => self.lease.until(),
            _ => None,
        };
        until.filter(|u| now < *u)
    }

    /// Leader only: the latest moment (this node's clock) follower `f`'s read lease can
    /// last. `None` when not leader or `f` is not a follower.
    pub fn follower_lease_bound(&self, f: &str) -> Option<Duration> {
        self.tenure()?.view(f).map(|v| v.lease_bound)
    }

    /// Leader only: the highest `applied_seq` follower `f` acked this term.
    pub fn follower_applied_seq(&self, f: &str) -> Option<u64> {
        self.tenure()?.view(f)?.applied_seq
    }

    /// Leader only: its view of every follower (empty otherwise).
    pub fn followers(&self) -> impl Iterator<Item = FollowerView<'_>> {
        self.tenure().into_iter().flat_map(Tenure::views)
    }

    /// Whether the node is still in its restart quarantine at `now`.
    pub fn in_quarantine(&self, now: Duration) -> bool {
        now < self.quarantine_until
    }

    fn leader_lease_until(&self) -> Option<Duration> {
        self.tenure()?.lease_until(self.cfg.lease)
    }

    pub(super) fn tenure(&self) -> Option<&Tenure> {
        match &self.state {
            State::Leader(t) => Some(t),
            _ => None,
        }
    }

    // ----- transitions shared by every role -----

    /// Number of members that make a majority.
    pub(super) fn majority(&self) -> usize {
        self.members.len() / 2 + 1
    }

    /// Moves to a higher term as a follower with no known leader and a free vote.
    pub(super) fn raise_term(&mut self, term: u64, out: &mut Vec<Output>) {
        if term <= self.term {
            return;
        }
        self.term = term;
        self.vote = Vote::Free;
        self.lease.reset();
        self.become_follower(None, out);
    }

    /// Ends any campaign or tenure and follows `leader` (or nobody) in the current term.
    pub(super) fn become_follower(&mut self, leader: Option<NodeId>, out: &mut Vec<Output>) {
        match std::mem::replace(&mut self.state, State::Follower) {
            State::Campaign(c) => {
                out.push(Output::Candidacy { state: CandidacyState::Abandoned, pre_vote: c.pre_vote, term: c.term })
            }
            State::Leader(_) => self.reset_election_timer(self.now),
            State::Follower => {}
        }
        self.set_leader(leader);
    }

    /// Changes the known leader; a follower's lease belongs to one leader and goes with it.
    pub(super) fn set_leader(&mut self, leader: Option<NodeId>) {
        if self.leader != leader {
            self.lease.reset();
            if let Some(l) = &leader {
                self.last_leader = Some((self.term, l.clone()));
            }
            self.leader = leader;
        }
    }

    /// A fresh election timeout from `now`, never ending inside the restart quarantine.
    pub(super) fn reset_election_timer(&mut self, now: Duration) {
        let lo = self.cfg.election_min.as_nanos().min(u64::MAX as u128) as u64;
        let hi = self.cfg.election_max.as_nanos().min(u64::MAX as u128) as u64;
        let timeout = if hi > lo { self.rng.random_range(lo..hi) } else { lo };
        let deadline = now.saturating_add(Duration::from_nanos(timeout));
        // A timeout that would end inside the restart quarantine ends a random moment
        // after it instead, so nodes started together do not all campaign at once.
        self.election_deadline = if deadline < self.quarantine_until {
            let spread = hi.saturating_sub(lo).max(1);
            self.quarantine_until.saturating_add(Duration::from_nanos(self.rng.random_range(0..spread)))
        } else {
            deadline
        };
    }

    /// A real campaign round: it ends (and the node pre-votes anew) after a random
    /// `[election_min / 4, election_min / 2)` — set when it starts, and again as soon
    /// as a split vote is certain — rather than a whole election timeout. A round needs
    /// only a few round trips; nobody leads its term, so no lease needs the wait; and
    /// the randomness separates candidates whose votes split.
    pub(super) fn back_off_after_lost_campaign(&mut self, now: Duration) {
        let hi = (self.cfg.election_min / 2).as_nanos().min(u64::MAX as u128) as u64;
        let lo = (self.cfg.election_min / 4).as_nanos().min(u64::MAX as u128) as u64;
        let backoff = if hi > lo { self.rng.random_range(lo..hi) } else { lo };
        self.election_deadline = now.saturating_add(Duration::from_nanos(backoff)).max(self.quarantine_until);
    }

    fn fire_timers(&mut self, now: Duration, out: &mut Vec<Output>) {
        if matches!(self.state, State::Leader(_)) {
            self.leader_timers(now, out);
        } else if now >= self.election_deadline {
            self.on_election_timeout(now, out);
        }
    }

    fn add_members(&mut self, ids: impl IntoIterator<Item = NodeId>) {
        self.membership_known = true;
        self.learn_members(ids);
    }

    /// Adds members (from the configuration or Redis); the set only grows.
    pub(super) fn learn_members(&mut self, ids: impl IntoIterator<Item = NodeId>) {
        let span = self.lease_bound_span;
        for id in ids {
            if self.members.contains(&id) {
                continue;
            }
            if let State::Leader(t) = &mut self.state {
                if id != self.cfg.id {
                    t.add_follower(id.clone(), span);
                }
            }
            self.members.insert(id);
        }
    }

    // ----- follower side -----

    fn on_heartbeat(&mut self, now: Duration, term: u64, leader: NodeId, hb: u64, out: &mut Vec<Output>) {
        if leader == self.cfg.id {
            // Our own heartbeat, echoed or from an earlier incarnation of this node: it
            // tells a term that had a leader, nothing more.
            if term > self.term {
                self.raise_term(term, out);
                self.vote = Vote::Barred;
            }
            return;
        }
        if term < self.term {
            // A deposed leader: tell it the newer term so it steps down now rather than
            // after CheckQuorum (this also brings back a cluster whose leader's term fell
            // behind a node's after lost messages).
            out.push(Output::SendAck {
                to: leader,
                ack: Ack { term: self.term, node: self.cfg.id.clone(), ack: 0, hb: 0, applied_seq: self.applied_seq },
            });
            return;
        }
        if term > self.term {
            self.raise_term(term, out);
        }
        match &self.state {
            State::Leader(_) => {
                tracing::error!(term, other = %leader, "two leaders in one term; stepping down");
                self.become_follower(None, out);
            }
            State::Campaign(_) => self.become_follower(None, out),
            State::Follower => {}
        }
        match &self.leader {
            Some(known) if *known != leader => {
                tracing::error!(
                    term, known = %known, other = %leader,
                    "heartbeat from a second leader of one term ignored"
                );
                return;
            }
            Some(_) => {}
            None => self.set_leader(Some(leader)),
        }
        if self.vote == Vote::Free {
            self.vote = Vote::Barred;
        }
        self.last_heartbeat = Some(now);
        self.reset_election_timer(now);
        self.send_ack(now, hb, out);
    }

    /// Acks to the current leader (follower only). A restarted node acks at once: its
    /// term and vote survived the restart, and its acks are numbered afresh.
    fn send_ack(&mut self, now: Duration, hb: u64, out: &mut Vec<Output>) {
        let Some(leader) = &self.leader else { return };
        if !matches!(self.state, State::Follower) {
            return;
        }
        let ack = self.lease.send(now, self.cfg.lease);
        out.push(Output::SendAck {
            to: leader.clone(),
            ack: Ack { term: self.term, node: self.cfg.id.clone(), ack, hb, applied_seq: self.applied_seq },
        });
    }

    fn on_ack_confirm(&mut self, c: AckConfirm, out: &mut Vec<Output>) {
        if c.term > self.term {
            self.raise_term(c.term, out);
            return;
        }
        let from_leader = self.leader.as_ref() == Some(&c.leader);
        if c.term == self.term && c.confirmed && from_leader && matches!(self.state, State::Follower) {
            self.lease.confirm(c.ack, self.cfg.lease);
        }
    }
}
