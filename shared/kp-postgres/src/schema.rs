//! The schema: versioned migrations kept in `migrations/` beside this crate,
//! applied in order at start and recorded in `keypackage_schema_migrations`.
//!
//! Every instance of the service runs [`migrate`] when it opens the store,
//! so instances that start together must not trip over each other: the
//! whole run is one transaction that first takes a transaction-scoped
//! advisory lock. The second instance waits for the first to commit, then
//! finds every migration recorded and does nothing.

use deadpool_postgres::Client;

use crate::error::DbError;

/// The migrations, in order: (version, name, SQL). Add new ones at the end;
/// never edit one that has shipped, since databases record it as applied.
pub(crate) const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "init", include_str!("../migrations/0001_init.sql")),
    (
        2,
        "owner_routes_and_auth",
        include_str!("../migrations/0002_owner_routes_and_auth.sql"),
    ),
    (3, "profiles", include_str!("../migrations/0003_profiles.sql")),
];

/// The schema version this build writes.
pub(crate) const SCHEMA_VERSION: i32 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// The advisory lock key of migrations ("kp_mig" in ASCII), so that it
/// does not collide with locks other software takes in the same database.
const MIGRATION_LOCK: i64 = 0x6b70_5f6d_6967;

const CREATE_LEDGER: &str = "
CREATE TABLE IF NOT EXISTS keypackage_schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)";

/// Brings the schema up to [`SCHEMA_VERSION`]. Idempotent, and safe when
/// several processes run it at once. Answers the versions it applied.
pub(crate) async fn migrate(client: &mut Client) -> Result<Vec<i32>, DbError> {
    let tx = client.transaction().await?;
    // The store's statement deadline suits its decisions, not building an
    // index on a large table, nor waiting for another instance doing so.
    tx.batch_execute("SET LOCAL statement_timeout = 0").await?;
    // Taken before anything else, even the ledger's `CREATE TABLE IF NOT
    // EXISTS`: two of those at once can fail on the catalog's unique index.
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(CREATE_LEDGER).await?;
    let mut applied = Vec::new();
    for row in tx
        .query("SELECT version FROM keypackage_schema_migrations ORDER BY version", &[])
        .await?
    {
        applied.push(row.try_get::<_, i32>(0).map_err(DbError::undecodable)?);
    }
    if let Some(&newest) = applied.last()
        && newest > SCHEMA_VERSION
    {
        return Err(DbError::corrupt(format!(
            "the database has schema version {newest}, newer than this build's {SCHEMA_VERSION}; run a newer build"
        )));
    }
    let mut ran = Vec::new();
    for &(version, name, sql) in MIGRATIONS {
        if applied.contains(&version) {
            continue;
        }
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO keypackage_schema_migrations (version, name) VALUES ($1, $2)",
            &[&version, &name],
        )
        .await?;
        ran.push(version);
    }
    tx.commit().await?;
    Ok(ran)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_in_order() {
        for (i, (version, _, sql)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(*version, i as i32 + 1);
            assert!(
                sql.starts_with("-- Version "),
                "migration {version} opens with its role"
            );
        }
        assert_eq!(SCHEMA_VERSION, MIGRATIONS.len() as i32);
    }
}
