//! De-identification rules of a profile, compiled: how much of each kind
//! of personal data masking may keep (`pii.mask`), what happens to the
//! columns of a table (`columns`, `require_rules`) and small-cell
//! suppression of statistical tables (`suppression`).
//!
//! The limits in [`MASK_LIMITS`] are the documented minimum a mask must
//! hide (docs/guard.md, "Masking rules"); `ferry-policy` checks the same
//! table at FILE:LINE:COL and a daemon test keeps the two equal.

use crate::deid::{DateGrain, NumberGrain};
use crate::pii::Detector;
use serde::Deserialize;
use std::collections::BTreeMap;

/// Per detector: (name, most `keep_prefix`, most `keep_suffix`, default
/// `keep_prefix`, default `keep_suffix`).
///
/// - `mobile`: the middle four digits are hidden at least (`138****5678`).
/// - `prc_id`: the birth date (digits 7–14) is hidden at least.
/// - `bank_card`: at most the first six and last four digits are shown,
///   the display rule of PCI DSS.
/// - `email`: at most three characters of the local part (never more than
///   half of it); the domain, which names a provider and not a person, may
///   be kept (`keep_suffix` counts its letters and digits from the end).
/// - `uscc`: the nine-character organisation code (characters 9–17) is
///   hidden at least.
pub const MASK_LIMITS: [(&str, usize, usize, usize, usize); 5] = [
    ("prc_id", 6, 4, 6, 4),
    ("mobile", 3, 4, 3, 4),
    ("bank_card", 6, 4, 4, 4),
    ("email", 3, 32, 1, 32),
    ("uscc", 8, 1, 8, 1),
];

/// Most characters a column `mask` rule may keep at each end (and at
/// least a third of a value is always hidden: see [`ColumnAction::Mask`]).
pub const COLUMN_KEEP_MAX: usize = 4;
/// Largest `generalize` step.
pub const STEP_MAX: u64 = 1_000_000_000_000_000;
/// Largest `suppression.k`.
pub const K_MAX: u64 = 100;
/// Longest `suppression.marker`, in characters.
pub const MARKER_MAX_CHARS: usize = 16;
/// Default labels of a totals row (case-insensitive, trimmed).
pub const DEFAULT_TOTAL_LABELS: &[&str] = &["合计", "总计", "总数", "total", "sum"];

/// How much of one detector's values masking keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MaskRule {
    pub keep_prefix: usize,
    pub keep_suffix: usize,
}

/// `pii.mask.DETECTOR = { keep_prefix, keep_suffix }`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeepSettings {
    keep_prefix: Option<u32>,
    keep_suffix: Option<u32>,
}

/// The mask rule of every detector: `pii.mask.NAME`, else the profile-wide
/// `keep_prefix`/`keep_suffix`, else the detector's default; each checked
/// against [`MASK_LIMITS`].
pub(crate) fn mask_rules(
    wide_prefix: Option<u32>,
    wide_suffix: Option<u32>,
    per: Option<BTreeMap<String, KeepSettings>>,
) -> Result<[MaskRule; 5], String> {
    let per = per.unwrap_or_default();
    for name in per.keys() {
        if Detector::from_name(name).is_none() {
            return Err(format!(
                "pii.mask: unknown detector `{name}`; known: prc_id, mobile, bank_card, email, uscc"
            ));
        }
    }
    let mut out = [MaskRule {
        keep_prefix: 0,
        keep_suffix: 0,
    }; 5];
    for (i, d) in Detector::ALL.into_iter().enumerate() {
        let Some(&(name, max_p, max_s, def_p, def_s)) =
            MASK_LIMITS.iter().find(|l| l.0 == d.name())
        else {
            continue;
        };
        let own = per.get(name);
        let (p, p_from) = match own.and_then(|o| o.keep_prefix) {
            Some(v) => (v, format!("pii.mask.{name}.keep_prefix")),
            None => match wide_prefix {
                Some(v) => (v, "pii.keep_prefix".to_string()),
                None => (def_p as u32, String::new()),
            },
        };
        let (s, s_from) = match own.and_then(|o| o.keep_suffix) {
            Some(v) => (v, format!("pii.mask.{name}.keep_suffix")),
            None => match wide_suffix {
                Some(v) => (v, "pii.keep_suffix".to_string()),
                None => (def_s as u32, String::new()),
            },
        };
        let (p, s) = (p as usize, s as usize);
        if p > max_p {
            return Err(too_much(name, &p_from, p, "keep_prefix", max_p));
        }
        if s > max_s {
            return Err(too_much(name, &s_from, s, "keep_suffix", max_s));
        }
        out[i] = MaskRule {
            keep_prefix: p,
            keep_suffix: s,
        };
    }
    Ok(out)
}

fn too_much(detector: &str, from: &str, v: usize, key: &str, max: usize) -> String {
    format!(
        "{from} = {v} keeps too much of a {detector} value: at most {key} = {max} hides the documented minimum (docs/guard.md, \"Masking rules\"); set pii.mask.{detector} = {{ {key} = {max} }} or less"
    )
}

/// `[[profile.NAME.columns]]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ColumnSettings {
    #[serde(rename = "match")]
    names: Vec<String>,
    action: String,
    to: Option<String>,
    step: Option<u64>,
    keep_prefix: Option<u32>,
    keep_suffix: Option<u32>,
}

/// `suppression = { … }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SuppressionSettings {
    count_columns: Vec<String>,
    k: u64,
    total_column: Option<String>,
    total_labels: Option<Vec<String>>,
    marker: Option<String>,
}

/// What a column rule does to every value of its columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ColumnAction {
    /// Released as it is (detectors and dirty words still apply).
    Keep,
    /// Removed from the table.
    Drop,
    /// Letters and digits replaced by `*`, keeping at most this many at
    /// each end and hiding at least a third of the value.
    Mask {
        keep_prefix: usize,
        keep_suffix: usize,
    },
    /// A keyed token, stable per channel and key epoch.
    Pseudonymize,
    /// Dates to a month or a year.
    Date(DateGrain),
    /// Numbers to a range or a rounded multiple of `step`.
    Number { step: u64, grain: NumberGrain },
    /// Addresses cut after the district.
    Address,
}

impl ColumnAction {
    /// The technique's name in reports.
    pub(crate) fn technique(self) -> &'static str {
        match self {
            ColumnAction::Keep => "keep",
            ColumnAction::Drop => "drop",
            ColumnAction::Mask { .. } => "mask",
            ColumnAction::Pseudonymize => "pseudonymize",
            ColumnAction::Date(_) | ColumnAction::Number { .. } | ColumnAction::Address => {
                "generalize"
            }
        }
    }

    /// The rule's parameters in reports (`to month`, `keep 2+2`, …).
    pub(crate) fn parameters(self) -> String {
        match self {
            ColumnAction::Keep | ColumnAction::Drop | ColumnAction::Pseudonymize => String::new(),
            ColumnAction::Mask {
                keep_prefix,
                keep_suffix,
            } => format!("keep {keep_prefix} first, {keep_suffix} last"),
            ColumnAction::Date(DateGrain::Month) => "to month".into(),
            ColumnAction::Date(DateGrain::Year) => "to year".into(),
            ColumnAction::Number {
                step,
                grain: NumberGrain::Range,
            } => format!("to range of {step}"),
            ColumnAction::Number {
                step,
                grain: NumberGrain::Round,
            } => format!("rounded to {step}"),
            ColumnAction::Address => "to district".into(),
        }
    }

    /// Does the rule replace the value (so that detector hits inside it
    /// are moot)?
    pub(crate) fn replaces(self) -> bool {
        self != ColumnAction::Keep
    }
}

/// One `[[columns]]` entry.
#[derive(Debug, Clone)]
pub(crate) struct ColumnRule {
    /// Header names or `*`/`?` patterns, trimmed, ASCII letters folded.
    patterns: Vec<String>,
    pub action: ColumnAction,
}

/// `suppression`, compiled.
#[derive(Debug, Clone)]
pub(crate) struct SuppressionRules {
    pub count_columns: Vec<String>,
    pub k: u64,
    pub total_column: Option<String>,
    pub total_labels: Vec<String>,
    pub marker: String,
}

/// The table rules of a profile.
#[derive(Debug, Clone, Default)]
pub(crate) struct TableRules {
    pub columns: Vec<ColumnRule>,
    pub require_rules: bool,
    pub suppression: Option<SuppressionRules>,
}

impl TableRules {
    pub(crate) fn is_empty(&self) -> bool {
        self.columns.is_empty() && !self.require_rules && self.suppression.is_none()
    }

    /// The first rule naming `header`.
    pub(crate) fn rule_for(&self, header: &str) -> Option<&ColumnRule> {
        let h = fold(header);
        self.columns
            .iter()
            .find(|r| r.patterns.iter().any(|p| glob(p.as_bytes(), h.as_bytes())))
    }

    /// Is `header` a count column of the suppression rules?
    pub(crate) fn is_count(&self, header: &str) -> bool {
        let h = fold(header);
        self.suppression.as_ref().is_some_and(|s| {
            s.count_columns
                .iter()
                .any(|p| glob(p.as_bytes(), h.as_bytes()))
        })
    }

    /// Is `header` the suppression rules' total column?
    pub(crate) fn is_total_column(&self, header: &str) -> bool {
        let h = fold(header);
        self.suppression
            .as_ref()
            .and_then(|s| s.total_column.as_ref())
            .is_some_and(|p| glob(p.as_bytes(), h.as_bytes()))
    }

    /// Is `value` a totals-row label? (Asked of every field of every row:
    /// no allocation.)
    pub(crate) fn is_total_label(&self, value: &str) -> bool {
        let v = value.trim();
        self.suppression
            .as_ref()
            .is_some_and(|s| s.total_labels.iter().any(|l| l.eq_ignore_ascii_case(v)))
    }
}

/// Trimmed, ASCII letters lower-cased (Chinese headers compare exactly).
pub(crate) fn fold(s: &str) -> String {
    s.trim().trim_start_matches('\u{FEFF}').to_ascii_lowercase()
}

/// `*` any run of characters, `?` one character; everything else literal.
fn glob(p: &[u8], s: &[u8]) -> bool {
    // Iterative with one back-track point: linear for the short patterns
    // a policy holds, and no recursion on hostile headers.
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if pi < p.len() && (p[pi] == s[si] || (p[pi] == b'?' && char_start(s[si]))) {
            if p[pi] == b'?' {
                // `?` takes a whole UTF-8 character.
                si += 1;
                while si < s.len() && !char_start(s[si]) {
                    si += 1;
                }
                pi += 1;
            } else {
                pi += 1;
                si += 1;
            }
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            star = Some((sp, ss + 1));
            si = ss + 1;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

fn char_start(b: u8) -> bool {
    b & 0xC0 != 0x80
}

/// Compiles `columns`, `require_rules` and `suppression`.
pub(crate) fn table_rules(
    columns: Option<Vec<ColumnSettings>>,
    require_rules: Option<bool>,
    suppression: Option<SuppressionSettings>,
) -> Result<TableRules, String> {
    let mut out = TableRules {
        require_rules: require_rules.unwrap_or(false),
        ..TableRules::default()
    };
    for (i, c) in columns.unwrap_or_default().into_iter().enumerate() {
        out.columns.push(column_rule(i, c)?);
    }
    if let Some(s) = suppression {
        out.suppression = Some(suppression_rules(s)?);
    }
    Ok(out)
}

fn column_rule(i: usize, c: ColumnSettings) -> Result<ColumnRule, String> {
    let at = format!("columns[{i}]");
    if c.names.is_empty() || c.names.iter().any(|n| fold(n).is_empty()) {
        return Err(format!(
            "{at}.match must name at least one column, e.g. match = [\"联系电话\", \"phone\"]"
        ));
    }
    let only = |key: &str, present: bool, for_what: &str| -> Result<(), String> {
        if present {
            Err(format!("{at}.{key} applies to {for_what} only; remove it"))
        } else {
            Ok(())
        }
    };
    let keep_given = c.keep_prefix.is_some() || c.keep_suffix.is_some();
    let action = match c.action.as_str() {
        "keep" | "drop" | "pseudonymize" => {
            only("to", c.to.is_some(), "action = \"generalize\"")?;
            only("step", c.step.is_some(), "action = \"generalize\"")?;
            only("keep_prefix/keep_suffix", keep_given, "action = \"mask\"")?;
            match c.action.as_str() {
                "keep" => ColumnAction::Keep,
                "drop" => ColumnAction::Drop,
                _ => ColumnAction::Pseudonymize,
            }
        }
        "mask" => {
            only("to", c.to.is_some(), "action = \"generalize\"")?;
            only("step", c.step.is_some(), "action = \"generalize\"")?;
            let keep = |v: Option<u32>, key: &str| -> Result<usize, String> {
                let v = v.unwrap_or(0) as usize;
                if v > COLUMN_KEEP_MAX {
                    return Err(format!(
                        "{at}.{key} must be between 0 and {COLUMN_KEEP_MAX}: a column mask shows at most {COLUMN_KEEP_MAX} characters at each end (and hides at least a third of a value)"
                    ));
                }
                Ok(v)
            };
            ColumnAction::Mask {
                keep_prefix: keep(c.keep_prefix, "keep_prefix")?,
                keep_suffix: keep(c.keep_suffix, "keep_suffix")?,
            }
        }
        "generalize" => {
            only("keep_prefix/keep_suffix", keep_given, "action = \"mask\"")?;
            let step = |needed: bool| -> Result<u64, String> {
                match (c.step, needed) {
                    (Some(s), true) if (1..=STEP_MAX).contains(&s) => Ok(s),
                    (Some(_), true) => Err(format!("{at}.step must be between 1 and {STEP_MAX}")),
                    (None, true) => Err(format!(
                        "{at}: to = \"range\" and \"round\" need a step, e.g. step = 100000"
                    )),
                    (Some(_), false) => Err(format!(
                        "{at}.step applies to to = \"range\" or \"round\" only; remove it"
                    )),
                    (None, false) => Ok(0),
                }
            };
            match c.to.as_deref() {
                Some("month") => {
                    step(false)?;
                    ColumnAction::Date(DateGrain::Month)
                }
                Some("year") => {
                    step(false)?;
                    ColumnAction::Date(DateGrain::Year)
                }
                Some("district") => {
                    step(false)?;
                    ColumnAction::Address
                }
                Some("range") => ColumnAction::Number {
                    step: step(true)?,
                    grain: NumberGrain::Range,
                },
                Some("round") => ColumnAction::Number {
                    step: step(true)?,
                    grain: NumberGrain::Round,
                },
                Some(other) => {
                    return Err(format!(
                        "{at}.to: unknown `{other}`; known: month, year, district, range, round"
                    ))
                }
                None => {
                    return Err(format!(
                        "{at}: action = \"generalize\" needs `to` (month, year, district, range or round)"
                    ))
                }
            }
        }
        other => {
            return Err(format!(
                "{at}.action: unknown `{other}`; known: keep, drop, mask, pseudonymize, generalize"
            ))
        }
    };
    Ok(ColumnRule {
        patterns: c.names.iter().map(|n| fold(n)).collect(),
        action,
    })
}

fn suppression_rules(s: SuppressionSettings) -> Result<SuppressionRules, String> {
    if s.count_columns.is_empty() || s.count_columns.iter().any(|n| fold(n).is_empty()) {
        return Err(
            "suppression.count_columns must name at least one column, e.g. [\"户数\"]".into(),
        );
    }
    if !(2..=K_MAX).contains(&s.k) {
        return Err(format!(
            "suppression.k must be between 2 and {K_MAX} (cells with a count from 1 to k-1 are suppressed)"
        ));
    }
    let marker = s.marker.unwrap_or_else(|| "*".to_string());
    if !marker_ok(&marker) {
        return Err(format!(
            "suppression.marker must be 1 to {MARKER_MAX_CHARS} characters, not a number, without commas, quotes or line breaks, e.g. \"*\""
        ));
    }
    let labels = match s.total_labels {
        Some(l) => l
            .iter()
            .map(|x| fold(x))
            .filter(|x| !x.is_empty())
            .collect(),
        None => DEFAULT_TOTAL_LABELS.iter().map(|x| x.to_string()).collect(),
    };
    Ok(SuppressionRules {
        count_columns: s.count_columns.iter().map(|n| fold(n)).collect(),
        k: s.k,
        total_column: s.total_column.map(|t| fold(&t)).filter(|t| !t.is_empty()),
        total_labels: labels,
        marker,
    })
}

/// A suppression marker: short, not a count, and safe unquoted in CSV.
pub(crate) fn marker_ok(m: &str) -> bool {
    let n = m.chars().count();
    (1..=MARKER_MAX_CHARS).contains(&n)
        && m.trim() == m
        && !m.chars().all(|c| c.is_ascii_digit())
        && !m.contains([',', '"', '\n', '\r', '\\'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_whole_headers() {
        assert!(glob(b"phone*", b"phone_home"));
        assert!(glob(b"*phone", b"mobile phone"));
        assert!(glob("联系?话".as_bytes(), "联系电话".as_bytes()));
        assert!(!glob(b"phone", b"phones"));
        assert!(!glob(b"a*b", b"acbx"));
        assert!(glob(b"*", b""));
    }

    #[test]
    fn defaults_and_limits() {
        let r = mask_rules(None, None, None).unwrap();
        assert_eq!(
            r[1],
            MaskRule {
                keep_prefix: 3,
                keep_suffix: 4
            }
        );
        let e = mask_rules(Some(6), Some(4), None).unwrap_err();
        assert!(
            e.contains("pii.keep_prefix = 6 keeps too much of a mobile value"),
            "{e}"
        );
        let mut per = BTreeMap::new();
        per.insert(
            "mobile".to_string(),
            KeepSettings {
                keep_prefix: Some(3),
                keep_suffix: Some(4),
            },
        );
        per.insert(
            "email".to_string(),
            KeepSettings {
                keep_prefix: Some(1),
                keep_suffix: None,
            },
        );
        per.insert(
            "uscc".to_string(),
            KeepSettings {
                keep_prefix: Some(8),
                keep_suffix: Some(1),
            },
        );
        assert!(mask_rules(Some(6), Some(4), Some(per)).is_ok());
    }
}
