//! A complete two-sided link set up in one directory: keys for both sides,
//! paired, and a configuration file per side. Used by `ferryctl demo`, the
//! `ferryctl bench` commands and the end-to-end tests, so all of them
//! exercise the same files an operator would write.

use crate::DaemonError;
use std::path::{Path, PathBuf};

/// Knobs of a generated link.
#[derive(Debug, Clone)]
pub struct TestbedOptions {
    /// Link name.
    pub link: String,
    /// MTU.
    pub mtu: usize,
    /// Repair overhead in percent.
    pub repair_overhead_percent: f64,
    /// Pacing rate (0 = unpaced).
    pub rate_bytes_per_s: u64,
    /// Sends per package.
    pub redundancy: u8,
    /// Egress listen address (its port must be free).
    pub listen: std::net::SocketAddr,
    /// Ingress bind address of the link socket.
    pub bind: std::net::SocketAddr,
    /// Socket buffer size requested.
    pub socket_buffer_bytes: usize,
    /// Receive memory bound.
    pub max_buffer_bytes: usize,
    /// Crypto suite of both sides.
    pub suite: ferry_keys::Suite,
    /// The ingress side's loss budget in percent (0 = off). Tests that
    /// pace the link slowly to build a backlog switch it off, so a small
    /// package costs the few datagrams they were timed with.
    pub loss_budget_percent: f64,
    /// Heartbeats every 200 ms, the link down after 1 s and redundant
    /// copies 200 ms apart, so tests see the link up quickly; `false`
    /// leaves these keys out and the shipped defaults apply.
    pub quick_timing: bool,
}

impl TestbedOptions {
    /// Loopback defaults with a free UDP port; the pacing is the shipped
    /// default, so the tests run the link as it is deployed.
    pub fn loopback(link: &str) -> Result<TestbedOptions, DaemonError> {
        Ok(TestbedOptions {
            link: link.to_string(),
            mtu: 1500,
            repair_overhead_percent: 10.0,
            rate_bytes_per_s: crate::config::DEFAULT_RATE_BYTES_PER_S,
            redundancy: 1,
            listen: free_udp_port()?,
            bind: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            socket_buffer_bytes: 32 << 20,
            max_buffer_bytes: 256 << 20,
            suite: ferry_keys::Suite::Intl,
            loss_budget_percent: 5.0,
            quick_timing: true,
        })
    }

    /// The shipped defaults of every key the generated files write (what
    /// an operator gets who leaves them out), for a link from `bind` to
    /// `listen`: benchmarks that claim to measure what ships start here.
    pub fn shipped(
        link: &str,
        bind: std::net::SocketAddr,
        listen: std::net::SocketAddr,
    ) -> TestbedOptions {
        use crate::config as d;
        TestbedOptions {
            link: link.to_string(),
            mtu: d::DEFAULT_MTU,
            repair_overhead_percent: d::DEFAULT_REPAIR_OVERHEAD_PERCENT,
            rate_bytes_per_s: d::DEFAULT_RATE_BYTES_PER_S,
            redundancy: d::DEFAULT_REDUNDANCY,
            listen,
            bind,
            socket_buffer_bytes: d::DEFAULT_SOCKET_BUFFER_BYTES,
            max_buffer_bytes: d::DEFAULT_MAX_BUFFER_BYTES,
            suite: ferry_keys::Suite::Intl,
            loss_budget_percent: d::DEFAULT_LOSS_BUDGET_PERCENT,
            quick_timing: false,
        }
    }
}

/// Paths of a generated testbed.
#[derive(Debug, Clone)]
pub struct Testbed {
    /// Root directory.
    pub root: PathBuf,
    /// Ingress configuration file.
    pub ingress_config: PathBuf,
    /// Egress configuration file.
    pub egress_config: PathBuf,
    /// Ingress spool directory (drop files here).
    pub spool: PathBuf,
    /// Egress outbox directory.
    pub outbox: PathBuf,
}

/// A loopback UDP address whose port was free a moment ago (see
/// [`free_port`]).
pub fn free_udp_port() -> Result<std::net::SocketAddr, DaemonError> {
    free_port(Proto::Udp).map(|port| std::net::SocketAddr::from(([127, 0, 0, 1], port)))
}

/// The transport a port is picked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// A UDP port.
    Udp,
    /// A TCP port.
    Tcp,
}

/// A loopback port that was free a moment ago and that the kernel never
/// hands out on its own.
///
/// A port the kernel chose (`bind` to port 0) is released before the
/// daemon binds it, and in that window any socket bound to port 0 — the
/// ingress side's sending socket, a client's connection in another test
/// — may be given the same port: the daemon then fails to start and the
/// test waits for nothing. Ports are therefore picked outside
/// `net.ipv4.ip_local_port_range`, and a process-wide counter keeps two
/// picks of one test binary apart.
pub fn free_port(proto: Proto) -> Result<u16, DaemonError> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let (lo, hi) = ephemeral_range();
    // Below the ephemeral range when there is room, above it otherwise.
    let (first, count) = if lo >= 12_000 {
        (10_000u32, lo - 10_000)
    } else {
        (hi + 1, 65_535u32.saturating_sub(hi))
    };
    let here = Path::new("127.0.0.1");
    if count < 100 {
        return Err(DaemonError::Internal(format!(
            "no port range outside ip_local_port_range {lo}..{hi} to pick a test port from"
        )));
    }
    // Processes of one `cargo test` run start apart in the range.
    let start = std::process::id().wrapping_mul(2_654_435_761) % count;
    for _ in 0..count {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let Ok(port) = u16::try_from(first + (start + n) % count) else {
            continue;
        };
        let free = match proto {
            Proto::Udp => std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok(),
            Proto::Tcp => std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
        };
        if free {
            return Ok(port);
        }
    }
    Err(DaemonError::io(here)(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        "every port outside ip_local_port_range is taken",
    )))
}

/// `net.ipv4.ip_local_port_range`, or Linux's default when unreadable.
fn ephemeral_range() -> (u32, u32) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| {
            let mut it = t.split_whitespace().map(|v| v.parse::<u32>().ok());
            Some((it.next()??, it.next()??))
        })
        .filter(|(lo, hi)| lo <= hi && *hi <= 65_535)
        .unwrap_or((32_768, 60_999))
}

/// Creates keys, pairs them and writes both configuration files under `root`.
pub fn create(root: &Path, o: &TestbedOptions) -> Result<Testbed, DaemonError> {
    std::fs::create_dir_all(root).map_err(DaemonError::io(root))?;
    let ik = root.join("ingress/keys");
    let ek = root.join("egress/keys");
    for (side, dir) in [
        (ferry_keys::Side::Ingress, &ik),
        (ferry_keys::Side::Egress, &ek),
    ] {
        let passphrase = write_passphrase(&root.join(side.name()).join("passphrase"))?;
        let opts = ferry_keys::InitOptions {
            link: o.link.clone(),
            side,
            suite: o.suite,
            validity_days: 365,
            // A throwaway link: the cheapest Argon2id profile keeps the
            // tests and the demo quick. Real sites tune to about a second.
            kdf_target_ms: 0,
        };
        ferry_keys::init(dir, &opts, &passphrase)?;
    }
    ferry_keys::import_peer(&ik, &ek.join(ferry_keys::files::PUBLIC), false)?;
    ferry_keys::import_peer(&ek, &ik.join(ferry_keys::files::PUBLIC), false)?;
    let timing = if o.quick_timing {
        "redundancy_spacing_ms = 200\nheartbeat_interval_ms = 200\nlink_down_after_ms = 1000\n"
    } else {
        ""
    };
    let common = format!(
        "name = \"{}\"\nsuite = \"{}\"\nmtu = {}\nsocket_buffer_bytes = {}\nrepair_overhead_percent = {:?}\nredundancy = {}\n{timing}max_buffer_bytes = {}\n",
        o.link, o.suite.name(), o.mtu, o.socket_buffer_bytes, o.repair_overhead_percent, o.redundancy, o.max_buffer_bytes
    );
    let ingress = format!(
        "[link]\nrole = \"ingress\"\n{common}peer = [\"{}\"]\nbind = \"{}\"\nrate_bytes_per_s = {}\nloss_budget_percent = {:?}\n\n[paths]\nstate_dir = \"state\"\nkeys_dir = \"keys\"\npassphrase_file = \"passphrase\"\nspool_dir = \"spool\"\n",
        o.listen, o.bind, o.rate_bytes_per_s, o.loss_budget_percent
    );
    let egress = format!(
        "[link]\nrole = \"egress\"\n{common}listen = [\"{}\"]\n\n[paths]\nstate_dir = \"state\"\nkeys_dir = \"keys\"\npassphrase_file = \"passphrase\"\noutbox_dir = \"outbox\"\n",
        o.listen
    );
    let ic = root.join("ingress/ferryd.toml");
    let ec = root.join("egress/ferryd.toml");
    std::fs::write(&ic, ingress).map_err(DaemonError::io(&ic))?;
    std::fs::write(&ec, egress).map_err(DaemonError::io(&ec))?;
    let spool = root.join("ingress/spool");
    let outbox = root.join("egress/outbox");
    std::fs::create_dir_all(&spool).map_err(DaemonError::io(&spool))?;
    Ok(Testbed {
        root: root.to_path_buf(),
        ingress_config: ic,
        egress_config: ec,
        spool,
        outbox,
    })
}

/// Writes a random passphrase (mode 0600) for a testbed side.
fn write_passphrase(path: &Path) -> Result<ferry_keys::Passphrase, DaemonError> {
    let mut bytes = [0u8; 24];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| DaemonError::Random)?;
    let text = zeroize::Zeroizing::new(hex::encode(bytes));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(DaemonError::io(dir))?;
    }
    ferry_keys::write_atomic(path, text.as_bytes(), 0o600)?;
    Ok(ferry_keys::Passphrase::new(&text)?)
}

/// Puts `data` into the spool under `name` the way a well-behaved client
/// does: write a dot file, then rename it into place.
pub fn spool_file(spool: &Path, name: &str, data: &[u8]) -> Result<(), DaemonError> {
    let tmp = spool.join(format!(".{name}.part"));
    std::fs::write(&tmp, data).map_err(DaemonError::io(&tmp))?;
    let dest = spool.join(name);
    std::fs::rename(&tmp, &dest).map_err(DaemonError::io(&dest))
}

/// A zip archive with stored (uncompressed) members, UTF-8 names: test
/// data whose members' bytes stay visible in the archive.
pub fn stored_zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in entries {
        let off = out.len() as u32;
        let crc = {
            let mut h = crc32fast::Hasher::new();
            h.update(data);
            h.finalize()
        };
        let len = data.len() as u32;
        let name = name.as_bytes();
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        out.extend_from_slice(&20u16.to_le_bytes());
        out.extend_from_slice(&0x0800u16.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(name);
        out.extend_from_slice(data);
        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&0x0014u16.to_le_bytes());
        central.extend_from_slice(&20u16.to_le_bytes());
        central.extend_from_slice(&0x0800u16.to_le_bytes());
        central.extend_from_slice(&0u16.to_le_bytes());
        central.extend_from_slice(&[0; 4]);
        central.extend_from_slice(&crc.to_le_bytes());
        central.extend_from_slice(&len.to_le_bytes());
        central.extend_from_slice(&len.to_le_bytes());
        central.extend_from_slice(&(name.len() as u16).to_le_bytes());
        central.extend_from_slice(&[0; 8]);
        central.extend_from_slice(&0u32.to_le_bytes());
        central.extend_from_slice(&off.to_le_bytes());
        central.extend_from_slice(name);
    }
    let cd_off = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&cd_off.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

/// A ustar archive of regular files (mode 0644, a fixed owner and time):
/// test and bench data, where the archive's bytes must be reproducible.
/// Names longer than 100 bytes are cut.
pub fn ustar(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, data) in entries {
        let mut h = [0u8; 512];
        let n = name.as_bytes();
        h[..n.len().min(100)].copy_from_slice(&n[..n.len().min(100)]);
        h[100..107].copy_from_slice(b"0000644");
        h[108..115].copy_from_slice(b"0001750");
        h[116..123].copy_from_slice(b"0001750");
        h[124..135].copy_from_slice(format!("{:011o}", data.len()).as_bytes());
        h[136..147].copy_from_slice(b"14723545600");
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(data);
        out.extend(std::iter::repeat_n(0, (512 - data.len() % 512) % 512));
    }
    out.extend(std::iter::repeat_n(0, 1024));
    out
}
