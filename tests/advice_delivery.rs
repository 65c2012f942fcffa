//! Delivery through the smarthost: outages, restarts, giving up, AUTH — against a real
//! SMTP server on loopback that can refuse, defer and reject.

#[path = "common/advice_fixture.rs"]
mod fixture;
#[path = "common/smtp_capture.rs"]
mod smtp_capture;

use std::collections::BTreeSet;
use std::time::Duration;

use bouncelens::model::Lang;
use fixture::{config, eml_files, parse, with_smarthost, Bounce, Running};
use smtp_capture::{Mode, Security, SmtpCapture};

/// Three bounces from three senders (so no digest is involved).
fn three() -> Vec<Bounce> {
    ["alice", "dave", "erin"]
        .iter()
        .map(|who| {
            Bounce::new(
                &format!("D-{who}"),
                &format!("{who}@example.com"),
                &format!("to-{who}@example.org"),
                "5.1.1",
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smarthost_down_then_up_delivers_each_advice_exactly_once() {
    let (dir, smtp, adv) = with_smarthost(Mode::Unavailable, Lang::En, |_| {}).await;
    for b in three() {
        adv.submit(&b).await;
    }
    // Every mail is on disk before submit returned, and is retried while the
    // smarthost answers 421.
    assert_eq!(eml_files(&dir.path().join("queue")).len(), 3);
    adv.until("deferred attempts with all three pending", |a| {
        a.count("sender", "retried") >= 3 && a.metrics.outbox_pending.get() == 3
    })
    .await;
    assert!(smtp.mails().is_empty());
    assert!(smtp.connections() >= 3);

    smtp.set_mode(Mode::Accept);
    let mails = smtp.wait_for(3).await;
    adv.until("all three sent", |a| a.count("sender", "sent") == 3)
        .await;
    let rcpts: BTreeSet<_> = mails.iter().map(|m| m.rcpt_to.join(",")).collect();
    assert_eq!(
        rcpts,
        BTreeSet::from([
            "alice@example.com".to_string(),
            "dave@example.com".to_string(),
            "erin@example.com".to_string()
        ])
    );
    let ids: BTreeSet<_> = mails
        .iter()
        .map(|m| parse(&m.data).message_id().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 3, "each advice once");
    assert!(eml_files(&dir.path().join("queue")).is_empty());
    adv.until("the gauge to drop", |a| a.metrics.outbox_pending.get() == 0)
        .await;
    assert_eq!(smtp.mails().len(), 3);
    assert_eq!(adv.count("sender", "failed"), 0);
    adv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advice_pending_across_a_restart_is_delivered_once() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = SmtpCapture::start_with(Mode::TempFail).await;
    let cfg = config(dir.path(), Some(smtp.url()), Lang::En);
    let first = Running::start(&cfg).await;
    first
        .bounce("R1", "alice@example.com", "r1@example.org", "5.1.1")
        .await;
    first
        .until("a deferred attempt", |a| a.count("sender", "retried") >= 1)
        .await;
    first.stop().await;
    assert_eq!(eml_files(&dir.path().join("queue")).len(), 1);

    smtp.set_mode(Mode::Accept);
    let second = Running::start(&cfg).await;
    let mails = smtp.wait_for(1).await;
    second
        .until("sent after restart", |a| a.count("sender", "sent") == 1)
        .await;
    assert_eq!(mails[0].rcpt_to, ["alice@example.com"]);
    assert!(parse(&mails[0].data)
        .subject()
        .unwrap()
        .contains("r1@example.org"));
    assert!(eml_files(&dir.path().join("queue")).is_empty());
    assert_eq!(smtp.mails().len(), 1);
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advice_is_given_up_after_max_age_and_kept_in_failed() {
    let (dir, _smtp, adv) = with_smarthost(Mode::TempFail, Lang::En, |c| {
        c.advice.max_age = Duration::from_millis(300);
    })
    .await;
    adv.bounce("F1", "alice@example.com", "f1@example.org", "5.1.1")
        .await;
    adv.until("given up", |a| a.count("sender", "failed") == 1)
        .await;
    assert!(adv.count("sender", "retried") >= 1, "it was retried first");
    assert!(eml_files(&dir.path().join("queue")).is_empty());
    let failed = eml_files(&dir.path().join("failed"));
    assert_eq!(failed.len(), 1);
    let bytes = std::fs::read(&failed[0]).unwrap();
    assert_eq!(
        parse(&bytes).to().unwrap().first().unwrap().address(),
        Some("alice@example.com")
    );
    assert_eq!(adv.count("sender", "sent"), 0);
    adv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_rejection_is_given_up_at_once() {
    let (dir, _smtp, adv) = with_smarthost(Mode::RejectRcpt, Lang::En, |_| {}).await;
    adv.bounce("F2", "alice@example.com", "f2@example.org", "5.1.1")
        .await;
    adv.until("given up", |a| a.count("sender", "failed") == 1)
        .await;
    assert_eq!(adv.count("sender", "retried"), 0);
    assert_eq!(eml_files(&dir.path().join("failed")).len(), 1);
    adv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smarthost_auth_and_helo_come_from_config() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = SmtpCapture::start().await;
    let url = format!("smtp://advice%40example.com:s3cr%3At@{}", smtp.addr());
    let adv = Running::start(&config(dir.path(), Some(url), Lang::En)).await;
    adv.bounce("A1", "alice@example.com", "a1@example.org", "5.1.1")
        .await;
    let mails = smtp.wait_for(1).await;
    assert_eq!(
        mails[0].auth,
        Some(("advice@example.com".to_string(), "s3cr:t".to_string()))
    );
    assert_eq!(mails[0].helo, "bounces.example.com");
    assert_eq!(mails[0].mail_from, "");
    adv.stop().await;
}

/// Runs one advice through a smarthost served with `security` at `url` (where
/// `{addr}` stands for its address); returns the advisor and the server.
async fn through(
    dir: &std::path::Path,
    url: &str,
    security: Security,
    ca: Option<std::path::PathBuf>,
) -> (Running, SmtpCapture) {
    let smtp = SmtpCapture::start_secure(Mode::Accept, security).await;
    let url = url.replace("{addr}", &smtp.addr().to_string());
    let mut cfg = config(dir, Some(url), Lang::En);
    cfg.advice.smarthost_ca = ca;
    let adv = Running::start(&cfg).await;
    adv.bounce("T1", "alice@example.com", "t1@example.org", "5.1.1")
        .await;
    (adv, smtp)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_and_implicit_tls_reach_a_smarthost_with_a_private_ca() {
    let pki = tempfile::tempdir().unwrap();
    let Some((ca, acceptor)) = smtp_capture::test_pki(pki.path()) else {
        eprintln!("skipped: openssl CLI not available to make test certificates");
        return;
    };
    let cases = [
        (
            "STARTTLS required",
            "smtp://{addr}?tls=required",
            Security::StartTls(acceptor.clone()),
        ),
        (
            "STARTTLS opportunistic (the default)",
            "smtp://{addr}",
            Security::StartTls(acceptor.clone()),
        ),
        (
            "implicit TLS",
            "smtps://{addr}",
            Security::Implicit(acceptor.clone()),
        ),
    ];
    for (what, url, security) in cases {
        let dir = tempfile::tempdir().unwrap();
        let (adv, smtp) = through(dir.path(), url, security, Some(ca.clone())).await;
        let mails = smtp.wait_for(1).await;
        assert!(mails[0].tls, "{what}: not sent over TLS");
        assert_eq!(mails[0].rcpt_to, ["alice@example.com"], "{what}");
        adv.until(what, |a| a.count("sender", "sent") == 1).await;
        adv.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_enforced_when_required_and_certificates_are_checked() {
    let pki = tempfile::tempdir().unwrap();
    let Some((ca, acceptor)) = smtp_capture::test_pki(pki.path()) else {
        eprintln!("skipped: openssl CLI not available to make test certificates");
        return;
    };
    // tls=required against a server without STARTTLS: never sent in the clear.
    let dir = tempfile::tempdir().unwrap();
    let (adv, smtp) = through(
        dir.path(),
        "smtp://{addr}?tls=required",
        Security::Plain,
        Some(ca),
    )
    .await;
    adv.until("a refused attempt", |a| a.count("sender", "retried") >= 1)
        .await;
    assert!(smtp.mails().is_empty());
    adv.stop().await;
    // A certificate from a CA we were not told to trust: not sent.
    let dir = tempfile::tempdir().unwrap();
    let (adv, smtp) = through(
        dir.path(),
        "smtps://{addr}",
        Security::Implicit(acceptor),
        None,
    )
    .await;
    adv.until("a refused attempt", |a| a.count("sender", "retried") >= 1)
        .await;
    assert!(smtp.mails().is_empty());
    assert_eq!(
        eml_files(&dir.path().join("queue")).len(),
        1,
        "still queued"
    );
    adv.stop().await;
}
