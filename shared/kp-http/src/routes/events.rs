//! `POST /v1/events` (gateway): one event, dispatched by kind.

use axum::extract::{Query, State};
use axum::routing::post;
use axum::{Json, Router};
use kp_domain::{KIND_DELETION, KIND_KEYPACKAGE, KIND_KEYPACKAGE_ADDRESSABLE, KIND_WELCOME};

use super::{Decision, consume, ingest};
use crate::{ApiError, AppState, EventBody, LimitedBody};

/// The gateway's dispatch route.
pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/events", post(dispatch))
}

/// The body as text, if it is a JSON object (400 otherwise).
pub fn event_object(body: &LimitedBody) -> Result<&str, ApiError> {
    let text = body.text()?;
    serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(text)
        .map_err(|_| ApiError::BadRequest("body is not a JSON event object".into()))?;
    Ok(text)
}

async fn dispatch(
    State(state): State<AppState>,
    Query(param): Query<consume::RequesterParam>,
    EventBody(body): EventBody,
) -> Result<Json<Decision>, ApiError> {
    let requester = param.requester()?;
    let json = event_object(&body)?;
    #[derive(serde::Deserialize)]
    struct KindOnly {
        kind: Option<serde_json::Value>,
    }
    let kind = serde_json::from_str::<KindOnly>(json)
        .ok()
        .and_then(|k| k.kind)
        .and_then(|k| k.as_u64())
        .ok_or_else(|| ApiError::BadRequest("event has no integer kind".into()))?;
    let route = "/v1/events";
    let decision = match u16::try_from(kind) {
        Ok(KIND_KEYPACKAGE | KIND_KEYPACKAGE_ADDRESSABLE) => ingest::ingest_json(&state, json, route).await?,
        Ok(KIND_WELCOME) => consume::welcome_json(&state, json, route, requester).await?,
        Ok(KIND_DELETION) => consume::deletion_json(&state, json, route).await?,
        _ => {
            let decision = Decision::new(json, false, format!("blocked: kind {kind} is not handled here"));
            state.metrics.decision(route, false, &decision.message);
            decision
        }
    };
    Ok(Json(decision))
}
