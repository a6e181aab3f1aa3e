//! The Instaface graph node (`instaface-node`).
//!
//! - [`election`]: the election core — a pure state machine (no I/O, no clock reads) for
//!   Raft-style leader election without a log, with PreVote, CheckQuorum, leadership
//!   transfer and the read leases of DESIGN.md's Consistency section.
//! - [`store`]: the MySQL graph store — schema and migrations, entities, associations with
//!   their inverses, the invalidation outbox and the leadership fence.
//! - [`cache`]: the cache core — LRU-bounded entries with the bookkeeping that keeps fills
//!   that raced an invalidation out of the cache.
//! - [`query`]: the query planner — template expansion breadth-first, one batch per level.

pub mod cache;
pub mod election;
pub mod node;
pub mod query;
pub mod store;
