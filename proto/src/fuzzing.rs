//! The decode/re-encode check run by the `envelope_decode` fuzz target
//! (`proto/fuzz/`) and by the `fuzz_corpus` test.
//!
//! Whatever bytes arrive, decoding must never panic, and anything that does
//! decode must survive re-encoding: decoding the re-encoded bytes gives the
//! same envelope, and encoding that again gives the same bytes.

use crate::codec::{decode_envelope, encode_envelope, DecodeError};
use crate::v1::Envelope;

/// What the check found for an input that did not reveal a bug.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The input is not a usable envelope; this is the error it got.
    Rejected(DecodeError),
    /// The input decoded to this envelope, which round-trips losslessly.
    RoundTripped(Box<Envelope>),
}

/// A decoded envelope that did not survive re-encoding: a bug.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "envelope does not round-trip: decoded {decoded:?}, re-encoded as {reencoded:?}, \
     which decodes to {redecoded:?}"
)]
pub struct RoundTripMismatch {
    /// The envelope decoded from the input.
    pub decoded: Envelope,
    /// Its encoding.
    pub reencoded: Vec<u8>,
    /// What decoding that encoding gave.
    pub redecoded: Result<Envelope, DecodeError>,
}

/// Decodes `data` as an envelope and, if that succeeds, checks that
/// re-encoding and decoding again yields the same envelope and the same
/// bytes.
///
/// Returns the [`Outcome`] for every input that behaves; an `Err` means a
/// codec bug, which the fuzz target turns into a crash.
pub fn check_envelope_roundtrip(data: &[u8]) -> Result<Outcome, Box<RoundTripMismatch>> {
    let decoded = match decode_envelope(data) {
        Ok(envelope) => envelope,
        Err(error) => return Ok(Outcome::Rejected(error)),
    };
    let reencoded = encode_envelope(&decoded);
    let redecoded = decode_envelope(&reencoded);
    let stable = match &redecoded {
        Ok(again) => *again == decoded && encode_envelope(again) == reencoded,
        Err(_) => false,
    };
    if stable {
        Ok(Outcome::RoundTripped(Box::new(decoded)))
    } else {
        Err(Box::new(RoundTripMismatch {
            decoded,
            reencoded,
            redecoded,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::Typing;

    #[test]
    fn valid_envelope_round_trips() {
        let envelope = Envelope::from(Typing {
            conversation_id: "alice~bob".into(),
            user: "bob".into(),
            active: true,
        });
        let outcome = check_envelope_roundtrip(&encode_envelope(&envelope));
        assert_eq!(outcome, Ok(Outcome::RoundTripped(Box::new(envelope))));
    }

    #[test]
    fn empty_input_is_rejected_not_a_mismatch() {
        assert_eq!(
            check_envelope_roundtrip(&[]),
            Ok(Outcome::Rejected(DecodeError::Empty))
        );
    }

    #[test]
    fn garbage_is_rejected_not_a_mismatch() {
        let outcome = check_envelope_roundtrip(&[0xff, 0xff, 0xff]);
        assert!(
            matches!(outcome, Ok(Outcome::Rejected(DecodeError::Malformed(_)))),
            "{outcome:?}"
        );
    }
}
