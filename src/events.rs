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

/// Cuts a partial last line (left by a crash mid-write) so the next line does not
/// run into it. Its message was never marked done, so it is written again in full.
/// Returns the bytes cut.
fn repair_tail(file: &File) -> io::Result<u64> {
    use std::os::unix::fs::FileExt;
    let len = file.metadata()?.len();
    let mut end = len;
    let mut chunk = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        let buf = &mut chunk[..(end - start) as usize];
        file.read_exact_at(buf, start)?;
        if let Some(i) = buf.iter().rposition(|&b| b == b'\n') {
            end = start + i as u64 + 1;
            break;
        }
        end = start;
    }
    if end < len {
        file.set_len(end)?;
        file.sync_all()?;
    }
    Ok(len - end)
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
                format!(
                    "{what} {}: {e}{hint}",
                    std::path::absolute(p)
                        .unwrap_or_else(|_| p.to_path_buf())
                        .display()
                ),
                e,
            )
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| err("cannot create events log directory", dir, e))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(path)
            .map_err(|e| err("cannot open events log", path, e))?;
        let cut = repair_tail(&file).map_err(|e| err("cannot check events log", path, e))?;
        if cut > 0 {
            info!(path = %path.display(), bytes = cut, "cut a partial last line left by a crash");
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_last_line_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("e.jsonl");
        std::fs::write(&p, b"{\"a\":1}\n{\"b\":").unwrap();
        let f = OpenOptions::new().read(true).append(true).open(&p).unwrap();
        assert_eq!(repair_tail(&f).unwrap(), 5);
        assert_eq!(std::fs::read(&p).unwrap(), b"{\"a\":1}\n");
        assert_eq!(repair_tail(&f).unwrap(), 0);
        std::fs::write(&p, b"no newline at all").unwrap();
        assert_eq!(repair_tail(&f).unwrap(), 17);
        assert_eq!(std::fs::read(&p).unwrap(), b"");
    }
}
