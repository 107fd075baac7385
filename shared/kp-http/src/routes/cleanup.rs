//! `POST /v1/cleanup`: expired KeyPackages, old tombstones and audit records.

use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use kp_store::CleanupOptions;
use serde::{Deserialize, Serialize};

use crate::{ApiError, AppState, EventBody};

/// The cleanup route.
pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/cleanup", post(cleanup))
}

#[derive(Deserialize, Default)]
struct CleanupRequest {
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    time_budget_ms: Option<u64>,
}

/// What a cleanup run did (API.md's answer).
#[derive(Debug, Serialize)]
pub struct CleanupAnswer {
    /// Expired KeyPackages removed.
    pub expired_deleted: u64,
    /// Tombstones removed.
    pub tombstones_purged: u64,
    /// Audit records removed.
    pub audit_purged: u64,
    /// `false` when the budget ran out; the next run continues.
    pub complete: bool,
    /// How long it took.
    pub duration_ms: u64,
}

/// Runs one cleanup with `options` and counts what it removed.
pub async fn run(state: &AppState, options: CleanupOptions) -> Result<CleanupAnswer, ApiError> {
    let started = Instant::now();
    let now = state.now();
    // The store call's deadline leaves room for the budget.
    let report = tokio::time::timeout(
        options.time_budget + state.config.store_timeout,
        state.store.cleanup(options, now),
    )
    .await
    .map_err(|_| ApiError::Unavailable("cleanup did not finish in time".into()))??;
    if !options.dry_run {
        state.metrics.keypackages("expired", report.expired_deleted);
    }
    Ok(CleanupAnswer {
        expired_deleted: report.expired_deleted,
        tombstones_purged: report.tombstones_purged,
        audit_purged: report.audit_purged,
        complete: report.complete,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

async fn cleanup(State(state): State<AppState>, EventBody(body): EventBody) -> Result<Json<CleanupAnswer>, ApiError> {
    let request: CleanupRequest = body.json()?;
    let mut options = CleanupOptions {
        dry_run: request.dry_run,
        ..CleanupOptions::default()
    };
    if let Some(ms) = request.time_budget_ms {
        options.time_budget = Duration::from_millis(ms);
    }
    let answer = run(&state, options).await?;
    tracing::info!(?answer, "cleanup");
    Ok(Json(answer))
}

/// `POST /events`: a scheduler's event handed over by the Lambda runtime
/// (never routed from outside). Its JSON may carry `dry_run` and
/// `time_budget_ms`; anything else in it is ignored.
pub fn scheduled(state: AppState) -> Router {
    Router::new().route("/events", post(cleanup)).with_state(state)
}
