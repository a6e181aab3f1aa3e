//! [`StoreError`]: everything the graph store can fail with, and how each failure is
//! answered over the bus ([`ErrorBody`]).

use instaface_bus::graph::{ErrorBody, ErrorCode};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A newer leader has raised the fence: this writer is deposed and must not write.
    #[error("fenced: the stored leader term {stored} is above this writer's term {mine}")]
    Fenced { stored: u64, mine: u64 },
    /// The entity (or whatever is named) does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The request can never succeed as it is (bad type name, non-object patch, …).
    #[error("invalid: {0}")]
    Invalid(String),
    /// The request conflicts with the database's state (the schema is newer than this
    /// binary, the migration lock could not be taken, …).
    #[error("conflict: {0}")]
    Conflict(String),
    /// MySQL failed: connection, server or driver error.
    #[error("mysql: {0}")]
    Mysql(#[from] mysql_async::Error),
    /// Stored data that does not parse (attributes or outbox keys that are not the JSON
    /// they should be).
    #[error("corrupt data: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// The bus error code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            StoreError::Fenced { .. } => ErrorCode::NotLeader,
            StoreError::NotFound(_) => ErrorCode::NotFound,
            StoreError::Invalid(_) => ErrorCode::Invalid,
            StoreError::Conflict(_) => ErrorCode::Conflict,
            StoreError::Mysql(_) | StoreError::Corrupt(_) => ErrorCode::Internal,
        }
    }
}

impl StoreError {
    /// A MySQL I/O error for an operation that did not finish within `limit`.
    pub(crate) fn timed_out(what: &str, limit: std::time::Duration) -> StoreError {
        let message = format!("{what}: no answer within {} ms", limit.as_millis());
        let io = std::io::Error::new(std::io::ErrorKind::TimedOut, message);
        StoreError::Mysql(mysql_async::Error::Io(mysql_async::IoError::Io(io)))
    }
}

impl From<StoreError> for ErrorBody {
    fn from(e: StoreError) -> Self {
        ErrorBody::new(e.code(), e.to_string())
    }
}

impl From<mysql_async::UrlError> for StoreError {
    fn from(e: mysql_async::UrlError) -> Self {
        StoreError::Mysql(mysql_async::Error::Url(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_contract() {
        let cases = [
            (StoreError::Fenced { stored: 5, mine: 4 }, ErrorCode::NotLeader),
            (StoreError::NotFound("entity 7".into()), ErrorCode::NotFound),
            (StoreError::Invalid("x".into()), ErrorCode::Invalid),
            (StoreError::Conflict("x".into()), ErrorCode::Conflict),
            (StoreError::Corrupt("x".into()), ErrorCode::Internal),
        ];
        for (e, code) in cases {
            let body = ErrorBody::from(e);
            assert_eq!(body.code, code, "{}", body.message);
        }
    }
}
