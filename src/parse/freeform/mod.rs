//! Free-form bounces: no delivery-status part, just a notice written for people.
//!
//! Nearly every such format has the same shape: some boilerplate, then for each
//! failed recipient a line naming the address followed by the server's error lines,
//! then a marker after which the original message is pasted. So there is one
//! mechanism ([`scan`]) driven by per-family data ([`families`]): how to recognise
//! the family, where its recipient section starts, and which extra phrases introduce
//! a recipient. A notice from an unknown server still goes through the same scan
//! with the generic markers, which is how new formats degrade gracefully.
//!
//! Everything the reading looks for by phrase (the families' detect and end
//! markers, the markers of a pasted original, the SMTP command phrases) is found
//! in one pass of a [`PhraseSet`] over the notice, and the upper-case SMTP command
//! words by their own searches ([`NoticeMarks`]); the line by line reading then
//! only consults that list, instead of searching each line again.

mod families;

use std::sync::LazyLock;

use crate::phrases::{find_ignore_ascii_case, PhraseSet};

use super::diag;
pub use families::{family_in, Family};

/// One recipient found in a notice, with the error lines that follow it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NoticeRecipient {
    pub address: String,
    /// The recipient's own error lines, whitespace-squashed.
    pub text: String,
    /// The SMTP command named on the line introducing the recipient (Exim's
    /// "SMTP error from remote mail server after RCPT TO:<bob@...>:", a sendmail
    /// transcript's ">>> RCPT To:<bob@...>"), or in its error lines.
    pub command: Option<&'static str>,
}

/// What a scan of a notice found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NoticeScan {
    pub recipients: Vec<NoticeRecipient>,
    /// The recipient section (or the whole notice up to the original), squashed:
    /// classification falls back to it when a recipient's own lines say nothing.
    pub section: String,
    /// Byte offset in the notice where the pasted original message starts.
    pub original_at: Option<usize>,
    /// True if a family start marker was found.
    pub anchored: bool,
}

/// Phrases (lower case) whose line marks the start of the returned original.
const ORIGINAL_MARKERS: &[&str] = &[
    "below this line is a copy of the message",
    "this is a copy of the message",
    "original message follows",
    "----- original message -----",
    "original message headers",
    "returned message --",
    "unsent message follows",
    "header of the original message",
    "included is a copy of the message header",
    "below is a copy of the original message",
    "-------original message",
    "message headers follow",
    "original message:",
    "--- original message",
    "returned mail follows",
    "content-type: message/rfc822",
    "the attachment contains the original mail headers",
    "original message header",
    "------ original message",
    "message header follows",
    "--- the message is attached",
    "header of original message",
];

/// Header names that, at column 0, mean the pasted original has started.
const ORIGINAL_HEADERS: &[&str] = &[
    "received:",
    "return-path:",
    "dkim-signature:",
    "x-received:",
];

/// Text just before an address that makes the line introduce a recipient
/// (lower case, compared with the end of the text before the address).
const GENERIC_CUES: &[&str] = &[
    "delivered to:",
    "delivered to",
    "deliver message to:",
    "deliver to:",
    "rcpt to:",
    "recipient:",
    "recipients:",
    "recipient(s):",
    "recipient address:",
    "unknown user:",
    "user unknown:",
    "address:",
    "errors:",
    ">>>",
    "failed:",
    "your mail to",
    "message to",
    "invalid user:",
    "mailbox:",
    "undeliverable to",
];

/// Words that make "<phrase>: <address>" a failure line rather than a header.
const FAILURE_WORDS: &[&str] = &[
    "fail", "full", "unknown", "not ", "error", "invalid", "reject", "could", "unable", "no such",
];

/// What a phrase of the notice automaton stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mark {
    /// A `detect` phrase of the family at this index of [`families::FAMILIES`].
    Detect(usize),
    /// An `end` marker of that family.
    End(usize),
    /// One of [`ORIGINAL_MARKERS`].
    Original,
    /// A [`diag::COMMAND_PHRASES`] entry.
    CommandPhrase(usize),
    /// A [`diag::COMMAND_WORDS`] entry (found with its case, apart from the
    /// phrase set).
    CommandWord(usize),
}

/// The phrase set behind [`NoticeMarks`], and what each of its phrases stands for
/// (a phrase listed under several roles stands for all of them).
static NOTICE_PHRASES: LazyLock<(PhraseSet, Vec<Vec<Mark>>)> = LazyLock::new(|| {
    let mut phrases: Vec<String> = Vec::new();
    let mut marks: Vec<Vec<Mark>> = Vec::new();
    let mut add = |phrase: &str, mark: Mark| {
        let phrase = phrase.to_ascii_lowercase();
        match phrases.iter().position(|p| *p == phrase) {
            Some(i) => marks[i].push(mark),
            None => {
                phrases.push(phrase);
                marks.push(vec![mark]);
            }
        }
    };
    for (i, f) in families::FAMILIES.iter().enumerate() {
        f.detect.iter().for_each(|d| add(d, Mark::Detect(i)));
        f.end.iter().for_each(|e| add(e, Mark::End(i)));
    }
    ORIGINAL_MARKERS.iter().for_each(|m| add(m, Mark::Original));
    for (i, (p, _)) in diag::COMMAND_PHRASES.iter().enumerate() {
        add(p, Mark::CommandPhrase(i));
    }
    (PhraseSet::new(&phrases), marks)
});

/// Every place in a text where one of the notice phrases occurs (overlaps
/// included), ordered by where it starts.
#[derive(Debug, Default)]
pub struct NoticeMarks {
    /// `(start, end, mark)`.
    hits: Vec<(usize, usize, Mark)>,
}

impl NoticeMarks {
    /// Finds the marks in `text` (one pass).
    pub fn find(text: &str) -> NoticeMarks {
        let (phrases, marks) = &*NOTICE_PHRASES;
        let mut hits = Vec::new();
        phrases.for_each_match(text.as_bytes(), |m| {
            hits.extend(marks[m.phrase].iter().map(|&mark| (m.start, m.end, mark)));
        });
        // The command words count only in upper case: searched for as they are.
        hits.extend(
            diag::command_words_in(text.as_bytes())
                .map(|(start, end, w)| (start, end, Mark::CommandWord(w))),
        );
        // By start, then end; a phrase's marks stay in their listed order.
        hits.sort_by_key(|h| (h.0, h.1));
        NoticeMarks { hits }
    }

    /// The marks, ordered by start.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (usize, usize, Mark)> + '_ {
        self.hits.iter().copied()
    }

    /// The marks that start in `range`, as `(start, end, mark)`. The notice is read
    /// line by line in order, so each call goes on from where the previous one
    /// stopped (`cursor`) instead of searching the whole list again.
    fn within(&self, cursor: &mut usize, range: std::ops::Range<usize>) -> &[(usize, usize, Mark)] {
        let hits = &self.hits;
        while hits.get(*cursor).is_some_and(|h| h.0 < range.start) {
            *cursor += 1;
        }
        let from = *cursor;
        let len = hits[from..].iter().take_while(|h| h.0 < range.end).count();
        &hits[from..from + len]
    }
}

/// What a line of the notice holds, read off its marks.
struct LineMarks {
    /// A marker of the pasted original.
    original: bool,
    /// One of the family's end markers.
    end: bool,
    /// The SMTP command the line names (see [`diag::smtp_command`]).
    command: Option<&'static str>,
}

impl LineMarks {
    /// `line` starts at byte `at` of the text `marks` were found in, after the
    /// lines `cursor` has gone past (see [`NoticeMarks::within`]).
    fn of(
        marks: &NoticeMarks,
        cursor: &mut usize,
        at: usize,
        line: &str,
        family: usize,
    ) -> LineMarks {
        let mut out = LineMarks {
            original: false,
            end: false,
            command: None,
        };
        // The earliest command phrase (on ties the first listed), else the words.
        let mut phrase: Option<(usize, usize)> = None;
        let mut words = Vec::new();
        for &(start, end, mark) in marks.within(cursor, at..at + line.len()) {
            match mark {
                Mark::Original => out.original = true,
                Mark::End(f) if f == family => out.end = true,
                Mark::CommandPhrase(p) if phrase.is_none_or(|best| (start, p) < best) => {
                    phrase = Some((start, p));
                }
                Mark::CommandWord(w) => words.push((start - at, end - at, w)),
                _ => {}
            }
        }
        out.command = match phrase {
            Some((_, p)) => Some(diag::COMMAND_PHRASES[p].1),
            None => diag::command_from_words(line.as_bytes(), words.into_iter()),
        };
        out
    }
}

fn starts_original_headers(line: &str) -> bool {
    ORIGINAL_HEADERS.iter().any(|h| {
        line.get(..h.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(h))
    })
}

/// If `line` introduces a recipient, the address and the rest of the line after it.
fn recipient_on_line<'a>(line: &'a str, cues: &[&str]) -> Option<(&'a str, &'a str)> {
    let (start, addr) = diag::first_address(line)?;
    let before = line[..start]
        .trim_end_matches(['<', '"', '\'', '(', '['])
        .trim();
    let lower_before = before.to_ascii_lowercase();
    let lower_before = lower_before.as_str();
    let at_start = before.is_empty()
        || before.chars().all(|c| {
            c == '*' || c == '-' || c == '>' || c == '#' || c.is_ascii_digit() || c == '.'
        });
    let cued = !at_start
        && before.len() <= 120
        && (GENERIC_CUES
            .iter()
            .chain(cues)
            .any(|c| lower_before.ends_with(c)));
    let after_start = start + addr.len();
    // "User's mailbox is full: <bob@example.org>": a failure phrase ending in the address.
    let ends_line = lower_before.ends_with(':')
        && has_failure_word(lower_before.as_bytes())
        && line.get(after_start..).is_some_and(|r| {
            r.trim_matches(|c: char| c.is_whitespace() || ">.)]\"',;".contains(c))
                .is_empty()
        });
    if !(at_start || cued || ends_line) {
        return None;
    }
    let rest = line
        .get(after_start..)
        .unwrap_or("")
        .trim_start_matches(['>', '"', '\'', ')', ']'])
        .trim_start_matches([':', '.'])
        .trim();
    Some((addr, rest))
}

/// Whether `text` (lower case) contains one of [`FAILURE_WORDS`] (searchers built
/// once, see [`crate::phrases::searchers`]).
fn has_failure_word(text: &[u8]) -> bool {
    static FINDERS: LazyLock<Vec<memchr::memmem::Finder<'static>>> =
        LazyLock::new(|| crate::phrases::searchers(FAILURE_WORDS.iter().copied()));
    FINDERS.iter().any(|f| f.find(text).is_some())
}

/// Lines that repeat what every bounce says and carry no cause; left out of a
/// recipient's own text so they cannot outvote the server's words.
fn is_boilerplate(line: &str) -> bool {
    line.is_empty()
        || line.starts_with("----")
        || line.starts_with("====")
        || line.starts_with("****")
}

/// How much of the recipient section (before squashing) [`NoticeScan::section`] keeps.
const SECTION_MAX: usize = 8192;

/// Scans a notice for recipients and their error lines; `marks` are the notice's
/// ([`NoticeMarks::find`]).
pub fn scan(notice: &str, marks: &NoticeMarks, family: &Family) -> NoticeScan {
    let mut out = NoticeScan::default();
    let family_index = families::FAMILIES
        .iter()
        .position(|f| std::ptr::eq(f, family))
        .unwrap_or(usize::MAX);
    // The section starts after the family's start marker, if it has one and it is present.
    let mut begin = 0;
    if !family.start.is_empty() {
        for m in family.start {
            if let Some(end) = find_spread(notice, m) {
                // From the marker's own line: some put the first address on it
                // ("Did not reach the following recipient: bob@example.org").
                begin = notice[..end].rfind('\n').map_or(0, |n| n + 1);
                out.anchored = true;
                break;
            }
        }
    }
    // Capacities are upper bounds of what the notice can fill (growing by doubling
    // would copy these texts several times).
    let mut section = String::with_capacity(notice.len().saturating_sub(begin).min(SECTION_MAX));
    let mut section_raw = 0;
    let mut line_words = String::new();
    let mut current: Option<usize> = None;
    // Sendmail transcripts end each recipient's story with a summary line
    // ("554 <bob@example.org>... Host unknown"); the lines after it (">>> DATA",
    // "<<< 550 ...") belong to whoever the next summary line names. They wait here,
    // with the command each names.
    let mut pending: Vec<(&str, Option<&'static str>)> = Vec::new();
    let mut closed = false;
    let mut offset = begin;
    let mut marks_cursor = 0;
    let body = notice.get(begin..).unwrap_or("");
    for raw_line in super::lines::lines_inclusive(body) {
        let line_at = offset;
        offset += raw_line.len();
        let line = raw_line.trim_end_matches(['\r', '\n']);
        let trimmed = line.trim();
        let trimmed_at = line_at + (trimmed.as_ptr() as usize - line.as_ptr() as usize);
        let line_marks = LineMarks::of(marks, &mut marks_cursor, trimmed_at, trimmed, family_index);
        let original_start = line_marks.original || starts_original_headers(line);
        if original_start && (!out.recipients.is_empty() || section_raw > 0) {
            out.original_at = Some(line_at);
            break;
        }
        if line_marks.end {
            out.original_at = Some(line_at);
            break;
        }
        // The section is the first SECTION_MAX bytes of the trimmed lines joined by
        // spaces, squashed: it is squashed as it is gathered, and `section_raw` counts
        // where the unsquashed text would have reached.
        // The line is squashed once, into `line_words`, for both the section and the
        // recipient's text (`line_whole` when that is the whole line).
        line_words.clear();
        let mut line_whole = false;
        if section_raw < SECTION_MAX {
            let from = section_raw + usize::from(section_raw > 0);
            let piece = diag::bounded(trimmed, SECTION_MAX - from);
            diag::push_squashed(&mut line_words, piece, usize::MAX);
            diag::push_squashed_words(&mut section, &line_words, usize::MAX);
            line_whole = piece.len() == trimmed.len();
            section_raw = from + trimmed.len();
        }
        if let Some((addr, rest)) = recipient_on_line(trimmed, family.cues) {
            if family
                .skip_addresses
                .iter()
                .any(|s| addr.to_lowercase().starts_with(s))
            {
                continue;
            }
            let existing = out
                .recipients
                .iter()
                .position(|r| r.address.eq_ignore_ascii_case(addr));
            let idx = match existing {
                Some(i) => i,
                None => {
                    out.recipients.push(NoticeRecipient {
                        address: addr.to_string(),
                        text: String::with_capacity(
                            notice.len().saturating_sub(line_at).min(WORDS_MAX + 64),
                        ),
                        command: None,
                    });
                    out.recipients.len() - 1
                }
            };
            let summary = trimmed.as_bytes().first().is_some_and(u8::is_ascii_digit)
                && trimmed.get(3..4) == Some(" ");
            let heir = if summary && (closed || current.is_none()) {
                Some(idx)
            } else {
                current
            };
            if let Some(h) = heir {
                for (l, command) in pending.drain(..) {
                    attach(&mut out.recipients[h], l, command);
                }
            }
            pending.clear();
            closed = summary;
            current = Some(idx);
            let who = &mut out.recipients[idx];
            let lead = trimmed.get(..trimmed.find(addr).unwrap_or(0)).unwrap_or("");
            let lead = lead.trim_end_matches(['<', '"', '\'', '(', '[', ' ']);
            // "RCPT TO: bob@..." alone is an envelope listing ("Message details:"),
            // not the command that failed; a transcript says ">>> RCPT TO:".
            let listing = lead.ends_with(':') && !lead.contains(char::is_whitespace)
                || lead.eq_ignore_ascii_case("rcpt to:");
            if !listing {
                who.command = who.command.or(line_marks.command);
            }
            if lead.bytes().any(|b| b.is_ascii_digit()) {
                push_words(&mut who.text, lead);
            }
            push_words(&mut who.text, rest);
            continue;
        }
        if is_boilerplate(trimmed) {
            continue;
        }
        match current {
            Some(i) if !closed => {
                let who = &mut out.recipients[i];
                if line_whole {
                    diag::push_squashed_words(&mut who.text, &line_words, WORDS_MAX);
                    who.command = who.command.or(line_marks.command);
                } else {
                    attach(who, trimmed, line_marks.command);
                }
            }
            _ => pending.push((trimmed, line_marks.command)),
        }
    }
    if let Some(i) = current {
        for (l, command) in pending {
            attach(&mut out.recipients[i], l, command);
        }
    }
    out.section = section;
    out
}

/// Where `phrase` (lower case) ends in `text` read in ASCII lower case, allowing any
/// run of whitespace (line breaks included) wherever the phrase has a space: notices
/// wrap their sentences anywhere. The first word's occurrences are tried in order,
/// each search resuming after the previous occurrence (as `match_indices` would in
/// the lower-cased text, which is not built).
fn find_spread(text: &str, phrase: &str) -> Option<usize> {
    let mut words = phrase.split(' ').filter(|w| !w.is_empty());
    let first = words.next()?;
    let rest: Vec<&str> = words.collect();
    let mut from = 0;
    'start: while let Some(at) = find_ignore_ascii_case(text.as_bytes(), first.as_bytes(), from) {
        from = at + first.len();
        let mut pos = at + first.len();
        for w in &rest {
            let after = &text[pos..];
            let trimmed = after.trim_start();
            if trimmed.len() == after.len()
                || !lowered_starts_with(trimmed.as_bytes(), w.as_bytes())
            {
                continue 'start;
            }
            pos += after.len() - trimmed.len() + w.len();
        }
        return Some(pos);
    }
    None
}

/// Whether `text`, ASCII lower-cased, starts with `word`.
fn lowered_starts_with(text: &[u8], word: &[u8]) -> bool {
    text.len() >= word.len()
        && text
            .iter()
            .zip(word)
            .all(|(t, w)| t.to_ascii_lowercase() == *w)
}

/// Adds one of the recipient's error lines to its text (and notes the command it
/// names, if the recipient has none yet).
fn attach(who: &mut NoticeRecipient, line: &str, command: Option<&'static str>) {
    push_words(&mut who.text, line);
    who.command = who.command.or(command);
}

/// Appends the words of `text`, one space apart, while the text is at most
/// [`WORDS_MAX`] bytes.
fn push_words(dst: &mut String, text: &str) {
    diag::push_squashed(dst, text, WORDS_MAX);
}

/// No word is added to a recipient's text once it is longer than this.
const WORDS_MAX: usize = 4096;

#[cfg(test)]
mod tests {
    use super::*;

    fn generic() -> &'static Family {
        family_in(&NoticeMarks::default(), "", "")
    }

    #[test]
    fn qmail_style_recipient_and_error_lines() {
        let n = "Hi. This is the qmail-send program at mx.example.jp.\nI'm afraid I wasn't able to deliver your message to the following addresses.\n\n<bob@example.org>:\n192.0.2.1 does not like recipient.\nRemote host said: 550 5.1.1 unknown user\n\n--- Below this line is a copy of the message.\n\nReturn-Path: <a@b.example>\n";
        let s = scan(n, &NoticeMarks::find(n), generic());
        assert_eq!(s.recipients.len(), 1);
        assert_eq!(s.recipients[0].address, "bob@example.org");
        assert_eq!(
            s.recipients[0].text,
            "192.0.2.1 does not like recipient. Remote host said: 550 5.1.1 unknown user"
        );
        assert!(n[s.original_at.unwrap()..].starts_with("--- Below"));
    }

    #[test]
    fn cued_recipient_mid_line_and_duplicates_merge() {
        let n = "There was an error delivering your mail to <bob@example.org>.\n\nmx.example.org did not like our RCPT TO:\n550 no such user bob@example.org\n";
        let s = scan(n, &NoticeMarks::find(n), generic());
        assert_eq!(s.recipients.len(), 1);
        assert!(s.recipients[0].text.contains("550 no such user"));
    }

    #[test]
    fn start_markers_match_across_line_breaks() {
        let text = "could not be delivered. the following\naddress(es) failed:\n  bob@example.org";
        let end = find_spread(text, "the following address(es) failed").unwrap();
        assert_eq!(&text[end..end + 1], ":");
        assert_eq!(find_spread(text, "following addresses failed"), None);
    }

    /// The reading `find_spread` replaced: the whole text lower-cased first.
    fn find_spread_in_lowered_copy(text: &str, phrase: &str) -> Option<usize> {
        let text = text.to_ascii_lowercase();
        let mut words = phrase.split(' ').filter(|w| !w.is_empty());
        let first = words.next()?;
        let rest: Vec<&str> = words.collect();
        'start: for (at, _) in text.match_indices(first) {
            let mut pos = at + first.len();
            for w in &rest {
                let after = &text[pos..];
                let trimmed = after.trim_start();
                if trimmed.len() == after.len() || !trimmed.starts_with(w) {
                    continue 'start;
                }
                pos += after.len() - trimmed.len() + w.len();
            }
            return Some(pos);
        }
        None
    }

    proptest::proptest! {
        #[test]
        fn find_spread_reads_the_text_as_lower_case(
            text in "[aAbB \n\u{e9}\u{3000}]{0,40}",
            phrase in "[abB \u{e9}]{0,8}",
        ) {
            proptest::prop_assert_eq!(
                find_spread(&text, &phrase),
                find_spread_in_lowered_copy(&text, &phrase)
            );
        }
    }

    #[test]
    fn start_markers_ignore_ascii_case() {
        let text = "Your message DID NOT REACH the\r\n following recipient: bob@example.org";
        let end = find_spread(text, "did not reach the following recipient").unwrap();
        assert_eq!(&text[end..end + 1], ":");
    }

    #[test]
    fn sender_lines_are_not_recipients() {
        let n = "The original message was received from sender@example.jp\nMAIL FROM: sender@example.jp\n";
        assert!(scan(n, &NoticeMarks::find(n), generic())
            .recipients
            .is_empty());
    }
}
