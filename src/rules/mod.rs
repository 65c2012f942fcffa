//! Rule packs: load `rules/*.toml`, validate them, and answer "which rule explains this
//! failure?" quickly.
//!
//! Rules are data reviewed by mail admins (SPEC.md "Rule files"), so loading is strict:
//! unknown keys, bad codes, bad regexes, unknown reasons and ambiguous ties are refused
//! with `file:line`. A loaded [`RuleSet`] is immutable; the daemon swaps in a new one on
//! SIGHUP and keeps the old one if loading fails.
//!
//! ## Precedence
//! Every rule that matches gets a rank; the highest rank wins:
//! 1. rules with a content pattern (`text` on the diagnostic, `recipient` on the address)
//!    beat rules without (the server's words are more specific than its code, and many
//!    servers send the wrong code);
//! 2. then by how the status selector matched: exact > range (the narrower range first) >
//!    subject default (`X.Y.0`, `X.Y.*`) > class default (`X.0.0`, `X.*.*`) > no status
//!    selector;
//! 3. then rules with more selectors (`host`, `recipient`, `reply_code`, `command`) beat
//!    fewer;
//! 4. then `priority` (default 0), higher first.
//!
//! Two rules that could tie on all four are refused at load time when that can be known
//! statically (same selectors, or a shared text pattern). Text rules with *different*
//! patterns that both match one diagnostic are decided by the earliest match in the text,
//! then by load order; `explain` shows the runner-up so such overlaps are visible.
//!
//! ## Layers
//! Rules load in layers: the built-in packs, then each configured directory in order.
//! A rule whose `id` already exists in an earlier layer replaces it (local overrides);
//! a duplicate `id` within one layer is an error.

mod builtin;
mod schema;
pub mod selector;
mod text;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind, Result};
use crate::model::{Cause, FixBy, Lang, Reason, StatusCode};
pub use selector::{CodeTier, StatusSelector};
use text::PatternSet;

/// Where a rule was defined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: String,
    pub line: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// Title, advice and steps of a rule in one language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleText {
    pub title: String,
    pub advice: String,
    pub steps: Vec<String>,
}

/// One validated rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub origin: Origin,
    pub pack: Option<String>,
    pub status: Vec<StatusSelector>,
    pub text: Vec<String>,
    pub host: Vec<String>,
    /// Regexes on the failed recipient's address (e.g. Exchange's `IMCEAEX-` addresses).
    pub recipient: Vec<String>,
    pub reply_code: Vec<u16>,
    /// Upper-case SMTP verbs (`MAIL`, `RCPT`, `DATA`, ...).
    pub command: Vec<String>,
    pub priority: i32,
    pub reason: Reason,
    pub fix_by: FixBy,
    pub reference: Option<String>,
    pub en: RuleText,
    pub ja: RuleText,
}

impl Rule {
    pub fn text_for(&self, lang: Lang) -> &RuleText {
        match lang {
            Lang::En => &self.en,
            Lang::Ja => &self.ja,
        }
    }

    /// The `cause` object of a classify row.
    pub fn cause(&self, lang: Lang) -> Cause {
        let t = self.text_for(lang);
        Cause {
            id: self.id.clone(),
            title: t.title.clone(),
            fix_by: self.fix_by,
            advice: t.advice.clone(),
            reference: self.reference.clone(),
        }
    }

    fn has_content(&self) -> bool {
        !self.text.is_empty() || !self.recipient.is_empty()
    }

    fn extra_selectors(&self) -> u8 {
        u8::from(!self.host.is_empty())
            + u8::from(!self.recipient.is_empty())
            + u8::from(!self.reply_code.is_empty())
            + u8::from(!self.command.is_empty())
    }
}

/// What a failure looks like to the matcher.
#[derive(Debug, Clone, Copy, Default)]
pub struct MatchInput<'a> {
    pub status: Option<StatusCode>,
    pub reply_code: Option<u16>,
    /// The diagnostic text (whitespace-normalised by the caller).
    pub text: &'a str,
    /// Reporting and remote MTA names.
    pub hosts: &'a [&'a str],
    /// The failed recipient's address.
    pub recipient: Option<&'a str>,
    /// The SMTP command that failed, upper case.
    pub command: Option<&'a str>,
}

/// How a rule matched: comparable, higher is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rank {
    /// The rule has `text` or `recipient` patterns (and they matched).
    pub content: bool,
    pub code: CodeTier,
    /// Within [`CodeTier::Range`], narrower ranges rank higher.
    pub narrowness: u16,
    pub extra_selectors: u8,
    pub priority: i32,
}

/// A matching rule with its rank.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'r> {
    pub rule: &'r Rule,
    pub rank: Rank,
}

/// A rule file's name and contents (from disk or compiled into the binary).
#[derive(Debug, Clone)]
pub struct RuleSource {
    pub name: String,
    pub text: String,
    /// Its regexes are known to compile (the built-in packs, checked by the test
    /// suite), so loading does not compile them up front (see [`Regexes`]).
    pub trusted: bool,
}

impl RuleSource {
    /// Every `*.toml` in `dir`, sorted by file name.
    pub fn read_dir(dir: &Path) -> Result<Vec<RuleSource>> {
        let entries = std::fs::read_dir(dir)
            .map_err(|e| Error::io(ErrorKind::Rules, "cannot read rules directory", dir, e))?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        paths.sort();
        paths
            .into_iter()
            .map(|p| {
                let text = std::fs::read_to_string(&p)
                    .map_err(|e| Error::io(ErrorKind::Rules, "cannot read rule file", &p, e))?;
                Ok(RuleSource {
                    name: p.display().to_string(),
                    text,
                    trusted: false,
                })
            })
            .collect()
    }

    /// The packs shipped in `rules/`, compiled into the binary.
    pub fn builtin() -> Vec<RuleSource> {
        builtin::PACKS
            .iter()
            .map(|(name, text)| RuleSource {
                name: (*name).to_string(),
                text: (*text).to_string(),
                trusted: true,
            })
            .collect()
    }
}

/// A compiled, immutable rule set.
#[derive(Debug)]
pub struct RuleSet {
    rules: Vec<Rule>,
    text: PatternSet,
    host: PatternSet,
    recipient: PatternSet,
    /// Rules without text patterns, by exact status selector code.
    by_code: HashMap<StatusCode, Vec<usize>>,
    /// Rules without text patterns whose selectors are not all exact codes.
    other_untexted: Vec<usize>,
}

/// Line numbers of byte offsets in one source, from its line starts found once
/// (a rule file is read in one pass, not once per reported position).
struct Lines(Vec<usize>);

impl Lines {
    fn of(src: &str) -> Lines {
        Lines(
            src.bytes()
                .enumerate()
                .filter(|(_, b)| *b == b'\n')
                .map(|(i, _)| i)
                .collect(),
        )
    }

    /// 1-based line of `offset`.
    fn line(&self, offset: usize) -> usize {
        self.0.partition_point(|&nl| nl < offset) + 1
    }
}

/// The regex patterns of the untrusted files being loaded, with where each was
/// written: each is compiled once at load, so a bad pattern is reported with its file
/// and line before anything runs. (The rule set itself compiles a regex only when a
/// text first needs it: compiling costs far more than matching, and the built-in
/// packs' regexes, proven by the tests, would otherwise cost every start.)
#[derive(Default)]
struct Regexes {
    seen: HashSet<String>,
    /// Pattern, and the error to report if it does not compile.
    written: Vec<(String, Error)>,
}

impl Regexes {
    fn note(&mut self, pattern: &str, error: impl FnOnce() -> Error) {
        if !text::is_literal(pattern) && self.seen.insert(pattern.to_string()) {
            self.written.push((pattern.to_string(), error()));
        }
    }

    fn first_error(self) -> Option<Error> {
        self.written.into_iter().find_map(|(p, e)| {
            text::compile_one(&p)
                .err()
                .map(|why| Error::new(ErrorKind::Rules, format!("{e}: {why}")))
        })
    }
}

fn rules_error(file: &str, line: usize, msg: impl fmt::Display) -> Error {
    Error::new(ErrorKind::Rules, format!("{file}:{line}: {msg}"))
}

fn parse_source(src: &RuleSource, regexes: &mut Regexes) -> Result<Vec<Rule>> {
    let lines = Lines::of(&src.text);
    let raw: schema::RawFile = toml::from_str(&src.text).map_err(|e| {
        let line = e.span().map(|s| lines.line(s.start)).unwrap_or(1);
        rules_error(&src.name, line, e.message())
    })?;
    let pack = raw.pack.map(|p| p.name);
    let mut out = Vec::with_capacity(raw.rule.len());
    for spanned in raw.rule {
        let rule_line = lines.line(spanned.span().start);
        let r = spanned.into_inner();
        let at = |span: std::ops::Range<usize>| lines.line(span.start);
        let err = |line: usize, msg: String| rules_error(&src.name, line, msg);

        let id = r.id.get_ref().trim().to_string();
        if id.is_empty() || id.contains(char::is_whitespace) {
            return Err(err(
                at(r.id.span()),
                format!("rule id {id:?} must be non-empty with no spaces"),
            ));
        }
        let mut status = Vec::new();
        if let Some(s) = r.status {
            let line = at(s.span());
            for sel in s.into_inner().into_vec() {
                status.push(
                    StatusSelector::parse(&sel)
                        .map_err(|m| err(line, format!("rule {id}: {m}")))?,
                );
            }
        }
        let text = match r.text {
            Some(t) => {
                let line = at(t.span());
                let pats = t.into_inner().into_vec();
                for p in &pats {
                    if p.trim().is_empty() {
                        return Err(err(line, format!("rule {id}: empty text pattern")));
                    }
                    regexes.note(p, || {
                        err(line, format!("rule {id}: bad text pattern {p:?}"))
                    });
                }
                pats
            }
            None => Vec::new(),
        };
        let mut patterns = |key: Option<toml::Spanned<schema::OneOrMany<String>>>,
                            what: &str|
         -> Result<Vec<String>> {
            let Some(k) = key else { return Ok(Vec::new()) };
            let line = at(k.span());
            let pats = k.into_inner().into_vec();
            for p in &pats {
                regexes.note(p, || {
                    err(line, format!("rule {id}: bad {what} pattern {p:?}"))
                });
            }
            Ok(pats)
        };
        let host = patterns(r.host, "host")?;
        let recipient = patterns(r.recipient, "recipient")?;
        let reply_code = match r.reply_code {
            Some(c) => {
                let line = at(c.span());
                let codes = c.into_inner().into_vec();
                if let Some(bad) = codes.iter().find(|c| !(200..600).contains(*c)) {
                    return Err(err(
                        line,
                        format!("rule {id}: reply_code {bad} is not an SMTP reply code"),
                    ));
                }
                codes
            }
            None => Vec::new(),
        };
        let command = r
            .command
            .map(|c| {
                c.into_inner()
                    .into_vec()
                    .into_iter()
                    .map(|v| v.to_ascii_uppercase())
                    .collect()
            })
            .unwrap_or_default();
        let reason: Reason = r
            .reason
            .get_ref()
            .parse()
            .map_err(|m: String| err(at(r.reason.span()), format!("rule {id}: {m}")))?;
        let fix_by: FixBy = serde::Deserialize::deserialize(serde::de::value::StrDeserializer::<
            serde::de::value::Error,
        >::new(r.fix_by.get_ref()))
        .map_err(|_| {
            err(
                at(r.fix_by.span()),
                format!(
                    "rule {id}: fix_by {:?} must be one of sender, sender_admin, recipient, recipient_admin, none",
                    r.fix_by.get_ref()
                ),
            )
        })?;
        let texts = |t: toml::Spanned<schema::RawText>, lang: &str| -> Result<RuleText> {
            let line = at(t.span());
            let t = t.into_inner();
            if t.title.trim().is_empty() || t.advice.trim().is_empty() {
                return Err(err(
                    line,
                    format!("rule {id}: {lang}.title and {lang}.advice must not be empty"),
                ));
            }
            Ok(RuleText {
                title: t.title.trim().to_string(),
                advice: t.advice.trim().to_string(),
                steps: t.steps.into_iter().map(|s| s.trim().to_string()).collect(),
            })
        };
        let en = texts(r.en, "en")?;
        let ja = texts(r.ja, "ja")?;
        out.push(Rule {
            id,
            origin: Origin {
                file: src.name.clone(),
                line: rule_line,
            },
            pack: pack.clone(),
            status,
            text,
            host,
            recipient,
            reply_code,
            command,
            priority: r.priority,
            reason,
            fix_by,
            reference: r.reference,
            en,
            ja,
        });
    }
    Ok(out)
}

/// What two rules must share to tie at all (the first test of [`static_tie`]).
fn rank_shape(r: &Rule) -> (bool, i32, u8) {
    (r.has_content(), r.priority, r.extra_selectors())
}

/// Whether two rules could both match one failure with equal rank, known statically:
/// same rank-relevant shape, overlapping status selectors of equal tier and width, and
/// for every pattern selector either both absent or a pattern in common.
fn static_tie(a: &Rule, b: &Rule) -> bool {
    if rank_shape(a) != rank_shape(b) {
        return false;
    }
    let status_overlap = match (a.status.is_empty(), b.status.is_empty()) {
        (true, true) => true,
        (false, false) => a.status.iter().any(|x| {
            b.status
                .iter()
                .any(|y| x.width() == y.width() && x.same_tier_overlap(y))
        }),
        _ => false,
    };
    fn overlap<T: PartialEq>(x: &[T], y: &[T], eq: impl Fn(&T, &T) -> bool) -> bool {
        x.is_empty() == y.is_empty()
            && (x.is_empty() || x.iter().any(|p| y.iter().any(|q| eq(p, q))))
    }
    let same_pattern = |p: &String, q: &String| p.eq_ignore_ascii_case(q);
    status_overlap
        && overlap(&a.reply_code, &b.reply_code, |p, q| p == q)
        && overlap(&a.command, &b.command, |p, q| p == q)
        && overlap(&a.host, &b.host, same_pattern)
        && overlap(&a.recipient, &b.recipient, same_pattern)
        && overlap(&a.text, &b.text, same_pattern)
}

impl RuleSet {
    /// Loads layers of rule sources (see the module docs on layers and precedence).
    pub fn load(layers: &[Vec<RuleSource>]) -> Result<RuleSet> {
        let mut rules: Vec<Rule> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut regexes = Regexes::default();
        let mut trusted = Regexes::default();
        for layer in layers {
            let mut seen_in_layer: HashMap<String, Origin> = HashMap::new();
            for src in layer {
                let noted = if src.trusted {
                    &mut trusted
                } else {
                    &mut regexes
                };
                for rule in parse_source(src, noted)? {
                    if let Some(first) = seen_in_layer.get(&rule.id) {
                        return Err(rules_error(
                            &rule.origin.file,
                            rule.origin.line,
                            format!("duplicate rule id {} (first defined at {first})", rule.id),
                        ));
                    }
                    seen_in_layer.insert(rule.id.clone(), rule.origin.clone());
                    match index.get(&rule.id) {
                        Some(&i) => rules[i] = rule,
                        None => {
                            index.insert(rule.id.clone(), rules.len());
                            rules.push(rule);
                        }
                    }
                }
            }
        }
        if let Some(e) = regexes.first_error() {
            return Err(e);
        }
        Self::compile(rules)
    }

    /// The built-in packs only.
    pub fn builtin() -> Result<RuleSet> {
        Self::load(&[RuleSource::builtin()])
    }

    /// Built-in packs (if `builtin`), then each directory as its own layer.
    pub fn from_config(builtin: bool, dirs: &[PathBuf]) -> Result<RuleSet> {
        let mut layers = Vec::new();
        if builtin {
            layers.push(RuleSource::builtin());
        }
        for d in dirs {
            layers.push(RuleSource::read_dir(d)?);
        }
        Self::load(&layers)
    }

    fn compile(rules: Vec<Rule>) -> Result<RuleSet> {
        // Refuse ties that can be known statically. Only rules of the same rank shape
        // can tie (see `static_tie`), so each rule is compared with the later rules of
        // its shape only: the same pairs fail, found in the same order, as comparing
        // every pair (quadratic) would.
        let mut by_shape: HashMap<(bool, i32, u8), Vec<usize>> = HashMap::new();
        for (i, r) in rules.iter().enumerate() {
            by_shape.entry(rank_shape(r)).or_default().push(i);
        }
        for (i, a) in rules.iter().enumerate() {
            let same_shape = &by_shape[&rank_shape(a)];
            let later = &same_shape[same_shape.partition_point(|&j| j <= i)..];
            for b in later.iter().map(|&j| &rules[j]) {
                if static_tie(a, b) {
                    return Err(rules_error(
                        &b.origin.file,
                        b.origin.line,
                        format!(
                            "rule {} ties with rule {} at {}: both match the same failures equally \
                             specifically; make one more specific or give one a higher priority",
                            b.id, a.id, a.origin
                        ),
                    ));
                }
            }
        }
        let mut text_patterns = Vec::new();
        let mut host_patterns = Vec::new();
        let mut recipient_patterns = Vec::new();
        let mut by_code: HashMap<StatusCode, Vec<usize>> = HashMap::new();
        let mut other_untexted = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            text_patterns.extend(r.text.iter().map(|p| (i, p.clone())));
            host_patterns.extend(r.host.iter().map(|p| (i, p.clone())));
            recipient_patterns.extend(r.recipient.iter().map(|p| (i, p.clone())));
            if r.text.is_empty() {
                let all_exact = !r.status.is_empty()
                    && r.status
                        .iter()
                        .all(|s| matches!(s, StatusSelector::Exact(_)));
                if all_exact {
                    for s in &r.status {
                        if let StatusSelector::Exact(c) = s {
                            by_code.entry(*c).or_default().push(i);
                        }
                    }
                } else {
                    other_untexted.push(i);
                }
            }
        }
        let compile = |patterns: &[(usize, String)], what: &str| {
            PatternSet::build(patterns).map_err(|e| {
                Error::new(
                    ErrorKind::Rules,
                    format!("cannot compile {what} patterns: {e}"),
                )
            })
        };
        let text = compile(&text_patterns, "text")?;
        let host = compile(&host_patterns, "host")?;
        let recipient = compile(&recipient_patterns, "recipient")?;
        Ok(RuleSet {
            rules,
            text,
            host,
            recipient,
            by_code,
            other_untexted,
        })
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn get(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.id == id)
    }

    /// The best rule for `input`, if any rule matches.
    pub fn resolve(&self, input: &MatchInput<'_>) -> Option<&Rule> {
        self.candidates(input).into_iter().next().map(|c| c.rule)
    }

    /// Every matching rule, best first.
    pub fn candidates(&self, input: &MatchInput<'_>) -> Vec<Candidate<'_>> {
        // Text hits as (rule, earliest phrase offset), one per rule, by rule index:
        // the offset breaks ties between equally ranked text rules.
        let mut text_hits = Vec::new();
        if !input.text.is_empty() {
            self.text.matches(input.text, &mut text_hits);
        }
        let text_hits = first_per_owner(text_hits);
        let text_at = |i: usize| match text_hits.binary_search_by_key(&i, |h| h.0) {
            Ok(k) => text_hits[k].1,
            Err(_) => usize::MAX,
        };
        let mut host_hit: Option<Vec<(usize, usize)>> = None;
        let mut recipient_hit: Option<Vec<(usize, usize)>> = None;

        let mut consider: Vec<usize> = text_hits.iter().map(|h| h.0).collect();
        if let Some(code) = input.status {
            for key in [
                code,
                StatusCode::new(code.class, code.subject, 0),
                StatusCode::new(code.class, 0, 0),
            ] {
                if let Some(v) = self.by_code.get(&key) {
                    consider.extend(v);
                }
            }
        }
        consider.extend(&self.other_untexted);
        consider.sort_unstable();
        consider.dedup();

        let mut out: Vec<(Candidate<'_>, usize)> = Vec::new();
        for i in consider {
            let rule = &self.rules[i];
            let (code_tier, narrowness) = if rule.status.is_empty() {
                (CodeTier::Unconstrained, 0)
            } else {
                let Some(code) = input.status else { continue };
                let best = rule
                    .status
                    .iter()
                    .filter_map(|s| s.tier_for(code).map(|t| (t, u16::MAX - s.width())))
                    .max();
                match best {
                    Some(b) => b,
                    None => continue,
                }
            };
            if !rule.reply_code.is_empty()
                && !input
                    .reply_code
                    .is_some_and(|c| rule.reply_code.contains(&c))
            {
                continue;
            }
            if !rule.command.is_empty()
                && !input
                    .command
                    .is_some_and(|c| rule.command.iter().any(|x| x.eq_ignore_ascii_case(c)))
            {
                continue;
            }
            if !rule.host.is_empty() {
                let hits = host_hit.get_or_insert_with(|| {
                    let mut h = Vec::new();
                    for host in input.hosts {
                        self.host.matches(host, &mut h);
                    }
                    first_per_owner(h)
                });
                if hits.binary_search_by_key(&i, |h| h.0).is_err() {
                    continue;
                }
            }
            if !rule.recipient.is_empty() {
                let hits = recipient_hit.get_or_insert_with(|| {
                    let mut h = Vec::new();
                    if let Some(r) = input.recipient {
                        self.recipient.matches(r, &mut h);
                    }
                    first_per_owner(h)
                });
                if hits.binary_search_by_key(&i, |h| h.0).is_err() {
                    continue;
                }
            }
            if rule.status.is_empty() && rule.text.is_empty() && rule.extra_selectors() == 0 {
                continue; // a rule with no selectors at all matches nothing
            }
            let rank = Rank {
                content: rule.has_content(),
                code: code_tier,
                narrowness,
                extra_selectors: rule.extra_selectors(),
                priority: rule.priority,
            };
            out.push((Candidate { rule, rank }, i));
        }
        // Best rank first; equal-ranked text rules by earliest match, then load order.
        // Regex patterns are located only for text rules (phrases were located by the
        // matching pass), once per rule rather than once per comparison.
        // Only candidates that tie with another need it (rare), so the regexes are
        // compiled and run only then.
        let mut located: Vec<(Candidate<'_>, usize, usize)> = Vec::with_capacity(out.len());
        for (k, &(c, i)) in out.iter().enumerate() {
            let mut at = text_at(i);
            let tied = c.rank.content
                && out
                    .iter()
                    .enumerate()
                    .any(|(l, (d, _))| l != k && d.rank == c.rank);
            if tied && !c.rule.text.is_empty() {
                if let Some(r) = self.text.first_regex_offset(i, input.text) {
                    at = at.min(r);
                }
            }
            located.push((c, i, at));
        }
        located.sort_by(|(a, ia, at_a), (b, ib, at_b)| {
            b.rank.cmp(&a.rank).then_with(|| {
                if a.rank.content {
                    at_a.cmp(at_b).then(ia.cmp(ib))
                } else {
                    ia.cmp(ib)
                }
            })
        });
        located.into_iter().map(|(c, _, _)| c).collect()
    }
}

/// `(owner, offset)` hits reduced to one per owner (its earliest offset), sorted by
/// owner for binary search.
fn first_per_owner(mut hits: Vec<(usize, usize)>) -> Vec<(usize, usize)> {
    hits.sort_unstable();
    hits.dedup_by_key(|h| h.0);
    hits
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<RuleSet> {
        RuleSet::load(&[vec![RuleSource {
            name: "t.toml".into(),
            text: text.into(),
            trusted: false,
        }]])
    }

    const T: &str = r#"en = { title = "t", advice = "a" }
ja = { title = "t", advice = "a" }
"#;

    fn rule(id: &str, body: &str) -> String {
        format!("[[rule]]\nid = \"{id}\"\n{body}\nfix_by = \"sender\"\n{T}\n")
    }

    fn input(status: &str, text: &'static str) -> MatchInput<'static> {
        MatchInput {
            status: status.parse().ok(),
            text,
            ..Default::default()
        }
    }

    #[test]
    fn precedence_text_then_exact_then_range_then_default() {
        let set = load(
            &[
                rule("cls", "status = \"5.0.0\"\nreason = \"undefined\""),
                rule("sub", "status = \"5.7.0\"\nreason = \"securityerror\""),
                rule("rng", "status = \"5.7.500-699\"\nreason = \"blocked\""),
                rule("ex", "status = \"5.7.509\"\nreason = \"authfailure\""),
                rule(
                    "txt",
                    "status = \"5.7.509\"\ntext = [\"dmarc\"]\nreason = \"policyviolation\"",
                ),
            ]
            .concat(),
        )
        .unwrap();
        let id = |s, t| set.resolve(&input(s, t)).map(|r| r.id.as_str());
        assert_eq!(id("5.7.509", "550 5.7.509 DMARC fail"), Some("txt"));
        assert_eq!(id("5.7.509", "nothing"), Some("ex"));
        assert_eq!(id("5.7.510", ""), Some("rng"));
        assert_eq!(id("5.7.1", ""), Some("sub"));
        assert_eq!(id("5.1.1", ""), Some("cls"));
        assert_eq!(id("4.1.1", ""), None);
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = load(&format!(
            "\n\n{}",
            rule("a", "status = \"5.9\"\nreason = \"blocked\"")
        ))
        .unwrap_err();
        assert!(e.to_string().starts_with("t.toml:5:"), "{e}");
        let e = load(&rule("a", "reason = \"nope\"\nstatus = \"5.1.1\"")).unwrap_err();
        assert!(e.to_string().contains("unknown reason"), "{e}");
        let e = load(&rule(
            "a",
            "status = \"5.1.1\"\nreason = \"blocked\"\ncolour = 1",
        ))
        .unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
        let e = load(&rule("a", "text = [\"(unclosed\"]\nreason = \"blocked\"")).unwrap_err();
        assert!(e.to_string().starts_with("t.toml:3:"), "{e}");
    }

    #[test]
    fn static_ties_are_refused() {
        let e = load(
            &[
                rule("a", "status = \"5.7.500-599\"\nreason = \"blocked\""),
                rule("b", "status = \"5.7.550-649\"\nreason = \"spamdetected\""),
            ]
            .concat(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("ties with rule a"), "{e}");
        // Same pattern under the same code: a tie.
        assert!(load(
            &[
                rule(
                    "a",
                    "status = \"5.1.1\"\ntext = [\"Unknown\"]\nreason = \"userunknown\""
                ),
                rule(
                    "b",
                    "status = \"5.1.1\"\ntext = [\"unknown\", \"x\"]\nreason = \"blocked\""
                ),
            ]
            .concat()
        )
        .is_err());
        // A priority resolves it.
        assert!(load(
            &[
                rule("a", "status = \"5.7.500-599\"\nreason = \"blocked\""),
                rule(
                    "b",
                    "status = \"5.7.550-649\"\npriority = 1\nreason = \"spamdetected\""
                ),
            ]
            .concat()
        )
        .is_ok());
    }

    #[test]
    fn later_layer_replaces_rule_with_same_id() {
        let base = vec![RuleSource {
            name: "base.toml".into(),
            text: rule("x", "status = \"5.1.1\"\nreason = \"userunknown\""),
            trusted: false,
        }];
        let local = vec![RuleSource {
            name: "local.toml".into(),
            text: rule("x", "status = \"5.1.1\"\nreason = \"suspend\""),
            trusted: false,
        }];
        let set = RuleSet::load(&[base.clone(), local]).unwrap();
        assert_eq!(set.len(), 1);
        assert_eq!(
            set.resolve(&input("5.1.1", "")).unwrap().reason,
            Reason::Suspend
        );
        let dup = RuleSet::load(&[[base.clone(), base].concat()]).unwrap_err();
        assert!(dup.to_string().contains("duplicate rule id x"), "{dup}");
    }

    #[test]
    fn equal_text_rules_pick_the_earliest_phrase() {
        let set = load(
            &[
                rule(
                    "full",
                    "text = [\"mailbox full\"]\nreason = \"mailboxfull\"",
                ),
                rule("unk", "text = [\"user unknown\"]\nreason = \"userunknown\""),
            ]
            .concat(),
        )
        .unwrap();
        let r = set
            .resolve(&input("", "user unknown (mailbox full?)"))
            .unwrap();
        assert_eq!(r.id, "unk");
    }

    #[test]
    fn host_and_reply_code_selectors_must_match() {
        let set = load(
            &[
                rule(
                    "g",
                    "text = [\"blocked\"]\nhost = ['google\\.com$']\nreason = \"blocked\"",
                ),
                rule("r", "reply_code = [421]\nreason = \"toomanyconn\""),
            ]
            .concat(),
        )
        .unwrap();
        let hosts = ["mx.google.com"];
        let mut i = input("", "you are blocked");
        assert!(set.resolve(&i).is_none());
        i.hosts = &hosts;
        assert_eq!(set.resolve(&i).unwrap().id, "g");
        i.reply_code = Some(421);
        i.text = "";
        assert_eq!(set.resolve(&i).unwrap().id, "r");
    }

    #[test]
    fn narrower_range_beats_wider_without_priority() {
        let set = load(
            &[
                rule("wide", "status = \"5.7.0-999\"\nreason = \"securityerror\""),
                rule("mid", "status = \"5.7.500-699\"\nreason = \"blocked\""),
                rule("narrow", "status = \"5.7.606-649\"\nreason = \"blocked\""),
            ]
            .concat(),
        )
        .unwrap();
        let id = |s| set.resolve(&input(s, "")).map(|r| r.id.as_str());
        assert_eq!(id("5.7.610"), Some("narrow"));
        assert_eq!(id("5.7.650"), Some("mid"));
        assert_eq!(id("5.7.12"), Some("wide"));
    }

    #[test]
    fn recipient_selector_beats_plain_text_rule() {
        let set = load(
            &[
                rule(
                    "nf",
                    "status = \"5.1.1\"\ntext = [\"RecipNotFound\"]\nreason = \"userunknown\"",
                ),
                rule(
                    "stale",
                    "status = \"5.1.1\"\nrecipient = ['^IMCEAEX-']\nreason = \"userunknown\"",
                ),
            ]
            .concat(),
        )
        .unwrap();
        let mut i = input("5.1.1", "550 5.1.1 RESOLVER.ADR.RecipNotFound; not found");
        assert_eq!(set.resolve(&i).unwrap().id, "nf");
        i.recipient = Some("IMCEAEX-_o=ExchangeLabs_ou=x@eurprd.prod.outlook.com");
        assert_eq!(set.resolve(&i).unwrap().id, "stale");
    }

    #[test]
    fn builtin_packs_load() {
        RuleSet::builtin().unwrap();
        // Built-in regexes are trusted to compile (see `Regexes`): prove it.
        for rule in RuleSet::builtin().unwrap().rules() {
            for p in rule.text.iter().chain(&rule.host).chain(&rule.recipient) {
                if !text::is_literal(p) {
                    text::compile_one(p).unwrap_or_else(|e| panic!("{}: {p}: {e}", rule.id));
                }
            }
        }
    }
}
