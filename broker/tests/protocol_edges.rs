//! Protocol edge cases on a raw socket and with real clients: keep-alive
//! expiry, acknowledgements that must not wait for a timer, client-id
//! takeover (only within one user), oversize packets, invalid UTF-8 topics,
//! unsupported protocol levels and non-MQTT bytes.

mod common;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An MQTT 3.1.1 CONNECT with credentials and the given keep-alive.
fn connect_packet(client_id: &str, user: &str, password: &str, keep_alive: u16) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0b1100_0010];
    body.extend_from_slice(&keep_alive.to_be_bytes());
    for s in [client_id, user, password] {
        body.extend_from_slice(&(s.len() as u16).to_be_bytes());
        body.extend_from_slice(s.as_bytes());
    }
    let mut packet = vec![0x10];
    push_remaining_length(&mut packet, body.len());
    packet.extend(body);
    packet
}

fn push_remaining_length(out: &mut Vec<u8>, mut len: usize) {
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
}

async fn raw_connect(node: &TestNode, keep_alive: u16) -> TcpStream {
    let mut s = TcpStream::connect(node.mqtt()).await.unwrap();
    s.write_all(&connect_packet(
        "raw",
        "rawuser",
        "raw password",
        keep_alive,
    ))
    .await
    .unwrap();
    let mut connack = [0u8; 4];
    within("CONNACK", s.read_exact(&mut connack)).await.unwrap();
    assert_eq!(connack, [0x20, 2, 0, 0], "accepted");
    s
}

/// Reads until the server closes the connection; returns the bytes seen.
async fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut seen = Vec::new();
    within("server to close the connection", s.read_to_end(&mut seen))
        .await
        .ok();
    seen
}

#[tokio::test]
async fn keep_alive_expiry_closes_the_connection() {
    let node = start_node(|_| {}).await;
    sign_up(&node, "rawuser", "raw password").await;
    let mut s = raw_connect(&node, 1).await;
    // Send nothing: the server must close after 1.5 x 1 s.
    let started = std::time::Instant::now();
    assert!(read_to_close(&mut s).await.is_empty());
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(1400),
        "not before 1.5 x keep-alive"
    );
}

#[tokio::test]
async fn pings_keep_a_connection_open_past_its_keep_alive() {
    let node = start_node(|_| {}).await;
    sign_up(&node, "rawuser", "raw password").await;
    let mut s = raw_connect(&node, 1).await;
    // Eight pings 400 ms apart: 3.2 s, over twice the 1.5 s the server
    // allows without traffic. Each read moves the deadline later.
    for round in 0..8 {
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        s.write_all(&[0xC0, 0]).await.unwrap();
        let mut pingresp = [0u8; 2];
        within("PINGRESP", s.read_exact(&mut pingresp))
            .await
            .unwrap_or_else(|e| panic!("ping {round}: closed ({e})"));
        assert_eq!(pingresp, [0xD0, 0], "ping {round}");
    }
    // Then silence: closed, and not before 1.5 x keep-alive after the last ping.
    let started = std::time::Instant::now();
    assert!(read_to_close(&mut s).await.is_empty());
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(1400),
        "not before 1.5 x keep-alive"
    );
}

#[tokio::test]
async fn a_chat_publish_handled_at_once_is_acknowledged_without_waiting_for_a_timer() {
    // Past its burst, a typing indicator is dropped by the rate limit and
    // answered without any store access: its outcome is ready the moment it
    // is begun. Its PUBACK must leave then, not when the connection's next
    // timer (the 50 ms buffer grace) happens to wake it.
    let node = start_node(|c| {
        c.chat.typing_burst = 1;
        c.chat.typing_per_sec = 0.001;
    })
    .await;
    sign_up(&node, "rawuser", "raw password").await;
    sign_up(&node, "bob", "bob password").await;
    let mut s = raw_connect(&node, 60).await;
    let topic = b"t/bob~rawuser";
    // Envelope { typing: Typing { active: true } }
    let payload = [0x1a, 0x02, 0x18, 0x01];
    const ROUNDS: u16 = 100;
    let started = std::time::Instant::now();
    for pkid in 1..=ROUNDS {
        let mut body = (topic.len() as u16).to_be_bytes().to_vec();
        body.extend_from_slice(topic);
        body.extend_from_slice(&pkid.to_be_bytes());
        body.extend_from_slice(&payload);
        let mut packet = vec![0x32];
        push_remaining_length(&mut packet, body.len());
        packet.extend(body);
        s.write_all(&packet).await.unwrap();
        let mut puback = [0u8; 4];
        within("PUBACK", s.read_exact(&mut puback)).await.unwrap();
        let [hi, lo] = pkid.to_be_bytes();
        assert_eq!(puback, [0x40, 2, hi, lo], "PUBACK {pkid}");
    }
    // Waiting for the timer costs ~50 ms per round (5 s in all); answered
    // at once, the rounds take a few ms together.
    let took = started.elapsed();
    assert!(
        took < std::time::Duration::from_millis(2500),
        "{ROUNDS} PUBACKs took {took:?}"
    );
}

#[tokio::test]
async fn oversize_packet_closes_the_connection() {
    let node = start_node(|c| c.mqtt.max_packet_size = 2048).await;
    sign_up(&node, "rawuser", "raw password").await;
    let mut s = raw_connect(&node, 60).await;
    let mut publish = vec![0x30];
    push_remaining_length(&mut publish, 4096 + 5);
    publish.extend_from_slice(&[0, 3, b'a', b'/', b'b']);
    publish.extend(std::iter::repeat_n(b'x', 4096));
    s.write_all(&publish).await.ok();
    assert!(
        read_to_close(&mut s).await.is_empty(),
        "3.1.1: closed without a reply"
    );
}

#[tokio::test]
async fn invalid_utf8_topic_closes_the_connection() {
    let node = start_node(|_| {}).await;
    sign_up(&node, "rawuser", "raw password").await;
    let mut s = raw_connect(&node, 60).await;
    s.write_all(&[0x30, 5, 0, 2, 0xC3, 0x28, b'x'])
        .await
        .unwrap();
    assert!(read_to_close(&mut s).await.is_empty());
}

#[tokio::test]
async fn mqtt_3_1_is_refused_with_unacceptable_protocol_version() {
    let node = start_node(|_| {}).await;
    let mut s = TcpStream::connect(node.mqtt()).await.unwrap();
    let mut body = vec![
        0, 6, b'M', b'Q', b'I', b's', b'd', b'p', 3, 0x02, 0, 60, 0, 1, b'c',
    ];
    let mut packet = vec![0x10, body.len() as u8];
    packet.append(&mut body);
    s.write_all(&packet).await.unwrap();
    assert_eq!(read_to_close(&mut s).await, vec![0x20, 2, 0, 1]);
}

#[tokio::test]
async fn non_mqtt_bytes_are_dropped() {
    let node = start_node(|_| {}).await;
    let mut s = TcpStream::connect(node.mqtt()).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(read_to_close(&mut s).await.is_empty());
}

#[tokio::test]
async fn client_id_takeover_stays_within_one_user() {
    use rumqttc::v5::mqttbytes::v5::{DisconnectReasonCode, Packet};
    let node = start_node(|_| {}).await;
    sign_up(&node, "alice", "alice password").await;
    sign_up(&node, "bob", "bob password").await;
    let (_a1, mut a1_el) =
        v5::connect(v5::options(&node, "phone", "alice", "alice password")).await;

    // Bob using the same client id does not disturb alice's session.
    let (bob, mut bob_el) = v5::connect(v5::options(&node, "phone", "bob", "bob password")).await;
    bob.subscribe("u/bob/i", rumqttc::v5::mqttbytes::QoS::AtLeastOnce)
        .await
        .unwrap();
    v5::next_matching(&mut bob_el, "SUBACK", |p| {
        matches!(p, Packet::SubAck(_)).then_some(())
    })
    .await;

    // Alice again with the same client id takes her own session over.
    let (_a2, _a2_el) = v5::connect(v5::options(&node, "phone", "alice", "alice password")).await;
    assert_eq!(
        v5::disconnect_reason(&mut a1_el).await,
        Some(DisconnectReasonCode::SessionTakenOver)
    );

    // Bob's connection is still alive: a ping round trip works.
    bob.subscribe("u/bob/t", rumqttc::v5::mqttbytes::QoS::AtMostOnce)
        .await
        .unwrap();
    v5::next_matching(&mut bob_el, "SUBACK after takeover", |p| {
        matches!(p, Packet::SubAck(_)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn v5_publish_with_wildcard_topic_gets_disconnect_0x90() {
    let node = start_node(|_| {}).await;
    sign_up(&node, "rawuser", "raw password").await;
    let mut s = TcpStream::connect(node.mqtt()).await.unwrap();
    // MQTT 5 CONNECT: level 5, username+password+clean start, keep-alive 60, no properties.
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 5, 0b1100_0010, 0, 60, 0];
    for field in ["raw5", "rawuser", "raw password"] {
        body.extend_from_slice(&(field.len() as u16).to_be_bytes());
        body.extend_from_slice(field.as_bytes());
    }
    let mut connect = vec![0x10];
    push_remaining_length(&mut connect, body.len());
    connect.extend(body);
    s.write_all(&connect).await.unwrap();
    let mut head = [0u8; 2];
    within("CONNACK", s.read_exact(&mut head)).await.unwrap();
    assert_eq!(head[0], 0x20);
    let mut rest = vec![0u8; head[1] as usize];
    s.read_exact(&mut rest).await.unwrap();
    assert_eq!(rest[1], 0, "CONNACK success");

    // QoS 0 PUBLISH to "a/+" with empty properties.
    s.write_all(&[0x30, 7, 0, 3, b'a', b'/', b'+', 0, b'x'])
        .await
        .unwrap();
    let bytes = read_to_close(&mut s).await;
    assert_eq!(
        bytes.first(),
        Some(&0xE0),
        "DISCONNECT before close: {bytes:?}"
    );
    assert_eq!(
        bytes,
        vec![0xE0, 2, 0x90, 0],
        "DISCONNECT, reason Topic Name invalid"
    );
}
