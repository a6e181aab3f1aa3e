//! DESIGN.md's guarantee checked as a history: concurrent clients update and read a set of
//! entities (the entity `version` is the register) while followers are unplugged and
//! plugged back, and the leader is killed and restarted. No read that began after a write
//! was acknowledged may return an older version.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use instaface_bus::graph::{Attributes, Consistency, ReadQuery, ReadRequest, ReadResult, Reply};
use instaface_testkit::{Cluster, ClusterOpts};
use serde_json::json;

#[derive(Debug, Clone)]
enum Op {
    /// A write of `version`, acknowledged at `acked`.
    Write {
        entity: u64,
        version: u64,
        acked: Instant,
    },
    /// A read that started at `started` and returned `version`, served via `path`.
    Read {
        entity: u64,
        version: u64,
        started: Instant,
        path: String,
    },
}

/// Every read must return at least the newest version acknowledged before it started.
fn check(history: &[Op]) -> Vec<String> {
    let mut violations = Vec::new();
    for op in history {
        if let Op::Read {
            entity,
            version,
            started,
            path,
        } = op
        {
            let newest_acked = history
                .iter()
                .filter_map(|w| match w {
                    Op::Write {
                        entity: e,
                        version: v,
                        acked,
                    } if e == entity && acked < started => Some(*v),
                    _ => None,
                })
                .max()
                .unwrap_or(0);
            if *version < newest_acked {
                violations.push(format!("entity {entity}: read v{version} via {path}, but v{newest_acked} was acknowledged before the read began"));
            }
        }
    }
    violations
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_read_after_an_acknowledged_write_returns_an_older_version() {
    let mut c = Cluster::start("consistency", ClusterOpts::default()).await;
    let (first_leader, _) = c.wait_leader(Duration::from_secs(20), None, 0).await;
    let mut ids = Vec::new();
    for i in 0..4 {
        let mut a = Attributes::new();
        a.insert("i".into(), json!(i));
        ids.push(c.client.create_entity("user", a).await.unwrap().0.id);
    }
    let history = Arc::new(Mutex::new(Vec::<Op>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();

    for w in 0..2u64 {
        let (client, history, stop, ids) =
            (c.client.clone(), history.clone(), stop.clone(), ids.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                n += 1;
                let entity = ids[((n * 7 + w) % ids.len() as u64) as usize];
                if let Ok((e, _)) = client
                    .update_entity(entity, json!({ "writer": w, "n": n }))
                    .await
                {
                    history.lock().unwrap().push(Op::Write {
                        entity,
                        version: e.version,
                        acked: Instant::now(),
                    });
                }
            }
        }));
    }
    // Readers through the client (followers' queue group, the leader as fallback) …
    for r in 0..2u64 {
        let (client, history, stop, ids) =
            (c.client.clone(), history.clone(), stop.clone(), ids.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                n += 1;
                let entity = ids[((n * 3 + r) % ids.len() as u64) as usize];
                let started = Instant::now();
                if let Ok(e) = client.get_entity(entity, Consistency::Eventual).await {
                    history.lock().unwrap().push(Op::Read {
                        entity,
                        version: e.version,
                        started,
                        path: "client".into(),
                    });
                }
            }
        }));
    }
    // … and one reading at every node in turn, so each follower is exercised directly.
    {
        let (bus, history, stop, ids, nodes) = (
            c.bus.clone(),
            history.clone(),
            stop.clone(),
            ids.clone(),
            c.ids.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut n = 0usize;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                n += 1;
                let entity = ids[n % ids.len()];
                let node = &nodes[n % nodes.len()];
                let started = Instant::now();
                let req = ReadRequest {
                    consistency: Consistency::Eventual,
                    query: ReadQuery::Entities { ids: vec![entity] },
                };
                let reply = bus
                    .request::<_, Reply<ReadResult>>(
                        bus.subjects().read_at(node),
                        &req,
                        Duration::from_millis(300),
                    )
                    .await;
                if let Ok(Reply::Ok(ReadResult::Entities { entities })) = reply {
                    if let Some(e) = entities.first() {
                        history.lock().unwrap().push(Op::Read {
                            entity,
                            version: e.version,
                            started,
                            path: format!("node {node}"),
                        });
                    }
                }
            }
        }));
    }

    // Each phase of faults lasts until the clients have got real work done in it: a number
    // of acknowledged writes and of reads more than when the phase began.
    let progress = || {
        let history = history.clone();
        async move {
            let counts = |h: &[Op]| {
                let writes = h.iter().filter(|o| matches!(o, Op::Write { .. })).count();
                (writes, h.len() - writes)
            };
            let (w0, r0) = counts(&history.lock().unwrap());
            instaface_testkit::wait_until(Duration::from_secs(30), "the clients to make progress", || {
                let (w, r) = counts(&history.lock().unwrap());
                w >= w0 + 15 && r >= r0 + 50
            })
            .await;
        }
    };
    let pause = progress;
    pause().await;
    let follower = c.ids.iter().find(|i| **i != first_leader).cloned().unwrap();
    c.unplug(&follower, true).await;
    pause().await;
    c.unplug(&follower, false).await;
    pause().await;
    let (leader, term) = c.wait_leader(Duration::from_secs(20), None, 0).await;
    c.kill9(&leader);
    let (new_leader, _) = c
        .wait_leader(Duration::from_secs(20), Some(&leader), term)
        .await;
    c.spawn(&leader);
    pause().await;
    c.unplug(&new_leader, true).await;
    pause().await;
    c.unplug(&new_leader, false).await;
    pause().await;

    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(30), t).await;
    }
    let history = history.lock().unwrap().clone();
    let writes = history
        .iter()
        .filter(|o| matches!(o, Op::Write { .. }))
        .count();
    let reads = history
        .iter()
        .filter(|o| matches!(o, Op::Read { .. }))
        .count();
    let direct = history
        .iter()
        .filter(|o| matches!(o, Op::Read { path, .. } if path.starts_with("node")))
        .count();
    println!(
        "history: {writes} acknowledged writes, {reads} reads ({direct} addressed to single nodes)"
    );
    assert!(
        writes >= 20 && reads >= 50,
        "too little happened to judge: {writes} writes, {reads} reads"
    );
    let violations = check(&history);
    assert!(
        violations.is_empty(),
        "{} stale reads, e.g.:\n{}",
        violations.len(),
        violations
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn the_checker_finds_a_stale_read() {
    let t0 = Instant::now();
    let later = t0 + Duration::from_millis(5);
    let history = vec![
        Op::Write {
            entity: 1,
            version: 3,
            acked: t0,
        },
        Op::Read {
            entity: 1,
            version: 2,
            started: later,
            path: "x".into(),
        },
        Op::Read {
            entity: 1,
            version: 3,
            started: later,
            path: "y".into(),
        },
    ];
    assert_eq!(check(&history).len(), 1);
}
