//! Where a request's credentials are read.
//!
//! A relay sends `Authorization: Bearer <relay token>`, an owner
//! `Authorization: Nostr <base64 event>` (NIP-98). Behind Google API Gateway
//! with backend authentication, the gateway puts its own Google ID token in
//! `Authorization`, for Cloud Run's IAM check, and moves the client's header
//! to `X-Forwarded-Authorization`: the client's credentials are read there
//! first.
//!
//! Behind Cloud Run IAM (`KP_PLATFORM_AUTHENTICATED`), every request that
//! reaches the process carries a Google ID token that Cloud Run verified (in
//! `X-Serverless-Authorization` when the caller used it, else in
//! `Authorization`; Cloud Run may strip its signature). [`platform_caller`]
//! reads the caller's email from it without checking the signature again: it
//! is only trusted because the platform checked it, which is why the setting
//! must never be used on a service that anyone may invoke.

use axum::http::{HeaderMap, header};
use base64::Engine as _;

/// The header API Gateway moves the client's `Authorization` header to.
pub const X_FORWARDED_AUTHORIZATION: &str = "x-forwarded-authorization";

/// The header Cloud Run also accepts an invoker's ID token in, leaving
/// `Authorization` to the application.
pub const X_SERVERLESS_AUTHORIZATION: &str = "x-serverless-authorization";

/// The client's own `Authorization` value: `X-Forwarded-Authorization` when
/// present, else `Authorization`.
pub fn client_authorization(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(X_FORWARDED_AUTHORIZATION)
        .or_else(|| headers.get(header::AUTHORIZATION))
        .and_then(|v| v.to_str().ok())
}

/// The `email` claim of the ID token the platform verified, unverified here.
pub fn platform_caller(headers: &HeaderMap) -> Option<String> {
    let value = headers
        .get(X_SERVERLESS_AUTHORIZATION)
        .or_else(|| headers.get(header::AUTHORIZATION))?
        .to_str()
        .ok()?;
    let token = value.strip_prefix("Bearer ")?.trim();
    let payload = token.split('.').nth(1)?;
    let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&claims).ok()?;
    claims["email"].as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id_token(claims: &str) -> String {
        let part = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!(
            "Bearer {}.{}.SIGNATURE_REMOVED_BY_GOOGLE",
            part(r#"{"alg":"RS256","typ":"JWT"}"#),
            part(claims)
        )
    }

    #[test]
    fn the_platform_caller_is_the_email_of_the_verified_id_token() {
        let mut headers = HeaderMap::new();
        assert_eq!(platform_caller(&headers), None);
        headers.insert(
            header::AUTHORIZATION,
            id_token(r#"{"email":"cron@p.iam.gserviceaccount.com","aud":"https://x.run.app"}"#)
                .parse()
                .unwrap(),
        );
        assert_eq!(
            platform_caller(&headers).as_deref(),
            Some("cron@p.iam.gserviceaccount.com")
        );
        // X-Serverless-Authorization is the one Cloud Run verified when present.
        headers.insert(
            X_SERVERLESS_AUTHORIZATION,
            id_token(r#"{"email":"gw@p.iam.gserviceaccount.com"}"#).parse().unwrap(),
        );
        assert_eq!(
            platform_caller(&headers).as_deref(),
            Some("gw@p.iam.gserviceaccount.com")
        );
        for junk in ["Bearer relay-token", "Nostr abc", "Bearer a.%%%.c", "Bearer a.e30.c"] {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, junk.parse().unwrap());
            assert_eq!(platform_caller(&headers), None, "{junk}");
        }
    }

    #[test]
    fn the_client_authorization_is_the_forwarded_one_first() {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, "Bearer gateway-id-token".parse().unwrap());
        assert_eq!(client_authorization(&headers), Some("Bearer gateway-id-token"));
        headers.insert(X_FORWARDED_AUTHORIZATION, "Bearer relay".parse().unwrap());
        assert_eq!(client_authorization(&headers), Some("Bearer relay"));
    }
}
