//! File-name patterns for rules: `*`, `?` and `[a-z]` / `[!0-9]` classes,
//! matched against a bare file name (never a path), case-sensitively.
//!
//! Our own small matcher rather than a regex engine: patterns are short, the
//! matcher is linear-time with one backtrack point, and nothing in a policy
//! file can make a decision slow.

/// A compiled file-name pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    text: String,
    tokens: Vec<Token>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Char(char),
    Any,
    Star,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Glob {
    /// Compiles a pattern; the error says what is wrong with it.
    pub fn new(text: &str) -> Result<Glob, String> {
        if text.is_empty() {
            return Err("empty file-name pattern; use \"*\" to match every name".into());
        }
        if text.contains('/') || text.contains('\\') {
            return Err(format!(
                "file-name pattern `{text}` contains a path separator; patterns match bare file names only"
            ));
        }
        let mut tokens = Vec::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '*' => {
                    if tokens.last() != Some(&Token::Star) {
                        tokens.push(Token::Star);
                    }
                }
                '?' => tokens.push(Token::Any),
                '[' => {
                    let negated = chars.peek() == Some(&'!');
                    if negated {
                        chars.next();
                    }
                    let mut ranges = Vec::new();
                    let mut closed = false;
                    while let Some(c) = chars.next() {
                        if c == ']' && !ranges.is_empty() {
                            closed = true;
                            break;
                        }
                        if chars.peek() == Some(&'-') {
                            chars.next();
                            match chars.next() {
                                Some(']') | None => {
                                    return Err(format!(
                                        "file-name pattern `{text}`: unfinished range in `[...]`"
                                    ))
                                }
                                Some(hi) if hi < c => {
                                    return Err(format!(
                                    "file-name pattern `{text}`: range `{c}-{hi}` runs backwards"
                                ))
                                }
                                Some(hi) => ranges.push((c, hi)),
                            }
                        } else {
                            ranges.push((c, c));
                        }
                    }
                    if !closed {
                        return Err(format!(
                            "file-name pattern `{text}`: `[` without a closing `]`"
                        ));
                    }
                    tokens.push(Token::Class { negated, ranges });
                }
                c => tokens.push(Token::Char(c)),
            }
        }
        Ok(Glob {
            text: text.to_string(),
            tokens,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True when the pattern is `*`, which matches every name.
    pub fn matches_everything(&self) -> bool {
        self.tokens == [Token::Star]
    }

    /// Whether `name` matches.
    pub fn is_match(&self, name: &str) -> bool {
        let name: Vec<char> = name.chars().collect();
        let (mut p, mut n) = (0usize, 0usize);
        let mut backtrack: Option<(usize, usize)> = None;
        while n < name.len() {
            let step = match self.tokens.get(p) {
                Some(Token::Star) => {
                    backtrack = Some((p, n));
                    p += 1;
                    continue;
                }
                Some(Token::Any) => true,
                Some(Token::Char(c)) => *c == name[n],
                Some(Token::Class { negated, ranges }) => {
                    ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&name[n])) != *negated
                }
                None => false,
            };
            if step {
                p += 1;
                n += 1;
            } else if let Some((bp, bn)) = backtrack {
                // Let the last star swallow one more character.
                p = bp + 1;
                n = bn + 1;
                backtrack = Some((bp, bn + 1));
            } else {
                return false;
            }
        }
        self.tokens[p..].iter().all(|t| *t == Token::Star)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        let g = Glob::new("stats-*.csv").unwrap();
        assert!(g.is_match("stats-2026.csv"));
        assert!(g.is_match("stats-.csv"));
        assert!(!g.is_match("stats-2026.csv.exe"));
        assert!(!g.is_match("Stats-1.csv"));
        let g = Glob::new("*.[cC][sS][vV]").unwrap();
        assert!(g.is_match("a.CSV"));
        let g = Glob::new("r?-[!0-9]*").unwrap();
        assert!(g.is_match("r1-x"));
        assert!(!g.is_match("r1-9"));
        assert!(Glob::new("a/b").is_err());
        assert!(Glob::new("[abc").is_err());
        assert!(Glob::new("*").unwrap().matches_everything());
        assert!(Glob::new("*a*a*a*a*b")
            .unwrap()
            .is_match(&format!("{}b", "a".repeat(1000))));
    }
}
