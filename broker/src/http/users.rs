//! `POST /v1/users`: account sign-up.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiJson, HttpState};

/// The user routes.
pub fn routes() -> Router<HttpState> {
    Router::new().route("/v1/users", post(sign_up))
}

/// A sign-up request body.
#[derive(Deserialize)]
pub struct SignUpRequest {
    /// The wanted username (a valid user id).
    pub username: String,
    /// The password, in clear text over the (TLS-terminated) connection.
    pub password: String,
}

/// A created account.
#[derive(Debug, Serialize)]
pub struct SignUpResponse {
    /// The username.
    pub username: String,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_at_ms: i64,
}

/// Creates an account: 201 with the account, or 400 / 409 / 503.
pub async fn sign_up(
    State(state): State<HttpState>,
    ApiJson(request): ApiJson<SignUpRequest>,
) -> Result<(StatusCode, Json<SignUpResponse>), ApiError> {
    let record = state
        .auth
        .sign_up(&request.username, &request.password)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(SignUpResponse {
            username: record.username,
            created_at_ms: record.created_at_ms,
        }),
    ))
}
