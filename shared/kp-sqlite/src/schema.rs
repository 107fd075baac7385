//! Opening a connection: its pragmas, and the schema, created (or checked)
//! at open and versioned with `PRAGMA user_version` for later migrations.
//!
//! Each table keeps the document as JSON in `body`, exactly the structs the
//! rules read and write, plus copies of the fields that queries filter or
//! sort on. The copies are written in the same statement as the body, so
//! they never disagree with it.

use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior};

use crate::error::DbError;

/// The schema this build writes. Bump it with a new entry in [`migrate`].
pub(crate) const SCHEMA_VERSION: i64 = 2;

/// How long a connection waits for another one's write lock before the
/// call fails as `Unavailable`. Decisions hold the lock for milliseconds;
/// this only runs out when the disk stalls or a foreign process holds it.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Version 1: the document model of DESIGN.md section 6, in tables.
const SCHEMA_V1: &str = "
CREATE TABLE IF NOT EXISTS keypackage_owners (
    owner         TEXT PRIMARY KEY NOT NULL,
    next_purge_at INTEGER NOT NULL,
    body          TEXT NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS keypackage_owners_next_purge_at ON keypackage_owners (next_purge_at);

CREATE TABLE IF NOT EXISTS keypackages (
    keypackage_ref TEXT PRIMARY KEY NOT NULL,
    owner          TEXT NOT NULL,
    state          TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    purge_at       INTEGER NOT NULL,
    slot           TEXT,
    body           TEXT NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS keypackages_owner_state ON keypackages (owner, state);
CREATE INDEX IF NOT EXISTS keypackages_state_created_at ON keypackages (state, created_at DESC, keypackage_ref);
CREATE INDEX IF NOT EXISTS keypackages_purge_at ON keypackages (purge_at);
CREATE INDEX IF NOT EXISTS keypackages_slot ON keypackages (slot);

CREATE TABLE IF NOT EXISTS keypackage_events (
    event_id       TEXT PRIMARY KEY NOT NULL,
    keypackage_ref TEXT NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS keypackage_events_keypackage_ref ON keypackage_events (keypackage_ref);

CREATE TABLE IF NOT EXISTS keypackage_audit (
    id             INTEGER PRIMARY KEY,
    owner          TEXT NOT NULL,
    keypackage_ref TEXT NOT NULL,
    at             INTEGER NOT NULL,
    expire_at      INTEGER NOT NULL,
    body           TEXT NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS keypackage_audit_owner ON keypackage_audit (owner, at, keypackage_ref);
CREATE INDEX IF NOT EXISTS keypackage_audit_expire_at ON keypackage_audit (expire_at);

CREATE TABLE IF NOT EXISTS keypackage_auth (
    event_id  TEXT PRIMARY KEY,
    expire_at INTEGER NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS keypackage_auth_expire_at ON keypackage_auth (expire_at);
";

/// Version 2: every KeyPackage records its Marmot profile. What was stored
/// before is legacy: the record bodies and the owner indexes' entries (which
/// the count reads) get `"profile": "legacy"`. Re-running it changes nothing.
const MIGRATE_V2: &str = "
UPDATE keypackages
   SET body = json_set(body, '$.profile', 'legacy')
 WHERE json_extract(body, '$.profile') IS NULL;
UPDATE keypackage_owners
   SET body = json_set(body, '$.available', json((
           SELECT json_group_object(key,
                      CASE WHEN json_extract(value, '$.profile') IS NULL
                           THEN json_set(value, '$.profile', 'legacy')
                           ELSE json(value) END)
             FROM json_each(keypackage_owners.body, '$.available'))))
 WHERE EXISTS (SELECT 1 FROM json_each(keypackage_owners.body, '$.available')
                WHERE json_extract(value, '$.profile') IS NULL);
";

/// Sets the per-connection pragmas. `file` is false for in-memory databases,
/// which have no journal to configure.
pub(crate) fn configure(connection: &Connection, file: bool) -> Result<(), DbError> {
    connection.busy_timeout(BUSY_TIMEOUT)?;
    if file {
        // WAL lets queries read while a decision writes. Some filesystems
        // (network mounts) refuse it; SQLite then keeps its rollback journal,
        // which is slower but serialises writers just the same, so the
        // answer is not checked.
        let _mode: String = connection.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        // FULL, not WAL's usual NORMAL: a committed consumption must survive
        // a power cut, or a one-time KeyPackage could be handed out twice.
        connection.pragma_update(None, "synchronous", "FULL")?;
    }
    Ok(())
}

/// Brings the schema up to [`SCHEMA_VERSION`], in one transaction so that
/// concurrent openers of one file do it once. Idempotent.
pub(crate) fn migrate(connection: &mut Connection) -> Result<(), DbError> {
    let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: i64 = tx.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(DbError::corrupt(format!(
            "the database has schema version {version}, newer than this build's {SCHEMA_VERSION}; run a newer build"
        )));
    }
    // `IF NOT EXISTS` throughout, so re-running version 1 repairs a
    // missing index without touching data.
    tx.execute_batch(SCHEMA_V1)?;
    if version < 2 {
        tx.execute_batch(MIGRATE_V2)?;
    }
    if version < SCHEMA_VERSION {
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    }
    tx.commit()?;
    Ok(())
}
