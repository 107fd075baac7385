//! Owner routes, authenticated with NIP-98 rather than the relay token:
//! `GET /v1/me/keypackages`, `DELETE /v1/me/keypackages/{event_id}`,
//! `GET /v1/me/audit`. Owners see and retire only their own KeyPackages.

use axum::extract::{FromRequest, Path, Request, State};
use axum::routing::{delete, get};
use axum::{Json, Router};
use kp_domain::ids::normalize_hex64;
use kp_domain::nip98::{self, AuthError};
use kp_domain::{Deletion, KeyPackageRecord};
use serde::Serialize;

use crate::{ApiError, AppState, LimitedBody};

/// How long a used auth event is remembered: past this, its `created_at` is
/// outside the accepted window anyway.
const REMEMBER_AUTH_SECS: u64 = 2 * nip98::MAX_SKEW_SECS + 1;

/// The owner routes that read.
pub fn read_routes() -> Router<AppState> {
    Router::new()
        .route("/v1/me/keypackages", get(list))
        .route("/v1/me/audit", get(audit))
}

/// The owner route that retires.
pub fn retire_routes() -> Router<AppState> {
    Router::new().route("/v1/me/keypackages/{event_id}", delete(retire))
}

/// A request authenticated by NIP-98, its auth event used once.
pub struct Owner(pub String);

impl FromRequest<AppState> for Owner {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        // Behind API Gateway the owner's header arrives as X-Forwarded-Authorization.
        let header = crate::auth::client_authorization(request.headers()).map(str::to_owned);
        let method = request.method().as_str().to_owned();
        let path = request
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| request.uri().path().to_owned());
        let url = format!("{}{path}", state.config.public_url);
        let body = LimitedBody::read(request, state.config.validation.max_event_bytes).await?;
        let now = state.now();
        let authorized = nip98::verify(header.as_deref(), &url, &method, &body.0, now).map_err(ApiError::OwnerAuth)?;
        let first_use = state
            .store_call(
                "remember_auth",
                state
                    .store
                    .remember_auth(&authorized.event_id, now + REMEMBER_AUTH_SECS),
            )
            .await?;
        if !first_use {
            return Err(ApiError::OwnerAuth(AuthError::Replayed));
        }
        Ok(Self(authorized.pubkey))
    }
}

#[derive(Serialize)]
struct KeyPackageView {
    keypackage_ref: String,
    event_ids: Vec<String>,
    kinds: Vec<u16>,
    state: &'static str,
    last_resort: bool,
    created_at: u64,
    expires_at: u64,
    use_count: u64,
    profile: &'static str,
    slot: Option<String>,
}

impl KeyPackageView {
    fn of(record: KeyPackageRecord, now: u64) -> Self {
        let mut kinds: Vec<u16> = record.events.iter().map(|e| e.kind).collect();
        kinds.sort_unstable();
        let state = if record.state == kp_domain::KeyPackageState::Available && record.expires_at <= now {
            "expired"
        } else {
            record.state.as_str()
        };
        Self {
            keypackage_ref: record.keypackage_ref,
            event_ids: record.event_ids,
            kinds,
            state,
            last_resort: record.last_resort,
            created_at: record.created_at,
            expires_at: record.expires_at,
            use_count: record.use_count,
            profile: record.profile.as_str(),
            slot: record.slot,
        }
    }
}

#[derive(Serialize)]
struct ListAnswer {
    keypackages: Vec<KeyPackageView>,
}

async fn list(State(state): State<AppState>, Owner(owner): Owner) -> Result<Json<ListAnswer>, ApiError> {
    let now = state.now();
    let records = state
        .store_call("keypackages_of", state.store.keypackages_of(&owner))
        .await?;
    Ok(Json(ListAnswer {
        keypackages: records.into_iter().map(|r| KeyPackageView::of(r, now)).collect(),
    }))
}

#[derive(Serialize)]
struct RetireAnswer {
    keypackage_ref: String,
    retired: bool,
}

async fn retire(
    State(state): State<AppState>,
    Path(event_id): Path<String>,
    Owner(owner): Owner,
) -> Result<Json<RetireAnswer>, ApiError> {
    let event_id = normalize_hex64(&event_id).ok_or_else(|| ApiError::UnknownKeyPackage(event_id.clone()))?;
    let now = state.now();
    let deletion = Deletion {
        id: String::new(),
        deleter: owner,
        created_at: now,
        event_ids: vec![event_id.clone()],
        slots: vec![],
    };
    let outcome = state.store_call("delete", state.store.delete(&deletion, now)).await?;
    let keypackage_ref = outcome
        .retired
        .into_iter()
        .next()
        .ok_or(ApiError::UnknownKeyPackage(event_id))?;
    Ok(Json(RetireAnswer {
        keypackage_ref,
        retired: true,
    }))
}

#[derive(Serialize)]
struct AuditView {
    keypackage_ref: String,
    event_ids: Vec<String>,
    via: &'static str,
    requester: Option<String>,
    at: u64,
}

#[derive(Serialize)]
struct AuditAnswer {
    records: Vec<AuditView>,
}

async fn audit(State(state): State<AppState>, Owner(owner): Owner) -> Result<Json<AuditAnswer>, ApiError> {
    let records = state.store_call("audit", state.store.audit(&owner)).await?;
    Ok(Json(AuditAnswer {
        records: records
            .into_iter()
            .map(|r| AuditView {
                keypackage_ref: r.keypackage_ref,
                event_ids: r.event_ids,
                via: r.via.as_str(),
                requester: r.requester,
                at: r.at,
            })
            .collect(),
    }))
}
