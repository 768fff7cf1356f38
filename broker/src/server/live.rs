//! [`LiveCollector`]: metrics read from the node at scrape time rather than
//! counted as they happen: live connections by transport (from the session
//! registry), users online (from chat presence) and chat publishes refused by
//! the chat rate limits, and chat messages those limits held.
//!
//! It reads the MQTT layer and the chat pipeline, so it lives with the
//! server's wiring rather than in `metrics`, which both of them use.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::chat::ChatService;
use crate::metrics::TransportLabels;
use crate::mqtt::sessions::SessionRegistry;

/// Reads live values of the node on every scrape.
pub struct LiveCollector {
    sessions: Arc<SessionRegistry>,
    chat: Arc<ChatService>,
}

impl std::fmt::Debug for LiveCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveCollector").finish_non_exhaustive()
    }
}

impl LiveCollector {
    /// A collector over the node's sessions and chat pipeline.
    pub fn new(sessions: Arc<SessionRegistry>, chat: Arc<ChatService>) -> LiveCollector {
        LiveCollector { sessions, chat }
    }
}

/// Labels `{kind}` of chat rate-limit refusals.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ChatLimitLabels {
    kind: &'static str,
}

impl Collector for LiveCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let by_transport = self.sessions.count_by_transport();
        let gauge = ConstGauge::new(0i64);
        let mut family = encoder.encode_descriptor(
            "connections",
            "Live MQTT connections past CONNECT, by transport",
            None,
            gauge.metric_type(),
        )?;
        for (transport, count) in by_transport {
            let labels = TransportLabels { transport };
            ConstGauge::new(count as i64).encode(family.encode_family(&labels)?)?;
        }

        let online = ConstGauge::new(self.chat.presence.online_users() as i64);
        online.encode(encoder.encode_descriptor(
            "users_online",
            "Users with at least one live session on this node",
            None,
            online.metric_type(),
        )?)?;

        let refused = self.chat.rate_limited();
        let counter = ConstCounter::new(0u64);
        let mut family = encoder.encode_descriptor(
            "chat_rate_limited",
            "Chat publishes refused by the per-user chat rate limits (RATE_LIMITED), by kind",
            None,
            counter.metric_type(),
        )?;
        for (kind, count) in [
            ("message", refused.messages),
            ("typing", refused.typing),
            ("request", refused.requests),
        ] {
            ConstCounter::new(count).encode(family.encode_family(&ChatLimitLabels { kind })?)?;
        }

        let held = ConstCounter::new(refused.messages_held);
        held.encode(encoder.encode_descriptor(
            "chat_messages_held",
            "Chat messages over the per-user rate limit held until their token was due (delayed, not refused)",
            None,
            held.metric_type(),
        )?)?;
        Ok(())
    }
}
