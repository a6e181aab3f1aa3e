//! The leadership fence: one row holding the term and id of the latest leader that took
//! office.
//!
//! A new leader raises it ([`GraphStore::raise_fence`]) before its first write; every write
//! locks the row first ([`check`]) and is refused when the stored term is above the
//! writer's — or equal to it but raised by another node — so a deposed leader can never
//! write. The leader id matters because nodes keep no disk state: a node that restarts
//! can vote again in a term it voted in, so one term may (rarely, and never at the same
//! moment) see two leaders one after the other. The row lock also serialises writes.

use mysql_async::prelude::*;
use mysql_async::{Transaction, TxOpts};

use super::{GraphStore, StoreError};

impl GraphStore {
    /// Takes office: sets the fence to (`term`, `leader`). Returns `term`, or
    /// [`StoreError::Fenced`] when a leader of a later term already took office. (An
    /// earlier leader of the same term is superseded: it cannot still be leading.)
    #[tracing::instrument(skip(self))]
    pub async fn raise_fence(&self, term: u64, leader: &str) -> Result<u64, StoreError> {
        let mut tx = self.begin(TxOpts::default()).await?;
        let result = async {
            let (stored, _) = lock(&mut tx).await?;
            if stored > term {
                return Err(StoreError::Fenced { stored, mine: term });
            }
            tx.exec_drop("UPDATE fence SET term = ?, leader = ? WHERE id = 1", (term, leader)).await?;
            Ok::<_, StoreError>(())
        }
        .await;
        match result {
            Ok(()) => {
                tx.commit().await?;
                tracing::debug!(term, "fence raised");
                Ok(term)
            }
            Err(e) => {
                super::rollback_quietly(tx).await;
                Err(e)
            }
        }
    }

    /// The stored fence term (0 before any leader raised it).
    pub async fn fence_term(&self) -> Result<u64, StoreError> {
        let mut conn = self.conn().await?;
        let term: Option<u64> = conn.query_first("SELECT term FROM fence WHERE id = 1").await?;
        term.ok_or_else(missing_row)
    }
}

/// Locks the fence row for the rest of `tx` and returns (term, leader).
async fn lock(tx: &mut Transaction<'static>) -> Result<(u64, String), StoreError> {
    let stored: Option<(u64, String)> =
        tx.query_first("SELECT term, leader FROM fence WHERE id = 1 FOR UPDATE").await?;
    stored.ok_or_else(missing_row)
}

/// Locks the fence row for the rest of `tx` and refuses a writer whose `term` is below the
/// stored one, or equal to it while another leader holds it.
pub(super) async fn check(tx: &mut Transaction<'static>, term: u64, leader: &str) -> Result<(), StoreError> {
    let (stored, holder) = lock(tx).await?;
    if stored > term || (stored == term && !holder.is_empty() && holder != leader) {
        return Err(StoreError::Fenced { stored, mine: term });
    }
    Ok(())
}

fn missing_row() -> StoreError {
    StoreError::Corrupt("the fence row (id = 1) is missing".into())
}
