//! Encoding and decoding of [`Envelope`]s, the payload of every chat topic.

use prost::Message;

use crate::v1::Envelope;

/// Why a payload is not a usable [`Envelope`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes are not a valid protobuf encoding of an envelope.
    #[error("malformed envelope: {0}")]
    Malformed(#[from] prost::DecodeError),
    /// The bytes decode, but no `kind` is set: the envelope carries nothing.
    #[error("empty envelope: no kind is set")]
    Empty,
}

/// Decodes a chat-topic payload.
///
/// Unknown fields (from a newer schema) are skipped. An envelope whose
/// `kind` is not set is refused with [`DecodeError::Empty`]; anything that
/// is not valid protobuf for an envelope with [`DecodeError::Malformed`].
/// No size limit is applied; callers enforce their configured limits on
/// `bytes.len()` before calling.
pub fn decode_envelope(bytes: &[u8]) -> Result<Envelope, DecodeError> {
    let envelope = Envelope::decode(bytes)?;
    if envelope.kind.is_none() {
        return Err(DecodeError::Empty);
    }
    Ok(envelope)
}

/// Encodes an envelope into a chat-topic payload.
pub fn encode_envelope(envelope: &Envelope) -> Vec<u8> {
    envelope.encode_to_vec()
}
