//! Cross-shard intents in MySQL: recording them with the write that makes them (the
//! sender's side), reading and marking the undelivered ones (for the delivery task), and
//! applying one that another shard delivered (the receiver's side).
//!
//! The receiver's rules are [`crate::intents::receiver`]'s; here is what they read and
//! do, in the applying transaction:
//! - `applied_intents`: `(from_shard, intent_id)` goes in first; a redelivery finds it;
//! - `pair_versions`: the last intent applied to each row written by intents (all intents
//!   for one row come from one shard, the pair's owner,
//!   [`instaface_bus::shards::owner_of`], in the order its leader committed them, so their
//!   ids order them);
//! - `dropped_entities`: entities of other shards that were deleted;
//! - the near end's entity row (locked against a delete until the commit).

use mysql_async::prelude::*;
use mysql_async::Transaction;

use instaface_bus::graph::{Association, CacheKey, EntityId, WriteResult};
use instaface_bus::intents::{IntentDelivery, InverseOp};
use instaface_bus::shards::{shard_of, ShardId};

use super::entities::not_found;
use super::{associations, check_type, placeholders, Change, GraphStore, Place, StoreError};
use crate::intents::{decide, Decision, Delivered, Kind, Seen};

/// Undelivered intents read at once at most.
pub const MAX_UNDELIVERED: u32 = 256;

/// Rows one prune deletes from each table at most (the next prune takes the rest).
const MAX_PRUNED: u32 = 10_000;

/// An intent of this database not yet delivered.
#[derive(Clone, Debug, PartialEq)]
pub struct PendingIntent {
    pub id: u64,
    pub to_shard: ShardId,
    pub op: InverseOp,
    /// When it was committed (ms since the epoch, the sender's clock).
    pub created: u64,
}

/// The `outcome` column for how an intent ended.
fn outcome_name(how: Delivered) -> &'static str {
    match how {
        Delivered::Applied => "applied",
        Delivered::Refused => "refused",
    }
}

impl GraphStore {
    /// The oldest undelivered intents for each other shard, at most `limit` (≤
    /// [`MAX_UNDELIVERED`]) in all, shared between the shards — so intents piling up for a
    /// shard without a leader never hide those for the others — oldest first.
    pub async fn undelivered_intents(&self, limit: u32) -> Result<Vec<PendingIntent>, StoreError> {
        let mut conn = self.conn().await?;
        // The shards with intents waiting (usually none or few; the undelivered rows are
        // few unless a shard is unreachable).
        let waiting: Vec<ShardId> =
            conn.query("SELECT DISTINCT to_shard FROM intents WHERE delivered IS NULL ORDER BY to_shard").await?;
        let each = (limit.min(MAX_UNDELIVERED) / waiting.len().max(1) as u32).max(1);
        let mut pending = Vec::new();
        for k in waiting {
            let rows: Vec<(u64, u32, String, u64)> = conn
                .exec(
                    "SELECT id, to_shard, op, created FROM intents \
                     WHERE to_shard = ? AND delivered IS NULL ORDER BY id LIMIT ?",
                    (k, each),
                )
                .await?;
            for (id, to_shard, op, created) in rows {
                let op = serde_json::from_str(&op).map_err(|e| StoreError::Corrupt(format!("intent {id}: {e}")))?;
                pending.push(PendingIntent { id, to_shard, op, created });
            }
        }
        pending.sort_by_key(|p| p.id);
        Ok(pending)
    }

    /// Records `ids` as delivered with `outcome` (again: no change).
    pub async fn mark_intents(&self, ids: &[u64], outcome: Delivered) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn().await?;
        let sql = format!(
            "UPDATE intents SET delivered = ?, outcome = ? WHERE delivered IS NULL AND id IN ({})",
            placeholders(ids.len())
        );
        let mut params: Vec<mysql_async::Value> = vec![instaface_bus::now_ms().into(), outcome_name(outcome).into()];
        params.extend(ids.iter().map(|id| mysql_async::Value::from(*id)));
        conn.exec_drop(sql, params).await?;
        Ok(())
    }

    /// Deletes delivered intents, and records of intents applied here, older than
    /// `before` (ms since the epoch); returns how many rows went. Safe at any age: a
    /// delivered intent is never sent again, and an applied one delivered again after its
    /// record went is at or below its row's version, which is kept (`receiver::decide`).
    pub async fn prune_intents(&self, before: u64) -> Result<u64, StoreError> {
        let mut conn = self.conn().await?;
        conn.exec_drop(
            "DELETE FROM intents WHERE delivered IS NOT NULL AND delivered < ? LIMIT ?",
            (before, MAX_PRUNED),
        )
        .await?;
        let mut pruned = conn.affected_rows();
        conn.exec_drop("DELETE FROM applied_intents WHERE applied < ? LIMIT ?", (before, MAX_PRUNED)).await?;
        pruned += conn.affected_rows();
        Ok(pruned)
    }

    /// Undelivered intents in all (tests and operators: `SELECT` it as well).
    pub async fn count_undelivered_intents(&self) -> Result<u64, StoreError> {
        let mut conn = self.conn().await?;
        Ok(conn.query_first("SELECT COUNT(*) FROM intents WHERE delivered IS NULL").await?.unwrap_or(0))
    }
}

/// Records, in the write's transaction, that shard `to` must apply `op`.
pub(super) async fn record(tx: &mut Transaction<'static>, to: ShardId, op: &InverseOp) -> Result<(), StoreError> {
    let json = serde_json::to_string(op).map_err(|e| StoreError::Corrupt(format!("an intent: {e}")))?;
    tx.exec_drop(
        "INSERT INTO intents (to_shard, op, created) VALUES (?, ?, ?)",
        (to, json.as_str(), instaface_bus::now_ms()),
    )
    .await?;
    Ok(())
}

/// Whether entity `id` of another shard was deleted (its drop applied here).
pub(super) async fn dropped(tx: &mut Transaction<'static>, id: EntityId) -> Result<bool, StoreError> {
    let found: Option<u64> = tx.exec_first("SELECT id FROM dropped_entities WHERE id = ?", (id,)).await?;
    Ok(found.is_some())
}

/// Applies a delivered intent (the fence already checked) as [`decide`] rules on what
/// this transaction reads: at most once, never undoing a newer one. A skip answers
/// "applied" too (a `Nothing` change): it took effect before, or a later intent did.
pub(super) async fn apply(
    tx: &mut Transaction<'static>,
    place: Place,
    d: &IntentDelivery,
) -> Result<Change, StoreError> {
    // Each op names one end here and one in the sending shard (the pair's owner, whose
    // commit order the row versions rely on).
    let there = d.op.remote_entity();
    let here_ok = d.op.local_entity().is_none_or(|id| place.holds(id));
    if !here_ok || shard_of(there) != d.from_shard || d.from_shard == place.shard || !place.shards.split() {
        return Err(StoreError::Invalid(format!(
            "intent {} of shard {} does not join an entity of shard {} to one of shard {}: {:?}",
            d.intent_id, d.from_shard, place.shard, d.from_shard, d.op
        )));
    }
    tx.exec_drop(
        "INSERT IGNORE INTO applied_intents (from_shard, intent_id, applied) VALUES (?, ?, ?)",
        (d.from_shard, d.intent_id, instaface_bus::now_ms()),
    )
    .await?;
    let mut seen = Seen { applied_before: tx.affected_rows() == 0, ..Seen::default() };
    let kind = match &d.op {
        InverseOp::Put { .. } => Kind::Put,
        InverseOp::Remove { .. } => Kind::Remove,
        InverseOp::Exists { .. } => Kind::Check,
        InverseOp::Dropped { .. } => Kind::Drop,
    };
    // What `decide` reads besides the id (nothing more once the id was applied before).
    if !seen.applied_before {
        if let InverseOp::Put { from, atype, to, .. } | InverseOp::Remove { from, atype, to } = &d.op {
            check_type("association", atype)?;
            seen.version = version(tx, *from, atype, *to).await?;
        }
        if let InverseOp::Put { to, .. } = &d.op {
            seen.far_end_dropped = dropped(tx, *to).await?;
        }
        if let (Kind::Put | Kind::Check, Some(id)) = (kind, d.op.local_entity()) {
            let here: Option<u64> =
                tx.exec_first("SELECT id FROM entities WHERE id = ? LOCK IN SHARE MODE", (id,)).await?;
            seen.near_end_exists = here.is_some();
        }
    }
    match decide(kind, d.intent_id, seen, None) {
        Decision::Skip => return Ok(Change::Nothing { result: WriteResult::Deleted { found: false } }),
        Decision::Refuse => return Err(not_found(d.op.local_entity().unwrap_or_default())),
        Decision::Apply => {}
    }
    match &d.op {
        // A check is never applied (it is skipped or refused): nothing to change.
        InverseOp::Exists { .. } => Ok(Change::Nothing { result: WriteResult::Deleted { found: false } }),
        InverseOp::Put { from, atype, to, attributes, created } => {
            set_version(tx, *from, atype, *to, d.intent_id).await?;
            let json = super::entities::attributes_json(attributes);
            associations::put_row(tx, *from, atype, *to, &json, *created).await?;
            let association = Association {
                from: *from,
                atype: atype.clone(),
                to: *to,
                attributes: attributes.clone(),
                created: *created,
            };
            let keys = vec![CacheKey::Assocs { from: *from, atype: atype.clone() }];
            Ok(Change::Applied { result: WriteResult::Assoc { association }, keys })
        }
        InverseOp::Remove { from, atype, to } => {
            set_version(tx, *from, atype, *to, d.intent_id).await?;
            let found = associations::delete_row(tx, *from, atype, *to).await?;
            let result = WriteResult::Deleted { found };
            if !found {
                return Ok(Change::Nothing { result });
            }
            Ok(Change::Applied { result, keys: vec![CacheKey::Assocs { from: *from, atype: atype.clone() }] })
        }
        InverseOp::Dropped { id } => {
            tx.exec_drop(
                "INSERT IGNORE INTO dropped_entities (id, dropped) VALUES (?, ?)",
                (*id, instaface_bus::now_ms()),
            )
            .await?;
            let lists = associations::delete_rows_to(tx, *id).await?;
            let result = WriteResult::Deleted { found: !lists.is_empty() };
            if lists.is_empty() {
                return Ok(Change::Nothing { result });
            }
            let keys = lists.into_iter().map(|(from, atype)| CacheKey::Assocs { from, atype }).collect();
            Ok(Change::Applied { result, keys })
        }
    }
}

/// The last intent applied to the row `from --atype--> to` (the row locked to the commit).
async fn version(
    tx: &mut Transaction<'static>,
    from: EntityId,
    atype: &str,
    to: EntityId,
) -> Result<Option<u64>, StoreError> {
    Ok(tx
        .exec_first(
            "SELECT intent_id FROM pair_versions WHERE from_id = ? AND atype = ? AND to_id = ? FOR UPDATE",
            (from, atype, to),
        )
        .await?)
}

/// Records intent `intent` as the row's version.
async fn set_version(
    tx: &mut Transaction<'static>,
    from: EntityId,
    atype: &str,
    to: EntityId,
    intent: u64,
) -> Result<(), StoreError> {
    tx.exec_drop(
        "INSERT INTO pair_versions (from_id, atype, to_id, intent_id) VALUES (?, ?, ?, ?) \
         ON DUPLICATE KEY UPDATE intent_id = VALUES(intent_id)",
        (from, atype, to, intent),
    )
    .await?;
    Ok(())
}
