//! A node's copy of the session directory: every live session of the
//! cluster by user, kept fresh by the directory changes consumed from the
//! bus. Pure: no IO, no clock.
//!
//! Changes of one user arrive in one order on every node, but a claim that
//! committed first may be announced after a later one; so a session's entry
//! is only replaced by a higher generation, and removed (or marked detached)
//! only by the change naming its generation.
//!
//! A detached entry (a persistent session whose connection ended) still
//! says where deliveries to its user must go ([`DirectoryCache::nodes_holding`])
//! but is not a live session: presence, push and rate limits do not count it.

use std::collections::{BTreeMap, HashMap, HashSet};

use persistence::DirectoryEntry;

use super::events::DirectoryEvent;

/// Where one session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Held {
    node: u16,
    generation: i64,
    /// Its connection ended; the persistent session waits on its node.
    detached: bool,
}

/// Sessions by user, then client id.
#[derive(Debug, Default)]
pub struct DirectoryCache {
    users: HashMap<String, BTreeMap<String, Held>>,
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
    /// bus, except those that left since; those of them listed in
    /// `detached` are marked so.
    pub fn load(&mut self, entries: Vec<DirectoryEntry>, detached: Vec<DirectoryEntry>) {
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
        for entry in detached {
            self.apply(&DirectoryEvent::Detached(entry));
        }
    }

    /// Applies a change; returns whether the cache changed.
    pub fn apply(&mut self, event: &DirectoryEvent) -> bool {
        match event {
            DirectoryEvent::Joined(e) => {
                let sessions = self.users.entry(e.user.clone()).or_default();
                match sessions.get(&e.client_id) {
                    Some(held) if held.generation >= e.generation => false,
                    _ => {
                        sessions.insert(
                            e.client_id.clone(),
                            Held {
                                node: e.node_id,
                                generation: e.generation,
                                detached: false,
                            },
                        );
                        true
                    }
                }
            }
            DirectoryEvent::Detached(e) => {
                match self
                    .users
                    .get_mut(&e.user)
                    .and_then(|sessions| sessions.get_mut(&e.client_id))
                {
                    Some(held)
                        if (held.node, held.generation) == (e.node_id, e.generation)
                            && !held.detached =>
                    {
                        held.detached = true;
                        true
                    }
                    _ => false,
                }
            }
            DirectoryEvent::Left(e) => {
                if let Some(left) = &mut self.left_while_loading {
                    left.insert((e.user.clone(), e.client_id.clone(), e.generation));
                }
                let Some(sessions) = self.users.get_mut(&e.user) else {
                    return false;
                };
                if sessions
                    .get(&e.client_id)
                    .is_none_or(|held| (held.node, held.generation) != (e.node_id, e.generation))
                {
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

    /// The current session of `user` with `client_id` (live or detached):
    /// its node and generation.
    pub fn current(&self, user: &str, client_id: &str) -> Option<(u16, i64)> {
        let held = self.users.get(user)?.get(client_id)?;
        Some((held.node, held.generation))
    }

    /// `user`'s live (not detached) sessions.
    fn live_of<'a>(&'a self, user: &str) -> impl Iterator<Item = (&'a String, &'a Held)> {
        self.users
            .get(user)
            .into_iter()
            .flatten()
            .filter(|(_, held)| !held.detached)
    }

    /// How many live sessions `user` has, cluster-wide.
    pub fn sessions_of(&self, user: &str) -> usize {
        self.live_of(user).count()
    }

    /// How many distinct nodes `user` has live sessions on.
    pub fn nodes_of(&self, user: &str) -> usize {
        self.live_of(user)
            .map(|(_, held)| held.node)
            .collect::<HashSet<_>>()
            .len()
    }

    /// Appends every node holding a session of `user`, live or detached
    /// (possibly more than once): where deliveries to `user` must go.
    pub fn nodes_holding(&self, user: &str, into: &mut Vec<u16>) {
        if let Some(sessions) = self.users.get(user) {
            into.extend(sessions.values().map(|held| held.node));
        }
    }

    /// `user`'s live sessions, by client id.
    pub fn entries_of(&self, user: &str) -> Vec<DirectoryEntry> {
        self.live_of(user)
            .map(|(client_id, held)| DirectoryEntry {
                user: user.to_owned(),
                client_id: client_id.clone(),
                node_id: held.node,
                generation: held.generation,
            })
            .collect()
    }

    /// Live sessions in the cluster, and the users they belong to
    /// (detached sessions not counted).
    pub fn totals(&self) -> (usize, usize) {
        let mut sessions = 0;
        let mut users = 0;
        for held in self.users.values() {
            let live = held.values().filter(|h| !h.detached).count();
            sessions += live;
            users += usize::from(live > 0);
        }
        (sessions, users)
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
        cache.load(
            vec![
                entry("a", "phone", 1, 4),
                entry("b", "pc", 2, 7),
                entry("c", "pc", 3, 8),
            ],
            vec![entry("c", "pc", 3, 8)],
        );
        assert_eq!(cache.sessions_of("a"), 0);
        assert_eq!(cache.sessions_of("b"), 1);
        assert_eq!(cache.sessions_of("c"), 0, "a detached session is not live");
        let mut nodes = Vec::new();
        cache.nodes_holding("c", &mut nodes);
        assert_eq!(nodes, [3], "but its node still holds it");
    }

    #[test]
    fn a_detached_session_still_holds_its_node_until_it_leaves() {
        let mut cache = DirectoryCache::new();
        cache.apply(&DirectoryEvent::Joined(entry("a", "phone", 1, 1)));
        cache.apply(&DirectoryEvent::Joined(entry("a", "laptop", 2, 2)));
        assert!(
            !cache.apply(&DirectoryEvent::Detached(entry("a", "phone", 1, 0))),
            "only the change naming its generation detaches it"
        );
        assert!(cache.apply(&DirectoryEvent::Detached(entry("a", "phone", 1, 1))));
        assert_eq!((cache.sessions_of("a"), cache.nodes_of("a")), (1, 1));
        assert_eq!(cache.totals(), (1, 1));
        let holding = |cache: &DirectoryCache| {
            let mut nodes = Vec::new();
            cache.nodes_holding("a", &mut nodes);
            nodes.sort_unstable();
            nodes
        };
        assert_eq!(holding(&cache), [1, 2]);
        // The client comes back on node 3: its claim replaces the detached entry.
        assert!(cache.apply(&DirectoryEvent::Joined(entry("a", "phone", 3, 5))));
        assert_eq!(holding(&cache), [2, 3]);
        assert!(
            !cache.apply(&DirectoryEvent::Left(entry("a", "phone", 1, 1))),
            "the old session's expiry leaves the new one alone"
        );
        assert_eq!(cache.sessions_of("a"), 2);
    }
}
