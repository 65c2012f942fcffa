//! The parser and classifier never panic, whatever bytes arrive: proptest over
//! arbitrary bytes, MIME-shaped junk, and mutated real bounces (the corpus when present,
//! else the repository's fixtures). Each case must also still yield at least one row.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use proptest::prelude::*;

use bouncelens::classify;
use bouncelens::model::Lang;
use bouncelens::rules::RuleSet;

fn rules() -> &'static RuleSet {
    static RULES: OnceLock<RuleSet> = OnceLock::new();
    RULES.get_or_init(|| RuleSet::builtin().expect("built-in rules load"))
}

fn seeds() -> &'static Vec<Vec<u8>> {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files: Vec<PathBuf> = Vec::new();
        for dir in [root.join("../shared/corpus/sisimai"), root.join("tests/fixtures")] {
            collect(&dir, &mut files);
        }
        files.sort();
        let mut seeds: Vec<Vec<u8>> = files.iter().filter_map(|f| std::fs::read(f).ok()).collect();
        // Always have something MIME-shaped to mutate, even on a bare checkout.
        seeds.push(
            b"From: MAILER-DAEMON@example.org\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nfailed\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.org\r\n\r\nFinal-Recipient: rfc822; bob@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 unknown\r\n--b--\r\n"
                .to_vec(),
        );
        seeds
    })
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// One edit applied to a real message.
#[derive(Debug, Clone)]
enum Mutation {
    Truncate(usize),
    FlipByte(usize, u8),
    Insert(usize, Vec<u8>),
    DeleteRange(usize, usize),
    Duplicate(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let nasty = prop_oneof![
        Just(b"\r\n--".to_vec()),
        Just(b"\r\n\r\n".to_vec()),
        Just(b"Content-Type: multipart/mixed; boundary=\"".to_vec()),
        Just(b"Content-Transfer-Encoding: base64\r\n".to_vec()),
        Just(b"=?ISO-2022-JP?B?GyRC".to_vec()),
        Just(b"\x1b$B".to_vec()),
        Just(b"Status: 5.".to_vec()),
        Just(b"Final-Recipient: rfc822; <".to_vec()),
        Just(vec![b'x'; 70_000]),
        Just(vec![0xff, 0xfe, 0x00, 0x80]),
        proptest::collection::vec(any::<u8>(), 0..64),
    ];
    prop_oneof![
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::FlipByte(i, b)),
        (any::<usize>(), nasty).prop_map(|(i, v)| Mutation::Insert(i, v)),
        (any::<usize>(), 0usize..4096).prop_map(|(i, n)| Mutation::DeleteRange(i, n)),
        (any::<usize>(), 0usize..4096).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
    ]
}

fn apply(mut msg: Vec<u8>, muts: &[Mutation]) -> Vec<u8> {
    for m in muts {
        let len = msg.len().max(1);
        match m {
            Mutation::Truncate(i) => msg.truncate(i % len),
            Mutation::FlipByte(i, b) => {
                if !msg.is_empty() {
                    let i = i % msg.len();
                    msg[i] ^= b | 1;
                }
            }
            Mutation::Insert(i, v) => {
                let i = i % (msg.len() + 1);
                msg.splice(i..i, v.iter().copied());
            }
            Mutation::DeleteRange(i, n) => {
                let i = i % len.min(msg.len() + 1);
                let end = (i + n).min(msg.len());
                msg.drain(i.min(end)..end);
            }
            Mutation::Duplicate(i, n) => {
                let i = i % (msg.len() + 1);
                let end = (i + n).min(msg.len());
                let copy = msg[i..end].to_vec();
                msg.splice(end..end, copy);
            }
        }
    }
    msg
}

fn check(bytes: &[u8]) {
    let rows = classify::analyze(bytes, rules(), Lang::Ja, "prop");
    assert!(!rows.is_empty(), "every input yields at least one row");
    for r in &rows {
        serde_json::to_string(r).expect("rows serialize");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..8192)) {
        check(&bytes);
    }

    #[test]
    fn mutated_real_bounces_never_panic(
        pick in any::<usize>(),
        muts in proptest::collection::vec(mutation(), 1..6),
    ) {
        let seeds = seeds();
        let msg = apply(seeds[pick % seeds.len()].clone(), &muts);
        check(&msg);
    }
}

/// Regression guard for pathological shapes that mutation rarely reaches.
#[test]
fn pathological_shapes_never_panic() {
    let mut deep = Vec::new();
    for i in 0..200 {
        deep.extend_from_slice(
            format!("Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\n")
                .as_bytes(),
        );
    }
    let shapes: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"\r\n\r\n\r\n".to_vec(),
        b"From \n".to_vec(),
        b"From x\nFrom y\nFrom z\n".to_vec(),
        vec![b'A'; 2 * 1024 * 1024],
        [b"Subject: ".as_slice(), &vec![b'x'; 1 << 20]].concat(),
        deep,
        b"Content-Type: message/delivery-status\r\n\r\nFinal-Recipient:\r\n \r\n\t\r\nStatus: 5.999999.9999999\r\n".to_vec(),
    ];
    for s in shapes {
        check(&s);
    }
}
