//! The Grafana dashboard (dashboards/bouncelens.json) and the alert rules
//! (alerts/bouncelens.rules.yml) only use metrics, label names and metric types the real
//! daemon exports, and their PromQL is valid.
//!
//! A daemon runs in-process on 127.0.0.1:0 (the daemon tests' harness); a real bounce is
//! delivered over SMTP, a junk command draws a rejection, then `/metrics` is scraped.
//! Every `bouncelens_*` name in the dashboard's and the rules' expressions must be a
//! sample name in that scrape (`_bucket` / `_sum` / `_count` only on histograms), counters
//! only inside `rate` / `increase`, gauges never, and every label a selector or `by (...)`
//! names must exist on the metrics of that expression. promtool (Debian `prometheus`;
//! scripts/test.sh installs it) then checks every dashboard expression, `check rules`
//! and the rules' unit tests; without promtool those parts say skipped.

#[allow(dead_code)]
#[path = "daemon_suite/support.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::{crlf, http_get, metric_sum, queue_id, TestDaemon, PATIENCE};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Every PromQL expression of the dashboard (panel targets, also in rows, and the
/// template variables' queries), with the panel title for messages.
fn dashboard_exprs() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo("dashboards/bouncelens.json")).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).expect("dashboard is JSON");
    let mut out = Vec::new();
    fn panels(list: &serde_json::Value, out: &mut Vec<(String, String)>) {
        for p in list.as_array().into_iter().flatten() {
            let title = p["title"].as_str().unwrap_or("?").to_string();
            for t in p["targets"].as_array().into_iter().flatten() {
                let e = t["expr"].as_str().expect("every target has an expr");
                out.push((title.clone(), e.to_string()));
            }
            panels(&p["panels"], out);
        }
    }
    panels(&dash["panels"], &mut out);
    for v in dash["templating"]["list"].as_array().unwrap() {
        if v["type"] == "query" {
            let q = v["query"]["query"]
                .as_str()
                .or(v["query"].as_str())
                .unwrap();
            out.push((format!("variable {}", v["name"]), q.to_string()));
        }
    }
    out
}

/// Every `expr:` of the rules file (one line, or a `|` block), with its rule name.
fn rule_exprs() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo("alerts/bouncelens.rules.yml")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut name = String::new();
    let mut i = 0;
    while i < lines.len() {
        let t = lines[i].trim_start();
        if let Some(n) = t
            .strip_prefix("- alert:")
            .or_else(|| t.strip_prefix("- record:"))
        {
            name = n.trim().to_string();
        }
        if let Some(rest) = t.strip_prefix("expr:") {
            let rest = rest.trim();
            if rest == "|" || rest == ">" {
                let indent = lines[i].len() - t.len();
                let mut block = Vec::new();
                while i + 1 < lines.len() {
                    let l = lines[i + 1];
                    if !l.trim().is_empty() && l.len() - l.trim_start().len() <= indent {
                        break;
                    }
                    block.push(l.trim());
                    i += 1;
                }
                out.push((name.clone(), block.join("\n")));
            } else {
                out.push((name.clone(), rest.to_string()));
            }
        }
        i += 1;
    }
    let rules = text
        .lines()
        .filter(|l| {
            let t = l.trim_start();
            t.starts_with("- alert:") || t.starts_with("- record:")
        })
        .count();
    assert_eq!(out.len(), rules, "one expr per rule");
    out
}

/// PromQL without its string literals (label values, regexes) and `#` comments.
fn strip_strings(expr: &str) -> String {
    let mut out = String::new();
    let mut quote = None;
    let mut escaped = false;
    let mut comment = false;
    for c in expr.chars() {
        if comment {
            if c == '\n' {
                comment = false;
                out.push(c);
            }
            continue;
        }
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                    out.push_str("\"\"");
                }
            }
            None if c == '#' => comment = true,
            None if c == '"' || c == '\'' || c == '`' => quote = Some(c),
            None => out.push(c),
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// Identifiers of an expression with their byte offsets (strings removed first).
fn idents(expr: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in expr.char_indices().chain([(expr.len(), ' ')]) {
        match (start, is_ident(c)) {
            (None, true) => start = Some(i),
            (Some(s), false) => {
                out.push((s, expr[s..i].to_string()));
                start = None;
            }
            _ => {}
        }
    }
    out
}

/// `NAME{label op "v", ...}`: the label names inside the braces after each metric name.
fn selector_labels(expr: &str, metric_at: usize, metric: &str) -> Vec<String> {
    let rest = &expr[metric_at + metric.len()..];
    let Some(body) = rest.strip_prefix('{') else {
        return Vec::new();
    };
    let body = &body[..body.find('}').expect("selector closes")];
    body.split(',')
        .filter_map(|m| {
            let name: String = m.trim().chars().take_while(|&c| is_ident(c)).collect();
            (!name.is_empty()).then_some(name)
        })
        .collect()
}

/// The labels named in `by (...)` / `without (...)` / `on (...)` / `ignoring (...)`.
fn grouping_labels(expr: &str) -> Vec<String> {
    let ids = idents(expr);
    let mut out = Vec::new();
    for (at, word) in &ids {
        if !matches!(word.as_str(), "by" | "without" | "on" | "ignoring") {
            continue;
        }
        let rest = expr[at + word.len()..].trim_start();
        if let Some(list) = rest.strip_prefix('(') {
            let list = &list[..list.find(')').unwrap()];
            out.extend(
                list.split(',')
                    .map(|l| l.trim().to_string())
                    .filter(|l| !l.is_empty()),
            );
        }
    }
    out
}

/// What a scrape says: sample name -> label names seen on it, and family -> TYPE.
struct Scrape {
    samples: BTreeMap<String, BTreeSet<String>>,
    types: BTreeMap<String, String>,
}

impl Scrape {
    fn parse(text: &str) -> Scrape {
        let mut samples: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut types = BTreeMap::new();
        for line in text.lines() {
            if let Some(t) = line.strip_prefix("# TYPE ") {
                let mut it = t.split_whitespace();
                types.insert(it.next().unwrap().into(), it.next().unwrap().into());
                continue;
            }
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let name: String = line.chars().take_while(|&c| is_ident(c)).collect();
            let labels = samples.entry(name.clone()).or_default();
            if let Some(body) = line[name.len()..].strip_prefix('{') {
                let body = &body[..body.rfind('}').unwrap()];
                for pair in body.split("\",") {
                    if let Some((k, _)) = pair.split_once('=') {
                        labels.insert(k.trim().to_string());
                    }
                }
            }
        }
        Scrape { samples, types }
    }

    /// The family a sample name belongs to and its type: the name itself, or for
    /// `_bucket` / `_sum` / `_count` the histogram (or summary) it is part of.
    fn family(&self, name: &str) -> Option<(String, String)> {
        if let Some(t) = self.types.get(name) {
            return Some((name.to_string(), t.clone()));
        }
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = name.strip_suffix(suffix) {
                match self.types.get(base).map(String::as_str) {
                    Some("histogram") => return Some((base.into(), "histogram".into())),
                    Some("summary") if suffix != "_bucket" => {
                        return Some((base.into(), "summary".into()))
                    }
                    _ => {}
                }
            }
        }
        None
    }
}

/// Checks one expression against the scrape; returns the problems found.
fn check_expr(
    origin: &str,
    expr: &str,
    scrape: &Scrape,
    recorded: &BTreeSet<String>,
) -> Vec<String> {
    let e = strip_strings(expr);
    let ids = idents(&e);
    let mut problems = Vec::new();
    let mut labels_here: BTreeSet<String> = ["job", "instance"].map(String::from).into();
    for (at, name) in &ids {
        // Recording rules' outputs must be defined; `up`, functions and keywords pass.
        if name.starts_with("bouncelens:") {
            if !recorded.contains(name) {
                problems.push(format!("{origin}: no recording rule defines {name}"));
            }
            continue;
        }
        if !name.starts_with("bouncelens_") {
            continue;
        }
        let Some(labels) = scrape.samples.get(name) else {
            problems.push(format!("{origin}: {name} is not in the daemon's /metrics"));
            continue;
        };
        labels_here.extend(labels.iter().cloned());
        let (family, kind) = scrape
            .family(name)
            .unwrap_or_else(|| panic!("{name} has no # TYPE line"));
        // What function is the selector inside? `rate(NAME...` / `increase(NAME...`.
        let before = e[..*at].trim_end();
        let in_rate = ["rate(", "increase(", "irate("]
            .iter()
            .any(|f| before.ends_with(f));
        // `NAME{...} unless NAME offset 15m`: which series are new (a first occurrence,
        // which increase() cannot see) compares raw counters on purpose.
        let mut after = &e[at + name.len()..];
        if after.starts_with('{') {
            after = &after[after.find('}').unwrap() + 1..];
        }
        let after = after.trim_start();
        let new_series = after.starts_with("unless") || after.starts_with("offset");
        match kind.as_str() {
            "counter" if !in_rate && !new_series => problems.push(format!(
                "{origin}: counter {name} used without rate()/increase()"
            )),
            "gauge" if in_rate => {
                problems.push(format!("{origin}: gauge {name} inside rate()/increase()"))
            }
            "histogram" if name == &family => problems.push(format!(
                "{origin}: histogram {name} used without _bucket/_sum/_count"
            )),
            "histogram" if !in_rate => problems.push(format!(
                "{origin}: histogram series {name} used without rate()/increase()"
            )),
            _ => {}
        }
        for l in selector_labels(&e, *at, name) {
            if !labels.contains(&l) && !["job", "instance"].contains(&l.as_str()) {
                problems.push(format!(
                    "{origin}: {name} has no label {l:?} (it has {labels:?})"
                ));
            }
        }
    }
    for l in grouping_labels(&e) {
        if !labels_here.contains(&l) {
            problems.push(format!(
                "{origin}: groups by {l:?}, which no metric of the expression has"
            ));
        }
    }
    problems
}

/// The names recording rules define (usable in other rules' expressions).
fn recorded_names() -> BTreeSet<String> {
    std::fs::read_to_string(repo("alerts/bouncelens.rules.yml"))
        .unwrap()
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("- record:"))
        .map(|n| n.trim().to_string())
        .collect()
}

/// Families a fresh daemon may lack until the first matching event. A family that
/// becomes missing at start-up and is not here is a regression for fresh dashboards
/// ("No data") and for absence-sensitive alerts.
const APPEAR_WITH_TRAFFIC: [&str; 4] = [
    "bouncelens_bounces_total",
    "bouncelens_bounces_by_domain_total",
    "bouncelens_advice_emails_total",
    "bouncelens_smtp_rejections_total",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_and_alerts_use_only_exported_metrics() {
    // The daemon as deployed: with the built-in rule packs.
    let d = TestDaemon::start(|c| c.rules.builtin = true).await;

    let (status, fresh) = http_get(d.http, "/metrics").await;
    assert!(status.contains("200"), "{status}");
    let fresh = Scrape::parse(&fresh);

    // A real bounce with the null sender, as a remote MTA sends it.
    let bounce = crlf(&std::fs::read(repo("examples/bounce-5.1.1.eml")).unwrap());
    let mut c = d.client().await;
    c.expect("EHLO mta.example.net", 250).await;
    let (code, text) = c
        .send_mail(
            "",
            &["bounces+hanako=example.jp@bounces.example.jp"],
            &bounce,
        )
        .await;
    assert_eq!(code, 250, "{text}");
    let id = queue_id(&text);
    c.expect("QUIT", 221).await;
    let rows = d.events_for(std::slice::from_ref(&id)).await;
    assert_eq!(rows[0]["reason"], "userunknown");
    assert!(
        rows[0]["cause"]["id"].is_string(),
        "a rule matched: {}",
        rows[0]
    );
    // A protocol error, so the rejection counter has a sample.
    let mut junk = d.client().await;
    let (code, _) = junk.cmd("FROBNICATE now").await;
    assert_eq!(code, 500);
    junk.expect("QUIT", 221).await;

    let deadline = Instant::now() + PATIENCE;
    let body = loop {
        let (_, text) = http_get(d.http, "/metrics").await;
        if metric_sum(&text, "bouncelens_advice_emails_total", &[]) >= 1.0
            && metric_sum(&text, "bouncelens_smtp_rejections_total", &["code=\"500\""]) >= 1.0
            && metric_sum(&text, "bouncelens_smtp_sessions_total", &[]) >= 2.0
        {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "advice, rejection and session counters never showed up:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let scrape = Scrape::parse(&body);

    let dash = dashboard_exprs();
    let rules = rule_exprs();
    assert!(
        dash.len() >= 20,
        "only {} dashboard expressions found",
        dash.len()
    );
    assert!(
        rules.len() >= 10,
        "only {} rule expressions found",
        rules.len()
    );
    let recorded = recorded_names();
    let mut used = BTreeSet::new();
    let mut problems = Vec::new();
    for (origin, expr) in dash.iter().chain(&rules) {
        problems.extend(check_expr(origin, expr, &scrape, &recorded));
        for (_, n) in idents(&strip_strings(expr)) {
            if let Some((family, _)) = n
                .starts_with("bouncelens_")
                .then(|| scrape.family(&n))
                .flatten()
            {
                used.insert(family);
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // The dashboard covers every family the daemon exports.
    let exported: BTreeSet<String> = scrape
        .types
        .keys()
        .filter(|k| k.starts_with("bouncelens_"))
        .cloned()
        .collect();
    let unused: Vec<_> = exported.difference(&used).collect();
    assert!(
        unused.is_empty(),
        "metrics no panel or rule shows: {unused:?}"
    );

    // The text format leaves out a labelled family until it has a first sample.
    let late: Vec<&String> = used
        .iter()
        .filter(|f| !fresh.types.contains_key(*f))
        .collect();
    eprintln!("families absent from a fresh daemon's /metrics until traffic: {late:?}");
    for f in &late {
        assert!(
            APPEAR_WITH_TRAFFIC.contains(&f.as_str()),
            "{f} is missing from a fresh daemon's /metrics"
        );
    }
    d.stop().await;
}

fn promtool() -> Option<PathBuf> {
    match Command::new("promtool").arg("--version").output() {
        Ok(o) if o.status.success() => Some(PathBuf::from("promtool")),
        _ => {
            eprintln!(
                "skipped: promtool not installed (Debian package prometheus; scripts/test.sh installs it)"
            );
            None
        }
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn promtool_checks_the_alert_rules_and_their_unit_tests() {
    let Some(p) = promtool() else { return };
    run(Command::new(&p)
        .args(["check", "rules"])
        .arg(repo("alerts/bouncelens.rules.yml")));
    run(Command::new(&p)
        .args(["test", "rules"])
        .arg(repo("alerts/bouncelens.rules.test.yml")));
}

#[test]
fn promtool_parses_every_dashboard_expression() {
    let Some(p) = promtool() else { return };
    // Grafana's variables as Prometheus would see them after substitution.
    let mut yaml = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, (_, expr)) in dashboard_exprs().iter().enumerate() {
        let e = expr
            .replace("$__rate_interval", "5m")
            .replace("$__range", "1d")
            .replace("$job", ".*")
            .replace("$instance", ".*");
        let e = match e.strip_prefix("label_values(") {
            // label_values(SELECTOR, label) is Grafana's, not PromQL: check the selector.
            Some(rest) => rest[..rest.rfind(',').unwrap()].to_string(),
            None => e,
        };
        let quoted = serde_json::to_string(&e).unwrap(); // a valid YAML double-quoted string
        yaml.push_str(&format!(
            "      - record: dashboard:expr{i}\n        expr: {quoted}\n"
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dashboard.rules.yml");
    std::fs::write(&path, yaml).unwrap();
    run(Command::new(&p).args(["check", "rules"]).arg(&path));
}
