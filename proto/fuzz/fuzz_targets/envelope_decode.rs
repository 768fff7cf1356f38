//! Fuzz target: decodes arbitrary bytes as a Parley envelope and, whenever
//! they decode, checks that re-encoding and decoding again changes nothing
//! (see `parley_proto::fuzzing`). Any panic or mismatch is a crash.

#![no_main]

use libfuzzer_sys::fuzz_target;
use parley_proto::fuzzing::check_envelope_roundtrip;

fuzz_target!(|data: &[u8]| {
    if let Err(mismatch) = check_envelope_roundtrip(data) {
        panic!("{mismatch}");
    }
});
