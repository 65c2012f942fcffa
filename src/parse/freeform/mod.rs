//! Free-form bounces: no delivery-status part, just a notice written for people.
//!
//! Nearly every such format has the same shape: some boilerplate, then for each
//! failed recipient a line naming the address followed by the server's error lines,
//! then a marker after which the original message is pasted. So there is one
//! mechanism ([`scan`]) driven by per-family data ([`families`]): how to recognise
//! the family, where its recipient section starts, and which extra phrases introduce
//! a recipient. A notice from an unknown server still goes through the same scan
//! with the generic markers, which is how new formats degrade gracefully.

mod families;

use std::sync::LazyLock;

use aho_corasick::AhoCorasick;

use super::diag;
pub use families::{family_for, Family};

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

fn is_original_start(line: &str, lower: &str) -> bool {
    static MARKERS: LazyLock<AhoCorasick> =
        LazyLock::new(|| diag::phrase_automaton(ORIGINAL_MARKERS.iter().copied()));
    MARKERS.is_match(lower)
        || ORIGINAL_HEADERS.iter().any(|h| {
            line.get(..h.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(h))
        })
}

/// If `line` introduces a recipient, the address and the rest of the line after it.
fn recipient_on_line<'a>(line: &'a str, lower: &str, cues: &[&str]) -> Option<(&'a str, &'a str)> {
    let found = diag::addresses(line);
    let &(start, addr) = found.first()?;
    let before = line[..start]
        .trim_end_matches(['<', '"', '\'', '(', '['])
        .trim();
    let lower_before = lower
        .get(..start)
        .unwrap_or("")
        .trim_end_matches(['<', '"', '\'', '(', '['])
        .trim();
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
        && FAILURE_WORDS.iter().any(|w| lower_before.contains(w))
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

/// Lines that repeat what every bounce says and carry no cause; left out of a
/// recipient's own text so they cannot outvote the server's words.
fn is_boilerplate(lower: &str) -> bool {
    lower.is_empty()
        || lower.starts_with("----")
        || lower.starts_with("====")
        || lower.starts_with("****")
}

/// Scans a notice for recipients and their error lines.
pub fn scan(notice: &str, family: &Family) -> NoticeScan {
    let mut out = NoticeScan::default();
    // ASCII lower case keeps byte offsets aligned with `notice`.
    let lower_notice = notice.to_ascii_lowercase();
    // The section starts after the family's start marker, if it has one and it is present.
    let mut begin = 0;
    for m in family.start {
        if let Some(end) = find_spread(&lower_notice, m) {
            // From the marker's own line: some put the first address on it
            // ("Did not reach the following recipient: bob@example.org").
            begin = notice[..end].rfind('\n').map_or(0, |n| n + 1);
            out.anchored = true;
            break;
        }
    }
    let mut section = String::new();
    let mut current: Option<usize> = None;
    // Sendmail transcripts end each recipient's story with a summary line
    // ("554 <bob@example.org>... Host unknown"); the lines after it (">>> DATA",
    // "<<< 550 ...") belong to whoever the next summary line names. They wait here.
    let mut pending: Vec<&str> = Vec::new();
    let mut closed = false;
    let mut offset = begin;
    let body = notice.get(begin..).unwrap_or("");
    let mut lower = String::new();
    for raw_line in body.split_inclusive('\n') {
        let line_at = offset;
        offset += raw_line.len();
        let line = raw_line.trim_end_matches(['\r', '\n']);
        let trimmed = line.trim();
        lower.clear();
        lower.push_str(trimmed);
        lower.make_ascii_lowercase();
        let lower = lower.as_str();
        if is_original_start(line, lower) && (!out.recipients.is_empty() || !section.is_empty()) {
            out.original_at = Some(line_at);
            break;
        }
        if family.end.iter().any(|m| lower.contains(m)) {
            out.original_at = Some(line_at);
            break;
        }
        if !section.is_empty() {
            section.push(' ');
        }
        section.push_str(trimmed);
        if let Some((addr, rest)) = recipient_on_line(trimmed, lower, family.cues) {
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
                        text: String::new(),
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
                for l in pending.drain(..) {
                    attach(&mut out.recipients[h], l);
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
                who.command = who.command.or_else(|| diag::smtp_command(trimmed));
            }
            if lead.bytes().any(|b| b.is_ascii_digit()) {
                push_words(&mut who.text, lead);
            }
            push_words(&mut who.text, rest);
            continue;
        }
        if is_boilerplate(lower) {
            continue;
        }
        match current {
            Some(i) if !closed => attach(&mut out.recipients[i], trimmed),
            _ => pending.push(trimmed),
        }
    }
    if let Some(i) = current {
        for l in pending {
            attach(&mut out.recipients[i], l);
        }
    }
    out.section = diag::squash_whitespace(diag::bounded(&section, 8192));
    out
}

/// Where `phrase` ends in `text`, allowing any run of whitespace (line breaks
/// included) wherever the phrase has a space: notices wrap their sentences anywhere.
fn find_spread(text: &str, phrase: &str) -> Option<usize> {
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

/// Adds one of the recipient's error lines to its text (and notes a command it names).
fn attach(who: &mut NoticeRecipient, line: &str) {
    push_words(&mut who.text, line);
    who.command = who.command.or_else(|| diag::smtp_command(line));
}

fn push_words(dst: &mut String, text: &str) {
    for w in text.split_whitespace() {
        if dst.len() > 4096 {
            return;
        }
        if !dst.is_empty() {
            dst.push(' ');
        }
        dst.push_str(w);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generic() -> &'static Family {
        family_for("", "", "")
    }

    #[test]
    fn qmail_style_recipient_and_error_lines() {
        let n = "Hi. This is the qmail-send program at mx.example.jp.\nI'm afraid I wasn't able to deliver your message to the following addresses.\n\n<bob@example.org>:\n192.0.2.1 does not like recipient.\nRemote host said: 550 5.1.1 unknown user\n\n--- Below this line is a copy of the message.\n\nReturn-Path: <a@b.example>\n";
        let s = scan(n, generic());
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
        let s = scan(n, generic());
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

    #[test]
    fn sender_lines_are_not_recipients() {
        let n = "The original message was received from sender@example.jp\nMAIL FROM: sender@example.jp\n";
        assert!(scan(n, generic()).recipients.is_empty());
    }
}
