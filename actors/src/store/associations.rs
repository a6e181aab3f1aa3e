//! Associations: the add / remove steps of a write (each with its inverse, where the type
//! has one — written here, or through an intent when it is another shard's row),
//! association lists newest first, and their counts.

use std::collections::HashMap;

use mysql_async::prelude::*;
use mysql_async::{Transaction, TxOpts, Value};

use instaface_bus::graph::{inverse_of, Association, Attributes, CacheKey, EntityId, WriteResult};
use instaface_bus::intents::InverseOp;
use instaface_bus::shards::{owner_of, shard_of};

use super::entities::{attributes_json, not_found};
use super::{check_type, intents, Change, GraphStore, Place, StoreError};

/// One association list: `(from, atype)`.
pub(super) type ListId = (EntityId, String);

/// Lists read in one statement at most (each costs a few bound parameters).
pub(super) const MAX_LISTS_PER_QUERY: usize = 500;

type AssocRow = (u64, String, u64, String, u64);

const NEWEST_FIRST: &str = "ORDER BY created DESC, to_id DESC";

impl GraphStore {
    /// The `from --atype-->` list: its total count and up to `limit` items from `offset`,
    /// newest first (`created` descending, then `to` descending), read from one snapshot.
    pub async fn list_assocs(
        &self,
        from: EntityId,
        atype: &str,
        limit: u32,
        offset: u32,
    ) -> Result<(u64, Vec<Association>), StoreError> {
        check_type("association", atype)?;
        let mut opts = TxOpts::new();
        opts.with_consistent_snapshot(true);
        let mut tx = self.begin(opts).await?;
        let count: Option<u64> =
            tx.exec_first("SELECT COUNT(*) FROM associations WHERE from_id = ? AND atype = ?", (from, atype)).await?;
        let count = count.unwrap_or(0);
        let rows: Vec<AssocRow> = if count > u64::from(offset) && limit > 0 {
            tx.exec(
                format!(
                    "SELECT from_id, atype, to_id, attributes, created FROM associations \
                     WHERE from_id = ? AND atype = ? {NEWEST_FIRST} LIMIT ? OFFSET ?"
                ),
                (from, atype, limit, offset),
            )
            .await?
        } else {
            Vec::new()
        };
        tx.commit().await?;
        let items = rows.into_iter().map(assoc_from_row).collect::<Result<_, _>>()?;
        Ok((count, items))
    }

    /// How many associations there are in all (each direction of an inverse pair counts).
    pub async fn count_assocs(&self) -> Result<u64, StoreError> {
        let mut conn = self.conn().await?;
        let count: Option<u64> = conn.query_first("SELECT COUNT(*) FROM associations").await?;
        Ok(count.unwrap_or(0))
    }
}

/// The rows of the association `from --atype--> to`: itself and, where the type has one,
/// its inverse `to --inverse--> from`.
fn rows(from: EntityId, atype: &str, to: EntityId) -> Vec<(EntityId, String, EntityId)> {
    let mut rows = vec![(from, atype.to_string(), to)];
    if let Some(inverse) = inverse_of(atype) {
        rows.push((to, inverse.to_string(), from));
    }
    rows
}

/// Adds the association and its inverse. A row whose `from` is another shard's is not
/// written here: an intent for it is, in the same transaction (the pair's owner runs the
/// write, [`instaface_bus::shards::owner_of`], so one of the two rows is always here).
pub(super) async fn add(
    tx: &mut Transaction<'static>,
    place: Place,
    from: EntityId,
    atype: &str,
    to: EntityId,
    attributes: &Attributes,
) -> Result<Change, StoreError> {
    check_type("association", atype)?;
    if from == to {
        // With a symmetric type the inverse would be the same row; no use case needs loops.
        return Err(StoreError::Invalid(format!("an association from entity {from} to itself")));
    }
    let rows = rows(from, atype, to);
    // Only the pair's owner writes it (the other shard's row versions follow its order).
    if !place.holds(owner_of(from, atype, to)) {
        return Err(not_owned(place, from, to));
    }
    let Some(own) = rows.iter().find(|r| place.holds(r.0)).cloned() else {
        return Err(not_owned(place, from, to));
    };
    // Both ends must exist: an entity here is looked up (and locked against a delete until
    // the commit); one of another shard cannot be, but one that shard dropped is refused.
    let existing: Vec<u64> =
        tx.exec("SELECT id FROM entities WHERE id IN (?, ?) LOCK IN SHARE MODE", (from, to)).await?;
    for id in [from, to] {
        let missing = if place.holds(id) { !existing.contains(&id) } else { intents::dropped(tx, id).await? };
        if missing {
            return Err(not_found(id));
        }
    }
    // Re-adding keeps the original creation time, so a list's order does not change.
    let created: Option<u64> = tx
        .exec_first(
            "SELECT created FROM associations WHERE from_id = ? AND atype = ? AND to_id = ?",
            (own.0, own.1.as_str(), own.2),
        )
        .await?;
    let created = created.unwrap_or_else(instaface_bus::now_ms);
    let json = attributes_json(attributes);
    for (f, a, t) in &rows {
        if place.holds(*f) {
            put_row(tx, *f, a, *t, &json, created).await?;
        } else {
            let op = InverseOp::Put { from: *f, atype: a.clone(), to: *t, attributes: attributes.clone(), created };
            intents::record(tx, shard_of(*f), &op).await?;
        }
    }
    // A one-way row to another shard's entity: that shard checks the entity exists (the
    // row goes if not), as the inverse's put does for a pair.
    if rows.len() == 1 && !place.holds(to) {
        intents::record(tx, shard_of(to), &InverseOp::Exists { id: to, from, atype: atype.to_string() }).await?;
    }
    let association = Association { from, atype: atype.to_string(), to, attributes: attributes.clone(), created };
    Ok(Change::Applied { result: WriteResult::Assoc { association }, keys: local_keys(place, &rows) })
}

/// Removes the association and its inverse, the other shard's row through an intent
/// (sent even when nothing was here to remove: it supersedes any put still on its way).
pub(super) async fn remove(
    tx: &mut Transaction<'static>,
    place: Place,
    from: EntityId,
    atype: &str,
    to: EntityId,
) -> Result<Change, StoreError> {
    check_type("association", atype)?;
    let rows = rows(from, atype, to);
    if !place.holds(owner_of(from, atype, to)) {
        return Err(not_owned(place, from, to));
    }
    let mut removed = 0;
    for (f, a, t) in &rows {
        if place.holds(*f) {
            removed += u64::from(delete_row(tx, *f, a, *t).await?);
        } else {
            intents::record(tx, shard_of(*f), &InverseOp::Remove { from: *f, atype: a.clone(), to: *t }).await?;
        }
    }
    let result = WriteResult::Deleted { found: removed > 0 };
    if removed == 0 {
        return Ok(Change::Nothing { result });
    }
    Ok(Change::Applied { result, keys: local_keys(place, &rows) })
}

/// Puts the row `from --atype--> to` (`attributes` as JSON), replacing its attributes and
/// creation time if it exists.
pub(super) async fn put_row(
    tx: &mut Transaction<'static>,
    from: EntityId,
    atype: &str,
    to: EntityId,
    attributes: &str,
    created: u64,
) -> Result<(), StoreError> {
    tx.exec_drop(
        "INSERT INTO associations (from_id, atype, to_id, attributes, created) VALUES (?, ?, ?, ?, ?) \
         ON DUPLICATE KEY UPDATE attributes = VALUES(attributes), created = VALUES(created)",
        (from, atype, to, attributes, created),
    )
    .await?;
    Ok(())
}

/// Deletes the row `from --atype--> to`; whether there was one.
pub(super) async fn delete_row(
    tx: &mut Transaction<'static>,
    from: EntityId,
    atype: &str,
    to: EntityId,
) -> Result<bool, StoreError> {
    tx.exec_drop("DELETE FROM associations WHERE from_id = ? AND atype = ? AND to_id = ?", (from, atype, to)).await?;
    Ok(tx.affected_rows() > 0)
}

/// Deletes every row pointing at `id`; returns the lists that lost one.
pub(super) async fn delete_rows_to(tx: &mut Transaction<'static>, id: EntityId) -> Result<Vec<ListId>, StoreError> {
    let lists: Vec<ListId> = tx.exec("SELECT DISTINCT from_id, atype FROM associations WHERE to_id = ?", (id,)).await?;
    tx.exec_drop("DELETE FROM associations WHERE to_id = ?", (id,)).await?;
    Ok(lists)
}

/// The lists of `rows` kept here, to invalidate: `a:<from>:<atype>` of each row whose
/// `from` is this shard's (the other shard invalidates its own when it applies the intent).
fn local_keys(place: Place, rows: &[(EntityId, String, EntityId)]) -> Vec<CacheKey> {
    rows.iter()
        .filter(|r| place.holds(r.0))
        .map(|(from, atype, _)| CacheKey::Assocs { from: *from, atype: atype.clone() })
        .collect()
}

fn not_owned(place: Place, from: EntityId, to: EntityId) -> StoreError {
    StoreError::Invalid(format!(
        "the association {from} -> {to} is not owned by shard {}: an association is written by its owner's shard",
        place.shard
    ))
}

/// The total count of each of `lists` (absent lists count 0), one query per
/// [`MAX_LISTS_PER_QUERY`] lists.
pub(super) async fn count_lists<Q: Queryable>(q: &mut Q, lists: &[ListId]) -> Result<HashMap<ListId, u64>, StoreError> {
    let mut counts = HashMap::with_capacity(lists.len());
    for chunk in lists.chunks(MAX_LISTS_PER_QUERY) {
        let sql = format!(
            "SELECT from_id, atype, COUNT(*) FROM associations WHERE {} GROUP BY from_id, atype",
            vec!["(from_id = ? AND atype = ?)"; chunk.len()].join(" OR ")
        );
        let rows: Vec<(u64, String, u64)> = q.exec(sql, list_params(chunk, None)).await?;
        counts.extend(rows.into_iter().map(|(from, atype, n)| ((from, atype), n)));
    }
    Ok(counts)
}

/// The newest `window` items of each of `lists`, newest first, one query (a `UNION ALL` of
/// index range reads) per [`MAX_LISTS_PER_QUERY`] lists.
pub(super) async fn newest_items<Q: Queryable>(
    q: &mut Q,
    lists: &[ListId],
    window: u32,
) -> Result<HashMap<ListId, Vec<Association>>, StoreError> {
    let mut items: HashMap<ListId, Vec<Association>> = HashMap::with_capacity(lists.len());
    if window == 0 {
        return Ok(items);
    }
    for chunk in lists.chunks(MAX_LISTS_PER_QUERY) {
        let one = format!(
            "(SELECT from_id, atype, to_id, attributes, created FROM associations \
             WHERE from_id = ? AND atype = ? {NEWEST_FIRST} LIMIT ?)"
        );
        let sql = vec![one; chunk.len()].join(" UNION ALL ");
        let rows: Vec<AssocRow> = q.exec(sql, list_params(chunk, Some(window))).await?;
        for row in rows {
            let a = assoc_from_row(row)?;
            items.entry((a.from, a.atype.clone())).or_default().push(a);
        }
    }
    // A UNION promises no order across its parts' rows: restore newest first.
    for list in items.values_mut() {
        list.sort_by_key(|a| std::cmp::Reverse((a.created, a.to)));
    }
    Ok(items)
}

fn list_params(lists: &[ListId], limit: Option<u32>) -> Vec<Value> {
    let mut params = Vec::with_capacity(lists.len() * 3);
    for (from, atype) in lists {
        params.push(Value::from(*from));
        params.push(Value::from(atype.as_str()));
        if let Some(limit) = limit {
            params.push(Value::from(limit));
        }
    }
    params
}

fn assoc_from_row((from, atype, to, attributes, created): AssocRow) -> Result<Association, StoreError> {
    let attributes = serde_json::from_str(&attributes)
        .map_err(|e| StoreError::Corrupt(format!("association {from} {atype} {to}: attributes: {e}")))?;
    Ok(Association { from, atype, to, attributes, created })
}

#[cfg(test)]
mod tests {
    use super::*;

    use instaface_bus::shards::{first_id, Shards};

    #[test]
    fn pairs_name_the_lists_kept_here() {
        let keys = |place, atype, to| -> Vec<String> {
            local_keys(place, &rows(1, atype, to)).iter().map(ToString::to_string).collect()
        };
        let one = Place { shard: 0, shards: Shards::one() };
        assert_eq!(keys(one, "likes", 2), ["a:1:likes", "a:2:likedby"]);
        assert_eq!(keys(one, "follows", 2), ["a:1:follows"]);
        let zero_of_two = Place { shard: 0, shards: Shards::new(2).unwrap() };
        let far = first_id(1) + 2;
        assert_eq!(keys(zero_of_two, "likes", far), ["a:1:likes"]);
        assert_eq!(keys(zero_of_two, "likes", 2), ["a:1:likes", "a:2:likedby"]);
    }
}
