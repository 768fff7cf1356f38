//! The on-disk encoding of a push target in the embedded push targets table.
//!
//! The user and the device id are the table key, so the value holds the
//! remaining fields. A value is one version byte followed by that version's body:
//!
//! | version | body                                                                     |
//! |---------|--------------------------------------------------------------------------|
//! | `1`     | UTF-8 JSON object `{"kind": string, "target": string, "updated_at_ms": i64}` |
//!
//! A new layout gets a new version byte; decoding keeps accepting every older
//! version. Anything that does not decode (an unknown version, malformed or
//! incomplete JSON, unknown fields) is [`StoreError::Corrupt`].

use serde::{Deserialize, Serialize};

use crate::{PushTarget, StoreError};

/// The version byte of the current layout.
const VERSION_1: u8 = 1;

/// The body of a version-1 value.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PushTargetV1 {
    kind: String,
    target: String,
    updated_at_ms: i64,
}

/// Encodes `target` (all fields but the user and device id, which are the key)
/// in the current layout.
pub(crate) fn encode(target: &PushTarget) -> Vec<u8> {
    let body = PushTargetV1 {
        kind: target.kind.clone(),
        target: target.target.clone(),
        updated_at_ms: target.updated_at_ms,
    };
    let mut bytes = vec![VERSION_1];
    // Serialising a struct of two strings and an integer into a Vec cannot fail.
    serde_json::to_writer(&mut bytes, &body).expect("a push target always serialises to JSON");
    bytes
}

/// Decodes the value stored under `(user, device_id)`.
///
/// # Errors
///
/// [`StoreError::Corrupt`] if `bytes` is not a value of a known version.
pub(crate) fn decode(user: &str, device_id: &str, bytes: &[u8]) -> Result<PushTarget, StoreError> {
    let corrupt = |why: String| {
        StoreError::Corrupt(format!(
            "push target of user {user:?} device {device_id:?}: {why}"
        ))
    };
    match bytes.split_first() {
        None => Err(corrupt("empty record".to_owned())),
        Some((&VERSION_1, body)) => {
            let v1: PushTargetV1 = serde_json::from_slice(body)
                .map_err(|e| corrupt(format!("invalid version-1 record: {e}")))?;
            Ok(PushTarget {
                user: user.to_owned(),
                device_id: device_id.to_owned(),
                kind: v1.kind,
                target: v1.target,
                updated_at_ms: v1.updated_at_ms,
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

    fn sample() -> PushTarget {
        PushTarget {
            user: "alice".to_owned(),
            device_id: "phone".to_owned(),
            kind: "ntfy".to_owned(),
            target: "alice-topic-\u{e9}".to_owned(),
            updated_at_ms: i64::MIN,
        }
    }

    #[test]
    fn round_trips_every_field() {
        let target = sample();
        let decoded = decode(&target.user, &target.device_id, &encode(&target)).expect("decodes");
        assert_eq!(decoded, target);
    }

    #[test]
    fn starts_with_the_version_byte() {
        assert_eq!(encode(&sample()).first(), Some(&VERSION_1));
    }

    #[test]
    fn empty_value_is_corrupt() {
        let err = decode("alice", "phone", &[]).expect_err("empty must not decode");
        assert!(
            matches!(&err, StoreError::Corrupt(why) if why.contains("empty") && why.contains("phone")),
            "got {err:?}"
        );
    }

    #[test]
    fn unknown_version_is_corrupt() {
        let mut bytes = encode(&sample());
        bytes[0] = 7;
        let err = decode("alice", "phone", &bytes).expect_err("unknown version");
        assert!(
            matches!(&err, StoreError::Corrupt(why) if why.contains("version 7")),
            "got {err:?}"
        );
    }

    #[test]
    fn missing_or_unknown_fields_are_corrupt() {
        let mut missing = vec![VERSION_1];
        missing.extend_from_slice(br#"{"kind":"ntfy","target":"t"}"#);
        let err = decode("alice", "phone", &missing).expect_err("missing updated_at_ms");
        assert!(
            matches!(&err, StoreError::Corrupt(why) if why.contains("updated_at_ms")),
            "got {err:?}"
        );

        let mut unknown = vec![VERSION_1];
        unknown.extend_from_slice(br#"{"kind":"ntfy","target":"t","updated_at_ms":1,"x":2}"#);
        let err = decode("alice", "phone", &unknown).expect_err("unknown field");
        assert!(matches!(err, StoreError::Corrupt(_)), "got {err:?}");
    }
}
