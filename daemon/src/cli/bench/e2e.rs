//! `ferryctl bench e2e`: small packages pushed over mTLS to the ingest API
//! by several keep-alive clients, through the whole production path
//! (policy decision, durable queue, audit on both sides, seal, UDP link,
//! open, outbox delivery), timed from the client's first byte to the file
//! appearing in the egress outbox. Both sides run in this process, as in
//! `ferryctl bench link`, on a throwaway site (CA, certificates, keys,
//! policy, audit logs) in a temporary directory.
//!
//! What it reports is what an intranet system sees: accepted packages per
//! second (the `202`s), delivered packages per second, the `202` latency
//! and the ingest-to-delivery latency, at p50 and p99.

use crate::admin::protocol::{self, SharedStatus};
use crate::egress::EgressOptions;
use crate::http::client::{Endpoint, IngestClient, Payload, PushError, Upload};
use crate::testkit::{self, TestbedOptions};
use crate::{config, egress, ingress, DaemonError};
use bytes::Bytes;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The link and channel name of the bench site.
const CHANNEL: &str = "bench";
/// The certificate name (and policy identity CN) of the pushing clients.
const CLIENT_NAME: &str = "bench-feed";
/// Delivery is given up when the outbox gains nothing for this long.
const DELIVERY_STALL: Duration = Duration::from_secs(30);
/// How long the ingest API may take to start listening.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(30);

/// Arguments of `ferryctl bench e2e`.
#[derive(Debug, Clone, clap::Args)]
pub struct E2eArgs {
    /// Packages to push.
    #[arg(long, default_value_t = 10_000)]
    pub packages: u64,
    /// Bytes per package.
    #[arg(long, default_value_t = 1024)]
    pub size: usize,
    /// Concurrent clients, each with its own mTLS connection.
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// Keep each client's connection alive between packages (default);
    /// `--keep-alive false` opens a new TLS connection per package.
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub keep_alive: bool,
    /// Pacing rate of the link in bytes/s (0 = unpaced).
    #[arg(long, default_value_t = 150_000_000)]
    pub rate: u64,
    /// The ingress side's `bundle_max_packages` (1 = no bundles; default:
    /// the shipped default).
    #[arg(long, default_value_t = crate::config::DEFAULT_BUNDLE_MAX_PACKAGES, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub bundle_max_packages: u16,
    /// The ingress side's `bundle_linger_ms` (0 = a bundle never waits for
    /// more packages; default: the shipped default).
    #[arg(long, default_value_t = crate::config::DEFAULT_BUNDLE_LINGER_MS, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub bundle_linger_ms: u64,
    /// Work directory, kept afterwards (default: a fresh temporary
    /// directory, removed).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Give up after this many seconds in all.
    #[arg(long, default_value_t = 900, value_name = "SECONDS")]
    pub timeout: u64,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// The daemon side failed.
    #[error("{0}")]
    Daemon(#[from] DaemonError),
    /// The bench site's certificates.
    #[error("bench site certificates: {0}")]
    Certs(#[from] ferry_certs::CertError),
    /// The bench site's audit logs.
    #[error("bench site audit log: {0}")]
    Audit(#[from] ferry_audit::AuditError),
    /// The pushing client.
    #[error("push: {0}")]
    Push(#[from] PushError),
    /// Anything else, in words.
    #[error("{0}")]
    Bench(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BenchError + '_ {
    move |e| BenchError::Daemon(DaemonError::io(path)(e))
}

/// A TOML string literal for `p`.
fn toml_path(p: &Path) -> String {
    toml::Value::String(p.display().to_string()).to_string()
}

/// The files of the throwaway site.
struct Site {
    ca_crt: PathBuf,
    client_crt: PathBuf,
    client_key: PathBuf,
    port: u16,
}

/// CA, server and client certificates, policy, audit logs, and the
/// `[ingest]`, `[policy]` and `[audit]` sections added to the testbed's
/// configuration files.
fn build_site(root: &Path, tb: &testkit::Testbed, a: &E2eArgs) -> Result<Site, BenchError> {
    let ca = root.join("ca");
    ferry_certs::init_ca(&ca, "ferry bench CA", 365)?;
    let tls = root.join("ingress/tls");
    let server = ferry_certs::issue_server(
        &ca,
        &tls,
        "ingest",
        &[],
        &[std::net::IpAddr::from([127, 0, 0, 1])],
        30,
    )?;
    let clients = root.join("clients");
    let client = ferry_certs::issue_client(
        &ca,
        &clients,
        CLIENT_NAME,
        Some(ferry_certs::Role::new("pusher")?),
        30,
    )?;
    let policy = root.join("ingress/policy.toml");
    let text = format!(
        r#"version = 1

[policy]
name = "bench"
description = "ferryctl bench e2e: one channel, one pushing identity"
time_zone = "UTC"

[identity.feed]
description = "The benchmark's clients"
cn = "{CLIENT_NAME}"
role = "pusher"

[channel.{CHANNEL}]
description = "Benchmark packages"
direction = "import"
link = "{CHANNEL}"
destination = "outbox"

[[rule]]
id = "R-bench"
description = "The benchmark's clients push anything on the bench channel"
effect = "allow"
identities = ["feed"]
channels = ["{CHANNEL}"]
"#
    );
    std::fs::write(&policy, text).map_err(io(&policy))?;
    let mut audit = Vec::new();
    for side in ["ingress", "egress"] {
        let dir = root.join(side).join("audit");
        ferry_audit::init(&dir, &root.join(format!("{side}-audit.verify")))?;
        audit.push(dir);
    }
    let port = crate::testkit::free_port(crate::testkit::Proto::Tcp)?;
    let max_package_bytes = (a.size as u64).max(1 << 20);
    let ingress_extra = format!(
        "\n[ingest]\nlisten = \"127.0.0.1:{port}\"\ncert = {}\nkey = {}\nclient_ca = [{}]\ncrl = [{}]\nmax_package_bytes = {max_package_bytes}\nmin_free_bytes = 0\n\n[policy]\nfile = {}\n\n[audit]\ndir = {}\nmin_free_bytes_accept = 0\n",
        toml_path(&server.cert_path),
        toml_path(&server.key_path),
        toml_path(&ca.join(ferry_certs::files::CA_CERT)),
        toml_path(&ca.join(ferry_certs::files::CRL)),
        toml_path(&policy),
        toml_path(&audit[0]),
    );
    let egress_extra = format!(
        "\n[audit]\ndir = {}\nmin_free_bytes_accept = 0\n",
        toml_path(&audit[1])
    );
    for (file, extra) in [
        (&tb.ingress_config, ingress_extra),
        (&tb.egress_config, egress_extra),
    ] {
        let mut cfg = std::fs::read_to_string(file).map_err(io(file))?;
        cfg.push_str(&extra);
        std::fs::write(file, cfg).map_err(io(file))?;
    }
    Ok(Site {
        ca_crt: ca.join(ferry_certs::files::CA_CERT),
        client_crt: client.cert_path,
        client_key: client.key_path,
        port,
    })
}

/// One push as the client saw it.
struct Sample {
    index: u64,
    /// Wall clock when the request started (ns since the Unix epoch).
    sent_unix_ns: u128,
    /// Until the answer was read.
    latency: Duration,
    /// When the answer was read.
    done: Instant,
    status: Option<u16>,
}

fn unix_ns(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

fn package_name(i: u64) -> String {
    format!("bench-{i:08}.bin")
}

/// Records when each package file appears in the outbox (inotify
/// `IN_MOVED_TO`: the outbox's final rename), with the wall clock, so the
/// latency is not limited by the file system's coarse timestamps.
fn watch_outbox(
    outbox: &Path,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<HashMap<String, u128>>, BenchError> {
    use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
    std::fs::create_dir_all(outbox).map_err(io(outbox))?;
    let ino = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)
        .map_err(|e| BenchError::Bench(format!("inotify: {e}")))?;
    ino.add_watch(outbox, AddWatchFlags::IN_MOVED_TO)
        .map_err(|e| BenchError::Bench(format!("inotify on {}: {e}", outbox.display())))?;
    std::thread::Builder::new()
        .name("bench-watch".into())
        .spawn(move || {
            let mut seen = HashMap::new();
            loop {
                match ino.read_events() {
                    Ok(events) => {
                        let now = unix_ns(SystemTime::now());
                        for e in events {
                            if let Some(name) = e.name.and_then(|n| n.into_string().ok()) {
                                if !name.ends_with(".ferry.json") {
                                    seen.entry(name).or_insert(now);
                                }
                            }
                        }
                    }
                    Err(nix::errno::Errno::EAGAIN) => {
                        if stop.load(Ordering::Relaxed) {
                            return seen;
                        }
                        let fd = std::os::fd::AsFd::as_fd(&ino);
                        let mut fds = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLIN)];
                        let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(50u16));
                    }
                    Err(_) => return seen,
                }
            }
        })
        .map_err(|e| BenchError::Daemon(DaemonError::thread_start("outbox watcher")(e)))
}

/// When a delivered file appeared, from the watcher or, if it missed it
/// (event queue overflow), from the file's ctime (set by the rename).
fn delivered_at(outbox: &Path, name: &str, seen: &HashMap<String, u128>) -> Option<u128> {
    if let Some(t) = seen.get(name) {
        return Some(*t);
    }
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(outbox.join(name)).ok()?;
    let secs = u128::try_from(m.ctime()).ok()?;
    let nanos = u128::try_from(m.ctime_nsec()).ok()?;
    Some(secs * 1_000_000_000 + nanos)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Runs the benchmark and prints the result.
pub fn e2e(a: &E2eArgs) -> Result<(), BenchError> {
    if a.packages == 0 || a.clients == 0 || a.size == 0 {
        return Err(BenchError::Bench(
            "--packages, --clients and --size must be at least 1".into(),
        ));
    }
    let log = crate::cli::bench::log_to_file(a.dir.as_deref())?;
    let tmp;
    let root = match &a.dir {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::Builder::new()
                .prefix("ferry-bench-e2e-")
                .tempdir()
                .map_err(io(Path::new("temp dir")))?;
            tmp.path().to_path_buf()
        }
    };
    let mut o = TestbedOptions::loopback(CHANNEL)?;
    o.rate_bytes_per_s = a.rate;
    o.socket_buffer_bytes = 64 << 20;
    let tb = testkit::create(&root, &o)?;
    let site = build_site(&root, &tb, a)?;
    let mut icfg = config::load(&tb.ingress_config).map_err(DaemonError::from)?;
    icfg.link.bundle_max_packages = a.bundle_max_packages;
    icfg.link.bundle_linger_ms = a.bundle_linger_ms;
    let ecfg = config::load(&tb.egress_config).map_err(DaemonError::from)?;

    let shutdown = Arc::new(AtomicBool::new(false));
    let (est, ist) = (SharedStatus::default(), SharedStatus::default());
    let stop_watch = Arc::new(AtomicBool::new(false));
    let watcher = watch_outbox(&tb.outbox, stop_watch.clone())?;
    let e = {
        let (s, st) = (shutdown.clone(), est.clone());
        let opts = EgressOptions {
            drop_per_million: 0,
            seed: 1,
            slow_batch_us: 0,
        };
        std::thread::Builder::new()
            .name("ferry-recv".into())
            .spawn(move || egress::run(ecfg, s, st, opts))
            .map_err(DaemonError::thread_start("egress"))?
    };
    // The egress side's sockets must be bound before the ingress side
    // sends: with no way back, what is sent to a closed port is a gap.
    let binding = Instant::now();
    while crate::admin::protocol::read(&est, |s| s.role.is_empty()) {
        if e.is_finished() || binding.elapsed() > LISTEN_TIMEOUT {
            shutdown.store(true, Ordering::Relaxed);
            stop_watch.store(true, Ordering::Relaxed);
            let why = match e.join() {
                Ok(Err(err)) => format!("the egress side stopped: {err}"),
                _ => "the egress side did not bind its sockets".to_owned(),
            };
            return Err(BenchError::Bench(why));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let i = {
        let (s, st) = (shutdown.clone(), ist.clone());
        std::thread::Builder::new()
            .name("ferry-send".into())
            .spawn(move || ingress::run(icfg, s, st))
            .map_err(DaemonError::thread_start("ingress"))?
    };
    let stop = |why: String| -> BenchError {
        shutdown.store(true, Ordering::Relaxed);
        stop_watch.store(true, Ordering::Relaxed);
        BenchError::Bench(why)
    };
    let listening = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", site.port)).is_err() {
        if i.is_finished() || e.is_finished() {
            let why = match i.join() {
                Ok(Err(err)) => format!("the ingress side stopped: {err}"),
                _ => "a side stopped during start-up".to_owned(),
            };
            return Err(stop(why));
        }
        if listening.elapsed() > LISTEN_TIMEOUT {
            return Err(stop("the ingest API did not start listening".into()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    let endpoint = Endpoint::parse(&format!("https://127.0.0.1:{}", site.port))?;
    let tls = ferry_certs::client_config(&site.ca_crt, &site.client_crt, &site.client_key)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| stop(format!("client runtime: {e}")))?;
    let template = payload_template(a.size);
    let next = Arc::new(AtomicU64::new(0));
    let samples = Arc::new(Mutex::new(Vec::with_capacity(
        usize::try_from(a.packages).unwrap_or(0),
    )));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let t0 = Instant::now();
    let cpu0 = crate::cli::bench::cpu_seconds();
    let progress = progress(a.packages, next.clone(), est.clone());
    rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..a.clients {
            let mut client = IngestClient::with_config(
                endpoint.clone(),
                tls.clone(),
                &site.ca_crt.display().to_string(),
                true,
            )
            .keep_alive(a.keep_alive);
            let (next, samples, errors, template) = (
                next.clone(),
                samples.clone(),
                errors.clone(),
                template.clone(),
            );
            let total = a.packages;
            tasks.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= total {
                        break;
                    }
                    let upload = package(&template, index);
                    let sent_unix_ns = unix_ns(SystemTime::now());
                    let t = Instant::now();
                    let answer = client.push(CHANNEL, &upload, None).await;
                    let done = Instant::now();
                    let status = match answer {
                        Ok(a) => {
                            if a.status != 202 {
                                note(&errors, format!("HTTP {}: {}", a.status, a.body));
                            }
                            Some(a.status)
                        }
                        Err(e) => {
                            note(&errors, e.to_string());
                            None
                        }
                    };
                    mine.push(Sample {
                        index,
                        sent_unix_ns,
                        latency: done - t,
                        done,
                        status,
                    });
                }
                if let Ok(mut s) = samples.lock() {
                    s.extend(mine);
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
    let samples: Vec<Sample> = match Arc::try_unwrap(samples) {
        Ok(m) => m.into_inner().unwrap_or_else(|p| p.into_inner()),
        Err(a) => a
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default(),
    };
    let accepted: Vec<&Sample> = samples.iter().filter(|s| s.status == Some(202)).collect();
    let ingest_end = samples.iter().map(|s| s.done).max().unwrap_or(t0);
    let ingest_secs = (ingest_end - t0).as_secs_f64().max(1e-9);

    // Delivery: until the egress side delivered every accepted package,
    // or nothing moved for a while.
    let want = accepted.len() as u64;
    let deadline = t0 + Duration::from_secs(a.timeout);
    let mut last = (0u64, Instant::now());
    loop {
        let s = protocol::snapshot(&est);
        if s.delivered + s.failed >= want {
            break;
        }
        if s.delivered != last.0 {
            last = (s.delivered, Instant::now());
        } else if last.1.elapsed() > DELIVERY_STALL || Instant::now() > deadline || e.is_finished()
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let cpu = crate::cli::bench::cpu_seconds() - cpu0;
    let sent = protocol::snapshot(&ist);
    drop(progress);
    // Let the watcher drain its last events before it is stopped.
    std::thread::sleep(Duration::from_millis(100));
    shutdown.store(true, Ordering::Relaxed);
    stop_watch.store(true, Ordering::Relaxed);
    let ingress_result = i.join();
    let _ = e.join();
    let seen = watcher.join().unwrap_or_default();
    if let Ok(Err(err)) = ingress_result {
        note(&errors, format!("the ingress side stopped: {err}"));
    }

    let t0_unix_ns = samples.iter().map(|s| s.sent_unix_ns).min().unwrap_or(0);
    let mut ingest_ms: Vec<f64> = accepted
        .iter()
        .map(|s| s.latency.as_secs_f64() * 1e3)
        .collect();
    let mut delivery_ms = Vec::new();
    let mut last_delivery_ns = t0_unix_ns;
    for s in &accepted {
        if let Some(at) = delivered_at(&tb.outbox, &package_name(s.index), &seen) {
            last_delivery_ns = last_delivery_ns.max(at);
            delivery_ms.push(at.saturating_sub(s.sent_unix_ns) as f64 / 1e6);
        }
    }
    ingest_ms.sort_by(f64::total_cmp);
    delivery_ms.sort_by(f64::total_cmp);
    let delivered = delivery_ms.len() as u64;
    let e2e_secs = (last_delivery_ns.saturating_sub(t0_unix_ns) as f64 / 1e9).max(1e-9);
    let ingest_rate = accepted.len() as f64 / ingest_secs;
    let e2e_rate = delivered as f64 / e2e_secs;
    let bytes_per_s = (delivered * a.size as u64) as f64 / e2e_secs;
    let errors = errors.lock().map(|e| e.clone()).unwrap_or_default();
    let refused = samples.len() - accepted.len();
    let lost = want.saturating_sub(delivered);
    let round = |x: f64, d: i32| (x * 10f64.powi(d)).round() / 10f64.powi(d);
    let out = serde_json::json!({
        "packages": a.packages,
        "size": a.size,
        "clients": a.clients,
        "keep_alive": a.keep_alive,
        "bundle_max_packages": a.bundle_max_packages,
        "bundle_linger_ms": a.bundle_linger_ms,
        "accepted": accepted.len(),
        "refused_or_failed": refused,
        "delivered": delivered,
        "lost": lost,
        "ingest_seconds": round(ingest_secs, 3),
        "ingest_packages_per_s": round(ingest_rate, 1),
        "ingest_p50_ms": round(percentile(&ingest_ms, 50.0), 3),
        "ingest_p99_ms": round(percentile(&ingest_ms, 99.0), 3),
        "e2e_seconds": round(e2e_secs, 3),
        "e2e_packages_per_s": round(e2e_rate, 1),
        "delivery_p50_ms": round(percentile(&delivery_ms, 50.0), 3),
        "delivery_p99_ms": round(percentile(&delivery_ms, 99.0), 3),
        "payload_bytes_per_s": round(bytes_per_s, 0),
        "cpu_seconds": round(cpu, 3),
        "bundles_sent": sent.bundles_sent,
        "bundled_packages": sent.bundled_packages,
        "errors": errors.iter().take(5).collect::<Vec<_>>(),
        "daemons_log": log,
    });
    if a.json {
        println!("{out}");
    } else {
        println!("daemons' logs: {}", log.display());
        println!(
            "bench e2e: {} packages of {} B from {} clients over mTLS (keep-alive {}), durable queue and audit on both sides",
            a.packages,
            a.size,
            a.clients,
            if a.keep_alive { "on" } else { "off" }
        );
        println!(
            "ingest:     {} accepted in {ingest_secs:.2} s = {ingest_rate:.0} packages/s; 202 latency p50 {:.2} ms, p99 {:.2} ms",
            accepted.len(),
            percentile(&ingest_ms, 50.0),
            percentile(&ingest_ms, 99.0)
        );
        println!(
            "end-to-end: {delivered} delivered in {e2e_secs:.2} s = {e2e_rate:.0} packages/s; ingest-to-delivery p50 {:.1} ms, p99 {:.1} ms",
            percentile(&delivery_ms, 50.0),
            percentile(&delivery_ms, 99.0)
        );
        println!(
            "payload:    {:.2} MB/s delivered; {cpu:.2} CPU s in this process ({:.0} us per package); {refused} refused or failed, {lost} accepted but not delivered",
            bytes_per_s / 1e6,
            if delivered > 0 { cpu * 1e6 / delivered as f64 } else { 0.0 }
        );
        println!(
            "bundles:    {} packages crossed in {} bundles (bundle_max_packages {}, bundle_linger_ms {})",
            sent.bundled_packages, sent.bundles_sent, a.bundle_max_packages, a.bundle_linger_ms
        );
        for e in errors.iter().take(5) {
            println!("error:      {e}");
        }
    }
    if refused > 0 || lost > 0 {
        return Err(BenchError::Bench(format!(
            "{refused} pushes refused or failed and {lost} accepted packages not delivered"
        )));
    }
    Ok(())
}

/// The bench's progress line on a terminal's stderr, redrawn every
/// `PROGRESS_INTERVAL`: packages pushed and delivered so far.
struct Progress {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// How often the progress line is redrawn.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(500);

fn progress(total: u64, pushed: Arc<AtomicU64>, egress: SharedStatus) -> Progress {
    let stop = Arc::new(AtomicBool::new(false));
    // Not on a terminal (a pipe, a CI log): the summary is enough.
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return Progress { stop, thread: None };
    }
    let flag = stop.clone();
    let thread = std::thread::Builder::new()
        .name("bench-progress".into())
        .spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                let sent = pushed.load(Ordering::Relaxed).min(total);
                let delivered = protocol::snapshot(&egress).delivered;
                eprint!("\r  pushed {sent}/{total}, delivered {delivered}   ");
                std::thread::sleep(PROGRESS_INTERVAL);
            }
            eprintln!();
        })
        .ok();
    Progress { stop, thread }
}

/// Dropping it stops the line (also on an early return).
impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn note(errors: &Mutex<Vec<String>>, e: String) {
    if let Ok(mut v) = errors.lock() {
        if v.len() < 100 {
            v.push(e);
        }
    }
}

/// Pseudo-random bytes (xorshift), so the link carries incompressible
/// data as real packages would.
fn payload_template(size: usize) -> Bytes {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut v = Vec::with_capacity(size + 8);
    while v.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(size);
    Bytes::from(v)
}

/// Package `index`: the template with the index in its first bytes, so
/// every package has its own digest.
fn package(template: &Bytes, index: u64) -> Upload {
    let mut data = template.to_vec();
    let stamp = index.to_le_bytes();
    let n = stamp.len().min(data.len());
    data[..n].copy_from_slice(&stamp[..n]);
    let digest = ring::digest::digest(&ring::digest::SHA256, &data);
    Upload {
        file_name: package_name(index),
        content_type: "application/octet-stream".into(),
        digest: Some(format!("sha256={}", hex::encode(digest.as_ref()))),
        payload: Payload::Bytes(Bytes::from(data)),
    }
}
