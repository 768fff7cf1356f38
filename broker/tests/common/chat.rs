//! A chat client for the integration tests: one real MQTT connection
//! (3.1.1 or 5, over rumqttc) logged in as one user and subscribed to the
//! user's inbox `u/{me}/i`, typing feed `u/{me}/t` and answers `a/{me}`,
//! with helpers to send messages, receipts, typing and requests, and to wait
//! for what the server delivers.
//!
//! The client drives its own event loop, with no background task: every wait
//! polls it and files each incoming PUBLISH into a queue by topic (inbox,
//! typing, answers, presence, anything else); conversation events, which
//! arrive on the inbox like messages, get a queue of their own. Nothing that arrives while the
//! client waits for something else is lost, and every queue keeps the order
//! in which the server delivered. The `next_*` readers are strict: the next
//! inbox entry must be of the kind asked for, so an unexpected delivery fails
//! the test instead of being skipped. Every wait is bounded by
//! [`within`](super::within).

use std::collections::{HashSet, VecDeque};

use bytes::Bytes;
use chat_core::ids::{ConversationId, UserId};
use parley_proto::v1::{
    chat_message::Body, envelope::Kind, request, response, ChatMessage, Conversation,
    ConversationSummary, CreateGroup, Envelope, Error as ErrorProto, ErrorCode, FetchMessages,
    MessageAction, Presence, Receipt, ReceiptKind, Request, Response, SyncConversations, Text,
    Typing,
};
use parley_proto::{decode_envelope, encode_envelope};
use rumqttc::v5::mqttbytes::v5::PubAckReason;

use super::{sign_up, within, TestNode};

/// The password every user created by [`sign_up_users`] gets.
pub fn password_of(user: &str) -> String {
    format!("{user} password")
}

/// Signs each of `users` up with [`password_of`] as password.
pub async fn sign_up_users(node: &TestNode, users: &[&str]) {
    for user in users {
        sign_up(node, user, &password_of(user)).await;
    }
}

/// The direct conversation id of `a` and `b` (in either order).
pub fn direct(a: &str, b: &str) -> String {
    let a = UserId::parse(a).expect("user id");
    let b = UserId::parse(b).expect("user id");
    ConversationId::direct(&a, &b)
        .expect("two different users")
        .to_string()
}

/// A text message as a client sends it: only the client's fields set.
pub fn text_message(client_message_id: &str, text: &str) -> ChatMessage {
    ChatMessage {
        client_message_id: client_message_id.into(),
        body: Some(Body::Text(Text { text: text.into() })),
        ..ChatMessage::default()
    }
}

/// An edit of message `target_seq` to `text`.
pub fn edit_message(client_message_id: &str, target_seq: u64, text: &str) -> ChatMessage {
    ChatMessage {
        action: MessageAction::Edit as i32,
        target_seq,
        ..text_message(client_message_id, text)
    }
}

/// A delete of message `target_seq`.
pub fn delete_message(client_message_id: &str, target_seq: u64) -> ChatMessage {
    ChatMessage {
        client_message_id: client_message_id.into(),
        action: MessageAction::Delete as i32,
        target_seq,
        ..ChatMessage::default()
    }
}

/// The text of a message's body, if it is a text.
pub fn text_of(message: &ChatMessage) -> Option<&str> {
    match &message.body {
        Some(Body::Text(t)) => Some(&t.text),
        _ => None,
    }
}

/// Asserts that `messages` carry `seq` 1, 2, 3, ... without gaps and
/// pairwise different message ids.
pub fn assert_contiguous_from_1(messages: &[ChatMessage]) {
    let seqs: Vec<u64> = messages.iter().map(|m| m.seq).collect();
    let expected: Vec<u64> = (1..=messages.len() as u64).collect();
    assert_eq!(seqs, expected, "seq must run 1, 2, 3, ... without gaps");
    let ids: HashSet<u64> = messages.iter().map(|m| m.message_id).collect();
    assert_eq!(ids.len(), messages.len(), "message ids must be unique");
}

/// The MQTT version a chat client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// MQTT 3.1.1.
    V4,
    /// MQTT 5.
    V5,
}

/// How the server acknowledged a QoS 1 publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// MQTT 3.1.1: a PUBACK has no reason code (refusals come as `Error` envelopes).
    V4,
    /// MQTT 5: the PUBACK's reason code.
    V5(PubAckReason),
}

impl Ack {
    /// Whether the publish was accepted (every 3.1.1 PUBACK counts as accepted).
    pub fn is_success(self) -> bool {
        matches!(self, Ack::V4 | Ack::V5(PubAckReason::Success))
    }
}

/// A `Response` that arrived on `a/{me}`, with its MQTT 5 correlation data.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The response.
    pub response: Response,
    /// Correlation data of the PUBLISH carrying it (MQTT 5 only).
    pub correlation_data: Option<Bytes>,
}

/// A `Presence` that arrived on a `p/{user}` topic.
#[derive(Debug, Clone)]
pub struct PresenceUpdate {
    /// The topic it came on.
    pub topic: String,
    /// The presence.
    pub presence: Presence,
    /// The PUBLISH's retain flag.
    pub retain: bool,
}

/// How to connect a [`ChatClient`].
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// MQTT version.
    pub proto: Proto,
    /// Account name.
    pub user: String,
    /// Account password.
    pub password: String,
    /// MQTT client id.
    pub client_id: String,
    /// Keep the session across connections (3.1.1 clean session off; MQTT 5
    /// clean start off with a one-hour session expiry).
    pub persistent: bool,
    /// Last will: a plain topic and payload, QoS 1, not retained.
    pub will: Option<(String, String)>,
    /// Subscribe to the inbox, the typing feed and the answers after connecting.
    pub subscribe: bool,
}

impl ClientOptions {
    /// `user` (password [`password_of`]) as `client_id`, clean session, subscribing.
    pub fn new(proto: Proto, user: &str, client_id: &str) -> ClientOptions {
        ClientOptions {
            proto,
            user: user.into(),
            password: password_of(user),
            client_id: client_id.into(),
            persistent: false,
            will: None,
            subscribe: true,
        }
    }

    /// Keeps the session across connections.
    pub fn persistent(mut self) -> ClientOptions {
        self.persistent = true;
        self
    }

    /// Sets a last will on a plain topic.
    pub fn will(mut self, topic: &str, payload: &str) -> ClientOptions {
        self.will = Some((topic.into(), payload.into()));
        self
    }

    /// Does not subscribe to anything after connecting.
    pub fn without_subscriptions(mut self) -> ClientOptions {
        self.subscribe = false;
        self
    }
}

/// The connection of either version (event loops boxed: they are large).
enum Conn {
    V4 {
        client: rumqttc::AsyncClient,
        eventloop: Box<rumqttc::EventLoop>,
    },
    V5 {
        client: rumqttc::v5::AsyncClient,
        eventloop: Box<rumqttc::v5::EventLoop>,
    },
}

/// One poll of the event loop, in version-neutral form.
enum Seen {
    ConnAck {
        accepted: bool,
        session_present: bool,
    },
    Publish(Incoming),
    PubAck {
        pkid: u16,
        ack: Ack,
    },
    SubAck {
        granted: Vec<Option<u8>>,
    },
    SentPublish(u16),
    Other,
}

/// An incoming PUBLISH.
struct Incoming {
    topic: String,
    payload: Bytes,
    retain: bool,
    correlation_data: Option<Bytes>,
}

/// A logged-in chat user over one MQTT connection. Dropping it closes the
/// socket without DISCONNECT (an abrupt end); [`ChatClient::disconnect`]
/// ends politely.
pub struct ChatClient {
    user: String,
    client_id: String,
    conn: Conn,
    /// Whether the server resumed a stored session at CONNECT.
    pub session_present: bool,
    inbox: VecDeque<Envelope>,
    events: VecDeque<ChatMessage>,
    typing: VecDeque<Typing>,
    answers: VecDeque<Answer>,
    presence: VecDeque<PresenceUpdate>,
    other: VecDeque<(String, Bytes)>,
    next_request: u64,
}

impl ChatClient {
    /// Connects `user` (password [`password_of`]) over MQTT 3.1.1 as
    /// `client_id` with a clean session, subscribed to inbox, typing and answers.
    pub async fn v4(node: &TestNode, user: &str, client_id: &str) -> ChatClient {
        ChatClient::connect(node, ClientOptions::new(Proto::V4, user, client_id)).await
    }

    /// Like [`ChatClient::v4`] over MQTT 5.
    pub async fn v5(node: &TestNode, user: &str, client_id: &str) -> ChatClient {
        ChatClient::connect(node, ClientOptions::new(Proto::V5, user, client_id)).await
    }

    /// Connects as `options` say, asserting CONNACK success and (if asked
    /// to subscribe) that every subscription is granted at the asked QoS.
    pub async fn connect(node: &TestNode, options: ClientOptions) -> ChatClient {
        let addr = node.mqtt();
        let keep_alive = std::time::Duration::from_secs(30);
        let conn = match options.proto {
            Proto::V4 => {
                let mut o = rumqttc::MqttOptions::new(
                    options.client_id.clone(),
                    addr.ip().to_string(),
                    addr.port(),
                );
                o.set_credentials(options.user.clone(), options.password.clone());
                o.set_keep_alive(keep_alive);
                o.set_clean_session(!options.persistent);
                if let Some((topic, payload)) = &options.will {
                    o.set_last_will(rumqttc::LastWill::new(
                        topic.clone(),
                        payload.clone(),
                        rumqttc::QoS::AtLeastOnce,
                        false,
                    ));
                }
                let (client, eventloop) = rumqttc::AsyncClient::new(o, 100);
                Conn::V4 {
                    client,
                    eventloop: Box::new(eventloop),
                }
            }
            Proto::V5 => {
                let mut o = rumqttc::v5::MqttOptions::new(
                    options.client_id.clone(),
                    addr.ip().to_string(),
                    addr.port(),
                );
                o.set_credentials(options.user.clone(), options.password.clone());
                o.set_keep_alive(keep_alive);
                o.set_clean_start(!options.persistent);
                if options.persistent {
                    o.set_session_expiry_interval(Some(3600));
                }
                if let Some((topic, payload)) = &options.will {
                    o.set_last_will(rumqttc::v5::mqttbytes::v5::LastWill::new(
                        topic.clone(),
                        payload.clone(),
                        rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                        false,
                        None,
                    ));
                }
                let (client, eventloop) = rumqttc::v5::AsyncClient::new(o, 100);
                Conn::V5 {
                    client,
                    eventloop: Box::new(eventloop),
                }
            }
        };
        let mut chat = ChatClient {
            user: options.user.clone(),
            client_id: options.client_id.clone(),
            conn,
            session_present: false,
            inbox: VecDeque::new(),
            events: VecDeque::new(),
            typing: VecDeque::new(),
            answers: VecDeque::new(),
            presence: VecDeque::new(),
            other: VecDeque::new(),
            next_request: 0,
        };
        let what = format!("CONNACK for {}/{}", options.user, options.client_id);
        let (accepted, session_present) = within(&what, async {
            loop {
                if let Seen::ConnAck {
                    accepted,
                    session_present,
                } = chat.poll(&what).await
                {
                    return (accepted, session_present);
                }
            }
        })
        .await;
        assert!(accepted, "{what}: connection refused");
        chat.session_present = session_present;
        if options.subscribe {
            let me = chat.user.clone();
            let granted = chat
                .subscribe_many(&[
                    (&format!("u/{me}/i"), 1),
                    (&format!("u/{me}/t"), 0),
                    (&format!("a/{me}"), 1),
                ])
                .await;
            assert_eq!(
                granted,
                vec![Some(1), Some(0), Some(1)],
                "{me}'s own chat subscriptions"
            );
        }
        chat
    }

    /// The user this client is logged in as.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Subscribes to `filters` (filter, QoS) in one SUBSCRIBE; the granted
    /// QoS per filter, `None` where refused.
    pub async fn subscribe_many(&mut self, filters: &[(&str, u8)]) -> Vec<Option<u8>> {
        match &self.conn {
            Conn::V4 { client, .. } => client
                .subscribe_many(
                    filters
                        .iter()
                        .map(|(f, q)| rumqttc::SubscribeFilter::new((*f).to_owned(), qos4(*q))),
                )
                .await
                .expect("queue SUBSCRIBE"),
            Conn::V5 { client, .. } => client
                .subscribe_many(filters.iter().map(|(f, q)| {
                    rumqttc::v5::mqttbytes::v5::Filter::new((*f).to_owned(), qos5(*q))
                }))
                .await
                .expect("queue SUBSCRIBE"),
        }
        let what = format!("SUBACK for {filters:?}");
        within(&what, async {
            loop {
                if let Seen::SubAck { granted } = self.poll(&what).await {
                    return granted;
                }
            }
        })
        .await
    }

    /// Subscribes to one filter; the granted QoS, `None` if refused.
    pub async fn subscribe(&mut self, filter: &str, qos: u8) -> Option<u8> {
        let granted = self.subscribe_many(&[(filter, qos)]).await;
        assert_eq!(granted.len(), 1, "one SUBACK code per filter");
        granted[0]
    }

    /// Publishes `payload` on `topic` at `qos` (0 or 1). For QoS 1 waits for
    /// the PUBACK and returns it; for QoS 0 waits until the packet is sent.
    pub async fn publish(&mut self, topic: &str, qos: u8, payload: Vec<u8>) -> Option<Ack> {
        self.publish_inner(topic, qos, payload, None).await
    }

    /// Publishes at QoS 1 over 3.1.1 and waits for the server to close the
    /// connection without acknowledging it (its answer to a message it did
    /// not store, since a 3.1.1 PUBACK cannot carry a failure).
    pub async fn publish_expect_close(&mut self, topic: &str, payload: Vec<u8>) {
        let Conn::V4 { client, eventloop } = &mut self.conn else {
            panic!("only 3.1.1 connections are closed instead of acknowledged")
        };
        client
            .publish(topic, rumqttc::QoS::AtLeastOnce, false, payload)
            .await
            .expect("queue PUBLISH");
        within("the connection to close without PUBACK", async {
            loop {
                match eventloop.poll().await {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(a))) => {
                        panic!("a PUBACK ({a:?}) for a message that was not stored")
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        })
        .await;
    }

    /// Like [`ChatClient::publish`] with MQTT 5 PUBLISH properties.
    pub async fn publish_with_properties(
        &mut self,
        topic: &str,
        payload: Vec<u8>,
        properties: rumqttc::v5::mqttbytes::v5::PublishProperties,
    ) -> Ack {
        self.publish_inner(topic, 1, payload, Some(properties))
            .await
            .expect("QoS 1 is acknowledged")
    }

    async fn publish_inner(
        &mut self,
        topic: &str,
        qos: u8,
        payload: Vec<u8>,
        properties: Option<rumqttc::v5::mqttbytes::v5::PublishProperties>,
    ) -> Option<Ack> {
        match (&self.conn, properties) {
            (Conn::V4 { client, .. }, None) => client
                .publish(topic, qos4(qos), false, payload)
                .await
                .expect("queue PUBLISH"),
            (Conn::V4 { .. }, Some(_)) => panic!("PUBLISH properties need MQTT 5"),
            (Conn::V5 { client, .. }, None) => client
                .publish(topic, qos5(qos), false, payload)
                .await
                .expect("queue PUBLISH"),
            (Conn::V5 { client, .. }, Some(props)) => client
                .publish_with_properties(topic, qos5(qos), false, payload, props)
                .await
                .expect("queue PUBLISH"),
        }
        let what = format!("{} publishing to {topic}", self.user);
        within(&what, async {
            let pkid = loop {
                if let Seen::SentPublish(pkid) = self.poll(&what).await {
                    break pkid;
                }
            };
            if qos == 0 {
                return None;
            }
            loop {
                match self.poll(&what).await {
                    Seen::PubAck { pkid: acked, ack } if acked == pkid => return Some(ack),
                    _ => {}
                }
            }
        })
        .await
    }

    /// Publishes `envelope` on `topic` at QoS 1 and returns the PUBACK.
    pub async fn publish_envelope(&mut self, topic: &str, envelope: Envelope) -> Ack {
        self.publish(topic, 1, encode_envelope(&envelope))
            .await
            .expect("QoS 1 is acknowledged")
    }

    /// Sends `message` to `s/{conv}` and returns the PUBACK.
    pub async fn send(&mut self, conv: &str, message: ChatMessage) -> Ack {
        self.publish_envelope(&format!("s/{conv}"), message.into())
            .await
    }

    /// Sends a text message to `s/{conv}` and returns the PUBACK.
    pub async fn send_text(&mut self, conv: &str, client_message_id: &str, text: &str) -> Ack {
        self.send(conv, text_message(client_message_id, text)).await
    }

    /// Sends a text message, asserts it was accepted and returns the stored
    /// copy that comes back on the sender's own inbox.
    pub async fn say(&mut self, conv: &str, client_message_id: &str, text: &str) -> ChatMessage {
        let ack = self.send_text(conv, client_message_id, text).await;
        assert!(ack.is_success(), "{client_message_id}: {ack:?}");
        let own = self.next_message().await;
        assert_eq!(own.client_message_id, client_message_id, "own copy");
        own
    }

    /// Publishes a receipt to `r/{conv}` and returns the PUBACK.
    pub async fn send_receipt(&mut self, conv: &str, kind: ReceiptKind, up_to_seq: u64) -> Ack {
        let receipt = Receipt {
            kind: kind as i32,
            up_to_seq,
            ..Receipt::default()
        };
        self.publish_envelope(&format!("r/{conv}"), receipt.into())
            .await
    }

    /// Publishes a typing indicator to `t/{conv}` at QoS 0.
    pub async fn send_typing(&mut self, conv: &str, active: bool) {
        let typing = Typing {
            active,
            ..Typing::default()
        };
        self.publish(&format!("t/{conv}"), 0, encode_envelope(&typing.into()))
            .await;
    }

    /// Sends `op` on `q/{me}` with a fresh request id and waits for the
    /// `Response` with that id on `a/{me}`. Every session of the user
    /// receives every answer on `a/{me}`, so the id names the session too.
    pub async fn request(&mut self, op: impl Into<request::Op>) -> Response {
        self.next_request += 1;
        let request_id = format!("{}-{}", self.client_id, self.next_request);
        let topic = format!("q/{}", self.user);
        let ack = self
            .publish_envelope(&topic, Request::new(request_id.clone(), op).into())
            .await;
        assert!(ack.is_success(), "request {request_id}: {ack:?}");
        self.answer(&request_id).await.response
    }

    /// Waits for the answer to `request_id` on `a/{me}`.
    pub async fn answer(&mut self, request_id: &str) -> Answer {
        let what = format!("{}'s answer to {request_id}", self.user);
        within(&what, async {
            loop {
                if let Some(i) = self
                    .answers
                    .iter()
                    .position(|a| a.response.request_id == request_id)
                {
                    return self.answers.remove(i).expect("present");
                }
                self.poll(&what).await;
            }
        })
        .await
    }

    /// Like [`ChatClient::request`], failing the test if the answer is an error.
    pub async fn request_ok(&mut self, op: impl Into<request::Op>) -> response::Result {
        let op = op.into();
        let described = format!("{op:?}");
        match self.request(op).await.result {
            Some(response::Result::Error(e)) => {
                panic!("{} {described} refused: {e:?}", self.user)
            }
            Some(result) => result,
            None => panic!("{} {described}: response without a result", self.user),
        }
    }

    /// Like [`ChatClient::request`], expecting an error answer; returns its code.
    pub async fn request_err(&mut self, op: impl Into<request::Op>) -> ErrorCode {
        let op = op.into();
        let described = format!("{op:?}");
        match self.request(op).await.result {
            Some(response::Result::Error(e)) => e.code(),
            other => panic!(
                "{} {described}: expected an error, got {other:?}",
                self.user
            ),
        }
    }

    /// Creates a group and returns it.
    pub async fn create_group(&mut self, name: &str, members: &[&str]) -> Conversation {
        let op = CreateGroup {
            name: name.into(),
            members: members.iter().map(|m| (*m).to_owned()).collect(),
        };
        match self.request_ok(op).await {
            response::Result::Conversation(c) => c,
            other => panic!("CreateGroup answered with {other:?}"),
        }
    }

    /// Expects a `Conversation` answer to `op`.
    pub async fn conversation_op(&mut self, op: impl Into<request::Op>) -> Conversation {
        match self.request_ok(op).await {
            response::Result::Conversation(c) => c,
            other => panic!("expected a conversation, got {other:?}"),
        }
    }

    /// One page of history.
    pub async fn fetch(&mut self, fetch: FetchMessages) -> (Vec<ChatMessage>, bool) {
        match self.request_ok(fetch).await {
            response::Result::Messages(page) => (page.messages, page.has_more),
            other => panic!("FetchMessages answered with {other:?}"),
        }
    }

    /// The whole history of `conv` (forward pages of 50).
    pub async fn fetch_all(&mut self, conv: &str) -> Vec<ChatMessage> {
        self.fetch_after(conv, 0, 50).await
    }

    /// Every entry after `after_seq`, fetched forward in pages of `limit`.
    pub async fn fetch_after(
        &mut self,
        conv: &str,
        mut after_seq: u64,
        limit: u32,
    ) -> Vec<ChatMessage> {
        let mut all = Vec::new();
        loop {
            let (page, has_more) = self
                .fetch(FetchMessages {
                    conversation_id: conv.into(),
                    after_seq,
                    limit,
                    ..FetchMessages::default()
                })
                .await;
            assert!(
                page.len() <= limit as usize,
                "a page holds at most {limit} entries"
            );
            if let Some(last) = page.last() {
                after_seq = last.seq;
            }
            let empty = page.is_empty();
            all.extend(page);
            if !has_more {
                return all;
            }
            assert!(!empty, "an empty page cannot have more after it");
        }
    }

    /// Every conversation changed after `changed_since_ms`, following page tokens.
    pub async fn sync(&mut self, changed_since_ms: i64) -> Vec<ConversationSummary> {
        let mut all = Vec::new();
        let mut page_token = String::new();
        loop {
            let op = SyncConversations {
                changed_since_ms,
                limit: 0,
                page_token,
            };
            let list = match self.request_ok(op).await {
                response::Result::Conversations(list) => list,
                other => panic!("SyncConversations answered with {other:?}"),
            };
            all.extend(list.items);
            if list.next_page_token.is_empty() {
                return all;
            }
            page_token = list.next_page_token;
        }
    }

    /// The summary of `conv` in a full sync.
    pub async fn summary(&mut self, conv: &str) -> ConversationSummary {
        self.sync(0)
            .await
            .into_iter()
            .find(|s| s.conversation.as_ref().is_some_and(|c| c.id == conv))
            .unwrap_or_else(|| panic!("{conv} missing from {}'s sync", self.user))
    }

    /// The next envelope on the inbox `u/{me}/i`.
    pub async fn next_envelope(&mut self) -> Envelope {
        let what = format!("an envelope on {}'s inbox", self.user);
        within(&what, async {
            loop {
                if let Some(envelope) = self.inbox.pop_front() {
                    return envelope;
                }
                self.poll(&what).await;
            }
        })
        .await
    }

    /// The next conversation event on the inbox (a chat message whose body
    /// is a `ConversationEvent`); they do not appear among the envelopes.
    pub async fn next_event(&mut self) -> ChatMessage {
        let what = format!("a conversation event on {}'s inbox", self.user);
        within(&what, async {
            loop {
                if let Some(event) = self.events.pop_front() {
                    return event;
                }
                self.poll(&what).await;
            }
        })
        .await
    }

    /// The next inbox envelope, which must be a chat message.
    pub async fn next_message(&mut self) -> ChatMessage {
        match self.next_envelope().await.kind {
            Some(Kind::Message(m)) => m,
            other => panic!("{}: expected a message, got {other:?}", self.user),
        }
    }

    /// The next `n` inbox envelopes, which must all be chat messages.
    pub async fn next_messages(&mut self, n: usize) -> Vec<ChatMessage> {
        let mut messages = Vec::with_capacity(n);
        for _ in 0..n {
            messages.push(self.next_message().await);
        }
        messages
    }

    /// The next inbox envelope, which must be a receipt.
    pub async fn next_receipt(&mut self) -> Receipt {
        match self.next_envelope().await.kind {
            Some(Kind::Receipt(r)) => r,
            other => panic!("{}: expected a receipt, got {other:?}", self.user),
        }
    }

    /// The next inbox envelope, which must be an error.
    pub async fn next_error(&mut self) -> ErrorProto {
        match self.next_envelope().await.kind {
            Some(Kind::Error(e)) => e,
            other => panic!("{}: expected an error, got {other:?}", self.user),
        }
    }

    /// The next typing indicator on `u/{me}/t`.
    pub async fn next_typing(&mut self) -> Typing {
        let what = format!("typing on {}'s feed", self.user);
        within(&what, async {
            loop {
                if let Some(typing) = self.typing.pop_front() {
                    return typing;
                }
                self.poll(&what).await;
            }
        })
        .await
    }

    /// The next presence update on any subscribed `p/{user}`.
    pub async fn next_presence(&mut self) -> PresenceUpdate {
        let what = format!("presence for {}", self.user);
        within(&what, async {
            loop {
                if let Some(update) = self.presence.pop_front() {
                    return update;
                }
                self.poll(&what).await;
            }
        })
        .await
    }

    /// The next PUBLISH on a topic outside the chat feeds: (topic, payload).
    pub async fn next_plain(&mut self) -> (String, Bytes) {
        let what = format!("a plain publish for {}", self.user);
        within(&what, async {
            loop {
                if let Some(p) = self.other.pop_front() {
                    return p;
                }
                self.poll(&what).await;
            }
        })
        .await
    }

    /// Asserts that nothing is waiting in any of this client's queues (what
    /// has arrived so far; pair it with a marker to cover what is in flight).
    pub fn assert_nothing_queued(&self) {
        assert!(
            self.inbox.is_empty()
                && self.events.is_empty()
                && self.typing.is_empty()
                && self.answers.is_empty()
                && self.presence.is_empty()
                && self.other.is_empty(),
            "{} has unexpected deliveries: inbox {:?}, events {:?}, typing {:?}, answers {:?}, presence {:?}, other {:?}",
            self.user,
            self.inbox,
            self.events,
            self.typing,
            self.answers,
            self.presence,
            self.other
        );
    }

    /// Sends DISCONNECT and waits for the connection to close.
    pub async fn disconnect(mut self) {
        match &self.conn {
            Conn::V4 { client, .. } => client.disconnect().await.expect("queue DISCONNECT"),
            Conn::V5 { client, .. } => client.disconnect().await.expect("queue DISCONNECT"),
        }
        let what = format!("{}'s connection to close", self.user);
        within(&what, async {
            loop {
                let ended = match &mut self.conn {
                    Conn::V4 { eventloop, .. } => eventloop.poll().await.is_err(),
                    Conn::V5 { eventloop, .. } => eventloop.poll().await.is_err(),
                };
                if ended {
                    return;
                }
            }
        })
        .await
    }

    /// Polls the event loop once, filing any PUBLISH into its queue.
    async fn poll(&mut self, what: &str) -> Seen {
        let seen = match &mut self.conn {
            Conn::V4 { eventloop, .. } => {
                use rumqttc::{Event, Outgoing, Packet, SubscribeReasonCode};
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(ack))) => Seen::ConnAck {
                        accepted: ack.code == rumqttc::ConnectReturnCode::Success,
                        session_present: ack.session_present,
                    },
                    Ok(Event::Incoming(Packet::Publish(p))) => Seen::Publish(Incoming {
                        topic: p.topic.clone(),
                        payload: p.payload.clone(),
                        retain: p.retain,
                        correlation_data: None,
                    }),
                    Ok(Event::Incoming(Packet::PubAck(a))) => Seen::PubAck {
                        pkid: a.pkid,
                        ack: Ack::V4,
                    },
                    Ok(Event::Incoming(Packet::SubAck(a))) => Seen::SubAck {
                        granted: a
                            .return_codes
                            .iter()
                            .map(|c| match c {
                                SubscribeReasonCode::Success(q) => Some(*q as u8),
                                SubscribeReasonCode::Failure => None,
                            })
                            .collect(),
                    },
                    Ok(Event::Outgoing(Outgoing::Publish(pkid))) => Seen::SentPublish(pkid),
                    Ok(_) => Seen::Other,
                    Err(rumqttc::ConnectionError::ConnectionRefused(_)) => Seen::ConnAck {
                        accepted: false,
                        session_present: false,
                    },
                    Err(e) => panic!(
                        "{}: connection failed while waiting for {what}: {e:?}",
                        self.user
                    ),
                }
            }
            Conn::V5 { eventloop, .. } => {
                use rumqttc::v5::mqttbytes::v5::{Packet, SubscribeReasonCode};
                use rumqttc::v5::{ConnectionError, Event};
                use rumqttc::Outgoing;
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(ack))) => Seen::ConnAck {
                        accepted: ack.code
                            == rumqttc::v5::mqttbytes::v5::ConnectReturnCode::Success,
                        session_present: ack.session_present,
                    },
                    Ok(Event::Incoming(Packet::Publish(p))) => Seen::Publish(Incoming {
                        topic: String::from_utf8(p.topic.to_vec()).expect("UTF-8 topic"),
                        payload: p.payload.clone(),
                        retain: p.retain,
                        correlation_data: p
                            .properties
                            .as_ref()
                            .and_then(|props| props.correlation_data.clone()),
                    }),
                    Ok(Event::Incoming(Packet::PubAck(a))) => Seen::PubAck {
                        pkid: a.pkid,
                        ack: Ack::V5(a.reason),
                    },
                    Ok(Event::Incoming(Packet::SubAck(a))) => Seen::SubAck {
                        granted: a
                            .return_codes
                            .iter()
                            .map(|c| match c {
                                SubscribeReasonCode::Success(q) => Some(*q as u8),
                                _ => None,
                            })
                            .collect(),
                    },
                    Ok(Event::Outgoing(Outgoing::Publish(pkid))) => Seen::SentPublish(pkid),
                    Ok(_) => Seen::Other,
                    Err(ConnectionError::ConnectionRefused(_)) => Seen::ConnAck {
                        accepted: false,
                        session_present: false,
                    },
                    Err(e) => panic!(
                        "{}: connection failed while waiting for {what}: {e:?}",
                        self.user
                    ),
                }
            }
        };
        match seen {
            Seen::Publish(incoming) => {
                self.file(incoming);
                Seen::Other
            }
            seen => seen,
        }
    }

    /// Files an incoming PUBLISH by topic, decoding chat envelopes (a
    /// payload the server sent that does not decode fails the test).
    fn file(&mut self, incoming: Incoming) {
        let me = &self.user;
        let topic = incoming.topic.as_str();
        let decode = || {
            decode_envelope(&incoming.payload)
                .unwrap_or_else(|e| panic!("{me}: undecodable envelope on {topic}: {e}"))
        };
        if topic == format!("u/{me}/i") {
            match decode() {
                Envelope {
                    kind:
                        Some(Kind::Message(
                            m @ ChatMessage {
                                body: Some(Body::Event(_)),
                                ..
                            },
                        )),
                } => self.events.push_back(m),
                envelope => self.inbox.push_back(envelope),
            }
        } else if topic == format!("u/{me}/t") {
            match decode().kind {
                Some(Kind::Typing(t)) => self.typing.push_back(t),
                other => panic!("{me}: non-typing {other:?} on the typing feed"),
            }
        } else if topic == format!("a/{me}") {
            match decode().kind {
                Some(Kind::Response(response)) => self.answers.push_back(Answer {
                    response,
                    correlation_data: incoming.correlation_data,
                }),
                other => panic!("{me}: non-response {other:?} on a/{me}"),
            }
        } else if topic.starts_with("p/") {
            match decode().kind {
                Some(Kind::Presence(presence)) => self.presence.push_back(PresenceUpdate {
                    topic: incoming.topic.clone(),
                    presence,
                    retain: incoming.retain,
                }),
                other => panic!("{me}: non-presence {other:?} on {topic}"),
            }
        } else {
            self.other.push_back((incoming.topic, incoming.payload));
        }
    }
}

fn qos4(qos: u8) -> rumqttc::QoS {
    match qos {
        0 => rumqttc::QoS::AtMostOnce,
        1 => rumqttc::QoS::AtLeastOnce,
        _ => rumqttc::QoS::ExactlyOnce,
    }
}

fn qos5(qos: u8) -> rumqttc::v5::mqttbytes::QoS {
    match qos {
        0 => rumqttc::v5::mqttbytes::QoS::AtMostOnce,
        1 => rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
        _ => rumqttc::v5::mqttbytes::QoS::ExactlyOnce,
    }
}
