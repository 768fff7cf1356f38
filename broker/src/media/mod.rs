//! Media: files uploaded to, and downloaded from, an S3-compatible bucket
//! through presigned URLs. Parley never carries the bytes itself; it checks
//! who may upload or download what, and signs a short-lived URL for it.
//!
//! - [`config`]: [`MediaConfig`], the `[media]` section.
//! - [`keys`]: [`ObjectKey`], unguessable object keys scoped to a conversation.
//! - [`presign`]: [`Presigner`], which checks uploads against the limits and
//!   signs the URLs (AWS Signature Version 4, query-string form).
//!
//! The HTTP endpoints are in `crate::http::media`; the message referring to
//! an uploaded object is an ordinary chat message with a `MediaRef` body.

pub mod config;
pub mod keys;
pub mod presign;

pub use config::MediaConfig;
pub use keys::{InvalidObjectKey, ObjectKey};
pub use presign::{PresignedRequest, Presigner, UploadRefused};
