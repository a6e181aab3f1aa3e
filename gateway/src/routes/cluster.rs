//! `GET /api/cluster` (the overview kept by [`crate::cluster_state`]) and
//! `PUT /api/cluster/nodes/{id}/unplugged` (the admin unplug switch, published on
//! `P.control.unplug`).

use std::time::Duration;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::Json;
use instaface_bus::messages::Unplug;
use instaface_bus::valid_node_id;

use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::model::{ClusterOverview, ErrorResponse, UnplugAccepted, UnplugRequest};
use crate::state::AppState;

/// How long publishing the unplug command may take.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// The cluster as the gateway hears it: leader, term, members and each node's state.
#[utoipa::path(
    get,
    operation_id = "cluster_overview",
    path = "/api/cluster",
    tag = "cluster",
    responses((status = 200, description = "The overview", body = ClusterOverview))
)]
pub async fn overview(State(state): State<AppState>) -> Json<ClusterOverview> {
    Json(state.cluster.overview())
}

/// Proof that the request may use admin routes: the bearer token matches `ADMIN_TOKEN`, or
/// none is configured.
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Some(expected) = &state.config.admin_token else { return Ok(Admin) };
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return Err(ApiError::Unauthorized("this route needs Authorization: Bearer <ADMIN_TOKEN>".into()));
        };
        let given = value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")).map(str::trim);
        match given {
            Some(token) if constant_time_eq(token.as_bytes(), expected.as_bytes()) => Ok(Admin),
            Some(_) => Err(ApiError::Forbidden("the admin token is wrong".into())),
            None => Err(ApiError::Unauthorized("the Authorization header must be Bearer <ADMIN_TOKEN>".into())),
        }
    }
}

/// Compares without stopping at the first difference, so timing does not leak the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i % b.len().max(1)).copied().unwrap_or(0));
    }
    diff == 0
}

/// Unplugs a node from its peers (or from clients too), or plugs it back in.
///
/// `{"unplugged": true}` cuts it off from its peers only: it drops every cluster-internal
/// message (heartbeats, votes, acks, invalidations, fills) but clients can still reach it,
/// so a follower keeps serving reads until its read lease runs out and then refuses them.
/// `{"unplugged": true, "clients": true}` isolates it totally: it also refuses every client
/// request. `{"unplugged": false}` plugs it back in. The command is published at once; the
/// node applies it on receipt.
#[utoipa::path(
    put,
    operation_id = "set_unplugged",
    path = "/api/cluster/nodes/{id}/unplugged",
    tag = "cluster",
    params(("id" = String, Path, description = "The node id (a member)")),
    request_body(content = UnplugRequest),
    security((), ("admin_token" = [])),
    responses(
        (status = 202, description = "The command was published", body = UnplugAccepted),
        (status = 400, description = "Bad input", body = ErrorResponse),
        (status = 401, description = "No bearer token, and ADMIN_TOKEN is set", body = ErrorResponse),
        (status = 403, description = "Wrong bearer token", body = ErrorResponse),
        (status = 404, description = "Not a member", body = ErrorResponse),
        (status = 413, description = "The body is larger than the configured limit", body = ErrorResponse),
        (status = 415, description = "A body that is not JSON", body = ErrorResponse),
        (status = 503, description = "The membership or the bus is not reachable", body = ErrorResponse,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    )
)]
pub async fn unplug(
    _admin: Admin,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<UnplugRequest>,
) -> Result<(StatusCode, Json<UnplugAccepted>), ApiError> {
    if !valid_node_id(&id) {
        return Err(ApiError::BadRequest(format!("{id:?} is not a node id")));
    }
    if !state.cluster.membership_known() {
        return Err(ApiError::Unavailable("the cluster membership is not known yet".into()));
    }
    if !state.cluster.members().contains(&id) {
        return Err(ApiError::NotFound(format!("node {id:?} is not a member of the cluster")));
    }
    let bus = state.client.bus();
    // A command buffered while NATS is down would flip the node at some later moment.
    if !bus.is_connected() {
        return Err(ApiError::Unavailable("the message bus is not connected".into()));
    }
    let unavailable = |e: String| ApiError::Unavailable(format!("the message bus is unavailable: {e}"));
    // Plugging back in restores both directions: `clients` only means something with it.
    let clients = body.unplugged && body.clients;
    let command = Unplug { node: id.clone(), unplugged: body.unplugged, clients };
    bus.publish(bus.subjects().control_unplug(), &command).await.map_err(|e| unavailable(e.to_string()))?;
    match tokio::time::timeout(FLUSH_TIMEOUT, bus.flush()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(unavailable(e.to_string())),
        Err(_) => return Err(unavailable(format!("not flushed within {FLUSH_TIMEOUT:?}"))),
    }
    tracing::warn!(node = %id, unplugged = body.unplugged, clients, "unplug command published");
    Ok((StatusCode::ACCEPTED, Json(UnplugAccepted { node: id, unplugged: body.unplugged, clients })))
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"secret"));
        assert!(!constant_time_eq(b"secret", b""));
    }
}
