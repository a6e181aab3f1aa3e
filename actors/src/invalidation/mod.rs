//! The invalidation log: the data-path half of the protocol, as pure state — no I/O, no
//! clock of its own, no async. [`crate::protocol::NodeCore`] steps it together with the
//! election core; the node's actors only deliver events and perform commands, and the
//! simulation in `protocol::sim` drives both through thousands of faulty schedules.
//!
//! - `follower`: how a node's `applied_seq` moves — a heartbeat's window, one broadcast
//!   invalidation — and what it must drop from its cache for it.
//! - `leader`: [`LeaderLog`] — the leader's window of retained invalidations, its floor
//!   and latest seq, the writes waiting for coverage, the answered watermark that gates
//!   ack confirmations, the ready gate at takeover, and pruning.
//! - `config`: [`LogConfig`], [`InvalidationMode`] and the [`PlantedBug`]s that negative
//!   controls switch on.
//!
//! # Rules
//!
//! Seqs are the MySQL outbox's: one per committed write that changed something, growing
//! in commit order (the fence row lock serialises writes), possibly with gaps.
//!
//! - **Applied.** A node's `applied_seq` is a prefix: every invalidation with a seq up to
//!   it has been applied to its cache. It moves only when the node knows nothing is
//!   missing in between: a heartbeat says "everything after `floor` up to `seq` is in
//!   this window" (a node at or past `floor` applies the rest and is at `seq`; one behind
//!   `floor` clears its whole cache and is at `seq`), and a broadcast invalidation says
//!   "the seq before this one is `prev_seq`" (a node at `prev_seq` moves to `seq`; one
//!   with a gap only drops the keys). Cache commands are issued before the ack that
//!   reports the new `applied_seq`, and the runtime applies them in order before anything
//!   later reaches the cache.
//! - **Ready gate.** A new leader raises the fence, loads the newest retained outbox
//!   rows (at most `window_max`) and the latest seq, and applies them to its own cache as
//!   a follower would, before it is *ready*. Until then it claims no seq in heartbeats,
//!   serves no read, confirms no ack, and answers no write.
//! - **Coverage.** A write is answered (in `lease` mode) once, for every follower, the
//!   follower acked an `applied_seq` at or past the write's seq, or the leader's bound on
//!   the follower's read lease has passed. Writes are answered in seq order. A write that
//!   changed nothing carries the latest seq it observed and waits for that seq to be
//!   covered the same way: it may have observed a write that is not answered yet.
//! - **Answered watermark.** The leader confirms a follower's ack (which grants a read
//!   lease) only when the ack's `applied_seq` reaches every write the leader has answered
//!   — which starts at the loaded seq on taking office. A follower that missed an
//!   invalidation while cut off (its lease lapsed, so the write was answered without it)
//!   therefore gets no lease until it has caught up, even if it acks later writes.
//! - **Pruning.** The window drops entries every follower has applied, and the oldest
//!   ones past `window_max` (a follower behind the floor clears its cache); the outbox
//!   is pruned through the floor.
//!
//! # Why no read is stale after an acknowledgement
//!
//! Take a write `w` with seq `s`, answered at time `A`, and a read that begins after `A`
//! at node `n`.
//!
//! - `n` is the leader that answered `w`: it invalidated its own cache when `w`
//!   committed, before answering; a value cached later was fetched later.
//! - `n` is a follower serving under a lease confirmed by this leader. If the lease was
//!   confirmed before `A`, `w` waited for `n` to ack `s` (its cache then had the keys
//!   dropped) or for the leader's bound on that lease to pass — and the read began after
//!   `A`, after the lease (the bound covers it within the drift). If the lease was
//!   confirmed after `A`, the confirming ack carried `applied_seq ≥ answered ≥ s`.
//! - `n` serves under a lease from an earlier leader: impossible after `A` — this leader
//!   bounds every such lease (see `election::lease::Tenure::new`), and `w` waited for it.
//! - `n` is a later leader: it loaded the outbox after raising the fence, so it replays
//!   `s` into its own cache before it is ready, and its answered watermark starts at or
//!   past `s`, so its followers get leases only past `s` too.
//! - `n` is a deposed leader: its leader lease ended before any later leader took office,
//!   and `w`'s leader held its own lease when it answered.
//!
//! Fills obey the cache core's rules (`crate::cache`): a fill that raced an invalidation
//! is not cached, and a reader never joins a fetch that started before an invalidation it
//! came after.

mod config;
mod follower;
mod leader;

pub use self::config::{InvalidationMode, LogConfig, PlantedBug};
pub use self::follower::{apply_one, apply_window, CacheEffect};
pub use self::leader::{Covered, LeaderLog, Pending, WriteId};
