//! The store actor: the leader's only way to MySQL. It opens a pool when the node takes
//! office, raises the fence to the new term before anything else, loads the outbox for the
//! protocol actor to replay, and then runs writes (each batch one transaction with the
//! fence check and their outbox rows). Fills read through the same pool in tasks of their
//! own. When the node stops leading the pool is closed: followers never hold connections.
//!
//! Writes commit in groups: while one batch's transaction runs (in a task of its own),
//! the writes that arrive wait; when it ends, all of them go into the next one — one
//! fence check, one commit — so the batch grows with the load and a lone write waits for
//! nobody. The results go to the protocol actor in one message per batch, in the order asked
//! (the protocol core orders them by seq).

use std::time::Duration;

use instaface_bus::graph::{ErrorBody, ErrorCode};
use instaface_bus::messages::Role;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tracing::Instrument;

use std::collections::VecDeque;

use instaface_bus::graph::WriteRequest;

use super::messages::{CommittedWrite, ProtocolMsg, StoreMsg, WriteReply};
use super::{cast_to, NodeContext};
use crate::invalidation::LogConfig;
use crate::store::{GraphStore, Op, StoreError};

pub struct StoreActor;

pub struct StoreState {
    ctx: NodeContext,
    role: Role,
    term: u64,
    store: Option<GraphStore>,
    /// The fence is raised and the outbox loaded for `term`: writes may run.
    ready: bool,
    /// Test hook: the next write waits this long first.
    stall: Option<Duration>,
    /// Writes waiting for the next batch.
    queue: VecDeque<(Op, WriteReply)>,
    /// The batch whose transaction is running: each write's op name and reply.
    in_flight: Option<Vec<(&'static str, WriteReply)>>,
    /// The pool of a term that ended while its batch ran, closed when the batch ends.
    retiring: Option<GraphStore>,
    /// The last outbox prune's task (prunes run beside the writes, one at a time).
    pruning: Option<tokio::task::JoinHandle<()>>,
    /// Follows the node's view and tells this actor of role changes.
    watcher: tokio::task::JoinHandle<()>,
}

fn unavailable(msg: impl Into<String>) -> ErrorBody {
    ErrorBody::new(ErrorCode::NotLeader, msg)
}

impl Actor for StoreActor {
    type Msg = StoreMsg;
    type State = StoreState;
    type Arguments = NodeContext;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        ctx: NodeContext,
    ) -> Result<Self::State, ActorProcessingErr> {
        // Role changes reach the store through the node's view, like everything else that
        // only needs the latest role and term.
        let mut view = ctx.view.subscribe();
        let me = myself.clone();
        let watcher = tokio::spawn(async move {
            let mut last = None;
            loop {
                let now = {
                    let v = view.borrow_and_update();
                    (v.role, v.term)
                };
                if last != Some(now) {
                    last = Some(now);
                    let (role, term) = now;
                    if me.cast(StoreMsg::RoleChanged { role, term }).is_err() {
                        return;
                    }
                }
                if view.changed().await.is_err() {
                    return;
                }
            }
        });
        Ok(StoreState {
            ctx,
            role: Role::Follower,
            term: 0,
            store: None,
            ready: false,
            stall: None,
            queue: VecDeque::new(),
            in_flight: None,
            retiring: None,
            pruning: None,
            watcher,
        })
    }

    async fn post_stop(&self, _myself: ActorRef<Self::Msg>, state: &mut Self::State) -> Result<(), ActorProcessingErr> {
        state.watcher.abort();
        state.ctx.store.send_replace(None);
        if let Some(store) = state.store.take() {
            let _ = store.disconnect().await;
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let span = tracing::info_span!("store", node = %state.ctx.cfg.id, term = state.term);
        on_message(myself, msg, state).instrument(span).await
    }
}

async fn on_message(
    myself: ActorRef<StoreMsg>,
    msg: StoreMsg,
    state: &mut StoreState,
) -> Result<(), ActorProcessingErr> {
    match msg {
        StoreMsg::RoleChanged { role, term } => {
            state.role = role;
            state.term = term;
            state.ready = false;
            // Writes that have not started never will under this term: certainly not run.
            for (_, reply) in state.queue.drain(..) {
                let _ = reply.send(Err(unavailable("leadership changed; the write did not run")));
            }
            state.ctx.store.send_replace(None);
            if let Some(store) = state.store.take() {
                if role != Role::Leader {
                    tracing::info!(term, "no longer leading: closing the MySQL pool");
                }
                if state.in_flight.is_some() && state.retiring.is_none() {
                    // The running batch (started on this pool: none starts while one
                    // runs) ends on it — committed, or refused by the fence — so that
                    // its callers hear what happened to it.
                    state.retiring = Some(store);
                } else {
                    let _ = store.disconnect().await;
                }
            }
            if role == Role::Leader {
                spawn_connect(&state.ctx, myself.clone(), term);
            }
        }
        StoreMsg::Opened { term, store } => {
            if state.role != Role::Leader || term != state.term {
                let _ = store.disconnect().await;
                return Ok(());
            }
            match take_office(&state.ctx, &store, term).await {
                Ok(()) => {
                    state.ctx.store.send_replace(Some((term, store.clone())));
                    state.store = Some(store);
                    state.ready = true;
                }
                Err(StoreError::Fenced { stored, .. }) => {
                    tracing::warn!(term, stored, "fence is above our term: stepping down");
                    let _ = store.disconnect().await;
                    cast_to(&state.ctx.names.protocol, ProtocolMsg::Fenced { term: stored });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "taking office in MySQL failed; retrying");
                    let _ = store.disconnect().await;
                    let me = myself.clone();
                    let ctx = state.ctx.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        spawn_connect(&ctx, me, term);
                    });
                }
            }
        }
        StoreMsg::Write { req, reply } => {
            if state.store.is_none() || !state.ready {
                let _ = reply.send(Err(unavailable(if state.role == Role::Leader {
                    "the leader is taking office; retry shortly"
                } else {
                    "not the leader"
                })));
                return Ok(());
            }
            if state.queue.len() >= MAX_QUEUED {
                let _ = reply.send(Err(unavailable("too many writes waiting; the write did not run")));
                return Ok(());
            }
            state.queue.push_back((req, reply));
            start_batch(&myself, state);
        }
        StoreMsg::BatchDone { term, result } => {
            let replies = state.in_flight.take().unwrap_or_default();
            batch_done(state, term, replies, result);
            if let Some(store) = state.retiring.take() {
                let _ = store.disconnect().await;
            }
            start_batch(&myself, state);
        }
        StoreMsg::Fill { keys, reply } => {
            let window = state.ctx.cfg.assoc_window;
            spawn_read(state, reply, move |s| async move { s.fetch_with_seq(&keys, window).await });
        }
        StoreMsg::Random { etype, count, reply } => {
            spawn_read(state, reply, move |s| async move { s.random_ids(&etype, count).await });
        }
        StoreMsg::ListAssocs { from, atype, limit, offset, reply } => {
            spawn_read(state, reply, move |s| async move { s.list_assocs(from, &atype, limit, offset).await });
        }
        StoreMsg::Stall(d) => state.stall = Some(d),
        StoreMsg::PruneOutbox { through } => {
            // Housekeeping, off the writes' path: it runs in a task beside them (it deletes
            // covered rows at or below `through`, and new rows go in above the newest), and
            // while one runs the next is skipped — a later prune takes the rows it would have.
            let running = state.pruning.as_ref().is_some_and(|t| !t.is_finished());
            if let (Some(store), true, false) = (&state.store, state.ready, running) {
                let store = store.clone();
                state.pruning = Some(tokio::spawn(
                    async move {
                        match store.outbox_delete_through(through).await {
                            Ok(n) if n > 0 => tracing::debug!(through, deleted = n, "outbox pruned"),
                            Ok(_) => {}
                            Err(e) => tracing::warn!(error = %e, "outbox prune failed"),
                        }
                    }
                    .in_current_span(),
                ));
            }
        }
    }
    Ok(())
}

/// Runs a read on the leader's pool in a task of its own (reads need no ordering with
/// writes: MySQL gives each a consistent snapshot), answering `reply`.
fn spawn_read<T, F, Fut>(state: &StoreState, reply: RpcReplyPort<Result<T, ErrorBody>>, read: F)
where
    T: Send + 'static,
    F: FnOnce(GraphStore) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T, StoreError>> + Send + 'static,
{
    let Some(store) = state.store.clone().filter(|_| state.ready) else {
        let _ = reply.send(Err(unavailable("not the leader")));
        return;
    };
    tokio::spawn(async move {
        let _ = reply.send(read(store).await.map_err(ErrorBody::from));
    });
}

/// Raises the fence to `term` and hands the latest seq and the newest outbox rows (at
/// most a heartbeat's window) to the protocol actor, which replays them.
async fn take_office(ctx: &NodeContext, store: &GraphStore, term: u64) -> Result<(), StoreError> {
    store.raise_fence(term, &ctx.cfg.id).await?;
    let latest = store.outbox_latest().await?;
    let entries = store.outbox_newest(LogConfig::WINDOW_MAX as u32).await?;
    tracing::info!(term, latest, "fence raised; leader holds the MySQL pool");
    cast_to(&ctx.names.protocol, ProtocolMsg::OutboxLoaded { term, latest, entries });
    Ok(())
}

/// Connects in a task (with backoff while this node still leads `term`), then reports back.
fn spawn_connect(ctx: &NodeContext, store_actor: ActorRef<StoreMsg>, term: u64) {
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let mut delay = Duration::from_millis(100);
        loop {
            // The store actor checks again when the pool arrives; this only stops retrying
            // for a term that is over.
            if ctx.view.borrow().term > term {
                return;
            }
            match GraphStore::connect_shard(&ctx.cfg.mysql_url, ctx.cfg.shard, ctx.cfg.bus.shards).await {
                Ok(store) => {
                    if let Err(e) = store_actor.cast(StoreMsg::Opened { term, store }) {
                        tracing::debug!(error = %e, "store actor gone before the pool opened");
                    }
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?delay, "MySQL unreachable; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(3));
                }
            }
        }
    });
}

/// Writes waiting for a batch at most; more are refused (they did not run).
const MAX_QUEUED: usize = 4096;
/// Writes in one transaction at most.
const MAX_BATCH: usize = 512;

/// Starts the next batch if none is running: every queued write whose caller still
/// waits, in one transaction, in a task of its own.
fn start_batch(myself: &ActorRef<StoreMsg>, state: &mut StoreState) {
    if state.in_flight.is_some() || state.queue.is_empty() {
        return;
    }
    let Some(store) = state.store.clone().filter(|_| state.ready) else {
        return;
    };
    let mut reqs = Vec::new();
    let mut replies = Vec::new();
    while reqs.len() < MAX_BATCH {
        let Some((req, reply)) = state.queue.pop_front() else {
            break;
        };
        if reply.is_closed() {
            // Its caller gave up waiting (and heard "outcome unknown"): it never runs,
            // so writes queued behind a slow MySQL do not pile up forever.
            state.ctx.metrics.writes.with_label_values(&["abandoned"]).inc();
            continue;
        }
        replies.push((req.op_name(), reply));
        reqs.push(req);
    }
    if reqs.is_empty() {
        return;
    }
    state.in_flight = Some(replies);
    // A write that may record intents for other shards wakes the delivery task when its
    // batch ends (an extra read of the undelivered intents costs little).
    let nudge = (state.ctx.cfg.bus.shards.split() && reqs.iter().any(may_record_intents))
        .then(|| state.ctx.intents_written.clone());
    let (term, leader, me) = (state.term, state.ctx.cfg.id.clone(), myself.clone());
    let stall = state.stall.take();
    tokio::spawn(async move {
        if let Some(stall) = stall {
            tracing::warn!(?stall, "test hook: stalling a write");
            tokio::time::sleep(stall).await;
        }
        let result = store.write_batch(term, &leader, &reqs).await;
        if me.cast(StoreMsg::BatchDone { term, result }).is_err() {
            tracing::debug!("store actor gone before its batch ended");
        }
        if let Some(nudge) = nudge {
            nudge.notify_one();
        }
    });
}

/// Whether `op` may record an intent for another shard: an association write (its other
/// row may be another shard's) or an entity delete (a drop for every other shard).
fn may_record_intents(op: &Op) -> bool {
    matches!(
        op,
        Op::Write(WriteRequest::AddAssoc { .. } | WriteRequest::RemoveAssoc { .. } | WriteRequest::DeleteEntity { .. })
    )
}

/// A batch's transaction ended: refusals and failures are answered here, the committed
/// writes go to the protocol actor (which answers them once covered).
fn batch_done(
    state: &mut StoreState,
    term: u64,
    replies: Vec<(&'static str, WriteReply)>,
    result: Result<Vec<Result<crate::store::CommittedWrite, StoreError>>, StoreError>,
) {
    let metrics = &state.ctx.metrics;
    match result {
        Ok(results) => {
            let mut writes = Vec::with_capacity(results.len());
            for ((op, reply), result) in replies.into_iter().zip(results) {
                match result {
                    Ok(committed) => {
                        let label = if committed.keys.is_empty() { "noop" } else { "ok" };
                        metrics.writes.with_label_values(&[label]).inc();
                        writes.push(CommittedWrite {
                            keys: committed.keys.iter().map(|k| k.to_string()).collect(),
                            outcome: committed.outcome,
                            op,
                            reply,
                        });
                    }
                    // Refused by the database on its own terms: it did not happen.
                    Err(e) => {
                        metrics.writes.with_label_values(&["refused"]).inc();
                        let _ = reply.send(Err(e.into()));
                    }
                }
            }
            metrics.write_batch_size.observe(writes.len() as f64);
            if !writes.is_empty() {
                cast_to(&state.ctx.names.protocol, ProtocolMsg::Committed { term, writes });
            }
        }
        Err(StoreError::Fenced { stored, mine }) => {
            metrics.writes.with_label_values(&["fenced"]).inc_by(replies.len() as u64);
            tracing::warn!(stored, mine, "writes refused by the fence: a later leader exists");
            if state.term == term {
                state.ready = false;
            }
            cast_to(&state.ctx.names.protocol, ProtocolMsg::Fenced { term: stored });
            for (_, reply) in replies {
                let _ = reply.send(Err(unavailable(format!("fenced: term {mine} is over (stored {stored})"))));
            }
        }
        Err(e) => {
            // The connection may have failed during COMMIT: the clients must not take
            // this for "did not happen".
            metrics.writes.with_label_values(&["error"]).inc_by(replies.len() as u64);
            for (_, reply) in replies {
                let _ = reply.send(Err(ErrorBody::new(
                    ErrorCode::Unavailable,
                    format!("MySQL failed during the write; its outcome is unknown: {e}"),
                )));
            }
        }
    }
}
