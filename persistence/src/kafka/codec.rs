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
//! Format 3 carries a forwarded plain MQTT publish ([`BusRecord::mqtt`]):
//! the same header and topics as format 2 (version byte 3), then a 4-byte
//! length and that many bytes of the MQTT block, then the payload. Records
//! without an MQTT block are still written in format 2, so nodes of the
//! previous build keep reading every chat record during a rolling upgrade
//! (they skip format 3 records with a warning). The MQTT block, strings and
//! binary data each with a 2-byte length as in MQTT:
//!
//! | bytes | field |
//! | --- | --- |
//! | 2 + n | the publisher's namespace |
//! | 1 | which optional fields follow: 1 payload format, 2 content type, 4 response topic, 8 correlation data, 16 message expiry |
//! | 1 | payload format indicator, if present |
//! | 2 + n | content type, if present |
//! | 2 + n | response topic, if present |
//! | 2 + n | correlation data, if present |
//! | 4 | message expiry left, in seconds, if present |
//! | 2 | number of user properties, then each as two strings |
//! | 8 | retained version |
//! | 2 | number of target nodes, then each: 2 node id, 2 number of shared groups, each as two strings (namespace, `$share/...` filter) |
//!
//! Format 1, written by earlier builds, had exactly one topic (4-byte
//! length, then the topic) after the origin node; it is still read, as a
//! record with one topic, so nodes of both builds can share a bus during a
//! rolling upgrade (nodes of the earlier build skip format 2 records).
//!
//! Decoding never panics: anything else on the topic (an unknown version, a
//! truncated value, a record some other program wrote) is a [`DecodeError`].

use crate::{BusRecord, MqttForward, NodeTarget, SharedGroupRef};

/// The format version this build writes.
pub const VERSION: u8 = 2;

/// The single-topic format of earlier builds, still read.
const VERSION_1: u8 = 1;

/// The format of records with an MQTT block (forwarded plain publishes).
pub const VERSION_MQTT: u8 = 3;

/// Flags of the optional fields of the MQTT block.
const HAS_PAYLOAD_FORMAT: u8 = 1;
const HAS_CONTENT_TYPE: u8 = 2;
const HAS_RESPONSE_TOPIC: u8 = 4;
const HAS_CORRELATION_DATA: u8 = 8;
const HAS_MESSAGE_EXPIRY: u8 = 16;

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
    #[error("unknown bus record format version {0} (this build reads 1, 2 and 3)")]
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
    /// A string of the MQTT block is not UTF-8.
    #[error("a string of the MQTT block is not UTF-8")]
    StringNotUtf8,
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
    /// A string or binary field of the MQTT block, or a count of its
    /// lists, is longer than its 2-byte length allows.
    #[error("a field of the MQTT block is too long ({0} bytes or items)")]
    FieldTooLong(usize),
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
    let fixed = HEADER_LEN + mqtt_block_len(record)? + record.payload.len();
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

/// The bytes the MQTT block of `record` adds to each value (its length
/// field included); 0 without one.
fn mqtt_block_len(record: &BusRecord) -> Result<usize, EncodeError> {
    match &record.mqtt {
        None => Ok(0),
        Some(mqtt) => Ok(4 + encode_mqtt(mqtt)?.len()),
    }
}

/// Appends `bytes` with a 2-byte length.
fn put_short(value: &mut Vec<u8>, bytes: &[u8]) -> Result<(), EncodeError> {
    let len = u16::try_from(bytes.len()).map_err(|_| EncodeError::FieldTooLong(bytes.len()))?;
    value.extend_from_slice(&len.to_be_bytes());
    value.extend_from_slice(bytes);
    Ok(())
}

/// Appends a 2-byte count.
fn put_count(value: &mut Vec<u8>, count: usize) -> Result<(), EncodeError> {
    let count = u16::try_from(count).map_err(|_| EncodeError::FieldTooLong(count))?;
    value.extend_from_slice(&count.to_be_bytes());
    Ok(())
}

/// The MQTT block of a forwarded publish, without its length.
fn encode_mqtt(mqtt: &MqttForward) -> Result<Vec<u8>, EncodeError> {
    let mut block = Vec::with_capacity(64);
    put_short(&mut block, mqtt.namespace.as_bytes())?;
    let mut flags = 0;
    for (present, flag) in [
        (mqtt.payload_format_indicator.is_some(), HAS_PAYLOAD_FORMAT),
        (mqtt.content_type.is_some(), HAS_CONTENT_TYPE),
        (mqtt.response_topic.is_some(), HAS_RESPONSE_TOPIC),
        (mqtt.correlation_data.is_some(), HAS_CORRELATION_DATA),
        (mqtt.message_expiry_secs.is_some(), HAS_MESSAGE_EXPIRY),
    ] {
        if present {
            flags |= flag;
        }
    }
    block.push(flags);
    if let Some(indicator) = mqtt.payload_format_indicator {
        block.push(indicator);
    }
    if let Some(content_type) = &mqtt.content_type {
        put_short(&mut block, content_type.as_bytes())?;
    }
    if let Some(response_topic) = &mqtt.response_topic {
        put_short(&mut block, response_topic.as_bytes())?;
    }
    if let Some(data) = &mqtt.correlation_data {
        put_short(&mut block, data)?;
    }
    if let Some(secs) = mqtt.message_expiry_secs {
        block.extend_from_slice(&secs.to_be_bytes());
    }
    put_count(&mut block, mqtt.user_properties.len())?;
    for (key, value) in &mqtt.user_properties {
        put_short(&mut block, key.as_bytes())?;
        put_short(&mut block, value.as_bytes())?;
    }
    block.extend_from_slice(&mqtt.retained_version.to_be_bytes());
    put_count(&mut block, mqtt.nodes.len())?;
    for target in &mqtt.nodes {
        block.extend_from_slice(&target.node.to_be_bytes());
        put_count(&mut block, target.shared.len())?;
        for group in &target.shared {
            put_short(&mut block, group.namespace.as_bytes())?;
            put_short(&mut block, group.filter.as_bytes())?;
        }
    }
    Ok(block)
}

/// The value carrying `record`'s payload to `topics`.
fn encode_run(record: &BusRecord, topics: &[String]) -> Result<Vec<u8>, EncodeError> {
    let count =
        u32::try_from(topics.len()).map_err(|_| EncodeError::TooManyTopics(topics.len()))?;
    let topic_bytes: usize = topics.iter().map(|t| TOPIC_LEN_BYTES + t.len()).sum();
    let block = record.mqtt.as_deref().map(encode_mqtt).transpose()?;
    let block_bytes = block.as_ref().map_or(0, |b| 4 + b.len());
    let mut value =
        Vec::with_capacity(HEADER_LEN + topic_bytes + block_bytes + record.payload.len());
    value.push(if block.is_some() {
        VERSION_MQTT
    } else {
        VERSION
    });
    value.push(record.qos);
    value.push(u8::from(record.retain));
    value.extend_from_slice(&record.origin_node.to_be_bytes());
    value.extend_from_slice(&count.to_be_bytes());
    for topic in topics {
        let len = u16::try_from(topic.len()).map_err(|_| EncodeError::TopicTooLong(topic.len()))?;
        value.extend_from_slice(&len.to_be_bytes());
        value.extend_from_slice(topic.as_bytes());
    }
    if let Some(block) = block {
        let len = u32::try_from(block.len()).map_err(|_| EncodeError::FieldTooLong(block.len()))?;
        value.extend_from_slice(&len.to_be_bytes());
        value.extend_from_slice(&block);
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
    if version != VERSION && version != VERSION_1 && version != VERSION_MQTT {
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
    let (topics, mut payload) = if version == VERSION_1 {
        let (topic, payload) = take(rest, field)?;
        (vec![topic_str(topic)?], payload)
    } else {
        topics(rest, field)?
    };
    let mut mqtt = None;
    if version == VERSION_MQTT {
        let (len, tail) = payload
            .split_first_chunk::<4>()
            .ok_or(DecodeError::Truncated)?;
        let (block, tail) = take(tail, u32::from_be_bytes(*len))?;
        mqtt = Some(Box::new(decode_mqtt(block)?));
        payload = tail;
    }
    Ok(BusRecord {
        key: key.to_owned(),
        topics,
        payload: payload.to_vec(),
        qos,
        retain,
        origin_node,
        mqtt,
    })
}

/// Reads the fields of an MQTT block off the front of a byte slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn bytes<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let (head, tail) = self
            .0
            .split_first_chunk::<N>()
            .ok_or(DecodeError::Truncated)?;
        self.0 = tail;
        Ok(*head)
    }

    fn short(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = u16::from_be_bytes(self.bytes::<2>()?);
        let (field, tail) = take(self.0, u32::from(len))?;
        self.0 = tail;
        Ok(field)
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        std::str::from_utf8(self.short()?)
            .map(str::to_owned)
            .map_err(|_| DecodeError::StringNotUtf8)
    }

    fn count(&mut self) -> Result<usize, DecodeError> {
        Ok(usize::from(u16::from_be_bytes(self.bytes::<2>()?)))
    }
}

/// Decodes the MQTT block of a format 3 value.
fn decode_mqtt(block: &[u8]) -> Result<MqttForward, DecodeError> {
    let mut r = Reader(block);
    let namespace = r.string()?;
    let [flags] = r.bytes::<1>()?;
    let has = |flag: u8| flags & flag != 0;
    let payload_format_indicator = match has(HAS_PAYLOAD_FORMAT) {
        true => Some(r.bytes::<1>()?[0]),
        false => None,
    };
    let content_type = has(HAS_CONTENT_TYPE).then(|| r.string()).transpose()?;
    let response_topic = has(HAS_RESPONSE_TOPIC).then(|| r.string()).transpose()?;
    let correlation_data = has(HAS_CORRELATION_DATA)
        .then(|| r.short().map(<[u8]>::to_vec))
        .transpose()?;
    let message_expiry_secs = has(HAS_MESSAGE_EXPIRY)
        .then(|| r.bytes::<4>().map(u32::from_be_bytes))
        .transpose()?;
    let properties = r.count()?;
    let mut user_properties = Vec::with_capacity(properties.min(r.0.len() / 4));
    for _ in 0..properties {
        user_properties.push((r.string()?, r.string()?));
    }
    let retained_version = u64::from_be_bytes(r.bytes::<8>()?);
    let targets = r.count()?;
    let mut nodes = Vec::with_capacity(targets.min(r.0.len() / 4));
    for _ in 0..targets {
        let node = u16::from_be_bytes(r.bytes::<2>()?);
        let groups = r.count()?;
        let mut shared = Vec::with_capacity(groups.min(r.0.len() / 4));
        for _ in 0..groups {
            shared.push(SharedGroupRef {
                namespace: r.string()?,
                filter: r.string()?,
            });
        }
        nodes.push(NodeTarget { node, shared });
    }
    Ok(MqttForward {
        namespace,
        payload_format_indicator,
        content_type,
        response_topic,
        correlation_data,
        user_properties,
        message_expiry_secs,
        retained_version,
        nodes,
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
            mqtt: None,
        }
    }

    fn forwarded() -> BusRecord {
        BusRecord {
            key: "sensors/k1/temp".into(),
            topics: vec!["sensors/k1/temp".into()],
            payload: b"21.5".to_vec(),
            qos: 2,
            retain: true,
            origin_node: 3,
            mqtt: Some(Box::new(MqttForward {
                namespace: "alice".into(),
                payload_format_indicator: Some(1),
                content_type: Some("text/plain".into()),
                response_topic: Some("replies/alice".into()),
                correlation_data: Some(vec![0, 255, 7]),
                user_properties: vec![("a".into(), "1".into()), ("a".into(), "2".into())],
                message_expiry_secs: Some(60),
                retained_version: 42,
                nodes: vec![
                    NodeTarget {
                        node: 1,
                        shared: Vec::new(),
                    },
                    NodeTarget {
                        node: 2,
                        shared: vec![SharedGroupRef {
                            namespace: "bob".into(),
                            filter: "$share/g/sensors/+/temp".into(),
                        }],
                    },
                ],
            })),
        }
    }

    #[test]
    fn a_forwarded_publish_round_trips_in_format_3() {
        let r = forwarded();
        let value = encode_value(&r).unwrap();
        assert_eq!(value[0], VERSION_MQTT);
        assert_eq!(round_trip(&r), Ok(r.clone()));
        let bare = BusRecord {
            mqtt: Some(Box::default()),
            ..r.clone()
        };
        assert_eq!(round_trip(&bare), Ok(bare));
        assert_eq!(encode_values(&r, 10_000), Ok(vec![value.clone()]));
        // A record without an MQTT block is still format 2.
        assert_eq!(encode_value(&record()).unwrap()[0], VERSION);
        // Cut anywhere, it is a typed error, never a panic.
        for end in 1..value.len() - r.payload.len() {
            let part = decode(Some(b"k"), Some(&value[..end]));
            assert!(part.is_err(), "{end} bytes decoded: {part:?}");
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
                mqtt: None,
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
                value[0] = [VERSION, VERSION_1, VERSION_MQTT][rng.gen_range(0..3)];
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
