//! Runs the shared conformance suites against [`EmbeddedStore`], each check on a
//! fresh store in its own temporary directory.

use persistence::embedded::EmbeddedStore;

/// Opens a fresh store in a new temporary directory, which must outlive it.
fn fresh_store() -> (EmbeddedStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("create a temporary data directory");
    let store = EmbeddedStore::open(dir.path()).expect("open the embedded store");
    (store, dir)
}

/// [`persistence::MetadataStore`]: users, conversations and read cursors.
mod metadata {
    use std::sync::Arc;

    use persistence::MetadataStore;

    persistence::metadata_conformance_tests!(async {
        let (store, dir) = super::fresh_store();
        (Arc::new(store) as Arc<dyn MetadataStore>, dir)
    });
}

/// [`persistence::HistoryStore`]: the message log, through the group-commit writer.
mod history {
    use std::sync::Arc;

    use persistence::HistoryStore;

    persistence::history_conformance_tests!(async {
        let (store, dir) = super::fresh_store();
        (Arc::new(store) as Arc<dyn HistoryStore>, dir)
    });
}

/// [`persistence::OfflineQueue`]: delivered cursors.
mod offline {
    use std::sync::Arc;

    use persistence::OfflineQueue;

    persistence::offline_conformance_tests!(async {
        let (store, dir) = super::fresh_store();
        (Arc::new(store) as Arc<dyn OfflineQueue>, dir)
    });
}

/// [`persistence::KeyDirectory`]: device keys and one-time prekeys.
mod keys {
    use std::sync::Arc;

    use persistence::KeyDirectory;

    persistence::key_directory_conformance_tests!(async {
        let (store, dir) = super::fresh_store();
        (Arc::new(store) as Arc<dyn KeyDirectory>, dir)
    });
}

/// [`persistence::SessionStore`]: durable MQTT sessions, through the session writer.
mod sessions {
    use std::sync::Arc;

    use persistence::SessionStore;

    persistence::session_store_conformance_tests!(async {
        let (store, dir) = super::fresh_store();
        (Arc::new(store) as Arc<dyn SessionStore>, dir)
    });
}
