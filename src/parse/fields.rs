//! Header-style field blocks: `Name: value` lines with folded continuations, blocks
//! separated by blank lines.
//!
//! RFC 3464 delivery-status bodies, ARF feedback reports, `text/rfc822-headers` parts
//! and the inline reports some servers paste into plain text all share this shape.
//! mail-parser hands such bodies back as opaque bytes, so this one small parser reads
//! them all: unfold continuation lines, split on blank lines, keep order.

/// One `Name: value` field; the value is unfolded and trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field<'a> {
    pub name: &'a str,
    pub value: String,
}

/// A block of fields (one RFC 3464 per-message or per-recipient group).
pub type Block<'a> = Vec<Field<'a>>;

/// True if `line` looks like the start of a field: a token of printable ASCII
/// (no spaces) followed by a colon.
fn field_start(line: &str) -> Option<(&str, &str)> {
    // One pass that stops at the colon, or as soon as the name cannot be one.
    let colon = line
        .bytes()
        .take(77)
        .position(|b| b == b':' || !b.is_ascii_graphic())
        .filter(|&i| i > 0 && line.as_bytes()[i] == b':')?;
    Some((&line[..colon], &line[colon + 1..]))
}

/// Splits `text` into blocks of fields. Lines that are neither a field nor a
/// continuation are skipped (real reports carry stray text); a blank line ends a
/// block. Empty blocks are dropped.
pub fn parse_blocks(text: &str) -> Vec<Block<'_>> {
    let mut blocks: Vec<Block<'_>> = Vec::new();
    let mut current: Block<'_> = Vec::new();
    for raw in super::lines::lines(text) {
        let line = raw.trim_end_matches('\r');
        if line.trim().is_empty() {
            if !current.is_empty() {
                blocks.push(std::mem::take(&mut current));
            }
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if let Some(last) = current.last_mut() {
                let more = line.trim();
                if !last.value.is_empty() {
                    last.value.push(' ');
                }
                last.value.push_str(more);
            }
            continue;
        }
        if let Some((name, value)) = field_start(line) {
            current.push(Field {
                name,
                value: value.trim().to_string(),
            });
        }
    }
    if !current.is_empty() {
        blocks.push(current);
    }
    blocks
}

/// The value of the first field called `name` (case-insensitive) in `block`.
pub fn get<'b>(block: &'b [Field<'_>], name: &str) -> Option<&'b str> {
    block
        .iter()
        .find(|f| f.name.eq_ignore_ascii_case(name))
        .map(|f| f.value.as_str())
        .filter(|v| !v.is_empty())
}

/// Strips an RFC 3464 address-type or diagnostic-type prefix (`rfc822;`, `smtp;`,
/// `dns;`) from a field value.
pub fn strip_type(value: &str) -> &str {
    match value.find(';') {
        Some(i)
            if i <= 12
                && value[..i]
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-') =>
        {
            value[i + 1..].trim()
        }
        _ => value.trim(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_split_on_blank_lines_and_unfold() {
        let text = "Reporting-MTA: dns; mx.example.com\r\n\r\nFinal-Recipient: rfc822; a@example.org\r\nDiagnostic-Code: smtp; 550 5.1.1\r\n  user unknown\r\n\r\n\r\nFinal-Recipient: rfc822; b@example.org\r\n";
        let blocks = parse_blocks(text);
        assert_eq!(blocks.len(), 3);
        assert_eq!(
            get(&blocks[1], "diagnostic-code"),
            Some("smtp; 550 5.1.1 user unknown")
        );
        assert_eq!(
            strip_type(get(&blocks[2], "Final-Recipient").unwrap()),
            "b@example.org"
        );
    }

    #[test]
    fn stray_text_and_leading_continuations_are_ignored() {
        let blocks = parse_blocks("  orphan continuation\nnot a field line\nStatus: 5.0.0\n");
        assert_eq!(blocks.len(), 1);
        assert_eq!(get(&blocks[0], "status"), Some("5.0.0"));
    }

    #[test]
    fn strip_type_keeps_values_without_a_type() {
        assert_eq!(strip_type("smtp; 550 no"), "550 no");
        assert_eq!(strip_type("550 no; really"), "550 no; really");
        assert_eq!(strip_type("plain"), "plain");
    }
}
