//! Classify rows as JSON, written by hand: `classify --format jsonl` and the events
//! log.
//!
//! Why not `serde_json::to_writer`: it escapes strings one byte at a time, about
//! eight instructions per byte written, and rows are mostly text (diagnostics,
//! advice): that was 5% of a corpus run (callgrind). Here clean runs are found eight
//! bytes at a time and copied whole. The bytes are exactly serde_json's compact
//! output for the same row; the tests hold every corpus and fixture row to that, and
//! check that the fields written here are still all of [`Row`]'s.

use crate::model::{Cause, OriginalMessage, Row};

/// Appends `row` as one JSON object (no newline).
pub fn write_row(row: &Row, out: &mut Vec<u8>) {
    out.push(b'{');
    write_row_fields(row, out);
    out.push(b'}');
}

/// Appends the members of `row`'s object, without the braces (the events log adds
/// its own after them).
pub fn write_row_fields(row: &Row, out: &mut Vec<u8>) {
    let mut obj = Members::first(out);
    obj.str("source", &row.source);
    obj.uint("message_index", row.message_index as u64);
    obj.opt_str("recipient", row.recipient.as_deref());
    obj.opt_str("action", row.action.as_deref());
    obj.opt_str("status", row.status.as_deref());
    obj.key("reply_code");
    match row.reply_code {
        Some(c) => write_uint(obj.out, u64::from(c)),
        None => obj.out.extend_from_slice(b"null"),
    }
    obj.str("reason", row.reason.as_str());
    obj.opt_bool("permanent", row.permanent);
    obj.opt_bool("hard_bounce", row.hard_bounce);
    obj.opt_str("diagnostic", row.diagnostic.as_deref());
    obj.opt_str("remote_mta", row.remote_mta.as_deref());
    obj.opt_str("reporting_mta", row.reporting_mta.as_deref());
    obj.str("format", &row.format);
    obj.opt_str("feedback_type", row.feedback_type.as_deref());
    obj.key("cause");
    match &row.cause {
        Some(c) => write_cause(c, obj.out),
        None => obj.out.extend_from_slice(b"null"),
    }
    obj.key("original");
    write_original(&row.original, obj.out);
}

fn write_cause(c: &Cause, out: &mut Vec<u8>) {
    out.push(b'{');
    let mut obj = Members::first(out);
    obj.str("id", &c.id);
    obj.str("title", &c.title);
    obj.str("fix_by", c.fix_by.as_str());
    obj.str("advice", &c.advice);
    obj.opt_str("reference", c.reference.as_deref());
    out.push(b'}');
}

fn write_original(o: &OriginalMessage, out: &mut Vec<u8>) {
    out.push(b'{');
    let mut obj = Members::first(out);
    obj.opt_str("message_id", o.message_id.as_deref());
    obj.opt_str("from", o.from.as_deref());
    // Left out when absent (`skip_serializing_if` on the struct).
    if let Some(sender) = o.sender.as_deref() {
        obj.str("sender", sender);
    }
    obj.opt_str("to", o.to.as_deref());
    obj.opt_str("subject", o.subject.as_deref());
    obj.opt_str("date", o.date.as_deref());
    out.push(b'}');
}

/// Writes the members of an object: `"key":value`, comma-separated.
pub struct Members<'o> {
    out: &'o mut Vec<u8>,
    first: bool,
}

impl<'o> Members<'o> {
    /// Members of an object whose `{` is already written.
    pub fn first(out: &'o mut Vec<u8>) -> Members<'o> {
        Members { out, first: true }
    }

    /// Members that follow others already written.
    pub fn after_others(out: &'o mut Vec<u8>) -> Members<'o> {
        Members { out, first: false }
    }

    /// Writes `"key":` (and the comma before it); the value is the caller's. Keys
    /// are field names, which need no escaping.
    pub fn key(&mut self, key: &'static str) {
        debug_assert!(!key.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\'));
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    pub fn str(&mut self, key: &'static str, value: &str) {
        self.key(key);
        write_str(self.out, value);
    }

    pub fn opt_str(&mut self, key: &'static str, value: Option<&str>) {
        self.key(key);
        match value {
            Some(v) => write_str(self.out, v),
            None => self.out.extend_from_slice(b"null"),
        }
    }

    fn uint(&mut self, key: &'static str, value: u64) {
        self.key(key);
        write_uint(self.out, value);
    }

    fn opt_bool(&mut self, key: &'static str, value: Option<bool>) {
        self.key(key);
        self.out.extend_from_slice(match value {
            Some(true) => b"true",
            Some(false) => b"false",
            None => b"null",
        });
    }

    /// `"key":["a","b"]`.
    pub fn str_array(&mut self, key: &'static str, values: &[String]) {
        self.key(key);
        self.out.push(b'[');
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            write_str(self.out, v);
        }
        self.out.push(b']');
    }
}

fn write_uint(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Appends `s` as a JSON string, escaped as serde_json escapes it: `"` and `\`, the
/// short forms `\b \t \n \f \r`, other bytes below 0x20 as `\u00xx`; everything
/// else (DEL, non-ASCII) as it is.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut clean_from = 0;
    while let Some(at) = next_to_escape(bytes, clean_from) {
        out.extend_from_slice(&bytes[clean_from..at]);
        let b = bytes[at];
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            0x0C => out.extend_from_slice(b"\\f"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xF)]);
            }
        }
        clean_from = at + 1;
    }
    out.extend_from_slice(&bytes[clean_from..]);
    out.push(b'"');
}

/// The first byte at or after `from` that needs escaping, eight bytes at a time.
fn next_to_escape(bytes: &[u8], mut from: usize) -> Option<usize> {
    while let Some(chunk) = bytes.get(from..from + 8) {
        let mask = escape_mask(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
        if mask != 0 {
            return Some(from + (mask.trailing_zeros() / 8) as usize);
        }
        from += 8;
    }
    // The last few bytes, padded with a byte that needs no escaping.
    let rest = bytes.get(from..).unwrap_or(&[]);
    let mut tail = [b'a'; 8];
    tail[..rest.len()].copy_from_slice(rest);
    let mask = escape_mask(u64::from_le_bytes(tail));
    (mask != 0).then(|| from + (mask.trailing_zeros() / 8) as usize)
}

/// The high bit of each byte of `word` (little-endian) that is below 0x20, `"` or
/// `\`, and perhaps of some bytes after such a byte: the lowest bit set is exact
/// (the usual has-zero-byte trick; bytes of 0x80 and up never count).
fn escape_mask(word: u64) -> u64 {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    let zero_bytes = |v: u64| v.wrapping_sub(ONES) & !v;
    let below_space = word.wrapping_sub(ONES * 0x20);
    let quote = zero_bytes(word ^ (ONES * u64::from(b'"')));
    let backslash = zero_bytes(word ^ (ONES * u64::from(b'\\')));
    (below_space & !word | quote | backslash) & HIGHS
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn serde_str(s: &str) -> Vec<u8> {
        serde_json::to_vec(s).unwrap()
    }

    #[test]
    fn every_single_byte_character_escapes_as_serde_json_does() {
        for b in 0u8..0x80 {
            let s = format!("ab{}cdefghij{}", b as char, b as char);
            let mut ours = Vec::new();
            write_str(&mut ours, &s);
            assert_eq!(ours, serde_str(&s), "byte {b:#x}");
        }
    }

    proptest! {
        #[test]
        fn strings_escape_as_serde_json_does(s in "[a-z\"\\\\\u{0}-\u{1f}\u{7f}\u{e9}\u{3042} ]{0,40}") {
            let mut ours = Vec::new();
            write_str(&mut ours, &s);
            prop_assert_eq!(ours, serde_str(&s));
        }
    }
}
