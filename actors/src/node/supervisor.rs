//! The node supervisor: starts the store, cache and protocol actors as linked children
//! and, when any of them fails, restarts all three together (one for all), with a bounded
//! restart rate; past that bound it stops, which ends the process with an error (its own
//! supervisor — systemd, compose — restarts it).
//!
//! Why all three: they share one protocol state. The cache's contents are only correct
//! with the `applied_seq` the core holds, the store's pool and readiness belong to the
//! term the core leads, and the core's waiting writes hold the store's replies. A child
//! restarted alone would come back into a state its siblings disagree with (a fresh core
//! that believes the cache empty while the old cache still serves; a store that never
//! reloads the outbox for a leader that thinks it did). Restarting the tree is exactly a
//! node restart — a fault the protocol simulation covers — except that the process keeps
//! its NATS connection, and it keeps its term and vote on disk like any restart.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, SupervisionEvent};

use super::cache_actor::CacheActor;
use super::messages::{ProtocolMsg, SupervisorMsg};
use super::protocol_actor::ProtocolActor;
use super::store_actor::StoreActor;
use super::NodeContext;

/// Tree restarts allowed within [`RESTART_WINDOW`] before the supervisor gives up.
pub const MAX_RESTARTS: usize = 5;
pub const RESTART_WINDOW: Duration = Duration::from_secs(30);

/// The supervised children, in start order (stopped in reverse).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Child {
    Store,
    Cache,
    Protocol,
}

impl Child {
    pub const ALL: [Child; 3] = [Child::Store, Child::Cache, Child::Protocol];

    fn name(self, ctx: &NodeContext) -> &str {
        match self {
            Child::Store => &ctx.names.store,
            Child::Cache => &ctx.names.cache,
            Child::Protocol => &ctx.names.protocol,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Child::Store => "store",
            Child::Cache => "cache",
            Child::Protocol => "protocol",
        }
    }

    async fn spawn(self, ctx: &NodeContext, supervisor: ActorCell) -> Result<ActorCell, ActorProcessingErr> {
        let name = Some(self.name(ctx).to_string());
        let cell = match self {
            Child::Store => Actor::spawn_linked(name, StoreActor, ctx.clone(), supervisor).await?.0.get_cell(),
            Child::Cache => Actor::spawn_linked(name, CacheActor, ctx.clone(), supervisor).await?.0.get_cell(),
            Child::Protocol => Actor::spawn_linked(name, ProtocolActor, ctx.clone(), supervisor).await?.0.get_cell(),
        };
        Ok(cell)
    }
}

pub struct NodeSupervisor;

pub struct SupervisorState {
    ctx: NodeContext,
    /// The running children, in start order.
    children: Vec<(Child, ActorCell)>,
    restarts: VecDeque<Instant>,
    stopping: bool,
}

impl SupervisorState {
    async fn stop_children(&mut self) {
        // The cache stops serving first: nobody will apply invalidations to it while the
        // tree is down, and the restarted tree's core starts from nothing applied.
        self.ctx.cache().reset();
        while let Some((_, cell)) = self.children.pop() {
            let _ = cell.stop_and_wait(Some("stopping the tree".into()), Some(Duration::from_secs(3))).await;
        }
        // And again: whatever the protocol actor told it while stopping is dropped.
        self.ctx.cache().reset();
    }

    async fn start_children(&mut self, supervisor: ActorCell) -> Result<(), ActorProcessingErr> {
        // Nothing of the previous tree's view may reach the new one (the protocol actor
        // publishes its own when it starts).
        self.ctx.view.send_replace(super::view::ClusterView::initial());
        for child in Child::ALL {
            // A stopped child's name may linger in the registry for a moment.
            let name = child.name(&self.ctx).to_string();
            for _ in 0..100 {
                if ractor::registry::where_is(name.clone()).is_none() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let cell = child.spawn(&self.ctx, supervisor.clone()).await?;
            self.children.push((child, cell));
        }
        Ok(())
    }
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
        let mut state = SupervisorState { ctx, children: Vec::new(), restarts: VecDeque::new(), stopping: false };
        state.start_children(myself.get_cell()).await?;
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::Shutdown(reply) => {
                if let Some(protocol) = super::lookup::<ProtocolMsg>(&state.ctx.names.protocol) {
                    let handed = protocol.call(ProtocolMsg::Transfer, Some(state.ctx.cfg.election_min)).await;
                    tracing::info!(?handed, "leadership hand-over before shutdown");
                }
                state.stopping = true;
                state.stop_children().await;
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
            SupervisionEvent::ActorTerminated(cell, _, reason) => (cell, format!("stopped: {reason:?}")),
            _ => return Ok(()),
        };
        if state.stopping {
            return Ok(());
        }
        // Only a current child counts (those the supervisor stopped itself are gone).
        let Some(child) = state.children.iter().find(|(_, c)| c.get_id() == cell.get_id()).map(|(k, _)| *k) else {
            return Ok(());
        };
        let now = Instant::now();
        state.restarts.retain(|t| now.duration_since(*t) < RESTART_WINDOW);
        if state.restarts.len() >= MAX_RESTARTS {
            tracing::error!(actor = child.label(), %why, "restart limit reached; stopping the node");
            state.stopping = true;
            state.stop_children().await;
            myself.stop(Some(format!("{} {why}; restart limit reached", child.label())));
            return Ok(());
        }
        state.restarts.push_back(now);
        tracing::warn!(actor = child.label(), %why, restarts = state.restarts.len(), "restarting the node's actors");
        state.ctx.metrics.actor_restarts.with_label_values(&[child.label()]).inc();
        state.children.retain(|(_, c)| c.get_id() != cell.get_id());
        state.stop_children().await;
        if let Err(e) = state.start_children(myself.get_cell()).await {
            tracing::error!(error = %e, "restart failed; stopping the node");
            state.stopping = true;
            state.stop_children().await;
            myself.stop(Some(format!("the actors could not restart: {e}")));
        }
        Ok(())
    }
}
