//! Checks of the append protocol against an in-memory model of its cells.
//!
//! Each model operation is atomic (as a Scylla lightweight transaction is on
//! its partition) and yields to the scheduler before and after, so concurrent
//! appends interleave between any two steps. A seeded fault plan makes chosen
//! operations fail either before they take effect or after (the ambiguous
//! timeout a real cluster gives), and the caller retries, as the broker's
//! clients do. The invariants are the `HistoryStore` contract: gap-free seqs,
//! every message stored exactly once, answers that match what is stored.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{append, Cells, Claim, ClaimKey, Freshness};
use crate::{Amend, AppendRequest, Appended, StoreError, StoredMessage};

/// The model's tables.
#[derive(Default)]
struct Tables {
    /// Messages by (conversation, seq).
    messages: BTreeMap<(String, u64), StoredMessage>,
    /// Claims by key.
    claims: HashMap<ClaimKey, Claim>,
    /// Head hints by conversation.
    heads: HashMap<String, u64>,
}

/// Cells kept in memory, failing operations at a seeded rate.
struct ModelCells {
    tables: Mutex<Tables>,
    faults: Mutex<StdRng>,
    /// Chance, per operation, of failing (half before, half after taking effect).
    fault_rate: f64,
}

/// When an operation fails.
enum Fault {
    None,
    Before,
    After,
}

impl ModelCells {
    fn new(seed: u64, fault_rate: f64) -> Arc<ModelCells> {
        Arc::new(ModelCells {
            tables: Mutex::new(Tables::default()),
            faults: Mutex::new(StdRng::seed_from_u64(seed)),
            fault_rate,
        })
    }

    fn fault(&self) -> Fault {
        let mut rng = self.faults.lock().unwrap();
        if rng.gen_bool(self.fault_rate) {
            if rng.gen_bool(0.5) {
                Fault::Before
            } else {
                Fault::After
            }
        } else {
            Fault::None
        }
    }

    /// Runs `op` atomically between two yields, failing as the fault plan says.
    async fn op<T>(&self, op: impl FnOnce(&mut Tables) -> T) -> Result<T, StoreError> {
        tokio::task::yield_now().await;
        let fault = self.fault();
        if let Fault::Before = fault {
            return Err(StoreError::Unavailable("injected: not applied".into()));
        }
        let value = op(&mut self.tables.lock().unwrap());
        tokio::task::yield_now().await;
        match fault {
            Fault::After => Err(StoreError::Unavailable("injected: applied".into())),
            _ => Ok(value),
        }
    }

    fn stored(&self, conversation: &str) -> Vec<StoredMessage> {
        let tables = self.tables.lock().unwrap();
        tables
            .messages
            .values()
            .filter(|m| m.conversation_id == conversation)
            .cloned()
            .collect()
    }
}

#[async_trait]
impl Cells for ModelCells {
    async fn last_seq(&self, conversation_id: &str) -> Result<u64, StoreError> {
        let conversation = conversation_id.to_owned();
        self.op(move |t| {
            let hint = t.heads.get(&conversation).copied().unwrap_or(0);
            let mut last = hint;
            while t.messages.contains_key(&(conversation.clone(), last + 1)) {
                last += 1;
            }
            last
        })
        .await
    }

    async fn create_claim(
        &self,
        key: &ClaimKey,
        message_id: u64,
        server_time_ms: i64,
        pending_seq: u64,
    ) -> Result<Option<Claim>, StoreError> {
        let key = key.clone();
        self.op(move |t| {
            if let Some(existing) = t.claims.get(&key) {
                return Some(*existing);
            }
            t.claims.insert(
                key,
                Claim {
                    message_id,
                    server_time_ms,
                    pending_seq: Some(pending_seq),
                    seq: None,
                },
            );
            None
        })
        .await
    }

    async fn read_claim(&self, key: &ClaimKey) -> Result<Option<Claim>, StoreError> {
        let key = key.clone();
        self.op(move |t| t.claims.get(&key).copied()).await
    }

    async fn move_pending(&self, key: &ClaimKey, from: u64, to: u64) -> Result<bool, StoreError> {
        let key = key.clone();
        self.op(move |t| match t.claims.get_mut(&key) {
            Some(claim) if claim.pending_seq == Some(from) => {
                claim.pending_seq = Some(to);
                true
            }
            _ => false,
        })
        .await
    }

    async fn insert_message(&self, row: &StoredMessage) -> Result<bool, StoreError> {
        let row = row.clone();
        self.op(move |t| {
            let slot = (row.conversation_id.clone(), row.seq);
            if t.messages.contains_key(&slot) {
                return false;
            }
            assert!(
                row.seq == 1
                    || t.messages
                        .contains_key(&(row.conversation_id.clone(), row.seq - 1)),
                "the protocol wrote seq {} before seq {} existed",
                row.seq,
                row.seq - 1
            );
            t.messages.insert(slot, row);
            true
        })
        .await
    }

    async fn message_at(
        &self,
        conversation_id: &str,
        seq: u64,
        _freshness: Freshness,
    ) -> Result<Option<StoredMessage>, StoreError> {
        let slot = (conversation_id.to_owned(), seq);
        self.op(move |t| t.messages.get(&slot).cloned()).await
    }

    async fn replace_payload(
        &self,
        conversation_id: &str,
        seq: u64,
        payload: &[u8],
    ) -> Result<bool, StoreError> {
        let slot = (conversation_id.to_owned(), seq);
        let payload = payload.to_vec();
        self.op(move |t| match t.messages.get_mut(&slot) {
            Some(row) => {
                row.payload = payload;
                true
            }
            None => false,
        })
        .await
    }

    async fn commit(&self, key: &ClaimKey, seq: u64) -> Result<(), StoreError> {
        let key = key.clone();
        self.op(move |t| {
            if let Some(claim) = t.claims.get_mut(&key) {
                claim.seq = Some(seq);
            }
            let head = t.heads.entry(key.conversation_id.clone()).or_insert(0);
            *head = (*head).max(seq);
        })
        .await
    }
}

fn request(conversation: &str, sender: &str, n: u64) -> AppendRequest {
    AppendRequest {
        conversation_id: conversation.into(),
        sender: sender.into(),
        client_message_id: format!("{sender}-{n}"),
        message_id: n * 1000 + sender.len() as u64,
        server_time_ms: n as i64,
        payload: format!("{sender} says {n}").into_bytes(),
        amend: None,
    }
}

/// Appends `request` until it succeeds, as a client retrying after errors does.
async fn append_until_stored(cells: &ModelCells, request: AppendRequest) -> Appended {
    for _ in 0..10_000 {
        match append(cells, &request).await {
            Ok(appended) => return appended,
            Err(StoreError::Unavailable(_)) => continue,
            Err(other) => panic!("append failed with {other:?}"),
        }
    }
    panic!("append never succeeded")
}

/// Senders appending in parallel (each in order), through faults and retries.
async fn race(cells: Arc<ModelCells>, senders: usize, each: u64) -> Vec<(String, u64, Appended)> {
    let mut tasks = Vec::new();
    for s in 0..senders {
        let cells = cells.clone();
        tasks.push(tokio::spawn(async move {
            let sender = format!("user{s}");
            let mut answers = Vec::new();
            for n in 1..=each {
                let appended = append_until_stored(&cells, request("c", &sender, n)).await;
                answers.push((sender.clone(), n, appended));
            }
            answers
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all
}

fn check_race(cells: &ModelCells, answers: &[(String, u64, Appended)], senders: usize, each: u64) {
    let stored = cells.stored("c");
    let total = senders as u64 * each;
    let seqs: Vec<u64> = stored.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (1..=total).collect::<Vec<_>>(), "seqs are not 1..=N");
    let mut by_key = HashMap::new();
    for m in &stored {
        assert!(
            by_key
                .insert(m.client_message_id.clone(), m.clone())
                .is_none(),
            "{} stored twice",
            m.client_message_id
        );
    }
    let mut last_seq_of_sender: HashMap<&str, u64> = HashMap::new();
    for (sender, n, appended) in answers {
        let row = &by_key[&format!("{sender}-{n}")];
        assert_eq!(row.seq, appended.seq, "answer disagrees with the store");
        assert_eq!(row.message_id, appended.message_id);
        assert_eq!(row.server_time_ms, appended.server_time_ms);
        let previous = last_seq_of_sender.insert(sender, appended.seq).unwrap_or(0);
        assert!(previous < appended.seq, "{sender}'s messages out of order");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn racing_appends_without_faults_are_gap_free() {
    for seed in 0..20 {
        let cells = ModelCells::new(seed, 0.0);
        let answers = race(cells.clone(), 6, 15).await;
        check_race(&cells, &answers, 6, 15);
        assert!(answers.iter().all(|(_, _, a)| !a.duplicate));
    }
}

#[tokio::test(flavor = "current_thread")]
async fn racing_appends_through_faults_store_each_message_once() {
    for seed in 0..40 {
        let cells = ModelCells::new(seed, 0.15);
        let answers = race(cells.clone(), 5, 12).await;
        check_race(&cells, &answers, 5, 12);
    }
}

#[tokio::test(flavor = "current_thread")]
async fn racing_retries_of_one_message_store_it_once() {
    for seed in 0..20 {
        let cells = ModelCells::new(seed, 0.0);
        // Others keep the slot contended while the retries race.
        let background = tokio::spawn(race(cells.clone(), 2, 10));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let cells = cells.clone();
            tasks.push(tokio::spawn(async move {
                append(&*cells, &request("c", "retrier", 1)).await.unwrap()
            }));
        }
        let mut answers = Vec::new();
        for task in tasks {
            answers.push(task.await.unwrap());
        }
        background.await.unwrap();
        let writers = answers.iter().filter(|a| !a.duplicate).count();
        assert_eq!(writers, 1, "exactly one retry stores the message");
        assert!(answers.windows(2).all(|w| w[0].seq == w[1].seq));
        let stored = cells.stored("c");
        let copies = stored
            .iter()
            .filter(|m| m.client_message_id == "retrier-1")
            .count();
        assert_eq!(copies, 1);
        assert_eq!(stored.len(), 21);
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_crashed_attempt_is_finished_by_its_retry() {
    let cells = ModelCells::new(0, 0.0);
    append(&*cells, &request("c", "a", 1)).await.unwrap();
    // An attempt that stored its message and died before committing.
    let key = ClaimKey {
        conversation_id: "c".into(),
        sender: "a".into(),
        client_message_id: "a-2".into(),
    };
    assert_eq!(cells.create_claim(&key, 77, 7, 2).await.unwrap(), None);
    let row = StoredMessage {
        conversation_id: "c".into(),
        seq: 2,
        message_id: 77,
        sender: "a".into(),
        client_message_id: "a-2".into(),
        server_time_ms: 7,
        payload: b"first try".to_vec(),
    };
    assert!(cells.insert_message(&row).await.unwrap());
    // The retry carries a new message id and time; the first attempt's win.
    let appended = append(&*cells, &request("c", "a", 2)).await.unwrap();
    assert_eq!(
        appended,
        Appended {
            seq: 2,
            message_id: 77,
            server_time_ms: 7,
            duplicate: true
        }
    );
    assert_eq!(cells.stored("c").len(), 2);
    // An attempt that claimed a slot and died before writing: the retry writes.
    let key3 = ClaimKey {
        client_message_id: "a-3".into(),
        ..key
    };
    assert_eq!(cells.create_claim(&key3, 88, 8, 3).await.unwrap(), None);
    let appended = append(&*cells, &request("c", "a", 3)).await.unwrap();
    assert_eq!((appended.seq, appended.message_id), (3, 88));
    assert!(!appended.duplicate);
    assert_eq!(cells.stored("c")[2].payload, b"a says 3".to_vec());
}

#[tokio::test(flavor = "current_thread")]
async fn a_stale_slot_taken_by_another_message_is_moved_past_the_end() {
    let cells = ModelCells::new(0, 0.0);
    let key = ClaimKey {
        conversation_id: "c".into(),
        sender: "late".into(),
        client_message_id: "late-1".into(),
    };
    // Claimed slot 1, then stalled while others filled 1..=3.
    cells.create_claim(&key, 5, 5, 1).await.unwrap();
    for n in 1..=3 {
        append(&*cells, &request("c", "b", n)).await.unwrap();
    }
    let appended = append(&*cells, &request("c", "late", 1)).await.unwrap();
    assert_eq!(appended.seq, 4);
    assert_eq!(appended.message_id, 5);
    let claim = cells.read_claim(&key).await.unwrap().unwrap();
    assert_eq!(claim.seq, Some(4));
}

#[tokio::test(flavor = "current_thread")]
async fn amends_apply_before_commit_and_missing_targets_use_nothing() {
    let cells = ModelCells::new(0, 0.0);
    append(&*cells, &request("c", "a", 1)).await.unwrap();
    let mut edit = request("c", "a", 2);
    edit.amend = Some(Amend {
        target_seq: 9,
        payload: b"x".to_vec(),
    });
    assert!(matches!(
        append(&*cells, &edit).await,
        Err(StoreError::NotFound(_))
    ));
    edit.amend = Some(Amend {
        target_seq: 1,
        payload: b"edited".to_vec(),
    });
    let appended = append(&*cells, &edit).await.unwrap();
    assert_eq!(appended.seq, 2);
    assert!(!appended.duplicate);
    assert_eq!(cells.stored("c")[0].payload, b"edited".to_vec());
}

#[tokio::test(flavor = "current_thread")]
async fn a_retry_is_answered_before_its_amend_is_checked() {
    let cells = ModelCells::new(0, 0.0);
    let first = append(&*cells, &request("c", "a", 1)).await.unwrap();
    let mut probe = request("c", "a", 1);
    probe.amend = Some(Amend {
        target_seq: 0,
        payload: Vec::new(),
    });
    let probed = append(&*cells, &probe).await.unwrap();
    assert_eq!(
        probed,
        Appended {
            duplicate: true,
            ..first
        }
    );
    let mut unknown = request("c", "a", 2);
    unknown.amend = Some(Amend {
        target_seq: 0,
        payload: Vec::new(),
    });
    assert!(matches!(
        append(&*cells, &unknown).await,
        Err(StoreError::NotFound(_))
    ));
}
