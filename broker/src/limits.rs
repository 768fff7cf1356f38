//! Rate limits outside the chat pipeline (`[limits]`), on chat-core's token
//! buckets: new connections per source address, plain publishes per user
//! (both shared by all connections) and inbound bytes per connection.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chat_core::ids::UserId;
use chat_core::rate::TokenBucket;

use crate::address_key::limit_key;
use crate::config::{LimitsConfig, ListenersConfig};
use crate::listeners::MqttListenerLimits;

/// Below this many keys a limiter never sweeps idle buckets.
const SWEEP_FLOOR: usize = 1024;

/// Token buckets by key (address, user), all with the same rate and burst.
///
/// Buckets that have refilled completely are forgotten from time to time
/// (when the map has doubled since the last sweep), so a stream of distinct
/// keys cannot grow it without bound.
pub struct KeyedLimiter<K> {
    rate_per_sec: f64,
    burst: u32,
    started: Instant,
    state: Mutex<Buckets<K>>,
}

struct Buckets<K> {
    map: HashMap<K, TokenBucket>,
    sweep_at: usize,
}

impl<K: Hash + Eq + Clone> KeyedLimiter<K> {
    /// A limiter of `rate_per_sec` with bursts of `burst`; `None` when the rate is 0 (off).
    pub fn new(rate_per_sec: f64, burst: u32) -> Option<KeyedLimiter<K>> {
        (rate_per_sec > 0.0).then(|| KeyedLimiter {
            rate_per_sec,
            burst,
            started: Instant::now(),
            state: Mutex::new(Buckets {
                map: HashMap::new(),
                sweep_at: SWEEP_FLOOR,
            }),
        })
    }

    /// Takes a token for `key`; `false` if it has none left.
    pub fn allow(&self, key: &K) -> bool {
        self.allow_at(key, self.started.elapsed().as_millis() as u64)
    }

    /// [`KeyedLimiter::allow`] at `now` ms after the limiter was made.
    fn allow_at(&self, key: &K, now: u64) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.map.len() >= state.sweep_at {
            state.map.retain(|_, bucket| !bucket.is_full(now));
            state.sweep_at = (state.map.len() * 2).max(SWEEP_FLOOR);
        }
        if let Some(bucket) = state.map.get_mut(key) {
            return bucket.try_take(now);
        }
        let mut bucket = TokenBucket::new(self.rate_per_sec, self.burst, now);
        let allowed = bucket.try_take(now);
        state.map.insert(key.clone(), bucket);
        allowed
    }

    /// How many keys have a bucket.
    pub fn tracked(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map
            .len()
    }
}

/// The bytes a single connection may still send.
pub struct ByteBudget {
    bucket: TokenBucket,
    started: Instant,
}

impl ByteBudget {
    /// Spends `n` bytes; `false` if the connection is over its rate.
    pub fn spend(&mut self, n: usize) -> bool {
        let now = self.started.elapsed().as_millis() as u64;
        self.bucket.try_take_n(n as u64, now)
    }
}

/// The configured limits of a node.
pub struct Limits {
    listeners: MqttListenerLimits,
    connects: Option<KeyedLimiter<IpAddr>>,
    publishes: Option<Arc<KeyedLimiter<UserId>>>,
    bytes: Option<(u64, u64)>,
}

impl Limits {
    /// Limits as configured (rates of 0 are off).
    pub fn new(config: &LimitsConfig) -> Limits {
        Limits {
            listeners: MqttListenerLimits::default(),
            connects: KeyedLimiter::new(
                config.connects_per_sec_per_ip,
                config.connect_burst_per_ip,
            ),
            publishes: KeyedLimiter::new(
                config.publishes_per_sec_per_user,
                config.publish_burst_per_user,
            )
            .map(Arc::new),
            bytes: (config.bytes_per_sec_per_connection > 0)
                .then_some((config.bytes_per_sec_per_connection, config.bytes_burst)),
        }
    }

    /// With the MQTT listeners' per-address cap and handshake timeouts of `config`.
    pub fn with_listeners(mut self, config: &ListenersConfig) -> Limits {
        self.listeners = MqttListenerLimits::new(config);
        self
    }

    /// The MQTT listeners' per-address cap and handshake timeouts.
    pub fn listeners(&self) -> &MqttListenerLimits {
        &self.listeners
    }

    /// Whether a new connection from `peer` is within its address's rate.
    pub fn allow_connect(&self, peer: IpAddr) -> bool {
        self.connects
            .as_ref()
            .is_none_or(|limiter| limiter.allow(&limit_key(peer)))
    }

    /// The shared per-user publish limiter, if that limit is on.
    pub fn publishes(&self) -> Option<Arc<KeyedLimiter<UserId>>> {
        self.publishes.clone()
    }

    /// A fresh byte budget for a new connection, if that limit is on.
    pub fn byte_budget(&self) -> Option<ByteBudget> {
        self.bytes.map(|(rate, burst)| ByteBudget {
            bucket: TokenBucket::new(rate as f64, burst.min(u64::from(u32::MAX)) as u32, 0),
            started: Instant::now(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_when_the_rate_is_zero() {
        let limits = Limits::new(&LimitsConfig::default());
        for _ in 0..1000 {
            assert!(limits.allow_connect([10, 0, 0, 1].into()));
        }
        assert!(limits.publishes().is_none());
        assert!(limits.byte_budget().is_none());
    }

    #[test]
    fn connects_are_limited_per_address_and_ipv6_per_prefix() {
        let limits = Limits::new(&LimitsConfig {
            connects_per_sec_per_ip: 0.001,
            connect_burst_per_ip: 2,
            ..LimitsConfig::default()
        });
        let a: IpAddr = [10, 0, 0, 1].into();
        assert!(limits.allow_connect(a) && limits.allow_connect(a));
        assert!(!limits.allow_connect(a));
        assert!(limits.allow_connect([10, 0, 0, 2].into()), "other address");
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert!(
            !limits.allow_connect(mapped),
            "IPv4-mapped is the same address"
        );
        let v6a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let v6b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert!(limits.allow_connect(v6a) && limits.allow_connect(v6b));
        assert!(!limits.allow_connect(v6a), "same /64");
        assert!(limits.allow_connect("2001:db8:1:3::1".parse().unwrap()));
    }

    #[test]
    fn idle_buckets_are_swept() {
        let limiter = KeyedLimiter::<usize>::new(10.0, 1).unwrap();
        for key in 0..SWEEP_FLOOR - 1 {
            assert!(limiter.allow_at(&key, 0));
        }
        assert!(!limiter.allow_at(&0, 0), "key 0 spent its token");
        assert_eq!(limiter.tracked(), SWEEP_FLOOR - 1);
        // A second later every bucket is full again; the next new key sweeps them.
        assert!(limiter.allow_at(&SWEEP_FLOOR, 1_000));
        assert!(limiter.allow_at(&(SWEEP_FLOOR + 1), 1_000));
        assert_eq!(limiter.tracked(), 2, "only the keys used since the sweep");
    }

    #[test]
    fn byte_budget_spends_until_the_burst_is_gone() {
        let limits = Limits::new(&LimitsConfig {
            bytes_per_sec_per_connection: 1,
            bytes_burst: 1000,
            ..LimitsConfig::default()
        });
        let mut budget = limits.byte_budget().unwrap();
        assert!(budget.spend(600));
        assert!(budget.spend(400));
        assert!(!budget.spend(10));
    }
}
