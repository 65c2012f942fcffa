//! One SMTP or LMTP session: a small state machine over a byte buffer.
//!
//! Parsing is smtp-proto's (`Request::parse` for commands, `DataReceiver` for the
//! dot-terminated message, which refuses bare-LF terminators and so SMTP smuggling).
//! This module adds what a server needs around it:
//! * **lines are cut here**, with our own limit (`max_line_length`), so an endless
//!   line costs at most that much memory and earns `500 5.5.2 Line too long`;
//! * **replies are buffered** and written only when the session needs more input, so
//!   a pipelining client (RFC 2920) gets all replies to its batch in one write;
//! * **every read has a deadline**: the idle timeout, capped by the session timeout,
//!   so slow or silent clients cannot hold a connection slot forever;
//! * **limits answer properly**: size (`552 5.3.4`, also for `MAIL ... SIZE=`),
//!   recipients (`452 4.5.3`), foreign recipients (`550 5.7.1`), sequence errors (`503`),
//!   junk (`500`/`501`); after `max_errors` protocol errors the session is closed.
//!
//! A message is acknowledged only after the spool has fsynced it ([`crate::spool`]).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use smtp_proto::request::receiver::{DataReceiver, DummyDataReceiver};
use smtp_proto::{Error as ProtoError, MailFrom, RcptTo, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tracing::{debug, warn};

use super::reply::Reply;
use super::tls::Stream;
use super::SmtpService;
use crate::model::Envelope;
use crate::Shutdown;

/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 16 * 1024;

/// Why a session ended.
#[derive(Debug)]
pub enum End {
    /// The client said QUIT.
    Quit,
    /// The client closed the connection.
    Closed,
    /// Idle or session timeout.
    Timeout,
    /// The daemon is shutting down.
    Shutdown,
    /// Too many protocol errors.
    TooManyErrors,
    Io(io::Error),
}

/// What to do after a command.
enum Flow {
    Continue,
    Quit,
}

/// What DATA produced.
enum Body {
    Complete(Vec<u8>),
    TooBig,
    LineTooLong,
}

struct Transaction {
    from: String,
    rcpts: Vec<String>,
}

pub struct Session {
    svc: Arc<SmtpService>,
    stream: Stream,
    peer: SocketAddr,
    inbuf: Vec<u8>,
    /// Consumed prefix of `inbuf`.
    pos: usize,
    out: Vec<u8>,
    helo: Option<String>,
    tx: Option<Transaction>,
    errors: u32,
    queued: u32,
    /// Inside an over-long command line: drop bytes until its end.
    skipping_line: bool,
    deadline: Instant,
    shutdown: Shutdown,
}

/// Makes client-supplied text safe to echo in a reply (printable ASCII, bounded).
fn printable(s: &str) -> String {
    s.chars()
        .take(256)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect()
}

/// Advances the current line length over `chunk`; returns the longest line touched,
/// or at most `limit` + 1 once it is known to exceed `limit`.
fn longest_line(chunk: &[u8], current: &mut usize, limit: usize) -> usize {
    // Fast path: if even one unbroken line could not pass the limit, only the length of
    // the last (partial) line matters, found by scanning back to its start.
    if *current + chunk.len() <= limit {
        let longest = *current + chunk.len();
        *current = match chunk.iter().rposition(|&b| b == b'\n') {
            Some(i) => chunk.len() - i - 1,
            None => longest,
        };
        return longest.min(limit);
    }
    let mut pieces = chunk.split(|&b| b == b'\n');
    *current += pieces.next().map_or(0, <[u8]>::len);
    let mut longest = *current;
    for p in pieces {
        *current = p.len();
        longest = longest.max(*current);
    }
    longest
}

impl Session {
    pub fn new(
        svc: Arc<SmtpService>,
        tcp: TcpStream,
        peer: SocketAddr,
        shutdown: Shutdown,
    ) -> Session {
        let deadline = Instant::now() + svc.cfg.session_timeout;
        Session {
            svc,
            stream: Stream::Plain(tcp),
            peer,
            inbuf: Vec::with_capacity(READ_CHUNK),
            pos: 0,
            out: Vec::with_capacity(512),
            helo: None,
            tx: None,
            errors: 0,
            queued: 0,
            skipping_line: false,
            deadline,
            shutdown,
        }
    }

    /// Runs the session to its end; returns the `outcome` label for
    /// `bouncelens_smtp_sessions_total`.
    pub async fn run(mut self) -> &'static str {
        let end = self.serve().await;
        let last = match &end {
            End::Timeout => Some(Reply::idle_timeout()),
            End::Shutdown => Some(Reply::shutting_down()),
            End::TooManyErrors => Some(Reply::too_many_errors()),
            _ => None,
        };
        if let Some(r) = last {
            self.push(r);
        }
        let idle = self
            .svc
            .cfg
            .idle_timeout
            .min(std::time::Duration::from_secs(5));
        let _ = timeout(idle, async {
            if self.flush().await.is_ok() {
                let _ = self.stream.shutdown().await;
            }
        })
        .await;
        debug!(peer = %self.peer, ?end, queued = self.queued, errors = self.errors, "session ended");
        match end {
            _ if self.queued > 0 => "accepted",
            End::Quit | End::Closed | End::Shutdown => "closed",
            End::Timeout => "timeout",
            End::TooManyErrors => "rejected",
            End::Io(_) => "error",
        }
    }

    async fn serve(&mut self) -> End {
        let proto = if self.svc.lmtp { "LMTP" } else { "ESMTP" };
        self.out.extend_from_slice(
            format!("220 {} {proto} bouncelens\r\n", self.svc.cfg.hostname).as_bytes(),
        );
        loop {
            let line = match self.next_line().await {
                Ok(l) => l,
                Err(end) => return end,
            };
            match self.command(&line).await {
                Ok(Flow::Continue) => {}
                Ok(Flow::Quit) => {
                    self.push(Reply::bye());
                    return End::Quit;
                }
                Err(end) => return end,
            }
            if self.errors >= self.svc.cfg.max_errors {
                return End::TooManyErrors;
            }
        }
    }

    /// Queues a reply; negative ones are counted.
    fn push(&mut self, r: Reply) {
        if r.is_negative() {
            self.svc
                .metrics
                .smtp_rejections_total
                .with_label_values(&[&r.code.to_string()])
                .inc();
        }
        r.write_to(&mut self.out);
    }

    /// Queues a reply to a protocol error (counted towards `max_errors`).
    fn error(&mut self, r: Reply) {
        self.errors += 1;
        self.push(r);
    }

    async fn flush(&mut self) -> Result<(), End> {
        if self.out.is_empty() {
            return Ok(());
        }
        let write = async {
            self.stream.write_all(&self.out).await?;
            self.stream.flush().await
        };
        let r = timeout(self.svc.cfg.idle_timeout, write).await;
        self.out.clear();
        match r {
            Err(_) => Err(End::Timeout),
            Ok(Err(e)) => Err(End::Io(e)),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// Sends pending replies, then reads more input. Between transactions a shutdown
    /// ends the wait (`421`); inside one (or inside DATA) the client may finish.
    async fn fill(&mut self, in_data: bool) -> Result<(), End> {
        self.flush().await?;
        if self.pos > 0 {
            self.inbuf.drain(..self.pos);
            self.pos = 0;
        }
        self.inbuf.reserve(READ_CHUNK);
        let wait = self
            .svc
            .cfg
            .idle_timeout
            .min(self.deadline.saturating_duration_since(Instant::now()));
        let stop_on_shutdown = !in_data && self.tx.is_none();
        let mut shutdown = self.shutdown.clone();
        tokio::select! {
            r = timeout(wait, self.stream.read_buf(&mut self.inbuf)) => match r {
                Err(_) => Err(End::Timeout),
                Ok(Ok(0)) => Err(End::Closed),
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(End::Io(e)),
            },
            _ = crate::server::stopping(&mut shutdown), if stop_on_shutdown => Err(End::Shutdown),
        }
    }

    /// The next command line (with its line end).
    async fn next_line(&mut self) -> Result<Vec<u8>, End> {
        let limit = self.svc.cfg.max_line_length;
        loop {
            let avail = &self.inbuf[self.pos..];
            if let Some(i) = avail.iter().position(|&b| b == b'\n') {
                let line = avail[..=i].to_vec();
                self.pos += i + 1;
                if std::mem::take(&mut self.skipping_line) || line.len() > limit {
                    self.error(Reply::line_too_long(limit));
                    if self.errors >= self.svc.cfg.max_errors {
                        return Err(End::TooManyErrors);
                    }
                    continue;
                }
                return Ok(line);
            }
            if avail.len() > limit {
                self.skipping_line = true;
                self.pos = self.inbuf.len();
            }
            self.fill(false).await?;
        }
    }

    async fn command(&mut self, line: &[u8]) -> Result<Flow, End> {
        let req = match Request::parse(&mut line.iter()) {
            Ok(r) => r.into_owned(),
            Err(e) => {
                self.error(parse_error(e));
                return Ok(Flow::Continue);
            }
        };
        let lmtp = self.svc.lmtp;
        match req {
            Request::Ehlo { .. } | Request::Helo { .. } if lmtp => {
                self.error(Reply::wrong_greeting(true))
            }
            Request::Lhlo { .. } if !lmtp => self.error(Reply::wrong_greeting(false)),
            Request::Ehlo { host } | Request::Lhlo { host } => {
                self.helo = Some(printable(&host));
                self.tx = None;
                self.ehlo_reply();
            }
            Request::Helo { host } => {
                self.helo = Some(printable(&host));
                self.tx = None;
                self.out
                    .extend_from_slice(format!("250 {}\r\n", self.svc.cfg.hostname).as_bytes());
            }
            Request::Mail { from } => self.mail(from),
            Request::Rcpt { to } => self.rcpt(to),
            Request::Data => self.data().await?,
            Request::Bdat { chunk_size, .. } => {
                // CHUNKING is not offered; skip the chunk so it is not read as commands.
                self.skip_bytes(chunk_size).await?;
                self.error(Reply::not_implemented());
            }
            Request::Rset => {
                self.tx = None;
                self.push(Reply::ok());
            }
            Request::Noop { .. } => self.push(Reply::ok()),
            Request::Vrfy { .. } => self.push(Reply::vrfy()),
            Request::Help { .. } => self.push(Reply::help()),
            Request::Quit => return Ok(Flow::Quit),
            Request::StartTls => self.starttls().await?,
            Request::Expn { .. }
            | Request::Auth { .. }
            | Request::Etrn { .. }
            | Request::Atrn { .. }
            | Request::Burl { .. } => self.error(Reply::not_implemented()),
        }
        Ok(Flow::Continue)
    }

    fn ehlo_reply(&mut self) {
        let cfg = &self.svc.cfg;
        let mut lines = vec![
            cfg.hostname.clone(),
            format!("SIZE {}", cfg.max_message_size),
            "PIPELINING".into(),
            "8BITMIME".into(),
            "ENHANCEDSTATUSCODES".into(),
            "SMTPUTF8".into(),
        ];
        if self.svc.tls.is_some() && !self.stream.is_tls() {
            lines.push("STARTTLS".into());
        }
        let last = lines.len() - 1;
        for (i, l) in lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            self.out
                .extend_from_slice(format!("250{sep}{l}\r\n").as_bytes());
        }
    }

    fn mail(&mut self, from: MailFrom<String>) {
        if self.helo.is_none() {
            let r = if self.svc.lmtp {
                Reply::need_lhlo()
            } else {
                Reply::need_helo()
            };
            return self.error(r);
        }
        if self.tx.is_some() {
            return self.error(Reply::nested_mail());
        }
        if from.size as u64 > self.svc.cfg.max_message_size {
            return self.push(Reply::too_big(self.svc.cfg.max_message_size));
        }
        self.tx = Some(Transaction {
            from: from.address,
            rcpts: Vec::new(),
        });
        self.push(Reply::sender_ok());
    }

    fn rcpt(&mut self, to: RcptTo<String>) {
        let max = self.svc.cfg.max_recipients;
        let Some(tx) = self.tx.as_mut() else {
            return self.error(Reply::need_mail());
        };
        if to.address.is_empty() {
            return self.error(Reply::bad_recipient());
        }
        if tx.rcpts.len() >= max {
            return self.push(Reply::too_many_recipients());
        }
        if !self.svc.policy.accepts(&to.address) {
            debug!(peer = %self.peer, rcpt = %printable(&to.address), "recipient refused (relay denied)");
            return self.error(Reply::relay_denied(&printable(&to.address)));
        }
        tx.rcpts.push(to.address);
        self.push(Reply::recipient_ok());
    }

    async fn data(&mut self) -> Result<(), End> {
        let refusal = match &self.tx {
            None => Some(Reply::need_mail()),
            Some(tx) if tx.rcpts.is_empty() => Some(Reply::need_rcpt()),
            Some(_) => None,
        };
        if let Some(r) = refusal {
            self.error(r);
            return Ok(());
        }
        self.push(Reply::start_data());
        let body = self.read_data().await?;
        let tx = self.tx.take().expect("checked above");
        let replies = match body {
            Body::TooBig => vec![Reply::too_big(self.svc.cfg.max_message_size)],
            Body::LineTooLong => vec![Reply::line_too_long(self.svc.cfg.max_line_length)],
            Body::Complete(raw) => {
                let envelope = Envelope {
                    mail_from: tx.from,
                    rcpt_to: tx.rcpts.clone(),
                    client_addr: Some(self.peer.to_string()),
                    helo: self.helo.clone(),
                };
                let stored = timeout(
                    self.svc.cfg.idle_timeout,
                    self.svc.spool.append(envelope, raw),
                )
                .await;
                match stored {
                    Ok(Ok(id)) => {
                        self.queued += 1;
                        let id = id.to_string();
                        if self.svc.lmtp {
                            tx.rcpts
                                .iter()
                                .map(|r| Reply::queued_for(&printable(r), &id))
                                .collect()
                        } else {
                            vec![Reply::queued(&id)]
                        }
                    }
                    Ok(Err(e)) => {
                        warn!(peer = %self.peer, error = %e, "message refused with 451: spool failed");
                        vec![Reply::spool_error()]
                    }
                    Err(_) => {
                        warn!(peer = %self.peer, "message refused with 451: spool did not answer in time");
                        vec![Reply::spool_error()]
                    }
                }
            }
        };
        // LMTP answers once per recipient (RFC 2033), SMTP once per message.
        let per_rcpt = self.svc.lmtp && replies.len() == 1;
        let n = if per_rcpt { tx.rcpts.len() } else { 1 };
        for r in replies {
            for _ in 0..n {
                self.push(r.clone());
            }
        }
        Ok(())
    }

    /// Reads the message after `354` up to the lone dot.
    async fn read_data(&mut self) -> Result<Body, End> {
        let max_size = self.svc.cfg.max_message_size as usize;
        let max_line = self.svc.cfg.max_line_length;
        let mut rx = DataReceiver::new();
        let mut msg = Vec::with_capacity(8 * 1024);
        // Start as if just after a CRLF, so a first line "." or ".." is understood.
        rx.ingest(&mut b"\r\n".iter(), &mut msg);
        msg.clear();
        let mut line_len = 0;
        let mut refused: Option<(DummyDataReceiver, Body)> = None;
        loop {
            let avail = &self.inbuf[self.pos..];
            let mut it = avail.iter();
            let done = match &mut refused {
                Some((skip, _)) => skip.ingest(&mut it),
                None => {
                    let before = msg.len();
                    let done = rx.ingest(&mut it, &mut msg);
                    let why = if longest_line(&msg[before..], &mut line_len, max_line) > max_line {
                        Some(Body::LineTooLong)
                    } else if msg.len() > max_size {
                        Some(Body::TooBig)
                    } else {
                        None
                    };
                    if let Some(why) = why {
                        refused = Some((DummyDataReceiver::new_data(&rx), why));
                        msg = Vec::new();
                    }
                    done
                }
            };
            let consumed = avail.len() - it.as_slice().len();
            self.pos += consumed;
            if done {
                return Ok(match refused {
                    Some((_, why)) => why,
                    None => Body::Complete(msg),
                });
            }
            self.fill(true).await?;
        }
    }

    /// Reads and drops `n` bytes.
    async fn skip_bytes(&mut self, mut n: usize) -> Result<(), End> {
        loop {
            let take = n.min(self.inbuf.len() - self.pos);
            self.pos += take;
            n -= take;
            if n == 0 {
                return Ok(());
            }
            self.fill(true).await?;
        }
    }

    async fn starttls(&mut self) -> Result<(), End> {
        let Some(acceptor) = self.svc.tls.clone() else {
            self.error(Reply::not_implemented());
            return Ok(());
        };
        if self.stream.is_tls() {
            self.error(Reply::tls_already());
            return Ok(());
        }
        if self.tx.is_some() {
            self.error(Reply::tls_in_transaction());
            return Ok(());
        }
        self.push(Reply::tls_ready());
        self.flush().await?;
        // RFC 3207: anything the client sent after STARTTLS in the clear is dropped
        // (plaintext command injection).
        self.inbuf.clear();
        self.pos = 0;
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Upgrading) else {
            return Err(End::Io(io::Error::other("not a plain connection")));
        };
        match timeout(self.svc.cfg.idle_timeout, acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => {
                self.stream = Stream::Tls(Box::new(tls));
                self.helo = None;
                self.tx = None;
                Ok(())
            }
            Ok(Err(e)) => {
                debug!(peer = %self.peer, error = %e, "TLS handshake failed");
                Err(End::Io(e))
            }
            Err(_) => Err(End::Timeout),
        }
    }
}

/// The reply for a command smtp-proto could not parse.
fn parse_error(e: ProtoError) -> Reply {
    match e {
        ProtoError::UnknownCommand
        | ProtoError::ResponseTooLong
        | ProtoError::InvalidResponse { .. } => Reply::unknown_command(),
        ProtoError::SyntaxError { syntax } => Reply::syntax(syntax),
        ProtoError::InvalidSenderAddress => Reply::bad_sender(),
        ProtoError::InvalidRecipientAddress => Reply::bad_recipient(),
        ProtoError::InvalidParameter { param } => Reply::bad_parameter(param),
        ProtoError::UnsupportedParameter { param } => {
            Reply::unsupported_parameter(&printable(&param))
        }
        ProtoError::NeedsMoreData { .. } => Reply::syntax("incomplete command"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_lengths_carry_across_chunks() {
        for limit in [2, 4, 100] {
            let over = |n: usize| n > limit;
            let mut cur = 0;
            assert_eq!(over(longest_line(b"abc", &mut cur, limit)), over(3));
            assert_eq!(over(longest_line(b"de\nf", &mut cur, limit)), over(5));
            assert_eq!(cur, 1);
            assert_eq!(over(longest_line(b"\n", &mut cur, limit)), over(1));
            assert_eq!(cur, 0);
            assert_eq!(over(longest_line(b"ab\ncd\nefg", &mut cur, limit)), over(3));
            assert_eq!(cur, 3);
        }
    }

    #[test]
    fn null_sender_parses_as_empty_address() {
        let line = b"MAIL FROM:<> SIZE=6000\r\n";
        match Request::parse(&mut line.iter()).unwrap() {
            Request::Mail { from } => {
                assert_eq!(from.address, "");
                assert_eq!(from.size, 6000);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn data_receiver_unstuffs_and_needs_crlf_dot_crlf() {
        let mut rx = DataReceiver::new();
        let mut msg = Vec::new();
        rx.ingest(&mut b"\r\n".iter(), &mut msg);
        msg.clear();
        assert!(!rx.ingest(
            &mut b"..leading dot\r\nbare\n.\nstill data\r\n".iter(),
            &mut msg
        ));
        assert!(rx.ingest(&mut b".\r\n".iter(), &mut msg));
        assert_eq!(msg, b".leading dot\r\nbare\n.\nstill data\r\n");
    }
}
