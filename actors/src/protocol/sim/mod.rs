//! The deterministic simulation of whole clusters (tests only): [`NodeCore`]s with their
//! caches and stores, clients writing and reading, and a MySQL model with the fence and
//! the outbox, over a network with seeded delays (some longer than the lease and the
//! election timeout), loss, duplication, reordering, symmetric and one-way partitions,
//! nodes cut off from their peers for about a lease, stalled processes, crashes,
//! restarts of a node's whole actor tree, leadership transfers, outboxes that outgrow
//! the heartbeat window, and per-node clock drift — on one global simulated clock.
//!
//! It checks the history as it happens: no read that began after a write was
//! acknowledged returns an older version; every acknowledged write was committed; never
//! two leaders of one term. After the faults heal: a converged cluster within the
//! liveness bound, and every node serving every entity at its version in MySQL.
//!
//! - `cluster`: the simulated cluster, network, clients and faults.
//! - `db`: the MySQL model. `history`: the clients' history and its checker.
//!
//! `PROTOCOL_SIM_SEEDS=N` runs N seeds per chaos test instead of the default;
//! `PROTOCOL_SIM_SEED=S` replays one seed with a trace of every event.
//!
//! [`NodeCore`]: crate::protocol::NodeCore

mod cluster;
mod db;
mod history;

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use self::cluster::{election_config, Fault, Opts, RuntimeBug, Sim, Stats, ELECTION_MAX};
use crate::invalidation::PlantedBug;
use crate::simnet::{ms, rand_dur};

/// Once the network heals, every node is up and serving under one leader within this
/// (the restart quarantine, then up to ten election timeouts).
fn liveness_bound() -> Duration {
    election_config("n0").restart_quarantine() + ELECTION_MAX * 10
}

fn seeds(default: u64, seed_of: impl Fn(u64) -> u64) -> (Vec<u64>, bool) {
    crate::simnet::seeds("PROTOCOL_SIM", default, seed_of)
}

/// Runs `scenario` over the seeds, panicking with the first failure (which names the
/// seed to replay); returns the summed counters.
fn run(default: u64, seed_of: impl Fn(u64) -> u64, scenario: impl Fn(u64, bool) -> Result<Stats, String>) -> Stats {
    crate::simnet::run_seeds("PROTOCOL_SIM", default, seed_of, scenario, Stats::add)
}

/// After the heal: converged within the bound, then a second of client traffic, then
/// quiet, then every node serves every entity at its MySQL version, and no acknowledged
/// write is missing from MySQL.
fn heal_and_check(sim: &mut Sim) -> Result<(), String> {
    sim.heal();
    let healed_at = sim.now;
    if !sim.run_until(healed_at + liveness_bound(), Sim::converged) {
        sim.fail(&format!("no converged cluster within {:?} of the heal", liveness_bound()));
    }
    sim.result()?;
    sim.run_until(sim.now + ms(1000), |_| false);
    sim.clients_on = false;
    // Let the operations in flight end: clients give up after 1.5 s, but a request may
    // still be on the wire for up to 3 s (the longest delay the weather makes).
    sim.run_until(sim.now + ms(3100), |_| false);
    sim.result()?;
    sim.check_converged_reads(ms(3000));
    for e in 0..sim.db().entities() {
        let acked = sim.history().newest_acked(e);
        if sim.db().version(e) < acked {
            let what = format!("entity {e}: v{acked} was acknowledged, MySQL has v{}", sim.db().version(e));
            sim.fail(&what);
        }
    }
    sim.result()
}

/// Random faults for 2–8 s, then heal and check.
fn chaos(seed: u64, trace: bool, opts: Opts) -> Result<Stats, String> {
    let mut sim = Sim::new(seed, opts, trace);
    let faults_end = rand_dur(&mut StdRng::seed_from_u64(seed ^ 0x5eed), ms(2000), ms(8000));
    sim.plan_chaos(faults_end);
    sim.run_until(faults_end, |_| false);
    sim.result()?;
    heal_and_check(&mut sim)?;
    Ok(sim.stats())
}

/// Odd seeds run five nodes, even seeds three.
fn cluster_size(seed: u64) -> usize {
    [3, 5][(seed % 2) as usize]
}

/// Seeds per chaos test (four tests): 4,000 in all by default.
const CHAOS_SEEDS: u64 = 1000;

fn chaos_test(offset: u64) -> Stats {
    run(CHAOS_SEEDS, |k| 4 * k + offset, |seed, trace| chaos(seed, trace, Opts::new(cluster_size(seed))))
}

#[test]
fn protocol_sim_chaos_a() {
    eprintln!("protocol sim chaos a: {:?}", chaos_test(0));
}

#[test]
fn protocol_sim_chaos_b() {
    eprintln!("protocol sim chaos b: {:?}", chaos_test(1));
}

#[test]
fn protocol_sim_chaos_c() {
    eprintln!("protocol sim chaos c: {:?}", chaos_test(2));
}

#[test]
fn protocol_sim_chaos_d() {
    eprintln!("protocol sim chaos d: {:?}", chaos_test(3));
}

/// A calm cluster that converged, with every node past reading the membership.
fn converged(seed: u64, opts: Opts, trace: bool) -> Result<Sim, String> {
    let mut sim = Sim::new(seed, opts, trace);
    if !sim.run_until(liveness_bound(), |s| s.now >= ms(1500) && s.converged()) {
        sim.fail("a calm cluster did not converge within the bound");
    }
    sim.result()?;
    Ok(sim)
}

/// One follower is cut off from its peers (clients still reach it) again and again, each
/// time for about a lease bound — a little less, longer than the bound but shorter than
/// the election timeout, a little longer — while clients write and read everywhere.
/// Reads at the leader and the other followers must never be refused.
fn cut_follower_repeatedly(seed: u64, trace: bool, opts: Opts) -> Result<Stats, String> {
    let mut sim = converged(seed, opts, trace)?;
    let Some(leader) = sim.current_leader() else {
        return Err(format!("seed {seed}: no leader"));
    };
    let n = sim.n();
    let victim = (leader + 1 + (seed as usize % (n - 1))) % n;
    sim.watch_availability = true;
    sim.unwatched = vec![victim];
    let bound = election_config("n0").lease_bound_span();
    let mut t = sim.now;
    let end = sim.now + ms(10_000);
    while t < end {
        let lasts = rand_dur(&mut sim.rng, bound - ms(60), cluster::ELECTION_MIN + ms(60));
        sim.push_fault(t, Fault::Split(1 << victim));
        sim.push_fault(t + lasts, Fault::Unsplit(1 << victim));
        t += lasts + rand_dur(&mut sim.rng, ms(300), ms(900));
    }
    sim.run_until(end, |_| false);
    sim.result()?;
    if sim.current_leader() != Some(leader) {
        sim.fail("the leader changed although it and a majority stayed connected");
    }
    if let Some(first) = sim.unavailable_reads.first().cloned() {
        let what = format!("{} reads refused at connected nodes, e.g. {first}", sim.unavailable_reads.len());
        sim.fail(&what);
    }
    sim.result()?;
    heal_and_check(&mut sim)?;
    Ok(sim.stats())
}

/// The outbox cannot be pruned, and the leader is cut off from its peers (clients and
/// MySQL still reach it) for long enough that the others elect a new leader, which must
/// replay the newest rows of an outbox longer than the heartbeat window.
fn isolate_leader_over_a_long_outbox(seed: u64, trace: bool, opts: Opts) -> Result<Stats, String> {
    let mut sim = converged(seed, opts, trace)?;
    sim.fault(Fault::PruneFails(true));
    for _ in 0..3 {
        let lasts = rand_dur(&mut sim.rng, ms(1500), ms(3000));
        sim.fault(Fault::IsolateLeader { lasts });
        sim.run_until(sim.now + lasts + ms(1500), |_| false);
        sim.result()?;
    }
    heal_and_check(&mut sim)?;
    Ok(sim.stats())
}

/// Over a slow network, followers' whole actor trees restart every few hundred
/// milliseconds while clients keep one entity busy: fills of one incarnation answer
/// after the next one has started.
fn restart_followers_over_a_slow_network(seed: u64, trace: bool, mut opts: Opts) -> Result<Stats, String> {
    opts.entities = 1;
    let mut sim = converged(seed, opts, trace)?;
    let slow =
        crate::simnet::Weather { delay_max: ms(100), long: 0.05, long_max: ms(1500), ..crate::simnet::Weather::CALM };
    sim.fault(Fault::Weather(slow));
    let end = sim.now + ms(8000);
    while sim.now < end {
        let next = sim.now + rand_dur(&mut sim.rng, ms(150), ms(600));
        sim.run_until(next, |_| false);
        sim.result()?;
        if let Some(l) = sim.current_leader() {
            let n = sim.n();
            let f = (l + 1 + sim.rng.random_range(0..n - 1)) % n;
            sim.fault(Fault::Crash(f));
            sim.fault(Fault::Restart(f));
        }
    }
    heal_and_check(&mut sim)?;
    Ok(sim.stats())
}

/// Five nodes; the leader and one follower are split from the other three (clients
/// reach everyone). The follower keeps serving under the old leader's lease for a while
/// after the majority has elected a new leader, which must not answer a write until
/// that lease has certainly lapsed.
fn split_leader_with_a_follower(seed: u64, trace: bool, mut opts: Opts) -> Result<Stats, String> {
    opts.nodes = 5;
    let mut sim = converged(seed, opts, trace)?;
    for _ in 0..2 {
        let Some(l) = sim.current_leader() else {
            break;
        };
        let f = (l + 1 + sim.rng.random_range(0..4)) % 5;
        let mask = (1u32 << l) | (1u32 << f);
        let lasts = rand_dur(&mut sim.rng, ms(1500), ms(3000));
        sim.fault(Fault::Split(mask));
        sim.run_until(sim.now + lasts, |_| false);
        sim.fault(Fault::Unsplit(mask));
        sim.run_until(sim.now + ms(1500), |_| false);
        sim.result()?;
    }
    heal_and_check(&mut sim)?;
    Ok(sim.stats())
}

const SCENARIO_SEEDS: u64 = 100;

#[test]
fn protocol_sim_a_follower_cut_for_about_a_lease_never_serves_stale_and_others_keep_serving() {
    let s = run(
        SCENARIO_SEEDS,
        |k| 10_000 + k,
        |seed, trace| cut_follower_repeatedly(seed, trace, Opts::new(cluster_size(seed))),
    );
    eprintln!("cut follower: {s:?}");
}

#[test]
fn protocol_sim_a_new_leader_replays_the_newest_rows_of_a_long_outbox() {
    let s = run(
        SCENARIO_SEEDS,
        |k| 20_000 + k,
        |seed, trace| isolate_leader_over_a_long_outbox(seed, trace, Opts::new(cluster_size(seed))),
    );
    eprintln!("isolated leader, long outbox: {s:?}");
    assert!(s.max_outbox > cluster::WINDOW_MAX, "the outbox never outgrew the window: {s:?}");
}

#[test]
fn protocol_sim_a_new_leader_waits_out_the_leases_of_an_old_leaders_follower() {
    let s = run(SCENARIO_SEEDS, |k| 50_000 + k, |seed, trace| split_leader_with_a_follower(seed, trace, Opts::new(5)));
    eprintln!("leader split with a follower: {s:?}");
}

#[test]
fn protocol_sim_restarted_followers_never_take_an_earlier_incarnations_fill() {
    let s = run(
        SCENARIO_SEEDS,
        |k| 30_000 + k,
        |seed, trace| restart_followers_over_a_slow_network(seed, trace, Opts::new(cluster_size(seed))),
    );
    eprintln!("restarting followers: {s:?}");
}

/// The scenario that exposes each planted defect, and how many seeds it may take.
type Scenario = fn(u64, bool, Opts) -> Result<Stats, String>;

/// Runs `scenario` with a planted defect until the simulation reports a violation;
/// the first seed that did, within `budget` seeds.
fn first_caught(scenario: Scenario, budget: u64, plant: impl Fn(&mut Opts)) -> Option<(u64, String)> {
    (0..budget).find_map(|k| {
        let seed = 900_000 + k;
        let mut opts = Opts::new(cluster_size(seed));
        plant(&mut opts);
        scenario(seed, false, opts).err().map(|e| (seed, e))
    })
}

/// The leader of a calm five-node cluster crashes while clients write: how long until
/// the first write sent after the crash is acknowledged. A new leader knows that the
/// nodes that voted for it, and the leader it followed in the term just before, hold no
/// lease any more, so its first write needs no wait for leases to lapse.
fn first_write_after_leader_crash(seed: u64, trace: bool) -> Result<Duration, String> {
    // A probe writes every 10 ms from the crash on (regular clients with a write in
    // flight at the crashed leader wait for their timeout, as real ones do).
    let opts = Opts { probes: 1, slow_writes: false, ..Opts::new(5) };
    let mut sim = converged(seed, opts, trace)?;
    let wait = rand_dur(&mut sim.rng, ms(500), ms(1500));
    sim.run_until(sim.now + wait, |_| false);
    sim.result()?;
    let crashed_at = sim.now;
    sim.fault(Fault::CrashLeader { down: ms(60_000) });
    let first =
        |s: &Sim| s.write_acks.iter().find(|(sent, _)| *sent > crashed_at).map(|(_, acked)| *acked - crashed_at);
    while sim.now < crashed_at + ms(5000) && first(&sim).is_none() && !sim.failed() {
        sim.probe_write(0);
        sim.run_until(sim.now + ms(10), |_| false);
    }
    sim.result()?;
    first(&sim).ok_or_else(|| format!("seed {seed}: no write acknowledged within 5 s of the crash"))
}

#[test]
fn protocol_sim_the_first_write_after_a_leader_crash_waits_for_no_lease() {
    let (seeds, trace) = seeds(SCENARIO_SEEDS, |k| 40_000 + k);
    let mut by_seed: Vec<(Duration, u64)> = seeds
        .into_iter()
        .map(|s| {
            let t = first_write_after_leader_crash(s, trace).unwrap_or_else(|e| panic!("{e}"));
            (t, s)
        })
        .collect();
    by_seed.sort();
    eprintln!("slowest: {:?}", by_seed.iter().rev().take(3).collect::<Vec<_>>());
    let times: Vec<Duration> = by_seed.iter().map(|(t, _)| *t).collect();
    let pct = |p: usize| times[(times.len() * p / 100).min(times.len() - 1)];
    let (p50, p95, max) = (pct(50), pct(95), times[times.len() - 1]);
    eprintln!("first acknowledged write after a leader crash: p50 {p50:?}, p95 {p95:?}, max {max:?}");
    // Typically an election timeout less the time since the last heartbeat, and a few
    // round trips. Waiting for a lease bound on top would add about 680 ms to every
    // trial; a split vote adds a short campaign round to a few.
    assert!(p50 < ms(1000), "p50 {p50:?}: {times:?}");
    let bound = cluster::ELECTION_MAX.mul_f64(1.0 + cluster::DRIFT) + ms(200);
    assert!(p95 < bound, "p95 {p95:?} >= {bound:?}: {times:?}");
}

/// A defect planted in a core or in the simulated runtime.
#[derive(Clone, Copy, Debug)]
enum Plant {
    Core(PlantedBug),
    Runtime(RuntimeBug),
}

/// Negative controls: each defect the protocol must not have is planted in turn, and
/// the scenario built to expose it must report a violation within its budget of seeds.
/// A simulation that finds nothing then means something.
#[test]
fn protocol_sim_catches_every_planted_bug() {
    if std::env::var("PROTOCOL_SIM_SEED").is_ok() {
        return;
    }
    let cases: [(Plant, &str, Scenario, u64); 9] = [
        (
            Plant::Core(PlantedBug::ForgetEarlierLeases),
            "leader split with a follower",
            split_leader_with_a_follower,
            100,
        ),
        (Plant::Core(PlantedBug::AnswerUncovered), "cut follower", cut_follower_repeatedly, 30),
        (Plant::Core(PlantedBug::ConfirmWithGap), "cut follower", cut_follower_repeatedly, 60),
        (Plant::Core(PlantedBug::AnswerUnchangedAtOnce), "cut follower", cut_follower_repeatedly, 60),
        (Plant::Core(PlantedBug::BatchLastKeysOnly), "cut follower", cut_follower_repeatedly, 60),
        (Plant::Core(PlantedBug::SkipReadyGate), "isolated leader", isolate_leader_over_a_long_outbox, 60),
        (Plant::Runtime(RuntimeBug::LoadOldest), "isolated leader", isolate_leader_over_a_long_outbox, 60),
        (Plant::Runtime(RuntimeBug::InvalidateAfterSend), "cut follower", cut_follower_repeatedly, 60),
        (
            Plant::Runtime(RuntimeBug::FetchIdsRestart),
            "restarting followers",
            restart_followers_over_a_slow_network,
            400,
        ),
    ];
    let mut missed = Vec::new();
    for (plant, name, scenario, budget) in cases {
        let caught = first_caught(scenario, budget, |o| match plant {
            Plant::Core(b) => o.core_bug = Some(b),
            Plant::Runtime(b) => o.runtime_bug = Some(b),
        });
        match caught {
            Some((seed, report)) => eprintln!(
                "planted {plant:?} ({name}): caught at seed {seed}: {}",
                report.lines().next().unwrap_or_default()
            ),
            None => missed.push(format!("{plant:?} in {budget} seeds of {name}")),
        }
    }
    assert!(missed.is_empty(), "planted bugs the simulation did not catch: {missed:?}");
}
