//! Facts read out of a server's error text: the SMTP reply code, the enhanced status
//! code, the SMTP command that failed, and addresses.
//!
//! Every bounce format ends up with a line of text from the remote server
//! (`550 5.1.1 <bob@example.org>... User unknown`); these helpers read it the same way
//! whichever format carried it. Plain byte scanning, no regexes: they run for every
//! recipient of every message.

use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

use crate::model::StatusCode;
use crate::phrases::PhraseSet;

/// The first SMTP reply code (`2xx`/`4xx`/`5xx`, second digit 0-5) standing alone in
/// `text`: not part of a longer number, an IP address, a date or a status code.
pub fn reply_code(text: &str) -> Option<u16> {
    let b = text.as_bytes();
    // Only a 2, 4 or 5 can start a code: memchr skips what lies between. A candidate
    // inside a longer number ("12550", "1.550") has a digit or dot before it, which
    // `before_ok` refuses.
    memchr::memchr3_iter(b'2', b'4', b'5', b).find_map(|i| {
        let code = b.get(i..i + 3)?;
        if !(code[1].is_ascii_digit() && code[1] <= b'5' && code[2].is_ascii_digit()) {
            return None;
        }
        let before_ok = i == 0
            || matches!(
                b[i - 1],
                b' ' | b'\t' | b'\n' | b'(' | b'[' | b';' | b':' | b'"' | b'\'' | b'<' | b'='
            );
        let after = b.get(i + 3).copied();
        let after_ok = matches!(
            after,
            None | Some(b' ' | b'-' | b'\t' | b'\r' | b'\n' | b')' | b']' | b',' | b';' | b':')
        );
        // "550-5.7.1" continuation lines and "550 5.7.1" both count; "550.5" does not.
        (before_ok && after_ok && !followed_by_time_or_year(b, i))
            .then(|| code.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0')))
    })
}

/// "201 2013" (a year) or "500 bytes" are not reply codes; a following word of
/// letters is fine ("550 Unknown user"), but a following unit is not.
fn followed_by_time_or_year(b: &[u8], i: usize) -> bool {
    let rest = &b[i + 3..];
    let rest = rest.strip_prefix(b" ").unwrap_or(rest);
    let word_end = rest
        .iter()
        .position(|c| !c.is_ascii_alphanumeric())
        .unwrap_or(rest.len());
    let word = &rest[..word_end];
    word.eq_ignore_ascii_case(b"bytes")
        || word.eq_ignore_ascii_case(b"seconds")
        || word.eq_ignore_ascii_case(b"minutes")
        || word.eq_ignore_ascii_case(b"hours")
        || word.eq_ignore_ascii_case(b"days")
        || (word.len() == 4 && word.iter().all(u8::is_ascii_digit))
}

/// The enhanced status code in `text`, if any.
pub fn status(text: &str) -> Option<StatusCode> {
    StatusCode::find_in(text)
}

/// The status code the remote server put right after its reply code
/// (`550 5.7.1`, `550-5.7.1`, `550-'5.2.2`, `<421 4.4.2`): the server's own verdict.
/// When a reply carries several (a relay quoting the final hop), the last one wins.
pub fn replied_status(text: &str) -> Option<StatusCode> {
    let b = text.as_bytes();
    let mut found = None;
    let mut i = 0;
    while i + 4 < b.len() {
        let is_reply = matches!(b[i], b'4' | b'5')
            && b[i + 1].is_ascii_digit()
            && b[i + 2].is_ascii_digit()
            && (i == 0 || !b[i - 1].is_ascii_alphanumeric() && b[i - 1] != b'.')
            && matches!(b[i + 3], b' ' | b'-');
        if is_reply {
            let mut j = i + 4;
            while j < b.len() && matches!(b[j], b'\'' | b'"' | b'#' | b' ') && j < i + 7 {
                j += 1;
            }
            if b.get(j) == Some(&b[i]) {
                if let Some(code) = text.get(j..).and_then(StatusCode::find_in) {
                    if text
                        .get(j..)
                        .is_some_and(|t| t.starts_with(&code.to_string()))
                    {
                        found = Some(code);
                    }
                }
            }
        }
        i += 1;
    }
    found
}

/// Phrases (lower case) naming the SMTP command a server rejected, and the verb each
/// means. The earliest phrase in the text wins: it is the server's own account.
pub(crate) const COMMAND_PHRASES: &[(&str, &str)] = &[
    ("end of data", "DATA"),
    ("after data", "DATA"),
    ("data command", "DATA"),
    ("final data", "DATA"),
    ("data response", "DATA"),
    ("[data]", "DATA"),
    ("after rcpt", "RCPT"),
    ("rcpt to", "RCPT"),
    ("rcpt_to", "RCPT"),
    ("rcpt command", "RCPT"),
    ("smtp:rcpt", "RCPT"),
    // qmail: "192.0.2.1 does not like recipient."
    ("does not like recipient", "RCPT"),
    ("after mail", "MAIL"),
    ("mail from", "MAIL"),
    ("mail_from", "MAIL"),
    ("mail command", "MAIL"),
    ("sender was rejected", "MAIL"),
    ("after ehlo", "EHLO"),
    ("ehlo command", "EHLO"),
    ("after helo", "HELO"),
    ("helo command", "HELO"),
    ("after starttls", "STARTTLS"),
    ("starttls command", "STARTTLS"),
    ("after auth", "AUTH"),
    ("initial connection", "CONN"),
    ("after connect", "CONN"),
    ("greeting", "CONN"),
];

/// Upper-case command words as transcripts print them (`>>> RCPT To:<...>`,
/// `550 No such user DATA`), in SMTP order: when several appear, the latest stage
/// is the one that failed. Matched with case.
pub(crate) const COMMAND_WORDS: &[(&str, &str)] = &[
    ("HELO", "HELO"),
    ("EHLO", "EHLO"),
    ("MAIL F", "MAIL"),
    ("RCPT", "RCPT"),
    ("DATA", "DATA"),
];

/// The SMTP command `text` says was rejected (`RCPT`, `DATA`, ...).
pub fn smtp_command(text: &str) -> Option<&'static str> {
    static PHRASES: LazyLock<PhraseSet> =
        LazyLock::new(|| PhraseSet::new(COMMAND_PHRASES.iter().map(|(p, _)| *p)));
    if let Some(m) = PHRASES.leftmost_first(text.as_bytes()) {
        return Some(COMMAND_PHRASES[m.phrase].1);
    }
    command_from_words(text.as_bytes(), command_words_in(text.as_bytes()))
}

/// Every occurrence of a [`COMMAND_WORDS`] word in `text`, as `(start, end, word)`.
/// Five upper-case words, found together by one packed (Teddy) SIMD pass where the
/// CPU has one, else each by memchr's substring search; either is cheaper than an
/// automaton that visits every byte. (No word overlaps itself or another, so the
/// search for non-overlapping occurrences finds them all.)
pub(crate) fn command_words_in(text: &[u8]) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
    static PACKED: LazyLock<Option<aho_corasick::packed::Searcher>> = LazyLock::new(|| {
        aho_corasick::packed::Searcher::new(COMMAND_WORDS.iter().map(|(w, _)| *w))
    });
    static WORDS: LazyLock<Vec<memchr::memmem::Finder<'static>>> =
        LazyLock::new(|| crate::phrases::searchers(COMMAND_WORDS.iter().map(|(w, _)| *w)));
    let packed = PACKED.as_ref();
    let mut from = 0;
    let together = std::iter::from_fn(move || {
        let m = packed?.find_in(text, aho_corasick::Span::from(from..text.len()))?;
        from = m.end();
        Some((m.start(), m.end(), m.pattern().as_usize()))
    });
    let one_by_one = WORDS
        .iter()
        .enumerate()
        .filter(move |_| packed.is_none())
        .flat_map(move |(w, finder)| {
            finder
                .find_iter(text)
                .map(move |start| (start, start + finder.needle().len(), w))
        });
    together.chain(one_by_one)
}

/// The command named by [`COMMAND_WORDS`] matches `(start, end, word)` in `text`
/// (when no phrase names one): the latest stage among the words that stand alone.
pub(crate) fn command_from_words(
    text: &[u8],
    words: impl Iterator<Item = (usize, usize, usize)>,
) -> Option<&'static str> {
    let glued = |i: Option<usize>| {
        i.and_then(|i| text.get(i))
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'@')
    };
    words
        .filter(|&(start, end, w)| {
            let word = COMMAND_WORDS[w].0;
            // Not part of a longer word (`DATABASE`, `EMAIL.EXAMPLE`).
            !glued(start.checked_sub(1)) && (word.contains(' ') || !glued(Some(end)))
        })
        .map(|(_, _, w)| w)
        .max()
        .map(|w| COMMAND_WORDS[w].1)
}

/// One pass over a text for a list of phrases, ASCII case ignored, the leftmost
/// match (and among those the earliest listed phrase) reported first. Built once
/// per list from static data.
pub(crate) fn phrase_automaton<'a>(phrases: impl IntoIterator<Item = &'a str>) -> AhoCorasick {
    AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::LeftmostFirst)
        .build(phrases)
        .expect("static phrase lists compile")
}

/// Characters allowed in the local part and domain of an address as servers print it.
fn is_addr_char(c: char) -> bool {
    match u8::try_from(c) {
        Ok(b) if b.is_ascii() => ASCII_ADDR_CHARS[usize::from(b)],
        _ => c.is_alphanumeric(),
    }
}

/// [`is_addr_char`] for ASCII, as a table: it runs on every character around every
/// `@` of every notice, where searching the punctuation list each time showed.
const ASCII_ADDR_CHARS: [bool; 128] = {
    let mut table = [false; 128];
    let mut b = 0;
    while b < 128 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric();
        b += 1;
    }
    let punctuation = b"!#$%&'*+-/=?^_`{|}~.";
    let mut i = 0;
    while i < punctuation.len() {
        table[punctuation[i] as usize] = true;
        i += 1;
    }
    table
};

/// Every `local@domain` address in `text`, in order, without brackets, trailing dots
/// or surrounding punctuation. Domains need a dot (or are a bracketed literal).
pub fn addresses(text: &str) -> Vec<(usize, &str)> {
    address_iter(text).collect()
}

/// The first of [`addresses`], without looking for the others.
pub fn first_address(text: &str) -> Option<(usize, &str)> {
    address_iter(text).next()
}

/// The addresses of [`addresses`], found one at a time.
fn address_iter(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut last_start = None;
    memchr::memchr_iter(b'@', text.as_bytes()).filter_map(move |at| {
        let start = text[..at]
            .char_indices()
            .rev()
            .take_while(|(_, c)| is_addr_char(*c))
            .last()
            .map_or(at, |(i, _)| i);
        let end = text[at + 1..]
            .char_indices()
            .take_while(|(_, c)| is_addr_char(*c) || *c == '[' || *c == ']')
            .last()
            .map_or(at + 1, |(i, c)| at + 1 + i + c.len_utf8());
        let mut addr = &text[start..end];
        addr = addr.trim_matches(|c: char| c == '.' || c == '\'' || c == '`' || c == '=');
        addr = addr.trim_end_matches(']');
        let (local, domain) = addr.split_once('@')?;
        if local.is_empty() || domain.len() < 3 || !domain.contains('.') || domain.starts_with('.')
        {
            return None;
        }
        // Two '@' in one run of address characters name the same address once.
        if last_start == Some(start) {
            return None;
        }
        last_start = Some(start);
        Some((start, addr))
    })
}

/// A bare address from an RFC 3464 recipient field or a `Name <addr>` header value:
/// brackets, quotes and comments dropped, `rfc822;` stripped.
pub fn bare_address(value: &str) -> Option<String> {
    let v = super::fields::strip_type(value);
    if let Some(open) = v.find('<') {
        if let Some(close) = v[open..].find('>') {
            let inner = v[open + 1..open + close].trim();
            if inner.contains('@') {
                return Some(inner.trim_matches(|c| c == '"' || c == '\'').to_string());
            }
        }
    }
    let first = first_address(v).map(|(_, a)| a.to_string());
    first.or_else(|| {
        let t = v.trim().trim_matches(|c| c == '<' || c == '>' || c == '"');
        (!t.is_empty() && !t.contains(char::is_whitespace)).then(|| t.to_string())
    })
}

/// Drops the reply-code prefixes that a multi-line SMTP reply leaves inside its text
/// once unfolded (`550-5.7.1 Messages with multiple 550-5.7.1 addresses in From:`),
/// keeping the first one, so phrases split across the server's lines read whole.
/// Text without a `NNN-` continuation marker is returned unchanged.
pub fn strip_continuations(text: &str) -> std::borrow::Cow<'_, str> {
    use std::borrow::Cow;
    let Some(code) = reply_code(text) else {
        return Cow::Borrowed(text);
    };
    let code = code.to_string();
    // The first `NNN-`: found from the dashes, which are few.
    let bytes = text.as_bytes();
    let Some(first) = memchr::memchr_iter(b'-', bytes)
        .filter_map(|dash| dash.checked_sub(code.len()))
        .find(|&at| bytes[at..].starts_with(code.as_bytes()))
    else {
        return Cow::Borrowed(text);
    };
    let keep_until = first + code.len() + 1;
    let mut out = String::with_capacity(text.len());
    out.push_str(&text[..keep_until.min(text.len())]);
    let mut rest = text.get(keep_until..).unwrap_or("");
    loop {
        let hit = [format!(" {code}-"), format!(" {code} ")]
            .iter()
            .filter_map(|p| rest.find(p.as_str()))
            .min();
        let Some(at) = hit else { break };
        out.push_str(&rest[..at + 1]);
        let mut after = &rest[at + 1 + code.len() + 1..];
        // ... and the enhanced status code repeated after it.
        if let Some(sc) = StatusCode::find_in(after) {
            let s = sc.to_string();
            if let Some(tail) = after.strip_prefix(s.as_str()) {
                after = tail.strip_prefix(' ').unwrap_or(tail);
            }
        }
        rest = after;
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// Collapses runs of whitespace (including line breaks) into single spaces.
///
/// Same result as joining `text.split_whitespace()` with spaces, but ASCII bytes are
/// judged without decoding characters: this runs over every notice, and notices are
/// mostly ASCII. Non-ASCII characters (U+3000 ideographic space, NBSP, ...) still
/// count as whitespace exactly as [`char::is_whitespace`] says. Words separated by
/// one plain space are copied together, so mostly-clean text is copied in long runs
/// rather than word by word.
pub fn squash_whitespace(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    push_squashed(&mut out, text, usize::MAX);
    out
}

/// Appends the words of `text` to `dst`, each after one space unless `dst` is
/// empty, as [`squash_whitespace`] would write them; stops before any word when
/// `dst` is already longer than `cap` bytes.
pub fn push_squashed(dst: &mut String, text: &str, cap: usize) {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let gap = whitespace_len(text, i);
        if gap > 0 {
            i += gap;
            continue;
        }
        // A run of words joined by single spaces, copied as it stands.
        let start = i;
        loop {
            i = word_end(text, i);
            let single_space = bytes.get(i) == Some(&b' ')
                && i + 1 < bytes.len()
                && whitespace_len(text, i + 1) == 0;
            if !single_space {
                break;
            }
            i += 1;
        }
        push_squashed_words(dst, &text[start..i], cap);
    }
}

/// [`push_squashed`] for text that is already squashed (words joined by single
/// spaces, no other whitespace): no need to look for whitespace again.
pub fn push_squashed_words(dst: &mut String, squashed: &str, cap: usize) {
    if squashed.is_empty() {
        return;
    }
    // Every word starts within the cap: copy the text whole.
    if dst.len().saturating_add(1 + squashed.len()) <= cap {
        if !dst.is_empty() {
            dst.push(' ');
        }
        dst.push_str(squashed);
        return;
    }
    for word in squashed.split(' ') {
        if dst.len() > cap {
            return;
        }
        if !dst.is_empty() {
            dst.push(' ');
        }
        dst.push_str(word);
    }
}

/// [`char::is_whitespace`] for an ASCII byte: space, \t, \n, \x0B, \x0C, \r
/// ([`u8::is_ascii_whitespace`] leaves out \x0B, so it would disagree).
#[inline]
fn is_ascii_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')
}

/// The byte length of the whitespace character starting at byte `at` of `text`
/// (a character boundary), or 0 if the character there is not whitespace.
#[inline]
fn whitespace_len(text: &str, at: usize) -> usize {
    let b = text.as_bytes()[at];
    if b.is_ascii() {
        usize::from(is_ascii_space(b))
    } else {
        text[at..]
            .chars()
            .next()
            .filter(|c| c.is_whitespace())
            .map_or(0, char::len_utf8)
    }
}

/// Where the word starting at byte `at` of `text` ends: the first whitespace
/// character at or after `at`, or the end of the text.
#[inline]
fn word_end(text: &str, mut at: usize) -> usize {
    let bytes = text.as_bytes();
    while at < bytes.len() {
        at = skip_word_bytes(bytes, at);
        let Some(&b) = bytes.get(at) else { break };
        if b.is_ascii() {
            if is_ascii_space(b) {
                return at;
            }
            at += 1;
        } else {
            let c = text[at..].chars().next().expect("at a character boundary");
            if c.is_whitespace() {
                return at;
            }
            at += c.len_utf8();
        }
    }
    at
}

/// Skips, eight bytes at a time, bytes that are printable ASCII other than space
/// (`!` to DEL): they are never whitespace. Returns the first byte at or after `at`
/// that may be (a control, space or non-ASCII byte), or where fewer than eight bytes
/// remain.
#[inline]
fn skip_word_bytes(bytes: &[u8], mut at: usize) -> usize {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    while let Some(chunk) = bytes.get(at..at + 8) {
        let x = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        // A high bit per byte below 0x21 (the subtraction borrows) or above 0x7F.
        // A borrow only carries upward from a byte that is itself flagged, so the
        // lowest flagged byte is a true one.
        let flagged = (x.wrapping_sub(ONES * 0x21) | x) & HIGHS;
        if flagged != 0 {
            return at + (flagged.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    at
}

/// Cuts `text` to at most `max` bytes on a character boundary.
pub fn bounded(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while end > 0 && !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squash_whitespace_matches_split_whitespace() {
        for text in [
            "",
            "   ",
            "a",
            " a  b\t\r\nc ",
            "x\u{3000}y\u{a0}z\u{85}w",
            "日本語\u{3000}\u{3000}テスト  end",
            "\u{2003}lead and trail\u{2029}",
            "a\x0Bb\x0Cc\u{1c}d",
            "mixé  d\u{e9}\n\nline",
        ] {
            let want = text.split_whitespace().collect::<Vec<_>>().join(" ");
            assert_eq!(squash_whitespace(text), want, "{text:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn squash_whitespace_matches_split_whitespace_on_any_text(text in "(?s).{0,80}") {
            let want = text.split_whitespace().collect::<Vec<_>>().join(" ");
            proptest::prop_assert_eq!(squash_whitespace(&text), want);
        }

        #[test]
        fn push_squashed_matches_word_by_word_pushing(
            start in "[a-z ]{0,12}",
            text in "([a-z\u{e9}\u{3000} ]{0,5}[ \t\n]{0,2}){0,12}",
            cap in 0usize..40,
        ) {
            let mut want = start.clone();
            for w in text.split_whitespace() {
                if want.len() > cap {
                    break;
                }
                if !want.is_empty() {
                    want.push(' ');
                }
                want.push_str(w);
            }
            let mut got = start.clone();
            push_squashed(&mut got, &text, cap);
            proptest::prop_assert_eq!(&got, &want);
            let mut again = start;
            push_squashed_words(&mut again, &squash_whitespace(&text), cap);
            proptest::prop_assert_eq!(again, want);
        }

        #[test]
        fn squash_matches_split_whitespace_on_long_words(
            text in "([!-~]{0,20}[ \t\u{1c}\u{0}\u{85}\u{e9}\u{3000}]{0,2}){0,8}"
        ) {
            let want = text.split_whitespace().collect::<Vec<_>>().join(" ");
            proptest::prop_assert_eq!(squash_whitespace(&text), want);
        }

        #[test]
        fn squash_matches_split_whitespace_on_spaced_words(
            text in "([a-z\u{e9}\u{3000}\u{a0} ]{0,4}[ \t\r\n\u{b}]{0,2}){0,12}"
        ) {
            let want = text.split_whitespace().collect::<Vec<_>>().join(" ");
            proptest::prop_assert_eq!(squash_whitespace(&text), want);
        }
    }

    /// The byte-by-byte loop [`reply_code`] was before it used memchr: the two must
    /// agree on every text.
    fn reply_code_by_bytes(text: &str) -> Option<u16> {
        let b = text.as_bytes();
        let mut i = 0;
        while i + 3 <= b.len() {
            let c = b[i];
            if matches!(c, b'2' | b'4' | b'5')
                && b[i + 1].is_ascii_digit()
                && b[i + 1] <= b'5'
                && b[i + 2].is_ascii_digit()
            {
                let before_ok = i == 0
                    || matches!(
                        b[i - 1],
                        b' ' | b'\t'
                            | b'\n'
                            | b'('
                            | b'['
                            | b';'
                            | b':'
                            | b'"'
                            | b'\''
                            | b'<'
                            | b'='
                    );
                let after_ok = matches!(
                    b.get(i + 3).copied(),
                    None | Some(
                        b' ' | b'-' | b'\t' | b'\r' | b'\n' | b')' | b']' | b',' | b';' | b':'
                    )
                );
                if before_ok && after_ok && !followed_by_time_or_year(b, i) {
                    return text[i..i + 3].parse().ok();
                }
            }
            if c.is_ascii_digit() {
                while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.') {
                    i += 1;
                }
            } else {
                i += 1;
            }
        }
        None
    }

    proptest::proptest! {
        #[test]
        fn reply_code_agrees_with_the_byte_loop(
            text in "([0-9. ;:(<=-]{0,4}[245][0-5][0-9][0-9. a-z:;)-]{0,3}|[a-z]{0,3}){0,8}"
        ) {
            proptest::prop_assert_eq!(reply_code(&text), reply_code_by_bytes(&text));
        }

        #[test]
        fn command_words_found_as_the_automaton_found_them(
            text in "((HELO|EHLO|MAIL F|RCPT|DATA|E|MAIL)[ A-Z@.]{0,3}){0,6}"
        ) {
            let words = AhoCorasick::new(COMMAND_WORDS.iter().map(|(w, _)| *w)).unwrap();
            let mut want: Vec<(usize, usize, usize)> = words
                .find_overlapping_iter(&text)
                .map(|m| (m.start(), m.end(), m.pattern().as_usize()))
                .collect();
            let mut got: Vec<_> = command_words_in(text.as_bytes()).collect();
            want.sort_unstable();
            got.sort_unstable();
            proptest::prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn reply_codes_stand_alone() {
        assert_eq!(
            reply_code("smtp; 550 5.1.1 <a@b.c>... User unknown"),
            Some(550)
        );
        assert_eq!(reply_code("host 192.0.2.5 said: 452-4.2.2 full"), Some(452));
        assert_eq!(reply_code("Thu, 29 Apr 2010 12550 x"), None);
        assert_eq!(reply_code("(#5.5.0)"), None);
        assert_eq!(reply_code("message of 500 bytes"), None);
        assert_eq!(reply_code("retry 4.4.1 after 421 response"), Some(421));
    }

    #[test]
    fn replied_status_is_the_last_code_after_a_reply_code() {
        assert_eq!(
            replied_status("554 4.4.7 Message expired <421 4.4.2 Connection timed out>"),
            Some(StatusCode::new(4, 4, 2))
        );
        assert_eq!(
            replied_status("5.1.0 - Unknown address error 550-'5.7.1 <a@b.c>... Access denied'"),
            Some(StatusCode::new(5, 7, 1))
        );
        assert_eq!(replied_status("User unknown (#5.1.1)"), None);
    }

    #[test]
    fn commands_from_server_wording() {
        assert_eq!(
            smtp_command("said: 550 nope (in reply to RCPT TO command)"),
            Some("RCPT")
        );
        assert_eq!(
            smtp_command("SMTP error from remote mail server after end of data:"),
            Some("DATA")
        );
        assert_eq!(
            smtp_command("after MAIL FROM:<a@b.c> SIZE=1: 550"),
            Some("MAIL")
        );
        assert_eq!(smtp_command("User unknown"), None);
        assert_eq!(smtp_command("550 No such user DATA"), Some("DATA"));
        assert_eq!(smtp_command(">>> RCPT To:<a@b.example>"), Some("RCPT"));
        assert_eq!(smtp_command("DATABASE@EXAMPLE.JP said no"), None);
    }

    #[test]
    fn continuation_prefixes_are_dropped() {
        assert_eq!(
            strip_continuations(
                "550-5.7.1 Messages with multiple 550-5.7.1 addresses in From: 550 5.7.1 header"
            ),
            "550-5.7.1 Messages with multiple addresses in From: header"
        );
        assert_eq!(
            strip_continuations("550 5.1.1 user unknown"),
            "550 5.1.1 user unknown"
        );
    }

    #[test]
    fn first_address_is_the_first_of_addresses() {
        for text in [
            "",
            "no address",
            "x@y then bob@example.org and carol@example.org",
            "a@b@example.org c@example.net",
            "'.bob@example.org.' <=carol@[192.0.2.1]>",
        ] {
            assert_eq!(
                first_address(text),
                addresses(text).first().copied(),
                "{text:?}"
            );
        }
    }

    #[test]
    fn addresses_found_and_cleaned() {
        let found: Vec<&str> = addresses("<a.b@example.org>: to kijitora@example.jp. and x@y")
            .into_iter()
            .map(|(_, a)| a)
            .collect();
        assert_eq!(found, ["a.b@example.org", "kijitora@example.jp"]);
        assert_eq!(
            bare_address("rfc822; <Bob@Example.org>").as_deref(),
            Some("Bob@Example.org")
        );
        assert_eq!(
            bare_address("\"Bob\" <bob@example.org>").as_deref(),
            Some("bob@example.org")
        );
    }
}
