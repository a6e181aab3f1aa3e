//! What the gateway knows of the cluster, for `GET /api/cluster` and the unplug route.
//!
//! The nodes it knows are the **members** of the Redis membership
//! ([`Membership`], re-read by [`spawn_membership_reader`], retrying with backoff while Redis
//! is away and keeping the last membership it read). Nothing else creates an entry: an
//! event, a status answer or a `reachable` report about an id that is not a member — or not
//! a node id at all ([`valid_node_id`]) — is ignored, and a member that leaves the
//! membership is forgotten. Heartbeats (which list members too) are information, not
//! authority: the leader they name is shown only if it is a member. So the view is bounded
//! by the membership, whatever anyone publishes on the bus.
//!
//! Fed from three sources, each overwriting what it knows best:
//! - heartbeats (through the graph client's leader tracking, one tracker per shard, handed
//!   to [`ClusterState::overview`]): each shard's leader and term;
//! - `P.events` ([`ClusterState::observe_event`]): role changes, unplugging, the leader's
//!   view of each follower's reachability, cache counters — as they happen;
//! - each member's status endpoint (`P.node.<id>.status`; shard 0's group's subject when the
//!   graph is split), polled every `cluster_poll` by [`spawn_poller`]: role, term, unplugged
//!   (from peers, from clients), serving, applied seq, lease, cache counters. A member that
//!   does not answer within `status_timeout` is not reachable, and not known to serve.
//!
//! **Shards.** With several shards every node hosts a member of each shard's leader group,
//! and each group has its own leader, term, seqs and cache. A node's entry describes its
//! member of shard 0's group — the group whose status endpoint is polled — so events about
//! another shard's group (`shard` ≠ 0) are ignored here, all but `unplugged`, which
//! concerns the whole node. That includes their `cache` counters: summing them would be
//! undone by the next status answer, which reports shard 0's cache alone. The other shards
//! show in the overview as their leader and term only ([`ShardOverview`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use instaface_bus::graph_client::LeaderInfo;
use instaface_bus::membership::Membership;
use instaface_bus::messages::{Event, EventKind, NodeStatus, Role};
use instaface_bus::{valid_node_id, Bus, NodeId, Subjects};
use tokio::task::JoinHandle;

use crate::model::{CacheCounters, ClusterOverview, NodeOverview, NodeRole, ShardOverview};

/// The shared view. Cheap to clone.
#[derive(Clone, Default)]
pub struct ClusterState {
    view: Arc<Mutex<View>>,
}

#[derive(Default)]
struct View {
    /// The Redis membership as last read, sorted, valid ids only (`None` until a read
    /// succeeds): the nodes this view knows.
    members: Option<Vec<NodeId>>,
    /// What is known of each member (never of anyone else).
    nodes: BTreeMap<NodeId, NodeView>,
}

impl View {
    fn is_member(&self, id: &str) -> bool {
        valid_node_id(id) && self.members.as_ref().is_some_and(|m| m.binary_search_by(|x| x.as_str().cmp(id)).is_ok())
    }

    /// The entry of member `id`, created on first use; `None` for anyone else.
    fn member(&mut self, id: &str) -> Option<&mut NodeView> {
        if !self.is_member(id) {
            return None;
        }
        Some(self.nodes.entry(id.to_owned()).or_default())
    }

    /// What a shard's leader tracker says, as far as the membership vouches for it: the
    /// current leader with its term, and the term of the latest leader heard of if that one
    /// is a member (a stranger's term is not taken).
    fn vouched(&self, info: &LeaderInfo) -> (Option<(NodeId, u64)>, Option<u64>) {
        if !info.leader.as_deref().is_some_and(|l| self.is_member(l)) {
            return (None, None);
        }
        (info.current().map(|(l, t)| (l.clone(), t)), Some(info.term))
    }
}

#[derive(Clone, Debug, Default)]
struct NodeView {
    role: Option<Role>,
    term: u64,
    /// Cut off from its peers.
    unplugged: bool,
    /// Cut off from clients too.
    clients_unplugged: bool,
    /// Serves reads, as of its latest status answer.
    serving: bool,
    applied_seq: u64,
    lease_ms: u64,
    /// When it gave its latest status answer.
    answered_at: Option<Instant>,
    cache: CacheCounters,
    /// Whether it answered the latest status poll (`None` before the first poll).
    answering: Option<bool>,
    /// The latest `reachable` report about this node: (leader, term, reachable).
    leader_says: Option<(NodeId, u64, bool)>,
}

impl ClusterState {
    /// An empty view: no membership read yet.
    pub fn new() -> Self {
        ClusterState::default()
    }

    fn view(&self) -> MutexGuard<'_, View> {
        // Nothing panics while holding the lock; if something did, the data is still usable.
        self.view.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `id` is a member (as of the latest membership read).
    pub fn is_member(&self, id: &str) -> bool {
        self.view().is_member(id)
    }

    /// Applies one monitoring event; one about a node that is not a member (or a report by
    /// one, or about one) changes nothing, nor does one about another shard's leader group
    /// than shard 0's, unless it is `unplugged` (see the module's doc). Returns whether it
    /// was applied.
    pub fn observe_event(&self, event: &Event) -> bool {
        if event.shard != 0 && !matches!(event.kind, EventKind::Unplugged { .. }) {
            return false;
        }
        let mut view = self.view();
        match &event.kind {
            EventKind::Reachable { peer, reachable } => {
                if !view.is_member(&event.node) {
                    return false;
                }
                let Some(node) = view.member(peer) else { return false };
                node.leader_says = Some((event.node.clone(), event.term, *reachable));
                return true;
            }
            EventKind::Invalidation { .. } => return view.is_member(&event.node),
            _ => {}
        }
        let Some(node) = view.member(&event.node) else { return false };
        // An `unplugged` event of another shard carries that group's term.
        if event.shard == 0 {
            node.term = node.term.max(event.term);
        }
        match &event.kind {
            EventKind::Leader { .. } => node.role = Some(Role::Leader),
            EventKind::Follower { .. } => node.role = Some(Role::Follower),
            EventKind::Candidacy { state, pre_vote } => {
                use instaface_bus::messages::CandidacyState::*;
                node.role = match (state, pre_vote) {
                    (Started, true) => Some(Role::PreCandidate),
                    (Started, false) => Some(Role::Candidate),
                    (Abandoned, _) => Some(Role::Follower),
                    // A `leader` event follows.
                    (Won, _) => node.role,
                };
            }
            // The node sends its cumulative counters.
            EventKind::Cache { hits, misses, entries, fills, applied_seq } => {
                node.cache = CacheCounters { hits: *hits, misses: *misses, entries: *entries, fills: *fills };
                node.applied_seq = node.applied_seq.max(*applied_seq);
            }
            EventKind::Unplugged { unplugged, clients } => {
                node.unplugged = *unplugged;
                node.clients_unplugged = *unplugged && *clients;
                // Cut off from clients, it serves nothing from now on. Cut off from its peers
                // only, it serves until its lease runs out: the next poll tells.
                if node.clients_unplugged {
                    node.serving = false;
                }
            }
            EventKind::Write { seq, .. } => node.applied_seq = node.applied_seq.max(*seq),
            EventKind::Reachable { .. } | EventKind::Invalidation { .. } => {}
        }
        true
    }

    /// Applies a member's answer to the status poll (an answer naming a node that is not a
    /// member changes nothing).
    pub fn observe_status(&self, status: NodeStatus) {
        let mut view = self.view();
        let Some(node) = view.member(&status.node) else { return };
        node.role = Some(status.role);
        node.term = status.term;
        node.unplugged = status.unplugged;
        node.clients_unplugged = status.clients_unplugged;
        node.serving = status.serving;
        node.applied_seq = status.applied_seq;
        node.lease_ms = status.lease_ms;
        node.answered_at = Some(Instant::now());
        node.cache = CacheCounters {
            hits: status.cache.hits,
            misses: status.cache.misses,
            entries: status.cache.entries,
            fills: status.cache.fills,
        };
        node.answering = Some(true);
    }

    /// Records that member `id` did not answer the status poll.
    pub fn observe_silence(&self, id: &str) {
        let mut view = self.view();
        let Some(node) = view.member(id) else { return };
        node.answering = Some(false);
        node.lease_ms = 0;
        node.serving = false;
    }

    /// Records the membership read from Redis: ids that are not node ids are left out, and
    /// what was known of former members is forgotten.
    pub fn set_members(&self, members: impl IntoIterator<Item = NodeId>) {
        let (mut valid, invalid): (Vec<NodeId>, Vec<NodeId>) = members.into_iter().partition(|id| valid_node_id(id));
        if !invalid.is_empty() {
            tracing::warn!(?invalid, "ignoring membership entries that are not node ids");
        }
        valid.sort();
        valid.dedup();
        let mut view = self.view();
        view.nodes.retain(|id, _| valid.binary_search(id).is_ok());
        view.members = Some(valid);
    }

    /// The members, as last read from Redis (empty until a read succeeds).
    pub fn members(&self) -> Vec<NodeId> {
        self.view().members.clone().unwrap_or_default()
    }

    /// Whether the membership has been read yet.
    pub fn membership_known(&self) -> bool {
        self.view().members.is_some()
    }

    /// The overview served by `GET /api/cluster`, with `leaders`: what the graph client's
    /// tracker of each shard's leader says, in shard order (shard 0's first; none at all is
    /// taken as shard 0 having heard of no leader).
    pub fn overview(&self, leaders: &[LeaderInfo]) -> ClusterOverview {
        let view = self.view();
        let members = view.members.clone().unwrap_or_default();
        let nothing_heard = LeaderInfo { leader: None, term: 0, seen: None, members: Vec::new(), seq: 0 };
        // A heartbeat is information, the membership the authority: a leader that is not a
        // member is not shown, and its term not taken.
        let (current, heard_term) = view.vouched(leaders.first().unwrap_or(&nothing_heard));
        let max_node_term = view.nodes.values().map(|n| n.term).max().unwrap_or(0);
        let term = match &current {
            Some((_, t)) => *t,
            None => heard_term.unwrap_or(0).max(max_node_term),
        };
        let nodes = members
            .iter()
            .map(|id| {
                let n = view.nodes.get(id).cloned().unwrap_or_default();
                // The current leader's own report wins; an older term's report is stale.
                let leader_denies = match (&n.leader_says, &current) {
                    (Some((said_by, said_term, false)), Some((leader, t))) => said_by == leader && said_term == t,
                    _ => false,
                };
                let reachable = n.answering == Some(true) && !n.unplugged && !leader_denies;
                NodeOverview {
                    id: id.clone(),
                    role: n.role.map(NodeRole::from).unwrap_or(NodeRole::Unknown),
                    term: n.term,
                    reachable,
                    unplugged: n.unplugged,
                    clients_unplugged: n.clients_unplugged,
                    serving: n.serving,
                    applied_seq: n.applied_seq,
                    lease_ms: n.lease_ms,
                    status_age_ms: n.answered_at.map(|t| u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX)),
                    cache: n.cache,
                }
            })
            .collect();
        let leader = current.map(|(l, _)| l);
        // Shard 0's entry is the overview's own leader and term; the others are what their
        // trackers say (no node entry carries their terms).
        let mut shards = vec![ShardOverview { shard: 0, leader: leader.clone(), term }];
        for (shard, info) in (1..).zip(leaders.iter().skip(1)) {
            let (current, heard_term) = view.vouched(info);
            shards.push(match current {
                Some((leader, term)) => ShardOverview { shard, leader: Some(leader), term },
                None => ShardOverview { shard, leader: None, term: heard_term.unwrap_or(0) },
            });
        }
        ClusterOverview { leader, term, members, nodes, shards }
    }
}

/// Reads the membership from Redis once (connecting first if need be); `false` if it could
/// not (the view keeps the membership it last read).
pub async fn refresh_members(
    cluster: &ClusterState,
    membership: &mut Option<Membership>,
    redis_url: &str,
    subjects: &Subjects,
    timeout: Duration,
) -> bool {
    if membership.is_none() {
        match tokio::time::timeout(timeout, Membership::connect(redis_url, subjects)).await {
            Ok(Ok(m)) => *membership = Some(m),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "redis membership not reachable");
                return false;
            }
            Err(_) => return false,
        }
    }
    let Some(m) = membership.as_ref() else { return false };
    match tokio::time::timeout(timeout, m.list()).await {
        Ok(Ok(list)) => {
            cluster.set_members(list.into_keys());
            true
        }
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "reading the membership failed");
            false
        }
        Err(_) => false,
    }
}

/// The wait before the next membership read: `every` after a success; after a failure,
/// twice the previous wait (from `every`), at most `max`.
pub fn membership_retry_delay(previous: Duration, succeeded: bool, every: Duration, max: Duration) -> Duration {
    if succeeded {
        every
    } else {
        previous.max(every).saturating_mul(2).min(max.max(every))
    }
}

/// Keeps the membership fresh: re-reads it every `every`; while Redis is away, retries with
/// a backoff of up to `max` between attempts (the view keeps what it last read). Never
/// gives up.
pub fn spawn_membership_reader(
    cluster: ClusterState,
    subjects: Subjects,
    redis_url: String,
    mut membership: Option<Membership>,
    every: Duration,
    max: Duration,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut delay = every;
        let mut failing = false;
        loop {
            tokio::time::sleep(delay).await;
            let ok = refresh_members(&cluster, &mut membership, &redis_url, &subjects, READ_TIMEOUT).await;
            if ok && failing {
                tracing::info!("the membership is readable again");
            } else if !ok && !failing {
                tracing::warn!("cannot read the membership from Redis; keeping the last one read, retrying");
            }
            failing = !ok;
            delay = membership_retry_delay(delay, ok, every, max);
        }
    })
}

/// Longest one membership read (with its connection) may take.
pub const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// Asks every member for its status, concurrently, and records the answers. `bus`
/// addresses shard 0's leader group (the graph client's [`bus`]); the node view describes
/// each node's member of it.
///
/// [`bus`]: instaface_bus::graph_client::GraphClient::bus
pub async fn poll_statuses(cluster: &ClusterState, bus: &Bus, timeout: Duration) {
    let members = cluster.members();
    let asks = members.iter().map(|id| async move {
        let subject = bus.subjects().node(id, "status");
        (id, bus.request::<(), NodeStatus>(subject, &(), timeout).await)
    });
    for (id, answer) in futures::future::join_all(asks).await {
        match answer {
            Ok(status) if &status.node == id => cluster.observe_status(status),
            Ok(status) => tracing::debug!(asked = %id, answered = %status.node, "status from the wrong node"),
            Err(_) => cluster.observe_silence(id),
        }
    }
}

/// Keeps the view fresh: every `every`, polls every member for its status (on `bus`, which
/// addresses shard 0's leader group: see [`poll_statuses`]).
pub fn spawn_poller(cluster: ClusterState, bus: Bus, every: Duration, status_timeout: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            poll_statuses(&cluster, &bus, status_timeout).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use instaface_bus::messages::CacheCounters as WireCounters;
    use std::time::Instant;

    fn status(node: &str, role: Role, term: u64) -> NodeStatus {
        NodeStatus {
            node: node.into(),
            role,
            term,
            leader: Some("n1".into()),
            members: vec!["n1".into(), "n2".into(), "n3".into()],
            unplugged: false,
            clients_unplugged: false,
            serving: true,
            applied_seq: 7,
            lease_ms: 500,
            cache: WireCounters { hits: 3, misses: 2, entries: 1, fills: 1 },
        }
    }

    /// Shard 0's tracker, having just heard `id` lead in `term`.
    fn leader(id: &str, term: u64) -> [LeaderInfo; 1] {
        [LeaderInfo {
            leader: Some(id.into()),
            term,
            seen: Some(Instant::now()),
            members: vec!["n1".into(), "n2".into(), "n3".into()],
            seq: 0,
        }]
    }

    #[test]
    fn overview_combines_polls_events_and_the_leader() {
        let leaders = leader("n1", 4);
        let cluster = ClusterState::new();
        cluster.set_members(vec!["n3".into(), "n1".into(), "n2".into()]);
        cluster.observe_status(status("n1", Role::Leader, 4));
        cluster.observe_status(status("n2", Role::Follower, 4));
        cluster.observe_silence("n3");
        let o = cluster.overview(&leaders);
        assert_eq!(o.leader.as_deref(), Some("n1"));
        assert_eq!(o.term, 4);
        assert_eq!(o.members, vec!["n1", "n2", "n3"]);
        assert_eq!(o.nodes.len(), 3);
        assert_eq!(o.nodes[0].role, NodeRole::Leader);
        assert!(o.nodes[0].reachable && o.nodes[1].reachable);
        assert!(!o.nodes[2].reachable, "n3 did not answer");
        assert_eq!(o.nodes[2].role, NodeRole::Unknown);
        assert_eq!(o.nodes[1].cache.hits, 3);

        // The leader reports n2 unreachable; n2 gets unplugged.
        cluster.observe_event(&Event::new("n1", 4, EventKind::Reachable { peer: "n2".into(), reachable: false }));
        assert!(!cluster.overview(&leaders).nodes[1].reachable);
        // A report from an older term does not count.
        cluster.observe_event(&Event::new("n1", 3, EventKind::Reachable { peer: "n2".into(), reachable: false }));
        assert!(cluster.overview(&leaders).nodes[1].reachable);
        cluster.observe_event(&Event::new("n2", 4, EventKind::Unplugged { unplugged: true, clients: false }));
        let o = cluster.overview(&leaders);
        assert!(o.nodes[1].unplugged && !o.nodes[1].reachable);
        // Cut off from its peers only, it still serves until a poll says otherwise.
        assert!(!o.nodes[1].clients_unplugged && o.nodes[1].serving);

        // Role changes arrive as events.
        cluster.observe_event(&Event::new(
            "n2",
            5,
            EventKind::Candidacy { state: instaface_bus::messages::CandidacyState::Started, pre_vote: true },
        ));
        assert_eq!(cluster.overview(&leaders).nodes[1].role, NodeRole::PreCandidate);
        cluster.observe_event(&Event::new("n2", 5, EventKind::Leader { members: vec![] }));
        assert_eq!(cluster.overview(&leaders).nodes[1].role, NodeRole::Leader);
        assert_eq!(cluster.overview(&leaders).nodes[1].term, 5);
    }

    #[test]
    fn serving_lease_and_isolation_come_from_polls_and_events() {
        let leaders = leader("n1", 4);
        let cluster = ClusterState::new();
        cluster.set_members(vec!["n1".into(), "n2".into(), "n3".into()]);
        let o = cluster.overview(&leaders);
        assert!(o.nodes.iter().all(|n| !n.serving && n.lease_ms == 0 && n.status_age_ms.is_none()), "not polled yet");

        cluster.observe_status(status("n1", Role::Leader, 4));
        cluster.observe_status(status("n2", Role::Follower, 4));
        let o = cluster.overview(&leaders);
        assert!(o.nodes[1].serving && !o.nodes[1].clients_unplugged);
        assert_eq!(o.nodes[1].lease_ms, 500);
        let age = o.nodes[1].status_age_ms.expect("answered");
        assert!(age < 5_000, "{age}");

        // Unplugged from its peers, n2's next answer says its lease ran out: it stops serving.
        cluster.observe_event(&Event::new("n2", 4, EventKind::Unplugged { unplugged: true, clients: false }));
        assert!(cluster.overview(&leaders).nodes[1].serving, "still serving on its lease");
        cluster.observe_status(NodeStatus {
            unplugged: true,
            serving: false,
            lease_ms: 0,
            ..status("n2", Role::Follower, 4)
        });
        let o = cluster.overview(&leaders);
        assert!(o.nodes[1].unplugged && !o.nodes[1].clients_unplugged && !o.nodes[1].serving);
        assert_eq!(o.nodes[1].lease_ms, 0);

        // Isolated totally: not serving from the event on, whatever its lease.
        cluster.observe_event(&Event::new("n1", 4, EventKind::Unplugged { unplugged: true, clients: true }));
        let o = cluster.overview(&leaders);
        assert!(o.nodes[0].unplugged && o.nodes[0].clients_unplugged && !o.nodes[0].serving);
        assert_eq!(o.nodes[0].lease_ms, 500, "the lease as last reported");
        // Its status says the same.
        cluster.observe_status(NodeStatus {
            unplugged: true,
            clients_unplugged: true,
            serving: false,
            ..status("n1", Role::Leader, 4)
        });
        assert!(cluster.overview(&leaders).nodes[0].clients_unplugged);
        // Plugged back in: both flags clear (`clients` means nothing without `unplugged`);
        // serving waits for the next poll.
        cluster.observe_event(&Event::new("n1", 4, EventKind::Unplugged { unplugged: false, clients: true }));
        let o = cluster.overview(&leaders);
        assert!(!o.nodes[0].unplugged && !o.nodes[0].clients_unplugged && !o.nodes[0].serving);
        cluster.observe_status(status("n1", Role::Leader, 4));
        assert!(cluster.overview(&leaders).nodes[0].serving);

        // A node that stops answering is not known to serve, and holds no lease we know of.
        cluster.observe_silence("n1");
        let o = cluster.overview(&leaders);
        assert!(!o.nodes[0].serving && !o.nodes[0].reachable);
        assert_eq!(o.nodes[0].lease_ms, 0);
        assert!(o.nodes[0].status_age_ms.is_some(), "the age of its last answer");
    }

    #[test]
    fn heartbeat_members_are_no_authority() {
        let leaders = leader("n2", 1);
        let cluster = ClusterState::new();
        // The heartbeat lists n1…n3, but the membership has not been read: nobody is known,
        // nobody is polled, nothing can be unplugged.
        assert!(!cluster.membership_known());
        assert!(cluster.members().is_empty());
        let o = cluster.overview(&leaders);
        assert!(o.members.is_empty() && o.nodes.is_empty(), "{o:?}");
        assert_eq!(o.leader, None, "a leader no membership vouches for");

        cluster.set_members(vec!["n1".into(), "n2".into(), "n3".into()]);
        assert!(cluster.membership_known());
        let o = cluster.overview(&leaders);
        assert_eq!(o.nodes.len(), 3);
        assert_eq!(o.leader.as_deref(), Some("n2"));
        assert!(o.nodes.iter().all(|n| !n.reachable), "nobody polled yet");
    }

    #[test]
    fn only_members_get_entries() {
        let leaders = leader("n1", 4);
        let cluster = ClusterState::new();
        let follower = |id: &str| Event::new(id, 4, EventKind::Follower { leader: Some("n1".into()) });

        // Before the membership is read, whatever arrives creates nothing.
        cluster.observe_status(status("n1", Role::Leader, 4));
        assert!(!cluster.observe_event(&follower("n2")));
        cluster.observe_silence("n3");
        assert!(cluster.view().nodes.is_empty());

        // Entries that are not node ids never make it into the membership.
        cluster.set_members(vec!["n2".into(), "n1".into(), "bad.id".into(), String::new(), "n1".into()]);
        assert_eq!(cluster.members(), vec!["n1", "n2"]);
        assert!(cluster.is_member("n1") && !cluster.is_member("bad.id") && !cluster.is_member(""));

        let long = "n".repeat(65);
        for stranger in ["n9", "bad.id", "", "n1 ", "../n1", "n1.status", long.as_str()] {
            assert!(!cluster.observe_event(&follower(stranger)), "{stranger:?}");
            assert!(!cluster.observe_event(&Event::new(
                stranger,
                4,
                EventKind::Cache { hits: 1, misses: 1, entries: 1, fills: 1, applied_seq: 1 }
            )));
            assert!(!cluster.observe_event(&Event::new(
                stranger,
                4,
                EventKind::Unplugged { unplugged: true, clients: true }
            )));
            // A report by a stranger about a member, and by a member about a stranger.
            assert!(!cluster.observe_event(&Event::new(
                stranger,
                4,
                EventKind::Reachable { peer: "n2".into(), reachable: false }
            )));
            assert!(!cluster.observe_event(&Event::new(
                "n1",
                4,
                EventKind::Reachable { peer: stranger.into(), reachable: false }
            )));
            cluster.observe_status(status(stranger, Role::Leader, 9));
            cluster.observe_silence(stranger);
        }
        assert!(cluster.view().nodes.is_empty(), "strangers left no entry: {:?}", cluster.view().nodes.keys());
        let o = cluster.overview(&leaders);
        assert_eq!(o.nodes.iter().map(|n| n.id.as_str()).collect::<Vec<_>>(), ["n1", "n2"]);
        assert_eq!(o.term, 4, "a stranger's term 9 is not taken");
        assert!(o.nodes.iter().all(|n| !n.unplugged && n.role == NodeRole::Unknown));

        // Members are recorded as before.
        assert!(cluster.observe_event(&follower("n2")));
        cluster.observe_status(status("n1", Role::Leader, 4));
        assert_eq!(cluster.view().nodes.keys().cloned().collect::<Vec<_>>(), ["n1", "n2"]);
        assert!(cluster.observe_event(&Event::new(
            "n1",
            4,
            EventKind::Reachable { peer: "n2".into(), reachable: false }
        )));
        assert!(!cluster.overview(&leaders).nodes[1].reachable);
    }

    #[test]
    fn a_member_that_leaves_is_forgotten() {
        let leaders = leader("n1", 4);
        let cluster = ClusterState::new();
        cluster.set_members(vec!["n1".into(), "n2".into(), "n3".into()]);
        cluster.observe_status(status("n3", Role::Follower, 4));
        assert_eq!(cluster.overview(&leaders).nodes[2].role, NodeRole::Follower);

        cluster.set_members(vec!["n1".into(), "n2".into()]);
        assert_eq!(cluster.overview(&leaders).nodes.len(), 2);
        assert!(!cluster.view().nodes.contains_key("n3"));
        assert!(!cluster.observe_event(&Event::new("n3", 5, EventKind::Leader { members: vec![] })));

        // Back in the membership, it starts from nothing.
        cluster.set_members(vec!["n1".into(), "n2".into(), "n3".into()]);
        assert_eq!(cluster.overview(&leaders).nodes[2].role, NodeRole::Unknown);
    }

    #[test]
    fn a_leader_that_is_not_a_member_is_not_shown() {
        let mut leaders = leader("n9", 7);
        let cluster = ClusterState::new();
        cluster.set_members(vec!["n1".into(), "n2".into(), "n3".into()]);
        cluster.observe_status(status("n1", Role::Follower, 3));
        let o = cluster.overview(&leaders);
        assert_eq!(o.leader, None);
        assert_eq!(o.term, 3, "the members' term, not the stranger's");

        leaders[0].leader = Some("n2".into());
        leaders[0].term = 8;
        let o = cluster.overview(&leaders);
        assert_eq!(o.leader.as_deref(), Some("n2"));
        assert_eq!(o.term, 8);
    }

    #[test]
    fn other_shards_show_as_their_leaders_and_leave_the_nodes_alone() {
        let heard = |id: &str, term: u64, ago: Duration| LeaderInfo {
            leader: Some(id.into()),
            term,
            seen: Instant::now().checked_sub(ago),
            members: vec![],
            seq: 0,
        };
        let leaders = [
            heard("n1", 4, Duration::ZERO),
            heard("n2", 9, Duration::ZERO),
            heard("n3", 6, Duration::from_secs(60)),
            heard("n9", 2, Duration::ZERO),
        ];
        let cluster = ClusterState::new();
        cluster.set_members(vec!["n1".into(), "n2".into(), "n3".into()]);
        cluster.observe_status(status("n1", Role::Leader, 4));
        cluster.observe_status(status("n2", Role::Follower, 4));
        let o = cluster.overview(&leaders);
        let shards: Vec<_> = o.shards.iter().map(|s| (s.shard, s.leader.as_deref(), s.term)).collect();
        assert_eq!(
            shards,
            [(0, Some("n1"), 4), (1, Some("n2"), 9), (2, None, 6), (3, None, 0)],
            "shard 2's leader has gone quiet; shard 3's is no member"
        );
        assert_eq!((o.leader.as_deref(), o.term), (Some("n1"), 4), "the overview's own are shard 0's");

        // n2 leads shard 1: its role and term in the view stay those of shard 0's group.
        let shard1 = |kind: EventKind| Event::new("n2", 9, kind).in_shard(1);
        assert!(!cluster.observe_event(&shard1(EventKind::Leader { members: vec![] })));
        assert!(!cluster.observe_event(&shard1(EventKind::Cache {
            hits: 100,
            misses: 100,
            entries: 100,
            fills: 100,
            applied_seq: 100
        })));
        assert!(!cluster.observe_event(&shard1(EventKind::Reachable { peer: "n3".into(), reachable: false })));
        assert!(!cluster.observe_event(&shard1(EventKind::Write { seq: 50, op: "x".into(), keys: vec![] })));
        let n2 = &cluster.overview(&leaders).nodes[1];
        assert_eq!((n2.role, n2.term, n2.applied_seq, n2.cache.hits), (NodeRole::Follower, 4, 7, 3));
        // A node is unplugged as a whole, whichever group says so.
        assert!(cluster.observe_event(&shard1(EventKind::Unplugged { unplugged: true, clients: false })));
        let n2 = &cluster.overview(&leaders).nodes[1];
        assert!(n2.unplugged && !n2.reachable);
        assert_eq!(n2.term, 4, "the unplugged event's term is shard 1's");

        // One shard: one entry, the overview's own leader and term.
        let o = cluster.overview(&leaders[..1]);
        assert_eq!(o.shards, [ShardOverview { shard: 0, leader: Some("n1".into()), term: 4 }]);
        let o = cluster.overview(&[]);
        assert_eq!(o.shards, [ShardOverview { shard: 0, leader: None, term: 4 }], "the nodes' term");
    }

    #[test]
    fn membership_reads_back_off_while_failing() {
        let every = Duration::from_millis(500);
        let max = Duration::from_secs(10);
        let mut delay = every;
        let mut seen = Vec::new();
        for _ in 0..8 {
            delay = membership_retry_delay(delay, false, every, max);
            seen.push(delay.as_millis());
        }
        assert_eq!(seen, [1000, 2000, 4000, 8000, 10000, 10000, 10000, 10000]);
        assert_eq!(membership_retry_delay(delay, true, every, max), every, "back to the period on success");
        // A maximum below the period is the period.
        assert_eq!(membership_retry_delay(every, false, every, Duration::from_millis(1)), every);
    }

    #[tokio::test]
    async fn an_unreachable_redis_leaves_the_membership_unknown_and_the_reader_running() {
        let cluster = ClusterState::new();
        let subjects = Subjects::new("tgw-unreachable".to_string());
        let mut membership = None;
        // Nothing listens on port 1.
        let url = "redis://127.0.0.1:1";
        assert!(!refresh_members(&cluster, &mut membership, url, &subjects, Duration::from_millis(500)).await);
        assert!(!cluster.membership_known());
        let reader = spawn_membership_reader(
            cluster.clone(),
            subjects,
            url.into(),
            None,
            Duration::from_millis(20),
            Duration::from_millis(80),
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!reader.is_finished(), "it keeps retrying");
        assert!(!cluster.membership_known());
        reader.abort();
    }
}
