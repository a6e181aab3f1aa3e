//! What a leader does: take office, heartbeat, answer acks (confirming them only under
//! its own lease, and raising its bound on the follower's lease when it does), step down
//! by CheckQuorum, track reachability, and hand leadership over.

use std::collections::BTreeSet;
use std::time::Duration;

use instaface_bus::messages::{Ack, AckConfirm, TimeoutNow};
use instaface_bus::NodeId;

use super::core::{ElectionCore, State};
use super::lease::Tenure;
use super::signals::Output;

impl ElectionCore {
    /// Takes office at `now` (having won with the votes of `voters`) and heartbeats at
    /// once. Voters, and the leader of the term just before this one, hold no earlier
    /// lease (see [`Tenure::new`]).
    pub(super) fn become_leader(&mut self, now: Duration, voters: &BTreeSet<NodeId>, out: &mut Vec<Output>) {
        let previous_leader =
            self.last_leader.as_ref().filter(|(term, _)| term.saturating_add(1) == self.term).map(|(_, id)| id.clone());
        let followers = self
            .members
            .iter()
            .filter(|m| **m != self.cfg.id)
            .map(|m| {
                let lease_free =
                    self.forget_earlier_leases || voters.contains(m) || previous_leader.as_ref() == Some(m);
                (m.clone(), lease_free)
            })
            .collect::<Vec<_>>();
        self.state = State::Leader(Tenure::new(now, followers, self.lease_bound_span));
        self.set_leader(Some(self.cfg.id.clone()));
        self.broadcast_heartbeat(now, out);
    }

    fn broadcast_heartbeat(&mut self, now: Duration, out: &mut Vec<Output>) {
        let State::Leader(t) = &mut self.state else {
            return;
        };
        let hb = t.send_heartbeat(now, self.cfg.lease, self.cfg.heartbeat);
        out.push(Output::BroadcastHeartbeat { term: self.term, hb, members: self.members.iter().cloned().collect() });
    }

    /// CheckQuorum first (a leader without a majority's acks within the window steps
    /// down), then reachability, then the heartbeat if due.
    pub(super) fn leader_timers(&mut self, now: Duration, out: &mut Vec<Output>) {
        let window = self.cfg.check_quorum_window();
        let State::Leader(t) = &mut self.state else {
            return;
        };
        if now >= t.quorum_deadline(window) {
            tracing::info!(term = self.term, "no acks from a majority within the window; stepping down");
            self.become_follower(None, out);
            return;
        }
        for (peer, reachable) in t.update_reachability(now, window) {
            out.push(Output::Reachability { peer, reachable });
        }
        let heartbeat_due = now >= t.next_heartbeat();
        if heartbeat_due {
            self.broadcast_heartbeat(now, out);
        }
    }

    /// Answers every ack. It is confirmed only when it is of our term, from a follower,
    /// the data path allows it (`may_confirm`) and our lease holds once it is counted;
    /// confirming raises that follower's lease bound to `now + lease * (1 + drift)`.
    pub(super) fn on_ack(&mut self, now: Duration, ack: Ack, may_confirm: bool, out: &mut Vec<Output>) {
        if ack.node == self.cfg.id {
            return;
        }
        if ack.term > self.term {
            self.raise_term(ack.term, out);
        }
        let mut confirmed = false;
        let lease = self.cfg.lease;
        let until = now.saturating_add(self.lease_bound_span);
        if let (true, State::Leader(t)) = (ack.term == self.term, &mut self.state) {
            if let Some(became_reachable) = t.record_ack(&ack.node, now, ack.hb, ack.applied_seq) {
                if became_reachable {
                    out.push(Output::Reachability { peer: ack.node.clone(), reachable: true });
                }
                confirmed = may_confirm && t.lease_until(lease).is_some_and(|u| now < u);
                if confirmed {
                    t.extend_bound(&ack.node, until);
                }
            }
        }
        out.push(Output::AckReply {
            to: ack.node,
            confirm: AckConfirm { term: self.term, leader: self.cfg.id.clone(), ack: ack.ack, confirmed },
        });
    }

    /// Hand-over: step down at once (no more heartbeats, no lease) and tell `to` — when
    /// it is a follower that acked this term — or else the most up-to-date follower to
    /// campaign.
    pub(super) fn transfer_leadership(&mut self, _now: Duration, to: Option<NodeId>, out: &mut Vec<Output>) {
        let State::Leader(t) = &self.state else {
            return;
        };
        let target = to.filter(|id| t.acked_this_term(id)).or_else(|| t.transfer_target().cloned());
        self.become_follower(None, out);
        if let Some(to) = target {
            out.push(Output::SendTimeoutNow { to, msg: TimeoutNow { term: self.term, leader: self.cfg.id.clone() } });
        }
    }
}
