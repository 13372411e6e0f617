//! A redb index from package id to record positions, so that a package's
//! trace does not scan the whole log. It is a cache: built and caught up
//! from the segments on use, and deleted and rebuilt when it is missing,
//! unreadable, or points at something the segments do not hold.

use crate::error::AuditError;
use crate::record::{AuditRecord, StoredRecord};
use crate::segment::{list_segments, parse_frame, read_segment, FrameKind, HEADER_LEN};
use redb::{Database, MultimapTableDefinition, ReadableTable, TableDefinition};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const PKG: MultimapTableDefinition<&str, (u64, u64)> = MultimapTableDefinition::new("package");
/// Segment number → bytes indexed so far.
const PROGRESS: TableDefinition<u64, u64> = TableDefinition::new("progress");

fn ierr(path: &Path, e: impl std::fmt::Display) -> AuditError {
    AuditError::Index {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// The package index of one log directory.
pub struct PackageIndex {
    dir: PathBuf,
    path: PathBuf,
    db: Database,
}

impl PackageIndex {
    /// Opens (or creates, or rebuilds if unreadable) the index and catches
    /// it up with the segments.
    pub fn open(dir: &Path) -> Result<PackageIndex, AuditError> {
        let path = dir.join(crate::writer::files::INDEX);
        let db = match Database::create(&path) {
            Ok(db) => db,
            Err(_) => {
                // Corrupt: it is only a cache, rebuild it.
                std::fs::remove_file(&path).map_err(|e| AuditError::io("removing", &path, e))?;
                Database::create(&path).map_err(|e| ierr(&path, e))?
            }
        };
        let mut idx = PackageIndex {
            dir: dir.to_path_buf(),
            path,
            db,
        };
        if idx.catch_up().is_err() {
            idx = idx.rebuild()?;
        }
        Ok(idx)
    }

    fn rebuild(self) -> Result<PackageIndex, AuditError> {
        let (dir, path) = (self.dir.clone(), self.path.clone());
        drop(self.db);
        std::fs::remove_file(&path).map_err(|e| AuditError::io("removing", &path, e))?;
        let db = Database::create(&path).map_err(|e| ierr(&path, e))?;
        let idx = PackageIndex { dir, path, db };
        idx.catch_up()?;
        Ok(idx)
    }

    /// Indexes what the segments hold beyond what was indexed before.
    pub fn catch_up(&self) -> Result<(), AuditError> {
        let p = &self.path;
        let segs = list_segments(&self.dir)?;
        let tx = self.db.begin_write().map_err(|e| ierr(p, e))?;
        {
            let mut prog = tx.open_table(PROGRESS).map_err(|e| ierr(p, e))?;
            let mut pkg = tx.open_multimap_table(PKG).map_err(|e| ierr(p, e))?;
            for seg in &segs {
                let done = prog
                    .get(seg.no)
                    .map_err(|e| ierr(p, e))?
                    .map(|v| v.value())
                    .unwrap_or(HEADER_LEN as u64);
                if seg.compressed && done > HEADER_LEN as u64 {
                    continue; // archived segments no longer grow
                }
                if !seg.compressed {
                    let len = std::fs::metadata(&seg.path)
                        .map_err(|e| AuditError::io("reading", &seg.path, e))?
                        .len();
                    if len <= done {
                        continue;
                    }
                }
                let data = read_segment(seg)?;
                let mut off = usize::try_from(done).map_err(|e| ierr(p, e))?;
                if off > data.len() {
                    return Err(ierr(p, "index is ahead of the segments"));
                }
                while let Ok(f) = parse_frame(&data, off) {
                    if f.kind == FrameKind::Record {
                        if let Ok(r) = serde_json::from_slice::<AuditRecord>(f.payload) {
                            if let Some(id) = &r.package {
                                pkg.insert(id.as_str(), (seg.no, off as u64))
                                    .map_err(|e| ierr(p, e))?;
                            }
                        }
                    }
                    off += f.len();
                }
                prog.insert(seg.no, off as u64).map_err(|e| ierr(p, e))?;
            }
        }
        tx.commit().map_err(|e| ierr(p, e))
    }

    /// The records of one package, in order. `None` when the index points
    /// at something the segments do not hold (then it must be rebuilt).
    fn lookup(&self, package: &str) -> Result<Option<Vec<StoredRecord>>, AuditError> {
        let p = &self.path;
        let tx = self.db.begin_read().map_err(|e| ierr(p, e))?;
        let t = tx.open_multimap_table(PKG).map_err(|e| ierr(p, e))?;
        let mut by_seg: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        for v in t.get(package).map_err(|e| ierr(p, e))? {
            let (s, o) = v.map_err(|e| ierr(p, e))?.value();
            by_seg.entry(s).or_default().push(o);
        }
        let segs = list_segments(&self.dir)?;
        let mut out = Vec::new();
        for (s, offs) in by_seg {
            // Deleted by retention: nothing to show.
            let Some(seg) = segs.iter().find(|x| x.no == s) else {
                continue;
            };
            // Plain segments: read just the frames; archived ones are
            // decompressed whole (once per segment per query).
            let whole = if seg.compressed {
                Some(read_segment(seg)?)
            } else {
                None
            };
            let file = std::fs::File::open(&seg.path)
                .map_err(|e| AuditError::io("reading segment", &seg.path, e))?;
            for o in offs {
                let buf;
                let (data, at) = match &whole {
                    Some(d) => (&d[..], o as usize),
                    None => {
                        buf = read_frame_bytes(&file, o).unwrap_or_default();
                        (&buf[..], 0)
                    }
                };
                let Ok(f) = parse_frame(data, at) else {
                    return Ok(None);
                };
                let Ok(record) = serde_json::from_slice::<AuditRecord>(f.payload) else {
                    return Ok(None);
                };
                if record.package.as_deref() != Some(package) {
                    return Ok(None);
                }
                out.push(StoredRecord {
                    seq: f.seq,
                    time_ms: f.time_ms,
                    record,
                });
            }
        }
        out.sort_by_key(|r| r.seq);
        Ok(Some(out))
    }

    /// The records of one package, rebuilding the index once if it is stale.
    pub fn package_records(self, package: &str) -> Result<Vec<StoredRecord>, AuditError> {
        if let Some(v) = self.lookup(package)? {
            return Ok(v);
        }
        let idx = self.rebuild()?;
        idx.lookup(package)?
            .ok_or_else(|| ierr(&idx.path, "index inconsistent right after a rebuild"))
    }
}

/// Reads the frame at `off` of a plain segment file.
fn read_frame_bytes(file: &std::fs::File, off: u64) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mut head = [0u8; crate::segment::FRAME_HEAD_LEN];
    file.read_exact_at(&mut head, off)?;
    let len = u32::from_le_bytes([head[18], head[19], head[20], head[21]]) as usize;
    if len > crate::segment::MAX_PAYLOAD_BYTES {
        return Err(std::io::ErrorKind::InvalidData.into());
    }
    let mut buf = vec![0u8; crate::segment::FRAME_HEAD_LEN + len + 32];
    file.read_exact_at(&mut buf, off)?;
    Ok(buf)
}
