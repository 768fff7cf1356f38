//! Which partition of `messages` holds which sequence numbers, and which
//! partitions a page of history has to visit.
//!
//! A conversation's messages are split into buckets of [`BUCKET_SIZE`]
//! consecutive seqs; each `(conversation_id, bucket)` is one Scylla partition,
//! clustered by seq. Bucket `b` holds the seqs from `b * BUCKET_SIZE` up to
//! the next bucket's first (seq 0 is never stored, so bucket 0 holds one fewer).
//! Because seqs are gap-free, every bucket below the conversation's last one is
//! full, and a bucket that holds fewer rows than its range allows is the last.
//!
//! Everything here is arithmetic, so it is tested without a server.

/// How many consecutive seqs one partition holds.
///
/// 4,096 messages of about 1 KiB make a 4 MiB partition: far below the sizes
/// at which Scylla warns about large partitions, yet large enough that a page
/// of history almost always reads a single partition. Changing it would move
/// stored messages to other partitions, so the value is recorded in the
/// keyspace (`schema_meta`) and checked at start-up.
pub const BUCKET_SIZE: u64 = 4096;

/// The bucket holding `seq`.
pub fn bucket_of(seq: u64) -> u64 {
    seq / BUCKET_SIZE
}

/// The lowest seq bucket `bucket` can hold (1 for bucket 0, as seq 0 is never stored).
pub fn first_seq(bucket: u64) -> u64 {
    (bucket * BUCKET_SIZE).max(1)
}

/// The highest seq bucket `bucket` can hold.
pub fn last_seq(bucket: u64) -> u64 {
    bucket * BUCKET_SIZE + (BUCKET_SIZE - 1)
}

/// The inclusive seq range to read from one bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// The bucket (partition) to read.
    pub bucket: u64,
    /// The lowest seq to read.
    pub low: u64,
    /// The highest seq to read.
    pub high: u64,
}

impl Span {
    /// How many seqs the span covers.
    pub fn len(&self) -> u64 {
        self.high - self.low + 1
    }

    /// True if a read of the span that returned `rows` rows when it asked for
    /// at most `asked` proves the conversation has no seq above the last row:
    /// it returned fewer than it asked for and fewer than the span holds, which
    /// with gap-free seqs happens only at the end of the conversation.
    pub fn ends_conversation(&self, rows: u64, asked: u64) -> bool {
        rows < asked && rows < self.len()
    }
}

/// The spans, lowest first, that together cover the seqs `low..=high`.
///
/// Empty when `low > high`. `low` of 0 is read as 1.
pub fn spans_ascending(low: u64, high: u64) -> impl Iterator<Item = Span> {
    let low = low.max(1);
    buckets_between(low, high).map(move |bucket| Span {
        bucket,
        low: low.max(first_seq(bucket)),
        high: high.min(last_seq(bucket)),
    })
}

/// The spans, highest first, that together cover the seqs `low..=high`.
///
/// Lazy like [`spans_ascending`], so a range reaching far past the
/// conversation's end costs nothing until it is read.
pub fn spans_descending(low: u64, high: u64) -> impl Iterator<Item = Span> {
    let low = low.max(1);
    buckets_between(low, high).rev().map(move |bucket| Span {
        bucket,
        low: low.max(first_seq(bucket)),
        high: high.min(last_seq(bucket)),
    })
}

/// The buckets holding `low..=high`; none if the range is empty.
fn buckets_between(low: u64, high: u64) -> std::ops::RangeInclusive<u64> {
    let (first, last) = if low > high {
        (1, 0)
    } else {
        (bucket_of(low), bucket_of(high))
    };
    first..=last
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn buckets_hold_consecutive_ranges() {
        assert_eq!(bucket_of(1), 0);
        assert_eq!(bucket_of(BUCKET_SIZE - 1), 0);
        assert_eq!(bucket_of(BUCKET_SIZE), 1);
        assert_eq!(first_seq(0), 1);
        assert_eq!(last_seq(0), BUCKET_SIZE - 1);
        assert_eq!(first_seq(1), BUCKET_SIZE);
        assert_eq!(last_seq(1), 2 * BUCKET_SIZE - 1);
    }

    #[test]
    fn a_range_inside_one_bucket_is_one_span() {
        let spans: Vec<Span> = spans_ascending(3, 9).collect();
        assert_eq!(
            spans,
            vec![Span {
                bucket: 0,
                low: 3,
                high: 9
            }]
        );
    }

    #[test]
    fn a_range_across_buckets_is_cut_at_their_edges() {
        let spans: Vec<Span> = spans_ascending(BUCKET_SIZE - 2, 2 * BUCKET_SIZE + 1).collect();
        assert_eq!(
            spans,
            vec![
                Span {
                    bucket: 0,
                    low: BUCKET_SIZE - 2,
                    high: BUCKET_SIZE - 1
                },
                Span {
                    bucket: 1,
                    low: BUCKET_SIZE,
                    high: 2 * BUCKET_SIZE - 1
                },
                Span {
                    bucket: 2,
                    low: 2 * BUCKET_SIZE,
                    high: 2 * BUCKET_SIZE + 1
                },
            ]
        );
        let down: Vec<u64> = spans_descending(BUCKET_SIZE - 2, 2 * BUCKET_SIZE + 1)
            .map(|s| s.bucket)
            .collect();
        assert_eq!(down, vec![2, 1, 0]);
    }

    #[test]
    fn empty_and_zero_ranges() {
        assert_eq!(spans_ascending(5, 4).count(), 0);
        assert_eq!(spans_ascending(0, 0).count(), 0);
        let from_zero: Vec<Span> = spans_ascending(0, 2).collect();
        assert_eq!(from_zero[0].low, 1);
    }

    #[test]
    fn a_short_read_ends_the_conversation_only_if_it_asked_for_more() {
        let span = Span {
            bucket: 0,
            low: 1,
            high: 10,
        };
        assert!(span.ends_conversation(3, 10));
        assert!(span.ends_conversation(0, 5));
        // Stopped by the limit: says nothing about what follows.
        assert!(!span.ends_conversation(5, 5));
        // Read the whole span: the next bucket may hold more.
        let short = Span {
            bucket: 0,
            low: 1,
            high: 3,
        };
        assert!(!short.ends_conversation(3, 10));
    }

    proptest! {
        /// The spans cover exactly `low..=high`, in order, each inside its bucket.
        #[test]
        fn spans_partition_the_range(low in 0u64..50_000, len in 0u64..50_000) {
            let high = low + len;
            let spans: Vec<Span> = spans_ascending(low, high).collect();
            let mut next = low.max(1);
            for span in &spans {
                prop_assert_eq!(span.low, next);
                prop_assert!(span.low <= span.high);
                prop_assert_eq!(bucket_of(span.low), span.bucket);
                prop_assert_eq!(bucket_of(span.high), span.bucket);
                next = span.high + 1;
            }
            if low.max(1) <= high {
                prop_assert_eq!(next, high + 1);
            } else {
                prop_assert!(spans.is_empty());
            }
            let descending: Vec<Span> = spans_descending(low, high).collect();
            let mut reversed = spans.clone();
            reversed.reverse();
            prop_assert_eq!(descending, reversed);
        }
    }
}
