//! Hostile input to `parley_engine::codec::Codec::decode`: random bytes and
//! random mutations of valid packets, for MQTT 3.1.1 and 5. The decoder
//! must never panic (a panic fails the test), must make progress on every
//! packet it returns, and must never pass rumqttd a frame rumqttd then
//! rejects (that would be a gap in Parley's validation). Valid streams must
//! decode the same whatever chunks they arrive in.

use bytes::BytesMut;
use parley_engine::codec::{Codec, DecodeError, Incoming, Version};
use proptest::prelude::*;

/// A frame: `byte1`, the remaining length of `body`, then `body`.
fn frame(byte1: u8, body: &[u8]) -> Vec<u8> {
    assert!(body.len() < 16_384);
    let mut v = vec![byte1];
    if body.len() < 128 {
        v.push(body.len() as u8);
    } else {
        v.push((body.len() % 128) as u8 | 0x80);
        v.push((body.len() / 128) as u8);
    }
    v.extend_from_slice(body);
    v
}

/// Valid client packets of every type, with properties where MQTT 5 has them.
fn corpus(version: Version) -> Vec<Vec<u8>> {
    match version {
        Version::V4 => vec![
            frame(
                0x10,
                b"\0\x04MQTT\x04\xEE\0\x1e\0\x02c1\0\x01t\0\x02wm\0\x01u\0\x01p",
            ),
            frame(0x30, b"\0\x03a/bpayload"),
            frame(0x3B, b"\0\x01t\x12\x34xyz"),
            frame(0x34, b"\0\x01t\0\x09"),
            frame(0x40, b"\0\x07"),
            frame(0x50, b"\0\x07"),
            frame(0x62, b"\0\x07"),
            frame(0x70, b"\0\x07"),
            frame(0x82, b"\0\x05\0\x03a/+\x01\0\x01#\x02"),
            frame(0xA2, b"\0\x06\0\x01a\0\x03b/#"),
            vec![0xC0, 0],
            vec![0xE0, 0],
        ],
        Version::V5 => vec![
            frame(
                0x10,
                &[
                    &b"\0\x04MQTT\x05\xCE\0\x1e"[..],
                    &[13, 0x11, 0, 0, 0, 60, 0x21, 0, 10, 0x26, 0, 0, 0, 0],
                    b"\0\x02c1",
                    &[7, 0x18, 0, 0, 0, 5, 0x01, 1],
                    b"\0\x01t\0\x02wm\0\x01u\0\x01p",
                ]
                .concat(),
            ),
            frame(0x30, b"\0\x03a/b\0payload"),
            frame(
                0x3B,
                &[
                    &b"\0\x01t\x12\x34"[..],
                    &[8, 0x23, 0, 1, 0x08, 0, 2, b'r', b'e'],
                    b"xyz",
                ]
                .concat(),
            ),
            frame(0x34, &[0, 0, 0, 9, 3, 0x23, 0, 4]),
            frame(0x40, &[0, 7]),
            frame(0x40, &[0, 7, 0x10]),
            frame(0x50, &[0, 7, 0x97, 4, 0x1F, 0, 1, b'r']),
            frame(0x62, &[0, 7, 0x92, 0]),
            frame(0x70, &[0, 7, 0, 7, 0x26, 0, 1, b'k', 0, 1, b'v']),
            frame(
                0x82,
                &[&[0, 5, 2, 0x0B, 9][..], b"\0\x03a/+\x2E\0\x01#\x01"].concat(),
            ),
            frame(0xA2, &[&[0, 6, 0][..], b"\0\x01a\0\x03b/#"].concat()),
            vec![0xC0, 0],
            vec![0xE0, 0],
            vec![0xE0, 1, 0x04],
            frame(0xE0, &[0x00, 5, 0x11, 0, 0, 0, 0]),
        ],
    }
}

/// Decodes until the buffer needs more bytes or an error ends the
/// connection; returns the packets and the error.
fn drain(codec: &Codec, buf: &mut BytesMut) -> (Vec<Incoming>, Option<DecodeError>) {
    let mut packets = Vec::new();
    loop {
        let before = buf.len();
        match codec.decode(buf) {
            Ok(Some(incoming)) => {
                assert!(
                    buf.len() < before,
                    "decode returned a packet without consuming"
                );
                packets.push(incoming);
            }
            Ok(None) => return (packets, None),
            Err(e) => {
                if let DecodeError::Malformed(why) = &e {
                    assert!(
                        !why.starts_with("rumqttd:"),
                        "validation let through a frame rumqttd refuses: {why}"
                    );
                }
                return (packets, Some(e));
            }
        }
    }
}

fn version() -> impl Strategy<Value = Version> {
    prop_oneof![Just(Version::V4), Just(Version::V5)]
}

/// One edit of a valid frame.
#[derive(Debug, Clone)]
enum Mutation {
    Set(usize, u8),
    Flip(usize, u8),
    Insert(usize, u8),
    Remove(usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<usize>(), 0u8..8).prop_map(|(i, bit)| Mutation::Flip(i, 1 << bit)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Remove),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    if bytes.is_empty() {
        return;
    }
    let len = bytes.len();
    match *m {
        Mutation::Set(i, b) => bytes[i % len] = b,
        Mutation::Flip(i, bit) => bytes[i % len] ^= bit,
        Mutation::Insert(i, b) => bytes.insert(i % (len + 1), b),
        Mutation::Remove(i) => {
            bytes.remove(i % len);
        }
        Mutation::Truncate(i) => bytes.truncate(i % len),
    }
}

#[test]
fn corpus_is_valid() {
    for version in [Version::V4, Version::V5] {
        let codec = Codec::new(version, 1 << 20);
        for bytes in corpus(version) {
            let mut buf = BytesMut::from(&bytes[..]);
            let (packets, err) = drain(&codec, &mut buf);
            assert_eq!(err, None, "{version:?} {bytes:x?}");
            assert_eq!(packets.len(), 1, "{version:?} {bytes:x?}");
            assert!(buf.is_empty());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn random_bytes_never_panic(
        version in version(),
        max in prop_oneof![Just(16usize), Just(1usize << 20)],
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let codec = Codec::new(version, max);
        drain(&codec, &mut BytesMut::from(&bytes[..]));
    }

    #[test]
    fn random_bytes_after_a_connect_never_panic(
        version in version(),
        bytes in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let mut stream = corpus(version).swap_remove(0);
        stream.extend_from_slice(&bytes);
        let codec = Codec::new(version, 1 << 20);
        let (packets, _) = drain(&codec, &mut BytesMut::from(&stream[..]));
        prop_assert!(!packets.is_empty());
    }

    #[test]
    fn mutated_packets_never_panic(
        version in version(),
        pick in any::<usize>(),
        mutations in proptest::collection::vec(mutation(), 1..4),
        tail in proptest::collection::vec(any::<u8>(), 0..8),
    ) {
        let corpus = corpus(version);
        let mut bytes = corpus[pick % corpus.len()].clone();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        bytes.extend_from_slice(&tail);
        for max in [8usize, 1 << 20] {
            let codec = Codec::new(version, max);
            drain(&codec, &mut BytesMut::from(&bytes[..]));
        }
    }

    #[test]
    fn valid_streams_decode_the_same_in_any_chunks(
        version in version(),
        picks in proptest::collection::vec(any::<usize>(), 1..12),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        let corpus = corpus(version);
        let stream: Vec<u8> = picks.iter().flat_map(|p| corpus[p % corpus.len()].clone()).collect();
        let codec = Codec::new(version, 1 << 20);

        let mut whole = BytesMut::from(&stream[..]);
        let (expected, err) = drain(&codec, &mut whole);
        prop_assert_eq!(err, None);
        prop_assert_eq!(expected.len(), picks.len());
        prop_assert!(whole.is_empty());

        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
        cuts.push(stream.len());
        cuts.sort_unstable();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        let mut at = 0;
        for cut in cuts {
            buf.extend_from_slice(&stream[at..cut]);
            at = cut;
            let (packets, err) = drain(&codec, &mut buf);
            prop_assert_eq!(err, None);
            got.extend(packets);
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(got, expected);
    }
}
