//! The invalidation outbox: one row per committed write, `(seq, term, keys)`.
//!
//! Rows are appended inside the write's transaction ([`append`]) while it holds the fence
//! lock, so seqs grow in commit order (a rolled-back write may leave a gap; never a
//! reordering). A new leader reads the rows it must carry on broadcasting with
//! [`GraphStore::outbox_newest`]; rows every member has applied are deleted with
//! [`GraphStore::outbox_delete_through`], which always keeps the newest row so the
//! `AUTO_INCREMENT` counter cannot fall back (and seqs be reused) after a server restart.

use mysql_async::prelude::*;
use mysql_async::{Transaction, Value};

use instaface_bus::graph::CacheKey;
use instaface_bus::messages::InvalidationEntry;

use super::{batch, GraphStore, StoreError};

impl GraphStore {
    /// The latest seq, or 0 when nothing was ever written.
    pub async fn outbox_latest(&self) -> Result<u64, StoreError> {
        let mut conn = self.conn().await?;
        latest(&mut conn).await
    }

    /// The oldest retained seq, if any.
    pub async fn outbox_oldest(&self) -> Result<Option<u64>, StoreError> {
        let mut conn = self.conn().await?;
        let oldest: Option<Option<u64>> = conn.query_first("SELECT MIN(seq) FROM outbox").await?;
        Ok(oldest.flatten())
    }

    /// Up to `limit` entries with `seq > after_seq`, oldest first.
    pub async fn outbox_since(&self, after_seq: u64, limit: u32) -> Result<Vec<InvalidationEntry>, StoreError> {
        let mut conn = self.conn().await?;
        let rows: Vec<(u64, String)> = conn
            .exec("SELECT seq, keys_json FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?", (after_seq, limit))
            .await?;
        rows.into_iter()
            .map(|(seq, keys_json)| {
                let keys = serde_json::from_str(&keys_json)
                    .map_err(|e| StoreError::Corrupt(format!("outbox row {seq}: keys: {e}")))?;
                Ok(InvalidationEntry { seq, keys })
            })
            .collect()
    }

    /// The newest `limit` entries, oldest first: what a new leader replays (every row
    /// after the oldest of them is among them).
    pub async fn outbox_newest(&self, limit: u32) -> Result<Vec<InvalidationEntry>, StoreError> {
        let mut conn = self.conn().await?;
        let rows: Vec<(u64, String)> =
            conn.exec("SELECT seq, keys_json FROM outbox ORDER BY seq DESC LIMIT ?", (limit,)).await?;
        let mut entries = rows
            .into_iter()
            .map(|(seq, keys_json)| {
                let keys = serde_json::from_str(&keys_json)
                    .map_err(|e| StoreError::Corrupt(format!("outbox row {seq}: keys: {e}")))?;
                Ok(InvalidationEntry { seq, keys })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        entries.reverse();
        Ok(entries)
    }

    /// Deletes the rows with `seq <= through`, except the newest row, which is always kept.
    /// Returns how many rows went.
    #[tracing::instrument(skip(self))]
    pub async fn outbox_delete_through(&self, through: u64) -> Result<u64, StoreError> {
        let mut conn = self.conn().await?;
        let newest = latest(&mut conn).await?;
        // A write committing meanwhile only makes the newest row newer: still kept.
        let bound = through.min(newest.saturating_sub(1));
        if bound == 0 {
            return Ok(0);
        }
        conn.exec_drop("DELETE FROM outbox WHERE seq <= ?", (bound,)).await?;
        let deleted = conn.affected_rows();
        tracing::debug!(bound, deleted, "outbox trimmed");
        Ok(deleted)
    }
}

/// Appends the invalidations of changed writes (a batch's, or one), in order, and returns
/// their seqs: one multi-row INSERT per chunk when the server hands out consecutive
/// values, else one row per INSERT.
pub(super) async fn append_many(
    tx: &mut Transaction<'static>,
    term: u64,
    keys: &[&[CacheKey]],
    consecutive_ids: bool,
) -> Result<Vec<u64>, StoreError> {
    let now = instaface_bus::now_ms();
    let rows: Vec<String> = keys.iter().map(|k| serde_json::to_string(k).expect("cache keys serialise")).collect();
    let sizes: Vec<usize> = rows.iter().map(String::len).collect();
    let mut seqs = Vec::with_capacity(rows.len());
    let mut rest = rows.as_slice();
    for n in batch::row_chunks(&sizes, consecutive_ids) {
        let (chunk, after) = rest.split_at(n);
        rest = after;
        let sql =
            format!("INSERT INTO outbox (term, keys_json, created) VALUES {}", batch::values_rows("(?, ?, ?)", n));
        let params: Vec<Value> =
            chunk.iter().flat_map(|json| [Value::from(term), Value::from(json.as_str()), Value::from(now)]).collect();
        tx.exec_drop(sql, params).await?;
        seqs.extend(batch::consecutive(tx.last_insert_id(), tx.affected_rows(), n, "outbox")?);
    }
    Ok(seqs)
}

/// The latest seq, or 0.
pub(super) async fn latest<Q: Queryable>(q: &mut Q) -> Result<u64, StoreError> {
    let latest: Option<u64> = q.query_first("SELECT COALESCE(MAX(seq), 0) FROM outbox").await?;
    Ok(latest.unwrap_or(0))
}
