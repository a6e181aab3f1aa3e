//! The project under test: a 3-node cluster (`instaface_testkit::Cluster`: real
//! `instaface-node` processes with a subject prefix, database and Redis prefix of their
//! own, holding a cluster key as the launcher and compose give them) plus one real
//! `instaface-gateway` process pointed at it; the graph both workloads read, built through
//! the bus client; warming every cache key at every node; and the nodes' cache counters
//! (from each node's status endpoint, as the datapath bench reads them) that give the hit
//! rate of a run.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use instaface_bus::graph::{Attributes, Consistency, EntityId, ReadQuery, ReadRequest, ReadResult, Reply};
use instaface_bus::messages::{CacheCounters, NodeStatus, Role};
use instaface_testkit::{Cluster, ClusterOpts};

use crate::baselines::{free_port, ServerProcess};
use rand::seq::SliceRandom;
use rand::Rng as _;

use crate::workload::{assoc_types, Node, Rng};

/// The node that serves the gateway in its own process (`GATEWAY_LISTEN`), when asked.
pub const IN_NODE: &str = "n3";

/// Starts the cluster (with `CLUSTER_KEY` when `key` is set; with [`IN_NODE`] serving the
/// gateway on `in_node_port` too, when given) and waits until it settles.
pub async fn start_cluster(key: Option<&str>, in_node_port: Option<u16>) -> Result<Cluster, String> {
    let mut env = Vec::new();
    if let Some(key) = key {
        env.push(("CLUSTER_KEY".to_string(), key.to_string()));
    }
    let mut node_env = Vec::new();
    if let Some(port) = in_node_port {
        // (Not `BENCH_GATEWAY_THREADS`: the node's runtime is the node's, in every target.)
        node_env.push((IN_NODE.to_string(), vec![("GATEWAY_LISTEN".to_string(), format!("127.0.0.1:{port}"))]));
    }
    let opts = ClusterOpts { nodes: 3, env, fast: false, ..ClusterOpts::default() };
    let cluster = Cluster::start_placed("bench-reads", opts, "nats://127.0.0.1:4222", node_env).await;
    match wait_settled(&cluster, Duration::from_secs(30)).await {
        Some((leader, term)) => {
            eprintln!("  cluster {} settled: leader {leader}, term {term}", cluster.prefix);
            Ok(cluster)
        }
        None => Err(format!("the cluster never settled; logs in {}", cluster.log_dir().display())),
    }
}

/// Starts `instaface-gateway` against the cluster, as the launcher does (same prefix for
/// NATS subjects and Redis keys, the cluster key), logging to the cluster's log directory;
/// `batch_reads` is its `BATCH_READS`.
pub fn start_gateway(cluster: &Cluster, key: Option<&str>, log_level: &str, batch_reads: bool) -> ServerProcess {
    let port = free_port();
    let mut cmd = Command::new(instaface_testkit::binary("instaface-gateway"));
    cmd.env("INSTAFACE_PREFIX", &cluster.prefix)
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("NATS_URL", "nats://127.0.0.1:4222")
        .env("REDIS_URL", "redis://127.0.0.1:6379")
        .env("RUST_LOG", log_level)
        .env("BATCH_READS", batch_reads.to_string());
    if let Some(key) = key {
        cmd.env("CLUSTER_KEY", key);
    }
    if let Ok(n) = std::env::var("BENCH_GATEWAY_THREADS") {
        cmd.env("TOKIO_WORKER_THREADS", n);
    }
    let name = if batch_reads { "project" } else { "alone" };
    ServerProcess::spawn("gateway", cmd, port, &cluster.log_dir().join(format!("gateway-{name}.log")))
}

/// Waits until every node answers, one leads, and the others follow it holding a lease.
pub async fn wait_settled(c: &Cluster, timeout: Duration) -> Option<(String, u64)> {
    let deadline = Instant::now() + timeout;
    loop {
        let st: Vec<NodeStatus> =
            futures::future::join_all(c.ids.iter().map(|id| c.status(id))).await.into_iter().flatten().collect();
        if st.len() == c.ids.len() {
            let leaders: Vec<_> = st.iter().filter(|s| s.role == Role::Leader).collect();
            if let [l] = leaders[..] {
                let (leader, term) = (l.node.clone(), l.term);
                let all = st.iter().all(|s| {
                    s.term == term
                        && (s.node == leader
                            || (s.role == Role::Follower
                                && s.leader.as_deref() == Some(leader.as_str())
                                && s.lease_ms > 0))
                });
                if all {
                    return Some((leader, term));
                }
            }
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn attrs(v: serde_json::Value) -> Attributes {
    v.as_object().cloned().unwrap_or_default()
}

/// The graph of the datapath bench (`actors/benches/datapath/graph.rs`): `users` users and
/// `statuses` statuses; every status `posted` by a random user (so `postedby` back), 4
/// `friend`s per user (both ways), 3 `likes` per status (and `likedby`), written through the
/// cluster's bus client at concurrency `conc`. Returns the entities created.
pub async fn build_graph(
    c: &Cluster,
    users: usize,
    statuses: usize,
    conc: usize,
    rng: &mut Rng,
) -> Result<Vec<Node>, String> {
    let t0 = Instant::now();
    let errors = Arc::new(AtomicU64::new(0));
    let mut nodes = Vec::new();
    for (etype, n) in [("user", users), ("status", statuses)] {
        let made: Vec<Option<EntityId>> = futures::stream::iter(0..n)
            .map(|i| {
                let client = c.client.clone();
                let errors = errors.clone();
                async move {
                    let a = if etype == "user" {
                        serde_json::json!({ "name": format!("user {i}") })
                    } else {
                        serde_json::json!({ "text": format!("status {i}") })
                    };
                    match client.create_entity(etype, attrs(a)).await {
                        Ok((e, _)) => Some(e.id),
                        Err(e) => {
                            if errors.fetch_add(1, Ordering::Relaxed) < 3 {
                                eprintln!("    create {etype}: {e}");
                            }
                            None
                        }
                    }
                }
            })
            .buffer_unordered(conc)
            .collect()
            .await;
        nodes.extend(made.into_iter().flatten().map(|id| Node { id, user: etype == "user" }));
    }
    let user_ids: Vec<EntityId> = nodes.iter().filter(|n| n.user).map(|n| n.id).collect();
    let status_ids: Vec<EntityId> = nodes.iter().filter(|n| !n.user).map(|n| n.id).collect();
    if user_ids.len() < 2 || status_ids.is_empty() {
        return Err(format!("only {} users and {} statuses were created", user_ids.len(), status_ids.len()));
    }
    let mut edges: Vec<(EntityId, &'static str, EntityId)> = Vec::new();
    for s in &status_ids {
        edges.push((user_ids[rng.random_range(0..user_ids.len())], "posted", *s));
    }
    for u in &user_ids {
        for _ in 0..4 {
            let v = user_ids[rng.random_range(0..user_ids.len())];
            if v != *u {
                edges.push((*u, "friend", v));
            }
        }
    }
    for s in &status_ids {
        for _ in 0..3 {
            edges.push((user_ids[rng.random_range(0..user_ids.len())], "likes", *s));
        }
    }
    edges.shuffle(rng);
    let n_edges = edges.len();
    futures::stream::iter(edges)
        .map(|(from, atype, to)| {
            let client = c.client.clone();
            let errors = errors.clone();
            async move {
                if let Err(e) = client.add_assoc(from, atype, to, Attributes::new()).await {
                    if errors.fetch_add(1, Ordering::Relaxed) < 3 {
                        eprintln!("    add {from} {atype} {to}: {e}");
                    }
                }
            }
        })
        .buffer_unordered(conc)
        .collect::<Vec<()>>()
        .await;
    let writes = nodes.len() + n_edges;
    let errors = errors.load(Ordering::Relaxed);
    eprintln!(
        "  graph: {} users, {} statuses, {n_edges} edges requested; {writes} writes in {:.1} s at concurrency {conc}, {errors} errors",
        user_ids.len(),
        status_ids.len(),
        t0.elapsed().as_secs_f64()
    );
    if errors > 0 {
        return Err(format!("{errors} writes failed while building the graph"));
    }
    Ok(nodes)
}

/// Reads every cache key the workloads touch (each entity, each of its association lists)
/// at every node directly (`P.node.<id>.read`), so every cache starts warm whichever node
/// the queue group picks. Returns (reads, failures).
pub async fn warm(c: &Cluster, nodes: &[Node]) -> (usize, usize) {
    let mut queries = Vec::new();
    for n in nodes {
        queries.push(ReadQuery::Entities { ids: vec![n.id] });
        for atype in assoc_types(*n) {
            queries.push(ReadQuery::Assocs { from: n.id, atype: (*atype).to_string(), limit: 10, offset: 0 });
        }
    }
    let mut jobs = Vec::new();
    for id in &c.ids {
        for q in &queries {
            jobs.push((c.bus.subjects().read_at(id), q.clone()));
        }
    }
    let total = jobs.len();
    let ok: Vec<bool> = futures::stream::iter(jobs)
        .map(|(subject, query)| {
            let bus = c.bus.clone();
            async move {
                let req = ReadRequest { consistency: Consistency::Eventual, query };
                matches!(
                    bus.request::<_, Reply<ReadResult>>(subject, &req, Duration::from_secs(5)).await,
                    Ok(Reply::Ok(_))
                )
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    (total, ok.iter().filter(|x| !**x).count())
}

/// Cache counters over a run, summed over the nodes, with the leader and term at each end.
#[derive(Clone, Debug, Default)]
pub struct CacheDelta {
    pub hits: u64,
    pub misses: u64,
    pub fills: u64,
    /// Hits per node.
    pub per_node: BTreeMap<String, u64>,
    pub leader_changed: Option<String>,
}

impl CacheDelta {
    pub fn between(a: &BTreeMap<String, NodeStatus>, b: &BTreeMap<String, NodeStatus>) -> CacheDelta {
        let mut d = CacheDelta::default();
        for (id, after) in b {
            let before: CacheCounters = a.get(id).map(|s| s.cache.clone()).unwrap_or_default();
            let hits = after.cache.hits.saturating_sub(before.hits);
            d.hits += hits;
            d.misses += after.cache.misses.saturating_sub(before.misses);
            d.fills += after.cache.fills.saturating_sub(before.fills);
            d.per_node.insert(format!("{id} ({})", after.role), hits);
        }
        let lead = |m: &BTreeMap<String, NodeStatus>| {
            m.values().find(|s| s.role == Role::Leader).map(|s| format!("{} term {}", s.node, s.term))
        };
        if lead(a) != lead(b) {
            d.leader_changed = Some(format!("{:?} -> {:?}", lead(a), lead(b)));
        }
        d
    }

    pub fn hit_rate(&self) -> f64 {
        self.hits as f64 / (self.hits + self.misses).max(1) as f64
    }
}

/// The pids of the cluster's node processes.
pub fn node_pids(c: &Cluster) -> Vec<u32> {
    c.ids.iter().filter_map(|id| c.pid_of(id)).collect()
}

/// The cluster's MySQL URL.
pub fn mysql_url(c: &Cluster) -> String {
    format!("mysql://root@127.0.0.1:3306/{}", c.database)
}

/// Where the bench writes its wrk script and path lists: a directory of its own under the
/// system's temp directory.
pub fn work_dir() -> std::io::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("instaface-bench-reads-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Removes the work directory (best effort).
pub fn remove_work_dir(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}
