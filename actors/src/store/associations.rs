//! Associations: the add / remove steps of a write (each with its inverse, where the type
//! has one), association lists newest first, and their counts.

use std::collections::HashMap;

use mysql_async::prelude::*;
use mysql_async::{Transaction, TxOpts, Value};

use instaface_bus::graph::{inverse_of, Association, Attributes, CacheKey, EntityId, WriteResult};

use super::entities::{attributes_json, not_found};
use super::{check_type, Change, GraphStore, StoreError};

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

pub(super) async fn add(
    tx: &mut Transaction<'static>,
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
    let existing: Vec<u64> =
        tx.exec("SELECT id FROM entities WHERE id IN (?, ?) LOCK IN SHARE MODE", (from, to)).await?;
    for id in [from, to] {
        if !existing.contains(&id) {
            return Err(not_found(id));
        }
    }
    // Re-adding keeps the original creation time, so a list's order does not change.
    let created: Option<u64> = tx
        .exec_first("SELECT created FROM associations WHERE from_id = ? AND atype = ? AND to_id = ?", (from, atype, to))
        .await?;
    let created = created.unwrap_or_else(instaface_bus::now_ms);
    let json = attributes_json(attributes);
    let upsert = "INSERT INTO associations (from_id, atype, to_id, attributes, created) \
                  VALUES (?, ?, ?, ?, ?) \
                  ON DUPLICATE KEY UPDATE attributes = VALUES(attributes), created = VALUES(created)";
    tx.exec_drop(upsert, (from, atype, to, json.as_str(), created)).await?;
    let inverse = inverse_of(atype);
    if let Some(inverse) = inverse {
        tx.exec_drop(upsert, (to, inverse, from, json.as_str(), created)).await?;
    }
    let association = Association { from, atype: atype.to_string(), to, attributes: attributes.clone(), created };
    Ok(Change::Applied { result: WriteResult::Assoc { association }, keys: pair_keys(from, atype, to) })
}

pub(super) async fn remove(
    tx: &mut Transaction<'static>,
    from: EntityId,
    atype: &str,
    to: EntityId,
) -> Result<Change, StoreError> {
    check_type("association", atype)?;
    let delete = "DELETE FROM associations WHERE from_id = ? AND atype = ? AND to_id = ?";
    tx.exec_drop(delete, (from, atype, to)).await?;
    let mut removed = tx.affected_rows();
    if let Some(inverse) = inverse_of(atype) {
        tx.exec_drop(delete, (to, inverse, from)).await?;
        removed += tx.affected_rows();
    }
    let result = WriteResult::Deleted { found: removed > 0 };
    if removed == 0 {
        return Ok(Change::Nothing { result });
    }
    Ok(Change::Applied { result, keys: pair_keys(from, atype, to) })
}

/// The lists an add or remove touches: `a:<from>:<atype>` and, with an inverse,
/// `a:<to>:<inverse>`.
fn pair_keys(from: EntityId, atype: &str, to: EntityId) -> Vec<CacheKey> {
    let mut keys = vec![CacheKey::Assocs { from, atype: atype.to_string() }];
    if let Some(inverse) = inverse_of(atype) {
        keys.push(CacheKey::Assocs { from: to, atype: inverse.to_string() });
    }
    keys
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

    #[test]
    fn pairs_name_both_lists() {
        let keys: Vec<String> = pair_keys(1, "likes", 2).iter().map(ToString::to_string).collect();
        assert_eq!(keys, ["a:1:likes", "a:2:likedby"]);
        let keys: Vec<String> = pair_keys(1, "follows", 2).iter().map(ToString::to_string).collect();
        assert_eq!(keys, ["a:1:follows"]);
    }
}
