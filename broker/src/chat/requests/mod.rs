//! `q/{user}`: requests. The answer is a `Response` with the request's
//! `request_id`, published on `a/{user}`; an MQTT 5 client may instead name
//! a Response Topic of its own (`a/{user}` or `u/{user}/i`) and gets its
//! Correlation Data back. Requests are rate-limited per user
//! (`chat.requests_per_sec`, `chat.request_burst`); one over the limit is
//! answered with `RATE_LIMITED`. One file per group of commands.

mod direct;
mod fetch;
mod groups;
mod sync;

use chat_core::ids::UserId;
use chat_core::topics::{answer_topic, ChatTopic};
use parley_proto::v1::{
    envelope::Kind, request::Op, response::Result as Answer, ErrorCode, Response,
};
use parley_proto::{decode_envelope, encode_envelope};
use rumqttd::protocol::PublishProperties;

use super::{ChatError, ChatService};

impl ChatService {
    /// Handles a request published to `q/{user}` by `user`. Errors go back as
    /// a `Response` carrying an `Error`, so the MQTT acknowledgement is a success.
    pub(super) async fn request(
        &self,
        user: &UserId,
        payload: &[u8],
        properties: Option<&PublishProperties>,
    ) -> Result<(), ChatError> {
        let envelope = decode_envelope(payload).map_err(|e| ChatError::malformed(e.to_string()))?;
        let Some(Kind::Request(request)) = envelope.kind else {
            return Err(ChatError::malformed(
                "q/{user} carries Request envelopes only",
            ));
        };
        let request_id = request.request_id.clone();
        let result = match request.op {
            None => Err(ChatError::malformed("request without an operation")),
            Some(_) if !self.rates.request(user.as_str()) => Err(ChatError::new(
                ErrorCode::RateLimited,
                "too many requests; slow down",
            )),
            Some(op) => self.dispatch(user, op).await,
        };
        let result =
            result.unwrap_or_else(|e| Answer::Error(e.for_request(&request_id).into_proto()));
        let response = Response {
            request_id,
            result: Some(result),
        };
        let (topic, reply_properties) = reply_route(user, properties);
        self.publisher.publish_with_properties(
            &topic,
            encode_envelope(&response.into()).into(),
            reply_properties,
        );
        Ok(())
    }

    async fn dispatch(&self, user: &UserId, op: Op) -> Result<Answer, ChatError> {
        match op {
            Op::SyncConversations(r) => self.sync_conversations(user, r).await,
            Op::FetchMessages(r) => self.fetch_messages(user, r).await,
            Op::CreateGroup(r) => self.create_group(user, r).await,
            Op::RenameGroup(r) => self.rename_group(user, r).await,
            Op::AddMembers(r) => self.add_members(user, r).await,
            Op::RemoveMember(r) => self.remove_member(user, r).await,
            Op::SetRole(r) => self.set_role(user, r).await,
            Op::LeaveGroup(r) => self.leave_group(user, r).await,
            Op::OpenDirect(r) => self.open_direct(user, r).await,
            Op::GetConversation(r) => self.get_conversation(user, r).await,
            Op::BlockUser(r) => self.block_user(user, r).await,
            Op::UnblockUser(r) => self.unblock_user(user, r).await,
            Op::ListBlocks(r) => self.list_blocks(user, r).await,
            Op::AcceptRequest(r) => self.accept_request(user, r).await,
            Op::SetGroupConsent(r) => self.set_group_consent(user, r).await,
            Op::ReportConversation(r) => self.report_conversation(user, r).await,
        }
    }
}

/// Where the answer goes: the MQTT 5 Response Topic if it is one of the
/// user's own answer or inbox topics, `a/{user}` otherwise.
fn reply_route(
    user: &UserId,
    properties: Option<&PublishProperties>,
) -> (String, Option<PublishProperties>) {
    let Some(props) = properties else {
        return (answer_topic(user), None);
    };
    let topic = props
        .response_topic
        .as_deref()
        .filter(|t| matches!(ChatTopic::parse(t), Ok(Some(ChatTopic::Answer(ref u) | ChatTopic::Inbox(ref u))) if u == user))
        .map_or_else(|| answer_topic(user), str::to_owned);
    let reply = props
        .correlation_data
        .clone()
        .map(|data| PublishProperties {
            correlation_data: Some(data),
            ..PublishProperties::default()
        });
    (topic, reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_topic_must_be_the_users_own() {
        let alice = UserId::parse("alice").unwrap();
        let props = |t: &str| PublishProperties {
            response_topic: Some(t.into()),
            correlation_data: Some(bytes::Bytes::from_static(b"c")),
            ..PublishProperties::default()
        };
        assert_eq!(
            reply_route(&alice, Some(&props("u/alice/i"))).0,
            "u/alice/i"
        );
        assert_eq!(reply_route(&alice, Some(&props("u/bob/i"))).0, "a/alice");
        assert_eq!(reply_route(&alice, Some(&props("devices/x"))).0, "a/alice");
        let (_, reply) = reply_route(&alice, Some(&props("a/alice")));
        assert_eq!(reply.unwrap().correlation_data.as_deref(), Some(&b"c"[..]));
        assert_eq!(reply_route(&alice, None), ("a/alice".to_owned(), None));
    }
}
