//! The on-disk encoding of a user record in the embedded users table.
//!
//! The username is the table key, so the value holds the remaining fields.
//! A value is one version byte followed by that version's body:
//!
//! | version | body                                                                     |
//! |---------|--------------------------------------------------------------------------|
//! | `1`     | UTF-8 JSON object `{"password_hash": string, "disabled": bool, "created_at_ms": i64}` |
//!
//! A new layout gets a new version byte; decoding keeps accepting every older
//! version. Anything that does not decode (an unknown version, malformed or
//! incomplete JSON, unknown fields) is [`StoreError::Corrupt`].

use serde::{Deserialize, Serialize};

use crate::{StoreError, UserRecord};

/// The version byte of the current layout.
const VERSION_1: u8 = 1;

/// The body of a version-1 value.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserV1 {
    password_hash: String,
    disabled: bool,
    created_at_ms: i64,
}

/// Encodes `user` (all fields but the username, which is the key) in the current layout.
pub(crate) fn encode(user: &UserRecord) -> Vec<u8> {
    let body = UserV1 {
        password_hash: user.password_hash.clone(),
        disabled: user.disabled,
        created_at_ms: user.created_at_ms,
    };
    let mut bytes = vec![VERSION_1];
    // Serialising a struct of a string, a bool and an integer into a Vec cannot fail.
    serde_json::to_writer(&mut bytes, &body).expect("a user record always serialises to JSON");
    bytes
}

/// Decodes the value stored under `username`.
///
/// # Errors
///
/// [`StoreError::Corrupt`] if `bytes` is not a value of a known version.
pub(crate) fn decode(username: &str, bytes: &[u8]) -> Result<UserRecord, StoreError> {
    let corrupt = |why: String| StoreError::Corrupt(format!("user {username:?}: {why}"));
    match bytes.split_first() {
        None => Err(corrupt("empty record".to_owned())),
        Some((&VERSION_1, body)) => {
            let v1: UserV1 = serde_json::from_slice(body)
                .map_err(|e| corrupt(format!("invalid version-1 record: {e}")))?;
            Ok(UserRecord {
                username: username.to_owned(),
                password_hash: v1.password_hash,
                disabled: v1.disabled,
                created_at_ms: v1.created_at_ms,
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

    fn sample() -> UserRecord {
        UserRecord {
            username: "alice".to_owned(),
            password_hash: "pbkdf2-sha256$600000$c2FsdA$aGFzaA".to_owned(),
            disabled: true,
            created_at_ms: -1,
        }
    }

    #[test]
    fn round_trips_every_field() {
        let user = sample();
        let decoded = decode(&user.username, &encode(&user)).expect("decodes");
        assert_eq!(decoded, user);
    }

    #[test]
    fn starts_with_the_version_byte() {
        assert_eq!(encode(&sample()).first(), Some(&VERSION_1));
    }

    #[test]
    fn empty_value_is_corrupt() {
        let err = decode("alice", &[]).expect_err("empty must not decode");
        assert!(
            matches!(&err, StoreError::Corrupt(why) if why.contains("empty")),
            "got {err:?}"
        );
    }

    #[test]
    fn unknown_version_is_corrupt() {
        let mut bytes = encode(&sample());
        bytes[0] = 200;
        let err = decode("alice", &bytes).expect_err("unknown version must not decode");
        assert!(
            matches!(&err, StoreError::Corrupt(why) if why.contains("version 200")),
            "got {err:?}"
        );
    }

    #[test]
    fn truncated_body_is_corrupt() {
        let bytes = encode(&sample());
        let err = decode("alice", &bytes[..bytes.len() - 3]).expect_err("truncated");
        assert!(matches!(err, StoreError::Corrupt(_)), "got {err:?}");
    }

    #[test]
    fn missing_field_is_corrupt() {
        let mut bytes = vec![VERSION_1];
        bytes.extend_from_slice(br#"{"password_hash":"x","disabled":false}"#);
        let err = decode("alice", &bytes).expect_err("missing created_at_ms");
        assert!(
            matches!(&err, StoreError::Corrupt(why) if why.contains("created_at_ms")),
            "got {err:?}"
        );
    }

    #[test]
    fn unknown_field_is_corrupt() {
        let mut bytes = vec![VERSION_1];
        bytes.extend_from_slice(
            br#"{"password_hash":"x","disabled":false,"created_at_ms":1,"role":"admin"}"#,
        );
        let err = decode("alice", &bytes).expect_err("unknown field");
        assert!(matches!(err, StoreError::Corrupt(_)), "got {err:?}");
    }
}
