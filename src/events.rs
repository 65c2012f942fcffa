//! The events log: one JSON line per classify row, plus the message's `queue_id`,
//! `received_at`, `envelope_from` and `envelope_to` (SPEC "Queue ids and the events
//! log"). It is the audit trail users grep and the feed other systems tail.
//!
//! Appends go through one writer thread with group commit, like the spool: lines of
//! every message classified meanwhile are written together and fsynced once, and each
//! message's `append` returns only when its lines are durable. Only then is the
//! message marked done in the spool, so a crash can duplicate lines but never lose
//! them. A message's lines are written contiguously.
//!
//! [`EventsLog::reopen`] (on SIGHUP) reopens the file by name, for logrotate.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::oneshot;
use tracing::{error, info};

use crate::error::{Error, ErrorKind, Result};
use crate::model::{ProcessedMessage, Row};
use crate::spool::recv_batch;

/// One events-log line.
#[derive(Serialize)]
struct EventLine<'a> {
    #[serde(flatten)]
    row: &'a Row,
    queue_id: &'a str,
    received_at: &'a str,
    envelope_from: &'a str,
    envelope_to: &'a [String],
}

/// The JSON lines for a processed message, newline-terminated.
pub fn render(msg: &ProcessedMessage) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024 * msg.rows.len().max(1));
    for row in &msg.rows {
        let line = EventLine {
            row,
            queue_id: &msg.queue_id,
            received_at: &msg.received_at,
            envelope_from: &msg.envelope.mail_from,
            envelope_to: &msg.envelope.rcpt_to,
        };
        serde_json::to_writer(&mut out, &line).expect("rows serialize");
        out.push(b'\n');
    }
    out
}

enum Cmd {
    Append {
        lines: Vec<u8>,
        ack: oneshot::Sender<io::Result<()>>,
    },
    Reopen,
    Shutdown,
}

/// Handle to the events log writer.
pub struct EventsLog {
    tx: std_mpsc::Sender<Cmd>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl EventsLog {
    /// Opens (creating) the log and its directory, and starts the writer thread.
    pub fn open(path: &Path) -> Result<EventsLog> {
        let err = |what: &str, p: &Path, e: io::Error| {
            let hint = if e.kind() == io::ErrorKind::PermissionDenied {
                " (make it writable by the user bouncelens runs as, or set [spool] events_log)"
            } else {
                ""
            };
            Error::with_source(
                ErrorKind::Io,
                format!("{what} {}: {e}{hint}", p.display()),
                e,
            )
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| err("cannot create events log directory", dir, e))?;
        }
        let file = open_append(path).map_err(|e| err("cannot open events log", path, e))?;
        let (tx, rx) = std_mpsc::channel();
        let path = path.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("events-writer".into())
            .spawn(move || run(file, path, rx))
            .map_err(|e| Error::with_source(ErrorKind::Io, "cannot start events writer", e))?;
        Ok(EventsLog {
            tx,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Appends `lines`; returns once they are fsynced.
    pub async fn append(&self, lines: Vec<u8>) -> io::Result<()> {
        let (ack, done) = oneshot::channel();
        self.tx
            .send(Cmd::Append { lines, ack })
            .map_err(|_| io::Error::other("events log is closed"))?;
        done.await
            .unwrap_or_else(|_| Err(io::Error::other("events log is closed")))
    }

    /// Reopens the file by name (after logrotate moved it).
    pub fn reopen(&self) {
        let _ = self.tx.send(Cmd::Reopen);
    }

    /// Writes what is queued, syncs and stops the writer.
    pub async fn close(&self) {
        let _ = self.tx.send(Cmd::Shutdown);
        let handle = self.thread.lock().expect("not poisoned").take();
        if let Some(h) = handle {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
    }
}

fn run(mut file: File, path: PathBuf, rx: std_mpsc::Receiver<Cmd>) {
    let mut buf = Vec::with_capacity(256 * 1024);
    while let Some(batch) = recv_batch(&rx, Duration::from_secs(3600), 4096) {
        let mut acks = Vec::new();
        let mut stop = false;
        buf.clear();
        for cmd in batch {
            match cmd {
                Cmd::Append { lines, ack } => {
                    buf.extend_from_slice(&lines);
                    acks.push(ack);
                }
                Cmd::Reopen => match open_append(&path) {
                    Ok(f) => {
                        let _ = file.sync_data();
                        file = f;
                        info!(path = %path.display(), "events log reopened");
                    }
                    Err(e) => {
                        error!(path = %path.display(), error = %e, "cannot reopen events log; still writing the old file")
                    }
                },
                Cmd::Shutdown => stop = true,
            }
        }
        if !acks.is_empty() {
            let before = file.metadata().map(|m| m.len());
            let result = file.write_all(&buf).and_then(|()| file.sync_data());
            if let Err(e) = &result {
                error!(path = %path.display(), error = %e, "cannot write events log");
                // Cut a partly written batch, so a retry does not follow half a line.
                if let Ok(len) = before {
                    let _ = file.set_len(len);
                }
            }
            for a in acks {
                let _ = a.send(
                    result
                        .as_ref()
                        .map(|_| ())
                        .map_err(|e| io::Error::new(e.kind(), e.to_string())),
                );
            }
        }
        if stop {
            break;
        }
    }
}
