//! Server-assigned message ids: 64-bit, unique across a cluster and roughly
//! time-ordered. Layout (most significant first): 41 bits of milliseconds
//! since 2025-01-01T00:00:00Z, 10 bits of node id, 12 bits of sequence within
//! the millisecond (4096 ids per ms per node). Pure: the caller passes the clock.

/// Milliseconds since the Unix epoch of Parley's id epoch (2025-01-01T00:00:00Z).
pub const ID_EPOCH_MS: i64 = 1_735_689_600_000;
/// Largest node id that fits in the id (10 bits).
pub const MAX_NODE_ID: u16 = 1023;

/// Generates ids for one node; not thread-safe by itself (wrap it in a lock).
#[derive(Debug, Clone)]
pub struct MessageIdGenerator {
    node: u64,
    last_ms: i64,
    sequence: u64,
}

impl MessageIdGenerator {
    /// A generator for `node` (`node <= MAX_NODE_ID`, else `None`).
    pub fn new(node: u16) -> Option<MessageIdGenerator> {
        (node <= MAX_NODE_ID).then_some(MessageIdGenerator {
            node: node.into(),
            last_ms: 0,
            sequence: 0,
        })
    }

    /// The next id at wall-clock time `now_ms`. Never repeats and never goes
    /// backwards, even if the clock does: ids then borrow from the future.
    pub fn next(&mut self, now_ms: i64) -> u64 {
        let now = (now_ms - ID_EPOCH_MS).max(0);
        if now > self.last_ms {
            self.last_ms = now;
            self.sequence = 0;
        } else {
            self.sequence += 1;
            if self.sequence > 0xfff {
                self.last_ms += 1;
                self.sequence = 0;
            }
        }
        ((self.last_ms as u64 & ((1 << 41) - 1)) << 22) | (self.node << 12) | self.sequence
    }
}

/// The node id encoded in a message id.
pub fn node_of(id: u64) -> u16 {
    ((id >> 12) & 0x3ff) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_increasing_even_when_the_clock_stalls_or_goes_back() {
        let mut g = MessageIdGenerator::new(7).unwrap();
        let t = ID_EPOCH_MS + 1_000;
        let mut last = 0;
        for i in 0..10_000 {
            let now = if i % 3 == 0 { t - 5 } else { t };
            let id = g.next(now);
            assert!(id > last, "id {id} after {last}");
            assert_eq!(node_of(id), 7);
            last = id;
        }
    }

    #[test]
    fn nodes_never_collide() {
        let mut a = MessageIdGenerator::new(1).unwrap();
        let mut b = MessageIdGenerator::new(2).unwrap();
        let t = ID_EPOCH_MS + 42;
        assert_ne!(a.next(t), b.next(t));
        assert!(MessageIdGenerator::new(1024).is_none());
    }
}
