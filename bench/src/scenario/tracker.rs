//! Per-subscriber delivery tracking: which sequence numbers arrived from
//! which publisher, so a run can count duplicates and, at the end, losses.

use std::collections::HashMap;

/// Largest sequence number the tracker accepts; higher ones are treated as
/// corrupt rather than allocating memory for them.
pub const MAX_SEQ: u64 = 1 << 32;

/// What recording one delivery found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// First time this message arrived.
    First,
    /// This message had already arrived.
    Duplicate,
    /// The sequence number is out of range.
    Invalid,
}

/// The messages one subscriber has received, per publisher.
#[derive(Debug, Default, Clone)]
pub struct SeqTracker {
    seen: HashMap<u32, Bits>,
}

#[derive(Debug, Default, Clone)]
struct Bits {
    words: Vec<u64>,
    ones: u64,
}

impl SeqTracker {
    /// Records that message `seq` of `publisher` arrived.
    pub fn record(&mut self, publisher: u32, seq: u64) -> Delivery {
        if seq >= MAX_SEQ {
            return Delivery::Invalid;
        }
        let bits = self.seen.entry(publisher).or_default();
        let (word, bit) = ((seq / 64) as usize, seq % 64);
        if bits.words.len() <= word {
            bits.words.resize(word + 1, 0);
        }
        let mask = 1u64 << bit;
        if bits.words[word] & mask != 0 {
            return Delivery::Duplicate;
        }
        bits.words[word] |= mask;
        bits.ones += 1;
        Delivery::First
    }

    /// Distinct messages received from `publisher`.
    pub fn unique_from(&self, publisher: u32) -> u64 {
        self.seen.get(&publisher).map_or(0, |b| b.ones)
    }

    /// Messages of `publisher` numbered below `sent` that never arrived.
    pub fn missing_from(&self, publisher: u32, sent: u64) -> u64 {
        let Some(bits) = self.seen.get(&publisher) else {
            return sent;
        };
        (0..sent)
            .filter(|seq| {
                let word = (seq / 64) as usize;
                bits.words
                    .get(word)
                    .is_none_or(|w| w & (1 << (seq % 64)) == 0)
            })
            .count() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_firsts_duplicates_and_gaps() {
        let mut t = SeqTracker::default();
        assert_eq!(t.record(1, 0), Delivery::First);
        assert_eq!(t.record(1, 2), Delivery::First);
        assert_eq!(t.record(1, 2), Delivery::Duplicate);
        assert_eq!(t.record(1, 130), Delivery::First);
        assert_eq!(t.record(2, 0), Delivery::First);
        assert_eq!(t.unique_from(1), 3);
        assert_eq!(t.unique_from(2), 1);
        assert_eq!(t.unique_from(9), 0);
        // Sent 0..=130: received 0, 2 and 130, so 128 are missing.
        assert_eq!(t.missing_from(1, 131), 128);
        assert_eq!(t.missing_from(2, 1), 0);
        assert_eq!(t.missing_from(9, 5), 5);
    }

    #[test]
    fn rejects_absurd_sequence_numbers() {
        let mut t = SeqTracker::default();
        assert_eq!(t.record(0, u64::MAX), Delivery::Invalid);
        assert_eq!(t.unique_from(0), 0);
    }
}
