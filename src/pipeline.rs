//! The processing pipeline: spooled message -> parse + classify -> events log ->
//! metrics -> advice hand-off -> done marker in the spool.
//!
//! Why in this order: the events log is the record of truth, so it is written first;
//! metrics and the log line follow, then advice; the done marker comes last, and only
//! once the events log has been synced past the message's lines. A crash anywhere
//! before the marker is durable means the message is processed again after restart
//! (at-least-once), never lost.
//!
//! Why threads of its own: parsing and classification are CPU work and must not stall
//! the reactor that serves SMTP. One classification thread per core takes whatever
//! the spool writer has handed over (a batch: one message at low load, up to
//! [`MAX_BATCH`] under load), classifies it, appends its events, records metrics,
//! logs and hands off to advice — all on the same thread. An earlier design passed
//! each batch through a tokio task, the blocking pool and an events-writer thread;
//! under load those thread wake-ups cost about as much CPU as the classification
//! itself. The few async steps (advice hand-off, quarantine, back-off sleeps) run with
//! the runtime handle's `block_on`.
//!
//! Why done markers wait: they are collected in a [`DoneQueue`] and written every
//! [`DONE_DELAY`], after one events-log sync covers them all. A sync per batch made
//! the classification threads sleep in `fdatasync` (and compete with the spool's own
//! syncs for the disk) several hundred times a second under load; the delay only
//! means that after a crash up to [`DONE_DELAY`] more of the work is done twice. A recovered message under
//! suspicion (it was being processed when the daemon died before) is synced and
//! marked at once: recovery waits for it before it hands over the next one.
//!
//! A message whose classification panics, returns nothing, or kept killing the daemon
//! ([`crate::spool::MAX_ATTEMPTS`]) is quarantined: kept in `spool/quarantine/`,
//! counted in `bouncelens_quarantined_total`, logged, and not retried.

use std::any::Any;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tracing::{error, info, warn};

use crate::advice::Advisor;
use crate::events::{self, EventsLog};
use crate::metrics::{domain_label, status_label, Metrics};
use crate::model::{Lang, ParsedMessage, ProcessedMessage, Row};
use crate::rules::RuleSet;
use crate::spool::{now_micros, rfc3339, QueueId, Spool, Spooled, MAX_ATTEMPTS};
use crate::{classify, parse, Shutdown};

/// Turns message bytes into facts and rows: `(raw, rules, language, source)`.
pub type Classifier = fn(&[u8], &RuleSet, Lang, &str) -> (ParsedMessage, Vec<Row>);

/// The real classifier: one message (never split as an mbox), message index 0.
pub fn classify_one(
    raw: &[u8],
    rules: &RuleSet,
    lang: Lang,
    source: &str,
) -> (ParsedMessage, Vec<Row>) {
    let parsed = parse::parse_message(raw);
    let rows = classify::classify_message(&parsed, rules, lang, source, 0);
    (parsed, rows)
}

/// Most messages taken into one batch: under load a batch shares one events-log fsync
/// and one wake-up; small enough that the first in a batch does not wait long for the
/// others (8 typical DSNs classify in under 1 ms; with 32, scripts/bench-ingest.sh saw
/// p99 accept -> classified <= 50 ms at 32 sessions, with 8 <= 10 ms).
const MAX_BATCH: usize = 8;
/// How long a done marker waits for the events-log sync that covers it (and the
/// others that arrive meanwhile).
const DONE_DELAY: Duration = Duration::from_millis(100);
/// Longest back-off between retries of a failing events-log write or advice hand-off.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The spool writer's hand-over channel, shared by the classification threads.
type JobQueue = Mutex<mpsc::Receiver<Spooled>>;

/// Messages whose events are written but not yet synced: their done markers wait
/// here for the next sync (see the module doc).
#[derive(Default)]
struct DoneQueue {
    ids: Mutex<Vec<QueueId>>,
    /// Wakes the flusher when the queue stops being empty.
    wake: Notify,
}

impl DoneQueue {
    fn ids(&self) -> std::sync::MutexGuard<'_, Vec<QueueId>> {
        // A list of ids cannot be left inconsistent by a panic: poisoning is moot.
        self.ids.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self, id: QueueId) {
        let mut ids = self.ids();
        ids.push(id);
        if ids.len() == 1 {
            self.wake.notify_one();
        }
    }

    fn take(&self) -> Vec<QueueId> {
        std::mem::take(&mut *self.ids())
    }

    /// Puts back ids whose sync failed, for the next try.
    fn restore(&self, ids: Vec<QueueId>) {
        self.ids().extend(ids);
    }
}

/// Everything the pipeline needs.
pub struct Pipeline {
    pub spool: Spool,
    pub events: Arc<EventsLog>,
    pub metrics: Metrics,
    pub advisor: Advisor,
    /// The current rule set; SIGHUP swaps in a new one.
    pub rules: watch::Receiver<Arc<RuleSet>>,
    pub lang: Lang,
    /// Recipient domains with their own metric label.
    pub domains: Vec<String>,
    pub classifier: Classifier,
    /// Classification threads (CPU cores).
    pub workers: usize,
}

impl Pipeline {
    /// Processes messages from `rx` on [`Pipeline::workers`] threads until `stop` (or
    /// until every sender is gone); then lets each thread finish its current batch and
    /// returns. Messages not finished stay in the spool.
    pub async fn run(self: Arc<Self>, rx: mpsc::Receiver<Spooled>, stop: Shutdown) {
        let queue = Arc::new(Mutex::new(rx));
        let done = Arc::new(DoneQueue::default());
        let rt = Handle::current();
        let (finish_flusher, finish) = oneshot::channel();
        let flusher = tokio::spawn(self.clone().flush_done_markers(done.clone(), finish));
        let mut threads = Vec::new();
        for i in 0..self.workers.max(1) {
            let (me, queue, done, rt, stop) = (
                self.clone(),
                queue.clone(),
                done.clone(),
                rt.clone(),
                stop.clone(),
            );
            let spawned = std::thread::Builder::new()
                .name(format!("classify-{i}"))
                .spawn(move || me.work(&queue, &done, &rt, &stop));
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => error!(error = %e, "cannot start a classification thread"),
            }
        }
        if threads.is_empty() {
            error!("no classification thread could start; messages stay in the spool");
        }
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
        // Unblock the spool writer: it drops what it cannot hand over (still on disk).
        drop(queue);
        let _ = finish_flusher.send(());
        let _ = flusher.await;
        // What the threads finished last gets its markers now (or, if this sync
        // fails, is processed again at the next start).
        self.sync_and_mark_done(&done).await;
    }

    /// Every [`DONE_DELAY`] while messages are waiting: one events-log sync, then
    /// their done markers. Runs until `finish` (after the classification threads have
    /// stopped); [`Pipeline::run`] then flushes the rest.
    async fn flush_done_markers(
        self: Arc<Self>,
        done: Arc<DoneQueue>,
        finish: oneshot::Receiver<()>,
    ) {
        tokio::pin!(finish);
        loop {
            tokio::select! {
                _ = done.wake.notified() => {}
                _ = &mut finish => return,
            }
            tokio::time::sleep(DONE_DELAY).await;
            if !self.sync_and_mark_done(&done).await {
                // The sync failed (logged): try again later, not in a tight loop.
                tokio::select! {
                    _ = tokio::time::sleep(MAX_BACKOFF) => done.wake.notify_one(),
                    _ = &mut finish => return,
                }
            }
        }
    }

    /// Syncs the events log and writes the done markers waiting in `done`; on a
    /// failed sync they stay queued. Returns whether the sync succeeded.
    async fn sync_and_mark_done(&self, done: &DoneQueue) -> bool {
        let ids = done.take();
        if ids.is_empty() {
            return true;
        }
        let events = self.events.clone();
        let synced = tokio::task::spawn_blocking(move || events.sync())
            .await
            .is_ok_and(|r| r.is_ok());
        if synced {
            for id in ids {
                self.spool.mark_done(id, false);
            }
        } else {
            done.restore(ids);
        }
        synced
    }

    /// One classification thread: batch after batch until stop or end of input.
    fn work(&self, queue: &JobQueue, done: &DoneQueue, rt: &Handle, stop: &Shutdown) {
        while let Some(batch) = next_batch(queue, rt, stop) {
            // The classifier's panics are caught per message in `classify`; this guards
            // the thread against anything else, so the pipeline never loses a worker.
            let processed = catch_unwind(AssertUnwindSafe(|| self.process(batch, done, rt, stop)));
            if let Err(panic) = processed {
                error!(
                    panic = %panic_message(&*panic),
                    "processing a batch failed; its unfinished messages stay in the spool until the next start"
                );
            }
        }
    }

    fn process(&self, batch: Vec<Spooled>, done: &DoneQueue, rt: &Handle, stop: &Shutdown) {
        let rules = self.rules.borrow().clone();
        let mut lines = Vec::new();
        let mut classified = Vec::with_capacity(batch.len());
        for job in batch {
            if job.attempts >= MAX_ATTEMPTS {
                let why = format!(
                    "processing did not finish in {} attempts (the daemon stopped each time)",
                    job.attempts
                );
                self.quarantine(job, &why, rt);
                continue;
            }
            let queue_id = job.id.to_string();
            match self.classify(&job, &queue_id, &rules) {
                Ok((parsed, rows)) => {
                    let msg = ProcessedMessage {
                        queue_id,
                        received_at: rfc3339(job.received_micros),
                        envelope: job.envelope.clone(),
                        raw: job.raw.clone(),
                        parsed,
                        rows,
                    };
                    events::render_into(&msg, &mut lines);
                    classified.push((job, msg));
                }
                Err(why) => self.quarantine(job, &why, rt),
            }
        }
        if classified.is_empty() {
            return;
        }
        if !retry("events log append", rt, stop, || async {
            self.events.append(&lines)
        }) {
            return;
        }
        for (job, msg) in &classified {
            self.record_metrics(msg, job);
            log_message(msg);
        }
        for (job, msg) in classified {
            if !retry("advice hand-off", rt, stop, || {
                self.advisor.submit(&msg, &rules)
            }) {
                return;
            }
            match job.finished {
                // Recovery waits for this one: sync and mark it now.
                Some(f) => {
                    if !retry("events log sync", rt, stop, || async { self.events.sync() }) {
                        return;
                    }
                    self.spool.mark_done(job.id, false);
                    let _ = f.send(());
                }
                None => done.push(job.id),
            }
        }
    }

    /// Parses and classifies one message, isolated with `catch_unwind`. `Err` says why
    /// it must be quarantined.
    fn classify(
        &self,
        job: &Spooled,
        queue_id: &str,
        rules: &RuleSet,
    ) -> Result<(ParsedMessage, Vec<Row>), String> {
        match catch_unwind(AssertUnwindSafe(|| {
            (self.classifier)(&job.raw, rules, self.lang, queue_id)
        })) {
            Ok((parsed, rows)) if !rows.is_empty() => Ok((parsed, rows)),
            Ok(_) => Err("the classifier returned no rows".to_string()),
            Err(panic) => Err(format!(
                "the classifier panicked: {}",
                panic_message(&*panic)
            )),
        }
    }

    fn record_metrics(&self, msg: &ProcessedMessage, job: &Spooled) {
        let m = &self.metrics;
        m.messages_total
            .with_label_values(&[msg.parsed.kind.as_str()])
            .inc();
        for row in &msg.rows {
            let status = status_label(row.status.as_deref());
            let (cause, fix_by) = match &row.cause {
                Some(c) => (c.id.as_str(), c.fix_by.as_str()),
                None => ("none", "unknown"),
            };
            m.bounces_total
                .with_label_values(&[&status, row.reason.as_str(), cause, fix_by])
                .inc();
            let domain = domain_label(row.recipient.as_deref(), &self.domains);
            m.bounces_by_domain_total
                .with_label_values(&[&domain, row.reason.as_str()])
                .inc();
        }
        let secs = match job.accepted {
            Some(t) => t.elapsed().as_secs_f64(),
            // Recovered after a restart: the wait includes the downtime, honestly.
            None => now_micros().saturating_sub(job.received_micros) as f64 / 1e6,
        };
        m.processing_seconds.observe(secs);
    }

    fn quarantine(&self, job: Spooled, why: &str, rt: &Handle) {
        match rt.block_on(self.spool.quarantine(&job, why)) {
            Ok(path) => {
                self.metrics.quarantined_total.inc();
                warn!(queue_id = %job.id, reason = why, path = %path.display(), "message quarantined");
            }
            Err(e) => {
                error!(queue_id = %job.id, reason = why, error = %e,
                       "cannot quarantine message; it stays in the spool until the next start");
            }
        }
        if let Some(f) = job.finished {
            let _ = f.send(());
        }
    }
}

/// Waits for the next message (or stop, or the end of input: `None`), then takes
/// whatever else is already queued, up to [`MAX_BATCH`]. The queue's lock is held
/// while waiting, so idle threads queue up behind it instead of all waking.
fn next_batch(queue: &JobQueue, rt: &Handle, stop: &Shutdown) -> Option<Vec<Spooled>> {
    // Poisoning needs a panic while holding the lock, and nothing here panics; the
    // receiver stays usable either way.
    let mut rx = queue.lock().unwrap_or_else(|p| p.into_inner());
    let mut halt = stop.clone();
    let first = rt.block_on(async {
        tokio::select! {
            j = rx.recv() => j,
            _ = crate::server::stopping(&mut halt) => None,
        }
    })?;
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(j) => batch.push(j),
            Err(_) => break,
        }
    }
    Some(batch)
}

/// Runs `op` until it succeeds (true) or `stop` is set (false), backing off.
fn retry<F, Fut, E>(what: &str, rt: &Handle, stop: &Shutdown, mut op: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let mut delay = Duration::from_millis(100);
    loop {
        match rt.block_on(op()) {
            Ok(()) => return true,
            Err(e) => error!(error = %e, retry_in = ?delay, "{what} failed"),
        }
        let mut stop = stop.clone();
        let stopped = rt.block_on(async {
            tokio::select! {
                _ = tokio::time::sleep(delay) => false,
                _ = crate::server::stopping(&mut stop) => true,
            }
        });
        if stopped {
            return false;
        }
        delay = (delay * 2).min(MAX_BACKOFF);
    }
}

fn panic_message(p: &(dyn Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

/// The one log line per message: queue id, envelope, and every recipient's result.
fn log_message(msg: &ProcessedMessage) {
    const SHOWN: usize = 20;
    let mut results: Vec<String> = msg
        .rows
        .iter()
        .take(SHOWN)
        .map(|r| {
            format!(
                "{} {}/{} {}",
                r.recipient.as_deref().unwrap_or("-"),
                r.status.as_deref().unwrap_or("-"),
                r.reply_code.map_or("-".into(), |c| c.to_string()),
                r.reason
            )
        })
        .collect();
    if msg.rows.len() > SHOWN {
        results.push(format!("... {} more", msg.rows.len() - SHOWN));
    }
    let env = &msg.envelope;
    info!(
        queue_id = %msg.queue_id,
        from = %format!("<{}>", env.mail_from),
        to = %env.rcpt_to.join(","),
        client = env.client_addr.as_deref().unwrap_or("-"),
        kind = msg.parsed.kind.as_str(),
        results = %results.join("; "),
        "classified"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AdviceConfig, Config, SpoolConfig};
    use crate::model::Envelope;

    fn panicking(_: &[u8], _: &RuleSet, _: Lang, _: &str) -> (ParsedMessage, Vec<Row>) {
        panic!("boom in the classifier")
    }

    /// A message that makes the classifier panic is quarantined (bytes kept, counted,
    /// marked done) and the pipeline keeps running.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn panicking_classifier_quarantines_the_message() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = SpoolConfig {
            dir: dir.path().join("spool"),
            events_log: dir.path().join("events.jsonl"),
            ..SpoolConfig::default()
        };
        let metrics = Metrics::new();
        let (tx, rx) = mpsc::channel(8);
        let (spool, pending) = Spool::open(&cfg, metrics.clone(), tx).unwrap();
        assert!(pending.is_empty());
        let (stop_tx, stop) = watch::channel(false);
        let advice_cfg = Config {
            advice: AdviceConfig {
                enabled: false,
                outbox_dir: dir.path().join("outbox"),
                ..AdviceConfig::default()
            },
            ..Config::default()
        };
        let advisor = Advisor::start(&advice_cfg, metrics.clone(), stop.clone())
            .await
            .unwrap();
        let (_rules_tx, rules) = watch::channel(Arc::new(RuleSet::load(&[]).unwrap()));
        let p = Arc::new(Pipeline {
            spool: spool.clone(),
            events: Arc::new(EventsLog::open(&cfg.events_log).unwrap()),
            metrics: metrics.clone(),
            advisor,
            rules,
            lang: Lang::En,
            domains: vec![],
            classifier: panicking,
            workers: 1,
        });
        let run = tokio::spawn(p.clone().run(rx, stop.clone()));
        let id = spool
            .append(
                Envelope::default(),
                b"Subject: poison\r\n\r\nx\r\n".to_vec(),
            )
            .await
            .unwrap();
        let eml = cfg.dir.join("quarantine").join(format!("{id}.eml"));
        for _ in 0..200 {
            if metrics.quarantined_total.get() == 1 && metrics.spool_pending.get() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert_eq!(metrics.quarantined_total.get(), 1);
        assert_eq!(
            std::fs::read(&eml).unwrap(),
            b"Subject: poison\r\n\r\nx\r\n"
        );
        let note = std::fs::read_to_string(eml.with_extension("json")).unwrap();
        assert!(note.contains("boom in the classifier"), "{note}");
        assert_eq!(std::fs::read(&cfg.events_log).unwrap(), b"");
        stop_tx.send(true).unwrap();
        run.await.unwrap();
        spool.close().await;
        drop(spool);
        drop(p);
        // Marked done: a restart does not pick it up again.
        let (tx, _rx) = mpsc::channel(8);
        let (_spool, pending) = Spool::open(&cfg, Metrics::new(), tx).unwrap();
        assert!(pending.is_empty(), "{pending:?}");
    }
}
