//! Tests of the query planner, driven against an in-memory graph by a loop standing in for
//! the actor and its cache.

use std::collections::{BTreeMap, HashMap, HashSet};

use instaface_bus::graph::{Association, CacheKey, CacheValue, Entity, EntityId, Expanded, Template};
use proptest::prelude::*;

use super::{timeline_plan, BatchPlan, QueryError, QueryLimits, QueryPlan};

/// An in-memory graph: entities, and association lists newest first.
#[derive(Clone, Debug, Default)]
struct Graph {
    entities: HashMap<EntityId, Entity>,
    lists: HashMap<(EntityId, String), Vec<EntityId>>,
}

impl Graph {
    fn entity(mut self, id: EntityId, etype: &str) -> Self {
        let entity =
            Entity { id, etype: etype.into(), attributes: Default::default(), created: id, updated: id, version: 1 };
        self.entities.insert(id, entity);
        self
    }

    /// Adds `from --atype--> to` as the newest item of the list.
    fn assoc(mut self, from: EntityId, atype: &str, to: EntityId) -> Self {
        self.lists.entry((from, atype.to_string())).or_default().insert(0, to);
        self
    }

    fn list(&self, from: EntityId, atype: &str) -> &[EntityId] {
        self.lists.get(&(from, atype.to_string())).map_or(&[], Vec::as_slice)
    }

    fn value(&self, key: &CacheKey) -> CacheValue {
        match key {
            CacheKey::Entity(id) => CacheValue::Entity { entity: self.entities.get(id).cloned() },
            CacheKey::Assocs { from, atype } => {
                let list = self.list(*from, atype);
                let items: Vec<Association> = list
                    .iter()
                    .enumerate()
                    .map(|(i, &to)| Association {
                        from: *from,
                        atype: atype.clone(),
                        to,
                        attributes: Default::default(),
                        created: (list.len() - i) as u64,
                    })
                    .collect();
                CacheValue::Assocs { count: items.len() as u64, items, complete: true }
            }
        }
    }
}

/// Runs `plan` to the end against `graph`, returning the batches it asked for.
fn drive<P: BatchPlan>(plan: &mut P, graph: &Graph) -> Result<Vec<Vec<CacheKey>>, QueryError> {
    let mut batches = Vec::new();
    while let Some(keys) = plan.next_batch() {
        let values = keys.iter().map(|k| (k.clone(), graph.value(k))).collect();
        batches.push(keys);
        plan.feed(values)?;
    }
    Ok(batches)
}

fn template(pairs: &[(&str, Template)]) -> Template {
    Template(pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect())
}

fn leaf() -> Template {
    Template::default()
}

fn e(id: EntityId) -> CacheKey {
    CacheKey::Entity(id)
}

fn a(from: EntityId, atype: &str) -> CacheKey {
    CacheKey::Assocs { from, atype: atype.into() }
}

/// A tree of ids and association types, to compare expansions at a glance.
fn shape(x: &Expanded) -> String {
    if x.associations.is_empty() {
        return x.entity.id.to_string();
    }
    let inner: Vec<String> = x
        .associations
        .iter()
        .map(|(t, v)| format!("{t}:[{}]", v.iter().map(shape).collect::<Vec<_>>().join(",")))
        .collect();
    format!("{}{{{}}}", x.entity.id, inner.join(" "))
}

fn small_graph() -> Graph {
    Graph::default()
        .entity(1, "user")
        .entity(2, "user")
        .entity(3, "user")
        .entity(10, "status")
        .entity(11, "status")
        .assoc(1, "friend", 2)
        .assoc(1, "friend", 3)
        .assoc(1, "friend", 98) // a friend that no longer exists
        .assoc(2, "friend", 1)
        .assoc(3, "friend", 1)
        .assoc(2, "posted", 10)
        .assoc(2, "posted", 11)
}

#[test]
fn expands_a_small_graph_one_batch_per_level() {
    let g = small_graph();
    let t = template(&[("friend", template(&[("posted", leaf())]))]);
    let mut plan = QueryPlan::new(&[1, 99], &t, 100).expect("plan");
    let batches = drive(&mut plan, &g).expect("drive");
    assert_eq!(
        batches,
        vec![
            vec![e(1), a(1, "friend"), e(99), a(99, "friend")],
            vec![e(98), a(98, "posted"), e(3), a(3, "posted"), e(2), a(2, "posted")],
            vec![e(11), e(10)],
        ]
    );
    let (out, stats) = plan.finish().expect("finish");
    let shapes: Vec<String> = out.iter().map(shape).collect();
    // 99 does not exist, nor does friend 98; lists are newest first.
    assert_eq!(shapes, vec!["1{friend:[3{posted:[]},2{posted:[11,10]}]}"]);
    assert_eq!((stats.levels, stats.fetches, stats.keys), (3, 3, 12));
    assert_eq!(out[0].entity.etype, "user");
}

#[test]
fn keys_are_asked_once_per_query() {
    // 1 and 2 are friends: level 1 is {2, 1}, already fetched at level 0.
    let g = Graph::default().entity(1, "user").entity(2, "user").assoc(1, "friend", 2).assoc(2, "friend", 1);
    let t = template(&[("friend", leaf())]);
    let mut plan = QueryPlan::new(&[1, 2, 1], &t, 100).expect("plan");
    let batches = drive(&mut plan, &g).expect("drive");
    assert_eq!(batches, vec![vec![e(1), a(1, "friend"), e(2), a(2, "friend")]]);
    let (out, stats) = plan.finish().expect("finish");
    let shapes: Vec<String> = out.iter().map(shape).collect();
    assert_eq!(shapes, vec!["1{friend:[2]}", "2{friend:[1]}"]);
    assert_eq!((stats.levels, stats.fetches, stats.keys), (2, 1, 4));
}

#[test]
fn lists_are_cut_to_the_window() {
    let g = (20..30).fold(Graph::default().entity(1, "user"), |g, id| g.entity(id, "user").assoc(1, "friend", id));
    let mut plan = QueryPlan::new(&[1], &template(&[("friend", leaf())]), 3).expect("plan");
    drive(&mut plan, &g).expect("drive");
    let (out, _) = plan.finish().expect("finish");
    assert_eq!(shape(&out[0]), "1{friend:[29,28,27]}");
}

#[test]
fn nothing_asked_nothing_fetched() {
    let mut plan = QueryPlan::new(&[], &template(&[("friend", leaf())]), 10).expect("plan");
    assert_eq!(plan.next_batch(), None);
    let (out, stats) = plan.finish().expect("finish");
    assert!(out.is_empty());
    assert_eq!((stats.levels, stats.fetches, stats.keys), (0, 0, 0));
}

#[test]
fn limits_are_enforced() {
    let mut deep = leaf();
    for _ in 0..7 {
        deep = template(&[("friend", deep)]);
    }
    assert_eq!(QueryPlan::new(&[1], &deep, 10).err(), Some(QueryError::TooDeep { max: 6 }));
    let six = match &deep.0.get("friend") {
        Some(t) => (*t).clone(),
        None => leaf(),
    };
    assert!(QueryPlan::new(&[1], &six, 10).is_ok(), "depth 6 is allowed");

    assert_eq!(
        QueryPlan::new(&[1], &template(&[("Friend", leaf())]), 10).err(),
        Some(QueryError::InvalidType("Friend".into()))
    );

    let wide = Template((0..65).map(|i| (format!("t{i}"), leaf())).collect::<BTreeMap<_, _>>());
    assert_eq!(QueryPlan::new(&[1], &wide, 10).err(), Some(QueryError::TemplateTooLarge { max: 64 }));

    let limits = QueryLimits { max_entities: 5, ..QueryLimits::default() };
    assert_eq!(
        QueryPlan::with_limits(&[1, 2, 3, 4, 5, 6], &leaf(), limits).err(),
        Some(QueryError::TooManyEntities { max: 5 })
    );
    // Friends of friends of 1 in a clique of 4: 1 + 3 + 9 nodes.
    let clique = (1..=4).fold(Graph::default(), |g, x| {
        (1..=4).filter(|&y| y != x).fold(g.entity(x, "user"), |g, y| g.assoc(x, "friend", y))
    });
    let fof = template(&[("friend", template(&[("friend", leaf())]))]);
    let mut plan =
        QueryPlan::with_limits(&[1], &fof, QueryLimits { max_entities: 12, ..QueryLimits::default() }).expect("plan");
    assert_eq!(drive(&mut plan, &clique).err(), Some(QueryError::TooManyEntities { max: 12 }));
    assert_eq!(plan.next_batch(), None, "a failed plan asks nothing more");
    assert_eq!(plan.finish().err(), Some(QueryError::TooManyEntities { max: 12 }));
    let mut plan =
        QueryPlan::with_limits(&[1], &fof, QueryLimits { max_entities: 13, ..QueryLimits::default() }).expect("plan");
    drive(&mut plan, &clique).expect("13 fits");

    // Level 0 asks e:1 and a:1:friend; level 1 asks 2, 3, 4 with their lists: 8 keys.
    let mut plan =
        QueryPlan::with_limits(&[1], &fof, QueryLimits { max_keys: 7, ..QueryLimits::default() }).expect("plan");
    assert_eq!(drive(&mut plan, &clique).err(), None, "a refused batch is not handed out");
    assert_eq!(plan.stats().fetches, 1);
    assert_eq!(plan.finish().err(), Some(QueryError::TooManyKeys { max: 7 }));
    let mut plan =
        QueryPlan::with_limits(&[1], &fof, QueryLimits { max_keys: 8, ..QueryLimits::default() }).expect("plan");
    drive(&mut plan, &clique).expect("8 fits");
}

#[test]
fn the_plan_checks_how_it_is_driven() {
    let g = small_graph();
    let mut plan = QueryPlan::new(&[1], &template(&[("friend", leaf())]), 10).expect("plan");
    assert_eq!(plan.feed(vec![]), Err(QueryError::OutOfStep("feed without a batch handed out")));
    let batch = plan.next_batch().expect("batch");
    assert_eq!(plan.next_batch(), Some(batch.clone()), "asking again hands out the same batch");
    assert_eq!(plan.stats().fetches, 1);
    let mut values: Vec<_> = batch.iter().map(|k| (k.clone(), g.value(k))).collect();
    values.reverse(); // any order will do
    values.push((e(77), g.value(&e(77)))); // not asked: ignored
    plan.feed(values).expect("feed");

    let mut early = QueryPlan::new(&[1], &leaf(), 10).expect("plan");
    early.next_batch();
    assert!(matches!(early.finish(), Err(QueryError::OutOfStep(_))));

    let mut short = QueryPlan::new(&[1], &template(&[("friend", leaf())]), 10).expect("plan");
    short.next_batch();
    assert_eq!(short.feed(vec![(e(1), g.value(&e(1)))]), Err(QueryError::MissingValue(a(1, "friend"))));
    let mut wrong = QueryPlan::new(&[1], &leaf(), 10).expect("plan");
    wrong.next_batch();
    assert_eq!(wrong.feed(vec![(e(1), g.value(&e(2)))]), Err(QueryError::UnexpectedValue(e(1))));
}

#[test]
fn timeline_shape_and_order() {
    // User 1 posted 10 then 11; 2 and 3 liked 11, 3 liked 10; 1 liked 12 (by 2) then 13 (by 3).
    let g = Graph::default()
        .entity(1, "user")
        .entity(2, "user")
        .entity(3, "user")
        .entity(10, "status")
        .entity(11, "status")
        .entity(12, "status")
        .entity(13, "status")
        .assoc(1, "posted", 10)
        .assoc(1, "posted", 11)
        .assoc(11, "likedby", 2)
        .assoc(11, "likedby", 3)
        .assoc(10, "likedby", 3)
        .assoc(1, "likes", 12)
        .assoc(1, "likes", 13)
        .assoc(12, "postedby", 2)
        .assoc(13, "postedby", 3);
    let mut plan = timeline_plan(1, 10);
    let batches = drive(&mut plan, &g).expect("drive");
    assert_eq!(batches.len(), 3, "user, statuses, people: one batch each");
    let (timeline, stats) = plan.finish().expect("finish");
    assert_eq!(stats.fetches, 3);
    assert_eq!(timeline.user.id, 1);
    let posts: Vec<(EntityId, Vec<EntityId>)> =
        timeline.posts.iter().map(|p| (p.status.id, p.liked_by.iter().map(|u| u.id).collect())).collect();
    assert_eq!(posts, vec![(11, vec![3, 2]), (10, vec![3])]);
    let likes: Vec<(EntityId, Vec<EntityId>)> =
        timeline.likes.iter().map(|l| (l.status.id, l.posted_by.iter().map(|u| u.id).collect())).collect();
    assert_eq!(likes, vec![(13, vec![3]), (12, vec![2])]);

    let mut plan = timeline_plan(1, 1);
    drive(&mut plan, &g).expect("drive");
    let (timeline, _) = plan.finish().expect("finish");
    assert_eq!(timeline.posts.len(), 1);
    assert_eq!(timeline.posts[0].liked_by.len(), 1);
    assert_eq!(timeline.likes.len(), 1);

    let mut plan = timeline_plan(42, 10);
    drive(&mut plan, &g).expect("drive");
    assert_eq!(plan.finish().err(), Some(QueryError::NotFound(42)));
}

// ---- Property: the plan equals a naive recursive expansion ---------------------------

const TYPES: [&str; 3] = ["friend", "likes", "posted"];

fn naive(g: &Graph, id: EntityId, t: &Template, window: usize) -> Option<Expanded> {
    let entity = g.entities.get(&id)?.clone();
    let associations =
        t.0.iter()
            .map(|(atype, sub)| {
                let to = g.list(id, atype).iter().take(window);
                (atype.clone(), to.filter_map(|&to| naive(g, to, sub, window)).collect())
            })
            .collect();
    Some(Expanded { entity, associations })
}

/// The keys a query must ask: each entity reached, and the lists of the template at it —
/// asked alongside the entity, so even when it turns out missing; nothing below a missing
/// entity.
fn naive_keys(g: &Graph, id: EntityId, t: &Template, window: usize, keys: &mut HashSet<CacheKey>) {
    keys.insert(e(id));
    for (atype, sub) in &t.0 {
        keys.insert(a(id, atype));
        if g.entities.contains_key(&id) {
            for &to in g.list(id, atype).iter().take(window) {
                naive_keys(g, to, sub, window, keys);
            }
        }
    }
}

fn depth(t: &Template) -> usize {
    t.0.values().map(|sub| 1 + depth(sub)).max().unwrap_or(0)
}

fn graph() -> impl Strategy<Value = Graph> {
    // Ids 1..=8 may exist; lists may also point at 9 and 10, which never do.
    let exists = proptest::collection::vec(any::<bool>(), 8);
    let lists = proptest::collection::vec(proptest::collection::vec(1u64..=10, 0..4), 8 * TYPES.len());
    (exists, lists).prop_map(|(exists, lists)| {
        let mut g = Graph::default();
        for (i, &present) in exists.iter().enumerate() {
            if present {
                g = g.entity(i as u64 + 1, "user");
            }
        }
        for (i, to) in lists.into_iter().enumerate() {
            g.lists.insert((i as u64 / TYPES.len() as u64 + 1, TYPES[i % TYPES.len()].to_string()), to);
        }
        g
    })
}

fn template_strategy() -> impl Strategy<Value = Template> {
    Just(Template::default()).prop_recursive(3, 12, 3, |inner| {
        proptest::collection::btree_map(proptest::sample::select(TYPES.to_vec()).prop_map(String::from), inner, 0..3)
            .prop_map(Template)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn matches_a_naive_expansion(
        g in graph(),
        t in template_strategy(),
        roots in proptest::collection::vec(1u64..=10, 0..4),
        window in 0usize..4,
    ) {
        let mut plan = QueryPlan::new(&roots, &t, window)?;
        let batches = drive(&mut plan, &g)?;
        let (got, stats) = plan.finish()?;

        let mut seen = HashSet::new();
        let roots: Vec<EntityId> = roots.into_iter().filter(|id| seen.insert(*id)).collect();
        let want: Vec<Expanded> = roots.iter().filter_map(|&id| naive(&g, id, &t, window)).collect();
        prop_assert_eq!(got, want);

        prop_assert!(batches.len() <= depth(&t) + 1, "at most one batch per level");
        prop_assert_eq!(stats.fetches as usize, batches.len());
        let mut asked = HashSet::new();
        for batch in &batches {
            prop_assert!(!batch.is_empty());
            for key in batch {
                prop_assert!(asked.insert(key.clone()), "{} asked twice", key);
            }
        }
        prop_assert_eq!(stats.keys as usize, asked.len());
        let mut needed = HashSet::new();
        for &id in &roots {
            naive_keys(&g, id, &t, window, &mut needed);
        }
        prop_assert_eq!(asked, needed, "exactly the keys needed");
    }
}
