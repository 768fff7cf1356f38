//! The message as the engine routes it, and the options of a subscription.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

/// Identifies a session inside one engine (assigned by [`crate::broker`]).
pub type SessionId = u64;

/// MQTT quality of service levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum QoS {
    /// At most once.
    #[default]
    AtMostOnce = 0,
    /// At least once.
    AtLeastOnce = 1,
    /// Exactly once.
    ExactlyOnce = 2,
}

impl QoS {
    /// The QoS of a wire value; `None` for 3.
    pub fn from_u8(v: u8) -> Option<QoS> {
        match v {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }
}

/// MQTT 5 publish properties the engine forwards unchanged (everything but
/// the per-hop topic alias and subscription identifiers).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForwardedProperties {
    /// Payload Format Indicator.
    pub payload_format_indicator: Option<u8>,
    /// Content Type.
    pub content_type: Option<String>,
    /// Response Topic.
    pub response_topic: Option<String>,
    /// Correlation Data.
    pub correlation_data: Option<Bytes>,
    /// User Properties, in order.
    pub user_properties: Vec<(String, String)>,
}

/// One application message, shared by every subscriber it is routed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The topic name (aliases already resolved).
    pub topic: Arc<str>,
    /// The payload.
    pub payload: Bytes,
    /// The QoS it was published with.
    pub qos: QoS,
    /// The RETAIN flag it was published with.
    pub retain: bool,
    /// Properties forwarded to subscribers.
    pub properties: ForwardedProperties,
    /// When it expires (MQTT 5 Message Expiry Interval), if ever.
    pub expires_at: Option<Instant>,
    /// The publishing session, for No Local; `None` for the server's own publishes.
    pub origin: Option<SessionId>,
}

impl Message {
    /// Approximate memory held by this message, for queue byte bounds.
    pub fn size(&self) -> usize {
        self.topic.len()
            + self.payload.len()
            + self.properties.content_type.as_ref().map_or(0, String::len)
            + self
                .properties
                .response_topic
                .as_ref()
                .map_or(0, String::len)
            + self
                .properties
                .correlation_data
                .as_ref()
                .map_or(0, Bytes::len)
            + self
                .properties
                .user_properties
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
            + 64
    }

    /// Seconds left before expiry at `now` (rounded up), `None` if it never
    /// expires, `Some(0)` once expired.
    pub fn remaining_expiry(&self, now: Instant) -> Option<u32> {
        self.expires_at.map(|at| {
            let left = at.saturating_duration_since(now);
            let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
            secs.min(u64::from(u32::MAX)) as u32
        })
    }

    /// Whether it has expired at `now`.
    pub fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|at| now >= at)
    }
}

/// Retain Handling (MQTT 5 subscription option).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RetainHandling {
    /// Send retained messages at every subscribe.
    #[default]
    OnSubscribe,
    /// Send retained messages only if the subscription is new.
    OnNewSubscribe,
    /// Never send retained messages for this subscription.
    Never,
}

/// The options a session subscribed a filter with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SubscriptionOptions {
    /// Maximum QoS granted.
    pub qos: QoS,
    /// Do not deliver the session's own publishes.
    pub no_local: bool,
    /// Keep the RETAIN flag of forwarded publishes.
    pub retain_as_published: bool,
    /// When retained messages are sent.
    pub retain_handling: RetainHandling,
    /// MQTT 5 Subscription Identifier.
    pub subscription_id: Option<u32>,
}
