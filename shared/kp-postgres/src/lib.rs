//! The PostgreSQL backend of the KeyPackage [`Store`]: for operators who
//! already run PostgreSQL (as many nostr relays do) and want several
//! gateway processes, or one, on a database they back up and monitor
//! already, without Google Cloud.
//!
//! # Tables
//!
//! The documents of the Firestore backend (DESIGN.md section 6), as rows,
//! created by the versioned migrations in `migrations/` (see `schema`):
//!
//! - `keypackages`: one [`KeyPackageRecord`] per KeyPackageRef (twins
//!   together, with their signed events; tombstones without events), as
//!   JSONB, with the queried fields copied into columns (`owner`,
//!   `ciphersuite`, `last_resort`, `state`, `created_at`, `expires_at`,
//!   `purge_at`, `slot`) and partial indexes over the available ones by
//!   owner and expiry, and over what cleanup deletes.
//! - `keypackage_events`: event id → KeyPackageRef, for lookups by event id
//!   (the Firestore backend's `event_ids` array).
//! - `keypackage_owners`: one [`OwnerIndex`] per owner, as JSONB, with
//!   `next_purge_at` for cleanup.
//! - `keypackage_audit`: one [`AuditRecord`] per consumption.
//! - `keypackage_auth`: the NIP-98 auth events already used, each good once.
//!
//! # Concurrency
//!
//! Every decision runs in one READ COMMITTED transaction that first locks
//! the owner's row (`INSERT ... ON CONFLICT DO NOTHING`, then `SELECT ...
//! FOR UPDATE`), then reads the records it needs, computes a plan with the
//! same pure rules as the other backends (`kp_domain::rules`), and writes
//! the plan before committing. The row lock serialises every decision about
//! one owner, across connections and processes, so nothing a decision read
//! can change before it commits; each statement after the lock reads what
//! the previous holder committed. Decisions about different owners never
//! wait for each other. A decision that writes nothing rolls back.
//!
//! Queries read in one REPEATABLE READ, READ ONLY transaction: one snapshot
//! for all the filters of a request, without any lock. Cleanup deletes in
//! batches with `FOR UPDATE SKIP LOCKED`, so it never waits for (or blocks)
//! a decision, and two cleanups at once split the work.
//!
//! Every connection runs with `statement_timeout` set to the store's
//! deadline, so a stuck lock or a slow server fails the call as
//! `Unavailable` instead of holding it.

#![forbid(unsafe_code)]

mod error;
mod schema;
mod tables;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use deadpool_postgres::{ClientWrapper, Hook, HookError, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use kp_domain::filter::{CandidateSource, Filter};
use kp_domain::limits::Claimant;
use kp_domain::rules;
use kp_domain::{
    AuditRecord, ConsumedVia, Deletion, KeyPackageEvent, KeyPackageRecord, KeyPackageState, OwnerCount, Policy,
};
use kp_store::{
    Claimed, CleanupOptions, CleanupReport, ConsumeOutcome, DeletionOutcome, IngestOutcome, Store, StoreError,
    StoreResult,
};
use tokio_postgres::IsolationLevel;

use crate::error::DbError;
pub use crate::tables::sql;

/// Connections kept by default (`KP_PG_POOL`).
pub const DEFAULT_POOL_SIZE: usize = 10;

/// The schema version this build writes (the newest migration).
pub const SCHEMA_VERSION: i32 = schema::SCHEMA_VERSION;

/// Whether `KP_STORE` names a PostgreSQL database (`postgres://` or
/// `postgresql://`).
pub fn is_postgres_url(value: &str) -> bool {
    value.starts_with("postgres://") || value.starts_with("postgresql://")
}

/// The PostgreSQL-backed store. Cloning it shares its connection pool.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    policy: Policy,
    target: String,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("target", &self.target)
            .field("policy", &self.policy)
            .finish()
    }
}

/// Where a configuration points, without its password, for messages and logs.
fn describe_target(config: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|host| match host {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let mut ports: Vec<String> = config.get_ports().iter().map(u16::to_string).collect();
    if ports.is_empty() {
        // What tokio-postgres connects to when the URL names no port.
        ports.push("5432".into());
    }
    format!(
        "postgres://{}@{}:{}/{}",
        config.get_user().unwrap_or(""),
        hosts.join(","),
        ports.join(","),
        config.get_dbname().unwrap_or("")
    )
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user:pass@host/db`,
    /// or `postgresql://`, with any libpq-style parameters tokio-postgres
    /// reads), keeping up to `pool_size` connections, and brings the schema
    /// up to date. Every statement, and every wait for a connection, gives
    /// up after `statement_timeout`. The connection is not encrypted: use a
    /// loopback address, a Unix socket (`host=/run/postgresql`) or a
    /// private network.
    pub async fn connect(
        url: &str,
        pool_size: usize,
        statement_timeout: Duration,
        policy: Policy,
    ) -> StoreResult<Self> {
        // The message of a parse error never repeats the URL, which may hold
        // a password.
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Unavailable(format!("KP_STORE is not a PostgreSQL URL this build reads: {e}")))?;
        if !is_postgres_url(url) {
            return Err(StoreError::Unavailable(
                "KP_STORE: a PostgreSQL URL starts with postgres:// or postgresql://".into(),
            ));
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(statement_timeout);
        }
        if config.get_application_name().is_none() {
            config.application_name("keypackage-service");
        }
        let target = describe_target(&config);
        let deadline = statement_timeout.max(Duration::from_millis(1));
        // Set on each new connection rather than in the startup packet's
        // `options`, which connection poolers such as PgBouncer refuse. An
        // idle transaction (a client that stalled holding an owner's lock)
        // is ended by the server after a longer grace.
        let settings = format!(
            "SET statement_timeout = {statement}; SET idle_in_transaction_session_timeout = {idle}",
            statement = deadline.as_millis(),
            idle = (deadline * 6).max(Duration::from_secs(60)).as_millis(),
        );
        let manager = Manager::from_config(
            config,
            tokio_postgres::NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(deadline))
            .create_timeout(Some(deadline))
            .recycle_timeout(Some(deadline))
            .post_create(Hook::async_fn(move |client: &mut ClientWrapper, _| {
                let settings = settings.clone();
                Box::pin(async move { client.batch_execute(&settings).await.map_err(HookError::Backend) })
            }))
            .build()
            .map_err(|e| StoreError::Unavailable(format!("postgres pool: {e}")))?;
        let store = Self { pool, policy, target };
        let opening = |error: DbError| match StoreError::from(error) {
            StoreError::Unavailable(m) => StoreError::Unavailable(format!("cannot open {}: {m}", store.target)),
            StoreError::Contention(m) => StoreError::Contention(format!("cannot open {}: {m}", store.target)),
            StoreError::Corrupt(m) => StoreError::Corrupt(format!("cannot open {}: {m}", store.target)),
        };
        let mut client = store.pool.get().await.map_err(|e| opening(e.into()))?;
        schema::migrate(&mut client).await.map_err(opening)?;
        drop(client);
        Ok(store)
    }

    /// Where this store connects, without the password.
    pub fn target(&self) -> &str {
        &self.target
    }

    async fn client(&self) -> Result<deadpool_postgres::Client, DbError> {
        Ok(self.pool.get().await?)
    }

    async fn ingest_in(&self, kp: &KeyPackageEvent, now: u64) -> Result<IngestOutcome, DbError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let index = tables::lock_owner(&tx, &kp.owner).await?;
        let existing = tables::record(&tx, &kp.keypackage_ref).await?;
        let decision = rules::plan_ingest(&index, existing.as_ref(), kp, &self.policy, now);
        let (plan, outcome) = match kp_store::ingest_step(decision) {
            Ok(step) => step,
            Err(answer) => {
                tx.rollback().await?;
                return Ok(answer);
            }
        };
        tables::apply_plan(&tx, &kp.owner, &plan).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    async fn query_in(&self, filters: &[Filter], now: u64) -> Result<Vec<kp_store::Selected>, DbError> {
        let mut client = self.client().await?;
        let tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let mut found: BTreeMap<String, KeyPackageRecord> = BTreeMap::new();
        for filter in filters {
            let Some(source) = filter.candidate_source() else {
                continue;
            };
            let candidates = match source {
                CandidateSource::Authors(owners) => tables::live_records_of_owners(&tx, &owners, now).await?,
                CandidateSource::Refs(refs) => tables::live_records_by_refs(&tx, &refs, now).await?,
                CandidateSource::EventIds(ids) => tables::live_records_by_event_ids(&tx, &ids, now).await?,
                CandidateSource::Slots(slots) => tables::live_records_by_slots(&tx, &slots, now).await?,
                CandidateSource::Recent { until, limit, .. } => {
                    tables::recent_live_records(&tx, until, limit, now).await?
                }
            };
            for record in candidates {
                found.entry(record.keypackage_ref.clone()).or_insert(record);
            }
        }
        tx.commit().await?;
        let found: Vec<KeyPackageRecord> = found.into_values().collect();
        Ok(kp_store::selection(&found, filters, self.policy.max_per_author, now))
    }

    async fn claim_in(
        &self,
        owner: &str,
        ciphersuite: Option<u16>,
        requester: Option<&str>,
        via: ConsumedVia,
        now: u64,
    ) -> Result<Claimed, DbError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let index = tables::lock_owner(&tx, owner).await?;
        let claimant = Claimant::from_requester(requester);
        let decided = rules::plan_claim(owner, &index, ciphersuite, requester, claimant, via, &self.policy, now);
        let choice = match decided {
            Ok(Some(choice)) => choice,
            Ok(None) => {
                tx.rollback().await?;
                return Ok(Claimed::nothing());
            }
            Err(limited) => {
                tx.rollback().await?;
                return Ok(Claimed::rate_limited(limited.retry_after));
            }
        };
        // Read before the plan retires it: retiring drops the events.
        let record = tables::record(&tx, &choice.keypackage_ref).await?.ok_or_else(|| {
            DbError::corrupt(format!(
                "owner index names missing keypackage {}",
                choice.keypackage_ref
            ))
        })?;
        tables::apply_plan(&tx, owner, &choice.plan).await?;
        tx.commit().await?;
        Ok(Claimed {
            event: record.preferred_event().map(|e| e.json.clone()),
            keypackage_ref: Some(choice.keypackage_ref),
            last_resort: choice.last_resort,
            retry_after: None,
        })
    }

    async fn consume_in(
        &self,
        event_id: &str,
        consumed_by: Option<&str>,
        via: ConsumedVia,
        now: u64,
    ) -> Result<ConsumeOutcome, DbError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let event_ids = [event_id.to_owned()];
        // The owner is only known from the record; an event id always names
        // the same KeyPackage, and a KeyPackage the same owner.
        let Some(unlocked) = tables::records_by_event_ids(&tx, &event_ids).await?.pop() else {
            tx.rollback().await?;
            return Ok(ConsumeOutcome::NotFound);
        };
        let owner = unlocked.owner;
        let index = tables::lock_owner(&tx, &owner).await?;
        // Read again under the lock: a consume that held it before us may
        // have retired the record since the first read, and the answer must
        // say so (AlreadyConsumed, not NotFound).
        let Some(found) = tables::records_by_event_ids(&tx, &event_ids).await?.pop() else {
            tx.rollback().await?;
            return Ok(ConsumeOutcome::NotFound);
        };
        let keypackage_ref = found.keypackage_ref;
        let claimant = kp_store::consume_claimant(via, consumed_by);
        let decided = rules::plan_use(
            &owner,
            &index,
            &keypackage_ref,
            consumed_by,
            claimant,
            via,
            &self.policy,
            now,
        );
        let plan = match decided {
            Ok(Some(plan)) => plan,
            Ok(None) => {
                tx.rollback().await?;
                // Not available at `now`: an expired record is unknown to
                // the caller, a tombstone was used before.
                return Ok(match found.state {
                    KeyPackageState::Available => ConsumeOutcome::NotFound,
                    _ => ConsumeOutcome::AlreadyConsumed { keypackage_ref },
                });
            }
            Err(limited) => {
                tx.rollback().await?;
                return Ok(ConsumeOutcome::RateLimited {
                    retry_after: limited.retry_after,
                });
            }
        };
        let last_resort = index.available.get(&keypackage_ref).is_some_and(|e| e.last_resort);
        tables::apply_plan(&tx, &owner, &plan).await?;
        tx.commit().await?;
        Ok(if last_resort {
            ConsumeOutcome::LastResortUsed { keypackage_ref }
        } else {
            ConsumeOutcome::Consumed { keypackage_ref }
        })
    }

    async fn delete_in(&self, deletion: &Deletion, now: u64) -> Result<DeletionOutcome, DbError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let index = tables::lock_owner(&tx, &deletion.deleter).await?;
        let named = tables::records_by_event_ids(&tx, &deletion.event_ids).await?;
        let (plan, retired) = rules::plan_deletion(&index, &named, deletion, &self.policy, now);
        tables::apply_plan(&tx, &deletion.deleter, &plan).await?;
        tx.commit().await?;
        Ok(DeletionOutcome { retired })
    }

    async fn count_in(&self, owner: &str, now: u64) -> Result<OwnerCount, DbError> {
        let client = self.client().await?;
        let index = tables::owner(&client, owner).await?.unwrap_or_default();
        Ok(index.count(owner, self.policy.max_per_owner, now))
    }

    async fn cleanup_in(&self, options: CleanupOptions, now: u64) -> Result<CleanupReport, DbError> {
        let started = Instant::now();
        let mut report = CleanupReport::default();
        let mut client = self.client().await?;
        if options.dry_run {
            let tx = client
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await?;
            let (expired, tombstones) = tables::count_purgeable_records(&tx, now).await?;
            report.expired_deleted = expired;
            report.tombstones_purged = tombstones;
            report.audit_purged = tables::count_expired_audit(&tx, now).await?;
            tx.commit().await?;
            report.complete = true;
            return Ok(report);
        }
        // One transaction per batch, so a stopped run keeps what it
        // finished and row locks are held briefly. Each step starts once the
        // previous one is done, as in the other backends: owner indexes are
        // pruned after the records they name are gone.
        let batch = options.batch_size.max(1);
        let in_budget = || started.elapsed() < options.time_budget;
        let mut records_done = false;
        while !records_done && in_budget() {
            let tx = client.transaction().await?;
            let expired = tables::delete_expired_records(&tx, now, batch).await?;
            let room = batch.saturating_sub(usize::try_from(expired).unwrap_or(batch));
            let tombstones = if room > 0 {
                tables::delete_purgeable_tombstones(&tx, now, room).await?
            } else {
                0
            };
            tx.commit().await?;
            report.expired_deleted += expired;
            report.tombstones_purged += tombstones;
            records_done = expired + tombstones < batch as u64;
        }
        let mut owners_done = false;
        while records_done && !owners_done && in_budget() {
            let tx = client.transaction().await?;
            let pruned = tables::prune_owners(&tx, now, batch).await?;
            tx.commit().await?;
            owners_done = pruned < batch;
            report.owners_pruned += pruned as u64;
        }
        let mut audit_done = false;
        while owners_done && !audit_done && in_budget() {
            let deleted = tables::delete_expired_audit(&client, now, batch).await?;
            audit_done = deleted < batch as u64;
            report.audit_purged += deleted;
        }
        if audit_done && in_budget() {
            tables::delete_expired_auth(&client, now).await?;
        }
        report.complete = records_done && owners_done && audit_done;
        Ok(report)
    }

    async fn keypackages_of_in(&self, owner: &str) -> Result<Vec<KeyPackageRecord>, DbError> {
        let client = self.client().await?;
        let mut records = tables::records_of_owner(&client, owner).await?;
        records.sort_by(|a, b| (a.created_at, &a.keypackage_ref).cmp(&(b.created_at, &b.keypackage_ref)));
        Ok(records)
    }

    async fn remember_auth_in(&self, event_id: &str, expire_at: u64) -> Result<bool, DbError> {
        let client = self.client().await?;
        tables::remember_auth(&client, event_id, expire_at).await
    }

    async fn audit_in(&self, owner: &str) -> Result<Vec<AuditRecord>, DbError> {
        let client = self.client().await?;
        tables::audit_of(&client, owner).await
    }

    async fn ping_in(&self) -> Result<(), DbError> {
        // Touches the schema, not just the server: a database without the
        // tables (or without the grants to read them) fails here.
        let client = self.client().await?;
        tables::owner(&client, "").await?;
        Ok(())
    }
}

#[async_trait]
impl Store for PostgresStore {
    fn policy(&self) -> &Policy {
        &self.policy
    }

    async fn ingest(&self, keypackage: &KeyPackageEvent, now: u64) -> StoreResult<IngestOutcome> {
        Ok(self.ingest_in(keypackage, now).await?)
    }

    async fn select(&self, filters: &[Filter], now: u64) -> StoreResult<Vec<kp_store::Selected>> {
        Ok(self.query_in(filters, now).await?)
    }

    async fn claim(
        &self,
        owner: &str,
        ciphersuite: Option<u16>,
        requester: Option<&str>,
        via: ConsumedVia,
        now: u64,
    ) -> StoreResult<Claimed> {
        Ok(self.claim_in(owner, ciphersuite, requester, via, now).await?)
    }

    async fn consume(
        &self,
        event_id: &str,
        consumed_by: Option<&str>,
        via: ConsumedVia,
        now: u64,
    ) -> StoreResult<ConsumeOutcome> {
        Ok(self.consume_in(event_id, consumed_by, via, now).await?)
    }

    async fn delete(&self, deletion: &Deletion, now: u64) -> StoreResult<DeletionOutcome> {
        Ok(self.delete_in(deletion, now).await?)
    }

    async fn count(&self, owner: &str, now: u64) -> StoreResult<OwnerCount> {
        Ok(self.count_in(owner, now).await?)
    }

    async fn cleanup(&self, options: CleanupOptions, now: u64) -> StoreResult<CleanupReport> {
        Ok(self.cleanup_in(options, now).await?)
    }

    async fn keypackages_of(&self, owner: &str) -> StoreResult<Vec<KeyPackageRecord>> {
        Ok(self.keypackages_of_in(owner).await?)
    }

    async fn remember_auth(&self, event_id: &str, expire_at: u64) -> StoreResult<bool> {
        Ok(self.remember_auth_in(event_id, expire_at).await?)
    }

    async fn audit(&self, owner: &str) -> StoreResult<Vec<AuditRecord>> {
        Ok(self.audit_in(owner).await?)
    }

    async fn ping(&self) -> StoreResult<()> {
        Ok(self.ping_in().await?)
    }
}
