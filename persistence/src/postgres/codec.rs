//! Conversions between Parley's types and the column types of the schema.
//!
//! - Sequence numbers are `BIGINT`: a `u64` above `i64::MAX` can never be a
//!   stored seq, so callers treat it as absent rather than as an error.
//! - Cursors are `NUMERIC(20, 0)` so every `u64` fits and compares correctly;
//!   they cross the wire as decimal text.
//! - Message ids are `u64` kept bit for bit in a `BIGINT`.
//! - Roles and conversation kinds are small integer codes.
//!
//! Decoding never panics: a value out of range is [`StoreError::Corrupt`].

use crate::keys::{PUBLIC_KEY_LEN, SIGNATURE_LEN};
use crate::{ConversationKind, Role, StoreError};

/// A seq as stored, or `None` if no stored seq can equal it.
pub(crate) fn seq_to_db(seq: u64) -> Option<i64> {
    i64::try_from(seq).ok()
}

/// A stored seq (or counter), which must not be negative.
pub(crate) fn seq_from_db(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value)
        .map_err(|_| StoreError::Corrupt(format!("{what} holds negative seq {value}")))
}

/// A message id as stored: the same 64 bits.
pub(crate) fn message_id_to_db(id: u64) -> i64 {
    id as i64
}

/// A stored message id: the same 64 bits.
pub(crate) fn message_id_from_db(value: i64) -> u64 {
    value as u64
}

/// A cursor as the decimal text a `NUMERIC` parameter takes.
pub(crate) fn cursor_to_db(cursor: u64) -> String {
    cursor.to_string()
}

/// A cursor from the decimal text of a `NUMERIC` column.
pub(crate) fn cursor_from_db(text: &str, what: &str) -> Result<u64, StoreError> {
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("{what} holds {text:?}, not a u64 cursor")))
}

/// The stored code of a role.
pub(crate) fn role_to_db(role: Role) -> i16 {
    match role {
        Role::Member => 1,
        Role::Admin => 2,
        Role::Owner => 3,
    }
}

/// The role a stored code stands for.
pub(crate) fn role_from_db(code: i16) -> Result<Role, StoreError> {
    match code {
        1 => Ok(Role::Member),
        2 => Ok(Role::Admin),
        3 => Ok(Role::Owner),
        other => Err(StoreError::Corrupt(format!("unknown role code {other}"))),
    }
}

/// The stored code of a conversation kind.
pub(crate) fn kind_to_db(kind: ConversationKind) -> i16 {
    match kind {
        ConversationKind::Direct => 1,
        ConversationKind::Group => 2,
    }
}

/// The conversation kind a stored code stands for.
pub(crate) fn kind_from_db(code: i16) -> Result<ConversationKind, StoreError> {
    match code {
        1 => Ok(ConversationKind::Direct),
        2 => Ok(ConversationKind::Group),
        other => Err(StoreError::Corrupt(format!(
            "unknown conversation kind code {other}"
        ))),
    }
}

/// A stored public key, which must be exactly [`PUBLIC_KEY_LEN`] bytes.
pub(crate) fn public_key_from_db(
    bytes: &[u8],
    what: &str,
) -> Result<[u8; PUBLIC_KEY_LEN], StoreError> {
    bytes.try_into().map_err(|_| {
        StoreError::Corrupt(format!(
            "{what} is {} bytes, not {PUBLIC_KEY_LEN}",
            bytes.len()
        ))
    })
}

/// A stored signature, which must be exactly [`SIGNATURE_LEN`] bytes.
pub(crate) fn signature_from_db(
    bytes: &[u8],
    what: &str,
) -> Result<[u8; SIGNATURE_LEN], StoreError> {
    bytes.try_into().map_err(|_| {
        StoreError::Corrupt(format!(
            "{what} is {} bytes, not {SIGNATURE_LEN}",
            bytes.len()
        ))
    })
}

/// A stored one-time prekey id, which must fit a `u32`.
pub(crate) fn prekey_id_from_db(value: i64) -> Result<u32, StoreError> {
    u32::try_from(value)
        .map_err(|_| StoreError::Corrupt(format!("one-time prekey id {value} is not a u32")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seqs_beyond_bigint_are_never_stored() {
        assert_eq!(seq_to_db(0), Some(0));
        assert_eq!(seq_to_db(i64::MAX as u64), Some(i64::MAX));
        assert_eq!(seq_to_db(i64::MAX as u64 + 1), None);
        assert_eq!(seq_to_db(u64::MAX), None);
        assert!(matches!(seq_from_db(-1, "t"), Err(StoreError::Corrupt(_))));
        assert_eq!(seq_from_db(7, "t").ok(), Some(7));
    }

    #[test]
    fn message_ids_round_trip_every_bit() {
        for id in [0, 1, i64::MAX as u64, i64::MAX as u64 + 1, u64::MAX] {
            assert_eq!(message_id_from_db(message_id_to_db(id)), id);
        }
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        for cursor in [0, 1, u64::MAX] {
            assert_eq!(
                cursor_from_db(&cursor_to_db(cursor), "t").ok(),
                Some(cursor)
            );
        }
        for bad in ["-1", "18446744073709551616", "1.5", ""] {
            assert!(matches!(
                cursor_from_db(bad, "t"),
                Err(StoreError::Corrupt(_))
            ));
        }
    }

    #[test]
    fn codes_round_trip_and_unknown_codes_are_corrupt() {
        for role in [Role::Member, Role::Admin, Role::Owner] {
            assert_eq!(role_from_db(role_to_db(role)).ok(), Some(role));
        }
        for kind in [ConversationKind::Direct, ConversationKind::Group] {
            assert_eq!(kind_from_db(kind_to_db(kind)).ok(), Some(kind));
        }
        assert!(matches!(role_from_db(0), Err(StoreError::Corrupt(_))));
        assert!(matches!(kind_from_db(9), Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn key_lengths_are_checked() {
        assert!(public_key_from_db(&[1; PUBLIC_KEY_LEN], "k").is_ok());
        assert!(matches!(
            public_key_from_db(&[1; 31], "k"),
            Err(StoreError::Corrupt(_))
        ));
        assert!(signature_from_db(&[1; SIGNATURE_LEN], "s").is_ok());
        assert!(matches!(
            signature_from_db(&[], "s"),
            Err(StoreError::Corrupt(_))
        ));
        assert_eq!(prekey_id_from_db(u32::MAX as i64).ok(), Some(u32::MAX));
        assert!(matches!(prekey_id_from_db(-1), Err(StoreError::Corrupt(_))));
    }
}
