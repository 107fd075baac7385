//! The runtime switch every function binary shares: under AWS Lambda
//! (`AWS_LAMBDA_RUNTIME_API` set) the router runs through `lambda_http`;
//! otherwise it listens on `KP_LISTEN` (Cloud Run sets `PORT`) and stops
//! gracefully on SIGTERM. Only the functions know about Lambda.

#![forbid(unsafe_code)]

use anyhow::Context as _;
use axum::Router;
use kp_http::Config;
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// Whether this process runs under AWS Lambda.
pub fn on_lambda() -> bool {
    std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some()
}

/// JSON logs that Google Cloud Logging understands (`severity`, `message`,
/// span fields such as the request id), filtered by `RUST_LOG` (default info).
pub fn init_tracing() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::registry()
        .with(filter)
        .with(tracing_stackdriver::layer())
        .init();
}

/// Serves `router` under Lambda or on `config.listen`, until SIGTERM.
pub async fn serve(router: Router, config: &Config) -> anyhow::Result<()> {
    if on_lambda() {
        tracing::info!("serving under AWS Lambda");
        return lambda_http::run(router)
            .await
            .map_err(|e| anyhow::anyhow!("lambda runtime: {e}"));
    }
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("KP_LISTEN: cannot listen on {}", config.listen))?;
    tracing::info!(address = %listener.local_addr()?, store = ?config.store, "listening");
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("HTTP server")
}

/// Resolves on SIGTERM (Cloud Run, Kubernetes) or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
}
