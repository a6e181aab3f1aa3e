//! The election core: Raft's leader election without a log, with PreVote, CheckQuorum,
//! leadership transfer and the read leases of DESIGN.md's Consistency section, as a pure
//! state machine. No I/O, no async, no clock reads: the election actor feeds it
//! [`Input`]s with `now` (a monotonic reading since an arbitrary origin of the node's
//! own) and performs the [`Output`]s; randomness comes from a seed given at construction.
//!
//! - [`config`]: [`ElectionConfig`], its validation and the bounds derived from it.
//! - [`signals`]: [`Input`], [`Output`] and [`FollowerView`].
//! - `core`: [`ElectionCore`] — state, `step`, the follower side, the queries.
//! - `campaign`: election timeout, PreVote, real votes, `TimeoutNow`.
//! - `leading`: heartbeats, answering acks, CheckQuorum, reachability, transfer.
//! - `lease`: a follower's lease and a leader's tenure (its lease, its bounds on
//!   followers' leases).
//! - `tests` (tests only): the rules and the lease arithmetic, one core at a time.
//! - `sim` (tests only): a deterministic simulation of whole clusters over a faulty
//!   network, thousands of seeds per run (`ELECTION_SIM_SEEDS=N` for more,
//!   `ELECTION_SIM_SEED=S` to replay one with a trace).
//!
//! # Rules
//!
//! - Terms, one vote per term; a randomized election timeout in
//!   `[election_min, election_max)`, reset by a heartbeat from the current leader and by
//!   granting a vote. On timeout a follower becomes a pre-candidate and asks for
//!   pre-votes for `term + 1` without changing its term; a majority of pre-votes makes it
//!   a candidate (`term += 1`, votes for itself), a majority of votes makes it leader, and
//!   it heartbeats at once and every `heartbeat`. A pre-vote round lasts one election
//!   timeout, a real one less (see *Campaign rounds*).
//! - Majorities are over the members: the `Membership` input (the node's configured
//!   `MEMBERS` and Redis) and this node — never the member list a heartbeat carries,
//!   which is information, not authority. The set only grows, so a node never campaigns
//!   on a smaller set than it has seen; before its first `Membership` it never campaigns.
//!   Only members' votes and acks count (and the protocol core drops messages naming
//!   anyone else, see `protocol`).
//! - Lease stickiness: a node refuses pre-votes and votes while
//!   `now < last heartbeat received + election_min`, and a leader refuses them while it
//!   leads, unless the request carries `transfer`. A refused request changes nothing, not
//!   even the term, so a node returning from a partition cannot depose a healthy leader.
//!   Pre-votes are granted only for a term above the voter's.
//! - A heartbeat, vote request that is not refused, vote reply, ack or ack confirmation of
//!   a higher term makes the node a follower of that term. Learning a term from its
//!   leader's heartbeat bars voting in it. A leader that sees a heartbeat of its own
//!   term from another leader steps down (that would be a safety violation). A
//!   heartbeat of a lower term is answered with an ack carrying the higher term (and no
//!   number, so no lease), so a deposed leader steps down at once.
//! - A follower follows one leader per term; a heartbeat of that term from another is
//!   ignored.
//! - CheckQuorum: a leader steps down when fewer than a majority (counting itself) acked
//!   within `election_max` ([`ElectionConfig::check_quorum_window`]); a follower with no
//!   ack within that window is reported unreachable.
//! - Transfer: on `TransferLeadership` the leader steps down at once (no more heartbeats,
//!   no lease) and sends `TimeoutNow` to the follower with the latest ack (highest
//!   applied seq breaking ties), which campaigns at once, skipping PreVote, with
//!   `transfer` set so stickiness does not stop its voters.
//!
//! # Leases, and why they are safe
//!
//! `drift` bounds how much faster one node's clock can run than another's. The
//! settings satisfy `lease * (1 + drift)^2 < election_min` ([`ElectionConfig::validate`]).
//!
//! - **Leader.** It holds its lease while `now < h + lease`, `h` being the send time of
//!   the latest heartbeat that a majority acked (or a later one; the leader counts as
//!   acking each heartbeat as it sends it). Every node of that majority received the
//!   heartbeat after `h` and then refused votes for `election_min` of its own time,
//!   which is longer than `lease` of the leader's time even with drift. Any new leader
//!   needs a vote from one of them, so it cannot take office while the old lease holds.
//! - **Follower.** Every heartbeat from its leader, and every `AckNow`, is answered with
//!   a numbered ack whose send time the follower remembers. When the leader confirms ack
//!   `k`, the follower's lease runs until `sent[k] + lease` (its own clock), so the lease
//!   is never longer than one `lease` from a moment before the leader received the ack,
//!   whatever the delays. Any change of term or leader drops it.
//! - **Leader's bound on a follower.** The leader confirms only under its own lease, and
//!   bounds follower `f`'s lease by `receipt of f's latest confirmed ack +
//!   lease * (1 + drift)` on its own clock, which ends no earlier than the follower's
//!   lease. A lease confirmed by an earlier leader came from an ack sent before that
//!   confirmation, which came before the earlier leader's lease ended, hence before this
//!   office began: it ends before `office + lease * (1 + drift)`, the bound the leader
//!   starts from unless it knows the follower dropped every earlier lease (see below). So
//!   when a leader's bound on `f` has passed, `f` holds no lease from it or from any
//!   earlier leader — which is what lets a write be answered once every follower acked its
//!   invalidation or was bounded out.
//!
//! # Restarts
//!
//! A node persists its term and vote ([`Output::Persist`], performed before any later
//! output of the step) and comes back with them ([`ElectionCore::new`]), so it never votes
//! twice in a term and no term ever has two leaders. What it does forget is the
//! heartbeats it received, which had it refuse votes for `election_min` after each (lease
//! stickiness). It therefore refuses votes and pre-votes, and does not campaign, for
//! [`ElectionConfig::restart_quarantine`] (`election_min * (1 + drift)`) after it starts —
//! except, like stickiness, for a leadership transfer: the leader that hands over holds
//! no lease. It follows and acks a leader at once. [`Input::ObservedTerm`] still lets the runtime
//! move the core past a term it found elsewhere (such as the store's fence).
//!
//! # Campaign rounds
//!
//! A pre-vote round lasts an election timeout. A real campaign round lasts a random
//! `[election_min / 4, election_min / 2)`, and ends as soon as its refusals make a win
//! impossible: nobody leads its term, so no lease needs a longer wait, and the randomness
//! separates candidates whose votes split. The node then pre-votes anew.
//!
//! # A new leader's bound on earlier leases
//!
//! On taking office a leader bounds every follower's lease by `office + lease * (1 +
//! drift)`, since one confirmed by an earlier leader could last that long — except for
//! the followers that voted for it (they moved to its term, dropping every lease, before
//! they voted) and the leader of the term just before (it held only its leader lease,
//! which ended before this office began); and the bound on any follower drops to what this
//! leader confirmed once that follower acks in this term. So after a leader dies, the new
//! one's first write waits for no lease.

//! # Timing bounds (checked by the simulation)
//!
//! - CheckQuorum: a leader cut off from a majority steps down `election_max` (its clock)
//!   after the last acks it received.
//! - Liveness: once the network heals (links back, every crashed node restarted), every
//!   node follows one leader under a read lease within
//!   `restart_quarantine + 10 * election_max` (10.8 s with the defaults).
//! - Transfer: after `TransferLeadership` in a healthy network the new leader takes
//!   office within `election_min` (in practice a few round trips), with no election
//!   timeout.

pub mod config;
pub mod signals;

mod campaign;
mod core;
mod leading;
mod lease;

#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;

pub use self::config::{ElectionConfig, MAX_TERM};
pub use self::core::ElectionCore;
pub use self::signals::{FollowerView, Input, Output, PersistedVote};
