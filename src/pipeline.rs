//! The processing pipeline: spooled message -> parse + classify -> events log ->
//! metrics -> advice hand-off -> done marker in the spool.
//!
//! Why in this order: the events log is the record of truth, so it is written (and
//! fsynced) first; metrics and the log line follow; advice gets the message once its
//! events are durable; the done marker comes last. A crash anywhere before the marker
//! means the message is processed again after restart (at-least-once), never lost.
//!
//! Parsing and classification are CPU work: they run on tokio's blocking pool, at
//! most one batch per core at a time, so they never stall the reactor that serves
//! SMTP. Messages are taken in batches of whatever is queued (one at low load), which
//! saves thread hand-offs under load; many batches may be *in flight* (waiting for the
//! events log's group commit), which is what lets one fsync cover many messages.
//!
//! A message whose classification panics, returns nothing, or kept killing the daemon
//! ([`crate::spool::MAX_ATTEMPTS`]) is quarantined: kept in `spool/quarantine/`,
//! counted in `bouncelens_quarantined_total`, logged, and not retried.

use std::any::Any;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;
use tracing::{error, info, warn};

use crate::advice::Advisor;
use crate::events::{self, EventsLog};
use crate::metrics::{domain_label, status_label, Metrics};
use crate::model::{Lang, ParsedMessage, ProcessedMessage, Row};
use crate::rules::RuleSet;
use crate::spool::{now_micros, rfc3339, Spool, Spooled, MAX_ATTEMPTS};
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

/// Messages in flight at once (most of them waiting for the events log's fsync).
const IN_FLIGHT: usize = 256;
/// Most messages taken into one batch: enough to save most hand-offs, small enough that
/// the last in a batch does not wait long for the others.
const MAX_BATCH: usize = 8;
/// Longest back-off between retries of a failing events-log write or advice hand-off.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

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
    /// Classifications running at once (CPU cores).
    pub workers: usize,
}

impl Pipeline {
    /// Processes messages from `rx` until `stop`; then lets in-flight messages finish
    /// their current step and returns. Messages not finished stay in the spool.
    ///
    /// Whatever is queued when the pipeline looks (up to [`MAX_BATCH`]) is handled as
    /// one batch: one hand-off to a classification thread, one events-log append. At
    /// low load a batch is one message; under load this saves most thread wake-ups.
    pub async fn run(self: Arc<Self>, mut rx: mpsc::Receiver<Spooled>, stop: Shutdown) {
        let in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
        let cpu = Arc::new(Semaphore::new(self.workers.max(1)));
        let mut tasks = JoinSet::new();
        let mut halt = stop.clone();
        loop {
            let first = tokio::select! {
                j = rx.recv() => match j { Some(j) => j, None => break },
                _ = crate::server::stopping(&mut halt) => break,
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(j) => batch.push(j),
                    Err(_) => break,
                }
            }
            let permits = tokio::select! {
                p = in_flight.clone().acquire_many_owned(batch.len() as u32) => p.expect("never closed"),
                _ = crate::server::stopping(&mut halt) => break,
            };
            let me = self.clone();
            let (cpu, stop) = (cpu.clone(), stop.clone());
            tasks.spawn(async move {
                me.process(batch, &cpu, &stop).await;
                drop(permits);
            });
            while tasks.try_join_next().is_some() {}
        }
        // Unblock the spool writer: it drops what it cannot hand over (still on disk).
        drop(rx);
        while tasks.join_next().await.is_some() {}
    }

    async fn process(&self, batch: Vec<Spooled>, cpu: &Arc<Semaphore>, stop: &Shutdown) {
        let mut jobs = Vec::with_capacity(batch.len());
        for job in batch {
            if job.attempts >= MAX_ATTEMPTS {
                let why = format!(
                    "processing did not finish in {} attempts (the daemon stopped each time)",
                    job.attempts
                );
                self.quarantine(job, &why).await;
            } else {
                jobs.push(job);
            }
        }
        if jobs.is_empty() {
            return;
        }
        let rules = self.rules.borrow().clone();
        let results = self.classify(&jobs, &rules, cpu).await;
        let mut lines = Vec::new();
        let mut classified = Vec::with_capacity(jobs.len());
        for (job, result) in jobs.into_iter().zip(results) {
            match result {
                Ok((parsed, rows)) => {
                    let msg = ProcessedMessage {
                        queue_id: job.id.to_string(),
                        received_at: rfc3339(job.received_micros),
                        envelope: job.envelope.clone(),
                        raw: job.raw.clone(),
                        parsed,
                        rows,
                    };
                    lines.extend_from_slice(&events::render(&msg));
                    classified.push((job, msg));
                }
                Err(why) => self.quarantine(job, &why).await,
            }
        }
        if classified.is_empty() {
            return;
        }
        let written = retry("events log append", stop, || {
            self.events.append(lines.clone())
        });
        if !written.await {
            return;
        }
        for (job, msg) in &classified {
            self.record_metrics(msg, job);
            log_message(msg);
        }
        for (job, msg) in classified {
            let advised = retry("advice hand-off", stop, || {
                self.advisor.submit(&msg, &rules)
            });
            if !advised.await {
                return;
            }
            self.spool.mark_done(job.id, false);
            if let Some(f) = job.finished {
                let _ = f.send(());
            }
        }
    }

    /// Parses and classifies a batch on the blocking pool (at most one batch per core);
    /// each message is isolated with `catch_unwind`. `Err` says why it must be
    /// quarantined.
    async fn classify(
        &self,
        jobs: &[Spooled],
        rules: &Arc<RuleSet>,
        cpu: &Semaphore,
    ) -> Vec<Result<(ParsedMessage, Vec<Row>), String>> {
        let _cpu = cpu.acquire().await.expect("never closed");
        let inputs: Vec<(Arc<[u8]>, String)> = jobs
            .iter()
            .map(|j| (j.raw.clone(), j.id.to_string()))
            .collect();
        let (rules, lang, classifier) = (rules.clone(), self.lang, self.classifier);
        let n = inputs.len();
        tokio::task::spawn_blocking(move || {
            inputs
                .iter()
                .map(|(raw, qid)| {
                    match catch_unwind(AssertUnwindSafe(|| classifier(raw, &rules, lang, qid))) {
                        Ok((parsed, rows)) if !rows.is_empty() => Ok((parsed, rows)),
                        Ok(_) => Err("the classifier returned no rows".to_string()),
                        Err(panic) => Err(format!(
                            "the classifier panicked: {}",
                            panic_message(&*panic)
                        )),
                    }
                })
                .collect()
        })
        .await
        .unwrap_or_else(|e| vec![Err(format!("the classification task failed: {e}")); n])
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

    async fn quarantine(&self, job: Spooled, why: &str) {
        match self.spool.quarantine(&job, why).await {
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

/// Runs `op` until it succeeds (true) or `stop` is set (false), backing off.
async fn retry<F, Fut, E>(what: &str, stop: &Shutdown, mut op: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let mut delay = Duration::from_millis(100);
    loop {
        match op().await {
            Ok(()) => return true,
            Err(e) => error!(error = %e, retry_in = ?delay, "{what} failed"),
        }
        let mut stop = stop.clone();
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = crate::server::stopping(&mut stop) => return false,
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
        let (_stop_tx, stop) = watch::channel(false);
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
        run.abort();
        let _ = run.await;
        spool.close().await;
        drop(spool);
        drop(p);
        // Marked done: a restart does not pick it up again.
        let (tx, _rx) = mpsc::channel(8);
        let (_spool, pending) = Spool::open(&cfg, Metrics::new(), tx).unwrap();
        assert!(pending.is_empty(), "{pending:?}");
    }
}
