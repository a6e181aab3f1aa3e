//! The gateway against a real 3-node cluster (testkit): every route with the consistency
//! options and the seq header, each answer checked against the OpenAPI document; the bad-input
//! table; the websocket seeing a leader change when the leader is unplugged (and the unplug
//! refused without the token); the gateway process riding out a leader kill.
//!
//! Not covered: a NATS restart. The NATS server is shared by every test running in
//! parallel, so restarting it here would break them; the client's reconnect behaviour is
//! async-nats's (`max_reconnects(None)`, subscriptions restored), configured in `bus`.
//!
//! Needs `instaface-node` built (`cargo build --workspace --bins`), NATS, MySQL and Redis.

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::http::Method;
use axum::Router;
use common::*;
use futures::StreamExt;
use instaface_bus::graph_client::ClientConfig;
use instaface_gateway::AppState;
use instaface_testkit::{wait_until, wait_until_async, Cluster, ClusterOpts};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message as WsMessage;

const STARTUP: Duration = Duration::from_secs(30);

async fn cluster(name: &str, fast: bool) -> Cluster {
    let cluster = Cluster::start(name, ClusterOpts { nodes: 3, env: Vec::new(), fast, ..ClusterOpts::default() }).await;
    cluster.wait_leader(STARTUP, None, 0).await;
    cluster
}

/// An in-process gateway on the cluster's prefix.
async fn gateway(cluster: &Cluster, client: ClientConfig) -> (AppState, Router) {
    let bus = bus(&cluster.prefix).await;
    let state = AppState::start(bus, client, test_config()).await.expect("gateway state");
    (state.clone(), instaface_gateway::app(state))
}

/// Sends `call`, retrying while the answer is 503 (the cluster settling); checks the final
/// answer against the document.
async fn send(app: &Router, contract: &Contract, call: Call) -> Reply {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let reply = call.send(app).await;
        if reply.status != 503 || Instant::now() > deadline {
            contract.check(&reply);
            return reply;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn post(path: &str, body: Value) -> Call {
    Call::new(Method::POST, path).json(body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_on_a_live_cluster() {
    let cluster = cluster("gw-routes", true).await;
    let (_state, app) = gateway(&cluster, ClientConfig::default()).await;
    let c = Contract::load();
    cluster.wait_serving(&["n1", "n2", "n3"], STARTUP).await;

    // Create: 201, the entity, a seq.
    let ada = send(&app, &c, post("/api/entities/user", json!({ "name": "Ada", "tags": ["x"] }))).await.expect(201);
    let seq1 = ada.seq().expect("X-Instaface-Seq on create");
    let ada = ada.json();
    assert_eq!((ada["type"].as_str(), ada["version"].as_u64()), (Some("user"), Some(1)));
    assert_eq!(ada["attributes"], json!({ "name": "Ada", "tags": ["x"] }));
    let ada_id = ada["id"].as_u64().unwrap();
    let bob = send(&app, &c, post("/api/entities/user", json!({ "name": "Bob" }))).await.expect(201);
    let bob_id = bob.json()["id"].as_u64().unwrap();
    let post_reply = send(&app, &c, post("/api/entities/status", json!({ "text": "hello" }))).await.expect(201);
    let status_id = post_reply.json()["id"].as_u64().unwrap();
    assert!(post_reply.seq().unwrap() > seq1, "seqs grow");

    // Read it back with each consistency.
    for q in ["", "?consistency=eventual", "?consistency=strong", &format!("?min_seq={seq1}")] {
        let got = send(&app, &c, Call::get(format!("/api/entities/{ada_id}{q}"))).await.expect(200);
        assert_eq!(got.json(), ada, "read with {q:?}");
    }

    // Patch: a merge patch; null removes a key; version and seq grow.
    let patched = send(
        &app,
        &c,
        Call::new(Method::PATCH, format!("/api/entities/{ada_id}")).json(json!({ "tags": null, "city": "London" })),
    )
    .await
    .expect(200);
    let seq_patch = patched.seq().expect("X-Instaface-Seq on patch");
    assert!(seq_patch > seq1);
    assert_eq!(patched.json()["attributes"], json!({ "name": "Ada", "city": "London" }));
    assert_eq!(patched.json()["version"], 2);
    // Once acknowledged, no node serves the older version, whatever the consistency.
    for q in [format!("?min_seq={seq_patch}"), "?consistency=strong".into(), String::new()] {
        let got = send(&app, &c, Call::get(format!("/api/entities/{ada_id}{q}"))).await.expect(200);
        assert_eq!(got.json()["version"], 2, "read with {q:?} after the patch");
    }

    // Many at once: those found, in the order asked.
    let many = send(&app, &c, Call::get(format!("/api/entities?ids={bob_id},999999999,{ada_id}"))).await.expect(200);
    let ids: Vec<u64> = many.json().as_array().unwrap().iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, vec![bob_id, ada_id]);
    send(&app, &c, Call::get(format!("/api/entities?ids={ada_id}&consistency=strong"))).await.expect(200);

    // Associations: an empty body is `{}`; the inverse appears.
    let friend = send(&app, &c, Call::new(Method::PUT, format!("/api/entities/{ada_id}/associations/friend/{bob_id}")))
        .await
        .expect(200);
    assert!(friend.seq().is_some());
    assert_eq!(friend.json()["attributes"], json!({}));
    assert_eq!((friend.json()["from"].as_u64(), friend.json()["to"].as_u64()), (Some(ada_id), Some(bob_id)));
    let posted = send(
        &app,
        &c,
        Call::new(Method::PUT, format!("/api/entities/{ada_id}/associations/posted/{status_id}"))
            .json(json!({ "via": "web" })),
    )
    .await
    .expect(200);
    assert_eq!(posted.json()["attributes"], json!({ "via": "web" }));
    let liked = send(
        &app,
        &c,
        Call::new(Method::PUT, format!("/api/entities/{bob_id}/associations/likes/{status_id}")).json(json!({})),
    )
    .await
    .expect(200);
    let seq_liked = liked.seq().unwrap();

    let inverse = send(&app, &c, Call::get(format!("/api/entities/{bob_id}/associations/friend?min_seq={seq_liked}")))
        .await
        .expect(200);
    assert_eq!(inverse.json()["count"], 1);
    assert_eq!(inverse.json()["items"][0]["to"], ada_id);
    let page = send(
        &app,
        &c,
        Call::get(format!("/api/entities/{status_id}/associations/likedby?limit=10&offset=0&consistency=strong")),
    )
    .await
    .expect(200);
    assert_eq!(page.json()["count"], 1);
    assert_eq!(page.json()["items"][0]["to"], bob_id);
    let empty_page =
        send(&app, &c, Call::get(format!("/api/entities/{status_id}/associations/likedby?limit=10&offset=1")))
            .await
            .expect(200);
    assert_eq!(empty_page.json()["count"], 1);
    assert_eq!(empty_page.json()["items"], json!([]));
    let none = send(&app, &c, Call::get(format!("/api/entities/{ada_id}/associations/follows"))).await.expect(200);
    assert_eq!(none.json(), json!({ "count": 0, "items": [] }));

    // A template query, expanded level by level.
    let q = send(
        &app,
        &c,
        post("/api/query", json!({ "entities": [ada_id], "template": { "friend": {}, "posted": { "likedby": {} } } })),
    )
    .await
    .expect(200)
    .json();
    let root = &q["entities"][0];
    assert_eq!(root["id"], ada_id);
    assert_eq!(root["associations"]["friend"][0]["id"], bob_id);
    assert_eq!(root["associations"]["posted"][0]["id"], status_id);
    assert_eq!(root["associations"]["posted"][0]["associations"]["likedby"][0]["id"], bob_id);
    assert!(q["stats"]["levels"].as_u64().unwrap() >= 2, "{}", q["stats"]);
    send(&app, &c, post("/api/query?consistency=strong", json!({ "entities": [ada_id, bob_id] }))).await.expect(200);

    // Timelines: posts with likers, likes with authors.
    let t = send(&app, &c, Call::get(format!("/api/timeline/{ada_id}"))).await.expect(200).json();
    assert_eq!(t["user"]["id"], ada_id);
    assert_eq!(t["posts"][0]["status"]["id"], status_id);
    assert_eq!(t["posts"][0]["liked_by"][0]["id"], bob_id);
    let t = send(&app, &c, Call::get(format!("/api/timeline/{bob_id}?limit=5&consistency=strong")))
        .await
        .expect(200)
        .json();
    assert_eq!(t["likes"][0]["status"]["id"], status_id);
    assert_eq!(t["likes"][0]["posted_by"][0]["id"], ada_id);
    let missing_user = send(&app, &c, Call::get("/api/timeline/999999999")).await.expect(404);
    assert_eq!(missing_user.error_code(), "not_found");

    // Random ids of a type.
    let r = send(&app, &c, Call::get("/api/random/user?count=5")).await.expect(200).json();
    let r: Vec<u64> = r["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    assert!(!r.is_empty() && r.len() <= 2 && r.iter().all(|id| [ada_id, bob_id].contains(id)), "{r:?}");
    let r = send(&app, &c, Call::get("/api/random/nosuchtype")).await.expect(200).json();
    assert_eq!(r["ids"], json!([]));

    // Unknown ids.
    assert_eq!(send(&app, &c, Call::get("/api/entities/999999999")).await.expect(404).error_code(), "not_found");
    let dangling =
        send(&app, &c, Call::new(Method::PUT, format!("/api/entities/{ada_id}/associations/friend/999999999"))).await;
    assert!([404, 409].contains(&dangling.status.as_u16()), "association to a missing entity: {}", dangling.status);
    let patch_missing =
        send(&app, &c, Call::new(Method::PATCH, "/api/entities/999999999").json(json!({ "a": 1 }))).await;
    assert_eq!(patch_missing.status, 404);

    // Deletes: 204 with a seq, then 404.
    let removed =
        send(&app, &c, Call::delete(format!("/api/entities/{ada_id}/associations/friend/{bob_id}"))).await.expect(204);
    assert!(removed.seq().is_some());
    send(&app, &c, Call::delete(format!("/api/entities/{ada_id}/associations/friend/{bob_id}"))).await.expect(404);
    let gone = send(&app, &c, Call::get(format!("/api/entities/{bob_id}/associations/friend?consistency=strong")))
        .await
        .expect(200);
    assert_eq!(gone.json()["count"], 0, "the inverse went too");
    let deleted = send(&app, &c, Call::delete(format!("/api/entities/{status_id}"))).await.expect(204);
    let seq_deleted = deleted.seq().expect("X-Instaface-Seq on delete");
    send(&app, &c, Call::get(format!("/api/entities/{status_id}?min_seq={seq_deleted}"))).await.expect(404);
    send(&app, &c, Call::delete(format!("/api/entities/{status_id}"))).await.expect(404);
    let likes = send(&app, &c, Call::get(format!("/api/entities/{bob_id}/associations/likes?consistency=strong")))
        .await
        .expect(200);
    assert_eq!(likes.json()["count"], 0, "deleting an entity removes its associations both ways");

    // The cluster as the gateway sees it.
    let (leader, term) = cluster.wait_leader(STARTUP, None, 0).await;
    let app2 = app.clone();
    wait_until_async(Duration::from_secs(10), "every node reachable in /api/cluster", || {
        let app = app2.clone();
        async move {
            let o = Call::get("/api/cluster").send(&app).await.json();
            o["nodes"].as_array().is_some_and(|n| n.len() == 3 && n.iter().all(|n| n["reachable"] == true))
        }
    })
    .await;
    let o = send(&app, &c, Call::get("/api/cluster")).await.expect(200).json();
    assert_eq!(o["leader"], leader.as_str());
    assert_eq!(o["term"], term);
    assert_eq!(o["members"], json!(["n1", "n2", "n3"]));
    let roles: BTreeMap<String, String> = o["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["id"].as_str().unwrap().to_string(), n["role"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(roles.values().filter(|r| *r == "leader").count(), 1, "{roles:?}");
    assert_eq!(roles[&leader], "leader");

    // The bad-input table, against the live cluster.
    check_bad_inputs(&c, bad_inputs(ada_id, test_config().body_limit), |call| {
        let app = app.clone();
        async move { call.send(&app).await }
    })
    .await;
}

/// Polls an async condition until it holds.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_sees_the_leader_change_when_the_leader_is_unplugged() {
    let cluster = cluster("gw-unplug", true).await;
    let (old_leader, old_term) = cluster.wait_leader(STARTUP, None, 0).await;
    let (state, app) = gateway(&cluster, ClientConfig::default()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let base = format!("http://{addr}");
    let http = reqwest::Client::new();

    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/api/events")).await.expect("websocket");
    wait_until(Duration::from_secs(5), "the socket subscribed", || state.events.receiver_count() == 1).await;

    // Without the token, or with a wrong one: refused, and nothing changes.
    let path = format!("/api/cluster/nodes/{old_leader}/unplugged");
    let refused =
        Call::new(Method::PUT, &path).json(json!({ "unplugged": true })).send_http(&http, &base).await.unwrap();
    assert_eq!(refused.status, 401);
    assert_eq!(refused.error_code(), "unauthorized");
    let refused = Call::new(Method::PUT, &path)
        .json(json!({ "unplugged": true }))
        .bearer("guess")
        .send_http(&http, &base)
        .await
        .unwrap();
    assert_eq!(refused.status, 403);
    assert_eq!(cluster.status(&old_leader).await.map(|s| s.unplugged), Some(false));

    // With it: the leader is cut off, another node takes over, the socket shows it.
    let accepted = Call::new(Method::PUT, &path)
        .json(json!({ "unplugged": true }))
        .bearer(TOKEN)
        .send_http(&http, &base)
        .await
        .unwrap();
    assert_eq!(accepted.status, 202, "{}", String::from_utf8_lossy(&accepted.body));
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let new_leader = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = tokio::time::timeout(left, ws.next())
            .await
            .unwrap_or_else(|_| panic!("no new leader event within 30 s; saw {:?}", summary(&seen)))
            .expect("the socket stays open")
            .expect("a message");
        let WsMessage::Text(text) = msg else { continue };
        let event: Value = serde_json::from_str(text.as_str()).unwrap();
        assert!(
            event["type"].is_string() && event["node"].is_string() && event["term"].is_u64() && event["ts"].is_u64(),
            "{event}"
        );
        seen.push(event.clone());
        if event["type"] == "leader" && event["node"] != old_leader.as_str() {
            break event["node"].as_str().unwrap().to_string();
        }
    };
    let types: Vec<(String, String)> = summary(&seen);
    assert!(
        types.contains(&("unplugged".into(), old_leader.clone())),
        "the unplugged node says so before the new leader is elected: {types:?}"
    );
    assert!(types.iter().any(|(t, _)| t == "candidacy"), "a campaign was seen: {types:?}");
    let new_term = seen.last().unwrap()["term"].as_u64().unwrap();
    assert!(new_term > old_term);

    // The other follower follows the new leader.
    let deadline = Instant::now() + Duration::from_secs(15);
    let third = ["n1", "n2", "n3"].into_iter().find(|n| *n != old_leader && *n != new_leader).unwrap();
    loop {
        if seen.iter().any(|e| e["type"] == "follower" && e["node"] == third && e["term"].as_u64() >= Some(new_term)) {
            break;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = tokio::time::timeout(left, ws.next())
            .await
            .unwrap_or_else(|_| panic!("{third} never followed; saw {:?}", summary(&seen)));
        if let Some(Ok(WsMessage::Text(text))) = msg {
            seen.push(serde_json::from_str(text.as_str()).unwrap());
        }
    }

    // /api/cluster agrees.
    let c = Contract::load();
    let old = old_leader.clone();
    let newl = new_leader.clone();
    let http2 = http.clone();
    let base2 = base.clone();
    wait_until_async(Duration::from_secs(15), "the overview shows the new leader and the unplugged node", || {
        let (http, base, old, newl) = (http2.clone(), base2.clone(), old.clone(), newl.clone());
        async move {
            let o = Call::get("/api/cluster").send_http(&http, &base).await.unwrap().json();
            let node =
                |id: &str| o["nodes"].as_array().unwrap().iter().find(|n| n["id"] == id).cloned().unwrap_or_default();
            // Cut off from its peers (not from clients), its lease has run out: it serves no reads.
            o["leader"] == newl.as_str()
                && node(&old)["unplugged"] == true
                && node(&old)["clients_unplugged"] == false
                && node(&old)["reachable"] == false
                && node(&old)["serving"] == false
        }
    })
    .await;
    let o = Call::get("/api/cluster").send_http(&http, &base).await.unwrap();
    c.check(&o);

    // Plugged back in, the old leader comes back as a follower.
    let back = Call::new(Method::PUT, &path)
        .json(json!({ "unplugged": false }))
        .bearer(TOKEN)
        .send_http(&http, &base)
        .await
        .unwrap();
    assert_eq!(back.status, 202);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if seen.iter().any(|e| {
            e["type"] == "follower" && e["node"] == old_leader.as_str() && e["term"].as_u64() >= Some(new_term)
        }) {
            break;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = tokio::time::timeout(left, ws.next())
            .await
            .unwrap_or_else(|_| panic!("{old_leader} never came back as a follower; saw {:?}", summary(&seen)));
        if let Some(Ok(WsMessage::Text(text))) = msg {
            seen.push(serde_json::from_str(text.as_str()).unwrap());
        }
    }
    server.abort();
}

fn summary(events: &[Value]) -> Vec<(String, String)> {
    events
        .iter()
        .filter(|e| e["type"] != "cache")
        .map(|e| (e["type"].as_str().unwrap_or("?").to_string(), e["node"].as_str().unwrap_or("?").to_string()))
        .collect()
}

/// The gateway binary, killed on drop.
struct GatewayProcess {
    child: Child,
    base: String,
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl GatewayProcess {
    fn start(cluster: &Cluster, env: &[(&str, &str)]) -> GatewayProcess {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = std::fs::File::create(cluster.log_dir().join("gateway.log")).expect("gateway log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_instaface-gateway"));
        cmd.env("INSTAFACE_PREFIX", &cluster.prefix)
            .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .env("NATS_URL", "nats://127.0.0.1:4222")
            .env("REDIS_URL", "redis://127.0.0.1:6379")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log));
        for (k, v) in env {
            cmd.env(k, v);
        }
        GatewayProcess {
            child: cmd.spawn().expect("spawn instaface-gateway"),
            base: format!("http://127.0.0.1:{port}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_keeps_answering_while_the_leader_is_killed() {
    // Default timing (elections after 0.75-1 s), so the gap without a leader is longer than
    // the gateway's 300 ms wait for one: the gateway answers 503 for a while.
    let mut cluster = cluster("gw-kill", false).await;
    let mut gw = GatewayProcess::start(&cluster, &[("LEADER_WAIT_MS", "300"), ("REQUEST_TIMEOUT_MS", "1000")]);
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let c = Contract::load();

    // Up, with a leader, and serving writes.
    let deadline = Instant::now() + STARTUP;
    let id = loop {
        if let Ok(r) = post("/api/entities/user", json!({ "name": "steady" })).send_http(&http, &gw.base).await {
            if r.status == 201 {
                c.check(&r);
                break r.json()["id"].as_u64().unwrap();
            }
        }
        assert!(Instant::now() < deadline, "the gateway never served a write");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    let (leader, term) = cluster.wait_leader(STARTUP, None, 0).await;
    cluster.kill9(&leader);
    let killed_at = Instant::now();

    // Keep calling until both a read and a write succeed at the new leader's term.
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    let mut codes: BTreeMap<String, usize> = BTreeMap::new();
    let mut recovered = (false, false);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(recovered.0 && recovered.1) {
        assert!(Instant::now() < deadline, "no recovery within 30 s of the kill; answers so far: {statuses:?}");
        let write = post("/api/entities/user", json!({ "name": "during" }))
            .send_http(&http, &gw.base)
            .await
            .expect("the gateway answers");
        let read = Call::get(format!("/api/entities/{id}?consistency=strong"))
            .send_http(&http, &gw.base)
            .await
            .expect("the gateway answers");
        for r in [&write, &read] {
            *statuses.entry(r.status.as_u16()).or_default() += 1;
            assert!(
                [200, 201, 503, 504].contains(&r.status.as_u16()),
                "unexpected {} {}: {}",
                r.status,
                r.path,
                String::from_utf8_lossy(&r.body)
            );
            c.check(r);
            if r.status == 503 {
                assert_eq!(r.header("retry-after"), Some("1"));
            }
            if r.status.is_server_error() {
                *codes.entry(format!("{} {} {}", r.method, r.status.as_u16(), r.error_code())).or_default() += 1;
                eprintln!("{} {} -> {} {}", r.method, r.path, r.status, String::from_utf8_lossy(&r.body));
            }
        }
        let new_term =
            cluster.client.leader_info().current().map(|(l, t)| (l != &leader, t > term)).unwrap_or((false, false));
        if new_term == (true, true) {
            recovered.0 |= write.status == 201;
            recovered.1 |= read.status == 200;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("answers after killing leader {leader}: {statuses:?} {codes:?}; recovered in {:?}", killed_at.elapsed());
    assert!(matches!(gw.child.try_wait(), Ok(None)), "the same gateway process is still running");
    let health = Call::get("/healthz").send_http(&http, &gw.base).await.unwrap();
    assert_eq!(health.status, 200);
    c.check(&health);
}

/// Two shards on two MariaDB servers through the gateway: `/api/cluster` lists both
/// shards' leaders and shows every node answering its status (shard 0's group); creates go
/// to the shards in turn and `?near=` puts a status in its poster's shard; an association
/// works both ways inside a shard and across shards (the other row a moment later); an id
/// of no shard is not found; one read of ids in both shards answers them all, in the
/// order asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shards_through_the_gateway() {
    use instaface_bus::shards::{shard_of, Shards};
    let opts =
        ClusterOpts { shard_ports: vec![3306, instaface_testkit::MYSQL2_PORT], fast: true, ..ClusterOpts::default() };
    let cluster = Cluster::start("gw-shards", opts).await;
    let shards = Shards::new(2).expect("two shards");
    let (_state, app) = gateway(&cluster, ClientConfig { shards, ..ClientConfig::default() }).await;
    let c = Contract::load();
    wait_until_async(STARTUP, "both shards led and every node answering in /api/cluster", || {
        let app = app.clone();
        async move {
            let o = Call::get("/api/cluster").send(&app).await.json();
            let led = o["shards"].as_array().is_some_and(|s| s.len() == 2 && s.iter().all(|s| s["leader"].is_string()));
            let nodes = o["nodes"].as_array().is_some_and(|n| n.len() == 3 && n.iter().all(|n| n["reachable"] == true));
            led && nodes
        }
    })
    .await;
    let health = Call::get("/healthz").send(&app).await.expect(200);
    assert_eq!(health.json()["shards_without_leader"], json!([]), "{}", health.json());

    let mut users = Vec::new();
    for name in ["Ada", "Bob", "Cy", "Di"] {
        let reply = send(&app, &c, post("/api/entities/user", json!({ "name": name }))).await.expect(201);
        users.push(reply.json()["id"].as_u64().unwrap());
    }
    let shard_of_user: Vec<u32> = users.iter().map(|&id| shard_of(id)).collect();
    assert_eq!(shard_of_user.iter().filter(|&&k| k == 1).count(), 2, "creates in turn: {users:?}");
    let poster = *users.iter().find(|&&id| shard_of(id) == 1).unwrap();
    let friend = *users.iter().rev().find(|&&id| shard_of(id) == 1 && id != poster).unwrap();
    let stranger = *users.iter().find(|&&id| shard_of(id) == 0).unwrap();

    let status =
        send(&app, &c, post(&format!("/api/entities/status?near={poster}"), json!({ "text": "hi" }))).await.expect(201);
    let status_id = status.json()["id"].as_u64().unwrap();
    assert_eq!(shard_of(status_id), 1, "a status near its poster");

    let path = format!("/api/entities/{poster}/associations/friend/{friend}");
    send(&app, &c, Call::new(Method::PUT, path).json(json!({}))).await.expect(200);
    let back = send(&app, &c, Call::get(format!("/api/entities/{friend}/associations/friend?consistency=strong")))
        .await
        .expect(200);
    assert_eq!(back.json()["items"][0]["to"].as_u64(), Some(poster), "{}", back.json());

    // Across shards: the pair's owner writes its row at once and the other shard's
    // through an intent, shortly after; both lists show it.
    let path = format!("/api/entities/{poster}/associations/friend/{stranger}");
    send(&app, &c, Call::new(Method::PUT, path).json(json!({}))).await.expect(200);
    for (from, to) in [(stranger, poster), (poster, stranger)] {
        let path = format!("/api/entities/{from}/associations/friend?consistency=strong");
        wait_until_async(Duration::from_secs(20), "both rows of a cross-shard friendship", || {
            let (app, path) = (app.clone(), path.clone());
            async move {
                let list = Call::get(path).send(&app).await.json();
                list["items"].as_array().is_some_and(|items| items.iter().any(|a| a["to"].as_u64() == Some(to)))
            }
        })
        .await;
    }

    // An id of no shard names no entity: a read, an update and an association all say so.
    let nowhere = instaface_bus::shards::first_id(2);
    send(&app, &c, Call::get(format!("/api/entities/{nowhere}"))).await.expect(404);
    send(&app, &c, Call::new(Method::PATCH, format!("/api/entities/{nowhere}")).json(json!({"name": "x"})))
        .await
        .expect(404);
    let path = format!("/api/entities/{poster}/associations/friend/{nowhere}");
    send(&app, &c, Call::new(Method::PUT, path).json(json!({}))).await.expect(404);

    let ids = format!("{stranger},{status_id},{poster},999999999");
    let many = send(&app, &c, Call::get(format!("/api/entities?ids={ids}"))).await.expect(200);
    let got: Vec<u64> = many.json().as_array().unwrap().iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert_eq!(got, vec![stranger, status_id, poster]);
}
