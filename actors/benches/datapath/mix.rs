//! (b) The TAO-like read-heavy mix through the `readers` queue group, from cold follower
//! caches, with hit rates and fills from every node's status counters.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use instaface_bus::graph::{Attributes, Consistency, EntityId, ReadQuery};
use instaface_bus::messages::{NodeStatus, Role};
use instaface_testkit::zipf::Zipf;
use instaface_testkit::Cluster;
use serde_json::json;

use crate::common::{fm, run_load, summary, wait_settled};
use crate::graph::Graph;

/// (b): the TAO-like mix through the queue group, from cold follower caches.
#[allow(clippy::too_many_arguments)]
pub async fn run_mix(
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
    let before = c.statuses().await;
    let leader_term = |s: &BTreeMap<String, NodeStatus>| {
        s.values().find(|s| s.role == Role::Leader).map(|s| (s.node.clone(), s.term))
    };
    let lt_before = leader_term(&before);
    let leader = lt_before.as_ref().map(|(l, _)| l.clone()).unwrap_or_else(|| leader.to_string());
    let leader = leader.as_str();
    let followers: Vec<String> = c.ids.iter().filter(|i| i.as_str() != leader).cloned().collect();
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
            let (id, is_user) = ents[zipf.sample(&mut rand::rng())];
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
                ("assoc range (limit 10)", ReadQuery::Assocs { from: id, atype: atype.into(), limit: 10, offset: 0 })
            } else if r < 70.0 {
                ("entity get", ReadQuery::Entities { ids: vec![id] })
            } else if r < 86.0 {
                ("assoc get (limit 1)", ReadQuery::Assocs { from: id, atype: atype.into(), limit: 1, offset: 0 })
            } else {
                ("assoc count (limit 0)", ReadQuery::Assocs { from: id, atype: atype.into(), limit: 0, offset: 0 })
            };
            client.read(query, Consistency::Eventual).await.map(|_| kind).map_err(|e| e.to_string())
        }
    };
    let half = mix_secs / 2;
    let first = run_load("mix, first half", conc, half, op.clone()).await;
    let mid = c.statuses().await;
    let second = run_load("mix, second half", conc, mix_secs - half, op).await;
    let after = c.statuses().await;
    let lt_after = leader_term(&after);
    if lt_after != lt_before {
        eprintln!("  NOTE: the leader changed during the mix: {lt_before:?} -> {lt_after:?}");
    }
    let delta = |a: &BTreeMap<String, NodeStatus>, b: &BTreeMap<String, NodeStatus>, id: &str| {
        let (x, y) = (
            a.get(id).map(|s| s.cache.clone()).unwrap_or_default(),
            b.get(id).map(|s| s.cache.clone()).unwrap_or_default(),
        );
        (y.hits.saturating_sub(x.hits), y.misses.saturating_sub(x.misses), y.fills.saturating_sub(x.fills), y.entries)
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
    for (label, load, a, b) in [("first half", &first, &before, &mid), ("second half", &second, &mid, &after)] {
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
        let role = after.get(id).map(|s| s.role.to_string()).unwrap_or_default();
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
        first.errors.iter().chain(second.errors.iter()).fold(BTreeMap::new(), |mut m, (k, v)| {
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
