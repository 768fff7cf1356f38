//! The ciphertext envelope: the bytes that go into a `DeviceCiphertext` of a
//! message's `ciphertext` body.
//!
//! Version 1, all integers big-endian:
//!
//! | bytes | field |
//! |---|---|
//! | 1 | version, [`VERSION`] |
//! | 1 | flags: bit 0 set when a one-time prekey was used; other bits 0 |
//! | 32 | the sender's Ed25519 identity key |
//! | 32 | the sender's ephemeral X25519 key |
//! | 32 | the recipient's signed prekey that was used |
//! | 4 | the id of the recipient's one-time prekey that was used, only with flag bit 0 |
//! | 12 | ChaCha20-Poly1305 nonce, random |
//! | n + 16 | ciphertext and tag |
//!
//! Everything before the nonce is the header, which the associated data
//! covers (see [`crate::e2e::message`]): changing any byte of it makes
//! decryption fail.

use super::{E2eError, IdentityPublicKey, PUBLIC_KEY_LEN};

/// The envelope version this crate writes and reads.
pub const VERSION: u8 = 1;

/// Flag bit: a one-time prekey id follows the signed prekey.
const FLAG_ONE_TIME_PREKEY: u8 = 0x01;

/// Length of the AEAD nonce, in bytes.
pub const NONCE_LEN: usize = 12;

/// Length of the AEAD tag at the end of the ciphertext, in bytes.
pub const TAG_LEN: usize = 16;

/// Header length without a one-time prekey id.
const BASE_HEADER_LEN: usize = 2 + 3 * PUBLIC_KEY_LEN;

/// A parsed envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The sender device's identity key.
    pub sender_identity: IdentityPublicKey,
    /// The sender's ephemeral X25519 public key, fresh for every message.
    pub ephemeral_key: [u8; PUBLIC_KEY_LEN],
    /// Which of the recipient's signed prekeys was used (its public key).
    pub signed_prekey: [u8; PUBLIC_KEY_LEN],
    /// Which of the recipient's one-time prekeys was used, if any.
    pub one_time_prekey_id: Option<u32>,
    /// The AEAD nonce.
    pub nonce: [u8; NONCE_LEN],
    /// The ciphertext followed by the 16-byte tag.
    pub ciphertext: Vec<u8>,
}

impl Envelope {
    /// The header: every byte before the nonce.
    pub fn header_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(BASE_HEADER_LEN + 4);
        out.push(VERSION);
        out.push(if self.one_time_prekey_id.is_some() {
            FLAG_ONE_TIME_PREKEY
        } else {
            0
        });
        out.extend_from_slice(self.sender_identity.as_bytes());
        out.extend_from_slice(&self.ephemeral_key);
        out.extend_from_slice(&self.signed_prekey);
        if let Some(id) = self.one_time_prekey_id {
            out.extend_from_slice(&id.to_be_bytes());
        }
        out
    }

    /// The whole envelope as bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.header_bytes();
        out.reserve(NONCE_LEN + self.ciphertext.len());
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&self.ciphertext);
        out
    }

    /// Parses an envelope. Checks the format only; the keys and the
    /// ciphertext are checked when decrypting.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, E2eError> {
        let too_short = |expected: usize| E2eError::BadLength {
            what: "envelope",
            expected,
            actual: bytes.len(),
        };
        let (&version, rest) = bytes.split_first().ok_or(too_short(1))?;
        if version != VERSION {
            return Err(E2eError::UnsupportedVersion(version));
        }
        let (&flags, _) = rest.split_first().ok_or(too_short(2))?;
        if flags & !FLAG_ONE_TIME_PREKEY != 0 {
            return Err(E2eError::BadFlags {
                what: "envelope",
                flags,
            });
        }
        let header_len = if flags & FLAG_ONE_TIME_PREKEY != 0 {
            BASE_HEADER_LEN + 4
        } else {
            BASE_HEADER_LEN
        };
        let min_len = header_len + NONCE_LEN + TAG_LEN;
        if bytes.len() < min_len {
            return Err(too_short(min_len));
        }
        let key = |at: usize| {
            let mut out = [0u8; PUBLIC_KEY_LEN];
            out.copy_from_slice(&bytes[at..at + PUBLIC_KEY_LEN]);
            out
        };
        let one_time_prekey_id = (header_len > BASE_HEADER_LEN).then(|| {
            let mut id = [0u8; 4];
            id.copy_from_slice(&bytes[BASE_HEADER_LEN..BASE_HEADER_LEN + 4]);
            u32::from_be_bytes(id)
        });
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&bytes[header_len..header_len + NONCE_LEN]);
        Ok(Self {
            sender_identity: IdentityPublicKey::from_bytes(key(2)),
            ephemeral_key: key(2 + PUBLIC_KEY_LEN),
            signed_prekey: key(2 + 2 * PUBLIC_KEY_LEN),
            one_time_prekey_id,
            nonce,
            ciphertext: bytes[header_len + NONCE_LEN..].to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(one_time_prekey_id: Option<u32>) -> Envelope {
        Envelope {
            sender_identity: IdentityPublicKey::from_bytes([1; 32]),
            ephemeral_key: [2; 32],
            signed_prekey: [3; 32],
            one_time_prekey_id,
            nonce: [4; NONCE_LEN],
            ciphertext: vec![5; TAG_LEN + 3],
        }
    }

    #[test]
    fn round_trips_with_and_without_one_time_prekey() {
        for id in [None, Some(0x0102_0304)] {
            let envelope = sample(id);
            let bytes = envelope.to_bytes();
            assert_eq!(bytes[0], VERSION);
            assert_eq!(bytes[1], u8::from(id.is_some()));
            assert_eq!(
                bytes.len(),
                BASE_HEADER_LEN + if id.is_some() { 4 } else { 0 } + NONCE_LEN + TAG_LEN + 3
            );
            assert_eq!(Envelope::from_bytes(&bytes).unwrap(), envelope);
        }
    }

    #[test]
    fn malformed_envelopes_are_typed_errors() {
        let bytes = sample(Some(7)).to_bytes();
        // Too short to hold a tag, at every length.
        for len in 0..BASE_HEADER_LEN + 4 + NONCE_LEN + TAG_LEN {
            assert!(
                matches!(
                    Envelope::from_bytes(&bytes[..len]),
                    Err(E2eError::BadLength { .. })
                ),
                "{len} bytes accepted"
            );
        }
        let mut other_version = bytes.clone();
        other_version[0] = 2;
        assert_eq!(
            Envelope::from_bytes(&other_version),
            Err(E2eError::UnsupportedVersion(2))
        );
        let mut bad_flags = bytes;
        bad_flags[1] = 0x81;
        assert_eq!(
            Envelope::from_bytes(&bad_flags),
            Err(E2eError::BadFlags {
                what: "envelope",
                flags: 0x81
            })
        );
    }
}
