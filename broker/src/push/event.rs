//! What a push says: [`MessageEvent`] is a stored message as the chat path
//! hands it over (with the members who had no live session), and
//! [`Notification`] is what one device is told about it.

use parley_proto::v1::{chat_message::Body, ChatMessage};
use serde::Serialize;

/// A newly stored message and the members to notify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageEvent {
    /// The conversation.
    pub conversation_id: String,
    /// The author.
    pub sender: String,
    /// The message's seq in the conversation.
    pub seq: u64,
    /// The server-assigned message id.
    pub message_id: u64,
    /// When the server stored it, ms since the Unix epoch.
    pub server_time_ms: i64,
    /// The text, for a text message when `push.include_text` is on; never otherwise.
    pub text: Option<String>,
    /// Members without a live session on this node (never the sender).
    pub recipients: Vec<String>,
}

impl MessageEvent {
    /// The event for `message` (as stored and delivered) to `recipients`;
    /// the text is kept only if `include_text` and the body is a text.
    pub fn new(message: &ChatMessage, recipients: Vec<String>, include_text: bool) -> MessageEvent {
        let text = match (&message.body, include_text) {
            (Some(Body::Text(t)), true) => Some(t.text.clone()),
            _ => None,
        };
        MessageEvent {
            conversation_id: message.conversation_id.clone(),
            sender: message.sender.clone(),
            seq: message.seq,
            message_id: message.message_id,
            server_time_ms: message.server_time_ms,
            text,
            recipients,
        }
    }
}

/// The notification one device gets, as JSON (the webhook body, the ntfy
/// body and Gotify's extras carry it as is).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notification {
    /// Always `"message"`.
    pub event: &'static str,
    /// Random id of this notification, the same on every retry.
    pub delivery_id: String,
    /// The recipient.
    pub user: String,
    /// The recipient's device.
    pub device_id: String,
    /// The device's registered target (for the webhook receiver to route by);
    /// absent where the target is the address itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The conversation.
    pub conversation_id: String,
    /// The author.
    pub sender: String,
    /// The message's seq in the conversation.
    pub seq: u64,
    /// The message id, as a decimal string (it may exceed 2^53).
    pub message_id: String,
    /// When the server stored the message, ms since the Unix epoch.
    pub server_time_ms: i64,
    /// The text, only with `push.include_text` on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

impl Notification {
    /// The notification of `event` for `user`'s device `device_id`.
    pub fn new(
        event: &MessageEvent,
        user: &str,
        device_id: &str,
        target: Option<String>,
        delivery_id: String,
    ) -> Notification {
        Notification {
            event: "message",
            delivery_id,
            user: user.to_owned(),
            device_id: device_id.to_owned(),
            target,
            conversation_id: event.conversation_id.clone(),
            sender: event.sender.clone(),
            seq: event.seq,
            message_id: event.message_id.to_string(),
            server_time_ms: event.server_time_ms,
            text: event.text.clone(),
        }
    }

    /// A one-line human summary: the text when there is one, else who wrote where.
    pub fn summary(&self) -> String {
        match &self.text {
            Some(text) => text.clone(),
            None => format!("New message in {}", self.conversation_id),
        }
    }

    /// The title shown above [`Notification::summary`].
    pub fn title(&self) -> String {
        format!("New message from {}", self.sender)
    }

    /// The notification as JSON bytes.
    pub fn to_json(&self) -> Vec<u8> {
        // A struct of strings and integers always serialises.
        serde_json::to_vec(self).expect("a notification always serialises to JSON")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parley_proto::v1::{MediaRef, Text};

    fn message(body: Body) -> ChatMessage {
        ChatMessage {
            message_id: u64::MAX,
            conversation_id: "alice~bob".into(),
            seq: 7,
            sender: "alice".into(),
            server_time_ms: 1_700_000_000_000,
            body: Some(body),
            ..ChatMessage::default()
        }
    }

    fn text(s: &str) -> Body {
        Body::Text(Text { text: s.into() })
    }

    #[test]
    fn content_free_unless_asked() {
        let m = message(text("secret plans"));
        let event = MessageEvent::new(&m, vec!["bob".into()], false);
        assert_eq!(event.text, None);
        let json = Notification::new(&event, "bob", "phone", None, "d1".into()).to_json();
        let shown = String::from_utf8(json).unwrap();
        assert!(!shown.contains("secret plans"), "{shown}");
        assert!(!shown.contains("\"text\""), "{shown}");

        let with_text = MessageEvent::new(&m, vec!["bob".into()], true);
        assert_eq!(with_text.text.as_deref(), Some("secret plans"));
    }

    #[test]
    fn only_text_bodies_are_ever_included() {
        let media = message(Body::Media(MediaRef {
            object_key: "alice/k".into(),
            ..MediaRef::default()
        }));
        assert_eq!(MessageEvent::new(&media, vec![], true).text, None);
    }

    #[test]
    fn json_shape() {
        let event = MessageEvent::new(&message(text("hi")), vec!["bob".into()], true);
        let n = Notification::new(&event, "bob", "phone", Some("route-me".into()), "d1".into());
        let json: serde_json::Value = serde_json::from_slice(&n.to_json()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "event": "message",
                "delivery_id": "d1",
                "user": "bob",
                "device_id": "phone",
                "target": "route-me",
                "conversation_id": "alice~bob",
                "sender": "alice",
                "seq": 7,
                "message_id": u64::MAX.to_string(),
                "server_time_ms": 1_700_000_000_000_i64,
                "text": "hi",
            })
        );
        assert_eq!(n.title(), "New message from alice");
        assert_eq!(n.summary(), "hi");
    }
}
