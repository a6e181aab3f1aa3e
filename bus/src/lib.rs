//! The wire contract of Instaface and the small clients every process shares.
//!
//! Nothing here knows business logic; it is what the node, the gateway, the bot and any
//! outside eavesdropper agree on:
//!
//! - [`subjects`]: every NATS subject, built from the prefix in one place.
//! - [`shards`]: the split of the id space into shards, and the shard an id belongs to.
//! - [`codec`]: MessagePack encoding (always as maps with named fields) and decode errors.
//! - [`messages`]: the cluster-internal messages — heartbeats, votes, acks, invalidations,
//!   unplug commands and monitoring events.
//! - [`graph`]: the social-graph model (entities, associations, cache keys) and the read,
//!   write and fill requests that travel between clients and nodes.
//! - [`config`]: the shared flags (`NATS_URL`, `REDIS_URL`, `INSTAFACE_PREFIX`, …).
//! - [`client`]: a typed NATS client: publish, request with timeout, subscribe and
//!   queue-subscribe, decode errors as values.
//! - [`membership`]: the static cluster membership kept in Redis.
//! - [`auth`]: the cluster key and the MAC that authenticates messages between nodes.

pub mod auth;
pub mod client;
pub mod codec;
pub mod config;
pub mod graph;
pub mod graph_client;
pub mod intents;
pub mod local_reads;
pub mod membership;
pub mod messages;
pub mod read_batcher;
pub mod shards;
pub mod subjects;

pub use client::{Bus, BusError, Incoming};
pub use codec::{decode, encode, DecodeError};
pub use subjects::Subjects;

/// The highest term anyone adopts: a message with a higher term is refused, not adopted,
/// since a term that could not be exceeded would end every election (one forged heartbeat
/// with `u64::MAX` would wedge a cluster for good). At one election a millisecond it lasts
/// 146 million years.
pub const MAX_TERM: u64 = 1 << 62;

/// A node's identity: a short name that is also one NATS subject token (`n1`, `node-2`).
pub type NodeId = String;

/// Milliseconds since the Unix epoch, as carried in messages and shown by the API.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Longest node id, in bytes (= characters: ASCII only).
pub const MAX_NODE_ID_LEN: usize = 64;

/// The characters of a node id, as an ECMA-262 / JSON Schema regular expression (the length
/// is [`MAX_NODE_ID_LEN`], stated apart). [`valid_node_id`] is exactly this plus the length.
pub const NODE_ID_PATTERN: &str = "^[A-Za-z0-9_-]+$";

/// Whether `id` can name a node: non-empty, at most [`MAX_NODE_ID_LEN`] characters of
/// `[A-Za-z0-9_-]`, so it is a single NATS subject token and a safe Redis hash field.
pub fn valid_node_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_NODE_ID_LEN
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
