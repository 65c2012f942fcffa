//! One pass over a diagnostic text that reports every rule whose text pattern matches.
//!
//! Rule files hold hundreds of patterns; trying each as its own regex per message
//! would dominate classification time. Plain phrases (the large majority) go into one
//! Aho-Corasick automaton, the rest into one `RegexSet`, so a message costs two scans
//! whatever the number of rules.

use std::sync::OnceLock;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use regex::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};

/// A compiled set of case-insensitive patterns, each tagged with an owner (a rule index).
#[derive(Debug, Default)]
pub struct PatternSet {
    literals: Option<AhoCorasick>,
    literal_owner: Vec<usize>,
    regexes: Option<RegexSet>,
    regex_owner: Vec<usize>,
    /// The non-literal patterns again as standalone regexes, by owner, to find *where*
    /// a rule matched when two equally specific rules need a tie-break (rare). Literal
    /// positions come from the automaton itself. Only a few patterns are regexes, which
    /// matters: a case-insensitive Unicode regex costs about a millisecond to compile,
    /// and rule loading is on the start-up path of every `classify` run.
    positional: Vec<(usize, String, OnceLock<Regex>)>,
}

/// True if `pattern` has no regex syntax and can be matched as a plain phrase.
fn is_literal(pattern: &str) -> bool {
    !pattern.contains(|c: char| "\\.+*?()|[]{}^$".contains(c))
}

/// Checks a pattern at load time (for `file:line` errors); plain phrases need no check.
pub fn validate(pattern: &str) -> Result<(), regex::Error> {
    if is_literal(pattern) {
        Ok(())
    } else {
        compile_one(pattern).map(|_| ())
    }
}

/// Compiles one pattern the way the set does (case-insensitive).
fn compile_one(pattern: &str) -> Result<Regex, regex::Error> {
    RegexBuilder::new(pattern)
        .case_insensitive(true)
        .size_limit(1 << 20)
        .build()
}

impl PatternSet {
    /// Builds the set from `(owner, pattern)` pairs. Patterns must already have been
    /// checked with [`validate`].
    pub fn build(patterns: &[(usize, String)]) -> Result<PatternSet, String> {
        let mut lit = Vec::new();
        let mut literal_owner = Vec::new();
        let mut re = Vec::new();
        let mut regex_owner = Vec::new();
        let mut positional = Vec::with_capacity(patterns.len());
        for (owner, p) in patterns {
            if is_literal(p) {
                lit.push(p.as_str());
                literal_owner.push(*owner);
            } else {
                re.push(p.as_str());
                regex_owner.push(*owner);
                positional.push((*owner, p.clone(), OnceLock::new()));
            }
        }
        let literals = if lit.is_empty() {
            None
        } else {
            Some(
                AhoCorasickBuilder::new()
                    .ascii_case_insensitive(true)
                    // A contiguous NFA builds several times faster than a DFA and rule
                    // loading is on every CLI run's start-up path.
                    .kind(Some(AhoCorasickKind::ContiguousNFA))
                    .match_kind(MatchKind::Standard)
                    .build(&lit)
                    .map_err(|e| e.to_string())?,
            )
        };
        let regexes = if re.is_empty() {
            None
        } else {
            Some(
                RegexSetBuilder::new(&re)
                    .case_insensitive(true)
                    .size_limit(64 << 20)
                    .dfa_size_limit(64 << 20)
                    .build()
                    .map_err(|e| e.to_string())?,
            )
        };
        Ok(PatternSet {
            literals,
            literal_owner,
            regexes,
            regex_owner,
            positional,
        })
    }

    /// Sets `hit[owner] = true` for every owner with a pattern matching `text`.
    pub fn mark_matches(&self, text: &str, hit: &mut [bool]) {
        if let Some(ac) = &self.literals {
            for m in ac.find_overlapping_iter(text) {
                hit[self.literal_owner[m.pattern().as_usize()]] = true;
            }
        }
        if let Some(set) = &self.regexes {
            for i in set.matches(text).iter() {
                hit[self.regex_owner[i]] = true;
            }
        }
    }

    /// Byte offset of the earliest match of any of `owner`'s patterns in `text`.
    pub fn first_match_offset(&self, owner: usize, text: &str) -> Option<usize> {
        let literal = self.literals.iter().flat_map(|ac| {
            ac.find_overlapping_iter(text)
                .filter(|m| self.literal_owner[m.pattern().as_usize()] == owner)
                .map(|m| m.start())
        });
        let regex = self
            .positional
            .iter()
            .filter(|(o, _, _)| *o == owner)
            .filter_map(|(_, pattern, re)| {
                // Compiled on first use; `validate` already proved it compiles.
                let re = re.get_or_init(|| compile_one(pattern).expect("validated pattern"));
                re.find(text).map(|m| m.start())
            });
        literal.chain(regex).min()
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
        let mut hit = vec![false; 3];
        set.mark_matches("552 MAILBOX FULL: quota   exceeded", &mut hit);
        assert_eq!(hit, [true, true, false]);
        let mut hit = vec![false; 3];
        set.mark_matches("指定されたユーザが存在しません", &mut hit);
        assert_eq!(hit, [false, false, true]);
        assert_eq!(set.first_match_offset(1, "x quota exceeded"), Some(2));
        assert_eq!(set.first_match_offset(0, "no, Mailbox Full"), Some(4));
        assert_eq!(set.first_match_offset(0, "nothing here"), None);
    }
}
