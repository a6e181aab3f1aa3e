//! Entities: the create / update / delete steps of a write, and the entity reads
//! (by ids, counts, random ids of a type).

use std::collections::{BTreeSet, HashMap, HashSet};

use mysql_async::prelude::*;
use mysql_async::{Transaction, Value};
use rand::Rng;

use instaface_bus::graph::{Attributes, CacheKey, Entity, EntityId, WriteResult};
use instaface_bus::intents::InverseOp;

use super::{batch, check_type, placeholders, Change, GraphStore, Place, StoreError};

/// Ids bound in one `IN (…)` list at most (MySQL allows 65 535 parameters a statement).
pub(super) const MAX_IN_LIST: usize = 10_000;
/// Random ids returned at most by one call.
pub const MAX_RANDOM_IDS: u32 = 1_000;
/// Rounds of random probing before `random_ids` settles for fewer ids.
const RANDOM_ROUNDS: usize = 8;
/// Random probes in one statement at most.
const MAX_PROBES: usize = 500;

type EntityRow = (u64, String, String, u64, u64, u64);

const ENTITY_COLUMNS: &str = "id, etype, attributes, created, updated, version";

impl GraphStore {
    /// The entities found among `ids`, in the order asked (an id asked twice comes twice),
    /// in one query (per 10 000 distinct ids).
    pub async fn get_entities(&self, ids: &[EntityId]) -> Result<Vec<Entity>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn().await?;
        let found = select_entities(&mut conn, ids).await?;
        Ok(ids.iter().filter_map(|id| found.get(id).cloned()).collect())
    }

    /// How many entities there are, of one type or in all.
    pub async fn count_entities(&self, etype: Option<&str>) -> Result<u64, StoreError> {
        let mut conn = self.conn().await?;
        let count: Option<u64> = match etype {
            Some(etype) => {
                check_type("entity", etype)?;
                conn.exec_first("SELECT COUNT(*) FROM entities WHERE etype = ?", (etype,)).await?
            }
            None => conn.query_first("SELECT COUNT(*) FROM entities").await?,
        };
        Ok(count.unwrap_or(0))
    }

    /// Up to `count` (at most [`MAX_RANDOM_IDS`]) distinct random ids of entities of `etype`.
    ///
    /// Probes random points of the type's id range (`id >= r ORDER BY id LIMIT 1` on the
    /// `(etype, id)` index, a batch of probes per query), so it costs no table scan. Ids
    /// after a gap in the range are likelier picks. A type too small to fill `count` by
    /// probing is read whole (it is small) and sampled.
    pub async fn random_ids(&self, etype: &str, count: u32) -> Result<Vec<EntityId>, StoreError> {
        check_type("entity", etype)?;
        let want = count.min(MAX_RANDOM_IDS) as usize;
        if want == 0 {
            return Ok(Vec::new());
        }
        let mut conn = self.conn().await?;
        let range: Option<(Option<u64>, Option<u64>)> =
            conn.exec_first("SELECT MIN(id), MAX(id) FROM entities WHERE etype = ?", (etype,)).await?;
        let Some((Some(min), Some(max))) = range else {
            return Ok(Vec::new());
        };

        let mut picked = Vec::with_capacity(want);
        let mut seen = HashSet::with_capacity(want);
        for round in 0..RANDOM_ROUNDS {
            let missing = want - picked.len();
            let points: Vec<u64> = {
                let mut rng = rand::rng();
                (0..(missing * 2).min(MAX_PROBES)).map(|_| rng.random_range(min..=max)).collect()
            };
            let probe = vec!["(SELECT id FROM entities WHERE etype = ? AND id >= ? ORDER BY id LIMIT 1)"; points.len()]
                .join(" UNION ALL ");
            let params: Vec<Value> = points.iter().flat_map(|p| [Value::from(etype), Value::from(*p)]).collect();
            let ids: Vec<u64> = conn.exec(probe, params).await?;
            for id in ids {
                if picked.len() < want && seen.insert(id) {
                    picked.push(id);
                }
            }
            if picked.len() == want {
                break;
            }
            if round == 0 {
                // Short after a round of twice the probes needed: perhaps the type is small.
                let limit = (want * 4) as u64;
                let all: Vec<u64> = conn
                    .exec("SELECT id FROM entities WHERE etype = ? ORDER BY id LIMIT ?", (etype, limit + 1))
                    .await?;
                if all.len() as u64 <= limit {
                    let mut all = all;
                    let mut rng = rand::rng();
                    // A partial Fisher-Yates shuffle: the first `want` are a uniform sample.
                    let take = want.min(all.len());
                    for i in 0..take {
                        let j = rng.random_range(i..all.len());
                        all.swap(i, j);
                    }
                    all.truncate(take);
                    return Ok(all);
                }
            }
        }
        Ok(picked)
    }
}

/// The entities among `ids` (each distinct id fetched once), by id.
pub(super) async fn select_entities<Q: Queryable>(
    q: &mut Q,
    ids: &[EntityId],
) -> Result<HashMap<EntityId, Entity>, StoreError> {
    select(q, ids, "").await
}

/// [`select_entities`], locking the rows for the rest of the transaction.
async fn lock_entities(
    tx: &mut Transaction<'static>,
    ids: &[EntityId],
) -> Result<HashMap<EntityId, Entity>, StoreError> {
    select(tx, ids, " FOR UPDATE").await
}

async fn select<Q: Queryable>(
    q: &mut Q,
    ids: &[EntityId],
    lock: &str,
) -> Result<HashMap<EntityId, Entity>, StoreError> {
    let distinct: Vec<u64> = ids.iter().copied().collect::<BTreeSet<_>>().into_iter().collect();
    let mut found = HashMap::with_capacity(distinct.len());
    for chunk in distinct.chunks(MAX_IN_LIST) {
        let sql = format!("SELECT {ENTITY_COLUMNS} FROM entities WHERE id IN ({}){lock}", placeholders(chunk.len()));
        let rows: Vec<EntityRow> = q.exec(sql, chunk.to_vec()).await?;
        for row in rows {
            let entity = entity_from_row(row)?;
            found.insert(entity.id, entity);
        }
    }
    Ok(found)
}

/// Creates entities (a batch's creates, or one) with one multi-row INSERT per chunk when
/// the server hands out consecutive ids, else one row per INSERT. Refused whole when a
/// type is invalid (the caller rolls back).
pub(super) async fn create_many(
    tx: &mut Transaction<'static>,
    creates: &[(&str, &Attributes)],
    consecutive_ids: bool,
) -> Result<Vec<Change>, StoreError> {
    for (etype, _) in creates {
        check_type("entity", etype)?;
    }
    let now = instaface_bus::now_ms();
    let rows: Vec<(&str, &Attributes, String)> =
        creates.iter().map(|(etype, attributes)| (*etype, *attributes, attributes_json(attributes))).collect();
    let sizes: Vec<usize> = rows.iter().map(|(etype, _, json)| etype.len() + json.len()).collect();
    let mut changes = Vec::with_capacity(creates.len());
    let mut rest = rows.as_slice();
    for n in batch::row_chunks(&sizes, consecutive_ids) {
        let (chunk, after) = rest.split_at(n);
        rest = after;
        let sql = format!(
            "INSERT INTO entities (etype, attributes, created, updated, version) VALUES {}",
            batch::values_rows("(?, ?, ?, ?, 1)", n)
        );
        let params: Vec<Value> = chunk
            .iter()
            .flat_map(|(etype, _, json)| {
                [Value::from(*etype), Value::from(json.as_str()), Value::from(now), Value::from(now)]
            })
            .collect();
        tx.exec_drop(sql, params).await?;
        let ids = batch::consecutive(tx.last_insert_id(), tx.affected_rows(), n, "entity")?;
        for (id, (etype, attributes, _)) in ids.into_iter().zip(chunk) {
            let entity = Entity {
                id,
                etype: etype.to_string(),
                attributes: (*attributes).clone(),
                created: now,
                updated: now,
                version: 1,
            };
            changes.push(Change::Applied { result: WriteResult::Entity { entity }, keys: vec![CacheKey::Entity(id)] });
        }
    }
    Ok(changes)
}

/// Updates entities (a batch's updates, several of one entity applied in order, or one): the rows
/// locked with one SELECT, the merge patches applied here, the final rows written with one
/// multi-row `INSERT … ON DUPLICATE KEY UPDATE` per chunk (every row exists and is locked,
/// so each is an update). Each update answers the entity as it left it. Refused whole when
/// an entity is missing or a patch is not an object (the caller rolls back).
pub(super) async fn update_many(
    tx: &mut Transaction<'static>,
    updates: &[(EntityId, &serde_json::Value)],
) -> Result<Vec<Change>, StoreError> {
    if updates.iter().any(|(_, patch)| !patch.is_object()) {
        return Err(StoreError::Invalid("a merge patch of attributes must be a JSON object".into()));
    }
    let ids: Vec<EntityId> = updates.iter().map(|(id, _)| *id).collect();
    let mut current = lock_entities(tx, &ids).await?;
    let now = instaface_bus::now_ms();
    let mut changes = Vec::with_capacity(updates.len());
    let mut touched: Vec<EntityId> = Vec::new();
    for (id, patch) in updates {
        let entity = current.get_mut(id).ok_or_else(|| not_found(*id))?;
        super::apply_merge_patch(&mut entity.attributes, patch)?;
        entity.version += 1;
        entity.updated = now.max(entity.updated);
        if !touched.contains(id) {
            touched.push(*id);
        }
        let result = WriteResult::Entity { entity: entity.clone() };
        changes.push(Change::Applied { result, keys: vec![CacheKey::Entity(*id)] });
    }
    let rows: Vec<(&Entity, String)> =
        touched.iter().filter_map(|id| current.get(id)).map(|e| (e, attributes_json(&e.attributes))).collect();
    let sizes: Vec<usize> = rows.iter().map(|(e, json)| e.etype.len() + json.len()).collect();
    let mut rest = rows.as_slice();
    // Explicit ids: any chunk is exact.
    for n in batch::row_chunks(&sizes, true) {
        let (chunk, after) = rest.split_at(n);
        rest = after;
        let sql = format!(
            "INSERT INTO entities (id, etype, attributes, created, updated, version) VALUES {} \
             ON DUPLICATE KEY UPDATE attributes = VALUES(attributes), updated = VALUES(updated), version = VALUES(version)",
            batch::values_rows("(?, ?, ?, ?, ?, ?)", n)
        );
        let params: Vec<Value> = chunk
            .iter()
            .flat_map(|(e, json)| {
                [
                    Value::from(e.id),
                    Value::from(e.etype.as_str()),
                    Value::from(json.as_str()),
                    Value::from(e.created),
                    Value::from(e.updated),
                    Value::from(e.version),
                ]
            })
            .collect();
        tx.exec_drop(sql, params).await?;
    }
    Ok(changes)
}

/// Deletes the entity and every association from or to it here; with several shards, a
/// drop for every other shard removes the ones there (its inverse rows, and one-way
/// associations pointing at it) and keeps new ones out. The keys: the entity, then every
/// list here that lost an item (its own lists and the lists pointing at it), sorted.
pub(super) async fn delete(tx: &mut Transaction<'static>, place: Place, id: EntityId) -> Result<Change, StoreError> {
    // Reads here see every earlier write: they all committed before we got the fence lock.
    let own: Vec<String> = tx.exec("SELECT DISTINCT atype FROM associations WHERE from_id = ?", (id,)).await?;
    let mut lists: BTreeSet<(u64, String)> = own.into_iter().map(|atype| (id, atype)).collect();
    tx.exec_drop("DELETE FROM associations WHERE from_id = ?", (id,)).await?;
    lists.extend(super::associations::delete_rows_to(tx, id).await?);
    tx.exec_drop("DELETE FROM entities WHERE id = ?", (id,)).await?;
    let found = tx.affected_rows() > 0;

    let result = WriteResult::Deleted { found };
    if !found && lists.is_empty() {
        return Ok(Change::Nothing { result });
    }
    if found {
        for k in place.shards.all().filter(|k| *k != place.shard) {
            super::intents::record(tx, k, &InverseOp::Dropped { id }).await?;
        }
    }
    let mut keys = vec![CacheKey::Entity(id)];
    keys.extend(lists.into_iter().map(|(from, atype)| CacheKey::Assocs { from, atype }));
    Ok(Change::Applied { result, keys })
}

fn entity_from_row((id, etype, attributes, created, updated, version): EntityRow) -> Result<Entity, StoreError> {
    let attributes =
        serde_json::from_str(&attributes).map_err(|e| StoreError::Corrupt(format!("entity {id}: attributes: {e}")))?;
    Ok(Entity { id, etype, attributes, created, updated, version })
}

pub(super) fn attributes_json(attributes: &Attributes) -> String {
    serde_json::to_string(attributes).expect("a JSON map serialises")
}

pub(super) fn not_found(id: EntityId) -> StoreError {
    StoreError::NotFound(format!("entity {id}"))
}
