//! HTTP errors for requests that produced no decision, mapped to status codes
//! once, with API.md's body `{"error": {"code", "message"}}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kp_store::StoreError;
use serde_json::json;

/// Seconds a client should wait before retrying after a 503.
const RETRY_AFTER_SECS: &str = "2";

/// An HTTP error answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// 400: not JSON, not the expected shape, a bad filter or owner.
    #[error("{0}")]
    BadRequest(String),
    /// 401: missing or wrong credentials.
    #[error("missing or invalid credentials")]
    Unauthorized,
    /// 401: a NIP-98 owner request that does not authenticate.
    #[error("{0}")]
    OwnerAuth(kp_domain::nip98::AuthError),
    /// 404: unknown route.
    #[error("no route {0}")]
    NoRoute(String),
    /// 404: unknown KeyPackage.
    #[error("unknown keypackage event {0}")]
    UnknownKeyPackage(String),
    /// 405: known route, other method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 409: already consumed.
    #[error("keypackage {0} is already consumed")]
    AlreadyConsumed(String),
    /// 429: over a rate limit; retry after this many seconds.
    #[error("rate limited: retry in {0} s")]
    RateLimited(u64),
    /// 413: body over the limit.
    #[error("body is larger than {0} bytes")]
    TooLarge(usize),
    /// 503: the store failed or timed out; retrying is safe.
    #[error("store unavailable, retry later: {0}")]
    Unavailable(String),
    /// 500: a stored document could not be read.
    #[error("internal error")]
    Internal,
}

impl ApiError {
    /// The status code.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized | Self::OwnerAuth(_) => StatusCode::UNAUTHORIZED,
            Self::NoRoute(_) | Self::UnknownKeyPackage(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::AlreadyConsumed(_) => StatusCode::CONFLICT,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The snake_case code of the body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::Unauthorized | Self::OwnerAuth(_) => "unauthorized",
            Self::NoRoute(_) => "not_found",
            Self::UnknownKeyPackage(_) => "unknown_keypackage",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::AlreadyConsumed(_) => "already_consumed",
            Self::TooLarge(_) => "payload_too_large",
            Self::RateLimited(_) => "rate_limited",
            Self::Unavailable(_) => "store_unavailable",
            Self::Internal => "internal",
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        if error.is_retryable() {
            tracing::warn!(%error, "store unavailable");
            Self::Unavailable(error.to_string())
        } else {
            tracing::error!(%error, "store failure");
            Self::Internal
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code(), "message": self.to_string()}});
        let mut response = (self.status(), axum::Json(body)).into_response();
        let retry_after = match self {
            Self::Unavailable(_) => Some(HeaderValue::from_static(RETRY_AFTER_SECS)),
            Self::RateLimited(secs) => Some(HeaderValue::from(secs)),
            _ => None,
        };
        if let Some(value) = retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}
