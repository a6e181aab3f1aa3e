//! (d) Invalidation latency observed from outside: the [`Tap`] stamps every broadcast, event
//! and follower ack on arrival; [`invalidation_figures`] matches them to the writes of (c)
//! and [`report`] prints the table.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::StreamExt;
use instaface_bus::messages::{Ack, Event, EventKind, Invalidate};
use instaface_testkit::Cluster;

use crate::common::{fm, summary, us, wall_ms};
use crate::writes::WriteRun;

#[derive(Default)]
pub struct Tap {
    /// seq → arrival of the `P.invalidate` broadcast.
    invalidate: HashMap<u64, Instant>,
    /// seq → (arrival, leader's ts in ms) of the `write` event.
    write_event: HashMap<u64, (Instant, u64)>,
    /// seq → (arrival, acked_by) of the `invalidation` event.
    invalidation_event: HashMap<u64, (Instant, Vec<String>)>,
    /// Every ack in order of arrival: (arrival, wall ms, node, applied_seq).
    acks: Vec<(Instant, f64, String, u64)>,
}

pub async fn start_tap(c: &Cluster) -> Arc<Mutex<Tap>> {
    let tap = Arc::new(Mutex::new(Tap::default()));
    let s = c.bus.subjects().clone();
    let mut inv = c.bus.subscribe::<Invalidate>(s.invalidate()).await.expect("sub invalidate");
    let mut evs = c.bus.subscribe::<Event>(s.events()).await.expect("sub events");
    let mut acks = c.bus.subscribe::<Ack>(format!("{}.node.*.ack", s.prefix())).await.expect("sub acks");
    let t = tap.clone();
    tokio::spawn(async move {
        while let Some(m) = inv.next().await {
            let now = Instant::now();
            if let Ok(i) = m.payload {
                t.lock().unwrap().invalidate.entry(i.seq).or_insert(now);
            }
        }
    });
    let t = tap.clone();
    tokio::spawn(async move {
        while let Some(m) = evs.next().await {
            let now = Instant::now();
            if let Ok(e) = m.payload {
                match e.kind {
                    EventKind::Write { seq, .. } => {
                        t.lock().unwrap().write_event.entry(seq).or_insert((now, e.ts));
                    }
                    EventKind::Invalidation { seq, acked_by } => {
                        t.lock().unwrap().invalidation_event.entry(seq).or_insert((now, acked_by));
                    }
                    _ => {}
                }
            }
        }
    });
    let t = tap.clone();
    tokio::spawn(async move {
        while let Some(m) = acks.next().await {
            let now = Instant::now();
            let wall = wall_ms();
            if let Ok(a) = m.payload {
                t.lock().unwrap().acks.push((now, wall, a.node, a.applied_seq));
            }
        }
    });
    c.bus.flush().await.expect("flush");
    tap
}

/// (d): per write, from the tap.
pub struct InvFigures {
    label: String,
    /// P.invalidate arrival → last follower's covering ack arrival, µs.
    bcast_to_last_ack: Vec<f64>,
    /// First follower's covering ack → last follower's, µs.
    first_to_last_ack: Vec<f64>,
    /// write event ts (leader wall ms) → last covering ack arrival (wall), µs.
    commit_ts_to_last_ack: Vec<f64>,
    /// request sent → P.invalidate arrival, µs.
    req_to_bcast: Vec<f64>,
    /// last covering ack arrival → answer at the client, µs (negative: answered before).
    last_ack_to_answer: Vec<f64>,
    /// last covering ack → `invalidation` event arrival, µs (lease mode).
    last_ack_to_inv_event: Vec<f64>,
    /// `invalidation` events naming fewer followers than are plugged.
    inv_events: usize,
    covered_by_lease: usize,
    missing: usize,
}

pub fn invalidation_figures(run: &WriteRun, tap: &Tap) -> InvFigures {
    let mut f = InvFigures {
        label: run.label.clone(),
        bcast_to_last_ack: Vec::new(),
        first_to_last_ack: Vec::new(),
        commit_ts_to_last_ack: Vec::new(),
        req_to_bcast: Vec::new(),
        last_ack_to_answer: Vec::new(),
        last_ack_to_inv_event: Vec::new(),
        inv_events: 0,
        covered_by_lease: 0,
        missing: 0,
    };
    // Per follower, acks in arrival order.
    let mut by_node: HashMap<&str, Vec<(Instant, f64, u64)>> = HashMap::new();
    for (at, wall, node, seq) in &tap.acks {
        by_node.entry(node.as_str()).or_default().push((*at, *wall, *seq));
    }
    for (seq, sent, answered) in &run.writes {
        let Some(bcast) = tap.invalidate.get(seq).copied() else {
            f.missing += 1;
            continue;
        };
        let mut last: Option<(Instant, f64)> = None;
        let mut earliest: Option<Instant> = None;
        let mut complete = true;
        for node in &run.followers {
            let first = by_node
                .get(node.as_str())
                .and_then(|acks| acks.iter().find(|(at, _, applied)| *applied >= *seq && *at >= *sent));
            match first {
                Some((at, wall, _)) => {
                    if earliest.is_none_or(|e| *at < e) {
                        earliest = Some(*at);
                    }
                    if last.is_none_or(|(l, _)| *at > l) {
                        last = Some((*at, *wall));
                    }
                }
                None => complete = false,
            }
        }
        let Some((last_at, last_wall)) = last.filter(|_| complete) else {
            f.missing += 1;
            continue;
        };
        f.req_to_bcast.push(us(bcast.saturating_duration_since(*sent)));
        f.bcast_to_last_ack.push(us(last_at.saturating_duration_since(bcast)));
        if let Some(e) = earliest {
            f.first_to_last_ack.push(us(last_at.saturating_duration_since(e)));
        }
        if let Some((_, ts)) = tap.write_event.get(seq) {
            f.commit_ts_to_last_ack.push((last_wall - *ts as f64) * 1000.0);
        }
        f.last_ack_to_answer.push(if *answered >= last_at {
            us(*answered - last_at)
        } else {
            -us(last_at - *answered)
        });
        if let Some((at, acked_by)) = tap.invalidation_event.get(seq) {
            f.inv_events += 1;
            if *at >= last_at {
                f.last_ack_to_inv_event.push(us(*at - last_at));
            }
            if acked_by.len() < run.all_followers {
                f.covered_by_lease += 1;
            }
        }
    }
    f
}

/// The (d) table, one row per write run.
pub fn report(inv: &[InvFigures]) -> Vec<String> {
    let mut r: Vec<String> = vec![
        "## (d) Invalidation latency (observed from outside, per write of (c))".into(),
        String::new(),
        "Arrival times in the bench process of: the leader's `P.invalidate` broadcast; every follower ack on `P.node.*.ack` \
         (the last plugged follower's first ack with `applied_seq` >= the write's seq is \"last ack\"); the `write` event (its `ts` is the \
         leader's wall clock in whole ms when it publishes it, just after the commit, its own cache invalidation and the broadcast); the \
         write's answer at the client. All processes are on one machine, so wall clocks agree; the `ts` → ack figure carries up to \
         +1 ms from the truncated `ts`."
            .into(),
        String::new(),
        "| mode, cluster state | writes matched | request → broadcast p50 / p99 | broadcast → last ack p50 / p99 / max | first → last follower ack p50 / p99 | write `ts` → last ack p50 / p99 | last ack → answer p50 / p99 | last ack → `invalidation` event p50 | `invalidation` events (of which not acked by every follower) | unmatched writes |".into(),
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |".into(),
    ];
    for f in inv {
        let a = summary(&f.req_to_bcast);
        let b = summary(&f.bcast_to_last_ack);
        let fl = summary(&f.first_to_last_ack);
        let d = summary(&f.commit_ts_to_last_ack);
        let e = summary(&f.last_ack_to_answer);
        let g = summary(&f.last_ack_to_inv_event);
        r.push(format!(
            "| {} | {} | {} / {} | {} / {} / {} | {} / {} | {} / {} | {} / {} | {} | {} ({}) | {} |",
            f.label,
            b.n,
            fm(a.p50),
            fm(a.p99),
            fm(b.p50),
            fm(b.p99),
            fm(b.max),
            fm(fl.p50),
            fm(fl.p99),
            fm(d.p50),
            fm(d.p99),
            fm(e.p50),
            fm(e.p99),
            if f.inv_events > 0 { fm(g.p50) } else { "-".into() },
            f.inv_events,
            f.covered_by_lease,
            f.missing
        ));
    }
    r.push(String::new());
    r.push("(ms; a negative \"last ack → answer\" means the answer reached the client before the last follower acked, as `async` allows.)".into());
    r.push(String::new());
    r
}
