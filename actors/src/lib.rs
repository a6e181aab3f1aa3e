//! The Instaface graph node (`instaface-node`).
//!
//! - [`election`]: the election core — a pure state machine (no I/O, no clock reads) for
//!   Raft-style leader election without a log, with PreVote, CheckQuorum, leadership
//!   transfer and the read leases of DESIGN.md's Consistency section.
//! - [`invalidation`]: the invalidation log — the data-path half of the protocol (window,
//!   coverage, the ack gate, the ready gate at takeover), pure like the election core.
//! - [`protocol`]: [`protocol::NodeCore`], both cores stepped together, and the
//!   simulation that checks them under faults.
//! - [`node`]: the running node — the actors that deliver events to the core and perform
//!   its commands, NATS intake, request handling.
//! - [`store`]: the MySQL graph store — schema and migrations, entities, associations with
//!   their inverses, the invalidation outbox and the leadership fence.
//! - [`cache`]: the cache core — LRU-bounded entries with the bookkeeping that keeps fills
//!   that raced an invalidation out of the cache.
//! - [`query`]: the query planner — template expansion breadth-first, one batch per level.
//! - [`intents`]: cross-shard intents — the sender's delivery rules and the receiver's
//!   rules as pure cores, with their simulation (the node's `delivery` task runs them).

pub mod cache;
pub mod election;
pub mod intents;
pub mod invalidation;
pub mod node;
pub mod protocol;
pub mod query;
#[cfg(test)]
mod simnet;
pub mod store;
