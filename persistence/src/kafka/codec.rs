//! How a [`BusRecord`] is laid out in a Kafka record.
//!
//! The Kafka key is [`BusRecord::key`] as UTF-8, so the default partitioner
//! puts every record of one key in one partition. The value is a small
//! versioned binary encoding of the rest, all integers big-endian:
//!
//! | bytes | field |
//! | --- | --- |
//! | 1 | format version, [`VERSION`] |
//! | 1 | MQTT QoS: 0, 1 or 2 |
//! | 1 | retain: 0 or 1 |
//! | 2 | origin node id |
//! | 4 | length of the MQTT topic in bytes |
//! | n | the MQTT topic, UTF-8 |
//! | rest | the MQTT payload |
//!
//! Decoding never panics: anything else on the topic (another version, a
//! truncated value, a record some other program wrote) is a [`DecodeError`].

use crate::BusRecord;

/// The format version this build writes and reads.
pub const VERSION: u8 = 1;

/// Bytes before the MQTT topic: version, QoS, retain, origin node, topic length.
const HEADER_LEN: usize = 1 + 1 + 1 + 2 + 4;

/// Why a Kafka record is not a bus record this build can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The record has no key (every bus record has one).
    #[error("record has no key")]
    MissingKey,
    /// The key is not UTF-8.
    #[error("record key is not UTF-8")]
    KeyNotUtf8,
    /// The record has no value, or an empty one.
    #[error("record has no value")]
    MissingValue,
    /// The value was written in a format version this build does not know.
    #[error("unknown bus record format version {0}")]
    UnknownVersion(u8),
    /// The value ends before the fields it announces.
    #[error("bus record is truncated")]
    Truncated,
    /// The QoS byte is not 0, 1 or 2.
    #[error("invalid QoS {0}")]
    InvalidQos(u8),
    /// The retain byte is not 0 or 1.
    #[error("invalid retain flag {0}")]
    InvalidRetain(u8),
    /// The MQTT topic is not UTF-8.
    #[error("MQTT topic is not UTF-8")]
    TopicNotUtf8,
}

/// Why a [`BusRecord`] cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// MQTT has QoS 0, 1 and 2 only.
    #[error("QoS {0} is not an MQTT QoS (0, 1 or 2)")]
    InvalidQos(u8),
    /// The MQTT topic is longer than the format allows.
    #[error("MQTT topic of {0} bytes is too long")]
    TopicTooLong(usize),
}

/// Encodes everything of `record` but its key into a Kafka record value.
pub fn encode_value(record: &BusRecord) -> Result<Vec<u8>, EncodeError> {
    if record.qos > 2 {
        return Err(EncodeError::InvalidQos(record.qos));
    }
    let topic_len = u32::try_from(record.topic.len())
        .map_err(|_| EncodeError::TopicTooLong(record.topic.len()))?;
    let mut value = Vec::with_capacity(HEADER_LEN + record.topic.len() + record.payload.len());
    value.push(VERSION);
    value.push(record.qos);
    value.push(u8::from(record.retain));
    value.extend_from_slice(&record.origin_node.to_be_bytes());
    value.extend_from_slice(&topic_len.to_be_bytes());
    value.extend_from_slice(record.topic.as_bytes());
    value.extend_from_slice(&record.payload);
    Ok(value)
}

/// Decodes a Kafka record's key and value back into a [`BusRecord`].
pub fn decode(key: Option<&[u8]>, value: Option<&[u8]>) -> Result<BusRecord, DecodeError> {
    let key = key.ok_or(DecodeError::MissingKey)?;
    let key = std::str::from_utf8(key).map_err(|_| DecodeError::KeyNotUtf8)?;
    let value = value
        .filter(|v| !v.is_empty())
        .ok_or(DecodeError::MissingValue)?;
    if value[0] != VERSION {
        return Err(DecodeError::UnknownVersion(value[0]));
    }
    let header = value.get(..HEADER_LEN).ok_or(DecodeError::Truncated)?;
    let qos = header[1];
    if qos > 2 {
        return Err(DecodeError::InvalidQos(qos));
    }
    let retain = match header[2] {
        0 => false,
        1 => true,
        other => return Err(DecodeError::InvalidRetain(other)),
    };
    let origin_node = u16::from_be_bytes([header[3], header[4]]);
    let topic_len = u32::from_be_bytes([header[5], header[6], header[7], header[8]]);
    let rest = &value[HEADER_LEN..];
    let topic_len = usize::try_from(topic_len)
        .ok()
        .filter(|&n| n <= rest.len())
        .ok_or(DecodeError::Truncated)?;
    let (topic, payload) = rest.split_at(topic_len);
    let topic = std::str::from_utf8(topic).map_err(|_| DecodeError::TopicNotUtf8)?;
    Ok(BusRecord {
        key: key.to_owned(),
        topic: topic.to_owned(),
        payload: payload.to_vec(),
        qos,
        retain,
        origin_node,
    })
}

#[cfg(test)]
mod tests {
    use rand::{Rng, RngCore};

    use super::*;

    fn record() -> BusRecord {
        BusRecord {
            key: "conv-1".into(),
            topic: "parley/u/alice/inbox".into(),
            payload: vec![0, 1, 2, 255],
            qos: 1,
            retain: true,
            origin_node: 513,
        }
    }

    #[test]
    fn round_trips() {
        let r = record();
        let value = encode_value(&r).unwrap();
        assert_eq!(decode(Some(r.key.as_bytes()), Some(&value)), Ok(r));
    }

    #[test]
    fn round_trips_empty_topic_and_payload() {
        let r = BusRecord {
            topic: String::new(),
            payload: Vec::new(),
            qos: 0,
            retain: false,
            ..record()
        };
        let value = encode_value(&r).unwrap();
        assert_eq!(decode(Some(r.key.as_bytes()), Some(&value)), Ok(r));
    }

    #[test]
    fn rejects_qos_3() {
        let r = BusRecord { qos: 3, ..record() };
        assert_eq!(encode_value(&r), Err(EncodeError::InvalidQos(3)));
    }

    #[test]
    fn typed_errors_for_malformed_records() {
        let good = encode_value(&record()).unwrap();
        let key = Some(&b"k"[..]);
        assert_eq!(decode(None, Some(&good)), Err(DecodeError::MissingKey));
        assert_eq!(
            decode(Some(&[0xff, 0xfe]), Some(&good)),
            Err(DecodeError::KeyNotUtf8)
        );
        assert_eq!(decode(key, None), Err(DecodeError::MissingValue));
        assert_eq!(decode(key, Some(&[])), Err(DecodeError::MissingValue));
        assert_eq!(decode(key, Some(&[9])), Err(DecodeError::UnknownVersion(9)));
        assert_eq!(decode(key, Some(&good[..4])), Err(DecodeError::Truncated));
        // The topic length points past the end.
        assert_eq!(
            decode(key, Some(&good[..HEADER_LEN + 3])),
            Err(DecodeError::Truncated)
        );
        let mut bad = good.clone();
        bad[1] = 7;
        assert_eq!(decode(key, Some(&bad)), Err(DecodeError::InvalidQos(7)));
        let mut bad = good.clone();
        bad[2] = 2;
        assert_eq!(decode(key, Some(&bad)), Err(DecodeError::InvalidRetain(2)));
        let mut bad = good;
        bad[HEADER_LEN] = 0xff;
        assert_eq!(decode(key, Some(&bad)), Err(DecodeError::TopicNotUtf8));
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = rand::thread_rng();
        let mut decoded = 0;
        for _ in 0..20_000 {
            let len = rng.gen_range(0..64);
            let mut value = vec![0u8; len];
            rng.fill_bytes(&mut value);
            if rng.gen_bool(0.5) && !value.is_empty() {
                value[0] = VERSION;
            }
            if decode(Some(b"k"), Some(&value)).is_ok() {
                decoded += 1;
            }
        }
        // Some inputs with the right version byte happen to be well formed;
        // the point is that none of the 20,000 panicked.
        assert!(decoded < 20_000, "random bytes must not all decode");
    }
}
