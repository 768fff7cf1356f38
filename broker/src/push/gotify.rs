//! Gotify: a POST to `{push.gotify.url}/message` with the device's target
//! (an application token) in `x-gotify-key`. The message is a human summary;
//! the notification's fields ride along in `extras` under `parley::message`.

use serde_json::json;

use super::event::Notification;
use super::request::PushRequest;

/// The priority of chat notifications (Gotify's clients alert from 4 up).
const PRIORITY: u8 = 5;

/// Builds Gotify requests.
#[derive(Debug)]
pub struct Gotify {
    url: String,
}

impl Gotify {
    /// A Gotify notifier for the server at `url`.
    pub fn new(url: &str) -> Gotify {
        Gotify {
            url: url.trim_end_matches('/').to_owned(),
        }
    }

    /// The request sending `notification` with application token `token`.
    pub fn request(&self, notification: &Notification, token: &str) -> PushRequest {
        let body = json!({
            "title": notification.title(),
            "message": notification.summary(),
            "priority": PRIORITY,
            "extras": { "parley::message": notification },
        });
        PushRequest {
            url: format!("{}/message", self.url),
            headers: vec![
                ("content-type", "application/json".into()),
                ("x-gotify-key", token.to_owned()),
            ],
            body: body.to_string().into_bytes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::push::event::MessageEvent;

    #[test]
    fn request_shape() {
        let event = MessageEvent {
            conversation_id: "team".into(),
            sender: "alice".into(),
            seq: 9,
            message_id: 1,
            server_time_ms: 2,
            text: Some("lunch?".into()),
            recipients: vec![],
        };
        let n = Notification::new(&event, "bob", "tablet", None, "d-2".into());
        let request = Gotify::new("https://gotify.example.org/").request(&n, "AppToken.1");
        assert_eq!(request.url, "https://gotify.example.org/message");
        assert_eq!(request.header("x-gotify-key"), Some("AppToken.1"));
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(body["title"], "New message from alice");
        assert_eq!(body["message"], "lunch?");
        assert_eq!(body["priority"], 5);
        assert_eq!(body["extras"]["parley::message"]["seq"], 9);
        assert_eq!(body["extras"]["parley::message"]["device_id"], "tablet");
    }

    #[test]
    fn content_free_message_names_the_conversation_only() {
        let event = MessageEvent {
            conversation_id: "team".into(),
            sender: "alice".into(),
            seq: 9,
            message_id: 1,
            server_time_ms: 2,
            text: None,
            recipients: vec![],
        };
        let n = Notification::new(&event, "bob", "tablet", None, "d-2".into());
        let body: serde_json::Value =
            serde_json::from_slice(&Gotify::new("http://g").request(&n, "t").body).unwrap();
        assert_eq!(body["message"], "New message in team");
    }
}
