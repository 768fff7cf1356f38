//! One chat user on the rumqttc client ([`crate::mqtt::client`]), kept to
//! compare against the lean client (`--client rumqttc`): a task per user
//! polls the rumqttc event loop (acknowledgements, inbox deliveries), and a
//! sender's messages come from a second task that queues them into the
//! client's request channel at the configured rate.
//!
//! PUBACK latency runs from the message's stamp (the send time, taken when
//! the sender's schedule releases the message, before it is queued to the
//! client) to the moment this task handles the PUBACK; the lean client
//! measures the same span.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::layout::UserPlan;
use super::wire::{self, MessageStamp, OpenAnswer};
use super::{on_inbox, ChatConfig, Go, Ready, Shared, UserResult};
use crate::mqtt::client::{ClientEvent, Events, Requests};
use crate::mqtt::Qos;
use crate::payload::Clock;
use crate::progress::{Counters, OpenConnection};
use crate::scenario::chat::inbox::Inbox;

/// A publish queued on a connection, in queue order; the connection's
/// `Published(pkid)` events come in the same order.
#[derive(Debug, Clone, Copy)]
pub(super) enum Queued {
    /// A chat message sent at this time (bench clock).
    Message { sent_nanos: u64 },
    /// The request that opens the conversation.
    Request,
}

/// The publishes a user has queued, shared by its two tasks.
pub(super) type Queue = Arc<Mutex<VecDeque<Queued>>>;

fn lock(queue: &Queue) -> std::sync::MutexGuard<'_, VecDeque<Queued>> {
    queue.lock().unwrap_or_else(|e| e.into_inner())
}

/// One user's connection: subscribe, open the conversation if it is its
/// first member, report ready, then record acknowledgements and inbox deliveries until
/// stopped.
pub(super) async fn user_task(
    user: UserPlan,
    requests: Requests,
    mut events: Events,
    queue: Queue,
    shared: Arc<Shared>,
    ready: Ready,
) -> UserResult {
    let counters = &shared.counters;
    let inbox_topic = format!("u/{}/i", user.name);
    let answer_topic = format!("a/{}", user.name);
    let request_id = format!("{}-create-{}", shared.run, user.conversation);
    let mut ready = Some(ready);
    let mut subscriptions_pending = if user.opens { 2 } else { 1 };
    let mut in_flight: HashMap<u16, u64> = HashMap::new();
    let mut result = UserResult {
        inbox: Inbox::into_sinks(&shared.run, user.index, &shared.inbox_latency)
            .on_nodes(shared.nodes),
        ack_latency: shared.ack_latency.recorder(),
        last_ack: None,
    };
    let stats = user.sender.and_then(|id| shared.senders.get(id as usize));
    let clock = Clock::global();
    let mut open = None;
    loop {
        let event = tokio::select! {
            _ = shared.stop.cancelled() => break,
            event = events.next() => event,
        };
        let failure = match event {
            Ok(ClientEvent::Connected) => {
                open.get_or_insert_with(|| OpenConnection::new(counters));
                let mut filters = vec![inbox_topic.as_str()];
                if user.opens {
                    filters.push(answer_topic.as_str());
                }
                filters
                    .into_iter()
                    .find_map(|f| requests.subscribe(f, Qos::AtLeastOnce).err())
                    .map(|e| format!("subscribe: {e}"))
            }
            Ok(ClientEvent::Subscribed { refused: None }) => {
                subscriptions_pending -= 1;
                if subscriptions_pending > 0 {
                    None
                } else if user.opens {
                    open_conversation(&user, &shared, &requests, &queue, &request_id)
                } else {
                    if let Some(tx) = ready.take() {
                        let _ = tx.send(Ok(None));
                    }
                    None
                }
            }
            Ok(ClientEvent::Subscribed {
                refused: Some(reason),
            }) => Some(format!("subscription refused: {reason}")),
            Ok(ClientEvent::Published(pkid)) => {
                if let Some(Queued::Message { sent_nanos }) = lock(&queue).pop_front() {
                    in_flight.insert(pkid, sent_nanos);
                }
                None
            }
            Ok(ClientEvent::Acked(pkid)) => {
                if let (Some(sent), Some(stats)) = (in_flight.remove(&pkid), stats) {
                    result.ack_latency.record(clock.since(sent));
                    result.last_ack = Some(Instant::now());
                    Counters::bump(&stats.acked);
                    Counters::bump(&counters.acked);
                    shared.settled_one();
                }
                None
            }
            Ok(ClientEvent::PublishRejected { pkid, reason }) => {
                match (in_flight.remove(&pkid), stats) {
                    (Some(_), Some(stats)) => {
                        Counters::bump(&stats.rejected_acks);
                        shared.settled_one();
                        None
                    }
                    // The request that opens the conversation.
                    _ if ready.is_some() => Some(format!("opening request rejected: {reason}")),
                    _ => None,
                }
            }
            Ok(ClientEvent::Message { topic, payload }) => {
                if topic == inbox_topic {
                    on_inbox(&payload, &mut result.inbox, &shared);
                    None
                } else if topic == answer_topic {
                    match wire::open_answer(&payload, &request_id) {
                        Ok(OpenAnswer::Opened(id)) => {
                            if let Some(tx) = ready.take() {
                                let _ = tx.send(Ok(Some(id)));
                            }
                            None
                        }
                        Ok(OpenAnswer::Refused(e)) => Some(format!(
                            "opening the conversation refused: {} {}",
                            e.code, e.message
                        )),
                        Ok(OpenAnswer::NotOurs) => None,
                        Err(e) => Some(format!("answer on {answer_topic}: {e}")),
                    }
                } else {
                    counters
                        .errors
                        .record(format!("message on an unexpected topic {topic}"));
                    None
                }
            }
            Ok(_) => None,
            Err(e) => Some(format!("connection: {e}")),
        };
        if let Some(reason) = failure {
            match ready.take() {
                Some(tx) => {
                    let _ = tx.send(Err(reason));
                }
                None => counters.errors.record(format!("user connection {reason}")),
            }
            return result;
        }
    }
    close(&requests, &mut events).await;
    result
}

/// Publishes the first member's request that opens the conversation;
/// `Some(reason)` if it can't.
fn open_conversation(
    user: &UserPlan,
    shared: &Shared,
    requests: &Requests,
    queue: &Queue,
    request_id: &str,
) -> Option<String> {
    let conversation = &shared.plan.conversations[user.conversation];
    let others = conversation
        .members
        .iter()
        .filter(|m| **m != user.index)
        .map(|m| shared.plan.users[*m].name.clone())
        .collect();
    let payload = wire::open_request(request_id, &conversation.key, others);
    lock(queue).push_back(Queued::Request);
    match requests.try_publish(&format!("q/{}", user.name), Qos::AtLeastOnce, payload) {
        Ok(()) => None,
        Err(e) => {
            lock(queue).pop_back();
            Some(format!("opening request: {e}"))
        }
    }
}

/// Sends stamped messages to `topic` at the configured rate once told to go.
pub(super) async fn send_loop(
    requests: Requests,
    queue: Queue,
    sender: u32,
    topic: String,
    cfg: ChatConfig,
    shared: Arc<Shared>,
    mut go: watch::Receiver<Option<Go>>,
) {
    let start = tokio::select! {
        _ = shared.stop.cancelled() => return,
        started = go.wait_for(Option::is_some) => match started {
            Ok(go) => match &*go {
                Some(go) => go.start,
                None => return,
            },
            Err(_) => return,
        },
    };
    let deadline = start + cfg.duration;
    // A publish may wait for room in the client's queue past the window, but
    // not forever.
    let give_up = deadline + cfg.drain_timeout;
    let clock = Clock::global();
    let counters = &shared.counters;
    let Some(stats) = shared.senders.get(sender as usize) else {
        return;
    };
    for seq in 0u64.. {
        let due = start + Duration::from_secs_f64(seq as f64 / cfg.rate);
        if due >= deadline {
            break;
        }
        tokio::select! {
            _ = shared.stop.cancelled() => return,
            _ = tokio::time::sleep_until(due) => {}
        }
        let stamp = MessageStamp {
            sender,
            seq,
            sent_nanos: clock.now_nanos(),
        };
        let payload = wire::chat_message(stamp.client_message_id(&shared.run), shared.text_size);
        // Queued before the request so the connection task always finds it.
        lock(&queue).push_back(Queued::Message {
            sent_nanos: stamp.sent_nanos,
        });
        match tokio::time::timeout_at(
            give_up,
            requests.publish(&topic, Qos::AtLeastOnce, payload.into()),
        )
        .await
        {
            Ok(Ok(())) => {
                Counters::bump(&stats.sent);
                Counters::bump(&counters.sent);
            }
            Ok(Err(e)) => {
                lock(&queue).pop_back();
                return counters.errors.record(format!("publish: {e}"));
            }
            Err(_) => {
                lock(&queue).pop_back();
                return counters
                    .errors
                    .record("publish: client queue still full after the drain timeout");
            }
        }
    }
}

/// Sends DISCONNECT and polls until it is out (or a second passes).
async fn close(requests: &Requests, events: &mut Events) {
    if requests.disconnect().is_err() {
        return;
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        loop {
            match events.next().await {
                Ok(ClientEvent::Disconnected) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
}
