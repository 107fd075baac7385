//! A raw WebSocket client for the relay tests: it sends frames exactly as
//! written (nostr-sdk would normalise them) and reads the relay's NIP-01
//! messages. Shared by `e2e.rs` and `relay_hostile.rs` through `#[path]`;
//! each uses part of it.
#![allow(dead_code)]

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// How long the relay may take to answer.
const WAIT: Duration = Duration::from_secs(15);

/// A raw WebSocket connection to the relay.
pub struct Raw {
    ws: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
}

impl Raw {
    pub async fn connect(url: &str) -> Self {
        Self::try_connect(url).await.unwrap()
    }

    /// Connects, or says why the relay refused.
    pub async fn try_connect(url: &str) -> Result<Self, tokio_tungstenite::tungstenite::Error> {
        let (ws, _) = tokio_tungstenite::connect_async(url).await?;
        Ok(Self { ws })
    }

    /// Sends a message serialised from JSON.
    pub async fn send(&mut self, message: Value) {
        self.send_text(&message.to_string()).await;
    }

    /// Sends a frame exactly as written.
    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.unwrap();
    }

    /// The next frame as received, or `None` once the connection is gone.
    pub async fn recv(&mut self) -> Option<Result<Message, tokio_tungstenite::tungstenite::Error>> {
        self.ws.next().await
    }

    /// The next message whose verb is one of `verbs`, skipping others.
    pub async fn next(&mut self, verbs: &[&str]) -> Value {
        loop {
            let message = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("the relay answers")
                .expect("the connection is open")
                .unwrap();
            if let Message::Text(text) = message {
                let value: Value = serde_json::from_str(text.as_str()).unwrap();
                if verbs.contains(&value[0].as_str().unwrap()) {
                    return value;
                }
            }
        }
    }

    /// Publishes an event and returns its `OK` message.
    pub async fn publish(&mut self, event_json: &str) -> (bool, String) {
        let event: Value = serde_json::from_str(event_json).unwrap();
        self.send(json!(["EVENT", event])).await;
        let ok = self.next(&["OK"]).await;
        assert_eq!(ok[1], event["id"]);
        (ok[2].as_bool().unwrap(), ok[3].as_str().unwrap().to_owned())
    }

    /// Sends a REQ and collects its events until EOSE, or returns the CLOSED message.
    pub async fn req(&mut self, id: &str, filters: &[Value]) -> Result<Vec<Value>, String> {
        let mut req = vec![json!("REQ"), json!(id)];
        req.extend(filters.iter().cloned());
        self.send(Value::Array(req)).await;
        let mut events = Vec::new();
        loop {
            let message = self.next(&["EVENT", "EOSE", "CLOSED"]).await;
            assert_eq!(message[1], id);
            match message[0].as_str().unwrap() {
                "EVENT" => events.push(message[2].clone()),
                "EOSE" => return Ok(events),
                _ => return Err(message[2].as_str().unwrap().to_owned()),
            }
        }
    }

    /// Sends a REQ frame as written and collects the ids of its events until
    /// EOSE or CLOSED.
    pub async fn req_ids(&mut self, frame: &str, subscription: &str) -> Vec<String> {
        self.send_text(frame).await;
        let mut ids = Vec::new();
        loop {
            let message = self.next(&["EVENT", "EOSE", "CLOSED"]).await;
            assert_eq!(message[1], subscription, "{message}");
            match message[0].as_str().unwrap() {
                "EVENT" => ids.push(message[2]["id"].as_str().unwrap().to_owned()),
                _ => return ids,
            }
        }
    }
}
