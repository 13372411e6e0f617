//! Running the content detectors (dirty words, personal data) over one
//! segment of decoded text, whatever format it came from. A segment is
//! valid UTF-8 with a map from its bytes back to the original offsets, so
//! findings and masks land on the bytes as stored.

use crate::normalize::{ASCII_RECORDS, ASCII_TEXT};
use crate::pii::{self, Detectors, PiiHit};
use crate::profile::Profile;
use crate::words::{WordHit, WordScan};

/// Where the bytes of a segment lie in the original.
pub(crate) enum SegMap<'a> {
    /// Byte `i` is at `base + i` (text, CSV, JSON strings without escapes).
    Linear(u64),
    /// Byte `i` is at `t[i]`; `t` has one more entry for the end
    /// (decoded escapes and entities).
    Table(&'a [u64]),
}

impl SegMap<'_> {
    #[inline(always)]
    pub(crate) fn raw(&self, i: usize) -> u64 {
        match self {
            SegMap::Linear(base) => base + i as u64,
            SegMap::Table(t) => match t.get(i) {
                Some(&o) => o,
                None => t.last().copied().unwrap_or(0),
            },
        }
    }
}

/// Decodes the UTF-8 character at `b[i]`; `None` if it is not one.
#[inline]
pub(crate) fn decode_char(b: &[u8], i: usize) -> Option<(char, usize)> {
    let b0 = *b.get(i)?;
    let (len, init) = match b0 {
        0x00..=0x7F => return Some((char::from(b0), 1)),
        0xC2..=0xDF => (2, u32::from(b0 & 0x1F)),
        0xE0..=0xEF => (3, u32::from(b0 & 0x0F)),
        0xF0..=0xF4 => (4, u32::from(b0 & 0x07)),
        _ => return None,
    };
    let tail = b.get(i + 1..i + len)?;
    let mut c = init;
    for &x in tail {
        if x & 0xC0 != 0x80 {
            return None;
        }
        c = (c << 6) | u32::from(x & 0x3F);
    }
    let min = match len {
        2 => 0x80,
        3 => 0x800,
        _ => 0x10000,
    };
    if c < min {
        return None;
    }
    char::from_u32(c).map(|c| (c, len))
}

/// True for ASCII bytes that can be part of a personal-data token or its
/// separators; a chunk is never cut after one of them.
#[inline]
fn token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-' | b'@' | b' ')
}

/// Where to cut a chunk of text so that no token straddles the cut: after
/// the last byte that is neither part of a token nor a full-width form.
/// Falls back to the last character boundary.
pub(crate) fn cut_point(b: &[u8]) -> usize {
    const LOOK_BACK: usize = 4096;
    let lo = b.len().saturating_sub(LOOK_BACK);
    for i in (lo..b.len()).rev() {
        let x = b[i];
        if x < 0x80 {
            if !token_byte(x) {
                return i + 1;
            }
        } else if x >= 0xC0 && x != 0xEF {
            return i;
        }
    }
    for i in (lo..b.len()).rev() {
        if b[i] < 0x80 || b[i] >= 0xC0 {
            return i;
        }
    }
    b.len()
}

/// Does `seg` hold full-width digits, letters or `@ . - +` (which the
/// personal-data detectors must see as ASCII)? Full-width punctuation such
/// as `，` does not count.
fn has_fullwidth_token_chars(seg: &[u8]) -> bool {
    memchr::memchr_iter(0xEF, seg).any(|i| match (seg.get(i + 1), seg.get(i + 2)) {
        (Some(0xBC), Some(&b)) => matches!(b, 0x8B | 0x8D | 0x8E | 0x90..=0x99 | 0xA0..=0xBA),
        (Some(0xBD), Some(&b)) => matches!(b, 0x81..=0x9A),
        _ => false,
    })
}

/// Validates UTF-8 at memory speed; `Err(offset)` of the first bad byte.
pub(crate) fn validate_utf8(b: &[u8]) -> Result<(), usize> {
    simdutf8::compat::from_utf8(b)
        .map(|_| ())
        .map_err(|e| e.valid_up_to())
}

/// The detectors of a profile, with their state and scratch space, for
/// one unit of text after another.
pub(crate) struct ContentScan<'p> {
    pub(crate) words: Option<WordScan<'p>>,
    detectors: Detectors,
    folded: Vec<u8>,
    fold_map: Vec<u32>,
    /// Dirty-word matches of the last `scan`, original offsets.
    pub(crate) word_hits: Vec<WordHit>,
    /// Personal data of the last `scan`, segment indices.
    pub(crate) pii_hits: Vec<PiiHit>,
    /// Digits inside a larger number are amounts (false for reports).
    amounts: bool,
}

impl<'p> ContentScan<'p> {
    /// `records`: line breaks end a match (CSV) instead of being skipped.
    pub(crate) fn new(profile: &'p Profile, records: bool) -> ContentScan<'p> {
        let ascii = if records { &ASCII_RECORDS } else { &ASCII_TEXT };
        ContentScan {
            words: profile.dirty_words().map(|d| d.words.scanner(ascii)),
            detectors: profile.pii().map_or(Detectors::default(), |p| p.detectors),
            folded: Vec::new(),
            fold_map: Vec::new(),
            word_hits: Vec::new(),
            pii_hits: Vec::new(),
            amounts: true,
        }
    }

    /// For report strings (see `redact`): the profile's dirty words and
    /// every personal-data detector, enabled by the profile or not.
    pub(crate) fn for_reports(profile: &'p Profile) -> ContentScan<'p> {
        let mut s = ContentScan::new(profile, false);
        s.detectors = pii::Detector::ALL
            .into_iter()
            .fold(Detectors::default(), Detectors::with);
        s.amounts = false;
        s
    }

    pub(crate) fn is_active(&self) -> bool {
        self.words.is_some() || !self.detectors.is_empty()
    }

    /// Starts a new unit: no match continues across.
    pub(crate) fn reset(&mut self) {
        if let Some(w) = &mut self.words {
            w.reset();
        }
    }

    /// Scans `seg` (valid UTF-8); fills `word_hits` and `pii_hits`.
    pub(crate) fn scan(&mut self, seg: &[u8], map: &SegMap<'_>) {
        self.word_hits.clear();
        self.pii_hits.clear();
        if let Some(w) = &mut self.words {
            w.feed(seg, map, &mut self.word_hits);
        }
        if self.detectors.is_empty() {
            return;
        }
        if !has_fullwidth_token_chars(seg) {
            pii::scan_with(seg, self.detectors, &mut self.pii_hits, self.amounts);
            return;
        }
        // Full-width digits, letters and `@ . - +` become ASCII for the
        // detectors; hits are mapped back to the segment.
        self.folded.clear();
        self.fold_map.clear();
        let mut i = 0;
        while i < seg.len() {
            if seg[i] == 0xEF {
                if let Some((c, 3)) = decode_char(seg, i) {
                    if ('\u{FF01}'..='\u{FF5E}').contains(&c) {
                        self.folded.push((c as u32 - 0xFEE0) as u8);
                        self.fold_map.push(i as u32);
                        i += 3;
                        continue;
                    }
                }
            }
            self.folded.push(seg[i]);
            self.fold_map.push(i as u32);
            i += 1;
        }
        self.fold_map.push(seg.len() as u32);
        pii::scan_with(
            &self.folded,
            self.detectors,
            &mut self.pii_hits,
            self.amounts,
        );
        let back = |i: usize| self.fold_map.get(i).map_or(seg.len(), |&x| x as usize);
        for h in &mut self.pii_hits {
            h.start = back(h.start);
            h.end = back(h.end);
        }
    }
}

/// A token's bytes with full-width forms turned into ASCII (other
/// non-ASCII characters kept), for masking.
pub(crate) fn fold_token(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if let Some((c, 3)) = decode_char(b, i) {
            if ('\u{FF01}'..='\u{FF5E}').contains(&c) {
                out.push((c as u32 - 0xFEE0) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}
