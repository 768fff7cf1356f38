//! The generic webhook: the notification as JSON, POSTed to the configured
//! URL and signed so the receiver can tell it came from this Parley.
//!
//! Headers:
//!
//! - `x-parley-timestamp`: Unix seconds when this try was signed;
//! - `x-parley-signature`: `sha256=` and the lowercase hex HMAC-SHA256, keyed
//!   with `push.webhook.secret`, of `{timestamp}.{raw body}`;
//! - `x-parley-delivery`: the notification's delivery id, the same on every
//!   retry, so a receiver can drop duplicates.
//!
//! A receiver recomputes the HMAC over the timestamp header, a `.` and the
//! raw body bytes, compares it in constant time, and refuses timestamps too
//! far from its clock (replays).

use ring::hmac;

use super::event::Notification;
use super::request::PushRequest;
use crate::hex;

/// The signature header.
pub const SIGNATURE_HEADER: &str = "x-parley-signature";
/// The timestamp header.
pub const TIMESTAMP_HEADER: &str = "x-parley-timestamp";
/// The delivery id header.
pub const DELIVERY_HEADER: &str = "x-parley-delivery";

/// Builds signed webhook requests.
pub struct Webhook {
    url: String,
    key: hmac::Key,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Webhook {
    /// A webhook POSTing to `url`, signing with `secret`.
    pub fn new(url: &str, secret: &str) -> Webhook {
        Webhook {
            url: url.to_owned(),
            key: hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes()),
        }
    }

    /// The request for `notification`, signed at `timestamp` (Unix seconds).
    pub fn request(&self, notification: &Notification, timestamp: u64) -> PushRequest {
        let body = notification.to_json();
        let signature = sign(&self.key, timestamp, &body);
        PushRequest {
            url: self.url.clone(),
            headers: vec![
                ("content-type", "application/json".into()),
                (TIMESTAMP_HEADER, timestamp.to_string()),
                (SIGNATURE_HEADER, signature),
                (DELIVERY_HEADER, notification.delivery_id.clone()),
            ],
            body,
        }
    }
}

/// The `x-parley-signature` value of `body` signed at `timestamp` with `key`.
pub fn sign(key: &hmac::Key, timestamp: u64, body: &[u8]) -> String {
    let mut ctx = hmac::Context::with_key(key);
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    format!("sha256={}", hex::encode(ctx.sign().as_ref()))
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
            recipients: vec!["bob".into()],
        };
        Notification::new(&event, "bob", "phone", Some("t".into()), "d-1".into())
    }

    #[test]
    fn signs_timestamp_dot_body() {
        let webhook = Webhook::new("http://127.0.0.1:9/hook", "k".repeat(32).as_str());
        let request = webhook.request(&notification(), 1_700_000_000);
        assert_eq!(request.url, "http://127.0.0.1:9/hook");
        assert_eq!(request.header(TIMESTAMP_HEADER), Some("1700000000"));
        assert_eq!(request.header(DELIVERY_HEADER), Some("d-1"));
        assert_eq!(request.header("content-type"), Some("application/json"));

        // Verified the way a receiver would, with ring's own verify.
        let key = hmac::Key::new(hmac::HMAC_SHA256, "k".repeat(32).as_bytes());
        let mut signed = b"1700000000.".to_vec();
        signed.extend_from_slice(&request.body);
        let tag = hmac::sign(&key, &signed);
        let expected = format!("sha256={}", hex::encode(tag.as_ref()));
        assert_eq!(request.header(SIGNATURE_HEADER), Some(expected.as_str()));
        assert!(hmac::verify(&key, &signed, tag.as_ref()).is_ok());
    }

    #[test]
    fn another_timestamp_or_key_gives_another_signature() {
        let body = notification().to_json();
        let key = hmac::Key::new(hmac::HMAC_SHA256, &[1; 32]);
        let other_key = hmac::Key::new(hmac::HMAC_SHA256, &[2; 32]);
        assert_ne!(sign(&key, 1, &body), sign(&key, 2, &body));
        assert_ne!(sign(&key, 1, &body), sign(&other_key, 1, &body));
        assert!(sign(&key, 1, &body).starts_with("sha256="));
        assert_eq!(sign(&key, 1, &body).len(), "sha256=".len() + 64);
    }
}
