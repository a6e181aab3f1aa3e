//! The handlers, one module per part of the REST contract, and what they share: the
//! `X-Instaface-Seq` header on writes, the limits on list sizes, and the error responses
//! each kind of route documents.
//!
//! - [`entities`]: create, read (one or many), patch, delete.
//! - [`associations`]: add, remove, list.
//! - [`query`]: template queries, timelines, random ids.
//! - [`cluster`]: the cluster overview and the unplug switch.
//! - [`events`]: the websocket event feed.
//! - [`system`]: `/healthz`, `/metrics`, `/api/openapi.json`, the monitor UI.

pub mod associations;
pub mod cluster;
pub mod entities;
pub mod events;
pub mod query;
pub mod system;

use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::IntoResponses;

use crate::model::ErrorResponse;

/// The header carrying a write's invalidation seq; pass it back as `?min_seq=` to read
/// your own writes.
pub const SEQ_HEADER: HeaderName = HeaderName::from_static("x-instaface-seq");

/// Most ids in one `GET /api/entities?ids=` or one query.
pub const MAX_IDS: usize = 1000;
/// Largest `limit` / `count` of a list.
pub const MAX_LIMIT: u32 = 1000;

/// A write's answer: `status`, the body, and the seq header.
pub fn written<T: Serialize>(status: StatusCode, seq: u64, body: Option<T>) -> Response {
    let mut response = match body {
        Some(body) => (status, Json(body)).into_response(),
        None => status.into_response(),
    };
    response.headers_mut().insert(SEQ_HEADER, HeaderValue::from(seq));
    response
}

/// The errors a read can answer with.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum ReadErrors {
    /// Bad input: a malformed id, type name or query parameter.
    #[response(status = 400)]
    BadRequest(ErrorResponse),
    /// Unknown entity.
    #[response(status = 404)]
    NotFound(ErrorResponse),
    /// A node failed internally.
    #[response(status = 502)]
    Upstream(ErrorResponse),
    /// No leader (or no node able to serve) within the bounded wait.
    #[response(status = 503, headers(("Retry-After" = u64, description = "Seconds to wait before retrying")))]
    Unavailable(ErrorResponse),
    /// No node answered in time.
    #[response(status = 504)]
    Timeout(ErrorResponse),
}

/// The errors a write can answer with.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum WriteErrors {
    /// Bad input: malformed JSON, a wrong type, a malformed id or type name.
    #[response(status = 400)]
    BadRequest(ErrorResponse),
    /// Unknown entity or association.
    #[response(status = 404)]
    NotFound(ErrorResponse),
    /// The write conflicts with the state.
    #[response(status = 409)]
    Conflict(ErrorResponse),
    /// The body is larger than the configured limit.
    #[response(status = 413)]
    TooLarge(ErrorResponse),
    /// A body that is not JSON.
    #[response(status = 415)]
    UnsupportedMediaType(ErrorResponse),
    /// A node failed internally.
    #[response(status = 502)]
    Upstream(ErrorResponse),
    /// No leader within the bounded wait.
    #[response(status = 503, headers(("Retry-After" = u64, description = "Seconds to wait before retrying")))]
    Unavailable(ErrorResponse),
    /// The leader did not confirm in time: the write may or may not have been applied.
    #[response(status = 504)]
    OutcomeUnknown(ErrorResponse),
}
