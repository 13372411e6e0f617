//! What the rest of the daemon reads: the checked configuration and its
//! sections, and the default each key takes when the file leaves it out.
//! Nothing here reads the file or checks a key: `check` builds these values
//! once, and only `Config::resolve_admin` adds to them (user names looked up
//! at start).

use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;

/// IPv4 + UDP header bytes subtracted from the MTU to get the datagram size.
pub(crate) const IP_UDP_OVERHEAD_BYTES: usize = 28;

pub(crate) const DEFAULT_MTU: usize = 1500;
pub(crate) const DEFAULT_BIND: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
/// Ingress pacing when not configured: 100 MB/s, below a gigabit link and
/// what a modest egress host sustains; `ferryctl status` on the egress side
/// suggests the rate for the host at hand (`ferryctl link set-rate`).
pub(crate) const DEFAULT_RATE_BYTES_PER_S: u64 = 100_000_000;
pub(crate) const DEFAULT_SOCKET_BUFFER_BYTES: usize = 8 << 20;
pub(crate) const DEFAULT_HEARTBEAT_INTERVAL_MS: u64 = 1000;
pub(crate) const DEFAULT_LINK_DOWN_AFTER_MS: u64 = 3500;
pub(crate) const DEFAULT_EPOCH_LENGTH_S: u64 = 3600;
/// 2026-01-01T00:00:00Z. Both sides derive every epoch secret from the
/// one at the origin by ratcheting forward, so an origin in 1970 would cost
/// ~500 000 HKDF steps at each side's first start.
pub(crate) const DEFAULT_EPOCH_ORIGIN_UNIX_S: u64 = 1_767_225_600;
pub(crate) const DEFAULT_EPOCH_GRACE: u32 = 1;
pub(crate) const DEFAULT_REPAIR_OVERHEAD_PERCENT: f64 = 10.0;
/// The shipped loss budget: 5 % of datagrams lost, in bursts of up to 8.
pub(crate) const DEFAULT_LOSS_BUDGET_PERCENT: f64 = 5.0;
pub(crate) const DEFAULT_LOSS_BUDGET_BURST: u16 = 8;
pub(crate) const DEFAULT_BLOCK_SYMBOLS: u16 = 1024;
pub(crate) const DEFAULT_REDUNDANCY: u8 = 1;
pub(crate) const DEFAULT_REDUNDANCY_SPACING_MS: u64 = 1000;
pub(crate) const DEFAULT_MAX_BUFFER_BYTES: usize = 256 << 20;
/// Egress: datagrams the receive thread may hold on disk while the
/// processing falls behind (4 GiB: about 40 s of a saturated gigabit link).
pub(crate) const DEFAULT_RECEIVE_SPOOL_BYTES: u64 = 4 << 30;
/// 30 days: well past the ingress side's default retention (7 days), from
/// which every resend and self-healing re-send comes.
pub(crate) const DEFAULT_LEDGER_MAX_AGE_S: u64 = 30 * 86_400;
pub(crate) const DEFAULT_PACKAGE_IDLE_TIMEOUT_MS: u64 = 5000;
/// Ingress: a package is sent once more this long after its sends ended
/// (self-healing after an egress crash; longer than the unit's restart).
pub(crate) const DEFAULT_HEAL_RESEND_AFTER_MS: u64 = 15_000;
/// Ingress: bytes per second the self-healing re-sends may use at most.
pub(crate) const DEFAULT_HEAL_RESEND_MAX_BYTES_PER_S: u64 = 10_000_000;
/// Ingress: most packages sent together as one bundle.
pub(crate) const DEFAULT_BUNDLE_MAX_PACKAGES: u16 = 64;
/// Ingress: most payload bytes in one bundle.
pub(crate) const DEFAULT_BUNDLE_MAX_BYTES: u64 = 1 << 20;
/// Ingress: how long a bundle short of `bundle_max_packages` may wait at
/// the end of the queue for more packages (milliseconds).
pub(crate) const DEFAULT_BUNDLE_LINGER_MS: u64 = 5;
/// Longest `bundle_linger_ms` accepted.
pub(crate) const MAX_BUNDLE_LINGER_MS: u64 = 10_000;
pub(crate) const DEFAULT_RETENTION_MAX_BYTES: u64 = 1 << 30;
/// Default `[audit] min_free_bytes_accept`: 1 GiB.
pub(crate) const DEFAULT_AUDIT_MIN_FREE_BYTES_ACCEPT: u64 = 1 << 30;
/// Default `[ingest] max_package_bytes`: 1 GiB.
pub(crate) const DEFAULT_INGEST_MAX_PACKAGE_BYTES: u64 = 1 << 30;
/// Default `[ingest] max_queued_packages`.
pub(crate) const DEFAULT_INGEST_MAX_QUEUED_PACKAGES: u64 = 100_000;
/// Default `[ingest] min_free_bytes`: 1 GiB.
pub(crate) const DEFAULT_INGEST_MIN_FREE_BYTES: u64 = 1 << 30;
pub(crate) const DEFAULT_RETENTION_MAX_AGE_S: u64 = 7 * 24 * 3600;

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
    /// `[signatures]`: a channel whose packages are ClamAV signature
    /// databases, applied to a local clamd (egress only).
    pub signatures: Option<SignaturesSection>,
}

/// `[signatures]`: packages delivered on `channel` are ClamAV database
/// files; each is verified and put into `database_dir`, and clamd is told
/// to reload (docs/operations.md, "Bringing ClamAV signatures in").
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignaturesSection {
    /// The channel whose packages are signature files.
    pub channel: String,
    /// clamd's `DatabaseDirectory`.
    pub database_dir: PathBuf,
    /// clamd's socket (`LocalSocket`), for `RELOAD`.
    pub socket: PathBuf,
    /// `clamscan`, which loads each file before it is used.
    pub clamscan: PathBuf,
    /// `sigtool`, which checks a `.cvd`'s digital signature.
    pub sigtool: PathBuf,
    /// Accept unsigned `.cud` databases (a site's own builds).
    pub allow_unsigned: bool,
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
pub(crate) const DEFAULT_DOWNSTREAM_TIMEOUT_S: u64 = 60;
/// Default `[downstream] retry_initial_ms`.
pub(crate) const DEFAULT_DOWNSTREAM_RETRY_INITIAL_MS: u64 = 1_000;
/// Default `[downstream] retry_max_ms`: five minutes.
pub(crate) const DEFAULT_DOWNSTREAM_RETRY_MAX_MS: u64 = 300_000;
/// Default `[downstream] alarm_after_s`.
pub(crate) const DEFAULT_DOWNSTREAM_ALARM_AFTER_S: u64 = 300;

/// `[metrics]`: `GET /metrics` in the Prometheus text format, on its own
/// listener (plain HTTP: bind it to loopback or a management network).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MetricsSection {
    /// Address and TCP port.
    pub listen: SocketAddr,
}

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
    /// The pseudonym key directory (`ferryctl keys pseudonym rotate`) for
    /// `pseudonymize` column rules; read at start and at every reload, so
    /// a rotated key takes over with the next `ferryctl reload`.
    pub pseudonym_keys: Option<PathBuf>,
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
pub(crate) const DEFAULT_TRUST_RELOAD_INTERVAL_S: u64 = 5;
/// Default `[ingest] refusal_alarm_per_minute`.
pub(crate) const DEFAULT_REFUSAL_ALARM_PER_MINUTE: u64 = 60;

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
    /// Repair symbols as a percentage of source symbols: a floor under what
    /// the loss budget derives (the repair itself when the budget is off).
    pub repair_overhead_percent: f64,
    /// Loss budget: percent of datagrams the link may lose with every
    /// package still delivered (probability of losing one below 10^-6);
    /// 0 = no budget, fixed repair only.
    pub loss_budget_percent: f64,
    /// Loss budget: longest run of consecutive datagrams lost.
    pub loss_budget_burst: u16,
    /// Ingress: datagrams per UDP GSO message (1 = GSO off). At most the
    /// loss budget's burst: a device that passes super-packets whole loses
    /// them whole, and the interleaving spreads a burst of that length over
    /// the blocks.
    pub udp_gso_segments: u16,
    /// Egress: receive with UDP GRO, a super-packet as one message (on by
    /// default; off when the kernel refuses it, with a warning).
    pub udp_gro: bool,
    /// Source symbols per FEC block.
    pub block_symbols: u16,
    /// Sends per package.
    pub redundancy: u8,
    /// Pause between two sends of one package.
    pub redundancy_spacing_ms: u64,
    /// Egress receive memory bound.
    pub max_buffer_bytes: usize,
    /// Egress: disk bytes the receive spool may hold (0 = memory only).
    pub receive_spool_bytes: u64,
    /// Egress: a package silent this long is abandoned.
    pub package_idle_timeout_ms: u64,
    /// Egress: how long the delivery ledger remembers a delivered package
    /// (by its creation time) to deliver it once only; 0 = forever.
    pub ledger_max_age_s: u64,
    /// Ingress: each package is sent once more this long after its sends
    /// ended, so the link heals by itself after an egress crash.
    pub heal_resend_after_ms: u64,
    /// Ingress: budget of those re-sends in bytes per second; 0 = off.
    pub heal_resend_max_bytes_per_s: u64,
    /// Ingress: most packages, queued one after another on one channel,
    /// sent as one bundle under one signed manifest; 1 = no bundles.
    pub bundle_max_packages: u16,
    /// Ingress: most payload bytes of one bundle (a larger package is
    /// always sent alone).
    pub bundle_max_bytes: u64,
    /// Ingress: how long the last, not yet full bundle at the end of the
    /// queue may wait for more packages before it goes; 0 = never waits.
    pub bundle_linger_ms: u64,
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
