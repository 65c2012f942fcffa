//! The events log: one JSON line per classify row, plus the message's `queue_id`,
//! `received_at`, `envelope_from` and `envelope_to` (SPEC "Queue ids and the events
//! log"). It is the audit trail users grep and the feed other systems tail.
//!
//! The pipeline's classification threads append to it directly: each appends the
//! lines of its whole batch with one `write` (a message's lines are contiguous). The
//! lines are made durable by [`EventsLog::sync`], which the pipeline calls before it
//! lets the spool write the messages' done markers, so a crash can duplicate lines
//! but never lose them. Why the sync is separate: under load one `fdatasync` every
//! 100 ms covers hundreds of lines, where a sync per batch of a few messages was about
//! a quarter of the classification threads' CPU (perf, 32 SMTP sessions). The write happens under a lock, the sync outside it
//! (one sync covers everything written before it started). There is no writer
//! thread of its own: handing lines to one cost two thread wake-ups per batch, more
//! CPU than the write.
//!
//! [`EventsLog::reopen`] (on SIGHUP) reopens the file by name, for logrotate.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tracing::{error, info};

use crate::error::{Error, ErrorKind, Result};
use crate::json;
use crate::model::ProcessedMessage;

/// Appends the JSON lines for a processed message, newline-terminated, to `out`:
/// each row's members, then `queue_id`, `received_at`, `envelope_from` and
/// `envelope_to`.
pub fn render_into(msg: &ProcessedMessage, out: &mut Vec<u8>) {
    out.reserve(1024 * msg.rows.len().max(1));
    for row in &msg.rows {
        out.push(b'{');
        json::write_row_fields(row, out);
        let mut more = json::Members::after_others(out);
        more.str("queue_id", &msg.queue_id);
        more.str("received_at", &msg.received_at);
        more.str("envelope_from", &msg.envelope.mail_from);
        more.str_array("envelope_to", &msg.envelope.rcpt_to);
        out.extend_from_slice(b"}\n");
    }
}

/// The events log, shared by the classification threads.
pub struct EventsLog {
    path: PathBuf,
    file: Mutex<Current>,
}

/// The open file and its length (where a failed write is cut back to).
struct Current {
    file: Arc<File>,
    len: u64,
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
        let len = file
            .metadata()
            .map_err(|e| err("cannot check events log", path, e))?
            .len();
        Ok(EventsLog {
            path: path.to_path_buf(),
            file: Mutex::new(Current {
                file: Arc::new(file),
                len,
            }),
        })
    }

    fn current(&self) -> std::sync::MutexGuard<'_, Current> {
        // A panic while holding the lock cannot leave `Current` inconsistent (it only
        // holds plain values), so a poisoned lock is still usable.
        self.file.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends `lines` (whole lines). They are durable after the next [`EventsLog::sync`].
    pub fn append(&self, lines: &[u8]) -> io::Result<()> {
        let mut cur = self.current();
        let start = cur.len;
        if let Err(e) = (&*cur.file).write_all(lines) {
            error!(path = %self.path.display(), error = %e, "cannot write events log");
            // Cut a partly written batch, so a retry does not follow half a line.
            let _ = cur.file.set_len(start);
            return Err(e);
        }
        cur.len += lines.len() as u64;
        Ok(())
    }

    /// Makes every line appended before this call durable. Blocking: call it from a
    /// thread that may block, not from an async task.
    pub fn sync(&self) -> io::Result<()> {
        let file = self.current().file.clone();
        file.sync_data().inspect_err(|e| {
            error!(path = %self.path.display(), error = %e, "cannot sync events log");
        })
    }

    /// Reopens the file by name (after logrotate moved it); on failure keeps writing
    /// the old one.
    pub fn reopen(&self) {
        match open_append(&self.path).and_then(|f| Ok((f.metadata()?.len(), f))) {
            Ok((len, f)) => {
                let mut cur = self.current();
                let _ = cur.file.sync_data();
                *cur = Current {
                    file: Arc::new(f),
                    len,
                };
                info!(path = %self.path.display(), "events log reopened");
            }
            Err(e) => {
                error!(path = %self.path.display(), error = %e, "cannot reopen events log; still writing the old file")
            }
        }
    }

    /// Syncs the file (the pipeline has synced what it marked done; this is belt and
    /// braces for shutdown).
    pub fn close(&self) {
        let _ = self.current().file.sync_data();
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

    /// Appends land in order; after the file is moved away (logrotate), `reopen`
    /// starts a new file by the same name.
    #[test]
    fn appends_and_reopen_after_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("e.jsonl");
        let log = EventsLog::open(&p).unwrap();
        log.append(b"{\"a\":1}\n").unwrap();
        log.append(b"{\"b\":2}\n").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"{\"a\":1}\n{\"b\":2}\n");
        let rotated = dir.path().join("e.jsonl.1");
        std::fs::rename(&p, &rotated).unwrap();
        log.append(b"{\"c\":3}\n").unwrap();
        log.reopen();
        log.append(b"{\"d\":4}\n").unwrap();
        log.close();
        assert_eq!(
            std::fs::read(&rotated).unwrap(),
            b"{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n"
        );
        assert_eq!(std::fs::read(&p).unwrap(), b"{\"d\":4}\n");
    }
}
