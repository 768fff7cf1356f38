//! Conversation events: the entry a membership change leaves in its
//! conversation, and who receives it. Pure: the broker stores and delivers.

use parley_proto::v1::{self, ConversationEvent, ConversationEventKind};

use crate::ids::UserId;
use crate::membership::{Conversation, GroupOp, Role};

/// The event recording that `actor` applied `op` to `before`, giving `after`;
/// `None` when the change changed nothing (adding only existing members,
/// renaming to the same name, setting a role a member already has).
pub fn change_event(
    before: &Conversation,
    after: &Conversation,
    actor: &UserId,
    op: &GroupOp,
) -> Option<ConversationEvent> {
    if before == after {
        return None;
    }
    let new_owner = new_owner(before, after);
    let event = match op {
        GroupOp::Rename(name) => ConversationEvent {
            kind: ConversationEventKind::Renamed as i32,
            name: name.clone(),
            ..ConversationEvent::default()
        },
        GroupOp::Add(_) => ConversationEvent {
            kind: ConversationEventKind::MembersAdded as i32,
            users: after
                .members
                .iter()
                .filter(|m| !before.is_member(&m.user))
                .map(|m| m.user.to_string())
                .collect(),
            ..ConversationEvent::default()
        },
        GroupOp::Remove(user) if user == actor => left(new_owner),
        GroupOp::Leave => left(new_owner),
        GroupOp::Remove(user) => ConversationEvent {
            kind: ConversationEventKind::MemberRemoved as i32,
            users: vec![user.to_string()],
            new_owner,
            ..ConversationEvent::default()
        },
        GroupOp::SetRole(user, role) => ConversationEvent {
            kind: ConversationEventKind::RoleChanged as i32,
            users: vec![user.to_string()],
            role: role_proto(*role) as i32,
            new_owner,
            ..ConversationEvent::default()
        },
    };
    Some(event)
}

/// The event of a group's creation by its owner.
pub fn created_event(conv: &Conversation, owner: &UserId) -> ConversationEvent {
    ConversationEvent {
        kind: ConversationEventKind::Created as i32,
        users: conv
            .members
            .iter()
            .filter(|m| &m.user != owner)
            .map(|m| m.user.to_string())
            .collect(),
        name: conv.name.clone(),
        ..ConversationEvent::default()
    }
}

/// Who receives the event of a change from `before` to `after`: every member
/// after the change, then everyone the change removed (for whom it is the
/// last entry of the conversation they receive).
pub fn event_recipients(before: &Conversation, after: &Conversation) -> Vec<UserId> {
    let mut users: Vec<UserId> = after.members.iter().map(|m| m.user.clone()).collect();
    users.extend(
        before
            .members
            .iter()
            .filter(|m| !after.is_member(&m.user))
            .map(|m| m.user.clone()),
    );
    users
}

/// The wire form of a role.
pub fn role_proto(role: Role) -> v1::Role {
    match role {
        Role::Member => v1::Role::Member,
        Role::Admin => v1::Role::Admin,
        Role::Owner => v1::Role::Owner,
    }
}

fn left(new_owner: String) -> ConversationEvent {
    ConversationEvent {
        kind: ConversationEventKind::MemberLeft as i32,
        new_owner,
        ..ConversationEvent::default()
    }
}

/// The owner of `after` if it is not the owner of `before`; empty otherwise.
fn new_owner(before: &Conversation, after: &Conversation) -> String {
    let owner = |c: &Conversation| {
        c.members
            .iter()
            .find(|m| m.role == Role::Owner)
            .map(|m| m.user.clone())
    };
    match (owner(before), owner(after)) {
        (b, Some(a)) if b.as_ref() != Some(&a) => a.to_string(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::{apply, create_group};

    fn u(s: &str) -> UserId {
        UserId::parse(s).unwrap()
    }

    fn group() -> Conversation {
        create_group(&u("alice"), "g", &[u("bob"), u("carol")], 10).unwrap()
    }

    fn change(conv: &Conversation, actor: &str, op: GroupOp) -> Option<ConversationEvent> {
        let after = apply(conv, &u(actor), op.clone(), 10).unwrap();
        change_event(conv, &after, &u(actor), &op)
    }

    #[test]
    fn created_names_the_other_members() {
        let e = created_event(&group(), &u("alice"));
        assert_eq!(e.kind, ConversationEventKind::Created as i32);
        assert_eq!(e.users, ["bob", "carol"]);
        assert_eq!(e.name, "g");
    }

    #[test]
    fn added_lists_only_new_members() {
        let e = change(&group(), "alice", GroupOp::Add(vec![u("bob"), u("dave")])).unwrap();
        assert_eq!(e.kind, ConversationEventKind::MembersAdded as i32);
        assert_eq!(e.users, ["dave"]);
        assert_eq!(
            change(&group(), "alice", GroupOp::Add(vec![u("bob")])),
            None
        );
    }

    #[test]
    fn removing_yourself_is_leaving() {
        let e = change(&group(), "bob", GroupOp::Remove(u("bob"))).unwrap();
        assert_eq!(e.kind, ConversationEventKind::MemberLeft as i32);
        assert!(e.users.is_empty());
        let e = change(&group(), "alice", GroupOp::Remove(u("bob"))).unwrap();
        assert_eq!(e.kind, ConversationEventKind::MemberRemoved as i32);
        assert_eq!(e.users, ["bob"]);
        assert_eq!(e.new_owner, "");
    }

    #[test]
    fn owner_leaving_names_the_heir() {
        let e = change(&group(), "alice", GroupOp::Leave).unwrap();
        assert_eq!(e.kind, ConversationEventKind::MemberLeft as i32);
        assert_eq!(e.new_owner, "bob");
    }

    #[test]
    fn role_changes_and_handovers() {
        let e = change(&group(), "alice", GroupOp::SetRole(u("bob"), Role::Admin)).unwrap();
        assert_eq!(e.kind, ConversationEventKind::RoleChanged as i32);
        assert_eq!(
            (e.users[0].as_str(), e.role),
            ("bob", v1::Role::Admin as i32)
        );
        let e = change(&group(), "alice", GroupOp::SetRole(u("carol"), Role::Owner)).unwrap();
        assert_eq!(e.new_owner, "carol");
        assert_eq!(
            change(&group(), "alice", GroupOp::SetRole(u("bob"), Role::Member)),
            None
        );
    }

    #[test]
    fn renames_and_recipients() {
        let e = change(&group(), "alice", GroupOp::Rename("h".into())).unwrap();
        assert_eq!(
            (e.kind, e.name.as_str()),
            (ConversationEventKind::Renamed as i32, "h")
        );
        assert_eq!(change(&group(), "alice", GroupOp::Rename("g".into())), None);
        let before = group();
        let after = apply(&before, &u("alice"), GroupOp::Remove(u("bob")), 10).unwrap();
        let to: Vec<String> = event_recipients(&before, &after)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(to, ["alice", "carol", "bob"]);
    }
}
