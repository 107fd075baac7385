//! What a load phase talks to: the service over HTTP, or a store directly
//! (the baselines). Each answers whether the operation did what it should.

use std::sync::Arc;

use async_trait::async_trait;
use kp_domain::KeyPackageEvent;
use serde_json::{Value, json};

/// One side of a comparison.
#[async_trait]
pub trait Target: Send + Sync {
    /// Stores event `i` of the corpus; true when it was accepted as new.
    async fn ingest(&self, i: usize) -> anyhow::Result<bool>;
    /// Reads an owner's KeyPackages; true when there were some.
    async fn query(&self, owner: &str) -> anyhow::Result<bool>;
    /// Reads an owner's count; true when it answered.
    async fn count(&self, owner: &str) -> anyhow::Result<bool>;
    /// Claims one of an owner's KeyPackages for `requester`: the identity of
    /// what it got (an event id or a KeyPackageRef), and whether it is a
    /// last resort.
    async fn claim(&self, owner: &str, requester: &str) -> anyhow::Result<Option<(String, bool)>>;
}

/// The service over HTTP.
pub struct Http {
    client: reqwest::Client,
    base: String,
    events: Arc<Vec<String>>,
}

impl Http {
    /// Talks to the service at `base` (`http://host:port`).
    pub fn new(base: String, events: Arc<Vec<String>>) -> Self {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1024)
            .build()
            .expect("an HTTP client");
        Self { client, base, events }
    }

    async fn post(&self, path: &str, body: String) -> anyhow::Result<Value> {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?
            .error_for_status()?;
        Ok(response.json().await?)
    }
}

#[async_trait]
impl Target for Http {
    async fn ingest(&self, i: usize) -> anyhow::Result<bool> {
        let answer = self.post("/v1/keypackages", self.events[i].clone()).await?;
        Ok(answer["accepted"] == true && answer["message"] == "")
    }

    async fn query(&self, owner: &str) -> anyhow::Result<bool> {
        let body = json!({"filters": [{"kinds": [443], "authors": [owner]}]});
        let answer = self.post("/v1/keypackages/query", body.to_string()).await?;
        Ok(answer["events"].as_array().is_some_and(|events| !events.is_empty()))
    }

    async fn count(&self, owner: &str) -> anyhow::Result<bool> {
        let answer: Value = self
            .client
            .get(format!("{}/v1/keypackages/count?owner={owner}", self.base))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(answer["owner"] == owner)
    }

    async fn claim(&self, owner: &str, requester: &str) -> anyhow::Result<Option<(String, bool)>> {
        let body = json!({"owners": [owner], "requester": requester});
        let answer = self.post("/v1/keypackages/claim", body.to_string()).await?;
        let claimed = &answer["claimed"][0];
        Ok(claimed["event"]["id"]
            .as_str()
            .map(|id| (id.to_owned(), claimed["last_resort"] == true)))
    }
}

/// A store's `Store` implementation called in this process: no HTTP, no
/// validation, but the backend's own code. Shows where the gateway's time
/// goes between the direct baseline and HTTP.
pub struct InProcess {
    store: Arc<dyn kp_store::Store>,
    events: Arc<Vec<KeyPackageEvent>>,
}

impl InProcess {
    /// Calls `store` with pre-validated `events`.
    pub fn new(store: Arc<dyn kp_store::Store>, events: Arc<Vec<KeyPackageEvent>>) -> Self {
        Self { store, events }
    }
}

#[async_trait]
impl Target for InProcess {
    async fn ingest(&self, i: usize) -> anyhow::Result<bool> {
        let outcome = self.store.ingest(&self.events[i], crate::now()).await?;
        Ok(outcome.decision() == (true, String::new()))
    }

    async fn query(&self, owner: &str) -> anyhow::Result<bool> {
        let filter = kp_domain::Filter::from_json(&json!({"kinds": [443], "authors": [owner]}))?;
        Ok(!self.store.query(&[filter], crate::now()).await?.is_empty())
    }

    async fn count(&self, owner: &str) -> anyhow::Result<bool> {
        Ok(self.store.count(owner, crate::now()).await?.owner == owner)
    }

    async fn claim(&self, owner: &str, requester: &str) -> anyhow::Result<Option<(String, bool)>> {
        let claimed = self
            .store
            .claim(
                owner,
                None,
                Some(requester),
                kp_domain::ConsumedVia::Claim,
                crate::now(),
            )
            .await?;
        Ok(claimed.keypackage_ref.map(|r| (r, claimed.last_resort)))
    }
}
