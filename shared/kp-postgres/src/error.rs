//! How PostgreSQL failures become [`StoreError`]s: a server that does not
//! answer, times out or refuses the connection is `Unavailable` (retrying is
//! safe, since every decision is one transaction), lock conflicts PostgreSQL
//! resolved by aborting one side are `Contention`, and a row this build
//! cannot read back is `Corrupt`.

use deadpool_postgres::PoolError;
use kp_store::StoreError;
use tokio_postgres::error::SqlState;

/// A failure inside a store call. It exists so that `?` works on
/// tokio-postgres, pool and decoding errors alike, which `StoreError`
/// (another crate's type) cannot take conversions from.
#[derive(Debug)]
pub(crate) struct DbError(pub(crate) StoreError);

impl DbError {
    /// A stored row that does not decode, or a database this build cannot read.
    pub(crate) fn corrupt(message: impl Into<String>) -> Self {
        Self(StoreError::Corrupt(message.into()))
    }

    /// A column that would not convert (`Row::try_get`): our own writes
    /// never store such a value, so someone else did.
    pub(crate) fn undecodable(error: tokio_postgres::Error) -> Self {
        Self::corrupt(format!("postgres: {}", describe(&error)))
    }
}

/// The error with its cause: tokio-postgres prints only "db error" for
/// everything the server said.
fn describe(error: &tokio_postgres::Error) -> String {
    match std::error::Error::source(error) {
        Some(cause) => format!("{error}: {cause}"),
        None => error.to_string(),
    }
}

impl From<tokio_postgres::Error> for DbError {
    fn from(error: tokio_postgres::Error) -> Self {
        let message = format!("postgres: {}", describe(&error));
        let Some(code) = error.code() else {
            // No SQL state: the connection broke, timed out or was refused.
            return Self(StoreError::Unavailable(message));
        };
        Self(
            if *code == SqlState::T_R_SERIALIZATION_FAILURE
                || *code == SqlState::T_R_DEADLOCK_DETECTED
                || *code == SqlState::LOCK_NOT_AVAILABLE
            {
                StoreError::Contention(message)
            } else if code.code().starts_with("22")
                || code.code().starts_with("23")
                || *code == SqlState::DATA_CORRUPTED
                || *code == SqlState::INDEX_CORRUPTED
            {
                // Data exceptions and broken constraints on rows only this
                // backend writes, or storage the server itself reports broken.
                StoreError::Corrupt(message)
            } else {
                // statement_timeout (query_canceled), a server shutting down,
                // too many connections, authentication: the store did not
                // answer this time.
                StoreError::Unavailable(message)
            },
        )
    }
}

impl From<PoolError> for DbError {
    fn from(error: PoolError) -> Self {
        match error {
            PoolError::Backend(error) => error.into(),
            PoolError::Timeout(kind) => Self(StoreError::Unavailable(format!(
                "postgres: no connection within the statement deadline ({kind:?})"
            ))),
            other => Self(StoreError::Unavailable(format!("postgres pool: {other}"))),
        }
    }
}

impl From<DbError> for StoreError {
    fn from(error: DbError) -> Self {
        error.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_timeouts_are_retryable() {
        let error: StoreError = DbError::from(PoolError::Timeout(deadpool_postgres::TimeoutType::Wait)).into();
        assert!(error.is_retryable(), "{error}");
        let error: StoreError = DbError::from(PoolError::Closed).into();
        assert!(error.is_retryable(), "{error}");
    }
}
