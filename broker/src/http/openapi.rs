//! `GET /v1/openapi.json`: the OpenAPI 3.1 description of every route of
//! the HTTP API (bodies, status codes, the error format, authentication),
//! kept in `openapi.json` beside this file. `broker/tests/openapi.rs` checks
//! it against the routes the router has.

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use super::HttpState;

/// The document, as served.
pub const DOCUMENT: &str = include_str!("openapi.json");

/// The route of the document.
pub fn routes() -> Router<HttpState> {
    Router::new().route("/v1/openapi.json", get(document))
}

async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT)
}
