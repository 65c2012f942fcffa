//! The data every part of bouncelens passes around.
//!
//! Two layers, kept apart on purpose:
//! * [`ParsedMessage`] / [`RecipientFacts`] are *facts read from the bounce* (what the
//!   reporting server said), produced by [`crate::parse`] with no judgement applied;
//! * [`Row`] is the *verdict* for one recipient (reason, permanence, cause and advice),
//!   produced by [`crate::classify`] from the facts and the rule set. Its JSON form is
//!   the contract in SPEC.md ("One classify row") and the events log line.
//!
//! Keeping facts and verdicts separate lets the rules change (SIGHUP) without re-parsing,
//! and lets tests pin parsing and classification independently.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize, Serializer};

/// An RFC 3463 enhanced status code, `class.subject.detail` (e.g. `5.7.509`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StatusCode {
    pub class: u8,
    pub subject: u16,
    pub detail: u16,
}

impl StatusCode {
    pub const fn new(class: u8, subject: u16, detail: u16) -> Self {
        StatusCode {
            class,
            subject,
            detail,
        }
    }

    /// Permanent failure (class 5).
    pub fn is_permanent(&self) -> bool {
        self.class == 5
    }

    /// Finds the first well-formed enhanced status code in free text, e.g. the
    /// `5.1.1` in `smtp; 550 5.1.1 <bob@example.org>... User unknown`.
    /// The code must stand alone (not be part of an IP address or version number).
    pub fn find_in(text: &str) -> Option<StatusCode> {
        let bytes = text.as_bytes();
        // Only a 2, 4 or 5 can start a code: memchr skips the letters between them. A
        // candidate inside a number ("12.5.1.1") has a digit or dot before it and is
        // refused like the number's own start was.
        memchr::memchr3_iter(b'2', b'4', b'5', bytes).find_map(|i| {
            if i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'.') {
                return None;
            }
            let rest = &bytes[i..];
            let end = rest
                .iter()
                .position(|b| !(b.is_ascii_digit() || *b == b'.'))
                .unwrap_or(rest.len());
            let mut candidate = &rest[..end];
            while let Some(shorter) = candidate.strip_suffix(b".") {
                candidate = shorter;
            }
            StatusCode::parse_bytes(candidate)
        })
    }

    /// The strict form of [`FromStr`] without an error value: `class.subject.detail`,
    /// class 2/4/5, subject and detail 1 to 3 digits, nothing else.
    fn parse_bytes(s: &[u8]) -> Option<StatusCode> {
        let mut parts = s.split(|b| *b == b'.');
        let (Some(c), Some(sub), Some(det), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        let number = |p: &[u8], max: usize| {
            (!p.is_empty() && p.len() <= max && p.iter().all(u8::is_ascii_digit))
                .then(|| p.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0')))
        };
        let class = number(c, 1)?;
        if !matches!(class, 2 | 4 | 5) {
            return None;
        }
        Some(StatusCode {
            class: class as u8,
            subject: number(sub, 3)?,
            detail: number(det, 3)?,
        })
    }
}

impl fmt::Display for StatusCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// Error for a string that is not an enhanced status code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an enhanced status code (expected class.subject.detail such as 5.1.1): {0:?}")]
pub struct BadStatusCode(pub String);

impl FromStr for StatusCode {
    type Err = BadStatusCode;

    /// Strict: `class.subject.detail`, class 2/4/5, subject and detail at most 3 digits
    /// (RFC 3463), no surrounding text.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StatusCode::parse_bytes(s.as_bytes()).ok_or_else(|| BadStatusCode(s.to_string()))
    }
}

impl Serialize for StatusCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for StatusCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Why a recipient failed: Sisimai v5's taxonomy plus `failedstarttls` and `suppressed`
/// (SPEC.md, "Reason taxonomy"). Serialized as the lowercase name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reason {
    Userunknown,
    Hostunknown,
    Hasmoved,
    Notaccept,
    Mailboxfull,
    Suspend,
    Exceedlimit,
    Mesgtoobig,
    Filtered,
    Rejected,
    Blocked,
    Badreputation,
    Requireptr,
    Authfailure,
    Policyviolation,
    Spamdetected,
    Virusdetected,
    Contenterror,
    Notcompliantrfc,
    Securityerror,
    Norelaying,
    Toomanyconn,
    Speeding,
    Expired,
    Networkerror,
    Systemerror,
    Systemfull,
    Mailererror,
    Syntaxerror,
    Onhold,
    Undefined,
    Delivered,
    Feedback,
    Vacation,
    Failedstarttls,
    Suppressed,
}

impl Reason {
    /// Every reason, in taxonomy order (for docs, metrics pre-registration and tests).
    pub const ALL: [Reason; 36] = [
        Reason::Userunknown,
        Reason::Hostunknown,
        Reason::Hasmoved,
        Reason::Notaccept,
        Reason::Mailboxfull,
        Reason::Suspend,
        Reason::Exceedlimit,
        Reason::Mesgtoobig,
        Reason::Filtered,
        Reason::Rejected,
        Reason::Blocked,
        Reason::Badreputation,
        Reason::Requireptr,
        Reason::Authfailure,
        Reason::Policyviolation,
        Reason::Spamdetected,
        Reason::Virusdetected,
        Reason::Contenterror,
        Reason::Notcompliantrfc,
        Reason::Securityerror,
        Reason::Norelaying,
        Reason::Toomanyconn,
        Reason::Speeding,
        Reason::Expired,
        Reason::Networkerror,
        Reason::Systemerror,
        Reason::Systemfull,
        Reason::Mailererror,
        Reason::Syntaxerror,
        Reason::Onhold,
        Reason::Undefined,
        Reason::Delivered,
        Reason::Feedback,
        Reason::Vacation,
        Reason::Failedstarttls,
        Reason::Suppressed,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Reason::Userunknown => "userunknown",
            Reason::Hostunknown => "hostunknown",
            Reason::Hasmoved => "hasmoved",
            Reason::Notaccept => "notaccept",
            Reason::Mailboxfull => "mailboxfull",
            Reason::Suspend => "suspend",
            Reason::Exceedlimit => "exceedlimit",
            Reason::Mesgtoobig => "mesgtoobig",
            Reason::Filtered => "filtered",
            Reason::Rejected => "rejected",
            Reason::Blocked => "blocked",
            Reason::Badreputation => "badreputation",
            Reason::Requireptr => "requireptr",
            Reason::Authfailure => "authfailure",
            Reason::Policyviolation => "policyviolation",
            Reason::Spamdetected => "spamdetected",
            Reason::Virusdetected => "virusdetected",
            Reason::Contenterror => "contenterror",
            Reason::Notcompliantrfc => "notcompliantrfc",
            Reason::Securityerror => "securityerror",
            Reason::Norelaying => "norelaying",
            Reason::Toomanyconn => "toomanyconn",
            Reason::Speeding => "speeding",
            Reason::Expired => "expired",
            Reason::Networkerror => "networkerror",
            Reason::Systemerror => "systemerror",
            Reason::Systemfull => "systemfull",
            Reason::Mailererror => "mailererror",
            Reason::Syntaxerror => "syntaxerror",
            Reason::Onhold => "onhold",
            Reason::Undefined => "undefined",
            Reason::Delivered => "delivered",
            Reason::Feedback => "feedback",
            Reason::Vacation => "vacation",
            Reason::Failedstarttls => "failedstarttls",
            Reason::Suppressed => "suppressed",
        }
    }

    /// Rows with these reasons are not delivery failures: `permanent` and
    /// `hard_bounce` are null for them.
    pub fn is_failure(&self) -> bool {
        !matches!(
            self,
            Reason::Delivered | Reason::Feedback | Reason::Vacation
        )
    }

    /// The *address* is bad and should be suppressed (SPEC: userunknown, hostunknown,
    /// hasmoved, and notaccept when permanent).
    pub fn is_hard_bounce(&self, permanent: bool) -> bool {
        match self {
            Reason::Userunknown | Reason::Hostunknown | Reason::Hasmoved => true,
            Reason::Notaccept => permanent,
            _ => false,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Reason {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reason::ALL
            .iter()
            .copied()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown reason {s:?}"))
    }
}

/// Who has to act to fix a failure (SPEC.md, `fix_by`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FixBy {
    /// The person who sent the message (typo, bad address, content).
    Sender,
    /// The sender's mail administrator (own server, tenant, DNS, reputation).
    SenderAdmin,
    /// The recipient (full mailbox, own filters).
    Recipient,
    /// The recipient's mail administrator (their server, policy, allow-lists).
    RecipientAdmin,
    /// Nobody: temporary, clears by itself.
    None,
}

impl FixBy {
    pub const ALL: [FixBy; 5] = [
        FixBy::Sender,
        FixBy::SenderAdmin,
        FixBy::Recipient,
        FixBy::RecipientAdmin,
        FixBy::None,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            FixBy::Sender => "sender",
            FixBy::SenderAdmin => "sender_admin",
            FixBy::Recipient => "recipient",
            FixBy::RecipientAdmin => "recipient_admin",
            FixBy::None => "none",
        }
    }
}

impl fmt::Display for FixBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Language of titles and advice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    #[default]
    En,
    Ja,
}

impl FromStr for Lang {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "en" => Ok(Lang::En),
            "ja" => Ok(Lang::Ja),
            _ => Err(format!("unknown language {s:?} (expected en or ja)")),
        }
    }
}

/// What kind of message a parsed mail is; also the `kind` label of
/// `bouncelens_messages_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum MessageKind {
    /// A delivery status notification / NDR with at least one failed or delayed recipient.
    Dsn,
    /// An ARF (RFC 5965) complaint / feedback report.
    Feedback,
    /// An RFC 3834 auto-reply (vacation, out of office).
    Autoreply,
    /// A DSN that only reports success (Action: delivered / relayed / expanded).
    Delivered,
    /// Nothing recognisable as any of the above.
    #[default]
    Unparsed,
}

impl MessageKind {
    pub const ALL: [MessageKind; 5] = [
        MessageKind::Dsn,
        MessageKind::Feedback,
        MessageKind::Autoreply,
        MessageKind::Delivered,
        MessageKind::Unparsed,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            MessageKind::Dsn => "dsn",
            MessageKind::Feedback => "feedback",
            MessageKind::Autoreply => "autoreply",
            MessageKind::Delivered => "delivered",
            MessageKind::Unparsed => "unparsed",
        }
    }
}

/// Headers of the message that bounced, as returned inside the bounce
/// (`message/rfc822`, `text/rfc822-headers`, `message/global`, or inline text).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginalMessage {
    pub message_id: Option<String>,
    pub from: Option<String>,
    /// The `Sender:` header, if the original had one (advice routing prefers it).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sender: Option<String>,
    pub to: Option<String>,
    pub subject: Option<String>,
    pub date: Option<String>,
}

impl OriginalMessage {
    pub fn is_empty(&self) -> bool {
        *self == OriginalMessage::default()
    }
}

/// Facts about one recipient, as the bounce states them. Field names follow RFC 3464.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RecipientFacts {
    /// Final-Recipient (or the address a free-form bounce names), bare `local@domain`.
    pub recipient: Option<String>,
    /// Original-Recipient, when given and different.
    pub original_recipient: Option<String>,
    /// `failed`, `delayed`, `delivered`, `relayed`, `expanded` (lowercase).
    pub action: Option<String>,
    /// The enhanced status code as found (Status field, or the best the text supports).
    pub status: Option<StatusCode>,
    /// True when the bounce stated no code at all and `status` is only the class
    /// (`5.0.0` / `4.0.0`) the parser inferred from the wording or the action. Such a
    /// code is not evidence of a cause: classification then relies on the text.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub status_inferred: bool,
    /// The SMTP reply code (e.g. 550) found in the diagnostic, if any.
    pub reply_code: Option<u16>,
    /// Diagnostic-Code (or the server's error text for free-form bounces), unfolded.
    pub diagnostic: Option<String>,
    /// The SMTP command the remote server rejected (`MAIL`, `RCPT`, `DATA`, ...), when the
    /// bounce says so (Postfix "in reply to RCPT TO", qmail, Exim "after RCPT TO").
    pub smtp_command: Option<String>,
    pub remote_mta: Option<String>,
    pub last_attempt_date: Option<String>,
    pub will_retry_until: Option<String>,
    /// `X-*` and other fields of the per-recipient block we do not model, in order.
    pub extensions: Vec<(String, String)>,
}

/// One parsed message: the per-message facts and every recipient, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ParsedMessage {
    pub kind: MessageKind,
    /// Which parser understood it: `rfc3464`, `rfc6533`, `arf`, `rfc3834`, `exchange`,
    /// `qmail`, `exim`, ... (the `format` field of a row).
    pub format: &'static str,
    pub reporting_mta: Option<String>,
    pub received_from_mta: Option<String>,
    pub arrival_date: Option<String>,
    /// Postfix's X-Postfix-Sender and similar: the envelope sender of the original.
    pub original_envelope_sender: Option<String>,
    /// Per-message `X-*` fields of the delivery-status block, in order.
    pub extensions: Vec<(String, String)>,
    pub recipients: Vec<RecipientFacts>,
    pub original: OriginalMessage,
    /// ARF Feedback-Type (`abuse`, `opt-out`, ...), for [`MessageKind::Feedback`].
    pub feedback_type: Option<String>,
    /// The human-readable notice (first text part / body before the returned message),
    /// trimmed and bounded; classification may consult it when a recipient's own
    /// diagnostic says nothing useful.
    pub notice: Option<String>,
}

/// The cause a rule assigns, rendered in one language (the `cause` object of a row).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cause {
    pub id: String,
    pub title: String,
    pub fix_by: FixBy,
    pub advice: String,
    pub reference: Option<String>,
}

/// One classify row (SPEC.md "One classify row"); field order is the JSON order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    pub source: String,
    pub message_index: usize,
    pub recipient: Option<String>,
    pub action: Option<String>,
    pub status: Option<String>,
    pub reply_code: Option<u16>,
    pub reason: Reason,
    pub permanent: Option<bool>,
    pub hard_bounce: Option<bool>,
    pub diagnostic: Option<String>,
    pub remote_mta: Option<String>,
    pub reporting_mta: Option<String>,
    pub format: String,
    pub feedback_type: Option<String>,
    pub cause: Option<Cause>,
    pub original: OriginalMessage,
}

/// The SMTP envelope a message arrived with.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// MAIL FROM path without brackets; empty for the null sender `<>`.
    pub mail_from: String,
    /// RCPT TO addresses, in order.
    pub rcpt_to: Vec<String>,
    /// Client address and HELO name, for logs.
    pub client_addr: Option<String>,
    pub helo: Option<String>,
}

/// A spooled message after classification: what the events log, metrics and advice
/// mail are made from. This is the seam between the daemon's pipeline and advice.
#[derive(Debug, Clone)]
pub struct ProcessedMessage {
    pub queue_id: String,
    /// When the DATA reply was sent (RFC 3339 UTC).
    pub received_at: String,
    pub envelope: Envelope,
    /// The message exactly as received.
    pub raw: std::sync::Arc<[u8]>,
    pub parsed: ParsedMessage,
    pub rows: Vec<Row>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The byte loop [`StatusCode::find_in`] was before it used memchr.
    fn find_in_by_bytes(text: &str) -> Option<StatusCode> {
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let c = bytes[i];
            if matches!(c, b'2' | b'4' | b'5')
                && (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'.'))
            {
                let rest = &text[i..];
                let end = rest
                    .find(|ch: char| !(ch.is_ascii_digit() || ch == '.'))
                    .unwrap_or(rest.len());
                if let Ok(code) = rest[..end].trim_end_matches('.').parse::<StatusCode>() {
                    return Some(code);
                }
                i += end.max(1);
                continue;
            }
            i += 1;
        }
        None
    }

    proptest::proptest! {
        #[test]
        fn find_in_agrees_with_the_byte_loop(
            text in "([0-9a-z. ;:-]{0,3}[245][.][0-9]{0,4}[.][0-9]{0,4}[.a-z ]{0,2}){0,6}"
        ) {
            proptest::prop_assert_eq!(StatusCode::find_in(&text), find_in_by_bytes(&text));
        }
    }

    #[test]
    fn status_code_parses_strictly() {
        assert_eq!(
            "5.7.509".parse::<StatusCode>().unwrap(),
            StatusCode::new(5, 7, 509)
        );
        for bad in ["5.7", "6.1.1", "5.1.1.1", "5.1.1a", "", "5..1", "5.1234.1"] {
            assert!(bad.parse::<StatusCode>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn status_code_found_in_text_but_not_in_ip_addresses() {
        assert_eq!(
            StatusCode::find_in("smtp; 550 5.1.1 <bob@example.org>... User unknown"),
            Some(StatusCode::new(5, 1, 1))
        );
        assert_eq!(StatusCode::find_in("host 192.0.2.5 said 550"), None);
        assert_eq!(
            StatusCode::find_in("(#5.5.0)"),
            Some(StatusCode::new(5, 5, 0))
        );
        assert_eq!(
            StatusCode::find_in("ends 4.4.7."),
            Some(StatusCode::new(4, 4, 7))
        );
    }

    #[test]
    fn reason_names_round_trip() {
        for r in Reason::ALL {
            assert_eq!(r.as_str().parse::<Reason>().unwrap(), r);
            assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{r}\""));
        }
    }

    #[test]
    fn hard_bounce_only_for_bad_addresses() {
        assert!(Reason::Userunknown.is_hard_bounce(false));
        assert!(Reason::Notaccept.is_hard_bounce(true));
        assert!(!Reason::Notaccept.is_hard_bounce(false));
        assert!(!Reason::Mailboxfull.is_hard_bounce(true));
    }
}
