//! The de-identification keys of a content profile, checked with located
//! errors: `pii.mask` (how much of each kind of personal data a mask may
//! keep, against the documented minimum it must hide), `columns`,
//! `require_rules` and `suppression`. The guard checks the same again when
//! it compiles the profile; these checks are here so that `policy check`
//! points at FILE:LINE:COL.

use super::{Ctx, Loc, Sp, Tbl, PII_DETECTORS};

/// Per detector: (name, most `keep_prefix`, most `keep_suffix`, default
/// `keep_prefix`, default `keep_suffix`): what a mask must hide at least
/// (docs/guard.md, "Masking rules"). The guard holds the same table
/// (`ferry_guard::MASK_LIMITS`); a daemon test keeps them equal.
pub const MASK_LIMITS: [(&str, usize, usize, usize, usize); 5] = [
    ("prc_id", 6, 4, 6, 4),
    ("mobile", 3, 4, 3, 4),
    ("bank_card", 6, 4, 4, 4),
    ("email", 3, 32, 1, 32),
    ("uscc", 8, 1, 8, 1),
];

const MASK_KEYS: &[&str] = &["keep_prefix", "keep_suffix"];
const COLUMN_KEYS: &[&str] = &[
    "match",
    "action",
    "to",
    "step",
    "keep_prefix",
    "keep_suffix",
];
const SUPPRESSION_KEYS: &[&str] = &[
    "count_columns",
    "k",
    "total_column",
    "total_labels",
    "marker",
];
const COLUMN_ACTIONS: &[&str] = &["keep", "drop", "mask", "pseudonymize", "generalize"];
const GENERALIZE_TO: &[&str] = &["month", "year", "district", "range", "round"];
/// Same limits as the guard's (`ferry_guard::COLUMN_KEEP_MAX` …).
const COLUMN_KEEP_MAX: u64 = 4;
const STEP_MAX: u64 = 1_000_000_000_000_000;
const K_MAX: u64 = 100;
const MARKER_MAX_CHARS: usize = 16;

/// `pii = { … }`: the profile-wide `keep_prefix`/`keep_suffix` and
/// `pii.mask.DETECTOR`, each against [`MASK_LIMITS`] for every enabled
/// detector without a rule of its own.
pub(super) fn pii_masks(ctx: &mut Ctx<'_>, p: &Tbl<'_>, detectors: Option<&Sp<Vec<Sp<String>>>>) {
    let wide_p = p.uint(ctx, "keep_prefix", 0, 32, "characters");
    let wide_s = p.uint(ctx, "keep_suffix", 0, 32, "characters");
    // (detector, its own keep_prefix, its own keep_suffix)
    type Own = (String, Option<Sp<u64>>, Option<Sp<u64>>);
    let mut own: Vec<Own> = Vec::new();
    if let Some(m) = p.table(ctx, "mask", PII_DETECTORS) {
        for name in PII_DETECTORS {
            if let Some(d) = m.table(ctx, name, MASK_KEYS) {
                let kp = d.uint(ctx, "keep_prefix", 0, 32, "characters");
                let ks = d.uint(ctx, "keep_suffix", 0, 32, "characters");
                own.push((name.to_string(), kp, ks));
            }
        }
    }
    let enabled: Vec<String> = match detectors {
        Some(list) => list.v.iter().map(|d| d.v.clone()).collect(),
        None => PII_DETECTORS.iter().map(|d| d.to_string()).collect(),
    };
    for (name, max_p, max_s, _, _) in MASK_LIMITS {
        let mine = own.iter().find(|o| o.0 == name);
        let kp = mine.and_then(|o| o.1.as_ref()).or(wide_p.as_ref());
        let ks = mine.and_then(|o| o.2.as_ref()).or(wide_s.as_ref());
        // A rule written for a detector is checked even when the detector
        // is not enabled: it is still a rule someone may rely on later.
        let applies = enabled.iter().any(|e| e == name) || mine.is_some();
        if !applies {
            continue;
        }
        for (v, key, max) in [(kp, "keep_prefix", max_p), (ks, "keep_suffix", max_s)] {
            if let Some(v) = v {
                if v.v as usize > max {
                    ctx.err(
                        "mask-too-weak",
                        &v.loc,
                        format!(
                            "`{key} = {}` keeps too much of a {name} value: at most {key} = {max} hides what docs/guard.md (\"Masking rules\") sets as the minimum; write pii.mask.{name} = {{ {key} = {max} }} or less",
                            v.v
                        ),
                    );
                }
            }
        }
    }
}

/// `columns = [ … ]` (`[[profile.NAME.columns]]`).
pub(super) fn columns(ctx: &mut Ctx<'_>, t: &Tbl<'_>) {
    let Some(list) = super::tables_of(
        ctx,
        t,
        "columns",
        "wrong type: column rules are written as [[profile.NAME.columns]] tables",
    ) else {
        return;
    };
    for (i, (table, span)) in list.into_iter().enumerate() {
        let what = format!("columns[{i}] of {}", t.what);
        let c = Tbl {
            file: t.file,
            header: Loc { file: t.file, span },
            what,
            table,
        };
        for (key, _) in table.iter() {
            if !COLUMN_KEYS.contains(&key) {
                let loc = c.key_loc(key);
                ctx.err(
                    "unknown-key",
                    &loc,
                    format!(
                        "unknown key `{key}` in {}; allowed here: {}",
                        c.what,
                        COLUMN_KEYS.join(", ")
                    ),
                );
            }
        }
        column(ctx, &c);
    }
}

fn column(ctx: &mut Ctx<'_>, c: &Tbl<'_>) {
    match c.str_list(ctx, "match") {
        None if c.table.get("match").is_none() => ctx.err(
            "missing-key",
            &c.header,
            format!(
                "missing key `match` in {}: add e.g. match = [\"联系电话\", \"phone*\"]",
                c.what
            ),
        ),
        Some(l) if l.v.is_empty() || l.v.iter().any(|n| n.v.trim().is_empty()) => ctx.err(
            "invalid-value",
            &l.loc,
            "`match` names at least one column, none of them blank",
        ),
        _ => {}
    }
    let Some(action) = c.required_str(ctx, "action", "\"pseudonymize\"") else {
        return;
    };
    if !COLUMN_ACTIONS.contains(&action.v.as_str()) {
        ctx.err(
            "invalid-value",
            &action.loc,
            format!(
                "unknown column action \"{}\"; use one of: {}",
                action.v,
                COLUMN_ACTIONS.join(", ")
            ),
        );
        return;
    }
    let is = |a: &str| action.v == a;
    let only = |ctx: &mut Ctx<'_>, key: &str, allowed: bool, needs: &str| {
        if !allowed && c.table.get(key).is_some() {
            let loc = c.key_loc(key);
            ctx.err(
                "invalid-value",
                &loc,
                format!("`{key}` applies to {needs} only; remove it"),
            );
        }
    };
    only(ctx, "keep_prefix", is("mask"), "action = \"mask\"");
    only(ctx, "keep_suffix", is("mask"), "action = \"mask\"");
    only(ctx, "to", is("generalize"), "action = \"generalize\"");
    if is("mask") {
        c.uint(ctx, "keep_prefix", 0, COLUMN_KEEP_MAX, "characters");
        c.uint(ctx, "keep_suffix", 0, COLUMN_KEEP_MAX, "characters");
    }
    let to = if is("generalize") {
        match c.str(ctx, "to") {
            None if c.table.get("to").is_none() => {
                ctx.err(
                    "missing-key",
                    &action.loc,
                    "action = \"generalize\" needs `to`: \"month\", \"year\", \"district\", \"range\" or \"round\"",
                );
                None
            }
            Some(to) if !GENERALIZE_TO.contains(&to.v.as_str()) => {
                ctx.err(
                    "invalid-value",
                    &to.loc,
                    format!(
                        "unknown `to = \"{}\"`; use one of: {}",
                        to.v,
                        GENERALIZE_TO.join(", ")
                    ),
                );
                None
            }
            other => other,
        }
    } else {
        None
    };
    let needs_step = to
        .as_ref()
        .is_some_and(|t| t.v == "range" || t.v == "round");
    only(ctx, "step", needs_step, "to = \"range\" or \"round\"");
    if needs_step {
        if c.table.get("step").is_none() {
            ctx.err(
                "missing-key",
                &action.loc,
                "to = \"range\" and \"round\" need a `step`, e.g. step = 100000",
            );
        } else {
            c.uint(
                ctx,
                "step",
                1,
                STEP_MAX,
                "the width of a range or the rounding unit",
            );
        }
    }
}

/// `suppression = { … }`.
pub(super) fn suppression(ctx: &mut Ctx<'_>, t: &Tbl<'_>) {
    let Some(s) = t.table(ctx, "suppression", SUPPRESSION_KEYS) else {
        return;
    };
    match s.str_list(ctx, "count_columns") {
        None if s.table.get("count_columns").is_none() => ctx.err(
            "missing-key",
            &s.header,
            "suppression needs `count_columns`, e.g. count_columns = [\"户数\", \"人口\"]",
        ),
        Some(l) if l.v.is_empty() => ctx.err(
            "invalid-value",
            &l.loc,
            "`count_columns` names at least one column",
        ),
        _ => {}
    }
    if s.table.get("k").is_none() {
        ctx.err(
            "missing-key",
            &s.header,
            "suppression needs `k`: counts from 1 to k-1 are suppressed, e.g. k = 5",
        );
    } else {
        s.uint(ctx, "k", 2, K_MAX, "the smallest count published");
    }
    s.str(ctx, "total_column");
    s.str_list(ctx, "total_labels");
    if let Some(m) = s.str(ctx, "marker") {
        let n = m.v.chars().count();
        let ok = (1..=MARKER_MAX_CHARS).contains(&n)
            && m.v.trim() == m.v
            && !m.v.chars().all(|c| c.is_ascii_digit())
            && !m.v.contains([',', '"', '\n', '\r', '\\']);
        if !ok {
            ctx.err(
                "invalid-value",
                &m.loc,
                format!("`marker` is 1 to {MARKER_MAX_CHARS} characters, not a number, without commas, quotes or line breaks, e.g. \"*\""),
            );
        }
    }
}
