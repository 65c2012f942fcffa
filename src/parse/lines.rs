//! Line iteration for the parser, with the `memchr` crate's vectorised search.
//!
//! Why not `str::lines` / `split_inclusive('\n')`: they find each newline with
//! core's portable `memchr`, one call per line; on the corpus that was about 5% of
//! all instructions. These iterate over the same lines, with the same results.

use memchr::Memchr;

/// The lines of `text`, each with its `\n` (the last one without, if the text does
/// not end in one): what `text.split_inclusive('\n')` returns.
pub fn lines_inclusive(text: &str) -> LinesInclusive<'_> {
    LinesInclusive {
        text,
        at: 0,
        newlines: memchr::memchr_iter(b'\n', text.as_bytes()),
    }
}

/// The lines of `text` without their `\n` or `\r\n`: what `text.lines()` returns.
pub fn lines(text: &str) -> impl Iterator<Item = &str> {
    lines_inclusive(text).map(|line| {
        let Some(line) = line.strip_suffix('\n') else {
            return line;
        };
        line.strip_suffix('\r').unwrap_or(line)
    })
}

/// See [`lines_inclusive`].
pub struct LinesInclusive<'a> {
    text: &'a str,
    at: usize,
    newlines: Memchr<'a>,
}

impl<'a> Iterator for LinesInclusive<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.at >= self.text.len() {
            return None;
        }
        let end = self.newlines.next().map_or(self.text.len(), |nl| nl + 1);
        // `\n` is ASCII, so both ends are character boundaries.
        let line = &self.text[self.at..end];
        self.at = end;
        Some(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn same_lines_as_std(text in "[a\r\n\u{e9}]{0,24}") {
            let ours: Vec<&str> = lines_inclusive(&text).collect();
            let std: Vec<&str> = text.split_inclusive('\n').collect();
            proptest::prop_assert_eq!(ours, std);
            let ours: Vec<&str> = lines(&text).collect();
            let std: Vec<&str> = text.lines().collect();
            proptest::prop_assert_eq!(ours, std);
        }
    }
}
