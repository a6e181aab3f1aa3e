//! Instaface on a three-server NATS cluster (loopback ports, as
//! `compose/docker-compose.nats-cluster.yml` runs it in containers): every node and the
//! test's own client are given all three servers; killing the server the leader is
//! connected to must not stop the cluster from serving — the leader (and whoever else was
//! on that server) reconnects to another one, and a write and reads succeed.
//!
//! Needs `nats-server` (`/usr/sbin/nats-server`, installed by compose/services.sh),
//! `instaface-node` built, MariaDB and Redis.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use instaface_bus::graph::{Attributes, Consistency};
use instaface_testkit::{bin_dir, free_port, Cluster, ClusterOpts};
use serde_json::Value;

fn nats_server_binary() -> PathBuf {
    let sbin = PathBuf::from("/usr/sbin/nats-server");
    if sbin.exists() {
        return sbin;
    }
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|p| p.join("nats-server")).find(|p| p.exists()))
        .expect("nats-server is not installed (compose/services.sh installs it)")
}

/// One NATS server of the test cluster.
struct Server {
    name: String,
    client_port: u16,
    monitor_port: u16,
    child: Option<Child>,
}

impl Server {
    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.client_port)
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Three routed NATS servers; dropping it kills them.
struct NatsCluster {
    servers: Vec<Server>,
    http: reqwest::Client,
}

impl NatsCluster {
    fn start(tag: &str, log_dir: &Path) -> NatsCluster {
        let bin = nats_server_binary();
        let route_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let mut servers = Vec::new();
        for i in 0..3 {
            let name = format!("nats-{}", i + 1);
            let (client_port, monitor_port) = (free_port(), free_port());
            let routes: Vec<String> =
                (0..3).filter(|&j| j != i).map(|j| format!("nats://127.0.0.1:{}", route_ports[j])).collect();
            let log = std::fs::File::create(log_dir.join(format!("{name}.log"))).expect("log file");
            let child = Command::new(&bin)
                .args(["-a", "127.0.0.1", "-p", &client_port.to_string(), "-m", &monitor_port.to_string()])
                .args(["-n", &format!("{tag}-{name}"), "--cluster_name", &format!("{tag}-cluster")])
                .args(["-cluster", &format!("nats://127.0.0.1:{}", route_ports[i]), "-routes", &routes.join(",")])
                .stdin(Stdio::null())
                .stdout(Stdio::from(log.try_clone().expect("log")))
                .stderr(Stdio::from(log))
                .spawn()
                .expect("spawn nats-server");
            servers.push(Server { name, client_port, monitor_port, child: Some(child) });
        }
        NatsCluster {
            servers,
            http: reqwest::Client::builder().timeout(Duration::from_secs(2)).build().expect("http client"),
        }
    }

    /// All client URLs, comma-separated (as `NATS_URL`).
    fn urls(&self) -> String {
        self.servers.iter().map(Server::url).collect::<Vec<_>>().join(",")
    }

    /// A monitoring endpoint of server `i` (`routez`, `connz`, …), `None` if it does not answer.
    async fn monitor(&self, i: usize, endpoint: &str) -> Option<Value> {
        let url = format!("http://127.0.0.1:{}/{endpoint}", self.servers[i].monitor_port);
        self.http.get(url).send().await.ok()?.json().await.ok()
    }

    /// Waits until every running server has a route to every other running server.
    async fn wait_routed(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let running: Vec<usize> = (0..self.servers.len()).filter(|&i| self.servers[i].child.is_some()).collect();
        loop {
            let mut routed = 0;
            for &i in &running {
                if let Some(routez) = self.monitor(i, "routez").await {
                    if routez["num_routes"].as_u64().unwrap_or(0) as usize >= running.len() - 1 {
                        routed += 1;
                    }
                }
            }
            if routed == running.len() {
                return;
            }
            assert!(Instant::now() < deadline, "the NATS servers did not all route to each other within {timeout:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The index of the running server that has a client connection named `name`.
    async fn server_of(&self, name: &str) -> Option<usize> {
        for i in 0..self.servers.len() {
            if self.servers[i].child.is_none() {
                continue;
            }
            if let Some(connz) = self.monitor(i, "connz?limit=4096").await {
                let conns = connz["connections"].as_array().cloned().unwrap_or_default();
                if conns.iter().any(|c| c["name"].as_str() == Some(name)) {
                    return Some(i);
                }
            }
        }
        None
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for s in &mut self.servers {
            s.kill();
        }
    }
}

/// Retries `op` until it succeeds or `timeout` passes; returns the value and how long it took.
async fn retry<T, E: std::fmt::Debug, F: std::future::Future<Output = Result<T, E>>>(
    what: &str,
    timeout: Duration,
    mut op: impl FnMut() -> F,
) -> (T, Duration) {
    let started = Instant::now();
    let mut last = None;
    while started.elapsed() < timeout {
        match tokio::time::timeout(Duration::from_secs(10), op()).await {
            Ok(Ok(v)) => return (v, started.elapsed()),
            Ok(Err(e)) => last = Some(format!("{e:?}")),
            Err(_) => last = Some("timed out".into()),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} still failing after {timeout:?}: {last:?}");
}

fn user(name: &str) -> Attributes {
    let mut a = Attributes::new();
    a.insert("name".into(), name.into());
    a
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_serves_on_when_the_leaders_nats_server_dies() {
    let tag = format!("t{:08x}", rand::random::<u32>());
    let log_dir = bin_dir().join("../test-logs").join(format!("{tag}.nats-cluster"));
    std::fs::create_dir_all(&log_dir).expect("log dir");
    let mut nats = NatsCluster::start(&tag, &log_dir);
    nats.wait_routed(Duration::from_secs(20)).await;

    let cluster = Cluster::start_on_nats("natscl", ClusterOpts { nodes: 3, ..Default::default() }, &nats.urls()).await;
    let (leader, term) = cluster.wait_leader(Duration::from_secs(30), None, 0).await;
    let timeout = Duration::from_secs(20);
    let ((before, _), _) =
        retry("a write before the kill", timeout, || cluster.client.create_entity("user", user("Ada"))).await;
    retry("a read before the kill", timeout, || cluster.client.get_entity(before.id, Consistency::Eventual)).await;

    // Which server is the leader on? Its connection is named instaface-node-<id>.
    let conn_name = format!("instaface-node-{leader}");
    let (victim, _) = retry("finding the leader's NATS server", timeout, || async {
        nats.server_of(&conn_name).await.ok_or("not listed by any server's /connz")
    })
    .await;
    let mut on_victim = Vec::new();
    for id in &cluster.ids {
        if nats.server_of(&format!("instaface-node-{id}")).await == Some(victim) {
            on_victim.push(id.clone());
        }
    }
    eprintln!(
        "leader {leader} (term {term}) is on {}; nodes there: {on_victim:?}; logs in {} and {}",
        nats.servers[victim].name,
        log_dir.display(),
        cluster.log_dir().display()
    );

    nats.servers[victim].kill();
    let killed = Instant::now();

    // The leader moves to a surviving server.
    let (moved_to, took) = retry("the leader reconnecting to another NATS server", timeout, || async {
        match nats.server_of(&conn_name).await {
            Some(i) if i != victim => Ok(i),
            _ => Err("not connected to a surviving server"),
        }
    })
    .await;
    eprintln!("{leader} reconnected to {} after {took:?}", nats.servers[moved_to].name);

    // And the cluster serves: a write and reads of it and of the older entity.
    let ((after, _), _) =
        retry("a write after the kill", timeout, || cluster.client.create_entity("user", user("Grace"))).await;
    eprintln!("a write succeeded {:?} after the kill", killed.elapsed());
    let (read, _) =
        retry("reading the new entity", timeout, || cluster.client.get_entity(after.id, Consistency::Eventual)).await;
    assert_eq!(read.attributes["name"], "Grace");
    let (read, _) =
        retry("reading the older entity", timeout, || cluster.client.get_entity(before.id, Consistency::Eventual))
            .await;
    assert_eq!(read.attributes["name"], "Ada");
    let (read, _) = retry("a strong read", timeout, || cluster.client.get_entity(after.id, Consistency::Strong)).await;
    assert_eq!(read.attributes["name"], "Grace");

    // Every node is back on a surviving server, and the cluster has one leader.
    for id in &cluster.ids {
        let name = format!("instaface-node-{id}");
        retry(&format!("{id} on a surviving server"), timeout, || async {
            match nats.server_of(&name).await {
                Some(i) if i != victim => Ok(()),
                _ => Err("not on a surviving server"),
            }
        })
        .await;
    }
    let (now_leader, now_term) = cluster.wait_leader(timeout, None, 0).await;
    eprintln!("leader after the kill: {now_leader} (term {now_term}; before: {leader}, term {term})");
}

/// The Docker stack's NATS requires a user and password, which every process takes from
/// `NATS_URL` (`nats://user:pass@host:4222`, as the README documents).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_in_the_nats_url_authenticate() {
    let tag = format!("t{:08x}", rand::random::<u32>());
    let log_dir = bin_dir().join("../test-logs").join(format!("{tag}.nats-auth"));
    std::fs::create_dir_all(&log_dir).expect("log dir");
    let port = free_port();
    let log = std::fs::File::create(log_dir.join("nats.log")).expect("log file");
    let child = Command::new(nats_server_binary())
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "--user", "instaface", "--pass", "s3cret-pw"])
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone().expect("log")))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawn nats-server");
    let _server = Server { name: "nats-auth".into(), client_port: port, monitor_port: 0, child: Some(child) };

    let mut args = instaface_bus::config::BusArgs::local(&format!("{tag}.auth"));
    args.nats_url = format!("nats://instaface:s3cret-pw@127.0.0.1:{port}");
    let bus = instaface_bus::Bus::connect(&args, "test-auth").await.expect("connect");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !bus.is_connected() {
        assert!(
            Instant::now() < deadline,
            "not connected with the credentials of NATS_URL (see {})",
            log_dir.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}
