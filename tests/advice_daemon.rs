//! End to end through the real daemon: a bounce is delivered to bouncelens over SMTP,
//! spooled, classified, handed to the advisor, and the advice reaches a capturing
//! smarthost — including across a daemon restart while the smarthost is down.
//!
//! Routing sends every failure to the admins here, so these tests hold whatever the
//! parser makes of the bounce (they test the plumbing; content is in advice_mail.rs).

#[path = "common/advice_fixture.rs"]
mod fixture;
#[path = "common/smtp_capture.rs"]
mod smtp_capture;

use std::path::Path;

use bouncelens::config::{Audience, Config};
use bouncelens::model::{Lang, Reason};
use bouncelens::rules::RuleSet;
use bouncelens::server::{Daemon, Listeners};
use fixture::{attached, config, eml_files, parse, Bounce, ADMIN};
use lettre::address::Envelope;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use smtp_capture::{Mode, SmtpCapture};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// A daemon on a free loopback port with spool, events log and outbox under `dir`.
struct Running {
    daemon: Daemon,
    stop: watch::Sender<bool>,
}

fn daemon_config(dir: &Path, smarthost: &SmtpCapture) -> Config {
    let mut c = config(&dir.join("outbox"), Some(smarthost.url()), Lang::En);
    c.spool.dir = dir.join("spool");
    c.spool.events_log = dir.join("events.jsonl");
    c.metrics.listen = None;
    let r = &mut c.advice.route;
    for a in [
        &mut r.sender,
        &mut r.sender_admin,
        &mut r.recipient,
        &mut r.recipient_admin,
        &mut r.none,
    ] {
        *a = Audience::Admin;
    }
    r.reason.insert(Reason::Undefined, Audience::Admin);
    c
}

impl Running {
    async fn start(cfg: &Config) -> Running {
        cfg.validate("test").expect("valid config");
        let listeners = Listeners {
            smtp: vec![TcpListener::bind("127.0.0.1:0").await.unwrap()],
            http: None,
        };
        let (stop, rx) = watch::channel(false);
        let daemon = Daemon::start(listeners, cfg.clone(), RuleSet::load(&[]).unwrap(), rx)
            .await
            .expect("daemon starts");
        Running { daemon, stop }
    }

    /// Delivers `raw` to the daemon as a bounce (null sender), like a remote MTA.
    async fn deliver(&self, raw: &str) {
        let addr = self.daemon.smtp_addrs()[0];
        let client = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
            .port(addr.port())
            .build();
        let env =
            Envelope::new(None, vec!["bounces@bounces.example.com".parse().unwrap()]).unwrap();
        client
            .send_raw(&env, raw.as_bytes())
            .await
            .expect("the daemon accepts the bounce");
    }

    fn count(&self, audience: &str, outcome: &str) -> u64 {
        self.daemon
            .metrics()
            .advice_emails_total
            .with_label_values(&[audience, outcome])
            .get()
    }

    async fn until(&self, what: &str, cond: impl Fn(&Running) -> bool) {
        fixture::eventually(what, self.daemon.metrics(), || cond(self)).await
    }

    async fn stop(self) {
        self.stop.send(true).unwrap();
        self.daemon.wait().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounce_received_over_smtp_becomes_advice_at_the_smarthost() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = SmtpCapture::start().await;
    let d = Running::start(&daemon_config(dir.path(), &smtp)).await;
    let bounce = Bounce::new("E1", "alice@example.com", "bob@example.org", "5.1.1").raw();
    d.deliver(&bounce).await;

    let mails = smtp.wait_for(1).await;
    assert_eq!(mails[0].mail_from, "");
    assert_eq!(mails[0].rcpt_to, [ADMIN]);
    let m = parse(&mails[0].data);
    assert_eq!(
        m.header_raw("Auto-Submitted").map(str::trim),
        Some("auto-generated")
    );
    let att = attached(&m);
    assert_eq!(att.len(), 1);
    // As received (lettre's DATA adds a final empty line, hence the trim).
    let trim = |b: &[u8]| b.trim_ascii_end().to_vec();
    assert_eq!(
        trim(att[0].raw_message()),
        trim(bounce.as_bytes()),
        "the bounce is attached as received"
    );

    // Our own advice coming back as a bounce is recognised: no second mail.
    let mut returned = Bounce::new("E2", "alice@example.com", "bob@example.org", "5.1.1");
    returned.extra_header = "X-Bouncelens-Advice: v=1; audience=admin".into();
    d.deliver(&returned.raw()).await;
    d.until("the loop refusal", |d| {
        d.count("admin", "suppressed_loop") == 1
    })
    .await;
    d.until("the first advice sent", |d| d.count("admin", "sent") == 1)
        .await;
    assert_eq!(d.count("admin", "queued"), 1);
    assert_eq!(smtp.mails().len(), 1);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advice_pending_when_the_daemon_restarts_is_delivered_once() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = SmtpCapture::start_with(Mode::Unavailable).await;
    let cfg = daemon_config(dir.path(), &smtp);
    let first = Running::start(&cfg).await;
    first
        .deliver(&Bounce::new("E3", "alice@example.com", "carol@example.org", "5.1.1").raw())
        .await;
    first
        .until("a deferred attempt", |d| d.count("admin", "retried") >= 1)
        .await;
    first.stop().await;
    assert_eq!(eml_files(&dir.path().join("outbox/queue")).len(), 1);

    smtp.set_mode(Mode::Accept);
    let second = Running::start(&cfg).await;
    let mails = smtp.wait_for(1).await;
    second
        .until("sent after the restart", |d| d.count("admin", "sent") == 1)
        .await;
    assert_eq!(mails[0].rcpt_to, [ADMIN]);
    assert!(eml_files(&dir.path().join("outbox/queue")).is_empty());
    // The spooled bounce was not advised again on restart: still one mail.
    assert_eq!(second.count("admin", "queued"), 0);
    assert_eq!(smtp.mails().len(), 1);
    second.stop().await;
}
