//! The gateway's Prometheus metrics: requests and their latency per route template, and the
//! websocket feed (clients, events relayed, slow clients dropped). Served at `GET /metrics`.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
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
    pub ws_refused: IntCounter,
    pub events_relayed: IntCounter,
    pub events_undecodable: IntCounter,
    pub events_not_members: IntCounter,
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
        let ws_refused =
            IntCounter::new("websocket_refused_total", "Websocket upgrades refused because MAX_WS_CLIENTS were open")
                .expect("valid metric");
        let events_relayed =
            IntCounter::new("events_relayed_total", "Events received on P.events and relayed").expect("valid metric");
        let events_undecodable =
            IntCounter::new("events_undecodable_total", "Payloads on P.events that did not decode")
                .expect("valid metric");
        let events_not_members = IntCounter::new(
            "events_not_members_total",
            "Events on P.events by or about a node that is not a member, dropped",
        )
        .expect("valid metric");
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(ws_clients.clone()),
            Box::new(ws_dropped.clone()),
            Box::new(ws_refused.clone()),
            Box::new(events_relayed.clone()),
            Box::new(events_undecodable.clone()),
            Box::new(events_not_members.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        Metrics {
            registry,
            requests,
            latency,
            ws_clients,
            ws_dropped,
            ws_refused,
            events_relayed,
            events_undecodable,
            events_not_members,
        }
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
/// which would make a label per id) and its method (an extension method — any token a
/// client makes up — counts as `other`: each label value is a series kept forever).
pub async fn track(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map_or("unmatched", MatchedPath::as_str);
    let method = method_label(req.method());
    let start = Instant::now();
    let response = next.run(req).await;
    metrics.latency.with_label_values(&[method, route]).observe(start.elapsed().as_secs_f64());
    metrics.requests.with_label_values(&[method, route, response.status().as_str()]).inc();
    response
}

/// The `method` label: one of the standard methods, else `other`.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_up_methods_share_one_label() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        for m in ["FOO", "get", "X-1", "PROPFIND"] {
            assert_eq!(method_label(&Method::from_bytes(m.as_bytes()).unwrap()), "other", "{m}");
        }
    }
}
