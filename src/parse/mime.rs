//! A bounce seen as MIME: which part is the human notice, which is the machine
//! report, which is the returned original.
//!
//! The walk follows mail-parser's reading of MIME exactly (boundaries found where it
//! finds them, its transfer decoders and charset tables, its recovery from broken
//! parts), but it is our own loop over the raw bytes rather than a full
//! `MessageParser::parse`, for speed: header blocks are read in place
//! ([`super::header`]), and only the parts a bounce analysis reads are decoded. The
//! returned original is the big one: its headers are all we need, so its body
//! (often the largest part of a bounce, with its own attachments) is skipped by
//! boundary search, not parsed. One deliberate difference: a part that plays no
//! role (an image, an attachment) is not decoded, so when its encoding is broken
//! it is skipped rather than read as text; mail-parser would make its base64 a
//! "notice". Parts are sorted by the role they play in a bounce,
//! so the format parsers never touch MIME themselves. This module also repairs text
//! that was sent without a charset label (raw ISO-2022-JP, Shift_JIS, EUC-JP are
//! common in Japanese bounces), which can only be read as lossy UTF-8 otherwise.

use std::borrow::Cow;

use mail_parser::decoders::charsets::map::charset_decoder;
use mail_parser::parsers::MessageStream;
use mail_parser::ContentType;

use crate::phrases::find_ignore_ascii_case;

use super::header::{self, HeaderBlock};
use super::transfer;

/// The returned original message, as found.
#[derive(Debug, Clone)]
pub enum Returned<'m> {
    /// A `message/rfc822` or `message/global` part: the original's header block
    /// starts at the first byte (its body follows; it is not read).
    Message(Cow<'m, [u8]>),
    /// A `text/rfc822-headers` or `message/global-headers` part (or an original that
    /// could not be read as a message): header text only.
    Headers(Cow<'m, [u8]>),
}

/// The parts of a bounce by role.
#[derive(Debug, Default)]
pub struct BounceParts<'m> {
    /// The bounce's own header block.
    pub top: HeaderBlock<'m>,
    /// Human-readable text parts outside the returned original, decoded, in order.
    pub notices: Vec<Cow<'m, str>>,
    /// The body of a `message/delivery-status` or `message/global-delivery-status` part.
    pub delivery_status: Option<Cow<'m, str>>,
    /// True if the delivery status came from an RFC 6533 `global` part.
    pub global: bool,
    /// The body of a `message/feedback-report` part (ARF).
    pub feedback_report: Option<Cow<'m, str>>,
    pub returned: Option<Returned<'m>>,
    /// The top-level content type is `multipart/report`.
    pub is_report: bool,
}

/// A part's lower-case type and subtype (`text/plain` when it has no usable
/// Content-Type, as RFC 2045 says).
fn type_pair<'c>(ct: Option<&'c ContentType<'_>>) -> (Cow<'c, str>, Cow<'c, str>) {
    let lower = |s: &'c str| {
        if s.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(s.to_ascii_lowercase())
        } else {
            Cow::Borrowed(s)
        }
    };
    match ct {
        Some(ct) => (lower(ct.ctype()), lower(ct.subtype().unwrap_or(""))),
        None => (Cow::Borrowed("text"), Cow::Borrowed("plain")),
    }
}

fn is_report(ct: Option<&ContentType<'_>>) -> bool {
    let (t, s) = type_pair(ct);
    t == "multipart" && s == "report"
}

/// Sorts the parts of the message `raw` by role (see [`BounceParts`]). `None` if
/// `raw` has no header block at all (nothing that parses as a message).
pub fn bounce_parts(raw: &[u8]) -> Option<BounceParts<'_>> {
    let top = header::read(raw, 0);
    if top.is_empty() && !top.complete {
        return None;
    }
    let mut walker = Walker {
        data: raw,
        out: BounceParts::default(),
    };
    let ct = top.content_type();
    walker.out.is_report = is_report(ct.as_ref());
    if top.complete {
        walker.entity(&top, ct, None, false, 0, true);
    } else {
        let (t, s) = type_pair(ct.as_ref());
        // Headers only: mail-parser gives such a message one empty text part.
        walker.leaf(&t, &s, Body::text(Cow::Borrowed(""), false, b""));
    }
    walker.out.top = top;
    Some(walker.out)
}

/// How far an entity's body reached.
#[derive(Debug, Clone, Copy)]
struct End {
    /// Just past the boundary line that closed it (or the end of the data).
    pos: usize,
    /// False if the data ended first: nothing after it can be parsed.
    found: bool,
}

/// A decoded leaf part.
struct Body<'m> {
    text: Option<Cow<'m, str>>,
    bytes: Cow<'m, [u8]>,
    /// The transfer encoding was applied (not identity).
    encoded: bool,
    /// The part's raw body, for re-decoding unlabelled text.
    raw: &'m [u8],
    html: bool,
    /// The transfer encoding was broken (or the closing boundary missing): the body
    /// is the raw bytes, read as text.
    broken: bool,
}

impl<'m> Body<'m> {
    fn text(text: Cow<'m, str>, encoded: bool, raw: &'m [u8]) -> Self {
        Body {
            text: Some(text),
            bytes: Cow::Borrowed(b""),
            encoded,
            raw,
            html: false,
            broken: false,
        }
    }
}

/// The transfer encodings mail-parser decodes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Transfer {
    Identity,
    Base64,
    QuotedPrintable,
}

fn transfer(h: &HeaderBlock<'_>) -> Transfer {
    let v = h
        .raw_str("Content-Transfer-Encoding")
        .map(str::trim)
        .unwrap_or("");
    if v.eq_ignore_ascii_case("base64") {
        Transfer::Base64
    } else if v.eq_ignore_ascii_case("quoted-printable") {
        Transfer::QuotedPrintable
    } else {
        Transfer::Identity
    }
}

struct Walker<'m> {
    data: &'m [u8],
    out: BounceParts<'m>,
}

impl<'m> Walker<'m> {
    /// Reads the entity whose header block is `h` (its body starts at `h.end`) up to
    /// and including the `parent` boundary that closes it. `collect` false skips it:
    /// its structure is followed (so the right boundary closes it) but nothing is
    /// decoded or kept.
    /// `ct` is the block's parsed Content-Type.
    fn entity(
        &mut self,
        h: &HeaderBlock<'m>,
        ct: Option<ContentType<'m>>,
        parent: Option<&[u8]>,
        in_digest: bool,
        depth: usize,
        collect: bool,
    ) -> End {
        let collect = collect && depth <= 16;
        let (ctype, sub) = match &ct {
            None if in_digest => (Cow::Borrowed("message"), Cow::Borrowed("rfc822")),
            _ => type_pair(ct.as_ref()),
        };
        let mut as_text = ctype == "text";
        if ctype == "multipart" {
            if let Some(boundary) = ct.as_ref().and_then(|c| c.attribute("boundary")) {
                if let Some(first) = find_boundary(self.data, h.end, boundary.as_bytes()) {
                    return self.multipart(
                        first,
                        boundary.as_bytes(),
                        parent,
                        &sub,
                        depth,
                        collect,
                    );
                }
                // A boundary that never occurs: the body is read as text.
                as_text = true;
            }
        }
        if ctype == "message" && (sub == "rfc822" || sub == "global") {
            return self.message(h, parent, depth, collect);
        }
        if !collect {
            return self.skip(h.end, parent);
        }
        if !self.wanted(&ctype, &sub, as_text) {
            let end = self.skip(h.end, parent);
            if end.found || parent.is_none() {
                return end;
            }
            // Its closing boundary never comes: mail-parser then reads the rest of
            // the data as this part's text (a report after it included), and so do we.
        }
        let charset = ct.as_ref().and_then(|c| c.attribute("charset"));
        let (mut body, end) = self.decode(h.end, transfer(h), parent, as_text, charset);
        // A broken HTML part is read as plain text, as mail-parser reads it.
        body.html = ctype == "text" && sub == "html" && !body.broken;
        self.leaf(&ctype, &sub, body);
        end
    }

    /// The parts of a multipart whose first boundary ends at `first`.
    fn multipart(
        &mut self,
        first: usize,
        boundary: &[u8],
        parent: Option<&[u8]>,
        sub: &str,
        depth: usize,
        collect: bool,
    ) -> End {
        let digest = sub == "digest";
        let mut pos = skip_crlf(self.data, first);
        loop {
            let child = header::read(self.data, pos);
            if !child.complete {
                return self.stop();
            }
            let ct = child.content_type();
            let end = self.entity(&child, ct, Some(boundary), digest, depth + 1, collect);
            if !end.found {
                return self.stop();
            }
            let (next, closed) = multipart_end(self.data, end.pos);
            if closed {
                // The closing boundary: what follows belongs to the parent.
                return match parent.and_then(|p| find_boundary(self.data, next, p)) {
                    Some(pos) => End { pos, found: true },
                    None => self.stop(),
                };
            }
            pos = next;
        }
    }

    /// A `message/rfc822` (or `global`) part: the returned original, or a whole
    /// bounce forwarded inside another notice.
    fn message(
        &mut self,
        h: &HeaderBlock<'m>,
        parent: Option<&[u8]>,
        depth: usize,
        collect: bool,
    ) -> End {
        let encoding = transfer(h);
        if encoding == Transfer::Identity {
            let inner = header::read(self.data, h.end);
            let rest = &self.data[h.end..];
            if !inner.complete {
                // Cut off inside its header block: what there is, as header text.
                if collect && self.out.returned.is_none() {
                    self.out.returned = Some(Returned::Headers(Cow::Borrowed(rest)));
                }
                return self.stop();
            }
            let ct = inner.content_type();
            if collect && is_report(ct.as_ref()) && self.out.delivery_status.is_none() {
                // The inner report is the one that names the failure.
                self.out.is_report = true;
                return self.entity(&inner, ct, parent, false, depth + 1, true);
            }
            if collect && self.out.returned.is_none() {
                self.out.returned = Some(Returned::Message(Cow::Borrowed(rest)));
            }
            return self.entity(&inner, ct, parent, false, depth + 1, false);
        }
        if !collect {
            return self.skip(h.end, parent);
        }
        let (body, end) = self.decode(h.end, encoding, parent, false, None);
        if let Some(text) = body.text {
            // Undecodable: kept as text, the original's header text.
            if self.out.returned.is_none() {
                self.out.returned = Some(Returned::Headers(str_bytes(text)));
            }
            return end;
        }
        let decoded = body.bytes;
        let inner = header::read(&decoded, 0);
        if inner.is_empty() && !inner.complete {
            if self.out.returned.is_none() {
                self.out.returned = Some(Returned::Headers(decoded));
            }
            return end;
        }
        if is_report(inner.content_type().as_ref()) && self.out.delivery_status.is_none() {
            if let Some(nested) = bounce_parts(&decoded) {
                self.adopt(nested);
            }
        } else if self.out.returned.is_none() {
            self.out.returned = Some(Returned::Message(Cow::Owned(decoded.into_owned())));
        }
        end
    }

    /// Takes over the parts of a report forwarded in an encoded `message/rfc822`.
    fn adopt(&mut self, nested: BounceParts<'_>) {
        self.out.is_report = true;
        self.out.notices.extend(
            nested
                .notices
                .into_iter()
                .map(|n| Cow::Owned(n.into_owned())),
        );
        if let Some(ds) = nested.delivery_status {
            set_once(&mut self.out.delivery_status, Cow::Owned(ds.into_owned()));
            self.out.global |= nested.global;
        }
        if let Some(fb) = nested.feedback_report {
            set_once(&mut self.out.feedback_report, Cow::Owned(fb.into_owned()));
        }
        if self.out.returned.is_none() {
            self.out.returned = nested.returned.map(|r| match r {
                Returned::Message(b) => Returned::Message(Cow::Owned(b.into_owned())),
                Returned::Headers(b) => Returned::Headers(Cow::Owned(b.into_owned())),
            });
        }
    }

    /// Whether a leaf part of this type plays a role (see [`Self::leaf`]).
    fn wanted(&self, ctype: &str, sub: &str, as_text: bool) -> bool {
        as_text
            || sub.contains("delivery-status")
            || sub == "feedback-report"
            || sub == "rfc822-headers"
            || ctype == "multipart"
            || (ctype == "message" && self.out.returned.is_none())
    }

    /// Decodes the leaf body at `start` the way mail-parser does: the transfer
    /// encoding, then (for text) the charset; a body whose encoding is broken, or
    /// whose boundary never comes, is kept raw, as text.
    fn decode(
        &mut self,
        start: usize,
        encoding: Transfer,
        parent: Option<&[u8]>,
        as_text: bool,
        charset: Option<&str>,
    ) -> (Body<'m>, End) {
        let tail = &self.data[start..];
        let boundary = parent.unwrap_or(b"");
        let part = match encoding {
            Transfer::Base64 => {
                let mut stream = MessageStream::new(tail);
                let (end, bytes) = stream.decode_base64_mime(boundary);
                transfer::Part {
                    end: (end != usize::MAX).then_some(end),
                    bytes,
                    next: stream.offset(),
                }
            }
            Transfer::QuotedPrintable => transfer::quoted_printable(tail, boundary),
            Transfer::Identity => transfer::identity(tail, boundary),
        };
        let mut found = true;
        let mut encoded = encoding != Transfer::Identity;
        let mut as_text = as_text;
        let broken = part.end.is_none();
        let (end_rel, bytes, next) = match part.end {
            Some(end) => (end, part.bytes, part.next),
            None => {
                // Broken: the raw bytes up to the boundary (or the end), as text.
                let raw = transfer::identity(tail, boundary);
                let (end, next) = match raw.end {
                    Some(end) => (end, raw.next),
                    None => {
                        found = false;
                        (tail.len(), tail.len())
                    }
                };
                encoded = false;
                as_text = true;
                (end, Cow::Borrowed(&tail[..end]), next)
            }
        };
        let end = End {
            pos: start + next,
            found,
        };
        let raw = &tail[..end_rel.min(tail.len())];
        if !as_text {
            let body = Body {
                text: None,
                bytes,
                encoded,
                raw,
                html: false,
                broken,
            };
            return (body, end);
        }
        let decoder = charset
            .filter(|c| !ascii_compatible(c, &bytes))
            .and_then(|c| charset_decoder(c.as_bytes()));
        let text: Cow<'m, str> = match (bytes, decoder) {
            (Cow::Owned(vec), Some(dec)) => Cow::Owned(dec(&vec)),
            (Cow::Owned(vec), None) => Cow::Owned(
                String::from_utf8(vec)
                    .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
            ),
            (Cow::Borrowed(b), Some(dec)) => Cow::Owned(dec(b)),
            // Valid UTF-8 (the usual case) is checked faster than lossy decoding reads it.
            (Cow::Borrowed(b), None) => {
                std::str::from_utf8(b).map_or_else(|_| String::from_utf8_lossy(b), Cow::Borrowed)
            }
        };
        let mut body = Body::text(text, encoded, raw);
        body.broken = broken;
        (body, end)
    }

    /// Files one decoded leaf part by its role.
    fn leaf(&mut self, ctype: &str, sub: &str, body: Body<'m>) {
        let Some(text) = body.text else {
            let bytes = body.bytes;
            if sub.contains("delivery-status") {
                set_once(&mut self.out.delivery_status, lossy(bytes));
                self.out.global |= sub.starts_with("global");
            } else if sub == "feedback-report" {
                set_once(&mut self.out.feedback_report, lossy(bytes));
            } else if ctype == "message" || sub == "rfc822-headers" {
                if self.out.returned.is_none() {
                    self.out.returned = Some(Returned::Headers(bytes));
                }
            } else if ctype == "multipart" || ctype == "text" {
                // A multipart whose boundary could not be read (some servers put the
                // `boundary=` parameter on an unindented line) arrives as opaque
                // bytes; its raw body still holds the notice, boundary lines and all.
                self.out.notices.push(match bytes {
                    Cow::Borrowed(b) => decode_unlabelled(b),
                    Cow::Owned(b) => Cow::Owned(decode_unlabelled(&b).into_owned()),
                });
            }
            return;
        };
        if sub.contains("delivery-status") {
            set_once(&mut self.out.delivery_status, text);
            self.out.global |= sub.starts_with("global");
        } else if sub == "feedback-report" {
            set_once(&mut self.out.feedback_report, text);
        } else if sub == "rfc822-headers"
            || (ctype == "message"
                && (sub.contains("headers") || sub == "rfc822" || sub == "global"))
        {
            // (A returned message that could not be read as a message lands here too.)
            if self.out.returned.is_none() {
                self.out.returned = Some(Returned::Headers(str_bytes(text)));
            }
        } else {
            let text = repair_text(body.encoded, body.raw, text);
            self.out.notices.push(if body.html {
                Cow::Owned(html_to_text(&text))
            } else {
                text
            });
        }
    }

    /// Skips a body that plays no role, up to the `parent` boundary.
    fn skip(&self, start: usize, parent: Option<&[u8]>) -> End {
        match parent {
            Some(b) => match find_boundary(self.data, start, b) {
                Some(pos) => End { pos, found: true },
                None => self.stop(),
            },
            None => self.stop(),
        }
    }

    /// The end of the data: nothing more to read.
    fn stop(&self) -> End {
        End {
            pos: self.data.len(),
            found: false,
        }
    }
}

fn str_bytes(text: Cow<'_, str>) -> Cow<'_, [u8]> {
    match text {
        Cow::Borrowed(s) => Cow::Borrowed(s.as_bytes()),
        Cow::Owned(s) => Cow::Owned(s.into_bytes()),
    }
}

fn lossy(bytes: Cow<'_, [u8]>) -> Cow<'_, str> {
    // Valid UTF-8 (the usual case) is checked faster than lossy decoding reads it,
    // and owned bytes are kept rather than copied.
    match bytes {
        Cow::Borrowed(b) => {
            std::str::from_utf8(b).map_or_else(|_| String::from_utf8_lossy(b), Cow::Borrowed)
        }
        Cow::Owned(b) => Cow::Owned(
            String::from_utf8(b)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
        ),
    }
}

/// Just past the first `--boundary` at or after `from`, if any.
fn find_boundary(data: &[u8], from: usize, boundary: &[u8]) -> Option<usize> {
    transfer::find_dashes(data.get(from..)?, boundary).map(|d| from + d + 2 + boundary.len())
}

/// True if `bytes` read the same in `charset` as in ASCII, so decoding can be
/// skipped: they are ASCII (without the escape byte that switches ISO-2022-JP out
/// of it) and the charset is one that extends ASCII.
fn ascii_compatible(charset: &str, bytes: &[u8]) -> bool {
    const EXTENDS_ASCII: &[&str] = &[
        "us-ascii",
        "ascii",
        "utf-8",
        "utf8",
        "iso-8859-1",
        "iso-8859-15",
        "windows-1252",
        "cp1252",
        "iso-2022-jp",
    ];
    EXTENDS_ASCII
        .iter()
        .any(|c| c.eq_ignore_ascii_case(charset.trim()))
        && bytes.is_ascii()
        && !bytes.contains(&0x1b)
}

/// After a boundary: `--` closes the multipart; otherwise the line break that ends
/// the boundary line is passed over (mail-parser's `is_multipart_end`).
fn multipart_end(data: &[u8], pos: usize) -> (usize, bool) {
    match (data.get(pos), data.get(pos + 1)) {
        (Some(b'\r'), Some(b'\n')) => (pos + 2, false),
        (Some(b'-'), Some(b'-')) => (pos + 2, true),
        (Some(b'\n'), _) => (pos + 1, false),
        (Some(c), _) if c.is_ascii_whitespace() => (skip_crlf(data, pos + 1), false),
        _ => (pos, false),
    }
}

/// Passes over blanks and at most one line break.
fn skip_crlf(data: &[u8], mut pos: usize) -> usize {
    while let Some(&c) = data.get(pos) {
        match c {
            b'\r' | b' ' | b'\t' => pos += 1,
            b'\n' => return pos + 1,
            _ => break,
        }
    }
    pos
}

fn set_once<'m>(slot: &mut Option<Cow<'m, str>>, value: Cow<'m, str>) {
    if slot.is_none() {
        *slot = Some(value);
    }
}

/// Re-decodes a text part that had no usable charset label from its raw bytes
/// (`encoded`: a transfer encoding was applied, so the raw bytes are not the text).
fn repair_text<'m>(encoded: bool, raw: &'m [u8], text: Cow<'m, str>) -> Cow<'m, str> {
    if encoded {
        return text;
    }
    // Lossy decoding leaves U+FFFD or the escape bytes behind; a decoder that
    // dropped the ISO-2022-JP escapes leaves plain ASCII ("$B%G%#...") instead.
    let suspicious = memchr::memmem::find(text.as_bytes(), "\u{fffd}".as_bytes()).is_some()
        || memchr::memchr(0x1b, text.as_bytes()).is_some()
        || (text.is_ascii() && has_jis_escape(raw));
    if !suspicious || raw.is_empty() {
        return text;
    }
    Cow::Owned(decode_unlabelled(raw).into_owned())
}

/// True if `raw` switches to JIS X 0208 the way ISO-2022-JP text does.
fn has_jis_escape(raw: &[u8]) -> bool {
    // Most text has no ESC at all; `contains` finds that out with memchr.
    raw.contains(&0x1b) && raw.windows(3).any(|w| w == b"\x1b$B" || w == b"\x1b$@")
}

/// Decodes bytes of unknown charset: UTF-8 if valid; ISO-2022-JP if it has the
/// escape sequences; otherwise whichever of Shift_JIS and EUC-JP decodes cleanly;
/// otherwise Windows-1252 (never fails).
pub fn decode_unlabelled(raw: &[u8]) -> Cow<'_, str> {
    let has_esc = raw.contains(&0x1b) && raw.windows(2).any(|w| w == b"\x1b$" || w == b"\x1b(");
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
    while let Some(lt) = memchr::memchr(b'<', rest.as_bytes()) {
        out.push_str(&rest[..lt]);
        let after = &rest[lt + 1..];
        // The tag runs to its '>'. One never closed runs to the end of the text, less
        // its last character (as it always has: a cut-off "<p" is not a paragraph).
        let (tag, gt) = match memchr::memchr(b'>', after.as_bytes()) {
            Some(g) => (&after[..g], g + 1),
            None => {
                let last = after.char_indices().next_back().map_or(0, |(i, _)| i);
                (&after[..last], after.len())
            }
        };
        let name = tag.trim_start_matches('/').as_bytes();
        // The tag's name, ASCII case ignored (the tag itself is not copied).
        let is = |t: &str| {
            name.get(..t.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(t.as_bytes()))
        };
        if ["br", "p", "div", "tr", "li", "h1", "h2", "h3", "table"]
            .iter()
            .any(|t| is(t))
        {
            out.push('\n');
        }
        if is("style") || is("script") {
            let close: &[u8] = if is("style") { b"</style" } else { b"</script" };
            rest = match find_ignore_ascii_case(after.as_bytes(), close, 0) {
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
    decode_entities(out)
}

/// The entities [`html_to_text`] decodes, and what they stand for.
const ENTITIES: [(&str, &str); 6] = [
    ("&nbsp;", " "),
    ("&lt;", "<"),
    ("&gt;", ">"),
    ("&quot;", "\""),
    ("&#39;", "'"),
    ("&amp;", "&"),
];

/// Decodes [`ENTITIES`] in one pass. A decoded `&` does not start another entity
/// ("&amp;lt;" is "&lt;"). Each entity runs from its `&` to its `;` with neither in
/// between, so two can never overlap and the order they are tried in does not matter.
fn decode_entities(text: String) -> String {
    let Some(first) = memchr::memchr(b'&', text.as_bytes()) else {
        return text;
    };
    let mut out = String::with_capacity(text.len());
    out.push_str(&text[..first]);
    let mut rest = &text[first..];
    while let Some(amp) = memchr::memchr(b'&', rest.as_bytes()) {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        match ENTITIES.iter().find(|(e, _)| rest.starts_with(e)) {
            Some((entity, decoded)) => {
                out.push_str(decoded);
                rest = &rest[entity.len()..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The decoding `decode_entities` replaced: one `replace` per entity, in order.
    fn decode_entities_by_replace(text: &str) -> String {
        ENTITIES
            .iter()
            .fold(text.to_string(), |t, (entity, decoded)| {
                t.replace(entity, decoded)
            })
    }

    proptest::proptest! {
        #[test]
        fn entities_decode_as_chained_replaces_did(
            text in "(&|;|#|39|nbsp|lt|gt|quot|amp|x|\u{e9})*",
        ) {
            proptest::prop_assert_eq!(
                decode_entities(text.clone()),
                decode_entities_by_replace(&text)
            );
        }
    }

    #[test]
    fn entities_decode_once() {
        assert_eq!(
            decode_entities("a&amp;lt;b &lt;&gt;&quot;&#39;&nbsp;&&x;".into()),
            "a&lt;b <>\"' &&x;"
        );
    }

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

    /// Found by cargo fuzz: a tag left open at the end of an HTML notice, its last
    /// character multi-byte, was cut inside that character.
    #[test]
    fn regression_unclosed_tag_ending_in_a_multibyte_character() {
        assert_eq!(
            html_to_text("550 user unknown <td style=\"x\u{fffd}"),
            "550 user unknown "
        );
        assert_eq!(html_to_text("a<\u{3042}"), "a");
        assert_eq!(html_to_text("<p"), "");
    }

    proptest::proptest! {
        #[test]
        fn html_to_text_takes_any_text(html in "(?s).{0,40}") {
            let _ = html_to_text(&html);
        }
    }

    #[test]
    fn html_tag_names_ignore_case_and_odd_bytes() {
        let t = html_to_text(
            "a<BR>b<//Div class=x>c<Tr><h\u{e9}>d<SCRIPT>x</ScRiPt>e<STYLE x>y</style >f<t\u{e4}ble><p",
        );
        assert_eq!(t, "a\nb\nc\ndef");
        assert_eq!(html_to_text("<li>x &amp;lt; &lt;"), "\nx &lt; <");
    }
}
