//! [`LoginThrottle`]: exponential backoff after failed passwords, per
//! account and per source address (IPv4 as is, IPv6 by its /64 prefix).
//!
//! - The first `free` failures of an account or address cost nothing; each
//!   failure after them doubles the wait before the next password from that
//!   account or address is checked at all (from `backoff_base_ms`, capped by
//!   the account's or the address's maximum). A throttled attempt is refused
//!   without hashing, so guesses get no answer and cost no CPU.
//! - Failures are forgotten `forget_after_secs` after the last one. A
//!   success resets nothing (an attacker with an account of its own must
//!   not be able to clear its address's record by logging in).
//! - A successful log-in makes its address *trusted* for that account for
//!   `trusted_address_secs`: from a trusted address the account's backoff
//!   does not apply, so an attacker hammering an account slows guesses but
//!   cannot lock its owner out of their usual addresses. The address's own
//!   backoff still applies.
//! - Every table holds at most `max_tracked` entries; past that, entries
//!   below their backoff and expired ones are dropped, and if it is still
//!   full new keys are not tracked ([`Outcome::TableFull`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::address_key::limit_key;
use crate::config::LoginConfig;

/// Failed passwords of one account or address.
#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last_ms: u64,
}

/// How one table's backoff is computed.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    free: u32,
    base_ms: u64,
    max_ms: u64,
}

impl Backoff {
    /// When `failures` may try again (ms since the throttle started); `None`
    /// if they are still within the free failures (or this backoff is off).
    fn until(&self, failures: &Failures) -> Option<u64> {
        if self.free == 0 || failures.count < self.free {
            return None;
        }
        let doublings = (failures.count - self.free).min(40);
        let wait = self
            .base_ms
            .saturating_mul(1u64 << doublings)
            .min(self.max_ms);
        Some(failures.last_ms.saturating_add(wait))
    }
}

/// Why an attempt is refused before its password is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    /// How long until the next attempt will be considered (at least 1 s).
    pub retry_after: Duration,
}

/// What recording a failure did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Counted.
    Counted,
    /// A table was full and the failure could not be tracked for some key.
    TableFull,
}

#[derive(Default)]
struct Tables {
    accounts: HashMap<String, Failures>,
    addresses: HashMap<IpAddr, Failures>,
    trusted: HashMap<(String, IpAddr), u64>,
}

/// Log-in backoff per account and per source address.
pub struct LoginThrottle {
    account: Backoff,
    address: Backoff,
    forget_ms: u64,
    trusted_ms: u64,
    max_tracked: usize,
    started: Instant,
    tables: Mutex<Tables>,
}

impl std::fmt::Debug for LoginThrottle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginThrottle")
            .field("account", &self.account)
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl LoginThrottle {
    /// A throttle with `config`'s free failures, backoffs and table sizes.
    pub fn new(config: &LoginConfig) -> LoginThrottle {
        LoginThrottle {
            account: Backoff {
                free: config.free_failures_per_account,
                base_ms: config.backoff_base_ms,
                max_ms: config.account_backoff_max_ms,
            },
            address: Backoff {
                free: config.free_failures_per_address,
                base_ms: config.backoff_base_ms,
                max_ms: config.address_backoff_max_ms,
            },
            forget_ms: config.forget_after_secs.saturating_mul(1000),
            trusted_ms: config.trusted_address_secs.saturating_mul(1000),
            max_tracked: config.max_tracked,
            started: Instant::now(),
            tables: Mutex::new(Tables::default()),
        }
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a password for `username` from `peer` may be checked now.
    pub fn check(&self, username: &str, peer: IpAddr) -> Result<(), Throttled> {
        self.check_at(username, peer, self.now_ms())
    }

    fn check_at(&self, username: &str, peer: IpAddr, now: u64) -> Result<(), Throttled> {
        let key = limit_key(peer);
        let tables = self.lock();
        let fresh = |f: &&Failures| now < f.last_ms.saturating_add(self.forget_ms);
        let mut until = None;
        if let Some(failures) = tables.addresses.get(&key).filter(fresh) {
            until = self.address.until(failures);
        }
        if let Some(failures) = tables.accounts.get(username).filter(fresh) {
            let trusted = tables
                .trusted
                .get(&(username.to_owned(), key))
                .is_some_and(|&at| now < at.saturating_add(self.trusted_ms));
            if !trusted {
                until = until.max(self.account.until(failures));
            }
        }
        match until {
            Some(until) if until > now => Err(Throttled {
                retry_after: Duration::from_millis((until - now).max(1000)),
            }),
            _ => Ok(()),
        }
    }

    /// Records a wrong password (or unknown user) for `username` from `peer`.
    /// `username` is only tracked when `track_account` (a name an account can have).
    pub fn failed(&self, username: &str, peer: IpAddr, track_account: bool) -> Outcome {
        self.failed_at(username, peer, track_account, self.now_ms())
    }

    fn failed_at(&self, username: &str, peer: IpAddr, track_account: bool, now: u64) -> Outcome {
        let key = limit_key(peer);
        let mut tables = self.lock();
        let mut outcome = Outcome::Counted;
        let (forget, max) = (self.forget_ms, self.max_tracked);
        if !bump(&mut tables.addresses, key, now, forget, max, &self.address) {
            outcome = Outcome::TableFull;
        }
        if track_account
            && !bump(
                &mut tables.accounts,
                username.to_owned(),
                now,
                forget,
                max,
                &self.account,
            )
        {
            outcome = Outcome::TableFull;
        }
        outcome
    }

    /// Records a successful log-in: `peer`'s address becomes trusted for `username`.
    pub fn succeeded(&self, username: &str, peer: IpAddr) {
        self.succeeded_at(username, peer, self.now_ms())
    }

    fn succeeded_at(&self, username: &str, peer: IpAddr, now: u64) {
        let key = (username.to_owned(), limit_key(peer));
        let mut tables = self.lock();
        if tables.trusted.len() >= self.max_tracked && !tables.trusted.contains_key(&key) {
            let ttl = self.trusted_ms;
            tables.trusted.retain(|_, at| now < at.saturating_add(ttl));
            if tables.trusted.len() >= self.max_tracked {
                return;
            }
        }
        tables.trusted.insert(key, now);
    }
}

/// Counts a failure for `key`; `false` if the table is full of keys that
/// matter and `key` is new.
fn bump<K: std::hash::Hash + Eq>(
    map: &mut HashMap<K, Failures>,
    key: K,
    now: u64,
    forget_ms: u64,
    max: usize,
    backoff: &Backoff,
) -> bool {
    if let Some(failures) = map.get_mut(&key) {
        if now >= failures.last_ms.saturating_add(forget_ms) {
            failures.count = 0;
        }
        failures.count = failures.count.saturating_add(1);
        failures.last_ms = now;
        return true;
    }
    if map.len() >= max {
        // Forget what no longer slows anyone: expired records and those
        // still within their free failures.
        map.retain(|_, f| now < f.last_ms.saturating_add(forget_ms) && backoff.until(f).is_some());
        if map.len() >= max {
            return false;
        }
    }
    map.insert(
        key,
        Failures {
            count: 1,
            last_ms: now,
        },
    );
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle() -> LoginThrottle {
        LoginThrottle::new(&LoginConfig {
            free_failures_per_account: 3,
            free_failures_per_address: 5,
            backoff_base_ms: 1_000,
            account_backoff_max_ms: 8_000,
            address_backoff_max_ms: 60_000,
            forget_after_secs: 600,
            trusted_address_secs: 3_600,
            max_tracked: 4,
            ..LoginConfig::default()
        })
    }

    const ATTACKER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, 9));
    const HOME: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, 7));

    #[test]
    fn backoff_doubles_after_the_free_failures_and_is_capped() {
        let t = throttle();
        for i in 0..3 {
            assert_eq!(t.check_at("alice", ATTACKER, i), Ok(()));
            t.failed_at("alice", ATTACKER, true, i);
        }
        // Third failure at t=2: the account waits 1 s.
        let refused = t.check_at("alice", ATTACKER, 500).unwrap_err();
        assert_eq!(refused.retry_after, Duration::from_millis(1000));
        assert_eq!(t.check_at("alice", ATTACKER, 1_002), Ok(()));
        t.failed_at("alice", ATTACKER, true, 1_002);
        assert!(t.check_at("alice", ATTACKER, 2_900).is_err(), "now 2 s");
        assert_eq!(t.check_at("alice", ATTACKER, 3_002), Ok(()));
        for now in [10_000, 20_000, 30_000, 40_000] {
            t.failed_at("alice", ATTACKER, true, now);
        }
        assert!(t.check_at("alice", ATTACKER, 47_000).is_err());
        assert_eq!(
            t.check_at("alice", ATTACKER, 48_000),
            Ok(()),
            "capped at account_backoff_max_ms"
        );
    }

    #[test]
    fn the_owner_still_gets_in_from_a_trusted_address() {
        let t = throttle();
        t.succeeded_at("alice", HOME, 0);
        for now in 1..=6 {
            t.failed_at("alice", ATTACKER, true, now);
        }
        assert!(t.check_at("alice", ATTACKER, 10).is_err());
        assert!(
            t.check_at("alice", [192, 0, 2, 1].into(), 10).is_err(),
            "an unknown address waits out the account's backoff"
        );
        assert_eq!(t.check_at("alice", HOME, 10), Ok(()), "home is trusted");
        assert!(
            t.check_at("bob", ATTACKER, 10).is_err(),
            "the address is throttled too"
        );
        assert_eq!(t.check_at("bob", HOME, 10), Ok(()));
    }

    #[test]
    fn ipv6_addresses_share_their_64_prefix() {
        let t = throttle();
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        for now in 0..5 {
            t.failed_at("x", a, false, now);
        }
        assert!(t.check_at("y", b, 10).is_err());
        assert_eq!(t.check_at("y", other, 10), Ok(()));
    }

    #[test]
    fn failures_are_forgotten_and_tables_stay_bounded() {
        let t = throttle();
        for now in 0..5 {
            t.failed_at("x", ATTACKER, false, now);
        }
        assert!(t.check_at("x", ATTACKER, 10).is_err());
        assert_eq!(t.check_at("x", ATTACKER, 700_000), Ok(()), "forgotten");
        // Five addresses with one failure each fit after sweeping the harmless ones.
        for i in 0..10u8 {
            assert_eq!(
                t.failed_at("x", [10, 0, 0, i].into(), false, 800_000),
                Outcome::Counted
            );
        }
        let t = throttle();
        for i in 0..4u8 {
            for now in 0..5 {
                t.failed_at("x", [10, 0, 0, i].into(), false, now);
            }
        }
        assert_eq!(
            t.failed_at("x", [10, 0, 0, 99].into(), false, 10),
            Outcome::TableFull
        );
        assert!(t.check_at("x", [10, 0, 0, 0].into(), 10).is_err(), "kept");
    }
}
