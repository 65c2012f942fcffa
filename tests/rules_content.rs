//! The human text of every built-in rule: what advice mail and `explain` show people.
//!
//! Advice mail prints a rule's `title` in the Subject, its `advice` as the one-paragraph
//! explanation and its `steps` as the numbered "What to do" list, in English or Japanese
//! (SPEC.md "Advice mail"). These checks hold for all packs, so a rule added or edited
//! later cannot ship without steps, with a missing translation, with a title too long for
//! a Subject line, or with temporary-failure advice that forgets the server retries.
//! The ids the Prometheus alerting rules (alerts/bouncelens.rules.yml) select on must
//! exist, or an alert silently never fires.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::OnceLock;

use bouncelens::model::FixBy;
use bouncelens::rules::{Rule, RuleSet, RuleSource, RuleText, StatusSelector};
use regex::Regex;

const EN_TITLE_MAX: usize = 80;
const JA_TITLE_MAX: usize = 50;
const STEPS_MIN: usize = 2;
const STEPS_MAX: usize = 5;

fn builtin() -> &'static RuleSet {
    static SET: OnceLock<RuleSet> = OnceLock::new();
    SET.get_or_init(|| RuleSet::builtin().expect("built-in rules load"))
}

fn has_japanese(s: &str) -> bool {
    s.chars()
        .any(|c| matches!(c, '\u{3040}'..='\u{30ff}' | '\u{4e00}'..='\u{9fff}'))
}

/// Markers of unfinished text. Upper-case markers are matched as whole words and case-
/// sensitively: Microsoft's "ASxxx" spam tags are real content, "XXX" is not.
fn placeholder(s: &str) -> Option<&'static str> {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| {
        Regex::new(r"\b(TODO|TBD|FIXME|XXX)\b|(?i:lorem ipsum|\blorem\b)").unwrap()
    });
    re.find(s)
        .map(|_| "placeholder marker (TODO/TBD/FIXME/XXX/lorem)")
}

fn status_class(s: &StatusSelector) -> u8 {
    match *s {
        StatusSelector::Exact(c) => c.class,
        StatusSelector::Range { class, .. }
        | StatusSelector::Subject { class, .. }
        | StatusSelector::Class { class } => class,
    }
}

/// A rule that only ever matches temporary (4.x.x) failures.
fn class4_only(r: &Rule) -> bool {
    !r.status.is_empty() && r.status.iter().all(|s| status_class(s) == 4)
}

fn is_vendor(r: &Rule) -> bool {
    matches!(r.pack.as_deref(), Some("vendor-text" | "vendor-hosts"))
}

fn all_text(t: &RuleText) -> String {
    let mut s = format!("{}\n{}", t.title, t.advice);
    for step in &t.steps {
        s.push('\n');
        s.push_str(step);
    }
    s
}

/// Sentences in an English paragraph (a terminator followed by a capital or the end).
fn en_sentences(s: &str) -> usize {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| Regex::new(r#"[.?!]["”)]?(?:\s+[A-Z("]|$)"#).unwrap());
    re.find_iter(s.trim_end()).count()
}

/// Collects every problem so one run lists them all.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn check(&mut self, ok: bool, r: &Rule, what: impl FnOnce() -> String) {
        if !ok {
            self.0.push(format!("{} ({}): {}", r.id, r.origin, what()));
        }
    }

    fn assert_none(self, topic: &str) {
        if !self.0.is_empty() {
            let mut msg = format!("{} rule text problem(s): {topic}\n", self.0.len());
            for p in &self.0 {
                let _ = writeln!(msg, "  {p}");
            }
            panic!("{msg}");
        }
    }
}

#[test]
fn every_pack_is_checked() {
    let set = builtin();
    for pack in ["rfc3463", "exchange-online", "vendor-text", "vendor-hosts"] {
        let n = set
            .rules()
            .iter()
            .filter(|r| r.pack.as_deref() == Some(pack))
            .count();
        assert!(n > 0, "pack {pack} has no rules in RuleSet::builtin()");
    }
    assert!(set.len() >= 300, "only {} built-in rules", set.len());
}

#[test]
fn titles_and_advice_exist_in_both_languages() {
    let mut p = Problems::default();
    for r in builtin().rules() {
        for (lang, t) in [("en", &r.en), ("ja", &r.ja)] {
            p.check(!t.title.trim().is_empty(), r, || {
                format!("{lang} title empty")
            });
            p.check(!t.advice.trim().is_empty(), r, || {
                format!("{lang} advice empty")
            });
            p.check(
                !t.title.ends_with('.') && !t.title.ends_with('。'),
                r,
                || format!("{lang} title ends with a period (it is a Subject line)"),
            );
        }
        p.check(has_japanese(&r.ja.title), r, || {
            "ja title has no Japanese".into()
        });
        p.check(has_japanese(&r.ja.advice), r, || {
            "ja advice has no Japanese".into()
        });
        p.check(r.en.title != r.ja.title, r, || {
            "ja title untranslated".into()
        });
        p.check(r.en.advice != r.ja.advice, r, || {
            "ja advice untranslated".into()
        });
    }
    p.assert_none("title / advice");
}

#[test]
fn titles_fit_a_subject_line() {
    let mut p = Problems::default();
    for r in builtin().rules() {
        let en = r.en.title.chars().count();
        let ja = r.ja.title.chars().count();
        p.check(en <= EN_TITLE_MAX, r, || {
            format!(
                "en title is {en} chars (max {EN_TITLE_MAX}): {}",
                r.en.title
            )
        });
        p.check(ja <= JA_TITLE_MAX, r, || {
            format!(
                "ja title is {ja} chars (max {JA_TITLE_MAX}): {}",
                r.ja.title
            )
        });
    }
    p.assert_none("titles too long");
}

#[test]
fn every_rule_has_numbered_steps_in_both_languages() {
    let mut p = Problems::default();
    for r in builtin().rules() {
        let (en, ja) = (&r.en.steps, &r.ja.steps);
        p.check((STEPS_MIN..=STEPS_MAX).contains(&en.len()), r, || {
            format!("{} en steps (want {STEPS_MIN}-{STEPS_MAX})", en.len())
        });
        p.check(en.len() == ja.len(), r, || {
            format!("{} en steps but {} ja steps", en.len(), ja.len())
        });
        for (i, s) in en.iter().enumerate() {
            p.check(!s.trim().is_empty(), r, || {
                format!("en step {} empty", i + 1)
            });
            p.check(s.ends_with(['.', '!', '?']), r, || {
                format!("en step {} is not a full sentence: {s}", i + 1)
            });
        }
        for (i, s) in ja.iter().enumerate() {
            p.check(has_japanese(s), r, || {
                format!("ja step {} has no Japanese: {s}", i + 1)
            });
            p.check(s.ends_with('。'), r, || {
                format!("ja step {} does not end with 。: {s}", i + 1)
            });
        }
        for (lang, steps) in [("en", en), ("ja", ja)] {
            for (i, s) in steps.iter().enumerate() {
                p.check(!steps[..i].contains(s), r, || {
                    format!("{lang} step {} repeats an earlier step", i + 1)
                });
            }
        }
    }
    p.assert_none("steps");
}

#[test]
fn no_placeholders() {
    let mut p = Problems::default();
    for r in builtin().rules() {
        for (lang, t) in [("en", &r.en), ("ja", &r.ja)] {
            let text = all_text(t);
            if let Some(why) = placeholder(&text) {
                p.check(false, r, || format!("{lang}: {why}"));
            }
        }
    }
    p.assert_none("placeholders");
}

/// The loader trims steps, so whitespace is checked in the rule files as written: a stray
/// space there is a sign of a broken edit (and shows in `git diff`, not in the mail).
#[test]
fn rule_files_have_no_stray_whitespace_in_texts() {
    let mut problems = Vec::new();
    for src in RuleSource::builtin() {
        let doc: toml::Value =
            toml::from_str(&src.text).unwrap_or_else(|e| panic!("{}: not TOML: {e}", src.name));
        let rules = doc
            .get("rule")
            .and_then(|v| v.as_array())
            .unwrap_or_else(|| panic!("{}: no [[rule]]", src.name));
        for rule in rules {
            let id = rule.get("id").and_then(|v| v.as_str()).unwrap_or("?");
            for lang in ["en", "ja"] {
                let Some(t) = rule.get(lang) else { continue };
                let mut texts: Vec<(String, &str)> = Vec::new();
                for key in ["title", "advice"] {
                    if let Some(s) = t.get(key).and_then(|v| v.as_str()) {
                        texts.push((key.to_string(), s));
                    }
                }
                if let Some(steps) = t.get("steps").and_then(|v| v.as_array()) {
                    for (i, s) in steps.iter().enumerate() {
                        if let Some(s) = s.as_str() {
                            texts.push((format!("step {}", i + 1), s));
                        }
                    }
                }
                for (what, s) in texts {
                    if s != s.trim() || s.contains("  ") || s.contains('\n') {
                        problems.push(format!(
                            "{} {id} {lang} {what}: leading/trailing/double space or newline: {s:?}",
                            src.name
                        ));
                    }
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// A 4.x.x failure is still being retried: the reader must learn that nothing is lost yet.
/// Rules that stand for "nobody needs to act" (fix_by none) must say the same.
#[test]
fn temporary_failures_mention_the_retry() {
    let retry_en = Regex::new(r"(?i)retr").unwrap();
    let retry_ja = Regex::new(r"再送|再試行").unwrap();
    let mut p = Problems::default();
    let mut class4 = 0;
    for r in builtin().rules() {
        if !(class4_only(r) || r.fix_by == FixBy::None) {
            continue;
        }
        class4 += usize::from(class4_only(r));
        let why = if class4_only(r) {
            "class-4 rule"
        } else {
            "fix_by none rule"
        };
        p.check(retry_en.is_match(&all_text(&r.en)), r, || {
            format!("{why}: en text never mentions the retry")
        });
        p.check(retry_ja.is_match(&all_text(&r.ja)), r, || {
            format!("{why}: ja text never mentions 再送/再試行")
        });
    }
    assert!(
        class4 >= 80,
        "only {class4} class-4 rules found: selector change?"
    );
    p.assert_none("retry");
}

/// Vendor rules explain one provider's message: a short paragraph, the steps do the rest.
#[test]
fn vendor_advice_is_concise() {
    let mut p = Problems::default();
    for r in builtin().rules().iter().filter(|r| is_vendor(r)) {
        let en = en_sentences(&r.en.advice);
        let ja = r.ja.advice.matches('。').count();
        p.check((1..=3).contains(&en), r, || {
            format!("en advice has {en} sentences (want 1-3)")
        });
        p.check((1..=3).contains(&ja), r, || {
            format!("ja advice has {ja} sentences (want 1-3)")
        });
    }
    p.assert_none("vendor advice length");
}

#[test]
fn references_are_https_urls() {
    let mut p = Problems::default();
    for r in builtin().rules() {
        if let Some(u) = &r.reference {
            p.check(
                u.starts_with("https://") && !u.contains(char::is_whitespace),
                r,
                || format!("reference is not an https URL: {u}"),
            );
        }
    }
    p.assert_none("references");
}

// ---- alerting rules --------------------------------------------------------------------

/// `cause` label matchers in PromQL expressions: (operator, unescaped string).
fn cause_matchers(yaml: &str) -> Vec<(String, String)> {
    let re = Regex::new(r#"\bcause\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)""#).unwrap();
    re.captures_iter(yaml)
        .map(|c| {
            // PromQL string escapes: \\ -> \, \" -> ".
            let mut out = String::new();
            let mut chars = c[2].chars();
            while let Some(ch) = chars.next() {
                if ch == '\\' {
                    if let Some(n) = chars.next() {
                        out.push(n);
                    }
                } else {
                    out.push(ch);
                }
            }
            (c[1].to_string(), out)
        })
        .collect()
}

/// Index of the `)` closing the group that opens at `open`, skipping escaped characters.
fn closing_paren(p: &[char], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = open;
    while i < p.len() {
        match p[i] {
            '\\' => i += 1,
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Split on `|` outside groups and escapes.
fn split_alternatives(p: &[char]) -> Vec<String> {
    let (mut out, mut cur, mut depth, mut i) = (Vec::new(), String::new(), 0usize, 0);
    while i < p.len() {
        match p[i] {
            '\\' if i + 1 < p.len() => {
                cur.push('\\');
                cur.push(p[i + 1]);
                i += 1;
            }
            '(' => {
                depth += 1;
                cur.push('(');
            }
            ')' => {
                depth = depth.saturating_sub(1);
                cur.push(')');
            }
            '|' if depth == 0 => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
        i += 1;
    }
    out.push(cur);
    out
}

/// A regex with alternations, as the list of alternation-free regexes it stands for, so
/// that each alternative (each rule id the alert names) is checked on its own.
fn expand_alternatives(pattern: &str) -> Vec<String> {
    let p: Vec<char> = pattern.chars().collect();
    let top = split_alternatives(&p);
    if top.len() > 1 {
        return top.iter().flat_map(|a| expand_alternatives(a)).collect();
    }
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            '\\' => i += 1,
            '(' => {
                let Some(close) = closing_paren(&p, i) else {
                    return vec![pattern.to_string()];
                };
                let mut inner = &p[i + 1..close];
                if inner.starts_with(&['?', ':']) {
                    inner = &inner[2..];
                }
                let alts = split_alternatives(inner);
                if alts.len() > 1 {
                    let prefix: String = p[..i].iter().collect();
                    let suffix: String = p[close + 1..].iter().collect();
                    return alts
                        .iter()
                        .flat_map(|a| expand_alternatives(&format!("{prefix}{a}{suffix}")))
                        .collect();
                }
            }
            _ => {}
        }
        i += 1;
    }
    vec![pattern.to_string()]
}

#[test]
fn alternative_expansion_works() {
    assert_eq!(
        expand_alternatives(r"exo\.5\.7\.(511|606-649|1\.blocklist)"),
        [
            r"exo\.5\.7\.511",
            r"exo\.5\.7\.606-649",
            r"exo\.5\.7\.1\.blocklist"
        ]
    );
    assert_eq!(expand_alternatives(r"a(?:b|c)d|e"), ["abd", "acd", "e"]);
    let m = cause_matchers(r#"x{cause=~"exo\\.5\\.7\\.(705|750)", cause!="y"}"#);
    assert_eq!(
        m,
        [
            ("=~".to_string(), r"exo\.5\.7\.(705|750)".to_string()),
            ("!=".to_string(), "y".to_string())
        ]
    );
}

#[test]
fn alerting_rules_name_existing_causes() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("alerts/bouncelens.rules.yml");
    let Ok(yaml) = std::fs::read_to_string(&path) else {
        eprintln!("{} not present: nothing to check", path.display());
        return;
    };
    let ids: Vec<&str> = builtin().rules().iter().map(|r| r.id.as_str()).collect();
    let mut problems = Vec::new();
    let matchers = cause_matchers(&yaml);
    for (op, value) in &matchers {
        match op.as_str() {
            "=" | "!=" => {
                if !value.is_empty() && !ids.contains(&value.as_str()) {
                    problems.push(format!("cause{op}\"{value}\": no rule has this id"));
                }
            }
            _ => {
                for alt in expand_alternatives(value) {
                    // PromQL regex matchers are fully anchored.
                    let Ok(re) = Regex::new(&format!("^(?:{alt})$")) else {
                        problems.push(format!("cause{op}\"{value}\": bad regex {alt:?}"));
                        continue;
                    };
                    if !ids.iter().any(|id| re.is_match(id)) {
                        problems.push(format!(
                            "cause{op}\"{value}\": alternative {alt:?} matches no rule id"
                        ));
                    }
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{}: {}",
        path.display(),
        problems.join("\n")
    );
    eprintln!(
        "{}: {} cause matcher(s) resolve",
        path.display(),
        matchers.len()
    );
}
