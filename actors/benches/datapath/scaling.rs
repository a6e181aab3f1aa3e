//! (e) Write scaling: acknowledged entity creates per second at growing concurrency,
//! `INVALIDATION=lease` and `async`, beside raw MariaDB single-row autocommit INSERTs at
//! the same concurrency, measured alternately in the same run (the baseline: what the
//! database commits with nothing of ours around it).

use std::time::Duration;

use instaface_testkit::{Cluster, ClusterOpts};
use mysql_async::prelude::Queryable;
use serde_json::json;

use crate::common::{attrs, fm, run_load, summary, wait_settled, Load};

/// One row of the table: a load at one concurrency.
struct Row {
    what: String,
    conc: usize,
    load: Load,
}

/// Raw MariaDB: single-row autocommit INSERTs into a table of the cluster's database, one
/// pooled connection per worker.
async fn raw_inserts(c: &Cluster, conc: usize, secs: Duration) -> Load {
    let url = format!("mysql://root@127.0.0.1:3306/{}", c.database);
    let opts = mysql_async::Opts::from_url(&url).expect("mysql url");
    let constraints = mysql_async::PoolConstraints::new(conc, conc).expect("pool size");
    let pool = mysql_async::Pool::new(
        mysql_async::OptsBuilder::from_opts(opts)
            .pool_opts(mysql_async::PoolOpts::default().with_constraints(constraints)),
    );
    let mut conn = pool.get_conn().await.expect("mysql");
    conn.query_drop(
        "CREATE TABLE IF NOT EXISTS bench_raw_inserts \
         (id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY, attributes TEXT NOT NULL) ENGINE=InnoDB",
    )
    .await
    .expect("create the raw table");
    drop(conn);
    let p = pool.clone();
    let load = run_load(&format!("raw inserts c={conc}"), conc, secs, move || {
        let pool = p.clone();
        async move {
            let mut conn = pool.get_conn().await.map_err(|e| e.to_string())?;
            let value = json!({"name": format!("raw {}", rand::random::<u32>())}).to_string();
            conn.exec_drop("INSERT INTO bench_raw_inserts (attributes) VALUES (?)", (value,))
                .await
                .map(|_| "insert")
                .map_err(|e| e.to_string())
        }
    })
    .await;
    let _ = pool.disconnect().await;
    load
}

/// Acknowledged creates through the shared client.
async fn creates(c: &Cluster, conc: usize, secs: Duration, mode: &str) -> Load {
    let client = c.client.clone();
    run_load(&format!("{mode} creates c={conc}"), conc, secs, move || {
        let client = client.clone();
        async move {
            client
                .create_entity("user", attrs(json!({"name": format!("w {}", rand::random::<u32>())})))
                .await
                .map(|_| "create")
                .map_err(|e| e.to_string())
        }
    })
    .await
}

/// (e) for both modes, each on a fresh 3-node cluster; returns the report's lines.
pub async fn run_scaling(secs: Duration, levels: &[usize]) -> Vec<String> {
    let mut rows: Vec<Row> = Vec::new();
    for mode in ["lease", "async"] {
        eprintln!("(e) write scaling: starting a 3-node cluster with INVALIDATION={mode}");
        let c = Cluster::start(
            &format!("bench-scale-{mode}"),
            ClusterOpts {
                nodes: 3,
                env: vec![("INVALIDATION".into(), mode.into())],
                fast: false,
                ..ClusterOpts::default()
            },
        )
        .await;
        if wait_settled(&c, &c.ids, Duration::from_secs(30)).await.is_none() {
            eprintln!("  cluster never settled; logs in {}", c.log_dir().display());
            continue;
        }
        // Warm the connection pools and the leader's path.
        let _ = creates(&c, 4, Duration::from_secs(1), mode).await;
        for &conc in levels {
            if mode == "lease" {
                let raw = raw_inserts(&c, conc, secs).await;
                eprintln!("  raw MariaDB c={conc}: {:.0}/s", raw.rate());
                rows.push(Row { what: "raw MariaDB INSERT".into(), conc, load: raw });
            }
            let load = creates(&c, conc, secs, mode).await;
            eprintln!("  {mode} c={conc}: {:.0} writes/s, p99 {} ms", load.rate(), fm(summary(&load.all()).p99));
            rows.push(Row { what: format!("instaface, {mode}"), conc, load });
        }
    }
    report(&rows, levels)
}

fn report(rows: &[Row], levels: &[usize]) -> Vec<String> {
    let mut out = vec![
        "### (e) Write scaling".to_string(),
        String::new(),
        "Entity creates acknowledged through the shared client, and raw MariaDB single-row \
         autocommit INSERTs, each for the same time at each concurrency, alternately."
            .to_string(),
        String::new(),
        "| writer | concurrency | writes/s | errors | p50 ms | p99 ms | × raw MariaDB |".to_string(),
        "| --- | --- | --- | --- | --- | --- | --- |".to_string(),
    ];
    for r in rows {
        let raw = rows.iter().find(|x| x.conc == r.conc && x.what.starts_with("raw")).map(|x| x.load.rate());
        let s = summary(&r.load.all());
        out.push(format!(
            "| {} | {} | {:.0} | {} | {} | {} | {} |",
            r.what,
            r.conc,
            r.load.rate(),
            r.load.error_count(),
            fm(s.p50),
            fm(s.p99),
            raw.map(|b| format!("{:.2}", r.load.rate() / b)).unwrap_or_else(|| "-".into())
        ));
    }
    let p50 = |mode: &str, conc: usize| {
        rows.iter().find(|r| r.conc == conc && r.what.ends_with(mode)).map(|r| summary(&r.load.all()).p50)
    };
    if let Some(&first) = levels.first() {
        if let (Some(l), Some(a)) = (p50("lease", first), p50("async", first)) {
            out.push(String::new());
            out.push(format!("At concurrency {first}, p50 lease / async = {:.2}.", l / a));
        }
    }
    for r in rows {
        for (k, v) in &r.load.errors {
            out.push(format!("- {} c={}: {v} × {k}", r.what, r.conc));
        }
    }
    out
}
