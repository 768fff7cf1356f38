//! End-to-end encryption to devices.
//!
//! Each device owns a [`DeviceKeyring`]: an Ed25519 identity key (whose X25519
//! form is also used for key agreement), a signed X25519 prekey and a pool of
//! X25519 one-time prekeys. It publishes the public halves
//! ([`PublishedDeviceKeys`] and [`OneTimePrekeyPublic`]) to Parley's key
//! directory. A sender fetches a [`PrekeyBundle`] per recipient device,
//! checks it with [`PrekeyBundle::verify`], and encrypts with
//! [`DeviceKeyring::encrypt_to_device`]; the result is a self-describing
//! envelope (see [`envelope`]) that goes, as opaque bytes, into the message's
//! ciphertext body. The recipient opens it with
//! [`DeviceKeyring::decrypt_from_device`], which uses up the one-time prekey
//! the sender picked. [`storage`] turns a keyring into bytes for the
//! device's secure storage and back.
//!
//! Primitives: Ed25519 signatures, HKDF-SHA256 and ChaCha20-Poly1305 come from
//! `ring`; X25519 comes from `x25519-dalek`, because `ring`'s agreement keys
//! can be used only once, while a device's prekeys are long-lived and the
//! sender's ephemeral key takes part in up to three agreements.
//!
//! What this does not provide (no ratchet, no forward secrecy per message) is
//! spelled out in `docs/e2e.md`.

pub mod bundle;
pub mod envelope;
mod error;
pub mod identity;
pub mod keyring;
pub mod message;
mod random;
pub mod storage;
pub mod wire;
pub mod x3dh;

#[cfg(test)]
mod tests;

pub use bundle::{
    OneTimePrekeyPublic, PrekeyBundle, PublishedDeviceKeys, SignedPrekeyPublic, VerifiedBundle,
};
pub use envelope::Envelope;
pub use error::E2eError;
pub use identity::{IdentityKeyPair, IdentityPublicKey};
pub use keyring::{DeviceKeyring, MAX_ONE_TIME_PREKEY_BATCH};
pub use message::{Decrypted, MessageContext};

/// Length of an X25519 or Ed25519 public key, in bytes.
pub const PUBLIC_KEY_LEN: usize = 32;

/// Length of an Ed25519 signature, in bytes.
pub const SIGNATURE_LEN: usize = 64;
