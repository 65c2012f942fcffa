//! Advice mail: for each classified recipient, decide who should hear about it, write a
//! short annotated note (en / ja) with the bounce attached, and deliver it durably
//! through the smarthost, or as `.eml` files in outbox mode.
//!
//! The flow, one module per step:
//! * [`route`] — who gets told (sender, admins, nobody) and the refusals that stop
//!   backscatter, loops and noise;
//! * [`digest`] — first advice at once, the rest of a storm collected into one digest
//!   per window, an hourly cap per addressee; persisted;
//! * [`compose`] (with the wording in [`locale`]) — the MIME message;
//! * [`outbox`] (on [`store`]'s durable writes) — mail on disk before `submit` returns;
//! * [`deliver`] — the smarthost, with retries and a `failed/` directory.
//!
//! Disk layout under `[advice] outbox_dir`:
//! `queue/` (waiting for the smarthost), `failed/` (given up), `state/` (digests and
//! hourly counts), `tmp/` (staging); in outbox mode the advice itself is `<id>.eml`.

pub mod compose;
pub mod deliver;
pub mod digest;
pub mod locale;
pub mod outbox;
pub mod route;
pub mod store;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};
use crate::metrics::Metrics;
use crate::model::ProcessedMessage;
use crate::rules::RuleSet;
use crate::Shutdown;
use compose::{Composer, Content};
pub use deliver::Smarthost;
use digest::{DigestBook, DueDigest, Offer};
use outbox::Outbox;
use route::{Advice, AudienceKind, Router};

/// The advice service. Cheap to clone; `submit` is called by the pipeline.
#[derive(Clone)]
pub struct Advisor {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    router: Router,
    composer: Composer,
    outbox: Arc<Outbox>,
    /// Set with a smarthost: wakes the delivery task after enqueueing.
    deliver_wake: Option<Arc<Notify>>,
    digests: Mutex<DigestBook>,
    digest_wake: Arc<Notify>,
    metrics: Metrics,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Advisor {
    /// Starts the advice service: recovers the outbox and digest state under
    /// `outbox_dir`, then runs the delivery (smarthost mode) and digest tasks until
    /// `shutdown`. Takes the whole config because routing needs `[smtp] verp` and the
    /// SMTP client greets with `[smtp] hostname`.
    pub async fn start(cfg: &Config, metrics: Metrics, shutdown: Shutdown) -> Result<Advisor> {
        let a = &cfg.advice;
        if !a.enabled {
            return Ok(Advisor { inner: None });
        }
        let router = Router::new(cfg)?;
        let composer = Composer::new(a, router.msgid_domain())?;
        let outbox = Arc::new(Outbox::open(&a.outbox_dir)?);
        let digests = DigestBook::open(
            &a.outbox_dir.join("state"),
            outbox.tmp_dir(),
            a.digest_window.as_millis() as u64,
            a.hourly_cap,
        )?;
        let mut tasks = Vec::new();
        let deliver_wake = match &a.smarthost {
            Some(url) => {
                let host = Smarthost::parse(url)
                    .map_err(|e| Error::new(ErrorKind::Advice, format!("smarthost: {e}")))?;
                let ca = match &a.smarthost_ca {
                    Some(path) => Some(std::fs::read(path).map_err(|e| {
                        Error::io(ErrorKind::Advice, "cannot read smarthost_ca", path, e)
                    })?),
                    None => None,
                };
                let wake = Arc::new(Notify::new());
                let d = deliver::Deliverer {
                    outbox: outbox.clone(),
                    transport: host.transport(&cfg.smtp.hostname, a.smtp_timeout, ca.as_deref())?,
                    policy: deliver::Policy {
                        retry_interval: a.retry_interval,
                        retry_max_interval: a.retry_max_interval,
                        max_age: a.max_age,
                    },
                    metrics: metrics.clone(),
                    wake: wake.clone(),
                };
                tasks.push(tokio::spawn(d.run(shutdown.clone())));
                tracing::info!(smarthost = ?host, queue = outbox.pending(), "advice delivery started");
                Some(wake)
            }
            None => {
                tracing::info!(dir = %a.outbox_dir.display(), "advice is written as .eml files (no smarthost)");
                None
            }
        };
        let inner = Arc::new(Inner {
            router,
            composer,
            outbox,
            deliver_wake,
            digests: Mutex::new(digests),
            digest_wake: Arc::new(Notify::new()),
            metrics,
            tasks: Mutex::new(Vec::new()),
        });
        tasks.push(tokio::spawn(inner.clone().digest_task(shutdown)));
        *inner.tasks.lock().expect("not poisoned") = tasks;
        Ok(Advisor { inner: Some(inner) })
    }

    /// Records the advice this message calls for. Returns once that intent is durable,
    /// so the pipeline may then mark the spooled message processed. `rules` is the rule
    /// set that classified `msg` (advice text and steps come from it, in the advice language).
    pub async fn submit(&self, msg: &ProcessedMessage, rules: &RuleSet) -> Result<()> {
        let Some(inner) = &self.inner else {
            return Ok(());
        };
        let plan = inner.router.plan(msg, rules);
        for (kind, why) in &plan.refused {
            tracing::debug!(queue_id = %msg.queue_id, audience = kind.as_str(), outcome = why.outcome(), "no advice");
            inner.count(*kind, why.outcome());
        }
        if plan.advices.is_empty() {
            return Ok(());
        }
        let worker = inner.clone();
        tokio::task::spawn_blocking(move || worker.record(&plan.advices))
            .await
            .map_err(|e| Error::with_source(ErrorKind::Advice, "advice worker failed", e))?
    }

    /// Waits until the background tasks have stopped (after shutdown was signalled).
    pub async fn closed(&self) {
        let Some(inner) = &self.inner else {
            return;
        };
        let tasks = std::mem::take(&mut *inner.tasks.lock().expect("not poisoned"));
        for t in tasks {
            let _ = t.await;
        }
    }
}

impl Inner {
    fn count(&self, kind: AudienceKind, outcome: &str) {
        self.metrics
            .advice_emails_total
            .with_label_values(&[kind.as_str(), outcome])
            .inc();
    }

    /// Offers each advice to the digest book: sent at once, or held (durably).
    fn record(&self, advices: &[Advice]) -> Result<()> {
        let mut book = self.digests.lock().expect("not poisoned");
        for a in advices {
            let content = Content {
                to: &a.to,
                why: &a.why,
                items: std::slice::from_ref(&a.item),
                more: 0,
                attachments: std::slice::from_ref(&a.raw),
            };
            match book.offer(a, store::now_ms(), || self.dispatch(&content))? {
                Offer::Sent => {}
                Offer::Collected => self.count(a.to.kind, "suppressed_digest"),
                Offer::Capped => self.count(a.to.kind, "suppressed_cap"),
            }
        }
        self.digest_wake.notify_one();
        Ok(())
    }

    /// Composes a mail and puts it on disk: queued for the smarthost, or written.
    fn dispatch(&self, c: &Content<'_>) -> Result<()> {
        let mail = self.composer.compose(c)?;
        match &self.deliver_wake {
            Some(wake) => {
                let path = self.outbox.enqueue(&mail)?;
                tracing::info!(file = %path.display(), to = ?c.to.to, cause = %c.why.cause.id, "advice queued");
                self.count(c.to.kind, "queued");
                wake.notify_one();
            }
            None => {
                let path = self.outbox.write_final(&mail)?;
                tracing::info!(file = %path.display(), to = ?c.to.to, cause = %c.why.cause.id, "advice written");
                self.count(c.to.kind, "written");
            }
        }
        Ok(())
    }

    fn flush_digests(&self) -> Result<Option<u64>> {
        let mut book = self.digests.lock().expect("not poisoned");
        book.flush_due(store::now_ms(), |d: &DueDigest| {
            self.dispatch(&Content {
                to: &d.to,
                why: &d.why,
                items: &d.items,
                more: d.more,
                attachments: &d.attachments,
            })
        })?;
        Ok(book.next_deadline())
    }

    /// Sends digests as their windows close, until shutdown.
    async fn digest_task(self: Arc<Self>, mut shutdown: Shutdown) {
        loop {
            let me = self.clone();
            let next = match tokio::task::spawn_blocking(move || me.flush_digests()).await {
                Ok(Ok(next)) => next,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "cannot send due digests; retrying");
                    Some(store::now_ms() + 30_000)
                }
                Err(e) => {
                    tracing::error!(error = %e, "digest worker failed; retrying");
                    Some(store::now_ms() + 30_000)
                }
            };
            let wait = next.map(|t| Duration::from_millis(t.saturating_sub(store::now_ms())));
            tokio::select! {
                _ = self.digest_wake.notified() => {}
                _ = async {
                    match wait {
                        Some(w) => tokio::time::sleep(w).await,
                        None => std::future::pending().await,
                    }
                } => {}
                _ = shutdown.wait_for(|&stop| stop) => return,
            }
        }
    }
}
