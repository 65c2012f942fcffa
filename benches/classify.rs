//! Classification throughput: the whole bounce corpus held in memory, parsed and
//! classified with the built-in rules, reported as messages per second.
//!
//! Uses ../shared/corpus/sisimai when present (the real mix of ~70 server kinds),
//! else the repository's own fixtures. Run: `cargo bench --locked --bench classify`.

use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use bouncelens::classify;
use bouncelens::model::Lang;
use bouncelens::parse;
use bouncelens::rules::RuleSet;

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn load_inputs() -> (String, Vec<Vec<u8>>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let corpus = root.join("../shared/corpus/sisimai");
    let (label, dir) = if corpus.is_dir() {
        ("sisimai corpus", corpus)
    } else {
        ("repository fixtures", root.join("tests/fixtures"))
    };
    let mut files = Vec::new();
    files_under(&dir, &mut files);
    let inputs: Vec<Vec<u8>> = files.iter().filter_map(|f| std::fs::read(f).ok()).collect();
    (label.to_string(), inputs)
}

fn bench(c: &mut Criterion) {
    let (label, inputs) = load_inputs();
    let rules = RuleSet::builtin().expect("built-in rules load");
    let messages: u64 = inputs
        .iter()
        .map(|m| parse::split_mbox(m).len() as u64)
        .sum();
    let bytes: usize = inputs.iter().map(Vec::len).sum();
    eprintln!(
        "{label}: {} files, {messages} messages, {bytes} bytes",
        inputs.len()
    );

    let mut group = c.benchmark_group("classify");
    group.throughput(Throughput::Elements(messages));
    group.sample_size(20);
    group.bench_function("analyze_all", |b| {
        b.iter(|| {
            let mut rows = 0usize;
            for m in &inputs {
                rows += classify::analyze(m, &rules, Lang::En, "bench").len();
            }
            rows
        })
    });
    group.bench_function("parse_only", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for m in &inputs {
                for one in parse::split_mbox(m) {
                    n += parse::parse_message(one).recipients.len();
                }
            }
            n
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
