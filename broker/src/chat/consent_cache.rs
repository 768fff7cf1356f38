//! The caches behind every direct message's consent check: each user's
//! relations (who they accepted or blocked) and what pairs of users share.
//!
//! An entry is used for at most [`CACHE_TTL`], so a change made on another
//! node of a cluster takes at most that long to apply here; this node's own
//! changes drop the entry at once ([`RelationCache::forget`], and the
//! conversation cache's generation for [`SharedCache`]). An entry older than
//! [`REFRESH_AFTER`] is still answered, and its lookup also claims a
//! background re-read (one per key at a time), so that a conversation in
//! steady use never waits for the store when its entry expires: before, every
//! sender's next message after each [`CACHE_TTL`] waited for two or three store
//! reads, and its connection's later messages with it.
//!
//! A read that began before a forget of the same cache does not cache what it
//! read ([`RelationCache::version`]), so a decision made here is never
//! replaced by the relations read just before it.
//!
//! Every answer says until when it is fresh ([`Hit::fresh_until`]: younger
//! than [`REFRESH_AFTER`]), so that a connection may keep a verdict derived
//! from it that long without asking again (`super::send_checks`).

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chat_core::ids::UserId;
use persistence::RelationRecord;

/// How long a cached entry is used (a change made on another node of a
/// cluster takes at most this long here).
pub(super) const CACHE_TTL: Duration = Duration::from_secs(2);

/// Past this age a cached entry is re-read in the background while it is
/// still used.
pub(super) const REFRESH_AFTER: Duration = Duration::from_millis(1500);

/// Most keys cached; past it the cache starts over.
const CACHE_MAX: usize = 100_000;

/// A cached answer and whether the caller should re-read it in the
/// background (it has claimed the re-read: see [`RelationCache::refreshed`]).
pub(super) struct Hit<T> {
    /// The cached answer, still within [`CACHE_TTL`].
    pub value: T,
    /// Whether this lookup claimed the entry's background re-read.
    pub refresh: bool,
    /// When the entry turns [`REFRESH_AFTER`] old: until then a verdict
    /// derived from it may be kept without asking again.
    pub fresh_until: Instant,
}

/// Entries by key, with the keys being re-read in the background.
struct Entries<K, V> {
    by_key: HashMap<K, (Instant, V)>,
    refreshing: HashSet<K>,
}

impl<K, V> Default for Entries<K, V> {
    fn default() -> Self {
        Entries {
            by_key: HashMap::new(),
            refreshing: HashSet::new(),
        }
    }
}

impl<K: Hash + Eq, V: Clone> Entries<K, V> {
    fn get<Q>(&mut self, key: &Q, now: Instant) -> Option<Hit<V>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let (at, value) = self.by_key.get(key)?;
        let age = now.saturating_duration_since(*at);
        if age >= CACHE_TTL {
            return None;
        }
        let (value, fresh_until) = (value.clone(), *at + REFRESH_AFTER);
        let refresh = age >= REFRESH_AFTER
            && !self.refreshing.contains(key)
            && self.refreshing.insert(key.to_owned());
        Some(Hit {
            value,
            refresh,
            fresh_until,
        })
    }

    fn put(&mut self, key: K, value: V, at: Instant) {
        self.refreshing.remove(&key);
        if self.by_key.len() >= CACHE_MAX {
            self.by_key.clear();
        }
        self.by_key.insert(key, (at, value));
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Users' relations, cached briefly.
#[derive(Default)]
pub(super) struct RelationCache {
    entries: Mutex<Entries<String, Arc<Vec<RelationRecord>>>>,
    /// Bumped by every forget, with `entries` locked.
    forgets: AtomicU64,
}

impl RelationCache {
    /// `user`'s cached relations, if younger than [`CACHE_TTL`].
    pub(super) fn get(&self, user: &str) -> Option<Hit<Arc<Vec<RelationRecord>>>> {
        lock(&self.entries).get(user, Instant::now())
    }

    /// What to pass to [`RelationCache::put`] for a read that starts now;
    /// it moves whenever this node changes someone's relations.
    pub(super) fn version(&self) -> u64 {
        self.forgets.load(Ordering::Acquire)
    }

    /// Caches `relations`, read after [`RelationCache::version`] gave
    /// `version`, unless something was forgotten since; ends a background
    /// re-read of `user` either way.
    pub(super) fn put(&self, user: &str, relations: Arc<Vec<RelationRecord>>, version: u64) {
        let mut entries = lock(&self.entries);
        if version == self.forgets.load(Ordering::Acquire) {
            entries.put(user.to_owned(), relations, Instant::now());
        } else {
            entries.refreshing.remove(user);
        }
    }

    /// Ends a background re-read of `user` that failed.
    pub(super) fn refreshed(&self, user: &str) {
        lock(&self.entries).refreshing.remove(user);
    }

    /// Drops `user`'s relations (this node changed them).
    pub(super) fn forget(&self, user: &str) {
        let mut entries = lock(&self.entries);
        entries.by_key.remove(user);
        self.forgets.fetch_add(1, Ordering::AcqRel);
    }
}

/// What two users share: (a group, their direct conversation).
pub(super) type Shared = (bool, bool);

/// What pairs of users share, cached briefly and only while no conversation
/// changed on this node (the conversation cache's generation): a request
/// stream in a direct conversation would otherwise read both users'
/// conversation lists for every message.
#[derive(Default)]
pub(super) struct SharedCache {
    entries: Mutex<Entries<(String, String), (u64, Shared)>>,
}

impl SharedCache {
    fn key(a: &UserId, b: &UserId) -> (String, String) {
        let (a, b) = (a.as_str(), b.as_str());
        if a <= b {
            (a.to_owned(), b.to_owned())
        } else {
            (b.to_owned(), a.to_owned())
        }
    }

    /// What `a` and `b` share, if cached at conversation generation
    /// `generation` and younger than [`CACHE_TTL`].
    pub(super) fn get(&self, a: &UserId, b: &UserId, generation: u64) -> Option<Hit<Shared>> {
        let key = Self::key(a, b);
        let mut entries = lock(&self.entries);
        let hit = entries.get(&key, Instant::now())?;
        let (seen, shared) = hit.value;
        if seen != generation {
            if hit.refresh {
                entries.refreshing.remove(&key);
            }
            return None;
        }
        Some(Hit {
            value: shared,
            refresh: hit.refresh,
            fresh_until: hit.fresh_until,
        })
    }

    /// Caches what `a` and `b` share, read at conversation generation
    /// `generation`; ends a background re-read of the pair.
    pub(super) fn put(&self, a: &UserId, b: &UserId, generation: u64, shared: Shared) {
        lock(&self.entries).put(Self::key(a, b), (generation, shared), Instant::now());
    }

    /// Ends a background re-read of the pair that failed.
    pub(super) fn refreshed(&self, a: &UserId, b: &UserId) {
        lock(&self.entries).refreshing.remove(&Self::key(a, b));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(now: Instant, ago: Duration) -> Instant {
        now.checked_sub(ago)
            .expect("the clock is past the test's ages")
    }

    #[test]
    fn a_young_entry_is_answered_without_a_refresh() {
        let now = Instant::now();
        let mut entries = Entries::<String, u32>::default();
        entries.put("a".into(), 7, at(now, Duration::from_millis(10)));
        let hit = entries.get("a", now).expect("cached");
        assert_eq!((hit.value, hit.refresh), (7, false));
    }

    #[test]
    fn an_ageing_entry_is_answered_and_claims_one_refresh() {
        let now = Instant::now();
        let mut entries = Entries::<String, u32>::default();
        entries.put("a".into(), 7, at(now, REFRESH_AFTER));
        let first = entries.get("a", now).expect("still cached");
        let second = entries.get("a", now).expect("still cached");
        assert_eq!((first.value, first.refresh), (7, true));
        assert_eq!(
            (second.value, second.refresh),
            (7, false),
            "one re-read at a time"
        );
        // The re-read's answer ends the claim and makes the entry young.
        entries.put("a".into(), 8, now);
        let hit = entries.get("a", now).expect("cached");
        assert_eq!((hit.value, hit.refresh), (8, false));
    }

    #[test]
    fn an_expired_entry_is_not_answered() {
        let now = Instant::now();
        let mut entries = Entries::<String, u32>::default();
        entries.put("a".into(), 7, at(now, CACHE_TTL));
        assert!(entries.get("a", now).is_none());
    }

    #[test]
    fn a_read_older_than_a_forget_is_not_cached() {
        let cache = RelationCache::default();
        let version = cache.version();
        cache.forget("bob");
        cache.put("alice", Arc::new(Vec::new()), version);
        assert!(cache.get("alice").is_none());
        // A read begun after the forget is cached.
        let version = cache.version();
        cache.put("alice", Arc::new(Vec::new()), version);
        assert!(cache.get("alice").is_some());
    }

    #[test]
    fn a_pair_is_answered_only_at_its_generation() {
        let cache = SharedCache::default();
        let (a, b) = (UserId::parse("ann").unwrap(), UserId::parse("bo").unwrap());
        cache.put(&a, &b, 3, (true, false));
        assert_eq!(cache.get(&b, &a, 3).map(|h| h.value), Some((true, false)));
        assert!(cache.get(&a, &b, 4).is_none());
    }
}
