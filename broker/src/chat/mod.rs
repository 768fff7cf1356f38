//! The chat pipeline: what Parley does with publishes to the chat topics.
//! chat-core decides (ids, membership rules, limits); this module executes:
//! it reads and writes the stores and publishes results through the router.
//!
//! - [`send`]: `s/{conv}` messages: validate, store durably, then fan out
//!   (in `seq` order per conversation, see [`ordering`]); several of one
//!   connection can be on their way to disk at once ([`ChatService::begin`]).
//! - [`receipts`]: `r/{conv}` delivered/read cursors, relayed to members.
//! - [`typing`]: `t/{conv}` typing indicators, relayed, never stored.
//! - [`requests`]: `q/{user}` requests (sync, history, groups), answered on `a/{user}`.
//! - [`events`]: group changes stored and delivered as conversation entries.
//! - [`presence`]: online/offline on `p/{user}`, retained.
//! - `push`: new messages handed to push notifications for members without
//!   a live session on this node.

mod cache;
pub mod consent;
mod consent_cache;
mod convert;
mod errors;
mod events;
mod ordering;
mod own_reads;
pub mod presence;
mod push;
mod receipts;
mod requests;
mod send;
mod send_checks;
mod typing;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use chat_core::ids::UserId;
use chat_core::message_id::MessageIdGenerator;
use chat_core::topics::{inbox_topic, ChatTopic};
use parley_proto::v1::{envelope::Kind, Envelope};
use persistence::{HistoryStore, MetadataStore, OfflineQueue};
use rumqttd::protocol::PublishProperties;

use crate::cluster::{Deliveries, Outgoing};
use crate::config::ChatConfig;
use crate::publisher::ServerPublisher;
use cache::ConversationCache;
pub use errors::{ChatAck, ChatError};
use ordering::DeliveryOrder;
use presence::PresenceTracker;
pub use rate::RateLimited;
use rate::RateLimits;
pub use send_checks::SendChecks;

mod rate;

/// A publish to a chat topic, as the connection hands it over.
#[derive(Debug)]
pub struct ChatPublish {
    /// The chat topic published to.
    pub topic: ChatTopic,
    /// The payload (a protobuf `Envelope`).
    pub payload: Bytes,
    /// MQTT 5 properties (response topic and correlation data for requests).
    pub properties: Option<PublishProperties>,
}

/// How far [`ChatService::begin`] got with a publish.
pub enum Begun<'a> {
    /// Handled completely: acknowledge it with this.
    Done(ChatAck),
    /// A message queued for its durable commit: the future resolves to its
    /// acknowledgement once it is on disk and handed to delivery.
    Committing(Pin<Box<dyn Future<Output = ChatAck> + Send + 'a>>),
    /// An edit or delete, which reads the entry it changes: begin it again,
    /// with `alone`, once every publish begun before it has finished.
    AfterEarlier(ChatPublish),
}

/// The stores the chat pipeline works on.
#[derive(Clone)]
pub struct ChatStores {
    /// Users and conversations.
    pub metadata: Arc<dyn MetadataStore>,
    /// The message log.
    pub history: Arc<dyn HistoryStore>,
    /// Delivered cursors.
    pub offline: Arc<dyn OfflineQueue>,
}

/// The chat pipeline of one node. Shared by all connections.
pub struct ChatService {
    stores: ChatStores,
    /// Answers to a client's own requests and errors: always this node's router.
    publisher: ServerPublisher,
    /// Fan-outs to members (messages, receipts, typing, presence): this
    /// node's router, or the cluster bus.
    deliveries: Deliveries,
    config: ChatConfig,
    ids: Mutex<MessageIdGenerator>,
    conversations: ConversationCache,
    /// New entries' fan-outs, released in `seq` order.
    delivery: DeliveryOrder<Outgoing>,
    rates: RateLimits,
    /// Who is online, driving `p/{user}`; a listener of the node's sessions.
    pub presence: Arc<PresenceTracker>,
    /// Push notifications to members without a live session; `None` when off.
    push: Option<crate::push::PushService>,
    /// Senders' cursors moved by their own entries, on their way to the store.
    own_reads: Arc<own_reads::OwnReads>,
    /// Who accepted and blocked whom, cached briefly.
    relations: Arc<consent_cache::RelationCache>,
    /// What pairs of users share, cached briefly.
    shared: Arc<consent_cache::SharedCache>,
    /// Conversations reported by their members.
    reports: consent::Reports,
    /// Where users are connected across the cluster; unset on a single node.
    cluster: OnceLock<Arc<dyn UserNodes>>,
}

/// Where a user is connected across a cluster (the session directory).
pub trait UserNodes: Send + Sync {
    /// The number of nodes with a live session of `user` (0 if none is known).
    fn nodes_of(&self, user: &str) -> usize;
}

impl ChatService {
    /// A chat service for node `node_id` over `stores`, publishing through `publisher`.
    pub fn new(
        node_id: u16,
        stores: ChatStores,
        publisher: ServerPublisher,
        config: ChatConfig,
    ) -> anyhow::Result<ChatService> {
        let deliveries = Deliveries::Local(publisher.clone());
        ChatService::with_deliveries(node_id, stores, publisher, deliveries, config)
    }

    /// Like [`ChatService::new`], with fan-outs to members going to
    /// `deliveries` (the cluster bus) while answers stay on `publisher`.
    pub fn with_deliveries(
        node_id: u16,
        stores: ChatStores,
        publisher: ServerPublisher,
        deliveries: Deliveries,
        config: ChatConfig,
    ) -> anyhow::Result<ChatService> {
        let ids = MessageIdGenerator::new(node_id).ok_or_else(|| {
            anyhow::anyhow!("node_id {node_id} is too large for message ids (max 1023)")
        })?;
        let fan_out = deliveries.clone();
        let own_reads = Arc::new(own_reads::OwnReads::new(Duration::from_millis(
            config.own_read_interval_ms,
        )));
        Ok(ChatService {
            conversations: ConversationCache::new(stores.metadata.clone()),
            delivery: DeliveryOrder::new(move |outgoing| fan_out.send(outgoing)),
            rates: RateLimits::new(&config),
            presence: Arc::new(PresenceTracker::new(deliveries.clone())),
            stores,
            publisher,
            deliveries,
            config,
            ids: Mutex::new(ids),
            push: None,
            own_reads,
            relations: Arc::default(),
            shared: Arc::default(),
            reports: consent::Reports::default(),
            cluster: OnceLock::new(),
        })
    }

    /// Handles one chat publish by `user`; the answer says how to acknowledge it.
    pub async fn handle(&self, user: &UserId, publish: ChatPublish) -> ChatAck {
        let result = match &publish.topic {
            ChatTopic::Send(conv) => self.send(user, conv, &publish.payload).await,
            ChatTopic::Receipt(conv) => self.receipt(user, conv, &publish.payload).await,
            ChatTopic::Typing(conv) => self.typing(user, conv, &publish.payload).await,
            ChatTopic::Request(_) => {
                self.request(user, &publish.payload, publish.properties.as_ref())
                    .await
            }
            _ => Err(ChatError::not_allowed("not a client topic")),
        };
        self.answer(user, &publish.topic, result)
    }

    /// Starts one chat publish by `user` without waiting for a message's
    /// durable commit (see [`Begun`]). Publishes begun one after another take
    /// effect in that order: messages get seqs in it, and whatever else is
    /// handled completely before `begin` returns. `alone` says that nothing
    /// this connection began earlier is still unfinished; `checks` are the
    /// connection's kept message checks.
    pub async fn begin<'a>(
        &'a self,
        user: &UserId,
        publish: ChatPublish,
        alone: bool,
        checks: &mut SendChecks,
    ) -> Begun<'a> {
        let ChatTopic::Send(conv) = &publish.topic else {
            return Begun::Done(self.handle(user, publish).await);
        };
        match self
            .start_send(user, conv, &publish.payload, alone, checks)
            .await
        {
            Ok(send::SendStart::Queued(queued)) => {
                let (user, topic) = (user.clone(), publish.topic);
                Begun::Committing(Box::pin(async move {
                    let result = (*queued).finish().await;
                    self.answer(&user, &topic, result)
                }))
            }
            Ok(send::SendStart::Answered) => Begun::Done(ChatAck::Success),
            Ok(send::SendStart::AfterEarlier) => Begun::AfterEarlier(publish),
            Err(error) => Begun::Done(self.answer(user, &publish.topic, Err(error))),
        }
    }

    /// Most messages one connection may have on their way to disk at once
    /// (`[chat] max_pipelined_sends`).
    pub fn max_pipelined_sends(&self) -> usize {
        self.config.max_pipelined_sends.max(1)
    }

    /// The acknowledgement for `result`; a refusal is logged and, except for
    /// typing indicators, reported to `user`'s inbox.
    fn answer(&self, user: &UserId, topic: &ChatTopic, result: Result<(), ChatError>) -> ChatAck {
        match result {
            Ok(()) => ChatAck::Success,
            Err(error) => {
                tracing::warn!(%user, topic = %topic.topic(), code = ?error.code, reason = %error.message, "chat publish refused");
                let ack = error.ack();
                if !matches!(topic, ChatTopic::Typing(_)) {
                    self.send_error(user, error);
                }
                ack
            }
        }
    }

    /// Conversation `id` changed on another node: the next use reloads it.
    pub fn forget_conversation(&self, id: &str) {
        self.conversations.forget(id);
    }

    /// Joins the cluster's view of where users are connected: a user's rate
    /// budgets are shared by the nodes their sessions are on, and push skips
    /// users with a session on any node. Set once, at start-up.
    pub fn share_with_cluster(&self, nodes: Arc<dyn UserNodes>) {
        self.rates.share_with(nodes.clone());
        let _ = self.cluster.set(nodes);
    }

    /// Whether `user` has a live session on this node or, in a cluster, on any node.
    pub fn is_online_anywhere(&self, user: &UserId) -> bool {
        self.presence.is_online(user)
            || self
                .cluster
                .get()
                .is_some_and(|nodes| nodes.nodes_of(user.as_str()) > 0)
    }

    /// Chat publishes refused by the per-user rate limits since the node started.
    pub fn rate_limited(&self) -> RateLimited {
        self.rates.refused()
    }

    /// Sends `notice` to `user`'s inbox, wherever in the cluster they are
    /// connected (nothing is queued for an offline user).
    pub fn notify(&self, user: &UserId, notice: parley_proto::v1::Notice) {
        let envelope = Envelope {
            kind: Some(Kind::Notice(notice)),
        };
        self.deliveries.send_and_forget(
            user.as_str(),
            1,
            crate::cluster::Fanout::new(
                vec![inbox_topic(user)],
                parley_proto::encode_envelope(&envelope).into(),
            ),
        );
    }

    /// Publishes an `Error` envelope to the user's inbox.
    fn send_error(&self, user: &UserId, error: ChatError) {
        let envelope = Envelope {
            kind: Some(Kind::Error(error.into_proto())),
        };
        self.publisher.publish(
            &inbox_topic(user),
            parley_proto::encode_envelope(&envelope).into(),
            false,
        );
    }

    fn next_message_id(&self) -> u64 {
        let mut ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        ids.next(now_ms())
    }
}

/// Wall-clock milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl crate::cluster::ClusterEvents for ChatService {
    fn conversation_changed(&self, id: &str) {
        self.forget_conversation(id);
    }
}
