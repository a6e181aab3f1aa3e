//! Data-path benchmark (issue 4) with real `instaface-node` processes on real NATS,
//! MariaDB and Redis. Prints figures; asserts nothing about speed.
//!
//! - (a) Follower cache hits: entity reads addressed to one follower (`P.node.<id>.read`)
//!   after warming every key, at concurrency 1 and `BENCH_CONCURRENCY`, beside a trivial
//!   NATS request-reply echo (a responder task in this process, on its own NATS
//!   connection, on `P.bench.echo`) measured in the same run: the floor any bus design pays.
//! - (b) A read-heavy mix like TAO's (99.8 % reads: assoc range 41 %, entity get 29 %,
//!   assoc get 16 %, assoc count 12 %, renormalised over these 98 %; 0.2 % writes) over a
//!   graph of users and statuses with `friend`, `posted` and `likes` edges, through the
//!   `readers` queue group as the shared client reads, starting from cold caches; hit rate
//!   and fills from every node's status counters.
//! - (c) Write latency (entity updates through the shared client, one at a time) with
//!   `INVALIDATION=lease` and `INVALIDATION=async`, healthy and with one follower unplugged
//!   (the first write after the unplug is reported apart), and write throughput at
//!   concurrency `BENCH_WRITE_CONCURRENCY` while healthy.
//! - (e) Write scaling: acknowledged creates per second at each concurrency of
//!   `BENCH_WRITE_LEVELS`, lease and async, beside raw MariaDB single-row autocommit
//!   INSERTs at the same concurrency in the same run.
//! - (d) Invalidation latency, measured from outside: this process subscribes to
//!   `P.invalidate`, `P.events` (`write` events: `ts` is the leader's wall clock when it
//!   publishes the event, right after committing and broadcasting; `invalidation` events)
//!   and `P.node.*.ack` (every follower ack, with its `applied_seq`), stamping each message
//!   on arrival. For each write (seq) of (c): the broadcast's arrival → the arrival of the
//!   last (plugged) follower's first ack with `applied_seq >= seq`; the `write` event's `ts`
//!   → that same ack's arrival (wall clock, ms-resolution `ts`); and that ack → the write's
//!   answer at the client.
//!
//! ```text
//! cargo build --release -p instaface-actors --bins
//! INSTAFACE_BIN_DIR=$PWD/target/release cargo bench -p instaface-actors --bench datapath
//! ```
//!
//! Environment: `BENCH_SECONDS` (per throughput run, default 5), `BENCH_MIX_SECONDS` (20),
//! `BENCH_CONCURRENCY` (16), `BENCH_WRITE_CONCURRENCY` (8), `BENCH_USERS` (200),
//! `BENCH_STATUSES` (400), `BENCH_WRITES` (200 per write configuration), `BENCH_ZIPF`
//! (key skew exponent of the mix, default 1.0; 0 = uniform), `BENCH_WRITE_LEVELS`
//! (`1,8,32`), `BENCH_PARTS` (`a,b,c,e` — (d) is measured with (c)).
//!
//! The parts live one to a module: [`reads`] (a), [`mix`] (b), [`writes`] (c), [`scaling`] (e) and
//! [`invalidation`] (d: the tap and its figures); [`graph`] builds the graph (a) and (b) read,
//! and [`common`] holds the load runner, the statistics and the cluster helpers they share.
//! This file reads the environment, starts the cluster and prints the report.

mod common;
mod graph;
mod invalidation;
mod mix;
mod reads;
mod scaling;
mod writes;

use std::sync::Arc;
use std::time::{Duration, Instant};

use instaface_bus::graph::EntityId;
use instaface_testkit::{Cluster, ClusterOpts};

use common::{env_f64, env_usize, shuffle, wait_settled};
use graph::build_graph;
use mix::run_mix;
use reads::run_hits;
use scaling::run_scaling;
use writes::run_writes;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let secs = Duration::from_secs(env_usize("BENCH_SECONDS", 5) as u64);
    let mix_secs = Duration::from_secs(env_usize("BENCH_MIX_SECONDS", 20) as u64);
    let conc = env_usize("BENCH_CONCURRENCY", 16).max(1);
    let wconc = env_usize("BENCH_WRITE_CONCURRENCY", 8).max(1);
    let n_users = env_usize("BENCH_USERS", 200).max(2);
    let n_statuses = env_usize("BENCH_STATUSES", 400).max(1);
    let n_writes = env_usize("BENCH_WRITES", 200).max(1);
    let zipf_s = env_f64("BENCH_ZIPF", 1.0);
    let parts = std::env::var("BENCH_PARTS").unwrap_or_else(|_| "a,b,c,e".into());
    let has = |p: &str| parts.split(',').any(|x| x.trim() == p);
    let started = Instant::now();
    eprintln!(
        "datapath benchmark: {secs:?} per throughput run, mix {mix_secs:?}, concurrency {conc}, graph {n_users} users / {n_statuses} statuses, {n_writes} writes per write run; binaries from {}",
        instaface_testkit::bin_dir().display()
    );
    let mut report: Vec<String> = Vec::new();

    // ---- cluster A: INVALIDATION=lease (the default)
    eprintln!("starting a 3-node cluster (INVALIDATION=lease)");
    let mut c =
        Cluster::start("bench-dp", ClusterOpts { nodes: 3, env: Vec::new(), fast: false, ..ClusterOpts::default() })
            .await;
    let Some((leader, _)) = wait_settled(&c, &c.ids, Duration::from_secs(30)).await else {
        eprintln!("cluster never settled; logs in {}", c.log_dir().display());
        return;
    };
    let followers: Vec<String> = c.ids.iter().filter(|i| **i != leader).cloned().collect();
    eprintln!("  leader {leader}, followers {followers:?}");

    let mut entities: Arc<Vec<(EntityId, bool)>> = Arc::new(Vec::new());
    if has("a") || has("b") {
        eprintln!("building the graph");
        let g = build_graph(&c, n_users, n_statuses, 8).await;
        let mut v: Vec<(EntityId, bool)> =
            g.users.iter().map(|u| (*u, true)).chain(g.statuses.iter().map(|s| (*s, false))).collect();
        shuffle(&mut v);
        entities = Arc::new(v);
        if has("b") {
            let r = run_mix(&mut c, &g, entities.clone(), &followers, &leader, mix_secs, conc, zipf_s).await;
            report.extend(r);
        }
    }
    if has("a") && !entities.is_empty() {
        // (a) is printed first.
        let r = run_hits(&c, entities.clone(), secs, conc).await;
        report.splice(0..0, r);
    }
    if has("c") {
        let r = run_writes(c, n_writes, secs, wconc).await;
        report.extend(r);
    } else {
        drop(c);
    }
    if has("e") {
        let levels: Vec<usize> = std::env::var("BENCH_WRITE_LEVELS")
            .unwrap_or_else(|_| "1,8,32".into())
            .split(',')
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        report.extend(run_scaling(secs, &levels).await);
    }
    println!();
    println!("{}", report.join("\n"));
    eprintln!("datapath benchmark done in {:.0} s", started.elapsed().as_secs_f64());
}
