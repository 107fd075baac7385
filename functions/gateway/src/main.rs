//! The gateway: every route of the HTTP API in one process, plus
//! `POST /v1/events`, and cleanup every `KP_CLEANUP_INTERVAL_SECS`. This is
//! what `cargo run -p gateway` starts: on 127.0.0.1:8080 with SQLite.

use kp_http::{AppState, Config, Function};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    kp_runtime::init_tracing();
    let config = Config::from_env()?;
    let store = kp_http::open_store(&config).await?;
    let state = AppState::new(store, config);
    if let Some(interval) = state.config.cleanup_interval {
        kp_http::spawn_periodic_cleanup(state.clone(), interval);
    }
    let router = kp_http::router(state.clone(), Function::Gateway);
    kp_runtime::serve(router, &state.config).await
}
