//! The text normalisation dirty words are matched under, so that a marking
//! cannot slip through written in full-width letters, another case,
//! traditional characters or with spaces and invisible characters between
//! its characters. Lists and content go through the same function.
//!
//! Per character: whitespace and zero-width characters are dropped;
//! full-width forms become their ASCII forms; letters are lower-cased;
//! compatibility characters are decomposed (NFKD: `㊙` → `秘`, Kangxi
//! radicals and compatibility ideographs → unified ideographs) and combining
//! marks dropped; the traditional forms of the classification markings
//! become simplified (`絕` → `绝`, `機` → `机`, `內` → `内`, `祕` → `秘`); star
//! variants become `★`.

use unicode_normalization::char::{decompose_compatible, is_combining_mark};

/// Marker in the ASCII tables: the byte is dropped.
pub(crate) const DROPPED: u8 = 0xFF;

const fn ascii_table(newline_dropped: bool) -> [u8; 128] {
    let mut t = [0u8; 128];
    let mut i = 0;
    while i < 128 {
        let b = i as u8;
        t[i] = if b.is_ascii_uppercase() {
            b + 32
        } else if b == b' ' || b == b'\t' || b == 0x0b || b == 0x0c {
            DROPPED
        } else if b == b'\n' || b == b'\r' {
            if newline_dropped {
                DROPPED
            } else {
                b
            }
        } else {
            b
        };
        i += 1;
    }
    t
}

/// ASCII bytes in running text: line breaks are dropped like spaces, so a
/// marking split over two lines still matches.
pub(crate) static ASCII_TEXT: [u8; 128] = ascii_table(true);
/// ASCII bytes in records (CSV): a line break ends a record and so breaks
/// a match.
pub(crate) static ASCII_RECORDS: [u8; 128] = ascii_table(false);

/// Characters dropped between characters: Unicode white space and the
/// invisible formatting characters used to split words.
pub(crate) fn is_dropped(c: char) -> bool {
    matches!(
        c,
        '\u{0009}'..='\u{000D}'
            | ' '
            | '\u{0085}'
            | '\u{00A0}'
            | '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{1680}'
            | '\u{180E}'
            | '\u{2000}'..='\u{200F}'
            | '\u{2028}'..='\u{202F}'
            | '\u{205F}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{3000}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
    )
}

/// Traditional forms of the characters of classification markings, and
/// variants of them, mapped to the simplified form lists are written in.
fn marking_variant(c: char) -> Option<char> {
    Some(match c {
        '絕' => '绝',
        '機' => '机',
        '內' => '内',
        '祕' => '秘',
        '㊙' => '秘',
        '☆' | '✩' | '✪' | '✫' | '✬' | '✭' | '✮' | '✯' | '✰' | '⭐' | '⋆' | '🟉' | '🟊' => {
            '★'
        }
        _ => return None,
    })
}

/// True for characters that normalise to themselves and need no lookup:
/// the common CJK ideographs other than the marking variants.
#[inline]
pub(crate) fn is_plain_ideograph(c: char) -> bool {
    matches!(c, '\u{4E00}'..='\u{9FFF}' | '\u{3400}'..='\u{4DBF}')
        && !matches!(c, '絕' | '機' | '內' | '祕')
}

/// Feeds the normalised form of `c` to `out` (nothing when `c` is dropped).
pub(crate) fn normalize_char(c: char, out: &mut impl FnMut(char)) {
    if c.is_ascii() {
        let n = ASCII_TEXT[c as usize];
        if n != DROPPED {
            out(n as char);
        }
        return;
    }
    if is_dropped(c) {
        return;
    }
    if is_plain_ideograph(c) {
        out(c);
        return;
    }
    if let Some(v) = marking_variant(c) {
        out(v);
        return;
    }
    if ('\u{FF01}'..='\u{FF5E}').contains(&c) {
        // Full-width ASCII forms.
        let a = (c as u32 - 0xFEE0) as u8;
        out(a.to_ascii_lowercase() as char);
        return;
    }
    decompose_compatible(c, |d| {
        if is_combining_mark(d) || is_dropped(d) {
            return;
        }
        if let Some(v) = marking_variant(d) {
            out(v);
            return;
        }
        for l in d.to_lowercase() {
            if !is_dropped(l) {
                out(l);
            }
        }
    });
}

/// The normalised form of a list entry.
pub(crate) fn normalize_word(s: &str) -> String {
    let mut n = String::with_capacity(s.len());
    for c in s.chars() {
        normalize_char(c, &mut |x| n.push(x));
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markings_normalise_to_one_form() {
        assert_eq!(normalize_word("秘 密"), "秘密");
        assert_eq!(normalize_word("機密"), "机密");
        assert_eq!(normalize_word("絕密★"), "绝密★");
        assert_eq!(normalize_word("內部"), "内部");
        assert_eq!(normalize_word("㊙密"), "秘密");
        assert_eq!(normalize_word("秘\u{200B}密☆"), "秘密★");
        assert_eq!(normalize_word("ＳＥＣＲＥＴ"), "secret");
        assert_eq!(normalize_word("Top\u{3000}Secret"), "topsecret");
        assert_eq!(normalize_word("Ｓe\u{00AD}cRét"), "secret");
    }
}
