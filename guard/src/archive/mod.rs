//! Archives: zip, tar and gzip, read by hand with every limit checked
//! before the allocation or the work it bounds, and every byte of the
//! archive accounted for (no gaps, comments, padding or trailers where
//! uninspected data could hide). Members are inspected recursively as if
//! they were packages of their own; the guard never extracts anything to
//! a path and never rewrites archives.

pub(crate) mod gzip;
pub(crate) mod tar;
pub(crate) mod zip;

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::io::{Read, Seek};

/// Longest member name.
pub const MEMBER_NAME_MAX_BYTES: usize = 4096;

/// Readers a zip archive can be read from.
pub(crate) trait ReadSeek: Read + Seek {}
impl<T: Read + Seek> ReadSeek for T {}

/// A short, escaped form of a name for reasons.
pub(crate) fn shown(name: &[u8]) -> String {
    let s = String::from_utf8_lossy(name);
    let mut out: String = s.chars().take(80).collect();
    if s.chars().count() > 80 {
        out.push('…');
    }
    format!("{out:?}")
}

/// Checks a member name the way an extracting tool would be attacked
/// through it; returns the name as text.
pub(crate) fn check_name(name: &[u8]) -> Result<String, String> {
    if name.is_empty() {
        return Err("a member with an empty name".into());
    }
    if name.len() > MEMBER_NAME_MAX_BYTES {
        return Err(format!(
            "a member name longer than {MEMBER_NAME_MAX_BYTES} bytes"
        ));
    }
    let s = shown(name);
    if name.iter().any(|&b| b < 0x20 || b == 0x7F) {
        return Err(format!("member {s}: a control character in the name"));
    }
    if name.contains(&b'\\') {
        return Err(format!(
            "member {s}: a backslash in the name (a Windows path separator) is refused"
        ));
    }
    if name.starts_with(b"/") {
        return Err(format!("member {s}: an absolute path"));
    }
    if name.len() >= 2 && name[1] == b':' && name[0].is_ascii_alphabetic() {
        return Err(format!("member {s}: a drive-letter path"));
    }
    if name.split(|&b| b == b'/').any(|c| c == b"..") {
        return Err(format!("member {s}: `..` in the path (path traversal)"));
    }
    Ok(String::from_utf8_lossy(name).into_owned())
}

/// Remembers member names (as 64-bit hashes) to refuse duplicates: two
/// members with one name extract differently with different tools.
#[derive(Default)]
pub(crate) struct Names(HashSet<u64>);

impl Names {
    pub(crate) fn insert(&mut self, name: &str) -> Result<(), String> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        name.trim_end_matches('/').hash(&mut h);
        if self.0.insert(h.finish()) {
            Ok(())
        } else {
            Err(format!(
                "member {}: the name occurs twice",
                shown(name.as_bytes())
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_attack_extraction_are_refused() {
        assert!(check_name(b"data/a.csv").is_ok());
        for bad in [
            &b"../etc/passwd"[..],
            b"a/../../b",
            b"/etc/passwd",
            b"C:/x",
            b"a\\..\\b",
            b"a\nb",
            b"",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        let mut n = Names::default();
        assert!(n.insert("a.csv").is_ok());
        assert!(n.insert("a.csv").is_err());
    }
}
