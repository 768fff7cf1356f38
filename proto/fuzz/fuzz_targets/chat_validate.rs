//! Fuzz target: feeds arbitrary topics and payloads to chat-core's entry
//! points for untrusted input (topic parsing, ACL, id validation, message
//! validation); any panic or broken promise is a crash (see
//! `chat_core::fuzzing`).

#![no_main]

use chat_core::fuzzing::check_client_input;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(broken) = check_client_input(data) {
        panic!("{broken}");
    }
});
