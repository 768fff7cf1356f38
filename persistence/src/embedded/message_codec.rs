//! The on-disk encoding of a message in the embedded messages table.
//!
//! The key is `(conversation id, seq)`, so the value holds the remaining fields.
//! Payloads are opaque bytes, so the layout is binary rather than JSON. A value is
//! one version byte followed by that version's body; integers are big-endian:
//!
//! | version | body |
//! |---------|------|
//! | `1`     | `message_id: u64`, `server_time_ms: i64`, `sender_len: u64`, sender (UTF-8), `client_message_id_len: u64`, client message id (UTF-8), payload (every remaining byte) |
//!
//! A new layout gets a new version byte; decoding keeps accepting every older
//! version. Anything that does not decode (an unknown version, a body too short
//! for its lengths, invalid UTF-8) is [`StoreError::Corrupt`].

use crate::{StoreError, StoredMessage};

/// The version byte of the current layout.
const VERSION_1: u8 = 1;

/// The fields of a message that its value stores (all but the key's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MessageBody<'a> {
    /// Globally unique message id.
    pub(crate) message_id: u64,
    /// Server receive time, ms since the Unix epoch.
    pub(crate) server_time_ms: i64,
    /// The sending user.
    pub(crate) sender: &'a str,
    /// The sender's idempotency key.
    pub(crate) client_message_id: &'a str,
    /// The payload.
    pub(crate) payload: &'a [u8],
}

impl<'a> MessageBody<'a> {
    /// The body of a stored message.
    pub(crate) fn of(message: &'a StoredMessage) -> Self {
        MessageBody {
            message_id: message.message_id,
            server_time_ms: message.server_time_ms,
            sender: &message.sender,
            client_message_id: &message.client_message_id,
            payload: &message.payload,
        }
    }
}

/// Encodes `body` in the current layout.
#[cfg(test)]
pub(crate) fn encode(body: &MessageBody<'_>) -> Vec<u8> {
    let mut bytes = Vec::new();
    encode_into(body, &mut bytes);
    bytes
}

/// Encodes `body` in the current layout into `bytes`, replacing what it held
/// (its allocation is reused).
pub(crate) fn encode_into(body: &MessageBody<'_>, bytes: &mut Vec<u8>) {
    bytes.clear();
    bytes.reserve(
        1 + 8 + 8 + 8 + body.sender.len() + 8 + body.client_message_id.len() + body.payload.len(),
    );
    bytes.push(VERSION_1);
    bytes.extend_from_slice(&body.message_id.to_be_bytes());
    bytes.extend_from_slice(&body.server_time_ms.to_be_bytes());
    for text in [body.sender, body.client_message_id] {
        // usize is at most 64 bits wide on every supported target, so this is lossless.
        bytes.extend_from_slice(&(text.len() as u64).to_be_bytes());
        bytes.extend_from_slice(text.as_bytes());
    }
    bytes.extend_from_slice(body.payload);
}

/// Decodes the value stored under `(conversation_id, seq)`.
///
/// # Errors
///
/// [`StoreError::Corrupt`] if `bytes` is not a value of a known version.
pub(crate) fn decode(
    conversation_id: &str,
    seq: u64,
    bytes: &[u8],
) -> Result<StoredMessage, StoreError> {
    let corrupt = |why: &str| {
        StoreError::Corrupt(format!(
            "message {seq} of conversation {conversation_id:?}: {why}"
        ))
    };
    match bytes.split_first() {
        None => Err(corrupt("empty record")),
        Some((&VERSION_1, body)) => {
            let mut reader = Reader { rest: body };
            let message_id =
                u64::from_be_bytes(reader.array().ok_or_else(|| corrupt("truncated"))?);
            let server_time_ms =
                i64::from_be_bytes(reader.array().ok_or_else(|| corrupt("truncated"))?);
            let sender = reader.text().ok_or_else(|| corrupt("bad sender"))?;
            let client_message_id = reader
                .text()
                .ok_or_else(|| corrupt("bad client message id"))?;
            Ok(StoredMessage {
                conversation_id: conversation_id.to_owned(),
                seq,
                message_id,
                sender,
                client_message_id,
                server_time_ms,
                payload: reader.rest.to_vec(),
            })
        }
        Some((version, _)) => Err(corrupt(&format!(
            "unknown record version {version} (written by a newer Parley?)"
        ))),
    }
}

/// Reads fields off the front of a version-1 body.
struct Reader<'a> {
    rest: &'a [u8],
}

impl Reader<'_> {
    /// The next `N` bytes; `None` if fewer remain.
    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.rest.split_first_chunk::<N>()?;
        self.rest = rest;
        Some(*head)
    }

    /// A length-prefixed UTF-8 string; `None` if truncated or not UTF-8.
    fn text(&mut self) -> Option<String> {
        let len = usize::try_from(u64::from_be_bytes(self.array()?)).ok()?;
        if self.rest.len() < len {
            return None;
        }
        let (text, rest) = self.rest.split_at(len);
        self.rest = rest;
        String::from_utf8(text.to_vec()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> StoredMessage {
        StoredMessage {
            conversation_id: "g:team".to_owned(),
            seq: 42,
            message_id: u64::MAX,
            sender: "alice".to_owned(),
            client_message_id: "cmid-ü-1".to_owned(),
            server_time_ms: i64::MIN,
            payload: (0..=255).collect(),
        }
    }

    #[test]
    fn round_trips_every_field() {
        let message = sample();
        let bytes = encode(&MessageBody::of(&message));
        let decoded = decode(&message.conversation_id, message.seq, &bytes).expect("decodes");
        assert_eq!(decoded, message);
    }

    #[test]
    fn round_trips_empty_strings_and_payload() {
        let message = StoredMessage {
            sender: String::new(),
            client_message_id: String::new(),
            payload: Vec::new(),
            ..sample()
        };
        let bytes = encode(&MessageBody::of(&message));
        let decoded = decode(&message.conversation_id, message.seq, &bytes).expect("decodes");
        assert_eq!(decoded, message);
    }

    #[test]
    fn layout_is_the_documented_one() {
        let message = StoredMessage {
            conversation_id: "c".to_owned(),
            seq: 1,
            message_id: 0x0102_0304_0506_0708,
            sender: "ab".to_owned(),
            client_message_id: "x".to_owned(),
            server_time_ms: -2,
            payload: vec![9, 9],
        };
        let expected: Vec<u8> = [
            &[VERSION_1][..],
            &[1, 2, 3, 4, 5, 6, 7, 8],
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe],
            &[0, 0, 0, 0, 0, 0, 0, 2],
            b"ab",
            &[0, 0, 0, 0, 0, 0, 0, 1],
            b"x",
            &[9, 9],
        ]
        .concat();
        assert_eq!(encode(&MessageBody::of(&message)), expected);
    }

    #[test]
    fn empty_value_is_corrupt() {
        let err = decode("c", 3, &[]).expect_err("empty must not decode");
        assert!(
            matches!(&err, StoreError::Corrupt(why) if why.contains("empty") && why.contains("message 3")),
            "got {err:?}"
        );
    }

    #[test]
    fn unknown_version_is_corrupt() {
        let mut bytes = encode(&MessageBody::of(&sample()));
        bytes[0] = 2;
        let err = decode("c", 1, &bytes).expect_err("unknown version must not decode");
        assert!(
            matches!(&err, StoreError::Corrupt(why) if why.contains("version 2")),
            "got {err:?}"
        );
    }

    #[test]
    fn every_truncation_inside_the_header_is_corrupt() {
        let message = sample();
        let bytes = encode(&MessageBody::of(&message));
        // Everything up to the end of the client message id is required.
        let header = 1 + 8 + 8 + 8 + message.sender.len() + 8 + message.client_message_id.len();
        for cut in 1..header {
            let err = decode("c", 1, &bytes[..cut]).expect_err("truncated header");
            assert!(matches!(err, StoreError::Corrupt(_)), "cut {cut}: {err:?}");
        }
    }

    #[test]
    fn invalid_utf8_sender_is_corrupt() {
        let message = sample();
        let mut bytes = encode(&MessageBody::of(&message));
        bytes[1 + 8 + 8 + 8] = 0xff;
        let err = decode("c", 1, &bytes).expect_err("invalid UTF-8");
        assert!(
            matches!(&err, StoreError::Corrupt(why) if why.contains("sender")),
            "got {err:?}"
        );
    }

    #[test]
    fn a_length_beyond_the_value_is_corrupt() {
        let mut bytes = encode(&MessageBody::of(&sample()));
        bytes[1 + 8 + 8..1 + 8 + 8 + 8].copy_from_slice(&u64::MAX.to_be_bytes());
        let err = decode("c", 1, &bytes).expect_err("oversized length");
        assert!(matches!(err, StoreError::Corrupt(_)), "got {err:?}");
    }
}
