//! Validation of the chat messages clients send, and the edit/delete rules.
//!
//! A client fills only `client_message_id`, the body, `reply_to_seq`,
//! `action` and `target_seq`; the server fills the rest and ignores what a
//! client put there.

use parley_proto::v1::{chat_message::Body, ChatMessage, MessageAction};

/// Limits on one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageLimits {
    /// Largest encoded envelope accepted, in bytes.
    pub max_payload_bytes: usize,
    /// Longest text body, in characters.
    pub max_text_chars: usize,
}

impl Default for MessageLimits {
    fn default() -> Self {
        MessageLimits {
            max_payload_bytes: 64 * 1024,
            max_text_chars: 16 * 1024,
        }
    }
}

/// Longest client message id, in bytes.
pub const MAX_CLIENT_MESSAGE_ID_LEN: usize = 64;

/// What a valid client message asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    /// A new message.
    New,
    /// Replace the body of message `target_seq`.
    Edit {
        /// The message to edit.
        target_seq: u64,
    },
    /// Delete message `target_seq`, leaving a tombstone.
    Delete {
        /// The message to delete.
        target_seq: u64,
    },
}

/// Why a client message is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// The encoded payload is over the limit.
    #[error("message of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Payload size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// `client_message_id` is empty.
    #[error("client_message_id is required")]
    MissingClientMessageId,
    /// `client_message_id` is too long or has control characters.
    #[error("client_message_id must be 1 to 64 bytes without control characters")]
    InvalidClientMessageId,
    /// A new message or an edit has no body.
    #[error("a message needs a body (text, media or ciphertext)")]
    MissingBody,
    /// Text body empty.
    #[error("text body is empty")]
    EmptyText,
    /// Text body over the limit.
    #[error("text of {chars} characters exceeds the limit of {max}")]
    TextTooLong {
        /// Characters in the text.
        chars: usize,
        /// The limit.
        max: usize,
    },
    /// A media reference without an object key.
    #[error("media reference without object_key")]
    EmptyMedia,
    /// A ciphertext body with no recipient.
    #[error("ciphertext without recipients")]
    EmptyCiphertext,
    /// `action` is not a known value.
    #[error("unknown action {0}")]
    UnknownAction(i32),
    /// A new message names a target.
    #[error("target_seq is only for edits and deletes")]
    UnexpectedTarget,
    /// An edit or delete without a target.
    #[error("edits and deletes need target_seq")]
    MissingTarget,
    /// A delete carries a body.
    #[error("a delete carries no body")]
    DeleteWithBody,
    /// Editing or deleting someone else's message.
    #[error("only the sender may edit or delete a message")]
    NotYours,
    /// The target is itself an edit or delete entry, a conversation event,
    /// or already deleted.
    #[error("message {0} cannot be changed")]
    NotChangeable(u64),
    /// A client sent a body only the server writes (a conversation event).
    #[error("conversation events are written by the server only")]
    ServerOnlyBody,
}

/// Checks a client message (and its encoded size) and says what it asks for.
pub fn validate_client_message(
    msg: &ChatMessage,
    payload_len: usize,
    limits: &MessageLimits,
) -> Result<Intent, MessageError> {
    if payload_len > limits.max_payload_bytes {
        return Err(MessageError::TooLarge {
            size: payload_len,
            max: limits.max_payload_bytes,
        });
    }
    if msg.client_message_id.is_empty() {
        return Err(MessageError::MissingClientMessageId);
    }
    if msg.client_message_id.len() > MAX_CLIENT_MESSAGE_ID_LEN
        || msg.client_message_id.chars().any(char::is_control)
    {
        return Err(MessageError::InvalidClientMessageId);
    }
    let action =
        MessageAction::try_from(msg.action).map_err(|_| MessageError::UnknownAction(msg.action))?;
    match action {
        MessageAction::Unspecified | MessageAction::New => {
            if msg.target_seq != 0 {
                return Err(MessageError::UnexpectedTarget);
            }
            validate_body(msg.body.as_ref(), limits)?;
            Ok(Intent::New)
        }
        MessageAction::Edit => {
            if msg.target_seq == 0 {
                return Err(MessageError::MissingTarget);
            }
            validate_body(msg.body.as_ref(), limits)?;
            Ok(Intent::Edit {
                target_seq: msg.target_seq,
            })
        }
        MessageAction::Delete => {
            if msg.target_seq == 0 {
                return Err(MessageError::MissingTarget);
            }
            if msg.body.is_some() {
                return Err(MessageError::DeleteWithBody);
            }
            Ok(Intent::Delete {
                target_seq: msg.target_seq,
            })
        }
    }
}

fn validate_body(body: Option<&Body>, limits: &MessageLimits) -> Result<(), MessageError> {
    match body {
        None => Err(MessageError::MissingBody),
        Some(Body::Text(t)) if t.text.is_empty() => Err(MessageError::EmptyText),
        Some(Body::Text(t)) => {
            let chars = t.text.chars().count();
            if chars > limits.max_text_chars {
                Err(MessageError::TextTooLong {
                    chars,
                    max: limits.max_text_chars,
                })
            } else {
                Ok(())
            }
        }
        Some(Body::Media(m)) if m.object_key.is_empty() => Err(MessageError::EmptyMedia),
        Some(Body::Ciphertext(c)) if c.recipients.is_empty() => Err(MessageError::EmptyCiphertext),
        Some(Body::Event(_)) => Err(MessageError::ServerOnlyBody),
        Some(_) => Ok(()),
    }
}

/// The stored form of a client message: only the fields a client may set,
/// plus the server's `sender`, `conversation_id`, `message_id` and time.
pub fn server_message(
    client: ChatMessage,
    sender: &str,
    conversation_id: &str,
    message_id: u64,
    server_time_ms: i64,
) -> ChatMessage {
    ChatMessage {
        message_id,
        conversation_id: conversation_id.to_owned(),
        seq: 0,
        sender: sender.to_owned(),
        client_message_id: client.client_message_id,
        server_time_ms,
        body: client.body,
        reply_to_seq: client.reply_to_seq,
        action: if client.action == MessageAction::Unspecified as i32 {
            MessageAction::New as i32
        } else {
            client.action
        },
        target_seq: client.target_seq,
        edited: false,
        deleted: false,
    }
}

/// Checks that `sender` may apply `intent` to `original`, and returns the
/// original as it must be stored afterwards (new body and `edited`, or a
/// body-less tombstone with `deleted`).
pub fn amend(
    original: &ChatMessage,
    sender: &str,
    intent: Intent,
    new_body: Option<Body>,
) -> Result<ChatMessage, MessageError> {
    if original.sender != sender {
        return Err(MessageError::NotYours);
    }
    let is_plain = matches!(
        MessageAction::try_from(original.action),
        Ok(MessageAction::New) | Ok(MessageAction::Unspecified)
    );
    let is_event = matches!(original.body, Some(Body::Event(_)));
    if !is_plain || original.deleted || is_event {
        return Err(MessageError::NotChangeable(original.seq));
    }
    let mut amended = original.clone();
    match intent {
        Intent::Edit { .. } => {
            amended.body = new_body;
            amended.edited = true;
        }
        Intent::Delete { .. } => {
            amended.body = None;
            amended.deleted = true;
        }
        Intent::New => return Err(MessageError::MissingTarget),
    }
    Ok(amended)
}

#[cfg(test)]
mod tests {
    use super::*;
    use parley_proto::v1::{Ciphertext, MediaRef, Text};

    fn text(s: &str) -> ChatMessage {
        ChatMessage {
            client_message_id: "c1".into(),
            body: Some(Body::Text(Text { text: s.into() })),
            ..ChatMessage::default()
        }
    }

    #[test]
    fn a_plain_text_message_is_new() {
        assert_eq!(
            validate_client_message(&text("hi"), 10, &MessageLimits::default()),
            Ok(Intent::New)
        );
    }

    #[test]
    fn limits_and_required_fields() {
        let l = MessageLimits {
            max_payload_bytes: 100,
            max_text_chars: 3,
        };
        assert!(matches!(
            validate_client_message(&text("hi"), 101, &l),
            Err(MessageError::TooLarge { .. })
        ));
        assert!(matches!(
            validate_client_message(&text("long"), 10, &l),
            Err(MessageError::TextTooLong { chars: 4, max: 3 })
        ));
        assert_eq!(
            validate_client_message(&text(""), 10, &l),
            Err(MessageError::EmptyText)
        );
        let mut m = text("x");
        m.client_message_id.clear();
        assert_eq!(
            validate_client_message(&m, 10, &l),
            Err(MessageError::MissingClientMessageId)
        );
        m.client_message_id = "x".repeat(65);
        assert_eq!(
            validate_client_message(&m, 10, &l),
            Err(MessageError::InvalidClientMessageId)
        );
        let mut m = text("x");
        m.body = None;
        assert_eq!(
            validate_client_message(&m, 10, &l),
            Err(MessageError::MissingBody)
        );
        m.body = Some(Body::Media(MediaRef::default()));
        assert_eq!(
            validate_client_message(&m, 10, &l),
            Err(MessageError::EmptyMedia)
        );
        m.body = Some(Body::Event(Default::default()));
        assert_eq!(
            validate_client_message(&m, 10, &l),
            Err(MessageError::ServerOnlyBody)
        );
        m.body = Some(Body::Ciphertext(Ciphertext::default()));
        assert_eq!(
            validate_client_message(&m, 10, &l),
            Err(MessageError::EmptyCiphertext)
        );
    }

    #[test]
    fn edit_and_delete_shapes() {
        let l = MessageLimits::default();
        let mut m = text("x");
        m.target_seq = 4;
        assert_eq!(
            validate_client_message(&m, 1, &l),
            Err(MessageError::UnexpectedTarget)
        );
        m.action = MessageAction::Edit as i32;
        assert_eq!(
            validate_client_message(&m, 1, &l),
            Ok(Intent::Edit { target_seq: 4 })
        );
        m.action = MessageAction::Delete as i32;
        assert_eq!(
            validate_client_message(&m, 1, &l),
            Err(MessageError::DeleteWithBody)
        );
        m.body = None;
        assert_eq!(
            validate_client_message(&m, 1, &l),
            Ok(Intent::Delete { target_seq: 4 })
        );
        m.target_seq = 0;
        assert_eq!(
            validate_client_message(&m, 1, &l),
            Err(MessageError::MissingTarget)
        );
        m.action = 99;
        assert_eq!(
            validate_client_message(&m, 1, &l),
            Err(MessageError::UnknownAction(99))
        );
    }

    #[test]
    fn server_fields_are_never_taken_from_the_client() {
        let mut client = text("hi");
        client.sender = "mallory".into();
        client.seq = 77;
        client.message_id = 5;
        client.edited = true;
        let m = server_message(client, "alice", "a~b", 9, 1234);
        assert_eq!(
            (m.sender.as_str(), m.seq, m.message_id, m.edited),
            ("alice", 0, 9, false)
        );
        assert_eq!(m.action, MessageAction::New as i32);
    }

    #[test]
    fn only_the_sender_amends_and_tombstones_are_final() {
        let original = server_message(text("hi"), "alice", "a~b", 1, 1);
        assert_eq!(
            amend(&original, "bob", Intent::Delete { target_seq: 1 }, None),
            Err(MessageError::NotYours)
        );
        let edited = amend(
            &original,
            "alice",
            Intent::Edit { target_seq: 1 },
            Some(Body::Text(Text { text: "hey".into() })),
        )
        .unwrap();
        assert!(edited.edited);
        let deleted = amend(&edited, "alice", Intent::Delete { target_seq: 1 }, None).unwrap();
        assert!(deleted.deleted && deleted.body.is_none());
        assert!(matches!(
            amend(&deleted, "alice", Intent::Delete { target_seq: 1 }, None),
            Err(MessageError::NotChangeable(_))
        ));
    }

    #[test]
    fn conversation_events_cannot_be_amended() {
        let mut event = server_message(text("x"), "alice", "gaaaaaaaaaaaaaaaa", 1, 1);
        event.body = Some(Body::Event(Default::default()));
        assert!(matches!(
            amend(&event, "alice", Intent::Delete { target_seq: 1 }, None),
            Err(MessageError::NotChangeable(_))
        ));
    }
}
