//! The daemon end to end, in-process: real bounces in over SMTP, events log rows and
//! metrics out; recovery of a spool left behind; quarantine; segment deletion.
//!
//! These tests check what the daemon guarantees (queue ids, one events row per
//! classify row, metrics consistent with the rows, durability), not how well the
//! parser reads each bounce: the expected rows come from the same classifier.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::support::*;
use bouncelens::metrics::Metrics;
use bouncelens::model::{Envelope, Lang};
use bouncelens::pipeline::classify_one;
use bouncelens::rules::RuleSet;
use bouncelens::spool::{QueueId, Spool};
use serde_json::Value;
use tokio::sync::mpsc;

/// Sends every message over `sessions` parallel connections; returns (id, bytes).
async fn send_all(d: &TestDaemon, msgs: Vec<Vec<u8>>, sessions: usize) -> Vec<(String, Vec<u8>)> {
    let msgs = Arc::new(msgs);
    let mut tasks = Vec::new();
    for s in 0..sessions {
        let (msgs, addr) = (msgs.clone(), d.smtp);
        tasks.push(tokio::spawn(async move {
            let mut c = Client::connect(addr).await;
            c.expect("EHLO sender.test", 250).await;
            let mut out = Vec::new();
            for m in msgs.iter().skip(s).step_by(sessions) {
                let (code, text) = c.send_mail("", &["bounces@bounces.example.org"], m).await;
                assert_eq!(code, 250, "{text}");
                out.push((queue_id(&text), m.clone()));
            }
            c.expect("QUIT", 221).await;
            out
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

/// Strips the fields the events log adds, leaving the classify row.
fn classify_part(row: &Value) -> Value {
    let mut r = row.clone();
    for k in ["queue_id", "received_at", "envelope_from", "envelope_to"] {
        r.as_object_mut().unwrap().remove(k);
    }
    r
}

/// Sends `msgs`, then checks events rows and metrics against the classifier.
async fn check_end_to_end(msgs: Vec<Vec<u8>>) {
    let d = TestDaemon::start(|c| c.rules.builtin = true).await;
    let sent = send_all(&d, msgs, 4).await;
    let ids: Vec<String> = sent.iter().map(|(id, _)| id.clone()).collect();
    let unique: std::collections::HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "queue ids are unique");
    let rows = d.events_for(&ids).await;
    let mut by_id: HashMap<&str, Vec<&Value>> = HashMap::new();
    for r in &rows {
        by_id
            .entry(r["queue_id"].as_str().unwrap())
            .or_default()
            .push(r);
    }
    let rules = RuleSet::builtin().unwrap();
    for (id, raw) in &sent {
        let (_, expected) = classify_one(raw, &rules, Lang::En, id);
        let got = &by_id[id.as_str()];
        assert_eq!(
            got.len(),
            expected.len(),
            "one events row per classify row for {id}"
        );
        for (g, e) in got.iter().zip(&expected) {
            assert_eq!(
                classify_part(g),
                serde_json::to_value(e).unwrap(),
                "row of {id}"
            );
            assert_eq!(g["envelope_from"], "");
            assert_eq!(
                g["envelope_to"],
                serde_json::json!(["bounces@bounces.example.org"])
            );
        }
    }
    assert_eq!(rows.len(), by_id.values().map(Vec::len).sum::<usize>());
    let n = sent.len() as f64;
    // Wait until every done marker is in (pending drops to zero), then compare.
    wait_for("spool drained", || {
        (d.metrics.spool_pending.get() == 0).then_some(())
    })
    .await;
    let (status, text) = d.http_get("/metrics").await;
    assert!(status.contains("200"), "{status}");
    assert_eq!(metric_sum(&text, "bouncelens_messages_total", &[]), n);
    assert_eq!(
        metric_sum(&text, "bouncelens_bounces_total", &[]),
        rows.len() as f64
    );
    assert_eq!(
        metric_sum(&text, "bouncelens_bounces_by_domain_total", &[]),
        rows.len() as f64
    );
    assert_eq!(
        metric_sum(&text, "bouncelens_processing_seconds_count", &[]),
        n
    );
    assert_eq!(
        metric_sum(
            &text,
            "bouncelens_smtp_sessions_total",
            &["outcome=\"accepted\""]
        ),
        4.0
    );
    assert_eq!(metric_sum(&text, "bouncelens_spool_pending", &[]), 0.0);
    let kinds: f64 = ["dsn", "feedback", "autoreply", "delivered", "unparsed"]
        .iter()
        .map(|k| {
            metric_sum(
                &text,
                "bouncelens_messages_total",
                &[&format!("kind=\"{k}\"")],
            )
        })
        .sum();
    assert_eq!(kinds, n, "every message has one of the five kinds");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixture_bounces_end_to_end() {
    let mut msgs: Vec<Vec<u8>> = fixtures().into_iter().map(|(_, m)| m).collect();
    // Binary junk and an empty message are accepted and processed too.
    let junk: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    msgs.push(crlf(&junk));
    msgs.push(Vec::new());
    check_end_to_end(msgs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sisimai_corpus_end_to_end() {
    let Some(dir) = corpus_dir() else {
        eprintln!("skipped: corpus absent (../shared/corpus/sisimai)");
        return;
    };
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    let msgs = files
        .iter()
        .map(|p| crlf(&std::fs::read(p).unwrap()))
        .collect();
    check_end_to_end(msgs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_the_metrics_output() {
    let Ok(out) = std::process::Command::new("promtool")
        .arg("--version")
        .output()
    else {
        eprintln!("skipped: promtool not installed (Debian package prometheus; scripts/test.sh installs it)");
        return;
    };
    assert!(out.status.success());
    let d = TestDaemon::start(|c| c.metrics.domains = vec!["example.net".into()]).await;
    let sent = send_all(&d, fixtures().into_iter().map(|(_, m)| m).collect(), 2).await;
    let ids: Vec<String> = sent.into_iter().map(|(id, _)| id).collect();
    d.events_for(&ids).await;
    let mut c = d.client().await;
    c.expect("BOGUS", 500).await;
    let (_, text) = d.http_get("/metrics").await;
    assert!(text.contains("bouncelens_bounces_total{"), "{text}");
    let path = d.dir.path().join("metrics.txt");
    std::fs::write(&path, &text).unwrap();
    let check = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("promtool check metrics < {}", path.display()))
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let (status, body) = d.http_get("/healthz").await;
    assert!(status.contains("200") && body == "ok\n", "{status} {body}");
    let (status, _) = d.http_get("/nope").await;
    assert!(status.contains("404"), "{status}");
    d.stop().await;
}

/// Opens the spool of `dir` directly (as a crashed daemon left it) and appends.
async fn spool_messages(dir: &std::path::Path, n: usize) -> (Spool, Vec<QueueId>) {
    let cfg = test_config(dir).spool;
    let (tx, rx) = mpsc::channel(1024);
    // Keep the receiver alive but never read it: nothing gets processed.
    std::mem::forget(rx);
    let (spool, pending) = Spool::open(&cfg, Metrics::new(), tx).unwrap();
    assert!(pending.is_empty());
    let mut ids = Vec::new();
    for i in 0..n {
        let env = Envelope {
            mail_from: String::new(),
            rcpt_to: vec![format!("bounces{i}@bounces.example.org")],
            ..Envelope::default()
        };
        ids.push(
            spool
                .append(
                    env,
                    format!("Subject: left behind {i}\r\n\r\nx\r\n").into_bytes(),
                )
                .await
                .unwrap(),
        );
    }
    (spool, ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_spooled_before_a_restart_are_processed_and_a_torn_tail_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, ids) = spool_messages(dir.path(), 5).await;
    spool.close().await;
    drop(spool);
    // A crash in the middle of writing the next record leaves half of it.
    let segs = bouncelens::spool::recovery::list_segments(&dir.path().join("spool")).unwrap();
    let last =
        bouncelens::spool::recovery::segment_path(&dir.path().join("spool"), *segs.last().unwrap());
    let half =
        bouncelens::spool::segment::encode_message(u64::MAX - 1, 0, &Envelope::default(), b"torn");
    let mut bytes = std::fs::read(&last).unwrap();
    let good_len = bytes.len();
    bytes.extend_from_slice(&half[..half.len() / 2]);
    std::fs::write(&last, &bytes).unwrap();

    let d = TestDaemon::start_in(dir, |_| {}).await;
    let want: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
    let rows = d.events_for(&want).await;
    assert_eq!(rows.len(), 5);
    let mut to: Vec<&str> = rows
        .iter()
        .map(|r| r["envelope_to"][0].as_str().unwrap())
        .collect();
    to.sort();
    assert_eq!(
        to,
        (0..5)
            .map(|i| format!("bounces{i}@bounces.example.org"))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        std::fs::metadata(&last).unwrap().len(),
        good_len as u64,
        "torn tail cut"
    );
    // New ids continue above the recovered ones.
    let mut c = d.client().await;
    c.expect("EHLO sender.test", 250).await;
    let (_, text) = c
        .send_mail("", &["a@b.example"], b"Subject: new\r\n\r\n")
        .await;
    let new: QueueId = queue_id(&text).parse().unwrap();
    assert!(new > *ids.iter().max().unwrap());
    d.events_for(&[new.to_string()]).await;
    // Once done, a further restart processes nothing again.
    let dir = d.stop().await;
    let d = TestDaemon::start_in(dir, |_| {}).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        d.events().len(),
        6,
        "nothing processed twice after a clean stop"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_kept_killing_the_daemon_is_quarantined_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, ids) = spool_messages(dir.path(), 2).await;
    // The first message was tried three times and the daemon died every time.
    for _ in 0..bouncelens::spool::MAX_ATTEMPTS {
        spool.record_attempt(ids[0]).await.unwrap();
    }
    spool.close().await;
    drop(spool);
    let d = TestDaemon::start_in(dir, |_| {}).await;
    d.events_for(&[ids[1].to_string()]).await;
    wait_for("quarantine", || {
        (d.metrics.quarantined_total.get() == 1).then_some(())
    })
    .await;
    assert!(d
        .events()
        .iter()
        .all(|r| r["queue_id"] != ids[0].to_string().as_str()));
    let q = d.config.spool.dir.join("quarantine");
    let eml = std::fs::read(q.join(format!("{}.eml", ids[0]))).unwrap();
    assert_eq!(eml, b"Subject: left behind 0\r\n\r\nx\r\n");
    let note = std::fs::read_to_string(q.join(format!("{}.json", ids[0]))).unwrap();
    assert!(note.contains("attempts"), "{note}");
    wait_for("spool drained", || {
        (d.metrics.spool_pending.get() == 0).then_some(())
    })
    .await;
    let dir = d.stop().await;
    // Quarantined means done: not picked up again.
    let d = TestDaemon::start_in(dir, |_| {}).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(d.metrics.quarantined_total.get(), 0);
    assert_eq!(d.metrics.spool_pending.get(), 0);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processed_segments_are_deleted_after_retention() {
    let d = TestDaemon::start(|c| {
        c.spool.retention = Duration::from_secs(1);
        c.spool.segment_size = 64 * 1024;
    })
    .await;
    let msg = fixtures()
        .into_iter()
        .find(|(n, _)| n.starts_with("exchange"))
        .unwrap()
        .1;
    let sent = send_all(&d, vec![msg; 120], 4).await;
    let ids: Vec<String> = sent.into_iter().map(|(id, _)| id).collect();
    d.events_for(&ids).await;
    let spool = d.config.spool.dir.clone();
    let count = || {
        bouncelens::spool::recovery::list_segments(&spool)
            .unwrap()
            .len()
    };
    let most = count();
    assert!(
        most >= 3,
        "120 x 1.7 KB in 64 KiB segments: {most} segments"
    );
    // Everything is processed; after the retention period only the active segment
    // (and perhaps the one before it) remains.
    wait_for("expired segments deleted", || (count() <= 2).then_some(())).await;
    let dir = d.stop().await;
    // Nothing still needed was deleted: a restart finds nothing to process.
    let d = TestDaemon::start_in(dir, |c| c.spool.retention = Duration::from_secs(1)).await;
    assert_eq!(d.metrics.spool_pending.get(), 0);
    d.stop().await;
}

/// Done markers wait for the events log's next sync (up to 100 ms after
/// classification); a graceful stop right after classification must still write
/// every one, or the next start would process the messages again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_stop_writes_the_done_markers_still_waiting_for_a_sync() {
    let d = TestDaemon::start(|_| {}).await;
    let msgs: Vec<Vec<u8>> = (0..6)
        .map(|i| format!("Subject: bounce {i}\r\n\r\nx\r\n").into_bytes())
        .collect();
    let ids: Vec<String> = send_all(&d, msgs, 2)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let rows = d.events_for(&ids).await.len();
    let dir = d.stop().await;
    let d = TestDaemon::start_in(dir, |_| {}).await;
    // Set at start from the markers on disk.
    assert_eq!(d.metrics.spool_pending.get(), 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(d.events().len(), rows, "nothing was processed twice");
    d.stop().await;
}
