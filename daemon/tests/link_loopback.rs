//! Two real `ferryd` processes on loopback.

mod common;

use common::*;
use std::time::Duration;

#[test]
fn hundred_files_of_mixed_sizes_arrive_bit_exact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tb = testbed(dir.path(), |_| {});
    let _egress = Daemon::start(&tb.egress_config);
    let _ingress = Daemon::start(&tb.ingress_config);
    // 0 B up to 64 MiB: the boundaries of chunks, symbols and blocks, and
    // one large file.
    let mut sizes: Vec<usize> = vec![
        0,
        1,
        15,
        16,
        17,
        1423,
        1424,
        1425,
        65_535,
        65_536,
        65_537,
        1_458_176,
        1_458_177,
        64 << 20,
    ];
    let mut i = 0u64;
    while sizes.len() < 100 {
        i += 1;
        sizes.push(((i * 7919) % 300_000) as usize);
    }
    let mut expect = Vec::new();
    for (n, size) in sizes.iter().enumerate() {
        let name = format!("f{n:03}.bin");
        let data = content(n as u64, *size);
        ferry_daemon::testkit::spool_file(&tb.spool, &name, &data).expect("spool");
        expect.push((name, data));
    }
    wait_for(Duration::from_secs(240), "100 deliveries", || {
        outbox_files(&tb.outbox).len() == 100
    });
    for (name, data) in &expect {
        let got = std::fs::read(tb.outbox.join(name)).expect("delivered file");
        assert!(got == *data, "{name} differs");
        let side: serde_json::Value = serde_json::from_slice(
            &std::fs::read(tb.outbox.join(format!("{name}.ferry.json"))).expect("sidecar"),
        )
        .expect("sidecar json");
        assert_eq!(side["size"], serde_json::json!(data.len()));
    }
    // Every file was taken: only the .done/ record is left, with each file
    // and its receipt.
    let left: Vec<String> = std::fs::read_dir(&tb.spool)
        .expect("spool")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, vec![".done".to_string()], "spool emptied");
    assert_eq!(
        std::fs::read_dir(tb.spool.join(".done"))
            .expect(".done")
            .count(),
        200,
        "100 files and 100 receipts in .done/"
    );
}

#[test]
fn resend_of_a_delivered_package_is_suppressed_not_delivered_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tb = testbed(dir.path(), |_| {});
    let _egress = Daemon::start(&tb.egress_config);
    let _ingress = Daemon::start(&tb.ingress_config);
    ferry_daemon::testkit::spool_file(&tb.spool, "a.csv", b"x,y\n1,2\n").expect("spool");
    wait_for(Duration::from_secs(30), "delivery", || {
        outbox_files(&tb.outbox) == vec!["a.csv".to_string()]
    });
    let side: serde_json::Value = serde_json::from_slice(
        &std::fs::read(tb.outbox.join("a.csv.ferry.json")).expect("sidecar"),
    )
    .expect("json");
    let id = side["package_id"].as_str().expect("id").to_string();
    let v = resend(&tb.ingress_config, &id);
    assert_eq!(v["requeued"].as_array().map(|a| a.len()), Some(1), "{v}");
    wait_for(Duration::from_secs(30), "duplicate suppressed", || {
        status(&tb.egress_config)
            .is_some_and(|s| s["duplicates_suppressed"] == serde_json::json!(1))
    });
    assert_eq!(outbox_files(&tb.outbox), vec!["a.csv".to_string()]);
}

#[test]
fn bad_resend_requests_get_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tb = testbed(dir.path(), |_| {});
    let out = std::process::Command::new(ferryctl())
        .args(["resend", "--seq", "9..3", "--config"])
        .arg(&tb.ingress_config)
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("range is empty"));
    let out = std::process::Command::new(ferryctl())
        .args(["resend", "--seq", "1..3", "--config"])
        .arg(&tb.ingress_config)
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is ferryd running"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn shipped_example_configurations_parse() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    for f in ["ferryd-ingress.toml", "ferryd-egress.toml"] {
        let cfg = ferry_daemon::config::load(&root.join(f));
        assert!(
            cfg.is_ok(),
            "{f}: {}",
            cfg.err().map(|e| e.to_string()).unwrap_or_default()
        );
    }
}

#[test]
fn gm_suite_link_delivers_bit_exact_with_sm3_digests() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tb = testbed(dir.path(), |o| o.suite = ferry_keys::Suite::Gm);
    let _egress = Daemon::start(&tb.egress_config);
    let _ingress = Daemon::start(&tb.ingress_config);
    let sizes = [0usize, 1, 65_536, 65_537, 3 << 20];
    for (n, size) in sizes.iter().enumerate() {
        let data = content(100 + n as u64, *size);
        ferry_daemon::testkit::spool_file(&tb.spool, &format!("g{n}.bin"), &data).expect("spool");
    }
    wait_for(Duration::from_secs(120), "gm deliveries", || {
        outbox_files(&tb.outbox).len() == sizes.len()
    });
    for (n, size) in sizes.iter().enumerate() {
        let name = format!("g{n}.bin");
        let got = std::fs::read(tb.outbox.join(&name)).expect("delivered");
        assert!(got == content(100 + n as u64, *size), "{name} differs");
        let side: serde_json::Value = serde_json::from_slice(
            &std::fs::read(tb.outbox.join(format!("{name}.ferry.json"))).expect("sidecar"),
        )
        .expect("json");
        assert_eq!(side["suite"], "gm");
        assert_eq!(side["digest_algorithm"], "sm3");
        assert_eq!(
            side["digest"].as_str().expect("digest"),
            hex::encode(ferry_suites::gm::sm3(&got))
        );
        assert!(side["signing_key_id"]
            .as_str()
            .is_some_and(|k| k.starts_with("sig-")));
    }
}

/// A file renamed into the spool (the spool's convention: write `.x`, then
/// rename) is complete and taken without the settle wait; one written in
/// place is taken only once it stopped changing, so a writer that pauses
/// mid-file is not cut short. The receipt in `.done/` says which.
#[test]
fn renamed_spool_files_are_taken_at_once_and_files_written_in_place_after_they_settle() {
    use std::io::Write;
    let dir = tempfile::tempdir().expect("tempdir");
    let tb = testbed(dir.path(), |_| {});
    let _egress = Daemon::start(&tb.egress_config);
    // The per-package lines are at `debug` under `ferry::package`; the
    // documented directive shows them (the log check at the end).
    let ingress = Daemon::start_with(
        &tb.ingress_config,
        &["env", "RUST_LOG=info,ferry::package=debug"],
    );
    // Written in place in two halves with a pause shorter than the settle
    // time between them: taken whole, after the second half.
    let slow = content(2, 200_000);
    let mut f = std::fs::File::create(tb.spool.join("in-place.bin")).expect("create");
    f.write_all(&slow[..100_000]).expect("first half");
    f.sync_all().expect("sync");
    std::thread::sleep(Duration::from_millis(300));
    f.write_all(&slow[100_000..]).expect("second half");
    drop(f);
    wait_for(
        Duration::from_secs(60),
        "the file written in place delivered",
        || outbox_files(&tb.outbox).len() == 1,
    );
    // The intake has scanned since (it took that file), so its watch is in
    // place: a file there before it started would settle like any other.
    let renamed = content(1, 100_000);
    ferry_daemon::testkit::spool_file(&tb.spool, "renamed.bin", &renamed).expect("spool");
    wait_for(
        Duration::from_secs(60),
        "the renamed file delivered",
        || outbox_files(&tb.outbox).len() == 2,
    );
    for (name, want, after) in [
        ("renamed.bin", &renamed, "rename"),
        ("in-place.bin", &slow, "settle"),
    ] {
        let got = std::fs::read(tb.outbox.join(name)).expect("delivered");
        assert!(got == *want, "{name} differs ({} bytes)", got.len());
        let receipt: serde_json::Value = serde_json::from_slice(
            &std::fs::read(tb.spool.join(".done").join(format!("{name}.ferry.json")))
                .expect("receipt"),
        )
        .expect("receipt json");
        assert_eq!(receipt["taken_after"], after, "{name}: {receipt}");
    }
    let log = ingress.log_text();
    assert!(
        log.contains("file=renamed.bin") && log.contains("after=\"rename\""),
        "{log}"
    );
}

/// A careless writer renames its file into the spool and goes on writing
/// into it. Taken at once, the file changes while it is decided on and
/// digested: it must not be sent as it was at that moment (the policy
/// would have judged a smaller file, and the package would be a prefix).
/// It goes back into the spool, settles once the writer stops, and is
/// delivered whole.
#[test]
fn a_spool_file_still_written_after_its_rename_is_put_back_and_delivered_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tb = testbed(dir.path(), |_| {});
    let _egress = Daemon::start(&tb.egress_config);
    let ingress = Daemon::start(&tb.ingress_config);
    // The intake is scanning (and watching) once it took a first file.
    ferry_daemon::testkit::spool_file(&tb.spool, "first.bin", b"first").expect("spool");
    wait_for(Duration::from_secs(60), "the first file delivered", || {
        outbox_files(&tb.outbox).len() == 1
    });
    // Taking it (digest, fsync) lasts long enough that the writer's
    // appends land inside it. (Without the check this delivers a prefix
    // of the file.)
    let whole = spool_growing_file(&tb.spool, "growing.bin");
    wait_for(Duration::from_secs(120), "the grown file delivered", || {
        outbox_files(&tb.outbox).len() == 2
    });
    let got = std::fs::read(tb.outbox.join("growing.bin")).expect("delivered");
    assert!(
        got.len() == whole.len() && got == whole,
        "delivered {} bytes of {}",
        got.len(),
        whole.len()
    );
    let receipt: serde_json::Value = serde_json::from_slice(
        &std::fs::read(tb.spool.join(".done/growing.bin.ferry.json")).expect("receipt"),
    )
    .expect("receipt json");
    assert_eq!(receipt["taken_after"], "settle", "{receipt}");
    assert_eq!(receipt["size"], serde_json::json!(whole.len()));
    let st = status(&tb.ingress_config).expect("status");
    assert!(st["spool_retakes"].as_u64().unwrap_or(0) >= 1, "{st}");
    assert!(
        ingress
            .log_text()
            .contains("spool file changed while it was taken"),
        "the put-back is logged"
    );
}

/// A spool file rewritten after it was taken (here through its `.done/`
/// hard link; a writer that kept its descriptor is the same) is never
/// delivered mixed: the sender seals what it reads, the egress side finds
/// the plaintext's digest differs from the signed one, fails the package
/// (counted, logged with that reason) and leaves nothing in the outbox.
#[test]
fn a_spool_file_rewritten_after_it_was_taken_fails_on_its_digest_and_is_not_delivered() {
    use std::io::{Seek, SeekFrom, Write};
    let dir = tempfile::tempdir().expect("tempdir");
    // 32 MiB at 4 MB/s: the sender reaches the last MiB seconds after the
    // file is taken, long after the rewrite.
    let tb = testbed(dir.path(), |o| o.rate_bytes_per_s = 4_000_000);
    let egress = Daemon::start(&tb.egress_config);
    let _ingress = Daemon::start(&tb.ingress_config);
    let data = content(5, 32 << 20);
    ferry_daemon::testkit::spool_file(&tb.spool, "rewritten.bin", &data).expect("spool");
    let done = tb.spool.join(".done").join("rewritten.bin");
    wait_for(Duration::from_secs(60), "the file taken", || done.exists());
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&done)
        .expect("the queued copy through its hard link");
    f.seek(SeekFrom::Start(31 << 20)).expect("seek");
    f.write_all(&[0x5a; 1 << 20]).expect("rewrite the last MiB");
    drop(f);
    wait_for(
        Duration::from_secs(120),
        "the egress side failing the package",
        || {
            egress
                .log_text()
                .contains("payload digest does not match the manifest")
        },
    );
    let st = status(&tb.egress_config).expect("status");
    assert!(st["failed"].as_u64().unwrap_or(0) >= 1, "{st}");
    assert!(
        outbox_files(&tb.outbox).is_empty(),
        "nothing delivered: {:?}",
        outbox_files(&tb.outbox)
    );
}

/// An ingress side still on a retired suite format (here intl format 1,
/// suite byte 1, the format before GHASH-then-AES-256 tags) is refused
/// loudly at the egress side: its datagrams are dropped before any other
/// work and counted, and the operator is told once, in the status alarms,
/// the log and the audit log (`link.format`), what it is and what to do.
/// Another link's datagrams with that byte raise nothing.
#[test]
fn datagrams_in_a_retired_suite_format_are_counted_alarmed_and_audited_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut listen = None;
    let tb = testbed(dir.path(), |o| listen = Some(o.listen));
    let listen = listen.expect("the egress listen address");
    let audit = with_audit(dir.path(), &tb.egress_config, "egress");
    let egress = Daemon::start(&tb.egress_config);
    wait_for(Duration::from_secs(15), "egress status", || {
        status(&tb.egress_config).is_some()
    });
    // Well-formed 80-byte heartbeats of a format-1 sender: version 1, kind
    // 3, suite byte 1, this link's id; the tag cannot matter (never read).
    let heartbeat = |link: &str| {
        let mut d = vec![0u8; 80];
        d[0] = 1;
        d[1] = 3;
        d[2] = 1;
        d[4..8].copy_from_slice(&ferry_protocol::wire::link_id(link).to_be_bytes());
        d[12..20].copy_from_slice(&1_800_000_000_000u64.to_be_bytes());
        d[20..24].copy_from_slice(&1000u32.to_be_bytes());
        d
    };
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.send_to(&heartbeat("another-link"), listen)
        .expect("send");
    for _ in 0..50 {
        sock.send_to(&heartbeat("e2e"), listen).expect("send");
    }
    wait_for(Duration::from_secs(15), "the retired-format alarm", || {
        status(&tb.egress_config).is_some_and(|s| {
            s["alarms"].as_array().is_some_and(|a| {
                a.iter()
                    .any(|m| m.as_str().is_some_and(|m| m.contains("suite byte 1")))
            })
        })
    });
    // The receiver's counters are published once a second.
    wait_for(Duration::from_secs(15), "every datagram counted", || {
        status(&tb.egress_config)
            .is_some_and(|s| s["receiver"]["other_link"].as_u64().unwrap_or(0) >= 51)
    });
    let st = status(&tb.egress_config).expect("status");
    let alarms: Vec<&str> = st["alarms"]
        .as_array()
        .expect("alarms")
        .iter()
        .filter_map(|m| m.as_str())
        .filter(|m| m.contains("suite byte"))
        .collect();
    assert_eq!(alarms.len(), 1, "named once: {alarms:?}");
    assert!(
        alarms[0].contains("intl suite format 1")
            && alarms[0].contains("upgrade ferryd on the ingress side"),
        "{}",
        alarms[0]
    );
    assert_eq!(st["receiver"]["authenticated"].as_u64(), Some(0), "{st}");
    assert!(
        st["link_up"] == serde_json::json!(false),
        "not taken as life: {st}"
    );
    assert!(
        egress
            .log_text()
            .contains("the retired intl suite format 1"),
        "logged"
    );
    drop(egress);
    let records = audit_records(&audit, "link.format");
    assert_eq!(records.len(), 1, "{records:?}");
    let text = records[0].to_string();
    assert!(
        text.contains("upgrade ferryd on the ingress side"),
        "{text}"
    );
    assert!(text.contains("\"suite_byte\":\"1\""), "{text}");
}

/// Retention keeps the newest sent copies within `max_bytes` and deletes
/// the oldest, file and record: six packages of 10,000 bytes against
/// 30,000 bytes retained. The three oldest go (an operator resend says
/// they are not retained), the three newest stay, and one of them can
/// still be sent again.
#[test]
fn retention_deletes_the_oldest_sent_copies_past_max_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tb = retention_testbed(dir.path(), 30_000);
    let _egress = Daemon::start(&tb.egress_config);
    let _ingress = Daemon::start(&tb.ingress_config);
    let mut ids = Vec::new();
    for i in 0..6u64 {
        let name = format!("r{i}.bin");
        ferry_daemon::testkit::spool_file(&tb.spool, &name, &content(i, 10_000)).expect("spool");
        let sidecar = tb.outbox.join(format!("{name}.ferry.json"));
        wait_for(Duration::from_secs(30), "delivery", || sidecar.exists());
        let side: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&sidecar).expect("sidecar")).expect("json");
        ids.push(side["package_id"].as_str().expect("id").to_string());
    }
    // The send loop applies retention every second.
    let retained = |key: &str| status_n(&tb.ingress_config, key);
    let queue = queue_dir(&tb);
    let left = || {
        let mut left: Vec<String> = queued_copies(&queue).into_iter().map(|(n, _)| n).collect();
        left.sort();
        left
    };
    let mut newest = ids[3..].to_vec();
    newest.sort();
    // Retention runs as packages are sent: an earlier round may have
    // left three copies already, before the last was marked sent.
    wait_for(
        Duration::from_secs(40),
        "retention applied to all six",
        || retained("retained") == 3 && left() == newest,
    );
    assert_eq!(retained("retained_bytes"), 30_000);
    assert_eq!(left(), newest, "not the three newest copies");
    let gone = resend(&tb.ingress_config, &ids[0]);
    assert_eq!(
        gone["not_retained"][0].as_str(),
        Some(ids[0].as_str()),
        "{gone}"
    );
    assert_eq!(gone["requeued"].as_array().map(Vec::len), Some(0), "{gone}");
    let kept = resend(&tb.ingress_config, &ids[5]);
    assert_eq!(kept["requeued"].as_array().map(Vec::len), Some(1), "{kept}");
}

/// Retention under load, with an operator resending everything while it
/// deletes: 200 packages of 1,000 bytes against `max_bytes = 20000`, and
/// resends of every sequence number so far, again and again, while they
/// are sent and pruned. A resend either finds a copy (queued again, sent,
/// suppressed at the egress side as a duplicate) or reports it not
/// retained: none is lost to a file deleted under it, none is delivered
/// twice, and afterwards the bound holds, with exactly one file per
/// retained record and the bytes the status reports.
#[test]
fn retention_keeps_its_bound_under_load_and_racing_resends_lose_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tb = retention_testbed(dir.path(), 20_000);
    let _egress = Daemon::start(&tb.egress_config);
    let _ingress = Daemon::start(&tb.ingress_config);
    wait_for(Duration::from_secs(30), "ingress up", || {
        status(&tb.ingress_config).is_some()
    });
    const N: u64 = 200;
    for i in 0..N {
        let name = format!("p{i:03}.bin");
        ferry_daemon::testkit::spool_file(&tb.spool, &name, &content(i, 1_000)).expect("spool");
    }
    let resend_all = || {
        let out = std::process::Command::new(ferryctl())
            .args(["resend", "--seq", "0..1000000", "--config"])
            .arg(&tb.ingress_config)
            .output()
            .expect("ferryctl resend");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        v["requeued"].as_array().map_or(0, Vec::len) as u64
    };
    let delivered = || {
        outbox_files(&tb.outbox)
            .iter()
            .filter(|n| n.ends_with(".bin"))
            .count() as u64
    };
    let mut requeued = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while delivered() < N {
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {N} delivered",
            delivered()
        );
        requeued += resend_all();
        std::thread::sleep(Duration::from_millis(100));
    }
    requeued += resend_all();
    println!("retention race: {requeued} copies requeued by the resends");
    assert!(requeued > 0, "no resend found a retained copy");
    let egress = |key: &str| status_n(&tb.egress_config, key);
    wait_for(
        Duration::from_secs(60),
        "every requeued copy arrived and was suppressed",
        || egress("duplicates_suppressed") == requeued,
    );
    assert_eq!(egress("delivered"), N);
    assert_eq!(egress("failed"), 0);
    assert_eq!(delivered(), N);
    for i in [0, N / 2, N - 1] {
        let got = std::fs::read(tb.outbox.join(format!("p{i:03}.bin"))).expect("delivered");
        assert!(got == content(i, 1_000), "p{i:03}.bin differs");
    }
    let queue = queue_dir(&tb);
    let files = || -> (u64, u64) {
        queued_copies(&queue)
            .iter()
            .fold((0, 0), |(n, b), (_, size)| (n + 1, b + size))
    };
    let ingress = |key: &str| status_n(&tb.ingress_config, key);
    wait_for(Duration::from_secs(30), "the bound applied", || {
        ingress("queued") == 0
            && ingress("retained_bytes") <= 20_000
            && files() == (ingress("retained"), ingress("retained_bytes"))
    });
    assert_eq!(ingress("retained"), 20);
    assert_eq!(ingress("send_dropped"), 0);
    let st = status(&tb.ingress_config).expect("status");
    assert_eq!(st["alarms"], serde_json::json!([]), "{st}");
}

/// A careless operator deletes queued copies by hand, and truncates one,
/// while the link is busy with a large package: a lone package, a
/// bundle's middle member, and one truncated. Each is failed on its own
/// (removed from the queue, counted in `failed`, alarmed once with the
/// count, named in the log), its number shows as a gap on the egress side
/// (a trailing one once a later number arrives),
/// and everything else is delivered bit-exact, the bundle around the
/// deleted member included. Before, the read error ended the send loop and
/// ferryd with it, at every start again.
#[test]
fn a_queued_copy_deleted_or_changed_by_hand_fails_alone_and_the_link_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 40 KB/s: the 400 KB package keeps the link busy for about 10 s.
    let (tb, _egress, ingress) = paced_link(dir.path(), 40_000, "bundle_max_bytes = 4096");
    let queue = queue_dir(&tb);
    // Queued copies by size (the sizes below are all different).
    let by_size = |size: u64| {
        queued_copies(&queue)
            .into_iter()
            .find(|(_, len)| *len == size)
            .map(|(name, _)| queue.join(name))
    };
    ferry_daemon::testkit::spool_file(&tb.spool, "big.bin", &content(1, 400_000)).expect("spool");
    wait_for(Duration::from_secs(30), "big.bin taken", || {
        by_size(400_000).is_some()
    });
    // Ten small ones (a bundle: 100..=109 bytes) and two lone ones (over
    // bundle_max_bytes), one at a time so that their sequence numbers
    // follow this order and s4.bin is in the bundle's middle.
    let files = (0..10u64)
        .map(|i| (format!("s{i}.bin"), content(i, 100 + i as usize)))
        .chain([
            ("lone.bin".to_string(), content(20, 5_000)),
            ("cut.bin".to_string(), content(21, 6_000)),
        ]);
    for (name, data) in files {
        let size = data.len() as u64;
        ferry_daemon::testkit::spool_file(&tb.spool, &name, &data).expect("spool");
        wait_for(Duration::from_secs(30), "taken", || by_size(size).is_some());
    }
    let outbox_now = outbox_files(&tb.outbox);
    assert!(
        !outbox_now.iter().any(|n| n == "big.bin"),
        "the link was not busy: {outbox_now:?}"
    );
    for size in [104, 5_000] {
        std::fs::remove_file(by_size(size).expect("queued")).expect("delete");
    }
    let cut = by_size(6_000).expect("queued");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&cut)
        .expect("open");
    f.set_len(3_000).expect("truncate");
    drop(f);
    let want: Vec<String> = {
        let mut w: Vec<String> = (0..10)
            .filter(|i| *i != 4)
            .map(|i| format!("s{i}.bin"))
            .chain(["big.bin".to_string()])
            .collect();
        w.sort();
        w
    };
    let ingress_n = |key: &str| status_n(&tb.ingress_config, key);
    wait_for(
        Duration::from_secs(60),
        "the rest delivered and three failed",
        || {
            let got: Vec<String> = outbox_files(&tb.outbox)
                .into_iter()
                .filter(|n| n.ends_with(".bin"))
                .collect();
            got == want && ingress_n("failed") == 3
        },
    );
    for i in (0..10u64).filter(|i| *i != 4) {
        let got = std::fs::read(tb.outbox.join(format!("s{i}.bin"))).expect("delivered");
        assert!(got == content(i, 100 + i as usize), "s{i}.bin differs");
    }
    let got = std::fs::read(tb.outbox.join("big.bin")).expect("delivered");
    assert!(got == content(1, 400_000), "big.bin differs");
    let st = status(&tb.ingress_config).expect("ingress still answers");
    let alarms: Vec<String> = st["alarms"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str().map(str::to_owned))
        .filter(|a| a.starts_with("ingress failed:"))
        .collect();
    assert_eq!(alarms.len(), 1, "{st}");
    assert!(alarms[0].contains("3 queued package(s)"), "{alarms:?}");
    assert!(
        alarms[0].contains("cut.bin") && alarms[0].contains("6000 were queued"),
        "{alarms:?}"
    );
    let log = ingress.log_text();
    assert_eq!(
        log.matches("a queued package's copy cannot be read")
            .count(),
        3,
        "{log}"
    );
    // Removed from the queue directory too.
    assert!(by_size(6_000).is_none() && by_size(3_000).is_none());
    // Their numbers were never sent: gaps on the egress side, the last two
    // once a later number arrives.
    ferry_daemon::testkit::spool_file(&tb.spool, "after.bin", b"after").expect("spool");
    wait_for(Duration::from_secs(30), "after.bin delivered", || {
        tb.outbox.join("after.bin").exists()
    });
    let gaps = || {
        status(&tb.egress_config).map_or(serde_json::Value::Null, |s| {
            serde_json::json!([s["gap_seqs_open"], s["gaps"], s["sender_next_seq"]])
        })
    };
    let waited = std::time::Instant::now();
    while gaps()[0] != 3 && waited.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(gaps()[0], 3, "{}", gaps());
    assert_eq!(
        status(&tb.egress_config).expect("egress")["failed"].as_u64(),
        Some(0)
    );
}

/// A queued copy cut short by hand while it is being sent (or a disk that
/// stops reading it): the send is abandoned where the read fails, the
/// package is failed alone (removed, counted, alarmed, logged), the egress
/// side fails the incomplete send and delivers nothing of it, and the
/// package queued after it is delivered. Before, the read error ended the
/// send loop and ferryd with it.
#[test]
fn a_queued_copy_cut_short_while_it_is_sent_is_abandoned_and_the_link_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 400 KB/s: the 4 MB package takes about 10 s. Small blocks and a
    // burst of 1 make interleaving groups of four 23 KB blocks, so the
    // sender reads the package a group at a time as it sends (two groups
    // ahead at most), not all of it at the start.
    let (tb, _egress, ingress) = paced_link(
        dir.path(),
        400_000,
        "block_symbols = 16\nloss_budget_burst = 1",
    );
    let queue = queue_dir(&tb);
    ferry_daemon::testkit::spool_file(&tb.spool, "big.bin", &content(1, 4_000_000)).expect("spool");
    wait_for(Duration::from_secs(30), "big.bin being sent", || {
        let sent = status_n(&tb.ingress_config, "datagrams_sent");
        sent > 300 && sent != u64::MAX
    });
    // Queued behind it.
    ferry_daemon::testkit::spool_file(&tb.spool, "next.bin", &content(2, 2_000)).expect("spool");
    wait_for(Duration::from_secs(30), "next.bin taken", || {
        queued_copies(&queue).len() == 2
    });
    let (big, _) = queued_copies(&queue)
        .into_iter()
        .find(|(_, size)| *size == 4_000_000)
        .expect("big.bin queued");
    std::fs::OpenOptions::new()
        .write(true)
        .open(queue.join(&big))
        .expect("open")
        .set_len(0)
        .expect("truncate");
    wait_for(Duration::from_secs(60), "next.bin delivered", || {
        tb.outbox.join("next.bin").exists()
    });
    let got = std::fs::read(tb.outbox.join("next.bin")).expect("delivered");
    assert!(got == content(2, 2_000), "next.bin differs");
    assert_eq!(
        status_n(&tb.ingress_config, "failed"),
        1,
        "{:?}",
        status(&tb.ingress_config)
    );
    wait_for(
        Duration::from_secs(30),
        "the incomplete send failed",
        || status_n(&tb.egress_config, "failed") == 1,
    );
    assert_eq!(
        outbox_files(&tb.outbox)
            .iter()
            .filter(|n| n.ends_with(".bin"))
            .collect::<Vec<_>>(),
        vec!["next.bin"]
    );
    let st = status(&tb.ingress_config).expect("ingress still answers");
    assert!(
        st["alarms"].to_string().contains("big.bin")
            && st["alarms"].to_string().contains("reading it at offset"),
        "{st}"
    );
    // Only next.bin's retained copy is left.
    let left: Vec<u64> = queued_copies(&queue)
        .iter()
        .map(|(_, size)| *size)
        .collect();
    assert_eq!(left, vec![2_000]);
    let log = ingress.log_text();
    assert_eq!(
        log.matches("a queued package's copy cannot be read")
            .count(),
        1,
        "{log}"
    );
}

/// The delivery ledger forgets a package once it is older than
/// `ledger_max_age_s` (and than the newest package less that, so a lone
/// last package is kept); a copy that arrives after that (here an
/// operator's resend) is refused — counted, alarmed — and never delivered
/// a second time, while a copy of a package still remembered is
/// suppressed as before.
#[test]
fn a_copy_older_than_the_ledger_remembers_is_refused_not_delivered_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tb = testbed(dir.path(), |_| {});
    // No self-healing re-sends: only the operator's resends send copies.
    link_keys(&tb.ingress_config, "heal_resend_max_bytes_per_s = 0");
    link_keys(&tb.egress_config, "ledger_max_age_s = 2");
    let _egress = Daemon::start(&tb.egress_config);
    let _ingress = Daemon::start(&tb.ingress_config);
    let deliver = |name: &str, want: &[&str]| {
        ferry_daemon::testkit::spool_file(&tb.spool, name, name.as_bytes()).expect("spool");
        wait_for(Duration::from_secs(30), "delivery", || {
            outbox_files(&tb.outbox) == want.iter().map(|s| s.to_string()).collect::<Vec<_>>()
        });
        let side: serde_json::Value = serde_json::from_slice(
            &std::fs::read(tb.outbox.join(format!("{name}.ferry.json"))).expect("sidecar"),
        )
        .expect("json");
        side["package_id"].as_str().expect("id").to_string()
    };
    let old = deliver("a.csv", &["a.csv"]);
    std::thread::sleep(Duration::from_millis(2500));
    let young = deliver("b.csv", &["a.csv", "b.csv"]);
    let egress = |key: &str| {
        status(&tb.egress_config)
            .and_then(|s| s[key].as_u64())
            .unwrap_or(0)
    };
    // A round a second: a.csv is more than 2 s older than b.csv.
    wait_for(Duration::from_secs(30), "the ledger pruned", || {
        egress("ledger_pruned") == 1
    });
    let v = resend(&tb.ingress_config, &old);
    assert_eq!(v["requeued"].as_array().map(Vec::len), Some(1), "{v}");
    wait_for(Duration::from_secs(30), "the old copy refused", || {
        egress("rejected") == 1
    });
    let v = resend(&tb.ingress_config, &young);
    assert_eq!(v["requeued"].as_array().map(Vec::len), Some(1), "{v}");
    wait_for(Duration::from_secs(30), "the young copy suppressed", || {
        egress("duplicates_suppressed") == 1
    });
    let st = status(&tb.egress_config).expect("status");
    assert_eq!(st["delivered"], serde_json::json!(2), "{st}");
    assert_eq!(st["rejected"], serde_json::json!(1), "{st}");
    let alarms = st["alarms"].to_string();
    assert!(
        alarms.contains("egress refused:") && alarms.contains("ledger_max_age_s"),
        "{alarms}"
    );
    assert_eq!(
        outbox_files(&tb.outbox),
        vec!["a.csv".to_string(), "b.csv".to_string()]
    );
}

/// `ferryctl resend --package ID` against `config`; its JSON answer.
/// A number from a daemon's status (`u64::MAX` while it does not answer).
fn status_n(config: &std::path::Path, key: &str) -> u64 {
    status(config)
        .and_then(|s| s[key].as_u64())
        .unwrap_or(u64::MAX)
}

/// A testbed whose ingress side retains at most `max_bytes` of sent
/// copies (for a day) and re-sends nothing by itself (self-healing
/// re-sends would queue the copies again).
fn retention_testbed(dir: &std::path::Path, max_bytes: u64) -> ferry_daemon::testkit::Testbed {
    let tb = testbed(dir, |_| {});
    link_keys(&tb.ingress_config, "heal_resend_max_bytes_per_s = 0");
    append_config(
        &tb.ingress_config,
        &format!("[retention]\nmax_bytes = {max_bytes}\nmax_age_s = 86400"),
    );
    tb
}

/// Both sides running, the ingress side paced at `rate` bytes/s with no
/// self-healing re-sends and the `[link]` lines `keys`.
fn paced_link(
    dir: &std::path::Path,
    rate: u64,
    keys: &str,
) -> (ferry_daemon::testkit::Testbed, Daemon, Daemon) {
    let tb = testbed(dir, |o| o.rate_bytes_per_s = rate);
    link_keys(
        &tb.ingress_config,
        &format!("heal_resend_max_bytes_per_s = 0\n{keys}"),
    );
    let egress = Daemon::start(&tb.egress_config);
    let ingress = Daemon::start(&tb.ingress_config);
    (tb, egress, ingress)
}

/// The ingress side's queue directory.
fn queue_dir(tb: &ferry_daemon::testkit::Testbed) -> std::path::PathBuf {
    tb.ingress_config
        .parent()
        .expect("config dir")
        .join("state")
        .join("queue")
}

/// The queued copies in `queue` (each named by its package id), with their
/// sizes; none while the directory does not exist yet.
fn queued_copies(queue: &std::path::Path) -> Vec<(String, u64)> {
    std::fs::read_dir(queue)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let copy = name.len() == 32 && name.bytes().all(|b| b.is_ascii_hexdigit());
            let size = e.metadata().ok()?.len();
            copy.then_some((name, size))
        })
        .collect()
}

fn resend(config: &std::path::Path, id: &str) -> serde_json::Value {
    let out = std::process::Command::new(ferryctl())
        .args(["resend", "--package", id, "--config"])
        .arg(config)
        .output()
        .expect("ferryctl resend");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}
