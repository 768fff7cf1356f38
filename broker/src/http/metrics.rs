//! `GET /metrics`: the node's metrics in the OpenMetrics text format, for
//! Prometheus to scrape (see `deploy/prometheus.yml`).

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use super::HttpState;

/// The metrics route.
pub fn routes() -> Router<HttpState> {
    Router::new().route("/metrics", get(scrape))
}

/// Answers with every metric of the node.
pub async fn scrape(State(state): State<HttpState>) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        state.metrics.encode(),
    )
}
