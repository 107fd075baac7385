//! NIP-98 HTTP authentication of owner routes: `Authorization: Nostr
//! <base64 kind 27235 event>` naming the exact URL and method, recent, and
//! hashing the body when there is one. Verified here for every method
//! (the `nostr` crate's helper has no DELETE); single use is the store's job.

use base64::Engine as _;
use nostr::prelude::Event;
use sha2::{Digest as _, Sha256};

/// Kind of the NIP-98 HTTP auth event.
pub const KIND_HTTP_AUTH: u16 = 27235;

/// How far `created_at` may be from now, in seconds.
pub const MAX_SKEW_SECS: u64 = 60;

/// Why an owner request was not authenticated (HTTP 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Nostr ...` header.
    #[error("missing Authorization: Nostr header")]
    Missing,
    /// The header is not base64 of an event.
    #[error("authorization is not a base64 nostr event")]
    Malformed,
    /// The id or signature does not verify.
    #[error("authorization event has a bad id or signature")]
    BadSignature,
    /// Not kind 27235.
    #[error("authorization event is not kind 27235")]
    WrongKind,
    /// The `u` tag is not this request's URL.
    #[error("authorization u tag does not match the request URL")]
    WrongUrl,
    /// The `method` tag is not this request's method.
    #[error("authorization method tag does not match the request method")]
    WrongMethod,
    /// `created_at` is more than a minute away from now.
    #[error("authorization event is stale or from the future")]
    Stale,
    /// The `payload` tag is missing or not the body's SHA-256.
    #[error("authorization payload tag does not match the body")]
    WrongPayload,
    /// The event was already used once.
    #[error("authorization event was already used")]
    Replayed,
}

/// A verified owner request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorized {
    /// The caller's pubkey, lowercase hex.
    pub pubkey: String,
    /// The auth event's id, to remember it was used.
    pub event_id: String,
    /// Its `created_at`.
    pub created_at: u64,
}

fn tag<'a>(event: &'a Event, name: &str) -> Option<&'a str> {
    event.tags.iter().find_map(|t| match t.as_slice() {
        [n, value, ..] if n == name => Some(value.as_str()),
        _ => None,
    })
}

/// Verifies an `Authorization` header value for `method` on `url` (the
/// public base URL plus path and query) with `body`, at `now`.
pub fn verify(header: Option<&str>, url: &str, method: &str, body: &[u8], now: u64) -> Result<Authorized, AuthError> {
    let encoded = header
        .and_then(|h| h.strip_prefix("Nostr "))
        .map(str::trim)
        .ok_or(AuthError::Missing)?;
    let json = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| AuthError::Malformed)?;
    let json = std::str::from_utf8(&json).map_err(|_| AuthError::Malformed)?;
    let event = Event::from_json(json).map_err(|_| AuthError::Malformed)?;
    if !event.verify_id() || !event.verify_signature() {
        return Err(AuthError::BadSignature);
    }
    if event.kind.as_u16() != KIND_HTTP_AUTH {
        return Err(AuthError::WrongKind);
    }
    if tag(&event, "u") != Some(url) {
        return Err(AuthError::WrongUrl);
    }
    if !tag(&event, "method").is_some_and(|m| m.eq_ignore_ascii_case(method)) {
        return Err(AuthError::WrongMethod);
    }
    let created_at = event.created_at.as_secs();
    if created_at.abs_diff(now) > MAX_SKEW_SECS {
        return Err(AuthError::Stale);
    }
    if !body.is_empty() {
        let expected = hex::encode(Sha256::digest(body));
        if tag(&event, "payload").map(str::to_ascii_lowercase) != Some(expected) {
            return Err(AuthError::WrongPayload);
        }
    }
    Ok(Authorized {
        pubkey: event.pubkey.to_hex(),
        event_id: event.id.to_hex(),
        created_at,
    })
}
