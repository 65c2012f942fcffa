//! bouncelens: receive bounces (DSNs / NDRs) over SMTP or LMTP, keep them durably,
//! classify every failed recipient with reviewable rule packs, export Prometheus
//! metrics, and send annotated advice mail.
//!
//! The library is split by concern; the `bouncelens` binary is a thin CLI over it.
//! * [`parse`] and [`classify`] are pure (bytes in, rows out) and used by the CLI,
//!   the daemon and tests alike;
//! * [`rules`] loads and compiles the rule packs;
//! * [`config`] is the validated configuration;
//! * [`server`] runs the daemon: [`smtp`] listener, [`spool`], pipeline, [`metrics`]
//!   endpoint and [`advice`] mail.

pub mod advice;
pub mod classify;
pub mod config;
pub mod error;
pub mod events;
pub mod http;
pub mod json;
pub mod metrics;
pub mod model;
pub mod parse;
pub mod phrases;
pub mod pipeline;
pub mod rules;
pub mod server;
pub mod smtp;
pub mod spool;
pub mod verp;

pub use error::{Error, ErrorKind, Result};

/// Tells long-running tasks to stop: `true` once shutdown has begun.
/// Every service takes one (`watch` so late subscribers still see it).
pub type Shutdown = tokio::sync::watch::Receiver<bool>;
