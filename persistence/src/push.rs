//! Push targets: where to notify a user's device while it has no live
//! session. Part of [`MetadataStore`](crate::MetadataStore).
//!
//! A user has at most one target per device id; storing a target for a device
//! that has one replaces it. The store does not interpret the kind or the
//! target (the broker validates both) and does not check that the user exists.

/// One device's push registration as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushTarget {
    /// The username the device belongs to.
    pub user: String,
    /// The device's id, chosen by the client; unique per user.
    pub device_id: String,
    /// The notifier kind the target is meant for (e.g. `webhook`, `ntfy`).
    pub kind: String,
    /// Where to deliver: an opaque token, topic or address, by kind.
    pub target: String,
    /// When the target was last stored, ms since the Unix epoch.
    pub updated_at_ms: i64,
}
