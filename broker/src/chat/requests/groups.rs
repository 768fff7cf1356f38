//! Group commands: create, rename, add and remove members, change roles,
//! leave. chat-core's membership rules decide; the change is written with a
//! compare-and-set on the record's version and retried on a lost race.

use chat_core::events::{change_event, created_event, event_recipients};
use chat_core::ids::{ConversationId, ConversationKind, UserId};
use chat_core::membership::{apply, create_group, GroupOp, MembershipError};
use parley_proto::v1::{
    response::Result as Answer, AddMembers, CreateGroup, Empty, ErrorCode, GetConversation,
    LeaveGroup, RemoveMember, RenameGroup, SetRole,
};
use persistence::{ConversationKind as StoredKind, ConversationRecord, StoreError};
use ring::rand::{SecureRandom, SystemRandom};

use crate::chat::convert::{apply_domain, conversation_proto, role_from_proto, to_domain};
use crate::chat::{now_ms, ChatError, ChatService};

/// Attempts of a membership change that keeps losing compare-and-set races.
const CAS_ATTEMPTS: usize = 5;

impl ChatService {
    pub(super) async fn create_group(
        &self,
        user: &UserId,
        r: CreateGroup,
    ) -> Result<Answer, ChatError> {
        let members = self.existing_users(&r.members).await?;
        self.check_group_consent(user, &members).await?;
        let conv = create_group(user, &r.name, &members, self.config.max_group_size)
            .map_err(membership_error)?;
        let mut random = [0u8; 10];
        SystemRandom::new()
            .fill(&mut random)
            .map_err(|_| ChatError::new(ErrorCode::Internal, "no randomness for a group id"))?;
        let id = ConversationId::group_from_random(random);
        let now = now_ms();
        let empty = ConversationRecord {
            id: id.to_string(),
            kind: StoredKind::Group,
            name: String::new(),
            members: Vec::new(),
            created_at_ms: now,
            updated_at_ms: now,
            version: 1,
        };
        let record = self
            .stores
            .metadata
            .create_conversation(apply_domain(&empty, &conv, now))
            .await?;
        let record = self.conversations.put(record);
        let recipients: Vec<UserId> = conv.members.iter().map(|m| m.user.clone()).collect();
        let last_seq = self
            .event_after_change(&record.id, user, created_event(&conv, user), &recipients)
            .await;
        Ok(Answer::Conversation(conversation_proto(&record, last_seq)))
    }

    pub(super) async fn rename_group(
        &self,
        user: &UserId,
        r: RenameGroup,
    ) -> Result<Answer, ChatError> {
        self.change_group(user, &r.conversation_id, || {
            Ok(GroupOp::Rename(r.name.clone()))
        })
        .await
    }

    pub(super) async fn add_members(
        &self,
        user: &UserId,
        r: AddMembers,
    ) -> Result<Answer, ChatError> {
        let users = self.existing_users(&r.users).await?;
        self.check_group_consent(user, &users).await?;
        self.change_group(user, &r.conversation_id, || Ok(GroupOp::Add(users.clone())))
            .await
    }

    pub(super) async fn remove_member(
        &self,
        user: &UserId,
        r: RemoveMember,
    ) -> Result<Answer, ChatError> {
        let target =
            UserId::parse(&r.user).map_err(|e| ChatError::invalid(format!("user: {e}")))?;
        self.change_group(user, &r.conversation_id, || {
            Ok(GroupOp::Remove(target.clone()))
        })
        .await
    }

    pub(super) async fn set_role(&self, user: &UserId, r: SetRole) -> Result<Answer, ChatError> {
        let target =
            UserId::parse(&r.user).map_err(|e| ChatError::invalid(format!("user: {e}")))?;
        let role = role_from_proto(r.role)?;
        self.change_group(user, &r.conversation_id, || {
            Ok(GroupOp::SetRole(target.clone(), role))
        })
        .await
    }

    pub(super) async fn leave_group(
        &self,
        user: &UserId,
        r: LeaveGroup,
    ) -> Result<Answer, ChatError> {
        self.change_group(user, &r.conversation_id, || Ok(GroupOp::Leave))
            .await?;
        Ok(Answer::Ok(Empty {}))
    }

    pub(super) async fn get_conversation(
        &self,
        user: &UserId,
        r: GetConversation,
    ) -> Result<Answer, ChatError> {
        let conv = ConversationId::parse(&r.conversation_id)
            .map_err(|e| ChatError::invalid(format!("conversation_id: {e}")))?;
        let record = self.member_conversation(user, &conv).await?;
        let last_seq = self.stores.history.last_seq(conv.as_str()).await?;
        Ok(Answer::Conversation(conversation_proto(&record, last_seq)))
    }

    /// Applies `op` by `user` to group `id` with compare-and-set, retrying lost races.
    async fn change_group(
        &self,
        user: &UserId,
        id: &str,
        op: impl Fn() -> Result<GroupOp, ChatError>,
    ) -> Result<Answer, ChatError> {
        let conv = ConversationId::parse(id)
            .map_err(|e| ChatError::invalid(format!("conversation_id: {e}")))?;
        if conv.kind() != ConversationKind::Group {
            return Err(
                ChatError::not_allowed("direct conversations have fixed members")
                    .in_conversation(id),
            );
        }
        for _ in 0..CAS_ATTEMPTS {
            let record = self
                .conversations
                .get(id)
                .await?
                .ok_or_else(|| ChatError::unknown_conversation(id))?;
            let before = to_domain(&record)?;
            let op = op()?;
            let next = apply(&before, user, op.clone(), self.config.max_group_size)
                .map_err(|e| membership_error(e).in_conversation(id))?;
            let event = change_event(&before, &next, user, &op);
            let updated = apply_domain(&record, &next, now_ms());
            match self
                .stores
                .metadata
                .update_conversation(updated, record.version)
                .await
            {
                Ok(stored) => {
                    let stored = self.conversations.put(stored);
                    self.deliveries.conversation_changed(id);
                    let last_seq = match event {
                        Some(event) => {
                            let recipients = event_recipients(&before, &next);
                            self.event_after_change(id, user, event, &recipients).await
                        }
                        None => self.stores.history.last_seq(id).await?,
                    };
                    return Ok(Answer::Conversation(conversation_proto(&stored, last_seq)));
                }
                Err(StoreError::Conflict(_)) => self.conversations.forget(id),
                Err(e) => return Err(e.into()),
            }
        }
        Err(ChatError::new(
            ErrorCode::Unavailable,
            "the group is changing too fast; retry",
        )
        .in_conversation(id))
    }

    /// Records the event of a change already written to the conversation,
    /// returning the conversation's last seq. The change stands whatever
    /// happens here, so a failure to store the event is logged, not returned.
    async fn event_after_change(
        &self,
        id: &str,
        actor: &UserId,
        event: parley_proto::v1::ConversationEvent,
        recipients: &[UserId],
    ) -> u64 {
        match self.record_event(id, actor, event, recipients).await {
            Ok(seq) => seq,
            Err(e) => {
                tracing::warn!(conversation = %id, reason = %e.message, "conversation event not stored");
                self.stores.history.last_seq(id).await.unwrap_or(0)
            }
        }
    }

    /// Parses `names` and checks that each user exists.
    async fn existing_users(&self, names: &[String]) -> Result<Vec<UserId>, ChatError> {
        let mut users = Vec::with_capacity(names.len());
        for name in names {
            let user = UserId::parse(name)
                .map_err(|e| ChatError::invalid(format!("user {name:?}: {e}")))?;
            if self
                .stores
                .metadata
                .get_user(user.as_str())
                .await?
                .is_none()
            {
                return Err(ChatError::new(
                    ErrorCode::NotFound,
                    format!("no user {name}"),
                ));
            }
            users.push(user);
        }
        Ok(users)
    }
}

/// Maps a refused membership change to the client's error code.
pub(crate) fn membership_error(e: MembershipError) -> ChatError {
    let code = match e {
        MembershipError::NotAMember => ErrorCode::NotAMember,
        MembershipError::NotAllowed(_) => ErrorCode::NotAllowed,
        MembershipError::GroupFull { .. } => ErrorCode::GroupFull,
        MembershipError::NoSuchMember(_) => ErrorCode::NotFound,
        MembershipError::InvalidName(_) => ErrorCode::InvalidArgument,
    };
    ChatError::new(code, e.to_string())
}
