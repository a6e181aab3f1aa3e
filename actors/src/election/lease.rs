//! Read-lease bookkeeping, both sides: a follower's own lease ([`FollowerLease`],
//! anchored at the send time of its confirmed acks) and a leader's term in office
//! ([`Tenure`]: heartbeat send times, every follower's acks, the leader's own lease from
//! majority-acked heartbeats, its bound on each follower's lease, CheckQuorum and
//! reachability). Plain data and arithmetic; the rules of when to call what are in
//! [`core`](super::core).

use std::collections::BTreeMap;
use std::time::Duration;

use instaface_bus::NodeId;

use super::signals::FollowerView;

/// At most this many of a follower's acks await confirmation; older ones are forgotten
/// (a confirmation of a forgotten ack earns no lease, which is always safe).
const MAX_UNCONFIRMED: usize = 256;

/// A follower's read lease.
///
/// Each ack gets a number and its send time is remembered. When the leader confirms ack
/// `k`, the lease runs until `sent[k] + lease`: anchoring at the follower's own send time,
/// not at the confirmation's arrival, keeps the lease within the leader's bound however
/// long the messages took.
#[derive(Clone, Debug)]
pub(super) struct FollowerLease {
    next_ack: u64,
    unconfirmed: BTreeMap<u64, Duration>,
    until: Option<Duration>,
}

impl FollowerLease {
    /// `first_ack` must differ between incarnations of a node (it is drawn at random), so
    /// a confirmation meant for an ack of a previous incarnation matches nothing.
    pub(super) fn new(first_ack: u64) -> Self {
        FollowerLease { next_ack: first_ack.max(1), unconfirmed: BTreeMap::new(), until: None }
    }

    /// Numbers an ack sent at `now` and remembers its send time.
    pub(super) fn send(&mut self, now: Duration, lease: Duration) -> u64 {
        let ack = self.next_ack;
        self.next_ack = self.next_ack.checked_add(1).unwrap_or(1);
        // An ack confirmed after `sent + lease` could not extend anything.
        self.unconfirmed.retain(|_, sent| sent.saturating_add(lease) > now);
        self.unconfirmed.insert(ack, now);
        while self.unconfirmed.len() > MAX_UNCONFIRMED {
            self.unconfirmed.pop_first();
        }
        ack
    }

    /// The leader confirmed `ack`: extend the lease to its send time plus `lease`.
    /// Unknown (or forgotten) acks change nothing.
    pub(super) fn confirm(&mut self, ack: u64, lease: Duration) {
        if let Some(&sent) = self.unconfirmed.get(&ack) {
            let until = sent.saturating_add(lease);
            self.until = Some(self.until.map_or(until, |u| u.max(until)));
            // Earlier acks can only give an earlier end.
            self.unconfirmed.retain(|&k, _| k > ack);
        }
    }

    /// Drops the lease and every pending ack (term or leader changed). The counter runs on.
    pub(super) fn reset(&mut self) {
        self.unconfirmed.clear();
        self.until = None;
    }

    /// Whether the lease holds at `now`.
    pub(super) fn holds(&self, now: Duration) -> bool {
        self.until.is_some_and(|u| now < u)
    }

    /// When the lease ends (it may already have).
    pub(super) fn until(&self) -> Option<Duration> {
        self.until
    }
}

/// The leader's record of one follower, for one term.
#[derive(Clone, Debug)]
pub(super) struct FollowerRecord {
    /// Latest ack receipt, or the office time before any ack.
    last_heard: Duration,
    last_ack: Option<Duration>,
    /// Highest heartbeat number this follower acked this term (0: none).
    acked_hb: u64,
    applied_seq: Option<u64>,
    /// The latest moment a lease this leader confirmed can last (`office` before any).
    /// Never decreases.
    confirmed_until: Duration,
    /// The latest moment a lease confirmed by an *earlier* leader can last, while the
    /// follower may still hold one: `None` once it is known to hold none (it voted for
    /// this leader, acked in this term, or is the leader of the term just before).
    inherited_until: Option<Duration>,
    reachable: bool,
}

impl FollowerRecord {
    /// The latest moment the follower's read lease can last, from this leader or any
    /// earlier one.
    fn lease_bound(&self) -> Duration {
        self.inherited_until.map_or(self.confirmed_until, |i| i.max(self.confirmed_until))
    }
}

/// A leader's term in office.
#[derive(Clone, Debug)]
pub(super) struct Tenure {
    office: Duration,
    /// Number of the latest heartbeat sent (they count from 1 each term).
    hb: u64,
    next_heartbeat: Duration,
    /// Send times of the heartbeats that can still support a lease.
    sent: BTreeMap<u64, Duration>,
    followers: BTreeMap<NodeId, FollowerRecord>,
}

/// Acks needed besides the leader's own for a majority of `followers + 1` members.
fn acks_needed(followers: usize) -> usize {
    followers.div_ceil(2)
}

impl Tenure {
    /// Takes office at `office` over `followers` (every member but the leader), each
    /// with whether it is known to hold no lease from an earlier leader.
    ///
    /// A follower may still hold a lease confirmed by an earlier leader. That leader could
    /// confirm only while its own lease held, which ended before this leader could be
    /// elected; so such a lease ends before `office + lease`, measured on any clock within
    /// the drift, and the bound on it starts at `office + bound_span`. A follower that
    /// voted for this leader (or acks in this term) moved to this term before it did,
    /// dropping every older lease; the leader of the term just before held only its
    /// leader lease, which ended before this office began. Their bounds start at `office`.
    pub(super) fn new(
        office: Duration,
        followers: impl IntoIterator<Item = (NodeId, bool)>,
        bound_span: Duration,
    ) -> Self {
        let mut tenure =
            Tenure { office, hb: 0, next_heartbeat: office, sent: BTreeMap::new(), followers: BTreeMap::new() };
        for (id, lease_free) in followers {
            tenure.add_follower(id.clone(), bound_span);
            if lease_free {
                tenure.forget_inherited(&id);
            }
        }
        tenure
    }

    /// A member joined during the term (known members stay as they are). It may hold a
    /// lease from an earlier leader until `office + bound_span`.
    pub(super) fn add_follower(&mut self, id: NodeId, bound_span: Duration) {
        let office = self.office;
        self.followers.entry(id).or_insert_with(|| FollowerRecord {
            last_heard: office,
            last_ack: None,
            acked_hb: 0,
            applied_seq: None,
            confirmed_until: office,
            inherited_until: Some(office.saturating_add(bound_span)),
            reachable: true,
        });
    }

    /// `id` holds no lease from an earlier leader (it acked in this term).
    pub(super) fn forget_inherited(&mut self, id: &str) {
        if let Some(f) = self.followers.get_mut(id) {
            f.inherited_until = None;
        }
    }

    /// Records a heartbeat sent at `now` and returns its number.
    pub(super) fn send_heartbeat(&mut self, now: Duration, lease: Duration, interval: Duration) -> u64 {
        self.hb += 1;
        self.sent.retain(|_, sent| sent.saturating_add(lease) > now);
        self.sent.insert(self.hb, now);
        self.next_heartbeat = now.saturating_add(interval);
        self.hb
    }

    /// When the next heartbeat is due.
    pub(super) fn next_heartbeat(&self) -> Duration {
        self.next_heartbeat
    }

    /// Records an ack from `id` received at `now` that acknowledges heartbeat `hb` (0 for
    /// none). Returns whether the follower just became reachable; `None` if `id` is not a
    /// follower. A heartbeat number this leader never sent is not counted.
    pub(super) fn record_ack(&mut self, id: &str, now: Duration, hb: u64, applied_seq: u64) -> Option<bool> {
        let latest_hb = self.hb;
        let f = self.followers.get_mut(id)?;
        // Acking in this term, it dropped every lease of an earlier one.
        f.inherited_until = None;
        f.last_heard = f.last_heard.max(now);
        f.last_ack = Some(f.last_ack.map_or(now, |t| t.max(now)));
        if hb <= latest_hb {
            f.acked_hb = f.acked_hb.max(hb);
        }
        f.applied_seq = Some(f.applied_seq.map_or(applied_seq, |s| s.max(applied_seq)));
        let became_reachable = !f.reachable;
        f.reachable = true;
        Some(became_reachable)
    }

    /// A lease this leader confirmed for `id` can last until `until`.
    pub(super) fn extend_bound(&mut self, id: &str, until: Duration) {
        if let Some(f) = self.followers.get_mut(id) {
            f.confirmed_until = f.confirmed_until.max(until);
        }
    }

    /// When the leader's own lease ends: `h + lease`, where `h` is the send time of the
    /// latest heartbeat such that a majority (the leader counting as having acked every
    /// heartbeat when it sent it) acked that heartbeat or a later one. `None` when no
    /// heartbeat sent within the last `lease` has such a majority.
    pub(super) fn lease_until(&self, lease: Duration) -> Option<Duration> {
        let needed = acks_needed(self.followers.len());
        let hb = if needed == 0 {
            self.hb
        } else {
            let mut acked: Vec<u64> = self.followers.values().map(|f| f.acked_hb).collect();
            acked.sort_unstable_by(|a, b| b.cmp(a));
            acked.get(needed - 1).copied().unwrap_or(0)
        };
        self.sent.get(&hb).map(|sent| sent.saturating_add(lease))
    }

    /// When CheckQuorum fails: `window` after the moment the leader last had a majority
    /// that acked within `window` (every follower counts as heard at the office time).
    pub(super) fn quorum_deadline(&self, window: Duration) -> Duration {
        let needed = acks_needed(self.followers.len());
        if needed == 0 {
            return Duration::MAX;
        }
        let mut heard: Vec<Duration> = self.followers.values().map(|f| f.last_heard).collect();
        heard.sort_unstable_by(|a, b| b.cmp(a));
        heard.get(needed - 1).map_or(self.office, |t| *t).saturating_add(window)
    }

    /// Marks followers not heard from within `window` unreachable (and heard ones
    /// reachable); returns the changes.
    pub(super) fn update_reachability(&mut self, now: Duration, window: Duration) -> Vec<(NodeId, bool)> {
        let mut changes = Vec::new();
        for (id, f) in &mut self.followers {
            let reachable = now < f.last_heard.saturating_add(window);
            if reachable != f.reachable {
                f.reachable = reachable;
                changes.push((id.clone(), reachable));
            }
        }
        changes
    }

    /// When the next reachable follower turns unreachable if it stays silent.
    pub(super) fn reachability_deadline(&self, window: Duration) -> Option<Duration> {
        self.followers.values().filter(|f| f.reachable).map(|f| f.last_heard.saturating_add(window)).min()
    }

    /// The follower to hand leadership to: the one with the latest ack this term, the
    /// highest applied seq breaking ties. `None` if no follower acked this term.
    pub(super) fn transfer_target(&self) -> Option<&NodeId> {
        self.followers
            .iter()
            .filter_map(|(id, f)| f.last_ack.map(|t| ((t, f.applied_seq.unwrap_or(0)), id)))
            .max_by(|a, b| a.0.cmp(&b.0))
            .map(|(_, id)| id)
    }

    /// Whether follower `id` acked this term.
    pub(super) fn acked_this_term(&self, id: &str) -> bool {
        self.followers.get(id).is_some_and(|f| f.last_ack.is_some())
    }

    /// The leader's view of `id`, if it is a follower.
    pub(super) fn view<'a>(&'a self, id: &str) -> Option<FollowerView<'a>> {
        self.followers.get_key_value(id).map(|(id, f)| view(id, f))
    }

    /// The leader's view of every follower, by id.
    pub(super) fn views(&self) -> impl Iterator<Item = FollowerView<'_>> {
        self.followers.iter().map(|(id, f)| view(id, f))
    }
}

fn view<'a>(id: &'a NodeId, f: &FollowerRecord) -> FollowerView<'a> {
    FollowerView {
        id,
        applied_seq: f.applied_seq,
        lease_bound: f.lease_bound(),
        last_ack: f.last_ack,
        reachable: f.reachable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn election_follower_lease_runs_from_the_send_time_of_the_confirmed_ack() {
        let mut l = FollowerLease::new(7);
        let a = l.send(ms(1000), ms(600));
        let b = l.send(ms(1100), ms(600));
        assert_eq!((a, b), (7, 8));
        assert!(!l.holds(ms(1100)), "unconfirmed acks give no lease");
        // Confirmation arrives late (at 1500): the lease still runs from 1100.
        l.confirm(b, ms(600));
        assert_eq!(l.until(), Some(ms(1700)));
        assert!(l.holds(ms(1699)) && !l.holds(ms(1700)));
        // A late confirmation of the older ack cannot shorten it (and was forgotten).
        l.confirm(a, ms(600));
        assert_eq!(l.until(), Some(ms(1700)));
        // Unknown acks, and acks after a reset, give nothing.
        l.confirm(99, ms(600));
        let c = l.send(ms(1200), ms(600));
        l.reset();
        l.confirm(c, ms(600));
        assert_eq!(l.until(), None);
        assert!(!l.holds(ms(1300)));
    }

    #[test]
    fn election_follower_lease_forgets_acks_too_old_to_matter() {
        let mut l = FollowerLease::new(1);
        let old = l.send(ms(0), ms(600));
        let _ = l.send(ms(700), ms(600));
        l.confirm(old, ms(600));
        assert_eq!(l.until(), None);
        for i in 0..1000 {
            l.send(ms(700), ms(600) + ms(i));
        }
        assert!(l.unconfirmed.len() <= MAX_UNCONFIRMED);
    }

    fn tenure(n: usize) -> Tenure {
        Tenure::new(ms(10_000), (1..n).map(|i| (format!("n{i}"), false)), ms(630))
    }

    #[test]
    fn election_leader_lease_needs_a_majority_for_a_heartbeat_sent_within_the_lease() {
        let lease = ms(600);
        let mut t = tenure(5);
        let h1 = t.send_heartbeat(ms(10_000), lease, ms(100));
        let h2 = t.send_heartbeat(ms(10_100), lease, ms(100));
        assert_eq!(t.lease_until(lease), None, "no acks yet");
        t.record_ack("n1", ms(10_150), h2, 0);
        assert_eq!(t.lease_until(lease), None, "2 of 5 is no majority");
        t.record_ack("n2", ms(10_160), h1, 0);
        // n1 acked h2 and n2 acked h1: a majority acked h1 or later, so the lease runs
        // from h1's send time, not from any ack's receipt.
        assert_eq!(t.lease_until(lease), Some(ms(10_600)));
        t.record_ack("n2", ms(10_170), h2, 0);
        assert_eq!(t.lease_until(lease), Some(ms(10_700)));
        // A bogus heartbeat number (never sent) is not counted.
        t.record_ack("n3", ms(10_180), 99, 0);
        assert_eq!(t.lease_until(lease), Some(ms(10_700)));
        // Heartbeats older than the lease are forgotten and cannot support one.
        for i in 2..20 {
            t.send_heartbeat(ms(10_000 + 100 * i), lease, ms(100));
        }
        assert_eq!(t.lease_until(lease), None);
    }

    #[test]
    fn election_leader_alone_holds_a_lease_from_its_latest_heartbeat() {
        let mut t = tenure(1);
        t.send_heartbeat(ms(10_000), ms(600), ms(100));
        assert_eq!(t.lease_until(ms(600)), Some(ms(10_600)));
        assert_eq!(t.quorum_deadline(ms(1000)), Duration::MAX);
    }

    #[test]
    fn election_leader_bounds_start_at_office_and_never_decrease() {
        let mut t = tenure(3);
        assert!(t.views().all(|v| v.lease_bound == ms(10_630)));
        t.extend_bound("n1", ms(11_000));
        t.extend_bound("n1", ms(10_900));
        t.extend_bound("nobody", ms(99_000));
        assert_eq!(t.view("n1").map(|v| v.lease_bound), Some(ms(11_000)));
        assert_eq!(t.view("n2").map(|v| v.lease_bound), Some(ms(10_630)));
        t.add_follower("n9".into(), ms(630));
        t.add_follower("n1".into(), ms(630));
        assert_eq!(t.view("n9").map(|v| v.lease_bound), Some(ms(10_630)));
        assert_eq!(t.view("n1").map(|v| v.lease_bound), Some(ms(11_000)));
    }

    #[test]
    fn election_leader_bound_on_an_earlier_lease_goes_once_the_follower_acks_this_term() {
        let mut t = Tenure::new(ms(10_000), [("voter".to_string(), true), ("other".to_string(), false)], ms(630));
        assert_eq!(t.view("voter").map(|v| v.lease_bound), Some(ms(10_000)));
        assert_eq!(t.view("other").map(|v| v.lease_bound), Some(ms(10_630)));
        t.record_ack("other", ms(10_010), 0, 0);
        assert_eq!(
            t.view("other").map(|v| v.lease_bound),
            Some(ms(10_000)),
            "an ack of this term proves no earlier lease is held"
        );
        t.extend_bound("other", ms(10_700));
        assert_eq!(t.view("other").map(|v| v.lease_bound), Some(ms(10_700)));
    }

    #[test]
    fn election_check_quorum_and_reachability_deadlines() {
        let w = ms(1000);
        let mut t = tenure(5);
        assert_eq!(t.quorum_deadline(w), ms(11_000));
        assert_eq!(t.record_ack("n1", ms(10_500), 0, 3), Some(false));
        assert_eq!(t.quorum_deadline(w), ms(11_000), "one ack is not two");
        t.record_ack("n2", ms(10_700), 0, 5);
        assert_eq!(t.quorum_deadline(w), ms(11_500));
        assert_eq!(t.record_ack("stranger", ms(10_700), 0, 5), None);
        let changes = t.update_reachability(ms(11_000), w);
        assert_eq!(changes, vec![("n3".to_string(), false), ("n4".to_string(), false)]);
        assert_eq!(t.reachability_deadline(w), Some(ms(11_500)));
        assert_eq!(t.record_ack("n3", ms(11_100), 0, 9), Some(true));
        assert_eq!(t.transfer_target().map(String::as_str), Some("n3"));
    }

    #[test]
    fn election_transfer_target_breaks_ties_by_applied_seq() {
        let mut t = tenure(4);
        assert_eq!(t.transfer_target(), None);
        t.record_ack("n1", ms(10_500), 0, 3);
        t.record_ack("n2", ms(10_500), 0, 8);
        t.record_ack("n3", ms(10_500), 0, 5);
        assert_eq!(t.transfer_target().map(String::as_str), Some("n2"));
        assert_eq!(t.view("n2").and_then(|v| v.applied_seq), Some(8));
    }
}
