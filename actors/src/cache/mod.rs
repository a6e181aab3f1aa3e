//! The cache core: what a node's cache (`node::node_cache`) wraps. Pure and synchronous — no I/O, no
//! clock, no async — so the rules of DESIGN.md's data path can be tested by brute force.
//!
//! - [`CacheCore`] (in `cache_core.rs`): entries bounded by an LRU, single-flight fetches
//!   for misses, per-waiter answers assembled across fetches, and the invalidation rules: a
//!   reader that arrives after an invalidation of a key never joins, nor is answered by, a
//!   fetch that started before it, and a fill that raced an invalidation is not cached.
//! - [`Lru`] (in `lru.rs`): the bounded least-recently-used map under it, the `lru`
//!   crate's list behind the few operations the core uses.
//! - `epochs.rs`: the invalidation clock that decides "invalidated since this fetch
//!   started", kept only as long as a fetch in flight can ask.
//!
//! A sketch of the actor around it:
//!
//! ```
//! use instaface_actors::cache::CacheCore;
//! use instaface_bus::graph::{CacheKey, CacheValue};
//!
//! // W = the reply route of a read, E = the error a failed fill carries.
//! let mut core: CacheCore<&str, String> = CacheCore::new(10_000);
//! let keys = [CacheKey::Entity(1), CacheKey::Entity(2)];
//! let first = core.lookup(&keys, "reader-a");
//! let second = core.lookup(&keys, "reader-b"); // joins the fetch in flight
//! assert!(second.fetch.is_none() && second.joined == 2);
//!
//! let order = first.fetch.expect("both keys missed");
//! // … send a fill for `order.keys`; when its reply comes back:
//! let values = order.keys.iter().map(|_| CacheValue::Entity { entity: None }).collect();
//! let answers = core.complete_fetch_in_order(order.id, Ok(values));
//! assert_eq!(answers.len(), 2); // reply to each answer.waiter with answer.values
//! ```

mod cache_core;
mod epochs;
mod lru;

#[cfg(test)]
mod tests;

pub use self::lru::Lru;
pub use cache_core::{
    value_fits_key, Answer, CacheCore, CacheStats, FetchError, FetchId, FetchOrder, KeyResult, Lookup, WaiterId,
};
