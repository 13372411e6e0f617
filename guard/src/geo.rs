//! Coordinates as written: how many decimal places they carry and the
//! same value rounded to fewer, computed on the decimal digits (not via
//! binary floating point) so that `116.39745` rounds to `116.3975`.

/// A decimal number as written: sign, digits, and how many of them are
/// after the point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Decimal {
    neg: bool,
    /// ASCII digits, no leading zeros except a single `0` for zero.
    digits: Vec<u8>,
    /// Digits after the point (may be negative: `1e3` has scale -3).
    scale: i64,
}

/// Longest number text taken as a coordinate.
const NUMBER_MAX_BYTES: usize = 64;

impl Decimal {
    /// Parses `-?\d+(\.\d+)?([eE][+-]?\d+)?` (a leading `+` and a bare
    /// leading or trailing point as in `.5` or `5.` are accepted too).
    pub(crate) fn parse(s: &[u8]) -> Option<Decimal> {
        if s.is_empty() || s.len() > NUMBER_MAX_BYTES {
            return None;
        }
        let mut i = 0;
        let mut neg = false;
        if s[0] == b'-' || s[0] == b'+' {
            neg = s[0] == b'-';
            i = 1;
        }
        let mut digits = Vec::with_capacity(s.len());
        let mut frac = 0i64;
        let mut any = false;
        while i < s.len() && s[i].is_ascii_digit() {
            digits.push(s[i]);
            any = true;
            i += 1;
        }
        if i < s.len() && s[i] == b'.' {
            i += 1;
            while i < s.len() && s[i].is_ascii_digit() {
                digits.push(s[i]);
                frac += 1;
                any = true;
                i += 1;
            }
        }
        if !any {
            return None;
        }
        let mut exp = 0i64;
        if i < s.len() && (s[i] == b'e' || s[i] == b'E') {
            i += 1;
            let mut eneg = false;
            if i < s.len() && (s[i] == b'-' || s[i] == b'+') {
                eneg = s[i] == b'-';
                i += 1;
            }
            let st = i;
            while i < s.len() && s[i].is_ascii_digit() && i - st < 4 {
                exp = exp * 10 + i64::from(s[i] - b'0');
                i += 1;
            }
            if i == st {
                return None;
            }
            if eneg {
                exp = -exp;
            }
        }
        if i != s.len() {
            return None;
        }
        let mut scale = frac - exp;
        // Trailing zeros after the point carry no precision.
        while scale > 0 && digits.len() > 1 && digits.last() == Some(&b'0') {
            digits.pop();
            scale -= 1;
        }
        let lead = digits.iter().take_while(|&&d| d == b'0').count();
        let lead = lead.min(digits.len().saturating_sub(1));
        digits.drain(..lead);
        Some(Decimal { neg, digits, scale })
    }

    /// Significant decimal places (trailing zeros not counted).
    pub(crate) fn places(&self) -> u32 {
        u32::try_from(self.scale.max(0)).unwrap_or(u32::MAX)
    }

    pub(crate) fn to_f64(&self) -> f64 {
        let s = self.to_plain();
        s.parse().unwrap_or(f64::NAN)
    }

    fn to_plain(&self) -> String {
        let mut out = String::new();
        if self.neg && self.digits.iter().any(|&d| d != b'0') {
            out.push('-');
        }
        let d = &self.digits;
        if self.scale <= 0 {
            out.push_str(std::str::from_utf8(d).unwrap_or("0"));
            for _ in 0..(-self.scale).min(400) {
                out.push('0');
            }
            return out;
        }
        let scale = self.scale as usize;
        if d.len() > scale {
            let (a, b) = d.split_at(d.len() - scale);
            out.push_str(std::str::from_utf8(a).unwrap_or("0"));
            out.push('.');
            out.push_str(std::str::from_utf8(b).unwrap_or("0"));
        } else {
            out.push_str("0.");
            for _ in 0..(scale - d.len()) {
                out.push('0');
            }
            out.push_str(std::str::from_utf8(d).unwrap_or("0"));
        }
        out
    }

    /// The value rounded half away from zero to `places` decimals, written
    /// plainly with exactly that many decimals.
    pub(crate) fn rounded(&self, places: u32) -> String {
        let places = i64::from(places);
        if self.scale <= places {
            let mut d = self.clone();
            // Pad to `places` for a uniform look.
            while d.scale < places {
                d.digits.push(b'0');
                d.scale += 1;
            }
            return d.to_plain();
        }
        let drop = (self.scale - places) as usize;
        let mut digits = self.digits.clone();
        let round_up = if drop <= digits.len() {
            let cut = digits.len() - drop;
            let up = digits[cut] >= b'5';
            digits.truncate(cut);
            up
        } else {
            digits.clear();
            false
        };
        if digits.is_empty() {
            digits.push(b'0');
        }
        if round_up {
            let mut i = digits.len();
            loop {
                if i == 0 {
                    digits.insert(0, b'1');
                    break;
                }
                i -= 1;
                if digits[i] == b'9' {
                    digits[i] = b'0';
                } else {
                    digits[i] += 1;
                    break;
                }
            }
        }
        Decimal {
            neg: self.neg,
            digits,
            scale: places,
        }
        .to_plain()
    }
}

/// Significant decimal places and value of a number as written, without
/// allocating (the common path: most coordinates need no rounding).
pub(crate) fn quick(s: &[u8]) -> Option<(u32, f64)> {
    if s.is_empty() || s.len() > NUMBER_MAX_BYTES {
        return None;
    }
    let mut i = usize::from(s[0] == b'-' || s[0] == b'+');
    let mut any = false;
    while i < s.len() && s[i].is_ascii_digit() {
        any = true;
        i += 1;
    }
    let mut frac_start = i;
    let mut frac_end = i;
    if i < s.len() && s[i] == b'.' {
        i += 1;
        frac_start = i;
        while i < s.len() && s[i].is_ascii_digit() {
            any = true;
            i += 1;
        }
        frac_end = i;
    }
    if !any {
        return None;
    }
    let mut exp = 0i64;
    if i < s.len() && (s[i] == b'e' || s[i] == b'E') {
        // Rare: let the exact parser count.
        let d = Decimal::parse(s)?;
        return Some((d.places(), d.to_f64()));
    }
    if i != s.len() {
        return None;
    }
    let frac = &s[frac_start..frac_end];
    let significant = frac.len() - frac.iter().rev().take_while(|&&d| d == b'0').count();
    exp -= significant as i64;
    let value: f64 = std::str::from_utf8(s).ok()?.parse().ok()?;
    Some((u32::try_from(-exp).unwrap_or(0), value))
}

/// Is (lon, lat) inside `[min_lon, min_lat, max_lon, max_lat]`?
pub(crate) fn in_bbox(lon: f64, lat: f64, b: &[f64; 4]) -> bool {
    lon >= b[0] && lon <= b[2] && lat >= b[1] && lat <= b[3]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        Decimal::parse(s.as_bytes()).unwrap()
    }

    #[test]
    fn places_and_rounding() {
        assert_eq!(d("116.39741234").places(), 8);
        assert_eq!(d("116.39740000").places(), 4);
        assert_eq!(d("116").places(), 0);
        assert_eq!(d("1.1639741234e2").places(), 8);
        assert_eq!(d("116.39741234").rounded(4), "116.3974");
        assert_eq!(d("116.39745").rounded(4), "116.3975");
        assert_eq!(d("-39.99999").rounded(2), "-40.00");
        assert_eq!(d("99.96").rounded(0), "100");
        assert_eq!(d("0.00004").rounded(2), "0.00");
        assert_eq!(d("-0.004").rounded(2), "0.00");
        assert_eq!(d("39.9").rounded(3), "39.900");
        assert_eq!(d("1.1639741234e2").rounded(4), "116.3974");
        assert!((d("39.90872345").to_f64() - 39.90872345).abs() < 1e-12);
        for bad in ["", "-", "1.2.3", "1e", "abc", "1,5", "0x10"] {
            assert!(Decimal::parse(bad.as_bytes()).is_none(), "{bad}");
        }
        assert_eq!(quick(b"116.39741234"), Some((8, 116.39741234)));
        assert_eq!(quick(b"116.3970"), Some((3, 116.397)));
        assert_eq!(quick(b"-7"), Some((0, -7.0)));
        assert_eq!(quick(b"1.55e1"), Some((1, 15.5)));
        assert_eq!(quick(b"1.5.5"), None);
        assert_eq!(quick(b"N/A"), None);
        assert!(in_bbox(116.4, 39.9, &[73.5, 18.0, 135.1, 53.6]));
        assert!(!in_bbox(-74.0, 40.7, &[73.5, 18.0, 135.1, 53.6]));
    }
}
