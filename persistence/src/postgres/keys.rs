//! The `key_devices` and `one_time_prekeys` tables: the end-to-end key
//! directory.
//!
//! Every write to one user's keys takes a transaction-scoped advisory lock on
//! that user first, so the device limit, the prekey limit, duplicate ids and
//! the hand-out of one-time prekeys are decided one transaction at a time per
//! user, on every node. Reads take no lock.

use std::collections::{HashMap, HashSet};

use deadpool_postgres::{Client, Transaction};

use super::codec::{prekey_id_from_db, public_key_from_db, signature_from_db};
use super::failure::{column, Context};
use crate::{
    AddOneTimePrekeys, DeviceBundle, DeviceKeys, KeyLimits, OneTimePrekey, PutDeviceKeys,
    SignedPrekey, StoreError,
};

/// The first key of the per-user advisory locks (`"keys"` in ASCII); the
/// second is a hash of the username. Distinct users may share a lock, which
/// only makes them wait for each other.
const USER_LOCK_CLASS: i32 = 0x6b65_7973;

/// Takes the advisory lock of `user`'s keys until the transaction ends.
async fn lock_user(tx: &Transaction<'_>, user: &str) -> Result<(), StoreError> {
    let statement = tx
        .prepare_cached("SELECT pg_advisory_xact_lock($1, hashtext($2))")
        .await
        .context("preparing the key directory lock")?;
    tx.execute(&statement, &[&USER_LOCK_CLASS, &user])
        .await
        .context("locking a user's keys")?;
    Ok(())
}

/// Creates or replaces the keys of `user`'s `device_id`.
pub(super) async fn put(
    client: &mut Client,
    user: &str,
    device_id: &str,
    keys: DeviceKeys,
    limits: KeyLimits,
) -> Result<PutDeviceKeys, StoreError> {
    let tx = client
        .transaction()
        .await
        .context("starting a key upload")?;
    lock_user(&tx, user).await?;
    let statement = tx
        .prepare_cached(
            "SELECT identity_key FROM key_devices WHERE username = $1 AND device_id = $2",
        )
        .await
        .context("preparing the device lookup")?;
    let previous = tx
        .query_opt(&statement, &[&user, &device_id])
        .await
        .context("reading a device's keys")?;
    let outcome = match previous {
        None => {
            let statement = tx
                .prepare_cached("SELECT count(*) FROM key_devices WHERE username = $1")
                .await
                .context("preparing the device count")?;
            let row = tx
                .query_one(&statement, &[&user])
                .await
                .context("counting a user's devices")?;
            let devices = u64::try_from(column::<i64>(&row, 0)?).unwrap_or(0);
            if devices >= limits.max_devices as u64 {
                tx.rollback().await.context("ending a refused key upload")?;
                return Ok(PutDeviceKeys::TooManyDevices {
                    max: limits.max_devices,
                });
            }
            PutDeviceKeys::Created
        }
        Some(row) => {
            let identity: Vec<u8> = column(&row, 0)?;
            if identity == keys.identity_key {
                PutDeviceKeys::Replaced {
                    discarded_one_time_prekeys: 0,
                }
            } else {
                let statement = tx
                    .prepare_cached(
                        "DELETE FROM one_time_prekeys WHERE username = $1 AND device_id = $2",
                    )
                    .await
                    .context("preparing the prekey discard")?;
                let discarded = tx
                    .execute(&statement, &[&user, &device_id])
                    .await
                    .context("discarding one-time prekeys")?;
                PutDeviceKeys::Replaced {
                    discarded_one_time_prekeys: discarded,
                }
            }
        }
    };
    let statement = tx
        .prepare_cached(
            "INSERT INTO key_devices (username, device_id, identity_key, signed_prekey, \
                 signed_prekey_signature, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (username, device_id) DO UPDATE \
             SET identity_key = EXCLUDED.identity_key, \
                 signed_prekey = EXCLUDED.signed_prekey, \
                 signed_prekey_signature = EXCLUDED.signed_prekey_signature, \
                 updated_at_ms = EXCLUDED.updated_at_ms",
        )
        .await
        .context("preparing the device upsert")?;
    tx.execute(
        &statement,
        &[
            &user,
            &device_id,
            &keys.identity_key.as_slice(),
            &keys.signed_prekey.public_key.as_slice(),
            &keys.signed_prekey.signature.as_slice(),
            &keys.updated_at_ms,
        ],
    )
    .await
    .context("storing a device's keys")?;
    tx.commit().await.context("committing a key upload")?;
    Ok(outcome)
}

/// Decodes the device columns `identity_key, signed_prekey,
/// signed_prekey_signature, updated_at_ms` starting at column `first`.
fn device_keys_from_row(row: &tokio_postgres::Row, first: usize) -> Result<DeviceKeys, StoreError> {
    let identity: Vec<u8> = column(row, first)?;
    let prekey: Vec<u8> = column(row, first + 1)?;
    let signature: Vec<u8> = column(row, first + 2)?;
    Ok(DeviceKeys {
        identity_key: public_key_from_db(&identity, "key_devices.identity_key")?,
        signed_prekey: SignedPrekey {
            public_key: public_key_from_db(&prekey, "key_devices.signed_prekey")?,
            signature: signature_from_db(&signature, "key_devices.signed_prekey_signature")?,
        },
        updated_at_ms: column(row, first + 3)?,
    })
}

/// The keys of one device, if it has any.
pub(super) async fn get(
    client: &Client,
    user: &str,
    device_id: &str,
) -> Result<Option<DeviceKeys>, StoreError> {
    let statement = client
        .prepare_cached(
            "SELECT identity_key, signed_prekey, signed_prekey_signature, updated_at_ms \
             FROM key_devices WHERE username = $1 AND device_id = $2",
        )
        .await
        .context("preparing the device keys lookup")?;
    let row = client
        .query_opt(&statement, &[&user, &device_id])
        .await
        .context("reading a device's keys")?;
    row.map(|row| device_keys_from_row(&row, 0)).transpose()
}

/// Adds a batch of one-time prekeys, all or nothing.
pub(super) async fn add_one_time(
    client: &mut Client,
    user: &str,
    device_id: &str,
    prekeys: Vec<OneTimePrekey>,
    limits: KeyLimits,
) -> Result<AddOneTimePrekeys, StoreError> {
    let tx = client
        .transaction()
        .await
        .context("starting a prekey upload")?;
    lock_user(&tx, user).await?;
    let statement = tx
        .prepare_cached(
            "SELECT (SELECT count(*) FROM one_time_prekeys o \
                     WHERE o.username = d.username AND o.device_id = d.device_id) \
             FROM key_devices d WHERE d.username = $1 AND d.device_id = $2",
        )
        .await
        .context("preparing the prekey count")?;
    let Some(row) = tx
        .query_opt(&statement, &[&user, &device_id])
        .await
        .context("counting a device's prekeys")?
    else {
        tx.rollback()
            .await
            .context("ending a refused prekey upload")?;
        return Ok(AddOneTimePrekeys::UnknownDevice);
    };
    let stored = u64::try_from(column::<i64>(&row, 0)?).unwrap_or(0);
    if stored.saturating_add(prekeys.len() as u64) > limits.max_one_time_prekeys {
        tx.rollback()
            .await
            .context("ending a refused prekey upload")?;
        return Ok(AddOneTimePrekeys::TooMany {
            stored,
            max: limits.max_one_time_prekeys,
        });
    }
    let ids: Vec<i64> = prekeys.iter().map(|p| i64::from(p.id)).collect();
    let statement = tx
        .prepare_cached(
            "SELECT prekey_id FROM one_time_prekeys \
             WHERE username = $1 AND device_id = $2 AND prekey_id = ANY($3)",
        )
        .await
        .context("preparing the prekey id check")?;
    let rows = tx
        .query(&statement, &[&user, &device_id, &ids])
        .await
        .context("checking prekey ids")?;
    let mut taken = HashSet::with_capacity(rows.len() + prekeys.len());
    for row in &rows {
        taken.insert(prekey_id_from_db(column(row, 0)?)?);
    }
    for prekey in &prekeys {
        if !taken.insert(prekey.id) {
            tx.rollback()
                .await
                .context("ending a refused prekey upload")?;
            return Ok(AddOneTimePrekeys::DuplicateId(prekey.id));
        }
    }
    let public_keys: Vec<&[u8]> = prekeys.iter().map(|p| p.public_key.as_slice()).collect();
    let statement = tx
        .prepare_cached(
            "INSERT INTO one_time_prekeys (username, device_id, prekey_id, public_key) \
             SELECT $1, $2, p.id, p.key FROM UNNEST($3::int8[], $4::bytea[]) AS p(id, key)",
        )
        .await
        .context("preparing the prekey insert")?;
    tx.execute(&statement, &[&user, &device_id, &ids, &public_keys])
        .await
        .context("storing one-time prekeys")?;
    tx.commit().await.context("committing a prekey upload")?;
    Ok(AddOneTimePrekeys::Added {
        stored: stored + prekeys.len() as u64,
    })
}

/// Every device of `user` with its lowest one-time prekey, taken out.
pub(super) async fn take_bundles(
    client: &mut Client,
    user: &str,
) -> Result<Vec<DeviceBundle>, StoreError> {
    let tx = client
        .transaction()
        .await
        .context("starting a bundle take")?;
    lock_user(&tx, user).await?;
    let statement = tx
        .prepare_cached(
            "SELECT device_id, identity_key, signed_prekey, signed_prekey_signature, \
                 updated_at_ms \
             FROM key_devices WHERE username = $1 ORDER BY device_id",
        )
        .await
        .context("preparing the device listing")?;
    let devices = tx
        .query(&statement, &[&user])
        .await
        .context("listing a user's devices")?;
    let statement = tx
        .prepare_cached(
            "WITH lowest AS ( \
                 SELECT DISTINCT ON (device_id) device_id, prekey_id \
                 FROM one_time_prekeys WHERE username = $1 \
                 ORDER BY device_id, prekey_id) \
             DELETE FROM one_time_prekeys o USING lowest l \
             WHERE o.username = $1 AND o.device_id = l.device_id \
                 AND o.prekey_id = l.prekey_id \
             RETURNING o.device_id, o.prekey_id, o.public_key",
        )
        .await
        .context("preparing the prekey take")?;
    let taken_rows = tx
        .query(&statement, &[&user])
        .await
        .context("taking one-time prekeys")?;
    let mut taken: HashMap<String, OneTimePrekey> = HashMap::with_capacity(taken_rows.len());
    for row in &taken_rows {
        let public_key: Vec<u8> = column(row, 2)?;
        taken.insert(
            column(row, 0)?,
            OneTimePrekey {
                id: prekey_id_from_db(column(row, 1)?)?,
                public_key: public_key_from_db(&public_key, "one_time_prekeys.public_key")?,
            },
        );
    }
    let mut bundles = Vec::with_capacity(devices.len());
    for row in &devices {
        let device_id: String = column(row, 0)?;
        bundles.push(DeviceBundle {
            keys: device_keys_from_row(row, 1)?,
            one_time_prekey: taken.remove(&device_id),
            device_id,
        });
    }
    tx.commit().await.context("committing a bundle take")?;
    Ok(bundles)
}

/// How many one-time prekeys a device has left, if it has keys.
pub(super) async fn one_time_count(
    client: &Client,
    user: &str,
    device_id: &str,
) -> Result<Option<u64>, StoreError> {
    let statement = client
        .prepare_cached(
            "SELECT (SELECT count(*) FROM one_time_prekeys o \
                     WHERE o.username = d.username AND o.device_id = d.device_id) \
             FROM key_devices d WHERE d.username = $1 AND d.device_id = $2",
        )
        .await
        .context("preparing the prekey count")?;
    let row = client
        .query_opt(&statement, &[&user, &device_id])
        .await
        .context("counting a device's prekeys")?;
    row.map(|row| Ok(u64::try_from(column::<i64>(&row, 0)?).unwrap_or(0)))
        .transpose()
}
