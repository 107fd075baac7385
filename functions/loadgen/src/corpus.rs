//! Real KeyPackage events to load the service with: one-time KeyPackages
//! made with OpenMLS for fresh nostr keys, signed, generated once on every
//! core and reused by every phase of a run.

use std::thread;

use kp_domain::{KeyPackageEvent, ValidationConfig, validate_keypackage_event};
use kp_testkit::{KeyPackageSpec, Owner};

/// The events of a run, owner by owner.
pub struct Corpus {
    /// Owner pubkeys, lowercase hex.
    pub owners: Vec<String>,
    /// Every event JSON, grouped by owner: `per_owner` consecutive events
    /// belong to `owners[i / per_owner]`.
    pub events: Vec<String>,
    /// KeyPackages per owner.
    pub per_owner: usize,
    /// The `created_at` (and the lifetime's centre) of every event.
    pub created_at: u64,
}

/// Runs `f` over `0..n` on every core, in order.
fn parallel<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let threads = thread::available_parallelism().map_or(1, usize::from);
    let chunk = n.div_ceil(threads).max(1);
    thread::scope(|scope| {
        let handles: Vec<_> = (0..n)
            .step_by(chunk)
            .map(|start| {
                let f = &f;
                scope.spawn(move || (start..(start + chunk).min(n)).map(f).collect::<Vec<T>>())
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a generator thread panicked"))
            .collect()
    })
}

impl Corpus {
    /// `owners × per_owner` one-time KeyPackage events created at `created_at`.
    pub fn generate(owners: usize, per_owner: usize, created_at: u64) -> Self {
        let made = parallel(owners, |_| {
            let owner = Owner::new();
            let events: Vec<String> = (0..per_owner)
                .map(|_| {
                    owner
                        .keypackage(KeyPackageSpec::one_time_at(created_at))
                        .event_443(&owner, created_at)
                })
                .collect();
            (owner.pubkey(), events)
        });
        let mut corpus = Self {
            owners: Vec::with_capacity(owners),
            events: Vec::with_capacity(owners * per_owner),
            per_owner,
            created_at,
        };
        for (owner, events) in made {
            corpus.owners.push(owner);
            corpus.events.extend(events);
        }
        corpus
    }

    /// The first `owners` owners and their events.
    pub fn take(&self, owners: usize) -> Self {
        let owners = owners.min(self.owners.len());
        Self {
            owners: self.owners[..owners].to_vec(),
            events: self.events[..owners * self.per_owner].to_vec(),
            per_owner: self.per_owner,
            created_at: self.created_at,
        }
    }

    /// Every event validated at `now`, for the baselines and the bulk fills,
    /// which store without validating.
    pub fn validated(&self, now: u64) -> Vec<KeyPackageEvent> {
        let config = ValidationConfig::default();
        parallel(self.events.len(), |i| {
            validate_keypackage_event(&self.events[i], &config, now).expect("generated events are valid")
        })
    }
}
