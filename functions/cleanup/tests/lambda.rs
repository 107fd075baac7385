//! The cleanup binary under AWS Lambda: an HTTP API event runs `POST
//! /v1/cleanup`, and a scheduler's (non-HTTP) event runs the same cleanup.
//! The Lambda Runtime API is served here, on loopback, as Lambda serves it.

use std::collections::VecDeque;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::mpsc;

#[derive(Clone)]
struct RuntimeApi {
    pending: Arc<Mutex<VecDeque<(String, Value)>>>,
    answers: mpsc::UnboundedSender<(String, Value)>,
}

async fn next(State(api): State<RuntimeApi>) -> (HeaderMap, String) {
    loop {
        let popped = api.pending.lock().unwrap().pop_front();
        if let Some((id, event)) = popped {
            let mut headers = HeaderMap::new();
            headers.insert("lambda-runtime-aws-request-id", id.parse().unwrap());
            headers.insert("lambda-runtime-deadline-ms", "4102444800000".parse().unwrap());
            headers.insert(
                "lambda-runtime-invoked-function-arn",
                "arn:aws:lambda:us-east-1:123456789012:function:cleanup"
                    .parse()
                    .unwrap(),
            );
            headers.insert(
                "lambda-runtime-trace-id",
                "Root=1-5759e988-bd862e3fe1be46a994272793".parse().unwrap(),
            );
            return (headers, event.to_string());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn response(State(api): State<RuntimeApi>, Path(id): Path<String>, body: String) -> StatusCode {
    let value = serde_json::from_str(&body).unwrap_or(Value::String(body));
    api.answers.send((id, value)).unwrap();
    StatusCode::ACCEPTED
}

async fn error(State(api): State<RuntimeApi>, Path(id): Path<String>, body: String) -> StatusCode {
    api.answers.send((id, json!({"lambda_error": body}))).unwrap();
    StatusCode::ACCEPTED
}

fn http_api_event(path: &str, body: &str) -> Value {
    json!({
        "version": "2.0",
        "routeKey": format!("POST {path}"),
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"content-type": "application/json"},
        "requestContext": {
            "accountId": "123456789012", "apiId": "api", "domainName": "api.example.com", "domainPrefix": "api",
            "http": {"method": "POST", "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "test"},
            "requestId": "request-1", "routeKey": format!("POST {path}"), "stage": "$default",
            "time": "25/Nov/2026:00:00:00 +0000", "timeEpoch": 1795651200000u64
        },
        "body": body,
        "isBase64Encoded": false
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_runs_under_lambda_for_http_and_scheduler_events() {
    let scheduler_event = json!({
        "version": "0", "id": "c0ffee", "detail-type": "Scheduled Event", "source": "aws.scheduler",
        "account": "123456789012", "time": "2026-11-25T00:00:00Z", "region": "us-east-1",
        "resources": [], "detail": {}
    });
    let (answers, mut received) = mpsc::unbounded_channel();
    let api = RuntimeApi {
        pending: Arc::new(Mutex::new(VecDeque::from([
            (
                "http-1".to_string(),
                http_api_event("/v1/cleanup", "{\"dry_run\": true}"),
            ),
            ("scheduled-1".to_string(), scheduler_event),
        ]))),
        answers,
    };
    let router = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route("/2018-06-01/runtime/invocation/{id}/response", post(response))
        .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
        .with_state(api);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    let mut child = Command::new(env!("CARGO_BIN_EXE_cleanup"))
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", &address)
        .env("AWS_LAMBDA_FUNCTION_NAME", "cleanup")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "test")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "test")
        .env("KP_STORE", "sqlite::memory:")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("start the cleanup binary");

    let mut got = Vec::new();
    for _ in 0..2 {
        let answer = tokio::time::timeout(Duration::from_secs(30), received.recv())
            .await
            .expect("the function answers within 30 s")
            .expect("runtime API running");
        got.push(answer);
    }
    let _ = child.kill();
    let _ = child.wait();

    let (id, http) = &got[0];
    assert_eq!(id, "http-1");
    assert_eq!(http["statusCode"], json!(200), "{http}");
    let body: Value = serde_json::from_str(http["body"].as_str().expect("HTTP API response body")).unwrap();
    assert_eq!(body["complete"], json!(true), "{body}");
    assert_eq!(body["expired_deleted"], json!(0));

    let (id, scheduled) = &got[1];
    assert_eq!(id, "scheduled-1");
    let text = scheduled.to_string();
    assert!(
        text.contains("expired_deleted") && text.contains("complete"),
        "a cleanup report: {text}"
    );
    assert!(!text.contains("lambda_error"), "{text}");
}
