//! Durable MQTT sessions on one node: a real `parley` process is killed with
//! SIGKILL (or stopped) and restarted on the same data directory, and
//! persistent sessions come back with their subscriptions and queues.
//!
//! - every QoS 1 message PUBACKed while its persistent subscriber was
//!   offline is delivered after a `kill -9` mid-stream, in publish order,
//!   and so is every one an online persistent subscriber had not received;
//! - QoS 2 across a `kill -9`: every PUBRECed message arrives, none twice,
//!   also when the publisher's own persistent session resends after the restart;
//! - subscriptions are restored (CONNACK session present 1);
//! - a session whose expiry passes while the node is down is gone at start-up
//!   with its queue (and counted), one with a longer expiry is not and gets
//!   its queue back from the store;
//! - the per-session queue bound still applies and its drops are counted;
//! - a long offline queue is read back from the store in pages, in order,
//!   with messages published meanwhile behind it.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::process::{free_port, spawn_parley_with_mqtt, Ports};
use common::within;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS};
use tokio::process::Child;

const USER: &str = "dev";
const PASSWORD: &str = "durable password";

/// The plain topics the test user may use.
const ACL: &str = "[[acl]]\naccess = \"readwrite\"\nfilter = \"devices/%u/#\"\n";

/// Starts `parley` on `dir` with a queue bound of `max_queued` messages per session.
async fn start(dir: &std::path::Path, ports: &Ports, max_queued: usize) -> Child {
    let mqtt = format!("max_queued_messages = {max_queued}\n");
    spawn_parley_with_mqtt(dir, ports, &mqtt, ACL).await
}

async fn sign_up(http: u16) {
    let status = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{http}/v1/users"))
        .json(&serde_json::json!({"username": USER, "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 201);
}

fn options(port: u16, client_id: &str, clean: bool) -> MqttOptions {
    let mut o = MqttOptions::new(client_id, "127.0.0.1", port);
    o.set_credentials(USER, PASSWORD);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_clean_session(clean);
    o.set_inflight(64);
    o
}

fn ports() -> Ports {
    Ports {
        mqtt: free_port(),
        http: free_port(),
    }
}

/// Connects and returns the client, its event loop and CONNACK's session present.
async fn connect(port: u16, client_id: &str, clean: bool) -> (AsyncClient, EventLoop, bool) {
    let (client, mut eventloop) = AsyncClient::new(options(port, client_id, clean), 1024);
    let present = within("CONNACK", async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => return ack.session_present,
                Ok(_) => {}
                Err(e) => panic!("connect failed: {e:?}"),
            }
        }
    })
    .await;
    (client, eventloop, present)
}

/// A persistent subscriber to `topic` at `qos` that then goes away cleanly.
async fn persistent_subscriber(port: u16, client_id: &str, topic: &str, qos: QoS) {
    let (client, mut eventloop, _) = connect(port, client_id, false).await;
    client.subscribe(topic, qos).await.unwrap();
    within("SUBACK", async {
        loop {
            if let Event::Incoming(Packet::SubAck(_)) = eventloop.poll().await.unwrap() {
                return;
            }
        }
    })
    .await;
    client.disconnect().await.unwrap();
    within("the DISCONNECT to go out", async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
}

/// The index a test payload carries.
fn index_of(payload: &[u8]) -> u32 {
    u32::from_be_bytes(payload.try_into().expect("a 4-byte payload"))
}

/// Receives on `eventloop` until `done` says so, returning the payload indexes in order.
async fn receive_until(
    eventloop: &mut EventLoop,
    what: &str,
    mut done: impl FnMut(&[u32]) -> bool,
) -> Vec<u32> {
    let mut got = Vec::new();
    within(what, async {
        while !done(&got) {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => got.push(index_of(&p.payload)),
                Ok(_) => {}
                Err(e) => panic!("subscriber connection failed: {e:?}"),
            }
        }
    })
    .await;
    got
}

/// Publishes `count` indexed messages on `topic` at `qos` from a task.
fn publish_loop(client: AsyncClient, topic: &'static str, qos: QoS, count: u32) {
    tokio::spawn(async move {
        for i in 0..count {
            if client
                .publish(topic, qos, false, i.to_be_bytes().to_vec())
                .await
                .is_err()
            {
                break;
            }
        }
    });
}

/// Polls the publisher until `acks` acknowledgements (PUBACK for QoS 1,
/// PUBREC for QoS 2) arrived, kills the broker, and collects the acks
/// already on the wire. Returns the acknowledged indexes.
async fn ack_then_kill(eventloop: &mut EventLoop, parley: &mut Child, acks: usize) -> HashSet<u32> {
    let mut sent = std::collections::HashMap::new();
    let mut next = 0u32;
    let mut acked = HashSet::new();
    let mut on_event = |event: Event, acked: &mut HashSet<u32>| match event {
        Event::Outgoing(Outgoing::Publish(pkid)) => {
            sent.insert(pkid, next);
            next += 1;
        }
        Event::Incoming(Packet::PubAck(ack)) => {
            acked.insert(sent[&ack.pkid]);
        }
        Event::Incoming(Packet::PubRec(rec)) => {
            acked.insert(sent[&rec.pkid]);
        }
        _ => {}
    };
    within("the acknowledgements before the kill", async {
        while acked.len() < acks {
            match eventloop.poll().await {
                Ok(event) => on_event(event, &mut acked),
                Err(e) => panic!("publisher failed before the kill: {e:?}"),
            }
        }
    })
    .await;
    parley.start_kill().expect("SIGKILL");
    // Acks already on the wire when the kill landed count too.
    while let Ok(Ok(event)) = tokio::time::timeout(Duration::from_secs(5), eventloop.poll()).await {
        on_event(event, &mut acked);
    }
    parley.wait().await.unwrap();
    acked
}

/// Asserts that `got` has no index twice, and that the messages the node
/// accepted before the kill (`acked`) came in publish order. (What the
/// publisher resends after its reconnect, rumqttc resends in its own order.)
fn assert_once_in_order(got: &[u32], acked: &HashSet<u32>) {
    let distinct: HashSet<u32> = got.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        got.len(),
        "a message arrived twice: {got:?}"
    );
    let before_kill: Vec<u32> = got.iter().copied().filter(|i| acked.contains(i)).collect();
    assert!(
        before_kill.windows(2).all(|w| w[0] < w[1]),
        "messages accepted before the kill out of publish order: {before_kill:?}"
    );
}

#[tokio::test]
async fn pubacked_qos1_messages_reach_an_offline_persistent_session_after_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let ports = ports();
    let mut parley = start(dir.path(), &ports, 100_000).await;
    sign_up(ports.http).await;
    persistent_subscriber(ports.mqtt, "sub-q1", "devices/dev/q1", QoS::AtLeastOnce).await;

    let (publisher, mut pub_loop, _) = connect(ports.mqtt, "pub-q1", true).await;
    publish_loop(publisher, "devices/dev/q1", QoS::AtLeastOnce, 5_000);
    let acked = ack_then_kill(&mut pub_loop, &mut parley, 300).await;
    assert!(acked.len() >= 300);
    drop(pub_loop);

    let _parley = start(dir.path(), &ports, 100_000).await;
    let (_sub, mut sub_loop, present) = connect(ports.mqtt, "sub-q1", false).await;
    assert!(present, "the persistent session survived the kill");
    let got = receive_until(&mut sub_loop, "every acknowledged message", |got| {
        let have: HashSet<&u32> = got.iter().collect();
        acked.iter().all(|i| have.contains(i))
    })
    .await;
    // At least once, in publish order: a redelivery may only repeat a
    // message, never reorder the first deliveries.
    let mut first = Vec::new();
    let mut seen = HashSet::new();
    for i in &got {
        if seen.insert(*i) {
            first.push(*i);
        }
    }
    assert!(
        first.windows(2).all(|w| w[0] < w[1]),
        "first deliveries out of publish order"
    );
    let missing: Vec<&u32> = acked.iter().filter(|i| !seen.contains(*i)).collect();
    assert!(missing.is_empty(), "PUBACKed but lost: {missing:?}");
}

#[tokio::test]
async fn an_online_persistent_subscriber_gets_every_pubacked_message_across_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let ports = ports();
    let mut parley = start(dir.path(), &ports, 100_000).await;
    sign_up(ports.http).await;
    persistent_subscriber(ports.mqtt, "sub-live", "devices/dev/live", QoS::AtLeastOnce).await;
    let (_sub, mut sub_loop, _) = connect(ports.mqtt, "sub-live", false).await;
    // The subscriber reads (and PUBACKs) 50 messages, then stops reading:
    // the rest are in flight or queued for it when the node is killed.
    let reading = tokio::spawn(async move {
        let mut got = Vec::new();
        while got.len() < 50 {
            if let Event::Incoming(Packet::Publish(p)) = sub_loop.poll().await.unwrap() {
                got.push(index_of(&p.payload));
            }
        }
        (got, sub_loop)
    });

    let (publisher, mut pub_loop, _) = connect(ports.mqtt, "pub-live", true).await;
    publish_loop(publisher, "devices/dev/live", QoS::AtLeastOnce, 5_000);
    let acked = ack_then_kill(&mut pub_loop, &mut parley, 300).await;
    drop(pub_loop);
    let (mut got, mut sub_loop) = within("50 messages", reading).await.unwrap();
    assert!(
        acked.len() > 50 + 64,
        "more were acknowledged than the subscriber read"
    );

    let _parley = start(dir.path(), &ports, 100_000).await;
    // The same event loop reads what was buffered, sees the old connection
    // fail, and reconnects with clean session 0.
    let mut reconnected = false;
    within("every acknowledged message", async {
        loop {
            let have: HashSet<&u32> = got.iter().collect();
            if acked.iter().all(|i| have.contains(i)) {
                return;
            }
            match sub_loop.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => got.push(index_of(&p.payload)),
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    assert!(ack.session_present, "the session survived the kill");
                    reconnected = true;
                }
                Ok(_) => {}
                Err(_) => assert!(!reconnected, "the new connection failed"),
            }
        }
    })
    .await;
    assert!(reconnected);
    let seen: HashSet<u32> = got.iter().copied().collect();
    let missing: Vec<&u32> = acked.iter().filter(|i| !seen.contains(*i)).collect();
    assert!(missing.is_empty(), "PUBACKed but lost: {missing:?}");
}

#[tokio::test]
async fn qos2_messages_arrive_exactly_once_across_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let ports = ports();
    let mut parley = start(dir.path(), &ports, 100_000).await;
    sign_up(ports.http).await;
    persistent_subscriber(ports.mqtt, "sub-q2", "devices/dev/q2", QoS::ExactlyOnce).await;

    // The publisher's session is persistent too: after the restart it
    // resends what was not acknowledged, and the node must recognise the
    // QoS 2 packet ids it had already accepted.
    const TOTAL: u32 = 400;
    let (publisher, mut pub_loop, _) = connect(ports.mqtt, "pub-q2", false).await;
    publish_loop(publisher, "devices/dev/q2", QoS::ExactlyOnce, TOTAL);
    let acked = ack_then_kill(&mut pub_loop, &mut parley, 100).await;

    let _parley = start(dir.path(), &ports, 100_000).await;
    // The publisher reconnects and finishes (resends, PUBRELs, the rest).
    let publishing = tokio::spawn(async move {
        let mut completed = 0;
        loop {
            match pub_loop.poll().await {
                Ok(Event::Incoming(Packet::PubComp(_))) => completed += 1,
                Ok(_) => {}
                Err(rumqttc::ConnectionError::ConnectionRefused(code)) => {
                    panic!("publisher refused: {code:?}")
                }
                Err(_) => {}
            }
            if completed >= TOTAL as usize {
                return;
            }
        }
    });
    let (_sub, mut sub_loop, present) = connect(ports.mqtt, "sub-q2", false).await;
    assert!(present, "the persistent session survived the kill");
    // The last message is published after every other one: once it is here,
    // everything before it that will ever arrive has.
    let got = receive_until(&mut sub_loop, "the last message", |got| {
        got.last() == Some(&(TOTAL - 1))
    })
    .await;
    assert_once_in_order(&got, &acked);
    let have: HashSet<u32> = got.iter().copied().collect();
    let missing: Vec<&u32> = acked.iter().filter(|i| !have.contains(*i)).collect();
    assert!(missing.is_empty(), "PUBRECed but lost: {missing:?}");
    publishing.abort();
}

/// A long offline queue comes back from the store in pages, in order, and
/// messages published while it is being read back follow it.
#[tokio::test]
async fn a_long_offline_queue_is_read_back_in_order_with_live_messages_behind_it() {
    let dir = tempfile::tempdir().unwrap();
    let ports = ports();
    let _parley = start(dir.path(), &ports, 1_000).await;
    sign_up(ports.http).await;
    persistent_subscriber(ports.mqtt, "sub-long", "devices/dev/long", QoS::AtLeastOnce).await;
    // Several pages' worth, queued while the subscriber is away.
    publish_acked(ports.mqtt, "devices/dev/long", 0..600).await;
    let (_client, mut eventloop, present) = connect(ports.mqtt, "sub-long", false).await;
    assert!(present);
    let mut got = Vec::new();
    let mut published_live = false;
    within("the queue and the live messages", async {
        while got.len() < 700 {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    got.push(index_of(&p.payload));
                    if !published_live {
                        // From a task: the publisher may be paused until this
                        // subscriber drains, so the subscriber keeps reading.
                        published_live = true;
                        tokio::spawn(publish_acked(ports.mqtt, "devices/dev/long", 600..700));
                    }
                }
                Ok(_) => {}
                Err(e) => panic!("subscriber connection failed: {e:?}"),
            }
        }
    })
    .await;
    assert_eq!(got, (0..700).collect::<Vec<u32>>());
}

#[tokio::test]
async fn subscriptions_and_queue_survive_a_restart_and_the_bound_still_applies() {
    let dir = tempfile::tempdir().unwrap();
    let ports = ports();
    let mut parley = start(dir.path(), &ports, 5).await;
    sign_up(ports.http).await;
    persistent_subscriber(
        ports.mqtt,
        "sub-bound",
        "devices/dev/bound",
        QoS::AtLeastOnce,
    )
    .await;

    // The session survives the restart with its subscription: publishes
    // made after it are queued for it.
    parley.start_kill().expect("SIGKILL");
    parley.wait().await.unwrap();
    let mut parley = start(dir.path(), &ports, 5).await;
    let (publisher, mut pub_loop, _) = connect(ports.mqtt, "pub-bound", true).await;
    for i in 0..20u32 {
        publisher
            .publish(
                "devices/dev/bound",
                QoS::AtLeastOnce,
                false,
                i.to_be_bytes().to_vec(),
            )
            .await
            .unwrap();
    }
    let mut acks = 0;
    within("20 PUBACKs", async {
        while acks < 20 {
            if let Event::Incoming(Packet::PubAck(_)) = pub_loop.poll().await.unwrap() {
                acks += 1;
            }
        }
    })
    .await;
    let dropped = reqwest::get(format!("http://127.0.0.1:{}/metrics", ports.http))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("parley_mqtt_dropped_total{qos=\"1+\"} ")
                .and_then(|v| v.trim().parse::<f64>().ok())
        });
    assert_eq!(
        dropped,
        Some(15.0),
        "the queue bound of 5 dropped 15, counted"
    );

    // Across another kill the five queued messages survive, and no more.
    parley.start_kill().expect("SIGKILL");
    parley.wait().await.unwrap();
    drop(pub_loop);
    let _parley = start(dir.path(), &ports, 5).await;
    let (_sub, mut sub_loop, present) = connect(ports.mqtt, "sub-bound", false).await;
    assert!(present, "session present after two restarts");
    let got = receive_until(&mut sub_loop, "the five queued messages", |got| {
        got.len() >= 5
    })
    .await;
    assert_eq!(got, vec![0, 1, 2, 3, 4], "the first five, in order");
    // A marker published now comes next: nothing else was queued.
    let (publisher, mut pub_loop, _) = connect(ports.mqtt, "pub-bound-2", true).await;
    publisher
        .publish(
            "devices/dev/bound",
            QoS::AtLeastOnce,
            false,
            999u32.to_be_bytes().to_vec(),
        )
        .await
        .unwrap();
    tokio::spawn(async move { while pub_loop.poll().await.is_ok() {} });
    let next = receive_until(&mut sub_loop, "the marker", |got| !got.is_empty()).await;
    assert_eq!(next, vec![999]);
}

/// Session expiry across a restart (MQTT 5): a session whose expiry passes
/// (as granted at CONNECT, or as changed at DISCONNECT)
/// while the node is down is deleted at start-up and counted; a session with
/// a long expiry is resumed.
#[tokio::test]
async fn a_session_that_expired_while_the_node_was_down_is_gone() {
    use rumqttc::v5::mqttbytes::v5::Packet as P5;
    use rumqttc::v5::mqttbytes::QoS as Q5;
    use rumqttc::v5::{AsyncClient as Client5, Event as Event5, MqttOptions as Options5};

    async fn connect5(
        port: u16,
        client_id: &str,
        expiry: u32,
    ) -> (Client5, rumqttc::v5::EventLoop, bool) {
        let mut o = Options5::new(client_id, "127.0.0.1", port);
        o.set_credentials(USER, PASSWORD);
        o.set_clean_start(false);
        o.set_session_expiry_interval(Some(expiry));
        let (client, mut eventloop) = Client5::new(o, 64);
        let present = within("CONNACK", async {
            loop {
                if let Event5::Incoming(P5::ConnAck(ack)) = eventloop.poll().await.unwrap() {
                    return ack.session_present;
                }
            }
        })
        .await;
        (client, eventloop, present)
    }

    let dir = tempfile::tempdir().unwrap();
    let ports = ports();
    let mut parley = start(dir.path(), &ports, 100).await;
    sign_up(ports.http).await;
    for (client_id, expiry) in [("short", 1u32), ("long", 3600)] {
        let (client, mut eventloop, present) = connect5(ports.mqtt, client_id, expiry).await;
        assert!(!present);
        client
            .subscribe("devices/dev/x", Q5::AtLeastOnce)
            .await
            .unwrap();
        within("SUBACK", async {
            loop {
                if let Event5::Incoming(P5::SubAck(_)) = eventloop.poll().await.unwrap() {
                    return;
                }
            }
        })
        .await;
        client.disconnect().await.unwrap();
        while eventloop.poll().await.is_ok() {}
    }
    // A third session asks for an hour, then shortens it to one second at
    // DISCONNECT (MQTT 5 allows changing a non-zero expiry there).
    {
        use common::raw::{packet, subscribe, varint, Connect, Props, Raw};
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], ports.mqtt));
        let mut connect = Connect::v5("shortened", USER, PASSWORD);
        connect.clean = false;
        connect.props = Props::new().u32(0x11, 3600);
        let mut raw = Raw::open_addr(addr, true).await;
        raw.send(&connect.bytes()).await;
        assert!(raw.recv().await.is_some(), "CONNACK");
        raw.send(&subscribe(true, 1, &[("devices/dev/x", 1)], &Props::new()))
            .await;
        assert!(raw.recv().await.is_some(), "SUBACK");
        let mut body = vec![0x00];
        varint(&mut body, 5);
        body.extend_from_slice(&[0x11, 0, 0, 0, 1]);
        raw.send(&packet(0xE0, &body)).await;
        assert!(
            raw.recv().await.is_none(),
            "the node closes after DISCONNECT"
        );
    }
    // Five QoS 1 messages queued for every session while they are offline.
    publish_acked(ports.mqtt, "devices/dev/x", 0..5).await;
    let disconnected = std::time::Instant::now();
    parley.start_kill().expect("SIGKILL");
    parley.wait().await.unwrap();
    // The short session's one second must pass while the node is down.
    tokio::time::sleep_until((disconnected + Duration::from_millis(1_500)).into()).await;

    let _parley = start(dir.path(), &ports, 100).await;
    let expired = reqwest::get(format!("http://127.0.0.1:{}/metrics", ports.http))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("parley_mqtt_sessions_expired_total ")
                .and_then(|v| v.trim().parse::<f64>().ok())
        });
    assert_eq!(
        expired,
        Some(2.0),
        "the start-up counted the expired sessions"
    );
    let (short, mut short_loop, present) = connect5(ports.mqtt, "short", 60).await;
    assert!(!present, "the expired session is gone");
    // ... and so is its queue: a new session under the same key, resumed
    // from the store, gets only what was queued for it, then live messages.
    short
        .subscribe("devices/dev/x", Q5::AtLeastOnce)
        .await
        .unwrap();
    within("SUBACK", async {
        loop {
            if let Event5::Incoming(P5::SubAck(_)) = short_loop.poll().await.unwrap() {
                return;
            }
        }
    })
    .await;
    short.disconnect().await.unwrap();
    while short_loop.poll().await.is_ok() {}
    publish_acked(ports.mqtt, "devices/dev/x", 99..100).await;
    let (short, mut short_loop, present) = connect5(ports.mqtt, "short", 60).await;
    assert!(present);
    let mut got = Vec::new();
    let mut published_live = false;
    within("the new session's messages", async {
        while got.last() != Some(&100) {
            if let Event5::Incoming(P5::Publish(p)) = short_loop.poll().await.unwrap() {
                got.push(index_of(&p.payload));
                if !published_live {
                    published_live = true;
                    publish_acked(ports.mqtt, "devices/dev/x", 100..101).await;
                }
            }
        }
    })
    .await;
    assert_eq!(got, vec![99, 100], "nothing of the expired session's queue");
    drop(short);
    let (_c, _l, present) = connect5(ports.mqtt, "shortened", 60).await;
    assert!(!present, "the session shortened at DISCONNECT is gone");
    let (_c, mut long_loop, present) = connect5(ports.mqtt, "long", 3600).await;
    assert!(present, "the long session is resumed");
    let mut got = Vec::new();
    within(
        "the long session's queue, read back from the store",
        async {
            while got.len() < 5 {
                if let Event5::Incoming(P5::Publish(p)) = long_loop.poll().await.unwrap() {
                    got.push(index_of(&p.payload));
                }
            }
        },
    )
    .await;
    assert_eq!(got, vec![0, 1, 2, 3, 4]);
}

/// Publishes the indexes in `range` on `topic` at QoS 1 from a clean
/// 3.1.1 session and returns once every one was PUBACKed.
async fn publish_acked(port: u16, topic: &str, range: std::ops::Range<u32>) {
    let (client, mut eventloop, _) = connect(port, "publisher", true).await;
    let count = range.len();
    for i in range {
        client
            .publish(topic, QoS::AtLeastOnce, false, i.to_be_bytes().to_vec())
            .await
            .unwrap();
    }
    let mut acked = 0;
    within("the PUBACKs", async {
        while acked < count {
            if let Event::Incoming(Packet::PubAck(_)) = eventloop.poll().await.unwrap() {
                acked += 1;
            }
        }
    })
    .await;
    client.disconnect().await.unwrap();
    while eventloop.poll().await.is_ok() {}
}
