//! Helpers for the engine's tests: messages, connection parameters, and an
//! independent MQTT decoder (rumqttc's, a client codec) to read back what
//! the engine wrote.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use parley_engine::codec::{Codec, Version};
use parley_engine::message::{ForwardedProperties, Message, QoS};
use parley_engine::session::ConnectionParams;
use rumqttc::v5::mqttbytes::v5::Packet as V5Packet;

/// A message on `topic` at `qos`.
pub fn message(topic: &str, payload: &str, qos: QoS) -> Message {
    Message {
        topic: Arc::from(topic),
        payload: Bytes::from(payload.to_owned()),
        qos,
        retain: false,
        properties: ForwardedProperties::default(),
        expires_at: None,
        origin: None,
    }
}

/// MQTT 5 connection parameters with a receive maximum.
pub fn v5(receive_maximum: u16) -> ConnectionParams {
    ConnectionParams {
        receive_maximum,
        ..ConnectionParams::defaults(Codec::new(Version::V5, 1 << 20))
    }
}

/// MQTT 3.1.1 connection parameters.
pub fn v4() -> ConnectionParams {
    ConnectionParams::defaults(Codec::new(Version::V4, 1 << 20))
}

/// Every MQTT 5 packet in `bytes`, decoded by rumqttc.
pub fn decode_v5(bytes: &BytesMut) -> Vec<V5Packet> {
    let mut buf = bytes.clone();
    let mut out = Vec::new();
    while !buf.is_empty() {
        out.push(V5Packet::read(&mut buf, None).expect("engine wrote a valid MQTT 5 packet"));
    }
    out
}

/// Every MQTT 3.1.1 packet in `bytes`, decoded by rumqttc.
pub fn decode_v4(bytes: &BytesMut) -> Vec<rumqttc::mqttbytes::v4::Packet> {
    let mut buf = bytes.clone();
    let mut out = Vec::new();
    while !buf.is_empty() {
        out.push(
            rumqttc::mqttbytes::v4::Packet::read(&mut buf, 1 << 24)
                .expect("engine wrote a valid MQTT 3.1.1 packet"),
        );
    }
    out
}

/// The publishes among `packets`: (topic, pkid, qos as u8, dup, payload).
pub fn publishes_v5(packets: &[V5Packet]) -> Vec<rumqttc::v5::mqttbytes::v5::Publish> {
    packets
        .iter()
        .filter_map(|p| match p {
            V5Packet::Publish(p) => Some(p.clone()),
            _ => None,
        })
        .collect()
}

/// Now.
pub fn now() -> Instant {
    Instant::now()
}
