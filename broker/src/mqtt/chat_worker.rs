//! One connection's chat publishes, handled off the connection loop.
//!
//! A connection hands each chat publish (`s/`, `r/`, `t/`, `q/`) to its
//! [`ChatWorker`], which begins them in arrival order and reports each
//! outcome back, in that same order, for the acknowledgement. Meanwhile the
//! connection loop goes on reading the socket and delivering to the client,
//! so a client's own inbox does not wait behind its sends' durable commits.
//!
//! Messages are pipelined: beginning one queues it for the history's group
//! commit (which fixes its seq order) without waiting for the commit, so up
//! to `[chat] max_pipelined_sends` of one connection are on their way to disk
//! at once. Their outcomes are still reported strictly in arrival order, each
//! only once its commit is durable, so PUBACKs leave in publish order. At the
//! bound the worker takes no more publishes; once [`MAX_PENDING_CHAT`] more
//! are waiting, [`ChatWorker::submit`] blocks and the connection stops reading
//! (backpressure; nothing is dropped). A message over its sender's rate
//! limit is held while it is begun (`[chat] rate_limit_max_wait_ms`), so the
//! ones after it wait their turn and the same backpressure slows the client
//! instead of refusing it. Everything other than a message is
//! handled completely when it is begun (after the messages before it were
//! queued); an edit or delete first waits for the connection's earlier
//! publishes to finish, as it reads the entry it changes.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use chat_core::ids::UserId;
use futures::stream::{FuturesOrdered, StreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::inbound::PendingChat;
use crate::chat::{Begun, ChatAck, ChatService, SendChecks};
use crate::metrics::Metrics;

/// How many chat publishes of one connection may wait for the worker, beyond
/// those it has begun, before the connection stops reading from its socket
/// (backpressure).
pub const MAX_PENDING_CHAT: usize = 64;

/// The outcome of one chat publish, for its acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChatDone {
    /// QoS of the client's publish.
    pub qos: u8,
    /// Packet id to acknowledge (0 for QoS 0).
    pub pkid: u16,
    /// What the chat pipeline answered.
    pub ack: ChatAck,
}

/// The connection's side of its chat worker task.
pub struct ChatWorker {
    jobs: mpsc::Sender<PendingChat>,
    done: mpsc::UnboundedReceiver<ChatDone>,
    task: JoinHandle<()>,
    /// Submitted publishes whose outcome has not been taken yet.
    in_flight: usize,
    /// When the last outcome was taken (or the worker started).
    last_done: Instant,
}

impl ChatWorker {
    /// Starts the worker for `user`'s connection.
    pub fn start(chat: Arc<ChatService>, metrics: Arc<Metrics>, user: UserId) -> ChatWorker {
        let (jobs, queue) = mpsc::channel::<PendingChat>(MAX_PENDING_CHAT);
        let (report, done) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            run(&chat, &metrics, &user, queue, &report).await;
        });
        ChatWorker {
            jobs,
            done,
            task,
            in_flight: 0,
            last_done: Instant::now(),
        }
    }

    /// Queues a publish, waiting while [`MAX_PENDING_CHAT`] are already
    /// queued behind the ones the worker has begun.
    /// `false` if the worker has stopped (it only does when it panicked).
    pub async fn submit(&mut self, job: PendingChat) -> bool {
        let queued = self.jobs.send(job).await.is_ok();
        self.in_flight += usize::from(queued);
        queued
    }

    /// Waits for the next outcome, then takes every other one already there.
    pub async fn finished(&mut self, into: &mut Vec<ChatDone>) {
        let before = into.len();
        match self.done.recv().await {
            Some(done) => into.push(done),
            // Only when the worker is gone: never wake the connection again.
            None => std::future::pending().await,
        }
        while let Ok(done) = self.done.try_recv() {
            into.push(done);
        }
        self.in_flight = self.in_flight.saturating_sub(into.len() - before);
        self.last_done = Instant::now();
    }

    /// Queues a publish if there is room at once; otherwise hands it back
    /// (`Err(Some(job))`, for [`ChatWorker::submit`] to wait with), or
    /// `Err(None)` if the worker has stopped.
    // The publish itself comes back in the error, unboxed: boxing it would
    // cost the allocation this fast path exists to avoid.
    #[allow(clippy::result_large_err)]
    pub fn try_submit(&mut self, job: PendingChat) -> Result<(), Option<PendingChat>> {
        match self.jobs.try_send(job) {
            Ok(()) => {
                self.in_flight += 1;
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(job)) => Err(Some(job)),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(None),
        }
    }

    /// Takes every outcome already there without waiting; `true` if there
    /// was any. The connection calls it before it writes, so that
    /// acknowledgements finished meanwhile leave in the same write as the
    /// deliveries that woke it.
    pub fn take_finished(&mut self, into: &mut Vec<ChatDone>) -> bool {
        let before = into.len();
        while let Ok(done) = self.done.try_recv() {
            into.push(done);
        }
        let taken = into.len() - before;
        if taken > 0 {
            self.in_flight = self.in_flight.saturating_sub(taken);
            self.last_done = Instant::now();
        }
        taken > 0
    }

    /// How long the worker has had nothing to report.
    pub fn idle_for(&self) -> std::time::Duration {
        self.last_done.elapsed()
    }

    /// Waits until every submitted publish has its outcome in `into`.
    pub async fn settle(&mut self, into: &mut Vec<ChatDone>) {
        while self.in_flight > 0 {
            let before = into.len();
            match self.done.recv().await {
                Some(done) => into.push(done),
                None => break,
            }
            while let Ok(done) = self.done.try_recv() {
                into.push(done);
            }
            self.in_flight = self.in_flight.saturating_sub(into.len() - before);
        }
    }

    /// Whether submitted publishes still await their outcome.
    pub fn is_busy(&self) -> bool {
        self.in_flight > 0
    }

    /// Lets the worker finish what was queued, then ends it.
    pub async fn close(self) {
        drop(self.jobs);
        let _ = self.task.await;
    }
}

/// A begun publish: resolves to its outcome and when it was begun. Only a
/// message's commit is boxed (by [`ChatService::begin`]); this wrapper is not,
/// so a message costs one allocation here rather than two.
struct Unfinished<'a> {
    outcome: Outcome<'a>,
    qos: u8,
    pkid: u16,
    started: Instant,
}

/// What a begun publish is answered with.
enum Outcome<'a> {
    /// A message on its way to disk.
    Committing(Pin<Box<dyn Future<Output = ChatAck> + Send + 'a>>),
    /// Handled already.
    Known(ChatAck),
}

impl Future for Unfinished<'_> {
    type Output = (ChatDone, Instant);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let ack = match &mut this.outcome {
            Outcome::Committing(commit) => std::task::ready!(commit.as_mut().poll(cx)),
            Outcome::Known(ack) => *ack,
        };
        let done = ChatDone {
            qos: this.qos,
            pkid: this.pkid,
            ack,
        };
        Poll::Ready((done, this.started))
    }
}

/// The worker task: begins queued publishes in order while fewer than
/// `max_pipelined_sends` are unfinished, and reports outcomes in that order.
/// Ends once the queue is closed and everything begun has been reported.
async fn run(
    chat: &ChatService,
    metrics: &Metrics,
    user: &UserId,
    mut queue: mpsc::Receiver<PendingChat>,
    report: &mpsc::UnboundedSender<ChatDone>,
) {
    let most = chat.max_pipelined_sends();
    let mut unfinished: FuturesOrdered<Unfinished<'_>> = FuturesOrdered::new();
    let mut checks = SendChecks::new();
    let mut open = true;
    // A connection that is gone no longer needs the answers; what it queued
    // is still handled (a client that did not get its acknowledgement
    // resends, and retries are idempotent).
    let finished = |(done, started): (ChatDone, Instant)| {
        metrics.chat_send_took(started.elapsed());
        let _ = report.send(done);
    };
    loop {
        tokio::select! {
            // Outcomes first: they free room and release acknowledgements.
            biased;
            Some(outcome) = unfinished.next(), if !unfinished.is_empty() => finished(outcome),
            job = queue.recv(), if open && unfinished.len() < most => {
                let Some(job) = job else {
                    open = false;
                    continue;
                };
                let started = job.received;
                let (qos, pkid) = (job.qos, job.pkid);
                // Earlier publishes go on finishing meanwhile: beginning this
                // one may wait for them (a group change's fan-out on the
                // cluster bus is released after earlier entries of its
                // conversation), and their acknowledgements need not wait.
                let mut begun = {
                    let begin = chat.begin(user, job.publish, unfinished.is_empty(), &mut checks);
                    tokio::pin!(begin);
                    loop {
                        tokio::select! {
                            biased;
                            begun = &mut begin => break begun,
                            Some(outcome) = unfinished.next(), if !unfinished.is_empty() => {
                                finished(outcome)
                            }
                        }
                    }
                };
                if let Begun::AfterEarlier(publish) = begun {
                    while let Some(outcome) = unfinished.next().await {
                        finished(outcome);
                    }
                    begun = chat.begin(user, publish, true, &mut checks).await;
                }
                let outcome = match begun {
                    Begun::Committing(commit) => Outcome::Committing(commit),
                    Begun::Done(ack) => Outcome::Known(ack),
                    // Begun alone it is not deferred again; handled in full all the same.
                    Begun::AfterEarlier(publish) => Outcome::Known(chat.handle(user, publish).await),
                };
                unfinished.push_back(Unfinished {
                    outcome,
                    qos,
                    pkid,
                    started,
                });
            }
            else => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;
    use bytes::Bytes;
    use chat_core::topics::ChatTopic;
    use parley_engine::router::{Router, RouterConfig};
    use parley_proto::v1::{self, chat_message::Body};
    use persistence::embedded::EmbeddedStore;
    use persistence::{
        AppendRequest, Appended, Direction, HistoryStore, MetadataStore, NewUser, PageRequest,
        PendingAppend, StoreError, StoredMessage,
    };
    use tokio::sync::watch;

    use super::*;
    use crate::chat::{ChatPublish, ChatStores};
    use crate::config::ChatConfig;

    /// A history store whose enqueued appends take their place at once but
    /// report nothing until the gate opens, counting how many are pending.
    struct GatedHistory {
        inner: Arc<EmbeddedStore>,
        gate: watch::Receiver<bool>,
        /// Appends enqueued and not yet reported, and the most there were at once.
        pending: Arc<Mutex<(usize, usize)>>,
        /// How many appends were enqueued so far.
        enqueued: watch::Sender<usize>,
    }

    #[async_trait]
    impl HistoryStore for GatedHistory {
        async fn append(&self, request: AppendRequest) -> Result<Appended, StoreError> {
            self.enqueue(request).await.await
        }

        async fn enqueue(&self, request: AppendRequest) -> PendingAppend {
            let stored = HistoryStore::enqueue(&*self.inner, request).await;
            {
                let mut pending = self.pending.lock().unwrap();
                pending.0 += 1;
                pending.1 = pending.1.max(pending.0);
            }
            self.enqueued.send_modify(|n| *n += 1);
            let (mut gate, pending) = (self.gate.clone(), self.pending.clone());
            Box::pin(async move {
                let outcome = stored.await;
                gate.wait_for(|open| *open).await.expect("gate kept");
                pending.lock().unwrap().0 -= 1;
                outcome
            })
        }

        async fn fetch(
            &self,
            conversation_id: &str,
            page: PageRequest,
        ) -> Result<Vec<StoredMessage>, StoreError> {
            HistoryStore::fetch(&*self.inner, conversation_id, page).await
        }

        async fn get(
            &self,
            conversation_id: &str,
            seq: u64,
        ) -> Result<Option<StoredMessage>, StoreError> {
            HistoryStore::get(&*self.inner, conversation_id, seq).await
        }

        async fn last_seq(&self, conversation_id: &str) -> Result<u64, StoreError> {
            HistoryStore::last_seq(&*self.inner, conversation_id).await
        }
    }

    struct Fixture {
        chat: Arc<ChatService>,
        store: Arc<EmbeddedStore>,
        open_gate: watch::Sender<bool>,
        enqueued: watch::Receiver<usize>,
        pending: Arc<Mutex<(usize, usize)>>,
        _dir: tempfile::TempDir,
    }

    async fn fixture(max_pipelined_sends: usize) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        for user in ["alice", "bob", "carol"] {
            store
                .create_user(NewUser {
                    username: user.into(),
                    password_hash: "x".into(),
                    created_at_ms: 1,
                })
                .await
                .unwrap();
        }
        let (open_gate, gate) = watch::channel(false);
        let (enqueued_tx, enqueued) = watch::channel(0);
        let pending = Arc::new(Mutex::new((0, 0)));
        let history = GatedHistory {
            inner: store.clone(),
            gate,
            pending: pending.clone(),
            enqueued: enqueued_tx,
        };
        let router = Arc::new(Router::new(RouterConfig::default()));
        let stores = ChatStores {
            metadata: store.clone(),
            history: Arc::new(history),
            offline: store.clone(),
        };
        let config = ChatConfig {
            messages_per_sec: 1e6,
            message_burst: 1_000_000,
            message_requests: false,
            max_pipelined_sends,
            ..ChatConfig::default()
        };
        let publisher = crate::publisher::ServerPublisher::new(router);
        let chat = Arc::new(ChatService::new(0, stores, publisher, config).unwrap());
        Fixture {
            chat,
            store,
            open_gate,
            enqueued,
            pending,
            _dir: dir,
        }
    }

    fn send(conversation: &str, client_message_id: &str, pkid: u16) -> PendingChat {
        let payload = parley_proto::encode_envelope(
            &v1::ChatMessage {
                client_message_id: client_message_id.into(),
                body: Some(Body::Text(v1::Text {
                    text: format!("text of {client_message_id}"),
                })),
                ..Default::default()
            }
            .into(),
        );
        PendingChat {
            publish: ChatPublish {
                topic: ChatTopic::parse(&format!("s/{conversation}"))
                    .unwrap()
                    .unwrap(),
                payload: Bytes::from(payload),
                properties: None,
            },
            qos: 1,
            pkid,
            received: Instant::now(),
        }
    }

    async fn client_ids(store: &EmbeddedStore, conversation: &str) -> Vec<String> {
        let page = PageRequest {
            after_seq: 0,
            before_seq: u64::MAX,
            limit: usize::MAX,
            direction: Direction::Forward,
        };
        let stored = HistoryStore::fetch(store, conversation, page)
            .await
            .unwrap();
        let seqs: Vec<u64> = stored.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, (1..=stored.len() as u64).collect::<Vec<_>>());
        stored.into_iter().map(|m| m.client_message_id).collect()
    }

    #[tokio::test]
    async fn one_connection_has_many_sends_in_flight_and_acks_them_in_order() {
        let mut f = fixture(32).await;
        let mut worker = ChatWorker::start(
            f.chat.clone(),
            Arc::new(Metrics::new()),
            UserId::parse("alice").unwrap(),
        );
        // Two conversations, interleaved: 20 sends, pkids 1..=20.
        let mut expected = (Vec::new(), Vec::new());
        for i in 0..20u16 {
            let (conversation, ids) = if i % 2 == 0 {
                ("alice~bob", &mut expected.0)
            } else {
                ("alice~carol", &mut expected.1)
            };
            let id = format!("m{i}");
            ids.push(id.clone());
            assert!(worker.submit(send(conversation, &id, i + 1)).await);
        }
        // Every one is queued for its commit while none has been reported.
        f.enqueued.wait_for(|n| *n == 20).await.unwrap();
        assert!(worker.is_busy());
        assert_eq!(f.pending.lock().unwrap().0, 20, "all 20 in flight at once");

        f.open_gate.send(true).unwrap();
        let mut done = Vec::new();
        worker.settle(&mut done).await;
        let pkids: Vec<u16> = done.iter().map(|d| d.pkid).collect();
        assert_eq!(pkids, (1..=20).collect::<Vec<_>>(), "acks in publish order");
        assert!(done.iter().all(|d| d.ack == ChatAck::Success), "{done:?}");
        assert_eq!(client_ids(&f.store, "alice~bob").await, expected.0);
        assert_eq!(client_ids(&f.store, "alice~carol").await, expected.1);
        worker.close().await;
    }

    #[tokio::test]
    async fn try_submit_hands_back_a_publish_when_the_queue_is_full() {
        let mut f = fixture(1).await;
        let mut worker = ChatWorker::start(
            f.chat.clone(),
            Arc::new(Metrics::new()),
            UserId::parse("alice").unwrap(),
        );
        assert!(worker.try_submit(send("alice~bob", "m0", 1)).is_ok());
        // The worker has begun m0 and, at one pipelined send, takes no more.
        f.enqueued.wait_for(|n| *n == 1).await.unwrap();
        for i in 1..=MAX_PENDING_CHAT as u16 {
            assert!(worker
                .try_submit(send("alice~bob", &format!("m{i}"), i + 1))
                .is_ok());
        }
        let extra = MAX_PENDING_CHAT as u16 + 1;
        let refused = worker.try_submit(send("alice~bob", &format!("m{extra}"), extra + 1));
        let Err(Some(handed_back)) = refused else {
            panic!("a full queue hands the publish back");
        };
        assert_eq!(handed_back.pkid, extra + 1);
        let mut done = Vec::new();
        assert!(!worker.take_finished(&mut done), "nothing is stored yet");
        assert!(done.is_empty());

        f.open_gate.send(true).unwrap();
        assert!(worker.submit(handed_back).await);
        while worker.is_busy() {
            if !worker.take_finished(&mut done) {
                worker.finished(&mut done).await;
            }
        }
        let pkids: Vec<u16> = done.iter().map(|d| d.pkid).collect();
        assert_eq!(pkids, (1..=extra + 1).collect::<Vec<_>>(), "acks in order");
        assert!(done.iter().all(|d| d.ack == ChatAck::Success), "{done:?}");
        assert!(!worker.take_finished(&mut done), "every outcome was taken");
        let ids: Vec<String> = (0..=extra).map(|i| format!("m{i}")).collect();
        assert_eq!(client_ids(&f.store, "alice~bob").await, ids);
        worker.close().await;
    }

    #[tokio::test]
    async fn sends_in_flight_are_bounded_and_the_rest_wait() {
        let mut f = fixture(4).await;
        let mut worker = ChatWorker::start(
            f.chat.clone(),
            Arc::new(Metrics::new()),
            UserId::parse("alice").unwrap(),
        );
        for i in 0..10u16 {
            assert!(
                worker
                    .submit(send("alice~bob", &format!("m{i}"), i + 1))
                    .await
            );
        }
        f.enqueued.wait_for(|n| *n == 4).await.unwrap();
        f.open_gate.send(true).unwrap();
        let mut done = Vec::new();
        worker.settle(&mut done).await;
        let pkids: Vec<u16> = done.iter().map(|d| d.pkid).collect();
        assert_eq!(pkids, (1..=10).collect::<Vec<_>>());
        assert_eq!(*f.enqueued.borrow(), 10);
        assert_eq!(
            f.pending.lock().unwrap().1,
            4,
            "never more than max_pipelined_sends in flight"
        );
        let ids: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
        assert_eq!(client_ids(&f.store, "alice~bob").await, ids);
        worker.close().await;
    }

    #[tokio::test]
    async fn an_edit_waits_for_the_sends_before_it() {
        let mut f = fixture(32).await;
        let mut worker = ChatWorker::start(
            f.chat.clone(),
            Arc::new(Metrics::new()),
            UserId::parse("alice").unwrap(),
        );
        assert!(worker.submit(send("alice~bob", "m0", 1)).await);
        assert!(worker.submit(send("alice~bob", "m1", 2)).await);
        let edit = parley_proto::encode_envelope(
            &v1::ChatMessage {
                client_message_id: "e0".into(),
                action: v1::MessageAction::Edit as i32,
                target_seq: 1,
                body: Some(Body::Text(v1::Text {
                    text: "edited".into(),
                })),
                ..Default::default()
            }
            .into(),
        );
        let mut edit_job = send("alice~bob", "e0", 3);
        edit_job.publish.payload = Bytes::from(edit);
        assert!(worker.submit(edit_job).await);
        assert!(worker.submit(send("alice~bob", "m2", 4)).await);
        // The edit is not begun while m0 and m1 are unreported.
        f.enqueued.wait_for(|n| *n == 2).await.unwrap();
        f.open_gate.send(true).unwrap();
        let mut done = Vec::new();
        worker.settle(&mut done).await;
        let pkids: Vec<u16> = done.iter().map(|d| d.pkid).collect();
        assert_eq!(pkids, vec![1, 2, 3, 4]);
        assert!(done.iter().all(|d| d.ack == ChatAck::Success), "{done:?}");
        assert_eq!(
            client_ids(&f.store, "alice~bob").await,
            ["m0", "m1", "e0", "m2"]
        );
        assert_eq!(
            f.pending.lock().unwrap().1,
            2,
            "the edit began only once m0 and m1 were finished"
        );
        worker.close().await;
    }
}
