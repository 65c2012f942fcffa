//! A small, honest SMTP server for tests: it speaks real RFC 5321 on loopback (EHLO,
//! STARTTLS or implicit TLS, AUTH PLAIN / LOGIN, MAIL, RCPT, DATA with dot-unstuffing,
//! RSET, NOOP, QUIT), captures every accepted transaction, and can be switched into
//! failure modes (unavailable at connect, temporary or permanent rejections) while it
//! runs. [`test_pki`] makes a private CA and a server certificate with the openssl CLI.
//!
//! Use: `let smtp = SmtpCapture::start().await;` point the code under test at
//! `smtp.url()`, then `smtp.wait_for(n).await` returns the first `n` mails (panicking
//! with what it has if they do not come within a generous bound).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::path::{Path, PathBuf};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// How the server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Accept everything.
    Accept,
    /// `421 4.3.2` at connect, then close (a smarthost that is down).
    Unavailable,
    /// `451 4.3.0` to MAIL FROM (temporary failure).
    TempFail,
    /// `550 5.1.1` to every RCPT TO (permanent failure).
    RejectRcpt,
}

/// Transport security the server offers.
#[derive(Clone)]
pub enum Security {
    Plain,
    /// Plain, with STARTTLS offered (RFC 3207).
    StartTls(TlsAcceptor),
    /// TLS from the first byte (RFC 8314, "smtps").
    Implicit(TlsAcceptor),
}

/// One accepted transaction.
#[derive(Debug, Clone)]
pub struct Captured {
    /// Whether the transaction ran over TLS.
    pub tls: bool,
    pub helo: String,
    /// The reverse path without brackets (empty for `<>`), and the raw parameters.
    pub mail_from: String,
    pub mail_params: String,
    pub rcpt_to: Vec<String>,
    /// The message as transmitted, dot-unstuffed, CRLF line ends.
    pub data: Vec<u8>,
    /// `(user, password)` when the client authenticated.
    pub auth: Option<(String, String)>,
}

struct Shared {
    mails: Mutex<Vec<Captured>>,
    mode: Mutex<Mode>,
    connections: Mutex<usize>,
    arrived: Notify,
}

/// The running server; stops when dropped.
pub struct SmtpCapture {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for SmtpCapture {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Upper bound for waits, so a broken test fails instead of hanging.
pub const PATIENCE: Duration = Duration::from_secs(30);

impl SmtpCapture {
    /// Starts on a free loopback port, accepting.
    pub async fn start() -> SmtpCapture {
        Self::start_with(Mode::Accept).await
    }

    pub async fn start_with(mode: Mode) -> SmtpCapture {
        Self::start_secure(mode, Security::Plain).await
    }

    pub async fn start_secure(mode: Mode, security: Security) -> SmtpCapture {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            mails: Mutex::new(Vec::new()),
            mode: Mutex::new(mode),
            connections: Mutex::new(0),
            arrived: Notify::new(),
        });
        let s = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                *s.connections.lock().unwrap() += 1;
                tokio::spawn(connection(Box::new(sock), s.clone(), security.clone()));
            }
        });
        SmtpCapture { addr, shared, task }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A smarthost URL for this server (plain SMTP: it offers no STARTTLS).
    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.shared.mode.lock().unwrap() = mode;
    }

    /// Connections accepted so far (including refused sessions).
    pub fn connections(&self) -> usize {
        *self.shared.connections.lock().unwrap()
    }

    /// Everything captured so far.
    pub fn mails(&self) -> Vec<Captured> {
        self.shared.mails.lock().unwrap().clone()
    }

    /// Waits until at least `n` mails arrived and returns them all.
    pub async fn wait_for(&self, n: usize) -> Vec<Captured> {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let notified = self.shared.arrived.notified();
            let mails = self.mails();
            if mails.len() >= n {
                return mails;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "expected {n} mails, got {}: {:#?}",
                    mails.len(),
                    mails.iter().map(|m| &m.rcpt_to).collect::<Vec<_>>()
                );
            }
        }
    }
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

async fn connection(sock: Box<dyn Stream>, shared: Arc<Shared>, security: Security) {
    match security {
        Security::Plain => {
            session(sock, &shared, None, false, true).await;
        }
        Security::Implicit(tls) => {
            if let Ok(s) = tls.accept(sock).await {
                session(Box::new(s), &shared, None, true, true).await;
            }
        }
        Security::StartTls(tls) => {
            if let Some(plain) = session(sock, &shared, Some(&tls), false, true).await {
                if let Ok(s) = tls.accept(plain).await {
                    session(Box::new(s), &shared, None, true, false).await;
                }
            }
        }
    }
}

/// Runs one SMTP session (`greet`: send the 220 banner; not after STARTTLS, where the
/// client speaks first). Returns the connection when the client asked for STARTTLS
/// (the caller does the handshake and runs a fresh session over TLS, RFC 3207 4.2).
async fn session(
    sock: Box<dyn Stream>,
    shared: &Shared,
    starttls: Option<&TlsAcceptor>,
    secure: bool,
    greet: bool,
) -> Option<Box<dyn Stream>> {
    let mut io = BufReader::new(sock);
    let mode = *shared.mode.lock().unwrap();
    if mode == Mode::Unavailable {
        let _ = io
            .write_all(b"421 4.3.2 capture.test Service not available, try later\r\n")
            .await;
        return None;
    }
    macro_rules! reply {
        ($($t:tt)*) => {
            if io.write_all(format!("{}\r\n", format!($($t)*)).as_bytes()).await.is_err() {
                return None;
            }
        };
    }
    if greet {
        reply!("220 capture.test ESMTP test server");
    }
    let mut helo = String::new();
    let mut auth = None;
    let mut tx: Option<Captured> = None;
    let mut line = Vec::new();
    loop {
        line.clear();
        match io.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        let upper = text.to_ascii_uppercase();
        let verb = upper.split_whitespace().next().unwrap_or("").to_string();
        let mode = *shared.mode.lock().unwrap();
        match verb.as_str() {
            "EHLO" | "HELO" => {
                helo = text[4..].trim().to_string();
                tx = None;
                if verb == "EHLO" {
                    reply!("250-capture.test greets {helo}");
                    if starttls.is_some() {
                        reply!("250-STARTTLS");
                    }
                    reply!("250-8BITMIME");
                    reply!("250-SIZE 10485760");
                    reply!("250-ENHANCEDSTATUSCODES");
                    reply!("250 AUTH PLAIN LOGIN");
                } else {
                    reply!("250 capture.test");
                }
            }
            "STARTTLS" if starttls.is_some() => {
                reply!("220 2.0.0 Ready to start TLS");
                return Some(io.into_inner());
            }
            "AUTH" => {
                let args: Vec<&str> = text.split_whitespace().skip(1).collect();
                let creds = match args.first().map(|m| m.to_ascii_uppercase()).as_deref() {
                    Some("PLAIN") => {
                        let initial = match args.get(1) {
                            Some(i) => i.to_string(),
                            None => {
                                reply!("334 ");
                                read_line(&mut io).await?
                            }
                        };
                        b64(&initial).and_then(|raw| {
                            let parts: Vec<&[u8]> = raw.split(|&b| b == 0).collect();
                            (parts.len() == 3).then(|| {
                                (
                                    String::from_utf8_lossy(parts[1]).into_owned(),
                                    String::from_utf8_lossy(parts[2]).into_owned(),
                                )
                            })
                        })
                    }
                    Some("LOGIN") => {
                        reply!("334 VXNlcm5hbWU6");
                        let u = read_line(&mut io).await?;
                        reply!("334 UGFzc3dvcmQ6");
                        let p = read_line(&mut io).await?;
                        b64(&u).zip(b64(&p)).map(|(u, p)| {
                            (
                                String::from_utf8_lossy(&u).into_owned(),
                                String::from_utf8_lossy(&p).into_owned(),
                            )
                        })
                    }
                    _ => {
                        reply!("504 5.5.4 Unrecognized authentication type");
                        continue;
                    }
                };
                match creds {
                    Some(c) => {
                        auth = Some(c);
                        reply!("235 2.7.0 Authentication successful");
                    }
                    None => reply!("501 5.5.2 Cannot decode response"),
                }
            }
            "MAIL" if helo.is_empty() => reply!("503 5.5.1 Say EHLO first"),
            "MAIL" => {
                if mode == Mode::TempFail {
                    reply!("451 4.3.0 Temporary local problem, try later");
                    continue;
                }
                let Some((path, params)) = path_arg(&text, "MAIL FROM:") else {
                    reply!("501 5.5.4 Syntax: MAIL FROM:<address>");
                    continue;
                };
                tx = Some(Captured {
                    tls: secure,
                    helo: helo.clone(),
                    mail_from: path,
                    mail_params: params,
                    rcpt_to: Vec::new(),
                    data: Vec::new(),
                    auth: auth.clone(),
                });
                reply!("250 2.1.0 Ok");
            }
            "RCPT" => {
                let Some(t) = tx.as_mut() else {
                    reply!("503 5.5.1 Need MAIL first");
                    continue;
                };
                let Some((path, _)) = path_arg(&text, "RCPT TO:") else {
                    reply!("501 5.5.4 Syntax: RCPT TO:<address>");
                    continue;
                };
                if mode == Mode::RejectRcpt {
                    reply!("550 5.1.1 <{path}>: Recipient address rejected: User unknown");
                    continue;
                }
                t.rcpt_to.push(path);
                reply!("250 2.1.5 Ok");
            }
            "DATA" => {
                let Some(mut t) = tx.take().filter(|t| !t.rcpt_to.is_empty()) else {
                    reply!("503 5.5.1 Need RCPT first");
                    continue;
                };
                reply!("354 End data with <CR><LF>.<CR><LF>");
                loop {
                    line.clear();
                    match io.read_until(b'\n', &mut line).await {
                        Ok(0) | Err(_) => return None,
                        Ok(_) => {}
                    }
                    if line == b".\r\n" || line == b".\n" {
                        break;
                    }
                    let body = if line.starts_with(b"..") {
                        &line[1..]
                    } else {
                        &line[..]
                    };
                    t.data.extend_from_slice(body);
                }
                shared.mails.lock().unwrap().push(t);
                shared.arrived.notify_waiters();
                reply!("250 2.0.0 Ok: queued");
            }
            "RSET" => {
                tx = None;
                reply!("250 2.0.0 Ok");
            }
            "NOOP" => reply!("250 2.0.0 Ok"),
            "QUIT" => {
                reply!("221 2.0.0 Bye");
                return None;
            }
            _ => reply!("500 5.5.2 Command not recognized"),
        }
    }
}

async fn read_line<R: AsyncBufReadExt + Unpin>(rd: &mut R) -> Option<String> {
    let mut l = String::new();
    match rd.read_line(&mut l).await {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(l.trim_end().to_string()),
    }
}

/// `MAIL FROM:<a@b> SIZE=1` -> (`a@b`, `SIZE=1`).
fn path_arg(text: &str, prefix: &str) -> Option<(String, String)> {
    if !text.to_ascii_uppercase().starts_with(prefix) {
        return None;
    }
    let rest = text[prefix.len()..].trim_start();
    let rest = rest.strip_prefix('<')?;
    let (path, params) = rest.split_once('>')?;
    Some((path.to_string(), params.trim().to_string()))
}

/// Standard base64 decoding (for AUTH).
fn b64(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let bytes: Vec<u8> = s.bytes().filter(|&b| b != b'=').collect();
    let mut out = Vec::new();
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= val(c)? << (18 - 6 * i);
        }
        let take = chunk.len().saturating_sub(1);
        out.extend_from_slice(&n.to_be_bytes()[1..1 + take]);
    }
    Some(out)
}

/// A private CA and a server certificate for 127.0.0.1 signed by it, made with the
/// openssl CLI in `dir`: returns the CA's PEM path and an acceptor with the server
/// certificate. `None` (the caller skips) when openssl is not installed.
pub fn test_pki(dir: &Path) -> Option<(PathBuf, TlsAcceptor)> {
    let p = |n: &str| dir.join(n).display().to_string();
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .ok()?;
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    openssl(&format!(
        "req -x509 {ec} -days 1 -subj /CN=test-CA -keyout {} -out {}",
        p("ca.key"),
        p("ca.pem")
    ))?;
    openssl(&format!(
        "req {ec} -subj /CN=127.0.0.1 -keyout {} -out {}",
        p("leaf.key"),
        p("leaf.csr")
    ))?;
    openssl(&format!(
        "x509 -req -days 1 -CAcreateserial -in {} -CA {} -CAkey {} -extfile {} -out {}",
        p("leaf.csr"),
        p("ca.pem"),
        p("ca.key"),
        p("leaf.ext"),
        p("leaf.pem")
    ))?;
    bouncelens::smtp::tls::install_crypto_provider();
    let acceptor =
        bouncelens::smtp::tls::load_acceptor(&dir.join("leaf.pem"), &dir.join("leaf.key"))
            .expect("the test certificate loads");
    Some((dir.join("ca.pem"), acceptor))
}

/// Runs `openssl ARGS` (space-separated; paths must not contain spaces).
fn openssl(args: &str) -> Option<()> {
    let out = std::process::Command::new("openssl")
        .args(args.split(' '))
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "openssl {args} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    Some(())
}
