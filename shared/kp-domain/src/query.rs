//! Choosing what a query answers with, from the candidate KeyPackages a
//! backend found: per author at most `max_per_author` KeyPackages and at
//! most one per 30443 slot (one slot per device, so every device of an
//! account is invitable), ranked current profile before legacy, one-time
//! before last resort, newest first, ties to the lower KeyPackageRef; each
//! filter's limit counted in events, spent in rank order so that a legacy
//! KeyPackage never crowds a current one out of an answer.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use crate::filter::Filter;
use crate::model::{KeyPackageRecord, StoredEvent};

/// The order of events in an answer: newest first, ties to the lower id.
fn newest_first(a: &StoredEvent, b: &StoredEvent) -> Ordering {
    b.created_at.cmp(&a.created_at).then_with(|| a.id.cmp(&b.id))
}

/// The newest `created_at` of a record's events.
fn newest(record: &KeyPackageRecord) -> u64 {
    record
        .events
        .iter()
        .map(|e| e.created_at)
        .max()
        .unwrap_or(record.created_at)
}

/// The rank of KeyPackages within one author: current profile first, then
/// one-time before last resort, then newest, then the lower KeyPackageRef.
pub fn rank(a: &KeyPackageRecord, b: &KeyPackageRecord) -> Ordering {
    a.profile
        .cmp(&b.profile)
        .then(a.last_resort.cmp(&b.last_resort))
        .then_with(|| newest(b).cmp(&newest(a)))
        .then_with(|| a.keypackage_ref.cmp(&b.keypackage_ref))
}

/// The KeyPackages chosen for an answer, each with its place in its
/// author's ranking (0 for the best): those matched by some filter, at most
/// one per 30443 slot and `max_per_author` per owner, in [`rank`] order.
pub fn choose_keypackages<'a>(
    candidates: &'a [KeyPackageRecord],
    filters: &[Filter],
    max_per_author: usize,
    now: u64,
) -> Vec<(&'a KeyPackageRecord, usize)> {
    let mut seen = BTreeSet::new();
    let mut by_owner: BTreeMap<&str, Vec<&KeyPackageRecord>> = BTreeMap::new();
    for record in candidates {
        if !record.is_live(now) || !seen.insert(record.keypackage_ref.as_str()) {
            continue;
        }
        if filters
            .iter()
            .any(|f| record.events.iter().any(|e| f.matches(record, e)))
        {
            by_owner.entry(record.owner.as_str()).or_default().push(record);
        }
    }
    let mut chosen = Vec::new();
    for (_, mut records) in by_owner {
        records.sort_by(|a, b| rank(a, b));
        let mut slots = BTreeSet::new();
        let best = records
            .into_iter()
            .filter(|record| record.slot.as_deref().is_none_or(|slot| slots.insert(slot)))
            .take(max_per_author);
        chosen.extend(best.enumerate().map(|(place, record)| (record, place)));
    }
    chosen
}

/// The chosen KeyPackages with the events each contributes: for each
/// filter, the matching events of the chosen KeyPackages up to the filter's
/// limit (counted in events), best-ranked KeyPackages of every author
/// first; a KeyPackage none of whose events made it is left out.
pub fn select_keypackages<'a>(
    candidates: &'a [KeyPackageRecord],
    filters: &[Filter],
    max_per_author: usize,
    now: u64,
) -> Vec<(&'a KeyPackageRecord, Vec<&'a StoredEvent>)> {
    let chosen = choose_keypackages(candidates, filters, max_per_author, now);
    let mut picked: BTreeMap<&str, &StoredEvent> = BTreeMap::new();
    for filter in filters {
        let mut matching: Vec<(&KeyPackageRecord, usize, &StoredEvent)> = chosen
            .iter()
            .flat_map(|(record, place)| {
                record
                    .events
                    .iter()
                    .filter(|e| filter.matches(record, e))
                    .map(move |e| (*record, *place, e))
            })
            .collect();
        matching.sort_by(|(a, a_place, a_event), (b, b_place, b_event)| {
            a_place
                .cmp(b_place)
                .then_with(|| rank(a, b))
                .then_with(|| newest_first(a_event, b_event))
        });
        for (_, _, event) in matching.into_iter().take(filter.effective_limit()) {
            picked.insert(event.id.as_str(), event);
        }
    }
    chosen
        .into_iter()
        .filter_map(|(record, _)| {
            let mut events: Vec<&StoredEvent> = record
                .events
                .iter()
                .filter(|e| picked.contains_key(e.id.as_str()))
                .collect();
            events.sort_by(|a, b| newest_first(a, b));
            (!events.is_empty()).then_some((record, events))
        })
        .collect()
}

/// The events of an answer: the union of [`select_keypackages`]'s events
/// without duplicates, newest first.
pub fn select_events<'a>(
    candidates: &'a [KeyPackageRecord],
    filters: &[Filter],
    max_per_author: usize,
    now: u64,
) -> Vec<&'a StoredEvent> {
    let mut events: Vec<&StoredEvent> = select_keypackages(candidates, filters, max_per_author, now)
        .into_iter()
        .flat_map(|(_, events)| events)
        .collect();
    events.sort_by(|a, b| newest_first(a, b));
    events
}
