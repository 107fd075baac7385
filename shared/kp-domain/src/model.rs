//! The stored documents, shared by every backend: one record per KeyPackage
//! (twins in one record), one index per owner, and audit records.
//!
//! Every change of a KeyPackage to or from `available` rewrites its owner's
//! index in the same atomic write, so a backend that makes that write
//! conditional on the index being unchanged (compare-and-swap) serialises
//! every decision about one owner without locking anything else.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Where a KeyPackage is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyPackageState {
    /// Can be served and claimed.
    Available,
    /// Handed out (claim, consuming query, Welcome or direct consume).
    Consumed,
    /// Retired by its owner (NIP-09 deletion or the owner routes).
    Deleted,
    /// Retired by a newer KeyPackage (30443 slot, or the cap's replace_oldest).
    Replaced,
}

impl KeyPackageState {
    /// The state's name as answers and documents write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Available => "available",
            Self::Consumed => "consumed",
            Self::Deleted => "deleted",
            Self::Replaced => "replaced",
        }
    }
}

/// Which Marmot profile a KeyPackage follows.
///
/// Documents written before profiles were recorded have no `profile` field;
/// they are legacy, which is what reading them without one gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    /// The Marmot spec adopted in July 2026 (MDK ≥ 0.9.7, marmot-ts 1.0):
    /// kind 30443, no `encoding` tag, `app_components`, the `0x8009`
    /// account-identity proof.
    Current,
    /// MDK ≤ 0.8: 443/30443 twins, `encoding` tag, `0x000a`, no proof.
    #[default]
    Legacy,
}

impl Profile {
    /// The profile's name as answers and documents write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Current => "current",
            Self::Legacy => "legacy",
        }
    }
}

/// How a KeyPackage was consumed or retired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsumedVia {
    /// `POST /v1/keypackages/claim`.
    Claim,
    /// A query in consume-on-query mode.
    Query,
    /// A Welcome naming it.
    Welcome,
    /// `POST /v1/keypackages/{event_id}/consume`.
    Consume,
    /// The owner's NIP-09 deletion or owner route.
    Deletion,
    /// A newer KeyPackage took its place.
    Replacement,
}

impl ConsumedVia {
    /// The name as audit records write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Claim => "claim",
            Self::Query => "query",
            Self::Welcome => "welcome",
            Self::Consume => "consume",
            Self::Deletion => "deletion",
            Self::Replacement => "replacement",
        }
    }
}

/// One stored signed event of a KeyPackage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// Event id, lowercase hex.
    pub id: String,
    /// 443 or 30443.
    pub kind: u16,
    /// The event's `created_at`.
    pub created_at: u64,
    /// The signed event JSON, served verbatim.
    pub json: String,
}

/// The `keypackages/{keypackage_ref}` document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyPackageRecord {
    /// The KeyPackageRef, lowercase hex (also the document id).
    pub keypackage_ref: String,
    /// The owner's pubkey, lowercase hex.
    pub owner: String,
    /// The MLS ciphersuite.
    pub ciphersuite: u16,
    /// Whether it is a reusable last resort.
    pub last_resort: bool,
    /// The Marmot profile it follows (legacy when the document predates it).
    #[serde(default)]
    pub profile: Profile,
    /// Lifecycle state.
    pub state: KeyPackageState,
    /// The earliest `created_at` of its events.
    pub created_at: u64,
    /// When it stops being served (the earliest expiry of its events).
    pub expires_at: u64,
    /// The KeyPackage's own `not_after`: a tombstone lives at least until then.
    pub not_after: u64,
    /// When cleanup may delete the document: `expires_at` while available,
    /// at least `not_after` once it is a tombstone.
    pub purge_at: u64,
    /// When it was first stored.
    pub stored_at: u64,
    /// The signed events (a 443 and/or a 30443 twin); emptied when retired.
    pub events: Vec<StoredEvent>,
    /// Ids of every event of this KeyPackage, kept after retirement.
    pub event_ids: Vec<String>,
    /// The 30443 `d` slot, when it has a 30443 event.
    pub slot: Option<String>,
    /// When it was consumed or retired.
    pub consumed_at: Option<u64>,
    /// How it was consumed or retired.
    pub consumed_via: Option<ConsumedVia>,
    /// Who consumed it, when known.
    pub consumed_by: Option<String>,
    /// Times a last resort was handed out.
    pub use_count: u64,
    /// When a last resort was last handed out.
    pub last_used_at: Option<u64>,
}

impl KeyPackageRecord {
    /// The event a claim hands out: the 30443 twin when one exists, else the 443.
    pub fn preferred_event(&self) -> Option<&StoredEvent> {
        self.events
            .iter()
            .max_by_key(|event| event.kind == crate::KIND_KEYPACKAGE_ADDRESSABLE)
    }

    /// Whether it may be served at `now`.
    pub fn is_live(&self, now: u64) -> bool {
        self.state == KeyPackageState::Available && self.expires_at > now
    }
}

/// Identity of one event in the owner index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMeta {
    /// Event id.
    pub id: String,
    /// 443 or 30443.
    pub kind: u16,
    /// The event's `created_at`.
    pub created_at: u64,
}

/// One available KeyPackage in its owner's index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerEntry {
    /// The MLS ciphersuite.
    pub ciphersuite: u16,
    /// Whether it is a reusable last resort.
    pub last_resort: bool,
    /// The Marmot profile it follows (legacy when the index predates it).
    #[serde(default)]
    pub profile: Profile,
    /// The earliest `created_at` of its events.
    pub created_at: u64,
    /// When it stops being served.
    pub expires_at: u64,
    /// The KeyPackage's `not_after`, for the tombstone's life.
    pub not_after: u64,
    /// Its events.
    pub events: Vec<EventMeta>,
    /// The 30443 slot, if any.
    pub slot: Option<String>,
    /// Times a last resort was handed out.
    pub use_count: u64,
    /// When a last resort was last handed out.
    pub last_used_at: Option<u64>,
}

impl OwnerEntry {
    /// The lowest event id: the tie-breaker of "oldest"/"newest" orders.
    pub fn lowest_event_id(&self) -> &str {
        self.events.iter().map(|e| e.id.as_str()).min().unwrap_or("")
    }
}

/// The newest 30443 event seen in one `(owner, d)` slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotHead {
    /// The event id.
    pub event_id: String,
    /// Its `created_at`.
    pub created_at: u64,
    /// The KeyPackage it carries.
    pub keypackage_ref: String,
    /// When the record may be forgotten.
    pub purge_at: u64,
}

/// A NIP-09 `a`-tag deletion of a slot: versions up to `until` are deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotDeletion {
    /// The deletion's `created_at`.
    pub until: u64,
    /// When the record may be forgotten.
    pub purge_at: u64,
}

/// The `keypackage_owners/{pubkey}` document: the owner's available
/// KeyPackages and what the owner deleted, small enough to read and rewrite
/// in every decision about the owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct OwnerIndex {
    /// Available KeyPackages by KeyPackageRef.
    pub available: BTreeMap<String, OwnerEntry>,
    /// The newest 30443 event per slot.
    pub slots: BTreeMap<String, SlotHead>,
    /// Event ids the owner deleted, to refuse them later, with their purge time.
    pub deleted_events: BTreeMap<String, u64>,
    /// Slots the owner deleted by `a` tag.
    pub deleted_slots: BTreeMap<String, SlotDeletion>,
    /// The earliest time anything in this index expires (for cleanup).
    pub next_purge_at: u64,
    /// Rate-limit token buckets by key (`claim:<requester>`, `owner_claim`,
    /// `anon_claim`, `ingest`). A full bucket is dropped: absent means full.
    #[serde(default)]
    pub buckets: BTreeMap<String, Bucket>,
}

/// A token bucket's level at a time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    /// Tokens left at `at`.
    pub tokens: f64,
    /// When `tokens` was measured, seconds since the epoch.
    pub at: u64,
}

impl Eq for Bucket {}

impl OwnerIndex {
    /// Drops what has expired by `now`. Records of expired KeyPackages are
    /// deleted by cleanup; reads already ignore them.
    pub fn prune(&mut self, now: u64) {
        self.available.retain(|_, entry| entry.expires_at > now);
        self.slots.retain(|_, head| head.purge_at > now);
        self.deleted_events.retain(|_, purge_at| *purge_at > now);
        self.deleted_slots.retain(|_, deletion| deletion.purge_at > now);
        self.refresh_next_purge();
    }

    /// Recomputes `next_purge_at` (0 when the index is empty).
    pub fn refresh_next_purge(&mut self) {
        self.next_purge_at = self
            .available
            .values()
            .map(|e| e.expires_at)
            .chain(self.slots.values().map(|h| h.purge_at))
            .chain(self.deleted_events.values().copied())
            .chain(self.deleted_slots.values().map(|d| d.purge_at))
            .min()
            .unwrap_or(0);
    }

    /// Whether nothing is left in the index.
    pub fn is_empty(&self) -> bool {
        self.available.is_empty()
            && self.slots.is_empty()
            && self.deleted_events.is_empty()
            && self.deleted_slots.is_empty()
    }

    /// Available, unexpired entries.
    pub fn live(&self, now: u64) -> impl Iterator<Item = (&String, &OwnerEntry)> {
        self.available.iter().filter(move |(_, e)| e.expires_at > now)
    }

    /// The owner's replenishment signal (API.md's count answer).
    pub fn count(&self, owner: &str, cap: usize, now: u64) -> OwnerCount {
        let mut count = OwnerCount::zero(owner, cap);
        for (_, entry) in self.live(now) {
            count.available += 1;
            *count
                .by_ciphersuite
                .entry(crate::ids::format_u16_code(entry.ciphersuite))
                .or_default() += 1;
            match entry.profile {
                Profile::Current => count.current += 1,
                Profile::Legacy => count.legacy += 1,
            }
            if entry.last_resort {
                count.last_resort_available += 1;
                count.last_resort_used |= entry.use_count > 0;
            } else {
                count.one_time += 1;
            }
        }
        count
    }
}

/// Per-owner counts of available, unexpired KeyPackages (twins count once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerCount {
    /// The owner.
    pub owner: String,
    /// All available KeyPackages.
    pub available: u64,
    /// Available one-time KeyPackages.
    pub one_time: u64,
    /// Available KeyPackages by ciphersuite (`0x0001` → count).
    pub by_ciphersuite: BTreeMap<String, u64>,
    /// Available last resorts.
    pub last_resort_available: u64,
    /// Whether an available last resort has been handed out.
    pub last_resort_used: bool,
    /// The per-owner cap.
    pub cap: u64,
    /// Available current-profile KeyPackages: 0 means current clients
    /// cannot invite the owner.
    pub current: u64,
    /// Available legacy-profile KeyPackages.
    pub legacy: u64,
}

impl OwnerCount {
    /// The answer for an owner with nothing stored.
    pub fn zero(owner: &str, cap: usize) -> Self {
        Self {
            owner: owner.to_owned(),
            available: 0,
            one_time: 0,
            by_ciphersuite: BTreeMap::new(),
            last_resort_available: 0,
            last_resort_used: false,
            cap: cap as u64,
            current: 0,
            legacy: 0,
        }
    }
}

/// A `keypackage_audit` record: one consumption or retirement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// The KeyPackage.
    pub keypackage_ref: String,
    /// Its owner.
    pub owner: String,
    /// Its event ids.
    pub event_ids: Vec<String>,
    /// How it was consumed.
    pub via: ConsumedVia,
    /// Who asked, when known.
    pub requester: Option<String>,
    /// When.
    pub at: u64,
    /// Whether it was a last resort (which stays available).
    pub last_resort: bool,
    /// When the record may be deleted.
    pub expire_at: u64,
}
