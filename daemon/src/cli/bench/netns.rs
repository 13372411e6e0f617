//! `ferryctl bench netns`: the two-namespace link bench anyone can run as
//! root. Two real `ferryd` processes in two network namespaces joined by a
//! veth pair, random loss injected by nftables at the egress side's netdev
//! ingress hook (these kernels have no `sch_netem`; DESIGN.md, "Testing a
//! lossy one-way link"), an nftables counter proving nothing leaves the
//! egress side, and the shipped defaults for everything not given on the
//! command line. Plain UDP over loopback is measured in the same run, so
//! the figure carries its own yardstick on a shared machine.
//!
//! Everything it creates (namespaces with their veth pair, nftables tables
//! and qdiscs, the daemons, the work directory) is removed on success,
//! failure, timeout and Ctrl-C; only a SIGKILL of `ferryctl` leaves the
//! namespaces behind (`ip netns list | grep ferry-bench`).

use crate::admin::{protocol::Request, socket};
use crate::testkit::{self, TestbedOptions};
use crate::{config, DaemonError};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Link-local addresses of the two veth ends (a /30 of 169.254.0.0/16).
const INGRESS_ADDR: Ipv4Addr = Ipv4Addr::new(169, 254, 88, 1);
const EGRESS_ADDR: Ipv4Addr = Ipv4Addr::new(169, 254, 88, 2);
/// Fixed MACs, so static neighbour entries replace ARP (no frame needs to
/// flow from egress to ingress).
const INGRESS_MAC: &str = "02:fe:00:00:88:01";
const EGRESS_MAC: &str = "02:fe:00:00:88:02";
/// Veth names; each lives in its own namespace, so they need not be unique.
const INGRESS_IF: &str = "fi";
const EGRESS_IF: &str = "fe";
/// The egress side's UDP port on its veth address.
const LINK_PORT: u16 = 47_100;
/// nftables tables: the loss (egress namespace, netdev ingress of its veth)
/// and the reverse counter (egress namespace, netdev egress of its veth).
const LOSS_TABLE: &str = "ferry_bench_loss";
const REVERSE_TABLE: &str = "ferry_bench_reverse";
/// Name of the package pushed through the spool.
const PACKAGE: &str = "bench-netns.bin";
/// How long each daemon may take to answer on its control socket, and the
/// egress side to see the link up.
const START_LIMIT: Duration = Duration::from_secs(30);
/// After the ingress side reports the package sent, the egress side must
/// deliver or fail it within this long (its `package_idle_timeout_ms` is
/// 5 s by default).
const AFTER_SENT_LIMIT: Duration = Duration::from_secs(60);
/// How often both daemons' status is read while the package moves.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// The sender's counters are published once a second: how long to wait
/// for the ones that include the completed send.
const PUBLISH_LIMIT: Duration = Duration::from_secs(3);
/// Plain UDP on loopback: datagram size (1500 − 28) and how long to send.
const UDP_DATAGRAM_BYTES: usize = 1472;
const UDP_RUN: Duration = Duration::from_millis(1500);

/// Arguments of `ferryctl bench netns`.
#[derive(Debug, Clone, clap::Args)]
pub struct NetnsArgs {
    /// Bytes of the one package pushed (streamed from a generated file).
    #[arg(long, default_value_t = 1 << 30, value_name = "BYTES")]
    pub size: u64,
    /// Random loss of the UDP datagrams arriving at the egress side, in
    /// percent (steps of 0.1; nftables `numgen random` per mille).
    #[arg(long, default_value_t = 0.0, value_name = "PERCENT")]
    pub loss: f64,
    /// FEC repair overhead in percent (default: the shipped
    /// `repair_overhead_percent`).
    #[arg(long, value_name = "PERCENT")]
    pub repair: Option<f64>,
    /// Pacing rate of the ingress side in bytes/s, 0 = unpaced (default:
    /// the shipped `rate_bytes_per_s`).
    #[arg(long, value_name = "BYTES_PER_S")]
    pub rate: Option<u64>,
    /// Cap the veth from ingress to egress at this rate (`tc tbf`), in
    /// Mbit/s, as a slower wire would.
    #[arg(long, value_name = "MBIT")]
    pub rate_cap_mbit: Option<u32>,
    /// Crypto suite of the link (`intl` or `gm`).
    #[arg(long, default_value = "intl", value_parser = ["intl", "gm"])]
    pub suite: String,
    /// Ingress `udp_gso_segments` (default: the shipped one, the loss
    /// budget's burst); 1 sends one datagram per UDP message, to measure
    /// what GSO saves.
    #[arg(long, value_name = "N")]
    pub gso_segments: Option<u16>,
    /// Egress `udp_gro = false`: one datagram per received UDP message, to
    /// measure what GRO saves.
    #[arg(long)]
    pub no_gro: bool,
    /// Both sides' `socket_buffer_bytes` (default: the shipped one), to
    /// measure how much of a burst the egress socket absorbs while its
    /// receive thread waits for a core.
    #[arg(long, value_name = "BYTES")]
    pub socket_buffer_bytes: Option<usize>,
    /// Keep the work directory (keys, configurations, state, logs, the
    /// delivered file) and print its path.
    #[arg(long)]
    pub keep: bool,
    /// Give up when the package is not delivered this many seconds after
    /// it was pushed.
    #[arg(long, default_value_t = 900, value_name = "SECONDS")]
    pub timeout: u64,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Why the benchmark could not run, or what it found wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetnsBenchError {
    /// Namespaces, veth and nftables need root.
    #[error("ferryctl bench netns creates network namespaces, a veth pair and nftables rules: run it as root (sudo ferryctl bench netns ...)")]
    NotRoot,
    /// An argument out of range.
    #[error("{0}")]
    Usage(String),
    /// A system tool failed.
    #[error("`{command}` failed: {stderr} (needs iproute2, nftables with netdev ingress/egress hooks (kernel 5.16 or later) and, for --rate-cap-mbit, the tbf qdisc)")]
    Tool {
        /// The command line.
        command: String,
        /// What it said.
        stderr: String,
    },
    /// The daemon library (testbed, files, status).
    #[error("{0}")]
    Daemon(#[from] DaemonError),
    /// A `ferryd` stopped before the run ended.
    #[error("the {side} ferryd exited during the run ({status}); its log is kept at {}", log.display())]
    DaemonExited {
        /// `ingress` or `egress`.
        side: &'static str,
        /// Its exit status.
        status: String,
        /// Where its log was kept.
        log: PathBuf,
    },
    /// Something did not happen in time.
    #[error("{what} did not happen within {} s; the daemons' logs are kept at {}", limit.as_secs(), logs.display())]
    Timeout {
        /// What was waited for.
        what: &'static str,
        /// The limit.
        limit: Duration,
        /// Where the logs were kept.
        logs: PathBuf,
    },
    /// SIGINT, SIGTERM or SIGHUP.
    #[error("interrupted; the namespaces, nftables rules and daemons were removed")]
    Interrupted,
    /// The package was not delivered intact (figures printed first).
    #[error("the package was not delivered intact ({why}); the daemons' logs are kept at {}", logs.display())]
    NotDelivered {
        /// What the egress side said.
        why: String,
        /// Where the logs were kept.
        logs: PathBuf,
    },
    /// Packets left the egress side toward the ingress side.
    #[error("{0} packets left the egress side toward the ingress side: the link is not one-way (is ARP or IPv6 on? did the ingress side send before the egress side listened?)")]
    Reverse(u64),
}

impl NetnsBenchError {
    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> NetnsBenchError + '_ {
        move |e| NetnsBenchError::Daemon(DaemonError::io(path)(e))
    }
}

/// Runs a system tool to completion; its standard output.
fn tool(args: &[&str]) -> Result<String, NetnsBenchError> {
    let command = args.join(" ");
    let Some((program, rest)) = args.split_first() else {
        return Err(NetnsBenchError::Usage("empty command".into()));
    };
    let out = Command::new(program)
        .args(rest)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| NetnsBenchError::Tool {
            command: command.clone(),
            stderr: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(NetnsBenchError::Tool {
            command,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ip netns exec NS ARGS…`.
fn in_ns(ns: &str, args: &[&str]) -> Result<String, NetnsBenchError> {
    let mut v = vec!["ip", "netns", "exec", ns];
    v.extend_from_slice(args);
    tool(&v)
}

/// The two namespaces and the veth pair between them. Dropping it kills
/// whatever still runs inside and deletes both namespaces, which takes the
/// veth pair, its qdiscs and the namespaces' nftables tables with them.
struct Namespaces {
    ingress: String,
    egress: String,
}

impl Namespaces {
    /// Names unique to this process; the link is up, one-way by
    /// construction (no ARP, no IPv6, static neighbours) and counted
    /// before anything can flow.
    fn create(a: &NetnsArgs) -> Result<Namespaces, NetnsBenchError> {
        let pid = std::process::id();
        let ns = Namespaces {
            ingress: format!("ferry-bench-i-{pid}"),
            egress: format!("ferry-bench-e-{pid}"),
        };
        ns.delete();
        let (i, e) = (ns.ingress.as_str(), ns.egress.as_str());
        tool(&["ip", "netns", "add", i])?;
        tool(&["ip", "netns", "add", e])?;
        tool(&[
            "ip", "link", "add", INGRESS_IF, "netns", i, "type", "veth", "peer", "name", EGRESS_IF,
            "netns", e,
        ])?;
        // Every frame the egress side puts on its veth, whatever its kind.
        in_ns(e, &["nft", &format!("add table netdev {REVERSE_TABLE}")])?;
        in_ns(
            e,
            &[
                "nft",
                &format!("add chain netdev {REVERSE_TABLE} out {{ type filter hook egress device {EGRESS_IF} priority 0; }}"),
            ],
        )?;
        in_ns(
            e,
            &[
                "nft",
                &format!("add rule netdev {REVERSE_TABLE} out counter"),
            ],
        )?;
        let per_mille = loss_per_mille(a.loss)?;
        if per_mille > 0 {
            in_ns(e, &["nft", &format!("add table netdev {LOSS_TABLE}")])?;
            in_ns(
                e,
                &[
                    "nft",
                    &format!("add chain netdev {LOSS_TABLE} in {{ type filter hook ingress device {EGRESS_IF} priority 0; }}"),
                ],
            )?;
            in_ns(
                e,
                &[
                    "nft",
                    &format!("add rule netdev {LOSS_TABLE} in meta l4proto udp numgen random mod 1000 < {per_mille} counter drop"),
                ],
            )?;
        }
        let ends = [
            (
                i,
                INGRESS_IF,
                INGRESS_MAC,
                INGRESS_ADDR,
                EGRESS_ADDR,
                EGRESS_MAC,
            ),
            (
                e,
                EGRESS_IF,
                EGRESS_MAC,
                EGRESS_ADDR,
                INGRESS_ADDR,
                INGRESS_MAC,
            ),
        ];
        for (ns_name, dev, mac, addr, peer, peer_mac) in ends {
            let sysctl = format!("net.ipv6.conf.{dev}.disable_ipv6=1");
            in_ns(ns_name, &["sysctl", "-q", "-w", &sysctl])?;
            in_ns(
                ns_name,
                &[
                    "ip", "link", "set", "dev", dev, "address", mac, "arp", "off",
                ],
            )?;
            in_ns(
                ns_name,
                &["ip", "addr", "add", &format!("{addr}/30"), "dev", dev],
            )?;
            in_ns(ns_name, &["ip", "link", "set", "dev", "lo", "up"])?;
            in_ns(ns_name, &["ip", "link", "set", "dev", dev, "up"])?;
            in_ns(
                ns_name,
                &[
                    "ip",
                    "neigh",
                    "replace",
                    &peer.to_string(),
                    "lladdr",
                    peer_mac,
                    "dev",
                    dev,
                    "nud",
                    "permanent",
                ],
            )?;
        }
        if let Some(mbit) = a.rate_cap_mbit {
            // About 10 ms of the rate as the bucket, at least 64 KiB.
            let burst = (u64::from(mbit) * 1_000_000 / 8 / 100).max(64 << 10);
            in_ns(
                i,
                &[
                    "tc",
                    "qdisc",
                    "add",
                    "dev",
                    INGRESS_IF,
                    "root",
                    "tbf",
                    "rate",
                    &format!("{mbit}mbit"),
                    "burst",
                    &burst.to_string(),
                    "latency",
                    "100ms",
                ],
            )?;
        }
        Ok(ns)
    }

    /// Packets counted by the rules of an nftables table in `ns`.
    fn counted(ns: &str, table: &str) -> Result<u64, NetnsBenchError> {
        let text = in_ns(ns, &["nft", "-j", "list", "table", "netdev", table])?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| NetnsBenchError::Tool {
                command: format!("nft -j list table netdev {table}"),
                stderr: format!("unreadable JSON: {e}"),
            })?;
        let mut packets = 0;
        for item in v["nftables"].as_array().into_iter().flatten() {
            for expr in item["rule"]["expr"].as_array().into_iter().flatten() {
                packets += expr["counter"]["packets"].as_u64().unwrap_or(0);
            }
        }
        Ok(packets)
    }

    fn delete(&self) {
        for ns in [&self.ingress, &self.egress] {
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    match pid.parse::<i32>() {
                        Ok(p) if p as u32 != std::process::id() => {
                            let _ = nix::sys::signal::kill(
                                nix::unistd::Pid::from_raw(p),
                                nix::sys::signal::Signal::SIGKILL,
                            );
                        }
                        _ => {}
                    }
                }
            }
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .output();
        }
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        self.delete();
    }
}

/// `--loss` in per mille, the unit of the nftables rule.
fn loss_per_mille(loss: f64) -> Result<u32, NetnsBenchError> {
    if !(0.0..100.0).contains(&loss) {
        return Err(NetnsBenchError::Usage(format!(
            "--loss {loss}: give a percentage from 0 to below 100"
        )));
    }
    let per_mille = (loss * 10.0).round() as u32;
    if loss > 0.0 && per_mille == 0 {
        return Err(NetnsBenchError::Usage(format!(
            "--loss {loss}: the smallest loss the nftables rule can drop is 0.1 %"
        )));
    }
    Ok(per_mille)
}

/// The work directory: removed when dropped unless `--keep`; a run that
/// failed (not one interrupted) keeps both daemons' logs next to it first.
struct WorkDir {
    root: PathBuf,
    keep: bool,
    succeeded: bool,
    interrupted: Arc<AtomicBool>,
}

impl WorkDir {
    fn create(keep: bool, interrupted: Arc<AtomicBool>) -> Result<WorkDir, NetnsBenchError> {
        let dir = tempfile::Builder::new()
            .prefix("ferry-bench-netns-")
            .tempdir()
            .map_err(NetnsBenchError::io(Path::new("temp dir")))?;
        Ok(WorkDir {
            root: dir.keep(),
            keep,
            succeeded: false,
            interrupted,
        })
    }

    fn log(&self, side: &str) -> PathBuf {
        self.root.join(side).join("ferryd.log")
    }

    /// Where the logs are once the run is over: in the work directory
    /// when it is kept, else `TMP/ferry-bench-netns-PID.SIDE.log`.
    fn kept_log(&self, side: &str) -> PathBuf {
        if self.keep {
            self.log(side)
        } else {
            std::env::temp_dir().join(format!(
                "ferry-bench-netns-{}.{side}.log",
                std::process::id()
            ))
        }
    }

    /// The pattern naming both kept logs, for messages.
    fn kept_logs(&self) -> PathBuf {
        self.kept_log("{ingress,egress}")
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        if !self.succeeded && !self.interrupted.load(Ordering::Relaxed) {
            for side in ["ingress", "egress"] {
                let _ = std::fs::copy(self.log(side), self.kept_log(side));
            }
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// One `ferryd` under `ip netns exec`, stopped (SIGTERM, then SIGKILL)
/// when dropped.
struct Ferryd {
    child: Child,
    side: &'static str,
    /// The control socket of its configuration.
    control: PathBuf,
}

impl Ferryd {
    fn start(
        ns: &str,
        config: &Path,
        side: &'static str,
        log: &Path,
    ) -> Result<Ferryd, NetnsBenchError> {
        let control = config::load(config)
            .map_err(DaemonError::from)?
            .control_socket();
        let logf = std::fs::File::create(log).map_err(NetnsBenchError::io(log))?;
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(crate::cli::demo::ferryd_path()?)
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(logf)
            .spawn()
            .map_err(|e| NetnsBenchError::Tool {
                command: format!("ip netns exec {ns} ferryd --config {}", config.display()),
                stderr: e.to_string(),
            })?;
        Ok(Ferryd {
            child,
            side,
            control,
        })
    }

    /// Its status from the control socket, if it answers.
    fn status(&self) -> Option<serde_json::Value> {
        socket::request(&self.control, &Request::Status)
            .ok()
            .filter(|v| v.get("error").is_none())
    }

    /// Fails when it has exited.
    fn check_alive(&mut self, kept_log: PathBuf) -> Result<(), NetnsBenchError> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(NetnsBenchError::DaemonExited {
                side: self.side,
                status: status.to_string(),
                log: kept_log,
            }),
            Err(e) => Err(NetnsBenchError::DaemonExited {
                side: self.side,
                status: e.to_string(),
                log: kept_log,
            }),
        }
    }

    /// Its peak resident set (`VmHWM`), in bytes. `ip netns exec` execs
    /// the daemon in place; should a version fork instead, its child is
    /// read.
    fn peak_rss_bytes(&self) -> Option<u64> {
        let pid = self.child.id();
        let comm = |p: u32| std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
        let pid = if comm(pid).trim() == "ferryd" {
            pid
        } else {
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok())
                .find(|p| comm(*p).trim() == "ferryd")?
        };
        vm_hwm_bytes(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
    }
}

impl Drop for Ferryd {
    fn drop(&mut self) {
        crate::cli::demo::stop_child(&mut self.child, Duration::from_secs(10));
    }
}

/// `VmHWM` of a `/proc/PID/status` text, in bytes.
fn vm_hwm_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Plain UDP over loopback, one sender thread and one receiver thread,
/// one `send`/`recv` per 1472-byte datagram, for about 1.5 s: the
/// receiver's bytes over the time between its first and last datagram, in
/// MB/s.
pub fn loopback_udp_mb_per_s() -> Result<f64, NetnsBenchError> {
    let here = Path::new("127.0.0.1 (UDP)");
    let rx = UdpSocket::bind("127.0.0.1:0").map_err(NetnsBenchError::io(here))?;
    let to = rx.local_addr().map_err(NetnsBenchError::io(here))?;
    let _ = nix::sys::socket::setsockopt(&rx, nix::sys::socket::sockopt::RcvBufForce, &(8 << 20));
    rx.set_read_timeout(Some(Duration::from_millis(200)))
        .map_err(NetnsBenchError::io(here))?;
    let tx = UdpSocket::bind("127.0.0.1:0").map_err(NetnsBenchError::io(here))?;
    tx.connect(to).map_err(NetnsBenchError::io(here))?;
    let done = Arc::new(AtomicBool::new(false));
    let receiver = {
        let done = done.clone();
        std::thread::Builder::new()
            .name("udp-recv".into())
            .spawn(move || {
                let mut buf = vec![0u8; 65_536];
                let (mut bytes, mut first, mut last) = (0u64, None, Instant::now());
                loop {
                    match rx.recv(&mut buf) {
                        Ok(n) => {
                            last = Instant::now();
                            first.get_or_insert(last);
                            bytes += n as u64;
                        }
                        Err(_) if done.load(Ordering::Relaxed) => break,
                        Err(_) => {}
                    }
                }
                (bytes, first.map(|f| last - f))
            })
            .map_err(|e| NetnsBenchError::Daemon(DaemonError::thread_start("udp-recv")(e)))?
    };
    let sender = std::thread::Builder::new()
        .name("udp-send".into())
        .spawn(move || {
            let datagram = [0x5au8; UDP_DATAGRAM_BYTES];
            let start = Instant::now();
            while start.elapsed() < UDP_RUN {
                for _ in 0..64 {
                    // A full receive buffer drops; the receiver counts
                    // what arrived.
                    let _ = tx.send(&datagram);
                }
            }
        })
        .map_err(|e| NetnsBenchError::Daemon(DaemonError::thread_start("udp-send")(e)))?;
    let _ = sender.join();
    done.store(true, Ordering::Relaxed);
    let (bytes, span) = receiver
        .join()
        .map_err(|_| NetnsBenchError::Usage("the UDP receiver thread panicked".into()))?;
    Ok(match span {
        Some(d) if !d.is_zero() => bytes as f64 / d.as_secs_f64() / 1e6,
        _ => 0.0,
    })
}

/// When things happened, as seen by polling both daemons.
#[derive(Default)]
struct Timeline {
    /// Its sends completed.
    sent: Option<Instant>,
    /// The egress side delivered it.
    delivered: Option<Instant>,
    /// The egress side failed it.
    failed: bool,
}

fn counter(v: &serde_json::Value, key: &str) -> u64 {
    v.get(key).and_then(serde_json::Value::as_u64).unwrap_or(0)
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

/// The last line of a log that names a failure, for the report.
fn failure_line(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    // Running as root without `[hardening] user`, each daemon logs an
    // ERROR about the privilege drop at start: not the reason looked for.
    text.lines()
        .rev()
        .find(|l| l.contains("failed") && !l.contains("HARDENING"))
        .map(|l| l.chars().take(400).collect())
}

/// Runs the benchmark and prints the result.
pub fn netns(a: &NetnsArgs) -> Result<(), NetnsBenchError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(NetnsBenchError::NotRoot);
    }
    loss_per_mille(a.loss)?;
    if a.size == 0 || a.timeout == 0 || a.rate_cap_mbit == Some(0) {
        return Err(NetnsBenchError::Usage(
            "--size, --timeout and --rate-cap-mbit must be at least 1".into(),
        ));
    }
    if a.repair.is_some_and(|r| !(0.0..=1000.0).contains(&r)) {
        return Err(NetnsBenchError::Usage(
            "--repair: give a percentage from 0 to 1000".into(),
        ));
    }
    let interrupted = Arc::new(AtomicBool::new(false));
    for sig in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        signal_hook::flag::register(sig, interrupted.clone())
            .map_err(NetnsBenchError::io(Path::new("signal handler")))?;
    }
    let check = || -> Result<(), NetnsBenchError> {
        if interrupted.load(Ordering::Relaxed) {
            Err(NetnsBenchError::Interrupted)
        } else {
            Ok(())
        }
    };

    // The yardstick first, while nothing of the bench runs.
    let udp = loopback_udp_mb_per_s()?;
    check()?;

    // Declared in this order so they drop in the reverse: daemons, then
    // namespaces, then the work directory (its logs complete).
    let mut work = WorkDir::create(a.keep, interrupted.clone())?;
    let ns = Namespaces::create(a)?;
    check()?;
    let mut o = TestbedOptions::shipped(
        "bench",
        SocketAddr::from((INGRESS_ADDR, 0)),
        SocketAddr::from((EGRESS_ADDR, LINK_PORT)),
    );
    if let Some(r) = a.repair {
        o.repair_overhead_percent = r;
    }
    if let Some(r) = a.rate {
        o.rate_bytes_per_s = r;
    }
    o.suite = a.suite.parse().map_err(DaemonError::Config)?;
    if let Some(b) = a.socket_buffer_bytes {
        o.socket_buffer_bytes = b;
    }
    let tb = testkit::create(&work.root, &o)?;
    if let Some(n) = a.gso_segments {
        let path = &tb.ingress_config;
        let text = std::fs::read_to_string(path).map_err(DaemonError::io(path))?;
        let text = text.replacen("[link]\n", &format!("[link]\nudp_gso_segments = {n}\n"), 1);
        std::fs::write(path, text).map_err(DaemonError::io(path))?;
    }
    if a.no_gro {
        let path = &tb.egress_config;
        let text = std::fs::read_to_string(path).map_err(DaemonError::io(path))?;
        let text = text.replacen("[link]\n", "[link]\nudp_gro = false\n", 1);
        std::fs::write(path, text).map_err(DaemonError::io(path))?;
    }
    let icfg = config::load(&tb.ingress_config).map_err(DaemonError::from)?;

    // The package is written before the clock starts, never held in memory.
    let source = work.root.join(PACKAGE);
    let digest = crate::cli::bench::write_random(&source, a.size, 0x00be_7c4e)?;
    check()?;

    let mut egress = Ferryd::start(&ns.egress, &tb.egress_config, "egress", &work.log("egress"))?;
    // The egress side binds its link socket before its control socket
    // answers; the ingress side starts only then, so nothing it sends meets
    // a closed port (whose ICMP answer would flow back).
    wait(
        START_LIMIT,
        "the egress ferryd answering",
        &work,
        &check,
        || {
            egress.check_alive(work.kept_log("egress"))?;
            Ok(egress.status().is_some())
        },
    )?;
    let mut ingress = Ferryd::start(
        &ns.ingress,
        &tb.ingress_config,
        "ingress",
        &work.log("ingress"),
    )?;
    wait(
        START_LIMIT,
        "the egress side seeing the link up",
        &work,
        &check,
        || {
            ingress.check_alive(work.kept_log("ingress"))?;
            egress.check_alive(work.kept_log("egress"))?;
            Ok(egress
                .status()
                .is_some_and(|s| s["link_up"] == serde_json::json!(true)))
        },
    )?;

    let pushed = Instant::now();
    let spooled = tb.spool.join(PACKAGE);
    std::fs::rename(&source, &spooled).map_err(NetnsBenchError::io(&spooled))?;
    let mut t = Timeline::default();
    let deadline = pushed + Duration::from_secs(a.timeout);
    while t.delivered.is_none() && !t.failed {
        check()?;
        ingress.check_alive(work.kept_log("ingress"))?;
        egress.check_alive(work.kept_log("egress"))?;
        let now = Instant::now();
        if now > deadline || t.sent.is_some_and(|s| now - s > AFTER_SENT_LIMIT) {
            return Err(NetnsBenchError::Timeout {
                what: "delivery of the package",
                limit: if now > deadline {
                    Duration::from_secs(a.timeout)
                } else {
                    AFTER_SENT_LIMIT
                },
                logs: work.kept_logs(),
            });
        }
        if let Some(s) = ingress.status() {
            if t.sent.is_none() && counter(&s, "sent") >= 1 {
                t.sent = Some(now);
            }
        }
        if let Some(s) = egress.status() {
            if counter(&s, "delivered") >= 1 {
                t.delivered = Some(now);
            }
            t.failed = counter(&s, "failed") >= 1;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
    // The sender's counters including the completed send.
    let publish = Instant::now();
    let mut ingress_status = ingress.status().unwrap_or_default();
    while counter(&ingress_status["sender"], "sends_completed") < 1
        && publish.elapsed() < PUBLISH_LIMIT
    {
        check()?;
        std::thread::sleep(Duration::from_millis(100));
        ingress_status = ingress.status().unwrap_or(ingress_status);
    }
    let egress_status = egress.status().unwrap_or_default();
    let ingress_rss = ingress.peak_rss_bytes();
    let egress_rss = egress.peak_rss_bytes();
    drop(ingress);
    drop(egress);
    let reverse_packets = Namespaces::counted(&ns.egress, REVERSE_TABLE)?;
    let wire_dropped = if loss_per_mille(a.loss)? > 0 {
        Namespaces::counted(&ns.egress, LOSS_TABLE)?
    } else {
        0
    };
    drop(ns);

    let outbox_file = tb.outbox.join(PACKAGE);
    let digest_ok = t.delivered.is_some()
        && outbox_file.exists()
        && crate::ingress::admission::digest_file(&ferry_suites::intl::IntlLink, &outbox_file)?.1
            == digest;
    let delivered = digest_ok;
    let seconds = t.delivered.map(|d| (d - pushed).as_secs_f64());
    let sender = &ingress_status["sender"];
    // The sender's own clock: polling every 50 ms cannot time a short send.
    let link_seconds = Some(counter(sender, "last_send_ms"))
        .filter(|&ms| ms > 0 && counter(sender, "last_send_bytes") == a.size)
        .map(|ms| ms as f64 / 1e3);
    let mb = |s: Option<f64>| s.filter(|_| delivered).map(|s| a.size as f64 / s / 1e6);
    let mb_per_s = mb(seconds);
    let link_mb_per_s = link_seconds.map(|s| a.size as f64 / s / 1e6);
    let (data_dg, repair_dg) = (
        counter(sender, "datagrams"),
        counter(sender, "repair_datagrams"),
    );
    let fec_overhead = if data_dg > repair_dg {
        repair_dg as f64 / (data_dg - repair_dg) as f64
    } else {
        0.0
    };
    let ratio = |x: Option<f64>| x.filter(|_| udp > 0.0).map(|x| round(x / udp, 3));
    let failure = if delivered {
        None
    } else if t.delivered.is_some() {
        Some("the delivered file's SHA-256 differs from the pushed one".to_owned())
    } else {
        Some(
            failure_line(&work.log("egress"))
                .unwrap_or_else(|| "the egress side failed the package".into()),
        )
    };
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    let out = serde_json::json!({
        "bytes": a.size,
        "delivered": delivered,
        "lost_packages": u64::from(!delivered),
        "mb_per_s": mb_per_s.map(|x| round(x, 1)),
        "seconds": seconds.map(|x| round(x, 3)),
        "link_mb_per_s": link_mb_per_s.map(|x| round(x, 1)),
        "link_seconds": link_seconds.map(|x| round(x, 3)),
        "loopback_udp_mb_per_s": round(udp, 1),
        "ratio_to_udp": ratio(mb_per_s),
        "link_ratio_to_udp": ratio(link_mb_per_s),
        "loss_percent": a.loss,
        "wire_dropped": wire_dropped,
        "fec_overhead": round(fec_overhead, 4),
        "repair_percent": icfg.link.repair_overhead_percent,
        "rate_bytes_per_s": icfg.link.rate_bytes_per_s,
        "rate_cap_mbit": a.rate_cap_mbit,
        "socket_buffer_bytes": icfg.link.socket_buffer_bytes,
        "suite": a.suite,
        "datagrams_sent": counter(&ingress_status, "datagrams_sent"),
        "udp_messages_sent": counter(&ingress_status, "udp_messages_sent"),
        "udp_gso_segments": counter(&ingress_status, "udp_gso_segments"),
        "send_errors": counter(&ingress_status, "send_errors"),
        "egress_failed": counter(&egress_status, "failed"),
        "egress_socket_dropped": counter(&egress_status["receive"], "kernel_dropped_datagrams"),
        "egress_udp_gro": egress_status["receive"]["udp_gro"].as_bool().unwrap_or(false),
        "egress_udp_gro_messages": counter(&egress_status["receive"], "udp_gro_messages"),
        "egress_spool_dropped": counter(&egress_status["receive"], "dropped_datagrams"),
        "egress_peak_rss_bytes": egress_rss,
        "ingress_peak_rss_bytes": ingress_rss,
        "reverse_packets": reverse_packets,
        "failure": failure,
        "load_average": load,
        "work_dir": a.keep.then(|| work.root.clone()),
    });
    if a.json {
        println!("{out}");
    } else {
        print_human(a, &out, udp);
    }
    if !delivered {
        return Err(NetnsBenchError::NotDelivered {
            why: failure.unwrap_or_default(),
            logs: work.kept_logs(),
        });
    }
    if reverse_packets > 0 {
        return Err(NetnsBenchError::Reverse(reverse_packets));
    }
    work.succeeded = true;
    Ok(())
}

/// Polls `ready` every 50 ms until it is true, failing after `limit`, on
/// an interruption or on its own error.
fn wait(
    limit: Duration,
    what: &'static str,
    work: &WorkDir,
    check: &dyn Fn() -> Result<(), NetnsBenchError>,
    mut ready: impl FnMut() -> Result<bool, NetnsBenchError>,
) -> Result<(), NetnsBenchError> {
    let start = Instant::now();
    loop {
        check()?;
        if ready()? {
            return Ok(());
        }
        if start.elapsed() > limit {
            return Err(NetnsBenchError::Timeout {
                what,
                limit,
                logs: work.kept_logs(),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The figures of `out` in a few lines.
fn print_human(a: &NetnsArgs, out: &serde_json::Value, udp: f64) {
    let f = |k: &str| out[k].as_f64();
    let mib = |k: &str| {
        out[k].as_u64().map_or("?".to_owned(), |b| {
            format!("{:.1} MiB", b as f64 / 1048576.0)
        })
    };
    let rate = match out["rate_bytes_per_s"].as_u64() {
        Some(0) | None => "unpaced".to_owned(),
        Some(r) => format!("paced at {:.0} MB/s", r as f64 / 1e6),
    };
    println!(
        "bench netns: {} bytes in one package, two ferryd in network namespaces over veth, {}% loss{}, {rate}, repair {}%, {} suite",
        a.size,
        a.loss,
        a.rate_cap_mbit.map_or(String::new(), |m| format!(", wire capped at {m} Mbit/s")),
        out["repair_percent"],
        a.suite
    );
    match (f("mb_per_s"), f("seconds")) {
        (Some(mb), Some(s)) => println!(
            "delivered intact in {s:.2} s: {mb:.1} MB/s push to delivery ({:.2} × plain UDP)",
            mb / udp.max(1e-9)
        ),
        _ => println!(
            "NOT delivered: {}",
            out["failure"].as_str().unwrap_or("unknown")
        ),
    }
    println!(
        "sending phase {}; plain UDP on loopback {udp:.1} MB/s; FEC overhead {:.1}%; {} datagrams dropped by the wire",
        f("link_mb_per_s").map_or("unknown".to_owned(), |x| format!("{x:.1} MB/s")),
        f("fec_overhead").unwrap_or(0.0) * 100.0,
        out["wire_dropped"]
    );
    println!(
        "lost packages {}; packets from egress toward ingress {}; peak RSS ingress {}, egress {}; load average {}",
        out["lost_packages"],
        out["reverse_packets"],
        mib("ingress_peak_rss_bytes"),
        mib("egress_peak_rss_bytes"),
        out["load_average"].as_str().unwrap_or("?")
    );
    if let Some(dir) = out["work_dir"].as_str() {
        println!("work directory kept: {dir}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_is_given_per_mille_to_nftables() {
        assert_eq!(loss_per_mille(0.0).ok(), Some(0));
        assert_eq!(loss_per_mille(1.0).ok(), Some(10));
        assert_eq!(loss_per_mille(5.0).ok(), Some(50));
        assert_eq!(loss_per_mille(0.1).ok(), Some(1));
        assert!(loss_per_mille(0.01).is_err());
        assert!(loss_per_mille(100.0).is_err());
        assert!(loss_per_mille(-1.0).is_err());
    }

    #[test]
    fn peak_rss_is_read_from_vm_hwm() {
        let status = "Name:\tferryd\nVmPeak:\t  999 kB\nVmHWM:\t   12345 kB\nVmRSS:\t 100 kB\n";
        assert_eq!(vm_hwm_bytes(status), Some(12345 * 1024));
        assert_eq!(vm_hwm_bytes("Name:\tx\n"), None);
    }
}
