//! The durable spool: a message is acknowledged (`250 ... queued as ID`) only after its
//! envelope and bytes are on disk and fsynced, and it stays there until the pipeline
//! has written its events and handed it to advice.
//!
//! Layout of `[spool] dir`:
//! * `NNNNNNNNNN.seg` — append-only segment files of checksummed records (see
//!   [`segment`]): messages, and markers saying a message is done;
//! * `quarantine/ID.eml` + `ID.json` — messages that could not be processed, kept for
//!   a person to look at (never retried automatically);
//! * `lock` — held while a daemon uses the spool, so two cannot share one.
//!
//! Why segments with group commit rather than a file per message: one fsync per
//! message caps ingest at the disk's sync rate (hundreds per second); one fsync per
//! batch of everything that finished DATA meanwhile scales with concurrency
//! ([`writer`]). Recovery ([`recovery`]) re-reads the segments at start, cuts torn
//! tails, and replays every message without a done marker: delivery into the pipeline
//! is at-least-once (a crash between the events log and the done marker means one
//! message is processed twice; it is never processed zero times).

pub mod recovery;
pub mod segment;
mod writer;

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};

use crate::config::SpoolConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::metrics::Metrics;
use crate::model::Envelope;
use crate::Shutdown;
pub use recovery::Pending;
use segment::Outcome;
use writer::{Cmd, Writer};

/// After this many recovery attempts that died mid-processing, a message is
/// quarantined instead of tried again.
pub const MAX_ATTEMPTS: u32 = 3;

/// A queue id, shown as upper-case hex like Postfix's short ids. It is a sequence
/// number that starts above both the clock (µs since the epoch) and every id already
/// in the spool, so ids stay unique across restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueId(pub u64);

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}", self.0)
    }
}

impl FromStr for QueueId {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        u64::from_str_radix(s, 16).map(QueueId)
    }
}

/// A spooled message on its way to the pipeline.
#[derive(Debug)]
pub struct Spooled {
    pub id: QueueId,
    /// When it was received (µs since the epoch).
    pub received_micros: u64,
    pub envelope: Envelope,
    pub raw: Arc<[u8]>,
    /// When it was acknowledged, for live messages (the latency histogram's start).
    pub accepted: Option<Instant>,
    /// Earlier processing attempts that never finished (recovered messages only).
    pub attempts: u32,
    /// Signalled once processing has finished (recovery uses it to retry suspects
    /// one at a time).
    pub finished: Option<oneshot::Sender<()>>,
}

/// Microseconds since the Unix epoch.
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// RFC 3339 UTC time (µs precision) for a µs timestamp.
pub fn rfc3339(micros: u64) -> String {
    let t = UNIX_EPOCH + std::time::Duration::from_micros(micros);
    humantime::format_rfc3339_micros(t).to_string()
}

/// Handle to the spool; cheap to clone.
#[derive(Clone)]
pub struct Spool {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    tx: std_mpsc::Sender<Cmd>,
    next_seq: AtomicU64,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Held (locked) for the spool's lifetime.
    _lock: File,
}

fn spool_err(what: &str, path: &Path, e: std::io::Error) -> Error {
    let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
        " (make the directory writable by the user bouncelens runs as, or set [spool] dir)"
    } else {
        ""
    };
    Error::with_source(
        ErrorKind::Spool,
        format!("{what} {}: {e}{hint}", path.display()),
        e,
    )
}

impl Spool {
    /// Opens (creating if needed) the spool, runs recovery, and starts the writer.
    /// Returns the handle and the messages still to process, in arrival order;
    /// feed those to the pipeline with [`replay`].
    pub fn open(
        cfg: &SpoolConfig,
        metrics: Metrics,
        pipeline: mpsc::Sender<Spooled>,
    ) -> Result<(Spool, Vec<Pending>)> {
        let dir = cfg.dir.clone();
        std::fs::create_dir_all(dir.join("quarantine"))
            .map_err(|e| spool_err("cannot create spool directory", &dir, e))?;
        let lock_path = dir.join("lock");
        let lock = File::create(&lock_path)
            .map_err(|e| spool_err("cannot write in spool directory", &dir, e))?;
        if lock.try_lock().is_err() {
            return Err(Error::new(
                ErrorKind::Spool,
                format!(
                    "spool {} is in use by another bouncelens process (stop it, or give this one its own [spool] dir)",
                    dir.display()
                ),
            ));
        }
        let rec = recovery::recover(&dir)?;
        if !rec.pending.is_empty() || rec.truncated_bytes > 0 {
            info!(
                pending = rec.pending.len(),
                truncated_bytes = rec.truncated_bytes,
                damaged_bytes = rec.damaged_bytes,
                "spool recovered"
            );
        }
        let live: HashMap<u64, u64> = rec.pending.iter().map(|p| (p.seq, p.segment)).collect();
        metrics.spool_pending.set(live.len() as i64);
        let writer = Writer::open(
            &dir,
            rec.segments,
            live,
            cfg.segment_size,
            cfg.retention,
            pipeline,
            metrics,
        )
        .map_err(|e| spool_err("cannot create a spool segment in", &dir, e))?;
        let (tx, rx) = std_mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("spool-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| spool_err("cannot start the spool writer for", &dir, e))?;
        let next_seq = now_micros().max(rec.max_seq + 1);
        Ok((
            Spool {
                inner: Arc::new(Inner {
                    dir,
                    tx,
                    next_seq: AtomicU64::new(next_seq),
                    writer: Mutex::new(Some(handle)),
                    _lock: lock,
                }),
            },
            rec.pending,
        ))
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    fn send(&self, cmd: Cmd) -> Result<()> {
        self.inner
            .tx
            .send(cmd)
            .map_err(|_| Error::new(ErrorKind::Spool, "the spool is shut down"))
    }

    /// Stores a message durably; returns its queue id once it is fsynced.
    pub async fn append(&self, envelope: Envelope, raw: Vec<u8>) -> Result<QueueId> {
        let id = QueueId(self.inner.next_seq.fetch_add(1, Ordering::Relaxed));
        let received_micros = now_micros();
        let head = segment::encode_message_head(id.0, received_micros, &envelope, &raw);
        let (ack, done) = oneshot::channel();
        let job = Spooled {
            id,
            received_micros,
            envelope,
            raw: raw.into(),
            accepted: None,
            attempts: 0,
            finished: None,
        };
        self.send(Cmd::Message { head, job, ack })?;
        match done.await {
            Ok(Ok(())) => Ok(id),
            Ok(Err(e)) => Err(Error::with_source(
                ErrorKind::Spool,
                "cannot store message in the spool",
                e,
            )),
            Err(_) => Err(Error::new(ErrorKind::Spool, "the spool is shut down")),
        }
    }

    /// Records that a message is done; it will not be processed again.
    pub fn mark_done(&self, id: QueueId, quarantined: bool) {
        let at_micros = now_micros();
        let outcome = if quarantined {
            Outcome::Quarantined
        } else {
            Outcome::Processed
        };
        let record = segment::encode_done(id.0, at_micros, outcome);
        if self
            .send(Cmd::Done {
                seq: id.0,
                at_micros,
                record,
            })
            .is_err()
        {
            warn!(queue_id = %id, "spool closed before the done marker was written; the message will be processed again at next start");
        }
    }

    /// Records that recovery is about to process a message again.
    pub async fn record_attempt(&self, id: QueueId) -> Result<()> {
        let (ack, done) = oneshot::channel();
        self.send(Cmd::Attempt {
            record: segment::encode_attempt(id.0),
            ack,
        })?;
        match done.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Error::with_source(
                ErrorKind::Spool,
                "cannot write attempt marker",
                e,
            )),
            Err(_) => Err(Error::new(ErrorKind::Spool, "the spool is shut down")),
        }
    }

    /// Reads a pending message back from its segment.
    pub fn read(&self, p: &Pending) -> Result<segment::MessageRecord> {
        let path = recovery::segment_path(&self.inner.dir, p.segment);
        let f = File::open(&path).map_err(|e| spool_err("cannot open", &path, e))?;
        let mut buf = Vec::new();
        match segment::read_at(&f, p.offset, &mut buf) {
            Ok(Some(segment::Kind::Message)) => segment::decode_message(&buf)
                .map_err(|e| Error::new(ErrorKind::Spool, format!("{}: {e}", path.display()))),
            Ok(_) => Err(Error::new(
                ErrorKind::Spool,
                format!(
                    "{}: no message record at offset {}",
                    path.display(),
                    p.offset
                ),
            )),
            Err(e) => Err(spool_err("cannot read", &path, e)),
        }
    }

    /// Sets a message aside in `quarantine/` (bytes and a JSON note saying why) and
    /// marks it done. Returns the path of the saved message.
    pub async fn quarantine(&self, job: &Spooled, why: &str) -> Result<PathBuf> {
        #[derive(Serialize)]
        struct Note<'a> {
            queue_id: String,
            received_at: String,
            envelope: &'a Envelope,
            reason: &'a str,
        }
        let note = serde_json::to_vec_pretty(&Note {
            queue_id: job.id.to_string(),
            received_at: rfc3339(job.received_micros),
            envelope: &job.envelope,
            reason: why,
        })
        .expect("note serializes");
        let dir = self.inner.dir.join("quarantine");
        let id = job.id.to_string();
        let raw = job.raw.clone();
        let path = tokio::task::spawn_blocking(move || -> std::io::Result<PathBuf> {
            let eml = dir.join(format!("{id}.eml"));
            write_durable(&eml, &raw)?;
            write_durable(&dir.join(format!("{id}.json")), &note)?;
            writer::sync_dir(&dir)?;
            Ok(eml)
        })
        .await
        .map_err(|e| Error::new(ErrorKind::Spool, format!("quarantine task failed: {e}")))?
        .map_err(|e| spool_err("cannot write quarantine file in", &self.inner.dir, e))?;
        self.mark_done(job.id, true);
        Ok(path)
    }

    /// Stops the writer after everything queued so far is written and synced.
    pub async fn close(&self) {
        let _ = self.inner.tx.send(Cmd::Shutdown);
        let handle = self.inner.writer.lock().expect("not poisoned").take();
        if let Some(h) = handle {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
    }
}

/// Writes `bytes` to `path` via a temporary file, fsynced, then renamed into place.
fn write_durable(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// How many recovered messages share one batch of attempt markers.
const REPLAY_BATCH: usize = 64;

/// Feeds recovered messages to the pipeline, oldest first. Each gets an attempt marker
/// first; messages that already have one (the daemon died while processing them) are
/// run one at a time, so a message that crashes the daemon cannot take innocent
/// neighbours into quarantine with it.
pub async fn replay(
    spool: Spool,
    pending: Vec<Pending>,
    pipeline: mpsc::Sender<Spooled>,
    stop: Shutdown,
) {
    let total = pending.len();
    for chunk in pending.chunks(REPLAY_BATCH) {
        if *stop.borrow() {
            return;
        }
        let s = spool.clone();
        let owned = chunk.to_vec();
        let read = tokio::task::spawn_blocking(move || {
            owned.iter().map(|p| (*p, s.read(p))).collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        let mut jobs = Vec::new();
        for (p, r) in read {
            let rec = match r {
                Ok(rec) => rec,
                Err(e) => {
                    error!(error = %e, queue_id = %QueueId(p.seq), "cannot read spooled message; it stays in the spool");
                    continue;
                }
            };
            if p.attempts < MAX_ATTEMPTS {
                if let Err(e) = spool.record_attempt(QueueId(p.seq)).await {
                    error!(error = %e, "cannot record processing attempt; replay stopped");
                    return;
                }
            }
            jobs.push(Spooled {
                id: QueueId(p.seq),
                received_micros: rec.received_micros,
                envelope: rec.envelope,
                raw: rec.raw.into(),
                accepted: None,
                attempts: p.attempts,
                finished: None,
            });
        }
        for mut job in jobs {
            let suspect = job.attempts > 0;
            let (tx, rx) = oneshot::channel();
            if suspect {
                job.finished = Some(tx);
            }
            if pipeline.send(job).await.is_err() {
                return;
            }
            if suspect {
                let _ = rx.await;
            }
        }
    }
    if total > 0 {
        info!(
            messages = total,
            "recovered messages handed to the pipeline"
        );
    }
}
