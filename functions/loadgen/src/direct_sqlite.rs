//! The SQLite baseline: the same rows the SQLite backend writes, read and
//! written with `rusqlite` alone, in transactions of the same shape (one
//! `BEGIN IMMEDIATE` per decision: read the owner index, read the record,
//! write the index, the record and its event ids), on a file with the same
//! pragmas. No HTTP, no validation, no backend code. The lifecycle
//! decision itself is the domain's pure `rules` function, which both sides
//! share (microseconds).

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use kp_domain::limits::Claimant;
use kp_domain::rules::{self, IngestDecision, Plan, RecordWrite};
use kp_domain::{ConsumedVia, KeyPackageEvent, KeyPackageRecord, OwnerIndex, Policy};
use rusqlite::{Connection, OptionalExtension as _, TransactionBehavior};

use crate::target::Target;

const OWNER: &str = "SELECT body FROM keypackage_owners WHERE owner = ?1";
const PUT_OWNER: &str = "INSERT INTO keypackage_owners (owner, next_purge_at, body) VALUES (?1, ?2, ?3) \
    ON CONFLICT (owner) DO UPDATE SET next_purge_at = excluded.next_purge_at, body = excluded.body";
const RECORD: &str = "SELECT body FROM keypackages WHERE keypackage_ref = ?1";
const LIVE_RECORDS_OF_OWNER: &str = "SELECT body FROM keypackages \
    WHERE owner = ?1 AND state = 'available' AND expires_at > ?2";
const PUT_RECORD: &str = "INSERT INTO keypackages \
    (keypackage_ref, owner, state, created_at, expires_at, purge_at, slot, body) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (keypackage_ref) DO UPDATE SET \
    owner = excluded.owner, state = excluded.state, created_at = excluded.created_at, \
    expires_at = excluded.expires_at, purge_at = excluded.purge_at, slot = excluded.slot, body = excluded.body";
const DELETE_EVENTS: &str = "DELETE FROM keypackage_events WHERE keypackage_ref = ?1";
const PUT_EVENT: &str = "INSERT OR REPLACE INTO keypackage_events (event_id, keypackage_ref) VALUES (?1, ?2)";
const INSERT_AUDIT: &str =
    "INSERT INTO keypackage_audit (owner, keypackage_ref, at, expire_at, body) VALUES (?1, ?2, ?3, ?4, ?5)";
const PURGEABLE: &str = "SELECT keypackage_ref FROM keypackages WHERE purge_at <= ?1 ORDER BY purge_at LIMIT ?2";
const DELETE_RECORD: &str = "DELETE FROM keypackages WHERE keypackage_ref = ?1";

/// Connections to one database file: one writer, as the backend's writers
/// take turns, and readers beside it (WAL).
#[derive(Clone)]
pub struct DirectSqlite {
    writer: Arc<Mutex<Connection>>,
    readers: Arc<Vec<Mutex<Connection>>>,
    policy: Policy,
    events: Arc<Vec<KeyPackageEvent>>,
}

fn open(path: &Path) -> anyhow::Result<Connection> {
    let connection = Connection::open(path)?;
    connection.busy_timeout(std::time::Duration::from_secs(5))?;
    let _mode: String = connection.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    connection.pragma_update(None, "synchronous", "FULL")?;
    Ok(connection)
}

fn ts(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl DirectSqlite {
    /// Opens `path`, creating the backend's schema first (through the
    /// backend, so both sides write the same tables and indexes).
    pub fn open(path: &Path, policy: Policy, events: Arc<Vec<KeyPackageEvent>>) -> anyhow::Result<Self> {
        drop(kp_sqlite::SqliteStore::open(
            kp_sqlite::SqlitePath::File(path.to_owned()),
            policy.clone(),
        )?);
        Ok(Self {
            writer: Arc::new(Mutex::new(open(path)?)),
            readers: Arc::new((0..3).map(|_| open(path).map(Mutex::new)).collect::<Result<_, _>>()?),
            policy,
            events,
        })
    }

    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection, &Policy) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let (writer, policy) = (self.writer.clone(), self.policy.clone());
        tokio::task::spawn_blocking(move || {
            let mut connection = writer.lock().expect("writer lock");
            let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let value = f(&tx, &policy)?;
            tx.commit()?;
            Ok(value)
        })
        .await?
    }

    async fn read<T: Send + 'static>(
        &self,
        key: &str,
        f: impl FnOnce(&Connection) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let readers = self.readers.clone();
        let slot = key.bytes().map(usize::from).sum::<usize>() % readers.len();
        tokio::task::spawn_blocking(move || {
            let mut connection = readers[slot].lock().expect("reader lock");
            let tx = connection.transaction_with_behavior(TransactionBehavior::Deferred)?;
            let value = f(&tx)?;
            tx.commit()?;
            Ok(value)
        })
        .await?
    }

    /// Writes many pre-validated KeyPackages, `per_transaction` at a time:
    /// how the big stores of the size and cleanup figures are filled.
    pub async fn fill(
        &self,
        events: Arc<Vec<KeyPackageEvent>>,
        now: u64,
        per_transaction: usize,
    ) -> anyhow::Result<()> {
        for start in (0..events.len()).step_by(per_transaction) {
            let events = events.clone();
            self.write(move |tx, policy| {
                for kp in &events[start..(start + per_transaction).min(events.len())] {
                    ingest(tx, policy, kp, now)?;
                }
                Ok(())
            })
            .await?;
        }
        Ok(())
    }

    /// The cleanup baseline: deletes every record purgeable at `now` with its
    /// event ids, `batch` per transaction. Answers how many it deleted.
    pub async fn delete_purgeable(&self, now: u64, batch: usize) -> anyhow::Result<u64> {
        let mut deleted = 0;
        loop {
            let n = self
                .write(move |tx, _| {
                    let refs: Vec<String> = tx
                        .prepare_cached(PURGEABLE)?
                        .query_map((ts(now), batch as i64), |row| row.get(0))?
                        .collect::<Result<_, _>>()?;
                    for r in &refs {
                        tx.prepare_cached(DELETE_RECORD)?.execute([r])?;
                        tx.prepare_cached(DELETE_EVENTS)?.execute([r])?;
                    }
                    Ok(refs.len())
                })
                .await?;
            deleted += n as u64;
            if n < batch {
                return Ok(deleted);
            }
        }
    }

    /// Records left in the database.
    pub async fn records(&self) -> anyhow::Result<u64> {
        self.read("", |tx| {
            Ok(tx.query_row("SELECT COUNT(*) FROM keypackages", [], |row| row.get::<_, i64>(0))? as u64)
        })
        .await
    }
}

fn owner_index(tx: &Connection, owner: &str) -> anyhow::Result<OwnerIndex> {
    let body: Option<String> = tx
        .prepare_cached(OWNER)?
        .query_row([owner], |row| row.get(0))
        .optional()?;
    Ok(body.map(|b| serde_json::from_str(&b)).transpose()?.unwrap_or_default())
}

fn record(tx: &Connection, keypackage_ref: &str) -> anyhow::Result<Option<KeyPackageRecord>> {
    let body: Option<String> = tx
        .prepare_cached(RECORD)?
        .query_row([keypackage_ref], |row| row.get(0))
        .optional()?;
    Ok(body.map(|b| serde_json::from_str(&b)).transpose()?)
}

fn put_record(tx: &Connection, record: &KeyPackageRecord) -> anyhow::Result<()> {
    tx.prepare_cached(PUT_RECORD)?.execute((
        &record.keypackage_ref,
        &record.owner,
        record.state.as_str(),
        ts(record.created_at),
        ts(record.expires_at),
        ts(record.purge_at),
        &record.slot,
        serde_json::to_string(record)?,
    ))?;
    Ok(())
}

fn apply(tx: &Connection, owner: &str, plan: &Plan) -> anyhow::Result<()> {
    tx.prepare_cached(PUT_OWNER)?.execute((
        owner,
        ts(plan.owner.next_purge_at),
        serde_json::to_string(&plan.owner)?,
    ))?;
    for write in &plan.records {
        match write {
            RecordWrite::Put(r) => {
                put_record(tx, r)?;
                tx.prepare_cached(DELETE_EVENTS)?.execute([&r.keypackage_ref])?;
                for id in &r.event_ids {
                    tx.prepare_cached(PUT_EVENT)?.execute((id, &r.keypackage_ref))?;
                }
            }
            RecordWrite::Retire(retirement) => {
                let mut r = record(tx, &retirement.keypackage_ref)?.ok_or_else(|| anyhow::anyhow!("missing record"))?;
                retirement.apply(&mut r);
                put_record(tx, &r)?;
            }
            RecordWrite::RecordUse {
                keypackage_ref,
                use_count,
                last_used_at,
            } => {
                let mut r = record(tx, keypackage_ref)?.ok_or_else(|| anyhow::anyhow!("missing record"))?;
                r.use_count = *use_count;
                r.last_used_at = Some(*last_used_at);
                put_record(tx, &r)?;
            }
        }
    }
    for audit in &plan.audit {
        tx.prepare_cached(INSERT_AUDIT)?.execute((
            &audit.owner,
            &audit.keypackage_ref,
            ts(audit.at),
            ts(audit.expire_at),
            serde_json::to_string(audit)?,
        ))?;
    }
    Ok(())
}

fn ingest(tx: &Connection, policy: &Policy, kp: &KeyPackageEvent, now: u64) -> anyhow::Result<bool> {
    let index = owner_index(tx, &kp.owner)?;
    let existing = record(tx, &kp.keypackage_ref)?;
    match rules::plan_ingest(&index, existing.as_ref(), kp, policy, now) {
        IngestDecision::Store { plan, .. } => {
            apply(tx, &kp.owner, &plan)?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

#[async_trait]
impl Target for DirectSqlite {
    async fn ingest(&self, i: usize) -> anyhow::Result<bool> {
        let events = self.events.clone();
        self.write(move |tx, policy| ingest(tx, policy, &events[i], crate::now()))
            .await
    }

    async fn query(&self, owner: &str) -> anyhow::Result<bool> {
        let owner = owner.to_owned();
        self.read(&owner.clone(), move |tx| {
            let mut statement = tx.prepare_cached(LIVE_RECORDS_OF_OWNER)?;
            let records = statement
                .query_map((owner, ts(crate::now())), |row| row.get::<_, String>(0))?
                .map(|body| Ok(serde_json::from_str::<KeyPackageRecord>(&body?)?))
                .collect::<anyhow::Result<Vec<_>>>()?;
            Ok(!records.is_empty())
        })
        .await
    }

    async fn count(&self, owner: &str) -> anyhow::Result<bool> {
        let owner = owner.to_owned();
        self.read(&owner.clone(), move |tx| {
            Ok(owner_index(tx, &owner)?.count(&owner, 100, crate::now()).owner == owner)
        })
        .await
    }

    async fn claim(&self, owner: &str, requester: &str) -> anyhow::Result<Option<(String, bool)>> {
        let (owner, requester) = (owner.to_owned(), requester.to_owned());
        self.write(move |tx, policy| {
            let now = crate::now();
            let index = owner_index(tx, &owner)?;
            let choice = rules::plan_claim(
                &owner,
                &index,
                None,
                Some(&requester),
                Claimant::from_requester(Some(&requester)),
                ConsumedVia::Claim,
                policy,
                now,
            );
            let Ok(Some(choice)) = choice else {
                return Ok(None);
            };
            let found = record(tx, &choice.keypackage_ref)?;
            apply(tx, &owner, &choice.plan)?;
            Ok(found.map(|r| (r.keypackage_ref, choice.last_resort)))
        })
        .await
    }
}
