//! `POST /api/entities/{entity}` (`{entity}` is a type; `?near=` picks its shard),
//! `GET /api/entities/{entity}`,
//! `GET /api/entities?ids=…`, `PATCH /api/entities/{entity}`, `DELETE /api/entities/{entity}`
//! (`{entity}` is an id).
//!
//! The router has one template, `/api/entities/{entity}`, for both a type (POST) and an id
//! (the rest): two templates differing only in the parameter's name cannot coexist, in axum
//! nor in OpenAPI (they would be "identical" paths, and a client could not tell which one
//! serves a method). The document states the segment per operation.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use instaface_bus::graph::MAX_IDS_PER_READ;
use instaface_bus::shards::Shards;
use serde::Deserialize;
use utoipa::openapi::path::{Parameter, ParameterIn};
use utoipa::IntoParams;

use super::{written, CreateErrors, DeleteErrors, GetErrors, ListErrors, UpdateErrors};
use crate::bounds::{self, Id};
use crate::error::ApiError;
use crate::extract::{self, ApiJson, ApiPath, ApiQuery};
use crate::model::{Attributes, Entity, ReadParams};
use crate::state::AppState;

/// `{entity}` as the type of the entity to create.
pub struct TypeSegment;

impl IntoParams for TypeSegment {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![bounds::type_name_parameter("entity", "entity (to create)", "user")]
    }
}

/// `{entity}` as an entity id.
pub struct IdSegment;

impl IntoParams for IdSegment {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![bounds::entity_id_parameter("entity", "The entity id", 1)]
    }
}

/// `?near=`: the entity whose shard a new one goes to.
#[derive(Debug, Default, Deserialize)]
pub struct CreateParams {
    #[serde(default, deserialize_with = "bounds::de_opt_u64")]
    pub near: Option<u64>,
}

impl IntoParams for CreateParams {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        // The bound depends on the cluster's shards: the served document restates it
        // (`openapi::document_json_for`).
        vec![bounds::near_parameter(Shards::one())]
    }
}

/// Creates an entity of a type with the given attributes.
///
/// The body is the attributes themselves. When the graph is split into shards (`SHARDS`),
/// `?near=<id>` creates the entity in that entity's shard — so their associations are
/// written in one transaction; across shards the other row follows a moment later — and
/// without it creates go to each shard in turn. With one shard, `near` only
/// has to name it.
#[utoipa::path(
    post,
    operation_id = "create_entity",
    path = "/api/entities/{entity}",
    tag = "entities",
    params(TypeSegment, CreateParams),
    request_body(content = Object, description = "The attributes: a JSON object"),
    responses(
        (status = 201, description = "Created", body = Entity,
            headers(("X-Instaface-Seq" = u64, description = "The write's invalidation seq"))),
        CreateErrors,
    )
)]
pub async fn create(
    State(state): State<AppState>,
    ApiPath(etype): ApiPath<String>,
    ApiQuery(params): ApiQuery<CreateParams>,
    ApiJson(attributes): ApiJson<Attributes>,
) -> Result<Response, ApiError> {
    extract::type_name("entity", &etype)?;
    let near = params.near.map(|id| bounds::near(state.client.shards(), id)).transpose()?;
    let (entity, seq) = state.client.create_entity_near(&etype, attributes, near).await?;
    Ok(written(StatusCode::CREATED, seq, Some(Entity::from(entity))))
}

/// One entity.
#[utoipa::path(
    get,
    operation_id = "get_entity",
    path = "/api/entities/{entity}",
    tag = "entities",
    params(IdSegment, ReadParams),
    responses((status = 200, description = "The entity", body = Entity), GetErrors)
)]
pub async fn get(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<Id>,
    ApiQuery(read): ApiQuery<ReadParams>,
) -> Result<Json<Entity>, ApiError> {
    let entity = state.client.get_entity(id.0, read.consistency()).await?;
    Ok(Json(entity.into()))
}

/// `?ids=1,2,3`.
#[derive(Debug, Deserialize)]
pub struct IdsParams {
    pub ids: String,
}

impl IntoParams for IdsParams {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![bounds::ids_parameter()]
    }
}

/// Several entities in one request: those found, in the order asked.
#[utoipa::path(
    get,
    operation_id = "get_entities",
    path = "/api/entities",
    tag = "entities",
    params(IdsParams, ReadParams),
    responses((status = 200, description = "The entities found, in the order asked (unknown ids left out)", body = [Entity]), ListErrors)
)]
pub async fn get_many(
    State(state): State<AppState>,
    ApiQuery(ids): ApiQuery<IdsParams>,
    ApiQuery(read): ApiQuery<ReadParams>,
) -> Result<Json<Vec<Entity>>, ApiError> {
    let ids = extract::id_list(&ids.ids, MAX_IDS_PER_READ)?;
    let entities = state.client.get_entities(ids, read.consistency()).await?;
    Ok(Json(entities.into_iter().map(Into::into).collect()))
}

/// Updates an entity's attributes with a JSON merge patch (RFC 7396): `null` removes a key.
#[utoipa::path(
    patch,
    operation_id = "update_entity",
    path = "/api/entities/{entity}",
    tag = "entities",
    params(IdSegment),
    request_body(content = Object, description = "A JSON merge patch of the attributes (an object)"),
    responses(
        (status = 200, description = "The updated entity", body = Entity,
            headers(("X-Instaface-Seq" = u64, description = "The write's invalidation seq"))),
        UpdateErrors,
    )
)]
pub async fn patch(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<Id>,
    ApiJson(patch): ApiJson<Attributes>,
) -> Result<Response, ApiError> {
    let (entity, seq) = state.client.update_entity(id.0, serde_json::Value::Object(patch)).await?;
    Ok(written(StatusCode::OK, seq, Some(Entity::from(entity))))
}

/// Deletes an entity and its associations both ways.
#[utoipa::path(
    delete,
    operation_id = "delete_entity",
    path = "/api/entities/{entity}",
    tag = "entities",
    params(IdSegment),
    responses(
        (status = 204, description = "Deleted",
            headers(("X-Instaface-Seq" = u64, description = "The write's invalidation seq"))),
        DeleteErrors,
    )
)]
pub async fn delete(State(state): State<AppState>, ApiPath(id): ApiPath<Id>) -> Result<Response, ApiError> {
    let (found, seq) = state.client.delete_entity(id.0).await?;
    if !found {
        return Err(ApiError::NotFound(format!("no entity {}", id.0)));
    }
    Ok(written::<()>(StatusCode::NO_CONTENT, seq, None))
}
