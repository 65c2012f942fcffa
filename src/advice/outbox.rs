//! The durable outbox: advice mail as plain `.eml` files.
//!
//! A mail is written (atomically, fsynced) before [`super::Advisor::submit`] returns,
//! so a crash or restart never loses it. Files are ordinary messages an admin can open,
//! named `<id>.eml` with a time-ordered id; the envelope is read back from the message
//! itself (`To:`, and the audience from `X-Bouncelens-Advice`), so there is no second
//! file to keep in step.
//!
//! With a smarthost the outbox is a queue: `queue/` holds mail waiting for delivery,
//! `failed/` what was given up (kept, never silently dropped). Without one (outbox
//! mode) mail is written straight into the outbox directory for people to read.
//!
//! One process owns an outbox at a time (`lock`, an advisory file lock): two daemons
//! sharing one would send every queued mail twice.

use std::path::{Path, PathBuf};

use lettre::address::{Address, Envelope};

use super::compose::Composed;
use super::route::ADVICE_HEADER;
use super::store;
use crate::error::{Error, ErrorKind, Result};

/// The directories under `outbox_dir`.
#[derive(Debug)]
pub struct Outbox {
    /// Held (locked) for as long as this outbox is open.
    _lock: std::fs::File,
    root: PathBuf,
    queue: PathBuf,
    failed: PathBuf,
    tmp: PathBuf,
}

/// A mail waiting in `queue/`.
#[derive(Debug, Clone)]
pub struct Queued {
    pub id: String,
    pub path: PathBuf,
    pub envelope: Envelope,
    /// The `audience` metric label.
    pub audience: String,
    pub created_ms: u64,
}

impl Outbox {
    /// Opens (creating) the outbox under `root`, and locks it for this process.
    pub fn open(root: &Path) -> Result<Outbox> {
        store::ensure_dir(root)?;
        let lock_path = root.join("lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::io(ErrorKind::Advice, "cannot open", &lock_path, e))?;
        lock.try_lock().map_err(|e| {
            Error::with_source(
                ErrorKind::Advice,
                format!(
                    "{} is in use by another bouncelens (run one daemon per [advice] outbox_dir)",
                    root.display()
                ),
                e,
            )
        })?;
        let o = Outbox {
            _lock: lock,
            root: root.to_path_buf(),
            queue: root.join("queue"),
            failed: root.join("failed"),
            tmp: root.join("tmp"),
        };
        for d in [&o.queue, &o.failed, &o.tmp] {
            store::ensure_dir(d)?;
        }
        Ok(o)
    }

    /// The staging directory for atomic writes on this file system.
    pub fn tmp_dir(&self) -> &Path {
        &self.tmp
    }

    /// Outbox mode: writes `mail` as `<outbox_dir>/<id>.eml` for people to read.
    pub fn write_final(&self, mail: &Composed) -> Result<PathBuf> {
        let path = self.root.join(format!("{}.eml", mail.id));
        store::write_atomic(&self.tmp, &path, &mail.bytes)?;
        Ok(path)
    }

    /// Smarthost mode: queues `mail` for delivery.
    pub fn enqueue(&self, mail: &Composed) -> Result<PathBuf> {
        let path = self.queue.join(format!("{}.eml", mail.id));
        store::write_atomic(&self.tmp, &path, &mail.bytes)?;
        Ok(path)
    }

    /// The files in `queue/`, oldest first.
    pub fn queued_paths(&self) -> Result<Vec<PathBuf>> {
        store::list_eml(&self.queue)
    }

    /// Reads a queued mail's envelope. A file that is not a mail we can send (no
    /// recipients) is moved to `failed/`, logged, and `None` returned.
    pub fn load(&self, path: &Path) -> Result<Option<Queued>> {
        let bytes = std::fs::read(path)
            .map_err(|e| Error::io(ErrorKind::Advice, "cannot read queued advice", path, e))?;
        let id = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        match envelope_of(&bytes) {
            Some((envelope, audience)) => Ok(Some(Queued {
                created_ms: store::created_ms(&id).unwrap_or_else(store::now_ms),
                id,
                path: path.to_path_buf(),
                envelope,
                audience,
            })),
            None => {
                tracing::error!(file = %path.display(), "queued advice has no usable To:; moved to failed/");
                self.give_up_path(path)?;
                Ok(None)
            }
        }
    }

    /// Delivered: forget it.
    pub fn done(&self, q: &Queued) -> Result<()> {
        store::remove_durable(&q.path)
    }

    /// Given up: keep it in `failed/`.
    pub fn give_up(&self, q: &Queued) -> Result<PathBuf> {
        self.give_up_path(&q.path)
    }

    fn give_up_path(&self, path: &Path) -> Result<PathBuf> {
        let dest = self.failed.join(path.file_name().unwrap_or_default());
        store::move_durable(path, &dest)?;
        Ok(dest)
    }

    /// How many mails wait in `queue/`.
    pub fn pending(&self) -> usize {
        store::list_eml(&self.queue).map_or(0, |v| v.len())
    }
}

/// The envelope (null sender, `To:` recipients) and audience label of a queued mail.
fn envelope_of(bytes: &[u8]) -> Option<(Envelope, String)> {
    let msg = mail_parser::MessageParser::default().parse_headers(bytes)?;
    let to: Vec<Address> = msg
        .to()?
        .iter()
        .filter_map(|a| a.address()?.parse().ok())
        .collect();
    let audience = msg
        .header_raw(ADVICE_HEADER)
        .and_then(|v| {
            v.split(';')
                .find_map(|p| p.trim().strip_prefix("audience=").map(str::to_string))
        })
        .filter(|a| a == "sender" || a == "admin")
        .unwrap_or_else(|| "unknown".to_string());
    let envelope = Envelope::new(None, to).ok()?;
    Some((envelope, audience))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_process_owns_an_outbox() {
        let d = tempfile::tempdir().unwrap();
        let first = Outbox::open(d.path()).unwrap();
        let e = Outbox::open(d.path()).unwrap_err();
        assert!(
            e.to_string().contains("in use by another bouncelens"),
            "{e}"
        );
        drop(first);
        Outbox::open(d.path()).unwrap();
    }
}
