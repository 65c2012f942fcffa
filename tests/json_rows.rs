//! The hand-written JSON of rows (`bouncelens::json`) against serde_json's output of
//! the same rows: every row of tests/fixtures and of the Sisimai corpus (when
//! present), in English and Japanese, as classify rows and as events-log lines. A
//! field added to `Row` and not to the writer fails here.

use std::path::{Path, PathBuf};

use bouncelens::classify;
use bouncelens::events;
use bouncelens::json;
use bouncelens::model::{Envelope, Lang, ParsedMessage, ProcessedMessage, Row};
use bouncelens::rules::RuleSet;
use serde::Serialize;

/// The events-log line as it was defined with serde.
#[derive(Serialize)]
struct EventLine<'a> {
    #[serde(flatten)]
    row: &'a Row,
    queue_id: &'a str,
    received_at: &'a str,
    envelope_from: &'a str,
    envelope_to: &'a [String],
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

/// Checks every row of every file in `dir`; returns how many rows.
fn check_dir(dir: &Path) -> usize {
    let rules = RuleSet::builtin().unwrap();
    let mut checked = 0;
    for lang in [Lang::En, Lang::Ja] {
        for path in files(dir) {
            let raw = std::fs::read(&path).unwrap();
            let source = path.display().to_string();
            let rows = classify::analyze(&raw, &rules, lang, &source);
            for row in &rows {
                let mut ours = Vec::new();
                json::write_row(row, &mut ours);
                assert_eq!(
                    String::from_utf8(ours).unwrap(),
                    serde_json::to_string(row).unwrap(),
                    "{source}"
                );
            }
            let msg = ProcessedMessage {
                queue_id: "0000000000000A1F".into(),
                received_at: "2026-11-23T04:00:00.000000Z".into(),
                envelope: Envelope {
                    mail_from: "a\"b@example.org".into(),
                    rcpt_to: vec!["bounces@example.org".into(), "x\\y@example.org".into()],
                    ..Default::default()
                },
                raw: raw.clone().into(),
                parsed: ParsedMessage::default(),
                rows,
            };
            let mut ours = Vec::new();
            events::render_into(&msg, &mut ours);
            let mut theirs = Vec::new();
            for row in &msg.rows {
                let line = EventLine {
                    row,
                    queue_id: &msg.queue_id,
                    received_at: &msg.received_at,
                    envelope_from: &msg.envelope.mail_from,
                    envelope_to: &msg.envelope.rcpt_to,
                };
                serde_json::to_writer(&mut theirs, &line).unwrap();
                theirs.push(b'\n');
            }
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                String::from_utf8(theirs).unwrap(),
                "{source}"
            );
            checked += msg.rows.len();
        }
    }
    checked
}

#[test]
fn fixture_rows_are_written_as_serde_json_writes_them() {
    let n = check_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures"));
    assert!(n > 20, "only {n} rows");
}

#[test]
fn corpus_rows_are_written_as_serde_json_writes_them() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/sisimai");
    if !dir.is_dir() {
        println!("skipped: corpus absent");
        return;
    }
    let n = check_dir(&dir);
    assert!(n > 1000, "only {n} rows");
}
