//! Push notifications end to end: devices register over the HTTP API, a new
//! message to a member without a live session reaches a local webhook
//! receiver exactly once, signed and content-free, and nothing is pushed to a
//! member who is online. Also the device API's answers to bad requests.

mod common;

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use common::chat::*;
use common::*;
use parley::config::Config;
use parley::push::NotifierKind;
use reqwest::Method;
use serde_json::{json, Value};
use tokio::sync::mpsc;

const SECRET: &str = "push-test-webhook-secret-0123456789abcdef";

/// One request the receiver got.
#[derive(Debug)]
struct Hook {
    timestamp: String,
    signature: String,
    delivery: String,
    body: Bytes,
}

impl Hook {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

async fn receive(
    State(seen): State<mpsc::UnboundedSender<Hook>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let hook = Hook {
        timestamp: header("x-parley-timestamp"),
        signature: header("x-parley-signature"),
        delivery: header("x-parley-delivery"),
        body,
    };
    match seen.send(hook) {
        Ok(()) => StatusCode::NO_CONTENT,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// A webhook receiver on a loopback port: its URL and what it receives.
async fn receiver() -> (String, mpsc::UnboundedReceiver<Hook>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("bind the receiver");
    let url = format!("http://{}/hook", listener.local_addr().expect("address"));
    let app = Router::new().route("/hook", post(receive)).with_state(tx);
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, rx)
}

/// Webhook push to `url`, one notification at a time (so in queue order).
fn webhook_to(url: String) -> impl FnOnce(&mut Config) {
    move |config: &mut Config| {
        config.push.notifier = NotifierKind::Webhook;
        config.push.webhook.url = Some(url);
        config.push.webhook.secret = Some(SECRET.into());
        config.push.max_in_flight = 1;
    }
}

/// Whether `hook` carries a valid signature: `sha256=` and the hex
/// HMAC-SHA256 of `{timestamp}.{raw body}`, checked as a receiver would.
fn signature_verifies(hook: &Hook) -> bool {
    let Some(hex) = hook.signature.strip_prefix("sha256=") else {
        return false;
    };
    let Some(tag) = decode_hex(hex) else {
        return false;
    };
    let mut signed = format!("{}.", hook.timestamp).into_bytes();
    signed.extend_from_slice(&hook.body);
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
    ring::hmac::verify(&key, &signed, &tag).is_ok()
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    s.as_bytes()
        .chunks(2)
        .map(|pair| match pair {
            [_, _] => u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok(),
            _ => None,
        })
        .collect()
}

async fn next_hook(hooks: &mut mpsc::UnboundedReceiver<Hook>) -> Hook {
    within("a push notification", hooks.recv())
        .await
        .expect("the receiver is running")
}

/// Sends an API request as `token` (if any) with an optional JSON body.
async fn call(
    node: &TestNode,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new().request(method, format!("{}{path}", node.http()));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let json = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, json)
}

async fn register(
    node: &TestNode,
    token: &str,
    device: &str,
    kind: &str,
    target: &str,
) -> (u16, Value) {
    call(
        node,
        Method::PUT,
        &format!("/v1/push/devices/{device}"),
        Some(token),
        Some(json!({"kind": kind, "target": target})),
    )
    .await
}

#[tokio::test]
async fn an_offline_member_is_notified_once_signed_and_without_text() {
    let (url, mut hooks) = receiver().await;
    let node = start_node(webhook_to(url)).await;
    sign_up_users(&node, &["alice", "bob", "carol"]).await;
    let bob_token = log_in(&node, "bob", &password_of("bob")).await;
    let carol_token = log_in(&node, "carol", &password_of("carol")).await;
    let (status, device) = register(&node, &bob_token, "bob-phone", "webhook", "route-bob").await;
    assert_eq!(status, 201, "{device}");
    assert_eq!(device["device_id"], "bob-phone");
    assert_eq!(device["kind"], "webhook");
    let (status, _) = register(
        &node,
        &carol_token,
        "carol-laptop",
        "webhook",
        "route-carol",
    )
    .await;
    assert_eq!(status, 201);
    let (status, listed) = call(
        &node,
        Method::GET,
        "/v1/push/devices",
        Some(&bob_token),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        listed["devices"].as_array().map(Vec::len),
        Some(1),
        "{listed}"
    );
    assert_eq!(listed["devices"][0]["target"], "route-bob");

    // Bob has never connected: the message is pushed to his device.
    let mut alice = ChatClient::v4(&node, "alice", "alice-1").await;
    let to_bob = direct("alice", "bob");
    let first = alice.say(&to_bob, "m-1", "the secret plans").await;
    let hook = next_hook(&mut hooks).await;
    assert!(signature_verifies(&hook), "signature of {hook:?}");
    assert!(!hook.delivery.is_empty(), "a delivery id header");
    let body = hook.json();
    assert_eq!(body["event"], "message");
    assert_eq!(body["user"], "bob");
    assert_eq!(body["device_id"], "bob-phone");
    assert_eq!(body["target"], "route-bob");
    assert_eq!(body["conversation_id"], to_bob.as_str());
    assert_eq!(body["sender"], "alice");
    assert_eq!(body["seq"], first.seq);
    assert_eq!(body["message_id"], first.message_id.to_string());
    assert_eq!(body["delivery_id"], hook.delivery.as_str());
    assert!(body.get("text").is_none(), "content-free: {body}");
    let raw = String::from_utf8_lossy(&hook.body);
    assert!(!raw.contains("secret plans"), "no message text: {raw}");

    // A tampered body no longer verifies.
    let mut tampered = hook;
    tampered.body = Bytes::from(tampered.body.to_vec().repeat(2));
    assert!(!signature_verifies(&tampered));

    // Bob online: his message is delivered live and not pushed.
    let mut bob = ChatClient::v4(&node, "bob", "bob-1").await;
    let second = alice.say(&to_bob, "m-2", "are you there?").await;
    assert_eq!(bob.next_message().await, second);

    // Carol is offline. One notification goes out at a time, in order, so
    // had either of Bob's messages been pushed (again), it would come first.
    let to_carol = direct("alice", "carol");
    let third = alice.say(&to_carol, "m-3", "hello carol").await;
    let hook = next_hook(&mut hooks).await;
    let body = hook.json();
    assert_eq!(body["user"], "carol", "the next push is carol's: {body}");
    assert_eq!(body["device_id"], "carol-laptop");
    assert_eq!(body["seq"], third.seq);
    assert!(signature_verifies(&hook));
    assert!(hooks.try_recv().is_err(), "nothing else was pushed");

    // Two messages queued for push (bob's first, carol's); none dropped.
    let metrics = reqwest::get(format!("{}/metrics", node.http()))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text");
    assert!(
        metrics.contains("parley_push_messages_total{outcome=\"queued\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("parley_push_messages_total{outcome=\"dropped\"} 0"),
        "{metrics}"
    );
    bob.disconnect().await;
    alice.disconnect().await;
}

#[tokio::test]
async fn the_device_api_checks_tokens_and_input() {
    let (url, _hooks) = receiver().await;
    let node = start_node(|config| {
        webhook_to(url)(config);
        config.push.max_devices_per_user = 2;
    })
    .await;
    sign_up_users(&node, &["dave"]).await;
    let token = log_in(&node, "dave", &password_of("dave")).await;
    let device = Some(json!({"kind": "webhook", "target": "t"}));

    // No token, or a bad one: 401 on every push endpoint.
    for (method, path, body) in [
        (Method::PUT, "/v1/push/devices/phone", device.clone()),
        (Method::DELETE, "/v1/push/devices/phone", None),
        (Method::GET, "/v1/push/devices", None),
    ] {
        let (status, error) = call(&node, method.clone(), path, None, body.clone()).await;
        assert_eq!(
            (status, error["error"].as_str()),
            (401, Some("token_required")),
            "{method} {path}"
        );
        let (status, _) = call(&node, method.clone(), path, Some("not-a-token"), body).await;
        assert_eq!(status, 401, "{method} {path} with a bad token");
    }

    // Bad kinds and targets: 400 with a specific code.
    for (kind, target, code) in [
        ("apns", "t", "invalid_push_kind"),
        ("off", "t", "invalid_push_kind"),
        ("ntfy", "topic", "invalid_push_kind"),
        ("webhook", "", "invalid_push_target"),
        ("webhook", "a\nb", "invalid_push_target"),
    ] {
        let (status, error) = register(&node, &token, "phone", kind, target).await;
        assert_eq!(
            (status, error["error"].as_str()),
            (400, Some(code)),
            "{kind} {target:?}: {error}"
        );
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let (status, error) = register(&node, &token, "a%20b", "webhook", "t").await;
    assert_eq!(
        (status, error["error"].as_str()),
        (400, Some("invalid_device_id")),
        "{error}"
    );
    let (status, error) = call(
        &node,
        Method::PUT,
        "/v1/push/devices/phone",
        Some(&token),
        Some(json!({"kind": "webhook"})),
    )
    .await;
    assert_eq!(
        (status, error["error"].as_str()),
        (400, Some("invalid_request")),
        "{error}"
    );
    let (status, listed) = call(&node, Method::GET, "/v1/push/devices", Some(&token), None).await;
    assert_eq!(
        (status, listed),
        (200, json!({"devices": []})),
        "nothing was stored"
    );

    // Register, replace, the per-user cap, remove.
    assert_eq!(
        register(&node, &token, "phone", "webhook", "one").await.0,
        201
    );
    let (status, replaced) = register(&node, &token, "phone", "webhook", "two").await;
    assert_eq!((status, replaced["target"].as_str()), (200, Some("two")));
    assert_eq!(
        register(&node, &token, "tablet", "webhook", "t").await.0,
        201
    );
    let (status, error) = register(&node, &token, "watch", "webhook", "t").await;
    assert_eq!(
        (status, error["error"].as_str()),
        (409, Some("too_many_push_devices"))
    );
    let (status, _) = call(
        &node,
        Method::DELETE,
        "/v1/push/devices/tablet",
        Some(&token),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, error) = call(
        &node,
        Method::DELETE,
        "/v1/push/devices/tablet",
        Some(&token),
        None,
    )
    .await;
    assert_eq!(
        (status, error["error"].as_str()),
        (404, Some("no_such_push_device"))
    );
    let (_, listed) = call(&node, Method::GET, "/v1/push/devices", Some(&token), None).await;
    let ids: Vec<&str> = listed["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .filter_map(|d| d["device_id"].as_str())
        .collect();
    assert_eq!(ids, vec!["phone"]);
}

#[tokio::test]
async fn push_is_off_by_default_and_its_api_answers_404() {
    let node = start_node(|_| {}).await;
    sign_up_users(&node, &["erin"]).await;
    let token = log_in(&node, "erin", &password_of("erin")).await;
    let (status, error) = call(&node, Method::GET, "/v1/push/devices", Some(&token), None).await;
    assert_eq!(
        (status, error["error"].as_str()),
        (404, Some("push_disabled")),
        "{error}"
    );
    let (status, _) = register(&node, &token, "phone", "webhook", "t").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_message_request_pushes_its_recipient_once() {
    let (url, mut hooks) = receiver().await;
    let node = start_node(|config| {
        webhook_to(url)(config);
        config.chat.message_requests = true;
    })
    .await;
    sign_up_users(&node, &["alice", "mallory", "carol"]).await;
    for (user, device) in [("alice", "alice-phone"), ("carol", "carol-phone")] {
        let token = log_in(&node, user, &password_of(user)).await;
        let (status, _) = register(&node, &token, device, "webhook", user).await;
        assert_eq!(status, 201);
    }
    // A stranger's request: alice is pushed for its first message only.
    let mut mallory = ChatClient::v4(&node, "mallory", "mallory-1").await;
    let request = direct("alice", "mallory");
    let first = mallory.say(&request, "r-1", "hi").await;
    let hook = next_hook(&mut hooks).await;
    assert_eq!(
        (hook.json()["user"].clone(), hook.json()["seq"].clone()),
        (json!("alice"), json!(first.seq))
    );
    mallory.say(&request, "r-2", "hi again").await;
    mallory.say(&request, "r-3", "hello???").await;
    // One notification at a time, in order: had r-2 or r-3 been pushed, it
    // would come before carol's.
    let to_carol = direct("carol", "mallory");
    let to_carol_first = mallory.say(&to_carol, "c-1", "hi carol").await;
    let hook = next_hook(&mut hooks).await;
    assert_eq!(hook.json()["user"], "carol", "{:?}", hook.json());
    assert_eq!(hook.json()["seq"], to_carol_first.seq);
    mallory.disconnect().await;
}
