//! Audit records carry `expire_at` as a Firestore Timestamp, the field of the
//! TTL policy that `firestore.indexes.json` declares, while everything else
//! stays integer seconds; and cleanup still purges them by that field. Runs
//! on the emulator, which the harness starts by itself.

use std::time::Duration;

use firestore::gcloud_sdk::GoogleAuthHeaders;
use firestore::gcloud_sdk::google::firestore::v1::value::ValueType;
use firestore::gcloud_sdk::google_cloud_auth::credentials::anonymous;
use firestore::{FirestoreDb, FirestoreDbOptions};
use kp_domain::{ConsumedVia, Policy, ValidationConfig, validate_keypackage_event};
use kp_firestore::{FirestoreSettings, FirestoreStore};
use kp_store::{CleanupOptions, Store};
use kp_testkit::emulator::firestore_emulator_host;
use kp_testkit::factory::system_now;
use kp_testkit::{KeyPackageSpec, Owner};

const RETENTION: u64 = 3_600;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumption_writes_its_audit_expiry_as_a_timestamp_for_the_ttl_policy() {
    let host = tokio::task::spawn_blocking(firestore_emulator_host)
        .await
        .expect("emulator harness");
    let prefix = format!("ttl{}_{}_", std::process::id(), system_now());
    let settings = FirestoreSettings {
        project_id: "kp-audit-ttl".into(),
        database_id: "(default)".into(),
        emulator_host: Some(host.to_owned()),
        collection_prefix: prefix.clone(),
        request_timeout: Duration::from_secs(30),
    };
    let policy = Policy {
        audit_retention_secs: RETENTION,
        ..Policy::default()
    };
    let store = FirestoreStore::connect(&settings, policy).await.expect("connect");

    let now = system_now();
    let owner = Owner::new();
    let requester = Owner::new();
    let json = owner.keypackage(KeyPackageSpec::one_time()).event_443(&owner, now - 10);
    let event = validate_keypackage_event(&json, &ValidationConfig::default(), now).expect("a valid event");
    store.ingest(&event, now).await.expect("ingest");
    let claimed = store
        .claim(
            &owner.pubkey(),
            None,
            Some(&requester.pubkey()),
            ConsumedVia::Claim,
            now,
        )
        .await
        .expect("claim");
    assert!(claimed.event.is_some());

    // The raw document, read with the firestore crate.
    let options = FirestoreDbOptions::new(settings.project_id.clone()).with_firebase_api_url(format!("http://{host}"));
    let db = FirestoreDb::with_options_auth(options, GoogleAuthHeaders::from(anonymous::Builder::new().build()))
        .await
        .expect("raw client");
    let docs = db
        .fluent()
        .select()
        .from(format!("{prefix}keypackage_audit").as_str())
        .query()
        .await
        .expect("read the audit collection");
    assert_eq!(docs.len(), 1, "one consumption, one audit document");
    let fields = &docs[0].fields;
    match fields["expire_at"].value_type {
        Some(ValueType::TimestampValue(time)) => {
            assert_eq!(time.seconds as u64, now + RETENTION, "expire_at = at + retention");
            assert_eq!(time.nanos, 0);
        }
        ref other => panic!("expire_at must be a Timestamp for the TTL policy, found {other:?}"),
    }
    // The other times stay integer seconds.
    assert_eq!(fields["at"].value_type, Some(ValueType::IntegerValue(now as i64)));

    // Read back through the store, the record is unchanged.
    let records = store.audit(&owner.pubkey()).await.expect("audit");
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].at, now);
    assert_eq!(records[0].expire_at, now + RETENTION);
    assert_eq!(records[0].requester.as_deref(), Some(requester.pubkey().as_str()));

    // Cleanup purges by the same field, not before it is due (TTL deletion
    // may lag by a day).
    let report = store
        .cleanup(CleanupOptions::default(), now + RETENTION - 1)
        .await
        .expect("cleanup");
    assert_eq!(report.audit_purged, 0);
    assert_eq!(store.audit(&owner.pubkey()).await.unwrap().len(), 1);
    let report = store
        .cleanup(CleanupOptions::default(), now + RETENTION)
        .await
        .expect("cleanup");
    assert_eq!(report.audit_purged, 1);
    assert!(store.audit(&owner.pubkey()).await.unwrap().is_empty());
}
