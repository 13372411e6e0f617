//! Reading the log for the audit officer: filters, a package's trace, and
//! export formats (JSON lines, RFC 5424 syslog, CSV).
//!
//! Reads scan the segments (skipping whole segments outside a time range);
//! they do not verify — `verify` does that.

use crate::error::AuditError;
use crate::record::{AuditRecord, EventKind, Outcome, StoredRecord};
use crate::segment::{
    list_segments, parse_frame, read_segment, FrameKind, SegmentHeader, HEADER_LEN,
};
use std::path::Path;

/// What to select. Empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Records at or after this time (ms, UTC).
    pub since_ms: Option<i64>,
    /// Records before this time (ms, UTC).
    pub until_ms: Option<i64>,
    /// Actor id.
    pub actor: Option<String>,
    /// Channel.
    pub channel: Option<String>,
    /// Package id.
    pub package: Option<String>,
    /// Event kind.
    pub event: Option<EventKind>,
    /// Outcome.
    pub outcome: Option<Outcome>,
    /// Records with seq greater than this.
    pub after_seq: Option<u64>,
}

impl Filter {
    /// Whether a record matches.
    pub fn matches(&self, r: &StoredRecord) -> bool {
        self.since_ms.is_none_or(|t| r.time_ms >= t)
            && self.until_ms.is_none_or(|t| r.time_ms < t)
            && self.after_seq.is_none_or(|s| r.seq > s)
            && self.actor.as_ref().is_none_or(|a| &r.record.actor.id == a)
            && self
                .channel
                .as_ref()
                .is_none_or(|c| r.record.channel.as_ref() == Some(c))
            && self
                .package
                .as_ref()
                .is_none_or(|p| r.record.package.as_ref() == Some(p))
            && self.event.is_none_or(|e| r.record.event == e)
            && self.outcome.is_none_or(|o| r.record.outcome == o)
    }
}

/// Calls `f` for each record of the log in order, skipping segments that
/// cannot hold a match by time. Stops early if `f` returns false.
pub fn scan(
    dir: &Path,
    filter: &Filter,
    mut f: impl FnMut(StoredRecord) -> bool,
) -> Result<(), AuditError> {
    let segs = list_segments(dir)?;
    // Cheap pre-filter: a record for this package contains these bytes
    // (serde_json writes strings escaped the same way), so most records are
    // skipped without being parsed.
    let needle = filter
        .package
        .as_ref()
        .map(|p| format!("\"package\":{}", serde_json::Value::from(p.as_str())));
    // Segment i holds records from its creation up to segment i+1's creation.
    let mut created: Vec<Option<i64>> = Vec::with_capacity(segs.len());
    for s in &segs {
        created.push(header_time(s));
    }
    for (i, seg) in segs.iter().enumerate() {
        if let (Some(since), Some(Some(next))) = (filter.since_ms, created.get(i + 1)) {
            if *next < since {
                continue;
            }
        }
        if let (Some(until), Some(start)) = (filter.until_ms, created[i]) {
            if start >= until {
                break;
            }
        }
        let data = read_segment(seg)?;
        let mut off = HEADER_LEN;
        while let Ok(fr) = parse_frame(&data, off) {
            off += fr.len();
            if fr.kind != FrameKind::Record {
                continue;
            }
            if filter.after_seq.is_some_and(|s| fr.seq <= s) {
                continue;
            }
            if let Some(n) = &needle {
                match std::str::from_utf8(fr.payload) {
                    Ok(text) if text.contains(n.as_str()) => {}
                    _ => continue,
                }
            }
            let Ok(record) = serde_json::from_slice::<AuditRecord>(fr.payload) else {
                continue;
            };
            let r = StoredRecord {
                seq: fr.seq,
                time_ms: fr.time_ms,
                record,
            };
            if filter.matches(&r) && !f(r) {
                return Ok(());
            }
        }
    }
    Ok(())
}

fn header_time(s: &crate::segment::SegmentFile) -> Option<i64> {
    use std::io::Read;
    let file = std::fs::File::open(&s.path).ok()?;
    let mut b = [0u8; HEADER_LEN];
    if s.compressed {
        flate2::read::GzDecoder::new(file).read_exact(&mut b).ok()?;
    } else {
        let mut file = file;
        file.read_exact(&mut b).ok()?;
    }
    SegmentHeader::decode(&b).map(|h| h.created_ms)
}

/// All records matching `filter`, in order. A filter on a package id uses
/// the redb index (caught up, or rebuilt, on the way); if the index cannot
/// be written here (read-only access) the segments are scanned instead.
pub fn query(dir: &Path, filter: &Filter) -> Result<Vec<StoredRecord>, AuditError> {
    if let Some(pkg) = &filter.package {
        if let Ok(idx) = crate::index::PackageIndex::open(dir) {
            let mut v = idx.package_records(pkg)?;
            v.retain(|r| filter.matches(r));
            return Ok(v);
        }
    }
    query_scan(dir, filter)
}

/// All records matching `filter`, by scanning the segments (no index).
pub fn query_scan(dir: &Path, filter: &Filter) -> Result<Vec<StoredRecord>, AuditError> {
    let mut out = Vec::new();
    scan(dir, filter, |r| {
        out.push(r);
        true
    })?;
    Ok(out)
}

/// A package's whole story, in order.
pub fn trace(dir: &Path, package: &str) -> Result<Vec<StoredRecord>, AuditError> {
    query(
        dir,
        &Filter {
            package: Some(package.to_string()),
            ..Filter::default()
        },
    )
}

/// The last seq a seal covers (0 if none): records after it are not yet
/// protected by a seal, and `query`/`trace`/`tail` mark them so. Reads the
/// segments from the newest back to the first one holding a seal (normally
/// only the active segment).
pub fn sealed_through(dir: &Path) -> Result<u64, AuditError> {
    let segs = list_segments(dir)?;
    for seg in segs.iter().rev() {
        let data = read_segment(seg)?;
        let mut off = HEADER_LEN;
        let mut last = None;
        while let Ok(fr) = parse_frame(&data, off) {
            off += fr.len();
            if fr.kind == FrameKind::Seal {
                last = Some(fr.seq);
            }
        }
        if let Some(s) = last {
            return Ok(s);
        }
    }
    Ok(0)
}

/// What the officer's listings add to a record no seal covers yet.
pub const UNSEALED_MARK: &str = "[unsealed: no seal covers this record yet]";

/// One JSON line with `"sealed": true|false` (whether a seal covers it).
pub fn to_json_marked(r: &StoredRecord, sealed: bool) -> String {
    let mut v = serde_json::to_value(r).unwrap_or(serde_json::Value::Null);
    if let Some(o) = v.as_object_mut() {
        o.insert("time".into(), crate::time_fmt::rfc3339(r.time_ms).into());
        o.insert("sealed".into(), sealed.into());
    }
    v.to_string()
}

/// One table row, marked when no seal covers the record yet.
pub fn to_table_row_marked(r: &StoredRecord, sealed: bool) -> String {
    let row = to_table_row(r);
    if sealed {
        row
    } else {
        format!("{row}  {UNSEALED_MARK}")
    }
}

/// One JSON line.
pub fn to_json(r: &StoredRecord) -> String {
    let mut v = serde_json::to_value(r).unwrap_or(serde_json::Value::Null);
    if let Some(o) = v.as_object_mut() {
        o.insert("time".into(), crate::time_fmt::rfc3339(r.time_ms).into());
    }
    v.to_string()
}

fn sd_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace(']', "\\]")
}

/// One RFC 5424 line (facility security/authorization 10, severity notice
/// for successes and warning for refusals/failures); the structured data
/// carries the fields, the message the JSON.
pub fn to_syslog(r: &StoredRecord, hostname: &str) -> String {
    let sev = match r.record.outcome {
        Outcome::Success | Outcome::Allowed => 5,
        Outcome::Failure | Outcome::Refused => 4,
    };
    let pri = 10 * 8 + sev;
    let mut sd = format!(
        "[ferryAudit@32473 seq=\"{}\" event=\"{}\" actor=\"{}\" role=\"{}\" outcome=\"{}\"",
        r.seq,
        r.record.event,
        sd_escape(&r.record.actor.id),
        r.record.actor.role.as_str(),
        r.record.outcome.as_str()
    );
    for (k, v) in [
        ("package", &r.record.package),
        ("channel", &r.record.channel),
        ("rule", &r.record.rule),
    ] {
        if let Some(v) = v {
            sd.push_str(&format!(" {k}=\"{}\"", sd_escape(v)));
        }
    }
    sd.push(']');
    format!(
        "<{pri}>1 {} {} ferry-audit - {} {sd} {}",
        crate::time_fmt::rfc3339(r.time_ms),
        if hostname.is_empty() { "-" } else { hostname },
        r.record.event,
        to_json(r)
    )
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// CSV header line.
pub const CSV_HEADER: &str =
    "seq,time,event,actor,role,package,channel,rule,policy_hash,outcome,reason,details";

/// One CSV line.
pub fn to_csv(r: &StoredRecord) -> String {
    let o = |v: &Option<String>| csv_field(v.as_deref().unwrap_or(""));
    let details = serde_json::to_string(&r.record.details).unwrap_or_default();
    format!(
        "{},{},{},{},{},{},{},{},{},{},{},{}",
        r.seq,
        crate::time_fmt::rfc3339(r.time_ms),
        r.record.event,
        csv_field(&r.record.actor.id),
        r.record.actor.role.as_str(),
        o(&r.record.package),
        o(&r.record.channel),
        o(&r.record.rule),
        o(&r.record.policy_hash),
        r.record.outcome.as_str(),
        o(&r.record.reason),
        csv_field(&details)
    )
}

/// One table row (fixed-width columns).
pub fn to_table_row(r: &StoredRecord) -> String {
    format!(
        "{:>8}  {}  {:<18} {:<24} {:<10} {:<28} {}",
        r.seq,
        crate::time_fmt::rfc3339(r.time_ms),
        r.record.event.as_str(),
        format!("{}({})", r.record.actor.id, r.record.actor.role.as_str()),
        r.record.outcome.as_str(),
        r.record.package.as_deref().unwrap_or("-"),
        r.record.reason.as_deref().unwrap_or("")
    )
}
