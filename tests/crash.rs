//! kill -9 of either daemon mid-transfer: nothing delivered twice, nothing
//! partial, the interrupted package delivered after the restart.

mod common;

use common::*;
use std::time::Duration;

fn staging_is_empty(outbox: &std::path::Path) -> bool {
    std::fs::read_dir(outbox.join(".staging"))
        .map(|mut r| r.next().is_none())
        .unwrap_or(true)
}

#[test]
fn egress_killed_mid_transfer_then_restarted() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Paced to 20 MB/s so a 48 MiB package is surely in flight when the
    // egress dies, and sent twice so the second send arrives after the
    // restart.
    let tb = testbed(dir.path(), |o| {
        o.rate_bytes_per_s = 20_000_000;
        o.redundancy = 2;
    });
    let egress = Daemon::start(&tb.egress_config);
    let _ingress = Daemon::start(&tb.ingress_config);
    let big = content(1, 48 << 20);
    ferry_daemon::testbed::spool_file(&tb.spool, "big.bin", &big).expect("spool");
    wait_for(Duration::from_secs(30), "staging in progress", || {
        std::fs::read_dir(tb.outbox.join(".staging"))
            .map(|mut r| r.next().is_some())
            .unwrap_or(false)
    });
    egress.kill9();
    assert!(
        outbox_files(&tb.outbox).is_empty(),
        "nothing partial delivered"
    );
    let _egress = Daemon::start(&tb.egress_config);
    wait_for(Duration::from_secs(120), "delivery after restart", || {
        outbox_files(&tb.outbox) == vec!["big.bin".to_string()]
    });
    let got = std::fs::read(tb.outbox.join("big.bin")).expect("read");
    assert!(got == big, "bit-exact");
    // The rest of the second send (and heartbeats) must not deliver again.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(outbox_files(&tb.outbox), vec!["big.bin".to_string()]);
    assert!(staging_is_empty(&tb.outbox));
}

#[test]
fn ingress_killed_mid_transfer_then_restarted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tb = testbed(dir.path(), |o| o.rate_bytes_per_s = 20_000_000);
    let _egress = Daemon::start(&tb.egress_config);
    let ingress = Daemon::start(&tb.ingress_config);
    let big = content(2, 48 << 20);
    let small = content(3, 1000);
    ferry_daemon::testbed::spool_file(&tb.spool, "big.bin", &big).expect("spool");
    wait_for(Duration::from_secs(30), "egress staging", || {
        std::fs::read_dir(tb.outbox.join(".staging"))
            .map(|mut r| r.next().is_some())
            .unwrap_or(false)
    });
    ingress.kill9();
    ferry_daemon::testbed::spool_file(&tb.spool, "small.bin", &small).expect("spool");
    let _ingress = Daemon::start(&tb.ingress_config);
    wait_for(Duration::from_secs(120), "both delivered", || {
        outbox_files(&tb.outbox) == vec!["big.bin".to_string(), "small.bin".to_string()]
    });
    assert!(std::fs::read(tb.outbox.join("big.bin")).expect("read") == big);
    assert!(std::fs::read(tb.outbox.join("small.bin")).expect("read") == small);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(outbox_files(&tb.outbox).len(), 2, "nothing delivered twice");
    assert!(staging_is_empty(&tb.outbox));
}
