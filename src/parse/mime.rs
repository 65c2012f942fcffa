//! A bounce seen as MIME: which part is the human notice, which is the machine
//! report, which is the returned original.
//!
//! mail-parser does the MIME work (boundaries, transfer encodings, charsets); this
//! module walks its part tree once and sorts the parts by the role they play in a
//! bounce, so the format parsers never touch MIME themselves. It also repairs text
//! that was sent without a charset label (raw ISO-2022-JP, Shift_JIS, EUC-JP are
//! common in Japanese bounces), which mail-parser can only read as lossy UTF-8.

use std::borrow::Cow;

use mail_parser::{Message, MessagePart, MimeHeaders, PartType};

/// The returned original message, as found.
#[derive(Debug, Clone, Copy)]
pub enum Returned<'m, 'x> {
    /// A `message/rfc822` or `message/global` part, parsed.
    Message(&'m Message<'x>),
    /// A `text/rfc822-headers` or `message/global-headers` part: header text only.
    Headers(&'m [u8]),
}

/// The parts of a bounce by role.
#[derive(Debug, Default)]
pub struct BounceParts<'m, 'x> {
    /// Human-readable text parts outside the returned original, decoded, in order.
    pub notices: Vec<Cow<'m, str>>,
    /// The body of a `message/delivery-status` or `message/global-delivery-status` part.
    pub delivery_status: Option<Cow<'m, str>>,
    /// True if the delivery status came from an RFC 6533 `global` part.
    pub global: bool,
    /// The body of a `message/feedback-report` part (ARF).
    pub feedback_report: Option<Cow<'m, str>>,
    pub returned: Option<Returned<'m, 'x>>,
    /// The top-level content type is `multipart/report`.
    pub is_report: bool,
}

fn content_type(part: &MessagePart<'_>) -> (String, String) {
    match part.content_type() {
        Some(ct) => (
            ct.ctype().to_ascii_lowercase(),
            ct.subtype().unwrap_or("").to_ascii_lowercase(),
        ),
        None => ("text".into(), "plain".into()),
    }
}

/// Sorts the parts of `msg` by role (see [`BounceParts`]).
pub fn bounce_parts<'m, 'x>(msg: &'m Message<'x>) -> BounceParts<'m, 'x> {
    let mut out = BounceParts::default();
    if let Some(root) = msg.parts.first() {
        let (t, s) = content_type(root);
        out.is_report = t == "multipart" && s == "report";
        walk(msg, 0, &mut out, 0);
    }
    out
}

fn walk<'m, 'x>(msg: &'m Message<'x>, id: usize, out: &mut BounceParts<'m, 'x>, depth: usize) {
    let Some(part) = msg.parts.get(id) else {
        return;
    };
    if depth > 16 {
        return;
    }
    let (ctype, sub) = content_type(part);
    match &part.body {
        PartType::Multipart(children) => {
            for &c in children {
                walk(msg, c as usize, out, depth + 1);
            }
        }
        PartType::Message(inner) => {
            // A bounce forwarded inside another notice: the inner report is the one
            // that names the failure.
            let inner_is_report = inner.parts.first().is_some_and(|p| {
                let (t, s) = content_type(p);
                t == "multipart" && s == "report"
            });
            if inner_is_report && out.delivery_status.is_none() {
                out.is_report = true;
                walk(inner, 0, out, depth + 1);
            } else if out.returned.is_none() {
                out.returned = Some(Returned::Message(inner));
            }
        }
        PartType::Text(text) | PartType::Html(text) => {
            let is_html = matches!(part.body, PartType::Html(_));
            if sub.contains("delivery-status") {
                set_once(&mut out.delivery_status, Cow::Borrowed(text.as_ref()));
                out.global |= sub.starts_with("global");
            } else if sub == "feedback-report" {
                set_once(&mut out.feedback_report, Cow::Borrowed(text.as_ref()));
            } else if sub == "rfc822-headers" || (ctype == "message" && sub.contains("headers")) {
                if out.returned.is_none() {
                    out.returned = Some(Returned::Headers(text.as_bytes()));
                }
            } else if ctype == "message" && (sub == "rfc822" || sub == "global") {
                // A returned message mail-parser could not parse as a message.
                if out.returned.is_none() {
                    out.returned = Some(Returned::Headers(text.as_bytes()));
                }
            } else {
                let text = repair_text(msg, part, text);
                if is_html {
                    out.notices.push(Cow::Owned(html_to_text(&text)));
                } else {
                    out.notices.push(text);
                }
            }
        }
        PartType::Binary(bytes) | PartType::InlineBinary(bytes) => {
            if sub.contains("delivery-status") {
                set_once(&mut out.delivery_status, String::from_utf8_lossy(bytes));
                out.global |= sub.starts_with("global");
            } else if sub == "feedback-report" {
                set_once(&mut out.feedback_report, String::from_utf8_lossy(bytes));
            } else if (ctype == "message" && sub.contains("headers")) || sub == "rfc822-headers" {
                if out.returned.is_none() {
                    out.returned = Some(Returned::Headers(bytes));
                }
            } else if ctype == "message" && out.returned.is_none() {
                out.returned = Some(Returned::Headers(bytes));
            } else if ctype == "multipart" || ctype == "text" {
                // A multipart whose boundary could not be read (some servers put the
                // `boundary=` parameter on an unindented line) arrives as opaque
                // bytes; its raw body still holds the notice, boundary lines and all.
                out.notices.push(decode_unlabelled(bytes));
            }
        }
    }
}

fn set_once<'m>(slot: &mut Option<Cow<'m, str>>, value: Cow<'m, str>) {
    if slot.is_none() {
        *slot = Some(value);
    }
}

/// Re-decodes a text part that had no usable charset label from its raw bytes.
fn repair_text<'m>(msg: &'m Message<'_>, part: &'m MessagePart<'_>, text: &'m str) -> Cow<'m, str> {
    if part.encoding != mail_parser::Encoding::None {
        return Cow::Borrowed(text);
    }
    let raw = msg
        .raw_message
        .get(part.offset_body as usize..part.offset_end as usize)
        .unwrap_or_default();
    // Lossy decoding leaves U+FFFD or the escape bytes behind; a decoder that
    // dropped the ISO-2022-JP escapes leaves plain ASCII ("$B%G%#...") instead.
    let suspicious = text.contains('\u{fffd}')
        || text.contains('\u{1b}')
        || (text.is_ascii() && has_jis_escape(raw));
    if !suspicious || raw.is_empty() {
        return Cow::Borrowed(text);
    }
    Cow::Owned(decode_unlabelled(raw).into_owned())
}

/// True if `raw` switches to JIS X 0208 the way ISO-2022-JP text does.
fn has_jis_escape(raw: &[u8]) -> bool {
    raw.windows(3).any(|w| w == b"\x1b$B" || w == b"\x1b$@")
}

/// Decodes bytes of unknown charset: UTF-8 if valid; ISO-2022-JP if it has the
/// escape sequences; otherwise whichever of Shift_JIS and EUC-JP decodes cleanly;
/// otherwise Windows-1252 (never fails).
pub fn decode_unlabelled(raw: &[u8]) -> Cow<'_, str> {
    let has_esc = raw.windows(2).any(|w| w == b"\x1b$" || w == b"\x1b(");
    if !has_esc {
        if let Ok(s) = std::str::from_utf8(raw) {
            return Cow::Borrowed(s);
        }
    }
    if has_esc {
        let (s, _, _) = encoding_rs::ISO_2022_JP.decode(raw);
        return s;
    }
    for enc in [encoding_rs::SHIFT_JIS, encoding_rs::EUC_JP] {
        let (s, _, errors) = enc.decode(raw);
        if !errors {
            return s;
        }
    }
    encoding_rs::WINDOWS_1252.decode(raw).0
}

/// A readable plain-text rendering of an HTML notice: tags dropped, block tags as
/// line breaks, the common entities decoded.
pub fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    let mut rest = html;
    while let Some(lt) = rest.find('<') {
        out.push_str(&rest[..lt]);
        let after = &rest[lt + 1..];
        let gt = after.find('>').map_or(after.len(), |g| g + 1);
        let tag = after[..gt.saturating_sub(1).min(after.len())].to_ascii_lowercase();
        let name = tag.trim_start_matches('/');
        if ["br", "p", "div", "tr", "li", "h1", "h2", "h3", "table"]
            .iter()
            .any(|t| name.starts_with(t))
        {
            out.push('\n');
        }
        if name.starts_with("style") || name.starts_with("script") {
            let close = if name.starts_with("style") {
                "</style"
            } else {
                "</script"
            };
            let lower_after = after.to_ascii_lowercase();
            rest = match lower_after.find(close) {
                Some(i) => &after[i..],
                None => "",
            };
            if let Some(g) = rest.find('>') {
                rest = &rest[g + 1..];
            }
            continue;
        }
        rest = after.get(gt..).unwrap_or("");
    }
    out.push_str(rest);
    out.replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlabelled_iso_2022_jp_and_shift_jis_decode() {
        let (jis, _, _) = encoding_rs::ISO_2022_JP.encode("宛先不明");
        assert_eq!(decode_unlabelled(&jis), "宛先不明");
        let (sjis, _, _) = encoding_rs::SHIFT_JIS.encode("宛先が見つかりません");
        assert_eq!(decode_unlabelled(&sjis), "宛先が見つかりません");
        assert_eq!(decode_unlabelled("plain ütf-8".as_bytes()), "plain ütf-8");
    }

    #[test]
    fn html_notice_becomes_text() {
        let t = html_to_text(
            "<html><style>p{x:1}</style><p>Delivery&nbsp;failed</p><b>550</b> 5.1.1<br>x",
        );
        assert_eq!(t.trim(), "Delivery failed\n550 5.1.1\nx");
    }
}
