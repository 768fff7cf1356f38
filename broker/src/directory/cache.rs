//! A node's copy of the session directory: every live session of the
//! cluster by user, kept fresh by the directory changes consumed from the
//! bus. Pure: no IO, no clock.
//!
//! Changes of one user arrive in one order on every node, but a claim that
//! committed first may be announced after a later one; so a session's entry
//! is only replaced by a higher generation, and removed only by the change
//! naming its generation.

use std::collections::{BTreeMap, HashMap, HashSet};

use persistence::DirectoryEntry;

use super::events::DirectoryEvent;

/// Live sessions by user, then client id: (node, generation).
#[derive(Debug, Default)]
pub struct DirectoryCache {
    users: HashMap<String, BTreeMap<String, (u16, i64)>>,
    /// While the initial snapshot loads: sessions that left meanwhile,
    /// which the snapshot may still list.
    left_while_loading: Option<HashSet<(String, String, i64)>>,
}

impl DirectoryCache {
    /// An empty cache.
    pub fn new() -> DirectoryCache {
        DirectoryCache::default()
    }

    /// Starts remembering departures until [`DirectoryCache::load`].
    pub fn begin_loading(&mut self) {
        self.left_while_loading = Some(HashSet::new());
    }

    /// Adds the sessions of a snapshot read after the node subscribed to the
    /// bus, except those that left since.
    pub fn load(&mut self, entries: Vec<DirectoryEntry>) {
        let left = self.left_while_loading.take().unwrap_or_default();
        for entry in entries {
            if !left.contains(&(
                entry.user.clone(),
                entry.client_id.clone(),
                entry.generation,
            )) {
                self.apply(&DirectoryEvent::Joined(entry));
            }
        }
    }

    /// Applies a change; returns whether the cache changed.
    pub fn apply(&mut self, event: &DirectoryEvent) -> bool {
        match event {
            DirectoryEvent::Joined(e) => {
                let sessions = self.users.entry(e.user.clone()).or_default();
                match sessions.get(&e.client_id) {
                    Some(&(_, generation)) if generation >= e.generation => false,
                    _ => {
                        sessions.insert(e.client_id.clone(), (e.node_id, e.generation));
                        true
                    }
                }
            }
            DirectoryEvent::Left(e) => {
                if let Some(left) = &mut self.left_while_loading {
                    left.insert((e.user.clone(), e.client_id.clone(), e.generation));
                }
                let Some(sessions) = self.users.get_mut(&e.user) else {
                    return false;
                };
                if sessions.get(&e.client_id) != Some(&(e.node_id, e.generation)) {
                    return false;
                }
                sessions.remove(&e.client_id);
                if sessions.is_empty() {
                    self.users.remove(&e.user);
                }
                true
            }
        }
    }

    /// The live session of `user` with `client_id`: its node and generation.
    pub fn current(&self, user: &str, client_id: &str) -> Option<(u16, i64)> {
        self.users.get(user)?.get(client_id).copied()
    }

    /// How many live sessions `user` has, cluster-wide.
    pub fn sessions_of(&self, user: &str) -> usize {
        self.users.get(user).map_or(0, BTreeMap::len)
    }

    /// How many distinct nodes `user` has live sessions on.
    pub fn nodes_of(&self, user: &str) -> usize {
        self.users.get(user).map_or(0, |sessions| {
            sessions
                .values()
                .map(|&(node, _)| node)
                .collect::<HashSet<_>>()
                .len()
        })
    }

    /// `user`'s live sessions, by client id.
    pub fn entries_of(&self, user: &str) -> Vec<DirectoryEntry> {
        self.users.get(user).map_or_else(Vec::new, |sessions| {
            sessions
                .iter()
                .map(|(client_id, &(node_id, generation))| DirectoryEntry {
                    user: user.to_owned(),
                    client_id: client_id.clone(),
                    node_id,
                    generation,
                })
                .collect()
        })
    }

    /// Live sessions in the cluster, and the users they belong to.
    pub fn totals(&self) -> (usize, usize) {
        (
            self.users.values().map(BTreeMap::len).sum(),
            self.users.len(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(user: &str, client_id: &str, node_id: u16, generation: i64) -> DirectoryEntry {
        DirectoryEntry {
            user: user.into(),
            client_id: client_id.into(),
            node_id,
            generation,
        }
    }

    #[test]
    fn counts_sessions_and_nodes_per_user() {
        let mut cache = DirectoryCache::new();
        assert!(cache.apply(&DirectoryEvent::Joined(entry("a", "phone", 1, 1))));
        assert!(cache.apply(&DirectoryEvent::Joined(entry("a", "laptop", 1, 2))));
        assert!(cache.apply(&DirectoryEvent::Joined(entry("a", "tablet", 2, 3))));
        assert_eq!((cache.sessions_of("a"), cache.nodes_of("a")), (3, 2));
        assert!(cache.apply(&DirectoryEvent::Left(entry("a", "tablet", 2, 3))));
        assert_eq!((cache.sessions_of("a"), cache.nodes_of("a")), (2, 1));
        assert_eq!(cache.totals(), (2, 1));
        assert_eq!(cache.sessions_of("nobody"), 0);
    }

    #[test]
    fn a_later_claim_wins_whatever_order_it_is_announced_in() {
        let mut cache = DirectoryCache::new();
        cache.apply(&DirectoryEvent::Joined(entry("a", "phone", 2, 9)));
        assert!(
            !cache.apply(&DirectoryEvent::Joined(entry("a", "phone", 1, 5))),
            "an older claim announced late changes nothing"
        );
        assert_eq!(cache.current("a", "phone"), Some((2, 9)));
        assert!(
            !cache.apply(&DirectoryEvent::Left(entry("a", "phone", 1, 5))),
            "the older session's end leaves the newer one"
        );
        assert!(cache.apply(&DirectoryEvent::Left(entry("a", "phone", 2, 9))));
        assert_eq!(cache.current("a", "phone"), None);
    }

    #[test]
    fn a_snapshot_does_not_bring_back_what_left_while_it_loaded() {
        let mut cache = DirectoryCache::new();
        cache.begin_loading();
        cache.apply(&DirectoryEvent::Left(entry("a", "phone", 1, 4)));
        cache.load(vec![entry("a", "phone", 1, 4), entry("b", "pc", 2, 7)]);
        assert_eq!(cache.sessions_of("a"), 0);
        assert_eq!(cache.sessions_of("b"), 1);
    }
}
