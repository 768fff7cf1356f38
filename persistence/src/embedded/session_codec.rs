//! The on-disk encoding of MQTT session values in the embedded store.
//!
//! Every value is one version byte followed by that version's body:
//!
//! | value | version | body |
//! |-------|---------|------|
//! | session description | `1` | JSON of [`SessionRecord`] |
//! | queued message | `1` | `header_len: u32` (big-endian), JSON header (every field but the payload), payload (every remaining byte) |
//!
//! Payloads are opaque bytes, so a queued message keeps its payload out of
//! the JSON. Anything that does not decode is [`StoreError::Corrupt`].

use serde::{Deserialize, Serialize};

use crate::sessions::{QueuedMessage, SessionRecord, StoredProperties};
use crate::StoreError;

/// The version byte of the current layouts.
const VERSION_1: u8 = 1;

/// A queued message without its payload, borrowed for encoding.
#[derive(Serialize)]
struct HeaderRef<'a> {
    topic: &'a str,
    qos: u8,
    retain: bool,
    properties: &'a StoredProperties,
    expires_at_ms: Option<i64>,
    subscription_ids: &'a [u32],
}

/// A queued message without its payload, owned for decoding.
#[derive(Deserialize)]
struct Header {
    topic: String,
    qos: u8,
    retain: bool,
    properties: StoredProperties,
    expires_at_ms: Option<i64>,
    subscription_ids: Vec<u32>,
}

/// Encodes a session description.
pub(crate) fn encode_record(record: &SessionRecord) -> Vec<u8> {
    let mut bytes = vec![VERSION_1];
    // Serializing plain data to a Vec cannot fail.
    serde_json::to_writer(&mut bytes, record).unwrap_or_default();
    bytes
}

/// Decodes the description stored under `key`.
pub(crate) fn decode_record(key: &str, bytes: &[u8]) -> Result<SessionRecord, StoreError> {
    match bytes.split_first() {
        Some((&VERSION_1, body)) => serde_json::from_slice(body)
            .map_err(|e| StoreError::Corrupt(format!("MQTT session {key:?}: {e}"))),
        _ => Err(StoreError::Corrupt(format!(
            "MQTT session {key:?}: unknown layout"
        ))),
    }
}

/// Encodes a queued message.
pub(crate) fn encode_message(message: &QueuedMessage) -> Vec<u8> {
    let header = serde_json::to_vec(&HeaderRef {
        topic: &message.topic,
        qos: message.qos,
        retain: message.retain,
        properties: &message.properties,
        expires_at_ms: message.expires_at_ms,
        subscription_ids: &message.subscription_ids,
    })
    .unwrap_or_default();
    let mut bytes = Vec::with_capacity(1 + 4 + header.len() + message.payload.len());
    bytes.push(VERSION_1);
    // A header is far below 4 GiB: topics and properties are bounded by the packet size.
    bytes.extend_from_slice(&(header.len() as u32).to_be_bytes());
    bytes.extend_from_slice(&header);
    bytes.extend_from_slice(&message.payload);
    bytes
}

/// Decodes the message stored under `(key, seq)`.
pub(crate) fn decode_message(
    key: &str,
    seq: u64,
    bytes: &[u8],
) -> Result<QueuedMessage, StoreError> {
    let corrupt =
        |why: &str| StoreError::Corrupt(format!("message {seq} of MQTT session {key:?}: {why}"));
    let Some((&VERSION_1, body)) = bytes.split_first() else {
        return Err(corrupt("unknown layout"));
    };
    let (len, rest) = body
        .split_first_chunk::<4>()
        .ok_or_else(|| corrupt("too short"))?;
    let len = u32::from_be_bytes(*len) as usize;
    if rest.len() < len {
        return Err(corrupt("header longer than the value"));
    }
    let (header, payload) = rest.split_at(len);
    let header: Header = serde_json::from_slice(header).map_err(|e| corrupt(&e.to_string()))?;
    Ok(QueuedMessage {
        topic: header.topic,
        payload: payload.to_vec(),
        qos: header.qos,
        retain: header.retain,
        properties: header.properties,
        expires_at_ms: header.expires_at_ms,
        subscription_ids: header.subscription_ids,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> QueuedMessage {
        QueuedMessage {
            topic: "a/b".into(),
            payload: vec![0, 1, 2, 255],
            qos: 2,
            retain: true,
            properties: StoredProperties {
                payload_format_indicator: Some(1),
                content_type: Some("text/plain".into()),
                response_topic: Some("r".into()),
                correlation_data: Some(vec![9, 9]),
                user_properties: vec![("k".into(), "v".into())],
            },
            expires_at_ms: Some(1_700_000_000_000),
            subscription_ids: vec![7, 8],
        }
    }

    #[test]
    fn a_message_round_trips() {
        let m = message();
        assert_eq!(decode_message("k", 1, &encode_message(&m)).unwrap(), m);
    }

    #[test]
    fn a_truncated_message_is_corrupt() {
        let bytes = encode_message(&message());
        assert!(matches!(
            decode_message("k", 1, &bytes[..8]),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(
            decode_message("k", 1, &[2, 0, 0, 0, 0]),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn a_record_round_trips() {
        let record = SessionRecord {
            key: "alice/phone".into(),
            namespace: "alice".into(),
            expiry_secs: 60,
            disconnected_at_ms: Some(5),
            subscriptions: Vec::new(),
            will: None,
        };
        assert_eq!(decode_record("k", &encode_record(&record)).unwrap(), record);
        assert!(decode_record("k", b"\x09{}").is_err());
    }
}
