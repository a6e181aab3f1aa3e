//! Unit tests of the election rules and the lease arithmetic, one core at a time, with
//! the other nodes played by hand.

use std::collections::BTreeSet;
use std::time::Duration;

use instaface_bus::messages::{Ack, AckConfirm, CandidacyState, Role, TimeoutNow, VoteReply, VoteRequest};

use super::{ElectionConfig, ElectionCore, Input, Output, PersistedVote};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn cfg(id: &str) -> ElectionConfig {
    ElectionConfig {
        id: id.into(),
        heartbeat: ms(100),
        election_min: ms(750),
        election_max: ms(1000),
        lease: ms(680),
        drift: 0.05,
    }
}

fn ids(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// A core that started at 0 and read the membership `a, b, c`; returns it with the
/// moment its quarantine (2.1 s) ended.
fn started(id: &str) -> (ElectionCore, Duration) {
    started_among(id, &["a", "b", "c"])
}

fn started_among(id: &str, members: &[&str]) -> (ElectionCore, Duration) {
    let mut core = ElectionCore::new(cfg(id), 7, Duration::ZERO, PersistedVote::default());
    assert!(core.step(Duration::ZERO, Input::Membership(ids(members))).is_empty());
    let ready = cfg(id).restart_quarantine();
    (core, ready)
}

fn heartbeat(term: u64, leader: &str, hb: u64) -> Input {
    Input::Heartbeat { term, leader: leader.into(), hb, applied_seq: 0 }
}

fn vote_request(term: u64, candidate: &str, pre_vote: bool) -> Input {
    Input::VoteRequest(VoteRequest { term, candidate: candidate.into(), pre_vote, transfer: false })
}

fn grant(term: u64, voter: &str, pre_vote: bool) -> Input {
    Input::VoteReply(VoteReply { term, voter: voter.into(), granted: true, pre_vote })
}

fn refuse(term: u64, voter: &str) -> Input {
    Input::VoteReply(VoteReply { term, voter: voter.into(), granted: false, pre_vote: false })
}

fn vote_replies(out: &[Output]) -> Vec<VoteReply> {
    out.iter()
        .filter_map(|o| match o {
            Output::SendVoteReply { reply, .. } => Some(reply.clone()),
            _ => None,
        })
        .collect()
}

fn acks(out: &[Output]) -> Vec<(String, Ack)> {
    out.iter()
        .filter_map(|o| match o {
            Output::SendAck { to, ack } => Some((to.clone(), ack.clone())),
            _ => None,
        })
        .collect()
}

fn confirms(out: &[Output]) -> Vec<AckConfirm> {
    out.iter()
        .filter_map(|o| match o {
            Output::AckReply { confirm, .. } => Some(confirm.clone()),
            _ => None,
        })
        .collect()
}

fn requests(out: &[Output]) -> Vec<VoteRequest> {
    out.iter()
        .filter_map(|o| match o {
            Output::BroadcastVoteRequest(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

fn heartbeats(out: &[Output]) -> Vec<u64> {
    out.iter()
        .filter_map(|o| match o {
            Output::BroadcastHeartbeat { hb, .. } => Some(*hb),
            _ => None,
        })
        .collect()
}

/// `a` elected leader of term 1 in `a, b, c` at the returned moment.
fn leader_a() -> (ElectionCore, Duration) {
    let (mut a, _) = started("a");
    let t = a.next_deadline();
    let out = a.step(t, Input::Tick);
    assert_eq!(a.role(), Role::PreCandidate);
    assert_eq!(requests(&out), vec![VoteRequest { term: 1, candidate: "a".into(), pre_vote: true, transfer: false }]);
    a.step(t, grant(1, "b", true));
    assert_eq!((a.role(), a.term()), (Role::Candidate, 1));
    let out = a.step(t, grant(1, "c", false));
    assert_eq!(a.role(), Role::Leader);
    assert_eq!(heartbeats(&out), vec![1], "a new leader heartbeats at once");
    assert!(matches!(out[0], Output::RoleChanged { role: Role::Leader, term: 1, .. }));
    (a, t)
}

fn ack(term: u64, node: &str, n: u64, hb: u64, applied_seq: u64) -> Input {
    Input::Ack { ack: Ack { term, node: node.into(), ack: n, hb, applied_seq }, may_confirm: true }
}

// ----- campaigning -----

#[test]
fn election_no_campaign_before_membership_or_during_quarantine() {
    let mut core = ElectionCore::new(cfg("a"), 1, Duration::ZERO, PersistedVote::default());
    let q = cfg("a").restart_quarantine();
    assert!(core.next_deadline() >= q, "the first timeout falls after the quarantine");
    // No membership yet: timeouts pass without a campaign.
    for i in 1..10 {
        let out = core.step(q * i, Input::Tick);
        assert!(requests(&out).is_empty());
        assert_eq!(core.role(), Role::Follower);
    }
    core.step(q * 10, Input::Membership(ids(&["a", "b", "c"])));
    let t = core.next_deadline();
    let out = core.step(t, Input::Tick);
    assert_eq!(core.role(), Role::PreCandidate);
    assert_eq!(core.term(), 0, "a pre-vote changes no term");
    assert!(out.contains(&Output::Candidacy { state: CandidacyState::Started, pre_vote: true, term: 1 }));
}

#[test]
fn election_prevote_then_vote_then_leader() {
    let (a, _) = leader_a();
    assert_eq!(a.leader().map(String::as_str), Some("a"));
}

#[test]
fn election_votes_count_only_from_members_and_once() {
    let (mut a, _) = started_among("a", &["a", "b", "c", "d", "e"]);
    let t = a.next_deadline();
    a.step(t, Input::Tick);
    a.step(t, grant(1, "b", true));
    a.step(t, grant(1, "b", true));
    a.step(t, grant(1, "stranger", true));
    a.step(t, grant(2, "c", true)); // a pre-vote for another term
    a.step(t, grant(0, "c", false)); // a real vote while pre-voting
    assert_eq!(a.role(), Role::PreCandidate);
    a.step(t, grant(1, "c", true));
    assert_eq!((a.role(), a.term()), (Role::Candidate, 1));
    a.step(t, grant(1, "b", false));
    a.step(t, grant(1, "b", false));
    a.step(t, grant(1, "a", false));
    a.step(t, grant(1, "x", false));
    assert_eq!(a.role(), Role::Candidate);
    a.step(t, grant(1, "e", false));
    assert_eq!(a.role(), Role::Leader);
}

#[test]
fn election_campaign_round_times_out_and_restarts_with_prevote() {
    let (mut a, _) = started("a");
    let t = a.next_deadline();
    a.step(t, Input::Tick);
    a.step(t, grant(1, "b", true));
    assert_eq!(a.role(), Role::Candidate);
    // A real campaign round lasts a random [election_min / 4, election_min / 2).
    let t2 = a.next_deadline();
    assert!(t2 >= t + ms(187) && t2 < t + ms(375), "{:?}", t2 - t);
    let out = a.step(t2, Input::Tick);
    assert!(out.contains(&Output::Candidacy { state: CandidacyState::Abandoned, pre_vote: false, term: 1 }));
    assert_eq!((a.role(), a.term()), (Role::PreCandidate, 1));
    assert_eq!(requests(&out)[0].term, 2);
    // A real vote for the old term no longer counts.
    a.step(t2, grant(1, "c", false));
    assert_eq!(a.role(), Role::PreCandidate);
}

#[test]
fn election_a_split_vote_ends_the_round_early() {
    let (mut a, _) = started_among("a", &["a", "b", "c", "d"]);
    let t = a.next_deadline();
    a.step(t, Input::Tick);
    a.step(t, grant(1, "b", true));
    a.step(t, grant(1, "c", true));
    assert_eq!(a.role(), Role::Candidate);
    let round_end = a.next_deadline();
    // b grants, c and d refuse: 2 of 4 at most, the vote split.
    a.step(t + ms(5), grant(1, "b", false));
    a.step(t + ms(6), refuse(1, "c"));
    assert_eq!(a.next_deadline(), round_end, "still winnable");
    a.step(t + ms(7), refuse(1, "d"));
    let early = a.next_deadline();
    assert!(early >= t + ms(7) + ms(187) && early < t + ms(7) + ms(375));
    assert_eq!(a.role(), Role::Candidate);
}

// ----- voting -----

#[test]
fn election_one_vote_per_term() {
    let (mut c, t) = started("c");
    let out = c.step(t, vote_request(3, "a", false));
    assert_eq!(vote_replies(&out), vec![VoteReply { term: 3, voter: "c".into(), granted: true, pre_vote: false }]);
    assert_eq!(c.term(), 3);
    let deadline = c.next_deadline();
    assert!(deadline >= t + ms(750), "granting a vote resets the election timer");
    let out = c.step(t, vote_request(3, "b", false));
    assert!(!vote_replies(&out)[0].granted);
    // The same candidate may ask again (a duplicate request).
    let out = c.step(t, vote_request(3, "a", false));
    assert!(vote_replies(&out)[0].granted);
    // Lower terms are refused with ours.
    let out = c.step(t, vote_request(2, "b", false));
    assert_eq!(vote_replies(&out)[0], VoteReply { term: 3, voter: "c".into(), granted: false, pre_vote: false });
}

#[test]
fn election_prevote_needs_a_higher_term_and_changes_nothing() {
    let (mut c, t) = started("c");
    c.step(t, vote_request(2, "a", false));
    assert_eq!(c.term(), 2);
    let before = c.next_deadline();
    let out = c.step(t + ms(1), vote_request(2, "b", true));
    assert_eq!(vote_replies(&out)[0], VoteReply { term: 2, voter: "c".into(), granted: false, pre_vote: true });
    let out = c.step(t + ms(1), vote_request(3, "b", true));
    assert_eq!(vote_replies(&out)[0], VoteReply { term: 3, voter: "c".into(), granted: true, pre_vote: true });
    assert_eq!(c.term(), 2);
    assert_eq!(c.next_deadline(), before, "a pre-vote resets no timer");
}

#[test]
fn election_lease_stickiness_refuses_votes_without_raising_the_term() {
    let (mut c, t) = started("c");
    c.step(t, heartbeat(4, "a", 1));
    for pre_vote in [true, false] {
        let out = c.step(t + ms(749), vote_request(9, "b", pre_vote));
        assert!(!vote_replies(&out)[0].granted);
        assert_eq!(vote_replies(&out)[0].term, 4);
        assert_eq!((c.term(), c.leader().map(String::as_str)), (4, Some("a")));
    }
    // Unless the leader handed over.
    let out = c.step(
        t + ms(749),
        Input::VoteRequest(VoteRequest { term: 5, candidate: "b".into(), pre_vote: false, transfer: true }),
    );
    assert!(vote_replies(&out)[0].granted);
    assert_eq!(c.term(), 5);
}

#[test]
fn election_stickiness_ends_after_election_min() {
    let (mut c, t) = started("c");
    c.step(t, heartbeat(4, "a", 1));
    let out = c.step(t + ms(750), vote_request(5, "b", true));
    assert!(vote_replies(&out)[0].granted);
    let out = c.step(t + ms(750), vote_request(5, "b", false));
    assert!(vote_replies(&out)[0].granted);
    assert_eq!((c.term(), c.leader()), (5, None));
}

#[test]
fn election_learning_a_term_from_its_leader_bars_voting_in_it() {
    let (mut c, t) = started("c");
    c.step(t, heartbeat(4, "a", 1));
    let out = c.step(t + ms(2000), vote_request(4, "b", false));
    assert!(!vote_replies(&out)[0].granted);
}

#[test]
fn election_leader_refuses_votes_and_keeps_its_term() {
    let (mut a, t) = leader_a();
    for pre_vote in [true, false] {
        let out = a.step(t + ms(10), vote_request(7, "b", pre_vote));
        assert!(!vote_replies(&out)[0].granted);
    }
    assert_eq!((a.role(), a.term()), (Role::Leader, 1));
}

#[test]
fn election_restarted_node_keeps_its_vote_refuses_votes_during_quarantine_and_acks_at_once() {
    let q = cfg("c").restart_quarantine();
    // c voted for b in term 3 before it went down.
    let disk = PersistedVote { term: 3, voted_for: Some("b".into()), barred: false };
    let start = ms(50_000);
    let mut c = ElectionCore::new(cfg("c"), 3, start, disk.clone());
    assert_eq!(c.term(), 3);
    assert_eq!(c.persisted(), disk);
    c.step(start, Input::Membership(ids(&["a", "b", "c"])));
    assert!(c.in_quarantine(start + q - ms(1)));
    assert!(!c.in_quarantine(start + q));
    // Inside the quarantine: no pre-vote, no vote, and the term does not move.
    let out = c.step(start + ms(100), vote_request(4, "a", true));
    assert!(!vote_replies(&out)[0].granted);
    let out = c.step(start + ms(100), vote_request(4, "a", false));
    assert!(!vote_replies(&out)[0].granted);
    assert_eq!(c.term(), 3);
    // After it: still no second vote in term 3 ...
    let out = c.step(start + q, vote_request(3, "a", false));
    assert!(!vote_replies(&out)[0].granted, "one vote per term, across restarts");
    // ... and it follows a leader of term 3 and acks at once.
    let out = c.step(start + q + ms(1), heartbeat(3, "b", 1));
    assert_eq!(acks(&out).len(), 1);
    assert_eq!((c.term(), c.leader().map(String::as_str)), (3, Some("b")));
}

#[test]
fn election_a_restarted_node_takes_a_handed_over_leadership_even_in_quarantine() {
    let start = ms(50_000);
    let mut c = ElectionCore::new(cfg("c"), 3, start, PersistedVote::default());
    c.step(start, Input::Membership(ids(&["a", "b", "c"])));
    c.step(start + ms(10), heartbeat(3, "b", 1));
    assert!(c.in_quarantine(start + ms(20)));
    let out = c.step(start + ms(20), Input::TimeoutNow(TimeoutNow { term: 3, leader: "b".into() }));
    assert_eq!((c.role(), c.term()), (Role::Candidate, 4));
    assert!(requests(&out).iter().any(|r| r.transfer && !r.pre_vote));
}

// ----- terms and heartbeats -----

#[test]
fn election_higher_term_heartbeat_deposes_a_leader() {
    let (mut a, t) = leader_a();
    let out = a.step(t + ms(5), heartbeat(2, "b", 1));
    assert_eq!((a.role(), a.term(), a.leader().map(String::as_str)), (Role::Follower, 2, Some("b")));
    // The new term is persisted before anything else happens, then the role change.
    assert_eq!(out[0], Output::Persist(PersistedVote { term: 2, voted_for: None, barred: true }));
    assert!(matches!(out[1], Output::RoleChanged { role: Role::Follower, term: 2, .. }));
    assert!(!a.leader_lease_holds(t + ms(5)));
}

#[test]
fn election_equal_term_heartbeat_from_another_leader_makes_a_leader_step_down() {
    let (mut a, t) = leader_a();
    a.step(t + ms(5), heartbeat(1, "b", 1));
    assert_eq!(a.role(), Role::Follower);
    assert_eq!(a.term(), 1);
}

#[test]
fn election_own_heartbeat_echo_is_ignored() {
    let (mut a, t) = leader_a();
    let out = a.step(t + ms(1), heartbeat(1, "a", 1));
    assert!(out.is_empty());
    assert_eq!(a.role(), Role::Leader);
    // A heartbeat from this node's earlier incarnation teaches the term, barred.
    let (mut fresh, t) = started("a");
    fresh.step(t, heartbeat(6, "a", 40));
    assert_eq!((fresh.term(), fresh.leader()), (6, None));
    let out = fresh.step(t + ms(1), vote_request(6, "b", false));
    assert!(!vote_replies(&out)[0].granted);
}

#[test]
fn election_lower_term_heartbeat_is_answered_with_the_newer_term_only() {
    let (mut c, t) = started("c");
    c.step(t, heartbeat(5, "b", 1));
    let deadline = c.next_deadline();
    let out = c.step(t + ms(10), heartbeat(4, "a", 9));
    let sent = acks(&out);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, "a");
    assert_eq!((sent[0].1.term, sent[0].1.ack), (5, 0));
    assert_eq!((c.term(), c.leader().map(String::as_str)), (5, Some("b")));
    assert_eq!(c.next_deadline(), deadline, "a stale heartbeat resets no timer");
    // And the deposed leader steps down on it.
    let (mut a, t) = leader_a();
    let out = a.step(t + ms(10), Input::Ack { ack: sent[0].1.clone(), may_confirm: true });
    assert_eq!((a.role(), a.term()), (Role::Follower, 5));
    assert!(!confirms(&out)[0].confirmed);
}

#[test]
fn election_follower_ignores_a_second_leader_of_its_term() {
    let (mut c, t) = started("c");
    c.step(t, heartbeat(5, "a", 1));
    let out = c.step(t + ms(10), heartbeat(5, "b", 1));
    assert!(acks(&out).is_empty());
    assert_eq!(c.leader().map(String::as_str), Some("a"));
}

#[test]
fn election_higher_term_vote_reply_makes_a_candidate_follow() {
    let (mut a, _) = started("a");
    let t = a.next_deadline();
    a.step(t, Input::Tick);
    let out = a.step(t, Input::VoteReply(VoteReply { term: 8, voter: "b".into(), granted: false, pre_vote: true }));
    assert!(out.contains(&Output::Candidacy { state: CandidacyState::Abandoned, pre_vote: true, term: 1 }));
    assert_eq!((a.role(), a.term()), (Role::Follower, 8));
}

#[test]
fn election_observed_term_moves_past_it_without_a_vote() {
    let (mut a, t) = leader_a();
    a.step(t + ms(1), Input::ObservedTerm(40));
    assert_eq!((a.role(), a.term()), (Role::Follower, 40));
    let out = a.step(t + ms(2), vote_request(40, "b", false));
    assert!(!vote_replies(&out)[0].granted);
    a.step(t + ms(3), Input::ObservedTerm(3));
    assert_eq!(a.term(), 40);
}

#[test]
fn election_members_only_grow_and_only_from_membership() {
    let (mut c, t) = started("c");
    c.step(t, Input::Membership(ids(&["a"])));
    assert_eq!(c.members(), &ids(&["a", "b", "c"]), "a smaller list removes no one");
    c.step(t, Input::Membership(ids(&["d"])));
    assert_eq!(c.members(), &ids(&["a", "b", "c", "d"]));
}

// ----- CheckQuorum and reachability -----

#[test]
fn election_check_quorum_steps_down_without_majority_acks() {
    let (mut a, t) = leader_a();
    // b acks regularly, c never does: 2 of 3 is a majority.
    let mut now = t;
    let mut n = 0;
    while now < t + ms(3000) {
        now = a.next_deadline();
        let out = a.step(now, Input::Tick);
        for hb in heartbeats(&out) {
            n += 1;
            a.step(now, ack(1, "b", n, hb, 0));
        }
        if out.contains(&Output::Reachability { peer: "c".into(), reachable: false }) {
            assert_eq!(now, t + ms(1000), "c unreachable one window after office");
        }
        assert_eq!(a.role(), Role::Leader);
    }
    // Now b falls silent too: down one window after b's last ack.
    let last = now;
    while a.role() == Role::Leader {
        now = a.next_deadline();
        a.step(now, Input::Tick);
    }
    assert_eq!(now, last + ms(1000));
    assert_eq!(a.term(), 1);
}

// ----- leases -----

#[test]
fn election_follower_lease_is_anchored_at_the_ack_send_time() {
    let (mut c, t) = started("c");
    let out = c.step(t, heartbeat(2, "a", 1));
    let (to, sent) = acks(&out).remove(0);
    assert_eq!((to.as_str(), sent.term, sent.hb), ("a", 2, 1));
    assert!(!c.read_lease_holds(t), "no lease before a confirmation");
    // Unconfirmed, wrong leader, wrong term: no lease.
    c.step(t + ms(300), Input::AckConfirm(AckConfirm { term: 2, leader: "a".into(), ack: sent.ack, confirmed: false }));
    c.step(t + ms(300), Input::AckConfirm(AckConfirm { term: 2, leader: "b".into(), ack: sent.ack, confirmed: true }));
    c.step(t + ms(300), Input::AckConfirm(AckConfirm { term: 1, leader: "a".into(), ack: sent.ack, confirmed: true }));
    assert!(!c.read_lease_holds(t + ms(300)));
    // The confirmation arrives 300 ms late; the lease runs from the send time.
    c.step(t + ms(300), Input::AckConfirm(AckConfirm { term: 2, leader: "a".into(), ack: sent.ack, confirmed: true }));
    assert!(c.read_lease_holds(t + ms(679)));
    assert!(!c.read_lease_holds(t + ms(680)));
    assert_eq!(c.read_lease_until(t + ms(400)), Some(t + ms(680)));
    assert_eq!(c.read_lease_until(t + ms(680)), None);
    // AckNow acks earn leases too; a term change drops the lease.
    let out = c.step(t + ms(400), Input::AckNow { applied_seq: 12 });
    let (_, now_ack) = acks(&out).remove(0);
    assert_eq!((now_ack.hb, now_ack.applied_seq), (0, 12));
    c.step(
        t + ms(450),
        Input::AckConfirm(AckConfirm { term: 2, leader: "a".into(), ack: now_ack.ack, confirmed: true }),
    );
    assert_eq!(c.read_lease_until(t + ms(450)), Some(t + ms(1080)));
    c.step(t + ms(500), heartbeat(3, "b", 1));
    assert!(!c.read_lease_holds(t + ms(500)));
}

#[test]
fn election_leader_confirms_only_under_its_own_lease() {
    let (mut a, t) = leader_a();
    assert!(!a.leader_lease_holds(t), "no lease before acks");
    // An ack of no heartbeat (an AckNow) gives no lease, so it is not confirmed.
    let out = a.step(t + ms(20), ack(1, "b", 1, 0, 5));
    assert!(!confirms(&out)[0].confirmed);
    // b acks heartbeat 1 (sent at t): with a itself that is 2 of 3.
    let out = a.step(t + ms(30), ack(1, "b", 2, 1, 6));
    assert_eq!(confirms(&out)[0], AckConfirm { term: 1, leader: "a".into(), ack: 2, confirmed: true });
    assert!(a.leader_lease_holds(t + ms(679)));
    assert!(!a.leader_lease_holds(t + ms(680)), "the lease runs from the heartbeat's send time");
    assert_eq!(a.read_lease_until(t + ms(100)), Some(t + ms(680)));
    assert_eq!(a.follower_applied_seq("b"), Some(6));
    // Bound on b: receipt of the confirmed ack + lease * (1 + drift) = 30 + 714.
    assert_eq!(a.follower_lease_bound("b"), Some(t + ms(744)));
    // c voted for a in term 1, so it dropped every earlier lease: its bound is the
    // office itself. b acked in term 1, which proves the same.
    assert_eq!(a.follower_lease_bound("c"), Some(t));
    assert_eq!(a.follower_lease_bound("nobody"), None);
    // After the lease lapsed, acks are answered but not confirmed, bounds unchanged.
    let out = a.step(t + ms(690), ack(1, "b", 3, 0, 7));
    assert!(!confirms(&out)[0].confirmed);
    assert_eq!(a.follower_lease_bound("b"), Some(t + ms(744)));
}

#[test]
fn election_leader_lease_from_a_majority_of_five() {
    let (mut a, _) = started_among("a", &["a", "b", "c", "d", "e"]);
    let t = a.next_deadline();
    a.step(t, Input::Tick);
    a.step(t, grant(1, "b", true));
    a.step(t, grant(1, "c", true));
    a.step(t, grant(1, "b", false));
    a.step(t, grant(1, "c", false));
    assert_eq!(a.role(), Role::Leader);
    let t1 = t + ms(100);
    let out = a.step(t1, Input::Tick);
    assert_eq!(heartbeats(&out), vec![2]);
    a.step(t1 + ms(5), ack(1, "b", 10, 2, 0));
    assert!(!a.leader_lease_holds(t1 + ms(5)));
    // c acked only heartbeat 1 (sent at t): the majority {a, b, c} acked hb >= 1.
    let out = a.step(t1 + ms(6), ack(1, "c", 11, 1, 0));
    assert!(confirms(&out)[0].confirmed);
    assert_eq!(a.read_lease_until(t1 + ms(6)), Some(t + ms(680)));
    a.step(t1 + ms(7), ack(1, "d", 12, 2, 0));
    assert_eq!(a.read_lease_until(t1 + ms(7)), Some(t1 + ms(680)));
}

#[test]
fn election_reachability_follows_acks() {
    let (mut a, t) = leader_a();
    let mut out = Vec::new();
    let mut now = t;
    while now < t + ms(1000) {
        now = a.next_deadline();
        out = a.step(now, Input::Tick);
        // b keeps the leader in office
        a.step(now, ack(1, "b", now.as_millis() as u64, 0, 0));
    }
    assert!(out.contains(&Output::Reachability { peer: "c".into(), reachable: false }));
    let v: Vec<_> = a.followers().map(|f| (f.id.clone(), f.reachable)).collect();
    assert_eq!(v, vec![("b".to_string(), true), ("c".to_string(), false)]);
    let out = a.step(now, ack(1, "c", 1, 0, 0));
    assert!(out.contains(&Output::Reachability { peer: "c".into(), reachable: true }));
}

// ----- transfer -----

#[test]
fn election_transfer_hands_over_to_the_freshest_follower() {
    let (mut a, t) = leader_a();
    a.step(t + ms(10), ack(1, "b", 1, 1, 9));
    a.step(t + ms(20), ack(1, "c", 1, 1, 3));
    let out = a.step(t + ms(30), Input::TransferLeadership { to: None });
    assert_eq!((a.role(), a.term(), a.leader()), (Role::Follower, 1, None));
    assert!(!a.leader_lease_holds(t + ms(30)), "the old leader loses its lease at once");
    assert!(out.contains(&Output::SendTimeoutNow { to: "c".into(), msg: TimeoutNow { term: 1, leader: "a".into() } }));

    // c, following a, campaigns at once with `transfer`, and b (sticky) grants.
    let (mut c, tc) = started("c");
    c.step(tc, heartbeat(1, "a", 1));
    let out = c.step(tc + ms(40), Input::TimeoutNow(TimeoutNow { term: 1, leader: "a".into() }));
    assert_eq!((c.role(), c.term()), (Role::Candidate, 2));
    let req = requests(&out).remove(0);
    assert!(req.transfer && !req.pre_vote);
    let (mut b, tb) = started("b");
    b.step(tb, heartbeat(1, "a", 1));
    let out = b.step(tb + ms(41), Input::VoteRequest(req.clone()));
    assert!(vote_replies(&out)[0].granted);
    let out = a.step(t + ms(41), Input::VoteRequest(req));
    assert!(vote_replies(&out)[0].granted, "the old leader votes for its successor");
    c.step(tc + ms(42), grant(2, "b", false));
    assert_eq!(c.role(), Role::Leader);
}

#[test]
fn election_transfer_to_a_named_follower_goes_there_only_if_it_acked_this_term() {
    let sends_to = |out: &[Output]| {
        out.iter().find_map(|o| match o {
            Output::SendTimeoutNow { to, .. } => Some(to.clone()),
            _ => None,
        })
    };
    // b acked most recently, yet the hand-over names c: c it is.
    let (mut a, t) = leader_a();
    a.step(t + ms(10), ack(1, "c", 1, 1, 3));
    a.step(t + ms(20), ack(1, "b", 1, 1, 9));
    let out = a.step(t + ms(30), Input::TransferLeadership { to: Some("c".into()) });
    assert_eq!((a.role(), sends_to(&out)), (Role::Follower, Some("c".to_string())));
    // Naming itself, a stranger, or a follower that never acked: the freshest follower.
    for named in ["a", "z", "c"] {
        let (mut a, t) = leader_a();
        a.step(t + ms(10), ack(1, "b", 1, 1, 9));
        let out = a.step(t + ms(30), Input::TransferLeadership { to: Some(named.into()) });
        assert_eq!((a.role(), sends_to(&out)), (Role::Follower, Some("b".to_string())), "named {named}");
    }
}

#[test]
fn election_timeout_now_is_obeyed_only_from_the_current_leader_and_term() {
    let (mut c, t) = started("c");
    c.step(t, heartbeat(3, "a", 1));
    for msg in [TimeoutNow { term: 2, leader: "a".into() }, TimeoutNow { term: 3, leader: "b".into() }] {
        c.step(t + ms(1), Input::TimeoutNow(msg));
        assert_eq!((c.role(), c.term()), (Role::Follower, 3));
    }
    // A leader with no follower that ever acked just steps down.
    let (mut a, t) = leader_a();
    let out = a.step(t + ms(1), Input::TransferLeadership { to: None });
    assert_eq!(a.role(), Role::Follower);
    assert!(!out.iter().any(|o| matches!(o, Output::SendTimeoutNow { .. })));
}

// ----- odd inputs -----

#[test]
fn election_odd_inputs_do_not_panic() {
    let (mut a, t) = leader_a();
    let odd = vec![
        ack(1, "nobody", 1, 1, 1),
        ack(0, "b", 1, 1, 1),
        ack(1, "b", 1, u64::MAX, u64::MAX),
        ack(1, "b", 1, u64::MAX, u64::MAX),
        ack(1, "a", 1, 1, 1),
        Input::AckConfirm(AckConfirm { term: 1, leader: "zz".into(), ack: u64::MAX, confirmed: true }),
        Input::VoteReply(VoteReply { term: 1, voter: "zz".into(), granted: true, pre_vote: false }),
        vote_request(0, "", false),
        Input::TimeoutNow(TimeoutNow { term: u64::MAX, leader: "a".into() }),
        Input::Heartbeat { term: 1, leader: String::new(), hb: 0, applied_seq: 0 },
        Input::Membership(BTreeSet::new()),
        Input::AckNow { applied_seq: 1 },
    ];
    for input in odd {
        a.step(t + ms(1), input);
    }
    assert_eq!((a.role(), a.term()), (Role::Follower, 1), "only the equal-term heartbeat deposed it");
    // Time running backwards is taken as standing still.
    a.step(Duration::ZERO, Input::Tick);
    a.step(Duration::MAX, Input::Tick);
    a.step(Duration::MAX, vote_request(u64::MAX, "b", false));
    a.step(
        Duration::MAX,
        Input::VoteReply(VoteReply { term: u64::MAX, voter: "b".into(), granted: true, pre_vote: true }),
    );
    let _ = a.next_deadline();
    // An invalid configuration makes no panic either.
    let bad = ElectionConfig { election_min: ms(5), election_max: ms(1), ..cfg("a") };
    let mut core = ElectionCore::new(bad, 1, Duration::MAX, PersistedVote::default());
    core.step(Duration::MAX, Input::Membership(ids(&["a"])));
    core.step(Duration::MAX, Input::Tick);
}

#[test]
fn election_single_member_elects_itself() {
    let (mut a, _) = started_among("a", &["a"]);
    let t = a.next_deadline();
    a.step(t, Input::Tick);
    assert_eq!((a.role(), a.term()), (Role::Leader, 1));
    assert!(a.leader_lease_holds(t));
    assert!(!a.leader_lease_holds(t + ms(680)));
}
