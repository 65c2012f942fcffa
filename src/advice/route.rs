//! Routing: who, if anyone, hears about each failed recipient of a bounce.
//!
//! The audience comes from `[advice.route]` (by cause id, then reason, then `fix_by`).
//! Then the refusals that keep advice mail from doing harm, each counted in
//! `bouncelens_advice_emails_total{outcome="suppressed_*"}`:
//! * no original sender (missing, `<>`, a mailer-daemon): nobody to tell;
//! * a sender outside `own_domains`: most bounces to unknown senders are backscatter
//!   from forged spam (see the seeds' 001), and mailing those senders would make *us*
//!   the spammer; the admins are not told either, since the message was not ours.
//!   Outbox mode with no `own_domains` writes for everyone: nothing leaves;
//! * a bounce of our own advice (its Message-ID, `X-Bouncelens-Advice` header or From
//!   address inside the returned original): advising on it would be a mail loop;
//! * auto-replies and complaint reports, unless `advise_autoreplies` / `advise_feedback`.
//!
//! Rows of one bounce that share a cause and an addressee become one [`Advice`], so a
//! message to five bad addresses gives one mail listing five recipients, not five mails.
//! Everything here is pure: the plan is data, acted on by [`super::Advisor`].

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::config::{looks_like_address, Audience, Config, RouteConfig};
use crate::error::{Error, ErrorKind, Result};
use crate::model::{
    Cause, FixBy, Lang, MessageKind, OriginalMessage, ProcessedMessage, Reason, Row,
};
use crate::rules::RuleSet;
use crate::verp::VerpPattern;

/// Who an advice mail is for: the `audience` metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AudienceKind {
    /// The person who sent the message that bounced.
    Sender,
    /// The configured admin addresses.
    Admin,
}

impl AudienceKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            AudienceKind::Sender => "sender",
            AudienceKind::Admin => "admin",
        }
    }
}

/// Where one advice mail goes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Addressee {
    pub kind: AudienceKind,
    /// Envelope and `To:` addresses (one sender, or every admin).
    pub to: Vec<String>,
}

impl Addressee {
    /// A stable key for digests and the hourly cap.
    pub fn key(&self) -> String {
        format!("{}:{}", self.kind.as_str(), self.to.join(","))
    }
}

/// Why it failed and what to do: the rule's cause and steps, resolved in the advice
/// language when the bounce arrives (so a digest sent later says what the rules said
/// then, even across a reload).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Why {
    pub cause: Cause,
    pub steps: Vec<String>,
}

/// What one bounce contributes to one advice mail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// The spool id of the bounce (for admins correlating with the events log).
    pub queue_id: String,
    pub received_at: String,
    /// The original sender, when known (shown to admins).
    pub sender: Option<String>,
    pub original: OriginalMessage,
    /// The classify rows of the failed recipients.
    pub recipients: Vec<Row>,
}

/// One advice mail's worth of content, before digesting and composing.
#[derive(Debug, Clone)]
pub struct Advice {
    pub to: Addressee,
    pub why: Why,
    pub item: Item,
    /// The bounce as received, attached to the mail.
    pub raw: Arc<[u8]>,
}

/// Why a would-be advice mail is not sent: the `outcome` metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Refusal {
    NoSender,
    Backscatter,
    Loop,
    Autoreply,
    Feedback,
    NoAdmin,
}

impl Refusal {
    pub fn outcome(&self) -> &'static str {
        match self {
            Refusal::NoSender => "suppressed_nosender",
            Refusal::Backscatter => "suppressed_backscatter",
            Refusal::Loop => "suppressed_loop",
            Refusal::Autoreply => "suppressed_autoreply",
            Refusal::Feedback => "suppressed_feedback",
            Refusal::NoAdmin => "suppressed_noadmin",
        }
    }
}

/// The routing decision for one bounce.
#[derive(Debug, Default)]
pub struct Plan {
    pub advices: Vec<Advice>,
    /// Would-be mails refused, one entry per (audience, refusal, cause).
    pub refused: Vec<(AudienceKind, Refusal)>,
}

/// The routing policy, built once from the validated config.
#[derive(Debug, Clone)]
pub struct Router {
    route: RouteConfig,
    admins: Vec<String>,
    /// Lower-case; `None` means any domain (outbox mode with none configured).
    own_domains: Option<Vec<String>>,
    verp: Option<VerpPattern>,
    advise_autoreplies: bool,
    advise_feedback: bool,
    lang: Lang,
    /// Our From address and Message-ID domain, lower-case (loop detection).
    from: String,
    msgid_domain: String,
}

/// The header our advice mail carries; finding it in a bounce means a loop.
pub const ADVICE_HEADER: &str = "X-Bouncelens-Advice";
/// Local-part prefix of our Message-IDs.
pub const MSGID_PREFIX: &str = "advice.";

impl Router {
    pub fn new(cfg: &Config) -> Result<Router> {
        let a = &cfg.advice;
        let verp = match &cfg.smtp.verp {
            Some(p) => Some(VerpPattern::new(p).map_err(|e| Error::new(ErrorKind::Advice, e))?),
            None => None,
        };
        let own_domains = if a.own_domains.is_empty() && a.smarthost.is_none() {
            None
        } else {
            Some(
                a.own_domains
                    .iter()
                    .map(|d| d.to_ascii_lowercase())
                    .collect(),
            )
        };
        let from = a.from.to_ascii_lowercase();
        Ok(Router {
            route: a.route.clone(),
            admins: a.admins.clone(),
            own_domains,
            verp,
            advise_autoreplies: a.advise_autoreplies,
            advise_feedback: a.advise_feedback,
            lang: a.language,
            msgid_domain: domain_of(&from).unwrap_or("localhost").to_string(),
            from,
        })
    }

    /// The domain our Message-IDs use.
    pub fn msgid_domain(&self) -> &str {
        &self.msgid_domain
    }

    /// Decides every advice mail `msg` calls for.
    pub fn plan(&self, msg: &ProcessedMessage, rules: &RuleSet) -> Plan {
        let sender = self.original_sender(msg);
        let is_loop = self.is_own_advice(msg);
        let mut groups: BTreeMap<(String, Addressee), Advice> = BTreeMap::new();
        let mut refused = BTreeMap::new();
        for row in &msg.rows {
            let Some(blocked) = self.row_gate(msg, row) else {
                continue;
            };
            let (cause_id, fix_by) = match &row.cause {
                Some(c) => (Some(c.id.as_str()), c.fix_by),
                None => (None, FixBy::None),
            };
            let kinds: &[AudienceKind] = match self.route.audience(cause_id, row.reason, fix_by) {
                Audience::Off => continue,
                Audience::Sender => &[AudienceKind::Sender],
                Audience::Admin => &[AudienceKind::Admin],
                Audience::Both => &[AudienceKind::Sender, AudienceKind::Admin],
            };
            let id = cause_id.unwrap_or("unclassified").to_string();
            for &kind in kinds {
                let to = match self.addressee(kind, sender.as_deref(), is_loop, blocked) {
                    Ok(to) => to,
                    Err(why) => {
                        refused.insert((kind, why, id.clone()), ());
                        continue;
                    }
                };
                groups
                    .entry((id.clone(), to.clone()))
                    .or_insert_with(|| Advice {
                        to,
                        why: self.why(row, rules),
                        item: Item {
                            queue_id: msg.queue_id.clone(),
                            received_at: msg.received_at.clone(),
                            sender: sender.clone(),
                            original: msg.parsed.original.clone(),
                            recipients: Vec::new(),
                        },
                        raw: msg.raw.clone(),
                    })
                    .item
                    .recipients
                    .push(row.clone());
            }
        }
        Plan {
            advices: groups.into_values().collect(),
            refused: refused.into_keys().map(|(k, why, _)| (k, why)).collect(),
        }
    }

    /// Whether a row can call for advice at all: `None` for rows that are not failures
    /// (nothing to say), else `Some(refusal)` when its kind is not advised by config.
    fn row_gate(&self, msg: &ProcessedMessage, row: &Row) -> Option<Option<Refusal>> {
        let action_ok = !matches!(
            row.action.as_deref(),
            Some("delivered" | "relayed" | "expanded")
        );
        if row.reason == Reason::Vacation || msg.parsed.kind == MessageKind::Autoreply {
            return Some((!self.advise_autoreplies).then_some(Refusal::Autoreply));
        }
        if row.reason == Reason::Feedback || msg.parsed.kind == MessageKind::Feedback {
            return Some((!self.advise_feedback).then_some(Refusal::Feedback));
        }
        (row.reason.is_failure() && action_ok).then_some(None)
    }

    fn addressee(
        &self,
        kind: AudienceKind,
        sender: Option<&str>,
        is_loop: bool,
        blocked: Option<Refusal>,
    ) -> std::result::Result<Addressee, Refusal> {
        if is_loop {
            return Err(Refusal::Loop);
        }
        if let Some(why) = blocked {
            return Err(why);
        }
        // A known sender outside our domains means the bounced message was not ours
        // (forged): nobody here needs advice about it, admins included.
        if sender.is_some_and(|s| !self.is_own_domain(s)) {
            return Err(Refusal::Backscatter);
        }
        let to = match kind {
            AudienceKind::Admin if self.admins.is_empty() => return Err(Refusal::NoAdmin),
            AudienceKind::Admin => self.admins.clone(),
            AudienceKind::Sender => vec![sender.ok_or(Refusal::NoSender)?.to_string()],
        };
        Ok(Addressee { kind, to })
    }

    fn is_own_domain(&self, addr: &str) -> bool {
        let Some(own) = &self.own_domains else {
            return true;
        };
        let Some(d) = domain_of(addr) else {
            return false;
        };
        own.iter()
            .any(|o| d == o || d.strip_suffix(o.as_str()).is_some_and(|p| p.ends_with('.')))
    }

    /// The sender of the message that bounced: the VERP-decoded envelope recipient when
    /// a pattern is configured and matches, else the returned original's `Sender:`,
    /// `From:`, then the original envelope sender the bounce names (X-Postfix-Sender).
    /// `None` for the null sender and mailer-daemons.
    pub fn original_sender(&self, msg: &ProcessedMessage) -> Option<String> {
        let verp = self.verp.as_ref().and_then(|v| {
            msg.envelope
                .rcpt_to
                .iter()
                .find_map(|r| v.decode(r.trim_matches(|c| c == '<' || c == '>')))
        });
        let o = &msg.parsed.original;
        let candidate = verp.or_else(|| {
            [
                o.sender.as_deref(),
                o.from.as_deref(),
                msg.parsed.original_envelope_sender.as_deref(),
            ]
            .into_iter()
            .flatten()
            .find_map(addr_spec)
        })?;
        let local = candidate.rsplit_once('@')?.0.to_ascii_lowercase();
        (!matches!(local.as_str(), "mailer-daemon" | "mailer_daemon")).then_some(candidate)
    }

    /// A bounce of our own advice mail: the returned original carries our header, our
    /// Message-ID, or our From address.
    pub fn is_own_advice(&self, msg: &ProcessedMessage) -> bool {
        let o = &msg.parsed.original;
        let our_id = o.message_id.as_deref().is_some_and(|id| {
            let id = id.trim().trim_matches(|c| c == '<' || c == '>');
            id.rsplit_once('@').is_some_and(|(l, d)| {
                l.starts_with(MSGID_PREFIX) && d.eq_ignore_ascii_case(&self.msgid_domain)
            })
        });
        let our_from = o
            .from
            .as_deref()
            .and_then(addr_spec)
            .is_some_and(|f| f.eq_ignore_ascii_case(&self.from));
        our_id || our_from || has_header_line(&msg.raw, ADVICE_HEADER)
    }

    fn why(&self, row: &Row, rules: &RuleSet) -> Why {
        let id = row.cause.as_ref().map_or("unclassified", |c| c.id.as_str());
        match rules.get(id) {
            Some(rule) => Why {
                cause: rule.cause(self.lang),
                steps: rule.text_for(self.lang).steps.clone(),
            },
            // The rule is gone (reloaded away) or there was none: use the row's copy.
            None => Why {
                cause: row.cause.clone().unwrap_or_else(|| Cause {
                    id: id.to_string(),
                    title: row.reason.to_string(),
                    fix_by: FixBy::None,
                    advice: String::new(),
                    reference: None,
                }),
                steps: Vec::new(),
            },
        }
    }
}

/// The bare `local@domain` in a header value such as `"Alice" <alice@Example.com>`,
/// with the domain lower-cased; `None` for `<>` and anything that is not an address.
pub fn addr_spec(value: &str) -> Option<String> {
    let v = value.trim();
    let inner = match (v.rfind('<'), v.rfind('>')) {
        (Some(a), Some(b)) if a < b => &v[a + 1..b],
        _ => v
            .split(|c: char| c.is_whitespace() || c == ',')
            .find(|t| t.contains('@'))?,
    };
    let inner = inner.trim().trim_matches(|c| c == '"' || c == '\'');
    let (local, domain) = inner.rsplit_once('@')?;
    let addr = format!("{local}@{}", domain.to_ascii_lowercase());
    // Also what lettre will accept, so a composed mail can never fail on its address.
    let valid = looks_like_address(&addr)
        && domain.contains('.')
        && addr.is_ascii()
        && addr.parse::<lettre::Address>().is_ok();
    valid.then_some(addr)
}

fn domain_of(addr: &str) -> Option<&str> {
    addr.rsplit_once('@').map(|(_, d)| d)
}

/// Whether `raw` has a header line `name:` at the start of any line (the returned
/// original's header block is inside the bounce's body, so the whole text is searched).
fn has_header_line(raw: &[u8], name: &str) -> bool {
    let n = name.as_bytes();
    raw.split(|&b| b == b'\n').any(|line| {
        line.len() > n.len() && line[..n.len()].eq_ignore_ascii_case(n) && line[n.len()] == b':'
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addr_spec_handles_display_names_and_null() {
        assert_eq!(
            addr_spec("\"Alice A.\" <alice@Example.COM>").as_deref(),
            Some("alice@example.com")
        );
        assert_eq!(
            addr_spec("bob@example.org (Bob)").as_deref(),
            Some("bob@example.org")
        );
        assert_eq!(addr_spec("<>"), None);
        assert_eq!(addr_spec("undisclosed-recipients:;"), None);
        assert_eq!(addr_spec("root@localhost"), None);
        assert_eq!(addr_spec("a..b@example.com"), None);
    }

    #[test]
    fn header_lines_are_found_anywhere_but_only_at_line_start() {
        let raw = b"Subject: x\r\n\r\n--b\r\nx-bouncelens-advice: v=1\r\n";
        assert!(has_header_line(raw, ADVICE_HEADER));
        assert!(!has_header_line(
            b"Subject: about X-Bouncelens-Advice: no\r\n",
            ADVICE_HEADER
        ));
    }

    fn message(rows: &[(&str, Reason, FixBy)], kind: MessageKind) -> ProcessedMessage {
        let original = OriginalMessage {
            from: Some("Alice <alice@example.com>".into()),
            ..Default::default()
        };
        let rows = rows
            .iter()
            .map(|&(action, reason, fix_by)| Row {
                source: "q".into(),
                message_index: 0,
                recipient: Some("bob@example.org".into()),
                action: Some(action.into()),
                status: None,
                reply_code: None,
                reason,
                permanent: None,
                hard_bounce: None,
                diagnostic: None,
                remote_mta: None,
                reporting_mta: None,
                format: "rfc3464".into(),
                feedback_type: None,
                cause: Some(Cause {
                    id: format!("c.{reason}"),
                    title: "t".into(),
                    fix_by,
                    advice: "a".into(),
                    reference: None,
                }),
                original: original.clone(),
            })
            .collect();
        ProcessedMessage {
            queue_id: "q".into(),
            received_at: "now".into(),
            envelope: Default::default(),
            raw: Arc::from(&b"raw"[..]),
            parsed: crate::model::ParsedMessage {
                kind,
                original,
                ..Default::default()
            },
            rows,
        }
    }

    fn plan(cfg: &Config, msg: &ProcessedMessage) -> Plan {
        Router::new(cfg)
            .unwrap()
            .plan(msg, &RuleSet::load(&[]).unwrap())
    }

    #[test]
    fn only_failures_are_advised_and_rows_of_a_cause_are_grouped() {
        let mut cfg = Config::default();
        cfg.advice.own_domains = vec!["example.com".into()];
        let msg = message(
            &[
                ("failed", Reason::Userunknown, FixBy::Sender),
                ("failed", Reason::Userunknown, FixBy::Sender),
                ("delivered", Reason::Delivered, FixBy::None),
                ("relayed", Reason::Undefined, FixBy::Sender),
                ("delayed", Reason::Expired, FixBy::None),
            ],
            MessageKind::Dsn,
        );
        let p = plan(&cfg, &msg);
        assert!(p.refused.is_empty());
        assert_eq!(p.advices.len(), 1);
        assert_eq!(p.advices[0].to.to, ["alice@example.com"]);
        assert_eq!(p.advices[0].item.recipients.len(), 2);
    }

    #[test]
    fn complaints_need_advise_feedback_and_admins_need_addresses() {
        let mut cfg = Config::default();
        cfg.advice.route.none = Audience::Admin;
        let msg = message(
            &[("failed", Reason::Feedback, FixBy::None)],
            MessageKind::Feedback,
        );
        let p = plan(&cfg, &msg);
        assert_eq!(p.refused, [(AudienceKind::Admin, Refusal::Feedback)]);
        cfg.advice.advise_feedback = true;
        assert_eq!(
            plan(&cfg, &msg).refused,
            [(AudienceKind::Admin, Refusal::NoAdmin)]
        );
        cfg.advice.admins = vec!["postmaster@example.com".into()];
        let p = plan(&cfg, &msg);
        assert_eq!(p.advices.len(), 1);
        assert_eq!(p.advices[0].to.kind, AudienceKind::Admin);
        // About a forged (foreign) sender, the admins hear nothing either.
        cfg.advice.own_domains = vec!["example.net".into()];
        assert_eq!(
            plan(&cfg, &msg).refused,
            [(AudienceKind::Admin, Refusal::Backscatter)]
        );
    }

    #[test]
    fn own_domains_include_subdomains_only_on_a_label_boundary() {
        let mut cfg = Config::default();
        cfg.advice.own_domains = vec!["Example.com".into()];
        let r = Router::new(&cfg).unwrap();
        assert!(r.is_own_domain("a@example.com"));
        assert!(r.is_own_domain("a@eu.example.com"));
        assert!(!r.is_own_domain("a@badexample.com"));
        assert!(!r.is_own_domain("a@example.com.evil.test"));
        cfg.advice.own_domains.clear();
        assert!(Router::new(&cfg).unwrap().is_own_domain("a@anything.test"));
    }
}
