//! The embedded SQLite backend of the KeyPackage Store.
