//! Campaigning and voting: the election timeout, PreVote, the real vote, counting
//! replies, and campaigning at once on a leader's `TimeoutNow`.

use std::collections::BTreeSet;
use std::time::Duration;

use instaface_bus::messages::{CandidacyState, TimeoutNow, VoteReply, VoteRequest};

use super::core::{Campaign, ElectionCore, State, Vote};
use super::signals::Output;

impl ElectionCore {
    /// No heartbeat from a live leader within the timeout, or a campaign round ran out.
    pub(super) fn on_election_timeout(&mut self, now: Duration, out: &mut Vec<Output>) {
        if let State::Campaign(c) = &self.state {
            out.push(Output::Candidacy { state: CandidacyState::Abandoned, pre_vote: c.pre_vote, term: c.term });
            self.state = State::Follower;
        }
        self.set_leader(None);
        if !self.may_campaign(now) {
            self.reset_election_timer(now);
            return;
        }
        self.start_pre_vote(now, out);
    }

    /// A node campaigns only once it has read the membership and left its quarantine, and
    /// never past [`MAX_TERM`](super::MAX_TERM).
    fn may_campaign(&self, now: Duration) -> bool {
        self.membership_known && now >= self.quarantine_until && self.term < super::MAX_TERM
    }

    /// PreVote: ask whether a majority would vote for us in `term + 1`, changing nothing.
    fn start_pre_vote(&mut self, now: Duration, out: &mut Vec<Output>) {
        let term = self.term.saturating_add(1);
        self.state = State::Campaign(Campaign {
            pre_vote: true,
            term,
            granted: BTreeSet::from([self.cfg.id.clone()]),
            refused: BTreeSet::new(),
        });
        out.push(Output::Candidacy { state: CandidacyState::Started, pre_vote: true, term });
        out.push(Output::BroadcastVoteRequest(VoteRequest {
            term,
            candidate: self.cfg.id.clone(),
            pre_vote: true,
            transfer: false,
        }));
        self.reset_election_timer(now);
        self.check_campaign(now, out);
    }

    /// The real campaign: a new term, our own vote, and a vote request to all.
    fn start_campaign(&mut self, now: Duration, transfer: bool, out: &mut Vec<Output>) {
        self.term = self.term.saturating_add(1);
        self.vote = Vote::For(self.cfg.id.clone());
        self.lease.reset();
        self.set_leader(None);
        let term = self.term;
        self.state = State::Campaign(Campaign {
            pre_vote: false,
            term,
            granted: BTreeSet::from([self.cfg.id.clone()]),
            refused: BTreeSet::new(),
        });
        out.push(Output::Candidacy { state: CandidacyState::Started, pre_vote: false, term });
        out.push(Output::BroadcastVoteRequest(VoteRequest {
            term,
            candidate: self.cfg.id.clone(),
            pre_vote: false,
            transfer,
        }));
        // A round with no winner (a split vote, a lost reply) is over after a short
        // random wait, not a whole election timeout (see `back_off_after_lost_campaign`).
        self.back_off_after_lost_campaign(now);
        self.check_campaign(now, out);
    }

    /// Moves on once a majority of members granted.
    fn check_campaign(&mut self, now: Duration, out: &mut Vec<Output>) {
        let State::Campaign(c) = &self.state else {
            return;
        };
        if c.granted.len() < self.majority() {
            return;
        }
        if c.pre_vote {
            self.start_campaign(now, false, out);
        } else {
            out.push(Output::Candidacy { state: CandidacyState::Won, pre_vote: false, term: c.term });
            let voters = c.granted.clone();
            self.become_leader(now, &voters, out);
        }
    }

    pub(super) fn on_vote_request(&mut self, now: Duration, req: VoteRequest, out: &mut Vec<Output>) {
        if req.candidate == self.cfg.id {
            return; // our own broadcast
        }
        // The restart quarantine stands in for the lease stickiness this node forgot, so
        // like stickiness it gives way to a leader that handed over (and holds no lease).
        let quarantined = !req.transfer && now < self.quarantine_until;
        // Lease stickiness: while a live leader's heartbeat is fresh, or while we lead,
        // refuse without changing any state, unless the leader itself handed over.
        let sticky = !req.transfer
            && (matches!(self.state, State::Leader(_))
                || self.last_heartbeat.is_some_and(|t| now < t.saturating_add(self.cfg.election_min)));
        let granted = if req.pre_vote {
            !quarantined && !sticky && req.term > self.term
        } else if quarantined || sticky || req.term < self.term {
            false
        } else {
            if req.term > self.term {
                self.raise_term(req.term, out);
            }
            let free = self.vote.allows(&req.candidate) && self.leader.as_ref().is_none_or(|l| *l == req.candidate);
            if free {
                self.vote = Vote::For(req.candidate.clone());
                // A pre-candidate of this term gives up: it just helped elect someone.
                self.become_follower(None, out);
                self.reset_election_timer(now);
            }
            free
        };
        // A granted pre-vote answers with the proposed term; anything else with ours.
        let term = if granted && req.pre_vote { req.term } else { self.term };
        out.push(Output::SendVoteReply {
            to: req.candidate,
            reply: VoteReply { term, voter: self.cfg.id.clone(), granted, pre_vote: req.pre_vote },
        });
    }

    pub(super) fn on_vote_reply(&mut self, now: Duration, reply: VoteReply, out: &mut Vec<Output>) {
        if reply.voter == self.cfg.id {
            return;
        }
        if reply.term > self.term && !(reply.granted && reply.pre_vote) {
            self.raise_term(reply.term, out);
            return;
        }
        let is_member = self.members.contains(&reply.voter);
        let term = self.term;
        let State::Campaign(c) = &mut self.state else {
            return;
        };
        let counts = if c.pre_vote {
            reply.pre_vote && reply.term == term.saturating_add(1)
        } else {
            !reply.pre_vote && reply.term == term
        };
        if !(counts && is_member) {
            return;
        }
        if reply.granted {
            c.granted.insert(reply.voter);
            self.check_campaign(now, out);
        } else if !c.pre_vote {
            c.refused.insert(reply.voter);
            // Lost once the rest could not make a majority even if they all granted.
            let undecided = self.members.len() - c.granted.len() - c.refused.len();
            if c.granted.len() + undecided < self.majority() {
                self.back_off_after_lost_campaign(now);
            }
        }
    }

    /// Leadership transfer: campaign at once, skipping PreVote, if the order comes from
    /// our current leader for our current term.
    ///
    /// A node still in its restart quarantine campaigns too: the quarantine keeps it from
    /// helping elect someone while a leader's lease may hold, and the leader that hands
    /// over has already stepped down, holding no lease; its vote for itself is persisted
    /// like any other.
    pub(super) fn on_timeout_now(&mut self, now: Duration, msg: TimeoutNow, out: &mut Vec<Output>) {
        let from_leader = self.leader.as_ref() == Some(&msg.leader) && msg.leader != self.cfg.id;
        if msg.term == self.term
            && from_leader
            && matches!(self.state, State::Follower)
            && self.membership_known
            && self.term < super::MAX_TERM
        {
            self.start_campaign(now, true, out);
        }
    }
}
