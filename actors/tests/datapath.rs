//! The data path with real node processes on real NATS, MySQL and Redis: writes at the
//! leader, reads at followers, invalidations, leases, the fence and single flight.

use std::time::{Duration, Instant};

use instaface_bus::graph::{
    Attributes, Consistency, ErrorCode, ReadBatch, ReadQuery, ReadRequest, ReadResult, Reply, MAX_ASSOC_OFFSET,
    MAX_READS_PER_BATCH,
};
use instaface_bus::graph_client::{ClientConfig, GraphClient};
use instaface_testkit::{Cluster, ClusterOpts};
use serde_json::json;

fn attrs(v: serde_json::Value) -> Attributes {
    v.as_object().cloned().unwrap_or_default()
}

/// Reads entity `id` at one node directly (`P.node.<id>.read`).
async fn read_at(c: &Cluster, node: &str, id: u64) -> Reply<ReadResult> {
    let req = ReadRequest { consistency: Consistency::Eventual, query: ReadQuery::Entities { ids: vec![id] } };
    c.bus.request(c.bus.subjects().read_at(&node.to_string()), &req, Duration::from_secs(5)).await.expect("read reply")
}

fn version_of(reply: &Reply<ReadResult>) -> Option<u64> {
    match reply {
        Reply::Ok(ReadResult::Entities { entities }) => entities.first().map(|e| e.version),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_at_the_leader_is_read_back_at_every_follower() {
    let c = Cluster::start("dp-readback", ClusterOpts::default()).await;
    let (leader, _) = c.wait_leader(Duration::from_secs(20), None, 0).await;
    let followers: Vec<String> = c.ids.iter().filter(|id| **id != leader).cloned().collect();
    let (user, seq) = c.client.create_entity("user", attrs(json!({"name": "Ada"}))).await.expect("create");
    assert!(seq > 0);
    assert_eq!(user.version, 1);
    c.wait_serving(&followers.iter().map(|s| s.as_str()).collect::<Vec<_>>(), Duration::from_secs(10)).await;
    for f in &followers {
        assert_eq!(version_of(&read_at(&c, f, user.id).await), Some(1), "follower {f}");
    }
    // An update is seen at every follower as soon as it is acknowledged.
    let (updated, _) = c.client.update_entity(user.id, json!({"name": "Ada L."})).await.expect("update");
    assert_eq!(updated.version, 2);
    for f in &followers {
        assert_eq!(version_of(&read_at(&c, f, user.id).await), Some(2), "follower {f} after the update");
    }
    // Through the queue group as a client would.
    let e = c.client.get_entity(user.id, Consistency::Eventual).await.expect("get");
    assert_eq!(e.attributes["name"], "Ada L.");
    let strong = c.client.get_entity(user.id, Consistency::Strong).await.expect("strong get");
    assert_eq!(strong.version, 2);
}

/// Sends a test hook to a node and waits for its acknowledgement.
async fn hook<T: serde::Serialize>(c: &Cluster, node: &str, name: &str, payload: T) {
    let subject = c.bus.subjects().node(node, &format!("debug.{name}"));
    let _: bool = c.bus.request(subject, &payload, Duration::from_secs(5)).await.expect("hook acknowledged");
}

fn others(c: &Cluster, not: &[&str]) -> Vec<String> {
    c.ids.iter().filter(|id| !not.contains(&id.as_str())).cloned().collect()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(|s| s.as_str()).collect()
}

/// A follower cut off from its peers is still reachable by clients. It may answer from
/// its cache while its read lease lasts (nothing newer was acknowledged meanwhile); the
/// leader answers a write only once that lease has certainly lapsed, and from then on the
/// follower refuses — because it holds no lease, not because a switch says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_cut_off_from_its_peers_serves_only_under_its_lease_and_delays_a_write_at_most_one_lease() {
    let c = Cluster::start("dp-unplug", ClusterOpts::default()).await;
    let (leader, _) = c.wait_leader(Duration::from_secs(20), None, 0).await;
    let followers = others(&c, &[&leader]);
    let (user, _) = c.client.create_entity("user", attrs(json!({"name": "v1"}))).await.unwrap();
    c.wait_serving(&strs(&followers), Duration::from_secs(10)).await;
    let cut = followers[0].clone();
    assert_eq!(version_of(&read_at(&c, &cut, user.id).await), Some(1));

    c.unplug(&cut, true).await;
    instaface_testkit::wait_until_async(Duration::from_secs(5), "the unplug to take effect", || async {
        c.status(&cut).await.is_some_and(|s| s.unplugged)
    })
    .await;
    // Reachable, and within its lease it may still answer v1: nothing newer is
    // acknowledged yet.
    let early = read_at(&c, &cut, user.id).await;
    println!("read at the cut-off follower right after the cut: {early:?}");
    assert!(matches!(version_of(&early), Some(1)) || matches!(early, Reply::Error(_)), "{early:?}");
    let t0 = std::time::Instant::now();
    let (e, _) =
        c.client.update_entity(user.id, json!({"name": "v2"})).await.expect("update while a follower is cut off");
    let waited = t0.elapsed();
    println!("write with one follower unplugged answered in {waited:?}");
    assert_eq!(e.version, 2);
    // One lease bound (≈680 ms by default) plus generous slack for a busy machine.
    assert!(waited < Duration::from_secs(3), "the write waited {waited:?}");

    // Now the cut-off follower answers — it is reachable — but refuses: no lease.
    match read_at(&c, &cut, user.id).await {
        Reply::Error(e) => assert!(e.message.contains("no read lease"), "{e:?}"),
        Reply::Ok(r) => panic!("the cut-off follower served after the write was acknowledged: {r:?}"),
    }
    let status = c.status(&cut).await.expect("status");
    assert_eq!(status.lease_ms, 0, "a cut-off follower's lease ran out");
    assert!(status.unplugged && !status.clients_unplugged && !status.serving);

    // Plugged back, it catches up and serves the new value.
    c.unplug(&cut, false).await;
    c.wait_serving(&[cut.as_str()], Duration::from_secs(10)).await;
    assert_eq!(version_of(&read_at(&c, &cut, user.id).await), Some(2));

    // Isolated from clients too, it answers nothing at all (once it has the command).
    c.isolate(&cut, true).await;
    instaface_testkit::wait_until_async(Duration::from_secs(5), "the isolation to take effect", || async {
        c.status(&cut).await.is_some_and(|s| s.clients_unplugged)
    })
    .await;
    let req = ReadRequest { consistency: Consistency::Eventual, query: ReadQuery::Entities { ids: vec![user.id] } };
    let silent =
        c.bus.request::<_, Reply<ReadResult>>(c.bus.subjects().read_at(&cut), &req, Duration::from_millis(500)).await;
    assert!(silent.is_err(), "an isolated follower answered: {silent:?}");
    c.isolate(&cut, false).await;
    c.wait_serving(&[cut.as_str()], Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_unplugged_during_updates_catches_up_from_heartbeats() {
    let c = Cluster::start("dp-catchup", ClusterOpts::default()).await;
    let (leader, _) = c.wait_leader(Duration::from_secs(20), None, 0).await;
    let followers = others(&c, &[&leader]);
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(c.client.create_entity("user", attrs(json!({"name": format!("u{i}")}))).await.unwrap().0.id);
    }
    c.wait_serving(&strs(&followers), Duration::from_secs(10)).await;
    let cut = followers[0].clone();
    for id in &ids {
        assert_eq!(version_of(&read_at(&c, &cut, *id).await), Some(1)); // now cached at `cut`
    }
    c.unplug(&cut, true).await;
    for round in 0..3 {
        for id in &ids {
            c.client.update_entity(*id, json!({"round": round})).await.unwrap();
        }
    }
    c.unplug(&cut, false).await;
    c.wait_serving(&[cut.as_str()], Duration::from_secs(10)).await;
    for id in &ids {
        assert_eq!(version_of(&read_at(&c, &cut, *id).await), Some(4), "entity {id} at {cut}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_killed_between_commit_and_acks_is_replayed_by_the_next_leader() {
    let mut c = Cluster::start("dp-replay", ClusterOpts::default()).await;
    let (leader, term) = c.wait_leader(Duration::from_secs(20), None, 0).await;
    let followers = others(&c, &[&leader]);
    let (user, _) = c.client.create_entity("user", attrs(json!({"name": "old"}))).await.unwrap();
    c.wait_serving(&strs(&followers), Duration::from_secs(10)).await;
    for f in &followers {
        assert_eq!(version_of(&read_at(&c, f, user.id).await), Some(1)); // cached everywhere
    }
    // The leader commits the update but its invalidation never leaves it.
    hook(&c, &leader, "hold", 1u64).await;
    let client = c.client.clone();
    let pending = tokio::spawn(async move { client.update_entity(user.id, json!({"name": "new"})).await });
    let conn = c.mysql().await;
    let conn = tokio::sync::Mutex::new(conn);
    instaface_testkit::wait_until_async(Duration::from_secs(10), "the update to commit", || async {
        use mysql_async::prelude::Queryable;
        let v: Option<u64> =
            conn.lock().await.exec_first("SELECT version FROM entities WHERE id = ?", (user.id,)).await.unwrap();
        v == Some(2)
    })
    .await;
    c.kill9(&leader);
    // Unacknowledged: the client hears it may or may not have happened.
    let outcome = pending.await.unwrap();
    assert!(outcome.is_err(), "a write whose invalidation was never covered was acknowledged: {outcome:?}");
    let (new_leader, _) = c.wait_leader(Duration::from_secs(20), Some(&leader), term).await;
    let rest = others(&c, &[&leader]);
    c.wait_serving(&strs(&rest), Duration::from_secs(10)).await;
    for f in &rest {
        if *f != new_leader {
            assert_eq!(version_of(&read_at(&c, f, user.id).await), Some(2), "follower {f} still serves the old value");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_leader_cannot_write() {
    use mysql_async::prelude::Queryable;
    let c = Cluster::start("dp-fence", ClusterOpts::default()).await;
    let (old, term) = c.wait_leader(Duration::from_secs(20), None, 0).await;
    c.client.create_entity("user", attrs(json!({"name": "before"}))).await.unwrap();
    let mut conn = c.mysql().await;
    let before: u64 = conn.query_first("SELECT COUNT(*) FROM entities").await.unwrap().unwrap();
    // A write gets stuck inside the old leader's store actor; then the leader freezes.
    hook(&c, &old, "stall", 3000u64).await;
    let bus = c.bus.clone();
    let write_subject = c.bus.subjects().write(&old);
    let pending = tokio::spawn(async move {
        let req = instaface_bus::graph::WriteRequest::CreateEntity {
            etype: "user".into(),
            attributes: attrs(json!({"name": "ghost"})),
        };
        bus.request::<_, Reply<instaface_bus::graph::WriteOutcome>>(write_subject, &req, Duration::from_secs(20)).await
    });
    instaface_testkit::wait_until(Duration::from_secs(5), "the write to reach the store actor", || {
        std::fs::read_to_string(c.log_dir().join(format!("{old}.log"))).unwrap_or_default().contains("stalling a write")
    })
    .await;
    c.signal(&old, "STOP");
    let (new_leader, new_term) = c.wait_leader(Duration::from_secs(20), Some(&old), term).await;
    // The new leader has raised the fence (it writes fine).
    c.client.create_entity("user", attrs(json!({"name": "after"}))).await.unwrap();
    let fence: u64 = conn.query_first("SELECT term FROM fence WHERE id = 1").await.unwrap().unwrap();
    assert!(fence >= new_term && new_term > term, "fence {fence}, terms {term} -> {new_term} ({new_leader})");
    c.signal(&old, "CONT");
    let reply = pending.await.unwrap().expect("the old leader answers");
    match reply {
        Reply::Error(e) => assert!(e.message.contains("fence") || e.message.contains("not the leader"), "{e:?}"),
        Reply::Ok(o) => panic!("a deposed leader wrote: {o:?}"),
    }
    let ghosts: u64 =
        conn.exec_first("SELECT COUNT(*) FROM entities WHERE attributes LIKE ?", ("%ghost%",)).await.unwrap().unwrap();
    assert_eq!(ghosts, 0, "the deposed leader's write reached MySQL");
    let after: u64 = conn.query_first("SELECT COUNT(*) FROM entities").await.unwrap().unwrap();
    assert_eq!(after, before + 1);
    let stale_rows: u64 = conn
        .exec_first(
            "SELECT COUNT(*) FROM outbox WHERE term = ? AND seq > (SELECT MIN(seq) FROM outbox WHERE term = ?)",
            (term, new_term),
        )
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(stale_rows, 0, "an outbox row of the old term after the new term began");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reads_of_a_cold_key_make_one_fetch_and_one_mysql_query() {
    let c = Cluster::start("dp-flight", ClusterOpts::default()).await;
    let (leader, _) = c.wait_leader(Duration::from_secs(20), None, 0).await;
    let followers = others(&c, &[&leader]);
    c.wait_serving(&strs(&followers), Duration::from_secs(10)).await;
    let (user, _) = c.client.create_entity("user", attrs(json!({"name": "cold"}))).await.unwrap();
    let f = followers[0].clone();
    let before_f = c.status(&f).await.unwrap().cache.fills;
    let before_l = c.status(&leader).await.unwrap().cache.fills;
    let reads = (0..50).map(|_| read_at(&c, &f, user.id));
    let results = futures::future::join_all(reads).await;
    assert!(results.iter().all(|r| version_of(r) == Some(1)));
    let fills_f = c.status(&f).await.unwrap().cache.fills - before_f;
    let fills_l = c.status(&leader).await.unwrap().cache.fills - before_l;
    assert_eq!((fills_f, fills_l), (1, 1), "fetches at the follower and MySQL queries at the leader");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_holds_mysql_connections() {
    let mut c = Cluster::start("dp-conns", ClusterOpts::default()).await;
    let (leader, term) = c.wait_leader(Duration::from_secs(20), None, 0).await;
    c.client.create_entity("user", attrs(json!({"name": "x"}))).await.unwrap();
    let holders = |c: &Cluster| -> Vec<String> {
        let pids = mysql_client_pids();
        c.ids.iter().filter(|id| c.pid_of(id).is_some_and(|pid| pids.contains(&pid))).cloned().collect()
    };
    assert_eq!(holders(&c), vec![leader.clone()]);
    c.kill9(&leader);
    let (new_leader, _) = c.wait_leader(Duration::from_secs(20), Some(&leader), term).await;
    c.client.create_entity("user", attrs(json!({"name": "y"}))).await.unwrap();
    assert_eq!(holders(&c), vec![new_leader]);
}

/// Pids of the processes connected to the MySQL server, over TCP port 3306 or its unix
/// socket (mysql_async prefers the socket when the server is local).
fn mysql_client_pids() -> std::collections::BTreeSet<u32> {
    let run = |args: &[&str]| {
        String::from_utf8_lossy(&std::process::Command::new("ss").args(args).output().expect("ss").stdout).to_string()
    };
    let pid_of = |line: &str| -> Option<u32> {
        let at = line.find("pid=")? + 4;
        line[at..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
    };
    let mut pids = std::collections::BTreeSet::new();
    for line in run(&["-tnpH", "state", "established"]).lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() > 3 && cols[3].ends_with(":3306") {
            pids.extend(pid_of(line));
        }
    }
    let unix = run(&["-xpH"]);
    // Server side: local path is the mysqld socket; its peer inode is the client's inode.
    let client_inodes: std::collections::BTreeSet<&str> = unix
        .lines()
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols.len() > 7 && cols[4].contains("mysqld")).then(|| cols[7])
        })
        .collect();
    for line in unix.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() > 5 && client_inodes.contains(cols[5]) {
            pids.extend(pid_of(line));
        }
    }
    pids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_mode_reads_your_writes_with_min_seq() {
    let c = Cluster::start(
        "dp-async",
        ClusterOpts { env: vec![("INVALIDATION".into(), "async".into())], ..Default::default() },
    )
    .await;
    let (leader, _) = c.wait_leader(Duration::from_secs(20), None, 0).await;
    c.wait_serving(&strs(&others(&c, &[&leader])), Duration::from_secs(10)).await;
    let (user, _) = c.client.create_entity("user", attrs(json!({"n": 0}))).await.unwrap();
    for i in 1..=30u64 {
        let (e, seq) = c.client.update_entity(user.id, json!({"n": i})).await.unwrap();
        let read = c.client.get_entity(user.id, Consistency::MinSeq { min_seq: seq }).await.unwrap();
        assert!(read.version >= e.version, "read v{} after writing v{} (seq {seq})", read.version, e.version);
    }
}

/// A batch of reads (`P.graph.reads`) answers each read as it would alone, in order —
/// found, missing, invalid, not yet applied — and the client's batcher, which sends
/// concurrent reads that way, gives every reader its own answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_reads_answers_each_read_as_it_would_alone() {
    let c = Cluster::start("dp-batch", ClusterOpts::default()).await;
    let (leader, _) = c.wait_leader(Duration::from_secs(20), None, 0).await;
    c.wait_serving(&strs(&others(&c, &[&leader])), Duration::from_secs(10)).await;
    let (ada, _) = c.client.create_entity("user", attrs(json!({"name": "Ada"}))).await.unwrap();
    let (bob, seq) = c.client.create_entity("user", attrs(json!({"name": "Bob"}))).await.unwrap();
    c.client.add_assoc(ada.id, "friend", bob.id, Attributes::new()).await.unwrap();

    let eventual = |query| ReadRequest { consistency: Consistency::Eventual, query };
    let reads = vec![
        eventual(ReadQuery::Entities { ids: vec![ada.id, bob.id] }),
        eventual(ReadQuery::Entities { ids: vec![ada.id + 1_000_000] }),
        eventual(ReadQuery::Assocs { from: ada.id, atype: "friend".into(), limit: 10, offset: 0 }),
        eventual(ReadQuery::Assocs { from: ada.id, atype: "friend".into(), limit: 10, offset: MAX_ASSOC_OFFSET + 1 }),
        ReadRequest {
            consistency: Consistency::MinSeq { min_seq: seq + 1_000_000 },
            query: ReadQuery::Entities { ids: vec![ada.id] },
        },
        // Keys named twice in a read and by several reads, another kind beside them.
        eventual(ReadQuery::Entities { ids: vec![ada.id, ada.id, bob.id] }),
        eventual(ReadQuery::Entities { ids: vec![bob.id] }),
        eventual(ReadQuery::Assocs { from: ada.id, atype: "friend".into(), limit: 1, offset: 0 }),
        eventual(ReadQuery::Timeline { user: ada.id, limit: 5 }),
        ReadRequest { consistency: Consistency::Strong, query: ReadQuery::Entities { ids: vec![bob.id] } },
    ];
    let batch = ReadBatch { reads: reads.clone() };
    let answers: Reply<Vec<Reply<ReadResult>>> =
        c.bus.request(c.bus.subjects().graph_reads(), &batch, Duration::from_secs(5)).await.expect("batch reply");
    let Reply::Ok(answers) = answers else { panic!("the batch was refused: {answers:?}") };
    assert_eq!(answers.len(), reads.len(), "one answer per read");
    for (read, batched) in reads.iter().zip(&answers) {
        let alone: Reply<ReadResult> =
            c.bus.request(c.bus.subjects().graph_read(), read, Duration::from_secs(5)).await.expect("reply");
        match (&alone, batched) {
            (Reply::Ok(a), Reply::Ok(b)) => assert_eq!(a, b, "{read:?}"),
            (Reply::Error(a), Reply::Error(b)) => assert_eq!(a.code, b.code, "{read:?}: {a:?} / {b:?}"),
            _ => panic!("{read:?}: alone {alone:?}, in a batch {batched:?}"),
        }
    }
    assert!(matches!(&answers[0], Reply::Ok(ReadResult::Entities { entities }) if entities.len() == 2));
    assert!(matches!(&answers[1], Reply::Ok(ReadResult::Entities { entities }) if entities.is_empty()));
    assert!(matches!(&answers[3], Reply::Error(e) if e.code == ErrorCode::Invalid));
    assert!(matches!(&answers[4], Reply::Error(e) if e.code == ErrorCode::Unavailable));
    assert!(matches!(&answers[5], Reply::Ok(ReadResult::Entities { entities }) if entities.len() == 2));
    assert!(matches!(&answers[9], Reply::Error(e) if e.code == ErrorCode::NotLeader));

    // Too many reads: refused as a whole, clearly.
    let too_many = ReadBatch { reads: vec![reads[0].clone(); MAX_READS_PER_BATCH + 1] };
    let refused: Reply<Vec<Reply<ReadResult>>> =
        c.bus.request(c.bus.subjects().graph_reads(), &too_many, Duration::from_secs(5)).await.expect("reply");
    assert!(matches!(&refused, Reply::Error(e) if e.code == ErrorCode::Invalid), "{refused:?}");

    // Many readers at once through the client (batching on by default): each gets its own.
    let readers = (0..200u64).map(|i| {
        let client = c.client.clone();
        let id = if i % 2 == 0 { ada.id } else { bob.id };
        tokio::spawn(async move { (id, client.get_entity(id, Consistency::Eventual).await) })
    });
    for reader in futures::future::join_all(readers).await {
        let (id, got) = reader.expect("reader task");
        assert_eq!(got.expect("read").id, id);
    }
}

/// A follower that stops answering (SIGSTOP) while in the readers group holds up only the
/// requests that reach it: every read of a crowd through the client (batched) is
/// answered, none later than about one request timeout, after which the leader answers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_follower_holds_up_a_read_one_request_timeout_at_most() {
    let c = Cluster::start("dp-stopped", ClusterOpts::default()).await;
    let (leader, _) = c.wait_leader(Duration::from_secs(20), None, 0).await;
    let followers = others(&c, &[&leader]);
    c.wait_serving(&strs(&followers), Duration::from_secs(10)).await;
    let (ada, _) = c.client.create_entity("user", attrs(json!({"name": "Ada"}))).await.unwrap();
    let timeout = Duration::from_secs(1);
    let cfg = ClientConfig { request_timeout: timeout, deadline: Duration::from_secs(10), ..ClientConfig::default() };
    let client = GraphClient::new(c.bus.clone(), cfg).await.expect("graph client");
    client.wait_for_leader(Duration::from_secs(5)).await.expect("leader");

    // 128 readers reading for three request timeouts.
    c.signal(&followers[0], "STOP");
    let until = Instant::now() + timeout * 3;
    let readers = (0..128).map(|_| {
        let client = client.clone();
        tokio::spawn(async move {
            let (mut reads, mut slowest) = (0u32, Duration::ZERO);
            while Instant::now() < until {
                let started = Instant::now();
                let got = client.get_entity(ada.id, Consistency::Eventual).await;
                slowest = slowest.max(started.elapsed());
                assert_eq!(got.expect("every read is answered").id, ada.id);
                reads += 1;
            }
            (reads, slowest)
        })
    });
    let answers = futures::future::join_all(readers).await;
    c.signal(&followers[0], "CONT");
    let (mut reads, mut slowest) = (0, Duration::ZERO);
    for answer in answers {
        let (n, s) = answer.expect("reader task");
        reads += n;
        slowest = slowest.max(s);
    }
    eprintln!("{reads} reads, the slowest {slowest:?}");
    assert!(slowest < timeout * 2, "a read took {slowest:?} with a {timeout:?} request timeout");
}

/// Past `MAX_INFLIGHT_REQUESTS` at once, a node refuses at once with a clear error
/// instead of queueing without bound; the requests it took complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_sheds_requests_past_its_limit_with_a_clear_error() {
    let c = Cluster::start(
        "dp-shed",
        ClusterOpts { env: vec![("MAX_INFLIGHT_REQUESTS".into(), "2".into())], ..Default::default() },
    )
    .await;
    let (leader, _) = c.wait_leader(Duration::from_secs(20), None, 0).await;
    let (user, _) = c.client.create_entity("user", attrs(json!({"n": 0}))).await.unwrap();
    // The next write waits 1 s in the store: the writes after it pile up behind it.
    hook(&c, &leader, "stall", 1000u64).await;
    let subject = c.bus.subjects().write(&leader);
    let writes = (0..6).map(|i| {
        let (bus, subject) = (c.bus.clone(), subject.clone());
        async move {
            let req = instaface_bus::graph::WriteRequest::UpdateEntity { id: user.id, patch: json!({ "n": i }) };
            bus.request::<_, Reply<instaface_bus::graph::WriteOutcome>>(subject, &req, Duration::from_secs(10)).await
        }
    });
    let replies = futures::future::join_all(writes).await;
    let shed = replies.iter().filter(|r| matches!(r, Ok(Reply::Error(e)) if e.message.contains("overloaded"))).count();
    let done = replies.iter().filter(|r| matches!(r, Ok(Reply::Ok(_)))).count();
    println!("of 6 concurrent writes with a limit of 2: {done} done, {shed} shed");
    assert!(shed >= 3, "{replies:?}");
    assert!(done >= 1, "{replies:?}");
    assert_eq!(shed + done, 6, "every write answered: {replies:?}");
}

/// What became of one write, as its writer heard it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Heard {
    Acknowledged,
    /// The client was told it may or may not have happened.
    Unknown,
    /// Refused before it ran (the client retried what was safe to retry, then gave up).
    NotRun,
}

/// Group commit across a leader crash: 32 writers keep the leader's batches full while it
/// is killed with SIGKILL. Every acknowledged write is in MySQL exactly once, and no write
/// the client was told did not run is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_across_a_leader_kill_lose_nothing_and_duplicate_nothing() {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use instaface_bus::graph_client::ClientError;
    use mysql_async::prelude::Queryable;

    let mut c = Cluster::start("dp-group", ClusterOpts::default()).await;
    let (leader, term) = c.wait_leader(Duration::from_secs(20), None, 0).await;
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicUsize::new(0));
    let heard: Arc<Mutex<HashMap<String, Heard>>> = Arc::default();
    let mut writers = Vec::new();
    for w in 0..32 {
        let (client, stop, acked, heard) = (c.client.clone(), stop.clone(), acked.clone(), heard.clone());
        writers.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let tag = format!("w{w}-{n}");
                n += 1;
                let result = client.create_entity("user", attrs(json!({ "tag": tag }))).await;
                let what = match result {
                    Ok(_) => {
                        acked.fetch_add(1, Ordering::Relaxed);
                        Heard::Acknowledged
                    }
                    Err(ClientError::OutcomeUnknown(_) | ClientError::Timeout(_) | ClientError::Bus(_)) => {
                        Heard::Unknown
                    }
                    Err(_) => Heard::NotRun,
                };
                heard.lock().expect("not poisoned").insert(tag, what);
            }
        }));
    }
    let progress = |target: usize| {
        let acked = acked.clone();
        async move {
            instaface_testkit::wait_until(Duration::from_secs(30), "writes to be acknowledged", || {
                acked.load(Ordering::Relaxed) >= target
            })
            .await
        }
    };
    progress(300).await;
    c.kill9(&leader);
    let before_kill = acked.load(Ordering::Relaxed);
    c.wait_leader(Duration::from_secs(20), Some(&leader), term).await;
    progress(before_kill + 300).await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.expect("writer");
    }

    let mut conn = c.mysql().await;
    let rows: Vec<(Option<String>, u64)> = conn
        .query("SELECT JSON_UNQUOTE(JSON_EXTRACT(attributes, '$.tag')), COUNT(*) FROM entities GROUP BY 1")
        .await
        .expect("count the writes");
    let stored: HashMap<String, u64> = rows.into_iter().filter_map(|(tag, n)| Some((tag?, n))).collect();
    let heard = heard.lock().expect("not poisoned").clone();
    let mut tally: HashMap<Heard, usize> = HashMap::new();
    for (tag, what) in &heard {
        *tally.entry(*what).or_default() += 1;
        let n = stored.get(tag).copied().unwrap_or(0);
        match what {
            Heard::Acknowledged => assert_eq!(n, 1, "acknowledged write {tag} is in MySQL {n} times"),
            Heard::NotRun => assert_eq!(n, 0, "write {tag} was refused as not run, yet is in MySQL"),
            Heard::Unknown => assert!(n <= 1, "write {tag} is in MySQL {n} times"),
        }
    }
    for (tag, n) in &stored {
        assert!(heard.contains_key(tag), "{tag} is in MySQL ({n}) but nobody wrote it");
    }
    println!("writes heard: {tally:?}");
    assert!(tally.get(&Heard::Acknowledged).copied().unwrap_or(0) >= 600);
}
