//! The [`Authenticator`]: sign-up, log-in and MQTT CONNECT authentication
//! against the metadata store.
//!
//! Password hashing runs on Tokio's blocking pool, at most one hash per CPU at
//! a time, so a burst of log-ins cannot starve the async workers. Unknown users
//! are verified against a reference hash so that they take as long to refuse as
//! a wrong password, and every refusal is logged (username and reason, never
//! the password).
//!
//! With a log-in policy ([`Authenticator::with_login_policy`]) passwords are
//! also throttled per account and per source address (see
//! [`super::throttle`]), and at most `login.max_queued_hashes` hashes may wait
//! for a CPU: past that, password checks are refused at once as unavailable.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chat_core::ids::UserId;
use persistence::{MetadataStore, NewUser, StoreError, UserRecord};
use tokio::sync::Semaphore;
use tracing::{error, info, warn};

use super::errors::{AuthError, AuthSetupError, LogInError, SignUpError};
use super::password::{self, HashError, PasswordHasher, VerifyError};
use super::throttle::{LoginThrottle, Outcome};
use super::token::{self, IssuedToken, TokenError, TokenIssuer};
use super::verified_cache::VerifiedCache;
use super::AuthSettings;
use crate::config::LoginConfig;
use crate::metrics::security::{Refusal as Defence, RefusalLabels};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

/// The password behind the reference hash. Its value does not matter: the
/// outcome of verifying against the reference hash is always discarded.
const REFERENCE_PASSWORD: &str = "parley reference password";

/// Longest username shown in logs, in bytes; longer (hence invalid) names are cut.
const LOGGED_NAME_MAX: usize = 64;

/// Signs users up, logs them in and authenticates MQTT connections.
///
/// Shared behind an [`Arc`] by the HTTP API and the MQTT front end.
pub struct Authenticator {
    store: Arc<dyn MetadataStore>,
    hasher: Arc<PasswordHasher>,
    tokens: TokenIssuer,
    reference_hash: Arc<str>,
    hashing: Arc<Semaphore>,
    /// Hashes running or waiting for a CPU.
    hashes_pending: Arc<AtomicUsize>,
    /// Most hashes running or waiting at once.
    max_pending_hashes: usize,
    verified: Option<VerifiedCache>,
    throttle: Option<LoginThrottle>,
    /// Longest wait before a throttled MQTT CONNECT is refused.
    mqtt_refusal_delay_max: Duration,
    refusals: Option<Family<RefusalLabels, Counter>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("pbkdf2_iterations", &self.hasher.iterations())
            .field("tokens", &self.tokens)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Builds an authenticator over `store` with `settings`.
    ///
    /// Computes one password hash (the reference hash for unknown users), so
    /// it takes as long as a log-in; call it once at startup.
    ///
    /// # Errors
    ///
    /// [`AuthSetupError`] if the iteration count, token secret or token
    /// lifetime is out of range, or the system has no randomness.
    pub fn new(
        store: Arc<dyn MetadataStore>,
        settings: AuthSettings,
    ) -> Result<Authenticator, AuthSetupError> {
        let hasher = PasswordHasher::new(settings.pbkdf2_iterations)?;
        let tokens = TokenIssuer::new(&settings.jwt_secret, settings.token_ttl)?;
        let reference_hash = hasher
            .hash(REFERENCE_PASSWORD)
            .map_err(AuthSetupError::ReferenceHash)?;
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(Authenticator {
            store,
            hasher: Arc::new(hasher),
            tokens,
            reference_hash: reference_hash.into(),
            hashing: Arc::new(Semaphore::new(cpus)),
            hashes_pending: Arc::new(AtomicUsize::new(0)),
            max_pending_hashes: usize::MAX,
            verified: VerifiedCache::new(settings.verified_cache_ttl),
            throttle: None,
            mqtt_refusal_delay_max: Duration::ZERO,
            refusals: None,
        })
    }

    /// Applies the `[login]` policy: log-in backoff per account and address,
    /// a bound on queued password hashes, refusals counted in `refusals`
    /// (the node's `parley_security_refusals_total`).
    pub fn with_login_policy(
        mut self,
        config: &LoginConfig,
        refusals: Family<RefusalLabels, Counter>,
    ) -> Self {
        self.throttle = Some(LoginThrottle::new(config));
        self.max_pending_hashes = self
            .hashing
            .available_permits()
            .saturating_add(config.max_queued_hashes);
        self.mqtt_refusal_delay_max = Duration::from_millis(config.mqtt_refusal_delay_max_ms);
        self.refusals = Some(refusals);
        self
    }

    /// Counts a refusal, when metrics are attached.
    fn defended(&self, refusal: Defence) {
        if let Some(refusals) = &self.refusals {
            refusals.get_or_create(&RefusalLabels { refusal }).inc();
        }
    }

    /// Creates an account.
    ///
    /// # Errors
    ///
    /// [`SignUpError::InvalidUsername`] (with chat-core's reason),
    /// [`SignUpError::WeakPassword`], [`SignUpError::Conflict`] if the name is
    /// taken, [`SignUpError::Unavailable`] if the store fails.
    pub async fn sign_up(&self, username: &str, password: &str) -> Result<UserRecord, SignUpError> {
        let result = self.try_sign_up(username, password).await;
        match &result {
            Ok(_) => info!(username, "user signed up"),
            Err(e @ SignUpError::Unavailable(_)) => {
                error!(username = ?logged(username), reason = %e, "sign-up failed")
            }
            Err(e) => info!(username = ?logged(username), reason = %e, "sign-up refused"),
        }
        result
    }

    /// [`Authenticator::sign_up`] without the logging.
    async fn try_sign_up(&self, username: &str, password: &str) -> Result<UserRecord, SignUpError> {
        let user = UserId::parse(username)?;
        password::check_policy(password)?;
        let hasher = self.hasher.clone();
        let password = password.to_owned();
        let password_hash = self
            .run_hashing(move || hasher.hash(&password))
            .await
            .map_err(SignUpError::Unavailable)?
            .map_err(|e| match e {
                HashError::Policy(e) => SignUpError::WeakPassword(e),
                HashError::Randomness => SignUpError::Unavailable(e.to_string()),
            })?;
        let created_at_ms = now_ms().map_err(SignUpError::Unavailable)?;
        let new_user = NewUser {
            username: user.as_str().to_owned(),
            password_hash,
            created_at_ms,
        };
        self.store.create_user(new_user).await.map_err(|e| match e {
            StoreError::AlreadyExists(_) => SignUpError::Conflict(user.as_str().to_owned()),
            other => SignUpError::Unavailable(other.to_string()),
        })
    }

    /// Checks a username and password presented from `peer` and issues an
    /// access token.
    ///
    /// # Errors
    ///
    /// [`LogInError::Throttled`] while the account or the address is in its
    /// backoff (the password is not checked), else [`LogInError::Refused`]
    /// with [`AuthError::BadCredentials`] for an unknown user or wrong
    /// password, [`AuthError::Disabled`] for a disabled account (only once the
    /// password is known to be right), [`AuthError::Unavailable`] if the store
    /// fails or too many hashes are waiting.
    pub async fn log_in(
        &self,
        username: &str,
        password: &str,
        peer: IpAddr,
    ) -> Result<IssuedToken, LogInError> {
        if let Some(throttle) = &self.throttle {
            if let Err(throttled) = throttle.check(username, peer) {
                self.defended(Defence::LoginThrottledHttp);
                warn!(username = ?logged(username), %peer, retry_after = ?throttled.retry_after,
                    "log-in refused: throttled");
                return Err(LogInError::Throttled {
                    retry_after: throttled.retry_after,
                });
            }
        }
        let result = async {
            let (user, record) = self.check_password(username, password, Some(peer)).await?;
            if record.disabled {
                return Err(Refusal::Disabled);
            }
            self.tokens
                .issue(&user)
                .map_err(|e| Refusal::Unavailable(format!("issuing a token: {e}")))
        }
        .await;
        result.map_err(|refusal| LogInError::Refused(refusal.log(username, "log-in")))
    }

    /// Authenticates MQTT CONNECT credentials.
    ///
    /// `password` is either the account password or an access token issued to
    /// `username`. Anything shaped like a token (three base64url segments) is
    /// verified as one; if it does not even parse as a token it is tried as a
    /// password. Either way the account must exist and be enabled, checked on
    /// every connect.
    ///
    /// # Errors
    ///
    /// As for [`Authenticator::log_in`]; a token that is expired, forged, or
    /// issued to another user is [`AuthError::BadCredentials`]. A password
    /// while the account or `peer`'s address is in its backoff is refused as
    /// [`AuthError::BadCredentials`] without being checked, after waiting out
    /// the backoff (at most `login.mqtt_refusal_delay_max_ms`). Tokens are
    /// not throttled: they cannot be guessed.
    pub async fn authenticate_mqtt(
        &self,
        username: &str,
        password: &str,
        peer: IpAddr,
    ) -> Result<UserId, AuthError> {
        let result = async {
            if token::looks_like_token(password) {
                if let Some(user) = self.check_token(username, password).await? {
                    return Ok(user);
                }
            }
            if let Some(throttle) = &self.throttle {
                if let Err(throttled) = throttle.check(username, peer) {
                    self.defended(Defence::LoginThrottledMqtt);
                    tokio::time::sleep(throttled.retry_after.min(self.mqtt_refusal_delay_max))
                        .await;
                    return Err(Refusal::BadCredentials(format!(
                        "throttled for {:?} more",
                        throttled.retry_after
                    )));
                }
            }
            let (user, record) = self.check_password(username, password, Some(peer)).await?;
            if record.disabled {
                return Err(Refusal::Disabled);
            }
            Ok(user)
        }
        .await;
        result.map_err(|refusal| refusal.log(username, "MQTT connect"))
    }

    /// Authenticates an HTTP request's `Authorization: Bearer` access token:
    /// the token's user, if the token is valid and the account exists and is
    /// enabled.
    ///
    /// # Errors
    ///
    /// [`AuthError::BadCredentials`] for a malformed, expired or forged token
    /// or an unknown user, [`AuthError::Disabled`], or
    /// [`AuthError::Unavailable`] if the account store failed.
    pub async fn authenticate_bearer(&self, presented: &str) -> Result<UserId, AuthError> {
        let result = async {
            let claims = self
                .tokens
                .verify(presented)
                .map_err(|e| Refusal::BadCredentials(e.to_string()))?;
            match self.check_token(&claims.sub, presented).await? {
                Some(user) => Ok(user),
                None => Err(Refusal::BadCredentials("not a token".into())),
            }
        }
        .await;
        result.map_err(|refusal| refusal.log("(bearer)", "HTTP request"))
    }

    /// Verifies an access token presented for `username` and loads the account.
    ///
    /// `Ok(None)` if `presented` does not parse as a token at all, so that it
    /// can be tried as a password instead.
    async fn check_token(
        &self,
        username: &str,
        presented: &str,
    ) -> Result<Option<UserId>, Refusal> {
        let claims = match self.tokens.verify(presented) {
            Ok(claims) => claims,
            Err(TokenError::Malformed(_)) => return Ok(None),
            Err(e) => return Err(Refusal::BadCredentials(e.to_string())),
        };
        if claims.sub != username {
            return Err(Refusal::BadCredentials(format!(
                "token was issued to {:?}",
                logged(&claims.sub)
            )));
        }
        let user = UserId::parse(username)
            .map_err(|e| Refusal::BadCredentials(format!("invalid username: {e}")))?;
        match self.load(&user).await? {
            None => Err(Refusal::BadCredentials("token for an unknown user".into())),
            Some(record) if record.disabled => Err(Refusal::Disabled),
            Some(_) => Ok(Some(user)),
        }
    }

    /// Checks a password against the stored hash; the account may be
    /// disabled. Failures and successes from `peer` feed the throttle.
    async fn check_password(
        &self,
        username: &str,
        password: &str,
        peer: Option<IpAddr>,
    ) -> Result<(UserId, UserRecord), Refusal> {
        let result = self.verify_password(username, password).await;
        if let (Some(throttle), Some(peer)) = (&self.throttle, peer) {
            match &result {
                Ok((user, _)) => throttle.succeeded(user.as_str(), peer),
                Err(Refusal::BadCredentials(_)) => {
                    let valid_name = UserId::parse(username).is_ok();
                    if throttle.failed(username, peer, valid_name) == Outcome::TableFull {
                        self.defended(Defence::ThrottleTableFull);
                    }
                }
                Err(_) => {}
            }
        }
        result
    }

    /// [`Authenticator::check_password`] without the throttle.
    async fn verify_password(
        &self,
        username: &str,
        password: &str,
    ) -> Result<(UserId, UserRecord), Refusal> {
        // Names and passwords that no account can have are refused at once:
        // refusing them quickly reveals nothing about which accounts exist.
        let user = UserId::parse(username)
            .map_err(|e| Refusal::BadCredentials(format!("invalid username: {e}")))?;
        if password.len() > password::MAX_PASSWORD_LEN {
            return Err(Refusal::BadCredentials("password too long".into()));
        }
        let record = self.load(&user).await?;
        if let (Some(cache), Some(record)) = (&self.verified, &record) {
            if cache.check(user.as_str(), password, &record.password_hash) {
                return Ok((user, record.clone()));
            }
        }
        let stored = match &record {
            Some(record) => Arc::from(record.password_hash.as_str()),
            None => self.reference_hash.clone(),
        };
        let candidate = password.to_owned();
        let verdict = self
            .run_hashing(move || password::verify(&candidate, &stored))
            .await
            .map_err(Refusal::Unavailable)?;
        match (record, verdict) {
            (None, _) => Err(Refusal::BadCredentials("no such user".into())),
            (Some(_), Err(VerifyError::Mismatch)) => {
                Err(Refusal::BadCredentials("wrong password".into()))
            }
            (Some(_), Err(e @ VerifyError::Malformed(_))) => {
                Err(Refusal::Unavailable(e.to_string()))
            }
            (Some(record), Ok(())) => {
                if let Some(cache) = &self.verified {
                    cache.remember(user.as_str(), password, &record.password_hash);
                }
                Ok((user, record))
            }
        }
    }

    /// Loads an account, mapping store failures to [`Refusal::Unavailable`].
    async fn load(&self, user: &UserId) -> Result<Option<UserRecord>, Refusal> {
        self.store
            .get_user(user.as_str())
            .await
            .map_err(|e| Refusal::Unavailable(e.to_string()))
    }

    /// Runs a hashing job on the blocking pool, at most one per CPU at a
    /// time; refused at once when the most allowed are already running or waiting.
    async fn run_hashing<T, F>(&self, job: F) -> Result<T, String>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let pending = PendingHash::enter(&self.hashes_pending);
        if pending.count > self.max_pending_hashes {
            self.defended(Defence::HashingBusy);
            return Err("too many password checks are waiting; try again shortly".into());
        }
        let permit = self
            .hashing
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| "the hashing pool is closed".to_owned())?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            job()
        })
        .await
        .map_err(|e| format!("password hashing task failed: {e}"))
    }
}

/// One hash running or waiting, counted in `count` until dropped.
struct PendingHash {
    counter: Arc<AtomicUsize>,
    /// Hashes running or waiting, this one included.
    count: usize,
}

impl PendingHash {
    fn enter(counter: &Arc<AtomicUsize>) -> PendingHash {
        let count = counter.fetch_add(1, Ordering::AcqRel) + 1;
        PendingHash {
            counter: counter.clone(),
            count,
        }
    }
}

impl Drop for PendingHash {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An authentication refusal with the detail that goes to the log only.
#[derive(Debug)]
enum Refusal {
    /// Refused as [`AuthError::BadCredentials`], for the logged reason.
    BadCredentials(String),
    /// Refused as [`AuthError::Disabled`].
    Disabled,
    /// Refused as [`AuthError::Unavailable`].
    Unavailable(String),
}

impl Refusal {
    /// Logs the refusal of `username`'s `attempt` and turns it into the public error.
    fn log(self, username: &str, attempt: &'static str) -> AuthError {
        let username = logged(username);
        match self {
            Refusal::BadCredentials(reason) => {
                warn!(?username, %reason, attempt, "authentication refused: bad credentials");
                AuthError::BadCredentials
            }
            Refusal::Disabled => {
                warn!(
                    ?username,
                    reason = "account disabled",
                    attempt,
                    "authentication refused"
                );
                AuthError::Disabled
            }
            Refusal::Unavailable(reason) => {
                error!(?username, %reason, attempt, "authentication failed");
                AuthError::Unavailable(reason)
            }
        }
    }
}

/// `name`, cut to at most [`LOGGED_NAME_MAX`] bytes for logging.
fn logged(name: &str) -> &str {
    if name.len() <= LOGGED_NAME_MAX {
        return name;
    }
    let mut end = LOGGED_NAME_MAX;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

/// The current time in milliseconds since the Unix epoch.
fn now_ms() -> Result<i64, String> {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_millis()).ok())
        .ok_or_else(|| "the system clock is out of range".to_owned())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use persistence::embedded::EmbeddedStore;

    use super::*;
    use crate::auth::password::PasswordPolicyError;

    const SECRET: &str = "unit-test-secret-unit-test-secret-0123";
    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    struct Fixture {
        auth: Authenticator,
        store: Arc<dyn MetadataStore>,
        _dir: tempfile::TempDir,
    }

    fn settings() -> AuthSettings {
        AuthSettings {
            jwt_secret: SECRET.into(),
            token_ttl: Duration::from_secs(600),
            pbkdf2_iterations: password::MIN_ITERATIONS,
            verified_cache_ttl: Duration::from_secs(60),
        }
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn MetadataStore> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let auth = Authenticator::new(store.clone(), settings()).unwrap();
        Fixture {
            auth,
            store,
            _dir: dir,
        }
    }

    #[tokio::test]
    async fn a_cached_password_stops_working_once_the_account_changes() {
        let f = fixture();
        f.auth.sign_up("dora", "dora password").await.unwrap();
        assert!(f
            .auth
            .authenticate_mqtt("dora", "dora password", LOCAL)
            .await
            .is_ok());
        assert!(
            f.auth
                .authenticate_mqtt("dora", "dora password", LOCAL)
                .await
                .is_ok(),
            "cache hit"
        );
        assert!(matches!(
            f.auth
                .authenticate_mqtt("dora", "wrong password", LOCAL)
                .await,
            Err(AuthError::BadCredentials)
        ));
        f.store.set_user_disabled("dora", true).await.unwrap();
        assert!(
            matches!(
                f.auth
                    .authenticate_mqtt("dora", "dora password", LOCAL)
                    .await,
                Err(AuthError::Disabled)
            ),
            "the cache never bypasses the account's current state"
        );
    }

    #[test]
    fn bad_settings_are_refused_at_construction() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn MetadataStore> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let weak = AuthSettings {
            pbkdf2_iterations: 99_999,
            ..settings()
        };
        assert!(matches!(
            Authenticator::new(store.clone(), weak),
            Err(AuthSetupError::Hasher(_))
        ));
        let short = AuthSettings {
            jwt_secret: String::new(),
            ..settings()
        };
        assert!(matches!(
            Authenticator::new(store, short),
            Err(AuthSetupError::Token(_))
        ));
    }

    #[tokio::test]
    async fn sign_up_stores_a_hash_never_the_password() {
        let f = fixture();
        let record = f.auth.sign_up("alice", "correct horse").await.unwrap();
        assert_eq!(record.username, "alice");
        assert!(!record.disabled);
        assert!(record.created_at_ms > 1_600_000_000_000);
        let stored = f.store.get_user("alice").await.unwrap().unwrap();
        assert!(stored.password_hash.starts_with("pbkdf2-sha256$100000$"));
        assert!(!stored.password_hash.contains("correct horse"));
        assert_eq!(
            password::verify("correct horse", &stored.password_hash),
            Ok(())
        );
    }

    #[tokio::test]
    async fn sign_up_refusals_are_typed() {
        let f = fixture();
        let id_error = UserId::parse("Alice").unwrap_err();
        assert_eq!(
            f.auth.sign_up("Alice", "correct horse").await.unwrap_err(),
            SignUpError::InvalidUsername(id_error)
        );
        assert_eq!(
            f.auth.sign_up("alice", "short").await.unwrap_err(),
            SignUpError::WeakPassword(PasswordPolicyError::TooShort { min: 8, len: 5 })
        );
        f.auth.sign_up("alice", "correct horse").await.unwrap();
        assert_eq!(
            f.auth
                .sign_up("alice", "another password")
                .await
                .unwrap_err(),
            SignUpError::Conflict("alice".into())
        );
        // The first password still works: the conflict changed nothing.
        assert!(f.auth.log_in("alice", "correct horse", LOCAL).await.is_ok());
    }

    #[tokio::test]
    async fn log_in_issues_a_token_for_the_right_password_only() {
        let f = fixture();
        f.auth.sign_up("alice", "correct horse").await.unwrap();
        let issued = f
            .auth
            .log_in("alice", "correct horse", LOCAL)
            .await
            .unwrap();
        let claims = f.auth.tokens.verify(&issued.token).unwrap();
        assert_eq!(claims.sub, "alice");
        assert_eq!(issued.expires_at, claims.iat + 600);

        for (user, pass) in [
            ("alice", "wrong horse"),
            ("alice", ""),
            ("nobody", "correct horse"),
            ("Not Valid", "correct horse"),
        ] {
            assert_eq!(
                f.auth.log_in(user, pass, LOCAL).await.unwrap_err(),
                AuthError::BadCredentials,
                "{user}/{pass}"
            );
        }
        let huge = "x".repeat(password::MAX_PASSWORD_LEN + 1);
        assert_eq!(
            f.auth.log_in("alice", &huge, LOCAL).await.unwrap_err(),
            AuthError::BadCredentials
        );
    }

    #[tokio::test]
    async fn disabled_accounts_are_refused_only_with_the_right_password() {
        let f = fixture();
        f.auth.sign_up("alice", "correct horse").await.unwrap();
        let token = f
            .auth
            .log_in("alice", "correct horse", LOCAL)
            .await
            .unwrap()
            .token;
        f.store.set_user_disabled("alice", true).await.unwrap();

        assert_eq!(
            f.auth
                .log_in("alice", "correct horse", LOCAL)
                .await
                .unwrap_err(),
            AuthError::Disabled
        );
        assert_eq!(
            f.auth
                .log_in("alice", "wrong horse", LOCAL)
                .await
                .unwrap_err(),
            AuthError::BadCredentials
        );
        assert_eq!(
            f.auth
                .authenticate_mqtt("alice", "correct horse", LOCAL)
                .await
                .unwrap_err(),
            AuthError::Disabled
        );
        assert_eq!(
            f.auth
                .authenticate_mqtt("alice", &token, LOCAL)
                .await
                .unwrap_err(),
            AuthError::Disabled
        );

        f.store.set_user_disabled("alice", false).await.unwrap();
        assert_eq!(
            f.auth
                .authenticate_mqtt("alice", &token, LOCAL)
                .await
                .unwrap()
                .as_str(),
            "alice"
        );
    }

    #[tokio::test]
    async fn mqtt_accepts_the_password_or_the_users_own_token() {
        let f = fixture();
        f.auth.sign_up("alice", "correct horse").await.unwrap();
        f.auth.sign_up("bob", "bob's password").await.unwrap();
        let alice_token = f
            .auth
            .log_in("alice", "correct horse", LOCAL)
            .await
            .unwrap()
            .token;

        let alice = f
            .auth
            .authenticate_mqtt("alice", "correct horse", LOCAL)
            .await
            .unwrap();
        assert_eq!(alice, UserId::parse("alice").unwrap());
        assert_eq!(
            f.auth
                .authenticate_mqtt("alice", &alice_token, LOCAL)
                .await
                .unwrap(),
            alice
        );

        // Another user's token, a forged one and one from another issuer are refused.
        assert_eq!(
            f.auth
                .authenticate_mqtt("bob", &alice_token, LOCAL)
                .await
                .unwrap_err(),
            AuthError::BadCredentials
        );
        let mut forged = alice_token.clone();
        let last = forged.pop().unwrap();
        forged.push(if last == 'A' { 'B' } else { 'A' });
        assert_eq!(
            f.auth
                .authenticate_mqtt("alice", &forged, LOCAL)
                .await
                .unwrap_err(),
            AuthError::BadCredentials
        );
        let other = TokenIssuer::new(&"o".repeat(32), Duration::from_secs(60)).unwrap();
        let foreign = other.issue(&alice).unwrap().token;
        assert_eq!(
            f.auth
                .authenticate_mqtt("alice", &foreign, LOCAL)
                .await
                .unwrap_err(),
            AuthError::BadCredentials
        );
        assert_eq!(
            f.auth
                .authenticate_mqtt("nobody", "whatever1", LOCAL)
                .await
                .unwrap_err(),
            AuthError::BadCredentials
        );
    }

    #[tokio::test]
    async fn token_for_a_user_that_does_not_exist_is_refused() {
        let f = fixture();
        let ghost = UserId::parse("ghost").unwrap();
        let token = f.auth.tokens.issue(&ghost).unwrap().token;
        assert_eq!(
            f.auth
                .authenticate_mqtt("ghost", &token, LOCAL)
                .await
                .unwrap_err(),
            AuthError::BadCredentials
        );
    }

    #[tokio::test]
    async fn dotted_password_that_is_not_a_token_still_works_over_mqtt() {
        let f = fixture();
        let dotted = "first.second.third";
        assert!(token::looks_like_token(dotted));
        f.auth.sign_up("dot", dotted).await.unwrap();
        assert_eq!(
            f.auth
                .authenticate_mqtt("dot", dotted, LOCAL)
                .await
                .unwrap()
                .as_str(),
            "dot"
        );
        assert_eq!(
            f.auth
                .authenticate_mqtt("dot", "first.second.fourth", LOCAL)
                .await
                .unwrap_err(),
            AuthError::BadCredentials
        );
    }

    #[tokio::test]
    async fn malformed_stored_hash_is_unavailable_not_a_panic() {
        let f = fixture();
        f.store
            .create_user(NewUser {
                username: "broken".into(),
                password_hash: "pbkdf2-sha256$oops".into(),
                created_at_ms: 0,
            })
            .await
            .unwrap();
        assert!(matches!(
            f.auth.log_in("broken", "any password", LOCAL).await,
            Err(LogInError::Refused(AuthError::Unavailable(_)))
        ));
    }

    #[test]
    fn long_names_are_cut_for_logs_on_char_boundaries() {
        assert_eq!(logged("alice"), "alice");
        let long = "é".repeat(40);
        let cut = logged(&long);
        assert!(cut.len() <= LOGGED_NAME_MAX && cut.len() >= LOGGED_NAME_MAX - 1);
        assert!(long.starts_with(cut));
    }
}
