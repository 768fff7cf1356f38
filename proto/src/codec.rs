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

/// The envelope of a chat message given its encoding `message` (a
/// [`ChatMessage`](crate::v1::ChatMessage) without its seq) and the seq it
/// was stored as: what [`encode_envelope`] gives for the message with that
/// seq, except that the seq comes last, after the fields `message` holds,
/// which protobuf decoders read alike (a later value of a field wins). The
/// message is not encoded a second time for its delivery.
pub fn message_envelope(message: &[u8], seq: u64) -> Vec<u8> {
    use prost::encoding::{encode_key, encode_varint, encoded_len_varint, WireType};
    /// `Envelope.message`.
    const ENVELOPE_MESSAGE: u32 = 1;
    /// `ChatMessage.seq`.
    const MESSAGE_SEQ: u32 = 3;
    // A key of a field numbered below 16 is one byte.
    let seq_len = if seq == 0 {
        0
    } else {
        1 + encoded_len_varint(seq)
    };
    let body = message.len() + seq_len;
    let mut out = Vec::with_capacity(1 + encoded_len_varint(body as u64) + body);
    encode_key(ENVELOPE_MESSAGE, WireType::LengthDelimited, &mut out);
    encode_varint(body as u64, &mut out);
    out.extend_from_slice(message);
    if seq != 0 {
        encode_key(MESSAGE_SEQ, WireType::Varint, &mut out);
        encode_varint(seq, &mut out);
    }
    out
}
