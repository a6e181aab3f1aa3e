//! One bot operation from start to end: draw its kind from the mix, plan it against the
//! [`World`] (substituting a kind the world cannot serve yet, e.g. `like` before any status
//! exists becomes `post`), send it through the [`GraphClient`], and record how it ended in
//! the world, the [`Stats`] and the [`Ledger`](crate::stats::Ledger).
//!
//! Leader changes: when no leader is known the operation waits (growing waits, up to
//! `max_leader_wait`) and then goes on; a write answered `NoLeader` certainly did not run
//! and is sent again. Nothing else is retried: a write with an unknown outcome is counted
//! as such, and its change is recorded as unknown. An operation that has sent nothing yet
//! is dropped (counted `cancelled`) when the run is asked to stop.

use std::future::Future;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use instaface_bus::graph::{Attributes, Consistency, EntityId};
use instaface_bus::graph_client::{ClientError, GraphClient};
use rand::rngs::StdRng;
use rand::Rng;
use serde_json::json;
use tokio::sync::watch;

use crate::mix::{op_rng, Mix, OpKind};
use crate::names::{full_name, status_text};
use crate::stats::{EntityKind, OpResult, Stats};
use crate::world::{AssocKind, Edge, Settled, World};

/// How many entries a timeline read and a friend-list read ask for.
const TIMELINE_LIMIT: u32 = 20;
const FRIENDS_LIMIT: u32 = 50;

/// The longest single wait for a leader between checks of the time budget.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// What the operations share: the client, the world, the counts and the stop signal.
pub struct Ctx {
    pub client: GraphClient,
    pub world: Mutex<World>,
    pub stats: Mutex<Stats>,
    /// Becomes true when the run should stop starting operations.
    pub stop: watch::Receiver<bool>,
    /// How long one operation may wait for a leader in all before it fails.
    pub max_leader_wait: Duration,
}

impl Ctx {
    pub fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn stats(&self) -> MutexGuard<'_, Stats> {
        self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Resolves once the run is asked to stop.
    async fn stopped(&self) {
        let mut stop = self.stop.clone();
        let _ = stop.wait_for(|s| *s).await;
    }
}

/// A planned operation: what it will touch (claimed in the world) and the words it writes.
#[derive(Clone, Debug, PartialEq)]
pub enum Plan {
    CreateUser { name: String },
    Befriend { edge: Edge },
    Post { user: EntityId, text: String },
    Like { edge: Edge },
    EditStatus { status: EntityId, text: String },
    RenameUser { user: EntityId, name: String },
    Unlike { edge: Edge },
    Unfriend { edge: Edge },
    DeleteStatus { status: EntityId },
    ReadTimeline { user: EntityId },
    ReadFriends { user: EntityId },
}

impl Plan {
    pub fn kind(&self) -> OpKind {
        match self {
            Plan::CreateUser { .. } => OpKind::CreateUser,
            Plan::Befriend { .. } => OpKind::Befriend,
            Plan::Post { .. } => OpKind::Post,
            Plan::Like { .. } => OpKind::Like,
            Plan::EditStatus { .. } => OpKind::EditStatus,
            Plan::RenameUser { .. } => OpKind::RenameUser,
            Plan::Unlike { .. } => OpKind::Unlike,
            Plan::Unfriend { .. } => OpKind::Unfriend,
            Plan::DeleteStatus { .. } => OpKind::DeleteStatus,
            Plan::ReadTimeline { .. } => OpKind::ReadTimeline,
            Plan::ReadFriends { .. } => OpKind::ReadFriends,
        }
    }
}

/// What to run instead of `kind` when the world cannot serve it: the operation that makes
/// it possible. `create_user` is always possible, so every chain ends.
pub fn substitute(kind: OpKind) -> OpKind {
    match kind {
        OpKind::Like | OpKind::EditStatus | OpKind::DeleteStatus => OpKind::Post,
        OpKind::Unlike => OpKind::Like,
        OpKind::Unfriend => OpKind::Befriend,
        OpKind::CreateUser
        | OpKind::Befriend
        | OpKind::Post
        | OpKind::RenameUser
        | OpKind::ReadTimeline
        | OpKind::ReadFriends => OpKind::CreateUser,
    }
}

/// Plans `kind`, or the first substitute the world can serve; claims what it touches.
pub fn plan(world: &mut World, kind: OpKind, rng: &mut StdRng) -> Plan {
    let mut kind = kind;
    loop {
        let planned = match kind {
            OpKind::CreateUser => Some(Plan::CreateUser { name: full_name(rng) }),
            OpKind::Befriend => world.plan_befriend(rng).map(|edge| Plan::Befriend { edge }),
            OpKind::Post => world.pick_user(rng).map(|user| Plan::Post { user, text: status_text(rng) }),
            OpKind::Like => world.plan_like(rng).map(|edge| Plan::Like { edge }),
            OpKind::EditStatus => {
                world.plan_edit_status(rng).map(|status| Plan::EditStatus { status, text: status_text(rng) })
            }
            OpKind::RenameUser => world.pick_user(rng).map(|user| Plan::RenameUser { user, name: full_name(rng) }),
            OpKind::Unlike => world.plan_remove(AssocKind::Likes, rng).map(|edge| Plan::Unlike { edge }),
            OpKind::Unfriend => world.plan_remove(AssocKind::Friend, rng).map(|edge| Plan::Unfriend { edge }),
            OpKind::DeleteStatus => world.plan_delete_status(rng).map(|status| Plan::DeleteStatus { status }),
            OpKind::ReadTimeline => world.pick_user(rng).map(|user| Plan::ReadTimeline { user }),
            OpKind::ReadFriends => world.pick_user(rng).map(|user| Plan::ReadFriends { user }),
        };
        match planned {
            Some(p) => return p,
            None => kind = substitute(kind),
        }
    }
}

/// How one request (or a step of a multi-step operation) ended.
#[derive(Debug)]
enum Step<T> {
    Ok(T),
    Failed(&'static str),
    Unknown(&'static str),
    /// The run stopped before this operation sent anything.
    Cancelled,
}

impl<T> Step<T> {
    fn settled(&self) -> Settled {
        match self {
            Step::Ok(_) => Settled::Done,
            Step::Failed(_) | Step::Cancelled => Settled::Failed,
            Step::Unknown(_) => Settled::Unknown,
        }
    }

    /// The operation's result, `None` when cancelled.
    fn result(&self) -> Option<OpResult> {
        match self {
            Step::Ok(_) => Some(OpResult::Succeeded),
            Step::Failed(e) => Some(OpResult::Failed(e)),
            Step::Unknown(e) => Some(OpResult::OutcomeUnknown(e)),
            Step::Cancelled => None,
        }
    }
}

/// The error's name in summaries.
pub fn error_name(e: &ClientError) -> &'static str {
    match e {
        ClientError::NoLeader(_) => "no_leader",
        ClientError::Timeout(_) => "timeout",
        ClientError::NotFound(_) => "not_found",
        ClientError::Invalid(_) => "invalid",
        ClientError::Conflict(_) => "conflict",
        ClientError::Unavailable(_) => "unavailable",
        ClientError::OutcomeUnknown(_) => "outcome_unknown",
        ClientError::Internal(_) => "internal",
        ClientError::Bus(_) => "bus",
    }
}

/// Whether a write that failed with `e` certainly did not change anything. An `internal`
/// error may come from a MySQL failure at commit, so it counts as unknown, as does anything
/// that is not a definite refusal.
fn write_certainly_failed(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::NotFound(_) | ClientError::Invalid(_) | ClientError::Conflict(_) | ClientError::NoLeader(_)
    )
}

/// Runs operation `index` of a run seeded with `seed`: draws, plans, executes, records.
pub async fn run_op(ctx: &Ctx, mix: &Mix, seed: u64, index: u64) {
    let mut rng = op_rng(seed, index);
    let chosen = mix.draw(&mut rng);
    let plan = plan(&mut ctx.world(), chosen, &mut rng);
    let kind = plan.kind();
    {
        let mut stats = ctx.stats();
        stats.chosen(chosen);
        if kind != chosen {
            stats.substituted += 1;
        }
    }
    let started = Instant::now();
    match execute(ctx, plan, &mut rng).await {
        Some(result) => ctx.stats().finished(kind, result, started.elapsed()),
        None => ctx.stats().cancelled += 1,
    }
}

/// Sends the planned operation and records its effects; `None` if it was cancelled.
async fn execute(ctx: &Ctx, plan: Plan, rng: &mut StdRng) -> Option<OpResult> {
    let kind = plan.kind();
    let c = &ctx.client;
    match plan {
        Plan::CreateUser { name } => {
            let step = write(ctx, kind, true, || c.create_entity("user", attrs(json!({ "name": name })))).await;
            if let Step::Ok((entity, _)) = &step {
                ctx.world().add_user(entity.id);
            }
            ctx.stats().ledger.created(EntityKind::User, step.settled());
            step.result()
        }
        Plan::Befriend { edge } | Plan::Like { edge } => {
            // A friendship is asked for from either side.
            let (from, to) = if edge.kind == AssocKind::Friend && rng.random_bool(0.5) {
                (edge.to, edge.from)
            } else {
                (edge.from, edge.to)
            };
            let step = write(ctx, kind, true, || c.add_assoc(from, edge.kind.atype(), to, Attributes::new())).await;
            ctx.world().finish_add(edge, step.settled());
            ctx.stats().ledger.added(edge.kind, step.settled());
            step.result()
        }
        Plan::Post { user, text } => {
            let step =
                write(ctx, kind, true, || c.create_entity_near("status", attrs(json!({ "text": text })), Some(user)))
                    .await;
            ctx.stats().ledger.created(EntityKind::Status, step.settled());
            let first = step.result();
            let Step::Ok((status, _)) = step else { return first };
            let edge = Edge::posted(user, status.id);
            let step = write(ctx, kind, false, || c.add_assoc(user, "posted", status.id, Attributes::new())).await;
            {
                let mut world = ctx.world();
                world.add_status(status.id, crate::world::Origin::Created);
                world.finish_add(edge, step.settled());
            }
            ctx.stats().ledger.added(AssocKind::Posted, step.settled());
            step.result()
        }
        Plan::EditStatus { status, text } => {
            let step =
                write(ctx, kind, true, || c.update_entity(status, json!({ "text": text, "edited": true }))).await;
            ctx.world().finish_edit(status);
            step.result()
        }
        Plan::RenameUser { user, name } => {
            write(ctx, kind, true, || c.update_entity(user, json!({ "name": name }))).await.result()
        }
        Plan::Unlike { edge } | Plan::Unfriend { edge } => {
            let (from, to) = if edge.kind == AssocKind::Friend && rng.random_bool(0.5) {
                (edge.to, edge.from)
            } else {
                (edge.from, edge.to)
            };
            let step = write(ctx, kind, true, || c.remove_assoc(from, edge.kind.atype(), to)).await;
            let settled = removal_settled(&step);
            ctx.world().finish_remove(edge, settled);
            ctx.stats().ledger.removed(edge.kind, settled, 1);
            step.result()
        }
        Plan::DeleteStatus { status } => {
            let step = write(ctx, kind, true, || c.delete_entity(status)).await;
            let settled = removal_settled(&step);
            let edges = ctx.world().finish_delete(status, settled);
            let mut stats = ctx.stats();
            stats.ledger.deleted(EntityKind::Status, settled);
            stats.ledger.removed_with(settled, edges);
            step.result()
        }
        Plan::ReadTimeline { user } => {
            read(ctx, kind, || c.timeline(user, TIMELINE_LIMIT, Consistency::Eventual)).await.result()
        }
        Plan::ReadFriends { user } => {
            read(ctx, kind, || c.list_assocs(user, "friend", FRIENDS_LIMIT, 0, Consistency::Eventual)).await.result()
        }
    }
}

/// A removal's or deletion's outcome: `found: false` means nothing was there.
fn removal_settled(step: &Step<(bool, u64)>) -> Settled {
    match step {
        Step::Ok((true, _)) => Settled::Done,
        Step::Ok((false, _)) => Settled::Missing,
        other => other.settled(),
    }
}

fn attrs(v: serde_json::Value) -> Attributes {
    match v {
        serde_json::Value::Object(map) => map,
        _ => Attributes::new(),
    }
}

/// Sends a write when a leader is known, again after `NoLeader` (it did not run), never
/// after anything else. Only the `first` write of an operation may be cancelled by a stop:
/// a later step completes (or fails) so the earlier one's effects are recorded whole.
async fn write<T, F, Fut>(ctx: &Ctx, kind: OpKind, first: bool, send: F) -> Step<T>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, ClientError>>,
{
    let started = Instant::now();
    loop {
        if let Err(step) = await_leader(ctx, kind, first, started).await {
            return step;
        }
        match send().await {
            Ok(v) => return Step::Ok(v),
            Err(ClientError::NoLeader(_)) if started.elapsed() < ctx.max_leader_wait => {
                tracing::debug!(%kind, "no leader for a write; waiting");
            }
            Err(e) if write_certainly_failed(&e) => return Step::Failed(error_name(&e)),
            Err(e) => {
                tracing::debug!(%kind, error = %e, "write with an unknown outcome");
                return Step::Unknown(error_name(&e));
            }
        }
    }
}

/// Sends a read; after `NoLeader` (no node could serve) waits for a leader and reads again.
/// A read can always be abandoned, so a stop cancels it.
async fn read<T, F, Fut>(ctx: &Ctx, kind: OpKind, send: F) -> Step<T>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, ClientError>>,
{
    let started = Instant::now();
    loop {
        let answer = tokio::select! {
            answer = send() => answer,
            _ = ctx.stopped() => return Step::Cancelled,
        };
        match answer {
            Ok(v) => return Step::Ok(v),
            Err(ClientError::NoLeader(_)) if started.elapsed() < ctx.max_leader_wait => {
                if let Err(step) = await_leader(ctx, kind, true, started).await {
                    return step;
                }
            }
            Err(e) => return Step::Failed(error_name(&e)),
        }
    }
}

/// Returns at once when a leader is known; otherwise counts a leader wait and waits, in
/// growing slices, until one is known, the budget since `started` is spent, or (when
/// `cancellable`) the run stops.
async fn await_leader<T>(ctx: &Ctx, kind: OpKind, cancellable: bool, started: Instant) -> Result<(), Step<T>> {
    if ctx.client.leader_info().current().is_some() {
        return Ok(());
    }
    ctx.stats().no_leader_wait(kind);
    let mut slice = Duration::from_millis(100);
    loop {
        let left = ctx.max_leader_wait.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Err(Step::Failed("no_leader"));
        }
        let wait = ctx.client.wait_for_leader(slice.min(left));
        let found = if cancellable {
            tokio::select! {
                r = wait => r.is_ok(),
                _ = ctx.stopped() => return Err(Step::Cancelled),
            }
        } else {
            wait.await.is_ok()
        };
        if found {
            return Ok(());
        }
        slice = (slice * 2).min(MAX_BACKOFF);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::Origin;

    #[test]
    fn every_kind_plans_on_an_empty_world_by_substitution_ending_in_create_user() {
        for kind in OpKind::ALL {
            let mut world = World::new();
            let p = plan(&mut world, kind, &mut op_rng(1, 0));
            assert_eq!(p.kind(), OpKind::CreateUser, "{kind}");
        }
    }

    #[test]
    fn substitutes_lead_to_what_makes_the_kind_possible() {
        let mut world = World::new();
        world.add_user(1);
        let mut rng = op_rng(2, 0);
        assert_eq!(plan(&mut world, OpKind::Like, &mut rng).kind(), OpKind::Post);
        assert_eq!(plan(&mut world, OpKind::Befriend, &mut rng).kind(), OpKind::CreateUser);
        assert_eq!(plan(&mut world, OpKind::ReadTimeline, &mut rng), Plan::ReadTimeline { user: 1 });
        world.add_user(2);
        world.add_status(10, Origin::Created);
        assert_eq!(plan(&mut world, OpKind::DeleteStatus, &mut rng), Plan::DeleteStatus { status: 10 });
        // The status is claimed for deletion: nothing else may use it meanwhile.
        assert_eq!(plan(&mut world, OpKind::EditStatus, &mut rng).kind(), OpKind::Post);
        world.finish_delete(10, Settled::Failed);
        assert_eq!(plan(&mut world, OpKind::Unfriend, &mut rng).kind(), OpKind::Befriend);
        assert_eq!(plan(&mut world, OpKind::Unlike, &mut rng).kind(), OpKind::Like);
    }

    #[test]
    fn plans_are_a_function_of_the_seed_and_the_world() {
        let plans = |seed| {
            let mut world = World::new();
            (1..=20).for_each(|u| world.add_user(u));
            (100..110).for_each(|s| world.add_status(s, Origin::Created));
            let mix = Mix::default();
            (0..50)
                .map(|i| {
                    let mut rng = op_rng(seed, i);
                    let kind = mix.draw(&mut rng);
                    plan(&mut world, kind, &mut rng)
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(plans(11), plans(11));
        assert_ne!(plans(11), plans(12));
    }

    #[test]
    fn only_definite_refusals_count_as_failed_writes() {
        assert!(write_certainly_failed(&ClientError::Conflict("x".into())));
        assert!(write_certainly_failed(&ClientError::NotFound("x".into())));
        assert!(!write_certainly_failed(&ClientError::OutcomeUnknown("x".into())));
        assert!(!write_certainly_failed(&ClientError::Internal("x".into())));
        assert!(!write_certainly_failed(&ClientError::Bus("x".into())));
        assert!(!write_certainly_failed(&ClientError::Timeout(Duration::from_secs(1))));
    }
}
