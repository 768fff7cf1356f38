//! Configuration of the defences against strangers and floods: log-in
//! throttling (`[login]`), sign-up policy (`[accounts]`), HTTP listener
//! timeouts and caps (in `[http]`) and who may read `/metrics`
//! (`[metrics]`). `docs/security.md` lists every key, its default and the
//! metric that counts its refusals.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::Listen;

/// Log-in throttling (`[login]`): exponential backoff after failed
/// passwords, per account and per source address (IPv6 by /64).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LoginConfig {
    /// Failed passwords for one account before its backoff starts (0 = the
    /// account is never throttled).
    pub free_failures_per_account: u32,
    /// Failed passwords from one address before its backoff starts (0 = the
    /// address is never throttled).
    pub free_failures_per_address: u32,
    /// The first backoff, in milliseconds; each further failure doubles it.
    pub backoff_base_ms: u64,
    /// The longest backoff of an account, in milliseconds. Kept short: an
    /// attacker can keep an account throttled, but its owner still gets in
    /// from an address it logged in from recently.
    pub account_backoff_max_ms: u64,
    /// The longest backoff of an address, in milliseconds.
    pub address_backoff_max_ms: u64,
    /// Seconds after its last failure that an account's or address's
    /// failures are forgotten.
    pub forget_after_secs: u64,
    /// Seconds an address stays trusted for an account after a successful
    /// log-in from it: from there the account's backoff does not apply.
    pub trusted_address_secs: u64,
    /// Most accounts, addresses and trusted pairs tracked (each); past it new
    /// ones are not tracked (counted as `throttle_table_full`).
    pub max_tracked: usize,
    /// Longest wait before a throttled MQTT CONNECT is refused, in
    /// milliseconds (the rest of the backoff, at most this).
    pub mqtt_refusal_delay_max_ms: u64,
    /// Password hashes that may wait for a CPU at once; more are refused at
    /// once (HTTP 503 with `Retry-After`, CONNACK "server unavailable").
    pub max_queued_hashes: usize,
}

impl Default for LoginConfig {
    fn default() -> Self {
        LoginConfig {
            free_failures_per_account: 5,
            free_failures_per_address: 10,
            backoff_base_ms: 1_000,
            account_backoff_max_ms: 60_000,
            address_backoff_max_ms: 900_000,
            forget_after_secs: 3_600,
            trusted_address_secs: 30 * 24 * 3_600,
            max_tracked: 100_000,
            mqtt_refusal_delay_max_ms: 5_000,
            max_queued_hashes: 64,
        }
    }
}

/// Who may sign up (`[accounts] signup`).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SignUpMode {
    /// Anyone may sign up (within the per-address rate).
    #[default]
    Open,
    /// Only with an invite token from the admin API.
    Invite,
    /// Nobody; accounts are made by an administrator.
    Closed,
}

/// Account sign-up (`[accounts]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AccountsConfig {
    /// `open`, `invite` or `closed`.
    pub signup: SignUpMode,
    /// Sustained sign-ups per hour from one source address (IPv6 by /64;
    /// 0 = unlimited). Over it: 429 with `Retry-After`.
    pub signups_per_hour_per_address: f64,
    /// Sign-ups one address may make in a burst.
    pub signup_burst_per_address: u32,
    /// Lifetime of an invite token issued by the admin API, in seconds.
    pub invite_ttl_secs: u64,
}

impl Default for AccountsConfig {
    fn default() -> Self {
        AccountsConfig {
            signup: SignUpMode::Open,
            signups_per_hour_per_address: 20.0,
            signup_burst_per_address: 5,
            invite_ttl_secs: 7 * 24 * 3_600,
        }
    }
}

/// Timeouts and per-address connection caps of every listener (`[listeners]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ListenersConfig {
    /// Time an HTTP client has to send a request's complete header, in
    /// milliseconds; also how long an idle keep-alive connection waits for
    /// the next request.
    pub http_header_timeout_ms: u64,
    /// Time an HTTP client has to send a request's body and get its answer,
    /// in milliseconds; over it: 408.
    pub http_request_timeout_ms: u64,
    /// Open HTTP connections one source address may hold (IPv6 by /64;
    /// 0 = no cap); past it new ones are closed at once.
    pub http_max_connections_per_address: usize,
    /// Time an MQTT/WebSocket client has to complete the HTTP upgrade, in milliseconds.
    pub ws_upgrade_timeout_ms: u64,
    /// Time an MQTT/TLS client has to complete the TLS handshake, in milliseconds.
    pub tls_handshake_timeout_ms: u64,
    /// Open MQTT connections (TCP, TLS and WebSocket together) one source
    /// address may hold (IPv6 by /64; 0 = no cap); past it new ones are closed at once.
    pub mqtt_max_connections_per_address: usize,
    /// Descriptors (connections, files) the process's descriptor table is
    /// sized for at start-up, clamped to the open-files limit; 0 = let the
    /// kernel grow it on demand (each growth stalls every accept for an RCU
    /// grace period; 8 bytes per slot).
    pub reserved_descriptors: usize,
}

impl Default for ListenersConfig {
    fn default() -> Self {
        ListenersConfig {
            http_header_timeout_ms: 10_000,
            http_request_timeout_ms: 30_000,
            http_max_connections_per_address: 64,
            ws_upgrade_timeout_ms: 10_000,
            tls_handshake_timeout_ms: 10_000,
            mqtt_max_connections_per_address: 1_000,
            reserved_descriptors: 65_536,
        }
    }
}

/// Who may read `GET /metrics` (`[metrics]`).
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Bearer token `/metrics` requires (at least 32 bytes); unset: no token.
    pub token: Option<String>,
    /// A separate listener serving only `/metrics` (e.g. on an internal
    /// interface); when set, the public HTTP API no longer serves it.
    pub listen: Listen,
}

impl fmt::Debug for MetricsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsConfig")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("listen", &self.listen)
            .finish()
    }
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            token: None,
            listen: Listen::off(),
        }
    }
}

impl super::Config {
    /// Backoffs need a base and a cap, rates must be finite, timeouts positive
    /// and the metrics token long enough.
    pub(super) fn validate_security(&self) -> Result<(), super::ConfigError> {
        let invalid = |m: String| Err(super::ConfigError::Invalid(m));
        let login = &self.login;
        if login.backoff_base_ms == 0
            || login.account_backoff_max_ms < login.backoff_base_ms
            || login.address_backoff_max_ms < login.backoff_base_ms
        {
            return invalid(
                "login.backoff_base_ms must be positive and at most both backoff maxima".into(),
            );
        }
        if login.max_tracked == 0 || login.max_queued_hashes == 0 {
            return invalid(
                "login.max_tracked and login.max_queued_hashes must be positive".into(),
            );
        }
        let accounts = &self.accounts;
        let rate = accounts.signups_per_hour_per_address;
        if !rate.is_finite() || rate < 0.0 {
            return invalid(
                "accounts.signups_per_hour_per_address must be a number >= 0 (0 = unlimited)"
                    .into(),
            );
        }
        if rate > 0.0 && accounts.signup_burst_per_address == 0 {
            return invalid("accounts.signup_burst_per_address must be at least 1".into());
        }
        if accounts.invite_ttl_secs == 0 {
            return invalid("accounts.invite_ttl_secs must be positive".into());
        }
        let l = &self.listeners;
        for (key, value) in [
            ("http_header_timeout_ms", l.http_header_timeout_ms),
            ("http_request_timeout_ms", l.http_request_timeout_ms),
            ("ws_upgrade_timeout_ms", l.ws_upgrade_timeout_ms),
            ("tls_handshake_timeout_ms", l.tls_handshake_timeout_ms),
        ] {
            if value == 0 {
                return invalid(format!("listeners.{key} must be positive"));
            }
        }
        if self.metrics.listen.0.is_some() && self.http.listen.0.is_none() {
            return invalid(
                "metrics.listen is served by the HTTP side: it needs http.listen on".into(),
            );
        }
        if let Some(token) = &self.metrics.token {
            if token.len() < 32 {
                return invalid("metrics.token must be at least 32 bytes".into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;

    #[test]
    fn security_keys_are_checked() {
        for (toml, why) in [
            ("[login]\nbackoff_base_ms = 0", "login.backoff_base_ms"),
            ("[login]\nmax_queued_hashes = 0", "login.max_tracked"),
            (
                "[accounts]\nsignups_per_hour_per_address = -1.0",
                "accounts.signups_per_hour_per_address",
            ),
            (
                "[listeners]\nhttp_header_timeout_ms = 0",
                "listeners.http_header_timeout_ms",
            ),
            ("[metrics]\ntoken = \"short\"", "metrics.token"),
            (
                "[http]\nlisten = \"off\"\n[metrics]\nlisten = \"127.0.0.1:9100\"",
                "metrics.listen",
            ),
            ("[accounts]\nsignup = \"maybe\"", "signup"),
        ] {
            let error = Config::from_toml_str(toml).unwrap_err().to_string();
            assert!(error.contains(why), "{toml}: {error}");
        }
        let config = Config::from_toml_str(
            "[accounts]\nsignup = \"invite\"\n[metrics]\nlisten = \"127.0.0.1:9100\"",
        )
        .unwrap();
        assert_eq!(config.accounts.signup, super::SignUpMode::Invite);
    }
}
