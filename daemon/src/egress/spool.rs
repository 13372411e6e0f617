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
//! The receive thread never touches the file: a write to it can wait on
//! the file system's journal for longer than the socket buffer lasts at
//! full rate (a busy disk shared with other work). A third thread, the
//! spill thread, moves the newest batches from memory to the file while
//! memory runs short, and the receive thread only waits for it when
//! memory is full, the disk having been slower than the wire for as long
//! as the memory lasts. The oldest batches stay in memory, where the
//! processing takes them next: the queue is always memory, then the
//! file's contiguous run, then memory.
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
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Above this size the spool file is truncated once it is drained, so a
/// past backlog does not keep its disk space.
const TRUNCATE_ABOVE_BYTES: u64 = 64 << 20;

/// Bytes of a datagram's length prefix in the spool file.
const LEN_BYTES: usize = 2;

/// How long a waiting thread sleeps before it looks at the spool's state
/// again (a closed spool, a spill thread that ended).
const RECHECK: Duration = Duration::from_millis(100);

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
    /// Times the receive thread found memory full and waited for the
    /// spill thread (the socket buffer held what arrived meanwhile).
    pub(crate) receive_waits: u64,
}

enum Item {
    Mem {
        batch: DatagramBatch,
        arrived: Millis,
    },
    /// Being written by the spill thread; becomes `Disk` (at most one).
    Spilling,
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
    /// Spare batches at most (queued, free, and the spill thread's).
    mem_batches: usize,
    /// Batches created so far.
    created: usize,
    /// `Disk` and `Spilling` items in the queue.
    disk_items: usize,
    /// The processing thread is reading the file (outside the lock).
    reading: bool,
    write_at: u64,
    stats: SpoolStats,
    /// The last file error, reported once by the processing thread.
    file_error: Option<String>,
    /// No more spilling or waiting: the daemon stops.
    closed: bool,
}

impl State {
    /// Batches that can still be handed to the receive thread.
    fn available(&self) -> usize {
        self.free.len() + (self.mem_batches - self.created)
    }

    /// The memory batch the spill thread writes next: the oldest one after
    /// the file's run (the queue stays memory, file, memory), or, before
    /// anything is on disk, the first after the head the processing takes
    /// next. The newest batch is left to the receive thread, which may
    /// still add to it, unless memory is full.
    fn spill_candidate(&self, keep_head: usize) -> Option<usize> {
        let start = match self
            .queue
            .iter()
            .rposition(|i| !matches!(i, Item::Mem { .. }))
        {
            Some(last_disk) => last_disk + 1,
            None => keep_head.min(self.queue.len()),
        };
        let newest = self.queue.len().checked_sub(1)?;
        if start > newest || (start == newest && self.available() > 0) {
            return None;
        }
        Some(start)
    }
}

/// The queue the three threads share.
pub(crate) struct Spool {
    state: Mutex<State>,
    /// Signalled when the processing thread may have work.
    ready: Condvar,
    /// Signalled when a batch went back to the free list.
    room: Condvar,
    /// Signalled when the spill thread may have work.
    spill: Condvar,
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
    /// `batch_capacity` datagrams of at most `max_len` bytes. With a file,
    /// [`Spool::spill_thread`] must run.
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
        // At least four spare batches: one being filled, one being
        // spilled, and two queued so the threads rarely wait on each other.
        let mem_batches = (mem_bytes / per_batch).max(4);
        Ok(Spool {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                free: Vec::new(),
                mem_batches,
                created: 0,
                disk_items: 0,
                reading: false,
                write_at: 0,
                stats: SpoolStats::default(),
                file_error: None,
                closed: false,
            }),
            ready: Condvar::new(),
            room: Condvar::new(),
            spill: Condvar::new(),
            file,
            max_file_bytes,
            batch_capacity,
            max_len,
        })
    }

    /// An empty batch of this spool's shape (each thread starts with one).
    pub(crate) fn new_batch(&self) -> DatagramBatch {
        DatagramBatch::new(self.batch_capacity, self.max_len)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic in another thread ends the daemon anyway; the state
        // itself stays consistent (every change is made under the lock).
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wait<'a>(
        &self,
        cv: &Condvar,
        s: MutexGuard<'a, State>,
        d: Duration,
    ) -> MutexGuard<'a, State> {
        cv.wait_timeout(s, d).unwrap_or_else(|p| p.into_inner()).0
    }

    /// Memory batches the spill thread leaves at the head of the queue
    /// (the processing takes them next), and the number of spare batches
    /// below which it starts spilling: a quarter of memory each.
    fn quarter(&self, s: &State) -> usize {
        (s.mem_batches / 4).max(1)
    }

    /// The receive thread's side: queues the datagrams of `batch` (which
    /// comes back empty, possibly another batch). Never does file I/O; it
    /// waits only when memory is full and the spill thread is behind.
    pub(crate) fn push(&self, batch: &mut DatagramBatch, arrived: Millis) {
        if batch.is_empty() {
            return;
        }
        let bytes = batch.total_bytes() as u64;
        let mut s = self.lock();
        // A paced sender gives the socket thread a few datagrams per call:
        // they join the newest queued batch when they fit, so memory holds
        // full batches and the processing gets them.
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
        let mut waited = false;
        loop {
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
                let spill = s.available() < self.quarter(&s);
                drop(s);
                self.ready.notify_one();
                if spill {
                    self.spill.notify_one();
                }
                return;
            }
            if self.file.is_none() || s.closed {
                s.stats.dropped_datagrams += batch.len() as u64;
                if s.file_error.is_none() {
                    s.file_error = Some(if self.file.is_none() {
                        "receive spool full in memory (receive_spool_bytes = 0): datagrams dropped"
                            .to_string()
                    } else {
                        "receive spool closed: datagrams dropped".to_string()
                    });
                }
                batch.clear();
                return;
            }
            // Memory is full and the disk has been slower than the wire
            // for as long as memory lasted: wait for the spill thread (the
            // socket buffer takes what arrives meanwhile).
            if !waited {
                waited = true;
                s.stats.receive_waits += 1;
            }
            self.spill.notify_one();
            s = self.wait(&self.room, s, RECHECK);
        }
    }

    /// Starts the spill thread (none for a memory-only spool). It ends
    /// when [`Spool::close`] is called.
    pub(crate) fn spill_thread(
        self: &Arc<Self>,
    ) -> std::io::Result<Option<std::thread::JoinHandle<()>>> {
        if self.file.is_none() {
            return Ok(None);
        }
        let spool = self.clone();
        std::thread::Builder::new()
            .name("ferry-spill".into())
            .spawn(move || spool.spill_loop())
            .map(Some)
    }

    /// Ends the spill thread and any wait in [`Spool::push`].
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.spill.notify_all();
        self.room.notify_all();
        self.ready.notify_all();
    }

    fn spill_loop(&self) {
        let Some(file) = &self.file else {
            return;
        };
        let mut buf = Vec::new();
        let mut s = self.lock();
        while !s.closed {
            // Drained: the file is reused from the start, and a large one
            // gives its space back. Only this thread writes the file, and
            // nothing is on it to read.
            if s.disk_items == 0 && !s.reading && s.write_at > 0 {
                let big = s.write_at > TRUNCATE_ABOVE_BYTES;
                s.write_at = 0;
                if big {
                    drop(s);
                    let _ = file.set_len(0);
                    s = self.lock();
                }
                continue;
            }
            let candidate = if s.available() < self.quarter(&s) {
                s.spill_candidate(self.quarter(&s))
            } else {
                None
            };
            let Some(at) = candidate else {
                s = self.wait(&self.spill, s, RECHECK);
                continue;
            };
            let Some(Item::Mem { batch, arrived }) = s
                .queue
                .get_mut(at)
                .map(|i| std::mem::replace(i, Item::Spilling))
            else {
                continue;
            };
            s.disk_items += 1;
            let bytes = batch.total_bytes() as u64;
            let count = batch.len();
            let len = batch.total_bytes() + LEN_BYTES * count;
            let offset = s.write_at;
            let fits = offset + len as u64 <= self.max_file_bytes;
            if fits {
                s.write_at += len as u64;
            }
            drop(s);
            let written = if fits {
                buf.clear();
                for d in batch.iter() {
                    // A datagram is at most `max_len` (< 64 KiB, the UDP limit).
                    buf.extend_from_slice(&(d.len() as u16).to_le_bytes());
                    buf.extend_from_slice(d);
                }
                file.write_all_at(&buf, offset)
                    .map_err(|e| format!("receive spool file: {e}: datagrams dropped"))
            } else {
                Err(format!(
                    "receive spool full ({offset} bytes on disk, receive_spool_bytes = {}): datagrams dropped; the processing is slower than the sender: lower the ingress rate_bytes_per_s to what this side sustains",
                    self.max_file_bytes
                ))
            };
            s = self.lock();
            // Only the processing pops the queue, and never past the
            // spilling item: it is still the only one, where it was put
            // or nearer the front.
            let at = s.queue.iter().position(|i| matches!(i, Item::Spilling));
            match (at, written) {
                (Some(at), Ok(())) => {
                    s.queue[at] = Item::Disk {
                        offset,
                        len,
                        bytes,
                        count,
                        arrived,
                    };
                    s.stats.spilled_bytes += bytes;
                }
                (at, Err(why)) => {
                    if let Some(at) = at {
                        s.queue.remove(at);
                        s.disk_items -= 1;
                    }
                    s.stats.dropped_datagrams += count as u64;
                    shrink(&mut s.stats, bytes);
                    if s.file_error.is_none() {
                        s.file_error = Some(why);
                    }
                }
                (None, Ok(())) => {}
            }
            let mut batch = batch;
            batch.clear();
            s.free.push(batch);
            self.room.notify_one();
            self.ready.notify_one();
        }
    }

    /// The processing thread's side: fills `batch` with the oldest queued
    /// datagrams, waiting up to `timeout` when none is queued; `None` when
    /// nothing came. While anything is queued it never returns `None`
    /// (the caller would take the wall clock for the backlog's time).
    pub(crate) fn take(&self, batch: &mut DatagramBatch, timeout: Duration) -> Option<Taken> {
        let deadline = Instant::now() + timeout;
        let mut s = self.lock();
        loop {
            match s.queue.front() {
                Some(Item::Mem { .. } | Item::Disk { .. }) => break,
                // The oldest batch is being written: it is next, one
                // write away.
                Some(Item::Spilling) if !s.closed => s = self.wait(&self.ready, s, RECHECK),
                _ => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() || s.closed {
                        return None;
                    }
                    s = self.wait(&self.ready, s, left);
                }
            }
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
                self.room.notify_one();
                arrived
            }
            Item::Spilling => return None,
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
                // Read outside the lock (the other threads go on); the
                // spill thread does not reuse the file while it reads.
                s.reading = true;
                drop(s);
                let read = self.read_back(offset, len, batch);
                s = self.lock();
                s.reading = false;
                if let Err(e) = read {
                    if s.file_error.is_none() {
                        s.file_error = Some(format!("receive spool file: {e}: datagrams lost"));
                    }
                }
                self.spill.notify_one();
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

    /// A spool with its spill thread, closed and joined on drop.
    struct Running {
        spool: Arc<Spool>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl Running {
        fn new(spool: Spool) -> Running {
            let spool = Arc::new(spool);
            let thread = spool.spill_thread().expect("spill thread");
            Running { spool, thread }
        }

        /// Everything queued, waiting for a batch being written.
        fn take_all(&self, rx: &mut DatagramBatch) -> (Vec<u32>, Vec<u64>, Vec<usize>) {
            let (mut got, mut times, mut sizes) = (Vec::new(), Vec::new(), Vec::new());
            while let Some(t) = self.spool.take(rx, Duration::from_millis(500)) {
                got.extend(ids(rx));
                times.push(t.arrived.0);
                sizes.push(rx.len());
            }
            (got, times, sizes)
        }
    }

    impl Drop for Running {
        fn drop(&mut self) {
            self.spool.close();
            if let Some(t) = self.thread.take() {
                t.join().expect("the spill thread ends");
            }
        }
    }

    #[test]
    fn batches_come_out_in_order_through_memory_and_disk() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Room for four batches in memory: the rest goes to disk.
        let run =
            Running::new(Spool::new(dir.path(), 4 * 8 * 200, 1 << 20, 8, 200).expect("spool"));
        let spool = &run.spool;
        let mut rx = spool.new_batch();
        for i in 0..20u32 {
            let mut b = batch_of(spool, i * 8, 8);
            spool.push(&mut b, Millis(u64::from(i)));
            assert!(b.is_empty(), "the pushed batch comes back empty");
        }
        let (st, err) = spool.stats();
        assert!(st.spilled_bytes > 0, "some batches went to disk");
        assert_eq!(err, None);
        assert_eq!(st.dropped_datagrams, 0);
        let (got, times, _) = run.take_all(&mut rx);
        assert_eq!(
            got,
            (0..160).collect::<Vec<_>>(),
            "every datagram, in order"
        );
        assert_eq!(times, (0..20).collect::<Vec<_>>(), "arrival times kept");
        assert_eq!(spool.stats().0.backlog_bytes, 0);
        // The file is reused from the start once drained.
        let until = Instant::now() + Duration::from_secs(10);
        while spool.lock().write_at != 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(spool.lock().write_at, 0);
        // The spool file is unlinked: nothing in the directory.
        assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0);
    }

    #[test]
    fn the_receive_side_never_waits_for_the_disk_while_memory_has_room() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Sixteen batches of memory and a file, but no spill thread yet:
        // a push that wrote the file, or waited for it, would show.
        let spool = Arc::new(Spool::new(dir.path(), 16 * 8 * 200, 1 << 20, 8, 200).expect("spool"));
        for i in 0..16u32 {
            let mut b = batch_of(&spool, i * 8, 8);
            spool.push(&mut b, Millis(u64::from(i)));
        }
        let (st, _) = spool.stats();
        assert_eq!((st.receive_waits, st.spilled_bytes), (0, 0), "{st:?}");
        // Memory is full now: the next pushes wait for the spill thread
        // (started late, as a slow disk would be), and nothing is lost.
        let pusher = {
            let spool = spool.clone();
            std::thread::spawn(move || {
                for i in 16..40u32 {
                    let mut b = batch_of(&spool, i * 8, 8);
                    spool.push(&mut b, Millis(u64::from(i)));
                }
            })
        };
        std::thread::sleep(Duration::from_millis(300));
        assert!(!pusher.is_finished(), "the receive side waits for room");
        let thread = spool.spill_thread().expect("spill thread");
        let run = Running { spool, thread };
        pusher.join().expect("pusher");
        let (st, err) = run.spool.stats();
        assert!(st.receive_waits > 0 && st.spilled_bytes > 0, "{st:?}");
        assert_eq!((st.dropped_datagrams, err), (0, None));
        let mut rx = run.spool.new_batch();
        let (got, times, _) = run.take_all(&mut rx);
        assert_eq!(
            got,
            (0..320).collect::<Vec<_>>(),
            "every datagram, in order"
        );
        assert_eq!(times, (0..40).collect::<Vec<_>>());
    }

    #[test]
    fn a_few_datagrams_at_a_time_are_packed_into_full_batches() {
        let dir = tempfile::tempdir().expect("tempdir");
        let run = Running::new(Spool::new(dir.path(), 1 << 20, 1 << 20, 8, 200).expect("spool"));
        let mut rx = run.spool.new_batch();
        for i in 0..64u32 {
            let mut b = batch_of(&run.spool, i, 1);
            run.spool.push(&mut b, Millis(u64::from(i)));
        }
        let (got, _, sizes) = run.take_all(&mut rx);
        assert_eq!(got, (0..64).collect::<Vec<_>>());
        assert!(sizes.iter().all(|n| *n == 8), "full batches: {sizes:?}");
    }

    #[test]
    fn a_full_spool_drops_counts_and_says_why() {
        let dir = tempfile::tempdir().expect("tempdir");
        let run = Running::new(Spool::new(dir.path(), 0, 3000, 8, 200).expect("spool"));
        let mut rx = run.spool.new_batch();
        for i in 0..10u32 {
            let mut b = batch_of(&run.spool, i * 8, 8);
            run.spool.push(&mut b, Millis(0));
        }
        // What was kept comes out whole and in order.
        let (got, _, _) = run.take_all(&mut rx);
        let (st, err) = run.spool.stats();
        assert!(st.dropped_datagrams > 0);
        let err = err.expect("the reason is reported");
        assert!(err.contains("receive_spool_bytes"), "{err}");
        assert_eq!(got.len() as u64 + st.dropped_datagrams, 80);
        assert!(got.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(run.spool.stats().0.backlog_bytes, 0);
        // Reported once.
        assert_eq!(run.spool.stats().1, None);
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
