//! The gateway served inside a node (`GATEWAY_LISTEN`), against a real 3-node cluster:
//! its reads are served from that node's own cache while it holds a read lease (the node's
//! `local_reads_total{outcome="served"}` grows), every read after an acknowledged write
//! sees that write, and while the node is unplugged (or isolated from clients too) its
//! gateway's reads go over the bus to the other members (`outcome="elsewhere"`) and are
//! still fresh.
//!
//! Needs `instaface-node` built (`cargo build --workspace --bins`), NATS, MySQL and Redis.

mod common;

use std::time::Duration;

use axum::http::Method;
use common::*;
use instaface_testkit::{free_port, poll_until, wait_until_async, Cluster, ClusterOpts};
use serde_json::json;

const STARTUP: Duration = Duration::from_secs(30);

/// The sum of metric `name`'s samples whose labels contain `having`, on the node's
/// metrics endpoint at `metrics`.
async fn metric(http: &reqwest::Client, metrics: &str, name: &str, having: &str) -> u64 {
    let reply = http.get(format!("{metrics}/metrics")).send().await.expect("the node's metrics endpoint");
    let text = reply.text().await.expect("the node's metrics");
    text.lines()
        .filter(|l| l.split(['{', ' ']).next() == Some(name) && l.contains(having))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// `local_reads_total{outcome}` of the node whose metrics are at `metrics`.
async fn local_reads(http: &reqwest::Client, metrics: &str, outcome: &str) -> u64 {
    metric(http, metrics, "instaface_local_reads_total", &format!("outcome=\"{outcome}\"")).await
}

/// Sends `call` to the gateway at `base` until it answers other than 5xx or a transport
/// error (the cluster settling: an unplugged leader's write may end `OutcomeUnknown`; a
/// rename is safe to repeat), within `within`.
async fn send(http: &reqwest::Client, base: &str, call: Call, within: Duration) -> Reply {
    let what = format!("{} {base}{} to answer", call.method, call.path);
    poll_until(within, &what, || async {
        match call.send_http(http, base).await {
            Ok(reply) if !reply.status.is_server_error() => Ok(reply),
            other => Err(format!("{:?}", other.map(|r| r.status))),
        }
    })
    .await
}

/// Renames `id` to `name` through the gateway, then reads it back at once, twice; returns
/// the version written.
async fn write_then_read(http: &reqwest::Client, base: &str, id: u64, name: &str) -> u64 {
    let patch = Call::new(Method::PATCH, format!("/api/entities/{id}")).json(json!({ "name": name }));
    let written = send(http, base, patch, Duration::from_secs(20)).await.expect(200);
    let version = written.json()["version"].as_u64().expect("version");
    for _ in 0..2 {
        read_is(http, base, id, name, version).await;
    }
    version
}

/// Reads `id` through the gateway: it must be `name` at `version`.
async fn read_is(http: &reqwest::Client, base: &str, id: u64, name: &str, version: u64) {
    let got = send(http, base, Call::get(format!("/api/entities/{id}")), Duration::from_secs(20)).await.expect(200);
    let got = got.json();
    assert_eq!(
        (got["attributes"]["name"].as_str(), got["version"].as_u64()),
        (Some(name), Some(version)),
        "a read after the acknowledged rename to {name:?} (version {version})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_inside_a_node_reads_its_own_cache_and_never_stale() {
    let (http_port, metrics_port) = (free_port(), free_port());
    let base = format!("http://127.0.0.1:{http_port}");
    let metrics = format!("http://127.0.0.1:{metrics_port}");
    let node_env = vec![(
        "n1".to_string(),
        vec![
            ("GATEWAY_LISTEN".to_string(), format!("127.0.0.1:{http_port}")),
            ("METRICS_ADDR".to_string(), format!("127.0.0.1:{metrics_port}")),
        ],
    )];
    let opts = ClusterOpts { nodes: 3, fast: true, ..ClusterOpts::default() };
    let cluster = Cluster::start_placed("in-node-gw", opts, "nats://127.0.0.1:4222", node_env).await;
    cluster.wait_leader(STARTUP, None, 0).await;
    cluster.wait_serving(&["n1", "n2", "n3"], STARTUP).await;
    let http = reqwest::Client::new();

    let created =
        send(&http, &base, Call::new(Method::POST, "/api/entities/user").json(json!({ "name": "v0" })), STARTUP)
            .await
            .expect(201);
    let id = created.json()["id"].as_u64().expect("id");

    // Plugged in: n1 serves its gateway's reads itself, and each is fresh.
    let served_before = local_reads(&http, &metrics, "served").await;
    for i in 1..=20 {
        write_then_read(&http, &base, id, &format!("plugged-{i}")).await;
    }
    let served = local_reads(&http, &metrics, "served").await;
    // (Not all 40 need be: a busy machine may delay a heartbeat past n1's lease.)
    assert!(served >= served_before + 20, "n1 served its gateway's reads itself ({served_before} → {served} of 40)");

    // Unplugged from its peers: n1's lease lapses; its gateway goes on over the bus (to a
    // new leader if n1 led), and no read is stale.
    cluster.unplug("n1", true).await;
    let elsewhere_before = local_reads(&http, &metrics, "elsewhere").await;
    for i in 1..=10 {
        write_then_read(&http, &base, id, &format!("unplugged-{i}")).await;
    }
    let elsewhere = local_reads(&http, &metrics, "elsewhere").await;
    assert!(elsewhere > elsewhere_before, "reads n1 could not serve went elsewhere ({elsewhere_before} → {elsewhere})");

    // Isolated from clients too: n1 serves its own gateway nothing either — not even at
    // once, while its lease still runs (a write would wait that lease out first).
    cluster.unplug("n1", false).await;
    cluster.wait_serving(&["n1"], STARTUP).await;
    let version = write_then_read(&http, &base, id, "before-isolation").await;
    cluster.isolate("n1", true).await;
    // The switch is flipped once n1's `unplugged` gauge says 2 (isolated from clients too).
    wait_until_async(Duration::from_secs(10), "n1 to report itself isolated", || async {
        metric(&http, &metrics, "instaface_unplugged", "").await == 2
    })
    .await;
    let served_before = local_reads(&http, &metrics, "served").await;
    for _ in 0..5 {
        read_is(&http, &base, id, "before-isolation", version).await;
    }
    for i in 1..=5 {
        write_then_read(&http, &base, id, &format!("isolated-{i}")).await;
    }
    let served = local_reads(&http, &metrics, "served").await;
    assert_eq!(served, served_before, "an isolated n1 served none of its gateway's reads");

    // Plugged back in: n1 serves again once it holds a lease.
    cluster.isolate("n1", false).await;
    cluster.wait_serving(&["n1"], STARTUP).await;
    let served_before = local_reads(&http, &metrics, "served").await;
    for i in 1..=10 {
        write_then_read(&http, &base, id, &format!("replugged-{i}")).await;
    }
    let served = local_reads(&http, &metrics, "served").await;
    assert!(served > served_before, "n1 serves its gateway's reads again ({served_before} → {served})");
}
