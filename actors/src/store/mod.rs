//! The MySQL graph store: the leader's only way to MySQL.
//!
//! [`GraphStore`] owns a small connection pool and offers:
//!
//! - [`GraphStore::connect`] — creates the database when missing and migrates it
//!   (`schema.rs`).
//! - [`GraphStore::write_batch`] — writes run in groups, one transaction each (group
//!   commit, `batch.rs`): check the leadership fence once (`fence.rs`), apply each change
//!   (`entities.rs`, `associations.rs`, with the inverse association where the type has
//!   one) and append the invalidations to the outbox (`outbox.rs`); commit once. The
//!   fence row lock taken first also serialises the batches, so outbox seqs grow in
//!   commit order. [`GraphStore::write`] is a batch of one.
//! - Reads for cache fills: [`GraphStore::get_entities`], [`GraphStore::list_assocs`],
//!   [`GraphStore::fetch`] (`fetch.rs`), [`GraphStore::random_ids`] and counts.
//! - The outbox: [`GraphStore::outbox_since`] and friends, and the fence itself.
//!
//! Every value travels as a bound parameter; the only text spliced into SQL is the
//! validated, backquoted database name and `?,?,?` placeholder lists built from a count.

mod associations;
mod batch;
mod entities;
mod error;
mod fence;
mod fetch;
mod intents;
mod merge_patch;
mod outbox;
mod schema;

use std::time::Duration;

use mysql_async::{Conn, Pool, Transaction, TxOpts};

use instaface_bus::graph::{CacheKey, EntityId, WriteOutcome, WriteRequest, WriteResult};
use instaface_bus::intents::IntentDelivery;
use instaface_bus::shards::{shard_of, ShardId, Shards};

pub use crate::intents::Delivered as IntentOutcome;
pub use entities::MAX_RANDOM_IDS;
pub use error::StoreError;
pub use intents::{PendingIntent, MAX_UNDELIVERED};
pub use merge_patch::apply_merge_patch;
pub use schema::{CONNECT_TIMEOUT, SCHEMA_VERSION};

/// Connections the pool keeps at most: the leader is the only client, and writes are
/// serialised by the fence lock anyway.
const POOL_MAX: usize = 8;
/// Idle connections the pool keeps for good.
const POOL_MIN: usize = 1;
/// How long a connection past [`POOL_MIN`] may stay idle in the pool. Not zero: with zero,
/// mysql_async closes every connection returned past the minimum at once, and a write that
/// arrives while a fill or a prune holds the one kept connection pays a new connection
/// (TCP, handshake, the unix-socket upgrade, the session setup).
const POOL_IDLE_TTL: Duration = Duration::from_secs(60);
/// How long taking a connection from the pool may take (connecting included) before the
/// operation fails: a server that silently dropped off the network must not hang the leader
/// for the kernel's TCP timeout.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// The graph in MySQL. Cheap to clone (the pool is shared).
#[derive(Clone, Debug)]
pub struct GraphStore {
    pool: Pool,
    /// The server hands a multi-row INSERT consecutive auto-increment values (lock mode
    /// 0 or 1, increment 1), so a batch may insert its new entities and its outbox rows
    /// with one statement each and read every id off the first (`batch.rs`).
    consecutive_ids: bool,
    place: Place,
}

/// Which shard a database holds, of how many: what a write may change here, and where
/// the rest of it goes (an intent for another shard's row, a drop for every other shard).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Place {
    pub shard: ShardId,
    pub shards: Shards,
}

impl Place {
    /// Whether `id`'s rows are in this database (with one shard, every id's are).
    pub fn holds(self, id: EntityId) -> bool {
        !self.shards.split() || shard_of(id) == self.shard
    }
}

/// One write a batch runs: a client's, or an intent of another shard being applied.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    Write(WriteRequest),
    Apply(IntentDelivery),
}

impl Op {
    /// The operation's name, for events and metrics.
    pub fn op_name(&self) -> &'static str {
        match self {
            Op::Write(req) => req.op_name(),
            Op::Apply(_) => "apply_intent",
        }
    }
}

impl From<WriteRequest> for Op {
    fn from(req: WriteRequest) -> Op {
        Op::Write(req)
    }
}

/// A committed write: its outbox seq and result, and the cache keys it invalidates.
///
/// A write that changed nothing (deleting a missing entity, removing a missing association)
/// appends no outbox row: its `keys` are empty and its seq is the latest seq at the time,
/// which is still a correct `min_seq` for reading one's own (non-)write.
#[derive(Clone, Debug, PartialEq)]
pub struct CommittedWrite {
    pub outcome: WriteOutcome,
    pub keys: Vec<CacheKey>,
}

/// What applying one write request inside its transaction did.
pub(crate) enum Change {
    /// Something changed: the outbox gets a row with these keys.
    Applied { result: WriteResult, keys: Vec<CacheKey> },
    /// Nothing changed: no outbox row.
    Nothing { result: WriteResult },
}

impl GraphStore {
    /// Connects to `url` (`mysql://user[:pass]@host:port/database`), creating the database
    /// when it is missing and migrating it to [`SCHEMA_VERSION`].
    ///
    /// Fails with [`StoreError::Invalid`] when the URL names no valid database
    /// (`[A-Za-z0-9_]{1,64}`), and with [`StoreError::Mysql`] when the server cannot be
    /// reached (within [`CONNECT_TIMEOUT`]).
    pub async fn connect(url: &str) -> Result<GraphStore, StoreError> {
        GraphStore::connect_shard(url, 0, Shards::one()).await
    }

    /// [`GraphStore::connect`] for shard `shard`'s database, of `shards`: refused when the
    /// database holds another shard; new entities get ids of this shard.
    #[tracing::instrument(skip(url))]
    pub async fn connect_shard(url: &str, shard: ShardId, shards: Shards) -> Result<GraphStore, StoreError> {
        let (opts, consecutive_ids) = schema::prepare(url, shard).await?;
        let pool_opts = opts
            .pool_opts()
            .clone()
            .with_constraints(mysql_async::PoolConstraints::new(POOL_MIN, POOL_MAX).expect("min <= max"))
            .with_inactive_connection_ttl(POOL_IDLE_TTL)
            // A returned connection keeps its session (and its prepared statements): the
            // only session state is the isolation level set below, and mysql_async rolls
            // back a connection returned inside a transaction.
            .with_reset_connection(false);
        let opts = mysql_async::OptsBuilder::from_opts(opts)
            .pool_opts(pool_opts)
            // Reads rely on snapshots; do not inherit a server-wide READ COMMITTED.
            .setup(vec!["SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ"]);
        Ok(GraphStore { pool: Pool::new(opts), consecutive_ids, place: Place { shard, shards } })
    }

    /// Closes every connection of the pool.
    pub async fn disconnect(self) -> Result<(), StoreError> {
        self.pool.disconnect().await?;
        Ok(())
    }

    /// Applies one write at leader `term` in one transaction: fence check, change, outbox row.
    ///
    /// Refused with [`StoreError::Fenced`] (nothing changed) when the stored fence term is
    /// above `term`. The same as a batch of one ([`GraphStore::write_batch`]).
    #[tracing::instrument(skip(self, req), fields(op = req.op_name()))]
    pub async fn write(&self, term: u64, leader: &str, req: &WriteRequest) -> Result<CommittedWrite, StoreError> {
        let mut results = self.write_batch(term, leader, &[Op::Write(req.clone())]).await?;
        results.pop().unwrap_or_else(|| Err(StoreError::Corrupt("a batch of one gave no result".into())))
    }
}

impl GraphStore {
    /// A pooled connection, within [`ACQUIRE_TIMEOUT`].
    pub(crate) async fn conn(&self) -> Result<Conn, StoreError> {
        match tokio::time::timeout(ACQUIRE_TIMEOUT, self.pool.get_conn()).await {
            Ok(conn) => Ok(conn?),
            Err(_) => Err(StoreError::timed_out("taking a MySQL connection", ACQUIRE_TIMEOUT)),
        }
    }

    /// A transaction on a pooled connection, within [`ACQUIRE_TIMEOUT`].
    pub(crate) async fn begin(&self, opts: TxOpts) -> Result<Transaction<'static>, StoreError> {
        match tokio::time::timeout(ACQUIRE_TIMEOUT, self.pool.start_transaction(opts)).await {
            Ok(tx) => Ok(tx?),
            Err(_) => Err(StoreError::timed_out("starting a MySQL transaction", ACQUIRE_TIMEOUT)),
        }
    }
}

/// Applies `op` (the fence already checked); the caller commits or rolls back.
async fn apply(tx: &mut Transaction<'static>, place: Place, op: &Op) -> Result<Change, StoreError> {
    let req = match op {
        Op::Write(req) => req,
        Op::Apply(delivery) => return intents::apply(tx, place, delivery).await,
    };
    match req {
        WriteRequest::CreateEntity { etype, attributes } => {
            only(entities::create_many(tx, &[(etype.as_str(), attributes)], false).await?)
        }
        WriteRequest::UpdateEntity { id, patch } => only(entities::update_many(tx, &[(*id, patch)]).await?),
        WriteRequest::DeleteEntity { id } => entities::delete(tx, place, *id).await,
        WriteRequest::AddAssoc { from, atype, to, attributes } => {
            associations::add(tx, place, *from, atype, *to, attributes).await
        }
        WriteRequest::RemoveAssoc { from, atype, to } => associations::remove(tx, place, *from, atype, *to).await,
    }
}

/// The one change of a write given alone to a grouped step.
fn only(mut changes: Vec<Change>) -> Result<Change, StoreError> {
    changes.pop().ok_or_else(|| StoreError::Corrupt("a write gave no change".into()))
}

/// Rolls back, logging (not returning) a failure: the connection is discarded or reset by
/// the pool anyway, and the caller has a more useful error or result to return.
async fn rollback_quietly(tx: Transaction<'static>) {
    if let Err(e) = tx.rollback().await {
        tracing::warn!(error = %e, "rollback failed");
    }
}

/// `?,?,?` for `n` bound values (`n` ≥ 1).
pub(crate) fn placeholders(n: usize) -> String {
    let mut s = String::with_capacity(n * 2);
    for i in 0..n {
        if i > 0 {
            s.push(',');
        }
        s.push('?');
    }
    s
}

/// Rejects a type name that can never be stored.
pub(crate) fn check_type(kind: &str, name: &str) -> Result<(), StoreError> {
    if instaface_bus::graph::valid_type_name(name) {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "invalid {kind} type {name:?}: 1-32 characters of [a-z0-9_], starting with a letter"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_count() {
        assert_eq!(placeholders(1), "?");
        assert_eq!(placeholders(3), "?,?,?");
    }
}
