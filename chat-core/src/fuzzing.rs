//! The check run by the `chat_validate` fuzz target (`proto/fuzz/`) and the
//! `fuzz_corpus` test: chat-core's entry points for untrusted input must
//! never panic, and what they accept must keep their promises.
//!
//! Input layout: the first byte `n` splits the rest into a topic (the next
//! `n` bytes, lossily UTF-8) and a payload (the remaining bytes).

use parley_proto::decode_envelope;
use parley_proto::v1::envelope::Kind;

use crate::acl::{authorize_publish, authorize_subscribe, Principal, PublishDecision};
use crate::ids::{ConversationId, UserId};
use crate::message::{server_message, validate_client_message, MessageLimits};
use crate::rules::AclRules;
use crate::topics::ChatTopic;

/// Runs every chat-core entry point on `data`; `Err` describes a broken promise.
pub fn check_client_input(data: &[u8]) -> Result<(), String> {
    let Some((&split, rest)) = data.split_first() else {
        return Ok(());
    };
    let split = usize::from(split).min(rest.len());
    let (topic_bytes, payload) = rest.split_at(split);
    let topic = String::from_utf8_lossy(topic_bytes);

    let principal = Principal {
        user: UserId::parse("fuzzer").map_err(|e| e.to_string())?,
        client_id: "fuzz".into(),
    };
    let rules = AclRules::default();
    let _ = authorize_subscribe(&principal, &topic, &rules);
    if let PublishDecision::Chat(chat) = authorize_publish(&principal, &topic, &rules) {
        if chat.topic() != topic {
            return Err(format!(
                "chat topic {topic:?} rebuilt as {:?}",
                chat.topic()
            ));
        }
        match &chat {
            ChatTopic::Request(user) if user != &principal.user => {
                return Err(format!("request topic of another user allowed: {topic:?}"))
            }
            ChatTopic::Inbox(_)
            | ChatTopic::TypingFeed(_)
            | ChatTopic::Presence(_)
            | ChatTopic::Answer(_) => {
                return Err(format!("server-only topic allowed for publish: {topic:?}"))
            }
            _ => {}
        }
    }
    for level in topic.split('/') {
        if let Ok(user) = UserId::parse(level) {
            if user.as_str() != level || level.contains(['/', '+', '#', '\0', '~']) {
                return Err(format!("user id {level:?} accepted but unsafe"));
            }
        }
        if let Ok(conv) = ConversationId::parse(level) {
            if conv.as_str() != level || level.contains(['/', '+', '#', '\0']) {
                return Err(format!("conversation id {level:?} accepted but unsafe"));
            }
        }
    }

    if let Ok(envelope) = decode_envelope(payload) {
        if let Some(Kind::Message(message)) = envelope.kind {
            if validate_client_message(&message, payload.len(), &MessageLimits::default()).is_ok() {
                let stored = server_message(message, "fuzzer", "a~b", 1, 0);
                if stored.sender != "fuzzer" || stored.seq != 0 || stored.edited || stored.deleted {
                    return Err(format!("server fields taken from the client: {stored:?}"));
                }
            }
        }
    }
    Ok(())
}
