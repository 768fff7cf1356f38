//! `GET /metrics`: the node's metrics in the OpenMetrics text format, for
//! Prometheus to scrape (see `deploy/prometheus.yml`).
//!
//! With `[metrics] token` set, a scrape must present it as
//! `Authorization: Bearer <token>` (401 otherwise, counted as
//! `metrics_unauthorized`). With `[metrics] listen` set, `/metrics` is served
//! on that listener only and the public API answers 404 for it.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use super::admin::same_secret;
use super::bearer::bearer_token;
use super::{ApiError, HttpState};
use crate::metrics::security::Refusal;

/// Who may read `/metrics`, and where.
#[derive(Clone, Debug)]
pub struct MetricsAccess {
    /// The bearer token a scrape must present; `None`: anyone may scrape.
    pub token: Option<Arc<str>>,
    /// Whether the public HTTP API serves `/metrics` (no separate listener).
    pub on_api: bool,
}

impl Default for MetricsAccess {
    fn default() -> Self {
        MetricsAccess {
            token: None,
            on_api: true,
        }
    }
}

/// The metrics route.
pub fn routes() -> Router<HttpState> {
    Router::new().route("/metrics", get(scrape))
}

/// Answers with every metric of the node, or 401 without the metrics token.
pub async fn scrape(
    State(state): State<HttpState>,
    parts: Parts,
) -> Result<impl IntoResponse, ApiError> {
    if let Some(token) = &state.metrics_access.token {
        let authorized =
            bearer_token(&parts).is_some_and(|presented| same_secret(presented, token));
        if !authorized {
            state.metrics.defended(Refusal::MetricsUnauthorized);
            return Err(ApiError::MetricsTokenRequired);
        }
    }
    Ok((
        [(CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        state.metrics.encode(),
    ))
}
