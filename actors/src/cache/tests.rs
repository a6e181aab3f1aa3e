//! Tests of [`CacheCore`]: the rules one at a time, then a model-based property test over
//! random interleavings of lookups, fills, invalidations, clears and failures.

use std::collections::HashSet;

use instaface_bus::graph::{CacheKey, CacheValue, Entity};
use proptest::prelude::*;

use super::{CacheCore, FetchError, FetchId};

fn ent(id: u64) -> CacheKey {
    CacheKey::Entity(id)
}

fn friends(from: u64) -> CacheKey {
    CacheKey::Assocs { from, atype: "friend".into() }
}

/// The value of `key` as the database holds it at `version`.
fn value(key: &CacheKey, version: u64) -> CacheValue {
    match key {
        CacheKey::Entity(id) => CacheValue::Entity {
            entity: Some(Entity {
                id: *id,
                etype: "user".into(),
                attributes: Default::default(),
                created: 0,
                updated: 0,
                version,
            }),
        },
        CacheKey::Assocs { .. } => CacheValue::Assocs { count: version, items: Vec::new(), complete: true },
    }
}

fn version(value: &CacheValue) -> Option<u64> {
    match value {
        CacheValue::Entity { entity } => entity.as_ref().map(|e| e.version),
        CacheValue::Assocs { count, .. } => Some(*count),
    }
}

type Core = CacheCore<&'static str, String>;

fn versions(values: &[(CacheKey, Result<CacheValue, FetchError<String>>)]) -> Vec<Option<u64>> {
    values.iter().map(|(_, r)| r.as_ref().ok().and_then(version)).collect()
}

#[test]
fn concurrent_misses_share_one_fetch() {
    let mut core = Core::new(10);
    let a = core.lookup(&[ent(1)], "a");
    let b = core.lookup(&[ent(1)], "b");
    let order = a.fetch.expect("a starts the fetch");
    assert_eq!(order.keys, vec![ent(1)]);
    assert!(b.fetch.is_none());
    assert_eq!((b.misses, b.joined), (1, 1));

    let answers = core.complete_fetch(order.id, Ok(vec![(ent(1), value(&ent(1), 7))]));
    let waiters: Vec<_> = answers.iter().map(|a| a.waiter).collect();
    assert_eq!(waiters, vec!["a", "b"]);
    assert!(answers.iter().all(|a| versions(&a.values) == vec![Some(7)]));

    let c = core.lookup(&[ent(1)], "c");
    let answer = c.answer.expect("a hit is answered at once");
    assert_eq!(versions(&answer.values), vec![Some(7)]);
    let s = core.stats();
    assert_eq!((s.hits, s.misses, s.joined, s.fills, s.entries, s.inflight, s.waiting), (1, 2, 1, 1, 1, 0, 0));
}

#[test]
fn a_reader_after_an_invalidation_never_joins_an_older_fetch() {
    let mut core = Core::new(10);
    let old = core.lookup(&[ent(1)], "before").fetch.expect("fetch");
    core.invalidate(&[ent(1)]);
    let after = core.lookup(&[ent(1)], "after");
    let new = after.fetch.expect("the reader after the invalidation starts its own fetch");
    assert_eq!(after.joined, 0);

    // The old fetch answers its own waiter but is not cached: it raced the invalidation.
    let answers = core.complete_fetch(old.id, Ok(vec![(ent(1), value(&ent(1), 1))]));
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].waiter, "before");
    assert_eq!(core.peek(&ent(1)), None);
    assert_eq!(core.stats().raced, 1);

    let answers = core.complete_fetch(new.id, Ok(vec![(ent(1), value(&ent(1), 2))]));
    assert_eq!(answers[0].waiter, "after");
    assert_eq!(versions(&answers[0].values), vec![Some(2)]);
    assert_eq!(core.peek(&ent(1)).and_then(version), Some(2));
}

#[test]
fn invalidating_another_key_does_not_race_a_fetch() {
    let mut core = Core::new(10);
    let order = core.lookup(&[ent(1), ent(2)], "a").fetch.expect("fetch");
    core.invalidate(&[ent(2)]);
    assert_eq!(core.lookup(&[ent(1)], "b").joined, 1);
    core.complete_fetch(order.id, Ok(vec![(ent(1), value(&ent(1), 1)), (ent(2), value(&ent(2), 1))]));
    assert!(core.peek(&ent(1)).is_some());
    assert!(core.peek(&ent(2)).is_none(), "the raced key is not cached");
}

#[test]
fn a_waiter_spanning_fetches_is_answered_once_all_are_in() {
    let mut core = Core::new(10);
    let first = core.lookup(&[ent(1)], "first").fetch.expect("fetch");
    let both = core.lookup(&[ent(2), ent(1), ent(2)], "both");
    let second = both.fetch.expect("ent(2) needs a fetch");
    assert_eq!(second.keys, vec![ent(2)]);
    assert_eq!((both.hits, both.misses, both.joined), (0, 2, 1));

    let answers = core.complete_fetch(second.id, Ok(vec![(ent(2), value(&ent(2), 5))]));
    assert!(answers.is_empty(), "ent(1) is still in flight");
    let answers = core.complete_fetch(first.id, Ok(vec![(ent(1), value(&ent(1), 4))]));
    let waiters: Vec<_> = answers.iter().map(|a| a.waiter).collect();
    assert_eq!(waiters, vec!["first", "both"]);
    let both = &answers[1];
    let keys: Vec<_> = both.values.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(keys, vec![ent(2), ent(1)], "each key once, in the order first asked");
    assert_eq!(versions(&both.values), vec![Some(5), Some(4)]);
}

#[test]
fn a_batch_mixes_hits_joins_and_one_new_fetch() {
    let mut core = Core::new(10);
    let warm = core.lookup(&[ent(1)], "warm").fetch.expect("fetch");
    core.complete_fetch(warm.id, Ok(vec![(ent(1), value(&ent(1), 1))]));
    let inflight = core.lookup(&[ent(2)], "other").fetch.expect("fetch");

    let batch = core.lookup(&[ent(1), ent(2), ent(3), friends(1)], "batch");
    assert_eq!((batch.hits, batch.misses, batch.joined), (1, 3, 1));
    let order = batch.fetch.expect("one fetch for the rest");
    assert_eq!(order.keys, vec![ent(3), friends(1)]);
    assert_eq!(core.fetch_keys(order.id), Some(&order.keys[..]));

    core.complete_fetch_in_order(order.id, Ok(vec![value(&ent(3), 3), value(&friends(1), 9)]));
    let answers = core.complete_fetch_in_order(inflight.id, Ok(vec![value(&ent(2), 2)]));
    let batch = answers.into_iter().find(|a| a.waiter == "batch").expect("batch answered");
    let (_, values) = batch.into_values();
    let got: Vec<_> = values.expect("all found").iter().map(|(k, v)| (k.clone(), version(v))).collect();
    assert_eq!(got, vec![(ent(1), Some(1)), (ent(2), Some(2)), (ent(3), Some(3)), (friends(1), Some(9))]);
}

#[test]
fn clear_races_every_fetch_in_flight() {
    let mut core = Core::new(10);
    let warm = core.lookup(&[ent(9)], "warm").fetch.expect("fetch");
    core.complete_fetch(warm.id, Ok(vec![(ent(9), value(&ent(9), 1))]));
    let order = core.lookup(&[ent(1)], "a").fetch.expect("fetch");
    core.clear();
    assert_eq!(core.stats().entries, 0);
    assert!(core.lookup(&[ent(1)], "b").fetch.is_some(), "no joining across a clear");
    let answers = core.complete_fetch(order.id, Ok(vec![(ent(1), value(&ent(1), 1))]));
    assert_eq!(answers.len(), 1);
    assert!(core.peek(&ent(1)).is_none());
}

#[test]
fn failures_reach_every_waiter_and_cache_nothing() {
    let mut core = Core::new(10);
    let order = core.lookup(&[ent(1), ent(2)], "a").fetch.expect("fetch");
    core.lookup(&[ent(2)], "b");
    let answers = core.complete_fetch(order.id, Err("mysql down".to_string()));
    assert_eq!(answers.len(), 2);
    for a in &answers {
        assert!(a.values.iter().all(|(_, r)| *r == Err(FetchError::Failed("mysql down".into()))));
    }
    assert_eq!(core.stats().entries, 0);
    assert!(core.lookup(&[ent(1)], "c").fetch.is_some(), "a failed fetch is not joined");
}

#[test]
fn fail_all_inflight_answers_everyone() {
    let mut core = Core::new(10);
    core.lookup(&[ent(1)], "a");
    core.lookup(&[ent(2), ent(1)], "b");
    let answers = core.fail_all_inflight("lease lost".into());
    assert_eq!(answers.len(), 2);
    let (_, b) = answers[1].clone().into_values();
    assert_eq!(b, Err(FetchError::Failed("lease lost".into())));
    let s = core.stats();
    assert_eq!((s.inflight, s.waiting), (0, 0));
    assert_eq!(core.invalidation_records(), 0);
}

#[test]
fn missing_and_ill_fitting_values_resolve_as_missing() {
    let mut core = Core::new(10);
    let order = core.lookup(&[ent(1), ent(2), friends(1)], "a").fetch.expect("fetch");
    let answers = core.complete_fetch(
        order.id,
        Ok(vec![
            (ent(1), value(&ent(3), 1)),     // another entity's value
            (friends(1), value(&ent(1), 1)), // the wrong kind
            (ent(7), value(&ent(7), 1)),     // not asked: ignored
        ]),
    );
    let results: Vec<_> = answers[0].values.iter().map(|(_, r)| r.clone()).collect();
    assert_eq!(results, vec![Err(FetchError::Missing); 3]);
    assert_eq!(core.stats().entries, 0);

    let order = core.lookup(&[ent(1), ent(2)], "b").fetch.expect("fetch");
    let answers = core.complete_fetch_in_order(
        order.id,
        Ok(vec![CacheValue::Entity { entity: None }, CacheValue::Assocs { count: 0, items: vec![], complete: true }]),
    );
    let results: Vec<_> = answers[0].values.iter().map(|(_, r)| r.clone()).collect();
    assert_eq!(results, vec![Ok(CacheValue::Entity { entity: None }), Err(FetchError::Missing)]);
    assert!(core.peek(&ent(1)).is_some(), "absence is cached too");

    // A reply of the wrong length cannot be matched to its keys.
    let order = core.lookup(&[friends(1), friends(2)], "c").fetch.expect("fetch");
    let answers = core.complete_fetch_in_order(order.id, Ok(vec![value(&friends(2), 1)]));
    let results: Vec<_> = answers[0].values.iter().map(|(_, r)| r.clone()).collect();
    assert_eq!(results, vec![Err(FetchError::Missing); 2]);
    assert!(core.peek(&friends(1)).is_none() && core.peek(&friends(2)).is_none());
}

#[test]
fn association_lists_must_be_of_their_key() {
    use super::value_fits_key;
    use instaface_bus::graph::Association;
    let assoc = |from: u64, atype: &str| Association {
        from,
        atype: atype.into(),
        to: 9,
        attributes: Default::default(),
        created: 0,
    };
    let list = |items| CacheValue::Assocs { count: 1, items, complete: true };
    assert!(value_fits_key(&friends(1), &list(vec![assoc(1, "friend")])));
    assert!(!value_fits_key(&friends(1), &list(vec![assoc(2, "friend")])));
    assert!(!value_fits_key(&friends(1), &list(vec![assoc(1, "likes")])));
    assert!(value_fits_key(&ent(1), &CacheValue::Entity { entity: None }));
    assert!(!value_fits_key(&ent(1), &list(vec![])));
}

#[test]
fn unknown_fetches_and_cancelled_waiters_are_ignored() {
    let mut core = Core::new(10);
    let a = core.lookup(&[ent(1)], "a");
    let order = a.fetch.expect("fetch");
    assert!(core.complete_fetch(FetchId(99), Ok(vec![])).is_empty());
    assert_eq!(core.cancel(a.waiter.expect("pending")), Some("a"));
    assert!(core.complete_fetch(order.id, Ok(vec![(ent(1), value(&ent(1), 1))])).is_empty());
    assert!(core.complete_fetch(order.id, Ok(vec![])).is_empty(), "completing twice does nothing");
    assert!(core.peek(&ent(1)).is_some());
}

#[test]
fn the_lru_bound_holds_through_the_core() {
    let mut core = Core::new(2);
    for id in 1..=3 {
        let order = core.lookup(&[ent(id)], "w").fetch.expect("fetch");
        core.complete_fetch(order.id, Ok(vec![(ent(id), value(&ent(id), 1))]));
        if id == 2 {
            core.lookup(&[ent(1)], "touch");
        }
    }
    assert!(core.peek(&ent(1)).is_some() && core.peek(&ent(3)).is_some());
    assert!(core.peek(&ent(2)).is_none(), "ent(2) was the least recently used");
    let s = core.stats();
    assert_eq!((s.entries, s.evictions), (2, 1));
}

#[test]
fn empty_lookups_are_answered_at_once() {
    let mut core = Core::new(2);
    let l = core.lookup(&[], "w");
    assert_eq!(l.answer.map(|a| a.values.len()), Some(0));
    assert!(l.fetch.is_none() && l.waiter.is_none());
}

#[test]
fn invalidation_records_are_kept_only_for_fetches_in_flight() {
    let mut core = Core::new(10);
    core.invalidate(&[ent(1), ent(2)]);
    assert_eq!(core.invalidation_records(), 0, "nothing in flight: nothing to remember");
    let old = core.lookup(&[ent(1)], "a").fetch.expect("fetch");
    core.invalidate(&[ent(1)]);
    core.invalidate(&[ent(3)]);
    let new = core.lookup(&[ent(3)], "b").fetch.expect("fetch");
    assert_eq!(core.invalidation_records(), 2);
    core.complete_fetch(old.id, Ok(vec![]));
    assert_eq!(core.invalidation_records(), 0, "the records are older than the fetch left");
    core.complete_fetch(new.id, Ok(vec![]));
    assert_eq!(core.invalidation_records(), 0);
}

// ---- Model-based property test ------------------------------------------------------

/// The keys of the simulated world.
fn world_keys() -> Vec<CacheKey> {
    vec![ent(1), ent(2), ent(3), friends(1), friends(2)]
}

#[derive(Clone, Debug)]
enum Outcome {
    Ok,
    OkInOrder,
    Fail,
    /// Succeeds but leaves out one key (by index into the fetch's keys).
    DropKey(usize),
}

#[derive(Clone, Debug)]
enum Op {
    Lookup(Vec<usize>),
    /// A write: each key's database version goes up, and the cache is told.
    Invalidate(Vec<usize>),
    /// The node fell behind the outbox: anything may have changed.
    Clear,
    /// A fetch in flight reads the database now (its fill is served).
    Read(usize),
    Complete(usize, Outcome),
    FailAll,
    Cancel(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let keys = || proptest::collection::vec(0usize..5, 1..4);
    prop_oneof![
        6 => keys().prop_map(Op::Lookup),
        3 => keys().prop_map(Op::Invalidate),
        1 => Just(Op::Clear),
        3 => any::<usize>().prop_map(Op::Read),
        5 => (any::<usize>(), prop_oneof![
            4 => Just(Outcome::Ok),
            2 => Just(Outcome::OkInOrder),
            1 => Just(Outcome::Fail),
            1 => any::<usize>().prop_map(Outcome::DropKey),
        ]).prop_map(|(f, o)| Op::Complete(f, o)),
        1 => Just(Op::FailAll),
        1 => any::<usize>().prop_map(Op::Cancel),
    ]
}

/// What a key of a waiter resolves from.
#[derive(Clone, Copy, Debug)]
enum Source {
    Hit(u64),
    Fetch(usize),
}

/// How a fetch ended, per key: a version, or an error.
#[derive(Clone, Debug, PartialEq)]
enum Got {
    Version(u64),
    Missing,
    Failed,
}

struct ModelFetch {
    id: FetchId,
    keys: Vec<usize>,
    /// The database versions its fill read, once it has.
    read: Option<Vec<u64>>,
    /// Keys invalidated since it started.
    raced: HashSet<usize>,
    result: Option<Vec<Got>>,
}

struct ModelWaiter {
    id: Option<super::WaiterId>,
    keys: Vec<usize>,
    /// The database versions when the lookup began.
    floor: Vec<u64>,
    sources: Vec<Source>,
    answered: bool,
    cancelled: bool,
}

struct Harness {
    core: CacheCore<usize, String>,
    capacity: usize,
    /// With room for every key nothing is evicted, so the model predicts the cache exactly.
    exact: bool,
    keys: Vec<CacheKey>,
    db: Vec<u64>,
    cached: Vec<Option<u64>>,
    /// The fetch a lookup of the key joins now, per the rules.
    joinable: Vec<Option<usize>>,
    fetches: Vec<ModelFetch>,
    waiters: Vec<ModelWaiter>,
}

impl Harness {
    fn new(capacity: usize) -> Self {
        let keys = world_keys();
        let n = keys.len();
        Harness {
            core: CacheCore::new(capacity),
            capacity,
            exact: capacity >= n,
            keys,
            db: vec![1; n],
            cached: vec![None; n],
            joinable: vec![None; n],
            fetches: Vec::new(),
            waiters: Vec::new(),
        }
    }

    fn inflight(&self) -> Vec<usize> {
        (0..self.fetches.len()).filter(|&f| self.fetches[f].result.is_none()).collect()
    }

    fn apply(&mut self, op: Op) -> Result<(), TestCaseError> {
        match op {
            Op::Lookup(idxs) => self.lookup(idxs)?,
            Op::Invalidate(idxs) => {
                for &k in &idxs {
                    self.db[k] += 1;
                    self.cached[k] = None;
                    self.joinable[k] = None;
                    for f in self.fetches.iter_mut().filter(|f| f.result.is_none() && f.keys.contains(&k)) {
                        f.raced.insert(k);
                    }
                }
                let keys: Vec<CacheKey> = idxs.iter().map(|&k| self.keys[k].clone()).collect();
                self.core.invalidate(&keys);
            }
            Op::Clear => {
                for k in 0..self.keys.len() {
                    self.db[k] += 1;
                    self.cached[k] = None;
                    self.joinable[k] = None;
                }
                for f in self.fetches.iter_mut().filter(|f| f.result.is_none()) {
                    f.raced.extend(f.keys.iter().copied());
                }
                self.core.clear();
            }
            Op::Read(sel) => {
                let inflight = self.inflight();
                if let Some(&f) = inflight.get(sel % inflight.len().max(1)) {
                    self.read(f);
                }
            }
            Op::Complete(sel, outcome) => {
                let inflight = self.inflight();
                if let Some(&f) = inflight.get(sel % inflight.len().max(1)) {
                    self.complete(f, outcome)?;
                }
            }
            Op::FailAll => {
                for f in self.inflight() {
                    self.end_fetch(f, vec![Got::Failed; self.fetches[f].keys.len()]);
                }
                let answers = self.core.fail_all_inflight("down".into());
                self.check_answers(answers)?;
            }
            Op::Cancel(sel) => {
                let pending: Vec<usize> = (0..self.waiters.len())
                    .filter(|&w| !self.waiters[w].answered && !self.waiters[w].cancelled)
                    .collect();
                if let Some(&w) = pending.get(sel % pending.len().max(1)) {
                    let id = self.waiters[w].id.ok_or_else(|| TestCaseError::fail("pending without an id"))?;
                    prop_assert_eq!(self.core.cancel(id), Some(w));
                    self.waiters[w].cancelled = true;
                }
            }
        }
        self.check_invariants()
    }

    fn lookup(&mut self, idxs: Vec<usize>) -> Result<(), TestCaseError> {
        let w = self.waiters.len();
        let mut distinct: Vec<usize> = Vec::new();
        for k in idxs.iter().copied() {
            if !distinct.contains(&k) {
                distinct.push(k);
            }
        }
        let mut sources = Vec::new();
        let mut expect_fetch = Vec::new();
        for &k in &distinct {
            match (self.core.peek(&self.keys[k]).and_then(version), self.joinable[k]) {
                (Some(v), _) => sources.push(Source::Hit(v)),
                (None, Some(f)) => sources.push(Source::Fetch(f)),
                (None, None) => {
                    sources.push(Source::Fetch(self.fetches.len()));
                    expect_fetch.push(k);
                }
            }
        }
        let keys: Vec<CacheKey> = idxs.iter().map(|&k| self.keys[k].clone()).collect();
        let lookup = self.core.lookup(&keys, w);

        let hits = sources.iter().filter(|s| matches!(s, Source::Hit(_))).count();
        prop_assert_eq!(lookup.hits, hits);
        prop_assert_eq!(lookup.misses, distinct.len() - hits);
        prop_assert_eq!(lookup.joined, distinct.len() - hits - expect_fetch.len());
        let ordered: Vec<CacheKey> = lookup.fetch.as_ref().map(|o| o.keys.clone()).unwrap_or_default();
        let expected: Vec<CacheKey> = expect_fetch.iter().map(|&k| self.keys[k].clone()).collect();
        prop_assert_eq!(ordered, expected, "single flight: fetch exactly the unjoinable misses");
        if let Some(order) = lookup.fetch {
            for &k in &expect_fetch {
                self.joinable[k] = Some(self.fetches.len());
            }
            self.fetches.push(ModelFetch {
                id: order.id,
                keys: expect_fetch,
                read: None,
                raced: HashSet::new(),
                result: None,
            });
        }
        self.waiters.push(ModelWaiter {
            id: lookup.waiter,
            floor: distinct.iter().map(|&k| self.db[k]).collect(),
            keys: distinct,
            sources,
            answered: false,
            cancelled: false,
        });
        prop_assert_eq!(lookup.answer.is_some(), hits == self.waiters[w].keys.len());
        prop_assert_eq!(lookup.waiter.is_some(), lookup.answer.is_none());
        self.check_answers(lookup.answer.into_iter().collect())
    }

    fn read(&mut self, f: usize) {
        if self.fetches[f].read.is_none() {
            let versions = self.fetches[f].keys.iter().map(|&k| self.db[k]).collect();
            self.fetches[f].read = Some(versions);
        }
    }

    fn complete(&mut self, f: usize, outcome: Outcome) -> Result<(), TestCaseError> {
        self.read(f);
        let fetch = &self.fetches[f];
        let read = fetch.read.clone().unwrap_or_default();
        let id = fetch.id;
        let n = fetch.keys.len();
        let values: Vec<(CacheKey, CacheValue)> =
            fetch.keys.iter().zip(&read).map(|(&k, &v)| (self.keys[k].clone(), value(&self.keys[k], v))).collect();
        let (answers, got) = match outcome {
            Outcome::Ok => (self.core.complete_fetch(id, Ok(values)), read.iter().map(|&v| Got::Version(v)).collect()),
            Outcome::OkInOrder => {
                let values = values.into_iter().map(|(_, v)| v).collect();
                (self.core.complete_fetch_in_order(id, Ok(values)), read.iter().map(|&v| Got::Version(v)).collect())
            }
            Outcome::Fail => (self.core.complete_fetch(id, Err("boom".into())), vec![Got::Failed; n]),
            Outcome::DropKey(d) => {
                let drop = d % n.max(1);
                let kept = values.into_iter().enumerate().filter(|(i, _)| *i != drop).map(|(_, kv)| kv).collect();
                let got = read.iter().enumerate().map(|(i, &v)| if i == drop { Got::Missing } else { Got::Version(v) });
                (self.core.complete_fetch(id, Ok(kept)), got.collect())
            }
        };
        self.end_fetch(f, got);
        self.check_answers(answers)
    }

    /// The model's side of a fetch ending: what it caches and who can no longer join it.
    fn end_fetch(&mut self, f: usize, got: Vec<Got>) {
        for (i, &k) in self.fetches[f].keys.iter().enumerate() {
            if self.joinable[k] == Some(f) {
                self.joinable[k] = None;
            }
            if let Some(Got::Version(v)) = got.get(i) {
                if !self.fetches[f].raced.contains(&k) {
                    self.cached[k] = Some(*v);
                }
            }
        }
        self.fetches[f].result = Some(got);
    }

    fn check_answers(&mut self, answers: Vec<super::Answer<usize, String>>) -> Result<(), TestCaseError> {
        for answer in answers {
            let w = answer.waiter;
            let waiter = &self.waiters[w];
            prop_assert!(!waiter.answered, "waiter {} answered twice", w);
            prop_assert!(!waiter.cancelled, "cancelled waiter {} answered", w);
            let keys: Vec<CacheKey> = waiter.keys.iter().map(|&k| self.keys[k].clone()).collect();
            let got_keys: Vec<CacheKey> = answer.values.iter().map(|(k, _)| k.clone()).collect();
            prop_assert_eq!(got_keys, keys);
            for (i, (_, result)) in answer.values.iter().enumerate() {
                let expected = match waiter.sources[i] {
                    Source::Hit(v) => Got::Version(v),
                    Source::Fetch(f) => {
                        let fetch = &self.fetches[f];
                        let at = fetch.keys.iter().position(|&k| k == waiter.keys[i]);
                        let result = fetch.result.as_ref().zip(at).and_then(|(r, at)| r.get(at).cloned());
                        prop_assert!(result.is_some(), "waiter {} answered before fetch {} ended", w, f);
                        result.unwrap_or(Got::Missing)
                    }
                };
                let got = match result {
                    Ok(v) => Got::Version(version(v).unwrap_or(0)),
                    Err(FetchError::Missing) => Got::Missing,
                    Err(FetchError::Failed(_)) => Got::Failed,
                };
                prop_assert_eq!(&got, &expected, "waiter {} key {}", w, i);
                if let Got::Version(v) = got {
                    // The property of DESIGN.md's data path: never older than the lookup.
                    prop_assert!(v >= waiter.floor[i], "waiter {} got version {} < {}", w, v, waiter.floor[i]);
                }
            }
            self.waiters[w].answered = true;
        }
        Ok(())
    }

    fn check_invariants(&self) -> Result<(), TestCaseError> {
        for (k, key) in self.keys.iter().enumerate() {
            let held = self.core.peek(key).and_then(version);
            if let Some(v) = held {
                prop_assert_eq!(v, self.db[k], "the cache holds a value older than an invalidation");
            }
            if self.exact {
                prop_assert_eq!(held, self.cached[k]);
            }
        }
        let stats = self.core.stats();
        prop_assert!(stats.entries <= self.capacity as u64);
        prop_assert_eq!(stats.inflight, self.inflight().len() as u64);
        let waiting = self.waiters.iter().filter(|w| !w.answered && !w.cancelled).count();
        prop_assert_eq!(stats.waiting, waiting as u64);
        Ok(())
    }

    /// Completes everything still in flight; then every waiter not cancelled has its answer
    /// and nothing is left behind.
    fn drain(&mut self) -> Result<(), TestCaseError> {
        while let Some(&f) = self.inflight().first() {
            self.complete(f, Outcome::Ok)?;
            self.check_invariants()?;
        }
        for (w, waiter) in self.waiters.iter().enumerate() {
            prop_assert!(waiter.answered || waiter.cancelled, "waiter {} never answered", w);
        }
        prop_assert_eq!(self.core.stats().waiting, 0);
        prop_assert_eq!(self.core.invalidation_records(), 0);
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// With room for every key, the cache matches the model exactly; every answer is
    /// routed from the right fetch and is never older than the database at lookup.
    #[test]
    fn random_interleavings_keep_the_rules(ops in proptest::collection::vec(op(), 0..80)) {
        let mut h = Harness::new(16);
        for op in ops {
            h.apply(op)?;
        }
        h.drain()?;
    }

    /// With evictions, the same rules hold and the bound is never exceeded.
    #[test]
    fn random_interleavings_under_eviction(capacity in 0usize..3, ops in proptest::collection::vec(op(), 0..80)) {
        let mut h = Harness::new(capacity);
        for op in ops {
            h.apply(op)?;
        }
        h.drain()?;
    }
}
