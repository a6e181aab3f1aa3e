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
    /// The shard whose leader runs `req`: the entity's, or the association's `from`
    /// entity's; `None` for a create (the client chooses its shard). With several shards,
    /// an association whose two ends are in different shards is refused: cross-shard
    /// associations (written through the outbox, issue 15) are not built yet.
    pub fn of_write(self, req: &WriteRequest) -> Result<Option<ShardId>, String> {
        let ids = match req {
            WriteRequest::CreateEntity { .. } => return Ok(None),
            WriteRequest::UpdateEntity { id, .. } | WriteRequest::DeleteEntity { id } => (*id, *id),
            WriteRequest::AddAssoc { from, to, .. } | WriteRequest::RemoveAssoc { from, to, .. } => (*from, *to),
        };
        if !self.split() {
            return Ok(Some(0));
        }
        let (from, to) = (shard_of(ids.0), shard_of(ids.1));
        if from >= self.count {
            return Err(format!("entity {} names shard {from}, and there are {} shards", ids.0, self.count));
        }
        if from != to {
            return Err(format!(
                "entities {} (shard {from}) and {} (shard {to}) are in different shards: cross-shard \
                 associations are not supported yet",
                ids.0, ids.1
            ));
        }
        Ok(Some(from))
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
    fn a_write_runs_in_its_from_entitys_shard() {
        let two = Shards::new(2).unwrap();
        let (a, b) = (5, first_id(1) + 5);
        let assoc =
            |from, to| WriteRequest::AddAssoc { from, atype: "friend".into(), to, attributes: Default::default() };
        assert_eq!(two.of_write(&WriteRequest::DeleteEntity { id: b }), Ok(Some(1)));
        assert_eq!(two.of_write(&assoc(b, b + 1)), Ok(Some(1)));
        assert!(two.of_write(&assoc(a, b)).unwrap_err().contains("different shards"));
        assert!(two.of_write(&WriteRequest::DeleteEntity { id: first_id(7) }).is_err());
        assert_eq!(Shards::one().of_write(&assoc(a, b)), Ok(Some(0)));
        let create = WriteRequest::CreateEntity { etype: "user".into(), attributes: Default::default() };
        assert_eq!(two.of_write(&create), Ok(None));
    }
}
