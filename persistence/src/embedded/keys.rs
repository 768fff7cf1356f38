//! [`KeyDirectory`] for [`EmbeddedStore`]: each method runs one operation on
//! the key directory tables (`key_tables`) on the blocking pool.

use async_trait::async_trait;
use redb::WriteTransaction;

use super::{key_tables, EmbeddedStore, Failure};
use crate::{
    AddOneTimePrekeys, DeviceBundle, DeviceKeys, KeyDirectory, KeyLimits, OneTimePrekey,
    PutDeviceKeys, StoreError,
};

/// Creates the key directory tables if they do not exist yet (called when the store opens).
pub(super) fn create_tables(tx: &WriteTransaction) -> Result<(), Failure> {
    key_tables::create_tables(tx)
}

#[async_trait]
impl KeyDirectory for EmbeddedStore {
    async fn put_device_keys(
        &self,
        user: &str,
        device_id: &str,
        keys: DeviceKeys,
        limits: KeyLimits,
    ) -> Result<PutDeviceKeys, StoreError> {
        let (user, device_id) = (user.to_owned(), device_id.to_owned());
        self.run_blocking(move |db| key_tables::put(db, &user, &device_id, keys, limits))
            .await
    }

    async fn device_keys(
        &self,
        user: &str,
        device_id: &str,
    ) -> Result<Option<DeviceKeys>, StoreError> {
        let (user, device_id) = (user.to_owned(), device_id.to_owned());
        self.run_blocking(move |db| key_tables::get(db, &user, &device_id))
            .await
    }

    async fn add_one_time_prekeys(
        &self,
        user: &str,
        device_id: &str,
        prekeys: Vec<OneTimePrekey>,
        limits: KeyLimits,
    ) -> Result<AddOneTimePrekeys, StoreError> {
        let (user, device_id) = (user.to_owned(), device_id.to_owned());
        self.run_blocking(move |db| {
            key_tables::add_one_time(db, &user, &device_id, prekeys, limits)
        })
        .await
    }

    async fn take_bundles(&self, user: &str) -> Result<Vec<DeviceBundle>, StoreError> {
        let user = user.to_owned();
        self.run_blocking(move |db| key_tables::take_bundles(db, &user))
            .await
    }

    async fn one_time_prekey_count(
        &self,
        user: &str,
        device_id: &str,
    ) -> Result<Option<u64>, StoreError> {
        let (user, device_id) = (user.to_owned(), device_id.to_owned());
        self.run_blocking(move |db| key_tables::count_one_time(db, &user, &device_id))
            .await
    }
}
