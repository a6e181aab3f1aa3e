//! Delivering cross-shard intents (several shards only): while this node leads its
//! group, a task runs the group's [`Courier`] — the pure delivery rules — and performs
//! what it asks: read the undelivered intents from the database (at the start, every
//! [`Courier::RELOAD_EVERY`], and whenever the store says a batch may have written some),
//! send each to the other shard's current leader (as that shard's member on this node
//! knows it), and mark them delivered once answered. A new leadership starts a new courier,
//! which reads them again: nothing is lost with a leader.
//!
//! Delivered intents, and the records of intents applied here, are deleted after an hour.
//!
//! An intent the other shard refuses because its entity is gone (a row *from* an entity
//! deleted meanwhile, or a one-way row to one that never existed) is undone, as the
//! courier asks ([`Output::Undo`]): this shard's row that depends on it is removed — a
//! plain write through the store — and only then is it marked, so a crash in between
//! delivers it (and removes) again.

use std::time::Duration;

use instaface_bus::graph::{inverse_of, ErrorCode, Reply, WriteOutcome, WriteRequest};
use instaface_bus::intents::{IntentDelivery, InverseOp};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::NodeContext;
use crate::intents::{Answer, Courier, Delivered, Input, Intent, Output};
use crate::store::{GraphStore, StoreError, MAX_UNDELIVERED};

/// What the courier carries for each intent: the op and when it was committed (ms).
type Payload = (InverseOp, u64);

/// How long one delivery may wait for the other shard's answer: less than the courier
/// waits before sending again, so every send has ended when its resend goes.
const SEND_TIMEOUT: Duration = Duration::from_millis(2500);
const _: () = assert!(SEND_TIMEOUT.as_millis() < Courier::<Payload>::RETRY_AFTER.as_millis());
const _: () = assert!(DB_TIMEOUT.as_millis() < Courier::<Payload>::RELOAD_ANSWER_WITHIN.as_millis());
/// How long a read or a mark of intents may take before it counts as failed.
const DB_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the courier's clock ticks (retries and reloads fall due on ticks).
const TICK: Duration = Duration::from_millis(100);
/// How long delivered intents and the records of applied ones are kept.
const RETAIN: Duration = Duration::from_secs(3600);
/// How often the leader prunes what is older.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Runs the delivery of this group's intents, for as long as the node runs.
pub fn spawn(ctx: NodeContext) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut view = ctx.view.subscribe();
        loop {
            let term = {
                let v = view.borrow_and_update();
                v.is_leader().then_some(v.term)
            };
            if let Some(term) = term {
                if let Some(store) = leaders_pool(&ctx, term).await {
                    deliver(&ctx, &store, term).await;
                }
            }
            if view.changed().await.is_err() {
                return;
            }
        }
    })
}

fn leading(ctx: &NodeContext, term: u64) -> bool {
    let v = ctx.view.borrow();
    v.is_leader() && v.term == term
}

/// The store actor's pool for `term`, once it has raised the fence (`None` if this node
/// stops leading `term` first): delivery reads and marks intents through it.
async fn leaders_pool(ctx: &NodeContext, term: u64) -> Option<GraphStore> {
    let mut pool = ctx.store.subscribe();
    let mut view = ctx.view.subscribe();
    loop {
        if !leading(ctx, term) {
            return None;
        }
        if let Some((t, store)) = pool.borrow_and_update().clone() {
            if t == term {
                return Some(store);
            }
        }
        tokio::select! {
            changed = pool.changed() => changed.ok()?,
            changed = view.changed() => changed.ok()?,
        }
    }
}

/// One leadership's delivery: steps the courier until this node stops leading `term`.
async fn deliver(ctx: &NodeContext, store: &GraphStore, term: u64) {
    tracing::info!(term, "delivering cross-shard intents");
    let mut courier: Courier<Payload> = Courier::new(ctx.cfg.courier_bug);
    // Every task reports back here; a few per intent in flight at most.
    let (tx, mut rx) = mpsc::channel::<Input<Payload>>(Courier::<Payload>::MAX_IN_FLIGHT * 4);
    let mut view = ctx.view.subscribe();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut prune = tokio::time::interval(PRUNE_EVERY);
    prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pruning: Option<JoinHandle<()>> = None;
    loop {
        let input = tokio::select! {
            _ = tick.tick() => Input::Tick,
            _ = prune.tick() => {
                if pruning.as_ref().is_none_or(|t| t.is_finished()) {
                    pruning = Some(spawn_prune(store));
                }
                continue;
            }
            () = ctx.intents_written.notified() => Input::Wake,
            Some(input) = rx.recv() => input,
            changed = view.changed() => {
                if changed.is_err() || !leading(ctx, term) {
                    tracing::info!(term, pending = courier.pending(), "no longer leading: intent delivery stops");
                    if let Some(t) = pruning.take() {
                        t.abort();
                    }
                    ctx.metrics.intents_pending.set(0);
                    return;
                }
                continue;
            }
        };
        for out in courier.step(ctx.now(), input) {
            match out {
                Output::Send(intent) => spawn_send(ctx, intent, tx.clone()),
                Output::MarkDelivered(ids, how) => spawn_mark(ctx, store, term, ids, how, tx.clone()),
                Output::Undo(intent) => spawn_undo(ctx, intent, tx.clone()),
                Output::Reload { gen } => spawn_load(store, gen, tx.clone()),
            }
        }
        ctx.metrics.intents_pending.set(courier.pending() as i64);
    }
}

/// Reads the oldest undelivered intents for the courier's reload `gen` (none on a failure:
/// the next reload tries again). Answers within [`DB_TIMEOUT`]: the courier asks for no
/// other meanwhile (a task that dies is given up after `Courier::RELOAD_ANSWER_WITHIN`).
fn spawn_load(store: &GraphStore, gen: u64, tx: mpsc::Sender<Input<Payload>>) {
    let store = store.clone();
    tokio::spawn(async move {
        let read = tokio::time::timeout(DB_TIMEOUT, store.undelivered_intents(MAX_UNDELIVERED)).await;
        let intents = match read.unwrap_or_else(|_| Err(StoreError::timed_out("reading intents", DB_TIMEOUT))) {
            Ok(rows) => {
                rows.into_iter().map(|p| Intent { id: p.id, to_shard: p.to_shard, op: (p.op, p.created) }).collect()
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading undelivered intents failed; retrying at the next reload");
                Vec::new()
            }
        };
        let _ = tx.send(Input::Reloaded { gen, intents }).await;
    });
}

/// Deletes the delivered intents and the applied-intent records older than [`RETAIN`].
fn spawn_prune(store: &GraphStore) -> JoinHandle<()> {
    let store = store.clone();
    tokio::spawn(async move {
        let before = instaface_bus::now_ms().saturating_sub(RETAIN.as_millis() as u64);
        match store.prune_intents(before).await {
            Ok(n) if n > 0 => tracing::debug!(pruned = n, "old intents pruned"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "pruning old intents failed; trying again later"),
        }
    })
}

/// Marks `ids` delivered, retrying while this node leads `term` (the courier sends them
/// no more either way; a later leader reads them again if they stay unmarked).
fn spawn_mark(
    ctx: &NodeContext,
    store: &GraphStore,
    term: u64,
    ids: Vec<u64>,
    outcome: Delivered,
    tx: mpsc::Sender<Input<Payload>>,
) {
    let (ctx, store) = (ctx.clone(), store.clone());
    tokio::spawn(async move {
        let mut delay = Duration::from_millis(100);
        loop {
            let marked = tokio::time::timeout(DB_TIMEOUT, store.mark_intents(&ids, outcome)).await;
            let Err(e) = marked.unwrap_or_else(|_| Err(StoreError::timed_out("marking intents", DB_TIMEOUT))) else {
                break;
            };
            if !leading(&ctx, term) {
                return;
            }
            tracing::warn!(error = %e, retry_in = ?delay, "marking intents delivered failed; retrying");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(3));
        }
        let _ = tx.send(Input::Marked(ids)).await;
    });
}

/// Delivers one intent to its shard's leader and reports the answer.
fn spawn_send(ctx: &NodeContext, intent: Intent<Payload>, tx: mpsc::Sender<Input<Payload>>) {
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let id = intent.id;
        let (op, created) = intent.op;
        ctx.metrics.intents.with_label_values(&["sent"]).inc();
        let answer = send(&ctx, intent.to_shard, id, op).await;
        let event = match &answer {
            Answer::Applied => "applied",
            Answer::Refused(_) => "refused",
            Answer::Unreachable => "unreachable",
        };
        ctx.metrics.intents.with_label_values(&[event]).inc();
        if answer != Answer::Unreachable {
            let lag = instaface_bus::now_ms().saturating_sub(created);
            ctx.metrics.intent_lag_seconds.observe(lag as f64 / 1000.0);
        }
        let _ = tx.send(Input::Answered { id, answer }).await;
    });
}

async fn send(ctx: &NodeContext, to: u32, intent_id: u64, op: InverseOp) -> Answer {
    let leader = ctx.groups.get(to as usize).and_then(|v| v.borrow().leader.clone());
    let Some(leader) = leader else {
        return Answer::Unreachable;
    };
    let subject = ctx.net.subjects().for_shard(to, ctx.cfg.bus.shards).intent(&leader);
    let delivery = IntentDelivery { from_shard: ctx.cfg.shard, intent_id, op };
    match ctx.net.request::<_, Reply<WriteOutcome>>(subject, &delivery, SEND_TIMEOUT).await {
        Ok(Reply::Ok(_)) => Answer::Applied,
        Ok(Reply::Error(e)) if e.code == ErrorCode::NotFound => Answer::Refused(e.message),
        Ok(Reply::Error(e)) => {
            if !e.code.ask_elsewhere() {
                tracing::warn!(intent_id, to, error = %e, "intent refused; delivering again");
            }
            Answer::Unreachable
        }
        Err(e) => {
            tracing::debug!(intent_id, to, error = %e, "intent not answered; delivering again");
            Answer::Unreachable
        }
    }
}

/// Removes the row a refused intent depended on, and reports whether that committed.
fn spawn_undo(ctx: &NodeContext, intent: Intent<Payload>, tx: mpsc::Sender<Input<Payload>>) {
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let id = intent.id;
        let done = match undo_own_row(&ctx, &intent.op.0).await {
            Ok(()) => true,
            Err(why) => {
                tracing::warn!(intent_id = id, %why, "removing the row of a refused intent failed; delivering again");
                false
            }
        };
        let _ = tx.send(Input::Undone { id, done }).await;
    });
}

/// The other shard refused an intent because its entity is gone: this shard's row that
/// depends on it goes too — the pair's own row for a put, the one-way row for a check —
/// through the store like any write (a removal's own intent for the other shard changes
/// nothing there).
async fn undo_own_row(ctx: &NodeContext, op: &InverseOp) -> Result<(), String> {
    let remove = match op {
        InverseOp::Put { from, atype, to, .. } => {
            let atype = inverse_of(atype).ok_or_else(|| format!("{atype} has no inverse"))?;
            WriteRequest::RemoveAssoc { from: *to, atype: atype.to_string(), to: *from }
        }
        InverseOp::Exists { id, from, atype } => {
            WriteRequest::RemoveAssoc { from: *from, atype: atype.clone(), to: *id }
        }
        InverseOp::Remove { .. } | InverseOp::Dropped { .. } => return Ok(()),
    };
    super::requests::write(ctx, remove).await.map(|_| ()).map_err(|e| e.to_string())
}
