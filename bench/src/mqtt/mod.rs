//! MQTT clients used by the scenarios: [`client`] wraps rumqttc (3.1.1 and 5)
//! for publish/subscribe load, [`lean`] is a single-task client that owns its
//! socket and batches its writes (the `chat` scenario's default), [`idle`] is
//! a minimal connect-and-hold session on a socket the bench binds itself
//! (rumqttc can't choose a source address), [`persistent`] a clean-session-0
//! client that subscribes, drains and resumes; the socket clients open their
//! sockets with [`dial`] and encode control packets with [`frame`]; [`idle`]
//! and [`lean`] share their connection settings, [`endpoint`].

pub mod client;
pub mod dial;
pub mod endpoint;
pub mod frame;
pub mod idle;
pub mod lean;
pub mod persistent;

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// Largest packet the bench accepts from a broker.
pub const MAX_INCOMING_PACKET: usize = 1024 * 1024;

/// MQTT protocol version: 4 is MQTT 3.1.1, 5 is MQTT 5.0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum MqttVersion {
    /// MQTT 3.1.1 (protocol level 4).
    #[serde(rename = "3.1.1")]
    V4,
    /// MQTT 5.0.
    #[serde(rename = "5")]
    V5,
}

impl FromStr for MqttVersion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "4" | "3.1.1" => Ok(MqttVersion::V4),
            "5" | "5.0" => Ok(MqttVersion::V5),
            other => Err(format!(
                "unsupported MQTT version {other:?}; use 4 (3.1.1) or 5"
            )),
        }
    }
}

impl fmt::Display for MqttVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MqttVersion::V4 => "3.1.1",
            MqttVersion::V5 => "5",
        })
    }
}

/// MQTT quality of service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Qos {
    /// QoS 0: at most once.
    AtMostOnce,
    /// QoS 1: at least once.
    AtLeastOnce,
    /// QoS 2: exactly once.
    ExactlyOnce,
}

impl Qos {
    /// The QoS level as its number.
    pub fn level(self) -> u8 {
        match self {
            Qos::AtMostOnce => 0,
            Qos::AtLeastOnce => 1,
            Qos::ExactlyOnce => 2,
        }
    }

    fn v4(self) -> rumqttc::QoS {
        match self {
            Qos::AtMostOnce => rumqttc::QoS::AtMostOnce,
            Qos::AtLeastOnce => rumqttc::QoS::AtLeastOnce,
            Qos::ExactlyOnce => rumqttc::QoS::ExactlyOnce,
        }
    }

    fn v5(self) -> rumqttc::v5::mqttbytes::QoS {
        match self {
            Qos::AtMostOnce => rumqttc::v5::mqttbytes::QoS::AtMostOnce,
            Qos::AtLeastOnce => rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
            Qos::ExactlyOnce => rumqttc::v5::mqttbytes::QoS::ExactlyOnce,
        }
    }
}

impl FromStr for Qos {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "0" => Ok(Qos::AtMostOnce),
            "1" => Ok(Qos::AtLeastOnce),
            "2" => Ok(Qos::ExactlyOnce),
            other => Err(format!("invalid QoS {other:?}; use 0, 1 or 2")),
        }
    }
}

impl fmt::Display for Qos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.level())
    }
}

impl Serialize for Qos {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u8(self.level())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_versions_and_qos() {
        assert_eq!("4".parse(), Ok(MqttVersion::V4));
        assert_eq!("5".parse(), Ok(MqttVersion::V5));
        assert!("3".parse::<MqttVersion>().is_err());
        assert_eq!("2".parse(), Ok(Qos::ExactlyOnce));
        assert!("3".parse::<Qos>().is_err());
        assert_eq!(serde_json::to_string(&Qos::AtLeastOnce).unwrap(), "1");
        assert_eq!(serde_json::to_string(&MqttVersion::V5).unwrap(), "\"5\"");
    }
}
