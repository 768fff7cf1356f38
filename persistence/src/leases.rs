//! Node leases: which process runs each node id of a cluster, so that two
//! live nodes never share one.
//!
//! A node id goes into every message id a node assigns and names the node's
//! reading position on the cluster bus, so two processes running with one id
//! at the same time would produce colliding message ids and overwrite each
//! other's bus offsets. A lease settles who runs an id: a holder takes it for
//! a time to live (measured by the store's clock, never the nodes'), renews
//! it well before it runs out, and releases it when it stops. Another holder
//! is refused while the lease is live and gets it once the lease has been
//! released or has expired, which is what happens to the lease of a node that
//! was killed.
//!
//! Only stores that several nodes share offer leases (PostgreSQL). The
//! embedded store is one file that one process at a time can open, so there
//! is nothing to arbitrate.

use std::time::Duration;

use async_trait::async_trait;

use crate::StoreError;

/// Who asks for a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseHolder {
    /// Identifies the holder: a lease held under this id can be renewed or
    /// reclaimed by it at any time. It must never be used by two live
    /// processes at once.
    pub id: String,
    /// Where the holder runs (host, process, directory), for the people who
    /// read a refusal; stored with the lease and replaced on each renewal.
    pub description: String,
}

/// A lease as the store holds it. Times are the store's clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The node id the lease is on.
    pub node_id: u16,
    /// The holder's [`LeaseHolder::id`].
    pub holder: String,
    /// The holder's [`LeaseHolder::description`] at its last renewal.
    pub description: String,
    /// When this holder took the lease, ms since the Unix epoch (kept across
    /// its renewals).
    pub acquired_at_ms: i64,
    /// When it was last taken or renewed, ms since the Unix epoch.
    pub renewed_at_ms: i64,
    /// When it runs out unless renewed, ms since the Unix epoch.
    pub expires_at_ms: i64,
    /// How long it was still valid when the store answered; zero once it has
    /// expired.
    pub valid_for: Duration,
}

impl Lease {
    /// How long before the store's answer the lease was last renewed.
    pub fn renewed_ago(&self) -> Duration {
        let ttl_ms = u64::try_from(self.expires_at_ms - self.renewed_at_ms).unwrap_or(0);
        Duration::from_millis(ttl_ms).saturating_sub(self.valid_for)
    }

    /// The holder, its age and validity in words, for error messages.
    pub fn describe(&self) -> String {
        format!(
            "held by {} (holder id {}), renewed {:.1} s ago, valid for another {:.1} s",
            self.description,
            self.holder,
            self.renewed_ago().as_secs_f64(),
            self.valid_for.as_secs_f64()
        )
    }
}

/// Leases on node ids, shared by every node of a cluster.
#[async_trait]
pub trait NodeLeases: Send + Sync + 'static {
    /// Takes or renews the lease on `node_id` for `holder`, valid for `ttl`
    /// from now by the store's clock (at least 1 ms).
    ///
    /// Granted when there is no lease on `node_id`, when its lease has
    /// expired, or when `holder` holds it already (a renewal, or a holder
    /// reclaiming its own lease after a restart; its expired lease too, as
    /// long as nobody took it meanwhile). The description is replaced; the
    /// acquisition time is kept while the holder stays the same.
    ///
    /// # Errors
    ///
    /// [`StoreError::AlreadyExists`] if another holder's lease on `node_id`
    /// has not expired; the message names the node id, the other holder's
    /// description and how long its lease remains valid.
    /// [`StoreError::Unavailable`] if the store could not be asked.
    async fn acquire(
        &self,
        node_id: u16,
        holder: &LeaseHolder,
        ttl: Duration,
    ) -> Result<Lease, StoreError>;

    /// Gives up the lease `holder_id` holds on `node_id`, expired or not, so
    /// that another holder may take it at once. Returns whether there was one;
    /// another holder's lease is left alone.
    async fn release(&self, node_id: u16, holder_id: &str) -> Result<bool, StoreError>;

    /// The lease on `node_id`, live or expired, if there is one.
    async fn lease(&self, node_id: u16) -> Result<Option<Lease>, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(renewed_at_ms: i64, expires_at_ms: i64, valid_for_ms: u64) -> Lease {
        Lease {
            node_id: 7,
            holder: "h1".into(),
            description: "parley on a".into(),
            acquired_at_ms: 0,
            renewed_at_ms,
            expires_at_ms,
            valid_for: Duration::from_millis(valid_for_ms),
        }
    }

    #[test]
    fn renewed_ago_is_the_ttl_minus_what_is_left() {
        assert_eq!(
            lease(1_000, 31_000, 27_500).renewed_ago(),
            Duration::from_millis(2_500)
        );
        assert_eq!(
            lease(1_000, 31_000, 0).renewed_ago(),
            Duration::from_secs(30),
            "an expired lease was renewed at least its ttl ago"
        );
        assert_eq!(
            lease(31_000, 1_000, 0).renewed_ago(),
            Duration::ZERO,
            "nonsense times do not underflow"
        );
    }

    #[test]
    fn the_description_names_holder_and_validity() {
        let text = lease(1_000, 31_000, 27_500).describe();
        assert!(text.contains("parley on a"), "{text}");
        assert!(text.contains("holder id h1"), "{text}");
        assert!(text.contains("renewed 2.5 s ago"), "{text}");
        assert!(text.contains("valid for another 27.5 s"), "{text}");
    }
}
