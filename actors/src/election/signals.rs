//! What goes into the election core ([`Input`]) and what comes out of it ([`Output`],
//! [`FollowerView`]). The runtime turns NATS messages, timers and Redis reads into
//! inputs, and performs the outputs; it decides nothing itself.

use std::time::Duration;

use instaface_bus::messages::{Ack, AckConfirm, CandidacyState, Role, TimeoutNow, VoteReply, VoteRequest};
use instaface_bus::NodeId;
use serde::{Deserialize, Serialize};

/// One event for [`ElectionCore::step`](super::ElectionCore::step).
///
/// Every step first fires the timers that are due at its `now`, so a late `Tick` never
/// changes what the core decides, only when the runtime learns of it.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// Time passed; deliver one at [`next_deadline`](super::ElectionCore::next_deadline).
    Tick,
    /// The members, from the node's configuration (`MEMBERS`) and read from Redis
    /// (periodically): the only source of membership. Members only accumulate.
    Membership(std::collections::BTreeSet<NodeId>),
    /// A heartbeat from `P.heartbeat` (the runtime keeps the data-path fields; the
    /// member list it carries is information for clients, never authority — members come
    /// from [`Input::Membership`] only).
    ///
    /// `applied_seq` is the node's applied invalidation seq *after* the runtime applied
    /// this heartbeat's invalidations; the ack that answers the heartbeat carries it.
    Heartbeat { term: u64, leader: NodeId, hb: u64, applied_seq: u64 },
    /// A vote request (pre-vote or real) from `P.vote`.
    VoteRequest(VoteRequest),
    /// An answer to this node's vote request.
    VoteReply(VoteReply),
    /// At the leader: a follower's ack. Always answered with [`Output::AckReply`].
    /// `may_confirm` is the data path's verdict on the ack (the invalidation log's gate:
    /// the leader has loaded its outbox and the follower has applied every write already
    /// answered); without it the ack is recorded but earns no lease.
    Ack { ack: Ack, may_confirm: bool },
    /// At a follower: the leader's answer to one of its acks.
    AckConfirm(AckConfirm),
    /// The runtime wants an ack sent now (e.g. after applying an invalidation);
    /// `applied_seq` is the node's applied seq from now on.
    AckNow { applied_seq: u64 },
    /// The leader handed leadership to this node.
    TimeoutNow(TimeoutNow),
    /// At the leader: hand leadership over at once (graceful shutdown, or spreading the
    /// shards' leaderships) — to `to` when it is a follower that acked this term, else to
    /// the most up-to-date follower.
    TransferLeadership { to: Option<NodeId> },
    /// A term learned outside the election, e.g. the store's leadership fence. A higher
    /// one makes the node a follower of it, barred from voting in it (it cannot know who
    /// won it), so its next campaign is for a term above it.
    ObservedTerm(u64),
}

/// One thing for the runtime to do, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// Write the term and vote to stable storage (fsynced) before performing any later
    /// output of the same step: a vote reply or an ack sent from a term the node could
    /// forget on a crash would let it vote twice in one term. Emitted first, once per
    /// step, whenever the term or the vote changed.
    Persist(PersistedVote),
    /// Publish a heartbeat on `P.heartbeat` (adding the data-path fields).
    BroadcastHeartbeat { term: u64, hb: u64, members: Vec<NodeId> },
    /// Send an ack to the leader (request on `P.node.<to>.ack`) and feed its answer back
    /// as [`Input::AckConfirm`]. An ack with `ack == 0` only tells a deposed leader of a
    /// newer term; it can earn no lease.
    SendAck { to: NodeId, ack: Ack },
    /// Answer the [`Input::Ack`] just stepped (the reply to that request).
    AckReply { to: NodeId, confirm: AckConfirm },
    /// Publish a vote request on `P.vote`.
    BroadcastVoteRequest(VoteRequest),
    /// Answer a vote request (on `P.node.<to>.vote_reply`).
    SendVoteReply { to: NodeId, reply: VoteReply },
    /// Leadership transfer: tell `to` to campaign at once.
    SendTimeoutNow { to: NodeId, msg: TimeoutNow },
    /// Role, term or known leader changed (emitted first among a step's outputs, once,
    /// with the state the step ended in).
    RoleChanged { role: Role, term: u64, leader: Option<NodeId> },
    /// A campaign started, was abandoned or was won. For a pre-vote, `term` is the term
    /// the node proposes to campaign in.
    Candidacy { state: CandidacyState, pre_vote: bool, term: u64 },
    /// The leader's view of a follower changed: it acked within the CheckQuorum window
    /// or it did not. On taking office every follower counts as reachable.
    Reachability { peer: NodeId, reachable: bool },
}

/// The leader's view of one follower.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FollowerView<'a> {
    pub id: &'a NodeId,
    /// The highest `applied_seq` the follower acked this term.
    pub applied_seq: Option<u64>,
    /// The latest moment (leader's clock) the follower's read lease can last.
    pub lease_bound: Duration,
    /// When its latest ack of this term arrived.
    pub last_ack: Option<Duration>,
    /// Whether it acked within the CheckQuorum window (or the term is younger than that).
    pub reachable: bool,
}

/// What a node must remember across restarts, as Raft requires: its current term and
/// its vote in it. `barred` records a term learned from its leader's heartbeat (or from
/// outside) without voting: the node will not vote in it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistedVote {
    pub term: u64,
    #[serde(default)]
    pub voted_for: Option<NodeId>,
    #[serde(default)]
    pub barred: bool,
}
