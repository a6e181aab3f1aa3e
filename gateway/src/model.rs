//! The REST contract's bodies: what the gateway takes and gives as JSON, each with its
//! OpenAPI schema. They mirror the wire types of `instaface_bus::graph` (converted with
//! `From`), so the REST contract is the gateway's own and the OpenAPI document is derived
//! from the very types the handlers serialize.

use std::borrow::Cow;
use std::collections::BTreeMap;

use instaface_bus::graph as wire;
use instaface_bus::messages::Role;
use serde::{Deserialize, Serialize};
use utoipa::openapi::extensions::ExtensionsBuilder;
use utoipa::openapi::path::{Parameter, ParameterIn};
use utoipa::openapi::schema::{AdditionalProperties, ArrayBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{IntoParams, PartialSchema, ToSchema};

use crate::bounds;

/// Attributes: any JSON object.
pub type Attributes = serde_json::Map<String, serde_json::Value>;

/// An entity (`user`, `status`, …) with its attributes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Entity {
    pub id: u64,
    /// The entity type, a plain identifier (`[a-z][a-z0-9_]{0,31}`).
    #[serde(rename = "type")]
    pub etype: String,
    #[schema(value_type = Object)]
    pub attributes: Attributes,
    /// Creation time, ms since the epoch.
    pub created: u64,
    /// Last update time, ms since the epoch.
    pub updated: u64,
    /// 1 at creation, one more with every update.
    pub version: u64,
}

impl From<wire::Entity> for Entity {
    fn from(e: wire::Entity) -> Self {
        Entity {
            id: e.id,
            etype: e.etype,
            attributes: e.attributes,
            created: e.created,
            updated: e.updated,
            version: e.version,
        }
    }
}

/// A directed association `from --type--> to` with its attributes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Association {
    pub from: u64,
    #[serde(rename = "type")]
    pub atype: String,
    pub to: u64,
    #[schema(value_type = Object)]
    pub attributes: Attributes,
    /// Creation time, ms since the epoch.
    pub created: u64,
}

impl From<wire::Association> for Association {
    fn from(a: wire::Association) -> Self {
        Association { from: a.from, atype: a.atype, to: a.to, attributes: a.attributes, created: a.created }
    }
}

/// One page of an association list, newest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AssociationList {
    /// How many associations of this type the entity has in all.
    pub count: u64,
    pub items: Vec<Association>,
}

/// A query template: association type → the template to expand at the other end
/// (`{}` stops there).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Template(pub BTreeMap<String, Template>);

impl Template {
    /// How deep the template nests (`{}` is 0).
    pub fn depth(&self) -> usize {
        self.0.values().map(|t| 1 + t.depth()).max().unwrap_or(0)
    }

    /// Every association type named anywhere in the template.
    pub fn types(&self) -> Vec<&str> {
        let mut out = Vec::new();
        for (k, t) in &self.0 {
            out.push(k.as_str());
            out.extend(t.types());
        }
        out
    }
}

impl From<Template> for wire::Template {
    fn from(t: Template) -> Self {
        wire::Template(t.0.into_iter().map(|(k, v)| (k, v.into())).collect())
    }
}

// A recursive map has no derive. Its schema states the planner's bounds: the depth by
// unrolling (a template is an object whose values are templates one level shallower, down to
// `{}`), the fan-out of each level with `maxProperties`, the keys with `propertyNames`. The
// bound on the types named over all levels has no JSON Schema keyword: the description and
// `x-max-association-types` state it.
impl PartialSchema for Template {
    fn schema() -> RefOr<Schema> {
        fn level(depth: usize) -> ObjectBuilder {
            let object = ObjectBuilder::new().schema_type(Type::Object);
            if depth == 0 {
                return object.max_properties(Some(0)).description(Some("`{}`: stops here."));
            }
            object
                .property_names(Some(bounds::type_name_schema("friend")))
                .max_properties(Some(wire::MAX_TEMPLATE_TYPES))
                .additional_properties(Some(level(depth - 1)))
        }
        let mut top = level(wire::MAX_TEMPLATE_DEPTH).build();
        top.description = Some(format!(
            "Association type → the template to expand at the other end (`{{}}` stops there). At most \
             {} levels deep, and at most {} association types over all levels (`x-max-association-types`).",
            wire::MAX_TEMPLATE_DEPTH,
            wire::MAX_TEMPLATE_TYPES
        ));
        top.extensions =
            Some(ExtensionsBuilder::new().add("x-max-association-types", wire::MAX_TEMPLATE_TYPES).build());
        top.examples = vec![serde_json::json!({ "friend": {}, "posted": { "likedby": {} } })];
        Schema::Object(top).into()
    }
}

impl ToSchema for Template {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Template")
    }
}

/// `POST /api/query`: the entities to start from and what to expand.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryRequest {
    #[serde(deserialize_with = "bounds::de_json_ids")]
    pub entities: Vec<u64>,
    #[serde(default)]
    pub template: Template,
}

impl PartialSchema for QueryRequest {
    fn schema() -> RefOr<Schema> {
        let entities = ArrayBuilder::new()
            .items(bounds::u64_schema())
            .min_items(Some(1))
            .max_items(Some(wire::MAX_IDS_PER_READ))
            .description(Some(format!(
                "The entities to start from (1 to {}; repeats are expanded once), in the order to answer.",
                wire::MAX_IDS_PER_READ
            )));
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .property("entities", entities)
            .required("entities")
            .property("template", Ref::from_schema_name("Template"))
            .additional_properties(Some(AdditionalProperties::FreeForm(false)))
            .description(Some(format!(
                "The entities to start from and what to expand. A node refuses (400) a query whose expansion \
                 holds more than {} entities or looks up more than {} cache keys.",
                wire::MAX_QUERY_ENTITIES,
                wire::MAX_QUERY_KEYS
            )))
            .examples([serde_json::json!({ "entities": [1], "template": { "friend": {} } })])
            .into()
    }
}

impl ToSchema for QueryRequest {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("QueryRequest")
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((Template::name().into(), Template::schema()));
    }
}

/// An entity with each association of the template expanded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ExpandedEntity {
    pub id: u64,
    #[serde(rename = "type")]
    pub etype: String,
    #[schema(value_type = Object)]
    pub attributes: Attributes,
    pub created: u64,
    pub updated: u64,
    pub version: u64,
    /// Association type → the entities at the other end, each expanded further.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(no_recursion)]
    pub associations: BTreeMap<String, Vec<ExpandedEntity>>,
}

impl From<wire::Expanded> for ExpandedEntity {
    fn from(x: wire::Expanded) -> Self {
        let e = x.entity;
        ExpandedEntity {
            id: e.id,
            etype: e.etype,
            attributes: e.attributes,
            created: e.created,
            updated: e.updated,
            version: e.version,
            associations: x
                .associations
                .into_iter()
                .map(|(k, v)| (k, v.into_iter().map(Into::into).collect()))
                .collect(),
        }
    }
}

/// How a template query was served.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QueryStats {
    /// Levels expanded (the entities themselves are level 0).
    pub levels: u32,
    /// Batched cache requests made (one per kind of lookup per level).
    pub fetches: u32,
    /// Keys that missed the cache and were filled.
    pub misses: u32,
    /// Keys asked for in all.
    pub keys: u32,
    /// Time spent at the node, in microseconds.
    pub micros: u64,
    /// The node that served it.
    pub node: String,
}

impl From<wire::QueryStats> for QueryStats {
    fn from(s: wire::QueryStats) -> Self {
        QueryStats {
            levels: s.levels,
            fetches: s.fetches,
            misses: s.misses,
            keys: s.keys,
            micros: s.micros,
            node: s.node,
        }
    }
}

/// The answer to `POST /api/query`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QueryResponse {
    pub entities: Vec<ExpandedEntity>,
    pub stats: QueryStats,
}

/// A user's timeline, newest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Timeline {
    pub user: Entity,
    /// Statuses the user posted, each with who liked it.
    pub posts: Vec<TimelinePost>,
    /// Statuses the user liked, each with who posted it.
    pub likes: Vec<TimelineLike>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TimelinePost {
    pub status: Entity,
    pub liked_by: Vec<Entity>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TimelineLike {
    pub status: Entity,
    pub posted_by: Vec<Entity>,
}

impl From<wire::Timeline> for Timeline {
    fn from(t: wire::Timeline) -> Self {
        Timeline {
            user: t.user.into(),
            posts: t
                .posts
                .into_iter()
                .map(|p| TimelinePost {
                    status: p.status.into(),
                    liked_by: p.liked_by.into_iter().map(Into::into).collect(),
                })
                .collect(),
            likes: t
                .likes
                .into_iter()
                .map(|l| TimelineLike {
                    status: l.status.into(),
                    posted_by: l.posted_by.into_iter().map(Into::into).collect(),
                })
                .collect(),
        }
    }
}

/// Random ids of one type.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RandomIds {
    pub ids: Vec<u64>,
}

/// A node's role as the gateway last heard it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NodeRole {
    Follower,
    PreCandidate,
    Candidate,
    Leader,
    /// Not heard from yet.
    Unknown,
}

impl From<Role> for NodeRole {
    fn from(r: Role) -> Self {
        match r {
            Role::Follower => NodeRole::Follower,
            Role::PreCandidate => NodeRole::PreCandidate,
            Role::Candidate => NodeRole::Candidate,
            Role::Leader => NodeRole::Leader,
        }
    }
}

/// A node's cache counters (cumulative since it started).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CacheCounters {
    pub hits: u64,
    pub misses: u64,
    pub entries: u64,
    pub fills: u64,
}

/// One member of the cluster as the gateway sees it. With several shards a node hosts a
/// member of every shard's leader group; `role`, `term`, `applied_seq`, `lease_ms`,
/// `serving` and `cache` describe its member of shard 0's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NodeOverview {
    pub id: String,
    pub role: NodeRole,
    /// The node's own term.
    pub term: u64,
    /// Answers its status endpoint, is not unplugged, and the leader has not reported it
    /// unreachable in the current term.
    pub reachable: bool,
    /// Cut off from its peers (no heartbeats, votes, acks, invalidations or fills in or
    /// out). Clients may still reach it unless `clients_unplugged`.
    pub unplugged: bool,
    /// Cut off from clients as well (total isolation): it refuses every client request.
    pub clients_unplugged: bool,
    /// It answers reads: it holds a read lease (a leader: and has loaded the outbox) and is
    /// not cut off from clients. As of its latest status answer (`status_age_ms` ago), or
    /// `false` when it did not answer the latest poll or has since been cut off from
    /// clients.
    pub serving: bool,
    /// Every invalidation up to here is applied to its cache.
    pub applied_seq: u64,
    /// Milliseconds left on its read lease at its latest status answer (0: it holds none).
    /// A node in contact with the leader renews its lease with every heartbeat; one cut off
    /// from its peers keeps serving reads only until this runs out.
    pub lease_ms: u64,
    /// How long ago, in ms, the node gave its latest status answer (the moment `lease_ms` and
    /// `serving` describe); `null` before its first answer.
    pub status_age_ms: Option<u64>,
    pub cache: CacheCounters,
}

/// `GET /api/cluster`. `leader` and `term` are those of shard 0's leader group (the only
/// one when the graph is not split); `shards` lists every shard's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ClusterOverview {
    /// The current leader, `null` while none is known.
    pub leader: Option<String>,
    pub term: u64,
    /// The members in Redis.
    pub members: Vec<String>,
    pub nodes: Vec<NodeOverview>,
    /// Every shard's leader group, in shard order (one entry when the graph is not split;
    /// entry 0 repeats `leader` and `term`).
    pub shards: Vec<ShardOverview>,
}

/// One shard's leader group as the gateway hears it (through its heartbeats).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ShardOverview {
    /// The shard, `0` to `SHARDS - 1`; its entities' ids are `shard << 40` and up.
    pub shard: u32,
    /// Its current leader (a member), `null` while none is known or the last one heard of
    /// has gone quiet.
    pub leader: Option<String>,
    /// Its term: the current leader's, else the latest heard of.
    pub term: u64,
}

/// `PUT /api/cluster/nodes/{id}/unplugged`: `{"unplugged": true}` cuts the node off from
/// its peers, `{"unplugged": true, "clients": true}` isolates it totally,
/// `{"unplugged": false}` plugs it back in.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UnplugRequest {
    /// `true` cuts the node off from its peers: it drops every cluster-internal message in
    /// and out (heartbeats, votes, acks, invalidations, fills), while clients can still reach
    /// it — a follower keeps serving reads until its read lease runs out, then refuses them.
    /// `false` plugs it back in, to peers and clients alike.
    pub unplugged: bool,
    /// With `unplugged: true`, cut it off from clients as well as from its peers (total
    /// isolation): it refuses every client request at once, lease or not. Optional, `false`
    /// by default; ignored (and published as `false`) when plugging back in.
    #[serde(default)]
    #[schema(default = false)]
    pub clients: bool,
}

/// The unplug command, as published on `P.control.unplug`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UnplugAccepted {
    pub node: String,
    /// Cut off from its peers (`false`: plugged back in).
    pub unplugged: bool,
    /// Cut off from clients as well (always `false` when plugging back in).
    pub clients: bool,
}

/// `GET /healthz`: the gateway is alive; what it currently knows of its links.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// Always `ok` while the process serves.
    pub status: String,
    pub nats_connected: bool,
    /// Shard 0's leader, as this gateway last heard.
    pub leader: Option<String>,
    /// The shards whose leader this gateway does not know now (empty while every shard is
    /// led; writes to these shards wait or fail until one is).
    pub shards_without_leader: Vec<u32>,
}

/// Every error: `{"error": {"code", "message"}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorResponse {
    pub error: ErrorDetail,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// `bad_request`, `invalid_json`, `unsupported_media_type`, `payload_too_large`,
    /// `unauthorized`, `forbidden`, `not_found`, `method_not_allowed`, `conflict`,
    /// `no_leader`, `unavailable`, `timeout`, `outcome_unknown`, `upstream_error`, `internal`.
    pub code: String,
    pub message: String,
}

/// Read consistency, `?consistency=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConsistencyLevel {
    /// Any node holding a read lease (the default).
    Eventual,
    /// The leader, under its own lease.
    Strong,
}

/// Query parameters every read accepts.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ReadParams {
    /// `strong` reads at the leader; `eventual` (the default) at any follower.
    pub consistency: Option<ConsistencyLevel>,
    /// Served only by a node that has applied this write seq (from `X-Instaface-Seq`).
    #[serde(default, deserialize_with = "bounds::de_opt_u64")]
    pub min_seq: Option<u64>,
}

impl IntoParams for ReadParams {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let consistency = ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(["eventual", "strong"]))
            .default(Some("eventual".into()));
        vec![
            bounds::query_parameter(
                "consistency",
                "`eventual` (the default): any node holding a read lease answers. `strong`: the leader \
                 answers, under its own lease; `min_seq` is then moot (the leader has applied every write).",
                false,
                consistency,
            ),
            bounds::query_parameter(
                "min_seq",
                "Read your writes: only a node that has applied this invalidation seq (the \
                 `X-Instaface-Seq` of a write) answers. Any unsigned 64-bit number; ignored with \
                 `consistency=strong`.",
                false,
                bounds::u64_schema(),
            ),
        ]
    }
}

impl ReadParams {
    /// `strong` wins over `min_seq` (the leader has applied everything).
    pub fn consistency(&self) -> wire::Consistency {
        match (self.consistency, self.min_seq) {
            (Some(ConsistencyLevel::Strong), _) => wire::Consistency::Strong,
            (_, Some(min_seq)) => wire::Consistency::MinSeq { min_seq },
            _ => wire::Consistency::Eventual,
        }
    }
}
