//! The handlers of API.md, one module per function.

pub mod cleanup;
pub mod consume;
pub mod events;
pub mod ingest;
pub mod me;
pub mod ops;
pub mod query;

use serde::Serialize;

/// A decision about an event, mirroring NIP-01's `OK` message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// The event's id (as sent, lowercased; empty when it had none).
    pub event_id: String,
    /// Whether the event was accepted.
    pub accepted: bool,
    /// `<prefix>: <text>`, or empty when accepted without remark.
    pub message: String,
}

impl Decision {
    /// A decision about the event whose JSON is `json`.
    pub fn new(json: &str, accepted: bool, message: impl Into<String>) -> Self {
        Self {
            event_id: event_id_of(json),
            accepted,
            message: message.into(),
        }
    }
}

/// The `id` field of an event JSON, lowercased, or empty.
pub fn event_id_of(json: &str) -> String {
    #[derive(serde::Deserialize)]
    struct IdOnly {
        id: Option<String>,
    }
    serde_json::from_str::<IdOnly>(json)
        .ok()
        .and_then(|e| e.id)
        .map(|id| id.to_ascii_lowercase())
        .unwrap_or_default()
}

/// Wraps stored event JSON so answers embed it verbatim.
pub fn raw(json: &str) -> Box<serde_json::value::RawValue> {
    serde_json::value::RawValue::from_string(json.to_owned()).expect("stored events are JSON")
}
