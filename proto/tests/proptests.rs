//! Property tests of the envelope codec: arbitrary bytes never make it
//! panic, and generated values survive encoding unchanged.

mod support;

use parley_proto::prost::Message;
use parley_proto::v1::{ChatMessage, Envelope};
use parley_proto::{decode_envelope, encode_envelope, message_envelope, DecodeError};
use proptest::collection::vec;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in vec(any::<u8>(), 0..512)) {
        // Reaching the assertion means no panic; a success must carry a kind.
        if let Ok(envelope) = decode_envelope(&bytes) {
            prop_assert!(envelope.kind.is_some());
        }
    }

    #[test]
    fn chat_messages_survive_encode_then_decode(message in support::chat_message()) {
        let bytes = message.encode_to_vec();
        prop_assert_eq!(ChatMessage::decode(bytes.as_slice()), Ok(message.clone()));

        let envelope = Envelope::from(message);
        prop_assert_eq!(decode_envelope(&encode_envelope(&envelope)), Ok(envelope));
    }

    #[test]
    fn a_message_envelope_from_stored_bytes_decodes_like_an_encoded_one(
        message in support::chat_message(),
        seq in prop_oneof![Just(0u64), any::<u64>()],
    ) {
        let stored = ChatMessage { seq: 0, ..message.clone() }.encode_to_vec();
        let expected = Envelope::from(ChatMessage { seq, ..message });
        prop_assert_eq!(decode_envelope(&message_envelope(&stored, seq)), Ok(expected));
    }

    #[test]
    fn envelopes_of_every_kind_survive_encode_then_decode(envelope in support::envelope()) {
        prop_assert_eq!(decode_envelope(&encode_envelope(&envelope)), Ok(envelope));
    }

    #[test]
    fn a_truncated_envelope_is_rejected(
        envelope in support::envelope(),
        cut in any::<prop::sample::Index>(),
    ) {
        let bytes = encode_envelope(&envelope);
        let cut = cut.index(bytes.len());
        // An envelope is a single length-delimited field, so every strict
        // prefix is either nothing at all or a field cut short.
        let expected_empty = cut == 0;
        match decode_envelope(&bytes[..cut]) {
            Err(DecodeError::Empty) => prop_assert!(expected_empty),
            Err(DecodeError::Malformed(_)) => prop_assert!(!expected_empty),
            Ok(decoded) => prop_assert!(false, "prefix of {} bytes decoded to {:?}", cut, decoded),
        }
    }
}
