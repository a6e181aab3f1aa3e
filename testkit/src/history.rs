//! A history of concurrent updates and reads against a real cluster, and its checker —
//! the multi-process form of the protocol simulation's history check.
//!
//! [`Workload::start`] creates a few entities (the entity `version` is the register) and
//! runs, until stopped: writers updating them through the graph client (the gateway's
//! path), readers through the graph client (followers' queue group, the leader as the
//! fallback), and one reader per node addressing that node directly. [`check`] then
//! requires that no read that began after a write was acknowledged returned an older
//! version. Reads a node refuses are counted, not checked; client reads that fail are
//! recorded with their time (a gateway would have answered them with a 5xx).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use instaface_bus::graph::{Attributes, Consistency, ReadQuery, ReadRequest, ReadResult, Reply};
use instaface_bus::graph_client::GraphClient;
use instaface_bus::{Bus, NodeId};

use crate::Cluster;

/// One completed operation.
#[derive(Debug, Clone)]
pub enum Op {
    /// A write of `version`, acknowledged at `acked`.
    Write { entity: u64, version: u64, acked: Instant },
    /// A read that began at `started` and returned `version`, served via `path`.
    Read { entity: u64, version: u64, started: Instant, path: String },
}

/// Every read must return at least the newest version acknowledged before it began.
/// Returns a line per violation.
pub fn check(history: &[Op]) -> Vec<String> {
    let mut acks: std::collections::HashMap<u64, Vec<(Instant, u64)>> = Default::default();
    for op in history {
        if let Op::Write { entity, version, acked } = op {
            acks.entry(*entity).or_default().push((*acked, *version));
        }
    }
    for list in acks.values_mut() {
        list.sort();
        let mut max = 0;
        for (_, v) in list.iter_mut() {
            max = max.max(*v);
            *v = max;
        }
    }
    let mut violations = Vec::new();
    for op in history {
        if let Op::Read { entity, version, started, path } = op {
            let Some(list) = acks.get(entity) else { continue };
            let n = list.partition_point(|(at, _)| at < started);
            if let Some(&(at, newest)) = n.checked_sub(1).and_then(|i| list.get(i)) {
                if *version < newest {
                    violations.push(format!(
                        "entity {entity}: read v{version} via {path}, but v{newest} was acknowledged {:?} before the read began",
                        started.duration_since(at)
                    ));
                }
            }
        }
    }
    violations
}

/// What a workload did.
#[derive(Debug, Default)]
pub struct Report {
    pub history: Vec<Op>,
    pub writes: usize,
    pub reads: usize,
    /// Reads addressed to single nodes that were answered.
    pub direct_reads: usize,
    /// Reads a node refused (it held no lease, or had no leader to fill from).
    pub refused: usize,
    /// Client reads that failed, with when: what a gateway would have answered with a 5xx.
    pub client_read_failures: Vec<(Instant, String)>,
    pub violations: Vec<String>,
}

impl Report {
    /// The client read failures between `from` and `to`.
    pub fn failures_between(&self, from: Instant, to: Instant) -> Vec<&(Instant, String)> {
        self.client_read_failures.iter().filter(|(t, _)| *t >= from && *t <= to).collect()
    }

    /// The newest acknowledged version of each entity written.
    pub fn newest_acked(&self) -> std::collections::BTreeMap<u64, u64> {
        let mut newest = std::collections::BTreeMap::new();
        for op in &self.history {
            if let Op::Write { entity, version, .. } = op {
                let v = newest.entry(*entity).or_insert(0);
                *v = (*v).max(*version);
            }
        }
        newest
    }

    /// One line for the test's output.
    pub fn summary(&self) -> String {
        format!(
            "{} acknowledged writes, {} reads ({} addressed to single nodes, {} refused by a node), {} failed client reads, {} stale reads",
            self.writes,
            self.reads,
            self.direct_reads,
            self.refused,
            self.client_read_failures.len(),
            self.violations.len()
        )
    }
}

/// Locks the shared record, whatever a panicking task left behind.
fn lock(s: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Default)]
struct Shared {
    ops: Vec<Op>,
    refused: usize,
    client_read_failures: Vec<(Instant, String)>,
}

/// Writers and readers running against a cluster until stopped.
pub struct Workload {
    ids: Vec<u64>,
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Workload {
    /// Creates `entities` entities and starts two writers, two client readers and one
    /// direct reader per node of `nodes`, all on the cluster's own client.
    pub async fn start(c: &Cluster, entities: usize, nodes: &[NodeId]) -> Workload {
        let clients = vec![c.client.clone(), c.client.clone()];
        let readers = nodes.iter().map(|n| (n.clone(), c.bus.clone())).collect();
        Self::start_with(c, entities, clients, readers).await
    }

    /// Creates `entities` entities; each of `clients` runs a writer and a reader, and each
    /// `(node, bus)` of `node_readers` reads at that node through that bus (a client of a
    /// NATS server of one's choosing).
    pub async fn start_with(
        c: &Cluster,
        entities: usize,
        clients: Vec<GraphClient>,
        node_readers: Vec<(NodeId, Bus)>,
    ) -> Workload {
        let mut ids = Vec::new();
        for i in 0..entities {
            let mut a = Attributes::new();
            a.insert("i".into(), serde_json::json!(i));
            let (e, _) = c.client.create_entity("user", a).await.expect("create an entity");
            ids.push(e.id);
        }
        let shared = Arc::new(Mutex::new(Shared::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for (w, client) in clients.iter().enumerate() {
            let w = w as u64;
            let (client, shared, stop, ids) = (client.clone(), shared.clone(), stop.clone(), ids.clone());
            tasks.push(tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let entity = ids[((n * 7 + w) % ids.len() as u64) as usize];
                    if let Ok((e, _)) = client.update_entity(entity, serde_json::json!({ "writer": w, "n": n })).await {
                        lock(&shared).ops.push(Op::Write { entity, version: e.version, acked: Instant::now() });
                    }
                }
            }));
        }
        for (r, client) in clients.iter().enumerate() {
            let r = r as u64;
            let (client, shared, stop, ids) = (client.clone(), shared.clone(), stop.clone(), ids.clone());
            tasks.push(tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let entity = ids[((n * 3 + r) % ids.len() as u64) as usize];
                    let started = Instant::now();
                    match client.get_entity(entity, Consistency::Eventual).await {
                        Ok(e) => lock(&shared).ops.push(Op::Read {
                            entity,
                            version: e.version,
                            started,
                            path: "client".into(),
                        }),
                        Err(e) => lock(&shared).client_read_failures.push((Instant::now(), e.to_string())),
                    }
                }
            }));
        }
        let shards = c.client.shards();
        for (node, bus) in node_readers {
            let (shared, stop, ids) = (shared.clone(), stop.clone(), ids.clone());
            tasks.push(tokio::spawn(async move {
                let mut n = 0usize;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let entity = ids[n % ids.len()];
                    let started = Instant::now();
                    let req = ReadRequest {
                        consistency: Consistency::Eventual,
                        query: ReadQuery::Entities { ids: vec![entity] },
                    };
                    // The node's member of the entity's shard's group.
                    let bus = bus.for_shard(instaface_bus::shards::shard_of(entity), shards);
                    let reply = bus
                        .request::<_, Reply<ReadResult>>(
                            bus.subjects().read_at(&node),
                            &req,
                            Duration::from_millis(300),
                        )
                        .await;
                    match reply {
                        Ok(Reply::Ok(ReadResult::Entities { entities })) => {
                            if let Some(e) = entities.first() {
                                lock(&shared).ops.push(Op::Read {
                                    entity,
                                    version: e.version,
                                    started,
                                    path: format!("node {node}"),
                                });
                            }
                        }
                        Ok(_) => lock(&shared).refused += 1,
                        // Unreachable (isolated, restarting): try again shortly.
                        Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
            }));
        }
        Workload { shared, stop, tasks, ids }
    }

    /// (acknowledged writes, completed reads) so far.
    pub fn progress(&self) -> (usize, usize) {
        let s = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        let writes = s.ops.iter().filter(|o| matches!(o, Op::Write { .. })).count();
        (writes, s.ops.len() - writes)
    }

    /// Stale reads in the history so far (the workload keeps running).
    pub fn stale_so_far(&self) -> usize {
        let ops = lock(&self.shared).ops.clone();
        check(&ops).len()
    }

    /// Waits until the workload made `writes` more acknowledged writes and `reads` more
    /// reads than when called (fails after `timeout`).
    pub async fn wait_progress(&self, writes: usize, reads: usize, timeout: Duration) {
        let (w0, r0) = self.progress();
        crate::wait_until(timeout, "the clients to make progress", || {
            let (w, r) = self.progress();
            w >= w0 + writes && r >= r0 + reads
        })
        .await;
    }

    /// The entities the workload updates.
    pub fn entities(&self) -> &[u64] {
        &self.ids
    }

    /// Stops the clients and checks the history.
    pub async fn stop(self) -> Report {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(30), t).await;
        }
        let s = std::mem::take(&mut *self.shared.lock().unwrap_or_else(|p| p.into_inner()));
        let writes = s.ops.iter().filter(|o| matches!(o, Op::Write { .. })).count();
        let direct_reads =
            s.ops.iter().filter(|o| matches!(o, Op::Read { path, .. } if path.starts_with("node"))).count();
        let violations = check(&s.ops);
        Report {
            writes,
            reads: s.ops.len() - writes,
            direct_reads,
            refused: s.refused,
            client_read_failures: s.client_read_failures,
            violations,
            history: s.ops,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checker_finds_a_stale_read_and_only_that() {
        let t0 = Instant::now();
        let later = t0 + Duration::from_millis(5);
        let history = vec![
            Op::Write { entity: 1, version: 3, acked: t0 },
            Op::Write { entity: 1, version: 2, acked: t0 + Duration::from_millis(1) },
            Op::Read { entity: 1, version: 2, started: later, path: "x".into() },
            Op::Read { entity: 1, version: 3, started: later, path: "y".into() },
            Op::Read { entity: 1, version: 1, started: t0, path: "began with the ack".into() },
            Op::Read { entity: 2, version: 1, started: later, path: "no writes".into() },
        ];
        let v = check(&history);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].contains("via x"));
    }
}
