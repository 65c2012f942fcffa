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
    let mut diagnostic = r
        .diagnostic
        .as_deref()
        .map(|d| {
            // Squashed once; copied again only if continuations were stripped.
            let squashed = parse::diag::squash_whitespace(d);
            let stripped = match parse::diag::strip_continuations(&squashed) {
                std::borrow::Cow::Owned(stripped) => Some(stripped),
                std::borrow::Cow::Borrowed(_) => None,
            };
            stripped.unwrap_or(squashed)
        })
        .unwrap_or_default();
    // Fields in which the reporting MTA states its own classification are matched
    // like the server's words ("x-powermta-bouncecategory: bad-mailbox").
    for (name, value) in &r.extensions {
        if VERDICT_FIELDS.iter().any(|f| name.eq_ignore_ascii_case(f)) {
            diagnostic.push_str(" [");
            diagnostic.push_str(&name.to_ascii_lowercase());
            diagnostic.push_str(": ");
            diagnostic.push_str(value.trim());
            diagnostic.push(']');
        }
    }
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
    evidence.before_data = input.command.is_some_and(|c| BEFORE_DATA.contains(&c));
    if evidence.text.is_empty() && evidence.host.is_none() && evidence.code.is_none() {
        // The recipient's own lines name no cause: the notice may (its boilerplate
        // is weaker evidence, so it is only read when nothing better was found).
        if let Some(notice) = msg.notice.as_deref() {
            let wider = format!("{diagnostic} {notice}");
            input.text = &wider;
            let mut more = Evidence::gather(rules, &input);
            more.before_data = evidence.before_data;
            if !more.text.is_empty() || more.host.is_some() {
                evidence = more;
            }
        }
    }
    // A local delivery program's exit status ("X-Unix; 75") is no SMTP reply: the
    // server-wording order does not apply to it.
    let local = diagnostic
        .get(..7)
        .is_some_and(|p| p.eq_ignore_ascii_case("x-unix;"));
    match evidence.decide(local) {
        Verdict::Rule(rule) => (rule.reason, Some(rule)),
        Verdict::Weak(rule) if action == "delayed" => (Reason::Expired, rule),
        Verdict::Weak(Some(rule)) if rule.reason != Reason::Undefined => (rule.reason, Some(rule)),
        Verdict::Weak(rule) if !diagnostic.is_empty() => (Reason::Onhold, rule),
        Verdict::Weak(rule) => (Reason::Undefined, rule),
    }
}

/// Per-recipient report fields that carry the reporting MTA's own verdict.
const VERDICT_FIELDS: &[&str] = &["X-PowerMTA-BounceCategory"];

/// What the evidence supports: a rule that explains the failure, or at most a weak
/// default (a subject or class code) that only applies when nothing else does.
enum Verdict<'r> {
    Rule(&'r Rule),
    Weak(Option<&'r Rule>),
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
    /// The best rule for a stated, specific status code (`5.2.2`, `5.7.509`).
    code: Option<&'r Rule>,
    /// A subject or class default (`5.7.0`, `4.4.0`, `5.0.0`): the code names an
    /// area, not a cause.
    weak: Option<&'r Rule>,
    /// The bounce says the refusal came before DATA (at MAIL, RCPT, ...).
    before_data: bool,
}

/// Commands sent before the message itself: a refusal there cannot be about the
/// message's content, whatever the wording.
const BEFORE_DATA: &[&str] = &["CONN", "EHLO", "HELO", "MAIL", "RCPT"];

impl<'r> Evidence<'r> {
    fn gather(rules: &'r RuleSet, input: &MatchInput<'_>) -> Self {
        let mut ev = Evidence::default();
        // `4.Y.0` says only "a temporary problem of kind Y"; `5.Y.0` names the kind
        // of a permanent failure firmly enough to count (5.2.0 mailbox, 5.7.0 policy),
        // except `5.5.0`, "some protocol problem", which names no fault.
        let specific = input
            .status
            .is_some_and(|s| s.detail != 0 || (s.class == 5 && !matches!(s.subject, 0 | 5)));
        for c in rules.candidates(input) {
            let rule = c.rule;
            if !rule.host.is_empty() {
                ev.host = ev.host.or(Some(rule));
            } else if c.rank.content || rule.status.is_empty() {
                ev.text.push(rule);
            } else if specific && matches!(c.rank.code, CodeTier::Exact | CodeTier::Range) {
                ev.code = ev.code.or(Some(rule));
            } else {
                ev.weak = ev.weak.or(Some(rule));
            }
        }
        ev
    }

    fn text_for(&self, reason: Reason) -> Option<&'r Rule> {
        self.text.iter().copied().find(|r| r.reason == reason)
    }

    /// [`Self::text_for`] in the first pass, where wording about the message itself
    /// (spam, a filter) does not count for a refusal before DATA.
    fn first_pass_text_for(&self, reason: Reason) -> Option<&'r Rule> {
        let content_reason = matches!(reason, Reason::Spamdetected | Reason::Filtered);
        if content_reason && self.before_data {
            // Unless a rule names the command itself (unknown user at RCPT).
            return self
                .text
                .iter()
                .copied()
                .find(|r| r.reason == reason && !r.command.is_empty());
        }
        self.text.iter().copied().find(|r| r.reason == reason)
    }

    fn has_text(&self, reasons: &[Reason]) -> bool {
        reasons.iter().any(|&r| self.text_for(r).is_some())
    }

    /// Whether the status code alone establishes `reason` at its place in
    /// [`FIRST_PASS`]. Some codes are used loosely, so the wording can overrule them:
    /// `5.1.1` with "blocked" or "sender rejected" wording is not about the mailbox,
    /// `5.4.4` with a DNS error is a lookup failure rather than a missing domain, and
    /// `5.2.x` ("mailbox status") or `5.6.x` ("content") need words saying so.
    fn code_decides(&self, reason: Reason) -> bool {
        match reason {
            Reason::Userunknown => !self.has_text(&[
                Reason::Rejected,
                Reason::Blocked,
                Reason::Notaccept,
                Reason::Securityerror,
            ]),
            Reason::Hostunknown => !self.has_text(&[Reason::Networkerror, Reason::Notaccept]),
            Reason::Contenterror => !self.has_text(&[Reason::Spamdetected]),
            Reason::Filtered => false,
            _ => true,
        }
    }

    /// The rule that explains the failure best.
    ///
    /// 1. a rule about the very provider (its vocabulary is unambiguous);
    /// 2. a decisive phrase: a text rule with a status selector (code + text, the most
    ///    specific kind of rule) or with a positive `priority` (wording that is a
    ///    verdict by itself, such as a Null MX);
    /// 3. the first reason of [`FIRST_PASS`] that the wording or the code supports;
    /// 4. a specific code's own reason, if it is not [`is_vague`];
    /// 5. the first reason of [`SECOND_PASS`] the wording supports;
    /// 6. a vague specific code, then any other wording;
    /// 7. otherwise only a weak default (see [`Verdict`]).
    ///
    /// `local` (a local delivery program's failure) skips step 3: its wording is not
    /// an SMTP server's.
    fn decide(&self, local: bool) -> Verdict<'r> {
        if let Some(h) = self.host {
            return Verdict::Rule(h);
        }
        if let Some(t) = self
            .text
            .iter()
            .find(|r| r.priority > 0 || !r.status.is_empty())
        {
            return Verdict::Rule(t);
        }
        let code = self.code;
        if !local {
            for &reason in FIRST_PASS {
                // A size limit of the mailbox (5.2.3) is not one of the system (5.3.4).
                let vetoed = reason == Reason::Mesgtoobig
                    && code.is_some_and(|c| c.reason == Reason::Exceedlimit);
                if let Some(t) = self.first_pass_text_for(reason).filter(|_| !vetoed) {
                    return Verdict::Rule(t);
                }
                if let Some(c) = code.filter(|c| c.reason == reason && self.code_decides(reason)) {
                    return Verdict::Rule(c);
                }
            }
        }
        if let Some(c) = code.filter(|c| !is_vague(c.reason)) {
            return Verdict::Rule(c);
        }
        for &reason in SECOND_PASS {
            // Negative priority marks the weakest wording (a bare "X-Unix;" type).
            if let Some(t) = self.text_for(reason).filter(|t| t.priority >= 0) {
                return Verdict::Rule(t);
            }
        }
        if let Some(c) = code {
            return Verdict::Rule(c);
        }
        match self.text.first() {
            Some(r) => Verdict::Rule(r),
            None => Verdict::Weak(self.weak),
        }
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
