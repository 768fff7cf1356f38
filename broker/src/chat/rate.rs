//! Per-user rate limits for messages, typing indicators and requests, using
//! chat-core's token buckets, with counts of what they refused.
//!
//! A message over the limit is held rather than refused when the user's
//! bucket has its next token within `[chat] rate_limit_max_wait_ms`: the
//! token is taken ahead of the refill and the sender waits until it is due
//! ([`MessagePermit::Held`]). Requests over the limit are refused at once,
//! typing indicators dropped at once.
//!
//! In a cluster a user's budget is shared by the nodes their sessions are
//! on: with sessions on `k` nodes (as the session directory knows them),
//! each node's bucket refills at `rate / k` and holds `ceil(burst / k)`, so
//! together they allow the configured rate (see `docs/cluster.md`, "Rate
//! limits").

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use foldhash::HashMap;

use chat_core::rate::TokenBucket;

use super::UserNodes;
use crate::config::ChatConfig;

/// A user's bucket and the number of nodes it is a share for.
struct Share {
    bucket: TokenBucket,
    nodes: usize,
}

/// Token buckets by user, one map per kind of traffic.
pub struct RateLimits {
    started: Instant,
    messages: Mutex<HashMap<String, Share>>,
    typing: Mutex<HashMap<String, Share>>,
    requests: Mutex<HashMap<String, Share>>,
    /// Splits budgets between nodes; unset on a single node.
    share: OnceLock<Arc<dyn UserNodes>>,
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
            share: OnceLock::new(),
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

    /// Shares each user's budget between the nodes `share` reports their
    /// sessions on. Set once, at start-up; later calls are ignored.
    pub fn share_with(&self, share: Arc<dyn UserNodes>) {
        let _ = self.share.set(share);
    }

    /// Takes a message token for `user`: one there now, or one due within
    /// `[chat] rate_limit_max_wait_ms` (the message is then held until it is
    /// due). Holds and refusals are counted.
    pub fn message(&self, user: &str) -> MessagePermit {
        let max_wait = self.message_max_wait_ms;
        let reserved = self.with_bucket(&self.messages, user, self.message_rate, |b, now| {
            b.reserve(now, max_wait)
        });
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

    fn take(&self, map: &Mutex<HashMap<String, Share>>, user: &str, rate: (f64, u32)) -> bool {
        self.with_bucket(map, user, rate, |b, now| b.try_take(now))
    }

    /// Runs `f` on `user`'s bucket in `map`, sized for this node's share of
    /// the budget `(rate, burst)`.
    fn with_bucket<T>(
        &self,
        map: &Mutex<HashMap<String, Share>>,
        user: &str,
        (rate, burst): (f64, u32),
        f: impl FnOnce(&mut TokenBucket, u64) -> T,
    ) -> T {
        let now = self.started.elapsed().as_millis() as u64;
        let nodes = self.share.get().map_or(1, |s| s.nodes_of(user).max(1));
        let (node_rate, node_burst) = share_of(rate, burst, nodes);
        let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
        // Looked up before inserting, so a known user's id is not copied.
        match map.get_mut(user) {
            Some(share) => {
                if share.nodes != nodes {
                    share.bucket.set_limits(node_rate, node_burst, now);
                    share.nodes = nodes;
                }
                f(&mut share.bucket, now)
            }
            None => {
                let mut share = Share {
                    bucket: TokenBucket::new(node_rate, node_burst, now),
                    nodes,
                };
                let answer = f(&mut share.bucket, now);
                map.insert(user.to_owned(), share);
                answer
            }
        }
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

/// One node's part of a budget of `rate` per second and `burst` shared by
/// `nodes` nodes: the rate divided, the burst divided rounding up (at least 1).
fn share_of(rate: f64, burst: u32, nodes: usize) -> (f64, u32) {
    let nodes = u32::try_from(nodes.max(1)).unwrap_or(u32::MAX);
    (rate / f64::from(nodes), burst.div_ceil(nodes).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every user on a fixed number of nodes.
    struct Nodes(std::sync::atomic::AtomicUsize);

    impl UserNodes for Nodes {
        fn nodes_of(&self, _user: &str) -> usize {
            self.0.load(Ordering::Relaxed)
        }
    }

    #[test]
    fn a_budget_is_split_between_the_nodes_of_a_user() {
        let config = ChatConfig {
            messages_per_sec: 0.001,
            message_burst: 5,
            ..ChatConfig::default()
        };
        let limits = RateLimits::new(&config);
        let nodes = Arc::new(Nodes(1.into()));
        limits.share_with(nodes.clone());
        assert_eq!(
            limits.message("alice"),
            MessagePermit::Now,
            "alone on one node: the whole burst"
        );
        nodes.0.store(2, Ordering::Relaxed);
        let taken = (0..5)
            .filter(|_| limits.message("alice") == MessagePermit::Now)
            .count();
        assert_eq!(taken, 3, "on two nodes: what is left, clamped to 3 of 5");
        assert_eq!(share_of(10.0, 5, 2), (5.0, 3));
        assert_eq!(share_of(10.0, 1, 3).1, 1, "never a zero burst");
    }

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
