//! The errors of the [`Authenticator`](super::Authenticator): building it,
//! signing up, and logging in or connecting.

use chat_core::ids::IdError;

use super::password::{HashError, HasherSetupError, PasswordPolicyError};
use super::token::TokenSetupError;

/// Why an [`Authenticator`](super::Authenticator) could not be built from its settings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthSetupError {
    /// The PBKDF2 iteration count is out of range.
    #[error("password hashing: {0}")]
    Hasher(#[from] HasherSetupError),
    /// The token secret or lifetime is unusable.
    #[error("access tokens: {0}")]
    Token(#[from] TokenSetupError),
    /// The reference hash for unknown users could not be made.
    #[error("preparing the reference password hash: {0}")]
    ReferenceHash(HashError),
}

/// Why a sign-up was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignUpError {
    /// The username is not a valid user id.
    #[error("invalid username: {0}")]
    InvalidUsername(#[from] IdError),
    /// The password breaks the password policy.
    #[error("weak password: {0}")]
    WeakPassword(#[from] PasswordPolicyError),
    /// The username is taken.
    #[error("username {0:?} is already taken")]
    Conflict(String),
    /// The account store (or the system) failed; nothing was created.
    #[error("sign-up is unavailable: {0}")]
    Unavailable(String),
}

/// Why a log-in or an MQTT connection was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Unknown user, wrong password, or an invalid, expired or foreign token.
    /// Deliberately vague so that callers cannot probe which usernames exist.
    #[error("bad username or password")]
    BadCredentials,
    /// The credentials are right but the account is disabled.
    #[error("the account is disabled")]
    Disabled,
    /// The account store (or the system) failed; try again later.
    #[error("authentication is unavailable: {0}")]
    Unavailable(String),
}

/// Why a log-in (`POST /v1/tokens`) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogInError {
    /// The account or the source address is in its log-in backoff; the
    /// password was not checked.
    #[error("too many failed log-ins; try again in {} s", retry_after.as_secs().max(1))]
    Throttled {
        /// How long until the next attempt is considered.
        retry_after: std::time::Duration,
    },
    /// The credentials were checked and refused (or could not be).
    #[error(transparent)]
    Refused(#[from] AuthError),
}

impl PartialEq<AuthError> for LogInError {
    fn eq(&self, other: &AuthError) -> bool {
        matches!(self, LogInError::Refused(e) if e == other)
    }
}
