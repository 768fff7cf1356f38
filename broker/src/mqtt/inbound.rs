//! What Parley does with each packet a client sends, after the handshake:
//! ACL checks, local answers (PINGRESP, denials) and what goes on to the
//! router. Pure bookkeeping over packets; the connection task does the IO.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chat_core::acl::{
    authorize_publish, authorize_subscribe, Principal, PublishDecision, SubscribeDecision,
};
use chat_core::ids::UserId;
use chat_core::rules::AclRules;
use chat_core::topics::{validate_topic_filter, validate_topic_name};
use rumqttd::protocol::{
    DisconnectReasonCode, Packet, PingResp, PubAck, PubAckReason, PubComp, PubCompReason, PubRec,
    PubRecReason, SubAck, SubscribeReasonCode,
};
use tracing::warn;

use super::codec::{Incoming, Version};
use crate::chat::{ChatAck, ChatPublish, ChatService};
use crate::limits::KeyedLimiter;
use crate::metrics::{AclAction, InKind, Limit, Metrics};

/// Why the connection must end, as decided by the inbound packet flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// The client sent DISCONNECT; `publish_will` for MQTT 5 reason 0x04.
    ClientDisconnect {
        /// Whether the will is still to be published.
        publish_will: bool,
    },
    /// The client broke the protocol; MQTT 5 clients get this reason first.
    ProtocolViolation(DisconnectReasonCode),
}

/// Why Parley refuses a publish itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The ACL denies the topic (MQTT 5 reason 0x87).
    NotAuthorized,
    /// The user is over the publish rate limit (MQTT 5 reason 0x97).
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
}

/// The outcome of one client packet.
#[derive(Debug, Default)]
pub struct Effects {
    /// Packets to pass to the router, in order.
    pub to_router: Vec<Packet>,
    /// Packets to answer the client with directly.
    pub to_client: Vec<Packet>,
    /// Chat publishes for the chat pipeline, in arrival order.
    pub chat: Vec<PendingChat>,
    /// Set when the connection must close.
    pub close: Option<Close>,
}

/// Per-connection inbound state.
pub struct InboundState {
    principal: Principal,
    version: Version,
    /// SUBSCRIBE packet id -> reason codes of filters denied locally (by position).
    partial_subacks: HashMap<u16, Vec<Option<SubscribeReasonCode>>>,
    /// QoS 2 packet ids Parley answered itself, whose PUBREL it must complete itself.
    local_qos2: HashSet<u16>,
    /// Publishes dropped by the ACL on this connection.
    pub denied_publishes: u64,
    /// The node's metrics.
    metrics: Arc<Metrics>,
    /// Plain publishes per user (`limits.publishes_per_sec_per_user`), if on.
    publish_limit: Option<Arc<KeyedLimiter<UserId>>>,
}

impl InboundState {
    /// State for a freshly authenticated connection, counting into
    /// `metrics` and limiting plain publishes with `publish_limit`.
    pub fn new(
        principal: Principal,
        version: Version,
        metrics: Arc<Metrics>,
        publish_limit: Option<Arc<KeyedLimiter<UserId>>>,
    ) -> InboundState {
        InboundState {
            principal,
            version,
            partial_subacks: HashMap::new(),
            local_qos2: HashSet::new(),
            denied_publishes: 0,
            metrics,
            publish_limit,
        }
    }

    /// Records that Parley answered QoS 2 `pkid` itself (its PUBREL is completed locally).
    pub fn track_local_qos2(&mut self, pkid: u16) {
        self.local_qos2.insert(pkid);
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
        match incoming.packet {
            Packet::Publish(publish, props) => {
                let Some(meta) = incoming.publish else {
                    fx.close = Some(Close::ProtocolViolation(
                        DisconnectReasonCode::MalformedPacket,
                    ));
                    return;
                };
                let Ok(topic) = std::str::from_utf8(&publish.topic) else {
                    fx.close = Some(Close::ProtocolViolation(
                        DisconnectReasonCode::MalformedPacket,
                    ));
                    return;
                };
                if topic.is_empty() {
                    // Parley advertises Topic Alias Maximum 0: clients may not use aliases.
                    fx.close = Some(Close::ProtocolViolation(
                        DisconnectReasonCode::TopicAliasInvalid,
                    ));
                    return;
                }
                if let Err(e) = validate_topic_name(topic) {
                    warn!(user = %self.principal.user, client_id = %self.principal.client_id, topic, reason = %e, "invalid publish topic");
                    fx.close = Some(Close::ProtocolViolation(
                        DisconnectReasonCode::TopicNameInvalid,
                    ));
                    return;
                }
                match authorize_publish(&self.principal, topic, rules) {
                    PublishDecision::Plain => {
                        let within_limit = self
                            .publish_limit
                            .as_ref()
                            .is_none_or(|limit| limit.allow(&self.principal.user));
                        if within_limit {
                            self.metrics.message_in(InKind::Plain);
                            fx.to_router.push(Packet::Publish(publish, props));
                        } else {
                            self.metrics.limited(Limit::PublishesPerUser);
                            warn!(user = %self.principal.user, client_id = %self.principal.client_id, topic, qos = meta.qos, "publish over the rate limit");
                            self.refuse_publish(meta.qos, meta.pkid, Refusal::QuotaExceeded, fx);
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
                        })
                    }
                    PublishDecision::Deny(reason) => {
                        self.denied_publishes += 1;
                        self.metrics.acl_denied(AclAction::Publish);
                        warn!(user = %self.principal.user, client_id = %self.principal.client_id, topic, %reason, qos = meta.qos, "publish denied");
                        self.refuse_publish(meta.qos, meta.pkid, Refusal::NotAuthorized, fx);
                    }
                }
            }
            Packet::PubRel(rel, props) => {
                if self.local_qos2.remove(&rel.pkid) {
                    fx.to_client.push(Packet::PubComp(
                        PubComp {
                            pkid: rel.pkid,
                            reason: PubCompReason::Success,
                        },
                        None,
                    ));
                } else {
                    fx.to_router.push(Packet::PubRel(rel, props));
                }
            }
            Packet::Subscribe(mut subscribe, props) => {
                let mut local: Vec<Option<SubscribeReasonCode>> =
                    Vec::with_capacity(subscribe.filters.len());
                for filter in &subscribe.filters {
                    local.push(self.check_subscribe(&filter.path, rules, chat).await);
                }
                let mut verdicts = local.iter();
                subscribe
                    .filters
                    .retain(|_| verdicts.next().is_some_and(Option::is_none));
                if subscribe.filters.is_empty() {
                    let return_codes = local
                        .into_iter()
                        .map(|c| c.unwrap_or(SubscribeReasonCode::Failure))
                        .collect();
                    fx.to_client.push(Packet::SubAck(
                        SubAck {
                            pkid: subscribe.pkid,
                            return_codes,
                        },
                        None,
                    ));
                } else {
                    if local.iter().any(Option::is_some) {
                        self.partial_subacks.insert(subscribe.pkid, local);
                    }
                    fx.to_router.push(Packet::Subscribe(subscribe, props));
                }
            }
            Packet::PingReq(_) => fx.to_client.push(Packet::PingResp(PingResp)),
            Packet::Disconnect(disconnect, _) => {
                let publish_will =
                    disconnect.reason_code == DisconnectReasonCode::DisconnectWithWillMessage;
                fx.close = Some(Close::ClientDisconnect { publish_will });
            }
            packet @ (Packet::Unsubscribe(..)
            | Packet::PubAck(..)
            | Packet::PubRec(..)
            | Packet::PubComp(..)) => fx.to_router.push(packet),
            _ => {
                fx.close = Some(Close::ProtocolViolation(
                    DisconnectReasonCode::ProtocolError,
                ));
            }
        }
    }

    /// Answers a refused publish: MQTT 5 gets the refusal's reason code,
    /// 3.1.1 a plain ack (the message is dropped).
    pub fn refuse_publish(&mut self, qos: u8, pkid: u16, refusal: Refusal, fx: &mut Effects) {
        let v5 = self.version == Version::V5;
        let (puback, pubrec) = match refusal {
            _ if !v5 => (PubAckReason::Success, PubRecReason::Success),
            Refusal::NotAuthorized => (PubAckReason::NotAuthorized, PubRecReason::NotAuthorized),
            Refusal::QuotaExceeded => (PubAckReason::QuotaExceeded, PubRecReason::QuotaExceeded),
        };
        match qos {
            1 => fx.to_client.push(Packet::PubAck(
                PubAck {
                    pkid,
                    reason: puback,
                },
                None,
            )),
            2 => {
                if !v5 {
                    // 3.1.1 has no failure PUBREC: complete the flow and drop the message.
                    self.local_qos2.insert(pkid);
                }
                fx.to_client.push(Packet::PubRec(
                    PubRec {
                        pkid,
                        reason: pubrec,
                    },
                    None,
                ));
            }
            _ => {}
        }
    }

    /// Acknowledges a chat publish as the chat pipeline answered. Returns
    /// `false` if the connection must close instead (a 3.1.1 client whose
    /// message could not be stored: no acknowledgement, it will resend).
    pub fn ack_chat(&mut self, qos: u8, pkid: u16, ack: ChatAck, fx: &mut Effects) -> bool {
        let v5 = self.version == Version::V5;
        if ack == ChatAck::StoreFailed && !v5 {
            return qos == 0;
        }
        let (puback, pubrec) = match ack {
            ChatAck::Success => (PubAckReason::Success, PubRecReason::Success),
            _ if !v5 => (PubAckReason::Success, PubRecReason::Success),
            ChatAck::NotAuthorized => (PubAckReason::NotAuthorized, PubRecReason::NotAuthorized),
            ChatAck::PayloadFormatInvalid => (
                PubAckReason::PayloadFormatInvalid,
                PubRecReason::PayloadFormatInvalid,
            ),
            ChatAck::QuotaExceeded => (PubAckReason::QuotaExceeded, PubRecReason::QuotaExceeded),
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
            1 => fx.to_client.push(Packet::PubAck(
                PubAck {
                    pkid,
                    reason: puback,
                },
                None,
            )),
            2 => {
                if pubrec == PubRecReason::Success {
                    self.local_qos2.insert(pkid);
                }
                fx.to_client.push(Packet::PubRec(
                    PubRec {
                        pkid,
                        reason: pubrec,
                    },
                    None,
                ));
            }
            _ => {}
        }
        true
    }

    /// `None` if the filter may go to the router, else the reason code to answer with.
    async fn check_subscribe(
        &self,
        filter: &str,
        rules: &AclRules,
        chat: &ChatService,
    ) -> Option<SubscribeReasonCode> {
        let inner = match strip_shared_prefix(filter) {
            Ok(inner) => inner,
            Err(()) => return Some(SubscribeReasonCode::TopicFilterInvalid),
        };
        if let Err(e) = validate_topic_filter(inner) {
            warn!(user = %self.principal.user, client_id = %self.principal.client_id, filter, reason = %e, "invalid subscribe filter");
            return Some(SubscribeReasonCode::TopicFilterInvalid);
        }
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

    /// Merges locally denied filters into the router's SUBACK, restoring the client's order.
    pub fn on_router_suback(&mut self, mut suback: SubAck) -> SubAck {
        if let Some(local) = self.partial_subacks.remove(&suback.pkid) {
            let mut routed = suback.return_codes.into_iter();
            suback.return_codes = local
                .into_iter()
                .map(|code| {
                    code.or_else(|| routed.next())
                        .unwrap_or(SubscribeReasonCode::Failure)
                })
                .collect();
        }
        suback
    }
}

/// Strips an MQTT 5 shared-subscription prefix (`$share/{group}/`) so the ACL
/// sees the real filter. `Err` for a malformed share name.
fn strip_shared_prefix(filter: &str) -> Result<&str, ()> {
    let Some(rest) = filter.strip_prefix("$share/") else {
        return Ok(filter);
    };
    match rest.split_once('/') {
        Some((group, inner))
            if !group.is_empty() && !group.contains(['+', '#']) && !inner.is_empty() =>
        {
            Ok(inner)
        }
        _ => Err(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_core::ids::UserId;
    use rumqttd::protocol::{Filter, QoS, RetainForwardRule, Subscribe};

    /// A real chat service over an embedded store in a temporary directory.
    async fn chat() -> (ChatService, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store =
            std::sync::Arc::new(persistence::embedded::EmbeddedStore::open(dir.path()).unwrap());
        let router = crate::router::RouterHandle::start(0, &crate::config::MqttConfig::default());
        let publisher = crate::mqtt::publisher::ServerPublisher::start(&router, 0)
            .await
            .unwrap();
        let stores = crate::chat::ChatStores {
            metadata: store.clone(),
            history: store.clone(),
            offline: store,
        };
        let service =
            ChatService::new(0, stores, publisher, crate::config::ChatConfig::default()).unwrap();
        (service, dir)
    }

    fn state(version: Version) -> InboundState {
        InboundState::new(
            Principal {
                user: UserId::parse("alice").unwrap(),
                client_id: "phone".into(),
            },
            version,
            Arc::new(Metrics::new()),
            None,
        )
    }

    fn filter(path: &str) -> Filter {
        Filter {
            path: path.into(),
            qos: QoS::AtLeastOnce,
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

    #[tokio::test]
    async fn shared_subscription_prefix_cannot_smuggle_chat_filters() {
        assert_eq!(strip_shared_prefix("$share/g/u/bob/i"), Ok("u/bob/i"));
        assert_eq!(strip_shared_prefix("$share//x"), Err(()));
        let (chat, _dir) = chat().await;
        let mut s = state(Version::V5);
        let mut fx = Effects::default();
        s.on_packet(
            subscribe(1, &["$share/g/u/bob/i", "p/bob"]),
            &AclRules::default(),
            &chat,
            &mut fx,
        )
        .await;
        assert!(fx.to_router.is_empty());
        let Packet::SubAck(ack, _) = &fx.to_client[0] else {
            panic!("expected SUBACK")
        };
        assert_eq!(
            ack.return_codes,
            vec![
                SubscribeReasonCode::NotAuthorized,
                SubscribeReasonCode::NotAuthorized
            ],
            "a presence filter of a stranger is refused too"
        );
    }

    #[tokio::test]
    async fn mixed_subscribe_keeps_client_order_in_suback() {
        let (chat, _dir) = chat().await;
        let mut s = state(Version::V5);
        let mut fx = Effects::default();
        s.on_packet(
            subscribe(7, &["u/bob/i", "u/alice/i", "#"]),
            &AclRules::default(),
            &chat,
            &mut fx,
        )
        .await;
        let Packet::Subscribe(sub, _) = &fx.to_router[0] else {
            panic!("expected SUBSCRIBE")
        };
        assert_eq!(sub.filters.len(), 1);
        assert_eq!(sub.filters[0].path, "u/alice/i");
        let merged = s.on_router_suback(SubAck {
            pkid: 7,
            return_codes: vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)],
        });
        assert_eq!(
            merged.return_codes,
            vec![
                SubscribeReasonCode::NotAuthorized,
                SubscribeReasonCode::Success(QoS::AtLeastOnce),
                SubscribeReasonCode::NotAuthorized
            ]
        );
    }

    #[tokio::test]
    async fn denied_qos2_on_v4_is_completed_locally() {
        let (chat, _dir) = chat().await;
        let mut s = state(Version::V4);
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
                    rumqttd::protocol::PubRel {
                        pkid: 42,
                        reason: rumqttd::protocol::PubRelReason::Success,
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
            fx.to_router.is_empty(),
            "PUBREL of a local flow must not reach the router"
        );
        assert!(matches!(
            fx.to_client[0],
            Packet::PubComp(PubComp { pkid: 42, .. }, _)
        ));
    }

    #[test]
    fn denied_qos1_on_v5_gets_not_authorized() {
        let mut s = state(Version::V5);
        let mut fx = Effects::default();
        s.refuse_publish(1, 5, Refusal::NotAuthorized, &mut fx);
        let Packet::PubAck(ack, _) = &fx.to_client[0] else {
            panic!()
        };
        assert_eq!(ack.reason, PubAckReason::NotAuthorized);
    }

    #[test]
    fn over_quota_is_0x97_on_v5_and_a_plain_ack_on_v4() {
        let mut fx = Effects::default();
        state(Version::V5).refuse_publish(1, 6, Refusal::QuotaExceeded, &mut fx);
        state(Version::V4).refuse_publish(1, 7, Refusal::QuotaExceeded, &mut fx);
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
}
