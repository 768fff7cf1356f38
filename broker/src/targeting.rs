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
//! `docs/cluster.md` ("Targeted delivery") has the design.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

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
