//! The router without sockets: delivered QoS, No Local, overlapping
//! subscriptions, shared groups, retained messages, session lifecycle
//! (take-over, clean start, expiry), wills and quotas.

mod support;

use std::time::Duration;

use bytes::BytesMut;
use parley_engine::message::{QoS, RetainHandling, SubscriptionOptions};
use parley_engine::router::{
    Attachment, ConnectRequest, Detach, Router, RouterConfig, SubscribeRefusal, Will,
    SERVER_NAMESPACE,
};
use parley_engine::session::ConnectionParams;
use rumqttc::v5::mqttbytes::v5::Publish;
use support::*;

fn connect(router: &Router, key: &str, ns: &str, clean: bool, expiry: u32) -> (Attachment, bool) {
    connect_with(router, key, ns, clean, expiry, v5(100), None)
}

fn connect_with(
    router: &Router,
    key: &str,
    ns: &str,
    clean: bool,
    expiry: u32,
    params: ConnectionParams,
    will: Option<Will>,
) -> (Attachment, bool) {
    let c = router.connect(
        ConnectRequest {
            key: key.into(),
            namespace: ns.into(),
            clean_start: clean,
            session_expiry_secs: expiry,
            params,
            will,
        },
        now(),
        &mut BytesMut::new(),
    );
    (c.attachment, c.session_present)
}

fn sub(qos: QoS) -> SubscriptionOptions {
    SubscriptionOptions {
        qos,
        ..SubscriptionOptions::default()
    }
}

fn subscribe(router: &Router, a: &Attachment, filter: &str, options: SubscriptionOptions) {
    let r = router
        .subscribe(a, &[(filter.to_owned(), options)], now())
        .unwrap();
    assert!(r[0].is_ok(), "{filter}: {:?}", r[0]);
}

fn received(router: &Router, a: &Attachment) -> Vec<Publish> {
    let mut out = BytesMut::new();
    router
        .with_session(a, |s| {
            while s.wants_transmit() {
                s.poll_transmit(now(), &mut out, |_| {});
            }
            // Acknowledge everything so later calls see new messages only.
        })
        .unwrap();
    let sent = publishes_v5(&decode_v5(&out));
    router
        .with_session(a, |s| {
            for p in &sent {
                s.on_puback(p.pkid);
            }
        })
        .unwrap();
    sent
}

fn publish(router: &Router, topic: &str, qos: QoS, origin: Option<&Attachment>) {
    let mut m = message(topic, "m", qos);
    m.origin = origin.map(|a| a.slot().id());
    router.publish(m, "pub", now()).unwrap();
}

#[test]
fn delivered_qos_is_the_minimum_of_publish_and_subscription() {
    let router = Router::new(RouterConfig::default());
    let (a, _) = connect(&router, "a", "u", true, 0);
    subscribe(&router, &a, "t", sub(QoS::ExactlyOnce));
    publish(&router, "t", QoS::AtMostOnce, None);
    publish(&router, "t", QoS::AtLeastOnce, None);
    let got: Vec<u8> = received(&router, &a).iter().map(|p| p.qos as u8).collect();
    assert_eq!(got, vec![0, 1]);
}

#[test]
fn no_local_skips_the_publishers_own_messages() {
    let router = Router::new(RouterConfig::default());
    let (a, _) = connect(&router, "a", "u", true, 0);
    let (b, _) = connect(&router, "b", "u", true, 0);
    let no_local = SubscriptionOptions {
        no_local: true,
        ..sub(QoS::AtLeastOnce)
    };
    subscribe(&router, &a, "chat", no_local);
    subscribe(&router, &b, "chat", no_local);
    publish(&router, "chat", QoS::AtLeastOnce, Some(&a));
    assert!(received(&router, &a).is_empty());
    assert_eq!(received(&router, &b).len(), 1);
}

#[test]
fn overlapping_subscriptions_deliver_once_with_every_identifier() {
    let router = Router::new(RouterConfig::default());
    let (a, _) = connect(&router, "a", "u", true, 0);
    subscribe(
        &router,
        &a,
        "home/#",
        SubscriptionOptions {
            subscription_id: Some(1),
            ..sub(QoS::AtMostOnce)
        },
    );
    subscribe(
        &router,
        &a,
        "home/+/temp",
        SubscriptionOptions {
            subscription_id: Some(2),
            ..sub(QoS::AtLeastOnce)
        },
    );
    publish(&router, "home/kitchen/temp", QoS::ExactlyOnce, None);
    let got = received(&router, &a);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].qos as u8, 1, "the highest granted QoS");
    let mut ids = got[0].properties.clone().unwrap().subscription_identifiers;
    ids.sort_unstable();
    assert_eq!(ids, vec![1, 2]);
}

#[test]
fn shared_groups_are_per_namespace_and_filter_and_take_turns() {
    let router = Router::new(RouterConfig::default());
    let (a1, _) = connect(&router, "a1", "alice", true, 0);
    let (a2, _) = connect(&router, "a2", "alice", true, 0);
    let (b1, _) = connect(&router, "b1", "bob", true, 0);
    for a in [&a1, &a2] {
        subscribe(&router, a, "$share/g/jobs/#", sub(QoS::AtLeastOnce));
    }
    subscribe(&router, &b1, "$share/g/jobs/#", sub(QoS::AtLeastOnce));
    for _ in 0..10 {
        publish(&router, "jobs/x", QoS::AtLeastOnce, None);
    }
    let (n1, n2) = (received(&router, &a1).len(), received(&router, &a2).len());
    assert_eq!(n1 + n2, 10, "alice's group gets each message once");
    assert!(n1 >= 4 && n2 >= 4, "members take turns: {n1}/{n2}");
    assert_eq!(
        received(&router, &b1).len(),
        10,
        "bob's same-named group is its own"
    );
}

#[test]
fn shared_group_prefers_a_connected_member() {
    let router = Router::new(RouterConfig::default());
    let (a1, _) = connect(&router, "a1", "alice", false, 3600);
    let (a2, _) = connect(&router, "a2", "alice", true, 0);
    subscribe(&router, &a1, "$share/g/jobs", sub(QoS::AtLeastOnce));
    subscribe(&router, &a2, "$share/g/jobs", sub(QoS::AtLeastOnce));
    router.detach(
        &a1,
        Detach {
            publish_will: false,
            session_expiry_secs: None,
        },
        now(),
    );
    for _ in 0..6 {
        publish(&router, "jobs", QoS::AtLeastOnce, None);
    }
    assert_eq!(received(&router, &a2).len(), 6);
}

#[test]
fn no_local_on_a_shared_subscription_is_refused() {
    let router = Router::new(RouterConfig::default());
    let (a, _) = connect(&router, "a", "u", true, 0);
    let r = router
        .subscribe(
            &a,
            &[(
                "$share/g/t".into(),
                SubscriptionOptions {
                    no_local: true,
                    ..sub(QoS::AtMostOnce)
                },
            )],
            now(),
        )
        .unwrap();
    assert_eq!(r[0], Err(SubscribeRefusal::NoLocalOnShared));
}

#[test]
fn wildcards_do_not_match_dollar_topics() {
    let router = Router::new(RouterConfig::default());
    let (a, _) = connect(&router, "a", "u", true, 0);
    subscribe(&router, &a, "#", sub(QoS::AtMostOnce));
    subscribe(&router, &a, "+/x", sub(QoS::AtMostOnce));
    publish(&router, "$SYS/x", QoS::AtMostOnce, None);
    publish(&router, "a/x", QoS::AtMostOnce, None);
    let got = received(&router, &a);
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].topic[..], b"a/x");
}

#[test]
fn retained_messages_follow_retain_handling() {
    let router = Router::new(RouterConfig::default());
    let mut m = message("state/door", "open", QoS::AtLeastOnce);
    m.retain = true;
    router.publish(m, "owner", now()).unwrap();
    let (a, _) = connect(&router, "a", "u", true, 0);
    subscribe(&router, &a, "state/+", sub(QoS::AtLeastOnce));
    let got = received(&router, &a);
    assert_eq!(got.len(), 1);
    assert!(
        got[0].retain,
        "a retained message sent at subscribe has RETAIN set"
    );
    // Re-subscribing with "only if new" sends nothing; "always" sends again.
    let only_new = SubscriptionOptions {
        retain_handling: RetainHandling::OnNewSubscribe,
        ..sub(QoS::AtLeastOnce)
    };
    subscribe(&router, &a, "state/+", only_new);
    assert!(received(&router, &a).is_empty());
    let never = SubscriptionOptions {
        retain_handling: RetainHandling::Never,
        ..sub(QoS::AtLeastOnce)
    };
    subscribe(&router, &a, "state/#", never);
    assert!(received(&router, &a).is_empty());
    // An empty retained publish clears it.
    let mut clear = message("state/door", "", QoS::AtMostOnce);
    clear.retain = true;
    router.publish(clear, "owner", now()).unwrap();
    assert_eq!(router.retained_count(), 0);
}

#[test]
fn retain_as_published_keeps_the_flag_on_live_messages() {
    let router = Router::new(RouterConfig::default());
    let (rap, _) = connect(&router, "rap", "u", true, 0);
    let (plain, _) = connect(&router, "plain", "u", true, 0);
    subscribe(
        &router,
        &rap,
        "x",
        SubscriptionOptions {
            retain_as_published: true,
            ..sub(QoS::AtMostOnce)
        },
    );
    subscribe(&router, &plain, "x", sub(QoS::AtMostOnce));
    let mut m = message("x", "1", QoS::AtMostOnce);
    m.retain = true;
    router.publish(m, "u", now()).unwrap();
    assert!(received(&router, &rap)[0].retain);
    assert!(!received(&router, &plain)[0].retain);
}

#[test]
fn server_publishes_are_exempt_from_retained_quotas() {
    let config = RouterConfig {
        retained: parley_engine::retained::RetainedLimits {
            max_messages_per_owner: 1,
            max_bytes_per_owner: 1 << 20,
        },
        ..RouterConfig::default()
    };
    let router = Router::new(config);
    for i in 0..3 {
        let mut m = message(&format!("p/{i}"), "online", QoS::AtLeastOnce);
        m.retain = true;
        router.publish(m, SERVER_NAMESPACE, now()).unwrap();
    }
    let mut m = message("u/1", "x", QoS::AtLeastOnce);
    m.retain = true;
    router.publish(m.clone(), "user", now()).unwrap();
    m.topic = "u/2".into();
    assert!(
        router.publish(m, "user", now()).is_err(),
        "the user's quota is 1"
    );
    assert_eq!(router.retained_count(), 4);
}

#[test]
fn persistent_session_queues_while_offline_and_resumes() {
    let router = Router::new(RouterConfig::default());
    let (a, present) = connect(&router, "dev", "u", true, 3600);
    assert!(!present);
    subscribe(&router, &a, "cmd", sub(QoS::AtLeastOnce));
    router.detach(
        &a,
        Detach {
            publish_will: true,
            session_expiry_secs: None,
        },
        now(),
    );
    for _ in 0..5 {
        publish(&router, "cmd", QoS::AtLeastOnce, None);
    }
    // Clean Start 1 with an expiry keeps the session after disconnect (MQTT 5).
    let (a, present) = connect(&router, "dev", "u", false, 3600);
    assert!(present);
    assert_eq!(received(&router, &a).len(), 5);
}

#[test]
fn clean_start_discards_the_old_session() {
    let router = Router::new(RouterConfig::default());
    let (a, _) = connect(&router, "dev", "u", false, 3600);
    subscribe(&router, &a, "cmd", sub(QoS::AtLeastOnce));
    router.detach(
        &a,
        Detach {
            publish_will: false,
            session_expiry_secs: None,
        },
        now(),
    );
    publish(&router, "cmd", QoS::AtLeastOnce, None);
    let (b, present) = connect(&router, "dev", "u", true, 3600);
    assert!(!present);
    assert!(received(&router, &b).is_empty());
    publish(&router, "cmd", QoS::AtLeastOnce, None);
    assert!(
        received(&router, &b).is_empty(),
        "its subscriptions are gone too"
    );
    assert_eq!(router.subscription_count(), 0);
}

#[test]
fn take_over_leaves_the_old_attachment_powerless() {
    let router = Router::new(RouterConfig::default());
    let (old, _) = connect(&router, "dev", "u", false, 3600);
    subscribe(&router, &old, "cmd", sub(QoS::AtLeastOnce));
    let (new, present) = connect(&router, "dev", "u", false, 3600);
    assert!(present);
    assert!(!old.is_current());
    assert!(new.is_current());
    assert!(router.with_session(&old, |_| ()).is_none());
    // The old connection's end must not end or detach its successor's session.
    router.detach(
        &old,
        Detach {
            publish_will: true,
            session_expiry_secs: Some(0),
        },
        now(),
    );
    publish(&router, "cmd", QoS::AtLeastOnce, None);
    assert_eq!(received(&router, &new).len(), 1);
}

#[test]
fn session_expiry_ends_the_session_on_tick() {
    let router = Router::new(RouterConfig::default());
    let (a, _) = connect(&router, "dev", "u", false, 10);
    subscribe(&router, &a, "cmd", sub(QoS::AtLeastOnce));
    let t0 = now();
    router.detach(
        &a,
        Detach {
            publish_will: false,
            session_expiry_secs: None,
        },
        t0,
    );
    assert_eq!(router.tick(t0 + Duration::from_secs(5)).sessions_expired, 0);
    assert_eq!(
        router.tick(t0 + Duration::from_secs(11)).sessions_expired,
        1
    );
    assert_eq!(router.session_count(), 0);
    assert_eq!(router.subscription_count(), 0);
    let (_, present) = connect(&router, "dev", "u", false, 10);
    assert!(!present, "an expired session is not present");
}

#[test]
fn disconnect_may_shorten_session_expiry() {
    let router = Router::new(RouterConfig::default());
    let (a, _) = connect(&router, "dev", "u", false, 3600);
    router.detach(
        &a,
        Detach {
            publish_will: false,
            session_expiry_secs: Some(0),
        },
        now(),
    );
    assert_eq!(router.session_count(), 0);
}

#[test]
fn session_expiry_is_capped_by_the_configuration() {
    let router = Router::new(RouterConfig {
        max_session_expiry_secs: 60,
        ..RouterConfig::default()
    });
    let c = router.connect(
        ConnectRequest {
            key: "k".into(),
            namespace: "u".into(),
            clean_start: false,
            session_expiry_secs: u32::MAX,
            params: v4(),
            will: None,
        },
        now(),
        &mut BytesMut::new(),
    );
    assert_eq!(c.session_expiry_secs, 60);
}

fn will(topic: &str, delay_secs: u32) -> Will {
    let mut m = message(topic, "gone", QoS::AtLeastOnce);
    m.properties.user_properties = vec![("why".into(), "lost".into())];
    Will {
        message: m,
        delay_secs,
    }
}

#[test]
fn will_is_published_on_abnormal_end_with_its_properties() {
    let router = Router::new(RouterConfig::default());
    let (watcher, _) = connect(&router, "w", "u", true, 0);
    subscribe(&router, &watcher, "status/#", sub(QoS::AtLeastOnce));
    let (dev, _) = connect_with(
        &router,
        "dev",
        "u",
        true,
        0,
        v5(10),
        Some(will("status/dev", 0)),
    );
    router.detach(
        &dev,
        Detach {
            publish_will: true,
            session_expiry_secs: None,
        },
        now(),
    );
    let got = received(&router, &watcher);
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].properties.clone().unwrap().user_properties,
        vec![("why".to_owned(), "lost".to_owned())]
    );
    let (dev, _) = connect_with(
        &router,
        "dev",
        "u",
        true,
        0,
        v5(10),
        Some(will("status/dev", 0)),
    );
    router.detach(
        &dev,
        Detach {
            publish_will: false,
            session_expiry_secs: None,
        },
        now(),
    );
    assert!(
        received(&router, &watcher).is_empty(),
        "a normal DISCONNECT drops the will"
    );
}

#[test]
fn delayed_will_waits_and_is_cancelled_by_a_resume() {
    let router = Router::new(RouterConfig::default());
    let (watcher, _) = connect(&router, "w", "u", true, 0);
    subscribe(&router, &watcher, "status/#", sub(QoS::AtLeastOnce));
    let t0 = now();
    let (dev, _) = connect_with(
        &router,
        "dev",
        "u",
        false,
        600,
        v5(10),
        Some(will("status/dev", 30)),
    );
    router.detach(
        &dev,
        Detach {
            publish_will: true,
            session_expiry_secs: None,
        },
        t0,
    );
    assert_eq!(router.tick(t0 + Duration::from_secs(10)).wills_published, 0);
    assert!(received(&router, &watcher).is_empty());
    assert_eq!(router.tick(t0 + Duration::from_secs(31)).wills_published, 1);
    assert_eq!(received(&router, &watcher).len(), 1);

    let (dev, _) = connect_with(
        &router,
        "dev",
        "u",
        false,
        600,
        v5(10),
        Some(will("status/dev", 30)),
    );
    router.detach(
        &dev,
        Detach {
            publish_will: true,
            session_expiry_secs: None,
        },
        t0,
    );
    let _ = connect(&router, "dev", "u", false, 600);
    assert_eq!(router.tick(t0 + Duration::from_secs(40)).wills_published, 0);
    assert!(
        received(&router, &watcher).is_empty(),
        "resumed in time: no will"
    );
}

#[test]
fn subscriptions_per_session_are_bounded() {
    let router = Router::new(RouterConfig {
        max_subscriptions_per_session: 2,
        ..RouterConfig::default()
    });
    let (a, _) = connect(&router, "a", "u", true, 0);
    let filters: Vec<(String, SubscriptionOptions)> = ["a", "b", "c", "a"]
        .iter()
        .map(|f| (f.to_string(), sub(QoS::AtMostOnce)))
        .collect();
    let r = router.subscribe(&a, &filters, now()).unwrap();
    assert!(r[0].is_ok() && r[1].is_ok());
    assert_eq!(r[2], Err(SubscribeRefusal::QuotaExceeded));
    assert!(
        r[3].is_ok(),
        "replacing an existing subscription is always allowed"
    );
    assert_eq!(
        router.unsubscribe(&a, &["a".into(), "zzz".into()]).unwrap(),
        vec![true, false]
    );
}

#[test]
fn a_full_subscriber_congests_then_drops_counting_losses() {
    let router = Router::new(RouterConfig {
        session: parley_engine::session::SessionLimits {
            max_queued_messages: 4,
            max_inflight: 1,
            ..Default::default()
        },
        ..RouterConfig::default()
    });
    let (slow, _) = connect(&router, "slow", "u", true, 0);
    subscribe(&router, &slow, "t", sub(QoS::AtLeastOnce));
    let mut congested = false;
    let mut lost = 0;
    for _ in 0..10 {
        let r = router
            .publish(message("t", "x", QoS::AtLeastOnce), "p", now())
            .unwrap();
        congested |= !r.congested.is_empty();
        lost += r.dropped.len();
    }
    assert!(congested, "the publisher is told to slow down first");
    assert_eq!(lost, 6);
    assert_eq!(
        router
            .counters()
            .dropped_qos12
            .load(std::sync::atomic::Ordering::Relaxed),
        6
    );
}

#[test]
fn a_subscriber_whose_pause_ran_out_no_longer_slows_publishers_until_it_drains() {
    let router = Router::new(RouterConfig {
        session: parley_engine::session::SessionLimits {
            max_queued_messages: 8,
            max_inflight: 1,
            ..Default::default()
        },
        ..RouterConfig::default()
    });
    let (slow, _) = connect(&router, "slow", "u", true, 0);
    subscribe(&router, &slow, "t", sub(QoS::AtLeastOnce));
    let publish = || {
        router
            .publish(message("t", "x", QoS::AtLeastOnce), "p", now())
            .unwrap()
    };
    let mut reports: Vec<_> = (0..6).map(|_| publish()).collect();
    let congested = reports.pop().unwrap().congested;
    assert_eq!(congested.len(), 1, "past half its bound: congested");
    // The publisher waited its whole pause; the subscriber did not read.
    congested[0].pause_expired();
    assert!(
        publish().congested.is_empty(),
        "not reported again while it stays full"
    );
    // It reads everything: drained, so the next backlog congests again.
    while !received(&router, &slow).is_empty() {}
    let again = (0..6).map(|_| publish()).any(|r| !r.congested.is_empty());
    assert!(again, "a drained subscriber slows publishers again");
}
