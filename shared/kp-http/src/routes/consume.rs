//! `POST /v1/keypackages/claim`, `POST /v1/keypackages/{event_id}/consume`,
//! `POST /v1/welcomes` and `POST /v1/deletions`.

use axum::extract::{Path, Query, State};
use axum::routing::post;
use axum::{Json, Router};
use kp_domain::ConsumedVia;
use kp_domain::ids::{normalize_hex64, parse_u16_code};
use kp_domain::signals::{parse_deletion, parse_welcome};
use kp_store::ConsumeOutcome;
use serde::{Deserialize, Serialize};

use super::{Decision, raw};
use crate::{ApiError, AppState, BatchBody, EventBody};

/// Most owners in one claim.
pub const MAX_CLAIM_OWNERS: usize = 100;

/// The consume routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/keypackages/claim", post(claim))
        .route("/v1/keypackages/{event_id}/consume", post(consume))
        .route("/v1/welcomes", post(welcome))
        .route("/v1/deletions", post(deletion))
}

#[derive(Deserialize)]
struct ClaimRequest {
    owners: Vec<String>,
    #[serde(default)]
    requester: Option<String>,
    #[serde(default)]
    ciphersuite: Option<String>,
}

#[derive(Serialize)]
struct ClaimedEntry {
    owner: String,
    event: Option<Box<serde_json::value::RawValue>>,
    last_resort: bool,
    /// Present when the requester is over its limit for this owner.
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after: Option<u64>,
}

#[derive(Serialize)]
struct ClaimAnswer {
    claimed: Vec<ClaimedEntry>,
}

fn owner_hex(value: &str, field: &str) -> Result<String, ApiError> {
    normalize_hex64(value).ok_or_else(|| ApiError::BadRequest(format!("{field} must be 64 hex characters")))
}

async fn claim(State(state): State<AppState>, BatchBody(body): BatchBody) -> Result<Json<ClaimAnswer>, ApiError> {
    let request: ClaimRequest = body.json()?;
    if request.owners.is_empty() || request.owners.len() > MAX_CLAIM_OWNERS {
        return Err(ApiError::BadRequest(format!(
            "owners must hold 1 to {MAX_CLAIM_OWNERS} pubkeys"
        )));
    }
    let owners = request
        .owners
        .iter()
        .map(|o| owner_hex(o, "owners"))
        .collect::<Result<Vec<_>, _>>()?;
    let requester = request
        .requester
        .as_deref()
        .map(|r| owner_hex(r, "requester"))
        .transpose()?;
    let ciphersuite = request
        .ciphersuite
        .as_deref()
        .map(|c| {
            parse_u16_code(c)
                .ok_or_else(|| ApiError::BadRequest(format!("ciphersuite must look like 0x0001, got {c:?}")))
        })
        .transpose()?;
    let now = state.now();
    let mut claimed = Vec::with_capacity(owners.len());
    for owner in owners {
        let outcome = state
            .store_call(
                "claim",
                state
                    .store
                    .claim(&owner, ciphersuite, requester.as_deref(), ConsumedVia::Claim, now),
            )
            .await?;
        if outcome.event.is_some() {
            state.metrics.keypackages("claimed", 1);
        }
        tracing::info!(%owner, keypackage_ref = ?outcome.keypackage_ref, last_resort = outcome.last_resort, "claim");
        claimed.push(ClaimedEntry {
            owner,
            event: outcome.event.as_deref().map(raw),
            last_resort: outcome.last_resort,
            retry_after: outcome.retry_after,
        });
    }
    // Fail closed: when every owner asked for is over the limit the request
    // is refused; otherwise what was handed out must reach the caller, and
    // the limited owners say so in their entries.
    if let Some(wait) = claimed.iter().map(|c| c.retry_after).collect::<Option<Vec<u64>>>() {
        let wait = wait.into_iter().min().unwrap_or(1);
        tracing::warn!(requester = ?requester, retry_after = wait, "claim rate limited");
        return Err(ApiError::RateLimited(wait));
    }
    Ok(Json(ClaimAnswer { claimed }))
}

#[derive(Deserialize, Default)]
struct ConsumeRequest {
    #[serde(default)]
    consumed_by: Option<String>,
}

#[derive(Serialize)]
struct ConsumeAnswer {
    event_id: String,
    keypackage_ref: String,
    consumed: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    last_resort: bool,
}

async fn consume(
    State(state): State<AppState>,
    Path(event_id): Path<String>,
    EventBody(body): EventBody,
) -> Result<Json<ConsumeAnswer>, ApiError> {
    let event_id =
        normalize_hex64(&event_id).ok_or_else(|| ApiError::BadRequest("event id must be 64 hex characters".into()))?;
    let request: ConsumeRequest = body.json()?;
    let consumed_by = request
        .consumed_by
        .as_deref()
        .map(|c| owner_hex(c, "consumed_by"))
        .transpose()?;
    let now = state.now();
    let outcome = state
        .store_call(
            "consume",
            state
                .store
                .consume(&event_id, consumed_by.as_deref(), ConsumedVia::Consume, now),
        )
        .await?;
    match outcome {
        ConsumeOutcome::Consumed { keypackage_ref } => {
            state.metrics.keypackages("consumed", 1);
            Ok(Json(ConsumeAnswer {
                event_id,
                keypackage_ref,
                consumed: true,
                last_resort: false,
            }))
        }
        ConsumeOutcome::LastResortUsed { keypackage_ref } => Ok(Json(ConsumeAnswer {
            event_id,
            keypackage_ref,
            consumed: false,
            last_resort: true,
        })),
        ConsumeOutcome::AlreadyConsumed { keypackage_ref } => Err(ApiError::AlreadyConsumed(keypackage_ref)),
        ConsumeOutcome::NotFound => Err(ApiError::UnknownKeyPackage(event_id)),
        ConsumeOutcome::RateLimited { retry_after } => Err(ApiError::RateLimited(retry_after)),
    }
}

/// The optional `?requester=` of `POST /v1/welcomes` and `POST /v1/events`:
/// the pubkey the relay authenticated (NIP-42) on the connection the Welcome
/// came from, empty when it authenticated none.
#[derive(Debug, Default, Deserialize)]
pub struct RequesterParam {
    #[serde(default)]
    requester: Option<String>,
}

impl RequesterParam {
    /// `None` without the parameter (the signer is taken as the requester, as
    /// before); `Some(None)` for an empty one (the relay authenticated nobody).
    pub fn requester(&self) -> Result<Option<Option<String>>, ApiError> {
        match self.requester.as_deref().map(str::trim) {
            None => Ok(None),
            Some("") => Ok(Some(None)),
            Some(hex) => owner_hex(hex, "requester").map(|r| Some(Some(r))),
        }
    }
}

/// Consumes the KeyPackage a Welcome names, as a claim by its signer. When
/// the relay passed a `requester`, only a Welcome signed by that requester
/// consumes; any other is accepted (to be delivered) and consumes nothing.
pub async fn welcome_json(
    state: &AppState,
    json: &str,
    route: &str,
    requester: Option<Option<String>>,
) -> Result<Decision, ApiError> {
    let decision = match parse_welcome(json, state.config.validation.max_event_bytes) {
        Err(invalid) => Decision::new(json, false, invalid.message()),
        Ok(welcome)
            if requester
                .as_ref()
                .is_some_and(|r| r.as_deref() != Some(welcome.signer.as_str())) =>
        {
            tracing::info!(signer = %welcome.signer, "welcome not signed by the authenticated requester");
            Decision {
                event_id: welcome.id,
                accepted: true,
                message: "restricted: delivered, but nothing consumed: a Welcome consumes a keypackage only \
                          when signed by the pubkey the connection authenticated (NIP-42)"
                    .into(),
            }
        }
        Ok(welcome) => {
            let now = state.now();
            let outcome = state
                .store_call(
                    "consume",
                    state.store.consume(
                        &welcome.keypackage_event_id,
                        Some(&welcome.signer),
                        ConsumedVia::Welcome,
                        now,
                    ),
                )
                .await?;
            let message = match outcome {
                ConsumeOutcome::Consumed { .. } => {
                    state.metrics.keypackages("consumed", 1);
                    String::new()
                }
                ConsumeOutcome::LastResortUsed { .. } => String::new(),
                ConsumeOutcome::AlreadyConsumed { .. } => "duplicate: the keypackage was already consumed".into(),
                ConsumeOutcome::NotFound => "duplicate: no stored keypackage matches; nothing consumed".into(),
                // The Welcome is still delivered; the KeyPackage stays.
                ConsumeOutcome::RateLimited { retry_after } => {
                    format!("rate-limited: too many claims by this signer, nothing consumed; retry in {retry_after} s")
                }
            };
            Decision {
                event_id: welcome.id,
                accepted: true,
                message,
            }
        }
    };
    state.metrics.decision(route, decision.accepted, &decision.message);
    Ok(decision)
}

/// Applies an owner's NIP-09 deletion.
pub async fn deletion_json(state: &AppState, json: &str, route: &str) -> Result<Decision, ApiError> {
    let decision = match parse_deletion(json, state.config.validation.max_event_bytes) {
        Err(invalid) => Decision::new(json, false, invalid.message()),
        Ok(deletion) => {
            let now = state.now();
            let outcome = state.store_call("delete", state.store.delete(&deletion, now)).await?;
            tracing::info!(deleter = %deletion.deleter, retired = outcome.retired.len(), "deletion");
            Decision {
                event_id: deletion.id,
                accepted: true,
                message: String::new(),
            }
        }
    };
    state.metrics.decision(route, decision.accepted, &decision.message);
    Ok(decision)
}

async fn welcome(
    State(state): State<AppState>,
    Query(param): Query<RequesterParam>,
    EventBody(body): EventBody,
) -> Result<Json<Decision>, ApiError> {
    let requester = param.requester()?;
    Ok(Json(
        welcome_json(&state, super::events::event_object(&body)?, "/v1/welcomes", requester).await?,
    ))
}

async fn deletion(State(state): State<AppState>, EventBody(body): EventBody) -> Result<Json<Decision>, ApiError> {
    Ok(Json(
        deletion_json(&state, super::events::event_object(&body)?, "/v1/deletions").await?,
    ))
}
