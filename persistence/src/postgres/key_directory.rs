//! [`KeyDirectory`] for [`PostgresStore`]: routes each method to `keys`,
//! under the operation timeout.

use async_trait::async_trait;

use super::{keys, PostgresStore};
use crate::{
    AddOneTimePrekeys, DeviceBundle, DeviceKeys, KeyDirectory, KeyLimits, OneTimePrekey,
    PutDeviceKeys, StoreError,
};

#[async_trait]
impl KeyDirectory for PostgresStore {
    async fn put_device_keys(
        &self,
        user: &str,
        device_id: &str,
        keys: DeviceKeys,
        limits: KeyLimits,
    ) -> Result<PutDeviceKeys, StoreError> {
        self.timed("storing device keys", async {
            keys::put(&mut self.client().await?, user, device_id, keys, limits).await
        })
        .await
    }

    async fn device_keys(
        &self,
        user: &str,
        device_id: &str,
    ) -> Result<Option<DeviceKeys>, StoreError> {
        self.timed("reading device keys", async {
            keys::get(&self.client().await?, user, device_id).await
        })
        .await
    }

    async fn add_one_time_prekeys(
        &self,
        user: &str,
        device_id: &str,
        prekeys: Vec<OneTimePrekey>,
        limits: KeyLimits,
    ) -> Result<AddOneTimePrekeys, StoreError> {
        self.timed("storing one-time prekeys", async {
            keys::add_one_time(&mut self.client().await?, user, device_id, prekeys, limits).await
        })
        .await
    }

    async fn take_bundles(&self, user: &str) -> Result<Vec<DeviceBundle>, StoreError> {
        self.timed("taking key bundles", async {
            keys::take_bundles(&mut self.client().await?, user).await
        })
        .await
    }

    async fn one_time_prekey_count(
        &self,
        user: &str,
        device_id: &str,
    ) -> Result<Option<u64>, StoreError> {
        self.timed("counting one-time prekeys", async {
            keys::one_time_count(&self.client().await?, user, device_id).await
        })
        .await
    }
}
