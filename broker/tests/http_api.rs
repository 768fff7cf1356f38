//! The HTTP API over real HTTP: `parley::http::serve` on an ephemeral port,
//! backed by a real embedded store in a temporary directory.

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chat_core::ids::UserId;
use common::http_server::{authenticator, bare_state, serve_state, TOKEN_TTL};
use parley::auth::{AuthError, Authenticator};
use parley::http;
use persistence::embedded::EmbeddedStore;
use persistence::MetadataStore;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running HTTP API and the parts behind it.
struct Api {
    base: String,
    client: reqwest::Client,
    auth: Arc<Authenticator>,
    store: Arc<dyn MetadataStore>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl Api {
    async fn start() -> Api {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn MetadataStore> =
            Arc::new(EmbeddedStore::open(dir.path()).expect("open store"));
        let auth = authenticator(store.clone(), TOKEN_TTL);
        let (stop, stopped) = oneshot::channel::<()>();
        let (base, server) = serve_state(bare_state(auth.clone()), async move {
            let _ = stopped.await;
        })
        .await;
        Api {
            base,
            client: reqwest::Client::new(),
            auth,
            store,
            stop: Some(stop),
            server: Some(server),
            _dir: dir,
        }
    }

    async fn post_json(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .expect("request");
        read(response).await
    }

    async fn post_raw(&self, path: &str, content_type: &str, body: Vec<u8>) -> (StatusCode, Value) {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await
            .expect("request");
        read(response).await
    }

    async fn sign_up(&self, username: &str, password: &str) -> (StatusCode, Value) {
        self.post_json(
            "/v1/users",
            json!({"username": username, "password": password}),
        )
        .await
    }

    async fn log_in(&self, username: &str, password: &str) -> (StatusCode, Value) {
        self.post_json(
            "/v1/tokens",
            json!({"username": username, "password": password}),
        )
        .await
    }

    /// Triggers graceful shutdown and checks that the server stops cleanly.
    async fn shut_down(mut self) {
        self.stop
            .take()
            .expect("running")
            .send(())
            .expect("server alive");
        let server = self.server.take().expect("running");
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .expect("server stops within 10 s")
            .expect("server task")
            .expect("serve returns Ok");
    }
}

/// Status and JSON body of a response; the body must be JSON.
async fn read(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = response.text().await.expect("body");
    assert!(
        content_type.starts_with("application/json"),
        "{status}: content type {content_type:?}, body {text:?}"
    );
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status}: {e}: {text:?}"));
    (status, body)
}

/// Asserts an error response: status, machine code, and a non-empty message.
fn assert_error(got: &(StatusCode, Value), status: StatusCode, code: &str) {
    assert_eq!(got.0, status, "{}", got.1);
    assert_eq!(got.1["error"], code, "{}", got.1);
    let message = got.1["message"].as_str().expect("message is a string");
    assert!(!message.is_empty());
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

#[tokio::test]
async fn sign_up_creates_the_account() {
    let api = Api::start().await;
    let before_ms = i64::try_from(unix_now() * 1000).unwrap();
    let (status, body) = api.sign_up("alice", "correct horse").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["username"], "alice");
    let created = body["created_at_ms"].as_i64().expect("created_at_ms");
    assert!(
        created >= before_ms && created <= before_ms + 60_000,
        "{created}"
    );

    let stored = api.store.get_user("alice").await.unwrap().expect("stored");
    assert_eq!(stored.created_at_ms, created);
    assert!(!stored.disabled);
    api.shut_down().await;
}

#[tokio::test]
async fn duplicate_username_is_409() {
    let api = Api::start().await;
    assert_eq!(
        api.sign_up("alice", "correct horse").await.0,
        StatusCode::CREATED
    );
    let got = api.sign_up("alice", "other password").await;
    assert_error(&got, StatusCode::CONFLICT, "username_taken");
    assert!(got.1["message"].as_str().unwrap().contains("alice"));
    // The original password is untouched.
    assert_eq!(api.log_in("alice", "correct horse").await.0, StatusCode::OK);
    api.shut_down().await;
}

#[tokio::test]
async fn invalid_username_is_400_with_the_reason() {
    let api = Api::start().await;
    for bad in ["Alice", "", "-dash", "has/slash", &"a".repeat(33)] {
        let got = api.sign_up(bad, "correct horse").await;
        assert_error(&got, StatusCode::BAD_REQUEST, "invalid_username");
        let reason = UserId::parse(bad).unwrap_err().to_string();
        let message = got.1["message"].as_str().unwrap();
        assert!(
            message.contains(&reason),
            "{bad:?}: {message:?} lacks {reason:?}"
        );
    }
    assert!(api.store.get_user("Alice").await.unwrap().is_none());
    api.shut_down().await;
}

#[tokio::test]
async fn weak_password_is_400() {
    let api = Api::start().await;
    let got = api.sign_up("alice", "short").await;
    assert_error(&got, StatusCode::BAD_REQUEST, "weak_password");
    assert!(got.1["message"]
        .as_str()
        .unwrap()
        .contains("at least 8 bytes"));
    let got = api.sign_up("alice", &"p".repeat(1025)).await;
    assert_error(&got, StatusCode::BAD_REQUEST, "weak_password");
    assert!(api.store.get_user("alice").await.unwrap().is_none());
    api.shut_down().await;
}

#[tokio::test]
async fn bad_bodies_get_json_errors() {
    let api = Api::start().await;
    let got = api
        .post_raw(
            "/v1/users",
            "application/json",
            b"{\"username\": \"alice\",".to_vec(),
        )
        .await;
    assert_error(&got, StatusCode::BAD_REQUEST, "malformed_json");

    let got = api
        .post_raw(
            "/v1/tokens",
            "application/json",
            b"not json at all".to_vec(),
        )
        .await;
    assert_error(&got, StatusCode::BAD_REQUEST, "malformed_json");

    let got = api
        .post_json("/v1/users", json!({"username": "alice"}))
        .await;
    assert_error(&got, StatusCode::BAD_REQUEST, "invalid_request");
    assert!(got.1["message"].as_str().unwrap().contains("password"));

    let got = api
        .post_json("/v1/users", json!({"username": 7, "password": "x"}))
        .await;
    assert_error(&got, StatusCode::BAD_REQUEST, "invalid_request");

    let got = api
        .post_raw(
            "/v1/users",
            "text/plain",
            br#"{"username":"a","password":"b"}"#.to_vec(),
        )
        .await;
    assert_error(
        &got,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    api.shut_down().await;
}

#[tokio::test]
async fn bodies_over_16_kib_are_413() {
    let api = Api::start().await;
    let padding = "p".repeat(http::MAX_BODY_BYTES);
    let got = api
        .post_json(
            "/v1/users",
            json!({"username": "alice", "password": padding}),
        )
        .await;
    assert_error(&got, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");

    // Just under the limit is read (and then refused on its merits).
    let padding = "p".repeat(http::MAX_BODY_BYTES - 100);
    let got = api
        .post_json(
            "/v1/users",
            json!({"username": "alice", "password": padding}),
        )
        .await;
    assert_error(&got, StatusCode::BAD_REQUEST, "weak_password");
    api.shut_down().await;
}

#[tokio::test]
async fn log_in_returns_a_token_mqtt_accepts() {
    let api = Api::start().await;
    assert_eq!(
        api.sign_up("alice", "correct horse").await.0,
        StatusCode::CREATED
    );
    let before = unix_now();
    let (status, body) = api.log_in("alice", "correct horse").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    let expires_at = body["expires_at"].as_u64().expect("expires_at");
    let ttl = TOKEN_TTL.as_secs();
    assert!(
        expires_at >= before + ttl && expires_at <= unix_now() + ttl,
        "{expires_at}"
    );
    let token = body["access_token"].as_str().expect("access_token");

    let user = api
        .auth
        .authenticate_mqtt("alice", token, [127, 0, 0, 1].into())
        .await
        .expect("token accepted");
    assert_eq!(user.as_str(), "alice");
    // The token is bound to its user.
    assert_eq!(
        api.sign_up("bob", "bob's password").await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        api.auth
            .authenticate_mqtt("bob", token, [127, 0, 0, 1].into())
            .await,
        Err(AuthError::BadCredentials)
    );
    api.shut_down().await;
}

#[tokio::test]
async fn wrong_password_and_unknown_user_are_401() {
    let api = Api::start().await;
    assert_eq!(
        api.sign_up("alice", "correct horse").await.0,
        StatusCode::CREATED
    );
    let wrong = api.log_in("alice", "wrong horse").await;
    assert_error(&wrong, StatusCode::UNAUTHORIZED, "bad_credentials");
    let unknown = api.log_in("nobody", "correct horse").await;
    assert_error(&unknown, StatusCode::UNAUTHORIZED, "bad_credentials");
    // Indistinguishable to the client.
    assert_eq!(wrong.1, unknown.1);
    api.shut_down().await;
}

#[tokio::test]
async fn disabled_user_is_403_and_refused_over_mqtt() {
    let api = Api::start().await;
    assert_eq!(
        api.sign_up("alice", "correct horse").await.0,
        StatusCode::CREATED
    );
    let (_, body) = api.log_in("alice", "correct horse").await;
    let token = body["access_token"].as_str().expect("token").to_owned();

    api.store.set_user_disabled("alice", true).await.unwrap();
    let got = api.log_in("alice", "correct horse").await;
    assert_error(&got, StatusCode::FORBIDDEN, "account_disabled");
    // Without the right password, the account's state is not revealed.
    let got = api.log_in("alice", "wrong horse").await;
    assert_error(&got, StatusCode::UNAUTHORIZED, "bad_credentials");

    assert_eq!(
        api.auth
            .authenticate_mqtt("alice", "correct horse", [127, 0, 0, 1].into())
            .await,
        Err(AuthError::Disabled)
    );
    assert_eq!(
        api.auth
            .authenticate_mqtt("alice", &token, [127, 0, 0, 1].into())
            .await,
        Err(AuthError::Disabled)
    );
    api.shut_down().await;
}

#[tokio::test]
async fn healthz_and_livez_are_200_ok() {
    let api = Api::start().await;
    let response = api
        .client
        .get(format!("{}/healthz", api.base))
        .send()
        .await
        .expect("request");
    let (status, body) = read(response).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"status": "ok"}));
    let response = api
        .client
        .get(format!("{}/livez", api.base))
        .send()
        .await
        .expect("request");
    let (status, body) = read(response).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"status": "ok"}));
    api.shut_down().await;
}

#[tokio::test]
async fn unknown_paths_and_methods_get_json_errors() {
    let api = Api::start().await;
    let response = api
        .client
        .get(format!("{}/v1/nothing-here", api.base))
        .send()
        .await
        .expect("request");
    assert_error(&read(response).await, StatusCode::NOT_FOUND, "not_found");

    let response = api
        .client
        .get(format!("{}/v1/users", api.base))
        .send()
        .await
        .expect("request");
    let allow = response
        .headers()
        .get(reqwest::header::ALLOW)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_error(
        &read(response).await,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
    assert_eq!(allow, "POST");
    api.shut_down().await;
}

#[tokio::test]
async fn damaged_account_record_is_503_without_internal_detail() {
    let api = Api::start().await;
    api.store
        .create_user(persistence::NewUser {
            username: "damaged".into(),
            password_hash: "pbkdf2-sha256$not-a-number$x$y".into(),
            created_at_ms: 0,
        })
        .await
        .unwrap();
    let got = api.log_in("damaged", "any password").await;
    assert_error(&got, StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    assert!(!got.1["message"].as_str().unwrap().contains("pbkdf2"));
    api.shut_down().await;
}
