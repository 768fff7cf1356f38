//! What the defences against strangers and floods refused, for the
//! `refusal` label of `parley_security_refusals_total` (see `docs/security.md`).

use prometheus_client::encoding::EncodeLabelSet;

use super::label_values;

label_values! {
    /// Which defence refused something.
    Refusal {
        /// A log-in on `POST /v1/tokens` refused by the log-in backoff (429).
        LoginThrottledHttp => "login_throttled_http",
        /// An MQTT CONNECT refused by the log-in backoff (after a delay).
        LoginThrottledMqtt => "login_throttled_mqtt",
        /// A password check refused because `login.max_queued_hashes` were waiting.
        HashingBusy => "hashing_busy",
        /// A failure not tracked because the throttle's tables were full.
        ThrottleTableFull => "throttle_table_full",
        /// A sign-up refused because `accounts.signup = "closed"`.
        SignUpClosed => "signup_closed",
        /// A sign-up without a valid invite while `accounts.signup = "invite"`.
        SignUpInvite => "signup_invite",
        /// A sign-up over `accounts.signups_per_hour_per_address` (429).
        SignUpRate => "signup_rate",
        /// An HTTP request whose body or answer took longer than
        /// `listeners.http_request_timeout_ms` (408).
        HttpRequestTimeout => "http_request_timeout",
        /// An HTTP connection closed because a request's header (or, on an
        /// idle keep-alive connection, the next request) did not arrive within
        /// `listeners.http_header_timeout_ms`.
        HttpHeaderTimeout => "http_header_timeout",
        /// An HTTP connection over `listeners.http_max_connections_per_address`.
        HttpConnectionsPerAddress => "http_connections_per_address",
        /// An MQTT connection over `listeners.mqtt_max_connections_per_address`.
        MqttConnectionsPerAddress => "mqtt_connections_per_address",
        /// A WebSocket upgrade not completed within `listeners.ws_upgrade_timeout_ms`.
        WsUpgradeTimeout => "ws_upgrade_timeout",
        /// A TLS handshake not completed within `listeners.tls_handshake_timeout_ms`.
        TlsHandshakeTimeout => "tls_handshake_timeout",
        /// `GET /metrics` without the metrics token (401).
        MetricsUnauthorized => "metrics_unauthorized",
        /// A key bundle fetch over the per-target rate (429).
        PrekeyTargetRate => "prekey_target_rate",
        /// A key bundle served without a one-time prekey (the device had none left).
        PrekeyFallback => "prekey_fallback",
    }
}

/// Labels `{refusal}` of `parley_security_refusals_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RefusalLabels {
    /// Which defence.
    pub refusal: Refusal,
}
