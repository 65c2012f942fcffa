//! The real `bouncelens` binary as a child process: crash safety under load (SIGKILL
//! and restart), graceful SIGTERM, SIGHUP rule reload, start-up errors, check-config.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::{dot_stuff, fixtures, queue_id, read_events, PATIENCE};
use bouncelens::model::Lang;
use bouncelens::pipeline::classify_one;
use bouncelens::rules::RuleSet;

const BIN: &str = env!("CARGO_BIN_EXE_bouncelens");

fn write_config(dir: &Path, extra: &str) -> PathBuf {
    let d = dir.display();
    let text = format!(
        "[smtp]\nlisten = [\"127.0.0.1:0\"]\nhostname = \"mx.test\"\n\
         [spool]\ndir = \"{d}/spool\"\nevents_log = \"{d}/events.jsonl\"\n\
         [metrics]\nlisten = \"127.0.0.1:0\"\n\
         [advice]\noutbox_dir = \"{d}/outbox\"\n{extra}"
    );
    let p = dir.join("bouncelens.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// A running daemon process; killed when dropped.
struct Proc {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    smtp: SocketAddr,
    http: SocketAddr,
}

fn until<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Proc {
    fn start(config: &Path) -> Proc {
        let mut child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        let addr_after = |log: &[String], marker: &str| -> Option<SocketAddr> {
            log.iter().find_map(|l| {
                let rest = &l[l.find(marker)? + marker.len()..];
                rest.split(|c: char| c.is_whitespace() || c == '/')
                    .next()?
                    .parse()
                    .ok()
            })
        };
        let (smtp, http) = until("daemon start", PATIENCE, || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "daemon exited at start ({status}): {:?}",
                    log.lock().unwrap()
                );
            }
            let l = log.lock().unwrap();
            Some((
                addr_after(&l, "smtp listening on ")?,
                addr_after(&l, "metrics listening on http://")?,
            ))
        });
        Proc {
            child,
            log,
            smtp,
            http,
        }
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    fn wait_exit(&mut self) -> ExitStatus {
        until("daemon exit", PATIENCE, || self.child.try_wait().unwrap())
    }

    fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    fn metrics(&self) -> String {
        let mut s = TcpStream::connect(self.http).unwrap();
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text
    }

    fn metric(&self, family: &str, labels: &[&str]) -> f64 {
        crate::support::metric_sum(&self.metrics(), family, labels)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Kills a child process when the test ends, however it ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A blocking SMTP client.
struct Smtp {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Smtp {
    fn connect(addr: SocketAddr) -> std::io::Result<Smtp> {
        let s = TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut c = Smtp {
            r: BufReader::new(s.try_clone()?),
            w: s,
        };
        c.reply()?;
        Ok(c)
    }

    fn reply(&mut self) -> std::io::Result<(u16, String)> {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            if self.r.read_line(&mut line)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            all.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                let code = line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
                return Ok((code, all));
            }
        }
    }

    fn cmd(&mut self, line: &str) -> std::io::Result<(u16, String)> {
        self.w.write_all(format!("{line}\r\n").as_bytes())?;
        self.reply()
    }

    /// Sends one message; `Ok(Some(id))` on 250.
    fn send(&mut self, msg: &[u8]) -> std::io::Result<Option<String>> {
        self.w
            .write_all(b"MAIL FROM:<>\r\nRCPT TO:<bounces@bounces.example.org>\r\nDATA\r\n")?;
        for _ in 0..3 {
            self.reply()?;
        }
        self.w.write_all(&dot_stuff(msg))?;
        let (code, text) = self.reply()?;
        Ok((code == 250).then(|| queue_id(&text)))
    }
}

/// Under concurrent load, SIGKILL the daemon, restart it on the same spool: every
/// message that got a 250 must appear in the events log. Duplicates are allowed
/// (at-least-once) and reported.
#[test]
fn sigkill_under_load_loses_no_acknowledged_message() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let mut p = Proc::start(&config);
    let msgs: Arc<Vec<(String, Vec<u8>)>> = Arc::new(fixtures());
    let acked: Arc<Mutex<Vec<(String, usize)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..8)
        .map(|t| {
            let (msgs, acked, stop, addr) = (msgs.clone(), acked.clone(), stop.clone(), p.smtp);
            std::thread::spawn(move || {
                let mut i = t;
                while !stop.load(Ordering::Relaxed) {
                    let Ok(mut c) = Smtp::connect(addr) else {
                        return;
                    };
                    if c.cmd("EHLO load.test").is_err() {
                        return;
                    }
                    for _ in 0..20 {
                        let which = i % msgs.len();
                        i += 1;
                        match c.send(&msgs[which].1) {
                            Ok(Some(id)) => acked.lock().unwrap().push((id, which)),
                            Ok(None) => {}
                            Err(_) => return, // the daemon died under us
                        }
                    }
                    let _ = c.cmd("QUIT");
                }
            })
        })
        .collect();
    until("300 acknowledged messages", Duration::from_secs(60), || {
        (acked.lock().unwrap().len() >= 300).then_some(())
    });
    p.child.kill().unwrap(); // SIGKILL, mid-load
    p.child.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let events = dir.path().join("events.jsonl");
    let before: std::collections::HashSet<String> = read_events(&events)
        .iter()
        .map(|r| r["queue_id"].as_str().unwrap().to_string())
        .collect();
    let recovered = acked.iter().filter(|(id, _)| !before.contains(id)).count();

    let p2 = Proc::start(&config);
    let rules = RuleSet::builtin().unwrap();
    let rows_per_msg: Vec<usize> = msgs
        .iter()
        .map(|(_, m)| classify_one(m, &rules, Lang::En, "x").1.len())
        .collect();
    let counts = until(
        "every acknowledged id in the events log",
        Duration::from_secs(60),
        || {
            let mut counts: HashMap<String, usize> = HashMap::new();
            for r in read_events(&events) {
                *counts
                    .entry(r["queue_id"].as_str().unwrap().to_string())
                    .or_default() += 1;
            }
            acked
                .iter()
                .all(|(id, _)| counts.contains_key(id))
                .then_some(counts)
        },
    );
    let missing = acked
        .iter()
        .filter(|(id, _)| !counts.contains_key(id))
        .count();
    let duplicated: usize = acked
        .iter()
        .map(|(id, which)| counts[id] / rows_per_msg[*which] - 1)
        .sum();
    eprintln!(
        "crash test: {} acknowledged, {} not yet in the events log at SIGKILL, {} missing after restart, {} processed twice",
        acked.len(),
        recovered,
        missing,
        duplicated
    );
    assert_eq!(missing, 0);
    for (id, which) in &acked {
        assert_eq!(
            counts[id] % rows_per_msg[*which],
            0,
            "whole messages only for {id}"
        );
    }
    // Queue ids stay unique across the restart.
    let mut c = Smtp::connect(p2.smtp).unwrap();
    c.cmd("EHLO after.test").unwrap();
    let new = c.send(&msgs[0].1).unwrap().unwrap();
    let new = u64::from_str_radix(&new, 16).unwrap();
    assert!(acked
        .iter()
        .all(|(id, _)| u64::from_str_radix(id, 16).unwrap() < new));
    until("spool drained", PATIENCE, || {
        (p2.metric("bouncelens_spool_pending", &[]) == 0.0).then_some(())
    });
    drop(p2);
}

#[test]
fn sigterm_lets_a_message_in_flight_finish_then_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let mut p = Proc::start(&config);
    let mut idle = Smtp::connect(p.smtp).unwrap();
    let mut busy = Smtp::connect(p.smtp).unwrap();
    busy.cmd("EHLO busy.test").unwrap();
    busy.w
        .write_all(b"MAIL FROM:<>\r\nRCPT TO:<a@b.example>\r\nDATA\r\n")
        .unwrap();
    for _ in 0..3 {
        busy.reply().unwrap();
    }
    busy.w.write_all(b"Subject: in flight\r\n").unwrap();
    p.signal("-TERM");
    // The idle session is told to go away.
    let (code, _) = idle.reply().unwrap();
    assert_eq!(code, 421);
    // The session inside DATA may finish its message.
    busy.w.write_all(b"\r\nbody\r\n.\r\n").unwrap();
    let (code, text) = busy.reply().unwrap();
    assert_eq!(code, 250, "{text}");
    let id = queue_id(&text);
    let status = p.wait_exit();
    assert!(
        status.success(),
        "exit status {status}; log:\n{}",
        p.log_text()
    );
    assert!(p.log_text().contains("stopped"));
    // Acknowledged during shutdown: processed now or at the next start.
    drop(p);
    let p = Proc::start(&config);
    until("the in-flight message's events row", PATIENCE, || {
        read_events(&dir.path().join("events.jsonl"))
            .iter()
            .any(|r| r["queue_id"] == id.as_str())
            .then_some(())
    });
    drop(p);
}

#[test]
fn sighup_reloads_rules_and_keeps_them_when_a_file_is_broken() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    let rule = |id: &str, status: &str, reason: &str| {
        format!(
            "[[rule]]\nid = \"{id}\"\nstatus = \"{status}\"\nreason = \"{reason}\"\nfix_by = \"sender\"\n\
             en = {{ title = \"t\", advice = \"a\" }}\nja = {{ title = \"t\", advice = \"a\" }}\n"
        )
    };
    std::fs::write(rules.join("a.toml"), rule("test.a", "5.1.1", "userunknown")).unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "[rules]\nbuiltin = false\ndirs = [\"{}\"]\n",
            rules.display()
        ),
    );
    let mut p = Proc::start(&config);
    assert_eq!(p.metric("bouncelens_rules_loaded", &[]), 1.0);

    std::fs::write(
        rules.join("b.toml"),
        rule("test.b", "5.2.2", "no-such-reason"),
    )
    .unwrap();
    p.signal("-HUP");
    until("refused reload", PATIENCE, || {
        (p.metric("bouncelens_rules_reloads_total", &["outcome=\"error\""]) == 1.0).then_some(())
    });
    assert_eq!(
        p.metric("bouncelens_rules_loaded", &[]),
        1.0,
        "running rules stay"
    );
    let log = p.log_text();
    assert!(
        log.contains("rule reload refused") && log.contains("b.toml:"),
        "{log}"
    );

    std::fs::write(rules.join("b.toml"), rule("test.b", "5.2.2", "mailboxfull")).unwrap();
    p.signal("-HUP");
    until("good reload", PATIENCE, || {
        (p.metric("bouncelens_rules_reloads_total", &["outcome=\"ok\""]) == 1.0).then_some(())
    });
    assert_eq!(p.metric("bouncelens_rules_loaded", &[]), 2.0);
    // Still serving mail.
    let mut c = Smtp::connect(p.smtp).unwrap();
    c.cmd("EHLO x.test").unwrap();
    assert!(c.send(b"Subject: after reload\r\n\r\n").unwrap().is_some());
    p.signal("-TERM");
    assert!(p.wait_exit().success());
}

/// Runs the binary to completion (killed if it runs past [`PATIENCE`]):
/// (exit code, stdout, stderr).
fn run(args: &[&str], config: &Path) -> (Option<i32>, String, String) {
    let child = Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let status = until("the command to exit", PATIENCE, || {
        child.0.try_wait().unwrap()
    });
    let mut out = String::new();
    let mut err = String::new();
    child
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status.code(), out, err)
}

/// The test config of `dir` with one string replaced.
fn config_replacing(dir: &Path, from: &str, to: &str) -> PathBuf {
    let cfg = write_config(dir, "");
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert!(text.contains(from), "{from:?} not in config");
    std::fs::write(&cfg, text.replace(from, to)).unwrap();
    cfg
}

#[test]
fn start_up_errors_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    // A port that is taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let cfg = config_replacing(
        dir.path(),
        "127.0.0.1:0\"]",
        &format!("127.0.0.1:{port}\"]"),
    );
    let (code, _, err) = run(&["serve"], &cfg);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{err}"
    );
    assert!(err.contains("[smtp] listen"), "{err}");
    drop(taken);

    // A spool directory that cannot be created.
    let spool = format!("dir = \"{}/spool\"", dir.path().display());
    let cfg = config_replacing(dir.path(), &spool, "dir = \"/proc/bouncelens-test/spool\"");
    let (code, _, err) = run(&["serve"], &cfg);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("cannot create spool directory /proc/bouncelens-test/spool"),
        "{err}"
    );
}

#[test]
fn check_config_names_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[smtp]\nhostname = \"mx\"\nmax_line_length = 80\n").unwrap();
    let (code, _, err) = run(&["check-config"], &bad);
    assert_eq!(code, Some(2));
    assert!(
        err.contains(&format!("{}:3: [smtp] max_line_length:", bad.display())),
        "{err}"
    );

    std::fs::write(&bad, "[spool]\nretention = \"7 parsecs\"\n").unwrap();
    let (code, _, err) = run(&["check-config"], &bad);
    assert_eq!(code, Some(2));
    assert!(
        err.contains(&format!("{}:2:", bad.display())) && err.contains("duration"),
        "{err}"
    );

    // The shipped example is valid.
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/bouncelens.toml");
    let (code, out, err) = run(&["check-config"], &example);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains(": ok"), "{out}");
}

#[test]
fn systemd_readiness_and_stopping_are_notified() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(PATIENCE)).unwrap();
    let config = write_config(dir.path(), "");
    let child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &sock_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let mut buf = [0u8; 256];
    let n = sock.recv(&mut buf).expect("READY=1 notification");
    assert_eq!(String::from_utf8_lossy(&buf[..n]).trim(), "READY=1");
    let kill = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let n = sock.recv(&mut buf).expect("STOPPING=1 notification");
    assert_eq!(String::from_utf8_lossy(&buf[..n]).trim(), "STOPPING=1");
    let status = until("exit", PATIENCE, || child.0.try_wait().unwrap());
    assert!(status.success());
}

#[test]
fn systemd_unit_verifies() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: systemd-analyze not installed (Debian package systemd)");
        return;
    }
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/bouncelens.service");
    let text = std::fs::read_to_string(unit).unwrap();
    assert!(text.contains("Type=notify") && text.contains("DynamicUser=yes"));
    // Point ExecStart at the binary under test: verify checks that it exists.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("bouncelens.service");
    std::fs::write(&copy, text.replace("/usr/local/bin/bouncelens", BIN)).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .unwrap();
    let msgs = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && msgs.trim().is_empty(),
        "systemd-analyze verify:\n{msgs}"
    );
}
