//! Why a configuration is refused, and where: every refusal names the file,
//! line and column and shows the line with a caret, through the one
//! located-error renderer (`ferry_common::located`) the policy language uses
//! too.

use ferry_common::{did_you_mean, located};
use std::ops::Range;
use std::path::PathBuf;

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read the configuration file: {source}; check the path given to --config and that ferryd may read it", path.display())]
    Io {
        /// The configuration file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file was read but a value, key or the syntax is wrong.
    #[error("{origin}:{line}:{column}: {message}\n{excerpt}")]
    Invalid {
        /// File name (or other origin) as given.
        origin: String,
        /// 1-based line.
        line: usize,
        /// 1-based column, in characters.
        column: usize,
        /// What is wrong and what to do.
        message: String,
        /// The offending source line with a caret line under the column.
        excerpt: String,
    },
}

impl ConfigError {
    /// The 1-based (line, column) the error points at, when it has one.
    pub fn position(&self) -> Option<(usize, usize)> {
        match self {
            ConfigError::Io { .. } => None,
            ConfigError::Invalid { line, column, .. } => Some((*line, *column)),
        }
    }
}

/// Reads and checks the configuration file at `path`. Relative paths inside

#[derive(Clone, Copy)]
pub(crate) struct Source<'a> {
    pub(crate) text: &'a str,
    pub(crate) origin: &'a str,
}

impl Source<'_> {
    /// The one located-error renderer (`ferry_common::located`), shared
    /// with the policy language, so both point at FILE:LINE:COL alike.
    pub(crate) fn error(&self, span: Range<usize>, message: impl Into<String>) -> ConfigError {
        let at = located::locate(self.text, span, &[]);
        ConfigError::Invalid {
            origin: self.origin.to_string(),
            line: at.line,
            column: at.column,
            message: message.into(),
            excerpt: at.excerpt,
        }
    }

    pub(crate) fn toml_error(&self, e: &toml::de::Error) -> ConfigError {
        let span = e.span().unwrap_or(0..0);
        let message = e.message().trim_end().replace('\n', "; ");
        self.error(span, explain_toml_message(&message))
    }

    /// The span of a table's `[header]` line, where keys missing from the
    /// table are reported.
    pub(crate) fn header_span(&self, table: &Range<usize>) -> Range<usize> {
        let start = located::floor_char_boundary(self.text, table.start.min(self.text.len()));
        let end = self.text[start..]
            .find('\n')
            .map_or(self.text.len(), |i| start + i);
        start..end.max(start)
    }
}

/// Rewrites serde's wording into the file's terms and adds a suggestion.
fn explain_toml_message(message: &str) -> String {
    let quoted: Vec<&str> = message.split('`').skip(1).step_by(2).collect();
    if message.starts_with("unknown field") {
        if let Some((word, expected)) = quoted.split_first() {
            let hint = did_you_mean::hint(word, expected);
            if hint.is_empty() {
                return format!(
                    "unknown key `{word}`; remove it (allowed here: {})",
                    expected.join(", ")
                );
            }
            return format!("unknown key `{word}`{hint}");
        }
    }
    if message.starts_with("unknown variant") {
        if let Some((word, expected)) = quoted.split_first() {
            let hint = did_you_mean::hint(word, expected);
            let allowed = expected
                .iter()
                .map(|e| format!("\"{e}\""))
                .collect::<Vec<_>>()
                .join(" or ");
            if hint.is_empty() {
                return format!("unknown value \"{word}\"; use {allowed}");
            }
            return format!("unknown value \"{word}\"{hint}");
        }
    }
    if message.starts_with("invalid type") {
        return format!("wrong type: {message}");
    }
    message.to_string()
}
