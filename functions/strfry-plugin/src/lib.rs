//! A strfry write-policy plugin: the KeyPackage service decides about
//! KeyPackages (443, 30443), Welcomes (444) and deletions (5); every other
//! kind is accepted, as strfry would without a plugin.
//!
//! strfry starts the plugin once and talks to it in JSON lines: one input
//! line per event (`{"type":"new","event":{...},"receivedAt":...,
//! "sourceType":"IP4","sourceInfo":"..."}`), one output line per input, in
//! order (`{"id":"...","action":"accept"|"reject","msg":"..."}`). When the
//! service cannot be reached, delegated events are rejected with `error:`:
//! none gets in unchecked.

use relay::{DELEGATED_KINDS, Gateway};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// One input line.
#[derive(Deserialize)]
struct Request<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(borrow)]
    event: &'a RawValue,
}

/// The parts of the event the plugin looks at.
#[derive(Deserialize)]
struct EventHead {
    id: String,
    kind: u64,
}

/// One output line.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// The event's id, as strfry matches answers to events.
    pub id: String,
    /// `accept` or `reject`.
    pub action: String,
    /// Sent to the client in its `OK` when rejected.
    pub msg: String,
}

impl Verdict {
    fn accept(id: String, msg: String) -> Self {
        Self {
            id,
            action: "accept".into(),
            msg,
        }
    }

    fn reject(id: String, msg: String) -> Self {
        Self {
            id,
            action: "reject".into(),
            msg,
        }
    }
}

/// The answer to one input line.
pub async fn decide(gateway: &Gateway, line: &str) -> Verdict {
    let request: Request = match serde_json::from_str(line) {
        Ok(request) => request,
        Err(e) => return Verdict::reject(String::new(), format!("error: unreadable plugin input: {e}")),
    };
    let head: EventHead = match serde_json::from_str(request.event.get()) {
        Ok(head) => head,
        Err(e) => return Verdict::reject(String::new(), format!("invalid: not an event: {e}")),
    };
    if request.kind != "new" {
        return Verdict::reject(
            head.id,
            format!("error: unknown plugin request type {:?}", request.kind),
        );
    }
    let delegated = u16::try_from(head.kind).is_ok_and(|kind| DELEGATED_KINDS.contains(&kind));
    if !delegated {
        return Verdict::accept(head.id, String::new());
    }
    // strfry's write policy does not say who authenticated (NIP-42) on the
    // connection, so a Welcome through the plugin is delivered but consumes
    // nothing: no requester is vouched for.
    match gateway.submit(request.event.get(), None).await {
        Ok(decision) if decision.accepted => Verdict::accept(head.id, decision.message),
        Ok(decision) => Verdict::reject(head.id, decision.message),
        Err(e) => Verdict::reject(head.id, e.0),
    }
}
