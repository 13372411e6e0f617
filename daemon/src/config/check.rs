//! The daemon's TOML configuration (`ferryd.toml`): paths, the link, the
//! planes and limits of one side. What may cross, and when, is the policy's
//! business (`ferry-policy`, loaded by `inspection::policy_gate`).
//!
//! An operator edits this file by hand on a hardened host, often with no one
//! to ask, so every refusal names the file, line and column, shows the line,
//! and says what to change. Values are checked here, once, so the rest of the
//! daemon can trust them.

use ferry_common::{did_you_mean, located};
use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// Largest `ferryd.toml` read (a few KiB in practice; a larger file is a
/// wrong path).
pub const CONFIG_MAX_BYTES: u64 = 4 * 1024 * 1024;
/// Smallest accepted MTU: the IPv6 minimum, below which no real link runs.
pub const MTU_MIN: usize = 1280;
/// Largest accepted MTU: common jumbo-frame limit.
pub const MTU_MAX: usize = 9216;
/// IPv4 + UDP header bytes subtracted from the MTU to get the datagram size.
pub const IP_UDP_OVERHEAD_BYTES: usize = 28;
/// Shortest epoch: key evolution more often than this buys nothing and costs
/// key-file writes.
pub const EPOCH_LENGTH_MIN_S: u64 = 60;
/// Largest FEC block, in source symbols.
pub const BLOCK_SYMBOLS_MAX: u16 = 16384;
/// Most sends per package.
pub const REDUNDANCY_MAX: u8 = 8;
/// Link names end up in file names, logs and datagram tags.
pub const LINK_NAME_MAX_CHARS: usize = 64;
/// Socket buffers below this would drop datagrams at any useful rate.
pub const SOCKET_BUFFER_MIN_BYTES: usize = 4096;
/// The kernel stores socket buffer sizes in an `int` and doubles them.
pub const SOCKET_BUFFER_MAX_BYTES: usize = 1 << 30;
/// Receive memory below one MiB cannot hold a single default FEC block.
pub const MAX_BUFFER_MIN_BYTES: usize = 1 << 20;

const DEFAULT_MTU: usize = 1500;
const DEFAULT_BIND: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
const DEFAULT_RATE_BYTES_PER_S: u64 = 0;
const DEFAULT_SOCKET_BUFFER_BYTES: usize = 8 << 20;
const DEFAULT_HEARTBEAT_INTERVAL_MS: u64 = 1000;
const DEFAULT_LINK_DOWN_AFTER_MS: u64 = 3500;
const DEFAULT_EPOCH_LENGTH_S: u64 = 3600;
/// 2026-01-01T00:00:00Z. Both sides derive every epoch secret from the
/// one at the origin by ratcheting forward, so an origin in 1970 would cost
/// ~500 000 HKDF steps at each side's first start.
const DEFAULT_EPOCH_ORIGIN_UNIX_S: u64 = 1_767_225_600;
const DEFAULT_EPOCH_GRACE: u32 = 1;
const DEFAULT_REPAIR_OVERHEAD_PERCENT: f64 = 10.0;
const DEFAULT_BLOCK_SYMBOLS: u16 = 1024;
const DEFAULT_REDUNDANCY: u8 = 1;
const DEFAULT_REDUNDANCY_SPACING_MS: u64 = 1000;
const DEFAULT_MAX_BUFFER_BYTES: usize = 256 << 20;
const DEFAULT_PACKAGE_IDLE_TIMEOUT_MS: u64 = 5000;
/// Ingress: a package is sent once more this long after its sends ended
/// (self-healing after an egress crash; longer than the unit's restart).
const DEFAULT_HEAL_RESEND_AFTER_MS: u64 = 15_000;
/// Ingress: bytes per second the self-healing re-sends may use at most.
const DEFAULT_HEAL_RESEND_MAX_BYTES_PER_S: u64 = 10_000_000;
const DEFAULT_RETENTION_MAX_BYTES: u64 = 1 << 30;
/// Default `[audit] min_free_bytes_accept`: 1 GiB.
const DEFAULT_AUDIT_MIN_FREE_BYTES_ACCEPT: u64 = 1 << 30;
/// Default `[ingest] max_package_bytes`: 1 GiB.
const DEFAULT_INGEST_MAX_PACKAGE_BYTES: u64 = 1 << 30;
/// Default `[ingest] max_queued_packages`.
pub const DEFAULT_INGEST_MAX_QUEUED_PACKAGES: u64 = 100_000;
/// Default `[ingest] min_free_bytes`: 1 GiB.
const DEFAULT_INGEST_MIN_FREE_BYTES: u64 = 1 << 30;
const DEFAULT_RETENTION_MAX_AGE_S: u64 = 7 * 24 * 3600;

/// The whole configuration, checked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    /// `[link]`: the one-way link this daemon serves.
    pub link: LinkSection,
    /// `[paths]`: where state, keys and files live.
    pub paths: PathsSection,
    /// `[retention]`: ingress copies kept for operator resends.
    pub retention: RetentionSection,
    /// `[ingest]`: the HTTPS ingest API (ingress only; absent = spool only).
    pub ingest: Option<IngestSection>,
    /// `[policy]`: the policy file (ingress only; absent = no policy, the
    /// link's name is the one channel and every authenticated client may
    /// push).
    pub policy: Option<PolicySection>,
    /// `[audit]`: the tamper-evident audit log (absent = none).
    pub audit: Option<AuditSection>,
    /// `[hardening]`: process hardening (absent = every step on).
    pub hardening: HardeningSection,
    /// `[metrics]`: the Prometheus endpoint (absent = none).
    pub metrics: Option<MetricsSection>,
    /// `[admin]`: the role-separated admin plane (absent = the control
    /// socket is private to root and the service user, roles not separated).
    pub admin: Option<AdminSection>,
    /// `[downstream]`: the TLS client identity the egress side presents to
    /// the downstream HTTPS endpoints its policy names (egress only).
    pub downstream: Option<DownstreamSection>,
    /// `[admin_api]`: the admin plane over HTTPS for administrators with
    /// client certificates (absent = the local socket only).
    pub admin_api: Option<AdminApiSection>,
}

/// `[admin_api]`: `POST /v1/admin` over mTLS. The caller's role is the one
/// its client certificate carries (`ferryctl certs issue-client --role`);
/// the same gate as the control socket decides and audits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AdminApiSection {
    /// Address and TCP port.
    pub listen: SocketAddr,
    /// Server certificate (PEM).
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// CAs whose client certificates may administer.
    pub client_ca: Vec<PathBuf>,
    /// Their CRLs.
    pub crl: Vec<PathBuf>,
    /// How often the CAs and CRLs are read again (open connections are
    /// checked against a changed CRL within this period).
    pub trust_reload_interval_s: u64,
}

impl Config {
    /// Looks up `[admin]` user names now, while `/etc/passwd` is still
    /// readable (ferryd calls this before Landlock confines it).
    pub fn resolve_admin(&mut self) -> Result<(), String> {
        let Some(a) = self.admin.as_mut() else {
            return Ok(());
        };
        for list in [
            &mut a.sysadmin,
            &mut a.secadmin,
            &mut a.auditor,
            &mut a.reviewer,
        ] {
            for p in list.iter_mut() {
                if let AdminPrincipal::User(name) = p {
                    let uid = match nix::unistd::User::from_name(name) {
                        Ok(Some(u)) => u.uid.as_raw(),
                        Ok(None) => {
                            return Err(format!(
                                "[admin]: user `{name}` does not exist on this host; create the account or write \"uid:N\""
                            ))
                        }
                        Err(e) => return Err(format!("[admin]: looking up user `{name}`: {e}")),
                    };
                    *p = AdminPrincipal::Resolved {
                        name: name.clone(),
                        uid,
                    };
                }
            }
        }
        Ok(())
    }

    /// Where the control socket is: `[admin] socket`, or
    /// `STATE_DIR/control.sock`.
    pub fn control_socket(&self) -> PathBuf {
        self.admin
            .as_ref()
            .and_then(|a| a.socket.clone())
            .unwrap_or_else(|| self.paths.state_dir.join(crate::admin::protocol::SOCKET))
    }
}

/// One administrator: a user name, or `uid:N`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum AdminPrincipal {
    /// Resolved to a uid when ferryd starts.
    User(String),
    /// A numeric uid.
    Uid(u32),
    /// A user name already looked up (by [`Config::resolve_admin`]).
    Resolved {
        /// The account name.
        name: String,
        /// Its uid.
        uid: u32,
    },
}

impl std::fmt::Display for AdminPrincipal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdminPrincipal::User(u) => write!(f, "{u}"),
            AdminPrincipal::Uid(n) => write!(f, "uid:{n}"),
            AdminPrincipal::Resolved { name, .. } => write!(f, "{name}"),
        }
    }
}

/// `[admin]`: who holds which administrative role on the control socket
/// (callers identified by the kernel's peer credentials). One person holds
/// one role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AdminSection {
    /// The socket (mode 0660 when set: put it in a directory whose group
    /// is the administrators' and which is setgid, so the socket gets that
    /// group); default `STATE_DIR/control.sock`, mode 0600.
    pub socket: Option<PathBuf>,
    /// 系统管理员: status, resend, keys on disk.
    pub sysadmin: Vec<AdminPrincipal>,
    /// 安全保密管理员: policy reload, approvals configuration.
    pub secadmin: Vec<AdminPrincipal>,
    /// 安全审计员: audit read/verify/export.
    pub auditor: Vec<AdminPrincipal>,
    /// Approvers of held packages (two-person rule).
    pub reviewer: Vec<AdminPrincipal>,
}

/// `[downstream]`: how the egress side delivers to the downstream HTTPS
/// endpoints of channels whose policy `destination` is an `https://` URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DownstreamSection {
    /// CA certificates (PEM) the downstream servers' certificates must
    /// chain to.
    pub ca: PathBuf,
    /// The client certificate presented (mTLS).
    pub cert: PathBuf,
    /// Its private key (mode 0600 or stricter).
    pub key: PathBuf,
    /// A request that makes no progress for this long is abandoned and
    /// retried.
    pub timeout_s: u64,
    /// First retry delay after a failure; doubled per failure.
    pub retry_initial_ms: u64,
    /// Longest retry delay.
    pub retry_max_ms: u64,
    /// An endpoint failing for this long raises an alarm.
    pub alarm_after_s: u64,
}

/// Default `[downstream] timeout_s`.
pub const DEFAULT_DOWNSTREAM_TIMEOUT_S: u64 = 60;
/// Default `[downstream] retry_initial_ms`.
pub const DEFAULT_DOWNSTREAM_RETRY_INITIAL_MS: u64 = 1_000;
/// Default `[downstream] retry_max_ms`: five minutes.
pub const DEFAULT_DOWNSTREAM_RETRY_MAX_MS: u64 = 300_000;
/// Default `[downstream] alarm_after_s`.
pub const DEFAULT_DOWNSTREAM_ALARM_AFTER_S: u64 = 300;

/// `[metrics]`: `GET /metrics` in the Prometheus text format, on its own
/// listener (plain HTTP: bind it to loopback or a management network).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MetricsSection {
    /// Address and TCP port.
    pub listen: SocketAddr,
}

/// Longest service user or group name (the `useradd` limit).
pub const HARDENING_NAME_MAX_CHARS: usize = 32;

/// `[hardening]`. Every step is on unless switched off here by name;
/// `ferryd` logs each step that is off and `ferryctl selfcheck` fails it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HardeningSection {
    /// Service user to switch to when started as root.
    pub user: Option<String>,
    /// Its group (default: the user's primary group).
    pub group: Option<String>,
    /// setgroups → setgid → setuid to `user`, capabilities dropped.
    pub drop_privileges: bool,
    /// `RLIMIT_CORE` 0 and not dumpable.
    pub forbid_core_dumps: bool,
    /// `PR_SET_NO_NEW_PRIVS`.
    pub no_new_privs: bool,
    /// Landlock filesystem confinement.
    pub landlock: bool,
    /// Paths to allow read-only beyond those the configuration names.
    pub extra_read_paths: Vec<PathBuf>,
    /// Paths to allow read-write beyond those the configuration names.
    pub extra_write_paths: Vec<PathBuf>,
    /// The seccomp allow-list.
    pub seccomp: bool,
    /// What a system call off the list gets.
    pub seccomp_action: SeccompActionName,
    /// Close descriptors inherited from the parent.
    pub close_inherited_fds: bool,
    /// Keep only the environment variables ferryd reads.
    pub sanitize_environment: bool,
}

impl Default for HardeningSection {
    fn default() -> Self {
        HardeningSection {
            user: None,
            group: None,
            drop_privileges: true,
            forbid_core_dumps: true,
            no_new_privs: true,
            landlock: true,
            extra_read_paths: Vec::new(),
            extra_write_paths: Vec::new(),
            seccomp: true,
            seccomp_action: SeccompActionName::KillProcess,
            close_inherited_fds: true,
            sanitize_environment: true,
        }
    }
}

/// `seccomp_action` as written in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeccompActionName {
    /// Kill the whole process (default).
    KillProcess,
    /// Fail the call with EPERM.
    Errno,
    /// Allow and log (for finding missing calls only).
    Log,
}

/// `[audit]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditSection {
    /// The log directory (`ferryctl audit init --dir`).
    pub dir: PathBuf,
    /// Below this much free space on the log's filesystem no package is
    /// accepted, so the log outlives intake (fail-secure).
    pub min_free_bytes_accept: u64,
}

/// `[policy]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicySection {
    /// The policy file.
    pub file: PathBuf,
    /// Security-administrator public keys; when given, the policy must
    /// carry a detached signature (`FILE.sig`) by one of them.
    pub signers: Vec<PathBuf>,
}

/// `[ingest]`: HTTPS with mandatory client certificates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IngestSection {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Server certificate (PEM).
    pub cert: PathBuf,
    /// Server key (PEM, 0600).
    pub key: PathBuf,
    /// CA certificates that issue client certificates.
    pub client_ca: Vec<PathBuf>,
    /// CRLs of those CAs.
    pub crl: Vec<PathBuf>,
    /// Largest package accepted, in bytes (413 beyond, while streaming).
    pub max_package_bytes: u64,
    /// Free space the queue's filesystem must keep (503 below).
    pub min_free_bytes: u64,
    /// `503` + `Retry-After` while this many packages wait to be sent.
    pub max_queued_packages: u64,
    /// Deadlines and connection caps of the HTTPS server.
    pub limits: ConnectionLimits,
    /// How often the CA certificates and CRLs are read again; open
    /// connections are checked against a changed CRL within this period.
    pub trust_reload_interval_s: u64,
    /// Client refusals per minute above which an alarm is raised (and
    /// refusals beyond it are audited as one summary record).
    pub refusal_alarm_per_minute: u64,
}

/// Deadlines and caps of an HTTPS server (`[ingest]`), against clients that
/// hold connections without finishing them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectionLimits {
    /// Time to finish the TLS handshake.
    pub handshake_timeout_s: u64,
    /// Time to send a request's head.
    pub header_timeout_s: u64,
    /// An open connection with no request in flight is closed after this.
    pub idle_timeout_s: u64,
    /// Longest pause between two pieces of a request body.
    pub body_idle_timeout_s: u64,
    /// A body slower than this on average (after its first
    /// `body_idle_timeout_s`) is cut off with `408`; 0 = no minimum.
    pub min_body_bytes_per_s: u64,
    /// Connections at once, from everyone.
    pub max_connections: u64,
    /// Connections at once of one client certificate subject.
    pub max_connections_per_identity: u64,
    /// TLS handshakes in progress at once from one IP address (identity is
    /// not known yet); a new one closes the oldest.
    pub max_handshakes_per_address: u64,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            handshake_timeout_s: 10,
            header_timeout_s: 10,
            idle_timeout_s: 60,
            body_idle_timeout_s: 30,
            min_body_bytes_per_s: 1024,
            max_connections: 512,
            max_connections_per_identity: 32,
            max_handshakes_per_address: 32,
        }
    }
}

/// Default `[ingest]`/`[admin_api] trust_reload_interval_s`.
pub const DEFAULT_TRUST_RELOAD_INTERVAL_S: u64 = 5;
/// Default `[ingest] refusal_alarm_per_minute`.
pub const DEFAULT_REFUSAL_ALARM_PER_MINUTE: u64 = 60;

/// Which end of the one-way link this daemon is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Seals and sends.
    Ingress,
    /// Receives and delivers.
    Egress,
}

/// The crypto suite name as written in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SuiteName {
    /// Ed25519, X25519, AES-256-GCM, SHA-256.
    Intl,
    /// SM2, SM3, SM4.
    Gm,
}

/// `[link]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LinkSection {
    /// Link name, the same on both sides.
    pub name: String,
    /// This daemon's end of the link.
    pub role: Role,
    /// Crypto suite.
    pub suite: SuiteName,
    /// Path MTU in bytes; datagrams are at most `mtu - 28`.
    pub mtu: usize,
    /// Ingress: destinations, used round-robin.
    pub peer: Vec<SocketAddr>,
    /// Ingress: local address to send from.
    pub bind: SocketAddr,
    /// Egress: sockets to receive on.
    pub listen: Vec<SocketAddr>,
    /// Ingress pacing; 0 = unpaced.
    pub rate_bytes_per_s: u64,
    /// SO_SNDBUF / SO_RCVBUF requested.
    pub socket_buffer_bytes: usize,
    /// Interval between heartbeats.
    pub heartbeat_interval_ms: u64,
    /// Egress: silence after which the link counts as down.
    pub link_down_after_ms: u64,
    /// Key epoch length.
    pub epoch_length_s: u64,
    /// Start of epoch 0.
    pub epoch_origin_unix_s: u64,
    /// Past epochs whose keys are kept.
    pub epoch_grace: u32,
    /// Repair symbols as a percentage of source symbols.
    pub repair_overhead_percent: f64,
    /// Source symbols per FEC block.
    pub block_symbols: u16,
    /// Sends per package.
    pub redundancy: u8,
    /// Pause between two sends of one package.
    pub redundancy_spacing_ms: u64,
    /// Egress receive memory bound.
    pub max_buffer_bytes: usize,
    /// Egress: a package silent this long is abandoned.
    pub package_idle_timeout_ms: u64,
    /// Ingress: each package is sent once more this long after its sends
    /// ended, so the link heals by itself after an egress crash.
    pub heal_resend_after_ms: u64,
    /// Ingress: budget of those re-sends in bytes per second; 0 = off.
    pub heal_resend_max_bytes_per_s: u64,
}

impl LinkSection {
    /// Largest UDP payload the link may carry.
    pub fn max_datagram_len(&self) -> usize {
        self.mtu - IP_UDP_OVERHEAD_BYTES
    }
}

/// `[paths]`, all absolute once loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathsSection {
    /// redb state, control socket, status file, ingress queue.
    pub state_dir: PathBuf,
    /// Key directory.
    pub keys_dir: PathBuf,
    /// File holding the key-store passphrase (mode 0600). When absent the
    /// passphrase comes from the systemd credential `ferry-keys-passphrase`
    /// or the environment variable `FERRY_KEYS_PASSPHRASE`.
    pub passphrase_file: Option<PathBuf>,
    /// Certificates (and CRLs) this host uses for mTLS; checked for expiry
    /// at start and hourly, findings shown as status warnings.
    pub certs_dir: Option<PathBuf>,
    /// Ingress: files to send are dropped here.
    pub spool_dir: Option<PathBuf>,
    /// Egress: delivered files appear here.
    pub outbox_dir: Option<PathBuf>,
}

/// `[retention]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RetentionSection {
    /// Bytes of sent packages kept for resends.
    pub max_bytes: u64,
    /// Age after which a sent package is deleted.
    pub max_age_s: u64,
}

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read the configuration file: {source}; check the path given to --config and that ferryd may read it", path.display())]
    Io {
        /// The configuration file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file was read but a value, key or the syntax is wrong.
    #[error("{origin}:{line}:{column}: {message}\n{excerpt}")]
    Invalid {
        /// File name (or other origin) as given.
        origin: String,
        /// 1-based line.
        line: usize,
        /// 1-based column, in characters.
        column: usize,
        /// What is wrong and what to do.
        message: String,
        /// The offending source line with a caret line under the column.
        excerpt: String,
    },
}

impl ConfigError {
    /// The 1-based (line, column) the error points at, when it has one.
    pub fn position(&self) -> Option<(usize, usize)> {
        match self {
            ConfigError::Io { .. } => None,
            ConfigError::Invalid { line, column, .. } => Some((*line, *column)),
        }
    }
}

/// Reads and checks the configuration file at `path`. Relative paths inside
/// it resolve against the file's directory.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let io = |source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    };
    // Only a regular file (a FIFO named by mistake must not hang the start).
    let text = ferry_regular_file::read_regular_string(path, CONFIG_MAX_BYTES).map_err(io)?;
    // Absolute, so that the daemon's later working directory does not matter.
    let absolute = std::path::absolute(path).map_err(io)?;
    let base = absolute.parent().unwrap_or(Path::new("/"));
    parse_with_base(&text, &path.display().to_string(), base)
}

/// Checks configuration text. `origin` names it in messages; relative paths
/// resolve against `origin`'s directory.
pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
    let base = Path::new(origin).parent().unwrap_or(Path::new(""));
    parse_with_base(text, origin, base)
}

fn parse_with_base(text: &str, origin: &str, base: &Path) -> Result<Config, ConfigError> {
    let source = Source { text, origin };
    let raw: RawConfig = toml::from_str(text).map_err(|e| source.toml_error(&e))?;
    Checker { source, base }.check(raw)
}

// The raw layer mirrors the file: every key optional and spanned, so that
// defaults, required keys and range checks are decided in one place and
// each refusal can point at the key or value it is about.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    link: Option<Spanned<RawLink>>,
    paths: Option<Spanned<RawPaths>>,
    retention: Option<Spanned<RawRetention>>,
    ingest: Option<Spanned<RawIngest>>,
    policy: Option<Spanned<RawPolicy>>,
    audit: Option<Spanned<RawAudit>>,
    hardening: Option<Spanned<RawHardening>>,
    metrics: Option<Spanned<RawMetrics>>,
    admin: Option<Spanned<RawAdmin>>,
    downstream: Option<Spanned<RawDownstream>>,
    admin_api: Option<Spanned<RawAdminApi>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdminApi {
    listen: Option<Spanned<String>>,
    cert: Option<Spanned<String>>,
    key: Option<Spanned<String>>,
    client_ca: Option<Spanned<Vec<Spanned<String>>>>,
    crl: Option<Spanned<Vec<Spanned<String>>>>,
    trust_reload_interval_s: Option<Spanned<i64>>,
}

/// The TLS listener keys `[ingest]` and `[admin_api]` share.
struct TlsEndpoint {
    listen: SocketAddr,
    cert: PathBuf,
    key: PathBuf,
    client_ca: Vec<PathBuf>,
    crl: Vec<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDownstream {
    ca: Option<Spanned<String>>,
    cert: Option<Spanned<String>>,
    key: Option<Spanned<String>>,
    timeout_s: Option<Spanned<i64>>,
    retry_initial_ms: Option<Spanned<i64>>,
    retry_max_ms: Option<Spanned<i64>>,
    alarm_after_s: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    socket: Option<Spanned<String>>,
    sysadmin: Option<Vec<Spanned<String>>>,
    secadmin: Option<Vec<Spanned<String>>>,
    auditor: Option<Vec<Spanned<String>>>,
    reviewer: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHardening {
    user: Option<Spanned<String>>,
    group: Option<Spanned<String>>,
    drop_privileges: Option<Spanned<bool>>,
    forbid_core_dumps: Option<Spanned<bool>>,
    no_new_privs: Option<Spanned<bool>>,
    landlock: Option<Spanned<bool>>,
    extra_read_paths: Option<Spanned<Vec<Spanned<String>>>>,
    extra_write_paths: Option<Spanned<Vec<Spanned<String>>>>,
    seccomp: Option<Spanned<bool>>,
    seccomp_action: Option<Spanned<SeccompActionName>>,
    close_inherited_fds: Option<Spanned<bool>>,
    sanitize_environment: Option<Spanned<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    dir: Option<Spanned<String>>,
    min_free_bytes_accept: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    file: Option<Spanned<String>>,
    signers: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIngest {
    listen: Option<Spanned<String>>,
    cert: Option<Spanned<String>>,
    key: Option<Spanned<String>>,
    client_ca: Option<Spanned<Vec<Spanned<String>>>>,
    crl: Option<Spanned<Vec<Spanned<String>>>>,
    max_package_bytes: Option<Spanned<i64>>,
    min_free_bytes: Option<Spanned<i64>>,
    max_queued_packages: Option<Spanned<i64>>,
    handshake_timeout_s: Option<Spanned<i64>>,
    header_timeout_s: Option<Spanned<i64>>,
    idle_timeout_s: Option<Spanned<i64>>,
    body_idle_timeout_s: Option<Spanned<i64>>,
    min_body_bytes_per_s: Option<Spanned<i64>>,
    max_connections: Option<Spanned<i64>>,
    max_connections_per_identity: Option<Spanned<i64>>,
    max_handshakes_per_address: Option<Spanned<i64>>,
    trust_reload_interval_s: Option<Spanned<i64>>,
    refusal_alarm_per_minute: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLink {
    name: Option<Spanned<String>>,
    role: Option<Spanned<Role>>,
    suite: Option<Spanned<SuiteName>>,
    mtu: Option<Spanned<i64>>,
    peer: Option<Spanned<Vec<Spanned<String>>>>,
    bind: Option<Spanned<String>>,
    listen: Option<Spanned<Vec<Spanned<String>>>>,
    rate_bytes_per_s: Option<Spanned<i64>>,
    socket_buffer_bytes: Option<Spanned<i64>>,
    heartbeat_interval_ms: Option<Spanned<i64>>,
    link_down_after_ms: Option<Spanned<i64>>,
    epoch_length_s: Option<Spanned<i64>>,
    epoch_origin_unix_s: Option<Spanned<i64>>,
    epoch_grace: Option<Spanned<i64>>,
    repair_overhead_percent: Option<Spanned<f64>>,
    block_symbols: Option<Spanned<i64>>,
    redundancy: Option<Spanned<i64>>,
    redundancy_spacing_ms: Option<Spanned<i64>>,
    max_buffer_bytes: Option<Spanned<i64>>,
    package_idle_timeout_ms: Option<Spanned<i64>>,
    heal_resend_after_ms: Option<Spanned<i64>>,
    heal_resend_max_bytes_per_s: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPaths {
    state_dir: Option<Spanned<String>>,
    keys_dir: Option<Spanned<String>>,
    passphrase_file: Option<Spanned<String>>,
    certs_dir: Option<Spanned<String>>,
    spool_dir: Option<Spanned<String>>,
    outbox_dir: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetention {
    max_bytes: Option<Spanned<i64>>,
    max_age_s: Option<Spanned<i64>>,
}

#[derive(Clone, Copy)]
struct Source<'a> {
    text: &'a str,
    origin: &'a str,
}

impl Source<'_> {
    /// The one located-error renderer (`ferry_common::located`), shared
    /// with the policy language, so both point at FILE:LINE:COL alike.
    fn error(&self, span: Range<usize>, message: impl Into<String>) -> ConfigError {
        let at = located::locate(self.text, span, &[]);
        ConfigError::Invalid {
            origin: self.origin.to_string(),
            line: at.line,
            column: at.column,
            message: message.into(),
            excerpt: at.excerpt,
        }
    }

    fn toml_error(&self, e: &toml::de::Error) -> ConfigError {
        let span = e.span().unwrap_or(0..0);
        let message = e.message().trim_end().replace('\n', "; ");
        self.error(span, explain_toml_message(&message))
    }

    /// The span of a table's `[header]` line, where keys missing from the
    /// table are reported.
    fn header_span(&self, table: &Range<usize>) -> Range<usize> {
        let start = located::floor_char_boundary(self.text, table.start.min(self.text.len()));
        let end = self.text[start..]
            .find('\n')
            .map_or(self.text.len(), |i| start + i);
        start..end.max(start)
    }
}

/// Rewrites serde's wording into the file's terms and adds a suggestion.
fn explain_toml_message(message: &str) -> String {
    let quoted: Vec<&str> = message.split('`').skip(1).step_by(2).collect();
    if message.starts_with("unknown field") {
        if let Some((word, expected)) = quoted.split_first() {
            let hint = did_you_mean::hint(word, expected);
            if hint.is_empty() {
                return format!(
                    "unknown key `{word}`; remove it (allowed here: {})",
                    expected.join(", ")
                );
            }
            return format!("unknown key `{word}`{hint}");
        }
    }
    if message.starts_with("unknown variant") {
        if let Some((word, expected)) = quoted.split_first() {
            let hint = did_you_mean::hint(word, expected);
            let allowed = expected
                .iter()
                .map(|e| format!("\"{e}\""))
                .collect::<Vec<_>>()
                .join(" or ");
            if hint.is_empty() {
                return format!("unknown value \"{word}\"; use {allowed}");
            }
            return format!("unknown value \"{word}\"{hint}");
        }
    }
    if message.starts_with("invalid type") {
        return format!("wrong type: {message}");
    }
    message.to_string()
}

struct Checker<'a> {
    source: Source<'a>,
    base: &'a Path,
}

impl Checker<'_> {
    fn err(&self, span: Range<usize>, message: impl Into<String>) -> ConfigError {
        self.source.error(span, message)
    }

    fn check(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let Some(link) = raw.link else {
            return Err(self.err(
                0..0,
                "missing table `[link]`: add it with at least `name` and `role`",
            ));
        };
        let Some(paths) = raw.paths else {
            return Err(self.err(
                0..0,
                "missing table `[paths]`: add it with at least `state_dir` and `keys_dir`",
            ));
        };
        let link_header = self.source.header_span(&link.span());
        let link = self.link(link.into_inner(), &link_header)?;
        let paths_header = self.source.header_span(&paths.span());
        let paths = self.paths(paths.into_inner(), &paths_header, link.role)?;
        let retention = match raw.retention {
            None => RetentionSection {
                max_bytes: DEFAULT_RETENTION_MAX_BYTES,
                max_age_s: DEFAULT_RETENTION_MAX_AGE_S,
            },
            Some(r) => {
                if link.role == Role::Egress {
                    let header = self.source.header_span(&r.span());
                    return Err(self.err(
                        header,
                        "`[retention]` applies to the ingress role only; remove it from an egress configuration",
                    ));
                }
                let r = r.into_inner();
                RetentionSection {
                    max_bytes: self
                        .uint(r.max_bytes, "max_bytes", 0, u64::MAX, "bytes")?
                        .unwrap_or(DEFAULT_RETENTION_MAX_BYTES),
                    max_age_s: self
                        .uint(r.max_age_s, "max_age_s", 0, u64::MAX, "seconds")?
                        .unwrap_or(DEFAULT_RETENTION_MAX_AGE_S),
                }
            }
        };
        let ingest = match raw.ingest {
            None => None,
            Some(i) => {
                let header = self.source.header_span(&i.span());
                if link.role == Role::Egress {
                    return Err(self.err(
                        header,
                        "`[ingest]` applies to the ingress role only; remove it from an egress configuration",
                    ));
                }
                Some(self.ingest(i.into_inner(), &header)?)
            }
        };
        let policy = match raw.policy {
            None => None,
            Some(p) => {
                let header = self.source.header_span(&p.span());
                // On the egress side the policy supplies the channels'
                // `egress_profile`s for the second inspection.
                let p = p.into_inner();
                let file = p.file.ok_or_else(|| {
                    self.err(
                        header.clone(),
                        "missing key `file` in `[policy]`: name the policy file, e.g. file = \"/etc/ferry/policy.toml\"",
                    )
                })?;
                let signers = p.signers.map_or(Ok(Vec::new()), |list| {
                    list.into_inner()
                        .into_iter()
                        .map(|v| self.path(v, "signers"))
                        .collect::<Result<Vec<_>, _>>()
                })?;
                Some(PolicySection {
                    file: self.path(file, "file")?,
                    signers,
                })
            }
        };
        let audit = match raw.audit {
            None => None,
            Some(a) => {
                let header = self.source.header_span(&a.span());
                let a = a.into_inner();
                let dir = a.dir.ok_or_else(|| {
                    self.err(
                        header.clone(),
                        "missing key `dir` in `[audit]`: name the audit log directory, e.g. dir = \"/var/log/ferry/audit\"",
                    )
                })?;
                Some(AuditSection {
                    dir: self.path(dir, "dir")?,
                    min_free_bytes_accept: self
                        .uint(
                            a.min_free_bytes_accept,
                            "min_free_bytes_accept",
                            0,
                            u64::MAX,
                            "bytes",
                        )?
                        .unwrap_or(DEFAULT_AUDIT_MIN_FREE_BYTES_ACCEPT),
                })
            }
        };
        let hardening = match raw.hardening {
            None => HardeningSection::default(),
            Some(h) => {
                let header = self.source.header_span(&h.span());
                self.hardening(h.into_inner(), &header)?
            }
        };
        let metrics = match raw.metrics {
            None => None,
            Some(m) => {
                let header = self.source.header_span(&m.span());
                let listen = m.into_inner().listen.ok_or_else(|| {
                    self.err(
                        header,
                        "missing key `listen` in `[metrics]`: give an address and port, e.g. listen = \"127.0.0.1:9464\"",
                    )
                })?;
                Some(MetricsSection {
                    listen: self.address(&listen, "listen", true)?,
                })
            }
        };
        let admin = match raw.admin {
            None => None,
            Some(a) => Some(self.admin(a.into_inner())?),
        };
        let downstream = match raw.downstream {
            None => None,
            Some(d) => {
                let header = self.source.header_span(&d.span());
                if link.role == Role::Ingress {
                    return Err(self.err(
                        header,
                        "`[downstream]` applies to the egress role only (it delivers to downstream HTTPS endpoints); remove it from an ingress configuration",
                    ));
                }
                Some(self.downstream(d.into_inner(), &header)?)
            }
        };
        let admin_api = match raw.admin_api {
            None => None,
            Some(a) => {
                let header = self.source.header_span(&a.span());
                if admin.is_none() {
                    return Err(self.err(
                        header,
                        "`[admin_api]` needs `[admin]`: the remote admin plane exists only with separated roles; add an [admin] section",
                    ));
                }
                let a = a.into_inner();
                let trust_reload_interval_s = self
                    .uint(
                        a.trust_reload_interval_s,
                        "trust_reload_interval_s",
                        1,
                        3600,
                        "seconds",
                    )?
                    .unwrap_or(DEFAULT_TRUST_RELOAD_INTERVAL_S);
                let t = self.tls_endpoint(
                    "admin_api",
                    &header,
                    [a.listen, a.cert, a.key],
                    a.client_ca,
                    a.crl,
                )?;
                Some(AdminApiSection {
                    listen: t.listen,
                    cert: t.cert,
                    key: t.key,
                    client_ca: t.client_ca,
                    crl: t.crl,
                    trust_reload_interval_s,
                })
            }
        };
        Ok(Config {
            link,
            paths,
            retention,
            ingest,
            policy,
            audit,
            hardening,
            metrics,
            admin,
            downstream,
            admin_api,
        })
    }

    /// `listen`, `cert`, `key` (required, in that order), `client_ca`
    /// (required: client certificates are mandatory) and `crl`.
    fn tls_endpoint(
        &self,
        section: &str,
        header: &Range<usize>,
        [listen, cert, key]: [Option<Spanned<String>>; 3],
        client_ca: Option<Spanned<Vec<Spanned<String>>>>,
        crl: Option<Spanned<Vec<Spanned<String>>>>,
    ) -> Result<TlsEndpoint, ConfigError> {
        let required = |v: Option<Spanned<String>>, key: &str, example: &str| {
            v.ok_or_else(|| {
                self.err(
                    header.clone(),
                    format!("missing key `{key}` in `[{section}]`: add it, e.g. {key} = {example}"),
                )
            })
        };
        let listen = required(listen, "listen", "\"127.0.0.1:8443\"")?;
        let listen = self.address(&listen, "listen", true)?;
        let cert = self.path(
            required(cert, "cert", &format!("\"/etc/ferry/tls/{section}.crt\""))?,
            "cert",
        )?;
        let key = self.path(
            required(key, "key", &format!("\"/etc/ferry/tls/{section}.key\""))?,
            "key",
        )?;
        let paths = |v: Option<Spanned<Vec<Spanned<String>>>>, key: &str| {
            v.map_or(Ok(Vec::new()), |list| {
                list.into_inner()
                    .into_iter()
                    .map(|p| self.path(p, key))
                    .collect::<Result<Vec<_>, _>>()
            })
        };
        let client_ca = paths(client_ca, "client_ca")?;
        if client_ca.is_empty() {
            return Err(self.err(
                header.clone(),
                format!("missing key `client_ca` in `[{section}]`: client certificates are mandatory; name the CA that issues them, e.g. client_ca = [\"/etc/ferry/tls/ca.crt\"]"),
            ));
        }
        Ok(TlsEndpoint {
            listen,
            cert,
            key,
            client_ca,
            crl: paths(crl, "crl")?,
        })
    }

    fn downstream(
        &self,
        d: RawDownstream,
        header: &Range<usize>,
    ) -> Result<DownstreamSection, ConfigError> {
        let required = |v: Option<Spanned<String>>, key: &str, example: &str| {
            v.ok_or_else(|| {
                self.err(
                    header.clone(),
                    format!(
                        "missing key `{key}` in `[downstream]`: add it, e.g. {key} = {example}"
                    ),
                )
            })
        };
        let ca = required(d.ca, "ca", "\"/etc/ferry/tls/downstream-ca.crt\"")?;
        let cert = required(d.cert, "cert", "\"/etc/ferry/tls/egress-client.crt\"")?;
        let key = required(d.key, "key", "\"/etc/ferry/tls/egress-client.key\"")?;
        let retry_max_span = d.retry_max_ms.as_ref().map(Spanned::span);
        let section = DownstreamSection {
            ca: self.path(ca, "ca")?,
            cert: self.path(cert, "cert")?,
            key: self.path(key, "key")?,
            timeout_s: self
                .uint(d.timeout_s, "timeout_s", 1, 3600, "seconds")?
                .unwrap_or(DEFAULT_DOWNSTREAM_TIMEOUT_S),
            retry_initial_ms: self
                .uint(
                    d.retry_initial_ms,
                    "retry_initial_ms",
                    10,
                    3_600_000,
                    "milliseconds",
                )?
                .unwrap_or(DEFAULT_DOWNSTREAM_RETRY_INITIAL_MS),
            retry_max_ms: self
                .uint(
                    d.retry_max_ms,
                    "retry_max_ms",
                    10,
                    86_400_000,
                    "milliseconds",
                )?
                .unwrap_or(DEFAULT_DOWNSTREAM_RETRY_MAX_MS),
            alarm_after_s: self
                .uint(d.alarm_after_s, "alarm_after_s", 0, u64::MAX, "seconds")?
                .unwrap_or(DEFAULT_DOWNSTREAM_ALARM_AFTER_S),
        };
        if section.retry_max_ms < section.retry_initial_ms {
            return Err(self.err(
                retry_max_span.unwrap_or_else(|| header.clone()),
                format!(
                    "`retry_max_ms` ({}) is below `retry_initial_ms` ({}): the longest retry delay must be at least the first",
                    section.retry_max_ms, section.retry_initial_ms
                ),
            ));
        }
        Ok(section)
    }

    fn admin(&self, a: RawAdmin) -> Result<AdminSection, ConfigError> {
        let socket = a.socket.map(|p| self.path(p, "socket")).transpose()?;
        let mut seen: Vec<(AdminPrincipal, &str)> = Vec::new();
        let mut roles: Vec<Vec<AdminPrincipal>> = Vec::new();
        for (role, list) in [
            ("sysadmin", a.sysadmin),
            ("secadmin", a.secadmin),
            ("auditor", a.auditor),
            ("reviewer", a.reviewer),
        ] {
            let mut out = Vec::new();
            for v in list.unwrap_or_default() {
                let text = v.get_ref();
                let principal = if let Some(n) = text.strip_prefix("uid:") {
                    n.parse::<u32>().map(AdminPrincipal::Uid).map_err(|_| {
                        self.err(
                            v.span(),
                            format!("`{text}`: after `uid:` comes a number, e.g. \"uid:1001\""),
                        )
                    })?
                } else if (1..=HARDENING_NAME_MAX_CHARS).contains(&text.chars().count())
                    && !text.starts_with('-')
                    && text.chars().all(|c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '.')
                    })
                {
                    AdminPrincipal::User(text.clone())
                } else {
                    return Err(self.err(
                        v.span(),
                        format!("`{text}` is not a user name: 1 to {HARDENING_NAME_MAX_CHARS} characters from a-z 0-9 _ - ., or \"uid:N\""),
                    ));
                };
                if let Some((_, other)) = seen.iter().find(|(p, _)| *p == principal) {
                    return Err(self.err(
                        v.span(),
                        format!("`{principal}` already holds `{other}`: one person, one role (separation of duties); give `{role}` to someone else"),
                    ));
                }
                seen.push((principal.clone(), role));
                out.push(principal);
            }
            roles.push(out);
        }
        let mut roles = roles.into_iter();
        let mut next = || roles.next().unwrap_or_default();
        Ok(AdminSection {
            socket,
            sysadmin: next(),
            secadmin: next(),
            auditor: next(),
            reviewer: next(),
        })
    }

    fn hardening(
        &self,
        h: RawHardening,
        header: &Range<usize>,
    ) -> Result<HardeningSection, ConfigError> {
        let d = HardeningSection::default();
        let flag = |v: Option<Spanned<bool>>, default: bool| v.map_or(default, |v| *v.get_ref());
        let name = |v: Option<Spanned<String>>, key: &str| {
            v.map(|v| {
                let ok = (1..=HARDENING_NAME_MAX_CHARS).contains(&v.get_ref().chars().count())
                    && v.get_ref().chars().all(|c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '.')
                    })
                    && !v.get_ref().starts_with('-');
                if ok {
                    Ok(v.into_inner())
                } else {
                    Err(self.err(
                        v.span(),
                        format!("`{key}` must be a system {key} name: 1 to {HARDENING_NAME_MAX_CHARS} characters from a-z 0-9 _ - ., e.g. {key} = \"ferry\""),
                    ))
                }
            })
            .transpose()
        };
        let group_span = h.group.as_ref().map(Spanned::span);
        let user = name(h.user, "user")?;
        let group = name(h.group, "group")?;
        if let (None, Some(span)) = (&user, group_span) {
            return Err(self.err(
                self.key_span(&span),
                "`group` needs `user`: name the service user too, e.g. user = \"ferry\"",
            ));
        }
        if user.as_deref() == Some("root") {
            return Err(self.err(
                header.clone(),
                "`user` = \"root\" defeats the privilege drop: name an unprivileged service user, e.g. user = \"ferry\"",
            ));
        }
        let paths = |v: Option<Spanned<Vec<Spanned<String>>>>, key: &str| {
            v.map_or(Ok(Vec::new()), |list| {
                list.into_inner()
                    .into_iter()
                    .map(|p| self.path(p, key))
                    .collect::<Result<Vec<_>, _>>()
            })
        };
        Ok(HardeningSection {
            user,
            group,
            drop_privileges: flag(h.drop_privileges, d.drop_privileges),
            forbid_core_dumps: flag(h.forbid_core_dumps, d.forbid_core_dumps),
            no_new_privs: flag(h.no_new_privs, d.no_new_privs),
            landlock: flag(h.landlock, d.landlock),
            extra_read_paths: paths(h.extra_read_paths, "extra_read_paths")?,
            extra_write_paths: paths(h.extra_write_paths, "extra_write_paths")?,
            seccomp: flag(h.seccomp, d.seccomp),
            seccomp_action: h.seccomp_action.map_or(d.seccomp_action, |v| *v.get_ref()),
            close_inherited_fds: flag(h.close_inherited_fds, d.close_inherited_fds),
            sanitize_environment: flag(h.sanitize_environment, d.sanitize_environment),
        })
    }

    fn ingest(&self, i: RawIngest, header: &Range<usize>) -> Result<IngestSection, ConfigError> {
        let limits = self.connection_limits(&i)?;
        let t = self.tls_endpoint(
            "ingest",
            header,
            [i.listen, i.cert, i.key],
            i.client_ca,
            i.crl,
        )?;
        Ok(IngestSection {
            listen: t.listen,
            cert: t.cert,
            key: t.key,
            client_ca: t.client_ca,
            crl: t.crl,
            max_package_bytes: self
                .uint(
                    i.max_package_bytes,
                    "max_package_bytes",
                    1,
                    1 << 40,
                    "bytes",
                )?
                .unwrap_or(DEFAULT_INGEST_MAX_PACKAGE_BYTES),
            min_free_bytes: self
                .uint(i.min_free_bytes, "min_free_bytes", 0, u64::MAX, "bytes")?
                .unwrap_or(DEFAULT_INGEST_MIN_FREE_BYTES),
            max_queued_packages: self
                .uint(
                    i.max_queued_packages,
                    "max_queued_packages",
                    1,
                    u64::MAX,
                    "packages",
                )?
                .unwrap_or(DEFAULT_INGEST_MAX_QUEUED_PACKAGES),
            limits,
            trust_reload_interval_s: self
                .uint(
                    i.trust_reload_interval_s,
                    "trust_reload_interval_s",
                    1,
                    3600,
                    "seconds",
                )?
                .unwrap_or(DEFAULT_TRUST_RELOAD_INTERVAL_S),
            refusal_alarm_per_minute: self
                .uint(
                    i.refusal_alarm_per_minute,
                    "refusal_alarm_per_minute",
                    1,
                    u64::MAX,
                    "refusals",
                )?
                .unwrap_or(DEFAULT_REFUSAL_ALARM_PER_MINUTE),
        })
    }

    /// `[ingest]`'s deadlines and connection caps.
    fn connection_limits(&self, i: &RawIngest) -> Result<ConnectionLimits, ConfigError> {
        let d = ConnectionLimits::default();
        let secs = |v: &Option<Spanned<i64>>, name: &str, default: u64| {
            self.uint(v.clone(), name, 1, 86_400, "seconds")
                .map(|x| x.unwrap_or(default))
        };
        let count = |v: &Option<Spanned<i64>>, name: &str, default: u64| {
            self.uint(v.clone(), name, 1, 1_000_000, "connections")
                .map(|x| x.unwrap_or(default))
        };
        Ok(ConnectionLimits {
            handshake_timeout_s: secs(
                &i.handshake_timeout_s,
                "handshake_timeout_s",
                d.handshake_timeout_s,
            )?,
            header_timeout_s: secs(&i.header_timeout_s, "header_timeout_s", d.header_timeout_s)?,
            idle_timeout_s: secs(&i.idle_timeout_s, "idle_timeout_s", d.idle_timeout_s)?,
            body_idle_timeout_s: secs(
                &i.body_idle_timeout_s,
                "body_idle_timeout_s",
                d.body_idle_timeout_s,
            )?,
            min_body_bytes_per_s: self
                .uint(
                    i.min_body_bytes_per_s.clone(),
                    "min_body_bytes_per_s",
                    0,
                    1 << 40,
                    "bytes per second",
                )?
                .unwrap_or(d.min_body_bytes_per_s),
            max_connections: count(&i.max_connections, "max_connections", d.max_connections)?,
            max_connections_per_identity: count(
                &i.max_connections_per_identity,
                "max_connections_per_identity",
                d.max_connections_per_identity,
            )?,
            max_handshakes_per_address: count(
                &i.max_handshakes_per_address,
                "max_handshakes_per_address",
                d.max_handshakes_per_address,
            )?,
        })
    }

    fn link(&self, l: RawLink, header: &Range<usize>) -> Result<LinkSection, ConfigError> {
        let name = l.name.ok_or_else(|| {
            self.err(
                header.clone(),
                "missing key `name` in `[link]`: add the link name both sides share, e.g. name = \"release-1\"",
            )
        })?;
        let name_ok = (1..=LINK_NAME_MAX_CHARS).contains(&name.get_ref().chars().count())
            && name
                .get_ref()
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !name_ok {
            return Err(self.err(
                name.span(),
                format!(
                    "`name` must be 1 to {LINK_NAME_MAX_CHARS} characters from A-Z a-z 0-9 . _ -"
                ),
            ));
        }
        let role = l.role.ok_or_else(|| {
            self.err(
                header.clone(),
                "missing key `role` in `[link]`: add role = \"ingress\" (seal and send) or role = \"egress\" (receive and deliver)",
            )
        })?;
        let role_span = role.span();
        let role = *role.get_ref();
        let suite = l.suite.map_or(SuiteName::Intl, |s| *s.get_ref());
        let mtu = self
            .uint(l.mtu, "mtu", MTU_MIN as u64, MTU_MAX as u64, "bytes")?
            .map_or(DEFAULT_MTU, |v| v as usize);

        let ingress_only = [
            ("peer", l.peer.as_ref().map(Spanned::span)),
            ("bind", l.bind.as_ref().map(Spanned::span)),
        ];
        let egress_only = [("listen", l.listen.as_ref().map(Spanned::span))];
        let (wrong, right) = match role {
            Role::Ingress => (&egress_only[..], "egress"),
            Role::Egress => (&ingress_only[..], "ingress"),
        };
        for (key, span) in wrong {
            if let Some(span) = span {
                return Err(self.err(
                    self.key_span(span),
                    format!(
                        "`{key}` applies to the {right} role only; remove it, or check `role` (line {})",
                        self.line_of(&role_span)
                    ),
                ));
            }
        }
        let bind = match l.bind {
            None => DEFAULT_BIND,
            Some(b) => self.address(&b, "bind", false)?,
        };
        let peer = match (role, &l.peer) {
            (Role::Ingress, None) => {
                return Err(self.err(
                    header.clone(),
                    "missing key `peer` in `[link]`: the ingress role needs the egress side's address, e.g. peer = [\"192.0.2.2:7700\"]",
                ))
            }
            (_, p) => self.addresses(p.as_ref(), "peer", true)?,
        };
        if bind.is_ipv4() {
            // An IPv4 socket cannot send to an IPv6 address; every datagram
            // to it would be lost.
            let spans = l
                .peer
                .iter()
                .flat_map(|p| p.get_ref().iter().map(Spanned::span));
            if let Some((addr, span)) = peer.iter().zip(spans).find(|(a, _)| a.is_ipv6()) {
                return Err(self.err(
                    span,
                    format!(
                        "`peer`: {addr} is IPv6 but `bind` ({bind}) is IPv4; set bind = \"[::]:0\" or use an IPv4 peer"
                    ),
                ));
            }
        }
        let listen = match (role, &l.listen) {
            (Role::Egress, None) => {
                return Err(self.err(
                    header.clone(),
                    "missing key `listen` in `[link]`: the egress role needs the addresses to receive on, e.g. listen = [\"192.0.2.2:7700\"]",
                ))
            }
            (_, p) => self.addresses(p.as_ref(), "listen", true)?,
        };

        let heartbeat_span = l.heartbeat_interval_ms.as_ref().map(Spanned::span);
        let heartbeat_interval_ms = self
            .uint(
                l.heartbeat_interval_ms,
                "heartbeat_interval_ms",
                1,
                u64::MAX,
                "milliseconds",
            )?
            .unwrap_or(DEFAULT_HEARTBEAT_INTERVAL_MS);
        let link_down_span = l.link_down_after_ms.as_ref().map(Spanned::span);
        let link_down_after_ms = self
            .uint(
                l.link_down_after_ms,
                "link_down_after_ms",
                1,
                u64::MAX,
                "milliseconds",
            )?
            .unwrap_or(DEFAULT_LINK_DOWN_AFTER_MS);
        if link_down_after_ms <= heartbeat_interval_ms {
            let span = link_down_span
                .or(heartbeat_span)
                .unwrap_or_else(|| header.clone());
            return Err(self.err(
                span,
                format!(
                    "`link_down_after_ms` ({link_down_after_ms}) must be greater than `heartbeat_interval_ms` ({heartbeat_interval_ms}), \
                     or the link is reported down between two heartbeats; use about 3.5 times the heartbeat interval"
                ),
            ));
        }

        let repair_overhead_percent = match l.repair_overhead_percent {
            None => DEFAULT_REPAIR_OVERHEAD_PERCENT,
            Some(p) => {
                let v = *p.get_ref();
                if !(v.is_finite() && v > 0.0 && v <= 100.0) {
                    return Err(self.err(
                        p.span(),
                        format!("`repair_overhead_percent` must be above 0 and at most 100 (percent of source symbols), got {v}"),
                    ));
                }
                v
            }
        };

        Ok(LinkSection {
            name: name.into_inner(),
            role,
            suite,
            mtu,
            peer,
            bind,
            listen,
            rate_bytes_per_s: self
                .uint(
                    l.rate_bytes_per_s,
                    "rate_bytes_per_s",
                    0,
                    u64::MAX,
                    "bytes per second",
                )?
                .unwrap_or(DEFAULT_RATE_BYTES_PER_S),
            socket_buffer_bytes: self
                .uint(
                    l.socket_buffer_bytes,
                    "socket_buffer_bytes",
                    SOCKET_BUFFER_MIN_BYTES as u64,
                    SOCKET_BUFFER_MAX_BYTES as u64,
                    "bytes",
                )?
                .map_or(DEFAULT_SOCKET_BUFFER_BYTES, |v| v as usize),
            heartbeat_interval_ms,
            link_down_after_ms,
            epoch_length_s: self
                .uint(
                    l.epoch_length_s,
                    "epoch_length_s",
                    EPOCH_LENGTH_MIN_S,
                    u64::MAX,
                    "seconds",
                )?
                .unwrap_or(DEFAULT_EPOCH_LENGTH_S),
            epoch_origin_unix_s: self
                .uint(
                    l.epoch_origin_unix_s,
                    "epoch_origin_unix_s",
                    0,
                    u64::MAX,
                    "seconds since 1970",
                )?
                .unwrap_or(DEFAULT_EPOCH_ORIGIN_UNIX_S),
            epoch_grace: self
                .uint(
                    l.epoch_grace,
                    "epoch_grace",
                    0,
                    u64::from(u32::MAX),
                    "epochs",
                )?
                .map_or(DEFAULT_EPOCH_GRACE, |v| v as u32),
            repair_overhead_percent,
            block_symbols: self
                .uint(
                    l.block_symbols,
                    "block_symbols",
                    1,
                    u64::from(BLOCK_SYMBOLS_MAX),
                    "source symbols per FEC block",
                )?
                .map_or(DEFAULT_BLOCK_SYMBOLS, |v| v as u16),
            redundancy: self
                .uint(
                    l.redundancy,
                    "redundancy",
                    1,
                    u64::from(REDUNDANCY_MAX),
                    "sends per package",
                )?
                .map_or(DEFAULT_REDUNDANCY, |v| v as u8),
            redundancy_spacing_ms: self
                .uint(
                    l.redundancy_spacing_ms,
                    "redundancy_spacing_ms",
                    0,
                    u64::MAX,
                    "milliseconds",
                )?
                .unwrap_or(DEFAULT_REDUNDANCY_SPACING_MS),
            max_buffer_bytes: self
                .uint(
                    l.max_buffer_bytes,
                    "max_buffer_bytes",
                    MAX_BUFFER_MIN_BYTES as u64,
                    usize::MAX as u64,
                    "bytes",
                )?
                .map_or(DEFAULT_MAX_BUFFER_BYTES, |v| v as usize),
            package_idle_timeout_ms: self
                .uint(
                    l.package_idle_timeout_ms,
                    "package_idle_timeout_ms",
                    1,
                    u64::MAX,
                    "milliseconds",
                )?
                .unwrap_or(DEFAULT_PACKAGE_IDLE_TIMEOUT_MS),
            heal_resend_after_ms: self
                .uint(
                    l.heal_resend_after_ms,
                    "heal_resend_after_ms",
                    1,
                    u64::MAX,
                    "milliseconds",
                )?
                .unwrap_or(DEFAULT_HEAL_RESEND_AFTER_MS),
            heal_resend_max_bytes_per_s: self
                .uint(
                    l.heal_resend_max_bytes_per_s,
                    "heal_resend_max_bytes_per_s",
                    0,
                    u64::MAX,
                    "bytes per second",
                )?
                .unwrap_or(DEFAULT_HEAL_RESEND_MAX_BYTES_PER_S),
        })
    }

    fn paths(
        &self,
        p: RawPaths,
        header: &Range<usize>,
        role: Role,
    ) -> Result<PathsSection, ConfigError> {
        let required = |v: Option<Spanned<String>>, key: &str, what: &str| {
            v.ok_or_else(|| {
                self.err(
                    header.clone(),
                    format!("missing key `{key}` in `[paths]`: add the {what} directory, e.g. {key} = \"/var/lib/ferry\""),
                )
            })
        };
        let state_dir = self.path(required(p.state_dir, "state_dir", "state")?, "state_dir")?;
        let keys_dir = self.path(required(p.keys_dir, "keys_dir", "key")?, "keys_dir")?;
        let passphrase_file = p
            .passphrase_file
            .map(|v| self.path(v, "passphrase_file"))
            .transpose()?;
        let certs_dir = p.certs_dir.map(|v| self.path(v, "certs_dir")).transpose()?;
        let (wrong, wrong_key, right) = match role {
            Role::Ingress => (&p.outbox_dir, "outbox_dir", "egress"),
            Role::Egress => (&p.spool_dir, "spool_dir", "ingress"),
        };
        if let Some(w) = wrong {
            return Err(self.err(
                self.key_span(&w.span()),
                format!("`{wrong_key}` applies to the {right} role only; remove it, or check `role` in `[link]`"),
            ));
        }
        let spool_dir = match (role, p.spool_dir) {
            (Role::Ingress, None) => {
                return Err(self.err(
                    header.clone(),
                    "missing key `spool_dir` in `[paths]`: the ingress role takes files to send from it, e.g. spool_dir = \"/var/spool/ferry/out\"",
                ))
            }
            (_, v) => v.map(|v| self.path(v, "spool_dir")).transpose()?,
        };
        let outbox_dir = match (role, p.outbox_dir) {
            (Role::Egress, None) => {
                return Err(self.err(
                    header.clone(),
                    "missing key `outbox_dir` in `[paths]`: the egress role delivers files into it, e.g. outbox_dir = \"/srv/ferry/in\"",
                ))
            }
            (_, v) => v.map(|v| self.path(v, "outbox_dir")).transpose()?,
        };
        Ok(PathsSection {
            state_dir,
            keys_dir,
            passphrase_file,
            certs_dir,
            spool_dir,
            outbox_dir,
        })
    }

    fn path(&self, v: Spanned<String>, key: &str) -> Result<PathBuf, ConfigError> {
        if v.get_ref().is_empty() || v.get_ref().contains('\0') {
            return Err(self.err(v.span(), format!("`{key}` must be a non-empty path")));
        }
        let p = Path::new(v.get_ref());
        Ok(if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        })
    }

    fn addresses(
        &self,
        v: Option<&Spanned<Vec<Spanned<String>>>>,
        key: &str,
        need_port: bool,
    ) -> Result<Vec<SocketAddr>, ConfigError> {
        let Some(v) = v else { return Ok(Vec::new()) };
        if v.get_ref().is_empty() {
            return Err(self.err(
                v.span(),
                format!("`{key}` is empty: give at least one address, e.g. [\"192.0.2.2:7700\"]"),
            ));
        }
        v.get_ref()
            .iter()
            .map(|a| self.address(a, key, need_port))
            .collect()
    }

    fn address(
        &self,
        a: &Spanned<String>,
        key: &str,
        need_port: bool,
    ) -> Result<SocketAddr, ConfigError> {
        let addr: SocketAddr = a.get_ref().parse().map_err(|_| {
            self.err(
                a.span(),
                format!(
                    "`{key}`: \"{}\" is not an IP address with a port; write e.g. \"192.0.2.2:7700\" or \"[2001:db8::2]:7700\" (host names are not resolved)",
                    a.get_ref()
                ),
            )
        })?;
        if need_port && addr.port() == 0 {
            return Err(self.err(
                a.span(),
                format!("`{key}`: port 0 is not usable here; give a fixed port"),
            ));
        }
        if key == "peer" && addr.ip().is_unspecified() {
            return Err(self.err(
                a.span(),
                "`peer`: an unspecified address (0.0.0.0 or ::) is not a destination; give the egress side's address",
            ));
        }
        Ok(addr)
    }

    /// Checks an integer key against its range; `None` when absent.
    fn uint(
        &self,
        v: Option<Spanned<i64>>,
        key: &str,
        min: u64,
        max: u64,
        unit: &str,
    ) -> Result<Option<u64>, ConfigError> {
        let Some(v) = v else { return Ok(None) };
        let n = *v.get_ref();
        match u64::try_from(n) {
            Ok(u) if (min..=max).contains(&u) => Ok(Some(u)),
            _ => {
                let range = if max >= i64::MAX as u64 {
                    format!("at least {min}")
                } else {
                    format!("between {min} and {max}")
                };
                Err(self.err(
                    v.span(),
                    format!("`{key}` must be {range} ({unit}), got {n}"),
                ))
            }
        }
    }

    /// Widens a value span to start at its key, so the caret points at the
    /// key an operator has to remove.
    fn key_span(&self, value: &Range<usize>) -> Range<usize> {
        let text = self.source.text;
        let start = located::floor_char_boundary(text, value.start.min(text.len()));
        let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
        let indent = text[line_start..start].len() - text[line_start..start].trim_start().len();
        (line_start + indent)..value.end
    }

    fn line_of(&self, span: &Range<usize>) -> usize {
        located::line_of(self.source.text, span.start, &[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_common::did_you_mean::suggest;

    const INGRESS: &str = r#"# ingress side
[link]
name = "demo"
role = "ingress"
peer = ["127.0.0.1:7700", "127.0.0.1:7701"]
mtu = 9000
rate_bytes_per_s = 100000000

[paths]
state_dir = "state"
keys_dir = "/etc/ferry/keys"
spool_dir = "spool"

[retention]
max_bytes = 1000
"#;

    const EGRESS: &str = r#"[link]
name = "demo"
role = "egress"
suite = "gm"
listen = ["127.0.0.1:7700", "[::1]:7701"]
heartbeat_interval_ms = 200
link_down_after_ms = 1000

[paths]
state_dir = "/var/lib/ferry"
keys_dir = "keys"
outbox_dir = "/srv/ferry/in"
"#;

    /// Parses `text` expecting a refusal; returns (line, column, message).
    fn refused(text: &str) -> (usize, usize, String) {
        match parse(text, "/etc/ferry/ferryd.toml") {
            Err(ConfigError::Invalid {
                line,
                column,
                message,
                ..
            }) => (line, column, message),
            other => panic!("expected a located error, got {other:?}"),
        }
    }

    #[test]
    fn valid_ingress_file_with_defaults() {
        let c = parse(INGRESS, "/etc/ferry/ferryd.toml").unwrap();
        assert_eq!(c.link.name, "demo");
        assert_eq!(c.link.role, Role::Ingress);
        assert_eq!(c.link.suite, SuiteName::Intl);
        assert_eq!(c.link.mtu, 9000);
        assert_eq!(c.link.max_datagram_len(), 8972);
        assert_eq!(
            c.link.peer,
            vec![
                "127.0.0.1:7700".parse::<SocketAddr>().unwrap(),
                "127.0.0.1:7701".parse().unwrap()
            ]
        );
        assert_eq!(c.link.bind, "0.0.0.0:0".parse::<SocketAddr>().unwrap());
        assert!(c.link.listen.is_empty());
        assert_eq!(c.link.rate_bytes_per_s, 100_000_000);
        assert_eq!(c.link.socket_buffer_bytes, 8_388_608);
        assert_eq!(c.link.heartbeat_interval_ms, 1000);
        assert_eq!(c.link.link_down_after_ms, 3500);
        assert_eq!(c.link.epoch_length_s, 3600);
        assert_eq!(c.link.epoch_origin_unix_s, 1_767_225_600);
        assert_eq!(c.link.epoch_grace, 1);
        assert_eq!(c.link.repair_overhead_percent, 10.0);
        assert_eq!(c.link.block_symbols, 1024);
        assert_eq!(c.link.redundancy, 1);
        assert_eq!(c.link.redundancy_spacing_ms, 1000);
        assert_eq!(c.link.max_buffer_bytes, 268_435_456);
        assert_eq!(c.link.package_idle_timeout_ms, 5000);
        assert_eq!(c.paths.state_dir, PathBuf::from("/etc/ferry/state"));
        assert_eq!(c.paths.keys_dir, PathBuf::from("/etc/ferry/keys"));
        assert_eq!(c.paths.spool_dir, Some(PathBuf::from("/etc/ferry/spool")));
        assert_eq!(c.paths.outbox_dir, None);
        assert_eq!(c.retention.max_bytes, 1000);
        assert_eq!(c.retention.max_age_s, 604_800);
    }

    #[test]
    fn valid_egress_file() {
        let c = parse(EGRESS, "/etc/ferry/ferryd.toml").unwrap();
        assert_eq!(c.link.role, Role::Egress);
        assert_eq!(c.link.suite, SuiteName::Gm);
        assert_eq!(
            c.link.listen,
            vec![
                "127.0.0.1:7700".parse::<SocketAddr>().unwrap(),
                "[::1]:7701".parse().unwrap()
            ]
        );
        assert!(c.link.peer.is_empty());
        assert_eq!(c.link.heartbeat_interval_ms, 200);
        assert_eq!(c.link.link_down_after_ms, 1000);
        assert_eq!(c.paths.keys_dir, PathBuf::from("/etc/ferry/keys"));
        assert_eq!(c.paths.outbox_dir, Some(PathBuf::from("/srv/ferry/in")));
        assert_eq!(c.paths.spool_dir, None);
        assert_eq!(c.retention.max_bytes, 1 << 30);
    }

    #[test]
    fn unknown_key_points_at_key_and_suggests() {
        let text = INGRESS.replace("mtu = 9000", "mut = 9000");
        let (line, col, msg) = refused(&text);
        assert_eq!((line, col), (6, 1));
        assert_eq!(msg, "unknown key `mut`, did you mean `mtu`?");
    }

    #[test]
    fn unknown_table_suggests() {
        let text = INGRESS.replace("[retention]", "[retension]");
        let (line, col, msg) = refused(&text);
        assert_eq!((line, col), (14, 2));
        assert_eq!(msg, "unknown key `retension`, did you mean `retention`?");
    }

    #[test]
    fn unknown_key_without_close_match_lists_allowed_keys() {
        let text = INGRESS.replace("[retention]\n", "[retention]\nzzzz = 1\n");
        let (line, col, msg) = refused(&text);
        assert_eq!((line, col), (15, 1));
        assert!(
            msg.contains("remove it") && msg.contains("max_age_s"),
            "{msg}"
        );
    }

    #[test]
    fn wrong_type_points_at_value() {
        let text = INGRESS.replace("mtu = 9000", "mtu = \"large\"");
        let (line, col, msg) = refused(&text);
        assert_eq!((line, col), (6, 7));
        assert!(msg.contains("invalid type"), "{msg}");
    }

    #[test]
    fn bad_role_value_suggests() {
        let text = INGRESS.replace("role = \"ingress\"", "role = \"ingres\"");
        let (line, col, msg) = refused(&text);
        assert_eq!((line, col), (4, 8));
        assert_eq!(msg, "unknown value \"ingres\", did you mean `ingress`?");
    }

    #[test]
    fn missing_required_key_points_at_table_header() {
        let text = INGRESS.replace("name = \"demo\"\n", "");
        let (line, col, msg) = refused(&text);
        assert_eq!((line, col), (2, 1));
        assert!(msg.starts_with("missing key `name` in `[link]`"), "{msg}");

        let text = INGRESS.replace("keys_dir = \"/etc/ferry/keys\"\n", "");
        let (line, col, msg) = refused(&text);
        assert_eq!((line, col), (9, 1));
        assert!(msg.starts_with("missing key `keys_dir`"), "{msg}");
    }

    #[test]
    fn missing_table_points_at_file_start() {
        let text = &INGRESS[..INGRESS.find("[paths]").unwrap()];
        let (line, col, msg) = refused(text);
        assert_eq!((line, col), (1, 1));
        assert!(msg.starts_with("missing table `[paths]`"), "{msg}");
    }

    #[test]
    fn mtu_out_of_range_points_at_value() {
        let text = INGRESS.replace("mtu = 9000", "mtu = 1000");
        let (line, col, msg) = refused(&text);
        assert_eq!((line, col), (6, 7));
        assert_eq!(msg, "`mtu` must be between 1280 and 9216 (bytes), got 1000");
    }

    #[test]
    fn other_ranges_are_checked() {
        for (from, to, key) in [
            (
                "mtu = 9000",
                "mtu = 9000\nblock_symbols = 0",
                "block_symbols",
            ),
            ("mtu = 9000", "mtu = 9000\nredundancy = 9", "redundancy"),
            (
                "mtu = 9000",
                "mtu = 9000\nepoch_length_s = 59",
                "epoch_length_s",
            ),
            (
                "mtu = 9000",
                "mtu = 9000\nrepair_overhead_percent = 0.0",
                "repair_overhead_percent",
            ),
            (
                "mtu = 9000",
                "mtu = 9000\nrepair_overhead_percent = 150",
                "repair_overhead_percent",
            ),
            ("mtu = 9000", "mtu = 9000\nepoch_grace = -1", "epoch_grace"),
            (
                "mtu = 9000",
                "mtu = 9000\npackage_idle_timeout_ms = 0",
                "package_idle_timeout_ms",
            ),
            (
                "mtu = 9000",
                "mtu = 9000\nsocket_buffer_bytes = 100",
                "socket_buffer_bytes",
            ),
            ("name = \"demo\"", "name = \"de mo\"", "name"),
        ] {
            let (line, col, msg) = refused(&INGRESS.replace(from, to));
            assert!(msg.contains(&format!("`{key}`")), "{key}: {msg}");
            let expected_line = if key == "name" { 3 } else { 7 };
            assert_eq!(line, expected_line, "{key}: {msg}");
            assert!(col > 1, "{key}: column points at the value");
        }
    }

    #[test]
    fn role_specific_missing_keys() {
        let text = EGRESS.replace("outbox_dir = \"/srv/ferry/in\"\n", "");
        let (line, col, msg) = refused(&text);
        assert_eq!((line, col), (9, 1));
        assert!(
            msg.starts_with("missing key `outbox_dir` in `[paths]`"),
            "{msg}"
        );

        let text = INGRESS.replace("peer = [\"127.0.0.1:7700\", \"127.0.0.1:7701\"]\n", "");
        let (line, col, msg) = refused(&text);
        assert_eq!((line, col), (2, 1));
        assert!(msg.starts_with("missing key `peer` in `[link]`"), "{msg}");

        let text = INGRESS.replace("spool_dir = \"spool\"\n", "");
        let (line, col, msg) = refused(&text);
        assert_eq!((line, col), (9, 1));
        assert!(msg.starts_with("missing key `spool_dir`"), "{msg}");
    }

    #[test]
    fn keys_of_the_other_role_are_refused() {
        let text = INGRESS.replace("mtu = 9000", "listen = [\"127.0.0.1:1\"]");
        let (line, col, msg) = refused(&text);
        assert_eq!((line, col), (6, 1));
        assert!(msg.contains("egress role only"), "{msg}");

        let text = EGRESS.replace("[paths]\n", "[paths]\nspool_dir = \"x\"\n");
        let (line, col, msg) = refused(&text);
        assert_eq!((line, col), (10, 1));
        assert!(msg.contains("ingress role only"), "{msg}");
    }

    #[test]
    fn link_down_must_exceed_heartbeat() {
        let text = EGRESS.replace("link_down_after_ms = 1000", "link_down_after_ms = 200");
        let (line, col, msg) = refused(&text);
        assert_eq!((line, col), (7, 22));
        assert!(
            msg.contains("greater than `heartbeat_interval_ms` (200)"),
            "{msg}"
        );

        let text = INGRESS.replace("mtu = 9000", "heartbeat_interval_ms = 5000");
        let (line, col, _) = refused(&text);
        assert_eq!((line, col), (6, 25));
    }

    #[test]
    fn invalid_address_points_at_the_element() {
        let text = INGRESS.replace("\"127.0.0.1:7701\"", "\"egress.example:7701\"");
        let (line, col, msg) = refused(&text);
        assert_eq!((line, col), (5, 27));
        assert!(msg.contains("not an IP address with a port"), "{msg}");

        let text = INGRESS.replace("\"127.0.0.1:7701\"", "\"0.0.0.0:7701\"");
        let (_, _, msg) = refused(&text);
        assert!(msg.contains("unspecified"), "{msg}");

        let text = EGRESS.replace("\"[::1]:7701\"", "\"[::1]:0\"");
        let (line, col, msg) = refused(&text);
        assert_eq!((line, col), (5, 29));
        assert!(msg.contains("port 0"), "{msg}");
    }

    #[test]
    fn ipv6_peer_needs_an_ipv6_bind() {
        let text = INGRESS.replace("\"127.0.0.1:7701\"", "\"[::1]:7701\"");
        let (line, col, msg) = refused(&text);
        assert_eq!((line, col), (5, 27));
        assert!(msg.contains("bind = \"[::]:0\""), "{msg}");
        let text = text.replace("mtu = 9000", "bind = \"[::]:0\"");
        let c = parse(&text, "/etc/ferry/ferryd.toml").unwrap();
        assert_eq!(c.link.peer[1], "[::1]:7701".parse::<SocketAddr>().unwrap());
    }

    /// The layout `testbed` writes (and the end-to-end tests use).
    #[test]
    fn testbed_style_files_parse() {
        let common = "name = \"t\"\nsuite = \"intl\"\nmtu = 1500\nsocket_buffer_bytes = 33554432\nrepair_overhead_percent = 10.0\nredundancy = 1\nredundancy_spacing_ms = 200\nheartbeat_interval_ms = 200\nlink_down_after_ms = 1000\nmax_buffer_bytes = 268435456\n";
        let ingress = format!("[link]\nrole = \"ingress\"\n{common}peer = [\"127.0.0.1:7700\"]\nbind = \"127.0.0.1:0\"\nrate_bytes_per_s = 0\n\n[paths]\nstate_dir = \"state\"\nkeys_dir = \"keys\"\nspool_dir = \"spool\"\n");
        let egress = format!("[link]\nrole = \"egress\"\n{common}listen = [\"127.0.0.1:7700\"]\n\n[paths]\nstate_dir = \"state\"\nkeys_dir = \"keys\"\noutbox_dir = \"outbox\"\n");
        let i = parse(&ingress, "/tb/ingress/ferryd.toml").unwrap();
        assert_eq!(i.link.bind, "127.0.0.1:0".parse::<SocketAddr>().unwrap());
        assert_eq!(i.paths.spool_dir, Some(PathBuf::from("/tb/ingress/spool")));
        let e = parse(&egress, "/tb/egress/ferryd.toml").unwrap();
        assert_eq!(e.paths.outbox_dir, Some(PathBuf::from("/tb/egress/outbox")));
        assert_eq!(e.link.socket_buffer_bytes, 32 << 20);
    }

    #[test]
    fn syntax_error_is_located() {
        let text = INGRESS.replace("[paths]", "[paths");
        let (line, _, _) = refused(&text);
        assert_eq!(line, 9);
    }

    #[test]
    fn display_shows_line_and_caret() {
        let text = INGRESS.replace("mtu = 9000", "mut = 9000");
        let e = parse(&text, "ferryd.toml").unwrap_err();
        assert_eq!(
            e.to_string(),
            "ferryd.toml:6:1: unknown key `mut`, did you mean `mtu`?\n  |\n6 | mut = 9000\n  | ^^^"
        );
        assert_eq!(e.position(), Some((6, 1)));
    }

    #[test]
    fn columns_count_characters() {
        let text = INGRESS
            .replace("# ingress side", "# 入口 side")
            .replace("name = \"demo\"", "name = \"数据\"");
        let (line, col, _) = refused(&text);
        assert_eq!((line, col), (3, 8));
    }

    #[test]
    fn load_resolves_relative_paths_against_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ferryd.toml");
        std::fs::write(&file, INGRESS).unwrap();
        let c = load(&file).unwrap();
        assert_eq!(c.paths.state_dir, dir.path().join("state"));
        assert_eq!(c.paths.spool_dir, Some(dir.path().join("spool")));

        let missing = dir.path().join("nope.toml");
        let e = load(&missing).unwrap_err();
        assert!(matches!(e, ConfigError::Io { .. }));
        assert!(e.to_string().contains("nope.toml"), "{e}");
    }

    #[test]
    fn downstream_section() {
        let c = parse(
            &format!("{EGRESS}\n[downstream]\nca = \"tls/ca.crt\"\ncert = \"tls/c.crt\"\nkey = \"/k/c.key\"\nretry_max_ms = 60000\n"),
            "/etc/ferry/ferryd.toml",
        )
        .unwrap();
        let d = c.downstream.unwrap();
        assert_eq!(d.ca, Path::new("/etc/ferry/tls/ca.crt"));
        assert_eq!(d.key, Path::new("/k/c.key"));
        assert_eq!(d.retry_max_ms, 60_000);
        assert_eq!(d.retry_initial_ms, DEFAULT_DOWNSTREAM_RETRY_INITIAL_MS);
        assert_eq!(d.timeout_s, DEFAULT_DOWNSTREAM_TIMEOUT_S);
        let (line, _, msg) = refused(&format!(
            "{EGRESS}\n[downstream]\nca = \"a\"\ncert = \"b\"\n"
        ));
        assert_eq!(line, 14);
        assert!(
            msg.starts_with("missing key `key` in `[downstream]`"),
            "{msg}"
        );
        let (line, col, msg) = refused(&format!(
            "{EGRESS}\n[downstream]\nca = \"a\"\ncert = \"b\"\nkey = \"c\"\nretry_initial_ms = 5000\nretry_max_ms = 1000\n"
        ));
        assert_eq!((line, col), (19, 16));
        assert!(msg.contains("below `retry_initial_ms`"), "{msg}");
        let (_, _, msg) = refused(&format!(
            "{INGRESS}\n[downstream]\nca = \"a\"\ncert = \"b\"\nkey = \"c\"\n"
        ));
        assert!(msg.contains("egress role only"), "{msg}");
    }

    #[test]
    fn admin_api_section() {
        let api = "\n[admin_api]\nlisten = \"127.0.0.1:9443\"\ncert = \"tls/a.crt\"\nkey = \"tls/a.key\"\nclient_ca = [\"tls/ca.crt\"]\n";
        let c = parse(
            &format!("{EGRESS}\n[admin]\nsysadmin = [\"uid:5001\"]\n{api}"),
            "/etc/ferry/ferryd.toml",
        )
        .unwrap();
        let a = c.admin_api.unwrap();
        assert_eq!(a.listen.to_string(), "127.0.0.1:9443");
        assert_eq!(a.client_ca, vec![PathBuf::from("/etc/ferry/tls/ca.crt")]);
        let (_, _, msg) = refused(&format!("{EGRESS}{api}"));
        assert!(msg.contains("`[admin_api]` needs `[admin]`"), "{msg}");
        let (_, _, msg) = refused(&format!(
            "{EGRESS}\n[admin]\nsysadmin = [\"uid:5001\"]\n\n[admin_api]\nlisten = \"127.0.0.1:9443\"\ncert = \"a\"\nkey = \"b\"\n"
        ));
        assert!(
            msg.starts_with("missing key `client_ca` in `[admin_api]`"),
            "{msg}"
        );
    }

    #[test]
    fn metrics_section() {
        let c = parse(
            &format!("{EGRESS}\n[metrics]\nlisten = \"127.0.0.1:9464\"\n"),
            "/etc/ferry/ferryd.toml",
        )
        .unwrap();
        assert_eq!(
            c.metrics.map(|m| m.listen.to_string()).as_deref(),
            Some("127.0.0.1:9464")
        );
        let (line, _, msg) = refused(&format!("{EGRESS}\n[metrics]\n"));
        assert_eq!(line, 14);
        assert!(
            msg.starts_with("missing key `listen` in `[metrics]`"),
            "{msg}"
        );
        let (line, col, msg) = refused(&format!("{EGRESS}\n[metrics]\nlisten = \"localhost\"\n"));
        assert_eq!((line, col), (15, 10));
        assert!(msg.contains("is not an IP address with a port"), "{msg}");
    }

    #[test]
    fn hardening_defaults_to_every_step_on() {
        let c = parse(INGRESS, "/etc/ferry/ferryd.toml").unwrap();
        assert_eq!(c.hardening, HardeningSection::default());
        let h = &c.hardening;
        assert!(h.drop_privileges && h.forbid_core_dumps && h.no_new_privs);
        assert!(h.landlock && h.seccomp && h.close_inherited_fds && h.sanitize_environment);
        assert_eq!(h.seccomp_action, SeccompActionName::KillProcess);
        assert_eq!(h.user, None);
    }

    #[test]
    fn hardening_section_parses() {
        let text = format!(
            "{EGRESS}\n[hardening]\nuser = \"ferry\"\ngroup = \"ferry\"\nseccomp_action = \"errno\"\nlandlock = false\nextra_read_paths = [\"/etc/ssl\", \"ca\"]\n"
        );
        let c = parse(&text, "/etc/ferry/ferryd.toml").unwrap();
        let h = &c.hardening;
        assert_eq!(h.user.as_deref(), Some("ferry"));
        assert_eq!(h.group.as_deref(), Some("ferry"));
        assert_eq!(h.seccomp_action, SeccompActionName::Errno);
        assert!(!h.landlock);
        assert!(h.seccomp);
        assert_eq!(
            h.extra_read_paths,
            vec![PathBuf::from("/etc/ssl"), PathBuf::from("/etc/ferry/ca")]
        );
    }

    #[test]
    fn hardening_refusals_are_located() {
        let base = format!("{EGRESS}\n[hardening]\n");
        // EGRESS has 12 lines and a blank follows: the header is line 14.
        let (line, col, msg) = refused(&format!("{base}user = \"Fe rry\"\n"));
        assert_eq!((line, col), (15, 8));
        assert!(
            msg.starts_with("`user` must be a system user name"),
            "{msg}"
        );

        let (line, col, msg) = refused(&format!("{base}seccomp_action = \"kill\"\n"));
        assert_eq!((line, col), (15, 18));
        assert!(msg.starts_with("unknown value \"kill\""), "{msg}");

        let (line, col, msg) = refused(&format!("{base}group = \"ferry\"\n"));
        assert_eq!((line, col), (15, 1));
        assert!(msg.starts_with("`group` needs `user`"), "{msg}");

        let (line, col, msg) = refused(&format!("{base}user = \"root\"\n"));
        assert_eq!((line, col), (14, 1));
        assert!(msg.contains("defeats the privilege drop"), "{msg}");

        let (line, col, msg) = refused(&format!("{base}seccomp = \"no\"\n"));
        assert_eq!((line, col), (15, 11));
        assert!(msg.contains("invalid type"), "{msg}");

        let (line, _, msg) = refused(&format!("{base}landlok = false\n"));
        assert_eq!(line, 15);
        assert_eq!(msg, "unknown key `landlok`, did you mean `landlock`?");
    }

    #[test]
    fn suggestions() {
        assert_eq!(suggest("mut", &["name", "mtu"]), Some("mtu"));
        assert_eq!(suggest("MTU", &["name", "mtu"]), Some("mtu"));
        assert_eq!(
            suggest("rate", &["rate_bytes_per_s", "mtu"]),
            Some("rate_bytes_per_s")
        );
        assert_eq!(
            suggest("heartbeat_interval", &["heartbeat_interval_ms"]),
            Some("heartbeat_interval_ms")
        );
        assert_eq!(suggest("xyz", &["name", "mtu"]), None);
    }
}
