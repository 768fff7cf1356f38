//! Parley's storage layer: traits for metadata, history, offline queues, the
//! end-to-end key directory, node leases, the session directory, the cluster bus and
//! durable MQTT sessions, and one module per backend.
//!
//! Every backend of a trait passes the same conformance suite
//! ([`conformance`]), so the broker can treat them as interchangeable.

mod bus;
pub mod conformance;
mod conversations;
mod directory;
pub mod embedded;
mod error;
mod history;
pub mod kafka;
pub mod keys;
mod leases;
mod metadata;
mod mqtt_retained;
mod offline;
pub mod postgres;
mod push;
mod relations;
pub mod scylla;
pub mod sessions;

pub use bus::{
    Audience, BusConsumer, BusPosition, BusRecord, ClusterBus, Delivery, MqttForward, NodeTarget,
    SharedGroupRef,
};
pub use conversations::{ConversationKind, ConversationRecord, MemberRecord, ReadCursor, Role};
pub use directory::{DirectoryEntry, SessionDirectory};
pub use error::StoreError;
pub use history::{
    Amend, AppendRequest, Appended, Direction, HistoryStore, PageRequest, PendingAppend,
    StoredMessage,
};
pub use keys::{
    AddOneTimePrekeys, DeviceBundle, DeviceKeys, KeyDirectory, KeyLimits, OneTimePrekey,
    PutDeviceKeys, SignedPrekey,
};
pub use leases::{Lease, LeaseHolder, NodeLeases};
pub use metadata::{MetadataStore, NewUser, UserRecord};
pub use mqtt_retained::{ClusterMqttStore, OrphanedWill, RetainedRow};
pub use offline::OfflineQueue;
pub use push::PushTarget;
pub use relations::{Relation, RelationRecord};
pub use sessions::{SessionHandover, SessionStore};
