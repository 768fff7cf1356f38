//! `s/{conv}`: a client's message. Validated, checked against membership and
//! the rate limit (over it, held until its token is due, or refused past
//! `[chat] rate_limit_max_wait_ms`), stored durably with the next sequence number (group
//! commit in the store), and only then acknowledged and fanned out to every
//! member's inbox, the sender's other sessions included. New entries of one
//! conversation reach the inboxes in `seq` order (see `super::ordering`).
//!
//! A send runs in two steps so that one connection can have several on their
//! way to disk: [`ChatService::start_send`] checks the message and queues it
//! for the history's group commit (its seq order is fixed there), and
//! [`QueuedSend::finish`] awaits the durable commit and delivers it.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use chat_core::consent::DirectSend;
use chat_core::ids::{ConversationId, UserId};
use chat_core::message::{
    amend, server_message, validate_client_message, Intent, MessageError, MessageLimits,
};
use chat_core::topics::inbox_topic_of;
use parley_proto::v1::ChatMessage;
use parley_proto::v1::{envelope::Kind, ErrorCode};
use parley_proto::{decode_envelope, encode_envelope, message_envelope, prost::Message};
use persistence::{Amend, AppendRequest, ConversationRecord, PendingAppend, StoreError};

use super::convert::message_proto;
use super::ordering::Ticket;
use super::rate::MessagePermit;
use super::send_checks::{Passed, SendChecks, Versions};
use super::{now_ms, ChatError, ChatService};
use crate::cluster::{Fanout, Outgoing};

/// How far [`ChatService::start_send`] got with a message.
pub(super) enum SendStart<'a> {
    /// Queued for the durable commit, its seq order fixed;
    /// [`QueuedSend::finish`] awaits the commit and delivers it.
    Queued(Box<QueuedSend<'a>>),
    /// Answered without a new entry (a retry of a stored change).
    Answered,
    /// An edit or delete while earlier sends of the same connection are still
    /// in flight: it reads its target from the store, so it has to start
    /// after them. Nothing was done yet (not even the rate limit counted).
    AfterEarlier,
}

/// A message queued for its durable commit, to be acknowledged and
/// delivered once the commit is on disk.
pub(super) struct QueuedSend<'a> {
    chat: &'a ChatService,
    user: UserId,
    conv: ConversationId,
    record: Arc<ConversationRecord>,
    /// The entry as stored; its seq is filled in once known.
    message: ChatMessage,
    /// `message` encoded (without its seq), as the history stores it: its
    /// delivered envelope is made from these bytes and the seq.
    stored: Vec<u8>,
    intent: Intent,
    /// Whether this is a message request (a stranger's direct message).
    request: bool,
    /// This entry's turn among the conversation's deliveries.
    ticket: Ticket<'a, Outgoing>,
    appended: PendingAppend,
}

impl ChatService {
    /// Handles a message published to `s/{conv}` by `user`, start to finish.
    pub(super) async fn send(
        &self,
        user: &UserId,
        conv: &ConversationId,
        payload: &[u8],
    ) -> Result<(), ChatError> {
        let mut checks = SendChecks::new();
        match self
            .start_send(user, conv, payload, true, &mut checks)
            .await?
        {
            SendStart::Queued(queued) => (*queued).finish().await,
            SendStart::Answered | SendStart::AfterEarlier => Ok(()),
        }
    }

    /// Checks a message published to `s/{conv}` by `user` and queues it for
    /// the durable commit, without waiting for the commit: messages started
    /// one after another get seqs in that order. `alone` says that no earlier
    /// send of the same connection is still in flight; without it an edit or
    /// delete is not started ([`SendStart::AfterEarlier`]). `checks` are the
    /// connection's kept membership and consent checks.
    pub(super) async fn start_send<'a>(
        &'a self,
        user: &UserId,
        conv: &ConversationId,
        payload: &[u8],
        alone: bool,
        checks: &mut SendChecks,
    ) -> Result<SendStart<'a>, ChatError> {
        let envelope = decode_envelope(payload)
            .map_err(|e| ChatError::malformed(e.to_string()).in_conversation(conv.as_str()))?;
        let Some(Kind::Message(client)) = envelope.kind else {
            return Err(ChatError::malformed(
                "s/{conversation} carries ChatMessage envelopes only",
            )
            .in_conversation(conv.as_str()));
        };
        let client_message_id = client.client_message_id.clone();
        let fail = |e: ChatError| {
            e.in_conversation(conv.as_str())
                .for_message(&client_message_id)
        };

        let limits = MessageLimits {
            max_payload_bytes: self.config.max_message_bytes,
            max_text_chars: self.config.max_text_chars,
        };
        let intent = validate_client_message(&client, payload.len(), &limits)
            .map_err(|e| fail(message_error(e)))?;
        if intent != Intent::New && !alone {
            return Ok(SendStart::AfterEarlier);
        }
        match self.rates.message(user.as_str()) {
            MessagePermit::Now => {}
            // Held, not refused: the connection's later publishes queue
            // behind this one (its chat pipeline begins them in order), and
            // once enough wait to be begun its socket is no longer read.
            MessagePermit::Held(wait) => tokio::time::sleep(wait).await,
            MessagePermit::Refused => {
                return Err(fail(ChatError::new(
                    ErrorCode::RateLimited,
                    "too many messages; slow down",
                )))
            }
        }
        let Passed { record, request } = self.checked(user, conv, checks).await.map_err(fail)?;

        let message_id = self.next_message_id();
        let server_time_ms = now_ms();
        // Only an edit needs the body again, after `client` is used up.
        let new_body = (intent != Intent::New)
            .then(|| client.body.clone())
            .flatten();
        let message = server_message(
            client,
            user.as_str(),
            conv.as_str(),
            message_id,
            server_time_ms,
        );
        let amend_request = match intent {
            Intent::New => None,
            Intent::Edit { target_seq } | Intent::Delete { target_seq } => {
                let target = self
                    .stores
                    .history
                    .get(conv.as_str(), target_seq)
                    .await
                    .map_err(|e| fail(e.into()))?
                    .ok_or_else(|| {
                        fail(ChatError::new(
                            ErrorCode::NotFound,
                            format!("no message {target_seq}"),
                        ))
                    })?;
                let original = message_proto(&target).map_err(fail)?;
                let amended = match amend(&original, user.as_str(), intent, new_body) {
                    Ok(amended) => amended,
                    // The target may have been deleted by this very change: a
                    // retry of a stored delete (or of an edit made before the
                    // delete) is answered with the stored entry, like any retry.
                    Err(e @ MessageError::NotChangeable(_)) => {
                        return match self
                            .stored_seq(user, conv, &client_message_id)
                            .await
                            .map_err(fail)?
                        {
                            Some(seq) => {
                                self.redeliver(&record, conv, seq).await;
                                Ok(SendStart::Answered)
                            }
                            None => Err(fail(message_error(e))),
                        };
                    }
                    Err(e) => return Err(fail(message_error(e))),
                };
                Some(Amend {
                    target_seq,
                    payload: amended.encode_to_vec(),
                })
            }
        };
        // Taken before the append is queued, so that this entry is delivered
        // in its seq's turn among concurrent sends to the conversation.
        let ticket = self.delivery.begin(conv.as_str());
        let stored = message.encode_to_vec();
        let appended = self
            .stores
            .history
            .enqueue(AppendRequest {
                conversation_id: conv.to_string(),
                sender: user.to_string(),
                client_message_id,
                message_id,
                server_time_ms,
                payload: stored.clone(),
                amend: amend_request,
            })
            .await;
        Ok(SendStart::Queued(Box::new(QueuedSend {
            chat: self,
            user: user.clone(),
            conv: conv.clone(),
            record,
            message,
            stored,
            intent,
            request,
            ticket,
            appended,
        })))
    }

    /// Delivers the stored entry `seq` of `conv` again, to every member. Best
    /// effort: the entry is stored either way, so a failure here is only logged.
    async fn redeliver(&self, record: &ConversationRecord, conv: &ConversationId, seq: u64) {
        let stored = match self.stores.history.get(conv.as_str(), seq).await {
            Ok(Some(stored)) => stored,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(conversation = %conv, seq, error = %e, "retry not redelivered");
                return;
            }
        };
        match message_proto(&stored) {
            Ok(delivered) => {
                if let Err(e) = self
                    .fan_out(record, encode_envelope(&delivered.into()))
                    .await
                {
                    tracing::warn!(conversation = %conv, seq, error = %e, "retry not redelivered");
                }
            }
            Err(e) => {
                tracing::warn!(conversation = %conv, seq, reason = %e.message, "retry not redelivered")
            }
        }
    }

    /// The seq of the entry `user` stored in `conv` with `client_message_id`,
    /// if there is one.
    ///
    /// The history store has no lookup by client message id, so this asks it
    /// to append a probe whose amend targets seq 0, which never exists. By
    /// [`HistoryStore::append`](persistence::HistoryStore::append)'s contract
    /// a retry is answered from the original before the amend is looked at,
    /// and any other request with a missing amend target fails with
    /// `NotFound` and appends nothing.
    async fn stored_seq(
        &self,
        user: &UserId,
        conv: &ConversationId,
        client_message_id: &str,
    ) -> Result<Option<u64>, ChatError> {
        let probe = AppendRequest {
            conversation_id: conv.to_string(),
            sender: user.to_string(),
            client_message_id: client_message_id.to_owned(),
            message_id: 0,
            server_time_ms: 0,
            payload: Vec::new(),
            amend: Some(Amend {
                target_seq: 0,
                payload: Vec::new(),
            }),
        };
        match self.stores.history.append(probe).await {
            Ok(appended) if appended.duplicate => Ok(Some(appended.seq)),
            Ok(appended) => Err(ChatError::new(
                ErrorCode::Internal,
                format!("the history store appended a probe as seq {}", appended.seq),
            )),
            Err(StoreError::NotFound(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The checks `user`'s message to `conv` must pass (membership, then
    /// consent in a direct conversation), from `checks` while nothing they
    /// depend on changed (see `super::send_checks`).
    async fn checked(
        &self,
        user: &UserId,
        conv: &ConversationId,
        checks: &mut SendChecks,
    ) -> Result<Passed, ChatError> {
        // Read before the checks, so a change racing them is not missed.
        let versions = Versions {
            conversations: self.conversations.generation(),
            relations: self.relations.version(),
        };
        if let Some(passed) = checks.get(conv.as_str(), versions, Instant::now()) {
            return Ok(passed.clone());
        }
        let record = self.open_conversation(user, conv).await?;
        let (verdict, fresh_until) = self.direct_send(user, &record).await?;
        let passed = Passed {
            record,
            request: verdict == DirectSend::Request,
        };
        checks.keep(conv.as_str(), passed.clone(), versions, fresh_until);
        Ok(passed)
    }

    /// The conversation `conv` if it exists and `user` is a member.
    pub(super) async fn member_conversation(
        &self,
        user: &UserId,
        conv: &ConversationId,
    ) -> Result<std::sync::Arc<ConversationRecord>, ChatError> {
        let record = self
            .conversations
            .get(conv.as_str())
            .await?
            .ok_or_else(|| ChatError::unknown_conversation(conv.as_str()))?;
        check_member(record, user, conv)
    }

    /// Like [`Self::member_conversation`], but a direct conversation of
    /// `user` with an existing peer is created on first use (sending to it,
    /// or opening it). Reading never creates anything.
    pub(super) async fn open_conversation(
        &self,
        user: &UserId,
        conv: &ConversationId,
    ) -> Result<std::sync::Arc<ConversationRecord>, ChatError> {
        let record = match self.conversations.get(conv.as_str()).await? {
            Some(record) => record,
            None => self.open_direct_by_id(user, conv).await?,
        };
        check_member(record, user, conv)
    }

    /// Publishes `envelope` to the inbox of every member (through the
    /// cluster bus if there is one).
    pub(super) async fn fan_out(
        &self,
        record: &ConversationRecord,
        envelope: Vec<u8>,
    ) -> Result<(), StoreError> {
        self.deliveries
            .publish(&record.id, 1, inbox_fanout(record, envelope))
            .await
    }
}

impl QueuedSend<'_> {
    /// Waits until the message is durable, then hands it to delivery in its
    /// seq's turn. Ok once it is stored (and, with a cluster bus, on the bus).
    pub(super) async fn finish(self) -> Result<(), ChatError> {
        let QueuedSend {
            chat,
            user,
            conv,
            record,
            message,
            stored,
            intent,
            request,
            ticket,
            appended,
        } = self;
        let fail = |e: ChatError, client_message_id: &str| {
            e.in_conversation(conv.as_str())
                .for_message(client_message_id)
        };
        let appended = match appended.await {
            Ok(appended) => appended,
            Err(e) => return Err(fail(e.into(), &message.client_message_id)),
        };

        // Durable: deliver. A retry of a stored message is delivered again as
        // stored (clients drop duplicates by message id), in case the first
        // attempt's fan-out was cut short; it is an old seq, so it does not
        // wait for its turn. With a cluster bus the acknowledgement waits
        // until the fan-out is on the bus too.
        if appended.duplicate {
            drop(ticket);
            chat.redeliver(&record, &conv, appended.seq).await;
            return Ok(());
        }
        // A message request pushes its recipient once: for the
        // conversation's first message only.
        let pushed = (chat.push.is_some()
            && intent == Intent::New
            && (!request || appended.seq == 1))
            .then(|| ChatMessage {
                seq: appended.seq,
                ..message.clone()
            });
        // Encoded once for every member, from the stored bytes.
        let fanout = inbox_fanout(&record, message_envelope(&stored, appended.seq));
        let (outgoing, pending) = chat.deliveries.outgoing(conv.as_str(), 1, fanout);
        ticket.stored(appended.seq, outgoing);
        // Stored and handed to delivery: members without a live session
        // are notified (queued only, never waited for). A retry is a
        // duplicate and never gets here, so each message notifies once.
        if let Some(pushed) = pushed {
            chat.notify_offline(&record, &pushed);
        }
        chat.mark_own_entry_read(conv.as_str(), &user, appended.seq);
        pending.wait().await.map_err(|e| {
            fail(
                ChatError::new(
                    ErrorCode::Unavailable,
                    format!("stored as {} but not delivered ({e}); retry", appended.seq),
                ),
                &message.client_message_id,
            )
        })
    }
}

fn check_member(
    record: std::sync::Arc<ConversationRecord>,
    user: &UserId,
    conv: &ConversationId,
) -> Result<std::sync::Arc<ConversationRecord>, ChatError> {
    if record.member(user.as_str()).is_none() {
        return Err(ChatError::not_a_member(conv.as_str()));
    }
    Ok(record)
}

/// The fan-out that delivers `envelope` to every member's inbox.
fn inbox_fanout(record: &ConversationRecord, envelope: Vec<u8>) -> Fanout {
    let topics = record
        .members
        .iter()
        .filter_map(|m| inbox_topic_of(&m.user))
        .collect();
    Fanout::new(topics, Bytes::from(envelope))
}

/// Maps a validation failure to the client's error code.
fn message_error(e: MessageError) -> ChatError {
    let code = match e {
        MessageError::TooLarge { .. } | MessageError::TextTooLong { .. } => {
            ErrorCode::MessageTooLarge
        }
        MessageError::NotYours | MessageError::NotChangeable(_) => ErrorCode::NotAllowed,
        _ => ErrorCode::InvalidArgument,
    };
    ChatError::new(code, e.to_string())
}
