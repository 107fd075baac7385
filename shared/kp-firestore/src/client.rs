//! The Firestore I/O of the backend: reads with their `update_time`, the
//! queries of [`crate::queries`], and atomic commits of lifecycle plans.

use std::time::Duration;

use firestore::gcloud_sdk::GoogleAuthHeaders;
use firestore::gcloud_sdk::google::firestore::v1::{
    CommitRequest, Document, DocumentMask, Precondition, Value, Write, precondition::ConditionType, value::ValueType,
    write::Operation,
};
use firestore::gcloud_sdk::google_cloud_auth::credentials::anonymous;
use firestore::gcloud_sdk::prost_types::Timestamp;
use firestore::gcloud_sdk::tonic::{Code, Request};
use firestore::{FirestoreDb, FirestoreDbOptions, FirestoreValue};
use futures::{StreamExt as _, TryStreamExt as _};
use kp_domain::rules::{Plan, RecordWrite};
use kp_domain::{AuditRecord, KeyPackageRecord, KeyPackageState, OwnerIndex, StoredEvent};
use kp_store::{StoreError, StoreResult};
use rand::Rng as _;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::FirestoreSettings;
use crate::queries::Collections;

/// Most values Firestore takes in one `in` / `array-contains-any` filter.
const MAX_DISJUNCTION: usize = 30;

/// Most documents read back in one batch get.
const MAX_BATCH_GET: usize = 300;

/// How many deletes run at once in cleanup.
const DELETE_CONCURRENCY: usize = 16;

/// A document's value with the version it was read at.
#[derive(Debug, Clone)]
pub(crate) struct Versioned<T> {
    pub(crate) value: T,
    pub(crate) name: String,
    pub(crate) update_time: Timestamp,
}

/// Whether a conditional commit went through.
pub(crate) enum Committed {
    Yes,
    /// A precondition failed: someone else decided first.
    Conflict,
}

/// The Firestore connection and collection names.
#[derive(Clone)]
pub(crate) struct Client {
    db: FirestoreDb,
    pub(crate) collections: Collections,
    timeout: Duration,
}

fn unavailable(error: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(error.to_string())
}

fn decode<T: DeserializeOwned>(doc: &Document) -> StoreResult<T> {
    FirestoreDb::deserialize_doc_to::<T>(doc).map_err(|e| StoreError::Corrupt(format!("{}: {e}", doc.name)))
}

fn versioned<T: DeserializeOwned>(doc: &Document) -> StoreResult<Versioned<T>> {
    Ok(Versioned {
        value: decode(doc)?,
        name: doc.name.clone(),
        update_time: doc
            .update_time
            .ok_or_else(|| StoreError::Corrupt(format!("{} has no update_time", doc.name)))?,
    })
}

/// The field of the audit collection's TTL policy (`firestore.indexes.json`).
pub(crate) const AUDIT_TTL_FIELD: &str = "expire_at";

/// Latest time a Firestore Timestamp holds (9999-12-31T23:59:59Z).
const MAX_TIMESTAMP_SECS: u64 = 253_402_300_799;

/// `secs` since the epoch as a Firestore Timestamp value.
fn timestamp_value(secs: u64) -> Value {
    Value {
        value_type: Some(ValueType::TimestampValue(Timestamp {
            seconds: secs.min(MAX_TIMESTAMP_SECS) as i64,
            nanos: 0,
        })),
    }
}

/// An audit record's document: its fields, except that `expire_at` is a
/// Timestamp rather than integer seconds, since Firestore's TTL policy only
/// deletes by a Timestamp field. Everything else stays integer seconds.
fn audit_doc(name: &str, record: &AuditRecord) -> StoreResult<Document> {
    let mut doc = FirestoreDb::serialize_to_doc(name, record).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    doc.fields
        .insert(AUDIT_TTL_FIELD.to_owned(), timestamp_value(record.expire_at));
    Ok(doc)
}

/// The audit record of a document written by [`audit_doc`] (an integer
/// `expire_at` is read as is).
fn decode_audit(doc: &Document) -> StoreResult<AuditRecord> {
    let mut doc = doc.clone();
    if let Some(value) = doc.fields.get_mut(AUDIT_TTL_FIELD)
        && let Some(ValueType::TimestampValue(time)) = &value.value_type
    {
        value.value_type = Some(ValueType::IntegerValue(time.seconds.max(0)));
    }
    decode(&doc)
}

fn precondition(version: Option<Timestamp>) -> Precondition {
    Precondition {
        condition_type: Some(match version {
            Some(time) => ConditionType::UpdateTime(time),
            None => ConditionType::Exists(false),
        }),
    }
}

/// The fields a retirement rewrites.
#[derive(Serialize)]
struct RetiredFields<'a> {
    state: KeyPackageState,
    events: Vec<StoredEvent>,
    consumed_at: u64,
    consumed_via: kp_domain::ConsumedVia,
    consumed_by: Option<&'a str>,
    purge_at: u64,
}

/// The fields a last resort's use rewrites.
#[derive(Serialize)]
struct UseFields {
    use_count: u64,
    last_used_at: u64,
}

impl Client {
    pub(crate) async fn connect(settings: &FirestoreSettings) -> StoreResult<Self> {
        let options = FirestoreDbOptions::new(settings.project_id.clone())
            .with_database_id(settings.database_id.clone())
            .with_request_timeout(settings.request_timeout);
        let db = match &settings.emulator_host {
            // The emulator needs no credentials; naming it here keeps the
            // process environment out of the library.
            Some(host) => {
                let options = options.with_firebase_api_url(format!("http://{host}"));
                let anonymous = anonymous::Builder::new().build();
                FirestoreDb::with_options_auth(options, GoogleAuthHeaders::from(anonymous)).await
            }
            None => FirestoreDb::with_options(options).await,
        }
        .map_err(unavailable)?;
        Ok(Self {
            db,
            collections: Collections::new(&settings.collection_prefix),
            timeout: settings.request_timeout,
        })
    }

    fn doc_name(&self, collection: &str, id: &str) -> String {
        format!("{}/{collection}/{id}", self.db.get_documents_path())
    }

    async fn get<T: DeserializeOwned>(&self, collection: &str, id: &str) -> StoreResult<Option<Versioned<T>>> {
        let doc = self
            .db
            .fluent()
            .select()
            .by_id_in(collection)
            .one(id)
            .await
            .map_err(unavailable)?;
        doc.as_ref().map(versioned).transpose()
    }

    async fn get_many<T: DeserializeOwned>(&self, collection: &str, ids: &[String]) -> StoreResult<Vec<T>> {
        let mut found = Vec::new();
        for chunk in ids.chunks(MAX_BATCH_GET) {
            let docs: Vec<(String, Option<Document>)> = self
                .db
                .fluent()
                .select()
                .by_id_in(collection)
                .batch_with_errors(chunk.to_vec())
                .await
                .map_err(unavailable)?
                .try_collect()
                .await
                .map_err(unavailable)?;
            for doc in docs.into_iter().filter_map(|(_, doc)| doc) {
                found.push(decode(&doc)?);
            }
        }
        Ok(found)
    }

    pub(crate) async fn owner(&self, owner: &str) -> StoreResult<Option<Versioned<OwnerIndex>>> {
        self.get(&self.collections.owners, owner).await
    }

    pub(crate) async fn owners(&self, owners: &[String]) -> StoreResult<Vec<OwnerIndex>> {
        self.get_many(&self.collections.owners, owners).await
    }

    pub(crate) async fn record(&self, keypackage_ref: &str) -> StoreResult<Option<Versioned<KeyPackageRecord>>> {
        self.get(&self.collections.keypackages, keypackage_ref).await
    }

    pub(crate) async fn records(&self, refs: &[String]) -> StoreResult<Vec<KeyPackageRecord>> {
        self.get_many(&self.collections.keypackages, refs).await
    }

    /// [`crate::StoreQuery::RecordsByEventIds`].
    pub(crate) async fn records_by_event_ids(&self, ids: &[String]) -> StoreResult<Vec<KeyPackageRecord>> {
        let mut found: Vec<KeyPackageRecord> = Vec::new();
        for chunk in ids.chunks(MAX_DISJUNCTION) {
            let docs = self
                .db
                .fluent()
                .select()
                .from(self.collections.keypackages.as_str())
                .filter(|q| q.for_all([q.field("event_ids").array_contains_any(chunk.to_vec())]))
                .query()
                .await
                .map_err(unavailable)?;
            for doc in &docs {
                let record: KeyPackageRecord = decode(doc)?;
                if !found.iter().any(|r| r.keypackage_ref == record.keypackage_ref) {
                    found.push(record);
                }
            }
        }
        Ok(found)
    }

    /// [`crate::StoreQuery::RecordsBySlots`].
    pub(crate) async fn records_by_slots(&self, slots: &[String]) -> StoreResult<Vec<KeyPackageRecord>> {
        let mut found = Vec::new();
        for chunk in slots.chunks(MAX_DISJUNCTION) {
            let docs = self
                .db
                .fluent()
                .select()
                .from(self.collections.keypackages.as_str())
                .filter(|q| q.for_all([q.field("slot").is_in(chunk.to_vec())]))
                .query()
                .await
                .map_err(unavailable)?;
            for doc in &docs {
                found.push(decode(doc)?);
            }
        }
        Ok(found)
    }

    /// [`crate::StoreQuery::RecentAvailable`].
    pub(crate) async fn recent_records(&self, until: Option<u64>, limit: usize) -> StoreResult<Vec<KeyPackageRecord>> {
        let docs = self
            .db
            .fluent()
            .select()
            .from(self.collections.keypackages.as_str())
            .filter(|q| {
                q.for_all([
                    q.field("state").eq(KeyPackageState::Available.as_str()),
                    until.and_then(|until| q.field("created_at").less_than_or_equal(until)),
                ])
            })
            .order(|o| o.fields([o.field("created_at").desc()]))
            .limit(limit as u32)
            .query()
            .await
            .map_err(unavailable)?;
        docs.iter().map(decode).collect()
    }

    /// [`crate::StoreQuery::PurgeableRecords`].
    pub(crate) async fn purgeable_records(
        &self,
        now: u64,
        limit: Option<usize>,
    ) -> StoreResult<Vec<Versioned<KeyPackageRecord>>> {
        let mut query = self
            .db
            .fluent()
            .select()
            .from(self.collections.keypackages.as_str())
            .filter(|q| q.for_all([q.field("purge_at").less_than_or_equal(now)]));
        if let Some(limit) = limit {
            query = query.limit(limit as u32);
        }
        let docs = query.query().await.map_err(unavailable)?;
        docs.iter().map(versioned).collect()
    }

    /// Deletes records unless they changed since read; answers, per record,
    /// (was available, was deleted).
    pub(crate) async fn delete_records(
        &self,
        records: Vec<Versioned<KeyPackageRecord>>,
    ) -> StoreResult<Vec<(bool, bool)>> {
        futures::stream::iter(records)
            .map(|record| async move {
                let available = record.value.state == KeyPackageState::Available;
                let deleted = self.delete_doc(&record.name, Some(record.update_time)).await?;
                Ok((available, deleted))
            })
            .buffer_unordered(DELETE_CONCURRENCY)
            .try_collect()
            .await
    }

    /// [`crate::StoreQuery::OwnersToPrune`].
    pub(crate) async fn owners_to_prune(&self, now: u64, limit: usize) -> StoreResult<Vec<Versioned<OwnerIndex>>> {
        let docs = self
            .db
            .fluent()
            .select()
            .from(self.collections.owners.as_str())
            .filter(|q| {
                q.for_all([
                    q.field("next_purge_at").greater_than(0u64),
                    q.field("next_purge_at").less_than_or_equal(now),
                ])
            })
            .limit(limit as u32)
            .query()
            .await
            .map_err(unavailable)?;
        docs.iter().map(versioned).collect()
    }

    /// Prunes owner indexes (unless they changed since read); deletes empty ones.
    pub(crate) async fn prune_owners(&self, owners: Vec<Versioned<OwnerIndex>>, now: u64) -> StoreResult<u64> {
        let mut pruned = 0;
        for mut owner in owners {
            owner.value.prune(now);
            let done = if owner.value.is_empty() {
                self.delete_doc(&owner.name, Some(owner.update_time)).await?
            } else {
                let write = self.put_write(owner.name.clone(), &owner.value, None, Some(owner.update_time))?;
                matches!(self.commit(vec![write]).await?, Committed::Yes)
            };
            pruned += u64::from(done);
        }
        Ok(pruned)
    }

    /// [`crate::StoreQuery::ExpiredAudit`]: the names of expired audit records.
    pub(crate) async fn expired_audit(&self, now: u64, limit: Option<usize>) -> StoreResult<Vec<String>> {
        let mut query = self
            .db
            .fluent()
            .select()
            .fields([AUDIT_TTL_FIELD])
            .from(self.collections.audit.as_str())
            .filter(|q| {
                q.for_all([q
                    .field(AUDIT_TTL_FIELD)
                    .less_than_or_equal(FirestoreValue::from(timestamp_value(now)))])
            });
        if let Some(limit) = limit {
            query = query.limit(limit as u32);
        }
        Ok(query
            .query()
            .await
            .map_err(unavailable)?
            .into_iter()
            .map(|d| d.name)
            .collect())
    }

    pub(crate) async fn delete_audit(&self, names: Vec<String>) -> StoreResult<u64> {
        let deleted: Vec<bool> = futures::stream::iter(names)
            .map(|name| async move { self.delete_doc(&name, None).await })
            .buffer_unordered(DELETE_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(deleted.into_iter().filter(|d| *d).count() as u64)
    }

    /// [`crate::StoreQuery::AuditOfOwner`].
    pub(crate) async fn audit_of(&self, owner: &str) -> StoreResult<Vec<AuditRecord>> {
        let docs = self
            .db
            .fluent()
            .select()
            .from(self.collections.audit.as_str())
            .filter(|q| q.for_all([q.field("owner").eq(owner)]))
            .query()
            .await
            .map_err(unavailable)?;
        docs.iter().map(decode_audit).collect()
    }

    /// [`crate::StoreQuery::RecordsOfOwner`].
    pub(crate) async fn records_of_owner(&self, owner: &str) -> StoreResult<Vec<KeyPackageRecord>> {
        let docs = self
            .db
            .fluent()
            .select()
            .from(self.collections.keypackages.as_str())
            .filter(|q| q.for_all([q.field("owner").eq(owner)]))
            .query()
            .await
            .map_err(unavailable)?;
        docs.iter().map(decode).collect()
    }

    /// Creates the auth event's document; `false` when it already exists.
    pub(crate) async fn remember_auth(&self, event_id: &str, expire_at: u64) -> StoreResult<bool> {
        #[derive(Serialize)]
        struct UsedAuth {
            expire_at: u64,
        }
        let name = self.doc_name(&self.collections.auth, event_id);
        let write = self.put_write(name, &UsedAuth { expire_at }, None, None)?;
        Ok(matches!(self.commit(vec![write]).await?, Committed::Yes))
    }

    /// [`crate::StoreQuery::ExpiredAuth`]: deletes used auth events past their window.
    pub(crate) async fn delete_expired_auth(&self, now: u64, limit: usize) -> StoreResult<u64> {
        let names: Vec<String> = self
            .db
            .fluent()
            .select()
            .fields(["expire_at"])
            .from(self.collections.auth.as_str())
            .filter(|q| q.for_all([q.field("expire_at").less_than_or_equal(now)]))
            .limit(limit as u32)
            .query()
            .await
            .map_err(unavailable)?
            .into_iter()
            .map(|d| d.name)
            .collect();
        self.delete_audit(names).await
    }

    fn put_write<T: Serialize>(
        &self,
        name: String,
        value: &T,
        mask: Option<&[&str]>,
        version: Option<Timestamp>,
    ) -> StoreResult<Write> {
        let doc =
            FirestoreDb::serialize_to_doc(name.as_str(), value).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(Write {
            update_mask: mask.map(|fields| DocumentMask {
                field_paths: fields.iter().map(|f| (*f).to_owned()).collect(),
            }),
            update_transforms: vec![],
            current_document: Some(match (mask, version) {
                // A masked update only touches an existing record.
                (Some(_), None) => Precondition {
                    condition_type: Some(ConditionType::Exists(true)),
                },
                (_, version) => precondition(version),
            }),
            operation: Some(Operation::Update(doc)),
        })
    }

    /// Commits a plan: the owner index (conditional on `version`, or on not
    /// existing yet), the record changes and the audit records, atomically.
    pub(crate) async fn commit_plan(
        &self,
        owner: &str,
        version: Option<Timestamp>,
        plan: &Plan,
    ) -> StoreResult<Committed> {
        let mut writes = vec![self.put_write(
            self.doc_name(&self.collections.owners, owner),
            &plan.owner,
            None,
            version,
        )?];
        for change in &plan.records {
            writes.push(match change {
                RecordWrite::Put(record) => {
                    let name = self.doc_name(&self.collections.keypackages, &record.keypackage_ref);
                    let mut write = self.put_write(name, record, None, None)?;
                    // The owner index guards this record; overwrite freely.
                    write.current_document = None;
                    write
                }
                RecordWrite::Retire(retirement) => {
                    let name = self.doc_name(&self.collections.keypackages, &retirement.keypackage_ref);
                    let fields = RetiredFields {
                        state: retirement.state,
                        events: vec![],
                        consumed_at: retirement.at,
                        consumed_via: retirement.via,
                        consumed_by: retirement.by.as_deref(),
                        purge_at: retirement.purge_at,
                    };
                    let mask = [
                        "state",
                        "events",
                        "consumed_at",
                        "consumed_via",
                        "consumed_by",
                        "purge_at",
                    ];
                    self.put_write(name, &fields, Some(&mask), None)?
                }
                RecordWrite::RecordUse {
                    keypackage_ref,
                    use_count,
                    last_used_at,
                } => {
                    let name = self.doc_name(&self.collections.keypackages, keypackage_ref);
                    let fields = UseFields {
                        use_count: *use_count,
                        last_used_at: *last_used_at,
                    };
                    self.put_write(name, &fields, Some(&["use_count", "last_used_at"]), None)?
                }
            });
        }
        for record in &plan.audit {
            let id = hex::encode(rand::rng().random::<[u8; 16]>());
            let doc = audit_doc(&self.doc_name(&self.collections.audit, &id), record)?;
            writes.push(Write {
                update_mask: None,
                update_transforms: vec![],
                current_document: None,
                operation: Some(Operation::Update(doc)),
            });
        }
        self.commit(writes).await
    }

    async fn delete_doc(&self, name: &str, version: Option<Timestamp>) -> StoreResult<bool> {
        let write = Write {
            update_mask: None,
            update_transforms: vec![],
            current_document: version.map(Some).map(precondition),
            operation: Some(Operation::Delete(name.to_owned())),
        };
        Ok(matches!(self.commit(vec![write]).await?, Committed::Yes))
    }

    /// One atomic `Commit` outside any transaction: all writes or none.
    async fn commit(&self, writes: Vec<Write>) -> StoreResult<Committed> {
        let mut request = Request::new(CommitRequest {
            database: self.db.get_database_path().clone(),
            writes,
            transaction: vec![],
            request_options: None,
        });
        request.set_timeout(self.timeout);
        match self.db.client().get().commit(request).await {
            Ok(_) => Ok(Committed::Yes),
            Err(status) => match status.code() {
                Code::FailedPrecondition | Code::AlreadyExists | Code::NotFound | Code::Aborted => {
                    Ok(Committed::Conflict)
                }
                _ => Err(unavailable(format!("commit failed: {status}"))),
            },
        }
    }
}
