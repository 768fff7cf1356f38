//! `[push]`: which notifier a deployment pushes through, its settings, and
//! the queue and retry limits of the push worker.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The notifier a deployment pushes through; also the kind of a device's
/// push target (every kind but [`NotifierKind::Off`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifierKind {
    /// No push notifications; the push API answers 404. `"none"` means the same.
    #[default]
    #[serde(alias = "none")]
    Off,
    /// A signed JSON POST to the deployment's own receiver.
    Webhook,
    /// A POST to an ntfy topic.
    Ntfy,
    /// A POST to a Gotify server's `/message`.
    Gotify,
    /// Firebase Cloud Messaging, HTTP v1 API.
    Fcm,
}

impl NotifierKind {
    /// The name used in the configuration and the HTTP API.
    pub fn as_str(self) -> &'static str {
        match self {
            NotifierKind::Off => "off",
            NotifierKind::Webhook => "webhook",
            NotifierKind::Ntfy => "ntfy",
            NotifierKind::Gotify => "gotify",
            NotifierKind::Fcm => "fcm",
        }
    }
}

impl fmt::Display for NotifierKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for NotifierKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "off" | "none" => Ok(NotifierKind::Off),
            "webhook" => Ok(NotifierKind::Webhook),
            "ntfy" => Ok(NotifierKind::Ntfy),
            "gotify" => Ok(NotifierKind::Gotify),
            "fcm" => Ok(NotifierKind::Fcm),
            other => Err(format!(
                "unknown push kind {other:?}; expected webhook, ntfy, gotify or fcm"
            )),
        }
    }
}

/// Push notifications to devices without a live session.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PushConfig {
    /// The notifier: `off`, `webhook`, `ntfy`, `gotify` or `fcm`.
    pub notifier: NotifierKind,
    /// Put the message text into notifications (text bodies only). Off, a
    /// notification carries the conversation id, the sender and the seq.
    pub include_text: bool,
    /// Messages waiting for the push worker; when full, new ones are dropped
    /// (and counted) rather than slowing the chat path down.
    pub queue_capacity: usize,
    /// Notifications being sent at once.
    pub max_in_flight: usize,
    /// Tries per notification, the first included.
    pub max_attempts: u32,
    /// Wait before the second try, in milliseconds; doubled for each further try.
    pub initial_backoff_ms: u64,
    /// Longest wait between two tries, in milliseconds.
    pub max_backoff_ms: u64,
    /// Time one HTTP request to the notifier may take, in milliseconds.
    pub request_timeout_ms: u64,
    /// Push targets (devices) one user may register.
    pub max_devices_per_user: usize,
    /// Settings of the `webhook` notifier.
    pub webhook: WebhookConfig,
    /// Settings of the `ntfy` notifier.
    pub ntfy: NtfyConfig,
    /// Settings of the `gotify` notifier.
    pub gotify: GotifyConfig,
    /// Settings of the `fcm` notifier.
    pub fcm: FcmConfig,
}

impl Default for PushConfig {
    fn default() -> Self {
        PushConfig {
            notifier: NotifierKind::Off,
            include_text: false,
            queue_capacity: 1024,
            max_in_flight: 8,
            max_attempts: 5,
            initial_backoff_ms: 500,
            max_backoff_ms: 30_000,
            request_timeout_ms: 10_000,
            max_devices_per_user: 10,
            webhook: WebhookConfig::default(),
            ntfy: NtfyConfig::default(),
            gotify: GotifyConfig::default(),
            fcm: FcmConfig::default(),
        }
    }
}

/// The generic webhook: every notification is POSTed as JSON to one URL,
/// signed with HMAC-SHA256.
#[derive(Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// The receiver's URL (http or https); required for `notifier = "webhook"`.
    pub url: Option<String>,
    /// The HMAC-SHA256 key, at least 32 bytes; required for `notifier = "webhook"`.
    pub secret: Option<String>,
}

impl fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &self.url)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// ntfy: a device's target is a topic on this server.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NtfyConfig {
    /// The ntfy server's base URL.
    pub server: String,
    /// An access token sent as `Authorization: Bearer`, if the server wants one.
    pub token: Option<String>,
}

impl Default for NtfyConfig {
    fn default() -> Self {
        NtfyConfig {
            server: "https://ntfy.sh".into(),
            token: None,
        }
    }
}

impl fmt::Debug for NtfyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NtfyConfig")
            .field("server", &self.server)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Gotify: a device's target is an application token on this server.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GotifyConfig {
    /// The Gotify server's base URL; required for `notifier = "gotify"`.
    pub url: Option<String>,
}

/// Firebase Cloud Messaging (HTTP v1): a device's target is its registration token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FcmConfig {
    /// The Firebase project id; required for `notifier = "fcm"`.
    pub project_id: Option<String>,
    /// A file holding a current OAuth 2 access token for the project (kept
    /// fresh by the deployment, e.g. from a service account); read for every
    /// notification. Required for `notifier = "fcm"`.
    pub access_token_file: Option<PathBuf>,
    /// The FCM API base URL.
    pub endpoint: String,
}

impl Default for FcmConfig {
    fn default() -> Self {
        FcmConfig {
            project_id: None,
            access_token_file: None,
            endpoint: "https://fcm.googleapis.com".into(),
        }
    }
}

/// The shortest accepted webhook secret, in bytes.
pub const MIN_WEBHOOK_SECRET_LEN: usize = 32;

impl PushConfig {
    /// Checks what serde cannot: ranges, and that the chosen notifier has
    /// what it needs. The error names the offending key.
    pub fn validate(&self) -> Result<(), String> {
        if self.queue_capacity == 0 || self.max_in_flight == 0 || self.max_attempts == 0 {
            return Err(
                "push.queue_capacity, push.max_in_flight and push.max_attempts must be positive"
                    .into(),
            );
        }
        if self.initial_backoff_ms == 0 || self.max_backoff_ms < self.initial_backoff_ms {
            return Err(
                "push.initial_backoff_ms must be positive and at most push.max_backoff_ms".into(),
            );
        }
        if self.request_timeout_ms == 0 {
            return Err("push.request_timeout_ms must be positive".into());
        }
        if self.max_devices_per_user == 0 {
            return Err("push.max_devices_per_user must be positive".into());
        }
        match self.notifier {
            NotifierKind::Off => {}
            NotifierKind::Webhook => {
                let url = self.webhook.url.as_deref().ok_or(
                    "push.webhook.url is required when push.notifier = \"webhook\"".to_owned(),
                )?;
                check_url("push.webhook.url", url)?;
                match &self.webhook.secret {
                    Some(s) if s.len() >= MIN_WEBHOOK_SECRET_LEN => {}
                    _ => {
                        return Err(format!(
                            "push.webhook.secret of at least {MIN_WEBHOOK_SECRET_LEN} bytes is \
                             required when push.notifier = \"webhook\""
                        ))
                    }
                }
            }
            NotifierKind::Ntfy => check_url("push.ntfy.server", &self.ntfy.server)?,
            NotifierKind::Gotify => {
                let url = self.gotify.url.as_deref().ok_or(
                    "push.gotify.url is required when push.notifier = \"gotify\"".to_owned(),
                )?;
                check_url("push.gotify.url", url)?;
            }
            NotifierKind::Fcm => {
                check_url("push.fcm.endpoint", &self.fcm.endpoint)?;
                match &self.fcm.project_id {
                    Some(id)
                        if !id.is_empty()
                            && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') => {}
                    _ => {
                        return Err("push.fcm.project_id (letters, digits and '-') is required \
                                    when push.notifier = \"fcm\""
                            .into())
                    }
                }
                if self.fcm.access_token_file.is_none() {
                    return Err(
                        "push.fcm.access_token_file is required when push.notifier = \"fcm\""
                            .into(),
                    );
                }
            }
        }
        Ok(())
    }
}

/// Checks that `value` is an absolute http or https URL.
fn check_url(key: &str, value: &str) -> Result<(), String> {
    let url =
        reqwest::Url::parse(value).map_err(|e| format!("{key}: {value:?} is not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!("{key}: {value:?} must be an http or https URL"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_off() {
        let c = PushConfig::default();
        assert_eq!(c.notifier, NotifierKind::Off);
        assert!(!c.include_text);
        c.validate().expect("defaults are valid");
    }

    #[test]
    fn webhook_needs_a_url_and_a_long_secret() {
        let mut c = PushConfig {
            notifier: NotifierKind::Webhook,
            ..PushConfig::default()
        };
        assert!(c.validate().unwrap_err().contains("push.webhook.url"));
        c.webhook.url = Some("ftp://example.com/hook".into());
        assert!(c.validate().unwrap_err().contains("http or https"));
        c.webhook.url = Some("https://example.com/hook".into());
        c.webhook.secret = Some("short".into());
        assert!(c.validate().unwrap_err().contains("push.webhook.secret"));
        c.webhook.secret = Some("x".repeat(MIN_WEBHOOK_SECRET_LEN));
        c.validate().expect("complete webhook settings are valid");
    }

    #[test]
    fn fcm_needs_a_project_and_a_token_file() {
        let mut c = PushConfig {
            notifier: NotifierKind::Fcm,
            ..PushConfig::default()
        };
        assert!(c.validate().unwrap_err().contains("push.fcm.project_id"));
        c.fcm.project_id = Some("my-project/../x".into());
        assert!(c.validate().unwrap_err().contains("push.fcm.project_id"));
        c.fcm.project_id = Some("my-project-42".into());
        assert!(c.validate().unwrap_err().contains("access_token_file"));
        c.fcm.access_token_file = Some("/run/parley/fcm.token".into());
        c.validate().expect("complete fcm settings are valid");
    }

    #[test]
    fn ranges_are_checked() {
        let zero_queue = PushConfig {
            queue_capacity: 0,
            ..PushConfig::default()
        };
        assert!(zero_queue.validate().is_err());
        let backwards = PushConfig {
            initial_backoff_ms: 10,
            max_backoff_ms: 5,
            ..PushConfig::default()
        };
        assert!(backwards.validate().is_err());
    }

    #[test]
    fn kinds_parse_and_print_alike() {
        for kind in [
            NotifierKind::Off,
            NotifierKind::Webhook,
            NotifierKind::Ntfy,
            NotifierKind::Gotify,
            NotifierKind::Fcm,
        ] {
            assert_eq!(kind.as_str().parse::<NotifierKind>(), Ok(kind));
        }
        assert!("apns".parse::<NotifierKind>().is_err());
    }

    #[test]
    fn secrets_are_redacted_in_debug_output() {
        let c = PushConfig {
            webhook: WebhookConfig {
                url: None,
                secret: Some("webhook-secret-value".into()),
            },
            ntfy: NtfyConfig {
                token: Some("ntfy-token-value".into()),
                ..NtfyConfig::default()
            },
            ..PushConfig::default()
        };
        let shown = format!("{c:?}");
        assert!(!shown.contains("webhook-secret-value"), "{shown}");
        assert!(!shown.contains("ntfy-token-value"), "{shown}");
    }
}
