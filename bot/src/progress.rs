//! What a person watching sees: a live progress line every second on stderr (ops/s,
//! errors, unknown outcomes, p50/p99 per kind, the leader), and the final [`Summary`] on
//! stdout, as a table or, with `--json`, as JSON.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::mix::OpKind;
use crate::ops::Ctx;
use crate::stats::{Latency, Summary, WindowStats};

/// Totals so far, for the progress line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub ops: u64,
    pub failed: u64,
    pub outcome_unknown: u64,
}

/// One progress line: elapsed time, the interval's rate, totals, the leader, and per kind
/// that ran in the interval its rate and p50/p99 in milliseconds.
pub fn progress_line(
    elapsed: Duration,
    interval: Duration,
    window: &[WindowStats],
    totals: Totals,
    leader: Option<(&str, u64)>,
) -> String {
    let secs = interval.as_secs_f64().max(1e-3);
    let ops: u64 = window.iter().map(|w| w.ops).sum();
    let mut line = format!(
        "[{:>5.0}s] {:>7.1} ops/s | done {} err {} unk {} | ",
        elapsed.as_secs_f64(),
        ops as f64 / secs,
        totals.ops,
        totals.failed,
        totals.outcome_unknown
    );
    match leader {
        Some((id, term)) => {
            let _ = write!(line, "leader {id} t{term}");
        }
        None => line.push_str("NO LEADER"),
    }
    for kind in OpKind::ALL {
        let w = &window[kind.index()];
        if w.ops == 0 {
            continue;
        }
        let l = Latency::of(&w.latency);
        let _ = write!(line, " | {kind} {:.0}/s {:.1}/{:.1}ms", w.ops as f64 / secs, l.p50, l.p99);
        if w.failed + w.outcome_unknown > 0 {
            let _ = write!(line, " !{}", w.failed + w.outcome_unknown);
        }
    }
    line
}

/// Prints a progress line every `interval` on stderr until `done` turns true. On a
/// terminal the line rewrites itself; elsewhere (logs, pipes) each is a line of its own.
pub async fn report_progress(ctx: Arc<Ctx>, started: Instant, interval: Duration, mut done: watch::Receiver<bool>) {
    let tty = std::io::stderr().is_terminal();
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    let mut last = Instant::now();
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = done.wait_for(|d| *d) => break,
        }
        let (window, totals) = {
            let mut stats = ctx.stats();
            let failed = stats.kinds.iter().map(|k| k.failed).sum();
            let outcome_unknown = stats.kinds.iter().map(|k| k.outcome_unknown).sum();
            (stats.take_window(), Totals { ops: stats.finished_ops(), failed, outcome_unknown })
        };
        let info = ctx.client.leader_info();
        let leader = info.current().map(|(l, t)| (l.as_str(), t));
        let line = progress_line(started.elapsed(), last.elapsed(), &window, totals, leader);
        last = Instant::now();
        let mut err = std::io::stderr().lock();
        let _ = if tty { write!(err, "\r\x1b[K{line}") } else { writeln!(err, "{line}") };
        let _ = err.flush();
    }
    if tty {
        let _ = writeln!(std::io::stderr());
    }
}

/// The summary as JSON (one line).
pub fn render_json(summary: &Summary) -> String {
    serde_json::to_string(summary).unwrap_or_else(|e| format!("{{\"error\":\"summary: {e}\"}}"))
}

/// The summary as a table for people.
pub fn render_text(s: &Summary) -> String {
    let mut out = String::new();
    let rate = if s.rate > 0.0 { format!("{} ops/s", s.rate) } else { "unlimited".into() };
    let _ = writeln!(
        out,
        "instaface-bot: {} ops in {:.2} s ({:.1} ops/s), stopped by {}; seed {}, concurrency {}, rate {}",
        s.ops,
        s.elapsed_secs,
        s.ops_per_sec,
        serde_json::to_value(s.stopped_by).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default(),
        s.seed,
        s.concurrency,
        rate
    );
    let _ = writeln!(out, "mix: {}", s.mix);
    let _ = writeln!(
        out,
        "substituted {}, cancelled {}, leader waits {}",
        s.substituted, s.cancelled, s.totals.no_leader_waits
    );
    let _ = writeln!(
        out,
        "\n{:<14} {:>7} {:>7} {:>7} {:>7} {:>9} {:>9} {:>9}",
        "kind", "chosen", "ok", "failed", "unknown", "p50 ms", "p99 ms", "max ms"
    );
    for kind in OpKind::ALL {
        let k = &s.kinds[kind.name()];
        let _ = writeln!(
            out,
            "{:<14} {:>7} {:>7} {:>7} {:>7} {:>9.2} {:>9.2} {:>9.2}",
            kind.name(),
            k.chosen,
            k.succeeded,
            k.failed,
            k.outcome_unknown,
            k.latency_ms.p50,
            k.latency_ms.p99,
            k.latency_ms.max
        );
    }
    let chosen: u64 = s.kinds.values().map(|k| k.chosen).sum();
    let _ = writeln!(
        out,
        "{:<14} {:>7} {:>7} {:>7} {:>7}",
        "total", chosen, s.totals.succeeded, s.totals.failed, s.totals.outcome_unknown
    );
    let errors: Vec<String> =
        s.kinds.iter().flat_map(|(kind, k)| k.errors.iter().map(move |(e, n)| format!("{kind} {e}={n}"))).collect();
    if !errors.is_empty() {
        let _ = writeln!(out, "errors: {}", errors.join(", "));
    }
    let _ = writeln!(out, "\nentities (confirmed, +unknown):");
    for (etype, t) in &s.entities {
        let _ = writeln!(
            out,
            "  {etype:<8} created {} (+{}), deleted {} (+{})",
            t.created, t.created_unknown, t.deleted, t.deleted_unknown
        );
    }
    let _ = writeln!(out, "associations in pairs, each with its inverse (confirmed, +unknown):");
    for (atype, t) in &s.associations {
        let _ = writeln!(
            out,
            "  {:<8} added {} (+{}), removed {} (+{})",
            format!("{atype}/{}", t.inverse),
            t.added,
            t.added_unknown,
            t.removed,
            t.removed_unknown
        );
    }
    let w = &s.world;
    let _ = writeln!(
        out,
        "known at the end: {} users, {} statuses, {} friendships, {} likes, {} posts, {} uncertain edges",
        w.users, w.statuses, w.friend_pairs, w.likes, w.posted, w.uncertain_edges
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{OpResult, RunInfo, Stats, StopReason};
    use crate::world::WorldCounts;

    fn stats() -> Stats {
        let mut s = Stats::default();
        s.chosen(OpKind::Like);
        s.chosen(OpKind::Like);
        s.finished(OpKind::Like, OpResult::Succeeded, Duration::from_millis(3));
        s.finished(OpKind::Like, OpResult::OutcomeUnknown("outcome_unknown"), Duration::from_millis(5));
        s
    }

    #[test]
    fn the_progress_line_shows_rates_totals_leader_and_active_kinds() {
        let mut s = stats();
        let window = s.take_window();
        let totals = Totals { ops: 2, failed: 0, outcome_unknown: 1 };
        let line = progress_line(Duration::from_secs(12), Duration::from_secs(1), &window, totals, Some(("n2", 3)));
        assert!(line.contains("    2.0 ops/s"), "{line}");
        assert!(line.contains("done 2 err 0 unk 1"), "{line}");
        assert!(line.contains("leader n2 t3"), "{line}");
        assert!(line.contains("| like 2/s 3.0/5.0ms !1"), "{line}");
        assert!(!line.contains("befriend"), "{line}");
        let idle = progress_line(Duration::from_secs(13), Duration::from_secs(1), &s.take_window(), totals, None);
        assert!(idle.contains("0.0 ops/s") && idle.contains("NO LEADER"), "{idle}");
    }

    #[test]
    fn summaries_render_as_a_table_and_as_json() {
        let info = RunInfo {
            seed: 9,
            mix: "like=1".into(),
            concurrency: 2,
            rate: 0.0,
            stopped_by: StopReason::Duration,
            elapsed: Duration::from_secs(2),
        };
        let summary = stats().summary(info, WorldCounts::default());
        let text = render_text(&summary);
        assert!(text.contains("2 ops in 2.00 s (1.0 ops/s), stopped by duration; seed 9"), "{text}");
        assert!(text.contains("errors: like outcome_unknown=1"), "{text}");
        assert!(text.contains("likes/likedby"), "{text}");
        let json: serde_json::Value = serde_json::from_str(&render_json(&summary)).unwrap();
        assert_eq!(json["stopped_by"], "duration");
        assert_eq!(json["kinds"]["like"]["outcome_unknown"], 1);
        assert_eq!(json["kinds"]["befriend"]["succeeded"], 0);
        assert_eq!(json["associations"]["likes"]["inverse"], "likedby");
        assert_eq!(json["entities"]["user"]["created"], 0);
        assert_eq!(json["totals"]["succeeded"], 1);
    }
}
