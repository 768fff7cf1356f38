//! How a [`BusRecord`] is laid out in a Kafka record.
//!
//! The Kafka key is [`BusRecord::key`] as UTF-8, so the default partitioner
//! puts every record of one key in one partition. The value is a small
//! versioned binary encoding of the rest, all integers big-endian. Format
//! [`VERSION`] 2 carries a fan-out, its topics and its payload once:
//!
//! | bytes | field |
//! | --- | --- |
//! | 1 | format version, 2 |
//! | 1 | MQTT QoS: 0, 1 or 2 |
//! | 1 | retain: 0 or 1 |
//! | 2 | origin node id |
//! | 4 | number of MQTT topics, at least 1 |
//! | 2 + n | per topic: its length in bytes, then the topic, UTF-8 |
//! | rest | the MQTT payload |
//!
//! A topic's length has two bytes, as in MQTT itself, so a topic costs its
//! length plus 2: a 1,024-member group's inboxes (`u/{user}/i`, user ids of
//! at most 32 bytes) take at most 38,912 bytes, and a record of them with a
//! 64 KiB payload stays far below Kafka's 1 MB default. [`encode_values`]
//! splits a record that does not fit a given size into several, each with a
//! run of the topics (see [`ClusterBus::publish`](crate::ClusterBus::publish)).
//!
//! Format 1, written by earlier builds, had exactly one topic (4-byte
//! length, then the topic) after the origin node; it is still read, as a
//! record with one topic, so nodes of both builds can share a bus during a
//! rolling upgrade (nodes of the earlier build skip format 2 records).
//!
//! Decoding never panics: anything else on the topic (an unknown version, a
//! truncated value, a record some other program wrote) is a [`DecodeError`].

use crate::BusRecord;

/// The format version this build writes.
pub const VERSION: u8 = 2;

/// The single-topic format of earlier builds, still read.
const VERSION_1: u8 = 1;

/// Bytes before the first topic: version, QoS, retain, origin node, and the
/// topic count (format 1: the length of its one topic).
const HEADER_LEN: usize = 1 + 1 + 1 + 2 + 4;

/// Bytes in front of each topic: its length.
const TOPIC_LEN_BYTES: usize = 2;

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
    #[error("unknown bus record format version {0} (this build reads 1 and 2)")]
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
    /// The record names no MQTT topic.
    #[error("bus record has no MQTT topic")]
    NoTopics,
    /// An MQTT topic is not UTF-8.
    #[error("MQTT topic is not UTF-8")]
    TopicNotUtf8,
}

/// Why a [`BusRecord`] cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// MQTT has QoS 0, 1 and 2 only.
    #[error("QoS {0} is not an MQTT QoS (0, 1 or 2)")]
    InvalidQos(u8),
    /// The record names no MQTT topic.
    #[error("a bus record needs at least one MQTT topic")]
    NoTopics,
    /// An MQTT topic is longer than MQTT allows (65,535 bytes).
    #[error("MQTT topic of {0} bytes is too long")]
    TopicTooLong(usize),
    /// The record has more topics than the format counts.
    #[error("{0} MQTT topics are too many for one record")]
    TooManyTopics(usize),
    /// Even the payload with a single topic does not fit the size limit.
    #[error("a bus record of {needed} bytes does not fit the limit of {limit} bytes")]
    TooLarge {
        /// Bytes of the value with the payload and one topic.
        needed: usize,
        /// The limit it had to fit.
        limit: usize,
    },
}

/// Encodes everything of `record` but its key into one Kafka record value,
/// however large.
pub fn encode_value(record: &BusRecord) -> Result<Vec<u8>, EncodeError> {
    check(record)?;
    encode_run(record, &record.topics)
}

/// Encodes everything of `record` but its key into as few Kafka record
/// values of at most `limit` bytes as its topics allow: one if it fits,
/// otherwise several, each with the payload and the next run of topics, in
/// order.
///
/// # Errors
///
/// As [`encode_value`], and [`EncodeError::TooLarge`] if the payload with
/// one of the topics does not fit in `limit` bytes.
pub fn encode_values(record: &BusRecord, limit: usize) -> Result<Vec<Vec<u8>>, EncodeError> {
    check(record)?;
    let fixed = HEADER_LEN + record.payload.len();
    let mut values = Vec::with_capacity(1);
    let (mut first, mut size) = (0, fixed);
    for (i, topic) in record.topics.iter().enumerate() {
        let cost = TOPIC_LEN_BYTES + topic.len();
        if fixed + cost > limit {
            return Err(EncodeError::TooLarge {
                needed: fixed + cost,
                limit,
            });
        }
        if size + cost > limit {
            values.push(encode_run(record, &record.topics[first..i])?);
            (first, size) = (i, fixed);
        }
        size += cost;
    }
    values.push(encode_run(record, &record.topics[first..])?);
    Ok(values)
}

/// The length of the value [`encode_value`] writes for a payload of
/// `payload_len` bytes to topics of the given lengths.
pub fn value_len(topic_lens: impl IntoIterator<Item = usize>, payload_len: usize) -> usize {
    let topics: usize = topic_lens.into_iter().map(|n| TOPIC_LEN_BYTES + n).sum();
    HEADER_LEN + topics + payload_len
}

/// Checks what every value of `record` needs: a valid QoS and a topic.
fn check(record: &BusRecord) -> Result<(), EncodeError> {
    if record.qos > 2 {
        return Err(EncodeError::InvalidQos(record.qos));
    }
    if record.topics.is_empty() {
        return Err(EncodeError::NoTopics);
    }
    Ok(())
}

/// The value carrying `record`'s payload to `topics`.
fn encode_run(record: &BusRecord, topics: &[String]) -> Result<Vec<u8>, EncodeError> {
    let count =
        u32::try_from(topics.len()).map_err(|_| EncodeError::TooManyTopics(topics.len()))?;
    let topic_bytes: usize = topics.iter().map(|t| TOPIC_LEN_BYTES + t.len()).sum();
    let mut value = Vec::with_capacity(HEADER_LEN + topic_bytes + record.payload.len());
    value.push(VERSION);
    value.push(record.qos);
    value.push(u8::from(record.retain));
    value.extend_from_slice(&record.origin_node.to_be_bytes());
    value.extend_from_slice(&count.to_be_bytes());
    for topic in topics {
        let len = u16::try_from(topic.len()).map_err(|_| EncodeError::TopicTooLong(topic.len()))?;
        value.extend_from_slice(&len.to_be_bytes());
        value.extend_from_slice(topic.as_bytes());
    }
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
    let version = value[0];
    if version != VERSION && version != VERSION_1 {
        return Err(DecodeError::UnknownVersion(version));
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
    // Format 2: the number of topics; format 1: the length of its one topic.
    let field = u32::from_be_bytes([header[5], header[6], header[7], header[8]]);
    let rest = &value[HEADER_LEN..];
    let (topics, payload) = if version == VERSION_1 {
        let (topic, payload) = take(rest, field)?;
        (vec![topic_str(topic)?], payload)
    } else {
        topics(rest, field)?
    };
    Ok(BusRecord {
        key: key.to_owned(),
        topics,
        payload: payload.to_vec(),
        qos,
        retain,
        origin_node,
    })
}

/// Reads `count` length-prefixed topics off `rest`; returns them and what follows.
fn topics(mut rest: &[u8], count: u32) -> Result<(Vec<String>, &[u8]), DecodeError> {
    if count == 0 {
        return Err(DecodeError::NoTopics);
    }
    let count = usize::try_from(count).map_err(|_| DecodeError::Truncated)?;
    // Every topic takes at least its length, so a count beyond that is a
    // truncated (or hostile) value: do not reserve memory for it.
    if count > rest.len() / TOPIC_LEN_BYTES {
        return Err(DecodeError::Truncated);
    }
    let mut topics = Vec::with_capacity(count);
    for _ in 0..count {
        let (len, tail) = rest
            .split_first_chunk::<TOPIC_LEN_BYTES>()
            .ok_or(DecodeError::Truncated)?;
        let (topic, tail) = take(tail, u32::from(u16::from_be_bytes(*len)))?;
        topics.push(topic_str(topic)?);
        rest = tail;
    }
    Ok((topics, rest))
}

/// Splits `len` bytes off the front of `bytes`.
fn take(bytes: &[u8], len: u32) -> Result<(&[u8], &[u8]), DecodeError> {
    usize::try_from(len)
        .ok()
        .and_then(|len| bytes.split_at_checked(len))
        .ok_or(DecodeError::Truncated)
}

/// A topic's bytes as a string.
fn topic_str(topic: &[u8]) -> Result<String, DecodeError> {
    std::str::from_utf8(topic)
        .map(str::to_owned)
        .map_err(|_| DecodeError::TopicNotUtf8)
}

#[cfg(test)]
mod tests {
    use rand::{Rng, RngCore};

    use super::*;

    fn record() -> BusRecord {
        BusRecord {
            key: "conv-1".into(),
            topics: vec!["u/alice/i".into(), "u/bob/i".into(), "u/carol/i".into()],
            payload: vec![0, 1, 2, 255],
            qos: 1,
            retain: true,
            origin_node: 513,
        }
    }

    fn round_trip(r: &BusRecord) -> Result<BusRecord, DecodeError> {
        let value = encode_value(r).unwrap();
        decode(Some(r.key.as_bytes()), Some(&value))
    }

    #[test]
    fn round_trips() {
        let r = record();
        assert_eq!(round_trip(&r), Ok(r));
    }

    #[test]
    fn round_trips_one_topic_and_empty_topics_and_payload() {
        let one = BusRecord {
            topics: vec!["p/alice".into()],
            ..record()
        };
        assert_eq!(round_trip(&one), Ok(one));
        let empty = BusRecord {
            topics: vec![String::new(), String::new()],
            payload: Vec::new(),
            qos: 0,
            retain: false,
            ..record()
        };
        assert_eq!(round_trip(&empty), Ok(empty));
    }

    #[test]
    fn the_layout_is_as_documented() {
        let r = BusRecord {
            topics: vec!["ab".into(), "c".into()],
            payload: b"xyz".to_vec(),
            qos: 1,
            retain: false,
            origin_node: 0x0102,
            ..record()
        };
        assert_eq!(
            encode_value(&r).unwrap(),
            [2, 1, 0, 1, 2, 0, 0, 0, 2, 0, 2, b'a', b'b', 0, 1, b'c', b'x', b'y', b'z']
        );
    }

    #[test]
    fn reads_format_1() {
        let mut value = vec![1, 1, 1, 2, 1, 0, 0, 0, 7];
        value.extend_from_slice(b"p/alice");
        value.extend_from_slice(&[9, 8]);
        assert_eq!(
            decode(Some(b"alice"), Some(&value)),
            Ok(BusRecord {
                key: "alice".into(),
                topics: vec!["p/alice".into()],
                payload: vec![9, 8],
                qos: 1,
                retain: true,
                origin_node: 513,
            })
        );
        assert_eq!(
            decode(Some(b"alice"), Some(&value[..12])),
            Err(DecodeError::Truncated)
        );
    }

    #[test]
    fn rejects_what_it_cannot_encode() {
        let r = BusRecord { qos: 3, ..record() };
        assert_eq!(encode_value(&r), Err(EncodeError::InvalidQos(3)));
        let r = BusRecord {
            topics: Vec::new(),
            ..record()
        };
        assert_eq!(encode_value(&r), Err(EncodeError::NoTopics));
        assert_eq!(encode_values(&r, 1000), Err(EncodeError::NoTopics));
        let r = BusRecord {
            topics: vec!["t".repeat(70_000)],
            ..record()
        };
        assert_eq!(encode_value(&r), Err(EncodeError::TopicTooLong(70_000)));
    }

    #[test]
    fn a_record_that_fits_is_one_value() {
        let r = record();
        let whole = encode_value(&r).unwrap();
        assert_eq!(encode_values(&r, whole.len()), Ok(vec![whole.clone()]));
        assert_eq!(encode_values(&r, usize::MAX), Ok(vec![whole]));
    }

    #[test]
    fn a_record_that_does_not_fit_is_split_into_runs_of_its_topics() {
        let r = BusRecord {
            topics: (0..100).map(|i| format!("u/user{i:04}/i")).collect(),
            payload: vec![7; 200],
            ..record()
        };
        // Each topic costs 2 + 12 bytes, so 21 of them fit beside the payload.
        let limit = HEADER_LEN + 200 + 21 * 14 + 13;
        let values = encode_values(&r, limit).unwrap();
        assert_eq!(values.len(), 5, "100 topics in runs of 21");
        let mut topics = Vec::new();
        for value in &values {
            assert!(value.len() <= limit, "{} > {limit}", value.len());
            let part = decode(Some(r.key.as_bytes()), Some(value)).unwrap();
            assert_eq!(
                (&part.payload, part.qos, part.retain, part.origin_node),
                (&r.payload, r.qos, r.retain, r.origin_node)
            );
            topics.extend(part.topics);
        }
        assert_eq!(topics, r.topics, "every topic once, in order");
        assert_eq!(
            values.iter().map(Vec::len).max(),
            Some(HEADER_LEN + 200 + 21 * 14)
        );
    }

    #[test]
    fn a_payload_that_does_not_fit_with_one_topic_is_refused() {
        let r = record();
        let limit = HEADER_LEN + r.payload.len() + TOPIC_LEN_BYTES + 8;
        assert_eq!(
            encode_values(&r, limit),
            Err(EncodeError::TooLarge {
                needed: limit + 1,
                limit
            }),
            "u/alice/i is 9 bytes"
        );
    }

    #[test]
    fn the_largest_default_fan_out_fits_a_default_kafka_record() {
        // 1,024 members (chat.max_group_size) with 32-byte user ids and a
        // 64 KiB envelope (chat.max_message_bytes) plus the server's fields.
        let r = BusRecord {
            key: "g".repeat(65),
            topics: (0..1024)
                .map(|i| format!("u/{}{i:04}/i", "u".repeat(28)))
                .collect(),
            payload: vec![0; 64 * 1024 + 1024],
            ..record()
        };
        assert!(r.topics.iter().all(|t| t.len() == 36));
        let value = encode_value(&r).unwrap();
        assert_eq!(value.len(), HEADER_LEN + 1024 * 38 + 64 * 1024 + 1024);
        assert_eq!(value.len(), value_len([36; 1024], 64 * 1024 + 1024));
        let limit = crate::kafka::KafkaConfig::new("k:9092", "t").max_value_bytes(r.key.len());
        assert_eq!(encode_values(&r, limit), Ok(vec![value]));
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
        // The first topic's length points past the end.
        assert_eq!(
            decode(key, Some(&good[..HEADER_LEN + 5])),
            Err(DecodeError::Truncated)
        );
        // A count of topics beyond what the value could hold.
        let mut bad = good.clone();
        bad[5..9].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(decode(key, Some(&bad)), Err(DecodeError::Truncated));
        let mut bad = good.clone();
        bad[5..9].copy_from_slice(&0u32.to_be_bytes());
        assert_eq!(decode(key, Some(&bad)), Err(DecodeError::NoTopics));
        let mut bad = good.clone();
        bad[1] = 7;
        assert_eq!(decode(key, Some(&bad)), Err(DecodeError::InvalidQos(7)));
        let mut bad = good.clone();
        bad[2] = 2;
        assert_eq!(decode(key, Some(&bad)), Err(DecodeError::InvalidRetain(2)));
        let mut bad = good;
        bad[HEADER_LEN + TOPIC_LEN_BYTES] = 0xff;
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
                value[0] = if rng.gen_bool(0.5) {
                    VERSION
                } else {
                    VERSION_1
                };
            }
            if decode(Some(b"k"), Some(&value)).is_ok() {
                decoded += 1;
            }
        }
        // Some inputs with a known version byte happen to be well formed;
        // the point is that none of the 20,000 panicked.
        assert!(decoded < 20_000, "random bytes must not all decode");
    }
}
