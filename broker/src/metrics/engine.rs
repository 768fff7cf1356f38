//! [`EngineCollector`]: the MQTT engine's counters and sizes, read at scrape
//! time: messages routed and delivered, deliveries dropped by full queues
//! (by QoS: QoS 1/2 drops are losses the bounds forced), expired messages,
//! quota refusals, sessions, subscriptions and retained messages.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use parley_engine::router::Router;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;

use super::constant::{counter, gauge};

/// Reads the engine's counters on every scrape.
pub struct EngineCollector {
    router: Arc<Router>,
}

impl std::fmt::Debug for EngineCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineCollector").finish_non_exhaustive()
    }
}

impl EngineCollector {
    /// A collector over `router`.
    pub fn new(router: Arc<Router>) -> EngineCollector {
        EngineCollector { router }
    }
}

/// Labels `{session}` of per-session losses.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SessionLabels {
    session: String,
}

/// Labels `{qos}` of dropped deliveries.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct QosLabels {
    qos: &'static str,
}

impl Collector for EngineCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let c = self.router.counters();
        let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        counter(
            &mut encoder,
            "mqtt_routed",
            "Messages routed by the MQTT engine",
            get(&c.published),
        )?;
        counter(
            &mut encoder,
            "mqtt_delivered",
            "Deliveries queued for sessions",
            get(&c.delivered),
        )?;
        let dropped = ConstCounter::new(0u64);
        let mut family = encoder.encode_descriptor(
            "mqtt_dropped",
            "Deliveries dropped because the session's queue was full (mqtt.max_queued_messages / _bytes), or QoS 0 ones for a persistent session whose client is away, by delivered QoS; qos=\"1+\" are losses",
            None,
            dropped.metric_type(),
        )?;
        for (qos, value) in [("0", get(&c.dropped_qos0)), ("1+", get(&c.dropped_qos12))] {
            ConstCounter::new(value).encode(family.encode_family(&QosLabels { qos })?)?;
        }
        let lost = ConstCounter::new(0u64);
        let mut family = encoder.encode_descriptor(
            "mqtt_session_lost",
            "QoS 1/2 deliveries a session lost to its queue bound, by session (user~client id; only sessions with losses)",
            None,
            lost.metric_type(),
        )?;
        for (session, value) in self.router.sessions_with_losses() {
            let labels = SessionLabels {
                session: session.to_string(),
            };
            ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
        }
        counter(
            &mut encoder,
            "mqtt_expired",
            "Deliveries dropped because their Message Expiry passed",
            get(&c.expired),
        )?;
        counter(
            &mut encoder,
            "mqtt_retained_refused",
            "Retained messages refused by the per-user quota",
            get(&c.retained_refused),
        )?;
        counter(
            &mut encoder,
            "mqtt_subscriptions_refused",
            "Subscriptions refused by the per-session quota",
            get(&c.subscriptions_refused),
        )?;
        counter(
            &mut encoder,
            "mqtt_sessions_expired",
            "Sessions ended by their Session Expiry",
            get(&c.sessions_expired),
        )?;
        counter(
            &mut encoder,
            "mqtt_sessions_taken_over",
            "Live sessions taken over by a new connection",
            get(&c.sessions_taken_over),
        )?;
        counter(
            &mut encoder,
            "mqtt_wills_published",
            "Wills published",
            get(&c.wills_published),
        )?;
        gauge(
            &mut encoder,
            "mqtt_sessions",
            "Sessions, connected or waiting for their client",
            self.router.session_count(),
        )?;
        gauge(
            &mut encoder,
            "mqtt_subscriptions",
            "Subscriptions in the engine",
            self.router.subscription_count(),
        )?;
        gauge(
            &mut encoder,
            "mqtt_retained",
            "Retained messages stored",
            self.router.retained_count(),
        )?;
        Ok(())
    }
}
