//! The benchmark's graph: users and statuses with `friend`, `posted` and `likes` edges,
//! created through the shared client before (a) and (b).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use instaface_bus::graph::{Attributes, EntityId};
use instaface_testkit::Cluster;
use serde_json::json;

use crate::common::{attrs, shuffle};

pub struct Graph {
    pub users: Vec<EntityId>,
    pub statuses: Vec<EntityId>,
}

pub async fn build_graph(c: &Cluster, n_users: usize, n_statuses: usize, conc: usize) -> Graph {
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
    eprintln!("    {} users, {} statuses created ({:.1} s)", users.len(), statuses.len(), t0.elapsed().as_secs_f64());
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
                if client.add_assoc(from, atype, to, Attributes::new()).await.is_err() {
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
