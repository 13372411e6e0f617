//! Dirty-word lists and the streaming matcher that finds them in
//! normalised text while remembering where each match lies in the
//! original bytes.
//!
//! The matcher steps an Aho-Corasick automaton (a DFA for ordinary list
//! sizes) byte by byte over the *normalised* text as it is produced, so
//! normalisation, matching and offset mapping are one pass, and a match can
//! span chunk boundaries. A ring of original offsets, one per normalised
//! byte, turns "pattern of length L ends here" into an original byte range.

use crate::normalize::{is_plain_ideograph, normalize_char, DROPPED};
use crate::scan::{decode_char, SegMap};
use aho_corasick::automaton::{Automaton, StateID};
use aho_corasick::nfa::contiguous;
use aho_corasick::{dfa, Anchored, MatchKind};

/// Longest list entry after normalisation, in bytes.
pub const WORD_MAX_BYTES: usize = 256;
/// Most entries across a profile's lists.
pub const WORDS_MAX: usize = 200_000;
/// Above this many entries the matcher uses a compact NFA instead of a DFA
/// (slower per byte, much smaller).
const DFA_MAX_WORDS: usize = 20_000;
/// Dropped characters (spaces, zero-width characters) tolerated in a row
/// inside a match; a longer run ends any partial match. It bounds how far
/// back a match can start, which bounds what the masking writer holds back.
pub const GAP_MAX_CHARS: u32 = 16;

enum Matcher {
    Dfa(dfa::DFA),
    Nfa(contiguous::NFA),
}

/// A profile's compiled dirty words.
pub(crate) struct DirtyWords {
    matcher: Matcher,
    /// Normalised length in bytes of each pattern.
    lens: Vec<u32>,
    /// `FILE:LINE` of each pattern, for findings.
    sources: Vec<String>,
    max_len: usize,
    /// One bit per BMP code point: does its normalised form begin some
    /// pattern? Outside a match, every other character is skipped without
    /// stepping the automaton (dropped characters included).
    begins: Vec<u64>,
}

impl DirtyWords {
    /// Compiles normalised, non-empty, distinct words with their sources.
    pub(crate) fn compile(words: Vec<(String, String)>) -> Result<DirtyWords, String> {
        let mut first_chars = std::collections::HashSet::new();
        let mut lens = Vec::with_capacity(words.len());
        let mut sources = Vec::with_capacity(words.len());
        let mut patterns = Vec::with_capacity(words.len());
        let mut max_len = 0;
        for (w, src) in words {
            if let Some(c) = w.chars().next() {
                first_chars.insert(c);
            }
            max_len = max_len.max(w.len());
            lens.push(u32::try_from(w.len()).unwrap_or(u32::MAX));
            sources.push(src);
            patterns.push(w);
        }
        let matcher = if patterns.len() <= DFA_MAX_WORDS {
            dfa::DFA::builder()
                .match_kind(MatchKind::Standard)
                .prefilter(false)
                .build(&patterns)
                .map(Matcher::Dfa)
        } else {
            contiguous::NFA::builder()
                .match_kind(MatchKind::Standard)
                .prefilter(false)
                .build(&patterns)
                .map(Matcher::Nfa)
        }
        .map_err(|e| e.to_string())?;
        let mut begins = vec![0u64; 0x10000 / 64];
        for cp in 0..0x10000u32 {
            let Some(c) = char::from_u32(cp) else {
                continue;
            };
            let mut first = None;
            normalize_char(c, &mut |n| {
                if first.is_none() {
                    first = Some(n);
                }
            });
            if first.is_some_and(|f| first_chars.contains(&f)) {
                begins[(cp / 64) as usize] |= 1 << (cp % 64);
            }
        }
        Ok(DirtyWords {
            matcher,
            lens,
            sources,
            max_len,
            begins,
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.lens.len()
    }

    pub(crate) fn source(&self, pattern: u32) -> &str {
        self.sources
            .get(pattern as usize)
            .map_or("?", String::as_str)
    }

    /// How many original bytes before the current position a match that
    /// is still open may have started: every normalised byte comes from a
    /// character of at most 4 bytes, with at most [`GAP_MAX_CHARS`]
    /// dropped characters of at most 3 bytes before it.
    pub(crate) fn max_span_bytes(&self) -> u64 {
        (self.max_len as u64) * (4 + 3 * u64::from(GAP_MAX_CHARS)) + 64
    }

    pub(crate) fn scanner(&self, ascii: &'static [u8; 128]) -> WordScan<'_> {
        let start = match &self.matcher {
            Matcher::Dfa(a) => a.start_state(Anchored::No),
            Matcher::Nfa(a) => a.start_state(Anchored::No),
        }
        // Both automata are built unanchored, so this cannot fail; a
        // zero id would only mean "never matches".
        .unwrap_or(StateID::ZERO);
        let ring_len = (self.max_len + 1).next_power_of_two().max(64);
        WordScan {
            words: self,
            start,
            sid: start,
            ring: vec![0; ring_len],
            n: 0,
            gap: 0,
            ascii,
        }
    }

    #[inline(always)]
    fn begins(&self, cp: u32) -> bool {
        self.begins
            .get((cp / 64) as usize)
            .is_some_and(|w| w & (1 << (cp % 64)) != 0)
    }
}

/// One match: original byte range and the pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WordHit {
    pub start: u64,
    pub end: u64,
    pub pattern: u32,
}

/// The matcher's state inside one unit of text (a document, a field, a
/// string). `reset` between units that must not match across.
pub(crate) struct WordScan<'w> {
    words: &'w DirtyWords,
    start: StateID,
    sid: StateID,
    ring: Vec<u64>,
    n: usize,
    gap: u32,
    ascii: &'static [u8; 128],
}

impl WordScan<'_> {
    pub(crate) fn reset(&mut self) {
        self.sid = self.start;
        self.gap = 0;
    }

    /// Feeds valid UTF-8 `text` whose bytes lie at the original offsets
    /// `map` gives; appends matches to `hits`.
    pub(crate) fn feed(&mut self, text: &[u8], map: &SegMap<'_>, hits: &mut Vec<WordHit>) {
        let words = self.words;
        match &words.matcher {
            Matcher::Dfa(a) => self.run(a, text, map, hits),
            Matcher::Nfa(a) => self.run(a, text, map, hits),
        }
    }

    #[inline(always)]
    fn run<A: Automaton>(
        &mut self,
        aut: &A,
        text: &[u8],
        map: &SegMap<'_>,
        hits: &mut Vec<WordHit>,
    ) {
        let n = text.len();
        let mut i = 0;
        let mut st = Step {
            aut,
            sid: self.sid,
            ring: &mut self.ring,
            n: self.n,
            lens: &self.words.lens,
            hits,
        };
        let words = self.words;
        while i < n {
            if st.sid == self.start {
                // Nothing open: skip characters that cannot begin a pattern.
                i = skip_to_candidate(words, text, i);
                if i >= n {
                    break;
                }
                self.gap = 0;
            }
            let b = text[i];
            if b < 0x80 {
                let nb = self.ascii[usize::from(b)];
                if nb == DROPPED {
                    self.gap += 1;
                    if self.gap > GAP_MAX_CHARS {
                        st.sid = self.start;
                    }
                } else {
                    self.gap = 0;
                    st.step(nb, map.raw(i), map.raw(i + 1));
                }
                i += 1;
                continue;
            }
            // Common ideographs (U+4000..U+9FFF) normalise to themselves,
            // except the traditional marking characters.
            if (0xE4..=0xE9).contains(&b) && i + 2 < n {
                let cp = (u32::from(b & 0x0F) << 12)
                    | (u32::from(text[i + 1] & 0x3F) << 6)
                    | u32::from(text[i + 2] & 0x3F);
                if char::from_u32(cp).is_some_and(is_plain_ideograph) {
                    self.gap = 0;
                    let (rs, re) = (map.raw(i), map.raw(i + 3));
                    st.step(b, rs, re);
                    st.step(text[i + 1], rs, re);
                    st.step(text[i + 2], rs, re);
                    i += 3;
                    continue;
                }
            }
            let Some((c, len)) = decode_char(text, i) else {
                // Not UTF-8 (callers validate first): treat as a break.
                st.sid = self.start;
                i += 1;
                continue;
            };
            let (rs, re) = (map.raw(i), map.raw(i + len));
            let mut produced = false;
            normalize_char(c, &mut |nc| {
                produced = true;
                let mut enc = [0u8; 4];
                for &x in nc.encode_utf8(&mut enc).as_bytes() {
                    st.step(x, rs, re);
                }
            });
            if produced {
                self.gap = 0;
            } else {
                self.gap += 1;
                if self.gap > GAP_MAX_CHARS {
                    st.sid = self.start;
                }
            }
            i += len;
        }
        self.sid = st.sid;
        self.n = st.n;
    }
}

/// The next position at or after `i` whose character may begin a
/// pattern (or that is not a BMP character, which is never skipped).
#[inline(always)]
fn skip_to_candidate(words: &DirtyWords, text: &[u8], mut i: usize) -> usize {
    let n = text.len();
    while i < n {
        let b = text[i];
        let (cp, len) = if b < 0x80 {
            (u32::from(b), 1)
        } else if (0xC2..=0xDF).contains(&b) && i + 1 < n {
            (
                (u32::from(b & 0x1F) << 6) | u32::from(text[i + 1] & 0x3F),
                2,
            )
        } else if (0xE0..=0xEF).contains(&b) && i + 2 < n {
            (
                (u32::from(b & 0x0F) << 12)
                    | (u32::from(text[i + 1] & 0x3F) << 6)
                    | u32::from(text[i + 2] & 0x3F),
                3,
            )
        } else {
            return i;
        };
        if words.begins(cp) {
            return i;
        }
        i += len;
    }
    n
}

struct Step<'a, A> {
    aut: &'a A,
    sid: StateID,
    ring: &'a mut [u64],
    n: usize,
    lens: &'a [u32],
    hits: &'a mut Vec<WordHit>,
}

impl<A: Automaton> Step<'_, A> {
    #[inline(always)]
    fn step(&mut self, byte: u8, raw_start: u64, raw_end: u64) {
        let mask = self.ring.len() - 1;
        self.ring[self.n & mask] = raw_start;
        self.n = self.n.wrapping_add(1);
        self.sid = self.aut.next_state(Anchored::No, self.sid, byte);
        if self.aut.is_special(self.sid) && self.aut.is_match(self.sid) {
            self.report(raw_end);
        }
    }

    #[cold]
    fn report(&mut self, raw_end: u64) {
        let mut best: Option<(u32, u32)> = None;
        for k in 0..self.aut.match_len(self.sid) {
            let p = self.aut.match_pattern(self.sid, k).as_u32();
            let len = self.lens.get(p as usize).copied().unwrap_or(0);
            if best.is_none_or(|(_, l)| len > l) {
                best = Some((p, len));
            }
        }
        let Some((pattern, len)) = best else { return };
        let mask = self.ring.len() - 1;
        let start = self.ring[self.n.wrapping_sub(len as usize) & mask];
        let hit = WordHit {
            start,
            end: raw_end,
            pattern,
        };
        // A longer pattern that extends the previous match replaces it.
        if let Some(last) = self.hits.last_mut() {
            if hit.start <= last.start && hit.end >= last.end {
                *last = hit;
                return;
            }
        }
        self.hits.push(hit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::{normalize_word, ASCII_RECORDS, ASCII_TEXT};

    fn words(list: &[&str]) -> DirtyWords {
        DirtyWords::compile(
            list.iter()
                .enumerate()
                .map(|(i, w)| (normalize_word(w), format!("t:{}", i + 1)))
                .collect(),
        )
        .unwrap()
    }

    fn find(w: &DirtyWords, text: &str) -> Vec<(u64, u64, u32)> {
        let mut s = w.scanner(&ASCII_TEXT);
        let mut hits = Vec::new();
        s.feed(text.as_bytes(), &SegMap::Linear(0), &mut hits);
        hits.iter().map(|h| (h.start, h.end, h.pattern)).collect()
    }

    #[test]
    fn finds_markings_in_disguise() {
        let w = words(&["秘密", "绝密", "TOP SECRET"]);
        let t = "封面：秘 密，下文";
        let h = find(&w, t);
        assert_eq!(h.len(), 1);
        let (s, e, _) = h[0];
        assert_eq!(&t[s as usize..e as usize], "秘 密");
        let t = "標記 絕\u{200B}密★ 以及 Ｔｏｐ　Ｓｅｃｒｅｔ";
        let h = find(&w, t);
        assert_eq!(h.len(), 2, "{h:?}");
        assert_eq!(&t[h[0].0 as usize..h[0].1 as usize], "絕\u{200B}密");
        assert_eq!(&t[h[1].0 as usize..h[1].1 as usize], "Ｔｏｐ　Ｓｅｃｒｅｔ");
    }

    #[test]
    fn matches_span_feeds_and_long_gaps_break_them() {
        let w = words(&["机密"]);
        let mut s = w.scanner(&ASCII_TEXT);
        let mut hits = Vec::new();
        s.feed("abc 机".as_bytes(), &SegMap::Linear(0), &mut hits);
        s.feed("  密".as_bytes(), &SegMap::Linear(7), &mut hits);
        assert_eq!(
            hits,
            vec![WordHit {
                start: 4,
                end: 12,
                pattern: 0
            }]
        );
        let far = format!("机{}密", " ".repeat(GAP_MAX_CHARS as usize + 1));
        assert!(find(&w, &far).is_empty());
    }

    #[test]
    fn record_mode_breaks_at_line_ends() {
        let w = words(&["机密"]);
        let mut s = w.scanner(&ASCII_RECORDS);
        let mut hits = Vec::new();
        s.feed("机\n密".as_bytes(), &SegMap::Linear(0), &mut hits);
        assert!(hits.is_empty());
        s.feed("机 密".as_bytes(), &SegMap::Linear(0), &mut hits);
        assert_eq!(hits.len(), 1);
    }
}
