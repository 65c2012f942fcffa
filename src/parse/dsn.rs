//! RFC 3464 delivery-status reports (and RFC 6533 `global` ones, which differ only in
//! allowing UTF-8): one per-message field block, then one block per recipient.
//!
//! Real reports bend the format: recipients in one block with no blank line between
//! them, per-message fields mixed into the recipient block, a missing Status with the
//! code only in Diagnostic-Code. This parser reads them all the same way and keeps
//! every field it does not model as an extension.

use super::diag;
use super::fields::{self, Block};
use crate::model::{RecipientFacts, StatusCode};
use crate::phrases::find_ignore_ascii_case;

/// What a delivery-status body says.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DeliveryStatus {
    pub reporting_mta: Option<String>,
    pub received_from_mta: Option<String>,
    pub arrival_date: Option<String>,
    pub original_envelope_sender: Option<String>,
    pub extensions: Vec<(String, String)>,
    pub recipients: Vec<RecipientFacts>,
}

/// Fields that belong to a recipient; anything else is per-message.
const RECIPIENT_FIELDS: &[&str] = &[
    "final-recipient",
    "original-recipient",
    "x-actual-recipient",
    "action",
    "status",
    "diagnostic-code",
    "remote-mta",
    "last-attempt-date",
    "will-retry-until",
    "final-log-id",
];

fn is_recipient_field(name: &str) -> bool {
    RECIPIENT_FIELDS
        .iter()
        .any(|f| name.eq_ignore_ascii_case(f))
}

/// Parses a delivery-status body. Recipients without a recipient address are dropped
/// (they carry nothing to report on).
pub fn parse(text: &str) -> DeliveryStatus {
    let mut out = DeliveryStatus::default();
    for block in fields::parse_blocks(text) {
        let mut current: Option<RecipientFacts> = None;
        for f in &block {
            let name = f.name;
            let x_field = name
                .as_bytes()
                .get(..2)
                .is_some_and(|p| p.eq_ignore_ascii_case(b"x-"));
            if !is_recipient_field(name) && !x_field {
                per_message_field(&mut out, name, &f.value);
                continue;
            }
            if !is_recipient_field(name) && current.is_none() {
                per_message_field(&mut out, name, &f.value);
                continue;
            }
            let starts_new = name.eq_ignore_ascii_case("final-recipient")
                && current.as_ref().is_some_and(|r| r.recipient.is_some());
            if starts_new {
                finish(&mut out, current.take());
            }
            let r = current.get_or_insert_with(RecipientFacts::default);
            recipient_field(r, name, &f.value);
        }
        finish(&mut out, current);
    }
    out
}

fn per_message_field(out: &mut DeliveryStatus, name: &str, value: &str) {
    let v = || Some(fields::strip_type(value).to_string()).filter(|v| !v.is_empty());
    match name.to_ascii_lowercase().as_str() {
        "reporting-mta" => out.reporting_mta = out.reporting_mta.take().or_else(v),
        "received-from-mta" => out.received_from_mta = out.received_from_mta.take().or_else(v),
        "arrival-date" => out.arrival_date = out.arrival_date.take().or_else(v),
        "x-postfix-sender" | "x-original-message-sender" | "x-sender" => {
            out.original_envelope_sender = out
                .original_envelope_sender
                .take()
                .or_else(|| diag::bare_address(value))
        }
        _ => out.extensions.push((name.to_string(), value.to_string())),
    }
}

fn recipient_field(r: &mut RecipientFacts, name: &str, value: &str) {
    let stripped = || Some(fields::strip_type(value).to_string()).filter(|v| !v.is_empty());
    match name.to_ascii_lowercase().as_str() {
        "final-recipient" => r.recipient = diag::bare_address(value).or(r.recipient.take()),
        "x-actual-recipient" => {
            if r.recipient.is_none() {
                r.recipient = diag::bare_address(value);
            }
        }
        "original-recipient" => r.original_recipient = diag::bare_address(value),
        "action" => {
            r.action = value
                .split(|c: char| c.is_whitespace() || c == '(' || c == ';')
                .next()
                .map(|a| a.to_ascii_lowercase())
                .filter(|a| !a.is_empty())
        }
        "status" => r.status = diag::status(value),
        // Kept with its type (`smtp; 550 ...`, `X-Unix; 75`): the type tells an SMTP
        // reply from a local delivery program's exit status.
        "diagnostic-code" => {
            r.diagnostic = Some(value.trim().to_string()).filter(|v| !v.is_empty())
        }
        "remote-mta" => r.remote_mta = stripped(),
        "last-attempt-date" => r.last_attempt_date = stripped(),
        "will-retry-until" => r.will_retry_until = stripped(),
        _ => r.extensions.push((name.to_string(), value.to_string())),
    }
}

/// Completes a recipient from its diagnostic (reply code, command, a status code when
/// Status is missing or only a class default) and keeps it if it names someone.
fn finish(out: &mut DeliveryStatus, r: Option<RecipientFacts>) {
    let Some(mut r) = r else { return };
    if r.recipient.is_none() {
        r.recipient = r.original_recipient.clone();
    }
    if r.recipient.is_none() {
        return;
    }
    if r.original_recipient.as_deref() == r.recipient.as_deref() {
        r.original_recipient = None;
    }
    complete_from_diagnostic(&mut r);
    out.recipients.push(r);
}

/// Fills reply code, SMTP command and a better status code from the diagnostic text.
pub fn complete_from_diagnostic(r: &mut RecipientFacts) {
    let Some(d) = r.diagnostic.as_deref() else {
        return;
    };
    if r.reply_code.is_none() {
        r.reply_code = diag::reply_code(d);
    }
    if r.smtp_command.is_none() {
        r.smtp_command = diag::smtp_command(d).map(str::to_string);
    }
    // The code the remote server sent after its reply code beats the Status field
    // within the same class: the field is the reporting MTA's summary and often
    // generic (`4.4.7` "expired" on top of the last real error).
    r.status = match diag::replied_status(d) {
        Some(t) if r.status.is_none_or(|f| f.class == t.class) => Some(t),
        _ => better_status(r.status, diag::status(d)),
    };
}

/// Chooses between the Status field and a code found elsewhere in the diagnostic:
/// the field wins unless it is missing or a bare class default (`5.0.0`) that the
/// text refines within the same class.
pub fn better_status(field: Option<StatusCode>, text: Option<StatusCode>) -> Option<StatusCode> {
    match (field, text) {
        (None, t) => t,
        (Some(f), Some(t))
            if f.subject == 0
                && f.detail == 0
                && t.class == f.class
                && (t.subject, t.detail) != (0, 0) =>
        {
            Some(t)
        }
        (f, _) => f,
    }
}

/// True if `text` holds a report pasted into plain text: [`looks_like_report`] of its
/// field blocks. Most notices have no `Final-Recipient` field at all, and one
/// search for the name says so before the text is split into fields.
pub fn holds_report(text: &str) -> bool {
    has_final_recipient(text.as_bytes()) && looks_like_report(&fields::parse_blocks(text))
}

/// Whether `text` has "final-recipient" (ASCII case ignored) anywhere: run over
/// every free-form notice, so found from dash to dash (see
/// [`find_ignore_ascii_case`]) rather than by a case-ignoring Aho-Corasick search,
/// which has to consider each `f` and `F`.
fn has_final_recipient(text: &[u8]) -> bool {
    find_ignore_ascii_case(text, b"final-recipient", 0).is_some()
}

/// True if `block` looks like a delivery-status group (used to find reports pasted
/// into plain text).
pub fn looks_like_report(blocks: &[Block<'_>]) -> bool {
    blocks.iter().any(|b| {
        fields::get(b, "final-recipient").is_some()
            && (fields::get(b, "action").is_some() || fields::get(b, "status").is_some())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn final_recipient_is_found_as_a_case_ignoring_search_would(
            text in "(final|FINAL|Final|-|recipient|Recipient|RECIPIENT|x|\u{e9}| )*",
        ) {
            let lower = text.to_ascii_lowercase();
            proptest::prop_assert_eq!(
                has_final_recipient(text.as_bytes()),
                lower.contains("final-recipient")
            );
        }
    }

    const REPORT: &str = "Reporting-MTA: dns; mx.example.com\nX-Postfix-Queue-ID: 1234\nX-Postfix-Sender: rfc822; neko@example.jp\nArrival-Date: Thu, 29 Apr 2010 23:34:45 +0900\n\nFinal-Recipient: rfc822; bob@example.org\nOriginal-Recipient: rfc822;bob@example.org\nAction: failed\nStatus: 5.1.1\nRemote-MTA: dns; mx.example.org\nDiagnostic-Code: smtp; 550 5.1.1 <bob@example.org>: Recipient address\n    rejected: User unknown (in reply to RCPT TO command)\n\nFinal-Recipient: rfc822; carol@example.org\nAction: delayed\nStatus: 4.0.0\nDiagnostic-Code: smtp; 452 4.2.2 Mailbox full\nFinal-Recipient: rfc822; dave@example.org\nAction: failed\nStatus: 5.0.0\n";

    #[test]
    fn per_message_and_per_recipient_blocks() {
        let d = parse(REPORT);
        assert_eq!(d.reporting_mta.as_deref(), Some("mx.example.com"));
        assert_eq!(
            d.original_envelope_sender.as_deref(),
            Some("neko@example.jp")
        );
        assert_eq!(
            d.extensions,
            vec![("X-Postfix-Queue-ID".to_string(), "1234".to_string())]
        );
        assert_eq!(d.recipients.len(), 3);
        let bob = &d.recipients[0];
        assert_eq!(bob.recipient.as_deref(), Some("bob@example.org"));
        assert_eq!(bob.original_recipient, None);
        assert_eq!(bob.status, Some(StatusCode::new(5, 1, 1)));
        assert_eq!(bob.reply_code, Some(550));
        assert_eq!(bob.smtp_command.as_deref(), Some("RCPT"));
        assert_eq!(bob.remote_mta.as_deref(), Some("mx.example.org"));
        assert!(bob
            .diagnostic
            .as_deref()
            .unwrap()
            .ends_with("User unknown (in reply to RCPT TO command)"));
    }

    #[test]
    fn class_default_status_refined_by_diagnostic_code() {
        let d = parse(REPORT);
        assert_eq!(d.recipients[1].status, Some(StatusCode::new(4, 2, 2)));
        assert_eq!(d.recipients[1].action.as_deref(), Some("delayed"));
        assert_eq!(
            d.recipients[2].recipient.as_deref(),
            Some("dave@example.org")
        );
        assert_eq!(d.recipients[2].status, Some(StatusCode::new(5, 0, 0)));
    }
}
