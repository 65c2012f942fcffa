//! Delivery: hands queued advice to the smarthost with lettre's async SMTP client.
//!
//! One task owns the queue. It picks up new files when woken (or on its own after a
//! restart), sends each with an empty envelope sender (`MAIL FROM:<>`, RFC 3834 / 5321
//! for automatic mail, so advice can never bounce back into a loop), and removes the
//! file only after the smarthost accepted it. A temporary failure (connection refused,
//! 4xx, timeout) is retried with exponential backoff; a permanent one (5xx), or mail
//! older than `max_age`, is given up: logged, counted `outcome="failed"` and kept in
//! `failed/`. Delivery is at-least-once: a crash between the smarthost's "250" and the
//! file removal sends that one mail again after restart, never zero times.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::outbox::{Outbox, Queued};
use super::store;
use crate::error::{Error, ErrorKind, Result};
use crate::metrics::Metrics;
use crate::Shutdown;

/// How the connection to the smarthost is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain SMTP, never STARTTLS (`?tls=none`).
    None,
    /// STARTTLS when the server offers it (the `smtp://` default).
    Opportunistic,
    /// STARTTLS or fail (`?tls=required`).
    Required,
    /// TLS from the first byte (`smtps://`).
    Implicit,
}

/// A parsed `smarthost` URL.
#[derive(Clone, PartialEq, Eq)]
pub struct Smarthost {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub credentials: Option<(String, String)>,
}

impl std::fmt::Debug for Smarthost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Smarthost")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("user", &self.credentials.as_ref().map(|c| &c.0))
            .finish()
    }
}

impl Smarthost {
    /// Parses `smtp://[user:pass@]host[:port][?tls=required|opportunistic|none]` or
    /// `smtps://[user:pass@]host[:port]`. The message says what is wrong.
    pub fn parse(url: &str) -> std::result::Result<Smarthost, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("{url:?} must start with smtp:// or smtps://"))?;
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let rest = rest.trim_end_matches('/');
        let (userinfo, hostport) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
        let mut tls_param = None;
        for p in query.split('&').filter(|p| !p.is_empty()) {
            match p.split_once('=') {
                Some(("tls", v)) => tls_param = Some(v),
                _ => return Err(format!("unknown parameter {p:?} (only tls=...)")),
            }
        }
        let (tls, default_port) = match (scheme, tls_param) {
            ("smtp", None | Some("opportunistic")) => (TlsMode::Opportunistic, 25),
            ("smtp", Some("required")) => (TlsMode::Required, 25),
            ("smtp", Some("none")) => (TlsMode::None, 25),
            ("smtps", None) => (TlsMode::Implicit, 465),
            ("smtp" | "smtps", Some(v)) => {
                return Err(format!(
                    "tls={v:?} is not valid for {scheme}:// (use required, opportunistic or none with smtp://)"
                ))
            }
            _ => return Err(format!("scheme {scheme:?} must be smtp or smtps")),
        };
        let (host, port) = split_host_port(hostport)?;
        let port = port.unwrap_or(default_port);
        let credentials = match userinfo {
            None => None,
            Some(u) => {
                let (user, pass) = u
                    .split_once(':')
                    .ok_or("credentials must be user:password")?;
                Some((percent_decode(user)?, percent_decode(pass)?))
            }
        };
        Ok(Smarthost {
            host,
            port,
            tls,
            credentials,
        })
    }

    /// A lettre transport for this smarthost. `extra_ca` (PEM) is trusted besides the
    /// public roots.
    pub fn transport(
        &self,
        hello: &str,
        timeout: Duration,
        extra_ca: Option<&[u8]>,
    ) -> Result<AsyncSmtpTransport<Tokio1Executor>> {
        let tls_err =
            |e| Error::with_source(ErrorKind::Advice, "cannot set up TLS for the smarthost", e);
        let mut builder = TlsParameters::builder(self.host.clone());
        if let Some(pem) = extra_ca {
            if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
                return Err(Error::new(
                    ErrorKind::Advice,
                    "smarthost_ca holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                ));
            }
            let cert = Certificate::from_pem(pem).map_err(tls_err)?;
            builder = builder.add_root_certificate(cert);
        }
        let params = || builder.clone().build().map_err(tls_err);
        let tls = match self.tls {
            TlsMode::None => Tls::None,
            TlsMode::Opportunistic => Tls::Opportunistic(params()?),
            TlsMode::Required => Tls::Required(params()?),
            TlsMode::Implicit => Tls::Wrapper(params()?),
        };
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(self.host.as_str())
            .port(self.port)
            .tls(tls)
            .timeout(Some(timeout))
            .hello_name(ClientId::Domain(hello.to_string()));
        if let Some((u, p)) = &self.credentials {
            b = b.credentials(Credentials::new(u.clone(), p.clone()));
        }
        Ok(b.build())
    }
}

fn split_host_port(s: &str) -> std::result::Result<(String, Option<u16>), String> {
    let (host, port) = if let Some(v6) = s.strip_prefix('[') {
        let (h, rest) = v6.split_once(']').ok_or("unclosed [ in host")?;
        (h, rest.strip_prefix(':'))
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty() || host.contains(['/', ' ', '@']) {
        return Err(format!("{s:?} has no valid host"));
    }
    let port = port
        .map(|p| p.parse::<u16>().map_err(|_| format!("bad port {p:?}")))
        .transpose()?;
    Ok((host.to_string(), port))
}

fn percent_decode(s: &str) -> std::result::Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent escape in {s:?}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{s:?} is not UTF-8 once decoded"))
}

/// Retry policy and limits.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub retry_interval: Duration,
    pub retry_max_interval: Duration,
    pub max_age: Duration,
}

impl Policy {
    /// Wait after the `attempts`-th failure: doubling from `retry_interval`, capped.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let factor = 1u32 << attempts.saturating_sub(1).min(20);
        self.retry_interval
            .saturating_mul(factor)
            .min(self.retry_max_interval)
    }
}

struct Pending {
    q: Queued,
    attempts: u32,
    next: Instant,
}

/// The delivery task's state.
pub struct Deliverer {
    pub outbox: Arc<Outbox>,
    pub transport: AsyncSmtpTransport<Tokio1Executor>,
    pub policy: Policy,
    pub metrics: Metrics,
    pub wake: Arc<Notify>,
}

impl Deliverer {
    /// Runs until shutdown: delivers what is queued, now and whenever woken. A send in
    /// progress at shutdown is abandoned; its file stays queued for the next start.
    pub async fn run(self, mut shutdown: Shutdown) {
        let mut pending: BTreeMap<String, Pending> = BTreeMap::new();
        loop {
            if *shutdown.borrow() {
                return;
            }
            self.pick_up(&mut pending);
            let now = Instant::now();
            let due: Vec<String> = pending
                .iter()
                .filter(|(_, p)| p.next <= now)
                .map(|(id, _)| id.clone())
                .collect();
            for id in due {
                let p = pending.get_mut(&id).expect("id taken from the map");
                let bytes = match std::fs::read(&p.q.path) {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::error!(file = %p.q.path.display(), error = %e, "queued advice vanished");
                        pending.remove(&id);
                        continue;
                    }
                };
                let result = tokio::select! {
                    r = self.transport.send_raw(&p.q.envelope, &bytes) => r.map(drop),
                    _ = shutdown.wait_for(|&stop| stop) => return,
                };
                let down = result.as_ref().err().is_some_and(host_down);
                if self.settle(p, result) {
                    pending.remove(&id);
                } else if down {
                    // Do not knock on a closed door once per queued mail: the rest wait
                    // as long as this one.
                    let hold = p.next;
                    for p in pending.values_mut().filter(|p| p.next <= now) {
                        p.next = hold;
                    }
                    break;
                }
            }
            self.metrics.outbox_pending.set(pending.len() as i64);
            let next = pending.values().map(|p| p.next).min();
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = sleep_until(next) => {}
                _ = shutdown.wait_for(|&stop| stop) => return,
            }
        }
    }

    /// Adds queue files not yet known.
    fn pick_up(&self, pending: &mut BTreeMap<String, Pending>) {
        let paths = match self.outbox.queued_paths() {
            Ok(p) => p,
            Err(e) => return tracing::error!(error = %e, "cannot list the advice queue"),
        };
        for path in paths {
            let id = path.file_stem().unwrap_or_default().to_string_lossy();
            if pending.contains_key(id.as_ref()) {
                continue;
            }
            match self.outbox.load(&path) {
                Ok(Some(q)) => {
                    let next = Instant::now();
                    pending.insert(
                        q.id.clone(),
                        Pending {
                            q,
                            attempts: 0,
                            next,
                        },
                    );
                }
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "cannot read queued advice"),
            }
        }
        self.metrics.outbox_pending.set(pending.len() as i64);
    }

    /// Records the outcome of one attempt; `true` when the mail leaves the queue.
    fn settle(
        &self,
        p: &mut Pending,
        result: std::result::Result<(), lettre::transport::smtp::Error>,
    ) -> bool {
        let count = |outcome: &str| {
            self.metrics
                .advice_emails_total
                .with_label_values(&[p.q.audience.as_str(), outcome])
                .inc()
        };
        let err = match result {
            Ok(_) => {
                tracing::info!(id = %p.q.id, to = ?p.q.envelope.to(), "advice sent");
                count("sent");
                if let Err(e) = self.outbox.done(&p.q) {
                    tracing::error!(error = %e, "sent advice could not be removed from the queue; it may be sent again");
                }
                return true;
            }
            Err(e) => e,
        };
        p.attempts += 1;
        let age = Duration::from_millis(store::now_ms().saturating_sub(p.q.created_ms));
        if err.is_permanent() || age >= self.policy.max_age {
            let why = if err.is_permanent() {
                "rejected permanently"
            } else {
                "too old"
            };
            match self.outbox.give_up(&p.q) {
                Ok(kept) => {
                    tracing::error!(id = %p.q.id, to = ?p.q.envelope.to(), attempts = p.attempts,
                    error = %err, kept = %kept.display(), "advice given up: {why}")
                }
                Err(e) => {
                    tracing::error!(id = %p.q.id, error = %e, "advice given up ({why}: {err}) but could not be moved to failed/")
                }
            }
            count("failed");
            return true;
        }
        let wait = self.policy.backoff(p.attempts);
        tracing::warn!(id = %p.q.id, attempts = p.attempts, error = %err, retry_in = ?wait, "advice delivery failed; will retry");
        count("retried");
        p.next = Instant::now() + wait;
        false
    }
}

/// The smarthost itself is unreachable or refusing service (connection, TLS, timeout,
/// `421`), as opposed to a verdict on this one mail.
fn host_down(e: &lettre::transport::smtp::Error) -> bool {
    let service_closing = e.status().is_some_and(|c| c.to_string() == "421");
    service_closing || !(e.is_permanent() || e.is_transient() || e.is_client())
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smarthost_urls() {
        let s = Smarthost::parse("smtp://relay.example.com").unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.tls),
            ("relay.example.com", 25, TlsMode::Opportunistic)
        );
        let s = Smarthost::parse("smtp://u%40x:p%3Aw@127.0.0.1:2526/?tls=required").unwrap();
        assert_eq!((s.port, s.tls), (2526, TlsMode::Required));
        assert_eq!(s.credentials, Some(("u@x".into(), "p:w".into())));
        let s = Smarthost::parse("smtps://[::1]").unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.tls),
            ("::1", 465, TlsMode::Implicit)
        );
        assert_eq!(
            Smarthost::parse("smtp://h?tls=none").unwrap().tls,
            TlsMode::None
        );
        for bad in [
            "http://h",
            "smtp://",
            "smtp://h:99999",
            "smtp://h?tls=maybe",
            "smtps://h?tls=none",
            "smtp://u@h",
            "relay:25",
        ] {
            assert!(Smarthost::parse(bad).is_err(), "{bad} accepted");
        }
        assert!(
            !format!("{:?}", Smarthost::parse("smtp://u:secret@h").unwrap()).contains("secret")
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = Policy {
            retry_interval: Duration::from_secs(60),
            retry_max_interval: Duration::from_secs(600),
            max_age: Duration::from_secs(3600),
        };
        let waits: Vec<u64> = (1..=6).map(|n| p.backoff(n).as_secs()).collect();
        assert_eq!(waits, [60, 120, 240, 480, 600, 600]);
    }
}
