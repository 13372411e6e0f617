//! Archives: zip, tar and gzip, read by hand with every limit checked
//! before the allocation or the work it bounds, and every byte of the
//! archive accounted for (no gaps, comments, padding or trailers where
//! uninspected data could hide). Members are inspected recursively as if
//! they were packages of their own; the guard never extracts anything to
//! a path and never rewrites archives.

pub(crate) mod gzip;
pub(crate) mod ooxml;
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

/// How a member is named in a reason: by its position in its archive
/// (`member #3`), never by its name. A name is text from the package and
/// may itself be a marking or an identity number; reasons are written
/// before the name has been scanned (it is refused *because* of the
/// name), so they must not quote it. `unzip -l` / `tar tvf` list members
/// in this order (0-based entry index), which is how an operator finds it.
pub(crate) fn who(index: u64) -> String {
    format!("member #{index}")
}

/// Checks a member name the way an extracting tool would be attacked
/// through it; returns the name as text. Reasons name the member by
/// `index` only (see [`who`]).
pub(crate) fn check_name(name: &[u8], index: u64) -> Result<String, String> {
    if name.is_empty() {
        return Err(format!("{}: an empty name", who(index)));
    }
    if name.len() > MEMBER_NAME_MAX_BYTES {
        return Err(format!(
            "{}: a name longer than {MEMBER_NAME_MAX_BYTES} bytes",
            who(index)
        ));
    }
    let s = who(index);
    if name.iter().any(|&b| b < 0x20 || b == 0x7F) {
        return Err(format!("{s}: a control character in the name"));
    }
    if name.contains(&b'\\') {
        return Err(format!(
            "{s}: a backslash in the name (a Windows path separator) is refused"
        ));
    }
    if name.starts_with(b"/") {
        return Err(format!("{s}: an absolute path"));
    }
    if name.len() >= 2 && name[1] == b':' && name[0].is_ascii_alphabetic() {
        return Err(format!("{s}: a drive-letter path"));
    }
    if name.split(|&b| b == b'/').any(|c| c == b"..") {
        return Err(format!("{s}: `..` in the path (path traversal)"));
    }
    Ok(String::from_utf8_lossy(name).into_owned())
}

/// Remembers member names (as 64-bit hashes) to refuse duplicates: two
/// members with one name extract differently with different tools.
#[derive(Default)]
pub(crate) struct Names(HashSet<u64>);

impl Names {
    pub(crate) fn insert(&mut self, name: &str, index: u64) -> Result<(), String> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        name.trim_end_matches('/').hash(&mut h);
        if self.0.insert(h.finish()) {
            Ok(())
        } else {
            Err(format!(
                "{}: the name occurs twice (an earlier member has it)",
                who(index)
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_attack_extraction_are_refused() {
        assert!(check_name(b"data/a.csv", 0).is_ok());
        for bad in [
            &b"../etc/passwd"[..],
            b"a/../../b",
            b"/etc/passwd",
            b"C:/x",
            b"a\\..\\b",
            b"a\nb",
            b"",
        ] {
            assert!(check_name(bad, 0).is_err(), "{bad:?}");
        }
        let mut n = Names::default();
        assert!(n.insert("a.csv", 0).is_ok());
        assert!(n.insert("a.csv", 1).is_err());
    }
}
