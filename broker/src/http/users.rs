//! `POST /v1/users`: account sign-up, within the `[accounts]` policy
//! (open, invite-only or closed; a per-address rate).

use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiJson, HttpState};
use crate::auth::signup::SignUpRefusal;
use crate::metrics::security::Refusal;

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
    /// An invite token from the admin API; required when
    /// `accounts.signup = "invite"`, ignored otherwise.
    #[serde(default)]
    pub invite: Option<String>,
}

/// A created account.
#[derive(Debug, Serialize)]
pub struct SignUpResponse {
    /// The username.
    pub username: String,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_at_ms: i64,
}

/// Creates an account: 201 with the account, or 400 / 403 (closed, or no
/// valid invite) / 409 / 429 (with `Retry-After`) / 503.
pub async fn sign_up(
    State(state): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    ApiJson(request): ApiJson<SignUpRequest>,
) -> Result<(StatusCode, Json<SignUpResponse>), ApiError> {
    let reservation = state
        .signup
        .admit(peer.ip(), request.invite.as_deref())
        .map_err(|refusal| {
            tracing::info!(%peer, username = %request.username.chars().take(64).collect::<String>(),
                reason = %refusal, "sign-up refused by policy");
            match refusal {
                SignUpRefusal::Closed => {
                    state.metrics.defended(Refusal::SignUpClosed);
                    ApiError::SignUpClosed
                }
                SignUpRefusal::InviteRequired(_) => {
                    state.metrics.defended(Refusal::SignUpInvite);
                    ApiError::InviteRequired
                }
                SignUpRefusal::RateLimited { retry_after } => {
                    state.metrics.defended(Refusal::SignUpRate);
                    ApiError::SignUpRateLimited(retry_after.as_secs().max(1))
                }
            }
        })?;
    let record = state
        .auth
        .sign_up(&request.username, &request.password)
        .await?;
    reservation.consume();
    Ok((
        StatusCode::CREATED,
        Json(SignUpResponse {
            username: record.username,
            created_at_ms: record.created_at_ms,
        }),
    ))
}
