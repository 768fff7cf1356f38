//! [`ApiJson`]: axum's JSON body extractor with its rejections turned into
//! [`ApiError`]s, so malformed bodies get the API's JSON error shape.

use axum::extract::{FromRequest, Request};
use axum::{async_trait, Json};
use serde::de::DeserializeOwned;

use super::ApiError;

/// A JSON request body of type `T`; a bad body is rejected with an [`ApiError`]
/// (400 malformed or mistyped JSON, 413 too large, 415 wrong content type).
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

#[async_trait]
impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Json(value) = Json::<T>::from_request(req, state).await?;
        Ok(ApiJson(value))
    }
}
