//! The session directory: which node each live MQTT session (a user and a
//! client id) is connected to, shared by every node of a cluster.
//!
//! A node claims an entry when a connection passes CONNECT and removes it
//! when the connection ends. The last claim of a (user, client id) wins: it
//! gets a generation higher than any earlier claim of that key, and learns
//! which entry it replaced, so the node holding the replaced connection can
//! be told to end it (a takeover across nodes).
//!
//! A persistent session whose connection ended keeps its entry, marked
//! detached ([`SessionDirectory::detach`]), until its node removes it when
//! the session expires, so deliveries still reach the node that queues them.
//!
//! Entries carry no lease of their own: an entry is live while the lease of
//! its node id ([`crate::NodeLeases`]) is, so a node renews all its entries
//! by renewing one row, and the entries of a node that died without
//! shutting down expire with its lease and are removed by
//! [`SessionDirectory::expire`].

use async_trait::async_trait;

use crate::StoreError;

/// One live session as the directory lists it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DirectoryEntry {
    /// The authenticated user.
    pub user: String,
    /// The MQTT client id.
    pub client_id: String,
    /// The node the connection is on.
    pub node_id: u16,
    /// Orders the claims of one (user, client id): a later claim always has
    /// a higher generation.
    pub generation: i64,
}

/// Which node holds each live session, shared by the nodes of a cluster.
#[async_trait]
pub trait SessionDirectory: Send + Sync + 'static {
    /// Records that `user`'s `client_id` is now connected to `node_id`,
    /// replacing any entry of that key. Returns the new entry (with its
    /// generation, higher than the replaced one's) and the entry it
    /// replaced, if that one was live.
    async fn claim(
        &self,
        user: &str,
        client_id: &str,
        node_id: u16,
    ) -> Result<(DirectoryEntry, Option<DirectoryEntry>), StoreError>;

    /// Removes `entry` if it is still the current entry of its key (a
    /// session taken over since is left alone). Returns whether it was.
    async fn remove(&self, entry: &DirectoryEntry) -> Result<bool, StoreError>;

    /// Removes every entry of `node_id` (at start-up, for what a crashed
    /// run left, and at shutdown) and returns them.
    async fn clear_node(&self, node_id: u16) -> Result<Vec<DirectoryEntry>, StoreError>;

    /// Removes and returns the entries of nodes whose lease has expired or
    /// was released: the sessions of nodes that died.
    async fn expire(&self) -> Result<Vec<DirectoryEntry>, StoreError>;

    /// Every live entry (of a node whose lease is live), detached or not.
    async fn live(&self) -> Result<Vec<DirectoryEntry>, StoreError>;

    /// Marks `entry` detached if it is still the current entry of its key:
    /// its connection ended but its persistent session stays on its node
    /// until it expires. A later claim of the key clears the mark. Returns
    /// whether it was current.
    async fn detach(&self, entry: &DirectoryEntry) -> Result<bool, StoreError>;

    /// The live entries that are detached (a subset of
    /// [`SessionDirectory::live`]).
    async fn detached(&self) -> Result<Vec<DirectoryEntry>, StoreError>;
}
