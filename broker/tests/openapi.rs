//! `GET /v1/openapi.json` against the router: every route the HTTP modules
//! declare is documented with exactly its methods, every documented
//! operation reaches a handler of a running router (not the 405 fallback),
//! every documented path is routed (another method gets 405, not 404), and
//! every error code the API can answer is documented.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::http_server::serve_bare;
use parley::http;
use reqwest::{Method, StatusCode};
use serde_json::Value;

const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];

/// `(method, path)` of every `.route(...)` in the HTTP modules' sources,
/// with axum's `:param` written `{param}` as in OpenAPI.
fn declared_routes() -> BTreeSet<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http");
    let mut routes = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).expect("src/http") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let source = std::fs::read_to_string(&path).expect("source");
        for (at, _) in source.match_indices(".route(") {
            let rest = &source[at + ".route(".len()..];
            let start = rest.find('"').expect("a path literal") + 1;
            let end = start + rest[start..].find('"').expect("closing quote");
            let route = &rest[start..end];
            // The method routers: up to the parenthesis that closes .route(.
            let mut depth = 1;
            let close = rest
                .char_indices()
                .find(|&(_, c)| {
                    match c {
                        '(' => depth += 1,
                        ')' => depth -= 1,
                        _ => {}
                    }
                    depth == 0
                })
                .expect("closing parenthesis")
                .0;
            let call = &rest[end..close];
            let openapi_path = route
                .split('/')
                .map(|level| match level.strip_prefix(':') {
                    Some(name) => format!("{{{name}}}"),
                    None => level.to_owned(),
                })
                .collect::<Vec<_>>()
                .join("/");
            let mut found = false;
            for method in METHODS {
                let word = format!("{method}(");
                if call.match_indices(&word).any(|(i, _)| {
                    i == 0
                        || !call.as_bytes()[i - 1].is_ascii_alphanumeric()
                            && call.as_bytes()[i - 1] != b'_'
                }) {
                    routes.insert((method.to_owned(), openapi_path.clone()));
                    found = true;
                }
            }
            assert!(found, "no method router for {route} in {}", path.display());
        }
    }
    routes
}

fn document() -> Value {
    serde_json::from_str(http::openapi::DOCUMENT).expect("openapi.json is JSON")
}

fn documented_operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            assert!(METHODS.contains(&method.as_str()), "{path}: {method}");
            ops.insert((method.clone(), path.clone()));
        }
    }
    ops
}

#[test]
fn every_route_is_documented_with_its_methods() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut declared = declared_routes();
    // The web client's page is HTML for people, not part of the API.
    declared.remove(&("get".to_owned(), "/".to_owned()));
    assert!(declared.contains(&("post".to_owned(), "/v1/users".to_owned())));
    assert_eq!(documented_operations(&doc), declared);
}

#[test]
fn every_operation_documents_its_statuses_and_every_error_code_is_documented() {
    let doc = document();
    let text = http::openapi::DOCUMENT;
    for (method, path) in documented_operations(&doc) {
        let op = &doc["paths"][&path][&method];
        assert!(op["summary"].is_string(), "{method} {path}: summary");
        assert!(op["security"].is_array(), "{method} {path}: security");
        let responses = op["responses"].as_object().expect("responses");
        assert!(
            responses.keys().any(|s| s.starts_with('2')),
            "{method} {path}: a success status"
        );
        for (status, response) in responses {
            assert!(status.parse::<u16>().is_ok(), "{method} {path}: {status}");
            assert!(
                response["description"].is_string() || response["$ref"].is_string(),
                "{method} {path} {status}"
            );
        }
    }
    // Each code ApiError::code can answer appears in the document.
    let errors =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http/error.rs"))
            .expect("error.rs");
    let code_fn = &errors[errors.find("pub fn code(&self)").expect("ApiError::code")..];
    let code_fn = &code_fn[..code_fn.find("\n    }\n").expect("end of code()")];
    let mut codes = 0;
    for line in code_fn.lines() {
        if let Some((_, code)) = line.split_once("=> \"") {
            let code = code.trim_end_matches("\",");
            assert!(
                text.contains(&format!("`{code}`")),
                "error code {code} is undocumented"
            );
            codes += 1;
        }
    }
    assert!(codes > 20, "found only {codes} error codes");
}

#[tokio::test]
async fn the_served_document_matches_the_running_router() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = serve_bare(dir.path(), None).await;
    let client = reqwest::Client::new();

    let served = client
        .get(format!("{base}/v1/openapi.json"))
        .send()
        .await
        .expect("request");
    assert_eq!(served.status(), StatusCode::OK);
    let served: Value = served.json().await.expect("JSON");
    assert_eq!(served, document());

    let doc = document();
    let ops = documented_operations(&doc);
    let paths: BTreeSet<&String> = ops.iter().map(|(_, p)| p).collect();
    for path in paths {
        let url = format!("{base}{}", path.replace('{', "x").replace('}', ""));
        for method in METHODS {
            let documented = ops.contains(&(method.to_owned(), path.clone()));
            let response = client
                .request(
                    Method::from_bytes(method.to_uppercase().as_bytes()).unwrap(),
                    &url,
                )
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .expect("request");
            let status = response.status();
            if documented {
                assert_ne!(
                    status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path} is documented but not routed"
                );
            } else {
                // The path is routed (an unknown path answers 404), just
                // not with this method.
                assert_eq!(
                    status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path} is not documented: the router must refuse it with 405"
                );
            }
        }
    }
}
