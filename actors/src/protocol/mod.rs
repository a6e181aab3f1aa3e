//! A node's whole protocol as one pure state machine: [`NodeCore`] steps the election core
//! ([`crate::election`]) and the invalidation log ([`crate::invalidation`]) together.
//! Events in ([`Event`]: messages, ticks, the store's results), commands out
//! ([`Command`]: sends, cache invalidations, answers to writes, what to persist). The
//! node's protocol actor only delivers events and performs commands.
//!
//! - `core`: [`NodeCore`] and the rules that tie the two halves: an ack earns a lease
//!   only if the log allows it; a heartbeat carries the log's window; a new term in
//!   office starts a log that is not ready until the outbox is replayed; an office that
//!   ends answers its waiting writes as unconfirmed.
//! - `signals`: [`Event`], [`Command`], [`WriteAnswer`].
//! - `sim` (tests only): the deterministic simulation of whole clusters — these cores,
//!   a cache per node ([`crate::cache::CacheCore`]), a MySQL model with the fence and the
//!   outbox, clients writing and reading — over a faulty network, checking the history.

mod core;
mod signals;

#[cfg(test)]
mod sim;

pub use self::core::{NodeCore, Reject};
pub use self::signals::{BatchedWrite, Command, Event, WriteAnswer};
