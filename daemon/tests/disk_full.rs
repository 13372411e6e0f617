//! Full disks on either side. The egress outbox fills up: nothing partial
//! is delivered, an alarm is raised, and delivery resumes when space
//! returns (the lost package by an operator resend). The ingress queue
//! fills up during an upload: the push is refused and nothing is kept.

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
        skip("needs root to mount a small tmpfs as the outbox");
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
    ferry_daemon::testkit::spool_file(&tb.spool, "first.bin", &first).expect("spool");
    wait_for(Duration::from_secs(30), "first delivery", || {
        outbox_files(&tb.outbox) == vec!["first.bin".to_string()]
    });

    // 6 MiB more does not fit in the 8 MiB outbox.
    let big = content(2, 6 << 20);
    ferry_daemon::testkit::spool_file(&tb.spool, "big.bin", &big).expect("spool");
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

/// The ingress side's queue fills up during an HTTPS upload: the push is
/// answered `503` with the reason, nothing of it is kept or queued, and
/// the next push that fits is accepted and delivered.
#[test]
fn full_ingress_queue_refuses_the_upload_and_keeps_nothing() {
    if !is_root() {
        skip("needs root to mount a small tmpfs as the ingress queue");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let tb = testbed(root, |_| {});
    let ca = SiteCa::init(&root.join("ca"));
    let clients = root.join("clients");
    ca.server(&root.join("ingress/tls"), "ingest");
    ca.client(&clients, "feed", "pusher");
    let port = free_tcp_port();
    // min_free_bytes = 0: the upload itself runs into the full disk.
    append_config(&tb.ingress_config, &ingest_section(port, &ca, ""));
    let queue = root.join("ingress/state/queue");
    std::fs::create_dir_all(&queue).expect("queue dir");
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs"])
        .arg(&queue)
        .status()
        .expect("mount");
    assert!(ok.success(), "mount tmpfs");
    let _mount = Mount(queue.clone());
    let _egress = Daemon::start_ready(&tb.egress_config);
    let mut ingress = Daemon::start(&tb.ingress_config);
    ingress.wait_listening(&[port], "ingest listening");
    let push = |name: &str, data: &[u8], chunked: bool| {
        let file = root.join(name);
        std::fs::write(&file, data).expect("write");
        let header = format!("X-Ferry-File-Name: {name}");
        let body = format!("@{}", file.display());
        let mut args = vec!["-H", header.as_str(), "--data-binary", body.as_str()];
        if chunked {
            args.extend(["-H", "Transfer-Encoding: chunked"]);
        }
        curl_https(
            &ca,
            port,
            "/v1/channels/e2e/packages",
            Some((&clients, "feed")),
            &args,
        )
    };
    let big = content(4, 3 << 20);
    // A declared length that cannot fit is refused before a byte is stored.
    let (code, body) = push("big.bin", &big, false);
    assert_eq!(code, "503", "{body}");
    assert!(body.contains("disk is low"), "{body}");
    // Chunked, the size is unknown until the disk runs out mid-stream.
    let (code, body) = push("big.bin", &big, true);
    assert_eq!(code, "503", "{body}");
    assert!(body.contains("could not store the upload"), "{body}");
    let left: Vec<_> = std::fs::read_dir(&queue)
        .expect("queue")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "the refused upload left {left:?}");
    let small = content(5, 2000);
    let (code, body) = push("small.bin", &small, false);
    assert_eq!(code, "202", "{body}");
    wait_for(
        Duration::from_secs(30),
        "the small package delivered",
        || outbox_files(&tb.outbox) == vec!["small.bin".to_string()],
    );
    assert_eq!(
        std::fs::read(tb.outbox.join("small.bin")).expect("read"),
        small
    );
}
