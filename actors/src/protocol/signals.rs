//! What goes into a node's protocol core ([`Event`]) and what comes out of it
//! ([`Command`]). The node's actors turn NATS messages, timers, Redis reads and the
//! store's results into events, and perform the commands in order; they decide nothing.

use std::collections::BTreeSet;

use instaface_bus::messages::{
    Ack, AckConfirm, CandidacyState, Heartbeat, Invalidate, InvalidationEntry, Role, TimeoutNow, VoteReply, VoteRequest,
};
use instaface_bus::NodeId;

use crate::election::PersistedVote;
use crate::invalidation::WriteId;

/// One event for [`NodeCore::step`](super::NodeCore::step).
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// Time passed; deliver one at [`next_deadline`](super::NodeCore::next_deadline).
    Tick,
    /// The members read from Redis.
    Membership(BTreeSet<NodeId>),
    /// A heartbeat from `P.heartbeat`.
    Heartbeat(Heartbeat),
    /// A broadcast invalidation from `P.invalidate`.
    Invalidate(Invalidate),
    VoteRequest(VoteRequest),
    VoteReply(VoteReply),
    /// At the leader: a follower's ack. Always answered with [`Command::AckReply`].
    Ack(Ack),
    /// At a follower: the leader's answer to one of its acks.
    AckConfirm(AckConfirm),
    TimeoutNow(TimeoutNow),
    /// At the leader: hand leadership over at once, to `to` if it may take it (see the
    /// election's `Input::TransferLeadership`).
    TransferLeadership {
        to: Option<NodeId>,
    },
    /// The store found the fence above this node's term: a later leader exists.
    Fenced {
        term: u64,
    },
    /// The store raised the fence for `term` and read the outbox: its latest seq and its
    /// newest rows, oldest first.
    OutboxLoaded {
        term: u64,
        latest: u64,
        entries: Vec<InvalidationEntry>,
    },
    /// A batch of writes of leader `term` committed in one transaction, in seq order.
    Committed {
        term: u64,
        writes: Vec<BatchedWrite>,
    },
}

/// One write of a committed batch.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchedWrite {
    /// Its outbox seq; for a write that changed nothing (no `keys`), the latest seq it
    /// observed, which must be covered before it is answered.
    pub seq: u64,
    /// The cache keys it invalidates (none if it changed nothing).
    pub keys: Vec<String>,
    pub write: WriteId,
}

/// How a waiting write ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteAnswer {
    /// Its seq is covered: answer success. `acked_by` are the followers that acked it.
    Covered { acked_by: Vec<NodeId> },
    /// It committed (or observed the state) but this node stopped leading, or never got
    /// ready, before it was covered: its outcome must be reported as unconfirmed.
    Unconfirmed,
}

/// One thing for the runtime to do, in order.
///
/// Cache commands must take effect at the cache before any later command's effect
/// leaves the node (an ack reporting the new `applied_seq`, a vote reply): the runtime
/// sends them to the cache first, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Persist the term and vote (fsync) before performing anything later.
    Persist(PersistedVote),
    /// Role, term or known leader changed.
    RoleChanged { role: Role, term: u64, leader: Option<NodeId> },
    /// Drop these keys from the cache.
    CacheInvalidate(Vec<String>),
    /// Drop everything from the cache.
    CacheClear,
    /// Publish on `P.heartbeat`.
    BroadcastHeartbeat(Heartbeat),
    /// Publish on `P.invalidate`.
    BroadcastInvalidate(Invalidate),
    /// Send an ack to the leader (request on `P.node.<to>.ack`) and feed its answer back
    /// as [`Event::AckConfirm`].
    SendAck { to: NodeId, ack: Ack },
    /// Answer the [`Event::Ack`] just stepped.
    AckReply { to: NodeId, confirm: AckConfirm },
    /// Publish on `P.vote`.
    BroadcastVoteRequest(VoteRequest),
    /// Answer a vote request (on `P.node.<to>.vote_reply`).
    SendVoteReply { to: NodeId, reply: VoteReply },
    /// Leadership transfer: tell `to` to campaign at once.
    SendTimeoutNow { to: NodeId, msg: TimeoutNow },
    /// Answer a waiting write.
    Answer { write: WriteId, seq: u64, answer: WriteAnswer },
    /// Delete outbox rows through this seq (keeping the newest row).
    PruneOutbox { through: u64 },
    /// A campaign started, was abandoned or was won.
    Candidacy { state: CandidacyState, pre_vote: bool, term: u64 },
    /// The leader's view of a follower changed.
    Reachability { peer: NodeId, reachable: bool },
}
