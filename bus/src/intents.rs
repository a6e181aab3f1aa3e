//! Cross-shard inverse intents on the wire: what one shard's leader asks another shard's
//! leader to apply, on `P.shard.<k>.node.<leader>.intent` (signed like every peer
//! request; the NATS roles let only nodes publish there).
//!
//! An association whose two rows live in different shards is written by its owner's
//! leader ([`crate::shards::owner_of`]): the row in its own database in the write's
//! transaction, and for the other row an intent, committed in the same transaction and
//! delivered afterwards until the other shard answers. The receiver applies each intent
//! once (its id is recorded in the same transaction) and never lets an older intent undo a
//! newer one for the same row (it keeps the last intent id per row).

use serde::{Deserialize, Serialize};

use crate::graph::{Attributes, EntityId};
use crate::shards::ShardId;

/// The change an intent makes in the receiving shard.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum InverseOp {
    /// The row `from --atype--> to` (`from` is the receiver's) exists, with these
    /// attributes and creation time (the same as its partner's, so both lists order it
    /// alike).
    Put { from: EntityId, atype: String, to: EntityId, attributes: Attributes, created: u64 },
    /// The row `from --atype--> to` does not exist.
    Remove { from: EntityId, atype: String, to: EntityId },
    /// Entity `id` of the sending shard was deleted: every association to it goes, and no
    /// new one is accepted.
    Dropped { id: EntityId },
    /// Entity `id` (the receiver's) must exist: the sender's one-way row
    /// `from --atype--> id` was written without seeing it, and goes if it does not.
    Exists { id: EntityId, from: EntityId, atype: String },
}

impl InverseOp {
    /// The receiving shard's entity the op is about (`None` for a drop, which changes
    /// rows of many).
    pub fn local_entity(&self) -> Option<EntityId> {
        match self {
            InverseOp::Put { from, .. } | InverseOp::Remove { from, .. } => Some(*from),
            InverseOp::Exists { id, .. } => Some(*id),
            InverseOp::Dropped { .. } => None,
        }
    }

    /// The sending shard's entity the op comes from: the pair's owner end, the one-way
    /// row's `from`, or the entity deleted there.
    pub fn remote_entity(&self) -> EntityId {
        match self {
            InverseOp::Put { to, .. } | InverseOp::Remove { to, .. } => *to,
            InverseOp::Exists { from, .. } => *from,
            InverseOp::Dropped { id } => *id,
        }
    }
}

/// One delivery of intent `intent_id` of shard `from_shard`'s database.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IntentDelivery {
    pub from_shard: ShardId,
    pub intent_id: u64,
    pub op: InverseOp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_round_trip_and_read_as_json() {
        let op = InverseOp::Remove { from: 1, atype: "friend".into(), to: 2 };
        let json = serde_json::to_string(&op).unwrap();
        assert_eq!(json, r#"{"op":"remove","from":1,"atype":"friend","to":2}"#);
        assert_eq!(serde_json::from_str::<InverseOp>(&json).unwrap(), op);
        let d = IntentDelivery { from_shard: 1, intent_id: 7, op: InverseOp::Dropped { id: 3 } };
        assert_eq!(crate::codec::decode::<IntentDelivery>(&crate::codec::encode(&d)).unwrap(), d);
    }
}
