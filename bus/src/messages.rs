//! Cluster-internal messages: election, heartbeats and acks, invalidations, unplug
//! commands and monitoring events. Each is a MessagePack map with these field names.
//!
//! | subject | message |
//! | --- | --- |
//! | `P.heartbeat` | [`Heartbeat`] |
//! | `P.vote` | [`VoteRequest`], answered on `P.node.<candidate>.vote_reply` with [`VoteReply`] |
//! | `P.node.<leader>.ack` | [`Ack`] (request), answered with [`AckConfirm`] |
//! | `P.node.<target>.timeout_now` | [`TimeoutNow`] (leadership transfer) |
//! | `P.invalidate` | [`Invalidate`] |
//! | `P.control.unplug` | [`Unplug`] |
//! | `P.events` | [`Event`] |

use serde::{Deserialize, Serialize};

use crate::NodeId;

/// One committed write's invalidation: its outbox `seq` and the cache keys it touched.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvalidationEntry {
    pub seq: u64,
    pub keys: Vec<String>,
}

/// The leader's heartbeat, published on `P.heartbeat` every heartbeat interval.
///
/// `invalidations` holds every retained invalidation with `seq > floor`, oldest first: a
/// follower whose `applied_seq >= floor` applies those past its own and is then at `seq`;
/// one that is behind `floor` cannot know what it missed and clears its whole cache.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub term: u64,
    pub leader: NodeId,
    /// The leader's latest invalidation seq.
    pub seq: u64,
    /// Every invalidation with `seq > floor` is in `invalidations`.
    #[serde(default)]
    pub floor: u64,
    #[serde(default)]
    pub invalidations: Vec<InvalidationEntry>,
    /// The leader's heartbeat counter in this term; acks echo it.
    #[serde(default)]
    pub hb: u64,
    /// The members the leader counts its quorum over.
    #[serde(default)]
    pub members: Vec<NodeId>,
}

/// A vote request on `P.vote`. With `pre_vote` it only asks "would you vote for me?" and
/// changes no state; `term` is then the term the candidate would campaign in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoteRequest {
    pub term: u64,
    pub candidate: NodeId,
    pub pre_vote: bool,
    /// Set when the current leader handed leadership over: voters then grant even though
    /// they heard from that leader within their lease.
    #[serde(default)]
    pub transfer: bool,
}

/// A vote reply, sent to `P.node.<candidate>.vote_reply`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoteReply {
    pub term: u64,
    pub voter: NodeId,
    pub granted: bool,
    #[serde(default)]
    pub pre_vote: bool,
}

/// A follower's ack of a heartbeat or invalidation, sent as a request to
/// `P.node.<leader>.ack`. `ack` is the follower's own counter: when the leader confirms
/// it, the follower's read lease runs from the moment it sent that ack.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    pub term: u64,
    pub node: NodeId,
    /// The follower's ack counter.
    pub ack: u64,
    /// The heartbeat counter this answers (0 for an invalidation ack).
    #[serde(default)]
    pub hb: u64,
    /// Every invalidation up to here has been applied to the follower's cache.
    pub applied_seq: u64,
}

/// The leader's answer to an [`Ack`]: `confirmed` only while the leader holds its own
/// lease and `term` is its current term.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckConfirm {
    pub term: u64,
    pub leader: NodeId,
    pub ack: u64,
    pub confirmed: bool,
}

/// Leadership transfer: the leader asks `target` to campaign at once (sent to
/// `P.node.<target>.timeout_now`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeoutNow {
    pub term: u64,
    pub leader: NodeId,
}

/// An invalidation broadcast on `P.invalidate` right after a write commits. `prev_seq` is
/// the leader's previous seq (seqs may have gaps), so a follower at `prev_seq` knows it is
/// now at `seq`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invalidate {
    pub term: u64,
    pub leader: NodeId,
    pub seq: u64,
    #[serde(default)]
    pub prev_seq: u64,
    pub keys: Vec<String>,
}

/// Admin command on `P.control.unplug`.
///
/// `unplugged` cuts the node off from its *peers*: it drops every cluster-internal message
/// in and out (heartbeats, votes, acks, invalidations, fills) but keeps answering clients
/// as far as its own state allows — a follower serves reads until its read lease runs out,
/// exactly like a node behind a network partition that clients can still reach. With
/// `clients` as well, it also refuses every client request (total isolation).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unplug {
    pub node: NodeId,
    pub unplugged: bool,
    /// With `unplugged`: refuse clients too (total isolation). Ignored when plugging back.
    #[serde(default)]
    pub clients: bool,
}

/// A node's role, as reported in events and by the cluster API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Follower,
    PreCandidate,
    Candidate,
    Leader,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Follower => "follower",
            Role::PreCandidate => "pre_candidate",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
        })
    }
}

/// A monitoring event on `P.events`: `type`, `node`, `term`, `ts` (ms since the epoch)
/// and the fields of its kind, all in one flat map. With several shards, `shard` names the
/// leader group the event is about (`term` and the roles are per group); absent means 0.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub node: NodeId,
    pub term: u64,
    pub ts: u64,
    #[serde(default, skip_serializing_if = "is_shard_zero")]
    pub shard: crate::shards::ShardId,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened. Serialized with its name in the `type` field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// This node became leader of `term`.
    Leader { members: Vec<NodeId> },
    /// This node is a follower (of `leader`, when known).
    Follower { leader: Option<NodeId> },
    /// A campaign `started`, was `abandoned`, or was `won`; `pre_vote` tells which phase.
    Candidacy { state: CandidacyState, pre_vote: bool },
    /// The leader's view of one follower.
    Reachable { peer: NodeId, reachable: bool },
    /// The cache's counters (cumulative since the node started), published about once a
    /// second while they change.
    Cache { hits: u64, misses: u64, entries: u64, fills: u64, applied_seq: u64 },
    /// This node was unplugged (from its peers; with `clients`, from clients too) or
    /// plugged back in.
    Unplugged {
        unplugged: bool,
        #[serde(default)]
        clients: bool,
    },
    /// An invalidation and the followers that have acked it so far.
    Invalidation { seq: u64, acked_by: Vec<NodeId> },
    /// A write committed at the leader.
    Write { seq: u64, op: String, keys: Vec<String> },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CandidacyState {
    Started,
    Abandoned,
    Won,
}

fn is_shard_zero(k: &crate::shards::ShardId) -> bool {
    *k == 0
}

impl Event {
    pub fn new(node: impl Into<NodeId>, term: u64, kind: EventKind) -> Self {
        Event { node: node.into(), term, ts: crate::now_ms(), shard: 0, kind }
    }

    /// The same event, about shard `k`'s leader group.
    pub fn in_shard(mut self, k: crate::shards::ShardId) -> Self {
        self.shard = k;
        self
    }

    /// The event's `type` name.
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            EventKind::Leader { .. } => "leader",
            EventKind::Follower { .. } => "follower",
            EventKind::Candidacy { .. } => "candidacy",
            EventKind::Reachable { .. } => "reachable",
            EventKind::Cache { .. } => "cache",
            EventKind::Unplugged { .. } => "unplugged",
            EventKind::Invalidation { .. } => "invalidation",
            EventKind::Write { .. } => "write",
        }
    }
}

/// A node's answer on its status endpoint (`P.node.<id>.status`, part of its NATS micro
/// service `instaface-node`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub node: NodeId,
    pub role: Role,
    pub term: u64,
    pub leader: Option<NodeId>,
    pub members: Vec<NodeId>,
    pub unplugged: bool,
    /// Unplugged from clients as well (total isolation).
    #[serde(default)]
    pub clients_unplugged: bool,
    /// Whether it answers reads right now: it holds a read lease (and, as leader, has
    /// loaded the outbox) and is not isolated from clients.
    #[serde(default)]
    pub serving: bool,
    pub applied_seq: u64,
    /// Milliseconds left on the node's read lease (0 when it holds none).
    pub lease_ms: u64,
    pub cache: CacheCounters,
}

/// Cache counters reported by a node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheCounters {
    pub hits: u64,
    pub misses: u64,
    pub entries: u64,
    pub fills: u64,
}
