//! The daemon's configuration (`config/bouncelens.toml`, SPEC.md "Config").
//!
//! Every key has a default, so `bouncelens serve` with no file runs a loopback-only
//! instance that writes advice to `./var/outbox`. Loading is strict: unknown keys and
//! bad values are refused with `file:line`, then [`Config::validate`] checks what TOML
//! types cannot (addresses, paths, combinations). The daemon only ever sees a validated
//! `Config`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::model::{FixBy, Lang, Reason};

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub smtp: SmtpConfig,
    pub spool: SpoolConfig,
    pub metrics: MetricsConfig,
    pub rules: RulesConfig,
    pub advice: AdviceConfig,
}

/// SMTP or LMTP on the listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Smtp,
    Lmtp,
}

/// `[smtp]`: the listener.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    /// Addresses to listen on.
    pub listen: Vec<SocketAddr>,
    pub protocol: Protocol,
    /// Name used in the greeting, EHLO reply and queue-id replies.
    pub hostname: String,
    /// Accepted recipient addresses (exact, case-insensitive).
    pub accept_addresses: Vec<String>,
    /// Accepted recipient domains (any local part).
    pub accept_domains: Vec<String>,
    /// VERP return-path pattern, e.g. `bounces+{local}={domain}@bounces.example.com`:
    /// recipients matching it are accepted and decode to the original sender.
    pub verp: Option<String>,
    /// Largest message accepted, in bytes (announced in EHLO SIZE).
    pub max_message_size: u64,
    /// Longest command or data line accepted, in bytes.
    pub max_line_length: usize,
    pub max_recipients: usize,
    /// Concurrent sessions; more get `421 4.7.0`.
    pub max_connections: usize,
    /// Longest wait for the client's next command or data chunk.
    #[serde(with = "duration_str")]
    pub idle_timeout: Duration,
    /// Longest whole session.
    #[serde(with = "duration_str")]
    pub session_timeout: Duration,
    /// Protocol errors tolerated in one session before it is closed.
    pub max_errors: u32,
    /// On SIGTERM, how long running sessions may take to finish.
    #[serde(with = "duration_str")]
    pub shutdown_grace: Duration,
    /// PEM certificate chain and key; when both are set, STARTTLS is offered.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            listen: vec!["127.0.0.1:2525".parse().unwrap()],
            protocol: Protocol::Smtp,
            hostname: default_hostname(),
            accept_addresses: Vec::new(),
            accept_domains: Vec::new(),
            verp: None,
            max_message_size: 10 * 1024 * 1024,
            max_line_length: 64 * 1024,
            max_recipients: 100,
            max_connections: 256,
            idle_timeout: Duration::from_secs(120),
            session_timeout: Duration::from_secs(600),
            max_errors: 10,
            shutdown_grace: Duration::from_secs(30),
            tls_cert: None,
            tls_key: None,
        }
    }
}

/// `[spool]`: where accepted messages and the events log live.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolConfig {
    pub dir: PathBuf,
    /// How long processed messages are kept before compaction removes them.
    #[serde(with = "duration_str")]
    pub retention: Duration,
    /// The events log (JSON Lines, one line per recipient row).
    pub events_log: PathBuf,
    /// Segment files are closed and a new one started at this size, in bytes.
    /// Old segments are deleted whole once every message in them is processed and
    /// past `retention`.
    pub segment_size: u64,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            dir: PathBuf::from("var/spool"),
            retention: Duration::from_secs(7 * 24 * 3600),
            events_log: PathBuf::from("var/events.jsonl"),
            segment_size: 64 * 1024 * 1024,
        }
    }
}

/// `[metrics]`: the Prometheus endpoint.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Where `/metrics` and `/healthz` are served; `"off"` turns the endpoint off.
    #[serde(with = "listen_or_off")]
    pub listen: Option<SocketAddr>,
    /// Recipient domains given their own label value; all others are `other`.
    pub domains: Vec<String>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: Some("127.0.0.1:9465".parse().unwrap()),
            domains: Vec::new(),
        }
    }
}

/// `[rules]`: which rule packs to load.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RulesConfig {
    /// Load the packs compiled into the binary (the repository's `rules/`).
    pub builtin: bool,
    /// Further directories of `*.toml` rule files, each a layer that can add rules or
    /// replace built-in ones by `id`.
    pub dirs: Vec<PathBuf>,
    /// Language of cause titles and advice in the events log.
    pub language: Lang,
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            builtin: true,
            dirs: Vec::new(),
            language: Lang::En,
        }
    }
}

/// Who an advice mail goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Audience {
    /// The original sender of the bounced message.
    Sender,
    /// The configured admin addresses.
    Admin,
    /// Both the sender and the admins.
    Both,
    /// No mail (metrics and events only).
    Off,
}

/// `[advice.route]`: audience by `fix_by`, with overrides by reason and by cause id.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouteConfig {
    pub sender: Audience,
    pub sender_admin: Audience,
    pub recipient: Audience,
    pub recipient_admin: Audience,
    pub none: Audience,
    /// Overrides by reason name, e.g. `blocked = "admin"`.
    pub reason: BTreeMap<Reason, Audience>,
    /// Overrides by cause (rule) id, e.g. `"exo.5.7.1.unable-to-relay" = "admin"`.
    pub cause: BTreeMap<String, Audience>,
}

impl Default for RouteConfig {
    fn default() -> Self {
        RouteConfig {
            sender: Audience::Sender,
            sender_admin: Audience::Admin,
            recipient: Audience::Sender,
            recipient_admin: Audience::Sender,
            none: Audience::Off,
            reason: BTreeMap::new(),
            cause: BTreeMap::new(),
        }
    }
}

impl RouteConfig {
    /// The audience for a row: cause override, then reason override, then by fix_by.
    pub fn audience(&self, cause_id: Option<&str>, reason: Reason, fix_by: FixBy) -> Audience {
        if let Some(a) = cause_id.and_then(|c| self.cause.get(c)) {
            return *a;
        }
        if let Some(a) = self.reason.get(&reason) {
            return *a;
        }
        match fix_by {
            FixBy::Sender => self.sender,
            FixBy::SenderAdmin => self.sender_admin,
            FixBy::Recipient => self.recipient,
            FixBy::RecipientAdmin => self.recipient_admin,
            FixBy::None => self.none,
        }
    }
}

/// `[advice]`: annotated advice mail.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdviceConfig {
    /// Turn advice mail off entirely.
    pub enabled: bool,
    /// `smtp://[user:pass@]host[:port]` (port 25; STARTTLS if offered, `?tls=required`
    /// to insist, `?tls=none` never) or `smtps://...` (implicit TLS, port 465). User and
    /// password are percent-decoded. Unset: advice is written to `outbox_dir` as .eml.
    pub smarthost: Option<String>,
    /// PEM file of CA certificates to trust for the smarthost's TLS besides the public
    /// roots (an internal relay with a private CA).
    pub smarthost_ca: Option<PathBuf>,
    /// Where `.eml` files go without a smarthost, and the durable queue with one.
    pub outbox_dir: PathBuf,
    /// From address of advice mail.
    pub from: String,
    /// Admin addresses (audience `admin`).
    pub admins: Vec<String>,
    /// Domains whose senders may receive advice; others are never mailed (backscatter).
    /// Empty with no smarthost (outbox mode) means "any", since nothing leaves the machine.
    pub own_domains: Vec<String>,
    pub language: Lang,
    pub route: RouteConfig,
    /// Further advice for the same cause and audience within this window is collected
    /// into one digest.
    #[serde(with = "duration_str")]
    pub digest_window: Duration,
    /// Most advice mails one address receives per hour; more are suppressed and counted.
    pub hourly_cap: u32,
    /// Retry delivery for this long, then give up (logged, counted, kept in `failed/`).
    #[serde(with = "duration_str")]
    pub max_age: Duration,
    /// Wait before the first retry after a failed delivery; doubles on every further
    /// failure, up to `retry_max_interval`.
    #[serde(with = "duration_str")]
    pub retry_interval: Duration,
    #[serde(with = "duration_str")]
    pub retry_max_interval: Duration,
    /// Longest wait for the smarthost's reply to any SMTP command.
    #[serde(with = "duration_str")]
    pub smtp_timeout: Duration,
    /// Advise on auto-replies / complaint reports too (normally not).
    pub advise_autoreplies: bool,
    pub advise_feedback: bool,
}

impl Default for AdviceConfig {
    fn default() -> Self {
        AdviceConfig {
            enabled: true,
            smarthost: None,
            smarthost_ca: None,
            outbox_dir: PathBuf::from("var/outbox"),
            from: format!("bouncelens@{}", default_hostname()),
            admins: Vec::new(),
            own_domains: Vec::new(),
            language: Lang::En,
            route: RouteConfig::default(),
            digest_window: Duration::from_secs(15 * 60),
            hourly_cap: 20,
            max_age: Duration::from_secs(2 * 24 * 3600),
            retry_interval: Duration::from_secs(60),
            retry_max_interval: Duration::from_secs(3600),
            smtp_timeout: Duration::from_secs(60),
            advise_autoreplies: false,
            advise_feedback: false,
        }
    }
}

fn default_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// A bare `local@domain` check, good enough to catch typos in config.
pub fn looks_like_address(a: &str) -> bool {
    match a.rsplit_once('@') {
        Some((l, d)) => {
            !l.is_empty()
                && !d.is_empty()
                && d.chars()
                    .all(|c| c.is_alphanumeric() || c == '.' || c == '-')
                && !l.contains(|c: char| c.is_whitespace() || c == '<' || c == '>')
        }
        None => false,
    }
}

fn bad(path: &str, key: &str, why: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Config, format!("{path}: [{key}] {why}"))
}

/// An error naming section and key: `file: [section] key: why`. [`Config::from_toml`]
/// adds the line the key is on.
fn bad_key(path: &str, section: &str, key: &str, why: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::Config,
        format!("{path}: [{section}] {key}: {why}"),
    )
}

/// The line (1-based) where `key` is set inside `[section]` of `text`, if it is.
fn line_of_key(text: &str, section: &str, key: &str) -> Option<usize> {
    let mut current = String::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if let Some(h) = t.strip_prefix('[') {
            current = h
                .trim_start_matches('[')
                .split(']')
                .next()?
                .trim()
                .to_string();
            continue;
        }
        if current == section {
            if let Some(rest) = t.strip_prefix(key) {
                if rest.trim_start().starts_with('=') {
                    return Some(i + 1);
                }
            }
        }
    }
    None
}

/// Adds `:line` to a validation error of the form `name: [section] key...`.
fn with_line(e: Error, text: &str, name: &str) -> Error {
    let msg = e.to_string();
    let located = msg
        .strip_prefix(name)
        .and_then(|r| r.strip_prefix(": ["))
        .and_then(|r| {
            let (section, rest) = r.split_once("] ")?;
            let key = rest.split([':', ' ']).next()?;
            let line = line_of_key(text, section, key)?;
            Some(format!("{name}:{line}: [{section}] {rest}"))
        });
    match located {
        Some(m) => Error::new(ErrorKind::Config, m),
        None => e,
    }
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::with_source(
                ErrorKind::Config,
                format!(
                    "cannot read config file {}: {e} (check the path; copy config/bouncelens.toml, \
                     where every key is optional; or run without --config for the built-in defaults)",
                    path.display()
                ),
                e,
            )
        })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// Parses and validates config text; `name` is used in error messages.
    pub fn from_toml(text: &str, name: &str) -> Result<Config> {
        let cfg: Config = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| {
                    text.as_bytes()[..s.start.min(text.len())]
                        .iter()
                        .filter(|&&b| b == b'\n')
                        .count()
                        + 1
                })
                .unwrap_or(1);
            Error::new(ErrorKind::Config, format!("{name}:{line}: {}", e.message()))
        })?;
        cfg.validate(name).map_err(|e| with_line(e, text, name))?;
        Ok(cfg)
    }

    /// Checks what TOML types cannot express. `name` is the file for error messages.
    pub fn validate(&self, name: &str) -> Result<()> {
        self.validate_daemon(name)?;
        for d in self.smtp.accept_domains.iter().chain(&self.metrics.domains) {
            if d.is_empty() || d.contains('@') || d.contains(char::is_whitespace) {
                return Err(bad(name, "smtp", format!("{d:?} is not a domain")));
            }
        }
        self.validate_advice(name)
    }

    /// Checks `[advice]`.
    fn validate_advice(&self, name: &str) -> Result<()> {
        let a = &self.advice;
        let advice = |key: &str, why: String| Err(bad_key(name, "advice", key, why));
        // What the mail library will accept (so no advice mail fails on its address).
        let mailable = |s: &str| looks_like_address(s) && s.parse::<lettre::Address>().is_ok();
        if !mailable(&a.from) {
            return advice("from", format!("{:?} is not an address", a.from));
        }
        if let Some(adm) = a.admins.iter().find(|adm| !mailable(adm)) {
            return advice("admins", format!("{adm:?} is not an address"));
        }
        if let Some(d) = a
            .own_domains
            .iter()
            .find(|d| d.is_empty() || d.contains(['@', '*']) || d.contains(char::is_whitespace))
        {
            return advice(
                "own_domains",
                format!("{d:?} is not a domain (subdomains are included)"),
            );
        }
        if let Some(url) = &a.smarthost {
            if let Err(why) = crate::advice::Smarthost::parse(url) {
                return advice("smarthost", why);
            }
            if a.enabled && a.own_domains.is_empty() {
                return advice(
                    "own_domains",
                    "must list your sending domains when smarthost is set \
                     (advice is never mailed outside them, to avoid backscatter)"
                        .into(),
                );
            }
        }
        if let Some(ca) = &a.smarthost_ca {
            if !ca.is_file() {
                return advice("smarthost_ca", format!("{} is not a file", ca.display()));
            }
        }
        for (key, d) in [
            ("digest_window", a.digest_window),
            ("max_age", a.max_age),
            ("retry_interval", a.retry_interval),
            ("smtp_timeout", a.smtp_timeout),
        ] {
            if d.is_zero() {
                return advice(key, "must be positive".into());
            }
        }
        if a.retry_max_interval < a.retry_interval {
            return advice(
                "retry_max_interval",
                "must be at least retry_interval".into(),
            );
        }
        if a.hourly_cap == 0 {
            return advice(
                "hourly_cap",
                "must be at least 1 (set enabled = false to turn advice off)".into(),
            );
        }
        if a.outbox_dir.as_os_str().is_empty() {
            return advice("outbox_dir", "must not be empty".into());
        }
        Ok(())
    }

    /// Checks the daemon's sections: `[smtp]`, `[spool]`, `[metrics]`.
    fn validate_daemon(&self, name: &str) -> Result<()> {
        let s = &self.smtp;
        let smtp = |key: &str, why: String| Err(bad_key(name, "smtp", key, why));
        if s.listen.is_empty() {
            return smtp("listen", "must name at least one address".into());
        }
        if s.hostname.trim().is_empty() || s.hostname.contains(char::is_whitespace) {
            return smtp("hostname", format!("{:?} is not a host name", s.hostname));
        }
        for a in &s.accept_addresses {
            if !looks_like_address(a) {
                return smtp("accept_addresses", format!("{a:?} is not an address"));
            }
        }
        for d in &s.accept_domains {
            if d.is_empty() || d.contains('@') || d.contains(char::is_whitespace) {
                return smtp("accept_domains", format!("{d:?} is not a domain"));
            }
        }
        if let Some(v) = &s.verp {
            if !v.contains('@') {
                return smtp("verp", format!("{v:?} must be an address pattern, e.g. bounces+{{local}}={{domain}}@bounces.example.com"));
            }
            if let Err(e) = crate::verp::VerpPattern::new(v) {
                return smtp("verp", e);
            }
        }
        if s.max_message_size < 1024 {
            return smtp("max_message_size", "must be at least 1024 bytes".into());
        }
        if s.max_line_length < 1000 {
            return smtp(
                "max_line_length",
                "must be at least 1000 bytes (RFC 5321)".into(),
            );
        }
        if s.max_recipients == 0 {
            return smtp("max_recipients", "must be at least 1".into());
        }
        if s.max_connections == 0 {
            return smtp("max_connections", "must be at least 1".into());
        }
        if s.max_errors == 0 {
            return smtp("max_errors", "must be at least 1".into());
        }
        if s.idle_timeout.is_zero() {
            return smtp("idle_timeout", "must be positive".into());
        }
        if s.session_timeout.is_zero() {
            return smtp("session_timeout", "must be positive".into());
        }
        match (&s.tls_cert, &s.tls_key) {
            (Some(_), None) => return smtp("tls_cert", "tls_key must be set too".into()),
            (None, Some(_)) => return smtp("tls_key", "tls_cert must be set too".into()),
            (Some(c), Some(k)) => {
                for (key, p) in [("tls_cert", c), ("tls_key", k)] {
                    if !p.is_file() {
                        return smtp(key, format!("file {} does not exist", p.display()));
                    }
                }
            }
            _ => {}
        }
        let sp = &self.spool;
        if sp.dir.as_os_str().is_empty() {
            return Err(bad_key(name, "spool", "dir", "must not be empty"));
        }
        if sp.events_log.as_os_str().is_empty() {
            return Err(bad_key(name, "spool", "events_log", "must not be empty"));
        }
        if sp.segment_size < 64 * 1024 {
            return Err(bad_key(
                name,
                "spool",
                "segment_size",
                "must be at least 65536 bytes",
            ));
        }
        for d in &self.metrics.domains {
            if d.is_empty() || d.contains('@') || d.contains(char::is_whitespace) {
                return Err(bad_key(
                    name,
                    "metrics",
                    "domains",
                    format!("{d:?} is not a domain"),
                ));
            }
        }
        Ok(())
    }

    /// Whether a recipient is accepted by the listener's configuration
    /// (any recipient when no addresses, domains or VERP pattern are configured).
    pub fn accepts_any_recipient(&self) -> bool {
        self.smtp.accept_addresses.is_empty()
            && self.smtp.accept_domains.is_empty()
            && self.smtp.verp.is_none()
    }
}

/// `"127.0.0.1:9465"`, or `"off"` for none, for optional listen addresses.
pub mod listen_or_off {
    use super::*;

    pub fn serialize<S: serde::Serializer>(
        a: &Option<SocketAddr>,
        s: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        match a {
            Some(a) => s.collect_str(a),
            None => s.serialize_str("off"),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> std::result::Result<Option<SocketAddr>, D::Error> {
        let s = String::deserialize(d)?;
        if s == "off" || s.is_empty() {
            return Ok(None);
        }
        s.parse().map(Some).map_err(|e| {
            serde::de::Error::custom(format!(
                "bad listen address {s:?} ({e}); use e.g. \"127.0.0.1:9465\", or \"off\""
            ))
        })
    }
}

/// `"30s"`, `"15m"`, `"7d"` (humantime) for `Duration` fields.
pub mod duration_str {
    use super::*;

    pub fn serialize<S: serde::Serializer>(
        d: &Duration,
        s: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(|e| {
            serde::de::Error::custom(format!(
                "bad duration {s:?} ({e}); use e.g. \"30s\", \"15m\", \"7d\""
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let c = Config::from_toml("", "t.toml").unwrap();
        assert_eq!(c.smtp.listen, vec!["127.0.0.1:2525".parse().unwrap()]);
        assert_eq!(c.smtp.max_message_size, 10 * 1024 * 1024);
        assert_eq!(c.metrics.listen, Some("127.0.0.1:9465".parse().unwrap()));
        assert!(c.accepts_any_recipient());
    }

    #[test]
    fn unknown_key_names_file_and_line() {
        let e =
            Config::from_toml("[smtp]\nhostname = \"mx\"\nlisten_on = 1\n", "b.toml").unwrap_err();
        assert!(e.to_string().starts_with("b.toml:3:"), "{e}");
        assert!(e.to_string().contains("listen_on"), "{e}");
    }

    #[test]
    fn durations_and_routes_parse() {
        let c = Config::from_toml(
            "[advice]\ndigest_window = \"5m\"\n[advice.route]\nnone = \"admin\"\n[advice.route.reason]\nblocked = \"both\"\n",
            "t",
        )
        .unwrap();
        assert_eq!(c.advice.digest_window, Duration::from_secs(300));
        assert_eq!(
            c.advice
                .route
                .audience(None, Reason::Blocked, FixBy::Sender),
            Audience::Both
        );
        assert_eq!(
            c.advice.route.audience(None, Reason::Expired, FixBy::None),
            Audience::Admin
        );
    }

    #[test]
    fn validation_errors_name_file_line_and_key() {
        let e = Config::from_toml(
            "[smtp]\nhostname = \"mx\"\nmax_line_length = 80\n",
            "c.toml",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "c.toml:3: [smtp] max_line_length: must be at least 1000 bytes (RFC 5321)"
        );
        let e =
            Config::from_toml("[smtp]\nverp = \"b+{local}{local}@x.org\"\n", "c.toml").unwrap_err();
        assert!(e.to_string().starts_with("c.toml:2: [smtp] verp:"), "{e}");
        let e = Config::from_toml("[metrics]\ndomains = [\"a@b\"]\n", "c.toml").unwrap_err();
        assert!(
            e.to_string().starts_with("c.toml:2: [metrics] domains:"),
            "{e}"
        );
    }

    #[test]
    fn metrics_listen_can_be_turned_off() {
        let c = Config::from_toml("[metrics]\nlisten = \"off\"\n", "t").unwrap();
        assert_eq!(c.metrics.listen, None);
        let e = Config::from_toml("[metrics]\nlisten = \"nope\"\n", "t").unwrap_err();
        assert!(e.to_string().starts_with("t:2:"), "{e}");
    }

    #[test]
    fn advice_errors_name_file_line_and_key() {
        for (text, want) in [
            (
                "[advice]\nown_domains = [\"example.com\"]\nsmarthost = \"smtp://relay?tls=maybe\"\n",
                "a.toml:3: [advice] smarthost: tls=\"maybe\"",
            ),
            (
                "[advice]\nretry_interval = \"1m\"\nretry_max_interval = \"30s\"\n",
                "a.toml:3: [advice] retry_max_interval: must be at least",
            ),
            ("[advice]\nhourly_cap = 0\n", "a.toml:2: [advice] hourly_cap:"),
            (
                "[advice]\nsmarthost_ca = \"/nonexistent/ca.pem\"\n",
                "a.toml:2: [advice] smarthost_ca: /nonexistent/ca.pem is not a file",
            ),
            (
                "[advice]\nfrom = \"advice\"\n",
                "a.toml:2: [advice] from: \"advice\" is not an address",
            ),
            (
                "[advice]\nown_domains = [\"@example.com\"]\n",
                "a.toml:2: [advice] own_domains:",
            ),
        ] {
            let e = Config::from_toml(text, "a.toml").unwrap_err().to_string();
            assert!(e.starts_with(want), "{e}");
        }
        let ok = "[advice]\nsmarthost = \"smtps://u:p@relay.example.com\"\nown_domains = [\"example.com\"]\n";
        assert!(Config::from_toml(ok, "a.toml").is_ok());
    }

    #[test]
    fn smarthost_needs_own_domains() {
        let e =
            Config::from_toml("[advice]\nsmarthost = \"smtp://127.0.0.1:25\"\n", "t").unwrap_err();
        assert!(e.to_string().contains("own_domains"), "{e}");
    }
}
