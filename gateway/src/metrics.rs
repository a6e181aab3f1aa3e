//! The gateway's Prometheus metrics: requests and their latency per route template, and the
//! websocket feed (clients, events relayed, slow clients dropped). Served at `GET /metrics`.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

/// Every metric the gateway exports, in one registry. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    pub ws_clients: IntGauge,
    pub ws_dropped: IntCounter,
    pub events_relayed: IntCounter,
    pub events_undecodable: IntCounter,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("instaface_gateway".into()), None).expect("a valid prefix");
        let requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests answered, by method, route template and status"),
            &["method", "route", "status"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "HTTP request latency, by method and route template"),
            &["method", "route"],
        )
        .expect("valid metric");
        let ws_clients =
            IntGauge::new("websocket_clients", "Websocket clients connected to /api/events").expect("valid metric");
        let ws_dropped = IntCounter::new("websocket_dropped_total", "Websocket clients dropped for falling behind")
            .expect("valid metric");
        let events_relayed =
            IntCounter::new("events_relayed_total", "Events received on P.events and relayed").expect("valid metric");
        let events_undecodable =
            IntCounter::new("events_undecodable_total", "Payloads on P.events that did not decode")
                .expect("valid metric");
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(ws_clients.clone()),
            Box::new(ws_dropped.clone()),
            Box::new(events_relayed.clone()),
            Box::new(events_undecodable.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        Metrics { registry, requests, latency, ws_clients, ws_dropped, events_relayed, events_undecodable }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding gathered metrics into a Vec fails only on invalid metric data, which
        // registration already ruled out.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Middleware: counts and times each request under its route template (never the raw path,
/// which would make a label per id).
pub async fn track(State(metrics): State<Metrics>, req: Request, next: Next) -> Response {
    let route =
        req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "unmatched".into());
    let method = req.method().as_str().to_owned();
    let start = Instant::now();
    let response = next.run(req).await;
    metrics.latency.with_label_values(&[&method, &route]).observe(start.elapsed().as_secs_f64());
    metrics.requests.with_label_values(&[&method, &route, response.status().as_str()]).inc();
    response
}
