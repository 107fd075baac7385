//! Choosing what a query answers with, from the candidate KeyPackages a
//! backend found: per author at most `max_per_author` KeyPackages, one-time
//! before last resort, newest first; each filter's limit counted in events.

use std::collections::{BTreeMap, BTreeSet};

use crate::filter::Filter;
use crate::model::{KeyPackageRecord, StoredEvent};

/// The order of events in an answer: newest first, ties to the lower id.
fn newest_first(a: &StoredEvent, b: &StoredEvent) -> std::cmp::Ordering {
    b.created_at.cmp(&a.created_at).then_with(|| a.id.cmp(&b.id))
}

/// The newest `created_at` of a record's events and its lowest event id.
fn recency(record: &KeyPackageRecord) -> (u64, &str) {
    let newest = record
        .events
        .iter()
        .map(|e| e.created_at)
        .max()
        .unwrap_or(record.created_at);
    let lowest = record.events.iter().map(|e| e.id.as_str()).min().unwrap_or("");
    (newest, lowest)
}

/// The KeyPackages chosen for an answer: those matched by some filter, at
/// most `max_per_author` per owner, one-time ones before last resorts, newest
/// first within each, ties to the lower event id.
pub fn choose_keypackages<'a>(
    candidates: &'a [KeyPackageRecord],
    filters: &[Filter],
    max_per_author: usize,
    now: u64,
) -> Vec<&'a KeyPackageRecord> {
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
        records.sort_by(|a, b| {
            let (a_new, a_id) = recency(a);
            let (b_new, b_id) = recency(b);
            a.last_resort
                .cmp(&b.last_resort)
                .then(b_new.cmp(&a_new))
                .then_with(|| a_id.cmp(b_id))
        });
        chosen.extend(records.into_iter().take(max_per_author));
    }
    chosen
}

/// The chosen KeyPackages with the events each contributes: for each filter,
/// the matching events of the chosen KeyPackages up to the filter's limit
/// (counted in events, newest first); a KeyPackage none of whose events
/// made it is left out.
pub fn select_keypackages<'a>(
    candidates: &'a [KeyPackageRecord],
    filters: &[Filter],
    max_per_author: usize,
    now: u64,
) -> Vec<(&'a KeyPackageRecord, Vec<&'a StoredEvent>)> {
    let chosen = choose_keypackages(candidates, filters, max_per_author, now);
    let mut picked: BTreeMap<&str, &StoredEvent> = BTreeMap::new();
    for filter in filters {
        let mut matching: Vec<&StoredEvent> = chosen
            .iter()
            .flat_map(|record| record.events.iter().filter(|e| filter.matches(record, e)))
            .collect();
        matching.sort_by(|a, b| newest_first(a, b));
        for event in matching.into_iter().take(filter.effective_limit()) {
            picked.insert(event.id.as_str(), event);
        }
    }
    chosen
        .into_iter()
        .filter_map(|record| {
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
