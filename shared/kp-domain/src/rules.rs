//! Every lifecycle decision, as a pure function from what a backend read (the
//! owner's index, the KeyPackage's record) to a [`Plan`]: what to write. A
//! backend applies a plan in one atomic write, conditional on the owner index
//! being unchanged since it was read, and starts over when it was not.

use crate::config::{CapPolicy, Policy};
use crate::limits::{self, Claimant, RateLimited};
use crate::model::{
    AuditRecord, ConsumedVia, EventMeta, KeyPackageRecord, KeyPackageState, OwnerEntry, OwnerIndex, SlotDeletion,
    SlotHead, StoredEvent,
};
use crate::signals::Deletion;
use crate::validate::KeyPackageEvent;

/// A change to one KeyPackage record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordWrite {
    /// Write the whole record (a new KeyPackage, or a twin added).
    Put(KeyPackageRecord),
    /// Turn an available record into a tombstone: drop its events, set state.
    Retire(Retirement),
    /// A last resort was handed out: bump its use count.
    RecordUse {
        /// The KeyPackage.
        keypackage_ref: String,
        /// The new use count.
        use_count: u64,
        /// When.
        last_used_at: u64,
    },
}

/// How one available KeyPackage becomes a tombstone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retirement {
    /// The KeyPackage.
    pub keypackage_ref: String,
    /// Its new state.
    pub state: KeyPackageState,
    /// When.
    pub at: u64,
    /// How.
    pub via: ConsumedVia,
    /// By whom, when known.
    pub by: Option<String>,
    /// When cleanup may delete the tombstone.
    pub purge_at: u64,
}

impl Retirement {
    /// Applies the retirement to a record read from the store.
    pub fn apply(&self, record: &mut KeyPackageRecord) {
        record.state = self.state;
        record.events.clear();
        record.consumed_at = Some(self.at);
        record.consumed_via = Some(self.via);
        record.consumed_by = self.by.clone();
        record.purge_at = self.purge_at;
    }
}

/// What a backend writes, atomically, for one decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The owner's new index (always written: the index is the lock).
    pub owner: OwnerIndex,
    /// Record changes.
    pub records: Vec<RecordWrite>,
    /// Audit records to add.
    pub audit: Vec<AuditRecord>,
}

/// The outcome of an ingest decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestDecision {
    /// Store it.
    Store {
        /// What to write.
        plan: Plan,
        /// Whether this event joins a stored twin.
        twin: bool,
        /// KeyPackages it retired (30443 slot or replace_oldest).
        retired: Vec<String>,
    },
    /// The same event is already stored.
    Duplicate,
    /// The KeyPackage (or this event) was consumed, deleted or replaced.
    AlreadyUsed,
    /// A newer 30443 event holds the slot.
    SlotHeldByNewer,
    /// The owner is at the cap and the policy is `reject`.
    OverCap {
        /// The cap.
        cap: usize,
    },
    /// The owner uploaded too many new KeyPackages lately.
    RateLimited(RateLimited),
}

fn retirement(
    entry: &OwnerEntry,
    keypackage_ref: &str,
    state: KeyPackageState,
    via: ConsumedVia,
    by: Option<&str>,
    now: u64,
) -> Retirement {
    Retirement {
        keypackage_ref: keypackage_ref.to_owned(),
        state,
        at: now,
        via,
        by: by.map(str::to_owned),
        purge_at: entry.not_after.max(entry.expires_at).max(now + 1),
    }
}

fn audit(
    owner: &str,
    keypackage_ref: &str,
    entry: &OwnerEntry,
    via: ConsumedVia,
    requester: Option<&str>,
    policy: &Policy,
    now: u64,
) -> AuditRecord {
    AuditRecord {
        keypackage_ref: keypackage_ref.to_owned(),
        owner: owner.to_owned(),
        event_ids: entry.events.iter().map(|e| e.id.clone()).collect(),
        via,
        requester: requester.map(str::to_owned),
        at: now,
        last_resort: entry.last_resort,
        expire_at: now + policy.audit_retention_secs,
    }
}

/// Retires one of the owner's KeyPackages at the owner's own request (a
/// replacement or a deletion): the tombstone write and its audit record.
#[allow(clippy::too_many_arguments)]
fn retire_by_owner(
    records: &mut Vec<RecordWrite>,
    audit_records: &mut Vec<AuditRecord>,
    owner_key: &str,
    keypackage_ref: &str,
    entry: &OwnerEntry,
    state: KeyPackageState,
    via: ConsumedVia,
    policy: &Policy,
    now: u64,
) {
    records.push(RecordWrite::Retire(retirement(
        entry,
        keypackage_ref,
        state,
        via,
        Some(owner_key),
        now,
    )));
    audit_records.push(audit(
        owner_key,
        keypackage_ref,
        entry,
        via,
        Some(owner_key),
        policy,
        now,
    ));
}

/// Whether event `a` is newer than `b` in NIP-01 replaceable order
/// (`created_at`, ties to the lower id).
fn newer(a_created: u64, a_id: &str, b_created: u64, b_id: &str) -> bool {
    a_created > b_created || (a_created == b_created && a_id < b_id)
}

/// Decides what an ingest of `kp` does, given the owner's index and the
/// KeyPackage's existing record (if any).
pub fn plan_ingest(
    index: &OwnerIndex,
    existing: Option<&KeyPackageRecord>,
    kp: &KeyPackageEvent,
    policy: &Policy,
    now: u64,
) -> IngestDecision {
    let mut owner = index.clone();
    owner.prune(now);
    if owner.deleted_events.contains_key(&kp.id) {
        return IngestDecision::AlreadyUsed;
    }
    if let Some(slot) = &kp.slot
        && owner.deleted_slots.get(slot).is_some_and(|d| kp.created_at <= d.until)
    {
        return IngestDecision::AlreadyUsed;
    }
    // An available record that is no longer in the index has expired: the
    // new event starts it afresh.
    let existing =
        existing.filter(|r| r.state != KeyPackageState::Available || owner.available.contains_key(&r.keypackage_ref));
    if let Some(record) = existing {
        if record.state != KeyPackageState::Available {
            return IngestDecision::AlreadyUsed;
        }
        if record.event_ids.contains(&kp.id) {
            return IngestDecision::Duplicate;
        }
        if record.events.iter().any(|e| e.kind == kp.kind) {
            // The same KeyPackage re-published in the same kind: one is enough.
            return IngestDecision::Duplicate;
        }
    }

    let mut records = Vec::new();
    let mut audit_records = Vec::new();
    let mut retired = Vec::new();

    if let Some(slot) = &kp.slot {
        if let Some(head) = owner.slots.get(slot)
            && head.keypackage_ref != kp.keypackage_ref
        {
            if !newer(kp.created_at, &kp.id, head.created_at, &head.event_id) {
                return IngestDecision::SlotHeldByNewer;
            }
            let old_ref = head.keypackage_ref.clone();
            if let Some(entry) = owner.available.remove(&old_ref) {
                retire_by_owner(
                    &mut records,
                    &mut audit_records,
                    &kp.owner,
                    &old_ref,
                    &entry,
                    KeyPackageState::Replaced,
                    ConsumedVia::Replacement,
                    policy,
                    now,
                );
                retired.push(old_ref);
            }
        }
        owner.slots.insert(
            slot.clone(),
            SlotHead {
                event_id: kp.id.clone(),
                created_at: kp.created_at,
                keypackage_ref: kp.keypackage_ref.clone(),
                purge_at: kp.not_after.max(kp.expires_at),
            },
        );
    }

    let stored = StoredEvent {
        id: kp.id.clone(),
        kind: kp.kind,
        created_at: kp.created_at,
        json: kp.json.clone(),
    };
    let meta = EventMeta {
        id: kp.id.clone(),
        kind: kp.kind,
        created_at: kp.created_at,
    };
    let twin = existing.is_some();
    let record = match existing {
        Some(record) => {
            let mut record = record.clone();
            record.events.push(stored);
            record.event_ids.push(kp.id.clone());
            record.created_at = record.created_at.min(kp.created_at);
            record.expires_at = record.expires_at.min(kp.expires_at);
            record.purge_at = record.expires_at;
            if record.slot.is_none() {
                record.slot = kp.slot.clone();
            }
            // A current-profile event makes the KeyPackage usable by current
            // clients, whatever its twin is.
            record.profile = record.profile.min(kp.profile);
            let entry = owner
                .available
                .get_mut(&kp.keypackage_ref)
                .expect("an available record is in its owner's index");
            entry.events.push(meta);
            entry.created_at = record.created_at;
            entry.expires_at = record.expires_at;
            if entry.slot.is_none() {
                entry.slot = kp.slot.clone();
            }
            entry.profile = record.profile;
            record
        }
        None => {
            if let Err(limited) = limits::take(&mut owner, &limits::ingest_buckets(&policy.limits), &policy.limits, now)
            {
                return IngestDecision::RateLimited(limited);
            }
            if owner.available.len() >= policy.max_per_owner {
                match policy.on_cap {
                    CapPolicy::Reject => {
                        return IngestDecision::OverCap {
                            cap: policy.max_per_owner,
                        };
                    }
                    CapPolicy::ReplaceOldest => {
                        while owner.available.len() >= policy.max_per_owner.max(1) {
                            let Some(oldest) = oldest_for_replacement(&owner) else {
                                break;
                            };
                            let entry = owner.available.remove(&oldest).expect("chosen from the index");
                            retire_by_owner(
                                &mut records,
                                &mut audit_records,
                                &kp.owner,
                                &oldest,
                                &entry,
                                KeyPackageState::Replaced,
                                ConsumedVia::Replacement,
                                policy,
                                now,
                            );
                            retired.push(oldest);
                        }
                    }
                }
            }
            owner.available.insert(
                kp.keypackage_ref.clone(),
                OwnerEntry {
                    ciphersuite: kp.ciphersuite,
                    last_resort: kp.last_resort,
                    profile: kp.profile,
                    created_at: kp.created_at,
                    expires_at: kp.expires_at,
                    not_after: kp.not_after,
                    events: vec![meta],
                    slot: kp.slot.clone(),
                    use_count: 0,
                    last_used_at: None,
                },
            );
            KeyPackageRecord {
                keypackage_ref: kp.keypackage_ref.clone(),
                owner: kp.owner.clone(),
                ciphersuite: kp.ciphersuite,
                last_resort: kp.last_resort,
                profile: kp.profile,
                state: KeyPackageState::Available,
                created_at: kp.created_at,
                expires_at: kp.expires_at,
                not_after: kp.not_after,
                purge_at: kp.expires_at,
                stored_at: now,
                events: vec![stored],
                event_ids: vec![kp.id.clone()],
                slot: kp.slot.clone(),
                consumed_at: None,
                consumed_via: None,
                consumed_by: None,
                use_count: 0,
                last_used_at: None,
            }
        }
    };
    records.push(RecordWrite::Put(record));
    owner.refresh_next_purge();
    IngestDecision::Store {
        plan: Plan {
            owner,
            records,
            audit: audit_records,
        },
        twin,
        retired,
    }
}

/// The KeyPackage `replace_oldest` retires: the oldest one-time one, else the
/// oldest last resort.
fn oldest_for_replacement(owner: &OwnerIndex) -> Option<String> {
    owner
        .available
        .iter()
        .min_by(|(_, a), (_, b)| {
            (a.last_resort, a.created_at, a.lowest_event_id()).cmp(&(b.last_resort, b.created_at, b.lowest_event_id()))
        })
        .map(|(r, _)| r.clone())
}

/// What a claim picks from an owner's index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimChoice {
    /// The KeyPackage handed out.
    pub keypackage_ref: String,
    /// Whether it is a last resort (which stays available).
    pub last_resort: bool,
    /// What to write.
    pub plan: Plan,
}

/// Picks what a claim hands out: the oldest one-time KeyPackage (of the
/// ciphersuite, when given), else the newest last resort. `Ok(None)` when the
/// owner has nothing; an error when the claimant is over its rate limit.
#[allow(clippy::too_many_arguments)]
pub fn plan_claim(
    owner_key: &str,
    index: &OwnerIndex,
    ciphersuite: Option<u16>,
    requester: Option<&str>,
    claimant: Claimant<'_>,
    via: ConsumedVia,
    policy: &Policy,
    now: u64,
) -> Result<Option<ClaimChoice>, RateLimited> {
    let candidates = || {
        index
            .live(now)
            .filter(move |(_, e)| ciphersuite.is_none_or(|cs| e.ciphersuite == cs))
    };
    let one_time = candidates()
        .filter(|(_, e)| !e.last_resort)
        .min_by(|(_, a), (_, b)| (a.created_at, a.lowest_event_id()).cmp(&(b.created_at, b.lowest_event_id())));
    let chosen = one_time.or_else(|| {
        candidates().filter(|(_, e)| e.last_resort).max_by(|(_, a), (_, b)| {
            // Newest first; ties go to the lower event id.
            a.created_at
                .cmp(&b.created_at)
                .then_with(|| b.lowest_event_id().cmp(a.lowest_event_id()))
        })
    });
    let Some((keypackage_ref, _)) = chosen else {
        return Ok(None);
    };
    let keypackage_ref = keypackage_ref.clone();
    let plan = plan_use(owner_key, index, &keypackage_ref, requester, claimant, via, policy, now)?
        .expect("chosen among the live entries");
    Ok(Some(ClaimChoice {
        last_resort: index.available[&keypackage_ref].last_resort,
        plan,
        keypackage_ref,
    }))
}

/// Hands out one available KeyPackage: a one-time one is consumed, a last
/// resort records a use. `Ok(None)` when it is not available at `now`; an
/// error when the claimant is over its rate limit.
#[allow(clippy::too_many_arguments)]
pub fn plan_use(
    owner_key: &str,
    index: &OwnerIndex,
    keypackage_ref: &str,
    requester: Option<&str>,
    claimant: Claimant<'_>,
    via: ConsumedVia,
    policy: &Policy,
    now: u64,
) -> Result<Option<Plan>, RateLimited> {
    let mut owner = index.clone();
    owner.prune(now);
    let Some(entry) = owner.available.get(keypackage_ref).cloned() else {
        return Ok(None);
    };
    limits::take(
        &mut owner,
        &limits::claim_buckets(&policy.limits, claimant),
        &policy.limits,
        now,
    )?;
    let record = if entry.last_resort {
        let slot = owner.available.get_mut(keypackage_ref).expect("just read");
        slot.use_count += 1;
        slot.last_used_at = Some(now);
        RecordWrite::RecordUse {
            keypackage_ref: keypackage_ref.to_owned(),
            use_count: slot.use_count,
            last_used_at: now,
        }
    } else {
        owner.available.remove(keypackage_ref);
        RecordWrite::Retire(retirement(
            &entry,
            keypackage_ref,
            KeyPackageState::Consumed,
            via,
            requester,
            now,
        ))
    };
    owner.refresh_next_purge();
    Ok(Some(Plan {
        owner,
        records: vec![record],
        audit: vec![audit(owner_key, keypackage_ref, &entry, via, requester, policy, now)],
    }))
}

/// What a deletion retires, given the deleter's index and the records its
/// `e` tags name (records of other owners are ignored).
pub fn plan_deletion(
    index: &OwnerIndex,
    named_records: &[KeyPackageRecord],
    deletion: &Deletion,
    policy: &Policy,
    now: u64,
) -> (Plan, Vec<String>) {
    let mut owner = index.clone();
    owner.prune(now);
    let mut refs: Vec<String> = named_records
        .iter()
        .filter(|r| r.owner == deletion.deleter)
        .map(|r| r.keypackage_ref.clone())
        .collect();
    for slot in &deletion.slots {
        if let Some(head) = owner.slots.get(slot)
            && head.created_at <= deletion.created_at
        {
            refs.push(head.keypackage_ref.clone());
        }
        let entry = owner.deleted_slots.entry(slot.clone()).or_insert(SlotDeletion {
            until: deletion.created_at,
            purge_at: 0,
        });
        entry.until = entry.until.max(deletion.created_at);
        entry.purge_at = entry.purge_at.max(now + policy.deletion_memory_secs);
    }
    for id in &deletion.event_ids {
        let purge_at = owner.deleted_events.entry(id.clone()).or_insert(0);
        *purge_at = (*purge_at).max(now + policy.deletion_memory_secs);
    }
    refs.sort();
    refs.dedup();
    let mut records = Vec::new();
    let mut audit_records = Vec::new();
    let mut retired = Vec::new();
    for keypackage_ref in refs {
        if let Some(entry) = owner.available.remove(&keypackage_ref) {
            retire_by_owner(
                &mut records,
                &mut audit_records,
                &deletion.deleter,
                &keypackage_ref,
                &entry,
                KeyPackageState::Deleted,
                ConsumedVia::Deletion,
                policy,
                now,
            );
            retired.push(keypackage_ref);
        }
    }
    owner.refresh_next_purge();
    (
        Plan {
            owner,
            records,
            audit: audit_records,
        },
        retired,
    )
}
