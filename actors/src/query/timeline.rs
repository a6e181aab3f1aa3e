//! The timeline query: a user's posts with who liked them, and their likes with who posted
//! them, newest first — a template query over the user, reshaped into a [`Timeline`].

use std::collections::BTreeMap;

use instaface_bus::graph::{
    CacheKey, CacheValue, Entity, EntityId, Expanded, QueryStats, Template, Timeline, TimelineLike, TimelinePost,
};

use super::{BatchPlan, QueryError, QueryPlan};

/// `{posted: {likedby: {}}, likes: {postedby: {}}}`: what a timeline expands.
pub fn timeline_template() -> Template {
    let leaf = |atype: &str| Template(BTreeMap::from([(atype.to_string(), Template::default())]));
    Template(BTreeMap::from([("posted".to_string(), leaf("likedby")), ("likes".to_string(), leaf("postedby"))]))
}

/// The timeline of `user`, every list cut to its newest `limit` items. Drive it like a
/// [`QueryPlan`], then call [`TimelinePlan::finish`].
pub fn timeline_plan(user: EntityId, limit: usize) -> TimelinePlan {
    // The template is fixed and within every limit, so this cannot fail; if it ever did,
    // the error would come out of `finish`.
    let plan = QueryPlan::new(&[user], &timeline_template(), limit).unwrap_or_else(QueryPlan::failed);
    TimelinePlan { plan, user, limit }
}

/// A timeline query in progress.
pub struct TimelinePlan {
    plan: QueryPlan,
    user: EntityId,
    limit: usize,
}

impl TimelinePlan {
    /// See [`QueryPlan::next_batch`].
    pub fn next_batch(&mut self) -> Option<Vec<CacheKey>> {
        self.plan.next_batch()
    }

    /// See [`QueryPlan::feed`].
    pub fn feed(&mut self, values: Vec<(CacheKey, CacheValue)>) -> Result<(), QueryError> {
        self.plan.feed(values)
    }

    /// The timeline (association lists come newest first, and so does it), with the stats
    /// of the underlying query. Fails with [`QueryError::NotFound`] if the user does not
    /// exist.
    pub fn finish(self) -> Result<(Timeline, QueryStats), QueryError> {
        let (expanded, stats) = self.plan.finish()?;
        let mut user = expanded.into_iter().next().ok_or(QueryError::NotFound(self.user))?;
        let posts = take(&mut user.associations, "posted")
            .into_iter()
            .take(self.limit)
            .map(|mut post| TimelinePost {
                liked_by: entities(take(&mut post.associations, "likedby"), self.limit),
                status: post.entity,
            })
            .collect();
        let likes = take(&mut user.associations, "likes")
            .into_iter()
            .take(self.limit)
            .map(|mut like| TimelineLike {
                posted_by: entities(take(&mut like.associations, "postedby"), self.limit),
                status: like.entity,
            })
            .collect();
        Ok((Timeline { user: user.entity, posts, likes }, stats))
    }
}

impl BatchPlan for TimelinePlan {
    fn next_batch(&mut self) -> Option<Vec<CacheKey>> {
        TimelinePlan::next_batch(self)
    }

    fn feed(&mut self, values: Vec<(CacheKey, CacheValue)>) -> Result<(), QueryError> {
        TimelinePlan::feed(self, values)
    }
}

fn take(associations: &mut BTreeMap<String, Vec<Expanded>>, atype: &str) -> Vec<Expanded> {
    associations.remove(atype).unwrap_or_default()
}

fn entities(expanded: Vec<Expanded>, limit: usize) -> Vec<Entity> {
    expanded.into_iter().take(limit).map(|e| e.entity).collect()
}
