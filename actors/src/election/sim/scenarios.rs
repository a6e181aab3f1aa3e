//! The simulation's tests: seeded chaos on three and five nodes with a liveness bound
//! after the heal, and dedicated scenarios for PreVote, CheckQuorum, leadership transfer
//! and the restart quarantine.

use std::time::Duration;

use instaface_bus::messages::Role;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::cluster::{Fault, Sim, Stats};
use super::{config, ELECTION_MAX, ELECTION_MIN};
use crate::election::{ElectionCore, Input};
use crate::simnet::{ms, rand_dur, Weather};

/// Odd seeds run five nodes, even seeds three.
fn cluster_size(seed: u64) -> usize {
    [3, 5][(seed % 2) as usize]
}

/// The liveness bound once faults heal: every crashed node restarts at the heal, so the
/// restart quarantine comes first, then `10 * election_max`.
fn liveness_bound() -> Duration {
    config("n0").restart_quarantine() + ELECTION_MAX * 10
}

/// Random faults for 3–12 s, then heal and require a converged cluster within the bound.
fn chaos(seed: u64, trace: bool, quarantine: bool) -> Result<Stats, String> {
    let mut sim = Sim::new(seed, cluster_size(seed), trace);
    sim.quarantine = quarantine;
    let faults_end = rand_dur(&mut StdRng::seed_from_u64(seed ^ 0x5eed), ms(3000), ms(12_000));
    sim.plan_chaos(faults_end);
    sim.run_until(faults_end, |_| false);
    sim.result()?;
    sim.heal();
    let healed_at = sim.now;
    if !sim.run_until(healed_at + liveness_bound(), Sim::converged) {
        sim.fail(&format!("no converged leader within {:?} of the heal", liveness_bound()));
    }
    sim.result()?;
    Ok(sim.stats)
}

/// Runs `scenario` over the seeds, panicking with the first failure (whose message
/// names the seed to replay).
fn run(default: u64, seed_of: impl Fn(u64) -> u64, scenario: impl Fn(u64, bool) -> Result<Stats, String>) -> Stats {
    crate::simnet::run_seeds("ELECTION_SIM", default, seed_of, scenario, |t, s| {
        t.events += s.events;
        t.elections += s.elections;
        t.crashes += s.crashes;
    })
}

/// Default seed counts keep the whole election suite well under 30 s in a debug build on
/// two cores.
const CHAOS_SEEDS: u64 = 2000;
const SCENARIO_SEEDS: u64 = 150;

#[test]
fn election_sim_chaos_3_nodes() {
    // Even seeds; a replayed odd seed belongs to the 5-node test.
    let stats = run(
        CHAOS_SEEDS,
        |k| 2 * k,
        |seed, trace| {
            if seed % 2 == 0 {
                chaos(seed, trace, true)
            } else {
                Ok(Stats::default())
            }
        },
    );
    eprintln!("election sim, 3 nodes: {stats:?}");
}

#[test]
fn election_sim_chaos_5_nodes() {
    let stats = run(
        CHAOS_SEEDS,
        |k| 2 * k + 1,
        |seed, trace| {
            if seed % 2 == 1 {
                chaos(seed, trace, true)
            } else {
                Ok(Stats::default())
            }
        },
    );
    eprintln!("election sim, 5 nodes: {stats:?}");
}

/// A calm cluster started at 0, run until it converged (within the bound).
fn calm(seed: u64, trace: bool) -> Result<Sim, String> {
    let mut sim = Sim::new(seed, cluster_size(seed), trace);
    // Converged, and every node has read the membership (within 1.5 s of its start).
    if !sim.run_until(liveness_bound(), |s| s.now >= ms(1500) && s.converged()) {
        sim.fail("a calm cluster did not converge within the bound");
    }
    sim.result()?;
    Ok(sim)
}

/// The leader of a converged cluster, and its term.
fn leader_of(sim: &Sim) -> (usize, u64) {
    let l = sim.current_leader().unwrap_or(0);
    (l, sim.nodes[l].core.as_ref().map_or(0, ElectionCore::term))
}

#[test]
fn election_sim_prevote_returning_node_does_not_raise_the_term() {
    run(
        SCENARIO_SEEDS,
        |k| 10_000 + k,
        |seed, trace| {
            let mut sim = calm(seed, trace)?;
            let n = sim.n();
            let (leader, term) = leader_of(&sim);
            let x = (leader + 1 + sim.rng.random_range(0..n - 1)) % n;
            sim.fault(Fault::Split(1 << x));
            let back = sim.now + rand_dur(&mut sim.rng, ms(3000), ms(10_000));
            sim.run_until(back, |_| false);
            if sim.nodes[x].core.as_ref().map(ElectionCore::term) != Some(term) {
                sim.fail("the cut-off node raised its term");
            }
            sim.fault(Fault::Unsplit(1 << x));
            sim.run_until(back + ms(3000), |_| false);
            let moved = sim.up().find(|(_, c)| c.term() != term).map(|(i, c)| (i, c.term()));
            if let Some((i, t)) = moved {
                let what = format!("{} is at term {t} after the node returned, not {term}", sim.nodes[i].id);
                sim.fail(&what);
            }
            if sim.current_leader() != Some(leader) || !sim.converged() {
                sim.fail("the healthy leader was disturbed by the returning node");
            }
            sim.result()?;
            Ok(sim.stats)
        },
    );
}

#[test]
fn election_sim_check_quorum_steps_a_cut_off_leader_down() {
    run(
        SCENARIO_SEEDS,
        |k| 20_000 + k,
        |seed, trace| {
            let mut sim = calm(seed, trace)?;
            let (leader, term) = leader_of(&sim);
            // Half the seeds cut it off both ways, half only its incoming links (it still
            // heartbeats, but hears no acks).
            let cut_at = sim.now;
            let both = seed % 4 < 2;
            for other in (0..sim.n()).filter(|&o| o != leader) {
                sim.fault(Fault::Cut { from: other, to: leader, both });
            }
            // Acks in flight arrive within the calm weather's delay; then one window of the
            // leader's clock, no longer in real time (simulated clocks run fast, if at all).
            let bound = cut_at + Weather::CALM.delay_max + config("n0").check_quorum_window();
            let stepped_down = sim.run_until(bound, |s| {
                s.nodes[leader].core.as_ref().is_some_and(|c| c.role() != Role::Leader || c.term() != term)
            });
            if !stepped_down {
                sim.fail("the cut-off leader did not step down within election_max");
            }
            // The majority goes on to elect a leader of its own.
            let elected =
                sim.run_until(sim.now + liveness_bound(), |s| s.current_leader().is_some_and(|l| l != leader));
            if !elected {
                sim.fail("the majority elected no new leader");
            }
            sim.result()?;
            Ok(sim.stats)
        },
    );
}

#[test]
fn election_sim_transfer_is_faster_than_an_election_timeout() {
    run(
        SCENARIO_SEEDS,
        |k| 30_000 + k,
        |seed, trace| {
            let mut sim = calm(seed, trace)?;
            // A few acked heartbeats, so the leader has a target.
            sim.run_until(sim.now + ms(300), |_| false);
            let (old, term) = leader_of(&sim);
            let at = sim.now;
            sim.step(old, Input::TransferLeadership { to: None });
            if sim.nodes[old].core.as_ref().is_some_and(|c| c.role() == Role::Leader) {
                sim.fail("the old leader did not step down at once");
            }
            let handed_over = sim.run_until(at + ELECTION_MIN, |s| {
                s.current_leader()
                    .is_some_and(|l| l != old && s.nodes[l].core.as_ref().is_some_and(|c| c.term() == term + 1))
            });
            if !handed_over {
                sim.fail("no new leader within election_min of the transfer");
            }
            sim.result()?;
            Ok(sim.stats)
        },
    );
}

/// Leader `a` holds its lease thanks to `b`'s acks; `c` stops hearing `a` and times out;
/// `b` restarts just before, and stops hearing `a` too. Without the restart quarantine
/// the restarted `b`, which forgot the heartbeats that made it refuse votes, elects `c`
/// while `a`'s lease still holds. With it, every seed is safe.
fn restart_scenario(seed: u64, trace: bool, quarantine: bool) -> Result<Stats, String> {
    let mut sim = Sim::new(seed, 3, trace);
    if !sim.run_until(liveness_bound(), Sim::converged) {
        sim.fail("a calm cluster did not converge within the bound");
    }
    sim.result()?;
    sim.quarantine = quarantine;
    let (a, _) = leader_of(&sim);
    let (b, c) = ((a + 1) % 3, (a + 2) % 3);
    sim.fault(Fault::Cut { from: a, to: c, both: false });
    let crash_at = sim.now + rand_dur(&mut sim.rng, ms(600), ms(740));
    sim.run_until(crash_at, |_| false);
    sim.crash(b);
    sim.restart(b);
    sim.fault(Fault::Cut { from: a, to: b, both: false });
    sim.run_until(crash_at + ms(4000), |_| false);
    sim.result()?;
    Ok(sim.stats)
}

#[test]
fn election_sim_restart_quarantine_protects_leases() {
    run(SCENARIO_SEEDS, |k| 40_000 + k, |seed, trace| restart_scenario(seed, trace, true));
    if std::env::var("ELECTION_SIM_SEED").is_ok() {
        return;
    }
    // The same schedules without the quarantine: the simulation must catch the violation.
    let caught = (40_000..40_000 + SCENARIO_SEEDS).filter(|&s| restart_scenario(s, false, false).is_err()).count();
    assert!(caught > 0, "the simulation caught no violation without the restart quarantine");
    eprintln!("without the restart quarantine: {caught} of {SCENARIO_SEEDS} schedules violate safety");
}
