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
//! (key skew exponent of the mix, default 1.0; 0 = uniform), `BENCH_PARTS`
//! (`a,b,c` — (d) is measured with (c)).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use instaface_bus::graph::{
    Attributes, Consistency, EntityId, ReadQuery, ReadRequest, ReadResult, Reply,
};
use instaface_bus::messages::{Ack, Event, EventKind, Invalidate, NodeStatus, Role};
use instaface_testkit::{Cluster, ClusterOpts};
use serde_json::json;

// ---------------------------------------------------------------- helpers

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn env_f64(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn wall_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Nearest-rank percentile of sorted values.
fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

#[derive(Clone, Copy)]
struct Summary {
    n: usize,
    min: f64,
    p50: f64,
    mean: f64,
    p99: f64,
    max: f64,
}

fn summary(values: &[f64]) -> Summary {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    Summary {
        n,
        min: v.first().copied().unwrap_or(f64::NAN),
        p50: pct(&v, 50.0),
        mean: if n == 0 {
            f64::NAN
        } else {
            v.iter().sum::<f64>() / n as f64
        },
        p99: pct(&v, 99.0),
        max: v.last().copied().unwrap_or(f64::NAN),
    }
}

/// Formats microseconds as ms with 2 decimals.
fn fm(us: f64) -> String {
    if us.is_finite() {
        format!("{:.2}", us / 1000.0)
    } else {
        "-".into()
    }
}

fn attrs(v: serde_json::Value) -> Attributes {
    v.as_object().cloned().unwrap_or_default()
}

/// Samples indices 0..n with probability ∝ 1/(i+1)^s.
struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(n: usize, s: f64) -> Zipf {
        let mut acc = 0.0;
        let mut cdf = Vec::with_capacity(n);
        for i in 0..n {
            acc += 1.0 / ((i + 1) as f64).powf(s);
            cdf.push(acc);
        }
        for c in cdf.iter_mut() {
            *c /= acc;
        }
        Zipf { cdf }
    }

    fn sample(&self) -> usize {
        let u: f64 = rand::random();
        self.cdf.partition_point(|c| *c < u).min(self.cdf.len() - 1)
    }
}

fn shuffle<T>(v: &mut [T]) {
    for i in (1..v.len()).rev() {
        let j = rand::random::<u64>() as usize % (i + 1);
        v.swap(i, j);
    }
}

/// The result of a load run: latencies (µs) by operation kind, errors, elapsed time.
struct Load {
    lat: BTreeMap<&'static str, Vec<f64>>,
    errors: BTreeMap<String, usize>,
    elapsed: Duration,
}

impl Load {
    fn all(&self) -> Vec<f64> {
        self.lat.values().flatten().copied().collect()
    }
    fn ops(&self) -> usize {
        self.lat.values().map(|v| v.len()).sum()
    }
    fn rate(&self) -> f64 {
        self.ops() as f64 / self.elapsed.as_secs_f64()
    }
    fn error_count(&self) -> usize {
        self.errors.values().sum()
    }
}

/// Runs `op` in `conc` workers for `dur`; `op` returns the operation's kind (or an error).
async fn run_load<F, Fut>(label: &str, conc: usize, dur: Duration, op: F) -> Load
where
    F: Fn() -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = Result<&'static str, String>> + Send + 'static,
{
    let count = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let deadline = t0 + dur;
    let mut workers = Vec::new();
    for _ in 0..conc {
        let op = op.clone();
        let count = count.clone();
        workers.push(tokio::spawn(async move {
            let mut lat: BTreeMap<&'static str, Vec<f64>> = BTreeMap::new();
            let mut errors: BTreeMap<String, usize> = BTreeMap::new();
            while Instant::now() < deadline {
                let s = Instant::now();
                match op().await {
                    Ok(kind) => lat.entry(kind).or_default().push(us(s.elapsed())),
                    Err(e) => {
                        // Keep error kinds few: the message up to its first digit.
                        let key: String = e
                            .chars()
                            .take_while(|c| !c.is_ascii_digit())
                            .take(60)
                            .collect();
                        *errors.entry(key).or_default() += 1;
                    }
                }
                count.fetch_add(1, Ordering::Relaxed);
            }
            (lat, errors)
        }));
    }
    let progress = if dur >= Duration::from_secs(8) {
        let count = count.clone();
        let label = label.to_string();
        Some(tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                eprintln!(
                    "    {label}: {} ops after {:.0} s",
                    count.load(Ordering::Relaxed),
                    t0.elapsed().as_secs_f64()
                );
            }
        }))
    } else {
        None
    };
    let mut out = Load {
        lat: BTreeMap::new(),
        errors: BTreeMap::new(),
        elapsed: Duration::ZERO,
    };
    for w in workers {
        let (lat, errors) = w.await.expect("worker");
        for (k, v) in lat {
            out.lat.entry(k).or_default().extend(v);
        }
        for (k, v) in errors {
            *out.errors.entry(k).or_default() += v;
        }
    }
    out.elapsed = t0.elapsed();
    if let Some(p) = progress {
        p.abort();
    }
    out
}

/// Waits until every node in `ids` answers, exactly one leads, and every other one follows
/// it in its term holding a read lease (unplugged nodes in `skip` are left out).
async fn wait_settled(c: &Cluster, ids: &[String], timeout: Duration) -> Option<(String, u64)> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut st = Vec::new();
        for id in ids {
            if let Some(s) = c.status(id).await {
                st.push(s);
            }
        }
        if st.len() == ids.len() {
            let leaders: Vec<_> = st.iter().filter(|s| s.role == Role::Leader).collect();
            if leaders.len() == 1 {
                let (l, t) = (leaders[0].node.clone(), leaders[0].term);
                if st.iter().all(|s| {
                    s.term == t
                        && (s.node == l
                            || (s.role == Role::Follower
                                && s.leader.as_deref() == Some(l.as_str())
                                && s.lease_ms > 0))
                }) {
                    return Some((l, t));
                }
            }
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn statuses(c: &Cluster) -> BTreeMap<String, NodeStatus> {
    let mut out = BTreeMap::new();
    for id in &c.ids {
        if let Some(s) = c.status(id).await {
            out.insert(id.clone(), s);
        }
    }
    out
}

// ---------------------------------------------------------------- the graph

struct Graph {
    users: Vec<EntityId>,
    statuses: Vec<EntityId>,
}

async fn build_graph(c: &Cluster, n_users: usize, n_statuses: usize, conc: usize) -> Graph {
    let t0 = Instant::now();
    let errors = Arc::new(AtomicU64::new(0));
    let create = |etype: &'static str, n: usize| {
        let client = c.client.clone();
        let errors = errors.clone();
        async move {
            let ids: Vec<Option<EntityId>> = futures::stream::iter(0..n)
                .map(|i| {
                    let client = client.clone();
                    let errors = errors.clone();
                    async move {
                        let a = if etype == "user" {
                            json!({"name": format!("user {i}")})
                        } else {
                            json!({"text": format!("status {i}")})
                        };
                        match client.create_entity(etype, attrs(a)).await {
                            Ok((e, _)) => Some(e.id),
                            Err(_) => {
                                errors.fetch_add(1, Ordering::Relaxed);
                                None
                            }
                        }
                    }
                })
                .buffer_unordered(conc)
                .collect()
                .await;
            ids.into_iter().flatten().collect::<Vec<_>>()
        }
    };
    let users = create("user", n_users).await;
    let statuses = create("status", n_statuses).await;
    eprintln!(
        "    {} users, {} statuses created ({:.1} s)",
        users.len(),
        statuses.len(),
        t0.elapsed().as_secs_f64()
    );
    // Edges: every status posted by a user; 4 friends per user; 3 likes per status.
    let mut edges: Vec<(EntityId, &'static str, EntityId)> = Vec::new();
    let pick = |v: &Vec<EntityId>| v[rand::random::<u64>() as usize % v.len()];
    for s in &statuses {
        edges.push((pick(&users), "posted", *s));
    }
    for u in &users {
        for _ in 0..4 {
            let v = pick(&users);
            if v != *u {
                edges.push((*u, "friend", v));
            }
        }
    }
    for s in &statuses {
        for _ in 0..3 {
            edges.push((pick(&users), "likes", *s));
        }
    }
    shuffle(&mut edges);
    let n_edges = edges.len();
    let done = Arc::new(AtomicU64::new(0));
    let t1 = Instant::now();
    futures::stream::iter(edges)
        .map(|(from, atype, to)| {
            let client = c.client.clone();
            let errors = errors.clone();
            let done = done.clone();
            async move {
                if client
                    .add_assoc(from, atype, to, Attributes::new())
                    .await
                    .is_err()
                {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                if d.is_multiple_of(500) {
                    eprintln!("    {d}/{n_edges} edges");
                }
            }
        })
        .buffer_unordered(conc)
        .collect::<Vec<()>>()
        .await;
    let writes = users.len() + statuses.len() + n_edges;
    eprintln!(
        "    graph built: {} writes in {:.1} s ({:.0} writes/s at concurrency {conc}; edges alone {:.0}/s), {} errors",
        writes,
        t0.elapsed().as_secs_f64(),
        writes as f64 / t0.elapsed().as_secs_f64(),
        n_edges as f64 / t1.elapsed().as_secs_f64(),
        errors.load(Ordering::Relaxed)
    );
    Graph { users, statuses }
}

// ---------------------------------------------------------------- the tap for (d)

#[derive(Default)]
struct Tap {
    /// seq → arrival of the `P.invalidate` broadcast.
    invalidate: HashMap<u64, Instant>,
    /// seq → (arrival, leader's ts in ms) of the `write` event.
    write_event: HashMap<u64, (Instant, u64)>,
    /// seq → (arrival, acked_by) of the `invalidation` event.
    invalidation_event: HashMap<u64, (Instant, Vec<String>)>,
    /// Every ack in order of arrival: (arrival, wall ms, node, applied_seq).
    acks: Vec<(Instant, f64, String, u64)>,
}

async fn start_tap(c: &Cluster) -> Arc<Mutex<Tap>> {
    let tap = Arc::new(Mutex::new(Tap::default()));
    let s = c.bus.subjects().clone();
    let mut inv = c
        .bus
        .subscribe::<Invalidate>(s.invalidate())
        .await
        .expect("sub invalidate");
    let mut evs = c
        .bus
        .subscribe::<Event>(s.events())
        .await
        .expect("sub events");
    let mut acks = c
        .bus
        .subscribe::<Ack>(format!("{}.node.*.ack", s.prefix()))
        .await
        .expect("sub acks");
    let t = tap.clone();
    tokio::spawn(async move {
        while let Some(m) = inv.next().await {
            let now = Instant::now();
            if let Ok(i) = m.payload {
                t.lock().unwrap().invalidate.entry(i.seq).or_insert(now);
            }
        }
    });
    let t = tap.clone();
    tokio::spawn(async move {
        while let Some(m) = evs.next().await {
            let now = Instant::now();
            if let Ok(e) = m.payload {
                match e.kind {
                    EventKind::Write { seq, .. } => {
                        t.lock()
                            .unwrap()
                            .write_event
                            .entry(seq)
                            .or_insert((now, e.ts));
                    }
                    EventKind::Invalidation { seq, acked_by } => {
                        t.lock()
                            .unwrap()
                            .invalidation_event
                            .entry(seq)
                            .or_insert((now, acked_by));
                    }
                    _ => {}
                }
            }
        }
    });
    let t = tap.clone();
    tokio::spawn(async move {
        while let Some(m) = acks.next().await {
            let now = Instant::now();
            let wall = wall_ms();
            if let Ok(a) = m.payload {
                t.lock()
                    .unwrap()
                    .acks
                    .push((now, wall, a.node, a.applied_seq));
            }
        }
    });
    c.bus.flush().await.expect("flush");
    tap
}

// ---------------------------------------------------------------- (c) and (d)

struct WriteRun {
    label: String,
    /// Latency of the first write after the unplug (unplugged runs only), µs.
    first: Option<f64>,
    /// Sequential write latencies, µs.
    lat: Vec<f64>,
    errors: usize,
    /// Throughput run at concurrency (healthy only).
    tput: Option<Load>,
    /// Per write: (seq, request sent, answer received).
    writes: Vec<(u64, Instant, Instant)>,
    /// Followers whose acks count (plugged, not the leader).
    followers: Vec<String>,
    /// All followers, plugged or not.
    all_followers: usize,
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
    let (leader, _) = wait_settled(c, &c.ids, Duration::from_secs(30))
        .await
        .expect("cluster settled");
    let followers: Vec<String> = c.ids.iter().filter(|i| **i != leader).cloned().collect();
    let mut ids = Vec::new();
    for i in 0..32 {
        if let Ok((e, _)) = c
            .client
            .create_entity("user", attrs(json!({"name": format!("writer {i}")})))
            .await
        {
            ids.push(e.id);
        }
    }
    let mut runs = Vec::new();

    // Healthy: sequential, then a throughput run.
    eprintln!("  ({mode}) healthy: {n_writes} sequential updates");
    let (lat, writes, errors) =
        sequential_writes(c, &ids, n_writes, &format!("{mode} healthy")).await;
    let s = summary(&lat);
    eprintln!("    p50 {} ms, p99 {} ms", fm(s.p50), fm(s.p99));
    eprintln!("  ({mode}) healthy: throughput at concurrency {wconc} for {secs:?}");
    let client = c.client.clone();
    let ids2 = Arc::new(ids.clone());
    let tput = run_load(
        &format!("{mode} write throughput"),
        wconc,
        secs,
        move || {
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
        },
    )
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
    eprintln!(
        "    first write after the unplug: {} ms",
        fm(first.unwrap_or(f64::NAN))
    );
    let (lat, writes, errors) =
        sequential_writes(c, &ids, n_writes, &format!("{mode} unplugged")).await;
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
    if wait_settled(c, &c.ids, Duration::from_secs(30))
        .await
        .is_none()
    {
        eprintln!("    {cut} did not rejoin within 30 s");
    }
    (runs, tap)
}

/// (d): per write, from the tap.
struct InvFigures {
    label: String,
    /// P.invalidate arrival → last follower's covering ack arrival, µs.
    bcast_to_last_ack: Vec<f64>,
    /// First follower's covering ack → last follower's, µs.
    first_to_last_ack: Vec<f64>,
    /// write event ts (leader wall ms) → last covering ack arrival (wall), µs.
    commit_ts_to_last_ack: Vec<f64>,
    /// request sent → P.invalidate arrival, µs.
    req_to_bcast: Vec<f64>,
    /// last covering ack arrival → answer at the client, µs (negative: answered before).
    last_ack_to_answer: Vec<f64>,
    /// last covering ack → `invalidation` event arrival, µs (lease mode).
    last_ack_to_inv_event: Vec<f64>,
    /// `invalidation` events naming fewer followers than are plugged.
    inv_events: usize,
    covered_by_lease: usize,
    missing: usize,
}

fn invalidation_figures(run: &WriteRun, tap: &Tap) -> InvFigures {
    let mut f = InvFigures {
        label: run.label.clone(),
        bcast_to_last_ack: Vec::new(),
        first_to_last_ack: Vec::new(),
        commit_ts_to_last_ack: Vec::new(),
        req_to_bcast: Vec::new(),
        last_ack_to_answer: Vec::new(),
        last_ack_to_inv_event: Vec::new(),
        inv_events: 0,
        covered_by_lease: 0,
        missing: 0,
    };
    // Per follower, acks in arrival order.
    let mut by_node: HashMap<&str, Vec<(Instant, f64, u64)>> = HashMap::new();
    for (at, wall, node, seq) in &tap.acks {
        by_node
            .entry(node.as_str())
            .or_default()
            .push((*at, *wall, *seq));
    }
    for (seq, sent, answered) in &run.writes {
        let Some(bcast) = tap.invalidate.get(seq).copied() else {
            f.missing += 1;
            continue;
        };
        let mut last: Option<(Instant, f64)> = None;
        let mut earliest: Option<Instant> = None;
        let mut complete = true;
        for node in &run.followers {
            let first = by_node.get(node.as_str()).and_then(|acks| {
                acks.iter()
                    .find(|(at, _, applied)| *applied >= *seq && *at >= *sent)
            });
            match first {
                Some((at, wall, _)) => {
                    if earliest.is_none_or(|e| *at < e) {
                        earliest = Some(*at);
                    }
                    if last.is_none_or(|(l, _)| *at > l) {
                        last = Some((*at, *wall));
                    }
                }
                None => complete = false,
            }
        }
        let Some((last_at, last_wall)) = last.filter(|_| complete) else {
            f.missing += 1;
            continue;
        };
        f.req_to_bcast
            .push(us(bcast.saturating_duration_since(*sent)));
        f.bcast_to_last_ack
            .push(us(last_at.saturating_duration_since(bcast)));
        if let Some(e) = earliest {
            f.first_to_last_ack
                .push(us(last_at.saturating_duration_since(e)));
        }
        if let Some((_, ts)) = tap.write_event.get(seq) {
            f.commit_ts_to_last_ack
                .push((last_wall - *ts as f64) * 1000.0);
        }
        f.last_ack_to_answer.push(if *answered >= last_at {
            us(*answered - last_at)
        } else {
            -us(last_at - *answered)
        });
        if let Some((at, acked_by)) = tap.invalidation_event.get(seq) {
            f.inv_events += 1;
            if *at >= last_at {
                f.last_ack_to_inv_event.push(us(*at - last_at));
            }
            if acked_by.len() < run.all_followers {
                f.covered_by_lease += 1;
            }
        }
    }
    f
}

// ---------------------------------------------------------------- main

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
    let parts = std::env::var("BENCH_PARTS").unwrap_or_else(|_| "a,b,c".into());
    let has = |p: &str| parts.split(',').any(|x| x.trim() == p);
    let started = Instant::now();
    eprintln!(
        "datapath benchmark: {secs:?} per throughput run, mix {mix_secs:?}, concurrency {conc}, graph {n_users} users / {n_statuses} statuses, {n_writes} writes per write run; binaries from {}",
        instaface_testkit::bin_dir().display()
    );
    let mut report: Vec<String> = Vec::new();

    // ---- cluster A: INVALIDATION=lease (the default)
    eprintln!("starting a 3-node cluster (INVALIDATION=lease)");
    let mut c = Cluster::start(
        "bench-dp",
        ClusterOpts {
            nodes: 3,
            env: Vec::new(),
            fast: false,
        },
    )
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
        let mut v: Vec<(EntityId, bool)> = g
            .users
            .iter()
            .map(|u| (*u, true))
            .chain(g.statuses.iter().map(|s| (*s, false)))
            .collect();
        shuffle(&mut v);
        entities = Arc::new(v);
        if has("b") {
            let r = run_mix(
                &mut c,
                &g,
                entities.clone(),
                &followers,
                &leader,
                mix_secs,
                conc,
                zipf_s,
            )
            .await;
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
    println!();
    println!("{}", report.join("\n"));
    eprintln!(
        "datapath benchmark done in {:.0} s",
        started.elapsed().as_secs_f64()
    );
}

/// (b): the TAO-like mix through the queue group, from cold follower caches.
#[allow(clippy::too_many_arguments)]
async fn run_mix(
    c: &mut Cluster,
    g: &Graph,
    entities: Arc<Vec<(EntityId, bool)>>,
    followers: &[String],
    leader: &str,
    mix_secs: Duration,
    conc: usize,
    zipf_s: f64,
) -> Vec<String> {
    // Restart the followers so their caches are cold (the leader's cache stays as the
    // graph's writes left it).
    eprintln!("(b) TAO-like mix for {mix_secs:?} at concurrency {conc}, Zipf s = {zipf_s}; restarting followers for cold caches");
    // One at a time: a restarted node sits out a quarantine (2 x election max x (1 +
    // drift), 2.1 s by default) before it acks, so restarting both followers at once would
    // leave the leader without a quorum and make it step down.
    for f in followers {
        c.kill9(f);
        c.spawn(f);
        let t = Instant::now();
        match wait_settled(c, &c.ids, Duration::from_secs(30)).await {
            Some((l, term)) => eprintln!(
                "  {f} restarted; following again after {:.1} s (leader {l}, term {term})",
                t.elapsed().as_secs_f64()
            ),
            None => eprintln!("  cluster did not settle after restarting {f}"),
        }
    }
    let before = statuses(c).await;
    let leader_term = |s: &BTreeMap<String, NodeStatus>| {
        s.values()
            .find(|s| s.role == Role::Leader)
            .map(|s| (s.node.clone(), s.term))
    };
    let lt_before = leader_term(&before);
    let leader = lt_before
        .as_ref()
        .map(|(l, _)| l.clone())
        .unwrap_or_else(|| leader.to_string());
    let leader = leader.as_str();
    let followers: Vec<String> = c
        .ids
        .iter()
        .filter(|i| i.as_str() != leader)
        .cloned()
        .collect();
    let followers = &followers[..];
    let zipf = Arc::new(Zipf::new(entities.len(), zipf_s));
    let client = c.client.clone();
    let ents = entities.clone();
    let users = Arc::new(g.users.clone());
    let statuses_ids = Arc::new(g.statuses.clone());
    let op = move || {
        let client = client.clone();
        let ents = ents.clone();
        let zipf = zipf.clone();
        let users = users.clone();
        let statuses_ids = statuses_ids.clone();
        async move {
            let (id, is_user) = ents[zipf.sample()];
            let r: f64 = rand::random::<f64>() * 100.0;
            if r < 0.2 {
                // Writes: half updates, half new likes.
                if rand::random::<bool>() {
                    return client
                        .update_entity(id, json!({"touched": rand::random::<u32>()}))
                        .await
                        .map(|_| "write: update")
                        .map_err(|e| e.to_string());
                }
                let u = users[rand::random::<u64>() as usize % users.len()];
                let s = statuses_ids[rand::random::<u64>() as usize % statuses_ids.len()];
                return client
                    .add_assoc(u, "likes", s, Attributes::new())
                    .await
                    .map(|_| "write: add likes")
                    .map_err(|e| e.to_string());
            }
            // Reads, renormalised over 98: range 41, get 29, assoc get 16, count 12.
            let r = rand::random::<f64>() * 98.0;
            let atype = if is_user {
                ["friend", "likes", "posted"][rand::random::<u64>() as usize % 3]
            } else {
                ["likedby", "postedby"][rand::random::<u64>() as usize % 2]
            };
            let (kind, query) = if r < 41.0 {
                (
                    "assoc range (limit 10)",
                    ReadQuery::Assocs {
                        from: id,
                        atype: atype.into(),
                        limit: 10,
                        offset: 0,
                    },
                )
            } else if r < 70.0 {
                ("entity get", ReadQuery::Entities { ids: vec![id] })
            } else if r < 86.0 {
                (
                    "assoc get (limit 1)",
                    ReadQuery::Assocs {
                        from: id,
                        atype: atype.into(),
                        limit: 1,
                        offset: 0,
                    },
                )
            } else {
                (
                    "assoc count (limit 0)",
                    ReadQuery::Assocs {
                        from: id,
                        atype: atype.into(),
                        limit: 0,
                        offset: 0,
                    },
                )
            };
            client
                .read(query, Consistency::Eventual)
                .await
                .map(|_| kind)
                .map_err(|e| e.to_string())
        }
    };
    let half = mix_secs / 2;
    let first = run_load("mix, first half", conc, half, op.clone()).await;
    let mid = statuses(c).await;
    let second = run_load("mix, second half", conc, mix_secs - half, op).await;
    let after = statuses(c).await;
    let lt_after = leader_term(&after);
    if lt_after != lt_before {
        eprintln!("  NOTE: the leader changed during the mix: {lt_before:?} -> {lt_after:?}");
    }
    let delta = |a: &BTreeMap<String, NodeStatus>, b: &BTreeMap<String, NodeStatus>, id: &str| {
        let (x, y) = (
            a.get(id).map(|s| s.cache.clone()).unwrap_or_default(),
            b.get(id).map(|s| s.cache.clone()).unwrap_or_default(),
        );
        (
            y.hits.saturating_sub(x.hits),
            y.misses.saturating_sub(x.misses),
            y.fills.saturating_sub(x.fills),
            y.entries,
        )
    };
    let mut r = Vec::new();
    r.push("## (b) TAO-like read-heavy mix".to_string());
    r.push(String::new());
    r.push(format!(
        "Graph: {} users, {} statuses, about {} edges (4 friends per user, 1 poster and 3 likes per status, each with its inverse). \
         {} clients for {:?}, keys drawn Zipf(s = {zipf_s}) over all {} entities; reads through `P.graph.read` (the `readers` queue group) with the shared client; \
         followers restarted just before, so their caches start cold. Writes are 0.2 % of operations (half entity updates, half new `likes`).",
        g.users.len(),
        g.statuses.len(),
        g.statuses.len() * 4 + g.users.len() * 4,
        conc,
        mix_secs,
        entities.len()
    ));
    r.push(String::new());
    r.push("| window | ops | ops/s | errors | follower hits | follower misses | follower hit rate | follower fills (fetches to the leader) | leader hits | leader misses | leader fills (MySQL fetches) |".into());
    r.push("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |".into());
    for (label, load, a, b) in [
        ("first half", &first, &before, &mid),
        ("second half", &second, &mid, &after),
    ] {
        let (mut fh, mut fmiss, mut ff) = (0, 0, 0);
        for f in followers {
            let (h, m, fi, _) = delta(a, b, f);
            fh += h;
            fmiss += m;
            ff += fi;
        }
        let (lh, lm, lf, _) = delta(a, b, leader);
        r.push(format!(
            "| {label} | {} | {:.0} | {} | {fh} | {fmiss} | {:.2} % | {ff} | {lh} | {lm} | {lf} |",
            load.ops(),
            load.rate(),
            load.error_count(),
            100.0 * fh as f64 / (fh + fmiss).max(1) as f64
        ));
    }
    if lt_after != lt_before {
        r.push(String::new());
        r.push(format!("NOTE: the leader changed during the mix ({lt_before:?} -> {lt_after:?}); the leader/follower split above is by the roles at the start."));
    }
    r.push(String::new());
    r.push("Per node over the whole mix (hits / misses / fills; entries at the end):".into());
    r.push(String::new());
    for id in &c.ids {
        let (h, m, f, e) = delta(&before, &after, id);
        let role = after
            .get(id)
            .map(|s| s.role.to_string())
            .unwrap_or_default();
        r.push(format!("- {id} ({role}): {h} / {m} / {f}; {e} entries"));
    }
    r.push(String::new());
    r.push("Latency by operation over the whole mix (ms, at the client):".into());
    r.push(String::new());
    r.push("| operation | share | n | p50 | p99 | max |".into());
    r.push("| --- | --- | --- | --- | --- | --- |".into());
    let mut kinds: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for l in [&first, &second] {
        for (k, v) in &l.lat {
            kinds.entry(k).or_default().extend(v);
        }
    }
    let total: usize = kinds.values().map(|v| v.len()).sum();
    for (k, v) in &kinds {
        let s = summary(v);
        r.push(format!(
            "| {k} | {:.2} % | {} | {} | {} | {} |",
            100.0 * v.len() as f64 / total.max(1) as f64,
            s.n,
            fm(s.p50),
            fm(s.p99),
            fm(s.max)
        ));
    }
    let errs: BTreeMap<String, usize> =
        first
            .errors
            .iter()
            .chain(second.errors.iter())
            .fold(BTreeMap::new(), |mut m, (k, v)| {
                *m.entry(k.clone()).or_default() += v;
                m
            });
    if !errs.is_empty() {
        r.push(String::new());
        r.push(format!("Errors: {errs:?}"));
    }
    r.push(String::new());
    eprintln!("{}", r.join("\n"));
    r
}

/// (a): follower cache hits beside a NATS echo.
async fn run_hits(
    c: &Cluster,
    entities: Arc<Vec<(EntityId, bool)>>,
    secs: Duration,
    conc: usize,
) -> Vec<String> {
    let Some((leader, _)) = wait_settled(c, &c.ids, Duration::from_secs(30)).await else {
        eprintln!("(a) skipped: the cluster did not settle");
        return Vec::new();
    };
    let f = c
        .ids
        .iter()
        .find(|i| **i != leader)
        .cloned()
        .expect("a follower");
    eprintln!(
        "(a) follower hits at {f}: warming {} entity keys",
        entities.len()
    );
    let subject = c.bus.subjects().read_at(&f);
    let warm: Vec<_> =
        futures::stream::iter(entities.iter().map(|(id, _)| *id).collect::<Vec<_>>())
            .map(|id| {
                let bus = c.bus.clone();
                let subject = subject.clone();
                async move {
                    let req = ReadRequest {
                        consistency: Consistency::Eventual,
                        query: ReadQuery::Entities { ids: vec![id] },
                    };
                    bus.request::<_, Reply<ReadResult>>(subject, &req, Duration::from_secs(5))
                        .await
                        .is_ok()
                }
            })
            .buffer_unordered(16)
            .collect()
            .await;
    eprintln!(
        "  warmed: {}/{} ok",
        warm.iter().filter(|x| **x).count(),
        warm.len()
    );

    // The echo responder: its own NATS connection, answering inline.
    let echo_subject = format!("{}.bench.echo", c.bus.subjects().prefix());
    let nc = async_nats::connect("nats://127.0.0.1:4222")
        .await
        .expect("echo connection");
    let mut sub = nc
        .subscribe(echo_subject.clone())
        .await
        .expect("echo subscribe");
    nc.flush().await.expect("flush");
    let responder = {
        let nc = nc.clone();
        tokio::spawn(async move {
            while let Some(m) = sub.next().await {
                if let Some(reply) = m.reply {
                    let _ = nc.publish(reply, m.payload).await;
                }
            }
        })
    };

    let before = c.status(&f).await.map(|s| s.cache).unwrap_or_default();
    let ents = entities.clone();
    let read_op = {
        let bus = c.bus.clone();
        let subject = subject.clone();
        move || {
            let bus = bus.clone();
            let subject = subject.clone();
            let ents = ents.clone();
            async move {
                let id = ents[rand::random::<u64>() as usize % ents.len()].0;
                let req = ReadRequest {
                    consistency: Consistency::Eventual,
                    query: ReadQuery::Entities { ids: vec![id] },
                };
                match bus
                    .request::<_, Reply<ReadResult>>(subject, &req, Duration::from_secs(5))
                    .await
                {
                    Ok(Reply::Ok(ReadResult::Entities { entities })) if !entities.is_empty() => {
                        Ok("read")
                    }
                    Ok(other) => Err(format!("unexpected {other:?}")),
                    Err(e) => Err(e.to_string()),
                }
            }
        }
    };
    let ents = entities.clone();
    let echo_op = {
        let bus = c.bus.clone();
        let subject = echo_subject.clone();
        move || {
            let bus = bus.clone();
            let subject = subject.clone();
            let ents = ents.clone();
            async move {
                let id = ents[rand::random::<u64>() as usize % ents.len()].0;
                // The same request payload, echoed back and decoded as such.
                let req = ReadRequest {
                    consistency: Consistency::Eventual,
                    query: ReadQuery::Entities { ids: vec![id] },
                };
                bus.request::<_, ReadRequest>(subject, &req, Duration::from_secs(5))
                    .await
                    .map(|_| "echo")
                    .map_err(|e| e.to_string())
            }
        }
    };
    let mut rows = Vec::new();
    for k in [1, conc] {
        eprintln!("  echo, concurrency {k}, {secs:?}");
        let e = run_load("echo", k, secs, echo_op.clone()).await;
        eprintln!("    {:.0} req/s", e.rate());
        eprintln!("  follower reads, concurrency {k}, {secs:?}");
        let r = run_load("follower reads", k, secs, read_op.clone()).await;
        eprintln!("    {:.0} req/s", r.rate());
        rows.push((format!("NATS echo (own responder), concurrency {k}"), e));
        rows.push((
            format!("follower cache hit (`P.node.{f}.read`, one entity), concurrency {k}"),
            r,
        ));
    }
    let after = c.status(&f).await.map(|s| s.cache).unwrap_or_default();
    responder.abort();
    let mut r = Vec::new();
    r.push("## (a) Follower reads (cache hits) beside a NATS request-reply echo".to_string());
    r.push(String::new());
    r.push(format!(
        "{} entity keys warmed at {f} first; then one entity per request, chosen uniformly, addressed to {f}; each run {secs:?}. \
         The echo is a responder task in the bench process on its own NATS connection, echoing the same request payload.",
        entities.len()
    ));
    r.push(String::new());
    r.push("| what | requests/s | n | errors | p50 ms | p99 ms | max ms |".into());
    r.push("| --- | --- | --- | --- | --- | --- | --- |".into());
    for (label, l) in &rows {
        let s = summary(&l.all());
        r.push(format!(
            "| {label} | {:.0} | {} | {} | {} | {} | {} |",
            l.rate(),
            s.n,
            l.error_count(),
            fm(s.p50),
            fm(s.p99),
            fm(s.max)
        ));
    }
    r.push(String::new());
    r.push(format!(
        "{f}'s cache during the runs: {} hits, {} misses, {} fills.",
        after.hits.saturating_sub(before.hits),
        after.misses.saturating_sub(before.misses),
        after.fills.saturating_sub(before.fills)
    ));
    r.push(String::new());
    eprintln!("{}", r.join("\n"));
    r
}

/// (c) and (d) on cluster A (lease), then on a fresh async cluster.
async fn run_writes(c: Cluster, n_writes: usize, secs: Duration, wconc: usize) -> Vec<String> {
    eprintln!("(c)/(d) writes, INVALIDATION=lease");
    let (mut runs, tap_a) = write_runs(&c, "lease", n_writes, secs, wconc).await;
    let mut inv: Vec<InvFigures> = runs
        .iter()
        .map(|r| invalidation_figures(r, &tap_a.lock().unwrap()))
        .collect();
    drop(c);
    eprintln!("starting a 3-node cluster with INVALIDATION=async");
    let c2 = Cluster::start(
        "bench-dp-async",
        ClusterOpts {
            nodes: 3,
            env: vec![("INVALIDATION".into(), "async".into())],
            fast: false,
        },
    )
    .await;
    if wait_settled(&c2, &c2.ids, Duration::from_secs(30))
        .await
        .is_none()
    {
        eprintln!(
            "async cluster never settled; logs in {}",
            c2.log_dir().display()
        );
    } else {
        let (runs_b, tap_b) = write_runs(&c2, "async", n_writes, secs, wconc).await;
        inv.extend(
            runs_b
                .iter()
                .map(|r| invalidation_figures(r, &tap_b.lock().unwrap())),
        );
        runs.extend(runs_b);
    }
    let mut r = Vec::new();
    r.push(
        "## (c) Write latency (entity update through the shared client, one at a time)".to_string(),
    );
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
        r.push(format!(
            "- {}: {}",
            run.label,
            buckets
                .iter()
                .map(|b| b.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        ));
    }
    r.push(String::new());
    r.push(format!(
        "Write throughput, healthy, {wconc} concurrent writers for {secs:?}:"
    ));
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
    r.push("## (d) Invalidation latency (observed from outside, per write of (c))".to_string());
    r.push(String::new());
    r.push(
        "Arrival times in the bench process of: the leader's `P.invalidate` broadcast; every follower ack on `P.node.*.ack` \
         (the last plugged follower's first ack with `applied_seq` >= the write's seq is \"last ack\"); the `write` event (its `ts` is the \
         leader's wall clock in whole ms when it publishes it, just after the commit, its own cache invalidation and the broadcast); the \
         write's answer at the client. All processes are on one machine, so wall clocks agree; the `ts` → ack figure carries up to \
         +1 ms from the truncated `ts`."
            .into(),
    );
    r.push(String::new());
    r.push("| mode, cluster state | writes matched | request → broadcast p50 / p99 | broadcast → last ack p50 / p99 / max | first → last follower ack p50 / p99 | write `ts` → last ack p50 / p99 | last ack → answer p50 / p99 | last ack → `invalidation` event p50 | `invalidation` events (of which not acked by every follower) | unmatched writes |".into());
    r.push("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |".into());
    for f in &inv {
        let a = summary(&f.req_to_bcast);
        let b = summary(&f.bcast_to_last_ack);
        let fl = summary(&f.first_to_last_ack);
        let d = summary(&f.commit_ts_to_last_ack);
        let e = summary(&f.last_ack_to_answer);
        let g = summary(&f.last_ack_to_inv_event);
        r.push(format!(
            "| {} | {} | {} / {} | {} / {} / {} | {} / {} | {} / {} | {} / {} | {} | {} ({}) | {} |",
            f.label,
            b.n,
            fm(a.p50),
            fm(a.p99),
            fm(b.p50),
            fm(b.p99),
            fm(b.max),
            fm(fl.p50),
            fm(fl.p99),
            fm(d.p50),
            fm(d.p99),
            fm(e.p50),
            fm(e.p99),
            if f.inv_events > 0 { fm(g.p50) } else { "-".into() },
            f.inv_events,
            f.covered_by_lease,
            f.missing
        ));
    }
    r.push(String::new());
    r.push("(ms; a negative \"last ack → answer\" means the answer reached the client before the last follower acked, as `async` allows.)".into());
    r.push(String::new());
    eprintln!("{}", r.join("\n"));
    r
}
