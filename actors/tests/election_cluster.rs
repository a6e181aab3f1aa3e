//! Election with real `instaface-node` processes on real NATS and Redis: one leader,
//! failover after kill -9, unplugging, PreVote on return, leadership transfer on SIGTERM,
//! heartbeats an outsider can decode, and a panicking actor that does not end the process.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use instaface_bus::messages::{CandidacyState, Event, EventKind, Role};
use instaface_testkit::{wait_until, Cluster, ClusterOpts};

const ELECT: Duration = Duration::from_secs(20);

/// Every node's (role, term, leader) from its status endpoint.
async fn roles(c: &Cluster, ids: &[String]) -> BTreeMap<String, (Role, u64, Option<String>)> {
    let mut out = BTreeMap::new();
    for id in ids {
        if let Some(s) = c.status(id).await {
            out.insert(id.clone(), (s.role, s.term, s.leader));
        }
    }
    out
}

/// Waits until exactly one of `ids` leads and every other one follows it in its term.
async fn wait_settled(c: &Cluster, ids: &[String]) -> (String, u64) {
    let deadline = Instant::now() + ELECT;
    loop {
        let r = roles(c, ids).await;
        let leaders: Vec<_> = r.iter().filter(|(_, v)| v.0 == Role::Leader).collect();
        if r.len() == ids.len() && leaders.len() == 1 {
            let (lid, (_, term, _)) = leaders[0];
            if r.values()
                .all(|(_, t, l)| t == term && l.as_deref() == Some(lid.as_str()))
            {
                return (lid.clone(), *term);
            }
        }
        assert!(
            Instant::now() < deadline,
            "cluster did not settle: {r:?}; logs in {}",
            c.log_dir().display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn elects_exactly_one_leader(n: usize) {
    let c = Cluster::start(
        &format!("el-one{n}"),
        ClusterOpts {
            nodes: n,
            ..Default::default()
        },
    )
    .await;
    let mut events = c
        .bus
        .subscribe::<Event>(c.bus.subjects().events())
        .await
        .unwrap();
    let (leader, term) = wait_settled(&c, &c.ids).await;
    assert!(term >= 1);
    // Safety over the whole run: no two `leader` events for one term from different nodes.
    let mut leaders_by_term: BTreeMap<u64, String> = BTreeMap::new();
    while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(200), events.next()).await
    {
        if let Ok(Event {
            node,
            term,
            kind: EventKind::Leader { .. },
            ..
        }) = msg.payload
        {
            let prev = leaders_by_term.insert(term, node.clone());
            assert!(
                prev.is_none() || prev.as_deref() == Some(node.as_str()),
                "two leaders in term {term}"
            );
        }
    }
    assert_eq!(c.client.wait_for_leader(ELECT).await.unwrap().0, leader);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_started_together_elect_exactly_one_leader() {
    elects_exactly_one_leader(3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_started_together_elect_exactly_one_leader() {
    elects_exactly_one_leader(5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_leader_gives_a_new_leader_with_a_higher_term() {
    let mut c = Cluster::start("el-kill", ClusterOpts::default()).await;
    let (leader, term) = wait_settled(&c, &c.ids).await;
    c.kill9(&leader);
    let rest: Vec<String> = c.ids.iter().filter(|i| **i != leader).cloned().collect();
    let (new_leader, new_term) = wait_settled(&c, &rest).await;
    assert_ne!(new_leader, leader);
    assert!(new_term > term, "term {new_term} after {term}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unplugging_the_leader_elects_another_and_plugging_it_back_keeps_the_term() {
    let c = Cluster::start("el-unplug", ClusterOpts::default()).await;
    let (old, term) = wait_settled(&c, &c.ids).await;
    c.unplug(&old, true).await;
    let rest: Vec<String> = c.ids.iter().filter(|i| **i != old).cloned().collect();
    let (new_leader, new_term) = wait_settled(&c, &rest).await;
    assert_ne!(new_leader, old);
    assert!(new_term > term);
    // The unplugged leader steps down (CheckQuorum) and serves nothing.
    let deadline = Instant::now() + ELECT;
    loop {
        let s = c
            .status(&old)
            .await
            .expect("status answers while unplugged");
        if s.role != Role::Leader {
            assert!(s.unplugged);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "unplugged leader never stepped down"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Plugging it back in does not raise the healthy cluster's term (PreVote).
    c.unplug(&old, false).await;
    let (leader_after, term_after) = wait_settled(&c, &c.ids).await;
    assert_eq!(
        (leader_after.as_str(), term_after),
        (new_leader.as_str(), new_term)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_of_the_leader_hands_over_without_an_election_timeout() {
    let mut c = Cluster::start("el-term", ClusterOpts::default()).await;
    let (old, term) = wait_settled(&c, &c.ids).await;
    let mut events = c
        .bus
        .subscribe::<Event>(c.bus.subjects().events())
        .await
        .unwrap();
    c.bus.flush().await.unwrap();
    let t0 = Instant::now();
    c.signal(&old, "TERM");
    assert_eq!(
        c.wait_exit(&old, Duration::from_secs(10)).await,
        Some(0),
        "orderly exit"
    );
    let rest: Vec<String> = c.ids.iter().filter(|i| **i != old).cloned().collect();
    let (new_leader, new_term) = wait_settled(&c, &rest).await;
    println!(
        "hand-over: new leader {new_leader} in term {new_term} {:?} after SIGTERM",
        t0.elapsed()
    );
    assert_eq!(
        new_term,
        term + 1,
        "a transfer campaigns once, in the next term"
    );
    // No PreVote round happened: the successor campaigned at once on TimeoutNow.
    while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(100), events.next()).await
    {
        if let Ok(Event {
            kind:
                EventKind::Candidacy {
                    state: CandidacyState::Started,
                    pre_vote: true,
                },
            node,
            ..
        }) = msg.payload
        {
            panic!("{node} started a PreVote campaign: the hand-over waited for a timeout");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outside_subscriber_decodes_heartbeats_as_plain_messagepack_maps() {
    let c = Cluster::start("el-tap", ClusterOpts::default()).await;
    let (leader, term) = wait_settled(&c, &c.ids).await;
    let mut sub = c
        .bus
        .raw()
        .subscribe(c.bus.subjects().heartbeat())
        .await
        .unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .unwrap()
        .unwrap();
    // A generic decoder, no Instaface types.
    let value = rmpv::decode::read_value(&mut &msg.payload[..]).expect("msgpack");
    let map = value.as_map().expect("a map");
    let field = |name: &str| {
        map.iter()
            .find(|(k, _)| k.as_str() == Some(name))
            .map(|(_, v)| v.clone())
    };
    assert_eq!(field("term").and_then(|v| v.as_u64()), Some(term));
    assert_eq!(
        field("leader").and_then(|v| v.as_str().map(String::from)),
        Some(leader)
    );
    assert!(field("seq").is_some() && field("invalidations").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_actor_is_restarted_and_the_process_lives_on() {
    let mut c = Cluster::start("el-panic", ClusterOpts::default()).await;
    let (leader, _) = wait_settled(&c, &c.ids).await;
    let victim = c.ids.iter().find(|i| **i != leader).cloned().unwrap();
    c.bus
        .publish(
            c.bus.subjects().node(&victim, "debug.panic"),
            &"election".to_string(),
        )
        .await
        .unwrap();
    c.bus.flush().await.unwrap();
    // The election actor restarts; the node rejoins as a follower of the same cluster.
    wait_until(
        Duration::from_secs(5),
        "the node to log its restart",
        || {
            std::fs::read_to_string(c.log_dir().join(format!("{victim}.log")))
                .unwrap_or_default()
                .contains("restarting actor")
        },
    )
    .await;
    assert!(c.is_running(&victim), "the process ended");
    wait_settled(&c, &c.ids).await;
}
