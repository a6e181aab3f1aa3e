//! The static cluster membership, kept in Redis as one hash per cluster:
//! `<prefix>:members`, field = node id, value = a JSON [`MemberInfo`].
//!
//! Quorum is a majority of these members, not of the nodes alive. Launchers write the
//! expected members (`MEMBERS`) before any node may campaign, so nodes starting together
//! never each see a membership of one.

use std::collections::BTreeMap;

use redis::aio::ConnectionManager;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use crate::{NodeId, Subjects};

/// What a member registered about itself (or what a launcher knew of it).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// When the entry was written, ms since the epoch.
    pub registered: u64,
    /// Who wrote it: `self` when the node registered itself, else the registrar.
    #[serde(default)]
    pub by: String,
}

#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("invalid node id {0:?}")]
    InvalidId(String),
}

/// A handle on one cluster's membership. Cheap to clone; reconnects on its own.
#[derive(Clone)]
pub struct Membership {
    conn: ConnectionManager,
    key: String,
}

impl Membership {
    /// Connects to Redis at `url` for the cluster with `subjects`' prefix.
    pub async fn connect(url: &str, subjects: &Subjects) -> Result<Self, MembershipError> {
        let client = redis::Client::open(url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(std::time::Duration::from_secs(3)))
            .set_response_timeout(Some(std::time::Duration::from_secs(3)))
            .set_max_delay(std::time::Duration::from_secs(2));
        let conn = ConnectionManager::new_with_config(client, config).await?;
        Ok(Membership { conn, key: subjects.redis_key("members") })
    }

    /// Adds (or refreshes) a member.
    pub async fn register(&self, id: &str, info: &MemberInfo) -> Result<(), MembershipError> {
        if !crate::valid_node_id(id) {
            return Err(MembershipError::InvalidId(id.to_string()));
        }
        let value = serde_json::to_string(info).unwrap_or_default();
        let mut conn = self.conn.clone();
        let _: () = conn.hset(&self.key, id, value).await?;
        Ok(())
    }

    /// Adds members that are not registered yet, leaving existing entries alone.
    pub async fn ensure(&self, ids: &[NodeId], by: &str) -> Result<(), MembershipError> {
        let mut conn = self.conn.clone();
        for id in ids {
            if !crate::valid_node_id(id) {
                return Err(MembershipError::InvalidId(id.clone()));
            }
            let info = MemberInfo { registered: crate::now_ms(), by: by.to_string() };
            let value = serde_json::to_string(&info).unwrap_or_default();
            let _: bool = conn.hset_nx(&self.key, id, value).await?;
        }
        Ok(())
    }

    /// Every member with what it registered (an unreadable entry counts, with defaults).
    pub async fn list(&self) -> Result<BTreeMap<NodeId, MemberInfo>, MembershipError> {
        let mut conn = self.conn.clone();
        let raw: BTreeMap<String, String> = conn.hgetall(&self.key).await?;
        Ok(raw
            .into_iter()
            .map(|(id, v)| {
                let info = serde_json::from_str(&v).unwrap_or_default();
                (id, info)
            })
            .collect())
    }

    /// Removes a member; returns whether it was there.
    pub async fn remove(&self, id: &str) -> Result<bool, MembershipError> {
        let mut conn = self.conn.clone();
        let removed: u64 = conn.hdel(&self.key, id).await?;
        Ok(removed > 0)
    }

    /// Removes the whole membership of this cluster (tests clean up with it).
    pub async fn clear(&self) -> Result<(), MembershipError> {
        let mut conn = self.conn.clone();
        let _: () = conn.del(&self.key).await?;
        Ok(())
    }
}
