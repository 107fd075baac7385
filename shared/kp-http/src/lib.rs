//! HTTP API v1 (API.md): one axum router per function, composed into the
//! gateway's. Binaries only build a [`Config`], open the store with
//! [`open_store`], and serve [`router`].
//!
//! # Layout
//!
//! - [`auth`]: where the relay token and the platform's caller are read.
//! - [`config`]: every configuration variable.
//! - [`error`]: HTTP errors and their mapping to status codes.
//! - [`metrics`]: Prometheus metrics.
//! - [`routes`]: the handlers, one module per function.

#![forbid(unsafe_code)]

pub mod auth;
pub mod config;
pub mod error;
pub mod metrics;
pub mod routes;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, MatchedPath, Request, State};
use axum::http::{HeaderName, Method, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use kp_firestore::{FirestoreSettings, FirestoreStore};
use kp_postgres::PostgresStore;
use kp_sqlite::SqliteStore;
use kp_store::{Store, StoreResult};
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq as _;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

pub use crate::config::{Config, ConfigError, StoreKind};
pub use crate::error::ApiError;
pub use crate::metrics::Metrics;

/// Largest batch body (API.md: 8 MiB).
pub const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;

/// The clock handlers read: seconds since the epoch. Tests fix it.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    })
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The configuration.
    pub config: Arc<Config>,
    /// The metrics.
    pub metrics: Metrics,
    /// The clock.
    pub clock: Clock,
}

impl AppState {
    /// State over `store` with the system clock.
    pub fn new(store: Arc<dyn Store>, config: Config) -> Self {
        Self {
            store,
            config: Arc::new(config),
            metrics: Metrics::new(),
            clock: system_clock(),
        }
    }

    /// The current time.
    pub fn now(&self) -> u64 {
        (self.clock)()
    }

    /// Runs a store call under the configured deadline, timing it.
    pub async fn store_call<T>(
        &self,
        op: &'static str,
        call: impl Future<Output = StoreResult<T>>,
    ) -> Result<T, ApiError> {
        let started = Instant::now();
        let result = tokio::time::timeout(self.config.store_timeout, call).await;
        self.metrics
            .store_latency
            .with_label_values(&[op])
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok(answer) => answer.map_err(ApiError::from),
            Err(_) => {
                tracing::warn!(op, timeout = ?self.config.store_timeout, "store call timed out");
                Err(ApiError::Unavailable(format!(
                    "{op} took longer than {:?}",
                    self.config.store_timeout
                )))
            }
        }
    }
}

/// Opens the store the configuration names.
pub async fn open_store(config: &Config) -> StoreResult<Arc<dyn Store>> {
    Ok(match &config.store {
        StoreKind::Sqlite(spec) => {
            let path = spec
                .parse()
                .map_err(|e| kp_store::StoreError::Unavailable(format!("KP_STORE: {e}")))?;
            Arc::new(SqliteStore::open(path, config.policy.clone())?)
        }
        StoreKind::Firestore => {
            let settings = FirestoreSettings {
                project_id: config.firestore.project_id.clone().unwrap_or_default(),
                database_id: config.firestore.database_id.clone(),
                emulator_host: config.firestore.emulator_host.clone(),
                collection_prefix: config.collection_prefix.clone(),
                request_timeout: config.store_timeout,
            };
            Arc::new(FirestoreStore::connect(&settings, config.policy.clone()).await?)
        }
        StoreKind::Postgres(url) => {
            Arc::new(PostgresStore::connect(url, config.pg_pool, config.store_timeout, config.policy.clone()).await?)
        }
    })
}

/// The functions a process serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    /// `POST /v1/keypackages`, `POST /v1/keypackages/batch`.
    Ingest,
    /// `POST /v1/keypackages/query`, `GET /v1/keypackages/count`.
    Query,
    /// Claim, consume, Welcomes, deletions.
    Consume,
    /// `POST /v1/cleanup`.
    Cleanup,
    /// All of the above plus `POST /v1/events`.
    Gateway,
}

/// The router of one function (or the gateway), with the operations routes,
/// relay authentication, request ids, tracing and metrics.
pub fn router(state: AppState, function: Function) -> Router {
    let all = function == Function::Gateway;
    let mut v1 = Router::new();
    if all || function == Function::Ingest {
        v1 = v1.merge(routes::ingest::routes());
    }
    if all || function == Function::Query {
        v1 = v1.merge(routes::query::routes());
    }
    if all || function == Function::Consume {
        v1 = v1.merge(routes::consume::routes());
    }
    if all || function == Function::Cleanup {
        v1 = v1.merge(routes::cleanup::routes());
    }
    if all {
        v1 = v1.merge(routes::events::routes());
    }
    let v1 = v1.route_layer(middleware::from_fn_with_state(state.clone(), relay_auth));
    // Owner routes authenticate with NIP-98, not the relay token.
    let mut me = Router::new();
    if all || function == Function::Query {
        me = me.merge(routes::me::read_routes());
    }
    if all || function == Function::Consume {
        me = me.merge(routes::me::retire_routes());
    }
    let request_id = HeaderName::from_static("x-request-id");
    Router::new()
        .merge(v1)
        .merge(me)
        .merge(routes::ops::routes())
        .fallback(|request: Request| async move { ApiError::NoRoute(request.uri().path().to_owned()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(middleware::from_fn_with_state(state.clone(), count_requests))
        .layer(DefaultBodyLimit::disable())
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request| {
            let id = request
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            tracing::info_span!("request", method = %request.method(), path = %request.uri().path(), request_id = %id)
        }))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .with_state(state)
}

/// A route: its method and its path, with `{name}` for a path segment (axum's
/// syntax, which is also OpenAPI's).
pub type Route = (Method, &'static str);

/// The routes every function serves besides its own, with no token: health,
/// readiness and metrics.
pub fn ops_routes() -> Vec<Route> {
    vec![
        (Method::GET, "/healthz"),
        (Method::GET, "/readyz"),
        (Method::GET, "/metrics"),
    ]
}

/// The API routes [`router`] serves for `function`, not counting
/// [`ops_routes`]. Deployment reads this listing: the API gateways route
/// exactly these paths, each to a function that serves it, and
/// `tests/openapi.rs` checks the OpenAPI spec against it. The tests below
/// check that it matches the router.
pub fn routes(function: Function) -> Vec<Route> {
    let ingest = [
        (Method::POST, "/v1/keypackages"),
        (Method::POST, "/v1/keypackages/batch"),
    ];
    // The owner routes (NIP-98) go with the function that reads or retires.
    let query = [
        (Method::POST, "/v1/keypackages/query"),
        (Method::GET, "/v1/keypackages/count"),
        (Method::GET, "/v1/me/keypackages"),
        (Method::GET, "/v1/me/audit"),
    ];
    let consume = [
        (Method::POST, "/v1/keypackages/claim"),
        (Method::POST, "/v1/keypackages/{event_id}/consume"),
        (Method::POST, "/v1/welcomes"),
        (Method::POST, "/v1/deletions"),
        (Method::DELETE, "/v1/me/keypackages/{event_id}"),
    ];
    let cleanup = [(Method::POST, "/v1/cleanup")];
    let events = [(Method::POST, "/v1/events")];
    match function {
        Function::Ingest => ingest.to_vec(),
        Function::Query => query.to_vec(),
        Function::Consume => consume.to_vec(),
        Function::Cleanup => cleanup.to_vec(),
        Function::Gateway => [&ingest[..], &query, &consume, &cleanup, &events].concat(),
    }
}

/// Requires `Bearer <token>` with one of the configured tokens, compared in
/// constant time, read from `X-Forwarded-Authorization` when present (API
/// Gateway moves the relay's header there) and else from `Authorization`.
///
/// With `KP_PLATFORM_AUTHENTICATED`, `Authorization` holds the Google ID
/// token the platform verified, not a relay token: a request without
/// `X-Forwarded-Authorization` passes only when that verified caller is one
/// of `KP_PLATFORM_INVOKERS` (the scheduler). API Gateway's own identity is
/// not one of them, so a client that sends no `Authorization` header through
/// the gateway is refused.
async fn relay_auth(State(state): State<AppState>, request: Request, next: Next) -> Result<Response, ApiError> {
    let config = &state.config;
    if config.relay_tokens.is_empty() {
        return Ok(next.run(request).await);
    }
    let headers = request.headers();
    if config.platform_authenticated && !headers.contains_key(auth::X_FORWARDED_AUTHORIZATION) {
        let caller = auth::platform_caller(headers);
        let invoker = caller
            .as_deref()
            .is_some_and(|caller| config.platform_invokers.iter().any(|i| i == caller));
        if !invoker {
            return Err(ApiError::Unauthorized);
        }
        tracing::debug!(
            caller = caller.as_deref().unwrap_or(""),
            "platform invoker, no relay token"
        );
        return Ok(next.run(request).await);
    }
    let presented = auth::client_authorization(headers)
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or("");
    let mut matched = false;
    for token in &config.relay_tokens {
        matched |= bool::from(token.as_bytes().ct_eq(presented.as_bytes()));
    }
    if !matched {
        return Err(ApiError::Unauthorized);
    }
    Ok(next.run(request).await)
}

/// Counts requests by matched route and status.
async fn count_requests(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let response = next.run(request).await;
    state
        .metrics
        .requests
        .with_label_values(&[route.as_str(), response.status().as_str()])
        .inc();
    response
}

/// A body read up to a limit (413 beyond it, without reading it whole).
pub struct LimitedBody(pub Bytes);

/// How much of an oversized body is still read, and thrown away, before the
/// 413 is sent: a client still sending a body a little too large then gets
/// the answer instead of a connection reset mid-upload.
const DRAIN_BYTES: usize = 256 * 1024;

/// How long that reading may take.
const DRAIN_TIME: Duration = Duration::from_secs(2);

/// Reads and discards at most `budget` more bytes of `body`, for at most
/// [`DRAIN_TIME`].
async fn drain(mut body: axum::body::BodyDataStream, budget: usize) {
    use futures::StreamExt as _;
    let mut left = budget;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while let Some(Ok(chunk)) = body.next().await {
            if chunk.len() >= left {
                break;
            }
            left -= chunk.len();
        }
    })
    .await;
}

impl LimitedBody {
    /// Reads the request body, refusing more than `limit` bytes.
    pub async fn read(request: Request, limit: usize) -> Result<Self, ApiError> {
        use futures::StreamExt as _;
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let mut body = request.into_body().into_data_stream();
        if let Some(length) = declared
            && length > limit
        {
            if length <= limit + DRAIN_BYTES {
                drain(body, length).await;
            }
            return Err(ApiError::TooLarge(limit));
        }
        let mut read = Vec::with_capacity(declared.unwrap_or(0));
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|_| ApiError::TooLarge(limit))?;
            if read.len() + chunk.len() > limit {
                drain(body, DRAIN_BYTES).await;
                return Err(ApiError::TooLarge(limit));
            }
            read.extend_from_slice(&chunk);
        }
        Ok(Self(Bytes::from(read)))
    }

    /// Parses the body as JSON of type `T` (400 when it is not).
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        let text = if self.0.iter().all(u8::is_ascii_whitespace) {
            &b"{}"[..]
        } else {
            &self.0[..]
        };
        serde_json::from_slice(text).map_err(|e| ApiError::BadRequest(format!("malformed body: {e}")))
    }

    /// The body as UTF-8 text (400 when it is not).
    pub fn text(&self) -> Result<&str, ApiError> {
        std::str::from_utf8(&self.0).map_err(|_| ApiError::BadRequest("body is not UTF-8".into()))
    }
}

/// A body of at most `KP_MAX_EVENT_BYTES`.
pub struct EventBody(pub LimitedBody);

impl FromRequest<AppState> for EventBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        LimitedBody::read(request, state.config.validation.max_event_bytes)
            .await
            .map(Self)
    }
}

/// A body of at most [`MAX_BATCH_BYTES`].
pub struct BatchBody(pub LimitedBody);

impl FromRequest<AppState> for BatchBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, _: &AppState) -> Result<Self, Self::Rejection> {
        LimitedBody::read(request, MAX_BATCH_BYTES).await.map(Self)
    }
}

/// Runs the in-process cleanup every `interval` until the process ends.
pub fn spawn_periodic_cleanup(state: AppState, interval: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            match routes::cleanup::run(&state, kp_store::CleanupOptions::default()).await {
                Ok(report) => tracing::info!(?report, "periodic cleanup"),
                Err(error) => tracing::warn!(%error, "periodic cleanup failed"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    //! The route listing against the routers it describes.

    use std::collections::BTreeSet;

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt as _;

    use super::*;

    const FUNCTIONS: [Function; 5] = [
        Function::Ingest,
        Function::Query,
        Function::Consume,
        Function::Cleanup,
        Function::Gateway,
    ];

    fn set(routes: impl IntoIterator<Item = Route>) -> BTreeSet<(String, &'static str)> {
        routes.into_iter().map(|(m, p)| (m.to_string(), p)).collect()
    }

    /// The `.route("<path>", <method>(...))` calls in a routes module's source.
    fn declared_in(source: &'static str) -> BTreeSet<(String, &'static str)> {
        let mut found = BTreeSet::new();
        for (at, _) in source.match_indices(".route(") {
            let rest = source[at + ".route(".len()..].trim_start();
            let rest = rest.strip_prefix('"').expect("a route path is a string literal");
            let end = rest.find('"').expect("closing quote");
            let path = &rest[..end];
            let after = rest[end + 1..].trim_start().trim_start_matches(',').trim_start();
            let method: String = after.chars().take_while(|c| c.is_ascii_alphabetic()).collect();
            found.insert((method.to_ascii_uppercase(), path));
        }
        found
    }

    #[test]
    fn the_listing_names_every_route_the_modules_declare() {
        // Every module under src/routes, so that a new one is not missed.
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/routes");
        let mut declared = BTreeSet::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "rs") {
                let source: &'static str = Box::leak(std::fs::read_to_string(&path).unwrap().into_boxed_str());
                declared.extend(declared_in(source));
            }
        }
        // `/events` in the cleanup module is the Lambda scheduler's route,
        // which only the cleanup binary mounts, under Lambda, outside `router`.
        assert!(declared.remove(&("POST".to_owned(), "/events")));
        let listed: BTreeSet<_> = set(routes(Function::Gateway))
            .union(&set(ops_routes()))
            .cloned()
            .collect();
        assert_eq!(
            declared, listed,
            "the route listing differs from the routes the modules declare"
        );
        // Which function serves which route is checked against the routers
        // by `each_function_routes_exactly_its_listed_routes`.
    }

    /// Whether `router` routes `method path` to a handler, rather than to
    /// its fallbacks (404 `not_found`, 405).
    async fn routed(router: &Router, method: &Method, path: &str) -> bool {
        let uri = path.replace("{event_id}", &"ab".repeat(32));
        let uri = if uri == "/v1/keypackages/count" {
            format!("{uri}?owner={}", "cd".repeat(32))
        } else {
            uri
        };
        let request = Request::builder()
            .method(method)
            .uri(&uri)
            .body(Body::from("{}"))
            .unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        let code = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"]["code"].as_str().map(str::to_owned));
        let fallback = status == StatusCode::METHOD_NOT_ALLOWED
            || (status == StatusCode::NOT_FOUND && code.as_deref() == Some("not_found"));
        !fallback
    }

    #[tokio::test]
    async fn each_function_routes_exactly_its_listed_routes() {
        let config = Config::from_vars(|name| (name == "KP_STORE").then(|| "sqlite::memory:".to_owned())).unwrap();
        let store = open_store(&config).await.unwrap();
        let state = AppState::new(store, config);
        for function in FUNCTIONS {
            let router = router(state.clone(), function);
            let own = routes(function);
            for (method, path) in own.iter().chain(&ops_routes()) {
                assert!(
                    routed(&router, method, path).await,
                    "{function:?} does not route {method} {path}"
                );
            }
            for (method, path) in routes(Function::Gateway) {
                if !own.contains(&(method.clone(), path)) {
                    assert!(
                        !routed(&router, &method, path).await,
                        "{function:?} routes {method} {path}, which its listing lacks"
                    );
                }
            }
        }
    }
}
