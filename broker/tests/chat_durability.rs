//! Durability across `kill -9`: a real `parley` process acknowledges chat
//! messages (PUBACK), is killed with SIGKILL mid-stream, restarts on the same
//! data directory, and every acknowledged message is in history, gap-free,
//! and delivered to the recipient. The same holds with one connection's
//! sends pipelined (many queued for the group commit at the kill), and their
//! PUBACKs come back in publish order.

mod common;

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use common::process::{free_port, spawn_parley, Ports};
use common::within;
use parley_proto::v1::{
    self, chat_message::Body, envelope::Kind, request::Op, response::Result as Answer,
};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS};

/// Rate limits out of the way: the test streams as fast as it can.
const DURABILITY_CONFIG: &str = "[chat]\nmessages_per_sec = 100000.0\nmessage_burst = 100000\n";

async fn sign_up(http: u16, user: &str) {
    let status = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{http}/v1/users"))
        .json(&serde_json::json!({"username": user, "password": "durable password"}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 201);
}

fn options(port: u16, user: &str, client_id: &str) -> MqttOptions {
    let mut o = MqttOptions::new(client_id, "127.0.0.1", port);
    o.set_credentials(user, "durable password");
    o.set_keep_alive(Duration::from_secs(30));
    o.set_inflight(64);
    // History pages are larger than rumqttc's 10 KiB default.
    o.set_max_packet_size(1 << 20, 1 << 20);
    o
}

fn text_message(client_message_id: &str) -> Vec<u8> {
    parley_proto::encode_envelope(
        &v1::ChatMessage {
            client_message_id: client_message_id.into(),
            body: Some(Body::Text(v1::Text {
                text: format!("message {client_message_id}"),
            })),
            ..Default::default()
        }
        .into(),
    )
}

/// Every stored entry of `conversation`, oldest first, fetched page by page by
/// `user` (whose client is subscribed to `a/{user}`).
async fn fetch_history(
    client: &AsyncClient,
    eventloop: &mut EventLoop,
    user: &str,
    conversation: &str,
) -> Vec<v1::ChatMessage> {
    let mut history: Vec<v1::ChatMessage> = Vec::new();
    let mut after = 0;
    loop {
        let request = v1::Request {
            request_id: format!("page-{after}"),
            op: Some(Op::FetchMessages(v1::FetchMessages {
                conversation_id: conversation.into(),
                after_seq: after,
                limit: 500,
                ..Default::default()
            })),
        };
        client
            .publish(
                format!("q/{user}"),
                QoS::AtLeastOnce,
                false,
                parley_proto::encode_envelope(&request.into()),
            )
            .await
            .unwrap();
        let answers = format!("a/{user}");
        let page = within("a history page", async {
            loop {
                if let Ok(Event::Incoming(Packet::Publish(p))) = eventloop.poll().await {
                    if p.topic != answers {
                        continue;
                    }
                    let envelope = parley_proto::decode_envelope(&p.payload).unwrap();
                    let Some(Kind::Response(response)) = envelope.kind else {
                        continue;
                    };
                    match response.result {
                        Some(Answer::Messages(page)) => return page,
                        other => panic!("unexpected answer {other:?}"),
                    }
                }
            }
        })
        .await;
        after = page.messages.last().map_or(after, |m| m.seq);
        history.extend(page.messages);
        if !page.has_more {
            return history;
        }
    }
}

#[tokio::test]
async fn acknowledged_messages_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports {
        mqtt: free_port(),
        http: free_port(),
    };
    let mut parley = spawn_parley(dir.path(), &ports, DURABILITY_CONFIG).await;
    sign_up(ports.http, "alice").await;
    sign_up(ports.http, "bob").await;

    // Alice streams messages; every PUBACK she gets is recorded. After 150
    // acknowledgements the broker is killed while more are in flight.
    let (alice, mut eventloop) = AsyncClient::new(options(ports.mqtt, "alice", "alice-phone"), 512);
    let sender = tokio::spawn(async move {
        for i in 0..2_000 {
            if alice
                .publish(
                    "s/alice~bob",
                    QoS::AtLeastOnce,
                    false,
                    text_message(&format!("m{i:04}")),
                )
                .await
                .is_err()
            {
                break;
            }
        }
    });
    let mut sent_by_pkid = std::collections::HashMap::new();
    let mut next_id = 0usize;
    let mut acked = HashSet::new();
    let killed = within("150 acknowledgements", async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                    sent_by_pkid.insert(pkid, format!("m{next_id:04}"));
                    next_id += 1;
                }
                Ok(Event::Incoming(Packet::PubAck(ack))) => {
                    let id = sent_by_pkid
                        .get(&ack.pkid)
                        .expect("ack for a sent publish")
                        .clone();
                    acked.insert(id);
                    if acked.len() == 150 {
                        parley.start_kill().expect("SIGKILL");
                        return true;
                    }
                }
                Ok(_) => {}
                Err(e) => panic!("connection failed before the kill: {e:?}"),
            }
        }
    })
    .await;
    assert!(killed);
    // Acks already on the wire when the kill landed still count.
    loop {
        match tokio::time::timeout(Duration::from_secs(5), eventloop.poll()).await {
            Ok(Ok(Event::Incoming(Packet::PubAck(ack)))) => {
                if let Some(id) = sent_by_pkid.get(&ack.pkid) {
                    acked.insert(id.clone());
                }
            }
            Ok(Ok(_)) => {}
            // The broker is gone (or went quiet): nothing more was acknowledged.
            _ => break,
        }
    }
    parley.wait().await.unwrap();
    sender.abort();

    // Restart on the same data directory; bob syncs the conversation.
    let _parley = spawn_parley(dir.path(), &ports, DURABILITY_CONFIG).await;
    let (bob, mut bob_loop) = AsyncClient::new(options(ports.mqtt, "bob", "bob-tablet"), 64);
    bob.subscribe("a/bob", QoS::AtLeastOnce).await.unwrap();
    bob.subscribe("u/bob/i", QoS::AtLeastOnce).await.unwrap();
    let mut subacks = 0;
    within("SUBACKs", async {
        while subacks < 2 {
            if let Ok(Event::Incoming(Packet::SubAck(_))) = bob_loop.poll().await {
                subacks += 1;
            }
        }
    })
    .await;

    let history = fetch_history(&bob, &mut bob_loop, "bob", "alice~bob").await;

    let seqs: Vec<u64> = history.iter().map(|m| m.seq).collect();
    let expected: Vec<u64> = (1..=history.len() as u64).collect();
    assert_eq!(seqs, expected, "sequence numbers are gap-free from 1");
    let stored: HashSet<String> = history
        .iter()
        .map(|m| m.client_message_id.clone())
        .collect();
    assert_eq!(stored.len(), history.len(), "each message stored once");
    let lost: Vec<&String> = acked.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(
        lost.is_empty(),
        "acknowledged but lost after kill -9: {lost:?}"
    );
    assert!(history.len() >= 150);
    eprintln!(
        "acknowledged {} messages, {} stored before the kill",
        acked.len(),
        history.len()
    );

    // And the conversation goes on: the next message gets the next sequence number.
    let (alice, mut alice_loop) = AsyncClient::new(options(ports.mqtt, "alice", "alice-phone"), 16);
    alice
        .publish(
            "s/alice~bob",
            QoS::AtLeastOnce,
            false,
            text_message("after-restart"),
        )
        .await
        .unwrap();
    tokio::spawn(async move { while alice_loop.poll().await.is_ok() {} });
    let delivered = within("delivery after restart", async {
        loop {
            if let Ok(Event::Incoming(Packet::Publish(p))) = bob_loop.poll().await {
                if p.topic == "u/bob/i" {
                    if let Some(Kind::Message(m)) =
                        parley_proto::decode_envelope(&p.payload).unwrap().kind
                    {
                        return m;
                    }
                }
            }
        }
    })
    .await;
    assert_eq!(delivered.client_message_id, "after-restart");
    assert_eq!(delivered.seq, history.len() as u64 + 1);
}

/// Records the PUBACK for `pkid`, which must answer the oldest unacknowledged
/// publish.
fn take_ack(unacked: &mut VecDeque<(u16, String)>, acked: &mut Vec<String>, pkid: u16) {
    let (expected, id) = unacked
        .pop_front()
        .unwrap_or_else(|| panic!("PUBACK {pkid} with nothing unacknowledged"));
    assert_eq!(
        pkid, expected,
        "PUBACK {pkid} arrived while {id} (packet {expected}) was the oldest unacknowledged"
    );
    acked.push(id);
}

/// Pipelined sends need a connection with many publishes in flight.
const PIPELINED_CONFIG: &str = "[chat]\nmessages_per_sec = 100000.0\nmessage_burst = 100000\n\
                                max_pipelined_sends = 32\n";

#[tokio::test]
async fn pipelined_sends_survive_kill_9_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports {
        mqtt: free_port(),
        http: free_port(),
    };
    let mut parley = spawn_parley(dir.path(), &ports, PIPELINED_CONFIG).await;
    for user in ["alice", "bob", "carol"] {
        sign_up(ports.http, user).await;
    }
    let conversations = ["alice~bob", "alice~carol"];

    // Alice streams into two conversations, alternating, with up to 64
    // publishes awaiting PUBACK. Each PUBACK must answer the oldest
    // unacknowledged publish. After 300 acknowledgements, at a moment when
    // several publishes are unacknowledged, the broker is killed.
    let (alice, mut eventloop) = AsyncClient::new(options(ports.mqtt, "alice", "alice-phone"), 512);
    let sender = tokio::spawn(async move {
        for i in 0..5_000usize {
            let topic = format!("s/{}", conversations[i % 2]);
            let message = text_message(&format!("p{i:05}"));
            if alice
                .publish(topic, QoS::AtLeastOnce, false, message)
                .await
                .is_err()
            {
                break;
            }
        }
    });
    let mut unacked: VecDeque<(u16, String)> = VecDeque::new();
    let mut next_id = 0usize;
    let mut acked: Vec<String> = Vec::new();
    let unacked_at_kill = within("300 acknowledgements with several in flight", async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                    unacked.push_back((pkid, format!("p{next_id:05}")));
                    next_id += 1;
                }
                Ok(Event::Incoming(Packet::PubAck(ack))) => {
                    take_ack(&mut unacked, &mut acked, ack.pkid);
                    if acked.len() >= 300 && unacked.len() >= 8 {
                        parley.start_kill().expect("SIGKILL");
                        return unacked.len();
                    }
                }
                Ok(_) => {}
                Err(e) => panic!("connection failed before the kill: {e:?}"),
            }
        }
    })
    .await;
    // Acks already on the wire when the kill landed still count (and must
    // still be in order).
    loop {
        match tokio::time::timeout(Duration::from_secs(5), eventloop.poll()).await {
            Ok(Ok(Event::Incoming(Packet::PubAck(ack)))) => {
                take_ack(&mut unacked, &mut acked, ack.pkid)
            }
            Ok(Ok(_)) => {}
            // The broker is gone: nothing more was acknowledged.
            _ => break,
        }
    }
    parley.wait().await.unwrap();
    sender.abort();

    // Restart on the same data directory; alice reads both conversations.
    let _parley = spawn_parley(dir.path(), &ports, PIPELINED_CONFIG).await;
    let (reader, mut reader_loop) =
        AsyncClient::new(options(ports.mqtt, "alice", "alice-laptop"), 64);
    reader.subscribe("a/alice", QoS::AtLeastOnce).await.unwrap();
    within("SUBACK", async {
        loop {
            if let Ok(Event::Incoming(Packet::SubAck(_))) = reader_loop.poll().await {
                return;
            }
        }
    })
    .await;

    let mut stored = HashSet::new();
    let mut total = 0;
    for conversation in conversations {
        let history = fetch_history(&reader, &mut reader_loop, "alice", conversation).await;
        let seqs: Vec<u64> = history.iter().map(|m| m.seq).collect();
        assert_eq!(
            seqs,
            (1..=history.len() as u64).collect::<Vec<_>>(),
            "{conversation}: sequence numbers are gap-free from 1"
        );
        let ids: Vec<&String> = history.iter().map(|m| &m.client_message_id).collect();
        assert!(
            ids.windows(2).all(|pair| pair[0] < pair[1]),
            "{conversation}: stored in publish order, each once: {ids:?}"
        );
        total += history.len();
        stored.extend(history.into_iter().map(|m| m.client_message_id));
    }
    assert_eq!(stored.len(), total, "each message stored once");
    let lost: Vec<&String> = acked.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(
        lost.is_empty(),
        "acknowledged but lost after kill -9: {lost:?}"
    );
    assert!(acked.len() >= 300 && unacked_at_kill >= 8);
    eprintln!(
        "acknowledged {}, {} unacknowledged at the kill, {} stored",
        acked.len(),
        unacked_at_kill,
        total
    );
}
