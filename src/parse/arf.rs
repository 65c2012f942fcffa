//! ARF complaint and feedback reports (RFC 5965), and the two non-ARF feedback
//! formats seen in the wild: Microsoft's JMRP complaints (a plain multipart/mixed
//! with the original carrying `X-HmXmrOriginalRecipient`) and Apple Mail's
//! one-click unsubscribe (`X-Apple-Unsubscribe: true`).
//!
//! A feedback report is not a bounce: its rows say `feedback` with the
//! `feedback_type`, and the recipient is whoever complained.

use super::diag;
use super::fields;
use crate::model::RecipientFacts;

/// What a feedback report says.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Feedback {
    pub feedback_type: Option<String>,
    pub reporting_mta: Option<String>,
    pub arrival_date: Option<String>,
    pub original_mail_from: Option<String>,
    pub recipients: Vec<String>,
    pub extensions: Vec<(String, String)>,
}

/// Parses a `message/feedback-report` body.
pub fn parse_report(text: &str) -> Feedback {
    let mut out = Feedback::default();
    for block in fields::parse_blocks(text) {
        for f in block {
            let v = f.value.as_str();
            match f.name.to_ascii_lowercase().as_str() {
                "feedback-type" => {
                    out.feedback_type =
                        Some(v.trim().to_ascii_lowercase()).filter(|v| !v.is_empty())
                }
                "reporting-mta" => out.reporting_mta = Some(fields::strip_type(v).to_string()),
                "arrival-date" | "received-date" => out.arrival_date = Some(v.to_string()),
                "original-mail-from" => out.original_mail_from = diag::bare_address(v),
                "original-rcpt-to" | "removal-recipient" => {
                    if let Some(a) = diag::bare_address(v) {
                        if !out.recipients.iter().any(|r| r.eq_ignore_ascii_case(&a)) {
                            out.recipients.push(a);
                        }
                    }
                }
                _ => out.extensions.push((f.name.to_string(), f.value.clone())),
            }
        }
    }
    out
}

/// Recipient rows for a feedback report: one per complaining recipient.
pub fn recipient_rows(addresses: &[String]) -> Vec<RecipientFacts> {
    addresses
        .iter()
        .map(|a| RecipientFacts {
            recipient: Some(a.clone()),
            action: Some("feedback".into()),
            ..Default::default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arf_fields_and_every_original_rcpt_to() {
        let f = parse_report("Feedback-Type: Abuse\nUser-Agent: SomeGenerator/1.0\nVersion: 1\nOriginal-Mail-From: <neko@example.jp>\nOriginal-Rcpt-To: <a@example.org>\nOriginal-Rcpt-To: b@example.org\nReporting-MTA: dns; fbl.example.net\n");
        assert_eq!(f.feedback_type.as_deref(), Some("abuse"));
        assert_eq!(f.recipients, ["a@example.org", "b@example.org"]);
        assert_eq!(f.original_mail_from.as_deref(), Some("neko@example.jp"));
        assert_eq!(f.reporting_mta.as_deref(), Some("fbl.example.net"));
    }
}
