//! Real `ferryd` processes writing the audit log: a package's story on both
//! sides, verification by the auditor's tools, tamper detection, and
//! fail-secure intake when the log's disk is low.

mod common;

use common::*;
use std::path::Path;
use std::time::Duration;

fn add_audit(config: &Path, dir: &Path, min_free: u64) {
    append_config(
        config,
        &format!(
            "[audit]\ndir = \"{}\"\nmin_free_bytes_accept = {min_free}\n",
            path_str(dir)
        ),
    );
}

#[test]
fn both_sides_audit_a_package_and_the_auditor_verifies_it() {
    let t = tempfile::tempdir().expect("tempdir");
    let tb = testbed(t.path(), |_| {});
    let (ia, ea) = (t.path().join("audit-in"), t.path().join("audit-out"));
    let (ik, ek) = (t.path().join("in.verify"), t.path().join("out.verify"));
    ctl_ok(&[
        "audit",
        "init",
        "--dir",
        path_str(&ia),
        "--verify-key-out",
        path_str(&ik),
    ]);
    ctl_ok(&[
        "audit",
        "init",
        "--dir",
        path_str(&ea),
        "--verify-key-out",
        path_str(&ek),
    ]);
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
    let direct = ctl(&[
        "audit",
        "query",
        "--dir",
        path_str(&ia),
        "--event",
        "daemon.start",
    ]);
    assert!(!direct.status.success());
    assert!(String::from_utf8_lossy(&direct.stderr).contains("--via"));
    let live = ctl_ok(&[
        "audit",
        "--via",
        path_str(&tb.ingress_config),
        "query",
        "--dir",
        path_str(&ia),
        "--package",
        &id,
        "--json",
    ]);
    assert!(live.contains("package.pushed"), "{live}");
    ingress.stop();
    egress.stop();
    let reads = ctl_ok(&[
        "audit",
        "query",
        "--dir",
        path_str(&ia),
        "--event",
        "audit.read",
        "--json",
    ]);
    assert!(
        reads.contains("uid"),
        "the live query was audited with its user: {reads}"
    );

    let trace_in = ctl_ok(&["audit", "trace", "--dir", path_str(&ia), &id]);
    for event in ["package.pushed", "package.sent"] {
        assert!(
            trace_in.contains(event),
            "ingress trace lacks {event}:\n{trace_in}"
        );
    }
    let trace_out = ctl_ok(&["audit", "trace", "--dir", path_str(&ea), &id]);
    assert!(trace_out.contains("package.delivered"), "{trace_out}");
    for (dir, key) in [(&ia, &ik), (&ea, &ek)] {
        let out = ctl(&[
            "audit",
            "verify",
            "--dir",
            path_str(dir),
            "--key",
            path_str(key),
        ]);
        assert!(
            out.status.success(),
            "verify {}: {}{}",
            dir.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let starts = ctl_ok(&[
        "audit",
        "query",
        "--dir",
        path_str(&ia),
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
    let out = ctl(&[
        "audit",
        "verify",
        "--dir",
        path_str(&ia),
        "--key",
        path_str(&ik),
    ]);
    assert_eq!(out.status.code(), Some(1), "tampering not detected");
}

#[test]
fn low_audit_disk_stops_intake_before_auditing_stops() {
    let t = tempfile::tempdir().expect("tempdir");
    let tb = testbed(t.path(), |_| {});
    let ia = t.path().join("audit-in");
    ctl_ok(&[
        "audit",
        "init",
        "--dir",
        path_str(&ia),
        "--verify-key-out",
        path_str(&t.path().join("k")),
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
