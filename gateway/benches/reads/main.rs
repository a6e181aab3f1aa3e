//! Reads through the gateway (issue 13), beside two baselines measured in the same run,
//! alternately. Prints figures; asserts nothing about speed.
//!
//! Five targets, each an HTTP server on 127.0.0.1 loaded by `wrk` (keep-alive connections,
//! `BENCH_CONCURRENCY` of them, default 32, over `BENCH_WRK_THREADS` threads, default 2):
//!
//! - **trivial axum**: a fixed small JSON body on one route, the floor for any HTTP service
//!   on this machine ([`baselines`]);
//! - **direct-MySQL**: the gateway's read routes and JSON, served straight from the
//!   cluster's MySQL database with a `mysql_async` pool and prepared statements, what a team
//!   without our cache would run ([`baselines`]);
//! - **project**: a 3-node cluster of real `instaface-node` processes and one real
//!   `instaface-gateway` process pointed at it ([`project`]);
//! - **project, reads alone**: a second gateway on the same cluster with `BATCH_READS=false`
//!   (every read its own NATS request), to see what batching does in the same run;
//! - **project, gateway in a node** (`innode`): the gateway served
//!   inside node n3 (`GATEWAY_LISTEN`), whose reads n3 serves from its own cache while it
//!   holds a read lease, with no NATS hop.
//!
//! Two workloads ([`workload`]), each run against the targets in turn, alternating the
//! order each round (the list, then the list reversed, …),
//! `BENCH_ROUNDS` rounds (default 2) of `BENCH_SECONDS` each (default 10) after an unreported
//! warm-up run of every target (`BENCH_WARMUP_SECONDS`, default 2):
//!
//! - (r1) cached entity reads, `GET /api/entities/{id}`, uniform over every entity of the
//!   graph (the trivial handler gets its fixed route);
//! - (r2) a TAO-shaped read mix, Zipf(`BENCH_ZIPF`, default 1.0) keys, warm caches.
//!
//! Every cache key is read at every node before the runs, so the project's caches are warm;
//! its hit rate over each run comes from the nodes' status counters. Around each run the
//! bench records the load average (`/proc/loadavg`) and the CPU time of the server under
//! test, the nodes, nats-server, mariadbd and wrk ([`machine`]), and reports CPU µs per
//! request. Before the runs it asks the gateway and the direct-MySQL service the same sample
//! of paths and compares the JSON they answer (they must agree: same data, same shapes).
//!
//! ```text
//! cargo build --release --workspace --bins
//! INSTAFACE_BIN_DIR=$PWD/target/release cargo bench -p instaface-gateway --bench reads
//! ```
//!
//! (`bench/run.sh` does this, and the write-scaling part of the datapath bench, in one
//! command.) Environment: `BENCH_SECONDS` (10), `BENCH_WARMUP_SECONDS` (2), `BENCH_ROUNDS`
//! (2), `BENCH_CONCURRENCY` (32), `BENCH_WRK_THREADS` (2), `BENCH_WORKLOADS` (`r1,r2`),
//! `BENCH_TARGETS` (`trivial,mysql,project,alone,innode`), `BENCH_USERS` (200), `BENCH_STATUSES` (400),
//! `BENCH_ZIPF` (1.0), `BENCH_PATHS` (paths drawn per workload, 100000),
//! `BENCH_MYSQL_POOL` (the direct-MySQL pool size, default the concurrency),
//! `BENCH_GATEWAY_THREADS` (the gateway's tokio worker threads, as `TOKIO_WORKER_THREADS`;
//! default tokio's, one per core), `BENCH_CLUSTER_KEY` (1: nodes and gateway share a cluster key, as in compose and the
//! launcher; 0: none), `BENCH_GATEWAY_LOG` (the gateway's `RUST_LOG`, default `info`, its
//! default). Progress goes to stderr, the report (Markdown) to stdout.
//!
//! Modules: [`workload`] (the paths each workload asks), [`wrk`] (the load generator and its
//! script), [`baselines`] (the two baseline servers and the server processes), [`project`]
//! (cluster, gateway, graph, warming, cache counters), [`machine`] (load average and CPU).

mod baselines;
mod machine;
mod project;
mod workload;
mod wrk;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use baselines::ServerProcess;
use machine::{CpuUse, LoadAvg, Watched};
use project::CacheDelta;
use rand::Rng as _;
use workload::{Op, Rng, TRIVIAL_PATH};
use wrk::{WrkArgs, WrkResult};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok()).unwrap_or(default)
}

fn env_f64(name: &str, default: f64) -> f64 {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok()).unwrap_or(default)
}

fn env_list(name: &str, default: &str) -> Vec<String> {
    std::env::var(name)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// The servers measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    Trivial,
    Project,
    /// The project with `BATCH_READS=false`: every read its own NATS request.
    ProjectAlone,
    Mysql,
    /// The gateway inside a node (`GATEWAY_LISTEN` on [`project::IN_NODE`]).
    InNode,
}

impl Target {
    fn label(self) -> &'static str {
        match self {
            Target::Trivial => "trivial axum",
            Target::Project => "**project** (gateway + 3 nodes)",
            Target::ProjectAlone => "project, reads alone (`BATCH_READS=false`)",
            Target::Mysql => "direct-MySQL",
            Target::InNode => "**project, gateway in a node** (`GATEWAY_LISTEN`)",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Target::Trivial => "trivial",
            Target::Project => "project",
            Target::ProjectAlone => "alone",
            Target::Mysql => "mysql",
            Target::InNode => "innode",
        }
    }

    /// A gateway in front of the cluster (its log is in the cluster's log directory).
    fn is_gateway(self) -> bool {
        matches!(self, Target::Project | Target::ProjectAlone | Target::InNode)
    }

    /// Its log file's name in the cluster's log directory (a gateway's).
    fn log_name(self) -> String {
        match self {
            Target::InNode => format!("{}.log", project::IN_NODE),
            t => format!("gateway-{}.log", t.key()),
        }
    }
}

/// The workloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Workload {
    R1,
    R2,
}

impl Workload {
    fn label(self) -> &'static str {
        match self {
            Workload::R1 => "r1 entity reads",
            Workload::R2 => "r2 TAO mix",
        }
    }
}

/// One measured (or warm-up) run.
struct Run {
    workload: Workload,
    target: Target,
    /// 0 for the warm-up.
    round: usize,
    result: Result<WrkResult, String>,
    load_before: LoadAvg,
    load_after: LoadAvg,
    cpu: CpuUse,
    cache: Option<CacheDelta>,
}

struct Settings {
    secs: Duration,
    warmup: Duration,
    rounds: usize,
    conc: usize,
    threads: usize,
    users: usize,
    statuses: usize,
    zipf: f64,
    paths: usize,
    pool: usize,
    cluster_key: bool,
    gateway_log: String,
    workloads: Vec<Workload>,
    targets: Vec<Target>,
}

impl Settings {
    fn from_env() -> Settings {
        let conc = env_usize("BENCH_CONCURRENCY", 32).max(1);
        let workloads = env_list("BENCH_WORKLOADS", "r1,r2")
            .iter()
            .filter_map(|w| match w.as_str() {
                "r1" => Some(Workload::R1),
                "r2" => Some(Workload::R2),
                other => {
                    eprintln!("BENCH_WORKLOADS: ignoring {other:?} (r1, r2)");
                    None
                }
            })
            .collect();
        let mut targets: Vec<Target> = env_list("BENCH_TARGETS", "trivial,mysql,project,alone,innode")
            .iter()
            .filter_map(|t| match t.as_str() {
                "trivial" => Some(Target::Trivial),
                "mysql" => Some(Target::Mysql),
                "project" => Some(Target::Project),
                "alone" => Some(Target::ProjectAlone),
                "innode" => Some(Target::InNode),
                other => {
                    eprintln!("BENCH_TARGETS: ignoring {other:?} (trivial, mysql, project, alone, innode)");
                    None
                }
            })
            .collect();
        targets.sort();
        targets.dedup();
        Settings {
            secs: Duration::from_secs(env_usize("BENCH_SECONDS", 10).max(1) as u64),
            warmup: Duration::from_secs(env_usize("BENCH_WARMUP_SECONDS", 2) as u64),
            rounds: env_usize("BENCH_ROUNDS", 2).max(1),
            conc,
            threads: env_usize("BENCH_WRK_THREADS", 2).clamp(1, conc),
            users: env_usize("BENCH_USERS", 200).max(2),
            statuses: env_usize("BENCH_STATUSES", 400).max(1),
            zipf: env_f64("BENCH_ZIPF", 1.0),
            paths: env_usize("BENCH_PATHS", 100_000).max(1),
            pool: env_usize("BENCH_MYSQL_POOL", conc).max(1),
            cluster_key: env_usize("BENCH_CLUSTER_KEY", 1) != 0,
            gateway_log: std::env::var("BENCH_GATEWAY_LOG").unwrap_or_else(|_| "info".into()),
            workloads,
            targets,
        }
    }
}

fn main() {
    if baselines::serve_if_asked() {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let code = rt.block_on(bench());
    drop(rt);
    std::process::exit(code);
}

/// The output of a command, trimmed (empty when it fails).
fn command_output(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_string())
        .unwrap_or_else(|| "?".into())
}

fn ms(us: f64) -> String {
    if us.is_finite() {
        format!("{:.2}", us / 1000.0)
    } else {
        "-".into()
    }
}

fn ratio(a: f64, b: f64) -> String {
    if a.is_finite() && b.is_finite() && b > 0.0 {
        format!("{:.2}", a / b)
    } else {
        "-".into()
    }
}

async fn bench() -> i32 {
    let s = Settings::from_env();
    let started = std::time::Instant::now();
    let hz = machine::clock_ticks();
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let ws = workspace.to_string_lossy().to_string();
    let date = command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    let commit = command_output("git", &["-C", &ws, "rev-parse", "--short", "HEAD"]);
    let dirty = command_output("git", &["-C", &ws, "status", "--porcelain", "--untracked-files=no"]).lines().count();
    let load_start = LoadAvg::now();
    eprintln!(
        "reads benchmark: {:?} per run, {} round(s), warm-up {:?}, concurrency {} over {} wrk thread(s), targets {:?}, workloads {:?}; binaries from {}; load average {load_start}",
        s.secs,
        s.rounds,
        s.warmup,
        s.conc,
        s.threads,
        s.targets,
        s.workloads,
        instaface_testkit::bin_dir().display()
    );
    if !wrk::available() {
        eprintln!("wrk is not installed: apt-get install -y wrk (bench/run.sh installs it)");
        return 2;
    }
    let dir = match project::work_dir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("cannot make a work directory: {e}");
            return 2;
        }
    };
    let code = match run_all(&s, &dir, hz).await {
        Ok(report) => {
            println!();
            println!("## Reads through the gateway (issue 13)");
            println!();
            println!(
                "{date}, commit `{commit}`{}, `{}` × {} (nproc), {} s per run, {} round(s), concurrency {} (wrk `-t{} -c{}`, keep-alive), load average at the start {load_start}.",
                if dirty > 0 { format!(" + {dirty} modified file(s)") } else { String::new() },
                cpu_model(),
                std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
                s.secs.as_secs(),
                s.rounds,
                s.conc,
                s.threads,
                s.conc
            );
            println!();
            println!("{}", report.join("\n"));
            0
        }
        Err(e) => {
            eprintln!("reads benchmark failed: {e}");
            1
        }
    };
    project::remove_work_dir(&dir);
    eprintln!("reads benchmark done in {:.0} s", started.elapsed().as_secs_f64());
    code
}

/// Everything between the setup and the report; returns the report's lines.
async fn run_all(s: &Settings, dir: &std::path::Path, hz: f64) -> Result<Vec<String>, String> {
    let mut rng = <Rng as rand::SeedableRng>::from_os_rng();
    let key = s.cluster_key.then(|| format!("{:032x}{:032x}", rng.random::<u128>(), rng.random::<u128>()));
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().map_err(|e| e.to_string())?;

    // ---- the cluster and its graph (the direct-MySQL service reads the same database)
    eprintln!("starting a 3-node cluster{}", if key.is_some() { " with a cluster key" } else { "" });
    let in_node_port = s.targets.contains(&Target::InNode).then(baselines::free_port);
    let cluster = project::start_cluster(key.as_deref(), in_node_port).await?;
    eprintln!("building the graph");
    let nodes = project::build_graph(&cluster, s.users, s.statuses, 8, &mut rng).await?;
    let (reads, failed) = project::warm(&cluster, &nodes).await;
    eprintln!("  warmed: {reads} reads at the {} nodes, {failed} failed", cluster.ids.len());

    // ---- the servers
    let mut servers: BTreeMap<Target, ServerProcess> = BTreeMap::new();
    let probe = format!("/api/entities/{}", nodes[0].id);
    for t in &s.targets {
        let mut server = match t {
            Target::Trivial => ServerProcess::baseline("trivial", "trivial", "", 1, &dir.join("trivial.log")),
            Target::Mysql => ServerProcess::baseline(
                "direct-MySQL",
                "mysql",
                &project::mysql_url(&cluster),
                s.pool,
                &dir.join("mysql.log"),
            ),
            Target::Project => project::start_gateway(&cluster, key.as_deref(), &s.gateway_log, true),
            Target::ProjectAlone => project::start_gateway(&cluster, key.as_deref(), &s.gateway_log, false),
            Target::InNode => ServerProcess::inside(
                "gateway in a node",
                format!("http://127.0.0.1:{}", in_node_port.unwrap_or_default()),
                cluster.pid(project::IN_NODE),
            ),
        };
        let path = if *t == Target::Trivial { TRIVIAL_PATH } else { probe.as_str() };
        server.wait_ready(&http, path, Duration::from_secs(30)).await.map_err(|e| {
            let log = if t.is_gateway() {
                cluster.log_dir().join(t.log_name())
            } else {
                dir.join(format!("{}.log", t.key()))
            };
            format!("{e}; log: {}", log.display())
        })?;
        eprintln!("  {} ready at {} (pid {})", server.name, server.base, server.pid());
        servers.insert(*t, server);
    }

    // ---- the paths
    let r1 = workload::r1_paths(&nodes, s.paths, &mut rng);
    let (r2, mix_counts) = workload::r2_paths(&nodes, s.paths, s.zipf, &mut rng);
    let io = |e: std::io::Error| e.to_string();
    let r1_file = workload::write_paths(dir, "r1.txt", &r1).map_err(io)?;
    let r2_file = workload::write_paths(dir, "r2.txt", &r2).map_err(io)?;
    let trivial_file = workload::write_paths(dir, "trivial.txt", &[TRIVIAL_PATH.to_string()]).map_err(io)?;
    let script = wrk::write_script(dir, s.threads).map_err(io)?;

    // ---- the gateway and the direct-MySQL service must answer alike
    let mut report_notes = Vec::new();
    for (gw, db) in
        [Target::Project, Target::InNode].iter().filter_map(|t| Some((servers.get(t)?, servers.get(&Target::Mysql)?)))
    {
        let sample: Vec<&String> = r2.iter().take(300).chain(r1.iter().take(100)).collect();
        let (mut same, mut differ, mut failed) = (0, 0, 0);
        for path in &sample {
            let get = |base: &str| {
                let url = format!("{base}{path}");
                let http = http.clone();
                async move {
                    let r = http.get(url).send().await.map_err(|e| e.to_string())?;
                    let status = r.status().as_u16();
                    let body: serde_json::Value = r.json().await.map_err(|e| e.to_string())?;
                    Ok::<_, String>((status, body))
                }
            };
            match (get(&gw.base).await, get(&db.base).await) {
                (Ok(a), Ok(b)) if a == b && a.0 == 200 => same += 1,
                (Ok(a), Ok(b)) => {
                    differ += 1;
                    if differ <= 3 {
                        eprintln!(
                            "  DIFFERENT answers to {path}: gateway {} {}, direct-MySQL {} {}",
                            a.0, a.1, b.0, b.1
                        );
                    }
                }
                (a, b) => {
                    failed += 1;
                    if failed <= 3 {
                        eprintln!("  no answer to {path}: gateway {:?}, direct-MySQL {:?}", a.err(), b.err());
                    }
                }
            }
        }
        eprintln!("  {} vs direct-MySQL on {} sample paths: {same} identical 200 answers, {differ} different, {failed} failed", gw.name, sample.len());
        report_notes.push(format!(
            "Same answers: the {} and the direct-MySQL service were asked the same {} paths (300 of r2, 100 of r1) before the runs: {same} identical 200 answers (status and JSON), {differ} different, {failed} failed.",
            gw.name,
            sample.len()
        ));
    }

    // ---- the runs
    let mut watched_common = vec![
        ("nodes", project::node_pids(&cluster)),
        ("nats-server", machine::pids_named(&["nats-server"])),
        ("mariadbd", machine::pids_named(&["mariadbd", "mysqld"])),
    ];
    if watched_common[1].1.len() > 1 {
        eprintln!("  note: {} nats-server processes run; their CPU is summed", watched_common[1].1.len());
    }
    watched_common.retain(|(_, pids)| !pids.is_empty());
    let mut runs: Vec<Run> = Vec::new();
    for &w in &s.workloads {
        let paths_file = match w {
            Workload::R1 => &r1_file,
            Workload::R2 => &r2_file,
        };
        eprintln!("({}) {}", if w == Workload::R1 { "r1" } else { "r2" }, w.label());
        for round in 0..=s.rounds {
            if round == 0 && s.warmup.is_zero() {
                continue;
            }
            let mut order: Vec<Target> = s.targets.clone();
            if round % 2 == 0 && round > 0 {
                order.reverse();
            }
            for t in order {
                let server = &servers[&t];
                let args = WrkArgs {
                    threads: s.threads,
                    connections: s.conc,
                    duration: if round == 0 { s.warmup } else { s.secs },
                    script: script.clone(),
                };
                let file = if t == Target::Trivial { &trivial_file } else { paths_file };
                let mut watched = Watched { groups: vec![("server", vec![server.pid()])] };
                watched.groups.extend(watched_common.iter().cloned());
                let status_before = if t.is_gateway() { Some(cluster.statuses().await) } else { None };
                let load_before = LoadAvg::now();
                let cpu_before = watched.snapshot();
                let result = wrk::run(&args, &server.base, file).await;
                let cpu = watched.snapshot().since(&cpu_before, hz);
                let load_after = LoadAvg::now();
                let cache = match status_before {
                    Some(before) => Some(CacheDelta::between(&before, &cluster.statuses().await)),
                    None => None,
                };
                let what = if round == 0 { "warm-up".to_string() } else { format!("round {round}") };
                match &result {
                    Ok(r) => eprintln!(
                        "    {what}, {}: {:.0} req/s, p50 {} ms, p99 {} ms, errors {}, load {load_before} -> {load_after}{}",
                        t.key(),
                        r.rate(),
                        ms(r.p50_us),
                        ms(r.p99_us),
                        r.errors(),
                        cache.as_ref().map(|c| format!(", hit rate {:.2} % ({} misses)", 100.0 * c.hit_rate(), c.misses)).unwrap_or_default()
                    ),
                    Err(e) => eprintln!("    {what}, {}: FAILED: {e}", t.key()),
                }
                if let Some(c) = cache.as_ref().and_then(|c| c.leader_changed.clone()) {
                    eprintln!("    NOTE: the leader changed during the run: {c}");
                }
                runs.push(Run { workload: w, target: t, round, result, load_before, load_after, cpu, cache });
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    drop(servers);
    Ok(report(s, &runs, &mix_counts, &report_notes, nodes.len()))
}

/// Means over the measured rounds of one workload and target.
struct Mean {
    rate: f64,
    p50: f64,
    p99: f64,
    max: f64,
    errors: u64,
    requests: u64,
    n: usize,
}

fn mean_of(runs: &[&Run]) -> Mean {
    let ok: Vec<&WrkResult> = runs.iter().filter_map(|r| r.result.as_ref().ok()).collect();
    let n = ok.len();
    let avg = |f: &dyn Fn(&WrkResult) -> f64| {
        if n == 0 {
            f64::NAN
        } else {
            ok.iter().map(|r| f(r)).sum::<f64>() / n as f64
        }
    };
    Mean {
        rate: avg(&|r| r.rate()),
        p50: avg(&|r| r.p50_us),
        p99: avg(&|r| r.p99_us),
        max: ok.iter().map(|r| r.max_us).fold(f64::NAN, f64::max),
        errors: ok.iter().map(|r| r.errors()).sum(),
        requests: ok.iter().map(|r| r.requests).sum(),
        n,
    }
}

fn report(s: &Settings, runs: &[Run], mix: &[usize; 4], notes: &[String], n_entities: usize) -> Vec<String> {
    let mut out = Vec::new();
    let measured: Vec<&Run> = runs.iter().filter(|r| r.round > 0).collect();
    let find = |w: Workload, t: Target, round: usize| {
        measured
            .iter()
            .find(|r| r.workload == w && r.target == t && r.round == round)
            .and_then(|r| r.result.as_ref().ok())
    };
    out.push("| workload | target | run | req/s | ÷ direct-MySQL | ÷ trivial | p50 ms | p99 ms | max ms | requests | errors | cache hit rate | load avg before → after |".into());
    out.push("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |".into());
    for &w in &s.workloads {
        for &t in &s.targets {
            let mine: Vec<&Run> = measured.iter().copied().filter(|r| r.workload == w && r.target == t).collect();
            for r in &mine {
                let hit =
                    r.cache.as_ref().map(|c| format!("{:.2} %", 100.0 * c.hit_rate())).unwrap_or_else(|| "-".into());
                let load = format!("{} → {}", r.load_before, r.load_after);
                match &r.result {
                    Ok(x) => {
                        let vs = |b: Target| {
                            if b == t {
                                "-".to_string()
                            } else {
                                find(w, b, r.round).map(|y| ratio(x.rate(), y.rate())).unwrap_or_else(|| "-".into())
                            }
                        };
                        out.push(format!(
                            "| {} | {} | round {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {hit} | {load} |",
                            w.label(),
                            t.label(),
                            r.round,
                            x.rate(),
                            vs(Target::Mysql),
                            vs(Target::Trivial),
                            ms(x.p50_us),
                            ms(x.p99_us),
                            ms(x.max_us),
                            x.requests,
                            x.errors_text()
                        ));
                    }
                    Err(e) => out.push(format!(
                        "| {} | {} | round {} | FAILED: {} | | | | | | | | {hit} | {load} |",
                        w.label(),
                        t.label(),
                        r.round,
                        e.replace('|', "/")
                    )),
                }
            }
            let m = mean_of(&mine);
            let base = |b: Target| {
                if b == t {
                    return "-".to_string();
                }
                let theirs: Vec<&Run> = measured.iter().copied().filter(|r| r.workload == w && r.target == b).collect();
                if theirs.is_empty() {
                    "-".into()
                } else {
                    format!("**{}**", ratio(m.rate, mean_of(&theirs).rate))
                }
            };
            let cache: Vec<&CacheDelta> = mine.iter().filter_map(|r| r.cache.as_ref()).collect();
            let hit = if cache.is_empty() {
                "-".to_string()
            } else {
                let (h, mi): (u64, u64) = cache.iter().fold((0, 0), |(h, m), c| (h + c.hits, m + c.misses));
                format!("{:.2} %", 100.0 * h as f64 / (h + mi).max(1) as f64)
            };
            out.push(format!(
                "| {} | {} | **mean of {}** | **{:.0}** | {} | {} | {} | {} | {} | {} | {} | {hit} | |",
                w.label(),
                t.label(),
                m.n,
                m.rate,
                base(Target::Mysql),
                base(Target::Trivial),
                ms(m.p50),
                ms(m.p99),
                ms(m.max),
                m.requests,
                if m.errors == 0 { "0".to_string() } else { format!("**{}**", m.errors) }
            ));
        }
    }
    out.push(String::new());
    out.push(
        "(ms: wrk's latency percentiles, per run; a mean row averages the rounds' req/s, p50 and p99 and takes the largest max. \
         A round's ratios divide by the same round's baseline run, a mean's by the baseline's mean. Errors: answers that were not 2xx \
         plus socket errors (connect, read, write, timeout after 5 s), none hidden. Cache hit rate: hits / (hits + misses) summed over \
         the 3 nodes' status counters across the run. Load average: `/proc/loadavg` (1, 5, 15 min) just before and just after the run.)"
    .to_string());
    out.push(String::new());
    let total: usize = mix.iter().sum();
    out.push(format!(
        "Graph: {n_entities} entities ({} users, {} statuses requested; 4 `friend`s per user, 1 `posted` and 3 `likes` per status, each with its inverse), \
         built through the bus client; every entity and association list read once at every node before the runs. \
         r1: `GET /api/entities/{{id}}`, ids uniform. r2: keys Zipf(s = {}) over all entities in a random order; of the {total} paths drawn: {}. \
         The gateway has no route for TAO's assoc_get (an association named by both ends) nor for a count alone, so those use the list route \
         with `?limit=1` and `?limit=0` (whose answer carries the count). The trivial handler answers its one fixed route in both workloads.",
        s.users,
        s.statuses,
        s.zipf,
        Op::ALL
            .iter()
            .map(|o| format!("{} {:.1} %", o.label(), 100.0 * mix[*o as usize] as f64 / total.max(1) as f64))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    for n in notes {
        out.push(String::new());
        out.push(n.clone());
    }
    // The CPU each process group used per request, over the measured rounds.
    out.push(String::new());
    out.push("CPU per request (µs of CPU time per answered request, summed over the measured rounds; `/proc/<pid>/stat`, 10 ms ticks):".into());
    out.push(String::new());
    out.push("| workload | target | server process | 3 nodes | nats-server | mariadbd | wrk | whole machine | machine busy |".into());
    out.push("| --- | --- | --- | --- | --- | --- | --- | --- | --- |".into());
    for &w in &s.workloads {
        for &t in &s.targets {
            let mine: Vec<&Run> = measured.iter().copied().filter(|r| r.workload == w && r.target == t).collect();
            let requests: u64 = mine.iter().filter_map(|r| r.result.as_ref().ok()).map(|r| r.requests).sum();
            if requests == 0 {
                continue;
            }
            let per = |secs: f64| format!("{:.1}", secs * 1e6 / requests as f64);
            let group = |g: &str| per(mine.iter().map(|r| r.cpu.secs.get(g).copied().unwrap_or(0.0)).sum());
            let busy: f64 = mine.iter().map(|r| r.cpu.machine_busy_secs).sum();
            let elapsed: f64 = mine.iter().map(|r| r.cpu.elapsed).sum();
            let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64;
            out.push(format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {:.0} % |",
                w.label(),
                t.label(),
                group("server"),
                group("nodes"),
                group("nats-server"),
                group("mariadbd"),
                per(mine.iter().map(|r| r.cpu.wrk_secs).sum()),
                per(busy),
                100.0 * busy / (elapsed * cores).max(1e-9)
            ));
        }
    }
    out.push(String::new());
    out.push("(The server process is the gateway for the project — for the gateway in a node, that node's process, which the 3 nodes' column counts too — the baseline's own process otherwise; the nodes, nats-server and mariadbd run through every run, so a baseline's row shows their idle cost. \"Machine busy\" is the share of all CPUs busy during the runs, `/proc/stat`.)".into());
    // Where the project's hits came from.
    let project_runs: Vec<&Run> = measured.iter().copied().filter(|r| r.cache.is_some()).collect();
    if !project_runs.is_empty() {
        out.push(String::new());
        out.push(
            "The project's cache counters per run (hits per node; misses and fills summed over the nodes):".into(),
        );
        out.push(String::new());
        for r in project_runs {
            let c = r.cache.as_ref().expect("cache");
            out.push(format!(
                "- {}, round {}: hits {}; misses {}, fills {}{}",
                r.workload.label(),
                r.round,
                c.per_node.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", "),
                c.misses,
                c.fills,
                c.leader_changed.as_ref().map(|l| format!("; **the leader changed**: {l}")).unwrap_or_default()
            ));
        }
    }
    let warmups: Vec<String> = runs
        .iter()
        .filter(|r| r.round == 0)
        .map(|r| match &r.result {
            Ok(x) => {
                format!("{} / {}: {:.0} req/s, {} errors", r.workload.label(), r.target.key(), x.rate(), x.errors())
            }
            Err(e) => format!("{} / {}: FAILED {e}", r.workload.label(), r.target.key()),
        })
        .collect();
    if !warmups.is_empty() {
        out.push(String::new());
        out.push(format!("Warm-up runs ({} s each, not in the table): {}.", s.warmup.as_secs(), warmups.join("; ")));
    }
    out
}
