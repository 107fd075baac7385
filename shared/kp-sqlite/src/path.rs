//! Where the SQLite database lives, and how `KP_STORE` names it:
//! `sqlite:<path>` for a file, `sqlite::memory:` for a private in-memory
//! database.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// The database a [`SqliteStore`](crate::SqliteStore) opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlitePath {
    /// A database file, created when missing (its directory must exist).
    File(PathBuf),
    /// A private in-memory database, gone when the store is dropped.
    Memory,
}

impl SqlitePath {
    /// The default of `KP_STORE`: `keypackages.db` in the working directory.
    pub const DEFAULT: &'static str = "sqlite:keypackages.db";

    /// A database file at `path`.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Self::File(path.into())
    }
}

/// Why a `KP_STORE` value does not name a SQLite database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseSqlitePathError {
    value: String,
    reason: &'static str,
}

impl fmt::Display for ParseSqlitePathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not a SQLite store: {}; expected sqlite:<path> or sqlite::memory:",
            self.value, self.reason
        )
    }
}

impl std::error::Error for ParseSqlitePathError {}

impl FromStr for SqlitePath {
    type Err = ParseSqlitePathError;

    /// Reads `sqlite::memory:`, `sqlite:<path>` or `sqlite://<path>` (the
    /// form sqlx and other tools write; `sqlite:///abs/path` is absolute).
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let error = |reason| ParseSqlitePathError {
            value: value.to_owned(),
            reason,
        };
        let rest = value
            .strip_prefix("sqlite:")
            .ok_or_else(|| error("it does not start with sqlite:"))?;
        if rest == ":memory:" {
            return Ok(Self::Memory);
        }
        let path = rest.strip_prefix("//").unwrap_or(rest);
        if path.is_empty() {
            return Err(error("the path is empty"));
        }
        // A near miss of `sqlite::memory:` would silently create a file
        // called "memory" (or open SQLite's own `:memory:`), losing data the
        // operator meant to keep or keeping data meant to vanish; refuse it
        // (`sqlite:./memory` still names such a file on purpose).
        if path.trim_matches(':').eq_ignore_ascii_case("memory") {
            return Err(error("write the in-memory store as sqlite::memory:"));
        }
        Ok(Self::File(PathBuf::from(path)))
    }
}

impl fmt::Display for SqlitePath {
    /// The `KP_STORE` spelling, which [`FromStr`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "sqlite:{}", path.display()),
            Self::Memory => f.write_str("sqlite::memory:"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_files_and_memory() {
        assert_eq!("sqlite::memory:".parse(), Ok(SqlitePath::Memory));
        assert_eq!(SqlitePath::DEFAULT.parse(), Ok(SqlitePath::file("keypackages.db")));
        assert_eq!(
            "sqlite:/var/lib/kp/kp.db".parse(),
            Ok(SqlitePath::file("/var/lib/kp/kp.db"))
        );
        assert_eq!("sqlite://data/kp.db".parse(), Ok(SqlitePath::file("data/kp.db")));
        assert_eq!("sqlite:///srv/kp.db".parse(), Ok(SqlitePath::file("/srv/kp.db")));
    }

    #[test]
    fn refuses_what_is_not_a_sqlite_store() {
        for bad in [
            "",
            "keypackages.db",
            "firestore",
            "sqlite:",
            "sqlite://",
            "sqlite:memory",
            "sqlite:::memory:",
            "postgres://x",
        ] {
            let error = bad.parse::<SqlitePath>().expect_err(bad).to_string();
            assert!(
                error.contains("expected sqlite:<path> or sqlite::memory:"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn display_round_trips() {
        for path in [SqlitePath::Memory, SqlitePath::file("dir/kp.db")] {
            assert_eq!(path.to_string().parse(), Ok(path));
        }
    }
}
