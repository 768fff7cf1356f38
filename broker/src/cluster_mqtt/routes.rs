//! The cluster's route table: which nodes have at least one subscription
//! matching which filter, as EMQX's route table. Every node keeps the whole
//! table in memory, its own routes updated as its engine reports them and
//! the others' from their announcements on the bus ([`super::events`]).
//!
//! The table is a subscription tree ([`SubscriptionTree`], the engine's)
//! whose "sessions" are node ids: a node that subscribes to a filter is one
//! entry however many of its sessions do, and a shared group
//! (`$share/{group}/{filter}` in its members' namespace) lists the nodes
//! with members. Matching a topic costs what it costs in the engine: the
//! topic's levels and the matches, never the other filters.
//!
//! [`RouteTable::targets`] is the one place that decides which nodes a
//! publish goes to.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::RwLock;

use parley_engine::message::SubscriptionOptions;
use parley_engine::router::Route;
use parley_engine::topic::parse_filter;
use parley_engine::trie::{Matches, SubscriptionTree};
use persistence::{NodeTarget, SharedGroupRef};

/// The routes of every node, this one included.
pub struct RouteTable {
    /// This node's id: it never forwards to itself.
    local: u16,
    inner: RwLock<Table>,
}

#[derive(Default)]
struct Table {
    /// Filters to node ids.
    tree: SubscriptionTree,
    /// Each node's routes, to replace or drop them whole.
    by_node: HashMap<u16, HashSet<Route>>,
}

impl Table {
    fn add(&mut self, node: u16, route: Route) {
        let Ok(parsed) = parse_filter(&route.filter) else {
            return;
        };
        if self.by_node.entry(node).or_default().insert(route.clone()) {
            self.tree.subscribe(
                u64::from(node),
                &route.namespace,
                &parsed,
                SubscriptionOptions::default(),
            );
        }
    }

    fn remove(&mut self, node: u16, route: &Route) {
        let Some(routes) = self.by_node.get_mut(&node) else {
            return;
        };
        if routes.remove(route) {
            if let Ok(parsed) = parse_filter(&route.filter) {
                self.tree
                    .unsubscribe(u64::from(node), &route.namespace, &parsed);
            }
        }
        if routes.is_empty() {
            self.by_node.remove(&node);
        }
    }

    fn clear(&mut self, node: u16) {
        for route in self.by_node.remove(&node).unwrap_or_default() {
            if let Ok(parsed) = parse_filter(&route.filter) {
                self.tree
                    .unsubscribe(u64::from(node), &route.namespace, &parsed);
            }
        }
    }
}

impl RouteTable {
    /// An empty table of node `local`.
    pub fn new(local: u16) -> RouteTable {
        RouteTable {
            local,
            inner: RwLock::new(Table::default()),
        }
    }

    /// This node's id.
    pub fn local(&self) -> u16 {
        self.local
    }

    /// Node `node` has a subscription to `route`.
    pub fn add(&self, node: u16, route: Route) {
        self.write().add(node, route);
    }

    /// Node `node` no longer has a subscription to `route`.
    pub fn remove(&self, node: u16, route: &Route) {
        self.write().remove(node, route);
    }

    /// Node `node`'s routes are exactly `routes` from now on.
    pub fn replace(&self, node: u16, routes: impl IntoIterator<Item = Route>) {
        let mut table = self.write();
        table.clear(node);
        for route in routes {
            table.add(node, route);
        }
    }

    /// Forgets every route of node `node` (it died or left).
    pub fn clear(&self, node: u16) {
        self.write().clear(node);
    }

    /// Node `node`'s routes.
    pub fn routes_of(&self, node: u16) -> Vec<Route> {
        self.read()
            .by_node
            .get(&node)
            .map(|routes| routes.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The nodes that have routes.
    pub fn nodes(&self) -> Vec<u16> {
        self.read().by_node.keys().copied().collect()
    }

    /// (node, route) entries in the table.
    pub fn len(&self) -> usize {
        self.read().by_node.values().map(HashSet::len).sum()
    }

    /// Whether no node has a route.
    pub fn is_empty(&self) -> bool {
        self.read().by_node.is_empty()
    }

    /// The other nodes a publish to `topic` must reach, each with the
    /// shared groups it delivers to; empty if none.
    ///
    /// - A node with a plain subscription matching `topic` gets it.
    /// - A shared group gets it once in the cluster: from this node if it
    ///   has a member here (the engine delivers it locally), otherwise from
    ///   one node with members, taken in turn (the group's round robin over
    ///   nodes), which delivers to one of its members.
    pub fn targets(&self, topic: &str) -> Vec<NodeTarget> {
        let mut matches = Matches::default();
        self.read().tree.matches(topic, &mut matches);
        let mut targets: BTreeMap<u16, Vec<SharedGroupRef>> = BTreeMap::new();
        for (node, _) in matches.direct {
            let node = node as u16;
            if node != self.local {
                targets.entry(node).or_default();
            }
        }
        for pick in matches.shared {
            let local = u64::from(self.local);
            if pick.members.iter().any(|(node, _)| *node == local) {
                continue;
            }
            let Some((node, _)) = pick.members.get(pick.start % pick.members.len().max(1)) else {
                continue;
            };
            targets
                .entry(*node as u16)
                .or_default()
                .push(SharedGroupRef {
                    namespace: pick.group.namespace.to_string(),
                    filter: pick.group.filter.to_string(),
                });
        }
        targets
            .into_iter()
            .map(|(node, shared)| NodeTarget { node, shared })
            .collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Table> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Table> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn plain(filter: &str) -> Route {
        Route {
            filter: Arc::from(filter),
            namespace: Arc::from(""),
        }
    }

    fn shared(filter: &str, namespace: &str) -> Route {
        Route {
            filter: Arc::from(filter),
            namespace: Arc::from(namespace),
        }
    }

    fn nodes(targets: &[NodeTarget]) -> Vec<u16> {
        targets.iter().map(|t| t.node).collect()
    }

    #[test]
    fn plain_filters_name_every_other_node_that_matches() {
        let table = RouteTable::new(1);
        table.add(1, plain("sensors/#"));
        table.add(2, plain("sensors/+/temp"));
        table.add(3, plain("other/#"));
        table.add(4, plain("sensors/k1/temp"));
        assert_eq!(nodes(&table.targets("sensors/k1/temp")), [2, 4]);
        assert_eq!(nodes(&table.targets("sensors/k2/temp")), [2]);
        assert!(table.targets("nothing/here").is_empty());
        assert!(table.targets("sensors/x").is_empty(), "only node 1 matches");
        assert!(table.targets("$SYS/x").is_empty() && table.len() == 4);
        table.remove(2, &plain("sensors/+/temp"));
        assert_eq!(nodes(&table.targets("sensors/k2/temp")), Vec::<u16>::new());
        table.clear(4);
        assert!(table.targets("sensors/k1/temp").is_empty());
        let mut left = table.nodes();
        left.sort_unstable();
        assert_eq!(left, [1, 3]);
    }

    #[test]
    fn a_shared_group_is_served_here_if_it_has_a_member_here_else_by_one_node_in_turn() {
        let table = RouteTable::new(1);
        table.add(2, shared("$share/g/jobs/#", "alice"));
        table.add(3, shared("$share/g/jobs/#", "alice"));
        let mut served = Vec::new();
        for _ in 0..4 {
            let targets = table.targets("jobs/1");
            assert_eq!(targets.len(), 1, "one node serves the group");
            assert_eq!(
                targets[0].shared,
                [SharedGroupRef {
                    namespace: "alice".into(),
                    filter: "$share/g/jobs/#".into()
                }]
            );
            served.push(targets[0].node);
        }
        assert_eq!(served, [2, 3, 2, 3], "the nodes take turns");
        table.add(1, shared("$share/g/jobs/#", "alice"));
        assert!(
            table.targets("jobs/1").is_empty(),
            "a local member serves it"
        );
        table.replace(1, Vec::new());
        assert_eq!(table.targets("jobs/1").len(), 1);
    }
}
