//! The social-graph model and the requests that carry it between clients and nodes.
//!
//! - Model: [`Entity`], [`Association`], [`CacheKey`], and the inverse association types.
//! - Reads ([`ReadRequest`] on `P.graph.read` or `P.node.<id>.read`), writes
//!   ([`WriteRequest`] on `P.node.<leader>.write`) and cache fills ([`FillRequest`] on
//!   `P.node.<leader>.fill`), each answered with a [`Reply`].

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An entity id (MySQL `BIGINT UNSIGNED AUTO_INCREMENT`).
pub type EntityId = u64;

/// Attributes of an entity or association: a JSON object.
pub type Attributes = serde_json::Map<String, serde_json::Value>;

/// An entity (`user`, `status`, …) with its attributes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entity {
    pub id: EntityId,
    #[serde(rename = "type")]
    pub etype: String,
    pub attributes: Attributes,
    /// Creation time, ms since the epoch.
    pub created: u64,
    /// Last update time, ms since the epoch.
    pub updated: u64,
    /// Starts at 1 and grows by one with every update.
    pub version: u64,
}

/// A directed association `from --type--> to` with its attributes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Association {
    pub from: EntityId,
    #[serde(rename = "type")]
    pub atype: String,
    pub to: EntityId,
    pub attributes: Attributes,
    /// Creation time, ms since the epoch; lists are ordered newest first by it.
    pub created: u64,
}

/// The inverse of an association type, where it has one: adding or removing one adds or
/// removes the other in the same transaction.
pub fn inverse_of(atype: &str) -> Option<&'static str> {
    match atype {
        "friend" => Some("friend"),
        "likes" => Some("likedby"),
        "likedby" => Some("likes"),
        "posted" => Some("postedby"),
        "postedby" => Some("posted"),
        _ => None,
    }
}

// ---- Bounds ----
//
// Every bound on what a client may ask is defined once, here: the gateway validates with
// these constants and states them in its OpenAPI document, and a node refuses (or clamps)
// past the same ones.

/// Longest entity or association type name, in bytes (= characters: ASCII only).
pub const MAX_TYPE_NAME_LEN: usize = 32;

/// The characters of a type name, as an ECMA-262 / JSON Schema regular expression (the
/// length is [`MAX_TYPE_NAME_LEN`], stated apart): a lowercase ASCII letter, then lowercase
/// letters, digits and `_`. [`valid_type_name`] is exactly this plus the length.
pub const TYPE_NAME_PATTERN: &str = "^[a-z][a-z0-9_]*$";

/// Whether `name` can be an entity or association type: 1–[`MAX_TYPE_NAME_LEN`] characters
/// of `[a-z0-9_]`, starting with a letter ([`TYPE_NAME_PATTERN`]).
pub fn valid_type_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_TYPE_NAME_LEN
        && b[0].is_ascii_lowercase()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
}

/// Most ids in one read of entities ([`ReadQuery::Entities`], `GET /api/entities?ids=`) and
/// in the `entities` of one template query ([`ReadQuery::Query`]).
pub const MAX_IDS_PER_READ: usize = 1000;

/// Largest `limit` of an association list read ([`ReadQuery::Assocs`]).
pub const MAX_ASSOC_LIMIT: u32 = 1000;

/// Largest `offset` of an association list read ([`ReadQuery::Assocs`]); the gateway
/// answers a larger one with 400 and a node refuses it. A page past a follower's cached
/// window goes to the leader, whose MySQL `LIMIT … OFFSET n` walks and discards `n` index
/// entries: unbounded, one request could make the one node that writes scan a whole list
/// (the offset is a `u32`). 100,000 is 100 pages of the largest `limit`
/// ([`MAX_ASSOC_LIMIT`]), a bounded index scan (milliseconds to tens of milliseconds);
/// deeper lists want a cursor, not an offset.
pub const MAX_ASSOC_OFFSET: u32 = 100_000;

/// Largest `limit` of a timeline ([`ReadQuery::Timeline`]): posts and likes, each.
pub const MAX_TIMELINE_LIMIT: u32 = 1000;

/// Largest `count` of random ids ([`ReadQuery::Random`]).
pub const MAX_RANDOM_COUNT: u32 = 1000;

/// How deep a query [`Template`] may nest: `{}` is 0, `{"friend": {}}` is 1 (association
/// levels below the requested entities).
pub const MAX_TEMPLATE_DEPTH: usize = 6;

/// How many association types a query [`Template`] may name in all, counted over every
/// level (so also the most one level may fan out to).
pub const MAX_TEMPLATE_TYPES: usize = 64;

/// Most entities a template query's expansion may hold (counting repeats and entities found
/// missing); past it the node refuses the query as invalid. Depends on the data, so only a
/// node can check it.
pub const MAX_QUERY_ENTITIES: usize = 10_000;

/// Most cache keys a template query may look up in all (over every level's batch); past it
/// the node refuses the query as invalid. Depends on the data, so only a node can check it.
pub const MAX_QUERY_KEYS: usize = 50_000;

/// What a cache holds and an invalidation names. On the wire a key is a string:
/// `e:<id>` for an entity, `a:<from>:<type>` for an association list and its count.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CacheKey {
    Entity(EntityId),
    Assocs { from: EntityId, atype: String },
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CacheKey::Entity(id) => write!(f, "e:{id}"),
            CacheKey::Assocs { from, atype } => write!(f, "a:{from}:{atype}"),
        }
    }
}

impl FromStr for CacheKey {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("not a cache key: {s:?}");
        let mut parts = s.splitn(3, ':');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("e"), Some(id), None) => id.parse().map(CacheKey::Entity).map_err(|_| bad()),
            (Some("a"), Some(from), Some(atype)) if valid_type_name(atype) => {
                Ok(CacheKey::Assocs { from: from.parse().map_err(|_| bad())?, atype: atype.to_string() })
            }
            _ => Err(bad()),
        }
    }
}

impl Serialize for CacheKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for CacheKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// How fresh a read must be.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Consistency {
    /// Any node holding a read lease (the default).
    #[default]
    Eventual,
    /// A node that has applied at least this invalidation seq (read-your-writes in
    /// `INVALIDATION=async` mode).
    MinSeq { min_seq: u64 },
    /// The leader, under its own lease.
    Strong,
}

/// A read, sent to `P.graph.read` (followers, queue group `readers`) or to
/// `P.node.<id>.read` (one node, e.g. the leader).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReadRequest {
    #[serde(default)]
    pub consistency: Consistency,
    pub query: ReadQuery,
}

/// Reads in one message, sent to `P.graph.reads` (followers, queue group `readers`) by a
/// client that has several waiting at once: one NATS round trip, one wakeup of the
/// follower, for up to [`MAX_READS_PER_BATCH`] reads. The reply is
/// `Reply<Vec<Reply<ReadResult>>>`: one answer per read, in order, each exactly what the
/// read alone on `P.graph.read` would have answered; the outer error (overloaded, too many
/// reads, a reply too large for one message) means none was answered: ask alone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReadBatch {
    pub reads: Vec<ReadRequest>,
}

/// Reads one [`ReadBatch`] carries at most.
pub const MAX_READS_PER_BATCH: usize = 64;

/// What a read asks for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ReadQuery {
    /// Entities by id; the reply lists those found, in the order asked.
    Entities { ids: Vec<EntityId> },
    /// One association list, newest first, with the total count.
    Assocs { from: EntityId, atype: String, limit: u32, offset: u32 },
    /// A template query: the entities, each association in `template` expanded recursively.
    Query { entities: Vec<EntityId>, template: Template },
    /// A user's timeline: their posts with likers, their likes with the posts' authors.
    Timeline { user: EntityId, limit: u32 },
    /// Up to `count` random ids of a type.
    Random { etype: String, count: u32 },
}

/// A query template: association type → the template to expand at the other end.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Template(pub BTreeMap<String, Template>);

/// The answer to a [`ReadRequest`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ReadResult {
    Entities { entities: Vec<Entity> },
    Assocs { count: u64, items: Vec<Association> },
    Query { entities: Vec<Expanded>, stats: QueryStats },
    Timeline { timeline: Timeline },
    Random { ids: Vec<EntityId> },
}

/// An entity with its expanded associations (the result of a template query).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Expanded {
    #[serde(flatten)]
    pub entity: Entity,
    /// Association type → the entities at the other end, each expanded further.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub associations: BTreeMap<String, Vec<Expanded>>,
}

/// How a template query was served.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct QueryStats {
    /// Levels expanded (the entities themselves are level 0).
    pub levels: u32,
    /// Batched cache requests made (one per kind of lookup per level).
    pub fetches: u32,
    /// Keys that missed the cache and were filled.
    pub misses: u32,
    /// Keys asked for in all.
    pub keys: u32,
    /// Time spent, in microseconds.
    pub micros: u64,
    /// The node that served it (with several shards, each part's, comma-separated).
    pub node: String,
}

/// A user's timeline, newest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Timeline {
    pub user: Entity,
    /// Statuses the user posted, each with who liked it.
    pub posts: Vec<TimelinePost>,
    /// Statuses the user liked, each with who posted it.
    pub likes: Vec<TimelineLike>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TimelinePost {
    pub status: Entity,
    pub liked_by: Vec<Entity>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TimelineLike {
    pub status: Entity,
    pub posted_by: Vec<Entity>,
}

/// A write, sent to the leader at `P.node.<leader>.write`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum WriteRequest {
    CreateEntity {
        etype: String,
        attributes: Attributes,
    },
    /// A JSON merge patch (RFC 7396) of the attributes.
    UpdateEntity {
        id: EntityId,
        patch: serde_json::Value,
    },
    DeleteEntity {
        id: EntityId,
    },
    AddAssoc {
        from: EntityId,
        atype: String,
        to: EntityId,
        attributes: Attributes,
    },
    RemoveAssoc {
        from: EntityId,
        atype: String,
        to: EntityId,
    },
}

impl WriteRequest {
    /// The operation's name (`create_entity`, …), for events and metrics.
    pub fn op_name(&self) -> &'static str {
        match self {
            WriteRequest::CreateEntity { .. } => "create_entity",
            WriteRequest::UpdateEntity { .. } => "update_entity",
            WriteRequest::DeleteEntity { .. } => "delete_entity",
            WriteRequest::AddAssoc { .. } => "add_assoc",
            WriteRequest::RemoveAssoc { .. } => "remove_assoc",
        }
    }
}

/// A committed write: its invalidation seq and what it produced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WriteOutcome {
    pub seq: u64,
    pub result: WriteResult,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WriteResult {
    Entity {
        entity: Entity,
    },
    Assoc {
        association: Association,
    },
    /// A delete or removal; `found` tells whether there was anything to delete.
    Deleted {
        found: bool,
    },
}

/// A follower's cache fill, sent to the leader at `P.node.<leader>.fill`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FillRequest {
    pub term: u64,
    pub node: String,
    pub keys: Vec<CacheKey>,
}

/// The leader's answer to a fill: a value for every key asked, in order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FillReply {
    pub term: u64,
    /// The leader's invalidation seq when it read these values.
    pub seq: u64,
    pub values: Vec<CacheValue>,
}

/// What the cache holds for one [`CacheKey`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CacheValue {
    /// An entity, or `None` when it does not exist (negative entries are cached too).
    Entity { entity: Option<Entity> },
    /// An association list, newest first: the total count and the newest items (at most
    /// the leader's retained window).
    Assocs { count: u64, items: Vec<Association>, complete: bool },
}

/// Error codes shared by nodes, the client and the gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request is malformed or names something impossible.
    Invalid,
    /// The entity (or association) does not exist.
    NotFound,
    /// The write conflicts with the state (e.g. an association to a missing entity).
    Conflict,
    /// This node is not the leader, or not the leader any more (fenced).
    NotLeader,
    /// This node cannot serve now (no read lease, unplugged, lagging).
    Unavailable,
    /// Something failed inside the node (MySQL error, …).
    Internal,
}

impl ErrorCode {
    /// This node may not serve the request now (`NotLeader`, `Unavailable`), and it did not
    /// run here: another node, or the leader once there is one, may.
    pub fn ask_elsewhere(self) -> bool {
        matches!(self, ErrorCode::NotLeader | ErrorCode::Unavailable)
    }
}

/// An error answered over the bus.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorBody { code, message: message.into() }
    }
}

/// Every reply over the bus: `{"ok": …}` or `{"error": {code, message}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply<T> {
    Ok(T),
    Error(ErrorBody),
}

impl<T> From<Result<T, ErrorBody>> for Reply<T> {
    fn from(r: Result<T, ErrorBody>) -> Self {
        match r {
            Ok(v) => Reply::Ok(v),
            Err(e) => Reply::Error(e),
        }
    }
}

impl<T> From<Reply<T>> for Result<T, ErrorBody> {
    fn from(r: Reply<T>) -> Self {
        match r {
            Reply::Ok(v) => Ok(v),
            Reply::Error(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_keys_round_trip_as_strings() {
        for k in [CacheKey::Entity(42), CacheKey::Assocs { from: 7, atype: "likedby".into() }] {
            assert_eq!(k.to_string().parse::<CacheKey>(), Ok(k));
        }
        assert!("x:1".parse::<CacheKey>().is_err());
        assert!("a:1:Bad-Type".parse::<CacheKey>().is_err());
        assert!("e:-1".parse::<CacheKey>().is_err());
    }

    #[test]
    fn inverses_pair_up() {
        for t in ["friend", "likes", "likedby", "posted", "postedby"] {
            let inv = inverse_of(t).unwrap();
            assert_eq!(inverse_of(inv), Some(t));
        }
        assert_eq!(inverse_of("follows"), None);
    }
}
