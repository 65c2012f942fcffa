//! RFC 3834 auto-replies (vacation, out of office): not bounces, reported as
//! `vacation` so they never count as failures.
//!
//! The trap: Exim, Postfix and Exchange put `Auto-Submitted: auto-replied` on real
//! bounces too. So an auto-reply is a message that *says* it is one (headers or a
//! subject such as "Automatic reply:") **and** does not look like a bounce (no
//! mailer-daemon sender, no delivery-failure subject). The caller also tries the
//! bounce parsers first; this is the last word, not the first.

/// Subject prefixes that auto-responders use (lower case).
const SUBJECT_PREFIXES: &[&str] = &[
    "auto:",
    "automatic reply",
    "auto reply",
    "autoreply",
    "auto-reply",
    "auto response",
    "autoresponse",
    "out of office",
    "out of the office",
    "away from",
    "vacation",
    "away until",
    "abwesenheitsnotiz",
    "réponse automatique",
    "自動応答",
    "自動返信",
    "不在",
];

/// Words in a subject or sender that mean the message is a bounce, not an auto-reply.
const BOUNCE_WORDS: &[&str] = &[
    "mailer-daemon",
    "postmaster",
    "mail delivery",
    "undeliver",
    "undelivered",
    "delivery status",
    "delivery failure",
    "delivery failed",
    "failure notice",
    "returned mail",
    "non remis",
    "unzustellbar",
    "could not be delivered",
    "not delivered",
];

/// Header facts needed to decide.
#[derive(Debug, Default, Clone, Copy)]
pub struct AutoreplyHints<'a> {
    pub auto_submitted: Option<&'a str>,
    pub subject: &'a str,
    pub from: &'a str,
    /// X-Autoreply, X-Autorespond, X-Auto-Response-Suppress or Precedence: auto_reply.
    pub autoreply_header: bool,
}

/// True if the message is an auto-reply rather than a bounce.
pub fn is_autoreply(h: &AutoreplyHints<'_>) -> bool {
    let subject = h.subject.trim().to_lowercase();
    let from = h.from.to_lowercase();
    if BOUNCE_WORDS
        .iter()
        .any(|w| subject.contains(w) || from.contains(w))
    {
        return false;
    }
    let says_auto = h
        .auto_submitted
        .is_some_and(|v| v.trim().to_ascii_lowercase().starts_with("auto-replied"))
        || h.autoreply_header;
    let subject_says = SUBJECT_PREFIXES.iter().any(|p| subject.starts_with(p));
    says_auto || subject_says
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vacation_reply_is_an_autoreply() {
        let h = AutoreplyHints {
            auto_submitted: Some("auto-replied"),
            subject: "Away until May 5",
            from: "bob@example.org",
            autoreply_header: false,
        };
        assert!(is_autoreply(&h));
    }

    #[test]
    fn exim_bounce_with_auto_replied_header_is_not_an_autoreply() {
        let h = AutoreplyHints {
            auto_submitted: Some("auto-replied"),
            subject: "Mail delivery failed: returning message to sender",
            from: "Mail Delivery System <Mailer-Daemon@mx.example.org>",
            autoreply_header: false,
        };
        assert!(!is_autoreply(&h));
    }
}
