//! The limits validation and the lifecycle rules obey, with the defaults of API.md.

use serde::{Deserialize, Serialize};

/// Limits applied when validating a KeyPackage event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationConfig {
    /// Largest event JSON accepted, in bytes (`KP_MAX_EVENT_BYTES`).
    pub max_event_bytes: usize,
    /// Longest time a KeyPackage is served after its `created_at` (`KP_TTL_SECS`).
    pub ttl_secs: u64,
    /// Longest KeyPackage lifetime, `not_after - not_before` (`KP_MAX_LIFETIME_SECS`).
    pub max_lifetime_secs: u64,
    /// How far in the future `created_at` may be (`KP_FUTURE_SKEW_SECS`).
    pub future_skew_secs: u64,
    /// Whether a KeyPackage carrying last_resort must advertise it in its tags
    /// (`KP_REQUIRE_LAST_RESORT`).
    pub require_last_resort: bool,
    /// Whether legacy-profile KeyPackages (MDK ≤ 0.8: kind 443, `encoding`
    /// tag, `0x000a`, no `0x8009` proof) are accepted (`KP_ACCEPT_LEGACY`).
    pub accept_legacy: bool,
}

/// The longest KeyPackage lifetime the current Marmot profile allows: 84
/// days and one hour.
pub const CURRENT_PROFILE_MAX_LIFETIME_SECS: u64 = 7_261_200;

impl Default for ValidationConfig {
    fn default() -> Self {
        Self {
            max_event_bytes: 65_536,
            ttl_secs: 2_592_000,
            max_lifetime_secs: CURRENT_PROFILE_MAX_LIFETIME_SECS,
            future_skew_secs: 900,
            require_last_resort: true,
            accept_legacy: true,
        }
    }
}

/// What happens to an upload that would exceed the per-owner cap (`KP_ON_CAP`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CapPolicy {
    /// Refuse the upload with `rate-limited:`.
    #[default]
    Reject,
    /// Retire the owner's oldest KeyPackage to make room.
    ReplaceOldest,
}

impl std::str::FromStr for CapPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "reject" => Ok(Self::Reject),
            "replace_oldest" => Ok(Self::ReplaceOldest),
            other => Err(format!("expected reject or replace_oldest, got {other:?}")),
        }
    }
}

/// A rate: `count` events per `per_secs` seconds (`COUNT/SECONDS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Events allowed per window; also the bucket's capacity.
    pub count: u32,
    /// The window, in seconds.
    pub per_secs: u64,
}

impl std::str::FromStr for Rate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (count, secs) = s.split_once('/').ok_or("expected COUNT/SECONDS, e.g. 6/600")?;
        let count: u32 = count.trim().parse().map_err(|_| "COUNT must be a whole number")?;
        let per_secs: u64 = secs.trim().parse().map_err(|_| "SECONDS must be a whole number")?;
        if count == 0 || per_secs == 0 {
            return Err("COUNT and SECONDS must be positive".into());
        }
        Ok(Self { count, per_secs })
    }
}

/// Drain and flood protection: token buckets kept in the owner's index, so
/// every instance shares them and a decision takes its token atomically.
/// `None` means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RateLimits {
    /// Claims per (requester, owner) (`KP_CLAIM_RATE`).
    pub claim: Option<Rate>,
    /// Claims per owner, all requesters together (`KP_OWNER_CLAIM_RATE`).
    pub owner_claim: Option<Rate>,
    /// Claims per owner without a requester (`KP_ANON_CLAIM_RATE`).
    pub anon_claim: Option<Rate>,
    /// New KeyPackages per owner, twins once (`KP_INGEST_RATE`).
    pub ingest: Option<Rate>,
}

impl RateLimits {
    /// The default limits: 6/600 per (requester, owner), 6/3600 per owner (below
    /// the default cap of 10, so the owner bucket empties before the stock does),
    /// 2/600 anonymous, 30/600 uploads.
    pub fn api_defaults() -> Self {
        let rate = |count, per_secs| Some(Rate { count, per_secs });
        Self {
            claim: rate(6, 600),
            owner_claim: rate(6, 3600),
            anon_claim: rate(2, 600),
            ingest: rate(30, 600),
        }
    }
}

/// The lifecycle limits a store enforces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Most available KeyPackages one owner may have (`KP_MAX_PER_OWNER`).
    pub max_per_owner: usize,
    /// What an upload over the cap does (`KP_ON_CAP`).
    pub on_cap: CapPolicy,
    /// Most KeyPackages per author in one query answer (`KP_MAX_PER_AUTHOR`).
    pub max_per_author: usize,
    /// How long consumption records are kept (`KP_AUDIT_RETENTION_SECS`).
    pub audit_retention_secs: u64,
    /// How long a deletion of an event the store never saw is remembered, so
    /// that the event cannot be stored after its deletion. Any event created
    /// before the deletion is expired once this has passed: `KP_TTL_SECS +
    /// KP_FUTURE_SKEW_SECS`.
    pub deletion_memory_secs: u64,
    /// Rate limits (none by default; the process configuration sets API.md's).
    pub limits: RateLimits,
}

impl Default for Policy {
    fn default() -> Self {
        let validation = ValidationConfig::default();
        Self {
            max_per_owner: 10,
            on_cap: CapPolicy::Reject,
            max_per_author: 10,
            audit_retention_secs: 2_592_000,
            deletion_memory_secs: validation.ttl_secs + validation.future_skew_secs,
            limits: RateLimits::default(),
        }
    }
}
