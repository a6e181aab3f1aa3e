//! Cross-shard inverse intents: the rules for delivering them (issue 15's next step; the
//! running node does not use this yet).
//!
//! An association between entities of two shards lives in its `from` entity's shard; its
//! inverse (`friend`↔`friend`, `likes`↔`likedby`, …) belongs to the other shard, whose
//! leader and database the forward transaction cannot reach. The plan:
//!
//! 1. The forward transaction writes, with the association, an **intent** row in its own
//!    database: the inverse change, for the other shard. Committed together, so an intent
//!    exists exactly when its forward change does.
//! 2. The shard's leader **delivers** each undelivered intent to the other shard's leader,
//!    which applies it in a transaction that also records the intent's id — a redelivery
//!    finds the id and changes nothing — and answers.
//! 3. On the answer, the sender **marks** the intent delivered in its database.
//!
//! At least once (2, retried until answered, reloaded from the database by every new
//! leader) and idempotent (the recorded id) make exactly once, across leader changes on
//! both sides. [`Courier`] is step 2–3 at the sender as a pure state machine, the way the
//! election and the invalidation log are; `sim` (tests) drives it through leader crashes,
//! a receiving shard without a leader for a while, and a network that loses, duplicates and
//! delays, against a model of both databases, and checks that every intent takes effect
//! exactly once and none is marked before it took effect. Still to build: the intent and
//! applied-intent tables, the `ApplyIntent` write at the receiving leader, the delivery
//! task around the courier, and routing cross-shard associations through them.

pub mod courier;
#[cfg(test)]
mod sim;

pub use courier::{Answer, Courier, CourierBug, Input, Intent, IntentId, Output};
