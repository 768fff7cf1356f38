//! MQTT on a raw socket: builders for the packets a test sends (3.1.1 and 5,
//! with any property, including invalid ones) and a reader that splits the
//! server's bytes into frames and decodes the parts tests assert on.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{TestNode, EVENT_TIMEOUT};

/// Packet types (the high nibble of the first byte).
pub const CONNECT: u8 = 1;
pub const CONNACK: u8 = 2;
pub const PUBLISH: u8 = 3;
pub const PUBACK: u8 = 4;
pub const PUBREC: u8 = 5;
pub const PUBREL: u8 = 6;
pub const PUBCOMP: u8 = 7;
pub const SUBSCRIBE: u8 = 8;
pub const SUBACK: u8 = 9;
pub const UNSUBSCRIBE: u8 = 10;
pub const UNSUBACK: u8 = 11;
pub const PINGREQ: u8 = 12;
pub const PINGRESP: u8 = 13;
pub const DISCONNECT: u8 = 14;
pub const AUTH: u8 = 15;

/// Appends MQTT's variable byte integer.
pub fn varint(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let mut byte = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if n == 0 {
            break;
        }
    }
}

fn string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

/// A whole packet: first byte, remaining length, body.
pub fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    varint(&mut out, body.len());
    out.extend_from_slice(body);
    out
}

/// MQTT 5 properties, built one by one.
#[derive(Default, Clone)]
pub struct Props(pub Vec<u8>);

impl Props {
    pub fn new() -> Self {
        Props::default()
    }
    pub fn byte(mut self, id: u8, v: u8) -> Self {
        self.0.extend_from_slice(&[id, v]);
        self
    }
    pub fn u16(mut self, id: u8, v: u16) -> Self {
        self.0.push(id);
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn u32(mut self, id: u8, v: u32) -> Self {
        self.0.push(id);
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn varint(mut self, id: u8, v: usize) -> Self {
        self.0.push(id);
        varint(&mut self.0, v);
        self
    }
    pub fn str(mut self, id: u8, v: &str) -> Self {
        self.0.push(id);
        string(&mut self.0, v.as_bytes());
        self
    }
    pub fn bin(mut self, id: u8, v: &[u8]) -> Self {
        self.0.push(id);
        string(&mut self.0, v);
        self
    }
    pub fn pair(mut self, k: &str, v: &str) -> Self {
        self.0.push(0x26);
        string(&mut self.0, k.as_bytes());
        string(&mut self.0, v.as_bytes());
        self
    }
    fn encode(&self, out: &mut Vec<u8>) {
        varint(out, self.0.len());
        out.extend_from_slice(&self.0);
    }
}

/// A will for [`Connect`].
#[derive(Clone)]
pub struct Will {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub retain: bool,
    pub props: Props,
}

/// A CONNECT packet, 3.1.1 (`v5: false`) or 5.
#[derive(Clone)]
pub struct Connect {
    pub v5: bool,
    pub client_id: String,
    pub user: String,
    pub password: String,
    pub keep_alive: u16,
    pub clean: bool,
    pub props: Props,
    pub will: Option<Will>,
    /// Extra bits or'ed into the connect flags (bit 0 is reserved).
    pub extra_flags: u8,
}

impl Connect {
    pub fn v5(client_id: &str, user: &str, password: &str) -> Self {
        Connect {
            v5: true,
            client_id: client_id.into(),
            user: user.into(),
            password: password.into(),
            keep_alive: 60,
            clean: true,
            props: Props::new(),
            will: None,
            extra_flags: 0,
        }
    }
    pub fn v4(client_id: &str, user: &str, password: &str) -> Self {
        Connect {
            v5: false,
            ..Connect::v5(client_id, user, password)
        }
    }
    /// The same CONNECT asking for a persistent session: no clean start and,
    /// on MQTT 5, a session expiry of `expiry_secs`.
    pub fn persistent(mut self, expiry_secs: u32) -> Self {
        self.clean = false;
        if self.v5 {
            self.props = self.props.u32(0x11, expiry_secs);
        }
        self
    }
    pub fn bytes(&self) -> Vec<u8> {
        let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', if self.v5 { 5 } else { 4 }];
        let mut flags = 0b1100_0000 | self.extra_flags;
        if self.clean {
            flags |= 0b10;
        }
        if let Some(w) = &self.will {
            flags |= 0b100 | (w.qos << 3) | if w.retain { 0x20 } else { 0 };
        }
        body.push(flags);
        body.extend_from_slice(&self.keep_alive.to_be_bytes());
        if self.v5 {
            self.props.encode(&mut body);
        }
        string(&mut body, self.client_id.as_bytes());
        if let Some(w) = &self.will {
            if self.v5 {
                w.props.encode(&mut body);
            }
            string(&mut body, w.topic.as_bytes());
            string(&mut body, &w.payload);
        }
        string(&mut body, self.user.as_bytes());
        string(&mut body, self.password.as_bytes());
        packet(0x10, &body)
    }
}

/// A PUBLISH packet (every header field is a parameter, as raw tests need).
#[allow(clippy::too_many_arguments)]
pub fn publish(
    v5: bool,
    topic: &str,
    qos: u8,
    pkid: u16,
    dup: bool,
    retain: bool,
    props: &Props,
    payload: &[u8],
) -> Vec<u8> {
    let mut body = Vec::new();
    string(&mut body, topic.as_bytes());
    if qos > 0 {
        body.extend_from_slice(&pkid.to_be_bytes());
    }
    if v5 {
        props.encode(&mut body);
    }
    body.extend_from_slice(payload);
    let first = 0x30 | (qos << 1) | if dup { 8 } else { 0 } | u8::from(retain);
    packet(first, &body)
}

/// A SUBSCRIBE of `(filter, options byte)` pairs.
pub fn subscribe(v5: bool, pkid: u16, filters: &[(&str, u8)], props: &Props) -> Vec<u8> {
    let mut body = pkid.to_be_bytes().to_vec();
    if v5 {
        props.encode(&mut body);
    }
    for (filter, options) in filters {
        string(&mut body, filter.as_bytes());
        body.push(*options);
    }
    packet(0x82, &body)
}

/// An UNSUBSCRIBE.
pub fn unsubscribe(v5: bool, pkid: u16, filters: &[&str]) -> Vec<u8> {
    let mut body = pkid.to_be_bytes().to_vec();
    if v5 {
        body.push(0);
    }
    for filter in filters {
        string(&mut body, filter.as_bytes());
    }
    packet(0xA2, &body)
}

/// PUBACK, PUBREC, PUBREL or PUBCOMP (`kind`) for `pkid`; MQTT 5 with a
/// reason code and properties when `reason` is given.
pub fn ack(kind: u8, pkid: u16, reason: Option<(u8, &Props)>) -> Vec<u8> {
    let mut body = pkid.to_be_bytes().to_vec();
    if let Some((code, props)) = reason {
        body.push(code);
        props.encode(&mut body);
    }
    let flags = if kind == PUBREL { 0b10 } else { 0 };
    packet((kind << 4) | flags, &body)
}

/// An MQTT 5 DISCONNECT with a reason code and no properties.
pub fn disconnect5(reason: u8) -> Vec<u8> {
    packet(0xE0, &[reason])
}

/// One packet from the server.
#[derive(Debug, Clone)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub body: Vec<u8>,
}

/// A property value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prop {
    Int(u32),
    Bytes(Vec<u8>),
    Pair(String, String),
}

/// Decoded MQTT 5 properties, in order.
#[derive(Debug, Clone, Default)]
pub struct PropList(pub Vec<(u8, Prop)>);

impl PropList {
    pub fn int(&self, id: u8) -> Option<u32> {
        self.0.iter().find_map(|(i, p)| match p {
            Prop::Int(v) if *i == id => Some(*v),
            _ => None,
        })
    }
    pub fn ints(&self, id: u8) -> Vec<u32> {
        self.0
            .iter()
            .filter_map(|(i, p)| match p {
                Prop::Int(v) if *i == id => Some(*v),
                _ => None,
            })
            .collect()
    }
    pub fn bytes(&self, id: u8) -> Option<Vec<u8>> {
        self.0.iter().find_map(|(i, p)| match p {
            Prop::Bytes(v) if *i == id => Some(v.clone()),
            _ => None,
        })
    }
    pub fn pairs(&self) -> Vec<(String, String)> {
        self.0
            .iter()
            .filter_map(|(_, p)| match p {
                Prop::Pair(k, v) => Some((k.clone(), v.clone())),
                _ => None,
            })
            .collect()
    }
}

fn read_varint(b: &[u8], at: &mut usize) -> usize {
    let (mut n, mut shift) = (0usize, 0);
    loop {
        let byte = b[*at];
        *at += 1;
        n |= usize::from(byte & 0x7F) << shift;
        shift += 7;
        if byte & 0x80 == 0 {
            return n;
        }
    }
}

fn read_u16(b: &[u8], at: &mut usize) -> u16 {
    let v = u16::from_be_bytes([b[*at], b[*at + 1]]);
    *at += 2;
    v
}

fn read_bin(b: &[u8], at: &mut usize) -> Vec<u8> {
    let n = usize::from(read_u16(b, at));
    let v = b[*at..*at + n].to_vec();
    *at += n;
    v
}

/// Decodes a property section starting at `at`.
pub fn read_props(b: &[u8], at: &mut usize) -> PropList {
    let len = read_varint(b, at);
    let end = *at + len;
    let mut list = Vec::new();
    while *at < end {
        let id = b[*at];
        *at += 1;
        let value = match id {
            0x01 | 0x17 | 0x19 | 0x24 | 0x25 | 0x28 | 0x29 | 0x2A => {
                *at += 1;
                Prop::Int(u32::from(b[*at - 1]))
            }
            0x13 | 0x21 | 0x22 | 0x23 => Prop::Int(u32::from(read_u16(b, at))),
            0x02 | 0x11 | 0x18 | 0x27 => {
                let v = u32::from_be_bytes(b[*at..*at + 4].try_into().unwrap());
                *at += 4;
                Prop::Int(v)
            }
            0x0B => Prop::Int(read_varint(b, at) as u32),
            0x26 => {
                let k = String::from_utf8(read_bin(b, at)).unwrap();
                let v = String::from_utf8(read_bin(b, at)).unwrap();
                Prop::Pair(k, v)
            }
            _ => Prop::Bytes(read_bin(b, at)),
        };
        list.push((id, value));
    }
    PropList(list)
}

/// A decoded PUBLISH from the server.
#[derive(Debug, Clone)]
pub struct Pub {
    pub topic: String,
    pub qos: u8,
    pub dup: bool,
    pub retain: bool,
    pub pkid: u16,
    pub props: PropList,
    pub payload: Vec<u8>,
}

impl Frame {
    /// Decodes a PUBLISH.
    pub fn publish(&self, v5: bool) -> Pub {
        assert_eq!(self.kind, PUBLISH, "expected PUBLISH, got {self:?}");
        let b = &self.body;
        let mut at = 0;
        let topic = String::from_utf8(read_bin(b, &mut at)).unwrap();
        let qos = (self.flags >> 1) & 3;
        let pkid = if qos > 0 { read_u16(b, &mut at) } else { 0 };
        let props = if v5 {
            read_props(b, &mut at)
        } else {
            PropList::default()
        };
        Pub {
            topic,
            qos,
            dup: self.flags & 8 != 0,
            retain: self.flags & 1 != 0,
            pkid,
            props,
            payload: b[at..].to_vec(),
        }
    }
    /// CONNACK: (session present, return/reason code, properties).
    pub fn connack(&self, v5: bool) -> (bool, u8, PropList) {
        assert_eq!(self.kind, CONNACK, "expected CONNACK, got {self:?}");
        let mut at = 2;
        let props = if v5 && self.body.len() > 2 {
            read_props(&self.body, &mut at)
        } else {
            PropList::default()
        };
        (self.body[0] & 1 == 1, self.body[1], props)
    }
    /// The packet id of an ack, SUBACK or UNSUBACK.
    pub fn pkid(&self) -> u16 {
        u16::from_be_bytes([self.body[0], self.body[1]])
    }
    /// The reason code of an MQTT 5 PUBACK/PUBREC/PUBREL/PUBCOMP (0 when omitted).
    pub fn ack_reason(&self) -> u8 {
        self.body.get(2).copied().unwrap_or(0)
    }
    /// The reason codes of a SUBACK or UNSUBACK.
    pub fn codes(&self, v5: bool) -> Vec<u8> {
        let mut at = 2;
        if v5 {
            read_props(&self.body, &mut at);
        }
        self.body[at..].to_vec()
    }
    /// The reason code of a DISCONNECT (0 when omitted).
    pub fn disconnect_reason(&self) -> u8 {
        assert_eq!(self.kind, DISCONNECT, "expected DISCONNECT, got {self:?}");
        self.body.first().copied().unwrap_or(0)
    }
}

/// A raw MQTT connection.
pub struct Raw {
    pub stream: TcpStream,
    buf: Vec<u8>,
    pub v5: bool,
}

impl Raw {
    /// Opens a socket to the node.
    pub async fn open(node: &TestNode, v5: bool) -> Raw {
        Raw {
            stream: TcpStream::connect(node.mqtt()).await.expect("tcp connect"),
            buf: Vec::new(),
            v5,
        }
    }

    /// Opens a socket to `addr` (a node in another process).
    pub async fn open_addr(addr: std::net::SocketAddr, v5: bool) -> Raw {
        Raw {
            stream: TcpStream::connect(addr).await.expect("tcp connect"),
            buf: Vec::new(),
            v5,
        }
    }

    /// Opens a socket, sends `connect` and returns the socket and the CONNACK.
    pub async fn connect(node: &TestNode, connect: &Connect) -> (Raw, Option<Frame>) {
        let mut raw = Raw::open(node, connect.v5).await;
        raw.send(&connect.bytes()).await;
        let ack = raw.recv().await;
        (raw, ack)
    }

    /// Connects and asserts CONNACK success; returns the socket and session present.
    pub async fn connected(node: &TestNode, connect: &Connect) -> (Raw, bool) {
        let (raw, ack) = Raw::connect(node, connect).await;
        let ack = ack.expect("CONNACK");
        let (present, code, _) = ack.connack(connect.v5);
        assert_eq!(code, 0, "CONNECT of {:?} accepted", connect.client_id);
        (raw, present)
    }

    /// Connects, subscribes to `filter` at `qos` and waits for the SUBACK;
    /// returns the socket, session present and the SUBACK's reason codes.
    pub async fn subscribed(
        node: &TestNode,
        connect: &Connect,
        filter: &str,
        qos: u8,
    ) -> (Raw, bool, Vec<u8>) {
        let (mut raw, present) = Raw::connected(node, connect).await;
        let codes = raw.subscribe_to(filter, qos).await;
        (raw, present, codes)
    }

    /// Subscribes to `filter` at `qos` (packet id 1, no properties) and
    /// waits for the SUBACK; returns its reason codes.
    pub async fn subscribe_to(&mut self, filter: &str, qos: u8) -> Vec<u8> {
        self.send(&subscribe(self.v5, 1, &[(filter, qos)], &Props::new()))
            .await;
        self.expect(SUBACK).await.codes(self.v5)
    }

    /// Writes bytes (ignoring errors: the server may have closed).
    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.ok();
    }

    fn split(&mut self) -> Option<Frame> {
        if self.buf.len() < 2 {
            return None;
        }
        let (mut len, mut shift, mut at) = (0usize, 0, 1);
        loop {
            let byte = *self.buf.get(at)?;
            at += 1;
            len |= usize::from(byte & 0x7F) << shift;
            shift += 7;
            if byte & 0x80 == 0 {
                break;
            }
        }
        if self.buf.len() < at + len {
            return None;
        }
        let frame = Frame {
            kind: self.buf[0] >> 4,
            flags: self.buf[0] & 0x0F,
            body: self.buf[at..at + len].to_vec(),
        };
        self.buf.drain(..at + len);
        Some(frame)
    }

    /// The next packet, `Ok(None)` if the server closed, `Err` after `wait`.
    pub async fn recv_within(&mut self, wait: Duration) -> Result<Option<Frame>, ()> {
        tokio::time::timeout(wait, async {
            loop {
                if let Some(frame) = self.split() {
                    return Some(frame);
                }
                let mut chunk = [0u8; 16 * 1024];
                match self.stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                }
            }
        })
        .await
        .map_err(|_| ())
    }

    /// The next packet, or `None` if the server closed; fails the test after
    /// [`EVENT_TIMEOUT`].
    pub async fn recv(&mut self) -> Option<Frame> {
        self.recv_within(EVENT_TIMEOUT)
            .await
            .expect("timed out waiting for a packet")
    }

    /// The next packet of `kind`, skipping others; panics if the connection closes.
    pub async fn expect(&mut self, kind: u8) -> Frame {
        loop {
            match self.recv().await {
                Some(f) if f.kind == kind => return f,
                Some(_) => {}
                None => panic!("connection closed while waiting for packet type {kind}"),
            }
        }
    }

    /// Reads every packet until the server closes the connection.
    pub async fn until_closed(&mut self) -> Vec<Frame> {
        let mut frames = Vec::new();
        while let Some(f) = self.recv().await {
            frames.push(f);
        }
        frames
    }

    /// Asserts nothing arrives (of `kind`, or at all if `None`) for `wait`.
    pub async fn quiet(&mut self, wait: Duration) -> Vec<Frame> {
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv_within(left).await {
                Ok(Some(f)) => seen.push(f),
                Ok(None) | Err(()) => return seen,
            }
        }
    }
}
