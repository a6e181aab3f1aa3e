//! The leadership fence: one row holding the highest leader term that has taken office.
//!
//! A new leader raises it ([`GraphStore::raise_fence`]) before its first write; every write
//! locks the row first ([`check`]) and is refused when the stored term is above the
//! writer's, so a deposed leader can never write. The row lock also serialises writes.

use mysql_async::prelude::*;
use mysql_async::{Transaction, TxOpts};

use super::{GraphStore, StoreError};

impl GraphStore {
    /// Raises the stored term to `term` (it never goes down). Returns the stored term,
    /// now `term`, or [`StoreError::Fenced`] when a later leader already raised it higher.
    #[tracing::instrument(skip(self))]
    pub async fn raise_fence(&self, term: u64) -> Result<u64, StoreError> {
        let mut tx = self.begin(TxOpts::default()).await?;
        let result = async {
            check(&mut tx, term).await?;
            tx.exec_drop(
                "UPDATE fence SET term = GREATEST(term, ?) WHERE id = 1",
                (term,),
            )
            .await?;
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
        let term: Option<u64> = conn
            .query_first("SELECT term FROM fence WHERE id = 1")
            .await?;
        term.ok_or_else(missing_row)
    }
}

/// Locks the fence row for the rest of `tx` and refuses a writer whose `term` is below the
/// stored one.
pub(super) async fn check(tx: &mut Transaction<'static>, term: u64) -> Result<(), StoreError> {
    let stored: Option<u64> = tx
        .query_first("SELECT term FROM fence WHERE id = 1 FOR UPDATE")
        .await?;
    let stored = stored.ok_or_else(missing_row)?;
    if stored > term {
        return Err(StoreError::Fenced { stored, mine: term });
    }
    Ok(())
}

fn missing_row() -> StoreError {
    StoreError::Corrupt("the fence row (id = 1) is missing".into())
}
