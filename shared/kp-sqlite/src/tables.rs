//! Row-level reads and writes of the three documents, and applying a
//! lifecycle [`Plan`]. Every function here runs inside a transaction its
//! caller opened; none commits.
//!
//! Lists of keys are bound as one JSON array and expanded with `json_each`,
//! so each statement has one fixed text (and stays in the statement cache)
//! whatever the number of keys.

use kp_domain::rules::{Plan, RecordWrite};
use kp_domain::{AuditRecord, KeyPackageRecord, OwnerIndex};
use rusqlite::{Connection, OptionalExtension as _, Params};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::DbError;

/// Every statement the backend runs on its tables, in one place, so a test
/// can check that each is served by an index.
///
/// A unary `+` keeps a column's index out of the planner's reach: without
/// statistics SQLite would otherwise walk every available record through
/// the `state` index instead of looking the few named keys up.
pub(crate) mod sql {
    /// One owner index.
    pub(crate) const OWNER: &str = "SELECT body FROM keypackage_owners WHERE owner = ?1";
    /// Writes an owner index.
    pub(crate) const PUT_OWNER: &str = "\
        INSERT INTO keypackage_owners (owner, next_purge_at, body) VALUES (?1, ?2, ?3) \
        ON CONFLICT (owner) DO UPDATE SET next_purge_at = excluded.next_purge_at, body = excluded.body";
    /// One record.
    pub(crate) const RECORD: &str = "\
        SELECT keypackage_ref, body FROM keypackages WHERE keypackage_ref = ?1";
    /// Records holding any of a JSON array of event ids.
    pub(crate) const RECORDS_BY_EVENT_IDS: &str = "\
        SELECT keypackage_ref, body FROM keypackages WHERE keypackage_ref IN ( \
        SELECT keypackage_ref FROM keypackage_events WHERE event_id IN (SELECT value FROM json_each(?1)))";
    /// Live records of a JSON array of owners.
    pub(crate) const LIVE_RECORDS_OF_OWNERS: &str = "\
        SELECT keypackage_ref, body FROM keypackages \
        WHERE owner IN (SELECT value FROM json_each(?1)) AND state = 'available' AND expires_at > ?2";
    /// Live records of a JSON array of KeyPackageRefs.
    pub(crate) const LIVE_RECORDS_BY_REFS: &str = "\
        SELECT keypackage_ref, body FROM keypackages \
        WHERE keypackage_ref IN (SELECT value FROM json_each(?1)) AND +state = 'available' AND +expires_at > ?2";
    /// Live records in a JSON array of slots.
    pub(crate) const LIVE_RECORDS_BY_SLOTS: &str = "\
        SELECT keypackage_ref, body FROM keypackages \
        WHERE slot IN (SELECT value FROM json_each(?1)) AND +state = 'available' AND +expires_at > ?2";
    /// The newest live records created up to a time.
    pub(crate) const RECENT_LIVE_RECORDS: &str = "\
        SELECT keypackage_ref, body FROM keypackages \
        WHERE state = 'available' AND created_at <= ?1 AND expires_at > ?2 \
        ORDER BY created_at DESC, keypackage_ref LIMIT ?3";
    /// Writes a record row.
    pub(crate) const PUT_RECORD: &str = "\
        INSERT INTO keypackages (keypackage_ref, owner, state, created_at, expires_at, purge_at, slot, body) \
        VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
        ON CONFLICT (keypackage_ref) DO UPDATE SET \
        owner = excluded.owner, state = excluded.state, created_at = excluded.created_at, \
        expires_at = excluded.expires_at, purge_at = excluded.purge_at, slot = excluded.slot, \
        body = excluded.body";
    /// Forgets a record's event ids.
    pub(crate) const DELETE_EVENTS: &str = "DELETE FROM keypackage_events WHERE keypackage_ref = ?1";
    /// Maps an event id to its KeyPackage.
    pub(crate) const PUT_EVENT: &str = "\
        INSERT OR REPLACE INTO keypackage_events (event_id, keypackage_ref) VALUES (?1, ?2)";
    /// Adds an audit record.
    pub(crate) const INSERT_AUDIT: &str = "\
        INSERT INTO keypackage_audit (owner, keypackage_ref, at, expire_at, body) VALUES (?1, ?2, ?3, ?4, ?5)";
    /// An owner's audit records, oldest first.
    pub(crate) const AUDIT_OF_OWNER: &str = "\
        SELECT id, body FROM keypackage_audit WHERE owner = ?1 ORDER BY at, keypackage_ref, id";
    /// Counts records cleanup may delete, available and not.
    pub(crate) const COUNT_PURGEABLE_RECORDS: &str = "\
        SELECT COALESCE(SUM(state = 'available'), 0), COALESCE(SUM(state <> 'available'), 0) \
        FROM keypackages WHERE purge_at <= ?1";
    /// A batch of records cleanup may delete.
    pub(crate) const PURGEABLE_RECORDS: &str = "\
        SELECT keypackage_ref, state = 'available' FROM keypackages WHERE purge_at <= ?1 \
        ORDER BY purge_at LIMIT ?2";
    /// Deletes a record row.
    pub(crate) const DELETE_RECORD: &str = "DELETE FROM keypackages WHERE keypackage_ref = ?1";
    /// A batch of owner indexes holding something expired.
    pub(crate) const OWNERS_TO_PRUNE: &str = "\
        SELECT owner, body FROM keypackage_owners WHERE next_purge_at > 0 AND next_purge_at <= ?1 \
        ORDER BY next_purge_at LIMIT ?2";
    /// Deletes an owner index.
    pub(crate) const DELETE_OWNER: &str = "DELETE FROM keypackage_owners WHERE owner = ?1";
    /// Counts audit records past retention.
    pub(crate) const COUNT_EXPIRED_AUDIT: &str = "SELECT COUNT(*) FROM keypackage_audit WHERE expire_at <= ?1";
    /// Deletes a batch of audit records past retention.
    pub(crate) const DELETE_EXPIRED_AUDIT: &str = "\
        DELETE FROM keypackage_audit WHERE id IN ( \
        SELECT id FROM keypackage_audit WHERE expire_at <= ?1 ORDER BY expire_at LIMIT ?2)";

    /// Every record of one owner.
    pub(crate) const RECORDS_OF_OWNER: &str = "\
        SELECT keypackage_ref, body FROM keypackages WHERE owner = ?1";
    /// Remembers a used NIP-98 auth event (no-op when already there).
    pub(crate) const REMEMBER_AUTH: &str = "\
        INSERT OR IGNORE INTO keypackage_auth (event_id, expire_at) VALUES (?1, ?2)";
    /// Forgets auth events past their window.
    pub(crate) const DELETE_EXPIRED_AUTH: &str = "DELETE FROM keypackage_auth WHERE expire_at <= ?1";

    /// All of them, by name.
    #[cfg(test)]
    pub(crate) const ALL: &[(&str, &str)] = &[
        ("OWNER", OWNER),
        ("PUT_OWNER", PUT_OWNER),
        ("RECORD", RECORD),
        ("RECORDS_BY_EVENT_IDS", RECORDS_BY_EVENT_IDS),
        ("LIVE_RECORDS_OF_OWNERS", LIVE_RECORDS_OF_OWNERS),
        ("LIVE_RECORDS_BY_REFS", LIVE_RECORDS_BY_REFS),
        ("LIVE_RECORDS_BY_SLOTS", LIVE_RECORDS_BY_SLOTS),
        ("RECENT_LIVE_RECORDS", RECENT_LIVE_RECORDS),
        ("PUT_RECORD", PUT_RECORD),
        ("DELETE_EVENTS", DELETE_EVENTS),
        ("PUT_EVENT", PUT_EVENT),
        ("INSERT_AUDIT", INSERT_AUDIT),
        ("AUDIT_OF_OWNER", AUDIT_OF_OWNER),
        ("COUNT_PURGEABLE_RECORDS", COUNT_PURGEABLE_RECORDS),
        ("PURGEABLE_RECORDS", PURGEABLE_RECORDS),
        ("DELETE_RECORD", DELETE_RECORD),
        ("OWNERS_TO_PRUNE", OWNERS_TO_PRUNE),
        ("DELETE_OWNER", DELETE_OWNER),
        ("COUNT_EXPIRED_AUDIT", COUNT_EXPIRED_AUDIT),
        ("DELETE_EXPIRED_AUDIT", DELETE_EXPIRED_AUDIT),
        ("RECORDS_OF_OWNER", RECORDS_OF_OWNER),
        ("REMEMBER_AUTH", REMEMBER_AUTH),
        ("DELETE_EXPIRED_AUTH", DELETE_EXPIRED_AUTH),
    ];
}

/// A timestamp as SQLite stores it. Times are far below `i64::MAX`; clamping
/// keeps a pathological `u64` ordered last instead of failing the write.
pub(crate) fn ts(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A count SQLite answered (never negative).
fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn encode<T: Serialize>(value: &T) -> Result<String, DbError> {
    serde_json::to_string(value).map_err(|e| DbError::corrupt(format!("cannot encode a document: {e}")))
}

fn decode<T: DeserializeOwned>(what: &str, key: &str, body: &str) -> Result<T, DbError> {
    serde_json::from_str(body).map_err(|e| DbError::corrupt(format!("{what} {key} does not decode: {e}")))
}

fn json_list(keys: &[String]) -> Result<String, DbError> {
    encode(&keys)
}

/// The owner's index, if the owner has one.
pub(crate) fn owner(conn: &Connection, owner: &str) -> Result<Option<OwnerIndex>, DbError> {
    let body: Option<String> = conn
        .prepare_cached(sql::OWNER)?
        .query_row([owner], |row| row.get(0))
        .optional()?;
    body.map(|body| decode("owner index", owner, &body)).transpose()
}

/// Writes the owner's index (the lock every decision about the owner takes).
pub(crate) fn put_owner(conn: &Connection, owner: &str, index: &OwnerIndex) -> Result<(), DbError> {
    conn.prepare_cached(sql::PUT_OWNER)?
        .execute((owner, ts(index.next_purge_at), encode(index)?))?;
    Ok(())
}

fn select_records<P: Params>(conn: &Connection, sql: &str, params: P) -> Result<Vec<KeyPackageRecord>, DbError> {
    let mut statement = conn.prepare_cached(sql)?;
    let mut rows = statement.query(params)?;
    let mut records = Vec::new();
    while let Some(row) = rows.next()? {
        let key: String = row.get(0)?;
        let body: String = row.get(1)?;
        records.push(decode("keypackage", &key, &body)?);
    }
    Ok(records)
}

/// One KeyPackage's record, whatever its state.
pub(crate) fn record(conn: &Connection, keypackage_ref: &str) -> Result<Option<KeyPackageRecord>, DbError> {
    Ok(select_records(conn, sql::RECORD, [keypackage_ref])?.pop())
}

/// The records holding any of `event_ids`, whatever their state (consume
/// and deletions tell tombstones from unknown events).
pub(crate) fn records_by_event_ids(conn: &Connection, event_ids: &[String]) -> Result<Vec<KeyPackageRecord>, DbError> {
    if event_ids.is_empty() {
        return Ok(Vec::new());
    }
    let records = select_records(conn, sql::RECORDS_BY_EVENT_IDS, [json_list(event_ids)?])?;
    // The mapping is rewritten with each record, so this only drops rows a
    // foreign writer left behind; `event_ids` is the truth, as in Firestore.
    Ok(records
        .into_iter()
        .filter(|r| r.event_ids.iter().any(|id| event_ids.contains(id)))
        .collect())
}

/// Available, unexpired records of these owners.
pub(crate) fn live_records_of_owners(
    conn: &Connection,
    owners: &[String],
    now: u64,
) -> Result<Vec<KeyPackageRecord>, DbError> {
    select_records(conn, sql::LIVE_RECORDS_OF_OWNERS, (json_list(owners)?, ts(now)))
}

/// Available, unexpired records with these KeyPackageRefs.
pub(crate) fn live_records_by_refs(
    conn: &Connection,
    refs: &[String],
    now: u64,
) -> Result<Vec<KeyPackageRecord>, DbError> {
    select_records(conn, sql::LIVE_RECORDS_BY_REFS, (json_list(refs)?, ts(now)))
}

/// Available, unexpired records holding any of these event ids.
pub(crate) fn live_records_by_event_ids(
    conn: &Connection,
    event_ids: &[String],
    now: u64,
) -> Result<Vec<KeyPackageRecord>, DbError> {
    Ok(records_by_event_ids(conn, event_ids)?
        .into_iter()
        .filter(|r| r.is_live(now))
        .collect())
}

/// Available, unexpired records in these 30443 slots.
pub(crate) fn live_records_by_slots(
    conn: &Connection,
    slots: &[String],
    now: u64,
) -> Result<Vec<KeyPackageRecord>, DbError> {
    select_records(conn, sql::LIVE_RECORDS_BY_SLOTS, (json_list(slots)?, ts(now)))
}

/// The newest available, unexpired records created up to `until`, newest
/// first by their earliest event (the Firestore backend's `RecentAvailable`,
/// which also cannot narrow by `since`: a twin created later may match it).
pub(crate) fn recent_live_records(
    conn: &Connection,
    until: Option<u64>,
    limit: usize,
    now: u64,
) -> Result<Vec<KeyPackageRecord>, DbError> {
    select_records(
        conn,
        sql::RECENT_LIVE_RECORDS,
        (
            ts(until.unwrap_or(u64::MAX)),
            ts(now),
            i64::try_from(limit).unwrap_or(i64::MAX),
        ),
    )
}

/// Writes a record's row (not its event-id mapping).
fn put_record_row(conn: &Connection, record: &KeyPackageRecord) -> Result<(), DbError> {
    conn.prepare_cached(sql::PUT_RECORD)?.execute((
        &record.keypackage_ref,
        &record.owner,
        record.state.as_str(),
        ts(record.created_at),
        ts(record.expires_at),
        ts(record.purge_at),
        &record.slot,
        encode(record)?,
    ))?;
    Ok(())
}

/// Writes a whole record and makes its event-id mapping equal its `event_ids`.
fn put_record(conn: &Connection, record: &KeyPackageRecord) -> Result<(), DbError> {
    put_record_row(conn, record)?;
    // A Put may restart an expired record with fresh events; ids of the old
    // ones must stop leading here, as they stop matching in Firestore.
    conn.prepare_cached(sql::DELETE_EVENTS)?
        .execute([&record.keypackage_ref])?;
    let mut insert = conn.prepare_cached(sql::PUT_EVENT)?;
    for event_id in &record.event_ids {
        insert.execute((event_id, &record.keypackage_ref))?;
    }
    Ok(())
}

/// Rewrites a stored record in place (a retirement or a last resort's use).
fn update_record(
    conn: &Connection,
    keypackage_ref: &str,
    change: impl FnOnce(&mut KeyPackageRecord),
) -> Result<(), DbError> {
    let mut stored = record(conn, keypackage_ref)?
        .ok_or_else(|| DbError::corrupt(format!("owner index names missing keypackage {keypackage_ref}")))?;
    change(&mut stored);
    put_record_row(conn, &stored)
}

fn insert_audit(conn: &Connection, audit: &AuditRecord) -> Result<(), DbError> {
    conn.prepare_cached(sql::INSERT_AUDIT)?.execute((
        &audit.owner,
        &audit.keypackage_ref,
        ts(audit.at),
        ts(audit.expire_at),
        encode(audit)?,
    ))?;
    Ok(())
}

/// Writes everything one decision about `owner` decided, as the Firestore
/// backend's commit does: the owner index, the record changes, the audit.
pub(crate) fn apply_plan(conn: &Connection, owner: &str, plan: &Plan) -> Result<(), DbError> {
    put_owner(conn, owner, &plan.owner)?;
    for write in &plan.records {
        match write {
            RecordWrite::Put(record) => put_record(conn, record)?,
            RecordWrite::Retire(retirement) => {
                update_record(conn, &retirement.keypackage_ref, |record| retirement.apply(record))?
            }
            RecordWrite::RecordUse {
                keypackage_ref,
                use_count,
                last_used_at,
            } => update_record(conn, keypackage_ref, |record| {
                record.use_count = *use_count;
                record.last_used_at = Some(*last_used_at);
            })?,
        }
    }
    for audit in &plan.audit {
        insert_audit(conn, audit)?;
    }
    Ok(())
}

/// The owner's audit records, oldest first (ties by KeyPackageRef, then
/// insertion order).
pub(crate) fn audit_of(conn: &Connection, owner: &str) -> Result<Vec<AuditRecord>, DbError> {
    let mut statement = conn.prepare_cached(sql::AUDIT_OF_OWNER)?;
    let mut rows = statement.query([owner])?;
    let mut records = Vec::new();
    while let Some(row) = rows.next()? {
        let id: i64 = row.get(0)?;
        let body: String = row.get(1)?;
        records.push(decode("audit record", &id.to_string(), &body)?);
    }
    Ok(records)
}

/// How many records cleanup may delete at `now`: (available, tombstones).
pub(crate) fn count_purgeable_records(conn: &Connection, now: u64) -> Result<(u64, u64), DbError> {
    Ok(conn
        .prepare_cached(sql::COUNT_PURGEABLE_RECORDS)?
        .query_row([ts(now)], |row| Ok((count(row.get(0)?), count(row.get(1)?))))?)
}

/// Deletes up to `limit` records cleanup may delete at `now`, with their
/// event-id mappings. Answers (available deleted, tombstones deleted, rows seen).
pub(crate) fn delete_purgeable_records(
    conn: &Connection,
    now: u64,
    limit: usize,
) -> Result<(u64, u64, usize), DbError> {
    let found: Vec<(String, bool)> = conn
        .prepare_cached(sql::PURGEABLE_RECORDS)?
        .query_map((ts(now), i64::try_from(limit).unwrap_or(i64::MAX)), |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?
        .collect::<Result<_, _>>()?;
    let mut delete_record = conn.prepare_cached(sql::DELETE_RECORD)?;
    let mut delete_events = conn.prepare_cached(sql::DELETE_EVENTS)?;
    let (mut available, mut tombstones) = (0, 0);
    for (keypackage_ref, is_available) in &found {
        delete_record.execute([keypackage_ref])?;
        delete_events.execute([keypackage_ref])?;
        if *is_available {
            available += 1;
        } else {
            tombstones += 1;
        }
    }
    Ok((available, tombstones, found.len()))
}

/// Prunes up to `limit` owner indexes holding something expired at `now`;
/// deletes those left empty. Answers how many it pruned.
pub(crate) fn prune_owners(conn: &Connection, now: u64, limit: usize) -> Result<usize, DbError> {
    let found: Vec<(String, String)> = conn
        .prepare_cached(sql::OWNERS_TO_PRUNE)?
        .query_map((ts(now), i64::try_from(limit).unwrap_or(i64::MAX)), |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?
        .collect::<Result<_, _>>()?;
    for (owner, body) in &found {
        let mut index: OwnerIndex = decode("owner index", owner, body)?;
        index.prune(now);
        if index.is_empty() {
            conn.prepare_cached(sql::DELETE_OWNER)?.execute([owner])?;
        } else {
            put_owner(conn, owner, &index)?;
        }
    }
    Ok(found.len())
}

/// Every record of `owner`, whatever its state.
pub(crate) fn records_of_owner(conn: &Connection, owner: &str) -> Result<Vec<KeyPackageRecord>, DbError> {
    select_records(conn, sql::RECORDS_OF_OWNER, [owner])
}

/// Remembers an auth event; `false` when it was already remembered.
pub(crate) fn remember_auth(conn: &Connection, event_id: &str, expire_at: u64) -> Result<bool, DbError> {
    Ok(conn
        .prepare_cached(sql::REMEMBER_AUTH)?
        .execute((event_id, ts(expire_at)))?
        == 1)
}

/// Forgets auth events whose window has passed.
pub(crate) fn delete_expired_auth(conn: &Connection, now: u64) -> Result<usize, DbError> {
    Ok(conn.prepare_cached(sql::DELETE_EXPIRED_AUTH)?.execute([ts(now)])?)
}

/// How many audit records are past retention at `now`.
pub(crate) fn count_expired_audit(conn: &Connection, now: u64) -> Result<u64, DbError> {
    Ok(conn
        .prepare_cached(sql::COUNT_EXPIRED_AUDIT)?
        .query_row([ts(now)], |row| row.get(0).map(count))?)
}

/// Deletes up to `limit` audit records past retention; answers how many.
pub(crate) fn delete_expired_audit(conn: &Connection, now: u64, limit: usize) -> Result<usize, DbError> {
    Ok(conn
        .prepare_cached(sql::DELETE_EXPIRED_AUDIT)?
        .execute((ts(now), i64::try_from(limit).unwrap_or(i64::MAX)))?)
}

#[cfg(test)]
mod tests {
    use kp_domain::KeyPackageState;
    use rusqlite::Connection;

    use super::sql;

    /// The query plan of one statement, one step a line.
    fn plan(conn: &Connection, statement: &str) -> Vec<String> {
        let mut explain = conn.prepare(&format!("EXPLAIN QUERY PLAN {statement}")).unwrap();
        // Plans do not depend on the values; NULLs fill every parameter.
        let nulls = vec![rusqlite::types::Null; explain.parameter_count()];
        explain
            .query_map(rusqlite::params_from_iter(nulls), |row| row.get::<_, String>(3))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    #[test]
    fn every_statement_is_served_by_an_index() {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::schema::migrate(&mut conn).unwrap();
        for (name, statement) in sql::ALL {
            let steps = plan(&conn, statement);
            println!("{name}: {steps:?}");
            for step in &steps {
                // Scanning json_each walks the keys a caller passed; scanning
                // a table or sorting in a temporary tree grows with the data.
                let full_scan = step.starts_with("SCAN ") && !step.starts_with("SCAN json_each");
                assert!(
                    !full_scan && !step.contains("TEMP B-TREE"),
                    "{name}: {step} in {steps:?}"
                );
            }
        }
    }

    #[test]
    fn the_sql_spells_the_available_state_as_records_do() {
        // The statements above compare `state` with the literal 'available'.
        assert_eq!(KeyPackageState::Available.as_str(), "available");
    }
}
