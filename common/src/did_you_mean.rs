//! "Did you mean …?" for a misspelt key, value or name, so an operator who
//! writes `mut = 1400` or `max_size` is pointed at `mtu` or
//! `max_package_bytes` instead of at a list. One search for the daemon's
//! configuration, the policy language and the CLI (there were two, and
//! only one was bounded against a hostile, very long word).

/// Characters of each word compared: the distance table is quadratic, and a
/// word from a file may be megabytes long. No real key is this long.
pub const MAX_COMPARED_CHARS: usize = 256;

/// Words administrators reach for that edit distance cannot find, and the
/// name ferry uses. Used only when the ferry name is one of the candidates.
pub const SYNONYMS: &[(&str, &str)] = &[
    ("max_size", "max_package_bytes"),
    ("max_bytes", "max_package_bytes"),
    ("size_limit", "max_package_bytes"),
    ("max_file_size", "max_package_bytes"),
    ("tz", "time_zone"),
    ("timezone", "time_zone"),
    ("type", "content_types"),
    ("types", "content_types"),
    ("mime", "content_types"),
    ("action", "effect"),
    ("cron", "schedule"),
    ("approvers", "reviewers"),
];

/// The candidate `word` most likely meant: a known synonym, else the
/// closest by edit distance (at most a third of the candidate's length,
/// at least 1), else one that contains it or that it contains (for words
/// of 3 characters or more). Case is ignored for `word`.
pub fn suggest<'c>(word: &str, candidates: &[&'c str]) -> Option<&'c str> {
    let lower = word.to_lowercase();
    for (from, to) in SYNONYMS {
        if *from == lower {
            if let Some(c) = candidates.iter().find(|c| **c == *to) {
                return Some(c);
            }
        }
    }
    let mut best: Option<(usize, &str)> = None;
    for &c in candidates {
        let d = edit_distance(&lower, c);
        let limit = (c.chars().count() / 3).max(1);
        let contained = lower.len() >= 3 && (c.contains(lower.as_str()) || lower.contains(c));
        let better = best.is_none_or(|(bd, _)| d < bd);
        if (d <= limit || contained) && better {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

/// `, did you mean `C`?` for the [`suggest`]ion, or an empty string: the
/// tail ferry's messages append.
pub fn hint(word: &str, candidates: &[&str]) -> String {
    suggest(word, candidates).map_or(String::new(), |c| format!(", did you mean `{c}`?"))
}

/// Optimal string alignment distance: Levenshtein plus adjacent
/// transpositions, the most common typing slip (`mut` for `mtu`). Compares
/// the first [`MAX_COMPARED_CHARS`] characters of each word.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().take(MAX_COMPARED_CHARS).collect();
    let b: Vec<char> = b.chars().take(MAX_COMPARED_CHARS).collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synonyms_then_distance() {
        assert_eq!(
            suggest("max_size", &["max_package_bytes", "names"]),
            Some("max_package_bytes")
        );
        assert_eq!(suggest("chanels", &["channels", "names"]), Some("channels"));
        assert_eq!(suggest("zzzz", &["channels", "names"]), None);
        // A synonym whose target is not allowed here suggests nothing odd.
        assert_eq!(suggest("tz", &["mtu", "name"]), None);
    }

    #[test]
    fn transposition_and_case() {
        assert_eq!(edit_distance("mut", "mtu"), 1);
        assert_eq!(suggest("MUT", &["mtu", "bind"]), Some("mtu"));
        assert_eq!(hint("bnid", &["mtu", "bind"]), ", did you mean `bind`?");
        assert_eq!(hint("qqqq", &["mtu", "bind"]), "");
    }

    #[test]
    fn containment_finds_a_longer_name() {
        assert_eq!(
            suggest("heartbeat", &["heartbeat_interval_ms", "mtu"]),
            Some("heartbeat_interval_ms")
        );
    }

    #[test]
    fn a_huge_word_is_bounded() {
        let word = "a".repeat(1_000_000);
        assert_eq!(edit_distance(&word, "b"), MAX_COMPARED_CHARS);
        assert_eq!(suggest(&word, &["bind"]), None);
    }
}
