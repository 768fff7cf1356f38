//! The server-side publisher: one router link through which Parley itself
//! publishes (last wills now; chat deliveries, presence and answers later).

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::FutureExt;
use rumqttd::local::LinkTx;
use rumqttd::protocol::{Packet, Publish, PublishProperties};
use tracing::{error, warn};

use crate::router::{LinkRequest, RouterError, RouterHandle};

/// Publishes into the router on Parley's own behalf. Cheap to clone.
#[derive(Clone)]
pub struct ServerPublisher {
    tx: Arc<Mutex<LinkTx>>,
}

impl ServerPublisher {
    /// Opens the server link (see `chat_core::ids::server_client_id`) and drains its notifications in the background.
    pub async fn start(
        router: &RouterHandle,
        node_id: u16,
    ) -> Result<ServerPublisher, RouterError> {
        let mut link = router
            .connect(LinkRequest {
                client_id: chat_core::ids::server_client_id(node_id),
                clean_session: true,
            })
            .await?;
        tokio::spawn(async move {
            // The server link subscribes to nothing; drain whatever the router reports.
            loop {
                match link.rx.next().await {
                    Ok(Some(rumqttd::Notification::Unschedule)) => {
                        if link.rx.wake().await.is_err() {
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        warn!(error = %e, "server publisher link closed");
                        break;
                    }
                }
            }
        });
        Ok(ServerPublisher {
            tx: Arc::new(Mutex::new(link.tx)),
        })
    }

    /// Publishes `payload` on `topic`. Subscribers receive it at their subscription's QoS.
    pub fn publish(&self, topic: &str, payload: Bytes, retain: bool) {
        self.publish_many(std::iter::once((topic.to_owned(), payload, retain)));
    }

    /// Publishes `payload` on `topic` with MQTT 5 properties (e.g. correlation data).
    pub fn publish_with_properties(
        &self,
        topic: &str,
        payload: Bytes,
        properties: Option<PublishProperties>,
    ) {
        let publish = Publish::new(Bytes::from(topic.to_owned()), payload, false);
        self.send_all(std::iter::once(Packet::Publish(publish, properties)));
    }

    /// Publishes a batch with one wake-up of the router.
    pub fn publish_many(&self, items: impl IntoIterator<Item = (String, Bytes, bool)>) {
        self.send_all(items.into_iter().map(|(topic, payload, retain)| {
            Packet::Publish(Publish::new(Bytes::from(topic), payload, retain), None)
        }));
    }

    fn send_all(&self, packets: impl IntoIterator<Item = Packet>) {
        let mut tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        let mut packets = packets.into_iter().peekable();
        while let Some(packet) = packets.next() {
            if packets.peek().is_some() {
                tx.buffer().push_back(packet);
            } else {
                // `LinkTx::send` never awaits; it pushes and wakes the router synchronously.
                match tx.send(packet).now_or_never() {
                    Some(Ok(_)) => {}
                    Some(Err(e)) => error!(error = %e, "router rejected a server publish"),
                    None => error!("router link unexpectedly pending"),
                }
            }
        }
    }
}
