//! Every occurrence of a set of phrases in a text, ASCII case ignored, overlaps
//! included: the scan that the notice marks ([`crate::parse::freeform`]) and the
//! rule text patterns ([`crate::rules::text`]) run over every message.
//!
//! Why not Aho-Corasick's overlapping search: with a hundred or more phrases and
//! case ignored it has no prefilter, so every byte of the text is one step through
//! a DFA of several hundred KB. Each step is a load that misses the L1 cache, and
//! the next byte's step waits for it. Here a position costs a hash of its next
//! four bytes (case folded) and one bit looked up in an 8 KB bitmap of the
//! phrases' first bytes. Those loads do not depend on each other and the bitmap
//! stays in L1. The few positions that pass are checked against the phrases that
//! start that way, first by their first eight bytes as one word. Phrases of one to
//! three bytes (rare: `rbl`, `gmx`) are each found on their own with `memchr`; in
//! the bitmap they would make every common three-letter start a candidate.

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
    /// One bit per hash of a phrase's first four bytes, folded.
    filter: Box<[u64; FILTER_WORDS]>,
    /// The phrases of eight bytes or more, by the hash of their first eight.
    long: Buckets,
    /// The phrases of four to seven bytes, by the bitmap hash of their start.
    medium: Buckets,
    /// The phrases of one to three bytes.
    short: Vec<u32>,
    /// The empty phrases.
    empty: Vec<u32>,
}

/// A phrase as the bitmap's candidates are checked against it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Keyed {
    hash: u32,
    phrase: u32,
    /// Its first (up to) eight bytes, lower case, as a little-endian word ...
    head: u64,
    /// ... and the bits of `head` that hold them.
    head_mask: u64,
}

/// Phrases grouped by `hash % buckets`, `buckets` being their number rounded up
/// to a power of two: a lookup is one index, and a group holds about one phrase
/// (phrases that start alike share a hash, which is why the long ones are keyed
/// on eight bytes).
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

    /// The phrases whose hash is `hash` (and a few others).
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

fn hash_head(head: u64) -> u32 {
    (head.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as u32
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
        let mut set = PhraseSet {
            phrases: Vec::new(),
            filter: Box::new([0; FILTER_WORDS]),
            long: Buckets::new(Vec::new()),
            medium: Buckets::new(Vec::new()),
            short: Vec::new(),
            empty: Vec::new(),
        };
        let (mut long, mut medium) = (Vec::new(), Vec::new());
        for (i, p) in phrases.iter().enumerate() {
            if p.is_empty() {
                set.empty.push(i as u32);
                continue;
            } else if p.len() < 4 {
                set.short.push(i as u32);
                continue;
            }
            let h = hash(key_of(word(p)));
            set.filter[(h >> 6) as usize] |= 1 << (h & 63);
            let head_mask = u64::MAX >> (64 - 8 * p.len().min(8));
            let head = word(p) & head_mask;
            let (hash, list) = if p.len() >= 8 {
                (hash_head(head), &mut long)
            } else {
                (h, &mut medium)
            };
            list.push(Keyed {
                hash,
                phrase: i as u32,
                head,
                head_mask,
            });
        }
        set.long = Buckets::new(long);
        set.medium = Buckets::new(medium);
        set.phrases = phrases;
        set
    }

    /// Calls `found` for every occurrence of every phrase in `text`, overlapping
    /// ones included, in no particular order.
    pub fn for_each_match(&self, text: &[u8], mut found: impl FnMut(PhraseMatch)) {
        for (start, window) in text.windows(4).enumerate() {
            let first = u32::from_le_bytes(*window.first_chunk().expect("4 bytes"));
            let h = hash(key_of(u64::from(first)));
            if self.filter[(h >> 6) as usize] & (1 << (h & 63)) != 0 {
                self.check_at(text, start, h, &mut found);
            }
        }
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

    /// The phrases whose first bytes hash to `h`, checked against `text` at `start`.
    #[inline(never)]
    fn check_at(&self, text: &[u8], start: usize, h: u32, found: &mut impl FnMut(PhraseMatch)) {
        let rest = &text[start..];
        let head = lower(word(rest));
        let long = match rest.len() >= 8 {
            true => self.long.group(hash_head(head)),
            false => &[],
        };
        for k in long.iter().chain(self.medium.group(h)) {
            if head & k.head_mask != k.head {
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
/// Candidates are found with `memchr` on one byte of the needle: its first ASCII
/// punctuation byte (`-` in "final-recipient", `<` in "</style"), matched exactly and
/// rarer in text than any letter; failing that, its first byte in either case.
pub fn find_ignore_ascii_case(text: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    let Some(&first) = needle.first() else {
        return (from <= text.len()).then_some(from);
    };
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
    match needle.iter().position(u8::is_ascii_punctuation) {
        Some(k) => memchr::memchr_iter(needle[k], &text[from + k..=last_start + k])
            .map(|at| from + at)
            .find(|&at| matches_at(at)),
        None => memchr::memchr2_iter(first, first.to_ascii_uppercase(), &text[from..=last_start])
            .map(|at| from + at)
            .find(|&at| matches_at(at)),
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

    proptest! {
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
