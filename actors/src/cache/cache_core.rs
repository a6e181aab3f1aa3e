//! [`CacheCore`]: the cache's entries and its in-flight fetches, as a synchronous state
//! machine that the node's cache (`node::node_cache`) drives.
//!
//! The node's cache turns a read into [`CacheCore::lookup`], sends the [`FetchOrder`] it gets (if
//! any) to whoever fills misses, feeds the reply to [`CacheCore::complete_fetch`] (or
//! [`CacheCore::complete_fetch_in_order`]), and sends every [`Answer`] it gets back to its
//! waiter. Invalidations go to [`CacheCore::invalidate`]. The rules of DESIGN.md's data
//! path hold whatever the order of those calls:
//!
//! - single flight: a miss joins the fetch already in flight for its key, unless the key
//!   was invalidated after that fetch started — then it starts a new one;
//! - a fill is cached only if its key was not invalidated (nor the cache cleared) after its
//!   fetch started; its waiters still get it, because they all joined before that
//!   invalidation;
//! - a waiter's [`Answer`] comes once, when every key it asked for is resolved, whichever
//!   fetches they rode on.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use instaface_bus::graph::{CacheKey, CacheValue};
use serde::Serialize;

use super::epochs::{Epoch, Epochs};
use super::lru::Lru;

/// Names one fetch started by a lookup; the actor hands it back with the fetch's result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FetchId(pub(crate) u64);

impl fmt::Display for FetchId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "fetch-{}", self.0)
    }
}

/// Names one pending lookup, so the actor can [`CacheCore::cancel`] it (say, on timeout).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WaiterId(u64);

/// Why a key of a lookup has no value.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum FetchError<E> {
    /// The fetch carrying the key failed (or was failed by [`CacheCore::fail_all_inflight`]).
    #[error("fill failed: {0}")]
    Failed(E),
    /// The fetch succeeded but brought no value, or a value of the wrong kind, for the key.
    #[error("the fill brought no value for the key")]
    Missing,
}

/// What one key of a lookup resolves to.
pub type KeyResult<E> = Result<CacheValue, FetchError<E>>;

/// A fetch the actor must start: fill these keys, then call
/// [`CacheCore::complete_fetch`] with this id.
#[derive(Clone, Debug, PartialEq)]
pub struct FetchOrder {
    pub id: FetchId,
    /// The keys to fill, in the order the lookup asked for them.
    pub keys: Vec<CacheKey>,
}

/// The resolution of one lookup: a result for every distinct key asked, in the order first
/// asked.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer<W, E> {
    /// The token the lookup was made with.
    pub waiter: W,
    pub values: Vec<(CacheKey, KeyResult<E>)>,
}

impl<W, E> Answer<W, E> {
    /// The waiter, and the values or the first error among them.
    #[allow(clippy::type_complexity)]
    pub fn into_values(self) -> (W, Result<Vec<(CacheKey, CacheValue)>, FetchError<E>>) {
        let values = self.values.into_iter().map(|(k, r)| r.map(|v| (k, v))).collect();
        (self.waiter, values)
    }
}

/// What [`CacheCore::lookup`] found.
#[derive(Debug)]
pub struct Lookup<W, E> {
    /// The answer, when every key hit (and no fetch is needed): send it now.
    pub answer: Option<Answer<W, E>>,
    /// The pending waiter, when some key missed: its answer will come out of a later
    /// [`CacheCore::complete_fetch`].
    pub waiter: Option<WaiterId>,
    /// One fetch for every missed key that could not join a fetch in flight.
    pub fetch: Option<FetchOrder>,
    /// Distinct keys found in the cache.
    pub hits: usize,
    /// Distinct keys not found (joined or fetched).
    pub misses: usize,
    /// Of the misses, those that joined a fetch already in flight.
    pub joined: usize,
}

/// The cache's counters since it started, and its current size.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CacheStats {
    /// Keys looked up and found.
    pub hits: u64,
    /// Keys looked up and not found.
    pub misses: u64,
    /// Misses that joined a fetch already in flight (single flight at work).
    pub joined: u64,
    /// Values a fetch brought and the cache kept.
    pub fills: u64,
    /// Values a fetch brought and the cache dropped, because the key was invalidated (or the
    /// cache cleared) while the fetch was in flight.
    pub raced: u64,
    /// Entries pushed out by the size bound.
    pub evictions: u64,
    /// Keys invalidated.
    pub invalidations: u64,
    /// Entries held now.
    pub entries: u64,
    /// Fetches in flight now.
    pub inflight: u64,
    /// Lookups waiting for a fetch now.
    pub waiting: u64,
}

struct Fetch {
    started: Epoch,
    keys: Vec<CacheKey>,
    /// For each key (same index as `keys`), who waits for it and at which of their slots.
    subscribers: Vec<Vec<(WaiterId, usize)>>,
}

struct Waiter<W, E> {
    token: W,
    values: Vec<(CacheKey, Option<KeyResult<E>>)>,
    pending: usize,
}

/// The cache core: LRU-bounded entries, single-flight fetches and the invalidation epochs
/// that keep raced fills out. Pure and synchronous: no I/O, no clock, no async.
///
/// `W` is the actor's token for routing an answer (a reply port, a request id); `E` is the
/// error a failed fetch carries.
pub struct CacheCore<W, E> {
    entries: Lru<CacheKey, CacheValue>,
    epochs: Epochs,
    /// In creation order, so the first one started earliest.
    fetches: BTreeMap<FetchId, Fetch>,
    /// The newest fetch of each key still in flight, and the key's index in it.
    newest_fetch: HashMap<CacheKey, (FetchId, usize)>,
    waiters: HashMap<WaiterId, Waiter<W, E>>,
    next_fetch: u64,
    next_waiter: u64,
    stats: CacheStats,
}

impl<W, E: Clone> CacheCore<W, E> {
    /// An empty cache holding at most `capacity` entries (0: caches nothing, but fetches
    /// are still shared).
    pub fn new(capacity: usize) -> Self {
        Self::with_fetch_base(capacity, 0)
    }

    /// Like [`CacheCore::new`], numbering its fetches from `base`. A cache that replaces
    /// another in the same process (a restart) must use a base no earlier cache used, so
    /// that a fill started by the old one can never complete a fetch of the new one.
    pub fn with_fetch_base(capacity: usize, base: u64) -> Self {
        CacheCore {
            entries: Lru::new(capacity),
            epochs: Epochs::default(),
            fetches: BTreeMap::new(),
            newest_fetch: HashMap::new(),
            waiters: HashMap::new(),
            next_fetch: base,
            next_waiter: 0,
            stats: CacheStats::default(),
        }
    }

    /// Looks `keys` up for `waiter`. Hits are answered from the cache; each miss joins the
    /// fetch in flight for its key if that fetch started after the key's latest
    /// invalidation, and otherwise goes into the one new fetch this lookup returns.
    /// Duplicate keys are looked up once.
    pub fn lookup(&mut self, keys: &[CacheKey], waiter: W) -> Lookup<W, E> {
        let id = WaiterId(self.next_waiter);
        let now = self.epochs.now();
        let mut seen = HashSet::with_capacity(keys.len());
        let mut values = Vec::with_capacity(keys.len());
        let mut to_fetch: Vec<(CacheKey, usize)> = Vec::new();
        let (mut hits, mut joined) = (0, 0);
        for key in keys {
            if !seen.insert(key) {
                continue;
            }
            let slot = values.len();
            if let Some(value) = self.entries.get(key) {
                hits += 1;
                values.push((key.clone(), Some(Ok(value.clone()))));
                continue;
            }
            values.push((key.clone(), None));
            match self.joinable_fetch(key) {
                Some((fetch, at)) => {
                    joined += 1;
                    if let Some(subs) = self.fetches.get_mut(&fetch).and_then(|f| f.subscribers.get_mut(at)) {
                        subs.push((id, slot));
                    }
                }
                None => to_fetch.push((key.clone(), slot)),
            }
        }
        let misses = values.len() - hits;
        self.stats.hits += hits as u64;
        self.stats.misses += misses as u64;
        self.stats.joined += joined as u64;

        let fetch = (!to_fetch.is_empty()).then(|| {
            let fetch_id = FetchId(self.next_fetch);
            self.next_fetch += 1;
            let mut fetch = Fetch { started: now, keys: Vec::new(), subscribers: Vec::new() };
            for (at, (key, slot)) in to_fetch.into_iter().enumerate() {
                self.newest_fetch.insert(key.clone(), (fetch_id, at));
                fetch.keys.push(key);
                fetch.subscribers.push(vec![(id, slot)]);
            }
            let order = FetchOrder { id: fetch_id, keys: fetch.keys.clone() };
            self.fetches.insert(fetch_id, fetch);
            order
        });

        if misses == 0 {
            let values = values.into_iter().map(|(k, v)| (k, v.unwrap_or(Err(FetchError::Missing)))).collect();
            return Lookup { answer: Some(Answer { waiter, values }), waiter: None, fetch, hits, misses, joined };
        }
        self.next_waiter += 1;
        self.waiters.insert(id, Waiter { token: waiter, values, pending: misses });
        Lookup { answer: None, waiter: Some(id), fetch, hits, misses, joined }
    }

    /// Delivers the result of fetch `id` (values by key) to everyone waiting on it and
    /// caches each value whose key was not invalidated since the fetch started. Returns the
    /// answers of the lookups this completes. A key the result lacks (or gives a value of
    /// the wrong kind) resolves to [`FetchError::Missing`]; keys the fetch did not ask for
    /// are ignored. An unknown or already completed `id` does nothing.
    pub fn complete_fetch(&mut self, id: FetchId, result: Result<Vec<(CacheKey, CacheValue)>, E>) -> Vec<Answer<W, E>> {
        match result {
            Ok(values) => {
                let mut by_key: HashMap<CacheKey, CacheValue> = values.into_iter().collect();
                self.settle(id, |key, _| by_key.remove(key).ok_or(FetchError::Missing))
            }
            Err(error) => self.settle(id, |_, _| Err(FetchError::Failed(error.clone()))),
        }
    }

    /// Like [`CacheCore::complete_fetch`], for a result that lists one value per key in the
    /// order of the [`FetchOrder`]'s keys (as a `FillReply` does). A list of the wrong
    /// length cannot be matched to the keys: every key resolves to [`FetchError::Missing`].
    pub fn complete_fetch_in_order(&mut self, id: FetchId, result: Result<Vec<CacheValue>, E>) -> Vec<Answer<W, E>> {
        match result {
            Ok(values) if self.fetch_keys(id).is_some_and(|keys| keys.len() != values.len()) => {
                self.settle(id, |_, _| Err(FetchError::Missing))
            }
            Ok(values) => {
                let mut values: Vec<Option<CacheValue>> = values.into_iter().map(Some).collect();
                self.settle(id, |_, at| values.get_mut(at).and_then(Option::take).ok_or(FetchError::Missing))
            }
            Err(error) => self.settle(id, |_, _| Err(FetchError::Failed(error.clone()))),
        }
    }

    /// Fails every fetch in flight with `error` (when the node loses its lease or its
    /// leader) and returns the answers that completes.
    pub fn fail_all_inflight(&mut self, error: E) -> Vec<Answer<W, E>> {
        let ids: Vec<FetchId> = self.fetches.keys().copied().collect();
        let mut answers = Vec::new();
        for id in ids {
            answers.extend(self.settle(id, |_, _| Err(FetchError::Failed(error.clone()))));
        }
        answers
    }

    /// Drops `keys` from the cache and marks them invalidated now: no fetch in flight will
    /// cache them, and no later lookup joins such a fetch.
    pub fn invalidate(&mut self, keys: &[CacheKey]) {
        for key in keys {
            self.entries.remove(key);
        }
        self.stats.invalidations += keys.len() as u64;
        self.epochs.invalidate(keys);
        self.forget_old_invalidations();
    }

    /// Drops every entry and treats every fetch in flight as raced (for a node too far
    /// behind the leader's outbox to know what changed).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.epochs.clear();
    }

    /// Forgets a pending lookup; its answer will never come. Returns its token.
    pub fn cancel(&mut self, waiter: WaiterId) -> Option<W> {
        self.waiters.remove(&waiter).map(|w| w.token)
    }

    /// The cached value of `key`, without counting a hit or a use.
    pub fn peek(&self, key: &CacheKey) -> Option<&CacheValue> {
        self.entries.peek(key)
    }

    /// The keys of fetch `id`, while it is in flight.
    pub fn fetch_keys(&self, id: FetchId) -> Option<&[CacheKey]> {
        self.fetches.get(&id).map(|f| f.keys.as_slice())
    }

    /// The counters and current sizes.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            entries: self.entries.len() as u64,
            inflight: self.fetches.len() as u64,
            waiting: self.waiters.len() as u64,
            ..self.stats.clone()
        }
    }

    /// The number of invalidation records kept for fetches in flight.
    #[cfg(test)]
    pub(crate) fn invalidation_records(&self) -> usize {
        self.epochs.records()
    }

    /// The fetch in flight for `key` that a lookup starting now may join.
    fn joinable_fetch(&self, key: &CacheKey) -> Option<(FetchId, usize)> {
        let (id, at) = *self.newest_fetch.get(key)?;
        let fetch = self.fetches.get(&id)?;
        (!self.epochs.invalidated_since(key, fetch.started)).then_some((id, at))
    }

    /// Ends fetch `id`: resolves each of its keys with `outcome(key, index)`, caches what
    /// may be cached, and returns the answers completed.
    fn settle<F>(&mut self, id: FetchId, mut outcome: F) -> Vec<Answer<W, E>>
    where
        F: FnMut(&CacheKey, usize) -> KeyResult<E>,
    {
        let Some(fetch) = self.fetches.remove(&id) else {
            return Vec::new();
        };
        let mut completed = Vec::new();
        for (at, (key, subscribers)) in fetch.keys.into_iter().zip(fetch.subscribers).enumerate() {
            if self.newest_fetch.get(&key).is_some_and(|(f, _)| *f == id) {
                self.newest_fetch.remove(&key);
            }
            let result =
                outcome(&key, at).and_then(|v| if value_fits_key(&key, &v) { Ok(v) } else { Err(FetchError::Missing) });
            if let Ok(value) = &result {
                if self.epochs.invalidated_since(&key, fetch.started) {
                    self.stats.raced += 1;
                } else {
                    self.stats.fills += 1;
                    if self.entries.insert(key.clone(), value.clone()).is_some() {
                        self.stats.evictions += 1;
                    }
                }
            }
            for (waiter, slot) in subscribers {
                let Some(w) = self.waiters.get_mut(&waiter) else {
                    continue;
                };
                let Some((_, value @ None)) = w.values.get_mut(slot) else {
                    continue;
                };
                *value = Some(result.clone());
                w.pending -= 1;
                if w.pending == 0 {
                    completed.push(waiter);
                }
            }
        }
        self.forget_old_invalidations();
        completed
            .into_iter()
            .filter_map(|id| self.waiters.remove(&id))
            .map(|w| Answer {
                waiter: w.token,
                values: w.values.into_iter().map(|(k, v)| (k, v.unwrap_or(Err(FetchError::Missing)))).collect(),
            })
            .collect()
    }

    fn forget_old_invalidations(&mut self) {
        let oldest_start = self.fetches.values().next().map(|f| f.started);
        self.epochs.forget_before(oldest_start);
    }
}

/// Whether `value` can be the value of `key`: an entity value for an entity key, of that
/// entity or of none; an association list for a list key, of that list's associations.
pub fn value_fits_key(key: &CacheKey, value: &CacheValue) -> bool {
    match (key, value) {
        (CacheKey::Entity(id), CacheValue::Entity { entity }) => entity.as_ref().is_none_or(|e| e.id == *id),
        (CacheKey::Assocs { from, atype }, CacheValue::Assocs { items, .. }) => {
            items.iter().all(|a| a.from == *from && a.atype == *atype)
        }
        _ => false,
    }
}
