//! The shared client the gateway and the bot use (and any Rust program may): tracks the
//! leader and term from heartbeats, sends writes to the leader, reads through the
//! `readers` queue group with the requested consistency, and returns errors as values.
//!
//! Retries are bounded and never duplicate a write: a write is retried only when the
//! answer proves it did not run (no responder, or a node saying it is not the leader); a
//! write that timed out, or committed without its invalidation being confirmed, is
//! [`ClientError::OutcomeUnknown`].
//!
//! With several shards (`SHARDS`) the client keeps one lane per shard — that shard's
//! leader, heartbeats and read batcher — and routes by id: a write to its entity's (or its
//! association's `from` entity's) shard, a create to the shard of the entity it is `near`
//! or else to the next shard in turn, a read to the shards of its ids, split and run in
//! parallel, the answers merged in the order asked. Seqs are per shard.
//!
//! A client inside a node (the gateway a node serves, `GATEWAY_LISTEN`) has a
//! [`LocalReader`] in its configuration: each read asks it first, and goes over the bus
//! only when the node may not serve it there ([`crate::local_reads`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::watch;

use crate::graph::*;
use crate::local_reads::LocalReader;
use crate::messages::{Event, EventKind, Heartbeat};
use crate::read_batcher::{Batched, ReadBatcher};
use crate::shards::{ShardId, Shards};
use crate::{Bus, BusError, NodeId};

/// How long a heartbeat vouches for its leader.
const LEADER_STALE: Duration = Duration::from_millis(2500);

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClientError {
    #[error("no leader within {0:?}")]
    NoLeader(Duration),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("invalid: {0}")]
    Invalid(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The write may or may not have happened; retrying could duplicate it.
    #[error("outcome unknown: {0}")]
    OutcomeUnknown(String),
    #[error("internal error at the node: {0}")]
    Internal(String),
    #[error("bus: {0}")]
    Bus(String),
}

impl ClientError {
    fn from_body(e: ErrorBody) -> ClientError {
        match e.code {
            ErrorCode::Invalid => ClientError::Invalid(e.message),
            ErrorCode::NotFound => ClientError::NotFound(e.message),
            ErrorCode::Conflict => ClientError::Conflict(e.message),
            ErrorCode::NotLeader | ErrorCode::Unavailable => ClientError::Unavailable(e.message),
            ErrorCode::Internal => ClientError::Internal(e.message),
        }
    }
}

/// The leader as last heard.
#[derive(Clone, Debug, PartialEq)]
pub struct LeaderInfo {
    pub leader: Option<NodeId>,
    pub term: u64,
    pub seen: Option<Instant>,
    pub members: Vec<NodeId>,
    /// The leader's latest invalidation seq.
    pub seq: u64,
}

impl LeaderInfo {
    /// The leader, if heard from recently.
    pub fn current(&self) -> Option<(&NodeId, u64)> {
        match (&self.leader, self.seen) {
            (Some(l), Some(seen)) if seen.elapsed() < LEADER_STALE => Some((l, self.term)),
            _ => None,
        }
    }
}

/// Timeouts and retry bounds.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// One request's timeout.
    pub request_timeout: Duration,
    /// How long a call may spend waiting for a leader and retrying.
    pub deadline: Duration,
    /// Follower reads go through a [`ReadBatcher`]: at most a few requests out at once,
    /// the reads that wait meanwhile sent together. Off: every read is its own request.
    pub batch_reads: bool,
    /// The cluster's shards (`SHARDS`).
    pub shards: Shards,
    /// Reads this process may serve itself (a gateway inside a node): asked first, the
    /// bus when it may not serve a read here.
    pub local: Option<LocalReader>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            request_timeout: Duration::from_secs(5),
            deadline: Duration::from_secs(10),
            batch_reads: true,
            shards: Shards::one(),
            local: None,
        }
    }
}

/// The graph client. Cheap to clone; the leader trackers stop with the last clone.
#[derive(Clone)]
pub struct GraphClient {
    /// One per shard, in shard order.
    lanes: Arc<[Lane]>,
    cfg: ClientConfig,
    /// The shard the next create without a `near` entity goes to.
    next_create: Arc<AtomicU32>,
    /// The shard the next random pick starts from.
    next_random: Arc<AtomicU32>,
    _tracker: Arc<TrackerGuard>,
}

/// What the client keeps for one shard's leader group.
struct Lane {
    bus: Bus,
    leader: watch::Receiver<LeaderInfo>,
    batcher: Option<ReadBatcher>,
}

struct TrackerGuard(Mutex<Vec<tokio::task::JoinHandle<()>>>);

impl Drop for TrackerGuard {
    fn drop(&mut self) {
        if let Ok(tasks) = self.0.lock() {
            for t in tasks.iter() {
                t.abort();
            }
        }
    }
}

impl GraphClient {
    /// Starts tracking each shard's leader on `bus` (heartbeats and leader events).
    pub async fn new(bus: Bus, cfg: ClientConfig) -> Result<GraphClient, BusError> {
        let mut lanes = Vec::new();
        let mut tasks = Vec::new();
        let mut trackers = Vec::new();
        for k in cfg.shards.all() {
            let (lane, tracker, lane_tasks) = Lane::start(bus.for_shard(k, cfg.shards), &cfg).await?;
            lanes.push(lane);
            trackers.push(tracker);
            tasks.extend(lane_tasks);
        }
        // With the cluster key, only authenticated heartbeats say who leads (events are
        // not signed); without it, leader events do too: one subscription for every
        // shard, each event going to its shard's tracker.
        if !bus.authenticates() {
            let mut events = bus.subscribe::<Event>(bus.subjects().events()).await?;
            tasks.push(tokio::spawn(async move {
                while let Some(msg) = events.next().await {
                    if let Ok(Event { node, term, shard, kind: EventKind::Leader { members }, .. }) = msg.payload {
                        if let Some(tx) = trackers.get(shard as usize) {
                            observe(tx, term, &node, Some(members), None);
                        }
                    }
                }
            }));
        }
        // Bounded: while NATS is down the subscriptions are made on reconnect anyway.
        let _ = tokio::time::timeout(Duration::from_secs(1), bus.flush()).await;
        Ok(GraphClient {
            lanes: lanes.into(),
            cfg,
            next_create: Arc::new(AtomicU32::new(0)),
            next_random: Arc::new(AtomicU32::new(0)),
            _tracker: Arc::new(TrackerGuard(Mutex::new(tasks))),
        })
    }

    fn lane(&self, k: ShardId) -> &Lane {
        // Shards are checked before a lane is asked for; shard 0 always exists.
        self.lanes.get(k as usize).unwrap_or(&self.lanes[0])
    }

    /// The cluster's shards.
    pub fn shards(&self) -> Shards {
        self.cfg.shards
    }

    /// The bus, addressing shard 0 (cluster-wide subjects are the same from every shard).
    pub fn bus(&self) -> &Bus {
        &self.lane(0).bus
    }

    /// Shard 0's leader as last heard (possibly stale: see [`LeaderInfo::current`]).
    pub fn leader_info(&self) -> LeaderInfo {
        self.leader_info_of(0)
    }

    /// Shard `k`'s leader as last heard.
    pub fn leader_info_of(&self, k: ShardId) -> LeaderInfo {
        self.lane(k).leader.borrow().clone()
    }

    /// A receiver that changes whenever shard `k`'s tracked leader or term changes.
    pub fn watch_leader_of(&self, k: ShardId) -> watch::Receiver<LeaderInfo> {
        self.lane(k).leader.clone()
    }

    /// Waits (up to `timeout`) until shard 0's leader is known.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<(NodeId, u64), ClientError> {
        self.wait_for_leader_of(0, timeout).await
    }

    /// Waits (up to `timeout`) until every shard's leader is known.
    pub async fn wait_for_leaders(&self, timeout: Duration) -> Result<(), ClientError> {
        let deadline = Instant::now() + timeout;
        for k in self.cfg.shards.all() {
            self.wait_for_leader_of(k, deadline.saturating_duration_since(Instant::now())).await?;
        }
        Ok(())
    }

    /// Waits (up to `timeout`) until shard `k`'s leader is known.
    pub async fn wait_for_leader_of(&self, k: ShardId, timeout: Duration) -> Result<(NodeId, u64), ClientError> {
        let deadline = Instant::now() + timeout;
        let mut rx = self.lane(k).leader.clone();
        loop {
            if let Some((l, t)) = rx.borrow_and_update().current() {
                return Ok((l.clone(), t));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ClientError::NoLeader(timeout));
            }
            // A stale leader becomes current again only through a change; poll modestly too.
            let _ = tokio::time::timeout(left.min(Duration::from_millis(100)), rx.changed()).await;
        }
    }

    /// Waits for a leader of shard `k` other than (`old`, `term`), up to the deadline.
    async fn wait_for_change(
        &self,
        k: ShardId,
        old: &NodeId,
        term: u64,
        deadline: Instant,
    ) -> Result<(NodeId, u64), ClientError> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (l, t) = self.wait_for_leader_of(k, left).await?;
            if &l != old || t != term {
                return Ok((l, t));
            }
            if Instant::now() >= deadline {
                return Err(ClientError::NoLeader(self.cfg.deadline));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs a write at its shard's leader (a create at the next shard in turn). Retries
    /// (bounded) only when it certainly did not run.
    pub async fn write(&self, req: WriteRequest) -> Result<WriteOutcome, ClientError> {
        self.write_near(req, None).await
    }

    /// [`GraphClient::write`], a create going to the shard of the entity `near` names
    /// (a status in its poster's shard), when it names one.
    pub async fn write_near(&self, req: WriteRequest, near: Option<EntityId>) -> Result<WriteOutcome, ClientError> {
        let shards = self.cfg.shards;
        // An id of no shard names no entity: not found, as a read of it answers.
        let k = match shards.of_write(&req).map_err(ClientError::NotFound)? {
            Some(k) => k,
            None => match near {
                Some(id) => shards.of(id).ok_or_else(|| {
                    ClientError::Invalid(format!(
                        "near: entity {id} names shard {}, and there are {} shards",
                        crate::shards::shard_of(id),
                        shards.count()
                    ))
                })?,
                None => self.next_create.fetch_add(1, Ordering::Relaxed) % shards.count(),
            },
        };
        self.write_in(k, &req).await
    }

    /// Runs a write at shard `k`'s leader.
    async fn write_in(&self, k: ShardId, req: &WriteRequest) -> Result<WriteOutcome, ClientError> {
        let bus = &self.lane(k).bus;
        let deadline = Instant::now() + self.cfg.deadline;
        let (mut leader, mut term) = self.wait_for_leader_of(k, self.cfg.deadline).await?;
        loop {
            let subject = bus.subjects().write(&leader);
            match bus.request::<_, Reply<WriteOutcome>>(subject, req, self.cfg.request_timeout).await {
                Ok(Reply::Ok(outcome)) => return Ok(outcome),
                Ok(Reply::Error(e)) if e.code == ErrorCode::NotLeader => {
                    // Refused before running: safe to retry at the next leader.
                    if Instant::now() >= deadline {
                        return Err(ClientError::NoLeader(self.cfg.deadline));
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    (leader, term) =
                        match self.wait_for_leader_of(k, deadline.saturating_duration_since(Instant::now())).await {
                            Ok(lt) => lt,
                            Err(e) => return Err(e),
                        };
                }
                Ok(Reply::Error(e)) if e.code == ErrorCode::Unavailable => {
                    return Err(ClientError::OutcomeUnknown(e.message));
                }
                Ok(Reply::Error(e)) => return Err(ClientError::from_body(e)),
                Err(BusError::NoResponders { .. }) => {
                    // Nobody received it: the leader is gone; wait for another.
                    (leader, term) = self.wait_for_change(k, &leader, term, deadline).await?;
                }
                Err(BusError::Timeout { timeout, .. }) => {
                    return Err(ClientError::OutcomeUnknown(format!(
                        "no answer from leader {leader} within {timeout:?}"
                    )));
                }
                Err(e) => return Err(ClientError::OutcomeUnknown(e.to_string())),
            }
        }
    }

    /// Runs a read with the requested consistency at the shards its ids are in (see
    /// [`GraphClient`]): followers first (the `readers` queue group) unless `strong`, the
    /// leader when no follower can serve.
    pub async fn read(&self, query: ReadQuery, consistency: Consistency) -> Result<ReadResult, ClientError> {
        let shards = self.cfg.shards;
        if !shards.split() {
            return self.read_in(0, query, consistency).await;
        }
        match query {
            ReadQuery::Assocs { from, .. } | ReadQuery::Timeline { user: from, .. } => match shards.of(from) {
                Some(k) => self.read_in(k, query, consistency).await,
                None => Err(ClientError::NotFound(format!("no entity {from}"))),
            },
            // Ids of one shard (most reads): that shard answers it whole, in order.
            ReadQuery::Entities { ref ids } | ReadQuery::Query { entities: ref ids, .. }
                if let Some(k) = one_shard(shards, ids) =>
            {
                self.read_in(k, query, consistency).await
            }
            ReadQuery::Entities { ids } => {
                let parts = self.read_split(&ids, |ids| ReadQuery::Entities { ids }, consistency).await?;
                let mut found = BTreeMap::new();
                for part in parts {
                    match part {
                        ReadResult::Entities { entities } => found.extend(entities.into_iter().map(|e| (e.id, e))),
                        other => return Err(unexpected(other)),
                    }
                }
                Ok(ReadResult::Entities { entities: in_order(&ids, found) })
            }
            ReadQuery::Query { entities: ids, template } => {
                let parts = self
                    .read_split(&ids, |ids| ReadQuery::Query { entities: ids, template: template.clone() }, consistency)
                    .await?;
                let mut found = BTreeMap::new();
                let mut total = QueryStats::default();
                for part in parts {
                    match part {
                        ReadResult::Query { entities, stats } => {
                            found.extend(entities.into_iter().map(|e| (e.entity.id, e)));
                            total.levels = total.levels.max(stats.levels);
                            total.fetches += stats.fetches;
                            total.misses += stats.misses;
                            total.keys += stats.keys;
                            total.micros = total.micros.max(stats.micros);
                            if !total.node.is_empty() {
                                total.node.push(',');
                            }
                            total.node.push_str(&stats.node);
                        }
                        other => return Err(unexpected(other)),
                    }
                }
                Ok(ReadResult::Query { entities: in_order(&ids, found), stats: total })
            }
            ReadQuery::Random { etype, count } => {
                // Every shard's share, so the picks span shards.
                let n = shards.count();
                let share = count.div_ceil(n);
                let asks = shards.all().map(|k| {
                    let query = ReadQuery::Random { etype: etype.clone(), count: share };
                    self.read_in(k, query, consistency)
                });
                let mut lists = Vec::new();
                for part in futures::future::join_all(asks).await {
                    match part? {
                        ReadResult::Random { ids } => lists.push(ids.into_iter()),
                        other => return Err(unexpected(other)),
                    }
                }
                // Interleaved from a shard that turns, so a truncated answer still spans
                // the shards and a small one is not always shard 0's.
                let start = self.next_random.fetch_add(1, Ordering::Relaxed) as usize % lists.len().max(1);
                lists.rotate_left(start);
                let mut ids = Vec::new();
                while ids.len() < count as usize {
                    let before = ids.len();
                    ids.extend(lists.iter_mut().filter_map(|l| l.next()));
                    if ids.len() == before {
                        break;
                    }
                }
                ids.truncate(count as usize);
                Ok(ReadResult::Random { ids })
            }
        }
    }

    /// Runs `make(ids of shard k)` at every shard `ids` touch, in parallel. Ids of no
    /// shard are left out (no such entity).
    async fn read_split(
        &self,
        ids: &[EntityId],
        make: impl Fn(Vec<EntityId>) -> ReadQuery,
        consistency: Consistency,
    ) -> Result<Vec<ReadResult>, ClientError> {
        let mut by_shard: BTreeMap<ShardId, Vec<EntityId>> = BTreeMap::new();
        for &id in ids {
            if let Some(k) = self.cfg.shards.of(id) {
                by_shard.entry(k).or_default().push(id);
            }
        }
        let asks = by_shard.into_iter().map(|(k, ids)| self.read_in(k, make(ids), consistency));
        futures::future::join_all(asks).await.into_iter().collect()
    }

    /// Runs a read at shard `k`'s leader group.
    async fn read_in(&self, k: ShardId, query: ReadQuery, consistency: Consistency) -> Result<ReadResult, ClientError> {
        let lane = self.lane(k);
        let deadline = Instant::now() + self.cfg.deadline;
        let req = ReadRequest { consistency, query };
        if let Some(served) = self.cfg.local.as_ref().and_then(|local| local.0.read(k, req.clone())) {
            match served.await {
                Ok(r) => return Ok(r),
                // Not here (no lease, not the leader, behind min_seq): over the bus.
                Err(e) if e.code.ask_elsewhere() => {}
                Err(e) => return Err(ClientError::from_body(e)),
            }
        }
        if consistency != Consistency::Strong {
            let batched = match &lane.batcher {
                Some(batcher) => batcher.read(req.clone()).await,
                None => Batched::Alone,
            };
            let answer = match batched {
                Batched::Answer(answer) => answer,
                Batched::Alone => {
                    let subject = lane.bus.subjects().graph_read();
                    lane.bus.request::<_, Reply<ReadResult>>(subject, &req, self.cfg.request_timeout).await
                }
            };
            match answer {
                Ok(Reply::Ok(r)) => return Ok(r),
                Ok(Reply::Error(e)) if !e.code.ask_elsewhere() => {
                    return Err(ClientError::from_body(e));
                }
                // No follower can serve (none holds a lease, or it lags min_seq): the leader.
                Ok(Reply::Error(_)) | Err(BusError::NoResponders { .. }) | Err(BusError::Timeout { .. }) => {}
                Err(e) => return Err(ClientError::Bus(e.to_string())),
            }
        }
        let mut last = ClientError::NoLeader(self.cfg.deadline);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(last);
            }
            let (leader, term) = self.wait_for_leader_of(k, left).await?;
            let subject = lane.bus.subjects().read_at(&leader);
            let leader_req = ReadRequest { consistency: Consistency::Strong, query: req.query.clone() };
            match lane
                .bus
                .request::<_, Reply<ReadResult>>(subject, &leader_req, self.cfg.request_timeout.min(left))
                .await
            {
                Ok(Reply::Ok(r)) => return Ok(r),
                Ok(Reply::Error(e)) if e.code.ask_elsewhere() => {
                    last = ClientError::Unavailable(e.message);
                    // The leader lost its lease or office: wait for the next one.
                    let _ = self
                        .wait_for_change(k, &leader, term, Instant::now() + Duration::from_millis(300).min(left))
                        .await;
                }
                Ok(Reply::Error(e)) => return Err(ClientError::from_body(e)),
                Err(e @ (BusError::NoResponders { .. } | BusError::Timeout { .. })) => {
                    // No responder: the leader is gone (an election is under way).
                    last = match e {
                        BusError::NoResponders { .. } => ClientError::NoLeader(self.cfg.deadline),
                        _ => ClientError::Timeout(self.cfg.request_timeout),
                    };
                    let _ = self
                        .wait_for_change(k, &leader, term, Instant::now() + Duration::from_millis(500).min(left))
                        .await;
                }
                Err(e) => return Err(ClientError::Bus(e.to_string())),
            }
        }
    }

    // ---- conveniences ----

    pub async fn create_entity(&self, etype: &str, attributes: Attributes) -> Result<(Entity, u64), ClientError> {
        self.create_entity_near(etype, attributes, None).await
    }

    /// Creates an entity in the shard of `near` (when given; see [`GraphClient::write_near`]).
    pub async fn create_entity_near(
        &self,
        etype: &str,
        attributes: Attributes,
        near: Option<EntityId>,
    ) -> Result<(Entity, u64), ClientError> {
        let out = self.write_near(WriteRequest::CreateEntity { etype: etype.into(), attributes }, near).await?;
        match out.result {
            WriteResult::Entity { entity } => Ok((entity, out.seq)),
            other => Err(ClientError::Internal(format!("unexpected result {other:?}"))),
        }
    }

    pub async fn update_entity(&self, id: EntityId, patch: serde_json::Value) -> Result<(Entity, u64), ClientError> {
        let out = self.write(WriteRequest::UpdateEntity { id, patch }).await?;
        match out.result {
            WriteResult::Entity { entity } => Ok((entity, out.seq)),
            other => Err(ClientError::Internal(format!("unexpected result {other:?}"))),
        }
    }

    pub async fn delete_entity(&self, id: EntityId) -> Result<(bool, u64), ClientError> {
        let out = self.write(WriteRequest::DeleteEntity { id }).await?;
        match out.result {
            WriteResult::Deleted { found } => Ok((found, out.seq)),
            other => Err(ClientError::Internal(format!("unexpected result {other:?}"))),
        }
    }

    pub async fn add_assoc(
        &self,
        from: EntityId,
        atype: &str,
        to: EntityId,
        attributes: Attributes,
    ) -> Result<(Association, u64), ClientError> {
        let out = self.write(WriteRequest::AddAssoc { from, atype: atype.into(), to, attributes }).await?;
        match out.result {
            WriteResult::Assoc { association } => Ok((association, out.seq)),
            other => Err(ClientError::Internal(format!("unexpected result {other:?}"))),
        }
    }

    pub async fn remove_assoc(&self, from: EntityId, atype: &str, to: EntityId) -> Result<(bool, u64), ClientError> {
        let out = self.write(WriteRequest::RemoveAssoc { from, atype: atype.into(), to }).await?;
        match out.result {
            WriteResult::Deleted { found } => Ok((found, out.seq)),
            other => Err(ClientError::Internal(format!("unexpected result {other:?}"))),
        }
    }

    pub async fn get_entities(&self, ids: Vec<EntityId>, c: Consistency) -> Result<Vec<Entity>, ClientError> {
        match self.read(ReadQuery::Entities { ids }, c).await? {
            ReadResult::Entities { entities } => Ok(entities),
            other => Err(ClientError::Internal(format!("unexpected result {other:?}"))),
        }
    }

    pub async fn get_entity(&self, id: EntityId, c: Consistency) -> Result<Entity, ClientError> {
        self.get_entities(vec![id], c)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| ClientError::NotFound(format!("no entity {id}")))
    }

    pub async fn list_assocs(
        &self,
        from: EntityId,
        atype: &str,
        limit: u32,
        offset: u32,
        c: Consistency,
    ) -> Result<(u64, Vec<Association>), ClientError> {
        match self.read(ReadQuery::Assocs { from, atype: atype.into(), limit, offset }, c).await? {
            ReadResult::Assocs { count, items } => Ok((count, items)),
            other => Err(ClientError::Internal(format!("unexpected result {other:?}"))),
        }
    }

    pub async fn query(
        &self,
        entities: Vec<EntityId>,
        template: Template,
        c: Consistency,
    ) -> Result<(Vec<Expanded>, QueryStats), ClientError> {
        match self.read(ReadQuery::Query { entities, template }, c).await? {
            ReadResult::Query { entities, stats } => Ok((entities, stats)),
            other => Err(ClientError::Internal(format!("unexpected result {other:?}"))),
        }
    }

    pub async fn timeline(&self, user: EntityId, limit: u32, c: Consistency) -> Result<Timeline, ClientError> {
        match self.read(ReadQuery::Timeline { user, limit }, c).await? {
            ReadResult::Timeline { timeline } => Ok(timeline),
            other => Err(ClientError::Internal(format!("unexpected result {other:?}"))),
        }
    }

    pub async fn random(&self, etype: &str, count: u32, c: Consistency) -> Result<Vec<EntityId>, ClientError> {
        match self.read(ReadQuery::Random { etype: etype.into(), count }, c).await? {
            ReadResult::Random { ids } => Ok(ids),
            other => Err(ClientError::Internal(format!("unexpected result {other:?}"))),
        }
    }
}

impl Lane {
    /// Starts tracking one shard's leader from its heartbeats on `bus` (which addresses
    /// that shard); returns the tracker's sender too, for leader events.
    async fn start(
        bus: Bus,
        cfg: &ClientConfig,
    ) -> Result<(Lane, watch::Sender<LeaderInfo>, Vec<tokio::task::JoinHandle<()>>), BusError> {
        let (tx, rx) = watch::channel(LeaderInfo { leader: None, term: 0, seen: None, members: Vec::new(), seq: 0 });
        let mut heartbeats = bus.subscribe_signed::<Heartbeat>(bus.subjects().heartbeat()).await?;
        let heartbeat_tx = tx.clone();
        let mut tasks = vec![tokio::spawn(async move {
            while let Some(msg) = heartbeats.next().await {
                if let Ok(hb) = msg.payload {
                    observe(&heartbeat_tx, hb.term, &hb.leader, Some(hb.members), Some(hb.seq));
                }
            }
        })];
        let batcher = cfg.batch_reads.then(|| {
            let (batcher, task) = ReadBatcher::start(bus.clone(), cfg.request_timeout);
            tasks.push(task);
            batcher
        });
        Ok((Lane { bus, leader: rx, batcher }, tx, tasks))
    }
}

fn unexpected(result: ReadResult) -> ClientError {
    ClientError::Internal(format!("unexpected result {result:?}"))
}

/// The values of `found` for `ids`, in the order asked, each once (ids not found left
/// out), as one shard answers.
fn in_order<T>(ids: &[EntityId], mut found: BTreeMap<EntityId, T>) -> Vec<T> {
    // Taken out as placed: an id asked twice finds nothing the second time.
    ids.iter().filter_map(|id| found.remove(id)).collect()
}

/// The shard of every id in `ids`, when they are all of one (and there is one).
fn one_shard(shards: Shards, ids: &[EntityId]) -> Option<ShardId> {
    let k = shards.of(*ids.first()?)?;
    ids.iter().all(|id| shards.of(*id) == Some(k)).then_some(k)
}

/// Records a leader sighting if it is at least as new as what we know — or if what we
/// know has gone stale (a cluster that restarted from term 1, or a claim no real leader
/// backs up, must not pin the client forever). Terms past [`crate::MAX_TERM`] and ids
/// no node can have are ignored.
fn observe(tx: &watch::Sender<LeaderInfo>, term: u64, leader: &NodeId, members: Option<Vec<NodeId>>, seq: Option<u64>) {
    if term > crate::MAX_TERM || !crate::valid_node_id(leader) {
        return;
    }
    tx.send_if_modified(|info| {
        let stale = info.seen.is_none_or(|seen| seen.elapsed() >= LEADER_STALE);
        if term < info.term && !stale {
            return false;
        }
        let changed = info.term != term || info.leader.as_ref() != Some(leader);
        info.term = term;
        info.leader = Some(leader.clone());
        info.seen = Some(Instant::now());
        if let Some(m) = members.filter(|m| !m.is_empty()) {
            info.members = m;
        }
        if let Some(s) = seq {
            info.seq = info.seq.max(s);
        }
        // Refreshing `seen` is not a change worth waking watchers for; a new leader is.
        changed
    });
}
