//! Media through a real S3-compatible server: members get presigned upload
//! and download URLs and move bytes with them; non-members, oversized
//! uploads and unlisted content types are refused by Parley; tampered and
//! expired URLs are refused by the S3 server.
//!
//! Needs an S3 server that checks presigned signatures and expiry, named by
//! `PARLEY_TEST_S3` (endpoint URL), `PARLEY_TEST_S3_ACCESS_KEY` and
//! `PARLEY_TEST_S3_SECRET_KEY`; `.ci/s3.sh` starts one. Without
//! `PARLEY_TEST_S3` these tests fail under CI (`CI` set) and are skipped
//! otherwise.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::chat::{direct, password_of, sign_up_users, ChatClient};
use common::{log_in, start_node, TestNode};
use parley_proto::v1::{chat_message::Body, ChatMessage, MediaRef};
use reqwest::StatusCode;
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use serde_json::{json, Value};

/// The S3 server under test, with a fresh bucket.
struct S3 {
    endpoint: String,
    access_key: String,
    secret_key: String,
    bucket: String,
}

/// The S3 server from the environment with a new, empty bucket; `None`
/// (after saying why) when no server is configured outside CI.
async fn s3() -> Option<S3> {
    let Ok(endpoint) = std::env::var("PARLEY_TEST_S3") else {
        if std::env::var_os("CI").is_some() {
            panic!("PARLEY_TEST_S3 is not set; CI must run the media tests (see .ci/s3.sh)");
        }
        eprintln!("skipped: PARLEY_TEST_S3 is not set (source .ci/s3.sh to run the media tests)");
        return None;
    };
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"));
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .subsec_nanos();
    let s3 = S3 {
        endpoint,
        access_key: var("PARLEY_TEST_S3_ACCESS_KEY"),
        secret_key: var("PARLEY_TEST_S3_SECRET_KEY"),
        bucket: format!("parley-test-{}-{nanos}", std::process::id()),
    };
    let bucket = Bucket::new(
        s3.endpoint.parse().expect("PARLEY_TEST_S3 is a URL"),
        UrlStyle::Path,
        s3.bucket.clone(),
        "us-east-1",
    )
    .expect("bucket URL");
    let credentials = Credentials::new(s3.access_key.clone(), s3.secret_key.clone());
    let url = bucket
        .create_bucket(&credentials)
        .sign(Duration::from_secs(60));
    let response = reqwest::Client::new()
        .put(url)
        .send()
        .await
        .expect("create bucket");
    assert!(
        response.status().is_success(),
        "creating bucket {}: {:?}",
        s3.bucket,
        response.text().await
    );
    Some(s3)
}

/// A node with media on `s3`, URLs living `ttl_secs`, at most 1 KiB of
/// images or PDF per upload.
async fn media_node(s3: &S3, ttl_secs: u64) -> TestNode {
    start_node(|config| {
        config.media.endpoint = Some(s3.endpoint.clone());
        config.media.bucket = Some(s3.bucket.clone());
        config.media.access_key = Some(s3.access_key.clone());
        config.media.secret_key = Some(s3.secret_key.clone());
        config.media.url_ttl_secs = ttl_secs;
        config.media.max_bytes = 1024;
        config.media.allowed_content_types = vec!["image/*".into(), "application/pdf".into()];
    })
    .await
}

/// Signs `users` up, and has the first open the direct conversation with the
/// second by saying hello. Returns the conversation id.
async fn direct_conversation(node: &TestNode, users: &[&str]) -> String {
    sign_up_users(node, users).await;
    let conv = direct(users[0], users[1]);
    let mut first = ChatClient::v4(node, users[0], "media-test").await;
    first.say(&conv, "hello-1", "hello").await;
    conv
}

async fn token(node: &TestNode, user: &str) -> String {
    log_in(node, user, &password_of(user)).await
}

/// `POST /v1/media/uploads` as the holder of `token`: status and JSON body.
async fn ask_upload(node: &TestNode, token: &str, body: Value) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/v1/media/uploads", node.http()))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("upload request");
    let status = response.status();
    (status, response.json().await.expect("JSON answer"))
}

/// `GET /v1/media/{key}` as the holder of `token`: status and JSON body.
async fn ask_download(node: &TestNode, token: &str, key: &str) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .get(format!("{}/v1/media/{key}", node.http()))
        .bearer_auth(token)
        .send()
        .await
        .expect("download request");
    let status = response.status();
    (status, response.json().await.expect("JSON answer"))
}

/// Sends `bytes` as a presigned upload answer says; overrides replace the
/// signed content type. Returns the S3 server's status and body.
async fn put(upload: &Value, bytes: &[u8], content_type: Option<&str>) -> (StatusCode, String) {
    let signed_type = upload["headers"]["content-type"]
        .as_str()
        .expect("content-type header");
    let response = reqwest::Client::new()
        .put(upload["upload_url"].as_str().expect("upload_url"))
        .header("content-type", content_type.unwrap_or(signed_type))
        .body(bytes.to_vec())
        .send()
        .await
        .expect("PUT to S3");
    let status = response.status();
    (status, response.text().await.unwrap_or_default())
}

/// `url` with the last character of its `X-Amz-Signature` changed.
fn tampered(url: &str) -> String {
    let at = url.find("X-Amz-Signature=").expect("a signature") + "X-Amz-Signature=".len();
    let end = url[at..].find('&').map_or(url.len(), |i| at + i);
    let last = url.as_bytes()[end - 1];
    let replacement = if last == b'0' { '1' } else { '0' };
    format!("{}{replacement}{}", &url[..end - 1], &url[end..])
}

fn expires_at(answer: &Value) -> jiff::Timestamp {
    answer["expires_at"]
        .as_str()
        .expect("expires_at")
        .parse()
        .expect("RFC 3339 expires_at")
}

#[tokio::test]
async fn members_upload_and_download_through_presigned_urls() {
    let Some(s3) = s3().await else { return };
    let node = media_node(&s3, 300).await;
    let conv = direct_conversation(&node, &["alice", "bob", "carol"]).await;
    let (alice, bob, carol) = (
        token(&node, "alice").await,
        token(&node, "bob").await,
        token(&node, "carol").await,
    );
    let bytes: Vec<u8> = (0..=255u8).cycle().take(700).collect();

    let (status, upload) = ask_upload(
        &node,
        &alice,
        json!({"conversation_id": conv, "content_type": "image/png", "size": bytes.len()}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{upload}");
    let key = upload["object_key"]
        .as_str()
        .expect("object_key")
        .to_owned();
    let (key_conv, id) = key.split_once('/').expect("{conversation}/{id}");
    assert_eq!(key_conv, conv);
    assert_eq!(id.len(), 32, "{key}");
    assert_eq!(upload["method"], "PUT");
    assert_eq!(upload["headers"]["content-type"], "image/png");
    assert_eq!(upload["headers"]["content-length"], bytes.len().to_string());
    assert!(expires_at(&upload) > jiff::Timestamp::now());

    // The signature binds content type and length.
    let (status, body) = put(&upload, &bytes, Some("image/jpeg")).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "another content type: {body}"
    );
    let (status, body) = put(&upload, &bytes[..699], None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "another length: {body}");
    let (status, body) = put(
        &json!({"upload_url": tampered(upload["upload_url"].as_str().unwrap()), "headers": upload["headers"]}),
        &bytes,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "tampered signature: {body}");
    assert!(body.contains("SignatureDoesNotMatch"), "{body}");

    let (status, body) = put(&upload, &bytes, None).await;
    assert!(status.is_success(), "upload: {status} {body}");

    // The message referring to the upload is an ordinary chat message.
    let mut alice_client = ChatClient::v4(&node, "alice", "media-sender").await;
    let message = ChatMessage {
        client_message_id: "photo-1".into(),
        body: Some(Body::Media(MediaRef {
            object_key: key.clone(),
            content_type: "image/png".into(),
            size: bytes.len() as u64,
            ..MediaRef::default()
        })),
        ..ChatMessage::default()
    };
    assert!(alice_client.send(&conv, message).await.is_success());
    let stored = alice_client.next_message().await;
    match stored.body {
        Some(Body::Media(media)) => assert_eq!(media.object_key, key),
        other => panic!("expected a media body, got {other:?}"),
    }

    // The other member downloads identical bytes.
    let (status, download) = ask_download(&node, &bob, &key).await;
    assert_eq!(status, StatusCode::OK, "{download}");
    assert_eq!(download["object_key"], key.as_str());
    assert_eq!(download["method"], "GET");
    let url = download["download_url"].as_str().expect("download_url");
    let response = reqwest::get(url).await.expect("GET from S3");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("image/png")
    );
    assert_eq!(response.bytes().await.expect("body").as_ref(), &bytes[..]);

    // A tampered download URL is refused by the S3 server.
    let response = reqwest::get(tampered(url)).await.expect("GET from S3");
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let body = response.text().await.unwrap_or_default();
    assert!(body.contains("SignatureDoesNotMatch"), "{body}");

    // A non-member gets neither URL.
    let (status, body) = ask_upload(
        &node,
        &carol,
        json!({"conversation_id": conv, "content_type": "image/png", "size": 10}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"], "not_a_member");
    let (status, body) = ask_download(&node, &carol, &key).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"], "not_a_member");
}

#[tokio::test]
async fn bad_uploads_and_requests_are_refused_with_their_reason() {
    let Some(s3) = s3().await else { return };
    let node = media_node(&s3, 300).await;
    let conv = direct_conversation(&node, &["alice", "bob"]).await;
    let alice = token(&node, "alice").await;

    let cases = [
        (
            json!({"conversation_id": conv, "content_type": "image/png", "size": 1025}),
            StatusCode::BAD_REQUEST,
            "media_too_large",
        ),
        (
            json!({"conversation_id": conv, "content_type": "image/png", "size": 0}),
            StatusCode::BAD_REQUEST,
            "media_too_large",
        ),
        (
            json!({"conversation_id": conv, "content_type": "text/html", "size": 10}),
            StatusCode::BAD_REQUEST,
            "content_type_not_allowed",
        ),
        (
            json!({"conversation_id": conv, "content_type": "image/png\r\nx: y", "size": 10}),
            StatusCode::BAD_REQUEST,
            "content_type_not_allowed",
        ),
        (
            json!({"conversation_id": "not a conversation", "content_type": "image/png", "size": 10}),
            StatusCode::BAD_REQUEST,
            "invalid_conversation_id",
        ),
        (
            json!({"conversation_id": "gaaaaaaaaaaaaaaaa", "content_type": "image/png", "size": 10}),
            StatusCode::FORBIDDEN,
            "not_a_member",
        ),
        (
            json!({"conversation_id": conv, "content_type": "image/png", "size": -1}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
    ];
    for (request, status, code) in cases {
        let (got, body) = ask_upload(&node, &alice, request.clone()).await;
        assert_eq!(
            (got, body["error"].as_str()),
            (status, Some(code)),
            "{request}: {body}"
        );
    }

    let (status, body) = ask_download(&node, &alice, &format!("{conv}/not-hex")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_object_key");

    let response = reqwest::Client::new()
        .post(format!("{}/v1/media/uploads", node.http()))
        .json(&json!({"conversation_id": conv, "content_type": "image/png", "size": 10}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn expired_urls_are_refused() {
    let Some(s3) = s3().await else { return };
    let node = media_node(&s3, 1).await;
    let conv = direct_conversation(&node, &["alice", "bob"]).await;
    let alice = token(&node, "alice").await;
    let (status, upload) = ask_upload(
        &node,
        &alice,
        json!({"conversation_id": conv, "content_type": "application/pdf", "size": 4}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{upload}");
    let key = upload["object_key"]
        .as_str()
        .expect("object_key")
        .to_owned();
    let (status, download) = ask_download(&node, &alice, &key).await;
    assert_eq!(status, StatusCode::OK, "{download}");

    // Wait out the expiry (both URLs expire within the second after
    // expires_at), with a deadline in case the clock misbehaves.
    let expiry = expires_at(&upload).max(expires_at(&download));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while jiff::Timestamp::now() <= expiry + jiff::SignedDuration::from_secs(1) {
        assert!(
            std::time::Instant::now() < deadline,
            "expiry {expiry} never passed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let (status, body) = put(&upload, b"%PDF", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "expired upload: {body}");
    assert!(body.contains("AccessDenied"), "{body}");
    let response = reqwest::get(download["download_url"].as_str().expect("download_url"))
        .await
        .expect("GET from S3");
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let body = response.text().await.unwrap_or_default();
    assert!(body.contains("AccessDenied"), "{body}");
}

#[tokio::test]
async fn media_endpoints_answer_404_when_media_is_off() {
    let node = start_node(|_| {}).await;
    sign_up_users(&node, &["alice"]).await;
    let alice = token(&node, "alice").await;
    let (status, body) = ask_upload(
        &node,
        &alice,
        json!({"conversation_id": "alice~bob", "content_type": "image/png", "size": 10}),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"], "media_disabled");
}
