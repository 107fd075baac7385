//! Load generator and benchmark report of the KeyPackage service.
//!
//! # Layout
//!
//! - `corpus`: real KeyPackage events, generated once on every core.
//! - `gateway`: the service under load, as its own process or in this one.
//! - `target`: what a phase talks to: HTTP, or a store in this process.
//! - `direct_sqlite`, `direct_firestore`: the baselines, straight through
//!   `rusqlite` and the `firestore` crate.
//! - `stats`: latency histograms and summaries.
//! - `scenarios`: each figure of BENCHMARKS.md, written to a JSON file.
//! - `report`: the tables and SVG charts drawn from those files.
//!
//! Every figure is a ratio to a baseline measured in the same run, because
//! the machines these run on are shared and noisy.

pub mod corpus;
pub mod direct_firestore;
pub mod direct_sqlite;
pub mod gateway;
pub mod report;
pub mod scenarios;
pub mod stats;
pub mod target;

/// The Firestore project every run uses on the emulator.
pub const FIRESTORE_PROJECT: &str = "kp-loadgen";

/// Seconds since the epoch: the service runs on the real clock, so the
/// load generator does too.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
