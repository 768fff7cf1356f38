//! Parley's MQTT front end: listeners, the CONNECT handshake and one task per
//! connection driving its session in Parley's engine (`parley_engine`).

pub mod chat_pipeline;
pub mod connection;
pub mod durable;
pub mod handover;
pub mod handshake;
pub mod inbound;
pub mod listener;
pub mod sessions;
pub mod ticker;

use std::sync::Arc;

use chat_core::rules::AclRules;
use tokio_util::sync::CancellationToken;

use crate::auth::Authenticator;
use crate::config::MqttConfig;
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::publisher::ServerPublisher;
use sessions::SessionRegistry;

/// Everything a connection needs, shared by all connections of the node.
pub struct MqttContext {
    /// Listener and protocol settings.
    pub config: MqttConfig,
    /// Verifies CONNECT credentials.
    pub auth: Arc<Authenticator>,
    /// Plain-MQTT ACL rules from the configuration.
    pub acl: AclRules,
    /// The engine: sessions, subscriptions, retained messages.
    pub router: Arc<parley_engine::router::Router>,
    /// Parley's own publishes into the engine.
    pub publisher: ServerPublisher,
    /// The chat pipeline. The MQTT layer uses `begin`, `handle` and
    /// `max_pipelined_sends` (a connection's chat pipeline) and `shares_conversation`
    /// (subscription ACL), nothing else; presence follows connections as a
    /// session listener, wired by the server.
    pub chat: Arc<crate::chat::ChatService>,
    /// Cancelled when the node shuts down.
    pub shutdown: CancellationToken,
    /// The node's metrics.
    pub metrics: Arc<Metrics>,
    /// Live sessions, for the admin API.
    pub sessions: Arc<SessionRegistry>,
    /// Connection, traffic and publish rate limits.
    pub limits: Limits,
    /// The journal of persistent sessions, if the store keeps them.
    pub durable: Option<Arc<durable::DurableSessions>>,
    /// Moving persistent sessions between nodes sharing a PostgreSQL store;
    /// `None` on the embedded store.
    pub moves: Option<Arc<handover::SessionMoves>>,
    /// The cluster's session directory; `None` on a single node.
    pub directory: Option<Arc<crate::directory::ClusterDirectory>>,
    /// Plain MQTT routing across the cluster; `None` on a single node.
    pub cluster_mqtt: Option<Arc<crate::cluster_mqtt::ClusterMqtt>>,
}
