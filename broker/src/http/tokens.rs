//! `POST /v1/tokens`: log-in, answered with a bearer access token.

use axum::extract::{ConnectInfo, State};
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiJson, HttpState};
use crate::auth::{AuthError, LogInError};
use crate::metrics::{AuthFailure, AuthVia};

/// The token routes.
pub fn routes() -> Router<HttpState> {
    Router::new().route("/v1/tokens", post(create_token))
}

/// A log-in request body.
#[derive(Deserialize)]
pub struct TokenRequest {
    /// The username.
    pub username: String,
    /// The account password.
    pub password: String,
}

/// An issued access token.
#[derive(Debug, Serialize)]
pub struct TokenResponse {
    /// The token, to be sent as `Authorization: Bearer …` or as the MQTT password.
    pub access_token: String,
    /// Always `"Bearer"`.
    pub token_type: &'static str,
    /// Expiry, Unix seconds.
    pub expires_at: u64,
}

/// Logs in: 200 with a token, or 400 / 401 / 403 / 429 (with `Retry-After`,
/// while the account or the address is in its log-in backoff) / 503.
pub async fn create_token(
    State(state): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    ApiJson(request): ApiJson<TokenRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    let issued = state
        .auth
        .log_in(&request.username, &request.password, peer.ip())
        .await
        .inspect_err(|e| {
            let reason = match e {
                LogInError::Throttled { .. } => return,
                LogInError::Refused(AuthError::BadCredentials) => AuthFailure::BadCredentials,
                LogInError::Refused(AuthError::Disabled) => AuthFailure::Disabled,
                LogInError::Refused(AuthError::Unavailable(_)) => AuthFailure::Unavailable,
            };
            state.metrics.auth_failed(reason, AuthVia::Http);
        })?;
    Ok(Json(TokenResponse {
        access_token: issued.token,
        token_type: "Bearer",
        expires_at: issued.expires_at,
    }))
}
