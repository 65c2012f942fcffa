//! Classification: per-recipient facts + rule set -> [`Row`]s (SPEC "One classify row").
//! Pure and I/O-free like the parser.
//!
//! The parser reports what the bounce says; this module decides what it means. For
//! each recipient it builds one [`MatchInput`] (status, reply code, command, the
//! reporting and remote hosts, and the diagnostic with its whitespace squashed once),
//! asks the rule set for the best rule, and fills the row. The diagnostic is matched
//! first; only when no text rule recognises it is the message's notice consulted,
//! because a notice is mostly boilerplate and the server's own words are better
//! evidence.

use crate::model::{Lang, MessageKind, ParsedMessage, Reason, RecipientFacts, Row};
use crate::parse;
use crate::rules::{CodeTier, MatchInput, Rule, RuleSet};

/// Classifies one parsed message. Always returns at least one row.
pub fn classify_message(
    msg: &ParsedMessage,
    rules: &RuleSet,
    lang: Lang,
    source: &str,
    message_index: usize,
) -> Vec<Row> {
    let base = |recipient: Option<String>| Row {
        source: source.to_string(),
        message_index,
        recipient,
        action: None,
        status: None,
        reply_code: None,
        reason: Reason::Undefined,
        permanent: None,
        hard_bounce: None,
        diagnostic: None,
        remote_mta: None,
        reporting_mta: msg.reporting_mta.clone(),
        format: msg.format.to_string(),
        feedback_type: msg.feedback_type.clone(),
        cause: None,
        original: msg.original.clone(),
    };
    if msg.recipients.is_empty() {
        let mut row = base(None);
        row.reason = match msg.kind {
            MessageKind::Feedback => Reason::Feedback,
            MessageKind::Autoreply => Reason::Vacation,
            MessageKind::Delivered => Reason::Delivered,
            _ if msg.notice.is_some() => Reason::Onhold,
            _ => Reason::Undefined,
        };
        return vec![row];
    }
    msg.recipients
        .iter()
        .map(|r| {
            let mut row = base(r.recipient.clone());
            row.action = r.action.clone();
            row.status = r.status.map(|s| s.to_string());
            row.reply_code = r.reply_code;
            row.diagnostic = r.diagnostic.clone();
            row.remote_mta = r.remote_mta.clone();
            let (reason, rule) = judge(msg, r, rules);
            row.reason = reason;
            row.cause = rule.map(|rule| rule.cause(lang));
            if reason.is_failure() {
                let permanent = r
                    .status
                    .map(|s| s.is_permanent())
                    .or(r.reply_code.map(|c| c >= 500));
                row.permanent = permanent;
                row.hard_bounce = Some(reason.is_hard_bounce(permanent.unwrap_or(false)));
            }
            row
        })
        .collect()
}

/// The reason for one recipient, and the rule that gave it (if any).
fn judge<'r>(
    msg: &ParsedMessage,
    r: &RecipientFacts,
    rules: &'r RuleSet,
) -> (Reason, Option<&'r Rule>) {
    match msg.kind {
        MessageKind::Feedback => return (Reason::Feedback, None),
        MessageKind::Autoreply => return (Reason::Vacation, None),
        _ => {}
    }
    let action = r.action.as_deref().unwrap_or("");
    if matches!(action, "delivered" | "relayed" | "expanded")
        || r.status.is_some_and(|s| s.class == 2)
    {
        return (Reason::Delivered, None);
    }
    let diagnostic = r
        .diagnostic
        .as_deref()
        .map(parse::diag::squash_whitespace)
        .unwrap_or_default();
    let domain = r
        .recipient
        .as_deref()
        .and_then(|a| a.rsplit_once('@'))
        .map(|(_, d)| d);
    let hosts: Vec<&str> = [
        msg.reporting_mta.as_deref(),
        r.remote_mta.as_deref(),
        domain,
    ]
    .into_iter()
    .flatten()
    .collect();
    let mut input = MatchInput {
        // An inferred class (`5.0.0` for "failed") says nothing about the cause.
        status: r.status.filter(|_| !r.status_inferred),
        reply_code: r.reply_code,
        text: &diagnostic,
        hosts: &hosts,
        recipient: r.recipient.as_deref(),
        command: r.smtp_command.as_deref(),
    };
    let mut evidence = Evidence::gather(rules, &input);
    if evidence.text.is_empty() && evidence.host.is_none() && evidence.code.is_none() {
        // The recipient's own lines name no cause: the notice may (its boilerplate
        // is weaker evidence, so it is only read when nothing better was found).
        if let Some(notice) = msg.notice.as_deref() {
            let wider = format!("{diagnostic} {notice}");
            input.text = &wider;
            let more = Evidence::gather(rules, &input);
            if !more.text.is_empty() || more.host.is_some() {
                evidence = more;
            }
        }
    }
    // A class default says "undefined": the action or the mere presence of the
    // server's words still tell a little more.
    match evidence.decide() {
        // A rule whose words say "no specific cause" is a verdict, not a default.
        Some(rule) if rule.reason != Reason::Undefined || !rule.text.is_empty() => {
            (rule.reason, Some(rule))
        }
        rule if action == "delayed" => (Reason::Expired, rule),
        rule if !diagnostic.is_empty() => (Reason::Onhold, rule),
        rule => (Reason::Undefined, rule),
    }
}

/// Reasons tested in this order when the server's words and its status code point
/// at different causes; the first one with evidence wins. The order (Sisimai's, the
/// field's reference) puts causes that make other wording moot first: a full mailbox
/// or a disabled account explains an "unknown user" better than the reverse, and the
/// connection-level verdicts (blocked, too many connections) come last because
/// servers use their wording loosely.
const FIRST_PASS: &[Reason] = &[
    Reason::Mailboxfull,
    Reason::Mesgtoobig,
    Reason::Exceedlimit,
    Reason::Suspend,
    Reason::Hasmoved,
    Reason::Norelaying,
    Reason::Authfailure,
    Reason::Userunknown,
    Reason::Filtered,
    Reason::Requireptr,
    Reason::Notcompliantrfc,
    Reason::Badreputation,
    Reason::Contenterror,
    Reason::Rejected,
    Reason::Hostunknown,
    Reason::Spamdetected,
    Reason::Speeding,
    Reason::Toomanyconn,
    Reason::Blocked,
];

/// Reasons only the wording can establish, tested after [`FIRST_PASS`] when the
/// status code is missing or names only a vague cause (see [`is_vague`]).
const SECOND_PASS: &[Reason] = &[
    Reason::Mailboxfull,
    Reason::Authfailure,
    Reason::Badreputation,
    Reason::Speeding,
    Reason::Spamdetected,
    Reason::Virusdetected,
    Reason::Policyviolation,
    Reason::Norelaying,
    Reason::Systemerror,
    Reason::Networkerror,
    Reason::Suspend,
    Reason::Contenterror,
    Reason::Systemfull,
    Reason::Notaccept,
    Reason::Expired,
    Reason::Failedstarttls,
    Reason::Securityerror,
    Reason::Suppressed,
    Reason::Mailererror,
];

/// Reasons a status code gives only in broad strokes (`5.7.1` "security or policy",
/// `4.4.7` "expired"): specific wording refines them.
fn is_vague(reason: Reason) -> bool {
    matches!(
        reason,
        Reason::Undefined
            | Reason::Onhold
            | Reason::Systemerror
            | Reason::Securityerror
            | Reason::Expired
            | Reason::Networkerror
            | Reason::Hostunknown
            | Reason::Userunknown
    )
}

/// What the rule set found for one failure, sorted by kind of evidence. Each list is
/// in the rule engine's precedence order, so the first rule of a reason is the most
/// specific explanation of it.
#[derive(Default)]
struct Evidence<'r> {
    /// A rule about the server that reported or refused (its own vocabulary).
    host: Option<&'r Rule>,
    /// Rules whose text (or recipient) patterns matched, and selector-only rules.
    text: Vec<&'r Rule>,
    /// The best rule for a stated, specific status code.
    code: Option<&'r Rule>,
    /// A subject or class default (`5.7.0` for `5.7.99`, `5.0.0`).
    fallback: Option<&'r Rule>,
}

impl<'r> Evidence<'r> {
    fn gather(rules: &'r RuleSet, input: &MatchInput<'_>) -> Self {
        let mut ev = Evidence::default();
        for c in rules.candidates(input) {
            let rule = c.rule;
            if !rule.host.is_empty() {
                ev.host = ev.host.or(Some(rule));
            } else if c.rank.content || rule.status.is_empty() {
                ev.text.push(rule);
            } else if matches!(c.rank.code, CodeTier::Exact | CodeTier::Range)
                && rule.reason != Reason::Undefined
                && input.status.is_some_and(|s| s.subject != 0)
            {
                ev.code = ev.code.or(Some(rule));
            } else {
                ev.fallback = ev.fallback.or(Some(rule));
            }
        }
        ev
    }

    fn text_for(&self, reason: Reason) -> Option<&'r Rule> {
        self.text.iter().copied().find(|r| r.reason == reason)
    }

    /// The rule that explains the failure best (see [`FIRST_PASS`]).
    fn decide(&self) -> Option<&'r Rule> {
        if let Some(h) = self.host {
            return Some(h);
        }
        let code = self.code;
        for &reason in FIRST_PASS {
            if let Some(t) = self.text_for(reason) {
                return Some(t);
            }
            if let Some(c) = code.filter(|c| c.reason == reason) {
                return Some(c);
            }
        }
        if let Some(c) = code.filter(|c| !is_vague(c.reason)) {
            return Some(c);
        }
        for &reason in SECOND_PASS {
            if let Some(t) = self.text_for(reason) {
                return Some(t);
            }
        }
        code.or_else(|| self.text.first().copied())
            .or(self.fallback)
    }
}

/// Splits `raw` as an mbox, parses and classifies every message.
pub fn analyze(raw: &[u8], rules: &RuleSet, lang: Lang, source: &str) -> Vec<Row> {
    parse::split_mbox(raw)
        .into_iter()
        .enumerate()
        .flat_map(|(i, m)| classify_message(&parse::parse_message(m), rules, lang, source, i))
        .collect()
}
