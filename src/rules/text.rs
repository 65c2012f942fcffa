//! One pass over a diagnostic text that reports every rule whose text pattern matches.
//!
//! Rule files hold hundreds of patterns; trying each as its own regex per message
//! would dominate classification time. Plain phrases (the large majority, including
//! patterns whose only syntax is escaped punctuation) go into one [`PhraseSet`], so a
//! message costs one scan whatever the number of rules. The few real regexes are
//! gated by that same scan: each one's required phrases (literals it cannot match
//! without, see [`required_phrases`]) join the set, and a regex
//! only runs on a text that holds all of them (most texts hold none).

use std::collections::HashMap;
use std::sync::OnceLock;

use regex::{Regex, RegexBuilder};

use crate::phrases::PhraseSet;

/// A compiled set of case-insensitive patterns, each tagged with an owner (a rule index).
#[derive(Debug, Default)]
pub struct PatternSet {
    literals: PhraseSet,
    literal_owner: Vec<Vec<usize>>,
    /// Per phrase: its gate number if some regex requires it (see the module doc).
    gate_of: Vec<Option<usize>>,
    /// Per regex: the gates it requires (none: it always runs).
    regex_gates: Vec<Vec<usize>>,
    /// The distinct regexes, each run on its own when its gates are open (they are
    /// few, and each has its own literal prefilter). Compiled on first use: building
    /// a regex costs far more than matching it, and some never open. (Patterns were
    /// validated when the rule files were loaded.)
    regexes: Vec<(String, OnceLock<Option<Regex>>)>,
    regex_owner: Vec<Vec<usize>>,
}

/// True if `pattern` has no regex syntax and can be matched as a plain phrase.
pub fn is_literal(pattern: &str) -> bool {
    !pattern.contains(|c: char| "\\.+*?()|[]{}^$".contains(c))
}

/// The phrase a pattern spells when its only regex syntax is escaped punctuation
/// (`RESOLVER\.RST\.NotAuthorized`, `AS345\)`): matched as that phrase, in the one
/// Aho-Corasick pass, instead of by the regex engine.
pub fn as_phrase(pattern: &str) -> Option<std::borrow::Cow<'_, str>> {
    if is_literal(pattern) {
        return Some(std::borrow::Cow::Borrowed(pattern));
    }
    let mut out = String::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e) if e.is_ascii_punctuation() => out.push(e),
                _ => return None,
            },
            c if "\\.+*?()|[]{}^$".contains(c) => return None,
            c => out.push(c),
        }
    }
    Some(std::borrow::Cow::Owned(out))
}

/// Compiles one regex pattern the way rules use it (case-insensitive).
pub fn compile_one(pattern: &str) -> Result<Regex, regex::Error> {
    RegexBuilder::new(pattern)
        .case_insensitive(true)
        .size_limit(1 << 20)
        .build()
}

/// Plain phrases (ASCII, lower case) that every match of the regex `pattern`
/// contains, if they can be read off it safely: the runs of literal characters at
/// the top level, outside groups and classes, none of them optional. `None` when
/// the pattern has a top-level alternation, inline flags, or syntax this reading does
/// not know (the regex then always runs).
pub fn required_phrases(pattern: &str) -> Option<Vec<String>> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut best = Vec::new();
    let mut run = String::new();
    // Runs shorter than three characters would open the gate on nearly any text.
    let flush = |run: &mut String, best: &mut Vec<String>| {
        if run.len() >= 3 && run.is_ascii() {
            best.push(run.to_ascii_lowercase());
        }
        run.clear();
    };
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        match c {
            '\\' => {
                let e = *chars.get(i + 1)?;
                if e.is_ascii_punctuation() {
                    run.push(e);
                } else if "sSdDwWbBAz".contains(e) {
                    flush(&mut run, &mut best);
                } else {
                    return None;
                }
                i += 2;
            }
            '(' => {
                // A group: skipped whole. Inline flags ("(?i)", "(?x)") change how
                // what follows reads: give up.
                let end = group_end(&chars, i)?;
                if chars.get(i + 1) == Some(&'?') && !chars[i..end].contains(&':') {
                    return None;
                }
                flush(&mut run, &mut best);
                i = end + 1;
            }
            '[' => {
                i = class_end(&chars, i)? + 1;
                flush(&mut run, &mut best);
            }
            '?' | '*' => {
                // The atom before is optional.
                run.pop();
                flush(&mut run, &mut best);
                i += 1;
            }
            '+' => {
                flush(&mut run, &mut best);
                i += 1;
            }
            '{' => {
                let close = i + chars[i..].iter().position(|&c| c == '}')?;
                let spec: String = chars[i + 1..close].iter().collect();
                let min = spec.split(',').next()?.trim();
                if min.is_empty() || !min.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                if min.bytes().all(|b| b == b'0') {
                    run.pop();
                }
                flush(&mut run, &mut best);
                i = close + 1;
            }
            '.' | '^' | '$' => {
                flush(&mut run, &mut best);
                i += 1;
            }
            '|' | ')' | ']' | '}' => return None,
            c => {
                run.push(c);
                i += 1;
            }
        }
    }
    flush(&mut run, &mut best);
    (!best.is_empty()).then_some(best)
}

/// Index of the `)` closing the group opened at `chars[open]`.
fn group_end(chars: &[char], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = open;
    while let Some(&c) = chars.get(i) {
        match c {
            '\\' => i += 1,
            '[' => i = class_end(chars, i)?,
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

/// Index of the `]` closing the class opened at `chars[open]` (a `]` first in the
/// class, or after `^`, is a member).
fn class_end(chars: &[char], open: usize) -> Option<usize> {
    let mut i = open + 1;
    if chars.get(i) == Some(&'^') {
        i += 1;
    }
    if chars.get(i) == Some(&']') {
        i += 1;
    }
    while let Some(&c) = chars.get(i) {
        match c {
            '\\' => i += 1,
            '[' if chars.get(i + 1) == Some(&':') => {
                // A POSIX class ("[:alpha:]") inside the class.
                i += 2 + chars[i + 2..].iter().position(|&c| c == ']')?;
            }
            ']' => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

impl PatternSet {
    /// Builds the set from `(owner, pattern)` pairs. Regex patterns must already have
    /// been validated with [`compile_one`] (a pattern that does not compile matches
    /// nothing).
    pub fn build(patterns: &[(usize, String)]) -> Result<PatternSet, String> {
        let mut lit: Vec<String> = Vec::new();
        let mut literal_owner: Vec<Vec<usize>> = Vec::new();
        let mut re: Vec<String> = Vec::new();
        let mut regex_owner: Vec<Vec<usize>> = Vec::new();
        // Rules share patterns (every rule of a provider lists its hosts): each
        // distinct pattern is compiled once and reports all its owners.
        let mut index: HashMap<(bool, String), usize> = HashMap::new();
        let mut gate_phrases: Vec<Vec<String>> = Vec::new();
        for (owner, p) in patterns {
            let phrase = as_phrase(p);
            let literal = phrase.is_some();
            let (list, owners) = if literal {
                (&mut lit, &mut literal_owner)
            } else {
                (&mut re, &mut regex_owner)
            };
            let text = phrase.unwrap_or(std::borrow::Cow::Borrowed(p.as_str()));
            let at = *index
                .entry((literal, text.to_ascii_lowercase()))
                .or_insert_with(|| {
                    list.push(text.into_owned());
                    owners.push(Vec::new());
                    list.len() - 1
                });
            owners[at].push(*owner);
            // A new distinct regex (`owners` has one entry per regex).
            if !literal && owners.len() > gate_phrases.len() {
                gate_phrases.push(required_phrases(p).unwrap_or_default());
            }
        }
        let mut gate_of: Vec<Option<usize>> = vec![None; lit.len()];
        let mut gates = 0;
        let regex_gates = gate_phrases
            .into_iter()
            .map(|phrases| {
                phrases
                    .into_iter()
                    .map(|phrase| {
                        let at = *index.entry((true, phrase.clone())).or_insert_with(|| {
                            lit.push(phrase);
                            literal_owner.push(Vec::new());
                            gate_of.push(None);
                            lit.len() - 1
                        });
                        *gate_of[at].get_or_insert_with(|| {
                            gates += 1;
                            gates - 1
                        })
                    })
                    .collect()
            })
            .collect();
        let literals = PhraseSet::new(&lit);
        let regexes = re.into_iter().map(|p| (p, OnceLock::new())).collect();
        Ok(PatternSet {
            literals,
            literal_owner,
            gate_of,
            regex_gates,
            regexes,
            regex_owner,
        })
    }

    /// Every owner with a pattern matching `text`, appended to `hits` with the
    /// earliest offset where one of its plain phrases matched (`usize::MAX` if only a
    /// regex did); unsorted, an owner may appear more than once. (The phrase pass
    /// locates phrases for free, for tie-breaks by position.)
    pub fn matches(&self, text: &str, hits: &mut Vec<(usize, usize)>) {
        let mut seen_gates: Vec<usize> = Vec::new();
        self.literals.for_each_match(text.as_bytes(), |m| {
            seen_gates.extend(self.gate_of[m.phrase]);
            hits.extend(self.literal_owner[m.phrase].iter().map(|&o| (o, m.start)));
        });
        for (i, gates) in self.regex_gates.iter().enumerate() {
            let open = gates.iter().all(|g| seen_gates.contains(g));
            if open && self.regex(i).is_some_and(|re| re.is_match(text)) {
                hits.extend(self.regex_owner[i].iter().map(|&o| (o, usize::MAX)));
            }
        }
    }

    /// The `i`th distinct regex, compiled on first use.
    fn regex(&self, i: usize) -> Option<&Regex> {
        let (pattern, compiled) = &self.regexes[i];
        compiled.get_or_init(|| compile_one(pattern).ok()).as_ref()
    }

    /// Byte offset of the earliest match of any of `owner`'s regex patterns in `text`
    /// (plain phrases are located by [`Self::matches`]).
    pub fn first_regex_offset(&self, owner: usize, text: &str) -> Option<usize> {
        (0..self.regexes.len())
            .filter(|&i| self.regex_owner[i].contains(&owner))
            .filter_map(|i| self.regex(i)?.find(text).map(|m| m.start()))
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_and_regexes_both_report_owners() {
        let set = PatternSet::build(&[
            (0, "mailbox full".into()),
            (1, r"quota\s+exceeded".into()),
            (2, "ユーザが存在しません".into()),
        ])
        .unwrap();
        let owners = |text: &str| {
            let mut hits = Vec::new();
            set.matches(text, &mut hits);
            let mut o: Vec<usize> = hits.into_iter().map(|(o, _)| o).collect();
            o.sort_unstable();
            o.dedup();
            o
        };
        assert_eq!(owners("552 MAILBOX FULL: quota   exceeded"), [0, 1]);
        assert_eq!(owners("quota exceeded"), [1]);
        assert_eq!(owners("指定されたユーザが存在しません"), [2]);
        assert_eq!(set.first_regex_offset(1, "x quota exceeded"), Some(2));
        assert_eq!(
            as_phrase(r"RESOLVER\.RST\.x").as_deref(),
            Some("RESOLVER.RST.x")
        );
        assert_eq!(as_phrase(r"a\sb"), None);
        assert_eq!(as_phrase("a.b"), None);
        let mut hits = Vec::new();
        set.matches("a mailbox full", &mut hits);
        assert_eq!(hits, [(0, 2)]);
    }

    #[test]
    fn required_phrases_of_regexes() {
        let req = |p: &str| required_phrases(p);
        assert_eq!(req(r"quota\s+exceeded").unwrap(), ["quota", "exceeded"]);
        assert_eq!(
            req(r"RESOLVER\.ADR\.Recip(ient)?NotFound").unwrap(),
            ["resolver.adr.recip", "notfound"]
        );
        assert_eq!(
            req(r"doesn't have an? \S+ account").unwrap(),
            ["doesn't have a", " account"]
        );
        assert_eq!(
            req(r"blocked using Block ?list 1").unwrap(),
            ["blocked using block", "list 1"]
        );
        assert_eq!(req(r"aup#[a-z]*-?(?:1090)(?-u:\b)").unwrap(), ["aup#"]);
        assert_eq!(req(r"(?-u:\b)spam(?-u:\b)").unwrap(), ["spam"]);
        assert_eq!(req(r"^x-unix;").unwrap(), ["x-unix;"]);
        assert_eq!(req(r"a{0,3}bcd").unwrap(), ["bcd"]);
        assert_eq!(req(r"ab+"), None);
        assert_eq!(req(r"foo|barbaz"), None);
        assert_eq!(req(r"(?i)foo"), None);
        assert_eq!(req(r"\x41bc"), None);
        assert_eq!(req(r"[a-z]+"), None);
        // Gated regexes still match; an absent phrase skips them.
        let set = PatternSet::build(&[(0, r"delivery failed \d+ attempts".into())]).unwrap();
        let mut hits = Vec::new();
        set.matches("Delivery failed 3 attempts", &mut hits);
        assert_eq!(hits, [(0, usize::MAX)]);
        hits.clear();
        set.matches("delivered", &mut hits);
        assert!(hits.is_empty());
    }
}
