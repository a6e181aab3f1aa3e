//! `GET /api/cluster` (the overview kept by [`crate::cluster_state`]) and
//! `PUT /api/cluster/nodes/{id}/unplugged` (the admin unplug switch, published on
//! `P.control.unplug`).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::Json;
use instaface_bus::messages::Unplug;
use instaface_bus::valid_node_id;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use utoipa::openapi::path::{Parameter, ParameterIn};
use utoipa::IntoParams;

use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::model::{ClusterOverview, ErrorResponse, UnplugAccepted, UnplugRequest};
use crate::state::AppState;

/// `{id}`: a node id.
pub struct NodeSegment;

impl IntoParams for NodeSegment {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let description = format!(
            "The node id (a member): 1 to {} characters of `A-Z`, `a-z`, `0-9`, `_` and `-`",
            crate::bounds::MAX_NODE_ID_LEN
        );
        vec![crate::bounds::path_parameter("id", &description, crate::bounds::node_id_schema())]
    }
}

/// How long publishing the unplug command may take.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// The cluster as the gateway hears it: leader, term, members, each node's state, and each
/// shard's leader and term.
///
/// When the graph is split into shards (`SHARDS`), `leader`, `term` and each node's role and
/// term are those of shard 0's leader group; `shards` lists every group's leader and term.
#[utoipa::path(
    get,
    operation_id = "cluster_overview",
    path = "/api/cluster",
    tag = "cluster",
    responses((status = 200, description = "The overview", body = ClusterOverview))
)]
pub async fn overview(State(state): State<AppState>) -> Json<ClusterOverview> {
    let client = &state.client;
    let leaders: Vec<_> = client.shards().all().map(|k| client.leader_info_of(k)).collect();
    Json(state.cluster.overview(&leaders))
}

/// Proof that the request may use admin routes. With `ADMIN_TOKEN` set: an
/// `Authorization: Bearer <token>` header with that token (the scheme in any case; no
/// header or another scheme is 401 with `WWW-Authenticate: Bearer`, a wrong token 403).
/// Without one the route fails closed: it answers clients on a loopback address only (the
/// peer address of the connection, [`ConnectInfo`]; a request without one, as in tests
/// driving the router directly, is not loopback) and refuses the others with 403 — unless
/// `ADMIN_OPEN` is set.
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let config = &state.config;
        let Some(expected) = &config.admin_token else {
            let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
            return if config.admin_open || peer.is_some_and(|p| is_loopback(p.ip())) {
                Ok(Admin)
            } else {
                Err(ApiError::Forbidden(
                    "no ADMIN_TOKEN is configured, so admin routes answer loopback clients only".into(),
                ))
            };
        };
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return Err(ApiError::Unauthorized("this route needs Authorization: Bearer <ADMIN_TOKEN>".into()));
        };
        match bearer_token(value) {
            Some(token) if token_matches(token, expected) => Ok(Admin),
            Some(_) => Err(ApiError::Forbidden("the admin token is wrong".into())),
            None => Err(ApiError::Unauthorized("the Authorization header must be Bearer <ADMIN_TOKEN>".into())),
        }
    }
}

/// Loopback, also as an IPv4-mapped IPv6 address (`::ffff:127.0.0.1`, what a dual-stack
/// socket reports for an IPv4 client).
fn is_loopback(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

/// The token of an `Authorization: Bearer <token>` header; the scheme is matched in any case
/// (RFC 9110 §11.1).
fn bearer_token(value: &HeaderValue) -> Option<&str> {
    let (scheme, token) = value.to_str().ok()?.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Compares in constant time: the SHA-256 digests of both (fixed length, so not even the
/// token's length shows in the timing) with `subtle`.
fn token_matches(given: &str, expected: &str) -> bool {
    let given = Sha256::digest(given.as_bytes());
    let expected = Sha256::digest(expected.as_bytes());
    given.as_slice().ct_eq(expected.as_slice()).into()
}

/// Unplugs a node from its peers (or from clients too), or plugs it back in.
///
/// `{"unplugged": true}` cuts it off from its peers only: it drops every cluster-internal
/// message (heartbeats, votes, acks, invalidations, fills) but clients can still reach it,
/// so a follower keeps serving reads until its read lease runs out and then refuses them.
/// `{"unplugged": true, "clients": true}` isolates it totally: it also refuses every client
/// request. `{"unplugged": false}` plugs it back in. The command is published at once; the
/// node applies it on receipt.
///
/// An admin route: with `ADMIN_TOKEN` set it needs `Authorization: Bearer <token>`; without
/// one it answers loopback clients only, unless the gateway runs with `ADMIN_OPEN=1`.
#[utoipa::path(
    put,
    operation_id = "set_unplugged",
    path = "/api/cluster/nodes/{id}/unplugged",
    tag = "cluster",
    params(NodeSegment),
    request_body(content = UnplugRequest),
    security((), ("admin_token" = [])),
    responses(
        (status = 202, description = "The command was published", body = UnplugAccepted),
        (status = 400, description = "Bad input: a malformed node id, malformed JSON, a body not of the schema",
            body = ErrorResponse),
        (status = 401, description = "ADMIN_TOKEN is set and no bearer token was given", body = ErrorResponse,
            headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 403, description = "A wrong bearer token; or no ADMIN_TOKEN is set, ADMIN_OPEN is not, and the \
            client is not on a loopback address", body = ErrorResponse),
        (status = 404, description = "Not a member", body = ErrorResponse),
        (status = 413, description = "The body is larger than BODY_LIMIT", body = ErrorResponse),
        (status = 415, description = "A body that is not declared as JSON", body = ErrorResponse),
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
    // Signed with the cluster key when one is set (nodes drop unsigned commands then).
    bus.publish_signed(bus.subjects().control_unplug(), &command).await.map_err(|e| unavailable(e.to_string()))?;
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
    use super::*;

    #[test]
    fn token_comparison() {
        assert!(token_matches("secret", "secret"));
        assert!(!token_matches("secret", "secreT"));
        assert!(!token_matches("secret", "secret2"));
        assert!(!token_matches("", "secret"));
        assert!(!token_matches("secret", ""));
    }

    #[test]
    fn bearer_scheme_in_any_case() {
        let token = |v: &str| bearer_token(&HeaderValue::from_str(v).unwrap()).map(str::to_owned);
        for v in ["Bearer s3cret", "bearer s3cret", "BEARER s3cret", "BeArEr   s3cret ", " Bearer s3cret"] {
            assert_eq!(token(v).as_deref(), Some("s3cret"), "{v:?}");
        }
        for v in ["Basic czNjcmV0", "Bearer", "Bearer ", "Bearers s3cret", "s3cret", ""] {
            assert_eq!(token(v), None, "{v:?}");
        }
        assert_eq!(bearer_token(&HeaderValue::from_bytes(b"Bearer \xff").unwrap()), None, "not text");
    }

    #[test]
    fn loopback_addresses() {
        for ip in ["127.0.0.1", "127.3.2.1", "::1", "::ffff:127.0.0.1"] {
            assert!(is_loopback(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["10.0.0.5", "192.168.1.2", "0.0.0.0", "::", "::ffff:10.0.0.5", "fe80::1", "2001:db8::1"] {
            assert!(!is_loopback(ip.parse().unwrap()), "{ip}");
        }
    }
}
