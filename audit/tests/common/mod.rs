//! Setup shared by the audit log's integration tests: a log in a temporary
//! directory, written in the foreground with no free-space floors.

#![allow(dead_code)]

use ferry_audit::{init, AuditLog, AuditOptions, AuditRecord, VerifyKey};
use std::path::PathBuf;

/// Options for a test log: segments of `max_segment_bytes`, a seal every
/// `seal_every_records` records, no compression, no background thread and
/// no free-space refusals.
pub fn test_options(max_segment_bytes: u64, seal_every_records: u64) -> AuditOptions {
    AuditOptions {
        max_segment_bytes,
        seal_every_records,
        compress_archived: false,
        min_free_bytes_accept: 0,
        min_free_bytes_audit: 0,
        background: false,
        ..AuditOptions::default()
    }
}

/// A new log of `n` records made by `rec`, closed (so sealed); returns the
/// temporary directory (keep it alive), the log directory and the verify key.
pub fn make_log_with(
    n: u64,
    opts: AuditOptions,
    rec: impl Fn(u64) -> AuditRecord,
) -> (tempfile::TempDir, PathBuf, VerifyKey) {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("log");
    let vk = init(&dir, &t.path().join("verify.key")).unwrap();
    let log = AuditLog::open(&dir, opts).unwrap();
    for i in 0..n {
        log.append(rec(i)).unwrap();
    }
    log.close().unwrap();
    (t, dir, vk)
}
