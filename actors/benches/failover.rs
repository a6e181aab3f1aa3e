//! Failover benchmark: how long a cluster of real `instaface-node` processes goes without
//! a leader, and without acknowledging writes, when its leader dies.
//!
//! Each trial waits until the cluster is settled (one leader, every other node following
//! it and holding a read lease), kills the leader — `kill -9`, or SIGTERM, on which the
//! leader hands leadership over — and measures, from the moment just before the signal is
//! sent, until (1) the first heartbeat on `P.heartbeat` whose `leader` differs from the old
//! leader, as seen by a plain subscriber in this process, and (2) the first acknowledged
//! write at a client: from the signal on, a write starts every 20 ms through the graph
//! client (the gateway's path), each retrying as the client does, and the first answer
//! that says "done" counts. The killed node is then restarted and the next trial waits
//! until it follows the new leader again.
//!
//! Prints min / median / mean / p99 / max per profile (default timing: heartbeat 100 ms,
//! election 750–1000 ms; fast: heartbeat 30 ms, election 150–300 ms) and kill mode. It
//! asserts nothing about speed.
//!
//! ```text
//! cargo build --release -p instaface-actors --bins
//! INSTAFACE_BIN_DIR=$PWD/target/release cargo bench -p instaface-actors --bench failover
//! ```
//!
//! Environment: `BENCH_TRIALS` (per profile and mode, default 15), `BENCH_PROFILES`
//! (`default,fast`), `BENCH_MODES` (`kill,term`), `BENCH_NODES` (3). NATS, MariaDB and
//! Redis must be up (`compose/services.sh`). The nodes are the binaries in
//! `INSTAFACE_BIN_DIR`, so an older build can be measured by the same benchmark.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use instaface_bus::messages::{CandidacyState, Event, EventKind, Heartbeat, Role};
use instaface_testkit::{Cluster, ClusterOpts};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn env_list(name: &str, default: &str) -> Vec<String> {
    std::env::var(name)
        .unwrap_or_else(|_| default.to_string())
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Nearest-rank percentile of sorted values.
fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

struct Summary {
    n: usize,
    min: f64,
    p50: f64,
    mean: f64,
    p99: f64,
    max: f64,
}

fn summary(values: &[f64]) -> Summary {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    let mean = if n == 0 { f64::NAN } else { v.iter().sum::<f64>() / n as f64 };
    Summary {
        n,
        min: v.first().copied().unwrap_or(f64::NAN),
        p50: pct(&v, 50.0),
        mean,
        p99: pct(&v, 99.0),
        max: v.last().copied().unwrap_or(f64::NAN),
    }
}

/// What this process heard, stamped with the moment it arrived.
#[derive(Default)]
struct Tap {
    heartbeats: Vec<(Instant, String, u64)>,
    /// (arrival, node, term, kind) of leader events and campaign starts.
    events: Vec<(Instant, String, u64, &'static str)>,
}

async fn start_tap(c: &Cluster) -> Arc<Mutex<Tap>> {
    let tap = Arc::new(Mutex::new(Tap::default()));
    let mut hbs = c.bus.subscribe::<Heartbeat>(c.bus.subjects().heartbeat()).await.expect("subscribe heartbeat");
    let mut evs = c.bus.subscribe::<Event>(c.bus.subjects().events()).await.expect("subscribe events");
    let t = tap.clone();
    tokio::spawn(async move {
        while let Some(m) = hbs.next().await {
            let now = Instant::now();
            if let Ok(hb) = m.payload {
                t.lock().unwrap().heartbeats.push((now, hb.leader, hb.term));
            }
        }
    });
    let t = tap.clone();
    tokio::spawn(async move {
        while let Some(m) = evs.next().await {
            let now = Instant::now();
            if let Ok(e) = m.payload {
                let kind = match e.kind {
                    EventKind::Leader { .. } => "leader",
                    EventKind::Candidacy { state: CandidacyState::Started, pre_vote: true } => "prevote",
                    EventKind::Candidacy { state: CandidacyState::Started, pre_vote: false } => "vote",
                    _ => continue,
                };
                t.lock().unwrap().events.push((now, e.node, e.term, kind));
            }
        }
    });
    c.bus.flush().await.expect("flush");
    tap
}

/// Waits until every node in `ids` answers, exactly one leads, and every other one follows
/// it in its term holding a read lease. Returns (leader, term).
async fn wait_settled(c: &Cluster, ids: &[String], timeout: Duration) -> Option<(String, u64)> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut st = BTreeMap::new();
        for id in ids {
            if let Some(s) = c.status(id).await {
                st.insert(id.clone(), s);
            }
        }
        if st.len() == ids.len() {
            let leaders: Vec<_> = st.values().filter(|s| s.role == Role::Leader).collect();
            if leaders.len() == 1 {
                let (l, t) = (leaders[0].node.clone(), leaders[0].term);
                let ok = st.values().all(|s| {
                    s.term == t
                        && (s.node == l
                            || (s.role == Role::Follower && s.leader.as_deref() == Some(l.as_str()) && s.lease_ms > 0))
                });
                if ok {
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

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Kill9,
    Term,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Kill9 => "kill -9",
            Mode::Term => "SIGTERM",
        }
    }
}

struct Trial {
    /// Signal → first heartbeat of another leader.
    failover: f64,
    /// Signal → first acknowledged write (of those started after the signal).
    first_write: Option<f64>,
    /// Signal → `leader` event of the new leader (arrival here).
    leader_event: Option<f64>,
    /// Age of the old leader's last heartbeat when the signal was sent.
    hb_age: Option<f64>,
    /// Campaigns (PreVote + real) started between the signal and the new heartbeat.
    prevotes: usize,
    votes: usize,
    term_step: u64,
    /// SIGTERM only: signal → process exit.
    exit: Option<f64>,
    /// Restart → the restarted node follows the new leader with a lease.
    rejoin: f64,
}

/// From `t0` on, starts a write every 20 ms (each retrying as the client does) until one
/// is acknowledged; returns when, after `t0` (`None` within 10 s).
async fn first_acknowledged_write(
    client: instaface_bus::graph_client::GraphClient,
    entity: u64,
    t0: Instant,
) -> Option<Duration> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Instant>(64);
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut attempts = Vec::new();
    let deadline = t0 + Duration::from_secs(10);
    let done = loop {
        tokio::select! {
            Some(at) = rx.recv() => break Some(at),
            _ = tick.tick() => {
                if Instant::now() > deadline {
                    break None;
                }
                let (client, tx) = (client.clone(), tx.clone());
                attempts.push(tokio::spawn(async move {
                    if client
                        .update_entity(entity, serde_json::json!({ "probe": true }))
                        .await
                        .is_ok()
                    {
                        let _ = tx.send(Instant::now()).await;
                    }
                }));
            }
        }
    };
    for a in attempts {
        a.abort();
    }
    done.map(|at| at - t0)
}

async fn run_profile(fast: bool, modes: &[Mode], trials: usize, nodes: usize) -> Vec<(Mode, Vec<Trial>)> {
    let name = if fast { "bench-fo-fast" } else { "bench-fo-default" };
    let mut c = Cluster::start(name, ClusterOpts { nodes, env: Vec::new(), fast, ..ClusterOpts::default() }).await;
    let tap = start_tap(&c).await;
    let entity = match c.client.wait_for_leader(Duration::from_secs(30)).await {
        Ok(_) => match c.client.create_entity("user", Default::default()).await {
            Ok((e, _)) => e.id,
            Err(e) => {
                eprintln!("  could not create the entity the writes update: {e}");
                return Vec::new();
            }
        },
        Err(e) => {
            eprintln!("  no leader: {e}");
            return Vec::new();
        }
    };
    let ids = c.ids.clone();
    let heartbeat = if fast { 30u64 } else { 100 };
    eprintln!("  cluster {} started ({} nodes); waiting for it to settle", c.prefix, nodes);
    if wait_settled(&c, &ids, Duration::from_secs(30)).await.is_none() {
        eprintln!("  cluster never settled; logs in {}", c.log_dir().display());
        return Vec::new();
    }
    let mut results: Vec<(Mode, Vec<Trial>)> = modes.iter().map(|m| (*m, Vec::new())).collect();
    // Interleave the modes so that a change in machine load hits both alike.
    for i in 0..trials {
        for (mode, out) in results.iter_mut() {
            let mode = *mode;
            let Some((old, term)) = wait_settled(&c, &ids, Duration::from_secs(30)).await else {
                eprintln!("  cluster did not settle before trial {}; stopping this profile", i + 1);
                return results;
            };
            // Let the cluster run a little, then kill at a random phase of the heartbeat.
            let jitter = Duration::from_millis(200 + rand::random::<u64>() % heartbeat);
            tokio::time::sleep(jitter).await;
            let hb_age =
                tap.lock().unwrap().heartbeats.iter().rev().find(|(_, l, _)| *l == old).map(|(t, _, _)| t.elapsed());
            let (hb_mark, ev_mark) = {
                let t = tap.lock().unwrap();
                (t.heartbeats.len(), t.events.len())
            };
            let t0 = Instant::now();
            match mode {
                Mode::Kill9 => c.kill9(&old),
                Mode::Term => c.signal(&old, "TERM"),
            }
            let first_write = tokio::spawn(first_acknowledged_write(c.client.clone(), entity, t0));
            // The first heartbeat from anyone but the old leader.
            let deadline = t0 + Duration::from_secs(30);
            let mut found = None;
            while Instant::now() < deadline {
                {
                    let t = tap.lock().unwrap();
                    if let Some((at, l, nt)) = t.heartbeats[hb_mark..].iter().find(|(_, l, _)| *l != old) {
                        found = Some((*at, l.clone(), *nt));
                    }
                }
                if found.is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let Some((t1, new_leader, new_term)) = found else {
                eprintln!(
                    "  no new leader within 30 s after {} of {old}; logs in {}",
                    mode.name(),
                    c.log_dir().display()
                );
                return results;
            };
            let (leader_event, prevotes, votes) = {
                let t = tap.lock().unwrap();
                let evs = &t.events[ev_mark..];
                let le = evs
                    .iter()
                    .find(|(_, n, _, k)| *k == "leader" && *n == new_leader)
                    .map(|(at, _, _, _)| ms(at.saturating_duration_since(t0)));
                let before = |at: &Instant| *at <= t1;
                let pv = evs.iter().filter(|(at, _, _, k)| *k == "prevote" && before(at)).count();
                let v = evs.iter().filter(|(at, _, _, k)| *k == "vote" && before(at)).count();
                (le, pv, v)
            };
            let exit = if mode == Mode::Term {
                let code = c.wait_exit(&old, Duration::from_secs(15)).await;
                if code != Some(0) {
                    eprintln!("  note: {old} exited with {code:?} after SIGTERM");
                }
                Some(ms(t0.elapsed()))
            } else {
                None
            };
            let failover = ms(t1 - t0);
            let first_write = first_write.await.ok().flatten().map(ms);
            // Restart the old leader and wait until it follows again.
            let r0 = Instant::now();
            c.spawn(&old);
            let rejoined = wait_settled(&c, &ids, Duration::from_secs(30)).await;
            let rejoin = ms(r0.elapsed());
            eprintln!(
                "  [{} {} {:>2}/{}] {old} -> {new_leader}  term {term} -> {new_term}  failover {failover:7.1} ms  first write {:7.1} ms  (last hb {:5.1} ms old; prevote {prevotes}, vote {votes}){}  rejoin {rejoin:6.0} ms",
                if fast { "fast   " } else { "default" },
                mode.name(),
                i + 1,
                trials,
                first_write.unwrap_or(f64::NAN),
                hb_age.map(ms).unwrap_or(f64::NAN),
                exit.map(|e| format!("  exit {e:6.1} ms")).unwrap_or_default(),
            );
            out.push(Trial {
                failover,
                first_write,
                leader_event,
                hb_age: hb_age.map(ms),
                prevotes,
                votes,
                term_step: new_term.saturating_sub(term),
                exit,
                rejoin,
            });
            if rejoined.is_none() {
                eprintln!(
                    "  {old} did not rejoin within 30 s; stopping this profile; logs in {}",
                    c.log_dir().display()
                );
                return results;
            }
        }
    }
    results
}

fn row(label: &str, s: &Summary) -> String {
    format!("| {label} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |", s.n, s.min, s.p50, s.mean, s.p99, s.max)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let trials = env_usize("BENCH_TRIALS", 15);
    let nodes = env_usize("BENCH_NODES", 3);
    let profiles = env_list("BENCH_PROFILES", "default,fast");
    let modes: Vec<Mode> = env_list("BENCH_MODES", "kill,term")
        .iter()
        .filter_map(|m| match m.as_str() {
            "kill" | "kill9" => Some(Mode::Kill9),
            "term" => Some(Mode::Term),
            _ => None,
        })
        .collect();
    eprintln!(
        "failover benchmark: {trials} trials per profile and mode, {nodes} nodes, binaries from {}",
        instaface_testkit::bin_dir().display()
    );
    let started = Instant::now();
    let mut all = Vec::new();
    for p in &profiles {
        let fast = match p.as_str() {
            "default" => false,
            "fast" => true,
            other => {
                eprintln!("unknown profile {other:?} (default, fast)");
                continue;
            }
        };
        eprintln!(
            "profile {p}: {}",
            if fast {
                "HEARTBEAT_MS=30 ELECTION_MIN_MS=150 ELECTION_MAX_MS=300"
            } else {
                "HEARTBEAT_MS=100 ELECTION_MIN_MS=750 ELECTION_MAX_MS=1000"
            }
        );
        let r = run_profile(fast, &modes, trials, nodes).await;
        all.push((p.clone(), r));
    }

    println!();
    println!("## Failover: signal to the leader -> first heartbeat of a new leader (ms)");
    println!();
    println!("| profile, signal | n | min | median | mean | p99 | max |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for (p, r) in &all {
        for (mode, trials) in r {
            let s = summary(&trials.iter().map(|t| t.failover).collect::<Vec<_>>());
            println!("{}", row(&format!("{p}, {}", mode.name()), &s));
        }
    }
    println!();
    println!("## Signal to the leader -> first acknowledged write at a client (ms)");
    println!();
    println!("| profile, signal | n | min | median | mean | p99 | max |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for (p, r) in &all {
        for (mode, trials) in r {
            let s = summary(&trials.iter().filter_map(|t| t.first_write).collect::<Vec<_>>());
            println!("{}", row(&format!("{p}, {}", mode.name()), &s));
        }
    }
    println!();
    println!("Breakdown (medians; ms unless noted):");
    println!();
    println!("| profile, signal | last heartbeat age at kill | -> `leader` event | -> new heartbeat | SIGTERM -> exit | PreVote campaigns / trial | vote campaigns / trial | term steps | restart -> following |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for (p, r) in &all {
        for (mode, trials) in r {
            let med = |f: &dyn Fn(&Trial) -> Option<f64>| {
                let v: Vec<f64> = trials.iter().filter_map(f).collect();
                if v.is_empty() {
                    "-".to_string()
                } else {
                    format!("{:.1}", summary(&v).p50)
                }
            };
            let n = trials.len().max(1) as f64;
            let terms: BTreeMap<u64, usize> = trials.iter().fold(BTreeMap::new(), |mut m, t| {
                *m.entry(t.term_step).or_default() += 1;
                m
            });
            println!(
                "| {p}, {} | {} | {} | {} | {} | {:.2} | {:.2} | {} | {} |",
                mode.name(),
                med(&|t| t.hb_age),
                med(&|t| t.leader_event),
                med(&|t| Some(t.failover)),
                med(&|t| t.exit),
                trials.iter().map(|t| t.prevotes).sum::<usize>() as f64 / n,
                trials.iter().map(|t| t.votes).sum::<usize>() as f64 / n,
                terms.iter().map(|(k, v)| format!("+{k}: {v}")).collect::<Vec<_>>().join(", "),
                med(&|t| Some(t.rejoin)),
            );
        }
    }
    println!();
    println!("All trials (failover ms / first acknowledged write ms):");
    for (p, r) in &all {
        for (mode, trials) in r {
            let v: Vec<String> =
                trials.iter().map(|t| format!("{:.0}/{:.0}", t.failover, t.first_write.unwrap_or(f64::NAN))).collect();
            println!("  {p}, {}: {}", mode.name(), v.join(" "));
        }
    }
    eprintln!("failover benchmark done in {:.0} s", started.elapsed().as_secs_f64());
}
