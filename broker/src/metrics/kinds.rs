//! What kind of message a PUBLISH carries, for the `kind` label of
//! `parley_messages_in_total` and `parley_messages_out_total`.
//!
//! Outbound chat traffic is classified without decoding it: the topic says
//! which feed it is, and on the inbox the first byte of the payload (the
//! protobuf key of the `Envelope`'s one `kind` field) says whether it is a
//! message, a receipt or an error.

use chat_core::topics::{is_chat_namespace, ChatTopic};

use super::label_values;

label_values! {
    /// The kind of a PUBLISH a client sent (and Parley accepted).
    InKind {
        /// Outside the chat namespace, routed as plain MQTT.
        Plain => "plain",
        /// `s/{conv}`: a chat message.
        ChatSend => "chat_send",
        /// `r/{conv}`: a receipt.
        ChatReceipt => "chat_receipt",
        /// `t/{conv}`: a typing indicator.
        ChatTyping => "chat_typing",
        /// `q/{user}`: a request.
        ChatRequest => "chat_request",
    }
}

label_values! {
    /// The kind of a PUBLISH written to a client.
    OutKind {
        /// Outside the chat namespace.
        Plain => "plain",
        /// A chat message on an inbox (`u/{user}/i`).
        ChatMessage => "chat_message",
        /// A receipt on an inbox.
        ChatReceipt => "chat_receipt",
        /// An error on an inbox.
        ChatError => "chat_error",
        /// A typing indicator (`u/{user}/t`).
        ChatTyping => "chat_typing",
        /// A presence change (`p/{user}`).
        ChatPresence => "chat_presence",
        /// An answer to a request (`a/{user}`).
        ChatResponse => "chat_response",
        /// Anything else in the chat namespace.
        ChatOther => "chat_other",
    }
}

/// The protobuf key byte of `Envelope.message` (field 1, length-delimited).
const KEY_MESSAGE: u8 = 1 << 3 | 2;
/// The key byte of `Envelope.receipt` (field 2).
const KEY_RECEIPT: u8 = 2 << 3 | 2;
/// The key byte of `Envelope.error` (field 7).
const KEY_ERROR: u8 = 7 << 3 | 2;

impl InKind {
    /// The kind of a publish to a chat topic; `None` for the topics only the
    /// server writes (the ACL refuses client publishes to them).
    pub fn of_chat(topic: &ChatTopic) -> Option<InKind> {
        match topic {
            ChatTopic::Send(_) => Some(InKind::ChatSend),
            ChatTopic::Receipt(_) => Some(InKind::ChatReceipt),
            ChatTopic::Typing(_) => Some(InKind::ChatTyping),
            ChatTopic::Request(_) => Some(InKind::ChatRequest),
            ChatTopic::Inbox(_)
            | ChatTopic::TypingFeed(_)
            | ChatTopic::Presence(_)
            | ChatTopic::Answer(_) => None,
        }
    }
}

impl OutKind {
    /// The kind of an outgoing publish on `topic` with `payload`.
    pub fn of(topic: &[u8], payload: &[u8]) -> OutKind {
        let Ok(topic) = std::str::from_utf8(topic) else {
            return OutKind::Plain;
        };
        if !is_chat_namespace(topic) {
            return OutKind::Plain;
        }
        if topic.starts_with("u/") {
            if topic.ends_with("/i") {
                return match payload.first() {
                    Some(&KEY_MESSAGE) => OutKind::ChatMessage,
                    Some(&KEY_RECEIPT) => OutKind::ChatReceipt,
                    Some(&KEY_ERROR) => OutKind::ChatError,
                    _ => OutKind::ChatOther,
                };
            }
            if topic.ends_with("/t") {
                return OutKind::ChatTyping;
            }
        }
        match topic.as_bytes().first() {
            Some(b'p') => OutKind::ChatPresence,
            Some(b'a') => OutKind::ChatResponse,
            _ => OutKind::ChatOther,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parley_proto::encode_envelope;
    use parley_proto::v1::{envelope::Kind, ChatMessage, Envelope, Error, Receipt, Typing};

    fn encoded(kind: Kind) -> Vec<u8> {
        encode_envelope(&Envelope { kind: Some(kind) })
    }

    #[test]
    fn inbox_payloads_are_told_apart_by_their_envelope_field() {
        let inbox = b"u/bob/i";
        assert_eq!(
            OutKind::of(inbox, &encoded(Kind::Message(ChatMessage::default()))),
            OutKind::ChatMessage
        );
        assert_eq!(
            OutKind::of(inbox, &encoded(Kind::Receipt(Receipt::default()))),
            OutKind::ChatReceipt
        );
        assert_eq!(
            OutKind::of(inbox, &encoded(Kind::Error(Error::default()))),
            OutKind::ChatError
        );
        assert_eq!(OutKind::of(inbox, b""), OutKind::ChatOther);
    }

    #[test]
    fn feeds_and_plain_topics_are_classified_by_topic() {
        let typing = encoded(Kind::Typing(Typing::default()));
        assert_eq!(OutKind::of(b"u/bob/t", &typing), OutKind::ChatTyping);
        assert_eq!(OutKind::of(b"p/alice", b"x"), OutKind::ChatPresence);
        assert_eq!(OutKind::of(b"a/alice", b"x"), OutKind::ChatResponse);
        assert_eq!(OutKind::of(b"devices/alice/t", b"x"), OutKind::Plain);
        assert_eq!(OutKind::of(b"up/x/i", b"\x0a"), OutKind::Plain);
        assert_eq!(OutKind::of(b"\xff", b""), OutKind::Plain);
    }
}
