//! The cleanup function: `POST /v1/cleanup`, and under AWS Lambda the same
//! cleanup when a scheduler event (not HTTP) invokes it.

use kp_http::{AppState, Config, Function};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    kp_runtime::init_tracing();
    let config = Config::from_env()?;
    let store = kp_http::open_store(&config).await?;
    let state = AppState::new(store, config);
    let mut router = kp_http::router(state.clone(), Function::Cleanup);
    if kp_runtime::on_lambda() {
        // lambda_http hands non-HTTP events to the router as `POST /events`.
        router = router.merge(kp_http::routes::cleanup::scheduled(state.clone()));
    }
    kp_runtime::serve(router, &state.config).await
}
