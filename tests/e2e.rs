//! End to end, the way users meet the service: nostr clients (`nostr-sdk`
//! `Client`s, and a raw WebSocket where the exact NIP-01 messages matter)
//! talk to the relay (`functions/relay`) on a free port; the relay delegates
//! to the gateway on another free port, on SQLite and on Firestore (the
//! emulator). KeyPackages are made by MDK, as White Noise makes them: each
//! one published as a 443 and a 30443 twin. The clock is the real one.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use kp_http::{AppState, Config, Function};
use kp_testkit::current::random_slot;
use kp_testkit::emulator::firestore_emulator_host;
use kp_testkit::factory::system_now;
use kp_testkit::{CurrentSpec, KeyPackageSpec, Owner};
use nostr::prelude::RelayMessage;
use nostr::prelude::{Event, EventBuilder, Filter, FinalizeEvent as _, Keys, Kind, Tag, Timestamp};
use nostr_sdk::prelude::{Client, ClientNotification, SignerAuthenticator};
use relay::{KeyPackageRelay, RelayConfig};
use serde_json::{Value, json};

#[derive(Clone, Copy, Debug)]
enum Backend {
    Sqlite,
    Firestore,
}

fn unique() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("e{}_{}_", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Starts a gateway on `backend` with the given variables; returns its base URL.
async fn gateway(backend: Backend, vars: &[(&str, &str)]) -> String {
    let mut vars: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    match backend {
        Backend::Sqlite => {
            let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("kp-e2e");
            std::fs::create_dir_all(&dir).unwrap();
            let file = dir.join(format!("{}.db", unique()));
            let _ = std::fs::remove_file(&file);
            vars.insert("KP_STORE".into(), format!("sqlite:{}", file.display()));
        }
        Backend::Firestore => {
            let host = tokio::task::spawn_blocking(|| firestore_emulator_host().to_owned())
                .await
                .unwrap();
            vars.insert("KP_STORE".into(), "firestore".into());
            vars.insert("FIRESTORE_EMULATOR_HOST".into(), host);
            vars.insert("FIRESTORE_PROJECT_ID".into(), "kp-e2e".into());
            vars.insert("KP_COLLECTION_PREFIX".into(), unique());
        }
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    vars.insert("KP_PUBLIC_URL".into(), base.clone());
    let config = Config::from_vars(|name| vars.get(name).cloned()).expect("gateway configuration");
    let store = kp_http::open_store(&config).await.expect("open the store");
    let router = kp_http::router(AppState::new(store, config), Function::Gateway);
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    base
}

/// Starts the relay in front of `gateway_url`; returns its ws:// URL.
async fn relay(gateway_url: &str, auth: &str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let url = format!("ws://{addr}");
    let vars: HashMap<&str, String> = HashMap::from([
        ("KP_RELAY_LISTEN", addr.to_string()),
        ("KP_GATEWAY_URL", gateway_url.to_owned()),
        ("KP_RELAY_AUTH", auth.to_owned()),
        ("KP_RELAY_PUBLIC_URL", url.clone()),
    ]);
    let config = RelayConfig::from_vars(|name| vars.get(name).cloned()).expect("relay configuration");
    let relay = KeyPackageRelay::new(config).unwrap();
    tokio::spawn(relay.serve(listener, std::future::pending()));
    url
}

/// A nostr-sdk client connected to `url`, answering AUTH with `keys`. When
/// the relay sends a challenge (`KP_RELAY_AUTH` other than `off`), returns
/// once the relay accepted the client's AUTH, so that its REQs carry its pubkey.
async fn client(url: &str, keys: &Keys) -> Client {
    let client = Client::builder()
        .authenticator(SignerAuthenticator::new(keys.clone()))
        .build();
    let mut notifications = client.notifications();
    client.add_relay(url).and_connect().await.unwrap();
    let authenticated = async {
        while let Some(notification) = notifications.next().await {
            if let ClientNotification::Message { message, .. } = notification
                && let RelayMessage::Ok { status, message, .. } = *message
            {
                assert!(status, "AUTH refused: {message}");
                return;
            }
        }
    };
    tokio::time::timeout(WAIT, authenticated)
        .await
        .expect("the client authenticates");
    client
}

/// A client of a relay that sends no challenge.
async fn anonymous_client(url: &str) -> Client {
    let client = Client::default();
    client.add_relay(url).and_connect().await.unwrap();
    client
}

#[path = "support/raw.rs"]
mod raw;
use raw::Raw;

const WAIT: Duration = Duration::from_secs(15);

/// Publishes through the client; `Ok(())` when the relay said OK true, else
/// the relay's message.
async fn publish(client: &Client, event: &Event) -> Result<(), String> {
    let output = client.send_event(event).await.map_err(|e| e.to_string())?;
    match output.failed.values().next() {
        Some(message) => Err(message.clone()),
        None if output.success.is_empty() => Err("no relay answered".into()),
        None => Ok(()),
    }
}

async fn fetch(client: &Client, filter: Filter) -> Vec<Event> {
    client
        .fetch_events(filter)
        .timeout(WAIT)
        .await
        .expect("fetch events")
        .into_iter()
        .collect()
}

fn keypackage_filter(owner: &Keys) -> Filter {
    Filter::new()
        .kinds([Kind::from(443), Kind::from(30443)])
        .author(owner.public_key())
}

/// The `i` tag (KeyPackageRef) of a KeyPackage event.
fn keypackage_ref(event: &Event) -> String {
    event
        .tags
        .iter()
        .map(|t| t.as_slice())
        .find(|t| t.first().is_some_and(|name| name == "i"))
        .and_then(|t| t.get(1))
        .expect("KeyPackage events carry an i tag")
        .clone()
}

/// The MDK client (`tests/mdk-client`), built once per test process. It is
/// its own workspace: MDK's OpenMLS 0.8 cannot share a lockfile with the
/// service's OpenMLS 0.9.
fn mdk_client_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .unwrap()
            .join("mdk-client");
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("mdk-client/Cargo.toml");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let output = std::process::Command::new(cargo)
            .args(["build", "--quiet", "--locked", "--manifest-path"])
            .arg(&manifest)
            .env("CARGO_TARGET_DIR", &target)
            .output()
            .expect("run cargo to build the MDK client");
        assert!(
            output.status.success(),
            "building the MDK client ({}) failed:\n{}",
            manifest.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        target.join("debug/mdk-client")
    })
}

/// A White Noise user: an MDK client process holding the private parts of
/// the KeyPackages it publishes, and the same nostr keys for the relay client.
struct MdkUser {
    keys: Keys,
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl MdkUser {
    fn new() -> Self {
        let keys = Keys::generate();
        let mut child = std::process::Command::new(mdk_client_binary())
            .arg(keys.secret_key().to_secret_hex())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start the MDK client");
        let stdin = child.stdin.take().unwrap();
        let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        Self {
            keys,
            child,
            stdin,
            stdout,
        }
    }

    fn call(&mut self, request: Value) -> Value {
        use std::io::{BufRead as _, Write as _};
        tokio::task::block_in_place(|| {
            writeln!(self.stdin, "{request}").unwrap();
            self.stdin.flush().unwrap();
            let mut line = String::new();
            self.stdout.read_line(&mut line).unwrap();
            let answer: Value = serde_json::from_str(&line).expect("the MDK client answers JSON");
            assert!(answer.get("error").is_none(), "MDK refused {request}: {answer}");
            answer
        })
    }

    /// One KeyPackage as its 443 and 30443 twins, with `extra` tags added.
    fn keypackage_twins(&mut self, relay_url: &str, extra: &[Vec<String>]) -> Vec<Event> {
        let answer = self.call(json!({"op": "keypackage", "relay": relay_url, "extra_tags": extra}));
        answer["events"].as_array().unwrap().iter().map(to_event).collect()
    }

    /// A group with the KeyPackage's owner; returns the signed Welcome.
    fn create_group(&mut self, keypackage: &Event, relay_url: &str) -> Event {
        let answer = self.call(json!({"op": "create_group", "keypackage": keypackage, "relay": relay_url}));
        to_event(&answer["welcome"])
    }

    /// Joins the group of a Welcome; returns its members.
    fn accept_welcome(&mut self, welcome: &Event) -> HashSet<String> {
        let answer = self.call(json!({"op": "accept_welcome", "welcome": welcome}));
        answer["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_str().unwrap().to_owned())
            .collect()
    }
}

impl Drop for MdkUser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn to_event(value: &Value) -> Event {
    Event::from_json(value.to_string()).unwrap()
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() { super::$name(super::Backend::Sqlite).await }
            )*
        }
        mod firestore {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() { super::$name(super::Backend::Firestore).await }
            )*
        }
    };
}

on_both_backends!(
    mdk_keypackages_flow_from_publication_to_group_and_deletion,
    consuming_queries_never_hand_one_keypackage_to_two_clients,
    an_invalid_keypackage_gets_the_services_message_and_is_not_served,
    an_expiring_keypackage_stops_being_served,
    current_profile_keypackages_are_served_to_mdks_filter,
);

/// Alice publishes current-profile KeyPackages for two devices (and an old
/// legacy 443) through the relay with nostr-sdk; Bob fetches with MDK's
/// filter shape and gets both devices' signed events as published, the
/// legacy one not among them; the count says which profile each is.
async fn current_profile_keypackages_are_served_to_mdks_filter(backend: Backend) {
    let gateway = gateway(backend, &[]).await;
    let url = relay(&gateway, "optional").await;
    let alice = Owner::new();
    let bob = Keys::generate();
    let alice_client = client(&url, &alice.keys).await;
    let bob_client = client(&url, &bob).await;
    let now = system_now();

    let mut current = Vec::new();
    for device in 0..2 {
        let made = alice.current_keypackage(CurrentSpec::last_resort_at(now));
        let json = made.event(&alice, &random_slot(), now - 10 + device);
        let event = to_event(&serde_json::from_str(&json).unwrap());
        publish(&alice_client, &event)
            .await
            .expect("the relay accepts current-profile KeyPackages");
        current.push(event);
    }
    let legacy = alice
        .keypackage(KeyPackageSpec::one_time_at(now))
        .event_443(&alice, now);
    publish(&alice_client, &to_event(&serde_json::from_str(&legacy).unwrap()))
        .await
        .expect("legacy KeyPackages are still accepted");

    let mdk_filter: Filter = serde_json::from_value(json!({
        "kinds": [30443],
        "authors": [alice.pubkey()],
        "limit": 12,
    }))
    .unwrap();
    let served = fetch(&bob_client, mdk_filter).await;
    let served_ids: HashSet<_> = served.iter().map(|e| e.id).collect();
    let published_ids: HashSet<_> = current.iter().map(|e| e.id).collect();
    assert_eq!(served_ids, published_ids, "both device slots, nothing else");
    for event in &served {
        let original = current.iter().find(|e| e.id == event.id).unwrap();
        assert_eq!(event, original, "served as signed");
        event.verify().expect("Alice's signature");
    }

    let count: Value = reqwest::get(format!("{gateway}/v1/keypackages/count?owner={}", alice.pubkey()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(count["profiles"], json!({"current": 2, "legacy": 1}));
}

/// Alice publishes 5 KeyPackages; Bob finds live, signed ones, makes a group
/// with one, and Alice joins it from the Welcome; Alice deletes the used
/// KeyPackage's twins and it is no longer served.
async fn mdk_keypackages_flow_from_publication_to_group_and_deletion(backend: Backend) {
    let gateway = gateway(backend, &[("KP_MAX_PER_AUTHOR", "2")]).await;
    let url = relay(&gateway, "optional").await;
    let mut alice = MdkUser::new();
    let mut bob = MdkUser::new();
    let alice_client = client(&url, &alice.keys).await;
    let bob_client = client(&url, &bob.keys).await;

    let mut published = HashSet::new();
    for _ in 0..5 {
        for event in alice.keypackage_twins(&url, &[]) {
            publish(&alice_client, &event)
                .await
                .expect("the relay accepts MDK KeyPackages");
            published.insert(event.id);
        }
    }

    let served = fetch(&bob_client, keypackage_filter(&alice.keys)).await;
    // At most KP_MAX_PER_AUTHOR (2) KeyPackages, each with both twins.
    assert_eq!(served.len(), 4, "{served:?}");
    let refs: HashSet<String> = served.iter().map(keypackage_ref).collect();
    assert_eq!(refs.len(), 2);
    for event in &served {
        assert!(published.contains(&event.id), "only what Alice published is served");
        event.verify().expect("served events are signed by Alice");
        assert_eq!(event.pubkey, alice.keys.public_key());
    }

    // Bob makes a group with Alice's 30443, as White Noise does.
    let chosen = served.iter().find(|e| e.kind == Kind::from(30443)).unwrap();
    let chosen_ref = keypackage_ref(chosen);
    let twins: Vec<&Event> = served.iter().filter(|e| keypackage_ref(e) == chosen_ref).collect();
    assert_eq!(twins.len(), 2);
    let welcome = bob.create_group(chosen, &url);

    // The Welcome goes through the relay (the service records the use) and
    // Alice reads it back from there.
    publish(&bob_client, &welcome)
        .await
        .expect("the relay takes the Welcome");
    let delivered = fetch(&alice_client, Filter::new().kind(Kind::from(444)).event(chosen.id)).await;
    assert_eq!(delivered.len(), 1, "the Welcome is delivered");
    let members = alice.accept_welcome(&delivered[0]);
    let expected: HashSet<String> = [alice.keys.public_key().to_hex(), bob.keys.public_key().to_hex()].into();
    assert_eq!(
        members, expected,
        "Alice's MDK verified the Welcome and joined Bob's group"
    );

    // Alice retires the used KeyPackage: one kind 5 naming both twins.
    let deletion = EventBuilder::new(Kind::EventDeletion, "")
        .tags(twins.iter().map(|e| Tag::event(e.id)))
        .tags([Tag::parse(["k", "443"]).unwrap(), Tag::parse(["k", "30443"]).unwrap()])
        .finalize(&alice.keys)
        .unwrap();
    publish(&alice_client, &deletion)
        .await
        .expect("the relay takes the deletion");
    let after = fetch(&bob_client, keypackage_filter(&alice.keys)).await;
    assert!(!after.is_empty(), "Alice's other KeyPackages are still served");
    assert!(
        after.iter().all(|e| keypackage_ref(e) != chosen_ref),
        "the deleted KeyPackage is no longer served: {after:?}"
    );
}

/// With KP_CONSUME_ON_QUERY, two clients REQ the same owner at once and
/// never receive the same one-time KeyPackage; the service sees each client
/// as the requester it authenticated as.
async fn consuming_queries_never_hand_one_keypackage_to_two_clients(backend: Backend) {
    let gateway = gateway(backend, &[("KP_CONSUME_ON_QUERY", "true")]).await;
    let url = relay(&gateway, "optional").await;
    let alice = Owner::new();
    let alice_client = client(&url, &alice.keys).await;
    let now = system_now();
    for _ in 0..10 {
        let made = alice.keypackage(KeyPackageSpec::one_time_at(now));
        let event = Event::from_json(made.event_443(&alice, now)).unwrap();
        publish(&alice_client, &event).await.expect("accepted");
    }

    let bob = Keys::generate();
    let carol = Keys::generate();
    let bob_client = client(&url, &bob).await;
    let carol_client = client(&url, &carol).await;
    let filter = Filter::new().kind(Kind::from(443)).author(alice.keys.public_key());
    let answers = futures::future::join_all(
        [
            &bob_client,
            &carol_client,
            &bob_client,
            &carol_client,
            &bob_client,
            &carol_client,
        ]
        .map(|c| fetch(c, filter.clone())),
    )
    .await;
    let mut seen = HashSet::new();
    let mut served = 0;
    for answer in &answers {
        for event in answer {
            served += 1;
            assert!(
                seen.insert(keypackage_ref(event)),
                "a one-time KeyPackage was handed out twice"
            );
        }
    }
    assert!((2..=10).contains(&served), "served {served}");

    // Each consumption is recorded with the authenticated requester.
    let audit_url = format!("{gateway}/v1/me/audit");
    let auth = alice.nip98(&audit_url, "GET", None, system_now());
    let audit: Value = reqwest::Client::new()
        .get(&audit_url)
        .header("Authorization", auth)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let records = audit["records"].as_array().expect("audit records");
    assert_eq!(records.len(), served, "{audit}");
    let requesters: HashSet<&str> = records.iter().filter_map(|r| r["requester"].as_str()).collect();
    let expected: HashSet<String> = [bob.public_key().to_hex(), carol.public_key().to_hex()].into();
    assert!(
        requesters.iter().all(|r| expected.contains(*r)) && !requesters.is_empty(),
        "requesters {requesters:?}"
    );
}

/// A KeyPackage the service refuses is refused by the relay with the
/// service's own message, and never served.
async fn an_invalid_keypackage_gets_the_services_message_and_is_not_served(backend: Backend) {
    let gateway = gateway(backend, &[]).await;
    let url = relay(&gateway, "off").await;
    let alice = Owner::new();
    let now = system_now();
    let made = alice.keypackage(KeyPackageSpec::one_time_at(now));
    // Signed by Alice, but the KeyPackage inside names someone else.
    let mallory = Owner::new();
    let forged = made.event_443(&mallory, now);

    let mut raw = Raw::connect(&url).await;
    let (accepted, message) = raw.publish(&forged).await;
    assert!(!accepted);
    assert!(message.starts_with("invalid: "), "{message}");
    // The same words the gateway gives.
    let direct: Value = reqwest::Client::new()
        .post(format!("{gateway}/v1/events"))
        .body(forged.clone())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(direct["message"], message.as_str());

    let served = raw
        .req("kp", &[json!({"kinds": [443, 30443], "authors": [mallory.pubkey()]})])
        .await
        .unwrap();
    assert!(served.is_empty(), "{served:?}");
}

/// A KeyPackage with a NIP-40 expiration is served until then, not after.
async fn an_expiring_keypackage_stops_being_served(backend: Backend) {
    let gateway = gateway(backend, &[]).await;
    let url = relay(&gateway, "optional").await;
    let mut alice = MdkUser::new();
    let alice_client = client(&url, &alice.keys).await;
    let expires = Timestamp::now().as_secs() + 4;
    let expiration = vec!["expiration".to_owned(), expires.to_string()];
    for event in alice.keypackage_twins(&url, &[expiration]) {
        publish(&alice_client, &event).await.expect("accepted until it expires");
    }
    let reader = anonymous_client(&url).await;
    assert_eq!(fetch(&reader, keypackage_filter(&alice.keys)).await.len(), 2);
    while Timestamp::now().as_secs() <= expires {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(fetch(&reader, keypackage_filter(&alice.keys)).await.is_empty());
}

/// With the gateway down, KeyPackage events and REQs get `error:` and
/// nothing is accepted unchecked; other events are still kept and served.
#[tokio::test]
async fn a_gateway_outage_is_answered_with_error_and_nothing_is_let_in() {
    // A port that was free a moment ago: nothing listens there.
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let url = relay(&dead, "off").await;
    let alice = Owner::new();
    let now = system_now();
    let made = alice.keypackage(KeyPackageSpec::one_time_at(now));

    let mut raw = Raw::connect(&url).await;
    let (accepted, message) = raw.publish(&made.event_443(&alice, now)).await;
    assert!(!accepted);
    assert!(message.starts_with("error: "), "{message}");
    let closed = raw
        .req("kp", &[json!({"kinds": [443], "authors": [alice.pubkey()]})])
        .await
        .unwrap_err();
    assert!(closed.starts_with("error: "), "{closed}");
    let welcome = alice.welcome(&kp_testkit::factory::event_id(&made.event_443(&alice, now)), now);
    let (accepted, message) = raw.publish(&welcome).await;
    assert!(!accepted && message.starts_with("error: "), "{message}");

    // An ordinary note is the relay's own business.
    let note = alice.sign(1, &[], "hello", now);
    assert_eq!(raw.publish(&note).await, (true, String::new()));
    let notes = raw
        .req("notes", &[json!({"kinds": [1], "authors": [alice.pubkey()]})])
        .await
        .unwrap();
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0]["id"].as_str().unwrap(), kp_testkit::factory::event_id(&note));
}

/// KP_RELAY_AUTH=required: nothing is read or written before AUTH; a client
/// that authenticates publishes and reads; a bad AUTH is refused.
#[tokio::test]
async fn required_auth_gates_reads_and_writes() {
    let gateway = gateway(Backend::Sqlite, &[]).await;
    let url = relay(&gateway, "required").await;
    let alice = Owner::new();
    let now = system_now();

    let mut raw = Raw::connect(&url).await;
    let challenge = raw.next(&["AUTH"]).await[1].as_str().unwrap().to_owned();
    let closed = raw.req("kp", &[json!({"kinds": [443]})]).await.unwrap_err();
    assert!(closed.starts_with("auth-required: "), "{closed}");
    let (accepted, message) = raw.publish(&alice.sign(1, &[], "hi", now)).await;
    assert!(!accepted && message.starts_with("auth-required: "), "{message}");
    // An AUTH for another challenge is refused.
    let wrong = alice.sign(
        22242,
        &[
            vec!["relay".into(), url.clone()],
            vec!["challenge".into(), "not-it".into()],
        ],
        "",
        now,
    );
    raw.send(json!(["AUTH", serde_json::from_str::<Value>(&wrong).unwrap()]))
        .await;
    let ok = raw.next(&["OK"]).await;
    assert_eq!(ok[2], false);
    let right = alice.sign(
        22242,
        &[vec!["relay".into(), url.clone()], vec!["challenge".into(), challenge]],
        "",
        now,
    );
    raw.send(json!(["AUTH", serde_json::from_str::<Value>(&right).unwrap()]))
        .await;
    let ok = raw.next(&["OK"]).await;
    assert_eq!(ok[2], true, "{ok}");
    let made = alice.keypackage(KeyPackageSpec::one_time_at(now));
    assert_eq!(raw.publish(&made.event_443(&alice, now)).await, (true, String::new()));

    // nostr-sdk answers the challenge by itself.
    let bob = client(&url, &Keys::generate()).await;
    let served = fetch(
        &bob,
        Filter::new().kind(Kind::from(443)).author(alice.keys.public_key()),
    )
    .await;
    assert_eq!(served.len(), 1);
}

/// The service's `duplicate:` and `rate-limited:` words reach the client as
/// they are, `OK true` included.
#[tokio::test]
async fn the_ok_message_is_the_services_decision() {
    let gateway = gateway(Backend::Sqlite, &[("KP_MAX_PER_OWNER", "1")]).await;
    let url = relay(&gateway, "off").await;
    let alice = Owner::new();
    let now = system_now();
    let first = alice
        .keypackage(KeyPackageSpec::one_time_at(now))
        .event_443(&alice, now);
    let second = alice
        .keypackage(KeyPackageSpec::one_time_at(now))
        .event_443(&alice, now);
    let mut raw = Raw::connect(&url).await;
    assert_eq!(raw.publish(&first).await, (true, String::new()));
    assert_eq!(
        raw.publish(&first).await,
        (true, "duplicate: already have this event".to_owned())
    );
    let (accepted, message) = raw.publish(&second).await;
    assert!(!accepted && message.starts_with("rate-limited: "), "{message}");
}

/// Consume-on-query over the limit: the owner's KeyPackages are left out and
/// the client is told why, before EOSE.
#[tokio::test]
async fn a_rate_limited_consuming_query_says_so() {
    let gateway = gateway(
        Backend::Sqlite,
        &[("KP_CONSUME_ON_QUERY", "true"), ("KP_ANON_CLAIM_RATE", "2/600")],
    )
    .await;
    let url = relay(&gateway, "off").await;
    let alice = Owner::new();
    let now = system_now();
    let mut raw = Raw::connect(&url).await;
    for _ in 0..4 {
        let event = alice
            .keypackage(KeyPackageSpec::one_time_at(now))
            .event_443(&alice, now);
        assert_eq!(raw.publish(&event).await, (true, String::new()));
    }
    let filter = json!({"kinds": [443], "authors": [alice.pubkey()]});
    assert_eq!(raw.req("first", std::slice::from_ref(&filter)).await.unwrap().len(), 2);

    raw.send(json!(["REQ", "second", filter])).await;
    let notice = raw.next(&["NOTICE", "EVENT", "EOSE"]).await;
    assert_eq!(notice[0], "NOTICE", "{notice}");
    let text = notice[1].as_str().unwrap();
    assert!(
        text.starts_with("rate-limited: ") && text.contains(&alice.pubkey()),
        "{text}"
    );
    assert_eq!(raw.next(&["EVENT", "EOSE"]).await, json!(["EOSE", "second"]));
}
