//! Header blocks read in place: `Name: value` fields up to the first blank line.
//!
//! Why not mail-parser's message parser: a bounce carries several header blocks (the
//! bounce's own, each MIME part's, the returned original's), and we read a handful
//! of fields from each. Building a full `Message` parses every field and decodes every
//! body, the returned original's included, which cost more than everything else the
//! classifier does. This reader only finds where each field is (one `memchr` pass per
//! line, no allocation per field); values are interpreted on demand, with
//! mail-parser's own field parsers (RFC 2047 words, Content-Type, Message-ID), for the
//! few fields we keep (a plain Content-Type is read by [`super::content_type`]).
//!
//! The block is split the way mail-parser splits it, so both see the same fields:
//! leading blanks before a name are skipped, a line with no colon is skipped, a line
//! that is empty (or only blanks) ends the block, and a value runs on over lines that
//! start with a space or tab. Where a field repeats, lookups take the last one, as
//! mail-parser's do.

use std::borrow::Cow;

use mail_parser::parsers::MessageStream;
use mail_parser::{ContentType, HeaderValue};

/// One field: the name as written (trimmed) and the raw value, from just after the
/// colon to the end of its last line (folding kept).
#[derive(Debug, Clone, Copy)]
pub struct Field<'a> {
    pub name: &'a [u8],
    pub value: &'a [u8],
}

/// The fields of one header block, in order.
#[derive(Debug, Clone, Default)]
pub struct HeaderBlock<'a> {
    pub fields: Vec<Field<'a>>,
    /// Offset just past the block (past the blank line that ends it, or the end of
    /// the data), relative to the data it was read from.
    pub end: usize,
    /// False if the data ended before a blank line did.
    pub complete: bool,
}

/// Reads the header block that starts at `data[start..]`.
pub fn read(data: &[u8], start: usize) -> HeaderBlock<'_> {
    let mut out = HeaderBlock::default();
    let mut pos = start;
    loop {
        // Blanks before a field name are skipped; a line break there ends the block.
        while let Some(&c) = data.get(pos) {
            if c == b'\n' {
                out.end = pos + 1;
                out.complete = true;
                return out;
            }
            if !c.is_ascii_whitespace() {
                break;
            }
            pos += 1;
        }
        if pos >= data.len() {
            out.end = data.len();
            return out;
        }
        // The name: up to the first colon that follows a name character. A line
        // without one is not a field and is skipped.
        let line_end = memchr::memchr(b'\n', &data[pos..]).map_or(data.len(), |i| pos + i);
        let line = &data[pos..line_end];
        let colon = if line[0] == b':' {
            line.iter()
                .enumerate()
                .skip_while(|(_, c)| **c == b':' || c.is_ascii_whitespace())
                .find(|(_, c)| **c == b':')
                .map(|(i, _)| i)
        } else {
            memchr::memchr(b':', line)
        };
        let Some(colon) = colon else {
            if line_end >= data.len() {
                // mail-parser keeps a name cut off by the end of the data, valueless.
                let name = trim_name(line);
                if !name.is_empty() {
                    out.fields.push(Field { name, value: &[] });
                }
                out.end = data.len();
                return out;
            }
            pos = line_end + 1;
            continue;
        };
        let name = trim_name(&line[..colon]);
        let value_start = pos + colon + 1;
        let value_end = value_end(data, line_end);
        out.fields.push(Field {
            name,
            value: &data[value_start..value_end],
        });
        pos = value_end;
    }
}

/// Where a value whose first line ends at `line_end` (a line break, or the end of
/// the data) ends: past the first line break not followed by a space or tab.
fn value_end(data: &[u8], mut line_end: usize) -> usize {
    loop {
        if line_end >= data.len() {
            return data.len();
        }
        let next = line_end + 1;
        if !matches!(data.get(next), Some(b' ' | b'\t')) {
            return next;
        }
        line_end = match memchr::memchr(b'\n', &data[next + 1..]) {
            Some(i) => next + 1 + i,
            None => data.len(),
        };
    }
}

/// Whether a field's `name` is `wanted`, ASCII case ignored, and blanks inside the
/// name too ("M essage-Id"), as mail-parser ignores them.
fn name_is(name: &[u8], wanted: &str) -> bool {
    let wanted = wanted.as_bytes();
    if name.len() == wanted.len() {
        return name.eq_ignore_ascii_case(wanted);
    }
    name.len() > wanted.len()
        && name
            .iter()
            .filter(|c| !c.is_ascii_whitespace())
            .map(u8::to_ascii_lowercase)
            .eq(wanted.iter().map(u8::to_ascii_lowercase))
}

fn trim_name(name: &[u8]) -> &[u8] {
    let name = name.trim_ascii();
    // A stray colon before the name (":X-Foo: v") is not part of it.
    let skip = name
        .iter()
        .position(|c| *c != b':' && !c.is_ascii_whitespace())
        .unwrap_or(name.len());
    &name[skip..]
}

impl<'a> HeaderBlock<'a> {
    /// True if no field was read.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The raw value of the last field called `name` (ASCII case ignored).
    pub fn raw(&self, name: &str) -> Option<&'a [u8]> {
        self.fields
            .iter()
            .rev()
            .find(|f| name_is(f.name, name))
            .map(|f| f.value)
    }

    /// [`Self::raw`] as text, if it is UTF-8 (folding and the final line break kept).
    pub fn raw_str(&self, name: &str) -> Option<&'a str> {
        self.raw(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Every field called `name`, in order.
    pub fn all<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'a [u8]> + 's {
        self.fields
            .iter()
            .filter(move |f| name_is(f.name, name))
            .map(|f| f.value)
    }

    /// An unstructured field (Subject) with RFC 2047 encoded words decoded.
    pub fn text(&self, name: &str) -> Option<Cow<'a, str>> {
        match MessageStream::new(self.raw(name)?).parse_unstructured() {
            HeaderValue::Text(t) => Some(t),
            _ => None,
        }
    }

    /// A message id (`Message-ID`) without its angle brackets; of several, the last
    /// (as mail-parser reads the field).
    pub fn id(&self, name: &str) -> Option<Cow<'a, str>> {
        match MessageStream::new(self.raw(name)?).parse_id() {
            HeaderValue::Text(t) => Some(t),
            HeaderValue::TextList(mut l) => l.pop(),
            _ => None,
        }
    }

    /// The parsed `Content-Type`, if the block has one that parses.
    pub fn content_type(&self) -> Option<ContentType<'a>> {
        let raw = self.raw("Content-Type")?;
        if let Some(ct) = super::content_type::simple(raw) {
            return Some(ct);
        }
        match MessageStream::new(raw).parse_content_type() {
            HeaderValue::ContentType(ct) => Some(ct),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_folding_and_the_end_of_the_block() {
        let data =
            b"From: a@b.example\r\nSubject: one\r\n two\r\nnot a field\r\n  X-Pad: 1\r\n\r\nbody";
        let h = read(data, 0);
        assert!(h.complete);
        assert_eq!(&data[h.end..], b"body");
        let names: Vec<&[u8]> = h.fields.iter().map(|f| f.name).collect();
        assert_eq!(names, [&b"From"[..], b"Subject", b"X-Pad"]);
        assert!(name_is(b"M essage-Id", "message-id"));
        assert_eq!(h.raw_str("subject"), Some(" one\r\n two\r\n"));
        assert_eq!(h.text("Subject").as_deref(), Some("one two"));
    }

    #[test]
    fn last_field_wins_and_encoded_words_decode() {
        let h = read(
            b"Subject: old\nSubject: =?UTF-8?B?44Gr44KD44O844KT?=\nMessage-ID: <a@b>\n",
            0,
        );
        assert!(!h.complete);
        assert_eq!(h.text("Subject").as_deref(), Some("にゃーん"));
        assert_eq!(h.id("message-id").as_deref(), Some("a@b"));
    }

    #[test]
    fn content_type_parameters() {
        let h = read(
            b"Content-Type: multipart/report;\n\treport-type=delivery-status;\n boundary=\"xx\"\n\n",
            0,
        );
        let ct = h.content_type().unwrap();
        assert_eq!((ct.ctype(), ct.subtype()), ("multipart", Some("report")));
        assert_eq!(ct.attribute("boundary"), Some("xx"));
    }
}
