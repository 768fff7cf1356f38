//! Retained messages: the last message published with RETAIN on each topic,
//! sent to new subscriptions whose filter matches it.
//!
//! Messages are kept in a tree of topic levels, so matching a filter walks
//! only the branches the filter can reach (`#` visits everything below it).
//! Each message is charged to its owner, the user who published it, against
//! [`RetainedLimits`]; the server's own messages are not charged. An index
//! by expiry time lets [`RetainedStore::purge_expired`] touch only the
//! messages that expired.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use thiserror::Error;

use crate::message::Message;
use crate::trie::{shrink_if_sparse, LevelNode, NodeValue};

/// Bounds on the retained messages one owner may keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetainedLimits {
    /// Most retained messages per owner.
    pub max_messages_per_owner: usize,
    /// Most bytes ([`Message::size`]) of retained messages per owner.
    pub max_bytes_per_owner: usize,
}

impl Default for RetainedLimits {
    /// 1,000 messages and 1 MiB per owner.
    fn default() -> Self {
        RetainedLimits {
            max_messages_per_owner: 1_000,
            max_bytes_per_owner: 1 << 20,
        }
    }
}

/// Why a retained message was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RetainError {
    /// Storing it would take its owner over a [`RetainedLimits`] bound.
    #[error("retained message quota exceeded")]
    QuotaExceeded,
}

/// A stored retained message.
#[derive(Debug)]
struct Retained {
    message: Arc<Message>,
    /// Who it is charged to; `None` for the server's own messages.
    owner: Option<Arc<str>>,
}

impl NodeValue for Option<Retained> {
    fn is_empty(&self) -> bool {
        self.is_none()
    }
}

/// What one owner's retained messages hold.
#[derive(Debug, Default, Clone, Copy)]
struct Usage {
    messages: usize,
    bytes: usize,
}

/// Totals and indexes kept in step with the tree.
#[derive(Debug, Default)]
struct Ledger {
    messages: usize,
    bytes: usize,
    by_owner: HashMap<Arc<str>, Usage>,
    /// (expiry, topic) of every message that expires.
    expiries: BTreeSet<(Instant, Arc<str>)>,
}

impl Ledger {
    fn add(&mut self, retained: &Retained) {
        let size = retained.message.size();
        self.messages += 1;
        self.bytes += size;
        if let Some(owner) = &retained.owner {
            let usage = self.by_owner.entry(owner.clone()).or_default();
            usage.messages += 1;
            usage.bytes += size;
        }
        if let Some(at) = retained.message.expires_at {
            self.expiries.insert((at, retained.message.topic.clone()));
        }
    }

    fn remove(&mut self, retained: &Retained) {
        let size = retained.message.size();
        self.messages -= 1;
        self.bytes -= size;
        if let Some(owner) = &retained.owner {
            if let Some(usage) = self.by_owner.get_mut(owner) {
                usage.messages -= 1;
                usage.bytes -= size;
                if usage.messages == 0 {
                    self.by_owner.remove(owner);
                    shrink_if_sparse(&mut self.by_owner);
                }
            }
        }
        if let Some(at) = retained.message.expires_at {
            self.expiries.remove(&(at, retained.message.topic.clone()));
        }
    }

    fn usage(&self, owner: &str) -> Usage {
        self.by_owner.get(owner).copied().unwrap_or_default()
    }

    /// The shared copy of `owner`'s name.
    fn owner_key(&self, owner: &str) -> Arc<str> {
        match self.by_owner.get_key_value(owner) {
            Some((key, _)) => key.clone(),
            None => owner.into(),
        }
    }
}

/// The retained messages of every topic, with per-owner quotas.
#[derive(Debug)]
pub struct RetainedStore {
    limits: RetainedLimits,
    root: LevelNode<Option<Retained>>,
    ledger: Ledger,
}

impl RetainedStore {
    /// An empty store enforcing `limits`.
    pub fn new(limits: RetainedLimits) -> Self {
        RetainedStore {
            limits,
            root: LevelNode::default(),
            ledger: Ledger::default(),
        }
    }

    /// Stores `message` as the retained message of its topic, owned by
    /// `owner` (the publishing user); an empty payload deletes it (always
    /// allowed). Replacing a message owned by someone else moves it to
    /// `owner`'s quota. Refuses with [`RetainError::QuotaExceeded`] if the
    /// owner would exceed a bound (the old message stays).
    pub fn set(&mut self, owner: &str, message: Arc<Message>) -> Result<(), RetainError> {
        self.store(Some(owner), message)
    }

    /// Like [`Self::set`] for the server's own messages: charged to no one,
    /// so never refused (the `Result` matches `set`). Replacing a user's
    /// message frees that user's quota.
    pub fn set_unbounded(&mut self, message: Arc<Message>) -> Result<(), RetainError> {
        self.store(None, message)
    }

    fn store(&mut self, owner: Option<&str>, message: Arc<Message>) -> Result<(), RetainError> {
        if message.payload.is_empty() {
            self.remove(&message.topic);
            return Ok(());
        }
        if let Some(owner) = owner {
            self.check_quota(owner, &message)?;
        }
        let retained = Retained {
            owner: owner.map(|owner| self.ledger.owner_key(owner)),
            message,
        };
        let node = self.root.get_or_create(&retained.message.topic);
        if let Some(previous) = node.value.take() {
            self.ledger.remove(&previous);
        }
        self.ledger.add(&retained);
        node.value = Some(retained);
        Ok(())
    }

    /// Whether `owner` may store `message`, counting the message it replaces
    /// if `owner` owns that one.
    fn check_quota(&self, owner: &str, message: &Message) -> Result<(), RetainError> {
        let mut usage = self.ledger.usage(owner);
        let replaced = self
            .root
            .get(&message.topic)
            .and_then(|node| node.value.as_ref());
        if let Some(replaced) = replaced.filter(|r| r.owner.as_deref() == Some(owner)) {
            usage.messages -= 1;
            usage.bytes -= replaced.message.size();
        }
        usage.messages += 1;
        usage.bytes += message.size();
        if usage.messages > self.limits.max_messages_per_owner
            || usage.bytes > self.limits.max_bytes_per_owner
        {
            return Err(RetainError::QuotaExceeded);
        }
        Ok(())
    }

    /// Deletes the retained message of `topic`; true if there was one.
    fn remove(&mut self, topic: &str) -> bool {
        let Some(removed) = self.root.get_mut(topic).and_then(|node| node.value.take()) else {
            return false;
        };
        self.ledger.remove(&removed);
        self.root.prune(topic);
        true
    }

    /// Retained messages whose topic matches the plain `filter`, skipping
    /// expired ones at `now` (appended to `out`, in no particular order).
    /// Topics starting with `$` are not matched by a leading `+` or `#`.
    pub fn matching(&self, filter: &str, now: Instant, out: &mut Vec<Arc<Message>>) {
        let push_live = |node: &LevelNode<Option<Retained>>, out: &mut Vec<Arc<Message>>| {
            if let Some(retained) = node.value.as_ref().filter(|r| !r.message.is_expired(now)) {
                out.push(retained.message.clone());
            }
        };
        // (node, the filter levels below it, whether it is the root).
        let mut pending = vec![(&self.root, filter.split('/'), true)];
        while let Some((node, mut levels, at_root)) = pending.pop() {
            match levels.next() {
                None => push_live(node, out),
                Some("#") => {
                    // `sport/#` also matches `sport` itself.
                    push_live(node, out);
                    let mut below: Vec<_> = wildcard_children(node, at_root).collect();
                    while let Some(node) = below.pop() {
                        push_live(node, out);
                        below.extend(node.children.values());
                    }
                }
                Some("+") => {
                    pending.extend(
                        wildcard_children(node, at_root)
                            .map(|child| (child, levels.clone(), false)),
                    );
                }
                Some(level) => {
                    if let Some(child) = node.children.get(level) {
                        pending.push((child, levels, false));
                    }
                }
            }
        }
    }

    /// Drops the messages expired at `now`; returns how many.
    pub fn purge_expired(&mut self, now: Instant) -> usize {
        let mut purged = 0;
        while self
            .ledger
            .expiries
            .first()
            .is_some_and(|(at, _)| *at <= now)
        {
            let Some((_, topic)) = self.ledger.expiries.pop_first() else {
                break;
            };
            if self.remove(&topic) {
                purged += 1;
            }
        }
        purged
    }

    /// Number of retained messages.
    pub fn len(&self) -> usize {
        self.ledger.messages
    }

    /// Whether there is no retained message.
    pub fn is_empty(&self) -> bool {
        self.ledger.messages == 0
    }

    /// Total [`Message::size`] of the retained messages.
    pub fn bytes(&self) -> usize {
        self.ledger.bytes
    }

    /// `(messages, bytes)` charged to `owner`.
    pub fn owner_usage(&self, owner: &str) -> (usize, usize) {
        let usage = self.ledger.usage(owner);
        (usage.messages, usage.bytes)
    }
}

/// The children of `node` a wildcard level reaches: all of them, except at
/// the root those starting with `$`.
fn wildcard_children(
    node: &LevelNode<Option<Retained>>,
    at_root: bool,
) -> impl Iterator<Item = &LevelNode<Option<Retained>>> {
    node.children
        .iter()
        .filter(move |(level, _)| !(at_root && level.starts_with('$')))
        .map(|(_, child)| child)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;
    use crate::message::QoS;

    fn message(topic: &str, payload: &str) -> Arc<Message> {
        Arc::new(Message {
            topic: topic.into(),
            payload: Bytes::copy_from_slice(payload.as_bytes()),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: Default::default(),
            expires_at: None,
            origin: None,
        })
    }

    fn expiring(topic: &str, payload: &str, at: Instant) -> Arc<Message> {
        let mut m = Message::clone(&message(topic, payload));
        m.expires_at = Some(at);
        Arc::new(m)
    }

    /// The sorted topics of the retained messages `filter` matches.
    fn topics(store: &RetainedStore, filter: &str, now: Instant) -> Vec<String> {
        let mut out = Vec::new();
        store.matching(filter, now, &mut out);
        let mut topics: Vec<String> = out.iter().map(|m| m.topic.to_string()).collect();
        topics.sort();
        topics
    }

    fn payload(store: &RetainedStore, topic: &str) -> Option<Bytes> {
        let mut out = Vec::new();
        store.matching(topic, Instant::now(), &mut out);
        out.first().map(|m| m.payload.clone())
    }

    fn unlimited() -> RetainedLimits {
        RetainedLimits {
            max_messages_per_owner: usize::MAX,
            max_bytes_per_owner: usize::MAX,
        }
    }

    #[test]
    fn default_limits() {
        let limits = RetainedLimits::default();
        assert_eq!(limits.max_messages_per_owner, 1_000);
        assert_eq!(limits.max_bytes_per_owner, 1_048_576);
    }

    #[test]
    fn set_replace_and_delete() {
        let mut store = RetainedStore::new(unlimited());
        assert!(store.is_empty());
        let first = message("a/b", "one");
        store.set("alice", first.clone()).expect("stored");
        assert_eq!(store.len(), 1);
        assert_eq!(store.bytes(), first.size());
        assert_eq!(payload(&store, "a/b").as_deref(), Some(&b"one"[..]));

        let second = message("a/b", "two!");
        store.set("alice", second.clone()).expect("replaced");
        assert_eq!(store.len(), 1);
        assert_eq!(store.bytes(), second.size());
        assert_eq!(payload(&store, "a/b").as_deref(), Some(&b"two!"[..]));

        store.set("alice", message("a/b", "")).expect("deleted");
        assert!(store.is_empty());
        assert_eq!(store.bytes(), 0);
        assert_eq!(payload(&store, "a/b"), None);
        assert!(store.root.children.is_empty(), "empty nodes are pruned");
        // Deleting what is not there is fine.
        store
            .set("alice", message("x/y", ""))
            .expect("nothing to delete");
        assert!(store.root.children.is_empty());
    }

    #[test]
    fn wildcard_filters() {
        let mut store = RetainedStore::new(unlimited());
        for topic in [
            "sport",
            "sport/tennis",
            "sport/tennis/player1",
            "sport/golf",
            "/finance",
            "$SYS/uptime",
            "news",
        ] {
            store.set("u", message(topic, "x")).expect("stored");
        }
        let now = Instant::now();
        assert_eq!(
            topics(&store, "sport/#", now),
            [
                "sport",
                "sport/golf",
                "sport/tennis",
                "sport/tennis/player1"
            ]
        );
        assert_eq!(
            topics(&store, "sport/+", now),
            ["sport/golf", "sport/tennis"]
        );
        assert_eq!(
            topics(&store, "sport/+/player1", now),
            ["sport/tennis/player1"]
        );
        assert_eq!(topics(&store, "+", now), ["news", "sport"]);
        assert_eq!(
            topics(&store, "+/+", now),
            ["/finance", "sport/golf", "sport/tennis"]
        );
        assert_eq!(
            topics(&store, "#", now),
            [
                "/finance",
                "news",
                "sport",
                "sport/golf",
                "sport/tennis",
                "sport/tennis/player1"
            ]
        );
        assert_eq!(topics(&store, "$SYS/#", now), ["$SYS/uptime"]);
        assert_eq!(topics(&store, "+/uptime", now), Vec::<String>::new());
        assert_eq!(topics(&store, "$SYS/+", now), ["$SYS/uptime"]);
        assert_eq!(topics(&store, "sport/tennis", now), ["sport/tennis"]);
        assert_eq!(
            topics(&store, "sport/tennis/player1/#", now),
            ["sport/tennis/player1"]
        );
        assert_eq!(topics(&store, "nothing/#", now), Vec::<String>::new());
    }

    #[test]
    fn message_quota_per_owner() {
        let mut store = RetainedStore::new(RetainedLimits {
            max_messages_per_owner: 2,
            ..unlimited()
        });
        store.set("alice", message("a/1", "x")).expect("first");
        store.set("alice", message("a/2", "x")).expect("second");
        assert_eq!(
            store.set("alice", message("a/3", "x")),
            Err(RetainError::QuotaExceeded)
        );
        assert_eq!(payload(&store, "a/3"), None);
        assert!(
            store.root.get("a/3").is_none(),
            "a refusal leaves no node behind"
        );
        // Replacing one's own message is not one more.
        store
            .set("alice", message("a/2", "y"))
            .expect("replacement");
        assert_eq!(store.owner_usage("alice").0, 2);
        // Other owners have their own quota.
        store.set("bob", message("b/1", "x")).expect("bob's first");
        assert_eq!(store.len(), 3);
    }

    #[test]
    fn byte_quota_per_owner() {
        let size = message("t/1", "12345").size();
        let mut store = RetainedStore::new(RetainedLimits {
            max_bytes_per_owner: 2 * size,
            ..unlimited()
        });
        store.set("alice", message("t/1", "12345")).expect("first");
        store
            .set("alice", message("t/2", "12345"))
            .expect("second, exactly at the bound");
        assert_eq!(store.owner_usage("alice"), (2, 2 * size));
        assert_eq!(
            store.set("alice", message("t/3", "1")),
            Err(RetainError::QuotaExceeded)
        );
        // A bigger replacement counts only the difference, and is refused here.
        assert_eq!(
            store.set("alice", message("t/2", "123456")),
            Err(RetainError::QuotaExceeded)
        );
        assert_eq!(
            payload(&store, "t/2").as_deref(),
            Some(&b"12345"[..]),
            "the old message stays"
        );
        store
            .set("alice", message("t/2", "1234"))
            .expect("smaller replacement");
        assert_eq!(store.owner_usage("alice"), (2, 2 * size - 1));
    }

    #[test]
    fn replacing_another_owners_message_moves_the_charge() {
        let mut store = RetainedStore::new(RetainedLimits {
            max_messages_per_owner: 1,
            ..unlimited()
        });
        let alices = message("shared/topic", "alice");
        store.set("alice", alices.clone()).expect("alice's");
        let bobs = message("shared/topic", "bob");
        store.set("bob", bobs.clone()).expect("bob's");
        assert_eq!(store.owner_usage("alice"), (0, 0));
        assert_eq!(store.owner_usage("bob"), (1, bobs.size()));
        assert_eq!(store.len(), 1);
        // Bob is now full: he cannot take over a third owner's topic, which keeps its message.
        store
            .set("carol", message("carol/topic", "carol"))
            .expect("carol's");
        assert_eq!(
            store.set("bob", message("carol/topic", "bob")),
            Err(RetainError::QuotaExceeded)
        );
        assert_eq!(
            payload(&store, "carol/topic").as_deref(),
            Some(&b"carol"[..])
        );
        assert_eq!(store.owner_usage("carol").0, 1);
    }

    #[test]
    fn delete_is_always_allowed_and_frees_the_owners_quota() {
        let mut store = RetainedStore::new(RetainedLimits {
            max_messages_per_owner: 1,
            ..unlimited()
        });
        store.set("alice", message("a", "x")).expect("alice's");
        store
            .set("bob", message("b", "x"))
            .expect("bob's, bob is now full");
        store
            .set("bob", message("a", ""))
            .expect("bob deletes alice's message");
        assert_eq!(store.owner_usage("alice"), (0, 0));
        assert_eq!(store.owner_usage("bob").0, 1);
        store
            .set("alice", message("a2", "x"))
            .expect("alice has room again");
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn server_messages_are_not_charged() {
        let mut store = RetainedStore::new(RetainedLimits {
            max_messages_per_owner: 0,
            max_bytes_per_owner: 0,
        });
        assert_eq!(
            store.set("alice", message("a", "x")),
            Err(RetainError::QuotaExceeded)
        );
        for i in 0..10 {
            store
                .set_unbounded(message(&format!("$SYS/{i}"), "x"))
                .expect("server");
        }
        assert_eq!(store.len(), 10);
        let mut store = RetainedStore::new(RetainedLimits::default());
        store.set("alice", message("a", "x")).expect("alice's");
        store
            .set_unbounded(message("a", "server"))
            .expect("server's");
        assert_eq!(store.owner_usage("alice"), (0, 0));
        store
            .set("alice", message("a", "again"))
            .expect("alice takes it back");
        assert_eq!(store.owner_usage("alice").0, 1);
    }

    #[test]
    fn expired_messages_are_skipped_then_purged() {
        let now = Instant::now();
        let later = now + Duration::from_secs(10);
        let mut store = RetainedStore::new(RetainedLimits::default());
        store
            .set("alice", expiring("e/1", "x", now + Duration::from_secs(5)))
            .expect("stored");
        store
            .set("alice", expiring("e/2", "x", now + Duration::from_secs(20)))
            .expect("stored");
        store.set("alice", message("e/3", "x")).expect("stored");
        assert_eq!(topics(&store, "e/+", now), ["e/1", "e/2", "e/3"]);
        assert_eq!(topics(&store, "e/+", later), ["e/2", "e/3"]);
        assert_eq!(topics(&store, "#", later), ["e/2", "e/3"]);

        assert_eq!(store.purge_expired(now), 0);
        assert_eq!(store.purge_expired(later), 1);
        assert_eq!(store.len(), 2);
        assert_eq!(store.owner_usage("alice").0, 2);
        assert_eq!(store.purge_expired(later), 0);
        assert_eq!(
            store.purge_expired(now + Duration::from_secs(20)),
            1,
            "expires at its instant"
        );
        assert_eq!(topics(&store, "#", now), ["e/3"]);
    }

    #[test]
    fn replacing_or_deleting_an_expiring_message_cancels_its_expiry() {
        let now = Instant::now();
        let at = now + Duration::from_secs(1);
        let mut store = RetainedStore::new(RetainedLimits::default());
        store.set("u", expiring("t", "x", at)).expect("stored");
        store.set("u", message("t", "forever")).expect("replaced");
        store.set("u", expiring("gone", "x", at)).expect("stored");
        store.set("u", message("gone", "")).expect("deleted");
        let same = expiring("same", "x", at);
        store.set("u", same.clone()).expect("stored");
        store.set("u", same).expect("stored again");
        assert_eq!(store.purge_expired(at), 1, "only `same`");
        assert_eq!(topics(&store, "#", at), ["t"]);
        assert!(store.ledger.expiries.is_empty());
    }

    #[test]
    fn deep_topics_do_not_overflow_the_stack() {
        let worker = std::thread::Builder::new()
            .stack_size(128 * 1024)
            .spawn(|| {
                let deep = vec!["a"; 30_000].join("/");
                let mut store = RetainedStore::new(RetainedLimits::default());
                store.set("u", message(&deep, "x")).expect("stored");
                assert_eq!(topics(&store, "#", Instant::now()).len(), 1);
                assert_eq!(
                    topics(&store, &vec!["+"; 30_000].join("/"), Instant::now()).len(),
                    1
                );
                store.set("u", message(&deep, "")).expect("deleted");
                assert!(store.root.children.is_empty());
                store.set("u", message(&deep, "x")).expect("stored");
                drop(store);
            });
        let joined = worker.expect("spawn").join();
        assert!(joined.is_ok());
    }
}
