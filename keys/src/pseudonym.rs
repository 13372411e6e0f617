//! The content guard's pseudonym key: a per-site secret under which names
//! and identity numbers become stable HMAC tokens, so that tables released
//! at different times can still be joined on them. The security
//! administrator holds and rotates it; each rotation starts a new key
//! epoch, and a value's token under one epoch says nothing about its token
//! under another (joins across epochs are impossible by design).
//!
//! It is not sealed under the link passphrase like the link's keys: it
//! belongs to another role (security administrator, not system
//! administrator) and must be loadable by the guard on its own. Its
//! protection is the file's mode and owner, checked on the opened file.
//!
//! Layout of a pseudonym key directory (0700): one file per epoch,
//! `pseudonym-N.key` (0600, N from 1, no leading zeros), text:
//!
//! ```text
//! ferry-pseudonym-key v1
//! epoch = N
//! created = 2026-01-01T00:00:00Z
//! key = <64 lowercase hex digits>
//! ```
//!
//! The highest epoch is the current one. Other files in the directory are
//! ignored, but a `pseudonym-*.key` that does not parse is an error, never
//! skipped: skipping a damaged current key would silently fall back to an
//! older epoch and change every token.

use crate::{now_secs, utc};
use ferry_common::private_file::{self, PrivateFileError};
use ring::rand::{SecureRandom, SystemRandom};
use serde::Serialize;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// First line of every pseudonym key file.
const HEADER: &str = "ferry-pseudonym-key v1";
const NAME_PREFIX: &str = "pseudonym-";
const NAME_SUFFIX: &str = ".key";
/// A key file being retired: renamed to this (hidden, so no epoch scan
/// sees it) before it is overwritten and deleted; a later retire finishes
/// one left by a crash.
const RETIRING_SUFFIX: &str = ".retiring";
/// Largest pseudonym key file read (one is about 130 bytes; a larger file
/// is a wrong path).
pub const PSEUDONYM_KEY_FILE_MAX_BYTES: u64 = 4 * 1024;
/// Length of the secret in bytes (an HMAC-SHA-256 key).
pub const PSEUDONYM_SECRET_BYTES: usize = 32;

/// Why the pseudonym key store refused. Each message names the file or
/// directory and says what to do; none contains key material.
#[derive(Debug, thiserror::Error)]
pub enum PseudonymKeyError {
    /// Reading, writing or removing failed.
    #[error("{path}: {source}; check that the directory exists and that this user may use it")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A key file that group or other users can access, or that another
    /// user owns (the one check and message, `ferry_common::private_file`).
    #[error(transparent)]
    PrivateFile(PrivateFileError),
    /// The directory holds no pseudonym key.
    #[error("{dir}: no pseudonym key; the security administrator creates one with `ferryctl keys pseudonym rotate --dir {dir}`")]
    NoKey {
        /// The key directory.
        dir: PathBuf,
    },
    /// A `pseudonym-*.key` name that is not `pseudonym-N.key` with N a
    /// decimal epoch from 1.
    #[error("{path}: not a pseudonym key file name (`pseudonym-N.key`, N from 1 without leading zeros); rename it to its epoch or move it out of the directory")]
    BadName {
        /// The file.
        path: PathBuf,
    },
    /// The content is not a pseudonym key file.
    #[error("{path}:{line}: {what}; restore the file from backup (a key file cannot be re-made: a new key is a new epoch, `ferryctl keys pseudonym rotate`)")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The line (1-based) where it goes wrong.
        line: usize,
        /// What is wrong (never the line's content: it may be the key).
        what: String,
    },
    /// The file is larger than [`PSEUDONYM_KEY_FILE_MAX_BYTES`].
    #[error(
        "{path} is larger than {max} bytes, so it is not a pseudonym key file; check the path"
    )]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit.
        max: u64,
    },
    /// A new key file's name is taken (another rotate ran at the same time).
    #[error("{path} already exists; another rotation ran at the same time: run `ferryctl keys pseudonym list` and rotate again if needed")]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// Epoch numbers are used up.
    #[error("{dir}: the current epoch is {max}, the largest there is; no further rotation is possible in this directory")]
    EpochsExhausted {
        /// The key directory.
        dir: PathBuf,
        /// The largest epoch.
        max: u32,
    },
    /// The system random generator failed.
    #[error("the operating system's random generator failed; check /dev/urandom and the kernel's entropy")]
    Random,
}

impl From<PrivateFileError> for PseudonymKeyError {
    fn from(e: PrivateFileError) -> Self {
        match e {
            PrivateFileError::Io { path, source } => PseudonymKeyError::Io { path, source },
            other => PseudonymKeyError::PrivateFile(other),
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PseudonymKeyError + '_ {
    move |source| PseudonymKeyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The pseudonym key of one epoch. Debug never shows the secret; the
/// secret is wiped when the key is dropped.
pub struct PseudonymKey {
    epoch: u32,
    secret: Zeroizing<[u8; PSEUDONYM_SECRET_BYTES]>,
}

impl PseudonymKey {
    /// The key epoch (from 1; a rotation adds one).
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// The HMAC key. Never print or log it.
    pub fn secret(&self) -> &[u8; PSEUDONYM_SECRET_BYTES] {
        &self.secret
    }
}

impl std::fmt::Debug for PseudonymKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PseudonymKey")
            .field("epoch", &self.epoch)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// One epoch held in a pseudonym key directory, without its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PseudonymKeyInfo {
    /// The key epoch.
    pub epoch: u32,
    /// When the key was made (RFC 3339, UTC).
    pub created: String,
    /// Whether this is the highest epoch, the one [`load_current`] loads.
    pub current: bool,
}

fn file_name(epoch: u32) -> String {
    format!("{NAME_PREFIX}{epoch}{NAME_SUFFIX}")
}

/// The epoch a directory entry's name stands for: `None` for a name that
/// is no pseudonym key file at all (ignored), an error for a
/// `pseudonym-*.key` that is not a valid epoch (never skipped).
fn epoch_of_name(dir: &Path, name: &std::ffi::OsStr) -> Result<Option<u32>, PseudonymKeyError> {
    let Some(name) = name.to_str() else {
        return Ok(None);
    };
    let Some(digits) = name
        .strip_prefix(NAME_PREFIX)
        .and_then(|n| n.strip_suffix(NAME_SUFFIX))
    else {
        return Ok(None);
    };
    let bad = || PseudonymKeyError::BadName {
        path: dir.join(name),
    };
    // Exactly the name `file_name` writes: `pseudonym-01.key` next to
    // `pseudonym-1.key` would be two files for one epoch.
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.starts_with('0') {
        return Err(bad());
    }
    digits.parse::<u32>().map(Some).map_err(|_| bad())
}

/// Every epoch held in `dir`, ascending. A missing directory holds none.
fn epochs(dir: &Path) -> Result<Vec<u32>, PseudonymKeyError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(PseudonymKeyError::NoKey {
                dir: dir.to_path_buf(),
            })
        }
        Err(e) => return Err(io(dir)(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io(dir))?;
        if let Some(epoch) = epoch_of_name(dir, &entry.file_name())? {
            out.push(epoch);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Reads and checks one key file: private mode and owner on the opened
/// file (so what is checked is what is read), size, strict format, and the
/// epoch inside equal to the one in the name.
fn read_key_file(dir: &Path, epoch: u32) -> Result<(PseudonymKey, String), PseudonymKeyError> {
    let path = dir.join(file_name(epoch));
    let file = ferry_regular_file::open_regular(&path).map_err(io(&path))?;
    let meta = file.metadata().map_err(io(&path))?;
    private_file::check_mode(&path, &meta)?;
    private_file::check_owner(&path, &meta)?;
    // Room for one byte past the limit, allocated once, so the secret is
    // never copied by a growing buffer and is wiped on every path out.
    let cap = usize::try_from(PSEUDONYM_KEY_FILE_MAX_BYTES).unwrap_or(4096) + 1;
    let mut raw = Zeroizing::new(Vec::with_capacity(cap));
    file.take(PSEUDONYM_KEY_FILE_MAX_BYTES + 1)
        .read_to_end(&mut raw)
        .map_err(io(&path))?;
    if raw.len() as u64 > PSEUDONYM_KEY_FILE_MAX_BYTES {
        return Err(PseudonymKeyError::TooLarge {
            path,
            max: PSEUDONYM_KEY_FILE_MAX_BYTES,
        });
    }
    parse(&path, epoch, &raw)
}

/// Parses the text of `pseudonym-EPOCH.key` at `path`.
fn parse(path: &Path, epoch: u32, raw: &[u8]) -> Result<(PseudonymKey, String), PseudonymKeyError> {
    let corrupt = |line: usize, what: String| PseudonymKeyError::Corrupt {
        path: path.to_path_buf(),
        line,
        what,
    };
    let text = std::str::from_utf8(raw).map_err(|e| {
        let line = 1 + raw[..e.valid_up_to()]
            .iter()
            .filter(|b| **b == b'\n')
            .count();
        corrupt(line, "not UTF-8 text".into())
    })?;
    let Some(body) = text.strip_suffix('\n') else {
        let line = text.lines().count().max(1);
        return Err(corrupt(
            line,
            "the file does not end with a newline (truncated?)".into(),
        ));
    };
    let lines: Vec<&str> = body.split('\n').collect();
    let expect = |n: usize, prefix: &str| -> Result<&str, PseudonymKeyError> {
        match lines.get(n - 1) {
            None => Err(corrupt(
                n,
                format!("the file ends early; expected `{prefix}…`"),
            )),
            Some(l) => l
                .strip_prefix(prefix)
                .ok_or_else(|| corrupt(n, format!("expected `{prefix}…`"))),
        }
    };
    if lines.first() != Some(&HEADER) {
        return Err(corrupt(
            1,
            format!("expected `{HEADER}` (not a ferry pseudonym key file, or a newer format)"),
        ));
    }
    let inside = expect(2, "epoch = ")?;
    let inside_epoch: u32 = match inside.parse() {
        Ok(e) if !inside.starts_with(['0', '+']) => e,
        _ => return Err(corrupt(2, "the epoch is not a number from 1".into())),
    };
    if inside_epoch != epoch {
        return Err(corrupt(
            2,
            format!(
                "the file says epoch {inside_epoch} but its name says epoch {epoch}; give it back its name {}",
                file_name(inside_epoch)
            ),
        ));
    }
    let created = expect(3, "created = ")?;
    if !is_utc_timestamp(created) {
        return Err(corrupt(
            3,
            "the creation time is not `YYYY-MM-DDTHH:MM:SSZ`".into(),
        ));
    }
    let hex_key = expect(4, "key = ")?;
    if hex_key.len() != 2 * PSEUDONYM_SECRET_BYTES
        || !hex_key
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(corrupt(
            4,
            format!(
                "the key is not {} lowercase hex digits",
                2 * PSEUDONYM_SECRET_BYTES
            ),
        ));
    }
    if lines.len() > 4 {
        return Err(corrupt(5, "unexpected line after the key".into()));
    }
    let mut secret = Zeroizing::new([0u8; PSEUDONYM_SECRET_BYTES]);
    hex::decode_to_slice(hex_key, &mut secret[..])
        .map_err(|_| corrupt(4, "the key is not hex".into()))?;
    Ok((PseudonymKey { epoch, secret }, created.to_owned()))
}

/// `YYYY-MM-DDTHH:MM:SSZ`, the shape [`utc`] writes.
fn is_utc_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 20
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

/// Starts a new key epoch: writes `pseudonym-N.key` (0600) with 32 fresh
/// random bytes, N one above the highest epoch held (1 in an empty or new
/// directory, created 0700). The write is durable (file and directory
/// fsync'd) and never replaces an existing file. Returns N.
///
/// Every value gets a new pseudonym under the new epoch: tables released
/// under it do not join with tables released under earlier ones.
pub fn rotate(dir: &Path) -> Result<u32, PseudonymKeyError> {
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io(dir))?;
        // Exactly 0700: the umask may have narrowed it, never widened, but
        // an explicit mode says what is meant.
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
    }
    let held = match epochs(dir) {
        Ok(e) => e,
        Err(PseudonymKeyError::NoKey { .. }) => Vec::new(),
        Err(e) => return Err(e),
    };
    let epoch = match held.last() {
        None => 1,
        Some(&max) => max
            .checked_add(1)
            .ok_or_else(|| PseudonymKeyError::EpochsExhausted {
                dir: dir.to_path_buf(),
                max,
            })?,
    };
    let mut secret = Zeroizing::new([0u8; PSEUDONYM_SECRET_BYTES]);
    SystemRandom::new()
        .fill(&mut secret[..])
        .map_err(|_| PseudonymKeyError::Random)?;
    let mut hex_key = Zeroizing::new([0u8; 2 * PSEUDONYM_SECRET_BYTES]);
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (pair, byte) in hex_key.chunks_exact_mut(2).zip(secret.iter()) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0x0f)];
    }
    // Built in a buffer sized once, so no partial copy of the key is left
    // behind by a reallocation.
    let created = utc(now_secs());
    let mut text = Zeroizing::new(Vec::with_capacity(256));
    text.extend_from_slice(HEADER.as_bytes());
    text.extend_from_slice(format!("\nepoch = {epoch}\ncreated = {created}\nkey = ").as_bytes());
    text.extend_from_slice(&hex_key[..]);
    text.push(b'\n');
    let path = dir.join(file_name(epoch));
    ferry_common::durable::write(&path, &text, 0o600, ferry_common::durable::Replace::Never)
        .map_err(|e| match e {
            ferry_common::durable::WriteError::Exists { path } => {
                PseudonymKeyError::Exists { path }
            }
            other => {
                let (path, source) = other.into_parts();
                PseudonymKeyError::Io { path, source }
            }
        })?;
    Ok(epoch)
}

/// Loads the current (highest) epoch's key. Refuses a file that group or
/// others may access or another user owns, one larger than
/// [`PSEUDONYM_KEY_FILE_MAX_BYTES`], one that does not parse exactly, and
/// one whose epoch inside differs from its name. Older epochs' files are
/// not read (their names are still checked).
pub fn load_current(dir: &Path) -> Result<PseudonymKey, PseudonymKeyError> {
    let epoch = *epochs(dir)?
        .last()
        .ok_or_else(|| PseudonymKeyError::NoKey {
            dir: dir.to_path_buf(),
        })?;
    read_key_file(dir, epoch).map(|(k, _)| k)
}

/// Every epoch held in `dir`, ascending, with its creation time and which
/// one is current; no secrets. Each file is read and checked as
/// [`load_current`] checks the current one. An empty directory gives an
/// empty list; a missing one is [`PseudonymKeyError::NoKey`].
pub fn list(dir: &Path) -> Result<Vec<PseudonymKeyInfo>, PseudonymKeyError> {
    let held = epochs(dir)?;
    let current = held.last().copied();
    held.iter()
        .map(|&epoch| {
            let (_key, created) = read_key_file(dir, epoch)?;
            Ok(PseudonymKeyInfo {
                epoch,
                created,
                current: Some(epoch) == current,
            })
        })
        .collect()
}

/// Retires every epoch below `before_epoch` except the current (highest)
/// one: each key file is renamed out of sight, overwritten with zeros,
/// fsync'd and deleted, and the directory fsync'd. Returns the epochs
/// removed, ascending.
///
/// Retiring an epoch is final: pseudonyms made under it can no longer be
/// made again, so values in tables released under that epoch can no
/// longer be matched to new data or to a name. Keep an epoch as long as
/// such matching may still be needed. The zero overwrite defeats reading
/// the old bytes back through the filesystem; on copy-on-write
/// filesystems and flash storage old blocks may survive on the device,
/// so keep the directory on encrypted storage.
pub fn retire(dir: &Path, before_epoch: u32) -> Result<Vec<u32>, PseudonymKeyError> {
    let held = epochs(dir)?;
    // A retire interrupted by a crash leaves a renamed file that may still
    // hold its key: finish it first.
    finish_interrupted(dir)?;
    let current = held.last().copied();
    let mut removed = Vec::new();
    for &epoch in held
        .iter()
        .filter(|&&e| e < before_epoch && Some(e) != current)
    {
        let path = dir.join(file_name(epoch));
        let hidden = dir.join(format!(".{}{RETIRING_SUFFIX}", file_name(epoch)));
        // Out of the epoch scan first, in one atomic step: a crash while
        // erasing leaves a hidden file, never a half-zeroed key file that
        // would break listing.
        fs::rename(&path, &hidden).map_err(io(&path))?;
        ferry_common::durable::sync_dir(dir).map_err(io(dir))?;
        erase(&hidden)?;
        removed.push(epoch);
    }
    ferry_common::durable::sync_dir(dir).map_err(io(dir))?;
    Ok(removed)
}

/// Erases hidden `.pseudonym-N.key.retiring` files left by an interrupted
/// [`retire`].
fn finish_interrupted(dir: &Path) -> Result<(), PseudonymKeyError> {
    for entry in fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(inner) = name
            .strip_prefix('.')
            .and_then(|n| n.strip_suffix(RETIRING_SUFFIX))
        else {
            continue;
        };
        if matches!(epoch_of_name(dir, std::ffi::OsStr::new(inner)), Ok(Some(_))) {
            erase(&dir.join(name))?;
        }
    }
    Ok(())
}

/// Overwrites the key file at `path` with zeros, fsyncs it and deletes it.
fn erase(path: &Path) -> Result<(), PseudonymKeyError> {
    // O_NOFOLLOW: a symlink planted in the key's place must not make the
    // erase zero whatever it points to.
    let mut f = fs::OpenOptions::new()
        .write(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)
        .map_err(io(path))?;
    let meta = f.metadata().map_err(io(path))?;
    if !meta.is_file() {
        return Err(PseudonymKeyError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a regular file; remove it by hand after checking what it is",
            ),
        });
    }
    private_file::check_owner(path, &meta)?;
    let zeros = [0u8; 4096];
    let mut left = meta.len();
    while left > 0 {
        let n = usize::try_from(left.min(zeros.len() as u64)).unwrap_or(zeros.len());
        f.write_all(&zeros[..n]).map_err(io(path))?;
        left -= n as u64;
    }
    f.sync_all().map_err(io(path))?;
    drop(f);
    fs::remove_file(path).map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn secret_hex(dir: &Path, epoch: u32) -> String {
        let text = fs::read_to_string(dir.join(file_name(epoch))).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("key = "))
            .unwrap()
            .to_owned()
    }

    #[test]
    fn rotate_twice_gives_epochs_1_and_2_with_different_secrets() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("pseudonym");
        assert!(matches!(
            load_current(&dir),
            Err(PseudonymKeyError::NoKey { .. })
        ));
        assert_eq!(rotate(&dir).unwrap(), 1);
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        let k1 = load_current(&dir).unwrap();
        assert_eq!(k1.epoch(), 1);
        assert_eq!(rotate(&dir).unwrap(), 2);
        let k2 = load_current(&dir).unwrap();
        assert_eq!(k2.epoch(), 2);
        assert_ne!(k1.secret(), k2.secret());
        assert_eq!(hex::encode(k2.secret()), secret_hex(&dir, 2));
        let p = dir.join("pseudonym-2.key");
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
        let text = fs::read_to_string(&p).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "ferry-pseudonym-key v1");
        assert_eq!(lines[1], "epoch = 2");
        assert!(is_utc_timestamp(
            lines[2].strip_prefix("created = ").unwrap()
        ));
        assert_eq!(lines.len(), 4);
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn no_key_says_how_to_make_one() {
        let t = tempfile::tempdir().unwrap();
        let e = load_current(t.path()).unwrap_err();
        assert!(matches!(e, PseudonymKeyError::NoKey { .. }));
        assert!(
            e.to_string().contains(&format!(
                "ferryctl keys pseudonym rotate --dir {}",
                t.path().display()
            )),
            "{e}"
        );
    }

    #[test]
    fn a_group_readable_key_is_refused_with_the_fix() {
        let t = tempfile::tempdir().unwrap();
        rotate(t.path()).unwrap();
        let p = t.path().join("pseudonym-1.key");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
        let e = load_current(t.path()).unwrap_err();
        assert!(
            matches!(
                e,
                PseudonymKeyError::PrivateFile(PrivateFileError::LoosePermissions { .. })
            ),
            "{e}"
        );
        assert!(e.to_string().contains("chmod 600"), "{e}");
        assert!(list(t.path())
            .unwrap_err()
            .to_string()
            .contains("chmod 600"));
    }

    #[test]
    fn a_corrupted_file_names_the_file_and_line() {
        let t = tempfile::tempdir().unwrap();
        rotate(t.path()).unwrap();
        let p = t.path().join("pseudonym-1.key");
        let good = fs::read_to_string(&p).unwrap();
        let secret = secret_hex(t.path(), 1);
        let cases: Vec<(String, usize)> = vec![
            (good.replace("key = ", "key= "), 4),
            (good.replace(&secret, &format!("ZZ{}", &secret[2..])), 4),
            (good.replace("epoch = 1", "epoch = 2"), 2),
            (
                good.replace("ferry-pseudonym-key v1", "ferry-pseudonym-key v9"),
                1,
            ),
            (good.replace("created = ", "created = x"), 3),
            (format!("{good}extra\n"), 5),
            (good.lines().take(3).map(|l| format!("{l}\n")).collect(), 4),
        ];
        for (text, line) in cases {
            fs::write(&p, &text).unwrap();
            let e = load_current(t.path()).unwrap_err();
            match &e {
                PseudonymKeyError::Corrupt { path, line: l, .. } => {
                    assert_eq!(path, &p);
                    assert_eq!(*l, line, "{e}");
                }
                other => panic!("wrong error: {other}"),
            }
            let msg = e.to_string();
            assert!(
                msg.starts_with(&format!("{}:{line}:", p.display())),
                "{msg}"
            );
            assert!(!msg.contains(&secret[4..]), "{msg}");
        }
    }

    #[test]
    fn bad_names_are_errors_and_other_files_are_ignored() {
        let t = tempfile::tempdir().unwrap();
        rotate(t.path()).unwrap();
        fs::write(t.path().join("README"), "notes").unwrap();
        fs::write(t.path().join("pseudonym-2.key.bak"), "old").unwrap();
        assert_eq!(load_current(t.path()).unwrap().epoch(), 1);
        for bad in ["pseudonym-01.key", "pseudonym-x.key", "pseudonym-0.key"] {
            let p = t.path().join(bad);
            fs::write(&p, "x").unwrap();
            let e = load_current(t.path()).unwrap_err();
            assert!(matches!(e, PseudonymKeyError::BadName { .. }), "{bad}: {e}");
            fs::remove_file(&p).unwrap();
        }
    }

    #[test]
    fn an_oversized_file_is_refused() {
        let t = tempfile::tempdir().unwrap();
        rotate(t.path()).unwrap();
        let p = t.path().join("pseudonym-1.key");
        let mut text = fs::read_to_string(&p).unwrap();
        text.push_str(&"#".repeat(5000));
        fs::write(&p, text).unwrap();
        assert!(matches!(
            load_current(t.path()),
            Err(PseudonymKeyError::TooLarge { .. })
        ));
    }

    #[test]
    fn list_shows_no_secret() {
        let t = tempfile::tempdir().unwrap();
        rotate(t.path()).unwrap();
        rotate(t.path()).unwrap();
        let l = list(t.path()).unwrap();
        assert_eq!(
            l.iter().map(|i| (i.epoch, i.current)).collect::<Vec<_>>(),
            [(1, false), (2, true)]
        );
        let json = serde_json::to_string(&l).unwrap();
        for epoch in [1, 2] {
            assert!(!json.contains(&secret_hex(t.path(), epoch)), "{json}");
        }
        assert!(json.contains("\"created\""), "{json}");
    }

    #[test]
    fn retire_removes_old_epochs_and_never_the_current() {
        let t = tempfile::tempdir().unwrap();
        for _ in 0..4 {
            rotate(t.path()).unwrap();
        }
        assert_eq!(retire(t.path(), 3).unwrap(), [1, 2]);
        assert_eq!(
            list(t.path())
                .unwrap()
                .iter()
                .map(|i| i.epoch)
                .collect::<Vec<_>>(),
            [3, 4]
        );
        // Past the current epoch: everything but the current goes.
        assert_eq!(retire(t.path(), 100).unwrap(), [3]);
        assert_eq!(retire(t.path(), 100).unwrap(), Vec::<u32>::new());
        assert_eq!(load_current(t.path()).unwrap().epoch(), 4);
        let names: Vec<String> = fs::read_dir(t.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["pseudonym-4.key"]);
        // The next epoch follows the highest ever held, not a retired gap.
        assert_eq!(rotate(t.path()).unwrap(), 5);
    }

    #[test]
    fn an_interrupted_retire_is_finished() {
        let t = tempfile::tempdir().unwrap();
        rotate(t.path()).unwrap();
        rotate(t.path()).unwrap();
        let hidden = t.path().join(".pseudonym-1.key.retiring");
        fs::rename(t.path().join("pseudonym-1.key"), &hidden).unwrap();
        assert_eq!(list(t.path()).unwrap().len(), 1);
        assert_eq!(retire(t.path(), 1).unwrap(), Vec::<u32>::new());
        assert!(!hidden.exists());
    }

    #[test]
    fn debug_does_not_show_the_secret() {
        let t = tempfile::tempdir().unwrap();
        rotate(t.path()).unwrap();
        let k = load_current(t.path()).unwrap();
        let d = format!("{k:?} {k:#?}");
        assert!(!d.contains(&hex::encode(k.secret())), "{d}");
        assert!(!d.contains(&format!("{:?}", k.secret())), "{d}");
        assert!(d.contains("redacted"), "{d}");
    }
}
