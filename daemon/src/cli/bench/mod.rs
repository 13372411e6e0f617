//! `ferryctl bench link`: the whole pipeline (spool intake excluded: seal,
//! FEC, paced UDP send, receive, authenticate, decode, decrypt, digest,
//! stage, fsync, rename) through a real UDP loopback link, both sides in
//! this process, with random loss injected on the receive path because the
//! loopback itself loses nothing.

pub mod e2e;
pub mod netns;
pub mod scan;

use crate::admin::protocol::{self, SharedStatus};
use crate::egress::EgressOptions;
use crate::testkit::{self, TestbedOptions};
use crate::{config, egress, ingress, DaemonError};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Arguments of `ferryctl bench link`.
#[derive(Debug, Clone, clap::Args)]
pub struct LinkArgs {
    /// Total bytes to move.
    #[arg(long, default_value_t = 1 << 30)]
    pub size: u64,
    /// Split into this many packages of equal size.
    #[arg(long, default_value_t = 1)]
    pub files: u32,
    /// Random datagram loss injected at the receiver, in percent.
    #[arg(long, default_value_t = 1.0)]
    pub loss: f64,
    /// Path MTU.
    #[arg(long, default_value_t = 1500)]
    pub mtu: usize,
    /// FEC repair overhead in percent.
    #[arg(long, default_value_t = 10.0)]
    pub repair: f64,
    /// Pacing rate in bytes/s (0 = unpaced). With both sides on one
    /// 2-core machine an unpaced sender overruns the receiver; 150 MB/s is
    /// what the receiver sustains there (docs/operations.md).
    #[arg(long, default_value_t = 150_000_000)]
    pub rate: u64,
    /// Crypto suite of the link (`intl` or `gm`).
    #[arg(long, default_value = "intl", value_parser = ["intl", "gm"])]
    pub suite: String,
    /// Work directory (default: a fresh directory under the system temp dir,
    /// removed afterwards).
    #[arg(long)]
    pub dir: Option<std::path::PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Ingress `heal_resend_after_ms` (default: the configuration default,
    /// 15 000, which a short run never reaches); set it low to measure the
    /// cost of the self-healing re-sends inside the run.
    #[arg(long)]
    pub heal_after_ms: Option<u64>,
    /// Ingress `udp_gso_segments` (default: the configuration default, the
    /// loss budget's burst); 1 sends one datagram per UDP message, to
    /// measure what GSO saves.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=32))]
    pub gso_segments: Option<u16>,
}

/// CPU seconds (user + system) this process has used so far.
pub(crate) fn cpu_seconds() -> f64 {
    match nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF) {
        Ok(u) => {
            let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
            t(u.user_time()) + t(u.system_time())
        }
        Err(_) => 0.0,
    }
}

/// Sends the daemons' logs (both sides run in this process) to a file
/// instead of the terminal and returns its path: `DIR/daemons.log` with
/// `--dir DIR`, else a new `ferry-bench-*.log` in the temporary directory,
/// kept when the work directory is removed, so the path printed still
/// holds the logs afterwards.
pub fn log_to_file(dir: Option<&Path>) -> Result<PathBuf, DaemonError> {
    let (file, path) = match dir {
        Some(d) => {
            std::fs::create_dir_all(d).map_err(DaemonError::io(d))?;
            let path = d.join("daemons.log");
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(DaemonError::io(&path))?;
            (file, path)
        }
        None => tempfile::Builder::new()
            .prefix("ferry-bench-")
            .suffix(".log")
            .tempfile()
            .map_err(DaemonError::io(Path::new("temp dir")))?
            .keep()
            .map_err(|e| DaemonError::io(Path::new("temp dir"))(e.error))?,
    };
    crate::init_logging_to_file(file);
    Ok(path)
}

/// Runs the benchmark and prints the result.
pub fn link(a: &LinkArgs) -> Result<(), DaemonError> {
    if a.files == 0 || !(0.0..100.0).contains(&a.loss) {
        return Err(DaemonError::Bench(
            "--files must be at least 1 and --loss within 0..100".into(),
        ));
    }
    let log = log_to_file(a.dir.as_deref())?;
    let tmp;
    let root = match &a.dir {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::Builder::new()
                .prefix("ferry-bench-")
                .tempdir()
                .map_err(DaemonError::io(Path::new("temp dir")))?;
            tmp.path().to_path_buf()
        }
    };
    let mut o = TestbedOptions::loopback("bench")?;
    o.mtu = a.mtu;
    o.repair_overhead_percent = a.repair;
    o.rate_bytes_per_s = a.rate;
    o.suite = a.suite.parse().map_err(DaemonError::Config)?;
    o.socket_buffer_bytes = 64 << 20;
    let tb = testkit::create(&root, &o)?;
    let mut icfg = config::load(&tb.ingress_config)?;
    if let Some(ms) = a.heal_after_ms {
        icfg.link.heal_resend_after_ms = ms.max(1);
    }
    if let Some(n) = a.gso_segments {
        // Within what the configuration allows: the budget's burst.
        icfg.link.udp_gso_segments = n.min(icfg.link.udp_gso_segments);
    }
    let ecfg = config::load(&tb.egress_config)?;

    // Sources are written first, outside the measured interval.
    let per = a.size / u64::from(a.files);
    let src = root.join("source");
    std::fs::create_dir_all(&src).map_err(DaemonError::io(&src))?;
    let mut digests = Vec::new();
    for i in 0..a.files {
        let p = src.join(format!("bench-{i:04}.bin"));
        digests.push(write_random(&p, per, u64::from(i))?);
    }

    let shutdown = Arc::new(AtomicBool::new(false));
    let est = SharedStatus::default();
    let ist = SharedStatus::default();
    let loss = EgressOptions {
        drop_per_million: (a.loss * 10_000.0) as u32,
        seed: 0x5eed,
        slow_batch_us: 0,
    };
    let e = {
        let (s, st) = (shutdown.clone(), est.clone());
        std::thread::Builder::new()
            .name("ferry-recv".into())
            .spawn(move || egress::run(ecfg, s, st, loss))
            .map_err(DaemonError::thread_start("egress"))?
    };
    std::thread::sleep(Duration::from_millis(200));
    let i = {
        let (s, st) = (shutdown.clone(), ist.clone());
        std::thread::Builder::new()
            .name("ferry-send".into())
            .spawn(move || ingress::run(icfg, s, st))
            .map_err(DaemonError::thread_start("ingress"))?
    };
    for n in 0..a.files {
        let from = src.join(format!("bench-{n:04}.bin"));
        let to = tb.spool.join(format!("bench-{n:04}.bin"));
        std::fs::rename(&from, &to).map_err(DaemonError::io(&to))?;
    }
    // The clock starts when every package is queued (digested and durable).
    let deadline = Instant::now() + Duration::from_secs(600);
    while protocol::snapshot(&ist).taken < u64::from(a.files) {
        if Instant::now() > deadline || i.is_finished() {
            shutdown.store(true, Ordering::Relaxed);
            return Err(DaemonError::Bench("ingress did not take the files".into()));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let t0 = Instant::now();
    let cpu0 = cpu_seconds();
    let mut last_progress = (0u64, Instant::now());
    loop {
        let s = protocol::snapshot(&est);
        if s.delivered + s.failed >= u64::from(a.files) {
            break;
        }
        let progress = s.delivered_bytes
            + s.receiver
                .as_ref()
                .and_then(|r| r.get("datagrams"))
                .and_then(|d| d.as_u64())
                .unwrap_or(0);
        if progress != last_progress.0 {
            last_progress = (progress, Instant::now());
        } else if last_progress.1.elapsed() > Duration::from_secs(20) || e.is_finished() {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    shutdown.store(true, Ordering::Relaxed);
    let _ = i.join();
    let _ = e.join();
    let es = protocol::snapshot(&est);
    let is = protocol::snapshot(&ist);

    let mut corrupted = 0u64;
    let mut delivered = 0u64;
    for (n, want) in digests.iter().enumerate() {
        let p = tb.outbox.join(format!("bench-{n:04}.bin"));
        if p.exists() {
            delivered += 1;
            if &ingress::admission::digest_file(&ferry_suites::intl::IntlLink, &p)?.1 != want {
                corrupted += 1;
            }
        }
    }
    let sender = is.sender.unwrap_or_default();
    let n = |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_u64()).unwrap_or(0);
    let data_dg = n(&sender, "datagrams");
    let repair_dg = n(&sender, "repair_datagrams");
    let fec_overhead = if data_dg > repair_dg {
        repair_dg as f64 / (data_dg - repair_dg) as f64
    } else {
        0.0
    };
    let bytes = per * delivered;
    let mb_per_s = bytes as f64 / elapsed / 1e6;
    let out = serde_json::json!({
        "mb_per_s": (mb_per_s * 10.0).round() / 10.0,
        "bytes": bytes,
        "bytes_requested": per * u64::from(a.files),
        "files": a.files,
        "seconds": (elapsed * 1000.0).round() / 1000.0,
        "cpu_seconds": (cpu * 1000.0).round() / 1000.0,
        "loss_percent": a.loss,
        "fec_overhead": (fec_overhead * 10000.0).round() / 10000.0,
        "mtu": a.mtu,
        "suite": a.suite,
        "corrupted": corrupted,
        "lost_packages": u64::from(a.files) - delivered,
        "datagrams_sent": is.datagrams_sent,
        "udp_messages_sent": is.udp_messages_sent,
        "udp_gso_segments": is.udp_gso_segments,
        "send_errors": is.send_errors,
        "receiver": es.receiver,
        "daemons_log": log,
    });
    if a.json {
        println!("{out}");
    } else {
        println!("daemons' logs: {}", log.display());
        println!(
            "moved {bytes} bytes in {elapsed:.2} s: {mb_per_s:.1} MB/s ({} suite) at {}% injected loss, FEC overhead {:.1}%, {cpu:.2} CPU s, {} lost, {corrupted} corrupted",
            a.suite,
            a.loss,
            fec_overhead * 100.0,
            u64::from(a.files) - delivered
        );
    }
    if corrupted > 0 {
        return Err(DaemonError::Bench("corrupted deliveries".into()));
    }
    Ok(())
}

/// Writes `len` pseudo-random bytes (xorshift, seeded) and returns their
/// SHA-256.
pub(crate) fn write_random(path: &Path, len: u64, seed: u64) -> Result<Vec<u8>, DaemonError> {
    let mut f = std::fs::File::create(path).map_err(DaemonError::io(path))?;
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    let mut d = ring::digest::Context::new(&ring::digest::SHA256);
    while left > 0 {
        for c in buf.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            c.copy_from_slice(&x.to_le_bytes());
        }
        let n = left.min(buf.len() as u64) as usize;
        f.write_all(&buf[..n]).map_err(DaemonError::io(path))?;
        d.update(&buf[..n]);
        left -= n as u64;
    }
    let _ = f.flush();
    Ok(d.finish().as_ref().to_vec())
}
