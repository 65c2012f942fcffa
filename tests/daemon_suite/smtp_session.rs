//! The SMTP / LMTP listener on real sockets: what a sending MTA sees.
//! Each test runs a whole daemon in-process on 127.0.0.1:0 with files in a tempdir.

use std::time::Duration;

use crate::support::*;
use bouncelens::config::Protocol;
use lettre::address::Envelope;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

fn sample() -> Vec<u8> {
    fixtures()
        .into_iter()
        .find(|(n, _)| n == "postfix-userunknown.eml")
        .unwrap()
        .1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lettre_sends_a_bounce_with_the_null_sender_and_gets_a_queue_id() {
    let d = TestDaemon::start(|_| {}).await;
    let mailer = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(d.smtp.port())
        .timeout(Some(PATIENCE))
        .build();
    let envelope =
        Envelope::new(None, vec!["bounces@bounces.example.org".parse().unwrap()]).unwrap();
    let resp = mailer.send_raw(&envelope, &sample()).await.unwrap();
    assert_eq!(u16::from(resp.code()), 250);
    let text: Vec<&str> = resp.message().collect();
    let id = queue_id(&text.join(" "));
    let rows = d.events_for(std::slice::from_ref(&id)).await;
    let row = rows.iter().find(|r| r["queue_id"] == id.as_str()).unwrap();
    assert_eq!(row["envelope_from"], "");
    assert_eq!(row["envelope_to"][0], "bounces@bounces.example.org");
    assert!(row["received_at"].as_str().unwrap().ends_with('Z'));
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ehlo_advertises_the_extensions_and_no_starttls_without_a_certificate() {
    let d = TestDaemon::start(|c| c.smtp.max_message_size = 123_456).await;
    let mut c = d.client().await;
    let ehlo = c.expect("EHLO client.test", 250).await;
    let caps: Vec<&str> = ehlo.lines().skip(1).collect();
    assert_eq!(
        caps,
        [
            "SIZE 123456",
            "PIPELINING",
            "8BITMIME",
            "ENHANCEDSTATUSCODES",
            "SMTPUTF8"
        ]
    );
    c.expect("QUIT", 221).await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_commands_get_their_replies_in_order() {
    let d = TestDaemon::start(|_| {}).await;
    let mut c = d.client().await;
    c.expect("EHLO client.test", 250).await;
    // One write: a whole transaction up to DATA, as RFC 2920 allows.
    c.send(b"MAIL FROM:<>\r\nRCPT TO:<a@bounces.example.org>\r\nRCPT TO:<b@bounces.example.org>\r\nDATA\r\n")
        .await;
    for want in [250, 250, 250, 354] {
        assert_eq!(c.reply().await.0, want);
    }
    // The message, then a second transaction and QUIT, again in one write.
    let mut batch = dot_stuff(&sample());
    batch.extend_from_slice(b"RSET\r\nMAIL FROM:<>\r\nRCPT TO:<c@bounces.example.org>\r\nDATA\r\n");
    c.send(&batch).await;
    let (code, first) = c.reply().await;
    assert_eq!(code, 250, "{first}");
    for want in [250, 250, 250, 354] {
        assert_eq!(c.reply().await.0, want);
    }
    let mut batch = dot_stuff(b"Subject: second\r\n\r\nhello\r\n");
    batch.extend_from_slice(b"QUIT\r\n");
    c.send(&batch).await;
    let (code, second) = c.reply().await;
    assert_eq!(code, 250, "{second}");
    assert_eq!(c.reply().await.0, 221);
    let ids = [queue_id(&first), queue_id(&second)];
    assert_ne!(ids[0], ids[1]);
    let rows = d.events_for(&ids).await;
    let first_row = rows
        .iter()
        .find(|r| r["queue_id"] == ids[0].as_str())
        .unwrap();
    assert_eq!(
        first_row["envelope_to"],
        serde_json::json!(["a@bounces.example.org", "b@bounces.example.org"])
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_and_out_of_order_commands_are_refused_then_the_session_is_closed() {
    let d = TestDaemon::start(|c| c.smtp.max_errors = 6).await;
    let mut c = d.client().await;
    c.expect("MAIL FROM:<>", 503).await; // before EHLO
    c.expect("EHLO client.test", 250).await;
    c.expect("RCPT TO:<a@b.example>", 503).await; // before MAIL
    c.expect("DATA", 503).await; // before MAIL
    c.send(b"\x00\xff\xfe binary junk \x01\r\n").await;
    assert_eq!(c.reply().await.0, 500);
    c.expect("GET / HTTP/1.1", 500).await;
    // Sixth error: the server answers it, says why it gives up, and closes.
    c.expect("MAIL FROM:<no-closing-bracket", 501).await;
    let (code, text) = c.reply().await;
    assert_eq!(
        (code, text.as_str()),
        (421, "4.7.0 Too many errors, closing connection")
    );
    assert!(c.closed().await);
    // The session is counted once its socket is closed, so the client can see the
    // close first: wait for the count (this assertion was flaky without it).
    wait_for("the rejected session to be counted", || {
        (d.sessions("rejected") == 1).then_some(())
    })
    .await;
    // The daemon still serves others.
    let mut c2 = d.client().await;
    c2.expect("EHLO client.test", 250).await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_attempts_are_refused_when_recipients_are_configured() {
    let d = TestDaemon::start(|c| {
        c.smtp.accept_addresses = vec!["bounces@bounces.example.org".into()];
        c.smtp.accept_domains = vec!["dsn.example.org".into()];
        c.smtp.verp = Some("bounces+{local}={domain}@verp.example.org".into());
    })
    .await;
    let mut c = d.client().await;
    c.expect("EHLO client.test", 250).await;
    c.expect("MAIL FROM:<spammer@evil.test>", 250).await;
    let refused = c.expect("RCPT TO:<victim@gmail.com>", 550).await;
    assert!(refused.starts_with("5.7.1 <victim@gmail.com>"), "{refused}");
    c.expect("RCPT TO:<bounces@bounces.example.org.evil.test>", 550)
        .await;
    c.expect("RCPT TO:<Bounces@Bounces.Example.org>", 250).await;
    c.expect("RCPT TO:<anyone@dsn.example.org>", 250).await;
    c.expect("RCPT TO:<bounces+alice=example.com@verp.example.org>", 250)
        .await;
    c.expect("DATA", 354).await;
    c.send(&dot_stuff(&sample())).await;
    let (code, text) = c.reply().await;
    assert_eq!(code, 250, "{text}");
    let id = queue_id(&text);
    let rows = d.events_for(std::slice::from_ref(&id)).await;
    let row = rows.iter().find(|r| r["queue_id"] == id.as_str()).unwrap();
    // Only the accepted recipients are in the envelope.
    assert_eq!(row["envelope_to"].as_array().unwrap().len(), 3);
    let rej = d.rejections("550");
    assert_eq!(rej, 2);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_messages_get_552_and_the_session_goes_on() {
    let d = TestDaemon::start(|c| c.smtp.max_message_size = 4096).await;
    let mut c = d.client().await;
    c.expect("EHLO client.test", 250).await;
    // Declared too big up front.
    let text = c.expect("MAIL FROM:<> SIZE=100000", 552).await;
    assert!(text.starts_with("5.3.4 "), "{text}");
    // Not declared, but too big: refused after the data, nothing queued.
    let big = crlf(
        &[
            b"Subject: big\n\n".as_slice(),
            &b"0123456789abcdef\n".repeat(400),
        ]
        .concat(),
    );
    let (code, text) = c.send_mail("", &["a@b.example"], &big).await;
    assert_eq!((code, &text[..5]), (552, "5.3.4"), "{text}");
    // A message within the limit in the same session is fine.
    let (code, text) = c
        .send_mail("", &["a@b.example"], b"Subject: small\r\n\r\nok\r\n")
        .await;
    assert_eq!(code, 250, "{text}");
    let id = queue_id(&text);
    let rows = d.events_for(std::slice::from_ref(&id)).await;
    assert!(
        rows.iter().all(|r| r["queue_id"] == id.as_str()),
        "only the small message was queued"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_lines_real_bounces_pass_endless_ones_are_refused() {
    let d = TestDaemon::start(|c| c.smtp.max_line_length = 4096).await;
    let mut c = d.client().await;
    c.expect("EHLO client.test", 250).await;
    // A 1,242-byte line (GMX does this) is fine.
    let gmx = fixtures()
        .into_iter()
        .find(|(n, _)| n == "gmx-long-line.eml")
        .unwrap()
        .1;
    let (code, text) = c.send_mail("", &["a@b.example"], &gmx).await;
    assert_eq!(code, 250, "{text}");
    // A data line over the limit: 500 after the data, session continues.
    let long = crlf(format!("Subject: x\n\n{}\n", "y".repeat(5000)).as_bytes());
    let (code, text) = c.send_mail("", &["a@b.example"], &long).await;
    assert_eq!(code, 500, "{text}");
    assert!(text.contains("Line too long"), "{text}");
    // An endless command line: 500, then the next command works.
    c.send(format!("NOOP {}\r\n", "z".repeat(100_000)).as_bytes())
        .await;
    assert_eq!(c.reply().await.0, 500);
    c.expect("NOOP", 250).await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_clients_are_timed_out() {
    let d = TestDaemon::start(|c| c.smtp.idle_timeout = Duration::from_secs(1)).await;
    let mut c = d.client().await;
    c.expect("EHLO client.test", 250).await;
    // Say nothing: the server gives up with 421 and closes.
    let (code, text) = c.reply().await;
    assert_eq!(
        (code, text.as_str()),
        (421, "4.4.2 Timeout exceeded, closing connection")
    );
    assert!(c.closed().await);
    // Also in the middle of DATA.
    let mut c = d.client().await;
    c.expect("EHLO client.test", 250).await;
    c.expect("MAIL FROM:<>", 250).await;
    c.expect("RCPT TO:<a@b.example>", 250).await;
    c.expect("DATA", 354).await;
    c.send(b"Subject: half a message\r\n").await;
    assert_eq!(c.reply().await.0, 421);
    assert!(c.closed().await);
    wait_for("both timed-out sessions to be counted", || {
        (d.sessions("timeout") == 2).then_some(())
    })
    .await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_slow_client_is_cut_off_by_the_session_timeout() {
    let d = TestDaemon::start(|c| {
        c.smtp.idle_timeout = Duration::from_secs(5);
        c.smtp.session_timeout = Duration::from_millis(1500);
    })
    .await;
    let mut c = d.client().await;
    c.expect("EHLO client.test", 250).await;
    // Keep the connection busy with NOOPs, never idle for long.
    let mut last = (0, String::new());
    for _ in 0..200 {
        if let Some(r) = c.unsolicited(Duration::from_millis(20)).await {
            last = r;
            break;
        }
        last = c.cmd("NOOP").await;
        if last.0 != 250 {
            break;
        }
    }
    assert_eq!(last.0, 421, "session was never cut off: {last:?}");
    assert!(c.closed().await);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_over_the_connection_cap_get_421() {
    let d = TestDaemon::start(|c| c.smtp.max_connections = 2).await;
    let mut a = d.client().await;
    let mut b = d.client().await;
    let mut third = Client::connect_raw(d.smtp).await;
    let (code, text) = third.reply().await;
    assert_eq!(
        (code, text.as_str()),
        (421, "4.7.0 Too many connections, try again later")
    );
    assert!(third.closed().await);
    // Existing sessions are unaffected; a slot frees when one quits.
    a.expect("EHLO client.test", 250).await;
    a.expect("QUIT", 221).await;
    assert!(a.closed().await);
    let mut again = wait_for_greeting(d.smtp).await;
    again.expect("EHLO client.test", 250).await;
    b.expect("NOOP", 250).await;
    let r = d.sessions("rejected");
    assert!(r >= 1);
    d.stop().await;
}

/// Connects until the greeting is 220 (a slot may take a moment to free).
async fn wait_for_greeting(addr: std::net::SocketAddr) -> Client {
    for _ in 0..100 {
        let mut c = Client::connect_raw(addr).await;
        if let Some((220, _)) = c.try_reply().await {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no free slot");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lmtp_answers_once_per_recipient() {
    let d = TestDaemon::start(|c| {
        c.smtp.protocol = Protocol::Lmtp;
        c.smtp.max_message_size = 64 * 1024;
        c.smtp.accept_domains = vec!["bounces.example.org".into()];
    })
    .await;
    let mut c = d.client().await;
    c.expect("EHLO client.test", 500).await; // LMTP wants LHLO
    let caps = c.expect("LHLO client.test", 250).await;
    assert!(caps.contains("PIPELINING"));
    c.expect("MAIL FROM:<>", 250).await;
    c.expect("RCPT TO:<a@bounces.example.org>", 250).await;
    c.expect("RCPT TO:<x@elsewhere.test>", 550).await;
    c.expect("RCPT TO:<b@bounces.example.org>", 250).await;
    c.expect("DATA", 354).await;
    c.send(&dot_stuff(&sample())).await;
    let (c1, t1) = c.reply().await;
    let (c2, t2) = c.reply().await;
    assert_eq!((c1, c2), (250, 250), "{t1} / {t2}");
    assert!(t1.starts_with("2.1.5 <a@bounces.example.org>"), "{t1}");
    assert!(t2.starts_with("2.1.5 <b@bounces.example.org>"), "{t2}");
    assert_eq!(queue_id(&t1), queue_id(&t2));
    // Oversize in LMTP: one refusal per recipient.
    c.expect("MAIL FROM:<>", 250).await;
    c.expect("RCPT TO:<a@bounces.example.org>", 250).await;
    c.expect("RCPT TO:<b@bounces.example.org>", 250).await;
    c.expect("DATA", 354).await;
    let big = crlf(&b"x\n".repeat(50 * 1024));
    c.send(&dot_stuff(&big)).await;
    assert_eq!(c.reply().await.0, 552);
    assert_eq!(c.reply().await.0, 552);
    c.expect("QUIT", 221).await;
    d.events_for(&[queue_id(&t1)]).await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_tells_idle_clients_421_and_refuses_new_ones() {
    let d = TestDaemon::start(|_| {}).await;
    let mut c = d.client().await;
    c.expect("EHLO client.test", 250).await;
    let addr = d.smtp;
    let stopping = tokio::spawn(d.stop());
    let (code, text) = c.reply().await;
    assert_eq!(
        (code, text.as_str()),
        (421, "4.3.2 Service shutting down, try again later")
    );
    assert!(c.closed().await);
    stopping.await.unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still accepting"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spooled_bytes_are_exactly_the_unstuffed_message() {
    let d = TestDaemon::start(|_| {}).await;
    let msg = fixtures()
        .into_iter()
        .find(|(n, _)| n.starts_with("gmail"))
        .unwrap()
        .1;
    assert!(
        msg.windows(3).any(|w| w == b"\n.."),
        "fixture has dot lines"
    );
    let mut c = d.client().await;
    c.expect("HELO client.test", 250).await;
    let (code, text) = c.send_mail("", &["a@b.example"], &msg).await;
    assert_eq!(code, 250, "{text}");
    let id: bouncelens::spool::QueueId = queue_id(&text).parse().unwrap();
    let dir = d.stop().await;
    // Read the segment files back with the spool's own reader.
    let spool = dir.path().join("spool");
    let mut found = None;
    for no in bouncelens::spool::recovery::list_segments(&spool).unwrap() {
        let path = bouncelens::spool::recovery::segment_path(&spool, no);
        let mut scan = bouncelens::spool::segment::Scanner::open(&path).unwrap();
        let mut buf = Vec::new();
        while let bouncelens::spool::segment::Step::Record { kind, .. } =
            scan.next(&mut buf).unwrap()
        {
            if kind == bouncelens::spool::segment::Kind::Message {
                let m = bouncelens::spool::segment::decode_message(&buf).unwrap();
                if m.seq == id.0 {
                    found = Some(m);
                }
            }
        }
    }
    let m = found.expect("message in the spool");
    assert_eq!(m.raw, msg);
    assert_eq!(m.envelope.helo.as_deref(), Some("client.test"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_upgrades_and_the_message_is_queued() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output();
    match made {
        Ok(o) if o.status.success() => {}
        _ => {
            eprintln!("skipped: openssl CLI not available to make a test certificate");
            return;
        }
    }
    let d = TestDaemon::start(|c| {
        c.smtp.tls_cert = Some(cert.clone());
        c.smtp.tls_key = Some(key.clone());
    })
    .await;
    let mut c = d.client().await;
    let caps = c.expect("EHLO client.test", 250).await;
    assert!(caps.lines().any(|l| l == "STARTTLS"), "{caps}");
    c.expect("QUIT", 221).await;

    let tls = TlsParameters::builder("localhost".into())
        .dangerous_accept_invalid_certs(true)
        .dangerous_accept_invalid_hostnames(true)
        .build_rustls()
        .unwrap();
    let mailer = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(d.smtp.port())
        .tls(Tls::Required(tls))
        .timeout(Some(PATIENCE))
        .build();
    let envelope =
        Envelope::new(None, vec!["bounces@bounces.example.org".parse().unwrap()]).unwrap();
    let resp = mailer.send_raw(&envelope, &sample()).await.unwrap();
    let text: Vec<&str> = resp.message().collect();
    let id = queue_id(&text.join(" "));
    d.events_for(&[id]).await;
    d.stop().await;
}
