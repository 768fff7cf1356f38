//! Publish and subscribe decisions for a connected principal.
//!
//! The chat namespace (see [`crate::topics`]) is governed here by fixed
//! rules: a user reads only their own inbox, typing feed, answers and
//! presence (and others' presence if they share a conversation, which the
//! broker checks), and writes only to conversations (membership checked by
//! the broker) and their own request topic. Filters whose first level is a
//! wildcard are refused because they could reach the namespace. Everything
//! else is decided by the configured [`AclRules`], deny by default.

use std::fmt;

use crate::ids::UserId;
use crate::rules::AclRules;
use crate::topics::{
    is_chat_namespace, is_shared_subscription, validate_topic_filter, validate_topic_name,
    ChatTopic, TopicError,
};

/// Who is connected: the authenticated account and the MQTT client id it
/// connected with.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Principal {
    /// The authenticated user.
    pub user: UserId,
    /// The client id from CONNECT (or assigned by the broker).
    pub client_id: String,
}

/// Why a publish or subscribe was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DenyReason {
    /// Refused by a check the broker makes on top of these decisions, such
    /// as conversation membership.
    NotAuthorized,
    /// The topic name is invalid, or is in the chat namespace but not part
    /// of the chat tree.
    InvalidTopic(TopicError),
    /// The filter is invalid, or is in the chat namespace but not part of
    /// the chat tree.
    InvalidFilter(TopicError),
    /// The filter's first level is a wildcard, which could reach chat topics.
    WildcardReachesChatNamespace,
    /// The filter still has its `$share/{group}/` prefix; it must be
    /// removed and the inner filter judged instead.
    SharedSubscriptionPrefix,
    /// A wildcard inside a chat filter where none is allowed (only
    /// `u/{self}/+` and `u/{self}/#` are).
    WildcardInChatFilter,
    /// Only the server publishes here (`u/`, `p/`, `a/`).
    ServerOnlyTopic,
    /// Only clients publish here and nothing is delivered on it (`s/`, `r/`,
    /// `t/`, `q/`), so it cannot be subscribed to.
    ClientOnlyTopic,
    /// The topic belongs to another user.
    OtherUsersTopic,
    /// Outside the chat namespace and no configured rule allows it.
    NoMatchingRule,
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DenyReason::NotAuthorized => f.write_str("not authorized"),
            DenyReason::InvalidTopic(e) => write!(f, "invalid topic: {e}"),
            DenyReason::InvalidFilter(e) => write!(f, "invalid filter: {e}"),
            DenyReason::WildcardReachesChatNamespace => {
                f.write_str("a filter starting with a wildcard could reach chat topics")
            }
            DenyReason::SharedSubscriptionPrefix => {
                f.write_str("shared-subscription prefix not removed before the ACL check")
            }
            DenyReason::WildcardInChatFilter => f.write_str(
                "wildcards in chat filters are only allowed as u/{self}/+ and u/{self}/#",
            ),
            DenyReason::ServerOnlyTopic => f.write_str("only the server publishes to this topic"),
            DenyReason::ClientOnlyTopic => {
                f.write_str("this topic is client-to-server only and cannot be subscribed to")
            }
            DenyReason::OtherUsersTopic => f.write_str("the topic belongs to another user"),
            DenyReason::NoMatchingRule => f.write_str("no ACL rule allows it"),
        }
    }
}

/// The answer to a SUBSCRIBE filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscribeDecision {
    /// Subscribe.
    Allow,
    /// `p/{other}`: allowed only if the principal shares a conversation
    /// with this user, which the broker must check.
    AllowIfSharesConversation(UserId),
    /// Refuse.
    Deny(DenyReason),
}

/// The answer to a PUBLISH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishDecision {
    /// Allowed by the configured rules: route as plain MQTT.
    Plain,
    /// A chat publish (`s/`, `r/`, `t/` of a conversation, whose membership
    /// the broker checks, or the principal's own `q/`): hand it to the chat
    /// pipeline.
    Chat(ChatTopic),
    /// Refuse.
    Deny(DenyReason),
}

/// Decides whether `p` may subscribe to `filter`.
///
/// An MQTT 5 shared subscription must be judged by its inner filter: strip
/// `$share/{group}/` first; a filter that still has it is denied.
pub fn authorize_subscribe(p: &Principal, filter: &str, rules: &AclRules) -> SubscribeDecision {
    if let Err(e) = validate_topic_filter(filter) {
        return SubscribeDecision::Deny(DenyReason::InvalidFilter(e));
    }
    let levels: Vec<&str> = filter.split('/').collect();
    let first = levels.first().copied().unwrap_or_default();
    if first == "+" || first == "#" {
        return SubscribeDecision::Deny(DenyReason::WildcardReachesChatNamespace);
    }
    if is_shared_subscription(filter) {
        return SubscribeDecision::Deny(DenyReason::SharedSubscriptionPrefix);
    }
    if !is_chat_namespace(filter) {
        return if rules.allows_subscribe(&p.user, &p.client_id, filter) {
            SubscribeDecision::Allow
        } else {
            SubscribeDecision::Deny(DenyReason::NoMatchingRule)
        };
    }
    let own = p.user.as_str();
    if filter.contains(['+', '#']) {
        return match levels.as_slice() {
            ["u", user, "+" | "#"] if *user == own => SubscribeDecision::Allow,
            ["u", user, ..] if *user != own && !user.contains(['+', '#']) => {
                SubscribeDecision::Deny(DenyReason::OtherUsersTopic)
            }
            _ => SubscribeDecision::Deny(DenyReason::WildcardInChatFilter),
        };
    }
    let topic = match ChatTopic::parse(filter) {
        Ok(Some(topic)) => topic,
        Ok(None) => return SubscribeDecision::Deny(DenyReason::NoMatchingRule),
        Err(e) => return SubscribeDecision::Deny(DenyReason::InvalidFilter(e)),
    };
    match topic {
        ChatTopic::Inbox(u) | ChatTopic::TypingFeed(u) | ChatTopic::Answer(u) => {
            if u == p.user {
                SubscribeDecision::Allow
            } else {
                SubscribeDecision::Deny(DenyReason::OtherUsersTopic)
            }
        }
        ChatTopic::Presence(u) if u == p.user => SubscribeDecision::Allow,
        ChatTopic::Presence(u) => SubscribeDecision::AllowIfSharesConversation(u),
        ChatTopic::Send(_)
        | ChatTopic::Receipt(_)
        | ChatTopic::Typing(_)
        | ChatTopic::Request(_) => SubscribeDecision::Deny(DenyReason::ClientOnlyTopic),
    }
}

/// Decides what happens to a PUBLISH by `p` to `topic`.
pub fn authorize_publish(p: &Principal, topic: &str, rules: &AclRules) -> PublishDecision {
    if let Err(e) = validate_topic_name(topic) {
        return PublishDecision::Deny(DenyReason::InvalidTopic(e));
    }
    match ChatTopic::parse(topic) {
        Err(e) => PublishDecision::Deny(DenyReason::InvalidTopic(e)),
        Ok(None) => {
            if rules.allows_publish(&p.user, &p.client_id, topic) {
                PublishDecision::Plain
            } else {
                PublishDecision::Deny(DenyReason::NoMatchingRule)
            }
        }
        Ok(Some(chat)) => match chat {
            ChatTopic::Send(_) | ChatTopic::Receipt(_) | ChatTopic::Typing(_) => {
                PublishDecision::Chat(chat)
            }
            ChatTopic::Request(ref u) if *u == p.user => PublishDecision::Chat(chat),
            ChatTopic::Request(_) => PublishDecision::Deny(DenyReason::OtherUsersTopic),
            ChatTopic::Inbox(_)
            | ChatTopic::TypingFeed(_)
            | ChatTopic::Presence(_)
            | ChatTopic::Answer(_) => PublishDecision::Deny(DenyReason::ServerOnlyTopic),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ConversationId;
    use crate::rules::{Access, AclRuleConfig};

    fn user(s: &str) -> UserId {
        UserId::parse(s).expect("valid user id")
    }

    fn alice() -> Principal {
        Principal {
            user: user("alice"),
            client_id: "phone".into(),
        }
    }

    fn rules() -> AclRules {
        AclRules::compile(vec![
            AclRuleConfig {
                access: Access::ReadWrite,
                filter: "devices/%u/#".into(),
                users: Vec::new(),
            },
            AclRuleConfig {
                access: Access::Read,
                filter: "$SYS/broker/#".into(),
                users: Vec::new(),
            },
        ])
        .expect("valid rules")
    }

    fn sub(filter: &str) -> SubscribeDecision {
        authorize_subscribe(&alice(), filter, &rules())
    }

    fn publish(topic: &str) -> PublishDecision {
        authorize_publish(&alice(), topic, &rules())
    }

    fn deny_sub(reason: DenyReason) -> SubscribeDecision {
        SubscribeDecision::Deny(reason)
    }

    #[test]
    fn own_chat_topics_may_be_subscribed() {
        for f in [
            "u/alice/i",
            "u/alice/t",
            "u/alice/+",
            "u/alice/#",
            "a/alice",
            "p/alice",
        ] {
            assert_eq!(sub(f), SubscribeDecision::Allow, "{f}");
        }
    }

    #[test]
    fn others_presence_needs_a_shared_conversation() {
        assert_eq!(
            sub("p/bob"),
            SubscribeDecision::AllowIfSharesConversation(user("bob"))
        );
    }

    #[test]
    fn other_users_chat_topics_are_denied() {
        for f in ["u/bob/i", "u/bob/t", "u/bob/+", "u/bob/#", "a/bob"] {
            assert_eq!(sub(f), deny_sub(DenyReason::OtherUsersTopic), "{f}");
        }
    }

    #[test]
    fn wildcards_that_could_reach_chat_are_denied() {
        for f in ["#", "+", "+/alice/i", "+/#", "+/+/+"] {
            assert_eq!(
                sub(f),
                deny_sub(DenyReason::WildcardReachesChatNamespace),
                "{f}"
            );
        }
        for f in [
            "u/#",
            "u/+",
            "u/+/i",
            "u/+/#",
            "p/+",
            "p/#",
            "a/+",
            "s/#",
            "u/alice/i/#",
            "u/alice/+/x",
        ] {
            assert_eq!(sub(f), deny_sub(DenyReason::WildcardInChatFilter), "{f}");
        }
    }

    #[test]
    fn client_only_chat_topics_cannot_be_subscribed() {
        for f in [
            "s/alice~bob",
            "r/alice~bob",
            "t/alice~bob",
            "q/alice",
            "q/bob",
        ] {
            assert_eq!(sub(f), deny_sub(DenyReason::ClientOnlyTopic), "{f}");
        }
    }

    #[test]
    fn malformed_filters_are_denied_as_invalid() {
        assert!(matches!(
            sub("a/#/b"),
            SubscribeDecision::Deny(DenyReason::InvalidFilter(TopicError::HashNotLast { .. }))
        ));
        assert!(matches!(
            sub(""),
            SubscribeDecision::Deny(DenyReason::InvalidFilter(TopicError::Empty))
        ));
        assert!(matches!(
            sub("u/alice/x"),
            SubscribeDecision::Deny(DenyReason::InvalidFilter(TopicError::BadShape { .. }))
        ));
        assert!(matches!(
            sub("u/Alice/i"),
            SubscribeDecision::Deny(DenyReason::InvalidFilter(TopicError::BadUser { .. }))
        ));
        assert!(matches!(
            sub("u/alice"),
            SubscribeDecision::Deny(DenyReason::InvalidFilter(TopicError::BadShape { .. }))
        ));
    }

    #[test]
    fn shared_subscription_prefix_must_be_removed() {
        let everything = AclRules::compile(vec![AclRuleConfig {
            access: Access::Read,
            filter: "devices/#".into(),
            users: Vec::new(),
        }])
        .expect("valid rules");
        for f in ["$share/g/u/bob/i", "$share/g/devices/alice/#", "$share"] {
            assert_eq!(
                authorize_subscribe(&alice(), f, &everything),
                deny_sub(DenyReason::SharedSubscriptionPrefix),
                "{f}"
            );
        }
    }

    #[test]
    fn plain_filters_follow_the_rules() {
        assert_eq!(sub("devices/alice/#"), SubscribeDecision::Allow);
        assert_eq!(sub("devices/alice/+/temp"), SubscribeDecision::Allow);
        assert_eq!(sub("$SYS/broker/load"), SubscribeDecision::Allow);
        for f in [
            "devices/bob/#",
            "devices/#",
            "elsewhere",
            "$SYS/#",
            "/u/bob/i",
        ] {
            assert_eq!(sub(f), deny_sub(DenyReason::NoMatchingRule), "{f}");
        }
        assert_eq!(
            authorize_subscribe(&alice(), "devices/alice/#", &AclRules::default()),
            deny_sub(DenyReason::NoMatchingRule)
        );
    }

    #[test]
    fn conversation_publishes_go_to_the_chat_pipeline() {
        let direct = ConversationId::parse("bob~carol").expect("valid");
        let group = ConversationId::group_from_random([1; 10]);
        assert_eq!(
            publish("s/bob~carol"),
            PublishDecision::Chat(ChatTopic::Send(direct.clone()))
        );
        assert_eq!(
            publish("r/bob~carol"),
            PublishDecision::Chat(ChatTopic::Receipt(direct.clone()))
        );
        assert_eq!(
            publish(&format!("t/{group}")),
            PublishDecision::Chat(ChatTopic::Typing(group))
        );
        assert_eq!(
            publish("q/alice"),
            PublishDecision::Chat(ChatTopic::Request(user("alice")))
        );
    }

    #[test]
    fn server_and_foreign_topics_cannot_be_published() {
        for t in [
            "u/alice/i",
            "u/bob/i",
            "u/alice/t",
            "p/alice",
            "p/bob",
            "a/alice",
            "a/bob",
        ] {
            assert_eq!(
                publish(t),
                PublishDecision::Deny(DenyReason::ServerOnlyTopic),
                "{t}"
            );
        }
        assert_eq!(
            publish("q/bob"),
            PublishDecision::Deny(DenyReason::OtherUsersTopic)
        );
    }

    #[test]
    fn bad_publish_topics_are_invalid() {
        for t in [
            "",
            "a/+",
            "s/#",
            "x\0",
            "s/bob~alice",
            "s/nope",
            "u/alice",
            "q",
        ] {
            assert!(
                matches!(
                    publish(t),
                    PublishDecision::Deny(DenyReason::InvalidTopic(_))
                ),
                "{t:?}"
            );
        }
    }

    #[test]
    fn plain_publishes_follow_the_rules() {
        assert_eq!(publish("devices/alice/temp"), PublishDecision::Plain);
        for t in ["devices/bob/temp", "nowhere", "$SYS/broker/load"] {
            assert_eq!(
                publish(t),
                PublishDecision::Deny(DenyReason::NoMatchingRule),
                "{t}"
            );
        }
    }

    #[test]
    fn deny_reasons_read_well() {
        assert_eq!(
            DenyReason::InvalidFilter(TopicError::HashNotLast { level: 1 }).to_string(),
            "invalid filter: '#' must be the last level of a filter (found at level 1)"
        );
        assert_eq!(
            DenyReason::OtherUsersTopic.to_string(),
            "the topic belongs to another user"
        );
        assert_eq!(
            DenyReason::NoMatchingRule.to_string(),
            "no ACL rule allows it"
        );
    }
}
