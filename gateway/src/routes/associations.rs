//! `PUT` and `DELETE /api/entities/{from}/associations/{type}/{to}` (with the inverse, where
//! the type has one) and `GET /api/entities/{id}/associations/{type}?limit=&offset=` (404
//! for an entity that does not exist, an empty page for one without such associations).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use serde::Deserialize;
use utoipa::openapi::path::{Parameter, ParameterIn};
use utoipa::IntoParams;

use super::{written, DeleteErrors, GetErrors, UpdateErrors};
use crate::bounds::{self, Id, ASSOC_LIMIT, ASSOC_OFFSET};
use crate::error::ApiError;
use crate::extract::{self, ApiPath, ApiQuery, OptionalJsonObject};
use crate::model::{Association, AssociationList, ReadParams};
use crate::state::AppState;

/// `{from}/associations/{type}/{to}`.
pub struct AssocSegments;

impl IntoParams for AssocSegments {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            bounds::entity_id_parameter("from", "The entity the association starts at", 1),
            bounds::type_name_parameter("type", "association", "friend"),
            bounds::entity_id_parameter("to", "The entity it points to; not `from`", 2),
        ]
    }
}

/// Adds (or replaces) the association `from --type--> to`, and its inverse.
#[utoipa::path(
    put,
    operation_id = "put_association",
    path = "/api/entities/{from}/associations/{type}/{to}",
    tag = "associations",
    params(AssocSegments),
    request_body(
        content = Option<Object>,
        description = "The attributes: a JSON object, or an empty body (with any or no content type) for none"
    ),
    responses(
        (status = 200, description = "The association", body = Association,
            headers(("X-Instaface-Seq" = u64, description = "The write's invalidation seq"))),
        UpdateErrors,
    )
)]
pub async fn put(
    State(state): State<AppState>,
    ApiPath(path): ApiPath<(Id, String, Id)>,
    OptionalJsonObject(attributes): OptionalJsonObject,
) -> Result<Response, ApiError> {
    let (Id(from), atype, Id(to)) = path;
    extract::type_name("association", &atype)?;
    if from == to {
        return Err(ApiError::BadRequest(format!("an association from entity {from} to itself")));
    }
    let (association, seq) = state.client.add_assoc(from, &atype, to, attributes).await?;
    Ok(written(StatusCode::OK, seq, Some(Association::from(association))))
}

/// Removes the association `from --type--> to`, and its inverse.
#[utoipa::path(
    delete,
    operation_id = "delete_association",
    path = "/api/entities/{from}/associations/{type}/{to}",
    tag = "associations",
    params(AssocSegments),
    responses(
        (status = 204, description = "Removed",
            headers(("X-Instaface-Seq" = u64, description = "The write's invalidation seq"))),
        DeleteErrors,
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    ApiPath(path): ApiPath<(Id, String, Id)>,
) -> Result<Response, ApiError> {
    let (Id(from), atype, Id(to)) = path;
    extract::type_name("association", &atype)?;
    let (found, seq) = state.client.remove_assoc(from, &atype, to).await?;
    if !found {
        return Err(ApiError::NotFound(format!("no association {from} --{atype}--> {to}")));
    }
    Ok(written::<()>(StatusCode::NO_CONTENT, seq, None))
}

/// `{id}/associations/{type}`.
pub struct ListSegments;

impl IntoParams for ListSegments {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            bounds::entity_id_parameter("id", "The entity", 1),
            bounds::type_name_parameter("type", "association", "friend"),
        ]
    }
}

/// `?limit=&offset=` ([`ASSOC_LIMIT`], [`ASSOC_OFFSET`]).
#[derive(Debug, Default, Deserialize)]
pub struct PageParams {
    #[serde(default, deserialize_with = "bounds::de_opt_u32")]
    pub limit: Option<u32>,
    #[serde(default, deserialize_with = "bounds::de_opt_u32")]
    pub offset: Option<u32>,
}

impl IntoParams for PageParams {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            ASSOC_LIMIT.parameter("Items to return"),
            ASSOC_OFFSET.parameter("Items to skip from the newest (deeper pages of a list want a cursor)"),
        ]
    }
}

/// One page of an entity's associations of a type, newest first, with the total count; 404
/// when the entity does not exist.
#[utoipa::path(
    get,
    operation_id = "list_associations",
    path = "/api/entities/{id}/associations/{type}",
    tag = "associations",
    params(ListSegments, PageParams, ReadParams),
    responses((status = 200, description = "The page", body = AssociationList), GetErrors)
)]
pub async fn list(
    State(state): State<AppState>,
    ApiPath(path): ApiPath<(Id, String)>,
    ApiQuery(page): ApiQuery<PageParams>,
    ApiQuery(read): ApiQuery<ReadParams>,
) -> Result<Json<AssociationList>, ApiError> {
    let (Id(id), atype) = path;
    extract::type_name("association", &atype)?;
    let limit = ASSOC_LIMIT.check(page.limit)?;
    let offset = ASSOC_OFFSET.check(page.offset)?;
    let (count, items) = state.client.list_assocs(id, &atype, limit, offset, read.consistency()).await?;
    if count == 0 {
        // An entity that does not exist (or no longer does) has no lists to show: 404, as for
        // the entity itself. (One with associations exists: deleting it removes them.)
        state.client.get_entity(id, read.consistency()).await?;
    }
    Ok(Json(AssociationList { count, items: items.into_iter().map(Into::into).collect() }))
}
