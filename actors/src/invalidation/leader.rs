//! [`LeaderLog`]: the leader's side of the invalidation log for one term in office — the
//! retained window, the writes waiting for coverage, the answered watermark, the ready
//! gate and pruning. Plain data and arithmetic; when each is called is decided by
//! [`crate::protocol::NodeCore`].

use std::collections::VecDeque;
use std::time::Duration;

use instaface_bus::messages::InvalidationEntry;
use instaface_bus::NodeId;

use crate::election::FollowerView;

/// Names one write waiting for its answer; the runtime maps it to its reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WriteId(pub u64);

/// A committed write (or one that changed nothing) waiting until `seq` is covered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    pub seq: u64,
    pub write: WriteId,
}

/// A write whose seq is covered: answer it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Covered {
    pub seq: u64,
    pub write: WriteId,
    /// The followers that acked it (the others' leases were bounded out).
    pub acked_by: Vec<NodeId>,
}

/// The leader's invalidation log for one term in office.
#[derive(Clone, Debug)]
pub struct LeaderLog {
    term: u64,
    /// The outbox is loaded and replayed into the leader's own cache.
    ready: bool,
    /// Retained invalidations, oldest first: every one with `seq > floor`.
    window: VecDeque<InvalidationEntry>,
    floor: u64,
    /// The latest seq loaded or committed.
    seq: u64,
    /// The seq loaded on taking office (ready only).
    loaded: u64,
    /// Every write up to here has been answered (ready only); the ack gate.
    answered: u64,
    /// In seq order.
    pending: VecDeque<Pending>,
    /// Through which seq the outbox was pruned (or asked to be).
    pruned_through: u64,
}

impl LeaderLog {
    /// A leader of `term` that has not loaded the outbox yet.
    pub fn new(term: u64) -> LeaderLog {
        LeaderLog {
            term,
            ready: false,
            window: VecDeque::new(),
            floor: 0,
            seq: 0,
            loaded: 0,
            answered: 0,
            pending: VecDeque::new(),
            pruned_through: 0,
        }
    }

    pub fn term(&self) -> u64 {
        self.term
    }

    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// The latest seq loaded or committed.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Every write up to here has been answered.
    pub fn answered(&self) -> u64 {
        self.answered
    }

    /// The seq loaded on taking office.
    pub fn loaded(&self) -> u64 {
        self.loaded
    }

    /// The outbox as loaded after the fence was raised: the latest seq and the newest
    /// retained rows (oldest first). Keeps at most `window_max` of them; returns the floor
    /// (every invalidation after it is in the window) and the window, for the leader to
    /// replay into its own cache before [`mark_ready`](Self::mark_ready).
    pub fn load(
        &mut self,
        latest: u64,
        mut entries: Vec<InvalidationEntry>,
        window_max: usize,
    ) -> (u64, Vec<InvalidationEntry>) {
        entries.retain(|e| e.seq <= latest);
        entries.sort_by_key(|e| e.seq);
        entries.dedup_by_key(|e| e.seq);
        let skip = entries.len().saturating_sub(window_max);
        let entries: Vec<_> = entries.into_iter().skip(skip).collect();
        // Seqs may have gaps, but no row lies between the newest row left out and the
        // oldest kept, so the floor can sit just below the oldest kept.
        self.floor = entries.first().map_or(latest, |e| e.seq.saturating_sub(1));
        self.window = entries.iter().cloned().collect();
        self.seq = latest;
        // Older rows may remain in the outbox: the first trim prunes through the floor.
        self.pruned_through = 0;
        (self.floor, entries)
    }

    /// The leader's own cache has replayed the loaded window: from now on it serves,
    /// confirms acks of followers at or past `loaded`, and answers writes.
    pub fn mark_ready(&mut self) {
        self.ready = true;
        self.loaded = self.seq;
        self.answered = self.seq;
    }

    /// The heartbeat's data-path fields: `(seq, floor, invalidations)`. A leader that is
    /// not ready claims nothing (`0, 0, []`), so no follower moves past what it missed.
    pub fn heartbeat_fields(&self) -> (u64, u64, Vec<InvalidationEntry>) {
        if self.ready {
            (self.seq, self.floor, self.window.iter().cloned().collect())
        } else {
            (0, 0, Vec::new())
        }
    }

    /// Appends a committed write's invalidation; returns the seq before it (the
    /// broadcast's `prev_seq`).
    pub fn commit(&mut self, seq: u64, keys: Vec<String>, window_max: usize) -> u64 {
        let prev = self.seq;
        self.seq = self.seq.max(seq);
        self.window.push_back(InvalidationEntry { seq, keys });
        self.trim_to(window_max);
        prev
    }

    /// A write waits until `seq` is covered.
    pub fn wait(&mut self, seq: u64, write: WriteId) {
        self.pending.push_back(Pending { seq, write });
    }

    /// Records that a write up to `seq` was answered without waiting (async mode).
    pub fn answered_at_once(&mut self, seq: u64) {
        self.answered = self.answered.max(seq);
    }

    /// Whether a follower's ack reporting `applied_seq` may be confirmed (earn a lease):
    /// the leader is ready and the follower applied every write answered so far (with
    /// `gap_ok`, only the outbox loaded at takeover — async mode, or a planted bug).
    pub fn may_confirm(&self, applied_seq: u64, gap_ok: bool) -> bool {
        self.ready && applied_seq >= if gap_ok { self.loaded } else { self.answered }
    }

    /// Pops the writes at the front that are covered at `now`: every follower acked their
    /// seq or its lease bound has passed. `uncovered_ok` answers them regardless (a
    /// planted bug).
    pub fn take_covered(&mut self, now: Duration, followers: &[FollowerView<'_>], uncovered_ok: bool) -> Vec<Covered> {
        let mut done = Vec::new();
        if !self.ready {
            return done;
        }
        while let Some(p) = self.pending.front() {
            let covered =
                uncovered_ok || followers.iter().all(|f| f.applied_seq.unwrap_or(0) >= p.seq || now >= f.lease_bound);
            if !covered {
                break;
            }
            let Some(p) = self.pending.pop_front() else {
                break;
            };
            self.answered = self.answered.max(p.seq);
            let acked_by =
                followers.iter().filter(|f| f.applied_seq.unwrap_or(0) >= p.seq).map(|f| f.id.clone()).collect();
            done.push(Covered { seq: p.seq, write: p.write, acked_by });
        }
        done
    }

    /// When the front write becomes covered if nobody acks: the latest lease bound among
    /// the followers that have not acked it (`None` when nothing waits).
    pub fn coverage_deadline(&self, followers: &[FollowerView<'_>]) -> Option<Duration> {
        let p = self.pending.front()?;
        followers.iter().filter(|f| f.applied_seq.unwrap_or(0) < p.seq).map(|f| f.lease_bound).max()
    }

    /// Drops what every follower applied and what exceeds `window_max`; returns the seq
    /// through which the outbox may now be pruned, if that moved.
    pub fn trim(&mut self, followers: &[FollowerView<'_>], window_max: usize) -> Option<u64> {
        if !self.ready {
            return None;
        }
        let all_applied = followers.iter().map(|f| f.applied_seq.unwrap_or(0)).min().unwrap_or(self.seq).min(self.seq);
        while self.window.front().is_some_and(|e| e.seq <= all_applied) {
            if let Some(e) = self.window.pop_front() {
                self.floor = e.seq;
            }
        }
        self.trim_to(window_max);
        if self.floor > self.pruned_through {
            self.pruned_through = self.floor;
            Some(self.floor)
        } else {
            None
        }
    }

    /// The writes still waiting (the term in office is over).
    pub fn drain_pending(&mut self) -> Vec<Pending> {
        self.pending.drain(..).collect()
    }

    /// Number of writes waiting.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    fn trim_to(&mut self, window_max: usize) {
        while self.window.len() > window_max {
            if let Some(e) = self.window.pop_front() {
                self.floor = e.seq;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn entry(seq: u64) -> InvalidationEntry {
        InvalidationEntry { seq, keys: vec![format!("e:{seq}")] }
    }

    fn view<'a>(id: &'a NodeId, applied: Option<u64>, bound: u64) -> FollowerView<'a> {
        FollowerView { id, applied_seq: applied, lease_bound: ms(bound), last_ack: None, reachable: true }
    }

    #[test]
    fn loading_keeps_the_newest_rows_and_sets_the_floor_below_them() {
        let mut log = LeaderLog::new(3);
        let rows: Vec<_> = (1..=10).map(|s| entry(s * 2)).collect();
        let (floor, window) = log.load(20, rows, 4);
        assert_eq!(window.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![14, 16, 18, 20]);
        assert_eq!(floor, 13);
        assert_eq!(log.heartbeat_fields(), (0, 0, vec![]), "not ready: claims nothing");
        log.mark_ready();
        let (seq, floor, inv) = log.heartbeat_fields();
        assert_eq!((seq, floor, inv.len()), (20, 13, 4));
        assert_eq!(log.answered(), 20);
        // No rows at all: the floor is the latest seq.
        let mut empty = LeaderLog::new(4);
        assert_eq!(empty.load(77, vec![], 4).0, 77);
    }

    #[test]
    fn writes_are_answered_in_order_once_acked_or_bounded_out() {
        let (a, b) = ("a".to_string(), "b".to_string());
        let mut log = LeaderLog::new(1);
        log.load(0, vec![], 8);
        log.mark_ready();
        assert_eq!(log.commit(1, vec!["e:1".into()], 8), 0);
        log.wait(1, WriteId(1));
        assert_eq!(log.commit(2, vec!["e:2".into()], 8), 1);
        log.wait(2, WriteId(2));
        let followers = [view(&a, Some(2), 900), view(&b, Some(0), 700)];
        assert!(log.take_covered(ms(600), &followers, false).is_empty());
        assert_eq!(log.coverage_deadline(&followers), Some(ms(700)));
        let done = log.take_covered(ms(700), &followers, false);
        assert_eq!(done.iter().map(|c| c.write).collect::<Vec<_>>(), vec![WriteId(1), WriteId(2)]);
        assert_eq!(done[0].acked_by, vec!["a".to_string()]);
        assert_eq!(log.answered(), 2);
        // b, which missed both, earns no lease until it has applied 2.
        assert!(!log.may_confirm(0, false));
        assert!(log.may_confirm(0, true), "the gap-blind rule would confirm it");
        assert!(log.may_confirm(2, false));
    }

    #[test]
    fn the_window_drops_what_everyone_applied_and_what_overflows() {
        let a = "a".to_string();
        let mut log = LeaderLog::new(1);
        log.load(0, vec![], 3);
        log.mark_ready();
        for s in 1..=5 {
            log.commit(s, vec![format!("e:{s}")], 3);
        }
        let (seq, floor, inv) = log.heartbeat_fields();
        assert_eq!((seq, floor, inv.len()), (5, 2, 3));
        assert_eq!(log.trim(&[view(&a, Some(4), 0)], 3), Some(4));
        assert_eq!(log.heartbeat_fields().1, 4);
        assert_eq!(log.trim(&[view(&a, Some(4), 0)], 3), None);
    }
}
