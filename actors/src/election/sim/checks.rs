//! The invariants the simulation checks: after every event, never two leaders of one term
//! (ever, across restarts), no leader lease held beside a leader of the same or a higher
//! term, no follower read lease outliving the bound its leader puts on it; and, once the
//! faults heal, convergence.

use instaface_bus::messages::Role;

use super::cluster::Sim;
use crate::election::ElectionCore;

impl Sim {
    /// Remembers the first leader of `term`; a second one is a failure.
    pub(super) fn record_leader(&mut self, term: u64, i: usize) {
        match self.leaders.get(&term) {
            None => {
                self.leaders.insert(term, i);
            }
            Some(&first) if first != i => {
                // Votes survive restarts: a term never has a second leader.
                self.fail(&format!("two leaders of term {term}: {} and {}", self.nodes[first].id, self.nodes[i].id));
            }
            Some(_) => {}
        }
    }

    /// The safety invariants, at this moment.
    pub(super) fn check(&self) -> Option<String> {
        let leaders: Vec<(usize, &ElectionCore)> = self.up().filter(|(_, c)| c.role() == Role::Leader).collect();
        for (k, &(i, a)) in leaders.iter().enumerate() {
            for &(j, b) in &leaders[k + 1..] {
                if a.term() == b.term() {
                    return Some(format!("{} and {} both lead term {}", self.nodes[i].id, self.nodes[j].id, a.term()));
                }
            }
        }
        for &(i, old) in &leaders {
            if !old.leader_lease_holds(self.local(i)) {
                continue;
            }
            for &(j, new) in &leaders {
                if j != i && new.term() >= old.term() {
                    return Some(format!(
                        "{} holds its leader lease of term {} while {} leads term {}",
                        self.nodes[i].id,
                        old.term(),
                        self.nodes[j].id,
                        new.term()
                    ));
                }
            }
        }
        for (f, fc) in self.up() {
            if fc.role() != Role::Follower {
                continue;
            }
            let Some(until) = fc.read_lease_until(self.local(f)) else {
                continue;
            };
            // The follower serves reads until this real moment...
            let lease_end = self.nodes[f].clock.real(until);
            for &(l, lc) in &leaders {
                if l == f || lc.term() < fc.term() {
                    continue;
                }
                // ...and the leader believes it lapsed from this one on.
                let bound = lc.follower_lease_bound(&self.nodes[f].id).map(|b| self.nodes[l].clock.real(b));
                if bound.is_none_or(|b| b < lease_end) {
                    return Some(format!(
                        "{} (term {}) holds a read lease until {:?} but leader {} (term {}) bounds it at {:?}",
                        self.nodes[f].id,
                        fc.term(),
                        lease_end,
                        self.nodes[l].id,
                        lc.term(),
                        bound
                    ));
                }
            }
        }
        None
    }

    /// Every node up, one leader under its lease, every other node following it under a
    /// read lease.
    pub(super) fn converged(&self) -> bool {
        if self.nodes.iter().any(|n| n.core.is_none()) {
            return false;
        }
        let Some(l) = self.current_leader() else {
            return false;
        };
        let Some(lc) = self.nodes[l].core.as_ref() else {
            return false;
        };
        if !lc.leader_lease_holds(self.local(l)) {
            return false;
        }
        self.up().all(|(i, c)| {
            i == l
                || (c.role() == Role::Follower
                    && c.term() == lc.term()
                    && c.leader() == Some(&self.nodes[l].id)
                    && c.read_lease_holds(self.local(i)))
        })
    }
}
