//! The returned original message: Message-ID, From, Sender, To, Subject, Date.
//!
//! Advice mail threads with the original and routes to its sender, so these headers
//! matter as much as the failure itself. Bounces return the original as a
//! `message/rfc822` / `message/global` part, as bare header text
//! (`text/rfc822-headers`, `message/global-headers`), or pasted into the notice
//! after a marker line ("Original message headers:", "--- Below this line is a copy
//! of the message."); all three end up here.

use super::diag;
use super::header::{self, HeaderBlock};
use super::mime::Returned;
use crate::model::OriginalMessage;

/// Who the original was addressed to: its `To` addresses or, when it has none, the
/// `for <address>` of its newest `Received` header. The last resort for naming the
/// recipient of a failure notice that names nobody.
pub fn addressed_to(h: &HeaderBlock<'_>) -> Vec<String> {
    let to: Vec<String> = h
        .raw_str("To")
        .map(|v| {
            diag::addresses(v)
                .into_iter()
                .map(|(_, a)| a.to_string())
                .collect()
        })
        .unwrap_or_default();
    if !to.is_empty() {
        return to;
    }
    h.all("Received")
        .filter_map(|raw| {
            let text = std::str::from_utf8(raw).ok()?;
            let lower = text.to_ascii_lowercase();
            let at = lower
                .match_indices("for ")
                .find(|(i, _)| *i > 0 && lower.as_bytes()[i - 1].is_ascii_whitespace())?
                .0;
            diag::first_address(text.get(at..)?).map(|(_, a)| a.to_string())
        })
        .take(1)
        .collect()
}

/// Reads the original's headers from its header block.
pub fn from_headers(h: &HeaderBlock<'_>) -> OriginalMessage {
    let raw = |name: &str| {
        h.raw_str(name)
            .map(diag::squash_whitespace)
            .filter(|v| !v.is_empty())
    };
    OriginalMessage {
        message_id: h
            .id("Message-ID")
            .map(|id| format!("<{}>", id.trim_matches(|c| c == '<' || c == '>')))
            .or_else(|| raw("Message-ID")),
        from: raw("From"),
        sender: raw("Sender"),
        to: raw("To"),
        subject: h
            .text("Subject")
            .map(|s| diag::squash_whitespace(&s))
            .or_else(|| raw("Subject")),
        date: raw("Date"),
    }
}

/// Reads the original's headers from header text (the body may follow; it is
/// ignored), with [`addressed_to`].
pub fn from_header_text(text: &[u8]) -> (OriginalMessage, Vec<String>) {
    // Header text inside a notice is often indented.
    let start = text
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(text.len());
    let h = header::read(text, start);
    (from_headers(&h), addressed_to(&h))
}

/// The original from whichever form the bounce returned it in, with [`addressed_to`].
pub fn from_returned(returned: &Returned<'_>) -> (OriginalMessage, Vec<String>) {
    match returned {
        Returned::Message(m) => {
            let h = header::read(m, 0);
            (from_headers(&h), addressed_to(&h))
        }
        Returned::Headers(h) => from_header_text(h),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_from_text_with_encoded_subject() {
        let (o, to) = from_header_text(
            b"\n  \nMessage-ID: <abc@example.jp>\nFrom: Neko <neko@example.jp>\nTo: bob@example.org\nSubject: =?UTF-8?B?44Gr44KD44O844KT?=\nDate: Thu, 29 Apr 2010 00:00:00 +0900\n\nbody\n",
        );
        assert_eq!(o.message_id.as_deref(), Some("<abc@example.jp>"));
        assert_eq!(o.from.as_deref(), Some("Neko <neko@example.jp>"));
        assert_eq!(o.subject.as_deref(), Some("にゃーん"));
        assert_eq!(o.to.as_deref(), Some("bob@example.org"));
        assert_eq!(to, ["bob@example.org"]);
    }
}
