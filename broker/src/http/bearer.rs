//! [`Bearer`]: the extractor of endpoints that act for a signed-in user. It
//! reads `Authorization: Bearer <access token>` (a token from
//! `POST /v1/tokens`) and answers 401 / 403 / 503 itself when the token is
//! missing, invalid, or the account is disabled or cannot be checked.

use axum::async_trait;
use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use chat_core::ids::UserId;

use super::{ApiError, HttpState};

/// The authenticated user of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bearer(pub UserId);

#[async_trait]
impl<S> FromRequestParts<S> for Bearer
where
    HttpState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Bearer, ApiError> {
        let state = HttpState::from_ref(state);
        let token = bearer_token(parts).ok_or(ApiError::TokenRequired)?;
        Ok(Bearer(state.auth.authenticate_bearer(token).await?))
    }
}

/// The token of an `Authorization: Bearer <token>` header, if there is one.
pub fn bearer_token(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}
