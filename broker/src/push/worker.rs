//! The push worker: takes message events off the queue, looks up the
//! recipients' push targets, and delivers one notification per device, at
//! most `push.max_in_flight` at a time, retrying failed tries with
//! exponential backoff up to `push.max_attempts` tries.
//!
//! A delivery is taken off the queue only when a slot is free, so a slow
//! notifier fills the queue (and the chat path then drops, see
//! `super::queue`) instead of piling up tasks. With one slot, notifications
//! go out in queue order.

use std::sync::Arc;
use std::time::Duration;

use persistence::MetadataStore;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::event::{MessageEvent, Notification};
use super::notifier::Notifier;
use super::queue::PushStats;
use super::request::{self, Outcome};
use crate::hex;

/// How many tries a notification gets and how long to wait between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in all, the first included (at least 1).
    pub max_attempts: u32,
    /// Wait after the first failed try.
    pub initial_backoff: Duration,
    /// Longest wait.
    pub max_backoff: Duration,
}

impl RetryPolicy {
    /// The wait after failed try number `attempt` (1-based): the initial
    /// backoff, doubled per further try, capped at the maximum.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        self.initial_backoff
            .saturating_mul(1u32 << doublings)
            .min(self.max_backoff)
    }
}

/// Everything deliveries share.
pub struct Worker {
    store: Arc<dyn MetadataStore>,
    notifier: Notifier,
    client: reqwest::Client,
    stats: Arc<PushStats>,
    retry: RetryPolicy,
    slots: Arc<Semaphore>,
}

impl Worker {
    /// A worker reading targets from `store`, sending through `notifier` with
    /// `client`, at most `max_in_flight` at a time.
    pub fn new(
        store: Arc<dyn MetadataStore>,
        notifier: Notifier,
        client: reqwest::Client,
        stats: Arc<PushStats>,
        retry: RetryPolicy,
        max_in_flight: usize,
    ) -> Worker {
        Worker {
            store,
            notifier,
            client,
            stats,
            retry,
            slots: Arc::new(Semaphore::new(max_in_flight.max(1))),
        }
    }

    /// Runs until `shutdown` is cancelled or the queue is closed; deliveries
    /// still under way then are abandoned (push is best effort).
    pub async fn run(self, mut queue: mpsc::Receiver<MessageEvent>, shutdown: CancellationToken) {
        let worker = Arc::new(self);
        let mut deliveries = JoinSet::new();
        loop {
            let event = tokio::select! {
                _ = shutdown.cancelled() => break,
                event = queue.recv() => match event {
                    Some(event) => event,
                    None => break,
                },
            };
            for user in &event.recipients {
                let targets = match worker.store.push_targets(user).await {
                    Ok(targets) => targets,
                    Err(e) => {
                        tracing::warn!(%user, error = %e, "push: could not read push targets");
                        worker.stats.failed();
                        continue;
                    }
                };
                for target in targets {
                    if target.kind != worker.notifier.kind().as_str() {
                        continue;
                    }
                    let Some(delivery_id) = hex::random(16) else {
                        tracing::error!("push: no system randomness for a delivery id");
                        worker.stats.failed();
                        continue;
                    };
                    let permit = tokio::select! {
                        _ = shutdown.cancelled() => return,
                        permit = worker.slots.clone().acquire_owned() => match permit {
                            Ok(permit) => permit,
                            Err(_) => return,
                        },
                    };
                    let named = worker
                        .notifier
                        .names_target()
                        .then(|| target.target.clone());
                    let notification =
                        Notification::new(&event, user, &target.device_id, named, delivery_id);
                    let worker = worker.clone();
                    let stop = shutdown.clone();
                    deliveries.spawn(async move {
                        worker
                            .deliver(notification, target.target, permit, stop)
                            .await;
                    });
                }
            }
            while deliveries.try_join_next().is_some() {}
        }
    }

    /// Delivers one notification, retrying as the policy allows.
    async fn deliver(
        &self,
        notification: Notification,
        target: String,
        _slot: OwnedSemaphorePermit,
        shutdown: CancellationToken,
    ) {
        let mut attempt = 1;
        loop {
            let outcome = match self.notifier.request(&notification, &target).await {
                Ok(request) => request::send(&self.client, &request).await,
                Err(e) => Outcome::Retry(e.to_string()),
            };
            let why = match outcome {
                Outcome::Delivered => {
                    self.stats.delivered();
                    tracing::debug!(user = %notification.user, device = %notification.device_id, attempt, "push delivered");
                    return;
                }
                Outcome::GiveUp(why) => {
                    self.stats.failed();
                    tracing::warn!(user = %notification.user, device = %notification.device_id, attempt, reason = %why, "push refused; not retrying");
                    return;
                }
                Outcome::Retry(why) => why,
            };
            if attempt >= self.retry.max_attempts {
                self.stats.failed();
                tracing::warn!(user = %notification.user, device = %notification.device_id, attempt, reason = %why, "push failed; out of tries");
                return;
            }
            self.stats.retried();
            let wait = self.retry.backoff(attempt);
            tracing::debug!(user = %notification.user, device = %notification.device_id, attempt, reason = %why, ?wait, "push failed; will retry");
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            attempt += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::net::SocketAddr;
    use std::sync::Mutex;

    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;
    use axum::Router;
    use persistence::embedded::EmbeddedStore;
    use persistence::PushTarget;

    use super::*;
    use crate::push::queue::PushQueue;
    use crate::push::webhook::{self, Webhook};

    const SECRET: &str = "worker-test-secret-worker-test-secret";

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let policy = RetryPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(700),
        };
        let waits: Vec<u128> = (1..=5).map(|a| policy.backoff(a).as_millis()).collect();
        assert_eq!(waits, vec![100, 200, 400, 700, 700]);
        assert_eq!(policy.backoff(u32::MAX), Duration::from_millis(700));
    }

    /// One request the receiver got: the recipient named in the body, the
    /// delivery id, and whether the signature checked out.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Received {
        user: String,
        delivery_id: String,
        signed: bool,
    }

    /// A webhook receiver answering, per recipient, a scripted list of
    /// statuses (the last one repeats), and reporting every request.
    #[derive(Clone)]
    struct Receiver {
        script: Arc<Mutex<HashMap<String, Vec<StatusCode>>>>,
        seen: mpsc::UnboundedSender<Received>,
    }

    async fn receive(
        State(r): State<Receiver>,
        headers: HeaderMap,
        body: axum::body::Bytes,
    ) -> StatusCode {
        let json: serde_json::Value = serde_json::from_slice(&body).expect("JSON body");
        let user = json["user"].as_str().expect("user").to_owned();
        let timestamp: u64 = headers[webhook::TIMESTAMP_HEADER]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
        let signed = headers[webhook::SIGNATURE_HEADER].to_str().unwrap()
            == webhook::sign(&key, timestamp, &body);
        let status = {
            let mut script = r.script.lock().unwrap();
            let statuses = script.get_mut(&user).expect("a scripted user");
            if statuses.len() > 1 {
                statuses.remove(0)
            } else {
                statuses[0]
            }
        };
        r.seen
            .send(Received {
                user,
                delivery_id: json["delivery_id"].as_str().unwrap().to_owned(),
                signed,
            })
            .ok();
        status
    }

    struct Fixture {
        queue: PushQueue,
        seen: mpsc::UnboundedReceiver<Received>,
        shutdown: CancellationToken,
        _dir: tempfile::TempDir,
    }

    async fn fixture(script: &[(&str, Vec<StatusCode>)]) -> Fixture {
        let (tx, seen) = mpsc::unbounded_channel();
        let receiver = Receiver {
            script: Arc::new(Mutex::new(
                script
                    .iter()
                    .map(|(u, s)| ((*u).to_owned(), s.clone()))
                    .collect(),
            )),
            seen: tx,
        };
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(receiver);
        tokio::spawn(async move { axum::serve(listener, app).await });

        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn MetadataStore> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        for (user, _) in script {
            store
                .put_push_target(PushTarget {
                    user: (*user).to_owned(),
                    device_id: "phone".into(),
                    kind: "webhook".into(),
                    target: format!("{user}-target"),
                    updated_at_ms: 0,
                })
                .await
                .unwrap();
        }
        let stats = Arc::new(PushStats::default());
        let (queue, rx) = PushQueue::new(16, stats.clone());
        let worker = Worker::new(
            store,
            Notifier::Webhook(Webhook::new(&url, SECRET)),
            reqwest::Client::new(),
            stats,
            RetryPolicy {
                max_attempts: 3,
                initial_backoff: Duration::from_millis(5),
                max_backoff: Duration::from_millis(20),
            },
            1,
        );
        let shutdown = CancellationToken::new();
        tokio::spawn(worker.run(rx, shutdown.clone()));
        Fixture {
            queue,
            seen,
            shutdown,
            _dir: dir,
        }
    }

    fn event_for(user: &str, seq: u64) -> MessageEvent {
        MessageEvent {
            conversation_id: "c".into(),
            sender: "alice".into(),
            seq,
            message_id: seq,
            server_time_ms: 0,
            text: None,
            recipients: vec![user.to_owned()],
        }
    }

    async fn next(seen: &mut mpsc::UnboundedReceiver<Received>) -> Received {
        tokio::time::timeout(Duration::from_secs(10), seen.recv())
            .await
            .expect("a request within 10 s")
            .expect("receiver alive")
    }

    #[tokio::test]
    async fn retries_until_accepted_then_stops() {
        use StatusCode as S;
        let mut f = fixture(&[
            ("flaky", vec![S::SERVICE_UNAVAILABLE, S::OK]),
            ("marker", vec![S::OK]),
        ])
        .await;
        assert!(f.queue.offer(event_for("flaky", 1)));
        assert!(f.queue.offer(event_for("marker", 2)));

        let first = next(&mut f.seen).await;
        let second = next(&mut f.seen).await;
        assert_eq!(first.user, "flaky");
        assert_eq!(second.user, "flaky", "a 503 is retried");
        assert_eq!(
            first.delivery_id, second.delivery_id,
            "same delivery id on retry"
        );
        assert!(first.signed && second.signed, "every try is signed");
        // One slot: the marker goes out only after flaky's delivery ended, so
        // a third try for flaky would have come before it.
        assert_eq!(next(&mut f.seen).await.user, "marker");
        f.shutdown.cancel();
    }

    #[tokio::test]
    async fn gives_up_after_max_attempts_and_on_refusal() {
        use StatusCode as S;
        let mut f = fixture(&[
            ("down", vec![S::INTERNAL_SERVER_ERROR]),
            ("refused", vec![S::BAD_REQUEST]),
            ("marker", vec![S::OK]),
        ])
        .await;
        assert!(f.queue.offer(event_for("down", 1)));
        assert!(f.queue.offer(event_for("refused", 2)));
        assert!(f.queue.offer(event_for("marker", 3)));

        let users: Vec<String> = [
            next(&mut f.seen).await,
            next(&mut f.seen).await,
            next(&mut f.seen).await,
            next(&mut f.seen).await,
            next(&mut f.seen).await,
        ]
        .into_iter()
        .map(|r| r.user)
        .collect();
        assert_eq!(
            users,
            vec!["down", "down", "down", "refused", "marker"],
            "three tries for a 500, one for a 400"
        );
        let stats = f.queue.stats().snapshot();
        assert_eq!(stats.retried, 2);
        assert_eq!(stats.enqueued, 3);
        f.shutdown.cancel();
    }
}
