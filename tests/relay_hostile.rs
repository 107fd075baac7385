//! The relay against a hostile client: a raw WebSocket (not nostr-sdk, which
//! normalises what it sends) tries escaped verbs, duplicated keys, odd
//! whitespace and unicode, kind-less and escaped REQs, COUNT and NEG-OPEN, and
//! oversized frames. Whatever it sends, no REQ shape ever returns a
//! KeyPackage the service does not hold as available, and the relay keeps
//! serving everyone else.

use std::collections::HashMap;
use std::time::Duration;

use kp_http::{AppState, Config, Function};
use kp_testkit::factory::{event_id, system_now};
use kp_testkit::{KeyPackageSpec, Owner};
use relay::{KeyPackageRelay, RelayConfig};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

#[path = "support/raw.rs"]
mod raw;
use raw::Raw;

const WAIT: Duration = Duration::from_secs(15);

/// A gateway on a fresh SQLite file; returns its base URL.
async fn gateway() -> String {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("kp-relay-hostile");
    std::fs::create_dir_all(&dir).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let file = dir.join(format!(
        "{}-{}.db",
        std::process::id(),
        listener.local_addr().unwrap().port()
    ));
    let _ = std::fs::remove_file(&file);
    let vars: HashMap<&str, String> = HashMap::from([
        ("KP_STORE", format!("sqlite:{}", file.display())),
        ("KP_PUBLIC_URL", base.clone()),
    ]);
    let config = Config::from_vars(|name| vars.get(name).cloned()).expect("gateway configuration");
    let store = kp_http::open_store(&config).await.expect("open the store");
    let router = kp_http::router(AppState::new(store, config), Function::Gateway);
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    base
}

/// The relay in front of `gateway_url`, with `extra` variables; returns its ws:// URL.
async fn relay(gateway_url: &str, extra: &[(&str, &str)]) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let url = format!("ws://{addr}");
    let mut vars: HashMap<String, String> = HashMap::from([
        ("KP_RELAY_LISTEN".into(), addr.to_string()),
        ("KP_GATEWAY_URL".into(), gateway_url.to_owned()),
        ("KP_RELAY_AUTH".into(), "off".into()),
        ("KP_RELAY_PUBLIC_URL".into(), url.clone()),
    ]);
    vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let config = RelayConfig::from_vars(|name| vars.get(name).cloned()).expect("relay configuration");
    tokio::spawn(
        KeyPackageRelay::new(config)
            .unwrap()
            .serve(listener, std::future::pending()),
    );
    url
}

/// Inserts `"kind":<kind>,` at the start of an event object, so that the
/// object names `kind` twice.
fn with_duplicate_kind(event_json: &str, kind: u16) -> String {
    format!("{{\"kind\":{kind},{}", &event_json[1..])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_spelling_of_a_message_gets_a_keypackage_past_the_service() {
    let gateway = gateway().await;
    let url = relay(&gateway, &[]).await;
    let now = system_now();
    let alice = Owner::new();
    let mallory = Owner::new();
    let mut raw = Raw::connect(&url).await;

    // A KeyPackage the service refuses: signed by Mallory, naming Alice's credential.
    let forged = alice
        .keypackage(KeyPackageSpec::one_time_at(now))
        .event_443(&mallory, now);
    // A KeyPackage the service accepted and Alice then deleted.
    let deleted = alice
        .keypackage(KeyPackageSpec::one_time_at(now))
        .event_443(&alice, now);
    raw.send_text(&format!(r#"["EVENT",{deleted}]"#)).await;
    assert_eq!(raw.next(&["OK"]).await[2], true);
    let deletion = alice.sign(
        5,
        &[vec!["e".into(), event_id(&deleted)], vec!["k".into(), "443".into()]],
        "",
        now,
    );
    raw.send_text(&format!(r#"["EVENT",{deletion}]"#)).await;
    assert_eq!(raw.next(&["OK"]).await[2], true);

    let never_served = [event_id(&forged), event_id(&deleted)];
    for event in [&forged, &deleted] {
        for frame in [
            format!(r#"["EV\u0045NT",{event}]"#),
            format!("[ \"EVENT\" ,\n\t{event} ]"),
            format!(r#"["EVENT",{}]"#, with_duplicate_kind(event, 1)),
            format!(r#"["EVENT",{}]"#, with_duplicate_kind(event, 443)),
            format!("[\"EVENT\u{200b}\",{event}]"),
            format!(r#"["\uFEFFEVENT",{event}]"#),
        ] {
            raw.send_text(&frame).await;
            let answer = raw.next(&["OK", "NOTICE"]).await;
            if answer[0] == "OK" {
                assert_eq!(answer[2], false, "{frame} was accepted: {answer}");
            }
        }
    }

    // An ordinary note under an escaped verb is an ordinary note.
    let note = alice.sign(1, &[], "hello, relay", now);
    raw.send_text(&format!(r#"["EV\u0045NT",{note}]"#)).await;
    assert_eq!(raw.next(&["OK"]).await, json!(["OK", event_id(&note), true, ""]));

    let ids = json!(never_served).to_string();
    let authors = json!([alice.pubkey(), mallory.pubkey()]).to_string();
    let shapes = [
        r#"["REQ","s1",{}]"#.to_string(),
        format!(r#"["REQ","s2",{{"ids":{ids}}}]"#),
        format!(r#"["REQ","s3",{{"authors":{authors}}}]"#),
        format!(r#"["R\u0045Q","s4",{{"ids":{ids}}}]"#),
        r#"["R\u0045Q","s5",{}]"#.to_string(),
        format!(r#"["REQ","s6",{{"kinds":[443,30443],"authors":{authors}}}]"#),
        format!(r##"["REQ","s7",{{"kinds":[1,443],"authors":{authors}}},{{"#e":{ids}}}]"##),
        format!("[ \"REQ\" , \"s8\" ,\n {{ \"authors\" : {authors} }} ]"),
    ];
    for (n, shape) in shapes.iter().enumerate() {
        let served = raw.req_ids(shape, &format!("s{}", n + 1)).await;
        for id in &never_served {
            assert!(!served.contains(id), "{shape} served {id}");
        }
    }
    // The note comes back from a kind-less REQ, so those REQs did reach the library.
    let served = raw.req_ids(r#"["REQ","notes",{}]"#, "notes").await;
    assert!(served.contains(&event_id(&note)), "{served:?}");

    // COUNT and NEG-OPEN of KeyPackage kinds are refused; COUNT of the rest counts no KeyPackage.
    raw.send_text(&format!(r#"["COUNT","c1",{{"kinds":[443],"authors":{authors}}}]"#))
        .await;
    let closed = raw.next(&["CLOSED", "COUNT"]).await;
    assert_eq!(closed[0], "CLOSED", "{closed}");
    assert!(closed[2].as_str().unwrap().starts_with("blocked: "), "{closed}");
    raw.send_text(&format!(r#"["COUNT","c2",{{"ids":{ids}}}]"#)).await;
    let count = raw.next(&["CLOSED", "COUNT"]).await;
    assert_eq!(count, json!(["COUNT", "c2", {"count": 0}]));
    raw.send_text(r#"["NEG-OPEN","n1",{"kinds":[30443]},"6100000200"]"#)
        .await;
    let error = raw.next(&["NEG-ERR", "NEG-MSG"]).await;
    assert_eq!(error[0], "NEG-ERR", "{error}");

    // What does not parse gets a NOTICE and nothing else; the connection still works.
    raw.send_text(r#"["EVENT",{"kind":443}"#).await;
    assert_eq!(raw.next(&["NOTICE", "OK"]).await[0], "NOTICE");
    let served = raw.req_ids(r#"["REQ","again",{"ids":[]}]"#, "again").await;
    assert!(served.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_oversized_frame_is_refused_and_the_relay_serves_others() {
    let gateway = gateway().await;
    let url = relay(&gateway, &[("KP_RELAY_MAX_MESSAGE_BYTES", "16384")]).await;
    let now = system_now();
    let alice = Owner::new();
    let big = alice.sign(1, &[], &"x".repeat(20_000), now);

    let mut hostile = Raw::connect(&url).await;
    hostile.send_text(&format!(r#"["EVENT",{big}]"#)).await;
    // The relay ends that connection: a NOTICE and a close, or a reset.
    let ended = async {
        loop {
            match hostile.recv().await {
                Some(Ok(Message::Text(text))) => {
                    let value: Value = serde_json::from_str(text.as_str()).unwrap();
                    assert_ne!(value[0], "OK", "the oversized event got an OK: {value}");
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return,
            }
        }
    };
    tokio::time::timeout(WAIT, ended)
        .await
        .expect("the relay ends the oversized connection");

    let mut other = Raw::connect(&url).await;
    let note = alice.sign(1, &[], "still here", now);
    other.send_text(&format!(r#"["EVENT",{note}]"#)).await;
    assert_eq!(other.next(&["OK"]).await[2], true);
    let served = other
        .req_ids(
            &format!(r#"["REQ","mine",{{"authors":["{}"]}}]"#, alice.pubkey()),
            "mine",
        )
        .await;
    assert_eq!(served, vec![event_id(&note)], "the oversized event was not kept");
}

/// The owner's available KeyPackages, as the gateway counts them.
async fn available(gateway: &str, owner: &Owner) -> u64 {
    let count: Value = reqwest::get(format!("{gateway}/v1/keypackages/count?owner={}", owner.pubkey()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    count["available"].as_u64().unwrap()
}

/// Answers the relay's challenge as `keys`; returns once the relay accepted it.
async fn authenticate(raw: &mut Raw, url: &str, keys: &Owner) {
    let challenge = raw.next(&["AUTH"]).await[1].as_str().unwrap().to_owned();
    let auth = keys.sign(
        22242,
        &[
            vec!["relay".into(), url.to_owned()],
            vec!["challenge".into(), challenge],
        ],
        "",
        system_now(),
    );
    raw.send_text(&format!(r#"["AUTH",{auth}]"#)).await;
    assert_eq!(raw.next(&["OK"]).await[2], true, "AUTH accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_welcome_consumes_only_when_signed_by_the_authenticated_pubkey() {
    let gateway = gateway().await;
    let url = relay(&gateway, &[("KP_RELAY_AUTH", "optional")]).await;
    let now = system_now();
    let alice = Owner::new();
    let mut publisher = Raw::connect(&url).await;
    let mut keypackages = Vec::new();
    for _ in 0..2 {
        let event = alice
            .keypackage(KeyPackageSpec::one_time_at(now))
            .event_443(&alice, now);
        publisher.send_text(&format!(r#"["EVENT",{event}]"#)).await;
        assert_eq!(publisher.next(&["OK"]).await[2], true);
        keypackages.push(event_id(&event));
    }
    assert_eq!(available(&gateway, &alice).await, 2);

    // A throwaway key on a connection that never authenticated: delivered, nothing consumed.
    let mallory = Owner::new();
    let mut anonymous = Raw::connect(&url).await;
    let welcome = mallory.welcome(&keypackages[0], now);
    anonymous.send_text(&format!(r#"["EVENT",{welcome}]"#)).await;
    let ok = anonymous.next(&["OK"]).await;
    assert_eq!(ok[2], true, "{ok}");
    assert!(ok[3].as_str().unwrap().contains("nothing consumed"), "{ok}");
    assert_eq!(available(&gateway, &alice).await, 2);

    // Bob authenticates; a Welcome signed by someone else still consumes nothing.
    let bob = Owner::new();
    let mut authenticated = Raw::connect(&url).await;
    authenticate(&mut authenticated, &url, &bob).await;
    let carols = Owner::new().welcome(&keypackages[0], now);
    authenticated.send_text(&format!(r#"["EVENT",{carols}]"#)).await;
    assert_eq!(authenticated.next(&["OK"]).await[2], true);
    assert_eq!(available(&gateway, &alice).await, 2);

    // Bob's own Welcome consumes the KeyPackage it names.
    let bobs = bob.welcome(&keypackages[0], now);
    authenticated.send_text(&format!(r#"["EVENT",{bobs}]"#)).await;
    assert_eq!(
        authenticated.next(&["OK"]).await,
        json!(["OK", event_id(&bobs), true, ""])
    );
    assert_eq!(available(&gateway, &alice).await, 1);

    // Every Welcome was delivered to Alice all the same.
    let delivered = publisher
        .req_ids(
            &format!(r##"["REQ","w",{{"kinds":[444],"#e":["{}"]}}]"##, keypackages[0]),
            "w",
        )
        .await;
    assert_eq!(delivered.len(), 3, "{delivered:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connections_and_subscriptions_over_the_limits_are_refused_and_others_are_served() {
    let gateway = gateway().await;
    let url = relay(
        &gateway,
        &[("KP_RELAY_MAX_CONNECTIONS", "2"), ("KP_RELAY_MAX_SUBSCRIPTIONS", "3")],
    )
    .await;
    let mut first = Raw::connect(&url).await;
    let second = Raw::connect(&url).await;
    match tokio_tungstenite::connect_async(url.as_str()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503)
        }
        other => panic!("a third connection was not refused: {:?}", other.map(|_| ())),
    }

    // Three open subscriptions; the fourth is refused, the connection stays.
    for n in 0..3 {
        let id = format!("open{n}");
        first.req_ids(&format!(r#"["REQ","{id}",{{"kinds":[1]}}]"#), &id).await;
    }
    first.send_text(r#"["REQ","one-too-many",{"kinds":[1]}]"#).await;
    let closed = first.next(&["CLOSED", "EOSE"]).await;
    assert_eq!(closed[0], "CLOSED", "{closed}");
    assert_eq!(closed[1], "one-too-many");
    first.send_text(r#"["CLOSE","open0"]"#).await;
    let served = first
        .req_ids(r#"["REQ","after-close",{"kinds":[1]}]"#, "after-close")
        .await;
    assert!(served.is_empty());

    // Once a connection is gone, a normal client gets in and is served.
    drop(second);
    let reconnect = async {
        loop {
            if let Ok(raw) = Raw::try_connect(&url).await {
                return raw;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let mut newcomer = tokio::time::timeout(WAIT, reconnect)
        .await
        .expect("a freed connection slot is given to a new client");
    let alice = Owner::new();
    let note = alice.sign(1, &[], "room again", system_now());
    newcomer.send_text(&format!(r#"["EVENT",{note}]"#)).await;
    assert_eq!(newcomer.next(&["OK"]).await[2], true);
}
