//! Instaface's gateway: the REST API over NATS request-reply, the websocket event feed, the
//! cluster overview and the monitor UI.
//!
//! - [`config`]: flags and environment (`LISTEN_ADDR`, `ADMIN_TOKEN`, `ADMIN_OPEN`,
//!   `MAX_WS_CLIENTS`, `BODY_LIMIT`, …).
//! - [`state`]: [`AppState`], what the handlers share, and its background tasks.
//! - [`error`]: [`ApiError`], the one error type, and the JSON shape every error leaves in.
//! - [`bounds`]: every bound on the input, used by the validators and stated in the document.
//! - [`extract`]: extractors whose rejections are JSON 4xx, and the input validators.
//! - [`model`]: the REST bodies, with their OpenAPI schemas.
//! - [`routes`]: the handlers, one module per part of the contract.
//! - [`cluster_state`]: what the gateway hears of the cluster (heartbeats, events, Redis,
//!   status polls), for `GET /api/cluster`.
//! - [`event_feed`]: the one `P.events` subscription, fanned out to websockets.
//! - [`metrics`]: Prometheus request counts and latencies per route.
//! - [`openapi`]: the generated OpenAPI document (its Swagger UI is at `/api/docs/`).
//! - [`ui`]: the monitor UI files, embedded at compile time.
//!
//! [`app`] builds the whole router, so tests drive it with `tower::ServiceExt::oneshot`
//! (inserting a `ConnectInfo` where a route looks at the client's address); [`service`] adds
//! the peer address of each connection, and `main` only parses flags, connects and serves it.

pub mod bounds;
pub mod cluster_state;
pub mod config;
pub mod error;
pub mod event_feed;
pub mod extract;
pub mod metrics;
pub mod model;
pub mod openapi;
pub mod routes;
pub mod state;
pub mod ui;

use std::net::SocketAddr;

use axum::extract::connect_info::IntoMakeServiceWithConnectInfo;
use axum::extract::{DefaultBodyLimit, MatchedPath};
use axum::http::StatusCode;
use axum::routing::{get, put};
use axum::{middleware, Router};
use tower::ServiceBuilder;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa_swagger_ui::SwaggerUi;

pub use error::ApiError;
pub use state::AppState;

use routes::{associations, cluster, entities, events, query, system};

/// Each request's span: method, route template and URI (the template groups requests in
/// logs the way the metrics do).
fn request_span(req: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let route = req.extensions().get::<MatchedPath>().map(MatchedPath::as_str).unwrap_or("unmatched");
    tracing::info_span!("request", method = %req.method(), route, uri = %req.uri())
}

/// What `main` serves: [`app`] with each connection's peer address as
/// [`ConnectInfo<SocketAddr>`](axum::extract::ConnectInfo), which the admin routes check
/// when no `ADMIN_TOKEN` is set. Serve the gateway with this, not with [`app`] alone (admin
/// routes would refuse everyone but `ADMIN_OPEN` setups).
pub fn service(state: AppState) -> IntoMakeServiceWithConnectInfo<Router, SocketAddr> {
    app(state).into_make_service_with_connect_info::<SocketAddr>()
}

/// The whole HTTP API.
pub fn app(state: AppState) -> Router {
    let config = state.config.clone();
    Router::new()
        .route("/api/entities", get(entities::get_many))
        .route(
            "/api/entities/{entity}",
            get(entities::get).post(entities::create).patch(entities::patch).delete(entities::delete),
        )
        .route("/api/entities/{from}/associations/{type}/{to}", put(associations::put).delete(associations::delete))
        .route("/api/entities/{id}/associations/{type}", get(associations::list))
        .route("/api/query", axum::routing::post(query::query))
        .route("/api/timeline/{user_id}", get(query::timeline))
        .route("/api/random/{type}", get(query::random))
        .route("/api/cluster", get(cluster::overview))
        .route("/api/cluster/nodes/{id}/unplugged", put(cluster::unplug))
        .route("/api/events", get(events::events))
        .route("/api/openapi.json", get(system::openapi))
        .route("/metrics", get(system::metrics))
        .route("/healthz", get(system::healthz))
        .route("/", get(system::index))
        // The Swagger UI, its files built into the binary (`vendored`): it reads the document
        // from /api/openapi.json and asks nothing of any other host (no online validator).
        .merge(
            SwaggerUi::new("/api/docs")
                .config(utoipa_swagger_ui::Config::new(["/api/openapi.json"]).validator_url("none")),
        )
        .fallback(system::fallback)
        .layer(
            // Outermost first: trace everything, shape every error as JSON, count and time
            // each route, bound the whole request, bound bodies.
            ServiceBuilder::new()
                .layer(TraceLayer::new_for_http().make_span_with(request_span))
                .layer(middleware::map_response(error::json_errors))
                // The state is cloned per request: an `Arc` is one count, the `Metrics` nine.
                .layer(middleware::from_fn_with_state(std::sync::Arc::new(state.metrics.clone()), metrics::track))
                .layer(TimeoutLayer::with_status_code(StatusCode::GATEWAY_TIMEOUT, config.http_timeout))
                .layer(DefaultBodyLimit::max(config.body_limit)),
        )
        .with_state(state)
}
