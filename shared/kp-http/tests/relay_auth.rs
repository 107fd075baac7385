//! Relay authentication on the routers: the relay token read from
//! `X-Forwarded-Authorization` (where Google API Gateway moves it) or else
//! `Authorization`, and, with `KP_PLATFORM_AUTHENTICATED`, the platform's
//! verified caller standing in for a token only when it is one of
//! `KP_PLATFORM_INVOKERS`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use base64::Engine as _;
use kp_http::{AppState, Config, Function, open_store, router};
use kp_testkit::Owner;
use tower::ServiceExt as _;

const TOKEN: &str = "relay-token-1";
const SCHEDULER: &str = "kp-scheduler@project.iam.gserviceaccount.com";
const API_GATEWAY: &str = "kp-api-gateway@project.iam.gserviceaccount.com";
const NOW: u64 = 1_750_000_000;

/// A Google ID token as Cloud Run hands it on: the signature removed.
fn id_token(email: &str) -> String {
    let part = |s: String| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    format!(
        "Bearer {}.{}.SIGNATURE_REMOVED_BY_GOOGLE",
        part(r#"{"alg":"RS256","kid":"k","typ":"JWT"}"#.into()),
        part(format!(
            r#"{{"aud":"https://kp-cleanup-abc-uc.a.run.app","email":"{email}","email_verified":true,"iss":"https://accounts.google.com","sub":"1"}}"#
        ))
    )
}

async fn app(vars: &[(&str, &str)], function: Function) -> Router {
    let mut map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    map.insert("KP_STORE".into(), "sqlite::memory:".into());
    map.insert("KP_RELAY_TOKEN".into(), format!("{TOKEN}, relay-token-2"));
    map.insert("KP_PUBLIC_URL".into(), "https://kp.example".into());
    let config = Config::from_vars(|name| map.get(name).cloned()).unwrap();
    let store = open_store(&config).await.unwrap();
    let mut state = AppState::new(store, config);
    state.clock = Arc::new(|| NOW);
    router(state, function)
}

/// The status of `POST /v1/cleanup` with these headers.
async fn cleanup(app: &Router, headers: &[(&str, String)]) -> StatusCode {
    let mut request = Request::builder().method(Method::POST).uri("/v1/cleanup");
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::from("{}")).unwrap())
        .await
        .unwrap();
    response.status()
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

const AUTHORIZATION: &str = "authorization";
const FORWARDED: &str = "x-forwarded-authorization";

#[tokio::test]
async fn by_default_the_token_is_read_from_authorization_or_the_forwarded_header() {
    let app = app(&[], Function::Cleanup).await;
    assert_eq!(cleanup(&app, &[(AUTHORIZATION, bearer(TOKEN))]).await, StatusCode::OK);
    assert_eq!(
        cleanup(&app, &[(AUTHORIZATION, bearer("relay-token-2"))]).await,
        StatusCode::OK
    );
    assert_eq!(cleanup(&app, &[]).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        cleanup(&app, &[(AUTHORIZATION, bearer("wrong"))]).await,
        StatusCode::UNAUTHORIZED
    );
    // Behind API Gateway: its ID token in Authorization, the relay's moved.
    assert_eq!(
        cleanup(
            &app,
            &[(AUTHORIZATION, id_token(API_GATEWAY)), (FORWARDED, bearer(TOKEN))]
        )
        .await,
        StatusCode::OK
    );
    // The forwarded header, when present, is the one checked.
    assert_eq!(
        cleanup(&app, &[(AUTHORIZATION, bearer(TOKEN)), (FORWARDED, bearer("wrong"))]).await,
        StatusCode::UNAUTHORIZED
    );
    // Without KP_PLATFORM_AUTHENTICATED an ID token is no relay token, whoever it names.
    assert_eq!(
        cleanup(&app, &[(AUTHORIZATION, id_token(SCHEDULER))]).await,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn behind_platform_iam_only_the_listed_invoker_needs_no_relay_token() {
    let app = app(
        &[
            ("KP_PLATFORM_AUTHENTICATED", "true"),
            ("KP_PLATFORM_INVOKERS", SCHEDULER),
        ],
        Function::Cleanup,
    )
    .await;
    // Cloud Scheduler's OIDC token, verified by Cloud Run: no relay token.
    assert_eq!(
        cleanup(&app, &[(AUTHORIZATION, id_token(SCHEDULER))]).await,
        StatusCode::OK
    );
    // Also when the invoker's token came in X-Serverless-Authorization.
    assert_eq!(
        cleanup(
            &app,
            &[
                ("x-serverless-authorization", id_token(SCHEDULER)),
                (AUTHORIZATION, bearer("anything"))
            ]
        )
        .await,
        StatusCode::OK
    );
    // Through API Gateway, the relay's token is still checked.
    assert_eq!(
        cleanup(
            &app,
            &[(AUTHORIZATION, id_token(API_GATEWAY)), (FORWARDED, bearer(TOKEN))]
        )
        .await,
        StatusCode::OK
    );
    assert_eq!(
        cleanup(
            &app,
            &[(AUTHORIZATION, id_token(API_GATEWAY)), (FORWARDED, bearer("wrong"))]
        )
        .await,
        StatusCode::UNAUTHORIZED
    );
    // A client that sends no Authorization through the gateway arrives with
    // the gateway's identity and no forwarded header: refused.
    assert_eq!(
        cleanup(&app, &[(AUTHORIZATION, id_token(API_GATEWAY))]).await,
        StatusCode::UNAUTHORIZED
    );
    // A forwarded header is checked even next to the invoker's token.
    assert_eq!(
        cleanup(
            &app,
            &[(AUTHORIZATION, id_token(SCHEDULER)), (FORWARDED, bearer("wrong"))]
        )
        .await,
        StatusCode::UNAUTHORIZED
    );
    // A relay token in Authorization is not how requests arrive here.
    assert_eq!(
        cleanup(&app, &[(AUTHORIZATION, bearer(TOKEN))]).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(cleanup(&app, &[]).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn behind_platform_iam_without_invokers_every_request_needs_the_forwarded_token() {
    let app = app(&[("KP_PLATFORM_AUTHENTICATED", "true")], Function::Gateway).await;
    assert_eq!(
        cleanup(&app, &[(AUTHORIZATION, id_token(SCHEDULER))]).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        cleanup(
            &app,
            &[(AUTHORIZATION, id_token(API_GATEWAY)), (FORWARDED, bearer(TOKEN))]
        )
        .await,
        StatusCode::OK
    );
    // The operations routes need no token.
    let response = app
        .clone()
        .oneshot(Request::get("/healthz").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn owner_routes_read_the_nip98_header_api_gateway_forwards() {
    let app = app(&[("KP_PLATFORM_AUTHENTICATED", "true")], Function::Query).await;
    let alice = Owner::new();
    let get = |headers: Vec<(&'static str, String)>| {
        let app = app.clone();
        async move {
            let mut request = Request::get("/v1/me/keypackages");
            for (name, value) in headers {
                request = request.header(name, value);
            }
            app.oneshot(request.body(Body::empty()).unwrap())
                .await
                .unwrap()
                .status()
        }
    };
    let url = "https://kp.example/v1/me/keypackages";
    assert_eq!(
        get(vec![
            (AUTHORIZATION, id_token(API_GATEWAY)),
            (FORWARDED, alice.nip98(url, "GET", None, NOW)),
        ])
        .await,
        StatusCode::OK
    );
    // The gateway's ID token is no NIP-98 event.
    assert_eq!(
        get(vec![(AUTHORIZATION, id_token(API_GATEWAY))]).await,
        StatusCode::UNAUTHORIZED
    );
    // Directly, as before.
    assert_eq!(
        get(vec![(AUTHORIZATION, alice.nip98(url, "GET", None, NOW + 1))]).await,
        StatusCode::OK
    );
}
