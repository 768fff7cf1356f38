//! Media endpoints: presigned URLs for uploading files to, and downloading
//! them from, the S3-compatible bucket of `[media]`. Both act for the
//! signed-in user ([`Bearer`]) and only for members of the conversation:
//!
//! - `POST /v1/media/uploads` with `{"conversation_id", "content_type",
//!   "size"}` answers 201 `{"object_key", "upload_url", "method": "PUT",
//!   "headers": {...}, "expires_at"}`. The client then sends the file's bytes
//!   with `method` to `upload_url`, with exactly `headers` (content type and
//!   length are signed: the bucket refuses any other), before `expires_at`
//!   (RFC 3339). `object_key` is `{conversation_id}/{32 hex digits}`.
//! - `GET /v1/media/{conversation_id}/{id}` (the object key as path) answers
//!   200 `{"object_key", "download_url", "method": "GET", "expires_at"}`.
//!
//! Refusals: 400 `invalid_conversation_id`, `invalid_object_key`,
//! `content_type_not_allowed`, `media_too_large`; 403 `not_a_member` (also
//! for conversations that do not exist); 404 `media_disabled` when no bucket
//! is configured.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use chat_core::ids::{ConversationId, UserId};
use persistence::MetadataStore;
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiJson, Bearer, HttpState};
use crate::media::{ObjectKey, Presigner, UploadRefused};

/// What the media endpoints need.
pub struct MediaState {
    /// Signs the URLs and holds the limits.
    pub presigner: Presigner,
    /// Conversations and their members.
    pub store: Arc<dyn MetadataStore>,
}

impl std::fmt::Debug for MediaState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaState")
            .field("presigner", &self.presigner)
            .finish_non_exhaustive()
    }
}

/// The media routes.
pub fn routes() -> Router<HttpState> {
    Router::new()
        .route("/v1/media/uploads", post(create_upload))
        .route("/v1/media/:conversation_id/:id", get(download))
}

/// The body of `POST /v1/media/uploads`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadRequest {
    /// The conversation the file is for.
    pub conversation_id: String,
    /// Its MIME type, `type/subtype`.
    pub content_type: String,
    /// Its size in bytes.
    pub size: u64,
}

/// The answer to `POST /v1/media/uploads`.
#[derive(Debug, Serialize)]
pub struct UploadAnswer {
    /// Key of the object to refer to in the message's `MediaRef`.
    pub object_key: String,
    /// The presigned URL to send the bytes to.
    pub upload_url: String,
    /// Always `PUT`.
    pub method: &'static str,
    /// Headers the upload must carry unchanged.
    pub headers: BTreeMap<String, String>,
    /// When `upload_url` stops working (RFC 3339).
    pub expires_at: String,
}

/// The answer to `GET /v1/media/{conversation_id}/{id}`.
#[derive(Debug, Serialize)]
pub struct DownloadAnswer {
    /// The object's key.
    pub object_key: String,
    /// The presigned URL to fetch the bytes from.
    pub download_url: String,
    /// Always `GET`.
    pub method: &'static str,
    /// When `download_url` stops working (RFC 3339).
    pub expires_at: String,
}

async fn create_upload(
    State(state): State<HttpState>,
    Bearer(user): Bearer,
    ApiJson(request): ApiJson<UploadRequest>,
) -> Result<(StatusCode, Json<UploadAnswer>), ApiError> {
    let media = state.media.ok_or(ApiError::MediaDisabled)?;
    let conversation = ConversationId::parse(&request.conversation_id)
        .map_err(|e| ApiError::InvalidConversationId(e.to_string()))?;
    let content_type = media
        .presigner
        .check_upload(&request.content_type, request.size)
        .map_err(|refused| match refused {
            UploadRefused::ContentType { .. } => {
                ApiError::ContentTypeNotAllowed(refused.to_string())
            }
            UploadRefused::TooLarge { .. } | UploadRefused::Empty => {
                ApiError::MediaTooLarge(refused.to_string())
            }
        })?;
    require_member(&media, &user, &conversation).await?;
    let key = ObjectKey::generate(&conversation).ok_or_else(|| {
        tracing::error!("no randomness for a media object key");
        ApiError::Unavailable
    })?;
    let signed = media.presigner.upload(&key, &content_type, request.size);
    tracing::debug!(%user, key = %key, size = request.size, "media upload signed");
    Ok((
        StatusCode::CREATED,
        Json(UploadAnswer {
            object_key: key.to_string(),
            upload_url: signed.url,
            method: signed.method,
            headers: signed.headers,
            expires_at: signed.expires_at.to_string(),
        }),
    ))
}

async fn download(
    State(state): State<HttpState>,
    Bearer(user): Bearer,
    Path((conversation_id, id)): Path<(String, String)>,
) -> Result<Json<DownloadAnswer>, ApiError> {
    let media = state.media.ok_or(ApiError::MediaDisabled)?;
    let key = ObjectKey::from_parts(&conversation_id, &id)
        .map_err(|e| ApiError::InvalidObjectKey(e.to_string()))?;
    require_member(&media, &user, key.conversation()).await?;
    let signed = media.presigner.download(&key);
    Ok(Json(DownloadAnswer {
        object_key: key.to_string(),
        download_url: signed.url,
        method: signed.method,
        expires_at: signed.expires_at.to_string(),
    }))
}

/// Refuses unless `user` is a member of `conversation` now.
async fn require_member(
    media: &MediaState,
    user: &UserId,
    conversation: &ConversationId,
) -> Result<(), ApiError> {
    let record = media
        .store
        .get_conversation(conversation.as_str())
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "reading a conversation for media");
            ApiError::Unavailable
        })?;
    match record {
        Some(record) if record.member(user.as_str()).is_some() => Ok(()),
        _ => Err(ApiError::NotAMember(conversation.to_string())),
    }
}
