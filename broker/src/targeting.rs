//! Targeted delivery: which nodes of a cluster a fan-out goes to.
//!
//! A fan-out whose topics are all users' inboxes or typing feeds
//! (`u/{user}/i`, `u/{user}/t`) goes only to the nodes that hold a session
//! of one of those users (live, or a disconnected persistent one), as one
//! bus record per such node carrying that node's topics. Everything else
//! (presence, session directory changes, conversation changes, plain MQTT
//! topics) and every fan-out to at least `[cluster]
//! broadcast_min_recipients` topics is broadcast: one record, read by every
//! node. The rule depends only on the fan-out's topics, so a conversation's
//! messages and receipts (all to every member's inbox) are routed alike and
//! change routing only when its membership changes. Pure: no IO.
//!
//! A producing node learns of a session on another node only when it
//! consumes the session's claim from the bus, so what it sent meanwhile
//! skipped that node. [`RecentFanouts`] keeps the targeted fan-outs of the last
//! moments (bounded by time and bytes) so they can be sent again to a node
//! once a session there is known ([`RecentFanouts::replay_for`]).
//!
//! `docs/cluster.md` ("Targeted delivery") has the design.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;

/// Where users' sessions are, as this node knows them (the session
/// directory's cache, plus this node's own connections).
pub trait RecipientNodes: Send + Sync {
    /// Appends to `into` every node holding a session of `user`, live or a
    /// disconnected persistent one (a node may appear more than once).
    fn nodes_holding(&self, user: &str, into: &mut Vec<u16>);
}

/// Which nodes a fan-out should reach, as its sender asks.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Route {
    /// Decided from the topics and the session directory ([`route`]).
    #[default]
    Resolve,
    /// Every node (the broadcast stream).
    Everyone,
    /// Exactly these nodes, each with every topic of the fan-out (for
    /// callers that know where the subscribers are, such as a route table
    /// of plain MQTT subscriptions).
    Nodes(Vec<u16>),
}

/// Where a fan-out goes, once decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Routed {
    /// One record on the broadcast stream, with every topic.
    Everyone(Vec<String>),
    /// One record per node, with that node's topics (in the fan-out's
    /// order). Empty: no node holds a recipient, and nothing is sent.
    Nodes(BTreeMap<u16, Vec<String>>),
}

/// The user whose inbox or typing feed `topic` is, if it is one.
pub fn user_of_topic(topic: &str) -> Option<&str> {
    let rest = topic.strip_prefix("u/")?;
    let user = rest
        .strip_suffix("/i")
        .or_else(|| rest.strip_suffix("/t"))?;
    (!user.is_empty() && !user.contains('/')).then_some(user)
}

/// Decides where a fan-out to `topics` goes when asked to [`Route::Resolve`]:
/// broadcast if any topic is not a user's inbox or typing feed or if there
/// are at least `broadcast_min_recipients` topics (0 broadcasts everything),
/// otherwise to the nodes `nodes` names for the topics' users.
pub fn route(
    topics: Vec<String>,
    nodes: &dyn RecipientNodes,
    broadcast_min_recipients: usize,
) -> Routed {
    if topics.len() >= broadcast_min_recipients
        || !topics.iter().all(|t| user_of_topic(t).is_some())
    {
        return Routed::Everyone(topics);
    }
    let mut per_node: BTreeMap<u16, Vec<String>> = BTreeMap::new();
    let mut holding = Vec::new();
    for topic in topics {
        holding.clear();
        if let Some(user) = user_of_topic(&topic) {
            nodes.nodes_holding(user, &mut holding);
        }
        holding.sort_unstable();
        holding.dedup();
        for &node in &holding {
            per_node.entry(node).or_default().push(topic.clone());
        }
    }
    Routed::Nodes(per_node)
}

/// Applies `route` as asked by the sender (see [`Route`]).
pub fn resolve(
    asked: Route,
    topics: Vec<String>,
    nodes: Option<&dyn RecipientNodes>,
    broadcast_min_recipients: usize,
) -> Routed {
    match (asked, nodes) {
        (Route::Everyone, _) | (Route::Resolve, None) => Routed::Everyone(topics),
        (Route::Resolve, Some(nodes)) => route(topics, nodes, broadcast_min_recipients),
        (Route::Nodes(mut chosen), _) => {
            chosen.sort_unstable();
            chosen.dedup();
            Routed::Nodes(
                chosen
                    .into_iter()
                    .map(|node| (node, topics.clone()))
                    .collect(),
            )
        }
    }
}

/// A targeted fan-out as sent, kept for [`RecentFanouts::replay_for`].
#[derive(Debug, Clone)]
struct Sent {
    at: Instant,
    fanout: Replay,
    /// The nodes it went to.
    nodes: Vec<u16>,
    /// What it counts against the byte bound.
    bytes: usize,
}

/// A fan-out on the bus: kept as sent, and sent again to one node with one
/// user's topics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replay {
    /// Its ordering key.
    pub key: String,
    /// Its QoS.
    pub qos: u8,
    /// Its topics (the user's alone, when replayed).
    pub topics: Vec<String>,
    /// Its payload.
    pub payload: Bytes,
    /// Its retain flag.
    pub retain: bool,
}

/// Bytes a kept fan-out costs besides its topics and payload.
const SENT_OVERHEAD: usize = 96;

/// The targeted fan-outs this node sent in the last `window`, at most
/// `max_bytes` of them (topics and payloads), oldest first.
#[derive(Debug)]
pub struct RecentFanouts {
    window: Duration,
    max_bytes: usize,
    bytes: usize,
    entries: VecDeque<Sent>,
    /// Fan-outs dropped while still inside the window, to keep the bound.
    pub overflowed: u64,
}

impl RecentFanouts {
    /// Keeps fan-outs for `window`, at most `max_bytes` of them (0 keeps
    /// none: nothing is ever replayed).
    pub fn new(window: Duration, max_bytes: usize) -> RecentFanouts {
        RecentFanouts {
            window,
            max_bytes,
            bytes: 0,
            entries: VecDeque::new(),
            overflowed: 0,
        }
    }

    /// Remembers `fanout`, sent at `now` to `nodes` (possibly none).
    pub fn remember(&mut self, now: Instant, fanout: Replay, nodes: Vec<u16>) {
        self.expire(now);
        if self.window.is_zero() || self.max_bytes == 0 {
            return;
        }
        let bytes = SENT_OVERHEAD
            + fanout.key.len()
            + fanout.payload.len()
            + fanout.topics.iter().map(String::len).sum::<usize>();
        self.bytes += bytes;
        self.entries.push_back(Sent {
            at: now,
            fanout,
            nodes,
            bytes,
        });
        while self.bytes > self.max_bytes {
            let Some(dropped) = self.entries.pop_front() else {
                break;
            };
            self.bytes -= dropped.bytes;
            self.overflowed += 1;
        }
    }

    /// The fan-outs of the window with a topic of `user` that did not go to
    /// `node`, in the order they were sent, each with `user`'s topics only;
    /// they count as sent to `node` from now on.
    pub fn replay_for(&mut self, now: Instant, user: &str, node: u16) -> Vec<Replay> {
        self.expire(now);
        let mut replays = Vec::new();
        for sent in &mut self.entries {
            if sent.nodes.contains(&node) {
                continue;
            }
            let topics: Vec<String> = sent
                .fanout
                .topics
                .iter()
                .filter(|t| user_of_topic(t) == Some(user))
                .cloned()
                .collect();
            if topics.is_empty() {
                continue;
            }
            sent.nodes.push(node);
            replays.push(Replay {
                topics,
                ..sent.fanout.clone()
            });
        }
        replays
    }

    /// Drops what is older than the window.
    fn expire(&mut self, now: Instant) {
        while let Some(oldest) = self.entries.front() {
            if now.saturating_duration_since(oldest.at) <= self.window {
                break;
            }
            self.bytes -= oldest.bytes;
            self.entries.pop_front();
        }
    }
}

/// What this node's bus traffic was, for `/metrics`.
#[derive(Debug, Default)]
pub struct BusCounts {
    /// Records this node produced to the broadcast stream.
    pub produced_broadcast: AtomicU64,
    /// Records this node produced to single nodes' streams.
    pub produced_targeted: AtomicU64,
    /// Records this node read from the broadcast stream.
    pub read_broadcast: AtomicU64,
    /// Records this node read from its own stream.
    pub read_targeted: AtomicU64,
    /// Fan-outs not sent at all: no node holds any of their recipients.
    pub without_recipients: AtomicU64,
    /// Records sent again to a node once a session there became known.
    pub replayed: AtomicU64,
    /// Fan-outs dropped from the replay window to keep its byte bound.
    pub replay_overflowed: AtomicU64,
}

impl BusCounts {
    /// Adds `n` to `counter`.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// A fixed map of users to nodes.
    struct Where(HashMap<&'static str, Vec<u16>>);

    impl RecipientNodes for Where {
        fn nodes_holding(&self, user: &str, into: &mut Vec<u16>) {
            into.extend(self.0.get(user).into_iter().flatten());
        }
    }

    fn topics(list: &[&str]) -> Vec<String> {
        list.iter().map(|t| (*t).to_owned()).collect()
    }

    fn fanout(key: &str, list: &[&str], payload: &'static str) -> Replay {
        Replay {
            key: key.to_owned(),
            qos: 1,
            topics: topics(list),
            payload: Bytes::from_static(payload.as_bytes()),
            retain: false,
        }
    }

    #[test]
    fn only_inboxes_and_typing_feeds_name_a_user() {
        assert_eq!(user_of_topic("u/alice/i"), Some("alice"));
        assert_eq!(user_of_topic("u/alice/t"), Some("alice"));
        for other in [
            "u/alice/a",
            "p/alice",
            "u//i",
            "u/a/b/i",
            "$parley/x",
            "u/alice",
        ] {
            assert_eq!(user_of_topic(other), None, "{other}");
        }
    }

    #[test]
    fn a_fan_out_goes_to_the_nodes_of_its_recipients_only() {
        let nodes = Where(HashMap::from([
            ("alice", vec![1]),
            ("bob", vec![2, 1]),
            ("carol", vec![2]),
        ]));
        let routed = route(
            topics(&["u/alice/i", "u/bob/i", "u/carol/i", "u/dave/i"]),
            &nodes,
            512,
        );
        assert_eq!(
            routed,
            Routed::Nodes(BTreeMap::from([
                (1, topics(&["u/alice/i", "u/bob/i"])),
                (2, topics(&["u/bob/i", "u/carol/i"])),
            ]))
        );
        assert_eq!(
            route(topics(&["u/dave/t"]), &nodes, 512),
            Routed::Nodes(BTreeMap::new()),
            "nobody online anywhere: nothing to send"
        );
    }

    #[test]
    fn large_fan_outs_and_other_topics_are_broadcast() {
        let nodes = Where(HashMap::from([("alice", vec![1])]));
        let two = topics(&["u/alice/i", "u/bob/i"]);
        assert_eq!(route(two.clone(), &nodes, 2), Routed::Everyone(two.clone()));
        assert_eq!(route(two.clone(), &nodes, 0), Routed::Everyone(two));
        for other in [topics(&["p/alice"]), topics(&["u/alice/i", "$parley/x"])] {
            assert_eq!(route(other.clone(), &nodes, 512), Routed::Everyone(other));
        }
    }

    #[test]
    fn what_skipped_a_node_is_replayed_there_once_in_order() {
        let start = Instant::now();
        let mut recent = RecentFanouts::new(Duration::from_secs(5), 1 << 20);
        let payload = |p: &'static str| Bytes::from_static(p.as_bytes());
        recent.remember(start, fanout("c1", &["u/a/i", "u/b/i"], "1"), vec![1]);
        recent.remember(start, fanout("c2", &["u/a/i"], "2"), vec![1]);
        recent.remember(start, fanout("c1", &["u/a/i", "u/b/i"], "3"), vec![1, 2]);
        recent.remember(start, fanout("c1", &["u/b/t"], "4"), vec![]);
        let later = start + Duration::from_secs(1);
        let replayed = recent.replay_for(later, "b", 2);
        assert_eq!(
            replayed
                .iter()
                .map(|r| (r.key.as_str(), r.topics.clone(), r.payload.clone()))
                .collect::<Vec<_>>(),
            vec![
                ("c1", topics(&["u/b/i"]), payload("1")),
                ("c1", topics(&["u/b/t"]), payload("4")),
            ],
            "only b's topics, only what did not go to node 2, in order"
        );
        assert!(recent.replay_for(later, "b", 2).is_empty(), "once");
        assert!(
            recent
                .replay_for(start + Duration::from_secs(7), "a", 3)
                .is_empty(),
            "nothing older than the window"
        );
    }

    #[test]
    fn the_replay_window_keeps_its_byte_bound() {
        let now = Instant::now();
        let mut recent = RecentFanouts::new(Duration::from_secs(5), 2 * (SENT_OVERHEAD + 10));
        for _ in 0..3 {
            recent.remember(now, fanout("k", &["u/a/i"], "x"), vec![]);
        }
        assert_eq!(recent.overflowed, 1);
        assert_eq!(recent.replay_for(now, "a", 1).len(), 2);
        let mut off = RecentFanouts::new(Duration::ZERO, 1 << 20);
        off.remember(now, fanout("k", &["u/a/i"], "x"), vec![]);
        assert!(off.replay_for(now, "a", 1).is_empty());
    }

    #[test]
    fn a_sender_may_name_the_nodes_or_ask_for_everyone() {
        let nodes = Where(HashMap::new());
        let t = topics(&["devices/7/state"]);
        assert_eq!(
            resolve(Route::Nodes(vec![3, 1, 3]), t.clone(), Some(&nodes), 512),
            Routed::Nodes(BTreeMap::from([(1, t.clone()), (3, t.clone())]))
        );
        let inbox = topics(&["u/alice/i"]);
        assert_eq!(
            resolve(Route::Everyone, inbox.clone(), Some(&nodes), 512),
            Routed::Everyone(inbox.clone())
        );
        assert_eq!(
            resolve(Route::Resolve, inbox.clone(), None, 512),
            Routed::Everyone(inbox),
            "without a directory everything is broadcast"
        );
    }
}
