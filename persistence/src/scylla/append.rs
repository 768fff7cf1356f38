//! The append protocol: gap-free sequence numbers and idempotent retries on a
//! database whose only atomic operation is a compare-and-set on one partition
//! (Scylla's lightweight transactions).
//!
//! The protocol is written against [`Cells`], the handful of single-partition
//! operations it needs, so it can be checked against an in-memory model as
//! well as run on Scylla (`cells` implements it with CQL).
//!
//! # The protocol
//!
//! Each `(conversation, sender, client message id)` has a *claim* row holding
//! the message id and server time of the first attempt, the *pending* slot (the
//! seq the message is being written at) and, once done, the committed seq.
//!
//! 1. An amend's target must exist, or the append fails with `NotFound` before
//!    anything is written (so the client message id stays unused); a retry of
//!    a stored message is answered first, whatever its amend names.
//! 2. Claim: insert the claim if absent, with pending = last seq + 1. If a claim
//!    exists, adopt it: a committed one is a duplicate, answered at once; an
//!    uncommitted one belongs to an attempt that crashed or is still running,
//!    and this attempt finishes it with the claim's id and time.
//! 3. Insert the message at the pending slot, if the slot is empty. If the slot
//!    holds this claim's message (written by a concurrent or crashed attempt),
//!    that is fine too. If it holds another message, move the claim's pending
//!    slot past the conversation's end with a compare-and-set from the old slot,
//!    re-read the claim and go back to 3.
//! 4. Apply the amend, mark the claim committed at the slot and advance the
//!    conversation's head (a hint for finding the last seq).
//!
//! Why it holds:
//! - *Gap-free*: a message is inserted at slot `s` only when `s - 1` was seen
//!   to exist (it is the last seq + 1, or one past a slot seen occupied), and
//!   nothing is ever deleted.
//! - *Stored once*: a claim's pending slot moves only away from a slot that
//!   holds another message, and only by compare-and-set, so every attempt of a
//!   claim writes to the same slot until that slot is lost; once the claim's
//!   message is in its slot, no attempt can move away from it.
//! - *Committed implies amended*: the amend is applied before the commit mark,
//!   and an adopting retry re-applies it.

use async_trait::async_trait;

use crate::{AppendRequest, Appended, StoreError, StoredMessage};

/// How many slots one append tries before giving up. Every failed try means
/// another append to the conversation succeeded, so this bounds the number of
/// appends racing one conversation, not the chance of success.
pub const MAX_ATTEMPTS: usize = 512;

/// The identity of a message for retries.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClaimKey {
    /// The conversation.
    pub conversation_id: String,
    /// The sending user.
    pub sender: String,
    /// The sender's idempotency key.
    pub client_message_id: String,
}

/// A claim row as read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    /// The message id of the attempt that created the claim.
    pub message_id: u64,
    /// Its server time.
    pub server_time_ms: i64,
    /// The slot the message is being written at.
    pub pending_seq: Option<u64>,
    /// The seq the message was stored at, once committed.
    pub seq: Option<u64>,
}

/// How fresh a read must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Sees every write acknowledged before the read began (a quorum read).
    Acknowledged,
    /// Also sees, and completes, compare-and-sets still in flight (a serial read).
    Linearizable,
}

/// The single-partition operations the append protocol is built from.
#[async_trait]
pub trait Cells: Send + Sync {
    /// The conversation's highest stored seq (0 if none). Every seq up to it
    /// exists; later ones may exist too.
    async fn last_seq(&self, conversation_id: &str) -> Result<u64, StoreError>;
    /// Creates the claim with `pending_seq` if none exists; returns `None` if it
    /// did, else the existing claim (read linearizably).
    async fn create_claim(
        &self,
        key: &ClaimKey,
        message_id: u64,
        server_time_ms: i64,
        pending_seq: u64,
    ) -> Result<Option<Claim>, StoreError>;
    /// The claim, read linearizably.
    async fn read_claim(&self, key: &ClaimKey) -> Result<Option<Claim>, StoreError>;
    /// Sets the claim's pending slot to `to` if it is still `from`; true if it was.
    async fn move_pending(&self, key: &ClaimKey, from: u64, to: u64) -> Result<bool, StoreError>;
    /// Inserts the message if its slot is empty; true if it was.
    async fn insert_message(&self, row: &StoredMessage) -> Result<bool, StoreError>;
    /// The message at `seq`, if any.
    async fn message_at(
        &self,
        conversation_id: &str,
        seq: u64,
        freshness: Freshness,
    ) -> Result<Option<StoredMessage>, StoreError>;
    /// Replaces the payload of the existing message at `seq`; false if there is none.
    async fn replace_payload(
        &self,
        conversation_id: &str,
        seq: u64,
        payload: &[u8],
    ) -> Result<bool, StoreError>;
    /// Marks the claim committed at `seq` and advances the conversation's head hint.
    async fn commit(&self, key: &ClaimKey, seq: u64) -> Result<(), StoreError>;
}

/// Appends `request` with the protocol of this module's documentation.
pub async fn append<C: Cells + ?Sized>(
    cells: &C,
    request: &AppendRequest,
) -> Result<Appended, StoreError> {
    let conversation = request.conversation_id.as_str();
    let key = ClaimKey {
        conversation_id: request.conversation_id.clone(),
        sender: request.sender.clone(),
        client_message_id: request.client_message_id.clone(),
    };
    if let Some(amend) = &request.amend {
        // A retry is answered whatever its amend says.
        if let Some(claim @ Claim { seq: Some(seq), .. }) = cells.read_claim(&key).await? {
            return Ok(outcome(&claim, seq, true));
        }
        let target = cells
            .message_at(conversation, amend.target_seq, Freshness::Acknowledged)
            .await?;
        if target.is_none() {
            return Err(StoreError::NotFound(format!(
                "message {} of conversation {conversation}",
                amend.target_seq
            )));
        }
    }
    let first_slot = cells.last_seq(conversation).await? + 1;
    let mut claim = cells
        .create_claim(&key, request.message_id, request.server_time_ms, first_slot)
        .await?
        .unwrap_or(Claim {
            message_id: request.message_id,
            server_time_ms: request.server_time_ms,
            pending_seq: Some(first_slot),
            seq: None,
        });
    for _ in 0..MAX_ATTEMPTS {
        if let Some(seq) = claim.seq {
            return Ok(outcome(&claim, seq, true));
        }
        let slot = claim.pending_seq.ok_or_else(|| {
            StoreError::Corrupt(format!(
                "the claim of message {:?} from {} in {conversation} has no slot",
                key.client_message_id, key.sender
            ))
        })?;
        let row = StoredMessage {
            conversation_id: key.conversation_id.clone(),
            seq: slot,
            message_id: claim.message_id,
            sender: key.sender.clone(),
            client_message_id: key.client_message_id.clone(),
            server_time_ms: claim.server_time_ms,
            payload: request.payload.clone(),
        };
        let wrote = if cells.insert_message(&row).await? {
            true
        } else {
            let occupant = cells
                .message_at(conversation, slot, Freshness::Linearizable)
                .await?;
            match occupant {
                Some(found)
                    if found.sender == key.sender
                        && found.client_message_id == key.client_message_id =>
                {
                    false
                }
                Some(_) => {
                    let next = (cells.last_seq(conversation).await? + 1).max(slot + 1);
                    cells.move_pending(&key, slot, next).await?;
                    claim = cells.read_claim(&key).await?.ok_or_else(|| {
                        StoreError::Corrupt(format!(
                            "the claim of message {:?} from {} in {conversation} vanished",
                            key.client_message_id, key.sender
                        ))
                    })?;
                    continue;
                }
                None => {
                    return Err(StoreError::Unavailable(format!(
                        "slot {slot} of conversation {conversation} was refused as taken \
                         but reads as empty"
                    )))
                }
            }
        };
        if let Some(amend) = &request.amend {
            if !cells
                .replace_payload(conversation, amend.target_seq, &amend.payload)
                .await?
            {
                return Err(StoreError::Corrupt(format!(
                    "message {} of conversation {conversation} vanished while being amended",
                    amend.target_seq
                )));
            }
        }
        cells.commit(&key, slot).await?;
        return Ok(outcome(&claim, slot, !wrote));
    }
    Err(StoreError::Unavailable(format!(
        "conversation {conversation}: gave up after {MAX_ATTEMPTS} slots were taken by \
         concurrent appends"
    )))
}

/// The append's answer for a message of `claim` stored at `seq`.
fn outcome(claim: &Claim, seq: u64, duplicate: bool) -> Appended {
    Appended {
        seq,
        message_id: claim.message_id,
        server_time_ms: claim.server_time_ms,
        duplicate,
    }
}

#[cfg(test)]
mod model;
