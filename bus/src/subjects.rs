//! Every NATS subject Instaface uses, built from the prefix in this one place.
//!
//! With the default prefix `instaface`, `nats sub 'instaface.>'` shows all cluster traffic.
//!
//! Two levels: what belongs to the whole cluster (monitoring events, unplug commands, the
//! Redis keys) sits right under the prefix `P`; what belongs to one leader group — votes,
//! heartbeats, invalidations, reads, everything addressed to a node — sits under the
//! group's prefix: `P` itself when the graph is one shard (so a one-shard cluster's wire is
//! what it always was), `P.shard.<k>` for shard `k` of several.

use crate::shards::{ShardId, Shards};
use crate::NodeId;

/// The queue group followers join on [`Subjects::graph_read`].
pub const READERS_GROUP: &str = "readers";

/// Subject builder for one cluster (one prefix).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subjects {
    prefix: String,
    /// The leader group's prefix: `prefix`, or `prefix.shard.<k>`.
    group: String,
    shard: ShardId,
}

impl Subjects {
    /// Subjects under `prefix` (a NATS token sequence such as `instaface` or `test.c42`),
    /// for a graph of one shard.
    pub fn new(prefix: impl Into<String>) -> Self {
        let prefix = prefix.into();
        Subjects { group: prefix.clone(), prefix, shard: 0 }
    }

    /// The same cluster's subjects for shard `k`'s leader group.
    pub fn for_shard(&self, k: ShardId, shards: Shards) -> Subjects {
        let group = if shards.split() { format!("{}.shard.{k}", self.prefix) } else { self.prefix.clone() };
        Subjects { prefix: self.prefix.clone(), group, shard: k }
    }

    /// The cluster's prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The leader group's prefix (the cluster's, for a graph of one shard).
    pub fn group_prefix(&self) -> &str {
        &self.group
    }

    /// The shard whose leader group these subjects address.
    pub fn shard(&self) -> ShardId {
        self.shard
    }

    /// The leader's heartbeat, every heartbeat interval.
    pub fn heartbeat(&self) -> String {
        format!("{}.heartbeat", self.group)
    }

    /// Vote requests (PreVote and real), answered by every member.
    pub fn vote(&self) -> String {
        format!("{}.vote", self.group)
    }

    /// Invalidations broadcast by the leader after a write commits.
    pub fn invalidate(&self) -> String {
        format!("{}.invalidate", self.group)
    }

    /// Read requests; followers holding a read lease serve them in queue group `readers`.
    pub fn graph_read(&self) -> String {
        format!("{}.graph.read", self.group)
    }

    /// Batches of reads ([`crate::graph::ReadBatch`]); followers holding a read lease
    /// serve them in queue group `readers`, like [`Subjects::graph_read`].
    pub fn graph_reads(&self) -> String {
        format!("{}.graph.reads", self.group)
    }

    /// Monitoring events from every node.
    pub fn events(&self) -> String {
        format!("{}.events", self.prefix)
    }

    /// Admin command: unplug or plug back a node.
    pub fn control_unplug(&self) -> String {
        format!("{}.control.unplug", self.prefix)
    }

    /// Everything addressed to one node: `P.node.<id>.>`.
    pub fn node_all(&self, node: &str) -> String {
        format!("{}.node.{}.>", self.group, node)
    }

    /// A request addressed to one node, e.g. `node(id, "write")`.
    pub fn node(&self, node: &str, endpoint: &str) -> String {
        format!("{}.node.{}.{}", self.group, node, endpoint)
    }

    /// Acks (of heartbeats and invalidations) sent to the leader.
    pub fn ack(&self, leader: &NodeId) -> String {
        self.node(leader, "ack")
    }

    /// Vote replies addressed to a candidate.
    pub fn vote_reply(&self, candidate: &NodeId) -> String {
        self.node(candidate, "vote_reply")
    }

    /// Leadership transfer: the leader tells the chosen successor to campaign now.
    pub fn timeout_now(&self, target: &NodeId) -> String {
        self.node(target, "timeout_now")
    }

    /// Writes sent to the leader.
    pub fn write(&self, leader: &NodeId) -> String {
        self.node(leader, "write")
    }

    /// Cache fills sent to the leader by followers.
    pub fn fill(&self, leader: &NodeId) -> String {
        self.node(leader, "fill")
    }

    /// Cross-shard intents sent to this group's leader by another shard's leader.
    pub fn intent(&self, leader: &NodeId) -> String {
        self.node(leader, "intent")
    }

    /// Reads addressed to one node (the leader, when no follower can serve).
    pub fn read_at(&self, node: &NodeId) -> String {
        self.node(node, "read")
    }

    /// Everything under the prefix, for taps and eavesdroppers.
    pub fn all(&self) -> String {
        format!("{}.>", self.prefix)
    }

    /// The Redis key prefix (same string as the subject prefix).
    pub fn redis_key(&self, what: &str) -> String {
        format!("{}:{}", self.prefix, what)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_built_from_the_prefix() {
        let s = Subjects::new("instaface");
        assert_eq!(s.heartbeat(), "instaface.heartbeat");
        assert_eq!(s.graph_read(), "instaface.graph.read");
        assert_eq!(s.graph_reads(), "instaface.graph.reads");
        assert_eq!(s.write(&"n2".to_string()), "instaface.node.n2.write");
        assert_eq!(s.node_all("n2"), "instaface.node.n2.>");
        assert_eq!(s.redis_key("members"), "instaface:members");
        assert_eq!(s.for_shard(0, Shards::one()), s);
    }

    #[test]
    fn a_shard_of_several_has_its_own_group_subjects() {
        let s = Subjects::new("instaface").for_shard(1, Shards::new(2).unwrap());
        assert_eq!(s.heartbeat(), "instaface.shard.1.heartbeat");
        assert_eq!(s.graph_reads(), "instaface.shard.1.graph.reads");
        assert_eq!(s.write(&"n2".to_string()), "instaface.shard.1.node.n2.write");
        assert_eq!(s.events(), "instaface.events");
        assert_eq!(s.control_unplug(), "instaface.control.unplug");
        assert_eq!(s.redis_key("members"), "instaface:members");
        assert_eq!(s.all(), "instaface.>");
    }
}
