//! Shared helpers for the daemon tests: an in-process daemon on 127.0.0.1:0 with its
//! files in a tempdir, a raw SMTP client, fixtures, and bounded polling.
//!
//! Everything waits with a deadline and panics with a clear message when it passes,
//! so a broken daemon fails a test instead of hanging it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bouncelens::config::Config;
use bouncelens::metrics::Metrics;
use bouncelens::rules::RuleSet;
use bouncelens::server::{Daemon, Listeners};
use serde_json::Value;
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// How long any single wait in a test may take.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Config for a test daemon: loopback, ephemeral ports, every file under `dir`, no
/// built-in rules.
pub fn test_config(dir: &Path) -> Config {
    let mut c = Config::default();
    c.smtp.listen = vec!["127.0.0.1:0".parse().unwrap()];
    c.smtp.hostname = "mx.test".into();
    c.metrics.listen = Some("127.0.0.1:0".parse().unwrap());
    c.spool.dir = dir.join("spool");
    c.spool.events_log = dir.join("events.jsonl");
    c.advice.outbox_dir = dir.join("outbox");
    // The listener and spool tests do not need the rule packs (slow to compile in a
    // debug build); the end-to-end tests turn them on.
    c.rules.builtin = false;
    c
}

/// A daemon running in this process.
pub struct TestDaemon {
    pub dir: TempDir,
    pub config: Config,
    pub smtp: SocketAddr,
    pub http: SocketAddr,
    pub metrics: Metrics,
    shutdown: watch::Sender<bool>,
    daemon: Option<Daemon>,
}

impl TestDaemon {
    /// Starts a daemon in a fresh tempdir; `edit` adjusts the config.
    pub async fn start(edit: impl FnOnce(&mut Config)) -> TestDaemon {
        Self::start_in(tempfile::tempdir().unwrap(), edit).await
    }

    /// Starts a daemon whose files live in `dir` (e.g. a spool left by an earlier one).
    pub async fn start_in(dir: TempDir, edit: impl FnOnce(&mut Config)) -> TestDaemon {
        let mut config = test_config(dir.path());
        edit(&mut config);
        let rules = RuleSet::from_config(config.rules.builtin, &config.rules.dirs).unwrap();
        let listeners = Listeners::bind(&config).await.unwrap();
        let (shutdown, rx) = watch::channel(false);
        let daemon = Daemon::start(listeners, config.clone(), rules, rx)
            .await
            .unwrap();
        TestDaemon {
            smtp: daemon.smtp_addrs()[0],
            http: daemon.http_addr().unwrap(),
            metrics: daemon.metrics().clone(),
            dir,
            config,
            shutdown,
            daemon: Some(daemon),
        }
    }

    pub fn daemon(&self) -> &Daemon {
        self.daemon.as_ref().unwrap()
    }

    /// Shuts down (bounded) and hands back the tempdir.
    pub async fn stop(mut self) -> TempDir {
        self.shutdown.send(true).unwrap();
        let d = self.daemon.take().unwrap();
        tokio::time::timeout(PATIENCE, d.wait())
            .await
            .expect("daemon did not stop in time")
            .unwrap();
        self.dir
    }

    pub fn events_path(&self) -> PathBuf {
        self.config.spool.events_log.clone()
    }

    pub fn events(&self) -> Vec<Value> {
        read_events(&self.events_path())
    }

    /// Waits until every id in `ids` has at least one events row; returns all rows.
    pub async fn events_for(&self, ids: &[String]) -> Vec<Value> {
        let path = self.events_path();
        wait_for("events rows for every queue id", || {
            let rows = read_events(&path);
            let missing = ids
                .iter()
                .filter(|id| !rows.iter().any(|r| r["queue_id"] == id.as_str()))
                .count();
            (missing == 0).then_some(rows)
        })
        .await
    }

    /// `bouncelens_smtp_sessions_total{outcome}`.
    pub fn sessions(&self, outcome: &str) -> u64 {
        self.metrics
            .smtp_sessions_total
            .with_label_values(&[outcome])
            .get()
    }

    /// `bouncelens_smtp_rejections_total{code}`.
    pub fn rejections(&self, code: &str) -> u64 {
        self.metrics
            .smtp_rejections_total
            .with_label_values(&[code])
            .get()
    }

    pub async fn client(&self) -> Client {
        Client::connect(self.smtp).await
    }

    /// `GET path` on the metrics endpoint: (status line, body).
    pub async fn http_get(&self, path: &str) -> (String, String) {
        http_get(self.http, path).await
    }
}

/// A minimal HTTP/1.0 GET.
pub async fn http_get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(PATIENCE, s.read_to_end(&mut buf))
        .await
        .expect("HTTP response in time")
        .unwrap();
    let text = String::from_utf8(buf).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_string(), body.to_string())
}

/// Every line of an events log, parsed (a missing file is empty).
pub fn read_events(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad events line {l:?}: {e}")))
        .collect()
}

/// Polls `check` every 20 ms until it returns `Some`, or panics after [`PATIENCE`].
pub async fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(start.elapsed() < PATIENCE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The value of an unlabelled sample, or the sum over all samples of a family whose
/// labels contain every `label="value"` pair given.
pub fn metric_sum(text: &str, family: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name_labels, value) = l.rsplit_once(' ')?;
            let name = name_labels.split('{').next()?;
            (name == family && labels.iter().all(|p| name_labels.contains(p)))
                .then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

/// The queue id in a `250 2.0.0 Ok: queued as ID` reply.
pub fn queue_id(reply: &str) -> String {
    reply
        .rsplit_once("queued as ")
        .unwrap_or_else(|| panic!("no queue id in {reply:?}"))
        .1
        .trim()
        .to_string()
}

/// Message bytes as sent on the wire: CRLF line ends, ending in CRLF.
pub fn crlf(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / 40 + 2);
    let mut prev = 0u8;
    for &b in body {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// DATA payload for CRLF message bytes: dot-stuffed (a `.` starting a CRLF line is
/// doubled), with the final `.`. `msg` must end in CRLF.
pub fn dot_stuff(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + 16);
    for (i, &b) in msg.iter().enumerate() {
        if b == b'.' && (i == 0 || msg[..i].ends_with(b"\r\n")) {
            out.push(b'.');
        }
        out.push(b);
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// The test fixtures (name, CRLF bytes), sorted by name.
pub fn fixtures() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/daemon");
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, crlf(&std::fs::read(&p).unwrap()))
        })
        .collect();
    out.sort();
    assert!(out.len() >= 8, "fixtures missing in {}", dir.display());
    out
}

/// ../shared/corpus/sisimai relative to the repository's parent, if present.
pub fn corpus_dir() -> Option<PathBuf> {
    let d = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()?
        .join("shared/corpus/sisimai");
    d.is_dir().then_some(d)
}

/// A raw SMTP client with per-reply deadlines.
pub struct Client {
    r: BufReader<OwnedReadHalf>,
    w: OwnedWriteHalf,
}

impl Client {
    /// Connects and reads the greeting.
    pub async fn connect(addr: SocketAddr) -> Client {
        let mut c = Self::connect_raw(addr).await;
        let (code, text) = c.reply().await;
        assert_eq!(code, 220, "greeting: {text}");
        c
    }

    /// Connects without reading anything.
    pub async fn connect_raw(addr: SocketAddr) -> Client {
        let s = TcpStream::connect(addr).await.unwrap();
        let (r, w) = s.into_split();
        Client {
            r: BufReader::new(r),
            w,
        }
    }

    /// One (possibly multi-line) reply: code and the text of all lines joined by '\n'.
    pub async fn reply(&mut self) -> (u16, String) {
        self.try_reply()
            .await
            .unwrap_or_else(|| panic!("connection closed while waiting for a reply"))
    }

    /// Like [`Client::reply`], `None` if the server closed the connection first.
    pub async fn try_reply(&mut self) -> Option<(u16, String)> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(PATIENCE, self.r.read_line(&mut line))
                .await
                .expect("reply in time")
                .ok()?;
            if n == 0 {
                return None;
            }
            let line = line.trim_end().to_string();
            let code: u16 = line.get(..3)?.parse().ok()?;
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line.get(4..).unwrap_or("").to_string());
            if last {
                return Some((code, lines.join("\n")));
            }
        }
    }

    /// A reply the server sends without being asked (e.g. a timeout's 421), if one
    /// arrives within `wait`.
    pub async fn unsolicited(&mut self, wait: Duration) -> Option<(u16, String)> {
        tokio::time::timeout(wait, self.try_reply())
            .await
            .ok()
            .flatten()
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.w.write_all(bytes).await.unwrap();
    }

    /// Sends one command line and reads its reply.
    pub async fn cmd(&mut self, line: &str) -> (u16, String) {
        self.send(format!("{line}\r\n").as_bytes()).await;
        self.reply().await
    }

    /// Sends a command and asserts the reply code.
    pub async fn expect(&mut self, line: &str, code: u16) -> String {
        let (c, text) = self.cmd(line).await;
        assert_eq!(c, code, "{line:?} -> {c} {text}");
        text
    }

    /// MAIL / RCPT... / DATA / message; returns the final reply.
    pub async fn send_mail(&mut self, from: &str, rcpts: &[&str], msg: &[u8]) -> (u16, String) {
        self.expect(&format!("MAIL FROM:<{from}>"), 250).await;
        for r in rcpts {
            self.expect(&format!("RCPT TO:<{r}>"), 250).await;
        }
        self.expect("DATA", 354).await;
        self.send(&dot_stuff(msg)).await;
        self.reply().await
    }

    /// Whether the server closes the connection (EOF) within [`PATIENCE`].
    pub async fn closed(&mut self) -> bool {
        let mut buf = [0u8; 256];
        loop {
            match tokio::time::timeout(PATIENCE, self.r.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
                Err(_) => return false,
            }
        }
    }
}
