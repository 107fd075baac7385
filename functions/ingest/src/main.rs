//! The ingest function: ingests KeyPackage events (POST /v1/keypackages, /v1/keypackages/batch).

use kp_http::{AppState, Config, Function};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    kp_runtime::init_tracing();
    let config = Config::from_env()?;
    let store = kp_http::open_store(&config).await?;
    let state = AppState::new(store, config);
    let router = kp_http::router(state.clone(), Function::Ingest);
    kp_runtime::serve(router, &state.config).await
}
