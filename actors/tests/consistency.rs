//! The headline guarantee checked as a history on real node processes: concurrent
//! clients update and read a few entities (the entity `version` is the register) while a
//! nemesis cuts nodes off from their peers — clients still reach them — for about a read
//! lease, again and again, or kills the leader. No read that began after a write was
//! acknowledged may return an older version; while a leader and a majority stay
//! connected, no client read may fail.
//!
//! Negative controls run the same history with a rule broken on purpose
//! (`INSTAFACE_PLANTED_BUG`) and require the checker to report stale reads.
//!
//! The tests of this file run one at a time: their timing matters and the machine has
//! two cores.

// The tests take a process-wide lock for their whole run (they share the machine's
// cores and time-sensitive nemeses): the guard is held across awaits on purpose.
#![allow(clippy::await_holding_lock)]

use std::sync::Mutex;
use std::time::{Duration, Instant};

use instaface_testkit::history::{Report, Workload};
use instaface_testkit::{Cluster, ClusterOpts};
use rand::Rng;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

fn assert_consistent(report: &Report) {
    println!("history: {}", report.summary());
    assert!(report.writes >= 20 && report.reads >= 50, "too little happened to judge: {}", report.summary());
    assert!(
        report.violations.is_empty(),
        "{} stale reads, e.g.:\n{}",
        report.violations.len(),
        report.violations.iter().take(10).cloned().collect::<Vec<_>>().join("\n")
    );
}

/// Cuts `victims` off from their peers for a random span in `cut` and plugs them back
/// for a random span in `gap`, `rounds` times, while the workload runs. Returns when the
/// nemesis ran.
async fn cut_again_and_again(c: &Cluster, victims: &[String], rounds: usize, cut: (u64, u64), gap: (u64, u64)) {
    for _ in 0..rounds {
        let (lasts, rest) = {
            let mut rng = rand::rng();
            (rng.random_range(cut.0..cut.1), rng.random_range(gap.0..gap.1))
        };
        for v in victims {
            c.unplug(v, true).await;
        }
        // The nemesis keeps its own time: the cut lasts as long as it is meant to.
        tokio::time::sleep(Duration::from_millis(lasts)).await;
        for v in victims {
            c.unplug(v, false).await;
        }
        tokio::time::sleep(Duration::from_millis(rest)).await;
    }
}

/// Starts a cluster, settles it, cuts `cut_followers` of its followers again and again
/// around the lease bound, and returns the history's report.
async fn follower_cuts(
    name: &str,
    opts: ClusterOpts,
    cut_followers: usize,
    cut: (u64, u64),
    rounds: usize,
) -> (Report, Instant, Instant) {
    let c = Cluster::start(name, opts).await;
    let (leader, term) = c.wait_leader(Duration::from_secs(20), None, 0).await;
    let all: Vec<&str> = c.ids.iter().map(String::as_str).collect();
    c.wait_serving(&all, Duration::from_secs(15)).await;
    let victims: Vec<String> = c.ids.iter().filter(|i| **i != leader).take(cut_followers).cloned().collect();
    let work = Workload::start(&c, 4, &c.ids).await;
    work.wait_progress(10, 50, Duration::from_secs(30)).await;
    let from = Instant::now();
    cut_again_and_again(&c, &victims, rounds, cut, (900, 1100)).await;
    let to = Instant::now();
    work.wait_progress(10, 50, Duration::from_secs(30)).await;
    let report = work.stop().await;
    let (now_leader, now_term) = c.wait_leader(Duration::from_secs(5), None, 0).await;
    assert_eq!(
        (now_leader, now_term),
        (leader, term),
        "the leader changed although it and a majority stayed connected"
    );
    (report, from, to)
}

fn assert_no_failed_client_reads(report: &Report, from: Instant, to: Instant) {
    let failed = report.failures_between(from, to);
    assert!(
        failed.is_empty(),
        "{} client reads failed while a leader and a majority were connected, e.g. {:?}",
        failed.len(),
        failed.first()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_cut_off_for_about_a_lease_again_and_again_never_serves_stale() {
    let _one = serial();
    // The lease bound is ≈ 679 ms with the defaults; cuts of 0.69–0.76 s outlast it and
    // end before an election timeout.
    let (report, from, to) = follower_cuts("cons-cut", ClusterOpts::default(), 1, (690, 760), 10).await;
    assert_consistent(&report);
    assert_no_failed_client_reads(&report, from, to);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_a_short_lease_cut_followers_never_serve_stale() {
    let _one = serial();
    let opts = ClusterOpts { env: vec![("LEASE_MS".into(), "300".into())], ..Default::default() };
    let (report, from, to) = follower_cuts("cons-short", opts, 1, (400, 700), 10).await;
    assert_consistent(&report);
    assert_no_failed_client_reads(&report, from, to);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_nodes_with_two_followers_cut_around_the_lease_never_serve_stale() {
    let _one = serial();
    let opts = ClusterOpts { nodes: 5, ..Default::default() };
    let (report, from, to) = follower_cuts("cons-five", opts, 2, (600, 800), 8).await;
    assert_consistent(&report);
    assert_no_failed_client_reads(&report, from, to);
}

/// The leader cut off from its peers for about a lease — longer than its lease, about as
/// long as an election timeout — again and again: sometimes the others elect a new leader,
/// sometimes it is back first. Client reads may fail while no leader serves; no read may
/// be stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_leader_cut_off_for_about_a_lease_again_and_again_never_serves_stale() {
    let _one = serial();
    let c = Cluster::start("cons-leadercut", ClusterOpts::default()).await;
    c.wait_leader(Duration::from_secs(20), None, 0).await;
    let all: Vec<&str> = c.ids.iter().map(String::as_str).collect();
    c.wait_serving(&all, Duration::from_secs(15)).await;
    let work = Workload::start(&c, 4, &c.ids).await;
    work.wait_progress(10, 50, Duration::from_secs(30)).await;
    for _ in 0..6 {
        let (leader, _) = c.wait_leader(Duration::from_secs(20), None, 0).await;
        cut_again_and_again(&c, &[leader], 1, (690, 900), (900, 1100)).await;
        c.wait_serving(&all, Duration::from_secs(20)).await;
    }
    work.wait_progress(10, 50, Duration::from_secs(30)).await;
    let report = work.stop().await;
    assert_consistent(&report);
}

/// Failover under load: a follower cut and healed, the leader killed and restarted, the
/// new leader cut off for longer than an election timeout, then healed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_kills_and_leader_cuts_never_serve_stale() {
    let _one = serial();
    let mut c = Cluster::start("cons-failover", ClusterOpts::default()).await;
    let (first_leader, _) = c.wait_leader(Duration::from_secs(20), None, 0).await;
    let work = Workload::start(&c, 4, &c.ids).await;
    let pause = || work.wait_progress(15, 50, Duration::from_secs(30));
    pause().await;
    let follower = c.ids.iter().find(|i| **i != first_leader).cloned().unwrap();
    c.unplug(&follower, true).await;
    pause().await;
    c.unplug(&follower, false).await;
    pause().await;
    let (leader, term) = c.wait_leader(Duration::from_secs(20), None, 0).await;
    c.kill9(&leader);
    let (new_leader, _) = c.wait_leader(Duration::from_secs(20), Some(&leader), term).await;
    c.spawn(&leader);
    pause().await;
    c.unplug(&new_leader, true).await;
    pause().await;
    c.unplug(&new_leader, false).await;
    pause().await;
    let report = work.stop().await;
    assert_consistent(&report);
}

/// Runs the follower-cut history on a cluster with `bug` planted until the checker
/// reports a stale read (at most `rounds` cuts); returns the report. The cuts outlast the
/// lease bound (≈ 679 ms) and end before the follower's election timeout can fire (it
/// must still follow the leader when it is back, for a gap to matter).
async fn with_planted_bug(bug: &str, rounds: usize) -> Report {
    let opts = ClusterOpts { env: vec![("INSTAFACE_PLANTED_BUG".into(), bug.into())], ..Default::default() };
    let c = Cluster::start(&format!("cons-{bug}"), opts).await;
    let (leader, _) = c.wait_leader(Duration::from_secs(20), None, 0).await;
    let all: Vec<&str> = c.ids.iter().map(String::as_str).collect();
    c.wait_serving(&all, Duration::from_secs(15)).await;
    let victim = c.ids.iter().find(|i| **i != leader).cloned().unwrap();
    let work = Workload::start(&c, 4, &c.ids).await;
    work.wait_progress(10, 50, Duration::from_secs(30)).await;
    for _ in 0..rounds {
        cut_again_and_again(&c, std::slice::from_ref(&victim), 1, (685, 715), (600, 800)).await;
        if work.stale_so_far() > 0 {
            break;
        }
    }
    work.stop().await
}

/// Negative controls: the checker must see what each planted bug breaks.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_checker_reports_stale_reads_when_a_rule_is_broken_on_purpose() {
    let _one = serial();
    for bug in ["answer-uncovered", "confirm-with-gap"] {
        let report = with_planted_bug(bug, 40).await;
        println!("planted {bug}: {}", report.summary());
        assert!(
            !report.violations.is_empty(),
            "with {bug} planted the checker found no stale read: {}",
            report.summary()
        );
        println!("  e.g. {}", report.violations[0]);
    }
}
