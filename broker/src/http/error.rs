//! [`ApiError`]: every HTTP API failure as a status code and a JSON body
//! `{"error": "<machine code>", "message": "<human text>"}`.

use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::auth::{AuthError, LogInError, SignUpError};

/// An HTTP API failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// 400: the username is not a valid user id.
    #[error("{0}")]
    InvalidUsername(String),
    /// 400: the password breaks the password policy.
    #[error("{0}")]
    WeakPassword(String),
    /// 400: the body is not syntactically valid JSON.
    #[error("{0}")]
    MalformedJson(String),
    /// 400: the body is JSON but not of the expected shape.
    #[error("{0}")]
    InvalidRequest(String),
    /// 413: the body is larger than [`super::MAX_BODY_BYTES`].
    #[error("the request body is larger than {} bytes", super::MAX_BODY_BYTES)]
    PayloadTooLarge,
    /// 415: the body is not declared as `application/json`.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 409: the username is taken.
    #[error("username {0:?} is already taken")]
    UsernameTaken(String),
    /// 401: unknown user or wrong password.
    #[error("bad username or password")]
    BadCredentials,
    /// 403: the account is disabled.
    #[error("the account is disabled")]
    Disabled,
    /// 503: the account store is unavailable (details are in the server log).
    #[error("the service is temporarily unavailable; try again later")]
    Unavailable,
    /// 404: no such endpoint.
    #[error("no such endpoint")]
    NotFound,
    /// 401: an endpoint acting for a user, without `Authorization: Bearer <access token>`.
    #[error(
        "this endpoint needs an access token (POST /v1/tokens) as `Authorization: Bearer <token>`"
    )]
    TokenRequired,
    /// 401: an admin endpoint without the right `Authorization: Bearer` token.
    #[error("this endpoint needs the admin token as `Authorization: Bearer <token>`")]
    AdminTokenRequired,
    /// 404: the named user has no live session with that client id.
    #[error("user {user:?} has no live session with client id {client_id:?}")]
    NoSuchSession {
        /// The user named in the path.
        user: String,
        /// The client id named in the path.
        client_id: String,
    },
    /// 404: the named user does not exist.
    #[error("no user {0:?}")]
    NoSuchUser(String),
    /// 405: the endpoint does not accept this method.
    #[error("method not allowed on this endpoint")]
    MethodNotAllowed,
    /// 404: media is not configured on this node (`[media]`).
    #[error("media is not configured on this server")]
    MediaDisabled,
    /// 400: a conversation id is malformed.
    #[error("{0}")]
    InvalidConversationId(String),
    /// 400: a media object key is malformed.
    #[error("{0}")]
    InvalidObjectKey(String),
    /// 400: the upload is larger than `media.max_bytes` (or empty).
    #[error("{0}")]
    MediaTooLarge(String),
    /// 400: the upload's content type is not in `media.allowed_content_types`.
    #[error("{0}")]
    ContentTypeNotAllowed(String),
    /// 403: the caller is not a member of the conversation (or it does not exist).
    #[error("you are not a member of conversation {0:?}")]
    NotAMember(String),
    /// 400: a device id is empty, too long or has characters outside `[A-Za-z0-9._-]`.
    #[error("{0}")]
    InvalidDeviceId(String),
    /// 400: uploaded keys are not base64 of the expected byte form.
    #[error("{0}")]
    InvalidKeys(String),
    /// 400: the signed prekey's signature does not verify under the identity key.
    #[error(
        "the signed prekey's signature does not verify under the identity key \
         (Ed25519 over \"Parley E2E v1 signed prekey\" followed by the signed prekey)"
    )]
    BadSignedPrekeySignature,
    /// 404: the device has published no keys.
    #[error("device {device_id:?} of user {user:?} has no keys; publish them first")]
    UnknownDevice {
        /// The device's user.
        user: String,
        /// The device id.
        device_id: String,
    },
    /// 409: the user already has keys for the maximum number of devices.
    #[error("a user may publish keys for at most {0} devices")]
    TooManyDevices(usize),
    /// 409: a one-time prekey id is stored already, or repeated in the upload.
    #[error("one-time prekey id {0} is already stored or repeated in the upload")]
    DuplicatePrekeyId(u32),
    /// 409: the upload would exceed the one-time prekeys a device may hold.
    #[error("the device holds {stored} one-time prekeys; at most {max} may be stored")]
    TooManyPrekeys {
        /// How many the device holds.
        stored: u64,
        /// The limit.
        max: u64,
    },
    /// 403: the caller shares no conversation with the user whose keys it asked for.
    #[error("you share no conversation with {0:?}; open one before fetching their keys")]
    NoSharedConversation(String),
    /// 429: the caller fetched key bundles faster than its rate allows.
    #[error("too many key bundle fetches; slow down and try again in a few seconds")]
    KeyFetchRateLimited,
    /// 404: push notifications are off on this server (`push.notifier = "off"`).
    #[error("push notifications are not configured on this server")]
    PushDisabled,
    /// 400: the push kind is unknown, or not the notifier this server pushes through.
    #[error("{0}")]
    InvalidPushKind(String),
    /// 400: the push target does not have the shape its kind needs.
    #[error("{0}")]
    InvalidPushTarget(String),
    /// 409: the user already has the maximum number of push devices.
    #[error("a user may register at most {0} push devices; remove one first")]
    TooManyPushDevices(usize),
    /// 404: the caller has no push device with this id.
    #[error("no push device {0:?}")]
    NoSuchPushDevice(String),
    /// 429: too many failed log-ins for this account or from this address.
    #[error("too many failed log-ins; try again in {0} s")]
    LoginThrottled(u64),
    /// 429: too many sign-ups from this address.
    #[error("too many sign-ups from this address; try again in {0} s")]
    SignUpRateLimited(u64),
    /// 403: sign-up is closed on this server.
    #[error("sign-up is closed on this server; ask an administrator for an account")]
    SignUpClosed,
    /// 403: sign-up needs a valid invite token (missing, unknown, used or expired).
    #[error("sign-up on this server needs a valid invite token (\"invite\")")]
    InviteRequired,
    /// 408: the request's body or answer took longer than the request timeout.
    #[error("the request took too long")]
    RequestTimeout,
    /// 401: `/metrics` without the metrics token.
    #[error("this endpoint needs the metrics token as `Authorization: Bearer <token>`")]
    MetricsTokenRequired,
}

/// The JSON body of every error response.
#[derive(Debug, Serialize)]
struct ErrorBody {
    /// A stable, machine-readable code.
    error: &'static str,
    /// A human-readable explanation.
    message: String,
}

impl ApiError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidUsername(_)
            | ApiError::WeakPassword(_)
            | ApiError::MalformedJson(_)
            | ApiError::InvalidRequest(_)
            | ApiError::InvalidDeviceId(_)
            | ApiError::InvalidKeys(_)
            | ApiError::BadSignedPrekeySignature => StatusCode::BAD_REQUEST,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::UsernameTaken(_) => StatusCode::CONFLICT,
            ApiError::BadCredentials => StatusCode::UNAUTHORIZED,
            ApiError::Disabled => StatusCode::FORBIDDEN,
            ApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::NotFound | ApiError::NoSuchSession { .. } | ApiError::NoSuchUser(_) => {
                StatusCode::NOT_FOUND
            }
            ApiError::AdminTokenRequired | ApiError::TokenRequired => StatusCode::UNAUTHORIZED,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::MediaDisabled => StatusCode::NOT_FOUND,
            ApiError::InvalidConversationId(_)
            | ApiError::InvalidObjectKey(_)
            | ApiError::MediaTooLarge(_)
            | ApiError::ContentTypeNotAllowed(_) => StatusCode::BAD_REQUEST,
            ApiError::NotAMember(_) => StatusCode::FORBIDDEN,
            ApiError::UnknownDevice { .. } => StatusCode::NOT_FOUND,
            ApiError::TooManyDevices(_)
            | ApiError::DuplicatePrekeyId(_)
            | ApiError::TooManyPrekeys { .. } => StatusCode::CONFLICT,
            ApiError::NoSharedConversation(_) => StatusCode::FORBIDDEN,
            ApiError::KeyFetchRateLimited => StatusCode::TOO_MANY_REQUESTS,
            ApiError::PushDisabled | ApiError::NoSuchPushDevice(_) => StatusCode::NOT_FOUND,
            ApiError::InvalidPushKind(_) | ApiError::InvalidPushTarget(_) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::TooManyPushDevices(_) => StatusCode::CONFLICT,
            ApiError::LoginThrottled(_) | ApiError::SignUpRateLimited(_) => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::SignUpClosed | ApiError::InviteRequired => StatusCode::FORBIDDEN,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::MetricsTokenRequired => StatusCode::UNAUTHORIZED,
        }
    }

    /// The machine-readable code in the `error` field.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidUsername(_) => "invalid_username",
            ApiError::WeakPassword(_) => "weak_password",
            ApiError::MalformedJson(_) => "malformed_json",
            ApiError::InvalidRequest(_) => "invalid_request",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::UsernameTaken(_) => "username_taken",
            ApiError::BadCredentials => "bad_credentials",
            ApiError::Disabled => "account_disabled",
            ApiError::Unavailable => "unavailable",
            ApiError::NotFound => "not_found",
            ApiError::AdminTokenRequired => "admin_token_required",
            ApiError::TokenRequired => "token_required",
            ApiError::NoSuchSession { .. } => "no_such_session",
            ApiError::NoSuchUser(_) => "no_such_user",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::MediaDisabled => "media_disabled",
            ApiError::InvalidConversationId(_) => "invalid_conversation_id",
            ApiError::InvalidObjectKey(_) => "invalid_object_key",
            ApiError::MediaTooLarge(_) => "media_too_large",
            ApiError::ContentTypeNotAllowed(_) => "content_type_not_allowed",
            ApiError::NotAMember(_) => "not_a_member",
            ApiError::InvalidDeviceId(_) => "invalid_device_id",
            ApiError::InvalidKeys(_) => "invalid_keys",
            ApiError::BadSignedPrekeySignature => "bad_signed_prekey_signature",
            ApiError::UnknownDevice { .. } => "unknown_device",
            ApiError::TooManyDevices(_) => "too_many_devices",
            ApiError::DuplicatePrekeyId(_) => "duplicate_prekey_id",
            ApiError::TooManyPrekeys { .. } => "too_many_prekeys",
            ApiError::NoSharedConversation(_) => "no_shared_conversation",
            ApiError::KeyFetchRateLimited => "rate_limited",
            ApiError::PushDisabled => "push_disabled",
            ApiError::InvalidPushKind(_) => "invalid_push_kind",
            ApiError::InvalidPushTarget(_) => "invalid_push_target",
            ApiError::TooManyPushDevices(_) => "too_many_push_devices",
            ApiError::NoSuchPushDevice(_) => "no_such_push_device",
            ApiError::LoginThrottled(_) => "login_throttled",
            ApiError::SignUpRateLimited(_) => "signup_rate_limited",
            ApiError::SignUpClosed => "signup_closed",
            ApiError::InviteRequired => "invite_required",
            ApiError::RequestTimeout => "request_timeout",
            ApiError::MetricsTokenRequired => "metrics_token_required",
        }
    }

    /// The `Retry-After` this answer carries, in seconds, if any.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            ApiError::LoginThrottled(secs) | ApiError::SignUpRateLimited(secs) => Some(*secs),
            ApiError::KeyFetchRateLimited => Some(1),
            ApiError::Unavailable => Some(5),
            _ => None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.code(),
            message: self.to_string(),
        };
        let mut response = (self.status(), Json(body)).into_response();
        if let Some(secs) = self.retry_after_secs() {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.max(1).into());
        }
        response
    }
}

impl From<LogInError> for ApiError {
    fn from(e: LogInError) -> ApiError {
        match e {
            LogInError::Throttled { retry_after } => {
                ApiError::LoginThrottled(retry_after.as_secs_f64().ceil() as u64)
            }
            LogInError::Refused(e) => e.into(),
        }
    }
}

impl From<SignUpError> for ApiError {
    fn from(e: SignUpError) -> ApiError {
        match e {
            SignUpError::InvalidUsername(_) => ApiError::InvalidUsername(e.to_string()),
            SignUpError::WeakPassword(_) => ApiError::WeakPassword(e.to_string()),
            SignUpError::Conflict(name) => ApiError::UsernameTaken(name),
            SignUpError::Unavailable(_) => ApiError::Unavailable,
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> ApiError {
        match e {
            AuthError::BadCredentials => ApiError::BadCredentials,
            AuthError::Disabled => ApiError::Disabled,
            AuthError::Unavailable(_) => ApiError::Unavailable,
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> ApiError {
        match rejection {
            JsonRejection::JsonSyntaxError(e) => ApiError::MalformedJson(e.body_text()),
            JsonRejection::JsonDataError(e) => ApiError::InvalidRequest(e.body_text()),
            JsonRejection::MissingJsonContentType(e) => {
                ApiError::UnsupportedMediaType(e.body_text())
            }
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
            other => ApiError::InvalidRequest(other.body_text()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::password::PasswordPolicyError;
    use chat_core::ids::UserId;

    #[test]
    fn sign_up_errors_map_to_precise_statuses() {
        let id_error = UserId::parse("Bad").unwrap_err();
        let invalid = ApiError::from(SignUpError::InvalidUsername(id_error.clone()));
        assert_eq!(invalid.status(), StatusCode::BAD_REQUEST);
        assert_eq!(invalid.code(), "invalid_username");
        assert!(invalid.to_string().contains(&id_error.to_string()));

        let weak = ApiError::from(SignUpError::WeakPassword(PasswordPolicyError::TooShort {
            min: 8,
            len: 3,
        }));
        assert_eq!(
            (weak.status(), weak.code()),
            (StatusCode::BAD_REQUEST, "weak_password")
        );

        let taken = ApiError::from(SignUpError::Conflict("alice".into()));
        assert_eq!(
            (taken.status(), taken.code()),
            (StatusCode::CONFLICT, "username_taken")
        );

        let down = ApiError::from(SignUpError::Unavailable("disk on fire".into()));
        assert_eq!(down.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            !down.to_string().contains("disk"),
            "internal detail stays in the log"
        );
    }

    #[test]
    fn auth_errors_map_to_precise_statuses() {
        assert_eq!(
            ApiError::from(AuthError::BadCredentials).status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            ApiError::from(AuthError::Disabled).status(),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            ApiError::from(AuthError::Unavailable("x".into())).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
