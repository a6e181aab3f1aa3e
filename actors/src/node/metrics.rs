//! The node's Prometheus metrics and the optional HTTP endpoint that serves them
//! (`METRICS_ADDR`, path `/metrics`).

use std::net::SocketAddr;

use instaface_bus::shards::ShardId;
use prometheus::{Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

/// Every metric a node exports, labelled with its node id.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// 0 follower, 1 pre-candidate, 2 candidate, 3 leader.
    pub role: IntGauge,
    pub term: IntGauge,
    pub unplugged: IntGauge,
    pub elections_started: IntCounter,
    pub elections_won: IntCounter,
    pub heartbeats_sent: IntCounter,
    pub heartbeats_received: IntCounter,
    pub votes_granted: IntCounter,
    pub acks_received: IntCounter,
    pub dropped_messages: IntCounterVec,
    pub actor_restarts: IntCounterVec,
    pub cache_hits: IntCounter,
    pub cache_misses: IntCounter,
    pub cache_fills: IntCounter,
    pub cache_entries: IntGauge,
    pub applied_seq: IntGauge,
    pub reads: IntCounterVec,
    pub writes: IntCounterVec,
    pub write_seconds: Histogram,
    pub read_seconds: Histogram,
    /// Writes committed per batch (group commit).
    pub write_batch_size: Histogram,
    /// Reads per batch served from `P.graph.reads`.
    pub read_batch_size: Histogram,
    /// Cross-shard intents: `sent`, `applied` / `refused` (answers), `unreachable`,
    /// `received` (from other shards).
    pub intents: IntCounterVec,
    /// Undelivered intents the leader's courier knows.
    pub intents_pending: IntGauge,
    /// From an intent's commit to the other shard's answer, as the sender sees it.
    pub intent_lag_seconds: Histogram,
    /// Reads of the in-node gateway (`GATEWAY_LISTEN`) asked here first: `served`,
    /// `elsewhere` (not servable here; they went over the bus), `error`.
    pub local_reads: IntCounterVec,
}

impl Metrics {
    /// A node's metrics; with `shard`, those of its member of that shard's leader group
    /// (labelled `shard` too).
    pub fn new(node: &str, shard: Option<ShardId>) -> Metrics {
        let mut labels: std::collections::HashMap<String, String> = [("node".to_string(), node.to_string())].into();
        if let Some(k) = shard {
            labels.insert("shard".to_string(), k.to_string());
        }
        let registry = Registry::new_custom(Some("instaface".into()), Some(labels)).unwrap_or_default();
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric name");
            let _ = registry.register(Box::new(g.clone()));
            g
        };
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric name");
            let _ = registry.register(Box::new(c.clone()));
            c
        };
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric name");
            let _ = registry.register(Box::new(c.clone()));
            c
        };
        let histogram = |name: &str, help: &str| {
            let buckets = vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];
            let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)).expect("valid metric name");
            let _ = registry.register(Box::new(h.clone()));
            h
        };
        let sizes = |name: &str, help: &str| {
            let buckets = vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];
            let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)).expect("valid metric name");
            let _ = registry.register(Box::new(h.clone()));
            h
        };
        Metrics {
            role: gauge("role", "0 follower, 1 pre-candidate, 2 candidate, 3 leader"),
            term: gauge("term", "current term"),
            unplugged: gauge(
                "unplugged",
                "1 while the node is unplugged from its peers, 2 while isolated from clients too",
            ),
            elections_started: counter("elections_started_total", "campaigns started (PreVote phase included)"),
            elections_won: counter("elections_won_total", "terms this node led"),
            heartbeats_sent: counter("heartbeats_sent_total", "heartbeats published as leader"),
            heartbeats_received: counter("heartbeats_received_total", "heartbeats received from a leader"),
            votes_granted: counter("votes_granted_total", "votes (and pre-votes) granted"),
            acks_received: counter("acks_received_total", "follower acks received as leader"),
            dropped_messages: counter_vec("dropped_messages_total", "messages dropped, by reason", &["reason"]),
            actor_restarts: counter_vec("actor_restarts_total", "supervised actors restarted", &["actor"]),
            cache_hits: counter("cache_hits_total", "cache hits"),
            cache_misses: counter("cache_misses_total", "cache misses"),
            cache_fills: counter("cache_fills_total", "fill requests sent (follower) or served (leader)"),
            cache_entries: gauge("cache_entries", "entries in the cache"),
            applied_seq: gauge("applied_seq", "invalidations applied up to this seq"),
            reads: counter_vec("reads_total", "reads served, by kind", &["kind"]),
            writes: counter_vec("writes_total", "writes handled as leader, by outcome", &["outcome"]),
            write_seconds: histogram("write_seconds", "write latency at the leader, commit to answer included"),
            read_seconds: histogram("read_seconds", "read latency at the serving node"),
            write_batch_size: sizes("write_batch_size", "writes committed in one transaction"),
            read_batch_size: sizes("read_batch_size", "reads served in one batch (P.graph.reads)"),
            intents: counter_vec("intents_total", "cross-shard intents, by event", &["event"]),
            intents_pending: gauge("intents_pending", "undelivered cross-shard intents the leader knows"),
            intent_lag_seconds: histogram(
                "intent_lag_seconds",
                "from an intent's commit to the other shard's answer (sender's clock)",
            ),
            local_reads: counter_vec(
                "local_reads_total",
                "reads of the in-node gateway asked of this node first, by outcome",
                &["outcome"],
            ),
            registry,
        }
    }

    /// The metrics of `groups` (one per shard the node hosts) in Prometheus' text format.
    pub fn render(groups: &[Metrics]) -> String {
        let mut families = Vec::new();
        for m in groups {
            families.extend(m.registry.gather());
        }
        // The encoder wants each family once: merge the groups' samples by name.
        families.sort_by(|a, b| a.name().cmp(b.name()));
        let mut merged: Vec<prometheus::proto::MetricFamily> = Vec::new();
        for f in families {
            match merged.last_mut() {
                Some(last) if last.name() == f.name() => last.mut_metric().extend(f.get_metric().iter().cloned()),
                _ => merged.push(f),
            }
        }
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&merged, &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }

    /// Serves `/metrics` on `addr` until the process ends.
    pub async fn serve(groups: Vec<Metrics>, addr: SocketAddr) -> std::io::Result<()> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        tracing::info!(%addr, "serving metrics at /metrics");
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let groups = groups.clone();
                async move { Metrics::render(&groups) }
            }),
        );
        axum::serve(listener, app).await
    }
}
