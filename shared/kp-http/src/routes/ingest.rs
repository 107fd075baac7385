//! `POST /v1/keypackages` and `POST /v1/keypackages/batch`.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use futures::StreamExt as _;
use kp_domain::validate_keypackage_event;
use kp_store::IngestOutcome;
use serde::{Deserialize, Serialize};

use super::Decision;
use crate::{ApiError, AppState, BatchBody, EventBody};

/// Most events in one batch.
pub const MAX_BATCH_EVENTS: usize = 500;

/// How many events of a batch are decided at once.
const BATCH_CONCURRENCY: usize = 8;

/// The ingest routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/keypackages", post(ingest_one))
        .route("/v1/keypackages/batch", post(ingest_batch))
}

/// Validates and stores one KeyPackage event given as JSON.
pub async fn ingest_json(state: &AppState, json: &str, route: &str) -> Result<Decision, ApiError> {
    let now = state.now();
    let decision = match validate_keypackage_event(json, &state.config.validation, now) {
        Err(invalid) => Decision::new(json, false, invalid.message()),
        Ok(event) => {
            let outcome = state.store_call("ingest", state.store.ingest(&event, now)).await?;
            if matches!(outcome, IngestOutcome::Stored { .. }) {
                state.metrics.ingested(event.profile);
            }
            let (accepted, message) = outcome.decision();
            Decision {
                event_id: event.id,
                accepted,
                message,
            }
        }
    };
    state.metrics.decision(route, decision.accepted, &decision.message);
    tracing::info!(event_id = %decision.event_id, accepted = decision.accepted, decision = %decision.message, "ingest decision");
    Ok(decision)
}

async fn ingest_one(State(state): State<AppState>, EventBody(body): EventBody) -> Result<Json<Decision>, ApiError> {
    let json = body.text()?;
    if serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(json).is_err() {
        return Err(ApiError::BadRequest("body is not a JSON event object".into()));
    }
    Ok(Json(ingest_json(&state, json, "/v1/keypackages").await?))
}

#[derive(Deserialize)]
struct BatchRequest {
    events: Vec<Box<serde_json::value::RawValue>>,
}

#[derive(Serialize)]
struct BatchAnswer {
    results: Vec<Decision>,
}

async fn ingest_batch(
    State(state): State<AppState>,
    BatchBody(body): BatchBody,
) -> Result<Json<BatchAnswer>, ApiError> {
    let request: BatchRequest = body.json()?;
    if request.events.is_empty() || request.events.len() > MAX_BATCH_EVENTS {
        return Err(ApiError::BadRequest(format!(
            "events must hold 1 to {MAX_BATCH_EVENTS} events"
        )));
    }
    let results: Vec<Result<Decision, ApiError>> = futures::stream::iter(request.events)
        .map(|event| {
            let state = state.clone();
            async move { ingest_json(&state, event.get(), "/v1/keypackages/batch").await }
        })
        .buffered(BATCH_CONCURRENCY)
        .collect()
        .await;
    // A store failure fails the request: every event may be retried safely.
    let results = results.into_iter().collect::<Result<Vec<_>, _>>()?;
    Ok(Json(BatchAnswer { results }))
}
