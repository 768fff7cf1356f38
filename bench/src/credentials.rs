//! Who each bench connection logs in as, and creating those accounts first.
//!
//! A run uses no credentials, one shared username, or one username per
//! connection (`{prefix}{i}`). With a sign-up URL (Parley's account API,
//! `POST {url}/v1/users` with `{"username","password"}`), the bench creates
//! the users before connecting; 201 (created) and 409 (already taken) both
//! count as ready. [`sign_up_or_log_in`] also checks each existing account's
//! password with a log-in (`POST {url}/v1/tokens`), so a stale account fails
//! up front rather than as N refused connections.

use futures::stream::{self, StreamExt};
use reqwest::StatusCode;

use crate::cli::CredentialArgs;

/// A username and password for MQTT CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    /// The username.
    pub username: String,
    /// The password (may be empty).
    pub password: String,
}

/// How connections authenticate.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Credentials {
    /// No username or password.
    #[default]
    Anonymous,
    /// Every connection uses the same login.
    Shared(Login),
    /// Connection `i` logs in as `{prefix}{i}` with a common password.
    PerClient {
        /// Username prefix.
        prefix: String,
        /// Password of every user.
        password: String,
    },
}

/// Credential flags that don't make sense together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// `--password` without a username to go with it.
    #[error("--password needs --username or --user-prefix")]
    PasswordWithoutUser,
    /// `--signup-url` without users to sign up.
    #[error("--signup-url needs --username or --user-prefix")]
    SignupWithoutUsers,
    /// `--signup-url` without a password for the new accounts.
    #[error("--signup-url needs --password")]
    SignupWithoutPassword,
    /// The sign-up URL is not an http(s) URL.
    #[error("--signup-url {0:?} must start with http:// or https://")]
    BadSignupUrl(String),
}

impl Credentials {
    /// Validates the credential flags; returns the credentials and the sign-up
    /// endpoint (if any).
    pub fn from_args(
        args: &CredentialArgs,
    ) -> Result<(Credentials, Option<SignupUrl>), CredentialError> {
        let password = args.password.clone().unwrap_or_default();
        let creds = match (&args.username, &args.user_prefix) {
            (Some(username), _) => Credentials::Shared(Login {
                username: username.clone(),
                password,
            }),
            (None, Some(prefix)) => Credentials::PerClient {
                prefix: prefix.clone(),
                password,
            },
            (None, None) if args.password.is_some() => {
                return Err(CredentialError::PasswordWithoutUser)
            }
            (None, None) => Credentials::Anonymous,
        };
        let signup = match &args.signup_url {
            None => None,
            Some(_) if creds == Credentials::Anonymous => {
                return Err(CredentialError::SignupWithoutUsers)
            }
            Some(_) if args.password.as_deref().unwrap_or("").is_empty() => {
                return Err(CredentialError::SignupWithoutPassword)
            }
            Some(url) => Some(SignupUrl::parse(url)?),
        };
        Ok((creds, signup))
    }

    /// The login of connection number `index`.
    pub fn login(&self, index: usize) -> Option<Login> {
        match self {
            Credentials::Anonymous => None,
            Credentials::Shared(login) => Some(login.clone()),
            Credentials::PerClient { prefix, password } => Some(Login {
                username: format!("{prefix}{index}"),
                password: password.clone(),
            }),
        }
    }

    /// The distinct logins that `connections` connections use.
    pub fn logins(&self, connections: usize) -> Vec<Login> {
        match self {
            Credentials::Anonymous => Vec::new(),
            Credentials::Shared(login) => vec![login.clone()],
            Credentials::PerClient { .. } => {
                (0..connections).filter_map(|i| self.login(i)).collect()
            }
        }
    }
}

/// The account-creation endpoint, `{base}/v1/users`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignupUrl(String);

impl SignupUrl {
    /// Accepts a base URL (`http://127.0.0.1:8080`) or the full endpoint.
    pub fn parse(url: &str) -> Result<SignupUrl, CredentialError> {
        let url = url.trim().trim_end_matches('/');
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(CredentialError::BadSignupUrl(url.to_string()));
        }
        if url.ends_with("/v1/users") {
            Ok(SignupUrl(url.to_string()))
        } else {
            Ok(SignupUrl(format!("{url}/v1/users")))
        }
    }

    /// The endpoint users are POSTed to.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The log-in endpoint next to it, `{base}/v1/tokens`.
    pub fn tokens_url(&self) -> String {
        let base = self.0.strip_suffix("/v1/users").unwrap_or(&self.0);
        format!("{base}/v1/tokens")
    }
}

/// What a sign-up pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SignupSummary {
    /// Accounts created (201).
    pub created: usize,
    /// Accounts that already existed (409).
    pub existing: usize,
}

/// Signing up a user failed.
#[derive(Debug, thiserror::Error)]
pub enum SignupError {
    /// The HTTP request itself failed.
    #[error("sign-up of {username:?} at {url}: {source}")]
    Request {
        /// The user being created.
        username: String,
        /// The endpoint.
        url: String,
        /// What went wrong.
        source: reqwest::Error,
    },
    /// The server answered something other than 201 or 409.
    #[error("sign-up of {username:?}: HTTP {status}: {body}")]
    Rejected {
        /// The user being created.
        username: String,
        /// The HTTP status.
        status: StatusCode,
        /// The response body, for the reason.
        body: String,
    },
}

/// Concurrent sign-up requests in flight.
const SIGNUP_CONCURRENCY: usize = 16;

/// Creates every login at `url`; users that already exist are fine.
pub async fn sign_up(url: &SignupUrl, logins: &[Login]) -> Result<SignupSummary, SignupError> {
    sign_up_all(url, logins, false).await
}

/// Creates every login at `url`; for users that already exist, logs in to
/// check the password (an error if it does not match).
pub async fn sign_up_or_log_in(
    url: &SignupUrl,
    logins: &[Login],
) -> Result<SignupSummary, SignupError> {
    sign_up_all(url, logins, true).await
}

async fn sign_up_all(
    url: &SignupUrl,
    logins: &[Login],
    check_existing: bool,
) -> Result<SignupSummary, SignupError> {
    let http = reqwest::Client::new();
    let mut results = stream::iter(logins)
        .map(|login| async {
            let status = sign_up_one(&http, url, login).await?;
            if check_existing && status == StatusCode::CONFLICT {
                log_in_one(&http, url, login).await?;
            }
            Ok::<_, SignupError>(status)
        })
        .buffer_unordered(SIGNUP_CONCURRENCY);
    let mut summary = SignupSummary::default();
    while let Some(result) = results.next().await {
        match result? {
            StatusCode::CREATED => summary.created += 1,
            _ => summary.existing += 1,
        }
    }
    Ok(summary)
}

/// Logs in as an existing user; anything but 200 is an error.
async fn log_in_one(
    http: &reqwest::Client,
    url: &SignupUrl,
    login: &Login,
) -> Result<(), SignupError> {
    let tokens = url.tokens_url();
    let body = serde_json::json!({ "username": login.username, "password": login.password });
    let response = http
        .post(&tokens)
        .json(&body)
        .send()
        .await
        .map_err(|source| SignupError::Request {
            username: login.username.clone(),
            url: tokens.clone(),
            source,
        })?;
    let status = response.status();
    if status == StatusCode::OK {
        return Ok(());
    }
    let mut body = response.text().await.unwrap_or_default();
    if status == StatusCode::UNAUTHORIZED {
        body = format!("the user exists with another password ({body})");
    }
    Err(SignupError::Rejected {
        username: login.username.clone(),
        status,
        body,
    })
}

async fn sign_up_one(
    http: &reqwest::Client,
    url: &SignupUrl,
    login: &Login,
) -> Result<StatusCode, SignupError> {
    let body = serde_json::json!({ "username": login.username, "password": login.password });
    let request_error = |source| SignupError::Request {
        username: login.username.clone(),
        url: url.as_str().to_string(),
        source,
    };
    let response = http
        .post(url.as_str())
        .json(&body)
        .send()
        .await
        .map_err(request_error)?;
    let status = response.status();
    if status == StatusCode::CREATED || status == StatusCode::CONFLICT {
        return Ok(status);
    }
    let body = response.text().await.unwrap_or_default();
    Err(SignupError::Rejected {
        username: login.username.clone(),
        status,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(
        username: Option<&str>,
        password: Option<&str>,
        prefix: Option<&str>,
        signup: Option<&str>,
    ) -> CredentialArgs {
        CredentialArgs {
            username: username.map(Into::into),
            password: password.map(Into::into),
            user_prefix: prefix.map(Into::into),
            signup_url: signup.map(Into::into),
        }
    }

    #[test]
    fn per_client_users_are_numbered() {
        let (creds, signup) =
            Credentials::from_args(&args(None, Some("pw"), Some("load-"), None)).unwrap();
        assert_eq!(signup, None);
        assert_eq!(
            creds.login(3),
            Some(Login {
                username: "load-3".into(),
                password: "pw".into()
            })
        );
        let names: Vec<_> = creds.logins(3).into_iter().map(|l| l.username).collect();
        assert_eq!(names, ["load-0", "load-1", "load-2"]);
    }

    #[test]
    fn shared_and_anonymous_logins() {
        let (shared, _) =
            Credentials::from_args(&args(Some("alice"), Some("s3cret"), None, None)).unwrap();
        assert_eq!(shared.login(0), shared.login(99));
        assert_eq!(shared.logins(10).len(), 1);
        let (anon, _) = Credentials::from_args(&args(None, None, None, None)).unwrap();
        assert_eq!(anon.login(0), None);
        assert!(anon.logins(10).is_empty());
    }

    #[test]
    fn rejects_inconsistent_flags() {
        assert_eq!(
            Credentials::from_args(&args(None, Some("pw"), None, None)),
            Err(CredentialError::PasswordWithoutUser)
        );
        assert_eq!(
            Credentials::from_args(&args(None, None, None, Some("http://x"))),
            Err(CredentialError::SignupWithoutUsers)
        );
        assert_eq!(
            Credentials::from_args(&args(None, None, Some("u"), Some("http://x"))),
            Err(CredentialError::SignupWithoutPassword)
        );
        assert_eq!(
            Credentials::from_args(&args(Some("a"), Some("pw"), None, Some("127.0.0.1:8080"))),
            Err(CredentialError::BadSignupUrl("127.0.0.1:8080".into()))
        );
    }

    #[test]
    fn signup_url_gets_the_users_path_once() {
        assert_eq!(
            SignupUrl::parse("http://127.0.0.1:8080/").unwrap().as_str(),
            "http://127.0.0.1:8080/v1/users"
        );
        assert_eq!(
            SignupUrl::parse("http://127.0.0.1:8080/v1/users")
                .unwrap()
                .as_str(),
            "http://127.0.0.1:8080/v1/users"
        );
        assert_eq!(
            SignupUrl::parse("http://127.0.0.1:8080")
                .unwrap()
                .tokens_url(),
            "http://127.0.0.1:8080/v1/tokens"
        );
    }
}
