//! `GET /healthz`: whether the node can serve, including its store (for
//! readiness probes and load balancers); `GET /livez`: whether the process
//! serves HTTP at all (for liveness probes).
//!
//! A node whose store does not answer cannot store a message or log anyone
//! in, so `/healthz` checks the store too: `200 {"status":"ok"}` while it
//! answers, `503 {"status":"unavailable","reason":"..."}` naming the backend
//! and the failure while it does not. A load balancer or readiness probe then
//! takes the node out of rotation until the store is back, and puts it back
//! by itself afterwards. `/livez` does not look at the store: a liveness probe
//! on it does not restart a node because its database is down (a restart
//! would not bring the database back, and cut every client off).
//!
//! The check is [`MetadataStore::flush`], which for PostgreSQL is an empty
//! query on a pooled connection and for the embedded store nothing at all,
//! plus, when history lives in a store of its own (Scylla), a read of one
//! conversation head there ([`StorageCheck::with_history`]). It
//! is bounded by [`CHECK_TIMEOUT`] and its outcome is reused for
//! [`CHECK_CACHE`], so a burst of probes costs the store one round trip;
//! concurrent probes wait for the one check in progress. Each change between
//! healthy and unhealthy is logged (an `error` when the store stops
//! answering, an `info` when it is back).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use persistence::{HistoryStore, MetadataStore};
use serde::Serialize;

use super::HttpState;

/// Longest one store check may take before it counts as failed (below the
/// one-second default timeout of a Kubernetes probe).
pub const CHECK_TIMEOUT: Duration = Duration::from_millis(800);

/// How long one check's outcome answers further probes.
pub const CHECK_CACHE: Duration = Duration::from_secs(1);

/// The health endpoint's routes.
pub fn routes() -> Router<HttpState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/livez", get(livez))
}

/// The body of a health answer.
#[derive(Debug, Serialize)]
pub struct Health {
    /// `"ok"`, or `"unavailable"` while the store does not answer.
    pub status: &'static str,
    /// Why the node is unavailable: the backend and its failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Checks that the node's store answers, for `/healthz`.
pub struct StorageCheck {
    /// The store to check.
    store: Arc<dyn MetadataStore>,
    /// The backend's name in reasons and logs (`PostgreSQL`, `embedded store`).
    backend: &'static str,
    /// A separate history store and its name, checked too.
    history: Option<(Arc<dyn HistoryStore>, &'static str)>,
    /// The latest outcome (`Err` holds the reason) and when it was taken.
    last: tokio::sync::Mutex<Option<(Instant, Result<(), String>)>>,
}

/// The conversation whose head the history check reads (it need not exist).
const PROBE_CONVERSATION: &str = "parley.healthz";

impl std::fmt::Debug for StorageCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageCheck")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl StorageCheck {
    /// A check of `store`, called `backend` in reasons and logs.
    pub fn new(store: Arc<dyn MetadataStore>, backend: &'static str) -> StorageCheck {
        StorageCheck {
            store,
            backend,
            history: None,
            last: tokio::sync::Mutex::new(None),
        }
    }

    /// Also checks `history`, a store of its own called `backend`.
    pub fn with_history(
        mut self,
        history: Arc<dyn HistoryStore>,
        backend: &'static str,
    ) -> StorageCheck {
        self.history = Some((history, backend));
        self
    }

    /// Checks every store once, each within [`CHECK_TIMEOUT`].
    async fn check_now(&self) -> Result<(), String> {
        bounded(self.backend, self.store.flush()).await?;
        if let Some((history, backend)) = &self.history {
            bounded(backend, history.last_seq(PROBE_CONVERSATION)).await?;
        }
        Ok(())
    }

    /// `Ok` if the store answered within [`CHECK_TIMEOUT`] (now or less than
    /// [`CHECK_CACHE`] ago), else why not.
    pub async fn check(&self) -> Result<(), String> {
        let mut last = self.last.lock().await;
        if let Some((at, outcome)) = last.as_ref() {
            if at.elapsed() < CHECK_CACHE {
                return outcome.clone();
            }
        }
        let outcome = self.check_now().await;
        let was_healthy = last.as_ref().is_none_or(|(_, before)| before.is_ok());
        match &outcome {
            Err(reason) if was_healthy => {
                tracing::error!(%reason, "storage unreachable: /healthz answers 503 until it is back");
            }
            Ok(()) if !was_healthy => {
                tracing::info!("storage reachable again: /healthz answers 200");
            }
            _ => {}
        }
        *last = Some((Instant::now(), outcome.clone()));
        outcome
    }
}

/// Runs one store call within [`CHECK_TIMEOUT`]; `Err` names `backend` and the failure.
async fn bounded<T>(
    backend: &str,
    call: impl std::future::Future<Output = Result<T, persistence::StoreError>>,
) -> Result<(), String> {
    match tokio::time::timeout(CHECK_TIMEOUT, call).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("{backend} check failed: {e}")),
        Err(_) => Err(format!(
            "{backend} check failed: no answer within {CHECK_TIMEOUT:?}"
        )),
    }
}

/// Answers `200 {"status":"ok"}` while the store answers (or when the
/// state has no store to check), else `503` with the reason.
pub async fn healthz(State(state): State<HttpState>) -> (StatusCode, Json<Health>) {
    let outcome = match &state.storage {
        Some(storage) => storage.check().await,
        None => Ok(()),
    };
    match outcome {
        Ok(()) => (
            StatusCode::OK,
            Json(Health {
                status: "ok",
                reason: None,
            }),
        ),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: "unavailable",
                reason: Some(reason),
            }),
        ),
    }
}

/// Answers `200 {"status":"ok"}` whenever the node serves HTTP.
pub async fn livez() -> Json<Health> {
    Json(Health {
        status: "ok",
        reason: None,
    })
}
