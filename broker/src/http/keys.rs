//! The end-to-end encryption key directory, `/v1/keys/...` (protocol in
//! `docs/e2e.md`). Every endpoint needs an access token ([`Bearer`]); writes
//! always concern the caller's own devices.
//!
//! - `PUT /v1/keys/devices/{device_id}`: publishes a device's keys,
//!   `{"keys": base64(identity key (32) ‖ signed prekey (32) ‖ signature (64))}`.
//!   The signature must verify (Ed25519 by the identity key over
//!   `Parley E2E v1 signed prekey` ‖ signed prekey), else 400. 201 when the
//!   device is new, 200 when its keys were replaced.
//! - `POST /v1/keys/devices/{device_id}/prekeys`: adds one-time prekeys,
//!   `{"prekeys": [base64(id (u32, big-endian) ‖ key (32)), ...]}`, at most
//!   [`MAX_PREKEYS_PER_UPLOAD`] per request, all or nothing.
//! - `GET /v1/keys/devices/{device_id}/prekeys/count`: how many one-time
//!   prekeys the device has left, so that the client tops its pool up.
//! - `GET /v1/keys/users/{user}`: one bundle per device of `user`, each
//!   `base64(device keys (128) ‖ 0)` or `base64(device keys ‖ 1 ‖ one-time
//!   prekey (36))`. Every call uses up one one-time prekey per device, so it
//!   is allowed only for `user` themself and users sharing a conversation
//!   with them (else 403), and rate-limited per caller and per `user`
//!   (`[keys]`, else 429). A device with no one-time prekey left is served
//!   with its signed prekey alone (the last-resort key), and its owner gets a
//!   `Notice` (`NOTICE_KIND_PREKEYS_EXHAUSTED`) on their inbox, at most once
//!   per device every [`EXHAUSTED_NOTICE_INTERVAL`].
//! - `GET /v1/keys/users/{user}/devices/{device_id}`: one device's 128 bytes
//!   of keys, using nothing up (to learn or check a sender's identity key);
//!   allowed to the same callers as the bundles.
//!
//! Base64 is the standard alphabet with padding. The server checks the
//! signature only to refuse garbage early: clients verify every bundle
//! themselves.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chat_core::ids::UserId;
use persistence::keys::{PUBLIC_KEY_LEN, SIGNATURE_LEN};
use persistence::{
    AddOneTimePrekeys, DeviceBundle, DeviceKeys, KeyDirectory, KeyLimits, OneTimePrekey,
    PutDeviceKeys, SignedPrekey, StoreError,
};
use ring::signature::{UnparsedPublicKey, ED25519};
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiJson, Bearer, HttpState};
use crate::chat::ChatService;
use crate::config::KeysConfig;
use crate::limits::KeyedLimiter;
use crate::metrics::security::Refusal;

/// What the identity key signs ahead of the signed prekey's public key.
pub const SIGNED_PREKEY_CONTEXT: &[u8] = b"Parley E2E v1 signed prekey";

/// Length of a device's published keys: identity key ‖ signed prekey ‖ signature.
pub const DEVICE_KEYS_LEN: usize = PUBLIC_KEY_LEN + PUBLIC_KEY_LEN + SIGNATURE_LEN;

/// Length of a published one-time prekey: id (u32, big-endian) ‖ key.
pub const ONE_TIME_PREKEY_LEN: usize = 4 + PUBLIC_KEY_LEN;

/// Most one-time prekeys one upload may carry (the request body limit allows
/// a little more; clients upload larger pools in several requests).
pub const MAX_PREKEYS_PER_UPLOAD: usize = 200;

/// How often a device's owner is told at most that it ran out of one-time prekeys.
pub const EXHAUSTED_NOTICE_INTERVAL: Duration = Duration::from_secs(600);

/// The longest device id, in bytes.
pub const MAX_DEVICE_ID_LEN: usize = 64;

/// What the key endpoints need.
pub struct KeysState {
    /// The key directory.
    pub directory: Arc<dyn KeyDirectory>,
    /// The chat service, which knows who shares a conversation with whom.
    pub chat: Arc<ChatService>,
    /// Capacity limits of the directory.
    pub limits: KeyLimits,
    /// Bundle fetches per caller; `None` when unlimited.
    pub bundle_fetches: Option<KeyedLimiter<UserId>>,
    /// Bundle fetches per fetched user; `None` when unlimited.
    pub target_fetches: Option<KeyedLimiter<UserId>>,
    /// When each (user, device) was last told it has no one-time prekeys.
    exhausted_notices: Mutex<HashMap<(UserId, String), Instant>>,
}

impl KeysState {
    /// The state for `directory` and `chat` with the limits of `config`.
    pub fn new(
        directory: Arc<dyn KeyDirectory>,
        chat: Arc<ChatService>,
        config: &KeysConfig,
    ) -> KeysState {
        KeysState {
            directory,
            chat,
            limits: KeyLimits {
                max_devices: config.max_devices_per_user,
                max_one_time_prekeys: config.max_one_time_prekeys_per_device,
            },
            bundle_fetches: KeyedLimiter::new(
                config.bundle_fetches_per_sec_per_user,
                config.bundle_fetch_burst_per_user,
            ),
            target_fetches: KeyedLimiter::new(
                config.bundle_fetches_per_sec_per_target,
                config.bundle_fetch_burst_per_target,
            ),
            exhausted_notices: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `owner` should be told now that `device_id` has no one-time
    /// prekeys left (not within [`EXHAUSTED_NOTICE_INTERVAL`] of the last time).
    fn should_notify_exhausted(&self, owner: &UserId, device_id: &str) -> bool {
        let now = Instant::now();
        let mut notices = self
            .exhausted_notices
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if notices.len() >= 100_000 {
            notices.retain(|_, at| now.duration_since(*at) < EXHAUSTED_NOTICE_INTERVAL);
        }
        let key = (owner.clone(), device_id.to_owned());
        match notices.get(&key) {
            Some(at) if now.duration_since(*at) < EXHAUSTED_NOTICE_INTERVAL => false,
            _ => {
                notices.insert(key, now);
                true
            }
        }
    }
}

impl std::fmt::Debug for KeysState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeysState")
            .field("limits", &self.limits)
            .field("bundle_fetches_limited", &self.bundle_fetches.is_some())
            .finish_non_exhaustive()
    }
}

/// The key directory routes.
pub fn routes() -> Router<HttpState> {
    Router::new()
        .route("/v1/keys/devices/:device_id", put(publish_device_keys))
        .route("/v1/keys/devices/:device_id/prekeys", post(upload_prekeys))
        .route(
            "/v1/keys/devices/:device_id/prekeys/count",
            get(count_prekeys),
        )
        .route("/v1/keys/users/:user", get(fetch_bundles))
        .route(
            "/v1/keys/users/:user/devices/:device_id",
            get(fetch_device_keys),
        )
}

/// The body of `PUT /v1/keys/devices/{device_id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishKeysRequest {
    /// Base64 of the 128-byte device keys.
    pub keys: String,
}

/// The answer to `PUT /v1/keys/devices/{device_id}`.
#[derive(Debug, Serialize)]
pub struct PublishKeysResponse {
    /// The device.
    pub device_id: String,
    /// Whether the device had keys that were replaced.
    pub replaced: bool,
    /// One-time prekeys discarded because the identity key changed.
    pub discarded_one_time_prekeys: u64,
}

/// The body of `POST /v1/keys/devices/{device_id}/prekeys`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadPrekeysRequest {
    /// Base64 of each 36-byte one-time prekey.
    pub prekeys: Vec<String>,
}

/// The answer to a one-time prekey upload or count.
#[derive(Debug, Serialize)]
pub struct PrekeyCount {
    /// The device.
    pub device_id: String,
    /// How many one-time prekeys the device has now.
    pub count: u64,
}

/// One device's bundle in the answer to `GET /v1/keys/users/{user}`.
#[derive(Debug, Serialize)]
pub struct DeviceBundleView {
    /// The device.
    pub device_id: String,
    /// Base64 of the 129- or 165-byte bundle.
    pub bundle: String,
}

/// The answer to `GET /v1/keys/users/{user}`.
#[derive(Debug, Serialize)]
pub struct BundlesResponse {
    /// The user.
    pub user: String,
    /// One entry per device with keys, in device id order (empty if none).
    pub devices: Vec<DeviceBundleView>,
}

/// The answer to `GET /v1/keys/users/{user}/devices/{device_id}`.
#[derive(Debug, Serialize)]
pub struct DeviceKeysResponse {
    /// The user.
    pub user: String,
    /// The device.
    pub device_id: String,
    /// Base64 of the 128-byte device keys.
    pub keys: String,
    /// When they were published, milliseconds since the Unix epoch.
    pub updated_at_ms: i64,
}

/// Publishes the caller's device keys: 201 created, 200 replaced, 400 / 409.
pub async fn publish_device_keys(
    Bearer(user): Bearer,
    State(state): State<HttpState>,
    Path(device_id): Path<String>,
    ApiJson(request): ApiJson<PublishKeysRequest>,
) -> Result<(StatusCode, Json<PublishKeysResponse>), ApiError> {
    let keys_state = enabled(&state)?;
    check_device_id(&device_id)?;
    let keys = parse_device_keys(&request.keys, now_ms())?;
    let outcome = keys_state
        .directory
        .put_device_keys(user.as_str(), &device_id, keys, keys_state.limits)
        .await
        .map_err(unavailable)?;
    let (status, replaced, discarded) = match outcome {
        PutDeviceKeys::Created => (StatusCode::CREATED, false, 0),
        PutDeviceKeys::Replaced {
            discarded_one_time_prekeys,
        } => (StatusCode::OK, true, discarded_one_time_prekeys),
        PutDeviceKeys::TooManyDevices { max } => return Err(ApiError::TooManyDevices(max)),
    };
    Ok((
        status,
        Json(PublishKeysResponse {
            device_id,
            replaced,
            discarded_one_time_prekeys: discarded,
        }),
    ))
}

/// Adds one-time prekeys to one of the caller's devices: 200 with the new
/// count, 400 / 404 / 409.
pub async fn upload_prekeys(
    Bearer(user): Bearer,
    State(state): State<HttpState>,
    Path(device_id): Path<String>,
    ApiJson(request): ApiJson<UploadPrekeysRequest>,
) -> Result<Json<PrekeyCount>, ApiError> {
    let keys_state = enabled(&state)?;
    check_device_id(&device_id)?;
    let prekeys = parse_prekeys(&request.prekeys)?;
    let outcome = keys_state
        .directory
        .add_one_time_prekeys(user.as_str(), &device_id, prekeys, keys_state.limits)
        .await
        .map_err(unavailable)?;
    match outcome {
        AddOneTimePrekeys::Added { stored } => Ok(Json(PrekeyCount {
            device_id,
            count: stored,
        })),
        AddOneTimePrekeys::UnknownDevice => Err(ApiError::UnknownDevice {
            user: user.to_string(),
            device_id,
        }),
        AddOneTimePrekeys::DuplicateId(id) => Err(ApiError::DuplicatePrekeyId(id)),
        AddOneTimePrekeys::TooMany { stored, max } => Err(ApiError::TooManyPrekeys { stored, max }),
    }
}

/// How many one-time prekeys one of the caller's devices has left: 200, or
/// 404 if the device has no keys.
pub async fn count_prekeys(
    Bearer(user): Bearer,
    State(state): State<HttpState>,
    Path(device_id): Path<String>,
) -> Result<Json<PrekeyCount>, ApiError> {
    let keys_state = enabled(&state)?;
    check_device_id(&device_id)?;
    match keys_state
        .directory
        .one_time_prekey_count(user.as_str(), &device_id)
        .await
        .map_err(unavailable)?
    {
        Some(count) => Ok(Json(PrekeyCount { device_id, count })),
        None => Err(ApiError::UnknownDevice {
            user: user.to_string(),
            device_id,
        }),
    }
}

/// The bundles of every device of `user`, each with one one-time prekey
/// taken out of the directory (or, with none left, the signed prekey alone,
/// and a notice to `user`): 200, 400 / 403 / 429.
pub async fn fetch_bundles(
    Bearer(caller): Bearer,
    State(state): State<HttpState>,
    Path(user): Path<String>,
) -> Result<Json<BundlesResponse>, ApiError> {
    let keys_state = enabled(&state)?;
    let owner = parse_user(&user)?;
    // Every call counts, allowed or not: probing who talks to whom costs the same.
    if let Some(limiter) = &keys_state.bundle_fetches {
        if !limiter.allow(&caller) {
            return Err(ApiError::KeyFetchRateLimited);
        }
    }
    may_read_keys(&keys_state, &caller, &owner).await?;
    if caller != owner {
        if let Some(limiter) = &keys_state.target_fetches {
            if !limiter.allow(&owner) {
                state.metrics.defended(Refusal::PrekeyTargetRate);
                return Err(ApiError::KeyFetchRateLimited);
            }
        }
    }
    let bundles = keys_state
        .directory
        .take_bundles(owner.as_str())
        .await
        .map_err(unavailable)?;
    for bundle in bundles.iter().filter(|b| b.one_time_prekey.is_none()) {
        state.metrics.defended(Refusal::PrekeyFallback);
        if keys_state.should_notify_exhausted(&owner, &bundle.device_id) {
            tracing::info!(user = %owner, device_id = %bundle.device_id,
                "one-time prekeys exhausted; the owner is told to upload more");
            keys_state.chat.notify(
                &owner,
                parley_proto::v1::Notice {
                    kind: parley_proto::v1::NoticeKind::PrekeysExhausted.into(),
                    device_id: bundle.device_id.clone(),
                },
            );
        }
    }
    Ok(Json(BundlesResponse {
        user: owner.to_string(),
        devices: bundles
            .iter()
            .map(|bundle| DeviceBundleView {
                device_id: bundle.device_id.clone(),
                bundle: STANDARD.encode(bundle_bytes(bundle)),
            })
            .collect(),
    }))
}

/// One device's keys, using no one-time prekey: 200, 400 / 403 / 404.
pub async fn fetch_device_keys(
    Bearer(caller): Bearer,
    State(state): State<HttpState>,
    Path((user, device_id)): Path<(String, String)>,
) -> Result<Json<DeviceKeysResponse>, ApiError> {
    let keys_state = enabled(&state)?;
    let owner = parse_user(&user)?;
    check_device_id(&device_id)?;
    may_read_keys(&keys_state, &caller, &owner).await?;
    let keys = keys_state
        .directory
        .device_keys(owner.as_str(), &device_id)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| ApiError::UnknownDevice {
            user: owner.to_string(),
            device_id: device_id.clone(),
        })?;
    Ok(Json(DeviceKeysResponse {
        user: owner.to_string(),
        device_id,
        keys: STANDARD.encode(device_keys_bytes(&keys)),
        updated_at_ms: keys.updated_at_ms,
    }))
}

/// The key directory's state; 404 (as for an unknown path) when the node
/// runs without one.
fn enabled(state: &HttpState) -> Result<Arc<KeysState>, ApiError> {
    state.keys.clone().ok_or(ApiError::NotFound)
}

/// Whether `caller` may read `owner`'s keys: their own, or those of someone
/// they share a conversation with; 403 otherwise.
async fn may_read_keys(state: &KeysState, caller: &UserId, owner: &UserId) -> Result<(), ApiError> {
    if caller == owner {
        return Ok(());
    }
    match state.chat.shares_conversation(caller, owner).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(ApiError::NoSharedConversation(owner.to_string())),
        Err(e) => Err(unavailable(e)),
    }
}

/// Logs a store failure and answers 503.
fn unavailable(error: StoreError) -> ApiError {
    tracing::error!(%error, "key directory unavailable");
    ApiError::Unavailable
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn parse_user(user: &str) -> Result<UserId, ApiError> {
    UserId::parse(user).map_err(|e| ApiError::InvalidUsername(format!("user {user:?}: {e}")))
}

/// Checks a device id: 1 to [`MAX_DEVICE_ID_LEN`] bytes of `[A-Za-z0-9._-]`.
pub fn check_device_id(device_id: &str) -> Result<(), ApiError> {
    let ok = !device_id.is_empty()
        && device_id.len() <= MAX_DEVICE_ID_LEN
        && device_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::InvalidDeviceId(format!(
            "device id must be 1 to {MAX_DEVICE_ID_LEN} characters of letters, digits, '.', '_' or '-'"
        )))
    }
}

/// Decodes base64 `text` that must hold exactly `N` bytes.
fn decode_exact<const N: usize>(what: &str, text: &str) -> Result<[u8; N], ApiError> {
    let bytes = STANDARD
        .decode(text)
        .map_err(|e| ApiError::InvalidKeys(format!("{what} is not valid base64: {e}")))?;
    <[u8; N]>::try_from(bytes.as_slice()).map_err(|_| {
        ApiError::InvalidKeys(format!("{what} must be {N} bytes, got {}", bytes.len()))
    })
}

fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[..N]);
    out
}

/// Parses and verifies a device's published keys (base64 of 128 bytes).
pub fn parse_device_keys(text: &str, updated_at_ms: i64) -> Result<DeviceKeys, ApiError> {
    let bytes: [u8; DEVICE_KEYS_LEN] = decode_exact("keys", text)?;
    let identity_key: [u8; PUBLIC_KEY_LEN] = array(&bytes[..32]);
    let signed_prekey: [u8; PUBLIC_KEY_LEN] = array(&bytes[32..64]);
    let signature: [u8; SIGNATURE_LEN] = array(&bytes[64..]);
    let mut message = Vec::with_capacity(SIGNED_PREKEY_CONTEXT.len() + PUBLIC_KEY_LEN);
    message.extend_from_slice(SIGNED_PREKEY_CONTEXT);
    message.extend_from_slice(&signed_prekey);
    UnparsedPublicKey::new(&ED25519, identity_key)
        .verify(&message, &signature)
        .map_err(|_| ApiError::BadSignedPrekeySignature)?;
    Ok(DeviceKeys {
        identity_key,
        signed_prekey: SignedPrekey {
            public_key: signed_prekey,
            signature,
        },
        updated_at_ms,
    })
}

/// Parses an upload of one-time prekeys (base64 of 36 bytes each).
pub fn parse_prekeys(texts: &[String]) -> Result<Vec<OneTimePrekey>, ApiError> {
    if texts.is_empty() || texts.len() > MAX_PREKEYS_PER_UPLOAD {
        return Err(ApiError::InvalidKeys(format!(
            "prekeys must hold 1 to {MAX_PREKEYS_PER_UPLOAD} one-time prekeys, got {}",
            texts.len()
        )));
    }
    texts
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let bytes: [u8; ONE_TIME_PREKEY_LEN] = decode_exact(&format!("prekeys[{i}]"), text)?;
            Ok(OneTimePrekey {
                id: u32::from_be_bytes(array(&bytes[..4])),
                public_key: array(&bytes[4..]),
            })
        })
        .collect()
}

/// The 128-byte form of a device's keys.
pub fn device_keys_bytes(keys: &DeviceKeys) -> [u8; DEVICE_KEYS_LEN] {
    let mut out = [0u8; DEVICE_KEYS_LEN];
    out[..32].copy_from_slice(&keys.identity_key);
    out[32..64].copy_from_slice(&keys.signed_prekey.public_key);
    out[64..].copy_from_slice(&keys.signed_prekey.signature);
    out
}

/// The byte form of a bundle: device keys ‖ 0, or device keys ‖ 1 ‖ id ‖ key.
pub fn bundle_bytes(bundle: &DeviceBundle) -> Vec<u8> {
    let mut out = Vec::with_capacity(DEVICE_KEYS_LEN + 1 + ONE_TIME_PREKEY_LEN);
    out.extend_from_slice(&device_keys_bytes(&bundle.keys));
    match &bundle.one_time_prekey {
        None => out.push(0),
        Some(prekey) => {
            out.push(1);
            out.extend_from_slice(&prekey.id.to_be_bytes());
            out.extend_from_slice(&prekey.public_key);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use ring::rand::SystemRandom;
    use ring::signature::{Ed25519KeyPair, KeyPair};

    use super::*;

    /// Base64 of device keys signed by a fresh identity key.
    fn signed_keys() -> [u8; DEVICE_KEYS_LEN] {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let identity = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let prekey = [7u8; 32];
        let mut message = SIGNED_PREKEY_CONTEXT.to_vec();
        message.extend_from_slice(&prekey);
        let mut out = [0u8; DEVICE_KEYS_LEN];
        out[..32].copy_from_slice(identity.public_key().as_ref());
        out[32..64].copy_from_slice(&prekey);
        out[64..].copy_from_slice(identity.sign(&message).as_ref());
        out
    }

    #[test]
    fn signed_keys_round_trip_and_tampering_is_refused() {
        let bytes = signed_keys();
        let keys = parse_device_keys(&STANDARD.encode(bytes), 5).unwrap();
        assert_eq!(keys.updated_at_ms, 5);
        assert_eq!(device_keys_bytes(&keys), bytes);
        for flip in [0, 40, 100, 127] {
            let mut tampered = bytes;
            tampered[flip] ^= 1;
            let err = parse_device_keys(&STANDARD.encode(tampered), 5).unwrap_err();
            assert_eq!(err, ApiError::BadSignedPrekeySignature, "byte {flip}");
            assert_eq!(err.status(), StatusCode::BAD_REQUEST);
            assert_eq!(err.code(), "bad_signed_prekey_signature");
        }
    }

    #[test]
    fn junk_keys_get_precise_messages() {
        let short = parse_device_keys(&STANDARD.encode([0u8; 127]), 0).unwrap_err();
        assert_eq!(short.code(), "invalid_keys");
        assert!(short.to_string().contains("128 bytes, got 127"), "{short}");
        let not_base64 = parse_device_keys("not base64!", 0).unwrap_err();
        assert!(not_base64.to_string().contains("base64"), "{not_base64}");
        assert!(parse_prekeys(&[]).is_err());
        let too_many = vec![STANDARD.encode([0u8; 36]); MAX_PREKEYS_PER_UPLOAD + 1];
        assert_eq!(parse_prekeys(&too_many).unwrap_err().code(), "invalid_keys");
        let wrong =
            parse_prekeys(&[STANDARD.encode([0u8; 36]), STANDARD.encode([0u8; 35])]).unwrap_err();
        assert!(wrong.to_string().contains("prekeys[1]"), "{wrong}");
    }

    #[test]
    fn prekeys_and_bundles_use_the_documented_byte_forms() {
        let mut item = [9u8; 36];
        item[..4].copy_from_slice(&0x0102_0304u32.to_be_bytes());
        let parsed = parse_prekeys(&[STANDARD.encode(item)]).unwrap();
        assert_eq!(parsed[0].id, 0x0102_0304);
        assert_eq!(parsed[0].public_key, [9u8; 32]);

        let keys = parse_device_keys(&STANDARD.encode(signed_keys()), 0).unwrap();
        let mut bundle = DeviceBundle {
            device_id: "phone".into(),
            keys,
            one_time_prekey: None,
        };
        let bytes = bundle_bytes(&bundle);
        assert_eq!(bytes.len(), 129);
        assert_eq!(bytes[128], 0);
        bundle.one_time_prekey = Some(parsed[0]);
        let bytes = bundle_bytes(&bundle);
        assert_eq!(bytes.len(), 165);
        assert_eq!(bytes[128], 1);
        assert_eq!(&bytes[129..], &item);
    }

    #[test]
    fn device_ids_are_checked() {
        let longest = "x".repeat(MAX_DEVICE_ID_LEN);
        let too_long = "x".repeat(MAX_DEVICE_ID_LEN + 1);
        for ok in ["phone", "a", "Laptop-2.work_1", longest.as_str()] {
            assert_eq!(check_device_id(ok), Ok(()), "{ok:?}");
        }
        for bad in ["", "with space", "slash/y", "é", too_long.as_str()] {
            assert_eq!(
                check_device_id(bad).map_err(|e| e.code()),
                Err("invalid_device_id"),
                "{bad:?}"
            );
        }
    }
}
