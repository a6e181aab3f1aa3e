//! Test support for multi-process tests: a [`Cluster`] of real `instaface-node` processes
//! on real NATS, MySQL and Redis, with a subject prefix, a database and a Redis prefix of
//! its own, so tests run in parallel without seeing each other.
//!
//! Binaries are taken from the cargo target directory (`target/debug` by default,
//! `INSTAFACE_BIN_DIR` to override); the README's test command builds them before the tests run.
//! Node logs go to `target/test-logs/<prefix>/<node>.log`.
//!
//! A test that cannot run for want of a tool skips itself loudly, and fails under `CI=true`
//! ([`skip_or_fail_in_ci`]).
//!
//! [`netsplit::NatsMesh`] runs NATS servers that a test can really partition from each
//! other; [`Cluster::start_placed`] puts each node on a server of its own.

pub mod history;
pub mod netsplit;
pub mod zipf;

pub use netsplit::NatsMesh;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use instaface_bus::config::BusArgs;
use instaface_bus::graph_client::{ClientConfig, GraphClient};
use instaface_bus::membership::Membership;
use instaface_bus::messages::Unplug;
use instaface_bus::{Bus, NodeId, Subjects};

/// Where the workspace's binaries are.
pub fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("INSTAFACE_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| manifest.join("../target"));
    target.join("debug")
}

/// The path of a workspace binary (`instaface-node`, `instaface-gateway`, `instaface-bot`).
pub fn binary(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first (the README's test command does)",
        path.display()
    );
    path
}

/// Whether the tests run in CI: `CI` is set to anything but `false` or `0` (`.ci/run` sets
/// `CI=true`).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// For a test that cannot run because something it needs is missing (a tool, a browser):
/// in CI this fails the test with `why`, since a test that passes without running must not
/// go unnoticed there; elsewhere it prints a SKIPPED line that `cargo test` shows even
/// when it captures the test's output, and the caller returns.
#[track_caller]
pub fn skip_or_fail_in_ci(test: &str, why: &str) {
    assert!(!in_ci(), "{test} cannot run, and CI=true does not allow skipping it: {why}");
    use std::io::Write;
    // Written to the stderr handle itself, which the test harness does not capture.
    let _ = writeln!(std::io::stderr(), "\nSKIPPED {test}: {why} (with CI=true this fails)\n");
}

/// A round trip to the NATS server on `bus`'s connection: when it returns, the server has
/// processed everything sent on it before — subscriptions included, which `flush` (it only
/// empties the socket) does not promise: another connection's message could still overtake
/// a fresh SUB. It hears its own message on a fresh inbox (the test server has no roles).
pub async fn round_trip(bus: &Bus) {
    let inbox = bus.new_inbox();
    let mut echo = bus.raw().subscribe(inbox.clone()).await.expect("subscribe to an inbox");
    bus.raw().publish(inbox, "".into()).await.expect("publish to the inbox");
    let heard = tokio::time::timeout(Duration::from_secs(5), futures::StreamExt::next(&mut echo)).await;
    assert!(matches!(heard, Ok(Some(_))), "no round trip to the NATS server within 5 s");
}

/// A port on 127.0.0.1 that nothing listens on right now (for a process to bind next).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// Waits for `cond` to hold, polling every 20 ms, failing with `what` after `timeout`.
pub async fn wait_until<F: FnMut() -> bool>(timeout: Duration, what: &str, mut cond: F) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits for the async condition `cond` to hold, polling every 20 ms, failing with `what`
/// after `timeout`.
pub async fn wait_until_async<F, Fut>(timeout: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    poll_until(timeout, what, || {
        let held = cond();
        async move {
            if held.await {
                Ok(())
            } else {
                Err(String::new())
            }
        }
    })
    .await
}

/// Polls `probe` every 20 ms until it gives `Ok(value)`, and returns the value; fails
/// after `timeout` with `what` and the last `Err` (what the probe saw instead).
pub async fn poll_until<T, F, Fut>(timeout: Duration, what: &str, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    match poll_within(timeout, probe).await {
        Ok(value) => value,
        Err(seen) => panic!(
            "timed out after {timeout:?} waiting for {what}{}",
            if seen.is_empty() { String::new() } else { format!(": {seen}") }
        ),
    }
}

/// [`poll_until`] for a caller that reports a timeout itself: the last `Err` after
/// `timeout` (a negative control counts what a check still sees then, rather than fail).
pub async fn poll_within<T, E, F, Fut>(timeout: Duration, mut probe: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match probe().await {
            Ok(value) => return Ok(value),
            Err(seen) if Instant::now() >= deadline => return Err(seen),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Environment for particular nodes, applied after [`ClusterOpts::env`] (so it wins), at
/// every (re)start: e.g. each node's own `NATS_URL` ([`NatsMesh::node_env`]).
pub type NodeEnv = Vec<(NodeId, Vec<(String, String)>)>;

/// How to start a cluster.
#[derive(Clone, Debug)]
pub struct ClusterOpts {
    pub nodes: usize,
    /// Extra environment for every node (e.g. `INVALIDATION=async`).
    pub env: Vec<(String, String)>,
    /// Fast timing (heartbeat 30 ms, election 150–300 ms) instead of the defaults.
    pub fast: bool,
    /// With several entries, the graph in that many shards (`SHARDS`), shard `k`'s
    /// database on the MySQL server at 127.0.0.1 and port `shard_ports[k]` (the services
    /// script runs a second server on [`MYSQL2_PORT`]). Empty: one shard on 3306.
    pub shard_ports: Vec<u16>,
}

/// The port of the second MariaDB server `compose/services.sh` runs, for sharded tests.
pub const MYSQL2_PORT: u16 = 3307;

impl Default for ClusterOpts {
    fn default() -> Self {
        ClusterOpts { nodes: 3, env: Vec::new(), fast: false, shard_ports: Vec::new() }
    }
}

impl ClusterOpts {
    fn shards(&self) -> instaface_bus::shards::Shards {
        instaface_bus::shards::Shards::new(self.shard_ports.len() as u32).unwrap_or_default()
    }
}

/// A running test cluster. Dropping it kills its processes, drops its database and
/// removes its Redis membership.
pub struct Cluster {
    pub prefix: String,
    pub database: String,
    pub ids: Vec<NodeId>,
    pub bus: Bus,
    pub client: GraphClient,
    pub membership: Membership,
    opts: ClusterOpts,
    node_env: BTreeMap<NodeId, Vec<(String, String)>>,
    procs: BTreeMap<NodeId, Child>,
    log_dir: PathBuf,
}

impl Cluster {
    /// Starts `opts.nodes` nodes named `n1…nN`, all given the full `MEMBERS` list.
    pub async fn start(name: &str, opts: ClusterOpts) -> Cluster {
        Self::start_on_nats(name, opts, "nats://127.0.0.1:4222").await
    }

    /// Like [`Cluster::start`], with the nodes and the test's own client on the NATS
    /// server(s) of `nats_url` (comma-separated, as `NATS_URL`) instead of 127.0.0.1:4222.
    /// A `NATS_URL` in `opts.env` still wins for the nodes.
    pub async fn start_on_nats(name: &str, opts: ClusterOpts, nats_url: &str) -> Cluster {
        Self::start_placed(name, opts, nats_url, NodeEnv::new()).await
    }

    /// Like [`Cluster::start_on_nats`], with environment of their own for some nodes,
    /// applied after `opts.env`: with [`NatsMesh::node_env`] each node gets the `NATS_URL`
    /// of one server only, e.g.
    /// `Cluster::start_placed("x", opts, mesh.url(0), mesh.node_env(3))` puts n1 and the
    /// test's own client on server 0, n2 on server 1 and n3 on server 2.
    pub async fn start_placed(name: &str, mut opts: ClusterOpts, nats_url: &str, node_env: NodeEnv) -> Cluster {
        opts.env.insert(0, ("NATS_URL".into(), nats_url.into()));
        let tag = format!("{:08x}", rand::random::<u32>());
        let prefix = format!("t{tag}.{name}");
        let database = format!("instaface_t{tag}");
        let mut args = BusArgs::local(&prefix);
        args.nats_url = nats_url.into();
        // With a cluster key for the nodes, the test's own client holds it too (it sends
        // unplug commands, which must be signed).
        if let Some((_, key)) = opts.env.iter().find(|(k, _)| k == "CLUSTER_KEY") {
            args.cluster_key = Some(instaface_bus::auth::ClusterKey::parse(key).expect("CLUSTER_KEY"));
        }
        // With several shards, the test's bus addresses shard 0's group (the cluster-wide
        // subjects are the same from every shard).
        let bus = Bus::connect(&args, &format!("test-{name}")).await.expect("nats").for_shard(0, opts.shards());
        wait_until(Duration::from_secs(10), "the test's NATS connection", || bus.is_connected()).await;
        args.shards = opts.shards();
        let client = GraphClient::new(bus.clone(), ClientConfig { shards: opts.shards(), ..ClientConfig::default() })
            .await
            .expect("graph client");
        let membership = Membership::connect(&args.redis_url, &Subjects::new(prefix.clone())).await.expect("redis");
        let ids = (1..=opts.nodes).map(|i| format!("n{i}")).collect();
        let log_dir = bin_dir().join("../test-logs").join(&prefix);
        std::fs::create_dir_all(&log_dir).expect("log dir");
        let node_env = node_env.into_iter().collect();
        let mut cluster =
            Cluster { prefix, database, ids, bus, client, membership, opts, node_env, procs: BTreeMap::new(), log_dir };
        for id in cluster.ids.clone() {
            cluster.spawn(&id);
        }
        cluster
    }

    /// Starts (or restarts) node `id`.
    pub fn spawn(&mut self, id: &str) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_dir.join(format!("{id}.log")))
            .expect("log file");
        let mut cmd = Command::new(binary("instaface-node"));
        cmd.env("NODE_ID", id)
            .env("MEMBERS", self.ids.join(","))
            .env("INSTAFACE_PREFIX", &self.prefix)
            .env("MYSQL_URL", format!("mysql://root@127.0.0.1:3306/{}", self.database))
            .env("NATS_URL", "nats://127.0.0.1:4222")
            .env("REDIS_URL", "redis://127.0.0.1:6379")
            .env("INSTAFACE_TEST_HOOKS", "true")
            .env("STATE_DIR", &self.log_dir)
            .env("RUST_LOG", std::env::var("NODE_LOG").unwrap_or_else(|_| "info".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log));
        if self.opts.shards().split() {
            let urls: Vec<String> = self.databases().iter().map(|(url, _, _)| url.clone()).collect();
            cmd.env("SHARDS", urls.len().to_string()).env("SHARD_MYSQL_URLS", urls.join(","));
        }
        if self.opts.fast {
            cmd.env("HEARTBEAT_MS", "30").env("ELECTION_MIN_MS", "150").env("ELECTION_MAX_MS", "300");
        }
        for (k, v) in self.opts.env.iter().chain(self.node_env.get(id).into_iter().flatten()) {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn instaface-node");
        self.procs.insert(id.to_string(), child);
    }

    /// Replaces node `id`'s own environment (see [`NodeEnv`]) for its next
    /// [`Cluster::spawn`], e.g. to restart it on another NATS server.
    pub fn set_node_env(&mut self, id: &str, env: Vec<(String, String)>) {
        self.node_env.insert(id.to_string(), env);
    }

    /// The OS pid of node `id`, if it is running.
    pub fn pid_of(&self, id: &str) -> Option<u32> {
        self.procs.get(id).map(|c| c.id())
    }

    /// The OS pid of node `id`.
    pub fn pid(&self, id: &str) -> u32 {
        self.procs[id].id()
    }

    /// Sends `signal` (e.g. "KILL", "TERM", "STOP", "CONT") to node `id`.
    pub fn signal(&self, id: &str, signal: &str) {
        let status =
            Command::new("kill").arg(format!("-{signal}")).arg(self.pid(id).to_string()).status().expect("kill");
        assert!(status.success(), "kill -{signal} {id}");
    }

    /// Kills node `id` with SIGKILL and reaps it.
    pub fn kill9(&mut self, id: &str) {
        if let Some(mut child) = self.procs.remove(id) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits for node `id` to exit (after SIGTERM, say); returns its exit code.
    pub async fn wait_exit(&mut self, id: &str, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            let child = self.procs.get_mut(id)?;
            if let Ok(Some(status)) = child.try_wait() {
                self.procs.remove(id);
                return status.code();
            }
            assert!(Instant::now() < deadline, "{id} did not exit within {timeout:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether node `id`'s process is still running.
    pub fn is_running(&mut self, id: &str) -> bool {
        match self.procs.get_mut(id) {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Unplugs node `id` from its peers (or plugs it back) through `P.control.unplug`;
    /// clients still reach it.
    pub async fn unplug(&self, id: &str, unplugged: bool) {
        self.send_unplug(Unplug { node: id.to_string(), unplugged, clients: false }).await;
    }

    /// Isolates node `id` from its peers *and* from clients (or plugs it back in).
    pub async fn isolate(&self, id: &str, isolated: bool) {
        self.send_unplug(Unplug { node: id.to_string(), unplugged: isolated, clients: isolated }).await;
    }

    async fn send_unplug(&self, cmd: Unplug) {
        self.bus.publish_signed(self.bus.subjects().control_unplug(), &cmd).await.expect("publish unplug");
        self.bus.flush().await.expect("flush");
    }

    /// Waits until the client tracks a leader (optionally one that is not `not`, with a
    /// term above `above`).
    pub async fn wait_leader(&self, timeout: Duration, not: Option<&str>, above: u64) -> (NodeId, u64) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some((l, t)) = self.client.leader_info().current() {
                if Some(l.as_str()) != not && t > above {
                    return (l.clone(), t);
                }
            }
            assert!(
                Instant::now() < deadline,
                "no leader (not {not:?}, term > {above}) within {timeout:?}; logs in {}",
                self.log_dir.display()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The node's status from its micro-service endpoint (`None` if it does not answer).
    pub async fn status(&self, id: &str) -> Option<instaface_bus::messages::NodeStatus> {
        self.bus.request(self.bus.subjects().node(id, "status"), &(), Duration::from_millis(500)).await.ok()
    }

    /// The status of every node of the cluster that answers, by id.
    pub async fn statuses(&self) -> BTreeMap<String, instaface_bus::messages::NodeStatus> {
        let mut out = BTreeMap::new();
        for id in &self.ids {
            if let Some(s) = self.status(id).await {
                out.insert(id.clone(), s);
            }
        }
        out
    }

    /// Waits until every running, plugged node holds a read lease (so reads are served
    /// by followers), up to `timeout`.
    pub async fn wait_serving(&self, ids: &[&str], timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let mut all = true;
            for id in ids {
                match self.status(id).await {
                    Some(s) if s.lease_ms > 0 => {}
                    _ => all = false,
                }
            }
            if all {
                return;
            }
            assert!(Instant::now() < deadline, "nodes {ids:?} did not all hold a read lease within {timeout:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A bus and a graph client of this cluster's on the NATS server(s) of `nats_url`
    /// (e.g. one server of a [`NatsMesh`], to be a client on one side of a partition).
    pub async fn client_on(&self, nats_url: &str) -> (Bus, GraphClient) {
        let mut args = BusArgs::local(&self.prefix);
        args.nats_url = nats_url.into();
        let shards = self.opts.shards();
        let bus = Bus::connect(&args, "test-client").await.expect("nats").for_shard(0, shards);
        wait_until(Duration::from_secs(10), "a test client's NATS connection", || bus.is_connected()).await;
        let client = GraphClient::new(bus.clone(), ClientConfig { shards, ..ClientConfig::default() })
            .await
            .expect("graph client");
        (bus, client)
    }

    /// A MySQL connection to the cluster's database (shard 0's), for checking what reached it.
    pub async fn mysql(&self) -> mysql_async::Conn {
        self.mysql_of(0).await
    }

    /// A MySQL connection to shard `k`'s database.
    pub async fn mysql_of(&self, k: usize) -> mysql_async::Conn {
        let (url, _, _) = &self.databases()[k];
        mysql_async::Conn::from_url(url.as_str()).await.expect("mysql")
    }

    /// Each shard's database: its URL, server port and name (one entry with one shard).
    pub fn databases(&self) -> Vec<(String, u16, String)> {
        if !self.opts.shards().split() {
            let url = format!("mysql://root@127.0.0.1:3306/{}", self.database);
            return vec![(url, 3306, self.database.clone())];
        }
        let name = |k: usize| if k == 0 { self.database.clone() } else { format!("{}_s{k}", self.database) };
        (self.opts.shard_ports.iter().enumerate())
            .map(|(k, &port)| (format!("mysql://root@127.0.0.1:{port}/{}", name(k)), port, name(k)))
            .collect()
    }

    pub fn log_dir(&self) -> &PathBuf {
        &self.log_dir
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (_, mut child) in std::mem::take(&mut self.procs) {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Best-effort cleanup with the command-line clients (no runtime needed in Drop).
        for (_, port, name) in self.databases() {
            let drop = format!("DROP DATABASE IF EXISTS `{name}`");
            let _ = Command::new("mariadb")
                .args(["-h", "127.0.0.1", "-P", &port.to_string(), "-u", "root", "-e", &drop])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "DEL", &format!("{}:members", self.prefix)])
            .stdout(Stdio::null())
            .status();
    }
}
