//! The writer of an egress staging file: through the page cache for a
//! package's first [`DIRECT_AFTER_BYTES`], then with `O_DIRECT` from one
//! aligned buffer, and through the page cache again for the unaligned tail.
//!
//! Why: a large package written through the page cache costs a kernel copy
//! of every byte into freshly allocated cache pages. On the project's
//! machines that copy was the egress side's largest single cost at full
//! link speed (`copy_folio_from_iter_atomic`, a quarter of both cores'
//! samples during a 1 GiB send at 1 % loss, about 0.5 GB/s: new guest
//! pages are slow to touch). With `O_DIRECT` the device reads the bytes
//! straight from the writer's own buffer, which is reused for the whole
//! package, and the delivered file does not displace the page cache.
//! Durability is unchanged: [`crate::state::outbox::Staging::sync`] still
//! fsyncs the file (the device cache, the size and the blocks' metadata)
//! before the delivery is recorded.
//!
//! Small packages never use it: they are cheap to copy and a consumer may
//! read them from the cache at once. A filesystem that refuses `O_DIRECT`
//! (tmpfs on older kernels, some network filesystems) is written through
//! the page cache as before; so is the rest of a file whose direct write
//! failed in a way a buffered write may not (the write is retried buffered,
//! nothing is lost or written twice).

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsRawFd;

use nix::fcntl::{fcntl, FcntlArg, OFlag};

/// Bytes of the aligned write buffer (and of every direct write).
pub(crate) const BUFFER_BYTES: usize = 1 << 20;
/// The buffer's first size: it doubles up to [`BUFFER_BYTES`] as a file
/// grows. Why: a bundle's members are staged one file each, and a whole
/// zeroed megabyte per 1 KiB member was a quarter of the egress writer's
/// time (page faults and `memset`) at thousands of packages a second.
const FIRST_WINDOW: usize = 16 << 10;
/// Alignment of the buffer, the file offsets and the lengths of direct
/// writes: the largest logical block size of common devices.
const ALIGN: usize = 4096;
/// A file goes direct once this many bytes are in it (8 MiB).
pub(crate) const DIRECT_AFTER_BYTES: u64 = 8 << 20;

/// How the file is written now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Through the page cache, direct I/O not tried yet.
    Buffered,
    /// With `O_DIRECT`.
    Direct,
    /// Through the page cache for good: the filesystem refused `O_DIRECT`,
    /// a direct write failed, or the caller switched it off.
    BufferedOnly,
}

/// A buffered file writer that goes direct for the bulk of a large file.
#[derive(Debug)]
pub(crate) struct DirectWriter {
    file: File,
    /// `window + ALIGN` bytes (none before the first write); the window
    /// `[start, start + window)` is aligned to [`ALIGN`] in memory.
    buf: Vec<u8>,
    start: usize,
    /// Bytes of the window: 0, then [`FIRST_WINDOW`] doubling up to
    /// [`BUFFER_BYTES`] (always that in direct mode).
    window: usize,
    /// Bytes in the window.
    filled: usize,
    /// Bytes handed to the kernel.
    written: u64,
    /// Of those, bytes written with `O_DIRECT`.
    direct_bytes: u64,
    mode: Mode,
}

impl DirectWriter {
    /// A writer appending to `file` (opened for writing, empty).
    pub(crate) fn new(file: File) -> DirectWriter {
        DirectWriter {
            file,
            buf: Vec::new(),
            start: 0,
            window: 0,
            filled: 0,
            written: 0,
            direct_bytes: 0,
            mode: Mode::Buffered,
        }
    }

    /// Never goes direct (for tests of the buffered path).
    #[cfg(test)]
    pub(crate) fn buffered_only(mut self) -> DirectWriter {
        self.mode = Mode::BufferedOnly;
        self
    }

    /// The file.
    pub(crate) fn get_ref(&self) -> &File {
        &self.file
    }

    /// Bytes accepted but not yet handed to the kernel.
    pub(crate) fn pending(&self) -> usize {
        self.filled
    }

    /// Bytes written with `O_DIRECT` so far.
    pub(crate) fn direct_bytes(&self) -> u64 {
        self.direct_bytes
    }

    /// True while the file is written with `O_DIRECT` (its bytes need no
    /// write-back hint).
    pub(crate) fn is_direct(&self) -> bool {
        self.mode == Mode::Direct
    }

    /// Makes the window `bytes` long, keeping what is in it.
    fn grow(&mut self, bytes: usize) {
        let mut buf = vec![0u8; bytes + ALIGN];
        // The window starts at the first aligned address in the buffer (a
        // Vec's alignment is only its element's).
        let start = (ALIGN - buf.as_ptr() as usize % ALIGN) % ALIGN;
        buf[start..start + self.filled]
            .copy_from_slice(&self.buf[self.start..self.start + self.filled]);
        self.buf = buf;
        self.start = start;
        self.window = bytes;
    }

    /// Appends `data`; a full window goes to the kernel.
    pub(crate) fn write_all(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            if self.filled == self.window && self.window < BUFFER_BYTES {
                self.grow((self.window * 2).clamp(FIRST_WINDOW, BUFFER_BYTES));
            }
            let room = self.window - self.filled;
            let n = room.min(data.len());
            let at = self.start + self.filled;
            self.buf[at..at + n].copy_from_slice(&data[..n]);
            self.filled += n;
            data = &data[n..];
            if self.filled == BUFFER_BYTES {
                self.flush_window()?;
            }
        }
        Ok(())
    }

    /// Hands everything accepted to the kernel; an unaligned tail goes
    /// through the page cache.
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        if self.filled == 0 {
            return Ok(());
        }
        if self.mode == Mode::Direct && !self.filled.is_multiple_of(ALIGN) {
            self.leave_direct()?;
        }
        self.flush_window()
    }

    /// Writes the window at the end of the file.
    fn flush_window(&mut self) -> io::Result<()> {
        if self.mode == Mode::Buffered
            && self.written >= DIRECT_AFTER_BYTES
            && self.written.is_multiple_of(ALIGN as u64)
            && self.filled.is_multiple_of(ALIGN)
        {
            self.mode = match set_direct(&self.file, true) {
                Ok(()) => {
                    // Direct writes are whole windows: the largest.
                    if self.window < BUFFER_BYTES {
                        self.grow(BUFFER_BYTES);
                    }
                    Mode::Direct
                }
                Err(e) => {
                    tracing::debug!(error = %e, "O_DIRECT refused: the staging file stays buffered");
                    Mode::BufferedOnly
                }
            };
        }
        let mut done = 0;
        while done < self.filled {
            let window = &self.buf[self.start + done..self.start + self.filled];
            match self.file.write(window) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => {
                    done += n;
                    self.written += n as u64;
                    if self.mode == Mode::Direct {
                        self.direct_bytes += n as u64;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // A direct write the device or filesystem would not take
                // (EINVAL on alignment it wants larger, or a short write
                // that left the rest unaligned): the rest goes buffered.
                Err(e) if self.mode == Mode::Direct && e.raw_os_error() == Some(libc::EINVAL) => {
                    tracing::debug!(error = %e, "a direct write was refused: the rest of the staging file goes buffered");
                    self.leave_direct()?;
                }
                Err(e) => return Err(e),
            }
        }
        self.filled = 0;
        Ok(())
    }

    fn leave_direct(&mut self) -> io::Result<()> {
        set_direct(&self.file, false)?;
        self.mode = Mode::BufferedOnly;
        Ok(())
    }
}

/// Sets or clears `O_DIRECT` on `file` (Linux lets `F_SETFL` change it).
fn set_direct(file: &File, on: bool) -> io::Result<()> {
    let flags = fcntl(file.as_raw_fd(), FcntlArg::F_GETFL).map_err(io::Error::from)?;
    let mut flags = OFlag::from_bits_truncate(flags);
    flags.set(OFlag::O_DIRECT, on);
    fcntl(file.as_raw_fd(), FcntlArg::F_SETFL(flags)).map_err(io::Error::from)?;
    Ok(())
}

/// Whether the filesystem of `dir` takes `O_DIRECT` writes (for tests that
/// must know which path a file took).
#[cfg(test)]
pub(crate) fn directory_takes_direct_io(dir: &std::path::Path) -> bool {
    let path = dir.join(".direct-probe");
    let probe = (|| -> io::Result<()> {
        let f = File::create(&path)?;
        set_direct(&f, true)?;
        let mut w = DirectWriter::new(f);
        w.grow(ALIGN);
        let block = [7u8; ALIGN];
        w.buf[w.start..w.start + ALIGN].copy_from_slice(&block);
        w.filled = ALIGN;
        w.mode = Mode::Direct;
        w.flush_window()?;
        if w.direct_bytes == ALIGN as u64 {
            Ok(())
        } else {
            Err(io::Error::other("fell back"))
        }
    })();
    let _ = std::fs::remove_file(&path);
    probe.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(len: usize, salt: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[1] ^ salt)
            .collect()
    }

    /// Writes `total` bytes in pieces of `piece` and reads the file back.
    fn round_trip(w: DirectWriter, path: &std::path::Path, total: usize, piece: usize) -> u64 {
        let mut w = w;
        let data = pattern(total, piece as u8);
        for c in data.chunks(piece) {
            w.write_all(c).unwrap();
        }
        w.flush().unwrap();
        w.get_ref().sync_all().unwrap();
        let got = std::fs::read(path).unwrap();
        assert_eq!(got.len(), total, "length, piece {piece}");
        assert!(got == data, "content, total {total}, piece {piece}");
        w.direct_bytes()
    }

    #[test]
    fn large_files_go_direct_after_the_threshold_and_stay_whole_at_any_tail() {
        let dir = tempfile::tempdir().unwrap();
        let direct = directory_takes_direct_io(dir.path());
        let after = DIRECT_AFTER_BYTES as usize;
        for (total, piece) in [
            (after + 3 * BUFFER_BYTES, 65_536),      // aligned end
            (after + 3 * BUFFER_BYTES + 1, 100_003), // one byte of tail
            (after + 2 * BUFFER_BYTES + 4095, 7),    // tail one short of a block
            (after + BUFFER_BYTES + 4096, 1 << 20),  // tail of a whole block
            (after - 1, 65_536),                     // never reaches the threshold
        ] {
            let path = dir.path().join(format!("f-{total}-{piece}"));
            let w = DirectWriter::new(File::create(&path).unwrap());
            let went_direct = round_trip(w, &path, total, piece);
            if direct && total >= after + BUFFER_BYTES {
                // Every whole window past the threshold, and a whole-block
                // tail too.
                assert!(
                    went_direct >= (total - after - BUFFER_BYTES) as u64,
                    "{went_direct} of {total}"
                );
            } else {
                assert_eq!(went_direct, 0, "{total}");
            }
        }
        if !direct {
            eprintln!("this filesystem refuses O_DIRECT: only the buffered path ran");
        }
    }

    #[test]
    fn a_small_file_gets_a_small_buffer_and_a_growing_one_keeps_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("small");
        let mut w = DirectWriter::new(File::create(&path).unwrap());
        assert!(w.buf.is_empty(), "nothing allocated before a write");
        w.write_all(&pattern(1024, 1)).unwrap();
        assert_eq!(w.window, FIRST_WINDOW);
        assert!(w.buf.len() <= FIRST_WINDOW + ALIGN, "{}", w.buf.len());
        w.flush().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), pattern(1024, 1));
        // Across every doubling, in odd pieces, nothing moved or lost.
        for (total, piece) in [(3 * FIRST_WINDOW + 5, 4099), (BUFFER_BYTES + 1, 333)] {
            let path = dir.path().join(format!("g-{total}"));
            let w = DirectWriter::new(File::create(&path).unwrap());
            assert_eq!(round_trip(w, &path, total, piece), 0);
        }
    }

    #[test]
    fn a_writer_kept_buffered_writes_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let w = DirectWriter::new(File::create(&path).unwrap()).buffered_only();
        let total = DIRECT_AFTER_BYTES as usize + 2 * BUFFER_BYTES + 17;
        assert_eq!(round_trip(w, &path, total, 65_536), 0);
    }

    #[test]
    fn a_refused_direct_write_goes_on_buffered_without_losing_or_repeating_bytes() {
        // A window of a length O_DIRECT refuses (not a multiple of the
        // block), forced through the direct path: EINVAL, then buffered.
        let dir = tempfile::tempdir().unwrap();
        if !directory_takes_direct_io(dir.path()) {
            eprintln!("this filesystem refuses O_DIRECT: nothing to refuse");
            return;
        }
        let path = dir.path().join("f");
        let f = File::create(&path).unwrap();
        set_direct(&f, true).unwrap();
        let mut w = DirectWriter::new(f);
        w.mode = Mode::Direct;
        let data = pattern(ALIGN + 100, 3);
        w.write_all(&data).unwrap();
        w.flush_window().unwrap();
        assert_eq!(w.mode, Mode::BufferedOnly);
        w.write_all(b"and more").unwrap();
        w.flush().unwrap();
        let got = std::fs::read(&path).unwrap();
        assert_eq!(&got[..data.len()], &data[..]);
        assert_eq!(&got[data.len()..], b"and more");
    }
}
