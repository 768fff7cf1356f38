//! Token-bucket rate limiting, pure: the caller passes the clock.

/// A token bucket: `rate` tokens per second, holding at most `burst`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate_per_ms: f64,
    burst: f64,
    tokens: f64,
    last_ms: u64,
}

impl TokenBucket {
    /// A full bucket refilling at `rate_per_sec` up to `burst` tokens.
    pub fn new(rate_per_sec: f64, burst: u32, now_ms: u64) -> TokenBucket {
        TokenBucket {
            rate_per_ms: rate_per_sec / 1000.0,
            burst: f64::from(burst),
            tokens: f64::from(burst),
            last_ms: now_ms,
        }
    }

    /// Takes one token at `now_ms` if one is available.
    pub fn try_take(&mut self, now_ms: u64) -> bool {
        self.try_take_n(1, now_ms)
    }

    /// Takes `n` tokens at `now_ms` if that many are available; takes none otherwise.
    pub fn try_take_n(&mut self, n: u64, now_ms: u64) -> bool {
        self.refill(now_ms);
        let n = n as f64;
        if self.tokens >= n {
            self.tokens -= n;
            true
        } else {
            false
        }
    }

    /// Whether the bucket has refilled completely by `now_ms` (it has been idle
    /// long enough that forgetting it changes nothing).
    pub fn is_full(&mut self, now_ms: u64) -> bool {
        self.refill(now_ms);
        self.tokens >= self.burst
    }

    /// Changes the refill rate and the capacity from `now_ms` on, keeping
    /// the tokens it holds up to the new capacity (a smaller share of a
    /// budget takes effect at once).
    pub fn set_limits(&mut self, rate_per_sec: f64, burst: u32, now_ms: u64) {
        self.refill(now_ms);
        self.rate_per_ms = rate_per_sec / 1000.0;
        self.burst = f64::from(burst);
        self.tokens = self.tokens.min(self.burst);
    }

    fn refill(&mut self, now_ms: u64) {
        let elapsed = now_ms.saturating_sub(self.last_ms) as f64;
        self.last_ms = self.last_ms.max(now_ms);
        self.tokens = (self.tokens + elapsed * self.rate_per_ms).min(self.burst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_smaller_share_takes_effect_at_once() {
        let mut b = TokenBucket::new(10.0, 4, 0);
        b.set_limits(5.0, 2, 0);
        assert!(b.try_take(0) && b.try_take(0));
        assert!(!b.try_take(0), "clamped to the new burst");
        assert!(!b.try_take(100), "half a token after 100 ms at 5/s");
        assert!(b.try_take(200));
    }

    #[test]
    fn burst_then_refill() {
        let mut b = TokenBucket::new(10.0, 3, 0);
        assert!(b.try_take(0) && b.try_take(0) && b.try_take(0));
        assert!(!b.try_take(0), "burst exhausted");
        assert!(!b.try_take(50), "half a token after 50 ms at 10/s");
        assert!(b.try_take(100), "one token after 100 ms");
        assert!(!b.try_take(100));
    }

    #[test]
    fn take_n_is_all_or_nothing() {
        let mut b = TokenBucket::new(1000.0, 1500, 0);
        assert!(b.try_take_n(1000, 0));
        assert!(!b.try_take_n(600, 0), "only 500 left");
        assert!(b.try_take_n(500, 0), "the refused take took nothing");
        assert!(!b.try_take_n(1, 0));
        assert!(b.try_take_n(100, 100), "100 tokens after 100 ms at 1000/s");
        assert!(!b.try_take_n(2000, 10_000), "never more than the burst");
    }

    #[test]
    fn full_again_after_idling() {
        let mut b = TokenBucket::new(10.0, 2, 0);
        assert!(b.is_full(0));
        assert!(b.try_take(0));
        assert!(!b.is_full(50));
        assert!(b.is_full(100));
    }

    #[test]
    fn never_exceeds_burst_after_idle() {
        let mut b = TokenBucket::new(1000.0, 2, 0);
        assert!(b.try_take(1_000_000) && b.try_take(1_000_000));
        assert!(!b.try_take(1_000_000));
    }
}
