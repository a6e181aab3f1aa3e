//! The gateway's one error type, [`ApiError`], and how every error leaves the gateway: a
//! status and `{"error": {"code": "...", "message": "..."}}`.
//!
//! Mapping decisions (the REST contract fixes the first five):
//!
//! | cause | status | code |
//! | --- | --- | --- |
//! | malformed JSON, wrong types, bad ids, bad type names, bad query values | 400 | `bad_request`, `invalid_json` |
//! | unknown entity, association or node | 404 | `not_found` |
//! | the write conflicts with the state | 409 | `conflict` |
//! | body over the configured limit | 413 | `payload_too_large` |
//! | no leader within the bounded wait; no node can serve; NATS down | 503 + `Retry-After` | `no_leader`, `unavailable` |
//! | a read got no answer in time | 504 | `timeout` |
//! | a write whose outcome is unknown (timed out at the leader, or committed without its invalidation confirmed) | 504 | `outcome_unknown` |
//! | a node reported an internal failure (e.g. MySQL) | 502 | `upstream_error` |
//! | missing / wrong admin token | 401 / 403 | `unauthorized`, `forbidden` |
//!
//! `outcome_unknown` is a 504, not a 503: a 503 with `Retry-After` tells a client that
//! retrying is safe, and retrying a write that may have committed could duplicate it. A
//! 504 says what happened — the upstream did not answer in time — and the message says to
//! check before retrying.
//!
//! 500 is kept for bugs in the gateway itself; nothing a client sends reaches it.
//! [`json_errors`] turns the few error responses that do not come from this type (405 from
//! the router, 504 from the timeout layer, …) into the same JSON shape.

use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use instaface_bus::graph_client::ClientError;

use crate::model::{ErrorDetail, ErrorResponse};

/// Seconds a client should wait before retrying after a 503.
pub const RETRY_AFTER_SECS: u64 = 1;

/// Everything a request can fail with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    /// Bad input other than a JSON body: ids, type names, query values, path segments.
    #[error("{0}")]
    BadRequest(String),
    /// A body that is not JSON, or not of the expected shape.
    #[error("{0}")]
    InvalidJson(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// No leader within the bounded wait.
    #[error("{0}")]
    NoLeader(String),
    /// Nothing can serve right now (no node holds a lease, NATS is down, …).
    #[error("{0}")]
    Unavailable(String),
    /// A read got no answer in time.
    #[error("{0}")]
    Timeout(String),
    /// A write that may or may not have happened.
    #[error("{0}")]
    OutcomeUnknown(String),
    /// A node answered with an internal failure.
    #[error("{0}")]
    Upstream(String),
    /// A bug in the gateway.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::InvalidJson(_) => StatusCode::BAD_REQUEST,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::NoLeader(_) | ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Timeout(_) | ApiError::OutcomeUnknown(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Upstream(_) => StatusCode::BAD_GATEWAY,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The machine-readable `code` of the JSON error.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::InvalidJson(_) => "invalid_json",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::NoLeader(_) => "no_leader",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Timeout(_) => "timeout",
            ApiError::OutcomeUnknown(_) => "outcome_unknown",
            ApiError::Upstream(_) => "upstream_error",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = self.to_string();
        if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
            tracing::warn!(%status, code = self.code(), error = %message, "request failed");
        }
        let mut response = error_response(status, self.code(), message);
        let headers = response.headers_mut();
        match self {
            ApiError::NoLeader(_) | ApiError::Unavailable(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
            }
            ApiError::Unauthorized(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        response
    }
}

/// The JSON error response.
pub fn error_response(status: StatusCode, code: &str, message: String) -> Response {
    let body = ErrorResponse { error: ErrorDetail { code: code.to_string(), message } };
    (status, Json(body)).into_response()
}

impl From<ClientError> for ApiError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::NoLeader(wait) => {
                ApiError::NoLeader(format!("no leader elected within {wait:?}; retry shortly"))
            }
            ClientError::Timeout(t) => ApiError::Timeout(format!("no node answered within {t:?}")),
            ClientError::NotFound(m) => ApiError::NotFound(m),
            ClientError::Invalid(m) => ApiError::BadRequest(m),
            ClientError::Conflict(m) => ApiError::Conflict(m),
            ClientError::Unavailable(m) => ApiError::Unavailable(format!("no node can serve this now: {m}")),
            ClientError::OutcomeUnknown(m) => ApiError::OutcomeUnknown(format!(
                "the write may or may not have been applied ({m}); read before retrying"
            )),
            ClientError::Internal(m) => ApiError::Upstream(format!("a node failed: {m}")),
            ClientError::Bus(m) => ApiError::Unavailable(format!("the message bus is unavailable: {m}")),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match r {
            JsonRejection::JsonDataError(e) => ApiError::InvalidJson(e.body_text()),
            JsonRejection::JsonSyntaxError(e) => ApiError::InvalidJson(e.body_text()),
            JsonRejection::MissingJsonContentType(e) => ApiError::UnsupportedMediaType(e.body_text()),
            JsonRejection::BytesRejection(e) => e.into(),
            other => ApiError::BadRequest(other.body_text()),
        }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> Self {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge("the request body is larger than the configured limit".into())
        } else {
            ApiError::BadRequest(r.body_text())
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        match r {
            PathRejection::FailedToDeserializePathParams(e) => ApiError::BadRequest(e.body_text()),
            // The router matched a route whose parameters it cannot hand over: a gateway bug.
            other => ApiError::Internal(other.body_text()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::BadRequest(r.body_text())
    }
}

impl From<WebSocketUpgradeRejection> for ApiError {
    fn from(r: WebSocketUpgradeRejection) -> Self {
        ApiError::BadRequest(format!("a websocket upgrade is expected here: {}", r.body_text()))
    }
}

/// The `code` for an error status produced outside [`ApiError`].
pub fn code_for_status(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => "timeout",
        StatusCode::CONFLICT => "conflict",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        s if s.is_client_error() => "bad_request",
        _ => "internal",
    }
}

/// Middleware: gives every error response that is not JSON yet (405 from the router, the
/// timeout layer's 504, …) the JSON error shape.
pub async fn json_errors(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text =
        axum::body::to_bytes(body, 4096).await.map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
    let message = if text.trim().is_empty() { status.canonical_reason().unwrap_or("error").to_string() } else { text };
    let mut fixed = error_response(status, code_for_status(status), message);
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            fixed.headers_mut().insert(name.clone(), value.clone());
        }
    }
    fixed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn parts(e: ApiError) -> (StatusCode, axum::http::HeaderMap, serde_json::Value) {
        let response = e.into_response();
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        (status, headers, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn client_errors_map_to_statuses_and_codes() {
        let d = Duration::from_millis(300);
        let table = [
            (ClientError::NoLeader(d), 503, "no_leader", true),
            (ClientError::Unavailable("no lease".into()), 503, "unavailable", true),
            (ClientError::Bus("disconnected".into()), 503, "unavailable", true),
            (ClientError::Timeout(d), 504, "timeout", false),
            (ClientError::OutcomeUnknown("no answer".into()), 504, "outcome_unknown", false),
            (ClientError::NotFound("no entity 7".into()), 404, "not_found", false),
            (ClientError::Invalid("bad".into()), 400, "bad_request", false),
            (ClientError::Conflict("missing end".into()), 409, "conflict", false),
            (ClientError::Internal("mysql".into()), 502, "upstream_error", false),
        ];
        for (client_error, status, code, retry_after) in table {
            let (s, headers, body) = parts(ApiError::from(client_error.clone())).await;
            assert_eq!(s.as_u16(), status, "{client_error:?}");
            assert_eq!(body["error"]["code"], code, "{client_error:?}");
            assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
            assert_eq!(headers.contains_key(header::RETRY_AFTER), retry_after, "{client_error:?}");
        }
    }

    #[tokio::test]
    async fn auth_errors_say_how_to_authenticate() {
        let (s, headers, _) = parts(ApiError::Unauthorized("token".into())).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");
        let (s, _, body) = parts(ApiError::Forbidden("wrong".into())).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        assert_eq!(body["error"]["code"], "forbidden");
    }

    #[tokio::test]
    async fn plain_error_responses_become_json() {
        let plain = (StatusCode::PAYLOAD_TOO_LARGE, [(header::ALLOW, "GET")], "length limit exceeded").into_response();
        let fixed = json_errors(plain).await;
        assert_eq!(fixed.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(fixed.headers()[header::ALLOW], "GET");
        let body = axum::body::to_bytes(fixed.into_body(), 1 << 16).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["code"], "payload_too_large");
        assert_eq!(body["error"]["message"], "length limit exceeded");

        let ok = json_errors((StatusCode::OK, "fine").into_response()).await;
        assert_eq!(axum::body::to_bytes(ok.into_body(), 100).await.unwrap(), "fine");
    }
}
