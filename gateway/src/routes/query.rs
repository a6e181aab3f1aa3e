//! `POST /api/query` (template queries), `GET /api/timeline/{user_id}` and
//! `GET /api/random/{type}`.

use axum::extract::State;
use axum::Json;
use instaface_bus::graph::{MAX_IDS_PER_READ, MAX_TEMPLATE_DEPTH, MAX_TEMPLATE_TYPES};
use serde::Deserialize;
use utoipa::openapi::path::{Parameter, ParameterIn};
use utoipa::IntoParams;

use super::{GetErrors, ListErrors, QueryErrors};
use crate::bounds::{self, Id, RANDOM_COUNT, TIMELINE_LIMIT};
use crate::error::ApiError;
use crate::extract::{self, ApiJson, ApiPath, ApiQuery};
use crate::model::{QueryRequest, QueryResponse, QueryStats, RandomIds, ReadParams, Timeline};
use crate::state::AppState;

/// Expands the association types of the template recursively from the given entities,
/// one batch per level.
#[utoipa::path(
    post,
    operation_id = "query",
    path = "/api/query",
    tag = "query",
    params(ReadParams),
    request_body(content = QueryRequest, description = "The entities to start from and the template to expand"),
    responses(
        (status = 200, description = "The entities, expanded, and how the query was served", body = QueryResponse),
        QueryErrors,
    )
)]
pub async fn query(
    State(state): State<AppState>,
    ApiQuery(read): ApiQuery<ReadParams>,
    ApiJson(request): ApiJson<QueryRequest>,
) -> Result<Json<QueryResponse>, ApiError> {
    if request.entities.is_empty() || request.entities.len() > MAX_IDS_PER_READ {
        return Err(ApiError::BadRequest(format!(
            "entities: give between 1 and {MAX_IDS_PER_READ} ids, got {}",
            request.entities.len()
        )));
    }
    if request.template.depth() > MAX_TEMPLATE_DEPTH {
        return Err(ApiError::BadRequest(format!("template: nests deeper than {MAX_TEMPLATE_DEPTH} levels")));
    }
    let types = request.template.types();
    if types.len() > MAX_TEMPLATE_TYPES {
        return Err(ApiError::BadRequest(format!("template: names more than {MAX_TEMPLATE_TYPES} association types")));
    }
    for t in types {
        extract::type_name("association", t)?;
    }
    let (entities, stats) = state.client.query(request.entities, request.template.into(), read.consistency()).await?;
    Ok(Json(QueryResponse { entities: entities.into_iter().map(Into::into).collect(), stats: QueryStats::from(stats) }))
}

/// `{user_id}`.
pub struct UserSegment;

impl IntoParams for UserSegment {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![bounds::entity_id_parameter("user_id", "The user", 1)]
    }
}

/// `?limit=` ([`TIMELINE_LIMIT`]).
#[derive(Debug, Default, Deserialize)]
pub struct TimelineParams {
    #[serde(default, deserialize_with = "bounds::de_opt_u32")]
    pub limit: Option<u32>,
}

impl IntoParams for TimelineParams {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![TIMELINE_LIMIT.parameter("Posts and likes to return at most, each")]
    }
}

/// A user's posts (with who liked them) and likes (with who posted them), newest first.
#[utoipa::path(
    get,
    operation_id = "timeline",
    path = "/api/timeline/{user_id}",
    tag = "query",
    params(UserSegment, TimelineParams, ReadParams),
    responses((status = 200, description = "The timeline", body = Timeline), GetErrors)
)]
pub async fn timeline(
    State(state): State<AppState>,
    ApiPath(user): ApiPath<Id>,
    ApiQuery(params): ApiQuery<TimelineParams>,
    ApiQuery(read): ApiQuery<ReadParams>,
) -> Result<Json<Timeline>, ApiError> {
    let limit = TIMELINE_LIMIT.check(params.limit)?;
    let timeline = state.client.timeline(user.0, limit, read.consistency()).await?;
    Ok(Json(timeline.into()))
}

/// `{type}` of random ids.
pub struct RandomSegment;

impl IntoParams for RandomSegment {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![bounds::type_name_parameter("type", "entity", "user")]
    }
}

/// `?count=` ([`RANDOM_COUNT`]).
#[derive(Debug, Default, Deserialize)]
pub struct RandomParams {
    #[serde(default, deserialize_with = "bounds::de_opt_u32")]
    pub count: Option<u32>,
}

impl IntoParams for RandomParams {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![RANDOM_COUNT.parameter("How many ids at most")]
    }
}

/// Up to `count` random ids of entities of a type.
#[utoipa::path(
    get,
    operation_id = "random_ids",
    path = "/api/random/{type}",
    tag = "query",
    params(RandomSegment, RandomParams, ReadParams),
    responses((status = 200, description = "The ids", body = RandomIds), ListErrors)
)]
pub async fn random(
    State(state): State<AppState>,
    ApiPath(etype): ApiPath<String>,
    ApiQuery(params): ApiQuery<RandomParams>,
    ApiQuery(read): ApiQuery<ReadParams>,
) -> Result<Json<RandomIds>, ApiError> {
    extract::type_name("entity", &etype)?;
    let count = RANDOM_COUNT.check(params.count)?;
    let ids = state.client.random(&etype, count, read.consistency()).await?;
    Ok(Json(RandomIds { ids }))
}
