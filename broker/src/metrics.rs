//! Parley's Prometheus metrics: one [`Metrics`] per node owns the registry
//! and a handle to every metric; it is shared (in an `Arc`) by the MQTT front
//! end and the HTTP side, which serves it as `GET /metrics`.
//!
//! - [`history`]: a history store wrapper timing appends and counting stored messages.
//! - Values read from the node at scrape time (connections, users online,
//!   chat rate limits) are collected by the server's wiring (`server/live.rs`),
//!   as they come from the MQTT layer and the chat pipeline, which both use
//!   this module.
//! - [`kinds`]: what kind of message an outgoing PUBLISH carries.
//!
//! Every labelled family is created with all of its label values at zero, so
//! that a fresh node already exposes every series a dashboard asks for.

pub mod cluster_bus;
pub mod cluster_mqtt;
pub mod constant;
pub mod directory;
pub mod engine;
pub mod history;
pub mod history_writer;
pub mod kinds;
pub mod moves;
pub mod security;

use std::fmt::Write as _;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use rumqttd::protocol::ConnectReturnCode;

pub use kinds::{InKind, OutKind};

use crate::listeners::TransportKind;

/// The content type of [`Metrics::encode`]'s output (OpenMetrics text, which
/// Prometheus scrapes natively).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Declares a label value enum with its wire names and the list of all values.
macro_rules! label_values {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
        }

        impl $name {
            /// Every value, for creating all series up front.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The label value as exported.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl prometheus_client::encoding::EncodeLabelValue for $name {
            fn encode(
                &self,
                encoder: &mut prometheus_client::encoding::LabelValueEncoder,
            ) -> std::fmt::Result {
                use std::fmt::Write as _;
                encoder.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use label_values;

label_values! {
    /// Why a connection ended after CONNECT.
    DisconnectReason {
        /// The client sent DISCONNECT.
        Client => "client",
        /// The socket closed or failed without DISCONNECT.
        Network => "network",
        /// Nothing arrived for 1.5 x keep-alive.
        KeepAlive => "keep_alive",
        /// The client broke the protocol.
        ProtocolError => "protocol_error",
        /// Another connection took the session over.
        TakenOver => "taken_over",
        /// The node shut down.
        Shutdown => "shutdown",
        /// An administrator ended the session (or disabled the user).
        Kicked => "kicked",
        /// The client sent more bytes per second than allowed.
        RateLimited => "rate_limited",
    }
}

label_values! {
    /// Why a connection did not get past CONNECT, when no CONNACK code says it.
    HandshakeFailure {
        /// No complete CONNECT within the connect timeout.
        Timeout => "timeout",
        /// Not MQTT, an unsupported version or a malformed CONNECT.
        Malformed => "malformed",
        /// The peer went away during the handshake (or TLS / WebSocket failed).
        Network => "network",
    }
}

label_values! {
    /// What an access-control denial was for.
    AclAction {
        /// A PUBLISH.
        Publish => "publish",
        /// A SUBSCRIBE filter.
        Subscribe => "subscribe",
    }
}

label_values! {
    /// Why credentials were refused.
    AuthFailure {
        /// CONNECT without a username.
        NoCredentials => "no_credentials",
        /// Unknown user, wrong password or bad token.
        BadCredentials => "bad_credentials",
        /// The account is disabled.
        Disabled => "disabled",
        /// The account store failed.
        Unavailable => "unavailable",
    }
}

label_values! {
    /// Where credentials were presented.
    AuthVia {
        /// MQTT CONNECT.
        Mqtt => "mqtt",
        /// `POST /v1/tokens`.
        Http => "http",
    }
}

label_values! {
    /// Which rate limit refused something.
    Limit {
        /// `limits.connects_per_sec_per_ip`.
        ConnectsPerIp => "connects_per_ip",
        /// `limits.bytes_per_sec_per_connection`.
        BytesPerConnection => "bytes_per_connection",
        /// `limits.publishes_per_sec_per_user`.
        PublishesPerUser => "publishes_per_user",
        /// `mqtt.max_retained_per_user` / `mqtt.max_retained_bytes_per_user`.
        RetainedPerUser => "retained_per_user",
        /// `mqtt.max_subscriptions_per_client`.
        SubscriptionsPerClient => "subscriptions_per_client",
        /// `mqtt.max_will_bytes`.
        WillSize => "will_size",
        /// `mqtt.max_client_id_bytes`.
        ClientIdLength => "client_id_length",
        /// A connection stopped reading (writes stalled past the keep-alive).
        StalledWriter => "stalled_writer",
        /// `mqtt.max_packet_size`.
        PacketSize => "packet_size",
    }
}

impl EncodeLabelValue for TransportKind {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        encoder.write_str(self.as_str())
    }
}

/// Labels `{transport}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct TransportLabels {
    /// The transport.
    pub transport: TransportKind,
}

/// Labels `{reason}` of refused connections: a CONNACK code name
/// (`bad_user_name_password`, `connection_rate_exceeded`, ...) or a
/// [`HandshakeFailure`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RefusalLabels {
    /// The reason.
    pub reason: String,
}

/// Labels `{reason}` of ended connections.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct DisconnectLabels {
    /// The reason.
    pub reason: DisconnectReason,
}

/// Labels `{kind}` of inbound messages.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct InKindLabels {
    /// The kind.
    pub kind: InKind,
}

/// Labels `{kind}` of outbound messages.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct OutKindLabels {
    /// The kind.
    pub kind: OutKind,
}

/// Labels `{action}` of ACL denials.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct AclLabels {
    /// What was denied.
    pub action: AclAction,
}

/// Labels `{reason, via}` of authentication failures.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct AuthLabels {
    /// Why.
    pub reason: AuthFailure,
    /// Where.
    pub via: AuthVia,
}

/// Labels `{limit}` of rate-limit refusals.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct LimitLabels {
    /// Which limit.
    pub limit: Limit,
}

/// CONNACK codes Parley sends, whose series exist from the start.
const REFUSAL_CODES: &[ConnectReturnCode] = &[
    ConnectReturnCode::BadUserNamePassword,
    ConnectReturnCode::NotAuthorized,
    ConnectReturnCode::ServiceUnavailable,
    ConnectReturnCode::ServerUnavailable,
    ConnectReturnCode::ClientIdentifierNotValid,
    ConnectReturnCode::TopicNameInvalid,
    ConnectReturnCode::ConnectionRateExceeded,
    ConnectReturnCode::UnsupportedProtocolVersion,
];

/// The metrics of one node.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// CONNECTs accepted, by transport.
    pub connects: Family<TransportLabels, Counter>,
    /// Connections refused at or before CONNECT, by reason.
    pub connects_refused: Family<RefusalLabels, Counter>,
    /// Connections ended after CONNECT, by reason.
    pub disconnects: Family<DisconnectLabels, Counter>,
    /// PUBLISH packets accepted from clients, by kind.
    pub messages_in: Family<InKindLabels, Counter>,
    /// PUBLISH packets written to clients, by kind.
    pub messages_out: Family<OutKindLabels, Counter>,
    /// Chat history entries stored (new messages, edits and deletes; not retries).
    pub chat_messages_stored: Counter,
    /// Chat messages written to recipients' connections (one per recipient connection).
    pub chat_messages_delivered: Counter,
    /// ACL denials, by action.
    pub acl_denials: Family<AclLabels, Counter>,
    /// Refused credentials, by reason and where they were presented.
    pub auth_failures: Family<AuthLabels, Counter>,
    /// Refusals by the connection, traffic and publish rate limits.
    pub rate_limited: Family<LimitLabels, Counter>,
    /// Refusals by the defences against strangers and floods, by defence.
    pub security_refusals: Family<security::RefusalLabels, Counter>,
    /// Time from a chat send's arrival to its acknowledgement (validated, stored, fanned out).
    pub chat_send_seconds: Histogram,
    /// Time one history append took (durable group commit included).
    pub history_append_seconds: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A registry with every metric registered and every known series at zero.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("parley");
        let connects = Family::<TransportLabels, Counter>::default();
        registry.register(
            "connects",
            "MQTT connections accepted (CONNACK success), by transport",
            connects.clone(),
        );
        let connects_refused = Family::<RefusalLabels, Counter>::default();
        registry.register(
            "connects_refused",
            "Connections refused at or before CONNECT, by CONNACK code name or handshake failure",
            connects_refused.clone(),
        );
        let disconnects = Family::<DisconnectLabels, Counter>::default();
        registry.register(
            "disconnects",
            "MQTT connections ended after CONNECT, by reason",
            disconnects.clone(),
        );
        let messages_in = Family::<InKindLabels, Counter>::default();
        registry.register(
            "messages_in",
            "PUBLISH packets accepted from clients, by kind",
            messages_in.clone(),
        );
        let messages_out = Family::<OutKindLabels, Counter>::default();
        registry.register(
            "messages_out",
            "PUBLISH packets written to clients, by kind",
            messages_out.clone(),
        );
        let chat_messages_stored = Counter::default();
        registry.register(
            "chat_messages_stored",
            "Chat history entries stored durably (messages, edits, deletes; retries excluded)",
            chat_messages_stored.clone(),
        );
        let chat_messages_delivered = Counter::default();
        registry.register(
            "chat_messages_delivered",
            "Chat messages written to recipients' connections (fan-out, one per connection)",
            chat_messages_delivered.clone(),
        );
        let acl_denials = Family::<AclLabels, Counter>::default();
        registry.register(
            "acl_denials",
            "PUBLISH packets and SUBSCRIBE filters denied by the topic ACL",
            acl_denials.clone(),
        );
        let auth_failures = Family::<AuthLabels, Counter>::default();
        registry.register(
            "auth_failures",
            "Refused credentials, by reason and by where they were presented",
            auth_failures.clone(),
        );
        let rate_limited = Family::<LimitLabels, Counter>::default();
        registry.register(
            "rate_limited",
            "Connections, connections' traffic and publishes refused by a rate limit",
            rate_limited.clone(),
        );
        let security_refusals = Family::<security::RefusalLabels, Counter>::default();
        registry.register(
            "security_refusals",
            "Refusals by the log-in, sign-up, listener, metrics and key-fetch defences, by defence",
            security_refusals.clone(),
        );
        let chat_send_seconds = latency_histogram();
        registry.register_with_unit(
            "chat_send_duration",
            "Time from a chat message's arrival to its acknowledgement (stored and fanned out)",
            Unit::Seconds,
            chat_send_seconds.clone(),
        );
        let history_append_seconds = latency_histogram();
        registry.register_with_unit(
            "history_append_duration",
            "Time one durable history append took",
            Unit::Seconds,
            history_append_seconds.clone(),
        );

        let metrics = Metrics {
            registry,
            connects,
            connects_refused,
            disconnects,
            messages_in,
            messages_out,
            chat_messages_stored,
            chat_messages_delivered,
            acl_denials,
            auth_failures,
            rate_limited,
            security_refusals,
            chat_send_seconds,
            history_append_seconds,
        };
        metrics.create_known_series();
        metrics
    }

    /// Creates every series whose labels are known in advance, at zero.
    fn create_known_series(&self) {
        for &transport in TransportKind::ALL {
            let _ = self.connects.get_or_create(&TransportLabels { transport });
        }
        for &code in REFUSAL_CODES {
            let _ = self.connects_refused.get_or_create(&RefusalLabels {
                reason: connack_reason(code),
            });
        }
        for &failure in HandshakeFailure::ALL {
            let _ = self.connects_refused.get_or_create(&RefusalLabels {
                reason: failure.as_str().to_owned(),
            });
        }
        for &reason in DisconnectReason::ALL {
            let _ = self.disconnects.get_or_create(&DisconnectLabels { reason });
        }
        for &kind in InKind::ALL {
            let _ = self.messages_in.get_or_create(&InKindLabels { kind });
        }
        for &kind in OutKind::ALL {
            let _ = self.messages_out.get_or_create(&OutKindLabels { kind });
        }
        for &action in AclAction::ALL {
            let _ = self.acl_denials.get_or_create(&AclLabels { action });
        }
        for &reason in AuthFailure::ALL {
            for &via in AuthVia::ALL {
                let _ = self
                    .auth_failures
                    .get_or_create(&AuthLabels { reason, via });
            }
        }
        for &limit in Limit::ALL {
            let _ = self.rate_limited.get_or_create(&LimitLabels { limit });
        }
        for &refusal in security::Refusal::ALL {
            let _ = self
                .security_refusals
                .get_or_create(&security::RefusalLabels { refusal });
        }
    }

    /// Counts a refusal by one of the defences against strangers and floods.
    pub fn defended(&self, refusal: security::Refusal) {
        self.security_refusals
            .get_or_create(&security::RefusalLabels { refusal })
            .inc();
    }

    /// Adds a source of values read at scrape time (see [`live`]).
    pub fn register_collector(&mut self, collector: Box<dyn Collector>) {
        self.registry.register_collector(collector);
    }

    /// Counts an accepted CONNECT.
    pub fn connected(&self, transport: TransportKind) {
        self.connects
            .get_or_create(&TransportLabels { transport })
            .inc();
    }

    /// Counts a CONNECT refused with `code`.
    pub fn refused(&self, code: ConnectReturnCode) {
        self.connects_refused
            .get_or_create(&RefusalLabels {
                reason: connack_reason(code),
            })
            .inc();
    }

    /// Counts a handshake that failed before any CONNACK.
    pub fn handshake_failed(&self, failure: HandshakeFailure) {
        self.connects_refused
            .get_or_create(&RefusalLabels {
                reason: failure.as_str().to_owned(),
            })
            .inc();
    }

    /// Counts an ended connection.
    pub fn disconnected(&self, reason: DisconnectReason) {
        self.disconnects
            .get_or_create(&DisconnectLabels { reason })
            .inc();
    }

    /// Counts an accepted inbound PUBLISH.
    pub fn message_in(&self, kind: InKind) {
        self.messages_in.get_or_create(&InKindLabels { kind }).inc();
    }

    /// Counts an outbound PUBLISH; chat messages also count as delivered.
    pub fn message_out(&self, kind: OutKind) {
        self.messages_out
            .get_or_create(&OutKindLabels { kind })
            .inc();
        if kind == OutKind::ChatMessage {
            self.chat_messages_delivered.inc();
        }
    }

    /// Counts an ACL denial.
    pub fn acl_denied(&self, action: AclAction) {
        self.acl_denials.get_or_create(&AclLabels { action }).inc();
    }

    /// Counts refused credentials.
    pub fn auth_failed(&self, reason: AuthFailure, via: AuthVia) {
        self.auth_failures
            .get_or_create(&AuthLabels { reason, via })
            .inc();
    }

    /// Counts a refusal by a rate limit.
    pub fn limited(&self, limit: Limit) {
        self.rate_limited
            .get_or_create(&LimitLabels { limit })
            .inc();
    }

    /// Records how long a chat send took to be acknowledged.
    pub fn chat_send_took(&self, elapsed: Duration) {
        self.chat_send_seconds.observe(elapsed.as_secs_f64());
    }

    /// The whole exposition in the OpenMetrics text format ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail; collectors report their own
        // failures as fmt errors, which would only truncate the output.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        out
    }
}

/// Buckets from 0.25 ms to about 8 s, doubling.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.00025, 2.0, 16))
}

/// The `reason` label of a CONNACK code: its name in snake case
/// (`BadUserNamePassword` becomes `bad_user_name_password`).
pub fn connack_reason(code: ConnectReturnCode) -> String {
    let name = format!("{code:?}");
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connack_codes_become_snake_case_reasons() {
        assert_eq!(
            connack_reason(ConnectReturnCode::BadUserNamePassword),
            "bad_user_name_password"
        );
        assert_eq!(
            connack_reason(ConnectReturnCode::ConnectionRateExceeded),
            "connection_rate_exceeded"
        );
    }

    #[test]
    fn fresh_registry_exposes_every_known_series() {
        let metrics = Metrics::new();
        let text = metrics.encode();
        assert!(text.ends_with("# EOF\n"), "{text}");
        for line in [
            "parley_connects_total{transport=\"websocket\"} 0",
            "parley_connects_refused_total{reason=\"connection_rate_exceeded\"} 0",
            "parley_disconnects_total{reason=\"kicked\"} 0",
            "parley_messages_in_total{kind=\"chat_send\"} 0",
            "parley_messages_out_total{kind=\"chat_message\"} 0",
            "parley_auth_failures_total{reason=\"disabled\",via=\"mqtt\"} 0",
            "parley_rate_limited_total{limit=\"publishes_per_user\"} 0",
            "parley_chat_messages_stored_total 0",
            "parley_chat_send_duration_seconds_count 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }

    #[test]
    fn counting_moves_the_exported_values() {
        let metrics = Metrics::new();
        metrics.message_out(OutKind::ChatMessage);
        metrics.message_out(OutKind::ChatMessage);
        metrics.message_out(OutKind::ChatReceipt);
        metrics.refused(ConnectReturnCode::BadUserNamePassword);
        metrics.chat_send_took(Duration::from_millis(3));
        let text = metrics.encode();
        for line in [
            "parley_messages_out_total{kind=\"chat_message\"} 2",
            "parley_chat_messages_delivered_total 2",
            "parley_connects_refused_total{reason=\"bad_user_name_password\"} 1",
            "parley_chat_send_duration_seconds_count 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }
}
