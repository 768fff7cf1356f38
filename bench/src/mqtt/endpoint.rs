//! Where a socket client ([`idle`](super::idle), [`lean`](super::lean))
//! connects, from where, and as whom: the part of their settings that is the
//! same for both, with the TCP connect and the CONNECT packet it implies.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::BytesMut;
use tokio::net::TcpStream;

use super::dial::{dial, DialError};
use super::frame::{self, FrameError};
use super::MqttVersion;
use crate::credentials::Login;

/// A broker to connect to and the session to open there.
#[derive(Debug, Clone)]
pub struct Endpoint<'a> {
    /// Broker address.
    pub target: SocketAddr,
    /// Source address to bind before connecting (`None`: the kernel picks).
    pub source: Option<IpAddr>,
    /// Protocol version.
    pub version: MqttVersion,
    /// MQTT client identifier.
    pub client_id: &'a str,
    /// Username and password, if any.
    pub login: Option<&'a Login>,
    /// Keep-alive sent in CONNECT; a PINGREQ goes out at this interval
    /// (zero: none).
    pub keepalive: Duration,
}

impl Endpoint<'_> {
    /// Opens the TCP connection (bound to the source address, if any).
    pub async fn dial(&self) -> Result<TcpStream, DialError> {
        dial(self.target, self.source).await
    }

    /// Appends this session's CONNECT (clean session / clean start) to `buf`.
    pub fn encode_connect(&self, buf: &mut BytesMut) -> Result<(), FrameError> {
        frame::connect(
            buf,
            self.version,
            self.client_id,
            self.login,
            self.keepalive,
        )
    }
}
