//! The events that retire KeyPackages: Welcomes (kind 444) and NIP-09
//! deletions (kind 5).

use nostr::prelude::Event;

use crate::ids::{is_lower_hex64, normalize_hex64};
use crate::{KIND_DELETION, KIND_KEYPACKAGE_ADDRESSABLE, KIND_WELCOME};

/// Why a Welcome or deletion event was refused (`invalid:` messages).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignalError {
    /// Larger than the configured limit.
    #[error("event is {size} bytes, more than the limit of {limit}")]
    TooLarge {
        /// Size of the event JSON.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The JSON is not a NIP-01 event.
    #[error("malformed event: {0}")]
    Malformed(String),
    /// The id is not the hash of the event's content.
    #[error("event id does not match the event")]
    BadId,
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// Not the expected kind.
    #[error("expected kind {expected}, got {actual}")]
    WrongKind {
        /// The kind this route takes.
        expected: u16,
        /// The event's kind.
        actual: u16,
    },
    /// The Welcome has no `e` tag naming a KeyPackage event.
    #[error("welcome has no e tag naming a keypackage event")]
    NoKeyPackageNamed,
    /// An `e` tag is not an event id.
    #[error("e tag is not a 64-character hex event id")]
    BadEventId,
}

impl SignalError {
    /// The NIP-01 `OK` message: `invalid: <what is wrong>`.
    pub fn message(&self) -> String {
        format!("invalid: {self}")
    }
}

/// A verified Welcome: its signer and the KeyPackage event it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Welcome {
    /// The Welcome's own event id.
    pub id: String,
    /// Who signed it: the claimer, for rate limits and audit.
    pub signer: String,
    /// The KeyPackage event it names (its `e` tag).
    pub keypackage_event_id: String,
}

/// A verified NIP-09 deletion and the KeyPackages it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deletion {
    /// The deletion's own event id.
    pub id: String,
    /// Who signed it; only their own KeyPackages are retired.
    pub deleter: String,
    /// The deletion's `created_at`: `a` tags delete versions up to it.
    pub created_at: u64,
    /// Event ids named by `e` tags.
    pub event_ids: Vec<String>,
    /// 30443 slots (`d` values) of the deleter named by `a` tags. Slots of
    /// other pubkeys are dropped here: nobody deletes someone else's events.
    pub slots: Vec<String>,
}

fn parse_verified(json: &str, max_bytes: usize, expected: u16) -> Result<Event, SignalError> {
    if json.len() > max_bytes {
        return Err(SignalError::TooLarge {
            size: json.len(),
            limit: max_bytes,
        });
    }
    let event = Event::from_json(json).map_err(|e| SignalError::Malformed(e.to_string()))?;
    if !event.verify_id() {
        return Err(SignalError::BadId);
    }
    if !event.verify_signature() {
        return Err(SignalError::BadSignature);
    }
    let actual = event.kind.as_u16();
    if actual != expected {
        return Err(SignalError::WrongKind { expected, actual });
    }
    Ok(event)
}

fn tag_values<'a>(event: &'a Event, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    event.tags.iter().filter_map(move |tag| match tag.as_slice() {
        [n, value, ..] if n == name => Some(value.as_str()),
        _ => None,
    })
}

/// Parses and verifies a kind 444 Welcome.
pub fn parse_welcome(json: &str, max_bytes: usize) -> Result<Welcome, SignalError> {
    let event = parse_verified(json, max_bytes, KIND_WELCOME)?;
    let named = tag_values(&event, "e").next().ok_or(SignalError::NoKeyPackageNamed)?;
    let keypackage_event_id = normalize_hex64(named).ok_or(SignalError::BadEventId)?;
    Ok(Welcome {
        id: event.id.to_hex(),
        signer: event.pubkey.to_hex(),
        keypackage_event_id,
    })
}

/// Parses and verifies a kind 5 deletion.
pub fn parse_deletion(json: &str, max_bytes: usize) -> Result<Deletion, SignalError> {
    let event = parse_verified(json, max_bytes, KIND_DELETION)?;
    let deleter = event.pubkey.to_hex();
    let mut event_ids = Vec::new();
    for value in tag_values(&event, "e") {
        let id = normalize_hex64(value).ok_or(SignalError::BadEventId)?;
        if !event_ids.contains(&id) {
            event_ids.push(id);
        }
    }
    let own_slot_prefix = format!("{KIND_KEYPACKAGE_ADDRESSABLE}:{deleter}:");
    let mut slots = Vec::new();
    for value in tag_values(&event, "a") {
        if let Some(d) = value.strip_prefix(&own_slot_prefix)
            && is_lower_hex64(d)
            && !slots.iter().any(|s| s == d)
        {
            slots.push(d.to_owned());
        }
    }
    Ok(Deletion {
        id: event.id.to_hex(),
        deleter,
        created_at: event.created_at.as_secs(),
        event_ids,
        slots,
    })
}
