//! A whole run: learn of existing entities, start the workers, pace them to `--rate`, stop
//! at `--ops`, `--duration` or an interrupt, and return the [`Summary`].
//!
//! Operation `i` of a run is always drawn from the same random stream (see
//! [`crate::mix::op_rng`]); with `--ops N` exactly operations `0..N` run, whatever the
//! concurrency. On the first interrupt the run stops starting operations and lets those
//! under way finish; on a second it abandons them (the summary counts them `abandoned`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use instaface_bus::graph::Consistency;
use instaface_bus::graph_client::GraphClient;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::mix::Mix;
use crate::ops::{run_op, Ctx};
use crate::progress::report_progress;
use crate::stats::{RunInfo, Stats, StopReason, Summary};
use crate::world::{Origin, World};

/// How often the progress line is printed.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// How long a run waits at its start to hear of the leader before operations begin
/// (heartbeats come every 100 ms by default).
const FIRST_HEARTBEAT: Duration = Duration::from_secs(2);

/// What a run does and when it stops.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub seed: u64,
    pub mix: Mix,
    pub concurrency: usize,
    /// Operations per second over all workers; 0 for as fast as possible.
    pub rate: f64,
    pub ops: Option<u64>,
    pub duration: Option<Duration>,
    pub max_leader_wait: Duration,
    /// How many existing users and statuses to learn of at the start (0: none).
    pub discover: u32,
    /// Whether to print the progress line.
    pub progress: bool,
}

/// Runs the bot until `--ops` operations are done, `--duration` has passed, or
/// `interrupts` delivers (once: finish what is under way; twice: abandon it).
pub async fn run(client: GraphClient, cfg: RunConfig, mut interrupts: mpsc::UnboundedReceiver<()>) -> Summary {
    let started = Instant::now();
    let (stop_tx, stop_rx) = watch::channel(false);
    let ctx = Arc::new(Ctx {
        client,
        world: Mutex::new(World::new()),
        stats: Mutex::new(Stats::default()),
        stop: stop_rx.clone(),
        max_leader_wait: cfg.max_leader_wait,
    });
    let (done_tx, done_rx) = watch::channel(false);
    let progress = cfg.progress.then(|| tokio::spawn(report_progress(ctx.clone(), started, PROGRESS_EVERY, done_rx)));

    // Boxed so that dropping it (on a second interrupt) drops the workers there and then.
    let mut work = Box::pin(work(ctx.clone(), cfg.clone(), stop_rx));
    let deadline = cfg.duration.map(|d| tokio::time::Instant::from_std(started + d));
    let mut stopped_by = None;
    let mut interrupted = 0;
    loop {
        tokio::select! {
            _ = &mut work => break,
            _ = sleep_until(deadline), if stopped_by.is_none() => {
                stopped_by = Some(StopReason::Duration);
                let _ = stop_tx.send(true);
            }
            Some(()) = interrupts.recv() => {
                interrupted += 1;
                stopped_by.get_or_insert(StopReason::Interrupt);
                let _ = stop_tx.send(true);
                if interrupted > 1 {
                    // Dropping the work aborts the workers and whatever they had under way.
                    break;
                }
            }
        }
    }
    drop(work);
    let _ = done_tx.send(true);
    if let Some(p) = progress {
        let _ = p.await;
    }
    let info = RunInfo {
        seed: cfg.seed,
        mix: cfg.mix.to_string(),
        concurrency: cfg.concurrency,
        rate: cfg.rate,
        stopped_by: stopped_by.unwrap_or(StopReason::Ops),
        elapsed: started.elapsed(),
    };
    let world = ctx.world().counts();
    let summary = ctx.stats().summary(info, world);
    summary
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Discovery, then the workers until they are all done.
async fn work(ctx: Arc<Ctx>, cfg: RunConfig, mut stop: watch::Receiver<bool>) {
    // The client learns the leaders (one per shard) from their next heartbeats; give it
    // that moment, so the first operations do not count a leader wait that is only the
    // bot's own start.
    tokio::select! {
        _ = ctx.client.wait_for_leaders(FIRST_HEARTBEAT) => {}
        _ = stop.wait_for(|s| *s) => {}
    }
    discover(&ctx, cfg.discover, stop.clone()).await;
    let next = Arc::new(AtomicU64::new(0));
    let pacer = Arc::new(Pacer::new(cfg.rate));
    let mix = Arc::new(cfg.mix.clone());
    let mut workers = JoinSet::new();
    for _ in 0..cfg.concurrency {
        let (ctx, next, pacer, mix, mut stop) = (ctx.clone(), next.clone(), pacer.clone(), mix.clone(), stop.clone());
        let (seed, ops) = (cfg.seed, cfg.ops);
        workers.spawn(async move {
            loop {
                if *stop.borrow() {
                    break;
                }
                let index = next.fetch_add(1, Ordering::SeqCst);
                if ops.is_some_and(|n| index >= n) {
                    break;
                }
                if !pacer.wait(&mut stop).await {
                    break;
                }
                run_op(&ctx, &mix, seed, index).await;
            }
        });
    }
    while let Some(joined) = workers.join_next().await {
        if let Err(e) = joined {
            if e.is_panic() {
                std::panic::resume_unwind(e.into_panic());
            }
        }
    }
}

/// Learns of up to `count` existing users and statuses (`random`), so a bot started on a
/// populated graph uses it. A failure only costs the knowledge.
async fn discover(ctx: &Ctx, count: u32, mut stop: watch::Receiver<bool>) {
    if count == 0 {
        return;
    }
    for etype in ["user", "status"] {
        let answer = tokio::select! {
            a = ctx.client.random(etype, count, Consistency::Eventual) => a,
            _ = stop.wait_for(|s| *s) => return,
        };
        match answer {
            Ok(ids) => {
                let mut world = ctx.world();
                for id in ids {
                    match etype {
                        "user" => world.add_user(id),
                        _ => world.add_status(id, Origin::Discovered),
                    }
                }
            }
            Err(e) => tracing::warn!(etype, error = %e, "could not learn of existing entities; starting from none"),
        }
    }
}

/// Spaces operation starts `1/rate` apart over all workers. A late start does not earn
/// a burst afterwards: the schedule restarts from now.
struct Pacer {
    period: Option<Duration>,
    next: Mutex<tokio::time::Instant>,
}

impl Pacer {
    fn new(rate: f64) -> Pacer {
        let period = (rate > 0.0).then(|| Duration::from_secs_f64(1.0 / rate));
        Pacer { period, next: Mutex::new(tokio::time::Instant::now()) }
    }

    /// Waits for the next start; false if the run stopped meanwhile.
    async fn wait(&self, stop: &mut watch::Receiver<bool>) -> bool {
        let Some(period) = self.period else { return true };
        let at = {
            let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
            let at = (*next).max(tokio::time::Instant::now());
            *next = at + period;
            at
        };
        tokio::select! {
            _ = tokio::time::sleep_until(at) => true,
            _ = stop.wait_for(|s| *s) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_pacer_spaces_starts_and_does_not_burst_after_a_stall() {
        let pacer = Pacer::new(10.0);
        let (_tx, mut stop) = watch::channel(false);
        let t0 = tokio::time::Instant::now();
        for _ in 0..5 {
            assert!(pacer.wait(&mut stop).await);
        }
        assert_eq!(t0.elapsed(), Duration::from_millis(400));
        tokio::time::advance(Duration::from_secs(5)).await;
        let t1 = tokio::time::Instant::now();
        assert!(pacer.wait(&mut stop).await);
        assert!(pacer.wait(&mut stop).await);
        assert_eq!(t1.elapsed(), Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_ends_a_pacer_wait() {
        let pacer = Pacer::new(0.001);
        let (tx, mut stop) = watch::channel(false);
        assert!(pacer.wait(&mut stop).await);
        let waiting = tokio::spawn(async move { pacer.wait(&mut stop).await });
        tx.send(true).unwrap();
        assert!(!waiting.await.unwrap());
    }

    #[tokio::test]
    async fn no_rate_means_no_wait() {
        let pacer = Pacer::new(0.0);
        let (_tx, mut stop) = watch::channel(false);
        let t0 = Instant::now();
        for _ in 0..1000 {
            assert!(pacer.wait(&mut stop).await);
        }
        assert!(t0.elapsed() < Duration::from_secs(1));
    }
}
