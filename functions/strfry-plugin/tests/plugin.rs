//! The plugin binary driven as strfry drives it: JSON lines on stdin, in the
//! shape strfry writes them, one answer per line on stdout, against a real
//! gateway (SQLite) on a free port.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use kp_http::{AppState, Config, Function};
use kp_testkit::factory::event_id;
use kp_testkit::factory::system_now;
use kp_testkit::{KeyPackageSpec, Owner};
use serde_json::{Value, json};

/// Starts a gateway on a fresh SQLite file; returns its base URL.
async fn gateway() -> String {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("kp-strfry");
    std::fs::create_dir_all(&dir).unwrap();
    // Tests run in parallel: one file each.
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let file = dir.join(format!(
        "{}-{}.db",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_file(&file);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let vars = HashMap::from([
        ("KP_STORE".to_owned(), format!("sqlite:{}", file.display())),
        ("KP_RELAY_TOKEN".to_owned(), "strfry-token".to_owned()),
        ("KP_PUBLIC_URL".to_owned(), base.clone()),
    ]);
    let config = Config::from_vars(|name| vars.get(name).cloned()).unwrap();
    let store = kp_http::open_store(&config).await.unwrap();
    let router = kp_http::router(AppState::new(store, config), Function::Gateway);
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    base
}

/// A line exactly as strfry writes it for an event received from a client.
fn strfry_line(event_json: &str) -> String {
    let event: Value = serde_json::from_str(event_json).unwrap();
    json!({
        "type": "new",
        "event": event,
        "receivedAt": system_now(),
        "sourceType": "IP4",
        "sourceInfo": "203.0.113.7",
    })
    .to_string()
}

/// Runs the plugin over `lines` with the given gateway; returns its answers.
fn run_plugin(gateway_url: &str, token: &str, lines: &[String]) -> Vec<Value> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_strfry-plugin"))
        .env("KP_GATEWAY_URL", gateway_url)
        .env("KP_RELAY_TOKEN", token)
        .env("KP_GATEWAY_TIMEOUT_MS", "5000")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the plugin");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut answers = Vec::new();
    // strfry waits for each answer before it sends the next event.
    for line in lines {
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
        let mut answer = String::new();
        stdout.read_line(&mut answer).unwrap();
        answers.push(serde_json::from_str(&answer).expect("one JSON answer per line"));
    }
    drop(stdin);
    assert!(
        child.wait().unwrap().success(),
        "the plugin ends cleanly when strfry closes stdin"
    );
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keypackages_welcomes_and_deletions_are_decided_by_the_service() {
    let base = gateway().await;
    let alice = Owner::new();
    let now = system_now();
    let keypackage = alice
        .keypackage(KeyPackageSpec::one_time_at(now))
        .event_443(&alice, now);
    let forged = alice
        .keypackage(KeyPackageSpec::one_time_at(now))
        .event_443(&Owner::new(), now);
    let note = alice.sign(1, &[], "hello", now);
    let welcome = Owner::new().welcome(&event_id(&keypackage), now);
    let deletion = alice.deletion(&[&event_id(&keypackage)], &[], now);
    let lines: Vec<String> = [&keypackage, &forged, &note, &welcome, &deletion]
        .map(|e| strfry_line(e))
        .to_vec();

    let answers = tokio::task::spawn_blocking(move || run_plugin(&base, "strfry-token", &lines))
        .await
        .unwrap();
    let ids = [&keypackage, &forged, &note, &welcome, &deletion].map(|e| event_id(e));
    for (answer, id) in answers.iter().zip(&ids) {
        assert_eq!(answer["id"], id.as_str(), "{answer}");
    }
    assert_eq!(answers[0]["action"], "accept", "{}", answers[0]);
    assert_eq!(answers[1]["action"], "reject");
    assert!(
        answers[1]["msg"].as_str().unwrap().starts_with("invalid: "),
        "{}",
        answers[1]
    );
    assert_eq!(answers[2], json!({"id": ids[2], "action": "accept", "msg": ""}));
    assert_eq!(answers[3]["action"], "accept", "{}", answers[3]);
    assert_eq!(answers[4]["action"], "accept", "{}", answers[4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_sees_what_the_plugin_let_in() {
    let base = gateway().await;
    let alice = Owner::new();
    let now = system_now();
    let keypackage = alice
        .keypackage(KeyPackageSpec::one_time_at(now))
        .event_443(&alice, now);
    let lines = vec![strfry_line(&keypackage)];
    let url = base.clone();
    let answers = tokio::task::spawn_blocking(move || run_plugin(&url, "strfry-token", &lines))
        .await
        .unwrap();
    assert_eq!(answers[0]["action"], "accept");
    let count: Value = reqwest_get(&format!("{base}/v1/keypackages/count?owner={}", alice.pubkey())).await;
    assert_eq!(count["available"], 1, "{count}");
}

async fn reqwest_get(url: &str) -> Value {
    reqwest::Client::new()
        .get(url)
        .bearer_auth("strfry-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_or_a_wrong_token_rejects_keypackages_with_error_and_lets_other_kinds_in() {
    let alice = Owner::new();
    let now = system_now();
    let keypackage = alice
        .keypackage(KeyPackageSpec::one_time_at(now))
        .event_443(&alice, now);
    let note = alice.sign(1, &[], "hello", now);
    let lines = vec![strfry_line(&keypackage), strfry_line(&note), "not json".to_owned()];

    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let down_lines = lines.clone();
    let answers = tokio::task::spawn_blocking(move || run_plugin(&dead, "strfry-token", &down_lines))
        .await
        .unwrap();
    assert_eq!(answers[0]["action"], "reject");
    assert!(
        answers[0]["msg"].as_str().unwrap().starts_with("error: "),
        "{}",
        answers[0]
    );
    assert_eq!(answers[1]["action"], "accept");
    assert_eq!(answers[2]["action"], "reject", "unreadable input is never let in");

    let base = gateway().await;
    let answers = tokio::task::spawn_blocking(move || run_plugin(&base, "wrong-token", &lines))
        .await
        .unwrap();
    assert_eq!(answers[0]["action"], "reject");
    assert!(
        answers[0]["msg"].as_str().unwrap().starts_with("error: "),
        "{}",
        answers[0]
    );
}
