//! End to end through the real daemon: a bounce is delivered to bouncelens over SMTP,
//! spooled, parsed, classified with the built-in rule packs, handed to the advisor, and
//! the advice reaches a capturing smarthost — including across a daemon restart while
//! the smarthost is down.

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
    c
}

/// No rules: classification leaves causes empty (quick to load in debug builds).
fn no_rules() -> RuleSet {
    RuleSet::load(&[]).unwrap()
}

/// Routing that sends every failure to the admins, whatever its cause: for tests of
/// the plumbing that should not depend on what the rule packs say.
fn everything_to_admins(c: &mut Config) {
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
}

impl Running {
    /// Starts a daemon classifying with `rules`.
    async fn start(cfg: &Config, rules: RuleSet) -> Running {
        cfg.validate("test").expect("valid config");
        let listeners = Listeners {
            smtp: vec![TcpListener::bind("127.0.0.1:0").await.unwrap()],
            http: None,
        };
        let (stop, rx) = watch::channel(false);
        let daemon = Daemon::start(listeners, cfg.clone(), rules, rx)
            .await
            .expect("daemon starts");
        Running { daemon, stop }
    }

    /// Delivers `raw` to the bounce mailbox as a remote MTA would (null sender).
    async fn deliver(&self, raw: &str) {
        self.deliver_to(raw, "bounces@bounces.example.com").await
    }

    async fn deliver_to(&self, raw: &str, rcpt: &str) {
        let addr = self.daemon.smtp_addrs()[0];
        let client = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
            .port(addr.port())
            .build();
        let env = Envelope::new(None, vec![rcpt.parse().unwrap()]).unwrap();
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
    let mut cfg = daemon_config(dir.path(), &smtp);
    everything_to_admins(&mut cfg);
    let d = Running::start(&cfg, no_rules()).await;
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
    let mut cfg = daemon_config(dir.path(), &smtp);
    everything_to_admins(&mut cfg);
    let first = Running::start(&cfg, no_rules()).await;
    first
        .deliver(&Bounce::new("E3", "alice@example.com", "carol@example.org", "5.1.1").raw())
        .await;
    first
        .until("a deferred attempt", |d| d.count("admin", "retried") >= 1)
        .await;
    first.stop().await;
    assert_eq!(eml_files(&dir.path().join("outbox/queue")).len(), 1);

    smtp.set_mode(Mode::Accept);
    let second = Running::start(&cfg, no_rules()).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_bounce_becomes_japanese_advice_for_its_sender_threaded_with_the_original() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = SmtpCapture::start().await;
    let mut cfg = daemon_config(dir.path(), &smtp);
    cfg.advice.language = Lang::Ja;
    cfg.smtp.verp = Some("bounces+{local}={domain}@bounces.example.com".into());
    cfg.smtp.accept_addresses = vec!["bounces@bounces.example.com".into()];
    let to_alice = Bounce::new(
        "E5",
        "Alice <alice@example.com>",
        "bob@example.org",
        "5.1.1",
    )
    .raw();

    // What the library says about this bounce, in Japanese, is what the mail must say.
    let rules = RuleSet::builtin().unwrap();
    let parsed = bouncelens::parse::parse_message(to_alice.as_bytes());
    let row = bouncelens::classify::classify_message(&parsed, &rules, Lang::Ja, "E5", 0).remove(0);
    let cause = row.cause.expect("the packs explain 5.1.1");
    let steps = rules.get(&cause.id).unwrap().ja.steps.clone();
    assert!(!steps.is_empty());

    let d = Running::start(&cfg, rules).await;
    // To the bounce mailbox: the sender comes from the returned headers.
    d.deliver(&to_alice).await;
    // To a VERP address: the envelope names carol, whatever the From header says.
    let verp = Bounce::new("E6", "alice@example.com", "dan@example.org", "5.1.1").raw();
    d.deliver_to(&verp, "bounces+carol=example.com@bounces.example.com")
        .await;
    // A bounce of forged mail (sender outside our domains): backscatter, no advice.
    let forged = Bounce::new("E7", "spoofed@elsewhere.test", "x@example.org", "5.1.1").raw();
    d.deliver(&forged).await;

    let mails = smtp.wait_for(2).await;
    d.until("two sent, one refused", |d| {
        d.count("sender", "sent") == 2 && d.count("sender", "suppressed_backscatter") == 1
    })
    .await;
    assert_eq!(smtp.mails().len(), 2);
    let alice = mails
        .iter()
        .find(|m| m.rcpt_to == ["alice@example.com"])
        .expect("advice for alice");
    assert!(mails.iter().any(|m| m.rcpt_to == ["carol@example.com"]));

    let m = parse(&alice.data);
    assert_eq!(
        m.subject().unwrap(),
        format!("bob@example.org に配信できませんでした: {}", cause.title)
    );
    assert_eq!(
        m.header_raw("In-Reply-To").map(str::trim),
        Some("<orig-E5@mail.example.com>")
    );
    let text = fixture::part_text(&m, "text/plain");
    assert!(text.contains(&cause.advice), "{text}");
    assert!(text.contains("対応が必要な人: あなた (送信者)"), "{text}");
    for (n, step) in steps.iter().enumerate() {
        assert!(
            text.contains(&format!("  {}. {step}", n + 1)),
            "step {n}: {text}"
        );
    }
    assert!(text.contains("ステータス コード: 5.1.1"));
    assert_eq!(attached(&m).len(), 1);
    d.stop().await;
}
