//! [`LocalReads`]: reads a graph client may answer in its own process, without the bus —
//! when the client (the gateway) runs inside a node, whose own cache serves under the
//! same read lease and invalidation log as a read that came over NATS.
//!
//! The client asks the local reader first; a read it may not serve here (no lease, not the
//! leader for `strong`, `min_seq` not applied yet: `Unavailable` or `NotLeader`) goes on to
//! the bus as before. Nothing about what a read may return changes: the local path runs
//! the node's own read function, which admits each read exactly as it admits one from NATS.

use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;

use crate::graph::{ErrorBody, ReadRequest, ReadResult};
use crate::shards::ShardId;

/// A process-local way to serve reads (implemented by the node for its own groups).
pub trait LocalReads: Send + Sync + 'static {
    /// Serves `req` at this process's member of shard `shard`'s group, or `None` when this
    /// process hosts none.
    fn read(&self, shard: ShardId, req: ReadRequest) -> Option<BoxFuture<'static, Result<ReadResult, ErrorBody>>>;
}

/// A shared [`LocalReads`], as the client's configuration holds it.
#[derive(Clone)]
pub struct LocalReader(pub Arc<dyn LocalReads>);

impl fmt::Debug for LocalReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LocalReader")
    }
}
