//! What one sends counts as read by its sender. Moving the sender's read
//! and delivered cursors is a store write of its own, so it stays off the
//! send path: each stored entry only records `(conversation, sender) -> seq`
//! here, and one task at a time writes the newest seq of each pair to the
//! stores, however many entries a busy sender stored meanwhile, all pairs'
//! writes at once (the embedded store applies them in one commit). Each
//! write first waits `[chat] own_read_interval_ms`, gathering what more
//! senders store meanwhile, so under load the cursors cost one write per
//! interval rather than two history-writer jobs per sender and commit.
//! Until a cursor is written, [`OwnReads::pending`] supplies it to
//! `SyncConversations`. The task runs only while there is something to
//! write, so it holds no store after the writes are done.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::ChatStores;

/// Cursors of senders' own entries, not yet written to the stores.
pub struct OwnReads {
    state: Mutex<State>,
    /// How long a write waits to gather more cursors.
    interval: Duration,
}

#[derive(Default)]
struct State {
    /// The newest own seq per conversation and user not yet written
    /// (nested, so that recording a sender's next entry allocates nothing).
    pending: HashMap<String, HashMap<String, u64>>,
    /// Whether a task is writing them.
    writing: bool,
}

impl OwnReads {
    /// Cursors written at most once per `interval` (zero: one write as
    /// soon as the previous one is done).
    pub fn new(interval: Duration) -> OwnReads {
        OwnReads {
            state: Mutex::default(),
            interval,
        }
    }

    /// `user` stored the entry `seq` of `conversation`: their cursors move
    /// to it (soon, in the store; at once, for [`OwnReads::pending`]).
    pub fn record(self: &Arc<Self>, stores: &ChatStores, conversation: &str, user: &str, seq: u64) {
        let mut state = self.lock();
        let users = match state.pending.get_mut(conversation) {
            Some(users) => users,
            None => state.pending.entry(conversation.to_owned()).or_default(),
        };
        match users.get_mut(user) {
            Some(newest) => *newest = (*newest).max(seq),
            None => {
                users.insert(user.to_owned(), seq);
            }
        }
        if !state.writing {
            state.writing = true;
            tokio::spawn(Arc::clone(self).write(stores.clone()));
        }
    }

    /// The cursor `user` has in `conversation` from their own entries that
    /// may not be in the store yet; 0 if none.
    pub fn pending(&self, conversation: &str, user: &str) -> u64 {
        self.lock()
            .pending
            .get(conversation)
            .and_then(|users| users.get(user))
            .copied()
            .unwrap_or(0)
    }

    /// Writes pending cursors until none is left.
    async fn write(self: Arc<Self>, stores: ChatStores) {
        loop {
            if !self.interval.is_zero() {
                tokio::time::sleep(self.interval).await;
            }
            let batch: Vec<((String, String), u64)> = {
                let mut state = self.lock();
                if state.pending.is_empty() {
                    state.writing = false;
                    return;
                }
                state
                    .pending
                    .iter()
                    .flat_map(|(conversation, users)| {
                        users
                            .iter()
                            .map(|(user, seq)| ((conversation.clone(), user.clone()), *seq))
                    })
                    .collect()
            };
            // All at once: a store with group commit writes them together.
            let writes = batch.iter().map(|((conversation, user), seq)| {
                let delivered = stores.offline.mark_delivered(user, conversation, *seq);
                let read = stores.metadata.mark_read(conversation, user, *seq);
                futures::future::join(delivered, read)
            });
            let outcomes = futures::future::join_all(writes).await;
            let mut state = self.lock();
            for (((conversation, user), seq), (delivered, read)) in batch.into_iter().zip(outcomes)
            {
                if let Err(e) = delivered.and(read) {
                    tracing::warn!(%conversation, %user, seq, error = %e, "sender's read cursor not moved");
                }
                // Written (or given up on): forget it unless a newer seq came.
                if let Some(users) = state.pending.get_mut(&conversation) {
                    if users.get(&user) == Some(&seq) {
                        users.remove(&user);
                    }
                    if users.is_empty() {
                        state.pending.remove(&conversation);
                    }
                }
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}
