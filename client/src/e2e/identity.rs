//! A device's identity key.
//!
//! The identity is one Ed25519 key pair (held by `ring`), used two ways:
//!
//! - to **sign** the device's signed prekey, and
//! - for **key agreement**, in its X25519 form: the Ed25519 public key is
//!   mapped to the Montgomery curve (the birational map of RFC 7748), and the
//!   secret scalar is the clamped first half of SHA-512 of the Ed25519 seed,
//!   exactly the scalar Ed25519 signs with. This is the conversion libsodium
//!   offers as `crypto_sign_ed25519_*_to_curve25519`.
//!
//! Deriving the agreement key from the signing key keeps what a device
//! publishes down to one 32-byte identity key, which is what Parley's key
//! directory stores.

use std::fmt;

use curve25519_dalek::edwards::CompressedEdwardsY;
use ring::digest;
use ring::signature::{self, Ed25519KeyPair, KeyPair};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use super::{random, E2eError, PUBLIC_KEY_LEN, SIGNATURE_LEN};

/// Length of an Ed25519 seed (the secret half of an identity key), in bytes.
pub const SEED_LEN: usize = 32;

/// A device's Ed25519 identity public key, as published in the key directory.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct IdentityPublicKey([u8; PUBLIC_KEY_LEN]);

impl IdentityPublicKey {
    /// Wraps 32 bytes. Nothing is checked until the key is used: see
    /// [`IdentityPublicKey::agreement_key`] and [`IdentityPublicKey::verify`].
    pub fn from_bytes(bytes: [u8; PUBLIC_KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// Reads a key from a slice that must be exactly 32 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, E2eError> {
        <[u8; PUBLIC_KEY_LEN]>::try_from(bytes)
            .map(Self)
            .map_err(|_| E2eError::BadLength {
                what: "identity key",
                expected: PUBLIC_KEY_LEN,
                actual: bytes.len(),
            })
    }

    /// The key's 32 bytes.
    pub fn to_bytes(self) -> [u8; PUBLIC_KEY_LEN] {
        self.0
    }

    /// The key's bytes, borrowed.
    pub fn as_bytes(&self) -> &[u8; PUBLIC_KEY_LEN] {
        &self.0
    }

    /// Checks an Ed25519 signature by this key over `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8; SIGNATURE_LEN]) -> bool {
        signature::UnparsedPublicKey::new(&signature::ED25519, &self.0)
            .verify(message, signature)
            .is_ok()
    }

    /// The X25519 form of this key, used for key agreement.
    ///
    /// Refuses bytes that are not a point of the curve, and points outside its
    /// prime-order subgroup (which no honestly generated key is).
    pub fn agreement_key(&self) -> Result<PublicKey, E2eError> {
        let point = CompressedEdwardsY(self.0)
            .decompress()
            .ok_or(E2eError::InvalidIdentityKey)?;
        if point.is_small_order() || !point.is_torsion_free() {
            return Err(E2eError::InvalidIdentityKey);
        }
        Ok(PublicKey::from(point.to_montgomery().to_bytes()))
    }
}

impl fmt::Debug for IdentityPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdentityPublicKey(")?;
        for b in &self.0[..8] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}

/// A device's identity key pair: Ed25519 for signing, and the matching X25519
/// secret for key agreement.
pub struct IdentityKeyPair {
    seed: Zeroizing<[u8; SEED_LEN]>,
    signing: Ed25519KeyPair,
    agreement: StaticSecret,
    public: IdentityPublicKey,
}

impl IdentityKeyPair {
    /// A fresh identity from the system random number generator.
    pub fn generate() -> Result<Self, E2eError> {
        let seed = Zeroizing::new(random::bytes::<SEED_LEN>()?);
        Self::from_seed(&seed)
    }

    /// The identity whose Ed25519 seed is `seed` (as kept by
    /// [`IdentityKeyPair::seed`]).
    pub fn from_seed(seed: &[u8; SEED_LEN]) -> Result<Self, E2eError> {
        let signing =
            Ed25519KeyPair::from_seed_unchecked(seed).map_err(|_| E2eError::InvalidIdentityKey)?;
        let public = IdentityPublicKey::from_slice(signing.public_key().as_ref())?;
        // Ed25519's secret scalar: the first half of SHA-512(seed); X25519
        // clamps it the same way Ed25519 does.
        let hash = digest::digest(&digest::SHA512, seed);
        let mut scalar = Zeroizing::new([0u8; 32]);
        scalar.copy_from_slice(&hash.as_ref()[..32]);
        let agreement = StaticSecret::from(*scalar);
        Ok(Self {
            seed: Zeroizing::new(*seed),
            signing,
            agreement,
            public,
        })
    }

    /// The Ed25519 seed, the only secret needed to rebuild this identity. Keep
    /// it in the device's secure storage; never send it anywhere.
    pub fn seed(&self) -> &[u8; SEED_LEN] {
        &self.seed
    }

    /// The public key to publish.
    pub fn public_key(&self) -> IdentityPublicKey {
        self.public
    }

    /// Signs `message` with the Ed25519 identity key.
    pub fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        let mut out = [0u8; SIGNATURE_LEN];
        out.copy_from_slice(self.signing.sign(message).as_ref());
        out
    }

    /// The X25519 secret used for key agreement.
    pub(crate) fn agreement_secret(&self) -> &StaticSecret {
        &self.agreement
    }
}

impl fmt::Debug for IdentityKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityKeyPair")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agreement_key_matches_the_secret_half() {
        let identity = IdentityKeyPair::generate().unwrap();
        let from_public = identity.public_key().agreement_key().unwrap();
        let from_secret = PublicKey::from(identity.agreement_secret());
        assert_eq!(from_public.as_bytes(), from_secret.as_bytes());
    }

    #[test]
    fn seed_rebuilds_the_same_identity() {
        let identity = IdentityKeyPair::generate().unwrap();
        let again = IdentityKeyPair::from_seed(identity.seed()).unwrap();
        assert_eq!(identity.public_key(), again.public_key());
        let other = IdentityKeyPair::generate().unwrap();
        assert_ne!(identity.public_key(), other.public_key());
    }

    #[test]
    fn signatures_verify_only_for_their_message_and_key() {
        let identity = IdentityKeyPair::generate().unwrap();
        let other = IdentityKeyPair::generate().unwrap();
        let sig = identity.sign(b"hello");
        assert!(identity.public_key().verify(b"hello", &sig));
        assert!(!identity.public_key().verify(b"hellp", &sig));
        assert!(!other.public_key().verify(b"hello", &sig));
    }

    #[test]
    fn bad_identity_keys_are_refused() {
        // The identity (neutral) point: small order.
        let mut neutral = [0u8; 32];
        neutral[0] = 1;
        assert_eq!(
            IdentityPublicKey::from_bytes(neutral).agreement_key(),
            Err(E2eError::InvalidIdentityKey)
        );
        // y = 2 is not on the curve.
        let mut off_curve = [0u8; 32];
        off_curve[0] = 2;
        assert!(CompressedEdwardsY(off_curve).decompress().is_none());
        assert_eq!(
            IdentityPublicKey::from_bytes(off_curve).agreement_key(),
            Err(E2eError::InvalidIdentityKey)
        );
        assert!(matches!(
            IdentityPublicKey::from_slice(&[0u8; 31]),
            Err(E2eError::BadLength { actual: 31, .. })
        ));
    }
}
