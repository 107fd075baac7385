//! An MLS client made of MDK, as White Noise is, for the end-to-end tests.
//!
//! `mdk-client <secret key hex>` reads one JSON request per line on stdin and
//! writes one JSON answer per line on stdout:
//!
//! - `{"op":"keypackage","relay":URL,"extra_tags":[[...],...]}` →
//!   `{"events":[443 event, 30443 event]}`: one KeyPackage as White Noise
//!   publishes it, a 443 and a 30443 twin, signed.
//! - `{"op":"create_group","keypackage":EVENT,"relay":URL}` →
//!   `{"welcome":EVENT}`: a group with the KeyPackage's owner, and the
//!   Welcome for them as a signed kind 444 (a real client gift-wraps it).
//! - `{"op":"accept_welcome","welcome":EVENT}` → `{"members":[HEX,...]}`:
//!   the Welcome processed and accepted; the group's members.
//!
//! A failure answers `{"error":"..."}`.

use std::io::{BufRead, Write};

use mdk_core::prelude::*;
use mdk_memory_storage::MdkMemoryStorage;
use nostr::{Event, EventBuilder, JsonUtil, Keys, Kind, RelayUrl, Tag, Timestamp, UnsignedEvent};
use serde_json::{Value, json};

struct Client {
    keys: Keys,
    mdk: MDK<MdkMemoryStorage>,
}

type Answer = Result<Value, String>;

impl Client {
    fn keypackage(&self, request: &Value) -> Answer {
        let relay = relay(request)?;
        let data = self
            .mdk
            .create_key_package_for_event(&self.keys.public_key(), [relay])
            .map_err(|e| e.to_string())?;
        let extra: Vec<Tag> = match request.get("extra_tags") {
            Some(tags) => serde_json::from_value::<Vec<Vec<String>>>(tags.clone())
                .map_err(|e| e.to_string())?
                .into_iter()
                .map(|t| Tag::parse(t).map_err(|e| e.to_string()))
                .collect::<Result<_, _>>()?,
            None => Vec::new(),
        };
        let created_at = Timestamp::now();
        let mut events = Vec::new();
        for (kind, tags) in [(443, data.tags_443), (30443, data.tags_30443)] {
            let event = EventBuilder::new(Kind::from(kind), data.content.clone())
                .tags(tags)
                .tags(extra.clone())
                .custom_created_at(created_at)
                .sign_with_keys(&self.keys)
                .map_err(|e| e.to_string())?;
            events.push(event_value(&event));
        }
        Ok(json!({ "events": events }))
    }

    fn create_group(&self, request: &Value) -> Answer {
        let keypackage = event(request, "keypackage")?;
        let config = NostrGroupConfigData::new(
            "end to end".into(),
            "a group made through the relay".into(),
            None,
            None,
            None,
            vec![relay(request)?],
            vec![self.keys.public_key()],
        );
        let group = self
            .mdk
            .create_group(&self.keys.public_key(), vec![keypackage], config)
            .map_err(|e| e.to_string())?;
        self.mdk
            .merge_pending_commit(&group.group.mls_group_id)
            .map_err(|e| e.to_string())?;
        let rumor = group.welcome_rumors.into_iter().next().ok_or("no Welcome was made")?;
        let welcome = rumor.sign_with_keys(&self.keys).map_err(|e| e.to_string())?;
        Ok(json!({ "welcome": event_value(&welcome) }))
    }

    fn accept_welcome(&self, request: &Value) -> Answer {
        let welcome = event(request, "welcome")?;
        let rumor = UnsignedEvent::from(welcome.clone());
        let pending = self
            .mdk
            .process_welcome(&welcome.id, &rumor)
            .map_err(|e| e.to_string())?;
        self.mdk.accept_welcome(&pending).map_err(|e| e.to_string())?;
        let members = self.mdk.get_members(&pending.mls_group_id).map_err(|e| e.to_string())?;
        Ok(json!({ "members": members.iter().map(|m| m.to_hex()).collect::<Vec<_>>() }))
    }
}

fn relay(request: &Value) -> Result<RelayUrl, String> {
    let url = request["relay"].as_str().ok_or("relay: expected a URL")?;
    RelayUrl::parse(url).map_err(|e| e.to_string())
}

fn event(request: &Value, field: &str) -> Result<Event, String> {
    Event::from_json(request[field].to_string()).map_err(|e| format!("{field}: {e}"))
}

fn event_value(event: &Event) -> Value {
    serde_json::from_str(&event.as_json()).expect("events serialise to JSON")
}

fn main() {
    let secret = std::env::args().nth(1).expect("usage: mdk-client <secret key hex>");
    let client = Client {
        keys: Keys::parse(&secret).expect("a secret key"),
        mdk: MDK::new(MdkMemoryStorage::default()),
    };
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout();
    for line in stdin.lock().lines() {
        let line = line.expect("stdin");
        let answer = match serde_json::from_str::<Value>(&line) {
            Ok(request) => match request["op"].as_str() {
                Some("keypackage") => client.keypackage(&request),
                Some("create_group") => client.create_group(&request),
                Some("accept_welcome") => client.accept_welcome(&request),
                other => Err(format!("unknown op {other:?}")),
            },
            Err(e) => Err(e.to_string()),
        };
        let answer = answer.unwrap_or_else(|error| json!({ "error": error }));
        writeln!(stdout, "{answer}").expect("stdout");
        stdout.flush().expect("stdout");
    }
}
