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
//! query on a pooled connection and for the embedded store nothing at all. It
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
use persistence::MetadataStore;
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
    /// The latest outcome (`Err` holds the reason) and when it was taken.
    last: tokio::sync::Mutex<Option<(Instant, Result<(), String>)>>,
}

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
            last: tokio::sync::Mutex::new(None),
        }
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
        let outcome = match tokio::time::timeout(CHECK_TIMEOUT, self.store.flush()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("{} check failed: {e}", self.backend)),
            Err(_) => Err(format!(
                "{} check failed: no answer within {CHECK_TIMEOUT:?}",
                self.backend
            )),
        };
        let was_healthy = last.as_ref().is_none_or(|(_, before)| before.is_ok());
        match &outcome {
            Err(reason) if was_healthy => {
                tracing::error!(%reason, "storage unreachable: /healthz answers 503 until it is back");
            }
            Ok(()) if !was_healthy => {
                tracing::info!(
                    backend = self.backend,
                    "storage reachable again: /healthz answers 200"
                );
            }
            _ => {}
        }
        *last = Some((Instant::now(), outcome.clone()));
        outcome
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
