//! One user's view of its inbox `u/{user}/i` during a `chat` run: which
//! messages arrived (per sender, to count losses and duplicates), how long
//! each took from send to delivery, and whether each conversation's `seq`
//! kept increasing by exactly one.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parley_proto::v1::ChatMessage;

use super::layout::ChatPlan;
use super::wire::MessageStamp;
use crate::report::{LatencyRecorder, LatencySink};
use crate::scenario::tracker::{Delivery, SeqTracker};

/// How a delivered message relates to what the run sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arrival {
    /// First delivery of one of the run's messages; `own` if the receiver
    /// sent it.
    First {
        /// The receiver is the sender.
        own: bool,
    },
    /// The message had been delivered before.
    Duplicate,
    /// Not a message of this run (another client's, an earlier run's).
    Foreign,
    /// A message of this run that should not be here or is inconsistent.
    Invalid(String),
}

/// A break in a conversation's sequence numbers as one receiver saw them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqIssue {
    /// `seq` jumped past `expected` (messages in between missing or late).
    Gap {
        /// The next `seq` expected.
        expected: u64,
        /// The `seq` that arrived.
        got: u64,
    },
    /// `seq` went backwards from `last`.
    Reordered {
        /// Highest `seq` seen so far.
        last: u64,
        /// The `seq` that arrived.
        got: u64,
    },
}

impl SeqIssue {
    /// The kind under which the bench counts it.
    pub fn kind(&self) -> &'static str {
        match self {
            SeqIssue::Gap { .. } => "seq gap (a conversation's seq skipped ahead)",
            SeqIssue::Reordered { .. } => "seq reordered (a conversation's seq went backwards)",
        }
    }
}

/// The run's delivery latency histograms, which every inbox adds to.
#[derive(Debug, Clone, Default)]
pub struct InboxLatency {
    /// Send to delivery, every delivery.
    pub latency: LatencySink,
    /// Send to delivery, deliveries to members other than the sender.
    pub peer: LatencySink,
    /// Peer deliveries on the sender's node.
    pub same_node: LatencySink,
    /// Peer deliveries on another node.
    pub cross_node: LatencySink,
}

/// What one receiver saw.
#[derive(Debug)]
pub struct Inbox {
    run: String,
    user: usize,
    /// Send to delivery, every delivery (the sender's own copy included).
    pub latency: LatencyRecorder,
    /// Send to delivery, deliveries to members other than the sender.
    pub peer_latency: LatencyRecorder,
    /// Of those, deliveries to a member on the sender's node, when users
    /// are spread over several nodes ([`Inbox::on_nodes`]).
    pub same_node_latency: LatencyRecorder,
    /// Of those, deliveries to a member on another node than the sender's.
    pub cross_node_latency: LatencyRecorder,
    /// Users are on `nodes` nodes, user `i` on node `i % nodes`.
    nodes: usize,
    /// Messages received, per sender id.
    pub tracker: SeqTracker,
    last_seq: HashMap<String, u64>,
    /// When the last first delivery arrived.
    pub last_delivery: Option<Instant>,
}

impl Inbox {
    /// An empty inbox of user `user` (client index) in run `run`, with
    /// latency histograms of its own.
    pub fn new(run: &str, user: usize) -> Inbox {
        Inbox::into_sinks(run, user, &InboxLatency::default())
    }

    /// An empty inbox of user `user` (client index) in run `run` that adds
    /// its latencies to `sinks` (shared by the run's inboxes).
    pub fn into_sinks(run: &str, user: usize, sinks: &InboxLatency) -> Inbox {
        Inbox {
            run: run.to_string(),
            user,
            latency: sinks.latency.recorder(),
            peer_latency: sinks.peer.recorder(),
            same_node_latency: sinks.same_node.recorder(),
            cross_node_latency: sinks.cross_node.recorder(),
            nodes: 1,
            tracker: SeqTracker::default(),
            last_seq: HashMap::new(),
            last_delivery: None,
        }
    }

    /// Users are spread over `nodes` nodes of a cluster (user `i` on node
    /// `i % nodes`): peer deliveries are also split into same-node and
    /// cross-node ones.
    pub fn on_nodes(mut self, nodes: usize) -> Inbox {
        self.nodes = nodes.max(1);
        self
    }

    /// Adds the latencies recorded so far to the run's histograms.
    pub fn flush_latency(&mut self) {
        self.latency.flush();
        self.peer_latency.flush();
        self.same_node_latency.flush();
        self.cross_node_latency.flush();
    }

    /// The receiving user's client index.
    pub fn user(&self) -> usize {
        self.user
    }

    /// Records a delivered message; `now_nanos` is the bench clock now.
    /// Returns how it relates to the run, and any break in its
    /// conversation's sequence.
    pub fn record(
        &mut self,
        message: &ChatMessage,
        plan: &ChatPlan,
        now_nanos: u64,
    ) -> (Arrival, Option<SeqIssue>) {
        let Some(stamp) = MessageStamp::parse(&message.client_message_id, &self.run) else {
            return (Arrival::Foreign, None);
        };
        if let Some(reason) = self.inconsistency(message, &stamp, plan) {
            return (Arrival::Invalid(reason), None);
        }
        let issue = self.check_seq(&message.conversation_id, message.seq);
        let arrival = match self.tracker.record(stamp.sender, stamp.seq) {
            Delivery::First => {
                let latency = Duration::from_nanos(now_nanos.saturating_sub(stamp.sent_nanos));
                self.latency.record(latency);
                let sender_user = plan.sender_users.get(stamp.sender as usize).copied();
                let own = sender_user == Some(self.user);
                if !own {
                    self.peer_latency.record(latency);
                    if let (Some(sender), true) = (sender_user, self.nodes > 1) {
                        if sender % self.nodes == self.user % self.nodes {
                            self.same_node_latency.record(latency);
                        } else {
                            self.cross_node_latency.record(latency);
                        }
                    }
                }
                self.last_delivery = Some(Instant::now());
                Arrival::First { own }
            }
            Delivery::Duplicate => Arrival::Duplicate,
            Delivery::Invalid => Arrival::Invalid("sequence number out of range".into()),
        };
        (arrival, issue)
    }

    /// Why a message of this run should not be in this inbox as it is.
    fn inconsistency(
        &self,
        message: &ChatMessage,
        stamp: &MessageStamp,
        plan: &ChatPlan,
    ) -> Option<String> {
        let Some(&sender_user) = plan.sender_users.get(stamp.sender as usize) else {
            return Some(format!("unknown sender id {}", stamp.sender));
        };
        let sender = &plan.users[sender_user];
        let mine = plan.users.get(self.user).map(|u| u.conversation);
        if mine != Some(sender.conversation) {
            return Some("message from another conversation".into());
        }
        if message.sender != sender.name {
            return Some(format!(
                "sender field {:?}, expected {:?}",
                message.sender, sender.name
            ));
        }
        if message.seq == 0 {
            return Some("stored message without seq".into());
        }
        None
    }

    /// Checks that `seq` follows the last one seen in `conversation`.
    fn check_seq(&mut self, conversation: &str, seq: u64) -> Option<SeqIssue> {
        match self.last_seq.get_mut(conversation) {
            None => {
                self.last_seq.insert(conversation.to_string(), seq);
                None
            }
            Some(last) if seq == *last + 1 => {
                *last = seq;
                None
            }
            // The same message again: a duplicate, counted as such.
            Some(last) if seq == *last => None,
            Some(last) if seq > *last => {
                let issue = SeqIssue::Gap {
                    expected: *last + 1,
                    got: seq,
                };
                *last = seq;
                Some(issue)
            }
            Some(last) => Some(SeqIssue::Reordered {
                last: *last,
                got: seq,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::layout::{plan, Layout};
    use super::*;

    fn message(
        plan: &ChatPlan,
        sender: u32,
        seq_in_run: u64,
        conv_seq: u64,
        sent: u64,
    ) -> ChatMessage {
        let user = &plan.users[plan.sender_users[sender as usize]];
        ChatMessage {
            client_message_id: MessageStamp {
                sender,
                seq: seq_in_run,
                sent_nanos: sent,
            }
            .client_message_id("run1"),
            sender: user.name.clone(),
            conversation_id: "g1".into(),
            seq: conv_seq,
            ..Default::default()
        }
    }

    #[test]
    fn records_latency_duplicates_and_own_messages() {
        let plan = plan(Layout::Groups { size: 3, count: 2 }, 2, "u", "g").unwrap();
        // User 1 (sender 1) in group 0 with senders 0 and 1.
        let mut inbox = Inbox::new("run1", 1);
        let m = message(&plan, 0, 0, 7, 1_000_000);
        assert_eq!(
            inbox.record(&m, &plan, 3_000_000),
            (Arrival::First { own: false }, None)
        );
        assert_eq!(
            inbox.record(&m, &plan, 4_000_000),
            (Arrival::Duplicate, None)
        );
        let own = message(&plan, 1, 0, 8, 2_000_000);
        assert_eq!(
            inbox.record(&own, &plan, 2_500_000),
            (Arrival::First { own: true }, None)
        );
        assert_eq!(inbox.latency.histogram().len(), 2);
        let peer = inbox.peer_latency.histogram();
        assert_eq!(peer.len(), 1);
        // 2 ms, to the histogram's precision.
        assert!((1990..=2010).contains(&peer.max()));
        assert_eq!(inbox.tracker.unique_from(0), 1);
        assert_eq!(inbox.tracker.missing_from(0, 3), 2);
        assert!(inbox.last_delivery.is_some());
    }

    #[test]
    fn flags_gaps_reorders_and_strangers() {
        let plan = plan(Layout::Groups { size: 3, count: 2 }, 2, "u", "g").unwrap();
        let mut inbox = Inbox::new("run1", 2);
        assert_eq!(inbox.record(&message(&plan, 0, 0, 5, 0), &plan, 1).1, None);
        assert_eq!(inbox.record(&message(&plan, 1, 0, 6, 0), &plan, 1).1, None);
        assert_eq!(
            inbox.record(&message(&plan, 0, 1, 9, 0), &plan, 1).1,
            Some(SeqIssue::Gap {
                expected: 7,
                got: 9
            })
        );
        assert_eq!(
            inbox.record(&message(&plan, 1, 1, 8, 0), &plan, 1),
            (
                Arrival::First { own: false },
                Some(SeqIssue::Reordered { last: 9, got: 8 })
            )
        );
        // Senders 2 and 3 belong to the other group.
        let (arrival, _) = inbox.record(&message(&plan, 2, 0, 1, 0), &plan, 1);
        assert_eq!(
            arrival,
            Arrival::Invalid("message from another conversation".into())
        );
        let mut forged = message(&plan, 0, 2, 10, 0);
        forged.sender = "u1".into();
        assert!(matches!(
            inbox.record(&forged, &plan, 1).0,
            Arrival::Invalid(reason) if reason.contains("sender field")
        ));
        let mut other_run = message(&plan, 0, 3, 11, 0);
        other_run.client_message_id = "run2.0.3.0".into();
        assert_eq!(inbox.record(&other_run, &plan, 1), (Arrival::Foreign, None));
    }
}
