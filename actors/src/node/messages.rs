//! Every message between a node's actors, in one place: what the protocol actor, the
//! cache actor, the store actor and the supervisor accept. Actors import these and
//! nothing else of each other.

use std::collections::BTreeSet;
use std::time::Duration;

use instaface_bus::graph::{Association, CacheKey, CacheValue, EntityId, ErrorBody, WriteOutcome};
use instaface_bus::messages::{
    Ack, AckConfirm, Heartbeat, Invalidate, InvalidationEntry, Role, TimeoutNow, VoteReply, VoteRequest,
};
use instaface_bus::NodeId;
use ractor::RpcReplyPort;

use crate::store::{GraphStore, Op};

/// Where a write's answer goes.
pub type WriteReply = RpcReplyPort<Result<WriteOutcome, ErrorBody>>;

/// To the protocol actor (it steps the node's [`NodeCore`](crate::protocol::NodeCore)).
pub enum ProtocolMsg {
    Tick,
    Heartbeat(Heartbeat),
    Invalidate(Invalidate),
    VoteRequest(VoteRequest),
    VoteReply(VoteReply),
    /// An ack at the leader; `reply` is where its confirmation goes.
    Ack {
        ack: Ack,
        reply: Option<String>,
    },
    AckConfirm(AckConfirm),
    TimeoutNow(TimeoutNow),
    /// The members read from Redis.
    Membership(BTreeSet<NodeId>),
    /// From the store: the fence holds a later term than `term`'s.
    Fenced {
        term: u64,
    },
    /// From the store: the fence is raised for `term`; the outbox's latest seq and its
    /// newest rows.
    OutboxLoaded {
        term: u64,
        latest: u64,
        entries: Vec<InvalidationEntry>,
    },
    /// From the store: a batch of writes of `term` committed together, in seq order;
    /// answer each once its seq is covered.
    Committed {
        term: u64,
        writes: Vec<CommittedWrite>,
    },
    /// Graceful shutdown: hand leadership over; replies whether this node led.
    Transfer(RpcReplyPort<bool>),
    /// Spreading leaderships: hand leadership to `to` (if it may take it; else to the most
    /// up-to-date follower); replies whether this node led.
    TransferTo(NodeId, RpcReplyPort<bool>),
    /// Test hook: stop (or resume) sending invalidations, broadcast and in heartbeats.
    Hold(bool),
    /// Test hook: panic inside the handler.
    Panic,
}

/// One write of a committed batch: its outcome (a write that changed nothing has no
/// keys, and its seq is the latest it observed), its invalidated keys, and its reply.
pub struct CommittedWrite {
    pub outcome: WriteOutcome,
    pub keys: Vec<String>,
    pub op: &'static str,
    pub reply: WriteReply,
}

/// To the cache actor (the keeper of the node's cache; see `cache_actor.rs`).
pub enum CacheMsg {
    PublishStats,
    /// Test hook: panic inside the handler.
    Panic,
}

/// To the store actor (the leader's MySQL pool).
pub enum StoreMsg {
    RoleChanged {
        role: Role,
        term: u64,
    },
    /// The pool for `term` is open (from the connect task).
    Opened {
        term: u64,
        store: GraphStore,
    },
    /// A write: a client's, or another shard's intent to apply.
    Write {
        req: Op,
        reply: WriteReply,
    },
    /// A batch's transaction ended (from its task): the result of each write, or the
    /// batch's own failure.
    BatchDone {
        term: u64,
        result: Result<Vec<Result<crate::store::CommittedWrite, crate::store::StoreError>>, crate::store::StoreError>,
    },
    /// A fill: values for `keys` and the seq they reflect.
    Fill {
        keys: Vec<CacheKey>,
        reply: RpcReplyPort<Result<(u64, Vec<CacheValue>), ErrorBody>>,
    },
    Random {
        etype: String,
        count: u32,
        reply: RpcReplyPort<Result<Vec<EntityId>, ErrorBody>>,
    },
    /// An association range read straight from MySQL (past the cached window).
    ListAssocs {
        from: EntityId,
        atype: String,
        limit: u32,
        offset: u32,
        reply: RpcReplyPort<Result<(u64, Vec<Association>), ErrorBody>>,
    },
    PruneOutbox {
        through: u64,
    },
    /// Test hook: wait this long before running the next write.
    Stall(Duration),
}

/// To the node supervisor.
pub enum SupervisorMsg {
    /// Graceful shutdown: hand leadership over, then stop the children in order. Replies
    /// once done.
    Shutdown(RpcReplyPort<()>),
}
