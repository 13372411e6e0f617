//! Located diagnostics in ferry's house style (`FILE:LINE:COL: message`, the
//! source line, a caret line), so a security administrator editing the
//! policy on a hardened host sees exactly where and what to change.

use serde::Serialize;
use std::fmt;
use std::ops::Range;

/// How serious a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The policy is refused.
    Error,
    /// The policy loads, but probably not as meant; an error under `--strict`.
    Warning,
}

/// One finding about a policy file, with its location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// Stable identifier of the class, listed in docs/policy.md (e.g. `unknown-key`).
    pub code: &'static str,
    /// The file as named on the command line or in `include`.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What is wrong and what to do.
    pub message: String,
    /// The offending source line with a caret line under the span.
    pub excerpt: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tag = match self.severity {
            Severity::Error => "",
            Severity::Warning => "warning: ",
        };
        write!(
            f,
            "{}:{}:{}: {tag}{}\n{}",
            self.file, self.line, self.column, self.message, self.excerpt
        )
    }
}

/// Where something is written in the policy's files, kept after compiling
/// so that what is checked later (a dirty-word list read by the daemon's
/// guard) is reported at FILE:LINE:COL like every other error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Place {
    /// The file as named on the command line or in `include`.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// The source line with a caret line under the span.
    pub excerpt: String,
}

impl Place {
    /// A diagnostic at this place.
    pub fn diagnostic(
        &self,
        severity: Severity,
        code: &'static str,
        message: impl Into<String>,
    ) -> Diagnostic {
        Diagnostic {
            severity,
            code,
            file: self.file.clone(),
            line: self.line,
            column: self.column,
            message: message.into(),
            excerpt: self.excerpt.clone(),
        }
    }
}

/// One policy file's text and name, for locating spans.
#[derive(Clone, Copy)]
pub(crate) struct Source<'a> {
    pub(crate) text: &'a str,
    pub(crate) origin: &'a str,
    /// Byte offsets where lines start (`[0, …]`), or empty to scan: a
    /// policy with thousands of rules must not cost a scan per citation.
    pub(crate) line_starts: &'a [usize],
}

impl Source<'_> {
    pub(crate) fn diag(
        &self,
        severity: Severity,
        code: &'static str,
        span: Range<usize>,
        message: impl Into<String>,
    ) -> Diagnostic {
        let text = self.text;
        let start = floor_char_boundary(text, span.start.min(text.len()));
        let (line, line_start) = self.locate(start);
        let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
        let source_line = text[line_start..line_end].trim_end_matches('\r');
        let column = text[line_start..start].chars().count() + 1;
        let end = floor_char_boundary(text, span.end.clamp(start, line_end));
        let width = text[start..end].chars().count().max(1);
        let number = line.to_string();
        let gutter = " ".repeat(number.len());
        // Tabs stay tabs so the caret lines up in a terminal.
        let pad: String = text[line_start..start]
            .chars()
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        // Binary garbage must not put control characters on the terminal.
        let shown: String = source_line
            .chars()
            .map(|c| if c.is_control() && c != '\t' { '?' } else { c })
            .collect();
        let excerpt = format!(
            "{gutter} |\n{number} | {shown}\n{gutter} | {pad}{}",
            "^".repeat(width)
        );
        Diagnostic {
            severity,
            code,
            file: self.origin.to_string(),
            line,
            column,
            message: message.into(),
            excerpt,
        }
    }

    /// The place of `span`, to cite after compiling.
    pub(crate) fn place(&self, span: Range<usize>) -> Place {
        let d = self.diag(Severity::Error, "", span, "");
        Place {
            file: d.file,
            line: d.line,
            column: d.column,
            excerpt: d.excerpt,
        }
    }

    /// 1-based line of a byte offset, for "first defined at line N" notes.
    pub(crate) fn line_of(&self, offset: usize) -> usize {
        let start = floor_char_boundary(self.text, offset.min(self.text.len()));
        self.locate(start).0
    }

    /// 1-based line and the byte offset where it starts.
    fn locate(&self, start: usize) -> (usize, usize) {
        if self.line_starts.is_empty() {
            let line_start = self.text[..start].rfind('\n').map_or(0, |i| i + 1);
            return (self.text[..start].matches('\n').count() + 1, line_start);
        }
        let idx = self.line_starts.partition_point(|&s| s <= start).max(1);
        (idx, self.line_starts[idx - 1])
    }
}

pub(crate) fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The candidate an administrator most likely meant, if any is close.
pub(crate) fn closest<'c>(word: &str, candidates: &[&'c str]) -> Option<&'c str> {
    let lower = word.to_lowercase();
    let mut best: Option<(usize, &str)> = None;
    for &c in candidates {
        let d = edit_distance(&lower, c);
        let limit = (c.chars().count() / 3).max(1);
        let contained = lower.len() >= 3 && (c.contains(lower.as_str()) || lower.contains(c));
        let better = match best {
            None => true,
            Some((bd, _)) => d < bd,
        };
        if (d <= limit || contained) && better {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

/// Synonyms administrators reach for that edit distance cannot find.
const SYNONYMS: &[(&str, &str)] = &[
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

/// Like [`closest`], but also knows common synonyms for ferry's key names.
pub(crate) fn suggest<'c>(word: &str, candidates: &[&'c str]) -> Option<&'c str> {
    let lower = word.to_lowercase();
    for (from, to) in SYNONYMS {
        if *from == lower {
            if let Some(c) = candidates.iter().find(|c| **c == *to) {
                return Some(c);
            }
        }
    }
    closest(word, candidates)
}

/// Optimal string alignment distance: Levenshtein plus adjacent
/// transpositions, the most common typing slip.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().take(256).collect();
    let b: Vec<char> = b.chars().take(256).collect();
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
    fn suggestions_use_synonyms_and_distance() {
        assert_eq!(
            suggest("max_size", &["max_package_bytes", "names"]),
            Some("max_package_bytes")
        );
        assert_eq!(suggest("chanels", &["channels", "names"]), Some("channels"));
        assert_eq!(suggest("zzzz", &["channels", "names"]), None);
    }

    #[test]
    fn excerpt_has_caret_under_span() {
        let s = Source {
            text: "a = 1\nbad = 2\n",
            origin: "p.toml",
            line_starts: &[0, 6, 14],
        };
        let d = s.diag(Severity::Error, "x", 6..9, "m");
        assert_eq!((d.line, d.column), (2, 1));
        assert_eq!(d.to_string(), "p.toml:2:1: m\n  |\n2 | bad = 2\n  | ^^^");
    }
}
