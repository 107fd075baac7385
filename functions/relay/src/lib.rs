//! A NIP-01 relay that delegates KeyPackages to the KeyPackage service.
//!
//! rust-nostr's relay library (`nostr_sdk::LocalRelay`, in-memory database)
//! is the relay: subscriptions, live events, NIP-09 deletions, limits. In
//! front of each of its connections sits a small session ([`connection`])
//! that owns what is KeyPackage-specific:
//!
//! - EVENTs of kinds 443 and 30443 go to the service (`POST /v1/events`) and
//!   never to the library: the `OK` the client gets is the service's
//!   decision, prefix and all. Kinds 444 (Welcome) and 5 (deletion) go to the
//!   service first and, once it accepted them, to the library as well, so
//!   that they are delivered like any other event.
//! - REQ filters naming kinds 443/30443 are answered by the service
//!   (`POST /v1/keypackages/query`), with the connection's NIP-42 pubkey as
//!   `requester`; the rest of the REQ goes to the library.
//! - NIP-42 AUTH (`KP_RELAY_AUTH`): the session sends the challenge and
//!   checks the answer, since the service needs the pubkey it proves.
//!
//! When the service cannot be reached, KeyPackage events get `OK false
//! "error: ..."` and KeyPackage REQs get `CLOSED "error: ..."`: nothing is
//! accepted that the service did not accept.

pub mod config;
mod connection;
pub mod gateway;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use nostr::prelude::Kind;
use nostr_memory::MemoryDatabase;
use nostr_sdk::prelude::{LocalRelay, RateLimit};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

pub use config::{AuthMode, ConfigError, RelayConfig};
pub use gateway::{Decision, Gateway, GatewayError, QueryAnswer};

/// The kinds whose events the service decides about.
pub const DELEGATED_KINDS: [u16; 4] = [443, 30443, 444, 5];

/// The kinds whose REQs the service answers.
pub const KEYPACKAGE_KINDS: [u16; 2] = [443, 30443];

/// What every connection shares.
pub(crate) struct Shared {
    pub(crate) config: RelayConfig,
    pub(crate) gateway: Gateway,
    pub(crate) library: LocalRelay,
    /// One permit per open WebSocket connection (`KP_RELAY_MAX_CONNECTIONS`).
    pub(crate) connections: Arc<Semaphore>,
}

/// The relay: the library relay plus the KeyPackage session in front of it.
#[derive(Clone)]
pub struct KeyPackageRelay {
    shared: Arc<Shared>,
}

impl KeyPackageRelay {
    /// A relay for `config`, with an empty in-memory database for the events
    /// it keeps itself.
    pub fn new(config: RelayConfig) -> anyhow::Result<Self> {
        let gateway = Gateway::new(&config)?;
        // The library's own database refuses KeyPackage kinds, so that no
        // routing mistake in front of it can ever store or serve one.
        let keypackage_kinds = KEYPACKAGE_KINDS.map(Kind::from);
        let library = LocalRelay::builder()
            .database(MemoryDatabase::bounded(config.max_events))
            .blacklist_kinds(&keypackage_kinds)
            .rate_limit(RateLimit {
                max_reqs: config.max_subscriptions,
                ..RateLimit::default()
            })
            .build();
        let connections = Arc::new(Semaphore::new(config.max_connections));
        Ok(Self {
            shared: Arc::new(Shared {
                config,
                gateway,
                library,
                connections,
            }),
        })
    }

    /// Accepts WebSocket connections on `listener` until `shutdown` completes.
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        tracing::info!(
            listen = %listener.local_addr()?,
            gateway = %self.shared.config.gateway_url,
            auth = ?self.shared.config.auth,
            "relay listening"
        );
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => self.spawn_connection(stream, peer),
                    Err(e) => tracing::warn!(error = %e, "cannot accept a connection"),
                },
                () = &mut shutdown => break,
            }
        }
        self.shared.library.shutdown();
        Ok(())
    }

    fn spawn_connection(&self, stream: tokio::net::TcpStream, peer: SocketAddr) {
        let shared = self.shared.clone();
        tokio::spawn(async move {
            if let Err(e) = connection::handle(shared, stream, peer).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}
