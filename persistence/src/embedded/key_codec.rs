//! The on-disk encoding of a device's keys in the embedded `key_devices` table.
//!
//! The user and device id are the table key, so the value holds the keys. A
//! value is one version byte followed by that version's body:
//!
//! | version | body (fixed size, 136 bytes)                                                        |
//! |---------|--------------------------------------------------------------------------------------|
//! | `1`     | identity key (32) · signed prekey (32) · its signature (64) · `updated_at_ms` (i64, big-endian) |
//!
//! A new layout gets a new version byte; decoding keeps accepting every older
//! version. Anything that does not decode (an unknown version, a body of the
//! wrong length) is [`StoreError::Corrupt`].

use crate::keys::{PUBLIC_KEY_LEN, SIGNATURE_LEN};
use crate::{DeviceKeys, SignedPrekey, StoreError};

/// The version byte of the current layout.
const VERSION_1: u8 = 1;

/// Length of a version-1 body.
const BODY_V1_LEN: usize = PUBLIC_KEY_LEN + PUBLIC_KEY_LEN + SIGNATURE_LEN + 8;

/// Encodes `keys` in the current layout.
pub(crate) fn encode(keys: &DeviceKeys) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(1 + BODY_V1_LEN);
    bytes.push(VERSION_1);
    bytes.extend_from_slice(&keys.identity_key);
    bytes.extend_from_slice(&keys.signed_prekey.public_key);
    bytes.extend_from_slice(&keys.signed_prekey.signature);
    bytes.extend_from_slice(&keys.updated_at_ms.to_be_bytes());
    bytes
}

/// Decodes the value stored for `user`'s `device_id`.
///
/// # Errors
///
/// [`StoreError::Corrupt`] if `bytes` is not a value of a known version.
pub(crate) fn decode(user: &str, device_id: &str, bytes: &[u8]) -> Result<DeviceKeys, StoreError> {
    let corrupt =
        |why: String| StoreError::Corrupt(format!("keys of {user:?} device {device_id:?}: {why}"));
    match bytes.split_first() {
        None => Err(corrupt("empty record".to_owned())),
        Some((&VERSION_1, body)) => {
            if body.len() != BODY_V1_LEN {
                return Err(corrupt(format!(
                    "version-1 record of {} bytes; expected {BODY_V1_LEN}",
                    body.len()
                )));
            }
            let (identity_key, rest) = body.split_at(PUBLIC_KEY_LEN);
            let (public_key, rest) = rest.split_at(PUBLIC_KEY_LEN);
            let (signature, updated_at_ms) = rest.split_at(SIGNATURE_LEN);
            // The lengths were checked above, so every conversion succeeds.
            Ok(DeviceKeys {
                identity_key: identity_key.try_into().expect("32 bytes"),
                signed_prekey: SignedPrekey {
                    public_key: public_key.try_into().expect("32 bytes"),
                    signature: signature.try_into().expect("64 bytes"),
                },
                updated_at_ms: i64::from_be_bytes(updated_at_ms.try_into().expect("8 bytes")),
            })
        }
        Some((version, _)) => Err(corrupt(format!(
            "unknown record version {version} (written by a newer Parley?)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> DeviceKeys {
        DeviceKeys {
            identity_key: [1; PUBLIC_KEY_LEN],
            signed_prekey: SignedPrekey {
                public_key: [2; PUBLIC_KEY_LEN],
                signature: [3; SIGNATURE_LEN],
            },
            updated_at_ms: -5,
        }
    }

    #[test]
    fn round_trips_every_field() {
        let keys = sample();
        let bytes = encode(&keys);
        assert_eq!(bytes.len(), 1 + BODY_V1_LEN);
        assert_eq!(bytes[0], VERSION_1);
        assert_eq!(decode("alice", "phone", &bytes).expect("decodes"), keys);
    }

    #[test]
    fn empty_value_is_corrupt() {
        let err = decode("alice", "phone", &[]).expect_err("empty must not decode");
        assert!(
            matches!(&err, StoreError::Corrupt(why) if why.contains("empty") && why.contains("phone")),
            "got {err:?}"
        );
    }

    #[test]
    fn unknown_version_is_corrupt() {
        let mut bytes = encode(&sample());
        bytes[0] = 9;
        let err = decode("alice", "phone", &bytes).expect_err("unknown version");
        assert!(
            matches!(&err, StoreError::Corrupt(why) if why.contains("version 9")),
            "got {err:?}"
        );
    }

    #[test]
    fn wrong_length_is_corrupt() {
        let bytes = encode(&sample());
        for bad in [
            &bytes[..bytes.len() - 1],
            &[bytes.as_slice(), &[0]].concat(),
        ] {
            let err = decode("alice", "phone", bad).expect_err("wrong length");
            assert!(
                matches!(&err, StoreError::Corrupt(why) if why.contains("expected 136")),
                "got {err:?}"
            );
        }
    }
}
