//! Closing file descriptors inherited from whoever started the daemon (a
//! shell, a careless supervisor), so that no stray descriptor to a file,
//! socket or terminal outlives the privilege drop and Landlock.

use crate::HardeningError;
use std::os::fd::RawFd;

/// Closes every descriptor above stderr except `keep`; returns how many
/// were closed.
///
/// Call it first thing, before this process opens anything it keeps:
/// closing a descriptor that a live Rust object owns would make that
/// object act on whatever file later reuses the number.
pub fn close_inherited_fds(keep: &[RawFd]) -> Result<usize, HardeningError> {
    let err = |e: std::io::Error| HardeningError::Fds(format!("/proc/self/fd: {e}"));
    // Collect first: the directory stream is itself a descriptor.
    let mut open: Vec<RawFd> = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").map_err(err)? {
        let entry = entry.map_err(err)?;
        if let Some(fd) = entry.file_name().to_str().and_then(|s| s.parse().ok()) {
            open.push(fd);
        }
    }
    let mut closed = 0;
    for fd in open {
        if fd <= 2 || keep.contains(&fd) {
            continue;
        }
        // EBADF is the read_dir descriptor, already closed.
        if nix::unistd::close(fd).is_ok() {
            closed += 1;
        }
    }
    Ok(closed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{child, Role};
    use std::os::fd::{AsRawFd, IntoRawFd};

    #[test]
    fn inherited_descriptors_are_closed_and_kept_ones_stay() {
        match child("fds::tests::inherited_descriptors_are_closed_and_kept_ones_stay") {
            Role::Parent(out) => out.assert_passed(),
            Role::Child => {
                let stray = std::fs::File::open("/proc/self/status")
                    .unwrap()
                    .into_raw_fd();
                let keep = std::fs::File::open("/proc/self/status").unwrap();
                let n = close_inherited_fds(&[keep.as_raw_fd()]).unwrap();
                assert!(n >= 1, "{n}");
                let gone = nix::fcntl::fcntl(stray, nix::fcntl::FcntlArg::F_GETFD);
                assert_eq!(gone, Err(nix::errno::Errno::EBADF));
                assert!(nix::fcntl::fcntl(keep.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFD).is_ok());
                // stdio survives.
                assert!(nix::fcntl::fcntl(2, nix::fcntl::FcntlArg::F_GETFD).is_ok());
            }
        }
    }
}
