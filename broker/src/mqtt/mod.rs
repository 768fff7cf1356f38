//! Parley's MQTT front end: listeners, the CONNECT handshake, per-connection
//! packet handling and the bridge to rumqttd's router.

pub mod chat_worker;
pub mod codec;
pub mod connection;
pub mod handshake;
pub mod inbound;
pub mod listener;
pub mod publisher;
pub mod sessions;
pub mod will;

use std::sync::Arc;

use chat_core::rules::AclRules;
use tokio_util::sync::CancellationToken;

use crate::auth::Authenticator;
use crate::config::MqttConfig;
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::router::RouterHandle;
use publisher::ServerPublisher;
use sessions::SessionRegistry;
use will::WillRegistry;

/// Everything a connection needs, shared by all connections of the node.
pub struct MqttContext {
    /// Listener and protocol settings.
    pub config: MqttConfig,
    /// Verifies CONNECT credentials.
    pub auth: Arc<Authenticator>,
    /// Plain-MQTT ACL rules from the configuration.
    pub acl: AclRules,
    /// The embedded router.
    pub router: RouterHandle,
    /// Parley's own publishing link.
    pub publisher: ServerPublisher,
    /// Wills waiting out their delay.
    pub wills: WillRegistry,
    /// The chat pipeline.
    pub chat: Arc<crate::chat::ChatService>,
    /// Cancelled when the node shuts down.
    pub shutdown: CancellationToken,
    /// The node's metrics.
    pub metrics: Arc<Metrics>,
    /// Live sessions, for the admin API.
    pub sessions: Arc<SessionRegistry>,
    /// Connection, traffic and publish rate limits.
    pub limits: Limits,
}
