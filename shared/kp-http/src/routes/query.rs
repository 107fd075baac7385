//! `POST /v1/keypackages/query` and `GET /v1/keypackages/count`.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use kp_domain::filter::Filter;
use kp_domain::ids::normalize_hex64;
use serde::{Deserialize, Serialize};

use super::raw;
use crate::{ApiError, AppState, BatchBody};

/// Most filters in one query.
pub const MAX_FILTERS: usize = 20;

/// The query routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/keypackages/query", post(query))
        .route("/v1/keypackages/count", get(count))
}

#[derive(Deserialize)]
struct QueryRequest {
    filters: Vec<serde_json::Value>,
    #[serde(default)]
    requester: Option<String>,
}

#[derive(Serialize)]
struct QueryAnswer {
    events: Vec<Box<serde_json::value::RawValue>>,
    /// Consume-on-query only: owners left out because the requester is over
    /// its rate limit.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    rate_limited: Vec<String>,
}

async fn query(State(state): State<AppState>, BatchBody(body): BatchBody) -> Result<Json<QueryAnswer>, ApiError> {
    let request: QueryRequest = body.json()?;
    if request.filters.len() > MAX_FILTERS {
        return Err(ApiError::BadRequest(format!("at most {MAX_FILTERS} filters")));
    }
    if let Some(requester) = &request.requester
        && normalize_hex64(requester).is_none()
    {
        return Err(ApiError::BadRequest("requester must be 64 hex characters".into()));
    }
    let filters = request
        .filters
        .iter()
        .map(Filter::from_json)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let now = state.now();
    if state.config.consume_on_query {
        let requester = request.requester.as_deref().and_then(normalize_hex64);
        let answer = state
            .store_call(
                "query",
                state.store.query_consuming(&filters, requester.as_deref(), now),
            )
            .await?;
        return Ok(Json(QueryAnswer {
            events: answer.events.iter().map(|json| raw(json)).collect(),
            rate_limited: answer.rate_limited,
        }));
    }
    let events = state.store_call("query", state.store.query(&filters, now)).await?;
    Ok(Json(QueryAnswer {
        events: events.iter().map(|json| raw(json)).collect(),
        rate_limited: Vec::new(),
    }))
}

#[derive(Deserialize)]
struct CountParams {
    owner: Option<String>,
}

#[derive(Serialize)]
struct LastResortCount {
    available: u64,
    used: bool,
}

#[derive(Serialize)]
struct CountAnswer {
    owner: String,
    available: u64,
    one_time: u64,
    by_ciphersuite: BTreeMap<String, u64>,
    last_resort: LastResortCount,
    cap: u64,
    profiles: ProfileCount,
}

/// Available KeyPackages by Marmot profile: `current` 0 means current
/// clients cannot invite the owner.
#[derive(Serialize)]
struct ProfileCount {
    current: u64,
    legacy: u64,
}

async fn count(
    State(state): State<AppState>,
    Query(params): Query<CountParams>,
) -> Result<Json<CountAnswer>, ApiError> {
    let owner = params
        .owner
        .as_deref()
        .and_then(normalize_hex64)
        .ok_or_else(|| ApiError::BadRequest("owner must be 64 hex characters".into()))?;
    let now = state.now();
    let count = state.store_call("count", state.store.count(&owner, now)).await?;
    Ok(Json(CountAnswer {
        owner: count.owner,
        available: count.available,
        one_time: count.one_time,
        by_ciphersuite: count.by_ciphersuite,
        last_resort: LastResortCount {
            available: count.last_resort_available,
            used: count.last_resort_used,
        },
        cap: count.cap,
        profiles: ProfileCount {
            current: count.current,
            legacy: count.legacy,
        },
    }))
}
