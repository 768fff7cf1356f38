//! Conversation membership rules: who may create, rename, add, remove,
//! change roles and leave, and the group size limit. Pure functions over a
//! conversation's state; the broker stores the result.

use crate::ids::UserId;

/// A member's role. Ordered: `Member < Admin < Owner`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// May read and write.
    Member,
    /// May also rename the group and add or remove members.
    Admin,
    /// May also change roles and remove admins.
    Owner,
}

/// One member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Who.
    pub user: UserId,
    /// Their role.
    pub role: Role,
}

/// Direct or group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Two users; membership is fixed.
    Direct,
    /// A named group.
    Group,
}

/// What the rules need to know of a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    /// Direct or group.
    pub kind: Kind,
    /// Group name (empty for direct).
    pub name: String,
    /// Members in join order.
    pub members: Vec<Member>,
}

impl Conversation {
    /// The role of `user`, if a member.
    pub fn role_of(&self, user: &UserId) -> Option<Role> {
        self.members
            .iter()
            .find(|m| &m.user == user)
            .map(|m| m.role)
    }

    /// Whether `user` is a member.
    pub fn is_member(&self, user: &UserId) -> bool {
        self.role_of(user).is_some()
    }
}

/// A change to a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupOp {
    /// Set the name.
    Rename(String),
    /// Add users (already-members are left as they are).
    Add(Vec<UserId>),
    /// Remove a member.
    Remove(UserId),
    /// Change a member's role.
    SetRole(UserId, Role),
    /// The actor leaves.
    Leave,
}

/// Why a membership change is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    /// The actor is not a member.
    #[error("not a member of this conversation")]
    NotAMember,
    /// The actor's role does not allow the change.
    #[error("not allowed: {0}")]
    NotAllowed(&'static str),
    /// The group would exceed its size limit.
    #[error("group would have {would_have} members; the limit is {limit}")]
    GroupFull {
        /// The configured limit.
        limit: usize,
        /// Members after the change.
        would_have: usize,
    },
    /// The target user is not a member.
    #[error("{0} is not a member")]
    NoSuchMember(String),
    /// The group name is empty, too long or has control characters.
    #[error("invalid group name: {0}")]
    InvalidName(&'static str),
}

/// Maximum group name length in characters.
pub const MAX_GROUP_NAME_CHARS: usize = 128;

fn validate_name(name: &str) -> Result<(), MembershipError> {
    if name.trim().is_empty() {
        return Err(MembershipError::InvalidName("empty"));
    }
    if name.chars().count() > MAX_GROUP_NAME_CHARS {
        return Err(MembershipError::InvalidName("longer than 128 characters"));
    }
    if name.chars().any(char::is_control) {
        return Err(MembershipError::InvalidName("control characters"));
    }
    Ok(())
}

/// A new group owned by `owner` with `others` as members (duplicates and the owner ignored).
pub fn create_group(
    owner: &UserId,
    name: &str,
    others: &[UserId],
    max_size: usize,
) -> Result<Conversation, MembershipError> {
    validate_name(name)?;
    let mut members = vec![Member {
        user: owner.clone(),
        role: Role::Owner,
    }];
    for user in others {
        if !members.iter().any(|m| &m.user == user) {
            members.push(Member {
                user: user.clone(),
                role: Role::Member,
            });
        }
    }
    if members.len() > max_size {
        return Err(MembershipError::GroupFull {
            limit: max_size,
            would_have: members.len(),
        });
    }
    Ok(Conversation {
        kind: Kind::Group,
        name: name.to_owned(),
        members,
    })
}

/// The direct conversation between two distinct users.
pub fn direct(a: &UserId, b: &UserId) -> Conversation {
    Conversation {
        kind: Kind::Direct,
        name: String::new(),
        members: [a, b]
            .into_iter()
            .map(|u| Member {
                user: u.clone(),
                role: Role::Member,
            })
            .collect(),
    }
}

/// Applies `op` by `actor` to `conv`, returning the new state or why not.
pub fn apply(
    conv: &Conversation,
    actor: &UserId,
    op: GroupOp,
    max_size: usize,
) -> Result<Conversation, MembershipError> {
    let actor_role = conv.role_of(actor).ok_or(MembershipError::NotAMember)?;
    if conv.kind == Kind::Direct {
        return Err(MembershipError::NotAllowed(
            "direct conversations have fixed members",
        ));
    }
    let mut next = conv.clone();
    match op {
        GroupOp::Rename(name) => {
            require(actor_role >= Role::Admin, "only admins rename a group")?;
            validate_name(&name)?;
            next.name = name;
        }
        GroupOp::Add(users) => {
            require(actor_role >= Role::Admin, "only admins add members")?;
            for user in users {
                if !next.is_member(&user) {
                    next.members.push(Member {
                        user,
                        role: Role::Member,
                    });
                }
            }
            if next.members.len() > max_size {
                return Err(MembershipError::GroupFull {
                    limit: max_size,
                    would_have: next.members.len(),
                });
            }
        }
        GroupOp::Remove(user) => {
            let target = conv
                .role_of(&user)
                .ok_or_else(|| MembershipError::NoSuchMember(user.to_string()))?;
            if &user != actor {
                require(actor_role >= Role::Admin, "only admins remove members")?;
                require(
                    actor_role > target,
                    "you can only remove members of a lower role",
                )?;
            }
            next = leave(next, &user);
        }
        GroupOp::SetRole(user, role) => {
            require(actor_role == Role::Owner, "only the owner changes roles")?;
            conv.role_of(&user)
                .ok_or_else(|| MembershipError::NoSuchMember(user.to_string()))?;
            require(
                &user != actor || role == Role::Owner,
                "hand ownership to another member instead of demoting yourself",
            )?;
            for m in next.members.iter_mut() {
                if m.user == user {
                    m.role = role;
                } else if role == Role::Owner && m.role == Role::Owner {
                    // One owner at a time: the previous owner becomes an admin.
                    m.role = Role::Admin;
                }
            }
        }
        GroupOp::Leave => next = leave(next, actor),
    }
    Ok(next)
}

/// Removes `user`; if the owner goes, the longest-standing admin (else member) becomes owner.
fn leave(mut conv: Conversation, user: &UserId) -> Conversation {
    let was_owner = conv.role_of(user) == Some(Role::Owner);
    conv.members.retain(|m| &m.user != user);
    if was_owner {
        let heir = conv.members.iter().position(|m| m.role == Role::Admin).or(
            if conv.members.is_empty() {
                None
            } else {
                Some(0)
            },
        );
        if let Some(i) = heir {
            conv.members[i].role = Role::Owner;
        }
    }
    conv
}

fn require(ok: bool, why: &'static str) -> Result<(), MembershipError> {
    if ok {
        Ok(())
    } else {
        Err(MembershipError::NotAllowed(why))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> UserId {
        UserId::parse(s).unwrap()
    }

    fn group() -> Conversation {
        let mut g = create_group(&u("owner"), "team", &[u("admin"), u("m1"), u("m2")], 10).unwrap();
        g = apply(
            &g,
            &u("owner"),
            GroupOp::SetRole(u("admin"), Role::Admin),
            10,
        )
        .unwrap();
        g
    }

    #[test]
    fn creator_owns_and_duplicates_are_ignored() {
        let g = create_group(&u("a"), "x", &[u("b"), u("b"), u("a")], 10).unwrap();
        assert_eq!(g.members.len(), 2);
        assert_eq!(g.role_of(&u("a")), Some(Role::Owner));
        assert_eq!(g.role_of(&u("b")), Some(Role::Member));
    }

    #[test]
    fn size_limit_applies_on_create_and_add() {
        let err = create_group(&u("a"), "x", &[u("b"), u("c")], 2).unwrap_err();
        assert_eq!(
            err,
            MembershipError::GroupFull {
                limit: 2,
                would_have: 3
            }
        );
        let g = create_group(&u("a"), "x", &[u("b")], 2).unwrap();
        assert!(matches!(
            apply(&g, &u("a"), GroupOp::Add(vec![u("c")]), 2),
            Err(MembershipError::GroupFull { .. })
        ));
    }

    #[test]
    fn only_admins_change_membership() {
        let g = group();
        assert_eq!(
            apply(&g, &u("m1"), GroupOp::Add(vec![u("x")]), 10),
            Err(MembershipError::NotAllowed("only admins add members"))
        );
        assert!(apply(&g, &u("m1"), GroupOp::Remove(u("m2")), 10).is_err());
        assert!(apply(&g, &u("m1"), GroupOp::Rename("y".into()), 10).is_err());
        let g2 = apply(&g, &u("admin"), GroupOp::Add(vec![u("x")]), 10).unwrap();
        assert!(g2.is_member(&u("x")));
        let g3 = apply(&g2, &u("admin"), GroupOp::Remove(u("x")), 10).unwrap();
        assert!(!g3.is_member(&u("x")));
    }

    #[test]
    fn admins_cannot_remove_owner_or_peers() {
        let g = group();
        assert!(apply(&g, &u("admin"), GroupOp::Remove(u("owner")), 10).is_err());
        assert!(apply(&g, &u("owner"), GroupOp::Remove(u("admin")), 10).is_ok());
    }

    #[test]
    fn non_members_can_do_nothing() {
        let g = group();
        assert_eq!(
            apply(&g, &u("stranger"), GroupOp::Leave, 10),
            Err(MembershipError::NotAMember)
        );
    }

    #[test]
    fn owner_leaving_hands_over_to_an_admin() {
        let g = apply(&group(), &u("owner"), GroupOp::Leave, 10).unwrap();
        assert_eq!(g.role_of(&u("admin")), Some(Role::Owner));
        assert_eq!(
            g.members.iter().filter(|m| m.role == Role::Owner).count(),
            1
        );
    }

    #[test]
    fn ownership_transfer_keeps_one_owner() {
        let g = apply(
            &group(),
            &u("owner"),
            GroupOp::SetRole(u("m1"), Role::Owner),
            10,
        )
        .unwrap();
        assert_eq!(g.role_of(&u("m1")), Some(Role::Owner));
        assert_eq!(g.role_of(&u("owner")), Some(Role::Admin));
        assert!(apply(
            &group(),
            &u("owner"),
            GroupOp::SetRole(u("owner"), Role::Member),
            10
        )
        .is_err());
    }

    #[test]
    fn direct_membership_is_fixed() {
        let d = direct(&u("a"), &u("b"));
        assert!(matches!(
            apply(&d, &u("a"), GroupOp::Add(vec![u("c")]), 10),
            Err(MembershipError::NotAllowed(_))
        ));
        assert!(matches!(
            apply(&d, &u("a"), GroupOp::Leave, 10),
            Err(MembershipError::NotAllowed(_))
        ));
    }

    #[test]
    fn names_are_validated() {
        assert!(create_group(&u("a"), "  ", &[], 10).is_err());
        assert!(create_group(&u("a"), "bad\u{0}name", &[], 10).is_err());
        assert!(create_group(&u("a"), &"x".repeat(129), &[], 10).is_err());
    }
}
