//! Test support shared by every crate's tests: real KeyPackages made with
//! OpenMLS and signed as nostr events, the Firestore emulator and
//! PostgreSQL harnesses, and the one conformance suite every `Store` backend
//! must pass.
//!
//! # Layout
//!
//! - [`factory`]: KeyPackages and KeyPackage, Welcome and deletion events.
//! - [`emulator`]: starts the Firestore emulator once per test process.
//! - [`postgres`]: starts a PostgreSQL server once per test process, and
//!   gives each test a database of its own.
//! - [`conformance`]: the `Store` conformance suite and its macro.
//! - [`process`]: a function binary run as a process on the emulator.

#![forbid(unsafe_code)]

pub mod conformance;
pub mod current;
pub mod emulator;
pub mod factory;
pub mod postgres;
pub mod process;

pub use current::{CurrentKeyPackage, CurrentSpec, ProofMode};
pub use factory::{KeyPackageSpec, MadeKeyPackage, Owner};

/// A fixed "now" for tests: 2026-11-25T00:00:00Z.
pub const NOW: u64 = 1_795_651_200;
