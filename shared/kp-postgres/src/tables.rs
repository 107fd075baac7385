//! Row-level reads and writes of the three documents, and applying a
//! lifecycle [`Plan`]. Every function here runs on the transaction (or
//! connection) its caller passes; none commits.
//!
//! Lists of keys are bound as one `text[]` and matched with `= ANY($1)`, so
//! each statement has one fixed text (and stays in the connection's
//! statement cache) whatever the number of keys. Batch deletes pick their
//! rows into an array first (`= ANY(ARRAY(SELECT ...))`), which the planner
//! can only serve by looking each key up, never by joining whole tables.

use deadpool_postgres::GenericClient;
use kp_domain::rules::{Plan, RecordWrite};
use kp_domain::{AuditRecord, KeyPackageRecord, OwnerIndex};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_postgres::Row;
use tokio_postgres::types::{Json, ToSql};

use crate::error::DbError;

/// Every statement the backend runs on its tables, in one place, so a test
/// can check that each is served by an index.
pub mod sql {
    /// Creates the owner's row when it has none, so that there is a row to lock.
    pub const ENSURE_OWNER: &str = "\
        INSERT INTO keypackage_owners (owner, next_purge_at, body) VALUES ($1, 0, $2) \
        ON CONFLICT (owner) DO NOTHING";
    /// Locks the owner's row and reads its index: the lock every decision
    /// about the owner takes, held until the transaction ends.
    pub const LOCK_OWNER: &str = "SELECT body FROM keypackage_owners WHERE owner = $1 FOR UPDATE";
    /// One owner index, without locking it.
    pub const OWNER: &str = "SELECT body FROM keypackage_owners WHERE owner = $1";
    /// Rewrites a locked owner index.
    pub const PUT_OWNER: &str = "UPDATE keypackage_owners SET next_purge_at = $2, body = $3 WHERE owner = $1";
    /// One record.
    pub const RECORD: &str = "SELECT body FROM keypackages WHERE keypackage_ref = $1";
    /// Records holding any of an array of event ids.
    pub const RECORDS_BY_EVENT_IDS: &str = "\
        SELECT body FROM keypackages WHERE keypackage_ref IN ( \
        SELECT keypackage_ref FROM keypackage_events WHERE event_id = ANY($1))";
    /// Live records of an array of owners.
    pub const LIVE_RECORDS_OF_OWNERS: &str = "\
        SELECT body FROM keypackages \
        WHERE owner = ANY($1) AND state = 'available' AND expires_at > $2";
    /// Live records of an array of KeyPackageRefs.
    pub const LIVE_RECORDS_BY_REFS: &str = "\
        SELECT body FROM keypackages \
        WHERE keypackage_ref = ANY($1) AND state = 'available' AND expires_at > $2";
    /// Live records in an array of slots.
    pub const LIVE_RECORDS_BY_SLOTS: &str = "\
        SELECT body FROM keypackages \
        WHERE slot = ANY($1) AND state = 'available' AND expires_at > $2";
    /// The newest live records created up to a time.
    pub const RECENT_LIVE_RECORDS: &str = "\
        SELECT body FROM keypackages \
        WHERE state = 'available' AND created_at <= $1 AND expires_at > $2 \
        ORDER BY created_at DESC, keypackage_ref LIMIT $3";
    /// Writes a record row.
    pub const PUT_RECORD: &str = "\
        INSERT INTO keypackages \
        (keypackage_ref, owner, ciphersuite, last_resort, state, created_at, expires_at, purge_at, slot, body) \
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
        ON CONFLICT (keypackage_ref) DO UPDATE SET \
        owner = EXCLUDED.owner, ciphersuite = EXCLUDED.ciphersuite, last_resort = EXCLUDED.last_resort, \
        state = EXCLUDED.state, created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at, \
        purge_at = EXCLUDED.purge_at, slot = EXCLUDED.slot, body = EXCLUDED.body";
    /// Forgets a record's event ids other than an array of current ones.
    pub const DELETE_OLD_EVENTS: &str = "\
        DELETE FROM keypackage_events WHERE keypackage_ref = $1 AND NOT (event_id = ANY($2))";
    /// Maps an array of event ids to their KeyPackage.
    pub const PUT_EVENTS: &str = "\
        INSERT INTO keypackage_events (event_id, keypackage_ref) SELECT unnest($2::text[]), $1 \
        ON CONFLICT (event_id) DO UPDATE SET keypackage_ref = EXCLUDED.keypackage_ref";
    /// Adds an audit record.
    pub const INSERT_AUDIT: &str = "\
        INSERT INTO keypackage_audit (owner, keypackage_ref, at, expire_at, body) VALUES ($1, $2, $3, $4, $5)";
    /// An owner's audit records, oldest first.
    pub const AUDIT_OF_OWNER: &str = "\
        SELECT body FROM keypackage_audit WHERE owner = $1 ORDER BY at, keypackage_ref, id";
    /// Counts records cleanup may delete: expired available ones (whose
    /// `purge_at` is their `expires_at`), tombstones.
    pub const COUNT_PURGEABLE_RECORDS: &str = "\
        SELECT (SELECT count(*) FROM keypackages WHERE state = 'available' AND purge_at <= $1), \
        (SELECT count(*) FROM keypackages WHERE state <> 'available' AND purge_at <= $1)";
    /// Deletes a batch of expired available records (their event ids go
    /// with them), skipping rows a decision holds: it is about to rewrite
    /// them, and the next run will see what it wrote.
    pub const DELETE_EXPIRED_RECORDS: &str = "\
        DELETE FROM keypackages WHERE keypackage_ref = ANY(ARRAY( \
        SELECT keypackage_ref FROM keypackages WHERE state = 'available' AND purge_at <= $1 \
        ORDER BY purge_at LIMIT $2 FOR UPDATE SKIP LOCKED))";
    /// Deletes a batch of tombstones past their purge time, likewise.
    pub const DELETE_PURGEABLE_TOMBSTONES: &str = "\
        DELETE FROM keypackages WHERE keypackage_ref = ANY(ARRAY( \
        SELECT keypackage_ref FROM keypackages WHERE state <> 'available' AND purge_at <= $1 \
        ORDER BY purge_at LIMIT $2 FOR UPDATE SKIP LOCKED))";
    /// Locks a batch of owner indexes holding something expired, skipping
    /// those a decision holds (it prunes them itself as it rewrites them).
    pub const OWNERS_TO_PRUNE: &str = "\
        SELECT owner, body FROM keypackage_owners WHERE next_purge_at > 0 AND next_purge_at <= $1 \
        ORDER BY next_purge_at LIMIT $2 FOR UPDATE SKIP LOCKED";
    /// Deletes an owner index.
    pub const DELETE_OWNER: &str = "DELETE FROM keypackage_owners WHERE owner = $1";
    /// Counts audit records past retention.
    pub const COUNT_EXPIRED_AUDIT: &str = "SELECT count(*) FROM keypackage_audit WHERE expire_at <= $1";
    /// Deletes a batch of audit records past retention.
    pub const DELETE_EXPIRED_AUDIT: &str = "\
        DELETE FROM keypackage_audit WHERE id = ANY(ARRAY( \
        SELECT id FROM keypackage_audit WHERE expire_at <= $1 ORDER BY expire_at LIMIT $2 FOR UPDATE SKIP LOCKED))";
    /// Every record of one owner.
    pub const RECORDS_OF_OWNER: &str = "SELECT body FROM keypackages WHERE owner = $1";
    /// Remembers a used NIP-98 auth event (no-op when already there).
    pub const REMEMBER_AUTH: &str = "\
        INSERT INTO keypackage_auth (event_id, expire_at) VALUES ($1, $2) ON CONFLICT (event_id) DO NOTHING";
    /// Forgets auth events past their window.
    pub const DELETE_EXPIRED_AUTH: &str = "DELETE FROM keypackage_auth WHERE expire_at <= $1";

    /// All of them, by name.
    pub const ALL: &[(&str, &str)] = &[
        ("ENSURE_OWNER", ENSURE_OWNER),
        ("LOCK_OWNER", LOCK_OWNER),
        ("OWNER", OWNER),
        ("PUT_OWNER", PUT_OWNER),
        ("RECORD", RECORD),
        ("RECORDS_BY_EVENT_IDS", RECORDS_BY_EVENT_IDS),
        ("LIVE_RECORDS_OF_OWNERS", LIVE_RECORDS_OF_OWNERS),
        ("LIVE_RECORDS_BY_REFS", LIVE_RECORDS_BY_REFS),
        ("LIVE_RECORDS_BY_SLOTS", LIVE_RECORDS_BY_SLOTS),
        ("RECENT_LIVE_RECORDS", RECENT_LIVE_RECORDS),
        ("PUT_RECORD", PUT_RECORD),
        ("DELETE_OLD_EVENTS", DELETE_OLD_EVENTS),
        ("PUT_EVENTS", PUT_EVENTS),
        ("INSERT_AUDIT", INSERT_AUDIT),
        ("AUDIT_OF_OWNER", AUDIT_OF_OWNER),
        ("COUNT_PURGEABLE_RECORDS", COUNT_PURGEABLE_RECORDS),
        ("DELETE_EXPIRED_RECORDS", DELETE_EXPIRED_RECORDS),
        ("DELETE_PURGEABLE_TOMBSTONES", DELETE_PURGEABLE_TOMBSTONES),
        ("OWNERS_TO_PRUNE", OWNERS_TO_PRUNE),
        ("DELETE_OWNER", DELETE_OWNER),
        ("COUNT_EXPIRED_AUDIT", COUNT_EXPIRED_AUDIT),
        ("DELETE_EXPIRED_AUDIT", DELETE_EXPIRED_AUDIT),
        ("RECORDS_OF_OWNER", RECORDS_OF_OWNER),
        ("REMEMBER_AUTH", REMEMBER_AUTH),
        ("DELETE_EXPIRED_AUTH", DELETE_EXPIRED_AUTH),
    ];
}

/// A timestamp as PostgreSQL stores it. Times are far below `i64::MAX`;
/// clamping keeps a pathological `u64` ordered last instead of failing.
pub(crate) fn ts(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A `LIMIT` as PostgreSQL takes it.
fn limit(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A count PostgreSQL answered (never negative).
fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// A JSONB parameter. Serialising our own structs cannot fail short of a
/// bug, which then surfaces as `Corrupt` rather than a panic.
fn encode<T: Serialize>(value: &T) -> Result<Json<serde_json::Value>, DbError> {
    serde_json::to_value(value)
        .map(Json)
        .map_err(|e| DbError::corrupt(format!("cannot encode a document: {e}")))
}

/// A JSONB column read back as the struct it holds.
fn decode<T: DeserializeOwned>(row: &Row, column: usize, what: &str) -> Result<T, DbError> {
    let Json(body) = row
        .try_get::<_, Json<serde_json::Value>>(column)
        .map_err(DbError::undecodable)?;
    serde_json::from_value(body).map_err(|e| DbError::corrupt(format!("{what} does not decode: {e}")))
}

fn column<'a, T: tokio_postgres::types::FromSql<'a>>(row: &'a Row, column: usize) -> Result<T, DbError> {
    row.try_get(column).map_err(DbError::undecodable)
}

async fn rows<C: GenericClient>(
    client: &C,
    statement: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, DbError> {
    let statement = client.prepare_cached(statement).await?;
    Ok(client.query(&statement, params).await?)
}

async fn execute<C: GenericClient>(
    client: &C,
    statement: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, DbError> {
    let statement = client.prepare_cached(statement).await?;
    Ok(client.execute(&statement, params).await?)
}

/// Locks the owner's row, creating it when missing, and reads the index.
/// Every decision about the owner starts here, so two decisions about one
/// owner run one after the other and each reads what the other wrote. A row
/// created for a decision that then writes nothing goes away with the
/// rolled-back transaction.
pub(crate) async fn lock_owner<C: GenericClient>(client: &C, owner: &str) -> Result<OwnerIndex, DbError> {
    let empty = encode(&OwnerIndex::default())?;
    execute(client, sql::ENSURE_OWNER, &[&owner, &empty]).await?;
    let found = rows(client, sql::LOCK_OWNER, &[&owner]).await?;
    let row = found
        .first()
        .ok_or_else(|| DbError::corrupt(format!("owner index {owner} vanished while being locked")))?;
    decode(row, 0, &format!("owner index {owner}"))
}

/// The owner's index, if the owner has one, without locking it.
pub(crate) async fn owner<C: GenericClient>(client: &C, owner: &str) -> Result<Option<OwnerIndex>, DbError> {
    rows(client, sql::OWNER, &[&owner])
        .await?
        .first()
        .map(|row| decode(row, 0, &format!("owner index {owner}")))
        .transpose()
}

/// Rewrites the owner's index (whose row the caller holds locked).
pub(crate) async fn put_owner<C: GenericClient>(client: &C, owner: &str, index: &OwnerIndex) -> Result<(), DbError> {
    let written = execute(
        client,
        sql::PUT_OWNER,
        &[&owner, &ts(index.next_purge_at), &encode(index)?],
    )
    .await?;
    if written != 1 {
        return Err(DbError::corrupt(format!("owner index {owner} vanished while locked")));
    }
    Ok(())
}

async fn select_records<C: GenericClient>(
    client: &C,
    statement: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<KeyPackageRecord>, DbError> {
    rows(client, statement, params)
        .await?
        .iter()
        .map(|row| decode(row, 0, "a keypackage"))
        .collect()
}

/// One KeyPackage's record, whatever its state.
pub(crate) async fn record<C: GenericClient>(
    client: &C,
    keypackage_ref: &str,
) -> Result<Option<KeyPackageRecord>, DbError> {
    Ok(select_records(client, sql::RECORD, &[&keypackage_ref]).await?.pop())
}

/// The records holding any of `event_ids`, whatever their state (consume
/// and deletions tell tombstones from unknown events).
pub(crate) async fn records_by_event_ids<C: GenericClient>(
    client: &C,
    event_ids: &[String],
) -> Result<Vec<KeyPackageRecord>, DbError> {
    if event_ids.is_empty() {
        return Ok(Vec::new());
    }
    let records = select_records(client, sql::RECORDS_BY_EVENT_IDS, &[&event_ids]).await?;
    // The mapping is rewritten with each record, so this only drops rows a
    // foreign writer left behind; `event_ids` is the truth, as in Firestore.
    Ok(records
        .into_iter()
        .filter(|r| r.event_ids.iter().any(|id| event_ids.contains(id)))
        .collect())
}

/// Available, unexpired records of these owners.
pub(crate) async fn live_records_of_owners<C: GenericClient>(
    client: &C,
    owners: &[String],
    now: u64,
) -> Result<Vec<KeyPackageRecord>, DbError> {
    select_records(client, sql::LIVE_RECORDS_OF_OWNERS, &[&owners, &ts(now)]).await
}

/// Available, unexpired records with these KeyPackageRefs.
pub(crate) async fn live_records_by_refs<C: GenericClient>(
    client: &C,
    refs: &[String],
    now: u64,
) -> Result<Vec<KeyPackageRecord>, DbError> {
    select_records(client, sql::LIVE_RECORDS_BY_REFS, &[&refs, &ts(now)]).await
}

/// Available, unexpired records holding any of these event ids.
pub(crate) async fn live_records_by_event_ids<C: GenericClient>(
    client: &C,
    event_ids: &[String],
    now: u64,
) -> Result<Vec<KeyPackageRecord>, DbError> {
    Ok(records_by_event_ids(client, event_ids)
        .await?
        .into_iter()
        .filter(|r| r.is_live(now))
        .collect())
}

/// Available, unexpired records in these 30443 slots.
pub(crate) async fn live_records_by_slots<C: GenericClient>(
    client: &C,
    slots: &[String],
    now: u64,
) -> Result<Vec<KeyPackageRecord>, DbError> {
    select_records(client, sql::LIVE_RECORDS_BY_SLOTS, &[&slots, &ts(now)]).await
}

/// The newest available, unexpired records created up to `until`, newest
/// first by their earliest event (the Firestore backend's `RecentAvailable`,
/// which also cannot narrow by `since`: a twin created later may match it).
pub(crate) async fn recent_live_records<C: GenericClient>(
    client: &C,
    until: Option<u64>,
    max: usize,
    now: u64,
) -> Result<Vec<KeyPackageRecord>, DbError> {
    select_records(
        client,
        sql::RECENT_LIVE_RECORDS,
        &[&ts(until.unwrap_or(u64::MAX)), &ts(now), &limit(max)],
    )
    .await
}

/// Writes a record's row (not its event-id mapping).
async fn put_record_row<C: GenericClient>(client: &C, record: &KeyPackageRecord) -> Result<(), DbError> {
    execute(
        client,
        sql::PUT_RECORD,
        &[
            &record.keypackage_ref,
            &record.owner,
            &i32::from(record.ciphersuite),
            &record.last_resort,
            &record.state.as_str(),
            &ts(record.created_at),
            &ts(record.expires_at),
            &ts(record.purge_at),
            &record.slot,
            &encode(record)?,
        ],
    )
    .await?;
    Ok(())
}

/// Writes a whole record and makes its event-id mapping equal its `event_ids`.
async fn put_record<C: GenericClient>(client: &C, record: &KeyPackageRecord) -> Result<(), DbError> {
    put_record_row(client, record).await?;
    // A Put may restart an expired record with fresh events; ids of the old
    // ones must stop leading here, as they stop matching in Firestore.
    execute(
        client,
        sql::DELETE_OLD_EVENTS,
        &[&record.keypackage_ref, &record.event_ids],
    )
    .await?;
    execute(client, sql::PUT_EVENTS, &[&record.keypackage_ref, &record.event_ids]).await?;
    Ok(())
}

/// Rewrites a stored record in place (a retirement or a last resort's use).
/// The caller holds the owner's lock, and every writer of the record takes
/// it first, so nothing changes the record between this read and write.
async fn update_record<C: GenericClient>(
    client: &C,
    keypackage_ref: &str,
    change: impl FnOnce(&mut KeyPackageRecord),
) -> Result<(), DbError> {
    let mut stored = record(client, keypackage_ref)
        .await?
        .ok_or_else(|| DbError::corrupt(format!("owner index names missing keypackage {keypackage_ref}")))?;
    change(&mut stored);
    put_record_row(client, &stored).await
}

async fn insert_audit<C: GenericClient>(client: &C, audit: &AuditRecord) -> Result<(), DbError> {
    execute(
        client,
        sql::INSERT_AUDIT,
        &[
            &audit.owner,
            &audit.keypackage_ref,
            &ts(audit.at),
            &ts(audit.expire_at),
            &encode(audit)?,
        ],
    )
    .await?;
    Ok(())
}

/// Writes everything one decision about `owner` decided, as the Firestore
/// backend's commit does: the owner index, the record changes, the audit.
pub(crate) async fn apply_plan<C: GenericClient>(client: &C, owner: &str, plan: &Plan) -> Result<(), DbError> {
    put_owner(client, owner, &plan.owner).await?;
    for write in &plan.records {
        match write {
            RecordWrite::Put(record) => put_record(client, record).await?,
            RecordWrite::Retire(retirement) => {
                update_record(client, &retirement.keypackage_ref, |record| retirement.apply(record)).await?
            }
            RecordWrite::RecordUse {
                keypackage_ref,
                use_count,
                last_used_at,
            } => {
                update_record(client, keypackage_ref, |record| {
                    record.use_count = *use_count;
                    record.last_used_at = Some(*last_used_at);
                })
                .await?
            }
        }
    }
    for audit in &plan.audit {
        insert_audit(client, audit).await?;
    }
    Ok(())
}

/// The owner's audit records, oldest first (ties by KeyPackageRef, then
/// insertion order).
pub(crate) async fn audit_of<C: GenericClient>(client: &C, owner: &str) -> Result<Vec<AuditRecord>, DbError> {
    rows(client, sql::AUDIT_OF_OWNER, &[&owner])
        .await?
        .iter()
        .map(|row| decode(row, 0, &format!("an audit record of {owner}")))
        .collect()
}

/// How many records cleanup may delete at `now`: (available, tombstones).
pub(crate) async fn count_purgeable_records<C: GenericClient>(client: &C, now: u64) -> Result<(u64, u64), DbError> {
    let found = rows(client, sql::COUNT_PURGEABLE_RECORDS, &[&ts(now)]).await?;
    let row = found
        .first()
        .ok_or_else(|| DbError::corrupt("a count answered no row"))?;
    Ok((count(column(row, 0)?), count(column(row, 1)?)))
}

/// Deletes up to `max` expired available records; answers how many.
pub(crate) async fn delete_expired_records<C: GenericClient>(client: &C, now: u64, max: usize) -> Result<u64, DbError> {
    execute(client, sql::DELETE_EXPIRED_RECORDS, &[&ts(now), &limit(max)]).await
}

/// Deletes up to `max` tombstones past their purge time; answers how many.
pub(crate) async fn delete_purgeable_tombstones<C: GenericClient>(
    client: &C,
    now: u64,
    max: usize,
) -> Result<u64, DbError> {
    execute(client, sql::DELETE_PURGEABLE_TOMBSTONES, &[&ts(now), &limit(max)]).await
}

/// Prunes up to `max` owner indexes holding something expired at `now`;
/// deletes those left empty. Answers how many it pruned.
pub(crate) async fn prune_owners<C: GenericClient>(client: &C, now: u64, max: usize) -> Result<usize, DbError> {
    let found = rows(client, sql::OWNERS_TO_PRUNE, &[&ts(now), &limit(max)]).await?;
    for row in &found {
        let owner: String = column(row, 0)?;
        let mut index: OwnerIndex = decode(row, 1, &format!("owner index {owner}"))?;
        index.prune(now);
        if index.is_empty() {
            execute(client, sql::DELETE_OWNER, &[&owner]).await?;
        } else {
            put_owner(client, &owner, &index).await?;
        }
    }
    Ok(found.len())
}

/// Every record of `owner`, whatever its state.
pub(crate) async fn records_of_owner<C: GenericClient>(
    client: &C,
    owner: &str,
) -> Result<Vec<KeyPackageRecord>, DbError> {
    select_records(client, sql::RECORDS_OF_OWNER, &[&owner]).await
}

/// Remembers an auth event; `false` when it was already remembered. One
/// statement: of two callers racing with the same event, the second waits
/// for the first's row and then finds it.
pub(crate) async fn remember_auth<C: GenericClient>(
    client: &C,
    event_id: &str,
    expire_at: u64,
) -> Result<bool, DbError> {
    Ok(execute(client, sql::REMEMBER_AUTH, &[&event_id, &ts(expire_at)]).await? == 1)
}

/// Forgets auth events whose window has passed; answers how many.
pub(crate) async fn delete_expired_auth<C: GenericClient>(client: &C, now: u64) -> Result<u64, DbError> {
    execute(client, sql::DELETE_EXPIRED_AUTH, &[&ts(now)]).await
}

/// How many audit records are past retention at `now`.
pub(crate) async fn count_expired_audit<C: GenericClient>(client: &C, now: u64) -> Result<u64, DbError> {
    let found = rows(client, sql::COUNT_EXPIRED_AUDIT, &[&ts(now)]).await?;
    let row = found
        .first()
        .ok_or_else(|| DbError::corrupt("a count answered no row"))?;
    Ok(count(column(row, 0)?))
}

/// Deletes up to `max` audit records past retention; answers how many.
pub(crate) async fn delete_expired_audit<C: GenericClient>(client: &C, now: u64, max: usize) -> Result<u64, DbError> {
    execute(client, sql::DELETE_EXPIRED_AUDIT, &[&ts(now), &limit(max)]).await
}

#[cfg(test)]
mod tests {
    use kp_domain::KeyPackageState;

    #[test]
    fn the_sql_spells_the_available_state_as_records_do() {
        // The statements and the schema compare `state` with 'available'.
        assert_eq!(KeyPackageState::Available.as_str(), "available");
    }
}
