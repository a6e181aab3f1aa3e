//! [`QueryPlan`]: a template query expanded breadth-first, one batch of cache keys per
//! level, as a state machine the actor feeds — the plan never awaits anything.
//!
//! Level 0 is the requested entities. The batch of a level asks for each of its entities
//! (`e:<id>`) and, for each association type of the template at that entity, its list
//! (`a:<id>:<type>`); the lists name the next level's entities. A key is asked at most once
//! per query: a level whose keys were all fetched before needs no batch. Missing entities
//! are left out, and so are associations to them.

use std::collections::{BTreeMap, HashMap, HashSet};

use instaface_bus::graph::{
    self, valid_type_name, CacheKey, CacheValue, Entity, EntityId, Expanded, QueryStats, Template,
};

use super::{BatchPlan, QueryError};
use crate::cache::value_fits_key;

/// The bounds a query must stay within.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueryLimits {
    /// Levels of association below the requested entities (the template's depth).
    pub max_depth: usize,
    /// Entities in the expansion, counting repeats and those found missing.
    pub max_entities: usize,
    /// Association types in the whole template.
    pub max_template_size: usize,
    /// Cache keys asked in all, over every batch.
    pub max_keys: usize,
    /// Items expanded per association list: the newest this many.
    pub assoc_window: usize,
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits {
            max_depth: graph::MAX_TEMPLATE_DEPTH,
            max_entities: graph::MAX_QUERY_ENTITIES,
            max_template_size: graph::MAX_TEMPLATE_TYPES,
            max_keys: graph::MAX_QUERY_KEYS,
            assoc_window: 100,
        }
    }
}

/// One level of a template, flattened: association type → the index of the next level's.
type TemplateNode = Vec<(String, usize)>;

/// One place in the expansion: an entity id reached through a template node.
struct Node {
    id: EntityId,
    template: usize,
    /// For each association of the template node (same index), the nodes it reaches.
    children: Vec<Vec<usize>>,
}

enum State {
    /// The current level's batch is still to be handed out.
    Ready,
    /// The batch handed out; waiting for [`QueryPlan::feed`].
    Awaiting(Vec<CacheKey>),
    Done,
    Failed(QueryError),
}

/// A template query in progress. Drive it with [`QueryPlan::next_batch`] and
/// [`QueryPlan::feed`] until `next_batch` returns `None`, then call [`QueryPlan::finish`].
pub struct QueryPlan {
    templates: Vec<TemplateNode>,
    nodes: Vec<Node>,
    roots: Vec<usize>,
    /// The nodes of the current level: `nodes[level_start..]`.
    level_start: usize,
    values: HashMap<CacheKey, CacheValue>,
    limits: QueryLimits,
    state: State,
    stats: QueryStats,
}

impl QueryPlan {
    /// A plan for `entities` expanded by `template` with the default limits and lists cut to
    /// their newest `assoc_window` items.
    pub fn new(entities: &[EntityId], template: &Template, assoc_window: usize) -> Result<Self, QueryError> {
        Self::with_limits(entities, template, QueryLimits { assoc_window, ..QueryLimits::default() })
    }

    /// A plan for `entities` expanded by `template`, within `limits`. Fails at once when the
    /// template is too deep or too large, names an invalid type, or there are too many
    /// entities. Duplicate requested ids are expanded once, in the order first asked.
    pub fn with_limits(entities: &[EntityId], template: &Template, limits: QueryLimits) -> Result<Self, QueryError> {
        let mut templates = Vec::new();
        flatten(template, 0, &limits, &mut templates)?;
        let mut seen = HashSet::new();
        let roots: Vec<EntityId> = entities.iter().copied().filter(|id| seen.insert(*id)).collect();
        if roots.len() > limits.max_entities {
            return Err(QueryError::TooManyEntities { max: limits.max_entities });
        }
        let nodes: Vec<Node> = roots.iter().map(|&id| new_node(id, 0, &templates)).collect();
        Ok(QueryPlan {
            roots: (0..nodes.len()).collect(),
            templates,
            nodes,
            level_start: 0,
            values: HashMap::new(),
            limits,
            state: State::Ready,
            stats: QueryStats::default(),
        })
    }

    /// The expanded entities, in the order asked (missing ones left out), and the stats so
    /// far: `levels`, `fetches` and `keys` are filled in; `misses`, `micros` and `node` are
    /// the caller's to set. Fails if the plan failed or is not finished.
    pub fn finish(self) -> Result<(Vec<Expanded>, QueryStats), QueryError> {
        match self.state {
            State::Done => {}
            State::Failed(e) => return Err(e),
            State::Ready | State::Awaiting(_) => return Err(QueryError::OutOfStep("finish before the last batch")),
        }
        let expanded = self.roots.iter().filter_map(|&n| self.build(n)).collect();
        Ok((expanded, self.stats))
    }

    /// The keys to look up next — every key of the current level not fetched before — or
    /// `None` when the plan needs nothing more (call [`QueryPlan::finish`]). Until
    /// [`QueryPlan::feed`] is called, asking again hands out the same batch.
    pub fn next_batch(&mut self) -> Option<Vec<CacheKey>> {
        loop {
            match &self.state {
                State::Done | State::Failed(_) => return None,
                State::Awaiting(keys) => return Some(keys.clone()),
                State::Ready if self.level_start == self.nodes.len() => {
                    self.state = State::Done;
                    return None;
                }
                State::Ready => {
                    let keys = self.level_keys();
                    if keys.is_empty() {
                        if let Err(e) = self.descend() {
                            self.fail(e);
                        }
                        continue;
                    }
                    if self.stats.keys as usize + keys.len() > self.limits.max_keys {
                        self.fail(QueryError::TooManyKeys { max: self.limits.max_keys });
                        continue;
                    }
                    self.stats.fetches += 1;
                    self.stats.keys = self.stats.keys.saturating_add(keys.len() as u32);
                    self.state = State::Awaiting(keys.clone());
                    return Some(keys);
                }
            }
        }
    }

    /// The values of the batch handed out (in any order; keys not asked are ignored). A key
    /// of the batch left out, or given a value of the wrong kind, fails the plan, as does
    /// going past [`QueryLimits::max_entities`].
    pub fn feed(&mut self, values: Vec<(CacheKey, CacheValue)>) -> Result<(), QueryError> {
        let keys = match std::mem::replace(&mut self.state, State::Ready) {
            State::Awaiting(keys) => keys,
            State::Failed(e) => {
                self.state = State::Failed(e.clone());
                return Err(e);
            }
            other => {
                self.state = other;
                return Err(QueryError::OutOfStep("feed without a batch handed out"));
            }
        };
        let mut values: HashMap<CacheKey, CacheValue> = values.into_iter().collect();
        for key in keys {
            match values.remove(&key) {
                Some(value) if value_fits_key(&key, &value) => {
                    self.values.insert(key, value);
                }
                Some(_) => return Err(self.fail(QueryError::UnexpectedValue(key))),
                None => return Err(self.fail(QueryError::MissingValue(key))),
            }
        }
        self.descend().map_err(|e| self.fail(e))
    }

    /// A plan that has already failed with `error`: it asks nothing and finishes with it.
    pub fn failed(error: QueryError) -> Self {
        QueryPlan {
            templates: Vec::new(),
            nodes: Vec::new(),
            roots: Vec::new(),
            level_start: 0,
            values: HashMap::new(),
            limits: QueryLimits::default(),
            state: State::Failed(error),
            stats: QueryStats::default(),
        }
    }

    /// The stats so far.
    pub fn stats(&self) -> &QueryStats {
        &self.stats
    }

    /// The keys of the current level not fetched yet.
    fn level_keys(&self) -> Vec<CacheKey> {
        let mut seen = HashSet::new();
        let mut keys = Vec::new();
        for node in &self.nodes[self.level_start..] {
            let wanted = std::iter::once(CacheKey::Entity(node.id)).chain(
                self.templates[node.template]
                    .iter()
                    .map(|(atype, _)| CacheKey::Assocs { from: node.id, atype: atype.clone() }),
            );
            for key in wanted {
                if !self.values.contains_key(&key) && seen.insert(key.clone()) {
                    keys.push(key);
                }
            }
        }
        keys
    }

    /// With every value of the current level known, makes the next level current.
    fn descend(&mut self) -> Result<(), QueryError> {
        self.stats.levels += 1;
        let level_end = self.nodes.len();
        for n in self.level_start..level_end {
            let (id, template) = (self.nodes[n].id, self.nodes[n].template);
            if self.entity(id).is_none() {
                continue;
            }
            for (j, (atype, child_template)) in self.templates[template].iter().enumerate() {
                let key = CacheKey::Assocs { from: id, atype: atype.clone() };
                let items = match self.values.get(&key) {
                    Some(CacheValue::Assocs { items, .. }) => items,
                    _ => return Err(QueryError::UnexpectedValue(key)),
                };
                let window = items.len().min(self.limits.assoc_window);
                if self.nodes.len() + window > self.limits.max_entities {
                    return Err(QueryError::TooManyEntities { max: self.limits.max_entities });
                }
                let first_child = self.nodes.len();
                let children: Vec<Node> =
                    items[..window].iter().map(|a| new_node(a.to, *child_template, &self.templates)).collect();
                self.nodes.extend(children);
                self.nodes[n].children[j] = (first_child..self.nodes.len()).collect();
            }
        }
        self.level_start = level_end;
        Ok(())
    }

    fn entity(&self, id: EntityId) -> Option<&Entity> {
        match self.values.get(&CacheKey::Entity(id)) {
            Some(CacheValue::Entity { entity }) => entity.as_ref(),
            _ => None,
        }
    }

    fn build(&self, n: usize) -> Option<Expanded> {
        let node = &self.nodes[n];
        let entity = self.entity(node.id)?.clone();
        let associations: BTreeMap<String, Vec<Expanded>> = self.templates[node.template]
            .iter()
            .zip(&node.children)
            .map(|((atype, _), children)| (atype.clone(), children.iter().filter_map(|&c| self.build(c)).collect()))
            .collect();
        Some(Expanded { entity, associations })
    }

    fn fail(&mut self, error: QueryError) -> QueryError {
        self.state = State::Failed(error.clone());
        error
    }
}

impl BatchPlan for QueryPlan {
    fn next_batch(&mut self) -> Option<Vec<CacheKey>> {
        QueryPlan::next_batch(self)
    }

    fn feed(&mut self, values: Vec<(CacheKey, CacheValue)>) -> Result<(), QueryError> {
        QueryPlan::feed(self, values)
    }
}

fn new_node(id: EntityId, template: usize, templates: &[TemplateNode]) -> Node {
    let width = templates.get(template).map_or(0, Vec::len);
    Node { id, template, children: vec![Vec::new(); width] }
}

/// Flattens `template` (at `depth`) into `out`, checking the limits; returns its index.
fn flatten(
    template: &Template,
    depth: usize,
    limits: &QueryLimits,
    out: &mut Vec<TemplateNode>,
) -> Result<usize, QueryError> {
    if !template.0.is_empty() && depth >= limits.max_depth {
        return Err(QueryError::TooDeep { max: limits.max_depth });
    }
    let at = out.len();
    out.push(Vec::new());
    for (atype, nested) in &template.0 {
        if !valid_type_name(atype) {
            return Err(QueryError::InvalidType(atype.clone()));
        }
        // Every node but the root is one association type.
        if out.len() > limits.max_template_size {
            return Err(QueryError::TemplateTooLarge { max: limits.max_template_size });
        }
        let child = flatten(nested, depth + 1, limits, out)?;
        out[at].push((atype.clone(), child));
    }
    Ok(at)
}
