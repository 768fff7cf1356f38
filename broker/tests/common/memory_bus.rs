//! An in-memory cluster bus for tests that run several nodes in one
//! process: one global log, records addressed to one node read by that node
//! only, every record carried through the Kafka record codec (so what
//! travels is what Kafka would carry), every read counted, and a switch
//! that makes every publish fail (a bus that is down).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use persistence::kafka::codec;
use persistence::{
    Audience, BusConsumer, BusPosition, BusRecord, ClusterBus, Delivery, StoreError,
};
use tokio::sync::Notify;

/// The log of a [`SharedBus`]: one global order, each record with the
/// nodes it is for.
#[derive(Default)]
pub struct MemoryBus {
    /// Every record published, in order, with its audience.
    pub log: Mutex<Vec<(Audience, BusRecord)>>,
    grew: Notify,
    /// The nodes that read each log index.
    pub reads: Mutex<BTreeMap<usize, Vec<u16>>>,
    /// While set, every publish is refused.
    pub refuse: AtomicBool,
}

/// An in-memory [`ClusterBus`] shared by several nodes: every subscriber
/// reads, from where it subscribed, the broadcast records and those
/// addressed to it, and never sees the others.
#[derive(Clone, Default)]
pub struct SharedBus(pub Arc<MemoryBus>);

impl SharedBus {
    /// Records published so far.
    pub fn len(&self) -> usize {
        self.0.log.lock().unwrap().len()
    }
}

#[async_trait]
impl ClusterBus for SharedBus {
    async fn publish_to(&self, records: Vec<(Audience, BusRecord)>) -> Result<(), StoreError> {
        if self.0.refuse.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("the test bus is down".into()));
        }
        let mut decoded = Vec::with_capacity(records.len());
        for (audience, record) in records {
            let value = codec::encode_value(&record).expect("encodable");
            let record = codec::decode(Some(record.key.as_bytes()), Some(&value)).expect("decodes");
            decoded.push((audience, record));
        }
        self.0.log.lock().unwrap().extend(decoded);
        self.0.grew.notify_waiters();
        Ok(())
    }

    async fn subscribe(&self, node_id: u16) -> Result<Box<dyn BusConsumer>, StoreError> {
        let next = self.len();
        Ok(Box::new(MemoryConsumer {
            bus: self.0.clone(),
            node_id,
            next,
        }))
    }
}

/// One node's reading position in a [`MemoryBus`].
struct MemoryConsumer {
    bus: Arc<MemoryBus>,
    node_id: u16,
    next: usize,
}

#[async_trait]
impl BusConsumer for MemoryConsumer {
    async fn next(&mut self) -> Result<Delivery, StoreError> {
        loop {
            let grew = self.bus.grew.notified();
            tokio::pin!(grew);
            grew.as_mut().enable();
            loop {
                let Some((audience, record)) = self.bus.log.lock().unwrap().get(self.next).cloned()
                else {
                    break;
                };
                let index = self.next;
                self.next += 1;
                if matches!(audience, Audience::Node(node) if node != self.node_id) {
                    continue;
                }
                self.bus
                    .reads
                    .lock()
                    .unwrap()
                    .entry(index)
                    .or_default()
                    .push(self.node_id);
                let position = BusPosition {
                    stream: audience,
                    partition: 0,
                    offset: index as i64,
                };
                return Ok(Delivery { record, position });
            }
            grew.await;
        }
    }

    async fn ack(&mut self, _position: BusPosition) -> Result<(), StoreError> {
        Ok(())
    }
}
