//! Runs the shared conformance suites against [`PostgresStore`], every check
//! with its own store (its own pool) on this run's test database.
//!
//! Needs `PARLEY_TEST_POSTGRES`; see `postgres_support` for what happens
//! without it. Each fixture below is a block that returns from the test
//! (skipping it) when there is no server, and otherwise yields a ready future
//! of the store.

mod postgres_support;

/// [`persistence::MetadataStore`]: users, conversations, read cursors, push targets.
mod metadata {
    use std::sync::Arc;

    use persistence::MetadataStore;

    persistence::metadata_conformance_tests!({
        let Some(store) = crate::postgres_support::store().await else {
            return;
        };
        std::future::ready(Arc::new(store) as Arc<dyn MetadataStore>)
    });
}

/// [`persistence::HistoryStore`]: the message log.
mod history {
    use std::sync::Arc;

    use persistence::HistoryStore;

    persistence::history_conformance_tests!({
        let Some(store) = crate::postgres_support::store().await else {
            return;
        };
        std::future::ready(Arc::new(store) as Arc<dyn HistoryStore>)
    });
}

/// [`persistence::OfflineQueue`]: delivered cursors.
mod offline {
    use std::sync::Arc;

    use persistence::OfflineQueue;

    persistence::offline_conformance_tests!({
        let Some(store) = crate::postgres_support::store().await else {
            return;
        };
        std::future::ready(Arc::new(store) as Arc<dyn OfflineQueue>)
    });
}

/// [`persistence::KeyDirectory`]: device keys and one-time prekeys.
mod keys {
    use std::sync::Arc;

    use persistence::KeyDirectory;

    persistence::key_directory_conformance_tests!({
        let Some(store) = crate::postgres_support::store().await else {
            return;
        };
        std::future::ready(Arc::new(store) as Arc<dyn KeyDirectory>)
    });
}

/// [`persistence::NodeLeases`]: one live holder per node id.
mod leases {
    use std::sync::Arc;

    use persistence::NodeLeases;

    persistence::node_leases_conformance_tests!({
        let Some(store) = crate::postgres_support::store().await else {
            return;
        };
        std::future::ready(Arc::new(store) as Arc<dyn NodeLeases>)
    });
}

/// [`persistence::SessionStore`]: durable MQTT sessions of one node, through
/// the group-commit writer; each check acts for a node id of its own.
mod sessions {
    use std::sync::Arc;

    use persistence::conformance::unique_node_id;
    use persistence::SessionStore;

    persistence::session_store_conformance_tests!({
        let Some(store) = crate::postgres_support::store().await else {
            return;
        };
        std::future::ready(Arc::new(store.sessions(unique_node_id())) as Arc<dyn SessionStore>)
    });
}
