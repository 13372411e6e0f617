//! The verifier: walks every segment, recomputes the chain, checks each
//! seal with the epoch key derived from the auditor's epoch-0 secret, and
//! compares the log with an outside copy of the signed checkpoints. It stops
//! at the first problem and names it.

use crate::error::AuditError;
use crate::keys::{Checkpoint, VerifyKey};
use crate::segment::{
    list_segments, parse_frame, read_segment, Chain, FrameError, FrameKind, SealPayload,
    SegmentHeader, HEADER_LEN,
};
use std::path::Path;

/// What is wrong with a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TamperKind {
    /// A record's bytes do not match its chain hash.
    Modified,
    /// A sequence number is missing.
    Missing,
    /// Records are out of order.
    Reordered,
    /// The log ends before a point it is known to have reached.
    Truncated,
    /// A seal's MAC or epoch does not check.
    BadSeal,
    /// A checkpoint names a head hash the log does not have.
    CheckpointMismatch,
    /// A checkpoint's signature does not check.
    CheckpointForged,
    /// The verify key does not belong to this log.
    WrongKey,
    /// A whole segment is gone without a retention record.
    SegmentRemoved,
    /// A checkpoint (the log's own `checkpoints.jsonl` or an outside copy)
    /// vouches for a seal the log no longer has: the seal was cut off or
    /// removed.
    SealRemoved,
}

impl TamperKind {
    /// Short name as printed.
    pub fn as_str(self) -> &'static str {
        match self {
            TamperKind::Modified => "modified",
            TamperKind::Missing => "missing",
            TamperKind::Reordered => "reordered",
            TamperKind::Truncated => "truncated",
            TamperKind::BadSeal => "bad seal",
            TamperKind::CheckpointMismatch => "checkpoint mismatch",
            TamperKind::CheckpointForged => "checkpoint forged",
            TamperKind::WrongKey => "wrong key",
            TamperKind::SegmentRemoved => "segment removed",
            TamperKind::SealRemoved => "seal removed",
        }
    }
}

/// The first problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// What kind.
    pub kind: TamperKind,
    /// The segment concerned.
    pub segment: Option<u64>,
    /// The first bad record's sequence number, when one can be named.
    pub seq: Option<u64>,
    /// In words.
    pub detail: String,
}

/// The verifier's result.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    /// The first problem; `None` means intact.
    pub problem: Option<Finding>,
    /// Records checked.
    pub records: u64,
    /// Segments checked.
    pub segments: u64,
    /// Seals checked.
    pub seals: u64,
    /// Checkpoints checked against the log.
    pub checkpoints: u64,
    /// First and last sequence numbers seen.
    pub first_seq: Option<u64>,
    /// Last record seen.
    pub last_seq: Option<u64>,
    /// Records after the last seal: not yet protected by a seal.
    pub unsealed_tail: u64,
    /// Bytes of an incomplete last frame (a crash's torn tail; ferryd
    /// truncates it when it next opens the log).
    pub torn_tail_bytes: u64,
    /// Segments deleted by retention before the first one present.
    pub retention_deleted_through: Option<u64>,
    /// Every segment is chained with the writer key (a v2 log): records
    /// after the last seal are still authenticated. False for a v1 log,
    /// whose unsealed tail anyone able to write the files could have made.
    pub keyed: bool,
    /// Where the checkpoints came from (the directory's own file, and the
    /// outside copy if given), with how many each held.
    pub checkpoint_sources: Vec<(String, usize)>,
    /// Things the officer should know that are not tampering.
    pub notes: Vec<String>,
}

impl VerifyReport {
    /// No problem found.
    pub fn intact(&self) -> bool {
        self.problem.is_none()
    }
}

impl std::fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.problem {
            None => writeln!(f, "INTACT")?,
            Some(p) => {
                write!(f, "TAMPERED: {}", p.kind.as_str())?;
                if let Some(s) = p.seq {
                    write!(f, " at seq {s}")?;
                }
                if let Some(s) = p.segment {
                    write!(f, " (segment {s})")?;
                }
                writeln!(f, ": {}", p.detail)?;
            }
        }
        writeln!(
            f,
            "records {} (seq {}..{}), segments {}, seals {}, checkpoints {}, unsealed tail {}",
            self.records,
            self.first_seq.map_or("-".into(), |s| s.to_string()),
            self.last_seq.map_or("-".into(), |s| s.to_string()),
            self.segments,
            self.seals,
            self.checkpoints,
            self.unsealed_tail
        )?;
        for (src, n) in &self.checkpoint_sources {
            writeln!(f, "checkpoints read: {n} from {src}")?;
        }
        if self.unsealed_tail > 0 {
            if self.keyed {
                writeln!(
                    f,
                    "note: the last {} records are not sealed yet: the writer key authenticates them, but whoever holds the host's current keys could still change them",
                    self.unsealed_tail
                )?;
            } else {
                writeln!(
                    f,
                    "warning: the last {} records are not sealed and this v1 log's chain is keyless: they are UNAUTHENTICATED (anyone able to write the files could have added them)",
                    self.unsealed_tail
                )?;
            }
        }
        if !self.keyed && self.segments > 0 {
            writeln!(
                f,
                "note: v1 log (keyless chain); start a new log with `ferryctl audit init` for a keyed one"
            )?;
        }
        for n in &self.notes {
            writeln!(f, "note: {n}")?;
        }
        if self.torn_tail_bytes > 0 {
            writeln!(
                f,
                "note: torn tail of {} bytes at the end (crash); ferryd truncates it on start",
                self.torn_tail_bytes
            )?;
        }
        if let Some(s) = self.retention_deleted_through {
            writeln!(f, "note: segments 0..={s} deleted by retention (recorded)")?;
        }
        Ok(())
    }
}

fn finding(kind: TamperKind, segment: Option<u64>, seq: Option<u64>, detail: String) -> Finding {
    Finding {
        kind,
        segment,
        seq,
        detail,
    }
}

/// Reads a checkpoint copy: JSON lines, or syslog lines whose message ends
/// with the checkpoint's JSON.
pub fn read_checkpoints(path: &Path) -> Result<Vec<Result<Checkpoint, usize>>, AuditError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| AuditError::io("reading checkpoints", path, e))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let json = line
            .rfind("{\"log_id\"")
            .map(|p| &line[p..])
            .unwrap_or(line);
        out.push(serde_json::from_str::<Checkpoint>(json).map_err(|_| i + 1));
    }
    Ok(out)
}

struct RetentionNote {
    through: u64,
    first_kept_prev_head: String,
}

/// Verifies the log in `dir` with the auditor's key and, if given, an
/// outside copy of the checkpoints. `Ok` with a report either way; `Err`
/// only when the verifier itself cannot run (unreadable key or directory).
///
/// The directory's own `checkpoints.jsonl` is always read as well: it is
/// evidence too (weaker than the outside copy, since it lives on the same
/// host), and a checkpoint in either that names a seal the log no longer
/// has is tampering ([`TamperKind::SealRemoved`] or
/// [`TamperKind::Truncated`]), never a "torn tail".
pub fn verify(
    dir: &Path,
    key: &VerifyKey,
    checkpoints: Option<&Path>,
) -> Result<VerifyReport, AuditError> {
    let mut rep = VerifyReport::default();
    let mut cps: Vec<Checkpoint> = Vec::new();
    let own = dir.join(crate::writer::files::CHECKPOINTS);
    let mut sources: Vec<(&Path, bool)> = Vec::new();
    if own.exists() {
        sources.push((&own, true));
    } else {
        rep.notes.push(format!(
            "{} is missing: only an outside copy of the checkpoints can show a cut-off end",
            own.display()
        ));
    }
    if let Some(p) = checkpoints {
        sources.push((p, false));
    }
    let mut cp_problem: Option<Finding> = None;
    for (p, own_file) in sources {
        let mut parsed = read_checkpoints(p)?;
        // A crash while the writer appended a checkpoint line can leave the
        // directory's own file with an unfinished last line: not evidence
        // of anything, and not tampering.
        if own_file && matches!(parsed.last(), Some(Err(_))) {
            let text = std::fs::read(p).map_err(|e| AuditError::io("reading checkpoints", p, e))?;
            if !text.ends_with(b"\n") {
                parsed.pop();
                rep.notes.push(format!(
                    "the last line of {} is unfinished (a crash while it was written); ignored",
                    p.display()
                ));
            }
        }
        rep.checkpoint_sources
            .push((p.display().to_string(), parsed.len()));
        for (n, c) in parsed.into_iter().enumerate() {
            match c {
                Ok(c) if c.signature_ok(&key.checkpoint_public) => cps.push(c),
                Ok(c) => {
                    cp_problem.get_or_insert(finding(
                        TamperKind::CheckpointForged,
                        None,
                        Some(c.seq),
                        format!(
                            "checkpoint {} of {} has a bad signature",
                            n + 1,
                            p.display()
                        ),
                    ));
                }
                Err(line) => {
                    cp_problem.get_or_insert(finding(
                        TamperKind::CheckpointForged,
                        None,
                        None,
                        format!("line {line} of {} is not a checkpoint", p.display()),
                    ));
                }
            }
        }
    }
    cps.sort_by(|a, b| (a.seq, &a.head, a.epoch).cmp(&(b.seq, &b.head, b.epoch)));
    // The same checkpoint from both copies counts once.
    cps.dedup();
    let problem = walk(dir, key, &cps, &mut rep)?;
    // A wrong key also makes every checkpoint's signature fail: name the
    // cause. Otherwise a forged checkpoint comes first.
    rep.problem = match (problem, cp_problem) {
        (Some(p), _) if p.kind == TamperKind::WrongKey => Some(p),
        (_, Some(c)) => Some(c),
        (p, None) => p,
    };
    Ok(rep)
}

fn walk(
    dir: &Path,
    key: &VerifyKey,
    cps: &[Checkpoint],
    rep: &mut VerifyReport,
) -> Result<Option<Finding>, AuditError> {
    use TamperKind::*;
    let segs = list_segments(dir)?;
    let Some(first) = segs.first() else {
        return Ok(Some(finding(
            SegmentRemoved,
            Some(0),
            None,
            "no segment files at all".into(),
        )));
    };
    let key_id = key.key_id();
    let mut seal_key = key.seal_key();
    let mut last_epoch: Option<u64> = None;
    let mut last_sealed_seq: u64 = 0;
    let mut expected_seg = first.no;
    let mut expected_seq: u64 = 0;
    let mut prev_end: Option<[u8; 32]> = None;
    let mut cp_i = 0usize;
    let mut retention: Vec<RetentionNote> = Vec::new();
    let mut first_header: Option<SegmentHeader> = None;
    // Every seal found: sealed-through seq -> (epoch, head).
    let mut seals: std::collections::BTreeMap<u64, (u64, [u8; 32])> = Default::default();
    let keyed_chain = key.chain();
    rep.keyed = true;
    let nsegs = segs.len();
    let mut seen_keyed = false;
    for (si, seg) in segs.iter().enumerate() {
        let no = seg.no;
        if no != expected_seg {
            return Ok(Some(finding(
                SegmentRemoved,
                Some(expected_seg),
                (expected_seq > 0).then_some(expected_seq),
                format!("segment {expected_seg} is missing (next present is {no})"),
            )));
        }
        expected_seg = no + 1;
        rep.segments += 1;
        let data = match read_segment(seg) {
            Ok(d) => d,
            Err(e) => {
                return Ok(Some(finding(
                    Modified,
                    Some(no),
                    None,
                    format!("unreadable: {e}"),
                )))
            }
        };
        let Some(h) = SegmentHeader::decode(&data) else {
            return Ok(Some(finding(
                Modified,
                Some(no),
                None,
                "segment header damaged".into(),
            )));
        };
        if h.log_id != key.log_id || h.key_id != key_id {
            return Ok(Some(finding(
                WrongKey,
                Some(no),
                None,
                format!(
                    "the verify key is for log {} but segment {no} belongs to log {} (key id {})",
                    hex::encode(key.log_id),
                    hex::encode(h.log_id),
                    hex::encode(h.key_id)
                ),
            )));
        }
        // A v2 log is keyed in every segment; so is any log from its first
        // keyed segment on. A keyless segment there is a downgrade: someone
        // without the writer key wrote it.
        if !h.keyed && (key.keyed() || seen_keyed) {
            return Ok(Some(finding(
                Modified,
                Some(no),
                None,
                format!(
                    "segment {no} has a keyless (v1) chain in a log whose chain is keyed: it was not written by the log's writer"
                ),
            )));
        }
        seen_keyed |= h.keyed;
        rep.keyed &= h.keyed;
        let chain = if h.keyed { &keyed_chain } else { &Chain::Plain };
        if h.segment_no != no {
            return Ok(Some(finding(
                Reordered,
                Some(no),
                None,
                format!("file of segment {no} holds segment {}", h.segment_no),
            )));
        }
        match prev_end {
            None => {
                if no == 0 && (h.first_seq != 1 || h.prev_head != [0u8; 32]) {
                    return Ok(Some(finding(
                        Modified,
                        Some(0),
                        None,
                        "first segment header altered".into(),
                    )));
                }
                expected_seq = h.first_seq;
                rep.first_seq = Some(h.first_seq);
                first_header = Some(h.clone());
            }
            Some(end) => {
                if h.first_seq > expected_seq {
                    return Ok(Some(finding(
                        Truncated,
                        Some(no - 1),
                        Some(expected_seq),
                        format!(
                            "segment {} ends at seq {} but segment {no} starts at seq {}",
                            no - 1,
                            expected_seq - 1,
                            h.first_seq
                        ),
                    )));
                }
                if h.first_seq != expected_seq || h.prev_head != end {
                    return Ok(Some(finding(
                        Truncated,
                        Some(no - 1),
                        Some(expected_seq),
                        format!(
                            "segment {} does not end where segment {no} says it does",
                            no - 1
                        ),
                    )));
                }
            }
        }
        let mut head = h.chain_start();
        let mut off = HEADER_LEN;
        while off < data.len() {
            let f = match parse_frame(&data, off) {
                Ok(f) => f,
                Err(FrameError::Incomplete) if si + 1 == nsegs => {
                    rep.torn_tail_bytes = (data.len() - off) as u64;
                    break;
                }
                Err(FrameError::Incomplete) => {
                    return Ok(Some(finding(
                        Truncated,
                        Some(no),
                        Some(expected_seq),
                        format!("segment {no} ends inside a record at byte {off}"),
                    )))
                }
                Err(FrameError::Garbage) => {
                    return Ok(Some(finding(
                        Modified,
                        Some(no),
                        Some(expected_seq),
                        format!("bytes at offset {off} are not a record"),
                    )))
                }
            };
            match f.kind {
                FrameKind::Record => {
                    if f.seq != expected_seq {
                        let kind = if f.seq < expected_seq || later_has(&data, off, expected_seq) {
                            Reordered
                        } else {
                            Missing
                        };
                        return Ok(Some(finding(
                            kind,
                            Some(no),
                            Some(expected_seq),
                            format!("expected seq {expected_seq}, found seq {}", f.seq),
                        )));
                    }
                }
                FrameKind::Seal => {
                    if f.seq + 1 != expected_seq {
                        return Ok(Some(finding(
                            Reordered,
                            Some(no),
                            Some(expected_seq),
                            format!(
                                "seal for seq {} found after seq {}",
                                f.seq,
                                expected_seq - 1
                            ),
                        )));
                    }
                }
            }
            let computed = chain.hash(&head, f.body);
            if &computed != f.hash {
                return Ok(Some(finding(
                    Modified,
                    Some(no),
                    Some(f.seq),
                    if h.keyed {
                        format!("record at offset {off} does not match its keyed chain hash: changed, or written by someone without the writer key")
                    } else {
                        format!("record at offset {off} does not match its chain hash")
                    },
                )));
            }
            match f.kind {
                FrameKind::Record => {
                    rep.records += 1;
                    rep.last_seq = Some(f.seq);
                    while cp_i < cps.len() && cps[cp_i].seq <= f.seq {
                        let cp = &cps[cp_i];
                        cp_i += 1;
                        if cp.seq < rep.first_seq.unwrap_or(1) {
                            continue; // deleted by retention
                        }
                        rep.checkpoints += 1;
                        if cp.seq == f.seq && cp.head != hex::encode(f.hash) {
                            return Ok(Some(finding(
                                CheckpointMismatch,
                                Some(no),
                                Some(f.seq),
                                format!("checkpoint at seq {} names another head hash", cp.seq),
                            )));
                        }
                    }
                    if f.payload.starts_with(b"{\"event\":\"audit.retention\"") {
                        if let Some(n) = retention_note(f.payload) {
                            retention.push(n);
                        }
                    }
                    expected_seq += 1;
                }
                FrameKind::Seal => {
                    let Some(s) = SealPayload::decode(f.payload) else {
                        return Ok(Some(finding(
                            BadSeal,
                            Some(no),
                            Some(f.seq),
                            "seal unreadable".into(),
                        )));
                    };
                    let first_covered =
                        last_sealed_seq.max(rep.first_seq.unwrap_or(1).saturating_sub(1)) + 1;
                    let epoch_ok = match last_epoch {
                        Some(e) => s.epoch == e + 1,
                        None => s.epoch >= seal_key.epoch(),
                    };
                    if !epoch_ok || s.head != head {
                        return Ok(Some(finding(
                            BadSeal,
                            Some(no),
                            Some(first_covered),
                            format!(
                                "seal over seq {first_covered}..={} has epoch {} after {:?} or a wrong head",
                                f.seq, s.epoch, last_epoch
                            ),
                        )));
                    }
                    seal_key.evolve_to(s.epoch);
                    if !seal_key.check_mac(&key.log_id, f.seq, &s.head, &s.mac) {
                        return Ok(Some(finding(
                            BadSeal,
                            Some(no),
                            Some(first_covered),
                            format!(
                                "seal (epoch {}) over seq {first_covered}..={} does not check: records in that range were rewritten",
                                s.epoch, f.seq
                            ),
                        )));
                    }
                    last_epoch = Some(s.epoch);
                    last_sealed_seq = f.seq;
                    seals.insert(f.seq, (s.epoch, s.head));
                    rep.seals += 1;
                }
            }
            head = computed;
            off += f.len();
        }
        prev_end = Some(head);
    }
    rep.unsealed_tail = rep
        .last_seq
        .unwrap_or(0)
        .saturating_sub(last_sealed_seq.max(rep.first_seq.unwrap_or(1).saturating_sub(1)));
    if let Some(cp) = cps.get(cp_i) {
        return Ok(Some(finding(
            Truncated,
            None,
            Some(expected_seq),
            format!(
                "the log ends at seq {} but a checkpoint vouches for seq {}",
                expected_seq.saturating_sub(1),
                cp.seq
            ),
        )));
    }
    if let Some(f) = seals_vouched_for(key, cps, &seals, rep.first_seq.unwrap_or(1)) {
        return Ok(Some(f));
    }
    if let Some(h) = first_header {
        if h.segment_no > 0 {
            let want = h.segment_no - 1;
            let ok = retention.iter().any(|n| {
                n.through > want
                    || (n.through == want && n.first_kept_prev_head == hex::encode(h.prev_head))
            });
            if !ok {
                return Ok(Some(finding(
                    SegmentRemoved,
                    Some(want),
                    None,
                    format!(
                        "segments before {} are gone and no retention record says so",
                        h.segment_no
                    ),
                )));
            }
            rep.retention_deleted_through = Some(want);
        }
    }
    Ok(None)
}

/// Every checkpoint was made with a seal: the log must still hold that seal,
/// with the same epoch and head. One it lacks was cut off (the "torn tail"
/// of a crash never has a checkpoint: the writer signs one only after its
/// seal is on disk).
fn seals_vouched_for(
    key: &VerifyKey,
    cps: &[Checkpoint],
    seals: &std::collections::BTreeMap<u64, (u64, [u8; 32])>,
    first_seq: u64,
) -> Option<Finding> {
    let log_id = hex::encode(key.log_id);
    for cp in cps {
        if cp.log_id != log_id {
            return Some(finding(
                TamperKind::CheckpointMismatch,
                None,
                Some(cp.seq),
                format!(
                    "checkpoint at seq {} names another log {}",
                    cp.seq, cp.log_id
                ),
            ));
        }
        if cp.seq < first_seq {
            continue; // its seal went with a segment deleted by retention
        }
        match seals.get(&cp.seq) {
            None => {
                return Some(finding(
                    TamperKind::SealRemoved,
                    None,
                    Some(cp.seq),
                    format!(
                        "a checkpoint vouches for the seal of epoch {} over seq ..={}, and the log has no seal there: it was cut off or removed",
                        cp.epoch, cp.seq
                    ),
                ))
            }
            Some((epoch, head)) if *epoch != cp.epoch || hex::encode(head) != cp.head => {
                return Some(finding(
                    TamperKind::CheckpointMismatch,
                    None,
                    Some(cp.seq),
                    format!(
                        "the seal over seq ..={} is of epoch {epoch}, but its checkpoint names epoch {} and another head",
                        cp.seq, cp.epoch
                    ),
                ))
            }
            Some(_) => {}
        }
    }
    None
}

fn later_has(data: &[u8], mut off: usize, seq: u64) -> bool {
    while let Ok(f) = parse_frame(data, off) {
        if f.kind == FrameKind::Record && f.seq == seq {
            return true;
        }
        off += f.len();
    }
    false
}

fn retention_note(payload: &[u8]) -> Option<RetentionNote> {
    let r: crate::record::AuditRecord = serde_json::from_slice(payload).ok()?;
    Some(RetentionNote {
        through: r.details.get("deleted_through_segment")?.parse().ok()?,
        first_kept_prev_head: r.details.get("first_kept_prev_head")?.clone(),
    })
}
