//! What the HTTP port serves besides the API: the web client at `/` (the
//! bundle built from `web/`), its settings at `/client-config.json`, and the
//! page that says how to build the client when there is none.

mod common;

use std::path::Path;

use common::http_server::serve_bare;
use parley::http::web::{ClientConfig, WebState};
use reqwest::StatusCode;

async fn get(url: &str) -> (StatusCode, String, String) {
    let response = reqwest::get(url).await.expect("request");
    let status = response.status();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, content_type, response.text().await.expect("body"))
}

fn web_state(dir: &Path) -> WebState {
    WebState {
        dir: dir.to_path_buf(),
        client: ClientConfig {
            mqtt_ws_port: Some(8083),
            mqtt_ws_path: "/mqtt".into(),
        },
    }
}

#[tokio::test]
async fn the_built_client_is_served_at_the_root() {
    let store = tempfile::tempdir().expect("tempdir");
    let bundle = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(bundle.path().join("assets")).expect("assets");
    std::fs::write(bundle.path().join("index.html"), "<title>Parley</title>").expect("index");
    std::fs::write(bundle.path().join("assets/app.js"), "console.log(1)").expect("app.js");
    let base = serve_bare(store.path(), Some(web_state(bundle.path()))).await;

    let (status, content_type, body) = get(&format!("{base}/")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("text/html"), "{content_type}");
    assert_eq!(body, "<title>Parley</title>");
    let (status, content_type, body) = get(&format!("{base}/assets/app.js")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.contains("javascript"), "{content_type}");
    assert_eq!(body, "console.log(1)");
    let (status, _, body) = get(&format!("{base}/client-config.json")).await;
    assert_eq!(status, StatusCode::OK);
    let config: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(
        config,
        serde_json::json!({"mqtt_ws_port": 8083, "mqtt_ws_path": "/mqtt", "media": false})
    );
    let (status, _, _) = get(&format!("{base}/assets/missing.js")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The API is still there, and unknown paths still get the JSON 404.
    let (status, content_type, _) = get(&format!("{base}/nowhere")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(content_type.starts_with("application/json"));
}

#[tokio::test]
async fn without_a_built_client_the_root_says_how_to_build_it() {
    let empty = tempfile::tempdir().expect("tempdir");
    for web in [Some(web_state(&empty.path().join("dist"))), None] {
        let store = tempfile::tempdir().expect("tempdir");
        let base = serve_bare(store.path(), web).await;
        let (status, content_type, body) = get(&format!("{base}/")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(content_type.starts_with("text/html"), "{content_type}");
        assert!(body.contains("npm --prefix web ci"), "{body}");
        assert!(body.contains("npm --prefix web run build"), "{body}");
    }
}
