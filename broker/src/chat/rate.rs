//! Per-user rate limits for messages, typing indicators and requests, using
//! chat-core's token buckets, with counts of what they refused.
//!
//! A message over the limit is held rather than refused when the user's
//! bucket has its next token within `[chat] rate_limit_max_wait_ms`: the
//! token is taken ahead of the refill and the sender waits until it is due
//! ([`MessagePermit::Held`]). Requests over the limit are refused at once,
//! typing indicators dropped at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

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
    /// Longest a message may be held for its token, in milliseconds.
    message_max_wait_ms: u64,
    held_messages: AtomicU64,
    refused_messages: AtomicU64,
    refused_typing: AtomicU64,
    refused_requests: AtomicU64,
}

/// How many chat publishes the per-user limits refused since the node started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimited {
    /// Messages answered with `RATE_LIMITED`.
    pub messages: u64,
    /// Messages over the limit held until their token was due (then handled
    /// as usual): delayed, not refused.
    pub messages_held: u64,
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
            message_max_wait_ms: config.rate_limit_max_wait_ms,
            held_messages: AtomicU64::new(0),
            refused_messages: AtomicU64::new(0),
            refused_typing: AtomicU64::new(0),
            refused_requests: AtomicU64::new(0),
        }
    }

    /// Takes a message token for `user`: one there now, or one due within
    /// `[chat] rate_limit_max_wait_ms` (the message is then held until it is
    /// due). Holds and refusals are counted.
    pub fn message(&self, user: &str) -> MessagePermit {
        let now = self.now_ms();
        let (rate, burst) = self.message_rate;
        let reserved = {
            let mut map = self.messages.lock().unwrap_or_else(|e| e.into_inner());
            map.entry(user.to_owned())
                .or_insert_with(|| TokenBucket::new(rate, burst, now))
                .reserve(now, self.message_max_wait_ms)
        };
        match reserved {
            Ok(0) => MessagePermit::Now,
            Ok(wait) => {
                self.held_messages.fetch_add(1, Ordering::Relaxed);
                MessagePermit::Held(Duration::from_millis(wait))
            }
            Err(_) => {
                self.refused_messages.fetch_add(1, Ordering::Relaxed);
                MessagePermit::Refused
            }
        }
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
            messages_held: self.held_messages.load(Ordering::Relaxed),
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
        let now = self.now_ms();
        let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(user.to_owned())
            .or_insert_with(|| TokenBucket::new(rate, burst, now))
            .try_take(now)
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
}

/// Whether a message may go ahead under its sender's rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessagePermit {
    /// A token was there: go ahead.
    Now,
    /// Over the limit, within the bound: the token is taken; go ahead once
    /// this long has passed.
    Held(Duration),
    /// Over the limit past the bound: refuse it (`RATE_LIMITED`).
    Refused,
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
        assert_eq!(limits.message("alice"), MessagePermit::Now);
        assert_eq!(limits.message("alice"), MessagePermit::Refused);
        assert_eq!(
            limits.message("bob"),
            MessagePermit::Now,
            "buckets are per user"
        );
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
                messages_held: 0,
                typing: 2,
                requests: 1
            }
        );
    }

    #[test]
    fn messages_within_the_wait_bound_are_held_and_counted() {
        // 1 message per 1,000 s: the next token is always far away, so the
        // outcome does not depend on how fast the test runs.
        let config = ChatConfig {
            messages_per_sec: 0.001,
            message_burst: 1,
            rate_limit_max_wait_ms: 2_000_000,
            ..ChatConfig::default()
        };
        let limits = RateLimits::new(&config);
        assert_eq!(limits.message("alice"), MessagePermit::Now);
        let MessagePermit::Held(first) = limits.message("alice") else {
            panic!("the second message is held");
        };
        assert!(first > Duration::from_secs(900), "{first:?}");
        let MessagePermit::Held(second) = limits.message("alice") else {
            panic!("the third message is held too");
        };
        assert!(second > first, "it waits behind the second");
        assert_eq!(
            limits.message("alice"),
            MessagePermit::Refused,
            "3,000 s away is past the bound"
        );
        assert_eq!(limits.message("bob"), MessagePermit::Now);
        let counted = limits.refused();
        assert_eq!((counted.messages_held, counted.messages), (2, 1));
    }

    #[test]
    fn a_wait_bound_of_zero_refuses_at_once() {
        let config = ChatConfig {
            messages_per_sec: 0.001,
            message_burst: 1,
            rate_limit_max_wait_ms: 0,
            ..ChatConfig::default()
        };
        let limits = RateLimits::new(&config);
        assert_eq!(limits.message("alice"), MessagePermit::Now);
        assert_eq!(limits.message("alice"), MessagePermit::Refused);
        assert_eq!(limits.refused().messages_held, 0);
    }
}
