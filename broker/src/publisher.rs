//! The server-side publisher: how Parley itself publishes into the engine
//! (chat deliveries, answers, presence, cluster records). The chat pipeline
//! and the cluster consumer see only this narrow API: they depend on the
//! engine through it, never on the MQTT front end.
//!
//! Server publishes are QoS 1: each subscriber gets them at its granted QoS
//! (min of the two), so an inbox subscribed at QoS 1 gets every delivery
//! acknowledged, and one subscribed at QoS 0 gets it once at most.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use parley_engine::message::{ForwardedProperties, Message, QoS};
use parley_engine::router::{Router, SERVER_NAMESPACE};
use rumqttd::protocol::PublishProperties;
use tracing::warn;

/// Publishes into the engine on Parley's own behalf. Cheap to clone.
#[derive(Clone)]
pub struct ServerPublisher {
    router: Arc<Router>,
}

impl ServerPublisher {
    /// A publisher into `router`.
    pub fn new(router: Arc<Router>) -> ServerPublisher {
        ServerPublisher { router }
    }

    /// Publishes `payload` on `topic`.
    pub fn publish(&self, topic: &str, payload: Bytes, retain: bool) {
        self.route(message(
            topic,
            payload,
            retain,
            ForwardedProperties::default(),
        ));
    }

    /// Publishes `payload` on `topic` with MQTT 5 properties (e.g. correlation data).
    pub fn publish_with_properties(
        &self,
        topic: &str,
        payload: Bytes,
        properties: Option<PublishProperties>,
    ) {
        let forwarded = properties
            .map(|p| ForwardedProperties {
                payload_format_indicator: p.payload_format_indicator,
                content_type: p.content_type,
                response_topic: p.response_topic,
                correlation_data: p.correlation_data,
                user_properties: p.user_properties,
            })
            .unwrap_or_default();
        self.route(message(topic, payload, false, forwarded));
    }

    /// Publishes a batch, in order.
    pub fn publish_many(&self, items: impl IntoIterator<Item = (String, Bytes, bool)>) {
        for (topic, payload, retain) in items {
            self.publish(&topic, payload, retain);
        }
    }

    fn route(&self, message: Message) {
        let topic = message.topic.clone();
        match self
            .router
            .publish(message, SERVER_NAMESPACE, Instant::now())
        {
            Ok(report) => {
                let lost = report
                    .dropped
                    .iter()
                    .filter(|(_, qos)| *qos != QoS::AtMostOnce)
                    .count();
                if lost > 0 {
                    warn!(%topic, lost, "server publish dropped by full subscriber queues");
                }
            }
            Err(e) => warn!(%topic, error = %e, "server publish refused"),
        }
    }
}

fn message(topic: &str, payload: Bytes, retain: bool, properties: ForwardedProperties) -> Message {
    Message {
        topic: Arc::from(topic),
        payload,
        qos: QoS::AtLeastOnce,
        retain,
        properties,
        expires_at: None,
        origin: None,
    }
}
