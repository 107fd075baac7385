//! The embedded SQLite backend of the KeyPackage [`Store`]: one file (or
//! memory), nothing else to install; what `cargo run -p gateway` uses.
//!
//! # Tables
//!
//! The documents of the Firestore backend (DESIGN.md section 6), as rows:
//!
//! - `keypackages`: one [`KeyPackageRecord`] per KeyPackage (twins together,
//!   tombstones without events), as JSON, with the queried fields copied
//!   into indexed columns (`owner`, `state`, `created_at`, `expires_at`,
//!   `purge_at`, `slot`).
//! - `keypackage_events`: event id → KeyPackageRef, for lookups by event id
//!   (the Firestore backend's `event_ids` array).
//! - `keypackage_owners`: one [`OwnerIndex`] per owner, as JSON, with
//!   `next_purge_at` for cleanup.
//! - `keypackage_audit`: one [`AuditRecord`] per consumption.
//!
//! # Concurrency
//!
//! Every decision reads the owner index first, then the records it needs,
//! computes a plan with the same pure rules as the Firestore backend
//! (`kp_domain::rules`), and writes the plan, all in one `BEGIN IMMEDIATE`
//! transaction. SQLite admits one such writer at a time (across connections
//! and processes, through its file lock), so decisions are serialised where
//! Firestore needs compare-and-swap and retries, and a crash leaves either
//! the whole plan or none of it. Queries read in deferred transactions,
//! which WAL lets run beside the writer, each on one consistent snapshot.
//!
//! rusqlite blocks, so every call runs on tokio's blocking pool with a
//! connection leased from a small pool; this process's writers queue for
//! their turn before taking a connection (see `pool`).

#![forbid(unsafe_code)]

mod error;
mod path;
mod pool;
mod schema;
mod tables;

use std::collections::BTreeMap;
use std::time::Instant;

use async_trait::async_trait;
use kp_domain::filter::{CandidateSource, Filter};
use kp_domain::limits::Claimant;
use kp_domain::rules;
use kp_domain::{
    AuditRecord, ConsumedVia, Deletion, KeyPackageEvent, KeyPackageRecord, KeyPackageState, OwnerCount, OwnerIndex,
    Policy,
};
use kp_store::{
    Claimed, CleanupOptions, CleanupReport, ConsumeOutcome, DeletionOutcome, IngestOutcome, Store, StoreError,
    StoreResult,
};
use rusqlite::{Connection, TransactionBehavior};

use crate::error::DbError;
pub use crate::path::{ParseSqlitePathError, SqlitePath};
use crate::pool::Pool;

/// Connections kept open to a database file. Writers take turns anyway;
/// more connections only let more queries read at once, and the service
/// runs on small machines.
const FILE_CONNECTIONS: usize = 4;

/// The SQLite-backed store. Cloning it shares its connections.
#[derive(Clone)]
pub struct SqliteStore {
    pool: Pool,
    policy: Policy,
    path: SqlitePath,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("policy", &self.policy)
            .finish()
    }
}

impl SqliteStore {
    /// Opens (creating when missing) the database and brings its schema up
    /// to date. A file is opened in WAL mode with a busy timeout; its
    /// directory must exist. Blocks briefly: call it at startup, or through
    /// `spawn_blocking` from async code.
    pub fn open(path: SqlitePath, policy: Policy) -> Result<Self, StoreError> {
        let connections = match &path {
            // Every `:memory:` connection is a database of its own, so an
            // in-memory store has exactly one connection; its callers queue
            // for it, which serialises decisions just the same.
            SqlitePath::Memory => {
                let mut connection = Connection::open_in_memory().map_err(|e| opening(&path, e.into()))?;
                schema::configure(&connection, false).map_err(|e| opening(&path, e))?;
                schema::migrate(&mut connection).map_err(|e| opening(&path, e))?;
                vec![connection]
            }
            SqlitePath::File(file) => {
                let mut connections = Vec::with_capacity(FILE_CONNECTIONS);
                for _ in 0..FILE_CONNECTIONS {
                    let connection = Connection::open(file).map_err(|e| opening(&path, e.into()))?;
                    schema::configure(&connection, true).map_err(|e| opening(&path, e))?;
                    connections.push(connection);
                }
                schema::migrate(&mut connections[0]).map_err(|e| opening(&path, e))?;
                connections
            }
        };
        Ok(Self {
            pool: Pool::new(connections),
            policy,
            path,
        })
    }

    /// The database this store opened.
    pub fn path(&self) -> &SqlitePath {
        &self.path
    }

    /// Runs one decision in a `BEGIN IMMEDIATE` transaction: it holds the
    /// write lock from its first read, so nothing it read can change before
    /// it commits. An error rolls everything back.
    async fn decide<T, F>(&self, decide: F) -> StoreResult<T>
    where
        F: FnOnce(&Connection, &Policy) -> Result<T, DbError> + Send + 'static,
        T: Send + 'static,
    {
        let policy = self.policy.clone();
        self.pool
            .write(move |connection| {
                let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let value = decide(&tx, &policy)?;
                tx.commit()?;
                Ok(value)
            })
            .await
    }

    /// Runs reads in one deferred transaction: one consistent snapshot,
    /// without taking the write lock.
    async fn read<T, F>(&self, read: F) -> StoreResult<T>
    where
        F: FnOnce(&Connection) -> Result<T, DbError> + Send + 'static,
        T: Send + 'static,
    {
        self.pool
            .read(move |connection| {
                let tx = connection.transaction_with_behavior(TransactionBehavior::Deferred)?;
                let value = read(&tx)?;
                tx.commit()?;
                Ok(value)
            })
            .await
    }
}

/// An error at open, naming the database so the operator knows which.
fn opening(path: &SqlitePath, error: DbError) -> StoreError {
    match StoreError::from(error) {
        StoreError::Unavailable(m) => StoreError::Unavailable(format!("cannot open {path}: {m}")),
        StoreError::Contention(m) => StoreError::Contention(format!("cannot open {path}: {m}")),
        StoreError::Corrupt(m) => StoreError::Corrupt(format!("cannot open {path}: {m}")),
    }
}

fn owner_index(connection: &Connection, owner: &str) -> Result<OwnerIndex, DbError> {
    Ok(tables::owner(connection, owner)?.unwrap_or_default())
}

/// The candidates of one filter, read the way its source says.
fn candidates(connection: &Connection, source: CandidateSource, now: u64) -> Result<Vec<KeyPackageRecord>, DbError> {
    match source {
        CandidateSource::Authors(owners) => tables::live_records_of_owners(connection, &owners, now),
        CandidateSource::Refs(refs) => tables::live_records_by_refs(connection, &refs, now),
        CandidateSource::EventIds(ids) => tables::live_records_by_event_ids(connection, &ids, now),
        CandidateSource::Slots(slots) => tables::live_records_by_slots(connection, &slots, now),
        CandidateSource::Recent { until, limit, .. } => tables::recent_live_records(connection, until, limit, now),
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn policy(&self) -> &Policy {
        &self.policy
    }

    async fn ingest(&self, keypackage: &KeyPackageEvent, now: u64) -> StoreResult<IngestOutcome> {
        let kp = keypackage.clone();
        self.decide(move |tx, policy| {
            let index = owner_index(tx, &kp.owner)?;
            let existing = tables::record(tx, &kp.keypackage_ref)?;
            let decision = rules::plan_ingest(&index, existing.as_ref(), &kp, policy, now);
            let (plan, outcome) = match kp_store::ingest_step(decision) {
                Ok(step) => step,
                Err(answer) => return Ok(answer),
            };
            tables::apply_plan(tx, &kp.owner, &plan)?;
            Ok(outcome)
        })
        .await
    }

    async fn select(&self, filters: &[Filter], now: u64) -> StoreResult<Vec<kp_store::Selected>> {
        let filters = filters.to_vec();
        let max_per_author = self.policy.max_per_author;
        self.read(move |tx| {
            let mut found: BTreeMap<String, KeyPackageRecord> = BTreeMap::new();
            for filter in &filters {
                let Some(source) = filter.candidate_source() else {
                    continue;
                };
                for record in candidates(tx, source, now)? {
                    found.entry(record.keypackage_ref.clone()).or_insert(record);
                }
            }
            let found: Vec<KeyPackageRecord> = found.into_values().collect();
            Ok(kp_store::selection(&found, &filters, max_per_author, now))
        })
        .await
    }

    async fn claim(
        &self,
        owner: &str,
        ciphersuite: Option<u16>,
        requester: Option<&str>,
        via: ConsumedVia,
        now: u64,
    ) -> StoreResult<Claimed> {
        let owner = owner.to_owned();
        let requester = requester.map(str::to_owned);
        self.decide(move |tx, policy| {
            let index = owner_index(tx, &owner)?;
            let claimant = Claimant::from_requester(requester.as_deref());
            let decided = rules::plan_claim(
                &owner,
                &index,
                ciphersuite,
                requester.as_deref(),
                claimant,
                via,
                policy,
                now,
            );
            let choice = match decided {
                Ok(Some(choice)) => choice,
                Ok(None) => return Ok(Claimed::nothing()),
                Err(limited) => return Ok(Claimed::rate_limited(limited.retry_after)),
            };
            // Read before the plan retires it: retiring drops the events.
            let record = tables::record(tx, &choice.keypackage_ref)?.ok_or_else(|| {
                DbError::corrupt(format!(
                    "owner index names missing keypackage {}",
                    choice.keypackage_ref
                ))
            })?;
            tables::apply_plan(tx, &owner, &choice.plan)?;
            Ok(Claimed {
                event: record.preferred_event().map(|e| e.json.clone()),
                keypackage_ref: Some(choice.keypackage_ref),
                last_resort: choice.last_resort,
                retry_after: None,
            })
        })
        .await
    }

    async fn consume(
        &self,
        event_id: &str,
        consumed_by: Option<&str>,
        via: ConsumedVia,
        now: u64,
    ) -> StoreResult<ConsumeOutcome> {
        let event_id = event_id.to_owned();
        let consumed_by = consumed_by.map(str::to_owned);
        self.decide(move |tx, policy| {
            let Some(found) = tables::records_by_event_ids(tx, std::slice::from_ref(&event_id))?.pop() else {
                return Ok(ConsumeOutcome::NotFound);
            };
            let keypackage_ref = found.keypackage_ref;
            let index = owner_index(tx, &found.owner)?;
            let claimant = kp_store::consume_claimant(via, consumed_by.as_deref());
            let decided = rules::plan_use(
                &found.owner,
                &index,
                &keypackage_ref,
                consumed_by.as_deref(),
                claimant,
                via,
                policy,
                now,
            );
            let Some(plan) = (match decided {
                Ok(plan) => plan,
                Err(limited) => {
                    return Ok(ConsumeOutcome::RateLimited {
                        retry_after: limited.retry_after,
                    });
                }
            }) else {
                // Not available at `now`: an expired record is unknown to
                // the caller, a tombstone was used before.
                return Ok(match found.state {
                    KeyPackageState::Available => ConsumeOutcome::NotFound,
                    _ => ConsumeOutcome::AlreadyConsumed { keypackage_ref },
                });
            };
            let last_resort = index.available.get(&keypackage_ref).is_some_and(|e| e.last_resort);
            tables::apply_plan(tx, &found.owner, &plan)?;
            Ok(if last_resort {
                ConsumeOutcome::LastResortUsed { keypackage_ref }
            } else {
                ConsumeOutcome::Consumed { keypackage_ref }
            })
        })
        .await
    }

    async fn delete(&self, deletion: &Deletion, now: u64) -> StoreResult<DeletionOutcome> {
        let deletion = deletion.clone();
        self.decide(move |tx, policy| {
            let index = owner_index(tx, &deletion.deleter)?;
            let named = tables::records_by_event_ids(tx, &deletion.event_ids)?;
            let (plan, retired) = rules::plan_deletion(&index, &named, &deletion, policy, now);
            tables::apply_plan(tx, &deletion.deleter, &plan)?;
            Ok(DeletionOutcome { retired })
        })
        .await
    }

    async fn count(&self, owner: &str, now: u64) -> StoreResult<OwnerCount> {
        let owner = owner.to_owned();
        let cap = self.policy.max_per_owner;
        self.read(move |tx| Ok(owner_index(tx, &owner)?.count(&owner, cap, now)))
            .await
    }

    async fn cleanup(&self, options: CleanupOptions, now: u64) -> StoreResult<CleanupReport> {
        let started = Instant::now();
        let mut report = CleanupReport::default();
        if options.dry_run {
            let ((expired, tombstones), audit) = self
                .read(move |tx| {
                    Ok((
                        tables::count_purgeable_records(tx, now)?,
                        tables::count_expired_audit(tx, now)?,
                    ))
                })
                .await?;
            report.expired_deleted = expired;
            report.tombstones_purged = tombstones;
            report.audit_purged = audit;
            report.complete = true;
            return Ok(report);
        }
        // One transaction per batch, so traffic gets the write lock between
        // batches and a stopped run keeps what it finished. Each step starts
        // once the previous one is done, as in the Firestore backend: owner
        // indexes are pruned after the records they name are gone.
        let batch = options.batch_size.max(1);
        let in_budget = || started.elapsed() < options.time_budget;
        let mut records_done = false;
        while !records_done && in_budget() {
            let (expired, tombstones, seen) = self
                .decide(move |tx, _| tables::delete_purgeable_records(tx, now, batch))
                .await?;
            records_done = seen < batch;
            report.expired_deleted += expired;
            report.tombstones_purged += tombstones;
        }
        let mut owners_done = false;
        while records_done && !owners_done && in_budget() {
            let pruned = self.decide(move |tx, _| tables::prune_owners(tx, now, batch)).await?;
            owners_done = pruned < batch;
            report.owners_pruned += pruned as u64;
        }
        let mut audit_done = false;
        while owners_done && !audit_done && in_budget() {
            let deleted = self
                .decide(move |tx, _| tables::delete_expired_audit(tx, now, batch))
                .await?;
            audit_done = deleted < batch;
            report.audit_purged += deleted as u64;
        }
        if audit_done && in_budget() {
            self.decide(move |tx, _| tables::delete_expired_auth(tx, now)).await?;
        }
        report.complete = records_done && owners_done && audit_done;
        Ok(report)
    }

    async fn keypackages_of(&self, owner: &str) -> StoreResult<Vec<KeyPackageRecord>> {
        let owner = owner.to_owned();
        let mut records = self.read(move |tx| tables::records_of_owner(tx, &owner)).await?;
        records.sort_by(|a, b| (a.created_at, &a.keypackage_ref).cmp(&(b.created_at, &b.keypackage_ref)));
        Ok(records)
    }

    async fn remember_auth(&self, event_id: &str, expire_at: u64) -> StoreResult<bool> {
        let event_id = event_id.to_owned();
        self.decide(move |tx, _| tables::remember_auth(tx, &event_id, expire_at))
            .await
    }

    async fn audit(&self, owner: &str) -> StoreResult<Vec<AuditRecord>> {
        let owner = owner.to_owned();
        self.read(move |tx| tables::audit_of(tx, &owner)).await
    }

    async fn ping(&self) -> StoreResult<()> {
        // Touches the schema, not just the library: a missing or unreadable
        // file fails here.
        self.read(|tx| {
            tx.query_row(
                "SELECT COUNT(*) FROM keypackage_owners WHERE owner = ''",
                [],
                |_| Ok(()),
            )?;
            Ok(())
        })
        .await
    }
}
