//! Located diagnostics in ferry's house style (`FILE:LINE:COL: message`, the
//! source line, a caret line), so a security administrator editing the
//! policy on a hardened host sees exactly where and what to change. The
//! locating and rendering are `ferry_common::located`, shared with the
//! daemon's configuration errors; this module adds the policy's severity,
//! stable codes and places kept after compiling.

use ferry_common::located;
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
        let at = located::Location {
            line: self.line,
            column: self.column,
            excerpt: self.excerpt.clone(),
        };
        f.write_str(&located::render(
            &self.file,
            &at,
            &format!("{tag}{}", self.message),
        ))
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
        let at = located::locate(self.text, span, self.line_starts);
        Diagnostic {
            severity,
            code,
            file: self.origin.to_string(),
            line: at.line,
            column: at.column,
            message: message.into(),
            excerpt: at.excerpt,
        }
    }

    /// The place of `span`, to cite after compiling.
    pub(crate) fn place(&self, span: Range<usize>) -> Place {
        let at = located::locate(self.text, span, self.line_starts);
        Place {
            file: self.origin.to_string(),
            line: at.line,
            column: at.column,
            excerpt: at.excerpt,
        }
    }

    /// 1-based line of a byte offset, for "first defined at line N" notes.
    pub(crate) fn line_of(&self, offset: usize) -> usize {
        located::line_of(self.text, offset, self.line_starts)
    }
}

/// The candidate an administrator most likely meant, with the synonyms
/// administrators reach for (`max_size` for `max_package_bytes`).
pub(crate) use ferry_common::did_you_mean::suggest;

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
