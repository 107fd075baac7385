//! How SQLite failures become [`StoreError`]s: a busy or failing database is
//! `Unavailable` (retrying is safe, since every decision is one
//! transaction), a row or file that cannot be read back is `Corrupt`.

use kp_store::StoreError;
use rusqlite::ErrorCode;

/// A failure inside a blocking database call. It exists so that `?` works on
/// both rusqlite and decoding errors, which `StoreError` (another crate's
/// type) cannot take conversions from.
#[derive(Debug)]
pub(crate) struct DbError(pub(crate) StoreError);

impl DbError {
    /// A stored row that does not decode, or a database this build cannot read.
    pub(crate) fn corrupt(message: impl Into<String>) -> Self {
        Self(StoreError::Corrupt(message.into()))
    }
}

impl From<rusqlite::Error> for DbError {
    fn from(error: rusqlite::Error) -> Self {
        use rusqlite::Error as E;
        let corrupt = match &error {
            E::SqliteFailure(failure, _) => {
                matches!(failure.code, ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)
            }
            // A column holding something our own writes never put there.
            E::FromSqlConversionFailure(..) | E::IntegralValueOutOfRange(..) | E::InvalidColumnType(..) => true,
            _ => false,
        };
        let message = format!("sqlite: {error}");
        Self(if corrupt {
            StoreError::Corrupt(message)
        } else {
            // SQLITE_BUSY after the busy timeout, I/O errors, a full disk, a
            // read-only file: the store did not answer this time.
            StoreError::Unavailable(message)
        })
    }
}

impl From<DbError> for StoreError {
    fn from(error: DbError) -> Self {
        error.0
    }
}
