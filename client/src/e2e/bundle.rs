//! The public keys a device publishes, in the byte form Parley's key directory
//! stores, and their verification by a sender.
//!
//! | type | bytes | directory counterpart |
//! |---|---|---|
//! | [`PublishedDeviceKeys`] | 128: identity key (32) ‖ signed prekey (32) ‖ signature (64) | `DeviceKeys` (without `updated_at_ms`) |
//! | [`OneTimePrekeyPublic`] | 36: id (u32, big-endian) ‖ X25519 key (32) | `OneTimePrekey` |
//! | [`PrekeyBundle`] | 129 or 165: device keys (128) ‖ flag (1: 0 none, 1 present) ‖ one-time prekey (36, if present) | `DeviceBundle` (without `device_id`) |
//!
//! The signature is Ed25519 by the identity key over
//! [`SIGNED_PREKEY_CONTEXT`] followed by the signed prekey's 32 bytes.

use x25519_dalek::PublicKey;

use super::{E2eError, IdentityPublicKey, PUBLIC_KEY_LEN, SIGNATURE_LEN};

/// What the identity key signs ahead of the signed prekey's public key, so
/// that its signature cannot be mistaken for one over anything else.
pub const SIGNED_PREKEY_CONTEXT: &[u8] = b"Parley E2E v1 signed prekey";

/// Length of [`PublishedDeviceKeys::to_bytes`].
pub const DEVICE_KEYS_LEN: usize = PUBLIC_KEY_LEN + PUBLIC_KEY_LEN + SIGNATURE_LEN;

/// Length of [`OneTimePrekeyPublic::to_bytes`].
pub const ONE_TIME_PREKEY_LEN: usize = 4 + PUBLIC_KEY_LEN;

/// The message the identity key signs for a signed prekey.
pub(crate) fn signed_prekey_message(public_key: &[u8; PUBLIC_KEY_LEN]) -> Vec<u8> {
    let mut message = Vec::with_capacity(SIGNED_PREKEY_CONTEXT.len() + PUBLIC_KEY_LEN);
    message.extend_from_slice(SIGNED_PREKEY_CONTEXT);
    message.extend_from_slice(public_key);
    message
}

fn check_len(what: &'static str, bytes: &[u8], expected: usize) -> Result<(), E2eError> {
    if bytes.len() == expected {
        Ok(())
    } else {
        Err(E2eError::BadLength {
            what,
            expected,
            actual: bytes.len(),
        })
    }
}

fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[..N]);
    out
}

/// A signed prekey as published: an X25519 public key and the identity key's
/// signature over it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedPrekeyPublic {
    /// The X25519 public key.
    pub public_key: [u8; PUBLIC_KEY_LEN],
    /// Ed25519 signature by the identity key over [`SIGNED_PREKEY_CONTEXT`] ‖
    /// `public_key`.
    pub signature: [u8; SIGNATURE_LEN],
}

/// A device's long-lived public keys: what it uploads with the directory's
/// `put_device_keys`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishedDeviceKeys {
    /// The Ed25519 identity public key.
    pub identity_key: IdentityPublicKey,
    /// The current signed prekey.
    pub signed_prekey: SignedPrekeyPublic,
}

impl PublishedDeviceKeys {
    /// The 128-byte form: identity key ‖ signed prekey ‖ signature.
    pub fn to_bytes(&self) -> [u8; DEVICE_KEYS_LEN] {
        let mut out = [0u8; DEVICE_KEYS_LEN];
        out[..32].copy_from_slice(self.identity_key.as_bytes());
        out[32..64].copy_from_slice(&self.signed_prekey.public_key);
        out[64..].copy_from_slice(&self.signed_prekey.signature);
        out
    }

    /// Reads the form [`PublishedDeviceKeys::to_bytes`] writes. Checks only
    /// the length; [`PrekeyBundle::verify`] checks the keys.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, E2eError> {
        check_len("device keys", bytes, DEVICE_KEYS_LEN)?;
        Ok(Self {
            identity_key: IdentityPublicKey::from_bytes(array(&bytes[..32])),
            signed_prekey: SignedPrekeyPublic {
                public_key: array(&bytes[32..64]),
                signature: array(&bytes[64..]),
            },
        })
    }

    /// Checks the signed prekey's signature and that the identity key is
    /// usable; what [`PrekeyBundle::verify`] checks besides the one-time prekey.
    pub fn verify(&self) -> Result<(), E2eError> {
        // The identity key must be a valid point before its signature means
        // anything.
        self.identity_key.agreement_key()?;
        let message = signed_prekey_message(&self.signed_prekey.public_key);
        if self
            .identity_key
            .verify(&message, &self.signed_prekey.signature)
        {
            Ok(())
        } else {
            Err(E2eError::BadSignedPrekeySignature)
        }
    }
}

/// A one-time prekey as published: the device's id for it and its X25519
/// public key. Uploaded in batches with the directory's `add_one_time_prekeys`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OneTimePrekeyPublic {
    /// The device's id for the key, unique among the keys it has issued.
    pub id: u32,
    /// The X25519 public key.
    pub public_key: [u8; PUBLIC_KEY_LEN],
}

impl OneTimePrekeyPublic {
    /// The 36-byte form: id (u32, big-endian) ‖ public key.
    pub fn to_bytes(&self) -> [u8; ONE_TIME_PREKEY_LEN] {
        let mut out = [0u8; ONE_TIME_PREKEY_LEN];
        out[..4].copy_from_slice(&self.id.to_be_bytes());
        out[4..].copy_from_slice(&self.public_key);
        out
    }

    /// Reads the form [`OneTimePrekeyPublic::to_bytes`] writes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, E2eError> {
        check_len("one-time prekey", bytes, ONE_TIME_PREKEY_LEN)?;
        Ok(Self {
            id: u32::from_be_bytes(array(&bytes[..4])),
            public_key: array(&bytes[4..]),
        })
    }
}

/// What a sender fetches for one recipient device (the directory's
/// `take_bundles` gives one per device): its long-lived keys and, while the
/// device has any left, one one-time prekey.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrekeyBundle {
    /// The device's identity key and signed prekey.
    pub device_keys: PublishedDeviceKeys,
    /// One of its one-time prekeys, or `None` when its pool is empty.
    pub one_time_prekey: Option<OneTimePrekeyPublic>,
}

impl PrekeyBundle {
    /// The byte form: device keys (128) ‖ 0, or device keys ‖ 1 ‖ one-time
    /// prekey (36).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(DEVICE_KEYS_LEN + 1 + ONE_TIME_PREKEY_LEN);
        out.extend_from_slice(&self.device_keys.to_bytes());
        match &self.one_time_prekey {
            None => out.push(0),
            Some(prekey) => {
                out.push(1);
                out.extend_from_slice(&prekey.to_bytes());
            }
        }
        out
    }

    /// Reads the form [`PrekeyBundle::to_bytes`] writes. Checks only the
    /// format; call [`PrekeyBundle::verify`] before using the keys.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, E2eError> {
        if bytes.len() <= DEVICE_KEYS_LEN {
            return Err(E2eError::BadLength {
                what: "prekey bundle",
                expected: DEVICE_KEYS_LEN + 1,
                actual: bytes.len(),
            });
        }
        let device_keys = PublishedDeviceKeys::from_bytes(&bytes[..DEVICE_KEYS_LEN])?;
        let rest = &bytes[DEVICE_KEYS_LEN + 1..];
        let one_time_prekey = match bytes[DEVICE_KEYS_LEN] {
            0 => {
                check_len("prekey bundle", bytes, DEVICE_KEYS_LEN + 1)?;
                None
            }
            1 => Some(
                OneTimePrekeyPublic::from_bytes(rest).map_err(|_| E2eError::BadLength {
                    what: "prekey bundle",
                    expected: DEVICE_KEYS_LEN + 1 + ONE_TIME_PREKEY_LEN,
                    actual: bytes.len(),
                })?,
            ),
            flags => {
                return Err(E2eError::BadFlags {
                    what: "prekey bundle",
                    flags,
                })
            }
        };
        Ok(Self {
            device_keys,
            one_time_prekey,
        })
    }

    /// Checks the bundle as a sender must before encrypting to it: the
    /// identity key is a valid Ed25519 key and the signed prekey carries its
    /// valid signature ([`E2eError::BadSignedPrekeySignature`] otherwise).
    ///
    /// This proves the prekey belongs to the identity key, not that the
    /// identity key belongs to the user: compare it with the one you know for
    /// the device (pinned on first use, or checked out of band).
    pub fn verify(self) -> Result<VerifiedBundle, E2eError> {
        self.device_keys.verify()?;
        Ok(VerifiedBundle {
            identity_key: self.device_keys.identity_key,
            signed_prekey: PublicKey::from(self.device_keys.signed_prekey.public_key),
            one_time_prekey: self
                .one_time_prekey
                .map(|prekey| (prekey.id, PublicKey::from(prekey.public_key))),
        })
    }
}

/// A [`PrekeyBundle`] whose signature has been checked, ready to encrypt to.
///
/// Its one-time prekey is single use: the first
/// [`DeviceKeyring::encrypt_to_device`](super::DeviceKeyring::encrypt_to_device)
/// takes it out, and later messages to the same bundle go without one.
#[derive(Debug, Clone)]
pub struct VerifiedBundle {
    identity_key: IdentityPublicKey,
    signed_prekey: PublicKey,
    one_time_prekey: Option<(u32, PublicKey)>,
}

impl VerifiedBundle {
    /// The recipient device's identity key.
    pub fn identity_key(&self) -> IdentityPublicKey {
        self.identity_key
    }

    /// The recipient device's signed prekey.
    pub fn signed_prekey(&self) -> [u8; PUBLIC_KEY_LEN] {
        self.signed_prekey.to_bytes()
    }

    /// The id of the one-time prekey the next message will use, if any is left.
    pub fn one_time_prekey_id(&self) -> Option<u32> {
        self.one_time_prekey.map(|(id, _)| id)
    }

    /// The signed prekey as an X25519 key.
    pub(crate) fn signed_prekey_key(&self) -> &PublicKey {
        &self.signed_prekey
    }

    /// The one-time prekey, left in place.
    pub(crate) fn one_time_prekey(&self) -> Option<(u32, PublicKey)> {
        self.one_time_prekey
    }

    /// Takes the one-time prekey out, so that it is used once at most.
    pub(crate) fn take_one_time_prekey(&mut self) -> Option<(u32, PublicKey)> {
        self.one_time_prekey.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::e2e::DeviceKeyring;

    fn bundle() -> PrekeyBundle {
        let mut device = DeviceKeyring::generate().unwrap();
        let prekeys = device.generate_one_time_prekeys(1).unwrap();
        PrekeyBundle {
            device_keys: device.published_keys(),
            one_time_prekey: Some(prekeys[0]),
        }
    }

    #[test]
    fn byte_forms_round_trip() {
        let full = bundle();
        let bytes = full.to_bytes();
        assert_eq!(bytes.len(), DEVICE_KEYS_LEN + 1 + ONE_TIME_PREKEY_LEN);
        assert_eq!(PrekeyBundle::from_bytes(&bytes).unwrap(), full);

        let bare = PrekeyBundle {
            one_time_prekey: None,
            ..full
        };
        let bytes = bare.to_bytes();
        assert_eq!(bytes.len(), DEVICE_KEYS_LEN + 1);
        assert_eq!(PrekeyBundle::from_bytes(&bytes).unwrap(), bare);

        let keys = full.device_keys.to_bytes();
        assert_eq!(
            PublishedDeviceKeys::from_bytes(&keys).unwrap(),
            full.device_keys
        );
        let prekey = full.one_time_prekey.unwrap();
        assert_eq!(
            OneTimePrekeyPublic::from_bytes(&prekey.to_bytes()).unwrap(),
            prekey
        );
    }

    #[test]
    fn malformed_bytes_are_typed_errors() {
        let bytes = bundle().to_bytes();
        for len in 0..bytes.len() {
            assert!(
                matches!(
                    PrekeyBundle::from_bytes(&bytes[..len]),
                    Err(E2eError::BadLength { .. })
                ),
                "prefix of {len} bytes accepted"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(
            PrekeyBundle::from_bytes(&longer),
            Err(E2eError::BadLength { .. })
        ));
        let mut bad_flag = bytes;
        bad_flag[DEVICE_KEYS_LEN] = 7;
        assert_eq!(
            PrekeyBundle::from_bytes(&bad_flag),
            Err(E2eError::BadFlags {
                what: "prekey bundle",
                flags: 7
            })
        );
        assert!(matches!(
            PublishedDeviceKeys::from_bytes(&[0u8; 127]),
            Err(E2eError::BadLength { actual: 127, .. })
        ));
    }

    #[test]
    fn a_good_bundle_verifies() {
        let full = bundle();
        let verified = full.verify().unwrap();
        assert_eq!(verified.identity_key(), full.device_keys.identity_key);
        assert_eq!(
            verified.signed_prekey(),
            full.device_keys.signed_prekey.public_key
        );
        assert_eq!(
            verified.one_time_prekey_id(),
            full.one_time_prekey.map(|p| p.id)
        );
    }

    #[test]
    fn a_bad_signed_prekey_signature_is_refused() {
        // A flipped signature bit.
        let mut forged = bundle();
        forged.device_keys.signed_prekey.signature[10] ^= 1;
        assert_eq!(
            forged.verify().unwrap_err(),
            E2eError::BadSignedPrekeySignature
        );

        // A swapped-in prekey under the genuine signature.
        let mut swapped = bundle();
        swapped.device_keys.signed_prekey.public_key[0] ^= 1;
        assert_eq!(
            swapped.verify().unwrap_err(),
            E2eError::BadSignedPrekeySignature
        );

        // A genuine signed prekey presented under another identity key.
        let mut other_identity = bundle();
        other_identity.device_keys.identity_key = bundle().device_keys.identity_key;
        assert_eq!(
            other_identity.verify().unwrap_err(),
            E2eError::BadSignedPrekeySignature
        );

        // The signature over the bare key, without the context, is refused.
        let identity = crate::e2e::IdentityKeyPair::generate().unwrap();
        let mut bare = bundle();
        bare.device_keys.identity_key = identity.public_key();
        bare.device_keys.signed_prekey.signature =
            identity.sign(&bare.device_keys.signed_prekey.public_key);
        assert_eq!(
            bare.verify().unwrap_err(),
            E2eError::BadSignedPrekeySignature
        );
    }

    #[test]
    fn an_invalid_identity_key_is_refused() {
        let mut bad = bundle();
        let mut neutral = [0u8; 32];
        neutral[0] = 1;
        bad.device_keys.identity_key = IdentityPublicKey::from_bytes(neutral);
        assert_eq!(bad.verify().unwrap_err(), E2eError::InvalidIdentityKey);
    }
}
