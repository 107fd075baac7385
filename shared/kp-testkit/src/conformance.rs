//! The one conformance suite every `Store` backend must pass, concurrency
//! invariants included. A backend's test file invokes
//! [`store_conformance_tests!`](crate::store_conformance_tests) with a
//! function that makes a fresh, isolated store for a policy.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use kp_domain::filter::Filter;
use kp_domain::signals::parse_deletion;
use kp_domain::{
    CapPolicy, ConsumedVia, KeyPackageEvent, Policy, Rate, RateLimits, ValidationConfig, validate_keypackage_event,
};
use kp_store::{CleanupOptions, ConsumeOutcome, IngestOutcome, Store};
use openmls::prelude::Ciphersuite;
use serde_json::json;

use crate::current::random_slot;
use crate::factory::event_id;
use crate::{CurrentSpec, KeyPackageSpec, MadeKeyPackage, NOW, Owner};

/// A store made fresh for one test, isolated from every other test.
pub type StoreFuture = Pin<Box<dyn Future<Output = Arc<dyn Store>> + Send>>;

/// Makes a store enforcing `policy`.
pub type MakeStore = fn(Policy) -> StoreFuture;

/// Declares one `#[tokio::test]` per conformance test, each calling `$make`.
#[macro_export]
macro_rules! store_conformance_tests {
    ($make:path) => {
        $crate::store_conformance_tests!(@tests $make;
            ingest_stores_and_query_serves_the_event_verbatim,
            ingest_is_idempotent,
            twins_are_one_keypackage,
            a_newer_30443_replaces_the_older_in_its_slot,
            the_cap_rejects_exactly_at_the_limit,
            replace_oldest_retires_the_oldest_one_time_keypackage,
            query_honours_every_filter_field,
            query_serves_at_most_max_per_author_one_time_first,
            expired_keypackages_are_invisible_before_cleanup,
            claim_takes_the_oldest_one_time_then_the_newest_last_resort,
            claim_filters_by_ciphersuite,
            consume_by_event_id_is_once_only,
            every_consumption_is_audited,
            deletion_retires_only_the_owners_keypackages,
            deletion_by_slot_and_before_arrival_refuses_the_events,
            cleanup_removes_expired_tombstones_and_audit_in_resumable_batches,
            concurrent_ingests_respect_the_cap_exactly,
            concurrent_claims_hand_each_one_time_keypackage_out_once,
            concurrent_consumes_of_one_keypackage_succeed_once,
            ingest_racing_deletion_never_leaves_it_available,
            reingesting_consumed_twins_never_revives_them,
            claims_are_rate_limited_per_requester_and_per_owner,
            welcome_consumption_is_rate_limited_like_a_claim,
            new_keypackages_are_rate_limited_per_owner_twins_once,
            owners_see_all_their_keypackages_and_auth_events_work_once,
            concurrent_consuming_queries_never_serve_a_one_time_keypackage_twice,
            current_profile_ranks_first_in_every_device_slot,
        );
    };
    (@tests $make:path; $($name:ident),+ $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                $crate::conformance::$name($make).await;
            }
        )+
    };
}

fn policy() -> Policy {
    Policy::default()
}

fn validated(json: &str, now: u64) -> KeyPackageEvent {
    validate_keypackage_event(json, &ValidationConfig::default(), now).expect("test events are valid")
}

fn filter(value: serde_json::Value) -> Filter {
    Filter::from_json(&value).expect("test filters are valid")
}

async fn ingest(store: &Arc<dyn Store>, json: &str, now: u64) -> IngestOutcome {
    store.ingest(&validated(json, now), now).await.expect("store answers")
}

async fn served_ids(store: &Arc<dyn Store>, filters: &[Filter], now: u64) -> Vec<String> {
    store
        .query(filters, now)
        .await
        .expect("store answers")
        .iter()
        .map(|json| event_id(json))
        .collect()
}

async fn authors_ids(store: &Arc<dyn Store>, owner: &Owner, now: u64) -> Vec<String> {
    served_ids(store, &[filter(json!({"authors": [owner.pubkey()]}))], now).await
}

fn one_time(owner: &Owner) -> MadeKeyPackage {
    owner.keypackage(KeyPackageSpec::one_time())
}

/// Stored events come back byte-for-byte in meaning: same id, sig, tags, content.
pub async fn ingest_stores_and_query_serves_the_event_verbatim(make: MakeStore) {
    let store = make(policy()).await;
    let owner = Owner::new();
    let json = one_time(&owner).event_443(&owner, NOW - 10);
    assert_eq!(
        ingest(&store, &json, NOW).await,
        IngestOutcome::Stored { retired: vec![] }
    );
    let served = store
        .query(&[filter(json!({"authors": [owner.pubkey()]}))], NOW)
        .await
        .unwrap();
    assert_eq!(served.len(), 1);
    let sent: serde_json::Value = serde_json::from_str(&json).unwrap();
    let got: serde_json::Value = serde_json::from_str(&served[0]).unwrap();
    assert_eq!(sent, got, "the stored signed event is served verbatim");
}

/// The same event twice stores one KeyPackage.
pub async fn ingest_is_idempotent(make: MakeStore) {
    let store = make(policy()).await;
    let owner = Owner::new();
    let json = one_time(&owner).event_443(&owner, NOW - 10);
    ingest(&store, &json, NOW).await;
    assert_eq!(ingest(&store, &json, NOW).await, IngestOutcome::Duplicate);
    assert_eq!(
        IngestOutcome::Duplicate.decision(),
        (true, "duplicate: already have this event".to_string())
    );
    assert_eq!(store.count(&owner.pubkey(), NOW).await.unwrap().available, 1);
    assert_eq!(authors_ids(&store, &owner, NOW).await.len(), 1);
}

/// A 443 and its 30443 twin are one KeyPackage: counted once, both served,
/// consumed together.
pub async fn twins_are_one_keypackage(make: MakeStore) {
    let store = make(policy()).await;
    let owner = Owner::new();
    let kp = one_time(&owner);
    let e443 = kp.event_443(&owner, NOW - 10);
    let e30443 = kp.event_30443(&owner, &kp.default_slot(), NOW - 10);
    assert_eq!(
        ingest(&store, &e443, NOW).await,
        IngestOutcome::Stored { retired: vec![] }
    );
    assert_eq!(ingest(&store, &e30443, NOW).await, IngestOutcome::StoredTwin);
    let count = store.count(&owner.pubkey(), NOW).await.unwrap();
    assert_eq!((count.available, count.one_time), (1, 1), "twins count once");
    let served: BTreeSet<String> = authors_ids(&store, &owner, NOW).await.into_iter().collect();
    assert_eq!(served, BTreeSet::from([event_id(&e443), event_id(&e30443)]));
    let only_443 = served_ids(
        &store,
        &[filter(json!({"authors": [owner.pubkey()], "kinds": [443]}))],
        NOW,
    )
    .await;
    assert_eq!(only_443, vec![event_id(&e443)]);

    let claimed = store
        .claim(&owner.pubkey(), None, None, ConsumedVia::Claim, NOW)
        .await
        .unwrap();
    assert_eq!(
        claimed.event.as_deref().map(event_id),
        Some(event_id(&e30443)),
        "the 30443 twin is handed out"
    );
    assert!(
        authors_ids(&store, &owner, NOW).await.is_empty(),
        "consuming one twin consumes both"
    );
    assert_eq!(ingest(&store, &e443, NOW).await, IngestOutcome::AlreadyUsed);
}

/// In one `(owner, d)` slot the newest event wins; an older one is refused.
pub async fn a_newer_30443_replaces_the_older_in_its_slot(make: MakeStore) {
    let store = make(policy()).await;
    let owner = Owner::new();
    let slot = "5a".repeat(32);
    let first = one_time(&owner);
    let second = one_time(&owner);
    let older = one_time(&owner);
    let first_json = first.event_30443(&owner, &slot, NOW - 100);
    ingest(&store, &first_json, NOW).await;
    let outcome = ingest(&store, &second.event_30443(&owner, &slot, NOW - 50), NOW).await;
    assert_eq!(
        outcome,
        IngestOutcome::Stored {
            retired: vec![first.keypackage_ref.clone()]
        }
    );
    let served = authors_ids(&store, &owner, NOW).await;
    assert_eq!(served.len(), 1);
    assert_ne!(
        served[0],
        event_id(&first_json),
        "the replaced keypackage is no longer served"
    );
    assert_eq!(
        ingest(&store, &older.event_30443(&owner, &slot, NOW - 200), NOW).await,
        IngestOutcome::SlotHeldByNewer
    );
    assert_eq!(
        ingest(&store, &first_json, NOW).await,
        IngestOutcome::AlreadyUsed,
        "replaced never returns"
    );
    assert_eq!(store.count(&owner.pubkey(), NOW).await.unwrap().available, 1);
}

/// With cap N the (N+1)th KeyPackage is refused with `rate-limited:`; twins
/// of stored ones are still accepted.
pub async fn the_cap_rejects_exactly_at_the_limit(make: MakeStore) {
    let store = make(Policy {
        max_per_owner: 3,
        ..policy()
    })
    .await;
    let owner = Owner::new();
    let kps: Vec<_> = (0..4).map(|_| one_time(&owner)).collect();
    for kp in &kps[..3] {
        assert!(matches!(
            ingest(&store, &kp.event_443(&owner, NOW - 10), NOW).await,
            IngestOutcome::Stored { .. }
        ));
    }
    let over = ingest(&store, &kps[3].event_443(&owner, NOW - 10), NOW).await;
    assert_eq!(over, IngestOutcome::OverCap { cap: 3 });
    assert!(over.decision().1.starts_with("rate-limited: "));
    assert_eq!(
        ingest(
            &store,
            &kps[0].event_30443(&owner, &kps[0].default_slot(), NOW - 10),
            NOW
        )
        .await,
        IngestOutcome::StoredTwin
    );
    let count = store.count(&owner.pubkey(), NOW).await.unwrap();
    assert_eq!((count.available, count.cap), (3, 3));
}

/// `replace_oldest` makes room by retiring the oldest one-time KeyPackage.
pub async fn replace_oldest_retires_the_oldest_one_time_keypackage(make: MakeStore) {
    let store = make(Policy {
        max_per_owner: 2,
        on_cap: CapPolicy::ReplaceOldest,
        ..policy()
    })
    .await;
    let owner = Owner::new();
    let oldest = one_time(&owner);
    let last_resort = owner.keypackage(KeyPackageSpec::last_resort());
    let newest = one_time(&owner);
    let oldest_json = oldest.event_443(&owner, NOW - 300);
    ingest(&store, &last_resort.event_443(&owner, NOW - 400), NOW).await;
    ingest(&store, &oldest_json, NOW).await;
    let outcome = ingest(&store, &newest.event_443(&owner, NOW - 10), NOW).await;
    assert_eq!(
        outcome,
        IngestOutcome::Stored {
            retired: vec![oldest.keypackage_ref.clone()]
        }
    );
    let served = authors_ids(&store, &owner, NOW).await;
    assert!(!served.contains(&event_id(&oldest_json)));
    assert_eq!(ingest(&store, &oldest_json, NOW).await, IngestOutcome::AlreadyUsed);
    let count = store.count(&owner.pubkey(), NOW).await.unwrap();
    assert_eq!((count.available, count.last_resort_available), (2, 1));
}

/// `ids`, `kinds`, `since`, `until`, `limit`, `#i` and `#d` all narrow the answer.
pub async fn query_honours_every_filter_field(make: MakeStore) {
    let store = make(Policy {
        max_per_author: 10,
        ..policy()
    })
    .await;
    let owner = Owner::new();
    let a = one_time(&owner);
    let b = one_time(&owner);
    let a443 = a.event_443(&owner, NOW - 300);
    let a30443 = a.event_30443(&owner, &a.default_slot(), NOW - 300);
    let b443 = b.event_443(&owner, NOW - 100);
    for json in [&a443, &a30443, &b443] {
        ingest(&store, json, NOW).await;
    }
    let me = owner.pubkey();
    let store = &store;
    let ids = |v| async move { served_ids(store, &[filter(v)], NOW).await };
    assert_eq!(
        ids(json!({"ids": [event_id(&b443).to_uppercase()]})).await,
        vec![event_id(&b443)]
    );
    assert_eq!(
        ids(json!({"authors": [me], "kinds": [30443]})).await,
        vec![event_id(&a30443)]
    );
    assert_eq!(
        ids(json!({"authors": [me], "since": NOW - 200})).await,
        vec![event_id(&b443)]
    );
    let until: BTreeSet<_> = ids(json!({"authors": [me], "until": NOW - 200}))
        .await
        .into_iter()
        .collect();
    assert_eq!(until, BTreeSet::from([event_id(&a443), event_id(&a30443)]));
    assert_eq!(
        ids(json!({"authors": [me], "limit": 1})).await,
        vec![event_id(&b443)],
        "newest first"
    );
    let by_ref: BTreeSet<_> = ids(json!({"#i": [a.keypackage_ref]})).await.into_iter().collect();
    assert_eq!(by_ref, BTreeSet::from([event_id(&a443), event_id(&a30443)]));
    assert_eq!(ids(json!({"#d": [a.default_slot()]})).await, vec![event_id(&a30443)]);
    assert!(ids(json!({"authors": [me], "kinds": [1]})).await.is_empty());
    assert_eq!(
        ids(json!({"kinds": [443], "since": NOW - 200})).await,
        vec![event_id(&b443)]
    );
    // Union over filters without duplicates.
    let union = served_ids(
        store,
        &[
            filter(json!({"ids": [event_id(&b443)]})),
            filter(json!({"authors": [me], "kinds": [443]})),
        ],
        NOW,
    )
    .await;
    assert_eq!(union, vec![event_id(&b443), event_id(&a443)]);
}

/// Per author at most `max_per_author` KeyPackages: one-time before last
/// resort, newest first.
pub async fn query_serves_at_most_max_per_author_one_time_first(make: MakeStore) {
    let store = make(Policy {
        max_per_author: 2,
        ..policy()
    })
    .await;
    let alice = Owner::new();
    let bob = Owner::new();
    let lr = alice.keypackage(KeyPackageSpec::last_resort());
    let old = one_time(&alice);
    let new = one_time(&alice);
    let lr_json = lr.event_443(&alice, NOW - 5);
    let old_json = old.event_443(&alice, NOW - 500);
    let new_json = new.event_443(&alice, NOW - 100);
    let bob_json = one_time(&bob).event_443(&bob, NOW - 50);
    for json in [&lr_json, &old_json, &new_json, &bob_json] {
        ingest(&store, json, NOW).await;
    }
    let both = served_ids(
        &store,
        &[filter(json!({"authors": [alice.pubkey(), bob.pubkey()]}))],
        NOW,
    )
    .await;
    assert_eq!(
        both,
        vec![event_id(&bob_json), event_id(&new_json), event_id(&old_json)]
    );
    let all = served_ids(&store, &[filter(json!({"kinds": [443, 30443]}))], NOW).await;
    assert_eq!(all.len(), 3, "the cap per author applies without authors too");
    // With one one-time KeyPackage left, the last resort fills the second place.
    store
        .claim(&alice.pubkey(), None, None, ConsumedVia::Claim, NOW)
        .await
        .unwrap();
    let after = authors_ids(&store, &alice, NOW).await;
    assert_eq!(after, vec![event_id(&lr_json), event_id(&new_json)]);
}

/// An expired KeyPackage is never served, counted, claimed or consumed,
/// even before cleanup has run.
pub async fn expired_keypackages_are_invisible_before_cleanup(make: MakeStore) {
    let store = make(policy()).await;
    let owner = Owner::new();
    let kp = owner.keypackage(KeyPackageSpec {
        not_after: NOW + 1_000,
        ..KeyPackageSpec::one_time()
    });
    let json = kp.event_443(&owner, NOW - 10);
    ingest(&store, &json, NOW).await;
    assert_eq!(authors_ids(&store, &owner, NOW + 999).await.len(), 1);
    let later = NOW + 1_000;
    assert!(authors_ids(&store, &owner, later).await.is_empty());
    assert!(
        served_ids(&store, &[filter(json!({"ids": [event_id(&json)]}))], later)
            .await
            .is_empty()
    );
    assert_eq!(store.count(&owner.pubkey(), later).await.unwrap().available, 0);
    let claimed = store
        .claim(&owner.pubkey(), None, None, ConsumedVia::Claim, later)
        .await
        .unwrap();
    assert_eq!(claimed.event, None);
    assert_eq!(
        store
            .consume(&event_id(&json), None, ConsumedVia::Consume, later)
            .await
            .unwrap(),
        ConsumeOutcome::NotFound
    );
}

/// Claims take the oldest one-time KeyPackage, then the newest last resort,
/// which stays available and records its use.
pub async fn claim_takes_the_oldest_one_time_then_the_newest_last_resort(make: MakeStore) {
    let store = make(policy()).await;
    let owner = Owner::new();
    let me = owner.pubkey();
    let old = one_time(&owner);
    let new = one_time(&owner);
    let lr_old = owner.keypackage(KeyPackageSpec::last_resort());
    let lr_new = owner.keypackage(KeyPackageSpec::last_resort());
    ingest(&store, &new.event_443(&owner, NOW - 100), NOW).await;
    ingest(&store, &old.event_443(&owner, NOW - 200), NOW).await;
    ingest(&store, &lr_old.event_443(&owner, NOW - 300), NOW).await;
    ingest(&store, &lr_new.event_443(&owner, NOW - 50), NOW).await;
    let claim = || store.claim(&me, None, None, ConsumedVia::Claim, NOW);
    let first = claim().await.unwrap();
    assert_eq!(
        (first.keypackage_ref.as_deref(), first.last_resort),
        (Some(old.keypackage_ref.as_str()), false)
    );
    let second = claim().await.unwrap();
    assert_eq!(second.keypackage_ref.as_deref(), Some(new.keypackage_ref.as_str()));
    assert!(!store.count(&me, NOW).await.unwrap().last_resort_used);
    for _ in 0..2 {
        let third = claim().await.unwrap();
        assert_eq!(
            (third.keypackage_ref.as_deref(), third.last_resort),
            (Some(lr_new.keypackage_ref.as_str()), true)
        );
    }
    let count = store.count(&me, NOW).await.unwrap();
    assert_eq!(
        (count.available, count.one_time, count.last_resort_available),
        (2, 0, 2)
    );
    assert!(count.last_resort_used, "the owner learns the last resort was used");
    let nobody = Owner::new();
    let empty = store
        .claim(&nobody.pubkey(), None, None, ConsumedVia::Claim, NOW)
        .await
        .unwrap();
    assert_eq!((empty.event, empty.last_resort), (None, false));
    let zero = store.count(&nobody.pubkey(), NOW).await.unwrap();
    assert_eq!((zero.available, zero.cap), (0, 10));
}

/// A claim for a ciphersuite only hands out KeyPackages of that suite.
pub async fn claim_filters_by_ciphersuite(make: MakeStore) {
    let store = make(policy()).await;
    let owner = Owner::new();
    let chacha = owner.keypackage(KeyPackageSpec {
        ciphersuite: Ciphersuite::MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519,
        ..KeyPackageSpec::one_time()
    });
    ingest(&store, &one_time(&owner).event_443(&owner, NOW - 500), NOW).await;
    ingest(&store, &chacha.event_443(&owner, NOW - 10), NOW).await;
    let count = store.count(&owner.pubkey(), NOW).await.unwrap();
    assert_eq!(count.by_ciphersuite.get("0x0003"), Some(&1));
    assert_eq!(count.by_ciphersuite.get("0x0001"), Some(&1));
    let claimed = store
        .claim(&owner.pubkey(), Some(3), None, ConsumedVia::Claim, NOW)
        .await
        .unwrap();
    assert_eq!(claimed.keypackage_ref.as_deref(), Some(chacha.keypackage_ref.as_str()));
    let none = store
        .claim(&owner.pubkey(), Some(3), None, ConsumedVia::Claim, NOW)
        .await
        .unwrap();
    assert_eq!(none.event, None);
    assert_eq!(store.count(&owner.pubkey(), NOW).await.unwrap().available, 1);
}

/// Direct consumption: once; again is "already consumed"; unknown is not found;
/// a last resort records a use and stays.
pub async fn consume_by_event_id_is_once_only(make: MakeStore) {
    let store = make(policy()).await;
    let owner = Owner::new();
    let kp = one_time(&owner);
    let e443 = kp.event_443(&owner, NOW - 10);
    let e30443 = kp.event_30443(&owner, &kp.default_slot(), NOW - 10);
    ingest(&store, &e443, NOW).await;
    ingest(&store, &e30443, NOW).await;
    let r = kp.keypackage_ref.clone();
    let consume = |id: String| {
        let store = store.clone();
        async move {
            store
                .consume(&id, Some(&"ab".repeat(32)), ConsumedVia::Consume, NOW)
                .await
                .unwrap()
        }
    };
    assert_eq!(
        consume(event_id(&e443)).await,
        ConsumeOutcome::Consumed {
            keypackage_ref: r.clone()
        }
    );
    assert_eq!(
        consume(event_id(&e443)).await,
        ConsumeOutcome::AlreadyConsumed {
            keypackage_ref: r.clone()
        }
    );
    assert_eq!(
        consume(event_id(&e30443)).await,
        ConsumeOutcome::AlreadyConsumed { keypackage_ref: r }
    );
    assert_eq!(consume("00".repeat(32)).await, ConsumeOutcome::NotFound);
    assert!(authors_ids(&store, &owner, NOW).await.is_empty());

    let lr = owner.keypackage(KeyPackageSpec::last_resort());
    let lr_json = lr.event_443(&owner, NOW - 10);
    ingest(&store, &lr_json, NOW).await;
    let used = ConsumeOutcome::LastResortUsed {
        keypackage_ref: lr.keypackage_ref.clone(),
    };
    assert_eq!(consume(event_id(&lr_json)).await, used);
    assert_eq!(consume(event_id(&lr_json)).await, used);
    assert_eq!(authors_ids(&store, &owner, NOW).await, vec![event_id(&lr_json)]);
    assert!(store.count(&owner.pubkey(), NOW).await.unwrap().last_resort_used);
}

/// Every consumption leaves an audit record: who, when, how, which.
pub async fn every_consumption_is_audited(make: MakeStore) {
    let store = make(policy()).await;
    let owner = Owner::new();
    let bob = Owner::new();
    let claimed = one_time(&owner);
    let welcomed = one_time(&owner);
    let welcomed_json = welcomed.event_443(&owner, NOW - 10);
    ingest(&store, &claimed.event_443(&owner, NOW - 20), NOW).await;
    ingest(&store, &welcomed_json, NOW).await;
    store
        .claim(&owner.pubkey(), None, Some(&bob.pubkey()), ConsumedVia::Claim, NOW)
        .await
        .unwrap();
    let welcome = kp_domain::signals::parse_welcome(&bob.welcome(&event_id(&welcomed_json), NOW), 65_536).unwrap();
    let outcome = store
        .consume(
            &welcome.keypackage_event_id,
            Some(&welcome.signer),
            ConsumedVia::Welcome,
            NOW + 1,
        )
        .await
        .unwrap();
    assert!(matches!(outcome, ConsumeOutcome::Consumed { .. }));
    let records = store.audit(&owner.pubkey()).await.unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].keypackage_ref, claimed.keypackage_ref);
    assert_eq!(records[0].via, ConsumedVia::Claim);
    assert_eq!(records[0].requester.as_deref(), Some(bob.pubkey().as_str()));
    assert_eq!(records[0].at, NOW);
    assert_eq!(records[1].keypackage_ref, welcomed.keypackage_ref);
    assert_eq!(records[1].via, ConsumedVia::Welcome);
    assert_eq!(records[1].event_ids, vec![event_id(&welcomed_json)]);
    assert!(store.audit(&bob.pubkey()).await.unwrap().is_empty());
}

/// A deletion retires the deleter's own KeyPackages, never someone else's.
pub async fn deletion_retires_only_the_owners_keypackages(make: MakeStore) {
    let store = make(policy()).await;
    let owner = Owner::new();
    let mallory = Owner::new();
    let kp = one_time(&owner);
    let e443 = kp.event_443(&owner, NOW - 10);
    let e30443 = kp.event_30443(&owner, &kp.default_slot(), NOW - 10);
    let keep = one_time(&owner).event_443(&owner, NOW - 10);
    for json in [&e443, &e30443, &keep] {
        ingest(&store, json, NOW).await;
    }
    let hostile = parse_deletion(&mallory.deletion(&[&event_id(&e443)], &[], NOW), 65_536).unwrap();
    assert!(store.delete(&hostile, NOW).await.unwrap().retired.is_empty());
    assert_eq!(authors_ids(&store, &owner, NOW).await.len(), 3);

    let own = parse_deletion(
        &owner.deletion(&[&event_id(&e443), &event_id(&e30443)], &[], NOW),
        65_536,
    )
    .unwrap();
    assert_eq!(
        store.delete(&own, NOW).await.unwrap().retired,
        vec![kp.keypackage_ref.clone()]
    );
    assert_eq!(authors_ids(&store, &owner, NOW).await, vec![event_id(&keep)]);
    assert_eq!(ingest(&store, &e443, NOW).await, IngestOutcome::AlreadyUsed);
    assert_eq!(ingest(&store, &e30443, NOW).await, IngestOutcome::AlreadyUsed);
    let audit = store.audit(&owner.pubkey()).await.unwrap();
    assert_eq!(
        audit.iter().map(|a| a.via).collect::<Vec<_>>(),
        vec![ConsumedVia::Deletion]
    );
}

/// `a`-tag deletions retire a slot's versions up to the deletion; a deletion
/// that arrives before its event still refuses the event.
pub async fn deletion_by_slot_and_before_arrival_refuses_the_events(make: MakeStore) {
    let store = make(policy()).await;
    let owner = Owner::new();
    let slot = "7e".repeat(32);
    let kp = one_time(&owner);
    let in_slot = kp.event_30443(&owner, &slot, NOW - 100);
    ingest(&store, &in_slot, NOW).await;
    let by_slot = parse_deletion(&owner.deletion(&[], &[&slot], NOW - 50), 65_536).unwrap();
    assert_eq!(
        store.delete(&by_slot, NOW).await.unwrap().retired,
        vec![kp.keypackage_ref.clone()]
    );
    assert!(authors_ids(&store, &owner, NOW).await.is_empty());
    let older_version = one_time(&owner).event_30443(&owner, &slot, NOW - 60);
    assert_eq!(ingest(&store, &older_version, NOW).await, IngestOutcome::AlreadyUsed);
    let newer_version = one_time(&owner).event_30443(&owner, &slot, NOW - 10);
    assert!(matches!(
        ingest(&store, &newer_version, NOW).await,
        IngestOutcome::Stored { .. }
    ));

    let early = one_time(&owner).event_443(&owner, NOW - 10);
    let deletion = parse_deletion(&owner.deletion(&[&event_id(&early)], &[], NOW), 65_536).unwrap();
    assert!(store.delete(&deletion, NOW).await.unwrap().retired.is_empty());
    assert_eq!(ingest(&store, &early, NOW).await, IngestOutcome::AlreadyUsed);
}

/// Cleanup removes expired KeyPackages, tombstones that outlived their
/// KeyPackage and old audit records; a dry run removes nothing; a run out of
/// budget reports it and the next one finishes.
pub async fn cleanup_removes_expired_tombstones_and_audit_in_resumable_batches(make: MakeStore) {
    let store = make(Policy {
        audit_retention_secs: 500,
        max_per_owner: 20,
        ..policy()
    })
    .await;
    let owner = Owner::new();
    let short = |n: u64| {
        owner.keypackage(KeyPackageSpec {
            not_after: NOW + n,
            ..KeyPackageSpec::one_time()
        })
    };
    let expiring: Vec<_> = (0..5).map(|_| short(1_000)).collect();
    for kp in &expiring {
        ingest(&store, &kp.event_443(&owner, NOW - 10), NOW).await;
    }
    let consumed = short(2_000);
    let consumed_json = consumed.event_443(&owner, NOW - 10);
    ingest(&store, &consumed_json, NOW).await;
    store
        .consume(&event_id(&consumed_json), None, ConsumedVia::Consume, NOW)
        .await
        .unwrap();
    let lasting = one_time(&owner);
    ingest(&store, &lasting.event_443(&owner, NOW - 10), NOW).await;

    let at = NOW + 1_500;
    let dry = store
        .cleanup(
            CleanupOptions {
                dry_run: true,
                ..CleanupOptions::default()
            },
            at,
        )
        .await
        .unwrap();
    assert_eq!(
        (dry.expired_deleted, dry.tombstones_purged, dry.audit_purged),
        (5, 0, 1)
    );
    assert_eq!(
        store
            .cleanup(
                CleanupOptions {
                    dry_run: true,
                    ..CleanupOptions::default()
                },
                at
            )
            .await
            .unwrap(),
        dry,
        "a dry run removes nothing"
    );

    // The tombstone outlives the cleanup at `at`: the consumed event is still refused.
    let out_of_time = store
        .cleanup(
            CleanupOptions {
                time_budget: Duration::ZERO,
                batch_size: 2,
                ..CleanupOptions::default()
            },
            at,
        )
        .await
        .unwrap();
    assert!(!out_of_time.complete);
    let mut total = out_of_time.expired_deleted;
    let mut audit = out_of_time.audit_purged;
    loop {
        let run = store
            .cleanup(
                CleanupOptions {
                    batch_size: 2,
                    ..CleanupOptions::default()
                },
                at,
            )
            .await
            .unwrap();
        total += run.expired_deleted;
        audit += run.audit_purged;
        if run.complete {
            break;
        }
    }
    assert_eq!((total, audit), (5, 1));
    assert_eq!(
        store.ingest(&validated(&consumed_json, NOW), at).await.unwrap(),
        IngestOutcome::AlreadyUsed,
        "the tombstone outlives cleanup until the keypackage's own not_after"
    );
    assert_eq!(store.count(&owner.pubkey(), at).await.unwrap().available, 1);
    assert_eq!(authors_ids(&store, &owner, at).await.len(), 1);

    let after_tombstone = NOW + 2_500;
    let last = store.cleanup(CleanupOptions::default(), after_tombstone).await.unwrap();
    assert_eq!(
        (last.expired_deleted, last.tombstones_purged, last.complete),
        (0, 1, true)
    );
    let again = store.cleanup(CleanupOptions::default(), after_tombstone).await.unwrap();
    assert_eq!(
        (again.expired_deleted, again.tombstones_purged, again.audit_purged),
        (0, 0, 0)
    );
}

/// 50 concurrent ingests of distinct KeyPackages for one owner with cap 10:
/// exactly 10 stored, 40 `rate-limited:`.
pub async fn concurrent_ingests_respect_the_cap_exactly(make: MakeStore) {
    let store = make(policy()).await;
    let owner = Owner::new();
    let events: Vec<KeyPackageEvent> = (0..50)
        .map(|i| validated(&one_time(&owner).event_443(&owner, NOW - i), NOW))
        .collect();
    let tasks: Vec<_> = events
        .into_iter()
        .map(|event| {
            let store = store.clone();
            tokio::spawn(async move { store.ingest(&event, NOW).await.expect("store answers") })
        })
        .collect();
    let mut stored = 0;
    let mut limited = 0;
    for task in tasks {
        match task.await.unwrap() {
            IngestOutcome::Stored { .. } => stored += 1,
            outcome @ IngestOutcome::OverCap { .. } => {
                assert!(outcome.decision().1.starts_with("rate-limited:"));
                limited += 1
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((stored, limited), (10, 40));
    assert_eq!(store.count(&owner.pubkey(), NOW).await.unwrap().available, 10);
    let mut handed = BTreeSet::new();
    for _ in 0..11 {
        let claimed = store
            .claim(&owner.pubkey(), None, None, ConsumedVia::Claim, NOW)
            .await
            .unwrap();
        if let Some(r) = claimed.keypackage_ref {
            handed.insert(r);
        }
    }
    assert_eq!(handed.len(), 10, "exactly the 10 stored keypackages can be claimed");
}

/// 50 concurrent claims against 10 one-time KeyPackages and 1 last resort:
/// each one-time KeyPackage handed out once, the other 40 get the last resort.
pub async fn concurrent_claims_hand_each_one_time_keypackage_out_once(make: MakeStore) {
    let store = make(Policy {
        max_per_owner: 11,
        ..policy()
    })
    .await;
    let owner = Owner::new();
    let mut one_time_refs = BTreeSet::new();
    for i in 0..10 {
        let kp = one_time(&owner);
        one_time_refs.insert(kp.keypackage_ref.clone());
        ingest(&store, &kp.event_443(&owner, NOW - 100 + i), NOW).await;
    }
    let lr = owner.keypackage(KeyPackageSpec::last_resort());
    ingest(&store, &lr.event_443(&owner, NOW - 10), NOW).await;
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let store = store.clone();
            let me = owner.pubkey();
            let requester = format!("{i:064x}");
            tokio::spawn(async move {
                store
                    .claim(&me, None, Some(&requester), ConsumedVia::Claim, NOW)
                    .await
                    .expect("store answers")
            })
        })
        .collect();
    let mut handed = Vec::new();
    let mut last_resorts = 0;
    for task in tasks {
        let claimed = task.await.unwrap();
        let r = claimed.keypackage_ref.expect("nobody gets nothing");
        assert!(claimed.event.is_some());
        if claimed.last_resort {
            assert_eq!(r, lr.keypackage_ref);
            last_resorts += 1;
        } else {
            handed.push(r);
        }
    }
    let distinct: BTreeSet<_> = handed.iter().cloned().collect();
    assert_eq!(handed.len(), 10, "every one-time keypackage handed out");
    assert_eq!(distinct, one_time_refs, "each exactly once");
    assert_eq!(last_resorts, 40);
    let count = store.count(&owner.pubkey(), NOW).await.unwrap();
    assert_eq!((count.one_time, count.last_resort_available), (0, 1));
}

/// 20 concurrent consumes of one KeyPackage: exactly one succeeds.
pub async fn concurrent_consumes_of_one_keypackage_succeed_once(make: MakeStore) {
    let store = make(policy()).await;
    let owner = Owner::new();
    let json = one_time(&owner).event_443(&owner, NOW - 10);
    ingest(&store, &json, NOW).await;
    let id = event_id(&json);
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let store = store.clone();
            let id = id.clone();
            tokio::spawn(async move {
                store
                    .consume(&id, None, ConsumedVia::Consume, NOW)
                    .await
                    .expect("store answers")
            })
        })
        .collect();
    let mut consumed = 0;
    let mut already = 0;
    for task in tasks {
        match task.await.unwrap() {
            ConsumeOutcome::Consumed { .. } => consumed += 1,
            ConsumeOutcome::AlreadyConsumed { .. } => already += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((consumed, already), (1, 19));
    assert_eq!(store.audit(&owner.pubkey()).await.unwrap().len(), 1);
}

/// An ingest racing a deletion of the same KeyPackage never leaves it
/// available once the deletion was accepted.
pub async fn ingest_racing_deletion_never_leaves_it_available(make: MakeStore) {
    let store = make(Policy {
        max_per_owner: 50,
        ..policy()
    })
    .await;
    let owner = Owner::new();
    for round in 0..12u64 {
        let kp = one_time(&owner);
        let json = kp.event_443(&owner, NOW - 10 - round);
        let event = validated(&json, NOW);
        let deletion = parse_deletion(&owner.deletion(&[&event_id(&json)], &[], NOW), 65_536).unwrap();
        let ingest_task = {
            let store = store.clone();
            tokio::spawn(async move { store.ingest(&event, NOW).await.expect("store answers") })
        };
        let delete_task = {
            let store = store.clone();
            tokio::spawn(async move { store.delete(&deletion, NOW).await.expect("store answers") })
        };
        let (ingested, _) = (ingest_task.await.unwrap(), delete_task.await.unwrap());
        assert!(
            matches!(ingested, IngestOutcome::Stored { .. } | IngestOutcome::AlreadyUsed),
            "round {round}: {ingested:?}"
        );
        let served = served_ids(&store, &[filter(json!({"#i": [kp.keypackage_ref]}))], NOW).await;
        assert!(served.is_empty(), "round {round}: deleted keypackage still served");
        assert_eq!(
            ingest(&store, &json, NOW).await,
            IngestOutcome::AlreadyUsed,
            "round {round}"
        );
    }
    assert_eq!(store.count(&owner.pubkey(), NOW).await.unwrap().available, 0);
}

/// Re-submitting both twins of a consumed KeyPackage, even concurrently with
/// its consumption, never makes it available again.
pub async fn reingesting_consumed_twins_never_revives_them(make: MakeStore) {
    let store = make(policy()).await;
    let owner = Owner::new();
    let kp = one_time(&owner);
    let e443 = kp.event_443(&owner, NOW - 10);
    let e30443 = kp.event_30443(&owner, &kp.default_slot(), NOW - 10);
    ingest(&store, &e443, NOW).await;
    let replays: Vec<_> = [e30443.clone(), e443.clone(), e30443.clone()]
        .into_iter()
        .map(|json| {
            let store = store.clone();
            let event = validated(&json, NOW);
            tokio::spawn(async move { store.ingest(&event, NOW).await.expect("store answers") })
        })
        .collect();
    let claimed = store
        .claim(&owner.pubkey(), None, None, ConsumedVia::Claim, NOW)
        .await
        .unwrap();
    assert_eq!(claimed.keypackage_ref.as_deref(), Some(kp.keypackage_ref.as_str()));
    for replay in replays {
        replay.await.unwrap();
    }
    for json in [&e443, &e30443] {
        assert_eq!(ingest(&store, json, NOW).await, IngestOutcome::AlreadyUsed);
    }
    assert!(authors_ids(&store, &owner, NOW).await.is_empty());
    assert_eq!(store.count(&owner.pubkey(), NOW).await.unwrap().available, 0);
    let again = store
        .claim(&owner.pubkey(), None, None, ConsumedVia::Claim, NOW)
        .await
        .unwrap();
    assert_eq!(again.event, None);
}

fn rate(count: u32, per_secs: u64) -> Option<Rate> {
    Some(Rate { count, per_secs })
}

/// One requester cannot take more than its share of an owner's KeyPackages
/// while another still can; anonymous claims share a stricter bucket; all
/// requesters together are bounded per owner; tokens come back with time.
pub async fn claims_are_rate_limited_per_requester_and_per_owner(make: MakeStore) {
    let store = make(Policy {
        limits: RateLimits {
            claim: rate(2, 600),
            owner_claim: rate(5, 600),
            anon_claim: rate(1, 600),
            ingest: None,
        },
        ..policy()
    })
    .await;
    let owner = Owner::new();
    for i in 0..8 {
        ingest(&store, &one_time(&owner).event_443(&owner, NOW - 100 + i), NOW).await;
    }
    let me = owner.pubkey();
    let claim = |requester: Option<String>, now: u64| {
        let store = store.clone();
        let me = me.clone();
        async move {
            store
                .claim(&me, None, requester.as_deref(), ConsumedVia::Claim, now)
                .await
                .unwrap()
        }
    };
    let alice = Some("a1".repeat(32));
    let bob = Some("b0".repeat(32));
    let carol = Some("c0".repeat(32));
    assert!(claim(alice.clone(), NOW).await.event.is_some());
    assert!(claim(alice.clone(), NOW).await.event.is_some());
    let refused = claim(alice.clone(), NOW).await;
    assert_eq!(
        (refused.event.as_ref(), refused.retry_after),
        (None, Some(300)),
        "alice used her share"
    );
    assert!(claim(bob.clone(), NOW).await.event.is_some(), "bob still can");
    assert!(claim(None, NOW).await.event.is_some());
    assert_eq!(
        claim(None, NOW).await.retry_after,
        Some(600),
        "anonymous bucket is stricter"
    );
    assert!(claim(bob.clone(), NOW).await.event.is_some());
    // Five handed out: the owner-wide bucket is empty for everyone.
    assert!(claim(carol.clone(), NOW).await.retry_after.is_some());
    assert_eq!(
        store.count(&me, NOW).await.unwrap().available,
        3,
        "refusals consume nothing"
    );
    let later = NOW + 600;
    assert!(
        claim(alice.clone(), later).await.event.is_some(),
        "tokens come back with time"
    );
    assert_eq!(store.audit(&me).await.unwrap().len(), 6);
}

/// A Welcome counts as a claim by its signer: it cannot be used to drain.
pub async fn welcome_consumption_is_rate_limited_like_a_claim(make: MakeStore) {
    let store = make(Policy {
        limits: RateLimits {
            claim: rate(1, 600),
            ..RateLimits::default()
        },
        ..policy()
    })
    .await;
    let owner = Owner::new();
    let signer = Owner::new().pubkey();
    let first = one_time(&owner).event_443(&owner, NOW - 10);
    let second = one_time(&owner).event_443(&owner, NOW - 5);
    ingest(&store, &first, NOW).await;
    ingest(&store, &second, NOW).await;
    let welcome = |id: String| {
        let store = store.clone();
        let signer = signer.clone();
        async move {
            store
                .consume(&id, Some(&signer), ConsumedVia::Welcome, NOW)
                .await
                .unwrap()
        }
    };
    assert!(matches!(
        welcome(event_id(&first)).await,
        ConsumeOutcome::Consumed { .. }
    ));
    assert_eq!(
        welcome(event_id(&second)).await,
        ConsumeOutcome::RateLimited { retry_after: 600 }
    );
    assert_eq!(
        store.count(&owner.pubkey(), NOW).await.unwrap().available,
        1,
        "the second stays available"
    );
    // An operator's direct consume is not limited.
    let direct = store
        .consume(&event_id(&second), None, ConsumedVia::Consume, NOW)
        .await
        .unwrap();
    assert!(matches!(direct, ConsumeOutcome::Consumed { .. }));
}

/// New KeyPackages per owner are limited; a twin is the same KeyPackage and
/// takes no token.
pub async fn new_keypackages_are_rate_limited_per_owner_twins_once(make: MakeStore) {
    let store = make(Policy {
        limits: RateLimits {
            ingest: rate(2, 600),
            ..RateLimits::default()
        },
        ..policy()
    })
    .await;
    let owner = Owner::new();
    let first = one_time(&owner);
    ingest(&store, &first.event_443(&owner, NOW - 10), NOW).await;
    let twin = ingest(&store, &first.event_30443(&owner, &first.default_slot(), NOW - 10), NOW).await;
    assert_eq!(twin, IngestOutcome::StoredTwin);
    assert!(matches!(
        ingest(&store, &one_time(&owner).event_443(&owner, NOW - 5), NOW).await,
        IngestOutcome::Stored { .. }
    ));
    let third = one_time(&owner).event_443(&owner, NOW - 1);
    let limited = ingest(&store, &third, NOW).await;
    assert_eq!(limited, IngestOutcome::RateLimited { retry_after: 300 });
    assert!(limited.decision().1.starts_with("rate-limited: "));
    assert_eq!(store.count(&owner.pubkey(), NOW).await.unwrap().available, 2);
    let later = NOW + 300;
    assert!(matches!(
        ingest(&store, &third, later).await,
        IngestOutcome::Stored { .. }
    ));
    // Another owner has a bucket of its own.
    let other = Owner::new();
    assert!(matches!(
        ingest(&store, &one_time(&other).event_443(&other, NOW), NOW).await,
        IngestOutcome::Stored { .. }
    ));
}

/// The owner routes' store calls: every record of the owner in every state,
/// nobody else's; a NIP-98 auth event is accepted once.
pub async fn owners_see_all_their_keypackages_and_auth_events_work_once(make: MakeStore) {
    let store = make(policy()).await;
    let owner = Owner::new();
    let kept = one_time(&owner);
    let used = one_time(&owner);
    ingest(&store, &kept.event_443(&owner, NOW - 20), NOW).await;
    let used_json = used.event_443(&owner, NOW - 10);
    ingest(&store, &used_json, NOW).await;
    store
        .consume(&event_id(&used_json), None, ConsumedVia::Consume, NOW)
        .await
        .unwrap();
    let stranger = Owner::new();
    ingest(&store, &one_time(&stranger).event_443(&stranger, NOW), NOW).await;
    let records = store.keypackages_of(&owner.pubkey()).await.unwrap();
    let states: Vec<_> = records.iter().map(|r| (r.keypackage_ref.clone(), r.state)).collect();
    assert_eq!(
        states,
        vec![
            (kept.keypackage_ref.clone(), kp_domain::KeyPackageState::Available),
            (used.keypackage_ref.clone(), kp_domain::KeyPackageState::Consumed),
        ]
    );
    let auth = "9a".repeat(32);
    assert!(store.remember_auth(&auth, NOW + 121).await.unwrap());
    assert!(!store.remember_auth(&auth, NOW + 121).await.unwrap(), "replayed");
    assert!(store.remember_auth(&"9b".repeat(32), NOW + 121).await.unwrap());
}

/// Consume-on-query: 30 concurrent queries for one owner with 10 one-time
/// KeyPackages never serve one of them twice; once none is left, the last
/// resort is served.
pub async fn concurrent_consuming_queries_never_serve_a_one_time_keypackage_twice(make: MakeStore) {
    let store = make(Policy {
        max_per_owner: 11,
        ..policy()
    })
    .await;
    let owner = Owner::new();
    let mut ref_of = std::collections::BTreeMap::new();
    for i in 0..10 {
        let kp = one_time(&owner);
        let e443 = kp.event_443(&owner, NOW - 100 + i);
        let e30443 = kp.event_30443(&owner, &kp.default_slot(), NOW - 100 + i);
        ingest(&store, &e443, NOW).await;
        ingest(&store, &e30443, NOW).await;
        ref_of.insert(event_id(&e443), kp.keypackage_ref.clone());
        ref_of.insert(event_id(&e30443), kp.keypackage_ref.clone());
    }
    let lr = owner.keypackage(KeyPackageSpec::last_resort());
    let lr_json = lr.event_443(&owner, NOW - 500);
    ingest(&store, &lr_json, NOW).await;
    let filters = vec![filter(json!({"authors": [owner.pubkey()]}))];
    let tasks: Vec<_> = (0..30)
        .map(|i| {
            let store = store.clone();
            let filters = filters.clone();
            let requester = format!("{i:064x}");
            tokio::spawn(async move {
                store
                    .query_consuming(&filters, Some(&requester), NOW)
                    .await
                    .expect("store answers")
            })
        })
        .collect();
    let mut seen: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for (answer_no, task) in tasks.into_iter().enumerate() {
        let answer = task.await.unwrap();
        let refs: BTreeSet<String> = answer
            .events
            .iter()
            .filter_map(|e| ref_of.get(&event_id(e)).cloned())
            .collect();
        for r in refs {
            if let Some(first) = seen.insert(r.clone(), answer_no) {
                panic!("one-time keypackage {r} served in answers {first} and {answer_no}");
            }
        }
    }
    let count = store.count(&owner.pubkey(), NOW).await.unwrap();
    assert_eq!(
        count.one_time as usize,
        10 - seen.len(),
        "what was served was consumed, nothing else"
    );
    // Drain what is left, then only the last resort is served.
    loop {
        let answer = store.query_consuming(&filters, None, NOW).await.unwrap();
        if answer.events.iter().all(|e| !ref_of.contains_key(&event_id(e))) {
            assert_eq!(
                answer.events,
                vec![lr_json.clone()],
                "the last resort when none is left"
            );
            break;
        }
    }
    assert_eq!(store.count(&owner.pubkey(), NOW).await.unwrap().one_time, 0);
    assert!(store.count(&owner.pubkey(), NOW).await.unwrap().last_resort_used);
}

/// Two stores over the same data, as two service instances would be: 30
/// concurrent ingests for one owner (cap 10) and 20 concurrent claims spread
/// over both still keep the cap exact and hand each KeyPackage out once.
pub async fn two_stores_on_the_same_data_keep_the_cap_and_at_most_once(stores: [Arc<dyn Store>; 2]) {
    let owner = Owner::new();
    let ingests: Vec<_> = (0..30)
        .map(|i| {
            let store = Arc::clone(&stores[i % 2]);
            let event = validated(&one_time(&owner).event_443(&owner, NOW - 10), NOW);
            tokio::spawn(async move { store.ingest(&event, NOW).await.expect("store answers") })
        })
        .collect();
    let mut stored = 0;
    for task in ingests {
        match task.await.unwrap() {
            IngestOutcome::Stored { .. } => stored += 1,
            IngestOutcome::OverCap { cap: 10 } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(stored, 10);
    let claims: Vec<_> = (0..20)
        .map(|i| {
            let store = Arc::clone(&stores[i % 2]);
            let me = owner.pubkey();
            tokio::spawn(async move {
                store
                    .claim(&me, None, None, ConsumedVia::Claim, NOW)
                    .await
                    .expect("store answers")
            })
        })
        .collect();
    let mut handed = BTreeSet::new();
    let mut empty = 0;
    for task in claims {
        match task.await.unwrap().keypackage_ref {
            Some(r) => assert!(handed.insert(r), "handed out twice"),
            None => empty += 1,
        }
    }
    assert_eq!((handed.len(), empty), (10, 10));
    assert_eq!(stores[0].audit(&owner.pubkey()).await.unwrap().len(), 10);
}

/// An account with three devices (three 30443 slots of current-profile
/// KeyPackages) and a legacy 443: the count splits them by profile, MDK's
/// filter gets every slot, current ones outrank the newer legacy one under
/// any limit, rotation in a slot retires the older KeyPackage, and a kind 5
/// with `e` and `k=30443` retires one; every answer is the signed event.
pub async fn current_profile_ranks_first_in_every_device_slot(make: MakeStore) {
    let store = make(Policy {
        max_per_author: 10,
        ..policy()
    })
    .await;
    let owner = Owner::new();
    let me = owner.pubkey();
    let slots = [random_slot(), random_slot(), random_slot()];
    let current: Vec<String> = slots
        .iter()
        .enumerate()
        .map(|(n, d)| {
            owner
                .current_keypackage(CurrentSpec::one_time_at(NOW))
                .event(&owner, d, NOW - 300 + n as u64)
        })
        .collect();
    let legacy = one_time(&owner).event_443(&owner, NOW - 10);
    for json in current.iter().chain([&legacy]) {
        assert!(matches!(ingest(&store, json, NOW).await, IngestOutcome::Stored { .. }));
    }
    let count = store.count(&me, NOW).await.unwrap();
    assert_eq!((count.available, count.current, count.legacy), (4, 3, 1));

    let mdk = filter(json!({"kinds": [30443], "authors": [me], "limit": 12}));
    let served = store.query(std::slice::from_ref(&mdk), NOW).await.unwrap();
    let mut expected = current.clone();
    expected.reverse();
    assert_eq!(served, expected, "every device slot, newest first, verbatim");

    // The legacy one is the newest, yet a limit is spent on current ones first.
    let top3 = served_ids(&store, &[filter(json!({"authors": [me], "limit": 3}))], NOW).await;
    assert_eq!(top3.len(), 3);
    assert!(
        !top3.contains(&event_id(&legacy)),
        "a legacy KeyPackage never crowds a current one out"
    );
    let all = authors_ids(&store, &owner, NOW).await;
    assert_eq!(all.len(), 4);

    // Rotation: a newer KeyPackage in slot 0 retires the older one.
    let rotated = owner
        .current_keypackage(CurrentSpec::last_resort_at(NOW))
        .event(&owner, &slots[0], NOW - 5);
    assert!(matches!(
        ingest(&store, &rotated, NOW).await,
        IngestOutcome::Stored { ref retired } if retired.len() == 1
    ));
    let served = served_ids(&store, std::slice::from_ref(&mdk), NOW).await;
    assert_eq!(served.len(), 3);
    assert!(served.contains(&event_id(&rotated)));
    assert!(!served.contains(&event_id(&current[0])));
    assert_eq!(ingest(&store, &current[0], NOW).await, IngestOutcome::AlreadyUsed);

    // Sign-out of one device: kind 5 with `e` and `k=30443`.
    let deletion = owner.sign(
        5,
        &[
            vec!["e".into(), event_id(&current[1])],
            vec!["k".into(), "30443".into()],
        ],
        "",
        NOW,
    );
    let deletion = parse_deletion(&deletion, 65_536).unwrap();
    assert_eq!(store.delete(&deletion, NOW).await.unwrap().retired.len(), 1);
    let served = served_ids(&store, std::slice::from_ref(&mdk), NOW).await;
    assert_eq!(served, vec![event_id(&rotated), event_id(&current[2])]);
    let count = store.count(&me, NOW).await.unwrap();
    assert_eq!((count.current, count.legacy, count.last_resort_available), (2, 1, 1));
    let records = store.keypackages_of(&me).await.unwrap();
    let profiles: Vec<_> = records.iter().map(|r| (r.profile, r.state)).collect();
    assert!(profiles.contains(&(kp_domain::Profile::Legacy, kp_domain::KeyPackageState::Available)));
    assert!(profiles.contains(&(kp_domain::Profile::Current, kp_domain::KeyPackageState::Replaced)));
    assert!(profiles.contains(&(kp_domain::Profile::Current, kp_domain::KeyPackageState::Deleted)));
}
