//! Password hashing and verification: PBKDF2-HMAC-SHA256 with a random
//! per-user salt, stored in a self-describing text encoding.
//!
//! A stored hash reads `pbkdf2-sha256$<iterations>$<salt>$<hash>`, with salt
//! and hash in unpadded standard base64. Because the iteration count travels
//! with each hash, the configured count can be raised later and hashes made
//! under an older count still verify.
//!
//! Hashing is deliberately slow (tens of milliseconds): async callers must run
//! [`PasswordHasher::hash`] and [`verify`] on a blocking thread
//! (`tokio::task::spawn_blocking`).

use std::num::NonZeroU32;

use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine;
use ring::pbkdf2;
use ring::rand::{SecureRandom, SystemRandom};

/// The scheme tag that opens every encoded hash.
pub const SCHEME: &str = "pbkdf2-sha256";

/// The fewest PBKDF2 iterations accepted, for new hashes and stored ones alike.
pub const MIN_ITERATIONS: u32 = 100_000;

/// The most PBKDF2 iterations a stored hash may ask for; a damaged record must
/// not be able to pin a CPU for minutes.
pub const MAX_ITERATIONS: u32 = 10_000_000;

/// Length of the random salt, in bytes.
pub const SALT_LEN: usize = 16;

/// Length of the derived hash, in bytes.
pub const HASH_LEN: usize = 32;

/// Shortest accepted password, in bytes.
pub const MIN_PASSWORD_LEN: usize = 8;

/// Longest accepted password, in bytes.
pub const MAX_PASSWORD_LEN: usize = 1024;

/// The PBKDF2 variant used throughout.
static ALGORITHM: pbkdf2::Algorithm = pbkdf2::PBKDF2_HMAC_SHA256;

/// Why a new password is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordPolicyError {
    /// The password is shorter than [`MIN_PASSWORD_LEN`].
    #[error("password is {len} bytes long; at least {min} bytes are required")]
    TooShort {
        /// The smallest accepted length, in bytes.
        min: usize,
        /// The length of the rejected password, in bytes.
        len: usize,
    },
    /// The password is longer than [`MAX_PASSWORD_LEN`].
    #[error("password is {len} bytes long; at most {max} bytes are allowed")]
    TooLong {
        /// The largest accepted length, in bytes.
        max: usize,
        /// The length of the rejected password, in bytes.
        len: usize,
    },
}

/// Why a [`PasswordHasher`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HasherSetupError {
    /// The iteration count is outside [`MIN_ITERATIONS`]..=[`MAX_ITERATIONS`].
    #[error("{given} PBKDF2 iterations requested; between {min} and {max} are accepted")]
    Iterations {
        /// The requested count.
        given: u32,
        /// The smallest accepted count.
        min: u32,
        /// The largest accepted count.
        max: u32,
    },
}

/// Why a password could not be hashed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    /// The password breaks the password policy.
    #[error(transparent)]
    Policy(#[from] PasswordPolicyError),
    /// The operating system did not supply random bytes for the salt.
    #[error("the system random number generator failed")]
    Randomness,
}

/// Why a stored hash could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MalformedHash {
    /// The text does not have the four `$`-separated fields.
    #[error("expected 4 '$'-separated fields, found {0}")]
    FieldCount(usize),
    /// The scheme tag is not [`SCHEME`].
    #[error("unknown hash scheme {0:?}")]
    Scheme(String),
    /// The iteration field is not a number in the accepted range.
    #[error("iteration count {0:?} is not a number between {MIN_ITERATIONS} and {MAX_ITERATIONS}")]
    Iterations(String),
    /// The salt is not base64 of [`SALT_LEN`] bytes.
    #[error("salt is not base64 of {SALT_LEN} bytes")]
    Salt,
    /// The hash is not base64 of [`HASH_LEN`] bytes.
    #[error("hash is not base64 of {HASH_LEN} bytes")]
    Hash,
}

/// Why a password did not verify against a stored hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The password is not the one the hash was made from.
    #[error("password does not match")]
    Mismatch,
    /// The stored hash could not be decoded.
    #[error("stored password hash is malformed: {0}")]
    Malformed(#[from] MalformedHash),
}

/// Checks a new password against Parley's password policy
/// ([`MIN_PASSWORD_LEN`]..=[`MAX_PASSWORD_LEN`] bytes).
pub fn check_policy(password: &str) -> Result<(), PasswordPolicyError> {
    let len = password.len();
    if len < MIN_PASSWORD_LEN {
        Err(PasswordPolicyError::TooShort {
            min: MIN_PASSWORD_LEN,
            len,
        })
    } else if len > MAX_PASSWORD_LEN {
        Err(PasswordPolicyError::TooLong {
            max: MAX_PASSWORD_LEN,
            len,
        })
    } else {
        Ok(())
    }
}

/// Makes new password hashes with a fixed iteration count.
#[derive(Debug)]
pub struct PasswordHasher {
    iterations: NonZeroU32,
    rng: SystemRandom,
}

impl PasswordHasher {
    /// A hasher using `iterations` PBKDF2 rounds for new hashes.
    ///
    /// # Errors
    ///
    /// [`HasherSetupError::Iterations`] if `iterations` is below
    /// [`MIN_ITERATIONS`] or above [`MAX_ITERATIONS`].
    pub fn new(iterations: u32) -> Result<PasswordHasher, HasherSetupError> {
        let iterations = NonZeroU32::new(iterations)
            .filter(|n| (MIN_ITERATIONS..=MAX_ITERATIONS).contains(&n.get()))
            .ok_or(HasherSetupError::Iterations {
                given: iterations,
                min: MIN_ITERATIONS,
                max: MAX_ITERATIONS,
            })?;
        Ok(PasswordHasher {
            iterations,
            rng: SystemRandom::new(),
        })
    }

    /// The iteration count used for new hashes.
    pub fn iterations(&self) -> u32 {
        self.iterations.get()
    }

    /// Hashes a new password under a fresh random salt, after checking it
    /// against the password policy. Slow: run it on a blocking thread.
    ///
    /// # Errors
    ///
    /// [`HashError::Policy`] if the password breaks the policy;
    /// [`HashError::Randomness`] if no salt could be drawn.
    pub fn hash(&self, password: &str) -> Result<String, HashError> {
        check_policy(password)?;
        let mut salt = [0u8; SALT_LEN];
        self.rng
            .fill(&mut salt)
            .map_err(|_| HashError::Randomness)?;
        let mut hash = [0u8; HASH_LEN];
        pbkdf2::derive(
            ALGORITHM,
            self.iterations,
            &salt,
            password.as_bytes(),
            &mut hash,
        );
        Ok(format!(
            "{SCHEME}${}${}${}",
            self.iterations,
            STANDARD_NO_PAD.encode(salt),
            STANDARD_NO_PAD.encode(hash)
        ))
    }
}

/// Checks `password` against an encoded hash in constant time (with respect
/// to the password). Slow: run it on a blocking thread.
///
/// # Errors
///
/// [`VerifyError::Mismatch`] if the password is wrong;
/// [`VerifyError::Malformed`] if `encoded` cannot be decoded.
pub fn verify(password: &str, encoded: &str) -> Result<(), VerifyError> {
    let parsed = ParsedHash::decode(encoded)?;
    pbkdf2::verify(
        ALGORITHM,
        parsed.iterations,
        &parsed.salt,
        password.as_bytes(),
        &parsed.hash,
    )
    .map_err(|_| VerifyError::Mismatch)
}

/// The fields of a decoded hash.
struct ParsedHash {
    iterations: NonZeroU32,
    salt: [u8; SALT_LEN],
    hash: [u8; HASH_LEN],
}

impl ParsedHash {
    /// Decodes `pbkdf2-sha256$<iterations>$<salt>$<hash>`.
    fn decode(encoded: &str) -> Result<ParsedHash, MalformedHash> {
        let fields: Vec<&str> = encoded.split('$').collect();
        let [scheme, iterations, salt, hash] = fields[..] else {
            return Err(MalformedHash::FieldCount(fields.len()));
        };
        if scheme != SCHEME {
            return Err(MalformedHash::Scheme(scheme.to_owned()));
        }
        let iterations = iterations
            .parse::<u32>()
            .ok()
            .filter(|n| (MIN_ITERATIONS..=MAX_ITERATIONS).contains(n))
            .and_then(NonZeroU32::new)
            .ok_or_else(|| MalformedHash::Iterations(iterations.to_owned()))?;
        Ok(ParsedHash {
            iterations,
            salt: decode_fixed(salt).ok_or(MalformedHash::Salt)?,
            hash: decode_fixed(hash).ok_or(MalformedHash::Hash)?,
        })
    }
}

/// Decodes unpadded base64 into exactly `N` bytes.
fn decode_fixed<const N: usize>(text: &str) -> Option<[u8; N]> {
    STANDARD_NO_PAD.decode(text).ok()?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hasher() -> PasswordHasher {
        PasswordHasher::new(MIN_ITERATIONS).expect("minimum iterations are accepted")
    }

    /// Replaces field `index` of an encoded hash.
    fn with_field(encoded: &str, index: usize, value: &str) -> String {
        let mut fields: Vec<&str> = encoded.split('$').collect();
        fields[index] = value;
        fields.join("$")
    }

    #[test]
    fn round_trip_verifies_and_is_self_describing() {
        let encoded = hasher().hash("correct horse battery").unwrap();
        let fields: Vec<&str> = encoded.split('$').collect();
        assert_eq!(fields.len(), 4);
        assert_eq!(fields[0], SCHEME);
        assert_eq!(fields[1], MIN_ITERATIONS.to_string());
        assert_eq!(STANDARD_NO_PAD.decode(fields[2]).unwrap().len(), SALT_LEN);
        assert_eq!(STANDARD_NO_PAD.decode(fields[3]).unwrap().len(), HASH_LEN);
        assert_eq!(verify("correct horse battery", &encoded), Ok(()));
    }

    #[test]
    fn wrong_password_is_a_mismatch() {
        let encoded = hasher().hash("correct horse battery").unwrap();
        assert_eq!(
            verify("correct horse batterz", &encoded),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(verify("", &encoded), Err(VerifyError::Mismatch));
    }

    #[test]
    fn same_password_gets_a_fresh_salt_each_time() {
        let h = hasher();
        let a = h.hash("same password").unwrap();
        let b = h.hash("same password").unwrap();
        assert_ne!(a, b);
        assert_eq!(verify("same password", &a), Ok(()));
        assert_eq!(verify("same password", &b), Ok(()));
    }

    #[test]
    fn hashes_made_with_other_iteration_counts_still_verify() {
        let old = PasswordHasher::new(MIN_ITERATIONS).unwrap();
        let new = PasswordHasher::new(MIN_ITERATIONS + 50_000).unwrap();
        let old_hash = old.hash("long lived password").unwrap();
        let new_hash = new.hash("long lived password").unwrap();
        assert!(new_hash.starts_with("pbkdf2-sha256$150000$"));
        assert_eq!(verify("long lived password", &old_hash), Ok(()));
        assert_eq!(verify("long lived password", &new_hash), Ok(()));
    }

    #[test]
    fn tampered_hash_or_salt_or_iterations_do_not_verify() {
        let encoded = hasher().hash("correct horse battery").unwrap();
        let fields: Vec<&str> = encoded.split('$').collect();

        let mut hash = STANDARD_NO_PAD.decode(fields[3]).unwrap();
        hash[0] ^= 1;
        let tampered = with_field(&encoded, 3, &STANDARD_NO_PAD.encode(hash));
        assert_eq!(
            verify("correct horse battery", &tampered),
            Err(VerifyError::Mismatch)
        );

        let mut salt = STANDARD_NO_PAD.decode(fields[2]).unwrap();
        salt[SALT_LEN - 1] ^= 0x80;
        let tampered = with_field(&encoded, 2, &STANDARD_NO_PAD.encode(salt));
        assert_eq!(
            verify("correct horse battery", &tampered),
            Err(VerifyError::Mismatch)
        );

        let tampered = with_field(&encoded, 1, "100001");
        assert_eq!(
            verify("correct horse battery", &tampered),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn malformed_encodings_are_typed_errors() {
        let good = hasher().hash("correct horse battery").unwrap();
        let pw = "correct horse battery";
        let malformed = |e| Err(VerifyError::Malformed(e));

        assert_eq!(verify(pw, ""), malformed(MalformedHash::FieldCount(1)));
        assert_eq!(
            verify(pw, &format!("{good}$extra")),
            malformed(MalformedHash::FieldCount(5))
        );
        assert_eq!(
            verify(pw, &with_field(&good, 0, "bcrypt")),
            malformed(MalformedHash::Scheme("bcrypt".into()))
        );
        for bad in ["", "ten", "-5", "99999", "4294967296", "10000001"] {
            assert_eq!(
                verify(pw, &with_field(&good, 1, bad)),
                malformed(MalformedHash::Iterations(bad.into())),
                "iterations {bad:?}"
            );
        }
        for bad in [
            "",
            "!!!!",
            "AAAA",
            &STANDARD_NO_PAD.encode([0u8; SALT_LEN + 1]),
        ] {
            assert_eq!(
                verify(pw, &with_field(&good, 2, bad)),
                malformed(MalformedHash::Salt),
                "salt {bad:?}"
            );
        }
        for bad in [
            "",
            "not base64!",
            &STANDARD_NO_PAD.encode([0u8; HASH_LEN - 1]),
        ] {
            assert_eq!(
                verify(pw, &with_field(&good, 3, bad)),
                malformed(MalformedHash::Hash),
                "hash {bad:?}"
            );
        }
    }

    #[test]
    fn iteration_floor_and_ceiling_are_enforced() {
        for bad in [
            0,
            1,
            1_000,
            MIN_ITERATIONS - 1,
            MAX_ITERATIONS + 1,
            u32::MAX,
        ] {
            assert_eq!(
                PasswordHasher::new(bad).unwrap_err(),
                HasherSetupError::Iterations {
                    given: bad,
                    min: MIN_ITERATIONS,
                    max: MAX_ITERATIONS
                }
            );
        }
        assert_eq!(hasher().iterations(), MIN_ITERATIONS);
        assert_eq!(
            PasswordHasher::new(MAX_ITERATIONS).unwrap().iterations(),
            MAX_ITERATIONS
        );
    }

    #[test]
    fn password_policy_bounds() {
        assert_eq!(
            check_policy("seven77"),
            Err(PasswordPolicyError::TooShort { min: 8, len: 7 })
        );
        assert_eq!(check_policy("eight888"), Ok(()));
        assert_eq!(check_policy(&"x".repeat(MAX_PASSWORD_LEN)), Ok(()));
        assert_eq!(
            check_policy(&"x".repeat(MAX_PASSWORD_LEN + 1)),
            Err(PasswordPolicyError::TooLong {
                max: 1024,
                len: 1025
            })
        );
        // Bytes, not characters: four 2-byte characters are long enough.
        assert_eq!(check_policy("éééé"), Ok(()));
        assert_eq!(
            hasher().hash("short"),
            Err(HashError::Policy(PasswordPolicyError::TooShort {
                min: 8,
                len: 5
            }))
        );
    }
}
