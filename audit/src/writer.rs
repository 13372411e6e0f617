//! The writer: appends records to the active segment with group commit,
//! seals at intervals, rotates, archives and applies retention.
//!
//! Group commit: a caller encodes its frame under a short lock, then either
//! becomes the "leader" that writes and fdatasyncs everything pending, or
//! waits for the leader whose sync covers its frame. Many threads share one
//! fdatasync; `append` returns only once its record is on stable storage.

use crate::error::AuditError;
use crate::keys::{Checkpoint, CheckpointSigner, SealKey, SealKeyFile, VerifyKey};
use crate::record::{Actor, AuditRecord, EventKind, Outcome};
use crate::segment::{
    self, encode_frame, list_segments, parse_frame, sync_dir, Chain, FrameError, FrameKind,
    SealPayload, SegmentHeader, HEADER_LEN, MAX_PAYLOAD_BYTES,
};
use crate::time_fmt::now_ms;
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A record's sequence number.
pub type Seq = u64;

/// Names of the files in a log directory.
pub mod files {
    /// Log id, key id and checkpoint public key (no secrets).
    pub const META: &str = "log.meta";
    /// The evolving seal key (0600).
    pub const SEAL_KEY: &str = "seal.key";
    /// The checkpoint signing key (0600).
    pub const CHECKPOINT_KEY: &str = "checkpoint.key";
    /// Signed checkpoints, one JSON line each.
    pub const CHECKPOINTS: &str = "checkpoints.jsonl";
    /// The redb index (a cache, rebuilt from the segments).
    pub const INDEX: &str = "index.redb";
    /// Writer lock.
    pub const LOCK: &str = "writer.lock";
}

/// Called with each checkpoint once it is on disk, so that the daemon can
/// send it off the host (syslog, journald).
pub type CheckpointSink = Arc<dyn Fn(&Checkpoint) + Send + Sync>;

/// Writer settings.
#[derive(Clone)]
pub struct AuditOptions {
    /// A segment is rotated once it would grow past this.
    pub max_segment_bytes: u64,
    /// Seal after this many records...
    pub seal_every_records: u64,
    /// ...or this long after the first unsealed record, whichever comes first.
    pub seal_interval: Duration,
    /// Whole segments older than this are deleted (default 180 days).
    pub retention_days: u32,
    /// Compress rotated segments (gzip).
    pub compress_archived: bool,
    /// Below this much free space, [`Health::accepting_packages`] turns false:
    /// ferryd must stop accepting packages (fail-secure).
    pub min_free_bytes_accept: u64,
    /// Below this much free space, appends are refused: the floor is lower
    /// than the accept floor so auditing outlives package intake.
    pub min_free_bytes_audit: u64,
    /// Receives each checkpoint.
    pub checkpoint_sink: Option<CheckpointSink>,
    /// Run the background thread (timed seals, retention, free-space checks).
    pub background: bool,
}

impl Default for AuditOptions {
    fn default() -> Self {
        AuditOptions {
            max_segment_bytes: 64 * 1024 * 1024,
            seal_every_records: 100_000,
            seal_interval: Duration::from_secs(60),
            retention_days: 180,
            compress_archived: true,
            min_free_bytes_accept: 1024 * 1024 * 1024,
            min_free_bytes_audit: 64 * 1024 * 1024,
            checkpoint_sink: None,
            background: true,
        }
    }
}

impl std::fmt::Debug for AuditOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditOptions")
            .field("max_segment_bytes", &self.max_segment_bytes)
            .field("seal_every_records", &self.seal_every_records)
            .field("seal_interval", &self.seal_interval)
            .field("retention_days", &self.retention_days)
            .field("compress_archived", &self.compress_archived)
            .field("min_free_bytes_accept", &self.min_free_bytes_accept)
            .field("min_free_bytes_audit", &self.min_free_bytes_audit)
            .finish_non_exhaustive()
    }
}

/// The public description of a log (`log.meta`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogMeta {
    /// Format name.
    pub format: String,
    /// Random id of the log (hex).
    pub log_id: String,
    /// Id of the verify key (hex).
    pub key_id: String,
    /// Checkpoint public key (hex).
    pub checkpoint_public_key: String,
    /// Creation time.
    pub created_ms: i64,
}

/// A v1 log: keyless SHA-256 chain (still opened, written and verified).
const META_FORMAT_V1: &str = "ferry-audit-log-v1";
/// A v2 log: the chain is keyed with the writer key (see [`Chain`]).
const META_FORMAT: &str = "ferry-audit-log-v2";

impl LogMeta {
    /// Reads `DIR/log.meta`.
    pub fn read(dir: &Path) -> Result<LogMeta, AuditError> {
        let p = dir.join(files::META);
        let text = match fs::read_to_string(&p) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(AuditError::NotInitialized(dir.to_path_buf()))
            }
            Err(e) => return Err(AuditError::io("reading", &p, e)),
        };
        let m: LogMeta = serde_json::from_str(&text)
            .map_err(|e| AuditError::corrupt(&p, format!("not a log.meta file: {e}")))?;
        if m.format != META_FORMAT && m.format != META_FORMAT_V1 {
            return Err(AuditError::corrupt(&p, "unknown log format"));
        }
        Ok(m)
    }

    /// A v2 log, whose chain is keyed with the writer key.
    pub fn keyed(&self) -> bool {
        self.format == META_FORMAT
    }

    pub(crate) fn ids(&self, dir: &Path) -> Result<([u8; 16], [u8; 16]), AuditError> {
        let p = dir.join(files::META);
        let dec = |s: &str| -> Option<[u8; 16]> { hex::decode(s).ok()?.try_into().ok() };
        Ok((
            dec(&self.log_id)
                .ok_or_else(|| AuditError::corrupt(&p, "log_id is not 16 hex bytes"))?,
            dec(&self.key_id)
                .ok_or_else(|| AuditError::corrupt(&p, "key_id is not 16 hex bytes"))?,
        ))
    }
}

/// Creates a new log in `dir` (created if missing, mode 0700) and writes the
/// auditor's verify key to `verify_key_out` (mode 0600; take it off the
/// host). Only the evolving seal key and the checkpoint signing key stay.
pub fn init(dir: &Path, verify_key_out: &Path) -> Result<VerifyKey, AuditError> {
    if dir.join(files::META).exists() {
        return Err(AuditError::AlreadyInitialized(dir.to_path_buf()));
    }
    fs::create_dir_all(dir).map_err(|e| AuditError::io("creating", dir, e))?;
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| AuditError::io("setting mode of", dir, e))?;
    }
    let log_id: [u8; 16] = crate::keys::random_bytes()?;
    let mut epoch0: [u8; 32] = crate::keys::random_bytes()?;
    let (_signer, public) = CheckpointSigner::generate(&dir.join(files::CHECKPOINT_KEY))?;
    let vk = VerifyKey::new(log_id, epoch0, public.clone(), true);
    let seal = SealKey::from_epoch0(epoch0);
    zeroize::Zeroize::zeroize(&mut epoch0);
    // The auditor's copy first: if it cannot be written, no log exists
    // that nobody could verify.
    vk.write(verify_key_out)?;
    SealKeyFile::create(
        &dir.join(files::SEAL_KEY),
        &seal,
        &log_id,
        Some(&vk.writer_key()),
    )?;
    drop(seal);
    let created_ms = now_ms();
    let header = SegmentHeader {
        segment_no: 0,
        first_seq: 1,
        created_ms,
        log_id,
        key_id: vk.key_id(),
        prev_head: [0u8; 32],
        keyed: true,
    };
    let seg_path = dir.join(segment::segment_name(0));
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o640)
        .open(&seg_path)
        .map_err(|e| AuditError::io("creating segment", &seg_path, e))?;
    f.write_all(&header.encode())
        .and_then(|_| f.sync_all())
        .map_err(|e| AuditError::io("writing segment", &seg_path, e))?;
    let meta = LogMeta {
        format: META_FORMAT.into(),
        log_id: hex::encode(log_id),
        key_id: hex::encode(vk.key_id()),
        checkpoint_public_key: hex::encode(&public),
        created_ms,
    };
    let meta_text =
        serde_json::to_string_pretty(&meta).map_err(|e| AuditError::Encode(e.to_string()))?;
    let meta_path = dir.join(files::META);
    ferry_common::durable::write(
        &meta_path,
        meta_text.as_bytes(),
        0o640,
        ferry_common::durable::Replace::Atomically,
    )
    .map_err(AuditError::write)?;
    Ok(vk)
}

/// What [`AuditLog::health`] reports. ferryd checks `accepting_packages`
/// before taking a package, so that a filling disk stops intake while the
/// log can still record why (fail-secure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// Bytes available to the log's user on its filesystem.
    pub free_bytes: u64,
    /// The accept floor ([`AuditOptions::min_free_bytes_accept`]).
    pub accept_floor_bytes: u64,
    /// The audit floor ([`AuditOptions::min_free_bytes_audit`]).
    pub audit_floor_bytes: u64,
    /// False when free space is below the accept floor or the writer failed.
    pub accepting_packages: bool,
    /// False when appends are refused (below the audit floor, or failed).
    pub auditing: bool,
    /// An earlier write failed; the writer refuses everything.
    pub failed: bool,
    /// Highest sequence number on stable storage.
    pub durable_seq: u64,
    /// Records not yet covered by a seal.
    pub unsealed_records: u64,
    /// Current seal epoch.
    pub epoch: u64,
}

enum AfterSync {
    StoreKey(SealKey),
    Checkpoint(Checkpoint),
    Archive(u64),
}

struct Chunk {
    seg_no: u64,
    new_header: Option<[u8; HEADER_LEN]>,
    data: Vec<u8>,
    after: Vec<AfterSync>,
}

struct State {
    next_seq: u64,
    head: [u8; 32],
    seg_no: u64,
    seg_bytes: u64,
    pending: Vec<Chunk>,
    frames_encoded: u64,
    frames_durable: u64,
    durable_seq: u64,
    syncing: bool,
    failed: bool,
    closed: bool,
    seal_key: SealKey,
    unsealed: u64,
    /// When the oldest unsealed record was written (its frame time, so
    /// that the seal deadline survives a restart rather than starting over).
    first_unsealed_ms: Option<i64>,
    first_unsealed_at: Option<Instant>,
}

struct Io {
    file: File,
    seg_no: u64,
    key_file: SealKeyFile,
    checkpoints: File,
}

struct Shared {
    dir: PathBuf,
    log_id: [u8; 16],
    key_id: [u8; 16],
    /// Plain (v1 log) or keyed with the writer key (v2).
    chain: Chain,
    opts: AuditOptions,
    signer: CheckpointSigner,
    state: Mutex<State>,
    cond: Condvar,
    io: Mutex<Io>,
    free_bytes: AtomicU64,
    stop: AtomicBool,
    archivers: Mutex<Vec<JoinHandle<()>>>,
}

/// The audit log, open for appending. Thread-safe: share it in an `Arc`.
pub struct AuditLog {
    shared: Arc<Shared>,
    ticker: Mutex<Option<JoinHandle<()>>>,
    _lock: nix::fcntl::Flock<File>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock must not make the log unusable for
    // the other threads: the state is still consistent (the `failed` flag
    // covers I/O that may have half happened).
    m.lock().unwrap_or_else(|p| p.into_inner())
}

// The casts are no-ops on 64-bit Linux but not on 32-bit targets.
#[allow(clippy::unnecessary_cast)]
fn free_bytes(dir: &Path) -> u64 {
    match nix::sys::statvfs::statvfs(dir) {
        Ok(s) => (s.blocks_available() as u64).saturating_mul(s.fragment_size() as u64),
        Err(_) => 0,
    }
}

struct Recovery {
    truncated_bytes: u64,
    segment_no: u64,
}

impl AuditLog {
    /// Opens the log in `dir` for appending. Takes the writer lock, finds the
    /// end of the chain, and truncates a torn tail left by a crash (and
    /// records that it did). A tail that is not a torn write is refused.
    pub fn open(dir: &Path, opts: AuditOptions) -> Result<AuditLog, AuditError> {
        let meta = LogMeta::read(dir)?;
        let (log_id, key_id) = meta.ids(dir)?;
        let lock_path = dir.join(files::LOCK);
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|e| AuditError::io("opening", &lock_path, e))?;
        let flock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusiveNonblock)
            .map_err(|_| AuditError::Locked(dir.to_path_buf()))?;

        let key_path = dir.join(files::SEAL_KEY);
        let keys = SealKeyFile::open(&key_path, &log_id)?;
        let (mut key_file, mut seal_key) = (keys.file, keys.seal);
        let chain = match (meta.keyed(), keys.writer) {
            (true, Some(w)) => Chain::Keyed(w),
            (true, None) => return Err(AuditError::KeyMismatch {
                path: key_path,
                reason:
                    "this v2 log needs a writer key and the file holds none (a v1 log's key file?)"
                        .into(),
            }),
            // A v1 log keeps its keyless chain; start a new log for a keyed one.
            (false, _) => Chain::Plain,
        };
        let signer = CheckpointSigner::load(&dir.join(files::CHECKPOINT_KEY))?;

        let (tail, torn) = recover_tail(dir, &log_id, &chain)?;
        check_key_fits_log(&key_path, seal_key.epoch(), &tail)?;
        let recovery = match torn {
            Some(t) => Some(t.truncate()?),
            None => None,
        };
        // The key file may lag the log by one seal (crash after the seal
        // reached the disk, before the evolved key did): never reuse an
        // epoch whose seal is already written.
        if let Some(e) = tail.last_seal_epoch {
            if seal_key.epoch() <= e {
                seal_key.evolve_to(e + 1);
                key_file.store(&seal_key)?;
            }
        }
        let seg_path = dir.join(segment::segment_name(tail.seg_no));
        let file = OpenOptions::new()
            .append(true)
            .open(&seg_path)
            .map_err(|e| AuditError::io("opening segment", &seg_path, e))?;
        let cp_path = dir.join(files::CHECKPOINTS);
        let checkpoints = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(&cp_path)
            .map_err(|e| AuditError::io("opening", &cp_path, e))?;
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            log_id,
            key_id,
            chain,
            free_bytes: AtomicU64::new(free_bytes(dir)),
            signer,
            state: Mutex::new(State {
                next_seq: tail.next_seq,
                head: tail.head,
                seg_no: tail.seg_no,
                seg_bytes: tail.seg_bytes,
                pending: Vec::new(),
                frames_encoded: 0,
                frames_durable: 0,
                durable_seq: tail.next_seq - 1,
                syncing: false,
                failed: false,
                closed: false,
                seal_key,
                unsealed: tail.unsealed,
                first_unsealed_ms: tail.first_unsealed_ms,
                first_unsealed_at: (tail.unsealed > 0).then(Instant::now),
            }),
            cond: Condvar::new(),
            io: Mutex::new(Io {
                file,
                seg_no: tail.seg_no,
                key_file,
                checkpoints,
            }),
            opts,
            stop: AtomicBool::new(false),
            archivers: Mutex::new(Vec::new()),
        });
        let log = AuditLog {
            shared: shared.clone(),
            ticker: Mutex::new(None),
            _lock: flock,
        };
        if let Some(r) = recovery {
            log.append(
                AuditRecord::new(EventKind::AuditRecovered, Actor::system(), Outcome::Success)
                    .reason("torn tail after a crash truncated")
                    .detail("segment", r.segment_no.to_string())
                    .detail("truncated_bytes", r.truncated_bytes.to_string()),
            )?;
        }
        // Records a crash left unsealed are sealed now, before anything
        // new: a series of crashes cannot keep postponing their seal (the
        // unsealed window is bounded by one run's seal interval).
        log.seal_now()?;
        // Archive segments a crash left uncompressed.
        if shared.opts.compress_archived {
            for s in list_segments(dir)? {
                if !s.compressed && s.no < tail.seg_no {
                    spawn_archiver(&shared, s.no);
                }
            }
        }
        if shared.opts.background {
            let weak = Arc::downgrade(&shared);
            let h = std::thread::Builder::new()
                .name("audit-ticker".into())
                .spawn(move || ticker(weak))
                .map_err(|e| AuditError::io("starting the seal timer for", dir, e))?;
            *lock(&log.ticker) = Some(h);
        }
        Ok(log)
    }

    /// The log directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Appends a record and returns its sequence number once it is on stable
    /// storage (fdatasync'd, shared with concurrent appenders).
    pub fn append(&self, record: AuditRecord) -> Result<Seq, AuditError> {
        let (seq, frame) = self.encode(record)?;
        self.wait_durable(frame)?;
        Ok(seq)
    }

    /// Appends without waiting for the disk; [`AuditLog::flush`] waits.
    pub fn append_nowait(&self, record: AuditRecord) -> Result<Seq, AuditError> {
        Ok(self.encode(record)?.0)
    }

    /// Waits until everything appended so far is on stable storage.
    pub fn flush(&self) -> Result<(), AuditError> {
        let target = lock(&self.shared.state).frames_encoded;
        self.wait_durable(target)
    }

    /// Seals now (if there are unsealed records) and waits for the disk.
    pub fn seal_now(&self) -> Result<(), AuditError> {
        {
            let mut st = lock(&self.shared.state);
            if st.unsealed > 0 {
                self.shared.seal(&mut st);
            }
        }
        self.flush()
    }

    /// Free space and whether packages and records are still accepted.
    pub fn health(&self) -> Health {
        let free = free_bytes(&self.shared.dir);
        self.shared.free_bytes.store(free, Ordering::Relaxed);
        self.health_with(free)
    }

    /// [`AuditLog::health`] for a check made per package: the free space
    /// measured after the last flush or by the ticker (at most 200 ms
    /// ago), measured again only when it is below a floor, so that a
    /// refusal always rests on a fresh figure. Why: a `statvfs(2)` per
    /// push was about 2 % of the small-package path, and every accepted
    /// package flushes the log (which measures) before its answer anyway.
    pub fn health_cached(&self) -> Health {
        let o = &self.shared.opts;
        let cached = self.shared.free_bytes.load(Ordering::Relaxed);
        if cached < o.min_free_bytes_accept || cached < o.min_free_bytes_audit {
            return self.health();
        }
        self.health_with(cached)
    }

    fn health_with(&self, free: u64) -> Health {
        let st = lock(&self.shared.state);
        let o = &self.shared.opts;
        Health {
            free_bytes: free,
            accept_floor_bytes: o.min_free_bytes_accept,
            audit_floor_bytes: o.min_free_bytes_audit,
            accepting_packages: !st.failed && free >= o.min_free_bytes_accept,
            auditing: !st.failed && free >= o.min_free_bytes_audit,
            failed: st.failed,
            durable_seq: st.durable_seq,
            unsealed_records: st.unsealed,
            epoch: st.seal_key.epoch(),
        }
    }

    /// Deletes whole segments whose newest record is older than the
    /// retention period (never the active one), then appends an
    /// `audit.retention` record that says what went, chained like any other.
    /// Returns the numbers of the deleted segments.
    pub fn apply_retention(&self, now_ms: i64) -> Result<Vec<u64>, AuditError> {
        self.wait_archivers();
        let cutoff = now_ms.saturating_sub(i64::from(self.shared.opts.retention_days) * 86_400_000);
        let active = lock(&self.shared.state).seg_no;
        let segs = list_segments(&self.shared.dir)?;
        let mut doomed = Vec::new();
        let mut kept_header = None;
        for w in segs.windows(2) {
            if w[0].no >= active {
                break;
            }
            // A segment's newest record predates the next segment's creation.
            let next = read_header(&w[1])?;
            if next.created_ms < cutoff {
                doomed.push(w[0].clone());
            } else {
                kept_header = Some(next);
                break;
            }
            kept_header = Some(next);
        }
        let (Some(first), Some(last), Some(kept)) = (doomed.first(), doomed.last(), kept_header)
        else {
            return Ok(Vec::new());
        };
        let (from, through) = (first.no, last.no);
        for s in &doomed {
            fs::remove_file(&s.path)
                .map_err(|e| AuditError::io("deleting expired segment", &s.path, e))?;
        }
        sync_dir(&self.shared.dir)?;
        self.append(
            AuditRecord::new(EventKind::AuditRetention, Actor::system(), Outcome::Success)
                .reason(format!(
                    "segments older than {} days deleted",
                    self.shared.opts.retention_days
                ))
                .detail("deleted_from_segment", from.to_string())
                .detail("deleted_through_segment", through.to_string())
                .detail("first_kept_seq", kept.first_seq.to_string())
                .detail("first_kept_prev_head", hex::encode(kept.prev_head)),
        )?;
        Ok(doomed.iter().map(|s| s.no).collect())
    }

    /// Waits for background compression of rotated segments to finish.
    pub fn wait_archivers(&self) {
        let hs: Vec<_> = lock(&self.shared.archivers).drain(..).collect();
        for h in hs {
            let _ = h.join();
        }
    }

    /// Seals, flushes and stops the background thread.
    pub fn close(self) -> Result<(), AuditError> {
        self.shutdown()
    }

    fn shutdown(&self) -> Result<(), AuditError> {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(h) = lock(&self.ticker).take() {
            let _ = h.join();
        }
        let already = std::mem::replace(&mut lock(&self.shared.state).closed, true);
        let r = if already { Ok(()) } else { self.seal_now() };
        self.wait_archivers();
        r
    }

    fn encode(&self, record: AuditRecord) -> Result<(Seq, u64), AuditError> {
        let payload = serde_json::to_vec(&record).map_err(|e| AuditError::Encode(e.to_string()))?;
        if payload.len() > MAX_PAYLOAD_BYTES {
            return Err(AuditError::Encode(format!(
                "record is {} bytes, more than {MAX_PAYLOAD_BYTES}; shorten reason/details",
                payload.len()
            )));
        }
        let sh = &*self.shared;
        let free = sh.free_bytes.load(Ordering::Relaxed);
        if free < sh.opts.min_free_bytes_audit {
            // Re-measure before refusing: space may have been freed.
            let now = free_bytes(&sh.dir);
            sh.free_bytes.store(now, Ordering::Relaxed);
            if now < sh.opts.min_free_bytes_audit {
                return Err(AuditError::DiskFull {
                    path: sh.dir.clone(),
                    free_bytes: now,
                    floor_bytes: sh.opts.min_free_bytes_audit,
                });
            }
        }
        let mut st = lock(&sh.state);
        if st.failed {
            return Err(AuditError::Poisoned(sh.dir.clone()));
        }
        let frame_len = (segment::FRAME_HEAD_LEN + payload.len() + 32) as u64;
        if st.seg_bytes + frame_len > sh.opts.max_segment_bytes && st.seg_bytes > HEADER_LEN as u64
        {
            sh.rotate(&mut st);
        }
        let seq = st.next_seq;
        st.next_seq += 1;
        let prev = st.head;
        let seg_no = st.seg_no;
        let time_ms = now_ms();
        let chunk = current_chunk(&mut st, seg_no);
        let before = chunk.data.len();
        let h = encode_frame(
            &mut chunk.data,
            &sh.chain,
            &prev,
            FrameKind::Record,
            seq,
            time_ms,
            &payload,
        );
        let written = (chunk.data.len() - before) as u64;
        st.head = h;
        st.seg_bytes += written;
        st.frames_encoded += 1;
        st.unsealed += 1;
        if st.first_unsealed_at.is_none() {
            st.first_unsealed_at = Some(Instant::now());
        }
        if st.first_unsealed_ms.is_none() {
            st.first_unsealed_ms = Some(time_ms);
        }
        if st.unsealed >= sh.opts.seal_every_records {
            sh.seal(&mut st);
        }
        Ok((seq, st.frames_encoded))
    }

    fn wait_durable(&self, frame: u64) -> Result<(), AuditError> {
        self.shared.wait_durable(frame)
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

fn current_chunk(st: &mut State, seg_no: u64) -> &mut Chunk {
    let need_new = st.pending.last().is_none_or(|c| c.seg_no != seg_no);
    if need_new {
        st.pending.push(Chunk {
            seg_no,
            new_header: None,
            data: Vec::with_capacity(64 * 1024),
            after: Vec::new(),
        });
    }
    let n = st.pending.len() - 1;
    &mut st.pending[n]
}

impl Shared {
    /// Encodes a seal frame for the unsealed records, signs a checkpoint,
    /// and evolves the in-memory key (the old one is erased now; the key
    /// file follows once the seal is on disk).
    fn seal(&self, st: &mut State) {
        if st.unsealed == 0 {
            return;
        }
        let through = st.next_seq - 1;
        let head = st.head;
        let mac = st.seal_key.seal_mac(&self.log_id, through, &head);
        let epoch = st.seal_key.epoch();
        let payload = SealPayload { epoch, head, mac }.encode();
        let t = now_ms();
        let cp = self.signer.sign(&self.log_id, through, &head, epoch, t);
        st.seal_key.evolve();
        let next_key = st.seal_key.duplicate();
        let seg_no = st.seg_no;
        let chunk = current_chunk(st, seg_no);
        let before = chunk.data.len();
        let h = encode_frame(
            &mut chunk.data,
            &self.chain,
            &head,
            FrameKind::Seal,
            through,
            t,
            &payload,
        );
        let written = (chunk.data.len() - before) as u64;
        chunk.after.push(AfterSync::StoreKey(next_key));
        chunk.after.push(AfterSync::Checkpoint(cp));
        st.head = h;
        st.seg_bytes += written;
        st.frames_encoded += 1;
        st.unsealed = 0;
        st.first_unsealed_ms = None;
        st.first_unsealed_at = None;
    }

    /// Ends the active segment with a seal and starts the next one.
    fn rotate(&self, st: &mut State) {
        self.seal(st);
        let old = st.seg_no;
        if let Some(c) = st.pending.last_mut() {
            if c.seg_no == old {
                c.after.push(AfterSync::Archive(old));
            }
        } else {
            st.pending.push(Chunk {
                seg_no: old,
                new_header: None,
                data: Vec::new(),
                after: vec![AfterSync::Archive(old)],
            });
        }
        let header = SegmentHeader {
            segment_no: old + 1,
            first_seq: st.next_seq,
            created_ms: now_ms(),
            log_id: self.log_id,
            key_id: self.key_id,
            prev_head: st.head,
            keyed: self.chain.is_keyed(),
        };
        st.head = header.chain_start();
        st.seg_no = old + 1;
        st.seg_bytes = HEADER_LEN as u64;
        st.pending.push(Chunk {
            seg_no: old + 1,
            new_header: Some(header.encode()),
            data: Vec::with_capacity(64 * 1024),
            after: Vec::new(),
        });
        st.frames_encoded += 1;
    }

    fn wait_durable(self: &Shared, frame: u64) -> Result<(), AuditError> {
        let mut st = lock(&self.state);
        loop {
            if st.frames_durable >= frame {
                return Ok(());
            }
            if st.failed {
                return Err(AuditError::Poisoned(self.dir.clone()));
            }
            if !st.syncing {
                st.syncing = true;
                let chunks = std::mem::take(&mut st.pending);
                let target_frames = st.frames_encoded;
                let target_seq = st.next_seq - 1;
                drop(st);
                let r = self.write_group(chunks);
                st = lock(&self.state);
                st.syncing = false;
                match r {
                    Ok(()) => {
                        st.frames_durable = target_frames;
                        st.durable_seq = target_seq;
                    }
                    Err(e) => {
                        st.failed = true;
                        self.cond.notify_all();
                        return Err(e);
                    }
                }
                self.cond.notify_all();
            } else {
                st = self.cond.wait(st).unwrap_or_else(|p| p.into_inner());
            }
        }
    }

    /// The leader's work: write every pending chunk, fdatasync, then do what
    /// had to wait for the data to be durable (store the evolved key, write
    /// and hand out checkpoints, archive the rotated segment).
    fn write_group(&self, chunks: Vec<Chunk>) -> Result<(), AuditError> {
        let mut io = lock(&self.io);
        let mut after = Vec::new();
        for c in chunks {
            if let Some(h) = c.new_header {
                let old_path = self.dir.join(segment::segment_name(io.seg_no));
                io.file
                    .sync_data()
                    .map_err(|e| AuditError::io("syncing segment", &old_path, e))?;
                let p = self.dir.join(segment::segment_name(c.seg_no));
                let mut f = OpenOptions::new()
                    .append(true)
                    .create_new(true)
                    .mode(0o640)
                    .open(&p)
                    .map_err(|e| AuditError::io("creating segment", &p, e))?;
                f.write_all(&h)
                    .and_then(|_| f.sync_data())
                    .map_err(|e| AuditError::io("writing segment", &p, e))?;
                sync_dir(&self.dir)?;
                io.file = f;
                io.seg_no = c.seg_no;
            }
            if !c.data.is_empty() {
                let p = self.dir.join(segment::segment_name(io.seg_no));
                io.file
                    .write_all(&c.data)
                    .map_err(|e| AuditError::io("writing segment", &p, e))?;
            }
            after.extend(c.after);
        }
        let p = self.dir.join(segment::segment_name(io.seg_no));
        io.file
            .sync_data()
            .map_err(|e| AuditError::io("syncing segment", &p, e))?;
        self.free_bytes
            .store(free_bytes(&self.dir), Ordering::Relaxed);
        let mut cps = Vec::new();
        for a in after {
            match a {
                AfterSync::StoreKey(k) => io.key_file.store(&k)?,
                AfterSync::Checkpoint(cp) => {
                    let mut line =
                        serde_json::to_vec(&cp).map_err(|e| AuditError::Encode(e.to_string()))?;
                    line.push(b'\n');
                    let cpp = self.dir.join(files::CHECKPOINTS);
                    io.checkpoints
                        .write_all(&line)
                        .and_then(|_| io.checkpoints.sync_data())
                        .map_err(|e| AuditError::io("writing", &cpp, e))?;
                    cps.push(cp);
                }
                AfterSync::Archive(no) => {
                    if self.opts.compress_archived {
                        spawn_archiver_inner(self, no);
                    }
                }
            }
        }
        drop(io);
        if let Some(sink) = &self.opts.checkpoint_sink {
            for cp in &cps {
                sink(cp);
            }
        }
        Ok(())
    }
}

fn spawn_archiver(shared: &Arc<Shared>, no: u64) {
    spawn_archiver_inner(shared, no)
}

fn spawn_archiver_inner(shared: &Shared, no: u64) {
    let dir = shared.dir.clone();
    let h = std::thread::Builder::new()
        .name("audit-archive".into())
        .spawn(move || {
            // Failure leaves the plain segment in place: it stays readable
            // and verifiable, and the next open tries again.
            let _ = archive_segment(&dir, no);
        });
    if let Ok(h) = h {
        lock(&shared.archivers).push(h);
    }
}

/// Compresses rotated segment `no` to `seg-N.log.gz` (gzip members), then
/// removes the plain file. Each step is durable before the next.
pub fn archive_segment(dir: &Path, no: u64) -> Result<(), AuditError> {
    let plain = dir.join(segment::segment_name(no));
    let gz = dir.join(format!("{}.gz", segment::segment_name(no)));
    let data = fs::read(&plain).map_err(|e| AuditError::io("reading segment", &plain, e))?;
    let (out, _) =
        segment::compress_members(&data).map_err(|e| AuditError::io("compressing", &plain, e))?;
    ferry_common::durable::write(&gz, &out, 0o640, ferry_common::durable::Replace::Atomically)
        .map_err(AuditError::write)?;
    fs::remove_file(&plain).map_err(|e| AuditError::io("removing", &plain, e))?;
    sync_dir(dir)
}

fn ticker(weak: std::sync::Weak<Shared>) {
    let mut last_retention: Option<Instant> = None;
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let Some(sh) = weak.upgrade() else { return };
        if sh.stop.load(Ordering::Relaxed) {
            return;
        }
        sh.free_bytes.store(free_bytes(&sh.dir), Ordering::Relaxed);
        let due = {
            let mut st = lock(&sh.state);
            // Due by the oldest unsealed record's own (wall-clock) time, or
            // by the monotonic clock should the wall clock have gone back.
            let interval_ms = i64::try_from(sh.opts.seal_interval.as_millis()).unwrap_or(i64::MAX);
            let due = st
                .first_unsealed_ms
                .is_some_and(|t| now_ms().saturating_sub(t) >= interval_ms)
                || st
                    .first_unsealed_at
                    .is_some_and(|t| t.elapsed() >= sh.opts.seal_interval);
            if due && !st.failed {
                sh.seal(&mut st);
            }
            due.then_some(st.frames_encoded)
        };
        if let Some(f) = due {
            let _ = sh.wait_durable(f);
        }
        // Retention is the daemon's call (AuditLog::apply_retention) because
        // it appends a record; the ticker only notes when it is due.
        if last_retention.is_none_or(|t| t.elapsed() >= Duration::from_secs(3600)) {
            last_retention = Some(Instant::now());
        }
    }
}

fn read_header(seg: &segment::SegmentFile) -> Result<SegmentHeader, AuditError> {
    use std::io::Read;
    let f = File::open(&seg.path).map_err(|e| AuditError::io("reading segment", &seg.path, e))?;
    let mut buf = [0u8; HEADER_LEN];
    let r = if seg.compressed {
        flate2::read::GzDecoder::new(f).read_exact(&mut buf)
    } else {
        let mut f = f;
        f.read_exact(&mut buf)
    };
    r.map_err(|e| AuditError::io("reading segment header", &seg.path, e))?;
    SegmentHeader::decode(&buf).ok_or_else(|| AuditError::corrupt(&seg.path, "bad segment header"))
}

struct Tail {
    seg_no: u64,
    seg_bytes: u64,
    next_seq: u64,
    head: [u8; 32],
    unsealed: u64,
    /// Frame time of the oldest record after the last seal.
    first_unsealed_ms: Option<i64>,
    last_seal_epoch: Option<u64>,
}

/// A torn tail found by [`recover_tail`], cut off by [`Torn::truncate`]
/// only once the keys were found to fit the log (so that a refused open
/// leaves the evidence as it found it).
struct Torn {
    path: PathBuf,
    at: u64,
    len: u64,
    segment_no: u64,
}

impl Torn {
    fn truncate(self) -> Result<Recovery, AuditError> {
        let f = OpenOptions::new()
            .write(true)
            .open(&self.path)
            .map_err(|e| AuditError::io("opening segment", &self.path, e))?;
        f.set_len(self.at)
            .and_then(|_| f.sync_all())
            .map_err(|e| AuditError::io("truncating torn tail of", &self.path, e))?;
        Ok(Recovery {
            truncated_bytes: self.len - self.at,
            segment_no: self.segment_no,
        })
    }
}

/// The host's seal key must be the one that follows the log's last seal
/// (or that seal's own key, when a crash came between the seal reaching the
/// disk and the evolved key doing so). A key further ahead means seals were
/// cut off the log's end (its key file has moved past them); a key behind
/// means the file is an older or another log's copy. Either way, sealing
/// with it would hide the problem, so the writer refuses.
fn check_key_fits_log(path: &Path, key_epoch: u64, tail: &Tail) -> Result<(), AuditError> {
    let expected = match tail.last_seal_epoch {
        Some(e) => e..=e + 1,
        // No seal in the log yet (or none left after retention in the
        // segments read): a fresh log's key is at epoch 0.
        None if tail.seg_no == 0 => 0..=0,
        None => return Ok(()),
    };
    if expected.contains(&key_epoch) {
        return Ok(());
    }
    let reason = match tail.last_seal_epoch {
        Some(e) if key_epoch > e + 1 => format!(
            "the seal key is at epoch {key_epoch} but the log's last seal is of epoch {e}: seals of epochs {}..={} are gone from the log's end (cut off?)",
            e + 1,
            key_epoch - 1
        ),
        None if key_epoch > 0 => format!(
            "the seal key is at epoch {key_epoch} but the log holds no seal: its seals are gone (cut off?), or the key file is another log's"
        ),
        Some(e) => format!(
            "the seal key is at epoch {key_epoch}, behind the log's last seal of epoch {e}: an old copy of the key file, or another log's"
        ),
        None => format!("the seal key is at epoch {key_epoch}, which does not fit the log"),
    };
    Err(AuditError::KeyMismatch {
        path: path.to_path_buf(),
        reason,
    })
}

/// Scans the active segment to find the chain's end. A torn tail is an
/// incomplete last frame, a last frame whose hash does not match (a write
/// cut short by power loss), or zeros to the end of the file (blocks
/// allocated but never written); it is returned for the caller to cut off.
/// Anything else that does not check is damage, and the writer refuses to
/// append after it.
fn recover_tail(
    dir: &Path,
    log_id: &[u8; 16],
    chain: &Chain,
) -> Result<(Tail, Option<Torn>), AuditError> {
    let mut segs = list_segments(dir)?;
    let Some(mut last) = segs.pop() else {
        return Err(AuditError::corrupt(dir, "no segment files"));
    };
    // A crash between creating a segment and syncing its header leaves a
    // short file: drop it and continue in the previous segment.
    if !last.compressed {
        let len = fs::metadata(&last.path)
            .map_err(|e| AuditError::io("reading", &last.path, e))?
            .len();
        if len < HEADER_LEN as u64 {
            if let Some(prev) = segs.pop() {
                fs::remove_file(&last.path)
                    .map_err(|e| AuditError::io("removing", &last.path, e))?;
                sync_dir(dir)?;
                last = prev;
            }
        }
    }
    if last.compressed {
        return Err(AuditError::corrupt(
            &last.path,
            "the newest segment is archived; the active segment is missing (run verify)",
        ));
    }
    let data =
        fs::read(&last.path).map_err(|e| AuditError::io("reading segment", &last.path, e))?;
    let header = SegmentHeader::decode(&data)
        .ok_or_else(|| AuditError::corrupt(&last.path, "bad segment header"))?;
    if &header.log_id != log_id {
        return Err(AuditError::corrupt(
            &last.path,
            "segment belongs to another log",
        ));
    }
    if header.keyed != chain.is_keyed() {
        return Err(AuditError::corrupt(
            &last.path,
            if chain.is_keyed() {
                "keyless (v1) segment in a v2 log: not written by ferry (run verify)"
            } else {
                "keyed (v2) segment in a v1 log: not written by ferry (run verify)"
            },
        ));
    }
    let mut head = header.chain_start();
    let mut next_seq = header.first_seq;
    let mut off = HEADER_LEN;
    let mut unsealed = 0u64;
    let mut first_unsealed_ms = None;
    let mut last_seal_epoch = None;
    let mut truncate_at = None;
    while off < data.len() {
        let frame = parse_frame(&data, off);
        let ok = match &frame {
            Ok(f) => {
                chain.hash(&head, f.body) == *f.hash
                    && match f.kind {
                        FrameKind::Record => f.seq == next_seq,
                        FrameKind::Seal => f.seq + 1 == next_seq,
                    }
            }
            Err(_) => false,
        };
        if ok {
            let f = frame.map_err(|_| AuditError::corrupt(&last.path, "frame vanished"))?;
            head = *f.hash;
            match f.kind {
                FrameKind::Record => {
                    next_seq += 1;
                    unsealed += 1;
                    first_unsealed_ms.get_or_insert(f.time_ms);
                }
                FrameKind::Seal => {
                    if let Some(s) = SealPayload::decode(f.payload) {
                        last_seal_epoch = Some(s.epoch);
                    }
                    unsealed = 0;
                    first_unsealed_ms = None;
                }
            }
            off += f.len();
            continue;
        }
        let torn = match frame {
            Err(FrameError::Incomplete) => true,
            Ok(f) => off + f.len() == data.len(),
            Err(FrameError::Garbage) => false,
        } || data[off..].iter().all(|b| *b == 0);
        if !torn {
            return Err(AuditError::corrupt(
                &last.path,
                format!(
                    "damaged at byte {off} (after seq {}), not a torn tail",
                    next_seq - 1
                ),
            ));
        }
        truncate_at = Some(off);
        break;
    }
    let torn = truncate_at.map(|at| Torn {
        path: last.path.clone(),
        at: at as u64,
        len: data.len() as u64,
        segment_no: header.segment_no,
    });
    if last_seal_epoch.is_none() {
        // The previous segment ends with the rotation seal.
        if let Some(prev) = segs.last() {
            let pdata = segment::read_segment(prev)?;
            let mut o = HEADER_LEN;
            while let Ok(f) = parse_frame(&pdata, o) {
                if f.kind == FrameKind::Seal {
                    if let Some(s) = SealPayload::decode(f.payload) {
                        last_seal_epoch = Some(s.epoch);
                    }
                }
                o += f.len();
            }
        }
    }
    let seg_bytes = truncate_at.unwrap_or(data.len()) as u64;
    Ok((
        Tail {
            seg_no: header.segment_no,
            seg_bytes,
            next_seq,
            head,
            unsealed,
            first_unsealed_ms,
            last_seal_epoch,
        },
        torn,
    ))
}
