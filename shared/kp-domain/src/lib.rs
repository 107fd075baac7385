//! The KeyPackage domain: what a valid KeyPackage event is, and how KeyPackages
//! move through their lifecycle. Plain data and pure functions: nothing here
//! does I/O or reads a clock; the current time is always a parameter.
//!
//! # Layout
//!
//! - [`config`]: the knobs validation and the lifecycle rules obey.
//! - [`validate`]: kind 443 / 30443 event validation down to the MLS KeyPackage.
//! - [`mls`]: the MLS part of validation, on top of OpenMLS.
//! - [`nip98`]: NIP-98 HTTP auth of the owner routes.
//! - [`signals`]: Welcome (kind 444) and NIP-09 deletion (kind 5) events.
//! - [`filter`]: the NIP-01 filters a query answers.
//! - [`model`]: the stored documents (KeyPackage records, the owner index, audit).
//! - [`rules`]: every lifecycle decision, as plans a backend applies atomically.
//! - [`limits`]: token buckets against draining and flooding.
//! - [`query`]: choosing which stored events a query answers with.

#![forbid(unsafe_code)]

pub mod config;
pub mod filter;
pub mod ids;
pub mod limits;
pub mod mls;
pub mod model;
pub mod nip98;
pub mod proof;
pub mod query;
pub mod rules;
pub mod signals;
pub mod validate;

pub use config::{CapPolicy, Policy, Rate, RateLimits, ValidationConfig};
pub use filter::{Filter, FilterError};
pub use model::{
    AuditRecord, ConsumedVia, KeyPackageRecord, KeyPackageState, OwnerCount, OwnerEntry, OwnerIndex, Profile,
    StoredEvent,
};
pub use signals::{Deletion, SignalError, Welcome};
pub use validate::{Invalid, KeyPackageEvent, validate_keypackage_event};

/// Kind of the NIP-EE KeyPackage event.
pub const KIND_KEYPACKAGE: u16 = 443;
/// Kind of the addressable Marmot KeyPackage event.
pub const KIND_KEYPACKAGE_ADDRESSABLE: u16 = 30443;
/// Kind of the Welcome event.
pub const KIND_WELCOME: u16 = 444;
/// Kind of the NIP-09 deletion event.
pub const KIND_DELETION: u16 = 5;
