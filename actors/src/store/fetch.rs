//! Cache fills: the values of many [`CacheKey`]s read from one consistent snapshot, with
//! the outbox seq that snapshot is at.
//!
//! One query for all entity keys, one for the counts of all association lists and one for
//! their newest items (per few hundred lists), whatever the number of keys.

use std::collections::BTreeSet;

use mysql_async::TxOpts;

use instaface_bus::graph::{CacheKey, CacheValue, EntityId};

use super::associations::{count_lists, newest_items, ListId};
use super::entities::select_entities;
use super::{outbox, GraphStore, StoreError};

impl GraphStore {
    /// One value per key, in the order of `keys`: `Entity{entity: None}` for a missing
    /// entity; for a list, its count and newest `window` items with
    /// `complete = count <= window`.
    pub async fn fetch(&self, keys: &[CacheKey], window: u32) -> Result<Vec<CacheValue>, StoreError> {
        Ok(self.fetch_with_seq(keys, window).await?.1)
    }

    /// Like [`fetch`](Self::fetch), also returning the outbox seq of the snapshot the values
    /// were read from: they reflect exactly the writes up to that seq. Writes hold the fence
    /// lock until they commit, so no write is half in a snapshot.
    pub async fn fetch_with_seq(&self, keys: &[CacheKey], window: u32) -> Result<(u64, Vec<CacheValue>), StoreError> {
        let mut ids = Vec::new();
        let mut lists = BTreeSet::new();
        for key in keys {
            match key {
                CacheKey::Entity(id) => ids.push(*id),
                CacheKey::Assocs { from, atype } => {
                    lists.insert((*from, atype.clone()));
                }
            }
        }
        let lists: Vec<ListId> = lists.into_iter().collect();

        let mut opts = TxOpts::new();
        opts.with_consistent_snapshot(true);
        let mut tx = self.begin(opts).await?;
        let seq = outbox::latest(&mut tx).await?;
        let entities = if ids.is_empty() { Default::default() } else { select_entities(&mut tx, &ids).await? };
        let (counts, items) = if lists.is_empty() {
            (Default::default(), Default::default())
        } else {
            let counts = count_lists(&mut tx, &lists).await?;
            // Only lists that have items need reading.
            let nonempty: Vec<ListId> = lists.into_iter().filter(|l| counts.get(l).is_some_and(|n| *n > 0)).collect();
            let items = newest_items(&mut tx, &nonempty, window).await?;
            (counts, items)
        };
        tx.commit().await?;

        let values = keys
            .iter()
            .map(|key| match key {
                CacheKey::Entity(id) => CacheValue::Entity { entity: entities.get(id).cloned() },
                CacheKey::Assocs { from, atype } => {
                    let list: (EntityId, String) = (*from, atype.clone());
                    let count = counts.get(&list).copied().unwrap_or(0);
                    CacheValue::Assocs {
                        count,
                        items: items.get(&list).cloned().unwrap_or_default(),
                        complete: count <= u64::from(window),
                    }
                }
            })
            .collect();
        Ok((seq, values))
    }
}
