//! The query planner: template queries (`POST /api/query`) and timelines, expanded
//! breadth-first with ONE batch of cache keys per level — never one request per entity.
//!
//! Pure over an async-free interface: a plan hands out a batch of keys
//! ([`QueryPlan::next_batch`]), the actor looks them up in its cache however long that
//! takes and feeds the values back ([`QueryPlan::feed`]), until the plan has nothing more
//! to ask; then `finish` builds the answer. [`BatchPlan`] names that shape for code that
//! drives either kind of plan.
//!
//! - [`QueryPlan`] (in `plan.rs`): template expansion with its limits ([`QueryLimits`]).
//! - [`TimelinePlan`] (in `timeline.rs`): the timeline as a template query, reshaped.
//!
//! ```
//! use instaface_actors::query::QueryPlan;
//! use instaface_bus::graph::{CacheKey, CacheValue, Template};
//!
//! // A store where nothing exists.
//! let lookup = |keys: Vec<CacheKey>| -> Vec<(CacheKey, CacheValue)> {
//!     keys.into_iter().map(|k| (k, CacheValue::Entity { entity: None })).collect()
//! };
//! let mut plan = QueryPlan::new(&[1, 2], &Template::default(), 100)?;
//! while let Some(keys) = plan.next_batch() {
//!     plan.feed(lookup(keys))?; // in the actor: a cache lookup, answered later
//! }
//! let (entities, stats) = plan.finish()?;
//! assert!(entities.is_empty());
//! assert_eq!((stats.levels, stats.fetches, stats.keys), (1, 1, 2));
//! # Ok::<(), instaface_actors::query::QueryError>(())
//! ```

mod plan;
mod timeline;

#[cfg(test)]
mod tests;

use instaface_bus::graph::{CacheKey, CacheValue, EntityId, ErrorBody, ErrorCode};

pub use plan::{QueryLimits, QueryPlan};
pub use timeline::{timeline_plan, timeline_template, TimelinePlan};

/// A query that asks for its data one batch of cache keys at a time ([`QueryPlan`] and
/// [`TimelinePlan`] both are; their inherent methods of the same names are the same).
pub trait BatchPlan {
    /// The keys to look up next, or `None` when the plan needs nothing more (call `finish`).
    /// Until [`BatchPlan::feed`] is called, asking again hands out the same batch.
    fn next_batch(&mut self) -> Option<Vec<CacheKey>>;

    /// The values of the batch handed out (in any order; keys not asked are ignored). A key
    /// of the batch left out, or given a value of the wrong kind, fails the plan.
    fn feed(&mut self, values: Vec<(CacheKey, CacheValue)>) -> Result<(), QueryError>;
}

/// Why a query cannot be answered.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum QueryError {
    /// The template nests deeper than allowed.
    #[error("the template nests deeper than {max} levels")]
    TooDeep { max: usize },
    /// The template names more association types than allowed.
    #[error("the template names more than {max} association types")]
    TemplateTooLarge { max: usize },
    /// The expansion would hold more entities than allowed.
    #[error("the query expands to more than {max} entities")]
    TooManyEntities { max: usize },
    /// The expansion would ask for more cache keys than allowed.
    #[error("the query needs more than {max} cache keys")]
    TooManyKeys { max: usize },
    /// The template names something that cannot be an association type.
    #[error("not an association type: {0:?}")]
    InvalidType(String),
    /// The entity the query is about does not exist (timelines).
    #[error("entity {0} not found")]
    NotFound(EntityId),
    /// The values fed lacked a key of the batch.
    #[error("no value for {0}")]
    MissingValue(CacheKey),
    /// The values fed gave a key a value of the wrong kind.
    #[error("a value of the wrong kind for {0}")]
    UnexpectedValue(CacheKey),
    /// The plan was driven out of order (a bug in the caller).
    #[error("query plan driven out of step: {0}")]
    OutOfStep(&'static str),
}

impl From<QueryError> for ErrorBody {
    fn from(e: QueryError) -> Self {
        let code = match &e {
            QueryError::TooDeep { .. }
            | QueryError::TemplateTooLarge { .. }
            | QueryError::TooManyEntities { .. }
            | QueryError::TooManyKeys { .. }
            | QueryError::InvalidType(_) => ErrorCode::Invalid,
            QueryError::NotFound(_) => ErrorCode::NotFound,
            QueryError::MissingValue(_) | QueryError::UnexpectedValue(_) | QueryError::OutOfStep(_) => {
                ErrorCode::Internal
            }
        };
        ErrorBody::new(code, e.to_string())
    }
}
