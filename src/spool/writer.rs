//! The spool writer: one thread that owns the active segment and does **group commit**.
//!
//! Sessions hand it encoded records over a channel and wait. The writer takes the first
//! record, then everything else already queued, appends them all with one `write`,
//! makes them durable with one `fdatasync`, and only then acknowledges every message
//! in the batch. While it syncs, the next batch queues up, so under load one fsync
//! covers many messages (file-per-message fsync manages a few hundred per second on
//! ordinary disks; this scales with the number of concurrent senders).
//!
//! After acknowledging, the writer passes each message (bytes still in memory) to the
//! pipeline. That hand-off is a bounded channel: if classification falls behind, the
//! writer waits, sessions wait for their `250`, and senders slow down — memory stays
//! bounded. The pipeline never waits on the writer (done markers are fire-and-forget),
//! so the two cannot deadlock.
//!
//! The writer also rotates segments (by size, and by age so a quiet daemon's old
//! records can expire) and deletes old segments whose messages are all done and past
//! the retention period. It deletes only from the oldest end: a done marker always
//! lives in the same or a later segment than its message, so deleting oldest-first
//! never leaves a surviving message without its marker.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, info};

use super::recovery::{segment_path, SegStats};
use super::{now_micros, Spooled};
use crate::metrics::Metrics;

/// A request to the writer.
pub(crate) enum Cmd {
    /// A new message: acknowledged once durable, then passed to the pipeline. The
    /// record is `head` followed by the message bytes (`job.raw`).
    Message {
        head: Vec<u8>,
        job: Spooled,
        ack: oneshot::Sender<io::Result<()>>,
    },
    /// A done marker: written with the next batch and synced lazily (losing it in a
    /// power cut only means the message is processed once more).
    Done {
        seq: u64,
        at_micros: u64,
        record: Vec<u8>,
    },
    /// An attempt marker: acknowledged once written. It guards against the *process*
    /// dying, and the page cache outlives the process, so no fsync is needed.
    Attempt {
        record: Vec<u8>,
        ack: oneshot::Sender<io::Result<()>>,
    },
    /// Sync and exit.
    Shutdown,
}

/// How often idle maintenance runs (lazy sync, rotation by age, deletion).
const TICK: Duration = Duration::from_millis(500);
/// Most commands taken into one batch.
const MAX_BATCH: usize = 4096;

/// Waits up to `wait` for a first item, then takes whatever else is already queued
/// (up to `max`). Empty on timeout; `None` once every sender is gone.
pub(crate) fn recv_batch<T>(rx: &Receiver<T>, wait: Duration, max: usize) -> Option<Vec<T>> {
    let first = match rx.recv_timeout(wait) {
        Ok(c) => c,
        Err(RecvTimeoutError::Timeout) => return Some(Vec::new()),
        Err(RecvTimeoutError::Disconnected) => return None,
    };
    let mut batch = vec![first];
    while batch.len() < max {
        match rx.try_recv() {
            Ok(c) => batch.push(c),
            Err(_) => break,
        }
    }
    Some(batch)
}

/// Opens `path` for appending, creating it, and makes its directory entry durable.
pub(crate) fn create_durable(path: &Path) -> io::Result<File> {
    let f = OpenOptions::new().create(true).append(true).open(path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))?;
    Ok(f)
}

/// fsyncs a directory, so created, renamed or deleted entries survive a crash.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

pub(crate) struct Writer {
    dir: PathBuf,
    file: File,
    active: u64,
    active_len: u64,
    active_opened: Instant,
    segments: BTreeMap<u64, SegStats>,
    /// Messages not yet done: sequence number -> segment.
    live: HashMap<u64, u64>,
    segment_size: u64,
    retention: Duration,
    rotate_age: Duration,
    /// Bytes written since the last fsync (only done / attempt markers).
    unsynced: bool,
    last_maintenance: Instant,
    pipeline: mpsc::Sender<Spooled>,
    metrics: Metrics,
}

impl Writer {
    /// Starts a fresh active segment after the recovered ones.
    pub(crate) fn open(
        dir: &Path,
        mut segments: BTreeMap<u64, SegStats>,
        live: HashMap<u64, u64>,
        segment_size: u64,
        retention: Duration,
        pipeline: mpsc::Sender<Spooled>,
        metrics: Metrics,
    ) -> io::Result<Writer> {
        let active = segments.keys().next_back().map_or(0, |n| n + 1);
        let file = create_durable(&segment_path(dir, active))?;
        segments.insert(active, SegStats::default());
        Ok(Writer {
            dir: dir.to_path_buf(),
            file,
            active,
            active_len: 0,
            active_opened: Instant::now(),
            segments,
            live,
            segment_size,
            retention,
            rotate_age: (retention / 4).clamp(Duration::from_secs(1), Duration::from_secs(3600)),
            unsynced: false,
            last_maintenance: Instant::now(),
            pipeline,
            metrics,
        })
    }

    /// The writer thread's body; returns after `Shutdown` or when every handle is gone.
    pub(crate) fn run(mut self, rx: Receiver<Cmd>) {
        let mut out: Vec<u8> = Vec::with_capacity(1 << 20);
        let mut acks = Vec::new();
        let mut jobs = Vec::new();
        loop {
            let Some(batch) = recv_batch(&rx, TICK, MAX_BATCH) else {
                break;
            };
            let mut stop = false;
            let mut need_sync = false;
            let mut attempt_acks = Vec::new();
            let mut new_live = Vec::new();
            out.clear();
            if !batch.is_empty() {
                self.rotate_if_due();
            }
            for cmd in batch {
                match cmd {
                    Cmd::Message { head, job, ack } => {
                        out.extend_from_slice(&head);
                        out.extend_from_slice(&job.raw);
                        new_live.push(job.id.0);
                        jobs.push(job);
                        acks.push(ack);
                        need_sync = true;
                    }
                    Cmd::Done {
                        seq,
                        at_micros,
                        record,
                    } => {
                        out.extend_from_slice(&record);
                        self.mark_done(seq, at_micros);
                    }
                    Cmd::Attempt { record, ack } => {
                        out.extend_from_slice(&record);
                        attempt_acks.push(ack);
                    }
                    Cmd::Shutdown => stop = true,
                }
            }
            match self.append(&out, need_sync) {
                Ok(()) => {
                    for seq in new_live {
                        self.live.insert(seq, self.active);
                        self.stats(self.active).messages += 1;
                    }
                    for a in attempt_acks {
                        let _ = a.send(Ok(()));
                    }
                    for a in acks.drain(..) {
                        let _ = a.send(Ok(()));
                    }
                    let accepted = Instant::now();
                    for mut job in jobs.drain(..) {
                        job.accepted = Some(accepted);
                        // Fails only when the pipeline has stopped (shutdown): the
                        // message is on disk and recovery processes it next start.
                        let _ = self.pipeline.blocking_send(job);
                    }
                }
                Err(e) => {
                    error!(error = %e, segment = self.active, "spool write failed; \
                           messages in this batch were refused with 451 and a new segment is started");
                    let kind = e.kind();
                    for a in attempt_acks.into_iter().chain(acks.drain(..)) {
                        let _ = a.send(Err(io::Error::new(kind, e.to_string())));
                    }
                    jobs.clear();
                    if let Err(e) = self.rotate() {
                        error!(error = %e, "cannot start a new spool segment");
                    }
                }
            }
            self.metrics.spool_pending.set(self.live.len() as i64);
            if stop {
                break;
            }
            if self.last_maintenance.elapsed() >= TICK {
                self.maintenance();
            }
        }
        if self.unsynced {
            if let Err(e) = self.file.sync_data() {
                error!(error = %e, "final spool sync failed");
            }
        }
        debug!("spool writer stopped");
    }

    fn stats(&mut self, segment: u64) -> &mut SegStats {
        self.segments.entry(segment).or_default()
    }

    fn mark_done(&mut self, seq: u64, at_micros: u64) {
        if let Some(seg) = self.live.remove(&seq) {
            let s = self.stats(seg);
            s.done += 1;
            s.last_done_micros = s.last_done_micros.max(at_micros);
        }
    }

    /// Appends `bytes`; fsyncs when `sync` (or rolls the file back on failure).
    fn append(&mut self, bytes: &[u8], sync: bool) -> io::Result<()> {
        if !bytes.is_empty() {
            if let Err(e) = self.file.write_all(bytes) {
                // Cut off whatever part was written, so nothing unacknowledged remains.
                let _ = self.file.set_len(self.active_len);
                return Err(e);
            }
            self.active_len += bytes.len() as u64;
            self.unsynced = true;
        }
        if sync && self.unsynced {
            self.file.sync_data()?;
            self.unsynced = false;
        }
        Ok(())
    }

    fn rotate_if_due(&mut self) {
        let due = self.active_len >= self.segment_size
            || (self.active_len > 0 && self.active_opened.elapsed() >= self.rotate_age);
        if due {
            if let Err(e) = self.rotate() {
                error!(error = %e, "cannot rotate spool segment; continuing in the current one");
            }
        }
    }

    /// Closes the active segment (synced) and starts the next one.
    fn rotate(&mut self) -> io::Result<()> {
        if self.unsynced {
            self.file.sync_data()?;
            self.unsynced = false;
        }
        let next = self.active + 1;
        self.file = create_durable(&segment_path(&self.dir, next))?;
        self.segments.insert(next, SegStats::default());
        self.active = next;
        self.active_len = 0;
        self.active_opened = Instant::now();
        Ok(())
    }

    /// Lazy sync of markers, rotation by age, deletion of expired segments.
    fn maintenance(&mut self) {
        self.last_maintenance = Instant::now();
        if self.unsynced {
            if let Err(e) = self.file.sync_data() {
                error!(error = %e, "spool sync failed");
            } else {
                self.unsynced = false;
            }
        }
        self.rotate_if_due();
        let now = now_micros();
        let retention = self.retention.as_micros() as u64;
        let mut deleted = 0;
        while let Some((&no, s)) = self.segments.first_key_value() {
            let expired =
                s.done == s.messages && now.saturating_sub(s.last_done_micros) >= retention;
            if no == self.active || !expired {
                break;
            }
            let path = segment_path(&self.dir, no);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    error!(error = %e, segment = %path.display(), "cannot delete expired spool segment");
                    break;
                }
            }
            self.segments.remove(&no);
            deleted += 1;
        }
        if deleted > 0 {
            if let Err(e) = sync_dir(&self.dir) {
                error!(error = %e, "cannot sync spool directory");
            }
            info!(
                segments = deleted,
                "deleted spool segments whose messages are processed and past retention"
            );
        }
    }
}
