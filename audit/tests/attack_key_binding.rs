//! Adversarial suite, audit log (issue 14, F25 and the key-file half of
//! F24): the writer seals only with its own log's keys. A careless
//! operator who restores another log's `seal.key` (or a loose copy of one)
//! gets a clear refusal, not a log sealed with the wrong key that `verify`
//! later misnames.

use ferry_audit::{
    init, verify, Actor, AuditError, AuditLog, AuditOptions, AuditRecord, EventKind, Outcome,
};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn opts() -> AuditOptions {
    AuditOptions {
        compress_archived: false,
        min_free_bytes_accept: 0,
        min_free_bytes_audit: 0,
        background: false,
        ..AuditOptions::default()
    }
}

fn fill(dir: &Path, n: u64) {
    let log = AuditLog::open(dir, opts()).unwrap();
    for i in 0..n {
        log.append(
            AuditRecord::new(EventKind::PackageSent, Actor::system(), Outcome::Success)
                .package(format!("pkg-{i}")),
        )
        .unwrap();
    }
    log.close().unwrap();
}

fn log_id(dir: &Path) -> String {
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("log.meta")).unwrap()).unwrap();
    meta["log_id"].as_str().unwrap().to_string()
}

/// The case: log A's seal.key replaced by log B's. Opening A for
/// writing is refused, naming both logs; nothing is written to A, which
/// still verifies.
#[test]
fn writer_refuses_another_logs_seal_key() {
    let t = tempfile::tempdir().unwrap();
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    let vka = init(&a, &t.path().join("a.key")).unwrap();
    init(&b, &t.path().join("b.key")).unwrap();
    fill(&a, 10);
    fill(&b, 10);
    std::fs::copy(b.join("seal.key"), a.join("seal.key")).unwrap();
    let before = std::fs::read(
        ferry_audit::segment::list_segments(&a).unwrap()[0]
            .path
            .clone(),
    )
    .unwrap();
    match AuditLog::open(&a, opts()) {
        Err(e @ AuditError::KeyMismatch { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains(&log_id(&b)) && msg.contains(&log_id(&a)),
                "{msg}"
            );
            assert!(msg.contains("refuses"), "{msg}");
        }
        Err(e) => panic!("wrong refusal: {e}"),
        Ok(_) => panic!("the writer accepted another log's seal.key"),
    }
    let after = std::fs::read(
        ferry_audit::segment::list_segments(&a).unwrap()[0]
            .path
            .clone(),
    )
    .unwrap();
    assert_eq!(before, after, "the refused open wrote to the log");
    assert!(verify(&a, &vka, None).unwrap().intact());
}

/// An older copy of this log's own seal.key (a backup restored after the
/// log moved on) does not fit the log either: refused, not silently
/// evolved.
#[test]
fn writer_refuses_a_stale_copy_of_its_own_seal_key() {
    let t = tempfile::tempdir().unwrap();
    let a = t.path().join("a");
    init(&a, &t.path().join("a.key")).unwrap();
    fill(&a, 3);
    let backup = std::fs::read(a.join("seal.key")).unwrap();
    for _ in 0..3 {
        fill(&a, 3);
    }
    std::fs::write(a.join("seal.key"), backup).unwrap();
    assert!(matches!(
        AuditLog::open(&a, opts()),
        Err(AuditError::KeyMismatch { .. })
    ));
}

/// Key files that group or others may read or change are refused: the
/// seal key and writer key (seal.key) and the checkpoint key.
#[test]
fn writer_refuses_loose_key_files() {
    for file in ["seal.key", "checkpoint.key"] {
        let t = tempfile::tempdir().unwrap();
        let a = t.path().join("a");
        init(&a, &t.path().join("a.key")).unwrap();
        let p = a.join(file);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        match AuditLog::open(&a, opts()) {
            Err(e @ AuditError::KeyMode { .. }) => {
                assert!(e.to_string().contains("chmod 600"), "{e}")
            }
            Err(e) => panic!("{file}: wrong refusal: {e}"),
            Ok(_) => panic!("{file}: a world-readable key file was accepted"),
        }
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        fill(&a, 1);
    }
}
