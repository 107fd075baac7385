//! The relay's configuration, read once at start; a bad value stops the
//! process with a message naming the variable.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::time::Duration;

pub use kp_http::ConfigError;
use nostr::prelude::RelayUrl;

/// NIP-42 authentication (`KP_RELAY_AUTH`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Every connection must authenticate before it sends EVENT, REQ or COUNT.
    Required,
    /// A challenge is sent on connect; an authenticated connection's pubkey
    /// is passed to the service as the `requester` of its KeyPackage REQs.
    Optional,
    /// No challenge is sent and AUTH is refused.
    Off,
}

/// Everything the relay process needs.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Where the relay listens for WebSocket connections (`KP_RELAY_LISTEN`).
    pub listen: SocketAddr,
    /// The KeyPackage service's base URL (`KP_GATEWAY_URL`), without a trailing slash.
    pub gateway_url: String,
    /// The bearer token sent to the service (`KP_RELAY_TOKEN`; of a
    /// comma-separated list, the first is sent).
    pub gateway_token: Option<String>,
    /// How long one call to the service may take (`KP_GATEWAY_TIMEOUT_MS`).
    pub gateway_timeout: Duration,
    /// NIP-42 mode (`KP_RELAY_AUTH`).
    pub auth: AuthMode,
    /// The URL clients use to reach this relay, checked in AUTH events'
    /// `relay` tag (`KP_RELAY_PUBLIC_URL`, default `ws://` + listen address).
    pub public_url: RelayUrl,
    /// The largest WebSocket message or frame a client may send
    /// (`KP_RELAY_MAX_MESSAGE_BYTES`); a KeyPackage event is under 64 KiB.
    pub max_message_bytes: usize,
    /// Most events the relay's own in-memory database keeps
    /// (`KP_RELAY_MAX_EVENTS`); the oldest make room for new ones.
    pub max_events: NonZeroUsize,
    /// Most WebSocket connections at once (`KP_RELAY_MAX_CONNECTIONS`); one
    /// more gets HTTP 503 instead of the upgrade.
    pub max_connections: usize,
    /// Most open subscriptions per connection (`KP_RELAY_MAX_SUBSCRIPTIONS`).
    pub max_subscriptions: usize,
}

impl RelayConfig {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// Reads variables from `lookup` (the environment, or a map in tests).
    pub fn from_vars(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let listen: SocketAddr = match get("KP_RELAY_LISTEN") {
            Some(listen) => listen
                .parse()
                .map_err(|_| ConfigError::new("KP_RELAY_LISTEN", format!("expected host:port, got {listen:?}")))?,
            None => SocketAddr::from(([127, 0, 0, 1], 7777)),
        };
        let gateway_url = get("KP_GATEWAY_URL").unwrap_or_else(|| "http://127.0.0.1:8080".into());
        let gateway_url = gateway_url.trim_end_matches('/').to_owned();
        if !(gateway_url.starts_with("http://") || gateway_url.starts_with("https://")) {
            return Err(ConfigError::new(
                "KP_GATEWAY_URL",
                format!("expected an http:// or https:// URL, got {gateway_url:?}"),
            ));
        }
        let gateway_token = get("KP_RELAY_TOKEN").and_then(|list| {
            list.split(',')
                .map(str::trim)
                .find(|token| !token.is_empty())
                .map(str::to_owned)
        });
        let gateway_timeout = match get("KP_GATEWAY_TIMEOUT_MS") {
            Some(ms) => match ms.parse::<u64>() {
                Ok(ms) if ms > 0 => Duration::from_millis(ms),
                _ => {
                    return Err(ConfigError::new(
                        "KP_GATEWAY_TIMEOUT_MS",
                        format!("expected milliseconds > 0, got {ms:?}"),
                    ));
                }
            },
            // Above the gateway's store deadline (KP_STORE_TIMEOUT_MS, 10 s)
            // plus validation: the relay never gives up on a decision the
            // store may still commit.
            None => Duration::from_secs(15),
        };
        let auth = match get("KP_RELAY_AUTH").as_deref() {
            None | Some("optional") => AuthMode::Optional,
            Some("required") => AuthMode::Required,
            Some("off") => AuthMode::Off,
            Some(other) => {
                return Err(ConfigError::new(
                    "KP_RELAY_AUTH",
                    format!("expected required, optional or off, got {other:?}"),
                ));
            }
        };
        let public_url = get("KP_RELAY_PUBLIC_URL").unwrap_or_else(|| format!("ws://{listen}"));
        let public_url = RelayUrl::parse(&public_url).map_err(|e| {
            ConfigError::new(
                "KP_RELAY_PUBLIC_URL",
                format!("expected a ws:// or wss:// URL, got {public_url:?}: {e}"),
            )
        })?;
        let positive = |name: &'static str, default: usize| -> Result<NonZeroUsize, ConfigError> {
            match get(name) {
                None => Ok(NonZeroUsize::new(default).expect("default > 0")),
                Some(v) => v
                    .parse::<NonZeroUsize>()
                    .map_err(|_| ConfigError::new(name, format!("expected an integer > 0, got {v:?}"))),
            }
        };
        let max_message_bytes = positive("KP_RELAY_MAX_MESSAGE_BYTES", 131_072)?.get();
        let max_events = positive("KP_RELAY_MAX_EVENTS", 10_000)?;
        let max_connections = positive("KP_RELAY_MAX_CONNECTIONS", 1_024)?.get();
        let max_subscriptions = positive("KP_RELAY_MAX_SUBSCRIPTIONS", 20)?.get();
        Ok(Self {
            listen,
            gateway_url,
            gateway_token,
            gateway_timeout,
            auth,
            public_url,
            max_message_bytes,
            max_events,
            max_connections,
            max_subscriptions,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<RelayConfig, ConfigError> {
        RelayConfig::from_vars(|name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string()))
    }

    #[test]
    fn defaults_listen_on_7777_and_call_the_local_gateway() {
        let c = config(&[]).unwrap();
        assert_eq!(c.listen, "127.0.0.1:7777".parse().unwrap());
        assert_eq!(c.gateway_url, "http://127.0.0.1:8080");
        assert_eq!(c.gateway_token, None);
        assert_eq!(c.auth, AuthMode::Optional);
        assert_eq!(c.gateway_timeout, Duration::from_secs(15));
        assert_eq!(c.max_message_bytes, 131_072);
        assert_eq!(c.max_events.get(), 10_000);
        assert_eq!((c.max_connections, c.max_subscriptions), (1_024, 20));
        assert_eq!(c.public_url.as_str_without_trailing_slash(), "ws://127.0.0.1:7777");
    }

    #[test]
    fn reads_every_variable() {
        let c = config(&[
            ("KP_RELAY_LISTEN", "0.0.0.0:9000"),
            ("KP_GATEWAY_URL", "https://kp.example.com/"),
            ("KP_RELAY_TOKEN", " new-token , old-token"),
            ("KP_RELAY_AUTH", "required"),
            ("KP_RELAY_PUBLIC_URL", "wss://relay.example.com"),
            ("KP_GATEWAY_TIMEOUT_MS", "2500"),
        ])
        .unwrap();
        assert_eq!(c.listen, "0.0.0.0:9000".parse().unwrap());
        assert_eq!(c.gateway_url, "https://kp.example.com");
        assert_eq!(c.gateway_token.as_deref(), Some("new-token"));
        assert_eq!(c.auth, AuthMode::Required);
        assert_eq!(c.public_url.as_str_without_trailing_slash(), "wss://relay.example.com");
        assert_eq!(c.gateway_timeout, Duration::from_millis(2500));
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (name, value) in [
            ("KP_RELAY_LISTEN", "nowhere"),
            ("KP_GATEWAY_URL", "ftp://x"),
            ("KP_RELAY_AUTH", "sometimes"),
            ("KP_RELAY_PUBLIC_URL", "http://x"),
            ("KP_GATEWAY_TIMEOUT_MS", "0"),
            ("KP_RELAY_MAX_MESSAGE_BYTES", "0"),
            ("KP_RELAY_MAX_EVENTS", "many"),
        ] {
            let err = config(&[(name, value)]).unwrap_err();
            assert_eq!(err.variable, name, "{err}");
        }
    }
}
