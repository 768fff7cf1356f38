//! ntfy: the notification is POSTed to `{push.ntfy.server}/{topic}`, the
//! device's target being the topic. The body is the notification's JSON (so
//! an app subscribed to the topic can act on it); the `title` header is a
//! human summary. `push.ntfy.token`, when set, is sent as a bearer token.

use super::event::Notification;
use super::request::PushRequest;

/// Builds ntfy requests.
pub struct Ntfy {
    server: String,
    token: Option<String>,
}

impl std::fmt::Debug for Ntfy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ntfy")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl Ntfy {
    /// An ntfy notifier for `server`, authenticating with `token` if given.
    pub fn new(server: &str, token: Option<&str>) -> Ntfy {
        Ntfy {
            server: server.trim_end_matches('/').to_owned(),
            token: token.map(str::to_owned),
        }
    }

    /// The request publishing `notification` to `topic` (checked to be a
    /// plain topic name when it was registered).
    pub fn request(&self, notification: &Notification, topic: &str) -> PushRequest {
        let mut headers = vec![
            ("content-type", "application/json".to_owned()),
            ("title", notification.title()),
            ("tags", "speech_balloon".to_owned()),
        ];
        if let Some(token) = &self.token {
            headers.push(("authorization", format!("Bearer {token}")));
        }
        PushRequest {
            url: format!("{}/{topic}", self.server),
            headers,
            body: notification.to_json(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::push::event::MessageEvent;

    fn notification() -> Notification {
        let event = MessageEvent {
            conversation_id: "alice~bob".into(),
            sender: "alice".into(),
            seq: 3,
            message_id: 42,
            server_time_ms: 5,
            text: None,
            recipients: vec![],
        };
        Notification::new(&event, "bob", "phone", None, "d-1".into())
    }

    #[test]
    fn posts_to_the_topic_url() {
        let ntfy = Ntfy::new("https://ntfy.example.org/", Some("tk_abc"));
        let request = ntfy.request(&notification(), "bob_phone");
        assert_eq!(request.url, "https://ntfy.example.org/bob_phone");
        assert_eq!(request.header("title"), Some("New message from alice"));
        assert_eq!(request.header("authorization"), Some("Bearer tk_abc"));
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(body["conversation_id"], "alice~bob");
        assert_eq!(body["seq"], 3);
        assert!(body.get("target").is_none(), "the topic is the address");
    }

    #[test]
    fn no_token_no_authorization() {
        let request = Ntfy::new("http://127.0.0.1:1", None).request(&notification(), "t");
        assert_eq!(request.header("authorization"), None);
    }
}
