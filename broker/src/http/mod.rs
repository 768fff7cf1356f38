//! Parley's HTTP API (axum): account sign-up, access tokens and health.
//!
//! Each concern lives in its own module exposing a `routes()` router that
//! [`router`] merges:
//!
//! - [`users`]: `POST /v1/users` (sign-up).
//! - [`tokens`]: `POST /v1/tokens` (log-in, issues an access token).
//! - [`health`]: `GET /healthz` (the node and its store) and `GET /livez`.
//! - [`metrics`]: `GET /metrics` (Prometheus / OpenMetrics text), behind
//!   `[metrics] token` when set, and here only while `[metrics] listen` is off.
//! - [`admin`]: `/v1/admin/...` (sessions, kick, disable, stats), when an
//!   admin token is configured.
//! - [`media`]: `POST /v1/media/uploads` and `GET /v1/media/{conversation}/{id}`,
//!   presigned S3 URLs for files, when `[media]` is configured.
//! - [`keys`]: `/v1/keys/...`, the end-to-end encryption key directory.
//! - [`push`]: `/v1/push/devices/...`, a user's devices for push
//!   notifications, when `push.notifier` is set.
//! - [`openapi`]: `GET /v1/openapi.json`, the OpenAPI description of them all.
//! - [`web`]: `/`, the web chat client built from `web/`, and
//!   `/client-config.json`.
//! - [`bearer`]: [`Bearer`], the signed-in user of a request.
//! - [`error`]: [`ApiError`], the one JSON error shape of every endpoint.
//! - [`json`]: [`ApiJson`], a JSON body extractor whose rejections are [`ApiError`]s.
//! - [`fallback`]: JSON answers for unknown paths and methods.
//! - [`serve`]: the server loop with the `[listeners]` timeouts and caps.
//!
//! Request bodies are limited to [`MAX_BODY_BYTES`].

pub mod admin;
pub mod bearer;
pub mod error;
pub mod fallback;
pub mod health;
pub mod json;
pub mod keys;
pub mod media;
pub mod metrics;
pub mod openapi;
pub mod push;
pub mod serve;
pub mod tokens;
pub mod users;
pub mod web;

use std::future::Future;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use tokio::net::TcpListener;

use crate::auth::Authenticator;
use crate::config::ListenersConfig;

pub use bearer::Bearer;
pub use error::ApiError;
pub use json::ApiJson;

/// The largest accepted request body, in bytes (16 KiB).
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// What the HTTP handlers share.
#[derive(Clone, Debug)]
pub struct HttpState {
    /// Sign-up, log-in and token issuing.
    pub auth: Arc<Authenticator>,
    /// The node's metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The admin API's state; `None` (admin API off) without an admin token.
    pub admin: Option<Arc<admin::AdminState>>,
    /// The push device API's state; `None` (it answers 404) while push is off.
    pub push: Option<Arc<push::PushState>>,
    /// The media endpoints' state; `None` (they answer 404) without `[media]`.
    pub media: Option<Arc<media::MediaState>>,
    /// The key directory's state; `None` (its endpoints answer 404) on a
    /// node without one.
    pub keys: Option<Arc<keys::KeysState>>,
    /// The store check behind `/healthz`; `None` answers 200 without checking.
    pub storage: Option<Arc<health::StorageCheck>>,
    /// Who may sign up.
    pub signup: Arc<crate::auth::signup::SignUpPolicy>,
    /// Who may read `/metrics`, and whether this API serves it at all.
    pub metrics_access: metrics::MetricsAccess,
    /// The web client at `/`; `None`: `/` says there is none.
    pub web: Option<Arc<web::WebState>>,
}

/// The complete HTTP API as an axum router.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .merge(health::routes())
        .merge(users::routes())
        .merge(tokens::routes())
        .merge(if state.metrics_access.on_api {
            metrics::routes()
        } else {
            Router::new()
        })
        .merge(admin::routes())
        .merge(push::routes())
        .merge(media::routes())
        .merge(keys::routes())
        .merge(openapi::routes())
        .merge(web::routes(state.web.as_deref()))
        .fallback(fallback::not_found)
        .method_not_allowed_fallback(fallback::method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Serves the HTTP API on `listener` until `shutdown` completes, then stops
/// accepting and waits for in-flight requests to finish. `limits` are the
/// `[listeners]` timeouts and caps.
///
/// # Errors
///
/// An IO error if the listener fails.
pub async fn serve(
    listener: TcpListener,
    state: HttpState,
    limits: ListenersConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "HTTP API listening");
    }
    let metrics = state.metrics.clone();
    serve::serve_app(listener, router(state), limits, metrics, shutdown).await
}

/// Serves only `GET /metrics` on `listener` (`[metrics] listen`), with the
/// same timeouts and caps as the API.
///
/// # Errors
///
/// An IO error if the listener fails.
pub async fn serve_metrics(
    listener: TcpListener,
    state: HttpState,
    limits: ListenersConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "metrics listening");
    }
    let metrics = state.metrics.clone();
    let app = metrics::routes()
        .fallback(fallback::not_found)
        .method_not_allowed_fallback(fallback::method_not_allowed)
        .with_state(state);
    serve::serve_app(listener, app, limits, metrics, shutdown).await
}
