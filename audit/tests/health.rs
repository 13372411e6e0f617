//! The per-package health check reads a cached free-space figure; a
//! refusal must still rest on the floor, never on a stale "plenty".

use ferry_audit::{init, AuditLog, AuditOptions};

fn open(floor: u64) -> (tempfile::TempDir, AuditLog) {
    let t = tempfile::tempdir().expect("tempdir");
    let dir = t.path().join("log");
    init(&dir, &t.path().join("vk")).expect("init");
    let opts = AuditOptions {
        min_free_bytes_accept: floor,
        min_free_bytes_audit: 0,
        background: false,
        ..AuditOptions::default()
    };
    let log = AuditLog::open(&dir, opts).expect("open");
    (t, log)
}

#[test]
fn the_cached_health_check_refuses_below_the_accept_floor_and_accepts_above_it() {
    let (_t, log) = open(u64::MAX);
    let h = log.health_cached();
    assert!(!h.accepting_packages, "{h:?}");
    assert!(h.auditing, "the audit floor is 0: {h:?}");
    assert_eq!(h.accept_floor_bytes, u64::MAX);
    let (_t, log) = open(0);
    let (cached, fresh) = (log.health_cached(), log.health());
    assert!(cached.accepting_packages, "{cached:?}");
    assert!(
        cached.free_bytes > 0 && fresh.free_bytes > 0,
        "{cached:?} {fresh:?}"
    );
}
