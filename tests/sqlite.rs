//! The Store conformance suite against the embedded SQLite backend.
