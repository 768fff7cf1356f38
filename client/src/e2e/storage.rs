//! A keyring's secret state as bytes, for the device's secure storage.
//!
//! A client must keep its keyring across restarts: a one-time prekey's secret
//! is deleted when a message uses it, and that deletion is what makes the
//! prekey single use, so the state is saved after every decryption that used
//! one. The bytes are secret: store them encrypted at rest (in the platform
//! key store) and never send them anywhere.
//!
//! Version 1, integers big-endian:
//!
//! | bytes | field |
//! |---|---|
//! | 1 | version, [`STATE_VERSION`] |
//! | 32 | identity Ed25519 seed |
//! | 96 | current signed prekey: X25519 secret (32) ‖ signature (64) |
//! | 2 | number of older signed prekeys still kept |
//! | 96 each | the older signed prekeys, same form |
//! | 8 | the id the next one-time prekey gets |
//! | 4 | number of unused one-time prekeys |
//! | 36 each | id (u32) ‖ X25519 secret (32), ids increasing |

use std::collections::BTreeMap;

use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use super::bundle::signed_prekey_message;
use super::keyring::SignedPrekeyPair;
use super::{DeviceKeyring, E2eError, IdentityKeyPair, SignedPrekeyPublic, SIGNATURE_LEN};

/// The version of the state [`DeviceKeyring::to_secret_bytes`] writes.
pub const STATE_VERSION: u8 = 1;

/// Reads fixed-size fields off the front of a byte string.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<Zeroizing<[u8; N]>, E2eError> {
        if self.bytes.len() < N {
            return Err(E2eError::CorruptKeyring("truncated"));
        }
        let (head, rest) = self.bytes.split_at(N);
        let mut out = Zeroizing::new([0u8; N]);
        out.copy_from_slice(head);
        self.bytes = rest;
        Ok(out)
    }

    fn signed_prekey(&mut self, identity: &IdentityKeyPair) -> Result<SignedPrekeyPair, E2eError> {
        let secret = StaticSecret::from(*self.take::<32>()?);
        let signature = *self.take::<SIGNATURE_LEN>()?;
        let public_key = PublicKey::from(&secret).to_bytes();
        if !identity
            .public_key()
            .verify(&signed_prekey_message(&public_key), &signature)
        {
            return Err(E2eError::CorruptKeyring(
                "a signed prekey's signature does not match the identity",
            ));
        }
        Ok(SignedPrekeyPair {
            secret,
            public: SignedPrekeyPublic {
                public_key,
                signature,
            },
        })
    }
}

fn push_signed_prekey(out: &mut Vec<u8>, pair: &SignedPrekeyPair) {
    out.extend_from_slice(pair.secret.as_bytes());
    out.extend_from_slice(&pair.public.signature);
}

impl DeviceKeyring {
    /// The keyring's whole secret state (see [`crate::e2e::storage`]).
    pub fn to_secret_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(
            1 + 32
                + 96 * (1 + self.previous_signed_prekeys.len())
                + 14
                + 36 * self.one_time_prekeys.len(),
        ));
        out.push(STATE_VERSION);
        out.extend_from_slice(self.identity.seed());
        push_signed_prekey(&mut out, &self.signed_prekey);
        // More than u16::MAX kept prekeys is not a state this crate makes;
        // keep the newest ones if it ever happens.
        let kept = self
            .previous_signed_prekeys
            .len()
            .min(usize::from(u16::MAX));
        let skip = self.previous_signed_prekeys.len() - kept;
        out.extend_from_slice(&(kept as u16).to_be_bytes());
        for pair in &self.previous_signed_prekeys[skip..] {
            push_signed_prekey(&mut out, pair);
        }
        out.extend_from_slice(&self.next_one_time_prekey_id.to_be_bytes());
        // Ids are u32 and unique, so the count fits in a u32 except when
        // every id is unused; saturate rather than wrap.
        let count = u32::try_from(self.one_time_prekeys.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&count.to_be_bytes());
        for (id, secret) in self.one_time_prekeys.iter().take(count as usize) {
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(secret.as_bytes());
        }
        out
    }

    /// Restores a keyring from [`DeviceKeyring::to_secret_bytes`]. Refuses
    /// truncated, extended or inconsistent state with
    /// [`E2eError::CorruptKeyring`].
    pub fn from_secret_bytes(bytes: &[u8]) -> Result<Self, E2eError> {
        let mut reader = Reader { bytes };
        let [version] = *reader.take::<1>()?;
        if version != STATE_VERSION {
            return Err(E2eError::CorruptKeyring("unsupported version"));
        }
        let seed = reader.take::<32>()?;
        let identity = IdentityKeyPair::from_seed(&seed)?;
        let signed_prekey = reader.signed_prekey(&identity)?;
        let previous = u16::from_be_bytes(*reader.take::<2>()?);
        let mut previous_signed_prekeys = Vec::new();
        for _ in 0..previous {
            previous_signed_prekeys.push(reader.signed_prekey(&identity)?);
        }
        let next_one_time_prekey_id = u64::from_be_bytes(*reader.take::<8>()?);
        if next_one_time_prekey_id > u64::from(u32::MAX) + 1 {
            return Err(E2eError::CorruptKeyring("one-time prekey id out of range"));
        }
        let count = u32::from_be_bytes(*reader.take::<4>()?);
        let mut one_time_prekeys = BTreeMap::new();
        let mut last = None;
        for _ in 0..count {
            let id = u32::from_be_bytes(*reader.take::<4>()?);
            if last.is_some_and(|last| id <= last) {
                return Err(E2eError::CorruptKeyring("one-time prekey ids out of order"));
            }
            if u64::from(id) >= next_one_time_prekey_id {
                return Err(E2eError::CorruptKeyring("one-time prekey id never issued"));
            }
            last = Some(id);
            one_time_prekeys.insert(id, StaticSecret::from(*reader.take::<32>()?));
        }
        if !reader.bytes.is_empty() {
            return Err(E2eError::CorruptKeyring("trailing bytes"));
        }
        Ok(Self {
            identity,
            signed_prekey,
            previous_signed_prekeys,
            one_time_prekeys,
            next_one_time_prekey_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::e2e::{MessageContext, PrekeyBundle};

    fn context() -> MessageContext<'static> {
        MessageContext {
            sender_user: "alice",
            sender_device: "phone",
            recipient_user: "bob",
            recipient_device: "laptop",
            conversation_id: "alice~bob",
            client_message_id: "c-1",
        }
    }

    /// Offset of the one-time prekey list in the state of a keyring with no
    /// older signed prekeys.
    const ONE_TIME_AT: usize = 1 + 32 + 96 + 2 + 8 + 4;

    #[test]
    fn restored_keyring_keeps_every_secret_and_every_use() {
        let alice = DeviceKeyring::generate().unwrap();
        let mut bob = DeviceKeyring::generate().unwrap();
        let published = bob.generate_one_time_prekeys(3).unwrap();
        let mut envelopes = Vec::new();
        for prekey in &published[..2] {
            let mut bundle = PrekeyBundle {
                device_keys: bob.published_keys(),
                one_time_prekey: Some(*prekey),
            }
            .verify()
            .unwrap();
            envelopes.push(
                alice
                    .encrypt_to_device(&mut bundle, &context(), b"hi")
                    .unwrap(),
            );
        }
        bob.rotate_signed_prekey().unwrap();
        bob.decrypt_from_device(&context(), &envelopes[0], None)
            .unwrap();

        let state = bob.to_secret_bytes();
        let mut restored = DeviceKeyring::from_secret_bytes(&state).unwrap();
        assert_eq!(restored.published_keys(), bob.published_keys());
        assert_eq!(restored.one_time_prekey_count(), 2);
        assert_eq!(*restored.to_secret_bytes(), *state);
        // The used prekey stays used; the other one (under the rotated-out
        // signed prekey) still opens its message.
        assert_eq!(
            restored.decrypt_from_device(&context(), &envelopes[0], None),
            Err(E2eError::OneTimePrekeyConsumed { id: 0 })
        );
        assert_eq!(
            restored
                .decrypt_from_device(&context(), &envelopes[1], None)
                .unwrap()
                .plaintext,
            b"hi"
        );
        // Ids go on where they stopped.
        assert_eq!(restored.generate_one_time_prekeys(1).unwrap()[0].id, 3);
    }

    #[test]
    fn corrupt_state_is_refused() {
        let mut bob = DeviceKeyring::generate().unwrap();
        bob.generate_one_time_prekeys(2).unwrap();
        let state = bob.to_secret_bytes().to_vec();
        assert_eq!(state.len(), ONE_TIME_AT + 2 * 36);

        for len in 0..state.len() {
            assert!(
                matches!(
                    DeviceKeyring::from_secret_bytes(&state[..len]),
                    Err(E2eError::CorruptKeyring(_))
                ),
                "{len} bytes accepted"
            );
        }
        let corrupt = |at: usize, value: u8| {
            let mut bytes = state.clone();
            bytes[at] = value;
            DeviceKeyring::from_secret_bytes(&bytes)
        };
        let is_corrupt = |result: Result<DeviceKeyring, E2eError>, why: &'static str| {
            assert_eq!(result.unwrap_err(), E2eError::CorruptKeyring(why));
        };
        is_corrupt(corrupt(0, 2), "unsupported version");
        // A flipped bit in the signed prekey's signature.
        is_corrupt(
            corrupt(1 + 32 + 40, state[1 + 32 + 40] ^ 1),
            "a signed prekey's signature does not match the identity",
        );
        // The second id equal to the first.
        is_corrupt(
            corrupt(ONE_TIME_AT + 36 + 3, 0),
            "one-time prekey ids out of order",
        );
        // An id at or past the next id to issue.
        is_corrupt(
            corrupt(ONE_TIME_AT + 36 + 3, 2),
            "one-time prekey id never issued",
        );
        let mut longer = state.clone();
        longer.push(0);
        is_corrupt(DeviceKeyring::from_secret_bytes(&longer), "trailing bytes");
    }
}
