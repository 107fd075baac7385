//! One client connection: the KeyPackage session in front of a library
//! relay connection.
//!
//! The client's WebSocket is accepted here. The library gets the other end
//! of an in-process pipe, already upgraded, and sees an ordinary client.
//! Every message from the client is read once: the KeyPackage parts are
//! answered here, the rest is passed on verbatim. Everything the library
//! sends goes back to the client verbatim, except the `OK` of a delegated
//! Welcome or deletion, which carries the service's message.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures::{SinkExt, StreamExt};
use nostr::nips::nip42;
use nostr::prelude::{ClientMessage, Event, Filter, Kind, PublicKey, SubscriptionId, Timestamp};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use crate::{AuthMode, KEYPACKAGE_KINDS, Shared};

/// How long the library may take to answer the close of a connection.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// How far an AUTH event's `created_at` may be from now.
const AUTH_WINDOW_SECS: u64 = 600;

type LibrarySink = futures::stream::SplitSink<WebSocketStream<tokio::io::DuplexStream>, Message>;

/// Serves one client until it goes away.
pub(crate) async fn handle(shared: Arc<Shared>, stream: TcpStream, peer: SocketAddr) -> anyhow::Result<()> {
    let limits = WebSocketConfig::default()
        .max_message_size(Some(shared.config.max_message_bytes))
        .max_frame_size(Some(shared.config.max_message_bytes));
    // Over the connection limit, the upgrade is answered with 503.
    let mut permit = None;
    // The shape of the result is tungstenite's `Callback`.
    #[allow(clippy::result_large_err)]
    let admit = |_: &Request, response: Response| -> Result<Response, ErrorResponse> {
        match shared.connections.clone().try_acquire_owned() {
            Ok(p) => {
                permit = Some(p);
                Ok(response)
            }
            Err(_) => {
                let mut refusal = ErrorResponse::new(Some("too many connections, try again later".into()));
                *refusal.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                Err(refusal)
            }
        }
    };
    let client = tokio_tungstenite::accept_hdr_async_with_config(stream, admit, Some(limits)).await?;
    let _permit = permit;
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
            Err(WsError::Capacity(_)) => {
                // Refused: the rest of the frame is not read, so the connection ends here.
                let notice = format!(
                    "invalid: messages are limited to {} bytes",
                    session.shared.config.max_message_bytes
                );
                session.send(serde_json::json!(["NOTICE", notice]).to_string()).await;
                let close = CloseFrame {
                    code: CloseCode::Size,
                    reason: "message too big".into(),
                };
                let _ = session.out.send(Message::Close(Some(close))).await;
                break;
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

    async fn closed(&self, subscription: &SubscriptionId, message: &str) {
        self.send(serde_json::json!(["CLOSED", subscription.as_str(), message]).to_string())
            .await;
    }

    fn must_authenticate(&self) -> bool {
        self.shared.config.auth == AuthMode::Required && self.pubkey.is_none()
    }

    /// Parses the client's message once, with the library's own parser, and
    /// routes on that parse; the library only ever gets the re-serialised
    /// message, never the client's text.
    async fn on_text(&mut self, text: &str) -> anyhow::Result<()> {
        let message = match ClientMessage::from_json(text) {
            Ok(message) => message,
            Err(e) => {
                let notice = format!("invalid: not a NIP-01 client message ({e})");
                self.send(serde_json::json!(["NOTICE", notice]).to_string()).await;
                return Ok(());
            }
        };
        match message {
            ClientMessage::Auth(event) => {
                self.on_auth(&event).await;
                Ok(())
            }
            ClientMessage::Event(event) => self.on_event(event.into_owned()).await,
            ClientMessage::Req {
                subscription_id,
                filters,
            } => {
                let filters = filters.into_iter().map(|f| f.into_owned()).collect();
                self.on_req(subscription_id.into_owned(), filters).await
            }
            ClientMessage::Count {
                subscription_id,
                filter,
            } => {
                if self.must_authenticate() {
                    self.closed(&subscription_id, AUTH_REQUIRED).await;
                } else if names_keypackages(&filter) {
                    // The library's database holds no KeyPackage: its count would be wrong.
                    self.closed(&subscription_id, KEYPACKAGE_COUNT).await;
                } else {
                    let count = ClientMessage::Count {
                        subscription_id,
                        filter,
                    };
                    self.forward(count.as_json()).await?;
                }
                Ok(())
            }
            ClientMessage::NegOpen {
                subscription_id,
                filter,
                id_size,
                initial_message,
            } => {
                let refusal = if self.must_authenticate() {
                    Some(AUTH_REQUIRED)
                } else if names_keypackages(&filter) {
                    Some(KEYPACKAGE_SYNC)
                } else {
                    None
                };
                match refusal {
                    Some(message) => {
                        let error = serde_json::json!(["NEG-ERR", subscription_id.as_str(), message]);
                        self.send(error.to_string()).await;
                        Ok(())
                    }
                    None => {
                        let open = ClientMessage::NegOpen {
                            subscription_id,
                            filter,
                            id_size,
                            initial_message,
                        };
                        self.forward(open.as_json()).await
                    }
                }
            }
            other @ (ClientMessage::Close(_) | ClientMessage::NegMsg { .. } | ClientMessage::NegClose { .. }) => {
                self.forward(other.as_json()).await
            }
        }
    }

    async fn on_auth(&mut self, event: &Event) {
        let id = event.id.to_hex();
        if self.shared.config.auth == AuthMode::Off {
            self.ok(&id, false, "restricted: this relay does not use AUTH").await;
            return;
        }
        let now = Timestamp::now().as_secs();
        let fresh = now.abs_diff(event.created_at.as_secs()) <= AUTH_WINDOW_SECS;
        let valid = event.verify().is_ok()
            && fresh
            && nip42::is_valid_auth_event(event, &self.shared.config.public_url, &self.challenge);
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

    async fn on_event(&mut self, event: Event) -> anyhow::Result<()> {
        let id = event.id.to_hex();
        if self.must_authenticate() {
            self.ok(&id, false, AUTH_REQUIRED).await;
            return Ok(());
        }
        let kind = event.kind.as_u16();
        if !crate::DELEGATED_KINDS.contains(&kind) {
            return self.forward(ClientMessage::event(event).as_json()).await;
        }
        // The service decides about the very event the library may then
        // keep: both get the same serialisation of the one parse.
        let decision = self.shared.gateway.submit(&event.as_json(), self.pubkey.as_ref()).await;
        match decision {
            Ok(decision) if decision.accepted && !KEYPACKAGE_KINDS.contains(&kind) => {
                // A Welcome or deletion the service took into account: kept
                // and delivered by the library like any other event.
                self.delegated
                    .lock()
                    .expect("delegated map poisoned")
                    .insert(id, decision.message);
                self.forward(ClientMessage::event(event).as_json()).await
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

    async fn on_req(&mut self, subscription: SubscriptionId, filters: Vec<Filter>) -> anyhow::Result<()> {
        if self.must_authenticate() {
            self.closed(&subscription, AUTH_REQUIRED).await;
            return Ok(());
        }
        let split = split_filters(filters);
        if split.keypackages.is_empty() {
            return self
                .forward(ClientMessage::req(subscription, split.others).as_json())
                .await;
        }
        let keypackage_filters: Vec<Value> = split
            .keypackages
            .iter()
            .map(serde_json::to_value)
            .collect::<Result<_, _>>()?;
        let id = Value::from(subscription.as_str()).to_string();
        let answer = match self
            .shared
            .gateway
            .query(&keypackage_filters, self.pubkey.as_ref())
            .await
        {
            Ok(answer) => answer,
            Err(e) => {
                // Drop whatever the library held under this id, too.
                self.forward(ClientMessage::close(subscription.clone()).as_json())
                    .await?;
                self.closed(&subscription, &e.0).await;
                return Ok(());
            }
        };
        for event in &answer.events {
            self.send(format!(r#"["EVENT",{id},{}]"#, event.get())).await;
        }
        if !answer.rate_limited.is_empty() {
            // The answer is still valid, only shorter: say why before EOSE.
            let notice = format!(
                "rate-limited: KeyPackages of {} left out of subscription {id}, try again later",
                answer.rate_limited.join(", "),
            );
            self.send(serde_json::json!(["NOTICE", notice]).to_string()).await;
        }
        if split.others.is_empty() {
            self.forward(ClientMessage::close(subscription).as_json()).await?;
            self.send(format!(r#"["EOSE",{id}]"#)).await;
            return Ok(());
        }
        // The library sends its stored events, then EOSE, then live events.
        self.forward(ClientMessage::req(subscription, split.others).as_json())
            .await
    }
}

const AUTH_REQUIRED: &str = "auth-required: this relay requires NIP-42 authentication";

const KEYPACKAGE_COUNT: &str = "blocked: KeyPackages are not counted by this relay; ask for them with REQ";
const KEYPACKAGE_SYNC: &str = "blocked: KeyPackages are not synced by negentropy on this relay; ask for them with REQ";

/// Whether a filter names kind 443 or 30443.
fn names_keypackages(filter: &Filter) -> bool {
    filter
        .kinds
        .as_ref()
        .is_some_and(|kinds| kinds.iter().any(|k| KEYPACKAGE_KINDS.contains(&k.as_u16())))
}

/// A REQ's filters, split between the service (the KeyPackage kinds) and the
/// library (every other kind, and filters that name no kind).
#[derive(Debug, Default, PartialEq)]
struct SplitFilters {
    keypackages: Vec<Filter>,
    others: Vec<Filter>,
}

fn split_filters(filters: Vec<Filter>) -> SplitFilters {
    let mut split = SplitFilters::default();
    for filter in filters {
        let Some(kinds) = filter.kinds.clone().filter(|kinds| !kinds.is_empty()) else {
            split.others.push(filter);
            continue;
        };
        let (keypackage_kinds, other_kinds): (BTreeSet<Kind>, BTreeSet<Kind>) =
            kinds.into_iter().partition(|k| KEYPACKAGE_KINDS.contains(&k.as_u16()));
        for (kinds, into) in [
            (keypackage_kinds, &mut split.keypackages),
            (other_kinds, &mut split.others),
        ] {
            if !kinds.is_empty() {
                let mut part = filter.clone();
                part.kinds = Some(kinds);
                into.push(part);
            }
        }
    }
    split
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(json: &str) -> SplitFilters {
        split_filters(serde_json::from_str(json).unwrap())
    }

    fn filter(json: &str) -> Filter {
        Filter::from_json(json).unwrap()
    }

    #[test]
    fn keypackage_kinds_go_to_the_service_and_the_rest_to_the_library() {
        let aa = "aa".repeat(32);
        let bb = "bb".repeat(32);
        let s = split(&format!(
            r#"[{{"kinds":[443,30443],"authors":["{aa}"]}},{{"kinds":[1,443],"limit":5}},{{"authors":["{bb}"]}}]"#
        ));
        assert_eq!(
            s.keypackages,
            vec![
                filter(&format!(r#"{{"kinds":[443,30443],"authors":["{aa}"]}}"#)),
                filter(r#"{"kinds":[443],"limit":5}"#),
            ]
        );
        assert_eq!(
            s.others,
            vec![
                filter(r#"{"kinds":[1],"limit":5}"#),
                filter(&format!(r#"{{"authors":["{bb}"]}}"#)),
            ]
        );
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
