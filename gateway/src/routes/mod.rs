//! The handlers, one module per part of the REST contract, and what they share: the
//! `X-Instaface-Seq` header on writes and the error responses each kind of route documents
//! (the bounds on inputs are in [`crate::bounds`]).
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

/// A write's answer: `status`, the body, and the seq header.
pub fn written<T: Serialize>(status: StatusCode, seq: u64, body: Option<T>) -> Response {
    let mut response = match body {
        Some(body) => (status, Json(body)).into_response(),
        None => status.into_response(),
    };
    response.headers_mut().insert(SEQ_HEADER, HeaderValue::from(seq));
    response
}

// The errors each kind of route can answer with, every one a JSON `ErrorResponse`. Beyond
// these, every route answers 405 (with `Allow`) to a method it does not serve, and a path
// that names no route is a 404.

/// What a read of lists that names no entity can answer (`get_entities`, `random_ids`):
/// nothing is "not found", an empty list is an answer.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum ListErrors {
    /// Bad input: a malformed id, type name or query parameter, or a value out of its bounds.
    #[response(status = 400)]
    BadRequest(ErrorResponse),
    /// A node failed internally.
    #[response(status = 502)]
    Upstream(ErrorResponse),
    /// No leader (or no node able to serve) within the bounded wait, or the bus is down.
    #[response(status = 503, headers(("Retry-After" = u64, description = "Seconds to wait before retrying")))]
    Unavailable(ErrorResponse),
    /// No node answered in time.
    #[response(status = 504)]
    Timeout(ErrorResponse),
}

/// What a read about one entity can answer (`get_entity`, `list_associations`, `timeline`).
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum GetErrors {
    /// Bad input: a malformed id or query parameter, or a value out of its bounds.
    #[response(status = 400)]
    BadRequest(ErrorResponse),
    /// No such entity.
    #[response(status = 404)]
    NotFound(ErrorResponse),
    /// A node failed internally.
    #[response(status = 502)]
    Upstream(ErrorResponse),
    /// No leader (or no node able to serve) within the bounded wait, or the bus is down.
    #[response(status = 503, headers(("Retry-After" = u64, description = "Seconds to wait before retrying")))]
    Unavailable(ErrorResponse),
    /// No node answered in time.
    #[response(status = 504)]
    Timeout(ErrorResponse),
}

/// What a template query can answer.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum QueryErrors {
    /// Bad input: malformed JSON, a body not of the schema, a template too deep or naming too
    /// many types; or (from the node) an expansion past its entity or key bound.
    #[response(status = 400)]
    BadRequest(ErrorResponse),
    /// The body is larger than BODY_LIMIT.
    #[response(status = 413)]
    TooLarge(ErrorResponse),
    /// A body that is not declared as JSON.
    #[response(status = 415)]
    UnsupportedMediaType(ErrorResponse),
    /// A node failed internally.
    #[response(status = 502)]
    Upstream(ErrorResponse),
    /// No leader (or no node able to serve) within the bounded wait, or the bus is down.
    #[response(status = 503, headers(("Retry-After" = u64, description = "Seconds to wait before retrying")))]
    Unavailable(ErrorResponse),
    /// No node answered in time.
    #[response(status = 504)]
    Timeout(ErrorResponse),
}

/// What creating an entity can answer.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum CreateErrors {
    /// Bad input: a malformed type name, malformed JSON, a body that is not an object, or a
    /// `near` that is not an id of one of the cluster's shards.
    #[response(status = 400)]
    BadRequest(ErrorResponse),
    /// The write conflicts with the state of the store.
    #[response(status = 409)]
    Conflict(ErrorResponse),
    /// The body is larger than BODY_LIMIT.
    #[response(status = 413)]
    TooLarge(ErrorResponse),
    /// A body that is not declared as JSON.
    #[response(status = 415)]
    UnsupportedMediaType(ErrorResponse),
    /// A node failed internally.
    #[response(status = 502)]
    Upstream(ErrorResponse),
    /// No leader within the bounded wait, or the bus is down.
    #[response(status = 503, headers(("Retry-After" = u64, description = "Seconds to wait before retrying")))]
    Unavailable(ErrorResponse),
    /// The leader did not confirm in time: the write may or may not have been applied.
    #[response(status = 504)]
    OutcomeUnknown(ErrorResponse),
}

/// What a write with a body to existing entities can answer (`update_entity`,
/// `put_association`).
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum UpdateErrors {
    /// Bad input: a malformed id or type name, malformed JSON, a body that is not an object,
    /// an association from an entity to itself.
    #[response(status = 400)]
    BadRequest(ErrorResponse),
    /// No such entity.
    #[response(status = 404)]
    NotFound(ErrorResponse),
    /// The write conflicts with the state of the store.
    #[response(status = 409)]
    Conflict(ErrorResponse),
    /// The body is larger than BODY_LIMIT.
    #[response(status = 413)]
    TooLarge(ErrorResponse),
    /// A body that is not declared as JSON.
    #[response(status = 415)]
    UnsupportedMediaType(ErrorResponse),
    /// A node failed internally.
    #[response(status = 502)]
    Upstream(ErrorResponse),
    /// No leader within the bounded wait, or the bus is down.
    #[response(status = 503, headers(("Retry-After" = u64, description = "Seconds to wait before retrying")))]
    Unavailable(ErrorResponse),
    /// The leader did not confirm in time: the write may or may not have been applied.
    #[response(status = 504)]
    OutcomeUnknown(ErrorResponse),
}

/// What a delete can answer.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum DeleteErrors {
    /// Bad input: a malformed id or type name.
    #[response(status = 400)]
    BadRequest(ErrorResponse),
    /// Nothing to delete.
    #[response(status = 404)]
    NotFound(ErrorResponse),
    /// The write conflicts with the state of the store.
    #[response(status = 409)]
    Conflict(ErrorResponse),
    /// A node failed internally.
    #[response(status = 502)]
    Upstream(ErrorResponse),
    /// No leader within the bounded wait, or the bus is down.
    #[response(status = 503, headers(("Retry-After" = u64, description = "Seconds to wait before retrying")))]
    Unavailable(ErrorResponse),
    /// The leader did not confirm in time: the write may or may not have been applied.
    #[response(status = 504)]
    OutcomeUnknown(ErrorResponse),
}
