//! MQTT over WebSocket and over TLS (certificate generated at test time).

mod common;

use std::sync::Arc;

use common::*;
use rumqttc::{QoS, TlsConfiguration, Transport};

fn rules(config: &mut parley::config::Config) {
    config.acl = vec![chat_core::rules::AclRuleConfig {
        access: chat_core::rules::Access::ReadWrite,
        filter: "devices/%u/#".into(),
        users: Vec::new(),
    }];
}

#[tokio::test]
async fn websocket_client_exchanges_messages() {
    let node = start_node(rules).await;
    sign_up(&node, "web", "web password").await;
    let ws = node.node.addrs.mqtt_ws.expect("ws listener");
    let mut o = rumqttc::MqttOptions::new("browser", format!("ws://{ws}/mqtt"), ws.port());
    o.set_transport(Transport::Ws);
    o.set_credentials("web", "web password");
    let (client, mut el) = v4::connect(o).await;
    client
        .subscribe("devices/web/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    v4::suback(&mut el).await;
    client
        .publish("devices/web/x", QoS::AtLeastOnce, false, "over ws")
        .await
        .unwrap();
    let p = v4::next_publish(&mut el).await;
    assert_eq!(&p.payload[..], b"over ws");
}

#[tokio::test]
async fn websocket_on_another_path_is_refused() {
    let node = start_node(rules).await;
    let ws = node.node.addrs.mqtt_ws.expect("ws listener");
    let mut o = rumqttc::MqttOptions::new("browser", format!("ws://{ws}/elsewhere"), ws.port());
    o.set_transport(Transport::Ws);
    o.set_credentials("web", "web password");
    let (_c, mut el) = rumqttc::AsyncClient::new(o, 10);
    assert!(
        v4::connack(&mut el).await.is_err(),
        "handshake on a wrong path must fail"
    );
}

#[tokio::test]
async fn tls_client_connects_with_generated_certificate() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();

    let node = start_node(|c| {
        rules(c);
        c.mqtt.tls = Some(parley::config::TlsConfig {
            listen: ([127, 0, 0, 1], 0).into(),
            cert: cert_path.clone(),
            key: key_path.clone(),
        });
    })
    .await;
    sign_up(&node, "secure", "secure password").await;

    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let tls = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let port = node.node.addrs.mqtt_tls.expect("tls listener").port();
    let mut o = rumqttc::MqttOptions::new("secure-client", "localhost", port);
    o.set_transport(Transport::Tls(TlsConfiguration::Rustls(Arc::new(tls))));
    o.set_credentials("secure", "secure password");
    let (client, mut el) = v4::connect(o).await;
    client
        .subscribe("devices/secure/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    v4::suback(&mut el).await;
    client
        .publish("devices/secure/x", QoS::AtLeastOnce, false, "over tls")
        .await
        .unwrap();
    assert_eq!(&v4::next_publish(&mut el).await.payload[..], b"over tls");
}
