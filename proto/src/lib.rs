//! Parley's protobuf wire types.
//!
//! Everything Parley publishes on its chat topics, and everything it accepts
//! there, is one [`v1::Envelope`]. The schemas live in
//! `proto/schemas/parley/v1/` (package `parley.v1`) and are compiled at
//! build time; `docs/payloads.md` explains every field for client authors.
//!
//! Besides the generated types this crate offers:
//! - [`decode_envelope`] and [`encode_envelope`], which also reject an
//!   envelope that carries nothing;
//! - `From` conversions from every oneof arm to its container, so that
//!   `Envelope::from(message)` or `typing.into()` builds an envelope in one
//!   line;
//! - [`fuzzing`], the decode/re-encode check run by the fuzz target.
//!
//! Size limits are deliberately not enforced here: they are configuration
//! and belong to the broker.

mod codec;
mod convert;
pub mod fuzzing;

pub use codec::{decode_envelope, encode_envelope, message_envelope, DecodeError};
pub use prost;

/// Types generated from the `parley.v1` protobuf package.
///
/// Each message is a struct, each `oneof` an enum in the module named after
/// its message (for example [`v1::envelope::Kind`]), and each protobuf enum a
/// Rust enum whose variants drop the enum-name prefix
/// (`ERROR_CODE_NOT_A_MEMBER` is [`v1::ErrorCode::NotAMember`]). Enum fields
/// are stored as `i32` so that values from newer schemas survive; use the
/// generated accessors (such as `code()`) to read them as enums.
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/parley.v1.rs"));
}
