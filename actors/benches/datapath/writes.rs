//! (c) Write latency and throughput with `INVALIDATION=lease` and `async`, healthy and with
//! one follower unplugged; each run's writes feed the (d) figures.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use instaface_bus::graph::EntityId;
use instaface_testkit::{Cluster, ClusterOpts};
use serde_json::json;

use crate::common::{attrs, fm, run_load, summary, us, wait_settled, Load};
use crate::invalidation::{invalidation_figures, start_tap, InvFigures, Tap};

pub struct WriteRun {
    pub label: String,
    /// Latency of the first write after the unplug (unplugged runs only), µs.
    pub first: Option<f64>,
    /// Sequential write latencies, µs.
    pub lat: Vec<f64>,
    pub errors: usize,
    /// Throughput run at concurrency (healthy only).
    pub tput: Option<Load>,
    /// Per write: (seq, request sent, answer received).
    pub writes: Vec<(u64, Instant, Instant)>,
    /// Followers whose acks count (plugged, not the leader).
    pub followers: Vec<String>,
    /// All followers, plugged or not.
    pub all_followers: usize,
}

/// Sequential entity updates through the shared client.
async fn sequential_writes(
    c: &Cluster,
    ids: &[EntityId],
    n: usize,
    progress: &str,
) -> (Vec<f64>, Vec<(u64, Instant, Instant)>, usize) {
    let mut lat = Vec::with_capacity(n);
    let mut writes = Vec::with_capacity(n);
    let mut errors = 0;
    for i in 0..n {
        let id = ids[i % ids.len()];
        let s = Instant::now();
        match c.client.update_entity(id, json!({"n": i})).await {
            Ok((_, seq)) => {
                let e = Instant::now();
                lat.push(us(e - s));
                writes.push((seq, s, e));
            }
            Err(e) => {
                errors += 1;
                if errors <= 3 {
                    eprintln!("    write error: {e}");
                }
            }
        }
        if (i + 1) % 100 == 0 {
            eprintln!("    {progress}: {}/{n} writes", i + 1);
        }
    }
    (lat, writes, errors)
}

async fn write_runs(
    c: &Cluster,
    mode: &str,
    n_writes: usize,
    secs: Duration,
    wconc: usize,
) -> (Vec<WriteRun>, Arc<Mutex<Tap>>) {
    let tap = start_tap(c).await;
    let (leader, _) = wait_settled(c, &c.ids, Duration::from_secs(30)).await.expect("cluster settled");
    let followers: Vec<String> = c.ids.iter().filter(|i| **i != leader).cloned().collect();
    let mut ids = Vec::new();
    for i in 0..32 {
        if let Ok((e, _)) = c.client.create_entity("user", attrs(json!({"name": format!("writer {i}")}))).await {
            ids.push(e.id);
        }
    }
    let mut runs = Vec::new();

    // Healthy: sequential, then a throughput run.
    eprintln!("  ({mode}) healthy: {n_writes} sequential updates");
    let (lat, writes, errors) = sequential_writes(c, &ids, n_writes, &format!("{mode} healthy")).await;
    let s = summary(&lat);
    eprintln!("    p50 {} ms, p99 {} ms", fm(s.p50), fm(s.p99));
    eprintln!("  ({mode}) healthy: throughput at concurrency {wconc} for {secs:?}");
    let client = c.client.clone();
    let ids2 = Arc::new(ids.clone());
    let tput = run_load(&format!("{mode} write throughput"), wconc, secs, move || {
        let client = client.clone();
        let ids = ids2.clone();
        async move {
            let id = ids[rand::random::<u64>() as usize % ids.len()];
            client
                .update_entity(id, json!({"t": rand::random::<u32>()}))
                .await
                .map(|_| "update")
                .map_err(|e| e.to_string())
        }
    })
    .await;
    eprintln!(
        "    {:.0} writes/s, p50 {} ms, p99 {} ms",
        tput.rate(),
        fm(summary(&tput.all()).p50),
        fm(summary(&tput.all()).p99)
    );
    runs.push(WriteRun {
        label: format!("{mode}, healthy"),
        first: None,
        lat,
        errors,
        tput: Some(tput),
        writes,
        followers: followers.clone(),
        all_followers: followers.len(),
    });

    // One follower unplugged.
    let cut = followers[followers.len() - 1].clone();
    eprintln!("  ({mode}) unplugging follower {cut}");
    c.unplug(&cut, true).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !c.status(&cut).await.is_some_and(|s| s.unplugged) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let s = Instant::now();
    let first = match c.client.update_entity(ids[0], json!({"first": true})).await {
        Ok(_) => Some(us(s.elapsed())),
        Err(e) => {
            eprintln!("    first write after unplug failed: {e}");
            None
        }
    };
    eprintln!("    first write after the unplug: {} ms", fm(first.unwrap_or(f64::NAN)));
    let (lat, writes, errors) = sequential_writes(c, &ids, n_writes, &format!("{mode} unplugged")).await;
    let s = summary(&lat);
    eprintln!("    p50 {} ms, p99 {} ms", fm(s.p50), fm(s.p99));
    runs.push(WriteRun {
        label: format!("{mode}, 1 follower unplugged"),
        first,
        lat,
        errors,
        tput: None,
        writes,
        followers: followers.iter().filter(|f| **f != cut).cloned().collect(),
        all_followers: followers.len(),
    });
    c.unplug(&cut, false).await;
    if wait_settled(c, &c.ids, Duration::from_secs(30)).await.is_none() {
        eprintln!("    {cut} did not rejoin within 30 s");
    }
    (runs, tap)
}

/// (c) and (d) on cluster A (lease), then on a fresh async cluster.
pub async fn run_writes(c: Cluster, n_writes: usize, secs: Duration, wconc: usize) -> Vec<String> {
    eprintln!("(c)/(d) writes, INVALIDATION=lease");
    let (mut runs, tap_a) = write_runs(&c, "lease", n_writes, secs, wconc).await;
    let mut inv: Vec<InvFigures> = runs.iter().map(|r| invalidation_figures(r, &tap_a.lock().unwrap())).collect();
    drop(c);
    eprintln!("starting a 3-node cluster with INVALIDATION=async");
    let c2 = Cluster::start(
        "bench-dp-async",
        ClusterOpts {
            nodes: 3,
            env: vec![("INVALIDATION".into(), "async".into())],
            fast: false,
            ..ClusterOpts::default()
        },
    )
    .await;
    if wait_settled(&c2, &c2.ids, Duration::from_secs(30)).await.is_none() {
        eprintln!("async cluster never settled; logs in {}", c2.log_dir().display());
    } else {
        let (runs_b, tap_b) = write_runs(&c2, "async", n_writes, secs, wconc).await;
        inv.extend(runs_b.iter().map(|r| invalidation_figures(r, &tap_b.lock().unwrap())));
        runs.extend(runs_b);
    }
    let mut r = Vec::new();
    r.push("## (c) Write latency (entity update through the shared client, one at a time)".to_string());
    r.push(String::new());
    r.push(format!("{n_writes} sequential updates per row (32 entities in turn); the unplugged rows start right after the unplug took effect, and their first write is shown apart and left out of the distribution."));
    r.push(String::new());
    r.push("| mode, cluster state | n | errors | first write after unplug ms | min ms | p50 ms | mean ms | p99 ms | max ms |".into());
    r.push("| --- | --- | --- | --- | --- | --- | --- | --- | --- |".into());
    for run in &runs {
        let s = summary(&run.lat);
        r.push(format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            run.label,
            s.n,
            run.errors,
            run.first.map(fm).unwrap_or_else(|| "-".into()),
            fm(s.min),
            fm(s.p50),
            fm(s.mean),
            fm(s.p99),
            fm(s.max)
        ));
    }
    r.push(String::new());
    r.push("Distribution of the sequential writes above, in 1 ms buckets (count of writes taking 0–1, 1–2, … 11–12, ≥ 12 ms):".into());
    r.push(String::new());
    for run in &runs {
        let mut buckets = [0usize; 13];
        for l in &run.lat {
            buckets[((*l / 1000.0) as usize).min(12)] += 1;
        }
        r.push(format!("- {}: {}", run.label, buckets.iter().map(|b| b.to_string()).collect::<Vec<_>>().join(" ")));
    }
    r.push(String::new());
    r.push(format!("Write throughput, healthy, {wconc} concurrent writers for {secs:?}:"));
    r.push(String::new());
    r.push("| mode | writes/s | errors | p50 ms | p99 ms |".into());
    r.push("| --- | --- | --- | --- | --- |".into());
    for run in &runs {
        if let Some(t) = &run.tput {
            let s = summary(&t.all());
            r.push(format!(
                "| {} | {:.0} | {} | {} | {} |",
                run.label,
                t.rate(),
                t.error_count(),
                fm(s.p50),
                fm(s.p99)
            ));
        }
    }
    r.push(String::new());
    r.extend(crate::invalidation::report(&inv));
    eprintln!("{}", r.join("\n"));
    r
}
