//! The running node: a ractor supervision tree wired to NATS, around the pure protocol
//! core ([`crate::protocol::NodeCore`]).
//!
//! ```text
//! NodeSupervisor ── restarts all three children when one fails (bounded rate), escalates past it
//!  ├─ StoreActor      the leader's MySQL pool: fence, outbox, writes, fills
//!  ├─ CacheActor      publishes the node's cache's counters (the cache is shared state: node_cache)
//!  └─ ProtocolActor   steps the core: election, leases, the invalidation log; persists the vote
//! ```
//!
//! NATS subscriptions are plain tasks ([`intake`], [`requests`]) that decode each message
//! and hand it to the actor named for it, looked up in ractor's registry at delivery time,
//! so nothing holds a dead child's `ActorRef` across a restart.
//!
//! - [`messages`]: every message between the actors.
//! - [`config`]: flags and validation. [`net`]: the bus plus the unplug switches.
//! - [`metrics`]: Prometheus. [`view`]: the role/term/lease snapshot the actors share.
//! - [`vote_file`]: the term and vote on disk.
//! - [`balance`]: with several shards, spreading the groups' leaderships over the nodes.
//! - [`delivery`]: with several shards, the leader's delivery of cross-shard intents.
//! - [`gateway`]: the REST gateway a node may serve in its own process (`GATEWAY_LISTEN`).

pub mod balance;
pub mod cache_actor;
pub mod config;
pub mod delivery;
pub mod gateway;
pub mod intake;
pub mod messages;
pub mod metrics;
pub mod net;
pub mod node_cache;
pub mod protocol_actor;
pub mod requests;
pub mod run;
pub mod service;
pub mod store_actor;
pub mod supervisor;
pub mod view;
pub mod vote_file;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use instaface_bus::membership::Membership;
use instaface_bus::shards::ShardId;
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
    /// Every group's cache on this process, by shard ([`NodeContext::cache`] is this
    /// group's): a query's later levels follow associations into other shards.
    pub caches: Arc<Vec<node_cache::NodeCache>>,
    /// Invalidations applied to this node's cache up to here (the protocol actor keeps it).
    pub applied_seq: Arc<AtomicU64>,
    /// The origin of this node's monotonic clock (the election core's `now`).
    pub origin: Instant,
    pub names: ActorNames,
    /// The cache's latest counters, for the status endpoint and events.
    pub counters: service::SharedCounters,
    /// Permits for the requests handled at once (`MAX_INFLIGHT_REQUESTS`).
    pub inflight: Arc<tokio::sync::Semaphore>,
    /// Every group of this process's view, by shard: where another shard's leader is,
    /// for delivering intents to it.
    pub groups: Arc<Vec<watch::Receiver<ClusterView>>>,
    /// The leader's MySQL pool and its term, while the store actor holds it ready (the
    /// fence raised): shared with the intent delivery, which needs no pool of its own.
    pub store: watch::Sender<Option<(u64, crate::store::GraphStore)>>,
    /// Woken by the store when a batch may have recorded intents (the delivery task
    /// reads them at once instead of at its next reload).
    pub intents_written: Arc<tokio::sync::Notify>,
}

impl NodeContext {
    /// Monotonic time since this node started, as the election core counts it.
    pub fn now(&self) -> std::time::Duration {
        self.origin.elapsed()
    }

    pub fn applied_seq(&self) -> u64 {
        self.applied_seq.load(Ordering::SeqCst)
    }

    /// This group's cache, which reads look up and the protocol actor invalidates.
    pub fn cache(&self) -> &node_cache::NodeCache {
        &self.caches[self.cfg.shard as usize]
    }

    pub fn id(&self) -> &str {
        &self.cfg.id
    }
}

/// The registry names of one node's actors (unique per process: prefixed with the node id).
#[derive(Clone, Debug)]
pub struct ActorNames {
    pub supervisor: String,
    pub protocol: String,
    pub cache: String,
    pub store: String,
}

impl ActorNames {
    /// The names of one node's actors; with `shard`, of its member of that shard's group.
    pub fn new(node: &str, shard: Option<ShardId>) -> ActorNames {
        let base = match shard {
            Some(k) => format!("{node}/shard-{k}"),
            None => node.to_string(),
        };
        ActorNames {
            supervisor: format!("{base}/supervisor"),
            protocol: format!("{base}/protocol"),
            cache: format!("{base}/cache"),
            store: format!("{base}/store"),
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
