//! The subscription tree: which sessions a published topic goes to.
//!
//! Filters are stored level by level in a tree whose children are keyed by
//! level (`+` and `#` are ordinary keys), so matching a topic looks up, at
//! each level, the literal child, `+` and `#` only: its cost depends on the
//! topic's levels, the wildcard branches taken and the matches found, and
//! only logarithmically on how many other filters share a level (a level's
//! children are an ordered map, which grows node by node instead of
//! rehashing every child when it doubles).
//!
//! Plain subscriptions are kept per filter node, keyed by session. Shared
//! subscriptions (`$share/{group}/{filter}`) form groups identified by
//! (namespace, group, filter): the namespace (the subscriber's user) keeps
//! two users' groups of the same name apart, and the same group name on two
//! filters is two groups (MQTT 5 §4.8.2). A match yields each group whole,
//! with a round-robin start, and the caller picks one member.
//!
//! Every walk here is iterative, so topics of tens of thousands of levels
//! cannot overflow the stack.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::str::Split;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::message::{SessionId, SubscriptionOptions};
use crate::subscribers::DirectSubscribers;
use crate::topic::ParsedFilter;

/// One level of a topic tree: children keyed by level, and what is stored
/// at the topic or filter ending here. Shared by this module and
/// [`crate::retained`].
#[derive(Debug, Default)]
pub(crate) struct LevelNode<T> {
    /// The next levels. An ordered map rather than a hash table: a level
    /// with many children (a topic per client) never rehashes all of them at
    /// once, which held the tree's lock for milliseconds at every doubling.
    pub(crate) children: BTreeMap<Box<str>, LevelNode<T>>,
    /// What is stored at this node.
    pub(crate) value: T,
}

/// What a [`LevelNode`] stores; a node holding an empty value and no
/// children is pruned.
pub(crate) trait NodeValue: Default {
    /// Whether nothing is stored.
    fn is_empty(&self) -> bool;
}

impl<T: NodeValue> LevelNode<T> {
    /// The node at `path` (levels separated by `/`) below this one.
    pub(crate) fn get(&self, path: &str) -> Option<&Self> {
        let mut node = self;
        for level in path.split('/') {
            node = node.children.get(level)?;
        }
        Some(node)
    }

    /// The node at `path` below this one, mutably.
    pub(crate) fn get_mut(&mut self, path: &str) -> Option<&mut Self> {
        let mut node = self;
        for level in path.split('/') {
            node = node.children.get_mut(level)?;
        }
        Some(node)
    }

    /// The node at `path` below this one, created with its ancestors if absent.
    pub(crate) fn get_or_create(&mut self, path: &str) -> &mut Self {
        let mut node = self;
        for level in path.split('/') {
            node = node.children.entry(level.into()).or_default();
        }
        node
    }

    /// Removes the nodes of `path` that no longer hold anything, from the
    /// node at `path` upwards (never this node itself).
    pub(crate) fn prune(&mut self, path: &str) {
        // The deepest node on the path that stays, and the level of its child to cut.
        let mut cut = None;
        let mut node = &*self;
        for (depth, level) in path.split('/').enumerate() {
            if depth == 0 || !node.value.is_empty() || node.children.len() > 1 {
                cut = Some((depth, level));
            }
            match node.children.get(level) {
                Some(child) => node = child,
                None => return,
            }
        }
        let Some((depth, level)) = cut else { return };
        if !node.value.is_empty() || !node.children.is_empty() {
            return;
        }
        let mut keeper = self;
        for step in path.split('/').take(depth) {
            match keeper.children.get_mut(step) {
                Some(child) => keeper = child,
                None => return,
            }
        }
        keeper.children.remove(level);
    }
}

impl<T> Drop for LevelNode<T> {
    /// Drops the descendants one by one rather than recursively, so a deep
    /// tree cannot overflow the stack.
    fn drop(&mut self) {
        let mut pending: Vec<LevelNode<T>> =
            std::mem::take(&mut self.children).into_values().collect();
        while let Some(mut node) = pending.pop() {
            pending.extend(std::mem::take(&mut node.children).into_values());
        }
    }
}

/// Returns the memory of a map that has shrunk well below its capacity.
/// Shrinking only at a quarter keeps the rehashing amortised O(1).
pub(crate) fn shrink_if_sparse<K: Eq + Hash, V>(map: &mut HashMap<K, V>) {
    if map.capacity() > 4 * map.len() + 16 {
        map.shrink_to_fit();
    }
}

/// The subscriptions of one filter node.
#[derive(Debug, Default)]
struct Subscribers {
    /// Plain subscriptions, by session.
    direct: DirectSubscribers,
    /// Shared groups on this filter, by (namespace, group name); never empty.
    groups: BTreeMap<(Box<str>, Box<str>), SharedGroup>,
}

impl NodeValue for Subscribers {
    fn is_empty(&self) -> bool {
        self.direct.is_empty() && self.groups.is_empty()
    }
}

impl Subscribers {
    /// Appends every subscription of this node to `out`, advancing the
    /// round-robin cursor of each group.
    fn collect(&self, out: &mut Matches) {
        out.direct.extend(self.direct.iter());
        for group in self.groups.values() {
            let members: Vec<_> = group
                .members
                .iter()
                .map(|(&id, &options)| (id, options))
                .collect();
            let turn = group.cursor.fetch_add(1, Ordering::Relaxed);
            let start = turn.checked_rem(members.len()).unwrap_or(0);
            out.shared.push(SharedPick {
                members,
                start,
                group: group.id.clone(),
            });
        }
    }
}

/// Which shared group a [`SharedPick`] is: its members' namespace and the
/// subscription as written (`$share/{group}/{filter}`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SharedGroupId {
    /// The members' namespace.
    pub namespace: Box<str>,
    /// `$share/{group}/{filter}`.
    pub filter: Box<str>,
}

/// The members of one shared group, and whose turn it is.
#[derive(Debug)]
struct SharedGroup {
    /// Which group it is.
    id: Arc<SharedGroupId>,
    /// Members in session order.
    members: BTreeMap<SessionId, SubscriptionOptions>,
    /// Incremented on every match; the round-robin position.
    cursor: AtomicUsize,
}

/// Every subscription matching a topic, as [`SubscriptionTree::matches`] finds them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Matches {
    /// Plain subscriptions. A session with several matching filters appears
    /// once per filter, with that filter's options; the caller merges them.
    pub direct: Vec<(SessionId, SubscriptionOptions)>,
    /// One entry per matching shared group; the caller delivers to one member of each.
    pub shared: Vec<SharedPick>,
}

/// A matching shared group, from which the caller picks one member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedPick {
    /// The group's members, in ascending session order (never empty).
    pub members: Vec<(SessionId, SubscriptionOptions)>,
    /// Where to start trying members (less than `members.len()`): the
    /// caller tries `members[(start + i) % len]` for `i` in `0..len` and
    /// delivers to the first it can. Advances by one at each match.
    pub start: usize,
    /// Which group it is.
    pub group: Arc<SharedGroupId>,
}

/// The subscriptions of every session, indexed by filter for matching.
#[derive(Debug, Default)]
pub struct SubscriptionTree {
    /// The root; its children are the filters' first levels.
    root: LevelNode<Subscribers>,
    /// Number of (session, filter) subscriptions, shared memberships included.
    len: usize,
}

impl SubscriptionTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces `session`'s subscription to `filter`. Returns true if
    /// it is new (not a replacement).
    ///
    /// A shared filter makes `session` a member of the group (`namespace`,
    /// group, filter); `namespace` is ignored for plain filters. Costs
    /// O(levels + log subscribers of the filter).
    pub fn subscribe(
        &mut self,
        session: SessionId,
        namespace: &str,
        filter: &ParsedFilter<'_>,
        options: SubscriptionOptions,
    ) -> bool {
        let node = self.root.get_or_create(filter.filter());
        let previous = match filter.group() {
            None => node.value.direct.insert(session, options),
            Some(group) => node
                .value
                .groups
                .entry((namespace.into(), group.into()))
                .or_insert_with(|| SharedGroup {
                    id: Arc::new(SharedGroupId {
                        namespace: namespace.into(),
                        filter: format!("$share/{group}/{}", filter.filter()).into(),
                    }),
                    members: BTreeMap::new(),
                    cursor: AtomicUsize::new(0),
                })
                .members
                .insert(session, options),
        };
        let is_new = previous.is_none();
        if is_new {
            self.len += 1;
        }
        is_new
    }

    /// Removes `session`'s subscription to `filter` (in `namespace`'s group,
    /// for a shared filter); true if it existed. Nodes left empty are freed.
    pub fn unsubscribe(
        &mut self,
        session: SessionId,
        namespace: &str,
        filter: &ParsedFilter<'_>,
    ) -> bool {
        let path = filter.filter();
        let Some(node) = self.root.get_mut(path) else {
            return false;
        };
        let removed = match filter.group() {
            None => node.value.direct.remove(session).is_some(),
            Some(group) => {
                let key = (Box::from(namespace), Box::from(group));
                let Some(shared) = node.value.groups.get_mut(&key) else {
                    return false;
                };
                let removed = shared.members.remove(&session).is_some();
                if shared.members.is_empty() {
                    node.value.groups.remove(&key);
                }
                removed
            }
        };
        if removed {
            self.len -= 1;
            self.root.prune(path);
        }
        removed
    }

    /// Every subscription matching `topic` (a valid topic name), appended to
    /// `out` (not cleared by this call). See [`Matches`] for duplicates.
    ///
    /// Costs O(topic levels × wildcard branches + matches), independent of
    /// the filters that do not match. A topic starting with `$` is not
    /// matched by filters starting with `+` or `#`.
    pub fn matches(&self, topic: &str, out: &mut Matches) {
        self.collect(topic, out);
    }

    /// Does the work of [`Self::matches`]; returns how many nodes it
    /// visited, so tests can check the cost.
    fn collect(&self, topic: &str, out: &mut Matches) -> usize {
        let dollar_topic = topic.starts_with('$');
        let mut visited = 0;
        // (node, the topic levels below it, whether wildcard children may match).
        let mut pending: Vec<(&LevelNode<Subscribers>, Split<'_, char>, bool)> =
            vec![(&self.root, topic.split('/'), !dollar_topic)];
        while let Some((node, mut levels, wildcards)) = pending.pop() {
            visited += 1;
            if wildcards {
                if let Some(rest) = node.children.get("#") {
                    visited += 1;
                    rest.value.collect(out);
                }
            }
            let Some(level) = levels.next() else {
                node.value.collect(out);
                continue;
            };
            if let Some(child) = node.children.get(level) {
                pending.push((child, levels.clone(), true));
            }
            if wildcards {
                if let Some(child) = node.children.get("+") {
                    pending.push((child, levels, true));
                }
            }
        }
        visited
    }

    /// Number of (session, filter) subscriptions, shared memberships included.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there is no subscription.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::message::QoS;
    use crate::topic::{self, parse_filter};

    fn options(id: u32) -> SubscriptionOptions {
        SubscriptionOptions {
            subscription_id: Some(id),
            ..SubscriptionOptions::default()
        }
    }

    fn subscribe(
        tree: &mut SubscriptionTree,
        session: SessionId,
        namespace: &str,
        raw: &str,
        id: u32,
    ) -> bool {
        let filter = parse_filter(raw).expect("test filters are valid");
        tree.subscribe(session, namespace, &filter, options(id))
    }

    fn unsubscribe(
        tree: &mut SubscriptionTree,
        session: SessionId,
        namespace: &str,
        raw: &str,
    ) -> bool {
        let filter = parse_filter(raw).expect("test filters are valid");
        tree.unsubscribe(session, namespace, &filter)
    }

    fn matching(tree: &SubscriptionTree, topic: &str) -> Matches {
        let mut out = Matches::default();
        tree.matches(topic, &mut out);
        out
    }

    /// The sessions of the direct matches, sorted.
    fn direct_sessions(tree: &SubscriptionTree, topic: &str) -> Vec<SessionId> {
        let mut sessions: Vec<_> = matching(tree, topic)
            .direct
            .iter()
            .map(|(id, _)| *id)
            .collect();
        sessions.sort_unstable();
        sessions
    }

    #[test]
    fn plain_subscriptions_match_like_topic_matches() {
        let mut tree = SubscriptionTree::new();
        let filters = [
            "sport/tennis/+",
            "sport/#",
            "#",
            "+/+",
            "/+",
            "+",
            "$SYS/#",
            "$SYS/+",
            "sport/tennis",
        ];
        for (session, filter) in filters.iter().enumerate() {
            assert!(subscribe(&mut tree, session as SessionId, "u", filter, 0));
        }
        for topic in [
            "sport",
            "sport/tennis",
            "sport/tennis/player1",
            "/finance",
            "$SYS",
            "$SYS/x",
            "$SYS/x/y",
            "a/",
        ] {
            let expected: Vec<SessionId> = (0..filters.len())
                .filter(|&i| topic::matches(filters[i], topic))
                .map(|i| i as SessionId)
                .collect();
            assert_eq!(direct_sessions(&tree, topic), expected, "{topic:?}");
        }
        assert_eq!(direct_sessions(&tree, "sport"), vec![1, 2, 5]);
        assert_eq!(direct_sessions(&tree, "$SYS/x"), vec![6, 7]);
    }

    #[test]
    fn subscribe_replaces_and_unsubscribe_removes() {
        let mut tree = SubscriptionTree::new();
        assert!(tree.is_empty());
        assert!(subscribe(&mut tree, 1, "u", "a/+", 10));
        assert!(
            !subscribe(&mut tree, 1, "u", "a/+", 11),
            "second subscribe is a replacement"
        );
        assert!(subscribe(&mut tree, 2, "u", "a/+", 20));
        assert_eq!(tree.len(), 2);
        assert_eq!(
            matching(&tree, "a/b").direct,
            vec![(1, options(11)), (2, options(20))]
        );

        assert!(!unsubscribe(&mut tree, 3, "u", "a/+"), "never subscribed");
        assert!(!unsubscribe(&mut tree, 1, "u", "a/b"), "other filter");
        assert!(unsubscribe(&mut tree, 1, "u", "a/+"));
        assert!(!unsubscribe(&mut tree, 1, "u", "a/+"), "already removed");
        assert_eq!(matching(&tree, "a/b").direct, vec![(2, options(20))]);
        assert!(unsubscribe(&mut tree, 2, "u", "a/+"));
        assert!(tree.is_empty());
        assert_eq!(matching(&tree, "a/b"), Matches::default());
    }

    #[test]
    fn a_session_appears_once_per_matching_filter() {
        let mut tree = SubscriptionTree::new();
        subscribe(&mut tree, 7, "u", "a/b", 1);
        subscribe(&mut tree, 7, "u", "a/+", 2);
        subscribe(&mut tree, 7, "u", "#", 3);
        let mut direct = matching(&tree, "a/b").direct;
        direct.sort_by_key(|(_, o)| o.subscription_id);
        assert_eq!(
            direct,
            vec![(7, options(1)), (7, options(2)), (7, options(3))]
        );
    }

    #[test]
    fn matches_appends_without_clearing() {
        let mut tree = SubscriptionTree::new();
        subscribe(&mut tree, 1, "u", "a", 0);
        let mut out = Matches::default();
        tree.matches("a", &mut out);
        tree.matches("a", &mut out);
        assert_eq!(out.direct.len(), 2);
    }

    #[test]
    fn empty_nodes_are_pruned() {
        let mut tree = SubscriptionTree::new();
        subscribe(&mut tree, 1, "u", "a/b/c/d", 0);
        subscribe(&mut tree, 1, "u", "a/b", 0);
        subscribe(&mut tree, 1, "u", "a/x/y", 0);
        subscribe(&mut tree, 2, "u", "$share/g/a/b/c/d", 0);
        unsubscribe(&mut tree, 1, "u", "a/b/c/d");
        assert!(
            tree.root.get("a/b/c/d").is_some(),
            "the shared group still holds it"
        );
        unsubscribe(&mut tree, 2, "u", "$share/g/a/b/c/d");
        assert!(tree.root.get("a/b/c").is_none());
        assert!(tree.root.get("a/b").is_some());
        unsubscribe(&mut tree, 1, "u", "a/b");
        assert!(tree.root.get("a/b").is_none());
        assert!(tree.root.get("a/x/y").is_some());
        unsubscribe(&mut tree, 1, "u", "a/x/y");
        assert!(tree.root.children.is_empty());
        assert!(tree.is_empty());
    }

    #[test]
    fn shared_groups_are_scoped_by_namespace_group_and_filter() {
        let mut tree = SubscriptionTree::new();
        assert!(subscribe(&mut tree, 1, "alice", "$share/g/t/+", 1));
        assert!(subscribe(&mut tree, 2, "alice", "$share/g/t/+", 2));
        assert!(subscribe(&mut tree, 3, "bob", "$share/g/t/+", 3));
        assert!(subscribe(&mut tree, 4, "alice", "$share/g/t/#", 4));
        assert!(subscribe(&mut tree, 5, "alice", "$share/h/t/+", 5));
        assert!(
            subscribe(&mut tree, 1, "alice", "t/+", 6),
            "a plain subscription is separate"
        );
        assert_eq!(tree.len(), 6);

        let found = matching(&tree, "t/x");
        assert_eq!(found.direct, vec![(1, options(6))]);
        let mut groups: Vec<Vec<SessionId>> = found
            .shared
            .iter()
            .map(|pick| pick.members.iter().map(|(id, _)| *id).collect())
            .collect();
        groups.sort();
        assert_eq!(groups, vec![vec![1, 2], vec![3], vec![4], vec![5]]);

        // The namespace of a plain subscription does not matter.
        assert!(unsubscribe(&mut tree, 1, "someone else", "t/+"));
        // Leaving a group needs the namespace it was joined in.
        assert!(!unsubscribe(&mut tree, 3, "alice", "$share/g/t/+"));
        assert!(unsubscribe(&mut tree, 3, "bob", "$share/g/t/+"));
        assert!(!unsubscribe(&mut tree, 2, "alice", "$share/h/t/+"));
        assert_eq!(matching(&tree, "t/x").shared.len(), 3);
        assert_eq!(tree.len(), 4);
    }

    #[test]
    fn shared_group_start_goes_round_robin() {
        let mut tree = SubscriptionTree::new();
        for session in [30, 10, 20] {
            subscribe(&mut tree, session, "u", "$share/g/jobs", session as u32);
        }
        let mut starts = Vec::new();
        for _ in 0..6 {
            let found = matching(&tree, "jobs");
            assert_eq!(found.shared.len(), 1);
            let pick = &found.shared[0];
            let members: Vec<SessionId> = pick.members.iter().map(|(id, _)| *id).collect();
            assert_eq!(members, vec![10, 20, 30], "members in stable order");
            assert_eq!(pick.members[0].1, options(10));
            starts.push(pick.start);
        }
        assert_eq!(starts, vec![0, 1, 2, 0, 1, 2]);
        // Replacing a member's options keeps the group and its order.
        assert!(!subscribe(&mut tree, 20, "u", "$share/g/jobs", 99));
        let found = matching(&tree, "jobs");
        assert_eq!(found.shared[0].members[1], (20, options(99)));
        assert!(found.shared[0].start < 3);
    }

    #[test]
    fn dollar_topics_skip_leading_wildcards_in_groups_too() {
        let mut tree = SubscriptionTree::new();
        subscribe(&mut tree, 1, "u", "$share/g/#", 0);
        subscribe(&mut tree, 2, "u", "$share/g/+/x", 0);
        subscribe(&mut tree, 3, "u", "$share/g/$SYS/#", 0);
        let found = matching(&tree, "$SYS/x");
        assert_eq!(found.shared.len(), 1);
        assert_eq!(found.shared[0].members[0].0, 3);
        assert_eq!(matching(&tree, "a/x").shared.len(), 2);
    }

    #[test]
    fn non_matching_filters_are_not_visited() {
        let mut tree = SubscriptionTree::new();
        for i in 0..10_000 {
            subscribe(&mut tree, 1, "u", &format!("devices/{i}/state"), i);
            subscribe(&mut tree, 1, "u", &format!("other/{i}/+"), i);
        }
        subscribe(&mut tree, 2, "u", "devices/+/state", 0);
        let mut out = Matches::default();
        let visited = tree.collect("devices/42/state", &mut out);
        assert_eq!(direct_sessions(&tree, "devices/42/state"), vec![1, 2]);
        // root, devices, 42, +, two state nodes.
        assert!(visited <= 6, "visited {visited} nodes");
    }

    #[test]
    fn many_subscribers_on_one_filter() {
        let mut tree = SubscriptionTree::new();
        let sessions = 100_000;
        for session in 0..sessions {
            subscribe(&mut tree, session, "u", "$share/g/hot", 0);
            subscribe(&mut tree, session, "u", "hot", 0);
        }
        assert_eq!(tree.len(), 2 * sessions as usize);
        let found = matching(&tree, "hot");
        assert_eq!(found.direct.len(), sessions as usize);
        assert_eq!(found.shared[0].members.len(), sessions as usize);
        for session in 0..sessions {
            assert!(unsubscribe(&mut tree, session, "u", "$share/g/hot"));
            assert!(unsubscribe(&mut tree, session, "u", "hot"));
        }
        assert!(tree.is_empty());
        assert!(tree.root.children.is_empty());
    }

    #[test]
    fn deep_filters_do_not_overflow_the_stack() {
        let worker = std::thread::Builder::new()
            .stack_size(128 * 1024)
            .spawn(|| {
                let levels = 30_000;
                let deep_filter = vec!["+"; levels].join("/");
                let deep_topic = vec!["a"; levels].join("/");
                let mut tree = SubscriptionTree::new();
                subscribe(&mut tree, 1, "u", &deep_filter, 0);
                subscribe(&mut tree, 2, "u", &format!("{deep_filter}/#"), 0);
                assert_eq!(direct_sessions(&tree, &deep_topic), vec![1, 2]);
                assert!(unsubscribe(&mut tree, 1, "u", &deep_filter));
                assert!(unsubscribe(&mut tree, 2, "u", &format!("{deep_filter}/#")));
                assert!(tree.root.children.is_empty());
                // And a deep tree dropped whole.
                subscribe(&mut tree, 1, "u", &deep_filter, 0);
                drop(tree);
            });
        let joined = worker.expect("spawn").join();
        assert!(joined.is_ok());
    }

    /// One step of a random sequence.
    #[derive(Debug, Clone)]
    struct Op {
        subscribe: bool,
        session: SessionId,
        namespace: usize,
        group: Option<usize>,
        filter: String,
        qos: QoS,
    }

    const NAMESPACES: [&str; 2] = ["alice", "bob"];
    const GROUPS: [&str; 2] = ["g", "h"];

    fn valid_filter() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop::sample::select(vec!["a", "b", "$s", "", "+", "#"]),
            1..=4,
        )
        .prop_map(|levels| levels.join("/"))
        .prop_filter("a valid filter", |filter| {
            topic::validate_filter(filter).is_ok()
        })
    }

    fn op() -> impl Strategy<Value = Op> {
        (
            prop::bool::weighted(0.7),
            0..4u64,
            0..NAMESPACES.len(),
            prop::option::of(0..GROUPS.len()),
            valid_filter(),
            prop::sample::select(vec![QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]),
        )
            .prop_map(|(subscribe, session, namespace, group, filter, qos)| Op {
                subscribe,
                session,
                namespace,
                group,
                filter,
                qos,
            })
    }

    /// Every topic of one to four levels over the alphabet.
    fn all_topics() -> Vec<String> {
        let alphabet = ["a", "b", "$s", ""];
        let mut topics: Vec<String> = alphabet.iter().map(|s| s.to_string()).collect();
        let mut last = topics.clone();
        for _ in 1..4 {
            last = last
                .iter()
                .flat_map(|t| alphabet.iter().map(move |l| format!("{t}/{l}")))
                .collect();
            topics.extend(last.iter().cloned());
        }
        topics.retain(|t| topic::validate_topic_name(t).is_ok());
        topics
    }

    /// Plain subscriptions by (session, filter); groups by (namespace, group, filter).
    #[derive(Default)]
    struct Model {
        direct: BTreeMap<(SessionId, String), SubscriptionOptions>,
        groups: BTreeMap<(String, String, String), BTreeMap<SessionId, SubscriptionOptions>>,
    }

    type Entry = (SessionId, QoS, Option<u32>);

    fn entry(&(id, options): &(SessionId, SubscriptionOptions)) -> Entry {
        (id, options.qos, options.subscription_id)
    }

    proptest! {
        #[test]
        fn matches_agrees_with_a_brute_force_model(ops in proptest::collection::vec(op(), 1..40)) {
            let mut tree = SubscriptionTree::new();
            let mut model = Model::default();
            for (step, op) in ops.iter().enumerate() {
                let namespace = NAMESPACES[op.namespace];
                let raw = match op.group {
                    Some(g) => format!("$share/{}/{}", GROUPS[g], op.filter),
                    None => op.filter.clone(),
                };
                let parsed = parse_filter(&raw).expect("generated filters are valid");
                let options = SubscriptionOptions { qos: op.qos, subscription_id: Some(step as u32), ..Default::default() };
                let (tree_says, model_says) = match (op.subscribe, op.group) {
                    (true, None) => (
                        tree.subscribe(op.session, namespace, &parsed, options),
                        model.direct.insert((op.session, op.filter.clone()), options).is_none(),
                    ),
                    (false, None) => (
                        tree.unsubscribe(op.session, namespace, &parsed),
                        model.direct.remove(&(op.session, op.filter.clone())).is_some(),
                    ),
                    (true, Some(g)) => (
                        tree.subscribe(op.session, namespace, &parsed, options),
                        model
                            .groups
                            .entry((namespace.to_string(), GROUPS[g].to_string(), op.filter.clone()))
                            .or_default()
                            .insert(op.session, options)
                            .is_none(),
                    ),
                    (false, Some(g)) => {
                        let key = (namespace.to_string(), GROUPS[g].to_string(), op.filter.clone());
                        let members = model.groups.entry(key.clone()).or_default();
                        let removed = members.remove(&op.session).is_some();
                        if members.is_empty() {
                            model.groups.remove(&key);
                        }
                        (tree.unsubscribe(op.session, namespace, &parsed), removed)
                    }
                };
                prop_assert_eq!(tree_says, model_says, "step {}: {:?}", step, op);
                let model_len = model.direct.len() + model.groups.values().map(BTreeMap::len).sum::<usize>();
                prop_assert_eq!(tree.len(), model_len);
            }

            for topic in all_topics() {
                let mut found = Matches::default();
                tree.matches(&topic, &mut found);

                let mut direct: Vec<Entry> = found.direct.iter().map(entry).collect();
                direct.sort_unstable();
                let mut expected: Vec<Entry> = model
                    .direct
                    .iter()
                    .filter(|((_, filter), _)| topic::matches(filter, &topic))
                    .map(|((id, _), options)| entry(&(*id, *options)))
                    .collect();
                expected.sort_unstable();
                prop_assert_eq!(direct, expected, "direct matches of {:?}", topic);

                for pick in &found.shared {
                    prop_assert!(pick.start < pick.members.len());
                }
                let mut groups: Vec<Vec<Entry>> =
                    found.shared.iter().map(|pick| pick.members.iter().map(entry).collect()).collect();
                groups.sort_unstable();
                let mut expected: Vec<Vec<Entry>> = model
                    .groups
                    .iter()
                    .filter(|((_, _, filter), _)| topic::matches(filter, &topic))
                    .map(|(_, members)| members.iter().map(|(id, options)| entry(&(*id, *options))).collect())
                    .collect();
                expected.sort_unstable();
                prop_assert_eq!(groups, expected, "shared matches of {:?}", topic);
            }

            // Unsubscribing everything leaves nothing behind.
            for (session, filter) in model.direct.keys() {
                prop_assert!(tree.unsubscribe(*session, "any", &ParsedFilter::Plain(filter)));
            }
            for ((namespace, group, filter), members) in &model.groups {
                for session in members.keys() {
                    let parsed = ParsedFilter::Shared { group, filter };
                    prop_assert!(tree.unsubscribe(*session, namespace, &parsed));
                }
            }
            prop_assert!(tree.is_empty());
            prop_assert!(tree.root.children.is_empty());
        }
    }
}
