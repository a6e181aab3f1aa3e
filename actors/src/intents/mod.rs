//! Cross-shard intents: the rules for delivering them and for applying them, as pure
//! cores with a simulation of their own.
//!
//! An association's two rows live in their `from` entities' shards; when those differ,
//! the pair's owner (one end, [`instaface_bus::shards::owner_of`]) runs every write of it:
//!
//! 1. The owner's transaction writes its own row and an **intent** row in its database —
//!    the other row's change, for the other shard. Committed together, so an intent exists
//!    exactly when its change does. Deleting an entity writes a drop for every other shard.
//! 2. The owner's leader **delivers** each undelivered intent to the other shard's leader
//!    (`node::delivery`), which applies it as a write (`store/intents.rs`) in a transaction
//!    that also records the intent's id and the row's version, and answers.
//! 3. On the answer, the sender **marks** the intent delivered in its database.
//!
//! At least once (2, retried until answered, reloaded from the database by every new
//! leader) and idempotent (the recorded id) make exactly once, across leader changes on
//! both sides; the row versions make the order of arrival irrelevant (an older intent never
//! undoes a newer one). [`Courier`] is steps 2–3 at the sender, [`receiver::decide`] the
//! receiver's rules, both pure, the way the election and the invalidation log are; `sim`
//! (tests) drives them through sender crashes, a receiving shard without a leader for a
//! while, and a network that loses, duplicates, delays and reorders, against a model of
//! both databases, and checks that every intent takes effect exactly once, none is marked
//! before it took effect, and every row ends as its last committed change left it.
//! `pairs_sim` (tests) checks the owner rule itself: two shards whose leaders crash, writes
//! of both directions of every pair routed by [`instaface_bus::shards::owner_of`], and both
//! rows of every pair ending as its last write left them (routing by `from` is caught).

pub mod courier;
#[cfg(test)]
mod pairs_sim;
pub mod receiver;
#[cfg(test)]
mod sim;

pub use courier::{Answer, Courier, CourierBug, Delivered, Input, Intent, IntentId, Output};
pub use receiver::{decide, Decision, Kind, ReceiverBug, Seen};
