//! Token-bucket rate limiting, pure: the caller passes the clock.
//!
//! Besides taking a token when one is there ([`TokenBucket::try_take`]), a
//! bucket tells how long until the next one ([`TokenBucket::wait_ms`]) and
//! can take a token ahead of its refill when it is due within a bound
//! ([`TokenBucket::reserve`]): the caller then waits that long before acting,
//! and later takes wait for the refill to make up for it.

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

    /// Milliseconds from `now_ms` until a token is available; 0 when one is
    /// there now. Rounded up, so a token is always there once it has passed.
    pub fn wait_ms(&mut self, now_ms: u64) -> u64 {
        self.refill(now_ms);
        if self.tokens >= 1.0 {
            return 0;
        }
        // A rate of zero never refills: the division gives infinity, which
        // saturates to u64::MAX.
        ((1.0 - self.tokens) / self.rate_per_ms).ceil() as u64
    }

    /// Takes one token at `now_ms` if one is there or will be within
    /// `max_wait_ms`. `Ok(wait)`: the token is taken now, and is the caller's
    /// to use `wait` milliseconds from now (0: at once); the bucket owes it
    /// to its refill, so every later take waits behind it. `Err(wait)`:
    /// nothing was taken, as the next token is `wait` milliseconds away,
    /// past the bound.
    pub fn reserve(&mut self, now_ms: u64, max_wait_ms: u64) -> Result<u64, u64> {
        let wait = self.wait_ms(now_ms);
        if wait > max_wait_ms {
            return Err(wait);
        }
        self.tokens -= 1.0;
        Ok(wait)
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
    fn wait_is_the_time_until_the_next_token() {
        let mut b = TokenBucket::new(10.0, 2, 0);
        assert_eq!(b.wait_ms(0), 0, "a full bucket has a token now");
        assert!(b.try_take(0) && b.try_take(0));
        assert_eq!(b.wait_ms(0), 100, "one token per 100 ms at 10/s");
        assert_eq!(b.wait_ms(30), 70);
        assert_eq!(b.wait_ms(100), 0);
        assert!(b.try_take(100));
        assert_eq!(b.wait_ms(133), 67, "rounded up: 66.7 ms");
        assert!(!b.try_take(199));
        assert!(b.try_take(200), "there once the wait has passed");
    }

    #[test]
    fn a_bucket_that_never_refills_has_no_next_token() {
        let mut b = TokenBucket::new(0.0, 1, 0);
        assert!(b.try_take(0));
        assert_eq!(b.wait_ms(1_000_000), u64::MAX);
        assert_eq!(b.reserve(1_000_000, u64::MAX - 1), Err(u64::MAX));
    }

    #[test]
    fn reserve_takes_ahead_within_the_bound_only() {
        let mut b = TokenBucket::new(10.0, 1, 0);
        assert_eq!(b.reserve(0, 0), Ok(0), "a token there now");
        assert_eq!(b.reserve(0, 99), Err(100), "past the bound: nothing taken");
        assert_eq!(b.wait_ms(0), 100, "the refused reserve took nothing");
        assert_eq!(b.reserve(0, 100), Ok(100), "taken ahead of the refill");
        // The taken-ahead token is owed: the next one is another 100 ms on.
        assert_eq!(b.wait_ms(0), 200);
        assert!(!b.try_take(150));
        assert_eq!(b.reserve(150, 1_000), Ok(50));
        assert!(!b.try_take(250), "still owed");
        assert!(b.try_take(300));
        assert_eq!(b.wait_ms(300), 100);
    }

    #[test]
    fn reserves_in_turn_are_spaced_by_the_rate() {
        // Four reserves at once on an empty bucket at 20/s: each waits 50 ms
        // longer than the one before, so they are used at the sustained rate.
        let mut b = TokenBucket::new(20.0, 1, 0);
        assert!(b.try_take(0));
        let waits: Vec<u64> = (0..4).map(|_| b.reserve(0, 1_000).unwrap()).collect();
        assert_eq!(waits, vec![50, 100, 150, 200]);
        assert_eq!(b.reserve(0, 249), Err(250));
        assert!(b.is_full(250));
    }

    #[test]
    fn never_exceeds_burst_after_idle() {
        let mut b = TokenBucket::new(1000.0, 2, 0);
        assert!(b.try_take(1_000_000) && b.try_take(1_000_000));
        assert!(!b.try_take(1_000_000));
    }
}
