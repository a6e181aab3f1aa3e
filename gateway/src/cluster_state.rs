//! What the gateway knows of the cluster, for `GET /api/cluster` and the unplug route.
//!
//! Fed from four sources, each overwriting what it knows best:
//! - heartbeats (through the graph client's leader tracking): leader, term, members;
//! - `P.events` ([`ClusterState::observe_event`]): role changes, unplugging, the leader's
//!   view of each follower's reachability, cache counters — as they happen;
//! - the Redis membership, re-read by the poller;
//! - each member's status endpoint `P.node.<id>.status`, polled every `cluster_poll` by
//!   [`spawn_poller`]: role, term, unplugged (from peers, from clients), serving, applied
//!   seq, lease, cache counters. A member that does not answer within `status_timeout` is
//!   not reachable, and not known to serve.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use instaface_bus::graph_client::LeaderInfo;
use instaface_bus::membership::Membership;
use instaface_bus::messages::{Event, EventKind, NodeStatus, Role};
use instaface_bus::{Bus, NodeId};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::model::{CacheCounters, ClusterOverview, NodeOverview, NodeRole};

/// The shared view. Cheap to clone.
#[derive(Clone)]
pub struct ClusterState {
    view: Arc<Mutex<View>>,
    leader: watch::Receiver<LeaderInfo>,
}

#[derive(Default)]
struct View {
    /// The Redis membership as last read (`None` until a read succeeds).
    members: Option<Vec<NodeId>>,
    nodes: BTreeMap<NodeId, NodeView>,
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
    /// A view that reads the leader from `leader` (the graph client's tracker).
    pub fn new(leader: watch::Receiver<LeaderInfo>) -> Self {
        ClusterState { view: Arc::new(Mutex::new(View::default())), leader }
    }

    fn view(&self) -> MutexGuard<'_, View> {
        // Nothing panics while holding the lock; if something did, the data is still usable.
        self.view.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies one monitoring event.
    pub fn observe_event(&self, event: &Event) {
        let mut view = self.view();
        match &event.kind {
            EventKind::Reachable { peer, reachable } => {
                let node = view.nodes.entry(peer.clone()).or_default();
                node.leader_says = Some((event.node.clone(), event.term, *reachable));
                return;
            }
            EventKind::Invalidation { .. } => return,
            _ => {}
        }
        let node = view.nodes.entry(event.node.clone()).or_default();
        node.term = node.term.max(event.term);
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
    }

    /// Applies a member's answer to the status poll.
    pub fn observe_status(&self, status: NodeStatus) {
        let mut view = self.view();
        let node = view.nodes.entry(status.node.clone()).or_default();
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

    /// Records that `id` did not answer the status poll.
    pub fn observe_silence(&self, id: &str) {
        let mut view = self.view();
        let node = view.nodes.entry(id.to_string()).or_default();
        node.answering = Some(false);
        node.lease_ms = 0;
        node.serving = false;
    }

    /// Records the membership read from Redis.
    pub fn set_members(&self, mut members: Vec<NodeId>) {
        members.sort();
        self.view().members = Some(members);
    }

    /// The members: from Redis when it has been read, else from the latest heartbeat.
    pub fn members(&self) -> Vec<NodeId> {
        if let Some(m) = &self.view().members {
            return m.clone();
        }
        let mut m = self.leader.borrow().members.clone();
        m.sort();
        m
    }

    /// Whether anything is known of the membership yet.
    pub fn membership_known(&self) -> bool {
        self.view().members.is_some() || !self.leader.borrow().members.is_empty()
    }

    /// The overview served by `GET /api/cluster`.
    pub fn overview(&self) -> ClusterOverview {
        let info = self.leader.borrow().clone();
        let members = self.members();
        let view = self.view();
        let current = info.current().map(|(l, t)| (l.clone(), t));
        let max_node_term = view.nodes.values().map(|n| n.term).max().unwrap_or(0);
        let term = current.as_ref().map(|(_, t)| *t).unwrap_or(info.term.max(max_node_term));
        let ids: Vec<NodeId> = if members.is_empty() { view.nodes.keys().cloned().collect() } else { members.clone() };
        let nodes = ids
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
        ClusterOverview { leader: current.map(|(l, _)| l), term, members, nodes }
    }
}

/// Reads the membership from Redis once (connecting first if need be); `false` if it could
/// not.
pub async fn refresh_members(
    cluster: &ClusterState,
    membership: &mut Option<Membership>,
    redis_url: &str,
    bus: &Bus,
    timeout: Duration,
) -> bool {
    if membership.is_none() {
        match tokio::time::timeout(timeout, Membership::connect(redis_url, bus.subjects())).await {
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
            cluster.set_members(list.into_keys().collect());
            true
        }
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "reading the membership failed");
            false
        }
        Err(_) => false,
    }
}

/// Asks every member for its status, concurrently, and records the answers.
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

/// Keeps the view fresh: every `every`, re-reads the membership and polls every member.
pub fn spawn_poller(
    cluster: ClusterState,
    bus: Bus,
    redis_url: Option<String>,
    mut membership: Option<Membership>,
    every: Duration,
    status_timeout: Duration,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Some(url) = &redis_url {
                refresh_members(&cluster, &mut membership, url, &bus, Duration::from_secs(2)).await;
            }
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

    fn leader(id: &str, term: u64) -> watch::Sender<LeaderInfo> {
        watch::channel(LeaderInfo {
            leader: Some(id.into()),
            term,
            seen: Some(Instant::now()),
            members: vec!["n1".into(), "n2".into(), "n3".into()],
            seq: 0,
        })
        .0
    }

    #[test]
    fn overview_combines_polls_events_and_the_leader() {
        let tx = leader("n1", 4);
        let cluster = ClusterState::new(tx.subscribe());
        cluster.set_members(vec!["n3".into(), "n1".into(), "n2".into()]);
        cluster.observe_status(status("n1", Role::Leader, 4));
        cluster.observe_status(status("n2", Role::Follower, 4));
        cluster.observe_silence("n3");
        let o = cluster.overview();
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
        assert!(!cluster.overview().nodes[1].reachable);
        // A report from an older term does not count.
        cluster.observe_event(&Event::new("n1", 3, EventKind::Reachable { peer: "n2".into(), reachable: false }));
        assert!(cluster.overview().nodes[1].reachable);
        cluster.observe_event(&Event::new("n2", 4, EventKind::Unplugged { unplugged: true, clients: false }));
        let o = cluster.overview();
        assert!(o.nodes[1].unplugged && !o.nodes[1].reachable);
        // Cut off from its peers only, it still serves until a poll says otherwise.
        assert!(!o.nodes[1].clients_unplugged && o.nodes[1].serving);

        // Role changes arrive as events.
        cluster.observe_event(&Event::new(
            "n2",
            5,
            EventKind::Candidacy { state: instaface_bus::messages::CandidacyState::Started, pre_vote: true },
        ));
        assert_eq!(cluster.overview().nodes[1].role, NodeRole::PreCandidate);
        cluster.observe_event(&Event::new("n2", 5, EventKind::Leader { members: vec![] }));
        assert_eq!(cluster.overview().nodes[1].role, NodeRole::Leader);
        assert_eq!(cluster.overview().nodes[1].term, 5);
    }

    #[test]
    fn serving_lease_and_isolation_come_from_polls_and_events() {
        let tx = leader("n1", 4);
        let cluster = ClusterState::new(tx.subscribe());
        cluster.set_members(vec!["n1".into(), "n2".into(), "n3".into()]);
        let o = cluster.overview();
        assert!(o.nodes.iter().all(|n| !n.serving && n.lease_ms == 0 && n.status_age_ms.is_none()), "not polled yet");

        cluster.observe_status(status("n1", Role::Leader, 4));
        cluster.observe_status(status("n2", Role::Follower, 4));
        let o = cluster.overview();
        assert!(o.nodes[1].serving && !o.nodes[1].clients_unplugged);
        assert_eq!(o.nodes[1].lease_ms, 500);
        let age = o.nodes[1].status_age_ms.expect("answered");
        assert!(age < 5_000, "{age}");

        // Unplugged from its peers, n2's next answer says its lease ran out: it stops serving.
        cluster.observe_event(&Event::new("n2", 4, EventKind::Unplugged { unplugged: true, clients: false }));
        assert!(cluster.overview().nodes[1].serving, "still serving on its lease");
        cluster.observe_status(NodeStatus {
            unplugged: true,
            serving: false,
            lease_ms: 0,
            ..status("n2", Role::Follower, 4)
        });
        let o = cluster.overview();
        assert!(o.nodes[1].unplugged && !o.nodes[1].clients_unplugged && !o.nodes[1].serving);
        assert_eq!(o.nodes[1].lease_ms, 0);

        // Isolated totally: not serving from the event on, whatever its lease.
        cluster.observe_event(&Event::new("n1", 4, EventKind::Unplugged { unplugged: true, clients: true }));
        let o = cluster.overview();
        assert!(o.nodes[0].unplugged && o.nodes[0].clients_unplugged && !o.nodes[0].serving);
        assert_eq!(o.nodes[0].lease_ms, 500, "the lease as last reported");
        // Its status says the same.
        cluster.observe_status(NodeStatus {
            unplugged: true,
            clients_unplugged: true,
            serving: false,
            ..status("n1", Role::Leader, 4)
        });
        assert!(cluster.overview().nodes[0].clients_unplugged);
        // Plugged back in: both flags clear (`clients` means nothing without `unplugged`);
        // serving waits for the next poll.
        cluster.observe_event(&Event::new("n1", 4, EventKind::Unplugged { unplugged: false, clients: true }));
        let o = cluster.overview();
        assert!(!o.nodes[0].unplugged && !o.nodes[0].clients_unplugged && !o.nodes[0].serving);
        cluster.observe_status(status("n1", Role::Leader, 4));
        assert!(cluster.overview().nodes[0].serving);

        // A node that stops answering is not known to serve, and holds no lease we know of.
        cluster.observe_silence("n1");
        let o = cluster.overview();
        assert!(!o.nodes[0].serving && !o.nodes[0].reachable);
        assert_eq!(o.nodes[0].lease_ms, 0);
        assert!(o.nodes[0].status_age_ms.is_some(), "the age of its last answer");
    }

    #[test]
    fn members_fall_back_to_heartbeats() {
        let tx = leader("n2", 1);
        let cluster = ClusterState::new(tx.subscribe());
        assert!(cluster.membership_known());
        assert_eq!(cluster.members(), vec!["n1", "n2", "n3"]);
        let o = cluster.overview();
        assert_eq!(o.nodes.len(), 3);
        assert!(o.nodes.iter().all(|n| !n.reachable), "nobody polled yet");
    }
}
