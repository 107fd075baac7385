//! The KeyPackage service as the relay sees it: `POST /v1/events` for the
//! events it delegates and `POST /v1/keypackages/query` for KeyPackage REQs.
//! Every failure to get an answer becomes a NIP-01 message a client can act
//! on, never a silent drop.

use nostr::prelude::PublicKey;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::config::RelayConfig;

/// The service's decision about one event (API.md), as an `OK` message says it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Decision {
    /// Whether the event was accepted.
    pub accepted: bool,
    /// `<prefix>: <text>`, or empty when accepted with nothing to say.
    #[serde(default)]
    pub message: String,
}

/// Why the service gave no answer to use, already worded for a client:
/// the text starts with a NIP-01 prefix (`error:`, `rate-limited:`, `invalid:`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct GatewayError(pub String);

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    message: String,
}

/// The service's answer to KeyPackage filters.
#[derive(Debug, Deserialize)]
pub struct QueryAnswer {
    /// The stored signed events, verbatim.
    pub events: Vec<Box<RawValue>>,
    /// Consume-on-query only: owners whose KeyPackages were left out because
    /// the requester is over its rate limit for them.
    #[serde(default)]
    pub rate_limited: Vec<String>,
}

/// An HTTP client of the KeyPackage service.
#[derive(Debug, Clone)]
pub struct Gateway {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Gateway {
    /// A client for the service named by the configuration.
    pub fn new(config: &RelayConfig) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder().timeout(config.gateway_timeout).build()?;
        Ok(Self {
            http,
            base: config.gateway_url.clone(),
            token: config.gateway_token.clone(),
        })
    }

    /// Submits one event (443, 30443, 444 or 5) and returns the service's
    /// decision. `requester` is the connection's NIP-42 pubkey, none when it
    /// authenticated none: a Welcome consumes only when signed by it.
    pub async fn submit(&self, event_json: &str, requester: Option<&PublicKey>) -> Result<Decision, GatewayError> {
        let requester = requester.map(PublicKey::to_hex).unwrap_or_default();
        let path = format!("/v1/events?requester={requester}");
        let body = self.post(&path, event_json.to_owned()).await?;
        serde_json::from_slice(&body).map_err(|e| unavailable(format!("unreadable decision: {e}")))
    }

    /// Answers KeyPackage filters: the stored signed events, verbatim.
    pub async fn query(
        &self,
        filters: &[serde_json::Value],
        requester: Option<&PublicKey>,
    ) -> Result<QueryAnswer, GatewayError> {
        let mut body = serde_json::json!({ "filters": filters });
        if let Some(requester) = requester {
            body["requester"] = requester.to_hex().into();
        }
        let answer = self.post("/v1/keypackages/query", body.to_string()).await?;
        serde_json::from_slice(&answer).map_err(|e| unavailable(format!("unreadable answer: {e}")))
    }

    async fn post(&self, path: &str, body: String) -> Result<Vec<u8>, GatewayError> {
        let mut request = self
            .http
            .post(format!("{}{path}", self.base))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(|e| {
            tracing::warn!(error = %e, path, "keypackage service unreachable");
            unavailable(if e.is_timeout() { "timed out" } else { "unreachable" })
        })?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| unavailable(format!("answer cut short: {e}")))?;
        if status.is_success() {
            return Ok(body.to_vec());
        }
        let detail = serde_json::from_slice::<ErrorBody>(&body)
            .map(|b| b.error.message)
            .unwrap_or_else(|_| status.to_string());
        tracing::warn!(%status, path, detail, "keypackage service refused the request");
        Err(match status.as_u16() {
            400 | 413 => GatewayError(format!("invalid: {detail}")),
            429 => GatewayError(format!("rate-limited: {detail}")),
            401 | 403 => GatewayError("error: this relay is not authorised by its keypackage service".into()),
            _ => unavailable(detail),
        })
    }
}

fn unavailable(detail: impl std::fmt::Display) -> GatewayError {
    GatewayError(format!(
        "error: keypackage service unavailable ({detail}), try again later"
    ))
}
