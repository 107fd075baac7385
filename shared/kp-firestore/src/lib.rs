//! The Firestore backend of the KeyPackage [`Store`].
//!
//! # Document model
//!
//! - `{prefix}keypackages/{keypackage_ref}`: one [`KeyPackageRecord`] per
//!   KeyPackage, twins together; tombstones keep the document without events.
//! - `{prefix}keypackage_owners/{pubkey}`: the owner's [`OwnerIndex`].
//! - `{prefix}keypackage_audit/{random}`: one [`AuditRecord`] per consumption.
//!
//! # Concurrency
//!
//! Every decision about one owner reads the owner's index first, then the
//! records it needs, computes a plan with `kp_domain::rules`, and commits the
//! plan's writes in one atomic `Commit` whose owner-index write carries an
//! `update_time` precondition (or "must not exist"). A concurrent decision
//! about the same owner makes the precondition fail; the loser re-reads and
//! decides again. No read locks are taken, so contention costs one round trip
//! rather than a transaction lock timeout, and owners never contend with
//! each other.

#![forbid(unsafe_code)]

mod backoff;
mod client;
pub mod queries;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use kp_domain::filter::{CandidateSource, Filter};
use kp_domain::limits::Claimant;
use kp_domain::rules::{self, Plan};
use kp_domain::{
    AuditRecord, ConsumedVia, Deletion, KeyPackageEvent, KeyPackageRecord, KeyPackageState, OwnerCount, OwnerIndex,
    Policy,
};
use kp_store::{
    Claimed, CleanupOptions, CleanupReport, ConsumeOutcome, DeletionOutcome, IngestOutcome, Store, StoreError,
    StoreResult,
};

use crate::backoff::Backoff;
use crate::client::{Client, Committed, Versioned};
pub use crate::queries::{Collections, StoreQuery};

/// How to reach Firestore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirestoreSettings {
    /// The Google Cloud project (`FIRESTORE_PROJECT_ID` / `GOOGLE_CLOUD_PROJECT`).
    pub project_id: String,
    /// The database (`FIRESTORE_DATABASE_ID`, default `(default)`).
    pub database_id: String,
    /// `host:port` of an emulator (`FIRESTORE_EMULATOR_HOST`): no credentials.
    pub emulator_host: Option<String>,
    /// Prefix of every collection name (`KP_COLLECTION_PREFIX`).
    pub collection_prefix: String,
    /// Deadline of each request to Firestore.
    pub request_timeout: Duration,
}

/// The Firestore-backed store.
#[derive(Clone)]
pub struct FirestoreStore {
    client: Client,
    policy: Policy,
}

impl std::fmt::Debug for FirestoreStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FirestoreStore")
            .field("collections", &self.client.collections)
            .field("policy", &self.policy)
            .finish()
    }
}

impl FirestoreStore {
    /// Connects to Firestore (or its emulator).
    pub async fn connect(settings: &FirestoreSettings, policy: Policy) -> StoreResult<Self> {
        Ok(Self {
            client: Client::connect(settings).await?,
            policy,
        })
    }

    /// Commits `plan` if the owner index is still as read; otherwise waits
    /// (jittered backoff) and answers `false`, and the caller decides again.
    async fn try_commit(
        &self,
        owner: &str,
        read: &Option<Versioned<OwnerIndex>>,
        plan: &Plan,
        backoff: &mut Backoff,
    ) -> StoreResult<bool> {
        let version = read.as_ref().map(|v| v.update_time);
        match self.client.commit_plan(owner, version, plan).await? {
            Committed::Yes => Ok(true),
            Committed::Conflict => backoff.wait().await.map(|_| false),
        }
    }
}

fn index_of(read: &Option<Versioned<OwnerIndex>>) -> OwnerIndex {
    read.as_ref().map(|v| v.value.clone()).unwrap_or_default()
}

#[async_trait]
impl Store for FirestoreStore {
    fn policy(&self) -> &Policy {
        &self.policy
    }

    async fn ingest(&self, keypackage: &KeyPackageEvent, now: u64) -> StoreResult<IngestOutcome> {
        let mut backoff = Backoff::new(&keypackage.owner);
        loop {
            // The index first, then the record: the record is then at least
            // as new as the index, so a consumption between the two reads
            // is seen (and any later change fails the commit).
            let read = self.client.owner(&keypackage.owner).await?;
            let existing = self.client.record(&keypackage.keypackage_ref).await?;
            let decision = rules::plan_ingest(
                &index_of(&read),
                existing.as_ref().map(|v| &v.value),
                keypackage,
                &self.policy,
                now,
            );
            let (plan, outcome) = match kp_store::ingest_step(decision) {
                Ok(step) => step,
                Err(answer) => return Ok(answer),
            };
            if self.try_commit(&keypackage.owner, &read, &plan, &mut backoff).await? {
                return Ok(outcome);
            }
        }
    }

    async fn select(&self, filters: &[Filter], now: u64) -> StoreResult<Vec<kp_store::Selected>> {
        let mut candidates: BTreeMap<String, KeyPackageRecord> = BTreeMap::new();
        for filter in filters {
            let Some(source) = filter.candidate_source() else {
                continue;
            };
            let found = match source {
                CandidateSource::Authors(owners) => {
                    let indexes = self.client.owners(&owners).await?;
                    let refs: Vec<String> = indexes
                        .iter()
                        .flat_map(|index| index.live(now).map(|(r, _)| r.clone()))
                        .filter(|r| !candidates.contains_key(r))
                        .collect();
                    self.client.records(&refs).await?
                }
                CandidateSource::Refs(refs) => self.client.records(&refs).await?,
                CandidateSource::EventIds(ids) => self.client.records_by_event_ids(&ids).await?,
                CandidateSource::Slots(slots) => self.client.records_by_slots(&slots).await?,
                CandidateSource::Recent { until, limit, .. } => self.client.recent_records(until, limit).await?,
            };
            for record in found {
                candidates.entry(record.keypackage_ref.clone()).or_insert(record);
            }
        }
        let candidates: Vec<KeyPackageRecord> = candidates.into_values().collect();
        Ok(kp_store::selection(
            &candidates,
            filters,
            self.policy.max_per_author,
            now,
        ))
    }

    async fn claim(
        &self,
        owner: &str,
        ciphersuite: Option<u16>,
        requester: Option<&str>,
        via: ConsumedVia,
        now: u64,
    ) -> StoreResult<Claimed> {
        let mut backoff = Backoff::new(owner);
        loop {
            let read = self.client.owner(owner).await?;
            let index = index_of(&read);
            let claimant = Claimant::from_requester(requester);
            let choice =
                match rules::plan_claim(owner, &index, ciphersuite, requester, claimant, via, &self.policy, now) {
                    Ok(Some(choice)) => choice,
                    Ok(None) => return Ok(Claimed::nothing()),
                    Err(limited) => return Ok(Claimed::rate_limited(limited.retry_after)),
                };
            let record = self.client.record(&choice.keypackage_ref).await?.ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "owner index names missing keypackage {}",
                    choice.keypackage_ref
                ))
            })?;
            if self.try_commit(owner, &read, &choice.plan, &mut backoff).await? {
                return Ok(Claimed {
                    event: record.value.preferred_event().map(|e| e.json.clone()),
                    keypackage_ref: Some(choice.keypackage_ref),
                    last_resort: choice.last_resort,
                    retry_after: None,
                });
            }
        }
    }

    async fn consume(
        &self,
        event_id: &str,
        consumed_by: Option<&str>,
        via: ConsumedVia,
        now: u64,
    ) -> StoreResult<ConsumeOutcome> {
        let Some(found) = self
            .client
            .records_by_event_ids(&[event_id.to_owned()])
            .await?
            .into_iter()
            .next()
        else {
            return Ok(ConsumeOutcome::NotFound);
        };
        let keypackage_ref = found.keypackage_ref;
        let mut backoff = Backoff::new(&found.owner);
        loop {
            let read = self.client.owner(&found.owner).await?;
            let index = index_of(&read);
            let claimant = kp_store::consume_claimant(via, consumed_by);
            let decided = rules::plan_use(
                &found.owner,
                &index,
                &keypackage_ref,
                consumed_by,
                claimant,
                via,
                &self.policy,
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
                // The index was read before this record: the record's state
                // is at least as new as the index.
                let state = self.client.record(&keypackage_ref).await?.map(|v| v.value.state);
                return Ok(match state {
                    Some(KeyPackageState::Available) | None => ConsumeOutcome::NotFound,
                    Some(_) => ConsumeOutcome::AlreadyConsumed { keypackage_ref },
                });
            };
            let last_resort = index.available[&keypackage_ref].last_resort;
            if self.try_commit(&found.owner, &read, &plan, &mut backoff).await? {
                let keypackage_ref = keypackage_ref.clone();
                return Ok(if last_resort {
                    ConsumeOutcome::LastResortUsed { keypackage_ref }
                } else {
                    ConsumeOutcome::Consumed { keypackage_ref }
                });
            }
        }
    }

    async fn delete(&self, deletion: &Deletion, now: u64) -> StoreResult<DeletionOutcome> {
        let mut backoff = Backoff::new(&deletion.deleter);
        loop {
            let read = self.client.owner(&deletion.deleter).await?;
            // Read after the index, so any KeyPackage stored before the index
            // was read is seen here; one stored later changes the index and
            // makes this commit fail.
            let named = self.client.records_by_event_ids(&deletion.event_ids).await?;
            let (plan, retired) = rules::plan_deletion(&index_of(&read), &named, deletion, &self.policy, now);
            if self.try_commit(&deletion.deleter, &read, &plan, &mut backoff).await? {
                return Ok(DeletionOutcome { retired });
            }
        }
    }

    async fn count(&self, owner: &str, now: u64) -> StoreResult<OwnerCount> {
        let index = self.client.owner(owner).await?.map(|v| v.value).unwrap_or_default();
        Ok(index.count(owner, self.policy.max_per_owner, now))
    }

    async fn cleanup(&self, options: CleanupOptions, now: u64) -> StoreResult<CleanupReport> {
        let started = Instant::now();
        let mut report = CleanupReport::default();
        if options.dry_run {
            for record in self.client.purgeable_records(now, None).await? {
                if record.value.state == KeyPackageState::Available {
                    report.expired_deleted += 1;
                } else {
                    report.tombstones_purged += 1;
                }
            }
            report.audit_purged = self.client.expired_audit(now, None).await?.len() as u64;
            report.complete = true;
            return Ok(report);
        }
        let batch = options.batch_size.max(1);
        let in_budget = || started.elapsed() < options.time_budget;
        let mut records_done = false;
        while !records_done && in_budget() {
            let found = self.client.purgeable_records(now, Some(batch)).await?;
            records_done = found.len() < batch;
            for (available, deleted) in self.client.delete_records(found).await? {
                match (available, deleted) {
                    (true, true) => report.expired_deleted += 1,
                    (false, true) => report.tombstones_purged += 1,
                    _ => {}
                }
            }
        }
        let mut owners_done = false;
        while records_done && !owners_done && in_budget() {
            let found = self.client.owners_to_prune(now, batch).await?;
            owners_done = found.len() < batch;
            report.owners_pruned += self.client.prune_owners(found, now).await?;
        }
        let mut audit_done = false;
        while owners_done && !audit_done && in_budget() {
            let found = self.client.expired_audit(now, Some(batch)).await?;
            audit_done = found.len() < batch;
            report.audit_purged += self.client.delete_audit(found).await?;
        }
        if audit_done && in_budget() {
            self.client.delete_expired_auth(now, batch).await?;
        }
        report.complete = records_done && owners_done && audit_done;
        Ok(report)
    }

    async fn keypackages_of(&self, owner: &str) -> StoreResult<Vec<KeyPackageRecord>> {
        let mut records = self.client.records_of_owner(owner).await?;
        records.sort_by(|a, b| (a.created_at, &a.keypackage_ref).cmp(&(b.created_at, &b.keypackage_ref)));
        Ok(records)
    }

    async fn remember_auth(&self, event_id: &str, expire_at: u64) -> StoreResult<bool> {
        self.client.remember_auth(event_id, expire_at).await
    }

    async fn audit(&self, owner: &str) -> StoreResult<Vec<AuditRecord>> {
        let mut records = self.client.audit_of(owner).await?;
        records.sort_by(|a, b| (a.at, &a.keypackage_ref).cmp(&(b.at, &b.keypackage_ref)));
        Ok(records)
    }

    async fn ping(&self) -> StoreResult<()> {
        self.client.owner(&"0".repeat(64)).await.map(|_| ())
    }
}
