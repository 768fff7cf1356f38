//! `/`: the web chat client. Parley serves the bundle built from `web/`
//! (`index.html` and `assets/`) and `GET /client-config.json`, which tells
//! the client where the MQTT WebSocket listener is and whether media uploads
//! are on. Without a built bundle,
//! `/` answers with a page that says how to build it.

use std::path::PathBuf;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use tower_http::services::ServeDir;

use super::HttpState;

/// Where the web client is and what it needs to know.
#[derive(Debug, Clone)]
pub struct WebState {
    /// The built bundle: `index.html` and `assets/`.
    pub dir: PathBuf,
    /// What `GET /client-config.json` answers.
    pub client: ClientConfig,
}

/// The web client's settings, served as `GET /client-config.json` (with
/// `media`, whether `[media]` is configured).
#[derive(Debug, Clone, Serialize)]
pub struct ClientConfig {
    /// Port of the MQTT WebSocket listener on the page's host; `None` when
    /// the listener is off.
    pub mqtt_ws_port: Option<u16>,
    /// Its HTTP path.
    pub mqtt_ws_path: String,
}

/// The bundle directory of the source tree Parley was built from.
pub fn default_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../web/dist"))
}

/// The web client routes; without `web`, `/` explains how to build it.
pub fn routes(web: Option<&WebState>) -> Router<HttpState> {
    let router = Router::new()
        .route("/", get(index))
        .route("/client-config.json", get(client_config));
    match web {
        Some(web) => router.nest_service("/assets", ServeDir::new(web.dir.join("assets"))),
        None => router,
    }
}

async fn index(State(state): State<HttpState>) -> Response {
    let Some(web) = &state.web else {
        return missing("this node serves no web client").into_response();
    };
    match tokio::fs::read_to_string(web.dir.join("index.html")).await {
        Ok(html) => ([(header::CACHE_CONTROL, "no-cache")], Html(html)).into_response(),
        Err(_) => missing(&format!(
            "the web client is not built: {} has no index.html",
            web.dir.display()
        ))
        .into_response(),
    }
}

/// The client's settings, and whether media uploads are on.
#[derive(Serialize)]
struct ClientSettings<'a> {
    #[serde(flatten)]
    client: &'a ClientConfig,
    /// Whether `[media]` is configured (the presigned upload endpoints work).
    media: bool,
}

async fn client_config(State(state): State<HttpState>) -> Response {
    match &state.web {
        Some(web) => Json(ClientSettings {
            client: &web.client,
            media: state.media.is_some(),
        })
        .into_response(),
        None => super::ApiError::NotFound.into_response(),
    }
}

/// The page `/` shows when there is no client to serve.
fn missing(why: &str) -> (StatusCode, Html<String>) {
    let why = why
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    (
        StatusCode::OK,
        Html(format!(
            "<!doctype html><meta charset=utf-8><title>Parley</title>\
             <h1>Parley is running</h1><p>{why}.</p>\
             <p>Build the web client with Node.js 20 or later (Debian 13: \
             <code>apt-get install nodejs npm</code>), then reload this page:</p>\
             <pre>npm --prefix web ci\nnpm --prefix web run build</pre>\
             <p>The HTTP API is described at <a href=\"/v1/openapi.json\">/v1/openapi.json</a>.</p>"
        )),
    )
}
