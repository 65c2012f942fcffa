//! Bounce parsing: raw message bytes in, [`ParsedMessage`] out. Pure: no I/O, no
//! mutable globals, and it never panics on any input (fuzzed and property-tested).
//!
//! [`mime`] reads the message's MIME structure and sorts its parts by role, then
//! the first format that recognises the message wins, most structured first:
//! ARF feedback, RFC 3464/6533 delivery-status, a report pasted into text, an RFC
//! 3834 auto-reply, and finally the free-form notice scan. Each step only reads
//! facts; judging them is [`crate::classify`]'s job.

mod arf;
mod autoreply;
mod content_type;
pub mod diag;
mod dsn;
pub mod fields;
mod freeform;
mod header;
pub(crate) mod lines;
mod mbox;
pub mod mime;
mod original;
mod ses;
mod transfer;

use std::borrow::Cow;
use std::sync::LazyLock;

use aho_corasick::AhoCorasick;

use crate::model::{MessageKind, ParsedMessage, RecipientFacts, StatusCode};
use crate::phrases::find_ignore_ascii_case;
use header::HeaderBlock;
pub use mbox::split_mbox;

/// Longest `notice` kept on a parsed message.
const NOTICE_MAX: usize = 4096;

/// Parses one message (not an mbox; see [`split_mbox`]).
pub fn parse_message(raw: &[u8]) -> ParsedMessage {
    match mime::bounce_parts(raw) {
        Some(parts) => parse_parts(&parts),
        None => ParsedMessage {
            format: "unparsed",
            ..Default::default()
        },
    }
}

/// Top-level header facts several steps consult.
struct TopHeaders<'a> {
    from: String,
    subject: String,
    auto_submitted: Option<&'a str>,
    /// Exim's `X-Failed-Recipients`.
    failed_recipients: Option<&'a str>,
    autoreply_header: bool,
    apple_unsubscribe: bool,
}

impl<'a> TopHeaders<'a> {
    fn read(h: &'a HeaderBlock<'_>) -> Self {
        let raw = |n: &'static str| h.raw_str(n).map(str::trim);
        let autoreply_header = ["X-Autoreply", "X-Autorespond", "X-Auto-Response-Suppress"]
            .iter()
            .any(|h| raw(h).is_some())
            || raw("Precedence").is_some_and(|p| p.eq_ignore_ascii_case("auto_reply"));
        TopHeaders {
            from: raw("From").unwrap_or("").to_string(),
            subject: h
                .text("Subject")
                .map(|s| s.into_owned())
                .or_else(|| raw("Subject").map(str::to_string))
                .unwrap_or_default(),
            auto_submitted: raw("Auto-Submitted"),
            failed_recipients: raw("X-Failed-Recipients"),
            autoreply_header,
            apple_unsubscribe: raw("X-Apple-Unsubscribe")
                .is_some_and(|v| v.eq_ignore_ascii_case("true")),
        }
    }

    /// The sender or subject says "this is a bounce".
    fn looks_like_bounce(&self) -> bool {
        let f = self.from.to_lowercase();
        let s = self.subject.to_lowercase();
        const SENDERS: &[&str] = &[
            "mailer-daemon",
            "postmaster",
            "mail delivery",
            "mail administrator",
            "mailadmin",
            "mail-daemon",
            "mmsc",
            "mail system",
        ];
        const SUBJECTS: &[&str] = &[
            "undeliver",
            "delivery",
            "returned mail",
            "failure",
            "failed",
            "not delivered",
            "could not",
            "bounce",
            "non remis",
            "unzustellbar",
            "rejected",
            "error",
            "warning",
            "返送",
            "不達",
            "エラー",
            "配信",
        ];
        SENDERS.iter().any(|w| f.contains(w)) || SUBJECTS.iter().any(|w| s.contains(w))
    }
}

fn parse_parts(parts: &mime::BounceParts<'_>) -> ParsedMessage {
    let top = TopHeaders::read(&parts.top);
    let notice: Cow<'_, str> = match parts.notices.len() {
        0 => Cow::Borrowed(""),
        1 => Cow::Borrowed(&parts.notices[0]),
        _ => Cow::Owned(parts.notices.join("\n")),
    };
    let mut out = ParsedMessage::default();
    let mut addressed_to = Vec::new();
    if let Some(r) = &parts.returned {
        (out.original, addressed_to) = original::from_returned(r);
    }

    if let Some(report) = parts.feedback_report.as_deref() {
        return feedback(
            out,
            arf::parse_report(report),
            &addressed_to,
            &notice,
            "arf",
        );
    }
    if top.apple_unsubscribe || is_jmrp(parts, &top) {
        let mut fb = arf::Feedback {
            feedback_type: Some(
                if top.apple_unsubscribe {
                    "opt-out"
                } else {
                    "abuse"
                }
                .into(),
            ),
            ..Default::default()
        };
        if top.apple_unsubscribe {
            fb.recipients.extend(diag::bare_address(&top.from));
        }
        return feedback(
            out,
            fb,
            &addressed_to,
            &notice,
            if top.apple_unsubscribe {
                "unsubscribe"
            } else {
                "jmrp"
            },
        );
    }

    match ses::parse(&notice) {
        ses::SesEvent::Bounce {
            reporting_mta,
            recipients,
        }
        | ses::SesEvent::Delivery {
            reporting_mta,
            recipients,
        } if !recipients.is_empty() => {
            out.format = "amazonses";
            out.reporting_mta = reporting_mta;
            out.recipients = recipients;
            return finish(out);
        }
        ses::SesEvent::Complaint {
            feedback_type,
            recipients,
        } => {
            let fb = arf::Feedback {
                feedback_type: feedback_type.or(Some("abuse".into())),
                recipients,
                ..Default::default()
            };
            return feedback(out, fb, &addressed_to, &notice, "amazonses");
        }
        _ => {}
    }
    let marks = freeform::NoticeMarks::find(&notice);
    let family = freeform::family_in(&marks, &top.from, &top.subject);
    let scan = freeform::scan(&notice, &marks, family);
    if out.original.is_empty() {
        if let Some(at) = scan.original_at {
            let rest = notice.get(at..).unwrap_or("");
            let after_marker = rest.find('\n').map_or("", |i| &rest[i + 1..]);
            (out.original, addressed_to) = original::from_header_text(after_marker.as_bytes());
        }
    }
    out.notice = notice_text(&scan, &notice);

    if let Some(ds) = parts.delivery_status.as_deref() {
        let report = dsn::parse(ds);
        if !report.recipients.is_empty() {
            out.format = if parts.global { "rfc6533" } else { "rfc3464" };
            apply_report(&mut out, report, &scan);
            return finish(out);
        }
    }
    if dsn::holds_report(&notice) {
        let report = dsn::parse(&notice);
        if !report.recipients.is_empty() {
            out.format = family.name;
            apply_report(&mut out, report, &scan);
            return finish(out);
        }
    }

    let hints = autoreply::AutoreplyHints {
        auto_submitted: top.auto_submitted,
        subject: &top.subject,
        from: &top.from,
        autoreply_header: top.autoreply_header,
    };
    if parts.delivery_status.is_none() && autoreply::is_autoreply(&hints) {
        out.kind = MessageKind::Autoreply;
        out.format = "rfc3834";
        out.recipients.push(RecipientFacts {
            recipient: diag::bare_address(&top.from),
            action: Some("autoreplied".into()),
            diagnostic: out.notice.clone(),
            ..Default::default()
        });
        return out;
    }

    let known_family = family.name != "freeform";
    let bouncy = top.looks_like_bounce()
        || known_family
        || scan.anchored
        || parts.is_report
        || parts.delivery_status.is_some();
    if !scan.recipients.is_empty()
        && (bouncy || scan.recipients.iter().any(|r| has_error_words(&r.text)))
    {
        out.format = family.name;
        out.reporting_mta = generating_server(&notice);
        // The section's codes describe the recipient only when it is the only one.
        let shared = if scan.recipients.len() == 1 {
            scan.section.as_str()
        } else {
            ""
        };
        for r in &scan.recipients {
            // Some formats put the reason before the address (Lotus Notes' "Failure
            // Reasons", carriers' "not delivered within ..."): with one recipient,
            // the whole section is its text.
            let borrowed = !shared.is_empty() && !has_error_words(&r.text);
            let text = if borrowed { shared } else { r.text.as_str() };
            let mut facts = freeform_recipient(&r.address, text, shared);
            // The command is what the recipient's own lines name; a borrowed section
            // also holds envelope listings ("MAIL FROM: ...") that name none.
            if r.command.is_some() || borrowed {
                facts.smtp_command = r.command.map(str::to_string);
            }
            out.recipients.push(facts);
        }
        return finish(out);
    }
    if bouncy {
        // A failure notice that names nobody (v5 sendmail transcripts, carrier
        // notices): the returned original's To is who it was for.
        out.format = family.name;
        let failed_header: Vec<String> = top
            .failed_recipients
            .map(|v| {
                diag::addresses(v)
                    .into_iter()
                    .map(|(_, a)| a.to_string())
                    .collect()
            })
            .unwrap_or_default();
        let named = if failed_header.is_empty() {
            &addressed_to
        } else {
            &failed_header
        };
        for addr in named {
            out.recipients
                .push(freeform_recipient(addr, &scan.section, &scan.section));
        }
        if out.recipients.is_empty() {
            out.kind = MessageKind::Dsn;
        }
        return finish(out);
    }
    out.format = "unparsed";
    out
}

/// Microsoft JMRP complaint: a multipart/mixed "complaint about message" whose
/// returned original carries `X-HmXmrOriginalRecipient`.
fn is_jmrp(parts: &mime::BounceParts<'_>, top: &TopHeaders<'_>) -> bool {
    matches!(&parts.returned, Some(mime::Returned::Message(m))
        if header::read(m, 0).raw_str("X-HmXmrOriginalRecipient").is_some())
        && top.subject.to_lowercase().contains("complaint")
}

fn feedback(
    mut out: ParsedMessage,
    fb: arf::Feedback,
    addressed_to: &[String],
    notice: &str,
    format: &'static str,
) -> ParsedMessage {
    out.kind = MessageKind::Feedback;
    out.format = format;
    out.feedback_type = fb.feedback_type.or(Some("other".into()));
    out.reporting_mta = fb.reporting_mta;
    out.arrival_date = fb.arrival_date;
    out.original_envelope_sender = fb.original_mail_from;
    out.extensions = fb.extensions;
    let mut who = fb.recipients;
    if who.is_empty() {
        who = addressed_to.to_vec();
    }
    if who.is_empty() {
        // Mass mail sent to "Undisclosed Recipients": the complaint is still about
        // that message, and its To is all that names who received it.
        who.extend(
            out.original
                .to
                .as_deref()
                .map(|t| {
                    t.trim()
                        .trim_matches(|c| matches!(c, '<' | '>' | '"'))
                        .trim()
                })
                .filter(|t| !t.is_empty())
                .map(str::to_string),
        );
    }
    out.recipients = arf::recipient_rows(&who);
    out.notice =
        Some(diag::squash_whitespace(diag::bounded(notice, NOTICE_MAX))).filter(|n| !n.is_empty());
    out
}

fn apply_report(out: &mut ParsedMessage, report: dsn::DeliveryStatus, scan: &freeform::NoticeScan) {
    out.reporting_mta = report.reporting_mta;
    out.received_from_mta = report.received_from_mta;
    out.arrival_date = report.arrival_date;
    out.original_envelope_sender = report.original_envelope_sender;
    out.extensions = report.extensions;
    out.recipients = report.recipients;
    // A report without Diagnostic-Code: the notice usually has the server's words.
    for r in &mut out.recipients {
        if r.smtp_command.is_none() {
            let addr = r.recipient.as_deref().unwrap_or("");
            r.smtp_command = scan
                .recipients
                .iter()
                .find(|n| n.address.eq_ignore_ascii_case(addr))
                .and_then(|n| n.command)
                .map(str::to_string);
        }
        if r.diagnostic.is_some() {
            continue;
        }
        let addr = r.recipient.as_deref().unwrap_or("");
        let from_notice = scan
            .recipients
            .iter()
            .find(|n| n.address.eq_ignore_ascii_case(addr))
            .or(if scan.recipients.len() == 1 {
                scan.recipients.first()
            } else {
                None
            })
            .map(|n| n.text.clone())
            .filter(|t| !t.is_empty());
        if let Some(text) = from_notice {
            r.diagnostic = Some(text);
            dsn::complete_from_diagnostic(r);
        }
    }
}

fn freeform_recipient(address: &str, text: &str, section: &str) -> RecipientFacts {
    let own = (!text.is_empty()).then(|| text.to_string());
    let mut r = RecipientFacts {
        recipient: Some(address.to_string()),
        action: Some("failed".into()),
        diagnostic: own,
        ..Default::default()
    };
    dsn::complete_from_diagnostic(&mut r);
    if r.status.is_none() || r.reply_code.is_none() {
        let status = r.status.or_else(|| diag::status(section));
        r.status = status;
        if r.reply_code.is_none() {
            r.reply_code = diag::reply_code(section);
        }
    }
    if r.smtp_command.is_none() {
        r.smtp_command = diag::smtp_command(section).map(str::to_string);
    }
    r
}

/// Fills what the text supports when nothing stated it, and sets the message kind.
fn finish(mut out: ParsedMessage) -> ParsedMessage {
    // Read only if some recipient needs it: the wording search runs over the notice.
    let notice = out.notice.as_deref();
    let notice_class = std::cell::OnceCell::new();
    let notice_class = || *notice_class.get_or_init(|| notice.and_then(class_from_wording));
    let mut any_failed = false;
    for r in &mut out.recipients {
        let action = r.action.as_deref().unwrap_or("failed");
        let delivered = matches!(action, "delivered" | "relayed" | "expanded");
        if !delivered {
            any_failed = true;
        }
        if r.status.is_none() {
            let class = r
                .reply_code
                .map(|c| (c / 100) as u8)
                .filter(|c| matches!(c, 4 | 5))
                .or_else(|| r.diagnostic.as_deref().and_then(class_from_wording))
                .or_else(|| match action {
                    "delayed" => Some(4),
                    "failed" if r.diagnostic.is_some() || notice_class().is_none() => Some(5),
                    _ => None,
                })
                .or_else(notice_class);
            r.status = class.map(|c| StatusCode::new(c, 0, 0));
            r.status_inferred = r.status.is_some();
            if delivered {
                r.status = Some(StatusCode::new(2, 0, 0));
            }
        }
    }
    out.kind = if out.recipients.is_empty() || any_failed {
        MessageKind::Dsn
    } else {
        MessageKind::Delivered
    };
    out
}

/// Exchange's "Generating server: host" line: the server that wrote the NDR.
fn generating_server(notice: &str) -> Option<String> {
    // Most notices have no such line: one search for the phrase rules that out
    // before the notice is read line by line.
    find_ignore_ascii_case(notice.as_bytes(), b"generating server:", 0)?;
    lines::lines(notice).find_map(|l| {
        let t = l.trim();
        let rest = t
            .get(..18)
            .filter(|p| p.eq_ignore_ascii_case("generating server:"))
            .and(t.get(18..))?;
        rest.split_whitespace().next().map(str::to_string)
    })
}

/// `5` for wording that says the failure is final, `4` for wording that says it is
/// temporary (which wins when both appear: "failed ... will retry").
fn class_from_wording(text: &str) -> Option<u8> {
    const TEMPORARY: &[&str] = &[
        "temporary",
        "transient",
        "will retry",
        "still trying",
        "deferred",
        "delayed",
        "will be retried",
        "try again later",
        "not yet been delivered",
    ];
    const PERMANENT: &[&str] = &[
        "permanent",
        "fatal",
        "could not be delivered",
        "undeliverable",
        "has been rejected",
        "failed",
        "unable to deliver",
        "not delivered",
        "rejected",
        "giving up",
        "given up",
    ];
    static WORDING: LazyLock<AhoCorasick> =
        LazyLock::new(|| diag::phrase_automaton(TEMPORARY.iter().chain(PERMANENT).copied()));
    let mut class = None;
    for m in WORDING.find_iter(text) {
        if m.pattern().as_usize() < TEMPORARY.len() {
            return Some(4);
        }
        class = Some(5);
    }
    class
}

fn has_error_words(text: &str) -> bool {
    diag::reply_code(text).is_some_and(|c| c >= 400)
        || diag::status(text).is_some_and(|s| s.class != 2)
        || class_from_wording(text).is_some()
}

fn notice_text(scan: &freeform::NoticeScan, notice: &str) -> Option<String> {
    let text = if scan.section.is_empty() {
        let squashed = diag::squash_whitespace(diag::bounded(notice, NOTICE_MAX * 2));
        diag::bounded(&squashed, NOTICE_MAX).to_string()
    } else {
        diag::bounded(&scan.section, NOTICE_MAX).to_string()
    };
    (!text.is_empty()).then_some(text)
}
