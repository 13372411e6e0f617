//! The hardening baseline of a running `ferryd`, read back from /proc the
//! way an operator (or `selfcheck`, when it exists) would.

mod common;

use common::*;
use std::time::Duration;

#[test]
fn running_ferryd_has_the_baseline_in_force() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tb = testbed(dir.path(), |_| {});
    let egress = Daemon::start(&tb.egress_config);
    let pid = egress.child.id();
    let mut st = serde_json::Value::Null;
    wait_for(Duration::from_secs(15), "status", || {
        st = status(&tb.egress_config).unwrap_or_default();
        st["role"] == "egress"
    });
    let proc_status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    assert!(proc_status.contains("NoNewPrivs:\t1"), "{proc_status}");
    assert!(proc_status.contains("Umask:\t0077"), "{proc_status}");
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .expect("core line");
    assert!(
        core.split_whitespace().filter(|w| *w == "0").count() >= 2,
        "{core}"
    );
    let h = &st["hardening"];
    assert_eq!(h["not_dumpable"], true, "{st}");
    assert_eq!(h["no_new_privs"], true, "{st}");
    assert_eq!(h["failures"], serde_json::json!([]), "{st}");
}
