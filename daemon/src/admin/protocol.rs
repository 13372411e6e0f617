//! The admin plane's protocol: the requests a caller may make of a running
//! ferryd, the status it publishes, and who the caller is. A leaf: the
//! control socket, the admin HTTPS API, both sides' handlers and ferryctl
//! all use these types, and this module uses none of theirs.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// File name of the control socket inside the state directory.
pub const SOCKET: &str = "control.sock";
/// File name of the periodic status snapshot inside the state directory.
pub const STATUS_FILE: &str = "status.json";

/// A request on the control socket.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// The status snapshot.
    Status,
    /// Ingress only: send retained packages again under new sequence numbers.
    Resend {
        /// Package ids (hex).
        #[serde(default)]
        packages: Vec<String>,
        /// Inclusive sequence range.
        #[serde(default)]
        seq_range: Option<(u64, u64)>,
    },
    /// Either side: read the policy file again and swap it in if valid
    /// (and signed, when signatures are required); on the ingress side the
    /// same as SIGHUP (the egress side has no SIGHUP reload).
    ReloadPolicy,
    /// Record a use of the audit tools in the log this daemon writes
    /// (`audit.read` only: the tools cannot open the log while the daemon
    /// holds it).
    AuditNote {
        /// The record.
        record: ferry_audit::AuditRecord,
    },
    /// Egress, system administrators: what `ferryctl signatures apply` did
    /// with a signature package (`signatures.applied` or
    /// `signatures.refused`), recorded in the audit log, counted, and
    /// alarmed when refused.
    SignaturesNote {
        /// The record.
        record: ferry_audit::AuditRecord,
    },
    /// Ingress, reviewers: packages held for approval.
    ApprovalsList,
    /// Ingress, reviewers: one held package with a preview.
    ApprovalsShow {
        /// Package id (hex).
        package: String,
    },
    /// Ingress, reviewers: approve a held package.
    Approve {
        /// Package id (hex).
        package: String,
        /// Why (recorded).
        reason: String,
    },
    /// Ingress, reviewers: reject a held package (it is deleted).
    Reject {
        /// Package id (hex).
        package: String,
        /// Why (recorded).
        reason: String,
    },
    /// Ingress, sysadmin: stop a channel (no intake; queued packages are
    /// held, not sent) until it is started again.
    ChannelStop {
        /// The channel.
        channel: String,
        /// Why (recorded, shown in status and to refused pushers).
        reason: String,
    },
    /// Ingress, sysadmin: start a stopped channel again.
    ChannelStart {
        /// The channel.
        channel: String,
    },
    /// Egress, sysadmin: send packages a downstream endpoint refused
    /// again (one, or all when `package` is absent), and retry every
    /// endpoint now instead of after its back-off.
    ForwardRetry {
        /// Package id (hex).
        #[serde(default)]
        package: Option<String>,
    },
    /// Egress, sysadmin: acknowledge that the missing sequence numbers
    /// `first..=last` will never come (audited with the reason); they
    /// leave the gap list and its alarm.
    GapAck {
        /// First sequence number.
        first: u64,
        /// Last sequence number (inclusive).
        last: u64,
        /// Why they will never come (recorded).
        reason: String,
    },
}

/// The status a daemon publishes. Fields not relevant to a side stay empty.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Status {
    /// `ingress` or `egress`.
    pub role: String,
    /// Link name.
    pub link: String,
    /// Wall-clock time of the snapshot (ms since the Unix epoch).
    pub updated_unix_ms: u64,
    /// Current key epoch.
    pub epoch: u32,
    /// Ingress: packages waiting to be sent.
    pub queued: u64,
    /// Ingress: packages taken from the spool.
    pub taken: u64,
    /// Ingress: spool files that changed while they were taken (a writer
    /// not done), put back to settle.
    #[serde(default)]
    pub spool_retakes: u64,
    /// Ingress: packages whose sends completed.
    pub sent: u64,
    /// Ingress: packages resent on operator request.
    pub resent: u64,
    /// Ingress: bundles whose sends completed (each carried two or more
    /// packages, counted in `sent` one by one).
    #[serde(default)]
    pub bundles_sent: u64,
    /// Ingress: packages that went in those bundles.
    #[serde(default)]
    pub bundled_packages: u64,
    /// Ingress: datagrams sent.
    pub datagrams_sent: u64,
    /// Ingress: UDP messages those datagrams went in (fewer with GSO).
    pub udp_messages_sent: u64,
    /// Ingress: datagrams per UDP GSO message now (1: off, or the kernel
    /// refused GSO and the sender went on without it).
    pub udp_gso_segments: u64,
    /// Ingress: datagrams the transport dropped after transient errors.
    pub send_dropped: u64,
    /// Ingress: transient send errors (EPERM, ENOBUFS, …) counted and survived.
    pub send_errors: u64,
    /// Ingress: sent copies retained for resends, and their bytes.
    pub retained: u64,
    /// Ingress: bytes retained.
    pub retained_bytes: u64,
    /// Ingress: protocol sender counters.
    pub sender: Option<serde_json::Value>,
    /// Egress: link up (valid datagrams within `link_down_after_ms`).
    pub link_up: bool,
    /// Egress: the sender's next sequence number from its last heartbeat.
    pub sender_next_seq: Option<u64>,
    /// Egress: packages delivered to the outbox.
    pub delivered: u64,
    /// Egress: bytes delivered.
    pub delivered_bytes: u64,
    /// Egress: bytes of staged packages written with `O_DIRECT` (past the
    /// first 8 MiB of a package; 0 where the filesystem refuses it).
    #[serde(default)]
    pub outbox_direct_bytes: u64,
    /// Egress: bundles received whole and taken apart into their members
    /// (each member delivered, suppressed or refused on its own).
    #[serde(default)]
    pub bundles_received: u64,
    /// Egress: bundles refused whole (a member table that does not parse
    /// or does not match the signed range; audited and alarmed).
    #[serde(default)]
    pub bundles_refused: u64,
    /// Egress: bundles gathered in a staging file instead of memory (the
    /// bundles in memory already took their bound: an eighth of
    /// `max_buffer_bytes`).
    #[serde(default)]
    pub bundles_staged_on_disk: u64,
    /// Egress: packages that failed (each named in the log). Ingress:
    /// queued packages whose copy could not be read, never sent (audited,
    /// alarmed).
    pub failed: u64,
    /// Egress: packages received again (redundant send or resend) and not
    /// delivered a second time.
    pub duplicates_suppressed: u64,
    /// Egress: delivery ledger entries forgotten because their package is
    /// older than `ledger_max_age_s` (a copy that old is refused instead).
    #[serde(default)]
    pub ledger_pruned: u64,
    /// Egress: ClamAV signature files applied from the `[signatures]`
    /// channel.
    #[serde(default)]
    pub signatures_applied: u64,
    /// Egress: signature files refused (each audited and alarmed).
    #[serde(default)]
    pub signatures_refused: u64,
    /// Egress: the most recent missing sequence ranges (what to resend).
    pub gaps: Vec<(u64, u64)>,
    /// Egress: protocol counters.
    pub receiver: Option<serde_json::Value>,
    /// Conditions that need an operator.
    pub alarms: Vec<String>,
    /// Things to act on soon but not failures (keys within 30 days of
    /// expiry).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Process hardening in force: a `ferry_hardening::Report` (what
    /// `ferryctl selfcheck` reads, with the daemon's pid).
    #[serde(default)]
    pub hardening: Option<serde_json::Value>,
    /// Packages refused: ingress by the policy, the guard, a reviewer or
    /// expiry; egress by its guard.
    #[serde(default)]
    pub rejected: u64,
    /// Ingress: SHA-256 of the policy in force.
    #[serde(default)]
    pub policy_hash: Option<String>,
    /// Ingress: the outcome of the last policy reload.
    #[serde(default)]
    pub policy_reload: Option<String>,
    /// Packages and bytes per channel and outcome (both sides).
    #[serde(default)]
    pub channels: BTreeMap<String, ChannelCounters>,
    /// Egress: when the last authenticated heartbeat arrived (ms since
    /// the Unix epoch).
    #[serde(default)]
    pub last_heartbeat_unix_ms: Option<u64>,
    /// Egress: sequence numbers reported missing since start.
    #[serde(default)]
    pub gap_seqs_total: u64,
    /// Certificates and CRLs this host depends on (`certs_dir`, the ingest
    /// API's certificate): file → notAfter / nextUpdate, Unix seconds.
    #[serde(default)]
    pub cert_not_after: BTreeMap<String, i64>,
    /// Who holds which administrative role on the control socket.
    #[serde(default)]
    pub admin_roles: Option<String>,
    /// Ingress: packages held for approval.
    #[serde(default)]
    pub awaiting_approval: u64,
    /// Ingress: accepted packages held until their channel's time window
    /// opens.
    #[serde(default)]
    pub awaiting_window: u64,
    /// Ingress: channels the system administrator stopped, with who, when
    /// and why.
    #[serde(default)]
    pub stopped_channels: BTreeMap<String, String>,
    /// Egress: downstream HTTPS endpoints and the packages waiting for
    /// them, by URL.
    #[serde(default)]
    pub downstream: BTreeMap<String, DownstreamStatus>,
    /// Ingress: clients refused by the ingest API and the spool intake
    /// (connection caps, handshakes, bad requests, names, policy, guard),
    /// by reason.
    #[serde(default)]
    pub client_refusals: BTreeMap<String, u64>,
    /// Egress: sequence numbers of gaps still open (durable until their
    /// packages are delivered or an administrator acknowledges them).
    #[serde(default)]
    pub gap_seqs_open: u64,
    /// Egress: authenticated heartbeats refused as not fresh (replays).
    #[serde(default)]
    pub heartbeats_replayed: u64,
    /// Ingress: packages sent once more by the self-healing re-send.
    #[serde(default)]
    pub heal_resent: u64,
    /// Ingress: packages the self-healing re-send skipped (still over its
    /// byte budget 60 s after they became due, due while the ingress was
    /// down, or no longer retained); an egress crash then needs an
    /// operator resend for them (the egress side lists the gap).
    #[serde(default)]
    pub heal_skipped: u64,
    /// The link's loss budget and what it costs per package size (None
    /// when the budget is off).
    #[serde(default)]
    pub loss_budget: Option<BudgetStatus>,
    /// Egress: the receive spool and the rate this side sustains.
    #[serde(default)]
    pub receive: Option<ReceiveStatus>,
    /// Malware scanning (profiles with `malware`): the engines and what
    /// the scans came to since start.
    #[serde(default)]
    pub malware: Option<MalwareStatus>,
    /// YARA scanning (profiles with `yara`): what the scans came to since
    /// start.
    #[serde(default)]
    pub yara: Option<YaraCounts>,
}

/// What the YARA scans of packages on this side came to since start.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct YaraCounts {
    /// Packages scanned to a verdict (clean or matched).
    pub scanned: u64,
    /// Packages in which a rule matched (refused or held for review).
    pub matched: u64,
    /// Packages refused because a scan ran past `yara.timeout_s`.
    pub timeout: u64,
    /// Packages refused as larger than `yara.max_scan_bytes`, or whose
    /// scan failed.
    pub unscannable: u64,
}

/// Malware scanning on this side: each engine the profiles in force use,
/// as last probed, and counts since start.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct MalwareStatus {
    /// One entry per clamd socket.
    pub engines: Vec<EngineStatus>,
    /// Packages scanned to a verdict (clean or found).
    pub scanned: u64,
    /// Packages refused because a signature matched.
    pub detected: u64,
    /// Packages not scanned because the engine could not answer (never
    /// passed: held or refused).
    pub unavailable: u64,
    /// Of those, held for another try (`on_unavailable = "hold"`).
    pub held: u64,
    /// Packages refused as larger than the engine takes.
    pub unscannable: u64,
}

/// One malware engine as last probed (`VERSION`, every minute).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct EngineStatus {
    /// `clamd`.
    pub engine: String,
    /// Its socket.
    pub socket: String,
    /// The profiles that scan with it.
    pub profiles: Vec<String>,
    /// It answered the last probe.
    pub reachable: bool,
    /// `ClamAV 1.4.3`.
    pub version: Option<String>,
    /// The signature database's version (official databases only).
    pub database_version: Option<u64>,
    /// Its build time as the engine gives it.
    pub database_date: Option<String>,
    /// Its age in whole days.
    pub database_age_days: Option<u64>,
    /// The profiles' `max_signature_age_days` (the smallest).
    pub max_signature_age_days: u32,
    /// Why the last probe failed.
    pub error: Option<String>,
    /// Signatures older than allowed, or of unknown age.
    pub warning: Option<String>,
    /// When it was probed, ms since the Unix epoch.
    pub checked_unix_ms: u64,
}

/// Egress: the buffer between the socket and the protocol work, and the
/// rate the work sustains (what the ingress side should be paced at).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReceiveStatus {
    /// Datagram bytes waiting to be processed now (memory and disk).
    pub backlog_bytes: u64,
    /// The largest backlog since start.
    pub peak_backlog_bytes: u64,
    /// Datagram bytes that went through the disk since start.
    pub spilled_bytes: u64,
    /// Datagrams dropped because the spool was full (an alarm says so).
    pub dropped_datagrams: u64,
    /// Datagrams the kernel dropped at the socket before ferryd read them
    /// (a host too busy for the socket buffer; a warning says so).
    #[serde(default)]
    pub kernel_dropped_datagrams: u64,
    /// Times the receive thread found the spool's memory full and waited
    /// for the disk (the socket buffer held what came meanwhile).
    #[serde(default)]
    pub receive_waits: u64,
    /// Whether the link sockets receive with UDP GRO (`udp_gro`).
    #[serde(default)]
    pub udp_gro: bool,
    /// With GRO: UDP messages that carried more than one datagram.
    #[serde(default)]
    pub udp_gro_messages: u64,
    /// The disk bound (`receive_spool_bytes`).
    pub spool_limit_bytes: u64,
    /// Datagram bytes per second the processing handles while busy, once
    /// measured (at least 32 MiB seen).
    pub sustained_bytes_per_s: Option<u64>,
    /// The ingress `rate_bytes_per_s` this suggests: 80 % of the sustained
    /// rate, rounded down to a megabyte per second.
    pub suggested_rate_bytes_per_s: Option<u64>,
}

/// The loss budget in force and its cost, from the configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct BudgetStatus {
    /// Percent of datagrams the link may lose.
    pub loss_percent: f64,
    /// Longest run of datagrams lost in a row.
    pub burst: u16,
    /// Probability of losing a package within the budget stays below this.
    pub target_package_loss: f64,
    /// The cost for a few package sizes.
    pub sizes: Vec<BudgetRow>,
}

/// What one package size costs under the budget, and without it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct BudgetRow {
    /// Plaintext bytes of the package.
    pub bytes: u64,
    /// Datagrams of one send (data and manifest copies).
    pub datagrams: u64,
    /// Of which manifest copies.
    pub manifest_copies: u16,
    /// Bytes on the wire (UDP payloads) of one send, at most.
    pub wire_bytes: u64,
    /// The computed bound on losing the package within the budget.
    pub loss_bound: f64,
    /// Datagrams of one send with fixed repair (`repair_overhead_percent`)
    /// and no budget, as before budgets existed.
    pub datagrams_without_budget: u64,
}

/// Counters of one channel. Ingress counts `accepted` (queued), `rejected`
/// (refused by policy or guard) and `sent`; egress counts `delivered`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChannelCounters {
    /// Packages accepted into the queue.
    pub accepted: u64,
    /// Their bytes.
    pub accepted_bytes: u64,
    /// Packages refused.
    pub rejected: u64,
    /// Packages whose sends completed.
    pub sent: u64,
    /// Their bytes.
    pub sent_bytes: u64,
    /// Packages delivered to the outbox.
    pub delivered: u64,
    /// Their bytes.
    pub delivered_bytes: u64,
}

/// Counts a refused package, in the side's total and its channel's.
pub fn count_rejected(s: &SharedStatus, channel: &str) {
    update(s, |st| {
        st.rejected += 1;
        st.channels.entry(channel.to_owned()).or_default().rejected += 1;
    });
}

/// Applies `f` to one channel's counters (created at zero).
pub fn count(s: &SharedStatus, channel: &str, f: impl FnOnce(&mut ChannelCounters)) {
    update(s, |st| {
        f(st.channels.entry(channel.to_owned()).or_default())
    });
}

/// Status shared between the daemon's threads.
pub type SharedStatus = Arc<Mutex<Status>>;

/// Reads the snapshot without poisoning concerns: a panicked writer thread
/// leaves the last complete snapshot, which is still worth showing.
pub fn snapshot(s: &SharedStatus) -> Status {
    match s.lock() {
        Ok(g) => g.clone(),
        Err(p) => p.into_inner().clone(),
    }
}

/// Reads one thing from the shared status without copying the rest.
pub fn read<T>(s: &SharedStatus, f: impl FnOnce(&Status) -> T) -> T {
    match s.lock() {
        Ok(g) => f(&g),
        Err(p) => f(&p.into_inner()),
    }
}

/// Applies `f` to the shared status.
pub fn update(s: &SharedStatus, f: impl FnOnce(&mut Status)) {
    match s.lock() {
        Ok(mut g) => f(&mut g),
        Err(p) => f(&mut p.into_inner()),
    }
}

/// Writes the status file atomically (rename), but not durably: it is a
/// snapshot rewritten on every status publish, and a new start writes a
/// fresh one, so an fsync per publish would buy nothing after a crash.
pub fn write_status_file(state_dir: &Path, s: &Status) -> std::io::Result<()> {
    let tmp = state_dir.join(".status.json.tmp");
    let text = serde_json::to_vec_pretty(s).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, text)?;
    std::fs::rename(tmp, state_dir.join(STATUS_FILE))
}

/// Who is on the other end of a control connection, as the kernel says
/// (`SO_PEERCRED`), not as the caller claims; or, on the admin API, as its
/// verified client certificate says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// User id (`u32::MAX` on the admin API).
    pub uid: u32,
    /// Group id (`u32::MAX` on the admin API).
    pub gid: u32,
    /// Process id (0 on the admin API).
    pub pid: i32,
    /// The client certificate, on the admin API.
    pub cert: Option<CertCaller>,
}

/// An administrator authenticated by a client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertCaller {
    /// Subject common name.
    pub common_name: String,
    /// SHA-256 fingerprint of the certificate (hex).
    pub fingerprint: String,
    /// The role the certificate carries.
    pub role: Option<String>,
    /// The person the certificate belongs to
    /// ([`ferry_certs::Identity::person`], lowercase): one reviewer for the
    /// two-person rule however many certificates they hold.
    pub person: String,
}

impl Caller {
    /// A caller on the admin API.
    pub fn certificate(cert: CertCaller) -> Caller {
        Caller {
            uid: u32::MAX,
            gid: u32::MAX,
            pid: 0,
            cert: Some(cert),
        }
    }

    /// One string per account or certificate (`uid:N` or
    /// `cert:FINGERPRINT`): what approvals recorded before reviewers were
    /// counted by person; persons are the approvals module's business.
    pub fn principal(&self) -> String {
        match &self.cert {
            Some(c) => format!("cert:{}", c.fingerprint),
            None => format!("uid:{}", self.uid),
        }
    }
}

/// What the status shows per endpoint.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DownstreamStatus {
    /// Packages waiting for it (parked ones included).
    pub waiting: u64,
    /// Packages it refused outright, waiting for an operator's retry.
    pub parked: u64,
    /// Packages it accepted since start.
    pub forwarded: u64,
    /// Failed attempts in a row.
    pub consecutive_failures: u32,
    /// Since when it has been failing, ms since the Unix epoch.
    pub failing_since_unix_ms: Option<u64>,
    /// The next attempt, ms since the Unix epoch (while backing off).
    pub next_attempt_unix_ms: Option<u64>,
    /// The last failure.
    pub last_error: Option<String>,
}
