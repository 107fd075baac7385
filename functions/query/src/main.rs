//! The query function: serves live KeyPackages and counts (POST /v1/keypackages/query, GET /v1/keypackages/count).

use kp_http::{AppState, Config, Function};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    kp_runtime::init_tracing();
    let config = Config::from_env()?;
    let store = kp_http::open_store(&config).await?;
    let state = AppState::new(store, config);
    let router = kp_http::router(state.clone(), Function::Query);
    kp_runtime::serve(router, &state.config).await
}
