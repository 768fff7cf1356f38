//! The key directory: the public keys each user's devices publish for
//! end-to-end encryption (see `docs/e2e.md`).
//!
//! Per device the directory keeps an identity key, a signed prekey and a pool
//! of one-time prekeys. Senders fetch a user's bundles, each with one one-time
//! prekey taken out of the pool, so that a one-time prekey is handed out at
//! most once. The store keeps the keys as fixed-size byte arrays and checks
//! nothing about them: validating keys and signatures is the caller's job.

use async_trait::async_trait;

use crate::StoreError;

/// Length of an X25519 or Ed25519 public key, in bytes.
pub const PUBLIC_KEY_LEN: usize = 32;

/// Length of an Ed25519 signature, in bytes.
pub const SIGNATURE_LEN: usize = 64;

/// A device's signed prekey: an X25519 public key and the device identity
/// key's Ed25519 signature over it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedPrekey {
    /// The X25519 public key.
    pub public_key: [u8; PUBLIC_KEY_LEN],
    /// The identity key's signature over the public key.
    pub signature: [u8; SIGNATURE_LEN],
}

/// The long-lived keys of one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceKeys {
    /// The device's Ed25519 identity public key.
    pub identity_key: [u8; PUBLIC_KEY_LEN],
    /// The device's current signed prekey.
    pub signed_prekey: SignedPrekey,
    /// When these keys were uploaded, milliseconds since the Unix epoch.
    pub updated_at_ms: i64,
}

/// One X25519 one-time prekey with the id its device gave it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OneTimePrekey {
    /// The device's id for the key; unique among the device's stored prekeys.
    pub id: u32,
    /// The X25519 public key.
    pub public_key: [u8; PUBLIC_KEY_LEN],
}

/// What a sender gets for one device of a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceBundle {
    /// The device.
    pub device_id: String,
    /// Its identity key and signed prekey.
    pub keys: DeviceKeys,
    /// One of its one-time prekeys, now removed from the directory; `None`
    /// when the device has none left.
    pub one_time_prekey: Option<OneTimePrekey>,
}

/// Capacity limits the directory enforces atomically with each write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyLimits {
    /// Most devices one user may have keys for.
    pub max_devices: usize,
    /// Most one-time prekeys stored for one device.
    pub max_one_time_prekeys: u64,
}

/// The outcome of [`KeyDirectory::put_device_keys`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutDeviceKeys {
    /// The device had no keys; it has now.
    Created,
    /// The device's keys were replaced. A new identity key means a new
    /// installation, whose old one-time prekeys are useless, so they are
    /// discarded; with the same identity key they are kept.
    Replaced {
        /// How many one-time prekeys were discarded (0 when the identity key is unchanged).
        discarded_one_time_prekeys: u64,
    },
    /// The user already has keys for `max` other devices; nothing was stored.
    TooManyDevices {
        /// The limit that was reached.
        max: usize,
    },
}

/// The outcome of [`KeyDirectory::add_one_time_prekeys`]. Only `Added` changes
/// anything: a batch is stored whole or not at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddOneTimePrekeys {
    /// The batch was stored.
    Added {
        /// How many one-time prekeys the device has now.
        stored: u64,
    },
    /// The device has no keys ([`KeyDirectory::put_device_keys`] comes first).
    UnknownDevice,
    /// The id is stored already, or appears twice in the batch.
    DuplicateId(u32),
    /// Storing the batch would exceed the limit.
    TooMany {
        /// How many one-time prekeys the device has.
        stored: u64,
        /// The limit.
        max: u64,
    },
}

/// The directory of devices' public keys.
///
/// Every method is atomic. Users and device ids are compared byte for byte;
/// validating them is the caller's job.
#[async_trait]
pub trait KeyDirectory: Send + Sync + 'static {
    /// Stores `user`'s `device_id` keys, creating the device or replacing its
    /// keys (see [`PutDeviceKeys`] for what happens to its one-time prekeys).
    /// A new device is refused once the user has `limits.max_devices`.
    async fn put_device_keys(
        &self,
        user: &str,
        device_id: &str,
        keys: DeviceKeys,
        limits: KeyLimits,
    ) -> Result<PutDeviceKeys, StoreError>;

    /// The stored keys of one device; `Ok(None)` if it has none.
    async fn device_keys(
        &self,
        user: &str,
        device_id: &str,
    ) -> Result<Option<DeviceKeys>, StoreError>;

    /// Adds a batch of one-time prekeys to a device, all or nothing: refused
    /// if the device is unknown, an id is taken or repeated, or the device
    /// would hold more than `limits.max_one_time_prekeys`.
    async fn add_one_time_prekeys(
        &self,
        user: &str,
        device_id: &str,
        prekeys: Vec<OneTimePrekey>,
        limits: KeyLimits,
    ) -> Result<AddOneTimePrekeys, StoreError>;

    /// Every device of `user` (in device id order) with one one-time prekey
    /// each (its lowest id), taken out of the directory in the same
    /// transaction: concurrent calls never hand out the same prekey. Empty if
    /// the user has no devices.
    async fn take_bundles(&self, user: &str) -> Result<Vec<DeviceBundle>, StoreError>;

    /// How many one-time prekeys a device has left; `Ok(None)` if the device
    /// has no keys.
    async fn one_time_prekey_count(
        &self,
        user: &str,
        device_id: &str,
    ) -> Result<Option<u64>, StoreError>;
}
