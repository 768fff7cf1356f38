//! A publish/subscribe client over rumqttc with one API for MQTT 3.1.1 and 5.
//!
//! [`connect`] returns a [`Requests`] handle (publish, subscribe, disconnect)
//! and an [`Events`] stream that must be polled continuously; polling drives
//! the connection and yields the few events the scenarios care about. The
//! network connection is made on the first poll.

use std::time::Duration;

use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5 as p5;

use super::{MqttVersion, Qos, MAX_INCOMING_PACKET};
use crate::credentials::Login;

/// Requests queued per client before `publish` waits.
const REQUEST_QUEUE: usize = 64;

/// How to reach the broker and who to be.
#[derive(Debug, Clone)]
pub struct ClientSpec {
    /// Broker host name or address.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// Protocol version.
    pub version: MqttVersion,
    /// MQTT client identifier.
    pub client_id: String,
    /// Username and password, if any.
    pub login: Option<Login>,
    /// Keep-alive interval.
    pub keepalive: Duration,
    /// Most QoS 1/2 publishes awaiting acknowledgement.
    pub inflight: u16,
    /// Time allowed for TCP connect plus CONNECT/CONNACK.
    pub connect_timeout: Duration,
}

/// What polling a client yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// CONNACK accepted the connection.
    Connected,
    /// SUBACK arrived; `refused` names the reason if the broker refused a filter.
    Subscribed {
        /// Why the subscription was refused, if it was.
        refused: Option<String>,
    },
    /// One of our publishes went out with this packet id (0 at QoS 0).
    /// Publishes go out in the order they were queued.
    Published(u16),
    /// One of our QoS 1 (PUBACK) or QoS 2 (PUBCOMP) publishes completed; the
    /// packet id.
    Acked(u16),
    /// The broker refused one of our publishes (MQTT 5 reason code).
    PublishRejected {
        /// The refused publish's packet id.
        pkid: u16,
        /// The reason code.
        reason: String,
    },
    /// A message arrived.
    Message {
        /// The topic it was published to.
        topic: String,
        /// Its payload.
        payload: Bytes,
    },
    /// Our DISCONNECT went out.
    Disconnected,
    /// Anything else (pings, QoS 2 intermediate packets, ...).
    Other,
}

/// A client operation failed. The rumqttc errors are boxed: they carry the
/// failed request and are large.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The MQTT 3.1.1 connection failed.
    #[error("{0}")]
    ConnectionV4(Box<rumqttc::ConnectionError>),
    /// The MQTT 5 connection failed.
    #[error("{0}")]
    ConnectionV5(Box<rumqttc::v5::ConnectionError>),
    /// A request could not be queued (the event loop is gone).
    #[error("request not queued: {0}")]
    RequestV4(Box<rumqttc::ClientError>),
    /// A request could not be queued (the event loop is gone).
    #[error("request not queued: {0}")]
    RequestV5(Box<rumqttc::v5::ClientError>),
}

macro_rules! boxed_from {
    ($($source:ty => $variant:ident),* $(,)?) => {$(
        impl From<$source> for ClientError {
            fn from(e: $source) -> Self {
                ClientError::$variant(Box::new(e))
            }
        }
    )*};
}

boxed_from! {
    rumqttc::ConnectionError => ConnectionV4,
    rumqttc::v5::ConnectionError => ConnectionV5,
    rumqttc::ClientError => RequestV4,
    rumqttc::v5::ClientError => RequestV5,
}

/// The request side of a client.
#[derive(Clone)]
pub enum Requests {
    /// MQTT 3.1.1.
    V4(rumqttc::AsyncClient),
    /// MQTT 5.
    V5(rumqttc::v5::AsyncClient),
}

/// The event side of a client; poll it continuously.
pub enum Events {
    /// MQTT 3.1.1.
    V4(Box<rumqttc::EventLoop>),
    /// MQTT 5.
    V5(Box<rumqttc::v5::EventLoop>),
}

/// Creates a client; it connects when [`Events::next`] is first polled.
pub fn connect(spec: &ClientSpec) -> (Requests, Events) {
    let connect_timeout = spec.connect_timeout.as_secs().max(1);
    match spec.version {
        MqttVersion::V4 => {
            let mut options = rumqttc::MqttOptions::new(&spec.client_id, &spec.host, spec.port);
            options
                .set_keep_alive(spec.keepalive)
                .set_clean_session(true)
                .set_inflight(spec.inflight.max(1))
                .set_max_packet_size(MAX_INCOMING_PACKET, MAX_INCOMING_PACKET);
            if let Some(login) = &spec.login {
                options.set_credentials(&login.username, &login.password);
            }
            let (client, mut eventloop) = rumqttc::AsyncClient::new(options, REQUEST_QUEUE);
            let mut network = rumqttc::NetworkOptions::new();
            network.set_tcp_nodelay(true);
            network.set_connection_timeout(connect_timeout);
            eventloop.set_network_options(network);
            (Requests::V4(client), Events::V4(Box::new(eventloop)))
        }
        MqttVersion::V5 => {
            let mut options = rumqttc::v5::MqttOptions::new(&spec.client_id, &spec.host, spec.port);
            options
                .set_keep_alive(spec.keepalive)
                .set_clean_start(true)
                .set_outgoing_inflight_upper_limit(spec.inflight.max(1))
                .set_connection_timeout(connect_timeout)
                .set_max_packet_size(u32::try_from(MAX_INCOMING_PACKET).ok());
            if let Some(login) = &spec.login {
                options.set_credentials(&login.username, &login.password);
            }
            let mut network = rumqttc::NetworkOptions::new();
            network.set_tcp_nodelay(true);
            network.set_connection_timeout(connect_timeout);
            options.set_network_options(network);
            let (client, eventloop) = rumqttc::v5::AsyncClient::new(options, REQUEST_QUEUE);
            (Requests::V5(client), Events::V5(Box::new(eventloop)))
        }
    }
}

impl Requests {
    /// Queues a publish; waits while the request queue is full.
    pub async fn publish(&self, topic: &str, qos: Qos, payload: Bytes) -> Result<(), ClientError> {
        match self {
            Requests::V4(c) => Ok(c.publish_bytes(topic, qos.v4(), false, payload).await?),
            Requests::V5(c) => Ok(c.publish(topic, qos.v5(), false, payload).await?),
        }
    }

    /// Queues a publish without waiting (safe to call from the polling task);
    /// fails if the request queue is full.
    pub fn try_publish(&self, topic: &str, qos: Qos, payload: Vec<u8>) -> Result<(), ClientError> {
        match self {
            Requests::V4(c) => Ok(c.try_publish(topic, qos.v4(), false, payload)?),
            Requests::V5(c) => Ok(c.try_publish(topic, qos.v5(), false, payload)?),
        }
    }

    /// Queues a subscription without waiting (safe to call from the polling task).
    pub fn subscribe(&self, filter: &str, qos: Qos) -> Result<(), ClientError> {
        match self {
            Requests::V4(c) => Ok(c.try_subscribe(filter, qos.v4())?),
            Requests::V5(c) => Ok(c.try_subscribe(filter, qos.v5())?),
        }
    }

    /// Queues a DISCONNECT without waiting.
    pub fn disconnect(&self) -> Result<(), ClientError> {
        match self {
            Requests::V4(c) => Ok(c.try_disconnect()?),
            Requests::V5(c) => Ok(c.try_disconnect()?),
        }
    }
}

impl Events {
    /// Drives the connection until the next event.
    pub async fn next(&mut self) -> Result<ClientEvent, ClientError> {
        match self {
            Events::V4(el) => Ok(map_v4(el.poll().await?)),
            Events::V5(el) => Ok(map_v5(el.poll().await?)),
        }
    }
}

fn map_v4(event: rumqttc::Event) -> ClientEvent {
    use rumqttc::{Event, Outgoing, Packet, SubscribeReasonCode};
    match event {
        Event::Incoming(Packet::ConnAck(_)) => ClientEvent::Connected,
        Event::Incoming(Packet::SubAck(ack)) => ClientEvent::Subscribed {
            refused: ack
                .return_codes
                .contains(&SubscribeReasonCode::Failure)
                .then(|| "SUBACK failure (0x80)".to_string()),
        },
        Event::Incoming(Packet::PubAck(ack)) => ClientEvent::Acked(ack.pkid),
        Event::Incoming(Packet::PubComp(comp)) => ClientEvent::Acked(comp.pkid),
        Event::Incoming(Packet::Publish(publish)) => ClientEvent::Message {
            topic: publish.topic,
            payload: publish.payload,
        },
        Event::Outgoing(Outgoing::Publish(pkid)) => ClientEvent::Published(pkid),
        Event::Outgoing(Outgoing::Disconnect) => ClientEvent::Disconnected,
        _ => ClientEvent::Other,
    }
}

fn map_v5(event: rumqttc::v5::Event) -> ClientEvent {
    use rumqttc::v5::Event;
    use rumqttc::Outgoing;
    match event {
        Event::Incoming(p5::Packet::ConnAck(_)) => ClientEvent::Connected,
        Event::Incoming(p5::Packet::SubAck(ack)) => ClientEvent::Subscribed {
            refused: ack
                .return_codes
                .iter()
                .find(|c| !matches!(c, p5::SubscribeReasonCode::Success(_)))
                .map(|c| format!("SUBACK {c:?}")),
        },
        Event::Incoming(p5::Packet::PubAck(ack)) => match ack.reason {
            p5::PubAckReason::Success | p5::PubAckReason::NoMatchingSubscribers => {
                ClientEvent::Acked(ack.pkid)
            }
            reason => ClientEvent::PublishRejected {
                pkid: ack.pkid,
                reason: format!("PUBACK {reason:?}"),
            },
        },
        Event::Incoming(p5::Packet::PubRec(rec)) => match rec.reason {
            p5::PubRecReason::Success | p5::PubRecReason::NoMatchingSubscribers => {
                ClientEvent::Other
            }
            reason => ClientEvent::PublishRejected {
                pkid: rec.pkid,
                reason: format!("PUBREC {reason:?}"),
            },
        },
        Event::Incoming(p5::Packet::PubComp(comp)) => ClientEvent::Acked(comp.pkid),
        Event::Incoming(p5::Packet::Publish(publish)) => ClientEvent::Message {
            topic: String::from_utf8_lossy(&publish.topic).into_owned(),
            payload: publish.payload,
        },
        Event::Outgoing(Outgoing::Publish(pkid)) => ClientEvent::Published(pkid),
        Event::Outgoing(Outgoing::Disconnect) => ClientEvent::Disconnected,
        _ => ClientEvent::Other,
    }
}
