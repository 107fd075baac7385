//! Jittered exponential backoff for decisions that lost a compare-and-swap.

use std::time::{Duration, Instant};

use kp_store::StoreError;
use rand::Rng as _;

/// How long one decision may keep losing before it gives up (503, retry safe).
const GIVE_UP_AFTER: Duration = Duration::from_secs(30);

/// Backoff state of one decision.
pub(crate) struct Backoff {
    owner: String,
    started: Instant,
    attempt: u32,
}

impl Backoff {
    pub(crate) fn new(owner: &str) -> Self {
        Self {
            owner: owner.to_owned(),
            started: Instant::now(),
            attempt: 0,
        }
    }

    /// Sleeps before the next attempt, or gives up.
    pub(crate) async fn wait(&mut self) -> Result<(), StoreError> {
        if self.started.elapsed() > GIVE_UP_AFTER {
            return Err(StoreError::Contention(format!(
                "owner {} changed under {} attempts in {:?}",
                self.owner, self.attempt, GIVE_UP_AFTER
            )));
        }
        self.attempt += 1;
        let ceiling_ms = (2u64 << self.attempt.min(6)).min(100);
        let sleep_ms = rand::rng().random_range(1..=ceiling_ms);
        tokio::time::sleep(Duration::from_millis(sleep_ms)).await;
        Ok(())
    }
}
