//! What every listener shares against slow and greedy clients: a cap on the
//! connections one source address (IPv6 by /64) holds open at once
//! ([`AddressCaps`]), and the `[listeners]` timeouts (applied by the HTTP
//! server in [`crate::http::serve`] and by the MQTT accept loops); and the
//! names of the transports connections arrive on ([`TransportKind`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::address_key::limit_key;
use crate::config::ListenersConfig;

/// The transport a connection arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportKind {
    /// Plain TCP.
    Tcp,
    /// TLS over TCP.
    Tls,
    /// WebSocket.
    WebSocket,
}

impl TransportKind {
    /// Every transport.
    pub const ALL: &'static [TransportKind] = &[
        TransportKind::Tcp,
        TransportKind::Tls,
        TransportKind::WebSocket,
    ];

    /// Its name in the admin API and in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            TransportKind::Tcp => "tcp",
            TransportKind::Tls => "tls",
            TransportKind::WebSocket => "websocket",
        }
    }
}

/// Open connections per source address, capped.
#[derive(Debug, Clone)]
pub struct AddressCaps {
    max: usize,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One open connection, counted against its address until dropped.
#[derive(Debug)]
pub struct AddressSlot {
    key: IpAddr,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl AddressCaps {
    /// At most `max` connections per address (0: no cap, only counting).
    pub fn new(max: usize) -> AddressCaps {
        AddressCaps {
            max,
            open: Arc::default(),
        }
    }

    /// A slot for a new connection from `peer`; `None` if its address holds
    /// the most connections allowed already.
    pub fn admit(&self, peer: IpAddr) -> Option<AddressSlot> {
        let key = limit_key(peer);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(key).or_insert(0);
        if self.max > 0 && *count >= self.max {
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            key,
            open: self.open.clone(),
        })
    }

    /// Connections open from `peer`'s address.
    pub fn open_from(&self, peer: IpAddr) -> usize {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.get(&limit_key(peer)).copied().unwrap_or(0)
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// The MQTT listeners' share of `[listeners]`.
#[derive(Debug, Clone)]
pub struct MqttListenerLimits {
    /// Open MQTT connections per address.
    pub caps: AddressCaps,
    /// Time to complete the WebSocket upgrade.
    pub ws_upgrade_timeout: Duration,
    /// Time to complete the TLS handshake.
    pub tls_handshake_timeout: Duration,
}

impl MqttListenerLimits {
    /// The limits `config` sets.
    pub fn new(config: &ListenersConfig) -> MqttListenerLimits {
        MqttListenerLimits {
            caps: AddressCaps::new(config.mqtt_max_connections_per_address),
            ws_upgrade_timeout: Duration::from_millis(config.ws_upgrade_timeout_ms),
            tls_handshake_timeout: Duration::from_millis(config.tls_handshake_timeout_ms),
        }
    }
}

impl Default for MqttListenerLimits {
    fn default() -> Self {
        MqttListenerLimits::new(&ListenersConfig::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_count_per_address_and_free_slots_on_drop() {
        let caps = AddressCaps::new(2);
        let a: IpAddr = [10, 0, 0, 1].into();
        let first = caps.admit(a).unwrap();
        let _second = caps.admit(a).unwrap();
        assert!(caps.admit(a).is_none());
        assert!(caps.admit([10, 0, 0, 2].into()).is_some());
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        let _v6a = caps.admit(v6).unwrap();
        let _v6b = caps.admit("2001:db8::2".parse().unwrap()).unwrap();
        assert!(
            caps.admit("2001:db8::3".parse().unwrap()).is_none(),
            "same /64"
        );
        drop(first);
        assert_eq!(caps.open_from(a), 1);
        assert!(caps.admit(a).is_some());
        assert!(AddressCaps::new(0).admit(a).is_some(), "0 = no cap");
    }
}
