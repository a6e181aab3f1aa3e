//! The write path: only the leader runs a write (its store actor, under the fence);
//! any other node refuses it, naming the leader it knows of. Intents of other shards
//! (cross-shard association rows and drops) come in the same way and run as writes.

use std::time::Duration;

use instaface_bus::graph::{ErrorBody, ErrorCode, WriteOutcome, WriteRequest};
use instaface_bus::intents::IntentDelivery;
use instaface_bus::messages::Role;

use super::err;
use crate::node::messages::StoreMsg;
use crate::node::{lookup, NodeContext};
use crate::store::Op;

/// A write addressed to this node: the leader runs it; anyone else refuses it, naming the
/// leader it knows of.
pub async fn write(ctx: &NodeContext, req: WriteRequest) -> Result<WriteOutcome, ErrorBody> {
    // A write for another shard (a client that routed it wrong) never runs here.
    match ctx.cfg.bus.shards.of_write(&req) {
        Err(why) => return Err(err(ErrorCode::Invalid, why)),
        Ok(Some(k)) if k != ctx.cfg.shard => {
            return Err(err(
                ErrorCode::Invalid,
                format!("this is shard {}'s leader group; the write is for shard {k}", ctx.cfg.shard),
            ))
        }
        Ok(_) => {}
    }
    run(ctx, Op::Write(req)).await
}

/// An intent of another shard, delivered to this group's leader: applied once, as a
/// write (under the fence, its invalidations covered before the answer). The store
/// refuses one that does not join this shard's entity to the sending shard's.
pub async fn apply_intent(ctx: &NodeContext, delivery: IntentDelivery) -> Result<WriteOutcome, ErrorBody> {
    ctx.metrics.intents.with_label_values(&["received"]).inc();
    run(ctx, Op::Apply(delivery)).await
}

/// Runs `op` on the leader's store actor.
async fn run(ctx: &NodeContext, op: Op) -> Result<WriteOutcome, ErrorBody> {
    let view = ctx.view.borrow().clone();
    if view.role != Role::Leader {
        return Err(err(ErrorCode::NotLeader, format!("{} is not the leader (leader: {:?})", ctx.cfg.id, view.leader)));
    }
    // NotLeader means "certainly not run": the client may retry it; Unavailable means the
    // outcome is unknown.
    let store = lookup::<StoreMsg>(&ctx.names.store)
        .ok_or_else(|| err(ErrorCode::NotLeader, "the store is restarting; the write did not run"))?;
    // A lease-mode write waits at most one lease for a cut-off follower, once.
    let timeout = ctx.cfg.lease * 3 + Duration::from_secs(5);
    match store.call(|reply| StoreMsg::Write { req: op, reply }, Some(timeout)).await {
        Ok(ractor::rpc::CallResult::Success(r)) => r,
        Ok(_) => Err(err(ErrorCode::Unavailable, "the write's outcome is unknown (no answer in time)")),
        Err(e) => Err(err(ErrorCode::NotLeader, format!("the store is unavailable; the write did not run: {e}"))),
    }
}
