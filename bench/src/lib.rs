//! `parley-bench`: an MQTT load generator that works against any broker, plus
//! the runner that compares Parley with other brokers on this machine.
//!
//! The scenarios are plain async functions ([`scenario::conn::run`],
//! [`scenario::pubsub::run`], [`scenario::chat::run`]) so tests and other
//! crates can drive them without the command line. [`app::run`] is what the `parley-bench` binary calls.

#![warn(missing_docs)]

pub mod app;
pub mod busprobe;
pub mod cli;
pub mod compare;
pub mod credentials;
pub mod errors;
pub mod limits;
pub mod mqtt;
pub mod payload;
pub mod progress;
pub mod report;
pub mod scenario;
pub mod source_addr;
