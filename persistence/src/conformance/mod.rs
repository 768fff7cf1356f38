//! The conformance suites every backend runs, so backends stay interchangeable.
//!
//! Each suite is a module of `pub async fn` checks that take a store and panic,
//! with a message naming the broken promise, when the store misbehaves; a macro
//! turns a suite into one `#[tokio::test]` per check for a backend's test file:
//!
//! - [`metadata`] (users), [`conversations`] (conversations, members, read
//!   cursors), [`push_targets`] and [`relations`]: every [`MetadataStore`](crate::MetadataStore), via
//!   [`metadata_conformance_tests!`](crate::metadata_conformance_tests).
//! - [`history`]: every [`HistoryStore`](crate::HistoryStore), via
//!   [`history_conformance_tests!`](crate::history_conformance_tests).
//! - [`offline`]: every [`OfflineQueue`](crate::OfflineQueue), via
//!   [`offline_conformance_tests!`](crate::offline_conformance_tests).
//! - [`keys`]: every [`KeyDirectory`](crate::KeyDirectory), via
//!   [`key_directory_conformance_tests!`](crate::key_directory_conformance_tests).
//! - [`leases`]: every [`NodeLeases`](crate::NodeLeases), via
//!   [`node_leases_conformance_tests!`](crate::node_leases_conformance_tests).
//! - [`sessions`]: every [`SessionStore`](crate::SessionStore), via
//!   [`session_store_conformance_tests!`](crate::session_store_conformance_tests).
//! - [`bus`]: every [`ClusterBus`](crate::ClusterBus), via
//!   [`bus_conformance_tests!`](crate::bus_conformance_tests).
//!
//! The checks pick fresh, random names for everything they create, so they can
//! share one database with each other, with other test runs and with other data.
//! This module is part of normal builds so that every crate's tests can use it.

pub mod bus;
pub mod conversations;
pub mod history;
pub mod keys;
pub mod leases;
pub mod metadata;
mod names;
pub mod offline;
pub mod push_targets;
pub mod relations;
pub mod sessions;

pub use names::{unique_conversation_id, unique_node_id, unique_username};
