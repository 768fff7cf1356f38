//! An in-process cache of conversation records, so that the membership check
//! on every message does not read the store. This node's own updates replace
//! the cached record; records are loaded on first use. A generation counts
//! membership changes seen here, so caches derived from memberships (who
//! shares a group with whom) know when to start over.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use persistence::{ConversationRecord, MetadataStore, StoreError};

/// Conversation records by id.
pub struct ConversationCache {
    store: Arc<dyn MetadataStore>,
    records: Mutex<HashMap<String, Arc<ConversationRecord>>>,
    /// Bumped by every write and forget (not by loads).
    generation: AtomicU64,
}

impl ConversationCache {
    /// An empty cache over `store`.
    pub fn new(store: Arc<dyn MetadataStore>) -> ConversationCache {
        ConversationCache {
            store,
            records: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
        }
    }

    /// The record of `id`, from the cache or the store.
    pub async fn get(&self, id: &str) -> Result<Option<Arc<ConversationRecord>>, StoreError> {
        if let Some(record) = self.lock().get(id) {
            return Ok(Some(record.clone()));
        }
        let Some(record) = self.store.get_conversation(id).await? else {
            return Ok(None);
        };
        Ok(Some(self.insert(record)))
    }

    /// Caches `record` (after this node wrote it) unless a newer version is cached.
    pub fn put(&self, record: ConversationRecord) -> Arc<ConversationRecord> {
        let record = self.insert(record);
        self.generation.fetch_add(1, Ordering::Release);
        record
    }

    /// How many conversation writes and forgets this cache has seen: when it
    /// moves, some membership may have changed.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn insert(&self, record: ConversationRecord) -> Arc<ConversationRecord> {
        let mut records = self.lock();
        match records.get(&record.id) {
            Some(cached) if cached.version > record.version => cached.clone(),
            _ => {
                let record = Arc::new(record);
                records.insert(record.id.clone(), record.clone());
                record
            }
        }
    }

    /// Forgets `id` (its stored record changed in a way this node did not see).
    pub fn forget(&self, id: &str) {
        self.lock().remove(id);
        self.generation.fetch_add(1, Ordering::Release);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<ConversationRecord>>> {
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }
}
