//! Invalidation epochs: the clock that tells whether a key was invalidated after a fetch of
//! it started.
//!
//! A global epoch counter moves on at every invalidation (and every clear). A fetch records
//! the epoch at which it started; a key remembers the epoch of its latest invalidation.
//! "Invalidated since the fetch started" is then one comparison, for keys in the cache or
//! not. A key's record only matters while some fetch that started before it is still in
//! flight, so the records older than the oldest in-flight fetch are forgotten: with nothing
//! in flight, nothing is remembered.

use std::collections::{HashMap, VecDeque};

use instaface_bus::graph::CacheKey;

/// A reading of the invalidation clock.
pub type Epoch = u64;

/// The invalidation clock and the recent invalidation of each key.
#[derive(Debug, Default)]
pub struct Epochs {
    now: Epoch,
    /// The epoch of the latest clear: every fetch started before it has raced.
    cleared_at: Epoch,
    last_invalidated: HashMap<CacheKey, Epoch>,
    /// Every recorded invalidation in epoch order, so old records can be forgotten in order.
    log: VecDeque<(Epoch, CacheKey)>,
}

impl Epochs {
    /// The current epoch: what a fetch starting now records.
    pub fn now(&self) -> Epoch {
        self.now
    }

    /// Records one invalidation of `keys`.
    pub fn invalidate(&mut self, keys: &[CacheKey]) {
        self.now += 1;
        for key in keys {
            self.last_invalidated.insert(key.clone(), self.now);
            self.log.push_back((self.now, key.clone()));
        }
    }

    /// Records the invalidation of every key.
    pub fn clear(&mut self) {
        self.now += 1;
        self.cleared_at = self.now;
        // The clear supersedes every per-key record: older fetches raced it anyway.
        self.last_invalidated.clear();
        self.log.clear();
    }

    /// Whether `key` was invalidated (or everything cleared) after epoch `start`.
    pub fn invalidated_since(&self, key: &CacheKey, start: Epoch) -> bool {
        self.cleared_at > start || self.last_invalidated.get(key).is_some_and(|&at| at > start)
    }

    /// Forgets the records no fetch can ask about any more: those at or before the start of
    /// the oldest fetch in flight (`None`: nothing is in flight, so forget everything).
    pub fn forget_before(&mut self, oldest_start: Option<Epoch>) {
        let horizon = oldest_start.unwrap_or(self.now);
        while let Some((at, _)) = self.log.front() {
            if *at > horizon {
                break;
            }
            if let Some((at, key)) = self.log.pop_front() {
                if self.last_invalidated.get(&key) == Some(&at) {
                    self.last_invalidated.remove(&key);
                }
            }
        }
    }

    /// The number of invalidation records held.
    #[cfg(test)]
    pub fn records(&self) -> usize {
        self.log.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_later_invalidation_races_an_earlier_start() {
        let k = CacheKey::Entity(1);
        let mut e = Epochs::default();
        e.invalidate(std::slice::from_ref(&k));
        let start = e.now();
        assert!(!e.invalidated_since(&k, start), "invalidations before the start do not count");
        e.invalidate(&[CacheKey::Entity(2)]);
        assert!(!e.invalidated_since(&k, start), "other keys do not count");
        e.invalidate(std::slice::from_ref(&k));
        assert!(e.invalidated_since(&k, start));
        assert!(!e.invalidated_since(&k, e.now()));
    }

    #[test]
    fn clear_races_everything_started_before() {
        let mut e = Epochs::default();
        let start = e.now();
        e.clear();
        assert!(e.invalidated_since(&CacheKey::Entity(9), start));
        assert!(!e.invalidated_since(&CacheKey::Entity(9), e.now()));
    }

    #[test]
    fn forgets_what_no_fetch_can_ask() {
        let k = CacheKey::Entity(1);
        let mut e = Epochs::default();
        e.invalidate(std::slice::from_ref(&k));
        let start = e.now();
        e.invalidate(std::slice::from_ref(&k));
        e.invalidate(&[CacheKey::Entity(2)]);
        e.forget_before(Some(start));
        assert_eq!(e.records(), 2);
        assert!(e.invalidated_since(&k, start), "the record after the start is kept");
        e.forget_before(None);
        assert_eq!(e.records(), 0);
        assert!(!e.invalidated_since(&k, start));
    }
}
