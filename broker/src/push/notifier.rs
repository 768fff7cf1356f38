//! [`Notifier`]: the deployment's notifier, built from `[push]`, turning a
//! notification and a device's target into the request to send.

use std::time::{SystemTime, UNIX_EPOCH};

use super::event::Notification;
use super::fcm::{Fcm, FcmError};
use super::gotify::Gotify;
use super::ntfy::Ntfy;
use super::request::PushRequest;
use super::webhook::Webhook;
use super::{NotifierKind, PushConfig};

/// The configured notifier.
#[derive(Debug)]
pub enum Notifier {
    /// The generic signed webhook.
    Webhook(Webhook),
    /// ntfy topics.
    Ntfy(Ntfy),
    /// Gotify application tokens.
    Gotify(Gotify),
    /// FCM registration tokens.
    Fcm(Fcm),
}

impl Notifier {
    /// The notifier `config` chooses; `None` when push is off or a required
    /// setting is missing (which [`PushConfig::validate`] refuses).
    pub fn from_config(config: &PushConfig) -> Option<Notifier> {
        Some(match config.notifier {
            NotifierKind::Off => return None,
            NotifierKind::Webhook => Notifier::Webhook(Webhook::new(
                config.webhook.url.as_deref()?,
                config.webhook.secret.as_deref()?,
            )),
            NotifierKind::Ntfy => {
                Notifier::Ntfy(Ntfy::new(&config.ntfy.server, config.ntfy.token.as_deref()))
            }
            NotifierKind::Gotify => Notifier::Gotify(Gotify::new(config.gotify.url.as_deref()?)),
            NotifierKind::Fcm => Notifier::Fcm(Fcm::new(
                &config.fcm.endpoint,
                config.fcm.project_id.as_deref()?,
                config.fcm.access_token_file.clone()?,
            )),
        })
    }

    /// The kind of targets this notifier delivers to.
    pub fn kind(&self) -> NotifierKind {
        match self {
            Notifier::Webhook(_) => NotifierKind::Webhook,
            Notifier::Ntfy(_) => NotifierKind::Ntfy,
            Notifier::Gotify(_) => NotifierKind::Gotify,
            Notifier::Fcm(_) => NotifierKind::Fcm,
        }
    }

    /// Whether the notification should name the device's target (only the
    /// webhook receiver routes by it; elsewhere the target is the address).
    pub fn names_target(&self) -> bool {
        matches!(self, Notifier::Webhook(_))
    }

    /// The request delivering `notification` to `target`, built now.
    ///
    /// # Errors
    ///
    /// [`FcmError`] if the FCM access token cannot be read.
    pub async fn request(
        &self,
        notification: &Notification,
        target: &str,
    ) -> Result<PushRequest, FcmError> {
        Ok(match self {
            Notifier::Webhook(w) => w.request(notification, unix_now()),
            Notifier::Ntfy(n) => n.request(notification, target),
            Notifier::Gotify(g) => g.request(notification, target),
            Notifier::Fcm(f) => {
                let token = f.access_token().await?;
                f.request(notification, target, &token)
            }
        })
    }
}

/// Unix seconds now (0 if the clock is before 1970).
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_builds_nothing_and_each_kind_builds_its_notifier() {
        assert!(Notifier::from_config(&PushConfig::default()).is_none());
        let mut config = PushConfig {
            notifier: NotifierKind::Ntfy,
            ..PushConfig::default()
        };
        assert_eq!(
            Notifier::from_config(&config).map(|n| n.kind()),
            Some(NotifierKind::Ntfy)
        );
        config.notifier = NotifierKind::Webhook;
        assert!(
            Notifier::from_config(&config).is_none(),
            "no url, no webhook"
        );
        config.webhook.url = Some("http://127.0.0.1:1/h".into());
        config.webhook.secret = Some("s".repeat(32));
        let webhook = Notifier::from_config(&config).expect("webhook");
        assert_eq!(webhook.kind(), NotifierKind::Webhook);
        assert!(webhook.names_target());
    }
}
