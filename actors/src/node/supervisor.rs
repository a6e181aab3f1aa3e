//! The node supervisor: starts the election, heartbeat, cache and store actors as linked
//! children, restarts one that fails (a panic or an error) with a bounded restart rate, and
//! escalates — stops itself, which ends the process with an error — past that bound.
//!
//! ractor's default is to stop a supervisor when any child exits; this one restarts the
//! child instead. Siblings find each other by registry name (see [`super::cast_to`]), so a
//! restarted child is found again without anyone holding its old `ActorRef`.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};

use super::cache_actor::CacheActor;
use super::election_actor::{ElectionActor, ElectionMsg};
use super::heartbeat_actor::HeartbeatActor;
use super::store_actor::StoreActor;
use super::NodeContext;

/// Restarts allowed per child within [`RESTART_WINDOW`] before the supervisor gives up.
pub const MAX_RESTARTS: usize = 5;
pub const RESTART_WINDOW: Duration = Duration::from_secs(30);

/// The supervised children, in start order (stopped in reverse).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Child {
    Store,
    Cache,
    Heartbeat,
    Election,
}

impl Child {
    pub const ALL: [Child; 4] = [
        Child::Store,
        Child::Cache,
        Child::Heartbeat,
        Child::Election,
    ];

    fn name(self, ctx: &NodeContext) -> &str {
        match self {
            Child::Store => &ctx.names.store,
            Child::Cache => &ctx.names.cache,
            Child::Heartbeat => &ctx.names.heartbeat,
            Child::Election => &ctx.names.election,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Child::Store => "store",
            Child::Cache => "cache",
            Child::Heartbeat => "heartbeat",
            Child::Election => "election",
        }
    }

    async fn spawn(
        self,
        ctx: &NodeContext,
        supervisor: ActorCell,
    ) -> Result<ActorCell, ActorProcessingErr> {
        let name = Some(self.name(ctx).to_string());
        let cell = match self {
            Child::Store => Actor::spawn_linked(name, StoreActor, ctx.clone(), supervisor)
                .await?
                .0
                .get_cell(),
            Child::Cache => Actor::spawn_linked(name, CacheActor, ctx.clone(), supervisor)
                .await?
                .0
                .get_cell(),
            Child::Heartbeat => Actor::spawn_linked(name, HeartbeatActor, ctx.clone(), supervisor)
                .await?
                .0
                .get_cell(),
            Child::Election => Actor::spawn_linked(name, ElectionActor, ctx.clone(), supervisor)
                .await?
                .0
                .get_cell(),
        };
        Ok(cell)
    }
}

pub enum SupervisorMsg {
    /// Graceful shutdown: hand leadership over, then stop the children in order. Replies
    /// once done.
    Shutdown(RpcReplyPort<()>),
}

pub struct NodeSupervisor;

pub struct SupervisorState {
    ctx: NodeContext,
    children: HashMap<Child, ActorCell>,
    restarts: HashMap<Child, VecDeque<Instant>>,
    stopping: bool,
}

impl Actor for NodeSupervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = NodeContext;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        ctx: NodeContext,
    ) -> Result<Self::State, ActorProcessingErr> {
        let mut children = HashMap::new();
        for child in Child::ALL {
            children.insert(child, child.spawn(&ctx, myself.get_cell()).await?);
        }
        Ok(SupervisorState {
            ctx,
            children,
            restarts: HashMap::new(),
            stopping: false,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::Shutdown(reply) => {
                if let Some(election) = super::lookup::<ElectionMsg>(&state.ctx.names.election) {
                    let handed = election
                        .call(ElectionMsg::Transfer, Some(state.ctx.cfg.election_min))
                        .await;
                    tracing::info!(?handed, "leadership hand-over before shutdown");
                }
                state.stopping = true;
                for child in Child::ALL.iter().rev() {
                    if let Some(cell) = state.children.remove(child) {
                        let _ = cell
                            .stop_and_wait(Some("shutdown".into()), Some(Duration::from_secs(3)))
                            .await;
                    }
                }
                let _ = reply.send(());
                myself.stop(Some("shutdown".into()));
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, why) = match event {
            SupervisionEvent::ActorFailed(cell, err) => (cell, format!("failed: {err}")),
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                (cell, format!("stopped: {reason:?}"))
            }
            _ => return Ok(()),
        };
        if state.stopping {
            return Ok(());
        }
        let Some(child) = state
            .children
            .iter()
            .find(|(_, c)| c.get_id() == cell.get_id())
            .map(|(k, _)| *k)
        else {
            return Ok(());
        };
        let now = Instant::now();
        let history = state.restarts.entry(child).or_default();
        history.retain(|t| now.duration_since(*t) < RESTART_WINDOW);
        if history.len() >= MAX_RESTARTS {
            tracing::error!(actor = child.label(), %why, "restart limit reached; stopping the node");
            state.stopping = true;
            myself.stop(Some(format!(
                "{} {why}; restart limit reached",
                child.label()
            )));
            return Ok(());
        }
        history.push_back(now);
        tracing::warn!(actor = child.label(), %why, restarts = history.len(), "restarting actor");
        state
            .ctx
            .metrics
            .actor_restarts
            .with_label_values(&[child.label()])
            .inc();
        // The dead child's name may linger in the registry for a moment; wait until it is free.
        let name = child.name(&state.ctx).to_string();
        for _ in 0..100 {
            if ractor::registry::where_is(name.clone()).is_none() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        match child.spawn(&state.ctx, myself.get_cell()).await {
            Ok(cell) => {
                state.children.insert(child, cell);
            }
            Err(e) => {
                tracing::error!(actor = child.label(), error = %e, "restart failed; stopping the node");
                state.stopping = true;
                myself.stop(Some(format!("{} could not restart: {e}", child.label())));
            }
        }
        Ok(())
    }
}
