//! JSON answers for requests no route handles: unknown paths (404) and
//! known paths with an unsupported method (405).

use super::ApiError;

/// Answers requests for unknown paths.
pub async fn not_found() -> ApiError {
    ApiError::NotFound
}

/// Answers requests with a method the path does not support.
pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
