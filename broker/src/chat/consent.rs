//! Message requests and blocking (`chat.message_requests`), on chat-core's
//! [`consent`](chat_core::consent) rules and the store's relations: who
//! accepted and who blocked whom, cached per user for a moment.
//!
//! - A message in a direct conversation from someone the recipient has not
//!   accepted (and shares no group with) is a *request*: stored and put on
//!   the recipient's inbox, pushed only if it is the conversation's first
//!   message; the sender gets none of the recipient's presence, typing,
//!   receipts or keys until the recipient accepts (`AcceptRequest`), replies
//!   or opens the conversation (`OpenDirect`).
//! - A user may ask to be added to groups only by users they accepted
//!   (`SetGroupConsent`); a blocked user can never add the blocker.
//! - Members report a conversation (`ReportConversation`); the node keeps
//!   the last 1000 reports for the admin API (`GET /v1/admin/reports`).
//! - A message from a blocked sender is refused with `ERROR_CODE_NOT_FOUND`
//!   ("no user ..."), the answer for a user who does not exist, so the
//!   sender cannot tell a block from a deleted account.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use chat_core::consent::{self, DirectSend, Stance};
use chat_core::ids::{ConversationId, UserId};
use parley_proto::v1::{
    response::Result as Answer, AcceptRequest, BlockUser, Empty, ErrorCode, ListBlocks,
    ReportConversation, SetGroupConsent, UnblockUser, UserList,
};
use persistence::{ConversationRecord, MetadataStore, Relation, RelationRecord, StoreError};

use super::consent_cache::{Shared, REFRESH_AFTER};
use super::{now_ms, ChatError, ChatService};

/// The other user of a direct conversation record, if it is one.
fn direct_peer(record: &ConversationRecord, user: &UserId) -> Option<UserId> {
    let (a, b) = ConversationId::parse(&record.id).ok()?.direct_members()?;
    Some(if &a == user { b } else { a })
}

/// What `a` and `b` share, read from the store.
async fn shared_by(
    store: &dyn MetadataStore,
    a: &UserId,
    b: &UserId,
) -> Result<Shared, StoreError> {
    let theirs: std::collections::HashSet<String> = store
        .conversations_of(b.as_str())
        .await?
        .into_iter()
        .collect();
    let mut group = false;
    let mut direct = false;
    for id in store.conversations_of(a.as_str()).await? {
        if theirs.contains(&id) {
            match ConversationId::parse(&id)
                .ok()
                .and_then(|c| c.direct_members())
            {
                Some(_) => direct = true,
                None => group = true,
            }
        }
    }
    Ok((group, direct))
}

impl ChatService {
    /// Whether message requests and blocking are on.
    fn requests_on(&self) -> bool {
        self.config.message_requests
    }

    /// `user`'s relations (cached), and until when a verdict drawn from
    /// them may be kept.
    async fn relations(
        &self,
        user: &UserId,
    ) -> Result<(Arc<Vec<RelationRecord>>, Instant), StoreError> {
        if let Some(hit) = self.relations.get(user.as_str()) {
            if hit.refresh {
                self.refresh_relations(user);
            }
            return Ok((hit.value, hit.fresh_until));
        }
        let version = self.relations.version();
        let loaded = Arc::new(self.stores.metadata.relations_of(user.as_str()).await?);
        self.relations.put(user.as_str(), loaded.clone(), version);
        Ok((loaded, Instant::now() + REFRESH_AFTER))
    }

    /// Re-reads `user`'s relations in the background (the lookup that
    /// claimed it answered from the cache meanwhile).
    fn refresh_relations(&self, user: &UserId) {
        let cache = Arc::clone(&self.relations);
        let store = Arc::clone(&self.stores.metadata);
        let user = user.to_string();
        let version = cache.version();
        tokio::spawn(async move {
            match store.relations_of(&user).await {
                Ok(loaded) => cache.put(&user, Arc::new(loaded), version),
                Err(e) => {
                    cache.refreshed(&user);
                    tracing::debug!(%user, error = %e, "relations not re-read");
                }
            }
        });
    }

    /// What `user` decided about `other`.
    pub(super) async fn stance(&self, user: &UserId, other: &UserId) -> Result<Stance, StoreError> {
        Ok(self.stance_until(user, other).await?.0)
    }

    /// What `user` decided about `other`, and until when that answer may be
    /// kept.
    async fn stance_until(
        &self,
        user: &UserId,
        other: &UserId,
    ) -> Result<(Stance, Instant), StoreError> {
        let (relations, fresh_until) = self.relations(user).await?;
        let about = |relation| {
            relations
                .iter()
                .any(|r| r.other == other.as_str() && r.relation == relation)
        };
        let stance = Stance {
            accepted: about(Relation::Accepted),
            blocked: about(Relation::Blocked),
        };
        Ok((stance, fresh_until))
    }

    /// Records `user`'s decision about `other`.
    async fn decide(
        &self,
        user: &UserId,
        other: &UserId,
        relation: Relation,
    ) -> Result<(), StoreError> {
        self.stores
            .metadata
            .put_relation(RelationRecord {
                user: user.to_string(),
                other: other.to_string(),
                relation,
                at_ms: now_ms(),
            })
            .await?;
        self.relations.forget(user.as_str());
        Ok(())
    }

    /// Records that `user` accepts `other`, unless already recorded.
    pub(super) async fn accept(&self, user: &UserId, other: &UserId) -> Result<(), StoreError> {
        self.accept_until(user, other).await.map(drop)
    }

    /// [`Self::accept`], and until when "already recorded" may be kept
    /// (no longer than now if it was recorded just now).
    async fn accept_until(&self, user: &UserId, other: &UserId) -> Result<Instant, StoreError> {
        if !self.requests_on() {
            return Ok(Instant::now() + REFRESH_AFTER);
        }
        let (stance, fresh_until) = self.stance_until(user, other).await?;
        if stance.accepted {
            return Ok(fresh_until);
        }
        self.decide(user, other, Relation::Accepted).await?;
        Ok(Instant::now())
    }

    /// What `a` and `b` share (a group, their direct conversation).
    async fn share_group(&self, a: &UserId, b: &UserId) -> Result<Shared, StoreError> {
        Ok(self.share_group_until(a, b).await?.0)
    }

    /// [`Self::share_group`], and until when the answer may be kept (as
    /// long as no conversation changes).
    async fn share_group_until(
        &self,
        a: &UserId,
        b: &UserId,
    ) -> Result<(Shared, Instant), StoreError> {
        // Read before the store, so a change racing the reads invalidates.
        let generation = self.conversations.generation();
        if let Some(hit) = self.shared.get(a, b, generation) {
            if hit.refresh {
                self.refresh_shared(a, b, generation);
            }
            return Ok((hit.value, hit.fresh_until));
        }
        let shared = shared_by(self.stores.metadata.as_ref(), a, b).await?;
        self.shared.put(a, b, generation, shared);
        Ok((shared, Instant::now() + REFRESH_AFTER))
    }

    /// Re-reads what `a` and `b` share in the background, at conversation
    /// generation `generation` (the lookup that claimed it answered from the
    /// cache meanwhile).
    fn refresh_shared(&self, a: &UserId, b: &UserId, generation: u64) {
        let cache = Arc::clone(&self.shared);
        let store = Arc::clone(&self.stores.metadata);
        let (a, b) = (a.clone(), b.clone());
        tokio::spawn(async move {
            match shared_by(store.as_ref(), &a, &b).await {
                Ok(shared) => cache.put(&a, &b, generation, shared),
                Err(e) => {
                    cache.refreshed(&a, &b);
                    tracing::debug!(%a, %b, error = %e, "shared conversations not re-read");
                }
            }
        });
    }

    /// Whether `viewer` may see `owner`'s presence and fetch `owner`'s keys:
    /// they share a conversation, and (with message requests on) `owner`
    /// consents to `viewer` and has not blocked them.
    pub async fn shares_conversation(
        &self,
        viewer: &UserId,
        owner: &UserId,
    ) -> Result<bool, StoreError> {
        let (group, direct) = self.share_group(viewer, owner).await?;
        if !self.requests_on() {
            return Ok(group || direct);
        }
        let stance = self.stance(owner, viewer).await?;
        Ok(consent::may_observe(stance, group, direct))
    }

    /// What happens to `sender`'s message in `record`: delivered, delivered
    /// as a request, or refused (blocked), and until when the verdict may be
    /// kept while nothing changes on this node (the relations and the
    /// conversations it was drawn from are fresh until then). Sending is the
    /// sender's consent.
    pub(super) async fn direct_send(
        &self,
        sender: &UserId,
        record: &ConversationRecord,
    ) -> Result<(DirectSend, Instant), ChatError> {
        let Some(recipient) = direct_peer(record, sender).filter(|_| self.requests_on()) else {
            return Ok((DirectSend::Deliver, Instant::now() + REFRESH_AFTER));
        };
        let (stance, mut fresh_until) = self.stance_until(&recipient, sender).await?;
        let verdict = if stance.blocked || stance.accepted {
            consent::direct_send(stance, false)
        } else {
            let ((group, _), shared_until) = self.share_group_until(sender, &recipient).await?;
            fresh_until = fresh_until.min(shared_until);
            consent::direct_send(stance, group)
        };
        match verdict {
            DirectSend::Refuse => {
                tracing::info!(%sender, %recipient, "message from a blocked sender refused");
                return Err(
                    ChatError::new(ErrorCode::NotFound, format!("no user {recipient}"))
                        .in_conversation(&record.id),
                );
            }
            DirectSend::Request | DirectSend::Deliver => {
                let accepted_until = self.accept_until(sender, &recipient).await?;
                fresh_until = fresh_until.min(accepted_until);
            }
        }
        Ok((verdict, fresh_until))
    }

    /// Whether typing indicators and receipts of `user` in `record` reach the
    /// other member: always in groups; in a direct conversation once both
    /// consent to each other.
    pub(super) async fn activity_flows(
        &self,
        user: &UserId,
        record: &ConversationRecord,
    ) -> Result<bool, StoreError> {
        let Some(peer) = direct_peer(record, user).filter(|_| self.requests_on()) else {
            return Ok(true);
        };
        Ok(consent::direct_activity(
            self.stance(user, &peer).await?,
            self.stance(&peer, user).await?,
        ))
    }

    pub(super) async fn block_user(
        &self,
        user: &UserId,
        r: BlockUser,
    ) -> Result<Answer, ChatError> {
        let other = parse_other(user, &r.user)?;
        self.decide(user, &other, Relation::Blocked).await?;
        tracing::info!(%user, blocked = %other, "user blocked");
        Ok(Answer::Ok(Empty {}))
    }

    pub(super) async fn unblock_user(
        &self,
        user: &UserId,
        r: UnblockUser,
    ) -> Result<Answer, ChatError> {
        let other = parse_other(user, &r.user)?;
        match self
            .stores
            .metadata
            .delete_relation(user.as_str(), other.as_str(), Relation::Blocked)
            .await
        {
            Ok(()) => {}
            Err(StoreError::NotFound(_)) => {
                return Err(ChatError::new(
                    ErrorCode::NotFound,
                    format!("{other} is not blocked"),
                ))
            }
            Err(e) => return Err(e.into()),
        }
        self.relations.forget(user.as_str());
        Ok(Answer::Ok(Empty {}))
    }

    pub(super) async fn list_blocks(
        &self,
        user: &UserId,
        _r: ListBlocks,
    ) -> Result<Answer, ChatError> {
        let users = self
            .stores
            .metadata
            .relations_of(user.as_str())
            .await?
            .into_iter()
            .filter(|r| r.relation == Relation::Blocked)
            .map(|r| r.other)
            .collect();
        Ok(Answer::Users(UserList { users }))
    }

    pub(super) async fn accept_request(
        &self,
        user: &UserId,
        r: AcceptRequest,
    ) -> Result<Answer, ChatError> {
        let other = parse_other(user, &r.peer)?;
        if !self.stance(user, &other).await?.accepted {
            self.decide(user, &other, Relation::Accepted).await?;
        }
        Ok(Answer::Ok(Empty {}))
    }
}

impl ChatService {
    /// Refuses adding `users` to a group by `adder` if one of them blocked
    /// `adder` (as if they did not exist), or requires group consent and has
    /// not accepted `adder`.
    pub(super) async fn check_group_consent(
        &self,
        adder: &UserId,
        users: &[UserId],
    ) -> Result<(), ChatError> {
        if !self.requests_on() {
            return Ok(());
        }
        for added in users.iter().filter(|u| *u != adder) {
            let (relations, _) = self.relations(added).await?;
            let has = |other: &str, relation| {
                relations
                    .iter()
                    .any(|r| r.other == other && r.relation == relation)
            };
            if has(adder.as_str(), Relation::Blocked) {
                return Err(ChatError::new(
                    ErrorCode::NotFound,
                    format!("no user {added}"),
                ));
            }
            if has("", Relation::GroupConsentRequired) && !has(adder.as_str(), Relation::Accepted) {
                return Err(ChatError::new(
                    ErrorCode::NotAllowed,
                    format!("{added} may be added to groups only by people they accepted"),
                ));
            }
        }
        Ok(())
    }

    pub(super) async fn set_group_consent(
        &self,
        user: &UserId,
        r: SetGroupConsent,
    ) -> Result<Answer, ChatError> {
        if r.required {
            self.stores
                .metadata
                .put_relation(RelationRecord {
                    user: user.to_string(),
                    other: String::new(),
                    relation: Relation::GroupConsentRequired,
                    at_ms: now_ms(),
                })
                .await?;
        } else {
            match self
                .stores
                .metadata
                .delete_relation(user.as_str(), "", Relation::GroupConsentRequired)
                .await
            {
                Ok(()) | Err(StoreError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.relations.forget(user.as_str());
        Ok(Answer::Ok(Empty {}))
    }
}

/// Most reports kept in memory; older ones are dropped (and stay in the log).
const MAX_REPORTS: usize = 1000;

/// Longest reason kept, in characters.
const MAX_REASON_CHARS: usize = 1000;

/// A conversation reported by a member.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    /// Who reported.
    pub reporter: String,
    /// The conversation.
    pub conversation_id: String,
    /// Its last seq when reported.
    pub last_seq: u64,
    /// The reporter's reason.
    pub reason: String,
    /// When, milliseconds since the Unix epoch.
    pub at_ms: i64,
}

/// The reports this node received, newest last.
#[derive(Default)]
pub(super) struct Reports(Mutex<std::collections::VecDeque<Report>>);

impl ChatService {
    pub(super) async fn report_conversation(
        &self,
        user: &UserId,
        r: ReportConversation,
    ) -> Result<Answer, ChatError> {
        let conv = ConversationId::parse(&r.conversation_id)
            .map_err(|e| ChatError::invalid(format!("conversation_id: {e}")))?;
        self.member_conversation(user, &conv).await?;
        let report = Report {
            reporter: user.to_string(),
            conversation_id: conv.to_string(),
            last_seq: self.stores.history.last_seq(conv.as_str()).await?,
            reason: r.reason.chars().take(MAX_REASON_CHARS).collect(),
            at_ms: now_ms(),
        };
        tracing::warn!(reporter = %report.reporter, conversation = %report.conversation_id,
            last_seq = report.last_seq, reason = %report.reason, "conversation reported");
        let mut reports = self.reports.0.lock().unwrap_or_else(|e| e.into_inner());
        if reports.len() >= MAX_REPORTS {
            reports.pop_front();
        }
        reports.push_back(report);
        Ok(Answer::Ok(Empty {}))
    }

    /// The reports this node received (at most the last 1000), oldest first.
    pub fn reports(&self) -> Vec<Report> {
        let reports = self.reports.0.lock().unwrap_or_else(|e| e.into_inner());
        reports.iter().cloned().collect()
    }
}

/// A user named in a request, not the caller.
fn parse_other(user: &UserId, other: &str) -> Result<UserId, ChatError> {
    let other = UserId::parse(other).map_err(|e| ChatError::invalid(format!("user: {e}")))?;
    if &other == user {
        return Err(ChatError::invalid("that is you"));
    }
    Ok(other)
}
