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
use crate::rules::{MatchInput, Rule, RuleSet};

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
    let hosts: Vec<&str> = [msg.reporting_mta.as_deref(), r.remote_mta.as_deref()]
        .into_iter()
        .flatten()
        .collect();
    let mut input = MatchInput {
        status: r.status,
        reply_code: r.reply_code,
        text: &diagnostic,
        hosts: &hosts,
        recipient: r.recipient.as_deref(),
        command: r.smtp_command.as_deref(),
    };
    let mut best = rules.resolve(&input);
    if best.is_none_or(|rule| rule.text.is_empty()) {
        if let Some(notice) = msg.notice.as_deref() {
            let wider = format!("{diagnostic} {notice}");
            input.text = &wider;
            if let Some(rule) = rules.resolve(&input).filter(|rule| !rule.text.is_empty()) {
                best = Some(rule);
            }
        }
    }
    match best {
        Some(rule) => (rule.reason, Some(rule)),
        None if action == "delayed" => (Reason::Expired, None),
        None if !diagnostic.is_empty() => (Reason::Onhold, None),
        None => (Reason::Undefined, None),
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
