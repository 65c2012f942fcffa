//! Writing the advice mail itself.
//!
//! The content is first laid out once as a small language-neutral [`Doc`] (sentence,
//! advice, who-fixes-it, steps, details), then rendered twice — plain text and inline-
//! styled HTML — so both parts always say the same thing. Everything that came from the
//! bounce (or from rule files) is HTML-escaped, and header text is stripped of control
//! characters; lettre's builder does the MIME structure and the RFC 2047 / transfer
//! encodings, so the result is 7-bit clean even for Japanese.
//!
//! Structure: `multipart/mixed` [ `multipart/alternative` [text/plain, text/html],
//! the bounce(s) as `message/rfc822` ]. Headers: our Message-ID, `In-Reply-To` /
//! `References` to the original so it threads, `Auto-Submitted: auto-generated`
//! (RFC 3834) and `X-Bouncelens-Advice` so a bounce of this mail is recognised.

use std::fmt::Write as _;
use std::sync::Arc;

use lettre::address::{Address, Envelope};
use lettre::message::header::{
    ContentDisposition, ContentTransferEncoding, ContentType, HeaderName, HeaderValue,
};
use lettre::message::{Body, Mailbox, MultiPart, SinglePart};
use lettre::Message;

use super::locale::{Field, Locale, Party, Summary};
use super::route::{Addressee, AudienceKind, Item, Why, ADVICE_HEADER, MSGID_PREFIX};
use super::store;
use crate::config::AdviceConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::model::FixBy;

/// Recipients named in the opening sentence before "and N more".
const NAMED_RECIPIENTS: usize = 3;
/// Largest bounce attached whole; bigger ones are attached as headers only.
pub const MAX_ATTACHMENT: usize = 512 * 1024;
/// Longest header text taken from a bounce or rule (characters).
const MAX_HEADER_TEXT: usize = 200;

/// What one advice mail is about: one bounce, or a digest of several.
#[derive(Debug, Clone, Copy)]
pub struct Content<'a> {
    pub to: &'a Addressee,
    pub why: &'a Why,
    pub items: &'a [Item],
    /// Recipients collected but not listed.
    pub more: u64,
    pub attachments: &'a [Arc<[u8]>],
}

/// A composed mail, ready for the outbox.
#[derive(Debug, Clone)]
pub struct Composed {
    /// Our id (outbox file name, Message-ID local part).
    pub id: String,
    pub message_id: String,
    pub envelope: Envelope,
    pub bytes: Vec<u8>,
}

/// Composes advice mail in the configured language.
#[derive(Debug, Clone)]
pub struct Composer {
    from: Mailbox,
    locale: Locale,
    msgid_domain: String,
}

impl Composer {
    pub fn new(cfg: &AdviceConfig, msgid_domain: &str) -> Result<Composer> {
        let locale = Locale::new(cfg.language);
        let addr: Address = cfg.from.parse().map_err(|e| {
            Error::with_source(
                ErrorKind::Advice,
                format!("bad advice from address {:?}", cfg.from),
                e,
            )
        })?;
        Ok(Composer {
            from: Mailbox::new(Some(locale.from_name().to_string()), addr),
            locale,
            msgid_domain: msgid_domain.to_string(),
        })
    }

    /// Builds the mail for `c`.
    pub fn compose(&self, c: &Content<'_>) -> Result<Composed> {
        let advice_err = |what: &str| {
            let what = what.to_string();
            move |e: lettre::error::Error| Error::with_source(ErrorKind::Advice, what, e)
        };
        let id = store::unique_id();
        let message_id = format!("<{MSGID_PREFIX}{id}@{}>", self.msgid_domain);
        let rcpts: Vec<Address> = c
            .to
            .to
            .iter()
            .map(|a| {
                a.parse().map_err(|e| {
                    Error::with_source(ErrorKind::Advice, format!("bad advice recipient {a:?}"), e)
                })
            })
            .collect::<Result<_>>()?;
        let envelope =
            Envelope::new(None, rcpts.clone()).map_err(advice_err("no advice recipient"))?;

        let doc = self.layout(c);
        let subject = doc.subject.clone();
        let mut b = Message::builder()
            .from(self.from.clone())
            .subject(header_text(&subject))
            .message_id(Some(message_id.clone()))
            .envelope(envelope.clone())
            .raw_header(raw_header("Auto-Submitted", "auto-generated".into()))
            .raw_header(raw_header("X-Auto-Response-Suppress", "All".into()))
            .raw_header(raw_header("Content-Language", self.locale.tag().into()))
            .raw_header(raw_header(
                ADVICE_HEADER,
                format!(
                    "v=1; audience={}; cause={}; messages={}",
                    c.to.kind.as_str(),
                    header_text(&c.why.cause.id),
                    c.items.len()
                ),
            ));
        for a in rcpts {
            b = b.to(Mailbox::new(None, a));
        }
        let ids: Vec<String> = c
            .items
            .iter()
            .filter_map(|i| i.original.message_id.as_deref().and_then(msg_id))
            .collect();
        if let Some(first) = ids.first() {
            b = b.in_reply_to(first.clone()).references(ids.join(" "));
        }

        let mut mixed = MultiPart::mixed().multipart(MultiPart::alternative_plain_html(
            render_text(&doc),
            render_html(&doc, &subject, self.locale.tag()),
        ));
        for (n, raw) in c.attachments.iter().enumerate() {
            let name = if c.attachments.len() == 1 {
                "bounce".to_string()
            } else {
                format!("bounce-{}", n + 1)
            };
            mixed = mixed.singlepart(attachment(raw, &name));
        }
        let msg = b
            .multipart(mixed)
            .map_err(|e| Error::with_source(ErrorKind::Advice, "cannot build advice mail", e))?;
        Ok(Composed {
            id,
            message_id,
            envelope,
            bytes: msg.formatted(),
        })
    }

    /// Every recipient named in `c`, in order.
    fn recipients<'c>(&self, c: &'c Content<'_>) -> Vec<&'c str> {
        c.items
            .iter()
            .flat_map(|i| &i.recipients)
            .map(|r| {
                r.recipient
                    .as_deref()
                    .unwrap_or(self.locale.unknown_recipient())
            })
            .collect()
    }

    fn summary<'c>(&self, c: &'c Content<'_>, names: &'c [&'c str], rcpts: &'c str) -> Summary<'c> {
        let first = c.items.first();
        Summary {
            audience: c.to.kind,
            messages: c.items.len(),
            recipients: names.len() + c.more as usize,
            first: names
                .first()
                .copied()
                .unwrap_or(self.locale.unknown_recipient()),
            rcpts,
            subject: first.and_then(|i| i.original.subject.as_deref()),
            sender: first.and_then(|i| i.sender.as_deref()),
            title: &c.why.cause.title,
            delayed: c
                .items
                .iter()
                .flat_map(|i| &i.recipients)
                .all(|r| r.action.as_deref() == Some("delayed")),
        }
    }

    /// Lays out the content once for both renderings.
    fn layout(&self, c: &Content<'_>) -> Doc {
        let l = &self.locale;
        let audience = c.to.kind;
        let names = self.recipients(c);
        let rcpts = l.list(&names, NAMED_RECIPIENTS);
        let summary = self.summary(c, &names, &rcpts);
        let sentence = l.what_happened(&summary);
        let subject = l.subject(&summary);
        let mut details = Vec::new();
        for (n, item) in c.items.iter().enumerate() {
            let heading = (c.items.len() > 1).then(|| l.message_heading(n + 1, c.items.len()));
            details.push(Section {
                heading,
                rows: self.item_rows(item, audience),
            });
        }
        let mut cause_rows = vec![row(l.field(Field::Cause), Some(&c.why.cause.id), false)];
        cause_rows.push(row(
            l.field(Field::Reference),
            c.why.cause.reference.as_deref(),
            false,
        ));
        details.push(Section {
            heading: None,
            rows: cause_rows.into_iter().flatten().collect(),
        });
        let mut notes = Vec::new();
        if c.more > 0 {
            notes.push(l.more_recipients(c.more));
        }
        notes.push(l.attached(c.attachments.len(), c.items.len()));
        let big = c
            .attachments
            .iter()
            .filter(|r| r.len() > MAX_ATTACHMENT)
            .count();
        if big > 0 {
            notes.push(l.headers_only(big));
        }
        Doc {
            subject,
            sentence,
            advice: c.why.cause.advice.trim().to_string(),
            who_heading: l.who_heading().to_string(),
            parties: Party::ALL
                .iter()
                .map(|&p| {
                    (
                        l.party(p, audience).to_string(),
                        Party::of(c.why.cause.fix_by) == Some(p),
                    )
                })
                .collect(),
            fixer: l.fixer(c.why.cause.fix_by, audience).to_string(),
            hint: l.hint(c.why.cause.fix_by, audience).map(str::to_string),
            steps_heading: l.steps_heading().to_string(),
            steps: c.why.steps.iter().map(|s| s.trim().to_string()).collect(),
            details_heading: l.details_heading().to_string(),
            details,
            notes,
            footer: l.footer().to_string(),
            nobody: c.why.cause.fix_by == FixBy::None,
        }
    }

    fn item_rows(&self, item: &Item, audience: AudienceKind) -> Vec<Row> {
        let l = &self.locale;
        let mut rows = Vec::new();
        for r in &item.recipients {
            let reply = r.reply_code.map(|c| c.to_string());
            rows.extend([
                row(l.field(Field::Recipient), r.recipient.as_deref(), false),
                row(l.field(Field::Action), r.action.as_deref(), false),
                row(l.field(Field::Status), r.status.as_deref(), false),
                row(l.field(Field::ReplyCode), reply.as_deref(), false),
                row(l.field(Field::Reason), Some(r.reason.as_str()), false),
                row(l.field(Field::Diagnostic), r.diagnostic.as_deref(), true),
                row(
                    l.field(Field::ReportingMta),
                    r.reporting_mta.as_deref(),
                    false,
                ),
                row(l.field(Field::RemoteMta), r.remote_mta.as_deref(), false),
            ]);
        }
        let o = &item.original;
        let sender = match audience {
            AudienceKind::Admin => item.sender.as_deref().or(o.from.as_deref()),
            AudienceKind::Sender => None,
        };
        rows.extend([
            row(l.field(Field::OriginalFrom), sender, false),
            row(
                l.field(Field::OriginalMessageId),
                o.message_id.as_deref(),
                true,
            ),
            row(l.field(Field::OriginalSubject), o.subject.as_deref(), false),
            row(l.field(Field::OriginalDate), o.date.as_deref(), false),
            row(l.field(Field::QueueId), Some(&item.queue_id), true),
            row(l.field(Field::Received), Some(&item.received_at), false),
        ]);
        rows.into_iter().flatten().collect()
    }
}

/// The content of one advice mail, independent of rendering.
#[derive(Debug)]
struct Doc {
    subject: String,
    sentence: String,
    advice: String,
    who_heading: String,
    /// The indicator: every party, and whether it must act.
    parties: Vec<(String, bool)>,
    fixer: String,
    hint: Option<String>,
    steps_heading: String,
    steps: Vec<String>,
    details_heading: String,
    details: Vec<Section>,
    notes: Vec<String>,
    footer: String,
    nobody: bool,
}

#[derive(Debug)]
struct Section {
    heading: Option<String>,
    rows: Vec<Row>,
}

/// A details line: label, value, shown monospaced.
type Row = (String, String, bool);

fn row(label: &str, value: Option<&str>, mono: bool) -> Option<Row> {
    let v = value?.trim();
    (!v.is_empty()).then(|| (label.to_string(), v.to_string(), mono))
}

fn render_text(d: &Doc) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "{}", d.sentence);
    if !d.advice.is_empty() {
        let _ = writeln!(t, "\n{}", d.advice);
    }
    let _ = writeln!(t, "\n{}: {}", d.who_heading, d.fixer);
    if !d.nobody {
        let boxes: Vec<String> = d
            .parties
            .iter()
            .map(|(name, on)| format!("[{}] {name}", if *on { "x" } else { " " }))
            .collect();
        let _ = writeln!(t, "  {}", boxes.join("   "));
    }
    if let Some(h) = &d.hint {
        let _ = writeln!(t, "{h}");
    }
    if !d.steps.is_empty() {
        let _ = writeln!(t, "\n{}", d.steps_heading);
        for (n, s) in d.steps.iter().enumerate() {
            let _ = writeln!(t, "  {}. {s}", n + 1);
        }
    }
    let _ = writeln!(t, "\n{}", d.details_heading);
    for s in &d.details {
        if let Some(h) = &s.heading {
            let _ = writeln!(t, "\n  {h}");
        }
        for (label, value, _) in &s.rows {
            let _ = writeln!(t, "  {label}: {value}");
        }
    }
    t.push('\n');
    for n in &d.notes {
        let _ = writeln!(t, "{n}");
    }
    let _ = write!(t, "\n-- \n{}\n", d.footer);
    t
}

const FONT: &str =
    "font-family:-apple-system,'Segoe UI',Helvetica,Arial,'Hiragino Sans','Meiryo',sans-serif";
const MONO: &str = "font-family:Consolas,'Courier New',monospace;font-size:13px;white-space:pre-wrap;word-break:break-all";

fn render_html(d: &Doc, title: &str, lang: &str) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"{lang}\"><head><meta charset=\"utf-8\"><title>{}</title></head>\n\
         <body style=\"margin:0;padding:16px;background:#ffffff;color:#1f2328;{FONT};font-size:15px;line-height:1.5\">\n\
         <div style=\"max-width:680px\">\n<p style=\"font-size:17px;font-weight:bold;margin:0 0 12px\">{}</p>\n",
        esc(title),
        esc(&d.sentence)
    );
    if !d.advice.is_empty() {
        let _ = writeln!(h, "<p style=\"margin:0 0 16px\">{}</p>", esc(&d.advice));
    }
    let _ = writeln!(
        h,
        "<p style=\"margin:0 0 6px;font-weight:bold\">{}: {}</p>",
        esc(&d.who_heading),
        esc(&d.fixer)
    );
    if !d.nobody {
        h.push_str("<table role=\"presentation\" cellspacing=\"4\" cellpadding=\"0\" style=\"border-collapse:separate;margin:0 0 8px\"><tr>\n");
        for (name, on) in &d.parties {
            let style = if *on {
                "background:#0b5cad;color:#ffffff;font-weight:bold"
            } else {
                "background:#f2f4f7;color:#6e7781"
            };
            let mark = if *on { "&#10004; " } else { "" };
            let _ = writeln!(
                h,
                "<td style=\"{style};padding:8px 12px;border-radius:6px\">{mark}{}</td>",
                esc(name)
            );
        }
        h.push_str("</tr></table>\n");
    }
    if let Some(hint) = &d.hint {
        let _ = writeln!(
            h,
            "<p style=\"margin:0 0 16px;padding:8px 12px;background:#fff8c5;border-left:4px solid #d4a72c\">{}</p>",
            esc(hint)
        );
    }
    if !d.steps.is_empty() {
        let _ = writeln!(
            h,
            "<h2 style=\"font-size:16px;margin:20px 0 8px\">{}</h2>\n<ol style=\"margin:0 0 16px;padding-left:24px\">",
            esc(&d.steps_heading)
        );
        for s in &d.steps {
            let _ = writeln!(h, "<li style=\"margin:0 0 6px\">{}</li>", esc(s));
        }
        h.push_str("</ol>\n");
    }
    let _ = writeln!(
        h,
        "<h2 style=\"font-size:14px;margin:24px 0 8px;color:#57606a\">{}</h2>",
        esc(&d.details_heading)
    );
    for s in &d.details {
        if let Some(head) = &s.heading {
            let _ = writeln!(
                h,
                "<h3 style=\"font-size:13px;margin:12px 0 4px;color:#57606a\">{}</h3>",
                esc(head)
            );
        }
        h.push_str("<table style=\"border-collapse:collapse;font-size:13px;margin:0 0 8px\">\n");
        for (label, value, mono) in &s.rows {
            let vstyle = if *mono { MONO } else { "" };
            let _ = writeln!(
                h,
                "<tr><th style=\"text-align:left;vertical-align:top;padding:2px 12px 2px 0;color:#57606a;font-weight:normal;white-space:nowrap\">{}</th>\
                 <td style=\"padding:2px 0;{vstyle}\">{}</td></tr>",
                esc(label),
                esc(value)
            );
        }
        h.push_str("</table>\n");
    }
    for n in &d.notes {
        let _ = writeln!(h, "<p style=\"margin:8px 0;font-size:13px\">{}</p>", esc(n));
    }
    let _ = write!(
        h,
        "<p style=\"margin:24px 0 0;padding-top:8px;border-top:1px solid #d0d7de;font-size:12px;color:#6e7781\">{}</p>\n</div>\n</body></html>\n",
        esc(&d.footer)
    );
    h
}

/// HTML-escapes text for element content and quoted attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Text safe for a header: no control characters, bounded length.
fn header_text(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut out: String = cleaned.split_whitespace().collect::<Vec<_>>().join(" ");
    if out.chars().count() > MAX_HEADER_TEXT {
        out = out.chars().take(MAX_HEADER_TEXT - 1).collect();
        out.push('…');
    }
    out
}

fn raw_header(name: &'static str, value: String) -> HeaderValue {
    HeaderValue::new(HeaderName::new_from_ascii_str(name), value)
}

/// A Message-ID from a bounce as `<local@domain>`, or `None` when it is not one
/// (so nothing odd is copied into our headers).
pub fn msg_id(s: &str) -> Option<String> {
    let inner = s.trim().trim_start_matches('<').trim_end_matches('>');
    let ok = inner.len() <= 250
        && inner.contains('@')
        && inner
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'<' | b'>' | b'"' | b'\\' | b','));
    ok.then(|| format!("<{inner}>"))
}

/// A bounce as an attachment: the whole message (`message/rfc822`), or, when it is
/// larger than [`MAX_ATTACHMENT`] (a returned original with big files), only its header
/// block (`text/rfc822-headers`, RFC 6522), so advice mail stays small.
fn attachment(raw: &[u8], name: &str) -> SinglePart {
    if raw.len() <= MAX_ATTACHMENT {
        return SinglePart::builder()
            .header(ContentType::parse("message/rfc822").expect("valid MIME type"))
            .header(ContentDisposition::attachment(&format!("{name}.eml")))
            .body(rfc822_body(raw));
    }
    let end = [&b"\r\n\r\n"[..], b"\n\n"]
        .iter()
        .filter_map(|sep| raw.windows(sep.len()).position(|w| w == *sep))
        .min()
        .unwrap_or(raw.len())
        .min(64 * 1024);
    SinglePart::builder()
        .header(ContentType::parse("text/rfc822-headers").expect("valid MIME type"))
        .header(ContentDisposition::attachment(&format!(
            "{name}-headers.txt"
        )))
        .body(rfc822_body(&raw[..end]))
}

/// The bounce as a `message/rfc822` body. RFC 2046 wants 7bit / 8bit for this type:
/// we use 7bit when the bounce is ASCII with lines of at most 998 octets (almost all
/// are), else base64, which keeps the advice mail 7-bit clean for smarthosts without
/// 8BITMIME and which every MIME parser we tried reads.
fn rfc822_body(raw: &[u8]) -> Body {
    let mut crlf = Vec::with_capacity(raw.len() + raw.len() / 40);
    let mut prev = 0u8;
    for &b in raw {
        if b == b'\n' && prev != b'\r' {
            crlf.push(b'\r');
        }
        crlf.push(b);
        prev = b;
    }
    if !crlf.ends_with(b"\r\n") {
        crlf.extend_from_slice(b"\r\n");
    }
    let clean = crlf.iter().all(|&b| b.is_ascii() && b != 0)
        && crlf
            .split(|&b| b == b'\n')
            .all(|l| l.len() <= 999 && !l[..l.len().saturating_sub(1)].contains(&b'\r'));
    if clean {
        Body::dangerous_pre_encoded(crlf, ContentTransferEncoding::SevenBit)
    } else {
        Body::new_with_encoding(raw.to_vec(), ContentTransferEncoding::Base64)
            .expect("base64 encodes anything")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_are_normalised_or_refused() {
        assert_eq!(
            msg_id(" <a.b@example.com> ").as_deref(),
            Some("<a.b@example.com>")
        );
        assert_eq!(msg_id("a@b").as_deref(), Some("<a@b>"));
        assert_eq!(msg_id("<no at sign>"), None);
        assert_eq!(msg_id("<a@b>\r\nBcc: x@y"), None);
    }

    #[test]
    fn header_text_strips_controls_and_bounds_length() {
        assert_eq!(header_text("a\r\nBcc: x"), "a Bcc: x");
        assert_eq!(
            header_text(&"x".repeat(500)).chars().count(),
            MAX_HEADER_TEXT
        );
    }

    #[test]
    fn html_escaping_covers_markup_and_quotes() {
        assert_eq!(esc("<b a=\"1\">&'"), "&lt;b a=&quot;1&quot;&gt;&amp;&#39;");
    }

    #[test]
    fn large_bounces_attach_as_headers_only() {
        let mut raw = b"Subject: big\r\nFrom: a@b.example\r\n\r\n".to_vec();
        raw.resize(MAX_ATTACHMENT + 1, b'x');
        let part = String::from_utf8(attachment(&raw, "bounce").formatted()).unwrap();
        assert!(part.contains("Content-Type: text/rfc822-headers"), "{part}");
        assert!(part.contains("Subject: big\r\nFrom: a@b.example\r\n"));
        assert!(part.len() < 1024, "{} bytes", part.len());
        let small =
            String::from_utf8(attachment(b"Subject: s\r\n\r\nhi\r\n", "bounce").formatted())
                .unwrap();
        assert!(small.contains("Content-Type: message/rfc822"));
        assert!(small.contains("filename=\"bounce.eml\""));
    }

    #[test]
    fn bounces_attach_as_7bit_when_they_can() {
        assert_eq!(
            rfc822_body(b"Subject: x\n\nhi\n").encoding(),
            ContentTransferEncoding::SevenBit
        );
        assert_eq!(
            rfc822_body(b"Subject: x\r\n\r\nhi").as_ref(),
            b"Subject: x\r\n\r\nhi\r\n"
        );
        let long = format!("Subject: x\n\n{}\n", "y".repeat(1200));
        assert_eq!(
            rfc822_body(long.as_bytes()).encoding(),
            ContentTransferEncoding::Base64
        );
        assert_eq!(
            rfc822_body("Subject: é\n\n".as_bytes()).encoding(),
            ContentTransferEncoding::Base64
        );
    }
}
