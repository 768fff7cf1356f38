//! Firebase Cloud Messaging, HTTP v1: a POST to
//! `{push.fcm.endpoint}/v1/projects/{project_id}/messages:send` with an OAuth 2
//! access token, carrying a data-only message (every value a string, as FCM
//! requires) to the device's registration token, at high priority so that a
//! sleeping device wakes to sync.
//!
//! Parley does not mint access tokens: the deployment keeps a current one in
//! `push.fcm.access_token_file` (for example refreshed from a service
//! account by a sidecar), and Parley reads it for every notification.

use std::path::PathBuf;

use serde_json::json;

use super::event::Notification;
use super::request::PushRequest;

/// Why an FCM request could not be built.
#[derive(Debug, thiserror::Error)]
pub enum FcmError {
    /// The access token file could not be read.
    #[error("reading the FCM access token from {path}: {source}")]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The access token file is empty or not one line of token text.
    #[error("the FCM access token file {0} holds no usable token")]
    EmptyToken(PathBuf),
}

/// Builds FCM requests.
#[derive(Debug)]
pub struct Fcm {
    url: String,
    token_file: PathBuf,
}

impl Fcm {
    /// An FCM notifier for `project_id` at `endpoint`, reading its access
    /// token from `token_file`.
    pub fn new(endpoint: &str, project_id: &str, token_file: PathBuf) -> Fcm {
        Fcm {
            url: format!(
                "{}/v1/projects/{project_id}/messages:send",
                endpoint.trim_end_matches('/')
            ),
            token_file,
        }
    }

    /// Reads the current access token.
    pub async fn access_token(&self) -> Result<String, FcmError> {
        let text = tokio::fs::read_to_string(&self.token_file)
            .await
            .map_err(|source| FcmError::TokenFile {
                path: self.token_file.clone(),
                source,
            })?;
        let token = text.trim();
        if token.is_empty() || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(FcmError::EmptyToken(self.token_file.clone()));
        }
        Ok(token.to_owned())
    }

    /// The request sending `notification` to registration token
    /// `registration`, authorised by `access_token`.
    pub fn request(
        &self,
        notification: &Notification,
        registration: &str,
        access_token: &str,
    ) -> PushRequest {
        let mut data = json!({
            "event": notification.event,
            "delivery_id": notification.delivery_id,
            "user": notification.user,
            "device_id": notification.device_id,
            "conversation_id": notification.conversation_id,
            "sender": notification.sender,
            "seq": notification.seq.to_string(),
            "message_id": notification.message_id,
            "server_time_ms": notification.server_time_ms.to_string(),
        });
        if let Some(text) = &notification.text {
            data["text"] = json!(text);
        }
        let body = json!({
            "message": {
                "token": registration,
                "data": data,
                "android": { "priority": "HIGH" },
                "apns": {
                    "headers": { "apns-priority": "10" },
                    "payload": { "aps": { "content-available": 1 } },
                },
            }
        });
        PushRequest {
            url: self.url.clone(),
            headers: vec![
                ("content-type", "application/json; charset=utf-8".into()),
                ("authorization", format!("Bearer {access_token}")),
            ],
            body: body.to_string().into_bytes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::push::event::MessageEvent;

    fn notification(text: Option<&str>) -> Notification {
        let event = MessageEvent {
            conversation_id: "alice~bob".into(),
            sender: "alice".into(),
            seq: 12,
            message_id: u64::MAX,
            server_time_ms: 1_700_000_000_123,
            text: text.map(str::to_owned),
            recipients: vec![],
        };
        Notification::new(&event, "bob", "pixel", None, "d-3".into())
    }

    #[test]
    fn http_v1_request_shape() {
        let fcm = Fcm::new(
            "https://fcm.googleapis.com/",
            "parley-demo",
            "/nonexistent".into(),
        );
        let request = fcm.request(&notification(None), "reg:TOKEN-1", "ya29.access");
        assert_eq!(
            request.url,
            "https://fcm.googleapis.com/v1/projects/parley-demo/messages:send"
        );
        assert_eq!(request.header("authorization"), Some("Bearer ya29.access"));
        assert_eq!(
            request.header("content-type"),
            Some("application/json; charset=utf-8")
        );
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        let message = &body["message"];
        assert_eq!(message["token"], "reg:TOKEN-1");
        assert_eq!(message["android"]["priority"], "HIGH");
        assert_eq!(message["apns"]["headers"]["apns-priority"], "10");
        assert_eq!(message["apns"]["payload"]["aps"]["content-available"], 1);
        assert!(message.get("notification").is_none(), "data-only message");
        let data = message["data"].as_object().expect("data object");
        assert!(
            data.values().all(serde_json::Value::is_string),
            "FCM data values must all be strings: {data:?}"
        );
        assert_eq!(data["seq"], "12");
        assert_eq!(data["message_id"], u64::MAX.to_string());
        assert_eq!(data["conversation_id"], "alice~bob");
        assert!(!data.contains_key("text"), "content-free by default");
    }

    #[test]
    fn text_only_when_included() {
        let fcm = Fcm::new("https://fcm.googleapis.com", "p", "/nonexistent".into());
        let request = fcm.request(&notification(Some("hello")), "r", "a");
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(body["message"]["data"]["text"], "hello");
    }

    #[tokio::test]
    async fn access_token_comes_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let fcm = Fcm::new("https://fcm.googleapis.com", "p", path.clone());
        assert!(matches!(
            fcm.access_token().await,
            Err(FcmError::TokenFile { .. })
        ));
        std::fs::write(&path, "  \n").unwrap();
        assert!(matches!(
            fcm.access_token().await,
            Err(FcmError::EmptyToken(_))
        ));
        std::fs::write(&path, "ya29.fresh\n").unwrap();
        assert_eq!(fcm.access_token().await.unwrap(), "ya29.fresh");
    }
}
