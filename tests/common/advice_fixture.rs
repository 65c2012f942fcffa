//! Building blocks for the advice tests: a rule set with en/ja texts, bounces as the
//! pipeline hands them over (`ProcessedMessage` with classify rows, plus the raw DSN to
//! attach), a config pointing at a test smarthost, and a running `Advisor`.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use bouncelens::advice::Advisor;
use bouncelens::config::Config;
use bouncelens::metrics::Metrics;
use bouncelens::model::{
    Envelope, Lang, MessageKind, OriginalMessage, ParsedMessage, ProcessedMessage, Row, StatusCode,
};
use bouncelens::rules::{MatchInput, RuleSet, RuleSource};
use tokio::sync::watch;

use super::smtp_capture::{Mode, SmtpCapture};

pub const FROM: &str = "bouncelens@bounces.example.com";
pub const ADMIN: &str = "postmaster@example.com";
const DSN: &str = include_str!("../fixtures/advice/dsn.eml.in");
const RULES: &str = include_str!("../fixtures/advice/rules.toml");

pub fn rules() -> RuleSet {
    RuleSet::load(&[vec![RuleSource {
        name: "tests/fixtures/advice/rules.toml".into(),
        text: RULES.into(),
        trusted: false,
    }]])
    .expect("test rules load")
}

/// A config for tests: own domain example.com, one admin, short retries.
pub fn config(dir: &Path, smarthost: Option<String>, lang: Lang) -> Config {
    let mut c = Config::default();
    let a = &mut c.advice;
    a.smarthost = smarthost;
    a.outbox_dir = dir.to_path_buf();
    a.from = FROM.into();
    a.admins = vec![ADMIN.into()];
    a.own_domains = vec!["example.com".into()];
    a.language = lang;
    a.retry_interval = Duration::from_millis(50);
    a.retry_max_interval = Duration::from_millis(200);
    a.smtp_timeout = Duration::from_secs(10);
    c.smtp.hostname = "bounces.example.com".into();
    c
}

/// A bounce of one original message, as the daemon's pipeline would pass it on.
#[derive(Debug, Clone)]
pub struct Bounce {
    pub queue_id: String,
    /// The original's `From:` header.
    pub from: String,
    /// The original's `Sender:` header.
    pub sender: Option<String>,
    /// Where the bounce was delivered (a VERP address, or the bounce mailbox).
    pub envelope_to: String,
    /// `(recipient, status)`; each is classified with the test rules.
    pub recipients: Vec<(String, String)>,
    pub subject: String,
    pub message_id: Option<String>,
    /// A header line added to the returned original's headers (e.g. our loop marker).
    pub extra_header: String,
    pub kind: MessageKind,
}

impl Bounce {
    pub fn new(queue_id: &str, from: &str, rcpt: &str, status: &str) -> Bounce {
        Bounce {
            queue_id: queue_id.into(),
            from: from.into(),
            sender: None,
            envelope_to: "bounces@bounces.example.com".into(),
            recipients: vec![(rcpt.into(), status.into())],
            subject: "Quarterly report <Q3> & \"plans\"".into(),
            message_id: Some(format!("<orig-{queue_id}@mail.example.com>")),
            extra_header: String::new(),
            kind: MessageKind::Dsn,
        }
    }

    pub fn and(mut self, rcpt: &str, status: &str) -> Bounce {
        self.recipients.push((rcpt.into(), status.into()));
        self
    }

    /// The raw DSN (RFC 3464, original headers returned) for the first recipient.
    pub fn raw(&self) -> String {
        let (rcpt, status) = &self.recipients[0];
        let reply = if status.starts_with('4') {
            "450"
        } else {
            "550"
        };
        DSN.replace("{{QUEUE}}", &self.queue_id)
            .replace("{{ENVELOPE_TO}}", &self.envelope_to)
            .replace("{{RCPT}}", rcpt)
            .replace("{{STATUS}}", status)
            .replace("{{REPLY}}", reply)
            .replace("{{TEXT}}", "Recipient address rejected")
            .replace("{{SENDER}}", &self.from)
            .replace("{{FROM}}", &self.from)
            .replace("{{SUBJECT}}", &self.subject)
            .replace(
                "{{MSGID}}",
                self.message_id.as_deref().unwrap_or("<none@invalid>"),
            )
            .replace("{{EXTRA_HEADER}}", &self.extra_header)
            .replace('\n', "\r\n")
    }

    pub fn processed(&self, rules: &RuleSet) -> ProcessedMessage {
        let original = OriginalMessage {
            message_id: self.message_id.clone(),
            from: Some(self.from.clone()),
            sender: self.sender.clone(),
            to: Some(format!("<{}>", self.recipients[0].0)),
            subject: Some(self.subject.clone()),
            date: Some("Tue, 14 May 2024 09:12:30 +0000".into()),
        };
        let rows = self
            .recipients
            .iter()
            .map(|(rcpt, status)| {
                let code: StatusCode = status.parse().unwrap();
                let rule = rules
                    .resolve(&MatchInput {
                        status: Some(code),
                        ..Default::default()
                    })
                    .unwrap_or_else(|| panic!("no test rule for {status}"));
                let reply: u16 = if code.class == 4 { 450 } else { 550 };
                let permanent = code.is_permanent();
                Row {
                    source: self.queue_id.clone(),
                    message_index: 0,
                    recipient: Some(rcpt.clone()),
                    action: Some(if permanent { "failed" } else { "delayed" }.into()),
                    status: Some(status.clone()),
                    reply_code: Some(reply),
                    reason: rule.reason,
                    permanent: Some(permanent),
                    hard_bounce: Some(rule.reason.is_hard_bounce(permanent)),
                    diagnostic: Some(format!(
                        "smtp; {reply} {status} <{rcpt}>: Recipient address rejected"
                    )),
                    remote_mta: Some("mx.example.org".into()),
                    reporting_mta: Some("mail.example.org".into()),
                    format: "rfc3464".into(),
                    feedback_type: None,
                    cause: Some(rule.cause(Lang::En)),
                    original: original.clone(),
                }
            })
            .collect();
        ProcessedMessage {
            queue_id: self.queue_id.clone(),
            received_at: "2024-05-14T09:12:45Z".into(),
            envelope: Envelope {
                mail_from: String::new(),
                rcpt_to: vec![self.envelope_to.clone()],
                client_addr: Some("192.0.2.25".into()),
                helo: Some("mail.example.org".into()),
            },
            raw: self.raw().into_bytes().into(),
            parsed: ParsedMessage {
                kind: self.kind,
                format: "rfc3464",
                reporting_mta: Some("mail.example.org".into()),
                original,
                ..Default::default()
            },
            rows,
        }
    }
}

/// An `Advisor` running with the test rules, its own metrics and shutdown switch.
pub struct Running {
    pub advisor: Advisor,
    pub metrics: Metrics,
    pub rules: RuleSet,
    stop: watch::Sender<bool>,
}

/// A temporary outbox directory, a capturing smarthost in `mode`, and an `Advisor`
/// sending to it with the test config, adjusted by `tweak`.
pub async fn with_smarthost(
    mode: Mode,
    lang: Lang,
    tweak: impl FnOnce(&mut Config),
) -> (tempfile::TempDir, SmtpCapture, Running) {
    let dir = tempfile::tempdir().unwrap();
    let smtp = SmtpCapture::start_with(mode).await;
    let mut cfg = config(dir.path(), Some(smtp.url()), lang);
    tweak(&mut cfg);
    let adv = Running::start(&cfg).await;
    (dir, smtp, adv)
}

impl Running {
    pub async fn start(cfg: &Config) -> Running {
        cfg.validate("test").expect("test config is valid");
        let metrics = Metrics::new();
        let (stop, rx) = watch::channel(false);
        let advisor = Advisor::start(cfg, metrics.clone(), rx)
            .await
            .expect("advisor starts");
        Running {
            advisor,
            metrics,
            rules: rules(),
            stop,
        }
    }

    /// Hands `b` to the advisor as the pipeline would; returns once it is durable.
    pub async fn submit(&self, b: &Bounce) {
        self.advisor
            .submit(&b.processed(&self.rules), &self.rules)
            .await
            .expect("submit");
    }

    /// Submits a one-recipient bounce.
    pub async fn bounce(&self, queue_id: &str, from: &str, rcpt: &str, status: &str) {
        self.submit(&Bounce::new(queue_id, from, rcpt, status))
            .await;
    }

    /// `bouncelens_advice_emails_total{audience, outcome}`.
    pub fn count(&self, audience: &str, outcome: &str) -> u64 {
        self.metrics
            .advice_emails_total
            .with_label_values(&[audience, outcome])
            .get()
    }

    /// Waits (bounded) until `cond` holds.
    pub async fn until(&self, what: &str, cond: impl Fn(&Running) -> bool) {
        eventually(what, &self.metrics, || cond(self)).await
    }

    /// Signals shutdown and waits for the background tasks to end.
    pub async fn stop(self) {
        self.stop.send(true).unwrap();
        self.advisor.closed().await;
    }
}

/// The `.eml` files directly in `dir`.
pub fn eml_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "eml"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Parses a captured or written advice mail.
pub fn parse(raw: &[u8]) -> mail_parser::Message<'_> {
    mail_parser::MessageParser::default()
        .parse(raw)
        .expect("advice mail parses")
}

/// The MIME structure, one `type/subtype` per part in order.
pub fn structure(m: &mail_parser::Message<'_>) -> Vec<String> {
    use mail_parser::MimeHeaders;
    m.parts
        .iter()
        .map(|p| {
            p.content_type()
                .map(|c| format!("{}/{}", c.ctype(), c.subtype().unwrap_or("")))
                .unwrap_or_else(|| "text/plain".into())
                .to_ascii_lowercase()
        })
        .collect()
}

/// The decoded contents of the first part of `ctype` (e.g. `text/plain`).
pub fn part_text(m: &mail_parser::Message<'_>, ctype: &str) -> String {
    let n = structure(m)
        .iter()
        .position(|t| t == ctype)
        .unwrap_or_else(|| panic!("no {ctype} part in {:?}", structure(m)));
    m.parts[n]
        .text_contents()
        .expect("text part")
        .replace("\r\n", "\n")
}

/// The attached messages (`message/rfc822` parts), parsed.
pub fn attached<'a>(m: &'a mail_parser::Message<'a>) -> Vec<&'a mail_parser::Message<'a>> {
    m.parts.iter().filter_map(|p| p.message()).collect()
}

/// A header's raw value as transmitted (still RFC 2047-encoded).
pub fn raw_header<'a>(m: &'a mail_parser::Message<'a>, name: &str) -> String {
    m.header_raw(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .trim()
        .to_string()
}

/// Waits until `cond` holds, polling; panics with the metrics after a generous bound
/// (a failure bound, not a timing assertion).
pub async fn eventually(what: &str, metrics: &Metrics, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + super::smtp_capture::PATIENCE;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting for {what}; metrics:\n{}",
            metrics.render()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
