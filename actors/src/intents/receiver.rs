//! The receiver's side of intent delivery as a pure decision: given what the receiving
//! shard's transaction read about an intent (was it applied before, the row's version,
//! whether the far end was dropped, whether the near end exists), apply it, skip it, or
//! refuse it. The store (`store/intents.rs`) reads those facts and performs the decision
//! in the same transaction; the simulation (`sim.rs`) uses the same function against its
//! model of the receiving database.
//!
//! The rules:
//! - **once**: an intent applied before is skipped (a redelivery);
//! - **newest wins**: every intent for one row comes from the pair's owner shard in its
//!   commit order, so an intent at or below the row's version (the last intent applied to
//!   it) is older than what the row already reflects, and is skipped;
//! - **drops are final**: a put of a row to an entity its shard dropped is skipped (ids are
//!   never reused, so it can only be older than the drop);
//! - **no row from nothing**: a put of a row from an entity that is not here is refused
//!   (the sender removes its own row of the pair), and so is a check of a one-way row to
//!   one (the sender removes that row).
//!
//! A skip answers "applied": the intent took effect, earlier or through a later one.

use super::courier::IntentId;

/// What an intent does at the receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Put a row (from one of the receiver's entities to one of the sender's).
    Put,
    /// Remove a row.
    Remove,
    /// The sender deleted an entity: drop every row to it.
    Drop,
    /// The sender wrote a one-way row to one of the receiver's entities: it must exist.
    Check,
}

/// What the applying transaction read before deciding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Seen {
    /// The intent's id was already recorded as applied.
    pub applied_before: bool,
    /// The last intent applied to the row (puts and removes).
    pub version: Option<IntentId>,
    /// The row's far end (the sender's entity) was dropped (puts).
    pub far_end_dropped: bool,
    /// The row's near end (the receiver's entity) exists (puts).
    pub near_end_exists: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Change the row (and record the intent as its version).
    Apply,
    /// Change nothing: it took effect before, or a later intent did.
    Skip,
    /// The near end is gone: refuse (nothing recorded).
    Refuse,
}

/// A receiver rule broken on purpose, for the simulation's negative controls. (Ignoring
/// `applied_before` alone is no bug one can see: a redelivered put or removal is at the
/// row's version, so newest-wins skips it too, and a drop applied twice drops nothing more.
/// The applied-intent record is what shows, after the fact, that each applied once.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReceiverBug {
    /// Apply an intent older than the row's version (one arriving late, for the first time).
    IgnoreVersions,
}

/// The decision for intent `id` of kind `kind`, given what was `seen`.
pub fn decide(kind: Kind, id: IntentId, seen: Seen, bug: Option<ReceiverBug>) -> Decision {
    if seen.applied_before {
        return Decision::Skip;
    }
    let stale = seen.version.is_some_and(|v| v >= id) && bug != Some(ReceiverBug::IgnoreVersions);
    match kind {
        Kind::Drop => Decision::Apply,
        Kind::Check if seen.near_end_exists => Decision::Skip,
        Kind::Check => Decision::Refuse,
        Kind::Remove if stale => Decision::Skip,
        Kind::Remove => Decision::Apply,
        Kind::Put if stale || seen.far_end_dropped => Decision::Skip,
        Kind::Put if !seen.near_end_exists => Decision::Refuse,
        Kind::Put => Decision::Apply,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rules() {
        let fresh = Seen { near_end_exists: true, ..Seen::default() };
        assert_eq!(decide(Kind::Put, 5, fresh, None), Decision::Apply);
        assert_eq!(decide(Kind::Put, 5, Seen { applied_before: true, ..fresh }, None), Decision::Skip);
        assert_eq!(decide(Kind::Put, 5, Seen { version: Some(5), ..fresh }, None), Decision::Skip);
        assert_eq!(decide(Kind::Put, 5, Seen { version: Some(4), ..fresh }, None), Decision::Apply);
        assert_eq!(decide(Kind::Put, 5, Seen { far_end_dropped: true, ..fresh }, None), Decision::Skip);
        assert_eq!(decide(Kind::Put, 5, Seen::default(), None), Decision::Refuse);
        assert_eq!(decide(Kind::Remove, 5, Seen { version: Some(7), ..Seen::default() }, None), Decision::Skip);
        assert_eq!(decide(Kind::Remove, 5, Seen::default(), None), Decision::Apply);
        assert_eq!(decide(Kind::Drop, 5, Seen::default(), None), Decision::Apply);
        assert_eq!(decide(Kind::Check, 5, fresh, None), Decision::Skip);
        assert_eq!(decide(Kind::Check, 5, Seen::default(), None), Decision::Refuse);
        assert_eq!(decide(Kind::Drop, 5, Seen { applied_before: true, ..Seen::default() }, None), Decision::Skip);
    }
}
