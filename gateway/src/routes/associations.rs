//! `PUT` and `DELETE /api/entities/{from}/associations/{type}/{to}` (with the inverse, where
//! the type has one) and `GET /api/entities/{id}/associations/{type}?limit=&offset=`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use instaface_bus::graph::MAX_ASSOC_OFFSET;
use serde::Deserialize;
use utoipa::IntoParams;

use super::{written, ReadErrors, WriteErrors, MAX_LIMIT};
use crate::error::ApiError;
use crate::extract::{self, ApiPath, ApiQuery, OptionalJsonObject};
use crate::model::{Association, AssociationList, ReadParams};
use crate::state::AppState;

/// Default page size of an association list.
pub const DEFAULT_LIMIT: u32 = 50;

/// Adds (or replaces) the association `from --type--> to`, and its inverse.
#[utoipa::path(
    put,
    operation_id = "put_association",
    path = "/api/entities/{from}/associations/{type}/{to}",
    tag = "associations",
    params(
        ("from" = u64, Path, description = "The entity the association starts at"),
        ("type" = String, Path, description = "The association type, a plain identifier"),
        ("to" = u64, Path, description = "The entity it points to"),
    ),
    request_body(content = Object, description = "The attributes: a JSON object, or an empty body for none"),
    responses(
        (status = 200, description = "The association", body = Association,
            headers(("X-Instaface-Seq" = u64, description = "The write's invalidation seq"))),
        WriteErrors,
    )
)]
pub async fn put(
    State(state): State<AppState>,
    ApiPath((from, atype, to)): ApiPath<(u64, String, u64)>,
    OptionalJsonObject(attributes): OptionalJsonObject,
) -> Result<Response, ApiError> {
    extract::type_name("association", &atype)?;
    let (association, seq) = state.client.add_assoc(from, &atype, to, attributes).await?;
    Ok(written(StatusCode::OK, seq, Some(Association::from(association))))
}

/// Removes the association `from --type--> to`, and its inverse.
#[utoipa::path(
    delete,
    operation_id = "delete_association",
    path = "/api/entities/{from}/associations/{type}/{to}",
    tag = "associations",
    params(
        ("from" = u64, Path, description = "The entity the association starts at"),
        ("type" = String, Path, description = "The association type, a plain identifier"),
        ("to" = u64, Path, description = "The entity it points to"),
    ),
    responses(
        (status = 204, description = "Removed",
            headers(("X-Instaface-Seq" = u64, description = "The write's invalidation seq"))),
        WriteErrors,
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    ApiPath((from, atype, to)): ApiPath<(u64, String, u64)>,
) -> Result<Response, ApiError> {
    extract::type_name("association", &atype)?;
    let (found, seq) = state.client.remove_assoc(from, &atype, to).await?;
    if !found {
        return Err(ApiError::NotFound(format!("no association {from} --{atype}--> {to}")));
    }
    Ok(written::<()>(StatusCode::NO_CONTENT, seq, None))
}

/// `?limit=&offset=`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Items to return, 0 to 1000 (default 50).
    pub limit: Option<u32>,
    /// Items to skip from the newest, 0 to 100000 (default 0).
    #[param(maximum = 100000)]
    pub offset: Option<u32>,
}

/// One page of an entity's associations of a type, newest first, with the total count.
#[utoipa::path(
    get,
    operation_id = "list_associations",
    path = "/api/entities/{id}/associations/{type}",
    tag = "associations",
    params(
        ("id" = u64, Path, description = "The entity"),
        ("type" = String, Path, description = "The association type, a plain identifier"),
        PageParams,
        ReadParams,
    ),
    responses((status = 200, description = "The page", body = AssociationList), ReadErrors)
)]
pub async fn list(
    State(state): State<AppState>,
    ApiPath((id, atype)): ApiPath<(u64, String)>,
    ApiQuery(page): ApiQuery<PageParams>,
    ApiQuery(read): ApiQuery<ReadParams>,
) -> Result<Json<AssociationList>, ApiError> {
    extract::type_name("association", &atype)?;
    let limit = extract::bounded("limit", page.limit.unwrap_or(DEFAULT_LIMIT), 0, MAX_LIMIT)?;
    let offset = extract::bounded("offset", page.offset.unwrap_or(0), 0, MAX_ASSOC_OFFSET)?;
    let (count, items) = state.client.list_assocs(id, &atype, limit, offset, read.consistency()).await?;
    Ok(Json(AssociationList { count, items: items.into_iter().map(Into::into).collect() }))
}
