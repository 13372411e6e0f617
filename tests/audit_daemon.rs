//! Real `ferryd` processes writing the audit log: a package's story on both
//! sides, verification by the auditor's tools, tamper detection, and
//! fail-secure intake when the log's disk is low.

mod common;

use common::*;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn ctl(args: &[&str]) -> Output {
    Command::new(ferryctl())
        .args(args)
        .output()
        .expect("ferryctl")
}

fn ok(args: &[&str]) -> String {
    let out = ctl(args);
    assert!(
        out.status.success(),
        "ferryctl {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn add_audit(config: &Path, dir: &Path, min_free: u64) {
    let cfg = std::fs::read_to_string(config).expect("config");
    std::fs::write(
        config,
        format!(
            "{cfg}\n[audit]\ndir = \"{}\"\nmin_free_bytes_accept = {min_free}\n",
            s(dir)
        ),
    )
    .expect("config");
}

#[test]
fn both_sides_audit_a_package_and_the_auditor_verifies_it() {
    let t = tempfile::tempdir().expect("tempdir");
    let tb = testbed(t.path(), |_| {});
    let (ia, ea) = (t.path().join("audit-in"), t.path().join("audit-out"));
    let (ik, ek) = (t.path().join("in.verify"), t.path().join("out.verify"));
    ok(&["audit", "init", "--dir", s(&ia), "--verify-key-out", s(&ik)]);
    ok(&["audit", "init", "--dir", s(&ea), "--verify-key-out", s(&ek)]);
    add_audit(&tb.ingress_config, &ia, 0);
    add_audit(&tb.egress_config, &ea, 0);
    let egress = Daemon::start(&tb.egress_config);
    let ingress = Daemon::start(&tb.ingress_config);
    ferry_daemon::testkit::spool_file(&tb.spool, "parcels.csv", b"id,area\n1,20\n").expect("spool");
    wait_for(Duration::from_secs(30), "delivery", || {
        outbox_files(&tb.outbox) == vec!["parcels.csv".to_string()]
    });
    let side: serde_json::Value = serde_json::from_slice(
        &std::fs::read(tb.outbox.join("parcels.csv.ferry.json")).expect("sidecar"),
    )
    .expect("json");
    let id = side["package_id"].as_str().expect("id").to_owned();
    // The taken spool file ends in .done/ with a receipt naming the package.
    let done = tb.spool.join(".done");
    assert_eq!(
        std::fs::read(done.join("parcels.csv")).expect("done copy"),
        b"id,area\n1,20\n"
    );
    let receipt: serde_json::Value = serde_json::from_slice(
        &std::fs::read(done.join("parcels.csv.ferry.json")).expect("receipt"),
    )
    .expect("json");
    assert_eq!(receipt["package_id"], id.as_str(), "{receipt}");
    assert_eq!(receipt["state"], "queued", "{receipt}");
    // Sent is recorded once the sends complete.
    wait_for(Duration::from_secs(10), "sent", || {
        status(&tb.ingress_config).is_some_and(|v| v["sent"] == 1)
    });
    // While ferryd holds the log, the tools record their use through it.
    let direct = ctl(&["audit", "query", "--dir", s(&ia), "--event", "daemon.start"]);
    assert!(!direct.status.success());
    assert!(String::from_utf8_lossy(&direct.stderr).contains("--via"));
    let live = ok(&[
        "audit",
        "--via",
        s(&tb.ingress_config),
        "query",
        "--dir",
        s(&ia),
        "--package",
        &id,
        "--json",
    ]);
    assert!(live.contains("package.pushed"), "{live}");
    ingress.stop();
    egress.stop();
    let reads = ok(&[
        "audit",
        "query",
        "--dir",
        s(&ia),
        "--event",
        "audit.read",
        "--json",
    ]);
    assert!(
        reads.contains("uid"),
        "the live query was audited with its user: {reads}"
    );

    let trace_in = ok(&["audit", "trace", "--dir", s(&ia), &id]);
    for event in ["package.pushed", "package.sent"] {
        assert!(
            trace_in.contains(event),
            "ingress trace lacks {event}:\n{trace_in}"
        );
    }
    let trace_out = ok(&["audit", "trace", "--dir", s(&ea), &id]);
    assert!(trace_out.contains("package.delivered"), "{trace_out}");
    for (dir, key) in [(&ia, &ik), (&ea, &ek)] {
        let out = ctl(&["audit", "verify", "--dir", s(dir), "--key", s(key)]);
        assert!(
            out.status.success(),
            "verify {}: {}{}",
            dir.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let starts = ok(&[
        "audit",
        "query",
        "--dir",
        s(&ia),
        "--event",
        "daemon.start",
        "--json",
    ]);
    assert!(starts.contains("daemon.start"), "{starts}");

    // One flipped byte in a segment: verify exits 1 and names the record.
    let seg = std::fs::read_dir(&ia)
        .expect("dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("seg") || n.ends_with(".log") || n.ends_with(".seg"))
        })
        .max_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .expect("a segment file");
    let mut bytes = std::fs::read(&seg).expect("read");
    let at = bytes
        .windows(b"parcels.csv".len())
        .position(|w| w == b"parcels.csv")
        .expect("the file name is in a record");
    bytes[at] ^= 0x20;
    std::fs::write(&seg, bytes).expect("write");
    let out = ctl(&["audit", "verify", "--dir", s(&ia), "--key", s(&ik)]);
    assert_eq!(out.status.code(), Some(1), "tampering not detected");
}

#[test]
fn low_audit_disk_stops_intake_before_auditing_stops() {
    let t = tempfile::tempdir().expect("tempdir");
    let tb = testbed(t.path(), |_| {});
    let ia = t.path().join("audit-in");
    ok(&[
        "audit",
        "init",
        "--dir",
        s(&ia),
        "--verify-key-out",
        s(&t.path().join("k")),
    ]);
    // A floor no disk can meet: the log itself still writes (its own floor
    // is lower), but no package is taken.
    add_audit(&tb.ingress_config, &ia, u64::MAX / 2);
    let _ingress = Daemon::start(&tb.ingress_config);
    ferry_daemon::testkit::spool_file(&tb.spool, "held.csv", b"x\n").expect("spool");
    wait_for(Duration::from_secs(15), "intake alarm", || {
        status(&tb.ingress_config).is_some_and(|v| {
            v["alarms"].as_array().is_some_and(|a| {
                a.iter()
                    .any(|x| x.as_str().is_some_and(|m| m.contains("intake stopped")))
            })
        })
    });
    assert!(
        tb.spool.join("held.csv").exists(),
        "the file stays in the spool"
    );
    assert_eq!(status(&tb.ingress_config).expect("status")["taken"], 0);
}
