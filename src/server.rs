//! `bouncelens serve`: wires the listener, spool, pipeline, events log, metrics
//! endpoint and advice service together, and runs them until shutdown.
//!
//! Mini-redis style: [`Daemon::start`] takes listeners that are already bound and a
//! shutdown watch, so tests bind `127.0.0.1:0` and drive the real daemon in-process;
//! [`serve`] is the binary's wrapper that binds from config, handles signals and
//! talks to systemd.
//!
//! Shutdown order (SIGTERM / SIGINT): stop accepting; sessions between transactions
//! get `421`, sessions inside one may finish until `shutdown_grace`; then the pipeline
//! stops taking messages and lets in-flight ones finish; then the events log and the
//! spool are synced and closed. Anything acknowledged but not processed is still in
//! the spool and is processed at the next start.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::advice::Advisor;
use crate::config::{Config, RulesConfig};
use crate::error::{Error, ErrorKind, Result};
use crate::events::EventsLog;
use crate::metrics::Metrics;
use crate::pipeline::{self, Pipeline};
use crate::rules::RuleSet;
use crate::smtp::{self, tls, RecipientPolicy, SmtpService};
use crate::spool::{self, Spool};
use crate::{http, Shutdown};

/// Resolves once shutdown has begun (or its sender is gone). The `watch` guard is
/// dropped inside, so callers stay `Send` across it in `select!`.
pub async fn stopping(shutdown: &mut Shutdown) {
    let _ = shutdown.wait_for(|v| *v).await;
}

/// Messages waiting between the spool and the pipeline.
const QUEUE: usize = 256;

/// The bound sockets the daemon serves on.
pub struct Listeners {
    pub smtp: Vec<TcpListener>,
    pub http: Option<TcpListener>,
}

fn bind_error(addr: SocketAddr, what: &str, key: &str, e: std::io::Error) -> Error {
    use std::io::ErrorKind as K;
    let advice = match e.kind() {
        K::AddrInUse => format!(
            "another process (another bouncelens, or an MTA) is using it; stop it or set a free address in {key}"
        ),
        K::PermissionDenied => format!(
            "ports below 1024 need CAP_NET_BIND_SERVICE (the systemd unit grants it) or root; or use a port above 1024 in {key}"
        ),
        K::AddrNotAvailable => format!("no interface of this host has that address; fix {key}"),
        _ => format!("check {key}"),
    };
    Error::with_source(
        ErrorKind::Listen,
        format!("cannot listen on {addr} for {what}: {e} — {advice}"),
        e,
    )
}

impl Listeners {
    /// Binds every address in `[smtp] listen` and `[metrics] listen`.
    pub async fn bind(cfg: &Config) -> Result<Listeners> {
        let mut smtp = Vec::new();
        for &addr in &cfg.smtp.listen {
            let l = TcpListener::bind(addr)
                .await
                .map_err(|e| bind_error(addr, "SMTP", "[smtp] listen", e))?;
            smtp.push(l);
        }
        let http = match cfg.metrics.listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|e| bind_error(addr, "metrics", "[metrics] listen", e))?,
            ),
            None => None,
        };
        Ok(Listeners { smtp, http })
    }
}

/// Checks what loading config and rules cannot: the TLS certificate and key load,
/// the recipient policy builds. Returns warnings worth showing.
pub fn check_config(cfg: &Config) -> Result<Vec<String>> {
    if let (Some(c), Some(k)) = (&cfg.smtp.tls_cert, &cfg.smtp.tls_key) {
        tls::load_acceptor(c, k)?;
    }
    let mut warnings = Vec::new();
    let policy = RecipientPolicy::from_config(&cfg.smtp)?;
    if policy.accepts_any() {
        for a in cfg.smtp.listen.iter().filter(|a| !a.ip().is_loopback()) {
            warnings.push(format!(
                "[smtp] listen includes {a}, a non-loopback address, and no accept_addresses, \
                 accept_domains or verp is set: mail for any recipient will be accepted (and \
                 processed as a bounce; nothing is relayed)"
            ));
        }
    }
    Ok(warnings)
}

/// A running daemon.
pub struct Daemon {
    metrics: Metrics,
    rules_cfg: RulesConfig,
    rules_tx: watch::Sender<Arc<RuleSet>>,
    events: Arc<EventsLog>,
    spool: Spool,
    advisor: Advisor,
    shutdown: Shutdown,
    pipeline_stop: watch::Sender<bool>,
    pipeline: JoinHandle<()>,
    replay: JoinHandle<()>,
    smtp: Vec<JoinHandle<()>>,
    http: Option<JoinHandle<()>>,
    smtp_addrs: Vec<SocketAddr>,
    http_addr: Option<SocketAddr>,
}

impl Daemon {
    /// Opens the spool (recovering what a previous run left), starts every service on
    /// the given listeners, and returns. The daemon runs until `shutdown` is set;
    /// then [`Daemon::wait`] returns once everything is flushed.
    pub async fn start(
        listeners: Listeners,
        config: Config,
        rules: RuleSet,
        shutdown: Shutdown,
    ) -> Result<Daemon> {
        let metrics = Metrics::new();
        metrics.rules_loaded.set(rules.len() as i64);

        let events = Arc::new(EventsLog::open(&config.spool.events_log)?);
        let (job_tx, job_rx) = mpsc::channel(QUEUE);
        let (spool, pending) = {
            let (cfg, m, tx) = (config.spool.clone(), metrics.clone(), job_tx.clone());
            tokio::task::spawn_blocking(move || Spool::open(&cfg, m, tx))
                .await
                .map_err(|e| Error::new(ErrorKind::Spool, format!("spool start failed: {e}")))??
        };
        let advisor = Advisor::start(&config, metrics.clone(), shutdown.clone()).await?;
        let svc = Arc::new(SmtpService::new(
            &config.smtp,
            spool.clone(),
            metrics.clone(),
        )?);
        for w in check_config(&config)? {
            warn!("{w}");
        }

        let (rules_tx, rules_rx) = watch::channel(Arc::new(rules));
        let (pipeline_stop, stop_rx) = watch::channel(false);
        let pipe = Arc::new(Pipeline {
            spool: spool.clone(),
            events: events.clone(),
            metrics: metrics.clone(),
            advisor: advisor.clone(),
            rules: rules_rx,
            lang: config.rules.language,
            domains: config.metrics.domains.clone(),
            classifier: pipeline::classify_one,
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
        });
        let pipeline = tokio::spawn(pipe.run(job_rx, stop_rx.clone()));
        let replay = tokio::spawn(spool::replay(spool.clone(), pending, job_tx, stop_rx));

        let mut smtp_addrs = Vec::new();
        let mut smtp = Vec::new();
        for l in listeners.smtp {
            let addr = l
                .local_addr()
                .map_err(|e| Error::with_source(ErrorKind::Listen, "listener has no address", e))?;
            info!(protocol = ?config.smtp.protocol, "smtp listening on {addr}");
            smtp_addrs.push(addr);
            smtp.push(tokio::spawn(smtp::serve(l, svc.clone(), shutdown.clone())));
        }
        let http_addr = listeners.http.as_ref().and_then(|l| l.local_addr().ok());
        let http = listeners.http.map(|l| {
            if let Some(a) = http_addr {
                info!("metrics listening on http://{a}/metrics");
            }
            tokio::spawn(http::serve(l, metrics.clone(), shutdown.clone()))
        });
        Ok(Daemon {
            metrics,
            rules_cfg: config.rules.clone(),
            rules_tx,
            events,
            spool,
            advisor,
            shutdown,
            pipeline_stop,
            pipeline,
            replay,
            smtp,
            http,
            smtp_addrs,
            http_addr,
        })
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn smtp_addrs(&self) -> &[SocketAddr] {
        &self.smtp_addrs
    }

    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// Reloads the rule files (SIGHUP) and reopens the events log. A broken rule set
    /// is refused, logged and counted; the running rules stay. Returns whether the
    /// new rules were taken.
    pub async fn reload(&self) -> bool {
        self.events.reopen();
        let cfg = self.rules_cfg.clone();
        let loaded =
            tokio::task::spawn_blocking(move || RuleSet::from_config(cfg.builtin, &cfg.dirs))
                .await
                .unwrap_or_else(|e| {
                    Err(Error::new(
                        ErrorKind::Rules,
                        format!("rule loading crashed: {e}"),
                    ))
                });
        match loaded {
            Ok(rules) => {
                let n = rules.len();
                self.rules_tx.send_replace(Arc::new(rules));
                self.metrics.rules_loaded.set(n as i64);
                self.metrics
                    .rules_reloads_total
                    .with_label_values(&["ok"])
                    .inc();
                info!(rules = n, "rules reloaded");
                true
            }
            Err(e) => {
                self.metrics
                    .rules_reloads_total
                    .with_label_values(&["error"])
                    .inc();
                error!(error = %e, "rule reload refused; the running rules stay in use");
                false
            }
        }
    }

    /// Waits for shutdown, then stops everything in order and flushes.
    pub async fn wait(self) -> Result<()> {
        let mut sd = self.shutdown.clone();
        stopping(&mut sd).await;
        for t in self.smtp {
            let _ = t.await;
        }
        let _ = self.pipeline_stop.send(true);
        let _ = self.replay.await;
        let _ = self.pipeline.await;
        self.advisor.closed().await;
        self.events.close();
        self.spool.close().await;
        if let Some(h) = self.http {
            let _ = h.await;
        }
        info!("stopped");
        Ok(())
    }
}

/// Runs a daemon on already-bound listeners until `shutdown` is set, then stops it in
/// order and returns once everything is flushed.
pub async fn run(
    listeners: Listeners,
    config: Config,
    rules: RuleSet,
    shutdown: Shutdown,
) -> Result<()> {
    Daemon::start(listeners, config, rules, shutdown)
        .await?
        .wait()
        .await
}

/// Runs the daemon on `config` until SIGTERM / SIGINT; SIGHUP reloads rules.
pub async fn serve(config: Config) -> Result<()> {
    tls::install_crypto_provider();
    let rules = RuleSet::from_config(config.rules.builtin, &config.rules.dirs)?;
    let listeners = Listeners::bind(&config).await?;
    let sig = |kind: SignalKind| {
        signal(kind)
            .map_err(|e| Error::with_source(ErrorKind::Io, "cannot install signal handler", e))
    };
    let (mut term, mut int, mut hup) = (
        sig(SignalKind::terminate())?,
        sig(SignalKind::interrupt())?,
        sig(SignalKind::hangup())?,
    );
    let (shutdown_tx, shutdown) = watch::channel(false);
    let daemon = Daemon::start(listeners, config, rules, shutdown).await?;
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    info!("bouncelens ready");
    loop {
        tokio::select! {
            _ = term.recv() => { info!("SIGTERM received: shutting down"); break }
            _ = int.recv() => { info!("SIGINT received: shutting down"); break }
            _ = hup.recv() => { info!("SIGHUP received: reloading rules"); daemon.reload().await; }
        }
    }
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    let _ = shutdown_tx.send(true);
    tokio::select! {
        r = daemon.wait() => r,
        _ = term.recv() => { warn!("second signal: exiting without waiting for sessions"); Ok(()) }
        _ = int.recv() => { warn!("second signal: exiting without waiting for sessions"); Ok(()) }
    }
}
