//! NATS intake: one task per subscription, decoding each message and handing it to the
//! protocol actor. Undecodable payloads are logged once per burst and dropped; while the
//! node is unplugged every cluster-internal message is dropped here.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;
use instaface_bus::codec::DecodeLog;
use instaface_bus::messages::{Ack, EventKind, Heartbeat, Invalidate, TimeoutNow, Unplug, VoteReply, VoteRequest};
use instaface_bus::Incoming;
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;

use super::messages::{CacheMsg, ProtocolMsg, StoreMsg};
use super::{cast_to, NodeContext};

/// Whether messages on a subscription are cluster-internal (dropped while unplugged).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Internal,
    Control,
}

/// Subscribes to `subject` and calls `route` for every decodable message.
async fn spawn_intake<T, F>(
    ctx: &NodeContext,
    subject: String,
    kind: Kind,
    mut route: F,
) -> anyhow::Result<JoinHandle<()>>
where
    T: DeserializeOwned + Send + 'static,
    F: FnMut(&NodeContext, T, Option<String>) + Send + 'static,
{
    // Cluster messages and unplug commands must carry the cluster key's MAC (when set).
    let mut sub = ctx.net.bus().subscribe_signed::<T>(subject.clone()).await?;
    let ctx = ctx.clone();
    Ok(tokio::spawn(async move {
        let mut decode_log = DecodeLog::default();
        while let Some(Incoming { subject, reply, payload, forged }) = sub.next().await {
            if forged {
                ctx.net.rejected("unauthenticated", &subject);
                continue;
            }
            if kind == Kind::Internal && ctx.net.unplugged() {
                ctx.net.dropped("unplugged_in");
                continue;
            }
            match payload {
                Ok(msg) => route(&ctx, msg, reply),
                Err(e) => {
                    ctx.net.dropped("undecodable");
                    decode_log.record(&subject, &e);
                }
            }
        }
        tracing::debug!(%subject, "subscription ended");
    }))
}

/// Starts every cluster subscription of the node; returns their tasks.
pub async fn start(ctx: &NodeContext) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let s = ctx.net.subjects().clone();
    let me = ctx.cfg.id.clone();
    let mut tasks = Vec::new();

    let id = me.clone();
    tasks.push(
        spawn_intake::<Heartbeat, _>(ctx, s.heartbeat(), Kind::Internal, move |ctx, hb, _| {
            if hb.leader != id {
                cast_to(&ctx.names.protocol, ProtocolMsg::Heartbeat(hb));
            }
        })
        .await?,
    );
    let id = me.clone();
    tasks.push(
        spawn_intake::<VoteRequest, _>(ctx, s.vote(), Kind::Internal, move |ctx, req, _| {
            if req.candidate != id {
                cast_to(&ctx.names.protocol, ProtocolMsg::VoteRequest(req));
            }
        })
        .await?,
    );
    tasks.push(
        spawn_intake::<VoteReply, _>(ctx, s.vote_reply(&me), Kind::Internal, |ctx, reply, _| {
            cast_to(&ctx.names.protocol, ProtocolMsg::VoteReply(reply));
        })
        .await?,
    );
    tasks.push(
        spawn_intake::<Ack, _>(ctx, s.ack(&me), Kind::Internal, |ctx, ack, reply| {
            cast_to(&ctx.names.protocol, ProtocolMsg::Ack { ack, reply });
        })
        .await?,
    );
    tasks.push(
        spawn_intake::<TimeoutNow, _>(ctx, s.timeout_now(&me), Kind::Internal, |ctx, msg, _| {
            cast_to(&ctx.names.protocol, ProtocolMsg::TimeoutNow(msg));
        })
        .await?,
    );
    let id = me.clone();
    tasks.push(
        spawn_intake::<Invalidate, _>(ctx, s.invalidate(), Kind::Internal, move |ctx, inv, _| {
            if inv.leader != id {
                cast_to(&ctx.names.protocol, ProtocolMsg::Invalidate(inv));
            }
        })
        .await?,
    );
    // The unplug switches are the node's, shared by every group it hosts: shard 0's group
    // alone takes the commands, so they apply once each, in the order they came.
    if ctx.cfg.shard == 0 {
        let id = me.clone();
        tasks.push(
            spawn_intake::<Unplug, _>(ctx, s.control_unplug(), Kind::Control, move |ctx, cmd, _| {
                if cmd.node == id && ctx.net.set_unplugged(cmd.unplugged, cmd.clients) {
                    tracing::warn!(unplugged = cmd.unplugged, clients = cmd.clients, "unplug switch flipped");
                    let ctx = ctx.clone();
                    tokio::spawn(async move {
                        let term = ctx.view.borrow().term;
                        ctx.net
                            .event(term, EventKind::Unplugged { unplugged: cmd.unplugged, clients: cmd.clients })
                            .await;
                    });
                }
            })
            .await?,
        );
    }
    if ctx.cfg.test_hooks {
        tasks.push(spawn_test_hooks(ctx).await?);
    }
    ctx.net.bus().flush().await?;
    Ok(tasks)
}

/// Test hooks (only with `INSTAFACE_TEST_HOOKS=true`), on `P.node.<id>.debug.<hook>` with
/// a MessagePack string or integer payload:
/// - `panic` ("protocol" — also "election" or "heartbeat", the actors it replaced — or
///   "cache"): panic inside that actor (the whole actor tree restarts);
/// - `hold` (1 | 0): the leader stops (or resumes) sending invalidations, broadcast and
///   in heartbeats — to kill a leader between a commit and its followers' acks;
/// - `stall` (ms): the store actor waits that long before running its next write.
async fn spawn_test_hooks(ctx: &NodeContext) -> anyhow::Result<JoinHandle<()>> {
    let subject = ctx.net.subjects().node(&ctx.cfg.id, "debug.>");
    let mut sub = ctx.net.bus().raw().subscribe(subject).await?;
    let ctx = ctx.clone();
    Ok(tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            let hook = msg.subject.rsplit('.').next().unwrap_or_default().to_string();
            let text: Option<String> = instaface_bus::decode(&msg.payload).ok();
            let number: Option<u64> = instaface_bus::decode(&msg.payload).ok();
            tracing::warn!(%hook, ?text, ?number, "test hook");
            match (hook.as_str(), text.as_deref(), number) {
                ("panic", Some("protocol" | "election" | "heartbeat"), _) => {
                    cast_to(&ctx.names.protocol, ProtocolMsg::Panic);
                }
                ("panic", Some("cache"), _) => {
                    cast_to(&ctx.names.cache, CacheMsg::Panic);
                }
                ("hold", _, Some(on)) => {
                    cast_to(&ctx.names.protocol, ProtocolMsg::Hold(on != 0));
                }
                ("stall", _, Some(ms)) => {
                    cast_to(&ctx.names.store, StoreMsg::Stall(Duration::from_millis(ms)));
                }
                _ => tracing::warn!(%hook, "unknown test hook"),
            }
            if let Some(reply) = msg.reply {
                let _ = ctx.net.bus().publish(reply.to_string(), &true).await;
            }
        }
    }))
}

/// Registers this node and the expected `MEMBERS` in Redis, then feeds the membership to
/// the protocol actor every second. Retries with backoff while Redis is away.
pub fn spawn_membership(ctx: &NodeContext) -> JoinHandle<()> {
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let me = ctx.cfg.id.clone();
        let mut ids = ctx.cfg.members.clone();
        if !ids.contains(&me) {
            ids.push(me.clone());
        }
        let mut registered = false;
        let mut delay = Duration::from_millis(100);
        loop {
            // Registering is idempotent (existing entries are kept) and is repeated every
            // round: a Redis that restarted without persistence gets the membership back.
            let round = async {
                ctx.membership.ensure(&ids, &me).await?;
                ctx.membership.list().await
            };
            match round.await {
                Ok(members) => {
                    if !registered {
                        registered = true;
                        tracing::info!(members = ?ids, "registered in the membership");
                    }
                    let set: BTreeSet<String> = members.into_keys().collect();
                    cast_to(&ctx.names.protocol, ProtocolMsg::Membership(set));
                    delay = Duration::from_millis(100);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?delay, "redis membership unavailable; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(3));
                }
            }
        }
    })
}
