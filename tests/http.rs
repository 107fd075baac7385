//! HTTP API v1 over real HTTP: the gateway router served on 127.0.0.1:0,
//! driven with an HTTP client, against SQLite, against Firestore on the
//! emulator and against PostgreSQL (both started by the harness). The clock
//! is fixed at `NOW`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use kp_domain::Policy;
use kp_firestore::{FirestoreSettings, FirestoreStore};
use kp_http::{AppState, Config, Function};
use kp_sqlite::{SqlitePath, SqliteStore};
use kp_store::Store;
use kp_testkit::emulator::firestore_emulator_host;
use kp_testkit::factory::event_id;
use kp_testkit::postgres::fresh_postgres_database;
use kp_testkit::{CurrentSpec, KeyPackageSpec, NOW, Owner};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Which backend a test runs against.
#[derive(Clone, Copy, Debug)]
enum Backend {
    Sqlite,
    Firestore,
    Postgres,
}

fn unique() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("h{}_{}_", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

async fn store(backend: Backend, policy: Policy) -> Arc<dyn Store> {
    match backend {
        Backend::Sqlite => {
            let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("kp-http-tests");
            std::fs::create_dir_all(&dir).unwrap();
            let file = dir.join(format!("{}.db", unique()));
            let _ = std::fs::remove_file(&file);
            Arc::new(SqliteStore::open(SqlitePath::file(file), policy).unwrap())
        }
        Backend::Firestore => {
            let host = tokio::task::spawn_blocking(|| firestore_emulator_host().to_owned())
                .await
                .unwrap();
            firestore_store(&host, policy, Duration::from_secs(30)).await
        }
        Backend::Postgres => {
            // Opened the way a process opens it: KP_STORE and KP_PG_POOL
            // read by the configuration, then `open_store`.
            let url = fresh_postgres_database().await;
            let mut config = config(&[("KP_STORE", &url), ("KP_PG_POOL", "4")]);
            assert_eq!(config.store, kp_http::StoreKind::Postgres(url.clone()));
            config.policy = policy;
            kp_http::open_store(&config).await.expect("open the postgres store")
        }
    }
}

async fn firestore_store(host: &str, policy: Policy, timeout: Duration) -> Arc<dyn Store> {
    let settings = FirestoreSettings {
        project_id: "kp-http".into(),
        database_id: "(default)".into(),
        emulator_host: Some(host.to_owned()),
        collection_prefix: unique(),
        request_timeout: timeout,
    };
    Arc::new(FirestoreStore::connect(&settings, policy).await.unwrap())
}

/// A running gateway and a client for it.
struct Server {
    base: String,
    http: reqwest::Client,
}

fn config(vars: &[(&str, &str)]) -> Config {
    let vars: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Config::from_vars(|name| vars.get(name).cloned()).expect("test configuration")
}

impl Server {
    /// A gateway on `backend`, its store enforcing the configuration's policy.
    async fn on(backend: Backend, vars: &[(&str, &str)]) -> Self {
        let config = config(vars);
        Self::start(store(backend, config.policy.clone()).await, config).await
    }

    async fn start(store: Arc<dyn Store>, mut config: Config) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        config.public_url = base.clone();
        let mut state = AppState::new(store, config);
        state.clock = Arc::new(|| NOW);
        let router = kp_http::router(state, Function::Gateway);
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        Self {
            base,
            // No pooled connections: a 413 answered before the body was read
            // closes its connection, which a pooled client could reuse.
            http: reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap(),
        }
    }

    async fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> (StatusCode, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn post_json(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.post(path, body.to_string()).await
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let response = self.http.get(format!("{}{path}", self.base)).send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

fn decision(id: &str, accepted: bool, message: &str) -> Value {
    json!({"event_id": id, "accepted": accepted, "message": message})
}

async fn every_route_over_http(backend: Backend) {
    let server = Server::on(backend, &[]).await;
    let alice = Owner::new();
    let bob = Owner::new();
    let me = alice.pubkey();

    // Ingest: stored, duplicate, invalid.
    let kp = alice.keypackage(KeyPackageSpec::one_time());
    let e443 = kp.event_443(&alice, NOW - 60);
    let id443 = event_id(&e443);
    assert_eq!(
        server.post("/v1/keypackages", e443.clone()).await,
        (StatusCode::OK, decision(&id443, true, ""))
    );
    assert_eq!(
        server.post("/v1/keypackages", e443.clone()).await.1,
        decision(&id443, true, "duplicate: already have this event")
    );
    let mut forged: Value = serde_json::from_str(&e443).unwrap();
    forged["content"] = json!("AAAA");
    let (status, body) = server.post_json("/v1/keypackages", &forged).await;
    assert_eq!(status, StatusCode::OK, "a rejection is a decision, not an HTTP error");
    assert_eq!(body["accepted"], json!(false));
    assert_eq!(body["message"], json!("invalid: event id does not match the event"));

    // Batch: one bad event never fails the others; order kept.
    let twin = kp.event_30443(&alice, &kp.default_slot(), NOW - 60);
    let lr = alice.keypackage(KeyPackageSpec::last_resort());
    let lr_json = lr.event_443(&alice, NOW - 30);
    let batch = json!({"events": [
        serde_json::from_str::<Value>(&twin).unwrap(),
        json!({"kind": 443}),
        serde_json::from_str::<Value>(&lr_json).unwrap(),
    ]});
    let (status, body) = server.post_json("/v1/keypackages/batch", &batch).await;
    assert_eq!(status, StatusCode::OK);
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    assert_eq!(results[0], decision(&event_id(&twin), true, ""));
    assert_eq!(results[1]["accepted"], json!(false));
    assert!(
        results[1]["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid: malformed event")
    );
    assert_eq!(results[2], decision(&event_id(&lr_json), true, ""));

    // Query: live events, verbatim, newest first; uppercase input accepted.
    let (status, body) = server
        .post_json(
            "/v1/keypackages/query",
            &json!({"filters": [{"authors": [me.to_uppercase()]}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let events = body["events"].as_array().unwrap();
    assert_eq!(events.len(), 3, "one-time twins and the last resort");
    assert!(
        events.contains(&serde_json::from_str::<Value>(&e443).unwrap()),
        "verbatim"
    );

    // Count.
    let (status, body) = server.get(&format!("/v1/keypackages/count?owner={me}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"owner": me, "available": 2, "one_time": 1, "by_ciphersuite": {"0x0001": 2},
               "last_resort": {"available": 1, "used": false}, "cap": 10,
               "profiles": {"current": 0, "legacy": 2}})
    );

    // Both profiles for one owner: counted apart, current answered first
    // even when the legacy one is newer, served verbatim.
    let carol = Owner::new();
    let current = carol
        .current_keypackage(CurrentSpec::one_time_at(NOW))
        .event(&carol, &"ca".repeat(32), NOW - 90);
    let legacy = carol.keypackage(KeyPackageSpec::one_time()).event_443(&carol, NOW - 10);
    for json in [&current, &legacy] {
        assert_eq!(
            server.post("/v1/keypackages", json.clone()).await.1["accepted"],
            json!(true)
        );
    }
    let (_, body) = server
        .get(&format!("/v1/keypackages/count?owner={}", carol.pubkey()))
        .await;
    assert_eq!(body["profiles"], json!({"current": 1, "legacy": 1}));
    let (_, body) = server
        .post_json(
            "/v1/keypackages/query",
            &json!({"filters": [{"authors": [carol.pubkey()], "limit": 1}]}),
        )
        .await;
    assert_eq!(
        body["events"],
        json!([serde_json::from_str::<Value>(&current).unwrap()])
    );

    // Claim: the 30443 twin of the one-time KeyPackage, then the last resort.
    let claim = json!({"owners": [me], "requester": bob.pubkey()});
    let (status, body) = server.post_json("/v1/keypackages/claim", &claim).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["claimed"][0]["owner"], json!(me));
    assert_eq!(
        body["claimed"][0]["event"],
        serde_json::from_str::<Value>(&twin).unwrap()
    );
    assert_eq!(body["claimed"][0]["last_resort"], json!(false));
    let (_, body) = server.post_json("/v1/keypackages/claim", &claim).await;
    assert_eq!(body["claimed"][0]["last_resort"], json!(true));
    let nobody = Owner::new().pubkey();
    let (_, body) = server
        .post_json("/v1/keypackages/claim", &json!({"owners": [nobody]}))
        .await;
    assert_eq!(
        body["claimed"][0],
        json!({"owner": nobody, "event": null, "last_resort": false})
    );

    // Consume: 200, 409 already consumed, 404 unknown, last resort.
    let direct = alice.keypackage(KeyPackageSpec::one_time());
    let direct_json = direct.event_443(&alice, NOW - 20);
    let direct_id = event_id(&direct_json);
    server.post("/v1/keypackages", direct_json).await;
    let path = format!("/v1/keypackages/{direct_id}/consume");
    assert_eq!(
        server.post_json(&path, &json!({})).await,
        (
            StatusCode::OK,
            json!({"event_id": direct_id, "keypackage_ref": direct.keypackage_ref, "consumed": true})
        )
    );
    let (status, body) = server.post(&path, "").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"]["code"], json!("already_consumed"));
    let (status, body) = server
        .post_json(&format!("/v1/keypackages/{}/consume", "ab".repeat(32)), &json!({}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"]["message"].is_string());
    let (status, body) = server
        .post_json(
            &format!("/v1/keypackages/{}/consume", event_id(&lr_json)),
            &json!({"consumed_by": bob.pubkey()}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["consumed"], json!(false));
    assert_eq!(body["last_resort"], json!(true));

    // Welcome: consumes what it names; an unknown one is still accepted.
    let welcomed = alice.keypackage(KeyPackageSpec::one_time());
    let welcomed_json = welcomed.event_443(&alice, NOW - 10);
    server.post("/v1/keypackages", welcomed_json.clone()).await;
    let welcome = bob.welcome(&event_id(&welcomed_json), NOW);
    assert_eq!(
        server.post("/v1/welcomes", welcome.clone()).await.1,
        decision(&event_id(&welcome), true, "")
    );
    let (_, body) = server.post("/v1/welcomes", bob.welcome(&"cd".repeat(32), NOW)).await;
    assert_eq!(body["accepted"], json!(true));
    assert!(body["message"].as_str().unwrap().contains("nothing consumed"));

    // Deletion through /v1/events: retires the owner's KeyPackage.
    let doomed = alice.keypackage(KeyPackageSpec::one_time());
    let doomed_json = doomed.event_443(&alice, NOW - 10);
    assert_eq!(
        server.post("/v1/events", doomed_json.clone()).await.1["accepted"],
        json!(true)
    );
    let deletion = alice.deletion(&[&event_id(&doomed_json)], &[], NOW);
    assert_eq!(
        server.post("/v1/events", deletion.clone()).await.1,
        decision(&event_id(&deletion), true, "")
    );
    let (_, body) = server
        .post_json(
            "/v1/keypackages/query",
            &json!({"filters": [{"ids": [event_id(&doomed_json)]}]}),
        )
        .await;
    assert_eq!(body, json!({"events": []}));
    assert_eq!(
        server.post("/v1/deletions", doomed_json.clone()).await.1["message"],
        json!("invalid: expected kind 5, got 443")
    );
    let note = alice.sign(1, &[], "hello", NOW);
    assert_eq!(
        server.post("/v1/events", note.clone()).await.1,
        decision(&event_id(&note), false, "blocked: kind 1 is not handled here")
    );

    // Cleanup.
    let (status, body) = server.post_json("/v1/cleanup", &json!({"dry_run": true})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["complete"], json!(true));
    assert!(body["duration_ms"].is_u64());
    let (status, body) = server.post("/v1/cleanup", "{}").await;
    assert_eq!((status, body["expired_deleted"].clone()), (StatusCode::OK, json!(0)));

    // Operations.
    assert_eq!(server.get("/healthz").await.0, StatusCode::OK);
    assert_eq!(server.get("/readyz").await.0, StatusCode::OK);
    let metrics = server
        .http
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("kp_decisions_total{prefix=\"invalid\",route=\"/v1/keypackages\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("kp_keypackages_total{event=\"claimed\"} 2"),
        "{metrics}"
    );
    assert!(metrics.contains("kp_store_latency_seconds_bucket"));
    assert!(metrics.contains("kp_http_requests_total{route=\"/v1/keypackages/{event_id}/consume\",status=\"409\"} 1"));
}

async fn bad_input_gets_clear_http_errors(backend: Backend) {
    let server = Server::on(backend, &[("KP_MAX_EVENT_BYTES", "4096")]).await;
    let (status, body) = server.post("/v1/keypackages", "{not json").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], json!("bad_request"));
    let (status, body) = server
        .post("/v1/keypackages/query", r#"{"filters": [{"authors": ["xyz"]}]}"#)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"]["message"].as_str().unwrap().contains("authors"));
    let (status, _) = server.get("/v1/keypackages/count?owner=abc").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = server.post_json("/v1/keypackages/claim", &json!({"owners": []})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body) = server.post("/v1/keypackages", "x".repeat(5000)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["error"]["code"], json!("payload_too_large"));
    // A body streamed without a length is cut off at the limit as well.
    let chunks: Vec<Result<String, std::io::Error>> = (0..100).map(|_| Ok("y".repeat(100))).collect();
    let stream = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    let (status, _) = server.post("/v1/keypackages", stream).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let (status, body) = server.get("/v1/nothing-here").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], json!("not_found"));
    let (status, _) = server.get("/v1/keypackages").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let too_many = json!({"events": vec![json!({}); 501]});
    assert_eq!(
        server.post_json("/v1/keypackages/batch", &too_many).await.0,
        StatusCode::BAD_REQUEST
    );
}

async fn relay_token_guards_relay_routes_only(backend: Backend) {
    let server = Server::on(backend, &[("KP_RELAY_TOKEN", "old-token,new-token")]).await;
    let owner = Owner::new().pubkey();
    let count = format!("{}/v1/keypackages/count?owner={owner}", server.base);
    let status = |r: reqwest::Response| r.status();
    assert_eq!(
        status(server.http.get(&count).send().await.unwrap()),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(server.http.get(&count).bearer_auth("wrong").send().await.unwrap()),
        StatusCode::UNAUTHORIZED
    );
    for token in ["old-token", "new-token"] {
        assert_eq!(
            status(server.http.get(&count).bearer_auth(token).send().await.unwrap()),
            StatusCode::OK
        );
    }
    assert_eq!(server.get("/healthz").await.0, StatusCode::OK);
    assert_eq!(server.get("/metrics").await.0, StatusCode::OK);
}

async fn claims_over_the_limit_get_429_with_retry_after(backend: Backend) {
    let server = Server::on(backend, &[("KP_CLAIM_RATE", "1/600"), ("KP_ANON_CLAIM_RATE", "1/600")]).await;
    let owner = Owner::new();
    for i in 0..4 {
        let json = owner
            .keypackage(KeyPackageSpec::one_time())
            .event_443(&owner, NOW - 10 - i);
        assert_eq!(server.post("/v1/keypackages", json).await.1["accepted"], json!(true));
    }
    let me = owner.pubkey();
    let claim = |requester: Option<String>| {
        let mut body = json!({"owners": [me]});
        if let Some(r) = requester {
            body["requester"] = json!(r);
        }
        let request = server
            .http
            .post(format!("{}/v1/keypackages/claim", server.base))
            .body(body.to_string());
        async move { request.send().await.unwrap() }
    };
    let alice = Some("a1".repeat(32));
    assert_eq!(claim(alice.clone()).await.status(), StatusCode::OK);
    let refused = claim(alice.clone()).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.headers()["retry-after"], "600");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], json!("rate_limited"));
    assert_eq!(
        claim(Some("b2".repeat(32))).await.status(),
        StatusCode::OK,
        "another requester still can"
    );
    assert_eq!(claim(None).await.status(), StatusCode::OK);
    assert_eq!(
        claim(None).await.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "anonymous bucket"
    );
    let count = server.get(&format!("/v1/keypackages/count?owner={me}")).await.1;
    assert_eq!(count["one_time"], json!(1), "three handed out, refusals took nothing");
}

async fn owner_routes_authenticate_with_nip98(backend: Backend) {
    let server = Server::on(backend, &[("KP_RELAY_TOKEN", "relay-secret")]).await;
    let alice = Owner::new();
    let bob = Owner::new();
    let kept = alice.keypackage(KeyPackageSpec::one_time());
    let kept_json = kept.event_443(&alice, NOW - 20);
    let retired = alice.keypackage(KeyPackageSpec::one_time());
    let retired_json = retired.event_443(&alice, NOW - 10);
    for json in [&kept_json, &retired_json] {
        let response = server
            .http
            .post(format!("{}/v1/keypackages", server.base))
            .bearer_auth("relay-secret")
            .body(json.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    let call = |method: reqwest::Method, path: &str, header: Option<String>, body: Option<&'static str>| {
        let mut request = server.http.request(method, format!("{}{path}", server.base));
        if let Some(header) = header {
            request = request.header("authorization", header);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status();
            (status, response.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let list_url = format!("{}/v1/me/keypackages", server.base);
    let get = reqwest::Method::GET;
    let del = reqwest::Method::DELETE;

    let (status, body) = call(
        get.clone(),
        "/v1/me/keypackages",
        Some(alice.nip98(&list_url, "GET", None, NOW)),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let listed = body["keypackages"].as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0]["keypackage_ref"], json!(kept.keypackage_ref));
    assert_eq!(listed[0]["state"], json!("available"));
    assert_eq!(listed[0]["kinds"], json!([443]));
    assert_eq!(listed[0]["profile"], json!("legacy"));
    assert_eq!(listed[0]["slot"], Value::Null);

    // Every failure is a 401 and reveals nothing.
    let unauthorized = [
        (get.clone(), None, None, "no header"),
        (
            get.clone(),
            Some(alice.nip98(&format!("{}/v1/me/audit", server.base), "GET", None, NOW)),
            None,
            "wrong URL",
        ),
        (
            get.clone(),
            Some(alice.nip98(&list_url, "POST", None, NOW)),
            None,
            "wrong method",
        ),
        (
            get.clone(),
            Some(alice.nip98(&list_url, "GET", None, NOW - 120)),
            None,
            "stale",
        ),
        (
            get.clone(),
            Some("Bearer relay-secret".to_string()),
            None,
            "relay token",
        ),
    ];
    for (method, header, body, why) in unauthorized {
        let (status, answer) = call(method, "/v1/me/keypackages", header, body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{why}: {answer}");
    }
    let once = alice.nip98(&list_url, "GET", None, NOW + 1);
    assert_eq!(
        call(get.clone(), "/v1/me/keypackages", Some(once.clone()), None)
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        call(get.clone(), "/v1/me/keypackages", Some(once), None).await.0,
        StatusCode::UNAUTHORIZED,
        "replayed"
    );

    // Retiring: only one's own, payload checked when a body is sent.
    let path = format!("/v1/me/keypackages/{}", event_id(&retired_json));
    let url = format!("{}{path}", server.base);
    let (status, _) = call(del.clone(), &path, Some(bob.nip98(&url, "DELETE", None, NOW)), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "someone else's keypackage");
    let wrong_payload = alice.nip98(&url, "DELETE", Some(b"other"), NOW);
    assert_eq!(
        call(del.clone(), &path, Some(wrong_payload), Some("{}")).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, body) = call(
        del.clone(),
        &path,
        Some(alice.nip98(&url, "DELETE", Some(b"{}"), NOW)),
        Some("{}"),
    )
    .await;
    assert_eq!(
        (status, body),
        (
            StatusCode::OK,
            json!({"keypackage_ref": retired.keypackage_ref, "retired": true})
        )
    );
    let (status, _) = call(
        del.clone(),
        &path,
        Some(alice.nip98(&url, "DELETE", None, NOW + 2)),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "already retired");

    let audit_url = format!("{}/v1/me/audit", server.base);
    let (status, body) = call(
        get.clone(),
        "/v1/me/audit",
        Some(alice.nip98(&audit_url, "GET", None, NOW)),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["records"],
        json!([{"keypackage_ref": retired.keypackage_ref, "event_ids": [event_id(&retired_json)],
                "via": "deletion", "requester": alice.pubkey(), "at": NOW}])
    );
    let (_, body) = call(
        get,
        "/v1/me/keypackages",
        Some(alice.nip98(&list_url, "GET", None, NOW + 3)),
        None,
    )
    .await;
    assert_eq!(body["keypackages"][1]["state"], json!("deleted"));
}

/// Declares each test once per backend: SQLite, Firestore and PostgreSQL.
async fn consume_on_query_serves_each_one_time_keypackage_once(backend: Backend) {
    let server = Server::on(backend, &[("KP_CONSUME_ON_QUERY", "true"), ("KP_CLAIM_RATE", "2/600")]).await;
    let owner = Owner::new();
    let one_time = owner.keypackage(KeyPackageSpec::one_time()).event_443(&owner, NOW - 10);
    let last_resort = owner
        .keypackage(KeyPackageSpec::last_resort())
        .event_443(&owner, NOW - 20);
    for json in [&one_time, &last_resort] {
        assert_eq!(
            server.post("/v1/keypackages", json.clone()).await.1["accepted"],
            json!(true)
        );
    }
    let query =
        |requester: &str| json!({"filters": [{"authors": [owner.pubkey()], "kinds": [443]}], "requester": requester});
    let alice = "a1".repeat(32);
    let first = server.post_json("/v1/keypackages/query", &query(&alice)).await.1;
    assert_eq!(
        first["events"],
        json!([serde_json::from_str::<Value>(&one_time).unwrap()])
    );
    let second = server.post_json("/v1/keypackages/query", &query(&alice)).await.1;
    assert_eq!(
        second["events"],
        json!([serde_json::from_str::<Value>(&last_resort).unwrap()]),
        "only the last resort is left"
    );
    let third = server.post_json("/v1/keypackages/query", &query(&alice)).await.1;
    assert_eq!(
        third,
        json!({"events": [], "rate_limited": [owner.pubkey()]}),
        "alice is over her share"
    );
    let bob = server
        .post_json("/v1/keypackages/query", &query(&"b2".repeat(32)))
        .await
        .1;
    assert_eq!(
        bob["events"].as_array().unwrap().len(),
        1,
        "bob still gets the last resort"
    );
}

macro_rules! on_both_backends {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::Sqlite).await;
                }
            )+
        }
        mod firestore {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::Firestore).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::Postgres).await;
                }
            )+
        }
    };
}

on_both_backends!(
    every_route_over_http,
    bad_input_gets_clear_http_errors,
    relay_token_guards_relay_routes_only,
    claims_over_the_limit_get_429_with_retry_after,
    owner_routes_authenticate_with_nip98,
    consume_on_query_serves_each_one_time_keypackage_once,
);

/// A TCP relay to the emulator that can stop forwarding: the store then
/// stops answering, as a Firestore outage looks to the service.
struct Outage {
    address: String,
    down: Arc<std::sync::atomic::AtomicBool>,
}

impl Outage {
    async fn start(target: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = down.clone();
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let Ok(outbound) = tokio::net::TcpStream::connect(&target).await else {
                    continue;
                };
                let (ri, wi) = inbound.into_split();
                let (ro, wo) = outbound.into_split();
                tokio::spawn(pipe(ri, wo, flag.clone()));
                tokio::spawn(pipe(ro, wi, flag.clone()));
            }
        });
        Self { address, down }
    }
}

/// Copies bytes one way until the outage starts, then holds them.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    down: Arc<std::sync::atomic::AtomicBool>,
) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let Ok(read) = from.read(&mut buffer).await else { return };
        if read == 0 {
            return;
        }
        while down.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}

/// A store that stops answering gets 503 with `Retry-After` within the store
/// deadline, nothing is half-written, and the same request succeeds once the
/// store is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_stops_answering_gets_503_with_retry_after() {
    let host = tokio::task::spawn_blocking(|| firestore_emulator_host().to_owned())
        .await
        .unwrap();
    let outage = Outage::start(host).await;
    let store = firestore_store(&outage.address, Policy::default(), Duration::from_secs(30)).await;
    outage_answers_503_then_the_retry_succeeds(&outage, store).await;
}

/// The same on PostgreSQL, whose connection stalls mid-transaction: the
/// call still ends at the store deadline, and the retry succeeds once the
/// server answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_store_that_stops_answering_gets_503_with_retry_after() {
    let url = fresh_postgres_database().await;
    let parsed: tokio_postgres::Config = url.parse().unwrap();
    let (Some(tokio_postgres::config::Host::Tcp(host)), Some(port)) =
        (parsed.get_hosts().first(), parsed.get_ports().first())
    else {
        panic!("this test needs a server on TCP, not {:?}", parsed.get_hosts());
    };
    let outage = Outage::start(format!("{host}:{port}")).await;
    let password = parsed
        .get_password()
        .map(|p| format!(":{}", String::from_utf8_lossy(p)))
        .unwrap_or_default();
    let through = format!(
        "postgres://{}{password}@{}/{}",
        parsed.get_user().unwrap_or("postgres"),
        outage.address,
        parsed.get_dbname().unwrap_or("postgres")
    );
    let store = kp_postgres::PostgresStore::connect(&through, 4, Duration::from_secs(3), Policy::default())
        .await
        .unwrap();
    outage_answers_503_then_the_retry_succeeds(&outage, Arc::new(store)).await;
}

/// Serves `store` (reached through `outage`) with a 3 s store deadline, stops
/// the traffic, and checks the 503, then the retry once traffic flows again.
async fn outage_answers_503_then_the_retry_succeeds(outage: &Outage, store: Arc<dyn Store>) {
    let server = Server::start(store, config(&[("KP_STORE_TIMEOUT_MS", "3000")])).await;
    let owner = Owner::new();
    let json = owner.keypackage(KeyPackageSpec::one_time()).event_443(&owner, NOW - 5);
    // The first connection through the relay can take a few seconds.
    let mut ready = server.get("/readyz").await;
    for _ in 0..20 {
        if ready.0 == StatusCode::OK {
            break;
        }
        ready = server.get("/readyz").await;
    }
    assert_eq!(ready.0, StatusCode::OK, "{}", ready.1);

    outage.down.store(true, Ordering::SeqCst);
    let response = server
        .http
        .post(format!("{}/v1/keypackages", server.base))
        .body(json.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], json!("store_unavailable"));
    assert_eq!(server.get("/readyz").await.0, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(server.get("/healthz").await.0, StatusCode::OK);

    outage.down.store(false, Ordering::SeqCst);
    // A client retries after Retry-After; the store recovers within a few tries.
    let mut answer = server.post("/v1/keypackages", json.clone()).await;
    for _ in 0..10 {
        if answer.0 != StatusCode::SERVICE_UNAVAILABLE {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        answer = server.post("/v1/keypackages", json.clone()).await;
    }
    let (status, body) = answer;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["accepted"], json!(true));
    let count = server
        .get(&format!("/v1/keypackages/count?owner={}", owner.pubkey()))
        .await
        .1;
    assert_eq!(count["available"], json!(1), "stored exactly once across the retry");
}
