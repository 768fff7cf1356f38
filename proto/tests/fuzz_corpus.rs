//! Runs the fuzz target's check (`parley_proto::fuzzing`) over a
//! deterministic corpus: random byte strings, valid envelopes of every kind,
//! and those envelopes mutated by bit flips, overwrites, insertions,
//! deletions and truncations. The corpus is the same on every run, so a
//! failure here reproduces.

mod support;

use parley_proto::encode_envelope;
use parley_proto::fuzzing::{check_envelope_roundtrip, Outcome};
use parley_proto::v1::Envelope;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;

/// Random byte strings in the corpus.
const RANDOM_INPUTS: usize = 2_000;

/// Valid envelopes in the corpus; each is also checked in mutated form.
const VALID_INPUTS: usize = 1_000;

/// One edit of an encoded envelope.
#[derive(Debug, Clone)]
enum Mutation {
    /// Flips one bit of one byte.
    FlipBit(Index, u8),
    /// Overwrites one byte.
    Overwrite(Index, u8),
    /// Inserts a byte before a position (or at the end).
    Insert(Index, u8),
    /// Removes one byte.
    Remove(Index),
    /// Keeps only a prefix.
    Truncate(Index),
}

impl Mutation {
    /// Applies the mutation to `bytes`; index-based edits of an empty input
    /// do nothing.
    fn apply(&self, bytes: &mut Vec<u8>) {
        let len = bytes.len();
        match self {
            Mutation::Insert(at, byte) => bytes.insert(at.index(len + 1), *byte),
            _ if len == 0 => {}
            Mutation::FlipBit(at, bit) => bytes[at.index(len)] ^= 1 << (bit % 8),
            Mutation::Overwrite(at, byte) => bytes[at.index(len)] = *byte,
            Mutation::Remove(at) => {
                bytes.remove(at.index(len));
            }
            Mutation::Truncate(at) => bytes.truncate(at.index(len)),
        }
    }
}

/// Any mutation.
fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), any::<u8>()).prop_map(|(at, bit)| Mutation::FlipBit(at, bit)),
        (any::<Index>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Overwrite(at, byte)),
        (any::<Index>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Insert(at, byte)),
        any::<Index>().prop_map(Mutation::Remove),
        any::<Index>().prop_map(Mutation::Truncate),
    ]
}

/// Draws one value from `strategy` with the runner's deterministic RNG.
fn draw<S: Strategy>(runner: &mut TestRunner, strategy: &S) -> S::Value {
    strategy
        .new_tree(runner)
        .expect("the strategies used here never reject")
        .current()
}

/// Tallies of the outcomes seen.
#[derive(Debug, Default)]
struct Tally {
    /// Inputs that decoded and round-tripped.
    round_tripped: usize,
    /// Inputs rejected with an error.
    rejected: usize,
}

impl Tally {
    /// Runs the check on `input`, failing the test on a mismatch.
    fn check(&mut self, input: &[u8]) -> Outcome {
        let outcome = check_envelope_roundtrip(input)
            .unwrap_or_else(|mismatch| panic!("input {input:02x?}: {mismatch}"));
        match &outcome {
            Outcome::RoundTripped(_) => self.round_tripped += 1,
            Outcome::Rejected(_) => self.rejected += 1,
        }
        outcome
    }
}

#[test]
fn random_bytes_never_break_the_round_trip() {
    let mut runner = TestRunner::deterministic();
    let inputs = vec(any::<u8>(), 0..256);
    let mut tally = Tally::default();
    for _ in 0..RANDOM_INPUTS {
        tally.check(&draw(&mut runner, &inputs));
    }
    // Random bytes are nearly always rejected, and the corpus says so.
    assert_eq!(tally.round_tripped + tally.rejected, RANDOM_INPUTS);
    assert!(tally.rejected > RANDOM_INPUTS / 2, "{tally:?}");
}

#[test]
fn valid_and_mutated_envelopes_never_break_the_round_trip() {
    let mut runner = TestRunner::deterministic();
    let envelopes = support::envelope();
    let mutations = vec(mutation(), 1..4);
    let mut valid = Tally::default();
    let mut mutated = Tally::default();
    for _ in 0..VALID_INPUTS {
        let envelope: Envelope = draw(&mut runner, &envelopes);
        let bytes = encode_envelope(&envelope);
        assert_eq!(
            valid.check(&bytes),
            Outcome::RoundTripped(Box::new(envelope))
        );

        let mut bytes = bytes;
        for mutation in draw(&mut runner, &mutations) {
            mutation.apply(&mut bytes);
        }
        mutated.check(&bytes);
    }
    assert_eq!(valid.round_tripped, VALID_INPUTS);
    // Mutations must exercise both paths of the check to be worth running.
    assert!(mutated.round_tripped > 0, "{mutated:?}");
    assert!(mutated.rejected > 0, "{mutated:?}");
}
