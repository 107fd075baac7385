//! The process configuration: every variable of API.md, read once at start,
//! with its default; a bad value stops the process with a message naming the
//! variable.

use std::net::SocketAddr;
use std::time::Duration;

use kp_domain::{CapPolicy, Policy, Rate, RateLimits, ValidationConfig};

/// Why the configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}: {reason}")]
pub struct ConfigError {
    /// The variable at fault.
    pub variable: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl ConfigError {
    /// A refusal of `variable`, saying why.
    pub fn new(variable: &'static str, reason: impl Into<String>) -> Self {
        Self {
            variable,
            reason: reason.into(),
        }
    }
}

fn bad(variable: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::new(variable, reason)
}

/// Which store backs the service (`KP_STORE`).
#[derive(Clone, PartialEq, Eq)]
pub enum StoreKind {
    /// `sqlite:<path>` or `sqlite::memory:`.
    Sqlite(String),
    /// `firestore`.
    Firestore,
    /// `postgres://...` or `postgresql://...`: the URL, password included.
    Postgres(String),
}

impl std::fmt::Debug for StoreKind {
    /// Never prints a PostgreSQL password: configurations are logged.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(spec) => f.debug_tuple("Sqlite").field(spec).finish(),
            Self::Firestore => f.write_str("Firestore"),
            Self::Postgres(url) => f.debug_tuple("Postgres").field(&redact_password(url)).finish(),
        }
    }
}

/// A `postgres://user:password@host/db` URL with the password hidden,
/// whether in the authority or as a `password=` parameter.
fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (before_query, query) = match rest.split_once('?') {
        Some((before, query)) => (before, Some(query)),
        None => (rest, None),
    };
    let authority_end = before_query.find('/').unwrap_or(before_query.len());
    let (authority, path) = before_query.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((credentials, host)) if credentials.contains(':') => {
            let user = credentials.split_once(':').map_or(credentials, |(user, _)| user);
            format!("{user}:<hidden>@{host}")
        }
        _ => authority.to_owned(),
    };
    let query = query.map(|query| {
        let pairs: Vec<&str> = query
            .split('&')
            .map(|pair| {
                if pair.starts_with("password=") {
                    "password=<hidden>"
                } else {
                    pair
                }
            })
            .collect();
        format!("?{}", pairs.join("&"))
    });
    format!("{scheme}://{authority}{path}{}", query.unwrap_or_default())
}

/// Firestore connection settings (`FIRESTORE_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirestoreConfig {
    /// `FIRESTORE_PROJECT_ID`, falling back to `GOOGLE_CLOUD_PROJECT`.
    pub project_id: Option<String>,
    /// `FIRESTORE_DATABASE_ID`.
    pub database_id: String,
    /// `FIRESTORE_EMULATOR_HOST`.
    pub emulator_host: Option<String>,
}

/// Everything a process needs, built once from the environment.
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    /// `KP_LISTEN` (or `0.0.0.0:$PORT`).
    pub listen: SocketAddr,
    /// `KP_STORE`.
    pub store: StoreKind,
    /// Firestore settings, used when `store` is Firestore.
    pub firestore: FirestoreConfig,
    /// `KP_COLLECTION_PREFIX`.
    pub collection_prefix: String,
    /// `KP_RELAY_TOKEN`, split on commas: any of them is accepted.
    pub relay_tokens: Vec<String>,
    /// `KP_PLATFORM_AUTHENTICATED`: the platform in front (Cloud Run with no
    /// public invoker) lets in only callers whose Google ID token it
    /// verified. The `Authorization` header then holds that ID token, and a
    /// relay's token arrives in `X-Forwarded-Authorization` (where API
    /// Gateway moves it).
    pub platform_authenticated: bool,
    /// `KP_PLATFORM_INVOKERS`, split on commas: the service-account emails
    /// that, once the platform has verified them, need no relay token (the
    /// Cloud Scheduler job). Only with `platform_authenticated`.
    pub platform_invokers: Vec<String>,
    /// Validation limits (`KP_MAX_EVENT_BYTES`, `KP_TTL_SECS`, ...).
    pub validation: ValidationConfig,
    /// Lifecycle policy (`KP_MAX_PER_OWNER`, `KP_ON_CAP`, ...).
    pub policy: Policy,
    /// `KP_CONSUME_ON_QUERY`.
    pub consume_on_query: bool,
    /// `KP_CLEANUP_INTERVAL_SECS` (gateway only); `None` disables.
    pub cleanup_interval: Option<Duration>,
    /// `KP_PUBLIC_URL`.
    pub public_url: String,
    /// `KP_STORE_TIMEOUT_MS`: the deadline of every store call.
    pub store_timeout: Duration,
    /// `KP_PG_POOL`: connections kept to PostgreSQL, used when `store` is
    /// PostgreSQL.
    pub pg_pool: usize,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("store", &self.store)
            .field("firestore", &self.firestore)
            .field("collection_prefix", &self.collection_prefix)
            .field("relay_tokens", &format!("<{} hidden>", self.relay_tokens.len()))
            .field("platform_authenticated", &self.platform_authenticated)
            .field("platform_invokers", &self.platform_invokers)
            .field("validation", &self.validation)
            .field("policy", &self.policy)
            .field("consume_on_query", &self.consume_on_query)
            .field("cleanup_interval", &self.cleanup_interval)
            .field("public_url", &self.public_url)
            .field("store_timeout", &self.store_timeout)
            .field("pg_pool", &self.pg_pool)
            .finish()
    }
}

/// Reads typed values from a variable source, naming the variable on error.
struct Vars<F: Fn(&str) -> Option<String>>(F);

impl<F: Fn(&str) -> Option<String>> Vars<F> {
    fn get(&self, name: &str) -> Option<String> {
        (self.0)(name).filter(|v| !v.trim().is_empty())
    }

    fn parse<T: std::str::FromStr>(&self, name: &'static str, default: T) -> Result<T, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(name) {
            None => Ok(default),
            Some(value) => value
                .trim()
                .parse()
                .map_err(|e| bad(name, format!("cannot parse {value:?}: {e}"))),
        }
    }

    fn bool(&self, name: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.get(name).as_deref().map(str::trim) {
            None => Ok(default),
            Some("true" | "1" | "yes" | "on") => Ok(true),
            Some("false" | "0" | "no" | "off") => Ok(false),
            Some(other) => Err(bad(name, format!("expected true or false, got {other:?}"))),
        }
    }

    /// A comma-separated list, blanks dropped.
    fn list(&self, name: &str) -> Vec<String> {
        self.get(name)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    fn positive(&self, name: &'static str, default: u64) -> Result<u64, ConfigError> {
        let value: u64 = self.parse(name, default)?;
        if value == 0 {
            return Err(bad(name, "must be greater than 0"));
        }
        Ok(value)
    }
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// Reads variables from `lookup` (the environment, or a map in tests).
    pub fn from_vars(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let vars = Vars(lookup);
        let listen = match (vars.get("KP_LISTEN"), vars.get("PORT")) {
            (Some(listen), _) => listen
                .parse()
                .map_err(|_| bad("KP_LISTEN", format!("expected host:port, got {listen:?}")))?,
            (None, Some(port)) => {
                let port: u16 = port
                    .parse()
                    .map_err(|_| bad("PORT", format!("expected a port, got {port:?}")))?;
                SocketAddr::from(([0, 0, 0, 0], port))
            }
            (None, None) => SocketAddr::from(([127, 0, 0, 1], 8080)),
        };
        let store = match vars.get("KP_STORE").unwrap_or_else(|| "sqlite:keypackages.db".into()) {
            s if s == "firestore" => StoreKind::Firestore,
            s if s.starts_with("sqlite:") && s.len() > "sqlite:".len() => StoreKind::Sqlite(s),
            s if s.starts_with("postgres://") || s.starts_with("postgresql://") => StoreKind::Postgres(s),
            s => {
                return Err(bad(
                    "KP_STORE",
                    format!(
                        "expected sqlite:<path>, sqlite::memory:, firestore or postgres://..., got {:?}",
                        redact_password(&s)
                    ),
                ));
            }
        };
        let firestore = FirestoreConfig {
            project_id: vars
                .get("FIRESTORE_PROJECT_ID")
                .or_else(|| vars.get("GOOGLE_CLOUD_PROJECT")),
            database_id: vars.get("FIRESTORE_DATABASE_ID").unwrap_or_else(|| "(default)".into()),
            emulator_host: vars.get("FIRESTORE_EMULATOR_HOST"),
        };
        if store == StoreKind::Firestore && firestore.project_id.is_none() {
            return Err(bad(
                "FIRESTORE_PROJECT_ID",
                "required with KP_STORE=firestore (or set GOOGLE_CLOUD_PROJECT)",
            ));
        }
        let relay_tokens = vars.list("KP_RELAY_TOKEN");
        let platform_authenticated = vars.bool("KP_PLATFORM_AUTHENTICATED", false)?;
        let platform_invokers = vars.list("KP_PLATFORM_INVOKERS");
        if !platform_invokers.is_empty() && !platform_authenticated {
            // Without the platform's verification, anyone could write an
            // ID token naming one of them.
            return Err(bad(
                "KP_PLATFORM_INVOKERS",
                "only meaningful with KP_PLATFORM_AUTHENTICATED=true, behind a platform that verifies the caller",
            ));
        }
        if relay_tokens.is_empty() && !listen.ip().is_loopback() {
            return Err(bad(
                "KP_RELAY_TOKEN",
                format!("required when listening on the non-loopback address {listen}"),
            ));
        }
        let max_event_bytes = vars.positive("KP_MAX_EVENT_BYTES", 65_536)?;
        let validation = ValidationConfig {
            max_event_bytes: usize::try_from(max_event_bytes).map_err(|_| bad("KP_MAX_EVENT_BYTES", "too large"))?,
            ttl_secs: vars.positive("KP_TTL_SECS", 2_592_000)?,
            max_lifetime_secs: vars.positive(
                "KP_MAX_LIFETIME_SECS",
                kp_domain::config::CURRENT_PROFILE_MAX_LIFETIME_SECS,
            )?,
            future_skew_secs: vars.parse("KP_FUTURE_SKEW_SECS", 900)?,
            require_last_resort: vars.bool("KP_REQUIRE_LAST_RESORT", true)?,
            accept_legacy: vars.bool("KP_ACCEPT_LEGACY", true)?,
        };
        let policy = Policy {
            max_per_owner: vars.positive("KP_MAX_PER_OWNER", 10)? as usize,
            on_cap: vars.parse::<CapPolicy>("KP_ON_CAP", CapPolicy::Reject)?,
            max_per_author: vars.positive("KP_MAX_PER_AUTHOR", 10)? as usize,
            audit_retention_secs: vars.positive("KP_AUDIT_RETENTION_SECS", 2_592_000)?,
            deletion_memory_secs: validation.ttl_secs + validation.future_skew_secs,
            limits: {
                let defaults = RateLimits::api_defaults();
                RateLimits {
                    claim: Some(vars.parse::<Rate>("KP_CLAIM_RATE", defaults.claim.expect("default"))?),
                    owner_claim: Some(
                        vars.parse::<Rate>("KP_OWNER_CLAIM_RATE", defaults.owner_claim.expect("default"))?,
                    ),
                    anon_claim: Some(vars.parse::<Rate>("KP_ANON_CLAIM_RATE", defaults.anon_claim.expect("default"))?),
                    ingest: Some(vars.parse::<Rate>("KP_INGEST_RATE", defaults.ingest.expect("default"))?),
                }
            },
        };
        let cleanup_secs: u64 = vars.parse("KP_CLEANUP_INTERVAL_SECS", 3_600)?;
        Ok(Self {
            listen,
            store,
            firestore,
            collection_prefix: vars.get("KP_COLLECTION_PREFIX").unwrap_or_default(),
            relay_tokens,
            platform_authenticated,
            platform_invokers,
            validation,
            policy,
            consume_on_query: vars.bool("KP_CONSUME_ON_QUERY", false)?,
            cleanup_interval: (cleanup_secs > 0).then(|| Duration::from_secs(cleanup_secs)),
            public_url: vars
                .get("KP_PUBLIC_URL")
                .map(|u| u.trim_end_matches('/').to_owned())
                .unwrap_or_else(|| format!("http://{listen}")),
            store_timeout: Duration::from_millis(vars.positive("KP_STORE_TIMEOUT_MS", 10_000)?),
            pg_pool: usize::try_from(vars.positive("KP_PG_POOL", 10)?).map_err(|_| bad("KP_PG_POOL", "too large"))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_vars(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_follow_the_api_table() {
        let c = config(&[]).unwrap();
        assert_eq!(c.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(c.store, StoreKind::Sqlite("sqlite:keypackages.db".into()));
        assert_eq!(
            c.policy,
            Policy {
                limits: RateLimits::api_defaults(),
                ..Policy::default()
            }
        );
        assert_eq!(c.validation, ValidationConfig::default());
        assert_eq!(c.cleanup_interval, Some(Duration::from_secs(3600)));
        assert_eq!(c.public_url, "http://127.0.0.1:8080");
        assert_eq!(
            c.policy.limits.claim,
            Some(Rate {
                count: 6,
                per_secs: 600
            })
        );
        assert!(!c.consume_on_query);
        assert!(!c.platform_authenticated);
        assert!(c.platform_invokers.is_empty());
        assert_eq!(c.firestore.database_id, "(default)");
        assert_eq!(c.pg_pool, 10);
    }

    #[test]
    fn port_listens_on_all_addresses_and_then_needs_a_token() {
        let err = config(&[("PORT", "9000")]).unwrap_err();
        assert_eq!(err.variable, "KP_RELAY_TOKEN");
        let c = config(&[("PORT", "9000"), ("KP_RELAY_TOKEN", "a, b")]).unwrap();
        assert_eq!(c.listen, "0.0.0.0:9000".parse().unwrap());
        assert_eq!(c.relay_tokens, vec!["a".to_string(), "b".to_string()]);
        assert!(!format!("{c:?}").contains("a, b"), "Debug hides tokens");
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (name, value) in [
            ("KP_MAX_PER_OWNER", "ten"),
            ("KP_MAX_PER_OWNER", "0"),
            ("KP_ON_CAP", "drop"),
            ("KP_CONSUME_ON_QUERY", "maybe"),
            ("KP_CLAIM_RATE", "6"),
            ("KP_STORE", "mysql://x"),
            ("KP_PG_POOL", "0"),
            ("KP_PG_POOL", "many"),
            ("KP_LISTEN", "nowhere"),
            ("KP_TTL_SECS", "-1"),
            ("KP_PLATFORM_AUTHENTICATED", "perhaps"),
            ("KP_PLATFORM_INVOKERS", "scheduler@p.iam.gserviceaccount.com"),
        ] {
            let err = config(&[(name, value)]).unwrap_err();
            assert_eq!(err.variable, name, "{err}");
        }
        assert_eq!(
            config(&[("KP_STORE", "firestore")]).unwrap_err().variable,
            "FIRESTORE_PROJECT_ID"
        );
        let c = config(&[("KP_STORE", "firestore"), ("GOOGLE_CLOUD_PROJECT", "p")]).unwrap();
        assert_eq!(c.firestore.project_id.as_deref(), Some("p"));
        assert_eq!(
            config(&[("KP_CLEANUP_INTERVAL_SECS", "0")]).unwrap().cleanup_interval,
            None
        );
    }

    #[test]
    fn platform_invokers_come_with_platform_authentication() {
        let c = config(&[
            ("KP_PLATFORM_AUTHENTICATED", "true"),
            (
                "KP_PLATFORM_INVOKERS",
                " a@p.iam.gserviceaccount.com, ,b@p.iam.gserviceaccount.com",
            ),
        ])
        .unwrap();
        assert!(c.platform_authenticated);
        assert_eq!(
            c.platform_invokers,
            vec![
                "a@p.iam.gserviceaccount.com".to_string(),
                "b@p.iam.gserviceaccount.com".to_string()
            ]
        );
    }

    #[test]
    fn postgres_urls_select_postgres_and_are_never_printed_with_their_password() {
        for url in [
            "postgres://kp:s3cret@db.internal:5432/keypackages",
            "postgresql://kp:s3cret@/keypackages?host=/run/postgresql",
        ] {
            let c = config(&[("KP_STORE", url), ("KP_PG_POOL", "4")]).unwrap();
            assert_eq!(c.store, StoreKind::Postgres(url.to_owned()));
            assert_eq!(c.pg_pool, 4);
            let shown = format!("{c:?}");
            assert!(!shown.contains("s3cret"), "{shown}");
            assert!(shown.contains("kp:<hidden>@"), "{shown}");
        }
        let shown = format!(
            "{:?}",
            StoreKind::Postgres("postgres://h/db?user=kp&password=s3cret".into())
        );
        assert!(!shown.contains("s3cret"), "{shown}");
        let err = config(&[("KP_STORE", "mysql://kp:s3cret@h/db")]).unwrap_err();
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }
}
