//! Classification: per-recipient facts + rule set -> [`Row`]s (SPEC "One classify row").
//! Pure and I/O-free like the parser.

use crate::model::{Lang, MessageKind, ParsedMessage, Reason, Row};
use crate::parse;
use crate::rules::{MatchInput, RuleSet};

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
            let hosts: Vec<&str> = [msg.reporting_mta.as_deref(), r.remote_mta.as_deref()]
                .into_iter()
                .flatten()
                .collect();
            let input = MatchInput {
                status: r.status,
                reply_code: r.reply_code,
                text: r.diagnostic.as_deref().unwrap_or(""),
                hosts: &hosts,
                recipient: r.recipient.as_deref(),
                command: r.smtp_command.as_deref(),
            };
            if let Some(rule) = rules.resolve(&input) {
                row.reason = rule.reason;
                row.cause = Some(rule.cause(lang));
            }
            if row.reason.is_failure() {
                let permanent = r
                    .status
                    .map(|s| s.is_permanent())
                    .or(r.reply_code.map(|c| c >= 500));
                row.permanent = permanent;
                row.hard_bounce = Some(row.reason.is_hard_bounce(permanent.unwrap_or(false)));
            }
            row
        })
        .collect()
}

/// Splits `raw` as an mbox, parses and classifies every message.
pub fn analyze(raw: &[u8], rules: &RuleSet, lang: Lang, source: &str) -> Vec<Row> {
    parse::split_mbox(raw)
        .into_iter()
        .enumerate()
        .flat_map(|(i, m)| classify_message(&parse::parse_message(m), rules, lang, source, i))
        .collect()
}
