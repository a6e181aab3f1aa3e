//! The snapshot of the node's role, term, leader and leases that the protocol actor
//! publishes (a `tokio::sync::watch`) for the request handlers and the status endpoint.

use std::time::Instant;

use instaface_bus::messages::Role;
use instaface_bus::NodeId;

/// One follower as the leader sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct FollowerProgress {
    pub id: NodeId,
    /// Invalidations it acked as applied, this term.
    pub applied_seq: u64,
    /// The latest moment its read lease can last (leader's clock).
    pub lease_bound: Instant,
    /// When its latest ack arrived.
    pub last_ack: Option<Instant>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ClusterView {
    pub role: Role,
    pub term: u64,
    pub leader: Option<NodeId>,
    pub members: Vec<NodeId>,
    /// Reads may be served until then (a follower's read lease, or the leader's own lease
    /// once it has replayed the outbox); `None` while it may not serve.
    pub lease_until: Option<Instant>,
    /// Leader only: every member but itself.
    pub followers: Vec<FollowerProgress>,
}

impl ClusterView {
    pub fn initial() -> ClusterView {
        ClusterView {
            role: Role::Follower,
            term: 0,
            leader: None,
            members: Vec::new(),
            lease_until: None,
            followers: Vec::new(),
        }
    }

    /// Whether this node may serve reads at `now`.
    pub fn lease_holds(&self, now: Instant) -> bool {
        lease_holds(self.lease_until, now)
    }

    pub fn is_leader(&self) -> bool {
        self.role == Role::Leader
    }
}

/// Whether a lease that lasts until `until` (`None`: no lease) holds at `now`.
pub fn lease_holds(until: Option<Instant>, now: Instant) -> bool {
    until.is_some_and(|until| now < until)
}
