//! Per-user rate limits for messages, typing indicators and requests, using
//! chat-core's token buckets, with counts of what they refused.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use chat_core::rate::TokenBucket;

use crate::config::ChatConfig;

/// Token buckets by user, one map per kind of traffic.
pub struct RateLimits {
    started: Instant,
    messages: Mutex<HashMap<String, TokenBucket>>,
    typing: Mutex<HashMap<String, TokenBucket>>,
    requests: Mutex<HashMap<String, TokenBucket>>,
    message_rate: (f64, u32),
    typing_rate: (f64, u32),
    request_rate: (f64, u32),
    refused_messages: AtomicU64,
    refused_typing: AtomicU64,
    refused_requests: AtomicU64,
}

/// How many chat publishes the per-user limits refused since the node started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimited {
    /// Messages answered with `RATE_LIMITED`.
    pub messages: u64,
    /// Typing indicators dropped.
    pub typing: u64,
    /// Requests answered with `RATE_LIMITED`.
    pub requests: u64,
}

impl RateLimits {
    /// Limits as configured.
    pub fn new(config: &ChatConfig) -> RateLimits {
        RateLimits {
            started: Instant::now(),
            messages: Mutex::default(),
            typing: Mutex::default(),
            requests: Mutex::default(),
            message_rate: (config.messages_per_sec, config.message_burst),
            typing_rate: (config.typing_per_sec, config.typing_burst),
            request_rate: (config.requests_per_sec, config.request_burst),
            refused_messages: AtomicU64::new(0),
            refused_typing: AtomicU64::new(0),
            refused_requests: AtomicU64::new(0),
        }
    }

    /// Takes a message token for `user`.
    pub fn message(&self, user: &str) -> bool {
        let taken = self.take(&self.messages, user, self.message_rate);
        if !taken {
            self.refused_messages.fetch_add(1, Ordering::Relaxed);
        }
        taken
    }

    /// Takes a typing token for `user`.
    pub fn typing(&self, user: &str) -> bool {
        let taken = self.take(&self.typing, user, self.typing_rate);
        if !taken {
            self.refused_typing.fetch_add(1, Ordering::Relaxed);
        }
        taken
    }

    /// Takes a request token for `user`.
    pub fn request(&self, user: &str) -> bool {
        let taken = self.take(&self.requests, user, self.request_rate);
        if !taken {
            self.refused_requests.fetch_add(1, Ordering::Relaxed);
        }
        taken
    }

    /// What the limits refused so far.
    pub fn refused(&self) -> RateLimited {
        RateLimited {
            messages: self.refused_messages.load(Ordering::Relaxed),
            typing: self.refused_typing.load(Ordering::Relaxed),
            requests: self.refused_requests.load(Ordering::Relaxed),
        }
    }

    fn take(
        &self,
        map: &Mutex<HashMap<String, TokenBucket>>,
        user: &str,
        (rate, burst): (f64, u32),
    ) -> bool {
        let now = self.started.elapsed().as_millis() as u64;
        let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(user.to_owned())
            .or_insert_with(|| TokenBucket::new(rate, burst, now))
            .try_take(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_counted_by_kind() {
        let config = ChatConfig {
            messages_per_sec: 0.001,
            message_burst: 1,
            typing_per_sec: 0.001,
            typing_burst: 2,
            requests_per_sec: 0.001,
            request_burst: 3,
            ..ChatConfig::default()
        };
        let limits = RateLimits::new(&config);
        assert!(limits.message("alice"));
        assert!(!limits.message("alice"));
        assert!(limits.message("bob"), "buckets are per user");
        assert!(limits.typing("alice") && limits.typing("alice"));
        assert!(!limits.typing("alice"));
        assert!(!limits.typing("alice"));
        assert!(
            (0..3).all(|_| limits.request("alice")),
            "a burst of requests"
        );
        assert!(!limits.request("alice"));
        assert!(limits.request("bob"));
        assert_eq!(
            limits.refused(),
            RateLimited {
                messages: 1,
                typing: 2,
                requests: 1
            }
        );
    }
}
