//! The common shape of a `Content-Type` value, read directly.
//!
//! Why: mail-parser's Content-Type parser is a general state machine (comments,
//! RFC 2231 continuations and charsets, RFC 2047 words, escapes) that spends about
//! 2,000 instructions on a plain `multipart/report; boundary="..."`, and every MIME
//! part of every bounce has one. Nearly all values are just `type/subtype` and
//! `name=value` or `name="value"` parameters, so [`simple`] reads exactly that
//! shape and answers `None` for anything else, which mail-parser then reads. Where
//! it answers, it answers what mail-parser would (a property test compares the two
//! on generated values, odd ones included).

use std::borrow::Cow;

use mail_parser::{Attribute, ContentType};

/// `raw` (a field value with its folding and final line break, as
/// [`super::header::HeaderBlock::raw`] gives it) read as `type/subtype` and
/// parameters, or `None` if it has any other shape. Type, subtype and parameter
/// names are lower-cased; values are kept as written.
pub fn simple(raw: &[u8]) -> Option<ContentType<'_>> {
    // Without its final line break mail-parser reads no value at all.
    let body = raw.strip_suffix(b"\n")?;
    let body = body.strip_suffix(b"\r").unwrap_or(body);
    if !body.is_ascii() {
        return None;
    }
    // ASCII: every byte offset is a character boundary.
    let mut r = Reader {
        s: std::str::from_utf8(body).ok()?,
        at: 0,
    };
    r.blanks();
    let c_type = r.token(is_type_char)?;
    r.blanks();
    r.byte(b'/')?;
    r.blanks();
    let c_subtype = r.token(is_type_char)?;
    let mut attributes = Vec::new();
    loop {
        r.blanks_and_folds();
        if r.at == r.s.len() {
            break;
        }
        r.byte(b';')?;
        r.blanks_and_folds();
        if r.at == r.s.len() {
            break;
        }
        let name = r.token(is_name_char)?;
        r.blanks();
        r.byte(b'=')?;
        r.blanks();
        let value = if r.byte(b'"').is_some() {
            let value = r.token(is_quoted_char)?;
            r.byte(b'"')?;
            value
        } else {
            r.token(is_value_char)?
        };
        // `=?` may start an RFC 2047 word, which mail-parser decodes.
        if memchr::memchr_iter(b'=', value.as_bytes())
            .any(|i| value.as_bytes().get(i + 1) == Some(&b'?'))
        {
            return None;
        }
        attributes.push(Attribute {
            name: lower(name),
            value: Cow::Borrowed(value),
        });
    }
    Some(ContentType {
        c_type: lower(c_type),
        c_subtype: Some(lower(c_subtype)),
        attributes: (!attributes.is_empty()).then_some(attributes),
    })
}

struct Reader<'a> {
    s: &'a str,
    at: usize,
}

impl<'a> Reader<'a> {
    /// The next byte, if it is `want`.
    fn byte(&mut self, want: u8) -> Option<()> {
        (self.s.as_bytes().get(self.at) == Some(&want)).then(|| self.at += 1)
    }

    /// One or more bytes that `allowed` accepts.
    fn token(&mut self, allowed: impl Fn(u8) -> bool) -> Option<&'a str> {
        let start = self.at;
        while self.s.as_bytes().get(self.at).is_some_and(|&c| allowed(c)) {
            self.at += 1;
        }
        (self.at > start).then(|| &self.s[start..self.at])
    }

    fn blanks(&mut self) {
        while matches!(self.s.as_bytes().get(self.at), Some(b' ' | b'\t')) {
            self.at += 1;
        }
    }

    /// Blanks and folded line breaks (a break followed by a blank): allowed only
    /// between parameters, where mail-parser reads a fold as a blank too.
    fn blanks_and_folds(&mut self) {
        loop {
            self.blanks();
            let rest = &self.s.as_bytes()[self.at..];
            let fold = match rest {
                [b'\r', b'\n', b' ' | b'\t', ..] => 3,
                [b'\n', b' ' | b'\t', ..] => 2,
                _ => return,
            };
            self.at += fold;
        }
    }
}

/// RFC 2045 token characters (without `*` and `'`, which mail-parser reads as
/// RFC 2231 syntax in names).
const TYPE_CHARS: [bool; 256] = {
    let mut table = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        table[c] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'{'
                    | b'|'
                    | b'}'
                    | b'~'
            );
        c += 1;
    }
    table
};

#[inline]
fn is_type_char(c: u8) -> bool {
    TYPE_CHARS[usize::from(c)]
}

fn is_name_char(c: u8) -> bool {
    is_type_char(c)
}

/// Characters of an unquoted value: anything visible but the few that
/// mail-parser reads as structure there.
fn is_value_char(c: u8) -> bool {
    c.is_ascii_graphic() && !matches!(c, b'"' | b';' | b'(' | b')' | b'\\')
}

/// Characters of a quoted value (blanks included; no escapes).
fn is_quoted_char(c: u8) -> bool {
    c == b' ' || c == b'\t' || (c.is_ascii_graphic() && c != b'"' && c != b'\\')
}

fn lower(token: &str) -> Cow<'_, str> {
    if token.bytes().any(|c| c.is_ascii_uppercase()) {
        Cow::Owned(token.to_ascii_lowercase())
    } else {
        Cow::Borrowed(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::parsers::MessageStream;
    use mail_parser::HeaderValue;
    use proptest::prelude::*;

    fn by_mail_parser(raw: &[u8]) -> Option<ContentType<'_>> {
        match MessageStream::new(raw).parse_content_type() {
            HeaderValue::ContentType(ct) => Some(ct),
            _ => None,
        }
    }

    #[test]
    fn reads_the_usual_values() {
        for raw in [
            &b" multipart/report; report-type=delivery-status;\r\n\tboundary=\"=_x y\"\r\n"[..],
            b" Text/Plain; CharSet=ISO-2022-JP\n",
            b" message/delivery-status\r\n",
            b" text/plain;\r\n",
            b" multipart/mixed;\n boundary=----=_Part_1_2.3\n",
            b" multipart/alternative; boundary=\" a\tb \" ; x=y\r\n",
        ] {
            let got = simple(raw);
            assert!(got.is_some(), "{raw:?}");
            assert_eq!(got, by_mail_parser(raw), "{raw:?}");
        }
        let ct = simple(b" Text/Plain; CharSet=ISO-2022-JP\n").unwrap();
        assert_eq!((ct.ctype(), ct.subtype()), ("text", Some("plain")));
        assert_eq!(ct.attribute("charset"), Some("ISO-2022-JP"));
    }

    #[test]
    fn leaves_other_shapes_to_mail_parser() {
        for raw in [
            &b" text/plain; charset=\"utf-8\" (comment)\n"[..],
            b" text/plain; name*=utf-8''%E2%82%AC\n",
            b" text/plain; name=\"a\\\"b\"\n",
            b" text/plain; name==?utf-8?q?x?=\n",
            b" text/plain; charset=\n\tutf-8\n",
            b" text/plain",
            b" text\n",
            b" text/plain; charset=\"\"\n",
        ] {
            assert_eq!(simple(raw), None, "{raw:?}");
        }
    }

    /// Separators: blanks, and sometimes a fold or a stray character.
    fn gap() -> impl Strategy<Value = String> {
        prop::sample::select(vec![
            "", " ", "\t", "  ", "\r\n\t", "\n ", "\r\n", "\r", "(", "\"", "*", "=?", "\\",
        ])
        .prop_map(str::to_string)
    }

    fn word() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9=._/?-]{0,6}"
    }

    fn parameter() -> impl Strategy<Value = String> {
        (gap(), word(), gap(), any::<bool>(), word(), gap()).prop_map(
            |(g1, name, g2, quoted, value, g3)| {
                let value = if quoted {
                    format!("\"{value}\"")
                } else {
                    value
                };
                format!(";{g1}{name}{g2}={value}{g3}")
            },
        )
    }

    proptest! {
        /// Wherever `simple` answers, mail-parser answers the same.
        #[test]
        fn agrees_with_mail_parser(
            lead in gap(),
            ctype in word(),
            around_slash in (gap(), gap()),
            sub in word(),
            after_sub in gap(),
            params in prop::collection::vec(parameter(), 0..4),
            tail in gap(),
            end in prop::sample::select(vec!["\r\n", "\n", ""]),
        ) {
            let (s1, s2) = around_slash;
            let raw = format!("{lead}{ctype}{s1}/{s2}{sub}{after_sub}{}{tail}{end}", params.concat());
            if let Some(ct) = simple(raw.as_bytes()) {
                prop_assert_eq!(Some(ct), by_mail_parser(raw.as_bytes()), "{:?}", raw);
            }
        }
    }
}
