//! The running node: a ractor supervision tree wired to NATS.
//!
//! ```text
//! NodeSupervisor ── restarts a failed child (bounded rate), escalates past it
//!  ├─ ElectionActor   the election core, votes, acks, leases, leadership transfer
//!  ├─ HeartbeatActor  the leader's heartbeats and invalidation log; followers' intake of both
//!  ├─ CacheActor      the follower/leader cache and the reads it serves
//!  └─ StoreActor      the leader's MySQL pool: fence, writes, fills
//! ```
//!
//! NATS subscriptions are plain tasks ([`intake`]) that decode each message and hand it
//! to the actor named for it, looked up in ractor's registry at delivery time, so nothing
//! holds a dead child's `ActorRef` across a restart.
//!
//! - [`config`]: flags and validation. [`net`]: the bus plus the unplug switch.
//! - [`metrics`]: Prometheus. [`view`]: the role/term/lease snapshot the actors share.

pub mod cache_actor;
pub mod config;
pub mod election_actor;
pub mod heartbeat_actor;
pub mod intake;
pub mod metrics;
pub mod net;
pub mod requests;
pub mod run;
pub mod service;
pub mod store_actor;
pub mod supervisor;
pub mod view;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use instaface_bus::membership::Membership;
use ractor::{ActorRef, Message};
use tokio::sync::watch;

use self::config::NodeConfig;
use self::metrics::Metrics;
use self::net::Net;
use self::view::ClusterView;

/// What every actor of one node shares. Cheap to clone.
#[derive(Clone)]
pub struct NodeContext {
    pub cfg: Arc<NodeConfig>,
    pub net: Net,
    pub membership: Membership,
    pub metrics: Metrics,
    /// The election actor's latest view of the cluster.
    pub view: watch::Sender<ClusterView>,
    /// Invalidations applied to this node's cache up to here (followers ack it).
    pub applied_seq: Arc<AtomicU64>,
    /// The origin of this node's monotonic clock (the election core's `now`).
    pub origin: Instant,
    pub names: ActorNames,
    /// The cache's latest counters, for the status endpoint and events.
    pub counters: service::SharedCounters,
    /// Leader only: the outbox seq loaded on taking office, once the fence is raised and
    /// the outbox replayed into heartbeats; `u64::MAX` until then (and on followers). The
    /// leader confirms no ack (grants no read lease) and serves nothing before that, and
    /// then only acks of followers that have applied at least this seq.
    pub ready_seq: Arc<AtomicU64>,
}

/// [`NodeContext::ready_seq`] while the leader is not ready.
pub const NOT_READY: u64 = u64::MAX;

impl NodeContext {
    /// Monotonic time since this node started, as the election core counts it.
    pub fn now(&self) -> std::time::Duration {
        self.origin.elapsed()
    }

    pub fn applied_seq(&self) -> u64 {
        self.applied_seq.load(Ordering::SeqCst)
    }

    /// Leader only: whether the outbox is loaded for this term (see `ready_seq`).
    pub fn leader_ready(&self) -> Option<u64> {
        let seq = self.ready_seq.load(Ordering::SeqCst);
        (seq != NOT_READY).then_some(seq)
    }

    pub fn id(&self) -> &str {
        &self.cfg.id
    }
}

/// The registry names of one node's actors (unique per process: prefixed with the node id).
#[derive(Clone, Debug)]
pub struct ActorNames {
    pub supervisor: String,
    pub election: String,
    pub heartbeat: String,
    pub cache: String,
    pub store: String,
}

impl ActorNames {
    pub fn new(node: &str) -> ActorNames {
        ActorNames {
            supervisor: format!("{node}/supervisor"),
            election: format!("{node}/election"),
            heartbeat: format!("{node}/heartbeat"),
            cache: format!("{node}/cache"),
            store: format!("{node}/store"),
        }
    }
}

/// Sends `msg` to the actor registered as `name`, if it is alive. A message for an actor
/// that is restarting is dropped (and logged at debug): senders never hold stale refs.
pub fn cast_to<M: Message>(name: &str, msg: M) -> bool {
    match ActorRef::<M>::where_is(name) {
        Some(actor) => actor.cast(msg).is_ok(),
        None => {
            tracing::debug!(actor = name, "actor not running; message dropped");
            false
        }
    }
}

/// The live `ActorRef` registered as `name`.
pub fn lookup<M: Message>(name: &str) -> Option<ActorRef<M>> {
    ActorRef::<M>::where_is(name)
}
