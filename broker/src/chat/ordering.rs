//! Delivery of a conversation's new entries in `seq` order.
//!
//! The history store numbers a conversation's entries in the order the
//! appends reach it and commits concurrent appends together (group commit).
//! The sends waiting on one commit then resume in any order, on any worker
//! thread, so fanning out as each resumes lets members receive seq 6 before
//! seq 5. Instead, each send takes a [`Ticket`] before it appends and hands
//! the stored entry to it; entries are released in `seq` order:
//!
//! - an entry whose seq follows the last one released goes out at once;
//! - any other entry waits until every append of its conversation that began
//!   before it was stored has finished. An append that begins later gets a
//!   higher seq, so after that nothing lower can still come from this node;
//!   a gap that remains (a seq that no send of this node will report, such
//!   as one taken by another node) is skipped rather than waited for.
//!
//! A ticket always finishes: stored, or on drop (a refused or duplicate
//! append, or a send abandoned half way), so a conversation never stalls.
//! Entries are delivered under their conversation's lock, so two threads
//! releasing entries of one conversation cannot reorder them on the way to
//! the router.
//!
//! The conversations are spread over [`SHARDS`] locks by a hash of their id:
//! a delivery holds only its own shard, so deliveries of different
//! conversations rarely wait for each other (one lock for all of them made
//! every message's fan-out wait behind any other's, and behind a thread
//! preempted while holding it).

use std::collections::{BTreeMap, BTreeSet};
use std::hash::BuildHasher;
use std::sync::{Mutex, MutexGuard};

use foldhash::{HashMap, HashMapExt};

/// How many locks the conversations are spread over.
const SHARDS: usize = 64;

/// The lanes of the conversations whose ids hash to one shard (foldhash,
/// randomly seeded per process, as the shard pick: SipHash cost more than
/// the rest of taking a ticket).
type Shard<T> = Mutex<HashMap<String, Lane<T>>>;

/// Releases each conversation's stored entries in `seq` order to a delivery function.
pub struct DeliveryOrder<T> {
    shards: Box<[Shard<T>]>,
    /// Picks a conversation's shard.
    hasher: foldhash::fast::RandomState,
    deliver: Box<dyn Fn(T) + Send + Sync>,
}

/// One conversation's appends in flight and entries held back.
struct Lane<T> {
    /// Number of the next ticket; tickets below it have begun.
    next_ticket: u64,
    /// Tickets begun and not finished.
    in_flight: BTreeSet<u64>,
    /// Stored entries not yet released, by seq.
    held: BTreeMap<u64, Held<T>>,
    /// The highest seq released so far.
    last_released: Option<u64>,
}

/// A stored entry waiting for its turn.
struct Held<T> {
    /// Tickets below this number began before the entry was stored.
    begun_before: u64,
    item: T,
}

/// One send's place in its conversation's delivery order. Finishing it
/// (with [`Ticket::stored`], or by dropping it) is what lets later entries go.
pub struct Ticket<'a, T> {
    order: &'a DeliveryOrder<T>,
    conversation: String,
    /// The conversation's shard.
    shard: usize,
    number: u64,
    finished: bool,
}

impl<T> DeliveryOrder<T> {
    /// An order that hands each released entry to `deliver`.
    pub fn new(deliver: impl Fn(T) + Send + Sync + 'static) -> DeliveryOrder<T> {
        DeliveryOrder {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: foldhash::fast::RandomState::default(),
            deliver: Box::new(deliver),
        }
    }

    /// Registers an append to `conversation` that is about to begin.
    pub fn begin(&self, conversation: &str) -> Ticket<'_, T> {
        let shard = self.shard_of(conversation);
        let mut lanes = self.lock(shard);
        let number = match lanes.get_mut(conversation) {
            Some(lane) => lane.take_ticket(),
            None => {
                let mut lane = Lane {
                    next_ticket: 0,
                    in_flight: BTreeSet::new(),
                    held: BTreeMap::new(),
                    last_released: None,
                };
                let number = lane.take_ticket();
                lanes.insert(conversation.to_owned(), lane);
                number
            }
        };
        Ticket {
            order: self,
            conversation: conversation.to_owned(),
            shard,
            number,
            finished: false,
        }
    }

    /// Finishes ticket `number`, holding `stored` (its seq and entry) if any,
    /// and releases whatever is now due.
    fn finish(&self, shard: usize, conversation: &str, number: u64, stored: Option<(u64, T)>) {
        let mut lanes = self.lock(shard);
        let Some(lane) = lanes.get_mut(conversation) else {
            return;
        };
        lane.in_flight.remove(&number);
        if let Some((seq, item)) = stored {
            let begun_before = lane.next_ticket;
            lane.held.insert(seq, Held { begun_before, item });
        }
        while let Some(first) = lane.held.first_entry() {
            let seq = *first.key();
            let follows = lane.last_released.is_some_and(|last| seq <= last + 1);
            let nothing_earlier_in_flight = lane
                .in_flight
                .first()
                .is_none_or(|&oldest| oldest >= first.get().begun_before);
            if !(follows || nothing_earlier_in_flight) {
                break;
            }
            let held = first.remove();
            lane.last_released = Some(lane.last_released.map_or(seq, |last| last.max(seq)));
            (self.deliver)(held.item);
        }
        if lane.in_flight.is_empty() && lane.held.is_empty() {
            lanes.remove(conversation);
        }
    }

    fn shard_of(&self, conversation: &str) -> usize {
        // The low bits of a 64-bit hash; SHARDS divides 2^64.
        (self.hasher.hash_one(conversation) % SHARDS as u64) as usize
    }

    fn lock(&self, shard: usize) -> MutexGuard<'_, HashMap<String, Lane<T>>> {
        // Every update leaves the map consistent, so a panic elsewhere cannot poison it.
        self.shards[shard].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether no conversation has a lane (every one that went idle was removed).
    #[cfg(test)]
    fn is_idle(&self) -> bool {
        (0..SHARDS).all(|shard| self.lock(shard).is_empty())
    }
}

impl<T> Lane<T> {
    /// The next ticket's number, now in flight.
    fn take_ticket(&mut self) -> u64 {
        let number = self.next_ticket;
        self.next_ticket += 1;
        self.in_flight.insert(number);
        number
    }
}

impl<T> Ticket<'_, T> {
    /// The append stored a new entry at `seq`: deliver `item` in its turn.
    pub fn stored(mut self, seq: u64, item: T) {
        self.finished = true;
        self.order.finish(
            self.shard,
            &self.conversation,
            self.number,
            Some((seq, item)),
        );
    }
}

impl<T> Drop for Ticket<'_, T> {
    /// Finishes without an entry: the append failed, was a retry, or was abandoned.
    fn drop(&mut self) {
        if !self.finished {
            self.order
                .finish(self.shard, &self.conversation, self.number, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn recording() -> (DeliveryOrder<u64>, Arc<Mutex<Vec<u64>>>) {
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink = out.clone();
        let order = DeliveryOrder::new(move |seq| sink.lock().unwrap().push(seq));
        (order, out)
    }

    fn released(out: &Arc<Mutex<Vec<u64>>>) -> Vec<u64> {
        out.lock().unwrap().clone()
    }

    #[test]
    fn a_lone_send_is_delivered_at_once() {
        let (order, out) = recording();
        order.begin("c").stored(1, 1);
        order.begin("c").stored(2, 2);
        assert_eq!(released(&out), vec![1, 2]);
        assert!(order.is_idle(), "idle lanes are removed");
    }

    #[test]
    fn a_later_seq_waits_for_the_earlier_send_of_the_same_commit() {
        let (order, out) = recording();
        let first = order.begin("c");
        let second = order.begin("c");
        // Both were in one commit (seqs 1 and 2); the second resumes first.
        second.stored(2, 2);
        assert_eq!(released(&out), Vec::<u64>::new(), "2 waits for 1");
        first.stored(1, 1);
        assert_eq!(released(&out), vec![1, 2]);
    }

    #[test]
    fn the_next_seq_does_not_wait_for_unrelated_sends() {
        let (order, out) = recording();
        let failing = order.begin("c");
        let first = order.begin("c");
        first.stored(1, 1);
        let slow = order.begin("c");
        drop(failing);
        assert_eq!(released(&out), vec![1]);
        // `slow` began before 2 was stored, but 2 follows the last release.
        let fast = order.begin("c");
        fast.stored(2, 2);
        assert_eq!(released(&out), vec![1, 2], "2 follows 1 directly");
        slow.stored(3, 3);
        assert_eq!(released(&out), vec![1, 2, 3]);
    }

    #[test]
    fn a_failed_or_abandoned_send_leaves_no_stall() {
        let (order, out) = recording();
        let failing = order.begin("c");
        let ok = order.begin("c");
        ok.stored(5, 5);
        assert_eq!(released(&out), Vec::<u64>::new());
        drop(failing);
        assert_eq!(released(&out), vec![5], "nothing earlier can come now");
    }

    #[test]
    fn sends_begun_after_an_entry_was_stored_do_not_hold_it() {
        let (order, out) = recording();
        let early = order.begin("c");
        let stored = order.begin("c");
        stored.stored(8, 8);
        let late = order.begin("c");
        // 7 (from `early`) is missing; once `early` fails, 8 goes out even
        // though `late`, begun after 8 was stored, is still in flight.
        drop(early);
        assert_eq!(released(&out), vec![8]);
        late.stored(9, 9);
        assert_eq!(released(&out), vec![8, 9]);
    }

    #[test]
    fn conversations_do_not_wait_for_each_other() {
        let (order, out) = recording();
        let a = order.begin("a");
        order.begin("b").stored(1, 10);
        assert_eq!(released(&out), vec![10]);
        a.stored(1, 20);
        assert_eq!(released(&out), vec![10, 20]);
    }

    #[test]
    fn many_out_of_order_completions_come_out_sorted() {
        let (order, out) = recording();
        let tickets: Vec<_> = (0..50).map(|_| order.begin("c")).collect();
        // Complete in a scrambled order: seq = ticket index + 1.
        let mut indexed: Vec<_> = tickets.into_iter().enumerate().collect();
        indexed.sort_by_key(|(i, _)| (i * 37) % 50);
        for (i, ticket) in indexed {
            ticket.stored(i as u64 + 1, i as u64 + 1);
        }
        assert_eq!(released(&out), (1..=50).collect::<Vec<_>>());
    }
}
