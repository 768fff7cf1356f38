//! What persistent sessions report to the journal, without a store: queued
//! QoS 1/2 deliveries, acks, PUBREC stages, incoming QoS 2 ids, descriptions
//! and ends; clean sessions report nothing; and a session restored from
//! what was reported resumes with the same packet ids.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use parley_engine::message::{QoS, SubscriptionOptions};
use parley_engine::persist::{
    pkid_of, Change, Journal, QueueSummary, RestoredDelivery, RestoredSession,
};
use parley_engine::router::{Attachment, ConnectRequest, Detach, Router, RouterConfig};
use parley_engine::session::{ConnectionParams, PageRequest, PubRecOutcome, SessionLimits};
use support::*;

/// A journal that keeps every change in memory.
#[derive(Default)]
struct Recorder {
    changes: Mutex<Vec<(String, Change)>>,
}

impl Journal for Recorder {
    fn record(&self, key: &Arc<str>, change: Change) -> u64 {
        let mut changes = self.changes.lock().unwrap();
        changes.push((key.to_string(), change));
        changes.len() as u64
    }
}

impl Recorder {
    fn take(&self) -> Vec<(String, Change)> {
        std::mem::take(&mut self.changes.lock().unwrap())
    }
}

fn router() -> (Router, Arc<Recorder>) {
    let router = Router::new(RouterConfig::default());
    let recorder = Arc::new(Recorder::default());
    router.set_journal(recorder.clone());
    (router, recorder)
}

fn connect(router: &Router, key: &str, expiry: u32, params: ConnectionParams) -> Attachment {
    router
        .connect(
            ConnectRequest {
                key: key.into(),
                namespace: "ns".into(),
                clean_start: false,
                session_expiry_secs: expiry,
                params,
                will: None,
            },
            now(),
            &mut BytesMut::new(),
        )
        .attachment
}

fn subscribe(router: &Router, a: &Attachment, filter: &str, qos: QoS) {
    let options = SubscriptionOptions {
        qos,
        subscription_id: Some(7),
        ..SubscriptionOptions::default()
    };
    let r = router
        .subscribe(a, &[(filter.to_owned(), options)], now())
        .unwrap();
    assert!(r[0].is_ok());
}

fn sent_pkids(router: &Router, a: &Attachment) -> Vec<u16> {
    sent_pkids_and_dup(router, a)
        .into_iter()
        .map(|(pkid, _)| pkid)
        .collect()
}

#[test]
fn clean_sessions_report_nothing() {
    let (router, recorder) = router();
    let a = connect(&router, "clean", 0, v5(100));
    subscribe(&router, &a, "t", QoS::AtLeastOnce);
    let report = router
        .publish(message("t", "x", QoS::AtLeastOnce), "ns", now())
        .unwrap();
    assert_eq!(report.delivered, 1);
    assert_eq!(report.ticket, 0, "nothing to wait for");
    assert_eq!(router.ticket(&a), 0);
    assert!(recorder.take().is_empty());
}

#[test]
fn a_persistent_session_reports_its_queue_acks_and_end() {
    let (router, recorder) = router();
    let a = connect(&router, "p", 60, v5(100));
    subscribe(&router, &a, "t/#", QoS::ExactlyOnce);
    let described: Vec<_> = recorder.take();
    let Some((key, Change::Described(image))) = described.last() else {
        panic!("the subscription is described: {described:?}");
    };
    assert_eq!(key, "p");
    assert_eq!(image.expiry_secs, 60);
    assert_eq!(image.subscriptions.len(), 1);
    assert_eq!(image.subscriptions[0].1.subscription_id, Some(7));

    // QoS 0 is not persisted; QoS 1 and 2 are, in order, with the publish's ticket.
    router
        .publish(message("t/0", "zero", QoS::AtMostOnce), "ns", now())
        .unwrap();
    let r1 = router
        .publish(message("t/1", "one", QoS::AtLeastOnce), "ns", now())
        .unwrap();
    let r2 = router
        .publish(message("t/2", "two", QoS::ExactlyOnce), "ns", now())
        .unwrap();
    assert!(r1.ticket > 0 && r2.ticket > r1.ticket);
    let queued: Vec<(u64, QoS)> = recorder
        .take()
        .into_iter()
        .map(|(_, c)| match c {
            Change::Queued { seq, delivery } => (seq, delivery.qos),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(queued, vec![(1, QoS::AtLeastOnce), (2, QoS::ExactlyOnce)]);

    // Sent with the packet ids of their sequence numbers.
    let pkids = sent_pkids(&router, &a);
    assert_eq!(pkids, vec![0, pkid_of(1), pkid_of(2)]);
    router
        .with_session(&a, |s| s.on_puback(pkid_of(1)))
        .unwrap();
    let outcome = router
        .with_session(&a, |s| s.on_pubrec(pkid_of(2), false))
        .unwrap();
    assert_eq!(outcome, PubRecOutcome::Released);
    // A repeated PUBREC is answered but not reported again.
    router
        .with_session(&a, |s| s.on_pubrec(pkid_of(2), false))
        .unwrap();
    router
        .with_session(&a, |s| s.on_pubcomp(pkid_of(2)))
        .unwrap();
    let acks: Vec<String> = recorder
        .take()
        .into_iter()
        .map(|(_, c)| format!("{c:?}"))
        .collect();
    assert_eq!(
        acks,
        vec![
            "Done { seq: 1 }".to_owned(),
            format!("Released {{ seq: 2, pkid: {} }}", pkid_of(2)),
            "Done { seq: 2 }".to_owned(),
        ]
    );
    assert!(
        router.ticket(&a) > r2.ticket,
        "the acks moved the session's ticket"
    );

    // Incoming QoS 2 ids.
    router
        .with_session(&a, |s| s.begin_qos2(9))
        .unwrap()
        .unwrap();
    assert!(router.with_session(&a, |s| s.on_pubrel(9)).unwrap());
    let incoming: Vec<String> = recorder
        .take()
        .into_iter()
        .map(|(_, c)| format!("{c:?}"))
        .collect();
    assert_eq!(
        incoming,
        vec![
            "Incoming { pkid: 9, pending: true }",
            "Incoming { pkid: 9, pending: false }"
        ]
    );

    // A DISCONNECT that sets the expiry to 0 ends the session: reported.
    router.detach(
        &a,
        Detach {
            publish_will: false,
            session_expiry_secs: Some(0),
        },
        now(),
    );
    let end = recorder.take();
    assert!(matches!(end.last(), Some((_, Change::Ended))), "{end:?}");
}

#[test]
fn a_disconnect_reports_the_new_expiry_and_the_detachment() {
    let (router, recorder) = router();
    let a = connect(&router, "d", 60, v5(100));
    recorder.take();
    router.detach(
        &a,
        Detach {
            publish_will: false,
            session_expiry_secs: Some(5),
        },
        now(),
    );
    let changes = recorder.take();
    let Some((_, Change::Described(image))) = changes.last() else {
        panic!("described at detach: {changes:?}");
    };
    assert!(image.detached);
    assert_eq!(image.expiry_secs, 5);
}

#[test]
fn a_restored_session_resumes_with_its_subscriptions_queue_and_packet_ids() {
    let (router, recorder) = router();
    let a = connect(&router, "r", 60, v5(100));
    subscribe(&router, &a, "t", QoS::ExactlyOnce);
    for i in 0..3 {
        router
            .publish(
                message("t", &format!("m{i}"), QoS::ExactlyOnce),
                "ns",
                now(),
            )
            .unwrap();
    }
    let pkids = sent_pkids(&router, &a);
    router
        .with_session(&a, |s| s.on_pubrec(pkids[0], false))
        .unwrap();
    router
        .with_session(&a, |s| s.begin_qos2(5))
        .unwrap()
        .unwrap();
    let changes = recorder.take();

    // Replay what was reported into a fresh router, as a store would.
    let mut image = None;
    let mut queued = Vec::new();
    let mut released = Vec::new();
    let mut incoming = Vec::new();
    for (_, change) in changes {
        match change {
            Change::Described(i) => image = Some(*i),
            Change::Queued { seq, delivery } => queued.push((seq, delivery)),
            Change::Released { seq, .. } => released.push(seq),
            Change::Incoming {
                pkid,
                pending: true,
            } => incoming.push(pkid),
            other => panic!("unexpected {other:?}"),
        }
    }
    let page: Vec<RestoredDelivery> = queued
        .into_iter()
        .map(|(seq, delivery)| RestoredDelivery {
            seq,
            released: released.contains(&seq),
            delivery,
        })
        .collect();
    let waiting: Vec<&RestoredDelivery> = page.iter().filter(|d| !d.released).collect();
    let (fresh, fresh_recorder) = router_with_restored(RestoredSession {
        key: "r".into(),
        image: image.expect("described"),
        detached_for: Duration::ZERO,
        queue: QueueSummary {
            first_seq: waiting[0].seq,
            next_seq: page.last().map_or(0, |d| d.seq + 1),
            messages: waiting.len(),
            bytes: waiting.iter().map(|d| d.delivery.message.size()).sum(),
        },
        released: released.clone(),
        incoming_qos2: incoming,
    });
    assert_eq!(fresh.session_count(), 1);
    assert_eq!(fresh.subscription_count(), 1);
    let c = fresh.connect(
        ConnectRequest {
            key: "r".into(),
            namespace: "ns".into(),
            clean_start: false,
            session_expiry_secs: 60,
            params: v5(100),
            will: None,
        },
        now(),
        &mut BytesMut::new(),
    );
    assert!(c.session_present);
    // The queue is read back from the store; the released one is only
    // PUBRELed (on attach, and skipped in the page); the others are sent
    // again with the same packet ids.
    assert!(sent_pkids(&fresh, &c.attachment).is_empty());
    let request = fresh
        .with_session(&c.attachment, |s| s.take_page_request())
        .unwrap()
        .expect("a page is wanted");
    fresh
        .with_session(&c.attachment, |s| s.page_in(request, page))
        .unwrap();
    assert_eq!(sent_pkids(&fresh, &c.attachment), pkids[1..].to_vec());
    assert!(!fresh.with_session(&c.attachment, |s| s.is_paged()).unwrap());
    assert!(fresh
        .with_session(&c.attachment, |s| s.is_qos2_pending(5))
        .unwrap());
    assert_eq!(
        fresh.with_session(&c.attachment, |s| s.on_pubcomp(pkids[0])),
        Some(true),
        "the released delivery awaits PUBCOMP"
    );
    // New messages continue the sequence.
    fresh
        .publish(message("t", "m3", QoS::ExactlyOnce), "ns", now())
        .unwrap();
    let after: Vec<u64> = fresh_recorder
        .take()
        .into_iter()
        .filter_map(|(_, c)| match c {
            Change::Queued { seq, .. } => Some(seq),
            _ => None,
        })
        .collect();
    assert_eq!(after, vec![4]);
}

#[test]
fn a_session_restored_past_its_expiry_ends_at_the_next_tick() {
    let (fresh, recorder) = router_with_restored(RestoredSession {
        key: "old".into(),
        image: parley_engine::persist::SessionImage {
            namespace: "ns".into(),
            expiry_secs: 10,
            detached: true,
            subscriptions: vec![("t".into(), SubscriptionOptions::default())],
            will: None,
        },
        detached_for: Duration::from_secs(11),
        queue: QueueSummary::default(),
        released: Vec::new(),
        incoming_qos2: Vec::new(),
    });
    assert_eq!(fresh.session_count(), 1);
    let report = fresh.tick(now());
    assert_eq!(report.sessions_expired, 1);
    assert_eq!(fresh.session_count(), 0);
    assert_eq!(fresh.subscription_count(), 0);
    assert!(matches!(recorder.take().last(), Some((_, Change::Ended))));
}

fn router_with_restored(session: RestoredSession) -> (Router, Arc<Recorder>) {
    let (router, recorder) = router();
    assert!(router.restore(session, now()));
    (router, recorder)
}

fn queued_changes(changes: Vec<(String, Change)>) -> Vec<(u64, parley_engine::session::Delivery)> {
    changes
        .into_iter()
        .filter_map(|(_, c)| match c {
            Change::Queued { seq, delivery } => Some((seq, delivery)),
            _ => None,
        })
        .collect()
}

fn as_page(queued: &[(u64, parley_engine::session::Delivery)]) -> Vec<RestoredDelivery> {
    queued
        .iter()
        .map(|(seq, delivery)| RestoredDelivery {
            seq: *seq,
            released: false,
            delivery: delivery.clone(),
        })
        .collect()
}

fn resume(router: &Router, key: &str) -> Attachment {
    let c = router.connect(
        ConnectRequest {
            key: key.into(),
            namespace: "ns".into(),
            clean_start: false,
            session_expiry_secs: 60,
            params: v5(100),
            will: None,
        },
        now(),
        &mut BytesMut::new(),
    );
    assert!(c.session_present);
    c.attachment
}

fn take_page(router: &Router, a: &Attachment) -> PageRequest {
    router
        .with_session(a, |s| s.take_page_request())
        .unwrap()
        .expect("a page is wanted")
}

#[test]
fn a_detached_persistent_session_keeps_its_queue_in_the_store_only() {
    let (router, recorder) = router();
    let a = connect(&router, "idle", 60, v5(100));
    subscribe(&router, &a, "t", QoS::AtLeastOnce);
    router
        .publish(message("t", "before", QoS::AtLeastOnce), "ns", now())
        .unwrap();
    router
        .publish(message("t", "q0", QoS::AtMostOnce), "ns", now())
        .unwrap();
    router.detach(
        &a,
        Detach {
            publish_will: false,
            session_expiry_secs: None,
        },
        now(),
    );
    let dropped_at_detach = router
        .counters()
        .dropped_qos0
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        dropped_at_detach, 1,
        "the queued QoS 0 message is dropped at detach"
    );
    // While offline: QoS 1 goes to the journal only, QoS 0 is dropped.
    for i in 0..3 {
        let r = router
            .publish(
                message("t", &format!("m{i}"), QoS::AtLeastOnce),
                "ns",
                now(),
            )
            .unwrap();
        assert_eq!(r.delivered, 1);
        assert!(r.ticket > 0, "the publisher waits for the store");
    }
    let r = router
        .publish(message("t", "late-q0", QoS::AtMostOnce), "ns", now())
        .unwrap();
    assert_eq!(r.dropped.len(), 1);
    let queued = queued_changes(recorder.take());
    assert_eq!(
        queued.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );

    // Resumed: nothing is in memory until the page is read back.
    let b = resume(&router, "idle");
    assert!(sent_pkids(&router, &b).is_empty());
    let request = take_page(&router, &b);
    assert_eq!((request.from_seq, request.upto_seq), (1, 5));
    assert!(
        router
            .with_session(&b, |s| s.take_page_request())
            .unwrap()
            .is_none(),
        "one page at a time"
    );
    router
        .with_session(&b, |s| s.page_in(request, as_page(&queued)))
        .unwrap();
    assert_eq!(
        sent_pkids(&router, &b),
        (1..=4).map(pkid_of).collect::<Vec<_>>(),
        "in order, with the packet ids of their sequence numbers"
    );
    assert!(
        !router.with_session(&b, |s| s.is_paged()).unwrap(),
        "back in memory"
    );
}

#[test]
fn messages_queued_while_a_page_is_read_follow_it_from_the_store() {
    let (router, recorder) = router();
    let a = connect(&router, "busy", 60, v5(100));
    subscribe(&router, &a, "t", QoS::AtLeastOnce);
    router.detach(
        &a,
        Detach {
            publish_will: false,
            session_expiry_secs: None,
        },
        now(),
    );
    router
        .publish(message("t", "m1", QoS::AtLeastOnce), "ns", now())
        .unwrap();
    let b = resume(&router, "busy");
    recorder.take();
    let request = take_page(&router, &b);
    // Arrives while the page is being read: the store has it, not memory.
    router
        .publish(message("t", "m2", QoS::AtLeastOnce), "ns", now())
        .unwrap();
    let later = queued_changes(recorder.take());
    assert_eq!(later.iter().map(|(s, _)| *s).collect::<Vec<_>>(), vec![2]);
    let first = RestoredDelivery {
        seq: 1,
        released: false,
        delivery: later[0].1.clone(),
    };
    router
        .with_session(&b, |s| s.page_in(request, vec![first]))
        .unwrap();
    assert_eq!(sent_pkids(&router, &b), vec![pkid_of(1)]);
    let next = take_page(&router, &b);
    assert_eq!(next.from_seq, 2);
    router
        .with_session(&b, |s| s.page_in(next, as_page(&later)))
        .unwrap();
    assert_eq!(sent_pkids(&router, &b), vec![pkid_of(2)]);
    assert!(!router.with_session(&b, |s| s.is_paged()).unwrap());
}

#[test]
fn the_queue_bound_counts_what_is_in_the_store() {
    let config = RouterConfig {
        session: SessionLimits {
            max_queued_messages: 2,
            ..SessionLimits::default()
        },
        ..RouterConfig::default()
    };
    let router = Router::new(config);
    let recorder = Arc::new(Recorder::default());
    router.set_journal(recorder.clone());
    let a = connect(&router, "bounded", 60, v5(100));
    subscribe(&router, &a, "t", QoS::AtLeastOnce);
    router.detach(
        &a,
        Detach {
            publish_will: false,
            session_expiry_secs: None,
        },
        now(),
    );
    let mut refused = 0;
    for i in 0..5 {
        let r = router
            .publish(
                message("t", &format!("m{i}"), QoS::AtLeastOnce),
                "ns",
                now(),
            )
            .unwrap();
        refused += r
            .dropped
            .iter()
            .filter(|(_, q)| *q == QoS::AtLeastOnce)
            .count();
    }
    assert_eq!(refused, 3);
    assert_eq!(
        router
            .counters()
            .dropped_qos12
            .load(std::sync::atomic::Ordering::Relaxed),
        3
    );
    assert_eq!(router.sessions_with_losses().len(), 1, "counted per client");
    assert_eq!(queued_changes(recorder.take()).len(), 2, "only two stored");
}

/// (packet id, DUP) of each PUBLISH the session writes now.
fn sent_pkids_and_dup(router: &Router, a: &Attachment) -> Vec<(u16, bool)> {
    let mut out = BytesMut::new();
    router
        .with_session(a, |s| {
            while s.wants_transmit() {
                s.poll_transmit(now(), &mut out, |_| {});
            }
        })
        .unwrap();
    publishes_v5(&decode_v5(&out))
        .iter()
        .map(|p| (p.pkid, p.dup))
        .collect()
}

#[test]
fn a_delivery_sent_before_the_session_left_memory_comes_back_with_dup() {
    let (router, recorder) = router();
    let a = connect(&router, "dup", 60, v5(100));
    subscribe(&router, &a, "t", QoS::AtLeastOnce);
    router
        .publish(message("t", "sent", QoS::AtLeastOnce), "ns", now())
        .unwrap();
    assert_eq!(sent_pkids_and_dup(&router, &a), vec![(pkid_of(1), false)]);
    router.detach(
        &a,
        Detach {
            publish_will: false,
            session_expiry_secs: None,
        },
        now(),
    );
    router
        .publish(message("t", "queued", QoS::AtLeastOnce), "ns", now())
        .unwrap();
    let queued = queued_changes(recorder.take());
    let b = resume(&router, "dup");
    let request = take_page(&router, &b);
    router
        .with_session(&b, |s| s.page_in(request, as_page(&queued)))
        .unwrap();
    assert_eq!(
        sent_pkids_and_dup(&router, &b),
        vec![(pkid_of(1), true), (pkid_of(2), false)],
        "the unacknowledged one again with DUP, the one never sent without"
    );
}

#[test]
fn a_released_session_leaves_the_router_without_ending_in_the_journal() {
    let (router, recorder) = router();
    let a = connect(&router, "moving", 60, v5(100));
    subscribe(&router, &a, "t", QoS::AtLeastOnce);
    let r = router
        .publish(message("t", "one", QoS::AtLeastOnce), "ns", now())
        .unwrap();
    recorder.take();
    let ticket = router.release("moving").expect("the session was there");
    assert!(
        ticket >= r.ticket,
        "its last change: {ticket} < {}",
        r.ticket
    );
    assert!(
        recorder.take().is_empty(),
        "no end, no delete: the store keeps the session for its next node"
    );
    assert!(!a.is_current(), "the attached connection is taken over");
    assert!(router.session_stats("moving").is_none());
    assert_eq!(router.subscription_count(), 0);
    let after = router
        .publish(message("t", "two", QoS::AtLeastOnce), "ns", now())
        .unwrap();
    assert_eq!(after.delivered, 0, "nothing routes to it any more");
    assert!(recorder.take().is_empty());
    assert_eq!(router.release("moving"), None, "only once");
}
