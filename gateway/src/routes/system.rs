//! `GET /healthz` (liveness), `GET /metrics` (Prometheus), `GET /api/openapi.json` (and its
//! Swagger UI at `/api/docs/`, routed in [`crate::app`]), and the
//! monitor UI at `/` and `/<file>` (served from the router's fallback, which answers a JSON
//! 404 for anything else).

use axum::extract::State;
use axum::http::{header, Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::error::ApiError;
use crate::model::Health;
use crate::state::AppState;
use crate::ui;

/// Liveness: answers while the process serves, with what it knows of its links.
#[utoipa::path(
    get,
    operation_id = "healthz",
    path = "/healthz",
    tag = "system",
    responses((status = 200, description = "The gateway is alive", body = Health))
)]
pub async fn healthz(State(state): State<AppState>) -> Json<Health> {
    let leader = state.client.leader_info().current().map(|(l, _)| l.clone());
    let shards_without_leader =
        state.client.shards().all().filter(|k| state.client.leader_info_of(*k).current().is_none()).collect();
    Json(Health {
        status: "ok".into(),
        nats_connected: state.client.bus().is_connected(),
        leader,
        shards_without_leader,
    })
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(
    get,
    operation_id = "metrics",
    path = "/metrics",
    tag = "system",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain"))
)]
pub async fn metrics(State(state): State<AppState>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.metrics.render()).into_response()
}

/// This document. It states every bound a handler enforces as JSON Schema keywords, the
/// errors each route answers with, and links from created resources to what reads them;
/// `x-max-body-bytes` on a request body is this gateway's `BODY_LIMIT`.
#[utoipa::path(
    get,
    operation_id = "openapi",
    path = "/api/openapi.json",
    tag = "system",
    responses((status = 200, description = "The OpenAPI document of this API", body = Object))
)]
pub async fn openapi(State(state): State<AppState>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], state.openapi.clone()).into_response()
}

/// The Swagger UI of this document (served by `utoipa-swagger-ui` from files built into the
/// binary; `/api/docs` redirects here).
#[utoipa::path(
    get,
    operation_id = "swagger_ui",
    path = "/api/docs/",
    tag = "system",
    responses((status = 200, description = "The Swagger UI (HTML)", body = String, content_type = "text/html"))
)]
pub fn swagger_ui() {}

/// The monitor UI's page.
#[utoipa::path(
    get,
    operation_id = "monitor_ui",
    path = "/",
    tag = "system",
    responses((status = 200, description = "The monitor UI (HTML)", body = String, content_type = "text/html"))
)]
pub async fn index() -> Response {
    serve_file("")
}

/// The router's fallback: a monitor UI file for `GET`/`HEAD`, else a JSON 404.
pub async fn fallback(method: Method, uri: Uri) -> Response {
    let path = uri.path().trim_start_matches('/');
    if (method == Method::GET || method == Method::HEAD) && !path.starts_with("api/") && ui::file(path).is_some() {
        return serve_file(path);
    }
    ApiError::NotFound(format!("no route for {method} {}", uri.path())).into_response()
}

fn serve_file(path: &str) -> Response {
    match ui::file(path) {
        Some((bytes, content_type)) => {
            ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], bytes).into_response()
        }
        None => ApiError::NotFound(format!("no file /{path}")).into_response(),
    }
}
