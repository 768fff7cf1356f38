//! Parley's reference client library.
//!
//! Parley's server never sees the plaintext of an end-to-end encrypted
//! message: a `ChatMessage` body of kind `ciphertext` carries one opaque byte
//! string per recipient device, which the server stores and relays untouched.
//! This crate holds the client side of that scheme, free of any I/O:
//!
//! - [`e2e`]: device keys, the public bundles a device publishes to the key
//!   directory, and encryption to one device with an X3DH-style key
//!   agreement, and ([`e2e::wire`]) the encrypted `ChatMessage` bodies built
//!   from it. The protocol is described in `docs/e2e.md`.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod e2e;
