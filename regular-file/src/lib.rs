//! The one way ferry opens a file an operator names (a policy and its
//! includes, a signature or key, a dirty-word list, a `policy test` cases
//! file, a `ferryctl inspect` input, `ferryd.toml`, a certificate, CRL or
//! private key): only a regular file is read, and
//! anything else (a FIFO, a device, a directory, a socket) is refused at
//! once instead of blocking the reader forever or reading without end.
//!
//! The file is opened with `O_NONBLOCK` so that opening a FIFO with no
//! writer returns at once, then its type is checked with `fstat` on the
//! descriptor that will be read, so the check and the read see the same
//! file even if the path is swapped in between.
//!
//! A leaf crate so that every crate that reads an operator's file (policy,
//! certs, keys, audit, the daemon) uses this one implementation.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// What a path names, when it is not a regular file.
fn kind_of(t: std::fs::FileType) -> &'static str {
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else {
        "not a regular file"
    }
}

fn not_regular(path: &Path, kind: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "{} is {kind}, not a regular file: ferry reads only regular files; give the path of the file itself",
            path.display()
        ),
    )
}

/// Opens `path` for reading if (after following symlinks) it is a regular
/// file; any other kind of file is refused at once with an error that
/// names what it is.
pub fn open_regular(path: &Path) -> io::Result<File> {
    // O_NONBLOCK: opening a FIFO for reading must not wait for a writer.
    // It changes nothing when reading a regular file. O_NOCTTY: a terminal
    // named by mistake must not become the process's controlling terminal.
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
    {
        Ok(f) => f,
        Err(e) => {
            // A socket cannot be opened (ENXIO): say what it is instead.
            if let Ok(m) = std::fs::metadata(path) {
                if !m.is_file() {
                    return Err(not_regular(path, kind_of(m.file_type())));
                }
            }
            return Err(e);
        }
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(not_regular(path, kind_of(meta.file_type())));
    }
    Ok(file)
}

/// Reads the regular file at `path` whole, refusing it when it is larger
/// than `max_bytes` (with an error that says so) or not a regular file.
pub fn read_regular(path: &Path, max_bytes: u64) -> io::Result<Vec<u8>> {
    let mut bytes = read_regular_prefix(path, max_bytes.saturating_add(1))?;
    if bytes.len() as u64 > max_bytes {
        bytes.clear();
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} is larger than {max_bytes} bytes; check that it is the file meant",
                path.display()
            ),
        ));
    }
    Ok(bytes)
}

/// Reads at most `limit` bytes of the regular file at `path` (the caller
/// tells a file that is too large by the length).
pub fn read_regular_prefix(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    open_regular(path)?.take(limit).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Reads the regular file at `path` whole as UTF-8 text, bounded like
/// [`read_regular`]. Text that is not UTF-8 is an `InvalidData` error, and
/// its bytes are wiped before they are freed (the file may be a key).
pub fn read_regular_string(path: &Path, max_bytes: u64) -> io::Result<String> {
    let bytes = read_regular(path, max_bytes)?;
    String::from_utf8(bytes).map_err(|e| {
        let mut b = e.into_bytes();
        b.iter_mut().for_each(|x| *x = 0);
        std::hint::black_box(&b);
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} is not UTF-8 text; check that it is the file meant",
                path.display()
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_is_refused_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let e = open_regular(dir.path()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("is a directory"), "{e}");
    }

    #[test]
    fn a_device_is_refused_and_named() {
        let e = read_regular(Path::new("/dev/zero"), 10).unwrap_err();
        assert!(e.to_string().contains("character device"), "{e}");
    }

    #[test]
    fn a_regular_file_is_read_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"12345").unwrap();
        assert_eq!(read_regular(&p, 5).unwrap(), b"12345");
        let e = read_regular(&p, 4).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert_eq!(read_regular_prefix(&p, 2).unwrap(), b"12");
    }
}
