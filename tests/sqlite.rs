//! The Store conformance suite against the embedded SQLite backend. Each
//! test gets a database file of its own in a fresh directory, so concurrent
//! callers go through SQLite's real file locking and transactions; the
//! suite runs once more on in-memory stores, and a few more tests cover
//! what only this backend has (its `KP_STORE` spelling, reopening a file,
//! two stores sharing one file).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use kp_domain::{Policy, ValidationConfig, validate_keypackage_event};
use kp_sqlite::{SqlitePath, SqliteStore};
use kp_store::{IngestOutcome, Store};
use kp_testkit::conformance::StoreFuture;
use kp_testkit::{KeyPackageSpec, NOW, Owner};

/// Test directories older than this are left over from earlier runs.
const STALE_AFTER: Duration = Duration::from_secs(600);

/// A fresh directory under Cargo's scratch space for integration tests.
fn fresh_dir() -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("kp-sqlite-conformance");
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    if n == 0 {
        remove_stale(&base);
    }
    let dir = base.join(format!("{}-{n}", std::process::id()));
    // A crashed run with the same pid could have left it behind.
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the test directory");
    dir
}

/// Removes directories of earlier runs, but not those of a run going on now.
fn remove_stale(base: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|modified| SystemTime::now().duration_since(modified).ok())
            .is_some_and(|age| age > STALE_AFTER);
        if stale {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn open(path: SqlitePath, policy: Policy) -> SqliteStore {
    SqliteStore::open(path, policy).expect("open the sqlite store")
}

fn make(policy: Policy) -> StoreFuture {
    Box::pin(async move {
        let store =
            tokio::task::spawn_blocking(move || open(SqlitePath::file(fresh_dir().join("keypackages.db")), policy))
                .await
                .expect("open on a blocking thread");
        Arc::new(store) as Arc<dyn Store>
    })
}

kp_testkit::store_conformance_tests!(make);

/// The suite again on `sqlite::memory:`, whose one connection serialises
/// callers in the pool rather than in SQLite's file lock.
mod in_memory {
    use super::*;

    fn make(policy: Policy) -> StoreFuture {
        Box::pin(async move { Arc::new(open(SqlitePath::Memory, policy)) as Arc<dyn Store> })
    }

    kp_testkit::store_conformance_tests!(make);
}

fn one_time_event(owner: &Owner) -> kp_domain::KeyPackageEvent {
    let json = owner.keypackage(KeyPackageSpec::one_time()).event_443(owner, NOW - 10);
    validate_keypackage_event(&json, &ValidationConfig::default(), NOW).expect("test events are valid")
}

/// `KP_STORE=sqlite::memory:` opens a working store, and each in-memory
/// store is a database of its own.
#[tokio::test]
async fn the_in_memory_store_opens_from_its_kp_store_spelling() {
    let path: SqlitePath = "sqlite::memory:".parse().unwrap();
    assert_eq!(path, SqlitePath::Memory);
    let store = open(path.clone(), Policy::default());
    store.ping().await.unwrap();
    let owner = Owner::new();
    let event = one_time_event(&owner);
    assert_eq!(
        store.ingest(&event, NOW).await.unwrap(),
        IngestOutcome::Stored { retired: vec![] }
    );
    assert_eq!(store.ingest(&event, NOW).await.unwrap(), IngestOutcome::Duplicate);
    assert_eq!(store.count(&owner.pubkey(), NOW).await.unwrap().available, 1);
    let other = open(path, Policy::default());
    assert_eq!(other.count(&owner.pubkey(), NOW).await.unwrap().available, 0);
}

/// A file keeps its KeyPackages (and tombstones) across reopening, and
/// opening it again finds its schema in place.
#[tokio::test]
async fn a_file_store_keeps_its_data_across_reopening() {
    let dir = fresh_dir();
    let path: SqlitePath = format!("sqlite:{}", dir.join("kp.db").display()).parse().unwrap();
    let owner = Owner::new();
    let kept = one_time_event(&owner);
    let consumed = one_time_event(&owner);
    {
        let store = open(path.clone(), Policy::default());
        store.ingest(&kept, NOW).await.unwrap();
        store.ingest(&consumed, NOW).await.unwrap();
        store
            .consume(&consumed.id, None, kp_domain::ConsumedVia::Consume, NOW)
            .await
            .unwrap();
    }
    let store = open(path.clone(), Policy::default());
    let also = open(path, Policy::default());
    assert!(dir.join("kp.db-wal").exists(), "the file is in WAL mode");
    assert_eq!(store.count(&owner.pubkey(), NOW).await.unwrap().available, 1);
    assert_eq!(also.ingest(&consumed, NOW).await.unwrap(), IngestOutcome::AlreadyUsed);
    assert_eq!(store.audit(&owner.pubkey()).await.unwrap().len(), 1);
}

/// A database written before profiles were recorded (schema version 1)
/// reads as legacy after opening: the migration writes `"profile":
/// "legacy"` into every record and owner-index entry, and the count splits
/// by profile.
#[tokio::test]
async fn opening_a_version_1_file_marks_what_it_holds_legacy() {
    let dir = fresh_dir();
    let file = dir.join("v1.db");
    let owner = Owner::new();
    let event = one_time_event(&owner);
    {
        let store = open(SqlitePath::file(file.clone()), Policy::default());
        store.ingest(&event, NOW).await.unwrap();
    }
    // Make the file what version 1 wrote: no profile anywhere.
    let raw = rusqlite::Connection::open(&file).unwrap();
    raw.execute_batch(
        "UPDATE keypackages SET body = json_remove(body, '$.profile');
         UPDATE keypackage_owners SET body = json_set(body, '$.available', json((
             SELECT json_group_object(key, json_remove(value, '$.profile'))
               FROM json_each(keypackage_owners.body, '$.available'))));
         PRAGMA user_version = 1;",
    )
    .unwrap();
    let profiles = |raw: &rusqlite::Connection| -> (Option<String>, Option<String>) {
        let record = raw
            .query_row("SELECT json_extract(body, '$.profile') FROM keypackages", [], |r| {
                r.get(0)
            })
            .unwrap();
        let entry = raw
            .query_row(
                "SELECT json_extract(value, '$.profile') FROM keypackage_owners, json_each(keypackage_owners.body, '$.available')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        (record, entry)
    };
    assert_eq!(profiles(&raw), (None, None), "the file is as version 1 left it");

    let store = open(SqlitePath::file(file.clone()), Policy::default());
    let legacy = Some("legacy".to_string());
    assert_eq!(profiles(&raw), (legacy.clone(), legacy));
    let version: i64 = raw.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(version, 2);
    let count = store.count(&owner.pubkey(), NOW).await.unwrap();
    assert_eq!((count.available, count.current, count.legacy), (1, 0, 1));
    let records = store.keypackages_of(&owner.pubkey()).await.unwrap();
    assert_eq!(records[0].profile, kp_domain::Profile::Legacy);
}

/// A value that is not a SQLite store is refused with a message saying what is.
#[test]
fn kp_store_values_that_are_not_sqlite_are_refused_clearly() {
    let error = "firestore".parse::<SqlitePath>().unwrap_err().to_string();
    assert!(error.contains("sqlite:<path> or sqlite::memory:"), "{error}");
    assert_eq!(SqlitePath::DEFAULT.parse(), Ok(SqlitePath::file("keypackages.db")));
}

/// A directory that does not exist fails the open as unavailable, naming the file.
#[test]
fn opening_in_a_missing_directory_names_the_file() {
    let missing = fresh_dir().join("no-such-dir").join("kp.db");
    let error = SqliteStore::open(SqlitePath::file(&missing), Policy::default()).unwrap_err();
    assert!(error.is_retryable(), "{error:?}");
    assert!(error.to_string().contains("no-such-dir"), "{error}");
}

/// Two stores on one file, as two processes would be: their decisions meet
/// only at SQLite's file lock (and its busy timeout), and the cap and
/// at-most-once still hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_stores_on_one_file_serialise_through_the_file_lock() {
    let file = SqlitePath::file(fresh_dir().join("shared.db"));
    let stores =
        [open(file.clone(), Policy::default()), open(file, Policy::default())].map(|s| Arc::new(s) as Arc<dyn Store>);
    kp_testkit::conformance::two_stores_on_the_same_data_keep_the_cap_and_at_most_once(stores).await;
}
