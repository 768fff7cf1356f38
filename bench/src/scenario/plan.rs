//! Scenario planning for message load: which client publishes to which
//! topic, which client subscribes to which filter, and which publishers'
//! messages each subscriber should receive.
//!
//! Subscribers take client indexes `0..S`, publishers `S..S+P`; the index
//! picks the client's login and client id.
//!
//! | mode    | publishers        | subscribers                   |
//! |---------|-------------------|-------------------------------|
//! | fan-in  | N → `{root}/in/{i}` | 1 on `{root}/in/+`            |
//! | fan-out | 1 → `{root}/out`    | N on `{root}/out`             |
//! | pairs   | N → `{root}/pair/{i}` | N, subscriber i on `{root}/pair/{i}` |

use std::fmt;

use serde::Serialize;

/// Shape of a message-load scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// N publishers, one subscriber receiving everything.
    FanIn,
    /// One publisher, N subscribers each receiving everything.
    FanOut,
    /// N publisher/subscriber pairs, each on its own topic.
    Pairs,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::FanIn => "fan-in",
            Mode::FanOut => "fan-out",
            Mode::Pairs => "pairs",
        })
    }
}

/// One publishing client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublisherPlan {
    /// Publisher id carried in every payload.
    pub id: u32,
    /// Client index (login, client id).
    pub client_index: usize,
    /// Topic it publishes to.
    pub topic: String,
}

/// One subscribing client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriberPlan {
    /// Client index (login, client id).
    pub client_index: usize,
    /// Filter it subscribes to.
    pub filter: String,
    /// Publisher ids whose every message it should receive.
    pub expects: Vec<u32>,
}

/// Every client of a message-load scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Publishing clients.
    pub publishers: Vec<PublisherPlan>,
    /// Subscribing clients.
    pub subscribers: Vec<SubscriberPlan>,
}

/// A plan that can't be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// Zero clients requested.
    #[error("the scenario needs at least one client")]
    NoClients,
    /// More clients than publisher ids.
    #[error("{0} clients is more than the bench supports")]
    TooManyClients(usize),
    /// The topic root is empty or holds wildcards.
    #[error("topic prefix {0:?} must be non-empty and free of '+', '#' and NUL")]
    BadTopicRoot(String),
}

/// Plans `n` clients (publishers for fan-in, subscribers for fan-out, pairs
/// for pairs) under the topic root `root`.
pub fn plan(mode: Mode, n: usize, root: &str) -> Result<Plan, PlanError> {
    if n == 0 {
        return Err(PlanError::NoClients);
    }
    let max = u32::MAX as usize;
    if n > max {
        return Err(PlanError::TooManyClients(n));
    }
    if root.is_empty() || root.contains(['+', '#', '\0']) {
        return Err(PlanError::BadTopicRoot(root.to_string()));
    }
    let ids = || (0..n).map(|i| i as u32);
    let plan = match mode {
        Mode::FanIn => Plan {
            subscribers: vec![SubscriberPlan {
                client_index: 0,
                filter: format!("{root}/in/+"),
                expects: ids().collect(),
            }],
            publishers: ids()
                .map(|id| PublisherPlan {
                    id,
                    client_index: 1 + id as usize,
                    topic: format!("{root}/in/{id}"),
                })
                .collect(),
        },
        Mode::FanOut => Plan {
            subscribers: (0..n)
                .map(|i| SubscriberPlan {
                    client_index: i,
                    filter: format!("{root}/out"),
                    expects: vec![0],
                })
                .collect(),
            publishers: vec![PublisherPlan {
                id: 0,
                client_index: n,
                topic: format!("{root}/out"),
            }],
        },
        Mode::Pairs => Plan {
            subscribers: ids()
                .map(|id| SubscriberPlan {
                    client_index: id as usize,
                    filter: format!("{root}/pair/{id}"),
                    expects: vec![id],
                })
                .collect(),
            publishers: ids()
                .map(|id| PublisherPlan {
                    id,
                    client_index: n + id as usize,
                    topic: format!("{root}/pair/{id}"),
                })
                .collect(),
        },
    };
    Ok(plan)
}

impl Plan {
    /// Total clients (publishers plus subscribers).
    pub fn client_count(&self) -> usize {
        self.publishers.len() + self.subscribers.len()
    }

    /// Deliveries expected given how many messages each publisher sent.
    pub fn expected_deliveries(&self, sent_by: impl Fn(u32) -> u64) -> u64 {
        self.subscribers
            .iter()
            .flat_map(|s| s.expects.iter())
            .map(|id| sent_by(*id))
            .sum()
    }
}

/// Whether an MQTT topic filter matches a topic name (`+` and `#` wildcards).
pub fn filter_matches(filter: &str, topic: &str) -> bool {
    let mut levels = topic.split('/');
    for f in filter.split('/') {
        match (f, levels.next()) {
            ("#", _) => return true,
            ("+", Some(_)) => {}
            (f, Some(t)) if f == t => {}
            _ => return false,
        }
    }
    levels.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every subscriber's `expects` must be exactly the publishers whose topic its filter matches.
    fn assert_routing_consistent(plan: &Plan) {
        for s in &plan.subscribers {
            let routed: Vec<u32> = plan
                .publishers
                .iter()
                .filter(|p| filter_matches(&s.filter, &p.topic))
                .map(|p| p.id)
                .collect();
            assert_eq!(routed, s.expects, "subscriber {s:?}");
        }
        let mut indexes: Vec<usize> = plan
            .subscribers
            .iter()
            .map(|s| s.client_index)
            .chain(plan.publishers.iter().map(|p| p.client_index))
            .collect();
        indexes.sort_unstable();
        assert_eq!(indexes, (0..plan.client_count()).collect::<Vec<_>>());
    }

    #[test]
    fn fan_in_routes_every_publisher_to_one_subscriber() {
        let plan = plan(Mode::FanIn, 3, "bench/r1").unwrap();
        assert_eq!(plan.subscribers.len(), 1);
        assert_eq!(plan.subscribers[0].filter, "bench/r1/in/+");
        assert_eq!(plan.subscribers[0].expects, [0, 1, 2]);
        let topics: Vec<_> = plan.publishers.iter().map(|p| p.topic.as_str()).collect();
        assert_eq!(topics, ["bench/r1/in/0", "bench/r1/in/1", "bench/r1/in/2"]);
        assert_eq!(plan.expected_deliveries(|id| 10 + u64::from(id)), 33);
        assert_routing_consistent(&plan);
    }

    #[test]
    fn fan_out_routes_one_publisher_to_every_subscriber() {
        let plan = plan(Mode::FanOut, 4, "bench/r1").unwrap();
        assert_eq!(plan.publishers.len(), 1);
        assert_eq!(plan.publishers[0].topic, "bench/r1/out");
        assert_eq!(plan.publishers[0].client_index, 4);
        assert!(plan
            .subscribers
            .iter()
            .all(|s| s.filter == "bench/r1/out" && s.expects == [0]));
        assert_eq!(plan.expected_deliveries(|_| 5), 20);
        assert_routing_consistent(&plan);
    }

    #[test]
    fn pairs_route_each_publisher_to_its_own_subscriber() {
        let plan = plan(Mode::Pairs, 3, "bench/r1").unwrap();
        assert_eq!(plan.client_count(), 6);
        assert_eq!(plan.subscribers[2].filter, "bench/r1/pair/2");
        assert_eq!(plan.subscribers[2].expects, [2]);
        assert_eq!(plan.publishers[2].topic, "bench/r1/pair/2");
        assert_eq!(plan.publishers[2].client_index, 5);
        assert_eq!(plan.expected_deliveries(|_| 7), 21);
        assert_routing_consistent(&plan);
    }

    #[test]
    fn rejects_impossible_plans() {
        assert_eq!(plan(Mode::Pairs, 0, "bench"), Err(PlanError::NoClients));
        assert_eq!(
            plan(Mode::FanIn, 1, "bench/#"),
            Err(PlanError::BadTopicRoot("bench/#".into()))
        );
        assert_eq!(
            plan(Mode::FanIn, 1, ""),
            Err(PlanError::BadTopicRoot(String::new()))
        );
    }

    #[test]
    fn filter_matching_follows_mqtt_rules() {
        assert!(filter_matches("a/+/c", "a/b/c"));
        assert!(filter_matches("a/#", "a/b/c"));
        assert!(!filter_matches("a/+", "a/b/c"));
        assert!(!filter_matches("a/b", "a/b/c"));
        assert!(!filter_matches("a/b/c", "a/b"));
    }
}
