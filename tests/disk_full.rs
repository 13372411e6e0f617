//! The egress outbox fills up: nothing partial is delivered, an alarm is
//! raised, and delivery resumes when space returns (the lost package by an
//! operator resend).

mod common;

use common::*;
use std::process::Command;
use std::time::Duration;

struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn full_outbox_raises_an_alarm_and_resumes_when_space_returns() {
    if !is_root() {
        eprintln!("skipped: needs root to mount a small tmpfs as the outbox");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let tb = testbed(dir.path(), |_| {});
    std::fs::create_dir_all(&tb.outbox).expect("outbox dir");
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs"])
        .arg(&tb.outbox)
        .status()
        .expect("mount");
    assert!(ok.success(), "mount tmpfs");
    let _mount = Mount(tb.outbox.clone());
    let _egress = Daemon::start(&tb.egress_config);
    let _ingress = Daemon::start(&tb.ingress_config);

    let first = content(1, 3 << 20);
    ferry_daemon::testbed::spool_file(&tb.spool, "first.bin", &first).expect("spool");
    wait_for(Duration::from_secs(30), "first delivery", || {
        outbox_files(&tb.outbox) == vec!["first.bin".to_string()]
    });

    // 6 MiB more does not fit in the 8 MiB outbox.
    let big = content(2, 6 << 20);
    ferry_daemon::testbed::spool_file(&tb.spool, "big.bin", &big).expect("spool");
    wait_for(Duration::from_secs(30), "disk-full alarm", || {
        status(&tb.egress_config).is_some_and(|s| {
            s["alarms"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x.as_str().unwrap_or("").contains("full")))
        })
    });
    assert_eq!(
        outbox_files(&tb.outbox),
        vec!["first.bin".to_string()],
        "nothing partial"
    );
    let staging_empty = std::fs::read_dir(tb.outbox.join(".staging"))
        .map(|mut r| r.next().is_none())
        .unwrap_or(true);
    assert!(staging_empty, "staging removed");

    // Space returns (the consumer takes the first file); the operator
    // resends the lost package.
    std::fs::remove_file(tb.outbox.join("first.bin")).expect("consume");
    std::fs::remove_file(tb.outbox.join("first.bin.ferry.json")).expect("consume");
    let out = Command::new(ferryctl())
        .args(["resend", "--seq", "0..10", "--config"])
        .arg(&tb.ingress_config)
        .output()
        .expect("resend");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for(
        Duration::from_secs(60),
        "big delivered after space returned",
        || outbox_files(&tb.outbox) == vec!["big.bin".to_string()],
    );
    assert!(std::fs::read(tb.outbox.join("big.bin")).expect("read") == big);
    wait_for(Duration::from_secs(10), "alarm cleared", || {
        status(&tb.egress_config)
            .is_some_and(|s| s["alarms"].as_array().is_some_and(|a| a.is_empty()))
    });
}
