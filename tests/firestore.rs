//! The Store conformance suite against the Firestore emulator, which the
//! harness starts by itself (or finds through `FIRESTORE_EMULATOR_HOST`).
//! Each test gets its own collection prefix, so tests never see each
//! other's documents.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use kp_domain::Policy;
use kp_firestore::{FirestoreSettings, FirestoreStore};
use kp_store::Store;
use kp_testkit::conformance::StoreFuture;
use kp_testkit::emulator::firestore_emulator_host;

fn settings() -> FirestoreSettings {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let unique = format!(
        "t{}_{}_{}_",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    FirestoreSettings {
        project_id: "kp-conformance".into(),
        database_id: "(default)".into(),
        emulator_host: Some(firestore_emulator_host().to_owned()),
        collection_prefix: unique,
        request_timeout: Duration::from_secs(30),
    }
}

fn make(policy: Policy) -> StoreFuture {
    Box::pin(async move {
        let settings = tokio::task::spawn_blocking(settings).await.expect("emulator harness");
        let store = FirestoreStore::connect(&settings, policy)
            .await
            .expect("connect to the emulator");
        Arc::new(store) as Arc<dyn Store>
    })
}

kp_testkit::store_conformance_tests!(make);
