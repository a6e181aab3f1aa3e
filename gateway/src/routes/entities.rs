//! `POST /api/entities/{type}`, `GET /api/entities/{id}`, `GET /api/entities?ids=…`,
//! `PATCH /api/entities/{id}`, `DELETE /api/entities/{id}`.
//!
//! The router has one template, `/api/entities/{id}`, for both `{type}` (POST) and `{id}`
//! (the rest): two templates differing only in the parameter's name cannot coexist.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;

use super::{written, ReadErrors, WriteErrors, MAX_IDS};
use crate::error::ApiError;
use crate::extract::{self, ApiJson, ApiPath, ApiQuery};
use crate::model::{Attributes, Entity, ReadParams};
use crate::state::AppState;

/// Creates an entity of a type with the given attributes.
#[utoipa::path(
    post,
    operation_id = "create_entity",
    path = "/api/entities/{type}",
    tag = "entities",
    params(("type" = String, Path, description = "The entity type, a plain identifier (`[a-z][a-z0-9_]{0,31}`)")),
    request_body(content = Object, description = "The attributes: a JSON object"),
    responses(
        (status = 201, description = "Created", body = Entity,
            headers(("X-Instaface-Seq" = u64, description = "The write's invalidation seq"))),
        WriteErrors,
    )
)]
pub async fn create(
    State(state): State<AppState>,
    ApiPath(etype): ApiPath<String>,
    ApiJson(attributes): ApiJson<Attributes>,
) -> Result<Response, ApiError> {
    extract::type_name("entity", &etype)?;
    let (entity, seq) = state.client.create_entity(&etype, attributes).await?;
    Ok(written(StatusCode::CREATED, seq, Some(Entity::from(entity))))
}

/// One entity.
#[utoipa::path(
    get,
    operation_id = "get_entity",
    path = "/api/entities/{id}",
    tag = "entities",
    params(("id" = u64, Path, description = "The entity id"), ReadParams),
    responses((status = 200, description = "The entity", body = Entity), ReadErrors)
)]
pub async fn get(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<u64>,
    ApiQuery(read): ApiQuery<ReadParams>,
) -> Result<Json<Entity>, ApiError> {
    let entity = state.client.get_entity(id, read.consistency()).await?;
    Ok(Json(entity.into()))
}

/// `?ids=1,2,3`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct IdsParams {
    /// Comma-separated entity ids (1 to 1000).
    pub ids: String,
}

/// Several entities in one request: those found, in the order asked.
#[utoipa::path(
    get,
    operation_id = "get_entities",
    path = "/api/entities",
    tag = "entities",
    params(IdsParams, ReadParams),
    responses((status = 200, description = "The entities found, in the order asked (unknown ids left out)", body = [Entity]), ReadErrors)
)]
pub async fn get_many(
    State(state): State<AppState>,
    ApiQuery(ids): ApiQuery<IdsParams>,
    ApiQuery(read): ApiQuery<ReadParams>,
) -> Result<Json<Vec<Entity>>, ApiError> {
    let ids = extract::id_list(&ids.ids, MAX_IDS)?;
    let entities = state.client.get_entities(ids, read.consistency()).await?;
    Ok(Json(entities.into_iter().map(Into::into).collect()))
}

/// Updates an entity's attributes with a JSON merge patch (RFC 7396): `null` removes a key.
#[utoipa::path(
    patch,
    operation_id = "update_entity",
    path = "/api/entities/{id}",
    tag = "entities",
    params(("id" = u64, Path, description = "The entity id")),
    request_body(content = Object, description = "A JSON merge patch of the attributes (an object)"),
    responses(
        (status = 200, description = "The updated entity", body = Entity,
            headers(("X-Instaface-Seq" = u64, description = "The write's invalidation seq"))),
        WriteErrors,
    )
)]
pub async fn patch(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<u64>,
    ApiJson(patch): ApiJson<Attributes>,
) -> Result<Response, ApiError> {
    let (entity, seq) = state.client.update_entity(id, serde_json::Value::Object(patch)).await?;
    Ok(written(StatusCode::OK, seq, Some(Entity::from(entity))))
}

/// Deletes an entity and its associations both ways.
#[utoipa::path(
    delete,
    operation_id = "delete_entity",
    path = "/api/entities/{id}",
    tag = "entities",
    params(("id" = u64, Path, description = "The entity id")),
    responses(
        (status = 204, description = "Deleted",
            headers(("X-Instaface-Seq" = u64, description = "The write's invalidation seq"))),
        WriteErrors,
    )
)]
pub async fn delete(State(state): State<AppState>, ApiPath(id): ApiPath<u64>) -> Result<Response, ApiError> {
    let (found, seq) = state.client.delete_entity(id).await?;
    if !found {
        return Err(ApiError::NotFound(format!("no entity {id}")));
    }
    Ok(written::<()>(StatusCode::NO_CONTENT, seq, None))
}
