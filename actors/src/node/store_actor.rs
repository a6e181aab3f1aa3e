//! The store actor: the leader's only way to MySQL. It opens a pool when the node takes
//! office, raises the fence to the new term before anything else, loads the outbox for the
//! protocol actor to replay, and then runs writes one at a time (each one transaction with
//! the fence check and its outbox row). Fills read through the same pool in tasks of their
//! own. When the node stops leading the pool is closed: followers never hold connections.

use std::time::Duration;

use instaface_bus::graph::{ErrorBody, ErrorCode};
use instaface_bus::messages::Role;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tracing::Instrument;

use super::messages::{ProtocolMsg, StoreMsg};
use super::{cast_to, NodeContext};
use crate::invalidation::LogConfig;
use crate::store::{GraphStore, StoreError};

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
            watcher,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.watcher.abort();
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
            let was_leading = state.role == Role::Leader;
            state.role = role;
            state.term = term;
            state.ready = false;
            if role == Role::Leader {
                if let Some(store) = state.store.take() {
                    let _ = store.disconnect().await;
                }
                spawn_connect(&state.ctx, myself.clone(), term);
            } else if was_leading || state.store.is_some() {
                if let Some(store) = state.store.take() {
                    tracing::info!(term, "no longer leading: closing the MySQL pool");
                    let _ = store.disconnect().await;
                }
            }
        }
        StoreMsg::Opened { term, store } => {
            if state.role != Role::Leader || term != state.term {
                let _ = store.disconnect().await;
                return Ok(());
            }
            match take_office(&state.ctx, &store, term).await {
                Ok(()) => {
                    state.store = Some(store);
                    state.ready = true;
                }
                Err(StoreError::Fenced { stored, .. }) => {
                    tracing::warn!(term, stored, "fence is above our term: stepping down");
                    let _ = store.disconnect().await;
                    cast_to(
                        &state.ctx.names.protocol,
                        ProtocolMsg::Fenced { term: stored },
                    );
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
            let (Some(store), true) = (&state.store, state.ready) else {
                let _ = reply.send(Err(unavailable(if state.role == Role::Leader {
                    "the leader is taking office; retry shortly"
                } else {
                    "not the leader"
                })));
                return Ok(());
            };
            if reply.is_closed() {
                // Its caller gave up waiting (and heard "outcome unknown"): it never runs,
                // so writes queued behind a slow MySQL do not pile up forever.
                state
                    .ctx
                    .metrics
                    .writes
                    .with_label_values(&["abandoned"])
                    .inc();
                return Ok(());
            }
            let op = req.op_name();
            if let Some(stall) = state.stall.take() {
                tracing::warn!(?stall, "test hook: stalling a write");
                tokio::time::sleep(stall).await;
            }
            match store.write(state.term, &state.ctx.cfg.id, &req).await {
                Ok(committed) if committed.keys.is_empty() => {
                    state.ctx.metrics.writes.with_label_values(&["noop"]).inc();
                    // It observed the state up to its seq, which may not be covered yet.
                    cast_to(
                        &state.ctx.names.protocol,
                        ProtocolMsg::Unchanged {
                            term: state.term,
                            outcome: committed.outcome,
                            reply,
                        },
                    );
                }
                Ok(committed) => {
                    state.ctx.metrics.writes.with_label_values(&["ok"]).inc();
                    let keys = committed.keys.iter().map(|k| k.to_string()).collect();
                    cast_to(
                        &state.ctx.names.protocol,
                        ProtocolMsg::Committed {
                            term: state.term,
                            outcome: committed.outcome,
                            keys,
                            op,
                            reply,
                        },
                    );
                }
                Err(StoreError::Fenced { stored, mine }) => {
                    state
                        .ctx
                        .metrics
                        .writes
                        .with_label_values(&["fenced"])
                        .inc();
                    tracing::warn!(
                        stored,
                        mine,
                        "write refused by the fence: a later leader exists"
                    );
                    state.ready = false;
                    cast_to(
                        &state.ctx.names.protocol,
                        ProtocolMsg::Fenced { term: stored },
                    );
                    let _ = reply.send(Err(unavailable(format!(
                        "fenced: term {mine} is over (stored {stored})"
                    ))));
                }
                Err(StoreError::Mysql(e)) => {
                    // The connection may have failed during COMMIT: the client must not
                    // take this for "did not happen".
                    state.ctx.metrics.writes.with_label_values(&["error"]).inc();
                    let _ = reply.send(Err(ErrorBody::new(
                        ErrorCode::Unavailable,
                        format!("MySQL failed during the write; its outcome is unknown: {e}"),
                    )));
                }
                Err(e) => {
                    state.ctx.metrics.writes.with_label_values(&["error"]).inc();
                    let _ = reply.send(Err(e.into()));
                }
            }
        }
        StoreMsg::Fill { keys, reply } => {
            let window = state.ctx.cfg.assoc_window;
            spawn_read(state, reply, move |s| async move {
                s.fetch_with_seq(&keys, window).await
            });
        }
        StoreMsg::Random {
            etype,
            count,
            reply,
        } => {
            spawn_read(state, reply, move |s| async move {
                s.random_ids(&etype, count).await
            });
        }
        StoreMsg::ListAssocs {
            from,
            atype,
            limit,
            offset,
            reply,
        } => {
            spawn_read(state, reply, move |s| async move {
                s.list_assocs(from, &atype, limit, offset).await
            });
        }
        StoreMsg::Stall(d) => state.stall = Some(d),
        StoreMsg::PruneOutbox { through } => {
            if let (Some(store), true) = (&state.store, state.ready) {
                match store.outbox_delete_through(through).await {
                    Ok(n) if n > 0 => tracing::debug!(through, deleted = n, "outbox pruned"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "outbox prune failed"),
                }
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
    cast_to(
        &ctx.names.protocol,
        ProtocolMsg::OutboxLoaded {
            term,
            latest,
            entries,
        },
    );
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
            match GraphStore::connect(&ctx.cfg.mysql_url).await {
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
