//! One connection's chat publishes, pipelined inside the connection's task.
//!
//! A connection hands each chat publish (`s/`, `r/`, `t/`, `q/`) to its
//! [`ChatPipeline`], which begins them in arrival order and reports each
//! outcome back, in that same order, for the acknowledgement. The
//! connection drives the pipeline from its own loop, next to reading the
//! socket and delivering to the client, so a client's own inbox does not
//! wait behind its sends' durable commits, and a message costs no hand-off
//! to another task on its way in or out: the commit's answer wakes the
//! connection itself, which delivers the message and writes the PUBACK in
//! the same turn.
//!
//! Messages are pipelined: beginning one queues it for the history's group
//! commit (which fixes its seq order) without waiting for the commit, so up
//! to `[chat] max_pipelined_sends` of one connection are on their way to disk
//! at once. Their outcomes are still reported strictly in arrival order, each
//! only once its commit is durable, so PUBACKs leave in publish order. At the
//! bound the pipeline begins no more publishes; once [`MAX_PENDING_CHAT`]
//! more are waiting, it is [full](ChatPipeline::is_full) and the connection
//! stops reading (backpressure; nothing is dropped). A message over its
//! sender's rate limit is held while it is begun (`[chat]
//! rate_limit_max_wait_ms`), so the ones after it wait their turn and the
//! same backpressure slows the client instead of refusing it. Everything
//! other than a message is handled completely when it is begun (after the
//! messages before it were queued); an edit or delete first waits for the
//! connection's earlier publishes to finish, as it reads the entry it
//! changes.
//!
//! The pipeline makes progress only while it is polled
//! ([`ChatPipeline::finished`], [`ChatPipeline::take_finished`],
//! [`ChatPipeline::settle`]); the connection polls it on every turn.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use chat_core::ids::UserId;
use futures::stream::{FuturesOrdered, Stream};

use super::inbound::PendingChat;
use crate::chat::{Begun, ChatAck, ChatPublish, ChatService, SendChecks};
use crate::metrics::Metrics;

/// How many chat publishes of one connection may wait to be begun before the
/// connection stops reading from its socket (backpressure). A read already
/// buffered is still decoded, so the queue may pass this by what one read
/// holds.
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

/// A publish's acknowledgement details, carried from queueing to its outcome.
#[derive(Debug, Clone, Copy)]
struct Ack {
    qos: u8,
    pkid: u16,
    /// When the connection read it.
    started: Instant,
}

/// Beginning one publish; the send checks come back with the result.
type Beginning<'a> = Pin<Box<dyn Future<Output = (Begun<'a>, SendChecks)> + Send + 'a>>;

/// What the pipeline is doing with the publish it begins next.
enum Stage<'a> {
    /// Nothing is being begun.
    Idle,
    /// Beginning a publish; `retried` once it was deferred to run alone.
    Beginning {
        begin: Beginning<'a>,
        ack: Ack,
        retried: bool,
    },
    /// An edit or delete waiting for every publish begun before it.
    AfterEarlier { publish: ChatPublish, ack: Ack },
    /// A publish deferred again when begun alone: handled in full.
    Handling {
        handle: Pin<Box<dyn Future<Output = ChatAck> + Send + 'a>>,
        ack: Ack,
    },
}

/// One connection's chat publishes: queued, being begun, and on their way to
/// disk.
pub struct ChatPipeline<'a> {
    chat: &'a ChatService,
    metrics: &'a Metrics,
    user: &'a UserId,
    /// Most publishes begun and not yet reported.
    most: usize,
    /// Submitted publishes not begun yet, in arrival order.
    queued: VecDeque<PendingChat>,
    stage: Stage<'a>,
    /// The connection's kept send checks; `None` while a begin holds them.
    checks: Option<SendChecks>,
    /// Begun publishes, reported in the order they were begun.
    unfinished: FuturesOrdered<Unfinished<'a>>,
    /// When the last outcome was reported (or the pipeline was made).
    last_done: Instant,
}

impl<'a> ChatPipeline<'a> {
    /// An empty pipeline for `user`'s connection.
    pub fn new(chat: &'a ChatService, metrics: &'a Metrics, user: &'a UserId) -> ChatPipeline<'a> {
        ChatPipeline {
            chat,
            metrics,
            user,
            most: chat.max_pipelined_sends(),
            queued: VecDeque::new(),
            stage: Stage::Idle,
            checks: Some(SendChecks::new()),
            unfinished: FuturesOrdered::new(),
            last_done: Instant::now(),
        }
    }

    /// Queues a publish behind the ones submitted before it. It is begun as
    /// the pipeline is polled.
    pub fn submit(&mut self, job: PendingChat) {
        self.queued.push_back(job);
    }

    /// Whether [`MAX_PENDING_CHAT`] publishes wait to be begun: the
    /// connection reads no more until some are.
    pub fn is_full(&self) -> bool {
        self.queued.len() >= MAX_PENDING_CHAT
    }

    /// Whether submitted publishes still await their outcome.
    pub fn is_busy(&self) -> bool {
        !self.queued.is_empty() || !matches!(self.stage, Stage::Idle) || !self.unfinished.is_empty()
    }

    /// How long the pipeline has had nothing to report.
    pub fn idle_for(&self) -> Duration {
        self.last_done.elapsed()
    }

    /// Works on the publishes until at least one outcome is added to `into`
    /// (with every other one ready by then, in order). Never resolves while
    /// nothing is submitted.
    pub async fn finished(&mut self, into: &mut Vec<ChatDone>) {
        std::future::poll_fn(|cx| self.poll_finished(cx, into)).await;
    }

    /// Works on the publishes as far as they go without waiting and adds
    /// the outcomes ready by then to `into`; `true` if there was any. The
    /// connection calls it before it writes, so that acknowledgements
    /// finished meanwhile leave in the same write as the deliveries that
    /// woke it.
    pub async fn take_finished(&mut self, into: &mut Vec<ChatDone>) -> bool {
        std::future::poll_fn(|cx| Poll::Ready(self.poll_finished(cx, into).is_ready())).await
    }

    /// Begins the submitted publishes as far as they can be begun now,
    /// without taking any outcome: those stay for [`ChatPipeline::finished`]
    /// (which is ready at once if one is), so that the connection, which has
    /// already acknowledged what was finished this turn, is woken for them.
    pub async fn begin_queued(&mut self) {
        std::future::poll_fn(|cx| {
            while self.advance(cx) {}
            Poll::Ready(())
        })
        .await;
    }

    /// Works on the publishes until every submitted one has its outcome in
    /// `into`.
    pub async fn settle(&mut self, into: &mut Vec<ChatDone>) {
        while self.is_busy() {
            self.finished(into).await;
        }
    }

    /// Begins what may be begun and collects finished outcomes; ready if
    /// any outcome was added to `into`.
    fn poll_finished(&mut self, cx: &mut Context<'_>, into: &mut Vec<ChatDone>) -> Poll<()> {
        let before = into.len();
        loop {
            // Outcomes first: they free room and release acknowledgements.
            while let Poll::Ready(Some((done, started))) =
                Pin::new(&mut self.unfinished).poll_next(cx)
            {
                self.metrics.chat_send_took(started.elapsed());
                into.push(done);
            }
            if !self.advance(cx) {
                break;
            }
        }
        if into.len() > before {
            self.last_done = Instant::now();
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Takes the next step of beginning publishes, if one can be taken now;
    /// `false` if the pipeline waits.
    fn advance(&mut self, cx: &mut Context<'_>) -> bool {
        match &mut self.stage {
            Stage::Idle => {
                if self.unfinished.len() >= self.most {
                    return false;
                }
                let Some(job) = self.queued.pop_front() else {
                    return false;
                };
                let ack = Ack {
                    qos: job.qos,
                    pkid: job.pkid,
                    started: job.received,
                };
                let alone = self.unfinished.is_empty();
                self.stage = Stage::Beginning {
                    begin: self.begin(job.publish, alone),
                    ack,
                    retried: false,
                };
                true
            }
            Stage::Beginning {
                begin,
                ack,
                retried,
            } => {
                let Poll::Ready((begun, checks)) = begin.as_mut().poll(cx) else {
                    return false;
                };
                let (ack, retried) = (*ack, *retried);
                self.checks = Some(checks);
                self.stage = Stage::Idle;
                let outcome = match begun {
                    Begun::Committing(commit) => Outcome::Committing(commit),
                    Begun::Done(ack) => Outcome::Known(ack),
                    Begun::AfterEarlier(publish) if !retried => {
                        self.stage = Stage::AfterEarlier { publish, ack };
                        return true;
                    }
                    // Begun alone it is not deferred again; handled in full all the same.
                    Begun::AfterEarlier(publish) => {
                        self.stage = Stage::Handling {
                            handle: Box::pin(self.chat.handle(self.user, publish)),
                            ack,
                        };
                        return true;
                    }
                };
                self.push(outcome, ack);
                true
            }
            Stage::AfterEarlier { .. } => {
                if !self.unfinished.is_empty() {
                    return false;
                }
                let Stage::AfterEarlier { publish, ack } =
                    std::mem::replace(&mut self.stage, Stage::Idle)
                else {
                    unreachable!("matched above");
                };
                self.stage = Stage::Beginning {
                    begin: self.begin(publish, true),
                    ack,
                    retried: true,
                };
                true
            }
            Stage::Handling { handle, ack } => {
                let Poll::Ready(answer) = handle.as_mut().poll(cx) else {
                    return false;
                };
                let ack = *ack;
                self.stage = Stage::Idle;
                self.push(Outcome::Known(answer), ack);
                true
            }
        }
    }

    /// Starts beginning `publish` with the connection's send checks.
    fn begin(&mut self, publish: ChatPublish, alone: bool) -> Beginning<'a> {
        let (chat, user) = (self.chat, self.user);
        let mut checks = self.checks.take().unwrap_or_default();
        Box::pin(async move {
            let begun = chat.begin(user, publish, alone, &mut checks).await;
            (begun, checks)
        })
    }

    /// Adds a begun publish behind the others.
    fn push(&mut self, outcome: Outcome<'a>, ack: Ack) {
        self.unfinished.push_back(Unfinished { outcome, ack });
    }
}

/// A begun publish: resolves to its outcome and when it was read. Only a
/// message's commit is boxed (by [`ChatService::begin`]); this wrapper is not,
/// so a message costs one allocation here rather than two.
struct Unfinished<'a> {
    outcome: Outcome<'a>,
    ack: Ack,
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
            qos: this.ack.qos,
            pkid: this.ack.pkid,
            ack,
        };
        Poll::Ready((done, this.ack.started))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

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
    use crate::chat::ChatStores;
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
        metrics: Metrics,
        alice: UserId,
        _dir: tempfile::TempDir,
    }

    impl Fixture {
        /// A pipeline for alice's connection.
        fn pipeline(&self) -> ChatPipeline<'_> {
            ChatPipeline::new(&self.chat, &self.metrics, &self.alice)
        }

        /// Works on `pipeline` until `n` appends are enqueued in all, then
        /// checks that, with the gate shut, nothing more is begun and
        /// nothing is reported.
        async fn begin_exactly(
            &self,
            pipeline: &mut ChatPipeline<'_>,
            done: &mut Vec<ChatDone>,
            n: usize,
        ) {
            let mut enqueued = self.enqueued.clone();
            drive_until(pipeline, done, enqueued.wait_for(|e| *e == n))
                .await
                .unwrap();
            assert!(!pipeline.take_finished(done).await, "nothing is stored yet");
            assert!(done.is_empty(), "{done:?}");
            assert_eq!(*self.enqueued.borrow(), n, "no more begun");
        }
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
            metrics: Metrics::new(),
            alice: UserId::parse("alice").unwrap(),
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

    /// Works on `pipeline` until `until` resolves, collecting outcomes in `done`.
    async fn drive_until<F: Future>(
        pipeline: &mut ChatPipeline<'_>,
        done: &mut Vec<ChatDone>,
        until: F,
    ) -> F::Output {
        tokio::pin!(until);
        loop {
            tokio::select! {
                biased;
                out = &mut until => return out,
                _ = pipeline.finished(done) => {}
            }
        }
    }

    fn pkids(done: &[ChatDone]) -> Vec<u16> {
        done.iter().map(|d| d.pkid).collect()
    }

    #[tokio::test]
    async fn one_connection_has_many_sends_in_flight_and_acks_them_in_order() {
        let f = fixture(32).await;
        let mut pipeline = f.pipeline();
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
            pipeline.submit(send(conversation, &id, i + 1));
        }
        let mut done = Vec::new();
        // Every one is queued for its commit while none has been reported.
        f.begin_exactly(&mut pipeline, &mut done, 20).await;
        assert!(pipeline.is_busy());
        assert_eq!(f.pending.lock().unwrap().0, 20, "all 20 in flight at once");

        f.open_gate.send(true).unwrap();
        pipeline.settle(&mut done).await;
        assert_eq!(
            pkids(&done),
            (1..=20).collect::<Vec<_>>(),
            "acks in publish order"
        );
        assert!(done.iter().all(|d| d.ack == ChatAck::Success), "{done:?}");
        assert!(!pipeline.is_busy());
        assert_eq!(client_ids(&f.store, "alice~bob").await, expected.0);
        assert_eq!(client_ids(&f.store, "alice~carol").await, expected.1);
    }

    #[tokio::test]
    async fn begin_queued_begins_what_it_can_and_leaves_the_outcomes() {
        let f = fixture(2).await;
        let mut pipeline = f.pipeline();
        for i in 0..3u16 {
            pipeline.submit(send("alice~bob", &format!("m{i}"), i + 1));
        }
        // A begin reads the store, so it may take more than one call: call
        // again on each wake-up until two are begun.
        std::future::poll_fn(|cx| {
            let begun = std::pin::pin!(pipeline.begin_queued()).poll(cx);
            assert!(begun.is_ready(), "begin_queued never waits");
            if *f.enqueued.borrow() >= 2 {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
        pipeline.begin_queued().await;
        assert_eq!(*f.enqueued.borrow(), 2, "begun up to max_pipelined_sends");
        f.open_gate.send(true).unwrap();
        let mut done = Vec::new();
        // begin_queued takes no outcome, so it frees no room for the third;
        // the wait returns the outcomes (and then the third is begun).
        pipeline.begin_queued().await;
        assert_eq!(*f.enqueued.borrow(), 2, "no outcome taken by begin_queued");
        pipeline.finished(&mut done).await;
        assert_eq!(pkids(&done)[0], 1);
        pipeline.settle(&mut done).await;
        assert_eq!(pkids(&done), [1, 2, 3]);
        assert_eq!(*f.enqueued.borrow(), 3);
    }

    #[tokio::test]
    async fn a_pipeline_is_full_once_enough_publishes_wait_to_be_begun() {
        let f = fixture(1).await;
        let mut pipeline = f.pipeline();
        let mut done = Vec::new();
        pipeline.submit(send("alice~bob", "m0", 1));
        // At one pipelined send, m0 is begun and nothing after it.
        f.begin_exactly(&mut pipeline, &mut done, 1).await;
        let last = MAX_PENDING_CHAT as u16;
        for i in 1..=last {
            assert!(!pipeline.is_full(), "{i} waiting");
            pipeline.submit(send("alice~bob", &format!("m{i}"), i + 1));
        }
        assert!(pipeline.is_full());
        f.begin_exactly(&mut pipeline, &mut done, 1).await;
        assert!(pipeline.is_full(), "none begun while m0 is unfinished");

        f.open_gate.send(true).unwrap();
        pipeline.finished(&mut done).await;
        assert!(!pipeline.is_full(), "m0's outcome let the next one begin");
        pipeline.settle(&mut done).await;
        assert_eq!(
            pkids(&done),
            (1..=last + 1).collect::<Vec<_>>(),
            "acks in order"
        );
        assert!(done.iter().all(|d| d.ack == ChatAck::Success), "{done:?}");
        let ids: Vec<String> = (0..=last).map(|i| format!("m{i}")).collect();
        assert_eq!(client_ids(&f.store, "alice~bob").await, ids);
    }

    #[tokio::test]
    async fn sends_in_flight_are_bounded_and_the_rest_wait() {
        let f = fixture(4).await;
        let mut pipeline = f.pipeline();
        for i in 0..10u16 {
            pipeline.submit(send("alice~bob", &format!("m{i}"), i + 1));
        }
        let mut done = Vec::new();
        f.begin_exactly(&mut pipeline, &mut done, 4).await;
        f.open_gate.send(true).unwrap();
        pipeline.settle(&mut done).await;
        assert_eq!(pkids(&done), (1..=10).collect::<Vec<_>>());
        assert_eq!(*f.enqueued.borrow(), 10);
        assert_eq!(
            f.pending.lock().unwrap().1,
            4,
            "never more than max_pipelined_sends in flight"
        );
        let ids: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
        assert_eq!(client_ids(&f.store, "alice~bob").await, ids);
    }

    #[tokio::test]
    async fn an_edit_waits_for_the_sends_before_it() {
        let f = fixture(32).await;
        let mut pipeline = f.pipeline();
        pipeline.submit(send("alice~bob", "m0", 1));
        pipeline.submit(send("alice~bob", "m1", 2));
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
        pipeline.submit(edit_job);
        pipeline.submit(send("alice~bob", "m2", 4));
        let mut done = Vec::new();
        // The edit is not begun while m0 and m1 are unreported.
        f.begin_exactly(&mut pipeline, &mut done, 2).await;
        f.open_gate.send(true).unwrap();
        pipeline.settle(&mut done).await;
        assert_eq!(pkids(&done), vec![1, 2, 3, 4]);
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
    }
}
