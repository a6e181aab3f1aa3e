//! A batch of writes in one transaction (group commit): the fence checked once, each
//! change applied, the invalidations appended to the outbox, one commit.
//!
//! What a batch costs is its round trips: the leader's connection waits on each, and the
//! writers of the batch wait on all of them. So a batch runs **grouped** first: its entity
//! creates go into one multi-row INSERT (per chunk, [`row_chunks`]), its entity updates
//! into one locking SELECT and one multi-row upsert, every other write runs its own
//! statements, and the outbox rows of the whole batch go into one more multi-row INSERT at
//! the end; the new ids and seqs are read off the first one the server reports, since it
//! hands out consecutive values ([`GraphStore::consecutive_ids`]; without that guarantee
//! rows go in one at a time). A batch of 32 creates costs five round trips (BEGIN, fence,
//! entities, outbox, COMMIT) instead of 67; 8 creates and 24 updates, seven instead of 83.
//!
//! When the database refuses a write on its own terms (not found, invalid, conflict), the
//! grouped transaction is rolled back whole — nothing of it happened — and the batch runs
//! again one write at a time in the order asked, each in a savepoint of its own with its
//! own outbox row, so the refused write is rolled back alone and the others commit (a
//! batch of one just answers its refusal).

use mysql_async::prelude::Queryable;
use mysql_async::{Transaction, TxOpts};

use instaface_bus::graph::{Attributes, CacheKey, EntityId, WriteOutcome, WriteRequest};

use super::{
    apply, entities, fence, outbox, rollback_quietly, Change, CommittedWrite, GraphStore, Op, Place, StoreError,
};

/// Rows one multi-row INSERT carries at most.
const MAX_ROWS_PER_INSERT: usize = 64;
/// Bytes of values one multi-row INSERT carries at most (far below MariaDB's default
/// `max_allowed_packet` of 16 MiB); a single larger row goes alone.
const MAX_BYTES_PER_INSERT: usize = 1 << 20;

impl GraphStore {
    /// Applies `reqs` in order at leader `term`, in **one** transaction (group commit):
    /// the fence is checked once (its row lock held to the commit, so seqs still follow
    /// commit order), then the writes run with their outbox rows, and the transaction
    /// commits once.
    ///
    /// A write the database refuses on its own terms (not found, invalid, conflict) comes
    /// back as its `Err` — it certainly did not happen; the others commit. The outer `Err`
    /// concerns the whole batch: `Fenced` (nothing happened), or a MySQL failure (the
    /// outcome of every write is unknown: the connection may have failed during COMMIT).
    #[tracing::instrument(skip(self, reqs), fields(writes = reqs.len()))]
    pub async fn write_batch(
        &self,
        term: u64,
        leader: &str,
        reqs: &[Op],
    ) -> Result<Vec<Result<CommittedWrite, StoreError>>, StoreError> {
        match self.run_batch(term, leader, reqs, Mode::Grouped).await? {
            Batch::Committed(results) => Ok(results),
            Batch::Refused(refused) if reqs.len() == 1 => Ok(vec![Err(refused)]),
            Batch::Refused(_) => match self.run_batch(term, leader, reqs, Mode::Savepoints).await? {
                Batch::Committed(results) => Ok(results),
                Batch::Refused(e) => Err(StoreError::Corrupt(format!("a refusal escaped its savepoint: {e}"))),
            },
        }
    }

    /// One transaction of the batch: fence check, the writes, commit — or, grouped, a
    /// rollback at the first refused write.
    async fn run_batch(&self, term: u64, leader: &str, reqs: &[Op], mode: Mode) -> Result<Batch, StoreError> {
        let mut tx = self.begin(TxOpts::default()).await?;
        if let Err(e) = fence::check(&mut tx, term, leader).await {
            rollback_quietly(tx).await;
            return Err(e);
        }
        let ran = match mode {
            Mode::Grouped => grouped(&mut tx, self.place, term, reqs, self.consecutive_ids).await,
            Mode::Savepoints => one_by_one(&mut tx, self.place, term, reqs).await.map(Ok),
        };
        match ran {
            Ok(Ok(results)) => {
                tx.commit().await?;
                tracing::debug!(writes = results.len(), ?mode, "batch committed");
                Ok(Batch::Committed(results))
            }
            Ok(Err(refused)) => {
                tx.rollback().await?;
                Ok(Batch::Refused(refused))
            }
            Err(e) => {
                rollback_quietly(tx).await;
                Err(e)
            }
        }
    }
}

/// How a batch's transaction runs its writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Creates and outbox rows in multi-row INSERTs; any refusal refuses the transaction.
    Grouped,
    /// One write at a time, each in a savepoint with its own outbox row.
    Savepoints,
}

/// How one transaction of a batch ended.
enum Batch {
    /// Committed, with each write's result (refusals only in savepoint mode).
    Committed(Vec<Result<CommittedWrite, StoreError>>),
    /// Grouped, a write was refused: the transaction was rolled back whole.
    Refused(StoreError),
}

type Results = Vec<Result<CommittedWrite, StoreError>>;

/// Sorts an error of one write: the server refused it (`Ok`: the connection is fine, the
/// write alone is refused), or anything else (`Err`: I/O, a dropped connection — the
/// whole batch must go).
fn refusal(e: StoreError) -> Result<StoreError, StoreError> {
    match e {
        StoreError::Mysql(e) if !matches!(e, mysql_async::Error::Server(_)) => Err(StoreError::Mysql(e)),
        refused => Ok(refused),
    }
}

/// The grouped run: `Ok(Err(refused))` at the first refused write (the caller rolls back).
///
/// The writes of a batch are concurrent (none was answered before another was sent), so
/// any order of them is a correct one; this run takes them by kind — the updates together,
/// then the other writes one by one in the order they came, then the creates together —
/// and numbers the outbox rows in that order. The results come back in the order asked;
/// their seqs need not increase along it (the store actor hands them on in seq order).
async fn grouped(
    tx: &mut Transaction<'static>,
    place: Place,
    term: u64,
    reqs: &[Op],
    consecutive_ids: bool,
) -> Result<Result<Results, StoreError>, StoreError> {
    let mut updates = Vec::new();
    let mut creates = Vec::new();
    let mut others = Vec::new();
    for (i, req) in reqs.iter().enumerate() {
        match req {
            Op::Write(WriteRequest::UpdateEntity { id, patch }) => updates.push((i, (*id, patch))),
            Op::Write(WriteRequest::CreateEntity { etype, attributes }) => {
                creates.push((i, (etype.as_str(), attributes)))
            }
            _ => others.push(i),
        }
    }
    // (index asked, change) in the order applied.
    let mut applied: Vec<(usize, Change)> = Vec::with_capacity(reqs.len());
    if !updates.is_empty() {
        let args: Vec<(EntityId, &serde_json::Value)> = updates.iter().map(|(_, u)| *u).collect();
        match entities::update_many(tx, &args).await {
            Ok(changes) => applied.extend(updates.iter().map(|(i, _)| *i).zip(changes)),
            Err(e) => return refusal(e).map(Err),
        }
    }
    for i in others {
        match apply(tx, place, &reqs[i]).await {
            Ok(change) => applied.push((i, change)),
            Err(e) => return refusal(e).map(Err),
        }
    }
    if !creates.is_empty() {
        let args: Vec<(&str, &Attributes)> = creates.iter().map(|(_, c)| *c).collect();
        match entities::create_many(tx, &args, consecutive_ids).await {
            Ok(changes) => applied.extend(creates.iter().map(|(i, _)| *i).zip(changes)),
            Err(e) => return refusal(e).map(Err),
        }
    }

    // A write that changed nothing answers the latest seq it observed: the last changed
    // write applied before it, or the latest seq before the batch (read before this
    // batch's rows go in).
    let first_applied = applied.iter().position(|(_, c)| matches!(c, Change::Applied { .. }));
    let first_nothing = applied.iter().position(|(_, c)| matches!(c, Change::Nothing { .. }));
    let before = match (first_nothing, first_applied) {
        (Some(n), Some(a)) if n > a => 0,
        (Some(_), _) => outbox::latest(tx).await?,
        (None, _) => 0,
    };
    let keys: Vec<&[CacheKey]> = applied
        .iter()
        .filter_map(|(_, c)| match c {
            Change::Applied { keys, .. } => Some(keys.as_slice()),
            Change::Nothing { .. } => None,
        })
        .collect();
    let seqs = outbox::append_many(tx, term, &keys, consecutive_ids).await?;

    let mut seqs = seqs.into_iter();
    let mut latest = before;
    let mut results: Vec<Option<CommittedWrite>> = vec![None; reqs.len()];
    for (i, change) in applied {
        let written = match change {
            Change::Applied { result, keys } => {
                latest = seqs.next().ok_or_else(|| StoreError::Corrupt("fewer outbox seqs than rows".into()))?;
                CommittedWrite { outcome: WriteOutcome { seq: latest, result }, keys }
            }
            Change::Nothing { result } => {
                CommittedWrite { outcome: WriteOutcome { seq: latest, result }, keys: Vec::new() }
            }
        };
        results[i] = Some(written);
    }
    let results = results
        .into_iter()
        .map(|r| r.ok_or_else(|| StoreError::Corrupt("a write of the batch was not applied".into())))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Ok(results.into_iter().map(Ok).collect()))
}

/// The savepoint run: every write in a savepoint of its own, a refused one rolled back
/// alone and answered with its error.
async fn one_by_one(
    tx: &mut Transaction<'static>,
    place: Place,
    term: u64,
    reqs: &[Op],
) -> Result<Results, StoreError> {
    let mut results = Vec::with_capacity(reqs.len());
    for req in reqs {
        tx.query_drop("SAVEPOINT write_one").await?;
        let change = match apply(tx, place, req).await {
            Ok(change) => change,
            Err(e) => {
                let refused = refusal(e)?;
                tx.query_drop("ROLLBACK TO SAVEPOINT write_one").await?;
                results.push(Err(refused));
                continue;
            }
        };
        let written = match change {
            Change::Applied { result, keys } => {
                let seq = outbox::append_many(tx, term, &[keys.as_slice()], false)
                    .await?
                    .pop()
                    .ok_or_else(|| StoreError::Corrupt("the outbox insert returned no seq".into()))?;
                CommittedWrite { outcome: WriteOutcome { seq, result }, keys }
            }
            // It changed nothing: its seq is the latest one it observed (this batch's own
            // earlier rows included).
            Change::Nothing { result } => {
                let seq = outbox::latest(tx).await?;
                CommittedWrite { outcome: WriteOutcome { seq, result }, keys: Vec::new() }
            }
        };
        tx.query_drop("RELEASE SAVEPOINT write_one").await?;
        results.push(Ok(written));
    }
    Ok(results)
}

/// How to split rows of these sizes (bytes of bound values) into INSERTs, in order: one
/// row each unless `multi_row`; else each chunk a power of two of rows (so a connection
/// prepares at most seven statement shapes per table), at most [`MAX_ROWS_PER_INSERT`]
/// rows and, unless a single row is larger, [`MAX_BYTES_PER_INSERT`] bytes.
pub(super) fn row_chunks(sizes: &[usize], multi_row: bool) -> Vec<usize> {
    if !multi_row {
        return vec![1; sizes.len()];
    }
    let mut chunks = Vec::new();
    let mut rest = sizes;
    while !rest.is_empty() {
        let mut n = MAX_ROWS_PER_INSERT.min(rest.len());
        n = 1 << n.ilog2();
        while n > 1 && rest[..n].iter().sum::<usize>() > MAX_BYTES_PER_INSERT {
            n /= 2;
        }
        chunks.push(n);
        rest = &rest[n..];
    }
    chunks
}

/// `(?, …),(?, …)`: `rows` copies of one row's placeholders `row`.
pub(super) fn values_rows(row: &str, rows: usize) -> String {
    vec![row; rows].join(",")
}

/// The ids of a multi-row INSERT of `rows` rows whose first auto-increment value is
/// `first`, checking the server says it inserted them all.
pub(super) fn consecutive(first: Option<u64>, affected: u64, rows: usize, what: &str) -> Result<Vec<u64>, StoreError> {
    let first = first.ok_or_else(|| StoreError::Corrupt(format!("the {what} insert returned no id")))?;
    if affected != rows as u64 {
        return Err(StoreError::Corrupt(format!("the {what} insert of {rows} rows inserted {affected}")));
    }
    Ok((first..first + rows as u64).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_powers_of_two_within_the_bounds() {
        assert_eq!(row_chunks(&[], true), Vec::<usize>::new());
        assert_eq!(row_chunks(&[10; 1], true), [1]);
        assert_eq!(row_chunks(&[10; 23], true), [16, 4, 2, 1]);
        assert_eq!(row_chunks(&[10; 64], true), [64]);
        assert_eq!(row_chunks(&[10; 130], true), [64, 64, 2]);
        // Big rows: as many as fit the byte bound, a huge one alone.
        let big = MAX_BYTES_PER_INSERT / 3;
        assert_eq!(row_chunks(&[big; 5], true), [2, 2, 1]);
        assert_eq!(row_chunks(&[10, MAX_BYTES_PER_INSERT * 2, 10], true), [1, 1, 1]);
        // Without consecutive values from the server: a row per INSERT.
        assert_eq!(row_chunks(&[10; 3], false), [1, 1, 1]);
    }

    #[test]
    fn values_rows_repeats_the_row() {
        assert_eq!(values_rows("(?, ?)", 1), "(?, ?)");
        assert_eq!(values_rows("(?, ?)", 3), "(?, ?),(?, ?),(?, ?)");
    }

    #[test]
    fn consecutive_ids_follow_the_first() {
        assert_eq!(consecutive(Some(7), 3, 3, "x").unwrap(), [7, 8, 9]);
        assert!(consecutive(None, 3, 3, "x").is_err());
        assert!(consecutive(Some(7), 2, 3, "x").is_err());
    }
}
