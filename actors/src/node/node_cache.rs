//! [`NodeCache`]: this node's cache of entities and association lists, and its right to
//! serve, under one lock that the request tasks and the protocol actor share.
//!
//! The protocol actor applies the core's cache commands here ([`NodeCache::invalidate`],
//! [`NodeCache::clear`], [`NodeCache::set_serving`]) *before* anything of the same step
//! leaves the node; a read looks its keys up here, in its own task. Because both take the
//! same lock, a lookup that starts after the node acked an invalidation never sees the
//! dropped value, and one that starts after the node gave up its lease is refused — the
//! order the protocol simulation assumes when it applies cache commands inside the step.
//!
//! Lookups are answered from the [`CacheCore`], which decides what must be fetched (single
//! flight, and never handing a reader a value fetched before an invalidation it came
//! after). A hit is answered in the reader's task with no hand-over. A miss starts a fetch
//! as a task — a fill request to the leader on a follower, a MySQL read through the store
//! actor on the leader — which completes the fetch here and answers every lookup waiting
//! on it. The supervisor resets the cache when it stops the node's tree (nobody applies
//! invalidations while the tree is down, and the restarted tree's protocol core starts
//! from nothing applied): fetch numbers never repeat within a process, so a fill started
//! before a reset completes nothing after it, and the lookups it would have answered are
//! told the cache restarted.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use instaface_bus::graph::{CacheKey, CacheValue, ErrorBody, ErrorCode, FillReply, FillRequest, Reply};
use instaface_bus::messages::Role;
use instaface_bus::NodeId;
use parking_lot::Mutex;
use tokio::sync::oneshot;

use super::lookup;
use super::messages::StoreMsg;
use super::metrics::Metrics;
use super::net::Net;
use crate::cache::{Answer, CacheCore, CacheStats, FetchError, FetchId, FetchOrder};

/// How long a fetch may take before it fails (its waiters get an error).
const FILL_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a read waits for the fetches it is waiting on: longer than a fetch may take,
/// so the fetch answers first.
const WAIT_TIMEOUT: Duration = Duration::from_secs(4);

/// Keys looked up under one hold of the lock: a big lookup (a fill of thousands of keys)
/// is taken in parts, so the protocol actor never waits long behind it to invalidate.
const KEYS_PER_HOLD: usize = 64;

/// Each cache of the process numbers its fetches from its own base.
static INCARNATIONS: AtomicU64 = AtomicU64::new(0);

/// The values of the keys a lookup asked, in order, or why not.
pub type Values = Result<Vec<(CacheKey, CacheValue)>, ErrorBody>;

/// Where a lookup that waits on a fetch gets its answer.
type Waiter = oneshot::Sender<Values>;

/// One node's cache (of one shard's group). Cheap to clone: every clone is the same cache.
#[derive(Clone)]
pub struct NodeCache {
    inner: Arc<Mutex<Inner>>,
    capacity: usize,
    group: Arc<Group>,
}

/// The group a cache belongs to: where its fetches go and what they count. A query's later
/// levels look up other shards' caches from this group's requests; their misses are still
/// filled from their own shard.
struct Group {
    /// This group's bus (its shard's subjects).
    net: Net,
    /// This group's store actor (the leader's MySQL pool).
    store: String,
    metrics: Metrics,
}

struct Inner {
    core: CacheCore<Waiter, ErrorBody>,
    /// Reads are served until then; `None`: not now.
    serving_until: Option<Instant>,
    role: Role,
    term: u64,
    leader: Option<NodeId>,
}

impl Inner {
    fn new(capacity: usize) -> Inner {
        let base = INCARNATIONS.fetch_add(1, Ordering::SeqCst) << 40;
        Inner {
            core: CacheCore::with_fetch_base(capacity, base),
            serving_until: None,
            role: Role::Follower,
            term: 0,
            leader: None,
        }
    }

    fn serving(&self, now: Instant) -> bool {
        super::view::lease_holds(self.serving_until, now)
    }
}

impl NodeCache {
    /// An empty cache holding at most `capacity` entries, not serving, of the group whose
    /// bus is `net` and whose store actor is named `store`.
    pub fn new(capacity: usize, net: Net, store: String, metrics: Metrics) -> NodeCache {
        NodeCache {
            inner: Arc::new(Mutex::new(Inner::new(capacity))),
            capacity,
            group: Arc::new(Group { net, store, metrics }),
        }
    }

    /// Starts over: empty, not serving, numbering fetches anew. The lookups waiting on a
    /// fetch are answered that the cache restarted (their senders are dropped).
    pub fn reset(&self) {
        let old = std::mem::replace(&mut *self.inner.lock(), Inner::new(self.capacity));
        drop(old);
    }

    /// Drops these keys (wire form) and marks them invalidated now. A key that does not
    /// parse clears the whole cache: it cannot tell what changed.
    pub fn invalidate(&self, keys: &[String]) {
        let parsed: Vec<CacheKey> = keys.iter().filter_map(|k| k.parse().ok()).collect();
        let mut inner = self.inner.lock();
        if parsed.len() != keys.len() {
            tracing::warn!(?keys, "invalidation with unparsable keys: clearing the cache");
            inner.core.clear();
        } else {
            inner.core.invalidate(&parsed);
        }
    }

    /// Drops everything (a node too far behind the leader's outbox to know what changed).
    pub fn clear(&self) {
        self.inner.lock().core.clear();
    }

    /// Until when this node may serve reads (`None`: not now), and whom it fills from.
    pub fn set_serving(&self, until: Option<Instant>, role: Role, term: u64, leader: Option<NodeId>) {
        let mut inner = self.inner.lock();
        inner.serving_until = until;
        inner.role = role;
        inner.term = term;
        inner.leader = leader;
    }

    /// The counters and current sizes.
    pub fn stats(&self) -> CacheStats {
        self.inner.lock().core.stats()
    }

    /// Values for `keys` (each key once, in the order first asked), from the cache or
    /// filled. Refused unless this node may serve now. More than [`KEYS_PER_HOLD`] keys are
    /// looked up in parts, each under its own hold of the lock; their misses still go out
    /// as one fetch.
    pub async fn get(&self, keys: Vec<CacheKey>) -> Values {
        let keys = if keys.len() > KEYS_PER_HOLD {
            let mut seen = HashSet::with_capacity(keys.len());
            keys.into_iter().filter(|k| seen.insert(k.clone())).collect()
        } else {
            keys
        };
        let mut parts = Vec::new();
        let mut orders = Vec::new();
        let mut from = None;
        let mut refused = None;
        for keys in keys.chunks(KEYS_PER_HOLD) {
            let (waiter, answer) = oneshot::channel();
            let found = {
                let mut inner = self.inner.lock();
                if !inner.serving(Instant::now()) {
                    refused = Some(ErrorBody::new(
                        ErrorCode::Unavailable,
                        format!("{} holds no read lease", self.group.net.node()),
                    ));
                    break;
                }
                let found = inner.core.lookup(keys, waiter);
                if found.fetch.is_some() && from.is_none() {
                    from = Some(Source::of(&inner));
                }
                found
            };
            self.group.metrics.cache_hits.inc_by(found.hits as u64);
            self.group.metrics.cache_misses.inc_by(found.misses as u64);
            orders.extend(found.fetch);
            parts.push(found.answer.map(|a| values_of(a).1).ok_or(answer));
        }
        // Started even when a later part was refused: the fetches an earlier part opened
        // must complete, or later lookups would join them and wait in vain.
        if let Some(from) = from {
            self.start_fetch(from, orders);
        }
        if let Some(refused) = refused {
            return Err(refused);
        }
        let deadline = tokio::time::Instant::now() + WAIT_TIMEOUT;
        let mut values = Vec::with_capacity(keys.len());
        for part in parts {
            let part = match part {
                Ok(found) => found,
                Err(answer) => match tokio::time::timeout_at(deadline, answer).await {
                    Ok(Ok(values)) => values,
                    Ok(Err(_)) => Err(ErrorBody::new(ErrorCode::Unavailable, "the cache restarted during the read")),
                    Err(_) => Err(ErrorBody::new(ErrorCode::Unavailable, "the cache did not answer in time")),
                },
            };
            values.extend(part?);
        }
        Ok(values)
    }

    /// Starts one fetch of every key of `orders` as a task, which completes each order
    /// here and answers their waiters.
    fn start_fetch(&self, from: Source, orders: Vec<FetchOrder>) {
        let cache = self.clone();
        self.group.metrics.cache_fills.inc();
        tokio::spawn(async move {
            let lens: Vec<(FetchId, usize)> = orders.iter().map(|o| (o.id, o.keys.len())).collect();
            let mut unfinished = Unfinished { cache: &cache, ids: lens.iter().map(|&(id, _)| id).collect() };
            let keys: Vec<CacheKey> = orders.into_iter().flat_map(|o| o.keys).collect();
            let asked = keys.len();
            let group = &cache.group;
            let result = match from {
                Source::Mysql => fetch_from_mysql(group, keys).await,
                Source::Leader { leader, term } => fetch_from_leader(group, &leader, term, keys).await,
                Source::Nobody => Err(ErrorBody::new(ErrorCode::Unavailable, "no leader to fill from")),
            };
            // The fill is over: from here a panic is the core's own, and completing its
            // orders again on a half-updated core would be worse than leaving them.
            unfinished.ids.clear();
            let answers = {
                let mut inner = cache.inner.lock();
                let core = &mut inner.core;
                match result {
                    Ok(values) if values.len() == asked => {
                        let mut values = values.into_iter();
                        let parts = lens.into_iter().map(|(id, n)| (id, values.by_ref().take(n).collect()));
                        parts.flat_map(|(id, part)| core.complete_fetch_in_order(id, Ok(part))).collect::<Vec<_>>()
                    }
                    // A reply that does not match what was asked: every key is missing.
                    Ok(_) => {
                        lens.into_iter().flat_map(|(id, _)| core.complete_fetch_in_order(id, Ok(Vec::new()))).collect()
                    }
                    Err(e) => {
                        lens.into_iter().flat_map(|(id, _)| core.complete_fetch_in_order(id, Err(e.clone()))).collect()
                    }
                }
            };
            answer_all(answers);
        });
    }
}

/// The orders of a fetch task whose fill is not over yet. If the task ends during the fill
/// (a panic in it, or the runtime shutting down), dropping this fails them, so their
/// waiters hear at once and no later lookup joins a fetch that will never end.
struct Unfinished<'a> {
    cache: &'a NodeCache,
    ids: Vec<FetchId>,
}

impl Drop for Unfinished<'_> {
    fn drop(&mut self) {
        if self.ids.is_empty() {
            return;
        }
        let failed = ErrorBody::new(ErrorCode::Internal, "the cache fill failed");
        let answers: Vec<_> = {
            let mut inner = self.cache.inner.lock();
            self.ids.drain(..).flat_map(|id| inner.core.complete_fetch_in_order(id, Err(failed.clone()))).collect()
        };
        answer_all(answers);
    }
}

/// Sends each completed lookup its values.
fn answer_all(answers: Vec<Answer<Waiter, ErrorBody>>) {
    for answer in answers {
        let (waiter, values) = values_of(answer);
        let _ = waiter.send(values);
    }
}

/// Where a fetch gets its values.
enum Source {
    /// The leader reads MySQL through its store actor.
    Mysql,
    /// A follower asks the leader of `term` for a fill.
    Leader {
        leader: NodeId,
        term: u64,
    },
    Nobody,
}

impl Source {
    fn of(inner: &Inner) -> Source {
        match (&inner.role, &inner.leader) {
            (Role::Leader, _) => Source::Mysql,
            (_, Some(leader)) => Source::Leader { leader: leader.clone(), term: inner.term },
            (_, None) => Source::Nobody,
        }
    }
}

/// A lookup's waiter and its values, or the error a reader is told.
fn values_of<W>(answer: Answer<W, ErrorBody>) -> (W, Values) {
    let (waiter, values) = answer.into_values();
    let values = values.map_err(|e| match e {
        FetchError::Failed(body) => body,
        FetchError::Missing => ErrorBody::new(ErrorCode::Internal, "a fill brought no value for a key"),
    });
    (waiter, values)
}

async fn fetch_from_mysql(group: &Group, keys: Vec<CacheKey>) -> Result<Vec<CacheValue>, ErrorBody> {
    let Some(store) = lookup::<StoreMsg>(&group.store) else {
        return Err(ErrorBody::new(ErrorCode::Unavailable, "the store actor is restarting"));
    };
    match store.call(|reply| StoreMsg::Fill { keys, reply }, Some(FILL_TIMEOUT)).await {
        Ok(ractor::rpc::CallResult::Success(r)) => r.map(|(_, values)| values),
        _ => Err(ErrorBody::new(ErrorCode::Unavailable, "the store did not answer the fill")),
    }
}

async fn fetch_from_leader(
    group: &Group,
    leader: &NodeId,
    term: u64,
    keys: Vec<CacheKey>,
) -> Result<Vec<CacheValue>, ErrorBody> {
    let net = &group.net;
    let req = FillRequest { term, node: net.node().clone(), keys };
    match net.request::<_, Reply<FillReply>>(net.subjects().fill(leader), &req, FILL_TIMEOUT).await {
        Ok(Reply::Ok(fill)) => Ok(fill.values),
        Ok(Reply::Error(e)) => Err(e),
        Err(e) => Err(ErrorBody::new(ErrorCode::Unavailable, format!("fill from the leader failed: {e}"))),
    }
}
