//! The receive spool: the egress side's buffer between the socket and the
//! protocol work, in memory first and on disk when that is full.
//!
//! There is no back channel, so the egress cannot slow a sender down. When
//! the protocol work (authenticate, decode, decrypt, digest, stage) falls
//! behind the wire for a while (a busy CPU, a slow disk, a sender paced
//! too fast), datagrams used to wait in the socket buffer, a few MiB, and
//! then were dropped by the kernel, which the FEC cannot always repair:
//! a package was lost because of speed. Here a thread that does nothing
//! but `recvmmsg` hands whole batches to the processing thread through a
//! queue: batches in memory up to a bound, then appended to a file (an
//! unlinked file in the state directory, gone on a crash) and read back in
//! order. Only a full spool drops datagrams, counted and alarmed.
//!
//! Each batch keeps its arrival time, and the processing thread runs the
//! protocol receiver on those times while it catches up, so a backlog is
//! not mistaken for an idle sender or a link that went down.
//!
//! What is spooled is unauthenticated: it is bounded by the configured
//! size, and authenticated before any other work when it is processed.

use crate::link::udp::DatagramBatch;
use ferry_protocol::Millis;
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// Above this size the spool file is truncated once it is drained, so a
/// past backlog does not keep its disk space.
const TRUNCATE_ABOVE_BYTES: u64 = 64 << 20;

/// Bytes of a datagram's length prefix in the spool file.
const LEN_BYTES: usize = 2;

/// Figures an operator sees (status, metrics).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SpoolStats {
    /// Datagram bytes waiting now (memory and disk).
    pub(crate) backlog_bytes: u64,
    /// The largest backlog since start.
    pub(crate) peak_backlog_bytes: u64,
    /// Datagram bytes that went through the disk since start.
    pub(crate) spilled_bytes: u64,
    /// Datagrams dropped because the spool was full (or its file failed).
    pub(crate) dropped_datagrams: u64,
}

enum Item {
    Mem {
        batch: DatagramBatch,
        arrived: Millis,
    },
    Disk {
        offset: u64,
        len: usize,
        bytes: u64,
        count: usize,
        arrived: Millis,
    },
}

struct State {
    queue: VecDeque<Item>,
    /// Empty batches ready for the receive thread to swap in.
    free: Vec<DatagramBatch>,
    /// Batches in memory at most (queued plus free plus the two threads').
    mem_batches: usize,
    /// Batches created so far.
    created: usize,
    disk_items: usize,
    write_at: u64,
    stats: SpoolStats,
    /// The last file error, reported once by the processing thread.
    file_error: Option<String>,
}

/// The queue both threads share.
pub(crate) struct Spool {
    state: Mutex<State>,
    ready: Condvar,
    file: Option<File>,
    max_file_bytes: u64,
    batch_capacity: usize,
    max_len: usize,
}

/// A batch handed to the processing thread.
pub(crate) struct Taken {
    /// When the batch arrived.
    pub(crate) arrived: Millis,
    /// True when more batches wait behind it.
    pub(crate) more: bool,
}

impl Spool {
    /// A spool of `mem_bytes` in memory and at most `max_file_bytes` in an
    /// unlinked file created in `dir` (0: memory only), for batches of
    /// `batch_capacity` datagrams of at most `max_len` bytes.
    pub(crate) fn new(
        dir: &Path,
        mem_bytes: usize,
        max_file_bytes: u64,
        batch_capacity: usize,
        max_len: usize,
    ) -> std::io::Result<Spool> {
        let file = if max_file_bytes > 0 {
            Some(unlinked_file(
                dir,
                &format!("receive-spool.{}", std::process::id()),
            )?)
        } else {
            None
        };
        let per_batch = batch_capacity.max(1) * max_len.max(1);
        // Two batches are always out (one in each thread); at least two
        // more keep the threads from waiting on each other.
        let mem_batches = (mem_bytes / per_batch).max(4);
        Ok(Spool {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                free: Vec::new(),
                mem_batches,
                created: 0,
                disk_items: 0,
                write_at: 0,
                stats: SpoolStats::default(),
                file_error: None,
            }),
            ready: Condvar::new(),
            file,
            max_file_bytes,
            batch_capacity,
            max_len,
        })
    }

    /// An empty batch of this spool's shape (each thread starts with one).
    pub(crate) fn new_batch(&self) -> DatagramBatch {
        self.lock().created += 1;
        DatagramBatch::new(self.batch_capacity, self.max_len)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic in the other thread ends the daemon anyway; the state
        // itself (a queue and counters) stays usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The receive thread's side: queues the datagrams of `batch` (which
    /// comes back empty, possibly another batch).
    pub(crate) fn push(&self, batch: &mut DatagramBatch, arrived: Millis) {
        if batch.is_empty() {
            return;
        }
        let bytes = batch.total_bytes() as u64;
        let mut s = self.lock();
        // Memory while nothing waits on disk (order is kept: once a batch
        // went to disk, the next ones follow it there until it drains).
        if s.disk_items == 0 {
            // A paced sender gives the socket thread a few datagrams per
            // call: they join the newest queued batch when they fit, so
            // memory holds full batches and the processing gets them.
            if let Some(Item::Mem { batch: tail, .. }) = s.queue.back_mut() {
                if tail.capacity() - tail.len() >= batch.len() {
                    for d in batch.iter() {
                        tail.push(d);
                    }
                    batch.clear();
                    grow(&mut s.stats, bytes);
                    drop(s);
                    self.ready.notify_one();
                    return;
                }
            }
            let spare = match s.free.pop() {
                Some(b) => Some(b),
                None if s.created < s.mem_batches => {
                    s.created += 1;
                    Some(DatagramBatch::new(self.batch_capacity, self.max_len))
                }
                None => None,
            };
            if let Some(spare) = spare {
                let full = std::mem::replace(batch, spare);
                s.queue.push_back(Item::Mem {
                    batch: full,
                    arrived,
                });
                grow(&mut s.stats, bytes);
                drop(s);
                self.ready.notify_one();
                return;
            }
        }
        let count = batch.len() as u64;
        match self.spill(&mut s, batch) {
            Ok((offset, len)) => {
                s.disk_items += 1;
                s.queue.push_back(Item::Disk {
                    offset,
                    len,
                    bytes,
                    count: count as usize,
                    arrived,
                });
                s.stats.spilled_bytes += bytes;
                grow(&mut s.stats, bytes);
                drop(s);
                self.ready.notify_one();
            }
            Err(why) => {
                s.stats.dropped_datagrams += count;
                if s.file_error.is_none() {
                    s.file_error = Some(why);
                }
            }
        }
        batch.clear();
    }

    /// Appends `batch` to the file; `Err` says why it was dropped.
    fn spill(&self, s: &mut State, batch: &DatagramBatch) -> Result<(u64, usize), String> {
        let Some(file) = &self.file else {
            return Err(
                "receive spool full in memory (receive_spool_bytes = 0): datagrams dropped"
                    .to_string(),
            );
        };
        let len = batch.total_bytes() + LEN_BYTES * batch.len();
        if s.write_at + len as u64 > self.max_file_bytes {
            return Err(format!(
                "receive spool full ({} bytes on disk, receive_spool_bytes = {}): datagrams dropped; the processing is slower than the sender: lower the ingress rate_bytes_per_s to what this side sustains",
                s.write_at, self.max_file_bytes
            ));
        }
        let mut buf = Vec::with_capacity(len);
        for d in batch.iter() {
            // A datagram is at most `max_len` (< 64 KiB, the UDP limit).
            buf.extend_from_slice(&(d.len() as u16).to_le_bytes());
            buf.extend_from_slice(d);
        }
        file.write_all_at(&buf, s.write_at)
            .map_err(|e| format!("receive spool file: {e}: datagrams dropped"))?;
        let offset = s.write_at;
        s.write_at += len as u64;
        Ok((offset, len))
    }

    /// The processing thread's side: fills `batch` with the oldest queued
    /// datagrams, waiting up to `timeout`; `None` when nothing came.
    pub(crate) fn take(&self, batch: &mut DatagramBatch, timeout: Duration) -> Option<Taken> {
        let mut s = self.lock();
        if s.queue.is_empty() {
            s = self
                .ready
                .wait_timeout_while(s, timeout, |s| s.queue.is_empty())
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        let item = s.queue.pop_front()?;
        let arrived = match item {
            Item::Mem {
                batch: full,
                arrived,
            } => {
                shrink(&mut s.stats, full.total_bytes() as u64);
                let mut done = std::mem::replace(batch, full);
                done.clear();
                s.free.push(done);
                arrived
            }
            Item::Disk {
                offset,
                mut len,
                mut bytes,
                count,
                arrived,
            } => {
                // Consecutive items are contiguous in the file: read as
                // many as fill one batch, in one read.
                let mut items = 1;
                let mut total = count;
                while let Some(&Item::Disk {
                    len: l,
                    bytes: b,
                    count: c,
                    ..
                }) = s.queue.front()
                {
                    if total + c > batch.capacity() {
                        break;
                    }
                    (len, bytes, total, items) = (len + l, bytes + b, total + c, items + 1);
                    s.queue.pop_front();
                }
                shrink(&mut s.stats, bytes);
                s.disk_items -= items;
                // Read under the lock: the receive thread may otherwise
                // reuse the file from offset 0 once the last item left.
                if let Err(e) = self.read_back(offset, len, batch) {
                    if s.file_error.is_none() {
                        s.file_error = Some(format!("receive spool file: {e}: datagrams lost"));
                    }
                }
                if s.disk_items == 0 {
                    if s.write_at > TRUNCATE_ABOVE_BYTES {
                        if let Some(f) = &self.file {
                            let _ = f.set_len(0);
                        }
                    }
                    s.write_at = 0;
                }
                arrived
            }
        };
        Some(Taken {
            arrived,
            more: !s.queue.is_empty(),
        })
    }

    fn read_back(&self, offset: u64, len: usize, batch: &mut DatagramBatch) -> std::io::Result<()> {
        batch.clear();
        let Some(file) = &self.file else {
            return Ok(());
        };
        let mut buf = vec![0u8; len];
        file.read_exact_at(&mut buf, offset)?;
        let mut rest = &buf[..];
        while rest.len() >= LEN_BYTES {
            let n = usize::from(u16::from_le_bytes([rest[0], rest[1]]));
            rest = &rest[LEN_BYTES..];
            if n > rest.len() {
                break;
            }
            batch.push(&rest[..n]);
            rest = &rest[n..];
        }
        Ok(())
    }

    /// The figures, and a file error not yet reported.
    pub(crate) fn stats(&self) -> (SpoolStats, Option<String>) {
        let mut s = self.lock();
        (s.stats, s.file_error.take())
    }
}

/// A new file in `dir`, readable and writable by this process only,
/// unlinked at once: nothing is left behind by a crash, and nothing else
/// can open it.
pub(crate) fn unlinked_file(dir: &Path, name: &str) -> std::io::Result<File> {
    let path = dir.join(name);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)?;
    std::fs::remove_file(&path)?;
    Ok(f)
}

fn grow(stats: &mut SpoolStats, bytes: u64) {
    stats.backlog_bytes += bytes;
    stats.peak_backlog_bytes = stats.peak_backlog_bytes.max(stats.backlog_bytes);
}

fn shrink(stats: &mut SpoolStats, bytes: u64) {
    stats.backlog_bytes = stats.backlog_bytes.saturating_sub(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch_of(spool: &Spool, first: u32, n: u32) -> DatagramBatch {
        let mut b = spool.new_batch();
        for i in first..first + n {
            let d: Vec<u8> = i
                .to_le_bytes()
                .iter()
                .cycle()
                .take(100 + (i % 50) as usize)
                .copied()
                .collect();
            assert!(b.push(&d));
        }
        b
    }

    fn ids(b: &DatagramBatch) -> Vec<u32> {
        b.iter()
            .map(|d| u32::from_le_bytes([d[0], d[1], d[2], d[3]]))
            .collect()
    }

    #[test]
    fn batches_come_out_in_order_through_memory_and_disk() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Room for four batches in memory: the rest goes to disk.
        let spool = Spool::new(dir.path(), 4 * 8 * 200, 1 << 20, 8, 200).expect("spool");
        let mut rx = spool.new_batch();
        for i in 0..20u32 {
            let mut b = batch_of(&spool, i * 8, 8);
            spool.push(&mut b, Millis(u64::from(i)));
            assert!(b.is_empty(), "the pushed batch comes back empty");
        }
        let (st, err) = spool.stats();
        assert!(st.spilled_bytes > 0, "some batches went to disk");
        assert_eq!(err, None);
        assert_eq!(st.dropped_datagrams, 0);
        let mut got = Vec::new();
        let mut times = Vec::new();
        while let Some(t) = spool.take(&mut rx, Duration::ZERO) {
            got.extend(ids(&rx));
            times.push(t.arrived.0);
        }
        assert_eq!(
            got,
            (0..160).collect::<Vec<_>>(),
            "every datagram, in order"
        );
        assert_eq!(times, (0..20).collect::<Vec<_>>(), "arrival times kept");
        assert_eq!(spool.stats().0.backlog_bytes, 0);
        // The file is reused from the start once drained.
        assert_eq!(spool.lock().write_at, 0);
        // The spool file is unlinked: nothing in the directory.
        assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0);
    }

    #[test]
    fn a_few_datagrams_at_a_time_are_packed_into_full_batches() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Two batches of memory: the rest goes to disk, one by one.
        let spool = Spool::new(dir.path(), 0, 1 << 20, 8, 200).expect("spool");
        let mut rx = spool.new_batch();
        for i in 0..64u32 {
            let mut b = batch_of(&spool, i, 1);
            spool.push(&mut b, Millis(u64::from(i)));
        }
        let mut sizes = Vec::new();
        let mut got = Vec::new();
        while spool.take(&mut rx, Duration::ZERO).is_some() {
            sizes.push(rx.len());
            got.extend(ids(&rx));
        }
        assert_eq!(got, (0..64).collect::<Vec<_>>());
        assert!(sizes.iter().all(|n| *n == 8), "full batches: {sizes:?}");
    }

    #[test]
    fn a_full_spool_drops_counts_and_says_why() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Spool::new(dir.path(), 0, 3000, 8, 200).expect("spool");
        let mut rx = spool.new_batch();
        for i in 0..10u32 {
            let mut b = batch_of(&spool, i * 8, 8);
            spool.push(&mut b, Millis(0));
        }
        let (st, err) = spool.stats();
        assert!(st.dropped_datagrams > 0);
        let err = err.expect("the reason is reported");
        assert!(err.contains("receive_spool_bytes"), "{err}");
        // What was kept comes out whole and in order.
        let mut got = Vec::new();
        while spool.take(&mut rx, Duration::ZERO).is_some() {
            got.extend(ids(&rx));
        }
        assert_eq!(got.len() as u64 + st.dropped_datagrams, 80);
        assert!(got.windows(2).all(|w| w[0] < w[1]));
        // Reported once.
        assert_eq!(spool.stats().1, None);
    }

    #[test]
    fn memory_only_spool_drops_when_memory_is_full() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Spool::new(dir.path(), 0, 0, 8, 200).expect("spool");
        for i in 0..10u32 {
            let mut b = batch_of(&spool, i * 8, 8);
            spool.push(&mut b, Millis(0));
        }
        let (st, err) = spool.stats();
        assert!(st.dropped_datagrams > 0);
        assert!(err.expect("reason").contains("memory"));
    }

    #[test]
    fn take_waits_for_the_other_thread() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool =
            std::sync::Arc::new(Spool::new(dir.path(), 1 << 20, 1 << 20, 8, 200).expect("spool"));
        let tx = spool.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            let mut b = batch_of(&tx, 7, 1);
            tx.push(&mut b, Millis(9));
        });
        let mut rx = spool.new_batch();
        let got = spool
            .take(&mut rx, Duration::from_secs(10))
            .expect("a batch");
        assert_eq!((got.arrived, ids(&rx)), (Millis(9), vec![7]));
        t.join().expect("join");
        assert!(spool.take(&mut rx, Duration::from_millis(1)).is_none());
    }
}
