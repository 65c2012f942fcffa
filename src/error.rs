//! The library's one error type: a [`ErrorKind`] saying which part failed, a message
//! that tells the user what to do, and the underlying cause (walk it with
//! `std::error::Error::source`). Binaries wrap it in `anyhow` at the edge.

use std::fmt;
use std::path::Path;

/// Which part of bouncelens an error comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A configuration file is missing, unreadable or invalid.
    Config,
    /// A rule file is unreadable or invalid, or rules conflict.
    Rules,
    /// The spool could not store or read a message.
    Spool,
    /// A listener could not bind or serve.
    Listen,
    /// Advice mail could not be composed, stored or sent.
    Advice,
    /// Any other I/O failure.
    Io,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::Config => "config",
            ErrorKind::Rules => "rules",
            ErrorKind::Spool => "spool",
            ErrorKind::Listen => "listen",
            ErrorKind::Advice => "advice",
            ErrorKind::Io => "io",
        })
    }
}

/// The bouncelens library error.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    kind: ErrorKind,
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            source: None,
        }
    }

    pub fn with_source(
        kind: ErrorKind,
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error {
            kind,
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }

    /// An I/O error on `path`, with the operation named (`"cannot read"`, ...).
    pub fn io(kind: ErrorKind, what: &str, path: &Path, err: std::io::Error) -> Self {
        Error::with_source(kind, format!("{what} {}: {err}", path.display()), err)
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
