//! One chat user on the lean client ([`crate::mqtt::lean`]): a single task
//! owns the user's connection and, for a sender, its send schedule too. A
//! message goes from its stamp into the connection's write buffer without a
//! channel hop; what one wake-up produced (publishes, PUBACKs for
//! deliveries, a ping) leaves in one write, and the PUBACKs and inbox
//! deliveries of one read are handled together.
//!
//! Measured as on the rumqttc client: the stamp's send time is taken when
//! the schedule releases the message, before it is queued to the
//! connection; PUBACK latency runs from it to the moment this task decodes
//! the PUBACK. Up to [`SEND_QUEUE`] released messages wait behind a full
//! in-flight window (the size of the rumqttc client's request queue) before
//! the schedule holds back, and a sender whose messages still cannot be
//! queued a drain timeout after its window gives up, as before.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use super::inbox::Inbox;
use super::layout::UserPlan;
use super::wire::{self, MessageStamp, OpenAnswer};
use super::{on_inbox, ChatConfig, Go, Ready, SenderStats, Shared, UserResult};
use crate::credentials::Login;
use crate::mqtt::endpoint::Endpoint;
use crate::mqtt::lean::{LeanConnection, LeanEvent, LeanSpec};
use crate::mqtt::Qos;
use crate::payload::Clock;
use crate::progress::{Counters, OpenConnection};

/// Released messages that may wait for room in the in-flight window.
pub const SEND_QUEUE: usize = 64;

/// What each publish of a user carries back with its PUBACK.
#[derive(Debug, Clone, Copy)]
enum Tag {
    /// A chat message sent at this time (bench clock).
    Message { sent_nanos: u64 },
    /// The request that opens the conversation.
    Request,
}

/// Everything one user's task needs.
pub(super) struct LeanUser {
    /// Who the user is.
    pub user: UserPlan,
    /// The broker node this user connects to.
    pub target: SocketAddr,
    /// MQTT client id.
    pub client_id: String,
    /// The user's login.
    pub login: Option<Login>,
    /// The run's settings.
    pub cfg: Arc<ChatConfig>,
    /// The run's shared state.
    pub shared: Arc<Shared>,
    /// Told once the user is connected, subscribed and (as its first
    /// member) has opened its conversation.
    pub ready: Ready,
    /// The start signal with each conversation's topic.
    pub go: watch::Receiver<Option<Go>>,
    /// Sent to (or dropped) when a sender has sent its last message.
    pub sending_done: Option<oneshot::Sender<()>>,
}

/// A sender's schedule: message `seq` is due at `start + seq / rate`.
struct Schedule {
    sender: u32,
    topic: String,
    start: Instant,
    rate: f64,
    deadline: Instant,
    /// Past this, messages that still find the queue full are not sent.
    give_up: Instant,
    seq: u64,
}

impl Schedule {
    fn due(&self) -> Instant {
        self.start + Duration::from_secs_f64(self.seq as f64 / self.rate)
    }
}

/// The user's state between wake-ups.
struct Session<'a> {
    user: &'a UserPlan,
    shared: &'a Shared,
    stats: Option<&'a SenderStats>,
    inbox_topic: String,
    answer_topic: String,
    request_id: String,
    ready: Option<Ready>,
    subscriptions_pending: usize,
    result: UserResult,
}

/// Runs one user until the run stops or its connection fails.
pub(super) async fn run(task: LeanUser) -> UserResult {
    let LeanUser {
        user,
        target,
        client_id,
        login,
        cfg,
        shared,
        ready,
        mut go,
        mut sending_done,
    } = task;
    let mut session = Session {
        user: &user,
        shared: &shared,
        stats: user.sender.and_then(|id| shared.senders.get(id as usize)),
        inbox_topic: format!("u/{}/i", user.name),
        answer_topic: format!("a/{}", user.name),
        request_id: format!("{}-create-{}", shared.run, user.conversation),
        ready: Some(ready),
        subscriptions_pending: if user.opens { 2 } else { 1 },
        result: UserResult {
            inbox: Inbox::into_sinks(&shared.run, user.index, &shared.inbox_latency)
                .on_nodes(shared.nodes),
            ack_latency: shared.ack_latency.recorder(),
            last_ack: None,
        },
    };
    let spec = LeanSpec {
        endpoint: Endpoint {
            target,
            source: None,
            version: cfg.target.version,
            client_id: &client_id,
            login: login.as_ref(),
            keepalive: cfg.target.keepalive,
        },
        inflight: cfg.inflight,
    };
    let connected = tokio::select! {
        _ = shared.stop.cancelled() => return session.result,
        connected = tokio::time::timeout(cfg.connect_timeout, LeanConnection::connect(&spec)) => connected,
    };
    let mut conn = match connected {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => return session.fail(format!("connection: {e}")),
        Err(_) => {
            return session.fail(format!(
                "connection: no CONNACK within {:?}",
                cfg.connect_timeout
            ))
        }
    };
    let _open = OpenConnection::new(&shared.counters);
    let subscribed = conn
        .subscribe(&session.inbox_topic, Qos::AtLeastOnce)
        .and_then(|_| {
            if user.opens {
                conn.subscribe(&session.answer_topic, Qos::AtLeastOnce)
                    .map(drop)
            } else {
                Ok(())
            }
        })
        .and_then(|_| conn.flush());
    if let Err(e) = subscribed {
        return session.fail(format!("subscribe: {e}"));
    }

    let mut events = Vec::new();
    let mut schedule: Option<Schedule> = None;
    let mut waiting_for_go = user.sender.is_some();
    let timer = tokio::time::sleep_until(Instant::now());
    tokio::pin!(timer);
    let mut timer_at = None;
    let failure = loop {
        // Wake for the next due message, or, while the queue is full, to
        // give up in time.
        let wake_at = schedule.as_ref().map(|s| {
            if conn.waiting() < SEND_QUEUE {
                s.due()
            } else {
                s.give_up
            }
        });
        if let Some(at) = wake_at.filter(|at| timer_at != Some(*at)) {
            timer.as_mut().reset(at);
            timer_at = Some(at);
        }
        tokio::select! {
            biased;
            _ = shared.stop.cancelled() => break None,
            io = conn.ready() => {
                if let Err(e) = io.and_then(|()| conn.poll(&mut events)) {
                    break Some(format!("connection: {e}"));
                }
            }
            started = go.wait_for(Option::is_some), if waiting_for_go => {
                waiting_for_go = false;
                let started = started.ok().and_then(|signal| signal.clone());
                match (started, user.sender) {
                    (Some(go), Some(sender)) => {
                        let start = go.start;
                        let deadline = start + cfg.duration;
                        schedule = Some(Schedule {
                            sender,
                            topic: go.topics[user.conversation].clone(),
                            start,
                            rate: cfg.rate,
                            deadline,
                            give_up: deadline + cfg.drain_timeout,
                            seq: 0,
                        });
                    }
                    _ => drop(sending_done.take()),
                }
            }
            _ = &mut timer, if wake_at.is_some() => {}
        }
        if let Some(reason) = events
            .drain(..)
            .find_map(|event| session.on_event(&mut conn, event))
        {
            break Some(reason);
        }
        if let Some(s) = schedule.as_mut() {
            if session.release_due(&mut conn, s) {
                schedule = None;
                if let Some(done) = sending_done.take() {
                    let _ = done.send(());
                }
            }
        }
        if let Err(e) = conn.flush() {
            break Some(format!("connection: {e}"));
        }
    };
    if let Some(reason) = failure {
        return session.fail(reason);
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), conn.disconnect()).await;
    session.result
}

impl Session<'_> {
    /// Reports `reason` (to the run's setup if the user is not ready yet,
    /// else as an error) and ends the user.
    fn fail(mut self, reason: String) -> UserResult {
        match self.ready.take() {
            Some(tx) => {
                let _ = tx.send(Err(reason));
            }
            None => self
                .shared
                .counters
                .errors
                .record(format!("user connection {reason}")),
        }
        self.result
    }

    /// Handles one event; `Some(reason)` if the user cannot go on.
    fn on_event(
        &mut self,
        conn: &mut LeanConnection<Tag>,
        event: LeanEvent<Tag>,
    ) -> Option<String> {
        let shared = self.shared;
        let counters = &shared.counters;
        match event {
            LeanEvent::SubAck { refused: None, .. } => {
                self.subscriptions_pending = self.subscriptions_pending.saturating_sub(1);
                if self.subscriptions_pending > 0 {
                    None
                } else if self.user.opens {
                    self.open_conversation(conn)
                } else {
                    if let Some(tx) = self.ready.take() {
                        let _ = tx.send(Ok(None));
                    }
                    None
                }
            }
            LeanEvent::SubAck {
                refused: Some(reason),
                ..
            } => Some(format!("subscription refused: {reason}")),
            LeanEvent::Acked(Tag::Message { sent_nanos }) => {
                if let Some(stats) = self.stats {
                    self.result
                        .ack_latency
                        .record(Clock::global().since(sent_nanos));
                    self.result.last_ack = Some(StdInstant::now());
                    Counters::bump(&stats.acked);
                    Counters::bump(&counters.acked);
                    shared.settled_one();
                }
                None
            }
            LeanEvent::Acked(Tag::Request) => None,
            LeanEvent::Rejected {
                tag: Tag::Message { .. },
                ..
            } => {
                if let Some(stats) = self.stats {
                    Counters::bump(&stats.rejected_acks);
                    shared.settled_one();
                }
                None
            }
            LeanEvent::Rejected {
                tag: Tag::Request,
                reason,
            } => self
                .ready
                .is_some()
                .then(|| format!("opening request rejected: {reason}")),
            LeanEvent::Message { topic, payload } => {
                if topic == self.inbox_topic {
                    on_inbox(&payload, &mut self.result.inbox, shared);
                    None
                } else if topic == self.answer_topic {
                    match wire::open_answer(&payload, &self.request_id) {
                        Ok(OpenAnswer::Opened(id)) => {
                            if let Some(tx) = self.ready.take() {
                                let _ = tx.send(Ok(Some(id)));
                            }
                            None
                        }
                        Ok(OpenAnswer::Refused(e)) => Some(format!(
                            "opening the conversation refused: {} {}",
                            e.code, e.message
                        )),
                        Ok(OpenAnswer::NotOurs) => None,
                        Err(e) => Some(format!("answer on {}: {e}", self.answer_topic)),
                    }
                } else {
                    counters
                        .errors
                        .record(format!("message on an unexpected topic {topic}"));
                    None
                }
            }
        }
    }

    /// Publishes the first member's request that opens the conversation;
    /// `Some(reason)` if it can't.
    fn open_conversation(&self, conn: &mut LeanConnection<Tag>) -> Option<String> {
        let plan = &self.shared.plan;
        let conversation = &plan.conversations[self.user.conversation];
        let others = conversation
            .members
            .iter()
            .filter(|m| **m != self.user.index)
            .map(|m| plan.users[*m].name.clone())
            .collect();
        let payload = wire::open_request(&self.request_id, &conversation.key, others);
        conn.publish(
            &format!("q/{}", self.user.name),
            Qos::AtLeastOnce,
            payload.into(),
            Tag::Request,
        )
        .err()
        .map(|e| format!("opening request: {e}"))
    }

    /// Stamps and queues every message that is due, as long as the queue
    /// behind the window has room; `true` once the sender is done.
    fn release_due(&mut self, conn: &mut LeanConnection<Tag>, schedule: &mut Schedule) -> bool {
        let shared = self.shared;
        let counters = &shared.counters;
        let Some(stats) = self.stats else {
            return true;
        };
        let clock = Clock::global();
        let now = Instant::now();
        loop {
            let due = schedule.due();
            if due >= schedule.deadline {
                return true;
            }
            if due > now {
                return false;
            }
            if conn.waiting() >= SEND_QUEUE {
                if now < schedule.give_up {
                    return false;
                }
                counters
                    .errors
                    .record("publish: client queue still full after the drain timeout");
                return true;
            }
            let stamp = MessageStamp {
                sender: schedule.sender,
                seq: schedule.seq,
                sent_nanos: clock.now_nanos(),
            };
            let payload =
                wire::chat_message(stamp.client_message_id(&shared.run), shared.text_size);
            let tag = Tag::Message {
                sent_nanos: stamp.sent_nanos,
            };
            if let Err(e) = conn.publish(&schedule.topic, Qos::AtLeastOnce, payload.into(), tag) {
                counters.errors.record(format!("publish: {e}"));
                return true;
            }
            Counters::bump(&stats.sent);
            Counters::bump(&counters.sent);
            schedule.seq += 1;
        }
    }
}
