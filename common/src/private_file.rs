//! The check every secret file passes before ferry reads it: no permission
//! bits for group or others, and owned by the user ferry runs as (another
//! owner could swap it). Keys, certificate keys and the audit seal key all
//! need it; it lives here once so the rule and its advice cannot differ.

use std::fs::Metadata;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Why a secret file is refused. Each message ends with the command that
/// fixes it.
#[derive(Debug, thiserror::Error)]
pub enum PrivateFileError {
    /// Group or other users have some access.
    #[error(
        "{path}: permissions {mode:04o} let other users read a secret; run `chmod 600 {path}`"
    )]
    LoosePermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Another user owns the file.
    #[error("{path}: owned by uid {owner}, but ferry runs as uid {me}; run `chown {me} {path}`")]
    WrongOwner {
        /// The file.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// The effective uid of this process.
        me: u32,
    },
    /// The file could not be examined.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

/// The effective uid of this process, as the kernel has it (`geteuid(2)`,
/// which cannot fail): the owner of every file this process creates, and
/// the only uid a secret may belong to. Never read from a file: an earlier
/// version parsed `/proc/self/status` and took uid 0 when that failed, so
/// an ordinary user would have accepted root-owned key files.
pub fn effective_uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// Checks the file at `path` (following a symlink, as opening it would):
/// private mode and owned by this user.
pub fn check(path: &Path) -> Result<(), PrivateFileError> {
    let meta = std::fs::metadata(path).map_err(|source| PrivateFileError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    check_mode(path, &meta)?;
    check_owner(path, &meta)
}

/// Refuses `meta` (of the file at `path`, ideally from the open file, so
/// that what is checked is what is read) if group or others have any bit.
pub fn check_mode(path: &Path, meta: &Metadata) -> Result<(), PrivateFileError> {
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(PrivateFileError::LoosePermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// Refuses `meta` if another user owns the file.
pub fn check_owner(path: &Path, meta: &Metadata) -> Result<(), PrivateFileError> {
    let me = effective_uid();
    if meta.uid() != me {
        return Err(PrivateFileError::WrongOwner {
            path: path.to_path_buf(),
            owner: meta.uid(),
            me,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn a_private_file_passes() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("k");
        fs::write(&p, b"k").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        check(&p).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o400)).unwrap();
        check(&p).unwrap();
    }

    #[test]
    fn group_or_other_bits_are_refused_with_the_fix() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("k");
        fs::write(&p, b"k").unwrap();
        for mode in [0o640, 0o604, 0o610, 0o601, 0o644] {
            fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
            let err = check(&p).unwrap_err();
            assert!(
                matches!(err, PrivateFileError::LoosePermissions { mode: m, .. } if m == mode),
                "{mode:o}: {err}"
            );
            assert!(err.to_string().contains("chmod 600"), "{err}");
        }
    }

    #[test]
    fn the_owner_must_be_this_user() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("k");
        fs::write(&p, b"k").unwrap();
        let meta = fs::metadata(&p).unwrap();
        check_owner(&p, &meta).unwrap();
        if effective_uid() == 0 {
            // Root can give the file away and see the refusal.
            nix::unistd::chown(&p, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
            let err = check_owner(&p, &fs::metadata(&p).unwrap()).unwrap_err();
            assert!(err.to_string().contains("chown 0"), "{err}");
        }
    }

    #[test]
    fn a_missing_file_names_the_path() {
        let err = check(Path::new("/nonexistent/ferry.key")).unwrap_err();
        assert!(matches!(err, PrivateFileError::Io { .. }));
        assert!(err.to_string().starts_with("/nonexistent/ferry.key"));
    }
}
