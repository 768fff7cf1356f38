//! [`SignUpPolicy`]: who may sign up (`[accounts] signup`), with which
//! invite, and how fast from one source address.
//!
//! Invite tokens are issued by the admin API (`POST /v1/admin/invites`) and
//! read `pinv1.<expires, Unix seconds>.<nonce, 32 hex digits>.<tag>`, the tag
//! an HMAC-SHA256 of the rest under a key derived from the token secret, so
//! every node sharing that secret accepts them and nothing has to be stored
//! to issue one. An invite makes one account: the node that redeems it
//! remembers the nonce until the invite expires (another node of a cluster
//! does not know it was used; keep `invite_ttl_secs` short there).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use crate::address_key::limit_key;
use crate::config::{AccountsConfig, SignUpMode};
use crate::limits::KeyedLimiter;

/// The prefix of every invite token.
const PREFIX: &str = "pinv1";

/// Most used invites remembered; past it, expired ones are forgotten, then
/// new redemptions are refused until some expire.
const MAX_USED: usize = 100_000;

/// Why a sign-up was refused by the policy (before any account check).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignUpRefusal {
    /// `accounts.signup = "closed"`.
    #[error("sign-up is closed")]
    Closed,
    /// `accounts.signup = "invite"` and the invite is missing, forged,
    /// expired or used.
    #[error("a valid invite is required: {0}")]
    InviteRequired(&'static str),
    /// Over the per-address sign-up rate.
    #[error("too many sign-ups from this address")]
    RateLimited {
        /// When a sign-up from this address will be accepted again, roughly.
        retry_after: Duration,
    },
}

/// An invite token and when it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invite {
    /// The token to hand to the invitee.
    pub token: String,
    /// Expiry, Unix seconds.
    pub expires_at: u64,
}

/// A reserved invite: dropped without [`Reservation::consume`], the invite
/// can be used again (the sign-up failed).
#[must_use]
pub struct Reservation<'a> {
    policy: &'a SignUpPolicy,
    nonce: Option<String>,
}

impl Reservation<'_> {
    /// Marks the invite used for good.
    pub fn consume(mut self) {
        self.nonce = None;
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if let Some(nonce) = self.nonce.take() {
            self.policy.used().remove(&nonce);
        }
    }
}

/// The sign-up policy of a node.
pub struct SignUpPolicy {
    mode: SignUpMode,
    rate: Option<(KeyedLimiter<IpAddr>, Duration)>,
    key: hmac::Key,
    ttl: Duration,
    used: Mutex<HashMap<String, u64>>,
}

impl std::fmt::Debug for SignUpPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignUpPolicy")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl Default for SignUpPolicy {
    /// Open sign-up without a rate (as before `[accounts]` existed), invites
    /// under a random key.
    fn default() -> Self {
        let mut secret = [0u8; 32];
        SystemRandom::new().fill(&mut secret).ok();
        SignUpPolicy::build(
            &AccountsConfig {
                signups_per_hour_per_address: 0.0,
                ..AccountsConfig::default()
            },
            &secret,
        )
    }
}

impl SignUpPolicy {
    /// The policy `config` describes; invites are signed with a key derived
    /// from `token_secret` (the access token secret).
    pub fn new(config: &AccountsConfig, token_secret: &str) -> SignUpPolicy {
        SignUpPolicy::build(config, token_secret.as_bytes())
    }

    fn build(config: &AccountsConfig, secret: &[u8]) -> SignUpPolicy {
        let derived = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, secret),
            b"parley invite key v1",
        );
        let per_sec = config.signups_per_hour_per_address / 3600.0;
        SignUpPolicy {
            mode: config.signup,
            rate: KeyedLimiter::new(per_sec, config.signup_burst_per_address)
                .map(|limiter| (limiter, Duration::from_secs_f64((1.0 / per_sec).ceil()))),
            key: hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()),
            ttl: Duration::from_secs(config.invite_ttl_secs),
            used: Mutex::new(HashMap::new()),
        }
    }

    /// The configured mode.
    pub fn mode(&self) -> SignUpMode {
        self.mode
    }

    fn used(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.used.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Issues a new invite token.
    pub fn issue_invite(&self) -> Invite {
        let mut nonce = [0u8; 16];
        SystemRandom::new().fill(&mut nonce).ok();
        let nonce = crate::hex::encode(&nonce);
        let expires_at = now_secs().saturating_add(self.ttl.as_secs());
        let body = format!("{PREFIX}.{expires_at}.{nonce}");
        let tag = hmac::sign(&self.key, body.as_bytes());
        let tag = crate::hex::encode(tag.as_ref());
        Invite {
            token: format!("{body}.{tag}"),
            expires_at,
        }
    }

    /// Checks whether a sign-up from `peer` with `invite` may go ahead, and
    /// reserves the invite; the caller consumes the reservation once the
    /// account exists.
    pub fn admit(
        &self,
        peer: IpAddr,
        invite: Option<&str>,
    ) -> Result<Reservation<'_>, SignUpRefusal> {
        let nonce = match self.mode {
            SignUpMode::Closed => return Err(SignUpRefusal::Closed),
            SignUpMode::Open => None,
            SignUpMode::Invite => Some(
                invite
                    .ok_or(SignUpRefusal::InviteRequired("no invite"))
                    .and_then(|invite| self.verify(invite))?,
            ),
        };
        if let Some((limiter, retry_after)) = &self.rate {
            if !limiter.allow(&limit_key(peer)) {
                return Err(SignUpRefusal::RateLimited {
                    retry_after: *retry_after,
                });
            }
        }
        if let Some((nonce, expires_at)) = nonce {
            let now = now_secs();
            let mut used = self.used();
            if used.contains_key(&nonce) {
                return Err(SignUpRefusal::InviteRequired("invite already used"));
            }
            if used.len() >= MAX_USED {
                used.retain(|_, expires| *expires > now);
                if used.len() >= MAX_USED {
                    return Err(SignUpRefusal::InviteRequired("too many invites in use"));
                }
            }
            used.insert(nonce.clone(), expires_at);
            return Ok(Reservation {
                policy: self,
                nonce: Some(nonce),
            });
        }
        Ok(Reservation {
            policy: self,
            nonce: None,
        })
    }

    /// The nonce and expiry of a well-formed, authentic, unexpired invite.
    fn verify(&self, invite: &str) -> Result<(String, u64), SignUpRefusal> {
        let forged = SignUpRefusal::InviteRequired("not a valid invite");
        let (body, tag) = invite.rsplit_once('.').ok_or(forged.clone())?;
        let mut parts = body.split('.');
        let (Some(PREFIX), Some(expires), Some(nonce), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(forged);
        };
        let tag = decode_hex(tag).ok_or(forged.clone())?;
        hmac::verify(&self.key, body.as_bytes(), &tag).map_err(|_| forged.clone())?;
        let expires_at: u64 = expires.parse().map_err(|_| forged)?;
        if expires_at <= now_secs() {
            return Err(SignUpRefusal::InviteRequired("invite expired"));
        }
        Ok((nonce.to_owned(), expires_at))
    }
}

/// The bytes of lowercase or uppercase hex text; `None` if it is not hex.
fn decode_hex(text: &str) -> Option<Vec<u8>> {
    text.as_bytes()
        .chunks(2)
        .map(|pair| match pair {
            [high, low] => Some((hex_digit(*high)? << 4) | hex_digit(*low)?),
            _ => None,
        })
        .collect()
}

fn hex_digit(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));

    fn policy(mode: SignUpMode, per_hour: f64, burst: u32) -> SignUpPolicy {
        SignUpPolicy::new(
            &AccountsConfig {
                signup: mode,
                signups_per_hour_per_address: per_hour,
                signup_burst_per_address: burst,
                ..AccountsConfig::default()
            },
            "a token secret of at least 32 bytes!",
        )
    }

    #[test]
    fn invites_make_one_account_each_and_cannot_be_forged() {
        let p = policy(SignUpMode::Invite, 0.0, 1);
        assert_eq!(
            p.admit(PEER, None).err(),
            Some(SignUpRefusal::InviteRequired("no invite"))
        );
        let invite = p.issue_invite();
        let mut forged = invite.token.clone();
        forged.replace_range(6..7, if &forged[6..7] == "9" { "8" } else { "9" });
        assert!(p.admit(PEER, Some(&forged)).is_err(), "{forged}");
        let other = policy(SignUpMode::Invite, 0.0, 1).issue_invite();
        assert!(
            p.admit(PEER, Some(&other.token)).is_ok(),
            "same secret: accepted"
        );
        let failed = p.admit(PEER, Some(&invite.token)).unwrap();
        drop(failed);
        p.admit(PEER, Some(&invite.token)).unwrap().consume();
        assert_eq!(
            p.admit(PEER, Some(&invite.token)).err(),
            Some(SignUpRefusal::InviteRequired("invite already used"))
        );
    }

    #[test]
    fn closed_refuses_and_open_is_rate_limited_per_address() {
        let closed = policy(SignUpMode::Closed, 0.0, 1);
        assert_eq!(closed.admit(PEER, None).err(), Some(SignUpRefusal::Closed));
        let open = policy(SignUpMode::Open, 3.6, 2);
        open.admit(PEER, None).unwrap().consume();
        open.admit(PEER, None).unwrap().consume();
        assert_eq!(
            open.admit(PEER, None).err(),
            Some(SignUpRefusal::RateLimited {
                retry_after: Duration::from_secs(1000)
            })
        );
        assert!(open.admit([192, 0, 2, 2].into(), None).is_ok());
    }
}
