//! The schema: database creation and the ordered list of migrations.
//!
//! `schema_version` holds one row per applied migration; the database is at the highest
//! version listed. [`prepare`] connects without a database, creates it when missing, takes
//! a per-database advisory lock (two nodes starting at once must not migrate twice), and
//! applies the migrations above the stored version, each in its own transaction. MySQL
//! commits DDL implicitly, so the transaction really guards the version row; the statements
//! themselves are idempotent (`IF NOT EXISTS`, `INSERT IGNORE`), and the version row is
//! written last, so a migration cut short is simply applied again.

use std::time::Duration;

use mysql_async::prelude::*;
use mysql_async::{Conn, Opts, OptsBuilder, TxOpts};

use instaface_bus::shards::{first_id, shard_of, ShardId};

use super::StoreError;

/// The schema version this binary writes and reads.
pub const SCHEMA_VERSION: u32 = MIGRATIONS[MIGRATIONS.len() - 1].version;

/// How long the first connection may take before `connect` gives up.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long `connect` waits for another process's migration to finish, in seconds.
const MIGRATION_LOCK_SECS: u32 = 30;

struct Migration {
    version: u32,
    description: &'static str,
    statements: &'static [&'static str],
}

/// Every migration, in order. Never edit a released one; append a new one.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "entities, associations, outbox, fence",
        statements: &[
            "CREATE TABLE IF NOT EXISTS entities (
            id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
            etype VARCHAR(32) COLLATE utf8mb4_bin NOT NULL,
            attributes LONGTEXT NOT NULL,
            created BIGINT UNSIGNED NOT NULL,
            updated BIGINT UNSIGNED NOT NULL,
            version BIGINT UNSIGNED NOT NULL,
            PRIMARY KEY (id),
            KEY by_type (etype)
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
            "CREATE TABLE IF NOT EXISTS associations (
            from_id BIGINT UNSIGNED NOT NULL,
            atype VARCHAR(32) COLLATE utf8mb4_bin NOT NULL,
            to_id BIGINT UNSIGNED NOT NULL,
            attributes LONGTEXT NOT NULL,
            created BIGINT UNSIGNED NOT NULL,
            PRIMARY KEY (from_id, atype, to_id),
            KEY newest_first (from_id, atype, created, to_id),
            KEY by_to (to_id)
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
            // MEDIUMTEXT: deleting a hub entity can name tens of thousands of lists.
            "CREATE TABLE IF NOT EXISTS outbox (
            seq BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
            term BIGINT UNSIGNED NOT NULL,
            keys_json MEDIUMTEXT NOT NULL,
            created BIGINT UNSIGNED NOT NULL,
            PRIMARY KEY (seq)
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
            "CREATE TABLE IF NOT EXISTS fence (
            id TINYINT UNSIGNED NOT NULL,
            term BIGINT UNSIGNED NOT NULL,
            leader VARCHAR(64) NOT NULL DEFAULT '',
            PRIMARY KEY (id)
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
            "INSERT IGNORE INTO fence (id, term) VALUES (1, 0)",
        ],
    },
    Migration {
        version: 2,
        description: "the shard a database holds",
        statements: &["CREATE TABLE IF NOT EXISTS shard (
            id TINYINT UNSIGNED NOT NULL,
            shard INT UNSIGNED NOT NULL,
            PRIMARY KEY (id)
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"],
    },
    Migration {
        version: 3,
        description: "cross-shard intents: sent, applied, row versions, dropped entities",
        statements: &[
            // Sent: an association row for another shard (or a drop), committed with the
            // write; `delivered` once the other shard answered (`outcome`: applied or
            // refused). Delivered rows are kept for a while (a record of what crossed).
            "CREATE TABLE IF NOT EXISTS intents (
            id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
            to_shard INT UNSIGNED NOT NULL,
            op MEDIUMTEXT NOT NULL,
            created BIGINT UNSIGNED NOT NULL,
            delivered BIGINT UNSIGNED NULL,
            outcome VARCHAR(16) NULL,
            PRIMARY KEY (id),
            KEY undelivered_to (to_shard, delivered, id),
            KEY by_delivery (delivered, id)
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
            // Received: each intent applied here, recorded in the transaction that applied
            // it, so a redelivery changes nothing (kept for a while; after that the row
            // versions still make a late redelivery change nothing).
            "CREATE TABLE IF NOT EXISTS applied_intents (
            from_shard INT UNSIGNED NOT NULL,
            intent_id BIGINT UNSIGNED NOT NULL,
            applied BIGINT UNSIGNED NOT NULL,
            PRIMARY KEY (from_shard, intent_id),
            KEY by_age (applied)
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
            // The latest intent applied to each row written by intents: an older one that
            // arrives late changes nothing.
            "CREATE TABLE IF NOT EXISTS pair_versions (
            from_id BIGINT UNSIGNED NOT NULL,
            atype VARCHAR(32) COLLATE utf8mb4_bin NOT NULL,
            to_id BIGINT UNSIGNED NOT NULL,
            intent_id BIGINT UNSIGNED NOT NULL,
            PRIMARY KEY (from_id, atype, to_id)
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
            // Entities of other shards that were deleted (ids are never reused).
            "CREATE TABLE IF NOT EXISTS dropped_entities (
            id BIGINT UNSIGNED NOT NULL,
            dropped BIGINT UNSIGNED NOT NULL,
            PRIMARY KEY (id)
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
        ],
    },
];

/// Parses `url`, creates its database when missing, migrates it and claims it for
/// `shard` ([`claim_shard`]). Returns the options for the pool, and whether the server
/// gives a multi-row INSERT consecutive auto-increment values ([`consecutive_ids`]).
pub(super) async fn prepare(url: &str, shard: ShardId) -> Result<(Opts, bool), StoreError> {
    let opts = Opts::from_url(url)?;
    let db = opts
        .db_name()
        .ok_or_else(|| StoreError::Invalid(format!("the MySQL URL names no database: {url}")))?
        .to_string();
    check_db_name(&db)?;

    let server_only = OptsBuilder::from_opts(opts.clone()).db_name(None::<String>);
    let mut conn = match tokio::time::timeout(CONNECT_TIMEOUT, Conn::new(server_only)).await {
        Ok(conn) => conn?,
        Err(_) => {
            let what = format!("connecting to MySQL at {}:{}", opts.ip_or_hostname(), opts.tcp_port());
            return Err(StoreError::timed_out(&what, CONNECT_TIMEOUT));
        }
    };
    let result = match create_and_migrate(&mut conn, &db).await {
        Ok(()) => match claim_shard(&mut conn, &db, shard).await {
            Ok(()) => consecutive_ids(&mut conn).await,
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    // Closing also releases the advisory lock; a failure to close cleanly changes nothing.
    if let Err(e) = conn.disconnect().await {
        tracing::debug!(error = %e, "closing the migration connection");
    }
    result.map(|consecutive| (opts, consecutive))
}

/// Claims the database for `shard`, once, or checks the claim: a database holds one
/// shard's rows for good (one from before shards is shard 0's), and a node refuses to run
/// shard `k` on a database holding another — a `SHARD_MYSQL_URLS` in the wrong order would
/// otherwise mix two shards' ids.
///
/// The first claim of shard `k > 0` first makes the entities' auto-increment start at the
/// shard's first id ([`first_id`]), so every id it hands out names its shard, and records
/// the claim only after that succeeded; a claimed database is never moved back, so an id
/// is never handed out twice (InnoDB would let the counter drop to just above the highest
/// row left). A database with rows of another shard is refused before anything is
/// recorded.
async fn claim_shard(conn: &mut Conn, db: &str, shard: ShardId) -> Result<(), StoreError> {
    let held: Option<u32> = conn.query_first("SELECT shard FROM shard WHERE id = 1").await?;
    match held {
        Some(h) if h == shard => return Ok(()),
        Some(h) => {
            return Err(StoreError::Invalid(format!(
                "database {db} holds shard {h}, not shard {shard}: check the order of SHARD_MYSQL_URLS"
            )))
        }
        None => {}
    }
    let highest: u64 = conn.query_first("SELECT COALESCE(MAX(id), 0) FROM entities").await?.unwrap_or(0);
    if highest != 0 && shard_of(highest) != shard {
        return Err(StoreError::Invalid(format!(
            "database {db} holds entity {highest} of shard {}, not shard {shard}: check the order of SHARD_MYSQL_URLS",
            shard_of(highest)
        )));
    }
    let first = first_id(shard);
    if highest < first && first > 1 {
        // A table option takes no bound parameter; `first` is a number computed from the
        // shard, never text from outside. Two nodes doing this at once set the same value.
        conn.query_drop(format!("ALTER TABLE entities AUTO_INCREMENT = {first}")).await?;
    }
    conn.exec_drop("INSERT IGNORE INTO shard (id, shard) VALUES (1, ?)", (shard,)).await?;
    let held: Option<u32> = conn.query_first("SELECT shard FROM shard WHERE id = 1").await?;
    if held != Some(shard) {
        return Err(StoreError::Invalid(format!(
            "database {db} was claimed for shard {held:?} meanwhile, not {shard}"
        )));
    }
    Ok(())
}

/// Whether a multi-row INSERT's auto-increment values are consecutive from the first one
/// the server reports: InnoDB's "traditional" (0) or "consecutive" (1) lock mode, which
/// guarantees it for an INSERT whose row count is known, and an increment of 1. (Under the
/// "interleaved" mode 2 a concurrent insert could take values in between; the store then
/// inserts row by row.)
async fn consecutive_ids(conn: &mut Conn) -> Result<bool, StoreError> {
    let vars: Option<(i64, i64)> =
        conn.query_first("SELECT @@innodb_autoinc_lock_mode, @@auto_increment_increment").await?;
    let consecutive = matches!(vars, Some((0 | 1, 1)));
    if !consecutive {
        tracing::info!(?vars, "auto-increment values may not be consecutive: batches insert row by row");
    }
    Ok(consecutive)
}

async fn create_and_migrate(conn: &mut Conn, db: &str) -> Result<(), StoreError> {
    // A database name cannot be a bound parameter: it is validated and backquoted instead.
    conn.query_drop(format!("CREATE DATABASE IF NOT EXISTS `{db}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"))
        .await?;
    conn.query_drop(format!("USE `{db}`")).await?;
    conn.query_drop(
        "CREATE TABLE IF NOT EXISTS schema_version (
            version INT UNSIGNED NOT NULL,
            description VARCHAR(200) NOT NULL,
            applied BIGINT UNSIGNED NOT NULL,
            PRIMARY KEY (version)
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
    )
    .await?;

    let locked: Option<Option<i64>> =
        conn.exec_first("SELECT GET_LOCK(CONCAT('instaface.migrate.', DATABASE()), ?)", (MIGRATION_LOCK_SECS,)).await?;
    if locked.flatten() != Some(1) {
        return Err(StoreError::Conflict(format!(
            "another process has been migrating database {db} for {MIGRATION_LOCK_SECS} s"
        )));
    }
    let result = migrate(conn, db).await;
    let _: Option<Option<i64>> =
        conn.query_first("SELECT RELEASE_LOCK(CONCAT('instaface.migrate.', DATABASE()))").await?;
    result
}

async fn migrate(conn: &mut Conn, db: &str) -> Result<(), StoreError> {
    let current: u32 = conn.query_first("SELECT COALESCE(MAX(version), 0) FROM schema_version").await?.unwrap_or(0);
    if current > SCHEMA_VERSION {
        return Err(StoreError::Conflict(format!(
            "database {db} is at schema version {current}, newer than this binary's {SCHEMA_VERSION}"
        )));
    }
    for m in MIGRATIONS.iter().filter(|m| m.version > current) {
        tracing::info!(db, version = m.version, description = m.description, "migrating");
        let mut tx = conn.start_transaction(TxOpts::default()).await?;
        for statement in m.statements {
            tx.query_drop(*statement).await?;
        }
        tx.exec_drop(
            "INSERT INTO schema_version (version, description, applied) VALUES (?, ?, ?)",
            (m.version, m.description, instaface_bus::now_ms()),
        )
        .await?;
        tx.commit().await?;
    }
    Ok(())
}

/// A database name we are willing to splice (backquoted) into SQL: `[A-Za-z0-9_]{1,64}`.
fn check_db_name(db: &str) -> Result<(), StoreError> {
    let ok = !db.is_empty() && db.len() <= 64 && db.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_');
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!("database name {db:?} is not 1-64 characters of [A-Za-z0-9_]")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_are_checked() {
        for ok in ["instaface", "instaface_t_0a1b", "A_9"] {
            assert!(check_db_name(ok).is_ok(), "{ok}");
        }
        let long = "x".repeat(65);
        for bad in ["", "a-b", "a`b", "a b", "db;drop", long.as_str()] {
            assert!(check_db_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn migrations_are_in_order() {
        assert!(MIGRATIONS.windows(2).all(|w| w[0].version < w[1].version));
        assert_eq!(MIGRATIONS[0].version, 1);
    }
}
