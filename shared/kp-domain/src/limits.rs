//! Token buckets against draining and flooding, kept in the owner's index so
//! that taking a token and the decision it allows are one atomic write, and
//! every instance of the service shares them. A limit fails closed: no token,
//! no KeyPackage.

use crate::config::{Rate, RateLimits};
use crate::model::{Bucket, OwnerIndex};

/// The answer when a bucket is empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimited {
    /// Seconds until a token is back.
    pub retry_after: u64,
}

/// Who is claiming, for the limits that apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claimant<'a> {
    /// An operator's direct consume: no limit.
    Operator,
    /// A known requester (NIP-42 pubkey, or a Welcome's signer).
    Requester(&'a str),
    /// No requester: the stricter shared anonymous bucket.
    Anonymous,
}

impl<'a> Claimant<'a> {
    /// The claimant of a claim with an optional requester.
    pub fn from_requester(requester: Option<&'a str>) -> Self {
        requester.map_or(Self::Anonymous, Self::Requester)
    }
}

const OWNER_CLAIM: &str = "owner_claim";
const ANON_CLAIM: &str = "anon_claim";
const INGEST: &str = "ingest";
const CLAIM_PREFIX: &str = "claim:";

/// The buckets a claim by `claimant` takes a token from.
pub fn claim_buckets(limits: &RateLimits, claimant: Claimant<'_>) -> Vec<(String, Rate)> {
    let mut buckets = Vec::new();
    match claimant {
        Claimant::Operator => return buckets,
        Claimant::Requester(requester) => {
            if let Some(rate) = limits.claim {
                buckets.push((format!("{CLAIM_PREFIX}{requester}"), rate));
            }
        }
        Claimant::Anonymous => {
            if let Some(rate) = limits.anon_claim {
                buckets.push((ANON_CLAIM.to_owned(), rate));
            }
        }
    }
    if let Some(rate) = limits.owner_claim {
        buckets.push((OWNER_CLAIM.to_owned(), rate));
    }
    buckets
}

/// The bucket a new KeyPackage takes a token from.
pub fn ingest_buckets(limits: &RateLimits) -> Vec<(String, Rate)> {
    limits
        .ingest
        .map(|rate| (INGEST.to_owned(), rate))
        .into_iter()
        .collect()
}

fn rate_of(limits: &RateLimits, key: &str) -> Option<Rate> {
    match key {
        OWNER_CLAIM => limits.owner_claim,
        ANON_CLAIM => limits.anon_claim,
        INGEST => limits.ingest,
        key if key.starts_with(CLAIM_PREFIX) => limits.claim,
        _ => None,
    }
}

/// Tokens in a bucket at `now` (absent means full).
fn level(bucket: Option<&Bucket>, rate: Rate, now: u64) -> f64 {
    let capacity = f64::from(rate.count);
    match bucket {
        None => capacity,
        Some(bucket) => {
            let elapsed = now.saturating_sub(bucket.at) as f64;
            (bucket.tokens + elapsed * capacity / rate.per_secs as f64).min(capacity)
        }
    }
}

/// Takes one token from each bucket, or none when any is empty.
pub fn take(
    index: &mut OwnerIndex,
    buckets: &[(String, Rate)],
    limits: &RateLimits,
    now: u64,
) -> Result<(), RateLimited> {
    let levels: Vec<f64> = buckets
        .iter()
        .map(|(key, rate)| level(index.buckets.get(key), *rate, now))
        .collect();
    let wait = buckets
        .iter()
        .zip(&levels)
        .filter(|(_, level)| **level < 1.0)
        .map(|((_, rate), level)| ((1.0 - level) * rate.per_secs as f64 / f64::from(rate.count)).ceil() as u64)
        .max();
    if let Some(wait) = wait {
        return Err(RateLimited {
            retry_after: wait.max(1),
        });
    }
    for ((key, _), level) in buckets.iter().zip(levels) {
        index.buckets.insert(
            key.clone(),
            Bucket {
                tokens: level - 1.0,
                at: now,
            },
        );
    }
    // Full buckets carry no information: drop them to keep the index small.
    index.buckets.retain(|key, bucket| {
        rate_of(limits, key).is_some_and(|rate| level(Some(bucket), rate, now) < f64::from(rate.count))
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> RateLimits {
        RateLimits {
            claim: Some(Rate {
                count: 2,
                per_secs: 600,
            }),
            owner_claim: Some(Rate {
                count: 3,
                per_secs: 600,
            }),
            anon_claim: Some(Rate {
                count: 1,
                per_secs: 600,
            }),
            ingest: None,
        }
    }

    #[test]
    fn a_requester_gets_its_share_then_waits_while_another_still_can() {
        let mut index = OwnerIndex::default();
        let limits = limits();
        let alice = claim_buckets(&limits, Claimant::Requester("alice"));
        let bob = claim_buckets(&limits, Claimant::Requester("bob"));
        assert!(take(&mut index, &alice, &limits, 1000).is_ok());
        assert!(take(&mut index, &alice, &limits, 1000).is_ok());
        assert_eq!(
            take(&mut index, &alice, &limits, 1000),
            Err(RateLimited { retry_after: 300 })
        );
        assert!(take(&mut index, &bob, &limits, 1000).is_ok());
        // The owner-wide bucket (3) is now empty for everyone.
        assert!(take(&mut index, &bob, &limits, 1000).is_err());
        // A refill of one token per 200 s (owner) and 300 s (requester).
        assert!(take(&mut index, &bob, &limits, 1300).is_ok());
        assert!(
            take(&mut index, &alice, &limits, 1300).is_err(),
            "owner bucket empty again"
        );
    }

    #[test]
    fn anonymous_claims_share_one_stricter_bucket_and_operators_are_unlimited() {
        let mut index = OwnerIndex::default();
        let limits = limits();
        let anonymous = claim_buckets(&limits, Claimant::Anonymous);
        assert!(take(&mut index, &anonymous, &limits, 0).is_ok());
        assert!(take(&mut index, &anonymous, &limits, 0).is_err());
        assert!(claim_buckets(&limits, Claimant::Operator).is_empty());
    }

    #[test]
    fn full_buckets_are_dropped() {
        let mut index = OwnerIndex::default();
        let limits = limits();
        take(
            &mut index,
            &claim_buckets(&limits, Claimant::Requester("a")),
            &limits,
            0,
        )
        .unwrap();
        assert_eq!(index.buckets.len(), 2);
        take(
            &mut index,
            &claim_buckets(&limits, Claimant::Requester("b")),
            &limits,
            10_000,
        )
        .unwrap();
        assert_eq!(
            index.buckets.keys().cloned().collect::<Vec<_>>(),
            vec!["claim:b", "owner_claim"]
        );
    }
}
