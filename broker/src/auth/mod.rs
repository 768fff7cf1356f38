//! Accounts: password hashing, access tokens and the [`Authenticator`] that
//! signs users up, logs them in and checks MQTT CONNECT credentials.
//!
//! - [`password`]: PBKDF2 password hashes and the password policy.
//! - [`token`]: signed HS256 access tokens.
//! - [`errors`]: what sign-up, log-in and authentication can fail with.
//! - [`throttle`]: log-in backoff per account and per source address.
//! - [`signup`]: who may sign up, with which invite, how fast.
//! - `authenticator`: the [`Authenticator`] tying those to the metadata store.

mod authenticator;
pub mod errors;
pub mod password;
pub mod signup;
pub mod throttle;
pub mod token;
pub mod verified_cache;

use std::time::Duration;

pub use authenticator::Authenticator;
pub use errors::{AuthError, AuthSetupError, LogInError, SignUpError};
pub use token::{Claims, IssuedToken};

/// How accounts are secured, as configured.
#[derive(Clone)]
pub struct AuthSettings {
    /// The HS256 secret access tokens are signed with; at least
    /// [`token::MIN_SECRET_LEN`] bytes.
    pub jwt_secret: String,
    /// How long an access token stays valid; at least one second.
    pub token_ttl: Duration,
    /// PBKDF2 iterations for new password hashes; at least
    /// [`password::MIN_ITERATIONS`].
    pub pbkdf2_iterations: u32,
    /// How long a verified password is remembered for CONNECT (zero: never);
    /// see [`verified_cache`].
    pub verified_cache_ttl: Duration,
}

impl std::fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthSettings")
            .field("jwt_secret", &"<redacted>")
            .field("token_ttl", &self.token_ttl)
            .field("pbkdf2_iterations", &self.pbkdf2_iterations)
            .field("verified_cache_ttl", &self.verified_cache_ttl)
            .finish()
    }
}
