//! What the deterministic simulations share (tests only): one global simulated clock
//! and each node's drifting view of it ([`Clock`]), the network's behaviour for a while
//! ([`Weather`]), and a seeded queue of timed events ([`Timeline`]).
//!
//! The simulations — the election alone (`election::sim`), the whole protocol with
//! caches, a MySQL model and clients (`protocol::sim`), and the cross-shard intents
//! (`intents::sim`, `intents::pairs_sim`) — are built on these.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::Rng;

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A uniformly random duration in `[lo, hi)` (`lo` when the range is empty).
pub fn rand_dur(rng: &mut StdRng, lo: Duration, hi: Duration) -> Duration {
    if hi <= lo {
        return lo;
    }
    Duration::from_nanos(rng.random_range(lo.as_nanos() as u64..hi.as_nanos() as u64))
}

const MILLION: u128 = 1_000_000;

/// One node's clock: `local = local0 + (real - real0) * (1 + ppm / 1e6)`.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    real0: u128,
    local0: u128,
    ppm: u128,
}

impl Clock {
    /// A clock started at real time `real0`, reading an arbitrary origin, running fast by
    /// a random rate below `drift` (so any two clocks differ by less than `drift`).
    pub fn random(rng: &mut StdRng, real0: Duration, drift: f64) -> Clock {
        Clock {
            real0: real0.as_nanos(),
            local0: rng.random_range(0..1_000_000_000_000u128),
            ppm: rng.random_range(0..((drift * 0.999 * MILLION as f64) as u128).max(1)),
        }
    }

    /// What this clock reads at real time `real`.
    pub fn local(&self, real: Duration) -> Duration {
        let dr = real.as_nanos().saturating_sub(self.real0);
        nanos(self.local0 + dr * (MILLION + self.ppm) / MILLION)
    }

    /// The first real moment at which this clock reads at least `local`.
    pub fn real(&self, local: Duration) -> Duration {
        let dl = local.as_nanos().saturating_sub(self.local0);
        nanos(self.real0 + (dl * MILLION).div_ceil(MILLION + self.ppm))
    }
}

fn nanos(n: u128) -> Duration {
    Duration::from_nanos(n.min(u64::MAX as u128) as u64)
}

/// The network's behaviour for a while.
#[derive(Clone, Copy, Debug)]
pub struct Weather {
    pub loss: f64,
    pub dup: f64,
    /// Probability of a long delay (up to `long_max`).
    pub long: f64,
    pub long_max: Duration,
    pub delay_max: Duration,
}

impl Weather {
    pub const CALM: Weather =
        Weather { loss: 0.0, dup: 0.0, long: 0.0, long_max: Duration::ZERO, delay_max: Duration::from_millis(10) };

    pub fn random(rng: &mut StdRng) -> Weather {
        Weather {
            loss: [0.0, 0.02, 0.1, 0.3][rng.random_range(0..4)],
            dup: [0.0, 0.05, 0.2][rng.random_range(0..3)],
            long: [0.0, 0.01, 0.05][rng.random_range(0..3)],
            long_max: ms(3000),
            delay_max: [ms(2), ms(20), ms(100)][rng.random_range(0..3)],
        }
    }

    /// How many copies of one message arrive (0: lost, 2: duplicated) and after which
    /// delays.
    pub fn deliveries(&self, rng: &mut StdRng) -> Vec<Duration> {
        if rng.random_bool(self.loss) {
            return Vec::new();
        }
        let copies = if rng.random_bool(self.dup) { 2 } else { 1 };
        (0..copies)
            .map(|_| {
                if rng.random_bool(self.long) {
                    rand_dur(rng, Duration::ZERO, self.long_max)
                } else {
                    rand_dur(rng, Duration::ZERO, self.delay_max)
                }
            })
            .collect()
    }
}

/// An event due at `at`; `seq` keeps equal times in scheduling order.
struct Scheduled<E> {
    at: Duration,
    seq: u64,
    ev: E,
}

impl<E> PartialEq for Scheduled<E> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl<E> Eq for Scheduled<E> {}
impl<E> PartialOrd for Scheduled<E> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<E> Ord for Scheduled<E> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// Timed events in time order, equal times in the order they were scheduled.
pub struct Timeline<E> {
    queue: BinaryHeap<Reverse<Scheduled<E>>>,
    seq: u64,
}

impl<E> Default for Timeline<E> {
    fn default() -> Self {
        Timeline { queue: BinaryHeap::new(), seq: 0 }
    }
}

impl<E> Timeline<E> {
    pub fn push(&mut self, at: Duration, ev: E) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled { at, seq: self.seq, ev }));
    }

    /// The next event if it is due at or before `end`.
    pub fn pop_until(&mut self, end: Duration) -> Option<(Duration, E)> {
        if self.queue.peek().is_some_and(|next| next.0.at <= end) {
            self.queue.pop().map(|Reverse(s)| (s.at, s.ev))
        } else {
            None
        }
    }
}

/// Which links between nodes are cut (`from -> to`).
#[derive(Clone, Debug)]
pub struct Links {
    blocked: Vec<Vec<bool>>,
}

impl Links {
    pub fn new(n: usize) -> Links {
        Links { blocked: vec![vec![false; n]; n] }
    }

    /// Whether messages from `from` to `to` are dropped.
    pub fn blocked(&self, from: usize, to: usize) -> bool {
        self.blocked[from][to]
    }

    /// Cuts (or restores) `from -> to`, and `to -> from` too when `both`.
    pub fn set(&mut self, from: usize, to: usize, both: bool, cut: bool) {
        self.blocked[from][to] = cut;
        if both {
            self.blocked[to][from] = cut;
        }
    }

    /// Cuts (or restores) every link between the nodes in `mask` and the others.
    pub fn split(&mut self, mask: u32, cut: bool) {
        let n = self.blocked.len();
        for a in 0..n {
            for b in 0..n {
                if (mask >> a) & 1 != (mask >> b) & 1 {
                    self.blocked[a][b] = cut;
                }
            }
        }
    }

    /// Restores every link.
    pub fn heal(&mut self) {
        for row in &mut self.blocked {
            row.fill(false);
        }
    }
}

/// The seeds a simulation test runs: `<VAR>_SEED` alone (traced), else the first
/// `<VAR>_SEEDS` (or `default`) of `seed_of(0), seed_of(1), …`.
pub fn seeds(var: &str, default: u64, seed_of: impl Fn(u64) -> u64) -> (Vec<u64>, bool) {
    let read = |name: String| -> Option<u64> { std::env::var(name).ok().and_then(|s| s.trim().parse().ok()) };
    if let Some(seed) = read(format!("{var}_SEED")) {
        return (vec![seed], true);
    }
    let count = read(format!("{var}_SEEDS")).unwrap_or(default);
    ((0..count).map(seed_of).collect(), false)
}

/// A simulation run's trace (only when replaying one seed) and its first failure.
#[derive(Debug, Default)]
pub struct Recorder {
    trace: Option<Vec<String>>,
    failure: Option<String>,
}

impl Recorder {
    pub fn new(trace: bool) -> Recorder {
        Recorder { trace: trace.then(Vec::new), failure: None }
    }

    /// Whether events are traced (so callers can skip formatting them otherwise).
    pub fn tracing(&self) -> bool {
        self.trace.is_some()
    }

    /// Traces one line at simulated time `now` (printed as it happens, kept for the report).
    pub fn log(&mut self, now: Duration, line: impl FnOnce() -> String) {
        if let Some(trace) = &mut self.trace {
            let line = format!("{:>10.3}ms {}", now.as_secs_f64() * 1e3, line());
            eprintln!("{line}");
            trace.push(line);
        }
    }

    /// Records the first failure, `what` (which should name the seed and how to replay
    /// it), with the last traced events when tracing.
    pub fn fail(&mut self, what: String) {
        if self.failure.is_some() {
            return;
        }
        let mut msg = what;
        if let Some(trace) = &self.trace {
            msg.push_str("\nlast events:\n");
            for line in trace.iter().rev().take(80).rev() {
                msg.push_str("  ");
                msg.push_str(line);
                msg.push('\n');
            }
        }
        self.failure = Some(msg);
    }

    pub fn failed(&self) -> bool {
        self.failure.is_some()
    }

    /// The recorded failure, as an error (and forgotten).
    pub fn result(&mut self) -> Result<(), String> {
        self.failure.take().map_or(Ok(()), Err)
    }
}

/// Runs `scenario` over the seeds of [`seeds`] (`var`), panicking with the first failure
/// (whose message names the seed to replay); sums the counters with `add`.
pub fn run_seeds<S: Default>(
    var: &str,
    default: u64,
    seed_of: impl Fn(u64) -> u64,
    scenario: impl Fn(u64, bool) -> Result<S, String>,
    add: impl Fn(&mut S, &S),
) -> S {
    match over_seeds(var, default, seed_of, scenario, add, true) {
        (total, failures) if failures.is_empty() => total,
        (_, failures) => panic!("{}", failures[0]),
    }
}

/// Runs `scenario` over the seeds of [`seeds`] (`var`) and keeps every failure (a negative
/// control must see some); sums the counts of the runs that passed.
pub fn collect_seeds(
    var: &str,
    default: u64,
    seed_of: impl Fn(u64) -> u64,
    scenario: impl Fn(u64, bool) -> Result<usize, String>,
) -> (usize, Vec<String>) {
    over_seeds(var, default, seed_of, scenario, |total, n| *total += n, false)
}

/// The seeds' runs: the counters of those that passed summed with `add`, the failures
/// (stopping at the first when `first_only`).
fn over_seeds<S: Default>(
    var: &str,
    default: u64,
    seed_of: impl Fn(u64) -> u64,
    scenario: impl Fn(u64, bool) -> Result<S, String>,
    add: impl Fn(&mut S, &S),
    first_only: bool,
) -> (S, Vec<String>) {
    let (seeds, trace) = seeds(var, default, seed_of);
    let mut total = S::default();
    let mut failures = Vec::new();
    for seed in seeds {
        match scenario(seed, trace) {
            Ok(s) => add(&mut total, &s),
            Err(e) => {
                failures.push(e);
                if first_only {
                    break;
                }
            }
        }
    }
    (total, failures)
}
