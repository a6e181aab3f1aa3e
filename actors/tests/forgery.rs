//! A client on the bus that is not a node — the bot's access, say — tries to take the
//! cluster over with forged messages: a heartbeat with a term no one can exceed, from a
//! stranger and from a member's id; a heartbeat claiming a huge seq; a forged ack
//! claiming every write applied; a forged leadership-transfer vote; a forged unplug of
//! the leader. With the cluster key set, every one is dropped (and counted as
//! `unauthenticated`); without it, the node still drops messages from non-members and
//! terms past the highest it takes. Either way the cluster keeps its leader and term, and
//! writes keep succeeding.

use std::time::{Duration, Instant};

use instaface_bus::config::BusArgs;
use instaface_bus::messages::{Ack, Heartbeat, Invalidate, Unplug, VoteRequest};
use instaface_bus::Bus;
use instaface_testkit::{free_port, Cluster, ClusterOpts, NodeEnv};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// Starts `n` nodes, each serving metrics on a port of its own; returns the cluster and
/// each node's metrics address.
async fn start(name: &str, env: Vec<(String, String)>) -> (Cluster, Vec<(String, String)>) {
    let mut placement = NodeEnv::new();
    let mut metrics = Vec::new();
    for k in 1..=3 {
        let addr = format!("127.0.0.1:{}", free_port());
        placement.push((format!("n{k}"), vec![("METRICS_ADDR".into(), addr.clone())]));
        metrics.push((format!("n{k}"), addr));
    }
    let opts = ClusterOpts { env, ..Default::default() };
    let c = Cluster::start_placed(name, opts, "nats://127.0.0.1:4222", placement).await;
    (c, metrics)
}

/// The sum over `addr`'s metrics of `instaface_dropped_messages_total{…reason="<reason>"}`.
async fn dropped(addr: &str, reason: &str) -> u64 {
    let Ok(mut conn) = tokio::net::TcpStream::connect(addr).await else {
        return 0;
    };
    let _ = conn.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").await;
    let mut body = String::new();
    let _ = conn.read_to_string(&mut body).await;
    body.lines()
        .filter(|l| l.starts_with("instaface_dropped_messages_total") && l.contains(&format!("reason=\"{reason}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// An outsider: a client of the same NATS, without the key.
async fn outsider(c: &Cluster) -> Bus {
    let bus = Bus::connect(&BusArgs::local(&c.prefix), "outsider").await.expect("nats");
    instaface_testkit::wait_until(Duration::from_secs(10), "the outsider's connection", || bus.is_connected()).await;
    bus
}

/// Publishes every forgery the test knows, naming `member` where a member's id helps.
async fn forge_everything(bus: &Bus, leader: &str, member: &str, term: u64) {
    let s = bus.subjects().clone();
    let heartbeat = |leader: &str, term: u64, seq: u64| Heartbeat {
        term,
        leader: leader.to_string(),
        seq,
        floor: seq,
        invalidations: vec![],
        hb: 1,
        members: vec![leader.to_string(), "x1".into(), "x2".into(), "x3".into(), "x4".into()],
    };
    bus.publish(s.heartbeat(), &heartbeat("intruder", u64::MAX, 0)).await.unwrap();
    bus.publish(s.heartbeat(), &heartbeat(member, u64::MAX, 0)).await.unwrap();
    bus.publish(s.heartbeat(), &heartbeat(member, term + 5, u64::MAX / 2)).await.unwrap();
    let inv = Invalidate { term, leader: leader.to_string(), seq: u64::MAX / 2, prev_seq: 0, keys: vec![] };
    bus.publish(s.invalidate(), &inv).await.unwrap();
    let ack = Ack { term, node: member.to_string(), ack: 1, hb: 1, applied_seq: u64::MAX };
    let _ = bus
        .request::<_, instaface_bus::messages::AckConfirm>(s.ack(&leader.to_string()), &ack, Duration::from_millis(300))
        .await;
    let vote = VoteRequest { term: term + 1, candidate: member.to_string(), pre_vote: false, transfer: true };
    bus.publish(s.vote(), &vote).await.unwrap();
    let unplug = Unplug { node: leader.to_string(), unplugged: true, clients: true };
    bus.publish(s.control_unplug(), &unplug).await.unwrap();
    bus.flush().await.unwrap();
}

/// Writes keep succeeding, and the leader and its term stay as they were, for `writes`
/// writes (at least `at_least` long).
async fn keeps_working(c: &Cluster, leader: &str, term: u64, writes: usize, at_least: Duration) {
    let (user, _) = c.client.create_entity("user", Default::default()).await.expect("a write");
    let started = Instant::now();
    let mut n = 0;
    while n < writes || started.elapsed() < at_least {
        c.client.update_entity(user.id, json!({ "n": n })).await.expect("writes keep succeeding");
        let now = c.client.leader_info().current().map(|(l, t)| (l.clone(), t));
        assert_eq!(now, Some((leader.to_string(), term)), "the leader or the term changed");
        n += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_cluster_key_forged_cluster_messages_are_dropped_and_counted() {
    let (c, metrics) = start("forge-key", vec![("CLUSTER_KEY".into(), KEY.into())]).await;
    let (leader, term) = c.wait_leader(Duration::from_secs(20), None, 0).await;
    let all: Vec<&str> = c.ids.iter().map(String::as_str).collect();
    c.wait_serving(&all, Duration::from_secs(15)).await;
    let member = c.ids.iter().find(|i| **i != leader).cloned().unwrap();
    let bus = outsider(&c).await;
    forge_everything(&bus, &leader, &member, term).await;
    // Two election timeouts' worth of writes: a forged heartbeat of a higher term, or a
    // forged transfer vote, would have changed the term by now.
    keeps_working(&c, &leader, term, 20, Duration::from_secs(2)).await;
    let mut total = 0;
    for (node, addr) in &metrics {
        let n = dropped(addr, "unauthenticated").await;
        println!("{node}: {n} unauthenticated messages dropped");
        total += n;
    }
    // Three heartbeats and a vote reach all three nodes; the invalidation two; the ack
    // and the unplug one or three.
    assert!(total > 3 * 3 + 3 + 2, "only {total} forged messages were counted");
    let status = c.status(&leader).await.expect("the leader answers");
    assert!(!status.unplugged, "a forged unplug was obeyed");
    // And the cluster's own signed unplug still works.
    c.unplug(&member, true).await;
    instaface_testkit::wait_until_async(Duration::from_secs(5), "the signed unplug to take effect", || async {
        c.status(&member).await.is_some_and(|s| s.unplugged)
    })
    .await;
    c.unplug(&member, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_key_strangers_and_terms_past_the_highest_are_dropped() {
    let (c, metrics) = start("forge-nokey", Vec::new()).await;
    let (leader, term) = c.wait_leader(Duration::from_secs(20), None, 0).await;
    let all: Vec<&str> = c.ids.iter().map(String::as_str).collect();
    c.wait_serving(&all, Duration::from_secs(15)).await;
    let member = c.ids.iter().find(|i| **i != leader).cloned().unwrap();
    let bus = outsider(&c).await;
    let s = bus.subjects().clone();
    let heartbeat = |from: &str, term: u64| Heartbeat {
        term,
        leader: from.to_string(),
        seq: 0,
        floor: 0,
        invalidations: vec![],
        hb: 1,
        members: vec![from.to_string()],
    };
    // A term no one could exceed, from a stranger and from a member's id: refused by the
    // nodes (and ignored by the graph client), so nothing wedges.
    for from in ["intruder", member.as_str()] {
        bus.publish(s.heartbeat(), &heartbeat(from, u64::MAX)).await.unwrap();
    }
    bus.flush().await.unwrap();
    keeps_working(&c, &leader, term, 20, Duration::from_secs(2)).await;
    let mut too_high = 0;
    for (_, addr) in &metrics {
        too_high += dropped(addr, "term_too_high").await;
    }
    // Each node but the member whose id was used (it skips "its own" heartbeat) drops both.
    assert!(too_high >= 5, "only {too_high} heartbeats with term 2^64-1 were refused");
    // A stranger with an ordinary, higher term: dropped as not a member.
    bus.publish(s.heartbeat(), &heartbeat("intruder", term + 1)).await.unwrap();
    bus.flush().await.unwrap();
    instaface_testkit::wait_until_async(
        Duration::from_secs(5),
        "every node to drop the stranger's heartbeat",
        || async {
            let mut n = 0;
            for (_, addr) in &metrics {
                n += dropped(addr, "not_a_member").await;
            }
            n >= 3
        },
    )
    .await;
    for id in &c.ids {
        let s = c.status(id).await.expect("status");
        assert_eq!((s.term, s.leader.as_deref()), (term, Some(leader.as_str())), "{id} moved");
    }
}
