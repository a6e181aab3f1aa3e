//! The shared client the gateway and the bot use (and any Rust program may): tracks the
//! leader and term from heartbeats, sends writes to the leader, reads through the
//! `readers` queue group with the requested consistency, and returns errors as values.
//!
//! Retries are bounded and never duplicate a write: a write is retried only when the
//! answer proves it did not run (no responder, or a node saying it is not the leader); a
//! write that timed out, or committed without its invalidation being confirmed, is
//! [`ClientError::OutcomeUnknown`].

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::watch;

use crate::graph::*;
use crate::messages::{Event, EventKind, Heartbeat};
use crate::read_batcher::{Batched, ReadBatcher};
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
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig { request_timeout: Duration::from_secs(5), deadline: Duration::from_secs(10), batch_reads: true }
    }
}

/// The graph client. Cheap to clone; the leader tracker stops with the last clone.
#[derive(Clone)]
pub struct GraphClient {
    bus: Bus,
    leader: watch::Receiver<LeaderInfo>,
    cfg: ClientConfig,
    batcher: Option<ReadBatcher>,
    _tracker: Arc<TrackerGuard>,
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
    /// Starts tracking the leader on `bus` (heartbeats and leader events).
    pub async fn new(bus: Bus, cfg: ClientConfig) -> Result<GraphClient, BusError> {
        let (tx, rx) = watch::channel(LeaderInfo { leader: None, term: 0, seen: None, members: Vec::new(), seq: 0 });
        let tx = Arc::new(tx);
        // With the cluster key, only authenticated heartbeats say who leads (events are
        // not signed); without it, heartbeats and leader events both do.
        let keyed = bus.authenticates();
        let mut heartbeats = bus.subscribe_signed::<Heartbeat>(bus.subjects().heartbeat()).await?;
        let mut events = bus.subscribe::<Event>(bus.subjects().events()).await?;
        let t1 = {
            let tx = tx.clone();
            tokio::spawn(async move {
                while let Some(msg) = heartbeats.next().await {
                    if let Ok(hb) = msg.payload {
                        observe(&tx, hb.term, &hb.leader, Some(hb.members), Some(hb.seq));
                    }
                }
            })
        };
        let t2 = {
            let tx = tx.clone();
            tokio::spawn(async move {
                while let Some(msg) = events.next().await {
                    if let Ok(Event { node, term, kind: EventKind::Leader { members }, .. }) = msg.payload {
                        if !keyed {
                            observe(&tx, term, &node, Some(members), None);
                        }
                    }
                }
            })
        };
        // Bounded: while NATS is down the subscriptions are made on reconnect anyway.
        let _ = tokio::time::timeout(Duration::from_secs(1), bus.flush()).await;
        let mut tasks = vec![t1, t2];
        let batcher = cfg.batch_reads.then(|| {
            let (batcher, task) = ReadBatcher::start(bus.clone(), cfg.request_timeout);
            tasks.push(task);
            batcher
        });
        Ok(GraphClient { bus, leader: rx, cfg, batcher, _tracker: Arc::new(TrackerGuard(Mutex::new(tasks))) })
    }

    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// The leader as last heard (possibly stale: see [`LeaderInfo::current`]).
    pub fn leader_info(&self) -> LeaderInfo {
        self.leader.borrow().clone()
    }

    /// A receiver that changes whenever the tracked leader or term changes.
    pub fn watch_leader(&self) -> watch::Receiver<LeaderInfo> {
        self.leader.clone()
    }

    /// Waits (up to `timeout`) until a leader is known.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<(NodeId, u64), ClientError> {
        let deadline = Instant::now() + timeout;
        let mut rx = self.leader.clone();
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

    /// Waits for a leader other than (`old`, `term`), up to the deadline.
    async fn wait_for_change(&self, old: &NodeId, term: u64, deadline: Instant) -> Result<(NodeId, u64), ClientError> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (l, t) = self.wait_for_leader(left).await?;
            if &l != old || t != term {
                return Ok((l, t));
            }
            if Instant::now() >= deadline {
                return Err(ClientError::NoLeader(self.cfg.deadline));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs a write at the leader. Retries (bounded) only when it certainly did not run.
    pub async fn write(&self, req: WriteRequest) -> Result<WriteOutcome, ClientError> {
        let deadline = Instant::now() + self.cfg.deadline;
        let (mut leader, mut term) = self.wait_for_leader(self.cfg.deadline).await?;
        loop {
            let subject = self.bus.subjects().write(&leader);
            match self.bus.request::<_, Reply<WriteOutcome>>(subject, &req, self.cfg.request_timeout).await {
                Ok(Reply::Ok(outcome)) => return Ok(outcome),
                Ok(Reply::Error(e)) if e.code == ErrorCode::NotLeader => {
                    // Refused before running: safe to retry at the next leader.
                    if Instant::now() >= deadline {
                        return Err(ClientError::NoLeader(self.cfg.deadline));
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    (leader, term) =
                        match self.wait_for_leader(deadline.saturating_duration_since(Instant::now())).await {
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
                    (leader, term) = self.wait_for_change(&leader, term, deadline).await?;
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

    /// Runs a read with the requested consistency: followers first (the `readers` queue
    /// group) unless `strong`, the leader when no follower can serve.
    pub async fn read(&self, query: ReadQuery, consistency: Consistency) -> Result<ReadResult, ClientError> {
        let deadline = Instant::now() + self.cfg.deadline;
        let req = ReadRequest { consistency, query };
        if consistency != Consistency::Strong {
            let batched = match &self.batcher {
                Some(batcher) => batcher.read(req.clone()).await,
                None => Batched::Alone,
            };
            let answer = match batched {
                Batched::Answer(answer) => answer,
                Batched::Alone => {
                    let subject = self.bus.subjects().graph_read();
                    self.bus.request::<_, Reply<ReadResult>>(subject, &req, self.cfg.request_timeout).await
                }
            };
            match answer {
                Ok(Reply::Ok(r)) => return Ok(r),
                Ok(Reply::Error(e)) if !matches!(e.code, ErrorCode::Unavailable | ErrorCode::NotLeader) => {
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
            let (leader, term) = self.wait_for_leader(left).await?;
            let subject = self.bus.subjects().read_at(&leader);
            let leader_req = ReadRequest { consistency: Consistency::Strong, query: req.query.clone() };
            match self
                .bus
                .request::<_, Reply<ReadResult>>(subject, &leader_req, self.cfg.request_timeout.min(left))
                .await
            {
                Ok(Reply::Ok(r)) => return Ok(r),
                Ok(Reply::Error(e)) if matches!(e.code, ErrorCode::Unavailable | ErrorCode::NotLeader) => {
                    last = ClientError::Unavailable(e.message);
                    // The leader lost its lease or office: wait for the next one.
                    let _ = self
                        .wait_for_change(&leader, term, Instant::now() + Duration::from_millis(300).min(left))
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
                        .wait_for_change(&leader, term, Instant::now() + Duration::from_millis(500).min(left))
                        .await;
                }
                Err(e) => return Err(ClientError::Bus(e.to_string())),
            }
        }
    }

    // ---- conveniences ----

    pub async fn create_entity(&self, etype: &str, attributes: Attributes) -> Result<(Entity, u64), ClientError> {
        let out = self.write(WriteRequest::CreateEntity { etype: etype.into(), attributes }).await?;
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
