//! `ferryctl demo`, the README's first command: it must finish on its own,
//! exit 0, and show each step doing what it says; `--keep DIR` keeps both
//! sides' state in DIR, also where the reviewer accounts cannot reach DIR.

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Longest a demo run may take before the test fails (the README says
/// "under a minute"; this only bounds a hang, it measures nothing).
const DEMO_LIMIT: Duration = Duration::from_secs(300);

/// What `--keep` leaves of both sides: outbox, queue, audit logs, keys.
const KEPT: [&str; 6] = [
    "egress/outbox/landuse-stats-2026.csv",
    "egress/outbox/parcel-owners.csv",
    "ingress/audit",
    "egress/audit",
    "ingress/keys/keyring.toml",
    "ingress/state",
];

/// Runs `ferryctl demo --keep DIR`.
fn demo_keeping(keep: &Path) -> Run {
    ctl_within(&["demo", "--keep", path_str(keep)], DEMO_LIMIT)
}

/// Checks that a demo run passed every step and kept its state in `keep`.
fn assert_passed_and_kept(r: &Run, keep: &Path) {
    assert_eq!(r.code, Some(0), "{r:?}");
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
        assert!(r.stdout.contains(line), "missing `{line}` in: {r:?}");
    }
    for p in KEPT {
        assert!(keep.join(p).exists(), "{p} not kept: {r:?}");
    }
    assert!(!keep.join("egress/outbox/reserve-memo.txt").exists());
}

#[test]
fn the_demo_runs_every_step_and_keeps_state_when_asked() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Open to all, so the demo keeps its state in DIR itself for any user.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let keep = dir.path().join("kept");
    assert_passed_and_kept(&demo_keeping(&keep), &keep);
    assert!(
        !keep.is_symlink(),
        "DIR is reachable: the state is in it, not linked"
    );
    // A second run into the same directory is refused, not mixed in.
    let again = demo_keeping(&keep);
    assert_ne!(again.code, Some(0), "{again:?}");
    assert!(again.stderr.contains("is not empty"), "{again:?}");
}

/// Removes a directory tree when dropped (also when the test fails).
struct RemoveTree(Option<PathBuf>);

impl Drop for RemoveTree {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}

/// As root the demo acts as two reviewer accounts, which must read the
/// ingress configuration: `--keep` under a directory closed to them (like
/// `/root`, or a `mktemp -d`) used to fail at step 4 with "cannot read the
/// configuration file: Permission denied".
#[test]
fn as_root_the_demo_keeps_state_under_a_directory_the_reviewers_cannot_reach() {
    if !root_or_skip("acting as two reviewer accounts (setpriv)") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let private = dir.path().join("private");
    std::fs::create_dir(&private).expect("mkdir");
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let keep = private.join("ferry-demo");
    let mut cleanup = RemoveTree(None);
    let r = demo_keeping(&keep);
    // Whatever happened, the state kept outside `dir` goes at the end.
    cleanup.0 = std::fs::read_link(&keep).ok();
    assert_passed_and_kept(&r, &keep);
    assert_eq!(r.stdout.matches("approved by uid").count(), 2, "{r:?}");
    let work = cleanup.0.clone().expect("DIR is a link to the kept state");
    assert!(work.starts_with("/var/tmp"), "kept in {}", work.display());
    assert!(
        r.stdout.contains(path_str(&work)),
        "the output names where the state is: {r:?}"
    );
    // Nothing above DIR was opened to make this work.
    let mode = std::fs::metadata(&private)
        .expect("stat")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o700, "the private directory was loosened");
}
