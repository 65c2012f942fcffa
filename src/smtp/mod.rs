//! The SMTP / LMTP listener: accepts bounces from remote MTAs (or the local MTA's
//! transport to us) and hands each message to the spool.
//!
//! [`serve`] runs the accept loop on an already-bound listener, so tests can bind
//! `127.0.0.1:0` and drive the real server. Concurrency is capped by a semaphore:
//! a client beyond `max_connections` gets `421 4.7.0` at once instead of a slot.
//! On shutdown the loop stops accepting, sessions between transactions are told
//! `421 4.3.2`, sessions inside one may finish until `shutdown_grace`, and whatever
//! still runs after that is cut off (nothing it sent was acknowledged, so nothing is
//! lost: the sender retries).

pub mod recipients;
pub mod reply;
pub mod session;
pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};

use crate::config::{Protocol, SmtpConfig};
use crate::metrics::Metrics;
use crate::spool::Spool;
use crate::{Result, Shutdown};
pub use recipients::RecipientPolicy;
use reply::Reply;
use session::Session;

/// Everything sessions share.
pub struct SmtpService {
    pub cfg: SmtpConfig,
    pub lmtp: bool,
    pub policy: RecipientPolicy,
    pub tls: Option<TlsAcceptor>,
    pub spool: Spool,
    pub metrics: Metrics,
    connections: Arc<Semaphore>,
}

impl SmtpService {
    /// Builds the service from config (loads the TLS certificate if configured).
    pub fn new(cfg: &SmtpConfig, spool: Spool, metrics: Metrics) -> Result<SmtpService> {
        let tls = match (&cfg.tls_cert, &cfg.tls_key) {
            (Some(c), Some(k)) => Some(tls::load_acceptor(c, k)?),
            _ => None,
        };
        Ok(SmtpService {
            cfg: cfg.clone(),
            lmtp: cfg.protocol == Protocol::Lmtp,
            policy: RecipientPolicy::from_config(cfg)?,
            tls,
            spool,
            metrics,
            connections: Arc::new(Semaphore::new(cfg.max_connections)),
        })
    }
}

/// Accepts connections on `listener` until shutdown, then drains sessions.
pub async fn serve(listener: TcpListener, svc: Arc<SmtpService>, shutdown: Shutdown) {
    let mut sessions = JoinSet::new();
    let mut stop = shutdown.clone();
    loop {
        tokio::select! {
            _ = crate::server::stopping(&mut stop) => break,
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let _ = tcp.set_nodelay(true);
                    let svc = svc.clone();
                    match svc.connections.clone().try_acquire_owned() {
                        Ok(permit) => {
                            let sd = shutdown.clone();
                            sessions.spawn(async move {
                                let outcome = Session::new(svc.clone(), tcp, peer, sd).run().await;
                                svc.metrics.smtp_sessions_total.with_label_values(&[outcome]).inc();
                                drop(permit);
                            });
                        }
                        Err(_) => {
                            sessions.spawn(refuse(svc, tcp));
                        }
                    }
                }
                Err(e) => {
                    // Typically out of file descriptors: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    drop(listener);
    if sessions.is_empty() {
        return;
    }
    let grace = svc.cfg.shutdown_grace;
    let drained = tokio::time::timeout(grace, async {
        while sessions.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        info!(
            sessions = sessions.len(),
            "closing sessions still open after shutdown_grace"
        );
        sessions.abort_all();
        while sessions.join_next().await.is_some() {}
    }
}

/// Tells a client over the connection cap to come back later.
async fn refuse(svc: Arc<SmtpService>, mut tcp: TcpStream) {
    let mut out = Vec::new();
    Reply::too_many_connections().write_to(&mut out);
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        tcp.write_all(&out).await?;
        tcp.shutdown().await
    })
    .await;
    let m = &svc.metrics;
    m.smtp_rejections_total.with_label_values(&["421"]).inc();
    m.smtp_sessions_total.with_label_values(&["rejected"]).inc();
}
