//! The cache actor: publishes the counters of this node's
//! [`NodeCache`](super::node_cache::NodeCache) every second, and is the tree's member for
//! the cache (its test hook panics it, which restarts the tree).
//!
//! The cache itself is shared state, not this actor's: reads look it up in their own
//! tasks, and the protocol actor applies invalidations and the serving right to it before
//! anything of the same step leaves the node (see `node_cache.rs`). The supervisor starts
//! it over when it stops the tree, as a node restart would.

use std::time::Duration;

use instaface_bus::messages::EventKind;
use ractor::{Actor, ActorProcessingErr, ActorRef};

use super::messages::CacheMsg;
use super::NodeContext;

/// How often cache counters are published as a `cache` event.
const STATS_EVERY: Duration = Duration::from_secs(1);

pub struct CacheActor;

pub struct CacheState {
    ctx: NodeContext,
    last_published: (u64, u64, u64),
}

impl Actor for CacheActor {
    type Msg = CacheMsg;
    type State = CacheState;
    type Arguments = NodeContext;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        ctx: NodeContext,
    ) -> Result<Self::State, ActorProcessingErr> {
        myself.send_interval(STATS_EVERY, || CacheMsg::PublishStats);
        Ok(CacheState { ctx, last_published: (0, 0, 0) })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            CacheMsg::PublishStats => publish_stats(state).await,
            CacheMsg::Panic => panic!("test hook: cache actor panic"),
        }
        Ok(())
    }
}

async fn publish_stats(state: &mut CacheState) {
    let s = state.ctx.cache().stats();
    state.ctx.metrics.cache_entries.set(s.entries as i64);
    if let Ok(mut c) = state.ctx.counters.lock() {
        c.hits = s.hits;
        c.misses = s.misses;
        c.entries = s.entries;
        c.fills = state.ctx.metrics.cache_fills.get();
    }
    let now = (s.hits, s.misses, s.entries);
    if now != state.last_published {
        state.last_published = now;
        let term = state.ctx.view.borrow().term;
        state
            .ctx
            .net
            .event(
                term,
                EventKind::Cache {
                    hits: s.hits,
                    misses: s.misses,
                    entries: s.entries,
                    fills: s.fills,
                    applied_seq: state.ctx.applied_seq(),
                },
            )
            .await;
    }
}
