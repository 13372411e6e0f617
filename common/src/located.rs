//! Where an error is in a file an operator wrote, in ferry's house style:
//! `FILE:LINE:COL: message`, then the source line and a caret line under
//! the offending span. The daemon's configuration and the policy language
//! both report this way; the locating and excerpting is done once, here, so
//! the two cannot drift (one of two copies let control characters from a
//! damaged file through to the terminal).

use std::ops::Range;

/// A span located in its file's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// The source line with a caret line under the span, with a gutter:
    /// ```text
    ///   |
    /// 2 | bad = 2
    ///   | ^^^
    /// ```
    pub excerpt: String,
}

/// Locates byte span `span` in `text`. `line_starts` holds the byte offsets
/// where lines start (`[0, …]`, as [`line_starts`] makes them), or is empty
/// to scan: a file with thousands of findings must not cost a scan each.
/// Out-of-range or mid-character offsets are clamped, never a panic.
pub fn locate(text: &str, span: Range<usize>, line_starts: &[usize]) -> Location {
    let start = floor_char_boundary(text, span.start.min(text.len()));
    let (line, line_start) = line_and_start(text, start, line_starts);
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
    Location {
        line,
        column,
        excerpt,
    }
}

/// The message line and excerpt as printed: `FILE:LINE:COL: message` and
/// the excerpt below it.
pub fn render(file: &str, at: &Location, message: &str) -> String {
    format!(
        "{file}:{}:{}: {message}\n{}",
        at.line, at.column, at.excerpt
    )
}

/// 1-based line of byte `offset` (clamped), for "first defined at line N".
pub fn line_of(text: &str, offset: usize, line_starts: &[usize]) -> usize {
    let start = floor_char_boundary(text, offset.min(text.len()));
    line_and_start(text, start, line_starts).0
}

/// Byte offsets where the lines of `text` start, for [`locate`].
pub fn line_starts(text: &str) -> Vec<usize> {
    std::iter::once(0)
        .chain(text.match_indices('\n').map(|(i, _)| i + 1))
        .collect()
}

/// The largest char boundary at or before `i` (`i` within `s`).
pub fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// 1-based line of byte `start` (a char boundary) and where it starts.
fn line_and_start(text: &str, start: usize, line_starts: &[usize]) -> (usize, usize) {
    if line_starts.is_empty() {
        let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
        return (text[..start].matches('\n').count() + 1, line_start);
    }
    let idx = line_starts.partition_point(|&s| s <= start).max(1);
    (idx, line_starts[idx - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caret_under_the_span() {
        let text = "a = 1\nbad = 2\n";
        let at = locate(text, 6..9, &[]);
        assert_eq!((at.line, at.column), (2, 1));
        assert_eq!(
            render("p.toml", &at, "m"),
            "p.toml:2:1: m\n  |\n2 | bad = 2\n  | ^^^"
        );
        assert_eq!(locate(text, 6..9, &line_starts(text)), at);
    }

    #[test]
    fn columns_count_characters_and_tabs_stay() {
        let text = "\tname = \"é\" x";
        let at = locate(text, 12..13, &[]);
        assert_eq!(at.column, 12);
        assert!(at.excerpt.ends_with("| \t          ^"), "{:?}", at.excerpt);
    }

    #[test]
    fn damaged_input_never_panics_or_reaches_the_terminal() {
        let text = "k = \u{1b}[31mred\né";
        let at = locate(text, 4..5, &[]);
        assert!(!at.excerpt.contains('\u{1b}'));
        // Past the end, inside a character, an empty text.
        let _ = locate(text, 10_000..20_000, &[]);
        let _ = locate(text, text.len() - 1..text.len(), &[]);
        #[allow(clippy::reversed_empty_ranges)] // a span that ends before it starts
        let at = locate("", 3..1, &[]);
        assert_eq!((at.line, at.column), (1, 1));
    }

    #[test]
    fn line_of_an_offset() {
        let text = "a\nb\nc";
        assert_eq!(line_of(text, 4, &[]), 3);
        assert_eq!(line_of(text, 4, &line_starts(text)), 3);
        assert_eq!(line_of(text, 99, &[]), 3);
    }
}
