//! Column rules applied to one value of a table, the same way for CSV
//! fields and JSON members: the replacement, the de-identification record
//! and the verdict. Format handlers decide which values a rule covers and
//! how a replacement is written back (quoted in CSV, a string in JSON).

use crate::deid::{generalize_address, generalize_date, generalize_number};
use crate::inspect::{Ctx, Halt};
use crate::rules::ColumnAction;

/// Letters of a pseudonym: 16 letters carry 4 bits each. Letters only, so
/// no digit-based detector (identity, mobile, card, USCC) can read one as
/// a number.
const TOKEN_ALPHABET: &[u8; 16] = b"abcdefghijklmnop";
/// Letters in a pseudonym: 20 × 4 = 80 bits of the HMAC.
const TOKEN_LETTERS: usize = 20;

/// What a rule made of a value.
pub(crate) enum Applied {
    /// Nothing to change (`keep`, an empty value, a value already in the
    /// rule's form).
    Unchanged,
    /// Write this instead.
    Replace(String),
}

/// What one rule did to the values of one column, counted while the
/// table streams and written to the de-identification record once at its
/// end ([`Tally::record`]): per value, a record entry would cost two
/// strings and a map look-up.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Tally {
    /// Values the rule applied to (changed, or already in its form).
    values: u64,
    /// Values a `generalize` rule could not read, emptied.
    emptied: u64,
    /// Values already pseudonyms, left as they were.
    already: u64,
    /// The key epoch of the pseudonyms made.
    epoch: Option<u32>,
}

impl Tally {
    /// Adds the counts to the record under `target`.
    pub(crate) fn record(&self, ctx: &mut Ctx<'_>, action: ColumnAction, target: &str) {
        let (technique, rule) = (action.technique(), action.parameters());
        if self.values > 0 {
            ctx.applied(
                technique,
                target.to_string(),
                rule.clone(),
                self.values,
                self.epoch,
            );
        }
        if self.emptied > 0 {
            ctx.applied(
                technique,
                target.to_string(),
                format!("{rule}; unreadable, emptied"),
                self.emptied,
                None,
            );
        }
        if self.already > 0 {
            ctx.applied(
                technique,
                target.to_string(),
                "already a pseudonym".into(),
                self.already,
                None,
            );
        }
    }
}

/// Applies `action` (not `drop`, which the format handler does by removing
/// the member or field) to `value`, counting it in `tally`; `target` names
/// the column (`column 联系电话`, `member phone`) in a refusal.
pub(crate) fn apply(
    ctx: &mut Ctx<'_>,
    action: ColumnAction,
    value: &str,
    target: &dyn Fn() -> String,
    tally: &mut Tally,
) -> Result<Applied, Halt> {
    let v = value.trim();
    if v.is_empty() {
        return Ok(Applied::Unchanged);
    }
    let made = match action {
        ColumnAction::Keep | ColumnAction::Drop => {
            tally.values += 1;
            return Ok(Applied::Unchanged);
        }
        ColumnAction::Mask {
            keep_prefix,
            keep_suffix,
        } => Some(mask_cell(v, keep_prefix, keep_suffix)),
        ColumnAction::Pseudonymize => return pseudonymize(ctx, v, target, tally),
        ColumnAction::Date(grain) => generalize_date(v, grain),
        ColumnAction::Number { step, grain } => generalize_number(v, step, grain),
        ColumnAction::Address => generalize_address(v),
    };
    match made {
        Some(m) if m == v => {
            // Already in the rule's form (a month stays a month): the
            // egress re-inspection of a generalized table changes nothing.
            tally.values += 1;
            Ok(Applied::Unchanged)
        }
        Some(m) => {
            ctx.transforming(|| format!("{} of {}", action.technique(), target()))?;
            tally.values += 1;
            Ok(Applied::Replace(m))
        }
        None => {
            // Not a date / number / address the rule can read: emptied
            // rather than released as it is, and counted apart so the
            // operator sees how many.
            ctx.transforming(|| format!("{} of {}", action.technique(), target()))?;
            tally.emptied += 1;
            Ok(Applied::Replace(String::new()))
        }
    }
}

fn pseudonymize(
    ctx: &mut Ctx<'_>,
    v: &str,
    target: &dyn Fn() -> String,
    tally: &mut Tally,
) -> Result<Applied, Halt> {
    if is_pseudonym(v) {
        // Made by a guard before (the ingress side, seen again on the
        // egress side, which holds no pseudonym key).
        tally.already += 1;
        return Ok(Applied::Unchanged);
    }
    let Some((epoch, key)) = ctx.pseudonym_key() else {
        return Err(ctx.reject(format!(
            "pseudonymize of {}: this guard has no pseudonym key (ferryctl keys pseudonym rotate; [policy] pseudonym_keys in the daemon's config); refused rather than released",
            target()
        )));
    };
    let token = token(epoch, key, v);
    ctx.transforming(|| format!("pseudonymize of {}", target()))?;
    tally.values += 1;
    tally.epoch = Some(epoch);
    Ok(Applied::Replace(token))
}

/// `p<epoch>-` and 20 letters of HMAC-SHA-256(channel key, the value
/// trimmed with ASCII letters upper-cased), so `11010519491231002x` and
/// `11010519491231002X ` get the same pseudonym.
pub(crate) fn token(epoch: u32, key: &ring::hmac::Key, v: &str) -> String {
    let norm = v.trim().to_ascii_uppercase();
    let tag = ring::hmac::sign(key, norm.as_bytes());
    let mut out = format!("p{epoch}-");
    for &b in tag.as_ref().iter().take(TOKEN_LETTERS / 2) {
        out.push(char::from(TOKEN_ALPHABET[usize::from(b >> 4)]));
        out.push(char::from(TOKEN_ALPHABET[usize::from(b & 0x0F)]));
    }
    out
}

/// Is `v` a pseudonym as [`token`] writes them?
pub(crate) fn is_pseudonym(v: &str) -> bool {
    let Some(rest) = v.strip_prefix('p') else {
        return false;
    };
    let Some((epoch, letters)) = rest.split_once('-') else {
        return false;
    };
    (1..=10).contains(&epoch.len())
        && epoch.bytes().all(|b| b.is_ascii_digit())
        && letters.len() == TOKEN_LETTERS
        && letters.bytes().all(|b| TOKEN_ALPHABET.contains(&b))
}

/// Every letter or digit (Chinese characters too) becomes `*`, except at
/// most `keep_prefix` first and `keep_suffix` last ones; at least a third
/// of them (rounded up, and at least one) is always hidden, so `1+1` on a
/// two-character name gives `张*` and `3+4` on a mobile number gives
/// `138****5678`. Separators stay.
pub(crate) fn mask_cell(v: &str, keep_prefix: usize, keep_suffix: usize) -> String {
    // A `*` counts as a masked character, so a masked value masks to
    // itself (the egress re-inspection changes nothing).
    let masked = |c: char| c.is_alphanumeric() || c == '*';
    let significant = v.chars().filter(|&c| masked(c)).count();
    let hidden_min = significant.div_ceil(3).max(1).min(significant);
    let (mut p, mut s) = (keep_prefix, keep_suffix);
    while p + s > significant - hidden_min {
        // The end goes first: a surname (`张**`) or an area code is
        // what a masked value usually keeps.
        if s >= p && s > 0 {
            s -= 1;
        } else {
            p -= 1;
        }
    }
    let mut seen = 0;
    v.chars()
        .map(|c| {
            if !masked(c) {
                return c;
            }
            let k = seen;
            seen += 1;
            if k < p || k >= significant - s {
                c
            } else {
                '*'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_keep_at_most_half() {
        assert_eq!(mask_cell("张三丰", 1, 1), "张*丰");
        assert_eq!(mask_cell("张三", 1, 1), "张*");
        assert_eq!(mask_cell("13812345678", 3, 4), "138****5678");
        assert_eq!(mask_cell("138****5678", 3, 4), "138****5678");
        assert_eq!(mask_cell("张*", 1, 1), "张*");
        assert_eq!(mask_cell("ab", 4, 4), "a*");
        assert_eq!(mask_cell("a", 4, 4), "*");
        assert_eq!(mask_cell("A-12 34", 1, 1), "A-** *4");
    }

    #[test]
    fn tokens_are_letters_and_recognised() {
        let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"k");
        let t = token(3, &k, "张三");
        assert!(is_pseudonym(&t), "{t}");
        assert!(t.starts_with("p3-"));
        assert_eq!(
            token(3, &k, " 11010519491231002x"),
            token(3, &k, "11010519491231002X")
        );
        assert_ne!(token(3, &k, "张三"), token(3, &k, "李四"));
        assert!(!is_pseudonym("p3-abc"));
        assert!(!is_pseudonym("张三"));
    }
}
