//! The daemon's tests, in one test binary (one compile and link instead of several keeps
//! the release test run short). Real sockets on 127.0.0.1:0, real files in tempdirs.
//!
//! * `smtp_session` — the SMTP / LMTP listener as a sending MTA sees it;
//! * `pipeline` — bounces end to end (events log, metrics), recovery, quarantine,
//!   segment deletion, promtool;
//! * `process` — the `bouncelens` binary: SIGKILL under load, SIGTERM, SIGHUP,
//!   start-up errors, check-config, systemd notify and unit verification.
//!
//! Run one part with e.g. `cargo test --test daemon_suite smtp_session::`.

#[allow(dead_code)]
#[path = "daemon_suite/support.rs"]
mod support;

#[path = "daemon_suite/pipeline.rs"]
mod pipeline;
#[path = "daemon_suite/process.rs"]
mod process;
#[path = "daemon_suite/smtp_session.rs"]
mod smtp_session;
