//! The body of one MIME part, up to its closing boundary: as is, or with its
//! quoted-printable encoding undone.
//!
//! These give exactly what mail-parser's stream readers (`mime_part`,
//! `decode_quoted_printable_mime`) give, down to where the body ends and which
//! inputs count as broken (a property test holds them to it), because [`super::mime`]
//! must read MIME as mail-parser does. They exist because those readers go a byte at
//! a time through a peekable iterator; here the boundary is found with `memchr`, and
//! quoted-printable text is copied in runs between the bytes that need a decision.
//! Quoted-printable notices are common, and decoding them was a large share of
//! parsing time.

use std::borrow::Cow;

use mail_parser::decoders::quoted_printable::HEX_MAP;

/// A part's body as read up to its boundary.
pub struct Part<'a> {
    /// Where the body ends in the input (before the line break that precedes the
    /// boundary line), or `None` if it is broken: no boundary came, or the encoding
    /// is invalid (mail-parser then reads the raw bytes instead).
    pub end: Option<usize>,
    pub bytes: Cow<'a, [u8]>,
    /// Just past the boundary (or the end of the input): where reading goes on.
    pub next: usize,
}

fn broken<'a>() -> Part<'a> {
    Part {
        end: None,
        bytes: Cow::Borrowed(b""),
        next: 0,
    }
}

/// Where `--boundary` first starts in `data` (anywhere on a line, as mail-parser
/// looks for it), if anywhere.
pub fn find_dashes(data: &[u8], boundary: &[u8]) -> Option<usize> {
    let mut at = 0;
    while let Some(i) = memchr::memmem::find(&data[at..], b"--") {
        let dashes = at + i;
        if data[dashes + 2..].starts_with(boundary) {
            return Some(dashes);
        }
        at = dashes + 1;
    }
    None
}

/// An identity-encoded body (7bit, 8bit, binary), borrowed. With an empty
/// `boundary` the body runs to the end of the input.
pub fn identity<'a>(data: &'a [u8], boundary: &[u8]) -> Part<'a> {
    if boundary.is_empty() {
        return Part {
            end: Some(data.len()),
            bytes: Cow::Borrowed(data),
            next: data.len(),
        };
    }
    let Some(d) = find_dashes(data, boundary) else {
        return broken();
    };
    // The line break before the boundary line is not part of the body.
    let end = if d > 0 && data[d - 1] == b'\n' {
        if d >= 2 && data[d - 2] == b'\r' {
            d - 2
        } else {
            d - 1
        }
    } else {
        d
    };
    Part {
        end: Some(end),
        bytes: Cow::Borrowed(&data[..end]),
        next: d + 2 + boundary.len(),
    }
}

/// Bytes that end a run of plain quoted-printable text. Spaces and tabs do not: a
/// run counts its own trailing whitespace (dropped at the end of a line).
const fn special_bytes() -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = matches!(b, b'=' | b'-' | b'\n' | b'\r');
        i += 1;
    }
    t
}
static SPECIAL: [bool; 256] = special_bytes();

/// The first byte at or after `from` that is [`SPECIAL`] (or `data.len()`), looked
/// for eight bytes at a time: QP bodies are mostly long plain runs.
fn next_special(data: &[u8], mut from: usize) -> usize {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    // A high bit for each byte of `x` equal to `c`. A borrow only carries upward
    // from a byte that is itself flagged, so the lowest flagged byte is a true one.
    let equal = |x: u64, c: u8| {
        let y = x ^ (ONES * u64::from(c));
        y.wrapping_sub(ONES) & !y & HIGHS
    };
    while let Some(chunk) = data.get(from..from + 8) {
        let x = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        let found = equal(x, b'=') | equal(x, b'-') | equal(x, b'\n') | equal(x, b'\r');
        if found != 0 {
            return from + (found.trailing_zeros() / 8) as usize;
        }
        from += 8;
    }
    data[from..]
        .iter()
        .position(|&b| SPECIAL[b as usize])
        .map_or(data.len(), |r| from + r)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Qp {
    Plain,
    Eq,
    Hex1(u8),
}

/// A quoted-printable body, decoded. With an empty `boundary` the body runs to the
/// end of the input.
pub fn quoted_printable<'a>(data: &'a [u8], boundary: &[u8]) -> Part<'a> {
    let mut buf: Vec<u8> = Vec::with_capacity(data.len());
    let mut state = Qp::Plain;
    let (mut last, mut before_last) = (0u8, 0u8);
    let mut ws_count = 0usize;
    let mut end_pos = 0usize;
    let mut crlf: &[u8] = b"\n";
    let mut i = 0;
    while i < data.len() {
        if state == Qp::Plain {
            // Copy the run of ordinary bytes up to the next one that needs a decision.
            let run_end = next_special(data, i);
            if run_end > i {
                let run = &data[i..run_end];
                buf.extend_from_slice(run);
                // The other ASCII whitespace bytes (line breaks end the run).
                let trailing = run
                    .iter()
                    .rev()
                    .take_while(|b| matches!(b, b' ' | b'\t' | 0x0C))
                    .count();
                ws_count = if trailing == run.len() {
                    ws_count + trailing
                } else {
                    trailing
                };
                before_last = if run_end - i >= 2 {
                    data[run_end - 2]
                } else {
                    last
                };
                last = data[run_end - 1];
                i = run_end;
                continue;
            }
            // "=XX", the usual escape, decoded at once: what the states below do
            // byte by byte for it (hex digits take none of the special arms).
            if let (b'=', Some(&[a, b])) = (data[i], data.get(i + 1..i + 3)) {
                let (hex1, hex2) = (HEX_MAP[a as usize], HEX_MAP[b as usize]);
                if a.is_ascii_alphanumeric()
                    && b.is_ascii_alphanumeric()
                    && hex1 != -1
                    && hex2 != -1
                {
                    buf.push(((hex1 as u8) << 4) | hex2 as u8);
                    ws_count = 0;
                    before_last = a;
                    last = b;
                    i += 3;
                    continue;
                }
            }
        }
        let ch = data[i];
        i += 1;
        match ch {
            b'=' => {
                if state != Qp::Plain {
                    return broken();
                }
                state = Qp::Eq;
            }
            b'\n' => {
                end_pos = if last == b'\r' { i - 2 } else { i - 1 };
                if state == Qp::Eq {
                    state = Qp::Plain;
                } else {
                    buf.truncate(buf.len() - ws_count);
                    buf.extend_from_slice(crlf);
                }
                ws_count = 0;
            }
            b'\r' => crlf = b"\r\n",
            b'-' if !boundary.is_empty() && last == b'-' && data[i..].starts_with(boundary) => {
                i += boundary.len();
                if before_last == b'\n' {
                    // (mail-parser's arithmetic, wrap-around included.)
                    buf.truncate(buf.len().wrapping_sub(crlf.len() + 1));
                } else {
                    buf.truncate(buf.len().wrapping_sub(1));
                    end_pos = i - boundary.len() - 2;
                }
                return Part {
                    end: Some(end_pos),
                    bytes: Cow::Owned(buf),
                    next: i,
                };
            }
            _ => match state {
                Qp::Plain => {
                    if ch.is_ascii_whitespace() {
                        ws_count += 1;
                    } else {
                        ws_count = 0;
                    }
                    buf.push(ch);
                }
                Qp::Eq => {
                    let hex1 = HEX_MAP[ch as usize];
                    if hex1 != -1 {
                        state = Qp::Hex1(hex1 as u8);
                    } else if !ch.is_ascii_whitespace() {
                        state = Qp::Plain;
                        buf.extend_from_slice(&[b'=', ch]);
                        ws_count = 0;
                    }
                }
                Qp::Hex1(hex1) => {
                    let hex2 = HEX_MAP[ch as usize];
                    state = Qp::Plain;
                    if hex2 != -1 {
                        buf.push((hex1 << 4) | hex2 as u8);
                    } else {
                        buf.extend_from_slice(&[b'=', last, ch]);
                    }
                    ws_count = 0;
                }
            },
        }
        before_last = last;
        last = ch;
    }
    if !boundary.is_empty() {
        return broken();
    }
    Part {
        end: Some(data.len()),
        bytes: Cow::Owned(buf),
        next: data.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::parsers::MessageStream;
    use proptest::prelude::*;

    fn same_as_mail_parser(data: &[u8], boundary: &[u8]) {
        let mut s = MessageStream::new(data);
        let (end, bytes) = s.decode_quoted_printable_mime(boundary);
        let ours = quoted_printable(data, boundary);
        match ours.end {
            Some(e) => {
                assert_eq!((e, &ours.bytes[..]), (end, &bytes[..]), "qp {data:?}");
                assert_eq!(ours.next, s.offset(), "qp next {data:?}");
            }
            None => assert_eq!(end, usize::MAX, "qp {data:?}"),
        }
        let mut s = MessageStream::new(data);
        let (end, bytes) = s.mime_part(boundary);
        let ours = identity(data, boundary);
        match ours.end {
            Some(e) => {
                assert_eq!((e, &ours.bytes[..]), (end, &bytes[..]), "raw {data:?}");
                assert_eq!(ours.next, s.offset(), "raw next {data:?}");
            }
            None => assert_eq!(end, usize::MAX, "raw {data:?}"),
        }
    }

    #[test]
    fn decodes_like_mail_parser() {
        for (data, b) in [
            (&b"caf=C3=A9 =\r\nx  \r\n--b\r\n"[..], &b"b"[..]),
            (b"a=\n--b--", b"b"),
            (b"--b", b"b"),
            (b"\n--b", b"b"),
            (b"x\r\n---b", b"b"),
            (b"a==b\n--b", b"b"),
            (b"=4x=4", b""),
            (b"tail  \t\nend", b""),
            (b"no boundary", b"b"),
            (b"a \r \n\x0c \nb  =\n c\t\x0c\r\nend  ", b""),
            (b"x \t\r\n--b", b"b"),
            (b"  \r  \nword  word \t\n", b""),
            (b"=3D=3d=C3=A9=\n=3=\r\n=G1 =20\n=2D-b\n--b", b"b"),
            (b"x=3D\n--b", b"b"),
        ] {
            same_as_mail_parser(data, b);
        }
    }

    proptest! {
        #[test]
        fn next_special_matches_a_byte_scan(
            data in proptest::collection::vec(
                prop_oneof![
                    Just(b'='), Just(b'-'), Just(b'\n'), Just(b'\r'), Just(b' '),
                    Just(0x3C), Just(0x2C), Just(0x8D), Just(b'A'), any::<u8>()
                ],
                0..40,
            ),
            from in 0usize..40,
        ) {
            let from = from.min(data.len());
            let want = data[from..]
                .iter()
                .position(|&b| SPECIAL[b as usize])
                .map_or(data.len(), |r| from + r);
            prop_assert_eq!(next_special(&data, from), want);
        }

        #[test]
        fn decodes_like_mail_parser_on_any_input(
            data in proptest::collection::vec(
                prop_oneof![
                    Just(b'='), Just(b'-'), Just(b'\n'), Just(b'\r'), Just(b' '),
                    Just(b'\t'), Just(0x0C), Just(b'A'), Just(b'f'), Just(b'3'), Just(b'b'), any::<u8>()
                ],
                0..60,
            ),
            with_boundary in any::<bool>(),
        ) {
            same_as_mail_parser(&data, if with_boundary { b"b" } else { b"" });
        }
    }
}
