//! The one way ferry writes a file that must survive a crash: a key, a
//! certificate, a signature, a cursor, an index. Before this module each
//! crate had its own temp-and-rename writer, and they had drifted (one did
//! not sync the directory, one wrote the file in place).
//!
//! The guarantee, for every caller: after a crash or power loss at any
//! point, `path` holds either its old content (or is absent, if it was) or
//! the complete new content, never a mix, and never a file with other
//! permission bits than `mode`. Steps: create a temp file in the same
//! directory (so the rename cannot cross a filesystem) with `mode`, set the
//! mode exactly (the umask may have narrowed it) before any byte is
//! written, write, fsync the file, rename it over `path` (or hard-link it,
//! when `path` must not exist, so the no-overwrite check and the
//! publication are one atomic step), then fsync the directory so the new
//! name itself is on disk when the call returns.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// What [`write`] does when `path` already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replace {
    /// Replace it in one atomic step (indexes, signatures, cursors).
    Atomically,
    /// Refuse with [`WriteError::Exists`] (new keys and certificates: an
    /// existing one is somebody's, and overwriting it loses it).
    Never,
}

/// Why a durable write failed. The old content of the target is intact in
/// every case.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// [`Replace::Never`] and the target exists.
    #[error("{path} already exists; refusing to overwrite it (move it away first, or choose another name)")]
    Exists {
        /// The target.
        path: PathBuf,
    },
    /// A step failed.
    #[error("cannot {step} {path}: {source}; check that the directory exists, that this user may write to it and that the disk has room")]
    Io {
        /// What was being done (`create`, `write`, `rename into place`, …).
        step: &'static str,
        /// The file or directory the step was on.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
}

impl WriteError {
    /// The path and an `io::Error` of the same kind, for a crate whose own
    /// error has an `Io { path, source }` variant.
    pub fn into_parts(self) -> (PathBuf, io::Error) {
        match self {
            WriteError::Exists { path } => {
                let e = io::Error::new(io::ErrorKind::AlreadyExists, "already exists");
                (path, e)
            }
            WriteError::Io { path, source, .. } => (path, source),
        }
    }
}

/// Unique temp names within this process (with the pid, across processes):
/// two writers of the same target never share a temp file.
static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `data` to `path` with permission bits `mode`, durably (see the
/// module comment for the crash guarantee).
pub fn write(path: &Path, data: &[u8], mode: u32, replace: Replace) -> Result<(), WriteError> {
    write_with(path, mode, replace, |f| f.write_all(data))
}

/// Like [`write`], but `fill` writes the content (for content produced in
/// pieces, such as a compressed archive). If `fill` fails, the temp file is
/// removed and `path` is untouched.
pub fn write_with(
    path: &Path,
    mode: u32,
    replace: Replace,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> Result<(), WriteError> {
    let io = |step: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| WriteError::Io { step, path, source }
    };
    let dir = parent_dir(path);
    if replace == Replace::Never && fs::symlink_metadata(path).is_ok() {
        return Err(WriteError::Exists {
            path: path.to_path_buf(),
        });
    }
    let name = path
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy());
    let tmp = dir.join(format!(
        ".{name}.tmp.{}.{}",
        std::process::id(),
        TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map_err(io("create", &tmp))?;
        // Exactly `mode`, before the first byte: the umask may have
        // narrowed it (a public certificate must still be readable).
        f.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(io("set the mode of", &tmp))?;
        fill(&mut f).map_err(io("write", &tmp))?;
        f.sync_all().map_err(io("sync", &tmp))?;
        drop(f);
        match replace {
            Replace::Atomically => fs::rename(&tmp, path).map_err(io("rename into place", path)),
            Replace::Never => match fs::hard_link(&tmp, path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(WriteError::Exists {
                    path: path.to_path_buf(),
                }),
                Err(e) => Err(io("link into place", path)(e)),
            },
        }
    })();
    // After a rename the temp name is gone; after a hard link or a failure
    // it must go (a leftover temp copy of a key is still a key).
    let _ = fs::remove_file(&tmp);
    result?;
    sync_dir(dir).map_err(io("sync the directory", dir))
}

/// Fsyncs a directory, so that names created, renamed or removed in it are
/// on disk (a file's own fsync does not cover its name).
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The directory holding `path` (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn mode_of(p: &Path) -> u32 {
        fs::metadata(p).unwrap().mode() & 0o7777
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn writes_with_the_exact_mode() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("ca.crt");
        write(&p, b"cert", 0o644, Replace::Never).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"cert");
        assert_eq!(mode_of(&p), 0o644);
        let k = d.path().join("ca.key");
        write(&k, b"key", 0o600, Replace::Atomically).unwrap();
        assert_eq!(mode_of(&k), 0o600);
        assert_eq!(names(d.path()), ["ca.crt", "ca.key"], "no temp file left");
    }

    #[test]
    fn the_mode_is_set_before_any_data_is_written() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("secret");
        write_with(&p, 0o600, Replace::Atomically, |f| {
            let m = f.metadata()?;
            assert_eq!(m.len(), 0, "no data yet");
            assert_eq!(m.mode() & 0o7777, 0o600, "mode already final");
            f.write_all(b"s")
        })
        .unwrap();
        assert_eq!(mode_of(&p), 0o600);
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_intact() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("index.toml");
        write(&p, b"old complete content", 0o600, Replace::Atomically).unwrap();
        let err = write_with(&p, 0o600, Replace::Atomically, |f| {
            f.write_all(b"new half")?;
            Err(io::Error::other("disk full"))
        })
        .unwrap_err();
        assert!(matches!(err, WriteError::Io { step: "write", .. }), "{err}");
        assert_eq!(fs::read(&p).unwrap(), b"old complete content");
        assert_eq!(names(d.path()), ["index.toml"], "the temp file is removed");
    }

    #[test]
    fn replacing_is_atomic_and_never_refuses() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("cursor");
        write(&p, b"1", 0o600, Replace::Atomically).unwrap();
        write(&p, b"2", 0o600, Replace::Atomically).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"2");
    }

    #[test]
    fn never_replace_refuses_an_existing_file_and_keeps_it() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("host.key");
        write(&p, b"first", 0o600, Replace::Never).unwrap();
        let err = write(&p, b"second", 0o600, Replace::Never).unwrap_err();
        assert!(matches!(err, WriteError::Exists { .. }), "{err}");
        assert!(err.to_string().contains("refusing to overwrite"));
        assert_eq!(fs::read(&p).unwrap(), b"first");
        assert_eq!(names(d.path()), ["host.key"]);
        // A dangling symlink is somebody's name too.
        let l = d.path().join("link");
        std::os::unix::fs::symlink(d.path().join("nowhere"), &l).unwrap();
        assert!(matches!(
            write(&l, b"x", 0o600, Replace::Never),
            Err(WriteError::Exists { .. })
        ));
    }

    #[test]
    fn a_missing_directory_is_an_error_naming_the_step() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("no/such/dir/file");
        let err = write(&p, b"x", 0o600, Replace::Atomically).unwrap_err();
        assert!(err.to_string().starts_with("cannot create"), "{err}");
        let (path, e) = err.into_parts();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(path.starts_with(d.path().join("no/such/dir")));
    }

    #[test]
    fn a_bare_name_lives_in_the_current_directory() {
        assert_eq!(parent_dir(Path::new("x")), Path::new("."));
        assert_eq!(parent_dir(Path::new("/a/x")), Path::new("/a"));
    }
}
