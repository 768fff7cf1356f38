//! The admin API, `/v1/admin/...`, for operators holding the admin token
//! (`[admin] token`, sent as `Authorization: Bearer <token>`):
//!
//! - `GET /v1/admin/sessions`: every live MQTT session of this node.
//! - `DELETE /v1/admin/sessions/{user}/{client_id}`: ends that session
//!   (MQTT 5 clients get DISCONNECT 0x98, administrative action).
//! - `POST /v1/admin/users/{user}/disable` and `.../enable`: a disabled user
//!   cannot log in or connect; disabling also ends their live sessions.
//! - `GET /v1/admin/stats`: connection and user counts.
//! - `POST /v1/admin/invites`: a new invite token for `accounts.signup = "invite"`.
//! - `GET /v1/admin/reports`: conversations members reported
//!   (`ReportConversation`) on this node, the last 1000, oldest first.
//!
//! Without a configured token every admin path answers 404, as if the API
//! did not exist.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{async_trait, Json, Router};
use persistence::MetadataStore;
use serde::Serialize;

use super::bearer::bearer_token;
use super::{ApiError, HttpState};
use crate::chat::ChatService;
use crate::mqtt::sessions::{SessionInfo, SessionRegistry};
use parley_engine::codec::Version;

/// What the admin endpoints need.
pub struct AdminState {
    /// The bearer token callers must present.
    pub token: String,
    /// The node's live sessions.
    pub sessions: Arc<SessionRegistry>,
    /// The account store.
    pub store: Arc<dyn MetadataStore>,
    /// The chat service (for presence counts).
    pub chat: Arc<ChatService>,
}

impl std::fmt::Debug for AdminState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminState")
            .field("sessions", &self.sessions)
            .finish_non_exhaustive()
    }
}

/// The admin routes.
pub fn routes() -> Router<HttpState> {
    Router::new()
        .route("/v1/admin/sessions", get(list_sessions))
        .route("/v1/admin/sessions/:user/:client_id", delete(kick_session))
        .route("/v1/admin/users/:user/disable", post(disable_user))
        .route("/v1/admin/users/:user/enable", post(enable_user))
        .route("/v1/admin/stats", get(stats))
        .route("/v1/admin/invites", post(create_invite))
        .route("/v1/admin/reports", get(list_reports))
}

/// The reports this node received.
pub async fn list_reports(Admin(admin): Admin) -> Json<Vec<crate::chat::consent::Report>> {
    Json(admin.chat.reports())
}

/// A new invite token.
#[derive(Debug, Serialize)]
pub struct InviteView {
    /// The token, for the invitee's `POST /v1/users` as `"invite"`.
    pub invite: String,
    /// Expiry, Unix seconds.
    pub expires_at: u64,
}

/// Issues an invite token (201); it makes one account before it expires.
pub async fn create_invite(
    _admin: Admin,
    axum::extract::State(state): axum::extract::State<HttpState>,
) -> (StatusCode, Json<InviteView>) {
    let invite = state.signup.issue_invite();
    tracing::info!(
        expires_at = invite.expires_at,
        "invite issued by an administrator"
    );
    (
        StatusCode::CREATED,
        Json(InviteView {
            invite: invite.token,
            expires_at: invite.expires_at,
        }),
    )
}

/// An authorized admin request: extracting it checks the bearer token.
pub struct Admin(Arc<AdminState>);

#[async_trait]
impl<S> FromRequestParts<S> for Admin
where
    HttpState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Admin, ApiError> {
        let state = HttpState::from_ref(state);
        let admin = state.admin.ok_or(ApiError::NotFound)?;
        let presented = bearer_token(parts).ok_or(ApiError::AdminTokenRequired)?;
        if !same_secret(presented, &admin.token) {
            return Err(ApiError::AdminTokenRequired);
        }
        Ok(Admin(admin))
    }
}

/// Compares two secrets without leaking where they differ: the SHA-256
/// digests are compared, so timing reveals nothing about the token.
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    use ring::digest::{digest, SHA256};
    digest(&SHA256, a.as_bytes()).as_ref() == digest(&SHA256, b.as_bytes()).as_ref()
}

/// One live session as listed.
#[derive(Debug, Serialize)]
pub struct SessionView {
    /// The user.
    pub user: String,
    /// The MQTT client id.
    pub client_id: String,
    /// `tcp`, `tls` or `websocket`.
    pub transport: &'static str,
    /// The peer's address.
    pub peer: String,
    /// `3.1.1` or `5`.
    pub protocol: &'static str,
    /// When CONNECT was accepted, ms since the Unix epoch.
    pub connected_at_ms: i64,
}

impl From<SessionInfo> for SessionView {
    fn from(info: SessionInfo) -> SessionView {
        SessionView {
            user: info.user,
            client_id: info.client_id,
            transport: info.transport.as_str(),
            peer: info.peer.to_string(),
            protocol: match info.version {
                Version::V4 => "3.1.1",
                Version::V5 => "5",
            },
            connected_at_ms: info.connected_at_ms,
        }
    }
}

/// The body of `GET /v1/admin/sessions`.
#[derive(Debug, Serialize)]
pub struct Sessions {
    /// Live sessions, by user then client id.
    pub sessions: Vec<SessionView>,
}

/// Lists the live sessions.
pub async fn list_sessions(Admin(admin): Admin) -> Json<Sessions> {
    Json(Sessions {
        sessions: admin.sessions.list().into_iter().map(Into::into).collect(),
    })
}

/// Ends one session: 204, or 404 if there is none.
pub async fn kick_session(
    Admin(admin): Admin,
    Path((user, client_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    if admin.sessions.kick(&user, &client_id) {
        tracing::info!(%user, %client_id, "session kicked by an administrator");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NoSuchSession { user, client_id })
    }
}

/// The body of a disable or enable answer.
#[derive(Debug, Serialize)]
pub struct UserState {
    /// The user.
    pub user: String,
    /// Whether the account is now disabled.
    pub disabled: bool,
    /// Live sessions ended by this call.
    pub sessions_ended: usize,
}

/// Disables a user and ends their sessions.
pub async fn disable_user(
    Admin(admin): Admin,
    Path(user): Path<String>,
) -> Result<Json<UserState>, ApiError> {
    set_disabled(&admin, &user, true).await?;
    let sessions_ended = admin.sessions.kick_user(&user);
    tracing::info!(%user, sessions_ended, "user disabled by an administrator");
    Ok(Json(UserState {
        user,
        disabled: true,
        sessions_ended,
    }))
}

/// Enables a user again.
pub async fn enable_user(
    Admin(admin): Admin,
    Path(user): Path<String>,
) -> Result<Json<UserState>, ApiError> {
    set_disabled(&admin, &user, false).await?;
    tracing::info!(%user, "user enabled by an administrator");
    Ok(Json(UserState {
        user,
        disabled: false,
        sessions_ended: 0,
    }))
}

async fn set_disabled(admin: &AdminState, user: &str, disabled: bool) -> Result<(), ApiError> {
    let unavailable = |e: persistence::StoreError| {
        tracing::error!(%user, error = %e, "admin: account store failed");
        ApiError::Unavailable
    };
    if admin
        .store
        .get_user(user)
        .await
        .map_err(unavailable)?
        .is_none()
    {
        return Err(ApiError::NoSuchUser(user.to_owned()));
    }
    admin
        .store
        .set_user_disabled(user, disabled)
        .await
        .map_err(unavailable)
}

/// The body of `GET /v1/admin/stats`.
#[derive(Debug, Serialize)]
pub struct Stats {
    /// Live MQTT connections past CONNECT.
    pub connections: usize,
    /// Live connections by transport.
    pub connections_by_transport: BTreeMap<&'static str, usize>,
    /// Users with at least one live session.
    pub users_online: usize,
}

/// Connection and user counts of this node.
pub async fn stats(Admin(admin): Admin) -> Json<Stats> {
    let by_transport: BTreeMap<_, _> = admin
        .sessions
        .count_by_transport()
        .into_iter()
        .map(|(t, n)| (t.as_str(), n))
        .collect();
    Json(Stats {
        connections: by_transport.values().sum(),
        connections_by_transport: by_transport,
        users_online: admin.chat.presence.online_users(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_by_value() {
        let token = "0123456789abcdef0123456789abcdef";
        assert!(same_secret(token, token));
        assert!(!same_secret(token, "0123456789abcdef0123456789abcdeX"));
        assert!(!same_secret(token, ""));
    }
}
