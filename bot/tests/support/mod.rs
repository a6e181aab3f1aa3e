//! Running the bot binary as a separate process and reading its JSON summary, and the
//! MySQL counts a summary is reconciled against.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use mysql_async::prelude::*;
use serde_json::Value;
use tokio::process::{Child, Command};

/// Starts `instaface-bot` on `prefix` with `args`; stdout is piped, stderr goes to `log`.
pub fn spawn_bot(prefix: &str, args: &[&str], log: &Path) -> Child {
    let log = std::fs::File::create(log).expect("bot log");
    Command::new(env!("CARGO_BIN_EXE_instaface-bot"))
        .args(args)
        .env("INSTAFACE_PREFIX", prefix)
        .env("NATS_URL", "nats://127.0.0.1:4222")
        .env("REDIS_URL", "redis://127.0.0.1:6379")
        .env("RUST_LOG", "instaface_bot=debug,warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .expect("spawn instaface-bot")
}

/// Waits (up to `timeout`) for the bot to exit successfully; returns its JSON summary.
pub async fn summary_of(child: Child, timeout: Duration, log: &Path) -> Value {
    let out = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(out) => out.expect("bot output"),
        Err(_) => panic!("the bot did not end within {timeout:?}; its log is {}", log.display()),
    };
    assert!(out.status.success(), "bot exited with {}; log {}", out.status, log.display());
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("summary is not JSON ({e}): {stdout}"))
}

pub fn u(v: &Value) -> i64 {
    v.as_i64().unwrap_or_else(|| panic!("not an integer: {v}"))
}

/// Rows per table and type: `entity:<etype>` and `assoc:<atype>`.
pub async fn mysql_counts(conn: &mut mysql_async::Conn) -> BTreeMap<String, i64> {
    let mut counts = BTreeMap::new();
    let entities: Vec<(String, i64)> =
        conn.query("SELECT etype, COUNT(*) FROM entities GROUP BY etype").await.expect("count entities");
    for (t, n) in entities {
        counts.insert(format!("entity:{t}"), n);
    }
    let assocs: Vec<(String, i64)> =
        conn.query("SELECT atype, COUNT(*) FROM associations GROUP BY atype").await.expect("count associations");
    for (t, n) in assocs {
        counts.insert(format!("assoc:{t}"), n);
    }
    counts
}

/// The rows a summary allows, per `entity:<etype>` and `assoc:<atype>`, as (least, most):
/// confirmed changes exactly, each unknown one either way. Association pairs are a row of
/// the type and a row of its inverse (two rows of `friend`).
pub fn expected_bounds(summary: &Value) -> BTreeMap<String, (i64, i64)> {
    let mut bounds: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for (etype, t) in summary["entities"].as_object().expect("entities") {
        let least = u(&t["created"]) - u(&t["deleted"]) - u(&t["deleted_unknown"]);
        let most = u(&t["created"]) + u(&t["created_unknown"]) - u(&t["deleted"]);
        bounds.insert(format!("entity:{etype}"), (least.max(0), most));
    }
    for (atype, t) in summary["associations"].as_object().expect("associations") {
        let least = (u(&t["added"]) - u(&t["removed"]) - u(&t["removed_unknown"])).max(0);
        let most = u(&t["added"]) + u(&t["added_unknown"]) - u(&t["removed"]);
        let inverse = t["inverse"].as_str().expect("inverse");
        for row_type in [atype.as_str(), inverse] {
            let e = bounds.entry(format!("assoc:{row_type}")).or_default();
            e.0 += least;
            e.1 += most;
        }
    }
    bounds
}

/// Asserts every count in MySQL lies within the summary's bounds (absent rows count 0).
pub fn assert_within(bounds: &BTreeMap<String, (i64, i64)>, mysql: &BTreeMap<String, i64>, summary: &Value) {
    for key in mysql.keys() {
        assert!(bounds.contains_key(key), "MySQL has {key} rows the bot never made: {mysql:?}");
    }
    for (key, (least, most)) in bounds {
        let n = mysql.get(key).copied().unwrap_or(0);
        assert!(
            (*least..=*most).contains(&n),
            "{key}: MySQL has {n}, the summary allows {least}..={most}\nMySQL: {mysql:?}\nsummary: {summary}"
        );
    }
}

/// Asserts that per kind and in total, succeeded + failed + outcome_unknown is what ran.
pub fn assert_accounted(summary: &Value) {
    let mut total = 0;
    for (kind, k) in summary["kinds"].as_object().expect("kinds") {
        let ran = u(&k["succeeded"]) + u(&k["failed"]) + u(&k["outcome_unknown"]);
        assert_eq!(u(&k["latency_ms"]["count"]), ran, "{kind}: every operation run has a latency");
        let errors: i64 = k["errors"].as_object().expect("errors").values().map(u).sum();
        assert_eq!(errors, u(&k["failed"]) + u(&k["outcome_unknown"]), "{kind}: every failure has a reason");
        total += ran;
    }
    assert_eq!(total, u(&summary["ops"]));
    let t = &summary["totals"];
    assert_eq!(u(&t["succeeded"]) + u(&t["failed"]) + u(&t["outcome_unknown"]), u(&summary["ops"]));
}

/// The rows in `database`'s `entities` table; 0 while the database or table is missing.
pub async fn entity_rows(database: &str) -> i64 {
    let Ok(mut conn) = mysql_async::Conn::from_url(format!("mysql://root@127.0.0.1:3306/{database}")).await else {
        return 0;
    };
    let n: Option<i64> = conn.query_first("SELECT COUNT(*) FROM entities").await.unwrap_or(None);
    let _ = conn.disconnect().await;
    n.unwrap_or(0)
}
