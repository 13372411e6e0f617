//! An egress host slower than the sender, with the shipped defaults: the
//! receive spool (memory, then disk) takes the difference, so no package
//! is lost to speed; a spool too small for it drops datagrams counted and
//! alarmed, and never delivers a package in part; and a package many times
//! the receive memory bound crosses two real `ferryd` at bounded RSS.

mod common;

use common::*;
use ferry_daemon::admin::protocol::{self, SharedStatus};
use ferry_daemon::egress::{self, EgressOptions};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Held by the tests that must not share the CPU with a flood (the
/// kernel-drop test floods a socket as fast as it can).
static QUIET: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn quiet() -> std::sync::MutexGuard<'static, ()> {
    QUIET.lock().unwrap_or_else(|p| p.into_inner())
}

/// An egress side run in this process, slowed on purpose.
struct SlowEgress {
    shutdown: Arc<AtomicBool>,
    status: SharedStatus,
    thread: Option<std::thread::JoinHandle<Result<(), ferry_daemon::DaemonError>>>,
}

impl SlowEgress {
    fn start(cfg: ferry_daemon::config::Config, slow_batch_us: u32) -> SlowEgress {
        // The egress side's log goes to the test's output (shown when it
        // fails): which package failed, and why.
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_max_level(tracing::Level::INFO)
            .try_init();
        let shutdown = Arc::new(AtomicBool::new(false));
        let status = SharedStatus::default();
        let options = EgressOptions {
            slow_batch_us,
            ..EgressOptions::default()
        };
        let thread = {
            let (s, st) = (shutdown.clone(), status.clone());
            std::thread::spawn(move || egress::run(cfg, s, st, options))
        };
        SlowEgress {
            shutdown,
            status,
            thread: Some(thread),
        }
    }

    /// Panics when the egress side stopped on its own (it never should
    /// while a test runs): its error says why, at once.
    fn assert_running(&mut self) {
        if self.thread.as_ref().is_some_and(|t| t.is_finished()) {
            let ended = self.thread.take().map(|t| t.join());
            panic!("the egress side stopped: {ended:?}");
        }
    }

    fn status(&self) -> protocol::Status {
        protocol::snapshot(&self.status)
    }
}

impl Drop for SlowEgress {
    fn drop(&mut self) {
        // A failing test shows the egress side's view (it runs in this
        // process, without a log): on a CI machine it is the only witness
        // of which package was lost and why.
        if std::thread::panicking() {
            eprintln!("---- egress status ----\n{:#?}", self.status());
        }
        self.shutdown.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let ended = t.join();
            if std::thread::panicking() {
                eprintln!("---- the egress side ended with: {ended:?}");
            }
        }
        if std::thread::panicking() {
            // Last, in few lines: a CI log keeps the end of the output.
            let s = self.status();
            eprintln!(
                "---- egress summary: delivered {} failed {} gaps {:?}\nreceiver {}\nreceive {:?}\nalarms {:?}\nwarnings {:?}",
                s.delivered,
                s.failed,
                s.gaps,
                s.receiver.map(|r| r.to_string()).unwrap_or_default(),
                s.receive,
                s.alarms,
                s.warnings
            );
        }
    }
}

#[test]
fn a_sender_faster_than_the_egress_delivers_every_package_with_the_shipped_defaults() {
    let _quiet = quiet();
    let dir = tempfile::tempdir().expect("tempdir");
    // The shipped defaults: pacing, repair, buffers, spool.
    let tb = testbed(dir.path(), |_| {});
    let ecfg = ferry_daemon::config::load(&tb.egress_config).expect("egress config");
    // 3 ms per batch of 64 datagrams: at most ~30 MB/s processed, a third
    // of the default 100 MB/s pacing.
    let mut egress = SlowEgress::start(ecfg, 3000);
    std::thread::sleep(Duration::from_millis(200));
    let _ingress = Daemon::start(&tb.ingress_config);
    // 160 MiB: more than the spool's 64 MiB of memory is waiting at the
    // peak, so the disk takes part.
    let mut expect = Vec::new();
    for n in 0..33u64 {
        let len = if n == 0 { 96 << 20 } else { 2 << 20 };
        let name = format!("p{n:02}.bin");
        let data = content(n, len);
        ferry_daemon::testkit::spool_file(&tb.spool, &name, &data).expect("spool");
        expect.push((name, data));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    loop {
        let got = outbox_files(&tb.outbox);
        if got.len() == expect.len() {
            break;
        }
        egress.assert_running();
        if std::time::Instant::now() > deadline {
            let missing: Vec<&str> = expect
                .iter()
                .map(|(n, _)| n.as_str())
                .filter(|n| !got.iter().any(|g| g == n))
                .collect();
            panic!("timed out after 180 s; not delivered: {missing:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for (name, data) in &expect {
        let got = std::fs::read(tb.outbox.join(name)).expect("delivered");
        assert!(got == *data, "{name} differs");
    }
    let s = egress.status();
    let r = s.receive.clone().expect("receive status");
    assert!(
        r.spilled_bytes > 0,
        "the egress was slower than the sender and the spool's disk took part: {r:?}"
    );
    assert!(r.peak_backlog_bytes > 64 << 20, "{r:?}");
    assert_eq!(r.dropped_datagrams, 0, "{r:?}");
    // Datagrams the kernel dropped (a CI host too busy to run the
    // receive thread in time) are not the spool's doing: the FEC repaired
    // them here, and they are shown, never silent.
    assert_eq!(
        r.kernel_dropped_datagrams > 0,
        s.warnings.iter().any(|w| w.starts_with("receive socket:")),
        "{r:?} {:?}",
        s.warnings
    );
    assert_eq!(s.failed, 0, "no send failed: {:?}", s.alarms);
    assert!(s.alarms.is_empty(), "{:?}", s.alarms);
    // The sustained rate was measured while busy, and the suggested
    // ingress rate is 80 % of it.
    let sustained = r.sustained_bytes_per_s.expect("measured");
    assert!(sustained > 0 && sustained < 200_000_000, "{sustained}");
    let suggested = r.suggested_rate_bytes_per_s.expect("suggested");
    assert!(suggested <= sustained / 5 * 4, "{suggested} vs {sustained}");
    // The operator sees the figure and the command that applies it.
    let shown = ctl_ok(&["status", "--config", path_str(&tb.egress_config)]);
    assert!(
        shown.contains("sustains") && shown.contains("MB/s of datagrams while busy"),
        "{shown}"
    );
    assert!(
        shown.contains(&format!(
            "ferryctl link set-rate --config <its ferryd.toml> {suggested}"
        )),
        "{shown}"
    );
}

#[test]
fn a_spool_too_small_drops_counted_and_alarmed_and_delivers_nothing_in_part() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tb = testbed(dir.path(), |_| {});
    let audit = with_audit(dir.path(), &tb.egress_config, "egress");
    let mut ecfg = ferry_daemon::config::load(&tb.egress_config).expect("egress config");
    ecfg.link.receive_spool_bytes = 1 << 20;
    let egress = SlowEgress::start(ecfg, 5000);
    std::thread::sleep(Duration::from_millis(200));
    let _ingress = Daemon::start(&tb.ingress_config);
    let data = content(7, 128 << 20);
    ferry_daemon::testkit::spool_file(&tb.spool, "big.bin", &data).expect("spool");
    wait_for(Duration::from_secs(120), "the failed send", || {
        egress.status().failed > 0
    });
    let s = egress.status();
    let r = s.receive.clone().expect("receive status");
    assert!(r.dropped_datagrams > 0, "{r:?}");
    assert!(
        s.alarms.iter().any(|a| a.starts_with("receive spool:")
            && a.contains("receive_spool_bytes")
            && a.contains("rate_bytes_per_s")),
        "the alarm says what to do: {:?}",
        s.alarms
    );
    assert!(
        !tb.outbox.join("big.bin").exists(),
        "nothing delivered in part"
    );
    // The failure is audited (the self-healing re-send may later bring
    // the package; what matters here is that the loss was not silent).
    drop(egress);
    assert!(
        !audit_records(&audit, "package.failed").is_empty(),
        "the failed send is audited"
    );
    // One record within the minute, and one more at shutdown for what
    // dropped after it: together every dropped datagram is accounted for.
    // The spool's records (the kernel's own drops at the socket, on a
    // busy CI host, have records of their own).
    let overruns = overrun_records(&audit, false);
    assert!(
        (1..=2).contains(&overruns.len()),
        "at most one record a minute, plus the last at shutdown: {overruns:?}"
    );
    let counted = counted(&overruns);
    let dropped = r.dropped_datagrams;
    assert!(counted >= dropped, "{counted} of {dropped}: {overruns:?}");
}

/// A package five times `max_buffer_bytes` crosses two real `ferryd` with the
/// shipped pacing, and neither process grows with it: the sender streams
/// from the spooled file, the receiver writes each verified block to the
/// staging file. The bound leaves room for the spool's 64 MiB, the
/// writer's queue and the allocator; the package alone would exceed it.
///
/// `FERRY_LARGE_PACKAGE_BYTES=17179869184` runs it with a 16 GiB package
/// (a sparse file of zeros, so only the delivered copy takes disk; run it
/// in a release build: `cargo test --release -p ferry-daemon --test
/// slow_egress bounded_rss -- --nocapture`).
#[test]
fn a_package_many_times_the_memory_bound_crosses_at_bounded_rss() {
    let size: u64 = std::env::var("FERRY_LARGE_PACKAGE_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256 << 20);
    let dir = tempfile::tempdir().expect("tempdir");
    // Enough for one interleaving group of the default loss budget (about
    // 27 MB of symbols in flight), a fifth of the default package.
    let tb = testbed(dir.path(), |o| o.max_buffer_bytes = 48 << 20);
    let egress = Daemon::start(&tb.egress_config);
    let ingress = Daemon::start(&tb.ingress_config);
    let digest = if size <= 1 << 30 {
        let data = content(31, size as usize);
        ferry_daemon::testkit::spool_file(&tb.spool, "large.bin", &data).expect("spool");
        ring::digest::digest(&ring::digest::SHA256, &data)
    } else {
        let tmp = tb.spool.join(".large.bin.part");
        let f = std::fs::File::create(&tmp).expect("create");
        f.set_len(size).expect("sparse");
        drop(f);
        std::fs::rename(&tmp, tb.spool.join("large.bin")).expect("rename");
        sha256_of_zeros(size)
    };
    let limit = Duration::from_secs(300 + size / 50_000_000);
    wait_for(limit, "the large package", || {
        outbox_files(&tb.outbox).len() == 1
    });
    let got = tb.outbox.join("large.bin");
    assert_eq!(std::fs::metadata(&got).expect("delivered").len(), size);
    assert_eq!(sha256_of_file(&got).as_ref(), digest.as_ref());
    let bound: u64 = 128 << 20;
    for (side, d) in [("egress", &egress), ("ingress", &ingress)] {
        let peak = d.peak_rss_bytes().expect("VmHWM");
        eprintln!("{side} peak RSS: {:.1} MiB", peak as f64 / 1048576.0);
        assert!(
            peak < bound && peak < size,
            "{side} peak RSS {peak} bytes, bound {bound}"
        );
    }
}

fn sha256_of_zeros(size: u64) -> ring::digest::Digest {
    let zeros = vec![0u8; 1 << 20];
    let mut h = ring::digest::Context::new(&ring::digest::SHA256);
    let mut left = size;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        h.update(&zeros[..n]);
        left -= n as u64;
    }
    h.finish()
}

fn sha256_of_file(path: &std::path::Path) -> ring::digest::Digest {
    use std::io::Read;
    let mut f = std::fs::File::open(path).expect("open");
    let mut buf = vec![0u8; 1 << 20];
    let mut h = ring::digest::Context::new(&ring::digest::SHA256);
    loop {
        let n = f.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    h.finish()
}

/// Datagrams the kernel drops at the egress socket, before ferryd reads
/// them, are not silent: an egress side with the smallest socket buffer
/// allowed, flooded faster than any thread can drain it, counts them in
/// its status, warns with what to do, and audits every one of them (the
/// last record at its orderly stop).
#[test]
fn datagrams_the_kernel_drops_at_the_egress_socket_are_counted_warned_and_audited() {
    let _quiet = quiet();
    let dir = tempfile::tempdir().expect("tempdir");
    let tb = testbed(dir.path(), |o| o.socket_buffer_bytes = 4096);
    let audit = with_audit(dir.path(), &tb.egress_config, "egress");
    let ecfg = ferry_daemon::config::load(&tb.egress_config).expect("egress config");
    let to = *ecfg.link.listen.first().expect("a listen address");
    let egress = SlowEgress::start(ecfg, 0);
    std::thread::sleep(Duration::from_millis(200));
    // Bursts of datagrams that are not the link's (a flood, or a sender
    // far too fast): the kernel drops what the small buffer cannot hold.
    let tx = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let junk = [0x5au8; 1200];
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut seen = 0;
    while seen == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no kernel drop counted in 60 s"
        );
        for _ in 0..20_000 {
            let _ = tx.send_to(&junk, to);
        }
        std::thread::sleep(Duration::from_millis(1500));
        seen = egress
            .status()
            .receive
            .map_or(0, |r| r.kernel_dropped_datagrams);
    }
    let s = egress.status();
    let now = s.receive.as_ref().map_or(0, |r| r.kernel_dropped_datagrams);
    assert!(
        s.warnings.iter().any(|w| w.starts_with("receive socket:")
            && w.contains(&format!("dropped {now} datagrams"))
            && w.contains("socket_buffer_bytes")
            && w.contains("rate_bytes_per_s")),
        "the warning counts and says what to do: {:?}",
        s.warnings
    );
    assert!(
        s.alarms.is_empty(),
        "a warning, not an alarm: {:?}",
        s.alarms
    );
    let shown = ctl_ok(&["status", "--config", path_str(&tb.egress_config)]);
    assert!(
        shown.contains("dropped by the kernel before ferryd read them"),
        "{shown}"
    );
    let last = egress
        .status()
        .receive
        .map_or(0, |r| r.kernel_dropped_datagrams);
    drop(egress);
    let records = overrun_records(&audit, true);
    let counted = counted(&records);
    assert!(
        counted >= last && last >= seen,
        "every drop is audited ({counted} of {last}): {records:?}"
    );
}

/// The `link.overrun` audit records of the socket (`socket`) or of the
/// spool (`!socket`).
fn overrun_records(audit: &std::path::Path, socket: bool) -> Vec<serde_json::Value> {
    audit_records(audit, "link.overrun")
        .into_iter()
        .filter(|o| (detail(o, "place") == Some("socket")) == socket)
        .collect()
}

/// The sum of the records' `count` details.
fn counted(records: &[serde_json::Value]) -> u64 {
    records
        .iter()
        .filter_map(|o| detail(o, "count").and_then(|c| c.parse::<u64>().ok()))
        .sum()
}

fn detail<'a>(record: &'a serde_json::Value, key: &str) -> Option<&'a str> {
    record
        .pointer(&format!("/details/{key}"))
        .or_else(|| record.pointer(&format!("/record/details/{key}")))
        .and_then(|v| v.as_str())
}
