//! The embedded key directory tables:
//!
//! - `key_devices`: `(user, device id) -> encoded keys` (see `key_codec`).
//! - `one_time_prekeys`: `(user, device id, prekey id) -> X25519 public key`,
//!   so a device's prekeys are one range scan in id order.
//!
//! These are blocking functions over an open [`Database`]; the store calls
//! them on Tokio's blocking pool. Each write is one durable transaction, and
//! redb admits one write transaction at a time, so every check-then-write
//! (limits, duplicate ids, taking a prekey) is atomic.

use std::collections::BTreeSet;

use redb::{Database, ReadableDatabase, ReadableTable, Table, TableDefinition, WriteTransaction};

use super::{begin_durable_write, key_codec, Failure};
use crate::keys::PUBLIC_KEY_LEN;
use crate::{AddOneTimePrekeys, DeviceBundle, DeviceKeys, KeyLimits, OneTimePrekey, PutDeviceKeys};

/// The devices table: key is `(user, device id)`.
const DEVICES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("key_devices");

/// The one-time prekeys table: key is `(user, device id, prekey id)`.
const ONE_TIME: TableDefinition<(&str, &str, u32), [u8; PUBLIC_KEY_LEN]> =
    TableDefinition::new("one_time_prekeys");

/// Creates the key directory tables if they do not exist yet.
pub(super) fn create_tables(tx: &WriteTransaction) -> Result<(), Failure> {
    tx.open_table(DEVICES)?;
    tx.open_table(ONE_TIME)?;
    Ok(())
}

/// Creates or replaces the keys of `user`'s `device_id`.
pub(super) fn put(
    db: &Database,
    user: &str,
    device_id: &str,
    keys: DeviceKeys,
    limits: KeyLimits,
) -> Result<PutDeviceKeys, Failure> {
    let tx = begin_durable_write(db)?;
    let outcome = {
        let mut devices = tx.open_table(DEVICES)?;
        let previous = match devices.get((user, device_id))? {
            Some(value) => Some(key_codec::decode(user, device_id, value.value())?),
            None => None,
        };
        let outcome = match previous {
            None => {
                if device_ids(&devices, user)?.len() >= limits.max_devices {
                    // Nothing was written; dropping the transaction leaves the file untouched.
                    return Ok(PutDeviceKeys::TooManyDevices {
                        max: limits.max_devices,
                    });
                }
                PutDeviceKeys::Created
            }
            Some(previous) if previous.identity_key == keys.identity_key => {
                PutDeviceKeys::Replaced {
                    discarded_one_time_prekeys: 0,
                }
            }
            Some(_) => {
                let mut one_time = tx.open_table(ONE_TIME)?;
                let ids = prekey_ids(&one_time, user, device_id)?;
                for id in &ids {
                    one_time.remove((user, device_id, *id))?;
                }
                PutDeviceKeys::Replaced {
                    discarded_one_time_prekeys: ids.len() as u64,
                }
            }
        };
        devices.insert((user, device_id), key_codec::encode(&keys).as_slice())?;
        outcome
    };
    tx.commit()?;
    Ok(outcome)
}

/// The keys of `user`'s `device_id`, if it has any.
pub(super) fn get(
    db: &Database,
    user: &str,
    device_id: &str,
) -> Result<Option<DeviceKeys>, Failure> {
    let tx = db.begin_read()?;
    let devices = tx.open_table(DEVICES)?;
    match devices.get((user, device_id))? {
        Some(value) => Ok(Some(key_codec::decode(user, device_id, value.value())?)),
        None => Ok(None),
    }
}

/// Adds `prekeys` to `user`'s `device_id`, all or nothing.
pub(super) fn add_one_time(
    db: &Database,
    user: &str,
    device_id: &str,
    prekeys: Vec<OneTimePrekey>,
    limits: KeyLimits,
) -> Result<AddOneTimePrekeys, Failure> {
    let tx = begin_durable_write(db)?;
    let stored = {
        let devices = tx.open_table(DEVICES)?;
        if devices.get((user, device_id))?.is_none() {
            return Ok(AddOneTimePrekeys::UnknownDevice);
        }
        let mut one_time = tx.open_table(ONE_TIME)?;
        let mut ids = prekey_ids(&one_time, user, device_id)?;
        let stored = ids.len() as u64;
        if stored + prekeys.len() as u64 > limits.max_one_time_prekeys {
            return Ok(AddOneTimePrekeys::TooMany {
                stored,
                max: limits.max_one_time_prekeys,
            });
        }
        for prekey in &prekeys {
            if !ids.insert(prekey.id) {
                return Ok(AddOneTimePrekeys::DuplicateId(prekey.id));
            }
        }
        for prekey in &prekeys {
            one_time.insert((user, device_id, prekey.id), prekey.public_key)?;
        }
        ids.len() as u64
    };
    tx.commit()?;
    Ok(AddOneTimePrekeys::Added { stored })
}

/// Every device of `user` with its lowest one-time prekey, which is removed.
pub(super) fn take_bundles(db: &Database, user: &str) -> Result<Vec<DeviceBundle>, Failure> {
    let tx = begin_durable_write(db)?;
    let bundles = {
        let devices = tx.open_table(DEVICES)?;
        let mut one_time = tx.open_table(ONE_TIME)?;
        let mut bundles = Vec::new();
        // (user, "") is the smallest key of the user; their devices follow in id order.
        for entry in devices.range((user, "")..)? {
            let (key, value) = entry?;
            let (entry_user, device_id) = key.value();
            if entry_user != user {
                break;
            }
            let keys = key_codec::decode(user, device_id, value.value())?;
            let first = one_time
                .range((user, device_id, 0)..=(user, device_id, u32::MAX))?
                .next()
                .transpose()?
                .map(|(key, value)| OneTimePrekey {
                    id: key.value().2,
                    public_key: value.value(),
                });
            if let Some(prekey) = &first {
                one_time.remove((user, device_id, prekey.id))?;
            }
            bundles.push(DeviceBundle {
                device_id: device_id.to_owned(),
                keys,
                one_time_prekey: first,
            });
        }
        bundles
    };
    if bundles.iter().any(|b| b.one_time_prekey.is_some()) {
        tx.commit()?;
    }
    // Otherwise nothing was taken, and dropping the transaction leaves the file untouched.
    Ok(bundles)
}

/// How many one-time prekeys `user`'s `device_id` has; `None` if it has no keys.
pub(super) fn count_one_time(
    db: &Database,
    user: &str,
    device_id: &str,
) -> Result<Option<u64>, Failure> {
    let tx = db.begin_read()?;
    let devices = tx.open_table(DEVICES)?;
    if devices.get((user, device_id))?.is_none() {
        return Ok(None);
    }
    let one_time = tx.open_table(ONE_TIME)?;
    Ok(Some(prekey_ids(&one_time, user, device_id)?.len() as u64))
}

/// The device ids `user` has keys for.
fn device_ids(devices: &Table<(&str, &str), &[u8]>, user: &str) -> Result<Vec<String>, Failure> {
    let mut ids = Vec::new();
    for entry in devices.range((user, "")..)? {
        let (key, _) = entry?;
        let (entry_user, device_id) = key.value();
        if entry_user != user {
            break;
        }
        ids.push(device_id.to_owned());
    }
    Ok(ids)
}

/// The ids of the one-time prekeys stored for `user`'s `device_id`.
fn prekey_ids(
    one_time: &impl ReadableTable<(&'static str, &'static str, u32), [u8; PUBLIC_KEY_LEN]>,
    user: &str,
    device_id: &str,
) -> Result<BTreeSet<u32>, Failure> {
    let mut ids = BTreeSet::new();
    for entry in one_time.range((user, device_id, 0)..=(user, device_id, u32::MAX))? {
        let (key, _) = entry?;
        ids.insert(key.value().2);
    }
    Ok(ids)
}
