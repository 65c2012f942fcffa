//! mbox splitting: a file of several messages separated by `From ` lines.
//!
//! The offline `classify` command accepts mbox files, and many saved bounces start
//! with a single `From ` envelope line. Only a `From ` at the start of the file or
//! right after a blank line separates messages (mboxrd/mboxo convention), so a
//! `From ` line inside a body that was not escaped does not split a message unless
//! it follows a blank line and looks like an envelope line (`From sender date`).

/// True if `line` looks like an mbox envelope line: `From ` then a non-space token
/// and at least one more word (the date).
fn is_envelope_line(line: &[u8]) -> bool {
    let Some(rest) = line.strip_prefix(b"From ") else {
        return false;
    };
    let mut words = rest
        .split(|&b| b == b' ' || b == b'\t')
        .filter(|w| !w.is_empty());
    words.next().is_some() && words.next().is_some()
}

/// Splits an mbox into messages, dropping the `From ` lines. Input that does not start
/// with a `From ` line is one message, returned whole.
pub fn split_mbox(raw: &[u8]) -> Vec<&[u8]> {
    if !is_envelope_line(first_line(raw)) {
        return vec![raw];
    }
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    let mut pos = 0;
    let mut prev_blank = true;
    while pos < raw.len() {
        let line_end = raw[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(raw.len(), |i| pos + i + 1);
        let line = &raw[pos..line_end];
        if prev_blank && is_envelope_line(line) {
            if let Some(s) = start {
                out.push(trim_separator(&raw[s..pos]));
            }
            start = Some(line_end);
        }
        prev_blank = line.iter().all(|b| b.is_ascii_whitespace());
        pos = line_end;
    }
    if let Some(s) = start {
        out.push(trim_separator(&raw[s.min(raw.len())..]));
    }
    out.retain(|m| !m.iter().all(|b| b.is_ascii_whitespace()));
    if out.is_empty() {
        out.push(raw);
    }
    out
}

fn first_line(raw: &[u8]) -> &[u8] {
    let end = raw.iter().position(|&b| b == b'\n').unwrap_or(raw.len());
    &raw[..end]
}

/// Drops the blank line that separates a message from the next `From ` line.
fn trim_separator(msg: &[u8]) -> &[u8] {
    let mut end = msg.len();
    while end > 0 && matches!(msg[end - 1], b'\n' | b'\r') {
        end -= 1;
    }
    &msg[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_message_is_returned_whole() {
        let m = b"Subject: x\n\nFrom here on\n";
        assert_eq!(split_mbox(m), vec![&m[..]]);
    }

    #[test]
    fn two_messages_split_on_from_lines_after_blank_lines() {
        let m = b"From a@b Thu Apr 29 00:00:00 2010\nSubject: 1\n\nbody\nFrom me to you\n\nFrom c@d Thu Apr 29 00:00:01 2010\nSubject: 2\n\nb2\n";
        let parts = split_mbox(m);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], b"Subject: 1\n\nbody\nFrom me to you");
        assert_eq!(parts[1], b"Subject: 2\n\nb2");
    }

    #[test]
    fn lone_from_line_gives_the_input() {
        assert_eq!(split_mbox(b"From x y\n").len(), 1);
    }
}
