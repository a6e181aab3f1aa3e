//! Spreading the shards' leaderships over the nodes.
//!
//! Each shard's group elects its leader on its own, so one node can end up leading several
//! groups — after a restart of another node, say — and carry their writes alone. A node
//! that leads more groups than its share (`ceil(shards / members)`) hands one over once the
//! cluster is stable: the group it has led longest, if it has led it for [`SETTLE`] and
//! heard every member ack within an election timeout. The hand-over is the election's own
//! leadership transfer (the one SIGTERM uses, simulated with the rest of the core): the
//! leader steps down and tells its most caught-up follower to campaign at once. It takes
//! the target the core picks, so a target that then leads more than its share hands one
//! over in its turn; one hand-over per node per [`SETTLE`] keeps that from flapping.
//!
//! The decision ([`pick_handover`]) is a pure function of what the groups' views say; the
//! task around it only reads the views and asks the protocol actor.

use std::time::{Duration, Instant};

use instaface_bus::messages::Role;
use tokio::task::JoinHandle;

use super::messages::ProtocolMsg;
use super::{lookup, NodeContext};

/// How long a leadership must have lasted, and how long a node waits after a hand-over,
/// before it hands one over.
pub const SETTLE: Duration = Duration::from_secs(5);

/// How often the views are looked at.
const EVERY: Duration = Duration::from_secs(1);

/// What one of this node's groups looks like to the balancer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupLead {
    /// Since when this node has led the group (`None`: it does not lead it).
    pub since: Option<Instant>,
    /// Whether every other member acked within an election timeout.
    pub all_acking: bool,
}

/// Which of this node's groups to hand over now, if any: only when it leads more than
/// `ceil(groups / members)` of them, the settled, fully acked one it has led longest.
pub fn pick_handover(groups: &[GroupLead], members: usize, now: Instant) -> Option<usize> {
    let share = groups.len().div_ceil(members.max(1));
    let led = groups.iter().filter(|g| g.since.is_some()).count();
    if led <= share {
        return None;
    }
    groups
        .iter()
        .enumerate()
        .filter_map(|(i, g)| Some((i, g.since?, g.all_acking)))
        .filter(|&(_, since, acking)| acking && now.duration_since(since) >= SETTLE)
        .min_by_key(|&(_, since, _)| since)
        .map(|(i, _, _)| i)
}

/// Runs the balancer over `groups` (one context per shard) until the process ends.
pub fn spawn(groups: Vec<NodeContext>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut leads: Vec<(u64, Option<Instant>)> = vec![(0, None); groups.len()];
        let mut last_handover: Option<Instant> = None;
        let mut tick = tokio::time::interval(EVERY);
        loop {
            tick.tick().await;
            let now = Instant::now();
            let mut members = 0;
            let mut seen = Vec::with_capacity(groups.len());
            for (ctx, lead) in groups.iter().zip(leads.iter_mut()) {
                let view = ctx.view.borrow().clone();
                members = members.max(view.members.len());
                let leading = view.role == Role::Leader && !ctx.net.unplugged();
                *lead = match (leading, *lead) {
                    (true, (term, Some(since))) if term == view.term => (term, Some(since)),
                    (true, _) => (view.term, Some(now)),
                    (false, _) => (view.term, None),
                };
                let all_acking = view.followers.len() + 1 >= view.members.len()
                    && view
                        .followers
                        .iter()
                        .all(|f| f.last_ack.is_some_and(|at| now.duration_since(at) < ctx.cfg.election_min));
                seen.push(GroupLead { since: lead.1, all_acking });
            }
            if last_handover.is_some_and(|at| now.duration_since(at) < SETTLE) {
                continue;
            }
            let Some(k) = pick_handover(&seen, members, now) else { continue };
            let ctx = &groups[k];
            let Some(protocol) = lookup::<ProtocolMsg>(&ctx.names.protocol) else { continue };
            tracing::info!(
                shard = ctx.cfg.shard,
                led = seen.iter().filter(|g| g.since.is_some()).count(),
                members,
                "leading more shards than my share: handing this one over"
            );
            last_handover = Some(now);
            let _ = protocol.call(ProtocolMsg::Transfer, Some(ctx.cfg.election_max)).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lead(since: Option<Instant>) -> GroupLead {
        GroupLead { since, all_acking: true }
    }

    #[test]
    fn a_node_over_its_share_hands_over_its_oldest_settled_leadership() {
        let t0 = Instant::now();
        let now = t0 + SETTLE * 3;
        let old = Some(t0);
        let newer = Some(t0 + SETTLE);
        // Three groups, three members: a share of one.
        assert_eq!(pick_handover(&[lead(newer), lead(old), lead(None)], 3, now), Some(1));
        assert_eq!(pick_handover(&[lead(old), lead(None), lead(None)], 3, now), None);
        // Two groups, three members: still a share of one.
        assert_eq!(pick_handover(&[lead(old), lead(newer)], 3, now), Some(0));
        // Four groups, two members: a share of two.
        assert_eq!(pick_handover(&[lead(old), lead(old), lead(None), lead(None)], 2, now), None);
        assert_eq!(pick_handover(&[lead(old), lead(newer), lead(newer), lead(None)], 2, now), Some(0));
    }

    #[test]
    fn nothing_moves_before_it_settles_or_while_a_member_is_silent() {
        let t0 = Instant::now();
        let fresh = Some(t0 + SETTLE * 2);
        let now = t0 + SETTLE * 2 + Duration::from_millis(100);
        assert_eq!(pick_handover(&[lead(fresh), lead(fresh)], 3, now), None);
        let silent = GroupLead { since: Some(t0), all_acking: false };
        assert_eq!(pick_handover(&[silent, lead(fresh)], 3, now), None);
        assert_eq!(pick_handover(&[silent, lead(Some(t0))], 3, now), Some(1));
        // One shard: nothing to spread.
        assert_eq!(pick_handover(&[lead(Some(t0))], 3, now), None);
    }
}
