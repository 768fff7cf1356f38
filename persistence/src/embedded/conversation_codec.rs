//! The on-disk encoding of a conversation record in the embedded conversations table.
//!
//! The conversation id is the table key, so the value holds the remaining fields.
//! A value is one version byte followed by that version's body:
//!
//! | version | body |
//! |---------|------|
//! | `1`     | UTF-8 JSON object `{"kind": "direct" \| "group", "name": string, "members": [{"user": string, "role": "member" \| "admin" \| "owner", "joined_at_ms": i64}], "created_at_ms": i64, "updated_at_ms": i64, "version": u64}` |
//!
//! A new layout gets a new version byte; decoding keeps accepting every older
//! version. Anything that does not decode (an unknown version, malformed or
//! incomplete JSON, unknown fields or enum values) is [`StoreError::Corrupt`].

use serde::{Deserialize, Serialize};

use crate::{ConversationKind, ConversationRecord, MemberRecord, Role, StoreError};

/// The version byte of the current layout.
const VERSION_1: u8 = 1;

/// The body of a version-1 value.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConversationV1 {
    kind: KindV1,
    name: String,
    members: Vec<MemberV1>,
    created_at_ms: i64,
    updated_at_ms: i64,
    version: u64,
}

/// A member in a version-1 value.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberV1 {
    user: String,
    role: RoleV1,
    joined_at_ms: i64,
}

/// The conversation kind as version 1 spells it.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum KindV1 {
    Direct,
    Group,
}

/// The member role as version 1 spells it.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RoleV1 {
    Member,
    Admin,
    Owner,
}

impl From<ConversationKind> for KindV1 {
    fn from(kind: ConversationKind) -> Self {
        match kind {
            ConversationKind::Direct => KindV1::Direct,
            ConversationKind::Group => KindV1::Group,
        }
    }
}

impl From<KindV1> for ConversationKind {
    fn from(kind: KindV1) -> Self {
        match kind {
            KindV1::Direct => ConversationKind::Direct,
            KindV1::Group => ConversationKind::Group,
        }
    }
}

impl From<Role> for RoleV1 {
    fn from(role: Role) -> Self {
        match role {
            Role::Member => RoleV1::Member,
            Role::Admin => RoleV1::Admin,
            Role::Owner => RoleV1::Owner,
        }
    }
}

impl From<RoleV1> for Role {
    fn from(role: RoleV1) -> Self {
        match role {
            RoleV1::Member => Role::Member,
            RoleV1::Admin => Role::Admin,
            RoleV1::Owner => Role::Owner,
        }
    }
}

/// Encodes `record` (all fields but the id, which is the key) in the current layout.
pub(crate) fn encode(record: &ConversationRecord) -> Vec<u8> {
    let body = ConversationV1 {
        kind: record.kind.into(),
        name: record.name.clone(),
        members: record
            .members
            .iter()
            .map(|m| MemberV1 {
                user: m.user.clone(),
                role: m.role.into(),
                joined_at_ms: m.joined_at_ms,
            })
            .collect(),
        created_at_ms: record.created_at_ms,
        updated_at_ms: record.updated_at_ms,
        version: record.version,
    };
    let mut bytes = vec![VERSION_1];
    // Strings, integers and unit enums always serialise to JSON.
    serde_json::to_writer(&mut bytes, &body)
        .expect("a conversation record always serialises to JSON");
    bytes
}

/// Decodes the value stored under conversation `id`.
///
/// # Errors
///
/// [`StoreError::Corrupt`] if `bytes` is not a value of a known version.
pub(crate) fn decode(id: &str, bytes: &[u8]) -> Result<ConversationRecord, StoreError> {
    let corrupt = |why: String| StoreError::Corrupt(format!("conversation {id:?}: {why}"));
    match bytes.split_first() {
        None => Err(corrupt("empty record".to_owned())),
        Some((&VERSION_1, body)) => {
            let v1: ConversationV1 = serde_json::from_slice(body)
                .map_err(|e| corrupt(format!("invalid version-1 record: {e}")))?;
            Ok(ConversationRecord {
                id: id.to_owned(),
                kind: v1.kind.into(),
                name: v1.name,
                members: v1
                    .members
                    .into_iter()
                    .map(|m| MemberRecord {
                        user: m.user,
                        role: m.role.into(),
                        joined_at_ms: m.joined_at_ms,
                    })
                    .collect(),
                created_at_ms: v1.created_at_ms,
                updated_at_ms: v1.updated_at_ms,
                version: v1.version,
            })
        }
        Some((version, _)) => Err(corrupt(format!(
            "unknown record version {version} (written by a newer Parley?)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ConversationRecord {
        ConversationRecord {
            id: "g:team".to_owned(),
            kind: ConversationKind::Group,
            name: "Tëam \"chat\"".to_owned(),
            members: vec![
                MemberRecord {
                    user: "alice".to_owned(),
                    role: Role::Owner,
                    joined_at_ms: i64::MIN,
                },
                MemberRecord {
                    user: "bob".to_owned(),
                    role: Role::Admin,
                    joined_at_ms: 0,
                },
                MemberRecord {
                    user: "carol".to_owned(),
                    role: Role::Member,
                    joined_at_ms: i64::MAX,
                },
            ],
            created_at_ms: -5,
            updated_at_ms: 7,
            version: u64::MAX,
        }
    }

    #[test]
    fn round_trips_every_field() {
        let record = sample();
        let decoded = decode(&record.id, &encode(&record)).expect("decodes");
        assert_eq!(decoded, record);
    }

    #[test]
    fn round_trips_a_direct_conversation_without_members() {
        let record = ConversationRecord {
            id: "d:a:b".to_owned(),
            kind: ConversationKind::Direct,
            name: String::new(),
            members: Vec::new(),
            created_at_ms: 1,
            updated_at_ms: 1,
            version: 1,
        };
        let decoded = decode(&record.id, &encode(&record)).expect("decodes");
        assert_eq!(decoded, record);
    }

    #[test]
    fn starts_with_the_version_byte() {
        assert_eq!(encode(&sample()).first(), Some(&VERSION_1));
    }

    #[test]
    fn empty_value_is_corrupt() {
        let err = decode("g:x", &[]).expect_err("empty must not decode");
        assert!(
            matches!(&err, StoreError::Corrupt(why) if why.contains("empty") && why.contains("g:x")),
            "got {err:?}"
        );
    }

    #[test]
    fn unknown_version_is_corrupt() {
        let mut bytes = encode(&sample());
        bytes[0] = 9;
        let err = decode("g:x", &bytes).expect_err("unknown version must not decode");
        assert!(
            matches!(&err, StoreError::Corrupt(why) if why.contains("version 9")),
            "got {err:?}"
        );
    }

    #[test]
    fn unknown_role_is_corrupt() {
        let mut bytes = vec![VERSION_1];
        bytes.extend_from_slice(
            br#"{"kind":"group","name":"","members":[{"user":"a","role":"king","joined_at_ms":1}],"created_at_ms":1,"updated_at_ms":1,"version":1}"#,
        );
        let err = decode("g:x", &bytes).expect_err("unknown role");
        assert!(matches!(err, StoreError::Corrupt(_)), "got {err:?}");
    }

    #[test]
    fn missing_field_is_corrupt() {
        let mut bytes = vec![VERSION_1];
        bytes.extend_from_slice(
            br#"{"kind":"group","name":"","members":[],"created_at_ms":1,"updated_at_ms":1}"#,
        );
        let err = decode("g:x", &bytes).expect_err("missing version");
        assert!(
            matches!(&err, StoreError::Corrupt(why) if why.contains("`version`")),
            "got {err:?}"
        );
    }

    #[test]
    fn truncated_body_is_corrupt() {
        let bytes = encode(&sample());
        let err = decode("g:x", &bytes[..bytes.len() - 2]).expect_err("truncated");
        assert!(matches!(err, StoreError::Corrupt(_)), "got {err:?}");
    }
}
