//! The data path with real node processes on real NATS, MySQL and Redis: writes at the
//! leader, reads at followers, invalidations, leases, the fence and single flight.

use std::time::Duration;

use instaface_bus::graph::{Attributes, Consistency, ReadQuery, ReadRequest, ReadResult, Reply};
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
