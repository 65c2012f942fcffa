//! One pass over a diagnostic text that reports every rule whose text pattern matches.
//!
//! Rule files hold hundreds of patterns; trying each as its own regex per message
//! would dominate classification time. Plain phrases (the large majority) go into one
//! Aho-Corasick automaton, the rest into one `RegexSet`, so a message costs two scans
//! whatever the number of rules.

use std::collections::HashMap;
use std::sync::OnceLock;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};

/// A compiled set of case-insensitive patterns, each tagged with an owner (a rule index).
#[derive(Debug, Default)]
pub struct PatternSet {
    literals: Option<AhoCorasick>,
    literal_owner: Vec<Vec<usize>>,
    regexes: Option<RegexSet>,
    regex_owner: Vec<Vec<usize>>,
    /// Every regex pattern again, by owner, to find *where* a rule matched when two
    /// equally specific rules need a tie-break: compiled on first use, so loading
    /// stays cheap. (Phrases are located by the matching pass itself.)
    positional: Vec<(usize, String, OnceLock<Option<Regex>>)>,
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

/// Compiles one pattern the way the set does (case-insensitive), for validation and
/// error messages at load time.
pub fn compile_one(pattern: &str) -> Result<Regex, regex::Error> {
    RegexBuilder::new(pattern)
        .case_insensitive(true)
        .size_limit(1 << 20)
        .build()
}

impl PatternSet {
    /// Builds the set from `(owner, pattern)` pairs. Patterns must already have been
    /// validated with [`compile_one`].
    pub fn build(patterns: &[(usize, String)]) -> Result<PatternSet, String> {
        let mut lit: Vec<String> = Vec::new();
        let mut literal_owner: Vec<Vec<usize>> = Vec::new();
        let mut re: Vec<String> = Vec::new();
        let mut regex_owner: Vec<Vec<usize>> = Vec::new();
        // Rules share patterns (every rule of a provider lists its hosts): each
        // distinct pattern is compiled once and reports all its owners.
        let mut index: HashMap<(bool, String), usize> = HashMap::new();
        let mut positional = Vec::with_capacity(patterns.len());
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
            if !literal {
                positional.push((*owner, p.clone(), OnceLock::new()));
            }
        }
        let literals = if lit.is_empty() {
            None
        } else {
            Some(
                AhoCorasickBuilder::new()
                    .ascii_case_insensitive(true)
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
        self.mark_matches_at(text, hit, None);
    }

    /// [`Self::mark_matches`], also lowering `at[owner]` to the earliest offset where
    /// one of the owner's plain phrases matched (found by the same pass, so the
    /// tie-break by position costs nothing for phrases).
    pub fn mark_matches_at(&self, text: &str, hit: &mut [bool], mut at: Option<&mut [usize]>) {
        if let Some(ac) = &self.literals {
            for m in ac.find_overlapping_iter(text) {
                for &o in &self.literal_owner[m.pattern().as_usize()] {
                    hit[o] = true;
                    if let Some(at) = at.as_deref_mut() {
                        at[o] = at[o].min(m.start());
                    }
                }
            }
        }
        if let Some(set) = &self.regexes {
            for i in set.matches(text).iter() {
                for &o in &self.regex_owner[i] {
                    hit[o] = true;
                }
            }
        }
    }

    /// Byte offset of the earliest match of any of `owner`'s regex patterns in `text`
    /// (plain phrases are located by [`Self::mark_matches_at`]).
    pub fn first_regex_offset(&self, owner: usize, text: &str) -> Option<usize> {
        self.positional
            .iter()
            .filter(|(o, _, _)| *o == owner)
            .filter_map(|(_, p, re)| {
                re.get_or_init(|| compile_one(p).ok())
                    .as_ref()?
                    .find(text)
                    .map(|m| m.start())
            })
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
        let mut hit = vec![false; 3];
        set.mark_matches("552 MAILBOX FULL: quota   exceeded", &mut hit);
        assert_eq!(hit, [true, true, false]);
        let mut hit = vec![false; 3];
        set.mark_matches("指定されたユーザが存在しません", &mut hit);
        assert_eq!(hit, [false, false, true]);
        assert_eq!(set.first_regex_offset(1, "x quota exceeded"), Some(2));
        assert_eq!(
            as_phrase(r"RESOLVER\.RST\.x").as_deref(),
            Some("RESOLVER.RST.x")
        );
        assert_eq!(as_phrase(r"a\sb"), None);
        assert_eq!(as_phrase("a.b"), None);
        let (mut hit, mut at) = (vec![false; 3], vec![usize::MAX; 3]);
        set.mark_matches_at("a mailbox full", &mut hit, Some(&mut at));
        assert_eq!(at, [2, usize::MAX, usize::MAX]);
    }
}
