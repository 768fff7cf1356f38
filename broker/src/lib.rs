//! The Parley broker: listeners, authentication, ACL and the chat pipeline in
//! front of rumqttd's router.

pub mod auth;
pub mod chat;
pub mod cluster;
pub mod config;
pub mod hex;
pub mod http;
pub mod limits;
pub mod listeners;
pub mod media;
pub mod metrics;
pub mod mqtt;
pub mod node_lease;
pub mod push;
pub mod router;
pub mod server;
pub mod storage;
