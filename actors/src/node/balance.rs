//! Spreading the shards' leaderships over the nodes.
//!
//! Each shard's group elects its leader on its own, so one node can end up leading several
//! groups — after a restart of another node, say — and carry their writes alone. A node
//! that leads more groups than its share (`ceil(shards / members)`) hands one over once the
//! cluster is stable: the group it has led longest, if it has led it for [`SETTLE`] and
//! heard every member ack within an election timeout, to the member leading the fewest
//! groups — one below its share, or nothing moves — as this node's views of the groups
//! say. The hand-over is the election's own leadership transfer (the one SIGTERM uses,
//! simulated with the rest of the core, targets included): the leader steps down and tells
//! the target to campaign at once. A leadership only moves from a node above its share to
//! one below it, so the spreading ends; one hand-over per node per [`SETTLE`] paces it.
//!
//! The decision ([`pick_handover`]) is a pure function of what the groups' views say; the
//! task around it only reads the views and asks the protocol actor.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use instaface_bus::messages::Role;
use instaface_bus::NodeId;
use tokio::task::JoinHandle;

use super::messages::ProtocolMsg;
use super::{lookup, NodeContext};

/// How long a leadership must have lasted, and how long a node waits after a hand-over,
/// before it hands one over.
pub const SETTLE: Duration = Duration::from_secs(5);

/// How often the views are looked at.
const EVERY: Duration = Duration::from_secs(1);

/// What one of this node's groups looks like to the balancer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupLead {
    /// Since when this node has led the group (`None`: it does not lead it).
    pub since: Option<Instant>,
    /// The other members that acked within an election timeout, when this node leads.
    pub acking: Vec<NodeId>,
}

/// Which of this node's groups to hand over now, and to whom, if any: only when it leads
/// more than `ceil(groups / members)` of them, the settled one it has led longest whose
/// every other member acks, to the acking member leading the fewest groups (`leading`:
/// how many each node leads, as this node sees it), if that is below the share.
pub fn pick_handover(
    groups: &[GroupLead],
    members: usize,
    leading: &BTreeMap<NodeId, usize>,
    now: Instant,
) -> Option<(usize, NodeId)> {
    let share = groups.len().div_ceil(members.max(1));
    let led = groups.iter().filter(|g| g.since.is_some()).count();
    if led <= share {
        return None;
    }
    let (k, group) = groups
        .iter()
        .enumerate()
        .filter_map(|(i, g)| Some((i, g.since?, g)))
        .filter(|&(_, since, g)| g.acking.len() + 1 >= members && now.duration_since(since) >= SETTLE)
        .min_by_key(|&(_, since, _)| since)
        .map(|(i, _, g)| (i, g))?;
    let count = |id: &NodeId| leading.get(id).copied().unwrap_or(0);
    let to = group.acking.iter().filter(|id| count(id) < share).min_by_key(|id| (count(id), (*id).clone()))?;
    Some((k, to.clone()))
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
            let mut leading: BTreeMap<NodeId, usize> = BTreeMap::new();
            let mut seen = Vec::with_capacity(groups.len());
            for (ctx, lead) in groups.iter().zip(leads.iter_mut()) {
                let view = ctx.view.borrow().clone();
                members = members.max(view.members.len());
                if let Some(l) = &view.leader {
                    *leading.entry(l.clone()).or_default() += 1;
                }
                let leads_it = view.role == Role::Leader && !ctx.net.unplugged();
                *lead = match (leads_it, *lead) {
                    (true, (term, Some(since))) if term == view.term => (term, Some(since)),
                    (true, _) => (view.term, Some(now)),
                    (false, _) => (view.term, None),
                };
                let acking = view
                    .followers
                    .iter()
                    .filter(|f| f.last_ack.is_some_and(|at| now.duration_since(at) < ctx.cfg.election_min))
                    .map(|f| f.id.clone())
                    .collect();
                seen.push(GroupLead { since: lead.1, acking });
            }
            if last_handover.is_some_and(|at| now.duration_since(at) < SETTLE) {
                continue;
            }
            let Some((k, to)) = pick_handover(&seen, members, &leading, now) else { continue };
            let ctx = &groups[k];
            let Some(protocol) = lookup::<ProtocolMsg>(&ctx.names.protocol) else { continue };
            tracing::info!(shard = ctx.cfg.shard, %to, ?leading, members, "leading more shards than my share: handing one over");
            last_handover = Some(now);
            let _ = protocol.call(|reply| ProtocolMsg::TransferTo(to, reply), Some(ctx.cfg.election_max)).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lead(since: Option<Instant>) -> GroupLead {
        GroupLead { since, acking: vec!["b".into(), "c".into()] }
    }

    fn leading(counts: &[(&str, usize)]) -> BTreeMap<NodeId, usize> {
        counts.iter().map(|(id, n)| (id.to_string(), *n)).collect()
    }

    #[test]
    fn a_node_over_its_share_hands_its_oldest_settled_leadership_to_one_below() {
        let t0 = Instant::now();
        let now = t0 + SETTLE * 3;
        let (old, newer) = (Some(t0), Some(t0 + SETTLE));
        // Three groups, three members: a share of one. `a` leads two, `b` one, `c` none.
        let l = leading(&[("a", 2), ("b", 1)]);
        assert_eq!(pick_handover(&[lead(newer), lead(old), lead(None)], 3, &l, now), Some((1, "c".into())));
        assert_eq!(pick_handover(&[lead(old), lead(None), lead(None)], 3, &leading(&[("a", 1)]), now), None);
        // Two groups, three members: still a share of one.
        assert_eq!(pick_handover(&[lead(old), lead(newer)], 3, &leading(&[("a", 2)]), now), Some((0, "b".into())));
        // Four groups, two members: a share of two.
        let two = |since| GroupLead { since, acking: vec!["b".into()] };
        assert_eq!(
            pick_handover(&[two(old), two(old), two(None), two(None)], 2, &leading(&[("a", 2), ("b", 2)]), now),
            None
        );
        let l = leading(&[("a", 3), ("b", 1)]);
        assert_eq!(pick_handover(&[two(old), two(newer), two(newer), two(None)], 2, &l, now), Some((0, "b".into())));
    }

    #[test]
    fn nothing_moves_before_it_settles_while_a_member_is_silent_or_to_a_node_at_its_share() {
        let t0 = Instant::now();
        let fresh = Some(t0 + SETTLE * 2);
        let now = t0 + SETTLE * 2 + Duration::from_millis(100);
        let l = leading(&[("a", 2)]);
        assert_eq!(pick_handover(&[lead(fresh), lead(fresh)], 3, &l, now), None);
        let silent = GroupLead { since: Some(t0), acking: vec!["b".into()] };
        assert_eq!(pick_handover(&[silent.clone(), lead(fresh)], 3, &l, now), None);
        assert_eq!(pick_handover(&[silent, lead(Some(t0))], 3, &l, now), Some((1, "b".into())));
        // Everyone else at its share already (5 groups, 3 members: a share of 2).
        let five = [lead(Some(t0)), lead(Some(t0)), lead(Some(t0)), lead(None), lead(None)];
        assert_eq!(pick_handover(&five, 3, &leading(&[("a", 3), ("b", 2), ("c", 2)]), now), None);
        assert_eq!(pick_handover(&five, 3, &leading(&[("a", 3), ("b", 2), ("c", 0)]), now), Some((0, "c".into())));
        // One shard: nothing to spread.
        assert_eq!(pick_handover(&[lead(Some(t0))], 3, &leading(&[("a", 1)]), now), None);
    }
}
