//! The fill path: the leader answers a follower's cache misses from its own cache (which
//! fills from MySQL), stamped with its term and applied seq.

use instaface_bus::graph::{ErrorBody, ErrorCode, FillReply, FillRequest};
use instaface_bus::messages::Role;

use super::{cache_get, err};
use crate::node::NodeContext;

/// A follower's fill, served from the leader's cache (which fills from MySQL) under the
/// leader's own lease.
pub async fn fill(ctx: &NodeContext, req: FillRequest) -> Result<FillReply, ErrorBody> {
    let (role, term) = {
        let view = ctx.view.borrow();
        (view.role, view.term)
    };
    if role != Role::Leader {
        return Err(err(ErrorCode::NotLeader, "fills go to the leader"));
    }
    if req.keys.len() > 10_000 {
        return Err(err(ErrorCode::Invalid, "at most 10000 keys per fill"));
    }
    let values = cache_get(ctx, req.keys).await?;
    Ok(FillReply { term, seq: ctx.applied_seq(), values: values.into_iter().map(|(_, v)| v).collect() })
}
