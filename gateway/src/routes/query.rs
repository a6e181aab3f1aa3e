//! `POST /api/query` (template queries), `GET /api/timeline/{user_id}` and
//! `GET /api/random/{type}`.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;

use super::{ReadErrors, MAX_IDS, MAX_LIMIT};
use crate::error::ApiError;
use crate::extract::{self, ApiJson, ApiPath, ApiQuery};
use crate::model::{ErrorResponse, QueryRequest, QueryResponse, QueryStats, RandomIds, ReadParams, Timeline};
use crate::state::AppState;

/// How deep a template may nest.
pub const MAX_TEMPLATE_DEPTH: usize = 6;
/// How many association types a template may name in all.
pub const MAX_TEMPLATE_TYPES: usize = 64;

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
        (status = 413, description = "The body is larger than the configured limit", body = ErrorResponse),
        (status = 415, description = "A body that is not JSON", body = ErrorResponse),
        ReadErrors,
    )
)]
pub async fn query(
    State(state): State<AppState>,
    ApiQuery(read): ApiQuery<ReadParams>,
    ApiJson(request): ApiJson<QueryRequest>,
) -> Result<Json<QueryResponse>, ApiError> {
    if request.entities.is_empty() || request.entities.len() > MAX_IDS {
        return Err(ApiError::BadRequest(format!(
            "entities: give between 1 and {MAX_IDS} ids, got {}",
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

/// `?limit=`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TimelineParams {
    /// Posts and likes to return at most, each, 1 to 1000 (default 20).
    pub limit: Option<u32>,
}

/// Default length of a timeline.
pub const DEFAULT_TIMELINE: u32 = 20;

/// A user's posts (with who liked them) and likes (with who posted them), newest first.
#[utoipa::path(
    get,
    operation_id = "timeline",
    path = "/api/timeline/{user_id}",
    tag = "query",
    params(("user_id" = u64, Path, description = "The user"), TimelineParams, ReadParams),
    responses((status = 200, description = "The timeline", body = Timeline), ReadErrors)
)]
pub async fn timeline(
    State(state): State<AppState>,
    ApiPath(user): ApiPath<u64>,
    ApiQuery(params): ApiQuery<TimelineParams>,
    ApiQuery(read): ApiQuery<ReadParams>,
) -> Result<Json<Timeline>, ApiError> {
    let limit = extract::bounded("limit", params.limit.unwrap_or(DEFAULT_TIMELINE), 1, MAX_LIMIT)?;
    let timeline = state.client.timeline(user, limit, read.consistency()).await?;
    Ok(Json(timeline.into()))
}

/// `?count=`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RandomParams {
    /// How many ids at most, 1 to 1000 (default 10).
    pub count: Option<u32>,
}

/// Default number of random ids.
pub const DEFAULT_RANDOM: u32 = 10;

/// Up to `count` random ids of entities of a type.
#[utoipa::path(
    get,
    operation_id = "random_ids",
    path = "/api/random/{type}",
    tag = "query",
    params(("type" = String, Path, description = "The entity type, a plain identifier"), RandomParams, ReadParams),
    responses((status = 200, description = "The ids", body = RandomIds), ReadErrors)
)]
pub async fn random(
    State(state): State<AppState>,
    ApiPath(etype): ApiPath<String>,
    ApiQuery(params): ApiQuery<RandomParams>,
    ApiQuery(read): ApiQuery<ReadParams>,
) -> Result<Json<RandomIds>, ApiError> {
    extract::type_name("entity", &etype)?;
    let count = extract::bounded("count", params.count.unwrap_or(DEFAULT_RANDOM), 1, MAX_LIMIT)?;
    let ids = state.client.random(&etype, count, read.consistency()).await?;
    Ok(Json(RandomIds { ids }))
}
