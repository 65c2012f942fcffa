//! Every occurrence of a set of phrases in a text, ASCII case ignored, overlaps
//! included: the scan that the notice marks ([`crate::parse::freeform`]) and the
//! rule text patterns ([`crate::rules::text`]) run over every message.
//!
//! Why not Aho-Corasick's overlapping search: with a hundred or more phrases and
//! case ignored it has no prefilter, so every byte of the text is one step through
//! a DFA of several hundred KB. Each step is a load that misses the L1 cache, and
//! the next byte's step waits for it. Here a position costs a hash of its next
//! four bytes (case folded) and one bit looked up in an 8 KB bitmap of the
//! phrases' windows. Those loads do not depend on each other and the bitmap
//! stays in L1. The few positions that pass are checked against the phrases with
//! that window, first by their first eight bytes as one word. Phrases of one to
//! three bytes (rare: `rbl`, `gmx`) are found apart, by one packed (Teddy) search
//! for every case variant of their starts; in the bitmap they would make every
//! common three-letter start a candidate.
//!
//! When every phrase in the bitmap is at least seven bytes long, only every fourth
//! position is read: each phrase puts four consecutive windows in the bitmap (the
//! four least likely in text, by [`frequency`]), so any occurrence has one of them
//! at a position read, and a position that passes is checked against the phrases
//! with that window there. A set with a few phrases of four to six bytes (the
//! notice's `exim`, `zoho`) searches those apart too to get there; one with many
//! (the rules' `_402`, `ib105`, ...) reads the positions its shortest phrase allows.

/// log2 of the bitmap's size in bits.
const HASH_BITS: u32 = 16;
const FILTER_WORDS: usize = 1 << (HASH_BITS - 6);
/// ASCII letters folded to lower case, in every byte of a word. Other bytes may
/// fold together too (`@` with `` ` ``): the bitmap and the first-word check only
/// have to let every real match through, and candidates are checked exactly.
const FOLD: u64 = 0x2020_2020_2020_2020;

/// A set of phrases to find, ASCII case ignored.
#[derive(Debug, Clone)]
pub struct PhraseSet {
    /// The phrases, ASCII lower-cased, by index.
    phrases: Vec<Box<[u8]>>,
    /// One bit per hash of each bitmap phrase's chosen windows, folded.
    filter: Box<[u64; FILTER_WORDS]>,
    /// The chosen windows, by their hash.
    windows: Buckets,
    /// The phrases searched for apart from the bitmap: those of one to three
    /// bytes, and of up to six when few enough (see [`ONE_BY_ONE`]).
    short: Vec<u32>,
    /// The short phrases' starts, found all at once (absent if they have too many
    /// case variants: then each is searched for on its own).
    short_starts: Option<ShortStarts>,
    /// The bitmap is read at every `step`th position (1 to 4): every phrase in it
    /// is at least `step + 3` bytes long and has `step` consecutive windows in it.
    step: usize,
    /// The empty phrases.
    empty: Vec<u32>,
}

/// Where the short phrases may start, found in one SIMD (Teddy) pass instead of
/// one `memchr` pass per phrase: every case variant of their first (up to) three
/// bytes is a pattern of a packed searcher.
#[derive(Debug, Clone)]
struct ShortStarts {
    searcher: aho_corasick::packed::Searcher,
    /// How many bytes of each short phrase the patterns are (all the same, so at
    /// most one pattern matches at a position).
    prefix_len: usize,
    /// By pattern: the short phrases that start with it.
    phrases_of: Vec<Vec<u32>>,
}

impl ShortStarts {
    /// Teddy's limit: more patterns and the packed searcher is not worth it.
    const MAX_PATTERNS: usize = 64;

    fn new(phrases: &[Box<[u8]>], short: &[u32]) -> Option<ShortStarts> {
        let prefix_len = short
            .iter()
            .map(|&i| phrases[i as usize].len())
            .min()?
            .min(3);
        let mut prefixes: Vec<(&[u8], Vec<u32>)> = Vec::new();
        for &i in short {
            let prefix = &phrases[i as usize][..prefix_len];
            match prefixes.iter_mut().find(|(p, _)| *p == prefix) {
                Some((_, list)) => list.push(i),
                None => prefixes.push((prefix, vec![i])),
            }
        }
        let mut builder = aho_corasick::packed::Config::new().builder();
        let mut phrases_of = Vec::new();
        for (prefix, list) in prefixes {
            let mut variants = vec![Vec::new()];
            for &b in prefix {
                let cases: &[u8] = if b.is_ascii_lowercase() {
                    &[b, b.to_ascii_uppercase()]
                } else {
                    &[b]
                };
                variants = variants
                    .iter()
                    .flat_map(|v| cases.iter().map(move |&c| [v.as_slice(), &[c]].concat()))
                    .collect();
            }
            for v in variants {
                builder.add(v);
                phrases_of.push(list.clone());
            }
        }
        if phrases_of.len() > Self::MAX_PATTERNS {
            return None;
        }
        Some(ShortStarts {
            searcher: builder.build()?,
            prefix_len,
            phrases_of,
        })
    }
}

/// At most this many phrases of four to six bytes are searched one by one (so the
/// bitmap can be read at every fourth position); more, and they go in the bitmap.
const ONE_BY_ONE: usize = 8;

/// One chosen window of a phrase, as the bitmap's candidates are checked against it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Keyed {
    hash: u32,
    /// The window's four bytes, folded as [`key_of`] folds them.
    key: u32,
    phrase: u32,
    /// Where the window starts in the phrase.
    offset: u32,
    /// The phrase's first (up to) eight bytes, lower case, as a little-endian
    /// word ...
    head: u64,
    /// ... and the bits of `head` that hold them.
    head_mask: u64,
}

/// Windows grouped by `hash % buckets`, `buckets` being their number rounded up
/// to a power of two: a lookup is one index, and a group holds about one window.
#[derive(Debug, Clone)]
struct Buckets {
    entries: Vec<Keyed>,
    /// Where each group starts in `entries` (one more than there are buckets).
    start: Box<[u32]>,
}

impl Buckets {
    fn new(mut entries: Vec<Keyed>) -> Buckets {
        let buckets = entries.len().next_power_of_two();
        entries.sort_unstable_by_key(|k| (k.hash as usize & (buckets - 1), *k));
        let mut start = vec![0u32; buckets + 1];
        for k in &entries {
            start[(k.hash as usize & (buckets - 1)) + 1] += 1;
        }
        for b in 1..=buckets {
            start[b] += start[b - 1];
        }
        Buckets {
            entries,
            start: start.into_boxed_slice(),
        }
    }

    /// The windows whose hash is `hash` (and a few others).
    fn group(&self, hash: u32) -> &[Keyed] {
        let b = hash as usize & (self.start.len() - 2);
        &self.entries[self.start[b] as usize..self.start[b + 1] as usize]
    }
}

/// One occurrence of a phrase: its index in the set and the byte range it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PhraseMatch {
    pub start: usize,
    pub end: usize,
    pub phrase: usize,
}

/// The up to eight bytes of `bytes` as a little-endian word, zero-padded.
fn word(bytes: &[u8]) -> u64 {
    match bytes.first_chunk::<8>() {
        Some(w) => u64::from_le_bytes(*w),
        None => {
            let mut w = [0u8; 8];
            w[..bytes.len()].copy_from_slice(bytes);
            u64::from_le_bytes(w)
        }
    }
}

/// `word` with its ASCII capitals made lower case (exactly: other bytes stay).
fn lower(word: u64) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let low = word & LOW7;
    // Bit 7 of each byte: the byte is at least `A`, and at least `[` (one past `Z`).
    let from_a = low + 0x3f3f_3f3f_3f3f_3f3f;
    let past_z = low + 0x2525_2525_2525_2525;
    let capital = (from_a ^ past_z) & !word & HIGH;
    word | (capital >> 2)
}

/// `text` equals `phrase` (lower case) with ASCII case ignored, eight bytes at a time.
fn eq_lower(text: &[u8], phrase: &[u8]) -> bool {
    if text.len() != phrase.len() {
        return false;
    }
    let (t8, t_rest) = text.as_chunks::<8>();
    let (p8, p_rest) = phrase.as_chunks::<8>();
    t8.iter()
        .zip(p8)
        .all(|(t, p)| lower(u64::from_le_bytes(*t)) == u64::from_le_bytes(*p))
        && t_rest.eq_ignore_ascii_case(p_rest)
}

/// The bitmap key of the text (or phrase) whose first bytes are `word`.
fn key_of(word: u64) -> u32 {
    (word | FOLD) as u32
}

fn hash(key: u32) -> u32 {
    key.wrapping_mul(0x9E37_79B1) >> (32 - HASH_BITS)
}

/// Roughly how often byte `b` (either case) occurs in bounce text, per 10,000
/// bytes: English letter frequencies, spaces and line ends, a few common
/// punctuation marks. Only used to choose what to search for, never to decide.
fn frequency(b: u8) -> u32 {
    const LETTERS: [u32; 26] = [
        650, 120, 250, 320, 1000, 180, 160, 350, 570, 15, 60, 330, 220, // a - m
        550, 600, 170, 10, 500, 520, 700, 230, 90, 150, 20, 140, 8, // n - z
    ];
    match b.to_ascii_lowercase() {
        c @ b'a'..=b'z' => LETTERS[usize::from(c - b'a')],
        b' ' => 1500,
        b'\r' | b'\n' | b'\t' => 300,
        b'.' => 150,
        b'-' | b'0'..=b'9' => 100,
        b':' => 80,
        b'@' | b'<' | b'>' => 40,
        128.. => 50,
        _ => 20,
    }
}

/// The chance (roughly) that a text position starts with `window`.
fn window_chance(window: &[u8]) -> f64 {
    window
        .iter()
        .map(|&b| f64::from(frequency(b)) / 10_000.0)
        .product()
}

impl PhraseSet {
    /// A set of `phrases`; a phrase's index is its position in the list. An empty
    /// phrase matches once at every position (a rule's empty host pattern matches
    /// any host).
    pub fn new<P: AsRef<[u8]>>(phrases: impl IntoIterator<Item = P>) -> PhraseSet {
        let phrases: Vec<Box<[u8]>> = phrases
            .into_iter()
            .map(|p| p.as_ref().to_ascii_lowercase().into_boxed_slice())
            .collect();
        let few_below_seven =
            phrases.iter().filter(|p| (4..7).contains(&p.len())).count() <= ONE_BY_ONE;
        let in_bitmap_from = if few_below_seven { 7 } else { 4 };
        let shortest = phrases
            .iter()
            .map(|p| p.len())
            .filter(|&n| n >= in_bitmap_from)
            .min()
            .unwrap_or(7);
        let step = (shortest - 3).min(4);
        let mut filter = Box::new([0; FILTER_WORDS]);
        let (mut windows, mut short, mut empty) = (Vec::new(), Vec::new(), Vec::new());
        for (i, p) in phrases.iter().enumerate() {
            if p.is_empty() {
                empty.push(i as u32);
                continue;
            } else if p.len() < in_bitmap_from {
                short.push(i as u32);
                continue;
            }
            // The `step` consecutive windows least likely to occur in text: the
            // fewer positions pass the bitmap, the fewer are checked.
            let chance = |first: usize| {
                (first..first + step)
                    .map(|o| window_chance(&p[o..o + 4]))
                    .sum::<f64>()
            };
            let first = (0..=p.len() - 3 - step)
                .min_by(|&a, &b| chance(a).total_cmp(&chance(b)))
                .expect("the phrase is long enough");
            let head_mask = u64::MAX >> (64 - 8 * p.len().min(8));
            for offset in first..first + step {
                let key = key_of(word(&p[offset..offset + 4]));
                let h = hash(key);
                filter[(h >> 6) as usize] |= 1 << (h & 63);
                windows.push(Keyed {
                    hash: h,
                    key,
                    phrase: i as u32,
                    offset: offset as u32,
                    head: word(p) & head_mask,
                    head_mask,
                });
            }
        }
        PhraseSet {
            short_starts: ShortStarts::new(&phrases, &short),
            phrases,
            filter,
            windows: Buckets::new(windows),
            short,
            step,
            empty,
        }
    }

    /// Calls `found` for every occurrence of every phrase in `text`, overlapping
    /// ones included, in no particular order.
    pub fn for_each_match(&self, text: &[u8], mut found: impl FnMut(PhraseMatch)) {
        // An occurrence has `step` consecutive windows in the bitmap, so one of
        // them is at a position read; each is found from that one only.
        for at in (0..text.len().saturating_sub(3)).step_by(self.step) {
            let key = key_of(u64::from(u32::from_le_bytes(
                *text[at..].first_chunk().expect("4 bytes"),
            )));
            let h = hash(key);
            if self.filter[(h >> 6) as usize] & (1 << (h & 63)) != 0 {
                self.check_at(text, at, key, h, &mut found);
            }
        }
        match &self.short_starts {
            Some(starts) => self.short_matches(starts, text, &mut found),
            None => self.short_matches_one_by_one(text, &mut found),
        }
        for &phrase in &self.empty {
            (0..=text.len()).for_each(|at| {
                found(PhraseMatch {
                    start: at,
                    end: at,
                    phrase: phrase as usize,
                })
            });
        }
    }

    /// The occurrence that starts first, the earliest listed phrase among those
    /// starting there: what a leftmost-first Aho-Corasick search finds first.
    pub fn leftmost_first(&self, text: &[u8]) -> Option<PhraseMatch> {
        let mut first: Option<PhraseMatch> = None;
        self.for_each_match(text, |m| {
            if first.is_none_or(|f| (m.start, m.phrase) < (f.start, f.phrase)) {
                first = Some(m);
            }
        });
        first
    }

    fn short_matches(
        &self,
        starts: &ShortStarts,
        text: &[u8],
        found: &mut impl FnMut(PhraseMatch),
    ) {
        let mut from = 0;
        while from + starts.prefix_len <= text.len() {
            let span = aho_corasick::Span::from(from..text.len());
            let Some(m) = starts.searcher.find_in(text, span) else {
                break;
            };
            for &phrase in &starts.phrases_of[m.pattern().as_usize()] {
                let needle = &self.phrases[phrase as usize];
                if text
                    .get(m.start()..m.start() + needle.len())
                    .is_some_and(|t| eq_lower(t, needle))
                {
                    found(PhraseMatch {
                        start: m.start(),
                        end: m.start() + needle.len(),
                        phrase: phrase as usize,
                    });
                }
            }
            from = m.start() + 1;
        }
    }

    fn short_matches_one_by_one(&self, text: &[u8], found: &mut impl FnMut(PhraseMatch)) {
        for &phrase in &self.short {
            let needle = &self.phrases[phrase as usize];
            let mut from = 0;
            while let Some(start) = find_ignore_ascii_case(text, needle, from) {
                found(PhraseMatch {
                    start,
                    end: start + needle.len(),
                    phrase: phrase as usize,
                });
                from = start + 1;
            }
        }
    }

    /// The phrases with a window keyed `key` (hashed `h`), checked against `text`
    /// where that window would put them.
    #[inline(never)]
    fn check_at(
        &self,
        text: &[u8],
        at: usize,
        key: u32,
        h: u32,
        found: &mut impl FnMut(PhraseMatch),
    ) {
        for k in self.windows.group(h) {
            if k.key != key {
                continue;
            }
            let Some(start) = at.checked_sub(k.offset as usize) else {
                continue;
            };
            let rest = &text[start..];
            if lower(word(rest)) & k.head_mask != k.head {
                continue;
            }
            let phrase = &self.phrases[k.phrase as usize];
            if rest
                .get(..phrase.len())
                .is_some_and(|t| eq_lower(t, phrase))
            {
                found(PhraseMatch {
                    start,
                    end: start + phrase.len(),
                    phrase: k.phrase as usize,
                });
            }
        }
    }
}
/// One substring searcher per word (case and all), for a fixed word list kept in a
/// `LazyLock`: lists searched in every notice, where `str::contains` would build a
/// new searcher per word and call.
pub fn searchers<'w>(
    words: impl IntoIterator<Item = &'w str>,
) -> Vec<memchr::memmem::Finder<'static>> {
    words
        .into_iter()
        .map(|w| memchr::memmem::Finder::new(w.as_bytes()).into_owned())
        .collect()
}

/// The first position at or after `from` where `text`, read in ASCII lower case,
/// has `needle` (lower case), without lower-casing a copy of `text`. Such a position is a
/// character boundary: `needle` is UTF-8 and its first byte is matched exactly or
/// as an ASCII letter's other case.
///
/// Candidates are found with `memchr` on the needle's rarest byte in text (by
/// [`frequency`]; an ASCII letter in either case): `x` in "exim", not `e`, `-` in
/// "final-recipient".
pub fn find_ignore_ascii_case(text: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() {
        return (from <= text.len()).then_some(from);
    }
    let last_start = text.len().checked_sub(needle.len())?;
    if from > last_start {
        return None;
    }
    let matches_at = |at: usize| {
        text[at..at + needle.len()]
            .iter()
            .zip(needle)
            .all(|(t, n)| t.to_ascii_lowercase() == *n)
    };
    let (k, anchor) = needle
        .iter()
        .copied()
        .enumerate()
        .min_by_key(|&(_, b)| frequency(b))
        .expect("not empty");
    let hay = &text[from + k..=last_start + k];
    if anchor.is_ascii_lowercase() {
        memchr::memchr2_iter(anchor, anchor.to_ascii_uppercase(), hay)
            .map(|at| from + at)
            .find(|&at| matches_at(at))
    } else {
        memchr::memchr_iter(anchor, hay)
            .map(|at| from + at)
            .find(|&at| matches_at(at))
    }
}

impl Default for PhraseSet {
    /// The empty set: finds nothing.
    fn default() -> PhraseSet {
        PhraseSet::new(std::iter::empty::<&[u8]>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aho_corasick::{AhoCorasickBuilder, MatchKind};
    use proptest::prelude::*;

    /// Every occurrence, ordered by start, then end, then phrase index.
    fn find_all(set: &PhraseSet, text: &[u8]) -> Vec<PhraseMatch> {
        let mut out = Vec::new();
        set.for_each_match(text, |m| out.push(m));
        out.sort_unstable();
        out
    }

    /// What Aho-Corasick's overlapping search reports, in the same order (an
    /// empty phrase's matches once per position: it reports some twice).
    fn reference(phrases: &[String], text: &[u8]) -> Vec<PhraseMatch> {
        let ac = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .build(phrases)
            .unwrap();
        let mut out: Vec<PhraseMatch> = ac
            .find_overlapping_iter(text)
            .map(|m| PhraseMatch {
                start: m.start(),
                end: m.end(),
                phrase: m.pattern().as_usize(),
            })
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    #[test]
    fn finds_overlapping_phrases_of_any_case_and_length() {
        let phrases = ["mailbox full", "box", "MAILBOX", "x f", "", "ユーザ"];
        let set = PhraseSet::new(phrases);
        let text = "Mailbox FULL; ユーザ".as_bytes();
        let got = find_all(&set, text);
        let owned: Vec<String> = phrases.iter().map(|p| p.to_string()).collect();
        assert_eq!(got, reference(&owned, text));
        let names: Vec<&str> = got
            .iter()
            .filter(|m| m.end > m.start)
            .map(|m| phrases[m.phrase])
            .collect();
        assert_eq!(names, ["MAILBOX", "mailbox full", "box", "x f", "ユーザ"]);
    }

    #[test]
    fn a_phrase_at_the_very_end_and_one_too_long_for_the_rest() {
        let set = PhraseSet::new(["tail", "tails"]);
        let got = find_all(&set, b"a TAIL");
        assert_eq!(
            got,
            [PhraseMatch {
                start: 2,
                end: 6,
                phrase: 0
            }]
        );
        assert!(find_all(&set, b"tai").is_empty());
    }

    /// Folding only ASCII letters: `@` and `` ` `` share a bitmap bit but are
    /// different bytes, and a non-ASCII byte never matches its "folded" twin.
    #[test]
    fn bytes_that_fold_together_in_the_bitmap_do_not_match() {
        let set = PhraseSet::new(["a@bc", "\u{e9}tat"]);
        assert!(find_all(&set, b"a`bc").is_empty());
        assert!(find_all(&set, "\u{c9}TAT".as_bytes()).is_empty());
        assert_eq!(find_all(&set, b"A@BC").len(), 1);
    }

    #[test]
    fn finds_one_needle_ignoring_case() {
        assert_eq!(
            find_ignore_ascii_case(b"a </STYLE> </style>", b"</style", 0),
            Some(2)
        );
        assert_eq!(find_ignore_ascii_case(b"Tail", b"tail", 0), Some(0));
        assert_eq!(find_ignore_ascii_case(b"tai", b"tail", 0), None);
        assert_eq!(find_ignore_ascii_case(b"x", b"", 0), Some(0));
    }

    proptest! {
        /// Whichever byte the search is anchored on, it finds what a search in a
        /// lower-cased copy finds.
        #[test]
        fn find_ignore_ascii_case_is_a_search_in_the_lowered_text(
            text in "[aAbB<>/ -]{0,30}",
            needle in "[ab<>/ -]{1,5}",
            from in 0usize..32,
        ) {
            let lowered = text.to_ascii_lowercase();
            let expected = lowered.get(from..).and_then(|t| t.find(&needle)).map(|i| from + i);
            prop_assert_eq!(
                find_ignore_ascii_case(text.as_bytes(), needle.as_bytes(), from),
                expected
            );
        }
    }

    /// Every byte value in every lane, next to neighbours that could carry into it.
    #[test]
    fn lower_is_ascii_lowercase_for_every_byte() {
        for b in 0..=255u8 {
            for lane in 0..8 {
                for fill in [0x00, 0x40, 0x5a, 0x7f, 0xff] {
                    let mut bytes = [fill; 8];
                    bytes[lane] = b;
                    let mut want = bytes;
                    want.make_ascii_lowercase();
                    assert_eq!(
                        lower(u64::from_le_bytes(bytes)),
                        u64::from_le_bytes(want),
                        "{bytes:?}"
                    );
                }
            }
        }
    }

    fn phrase() -> impl Strategy<Value = String> {
        prop::string::string_regex("[abAB@` \u{e9}\u{c9}]{0,10}").unwrap()
    }

    /// Phrases of seven bytes or more: the bitmap is read at every fourth position.
    fn long_phrase() -> impl Strategy<Value = String> {
        prop::string::string_regex("[abAB@` \u{e9}]{7,12}").unwrap()
    }

    #[test]
    fn a_set_of_long_phrases_reads_every_fourth_position_and_still_finds_all() {
        let phrases = [
            "user unknown",
            "mailbox full",
            "unknown user",
            "exim",
            "gmx",
        ];
        let set = PhraseSet::new(phrases);
        assert_eq!(set.step, 4);
        let text = b"x: USER UNKNOWN user unknownuser unknown; Mailbox Full EXIM GMX.de";
        let owned: Vec<String> = phrases.iter().map(|p| p.to_string()).collect();
        for start in 0..8 {
            assert_eq!(
                find_all(&set, &text[start..]),
                reference(&owned, &text[start..]),
                "from {start}"
            );
        }
    }

    /// More short phrases than the packed search takes: each is searched alone.
    #[test]
    fn many_short_phrases_are_searched_one_by_one() {
        let phrases: Vec<String> = [
            "abc", "abd", "abe", "abf", "abg", "abh", "abi", "abj", "abk",
        ]
        .iter()
        .map(|p| p.to_string())
        .collect();
        let set = PhraseSet::new(&phrases);
        assert!(set.short_starts.is_none());
        let text = b"ABC abd xAbEabfABG abh abi abjabk";
        assert_eq!(find_all(&set, text), reference(&phrases, text));
        assert_eq!(find_all(&set, text).len(), 9);
    }

    proptest! {
        #[test]
        fn long_phrase_sets_find_what_aho_corasick_finds(
            phrases in prop::collection::vec(long_phrase(), 1..12),
            short in prop::collection::vec("[abAB@]{1,6}", 0..4),
            text in prop::string::string_regex("[abAB@` \u{e9}]{0,200}").unwrap(),
        ) {
            let phrases: Vec<String> = phrases.into_iter().chain(short).collect();
            let set = PhraseSet::new(&phrases);
            prop_assert_eq!(find_all(&set, text.as_bytes()), reference(&phrases, text.as_bytes()));
        }

        /// `leftmost_first` is what a leftmost-first automaton finds first.
        #[test]
        fn leftmost_first_is_aho_corasicks_leftmost_first(
            phrases in prop::collection::vec("[abAB ]{1,9}", 1..10),
            text in "[abAB ]{0,60}",
        ) {
            let ac = AhoCorasickBuilder::new()
                .ascii_case_insensitive(true)
                .match_kind(MatchKind::LeftmostFirst)
                .build(&phrases)
                .unwrap();
            let want = ac.find(&text).map(|m| (m.start(), m.pattern().as_usize()));
            let got = PhraseSet::new(&phrases)
                .leftmost_first(text.as_bytes())
                .map(|m| (m.start, m.phrase));
            prop_assert_eq!(got, want);
        }

        #[test]
        fn same_matches_as_aho_corasick(
            phrases in prop::collection::vec(phrase(), 1..12),
            text in prop::string::string_regex("[abAB@` \u{e9}\u{c9}]{0,80}").unwrap(),
        ) {
            let set = PhraseSet::new(&phrases);
            prop_assert_eq!(find_all(&set, text.as_bytes()), reference(&phrases, text.as_bytes()));
        }
    }
}
