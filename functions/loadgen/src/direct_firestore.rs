//! The Firestore baseline: the backend's documents read and written with the
//! `firestore` crate alone, in the backend's transactional shape (read the
//! owner index and the record, then one `Commit` whose index write carries
//! an `update_time` precondition), with no HTTP, no validation and no
//! backend code. The lifecycle decision is the domain's pure `rules`
//! function, which both sides share.

use std::sync::Arc;

use async_trait::async_trait;
use firestore::gcloud_sdk::GoogleAuthHeaders;
use firestore::gcloud_sdk::google::firestore::v1::{
    CommitRequest, Document, Precondition, Write, precondition::ConditionType, write::Operation,
};
use firestore::gcloud_sdk::google_cloud_auth::credentials::anonymous;
use firestore::gcloud_sdk::prost_types::Timestamp;
use firestore::gcloud_sdk::tonic::{Code, Request};
use firestore::{FirestoreDb, FirestoreDbOptions};
use futures::TryStreamExt as _;
use kp_domain::limits::Claimant;
use kp_domain::rules::{self, IngestDecision, Plan, RecordWrite};
use kp_domain::{ConsumedVia, KeyPackageEvent, KeyPackageRecord, OwnerIndex, Policy};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::target::Target;

/// The emulator's documents under one collection prefix.
#[derive(Clone)]
pub struct DirectFirestore {
    db: FirestoreDb,
    owners: String,
    keypackages: String,
    audit: String,
    policy: Policy,
    events: Arc<Vec<KeyPackageEvent>>,
}

type Versioned<T> = Option<(T, Timestamp)>;

fn decode<T: DeserializeOwned>(doc: &Document) -> anyhow::Result<T> {
    Ok(FirestoreDb::deserialize_doc_to::<T>(doc)?)
}

impl DirectFirestore {
    /// Connects to the emulator at `host`, under collection `prefix`.
    pub async fn connect(
        host: &str,
        prefix: &str,
        policy: Policy,
        events: Arc<Vec<KeyPackageEvent>>,
    ) -> anyhow::Result<Self> {
        let options =
            FirestoreDbOptions::new(crate::FIRESTORE_PROJECT.into()).with_firebase_api_url(format!("http://{host}"));
        let auth = GoogleAuthHeaders::from(anonymous::Builder::new().build());
        Ok(Self {
            db: FirestoreDb::with_options_auth(options, auth).await?,
            owners: format!("{prefix}keypackage_owners"),
            keypackages: format!("{prefix}keypackages"),
            audit: format!("{prefix}keypackage_audit"),
            policy,
            events,
        })
    }

    fn name(&self, collection: &str, id: &str) -> String {
        format!("{}/{collection}/{id}", self.db.get_documents_path())
    }

    async fn get<T: DeserializeOwned>(&self, collection: &str, id: &str) -> anyhow::Result<Versioned<T>> {
        let doc = self.db.fluent().select().by_id_in(collection).one(id).await?;
        doc.map(|d| Ok((decode(&d)?, d.update_time.unwrap_or_default())))
            .transpose()
    }

    fn put<T: Serialize>(&self, name: String, value: &T, condition: Option<ConditionType>) -> anyhow::Result<Write> {
        Ok(Write {
            update_mask: None,
            update_transforms: vec![],
            current_document: condition.map(|c| Precondition {
                condition_type: Some(c),
            }),
            operation: Some(Operation::Update(FirestoreDb::serialize_to_doc(name.as_str(), value)?)),
        })
    }

    /// One atomic commit; false when a precondition failed.
    async fn commit(&self, writes: Vec<Write>) -> anyhow::Result<bool> {
        let request = Request::new(CommitRequest {
            database: self.db.get_database_path().clone(),
            writes,
            transaction: vec![],
            request_options: None,
        });
        match self.db.client().get().commit(request).await {
            Ok(_) => Ok(true),
            Err(status) if matches!(status.code(), Code::FailedPrecondition | Code::AlreadyExists) => Ok(false),
            Err(status) => Err(status.into()),
        }
    }

    /// The writes of a plan, the owner index first and conditional on the
    /// version read. `records` holds the records the plan retires, as read.
    fn plan_writes(
        &self,
        owner: &str,
        version: Option<Timestamp>,
        plan: &Plan,
        records: &[KeyPackageRecord],
    ) -> anyhow::Result<Vec<Write>> {
        let condition = match version {
            Some(time) => ConditionType::UpdateTime(time),
            None => ConditionType::Exists(false),
        };
        let mut writes = vec![self.put(self.name(&self.owners, owner), &plan.owner, Some(condition))?];
        for write in &plan.records {
            let record = match write {
                RecordWrite::Put(r) => r.clone(),
                RecordWrite::Retire(retirement) => {
                    let mut r = records
                        .iter()
                        .find(|r| r.keypackage_ref == retirement.keypackage_ref)
                        .cloned()
                        .ok_or_else(|| anyhow::anyhow!("retiring an unread record"))?;
                    retirement.apply(&mut r);
                    r
                }
                RecordWrite::RecordUse { .. } => continue,
            };
            writes.push(self.put(self.name(&self.keypackages, &record.keypackage_ref), &record, None)?);
        }
        for (i, audit) in plan.audit.iter().enumerate() {
            let id = format!("{}-{}-{i}", audit.keypackage_ref, audit.at);
            writes.push(self.put(self.name(&self.audit, &id), audit, None)?);
        }
        Ok(writes)
    }

    /// Writes pre-validated KeyPackages without reading, `per_commit`
    /// records at a time with their owners' indexes: how the big stores of
    /// the size and cleanup figures are filled. `events` must be grouped by
    /// owner, whole owners per commit.
    pub async fn fill(
        &self,
        events: &[KeyPackageEvent],
        now: u64,
        per_owner: usize,
        per_commit: usize,
    ) -> anyhow::Result<()> {
        let owners_per_commit = (per_commit / (per_owner + 1)).max(1);
        let chunks: Vec<&[KeyPackageEvent]> = events.chunks(per_owner * owners_per_commit).collect();
        futures::stream::iter(chunks)
            .map(|chunk| async move {
                let mut writes = Vec::new();
                for owner_events in chunk.chunks(per_owner) {
                    let mut index = OwnerIndex::default();
                    for kp in owner_events {
                        if let IngestDecision::Store { plan, .. } =
                            rules::plan_ingest(&index, None, kp, &self.policy, now)
                        {
                            for write in &plan.records {
                                if let RecordWrite::Put(r) = write {
                                    writes.push(self.put(self.name(&self.keypackages, &r.keypackage_ref), r, None)?);
                                }
                            }
                            index = plan.owner;
                        }
                    }
                    writes.push(self.put(self.name(&self.owners, &owner_events[0].owner), &index, None)?);
                }
                anyhow::ensure!(self.commit(writes).await?, "a fill commit failed");
                Ok(())
            })
            .buffer_unordered(8)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    /// The cleanup baseline: finds the records purgeable at `now`, `batch` at
    /// a time, and deletes each batch in one commit. Answers how many.
    pub async fn delete_purgeable(&self, now: u64, batch: usize) -> anyhow::Result<u64> {
        let mut deleted = 0;
        loop {
            let docs = self
                .db
                .fluent()
                .select()
                .from(self.keypackages.as_str())
                .filter(|q| q.for_all([q.field("purge_at").less_than_or_equal(now)]))
                .limit(batch as u32)
                .query()
                .await?;
            let n = docs.len();
            let writes = docs
                .into_iter()
                .map(|d| Write {
                    update_mask: None,
                    update_transforms: vec![],
                    current_document: None,
                    operation: Some(Operation::Delete(d.name)),
                })
                .collect();
            if n > 0 {
                self.commit(writes).await?;
            }
            deleted += n as u64;
            if n < batch {
                return Ok(deleted);
            }
        }
    }

    /// Records left under this prefix.
    pub async fn records(&self) -> anyhow::Result<u64> {
        let docs = self
            .db
            .fluent()
            .select()
            .from(self.keypackages.as_str())
            .query()
            .await?;
        Ok(docs.len() as u64)
    }
}

use futures::StreamExt as _;

#[async_trait]
impl Target for DirectFirestore {
    async fn ingest(&self, i: usize) -> anyhow::Result<bool> {
        let kp = &self.events[i];
        loop {
            let read: Versioned<OwnerIndex> = self.get(&self.owners, &kp.owner).await?;
            let existing: Versioned<KeyPackageRecord> = self.get(&self.keypackages, &kp.keypackage_ref).await?;
            let index = read.as_ref().map(|(v, _)| v.clone()).unwrap_or_default();
            let decision = rules::plan_ingest(
                &index,
                existing.as_ref().map(|(r, _)| r),
                kp,
                &self.policy,
                crate::now(),
            );
            let IngestDecision::Store { plan, .. } = decision else {
                return Ok(false);
            };
            let writes = self.plan_writes(&kp.owner, read.map(|(_, t)| t), &plan, &[])?;
            if self.commit(writes).await? {
                return Ok(true);
            }
        }
    }

    async fn query(&self, owner: &str) -> anyhow::Result<bool> {
        let now = crate::now();
        let Some((index, _)) = self.get::<OwnerIndex>(&self.owners, owner).await? else {
            return Ok(false);
        };
        let refs: Vec<String> = index.live(now).map(|(r, _)| r.clone()).collect();
        let docs: Vec<(String, Option<Document>)> = self
            .db
            .fluent()
            .select()
            .by_id_in(self.keypackages.as_str())
            .batch(refs)
            .await?
            .collect()
            .await;
        let records = docs
            .iter()
            .filter_map(|(_, d)| d.as_ref())
            .map(decode::<KeyPackageRecord>)
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(!records.is_empty())
    }

    async fn count(&self, owner: &str) -> anyhow::Result<bool> {
        let index = self.get::<OwnerIndex>(&self.owners, owner).await?;
        Ok(index.is_some_and(|(index, _)| index.count(owner, 100, crate::now()).owner == owner))
    }

    async fn claim(&self, owner: &str, requester: &str) -> anyhow::Result<Option<(String, bool)>> {
        loop {
            let now = crate::now();
            let read: Versioned<OwnerIndex> = self.get(&self.owners, owner).await?;
            let index = read.as_ref().map(|(v, _)| v.clone()).unwrap_or_default();
            let choice = rules::plan_claim(
                owner,
                &index,
                None,
                Some(requester),
                Claimant::from_requester(Some(requester)),
                ConsumedVia::Claim,
                &self.policy,
                now,
            );
            let Ok(Some(choice)) = choice else {
                return Ok(None);
            };
            let record: Versioned<KeyPackageRecord> = self.get(&self.keypackages, &choice.keypackage_ref).await?;
            let records: Vec<KeyPackageRecord> = record.into_iter().map(|(r, _)| r).collect();
            let writes = self.plan_writes(owner, read.map(|(_, t)| t), &choice.plan, &records)?;
            if self.commit(writes).await? {
                return Ok(Some((choice.keypackage_ref, choice.last_resort)));
            }
        }
    }
}
