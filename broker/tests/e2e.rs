//! End-to-end encryption through a real node: devices publish their keys
//! over the key directory API (`/v1/keys/...`), a sender fetches bundles and
//! encrypts with `parley-client`, the message crosses the broker as an opaque
//! ciphertext body over MQTT, and the recipient decrypts it. Also the
//! directory's refusals: strangers (403), junk keys (400), callers without a
//! token (401) and callers over their bundle fetch rate (429).

mod common;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::chat::*;
use common::*;
use parley_client::e2e::wire::{self, Outgoing, Recipient};
use parley_client::e2e::{DeviceKeyring, E2eError, IdentityPublicKey, PrekeyBundle};
use parley_proto::encode_envelope;
use parley_proto::v1::{chat_message::Body, ChatMessage, Envelope, OpenDirect};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// A signed-in user's view of the key directory API.
struct Keys {
    base: String,
    token: String,
    client: reqwest::Client,
}

impl Keys {
    /// Logs `user` in (password [`password_of`]).
    async fn of(node: &TestNode, user: &str) -> Keys {
        Keys {
            base: node.http(),
            token: log_in(node, user, &password_of(user)).await,
            client: reqwest::Client::new(),
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let response = request
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("request");
        let status = response.status();
        let body = response.json().await.expect("a JSON body");
        (status, body)
    }

    /// `PUT /v1/keys/devices/{device}` with raw key bytes.
    async fn publish_bytes(&self, device: &str, keys: &[u8]) -> (StatusCode, Value) {
        let url = format!("{}/v1/keys/devices/{device}", self.base);
        self.send(
            self.client
                .put(url)
                .json(&json!({"keys": STANDARD.encode(keys)})),
        )
        .await
    }

    /// Publishes `keyring`'s keys, asserting 201 (a new device).
    async fn publish(&self, device: &str, keyring: &DeviceKeyring) {
        let (status, body) = self
            .publish_bytes(device, &keyring.published_keys().to_bytes())
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["replaced"], false);
    }

    /// Makes `n` one-time prekeys in `keyring` and uploads them; the count after.
    async fn upload(
        &self,
        device: &str,
        keyring: &mut DeviceKeyring,
        n: u32,
    ) -> (StatusCode, Value) {
        let prekeys: Vec<String> = keyring
            .generate_one_time_prekeys(n)
            .expect("prekeys")
            .iter()
            .map(|prekey| STANDARD.encode(prekey.to_bytes()))
            .collect();
        let url = format!("{}/v1/keys/devices/{device}/prekeys", self.base);
        self.send(self.client.post(url).json(&json!({ "prekeys": prekeys })))
            .await
    }

    /// The one-time prekeys the directory holds for the caller's `device`.
    async fn count(&self, device: &str) -> u64 {
        let url = format!("{}/v1/keys/devices/{device}/prekeys/count", self.base);
        let (status, body) = self.send(self.client.get(url)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["device_id"], device);
        body["count"].as_u64().expect("count")
    }

    /// `GET /v1/keys/users/{user}`.
    async fn bundles(&self, user: &str) -> (StatusCode, Value) {
        let url = format!("{}/v1/keys/users/{user}", self.base);
        self.send(self.client.get(url)).await
    }

    /// `GET /v1/keys/users/{user}/devices/{device}`.
    async fn device_keys(&self, user: &str, device: &str) -> (StatusCode, Value) {
        let url = format!("{}/v1/keys/users/{user}/devices/{device}", self.base);
        self.send(self.client.get(url)).await
    }
}

/// The base64 field `field` of `value`, decoded.
fn bytes_of(value: &Value, field: &str) -> Vec<u8> {
    STANDARD
        .decode(
            value[field]
                .as_str()
                .unwrap_or_else(|| panic!("{field} in {value}")),
        )
        .expect("base64")
}

/// Whether `needle` occurs in `haystack`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every byte of every file under `dir`.
fn files_under(dir: &std::path::Path) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(std::fs::read(&path).expect("read"));
        }
    }
    out
}

#[tokio::test]
async fn bob_decrypts_what_alice_encrypted_and_the_server_never_sees_it() {
    let node = start_node(|_| {}).await;
    sign_up_users(&node, &["alice", "bob"]).await;
    let alice_keys = Keys::of(&node, "alice").await;
    let bob_keys = Keys::of(&node, "bob").await;

    // Each device publishes its keys and a pool of one-time prekeys.
    let mut alice_phone = DeviceKeyring::generate().expect("keyring");
    let mut bob_phone = DeviceKeyring::generate().expect("keyring");
    alice_keys.publish("alice-phone", &alice_phone).await;
    bob_keys.publish("bob-phone", &bob_phone).await;
    for (keys, device, keyring) in [
        (&alice_keys, "alice-phone", &mut alice_phone),
        (&bob_keys, "bob-phone", &mut bob_phone),
    ] {
        let (status, body) = keys.upload(device, keyring, 5).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["count"], 5);
        assert_eq!(keys.count(device).await, 5);
    }

    let mut alice = ChatClient::v5(&node, "alice", "alice-phone").await;
    let mut bob = ChatClient::v5(&node, "bob", "bob-phone").await;
    let conv = direct("alice", "bob");
    let opened = alice
        .conversation_op(OpenDirect { peer: "bob".into() })
        .await;
    assert_eq!(opened.id, conv);

    // Alice fetches Bob's bundles: one per device, each using up one
    // one-time prekey.
    let (status, body) = alice_keys.bundles("bob").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user"], "bob");
    let devices = body["devices"].as_array().expect("devices");
    assert_eq!(devices.len(), 1, "{body}");
    assert_eq!(devices[0]["device_id"], "bob-phone");
    let bundle_bytes = bytes_of(&devices[0], "bundle");
    assert_eq!(bundle_bytes.len(), 165, "with a one-time prekey");
    let bundle = PrekeyBundle::from_bytes(&bundle_bytes).expect("bundle parses");
    assert_eq!(
        bundle.device_keys.to_bytes(),
        bob_phone.published_keys().to_bytes()
    );
    let mut bob_bundle = bundle.verify().expect("bundle verifies");
    assert_eq!(bob_bundle.one_time_prekey_id(), Some(0), "lowest id first");
    assert_eq!(bob_keys.count("bob-phone").await, 4, "one prekey used up");

    // Alice encrypts and sends the ciphertext body over MQTT.
    let plaintext = b"the eagle lands at 0600, gate 12";
    let outgoing = Outgoing {
        sender_user: "alice",
        sender_device: "alice-phone",
        conversation_id: &conv,
        client_message_id: "e2e-1",
    };
    let body = wire::encrypt_body(
        &alice_phone,
        &outgoing,
        &mut [Recipient {
            user: "bob",
            device_id: "bob-phone",
            bundle: &mut bob_bundle,
        }],
        plaintext,
    )
    .expect("encrypts");
    let sent = ChatMessage {
        client_message_id: "e2e-1".into(),
        body: Some(body.clone()),
        ..ChatMessage::default()
    };
    let ack = alice.send(&conv, sent).await;
    assert!(ack.is_success(), "{ack:?}");

    // Bob learns Alice's identity key from the directory (using nothing up)
    // and opens the message to exactly the plaintext.
    let (status, alice_device) = bob_keys.device_keys("alice", "alice-phone").await;
    assert_eq!(status, StatusCode::OK, "{alice_device}");
    let alice_published = bytes_of(&alice_device, "keys");
    assert_eq!(alice_published, alice_phone.published_keys().to_bytes());
    assert_eq!(alice_keys.count("alice-phone").await, 5, "nothing used up");
    let alice_identity =
        IdentityPublicKey::from_slice(&alice_published[..32]).expect("identity key");

    let delivered = bob.next_message().await;
    assert_eq!(delivered.sender, "alice");
    assert_eq!(delivered.conversation_id, conv);
    assert_eq!(delivered.body, Some(body.clone()), "relayed untouched");
    let opened = wire::decrypt_message(
        &mut bob_phone,
        "bob",
        "bob-phone",
        &delivered,
        Some(&alice_identity),
    )
    .expect("bob decrypts");
    assert_eq!(opened.plaintext, plaintext);
    assert_eq!(opened.sender_identity, alice_identity);
    // The one-time prekey's secret is gone after use.
    assert_eq!(
        wire::decrypt_message(&mut bob_phone, "bob", "bob-phone", &delivered, None),
        Err(E2eError::OneTimePrekeyConsumed { id: 0 })
    );
    // Alice's own device has no entry: she keeps what she sent.
    let echoed = alice.next_message().await;
    assert_eq!(
        wire::decrypt_message(&mut alice_phone, "alice", "alice-phone", &echoed, None),
        Err(E2eError::NotARecipient)
    );

    // What the server stored is the ciphertext, without the plaintext.
    let history = bob.fetch_all(&conv).await;
    assert_eq!(history, vec![delivered.clone()]);
    let Some(Body::Ciphertext(stored)) = &history[0].body else {
        panic!("stored body is not a ciphertext: {:?}", history[0].body);
    };
    assert_eq!(stored.sender_device_id, "alice-phone");
    assert!(!stored.recipients[0].ciphertext.is_empty());
    let stored_bytes = encode_envelope(&Envelope::from(history[0].clone()));
    assert!(!contains(&stored_bytes, plaintext));

    // On disk too: a plain text message is found in the store's files (so
    // the scan sees stored messages), the encrypted plaintext is not.
    let marker = "plain control message 4f1c9e";
    alice.say(&conv, "plain-1", marker).await;
    bob.next_message().await;
    let files = files_under(node.dir.path());
    assert!(
        files.iter().any(|f| contains(f, marker.as_bytes())),
        "the plain message is stored in the data directory"
    );
    assert!(
        !files.iter().any(|f| contains(f, plaintext)),
        "the encrypted message's plaintext is nowhere on disk"
    );
}

#[tokio::test]
async fn the_key_directory_refuses_strangers_junk_and_anonymous_callers() {
    let node = start_node(|_| {}).await;
    sign_up_users(&node, &["alice", "bob", "mallory"]).await;
    let alice_keys = Keys::of(&node, "alice").await;
    let bob_keys = Keys::of(&node, "bob").await;
    let mallory_keys = Keys::of(&node, "mallory").await;
    let mut bob_phone = DeviceKeyring::generate().expect("keyring");
    bob_keys.publish("bob-phone", &bob_phone).await;
    let (status, _) = bob_keys.upload("bob-phone", &mut bob_phone, 3).await;
    assert_eq!(status, StatusCode::OK);
    // Ids are the device's: a batch repeating a stored one is refused whole.
    let mut fresh_ids = DeviceKeyring::generate().expect("keyring");
    let (status, body) = bob_keys.upload("bob-phone", &mut fresh_ids, 1).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "id 0 is stored already: {body}"
    );
    assert_eq!(body["error"], "duplicate_prekey_id");
    assert_eq!(bob_keys.count("bob-phone").await, 3);

    // A stranger (no shared conversation) may not fetch Bob's keys, and
    // nothing is used up.
    let (status, body) = mallory_keys.bundles("bob").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"], "no_shared_conversation");
    let (status, body) = mallory_keys.device_keys("bob", "bob-phone").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(bob_keys.count("bob-phone").await, 3);

    // Once they share a conversation Alice may; Bob may fetch his own.
    let (status, _) = alice_keys.bundles("bob").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let mut alice = ChatClient::v5(&node, "alice", "alice-phone").await;
    alice
        .conversation_op(OpenDirect { peer: "bob".into() })
        .await;
    let (status, body) = alice_keys.bundles("bob").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = bob_keys.bundles("bob").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(bob_keys.count("bob-phone").await, 1);

    // A tampered signature is refused and nothing is stored.
    let mut tablet = DeviceKeyring::generate().expect("keyring");
    let mut tampered = tablet.published_keys().to_bytes();
    tampered[100] ^= 0x01;
    let (status, body) = bob_keys.publish_bytes("bob-tablet", &tampered).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "bad_signed_prekey_signature");
    assert!(body["message"].as_str().unwrap().contains("signature"));
    let (status, body) = bob_keys.device_keys("bob", "bob-tablet").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"], "unknown_device");
    let (status, body) = bob_keys.upload("bob-tablet", &mut tablet, 1).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    // Other junk: wrong length, bad device id, bad user.
    let (status, body) = bob_keys.publish_bytes("bob-tablet", &[0u8; 127]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_keys");
    assert!(body["message"].as_str().unwrap().contains("128 bytes"));
    let valid = tablet.published_keys().to_bytes();
    let (status, body) = bob_keys.publish_bytes("bad%20device", &valid).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_device_id");
    let (status, body) = alice_keys.bundles("Not-A-User").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_username");

    // A new identity key on the same device replaces the keys and discards
    // the old one-time prekeys.
    let (status, body) = bob_keys.publish_bytes("bob-phone", &valid).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["replaced"], true);
    assert_eq!(body["discarded_one_time_prekeys"], 1);
    assert_eq!(bob_keys.count("bob-phone").await, 0);

    // Without a token (or with a bad one), every endpoint answers 401.
    let base = node.http();
    let client = reqwest::Client::new();
    let keys = json!({"keys": STANDARD.encode(valid)});
    let prekeys = json!({"prekeys": [STANDARD.encode([0u8; 36])]});
    let requests = [
        client
            .put(format!("{base}/v1/keys/devices/bob-phone"))
            .json(&keys),
        client
            .post(format!("{base}/v1/keys/devices/bob-phone/prekeys"))
            .json(&prekeys),
        client.get(format!("{base}/v1/keys/devices/bob-phone/prekeys/count")),
        client.get(format!("{base}/v1/keys/users/bob")),
        client.get(format!("{base}/v1/keys/users/bob/devices/bob-phone")),
    ];
    for request in requests {
        let bad_token = request
            .try_clone()
            .expect("clonable")
            .bearer_auth("not-a-token");
        for request in [request, bad_token] {
            let response = request.send().await.expect("request");
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
            let body: Value = response.json().await.expect("json");
            assert!(body["error"].is_string(), "{body}");
        }
    }
    let (status, body) = bob_keys.device_keys("bob", "bob-phone").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(bytes_of(&body, "keys"), valid, "the 401s changed nothing");
}

#[tokio::test]
async fn bundle_fetches_are_rate_limited_per_caller() {
    let node = start_node(|config| {
        // Two fetches, then (practically) none: one more every 1000 s.
        config.keys.bundle_fetches_per_sec_per_user = 0.001;
        config.keys.bundle_fetch_burst_per_user = 2;
    })
    .await;
    sign_up_users(&node, &["alice", "bob"]).await;
    let alice_keys = Keys::of(&node, "alice").await;
    let bob_keys = Keys::of(&node, "bob").await;
    let alice_phone = DeviceKeyring::generate().expect("keyring");
    alice_keys.publish("alice-phone", &alice_phone).await;

    for _ in 0..2 {
        let (status, body) = alice_keys.bundles("alice").await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, body) = alice_keys.bundles("alice").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"], "rate_limited");
    assert!(body["message"].as_str().unwrap().contains("too many"));
    // Another caller has its own budget.
    let (status, body) = bob_keys.bundles("bob").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["devices"], json!([]), "bob has no devices");
    // Fetching one device's keys uses no budget.
    let (status, body) = alice_keys.device_keys("alice", "alice-phone").await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// The flag byte after a bundle's 128 bytes of device keys: 1 with a one-time prekey.
fn has_one_time_prekey(bundles: &Value) -> bool {
    let bundle = STANDARD
        .decode(bundles["devices"][0]["bundle"].as_str().expect("a bundle"))
        .expect("base64");
    bundle[128] == 1
}

#[tokio::test]
async fn a_drained_device_falls_back_to_its_signed_prekey_and_its_owner_is_told() {
    let node = start_node(|_| {}).await;
    sign_up_users(&node, &["alice", "bob"]).await;
    let alice_keys = Keys::of(&node, "alice").await;
    let bob_keys = Keys::of(&node, "bob").await;
    let mut alice_phone = DeviceKeyring::generate().expect("keyring");
    alice_keys.publish("alice-phone", &alice_phone).await;
    let (status, _) = alice_keys.upload("alice-phone", &mut alice_phone, 2).await;
    assert_eq!(status, StatusCode::OK);
    let mut alice = ChatClient::v5(&node, "alice", "alice-phone").await;
    alice
        .conversation_op(OpenDirect { peer: "bob".into() })
        .await;

    for _ in 0..2 {
        let (status, body) = bob_keys.bundles("alice").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(has_one_time_prekey(&body), "{body}");
    }
    assert_eq!(alice_keys.count("alice-phone").await, 0);
    // None left: the bundle still lets Bob start a session, on the signed
    // prekey alone (Signal's last-resort key), and Alice is told.
    let (status, body) = bob_keys.bundles("alice").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(!has_one_time_prekey(&body), "{body}");
    let notice = match alice.next_envelope().await.kind {
        Some(parley_proto::v1::envelope::Kind::Notice(notice)) => notice,
        other => panic!("expected a notice, got {other:?}"),
    };
    assert_eq!(
        notice.kind(),
        parley_proto::v1::NoticeKind::PrekeysExhausted
    );
    assert_eq!(notice.device_id, "alice-phone");
    // Once per device and interval, however often the fallback is served.
    let (status, _) = bob_keys.bundles("alice").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = alice_keys.upload("alice-phone", &mut alice_phone, 1).await;
    assert_eq!(status, StatusCode::OK);
    let (_, body) = bob_keys.bundles("alice").await;
    assert!(has_one_time_prekey(&body), "topped up: {body}");
    alice.assert_nothing_queued();
}

#[tokio::test]
async fn bundle_fetches_are_rate_limited_per_target() {
    let node = start_node(|config| {
        // Three fetches of one user's keys by everyone together, then
        // (practically) none.
        config.keys.bundle_fetches_per_sec_per_target = 0.001;
        config.keys.bundle_fetch_burst_per_target = 3;
    })
    .await;
    sign_up_users(&node, &["alice", "bob", "carol"]).await;
    let alice_keys = Keys::of(&node, "alice").await;
    let bob_keys = Keys::of(&node, "bob").await;
    let carol_keys = Keys::of(&node, "carol").await;
    let mut alice_phone = DeviceKeyring::generate().expect("keyring");
    alice_keys.publish("alice-phone", &alice_phone).await;
    alice_keys.upload("alice-phone", &mut alice_phone, 10).await;
    let mut alice = ChatClient::v5(&node, "alice", "alice-phone").await;
    for peer in ["bob", "carol"] {
        alice
            .conversation_op(OpenDirect { peer: peer.into() })
            .await;
    }
    for keys in [&bob_keys, &carol_keys, &bob_keys] {
        let (status, body) = keys.bundles("alice").await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, body) = carol_keys.bundles("alice").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"], "rate_limited");
    assert_eq!(
        alice_keys.count("alice-phone").await,
        7,
        "nothing more taken"
    );
    let (status, _) = alice_keys.bundles("alice").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the owner's own fetches do not count"
    );
    let (status, body) = alice_keys.bundles("bob").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "other targets have their own budget: {body}"
    );
}
