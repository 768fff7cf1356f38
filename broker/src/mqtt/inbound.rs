//! What Parley does with each packet a client sends after CONNECT: topic
//! aliases, ACL checks, chat interception, and the engine calls for plain
//! MQTT (routing, subscriptions, QoS flows). The answers to write back are
//! collected in [`Effects`]; the connection task does the IO.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_core::acl::{
    authorize_publish, authorize_subscribe, Principal, PublishDecision, SubscribeDecision,
};
use chat_core::ids::UserId;
use chat_core::rules::AclRules;
use chat_core::topics::validate_topic_name;
use parley_engine::codec::{Incoming, PublishMeta, Version};
use parley_engine::message::{
    ForwardedProperties, Message, QoS, RetainHandling, SubscriptionOptions,
};
use parley_engine::router::{Attachment, Router, SessionSlot, SubscribeRefusal};
use parley_engine::session::PubRecOutcome;
use parley_engine::topic::{parse_filter, ParsedFilter};
use rumqttd::protocol::{
    DisconnectReasonCode, Filter, Packet, PingResp, PubAck, PubAckReason, PubComp, PubCompReason,
    PubRec, PubRecReason, PubRel, PubRelReason, Publish, PublishProperties, RetainForwardRule,
    SubAck, Subscribe, SubscribeProperties, SubscribeReasonCode, UnsubAck, UnsubAckReason,
    Unsubscribe,
};
use tracing::warn;

use crate::chat::{ChatAck, ChatPublish, ChatService};
use crate::cluster::Pending;
use crate::cluster_mqtt::ClusterMqtt;
use crate::limits::KeyedLimiter;
use crate::metrics::{AclAction, InKind, Limit, Metrics};

/// Why the connection must end, as decided by the inbound packet flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// The client sent DISCONNECT.
    ClientDisconnect {
        /// Whether the will is still to be published (MQTT 5 reason 0x04).
        publish_will: bool,
        /// A new Session Expiry Interval from the DISCONNECT's properties.
        session_expiry: Option<u32>,
    },
    /// The client broke the protocol; MQTT 5 clients get this reason first.
    ProtocolViolation(DisconnectReasonCode),
    /// Another connection took the session over.
    TakenOver,
}

/// Why Parley refuses a publish itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The ACL denies the topic (MQTT 5 reason 0x87).
    NotAuthorized,
    /// The user is over a quota: publish rate or retained messages (0x97).
    QuotaExceeded,
}

/// A chat publish waiting for the chat pipeline, with what its acknowledgement needs.
#[derive(Debug)]
pub struct PendingChat {
    /// The publish.
    pub publish: ChatPublish,
    /// QoS of the client's publish.
    pub qos: u8,
    /// Packet id to acknowledge (0 for QoS 0).
    pub pkid: u16,
    /// When the connection read it: a send's latency
    /// (`parley_chat_send_duration_seconds`) counts from here, including
    /// any wait in the connection's chat pipeline.
    pub received: Instant,
}

/// The outcome of one client packet.
#[derive(Debug, Default)]
pub struct Effects {
    /// Packets to answer the client with directly.
    pub to_client: Vec<Packet>,
    /// Chat publishes for the chat pipeline, in arrival order.
    pub chat: Vec<PendingChat>,
    /// Subscribers whose queues are filling: stop reading until they drain.
    pub congested: Vec<Arc<SessionSlot>>,
    /// Set when the connection must close.
    pub close: Option<Close>,
    /// The journal ticket that must be durable before `to_client` is
    /// written (the publishes' messages queued for persistent sessions).
    pub ticket: u64,
    /// Publishes forwarded to other nodes whose acknowledgement waits for
    /// the bus: the index of the acknowledgement in `to_client`, and the
    /// bus's answer to wait for before writing it.
    pub forwarded: Vec<(usize, Pending)>,
}

impl Effects {
    fn close(&mut self, code: DisconnectReasonCode) {
        self.close = Some(Close::ProtocolViolation(code));
    }
}

/// Per-connection inbound state.
pub struct InboundState {
    principal: Principal,
    version: Version,
    router: Arc<Router>,
    attachment: Attachment,
    /// Whether CONNECT asked for Session Expiry 0 (a DISCONNECT may not raise it).
    session_expiry_was_zero: bool,
    /// Publishes dropped by the ACL on this connection.
    pub denied_publishes: u64,
    /// QoS 1/2 deliveries to subscribers dropped by full queues, caused by this connection's publishes.
    pub lost_deliveries: u64,
    metrics: Arc<Metrics>,
    /// Plain publishes per user (`limits.publishes_per_sec_per_user`), if on.
    publish_limit: Option<Arc<KeyedLimiter<UserId>>>,
    /// Plain MQTT routing across the cluster, on a node of one.
    cluster: Option<Arc<ClusterMqtt>>,
}

impl InboundState {
    /// State for a freshly attached connection of `principal`.
    pub fn new(
        principal: Principal,
        version: Version,
        router: Arc<Router>,
        attachment: Attachment,
        session_expiry: u32,
        metrics: Arc<Metrics>,
        publish_limit: Option<Arc<KeyedLimiter<UserId>>>,
    ) -> InboundState {
        InboundState {
            principal,
            version,
            router,
            attachment,
            session_expiry_was_zero: session_expiry == 0,
            denied_publishes: 0,
            lost_deliveries: 0,
            metrics,
            publish_limit,
            cluster: None,
        }
    }

    /// Routes plain publishes across the cluster through `cluster`, if given.
    pub fn with_cluster(mut self, cluster: Option<Arc<ClusterMqtt>>) -> InboundState {
        self.cluster = cluster;
        self
    }

    /// Who is connected.
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// The connection's hold on its session.
    pub fn attachment(&self) -> &Attachment {
        &self.attachment
    }

    /// Handles one decoded client packet, adding its effects to `fx`.
    /// `chat` answers the membership question behind presence subscriptions.
    pub async fn on_packet(
        &mut self,
        incoming: Incoming,
        rules: &AclRules,
        chat: &ChatService,
        fx: &mut Effects,
    ) {
        let now = Instant::now();
        match incoming.packet {
            Packet::Publish(publish, props) => match incoming.publish {
                Some(meta) => self.on_publish(publish, props, meta, rules, now, fx),
                None => fx.close(DisconnectReasonCode::MalformedPacket),
            },
            Packet::PubRel(rel, _) => {
                let known = self.session(fx, |s| s.on_pubrel(rel.pkid));
                let reason = match known {
                    Some(false) if self.version == Version::V5 => {
                        PubCompReason::PacketIdentifierNotFound
                    }
                    _ => PubCompReason::Success,
                };
                if known.is_some() {
                    fx.to_client.push(Packet::PubComp(
                        PubComp {
                            pkid: rel.pkid,
                            reason,
                        },
                        None,
                    ));
                }
            }
            Packet::PubAck(ack, _) => {
                self.session(fx, |s| s.on_puback(ack.pkid));
            }
            Packet::PubRec(rec, _) => {
                let refused = !matches!(
                    rec.reason,
                    PubRecReason::Success | PubRecReason::NoMatchingSubscribers
                );
                match self.session(fx, |s| s.on_pubrec(rec.pkid, refused)) {
                    Some(PubRecOutcome::Released) => fx.to_client.push(pubrel(rec.pkid, true)),
                    Some(PubRecOutcome::Unknown) => fx.to_client.push(pubrel(rec.pkid, false)),
                    _ => {}
                }
            }
            Packet::PubComp(comp, _) => {
                self.session(fx, |s| s.on_pubcomp(comp.pkid));
            }
            Packet::Subscribe(subscribe, props) => {
                self.on_subscribe(subscribe, props, rules, chat, now, fx)
                    .await
            }
            Packet::Unsubscribe(unsubscribe, _) => self.on_unsubscribe(unsubscribe, fx),
            Packet::PingReq(_) => fx.to_client.push(Packet::PingResp(PingResp)),
            Packet::Disconnect(disconnect, props) => {
                let session_expiry = props.and_then(|p| p.session_expiry_interval);
                if self.session_expiry_was_zero && session_expiry.is_some_and(|e| e > 0) {
                    // MQTT 5 3.14.2.2.2: a session that expires at once may not be extended.
                    fx.close(DisconnectReasonCode::ProtocolError);
                    return;
                }
                let publish_will =
                    disconnect.reason_code == DisconnectReasonCode::DisconnectWithWillMessage;
                fx.close = Some(Close::ClientDisconnect {
                    publish_will,
                    session_expiry,
                });
            }
            // A second CONNECT, or anything a client may not send.
            _ => fx.close(DisconnectReasonCode::ProtocolError),
        }
    }

    /// Runs `f` on this connection's session, or marks the connection as
    /// taken over if it no longer owns it.
    fn session<R>(
        &self,
        fx: &mut Effects,
        f: impl FnOnce(&mut parley_engine::session::Session) -> R,
    ) -> Option<R> {
        let result = self.router.with_session(&self.attachment, f);
        if result.is_none() {
            fx.close = Some(Close::TakenOver);
        }
        result
    }

    fn on_publish(
        &mut self,
        publish: Publish,
        props: Option<PublishProperties>,
        meta: PublishMeta,
        rules: &AclRules,
        now: Instant,
        fx: &mut Effects,
    ) {
        let alias = props.as_ref().and_then(|p| p.topic_alias);
        let topic = match self.session(fx, |s| s.resolve_topic(&publish.topic, alias)) {
            None => return,
            Some(Err(violation)) => {
                warn!(user = %self.principal.user, client_id = %self.principal.client_id, %violation, "bad publish topic");
                fx.close(violation.reason_code());
                return;
            }
            Some(Ok(topic)) => topic,
        };
        if let Err(e) = validate_topic_name(&topic) {
            warn!(user = %self.principal.user, client_id = %self.principal.client_id, topic = %topic, reason = %e, "invalid publish topic");
            fx.close(DisconnectReasonCode::TopicNameInvalid);
            return;
        }
        if meta.qos == 2 && self.session(fx, |s| s.is_qos2_pending(meta.pkid)) == Some(true) {
            // A resend of a QoS 2 publish already routed: acknowledge it again only.
            fx.to_client.push(pubrec(meta.pkid, PubRecReason::Success));
            return;
        }
        match authorize_publish(&self.principal, &topic, rules) {
            PublishDecision::Plain => {
                let within_limit = self
                    .publish_limit
                    .as_ref()
                    .is_none_or(|limit| limit.allow(&self.principal.user));
                if !within_limit {
                    self.metrics.limited(Limit::PublishesPerUser);
                    warn!(user = %self.principal.user, client_id = %self.principal.client_id, topic = %topic, qos = meta.qos, "publish over the rate limit");
                    self.refuse_publish(meta.qos, meta.pkid, Refusal::QuotaExceeded, fx);
                    return;
                }
                self.metrics.message_in(InKind::Plain);
                let message = Message {
                    topic,
                    payload: publish.payload,
                    qos: QoS::from_u8(meta.qos).unwrap_or(QoS::AtMostOnce),
                    retain: publish.retain,
                    expires_at: props
                        .as_ref()
                        .and_then(|p| p.message_expiry_interval)
                        .map(|secs| now + Duration::from_secs(secs.into())),
                    properties: forwarded(props),
                    origin: Some(self.attachment.slot().id()),
                };
                let namespace = self.principal.user.as_str();
                let (routed, forwarded) = match &self.cluster {
                    Some(cluster) => cluster.publish(message, namespace, now),
                    None => (self.router.publish(message, namespace, now), None),
                };
                match routed {
                    Err(_) => {
                        warn!(user = %self.principal.user, client_id = %self.principal.client_id, "retained message over the quota");
                        self.metrics.limited(Limit::RetainedPerUser);
                        self.refuse_publish(meta.qos, meta.pkid, Refusal::QuotaExceeded, fx);
                        return;
                    }
                    Ok(report) => {
                        for (key, qos) in &report.dropped {
                            if *qos != QoS::AtMostOnce {
                                self.lost_deliveries += 1;
                                warn!(subscriber = %key, qos = *qos as u8, "queue full: QoS 1/2 message dropped");
                            }
                        }
                        fx.congested.extend(report.congested);
                        fx.ticket = fx.ticket.max(report.ticket);
                    }
                }
                let answers = fx.to_client.len();
                self.acknowledge(meta.qos, meta.pkid, fx);
                if let (Some(pending), true) = (forwarded, fx.to_client.len() > answers) {
                    fx.forwarded.push((answers, pending));
                }
            }
            PublishDecision::Chat(topic) => {
                if let Some(kind) = InKind::of_chat(&topic) {
                    self.metrics.message_in(kind);
                }
                fx.chat.push(PendingChat {
                    publish: ChatPublish {
                        topic,
                        payload: publish.payload,
                        properties: props,
                    },
                    qos: meta.qos,
                    pkid: meta.pkid,
                    received: Instant::now(),
                })
            }
            PublishDecision::Deny(reason) => {
                self.denied_publishes += 1;
                self.metrics.acl_denied(AclAction::Publish);
                warn!(user = %self.principal.user, client_id = %self.principal.client_id, topic = %topic, %reason, qos = meta.qos, "publish denied");
                self.refuse_publish(meta.qos, meta.pkid, Refusal::NotAuthorized, fx);
            }
        }
    }

    /// PUBACK / PUBREC for an accepted publish (a QoS 2 one then awaits PUBREL).
    fn acknowledge(&mut self, qos: u8, pkid: u16, fx: &mut Effects) {
        match qos {
            1 => fx.to_client.push(puback(pkid, PubAckReason::Success)),
            2 => match self.session(fx, |s| s.begin_qos2(pkid)) {
                Some(Ok(())) => fx.to_client.push(pubrec(pkid, PubRecReason::Success)),
                Some(Err(violation)) => fx.close(violation.reason_code()),
                None => {}
            },
            _ => {}
        }
    }

    /// The bus did not take a forwarded publish whose acknowledgement is
    /// `answer`: an MQTT 5 client is told (0x80, unspecified error) and may
    /// publish again; returns `false` if the connection must close instead
    /// (3.1.1 has no failure acknowledgement, and a plain one would claim
    /// the message reached every subscriber).
    pub fn forward_failed(&mut self, answer: &mut Packet) -> bool {
        if let Some(cluster) = &self.cluster {
            cluster.forward_refused();
        }
        if self.version == Version::V4 {
            return false;
        }
        match answer {
            Packet::PubAck(ack, _) => ack.reason = PubAckReason::UnspecifiedError,
            Packet::PubRec(rec, _) => {
                rec.reason = PubRecReason::UnspecifiedError;
                // The flow ends with the failure: forget the packet id.
                let pkid = rec.pkid;
                let _ = self
                    .router
                    .with_session(&self.attachment, |s| s.on_pubrel(pkid));
            }
            _ => {}
        }
        true
    }

    /// Answers a refused publish: MQTT 5 gets the refusal's reason code,
    /// 3.1.1 a plain ack (the message is dropped).
    pub fn refuse_publish(&mut self, qos: u8, pkid: u16, refusal: Refusal, fx: &mut Effects) {
        if self.version == Version::V4 {
            // 3.1.1 has no failure acknowledgement: complete the flow and drop the message.
            self.acknowledge(qos, pkid, fx);
            return;
        }
        let (ack, rec) = match refusal {
            Refusal::NotAuthorized => (PubAckReason::NotAuthorized, PubRecReason::NotAuthorized),
            Refusal::QuotaExceeded => (PubAckReason::QuotaExceeded, PubRecReason::QuotaExceeded),
        };
        match qos {
            1 => fx.to_client.push(puback(pkid, ack)),
            2 => fx.to_client.push(pubrec(pkid, rec)),
            _ => {}
        }
    }

    /// Acknowledges a chat publish as the chat pipeline answered. Returns
    /// `false` if the connection must close instead (a 3.1.1 client whose
    /// message could not be stored, or was refused: 3.1.1 cannot say so, and
    /// an acknowledgement would claim it was stored).
    pub fn ack_chat(&mut self, qos: u8, pkid: u16, ack: ChatAck, fx: &mut Effects) -> bool {
        let v5 = self.version == Version::V5;
        if ack != ChatAck::Success && !v5 {
            if qos == 0 {
                return true;
            }
            if matches!(ack, ChatAck::StoreFailed | ChatAck::RateLimited) {
                // Not stored, and 3.1.1 has no failure ack: the client resends after reconnecting.
                return false;
            }
            // Refused for good (an Error envelope went to the inbox): complete the flow.
            self.acknowledge(qos, pkid, fx);
            return true;
        }
        let (puback_reason, pubrec_reason) = match ack {
            ChatAck::Success => (PubAckReason::Success, PubRecReason::Success),
            ChatAck::NotAuthorized => (PubAckReason::NotAuthorized, PubRecReason::NotAuthorized),
            ChatAck::PayloadFormatInvalid => (
                PubAckReason::PayloadFormatInvalid,
                PubRecReason::PayloadFormatInvalid,
            ),
            ChatAck::QuotaExceeded | ChatAck::RateLimited => {
                (PubAckReason::QuotaExceeded, PubRecReason::QuotaExceeded)
            }
            ChatAck::ImplementationSpecific => (
                PubAckReason::ImplementationSpecificError,
                PubRecReason::ImplementationSpecificError,
            ),
            ChatAck::StoreFailed => (
                PubAckReason::UnspecifiedError,
                PubRecReason::UnspecifiedError,
            ),
        };
        match qos {
            1 => fx.to_client.push(puback(pkid, puback_reason)),
            2 if pubrec_reason == PubRecReason::Success || !v5 => self.acknowledge(2, pkid, fx),
            2 => fx.to_client.push(pubrec(pkid, pubrec_reason)),
            _ => {}
        }
        true
    }

    async fn on_subscribe(
        &mut self,
        subscribe: Subscribe,
        props: Option<SubscribeProperties>,
        rules: &AclRules,
        chat: &ChatService,
        now: Instant,
        fx: &mut Effects,
    ) {
        let subscription_id = props
            .as_ref()
            .and_then(|p| p.id)
            .and_then(|id| u32::try_from(id).ok());
        if subscription_id == Some(0) {
            fx.close(DisconnectReasonCode::ProtocolError);
            return;
        }
        let mut codes: Vec<Option<SubscribeReasonCode>> =
            Vec::with_capacity(subscribe.filters.len());
        let mut allowed: Vec<(String, SubscriptionOptions)> = Vec::new();
        for filter in &subscribe.filters {
            let verdict = self.check_subscribe(&filter.path, rules, chat).await;
            if verdict.is_none() {
                allowed.push((filter.path.clone(), options_of(filter, subscription_id)));
            }
            codes.push(verdict);
        }
        let results = match self.router.subscribe(&self.attachment, &allowed, now) {
            Some(results) => results,
            None => {
                fx.close = Some(Close::TakenOver);
                return;
            }
        };
        let mut results = results.into_iter();
        let mut return_codes = Vec::with_capacity(codes.len());
        for code in codes {
            let code = match code {
                Some(refused) => refused,
                None => match results.next() {
                    Some(Ok(qos)) => SubscribeReasonCode::Success(wire_qos(qos)),
                    Some(Err(SubscribeRefusal::QuotaExceeded)) => {
                        self.metrics.limited(Limit::SubscriptionsPerClient);
                        SubscribeReasonCode::QuotaExceeded
                    }
                    Some(Err(SubscribeRefusal::InvalidFilter(_))) => {
                        SubscribeReasonCode::TopicFilterInvalid
                    }
                    Some(Err(SubscribeRefusal::NoLocalOnShared)) => {
                        fx.close(DisconnectReasonCode::ProtocolError);
                        return;
                    }
                    None => SubscribeReasonCode::Unspecified,
                },
            };
            return_codes.push(code);
        }
        fx.to_client.push(Packet::SubAck(
            SubAck {
                pkid: subscribe.pkid,
                return_codes,
            },
            None,
        ));
    }

    fn on_unsubscribe(&mut self, unsubscribe: Unsubscribe, fx: &mut Effects) {
        let Some(existed) = self
            .router
            .unsubscribe(&self.attachment, &unsubscribe.filters)
        else {
            fx.close = Some(Close::TakenOver);
            return;
        };
        let reasons = existed
            .into_iter()
            .map(|e| {
                if e {
                    UnsubAckReason::Success
                } else {
                    UnsubAckReason::NoSubscriptionExisted
                }
            })
            .collect();
        fx.to_client.push(Packet::UnsubAck(
            UnsubAck {
                pkid: unsubscribe.pkid,
                reasons,
            },
            None,
        ));
    }

    /// `None` if the filter may be subscribed, else the reason code to answer with.
    async fn check_subscribe(
        &self,
        filter: &str,
        rules: &AclRules,
        chat: &ChatService,
    ) -> Option<SubscribeReasonCode> {
        let inner = match parse_filter(filter) {
            Ok(ParsedFilter::Plain(inner)) | Ok(ParsedFilter::Shared { filter: inner, .. }) => {
                inner
            }
            Err(e) => {
                warn!(user = %self.principal.user, client_id = %self.principal.client_id, filter, reason = %e, "invalid subscribe filter");
                return Some(SubscribeReasonCode::TopicFilterInvalid);
            }
        };
        match authorize_subscribe(&self.principal, inner, rules) {
            SubscribeDecision::Allow => None,
            SubscribeDecision::AllowIfSharesConversation(other) => {
                match chat.shares_conversation(&self.principal.user, &other).await {
                    Ok(true) => None,
                    Ok(false) => {
                        self.metrics.acl_denied(AclAction::Subscribe);
                        warn!(user = %self.principal.user, client_id = %self.principal.client_id, filter, %other, "presence denied: no shared conversation");
                        Some(SubscribeReasonCode::NotAuthorized)
                    }
                    Err(e) => {
                        warn!(user = %self.principal.user, client_id = %self.principal.client_id, filter, error = %e, "presence check failed");
                        Some(SubscribeReasonCode::Unspecified)
                    }
                }
            }
            SubscribeDecision::Deny(reason) => {
                self.metrics.acl_denied(AclAction::Subscribe);
                warn!(user = %self.principal.user, client_id = %self.principal.client_id, filter, %reason, "subscribe denied");
                Some(SubscribeReasonCode::NotAuthorized)
            }
        }
    }
}

/// The engine's subscription options of a SUBSCRIBE filter.
fn options_of(filter: &Filter, subscription_id: Option<u32>) -> SubscriptionOptions {
    SubscriptionOptions {
        qos: QoS::from_u8(filter.qos as u8).unwrap_or(QoS::AtMostOnce),
        no_local: filter.nolocal,
        retain_as_published: filter.preserve_retain,
        retain_handling: match filter.retain_forward_rule {
            RetainForwardRule::OnEverySubscribe => RetainHandling::OnSubscribe,
            RetainForwardRule::OnNewSubscribe => RetainHandling::OnNewSubscribe,
            RetainForwardRule::Never => RetainHandling::Never,
        },
        subscription_id,
    }
}

/// The properties a publish forwards to its subscribers.
fn forwarded(props: Option<PublishProperties>) -> ForwardedProperties {
    match props {
        None => ForwardedProperties::default(),
        Some(p) => ForwardedProperties {
            payload_format_indicator: p.payload_format_indicator,
            content_type: p.content_type,
            response_topic: p.response_topic,
            correlation_data: p.correlation_data,
            user_properties: p.user_properties,
        },
    }
}

fn wire_qos(qos: QoS) -> rumqttd::protocol::QoS {
    match qos {
        QoS::AtMostOnce => rumqttd::protocol::QoS::AtMostOnce,
        QoS::AtLeastOnce => rumqttd::protocol::QoS::AtLeastOnce,
        QoS::ExactlyOnce => rumqttd::protocol::QoS::ExactlyOnce,
    }
}

fn puback(pkid: u16, reason: PubAckReason) -> Packet {
    Packet::PubAck(PubAck { pkid, reason }, None)
}

fn pubrec(pkid: u16, reason: PubRecReason) -> Packet {
    Packet::PubRec(PubRec { pkid, reason }, None)
}

fn pubrel(pkid: u16, known: bool) -> Packet {
    let reason = if known {
        PubRelReason::Success
    } else {
        PubRelReason::PacketIdentifierNotFound
    };
    Packet::PubRel(PubRel { pkid, reason }, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use chat_core::ids::UserId;
    use parley_engine::codec::Codec;
    use parley_engine::router::{ConnectRequest, RouterConfig};
    use parley_engine::session::ConnectionParams;
    use rumqttd::protocol::QoS as WireQoS;

    /// A real chat service over an embedded store in a temporary directory.
    fn chat(router: &Arc<Router>) -> (ChatService, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store =
            std::sync::Arc::new(persistence::embedded::EmbeddedStore::open(dir.path()).unwrap());
        let publisher = crate::publisher::ServerPublisher::new(router.clone());
        let stores = crate::chat::ChatStores {
            metadata: store.clone(),
            history: store.clone(),
            offline: store,
        };
        let service =
            ChatService::new(0, stores, publisher, crate::config::ChatConfig::default()).unwrap();
        (service, dir)
    }

    fn state(router: &Arc<Router>, version: Version) -> InboundState {
        let connected = router.connect(
            ConnectRequest {
                key: "alice~phone".into(),
                namespace: "alice".into(),
                clean_start: true,
                session_expiry_secs: 0,
                params: ConnectionParams::defaults(Codec::new(version, 1 << 20)),
                will: None,
            },
            Instant::now(),
            &mut BytesMut::new(),
        );
        InboundState::new(
            Principal {
                user: UserId::parse("alice").unwrap(),
                client_id: "phone".into(),
            },
            version,
            router.clone(),
            connected.attachment,
            0,
            Arc::new(Metrics::new()),
            None,
        )
    }

    fn router() -> Arc<Router> {
        Arc::new(Router::new(RouterConfig::default()))
    }

    fn filter(path: &str) -> Filter {
        Filter {
            path: path.into(),
            qos: WireQoS::AtLeastOnce,
            nolocal: false,
            preserve_retain: false,
            retain_forward_rule: RetainForwardRule::OnEverySubscribe,
        }
    }

    fn subscribe(pkid: u16, paths: &[&str]) -> Incoming {
        Incoming {
            packet: Packet::Subscribe(
                Subscribe {
                    pkid,
                    filters: paths.iter().map(|p| filter(p)).collect(),
                },
                None,
            ),
            publish: None,
        }
    }

    fn suback_codes(fx: &Effects) -> Vec<SubscribeReasonCode> {
        match &fx.to_client[..] {
            [Packet::SubAck(ack, _)] => ack.return_codes.clone(),
            other => panic!("expected one SUBACK, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn shared_subscription_prefix_cannot_smuggle_chat_filters() {
        let router = router();
        let (chat, _dir) = chat(&router);
        let mut s = state(&router, Version::V5);
        let mut fx = Effects::default();
        s.on_packet(
            subscribe(1, &["$share/g/u/bob/i", "p/bob", "$share//x"]),
            &AclRules::default(),
            &chat,
            &mut fx,
        )
        .await;
        assert_eq!(
            suback_codes(&fx),
            vec![
                SubscribeReasonCode::NotAuthorized,
                SubscribeReasonCode::NotAuthorized,
                SubscribeReasonCode::TopicFilterInvalid,
            ],
            "a presence filter of a stranger is refused too"
        );
        assert_eq!(router.subscription_count(), 0);
    }

    #[tokio::test]
    async fn mixed_subscribe_keeps_client_order_in_suback() {
        let router = router();
        let (chat, _dir) = chat(&router);
        let mut s = state(&router, Version::V5);
        let mut fx = Effects::default();
        s.on_packet(
            subscribe(7, &["u/bob/i", "u/alice/i", "#"]),
            &AclRules::default(),
            &chat,
            &mut fx,
        )
        .await;
        assert_eq!(
            suback_codes(&fx),
            vec![
                SubscribeReasonCode::NotAuthorized,
                SubscribeReasonCode::Success(WireQoS::AtLeastOnce),
                SubscribeReasonCode::NotAuthorized
            ]
        );
        assert_eq!(router.subscription_count(), 1);
    }

    #[tokio::test]
    async fn denied_qos2_on_v4_is_completed_locally() {
        let router = router();
        let (chat, _dir) = chat(&router);
        let mut s = state(&router, Version::V4);
        let mut fx = Effects::default();
        s.refuse_publish(2, 42, Refusal::NotAuthorized, &mut fx);
        assert!(matches!(
            fx.to_client[0],
            Packet::PubRec(PubRec { pkid: 42, .. }, _)
        ));
        let mut fx = Effects::default();
        s.on_packet(
            Incoming {
                packet: Packet::PubRel(
                    PubRel {
                        pkid: 42,
                        reason: PubRelReason::Success,
                    },
                    None,
                ),
                publish: None,
            },
            &AclRules::default(),
            &chat,
            &mut fx,
        )
        .await;
        assert!(matches!(
            fx.to_client[0],
            Packet::PubComp(
                PubComp {
                    pkid: 42,
                    reason: PubCompReason::Success
                },
                _
            )
        ));
    }

    #[tokio::test]
    async fn unknown_pubrel_gets_packet_identifier_not_found_on_v5() {
        let router = router();
        let (chat, _dir) = chat(&router);
        let mut s = state(&router, Version::V5);
        let mut fx = Effects::default();
        s.on_packet(
            Incoming {
                packet: Packet::PubRel(
                    PubRel {
                        pkid: 21,
                        reason: PubRelReason::Success,
                    },
                    None,
                ),
                publish: None,
            },
            &AclRules::default(),
            &chat,
            &mut fx,
        )
        .await;
        assert!(
            fx.close.is_none(),
            "an unknown PUBREL is not a reason to close"
        );
        assert!(matches!(
            fx.to_client[0],
            Packet::PubComp(
                PubComp {
                    pkid: 21,
                    reason: PubCompReason::PacketIdentifierNotFound
                },
                _
            )
        ));
    }

    #[test]
    fn denied_qos1_on_v5_gets_not_authorized() {
        let router = router();
        let mut s = state(&router, Version::V5);
        let mut fx = Effects::default();
        s.refuse_publish(1, 5, Refusal::NotAuthorized, &mut fx);
        let Packet::PubAck(ack, _) = &fx.to_client[0] else {
            panic!()
        };
        assert_eq!(ack.reason, PubAckReason::NotAuthorized);
    }

    #[test]
    fn over_quota_is_0x97_on_v5_and_a_plain_ack_on_v4() {
        let router = router();
        let mut fx = Effects::default();
        state(&router, Version::V5).refuse_publish(1, 6, Refusal::QuotaExceeded, &mut fx);
        state(&router, Version::V4).refuse_publish(1, 7, Refusal::QuotaExceeded, &mut fx);
        let reasons: Vec<_> = fx
            .to_client
            .iter()
            .map(|p| match p {
                Packet::PubAck(ack, _) => (ack.pkid, ack.reason),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(
            reasons,
            [(6, PubAckReason::QuotaExceeded), (7, PubAckReason::Success)]
        );
    }

    #[test]
    fn a_chat_publish_over_the_rate_is_never_acknowledged_on_v4() {
        let router = router();
        let mut s = state(&router, Version::V4);
        let mut fx = Effects::default();
        assert!(!s.ack_chat(1, 3, ChatAck::RateLimited, &mut fx));
        assert!(!s.ack_chat(1, 4, ChatAck::StoreFailed, &mut fx));
        assert!(fx.to_client.is_empty(), "no PUBACK for an unstored message");
        let mut v5 = state(&router, Version::V5);
        assert!(v5.ack_chat(1, 5, ChatAck::RateLimited, &mut fx));
        assert!(matches!(
            &fx.to_client[0],
            Packet::PubAck(
                PubAck {
                    pkid: 5,
                    reason: PubAckReason::QuotaExceeded
                },
                _
            )
        ));
    }
}
