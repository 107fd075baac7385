//! One client connection: the KeyPackage session in front of a library
//! relay connection.
//!
//! The client's WebSocket is accepted here. The library gets the other end
//! of an in-process pipe, already upgraded, and sees an ordinary client.
//! Every message from the client is read once: the KeyPackage parts are
//! answered here, the rest is passed on verbatim. Everything the library
//! sends goes back to the client verbatim, except the `OK` of a delegated
//! Welcome or deletion, which carries the service's message.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures::{SinkExt, StreamExt};
use nostr::nips::nip42;
use nostr::prelude::{Event, PublicKey, Timestamp};
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::{AuthMode, KEYPACKAGE_KINDS, Shared};

/// How long the library may take to answer the close of a connection.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// How far an AUTH event's `created_at` may be from now.
const AUTH_WINDOW_SECS: u64 = 600;

type LibrarySink = futures::stream::SplitSink<WebSocketStream<tokio::io::DuplexStream>, Message>;

/// Serves one client until it goes away.
pub(crate) async fn handle(shared: Arc<Shared>, stream: TcpStream, peer: SocketAddr) -> anyhow::Result<()> {
    let client = tokio_tungstenite::accept_async(stream).await?;
    let (library_end, our_end) = tokio::io::duplex(1 << 20);
    let library = shared.library.clone();
    tokio::spawn(async move {
        if let Err(e) = library.take_connection(library_end, peer).await {
            tracing::debug!(%peer, error = %e, "library connection ended");
        }
    });
    let library_ws = WebSocketStream::from_raw_socket(our_end, Role::Client, None).await;

    let (mut client_tx, mut client_rx) = client.split();
    let (library_tx, mut library_rx) = library_ws.split();
    let (out, mut out_rx) = mpsc::channel::<Message>(256);
    let writer = tokio::spawn(async move {
        while let Some(message) = out_rx.recv().await {
            if client_tx.send(message).await.is_err() {
                break;
            }
        }
        let _ = client_tx.close().await;
    });
    let delegated: Delegated = Arc::default();
    let pump = {
        let out = out.clone();
        let delegated = delegated.clone();
        tokio::spawn(async move {
            while let Some(Ok(message)) = library_rx.next().await {
                let Message::Text(text) = message else { continue };
                let text = with_service_message(&delegated, text.as_str());
                if out.send(Message::text(text)).await.is_err() {
                    break;
                }
            }
        })
    };

    let mut session = Session {
        shared,
        out,
        library: library_tx,
        challenge: random_challenge(),
        pubkey: None,
        delegated,
    };
    if session.shared.config.auth != AuthMode::Off {
        let challenge = serde_json::json!(["AUTH", session.challenge]).to_string();
        session.send(challenge).await;
    }
    while let Some(message) = client_rx.next().await {
        match message {
            Ok(Message::Text(text)) => session.on_text(text.as_str()).await?,
            Ok(Message::Binary(_)) => {
                session
                    .send(r#"["NOTICE","binary messages are not processed by this relay"]"#.into())
                    .await
            }
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    // A close handshake ends the library's side of the connection; the pump
    // ends when the library has answered it (or soon, whatever happens).
    let _ = session.library.close().await;
    drop(session);
    let mut pump = pump;
    if tokio::time::timeout(CLOSE_GRACE, &mut pump).await.is_err() {
        pump.abort();
    }
    let _ = writer.await;
    Ok(())
}

/// Delegated Welcomes and deletions the service accepted, by event id, with
/// its message, until the library answers their `OK`.
type Delegated = Arc<Mutex<HashMap<String, String>>>;

/// The library's `OK` for a delegated event, with the service's message when
/// both accepted it; any other message unchanged.
fn with_service_message(delegated: &Delegated, text: &str) -> String {
    if !text.starts_with(r#"["OK""#) {
        return text.to_owned();
    }
    let Ok((verb, id, accepted, message)) = serde_json::from_str::<(String, String, bool, String)>(text) else {
        return text.to_owned();
    };
    let Some(service_message) = delegated.lock().expect("delegated map poisoned").remove(&id) else {
        return text.to_owned();
    };
    let message = if accepted { service_message } else { message };
    serde_json::json!([verb, id, accepted, message]).to_string()
}

fn random_challenge() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

struct Session {
    shared: Arc<Shared>,
    out: mpsc::Sender<Message>,
    library: LibrarySink,
    challenge: String,
    pubkey: Option<PublicKey>,
    delegated: Delegated,
}

impl Session {
    async fn send(&self, text: String) {
        // The writer only stops when the client is gone; nothing to tell then.
        let _ = self.out.send(Message::text(text)).await;
    }

    async fn forward(&mut self, text: String) -> anyhow::Result<()> {
        self.library.send(Message::text(text)).await?;
        Ok(())
    }

    async fn ok(&self, id: &str, accepted: bool, message: &str) {
        self.send(serde_json::json!(["OK", id, accepted, message]).to_string())
            .await;
    }

    async fn closed(&self, subscription: &RawValue, message: &str) {
        let message = Value::from(message);
        self.send(format!(r#"["CLOSED",{},{message}]"#, subscription.get()))
            .await;
    }

    fn must_authenticate(&self) -> bool {
        self.shared.config.auth == AuthMode::Required && self.pubkey.is_none()
    }

    async fn on_text(&mut self, text: &str) -> anyhow::Result<()> {
        let Ok(parts) = serde_json::from_str::<Vec<&RawValue>>(text) else {
            return self.forward(text.to_owned()).await;
        };
        let verb = parts.first().and_then(|v| serde_json::from_str::<&str>(v.get()).ok());
        match (verb, parts.get(1)) {
            (Some("AUTH"), Some(event)) => {
                self.on_auth(event.get()).await;
                Ok(())
            }
            (Some("EVENT"), Some(event)) => self.on_event(text, event).await,
            (Some("REQ"), Some(subscription)) => self.on_req(text, subscription, &parts[2..]).await,
            (Some("COUNT"), Some(subscription)) if self.must_authenticate() => {
                self.closed(subscription, AUTH_REQUIRED).await;
                Ok(())
            }
            _ => self.forward(text.to_owned()).await,
        }
    }

    async fn on_auth(&mut self, event_json: &str) {
        let Ok(event) = Event::from_json(event_json) else {
            self.send(r#"["NOTICE","invalid: AUTH carries no event"]"#.into()).await;
            return;
        };
        let id = event.id.to_hex();
        if self.shared.config.auth == AuthMode::Off {
            self.ok(&id, false, "restricted: this relay does not use AUTH").await;
            return;
        }
        let now = Timestamp::now().as_secs();
        let fresh = now.abs_diff(event.created_at.as_secs()) <= AUTH_WINDOW_SECS;
        let valid = event.verify().is_ok()
            && fresh
            && nip42::is_valid_auth_event(&event, &self.shared.config.public_url, &self.challenge);
        if valid {
            self.pubkey = Some(event.pubkey);
            self.ok(&id, true, "").await;
        } else {
            let message = format!(
                "auth-required: an AUTH event must be kind 22242, signed, created within {AUTH_WINDOW_SECS} s, \
                 and name this relay ({}) and its challenge",
                self.shared.config.public_url
            );
            self.ok(&id, false, &message).await;
        }
    }

    async fn on_event(&mut self, text: &str, raw: &RawValue) -> anyhow::Result<()> {
        let Ok(event) = Event::from_json(raw.get()) else {
            // Not an event: the library says what is wrong with it.
            return self.forward(text.to_owned()).await;
        };
        let id = event.id.to_hex();
        if self.must_authenticate() {
            self.ok(&id, false, AUTH_REQUIRED).await;
            return Ok(());
        }
        let kind = event.kind.as_u16();
        if !crate::DELEGATED_KINDS.contains(&kind) {
            return self.forward(text.to_owned()).await;
        }
        let decision = self.shared.gateway.submit(raw.get()).await;
        match decision {
            Ok(decision) if decision.accepted && !KEYPACKAGE_KINDS.contains(&kind) => {
                // A Welcome or deletion the service took into account: kept
                // and delivered by the library like any other event.
                self.delegated
                    .lock()
                    .expect("delegated map poisoned")
                    .insert(id, decision.message);
                self.forward(text.to_owned()).await
            }
            Ok(decision) => {
                self.ok(&id, decision.accepted, &decision.message).await;
                Ok(())
            }
            Err(e) => {
                self.ok(&id, false, &e.0).await;
                Ok(())
            }
        }
    }

    async fn on_req(&mut self, text: &str, subscription: &RawValue, filters: &[&RawValue]) -> anyhow::Result<()> {
        if self.must_authenticate() {
            self.closed(subscription, AUTH_REQUIRED).await;
            return Ok(());
        }
        let Some(split) = split_filters(filters) else {
            // Not filters: the library says what is wrong with them.
            return self.forward(text.to_owned()).await;
        };
        if split.keypackages.is_empty() {
            return self.forward(text.to_owned()).await;
        }
        let answer = match self
            .shared
            .gateway
            .query(&split.keypackages, self.pubkey.as_ref())
            .await
        {
            Ok(answer) => answer,
            Err(e) => {
                // Drop whatever the library held under this id, too.
                self.forward(format!(r#"["CLOSE",{}]"#, subscription.get())).await?;
                self.closed(subscription, &e.0).await;
                return Ok(());
            }
        };
        for event in &answer.events {
            self.send(format!(r#"["EVENT",{},{}]"#, subscription.get(), event.get()))
                .await;
        }
        if !answer.rate_limited.is_empty() {
            // The answer is still valid, only shorter: say why before EOSE.
            let notice = format!(
                "rate-limited: KeyPackages of {} left out of subscription {}, try again later",
                answer.rate_limited.join(", "),
                subscription.get()
            );
            self.send(serde_json::json!(["NOTICE", notice]).to_string()).await;
        }
        if split.others.is_empty() {
            self.forward(format!(r#"["CLOSE",{}]"#, subscription.get())).await?;
            self.send(format!(r#"["EOSE",{}]"#, subscription.get())).await;
            return Ok(());
        }
        // The library sends its stored events, then EOSE, then live events.
        let mut req = vec![Value::from("REQ"), serde_json::from_str(subscription.get())?];
        req.extend(split.others);
        self.forward(Value::Array(req).to_string()).await
    }
}

const AUTH_REQUIRED: &str = "auth-required: this relay requires NIP-42 authentication";

/// A REQ's filters, split between the service (the KeyPackage kinds) and the
/// library (every other kind, and filters that name no kind).
#[derive(Debug, Default, PartialEq)]
struct SplitFilters {
    keypackages: Vec<Value>,
    others: Vec<Value>,
}

/// `None` when a filter is not a JSON object.
fn split_filters(filters: &[&RawValue]) -> Option<SplitFilters> {
    let mut split = SplitFilters::default();
    for raw in filters {
        let filter: Value = serde_json::from_str(raw.get()).ok()?;
        if !filter.is_object() {
            return None;
        }
        let kinds = match filter.get("kinds") {
            Some(Value::Array(kinds)) if !kinds.is_empty() => kinds.clone(),
            _ => {
                split.others.push(filter);
                continue;
            }
        };
        let (keypackage_kinds, other_kinds): (Vec<Value>, Vec<Value>) = kinds.into_iter().partition(|k| {
            k.as_u64()
                .is_some_and(|k| KEYPACKAGE_KINDS.iter().any(|&kp| u64::from(kp) == k))
        });
        for (kinds, into) in [
            (keypackage_kinds, &mut split.keypackages),
            (other_kinds, &mut split.others),
        ] {
            if !kinds.is_empty() {
                let mut part = filter.clone();
                part["kinds"] = Value::Array(kinds);
                into.push(part);
            }
        }
    }
    Some(split)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(json: &str) -> Option<SplitFilters> {
        let raws: Vec<Box<RawValue>> = serde_json::from_str(json).unwrap();
        let refs: Vec<&RawValue> = raws.iter().map(|r| r.as_ref()).collect();
        split_filters(&refs)
    }

    #[test]
    fn keypackage_kinds_go_to_the_service_and_the_rest_to_the_library() {
        let s = split(r#"[{"kinds":[443,30443],"authors":["aa"]},{"kinds":[1,443],"limit":5},{"authors":["bb"]}]"#)
            .unwrap();
        assert_eq!(
            s.keypackages,
            vec![
                serde_json::json!({"kinds":[443,30443],"authors":["aa"]}),
                serde_json::json!({"kinds":[443],"limit":5}),
            ]
        );
        assert_eq!(
            s.others,
            vec![
                serde_json::json!({"kinds":[1],"limit":5}),
                serde_json::json!({"authors":["bb"]}),
            ]
        );
    }

    #[test]
    fn a_filter_that_is_not_an_object_is_left_to_the_library() {
        assert_eq!(split(r#"[{"kinds":[443]}, 7]"#), None);
    }

    #[test]
    fn the_service_message_replaces_the_library_one_only_for_delegated_events() {
        let delegated: Delegated = Arc::default();
        delegated
            .lock()
            .unwrap()
            .insert("ab".into(), "duplicate: nothing consumed".into());
        assert_eq!(
            with_service_message(&delegated, r#"["OK","cd",true,""]"#),
            r#"["OK","cd",true,""]"#
        );
        assert_eq!(
            with_service_message(&delegated, r#"["OK","ab",true,""]"#),
            r#"["OK","ab",true,"duplicate: nothing consumed"]"#
        );
        // Answered once: the entry is gone.
        assert_eq!(
            with_service_message(&delegated, r#"["OK","ab",true,""]"#),
            r#"["OK","ab",true,""]"#
        );
    }

    #[test]
    fn a_library_refusal_of_a_delegated_event_is_kept() {
        let delegated: Delegated = Arc::default();
        delegated.lock().unwrap().insert("ab".into(), String::new());
        assert_eq!(
            with_service_message(&delegated, r#"["OK","ab",false,"blocked: this event is deleted"]"#),
            r#"["OK","ab",false,"blocked: this event is deleted"]"#
        );
    }
}
