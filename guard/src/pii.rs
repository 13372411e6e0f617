//! Personal-data detectors. Each candidate is found as a token with word
//! boundaries and then *validated* — check digits, calendars, number
//! plans — so that an arbitrary 18-digit parcel number is not reported as
//! an identity number.
//!
//! The scanner works on ASCII-folded text (full-width digits and letters
//! already turned into ASCII by the caller); any byte ≥ 0x80 is a boundary,
//! so numbers written between Chinese characters are found.

use memchr::memchr_iter;

/// A personal-data detector a profile can enable (`pii.detectors`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Detector {
    /// PRC resident identity number (GB 11643).
    PrcId,
    /// Mainland mobile number.
    Mobile,
    /// Payment card number (Luhn, known issuer prefixes).
    BankCard,
    /// E-mail address.
    Email,
    /// Unified social credit code (GB 32100-2015).
    Uscc,
}

impl Detector {
    pub(crate) const ALL: [Detector; 5] = [
        Detector::PrcId,
        Detector::Mobile,
        Detector::BankCard,
        Detector::Email,
        Detector::Uscc,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Detector::PrcId => "prc_id",
            Detector::Mobile => "mobile",
            Detector::BankCard => "bank_card",
            Detector::Email => "email",
            Detector::Uscc => "uscc",
        }
    }

    pub(crate) fn from_name(s: &str) -> Option<Detector> {
        Detector::ALL.into_iter().find(|d| d.name() == s)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of enabled detectors.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Detectors(u8);

impl Detectors {
    pub(crate) fn with(self, d: Detector) -> Detectors {
        Detectors(self.0 | d.bit())
    }
    pub(crate) fn has(self, d: Detector) -> bool {
        self.0 & d.bit() != 0
    }
    pub(crate) fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// A validated value at `start..end` of the scanned bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PiiHit {
    pub detector: Detector,
    pub start: usize,
    pub end: usize,
    /// The value in canonical form (digits only, upper-case `X`,
    /// lower-case e-mail): what is hashed.
    pub value: Vec<u8>,
}

const fn alnum_table() -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = (i as u8).is_ascii_alphanumeric();
        i += 1;
    }
    t
}
static ALNUM: [bool; 256] = alnum_table();

/// Appends every validated value in `b` to `hits`, in order of position.
#[cfg(test)]
pub(crate) fn scan(b: &[u8], on: Detectors, hits: &mut Vec<PiiHit>) {
    scan_with(b, on, hits, true);
}

/// [`scan`]; `amounts`: digits that are part of a larger number are
/// left alone (content). Reports pass `false`: there, anything that
/// looks like a value is removed.
pub(crate) fn scan_with(b: &[u8], on: Detectors, hits: &mut Vec<PiiHit>, amounts: bool) {
    if on.is_empty() {
        return;
    }
    let first = hits.len();
    if on.has(Detector::Email) {
        let mut last_end = 0;
        for at in memchr_iter(b'@', b) {
            if at < last_end {
                continue;
            }
            if let Some((s, e)) = email_at(b, at) {
                last_end = e;
                hits.push(PiiHit {
                    detector: Detector::Email,
                    start: s,
                    end: e,
                    value: b[s..e].to_ascii_lowercase(),
                });
            }
        }
    }
    let emails = hits.len();
    let numbers_wanted = on.has(Detector::PrcId)
        || on.has(Detector::Mobile)
        || on.has(Detector::BankCard)
        || on.has(Detector::Uscc);
    if numbers_wanted {
        let n = b.len();
        let mut i = 0;
        while i < n {
            if !ALNUM[usize::from(b[i])] {
                i += 1;
                continue;
            }
            let s = i;
            while i < n && ALNUM[usize::from(b[i])] {
                i += 1;
            }
            let e = i;
            let len = e - s;
            let mut found = None;
            if len <= 6
                && e + 1 < n
                && (b[e] == b' ' || b[e] == b'-')
                && b[e + 1].is_ascii_digit()
                && b[s..e].iter().all(u8::is_ascii_digit)
            {
                if let Some((end, hit)) = grouped(b, s, e, on) {
                    i = end;
                    found = Some(hit);
                }
            }
            if found.is_none() && (11..=19).contains(&len) {
                found = single(&b[s..e], on).map(|(detector, value)| PiiHit {
                    detector,
                    start: s,
                    end: e,
                    value,
                });
            }
            // Digits that belong to a larger number (a decimal fraction
            // either side, a sign) are an amount, not an identifier:
            // `13800000000.50` yuan is not a phone number.
            let found = found.filter(|h| !amounts || !part_of_number(b, h.start, h.end));
            if let Some(h) = found {
                let inside_email = hits[first..emails]
                    .iter()
                    .any(|m| h.start < m.end && m.start < h.end);
                if !inside_email {
                    hits.push(h);
                }
            }
        }
    }
    if emails > first && hits.len() > emails {
        hits[first..].sort_by_key(|h| h.start);
    }
}

/// Is `b[s..e]` (a run of digits, maybe grouped) part of a larger
/// number? Yes when a decimal point joins it to more digits on either side
/// (`13800000000.50`, `0.13800000000`, `12.13800000000`), or a sign stands
/// right before it where no word does (`-13800000000`, `(+13800000000`).
/// `+86` stays a country code. A comma is a field separator in CSV, so
/// `1,13800000000` is not joined (a thousands group is 3 digits, never a
/// whole identifier).
fn part_of_number(b: &[u8], s: usize, e: usize) -> bool {
    let digit_at = |i: Option<usize>| i.and_then(|i| b.get(i)).is_some_and(u8::is_ascii_digit);
    let at = |i: Option<usize>| i.and_then(|i| b.get(i)).copied();
    // A fraction or more decimals after it.
    if at(Some(e)) == Some(b'.') && digit_at(e.checked_add(1)) {
        return true;
    }
    match at(s.checked_sub(1)) {
        // The fractional part of a number (`.5` counts as a number too).
        Some(b'.') => {
            // After a digit, or after no word (`Tel.13800000000` is a
            // phone number).
            match at(s.checked_sub(2)) {
                None => true,
                Some(c) => c.is_ascii_digit() || (c < 0x80 && !c.is_ascii_alphanumeric()),
            }
        }
        Some(sign @ (b'-' | b'+')) => {
            let word_before = at(s.checked_sub(2)).is_some_and(|c| c.is_ascii_alphanumeric());
            if word_before {
                return false;
            }
            // `+86 138…` and `+8613…` are phone numbers with the country code.
            !(sign == b'+' && b.get(s..s + 2) == Some(b"86"))
        }
        _ => false,
    }
}

/// Validates one token that stands alone between boundaries.
fn single(t: &[u8], on: Detectors) -> Option<(Detector, Vec<u8>)> {
    let len = t.len();
    let digits = t.iter().all(u8::is_ascii_digit);
    if len == 18 && on.has(Detector::PrcId) && prc_id(t) {
        return Some((Detector::PrcId, t.to_ascii_uppercase()));
    }
    if len == 18 && on.has(Detector::Uscc) && uscc(t) {
        return Some((Detector::Uscc, t.to_ascii_uppercase()));
    }
    if !digits {
        return None;
    }
    if on.has(Detector::Mobile) {
        if len == 11 && mobile(t) {
            return Some((Detector::Mobile, t.to_vec()));
        }
        if len == 13 && t.starts_with(b"86") && mobile(&t[2..]) {
            return Some((Detector::Mobile, t[2..].to_vec()));
        }
    }
    if on.has(Detector::BankCard) && (13..=19).contains(&len) && bank_card(t) {
        return Some((Detector::BankCard, t.to_vec()));
    }
    None
}

/// Numbers written in groups: `138 1234 5678`, `6222-0212-3456-7890`,
/// `110105 19491231 002X`. `s..e` is the first group.
fn grouped(b: &[u8], s: usize, e: usize, on: Detectors) -> Option<(usize, PiiHit)> {
    const GROUPS_MAX: usize = 6;
    let n = b.len();
    let sep = b[e];
    let mut groups: [(usize, usize); GROUPS_MAX] = [(0, 0); GROUPS_MAX];
    groups[0] = (s, e);
    let mut count = 1;
    let mut p = e;
    while count < GROUPS_MAX && p + 1 < n && b[p] == sep && b[p + 1].is_ascii_digit() {
        let gs = p + 1;
        let mut q = gs;
        while q < n && b[q].is_ascii_digit() {
            q += 1;
        }
        if q < n && (b[q] == b'X' || b[q] == b'x') && (q + 1 == n || !ALNUM[usize::from(b[q + 1])])
        {
            q += 1;
        }
        if q < n && ALNUM[usize::from(b[q])] {
            break;
        }
        groups[count] = (gs, q);
        count += 1;
        p = q;
    }
    for k in (2..=count).rev() {
        let gs = &groups[..k];
        let mut lens = [0usize; GROUPS_MAX];
        for (j, &(a, z)) in gs.iter().enumerate() {
            lens[j] = z - a;
        }
        let lens = &lens[..k];
        let total: usize = lens.iter().sum();
        // Shapes of the grouped forms, before anything is copied.
        let id_shape = lens == [6, 8, 4];
        let mobile_shape = lens == [3, 4, 4] || lens == [2, 3, 4, 4];
        let card_shape = (13..=19).contains(&total)
            && ((k >= 3
                && lens[..k - 1].iter().all(|&l| l == 4)
                && (1..=4).contains(&lens[k - 1]))
                || lens == [4, 6, 5]
                || lens == [4, 6, 4]);
        if !id_shape && !mobile_shape && !card_shape {
            continue;
        }
        let mut value = Vec::with_capacity(total);
        for &(a, z) in gs {
            value.extend_from_slice(&b[a..z]);
        }
        let end = gs[k - 1].1;
        let last_x = value.last().is_some_and(|c| !c.is_ascii_digit());
        let hit = |detector, value| {
            Some((
                end,
                PiiHit {
                    detector,
                    start: s,
                    end,
                    value,
                },
            ))
        };
        if lens == [6, 8, 4] && on.has(Detector::PrcId) && prc_id(&value) {
            let v = value.to_ascii_uppercase();
            return hit(Detector::PrcId, v);
        }
        if last_x {
            continue;
        }
        if on.has(Detector::Mobile) {
            if lens == [3, 4, 4] && mobile(&value) {
                return hit(Detector::Mobile, value);
            }
            if lens == [2, 3, 4, 4] && value.starts_with(b"86") && mobile(&value[2..]) {
                return hit(Detector::Mobile, value[2..].to_vec());
            }
        }
        if on.has(Detector::BankCard) {
            let fours =
                k >= 3 && lens[..k - 1].iter().all(|&l| l == 4) && (1..=4).contains(&lens[k - 1]);
            let amex = lens == [4, 6, 5] || lens == [4, 6, 4];
            if (fours || amex) && (13..=19).contains(&value.len()) && bank_card(&value) {
                return hit(Detector::BankCard, value);
            }
        }
    }
    None
}

/// Provinces (first two digits of the administrative division code) that
/// identity numbers are issued under.
fn province(a: u8, b: u8) -> bool {
    if !a.is_ascii_digit() || !b.is_ascii_digit() {
        return false;
    }
    matches!(
        (a - b'0') * 10 + (b - b'0'),
        11..=15 | 21..=23 | 31..=37 | 41..=46 | 50..=54 | 61..=65 | 71 | 81..=83
    )
}

fn num(t: &[u8]) -> u32 {
    t.iter()
        .fold(0u32, |n, &d| n * 10 + u32::from(d.wrapping_sub(b'0')))
}

fn valid_date(y: u32, m: u32, d: u32) -> bool {
    let leap = (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400);
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&d)
}

/// PRC resident identity number: 17 digits and a check character, a
/// known province, a real birth date (1900–2100), ISO 7064 MOD 11-2.
pub(crate) fn prc_id(t: &[u8]) -> bool {
    const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    const CHECK: &[u8; 11] = b"10X98765432";
    if t.len() != 18 || !t[..17].iter().all(u8::is_ascii_digit) {
        return false;
    }
    if !province(t[0], t[1]) {
        return false;
    }
    let (y, m, d) = (num(&t[6..10]), num(&t[10..12]), num(&t[12..14]));
    if !(1900..=2100).contains(&y) || !valid_date(y, m, d) {
        return false;
    }
    let sum: u32 = t[..17]
        .iter()
        .zip(W)
        .map(|(&c, w)| u32::from(c - b'0') * w)
        .sum();
    CHECK[(sum % 11) as usize] == t[17].to_ascii_uppercase()
}

/// The check character of an identity number's first 17 digits (for
/// tests and fake data).
pub fn prc_id_check(first17: &[u8]) -> Option<u8> {
    const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    if first17.len() != 17 || !first17.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let sum: u32 = first17
        .iter()
        .zip(W)
        .map(|(&c, w)| u32::from(c - b'0') * w)
        .sum();
    Some(b"10X98765432"[(sum % 11) as usize])
}

/// Mainland mobile number: 11 digits, `1[3-9]…`.
pub(crate) fn mobile(t: &[u8]) -> bool {
    t.len() == 11
        && t[0] == b'1'
        && (b'3'..=b'9').contains(&t[1])
        && t.iter().all(u8::is_ascii_digit)
}

/// Luhn check over all digits.
pub(crate) fn luhn(t: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, &c) in t.iter().rev().enumerate() {
        let mut d = u32::from(c.wrapping_sub(b'0'));
        if d > 9 {
            return false;
        }
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum.is_multiple_of(10)
}

/// Payment card number: 13–19 digits, an issuer prefix in use with a
/// length that issuer uses (UnionPay 62/60/9558, Visa, Mastercard, Amex,
/// JCB, Diners, Discover), and the Luhn check.
pub(crate) fn bank_card(t: &[u8]) -> bool {
    let len = t.len();
    if !(13..=19).contains(&len) || !t.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let p2 = num(&t[..2]);
    let p4 = num(&t[..4]);
    let iin = match t[0] {
        b'4' => matches!(len, 13 | 16 | 19),
        b'5' => (51..=55).contains(&p2) && len == 16,
        b'2' => (2221..=2720).contains(&p4) && len == 16,
        b'3' => match p2 {
            34 | 37 => len == 15,
            35 => (16..=19).contains(&len),
            30 | 36 | 38 | 39 => (14..=19).contains(&len),
            _ => false,
        },
        b'6' => matches!(p2, 60 | 62 | 64 | 65) && (16..=19).contains(&len),
        b'9' => matches!(p4, 9558 | 9559) && len == 19,
        _ => false,
    };
    iin && luhn(t)
}

/// Unified social credit code: 18 characters from the 31-character set
/// (no I O S V Z), a registration authority, a division code under a known
/// province, and the GB 32100-2015 check character.
pub(crate) fn uscc(t: &[u8]) -> bool {
    const CS: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
    const W: [u32; 17] = [
        1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
    ];
    if t.len() != 18 {
        return false;
    }
    let up = |c: u8| c.to_ascii_uppercase();
    if !b"123456789ANY".contains(&up(t[0])) || !(b'1'..=b'9').contains(&up(t[1])) {
        return false;
    }
    if !t[2..8].iter().all(u8::is_ascii_digit) || !province(t[2], t[3]) {
        return false;
    }
    let mut sum = 0u32;
    for (i, &c) in t[..17].iter().enumerate() {
        let Some(v) = CS.iter().position(|&x| x == up(c)) else {
            return false;
        };
        sum += v as u32 * W[i];
    }
    let check = (31 - sum % 31) % 31;
    CS.get(check as usize).copied() == Some(up(t[17]))
}

/// The check character of a credit code's first 17 characters (for tests
/// and fake data).
pub fn uscc_check(first17: &[u8]) -> Option<u8> {
    const CS: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
    const W: [u32; 17] = [
        1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
    ];
    if first17.len() != 17 {
        return None;
    }
    let mut sum = 0u32;
    for (i, &c) in first17.iter().enumerate() {
        sum += CS.iter().position(|&x| x == c)? as u32 * W[i];
    }
    CS.get(((31 - sum % 31) % 31) as usize).copied()
}

fn local_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'%' | b'+' | b'-')
}

fn domain_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'.' || c == b'-'
}

/// The e-mail address around the `@` at `at`: a local part of at most 64
/// characters without leading, trailing or doubled dots, and a domain of
/// at least two labels with an alphabetic top-level label.
fn email_at(b: &[u8], at: usize) -> Option<(usize, usize)> {
    let mut l = at;
    while l > 0 && local_char(b[l - 1]) {
        l -= 1;
    }
    while l < at && b[l] == b'.' {
        l += 1;
    }
    let local = &b[l..at];
    if local.is_empty()
        || local.len() > 64
        || local.ends_with(b".")
        || local.windows(2).any(|w| w == b"..")
    {
        return None;
    }
    let mut r = at + 1;
    while r < b.len() && domain_char(b[r]) {
        r += 1;
    }
    while r > at + 1 && matches!(b[r - 1], b'.' | b'-') {
        r -= 1;
    }
    let domain = &b[at + 1..r];
    if domain.is_empty() || domain.len() > 253 {
        return None;
    }
    let mut labels = 0;
    let mut last: &[u8] = &[];
    for label in domain.split(|&c| c == b'.') {
        if label.is_empty() || label.len() > 63 || label.starts_with(b"-") || label.ends_with(b"-")
        {
            return None;
        }
        labels += 1;
        last = label;
    }
    let tld_ok = (last.len() >= 2 && last.iter().all(u8::is_ascii_alphabetic))
        || (last.starts_with(b"xn--") && last.len() > 4);
    if labels < 2 || !tld_ok {
        return None;
    }
    Some((l, r))
}

/// The masked form of a token: the first `keep_prefix` and last
/// `keep_suffix` letters and digits stay, the others become `*`;
/// separators (`-`, space, `@`, `.`) stay. When the kept characters would
/// be all of them, all are masked.
pub(crate) fn mask_token(token: &[u8], keep_prefix: usize, keep_suffix: usize) -> Vec<u8> {
    let significant = token.iter().filter(|c| c.is_ascii_alphanumeric()).count();
    let (keep_prefix, keep_suffix) = if keep_prefix + keep_suffix >= significant {
        (0, 0)
    } else {
        (keep_prefix, keep_suffix)
    };
    let mut seen = 0;
    token
        .iter()
        .map(|&c| {
            if !c.is_ascii_alphanumeric() {
                return c;
            }
            let k = seen;
            seen += 1;
            if k < keep_prefix || k >= significant - keep_suffix {
                c
            } else {
                b'*'
            }
        })
        .collect()
}

/// How much of a value at `start..end` of `seg` masking may keep: none at
/// an end that touches text which, joined with the kept characters, could
/// read as a new value (an address chained to another by `@`, a number
/// continued in groups).
pub(crate) fn keep_at(
    seg: &[u8],
    start: usize,
    end: usize,
    detector: Detector,
    keep_prefix: usize,
    keep_suffix: usize,
) -> (usize, usize) {
    let before = |k: usize| start.checked_sub(k).and_then(|i| seg.get(i)).copied();
    let after = |k: usize| seg.get(end + k).copied();
    if detector == Detector::Email {
        let joins = |c: Option<u8>| c.is_some_and(|c| c == b'@' || local_char(c));
        let p = if joins(before(1)) { 0 } else { keep_prefix };
        let s = if joins(after(0)) { 0 } else { keep_suffix };
        return (p, s);
    }
    let sep = |c: Option<u8>| matches!(c, Some(b' ' | b'-' | b'@' | b'.'));
    let digit = |c: Option<u8>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    let p = if sep(before(1)) && digit(before(2)) {
        0
    } else {
        keep_prefix
    };
    let s = if sep(after(0)) && digit(after(1)) {
        0
    } else {
        keep_suffix
    };
    (p, s)
}

/// The masked form of an e-mail address: at most `keep_prefix`
/// characters of the local part stay and the rest of it becomes `*` (so
/// that what is left never forms an address again); in the domain the last
/// `keep_suffix` letters and digits stay.
pub(crate) fn mask_email(token: &[u8], keep_prefix: usize, keep_suffix: usize) -> Vec<u8> {
    let Some(at) = token.iter().rposition(|&c| c == b'@') else {
        return mask_token(token, 0, 0);
    };
    let (local, domain) = (&token[..at], &token[at + 1..]);
    // Never more than half of the local part.
    let keep = keep_prefix.min(local.len() / 2);
    let mut out: Vec<u8> = local
        .iter()
        .enumerate()
        .map(|(i, &c)| if i < keep { c } else { b'*' })
        .collect();
    out.push(b'@');
    let domain_chars = domain.iter().filter(|c| c.is_ascii_alphanumeric()).count();
    if keep_suffix >= domain_chars {
        // The whole domain kept (the default): it names a provider, not a
        // person, and the starred local part cannot form an address again.
        out.extend_from_slice(domain);
    } else {
        out.extend_from_slice(&mask_token(domain, 0, keep_suffix));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Detectors {
        Detector::ALL
            .into_iter()
            .fold(Detectors::default(), Detectors::with)
    }

    fn found(text: &str) -> Vec<(&'static str, String)> {
        let mut hits = Vec::new();
        scan(text.as_bytes(), all(), &mut hits);
        hits.iter()
            .map(|h| (h.detector.name(), text[h.start..h.end].to_string()))
            .collect()
    }

    #[test]
    fn identity_numbers_are_validated() {
        // The GB 11643 example number.
        assert!(prc_id(b"11010519491231002X"));
        assert!(prc_id(b"11010519491231002x"));
        assert!(!prc_id(b"110105194912310021"), "check digit");
        assert!(!prc_id(b"11010519490231002X"), "no 31 February");
        assert!(!prc_id(b"99010519491231002X"), "no province 99");
        assert_eq!(prc_id_check(b"11010519491231002"), Some(b'X'));
        assert_eq!(
            found("身份证号11010519491231002X，"),
            vec![("prc_id", "11010519491231002X".into())]
        );
        assert_eq!(
            found("ID 110105 19491231 002X."),
            vec![("prc_id", "110105 19491231 002X".into())]
        );
        assert!(found("A11010519491231002X").is_empty(), "word boundary");
    }

    #[test]
    fn mobiles_cards_mails_and_codes() {
        assert_eq!(
            found("电话13812345678。"),
            vec![("mobile", "13812345678".into())]
        );
        assert_eq!(
            found("+86 138 1234 5678"),
            vec![("mobile", "86 138 1234 5678".into())]
        );
        assert_eq!(found("tel 12812345678"), vec![], "no 12x numbers");
        assert_eq!(found("138123456789"), vec![], "12 digits");
        // A UnionPay test number and a Visa test number.
        assert_eq!(
            found("卡号6222021234567890128"),
            vec![("bank_card", "6222021234567890128".into())]
        );
        assert_eq!(found("卡号6222021234567890129"), vec![], "Luhn");
        assert!(bank_card(b"6212345678901232"));
        assert_eq!(
            found("card 6212 3456 7890 1232 ok"),
            vec![("bank_card", "6212 3456 7890 1232".into())]
        );
        assert_eq!(
            found("4111111111111111"),
            vec![("bank_card", "4111111111111111".into())]
        );
        assert_eq!(found("4111111111111112"), vec![], "Luhn");
        assert_eq!(
            found("写信给 zhang.san@example.com。"),
            vec![("email", "zhang.san@example.com".into())]
        );
        assert_eq!(
            found("13812345678@139.com"),
            vec![("email", "13812345678@139.com".into())],
            "the number inside an address is the address"
        );
        assert_eq!(found("a@b"), vec![]);
        assert_eq!(found("x@example.c0m"), vec![]);
        let mut c = b"91110108MA01ABCDE".to_vec();
        let check = uscc_check(&c).unwrap();
        c.push(check);
        assert!(uscc(&c));
        let text = format!("统一社会信用代码{}", String::from_utf8(c.clone()).unwrap());
        assert_eq!(found(&text), vec![("uscc", String::from_utf8(c).unwrap())]);
    }

    #[test]
    fn masking_keeps_the_ends() {
        assert_eq!(mask_token(b"13812345678", 3, 4), b"138****5678");
        assert_eq!(mask_token(b"138 1234 5678", 3, 4), b"138 **** 5678");
        assert_eq!(mask_token(b"1381", 3, 4), b"****");
        assert_eq!(mask_token(b"a@b.cn", 0, 0), b"*@*.**");
        assert_eq!(
            mask_email(b"zhang.san@example.cn", 3, 4),
            b"zha******@*****le.cn"
        );
        assert_eq!(mask_email(b"pBZMZ%@NK.MZ", 3, 4), b"pBZ***@NK.MZ");
        assert_eq!(mask_email(b"pBZMZ%@NK.MZ", 3, 2), b"pBZ***@**.MZ");
        assert_eq!(mask_email(b"a@b.cn", 3, 4), b"*@b.cn");
        let mut hits = Vec::new();
        scan(
            b"pBZ***@NK.MZ zzz**@z.ri",
            Detectors::default().with(Detector::Email),
            &mut hits,
        );
        assert!(hits.is_empty(), "{hits:?}");
    }
}
