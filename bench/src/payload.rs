//! The bench's message payload: a fixed header carrying who sent the message,
//! its sequence number and when it was sent, padded to the requested size.
//! Subscribers decode it to measure end-to-end latency and to count lost and
//! duplicated messages.
//!
//! Layout (little-endian): magic `PLB1` (4 bytes), publisher id (u32),
//! sequence (u64), send time in nanoseconds on the [`Clock`] (u64), then zero
//! padding.

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Bytes at the start of every bench payload.
pub const MAGIC: [u8; 4] = *b"PLB1";
/// Size of the header; payloads can't be smaller than this.
pub const HEADER_LEN: usize = 24;

/// What a payload says about its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Which publisher sent it.
    pub publisher: u32,
    /// The publisher's sequence number, from 0.
    pub seq: u64,
    /// Send time, nanoseconds on the [`Clock`].
    pub sent_nanos: u64,
}

/// A payload that can't be built or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// The requested payload size can't hold the header.
    #[error("payload size {0} is below the {HEADER_LEN}-byte minimum")]
    TooSmall(usize),
    /// A received payload is shorter than the header.
    #[error("payload of {0} bytes is too short to carry a bench header")]
    Truncated(usize),
    /// A received payload was not produced by the bench.
    #[error("payload does not start with the bench magic")]
    Foreign,
}

impl Stamp {
    /// Encodes this stamp into a payload of exactly `size` bytes.
    pub fn encode(&self, size: usize) -> Result<Vec<u8>, PayloadError> {
        if size < HEADER_LEN {
            return Err(PayloadError::TooSmall(size));
        }
        let mut out = Vec::with_capacity(size);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&self.publisher.to_le_bytes());
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&self.sent_nanos.to_le_bytes());
        out.resize(size, 0);
        Ok(out)
    }

    /// Reads the stamp at the start of a received payload.
    pub fn decode(payload: &[u8]) -> Result<Stamp, PayloadError> {
        let header = payload
            .get(..HEADER_LEN)
            .ok_or(PayloadError::Truncated(payload.len()))?;
        if header[..4] != MAGIC {
            return Err(PayloadError::Foreign);
        }
        let u32_at =
            |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&header[i..i + 8]);
            u64::from_le_bytes(b)
        };
        Ok(Stamp {
            publisher: u32_at(4),
            seq: u64_at(8),
            sent_nanos: u64_at(16),
        })
    }
}

/// A monotonic clock that reads as nanoseconds since the Unix epoch: the wall
/// time at first use plus the monotonic time since. It never jumps within a
/// process, and stays comparable across processes on one machine.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base_instant: Instant,
    base_unix_nanos: u64,
}

impl Clock {
    /// The process-wide clock.
    pub fn global() -> &'static Clock {
        static CLOCK: OnceLock<Clock> = OnceLock::new();
        CLOCK.get_or_init(|| Clock {
            base_instant: Instant::now(),
            base_unix_nanos: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
        })
    }

    /// Nanoseconds since the Unix epoch, monotonic.
    pub fn now_nanos(&self) -> u64 {
        let elapsed = u64::try_from(self.base_instant.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.base_unix_nanos.saturating_add(elapsed)
    }

    /// Time from `sent_nanos` to now (zero if `sent_nanos` is in the future).
    pub fn since(&self, sent_nanos: u64) -> Duration {
        Duration::from_nanos(self.now_nanos().saturating_sub(sent_nanos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_pads_to_size() {
        let stamp = Stamp {
            publisher: 7,
            seq: 123_456_789_012,
            sent_nanos: 1_700_000_000_123_456_789,
        };
        let bytes = stamp.encode(64).unwrap();
        assert_eq!(bytes.len(), 64);
        assert!(bytes[HEADER_LEN..].iter().all(|b| *b == 0));
        assert_eq!(Stamp::decode(&bytes), Ok(stamp));
    }

    #[test]
    fn rejects_small_sizes_short_and_foreign_payloads() {
        let stamp = Stamp {
            publisher: 0,
            seq: 0,
            sent_nanos: 0,
        };
        assert_eq!(stamp.encode(10), Err(PayloadError::TooSmall(10)));
        assert_eq!(Stamp::decode(b"PLB1"), Err(PayloadError::Truncated(4)));
        assert_eq!(Stamp::decode(&[0u8; 64]), Err(PayloadError::Foreign));
    }

    #[test]
    fn clock_is_monotonic_and_measures_elapsed_time() {
        let clock = Clock::global();
        let a = clock.now_nanos();
        let b = clock.now_nanos();
        assert!(b >= a);
        assert_eq!(clock.since(u64::MAX), Duration::ZERO);
        assert!(clock.since(a) >= Duration::from_nanos(b - a));
    }
}
