//! The Parley broker: listeners, authentication, ACL and the chat pipeline,
//! driving Parley's MQTT engine (`parley_engine`).

pub mod address_key;
pub mod auth;
pub mod chat;
pub mod cluster;
pub mod cluster_mqtt;
pub mod config;
pub mod directory;
pub mod fd_table;
pub mod hex;
pub mod http;
pub mod limits;
pub mod listeners;
pub mod media;
pub mod metrics;
pub mod mqtt;
pub mod node_lease;
pub mod publisher;
pub mod push;
pub mod server;
pub mod session_events;
pub mod storage;
pub mod targeting;
