//! The write path: only the leader runs a write (its store actor, under the fence);
//! any other node refuses it, naming the leader it knows of.

use std::time::Duration;

use instaface_bus::graph::{ErrorBody, ErrorCode, WriteOutcome, WriteRequest};
use instaface_bus::messages::Role;

use super::err;
use crate::node::messages::StoreMsg;
use crate::node::{lookup, NodeContext};

/// A write addressed to this node: the leader runs it; anyone else refuses it, naming the
/// leader it knows of.
pub async fn write(ctx: &NodeContext, req: WriteRequest) -> Result<WriteOutcome, ErrorBody> {
    // A write for another shard's entity (a client that routed it wrong) never runs here.
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
    match store.call(|reply| StoreMsg::Write { req, reply }, Some(timeout)).await {
        Ok(ractor::rpc::CallResult::Success(r)) => r,
        Ok(_) => Err(err(ErrorCode::Unavailable, "the write's outcome is unknown (no answer in time)")),
        Err(e) => Err(err(ErrorCode::NotLeader, format!("the store is unavailable; the write did not run: {e}"))),
    }
}
