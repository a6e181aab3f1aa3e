//! Shards: how the id space is split, and which shard an id belongs to.
//!
//! The graph is split into `SHARDS` logical shards, each with its own leader group and its
//! own database. An entity's shard is part of its id (TAO's way): the top bits above
//! [`SHARD_SHIFT`] hold it, so any process routes an id without a lookup. Shard 0's ids are
//! the plain auto-increment values, so a cluster with one shard — and every database made
//! before shards existed — keeps its ids.
//!
//! Shard `k`'s database hands out ids from `k << SHARD_SHIFT` on (the store sets its
//! auto-increment start), which leaves 2^40 (about 10^12) entities per shard and keeps every
//! id below 2^53 for up to [`MAX_SHARDS`] shards, so a JavaScript client reads ids exactly.

use serde::{Deserialize, Serialize};

use crate::graph::{EntityId, WriteRequest};

/// A shard number, `0..shards`.
pub type ShardId = u32;

/// The bits of an id below its shard.
pub const SHARD_SHIFT: u32 = 40;

/// The most shards an id can name while staying below 2^53.
pub const MAX_SHARDS: u32 = 1 << (53 - SHARD_SHIFT);

/// The shard an entity id belongs to.
pub fn shard_of(id: EntityId) -> ShardId {
    (id >> SHARD_SHIFT) as ShardId
}

/// The first id shard `k` hands out.
pub fn first_id(shard: ShardId) -> EntityId {
    ((shard as u64) << SHARD_SHIFT).max(1)
}

/// The shard layout a process works with: how many shards there are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shards {
    count: u32,
}

impl Shards {
    /// `count` shards; `None` past [`MAX_SHARDS`] or at zero.
    pub fn new(count: u32) -> Option<Shards> {
        (1..=MAX_SHARDS).contains(&count).then_some(Shards { count })
    }

    /// One shard: the whole graph in one leader group (the default).
    pub fn one() -> Shards {
        Shards { count: 1 }
    }

    pub fn count(self) -> u32 {
        self.count
    }

    /// Whether the graph is split at all.
    pub fn split(self) -> bool {
        self.count > 1
    }

    /// Every shard, `0..count`.
    pub fn all(self) -> impl Iterator<Item = ShardId> {
        0..self.count
    }

    /// The shard of `id`, when it is one of this layout's shards.
    pub fn of(self, id: EntityId) -> Option<ShardId> {
        let k = shard_of(id);
        (k < self.count).then_some(k)
    }
}

impl Default for Shards {
    fn default() -> Self {
        Shards::one()
    }
}

impl Shards {
    /// The shard whose leader runs `req`: the entity's for an update or delete, `None` for
    /// a create (the client chooses its shard), and for an association the shard of its
    /// **owner** ([`owner_of`]). Refused when an id names a shard past the last (no such
    /// entity can exist: the graph client answers "not found", as for a read of it).
    pub fn of_write(self, req: &WriteRequest) -> Result<Option<ShardId>, String> {
        let (owner, ids) = match req {
            WriteRequest::CreateEntity { .. } => return Ok(None),
            _ if !self.split() => return Ok(Some(0)),
            WriteRequest::UpdateEntity { id, .. } | WriteRequest::DeleteEntity { id } => (*id, [*id, *id]),
            WriteRequest::AddAssoc { from, atype, to, .. } | WriteRequest::RemoveAssoc { from, atype, to } => {
                (owner_of(*from, atype, *to), [*from, *to])
            }
        };
        for id in ids {
            if self.of(id).is_none() {
                return Err(format!(
                    "entity {id} does not exist: it names shard {}, and there are {} shards",
                    shard_of(id),
                    self.count
                ));
            }
        }
        Ok(Some(shard_of(owner)))
    }
}

/// The entity whose shard runs every write of the association `from --atype--> to`: for a
/// one-way type, `from` (its only row lives there); for a type with an inverse, one end of
/// the pair chosen from the two ids alone — the smaller when their parities match, else the
/// larger — so both directions of a pair are written by one leader, one after the other
/// (a change's inverse in the other shard is then applied in that order,
/// [`crate::intents`]), and pairs across two shards are owned by each about equally.
pub fn owner_of(from: EntityId, atype: &str, to: EntityId) -> EntityId {
    if crate::graph::inverse_of(atype).is_none() {
        return from;
    }
    let (lo, hi) = (from.min(to), from.max(to));
    if (lo ^ hi) & 1 == 0 {
        lo
    } else {
        hi
    }
}

/// Parses `SHARDS`: a count from 1 to [`MAX_SHARDS`].
pub fn parse_shards(s: &str) -> Result<Shards, String> {
    let n: u32 = s.trim().parse().map_err(|_| format!("SHARDS must be a number, not {s:?}"))?;
    Shards::new(n).ok_or_else(|| format!("SHARDS must be 1 to {MAX_SHARDS}, not {n}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_zero_ids_are_plain_and_others_carry_their_shard() {
        assert_eq!(shard_of(1), 0);
        assert_eq!(shard_of((1 << SHARD_SHIFT) - 1), 0);
        assert_eq!(first_id(0), 1);
        assert_eq!(first_id(3), 3 << SHARD_SHIFT);
        assert_eq!(shard_of(first_id(3) + 12345), 3);
        assert!(first_id(MAX_SHARDS - 1) + ((1 << SHARD_SHIFT) - 1) < 1 << 53);
    }

    proptest::proptest! {
        /// The rule the intents rely on (`crate::intents`): both directions of a pair —
        /// `a --t--> b` and `b --inverse(t)--> a` — are written by the same shard, so one
        /// leader orders every change of the pair. (Routing by `from` breaks it.)
        #[test]
        fn both_directions_of_a_pair_are_written_by_one_shard(
            a in 1u64..(4 << SHARD_SHIFT),
            b in 1u64..(4 << SHARD_SHIFT),
            t in proptest::sample::select(vec!["friend", "likes", "likedby", "posted", "postedby"]),
        ) {
            let four = Shards::new(4).unwrap();
            let inverse = crate::graph::inverse_of(t).unwrap();
            let there = WriteRequest::RemoveAssoc { from: a, atype: t.into(), to: b };
            let back = WriteRequest::AddAssoc { from: b, atype: inverse.into(), to: a, attributes: Default::default() };
            let owner = four.of_write(&there).unwrap();
            proptest::prop_assert_eq!(owner, four.of_write(&back).unwrap());
            proptest::prop_assert!(owner == Some(shard_of(a)) || owner == Some(shard_of(b)));
        }
    }

    #[test]
    fn layouts_are_bounded() {
        assert_eq!(parse_shards("2"), Ok(Shards { count: 2 }));
        assert!(parse_shards("0").is_err());
        assert!(parse_shards("x").is_err());
        assert!(parse_shards(&(MAX_SHARDS + 1).to_string()).is_err());
        let two = Shards::new(2).unwrap();
        assert_eq!(two.of(first_id(1)), Some(1));
        assert_eq!(two.of(first_id(2)), None);
    }

    #[test]
    fn a_write_runs_in_its_owners_shard() {
        let two = Shards::new(2).unwrap();
        let (a, b) = (5, first_id(1) + 5);
        let assoc = |from, atype: &str, to| WriteRequest::AddAssoc {
            from,
            atype: atype.into(),
            to,
            attributes: Default::default(),
        };
        assert_eq!(two.of_write(&WriteRequest::DeleteEntity { id: b }), Ok(Some(1)));
        assert_eq!(two.of_write(&assoc(b, "friend", b + 1)), Ok(Some(1)));
        // A pair with an inverse is owned by one end, the same in either direction: the
        // smaller id when the parities match, else the larger.
        assert_eq!(two.of_write(&assoc(a, "friend", b)), Ok(Some(0)));
        assert_eq!(two.of_write(&assoc(b, "friend", a)), Ok(Some(0)));
        assert_eq!(two.of_write(&assoc(b, "likedby", a)), Ok(Some(0)));
        assert_eq!(two.of_write(&assoc(a, "friend", b + 1)), Ok(Some(1)));
        assert_eq!(two.of_write(&assoc(b + 1, "likes", a)), Ok(Some(1)));
        // A one-way association is its `from` entity's.
        assert_eq!(two.of_write(&assoc(b, "follows", a)), Ok(Some(1)));
        assert!(two.of_write(&assoc(a, "friend", first_id(2))).is_err());
        assert!(two.of_write(&WriteRequest::DeleteEntity { id: first_id(7) }).is_err());
        assert_eq!(Shards::one().of_write(&assoc(a, "friend", b)), Ok(Some(0)));
        let create = WriteRequest::CreateEntity { etype: "user".into(), attributes: Default::default() };
        assert_eq!(two.of_write(&create), Ok(None));
    }
}
