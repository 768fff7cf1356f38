//! A device's secret keys, and encryption to and decryption from other
//! devices with them.
//!
//! A [`DeviceKeyring`] holds the identity key pair, the current signed prekey
//! (plus the ones it replaced, until the client forgets them) and the secret
//! halves of the one-time prekeys it has issued and not yet seen used. A
//! one-time prekey's secret is deleted by the first message that opens with
//! it, so a second message naming the same prekey fails with
//! [`E2eError::OneTimePrekeyConsumed`].
//!
//! The keyring lives in memory; [`crate::e2e::storage`] gives its secret
//! state a byte form for the device's secure storage.

use std::collections::BTreeMap;
use std::fmt;

use x25519_dalek::{PublicKey, StaticSecret};

use super::bundle::signed_prekey_message;
use super::envelope::{Envelope, NONCE_LEN};
use super::message::{self, Decrypted, MessageContext};
use super::{
    random, x3dh, E2eError, IdentityKeyPair, IdentityPublicKey, OneTimePrekeyPublic,
    PublishedDeviceKeys, SignedPrekeyPublic, VerifiedBundle,
};

/// A fresh X25519 secret from the system random number generator.
fn random_secret() -> Result<StaticSecret, E2eError> {
    Ok(StaticSecret::from(random::bytes::<32>()?))
}

/// Most one-time prekeys [`DeviceKeyring::generate_one_time_prekeys`] makes in
/// one call.
pub const MAX_ONE_TIME_PREKEY_BATCH: u32 = 10_000;

/// A signed prekey with its secret.
pub(super) struct SignedPrekeyPair {
    pub(super) secret: StaticSecret,
    pub(super) public: SignedPrekeyPublic,
}

impl SignedPrekeyPair {
    fn generate(identity: &IdentityKeyPair) -> Result<Self, E2eError> {
        let secret = random_secret()?;
        let public_key = PublicKey::from(&secret).to_bytes();
        let signature = identity.sign(&signed_prekey_message(&public_key));
        Ok(Self {
            secret,
            public: SignedPrekeyPublic {
                public_key,
                signature,
            },
        })
    }
}

/// The secret keys of one device.
pub struct DeviceKeyring {
    pub(super) identity: IdentityKeyPair,
    pub(super) signed_prekey: SignedPrekeyPair,
    pub(super) previous_signed_prekeys: Vec<SignedPrekeyPair>,
    pub(super) one_time_prekeys: BTreeMap<u32, StaticSecret>,
    /// The id the next one-time prekey gets; every lower id was issued.
    pub(super) next_one_time_prekey_id: u64,
}

impl DeviceKeyring {
    /// A new device: fresh identity and signed prekey, no one-time prekeys yet.
    pub fn generate() -> Result<Self, E2eError> {
        Self::from_identity(IdentityKeyPair::generate()?)
    }

    /// A keyring for an existing identity, with a fresh signed prekey and no
    /// one-time prekeys.
    pub fn from_identity(identity: IdentityKeyPair) -> Result<Self, E2eError> {
        let signed_prekey = SignedPrekeyPair::generate(&identity)?;
        Ok(Self {
            identity,
            signed_prekey,
            previous_signed_prekeys: Vec::new(),
            one_time_prekeys: BTreeMap::new(),
            next_one_time_prekey_id: 0,
        })
    }

    /// The identity key pair.
    pub fn identity(&self) -> &IdentityKeyPair {
        &self.identity
    }

    /// The identity public key.
    pub fn identity_key(&self) -> IdentityPublicKey {
        self.identity.public_key()
    }

    /// The long-lived public keys to upload to the key directory.
    pub fn published_keys(&self) -> PublishedDeviceKeys {
        PublishedDeviceKeys {
            identity_key: self.identity.public_key(),
            signed_prekey: self.signed_prekey.public,
        }
    }

    /// Replaces the signed prekey with a fresh one and returns the keys to
    /// upload. The old prekey's secret is kept, so messages sent to it while
    /// the new one propagates still open; drop it later with
    /// [`DeviceKeyring::forget_previous_signed_prekeys`].
    pub fn rotate_signed_prekey(&mut self) -> Result<PublishedDeviceKeys, E2eError> {
        let fresh = SignedPrekeyPair::generate(&self.identity)?;
        let old = std::mem::replace(&mut self.signed_prekey, fresh);
        self.previous_signed_prekeys.push(old);
        Ok(self.published_keys())
    }

    /// Deletes the secrets of every signed prekey but the current one;
    /// messages still naming them then fail with
    /// [`E2eError::UnknownSignedPrekey`].
    pub fn forget_previous_signed_prekeys(&mut self) {
        self.previous_signed_prekeys.clear();
    }

    /// Makes `count` new one-time prekeys and returns their public halves, to
    /// upload to the key directory. Ids increase and are never reused. At
    /// most [`MAX_ONE_TIME_PREKEY_BATCH`] per call.
    pub fn generate_one_time_prekeys(
        &mut self,
        count: u32,
    ) -> Result<Vec<OneTimePrekeyPublic>, E2eError> {
        if count > MAX_ONE_TIME_PREKEY_BATCH {
            return Err(E2eError::OneTimePrekeyBatchTooLarge {
                max: MAX_ONE_TIME_PREKEY_BATCH,
            });
        }
        let end = self.next_one_time_prekey_id + u64::from(count);
        if end > u64::from(u32::MAX) + 1 {
            return Err(E2eError::OneTimePrekeyIdsExhausted);
        }
        let mut published = Vec::with_capacity(count as usize);
        let mut fresh = Vec::with_capacity(count as usize);
        for id in self.next_one_time_prekey_id..end {
            let id = u32::try_from(id).map_err(|_| E2eError::OneTimePrekeyIdsExhausted)?;
            let secret = random_secret()?;
            published.push(OneTimePrekeyPublic {
                id,
                public_key: PublicKey::from(&secret).to_bytes(),
            });
            fresh.push((id, secret));
        }
        // Only once every key was made: a failure leaves the keyring as it was.
        self.one_time_prekeys.extend(fresh);
        self.next_one_time_prekey_id = end;
        Ok(published)
    }

    /// How many issued one-time prekeys have not been used yet.
    pub fn one_time_prekey_count(&self) -> usize {
        self.one_time_prekeys.len()
    }

    /// Encrypts `plaintext` for the device whose verified bundle is `bundle`,
    /// returning the envelope bytes for its `DeviceCiphertext`.
    ///
    /// Each call makes a fresh ephemeral key and a random nonce. The bundle's
    /// one-time prekey, if it still has one, is used and taken out of it, so
    /// only the first message to a fetched bundle uses one.
    pub fn encrypt_to_device(
        &self,
        bundle: &mut VerifiedBundle,
        context: &MessageContext<'_>,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, E2eError> {
        let their_identity = bundle.identity_key();
        let their_agreement = their_identity.agreement_key()?;
        let ephemeral = random_secret()?;
        let nonce = random::bytes::<NONCE_LEN>()?;
        // Peek only: the prekey is taken out once the message is sealed.
        let one_time = bundle.one_time_prekey();
        let key = x3dh::initiate(
            self.identity.agreement_secret(),
            &ephemeral,
            &their_agreement,
            bundle.signed_prekey_key(),
            one_time.as_ref().map(|(_, key)| key),
        )?;
        let mut envelope = Envelope {
            sender_identity: self.identity.public_key(),
            ephemeral_key: PublicKey::from(&ephemeral).to_bytes(),
            signed_prekey: bundle.signed_prekey(),
            one_time_prekey_id: one_time.map(|(id, _)| id),
            nonce,
            ciphertext: Vec::new(),
        };
        let ad = context.associated_data(&envelope.header_bytes(), &their_identity)?;
        envelope.ciphertext = message::seal(&key, nonce, &ad, plaintext)?;
        bundle.take_one_time_prekey();
        Ok(envelope.to_bytes())
    }

    /// Opens an envelope sent to this device.
    ///
    /// `expected_sender`, when given, is the identity key the client knows
    /// for the sending device; an envelope from any other key is refused with
    /// [`E2eError::UnexpectedSender`] before any work. On success the
    /// one-time prekey the envelope names is deleted; nothing changes on
    /// failure, so a forged envelope cannot use up a prekey.
    pub fn decrypt_from_device(
        &mut self,
        context: &MessageContext<'_>,
        envelope: &[u8],
        expected_sender: Option<&IdentityPublicKey>,
    ) -> Result<Decrypted, E2eError> {
        let envelope = Envelope::from_bytes(envelope)?;
        if expected_sender.is_some_and(|key| *key != envelope.sender_identity) {
            return Err(E2eError::UnexpectedSender);
        }
        let signed_prekey = std::iter::once(&self.signed_prekey)
            .chain(&self.previous_signed_prekeys)
            .find(|pair| pair.public.public_key == envelope.signed_prekey)
            .ok_or(E2eError::UnknownSignedPrekey)?;
        let one_time = match envelope.one_time_prekey_id {
            None => None,
            Some(id) => match self.one_time_prekeys.get(&id) {
                Some(secret) => Some(secret),
                None if u64::from(id) < self.next_one_time_prekey_id => {
                    return Err(E2eError::OneTimePrekeyConsumed { id })
                }
                None => return Err(E2eError::UnknownOneTimePrekey { id }),
            },
        };
        let key = x3dh::respond(
            self.identity.agreement_secret(),
            &signed_prekey.secret,
            one_time,
            &envelope.sender_identity.agreement_key()?,
            &PublicKey::from(envelope.ephemeral_key),
        )?;
        let ad = context.associated_data(&envelope.header_bytes(), &self.identity.public_key())?;
        let plaintext = message::open(&key, envelope.nonce, &ad, &envelope.ciphertext)?;
        if let Some(id) = envelope.one_time_prekey_id {
            self.one_time_prekeys.remove(&id);
        }
        Ok(Decrypted {
            plaintext,
            sender_identity: envelope.sender_identity,
            one_time_prekey_id: envelope.one_time_prekey_id,
        })
    }
}

impl fmt::Debug for DeviceKeyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceKeyring")
            .field("identity", &self.identity.public_key())
            .field("one_time_prekeys", &self.one_time_prekeys.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_time_prekey_ids_run_out_cleanly() {
        let mut keyring = DeviceKeyring::generate().unwrap();
        keyring.next_one_time_prekey_id = u64::from(u32::MAX) - 1;
        assert_eq!(
            keyring.generate_one_time_prekeys(3),
            Err(E2eError::OneTimePrekeyIdsExhausted)
        );
        assert_eq!(keyring.one_time_prekey_count(), 0, "nothing half-added");
        let last = keyring.generate_one_time_prekeys(2).unwrap();
        assert_eq!(last[1].id, u32::MAX);
        assert_eq!(
            keyring.generate_one_time_prekeys(1),
            Err(E2eError::OneTimePrekeyIdsExhausted)
        );
        assert_eq!(keyring.generate_one_time_prekeys(0), Ok(Vec::new()));
    }

    #[test]
    fn oversized_batches_are_refused() {
        let mut keyring = DeviceKeyring::generate().unwrap();
        assert_eq!(
            keyring.generate_one_time_prekeys(MAX_ONE_TIME_PREKEY_BATCH + 1),
            Err(E2eError::OneTimePrekeyBatchTooLarge {
                max: MAX_ONE_TIME_PREKEY_BATCH
            })
        );
        assert_eq!(keyring.one_time_prekey_count(), 0);
    }

    #[test]
    fn the_published_signed_prekey_is_signed_by_the_identity() {
        let keyring = DeviceKeyring::generate().unwrap();
        let published = keyring.published_keys();
        assert_eq!(published.identity_key, keyring.identity_key());
        assert_eq!(published.verify(), Ok(()));
    }
}
