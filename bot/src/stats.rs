//! What the run counts: per kind of operation, how many were chosen, succeeded, failed (by
//! error) or ended with an unknown outcome, the leader waits, and latencies in a
//! [`Histogram`]; and the [`Ledger`] of confirmed and unknown changes to the graph, which
//! lets a test reconcile the database with the run. [`Stats::summary`] turns it all into
//! the [`Summary`] that is printed (as text or JSON) at the end.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::mix::OpKind;
use crate::world::{AssocKind, EdgeCounts, Settled, WorldCounts};

const KINDS: usize = OpKind::ALL.len();

/// Latencies in microseconds, in log-linear buckets: exact below 128 µs, then 64 buckets per
/// power of two (under 1.6 % error), up to about 12 days. Fixed size whatever the run length.
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

const SUB_BITS: u32 = 6;
const SUB: u64 = 1 << SUB_BITS;
const LINEAR: u64 = 2 * SUB;
const MAX_EXP: u32 = 39;
const BUCKETS: usize = (LINEAR + (MAX_EXP as u64 - SUB_BITS as u64) * SUB) as usize;

impl Default for Histogram {
    fn default() -> Self {
        Histogram { counts: vec![0; BUCKETS], total: 0, max: 0 }
    }
}

impl Histogram {
    pub fn record(&mut self, d: Duration) {
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX).min((1 << (MAX_EXP + 1)) - 1);
        self.counts[bucket_of(micros)] += 1;
        self.total += 1;
        self.max = self.max.max(micros);
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    /// The largest value recorded, in µs.
    pub fn max_micros(&self) -> u64 {
        self.max
    }

    /// The value (µs) at quantile `q` (0–1): the highest value of the bucket holding that
    /// rank, never above the maximum recorded. `None` when empty.
    pub fn quantile_micros(&self, q: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(highest_in_bucket(i).min(self.max));
            }
        }
        Some(self.max)
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }
}

fn bucket_of(v: u64) -> usize {
    if v < LINEAR {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros();
    let sub = (v >> (exp - SUB_BITS)) - SUB;
    (LINEAR + u64::from(exp - SUB_BITS - 1) * SUB + sub) as usize
}

fn highest_in_bucket(i: usize) -> u64 {
    let i = i as u64;
    if i < LINEAR {
        return i;
    }
    let exp = (i - LINEAR) / SUB + u64::from(SUB_BITS) + 1;
    let sub = (i - LINEAR) % SUB;
    let width = 1u64 << (exp - u64::from(SUB_BITS));
    (SUB + sub) * width + width - 1
}

/// How one operation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpResult {
    Succeeded,
    /// Failed without changing anything; the error's name (`timeout`, `not_found`, …).
    Failed(&'static str),
    /// A write (or a step of one) may or may not have been applied; what was said.
    OutcomeUnknown(&'static str),
}

/// Counts for one kind of operation.
#[derive(Clone, Debug, Default)]
pub struct KindStats {
    pub chosen: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub outcome_unknown: u64,
    pub no_leader_waits: u64,
    pub errors: BTreeMap<&'static str, u64>,
    pub latency: Histogram,
}

/// What happened to one kind in the last progress interval.
#[derive(Clone, Debug, Default)]
pub struct WindowStats {
    pub ops: u64,
    pub failed: u64,
    pub outcome_unknown: u64,
    pub latency: Histogram,
}

/// Confirmed and unknown changes to one entity type.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct EntityTally {
    pub created: u64,
    pub created_unknown: u64,
    pub deleted: u64,
    pub deleted_unknown: u64,
}

/// Confirmed and unknown changes to one association type, in pairs: each pair is a row of
/// the type and a row of its `inverse` (for `friend`, two `friend` rows).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AssocTally {
    pub inverse: &'static str,
    pub added: u64,
    pub added_unknown: u64,
    pub removed: u64,
    pub removed_unknown: u64,
}

/// The changes the run made to the graph. Confirmed counts are exact; a change whose write
/// had an unknown outcome is counted in the matching `_unknown` field instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ledger {
    pub users: EntityTally,
    pub statuses: EntityTally,
    pub assocs: [AssocTally; AssocKind::ALL.len()],
}

/// The entity types the bot creates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntityKind {
    User,
    Status,
}

impl EntityKind {
    pub fn etype(self) -> &'static str {
        match self {
            EntityKind::User => "user",
            EntityKind::Status => "status",
        }
    }
}

impl Default for Ledger {
    fn default() -> Self {
        let tally = |kind: AssocKind| AssocTally {
            inverse: instaface_bus::graph::inverse_of(kind.atype()).unwrap_or(""),
            added: 0,
            added_unknown: 0,
            removed: 0,
            removed_unknown: 0,
        };
        Ledger { users: EntityTally::default(), statuses: EntityTally::default(), assocs: AssocKind::ALL.map(tally) }
    }
}

impl Ledger {
    fn entity(&mut self, kind: EntityKind) -> &mut EntityTally {
        match kind {
            EntityKind::User => &mut self.users,
            EntityKind::Status => &mut self.statuses,
        }
    }

    pub fn created(&mut self, kind: EntityKind, settled: Settled) {
        let t = self.entity(kind);
        match settled {
            Settled::Done => t.created += 1,
            Settled::Unknown => t.created_unknown += 1,
            Settled::Missing | Settled::Failed => {}
        }
    }

    pub fn deleted(&mut self, kind: EntityKind, settled: Settled) {
        let t = self.entity(kind);
        match settled {
            Settled::Done => t.deleted += 1,
            Settled::Unknown => t.deleted_unknown += 1,
            Settled::Missing | Settled::Failed => {}
        }
    }

    pub fn added(&mut self, kind: AssocKind, settled: Settled) {
        let t = &mut self.assocs[kind.index()];
        match settled {
            Settled::Done => t.added += 1,
            Settled::Unknown => t.added_unknown += 1,
            Settled::Missing | Settled::Failed => {}
        }
    }

    pub fn removed(&mut self, kind: AssocKind, settled: Settled, pairs: u64) {
        let t = &mut self.assocs[kind.index()];
        match settled {
            Settled::Done => t.removed += pairs,
            Settled::Unknown => t.removed_unknown += pairs,
            Settled::Missing | Settled::Failed => {}
        }
    }

    /// Records the edges a status deletion took with it.
    pub fn removed_with(&mut self, settled: Settled, counts: EdgeCounts) {
        for kind in AssocKind::ALL {
            self.removed(kind, settled, counts[kind.index()]);
        }
    }
}

/// Everything counted during a run. The runner keeps it behind a mutex.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub kinds: [KindStats; KINDS],
    pub window: [WindowStats; KINDS],
    pub ledger: Ledger,
    /// Operations run as another kind because the world did not allow the chosen one.
    pub substituted: u64,
    /// Operations chosen but stopped (by the end of the run) before sending anything.
    pub cancelled: u64,
}

impl Stats {
    pub fn chosen(&mut self, kind: OpKind) {
        self.kinds[kind.index()].chosen += 1;
    }

    pub fn no_leader_wait(&mut self, kind: OpKind) {
        self.kinds[kind.index()].no_leader_waits += 1;
    }

    pub fn finished(&mut self, kind: OpKind, result: OpResult, latency: Duration) {
        let k = &mut self.kinds[kind.index()];
        let w = &mut self.window[kind.index()];
        w.ops += 1;
        match result {
            OpResult::Succeeded => k.succeeded += 1,
            OpResult::Failed(e) => {
                k.failed += 1;
                w.failed += 1;
                *k.errors.entry(e).or_default() += 1;
            }
            OpResult::OutcomeUnknown(e) => {
                k.outcome_unknown += 1;
                w.outcome_unknown += 1;
                *k.errors.entry(e).or_default() += 1;
            }
        }
        k.latency.record(latency);
        w.latency.record(latency);
    }

    /// Operations finished so far.
    pub fn finished_ops(&self) -> u64 {
        self.kinds.iter().map(|k| k.succeeded + k.failed + k.outcome_unknown).sum()
    }

    /// The interval's counts, leaving a fresh interval behind.
    pub fn take_window(&mut self) -> [WindowStats; KINDS] {
        std::mem::take(&mut self.window)
    }

    /// The summary of the run so far.
    pub fn summary(&self, run: RunInfo, world: WorldCounts) -> Summary {
        let mut totals = Totals::default();
        let mut kinds = BTreeMap::new();
        for kind in OpKind::ALL {
            let k = &self.kinds[kind.index()];
            totals.succeeded += k.succeeded;
            totals.failed += k.failed;
            totals.outcome_unknown += k.outcome_unknown;
            totals.no_leader_waits += k.no_leader_waits;
            kinds.insert(
                kind.name(),
                KindSummary {
                    chosen: k.chosen,
                    succeeded: k.succeeded,
                    failed: k.failed,
                    outcome_unknown: k.outcome_unknown,
                    no_leader_waits: k.no_leader_waits,
                    errors: k.errors.clone(),
                    latency_ms: Latency::of(&k.latency),
                },
            );
        }
        let ops = totals.succeeded + totals.failed + totals.outcome_unknown;
        let chosen: u64 = self.kinds.iter().map(|k| k.chosen).sum();
        let secs = run.elapsed.as_secs_f64();
        Summary {
            seed: run.seed,
            mix: run.mix,
            concurrency: run.concurrency,
            rate: run.rate,
            stopped_by: run.stopped_by,
            elapsed_secs: round3(secs),
            ops,
            ops_per_sec: if secs > 0.0 { round3(ops as f64 / secs) } else { 0.0 },
            cancelled: self.cancelled,
            abandoned: chosen.saturating_sub(ops + self.cancelled),
            substituted: self.substituted,
            totals,
            kinds,
            entities: BTreeMap::from([("user", self.ledger.users.clone()), ("status", self.ledger.statuses.clone())]),
            associations: AssocKind::ALL.iter().map(|k| (k.atype(), self.ledger.assocs[k.index()].clone())).collect(),
            world,
        }
    }
}

/// Why the run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// `--ops` operations were run.
    Ops,
    /// `--duration` passed.
    Duration,
    /// Ctrl-C (or SIGTERM).
    Interrupt,
}

/// The run's settings and timing, for the summary.
#[derive(Clone, Debug)]
pub struct RunInfo {
    pub seed: u64,
    pub mix: String,
    pub concurrency: usize,
    pub rate: f64,
    pub stopped_by: StopReason,
    pub elapsed: Duration,
}

/// The final summary; `--json` prints exactly this.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub seed: u64,
    pub mix: String,
    pub concurrency: usize,
    /// Operations per second asked for; 0 for as fast as possible.
    pub rate: f64,
    pub stopped_by: StopReason,
    pub elapsed_secs: f64,
    /// Operations run: `totals.succeeded + totals.failed + totals.outcome_unknown`.
    pub ops: u64,
    pub ops_per_sec: f64,
    /// Operations stopped by the end of the run before they sent anything.
    pub cancelled: u64,
    /// Operations under way when a second interrupt ended the run at once (their outcome
    /// is not counted anywhere else).
    pub abandoned: u64,
    /// Operations run as another kind because the world could not serve the chosen one.
    pub substituted: u64,
    pub totals: Totals,
    /// Per kind of operation (all kinds, in name order).
    pub kinds: BTreeMap<&'static str, KindSummary>,
    /// Per entity type.
    pub entities: BTreeMap<&'static str, EntityTally>,
    /// Per association type, in pairs (see [`AssocTally`]).
    pub associations: BTreeMap<&'static str, AssocTally>,
    /// What the bot knew at the end.
    pub world: WorldCounts,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Totals {
    pub succeeded: u64,
    pub failed: u64,
    pub outcome_unknown: u64,
    pub no_leader_waits: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct KindSummary {
    /// How often the kind was drawn from the mix (it may have run as another kind).
    pub chosen: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub outcome_unknown: u64,
    pub no_leader_waits: u64,
    /// Failures and unknown outcomes by error name.
    pub errors: BTreeMap<&'static str, u64>,
    pub latency_ms: Latency,
}

/// Latency figures in milliseconds (0 when nothing was measured).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Latency {
    pub count: u64,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Latency {
    pub fn of(h: &Histogram) -> Latency {
        let ms = |us: Option<u64>| round3(us.unwrap_or(0) as f64 / 1000.0);
        Latency {
            count: h.count(),
            p50: ms(h.quantile_micros(0.5)),
            p99: ms(h.quantile_micros(0.99)),
            max: ms(Some(h.max_micros())),
        }
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_ordered_and_hold_their_values() {
        let mut last = 0;
        let values = (0..5000u64).chain((1..40).map(|e| (1u64 << e) - 1)).chain((1..40).map(|e| 1u64 << e));
        for (n, v) in values.enumerate() {
            let v = v.min((1 << (MAX_EXP + 1)) - 1);
            let b = bucket_of(v);
            assert!(b < BUCKETS, "{v} → {b}");
            assert!(highest_in_bucket(b) >= v, "{v} above its bucket's top {}", highest_in_bucket(b));
            if b > 0 {
                assert!(highest_in_bucket(b - 1) < v, "{v} belongs to an earlier bucket");
            }
            if n < 5000 {
                assert!(b >= last);
                last = b;
            }
            // Relative error of reporting the bucket's top.
            assert!((highest_in_bucket(b) - v) as f64 <= (v as f64 / 64.0).max(0.0) + 1.0);
        }
    }

    #[test]
    fn quantiles_of_a_known_spread() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile_micros(0.5), None);
        for ms in 1..=100u64 {
            h.record(Duration::from_millis(ms));
        }
        let p50 = h.quantile_micros(0.5).unwrap() as f64;
        let p99 = h.quantile_micros(0.99).unwrap() as f64;
        assert!((p50 - 50_000.0).abs() / 50_000.0 < 0.02, "p50 {p50}");
        assert!((p99 - 99_000.0).abs() / 99_000.0 < 0.02, "p99 {p99}");
        assert_eq!(h.quantile_micros(1.0), Some(100_000));
        assert_eq!(h.max_micros(), 100_000);
        let mut other = Histogram::default();
        other.record(Duration::from_secs(3));
        h.merge(&other);
        assert_eq!(h.count(), 101);
        assert_eq!(h.max_micros(), 3_000_000);
    }

    #[test]
    fn outcomes_are_counted_per_kind_and_in_the_window() {
        let mut s = Stats::default();
        s.chosen(OpKind::Like);
        s.finished(OpKind::Like, OpResult::Succeeded, Duration::from_millis(2));
        s.finished(OpKind::Like, OpResult::Failed("timeout"), Duration::from_millis(2));
        s.finished(OpKind::Like, OpResult::OutcomeUnknown("outcome_unknown"), Duration::from_millis(2));
        assert_eq!(s.finished_ops(), 3);
        let w = s.take_window();
        assert_eq!((w[OpKind::Like.index()].ops, w[OpKind::Like.index()].failed), (3, 1));
        assert_eq!(s.take_window()[OpKind::Like.index()].ops, 0);
        let info = RunInfo {
            seed: 1,
            mix: "like=1".into(),
            concurrency: 1,
            rate: 0.0,
            stopped_by: StopReason::Ops,
            elapsed: Duration::from_secs(1),
        };
        let summary = s.summary(info, WorldCounts::default());
        assert_eq!(summary.ops, 3);
        let like = &summary.kinds["like"];
        assert_eq!((like.chosen, like.succeeded, like.failed, like.outcome_unknown), (1, 1, 1, 1));
        assert_eq!(like.errors["timeout"], 1);
    }

    #[test]
    fn the_ledger_separates_confirmed_from_unknown_changes() {
        let mut l = Ledger::default();
        l.created(EntityKind::User, Settled::Done);
        l.created(EntityKind::User, Settled::Unknown);
        l.created(EntityKind::User, Settled::Failed);
        l.deleted(EntityKind::Status, Settled::Missing);
        l.added(AssocKind::Likes, Settled::Done);
        l.removed_with(Settled::Unknown, [0, 2, 1]);
        assert_eq!(l.users, EntityTally { created: 1, created_unknown: 1, deleted: 0, deleted_unknown: 0 });
        assert_eq!(l.statuses, EntityTally::default());
        let likes = &l.assocs[AssocKind::Likes.index()];
        assert_eq!((likes.inverse, likes.added, likes.removed_unknown), ("likedby", 1, 2));
        assert_eq!(l.assocs[AssocKind::Friend.index()].inverse, "friend");
        assert_eq!(l.assocs[AssocKind::Posted.index()].removed_unknown, 1);
    }
}
