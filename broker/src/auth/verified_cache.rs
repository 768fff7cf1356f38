//! A short-lived cache of successfully verified passwords, so that a
//! reconnect storm does not pay a full PBKDF2 hash per CONNECT.
//!
//! An entry holds an HMAC-SHA256 of `username \0 password` under a random
//! key that never leaves the process, and the stored password hash it was
//! verified against. A later CONNECT with the same password hits the cache
//! only while the entry is fresh and the account's stored hash is unchanged
//! (a password change invalidates it). Comparison is constant time. Unknown
//! users and wrong passwords are never cached, so the cache cannot speed up
//! guessing. The trade-off (a fast keyed digest of recent passwords in
//! memory) is the one most brokers make; set the TTL to 0 to turn it off.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ring::hmac;
use ring::rand::SystemRandom;

/// Largest number of cached users; when full, expired entries go first, then all.
const MAX_ENTRIES: usize = 200_000;

struct Entry {
    tag: Vec<u8>,
    password_hash: String,
    expires: Instant,
}

/// Recently verified passwords by username.
pub struct VerifiedCache {
    key: hmac::Key,
    ttl: Duration,
    entries: Mutex<HashMap<String, Entry>>,
}

impl VerifiedCache {
    /// A cache keeping entries for `ttl`; `None` when `ttl` is zero (disabled)
    /// or the system has no randomness for the key.
    pub fn new(ttl: Duration) -> Option<VerifiedCache> {
        if ttl.is_zero() {
            return None;
        }
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &SystemRandom::new()).ok()?;
        Some(VerifiedCache {
            key,
            ttl,
            entries: Mutex::new(HashMap::new()),
        })
    }

    /// Whether `password` was verified for `username` against `password_hash` recently.
    pub fn check(&self, username: &str, password: &str, password_hash: &str) -> bool {
        let entries = self.lock();
        let Some(entry) = entries.get(username) else {
            return false;
        };
        entry.expires > Instant::now()
            && entry.password_hash == password_hash
            && hmac::verify(&self.key, &message(username, password), &entry.tag).is_ok()
    }

    /// Records a successful verification.
    pub fn remember(&self, username: &str, password: &str, password_hash: &str) {
        let tag = hmac::sign(&self.key, &message(username, password))
            .as_ref()
            .to_vec();
        let now = Instant::now();
        let mut entries = self.lock();
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, e| e.expires > now);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(
            username.to_owned(),
            Entry {
                tag,
                password_hash: password_hash.to_owned(),
                expires: now + self.ttl,
            },
        );
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn message(username: &str, password: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(username.len() + 1 + password.len());
    m.extend_from_slice(username.as_bytes());
    m.push(0);
    m.extend_from_slice(password.as_bytes());
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_only_the_same_password_and_stored_hash() {
        let cache = VerifiedCache::new(Duration::from_secs(60)).unwrap();
        assert!(!cache.check("alice", "pw", "h1"));
        cache.remember("alice", "pw", "h1");
        assert!(cache.check("alice", "pw", "h1"));
        assert!(!cache.check("alice", "other", "h1"), "another password");
        assert!(
            !cache.check("alice", "pw", "h2"),
            "the password was changed"
        );
        assert!(!cache.check("bob", "pw", "h1"), "another user");
    }

    #[test]
    fn entries_expire_and_zero_ttl_disables() {
        assert!(VerifiedCache::new(Duration::ZERO).is_none());
        let cache = VerifiedCache::new(Duration::from_nanos(1)).unwrap();
        cache.remember("alice", "pw", "h1");
        let later = Instant::now() + Duration::from_millis(1);
        while Instant::now() < later {
            std::hint::spin_loop();
        }
        assert!(!cache.check("alice", "pw", "h1"));
    }
}
