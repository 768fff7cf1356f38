//! Signed access tokens: HS256 JSON Web Tokens that stand in for a password,
//! both on the HTTP API and as the MQTT CONNECT password.
//!
//! A token carries `sub` (the username), `iat` and `exp` (Unix seconds), a
//! random `jti` and `typ: "access"`. Expiry is checked with zero leeway: a
//! token is accepted up to and including its `exp` second and refused after.

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chat_core::ids::UserId;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

/// The shortest accepted signing secret, in bytes.
pub const MIN_SECRET_LEN: usize = 32;

/// The `typ` claim of an access token.
pub const ACCESS_TOKEN_TYPE: &str = "access";

/// Random bytes behind each token's `jti`.
const JTI_BYTES: usize = 16;

/// The claims inside an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The username the token was issued to.
    pub sub: String,
    /// Issue time, Unix seconds.
    pub iat: u64,
    /// Expiry time, Unix seconds; the token is refused after this second.
    pub exp: u64,
    /// A random identifier unique to this token.
    pub jti: String,
    /// The token type; [`ACCESS_TOKEN_TYPE`] for every token Parley accepts.
    pub typ: String,
}

/// A freshly issued access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// The encoded token, to be presented as a bearer credential.
    pub token: String,
    /// When it expires, Unix seconds.
    pub expires_at: u64,
}

/// Why a [`TokenIssuer`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenSetupError {
    /// The signing secret is shorter than [`MIN_SECRET_LEN`] bytes (or empty).
    #[error("the token signing secret is {len} bytes long; at least {min} bytes are required")]
    SecretTooShort {
        /// The length of the rejected secret, in bytes.
        len: usize,
        /// The smallest accepted length, in bytes.
        min: usize,
    },
    /// The token lifetime is zero.
    #[error("the access token lifetime must be at least one second")]
    ZeroTtl,
}

/// Why a token could not be issued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IssueError {
    /// The operating system did not supply random bytes for the `jti`.
    #[error("the system random number generator failed")]
    Randomness,
    /// The system clock is before the Unix epoch or too far in the future.
    #[error("the system clock is out of range")]
    Clock,
    /// The token could not be encoded or signed.
    #[error("signing the token failed: {0}")]
    Signing(String),
}

/// Why a presented token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The token was valid but its `exp` has passed.
    #[error("token has expired")]
    Expired,
    /// The signature does not match: the token was altered or signed with
    /// another key or algorithm.
    #[error("token signature is invalid")]
    BadSignature,
    /// The text is not a well-formed token with Parley's claims.
    #[error("token is malformed: {0}")]
    Malformed(String),
    /// The token is genuine but is not an access token.
    #[error("token type is {found:?}, expected {ACCESS_TOKEN_TYPE:?}")]
    WrongType {
        /// The `typ` the token carries.
        found: String,
    },
}

/// Issues and verifies access tokens with one HS256 secret.
pub struct TokenIssuer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
    rng: SystemRandom,
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl TokenIssuer {
    /// An issuer signing with `secret` and issuing tokens valid for `ttl`.
    ///
    /// # Errors
    ///
    /// [`TokenSetupError::SecretTooShort`] for a secret under
    /// [`MIN_SECRET_LEN`] bytes; [`TokenSetupError::ZeroTtl`] for a lifetime
    /// under one second.
    pub fn new(secret: &str, ttl: Duration) -> Result<TokenIssuer, TokenSetupError> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(TokenSetupError::SecretTooShort {
                len: secret.len(),
                min: MIN_SECRET_LEN,
            });
        }
        if ttl.as_secs() == 0 {
            return Err(TokenSetupError::ZeroTtl);
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.validate_exp = true;
        validation.required_spec_claims = HashSet::from(["exp", "iat", "sub"].map(str::to_owned));
        Ok(TokenIssuer {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
            ttl,
            rng: SystemRandom::new(),
        })
    }

    /// The lifetime of issued tokens.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Issues an access token for `user`, valid from now for the configured lifetime.
    ///
    /// # Errors
    ///
    /// See [`IssueError`]; none of them depends on the input.
    pub fn issue(&self, user: &UserId) -> Result<IssuedToken, IssueError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|_| IssueError::Clock)?
            .as_secs();
        self.issue_at(user, now)
    }

    /// Issues a token as if the time were `now` (Unix seconds).
    fn issue_at(&self, user: &UserId, now: u64) -> Result<IssuedToken, IssueError> {
        let exp = now
            .checked_add(self.ttl.as_secs())
            .ok_or(IssueError::Clock)?;
        let claims = Claims {
            sub: user.as_str().to_owned(),
            iat: now,
            exp,
            jti: self.random_jti()?,
            typ: ACCESS_TOKEN_TYPE.to_owned(),
        };
        let token = self.sign(&claims)?;
        Ok(IssuedToken {
            token,
            expires_at: exp,
        })
    }

    /// Signs arbitrary claims with this issuer's key.
    fn sign(&self, claims: &Claims) -> Result<String, IssueError> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .map_err(|e| IssueError::Signing(e.to_string()))
    }

    /// A fresh random token id, base64url.
    fn random_jti(&self) -> Result<String, IssueError> {
        let mut bytes = [0u8; JTI_BYTES];
        self.rng
            .fill(&mut bytes)
            .map_err(|_| IssueError::Randomness)?;
        Ok(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Verifies a presented token: signature, expiry and type.
    ///
    /// The caller still has to check that `sub` names the user it expects.
    ///
    /// # Errors
    ///
    /// One [`TokenError`] variant per kind of failure.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.into_kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm => {
                    TokenError::BadSignature
                }
                ErrorKind::MissingRequiredClaim(claim) => {
                    TokenError::Malformed(format!("missing claim {claim:?}"))
                }
                ErrorKind::Base64(_) => TokenError::Malformed("invalid base64".into()),
                ErrorKind::Json(e) => TokenError::Malformed(format!("invalid JSON: {e}")),
                ErrorKind::Utf8(_) => TokenError::Malformed("invalid UTF-8".into()),
                other => TokenError::Malformed(format!("{other:?}")),
            })?;
        let claims = data.claims;
        if claims.typ != ACCESS_TOKEN_TYPE {
            return Err(TokenError::WrongType { found: claims.typ });
        }
        Ok(claims)
    }
}

/// Whether `credential` has the shape of a token: three non-empty base64url
/// segments separated by dots. A password can have this shape too, so a
/// caller that gets [`TokenError::Malformed`] may still treat it as a password.
pub fn looks_like_token(credential: &str) -> bool {
    let mut segments = 0;
    for segment in credential.split('.') {
        segments += 1;
        let base64url = segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if segment.is_empty() || !base64url {
            return false;
        }
    }
    segments == 3
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn issuer() -> TokenIssuer {
        TokenIssuer::new(SECRET, Duration::from_secs(3600)).unwrap()
    }

    fn alice() -> UserId {
        UserId::parse("alice").unwrap()
    }

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    #[test]
    fn round_trip_carries_the_claims() {
        let issuer = issuer();
        let before = now();
        let issued = issuer.issue(&alice()).unwrap();
        let claims = issuer.verify(&issued.token).unwrap();
        assert_eq!(claims.sub, "alice");
        assert_eq!(claims.typ, ACCESS_TOKEN_TYPE);
        assert!(claims.iat >= before && claims.iat <= now());
        assert_eq!(claims.exp, claims.iat + 3600);
        assert_eq!(issued.expires_at, claims.exp);
        assert_eq!(
            URL_SAFE_NO_PAD.decode(&claims.jti).unwrap().len(),
            JTI_BYTES
        );
        assert!(looks_like_token(&issued.token));
    }

    #[test]
    fn every_token_gets_its_own_jti() {
        let issuer = issuer();
        let a = issuer
            .verify(&issuer.issue(&alice()).unwrap().token)
            .unwrap();
        let b = issuer
            .verify(&issuer.issue(&alice()).unwrap().token)
            .unwrap();
        assert_ne!(a.jti, b.jti);
    }

    #[test]
    fn expired_token_is_refused_with_zero_leeway() {
        let issuer = issuer();
        // Issued an hour and a second ago: expired one second ago.
        let stale = issuer.issue_at(&alice(), now() - 3601).unwrap();
        assert_eq!(issuer.verify(&stale.token), Err(TokenError::Expired));
        // Issued long enough ago to expire a minute from now: still fine.
        let fresh = issuer.issue_at(&alice(), now() - 3540).unwrap();
        assert!(issuer.verify(&fresh.token).is_ok());
    }

    #[test]
    fn token_signed_with_another_secret_is_refused() {
        let other = TokenIssuer::new(&"z".repeat(40), Duration::from_secs(3600)).unwrap();
        let token = other.issue(&alice()).unwrap().token;
        assert_eq!(issuer().verify(&token), Err(TokenError::BadSignature));
    }

    #[test]
    fn tampered_token_is_refused() {
        let issuer = issuer();
        let token = issuer.issue(&alice()).unwrap().token;
        let [header, payload, signature] = token.split('.').collect::<Vec<_>>()[..] else {
            panic!("three segments");
        };

        // Swap in a payload naming another user, keeping the signature.
        let mut claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        claims["sub"] = "mallory".into();
        let forged = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
        let tampered = format!("{header}.{forged}.{signature}");
        assert_eq!(issuer.verify(&tampered), Err(TokenError::BadSignature));

        // Flip a bit of the signature.
        let mut sig = URL_SAFE_NO_PAD.decode(signature).unwrap();
        sig[0] ^= 1;
        let tampered = format!("{header}.{payload}.{}", URL_SAFE_NO_PAD.encode(sig));
        assert_eq!(issuer.verify(&tampered), Err(TokenError::BadSignature));
    }

    #[test]
    fn unsigned_token_is_refused() {
        let issuer = issuer();
        let token = issuer.issue(&alice()).unwrap().token;
        let payload = token.split('.').nth(1).unwrap();
        let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let unsigned = format!("{none_header}.{payload}.");
        assert!(matches!(
            issuer.verify(&unsigned),
            Err(TokenError::Malformed(_) | TokenError::BadSignature)
        ));
        let hs512_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS512","typ":"JWT"}"#);
        let other_alg = format!("{hs512_header}.{payload}.AAAA");
        assert_eq!(issuer.verify(&other_alg), Err(TokenError::BadSignature));
    }

    #[test]
    fn token_of_another_type_is_refused() {
        let issuer = issuer();
        let claims = Claims {
            sub: "alice".into(),
            iat: now(),
            exp: now() + 60,
            jti: "x".into(),
            typ: "refresh".into(),
        };
        let token = issuer.sign(&claims).unwrap();
        assert_eq!(
            issuer.verify(&token),
            Err(TokenError::WrongType {
                found: "refresh".into()
            })
        );
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let issuer = issuer();
        for bad in ["", "not a token", "a.b.c", "abc.def", "....", "a.b.c.d"] {
            assert!(
                matches!(issuer.verify(bad), Err(TokenError::Malformed(_))),
                "{bad:?} gave {:?}",
                issuer.verify(bad)
            );
        }
        // Correctly signed, but without a subject.
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let body = URL_SAFE_NO_PAD.encode(format!(r#"{{"exp":{}}}"#, now() + 60));
        let signing_input = format!("{header}.{body}");
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(ring::hmac::sign(&key, signing_input.as_bytes()));
        assert!(matches!(
            issuer.verify(&format!("{signing_input}.{sig}")),
            Err(TokenError::Malformed(_))
        ));
    }

    #[test]
    fn short_secret_and_zero_ttl_are_refused() {
        let hour = Duration::from_secs(3600);
        assert_eq!(
            TokenIssuer::new("", hour).unwrap_err(),
            TokenSetupError::SecretTooShort { len: 0, min: 32 }
        );
        assert_eq!(
            TokenIssuer::new(&"s".repeat(31), hour).unwrap_err(),
            TokenSetupError::SecretTooShort { len: 31, min: 32 }
        );
        assert!(TokenIssuer::new(&"s".repeat(32), hour).is_ok());
        assert_eq!(
            TokenIssuer::new(SECRET, Duration::from_millis(999)).unwrap_err(),
            TokenSetupError::ZeroTtl
        );
    }

    #[test]
    fn token_shape_detection() {
        assert!(looks_like_token("eyJh.eyJz.c2ln"));
        assert!(looks_like_token("a-b_c.d.e"));
        assert!(!looks_like_token("correct horse"));
        assert!(!looks_like_token("a.b"));
        assert!(!looks_like_token("a.b.c.d"));
        assert!(!looks_like_token("a..c"));
        assert!(!looks_like_token("a.b.c="));
        assert!(!looks_like_token("a.b c.d"));
    }
}
