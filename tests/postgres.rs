//! The Store conformance suite against a real PostgreSQL server, which the
//! harness starts by itself (or finds through `KP_TEST_POSTGRES_URL`). Each
//! test gets a database of its own, so tests never see each other's rows and
//! each one runs the migrations on an empty database. A few more tests
//! cover what only this backend has: migrations run by several instances at
//! once, two stores on one database, the statement deadline, and an index
//! under every statement.

use std::sync::Arc;
use std::time::Duration;

use kp_domain::{ConsumedVia, Policy, ValidationConfig, validate_keypackage_event};
use kp_postgres::PostgresStore;
use kp_store::{IngestOutcome, Store};
use kp_testkit::conformance::StoreFuture;
use kp_testkit::postgres::fresh_postgres_database;
use kp_testkit::{KeyPackageSpec, NOW, Owner};

/// Connections per store: fewer than the suite's 50 concurrent callers, so
/// they also queue for connections, as under load.
const POOL: usize = 8;

/// Generous: the concurrency tests queue 50 decisions on one owner's lock
/// on a 2-core machine.
const DEADLINE: Duration = Duration::from_secs(30);

async fn open(url: &str, policy: Policy) -> PostgresStore {
    PostgresStore::connect(url, POOL, DEADLINE, policy)
        .await
        .expect("connect to the test database")
}

fn make(policy: Policy) -> StoreFuture {
    Box::pin(async move {
        let url = fresh_postgres_database().await;
        Arc::new(open(&url, policy).await) as Arc<dyn Store>
    })
}

kp_testkit::store_conformance_tests!(make);

fn one_time_event(owner: &Owner) -> kp_domain::KeyPackageEvent {
    let json = owner.keypackage(KeyPackageSpec::one_time()).event_443(owner, NOW - 10);
    validate_keypackage_event(&json, &ValidationConfig::default(), NOW).expect("test events are valid")
}

/// A plain client on a test database, to look at what the store wrote.
async fn sql_client(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// Instances that start together on an empty database migrate it once, and
/// a store opened later finds the schema in place and the data kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_starting_at_once_migrate_once_and_keep_the_data() {
    let url = fresh_postgres_database().await;
    let opening: Vec<_> = (0..6)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { open(&url, Policy::default()).await })
        })
        .collect();
    let mut stores = Vec::new();
    for task in opening {
        stores.push(task.await.expect("every instance opens"));
    }
    let client = sql_client(&url).await;
    let versions: Vec<i32> = client
        .query("SELECT version FROM keypackage_schema_migrations ORDER BY version", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(versions, (1..=kp_postgres::SCHEMA_VERSION).collect::<Vec<_>>());

    let owner = Owner::new();
    let kept = one_time_event(&owner);
    let consumed = one_time_event(&owner);
    stores[0].ingest(&kept, NOW).await.unwrap();
    stores[1].ingest(&consumed, NOW).await.unwrap();
    stores[2]
        .consume(&consumed.id, None, ConsumedVia::Consume, NOW)
        .await
        .unwrap();
    drop(stores);
    let reopened = open(&url, Policy::default()).await;
    assert_eq!(reopened.count(&owner.pubkey(), NOW).await.unwrap().available, 1);
    assert_eq!(
        reopened.ingest(&consumed, NOW).await.unwrap(),
        IngestOutcome::AlreadyUsed
    );
    assert_eq!(reopened.audit(&owner.pubkey()).await.unwrap().len(), 1);
}

/// A database migrated before profiles existed (version 2) holds no
/// profile; migration 3 writes `"profile": "legacy"` into every record and
/// owner-index entry, and the count splits by profile.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn migration_3_marks_what_a_version_2_database_holds_legacy() {
    let url = fresh_postgres_database().await;
    let owner = Owner::new();
    {
        let store = open(&url, Policy::default()).await;
        store.ingest(&one_time_event(&owner), NOW).await.unwrap();
    }
    let client = sql_client(&url).await;
    client
        .batch_execute(
            "UPDATE keypackages SET body = body - 'profile';
             UPDATE keypackage_owners SET body = jsonb_set(body, '{available}',
                 (SELECT jsonb_object_agg(e.key, e.value - 'profile') FROM jsonb_each(body -> 'available') e));
             DELETE FROM keypackage_schema_migrations WHERE version = 3;",
        )
        .await
        .unwrap();
    let profiles = || async {
        let record: Option<String> = client
            .query_one("SELECT body ->> 'profile' FROM keypackages", &[])
            .await
            .unwrap()
            .get(0);
        let entry: Option<String> = client
            .query_one(
                "SELECT e.value ->> 'profile' FROM keypackage_owners, jsonb_each(body -> 'available') e",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        (record, entry)
    };
    assert_eq!(profiles().await, (None, None), "the database is as version 2 left it");
    let store = open(&url, Policy::default()).await;
    let legacy = Some("legacy".to_string());
    assert_eq!(profiles().await, (legacy.clone(), legacy));
    let count = store.count(&owner.pubkey(), NOW).await.unwrap();
    assert_eq!((count.available, count.current, count.legacy), (1, 0, 1));
}

/// Two stores on one database, as two gateway processes would be: their
/// decisions meet only at the owner's row lock, and the cap and
/// at-most-once still hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_stores_on_one_database_serialise_on_the_owner_row() {
    let url = fresh_postgres_database().await;
    let stores = [open(&url, Policy::default()).await, open(&url, Policy::default()).await]
        .map(|s| Arc::new(s) as Arc<dyn Store>);
    kp_testkit::conformance::two_stores_on_the_same_data_keep_the_cap_and_at_most_once(stores).await;
}

/// A decision stuck behind a lock fails within the statement deadline as
/// retryable, and a claim for an owner with nothing leaves no row behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_held_owner_lock_fails_the_call_within_the_deadline() {
    let url = fresh_postgres_database().await;
    let store = PostgresStore::connect(&url, 2, Duration::from_millis(500), Policy::default())
        .await
        .unwrap();
    let owner = Owner::new();
    let nobody = Owner::new().pubkey();
    let claimed = store.claim(&nobody, None, None, ConsumedVia::Claim, NOW).await.unwrap();
    assert_eq!(claimed.keypackage_ref, None);
    store.ingest(&one_time_event(&owner), NOW).await.unwrap();

    let mut holder = sql_client(&url).await;
    let rows_for = |who: &str| format!("SELECT count(*) FROM keypackage_owners WHERE owner = '{who}'");
    let none: i64 = holder.query_one(&rows_for(&nobody), &[]).await.unwrap().get(0);
    assert_eq!(none, 0, "a claim that hands nothing out writes nothing");
    let tx = holder.transaction().await.unwrap();
    tx.execute(
        "SELECT 1 FROM keypackage_owners WHERE owner = $1 FOR UPDATE",
        &[&owner.pubkey()],
    )
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let error = store
        .claim(&owner.pubkey(), None, None, ConsumedVia::Claim, NOW)
        .await
        .unwrap_err();
    assert!(error.is_retryable(), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    // Other owners are not held up meanwhile.
    assert_eq!(store.count(&nobody, NOW).await.unwrap().available, 0);
    tx.rollback().await.unwrap();
    let claimed = store
        .claim(&owner.pubkey(), None, None, ConsumedVia::Claim, NOW)
        .await
        .unwrap();
    assert!(claimed.keypackage_ref.is_some(), "the timed-out claim took nothing");
}

/// A URL that names no reachable server fails the open as retryable and
/// does not print the password.
#[tokio::test]
async fn an_unreachable_server_fails_the_open_without_leaking_the_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://kp:hunter2@127.0.0.1:{port}/kp");
    let error = PostgresStore::connect(&url, 2, Duration::from_secs(2), Policy::default())
        .await
        .unwrap_err();
    assert!(error.is_retryable(), "{error:?}");
    assert!(!error.to_string().contains("hunter2"), "{error}");
    assert!(error.to_string().contains(&format!("127.0.0.1:{port}")), "{error}");
}

/// Rows enough for the planner to prefer indexes the way it would in
/// production: 200 owners, 5,000 KeyPackages (a quarter of them
/// tombstones, half of them in slots), their events, and 5,000 audit
/// records. Bodies are empty: plans do not read them.
const SAMPLE_ROWS: &str = "
INSERT INTO keypackages
    (keypackage_ref, owner, ciphersuite, last_resort, state, created_at, expires_at, purge_at, slot, body)
SELECT md5(i::text), md5((i % 200)::text), 1, i % 10 = 0,
    CASE WHEN i % 4 = 0 THEN 'consumed' ELSE 'available' END,
    1795651200 - i, 1798243200 - i, 1798243200 - i,
    CASE WHEN i % 2 = 0 THEN md5('slot' || i) END, '{}'
FROM generate_series(1, 5000) AS i;
INSERT INTO keypackage_events (event_id, keypackage_ref)
SELECT md5('event' || i), md5(i::text) FROM generate_series(1, 5000) AS i;
INSERT INTO keypackage_owners (owner, next_purge_at, body)
SELECT md5(i::text), 1798243200 - i, '{}' FROM generate_series(0, 199) AS i;
INSERT INTO keypackage_audit (owner, keypackage_ref, at, expire_at, body)
SELECT md5((i % 200)::text), md5(i::text), 1795651200 - i, 1798243200 - i, '{}'
FROM generate_series(1, 5000) AS i;
ANALYZE";

/// The index each statement must be served by; `None` for inserts, which
/// read nothing.
const EXPECTED_INDEXES: &[(&str, Option<&str>)] = &[
    ("ENSURE_OWNER", None),
    ("LOCK_OWNER", Some("keypackage_owners_pkey")),
    ("OWNER", Some("keypackage_owners_pkey")),
    ("PUT_OWNER", Some("keypackage_owners_pkey")),
    ("RECORD", Some("keypackages_pkey")),
    ("RECORDS_BY_EVENT_IDS", Some("keypackage_events_pkey")),
    ("LIVE_RECORDS_OF_OWNERS", Some("keypackages_available_by_owner")),
    ("LIVE_RECORDS_BY_REFS", Some("keypackages_pkey")),
    ("LIVE_RECORDS_BY_SLOTS", Some("keypackages_slot")),
    ("RECENT_LIVE_RECORDS", Some("keypackages_available_recent")),
    ("PUT_RECORD", None),
    ("DELETE_OLD_EVENTS", Some("keypackage_events_keypackage_ref")),
    ("PUT_EVENTS", None),
    ("INSERT_AUDIT", None),
    ("AUDIT_OF_OWNER", Some("keypackage_audit_owner")),
    ("COUNT_PURGEABLE_RECORDS", Some("keypackages_available_purge")),
    ("DELETE_EXPIRED_RECORDS", Some("keypackages_available_purge")),
    ("DELETE_PURGEABLE_TOMBSTONES", Some("keypackages_tombstone_purge")),
    ("OWNERS_TO_PRUNE", Some("keypackage_owners_to_prune")),
    ("DELETE_OWNER", Some("keypackage_owners_pkey")),
    ("COUNT_EXPIRED_AUDIT", Some("keypackage_audit_expire_at")),
    ("DELETE_EXPIRED_AUDIT", Some("keypackage_audit_expire_at")),
    ("RECORDS_OF_OWNER", Some("keypackages_owner")),
    ("REMEMBER_AUTH", None),
    ("DELETE_EXPIRED_AUTH", Some("keypackage_auth_expire_at")),
];

/// Every statement the backend runs is served by the index meant for it:
/// on tables with statistics of a realistic shape, the generic plan (the
/// one a prepared statement may settle on, whatever the values) has no
/// sequential scan and uses that index. Sorts are allowed: they only order
/// rows an index already narrowed to one owner's.
#[tokio::test]
async fn every_statement_is_served_by_its_index() {
    let url = fresh_postgres_database().await;
    drop(open(&url, Policy::default()).await);
    let client = sql_client(&url).await;
    client.batch_execute(SAMPLE_ROWS).await.unwrap();
    // The sample is still small enough that reading a table whole can look
    // cheapest; forbidding that leaves a Seq Scan only where no index fits.
    client
        .batch_execute("SET plan_cache_mode = force_generic_plan; SET enable_seqscan = off")
        .await
        .unwrap();
    let names: Vec<&str> = EXPECTED_INDEXES.iter().map(|(name, _)| *name).collect();
    let all: Vec<&str> = kp_postgres::sql::ALL.iter().map(|(name, _)| *name).collect();
    assert_eq!(names, all, "every statement has an expected index");
    for (i, ((name, statement), (_, index))) in kp_postgres::sql::ALL.iter().zip(EXPECTED_INDEXES).enumerate() {
        client
            .batch_execute(&format!("PREPARE s{i} AS {statement}"))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        let params = client
            .query_one(
                "SELECT cardinality(parameter_types) FROM pg_prepared_statements WHERE name = $1",
                &[&format!("s{i}")],
            )
            .await
            .unwrap()
            .get::<_, i32>(0);
        let nulls = vec!["NULL"; params as usize].join(", ");
        let plan: Vec<String> = client
            .query(&format!("EXPLAIN EXECUTE s{i}({nulls})"), &[])
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:?}"))
            .iter()
            .map(|row| row.get(0))
            .collect();
        let plan = plan.join("\n");
        println!("{name}:\n{plan}");
        assert!(!plan.contains("Seq Scan"), "{name} scans a table whole:\n{plan}");
        // An index scan without a condition walks the whole index.
        let lines: Vec<&str> = plan.lines().collect();
        for (at, line) in lines.iter().enumerate() {
            if line.contains("Index Scan") || line.contains("Index Only Scan") {
                let conditioned = lines[at + 1..]
                    .iter()
                    .take_while(|next| !next.contains("->"))
                    .any(|next| next.contains("Index Cond:"));
                assert!(conditioned, "{name} walks a whole index: {line}\n{plan}");
            }
        }
        if let Some(index) = index {
            assert!(
                plan.contains(&format!(" {index} ")),
                "{name} does not use {index}:\n{plan}"
            );
        }
    }
}
