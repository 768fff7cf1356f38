//! The push device API, for a signed-in user's own devices (every call needs
//! `Authorization: Bearer <access token>` from `POST /v1/tokens`):
//!
//! - `PUT /v1/push/devices/{device_id}` with `{"kind": "...", "target": "..."}`:
//!   registers the device's push target, or replaces the one it had (201 when
//!   new, 200 when replaced). The kind must be the notifier this server
//!   pushes through (`push.notifier`); see [`crate::push::target`] for what a
//!   target of each kind looks like.
//! - `DELETE /v1/push/devices/{device_id}`: removes it (204, or 404).
//! - `GET /v1/push/devices`: the caller's registered devices.
//!
//! While `push.notifier = "off"` every push path answers 404 `push_disabled`.

use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, put};
use axum::{Json, Router};
use persistence::{MetadataStore, PushTarget, StoreError};
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiJson, Bearer, HttpState};
use crate::push::target::{check_device_id, check_target, TargetError};
use crate::push::NotifierKind;

/// What the push endpoints need.
pub struct PushState {
    /// Where push targets are kept.
    pub store: Arc<dyn MetadataStore>,
    /// The notifier this node pushes through: the only kind devices may register.
    pub kind: NotifierKind,
    /// Most devices one user may register (`push.max_devices_per_user`).
    pub max_devices_per_user: usize,
}

impl std::fmt::Debug for PushState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushState")
            .field("kind", &self.kind)
            .field("max_devices_per_user", &self.max_devices_per_user)
            .finish_non_exhaustive()
    }
}

/// The push routes.
pub fn routes() -> Router<HttpState> {
    Router::new()
        .route("/v1/push/devices", get(list_devices))
        .route(
            "/v1/push/devices/:device_id",
            put(register_device).delete(remove_device),
        )
}

/// The body of `PUT /v1/push/devices/{device_id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterDevice {
    /// `webhook`, `ntfy`, `gotify` or `fcm`: the server's notifier.
    pub kind: String,
    /// Where to deliver: the webhook receiver's routing key, the ntfy topic,
    /// the Gotify application token or the FCM registration token.
    pub target: String,
}

/// One registered device as answered.
#[derive(Debug, Serialize)]
pub struct DeviceView {
    /// The device id.
    pub device_id: String,
    /// The kind of its target.
    pub kind: String,
    /// Its target.
    pub target: String,
    /// When it was last registered, ms since the Unix epoch.
    pub updated_at_ms: i64,
}

impl From<PushTarget> for DeviceView {
    fn from(t: PushTarget) -> DeviceView {
        DeviceView {
            device_id: t.device_id,
            kind: t.kind,
            target: t.target,
            updated_at_ms: t.updated_at_ms,
        }
    }
}

/// The answer of `GET /v1/push/devices`.
#[derive(Debug, Serialize)]
pub struct DeviceList {
    /// The caller's devices, in device id order.
    pub devices: Vec<DeviceView>,
}

/// The push state, or 404 while push is off.
fn push_state(state: &HttpState) -> Result<&Arc<PushState>, ApiError> {
    state.push.as_ref().ok_or(ApiError::PushDisabled)
}

/// The checked device id of the path.
fn device_id(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Ok(Path(device_id)) = path else {
        return Err(ApiError::InvalidDeviceId(
            TargetError::InvalidDeviceId.to_string(),
        ));
    };
    check_device_id(&device_id).map_err(|e| ApiError::InvalidDeviceId(e.to_string()))?;
    Ok(device_id)
}

/// A store failure as an API error (details go to the log).
fn store_error(e: StoreError) -> ApiError {
    tracing::warn!(error = %e, "push device API: store failed");
    ApiError::Unavailable
}

/// Registers or replaces a device's push target: 201 (new) or 200 (replaced).
pub async fn register_device(
    State(state): State<HttpState>,
    Bearer(user): Bearer,
    path: Result<Path<String>, PathRejection>,
    ApiJson(request): ApiJson<RegisterDevice>,
) -> Result<(StatusCode, Json<DeviceView>), ApiError> {
    let push = push_state(&state)?;
    let device_id = device_id(path)?;
    let kind: NotifierKind = request.kind.parse().map_err(ApiError::InvalidPushKind)?;
    if kind != push.kind {
        return Err(ApiError::InvalidPushKind(format!(
            "this server pushes through {}; register a {} target",
            push.kind, push.kind
        )));
    }
    check_target(kind, &request.target).map_err(|e| match e {
        TargetError::OffKind => ApiError::InvalidPushKind(e.to_string()),
        other => ApiError::InvalidPushTarget(other.to_string()),
    })?;
    let existing = push
        .store
        .push_targets(user.as_str())
        .await
        .map_err(store_error)?;
    let replaces = existing.iter().any(|t| t.device_id == device_id);
    if !replaces && existing.len() >= push.max_devices_per_user {
        return Err(ApiError::TooManyPushDevices(push.max_devices_per_user));
    }
    let target = PushTarget {
        user: user.to_string(),
        device_id,
        kind: kind.as_str().to_owned(),
        target: request.target,
        updated_at_ms: crate::chat::now_ms(),
    };
    push.store
        .put_push_target(target.clone())
        .await
        .map_err(store_error)?;
    let status = if replaces {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(target.into())))
}

/// Removes a device's push target: 204, or 404 if it has none.
pub async fn remove_device(
    State(state): State<HttpState>,
    Bearer(user): Bearer,
    path: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let push = push_state(&state)?;
    let device_id = device_id(path)?;
    match push
        .store
        .delete_push_target(user.as_str(), &device_id)
        .await
    {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(StoreError::NotFound(_)) => Err(ApiError::NoSuchPushDevice(device_id)),
        Err(e) => Err(store_error(e)),
    }
}

/// Lists the caller's devices.
pub async fn list_devices(
    State(state): State<HttpState>,
    Bearer(user): Bearer,
) -> Result<Json<DeviceList>, ApiError> {
    let push = push_state(&state)?;
    let devices = push
        .store
        .push_targets(user.as_str())
        .await
        .map_err(store_error)?;
    Ok(Json(DeviceList {
        devices: devices.into_iter().map(DeviceView::from).collect(),
    }))
}
