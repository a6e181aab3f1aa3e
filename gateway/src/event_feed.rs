//! The one subscription to `P.events`: each event is decoded once, applied to the
//! [`ClusterState`], turned into JSON with the same fields (`type`, `node`, `term`, `ts`, …)
//! and sent on a `broadcast` channel that every websocket (see `routes::events`) reads.
//!
//! An event of a kind this gateway does not know is still relayed: it is decoded as a
//! generic value first, and only then, where it can be, as a typed [`Event`].
//!
//! An event by a node that is not a member of the cluster (see [`crate::cluster_state`]), or
//! naming one ([`about_members`]), is dropped and counted (`events_not_members_total`):
//! neither the view nor the monitor pages learn of nodes the membership does not name.

use axum::extract::ws::Utf8Bytes;
use futures::StreamExt;
use instaface_bus::client::Subscription;
use instaface_bus::codec::DecodeLog;
use instaface_bus::messages::Event;
use instaface_bus::{Bus, BusError};
use serde_json::Value;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::cluster_state::ClusterState;
use crate::metrics::Metrics;

/// Subscribes to `P.events` (so nothing published after this returns is missed).
pub async fn subscribe(bus: &Bus) -> Result<Subscription<serde_json::Value>, BusError> {
    bus.subscribe::<serde_json::Value>(bus.subjects().events()).await
}

/// Relays every event to `cluster` and `feed` until the subscription ends.
pub fn spawn_relay(
    mut events: Subscription<serde_json::Value>,
    cluster: ClusterState,
    feed: broadcast::Sender<Utf8Bytes>,
    metrics: Metrics,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut decode_log = DecodeLog::default();
        while let Some(msg) = events.next().await {
            let value: Value = match msg.payload {
                Ok(v) if v.is_object() => v,
                Ok(_) => {
                    metrics.events_undecodable.inc();
                    continue;
                }
                Err(e) => {
                    metrics.events_undecodable.inc();
                    decode_log.record(&msg.subject, &e);
                    continue;
                }
            };
            if !about_members(&value, &cluster) {
                metrics.events_not_members.inc();
                continue;
            }
            if let Ok(event) = serde_json::from_value::<Event>(value.clone()) {
                cluster.observe_event(&event);
            }
            metrics.events_relayed.inc();
            // No receivers is fine: nobody is watching.
            let _ = feed.send(Utf8Bytes::from(value.to_string()));
        }
        tracing::warn!("the P.events subscription ended");
    })
}

/// Whether an event is by a member (`node`) and names no other node that is not one: the
/// fields that name nodes for the view or the monitor page (`peer`, a follower's `leader`,
/// an invalidation's `acked_by`) name members only, or are absent or null. (A leader's
/// `members` list is its own information and is not checked.)
pub fn about_members(event: &Value, cluster: &ClusterState) -> bool {
    let member = |v: &Value| v.as_str().is_some_and(|id| cluster.is_member(id));
    let optional = |field: &str| event.get(field).is_none_or(|v| v.is_null() || member(v));
    event.get("node").is_some_and(member)
        && optional("peer")
        && optional("leader")
        && event.get("acked_by").is_none_or(|v| v.as_array().is_some_and(|ids| ids.iter().all(member)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_naming_strangers_are_not_about_members() {
        let cluster = ClusterState::new();
        let follower = json!({ "type": "follower", "node": "n1", "term": 1, "ts": 1, "leader": "n2" });
        assert!(!about_members(&follower, &cluster), "no membership read yet");

        cluster.set_members(vec!["n1".into(), "n2".into()]);
        for ok in [
            follower,
            json!({ "type": "follower", "node": "n1", "term": 1, "ts": 1, "leader": null }),
            json!({ "type": "reachable", "node": "n1", "term": 1, "ts": 1, "peer": "n2", "reachable": true }),
            json!({ "type": "invalidation", "node": "n1", "term": 1, "ts": 1, "seq": 3, "acked_by": ["n2"] }),
            json!({ "type": "leader", "node": "n1", "term": 1, "ts": 1, "members": ["n1", "n2", "n7"] }),
            json!({ "type": "some_future_kind", "node": "n2" }),
        ] {
            assert!(about_members(&ok, &cluster), "{ok}");
        }
        for bad in [
            json!({ "type": "leader", "node": "n9", "term": 1, "ts": 1, "members": [] }),
            json!({ "type": "leader", "node": "bad.id", "term": 1, "ts": 1, "members": [] }),
            json!({ "type": "leader", "node": 1, "term": 1, "ts": 1, "members": [] }),
            json!({ "type": "leader", "term": 1, "ts": 1, "members": [] }),
            json!({ "type": "follower", "node": "n1", "term": 1, "ts": 1, "leader": "n9" }),
            json!({ "type": "reachable", "node": "n1", "term": 1, "ts": 1, "peer": "n9", "reachable": false }),
            json!({ "type": "reachable", "node": "n1", "term": 1, "ts": 1, "peer": ["n2"], "reachable": false }),
            json!({ "type": "invalidation", "node": "n1", "term": 1, "ts": 1, "seq": 3, "acked_by": ["n2", "n9"] }),
            json!({ "type": "invalidation", "node": "n1", "term": 1, "ts": 1, "seq": 3, "acked_by": "n2" }),
        ] {
            assert!(!about_members(&bad, &cluster), "{bad}");
        }
    }
}
