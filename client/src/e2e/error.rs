//! The errors of the end-to-end encryption code.

use thiserror::Error;

/// Why a key, bundle or envelope was refused, or an operation failed.
///
/// Nothing in [`crate::e2e`] panics on bad input: every malformed, forged or
/// replayed input ends in one of these.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum E2eError {
    /// A byte string is shorter or longer than its format allows.
    #[error("{what}: expected {expected} bytes, got {actual}")]
    BadLength {
        /// What was being read.
        what: &'static str,
        /// The length (or minimum length) the format requires.
        expected: usize,
        /// The length that was given.
        actual: usize,
    },
    /// A flag byte holds a value the format does not define.
    #[error("{what}: undefined flags {flags:#04x}")]
    BadFlags {
        /// What was being read.
        what: &'static str,
        /// The offending byte.
        flags: u8,
    },
    /// The envelope was made by a scheme version this client does not know.
    #[error("unsupported envelope version {0}")]
    UnsupportedVersion(u8),
    /// An identity key is not a usable Ed25519 public key (not a curve point,
    /// or not in the prime-order subgroup).
    #[error("invalid identity key")]
    InvalidIdentityKey,
    /// The signed prekey's signature does not verify under the identity key.
    #[error("the signed prekey's signature is invalid")]
    BadSignedPrekeySignature,
    /// A key agreement gave an all-zero result: the peer's key is of low order.
    #[error("key agreement with a low-order public key")]
    WeakKeyAgreement,
    /// The envelope names a signed prekey this device does not have (any more).
    #[error("unknown signed prekey")]
    UnknownSignedPrekey,
    /// The envelope names a one-time prekey this device never issued.
    #[error("unknown one-time prekey {id}")]
    UnknownOneTimePrekey {
        /// The one-time prekey's id.
        id: u32,
    },
    /// The envelope names a one-time prekey that an earlier message used up.
    #[error("one-time prekey {id} was already used")]
    OneTimePrekeyConsumed {
        /// The one-time prekey's id.
        id: u32,
    },
    /// The device has issued all 2^32 one-time prekey ids.
    #[error("one-time prekey ids are exhausted")]
    OneTimePrekeyIdsExhausted,
    /// More one-time prekeys were asked for in one batch than allowed.
    #[error("at most {max} one-time prekeys per batch")]
    OneTimePrekeyBatchTooLarge {
        /// The limit.
        max: u32,
    },
    /// Stored keyring state is malformed or inconsistent.
    #[error("corrupt keyring state: {0}")]
    CorruptKeyring(&'static str),
    /// The envelope's sender identity key is not the one the caller expected.
    #[error("the envelope comes from an unexpected identity key")]
    UnexpectedSender,
    /// The ciphertext does not authenticate: it, its header or its associated
    /// data (sender, recipient, conversation, message id) was altered, or it
    /// was not encrypted for this device.
    #[error("decryption failed")]
    DecryptionFailed,
    /// The message's body is not a `ciphertext` body.
    #[error("the message body is not end-to-end encrypted")]
    NotCiphertext,
    /// The `Ciphertext` body was written with a scheme this client does not know.
    #[error("unsupported encryption scheme {0}")]
    UnsupportedScheme(u32),
    /// The `Ciphertext` body holds no entry for this device.
    #[error("the message was not encrypted for this device")]
    NotARecipient,
    /// A `Ciphertext` body needs at least one recipient device.
    #[error("no recipient devices")]
    NoRecipients,
    /// A field of the associated data is too long to encode.
    #[error("{0} is too long")]
    FieldTooLong(&'static str),
    /// The system random number generator failed.
    #[error("the random number generator failed")]
    Randomness,
    /// Key derivation or sealing failed inside the crypto library.
    #[error("a cryptographic operation failed")]
    Crypto,
}
