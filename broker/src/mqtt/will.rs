//! Last-will handling. rumqttd's local links cannot ask the router to fire a
//! will, so Parley keeps each client's will and publishes it itself through
//! the server-side publisher when the connection ends without a normal
//! DISCONNECT, after the MQTT 5 will delay. A client that resumes its session
//! within the delay cancels the pending will.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::task::JoinHandle;

use super::publisher::ServerPublisher;

/// A will as accepted at CONNECT (topic already validated and authorized).
#[derive(Debug, Clone)]
pub struct Will {
    /// Topic to publish on.
    pub topic: String,
    /// Payload.
    pub payload: Bytes,
    /// Retain flag.
    pub retain: bool,
    /// MQTT 5 will delay (already capped by the session expiry).
    pub delay: Duration,
}

/// Wills waiting out their delay, by router client id.
#[derive(Clone, Default)]
pub struct WillRegistry {
    pending: Arc<Mutex<HashMap<String, JoinHandle<()>>>>,
}

impl WillRegistry {
    /// Cancels the pending will of `router_client_id` (its session was resumed).
    pub fn cancel(&self, router_client_id: &str) {
        if let Some(task) = self.lock().remove(router_client_id) {
            task.abort();
        }
    }

    /// Publishes `will` now, or after its delay unless cancelled first.
    pub fn fire(&self, router_client_id: String, will: Will, publisher: ServerPublisher) {
        if will.delay.is_zero() {
            publisher.publish(&will.topic, will.payload, will.retain);
            return;
        }
        let registry = self.clone();
        let key = router_client_id.clone();
        let task = tokio::spawn(async move {
            tokio::time::sleep(will.delay).await;
            publisher.publish(&will.topic, will.payload, will.retain);
            registry.lock().remove(&key);
        });
        if let Some(previous) = self.lock().insert(router_client_id, task) {
            previous.abort();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, JoinHandle<()>>> {
        // A panic while holding this lock cannot leave the map inconsistent.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}
