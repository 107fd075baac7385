//! Hostile input: events mutated at random (a byte of the JSON, a character
//! of the content, a dropped tag, a shifted `created_at`) never crash the
//! service, never get an HTTP 5xx, and when rejected never change the store.

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use kp_domain::Policy;
use kp_http::{AppState, Config, Function};
use kp_sqlite::{SqlitePath, SqliteStore};
use kp_store::Store;
use kp_testkit::{CurrentSpec, KeyPackageSpec, NOW, Owner};
use proptest::prelude::*;
use serde_json::{Value, json};
use tower::ServiceExt as _;

/// Valid events the mutations start from: a legacy 443 and its framed
/// 30443 twin, and a current-profile 30443 with its `0x8009` proof.
fn originals() -> &'static [(Owner, String)] {
    static EVENTS: OnceLock<Vec<(Owner, String)>> = OnceLock::new();
    EVENTS.get_or_init(|| {
        let owner = Owner::new();
        let kp = owner.keypackage(KeyPackageSpec::last_resort());
        let current = owner.current_keypackage(CurrentSpec::one_time_at(NOW));
        vec![
            (owner.clone(), kp.event_443(&owner, NOW - 10)),
            (owner.clone(), kp.event_30443(&owner, &kp.default_slot(), NOW - 10)),
            (owner.clone(), current.event(&owner, &"c0".repeat(32), NOW - 10)),
        ]
    })
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| tokio::runtime::Runtime::new().unwrap())
}

#[derive(Debug, Clone)]
enum Mutation {
    FlipByte { at: usize, xor: u8 },
    ContentChar { at: usize, to: char },
    DropTag { at: usize },
    ShiftCreatedAt { by: i64 },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(at, xor)| Mutation::FlipByte { at, xor }),
        (any::<usize>(), prop::char::range('!', '~')).prop_map(|(at, to)| Mutation::ContentChar { at, to }),
        any::<usize>().prop_map(|at| Mutation::DropTag { at }),
        (-100_000i64..100_000).prop_map(|by| Mutation::ShiftCreatedAt { by }),
    ]
}

/// Applies a mutation; `None` when it changes nothing.
fn mutate(json: &str, mutation: &Mutation) -> Option<Vec<u8>> {
    let mut event: Value = serde_json::from_str(json).unwrap();
    let bytes = match mutation {
        Mutation::FlipByte { at, xor } => {
            let mut bytes = json.as_bytes().to_vec();
            let at = at % bytes.len();
            bytes[at] ^= xor;
            return Some(bytes);
        }
        Mutation::ContentChar { at, to } => {
            let mut content: Vec<char> = event["content"].as_str().unwrap().chars().collect();
            let at = at % content.len();
            if content[at] == *to {
                return None;
            }
            content[at] = *to;
            event["content"] = json!(content.into_iter().collect::<String>());
            event.to_string().into_bytes()
        }
        Mutation::DropTag { at } => {
            let tags = event["tags"].as_array_mut().unwrap();
            let at = at % tags.len();
            tags.remove(at);
            event.to_string().into_bytes()
        }
        Mutation::ShiftCreatedAt { by } => {
            if *by == 0 {
                return None;
            }
            let created_at = event["created_at"].as_i64().unwrap() + by;
            event["created_at"] = json!(created_at);
            event.to_string().into_bytes()
        }
    };
    Some(bytes)
}

/// Everything the store would serve or count.
async fn snapshot(store: &Arc<dyn Store>, owner: &Owner) -> (Vec<String>, u64) {
    let everything = kp_domain::filter::Filter::from_json(&json!({"kinds": [443, 30443]})).unwrap();
    let served = store.query(&[everything], NOW).await.unwrap();
    let count = store.count(&owner.pubkey(), NOW).await.unwrap().available;
    (served, count)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn mutated_events_never_crash_and_rejected_ones_change_nothing(
        which in 0usize..3,
        mutation in mutation(),
        route in prop::sample::select(vec!["/v1/keypackages", "/v1/events"]),
    ) {
        let (owner, original) = &originals()[which];
        let Some(body) = mutate(original, &mutation) else { return Ok(()) };
        runtime().block_on(async {
            let store: Arc<dyn Store> = Arc::new(SqliteStore::open(SqlitePath::Memory, Policy::default()).unwrap());
            let config = Config::from_vars(|_| None).unwrap();
            let mut state = AppState::new(store.clone(), config);
            state.clock = Arc::new(|| NOW);
            let router = kp_http::router(state, Function::Gateway);
            let before = snapshot(&store, owner).await;
            let response = router
                .oneshot(Request::post(route).body(Body::from(body)).unwrap())
                .await
                .unwrap();
            let status = response.status();
            prop_assert!(status == StatusCode::OK || status.is_client_error(), "{status} for {mutation:?}");
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
            let answer: Value = serde_json::from_slice(&bytes).unwrap();
            if answer["accepted"] != json!(true) {
                prop_assert_eq!(snapshot(&store, owner).await, before, "a rejected event changed the store: {:?}", mutation);
            }
            Ok(())
        })?;
    }
}
