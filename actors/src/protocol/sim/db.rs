//! The MySQL model of the simulation: entity versions, the outbox with its seqs (gaps
//! included), the leadership fence, and what a store actor does with them — raise the
//! fence and load the outbox at takeover, run writes in batches (one transaction each), prune.

use std::collections::{BTreeMap, HashSet};

use instaface_bus::messages::InvalidationEntry;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// What a simulated client asks the leader to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteKind {
    /// Update the entity: its version grows by one (an outbox row).
    Bump(usize),
    /// A write that changes nothing but tells what it found (like deleting an association
    /// that is already gone): no outbox row, the entity's current version in the answer.
    Check(usize),
}

impl WriteKind {
    pub fn entity(self) -> usize {
        match self {
            WriteKind::Bump(e) | WriteKind::Check(e) => e,
        }
    }
}

/// The cache key of entity `e`, as written on the wire.
pub fn key(e: usize) -> String {
    format!("e:{e}")
}

/// What one write of a batch did in the database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BatchResult {
    /// A change committed as `seq`; the entity is now at `version`.
    Committed { seq: u64, version: u64 },
    /// Nothing changed; the latest seq and the version found.
    Unchanged { seq: u64, version: u64 },
}

/// The database.
#[derive(Debug)]
pub struct Db {
    versions: Vec<u64>,
    /// Every (entity, version) ever committed: an acknowledged write must be among them.
    committed: HashSet<(usize, u64)>,
    outbox: BTreeMap<u64, Vec<String>>,
    last_seq: u64,
    fence: (u64, String),
    /// While set, pruning fails (so the outbox outgrows the heartbeat window).
    pub prune_fails: bool,
    /// When set, a batch's writes run in an order drawn from this generator (its own, so
    /// the rest of a seed's schedule stays as it was), as the real store may run them (by
    /// kind: `actors/src/store/batch.rs`): their seqs need not follow the order asked.
    shuffle: Option<StdRng>,
}

impl Db {
    /// `entities` entities, each at version 1, and an empty outbox.
    pub fn new(entities: usize) -> Db {
        Db {
            versions: vec![1; entities],
            committed: (0..entities).map(|e| (e, 1)).collect(),
            outbox: BTreeMap::new(),
            last_seq: 0,
            fence: (0, String::new()),
            prune_fails: false,
            shuffle: None,
        }
    }

    /// [`Db::new`], running every batch's writes in an order drawn from `seed`.
    pub fn shuffled(entities: usize, seed: u64) -> Db {
        Db { shuffle: Some(StdRng::seed_from_u64(seed)), ..Db::new(entities) }
    }

    pub fn entities(&self) -> usize {
        self.versions.len()
    }

    pub fn version(&self, e: usize) -> u64 {
        self.versions[e]
    }

    pub fn was_committed(&self, e: usize, version: u64) -> bool {
        self.committed.contains(&(e, version))
    }

    pub fn outbox_len(&self) -> usize {
        self.outbox.len()
    }

    /// The latest seq committed.
    pub fn latest(&self) -> u64 {
        self.last_seq
    }

    /// Takes office for (`term`, `leader`): raises the fence unless a later term holds
    /// it. Returns the stored term when refused.
    pub fn raise_fence(&mut self, term: u64, leader: &str) -> Result<(), u64> {
        if self.fence.0 > term {
            return Err(self.fence.0);
        }
        self.fence = (term, leader.to_string());
        Ok(())
    }

    /// The outbox as a new leader loads it: the latest seq and up to `limit` rows, the
    /// newest ones (or, with the planted bug, the oldest).
    pub fn load_outbox(&self, limit: usize, oldest_bug: bool) -> (u64, Vec<InvalidationEntry>) {
        let rows = self.outbox.iter().map(|(&seq, keys)| InvalidationEntry { seq, keys: keys.clone() });
        let entries: Vec<_> = if oldest_bug {
            rows.take(limit).collect()
        } else {
            let mut newest: Vec<_> = rows.rev().take(limit).collect();
            newest.reverse();
            newest
        };
        (self.last_seq, entries)
    }

    /// A batch of writes of (`term`, `leader`) as one transaction: the fence is checked
    /// once; then each write changes its entity and adds its outbox row, or finds nothing
    /// to change and reports the latest seq. `Err` carries the stored term of a fence
    /// that names a later leader (or another leader of the same term): nothing ran.
    /// The results come back in the order asked (made by [`Db::shuffled`], it ran them in
    /// another).
    pub fn write_batch(
        &mut self,
        term: u64,
        leader: &str,
        kinds: &[WriteKind],
        rng: &mut StdRng,
    ) -> Result<Vec<BatchResult>, u64> {
        let (stored, holder) = &self.fence;
        if *stored > term || (*stored == term && holder != leader) {
            return Err(*stored);
        }
        let mut order: Vec<usize> = (0..kinds.len()).collect();
        if let Some(shuffle) = &mut self.shuffle {
            order.shuffle(shuffle);
        }
        let mut results = vec![None; kinds.len()];
        for i in order {
            results[i] = Some(self.write_one(kinds[i], rng));
        }
        Ok(results.into_iter().flatten().collect())
    }

    fn write_one(&mut self, kind: WriteKind, rng: &mut StdRng) -> BatchResult {
        match kind {
            WriteKind::Bump(e) => {
                self.versions[e] += 1;
                let version = self.versions[e];
                self.committed.insert((e, version));
                // AUTO_INCREMENT leaves gaps after rollbacks.
                self.last_seq += 1 + u64::from(rng.random_bool(0.1));
                self.outbox.insert(self.last_seq, vec![key(e)]);
                BatchResult::Committed { seq: self.last_seq, version }
            }
            WriteKind::Check(e) => BatchResult::Unchanged { seq: self.last_seq, version: self.versions[e] },
        }
    }

    /// Deletes rows through `through`, always keeping the newest.
    pub fn prune(&mut self, through: u64) {
        if self.prune_fails {
            return;
        }
        let bound = through.min(self.last_seq.saturating_sub(1));
        self.outbox.retain(|&seq, _| seq > bound);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fence_refuses_earlier_leaders_and_loading_takes_the_newest_rows() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut db = Db::new(2);
        db.raise_fence(2, "a").unwrap();
        let results = db.write_batch(2, "a", &[WriteKind::Bump(0); 5], &mut rng).unwrap();
        assert!(results.windows(2).all(|w| matches!(
            (&w[0], &w[1]),
            (BatchResult::Committed { seq: a, .. }, BatchResult::Committed { seq: b, .. }) if a < b
        )));
        assert_eq!(db.version(0), 6);
        assert_eq!(db.raise_fence(1, "b"), Err(2));
        assert_eq!(db.write_batch(2, "b", &[WriteKind::Bump(1)], &mut rng), Err(2));
        assert_eq!(db.version(1), 1, "a fenced batch changes nothing");
        let (latest, rows) = db.load_outbox(2, false);
        assert_eq!(rows.last().map(|r| r.seq), Some(latest));
        let (_, oldest) = db.load_outbox(2, true);
        assert!(oldest[1].seq < rows[0].seq);
        db.prune(latest);
        assert_eq!(db.outbox_len(), 1, "the newest row stays");
    }
}
