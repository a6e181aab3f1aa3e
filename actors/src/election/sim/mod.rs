//! A deterministic simulation of whole clusters (tests only): N election cores over an
//! in-memory network with seeded delays (some longer than the lease and the election
//! timeout), loss, duplication, reordering, symmetric and one-way partitions, crashes
//! and restarts, and per-node clock drift, on one global simulated clock.
//!
//! A partition drops a message when it is sent; one already in flight still arrives.
//!
//! After every event it checks: never two leaders of one term, ever (votes are
//! persisted across restarts); no node holds its leader lease
//! while another leads the same or a higher term; and no follower's read lease ends
//! after the moment from which a leader of the same or a higher term considers it
//! lapsed (compared in real time, so a violation that would fall between two events is
//! caught too). After the faults heal it checks liveness within the bound stated in the
//! module docs. Dedicated scenarios check PreVote, CheckQuorum, leadership transfer, and
//! that the restart quarantine is what keeps a restarted voter from breaking a lease.
//!
//! `ELECTION_SIM_SEEDS=N` runs N seeds per test instead of the default;
//! `ELECTION_SIM_SEED=S` replays one seed with a trace of every event.
//!
//! - `cluster`: the simulated nodes, their network (built on `crate::simnet`: clocks,
//!   links, weather, the event timeline), the faults and the event loop.
//! - `checks`: the safety invariants checked after every event, and convergence.
//! - `scenarios`: the tests — seeded chaos, and the dedicated scenarios.

mod checks;
mod cluster;
mod scenarios;

use std::time::Duration;

use super::ElectionConfig;

const HEARTBEAT: Duration = Duration::from_millis(100);
const ELECTION_MIN: Duration = Duration::from_millis(750);
const ELECTION_MAX: Duration = Duration::from_millis(1000);
const DRIFT: f64 = 0.05;

fn config(id: &str) -> ElectionConfig {
    ElectionConfig {
        id: id.to_string(),
        heartbeat: HEARTBEAT,
        election_min: ELECTION_MIN,
        election_max: ELECTION_MAX,
        lease: ElectionConfig::default_lease(ELECTION_MIN, DRIFT),
        drift: DRIFT,
    }
}
