//! Runs the `chat_validate` fuzz check over a deterministic corpus: chat
//! topics of every shape, hostile ids, and valid, mutated and random payloads.

use chat_core::fuzzing::check_client_input;
use parley_proto::encode_envelope;
use parley_proto::v1::{chat_message::Body, ChatMessage, Text};

fn input(topic: &str, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![topic.len().min(255) as u8];
    v.extend_from_slice(&topic.as_bytes()[..topic.len().min(255)]);
    v.extend_from_slice(payload);
    v
}

/// A small deterministic generator (xorshift), so the corpus is the same on every run.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn corpus_never_breaks_a_promise() {
    let topics = [
        "s/a~b",
        "s/fuzzer~zed",
        "r/g0123456789abcdef",
        "t/a~a",
        "q/fuzzer",
        "q/other",
        "u/fuzzer/i",
        "p/x",
        "a/fuzzer",
        "s/",
        "s/+",
        "s/#",
        "s/a~b/extra",
        "s/A~B",
        "s/\0",
        "devices/x",
        "$SYS/x",
        "",
        "/",
        "u//i",
    ];
    let valid = encode_envelope(
        &ChatMessage {
            client_message_id: "c1".into(),
            sender: "mallory".into(),
            seq: 9,
            edited: true,
            body: Some(Body::Text(Text { text: "hi".into() })),
            ..Default::default()
        }
        .into(),
    );
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut checked = 0;
    for topic in topics {
        check_client_input(&input(topic, &valid)).unwrap();
        for _ in 0..200 {
            let mut mutated = valid.clone();
            let at = (rng.next() as usize) % mutated.len();
            mutated[at] = rng.next() as u8;
            check_client_input(&input(topic, &mutated)).unwrap();
            let random: Vec<u8> = (0..(rng.next() % 64)).map(|_| rng.next() as u8).collect();
            check_client_input(&random).unwrap();
            checked += 2;
        }
    }
    assert_eq!(checked, topics.len() * 400);
}
