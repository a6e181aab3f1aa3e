//! Extractors whose rejections are [`ApiError`]s, so bad input leaves as a JSON 4xx:
//! [`ApiJson`], [`ApiPath`], [`ApiQuery`], [`OptionalJsonObject`] (a body that may be
//! empty), and the validators of id lists and type names the routes share (the bounds are in
//! [`crate::bounds`]).

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use instaface_bus::graph::{valid_type_name, MAX_TYPE_NAME_LEN};

use crate::bounds::parse_u64;
use crate::error::ApiError;
use crate::model::Attributes;

/// A JSON body; malformed JSON or a wrong shape is a 400, a body over the limit a 413.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// Path parameters; a segment of the wrong type (a non-numeric id) is a 400.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// Query parameters; a value of the wrong type is a 400.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// A body that must be a JSON object, `null` or empty (both taken as `{}`). Used where the
/// contract lets a client send nothing, such as `PUT …/associations/{type}/{to}`.
pub struct OptionalJsonObject(pub Attributes);

impl<S: Send + Sync> FromRequest<S> for OptionalJsonObject {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let bytes = Bytes::from_request(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJsonObject(Attributes::new()));
        }
        if let Some(ct) = content_type {
            if !is_json_content_type(&ct) {
                return Err(ApiError::UnsupportedMediaType(format!(
                    "expected a body of type application/json, got {ct:?}"
                )));
            }
        }
        // `null` is "no attributes" too (the document says: an object or null).
        serde_json::from_slice::<Option<Attributes>>(&bytes)
            .map(|a| OptionalJsonObject(a.unwrap_or_default()))
            .map_err(|e| ApiError::InvalidJson(format!("the body must be a JSON object of attributes: {e}")))
    }
}

fn is_json_content_type(ct: &str) -> bool {
    let essence = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Checks an entity or association type name (`graph::valid_type_name`: 1 to
/// `MAX_TYPE_NAME_LEN` characters matching `TYPE_NAME_PATTERN`).
pub fn type_name(kind: &str, name: &str) -> Result<(), ApiError> {
    if valid_type_name(name) {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "{kind} type {name:?} is not a plain identifier (1-{MAX_TYPE_NAME_LEN} characters of a-z, 0-9 and _, \
             starting with a letter)"
        )))
    }
}

/// Parses `1,2,3` into ids: at least one, at most `max`, each in decimal digits only (no
/// spaces or signs: the document states an array of integers, serialized `form`, unexploded).
pub fn id_list(raw: &str, max: usize) -> Result<Vec<u64>, ApiError> {
    let ids = raw
        .split(',')
        .map(|s| parse_u64(s).ok_or_else(|| ApiError::BadRequest(format!("ids: {s:?} is not an entity id"))))
        .collect::<Result<Vec<_>, _>>()?;
    if ids.is_empty() || ids.len() > max {
        return Err(ApiError::BadRequest(format!("ids: give between 1 and {max} ids, got {}", ids.len())));
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_lists_parse_or_fail() {
        assert_eq!(id_list("1,2,3", 10), Ok(vec![1, 2, 3]));
        assert!(id_list("1,2, 3", 10).is_err());
        assert!(id_list("+1", 10).is_err());
        assert!(id_list("", 10).is_err());
        assert!(id_list("1,,2", 10).is_err());
        assert!(id_list("1,x", 10).is_err());
        assert!(id_list("-1", 10).is_err());
        assert!(id_list("1,2,3", 2).is_err());
        assert!(id_list("18446744073709551616", 10).is_err());
    }

    #[test]
    fn json_content_types() {
        assert!(is_json_content_type("application/json"));
        assert!(is_json_content_type("application/json; charset=utf-8"));
        assert!(is_json_content_type("application/merge-patch+json"));
        assert!(!is_json_content_type("text/plain"));
    }
}
