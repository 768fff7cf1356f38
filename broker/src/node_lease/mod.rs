//! A node's lease on its node id, so that two live nodes on one shared store
//! never run with the same id (`docs/cluster.md`, "Node ids").
//!
//! With `storage.backend = "postgres"` a node takes the lease of its
//! `node_id` before it serves anything ([`NodeLease::take`]) and refuses to
//! start if another live process holds it. It renews the lease every third
//! of `cluster.node_lease_ttl_ms` ([`renewal`]); should a renewal find the
//! lease taken by someone else, the node stops. A graceful shutdown releases
//! it ([`NodeLease::release`]), so the id is free at once; the lease of a
//! killed node runs out after its time to live, except for the node itself:
//! the holder is the data directory's instance ([`instance`]), so a node
//! restarted on the same data directory takes its lease back at once.
//!
//! - [`instance`]: the holder id in `{data_dir}/instance.id`, locked while
//!   the node runs.
//! - [`renewal`]: the renewal loop and what a loss does.

pub mod instance;
pub mod renewal;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use persistence::{NodeLeases, StoreError};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::Config;
use instance::Instance;
use renewal::{Lost, Renewal};

/// A node's lease on its node id, renewed in the background until released.
pub struct NodeLease {
    /// The store holding the leases.
    leases: Arc<dyn NodeLeases>,
    /// The node id the lease is on.
    node_id: u16,
    /// The holder, with the lock on its data directory.
    instance: Instance,
    /// Cancelled to stop the renewal task.
    stop: CancellationToken,
    /// The renewal task.
    renewal: JoinHandle<()>,
    /// Set if the lease was taken by another holder.
    lost: Arc<Lost>,
}

impl NodeLease {
    /// Takes the lease on `config.node_id` for this node's data directory
    /// and starts renewing it; a loss cancels `node_shutdown`.
    ///
    /// # Errors
    ///
    /// If another live process holds the lease (the message names the node
    /// id and that process), another live node runs on the same data
    /// directory, or the store cannot be asked.
    pub async fn take(
        leases: Arc<dyn NodeLeases>,
        config: &Config,
        node_shutdown: CancellationToken,
    ) -> anyhow::Result<NodeLease> {
        let node_id = config.node_id;
        let ttl = Duration::from_millis(config.cluster.node_lease_ttl_ms);
        let instance = Instance::claim(&config.data_dir).with_context(|| {
            format!(
                "claiming the data directory {} for node id {node_id}",
                config.data_dir.display()
            )
        })?;
        let holder = instance.holder();
        let lease = match leases.acquire(node_id, &holder, ttl).await {
            Ok(lease) => lease,
            Err(e @ StoreError::AlreadyExists(_)) => {
                anyhow::bail!(
                    "node id {node_id} is in use by another live node: {e}. Two live nodes \
                     must never share a node_id: give this node one of its own. If that node \
                     was killed without shutting down, its lease runs out within \
                     cluster.node_lease_ttl_ms ({} ms) of its last renewal; start this node \
                     again then, or restart that node on its own data_dir, which takes the \
                     lease back at once",
                    ttl.as_millis()
                );
            }
            Err(e) => {
                return Err(e).with_context(|| format!("taking the lease on node id {node_id}"))
            }
        };
        info!(
            node_id,
            holder = %holder.id,
            valid_for = ?lease.valid_for,
            renew_every = ?renewal::renew_every(ttl),
            "node lease taken"
        );
        let stop = CancellationToken::new();
        let lost = Arc::new(Lost::default());
        let renewal = tokio::spawn(
            Renewal {
                leases: leases.clone(),
                node_id,
                holder,
                ttl,
                stop: stop.clone(),
                node_shutdown,
                lost: lost.clone(),
            }
            .run(),
        );
        Ok(NodeLease {
            leases,
            node_id,
            instance,
            stop,
            renewal,
            lost,
        })
    }

    /// Waits until the lease is lost to another holder, and returns why.
    /// Never returns while the node keeps its lease.
    pub async fn lost(&self) -> String {
        self.lost.wait().await
    }

    /// Stops renewing (waiting for a renewal under way) and, unless the
    /// lease was lost, releases it so that the node id is free at once.
    /// Failures are logged: the lease then runs out by itself.
    pub async fn release(self) {
        self.stop.cancel();
        if let Err(e) = self.renewal.await {
            warn!(error = %e, "the node lease renewal task failed");
        }
        if self.lost.why().is_some() {
            return;
        }
        match self.leases.release(self.node_id, self.instance.id()).await {
            Ok(true) => info!(node_id = self.node_id, "node lease released"),
            Ok(false) => warn!(
                node_id = self.node_id,
                "the node lease was no longer held at shutdown"
            ),
            Err(e) => warn!(node_id = self.node_id, error = %e,
                "could not release the node lease; it runs out by itself"),
        }
    }
}
