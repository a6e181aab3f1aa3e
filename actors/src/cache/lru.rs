//! A bounded map with least-recently-used eviction: the storage under the cache core.
//!
//! The list itself is the `lru` crate's [`LruCache`]. This wrapper stays because the core
//! needs two things the crate does differently: a bound of 0 means "cache nothing" (the
//! crate requires a non-zero bound), and [`Lru::insert`] reports only an eviction
//! (`LruCache::push` also hands back the old value of a key it replaced, which the core
//! must not count as one). The map grows as entries arrive instead of reserving the whole
//! bound up front. Nothing here knows about fetches or epochs.

use std::hash::Hash;
use std::num::NonZeroUsize;

use ::lru::LruCache;

/// A map holding at most `capacity` entries; inserting into a full map evicts the least
/// recently used entry. Reading with [`Lru::get`] or writing with [`Lru::insert`] makes an
/// entry the most recently used; [`Lru::peek`] does not.
pub struct Lru<K, V> {
    /// `None` for a bound of 0.
    map: Option<LruCache<K, V>>,
}

impl<K: Hash + Eq, V> Lru<K, V> {
    /// An empty map bounded to `capacity` entries. With capacity 0 it stores nothing.
    pub fn new(capacity: usize) -> Self {
        Lru { map: NonZeroUsize::new(capacity).map(LruCache::sparse) }
    }

    /// The bound on the number of entries.
    pub fn capacity(&self) -> usize {
        self.map.as_ref().map_or(0, |m| m.cap().get())
    }

    /// The number of entries held.
    pub fn len(&self) -> usize {
        self.map.as_ref().map_or(0, LruCache::len)
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `key` is held (does not count as a use).
    pub fn contains(&self, key: &K) -> bool {
        self.map.as_ref().is_some_and(|m| m.contains(key))
    }

    /// The value of `key`, making it the most recently used entry.
    pub fn get(&mut self, key: &K) -> Option<&V> {
        self.map.as_mut()?.get(key)
    }

    /// The value of `key`, without counting as a use.
    pub fn peek(&self, key: &K) -> Option<&V> {
        self.map.as_ref()?.peek(key)
    }

    /// Stores `value` under `key` as the most recently used entry, replacing any value the
    /// key had. Returns the entry evicted to make room, if one was.
    pub fn insert(&mut self, key: K, value: V) -> Option<(K, V)> {
        let map = self.map.as_mut()?;
        let replacing = map.contains(&key);
        let displaced = map.push(key, value);
        // For a key already held, `push` returns its old value: a replacement, not an
        // eviction.
        displaced.filter(|_| !replacing)
    }

    /// Removes `key`, returning its value if it was held.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        self.map.as_mut()?.pop(key)
    }

    /// Removes every entry.
    pub fn clear(&mut self) {
        if let Some(map) = &mut self.map {
            map.clear();
        }
    }

    /// The keys from the most to the least recently used.
    pub fn keys_newest_first(&self) -> Vec<K>
    where
        K: Clone,
    {
        self.map.iter().flat_map(|m| m.iter().map(|(k, _)| k.clone())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn evicts_the_least_recently_used() {
        let mut lru = Lru::new(2);
        assert_eq!(lru.insert(1, "a"), None);
        assert_eq!(lru.insert(2, "b"), None);
        assert_eq!(lru.get(&1), Some(&"a"));
        assert_eq!(lru.insert(3, "c"), Some((2, "b")));
        assert_eq!(lru.keys_newest_first(), vec![3, 1]);
        assert_eq!(lru.peek(&1), Some(&"a"));
        assert_eq!(lru.insert(4, "d"), Some((1, "a")), "peek is not a use");
    }

    #[test]
    fn replacing_a_value_is_a_use_not_an_eviction() {
        let mut lru = Lru::new(2);
        lru.insert(1, 10);
        lru.insert(2, 20);
        assert_eq!(lru.insert(1, 11), None);
        assert_eq!(lru.len(), 2);
        assert_eq!(lru.insert(3, 30), Some((2, 20)));
        assert_eq!(lru.peek(&1), Some(&11));
    }

    #[test]
    fn remove_and_clear() {
        let mut lru = Lru::new(3);
        for k in 0..3 {
            lru.insert(k, k);
        }
        assert_eq!(lru.remove(&1), Some(1));
        assert_eq!(lru.remove(&1), None);
        assert_eq!(lru.keys_newest_first(), vec![2, 0]);
        lru.insert(5, 5);
        lru.insert(6, 6);
        assert_eq!(lru.keys_newest_first(), vec![6, 5, 2]);
        lru.clear();
        assert!(lru.is_empty());
        assert_eq!(lru.get(&6), None);
        lru.insert(7, 7);
        assert_eq!(lru.keys_newest_first(), vec![7]);
    }

    #[test]
    fn capacity_zero_stores_nothing() {
        let mut lru = Lru::new(0);
        assert_eq!(lru.insert(1, 1), None);
        assert!(lru.is_empty());
        assert_eq!(lru.get(&1), None);
    }

    #[derive(Clone, Debug)]
    enum Op {
        Get(u8),
        Peek(u8),
        Insert(u8, u32),
        Remove(u8),
        Clear,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..12).prop_map(Op::Get),
            1 => (0u8..12).prop_map(Op::Peek),
            6 => (0u8..12, any::<u32>()).prop_map(|(k, v)| Op::Insert(k, v)),
            2 => (0u8..12).prop_map(Op::Remove),
            1 => Just(Op::Clear),
        ]
    }

    proptest! {
        /// Against a model (a vector, most recent first): the same values, the same order,
        /// never more than `capacity` entries, and the victim is always the least recent.
        #[test]
        fn behaves_like_a_recency_list(capacity in 0usize..6, ops in proptest::collection::vec(op(), 0..200)) {
            let mut lru = Lru::new(capacity);
            let mut model: Vec<(u8, u32)> = Vec::new();
            for op in ops {
                match op {
                    Op::Get(k) => {
                        let want = model.iter().position(|e| e.0 == k).map(|i| model.remove(i));
                        if let Some(e) = want {
                            model.insert(0, e);
                        }
                        prop_assert_eq!(lru.get(&k).copied(), want.map(|e| e.1));
                    }
                    Op::Peek(k) => {
                        let want = model.iter().find(|e| e.0 == k).map(|e| e.1);
                        prop_assert_eq!(lru.peek(&k).copied(), want);
                    }
                    Op::Insert(k, v) => {
                        let mut want_evicted = None;
                        if let Some(i) = model.iter().position(|e| e.0 == k) {
                            model.remove(i);
                            model.insert(0, (k, v));
                        } else if capacity > 0 {
                            if model.len() >= capacity {
                                want_evicted = model.pop();
                            }
                            model.insert(0, (k, v));
                        }
                        prop_assert_eq!(lru.insert(k, v), want_evicted);
                    }
                    Op::Remove(k) => {
                        let want = model.iter().position(|e| e.0 == k).map(|i| model.remove(i).1);
                        prop_assert_eq!(lru.remove(&k), want);
                    }
                    Op::Clear => {
                        model.clear();
                        lru.clear();
                    }
                }
                prop_assert!(lru.len() <= capacity);
                prop_assert_eq!(lru.len(), model.len());
                let keys: Vec<u8> = model.iter().map(|e| e.0).collect();
                prop_assert_eq!(lru.keys_newest_first(), keys);
            }
        }
    }
}
