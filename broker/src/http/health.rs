//! `GET /healthz`: liveness of the HTTP side of the node.

use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use super::HttpState;

/// The health endpoint's routes.
pub fn routes() -> Router<HttpState> {
    Router::new().route("/healthz", get(healthz))
}

/// The body of a health answer.
#[derive(Debug, Serialize)]
pub struct Health {
    /// Always `"ok"` while the node serves requests.
    pub status: &'static str,
}

/// Answers `200 {"status":"ok"}`.
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}
