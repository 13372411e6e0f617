//! Starting the kernel's write-back of a file range without waiting for
//! it (`sync_file_range(SYNC_FILE_RANGE_WRITE)`), so a large file's final
//! `fsync` finds most of its pages already on their way to the disk.
//!
//! On a host with plenty of memory the kernel leaves a whole package dirty
//! in the page cache until someone asks (its background threshold is a
//! tenth of the memory), and the one `fsync` that makes a package durable
//! then writes all of it while the package waits. Started early, the
//! write-back overlaps the digest (ingress) or the rest of the reception
//! (egress).
//!
//! This is a hint, never the durability itself: the caller's `fsync` still
//! decides. No standard wrapper exists for the call, hence its place here.
// The workspace denies unsafe code; this module is one of hardening's
// exceptions: `sync_file_range` has no safe wrapper. One block, with its
// SAFETY line.
#![allow(unsafe_code)]

use std::os::fd::{AsFd, AsRawFd};

/// Starts write-back of `len` bytes of `file` from `offset` (`len` 0: to
/// the end of the file) and returns at once. An error (a descriptor that
/// is not a regular file, a kernel without the call) leaves the file as it
/// was: the caller's `fsync` is unaffected.
pub fn start_writeback(file: &impl AsFd, offset: u64, len: u64) -> std::io::Result<()> {
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
    };
    // SAFETY: the descriptor is borrowed from a live file for the length
    // of the call; the call takes integers only and touches no memory of
    // this process.
    let rc = unsafe {
        libc::sync_file_range(
            file.as_fd().as_raw_fd(),
            offset,
            len,
            libc::SYNC_FILE_RANGE_WRITE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::io::Write;

    #[test]
    fn writeback_starts_on_a_file_and_is_refused_on_a_pipe() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("f");
        let mut f = File::create(&path).expect("create");
        f.write_all(&[7u8; 1 << 20]).expect("write");
        start_writeback(&f, 0, 0).expect("whole file");
        start_writeback(&f, 4096, 8192).expect("a range");
        // The data is untouched by the hint.
        f.sync_all().expect("fsync");
        assert_eq!(std::fs::read(&path).expect("read"), vec![7u8; 1 << 20]);

        let (reader, _writer) = std::io::pipe().expect("pipe");
        let pipe = File::from(std::os::fd::OwnedFd::from(reader));
        let e = start_writeback(&pipe, 0, 0).expect_err("a pipe has no pages");
        assert_eq!(e.raw_os_error(), Some(libc::ESPIPE));
        let e = start_writeback(&f, u64::MAX, 1).expect_err("offset out of range");
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
    }
}
