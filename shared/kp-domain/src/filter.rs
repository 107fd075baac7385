//! The NIP-01 filters a query answers, for kinds 443 and 30443.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::ids::normalize_hex64;
use crate::model::{KeyPackageRecord, StoredEvent};
use crate::{KIND_KEYPACKAGE, KIND_KEYPACKAGE_ADDRESSABLE};

/// Most events (and candidate KeyPackages) one filter can bring back.
pub const MAX_LIMIT: usize = 500;

/// Most values one filter field may list.
pub const MAX_FILTER_VALUES: usize = 1000;

/// Why a filter was refused (HTTP 400, `bad_filter`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad filter: {0}")]
pub struct FilterError(pub String);

/// A NIP-01 filter.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Filter {
    /// Event ids, lowercase hex.
    pub ids: Option<BTreeSet<String>>,
    /// Author pubkeys, lowercase hex.
    pub authors: Option<BTreeSet<String>>,
    /// Kinds; `None` means both KeyPackage kinds.
    pub kinds: Option<BTreeSet<u16>>,
    /// Oldest `created_at` wanted.
    pub since: Option<u64>,
    /// Newest `created_at` wanted.
    pub until: Option<u64>,
    /// Most events to return for this filter.
    pub limit: Option<usize>,
    /// `#x` tag filters by letter.
    pub tags: BTreeMap<char, BTreeSet<String>>,
}

/// Where a backend finds the candidates of one filter, most selective first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CandidateSource {
    /// The available KeyPackages of these owners.
    Authors(Vec<String>),
    /// These KeyPackageRefs (`#i`).
    Refs(Vec<String>),
    /// The KeyPackages holding these event ids.
    EventIds(Vec<String>),
    /// The KeyPackages in these 30443 slots (`#d`).
    Slots(Vec<String>),
    /// The newest available KeyPackages in a `created_at` range.
    Recent {
        /// Oldest `created_at`.
        since: Option<u64>,
        /// Newest `created_at`.
        until: Option<u64>,
        /// How many.
        limit: usize,
    },
}

fn hex_set(value: &Value, field: &str) -> Result<BTreeSet<String>, FilterError> {
    string_list(value, field)?
        .into_iter()
        .map(|s| normalize_hex64(&s).ok_or_else(|| FilterError(format!("{field} must hold 64-character hex strings"))))
        .collect()
}

fn string_list(value: &Value, field: &str) -> Result<Vec<String>, FilterError> {
    let list = value
        .as_array()
        .ok_or_else(|| FilterError(format!("{field} must be an array")))?;
    if list.len() > MAX_FILTER_VALUES {
        return Err(FilterError(format!(
            "{field} lists more than {MAX_FILTER_VALUES} values"
        )));
    }
    list.iter()
        .map(|v| {
            v.as_str()
                .map(str::to_owned)
                .ok_or_else(|| FilterError(format!("{field} must hold strings")))
        })
        .collect()
}

fn timestamp(value: &Value, field: &str) -> Result<u64, FilterError> {
    value
        .as_u64()
        .ok_or_else(|| FilterError(format!("{field} must be a non-negative integer")))
}

impl Filter {
    /// Reads a filter from its JSON object.
    pub fn from_json(value: &Value) -> Result<Self, FilterError> {
        let object = value
            .as_object()
            .ok_or_else(|| FilterError("a filter must be a JSON object".into()))?;
        let mut filter = Filter::default();
        for (key, value) in object {
            match key.as_str() {
                "ids" => filter.ids = Some(hex_set(value, "ids")?),
                "authors" => filter.authors = Some(hex_set(value, "authors")?),
                "kinds" => {
                    let list = value
                        .as_array()
                        .ok_or_else(|| FilterError("kinds must be an array".into()))?;
                    let kinds = list
                        .iter()
                        .map(|k| {
                            k.as_u64()
                                .and_then(|k| u16::try_from(k).ok())
                                .ok_or_else(|| FilterError("kinds must hold integers 0-65535".into()))
                        })
                        .collect::<Result<_, _>>()?;
                    filter.kinds = Some(kinds);
                }
                "since" => filter.since = Some(timestamp(value, "since")?),
                "until" => filter.until = Some(timestamp(value, "until")?),
                "limit" => {
                    let limit = timestamp(value, "limit")?;
                    filter.limit = Some(usize::try_from(limit).unwrap_or(usize::MAX));
                }
                tag if tag.len() == 2 && tag.starts_with('#') => {
                    let letter = tag.chars().nth(1).expect("two characters");
                    let values = string_list(value, tag)?;
                    let values = values
                        .into_iter()
                        .map(|v| {
                            if matches!(letter, 'i' | 'd' | 'e' | 'p') {
                                normalize_hex64(&v).unwrap_or(v)
                            } else {
                                v
                            }
                        })
                        .collect();
                    filter.tags.insert(letter, values);
                }
                // NIP-50 search and other extensions are not supported: a
                // filter that asks for them matches nothing rather than
                // everything.
                "search" => return Err(FilterError("search is not supported".into())),
                other => return Err(FilterError(format!("unknown filter field {other:?}"))),
            }
        }
        Ok(filter)
    }

    /// The KeyPackage kinds this filter asks for.
    pub fn keypackage_kinds(&self) -> Vec<u16> {
        [KIND_KEYPACKAGE, KIND_KEYPACKAGE_ADDRESSABLE]
            .into_iter()
            .filter(|k| self.kinds.as_ref().is_none_or(|kinds| kinds.contains(k)))
            .collect()
    }

    /// The most events this filter returns.
    pub fn effective_limit(&self) -> usize {
        self.limit.unwrap_or(MAX_LIMIT).min(MAX_LIMIT)
    }

    /// Where to find this filter's candidates; `None` when it matches nothing.
    pub fn candidate_source(&self) -> Option<CandidateSource> {
        if self.keypackage_kinds().is_empty() || self.effective_limit() == 0 {
            return None;
        }
        let non_empty = |set: &BTreeSet<String>| (!set.is_empty()).then(|| set.iter().cloned().collect::<Vec<_>>());
        if let Some(set) = &self.authors {
            return non_empty(set).map(CandidateSource::Authors);
        }
        if let Some(set) = self.tags.get(&'i') {
            return non_empty(set).map(CandidateSource::Refs);
        }
        if let Some(set) = &self.ids {
            return non_empty(set).map(CandidateSource::EventIds);
        }
        if let Some(set) = self.tags.get(&'d') {
            return non_empty(set).map(CandidateSource::Slots);
        }
        Some(CandidateSource::Recent {
            since: self.since,
            until: self.until,
            limit: self.effective_limit(),
        })
    }

    /// Whether one stored event of a KeyPackage matches the filter.
    pub fn matches(&self, record: &KeyPackageRecord, event: &StoredEvent) -> bool {
        self.ids.as_ref().is_none_or(|ids| ids.contains(&event.id))
            && self.authors.as_ref().is_none_or(|a| a.contains(&record.owner))
            && self.keypackage_kinds().contains(&event.kind)
            && self.since.is_none_or(|since| event.created_at >= since)
            && self.until.is_none_or(|until| event.created_at <= until)
            && self
                .tags
                .iter()
                .all(|(letter, values)| tag_matches(*letter, values, record, event))
    }
}

fn tag_matches(letter: char, values: &BTreeSet<String>, record: &KeyPackageRecord, event: &StoredEvent) -> bool {
    match letter {
        'i' => values.contains(&record.keypackage_ref),
        'd' => {
            event.kind == KIND_KEYPACKAGE_ADDRESSABLE && record.slot.as_ref().is_some_and(|slot| values.contains(slot))
        }
        other => {
            // Rare: read the tags of the stored event itself.
            let name = other.to_string();
            serde_json::from_str::<Value>(&event.json)
                .ok()
                .and_then(|v| v.get("tags").cloned())
                .and_then(|tags| tags.as_array().cloned())
                .is_some_and(|tags| {
                    tags.iter().any(|tag| {
                        tag.get(0).and_then(Value::as_str) == Some(name.as_str())
                            && tag.get(1).and_then(Value::as_str).is_some_and(|v| values.contains(v))
                    })
                })
        }
    }
}
