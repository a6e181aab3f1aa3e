//! What the bot knows of the graph: the users and statuses it created or discovered, and
//! the `friend`, `likes` and `posted` edges it made — so that unlike and unfriend remove
//! real edges, and befriend and like never re-add an edge that may exist (re-adding is an
//! upsert in MySQL, not a new row, and would make the summary's counts lie).
//!
//! An edge is *present* when a write confirmed it, *uncertain* when the write adding or
//! removing it had an unknown outcome. Uncertain edges are never added again nor removed
//! by the bot; they only leave the world with their status.
//!
//! Concurrent operations never touch the same thing: planning an edge operation marks the
//! edge pending, and a status in use is claimed — shared by likes and edits, exclusively by
//! its deletion — until the operation is finished. Users are never deleted.
//!
//! The counts are exact for edges between entities the bot created in this run (when
//! nothing else writes to them). Entities discovered through `random` may already have
//! edges the bot does not know; it still only adds edges it does not know, and deletes only
//! statuses it created itself.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;

use instaface_bus::graph::EntityId;
use rand::Rng;

/// How many random picks a plan tries before giving up (the caller then substitutes).
const PICK_TRIES: usize = 16;

/// The association types the bot makes, each stored with its inverse by the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AssocKind {
    Friend,
    Likes,
    Posted,
}

impl AssocKind {
    pub const ALL: [AssocKind; 3] = [AssocKind::Friend, AssocKind::Likes, AssocKind::Posted];

    /// The association type on the wire.
    pub fn atype(self) -> &'static str {
        match self {
            AssocKind::Friend => "friend",
            AssocKind::Likes => "likes",
            AssocKind::Posted => "posted",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// An edge as the bot knows it. `friend` is symmetric: its ends are kept in ascending order
/// so both directions name the same edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Edge {
    pub kind: AssocKind,
    pub from: EntityId,
    pub to: EntityId,
}

impl Edge {
    pub fn friend(a: EntityId, b: EntityId) -> Edge {
        Edge { kind: AssocKind::Friend, from: a.min(b), to: a.max(b) }
    }

    pub fn likes(user: EntityId, status: EntityId) -> Edge {
        Edge { kind: AssocKind::Likes, from: user, to: status }
    }

    pub fn posted(user: EntityId, status: EntityId) -> Edge {
        Edge { kind: AssocKind::Posted, from: user, to: status }
    }
}

/// Where the bot learnt of an entity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The bot created it in this run.
    Created,
    /// `random` returned it.
    Discovered,
}

/// How a write ended, as far as the bot can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settled {
    /// Confirmed applied (for a removal or deletion: it found something to remove).
    Done,
    /// Confirmed, but a removal or deletion found nothing to remove.
    Missing,
    /// Confirmed not applied (an error answered before anything changed).
    Failed,
    /// It may or may not have been applied.
    Unknown,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EdgeState {
    Present,
    Uncertain,
}

/// Edges per association kind, e.g. those a status deletion took with it.
pub type EdgeCounts = [u64; AssocKind::ALL.len()];

/// How many things of each sort the world holds (for the summary).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct WorldCounts {
    pub users: usize,
    pub statuses: usize,
    pub friend_pairs: usize,
    pub likes: usize,
    pub posted: usize,
    pub uncertain_edges: usize,
}

/// The bot's knowledge of the graph. Not shared by itself: the runner keeps it behind a
/// mutex and never holds the lock across a request.
#[derive(Debug, Default)]
pub struct World {
    users: Pool<EntityId>,
    statuses: Pool<EntityId>,
    created_statuses: HashSet<EntityId>,
    edges: HashMap<Edge, EdgeState>,
    /// Present edges that may be removed, per kind (`posted` edges only go with their status).
    removable: [Pool<Edge>; 2],
    /// Every known edge (present or uncertain) by each of its ends' ids, for deletions.
    touching: HashMap<EntityId, HashSet<Edge>>,
    pending: HashSet<Edge>,
    /// Statuses in use: a positive count of shared claims, or [`EXCLUSIVE`].
    claims: HashMap<EntityId, i64>,
}

const EXCLUSIVE: i64 = -1;

impl World {
    pub fn new() -> World {
        World::default()
    }

    pub fn add_user(&mut self, id: EntityId) {
        self.users.insert(id);
    }

    pub fn add_status(&mut self, id: EntityId, origin: Origin) {
        if self.statuses.insert(id) && origin == Origin::Created {
            self.created_statuses.insert(id);
        }
    }

    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    pub fn status_count(&self) -> usize {
        self.statuses.len()
    }

    pub fn counts(&self) -> WorldCounts {
        let mut c = WorldCounts { users: self.users.len(), statuses: self.statuses.len(), ..Default::default() };
        for (edge, state) in &self.edges {
            match (state, edge.kind) {
                (EdgeState::Uncertain, _) => c.uncertain_edges += 1,
                (EdgeState::Present, AssocKind::Friend) => c.friend_pairs += 1,
                (EdgeState::Present, AssocKind::Likes) => c.likes += 1,
                (EdgeState::Present, AssocKind::Posted) => c.posted += 1,
            }
        }
        c
    }

    /// Any known user (reads, renames and posts need no claim: users are never deleted).
    pub fn pick_user<R: Rng + ?Sized>(&self, rng: &mut R) -> Option<EntityId> {
        self.users.pick(rng).copied()
    }

    /// Two users (of any shards) not known to be friends; the edge is pending until [`World::finish_add`].
    pub fn plan_befriend<R: Rng + ?Sized>(&mut self, rng: &mut R) -> Option<Edge> {
        if self.users.len() < 2 {
            return None;
        }
        for _ in 0..PICK_TRIES {
            let (a, b) = (*self.users.pick(rng)?, *self.users.pick(rng)?);
            let edge = Edge::friend(a, b);
            if a != b && self.is_free(&edge) {
                self.pending.insert(edge);
                return Some(edge);
            }
        }
        None
    }

    /// A user and a status it is not known to like; pending until [`World::finish_add`].
    pub fn plan_like<R: Rng + ?Sized>(&mut self, rng: &mut R) -> Option<Edge> {
        for _ in 0..PICK_TRIES {
            let (user, status) = (*self.users.pick(rng)?, *self.statuses.pick(rng)?);
            let edge = Edge::likes(user, status);
            if self.is_free(&edge) && self.claim(status, false) {
                self.pending.insert(edge);
                return Some(edge);
            }
        }
        None
    }

    /// A present `friend` or `likes` edge to remove; pending until [`World::finish_remove`].
    pub fn plan_remove<R: Rng + ?Sized>(&mut self, kind: AssocKind, rng: &mut R) -> Option<Edge> {
        for _ in 0..PICK_TRIES {
            let edge = *self.removable.get(kind.index())?.pick(rng)?;
            if self.pending.contains(&edge) {
                continue;
            }
            if kind == AssocKind::Likes && !self.claim(edge.to, false) {
                continue;
            }
            self.pending.insert(edge);
            return Some(edge);
        }
        None
    }

    /// A status to edit, claimed (shared) until [`World::finish_edit`].
    pub fn plan_edit_status<R: Rng + ?Sized>(&mut self, rng: &mut R) -> Option<EntityId> {
        for _ in 0..PICK_TRIES {
            let status = *self.statuses.pick(rng)?;
            if self.claim(status, false) {
                return Some(status);
            }
        }
        None
    }

    /// A status this run created and nothing else is using, claimed exclusively until
    /// [`World::finish_delete`].
    pub fn plan_delete_status<R: Rng + ?Sized>(&mut self, rng: &mut R) -> Option<EntityId> {
        for _ in 0..PICK_TRIES {
            let status = *self.statuses.pick(rng)?;
            if self.created_statuses.contains(&status) && self.claim(status, true) {
                return Some(status);
            }
        }
        None
    }

    /// Records how adding `edge` (planned, or a new status's `posted`) ended.
    pub fn finish_add(&mut self, edge: Edge, settled: Settled) {
        self.release(&edge);
        match settled {
            Settled::Done => self.insert_edge(edge, EdgeState::Present),
            Settled::Unknown => self.insert_edge(edge, EdgeState::Uncertain),
            Settled::Failed | Settled::Missing => {}
        }
    }

    /// Records how removing `edge` ended.
    pub fn finish_remove(&mut self, edge: Edge, settled: Settled) {
        self.release(&edge);
        match settled {
            Settled::Done | Settled::Missing => self.forget_edge(&edge),
            Settled::Unknown => self.insert_edge(edge, EdgeState::Uncertain),
            Settled::Failed => {}
        }
    }

    /// Releases a status claimed by [`World::plan_edit_status`].
    pub fn finish_edit(&mut self, status: EntityId) {
        self.unclaim(status);
    }

    /// Records how deleting `status` ended. Returns the present edges, per kind, that went
    /// with it if it was deleted (all of them for [`Settled::Done`], possibly for
    /// [`Settled::Unknown`]); uncertain edges go too, uncounted.
    pub fn finish_delete(&mut self, status: EntityId, settled: Settled) -> EdgeCounts {
        self.unclaim(status);
        let mut counts = EdgeCounts::default();
        if settled == Settled::Failed {
            return counts;
        }
        // A status whose deletion is unknown is never touched again: it may be gone.
        self.statuses.remove(&status);
        self.created_statuses.remove(&status);
        for edge in self.touching.get(&status).cloned().unwrap_or_default() {
            if self.edges.get(&edge) == Some(&EdgeState::Present) {
                counts[edge.kind.index()] += 1;
            }
            self.forget_edge(&edge);
        }
        if settled == Settled::Missing {
            // Nothing was there, so nothing went with it.
            counts = EdgeCounts::default();
        }
        counts
    }

    fn is_free(&self, edge: &Edge) -> bool {
        !self.edges.contains_key(edge) && !self.pending.contains(edge)
    }

    fn release(&mut self, edge: &Edge) {
        self.pending.remove(edge);
        if edge.kind == AssocKind::Likes {
            self.unclaim(edge.to);
        }
    }

    /// Claims `status` shared (likes, edits) or exclusively (deletion); false if it is
    /// unknown or in use in a conflicting way.
    fn claim(&mut self, status: EntityId, exclusive: bool) -> bool {
        if !self.statuses.contains(&status) {
            return false;
        }
        let claim = self.claims.entry(status).or_insert(0);
        match (exclusive, *claim) {
            (false, n) if n >= 0 => *claim += 1,
            (true, 0) => *claim = EXCLUSIVE,
            _ => return false,
        }
        true
    }

    fn unclaim(&mut self, status: EntityId) {
        if let Some(claim) = self.claims.get_mut(&status) {
            if *claim > 1 {
                *claim -= 1;
            } else {
                self.claims.remove(&status);
            }
        }
    }

    fn insert_edge(&mut self, edge: Edge, state: EdgeState) {
        self.edges.insert(edge, state);
        if let Some(pool) = self.removable.get_mut(edge.kind.index()) {
            if state == EdgeState::Present {
                pool.insert(edge);
            } else {
                pool.remove(&edge);
            }
        }
        for end in [edge.from, edge.to] {
            self.touching.entry(end).or_default().insert(edge);
        }
    }

    fn forget_edge(&mut self, edge: &Edge) {
        self.edges.remove(edge);
        if let Some(pool) = self.removable.get_mut(edge.kind.index()) {
            pool.remove(edge);
        }
        for end in [edge.from, edge.to] {
            if let Some(set) = self.touching.get_mut(&end) {
                set.remove(edge);
                if set.is_empty() {
                    self.touching.remove(&end);
                }
            }
        }
    }
}

/// A set with uniform random picks: a vector plus each item's position in it.
#[derive(Debug)]
struct Pool<T> {
    items: Vec<T>,
    positions: HashMap<T, usize>,
}

impl<T> Default for Pool<T> {
    fn default() -> Self {
        Pool { items: Vec::new(), positions: HashMap::new() }
    }
}

impl<T: Copy + Eq + Hash> Pool<T> {
    /// Adds `item`; false if it was there already.
    fn insert(&mut self, item: T) -> bool {
        if self.positions.contains_key(&item) {
            return false;
        }
        self.positions.insert(item, self.items.len());
        self.items.push(item);
        true
    }

    fn remove(&mut self, item: &T) {
        if let Some(i) = self.positions.remove(item) {
            self.items.swap_remove(i);
            if let Some(moved) = self.items.get(i) {
                self.positions.insert(*moved, i);
            }
        }
    }

    fn contains(&self, item: &T) -> bool {
        self.positions.contains_key(item)
    }

    fn len(&self) -> usize {
        self.items.len()
    }

    fn pick<R: Rng + ?Sized>(&self, rng: &mut R) -> Option<&T> {
        if self.items.is_empty() {
            None
        } else {
            self.items.get(rng.random_range(0..self.items.len()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mix::op_rng;

    fn world(users: u64, statuses: u64) -> World {
        let mut w = World::new();
        (1..=users).for_each(|u| w.add_user(u));
        (100..100 + statuses).for_each(|s| w.add_status(s, Origin::Created));
        w
    }

    #[test]
    fn befriending_never_plans_a_known_or_pending_pair() {
        let mut w = world(3, 0);
        let mut rng = op_rng(1, 0);
        let mut planned = HashSet::new();
        while let Some(edge) = w.plan_befriend(&mut rng) {
            assert!(planned.insert(edge), "{edge:?} planned twice");
            assert_ne!(edge.from, edge.to);
        }
        // Three users have three pairs; all pending now, so nothing more can be planned.
        assert_eq!(planned.len(), 3);
        for edge in &planned {
            w.finish_add(*edge, Settled::Done);
        }
        assert_eq!(w.plan_befriend(&mut rng), None);
        assert_eq!(w.counts().friend_pairs, 3);
    }

    #[test]
    fn friend_edges_are_the_same_both_ways() {
        assert_eq!(Edge::friend(5, 2), Edge::friend(2, 5));
    }

    #[test]
    fn removals_pick_only_present_edges_and_an_unknown_outcome_makes_them_uncertain() {
        let mut w = world(2, 1);
        let mut rng = op_rng(2, 0);
        let like = w.plan_like(&mut rng).unwrap();
        assert_eq!(w.plan_remove(AssocKind::Likes, &mut rng), None, "a pending like is not removable");
        w.finish_add(like, Settled::Done);
        let removal = w.plan_remove(AssocKind::Likes, &mut rng).unwrap();
        assert_eq!(removal, like);
        assert_eq!(w.plan_remove(AssocKind::Likes, &mut rng), None, "already being removed");
        w.finish_remove(removal, Settled::Unknown);
        assert_eq!(w.plan_remove(AssocKind::Likes, &mut rng), None, "uncertain edges are left alone");
        assert_eq!(w.counts().uncertain_edges, 1);
        // Nor is an uncertain edge added again.
        for _ in 0..50 {
            if let Some(e) = w.plan_like(&mut rng) {
                assert_ne!(e, like);
                w.finish_add(e, Settled::Failed);
            }
        }
    }

    #[test]
    fn a_failed_removal_keeps_the_edge_and_a_missing_one_forgets_it() {
        let mut w = world(2, 0);
        let mut rng = op_rng(3, 0);
        let edge = w.plan_befriend(&mut rng).unwrap();
        w.finish_add(edge, Settled::Done);
        let r = w.plan_remove(AssocKind::Friend, &mut rng).unwrap();
        w.finish_remove(r, Settled::Failed);
        let r = w.plan_remove(AssocKind::Friend, &mut rng).unwrap();
        w.finish_remove(r, Settled::Missing);
        assert_eq!(w.counts(), WorldCounts { users: 2, ..Default::default() });
        assert!(w.plan_befriend(&mut rng).is_some(), "a forgotten pair may be befriended again");
    }

    #[test]
    fn a_status_in_use_is_not_deleted_and_a_status_being_deleted_is_not_used() {
        let mut w = world(1, 1);
        let mut rng = op_rng(4, 0);
        let like = w.plan_like(&mut rng).unwrap();
        assert_eq!(w.plan_delete_status(&mut rng), None);
        w.finish_add(like, Settled::Done);
        let status = w.plan_delete_status(&mut rng).unwrap();
        assert_eq!(w.plan_edit_status(&mut rng), None);
        assert_eq!(w.plan_remove(AssocKind::Likes, &mut rng), None);
        w.finish_delete(status, Settled::Failed);
        let edit = w.plan_edit_status(&mut rng).unwrap();
        assert_eq!(w.plan_delete_status(&mut rng), None);
        w.finish_edit(edit);
        assert_eq!(w.plan_delete_status(&mut rng), Some(status));
    }

    #[test]
    fn deleting_a_status_takes_its_present_edges_and_counts_them() {
        let mut w = world(3, 1);
        let status = 100;
        w.finish_add(Edge::posted(1, status), Settled::Done);
        w.finish_add(Edge::likes(2, status), Settled::Done);
        w.finish_add(Edge::likes(3, status), Settled::Unknown);
        w.finish_add(Edge::friend(1, 2), Settled::Done);
        let mut rng = op_rng(5, 0);
        assert_eq!(w.plan_delete_status(&mut rng), Some(status));
        let counts = w.finish_delete(status, Settled::Done);
        assert_eq!(counts[AssocKind::Posted.index()], 1);
        assert_eq!(counts[AssocKind::Likes.index()], 1, "the uncertain like is not counted");
        assert_eq!(counts[AssocKind::Friend.index()], 0);
        assert_eq!(w.counts(), WorldCounts { users: 3, friend_pairs: 1, ..Default::default() });
    }

    #[test]
    fn an_unknown_deletion_forgets_the_status_and_a_missing_one_counts_nothing() {
        let mut w = world(1, 2);
        w.finish_add(Edge::posted(1, 100), Settled::Done);
        w.finish_add(Edge::posted(1, 101), Settled::Done);
        assert_eq!(w.finish_delete(100, Settled::Unknown)[AssocKind::Posted.index()], 1);
        assert_eq!(w.finish_delete(101, Settled::Missing), EdgeCounts::default());
        assert_eq!(w.counts(), WorldCounts { users: 1, ..Default::default() });
    }

    #[test]
    fn discovered_statuses_are_never_deleted() {
        let mut w = World::new();
        w.add_status(7, Origin::Discovered);
        assert_eq!(w.plan_delete_status(&mut op_rng(6, 0)), None);
        assert_eq!(w.plan_edit_status(&mut op_rng(6, 0)), Some(7));
    }

    #[test]
    fn pools_stay_consistent_through_removals() {
        let mut p = Pool::default();
        for i in 0..10u64 {
            assert!(p.insert(i));
        }
        assert!(!p.insert(3));
        for i in [0u64, 9, 4, 4] {
            p.remove(&i);
        }
        assert_eq!(p.len(), 7);
        for (i, item) in p.items.iter().enumerate() {
            assert_eq!(p.positions[item], i);
        }
        let mut rng = op_rng(7, 0);
        for _ in 0..100 {
            assert!(![0u64, 9, 4].contains(p.pick(&mut rng).unwrap()));
        }
    }
}
