//! The embedded rumqttd router and the links Parley opens to it.
//!
//! rumqttd's router runs on its own thread; every MQTT client of Parley, and
//! Parley's own server-side publisher, talks to it through a local link.
//! The router's event channel type is private to rumqttd, so the handle keeps
//! it inside a closure that builds links.

use std::sync::Arc;

use rumqttd::local::{LinkBuilder, LinkRx, LinkTx};
use rumqttd::protocol::{ConnAck, ConnAckProperties, Packet};
use rumqttd::{Notification, Router, RouterConfig};

use crate::config::MqttConfig;

/// What a new link asks of the router.
#[derive(Debug, Clone)]
pub struct LinkRequest {
    /// The router-level client id (Parley namespaces it by user).
    pub client_id: String,
    /// Whether the router drops the session's state at disconnect.
    pub clean_session: bool,
}

/// A link to the router, with the router's CONNACK.
pub struct Link {
    /// Sends packets to the router.
    pub tx: LinkTx,
    /// Receives notifications (forwards, acks) from the router.
    pub rx: LinkRx,
    /// The router's CONNACK (carries `session_present`).
    pub connack: ConnAck,
    /// The router's CONNACK properties, if any.
    pub connack_properties: Option<ConnAckProperties>,
}

type BuildLink =
    dyn Fn(&LinkRequest) -> Result<(LinkTx, LinkRx, Notification), String> + Send + Sync;

/// A cheap, cloneable handle to the running router.
#[derive(Clone)]
pub struct RouterHandle {
    build: Arc<BuildLink>,
}

/// Why a link could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// The router refused or is gone.
    #[error("router refused the link: {0}")]
    Link(String),
    /// The router answered with something other than a CONNACK.
    #[error("router did not acknowledge the connection")]
    NoConnAck,
    /// The blocking link set-up task failed.
    #[error("link set-up task failed: {0}")]
    Task(String),
}

impl RouterHandle {
    /// Starts rumqttd's router on its own thread, sized from `config`.
    pub fn start(node_id: usize, config: &MqttConfig) -> RouterHandle {
        let router_config = RouterConfig {
            max_connections: config.max_connections,
            max_outgoing_packet_count: config.max_outgoing_packets,
            max_segment_size: config.router_segment_size,
            max_segment_count: config.router_segment_count,
            ..RouterConfig::default()
        };
        let router_tx = Router::new(node_id, router_config).spawn();
        let build = move |req: &LinkRequest| {
            LinkBuilder::new(&req.client_id, router_tx.clone())
                .clean_session(req.clean_session)
                .build()
                .map_err(|e| e.to_string())
        };
        RouterHandle {
            build: Arc::new(build),
        }
    }

    /// Opens a link. The router answers synchronously, so this runs on a blocking thread.
    pub async fn connect(&self, request: LinkRequest) -> Result<Link, RouterError> {
        let build = self.build.clone();
        let (tx, rx, notification) = tokio::task::spawn_blocking(move || build(&request))
            .await
            .map_err(|e| RouterError::Task(e.to_string()))?
            .map_err(RouterError::Link)?;
        match Option::<Packet>::from(notification) {
            Some(Packet::ConnAck(connack, connack_properties)) => Ok(Link {
                tx,
                rx,
                connack,
                connack_properties,
            }),
            _ => Err(RouterError::NoConnAck),
        }
    }
}
