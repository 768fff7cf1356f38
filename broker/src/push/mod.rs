//! Push notifications to devices that have no live session.
//!
//! Devices register a push target over the HTTP API (see
//! [`crate::http::push`]); targets live in the metadata store. When the chat
//! path stores a new message, it hands the members without a live session on
//! this node to [`PushService::message_stored`], which only queues: a worker
//! task looks the targets up and sends one notification per device through
//! the deployment's notifier, retrying with exponential backoff.
//!
//! - [`config`]: `[push]`, [`NotifierKind`].
//! - [`target`]: what a device id and a target of each kind may look like.
//! - [`event`]: [`MessageEvent`] (from the chat path) and [`event::Notification`]
//!   (to one device); content-free unless `push.include_text`.
//! - [`notifier`], [`webhook`], [`ntfy`], [`gotify`], [`fcm`]: the requests.
//! - [`request`]: sending one request and classifying the answer.
//! - [`queue`]: the bounded queue and the counters.
//! - [`worker`]: lookups, deliveries and retries.
//! - [`metrics`]: the push counters in `/metrics`.

pub mod config;
pub mod event;
pub mod fcm;
pub mod gotify;
pub mod metrics;
pub mod notifier;
pub mod ntfy;
pub mod queue;
pub mod request;
pub mod target;
pub mod webhook;
pub mod worker;

use std::sync::Arc;
use std::time::Duration;

use parley_proto::v1::ChatMessage;
use persistence::MetadataStore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::{NotifierKind, PushConfig};
pub use event::MessageEvent;
pub use queue::PushStatsSnapshot;

use notifier::Notifier;
use queue::{PushQueue, PushStats};
use worker::{RetryPolicy, Worker};

/// Why push notifications could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum PushSetupError {
    /// `[push]` names a notifier without the settings it needs.
    #[error("push.notifier = {0:?} is missing its settings")]
    Incomplete(NotifierKind),
    /// The HTTP client could not be built (e.g. no TLS roots).
    #[error("building the push HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// The chat path's handle on push notifications; cheap to clone.
#[derive(Debug, Clone)]
pub struct PushService {
    queue: PushQueue,
    kind: NotifierKind,
    include_text: bool,
}

impl PushService {
    /// Starts the push worker on `tasks` (it stops with `shutdown`) and
    /// returns the handle; `Ok(None)` when `push.notifier = "off"`.
    ///
    /// # Errors
    ///
    /// [`PushSetupError`] if the notifier's settings are incomplete or the
    /// HTTP client cannot be built.
    pub fn start(
        config: &PushConfig,
        store: Arc<dyn MetadataStore>,
        shutdown: CancellationToken,
        tasks: &TaskTracker,
    ) -> Result<Option<PushService>, PushSetupError> {
        if config.notifier == NotifierKind::Off {
            return Ok(None);
        }
        let notifier =
            Notifier::from_config(config).ok_or(PushSetupError::Incomplete(config.notifier))?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.request_timeout_ms))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("parley/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let stats = Arc::new(PushStats::default());
        let (queue, rx) = PushQueue::new(config.queue_capacity, stats.clone());
        let worker = Worker::new(
            store,
            notifier,
            client,
            stats,
            RetryPolicy {
                max_attempts: config.max_attempts,
                initial_backoff: Duration::from_millis(config.initial_backoff_ms),
                max_backoff: Duration::from_millis(config.max_backoff_ms),
            },
            config.max_in_flight,
        );
        tasks.spawn(worker.run(rx, shutdown));
        tracing::info!(notifier = %config.notifier, include_text = config.include_text, "push notifications on");
        Ok(Some(PushService {
            queue,
            kind: config.notifier,
            include_text: config.include_text,
        }))
    }

    /// Queues notifications of the stored `message` to `recipients` (members
    /// without a live session, never the sender). Never waits: `false` if the
    /// queue was full and the notifications were dropped (and counted).
    pub fn message_stored(&self, message: &ChatMessage, recipients: Vec<String>) -> bool {
        if recipients.is_empty() {
            return true;
        }
        self.queue
            .offer(MessageEvent::new(message, recipients, self.include_text))
    }

    /// The notifier kind devices must register targets for.
    pub fn kind(&self) -> NotifierKind {
        self.kind
    }

    /// The push counters now.
    pub fn stats(&self) -> PushStatsSnapshot {
        self.queue.stats().snapshot()
    }
}
