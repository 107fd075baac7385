//! The relay: `cargo run -p relay` listens on ws://127.0.0.1:7777 and
//! delegates KeyPackages to the gateway at http://127.0.0.1:8080.

use relay::{KeyPackageRelay, RelayConfig};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    kp_runtime::init_tracing();
    let config = RelayConfig::from_env()?;
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    KeyPackageRelay::new(config)?
        .serve(listener, kp_runtime::shutdown_signal())
        .await
}
