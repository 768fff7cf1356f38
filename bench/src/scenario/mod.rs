//! Load scenarios, each a plain async function returning a report:
//! [`conn::run`] (connection load), [`pubsub::run`] (message load on plain
//! topics, any broker) and [`chat::run`] (Parley's chat topics: durable
//! messages between users) and [`sessions::run`] (persistent sessions
//! queued for while offline, then resumed).
//!
//! A new scenario is one more module here that takes a [`Target`] plus its
//! own settings and returns its own report, and one more subcommand in
//! `cli.rs`/`app.rs`.

pub mod chat;
pub mod conn;
pub mod conn_trace;
pub mod plan;
pub mod pubsub;
pub mod sessions;
pub mod tracker;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::credentials::{Credentials, Login};
use crate::mqtt::MqttVersion;

/// The broker under test and how every client connects to it.
#[derive(Debug, Clone)]
pub struct Target {
    /// Broker host name or address.
    pub host: String,
    /// Broker MQTT port.
    pub port: u16,
    /// Protocol version.
    pub version: MqttVersion,
    /// Keep-alive interval.
    pub keepalive: Duration,
    /// Client ids start with this.
    pub client_id_prefix: String,
    /// Who the clients log in as.
    pub credentials: Credentials,
}

/// The broker's address could not be resolved.
#[derive(Debug, thiserror::Error)]
#[error("cannot resolve {address}: {reason}")]
pub struct ResolveError {
    /// The `host:port` that failed.
    pub address: String,
    /// Why.
    pub reason: String,
}

impl Target {
    /// `host:port`.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The MQTT client id of client `index` playing `role` in run `run`.
    pub fn client_id(&self, run: &RunId, role: &str, index: usize) -> String {
        format!("{}-{}-{role}{index}", self.client_id_prefix, run.0)
    }

    /// The login of client `index`.
    pub fn login(&self, index: usize) -> Option<Login> {
        self.credentials.login(index)
    }

    /// Resolves the broker address (first result, IPv4 preferred).
    pub async fn resolve(&self) -> Result<SocketAddr, ResolveError> {
        let fail = |reason: String| ResolveError {
            address: self.address(),
            reason,
        };
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|e| fail(e.to_string()))?
            .collect();
        addrs
            .iter()
            .find(|a| a.is_ipv4())
            .or(addrs.first())
            .copied()
            .ok_or_else(|| fail("no addresses".into()))
    }
}

/// A short token that keeps client ids and topics of concurrent runs apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunId(pub String);

impl RunId {
    /// A token from the process id, the current time and a per-process
    /// counter, so runs in one process never share a token.
    pub fn new() -> RunId {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos() ^ (d.as_secs() as u32));
        let mixed = nanos.rotate_left(13) ^ std::process::id().wrapping_mul(0x9E37_79B9);
        let count = NEXT.fetch_add(1, Ordering::Relaxed);
        RunId(format!("{:06x}{count:x}", mixed & 0xFF_FFFF))
    }
}

impl Default for RunId {
    fn default() -> Self {
        RunId::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_differ_within_a_process() {
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| RunId::new().0).collect();
        assert_eq!(ids.len(), 1000);
    }

    #[test]
    fn client_ids_and_logins_follow_the_client_index() {
        let target = Target {
            host: "127.0.0.1".into(),
            port: 1883,
            version: MqttVersion::V4,
            keepalive: Duration::from_secs(60),
            client_id_prefix: "pb".into(),
            credentials: Credentials::PerClient {
                prefix: "u".into(),
                password: "pw".into(),
            },
        };
        let run = RunId("abc".into());
        assert_eq!(target.client_id(&run, "sub", 3), "pb-abc-sub3");
        assert_eq!(target.login(3).map(|l| l.username), Some("u3".into()));
        assert_eq!(target.address(), "127.0.0.1:1883");
    }
}
