//! The `Store` trait: the KeyPackage lifecycle every backend implements, with
//! the outcomes and errors callers see. It knows no backend; each backend
//! lives in its own crate and passes the one conformance suite in
//! `kp-testkit`.

#![forbid(unsafe_code)]

use async_trait::async_trait;
use kp_domain::filter::Filter;
use kp_domain::limits::Claimant;
use kp_domain::rules::{IngestDecision, Plan};
use kp_domain::{
    AuditRecord, ConsumedVia, Deletion, KeyPackageEvent, KeyPackageRecord, OwnerCount, Policy, StoredEvent,
};

/// What an ingest did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestOutcome {
    /// Stored as a new KeyPackage.
    Stored {
        /// KeyPackages it retired (30443 slot replacement, `replace_oldest`).
        retired: Vec<String>,
    },
    /// Stored beside its twin (same KeyPackageRef, other kind).
    StoredTwin,
    /// This event is already stored.
    Duplicate,
    /// The KeyPackage was consumed, deleted or replaced, or the owner deleted
    /// this event: it never comes back.
    AlreadyUsed,
    /// A newer 30443 event holds its slot.
    SlotHeldByNewer,
    /// The owner is at the cap (policy `reject`).
    OverCap {
        /// The cap.
        cap: usize,
    },
    /// The owner uploaded too many new KeyPackages lately (`KP_INGEST_RATE`).
    RateLimited {
        /// Seconds until the next upload is allowed.
        retry_after: u64,
    },
}

impl IngestOutcome {
    /// The NIP-01 decision: accepted, and the message (empty when stored).
    pub fn decision(&self) -> (bool, String) {
        match self {
            Self::Stored { .. } | Self::StoredTwin => (true, String::new()),
            Self::Duplicate => (true, "duplicate: already have this event".into()),
            Self::AlreadyUsed => (false, "duplicate: keypackage already used".into()),
            Self::SlotHeldByNewer => (false, "duplicate: a newer keypackage holds this slot".into()),
            Self::OverCap { cap } => (
                false,
                format!("rate-limited: owner already has {cap} available keypackages, the most allowed"),
            ),
            Self::RateLimited { retry_after } => (
                false,
                format!("rate-limited: too many new keypackages for this owner, retry in {retry_after} s"),
            ),
        }
    }
}

/// Who a consumption counts against: a Welcome is a claim by its signer;
/// other direct consumptions come from operators and are not limited.
pub fn consume_claimant(via: ConsumedVia, consumed_by: Option<&str>) -> Claimant<'_> {
    match via {
        ConsumedVia::Welcome | ConsumedVia::Claim | ConsumedVia::Query => Claimant::from_requester(consumed_by),
        ConsumedVia::Consume | ConsumedVia::Deletion | ConsumedVia::Replacement => Claimant::Operator,
    }
}

/// Splits an ingest decision into the plan to write and the outcome to
/// answer once it is written, or the outcome to answer without writing.
pub fn ingest_step(decision: IngestDecision) -> Result<(Plan, IngestOutcome), IngestOutcome> {
    match decision {
        IngestDecision::Store { plan, twin: true, .. } => Ok((plan, IngestOutcome::StoredTwin)),
        IngestDecision::Store { plan, retired, .. } => Ok((plan, IngestOutcome::Stored { retired })),
        IngestDecision::Duplicate => Err(IngestOutcome::Duplicate),
        IngestDecision::AlreadyUsed => Err(IngestOutcome::AlreadyUsed),
        IngestDecision::SlotHeldByNewer => Err(IngestOutcome::SlotHeldByNewer),
        IngestDecision::OverCap { cap } => Err(IngestOutcome::OverCap { cap }),
        IngestDecision::RateLimited(limited) => Err(IngestOutcome::RateLimited {
            retry_after: limited.retry_after,
        }),
    }
}

/// What a claim handed out for one owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    /// The event handed out (the 30443 twin when there is one), verbatim;
    /// `None` when the owner has nothing.
    pub event: Option<String>,
    /// The KeyPackage, when one was handed out.
    pub keypackage_ref: Option<String>,
    /// Whether it is a last resort, which stays available.
    pub last_resort: bool,
    /// Set when the claimant is over its rate limit: seconds to wait. Nothing
    /// was handed out.
    pub retry_after: Option<u64>,
}

impl Claimed {
    /// The owner has nothing to hand out.
    pub fn nothing() -> Self {
        Self {
            event: None,
            keypackage_ref: None,
            last_resort: false,
            retry_after: None,
        }
    }

    /// The claimant is over its rate limit.
    pub fn rate_limited(retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::nothing()
        }
    }
}

/// What consuming one event's KeyPackage did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsumeOutcome {
    /// The one-time KeyPackage is now consumed.
    Consumed {
        /// The KeyPackage.
        keypackage_ref: String,
    },
    /// A last resort: it stays available and a use was recorded.
    LastResortUsed {
        /// The KeyPackage.
        keypackage_ref: String,
    },
    /// It was already consumed, deleted or replaced.
    AlreadyConsumed {
        /// The KeyPackage.
        keypackage_ref: String,
    },
    /// No live KeyPackage has this event (unknown, or expired).
    NotFound,
    /// The claimant (a Welcome's signer) is over its rate limit; nothing was
    /// consumed.
    RateLimited {
        /// Seconds to wait.
        retry_after: u64,
    },
}

/// What a deletion retired.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeletionOutcome {
    /// KeyPackages retired by this deletion.
    pub retired: Vec<String>,
}

/// One KeyPackage chosen for a query answer, with the events it contributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected {
    /// The KeyPackage.
    pub keypackage_ref: String,
    /// Its owner.
    pub owner: String,
    /// Whether it is a last resort.
    pub last_resort: bool,
    /// Its events in the answer, newest first.
    pub events: Vec<StoredEvent>,
}

/// The selection of a query from candidate records (what every backend's
/// [`Store::select`] answers once it has read its candidates).
pub fn selection(
    candidates: &[KeyPackageRecord],
    filters: &[Filter],
    max_per_author: usize,
    now: u64,
) -> Vec<Selected> {
    kp_domain::query::select_keypackages(candidates, filters, max_per_author, now)
        .into_iter()
        .map(|(record, events)| Selected {
            keypackage_ref: record.keypackage_ref.clone(),
            owner: record.owner.clone(),
            last_resort: record.last_resort,
            events: events.into_iter().cloned().collect(),
        })
        .collect()
}

/// A consuming query's answer (`KP_CONSUME_ON_QUERY`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConsumingAnswer {
    /// The events served, newest first: each one-time KeyPackage among them
    /// was consumed for this answer and is served to nobody else.
    pub events: Vec<String>,
    /// Owners left out because the requester is over its rate limit.
    pub rate_limited: Vec<String>,
}

/// Options of a cleanup run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanupOptions {
    /// Count what would be removed without removing it.
    pub dry_run: bool,
    /// Stop starting new batches after this long.
    pub time_budget: std::time::Duration,
    /// Documents per batch.
    pub batch_size: usize,
}

impl Default for CleanupOptions {
    fn default() -> Self {
        Self {
            dry_run: false,
            time_budget: std::time::Duration::from_secs(25),
            batch_size: 200,
        }
    }
}

/// What a cleanup run did. Counts are of KeyPackages, not events.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CleanupReport {
    /// Expired available KeyPackages removed.
    pub expired_deleted: u64,
    /// Tombstones removed once their KeyPackage could no longer validate.
    pub tombstones_purged: u64,
    /// Audit records past their retention removed.
    pub audit_purged: u64,
    /// Owner indexes pruned of expired entries.
    pub owners_pruned: u64,
    /// `false` when the time budget ran out first; the next run continues.
    pub complete: bool,
}

/// Why a store call failed. Logical outcomes (already consumed, over the
/// cap) are not errors; these are failures of the store itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store did not answer, or answered with a transient error. Retrying
    /// the same call is safe.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Contention on one owner did not settle within the retry budget.
    /// Retrying the same call is safe.
    #[error("store contention: {0}")]
    Contention(String),
    /// A stored document could not be read back: a bug or a foreign writer.
    #[error("corrupt document: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Whether the caller may retry (HTTP 503 with `Retry-After`).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::Contention(_))
    }
}

/// Result of a store call.
pub type StoreResult<T> = Result<T, StoreError>;

/// The KeyPackage lifecycle. `now` is the caller's clock, in seconds since
/// the epoch; every decision about expiry uses it.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The lifecycle policy this store enforces.
    fn policy(&self) -> &Policy;

    /// Stores a validated KeyPackage event: idempotent, twins as one
    /// KeyPackage, 30443 slot replacement, the exact per-owner cap,
    /// tombstones and owner deletions refuse replays.
    async fn ingest(&self, keypackage: &KeyPackageEvent, now: u64) -> StoreResult<IngestOutcome>;

    /// The KeyPackages answering NIP-01 filters: only available, unexpired
    /// ones, at most `max_per_author` per author, with their events verbatim.
    async fn select(&self, filters: &[Filter], now: u64) -> StoreResult<Vec<Selected>>;

    /// The stored events answering NIP-01 filters, newest first.
    async fn query(&self, filters: &[Filter], now: u64) -> StoreResult<Vec<String>> {
        let mut events: Vec<StoredEvent> = self
            .select(filters, now)
            .await?
            .into_iter()
            .flat_map(|s| s.events)
            .collect();
        events.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| a.id.cmp(&b.id)));
        events.dedup_by(|a, b| a.id == b.id);
        Ok(events.into_iter().map(|e| e.json).collect())
    }

    /// A query in consume-on-query mode: each one-time KeyPackage chosen is
    /// consumed (one transaction each, exactly as a claim by `requester`,
    /// under the same rate limits) before it is served, and left out when
    /// another caller got it first; an owner's last resort is served (and
    /// its use recorded) only when none of the owner's one-time ones is.
    async fn query_consuming(
        &self,
        filters: &[Filter],
        requester: Option<&str>,
        now: u64,
    ) -> StoreResult<ConsumingAnswer> {
        let selected = self.select(filters, now).await?;
        let mut served: Vec<StoredEvent> = Vec::new();
        let mut answer = ConsumingAnswer::default();
        let mut owners: Vec<&str> = selected.iter().map(|s| s.owner.as_str()).collect();
        owners.dedup();
        for owner in owners {
            let mine: Vec<&Selected> = selected.iter().filter(|s| s.owner == owner).collect();
            let mut got_one_time = false;
            let mut limited = false;
            for pick in mine.iter().filter(|s| !s.last_resort) {
                let id = &pick.events[0].id;
                match self.consume(id, requester, ConsumedVia::Query, now).await? {
                    ConsumeOutcome::Consumed { .. } => {
                        got_one_time = true;
                        served.extend(pick.events.iter().cloned());
                    }
                    ConsumeOutcome::RateLimited { .. } => {
                        limited = true;
                        break;
                    }
                    _ => {}
                }
            }
            if !got_one_time && !limited {
                for pick in mine.iter().filter(|s| s.last_resort).take(1) {
                    match self
                        .consume(&pick.events[0].id, requester, ConsumedVia::Query, now)
                        .await?
                    {
                        ConsumeOutcome::LastResortUsed { .. } => served.extend(pick.events.iter().cloned()),
                        ConsumeOutcome::RateLimited { .. } => limited = true,
                        _ => {}
                    }
                }
            }
            if limited {
                answer.rate_limited.push(owner.to_owned());
            }
        }
        served.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| a.id.cmp(&b.id)));
        answer.events = served.into_iter().map(|e| e.json).collect();
        Ok(answer)
    }

    /// Atomically hands out one KeyPackage of `owner`: the oldest one-time
    /// one (of `ciphersuite`, when given), else the newest last resort.
    async fn claim(
        &self,
        owner: &str,
        ciphersuite: Option<u16>,
        requester: Option<&str>,
        via: ConsumedVia,
        now: u64,
    ) -> StoreResult<Claimed>;

    /// Consumes the KeyPackage holding `event_id` (a last resort records a
    /// use). A Welcome's consumption counts as a claim by `consumed_by` and
    /// is rate limited like one; a direct consume (operators) is not.
    async fn consume(
        &self,
        event_id: &str,
        consumed_by: Option<&str>,
        via: ConsumedVia,
        now: u64,
    ) -> StoreResult<ConsumeOutcome>;

    /// Applies the owner's NIP-09 deletion: retires the deleter's KeyPackages
    /// it names and refuses those events later, even ones not yet stored.
    async fn delete(&self, deletion: &Deletion, now: u64) -> StoreResult<DeletionOutcome>;

    /// The owner's counts of available, unexpired KeyPackages.
    async fn count(&self, owner: &str, now: u64) -> StoreResult<OwnerCount>;

    /// Removes expired KeyPackages, tombstones that outlived their
    /// KeyPackage, and old audit records, in bounded batches.
    async fn cleanup(&self, options: CleanupOptions, now: u64) -> StoreResult<CleanupReport>;

    /// Every KeyPackage record of `owner`, tombstones included (owner routes).
    async fn keypackages_of(&self, owner: &str) -> StoreResult<Vec<KeyPackageRecord>>;

    /// Remembers that a NIP-98 auth event was used, until `expire_at`.
    /// Answers `false` when it was already used: each is good once.
    async fn remember_auth(&self, event_id: &str, expire_at: u64) -> StoreResult<bool>;

    /// The audit records of `owner`'s KeyPackages, oldest first.
    async fn audit(&self, owner: &str) -> StoreResult<Vec<AuditRecord>>;

    /// Whether the store answers (readiness).
    async fn ping(&self) -> StoreResult<()>;
}
