//! The [`ClusterBus`] conformance suite: records (fan-outs of one payload to
//! several topics) arrive unchanged and in order per key, every node sees
//! every broadcast record, a record addressed to one node reaches that node
//! alone (in order per key, next to the broadcast ones), a fan-out as large as Parley's defaults allow arrives whole,
//! acknowledged progress survives a resubscribe, and garbage on the bus
//! never takes a node down.
//!
//! Every check takes a [`BusFixture`] (the bus under test, and a way to put
//! raw bytes on it) and panics with a message naming the broken promise. A
//! backend runs them all with
//! [`bus_conformance_tests!`](crate::bus_conformance_tests). Checks use fresh
//! random keys and node ids, and ignore records of keys they did not publish,
//! so they also hold on a bus that carries other traffic; a backend whose
//! consumers start at the end of the bus (Kafka) should still give each check
//! its own bus (topic) so that they do not slow each other down.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::unique_conversation_id;
use crate::{Audience, BusConsumer, BusRecord, ClusterBus, Delivery, StoreError};

/// What a backend's fixture expression hands to
/// [`bus_conformance_tests!`](crate::bus_conformance_tests).
#[async_trait]
pub trait BusFixture: Send + Sync {
    /// The bus under test.
    fn bus(&self) -> Arc<dyn ClusterBus>;

    /// Appends `value` to the bus under `key` as is, bypassing the bus's
    /// record encoding, as a buggy or foreign producer would. Panics if it
    /// cannot.
    async fn publish_raw(&self, key: &[u8], value: &[u8]);
}

/// How long any one record may take to arrive.
const ARRIVAL: Duration = Duration::from_secs(30);

/// A random node id, so checks (and runs) never share a node's progress.
fn unique_node_id() -> u16 {
    rand::random::<u16>() | 0x8000
}

/// The `seq`th test record of `key`, published by `origin`; its fields vary
/// with `seq` (1 to 4 topics) so that a backend that drops or mixes up a
/// field or a topic is caught.
fn record(key: &str, seq: u32, origin: u16) -> BusRecord {
    BusRecord {
        key: key.to_owned(),
        topics: (0..=seq % 4)
            .map(|i| format!("parley/test/{key}/{seq}/{i}"))
            .collect(),
        payload: format!("{key}#{seq}").into_bytes(),
        qos: (seq % 2) as u8,
        retain: seq.is_multiple_of(3),
        origin_node: origin,
        mqtt: None,
    }
}

/// The sequence number of a record made by [`record`].
fn seq_of(record: &BusRecord) -> u32 {
    let payload = std::str::from_utf8(&record.payload).expect("test payloads are UTF-8");
    payload
        .rsplit_once('#')
        .and_then(|(_, seq)| seq.parse().ok())
        .unwrap_or_else(|| panic!("not a test record: {payload:?}"))
}

/// Subscribes as `node_id`, which must succeed.
async fn subscribe(bus: &Arc<dyn ClusterBus>, node_id: u16) -> Box<dyn BusConsumer> {
    bus.subscribe(node_id)
        .await
        .unwrap_or_else(|e| panic!("subscribe as node {node_id} must succeed: {e}"))
}

/// Publishes `records`, which must succeed.
async fn publish(bus: &Arc<dyn ClusterBus>, records: Vec<BusRecord>) {
    bus.publish(records)
        .await
        .unwrap_or_else(|e| panic!("publish must succeed: {e}"));
}

/// The next delivery, which must come within [`ARRIVAL`] and without error.
async fn next(consumer: &mut Box<dyn BusConsumer>, waiting_for: &str) -> Delivery {
    match tokio::time::timeout(ARRIVAL, consumer.next()).await {
        Ok(Ok(delivery)) => delivery,
        Ok(Err(e)) => panic!("next must succeed while waiting for {waiting_for}: {e}"),
        Err(_) => panic!("{waiting_for} did not arrive within {ARRIVAL:?}"),
    }
}

/// Consumes until `count` records of `keys` arrived (skipping other keys) and
/// returns them in arrival order.
async fn collect(
    consumer: &mut Box<dyn BusConsumer>,
    keys: &[&str],
    count: usize,
) -> Vec<Delivery> {
    let mut got = Vec::with_capacity(count);
    while got.len() < count {
        let what = format!("record {} of {count} (keys {keys:?})", got.len() + 1);
        let delivery = next(consumer, &what).await;
        if keys.contains(&delivery.record.key.as_str()) {
            got.push(delivery);
        }
    }
    got
}

/// The sequence numbers received per key, in arrival order.
fn seqs_per_key(deliveries: &[Delivery]) -> HashMap<String, Vec<u32>> {
    let mut per_key: HashMap<String, Vec<u32>> = HashMap::new();
    for d in deliveries {
        per_key
            .entry(d.record.key.clone())
            .or_default()
            .push(seq_of(&d.record));
    }
    per_key
}

/// Publishing an empty batch succeeds.
pub async fn publishing_nothing_succeeds(fixture: &dyn BusFixture) {
    let bus = fixture.bus();
    bus.publish(Vec::new())
        .await
        .expect("publishing no records must succeed");
}

/// Records of one key, published in several calls, arrive once each, in
/// publish order, with every field intact.
pub async fn one_key_arrives_in_order(fixture: &dyn BusFixture) {
    let bus = fixture.bus();
    let node = unique_node_id();
    let mut consumer = subscribe(&bus, node).await;
    let key = unique_conversation_id("order");
    let sent: Vec<BusRecord> = (1..=20).map(|seq| record(&key, seq, node)).collect();
    for batch in sent.chunks(5) {
        publish(&bus, batch.to_vec()).await;
    }
    let got = collect(&mut consumer, &[&key], sent.len()).await;
    let got: Vec<BusRecord> = got.into_iter().map(|d| d.record).collect();
    assert_eq!(
        got, sent,
        "records of one key must arrive once each, in publish order, unchanged"
    );
}

/// Records of many keys, interleaved in one publish, all arrive, each key's
/// in order; positions within a partition increase.
pub async fn many_keys_all_arrive(fixture: &dyn BusFixture) {
    let bus = fixture.bus();
    let node = unique_node_id();
    let mut consumer = subscribe(&bus, node).await;
    let keys: Vec<String> = (0..8).map(|_| unique_conversation_id("many")).collect();
    let mut sent = Vec::new();
    for seq in 1..=5 {
        for key in &keys {
            sent.push(record(key, seq, node));
        }
    }
    publish(&bus, sent.clone()).await;
    let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let got = collect(&mut consumer, &key_refs, sent.len()).await;

    let per_key = seqs_per_key(&got);
    for key in &keys {
        assert_eq!(
            per_key.get(key).map(Vec::as_slice),
            Some(&[1, 2, 3, 4, 5][..]),
            "every record of key {key} must arrive once, in order"
        );
    }
    let mut last_offset: HashMap<i32, i64> = HashMap::new();
    for d in &got {
        if let Some(&before) = last_offset.get(&d.position.partition) {
            assert!(
                d.position.offset > before,
                "positions within partition {} must increase: {} after {before}",
                d.position.partition,
                d.position.offset
            );
        }
        last_offset.insert(d.position.partition, d.position.offset);
    }
}

/// Two nodes each receive every record, whichever node published it.
pub async fn every_node_sees_every_record(fixture: &dyn BusFixture) {
    let bus = fixture.bus();
    let first = unique_node_id();
    let second = first ^ 1;
    let mut consumers = [subscribe(&bus, first).await, subscribe(&bus, second).await];
    let keys: Vec<String> = (0..3).map(|_| unique_conversation_id("fan")).collect();
    let mut sent = Vec::new();
    for seq in 1..=4 {
        for (i, key) in keys.iter().enumerate() {
            let origin = if i % 2 == 0 { first } else { second };
            sent.push(record(key, seq, origin));
        }
    }
    publish(&bus, sent.clone()).await;
    let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    for (consumer, node) in consumers.iter_mut().zip([first, second]) {
        let got = collect(consumer, &key_refs, sent.len()).await;
        let per_key = seqs_per_key(&got);
        for key in &keys {
            assert_eq!(
                per_key.get(key).map(Vec::as_slice),
                Some(&[1, 2, 3, 4][..]),
                "node {node} must receive every record of key {key}, in order"
            );
        }
        for d in &got {
            let want = sent
                .iter()
                .find(|s| s.key == d.record.key && seq_of(s) == seq_of(&d.record))
                .expect("a received record was sent");
            assert_eq!(
                &d.record, want,
                "node {node} must receive records unchanged"
            );
        }
    }
}

/// Records addressed to one node ([`Audience::Node`]) reach that node alone,
/// in order per key and unchanged, while broadcast records published in
/// the same calls still reach every node; each delivery says which stream
/// it came from.
pub async fn a_record_for_one_node_reaches_that_node_alone(fixture: &dyn BusFixture) {
    let bus = fixture.bus();
    let (one, two, three) = {
        let base = unique_node_id() & !3;
        (base | 1, base | 2, base | 3)
    };
    let mut consumers = [
        subscribe(&bus, one).await,
        subscribe(&bus, two).await,
        subscribe(&bus, three).await,
    ];
    let (targeted, shared) = (
        unique_conversation_id("to-two"),
        unique_conversation_id("everyone"),
    );
    let mut sent = Vec::new();
    for seq in 1..=6 {
        sent.push((Audience::Node(two), record(&targeted, seq, one)));
        sent.push((Audience::Everyone, record(&shared, seq, one)));
    }
    for batch in sent.chunks(4) {
        bus.publish_to(batch.to_vec())
            .await
            .unwrap_or_else(|e| panic!("publish_to must succeed: {e}"));
    }
    // A broadcast marker after everything: once a node has it, it has
    // everything of the broadcast key; the targeted key is in node two's
    // own stream, which may still be on its way there.
    let marker = record(&shared, 7, one);
    publish(&bus, vec![marker.clone()]).await;

    for (consumer, node) in consumers.iter_mut().zip([one, two, three]) {
        let mut got: Vec<Delivery> = Vec::new();
        let wanted = if node == two { 13 } else { 7 };
        while got.len() < wanted {
            let delivery = next(consumer, &format!("node {node}'s records")).await;
            let key = delivery.record.key.as_str();
            if key == targeted && node != two {
                panic!(
                    "node {node} read record {} addressed to node {two}",
                    seq_of(&delivery.record)
                );
            }
            if key == targeted || key == shared {
                got.push(delivery);
            }
        }
        let per_key = seqs_per_key(&got);
        assert_eq!(
            per_key.get(&shared).map(Vec::as_slice),
            Some(&[1, 2, 3, 4, 5, 6, 7][..]),
            "node {node} must read every broadcast record, in order"
        );
        for d in &got {
            let want = if d.record.key == targeted {
                Audience::Node(two)
            } else {
                Audience::Everyone
            };
            assert_eq!(
                d.position.stream, want,
                "node {node}: a delivery names the stream it came from"
            );
            let sent_record = sent
                .iter()
                .map(|(_, r)| r)
                .chain([&marker])
                .find(|s| s.key == d.record.key && seq_of(s) == seq_of(&d.record))
                .expect("a received record was sent");
            assert_eq!(
                &d.record, sent_record,
                "node {node}: records arrive unchanged"
            );
        }
        if node == two {
            assert_eq!(
                per_key.get(&targeted).map(Vec::as_slice),
                Some(&[1, 2, 3, 4, 5, 6][..]),
                "node {two} must read every record addressed to it, in order"
            );
        }
    }
    // Nodes one and three read nothing of node two's key after the marker
    // either: one more broadcast record comes next, not a targeted one.
    let last = record(&shared, 8, one);
    publish(&bus, vec![last.clone()]).await;
    for (i, node) in [(0, one), (2, three)] {
        loop {
            let delivery = next(&mut consumers[i], "the last broadcast record").await;
            assert_ne!(
                delivery.record.key, targeted,
                "node {node} read a record addressed to node {two}"
            );
            if delivery.record == last {
                break;
            }
        }
    }
}

/// Most members a group has by default (`chat.max_group_size`).
const LARGEST_GROUP: usize = 1024;

/// The largest chat envelope a client may send by default
/// (`chat.max_message_bytes`), plus room for the fields the server adds.
const LARGEST_PAYLOAD: usize = 64 * 1024 + 1024;

/// A fan-out of a `payload_bytes` payload to `members` inboxes of
/// 32-character users (the longest user id), published between two small
/// records of its key, arrives whole: every topic once, in order, each
/// delivery of it with the payload and flags unchanged, after the first
/// record and before the second. Returns in how many deliveries it came
/// (one, unless the backend splits records past a size limit).
pub async fn fan_out_arrives_whole(
    fixture: &dyn BusFixture,
    members: usize,
    payload_bytes: usize,
) -> usize {
    let bus = fixture.bus();
    let node = unique_node_id();
    let mut consumer = subscribe(&bus, node).await;
    let key = unique_conversation_id("large");
    let large = BusRecord {
        key: key.clone(),
        topics: (0..members)
            .map(|i| format!("u/{}{i:06}/i", "m".repeat(26)))
            .collect(),
        payload: (0..payload_bytes).map(|i| (i % 251) as u8).collect(),
        qos: 1,
        retain: false,
        origin_node: node,
        mqtt: None,
    };
    let (before, after) = (record(&key, 1, node), record(&key, 2, node));
    publish(&bus, vec![before.clone(), large.clone(), after.clone()]).await;

    let first = collect(&mut consumer, &[&key], 1).await;
    assert_eq!(
        first[0].record, before,
        "the record published before the fan-out must arrive first"
    );
    let mut topics = Vec::with_capacity(members);
    let mut parts = 0;
    loop {
        let what = format!("the rest of the fan-out to {members} topics");
        let delivery = collect(&mut consumer, &[&key], 1).await.remove(0).record;
        if delivery == after {
            break;
        }
        let mut same = delivery.clone();
        same.topics = large.topics.clone();
        assert!(
            same == large,
            "{what}: a delivery of it must carry its payload, QoS, retain flag and \
             origin unchanged"
        );
        topics.extend(delivery.topics);
        parts += 1;
    }
    assert!(
        topics == large.topics,
        "a fan-out to {members} topics must arrive with every topic once, in order, \
         before the next record of its key (got {} topics in {parts} deliveries)",
        topics.len()
    );
    parts
}

/// A fan-out as large as Parley's defaults allow (a 1,024-member group, a
/// 64 KiB message) arrives whole; see [`fan_out_arrives_whole`].
pub async fn a_large_fan_out_arrives_whole(fixture: &dyn BusFixture) {
    fan_out_arrives_whole(fixture, LARGEST_GROUP, LARGEST_PAYLOAD).await;
}

/// After a node acks a record and subscribes again under the same node id,
/// it resumes right after that record: nothing it acked comes again, and
/// everything it did not ack (in that partition after the acked record, and
/// in other partitions) does.
pub async fn resubscribe_resumes_after_the_ack(fixture: &dyn BusFixture) {
    let bus = fixture.bus();
    let node = unique_node_id();
    let (acked_key, other_key) = (
        unique_conversation_id("ack"),
        unique_conversation_id("unacked"),
    );
    let keys = [acked_key.as_str(), other_key.as_str()];

    let mut consumer = subscribe(&bus, node).await;
    // `other_key` goes after `acked_key`, so even when both share a
    // partition, acking the third `acked_key` record does not cover it.
    let mut sent: Vec<BusRecord> = (1..=6).map(|seq| record(&acked_key, seq, node)).collect();
    sent.extend((1..=2).map(|seq| record(&other_key, seq, node)));
    // One record per call, so that the acked position is a batch boundary:
    // tansu, the Kafka-protocol broker of Parley's tests, skips the rest of a
    // batch when a fetch starts inside it (Apache Kafka does not).
    for one in &sent {
        publish(&bus, vec![one.clone()]).await;
    }
    let got = collect(&mut consumer, &keys, sent.len()).await;
    let third = got
        .iter()
        .find(|d| d.record.key == acked_key && seq_of(&d.record) == 3)
        .expect("the third record arrived");
    consumer
        .ack(third.position)
        .await
        .unwrap_or_else(|e| panic!("ack must succeed: {e}"));
    drop(consumer);

    let mut consumer = subscribe(&bus, node).await;
    // A marker published after resubscribing ends what we wait for.
    publish(&bus, vec![record(&acked_key, 7, node)]).await;
    let mut got = Vec::new();
    loop {
        let delivery = next(&mut consumer, "the records after the ack").await;
        if !keys.contains(&delivery.record.key.as_str()) {
            continue;
        }
        let is_marker = delivery.record.key == acked_key && seq_of(&delivery.record) == 7;
        got.push(delivery);
        if is_marker {
            break;
        }
    }
    // The marker shares a partition with the acked key's records, after
    // them; the other key's records may be in another partition, so they
    // may still be on their way.
    let mut per_key = seqs_per_key(&got);
    let mut other = per_key.remove(&other_key).unwrap_or_default();
    while other.len() < 2 {
        let delivery = next(&mut consumer, "the unacked records of the other key").await;
        if delivery.record.key == other_key {
            other.push(seq_of(&delivery.record));
        } else if delivery.record.key == acked_key {
            panic!(
                "record {} of the acked key arrived again after the marker",
                seq_of(&delivery.record)
            );
        }
    }
    assert_eq!(
        per_key.get(&acked_key).map(Vec::as_slice),
        Some(&[4, 5, 6, 7][..]),
        "after resubscribing, records up to the acked one must not come again and \
         the ones after it must"
    );
    assert_eq!(
        other,
        [1, 2],
        "records that were never acked must come again after resubscribing"
    );
}

/// Values that are not bus records (and a record without a UTF-8 key) are
/// skipped or reported as [`StoreError::Corrupt`]; they never panic, and the
/// consumer goes on to deliver the records after them.
pub async fn garbage_is_skipped_or_reported(fixture: &dyn BusFixture) {
    let bus = fixture.bus();
    let node = unique_node_id();
    let mut consumer = subscribe(&bus, node).await;
    let key = unique_conversation_id("garbage");
    let garbage: [(&[u8], Vec<u8>); 5] = [
        (key.as_bytes(), Vec::new()),
        (key.as_bytes(), vec![0xff; 16]),
        (key.as_bytes(), vec![1]),
        (key.as_bytes(), (0..=255).rev().collect()),
        (&[0xff, 0xfe, 0xfd], b"not a bus record".to_vec()),
    ];
    for (raw_key, value) in &garbage {
        fixture.publish_raw(raw_key, value).await;
    }
    publish(&bus, vec![record(&key, 1, node)]).await;

    let mut errors = 0;
    let first = loop {
        match tokio::time::timeout(ARRIVAL, consumer.next()).await {
            Err(_) => panic!("the record after the garbage did not arrive within {ARRIVAL:?}"),
            Ok(Ok(d)) if d.record.key == key => break d,
            Ok(Ok(_)) => {}
            Ok(Err(StoreError::Corrupt(_))) if errors < garbage.len() => errors += 1,
            Ok(Err(e)) => panic!(
                "garbage must be skipped or reported as Corrupt once per record, got: {e} \
                 (after {errors} errors)"
            ),
        }
    };
    assert_eq!(
        first.record,
        record(&key, 1, node),
        "the record after the garbage must arrive intact"
    );
    publish(&bus, vec![record(&key, 2, node)]).await;
    let second = collect(&mut consumer, &[&key], 1).await;
    assert_eq!(
        second[0].record,
        record(&key, 2, node),
        "the consumer must keep working after garbage"
    );
}

/// Expands to one `#[tokio::test]` per [`ClusterBus`] conformance check (see
/// [`conformance::bus`](crate::conformance::bus)).
///
/// The argument is an expression whose `.await` yields a
/// [`BusFixture`](crate::conformance::bus::BusFixture); it is evaluated afresh
/// for every check. The calling crate needs `tokio` (with the `macros` and
/// `rt-multi-thread` features) among its dev-dependencies.
#[macro_export]
macro_rules! bus_conformance_tests {
    (@checks ($fixture:expr) $($check:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let fixture = $fixture.await;
                $crate::conformance::bus::$check(&fixture).await;
            }
        )*
    };
    ($fixture:expr $(,)?) => {
        $crate::bus_conformance_tests!(@checks ($fixture)
            publishing_nothing_succeeds,
            one_key_arrives_in_order,
            many_keys_all_arrive,
            every_node_sees_every_record,
            a_record_for_one_node_reaches_that_node_alone,
            a_large_fan_out_arrives_whole,
            resubscribe_resumes_after_the_ack,
            garbage_is_skipped_or_reported,
        );
    };
}
