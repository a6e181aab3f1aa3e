//! A bounded map with least-recently-used eviction: the storage under the cache core.
//!
//! An intrusive doubly linked list threaded through a slab of slots, indexed by a hash map,
//! so `get`, `insert` and `remove` are O(1). Nothing here knows about fetches or epochs.

use std::collections::HashMap;
use std::hash::Hash;

/// No slot: the end of the recency list.
const NIL: usize = usize::MAX;

struct Slot<K, V> {
    key: K,
    value: V,
    /// The next more recently used slot, or `NIL`.
    newer: usize,
    /// The next less recently used slot, or `NIL`.
    older: usize,
}

/// A map holding at most `capacity` entries; inserting into a full map evicts the least
/// recently used entry. Reading with [`Lru::get`] or writing with [`Lru::insert`] makes an
/// entry the most recently used; [`Lru::peek`] does not.
pub struct Lru<K, V> {
    index: HashMap<K, usize>,
    slots: Vec<Option<Slot<K, V>>>,
    free: Vec<usize>,
    /// The most recently used slot.
    newest: usize,
    /// The least recently used slot: the next to go.
    oldest: usize,
    capacity: usize,
}

impl<K: Hash + Eq + Clone, V> Lru<K, V> {
    /// An empty map bounded to `capacity` entries. With capacity 0 it stores nothing.
    pub fn new(capacity: usize) -> Self {
        Lru {
            index: HashMap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            newest: NIL,
            oldest: NIL,
            capacity,
        }
    }

    /// The bound on the number of entries.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The number of entries held.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Whether `key` is held (does not count as a use).
    pub fn contains(&self, key: &K) -> bool {
        self.index.contains_key(key)
    }

    /// The value of `key`, making it the most recently used entry.
    pub fn get(&mut self, key: &K) -> Option<&V> {
        let at = *self.index.get(key)?;
        self.unlink(at);
        self.push_newest(at);
        self.slots[at].as_ref().map(|s| &s.value)
    }

    /// The value of `key`, without counting as a use.
    pub fn peek(&self, key: &K) -> Option<&V> {
        let at = *self.index.get(key)?;
        self.slots[at].as_ref().map(|s| &s.value)
    }

    /// Stores `value` under `key` as the most recently used entry, replacing any value the
    /// key had. Returns the entry evicted to make room, if one was.
    pub fn insert(&mut self, key: K, value: V) -> Option<(K, V)> {
        if self.capacity == 0 {
            return None;
        }
        if let Some(&at) = self.index.get(&key) {
            if let Some(slot) = self.slots[at].as_mut() {
                slot.value = value;
            }
            self.unlink(at);
            self.push_newest(at);
            return None;
        }
        let evicted = if self.index.len() >= self.capacity {
            self.pop_oldest()
        } else {
            None
        };
        let slot = Slot {
            key: key.clone(),
            value,
            newer: NIL,
            older: NIL,
        };
        let at = match self.free.pop() {
            Some(at) => {
                self.slots[at] = Some(slot);
                at
            }
            None => {
                self.slots.push(Some(slot));
                self.slots.len() - 1
            }
        };
        self.index.insert(key, at);
        self.push_newest(at);
        evicted
    }

    /// Removes `key`, returning its value if it was held.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        let at = self.index.remove(key)?;
        self.unlink(at);
        self.free.push(at);
        self.slots[at].take().map(|s| s.value)
    }

    /// Removes every entry.
    pub fn clear(&mut self) {
        self.index.clear();
        self.slots.clear();
        self.free.clear();
        self.newest = NIL;
        self.oldest = NIL;
    }

    /// The keys from the most to the least recently used.
    pub fn keys_newest_first(&self) -> Vec<K> {
        let mut keys = Vec::with_capacity(self.len());
        let mut at = self.newest;
        while let Some(slot) = self.slots.get(at).and_then(Option::as_ref) {
            keys.push(slot.key.clone());
            at = slot.older;
        }
        keys
    }

    fn pop_oldest(&mut self) -> Option<(K, V)> {
        let at = self.oldest;
        self.slots.get(at).and_then(Option::as_ref)?;
        self.unlink(at);
        let slot = self.slots[at].take()?;
        self.index.remove(&slot.key);
        self.free.push(at);
        Some((slot.key, slot.value))
    }

    /// Takes the linked slot `at` out of the recency list (it stays in the slab).
    fn unlink(&mut self, at: usize) {
        let Some(slot) = self.slots[at].as_mut() else {
            return;
        };
        let (newer, older) = (slot.newer, slot.older);
        slot.newer = NIL;
        slot.older = NIL;
        match self.slots.get_mut(newer).and_then(Option::as_mut) {
            Some(n) => n.older = older,
            None => self.newest = older,
        }
        match self.slots.get_mut(older).and_then(Option::as_mut) {
            Some(o) => o.newer = newer,
            None => self.oldest = newer,
        }
    }

    /// Puts slot `at` (unlinked) at the most recently used end.
    fn push_newest(&mut self, at: usize) {
        let old_newest = self.newest;
        if let Some(slot) = self.slots[at].as_mut() {
            slot.older = old_newest;
            slot.newer = NIL;
        }
        match self.slots.get_mut(old_newest).and_then(Option::as_mut) {
            Some(n) => n.newer = at,
            None => self.oldest = at,
        }
        self.newest = at;
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
