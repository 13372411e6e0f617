//! `ferryctl demo`, the README's first command: it must finish on its own,
//! within a minute, exit 0, and show each step doing what it says.

mod common;

use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn the_demo_runs_every_step_and_keeps_state_when_asked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keep = dir.path().join("kept");
    let started = Instant::now();
    let out = Command::new(ferryctl())
        .args(["demo", "--keep"])
        .arg(&keep)
        .output()
        .expect("ferryctl demo");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
    for line in [
        "202, guard: pass",
        "202, guard: masked",
        "403, refused by the guard",
        "held for",
        "approved by",
        "egress guard: pass",
        "not delivered (refused on the ingress side)",
        "demo passed",
    ] {
        assert!(text.contains(line), "missing `{line}` in:\n{text}");
    }
    // --keep leaves both sides' state: outbox, queue, audit logs, keys.
    for p in [
        "egress/outbox/landuse-stats-2026.csv",
        "egress/outbox/parcel-owners.csv",
        "ingress/audit",
        "egress/audit",
        "ingress/keys/keyring.toml",
        "ingress/state",
    ] {
        assert!(keep.join(p).exists(), "{p} not kept");
    }
    assert!(!keep.join("egress/outbox/reserve-memo.txt").exists());
    // A second run into the same directory is refused, not mixed in.
    let again = Command::new(ferryctl())
        .args(["demo", "--keep"])
        .arg(&keep)
        .output()
        .expect("ferryctl demo");
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("is not empty"));
}
