//! Election with real `instaface-node` processes on real NATS and Redis: one leader,
//! failover after kill -9, unplugging, PreVote on return, leadership transfer on SIGTERM,
//! heartbeats an outsider can decode, and a panicking actor that does not end the process.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use instaface_bus::client::Subscription;
use instaface_bus::messages::{CandidacyState, Event, EventKind, Role};
use instaface_testkit::{round_trip, wait_until, Cluster, ClusterOpts};

const ELECT: Duration = Duration::from_secs(20);

/// How long the event subject must stay silent before [`collect_events`] has seen it all.
const QUIET: Duration = Duration::from_millis(300);

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
    let what = format!("the cluster to settle (logs in {})", c.log_dir().display());
    instaface_testkit::poll_until(ELECT, &what, || async {
        let r = roles(c, ids).await;
        let leaders: Vec<_> = r.iter().filter(|(_, v)| v.0 == Role::Leader).collect();
        if r.len() == ids.len() && leaders.len() == 1 {
            let (lid, (_, term, _)) = leaders[0];
            if r.values().all(|(_, t, l)| t == term && l.as_deref() == Some(lid.as_str())) {
                return Ok((lid.clone(), *term));
            }
        }
        Err(format!("{r:?}"))
    })
    .await
}

/// Reads `events` until `done` holds for the events read so far (failing after `timeout`,
/// saying it waited for `what`), then until the subject has been quiet for [`QUIET`]
/// (at most `timeout` more). A message that does not decode fails the test: skipping it
/// could hide the very event an assertion is about.
async fn collect_events(
    events: &mut Subscription<Event>,
    timeout: Duration,
    what: &str,
    mut done: impl FnMut(&[Event]) -> bool,
) -> Vec<Event> {
    let mut seen = Vec::new();
    let decoded = |msg: instaface_bus::Incoming<Event>| {
        msg.payload.unwrap_or_else(|e| panic!("an event on {} does not decode: {e}", msg.subject))
    };
    let deadline = Instant::now() + timeout;
    while !done(&seen) {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, events.next()).await {
            Ok(Some(msg)) => seen.push(decoded(msg)),
            Ok(None) => panic!("the event subscription ended while waiting for {what}"),
            Err(_) => {
                panic!("timed out after {timeout:?} waiting for {what}; events seen: {seen:#?}")
            }
        }
    }
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        match tokio::time::timeout(QUIET, events.next()).await {
            Ok(Some(msg)) => seen.push(decoded(msg)),
            _ => break,
        }
    }
    seen
}

fn is_leader_event(e: &Event, node: &str, term: u64) -> bool {
    e.node == node && e.term == term && matches!(e.kind, EventKind::Leader { .. })
}

async fn elects_exactly_one_leader(n: usize) {
    // The nodes start only once the test listens to the events, so it sees every election
    // of the run: a cluster of no node, then n nodes spawned with the full member list.
    let mut c = Cluster::start(&format!("el-one{n}"), ClusterOpts { nodes: 0, ..Default::default() }).await;
    let mut events = c.bus.subscribe::<Event>(c.bus.subjects().events()).await.unwrap();
    round_trip(&c.bus).await;
    c.ids = (1..=n).map(|i| format!("n{i}")).collect();
    for id in c.ids.clone() {
        c.spawn(&id);
    }
    let (leader, term) = wait_settled(&c, &c.ids).await;
    assert!(term >= 1);
    // Every won campaign announced its leader, the settled one included.
    let events = collect_events(
        &mut events,
        ELECT,
        &format!("{leader}'s leader event for term {term}, and one for every won campaign"),
        |seen| {
            seen.iter().any(|e| is_leader_event(e, &leader, term))
                && seen.iter().all(|w| {
                    !matches!(w.kind, EventKind::Candidacy { state: CandidacyState::Won, .. })
                        || seen.iter().any(|e| is_leader_event(e, &w.node, w.term))
                })
        },
    )
    .await;
    // Safety over the whole run: no two `leader` events for one term from different nodes.
    let mut leaders_by_term: BTreeMap<u64, String> = BTreeMap::new();
    for e in events.iter().filter(|e| matches!(e.kind, EventKind::Leader { .. })) {
        let prev = leaders_by_term.insert(e.term, e.node.clone());
        assert!(
            prev.is_none() || prev.as_deref() == Some(e.node.as_str()),
            "two leaders in term {}: {prev:?} and {}",
            e.term,
            e.node
        );
    }
    println!("leaders by term: {leaders_by_term:?}");
    assert_eq!(leaders_by_term.get(&term), Some(&leader));
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
    let s = instaface_testkit::poll_until(ELECT, "the unplugged leader to step down", || async {
        let s = c.status(&old).await.expect("status answers while unplugged");
        if s.role != Role::Leader {
            Ok(s)
        } else {
            Err(format!("still {:?} in term {}", s.role, s.term))
        }
    })
    .await;
    assert!(s.unplugged);
    // Plugging it back in does not raise the healthy cluster's term (PreVote).
    c.unplug(&old, false).await;
    let (leader_after, term_after) = wait_settled(&c, &c.ids).await;
    assert_eq!((leader_after.as_str(), term_after), (new_leader.as_str(), new_term));
}

/// The election timeout's lower bound the hand-over test runs with (the node's default,
/// set explicitly so that the bound below means what it says).
const ELECTION_MIN: Duration = Duration::from_millis(750);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_of_the_leader_hands_over_without_an_election_timeout() {
    let timing = vec![
        ("ELECTION_MIN_MS".to_string(), ELECTION_MIN.as_millis().to_string()),
        ("ELECTION_MAX_MS".to_string(), "1000".to_string()),
    ];
    let mut c = Cluster::start("el-term", ClusterOpts { env: timing, ..Default::default() }).await;
    let (old, term) = wait_settled(&c, &c.ids).await;
    let mut events = c.bus.subscribe::<Event>(c.bus.subjects().events()).await.unwrap();
    round_trip(&c.bus).await;
    // Events carry the node's wall-clock time in ms, the same clock as this one.
    let sigterm_ms = instaface_bus::now_ms();
    c.signal(&old, "TERM");
    assert_eq!(c.wait_exit(&old, Duration::from_secs(10)).await, Some(0), "orderly exit");
    let rest: Vec<String> = c.ids.iter().filter(|i| **i != old).cloned().collect();
    let (new_leader, new_term) = wait_settled(&c, &rest).await;
    assert_eq!(new_term, term + 1, "a transfer campaigns once, in the next term");
    let events =
        collect_events(&mut events, ELECT, &format!("{new_leader}'s leader event for term {new_term}"), |seen| {
            seen.iter().any(|e| is_leader_event(e, &new_leader, new_term))
        })
        .await;
    // The hand-over, from SIGTERM to the successor announcing itself, beats the shortest
    // election timeout: nobody waited for one.
    let became = events.iter().find(|e| is_leader_event(e, &new_leader, new_term)).unwrap();
    let hand_over = Duration::from_millis(became.ts.saturating_sub(sigterm_ms));
    println!("hand-over: new leader {new_leader} in term {new_term} {hand_over:?} after SIGTERM");
    assert!(
        hand_over < ELECTION_MIN,
        "the hand-over took {hand_over:?}, not less than the election timeout's {ELECTION_MIN:?}"
    );
    // The successor campaigned at once on TimeoutNow: a real campaign for the next term,
    // and no PreVote round from anyone.
    assert!(
        events.iter().any(|e| e.node == new_leader
            && e.term == new_term
            && matches!(e.kind, EventKind::Candidacy { state: CandidacyState::Started, pre_vote: false })),
        "no campaign of {new_leader} for term {new_term} was seen: {events:#?}"
    );
    for e in &events {
        if let EventKind::Candidacy { state: CandidacyState::Started, pre_vote: true } = e.kind {
            panic!("{} started a PreVote campaign: the hand-over waited for a timeout", e.node);
        }
        if let EventKind::Leader { .. } = e.kind {
            assert!(
                e.term != new_term || e.node == new_leader,
                "two leaders in term {new_term}: {new_leader} and {}",
                e.node
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outside_subscriber_decodes_heartbeats_as_plain_messagepack_maps() {
    let c = Cluster::start("el-tap", ClusterOpts::default()).await;
    let (leader, term) = wait_settled(&c, &c.ids).await;
    let mut sub = c.bus.raw().subscribe(c.bus.subjects().heartbeat()).await.unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(5), sub.next()).await.unwrap().unwrap();
    // A generic decoder, no Instaface types.
    let value = rmpv::decode::read_value(&mut &msg.payload[..]).expect("msgpack");
    let map = value.as_map().expect("a map");
    let field = |name: &str| map.iter().find(|(k, _)| k.as_str() == Some(name)).map(|(_, v)| v.clone());
    assert_eq!(field("term").and_then(|v| v.as_u64()), Some(term));
    assert_eq!(field("leader").and_then(|v| v.as_str().map(String::from)), Some(leader));
    assert!(field("seq").is_some() && field("invalidations").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_actor_is_restarted_and_the_process_lives_on() {
    let mut c = Cluster::start("el-panic", ClusterOpts::default()).await;
    let (leader, _) = wait_settled(&c, &c.ids).await;
    let victim = c.ids.iter().find(|i| **i != leader).cloned().unwrap();
    c.bus.publish(c.bus.subjects().node(&victim, "debug.panic"), &"election".to_string()).await.unwrap();
    c.bus.flush().await.unwrap();
    // The node's actors restart together; it rejoins as a follower of the same cluster.
    wait_until(Duration::from_secs(5), "the node to log its restart", || {
        std::fs::read_to_string(c.log_dir().join(format!("{victim}.log")))
            .unwrap_or_default()
            .contains("restarting the node's actors")
    })
    .await;
    assert!(c.is_running(&victim), "the process ended");
    wait_settled(&c, &c.ids).await;
}
