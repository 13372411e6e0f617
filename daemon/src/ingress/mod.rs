//! The ingress side: spool intake, durable queue, sealing and paced UDP
//! sending.
//!
//! Three threads: intake (takes settled files from the spool directory,
//! digests them, queues them durably), the sender (drives
//! `ferry_protocol::Sender`, reads payloads from the queue files, paces and
//! batches datagrams), and the control socket. A file is in the queue,
//! with its sequence number, in redb before anything is sent, so a crash at
//! any point either resends it under the same sequence number (the egress
//! side de-duplicates) or never took it from the spool.

pub mod holds;
pub mod ingest;
pub mod spool;

use crate::admin::protocol::{self, Caller, Request, SharedStatus};
use crate::config::Config;
use crate::link::pacer::Pacer;
use crate::link::udp::{self, BatchSender, DatagramBatch};
use crate::ops::audit_trail::{Actor, AuditRecord, AuditTrail, EventKind, Outcome, Role};
use crate::state::store::{QueueState, QueuedPackage, StateStore};
use crate::{now_millis, DaemonError};
use ferry_protocol::epoch::{EpochChain, EpochSchedule};
use ferry_protocol::{PackageId, PackageMeta, Sender, SenderConfig, Transmit};
use std::collections::BTreeMap;
use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// A spool file is taken once its size and mtime stayed the same this long.
pub const SPOOL_SETTLE_MS: u64 = 500;
/// Datagrams per sendmmsg batch.
const BATCH: usize = 64;
/// Packages handed to the protocol sender at once (each holds one FEC
/// block in memory while being sent).
const SENDER_WINDOW: usize = 4;
/// How often the sender looks for newly queued packages while busy.
const FEED_INTERVAL: Duration = Duration::from_millis(50);
/// Sub-directory of the state directory holding queued and retained files.
pub const QUEUE_DIR: &str = "queue";
/// Self-healing re-sends consider packages whose sends ended at most this
/// long before they became due; older ones (an ingress that was down, a
/// budget long exhausted) are skipped and counted, never sent in a flood.
const HEAL_WINDOW_MS: u64 = 60_000;
/// Key in a queued package's description: it had its self-healing re-send.
const HEALED_KEY: &str = "heal_resent";

/// Builds the protocol sender configuration from the daemon's.
pub fn sender_config(cfg: &Config) -> SenderConfig {
    let l = &cfg.link;
    let mut s = SenderConfig::new(&l.name, schedule(cfg));
    s.mtu = l.mtu;
    s.block_symbols = l.block_symbols;
    s.repair_overhead_percent = l.repair_overhead_percent;
    s.heartbeat_interval_ms = l.heartbeat_interval_ms;
    s.redundancy = l.redundancy;
    s.redundancy_spacing_ms = l.redundancy_spacing_ms;
    s
}

/// The epoch schedule from the configuration.
pub fn schedule(cfg: &Config) -> EpochSchedule {
    EpochSchedule {
        origin_unix_s: cfg.link.epoch_origin_unix_s,
        length_s: cfg.link.epoch_length_s,
    }
}

/// The link's epoch chain, restored from the key directory's state and
/// moved to the epoch in force now.
pub fn epoch_chain(cfg: &Config, keys: &ferry_keys::LinkKeys) -> EpochChain {
    let link = keys.link_crypto();
    let mut chain = EpochChain::new(
        link,
        keys.epoch.0,
        keys.epoch.1.clone(),
        cfg.link.epoch_grace,
    );
    chain.advance_to(link, schedule(cfg).epoch_at(now_millis()));
    chain.prepare_lookahead(link);
    chain
}

/// Loads the key directory named by the configuration, with the
/// passphrase from its configured source, and checks that it is the link,
/// side and suite the configuration says.
pub fn load_keys(cfg: &Config) -> Result<ferry_keys::LinkKeys, DaemonError> {
    let passphrase = ferry_keys::Passphrase::resolve(cfg.paths.passphrase_file.as_deref())?;
    let keys = ferry_keys::load(&cfg.paths.keys_dir, &passphrase)?;
    let want_side = match cfg.link.role {
        crate::config::Role::Ingress => ferry_keys::Side::Ingress,
        crate::config::Role::Egress => ferry_keys::Side::Egress,
    };
    let want_suite = match cfg.link.suite {
        crate::config::SuiteName::Intl => ferry_keys::Suite::Intl,
        crate::config::SuiteName::Gm => ferry_keys::Suite::Gm,
    };
    let dir = cfg.paths.keys_dir.display();
    if keys.side() != want_side || keys.suite() != want_suite || keys.link() != cfg.link.name {
        return Err(DaemonError::Config(format!(
            "{dir}: the key directory is for link `{}`, side {}, suite {}, but the configuration says link `{}`, role {}, suite {}; point `keys_dir` at the right directory or fix `[link]`",
            keys.link(),
            keys.side().name(),
            keys.suite().name(),
            cfg.link.name,
            want_side.name(),
            want_suite.name()
        )));
    }
    Ok(keys)
}

/// Puts a package back in the queue under a fresh sequence number.
fn requeue(store: &StateStore, id: [u8; 16], q: QueuedPackage) -> Result<u64, DaemonError> {
    let seq = store.reserve_seqs(1)?;
    let q = with_first_seq(&q);
    store.enqueue(
        id,
        &QueuedPackage {
            seq,
            state: QueueState::Queued,
            ..q
        },
    )?;
    Ok(seq)
}

/// Key in a queued package's description: the sequence number it was first
/// given. Every path that gives a package a new sequence number (resend,
/// restart, hold) keeps it, and the manifest carries it, so the egress side
/// closes the gap the first number left when the package arrives.
const FIRST_SEQ_KEY: &str = "first_seq";

/// `q` with its first sequence number recorded (its current one, unless
/// one is recorded already).
pub(crate) fn with_first_seq(q: &QueuedPackage) -> QueuedPackage {
    let mut q = q.clone();
    if let Ok(serde_json::Value::Object(mut m)) = serde_json::from_str(&q.meta_json) {
        if !m.contains_key(FIRST_SEQ_KEY) {
            m.insert(FIRST_SEQ_KEY.into(), q.seq.into());
            q.meta_json = serde_json::Value::Object(m).to_string();
        }
    }
    q
}

/// The first sequence number recorded by [`with_first_seq`], if any.
fn first_seq_of(meta: &serde_json::Value) -> Option<u64> {
    meta.get(FIRST_SEQ_KEY).and_then(|v| v.as_u64())
}

/// Serializes sequence-number reservation with the queue write, so that
/// packages enter the queue in sequence order whichever thread adds them.
type QueueLock = Arc<Mutex<()>>;

/// What the ingress threads (intake, ingest API, control, send loop) share.
pub(crate) struct Shared {
    pub(crate) cfg: Config,
    /// Sealing keys are moved into the sender; this keeps the KEK for the
    /// epoch state and the suite for digests.
    pub(crate) keys: ferry_keys::LinkKeys,
    /// Hourly key and certificate expiry check.
    expiry: Mutex<crate::ops::expiry::ExpiryWatch>,
    pub(crate) store: Arc<StateStore>,
    pub(crate) queue_dir: PathBuf,
    pub(crate) status: SharedStatus,
    pub(crate) lock: QueueLock,
    pub(crate) shutdown: Arc<AtomicBool>,
    /// The policy in force, when `[policy]` is configured.
    pub(crate) policy: Option<crate::inspection::policy_gate::PolicyGate>,
    /// Set by SIGHUP: reload the policy.
    reload: Arc<AtomicBool>,
    /// The audit log (or none).
    pub(crate) audit: AuditTrail,
    /// Serializes approvals, rejections and expiries of held packages.
    pub(crate) approvals_lock: Mutex<()>,
    /// Channels the system administrator stopped (persisted in the store).
    pub(crate) stopped: std::sync::RwLock<BTreeMap<String, crate::state::store::StoppedChannel>>,
}

impl Shared {
    /// The stop record of `channel`, if it is stopped.
    pub(crate) fn stopped(&self, channel: &str) -> Option<crate::state::store::StoppedChannel> {
        match self.stopped.read() {
            Ok(m) => m.get(channel).cloned(),
            Err(p) => p.into_inner().get(channel).cloned(),
        }
    }
}

/// Where an admitted package went.
pub(crate) enum Admitted {
    /// Into the send queue under this sequence number.
    Queued(u64),
    /// Held for approval until this time (ms since the Unix epoch).
    Held(u64),
    /// Held until its channel's window opens at this time (ms since the
    /// Unix epoch).
    AwaitingWindow(u64),
}

/// What the policy granted an accepted package besides "allowed".
#[derive(Default)]
pub(crate) struct Grant {
    /// Held for these approvals first.
    pub(crate) approval: Option<ferry_policy::ApprovalRequirement>,
    /// A window was closed: not sent before it opens (ms since the Unix
    /// epoch).
    pub(crate) window_until_unix_ms: Option<u64>,
    /// The sender as the policy saw it, kept with a held package to decide
    /// again at release.
    pub(crate) subject: Option<ferry_policy::Subject>,
}

/// Runs the ingress side until `shutdown` is set.
pub fn run(
    cfg: Config,
    shutdown: Arc<AtomicBool>,
    status: SharedStatus,
) -> Result<(), DaemonError> {
    let audit = AuditTrail::open(&cfg)?;
    let mut keys = load_keys(&cfg)?;
    let seal = keys.take_seal_keys()?;
    audit.record(
        AuditRecord::new(EventKind::DaemonStart, Actor::system(), Outcome::Success)
            .detail("role", "ingress")
            .detail("link", cfg.link.name.clone())
            .detail("suite", keys.suite().name()),
    )?;
    let policy = cfg
        .policy
        .as_ref()
        .map(crate::inspection::policy_gate::PolicyGate::load)
        .transpose()?;
    let reload = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, reload.clone())
        .map_err(DaemonError::io(Path::new("SIGHUP handler")))?;
    if let Some(p) = &policy {
        let hash = p.current().hash().to_owned();
        audit.record(
            AuditRecord::new(EventKind::PolicyReloaded, Actor::system(), Outcome::Success)
                .policy_hash(hash.clone())
                .reason("loaded at start"),
        )?;
        protocol::update(&status, |st| st.policy_hash = Some(hash));
    }
    let mut expiry = crate::ops::expiry::ExpiryWatch::new(&cfg, &keys);
    expiry.poll(&status);
    let expiry = Mutex::new(expiry);
    let state_dir = cfg.paths.state_dir.clone();
    std::fs::create_dir_all(&state_dir).map_err(DaemonError::io(&state_dir))?;
    let queue_dir = state_dir.join(QUEUE_DIR);
    std::fs::create_dir_all(&queue_dir).map_err(DaemonError::io(&queue_dir))?;
    let store = Arc::new(StateStore::open(&state_dir.join("ferry.redb"))?);
    let spool = cfg
        .paths
        .spool_dir
        .clone()
        .ok_or_else(|| DaemonError::Config("ingress needs paths.spool_dir".into()))?;
    std::fs::create_dir_all(&spool).map_err(DaemonError::io(&spool))?;

    requeue_interrupted(&store)?;
    let chain = epoch_chain(&cfg, &keys);
    let mut sender = Sender::new(sender_config(&cfg), seal, chain)?;

    let (socket, report) = udp::bind_socket(cfg.link.bind, cfg.link.socket_buffer_bytes)?;
    if report.capped {
        tracing::warn!(
            requested = report.requested,
            got = report.sndbuf,
            "kernel capped the socket send buffer; raise net.core.wmem_max"
        );
    }
    let mut udp = BatchSender::new(socket, cfg.link.peer.clone());
    update_status(&status, &cfg);

    let shared = Arc::new(Shared {
        cfg,
        keys,
        expiry,
        store,
        queue_dir,
        status,
        lock: Arc::new(Mutex::new(())),
        shutdown,
        policy,
        reload,
        audit,
        approvals_lock: Mutex::new(()),
        stopped: std::sync::RwLock::new(BTreeMap::new()),
    });
    let stopped = shared.store.stopped_channels()?;
    publish_stopped(&shared.status, &stopped);
    if let Ok(mut m) = shared.stopped.write() {
        *m = stopped;
    }
    crate::ingress::holds::approvals::reconcile(&shared)?;
    let intake = {
        let s = shared.clone();
        std::thread::Builder::new()
            .name("ferry-intake".into())
            .spawn(move || intake_loop(&s, &spool))
            .map_err(DaemonError::io(Path::new("intake thread")))?
    };
    let ingest = match shared.cfg.ingest.clone() {
        Some(c) => Some(crate::ingress::ingest::spawn(shared.clone(), c)?),
        None => None,
    };
    let control = {
        let s = shared.clone();
        let admin = crate::admin::gate::AdminPlane::from_config(
            &shared.cfg,
            nix::unistd::getuid().as_raw(),
        )?;
        crate::admin::gate::publish(&admin, &shared.cfg, &shared.status);
        let mode = admin.socket_mode();
        let handler: crate::admin::api::Handler = Arc::new(move |caller, req| {
            crate::admin::gate::gate(&admin, &s.audit, caller, req, |actor, caller, req| {
                handle_request(&s, actor, caller, req)
            })
        });
        crate::admin::api::Planes::start(&shared.cfg, mode, shared.shutdown.clone(), handler, {
            let s = shared.clone();
            Arc::new(move |r| s.audit.note(r))
        })?
    };
    let metrics = match shared.cfg.metrics.as_ref() {
        Some(m) => Some(crate::ops::metrics::spawn(
            m.listen,
            shared.status.clone(),
            shared.shutdown.clone(),
        )?),
        None => None,
    };
    let result = send_loop(&shared, &mut sender, &mut udp);
    shared.shutdown.store(true, Ordering::Relaxed);
    if let Some(m) = metrics {
        let _ = m.join();
    }
    let _ = intake.join();
    if let Some(i) = ingest {
        let _ = i.join();
    }
    control.join();
    shared.audit.note(
        AuditRecord::new(EventKind::DaemonStop, Actor::system(), Outcome::Success)
            .detail("role", "ingress"),
    );
    if let Ok(s) = Arc::try_unwrap(shared) {
        s.audit.close();
    }
    result
}

/// Packages whose send a crash interrupted are queued again under new
/// sequence numbers: the egress side may hold part of the old send, and a
/// fresh seal under the old number would mix with it. The package id stays,
/// so the egress ledger still delivers it once.
fn requeue_interrupted(store: &StateStore) -> Result<(), DaemonError> {
    for (id, q) in store.list(Some(QueueState::Sending))? {
        let old_seq = q.seq;
        let seq = requeue(store, id, q)?;
        tracing::info!(package = %hex::encode(id), old_seq, seq, "send interrupted by a restart; queued again");
    }
    Ok(())
}

fn update_status(status: &SharedStatus, cfg: &Config) {
    protocol::update(status, |s| {
        s.role = "ingress".into();
        s.link = cfg.link.name.clone();
    });
}

fn intake_loop(s: &Shared, spool: &Path) {
    let mut seen: HashMap<PathBuf, (u64, SystemTime, Instant)> = HashMap::new();
    let mut clock = crate::ingress::spool::SpoolClock::default();
    while !s.shutdown.load(Ordering::Relaxed) {
        // The spool's schedule, from the policy in force (a reload may
        // change it).
        let policy = s.policy.as_ref().map(|g| g.current());
        let name = spool_name(s);
        let coll = policy
            .as_ref()
            .and_then(|p| p.spool_collections().iter().find(|c| c.name == name));
        if !clock.collecting(coll, time::OffsetDateTime::now_utc(), Instant::now()) {
            // Between collections nothing is watched: a file must settle
            // within the next collection's window.
            seen.clear();
            std::thread::sleep(Duration::from_millis(500));
            continue;
        }
        if let Err(e) = intake_once(s, spool, &mut seen) {
            tracing::error!(error = %e, "spool intake failed; retrying");
            protocol::update(&s.status, |st| {
                let msg = format!("spool intake: {e}");
                if !st.alarms.contains(&msg) {
                    st.alarms.push(msg);
                }
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn intake_once(
    s: &Shared,
    spool: &Path,
    seen: &mut HashMap<PathBuf, (u64, SystemTime, Instant)>,
) -> Result<(), DaemonError> {
    let now = Instant::now();
    let mut present = Vec::new();
    for entry in std::fs::read_dir(spool).map_err(DaemonError::io(spool))? {
        let entry = entry.map_err(DaemonError::io(spool))?;
        let name = entry.file_name();
        // Dot files are in-progress uploads by convention (write `.x`, then
        // rename to `x`).
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let meta = match entry.metadata() {
            Ok(m) if m.is_file() => m,
            _ => continue,
        };
        let path = entry.path();
        present.push(path.clone());
        let sig = (
            meta.len(),
            meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        );
        match seen.get(&path) {
            Some((len, mtime, since)) if (*len, *mtime) == sig => {
                if now.duration_since(*since) >= Duration::from_millis(SPOOL_SETTLE_MS) {
                    seen.remove(&path);
                    take(s, &path)?;
                }
            }
            _ => {
                seen.insert(path, (sig.0, sig.1, now));
            }
        }
    }
    seen.retain(|p, _| present.contains(p));
    Ok(())
}

/// Moves a settled spool file into the queue and records it durably.
fn take(s: &Shared, path: &Path) -> Result<(), DaemonError> {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "unnamed".into());
    if let Err(why) = s.audit.accepting() {
        protocol::update(&s.status, |st| {
            let msg = format!("intake stopped: {why}");
            if !st.alarms.contains(&msg) {
                st.alarms.push(msg);
            }
        });
        return Ok(());
    }
    if refuse_spool_name(s, path, &file_name)? {
        return Ok(());
    }
    let (channel, mut approval, profile) = match spool_verdict(s, path, &file_name)? {
        SpoolVerdict::Take {
            channel,
            approval,
            profile,
        } => (channel, approval, profile),
        SpoolVerdict::Leave => return Ok(()),
    };
    let id = PackageId(rand_id()?);
    let dest = s.queue_dir.join(id.to_hex());
    if let Err(e) = std::fs::rename(path, &dest) {
        if e.raw_os_error() == Some(libc::EXDEV) {
            // Spool on another filesystem: copy, make durable, then remove.
            std::fs::copy(path, &dest).map_err(DaemonError::io(&dest))?;
            File::open(&dest)
                .and_then(|f| f.sync_all())
                .map_err(DaemonError::io(&dest))?;
            std::fs::remove_file(path).map_err(DaemonError::io(path))?;
        } else {
            return Err(DaemonError::io(path)(e));
        }
    }
    let mut inspection = None;
    if let Some(profile) = profile {
        let actor = Actor::new(format!("spool:{}", spool_name(s)), Role::Sender);
        let job = GuardJob {
            profile: &profile,
            path: &dest,
            file_name: &file_name,
            content_type: "application/octet-stream",
            id: &id.to_hex(),
            channel: &channel,
            approval: approval.as_ref(),
        };
        match guard_package(s, &job, actor) {
            Ok(Guarded::Go { report, .. }) => {
                inspection = crate::inspection::content::inspection_of(&report);
            }
            Ok(Guarded::Review {
                requirement,
                report,
            }) => {
                inspection = crate::inspection::content::inspection_of(&report);
                approval = Some(requirement);
            }
            Ok(Guarded::Refused { report, why }) => {
                let reason = serde_json::json!({
                    "file_name": file_name,
                    "refused_unix_ms": now_millis().0,
                    "summary": why,
                    "guard": report,
                });
                return set_aside_refused(
                    s,
                    path,
                    &dest,
                    &file_name,
                    &channel,
                    &reason,
                    "refused by the content guard",
                );
            }
            Err(e) => {
                // Not inspected, not sent: back into the spool for the next
                // collection, and the operator told.
                let _ = std::fs::rename(&dest, path);
                return Err(e);
            }
        }
    }
    let (size, digest) = digest_file(s.keys.link_crypto(), &dest)?;
    File::open(&dest)
        .and_then(|f| f.sync_all())
        .map_err(DaemonError::io(&dest))?;
    let meta = PackageMeta {
        id,
        channel: channel.clone(),
        size,
        digest,
        file_name: file_name.clone(),
        content_type: "application/octet-stream".into(),
        sender_identity: format!("spool:{}", spool_name(s)),
        created_unix_ms: now_millis().0,
        inspection,
    };
    let actor = Actor::new(meta.sender_identity.clone(), Role::Sender);
    // A spool file meets no closed window here (it waits in the spool), so
    // only approvals can hold it.
    let grant = Grant {
        approval,
        window_until_unix_ms: None,
        subject: s
            .policy
            .as_ref()
            .map(|_| ferry_policy::Subject::spool(&spool_name(s))),
    };
    let admitted = admit(s, &meta, &dest, grant, actor)?;
    let (state, seq) = match admitted {
        Admitted::Queued(seq) => {
            tracing::info!(package = %id, seq, file = %file_name, size, "taken from spool");
            ("queued", Some(seq))
        }
        Admitted::Held(_) => {
            tracing::info!(package = %id, file = %file_name, size, "taken from spool; held for approval");
            ("awaiting_approval", None)
        }
        Admitted::AwaitingWindow(_) => {
            tracing::info!(package = %id, file = %file_name, size, "taken from spool; held until its window opens");
            ("awaiting_window", None)
        }
    };
    if let Some(spool) = path.parent() {
        let receipt = serde_json::json!({
            "file_name": file_name,
            "package_id": id.to_hex(),
            "channel": meta.channel,
            "state": state,
            "seq": seq,
            "size": size,
            "digest_algorithm": match s.keys.link_crypto().suite() {
                ferry_protocol::suite::SuiteId::Intl => "sha256",
                ferry_protocol::suite::SuiteId::Gm => "sm3",
            },
            "digest": hex::encode(&meta.digest),
            "taken_unix_ms": meta.created_unix_ms,
        });
        crate::ingress::spool::record_done(spool, &dest, &file_name, &receipt);
    }
    Ok(())
}

/// Name of this side's spool as the policy knows it: the `[spool.NAME]`
/// whose directory is `paths.spool_dir`, else the link's name.
fn spool_name(s: &Shared) -> String {
    let dir = s.cfg.paths.spool_dir.as_deref();
    s.policy
        .as_ref()
        .and_then(|g| {
            g.current()
                .spool_collections()
                .iter()
                .find(|c| Some(c.dir.as_path()) == dir)
                .map(|c| c.name.clone())
        })
        .unwrap_or_else(|| s.cfg.link.name.clone())
}

enum SpoolVerdict {
    /// Queue it on this channel (held first when approvals are required),
    /// after the content guard under `profile`.
    Take {
        channel: String,
        approval: Option<ferry_policy::ApprovalRequirement>,
        profile: Option<String>,
    },
    /// Not now (window closed) or refused (moved aside): leave it.
    Leave,
}

/// The one file-name rule of ingest, spool and outbox
/// ([`crate::state::outbox::sanitize_file_name`]) for a spool file: a name the
/// egress side would not deliver (e.g. `x.ferry.json`) is set aside in
/// `SPOOL/.rejected/` with its reason, counted and audited, never sent.
/// True when refused.
fn refuse_spool_name(s: &Shared, path: &Path, file_name: &str) -> Result<bool, DaemonError> {
    let Err(e) = crate::state::outbox::sanitize_file_name(file_name) else {
        return Ok(false);
    };
    let name = spool_name(s);
    let channel = s
        .policy
        .as_ref()
        .and_then(|g| {
            g.current()
                .spool_collections()
                .iter()
                .find(|c| c.name == name)
                .map(|c| c.channel.clone())
        })
        .unwrap_or_else(|| s.cfg.link.name.clone());
    let reason = serde_json::json!({
        "file_name": file_name,
        "refused_unix_ms": now_millis().0,
        "summary": e.to_string(),
    });
    set_aside_refused(
        s,
        path,
        path,
        file_name,
        &channel,
        &reason,
        "refused: its name cannot be delivered",
    )?;
    crate::ingress::ingest::record_refusal(
        s,
        s.cfg
            .ingest
            .as_ref()
            .map_or(crate::config::DEFAULT_REFUSAL_ALARM_PER_MINUTE, |i| {
                i.refusal_alarm_per_minute
            }),
        crate::ingress::ingest::Refusal {
            reason: "file_name",
            status: None,
            peer: None,
            identity: None,
            actor: Some(Actor::new(format!("spool:{name}"), Role::Sender)),
            channel: Some(&channel),
            detail: e.to_string(),
            audited: false,
        },
    );
    Ok(true)
}

/// Asks the policy about a settled spool file. A refused file is moved to
/// `SPOOL/.rejected/` with a `.reason.txt` beside it, so nothing is lost and
/// the operator sees why.
fn spool_verdict(s: &Shared, path: &Path, file_name: &str) -> Result<SpoolVerdict, DaemonError> {
    let Some(gate) = &s.policy else {
        if s.stopped(&s.cfg.link.name).is_some() {
            return Ok(SpoolVerdict::Leave);
        }
        return Ok(SpoolVerdict::Take {
            channel: s.cfg.link.name.clone(),
            approval: None,
            profile: None,
        });
    };
    let name = spool_name(s);
    let policy = gate.current();
    let channel = policy
        .spool_collections()
        .iter()
        .find(|c| c.name == name)
        .map_or_else(|| s.cfg.link.name.clone(), |c| c.channel.clone());
    if s.stopped(&channel).is_some() {
        // Collected again once the channel is started.
        return Ok(SpoolVerdict::Leave);
    }
    let size = std::fs::metadata(path)
        .map_err(DaemonError::io(path))?
        .len();
    let d = gate.decide_and_charge(&ferry_policy::Request {
        identity: ferry_policy::Subject::spool(&name),
        channel: channel.clone(),
        file_name: file_name.to_owned(),
        content_type: "application/octet-stream".into(),
        size_bytes: size,
        at: time::OffsetDateTime::now_utc(),
    });
    s.audit.record(decision_record(
        &d,
        Actor::new(format!("spool:{name}"), Role::Sender),
        &channel,
        file_name,
        size,
    ))?;
    let refusal = match d.verdict {
        ferry_policy::Verdict::Hold => return Ok(SpoolVerdict::Leave),
        ferry_policy::Verdict::Allow => {
            return Ok(SpoolVerdict::Take {
                channel,
                approval: d.approval,
                profile: d.profile,
            })
        }
        ferry_policy::Verdict::Deny => d
            .reasons
            .iter()
            .map(|r| r.to_string())
            .collect::<Vec<_>>()
            .join("; "),
    };
    let reason = serde_json::json!({
        "file_name": file_name,
        "refused_unix_ms": now_millis().0,
        "rule_id": d.rule_id,
        "reasons": d.reasons,
        "summary": refusal,
        "policy_hash": d.policy_hash,
    });
    let why = format!("refused by policy: {refusal}");
    set_aside_refused(s, path, path, file_name, &channel, &reason, &why)?;
    Ok(SpoolVerdict::Leave)
}

/// A refused spool file (still at `original`, or already moved to
/// `current` in the queue): into `SPOOL/.rejected/` under a free name with
/// its reason beside it (the policy's reasons or the guard's report, no
/// values), counted, and logged with `why`.
fn set_aside_refused(
    s: &Shared,
    original: &Path,
    current: &Path,
    file_name: &str,
    channel: &str,
    reason: &serde_json::Value,
    why: &str,
) -> Result<(), DaemonError> {
    let spool = original.parent().unwrap_or(Path::new("."));
    let rejected = spool.join(".rejected");
    std::fs::create_dir_all(&rejected).map_err(DaemonError::io(&rejected))?;
    let dest = crate::ingress::spool::free_name(&rejected, file_name);
    let mut reason_path = dest.clone().into_os_string();
    reason_path.push(".reason.json");
    let reason_path = PathBuf::from(reason_path);
    std::fs::write(&reason_path, format!("{reason:#}\n")).map_err(DaemonError::io(&reason_path))?;
    if std::fs::rename(current, &dest).is_err() {
        // Another filesystem: copy, then drop the queued one.
        std::fs::copy(current, &dest).map_err(DaemonError::io(&dest))?;
        let _ = std::fs::remove_file(current);
    }
    tracing::warn!(file = %file_name, channel = %channel, "spool file {why}");
    protocol::count_rejected(&s.status, channel);
    Ok(())
}

/// A package received over the ingest API, streamed and fsync'd.
pub(crate) struct Upload {
    pub(crate) id: PackageId,
    pub(crate) channel: String,
    pub(crate) file_name: String,
    pub(crate) content_type: String,
    pub(crate) sender_identity: String,
    pub(crate) size: u64,
    pub(crate) digest: Vec<u8>,
    /// What the content guard did, for the manifest.
    pub(crate) inspection: Option<ferry_protocol::Inspection>,
}

/// The package description of a complete upload.
pub(crate) fn meta_of(u: Upload) -> PackageMeta {
    PackageMeta {
        id: u.id,
        channel: u.channel,
        size: u.size,
        digest: u.digest,
        file_name: u.file_name,
        content_type: u.content_type,
        sender_identity: u.sender_identity,
        created_unix_ms: now_millis().0,
        inspection: u.inspection,
    }
}

/// Makes everything written to `dir`'s file system durable (`syncfs(2)`):
/// one call for a whole batch of uploads and their renames.
pub(crate) fn sync_filesystem(dir: &Path) -> Result<(), DaemonError> {
    use std::os::fd::AsRawFd;
    let d = File::open(dir).map_err(DaemonError::io(dir))?;
    nix::unistd::syncfs(d.as_raw_fd()).map_err(|e| DaemonError::io(dir)(std::io::Error::from(e)))
}

/// Puts a durable, digested package into the send queue, or holds it (for
/// approval first, else for a closed window), and records it; counted as
/// accepted either way.
pub(crate) fn admit(
    s: &Shared,
    meta: &PackageMeta,
    path: &Path,
    grant: Grant,
    actor: Actor,
) -> Result<Admitted, DaemonError> {
    let admitted = match (grant.approval, grant.window_until_unix_ms) {
        (None, None) => Admitted::Queued(queue(s, meta, path)?),
        (None, Some(until)) => {
            crate::ingress::holds::window_holds::hold(s, meta, path, until, grant.subject)?;
            Admitted::AwaitingWindow(until)
        }
        (Some(req), window) => {
            let reasons = vec![format!(
                "policy: channel `{}` needs {} approval(s) under [approval.{}]",
                meta.channel, req.reviewers, req.name
            )];
            Admitted::Held(crate::ingress::holds::approvals::hold(
                s,
                meta,
                path,
                &req,
                reasons,
                window,
                grant.subject,
            )?)
        }
    };
    record_pushed(s, meta, &admitted, path, actor)?;
    count_accepted(s, meta);
    Ok(admitted)
}

/// Counts an accepted package, in the side's total and its channel's.
pub(crate) fn count_accepted(s: &Shared, meta: &PackageMeta) {
    protocol::update(&s.status, |st| st.taken += 1);
    protocol::count(&s.status, &meta.channel, |c| {
        c.accepted += 1;
        c.accepted_bytes += meta.size;
    });
}

/// The audit record of a policy decision (file names and sizes are
/// metadata; the content is never recorded).
pub(crate) fn decision_record(
    d: &ferry_policy::Decision,
    actor: Actor,
    channel: &str,
    file_name: &str,
    size: u64,
) -> AuditRecord {
    let outcome = match d.verdict {
        ferry_policy::Verdict::Allow if d.approval.is_none() => Outcome::Allowed,
        ferry_policy::Verdict::Hold => Outcome::Failure,
        _ => Outcome::Refused,
    };
    let mut r = AuditRecord::new(EventKind::PolicyDecided, actor, outcome)
        .channel(channel.to_owned())
        .policy_hash(d.policy_hash.clone())
        .detail("verdict", format!("{:?}", d.verdict).to_lowercase())
        .detail("file_name", file_name.to_owned())
        .detail("size", size.to_string());
    if let Some(rule) = &d.rule_id {
        r = r.rule(rule.clone());
    }
    if !d.reasons.is_empty() {
        r = r.reason(
            d.reasons
                .iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join("; "),
        );
    }
    if let (ferry_policy::Verdict::Allow, Some(a)) = (&d.verdict, &d.approval) {
        r = r.detail("approval", a.name.clone());
    }
    r
}

/// Records a queued package; if the record cannot be written the package
/// is taken out of the queue again, so nothing is sent that the audit log
/// does not show.
fn record_pushed(
    s: &Shared,
    meta: &PackageMeta,
    admitted: &Admitted,
    file: &Path,
    actor: Actor,
) -> Result<(), DaemonError> {
    if let Err(e) = s.audit.record(pushed_record(meta, admitted, actor)) {
        let _guard = s.lock.lock().map_err(|_| DaemonError::Poisoned)?;
        match admitted {
            Admitted::Queued(_) => {
                s.store.remove(meta.id.0)?;
            }
            Admitted::Held(_) => {
                s.store.hold_remove(meta.id.0)?;
                protocol::update(&s.status, |st| {
                    st.awaiting_approval = st.awaiting_approval.saturating_sub(1)
                });
            }
            Admitted::AwaitingWindow(_) => {
                s.store.hold_remove(meta.id.0)?;
                protocol::update(&s.status, |st| {
                    st.awaiting_window = st.awaiting_window.saturating_sub(1)
                });
            }
        }
        let _ = std::fs::remove_file(file);
        return Err(e);
    }
    Ok(())
}

/// The `package.pushed` record of an admitted package.
pub(crate) fn pushed_record(meta: &PackageMeta, admitted: &Admitted, actor: Actor) -> AuditRecord {
    let (key, value) = match admitted {
        Admitted::Queued(seq) => ("seq", seq.to_string()),
        Admitted::Held(expires) => ("held_until_unix_ms", expires.to_string()),
        Admitted::AwaitingWindow(until) => ("window_until_unix_ms", until.to_string()),
    };
    AuditRecord::new(EventKind::PackagePushed, actor, Outcome::Success)
        .package(meta.id.to_hex())
        .channel(meta.channel.clone())
        .detail(key, value)
        .detail("size", meta.size.to_string())
        .detail("digest", hex::encode(&meta.digest))
        .detail("file_name", meta.file_name.clone())
}

/// What the content guard decided, after a masked copy replaced the
/// package.
pub(crate) enum Guarded {
    /// Go on; `changed` is the masked package's size and digest.
    Go {
        /// The report.
        report: ferry_guard::Report,
        /// New size and digest when masked.
        changed: Option<(u64, Vec<u8>)>,
    },
    /// Hold for reviewers under this requirement.
    Review {
        /// The report.
        report: ferry_guard::Report,
        /// The channel's approvals.
        requirement: ferry_policy::ApprovalRequirement,
    },
    /// Never sent.
    Refused {
        /// The report.
        report: ferry_guard::Report,
        /// One line for the sender.
        why: String,
    },
}

/// One package for the guard.
pub(crate) struct GuardJob<'a> {
    pub(crate) profile: &'a str,
    pub(crate) path: &'a Path,
    pub(crate) file_name: &'a str,
    pub(crate) content_type: &'a str,
    pub(crate) id: &'a str,
    pub(crate) channel: &'a str,
    /// The channel's approvals, for a `review` verdict.
    pub(crate) approval: Option<&'a ferry_policy::ApprovalRequirement>,
}

/// Inspects a received package under its channel's profile, masks it in
/// place when the profile says so, and records the inspection before
/// anything else happens to the package.
pub(crate) fn guard_package(
    s: &Shared,
    job: &GuardJob<'_>,
    actor: Actor,
) -> Result<Guarded, DaemonError> {
    let guard = s
        .policy
        .as_ref()
        .and_then(|g| g.guard(job.profile))
        .ok_or_else(|| {
            DaemonError::Config(format!(
                "content profile `{}` is not loaded; reload the policy",
                job.profile
            ))
        })?;
    let report = crate::inspection::content::inspect_in_place(
        &guard,
        job.path,
        job.file_name,
        job.content_type,
        &s.queue_dir,
        job.id,
    )?;
    s.audit.record(crate::inspection::content::record(
        EventKind::GuardInspected,
        actor,
        job.id,
        job.channel,
        &report,
    ))?;
    tracing::info!(package = %job.id, profile = %job.profile, verdict = report.verdict.as_str(), findings = report.findings_total, "inspected");
    Ok(match report.verdict {
        ferry_guard::Verdict::Pass => Guarded::Go {
            report,
            changed: None,
        },
        ferry_guard::Verdict::Masked => {
            let changed = digest_file(s.keys.link_crypto(), job.path)?;
            Guarded::Go {
                report,
                changed: Some(changed),
            }
        }
        ferry_guard::Verdict::Review => match job.approval {
            Some(req) => Guarded::Review {
                report,
                requirement: req.clone(),
            },
            None => Guarded::Refused {
                why: format!(
                    "the content profile `{}` asks for review, but channel `{}` has no approvals to review it (fail closed); nothing was queued",
                    job.profile, job.channel
                ),
                report,
            },
        },
        ferry_guard::Verdict::Reject => Guarded::Refused {
            why: "refused by the content guard; nothing was queued".into(),
            report,
        },
    })
}

/// A fresh random package id.
pub(crate) fn new_package_id() -> Result<PackageId, DaemonError> {
    Ok(PackageId(rand_id()?))
}

/// Queues a released package (approved, its channel started again, its
/// window open; see [`crate::ingress::holds::approvals`]). `held_meta` is its held
/// description: a package that already had a sequence number keeps it as
/// its first (`first_seq`), so the egress side closes the gap the skipped
/// number left when the package arrives.
pub(crate) fn queue_package(
    s: &Shared,
    meta: &PackageMeta,
    path: &Path,
    held_meta: &serde_json::Value,
) -> Result<u64, DaemonError> {
    let mut record = queued_record(meta, path);
    if let Some(first) = first_seq_of(held_meta) {
        if let Ok(serde_json::Value::Object(mut m)) = serde_json::from_str(&record.meta_json) {
            m.insert(FIRST_SEQ_KEY.into(), first.into());
            record.meta_json = serde_json::Value::Object(m).to_string();
        }
    }
    enqueue_one(s, meta, record)
}

fn queue(s: &Shared, meta: &PackageMeta, path: &Path) -> Result<u64, DaemonError> {
    enqueue_one(s, meta, queued_record(meta, path))
}

fn enqueue_one(s: &Shared, meta: &PackageMeta, record: QueuedPackage) -> Result<u64, DaemonError> {
    let _guard = s.lock.lock().map_err(|_| DaemonError::Poisoned)?;
    let mut one = [(meta.id.0, record)];
    s.store.enqueue_fresh(&mut one)?;
    Ok(one[0].1.seq)
}

/// The queue record of a new package (its `seq` is set when queued).
pub(crate) fn queued_record(meta: &PackageMeta, path: &Path) -> QueuedPackage {
    QueuedPackage {
        seq: 0,
        path: path.to_string_lossy().into_owned(),
        meta_json: meta_to_json(meta).to_string(),
        state: QueueState::Queued,
        bytes: meta.size,
        enqueued_unix_ms: now_millis().0,
    }
}

fn rand_id() -> Result<[u8; 16], DaemonError> {
    let mut id = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut id)
        .map_err(|_| DaemonError::Config("operating system random generator failed".into()))?;
    Ok(id)
}

/// Size and digest (the suite's: SHA-256 or SM3) of a file, streamed.
pub fn digest_file(
    link: &dyn ferry_protocol::suite::LinkCrypto,
    path: &Path,
) -> Result<(u64, Vec<u8>), DaemonError> {
    let mut f = File::open(path).map_err(DaemonError::io(path))?;
    let mut d = link.new_digest();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(DaemonError::io(path))?;
        if n == 0 {
            break;
        }
        d.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, d.finish()))
}

/// The package description as stored in the queue.
pub fn meta_to_json(m: &PackageMeta) -> serde_json::Value {
    serde_json::json!({
        "id": m.id.to_hex(),
        "channel": m.channel,
        "size": m.size,
        "digest": hex::encode(&m.digest),
        "file_name": m.file_name,
        "content_type": m.content_type,
        "sender_identity": m.sender_identity,
        "created_unix_ms": m.created_unix_ms,
        "inspection": m.inspection.as_ref().map(|i| serde_json::json!({
            "profile": i.profile,
            "verdict": i.verdict.as_str(),
            "sha256_before": hex::encode(&i.sha256_before),
            "sha256_after": hex::encode(&i.sha256_after),
        })),
    })
}

/// Reads the `inspection` of [`meta_to_json`]: absent or null is none;
/// anything else must be well formed.
fn inspection_from_json(
    v: Option<&serde_json::Value>,
) -> Option<Option<ferry_protocol::Inspection>> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Some(None);
    };
    let verdict = match v.get("verdict")?.as_str()? {
        "pass" => ferry_protocol::InspectionVerdict::Pass,
        "masked" => ferry_protocol::InspectionVerdict::Masked,
        "reviewed" => ferry_protocol::InspectionVerdict::Reviewed,
        _ => return None,
    };
    Some(Some(ferry_protocol::Inspection {
        profile: v.get("profile")?.as_str()?.to_string(),
        verdict,
        sha256_before: hex::decode(v.get("sha256_before")?.as_str()?).ok()?,
        sha256_after: hex::decode(v.get("sha256_after")?.as_str()?).ok()?,
    }))
}

/// Reads [`meta_to_json`] back.
pub fn meta_from_json(v: &serde_json::Value) -> Option<PackageMeta> {
    Some(PackageMeta {
        id: PackageId::from_hex(v.get("id")?.as_str()?)?,
        channel: v.get("channel")?.as_str()?.to_string(),
        size: v.get("size")?.as_u64()?,
        digest: hex::decode(v.get("digest")?.as_str()?).ok()?,
        file_name: v.get("file_name")?.as_str()?.to_string(),
        content_type: v.get("content_type")?.as_str()?.to_string(),
        sender_identity: v.get("sender_identity")?.as_str()?.to_string(),
        created_unix_ms: v.get("created_unix_ms")?.as_u64()?,
        inspection: inspection_from_json(v.get("inspection"))?,
    })
}

struct Open {
    id: PackageId,
    file: File,
    /// For the per-channel counters once the send completes.
    channel: String,
    size: u64,
}

fn send_loop(s: &Shared, sender: &mut Sender, udp: &mut BatchSender) -> Result<(), DaemonError> {
    let max_len = sender.max_datagram_len();
    let mut batch = DatagramBatch::new(BATCH, max_len);
    // Four batches of credit: a sleep that overshoots (timer slack is tens
    // of microseconds) is not lost in full, and 4 × 64 datagrams are far
    // below any receive buffer.
    let burst = (4 * BATCH * max_len) as u64;
    let mut pacer = Pacer::new(s.cfg.link.rate_bytes_per_s, burst);
    let mut open: HashMap<u64, Open> = HashMap::new();
    let mut last_seq: Option<u64> = None;
    let mut payload = Vec::new();
    let mut saved_epoch = sender.epochs().oldest().map(|(e, _)| e);
    let mut last_status = Instant::now();
    let mut last_prune = Instant::now();
    let mut last_feed = Instant::now();
    let mut heal = HealBudget::new(s.cfg.link.heal_resend_max_bytes_per_s, Instant::now());
    while !s.shutdown.load(Ordering::Relaxed) {
        let now = now_millis();
        // The queue is read at most every FEED_INTERVAL while sending (a
        // redb read per batch would cost more than the batch), at once when
        // idle.
        if sender.queued() < SENDER_WINDOW
            && (sender.queued() == 0 || last_feed.elapsed() >= FEED_INTERVAL)
        {
            last_feed = Instant::now();
            feed(s, sender, &mut open, &mut last_seq, now)?;
        }
        let before = sender.queued_seqs();
        batch.clear();
        let mut idle = false;
        while batch.len() < BATCH && !idle {
            let mut need = None;
            let mut failure = None;
            batch.push_with(|buf| match sender.poll_transmit(now, buf) {
                Ok(Transmit::Datagram(n)) => n,
                Ok(Transmit::NeedPayload { seq, offset, len }) => {
                    need = Some((seq, offset, len));
                    0
                }
                Ok(Transmit::Idle) => {
                    idle = true;
                    0
                }
                Err(e) => {
                    failure = Some(e);
                    0
                }
            });
            if let Some(e) = failure {
                return Err(e.into());
            }
            if let Some((seq, offset, len)) = need {
                let Some(o) = open.get(&seq) else {
                    return Err(DaemonError::Config(format!(
                        "internal: payload for unknown seq {seq}"
                    )));
                };
                payload.resize(len, 0);
                o.file
                    .read_exact_at(&mut payload, offset)
                    .map_err(|e| DaemonError::Package {
                        id: o.id.to_hex(),
                        what: format!("queue file unreadable: {e}"),
                    })?;
                sender.provide_payload(seq, offset, &payload)?;
            }
        }
        if !batch.is_empty() {
            let bytes: u64 = batch.iter().map(|d| d.len() as u64).sum();
            let wait = pacer.delay(Instant::now(), bytes);
            if !wait.is_zero() {
                std::thread::sleep(wait);
            }
            let report = udp.send(&batch);
            sender.record_send_errors(report.transient_errors);
            protocol::update(&s.status, |st| {
                st.datagrams_sent += report.sent as u64;
                st.send_dropped += report.dropped as u64;
                st.send_errors += report.transient_errors;
            });
        }
        let after = sender.queued_seqs();
        // Every package whose sends completed in this round: one
        // transaction and one audit flush for all of them.
        let mut sent = Vec::new();
        let mut records = Vec::new();
        for seq in before.iter().filter(|q| !after.contains(q)) {
            if let Some(o) = open.remove(seq) {
                sent.push((
                    o.id.0,
                    QueueState::Sent {
                        times: u32::from(s.cfg.link.redundancy),
                        last_unix_ms: now_millis().0,
                    },
                ));
                protocol::update(&s.status, |st| st.sent += 1);
                protocol::count(&s.status, &o.channel, |c| {
                    c.sent += 1;
                    c.sent_bytes += o.size;
                });
                tracing::info!(package = %o.id, seq, "sent");
                records.push(
                    AuditRecord::new(EventKind::PackageSent, Actor::system(), Outcome::Success)
                        .package(o.id.to_hex())
                        .detail("seq", seq.to_string())
                        .detail("sends", s.cfg.link.redundancy.to_string()),
                );
            }
        }
        s.store.set_states(&sent)?;
        s.audit.note_all(records);
        let oldest = sender.epochs().oldest().map(|(e, sec)| (e, sec.clone()));
        if let Some((e, secret)) = oldest {
            if saved_epoch != Some(e) {
                s.keys.save_epoch(e, &secret)?;
                saved_epoch = Some(e);
            }
        }
        if last_status.elapsed() >= Duration::from_secs(1) {
            last_status = Instant::now();
            publish(s, sender);
            if s.reload.swap(false, Ordering::Relaxed) {
                reload_policy(s, Actor::new("SIGHUP", Role::SystemAdmin));
            }
            s.audit.tick();
            heal_resend(s, &mut heal)?;
            crate::ingress::holds::approvals::expire(s);
            crate::ingress::holds::window_holds::release_due(s);
            if let Ok(mut w) = s.expiry.lock() {
                w.poll(&s.status);
            }
        }
        if last_prune.elapsed() >= Duration::from_secs(10) {
            last_prune = Instant::now();
            prune(s)?;
        }
        if idle && batch.is_empty() {
            let until = sender.poll_timeout();
            let wait = until.since(now_millis()).clamp(1, 20);
            std::thread::sleep(Duration::from_millis(wait));
        }
    }
    publish(s, sender);
    Ok(())
}

fn publish(s: &Shared, sender: &Sender) {
    let queued = s.store.count_queued().unwrap_or(0);
    let epoch = sender.epochs().current();
    let ss = sender.stats();
    protocol::update(&s.status, |st| {
        st.sender = Some(serde_json::json!({
            "packages_sent": ss.packages_sent,
            "sends_completed": ss.sends_completed,
            "datagrams": ss.datagrams,
            "repair_datagrams": ss.repair_datagrams,
            "heartbeats": ss.heartbeats,
            "payload_bytes": ss.payload_bytes,
            "expired_sends": ss.expired_sends,
            "send_errors": ss.send_errors,
        }));
        st.updated_unix_ms = now_millis().0;
        st.queued = queued + sender.queued() as u64;
        st.epoch = epoch;
    });
    let snap = protocol::snapshot(&s.status);
    if let Err(e) = protocol::write_status_file(&s.cfg.paths.state_dir, &snap) {
        tracing::warn!(error = %e, "could not write status.json");
    }
}

/// Hands queued packages to the protocol sender in sequence order.
fn feed(
    s: &Shared,
    sender: &mut Sender,
    open: &mut HashMap<u64, Open>,
    last_seq: &mut Option<u64>,
    now: ferry_protocol::Millis,
) -> Result<(), DaemonError> {
    let room = SENDER_WINDOW.saturating_sub(sender.queued());
    let first = last_seq.map_or(0, |l| l.saturating_add(1));
    // Recorded together once the round is handed over (one transaction).
    let mut sending = Vec::new();
    for (id, q) in s.store.next_queued(first, room)? {
        let json: Option<serde_json::Value> = serde_json::from_str(&q.meta_json).ok();
        let first_seq = json.as_ref().and_then(first_seq_of);
        let meta = json
            .as_ref()
            .and_then(meta_from_json)
            .ok_or_else(|| DaemonError::Package {
                id: hex::encode(id),
                what: "queue record unreadable".into(),
            })?;
        let path = PathBuf::from(&q.path);
        if let Some(stop) = s.stopped(&meta.channel) {
            // Out of the sequence order until the channel starts again, so
            // the egress side sees no gap for it.
            // Its number is skipped (the egress side sees a gap): the
            // package keeps it as its first, to close that gap later.
            crate::ingress::holds::approvals::hold_stopped(s, id, &with_first_seq(&q), &stop)?;
            *last_seq = Some(q.seq);
            continue;
        }
        if let Some(until) = crate::ingress::holds::window_holds::closed_until(s, &meta.channel) {
            // "Held queued until the window opens": out of the sequence
            // order like a stopped channel's, queued again (new sequence
            // number) when the window opens. A package already handed to
            // the sender finishes its send.
            crate::ingress::holds::window_holds::hold_queued(
                s,
                id,
                &with_first_seq(&q),
                &meta.channel,
                until,
            )?;
            *last_seq = Some(q.seq);
            continue;
        }
        let file = File::open(&path).map_err(DaemonError::io(&path))?;
        let (channel, size) = (meta.channel.clone(), meta.size);
        sender.enqueue_resend(now, q.seq, meta, first_seq)?;
        sending.push((id, QueueState::Sending));
        open.insert(
            q.seq,
            Open {
                id: PackageId(id),
                file,
                channel,
                size,
            },
        );
        *last_seq = Some(q.seq);
    }
    s.store.set_states(&sending)?;
    Ok(())
}

/// Byte budget of the self-healing re-sends: refilled at the configured
/// rate up to one second's worth; a package may take it below zero (so a
/// package larger than a second's budget is still healed), after which no
/// re-send starts until it has refilled.
struct HealBudget {
    rate: u64,
    tokens: f64,
    at: Instant,
}

impl HealBudget {
    fn new(rate: u64, now: Instant) -> HealBudget {
        HealBudget {
            rate,
            tokens: rate as f64,
            at: now,
        }
    }

    fn take(&mut self, now: Instant, bytes: u64) -> bool {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + dt * self.rate as f64).min(self.rate as f64);
        if self.rate == 0 || self.tokens < 0.0 {
            return false;
        }
        self.tokens -= bytes as f64;
        true
    }
}

/// The link heals by itself after an egress crash, without a back channel:
/// every package is sent once more, under a new sequence number (its
/// manifest names the first, so the egress side closes that gap), once
/// `heal_resend_after_ms` has passed since its sends ended — longer than
/// an egress restart takes. The egress ledger drops the copy that was
/// already delivered. Bounded by `heal_resend_max_bytes_per_s` and by
/// [`HEAL_WINDOW_MS`]; what is skipped is counted (the egress side still
/// lists its gap for an operator resend).
fn heal_resend(s: &Shared, budget: &mut HealBudget) -> Result<(), DaemonError> {
    let l = &s.cfg.link;
    if l.heal_resend_max_bytes_per_s == 0 {
        return Ok(());
    }
    let now = now_millis().0;
    let Some(due_before) = now.checked_sub(l.heal_resend_after_ms) else {
        return Ok(());
    };
    let oldest = due_before.saturating_sub(HEAL_WINDOW_MS);
    let mut due: Vec<([u8; 16], QueuedPackage)> = s
        .store
        .list(Some(QueueState::Sent {
            times: 0,
            last_unix_ms: 0,
        }))?
        .into_iter()
        .filter(|(_, q)| match q.state {
            QueueState::Sent { last_unix_ms, .. } => last_unix_ms <= due_before,
            _ => false,
        })
        .filter(|(_, q)| !healed(q))
        .collect();
    if due.is_empty() {
        return Ok(());
    }
    due.sort_by_key(|(_, q)| q.seq);
    let (mut resent, mut skipped) = (0u64, 0u64);
    for (id, q) in due {
        let last = match q.state {
            QueueState::Sent { last_unix_ms, .. } => last_unix_ms,
            _ => continue,
        };
        // Marked either way, so each package is considered once.
        let q = mark_healed(&q);
        let fits =
            last >= oldest && Path::new(&q.path).exists() && budget.take(Instant::now(), q.bytes);
        let _guard = s.lock.lock().map_err(|_| DaemonError::Poisoned)?;
        if fits {
            let old_seq = q.seq;
            let seq = requeue(&s.store, id, q)?;
            tracing::debug!(package = %hex::encode(id), old_seq, seq, "self-healing re-send queued");
            resent += 1;
        } else {
            s.store.enqueue(id, &q)?;
            skipped += 1;
        }
    }
    if skipped > 0 {
        tracing::warn!(
            skipped,
            "self-healing re-send skipped packages (over heal_resend_max_bytes_per_s, or due too long ago); an egress crash around their sends needs an operator resend (see the egress side's gaps)"
        );
    }
    protocol::update(&s.status, |st| {
        st.heal_resent += resent;
        st.heal_skipped += skipped;
    });
    Ok(())
}

fn healed(q: &QueuedPackage) -> bool {
    serde_json::from_str::<serde_json::Value>(&q.meta_json)
        .ok()
        .is_some_and(|v| v.get(HEALED_KEY).is_some())
}

fn mark_healed(q: &QueuedPackage) -> QueuedPackage {
    let mut q = q.clone();
    if let Ok(serde_json::Value::Object(mut m)) = serde_json::from_str(&q.meta_json) {
        m.insert(HEALED_KEY.into(), true.into());
        q.meta_json = serde_json::Value::Object(m).to_string();
    }
    q
}

/// Deletes retained copies beyond the configured age and byte bounds,
/// oldest first.
fn prune(s: &Shared) -> Result<(), DaemonError> {
    let mut sent: Vec<([u8; 16], QueuedPackage)> = s
        .store
        .list(None)?
        .into_iter()
        .filter(|(_, q)| matches!(q.state, QueueState::Sent { .. }))
        .collect();
    sent.sort_by_key(|(_, q)| q.enqueued_unix_ms);
    let now = now_millis().0;
    let max_age_ms = s.cfg.retention.max_age_s.saturating_mul(1000);
    let mut total: u64 = sent.iter().map(|(_, q)| q.bytes).sum();
    let mut kept = 0u64;
    for (id, q) in &sent {
        let old = now.saturating_sub(q.enqueued_unix_ms) > max_age_ms;
        if old || total > s.cfg.retention.max_bytes {
            let _ = std::fs::remove_file(&q.path);
            s.store.remove(*id)?;
            total -= q.bytes;
        } else {
            kept += 1;
        }
    }
    protocol::update(&s.status, |st| {
        st.retained = kept;
        st.retained_bytes = total;
    });
    Ok(())
}

fn handle_request(s: &Shared, actor: Actor, caller: Caller, req: Request) -> serde_json::Value {
    match req {
        Request::Status => serde_json::to_value(protocol::snapshot(&s.status))
            .unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() })),
        Request::Resend {
            packages,
            seq_range,
        } => {
            let v = match resend(s, &packages, seq_range) {
                Ok(v) => v,
                Err(e) => serde_json::json!({ "error": e.to_string() }),
            };
            let outcome = if v.get("error").is_some() {
                Outcome::Failure
            } else {
                Outcome::Success
            };
            s.audit.note(
                AuditRecord::new(EventKind::AdminAction, actor, outcome)
                    .reason("resend")
                    .detail("packages", packages.join(","))
                    .detail(
                        "seq_range",
                        seq_range.map_or(String::new(), |(a, b)| format!("{a}..{b}")),
                    ),
            );
            v
        }
        Request::ReloadPolicy => reload_policy(s, actor),
        Request::AuditNote { record } => crate::admin::gate::audit_note(&s.audit, actor, record),
        Request::ApprovalsList => crate::ingress::holds::approvals::list(s),
        Request::ApprovalsShow { package } => crate::ingress::holds::approvals::show(s, &package),
        Request::Approve { package, reason } => {
            crate::ingress::holds::approvals::approve(s, actor, caller, &package, &reason)
        }
        Request::Reject { package, reason } => {
            crate::ingress::holds::approvals::reject(s, actor, &package, &reason)
        }
        Request::ChannelStop { channel, reason } => stop_channel(s, &actor, &channel, &reason),
        Request::ChannelStart { channel } => start_channel(s, &channel),
        Request::ForwardRetry { .. } => serde_json::json!({
            "error": "downstream forwarding happens on the egress side: ask the egress ferryd"
        }),
        Request::GapAck { .. } => serde_json::json!({
            "error": "gaps are kept on the egress side: ask the egress ferryd"
        }),
    }
}

/// Shows the stopped channels in the status.
fn publish_stopped(
    status: &SharedStatus,
    m: &BTreeMap<String, crate::state::store::StoppedChannel>,
) {
    let shown = m
        .iter()
        .map(|(c, st)| {
            (
                c.clone(),
                format!(
                    "stopped by {} at {} ms: {}",
                    st.by, st.since_unix_ms, st.reason
                ),
            )
        })
        .collect();
    protocol::update(status, |st| st.stopped_channels = shown);
}

/// Whether `channel` is one this side carries (by the policy, or the
/// link's own name without one).
fn known_channel(s: &Shared, channel: &str) -> bool {
    match &s.policy {
        None => channel == s.cfg.link.name,
        Some(g) => g
            .current()
            .channel(channel)
            .is_some_and(|c| c.link == s.cfg.link.name),
    }
}

fn stop_channel(s: &Shared, actor: &Actor, channel: &str, reason: &str) -> serde_json::Value {
    if !known_channel(s, channel) {
        return serde_json::json!({ "error": format!("this side carries no channel `{channel}`") });
    }
    if reason.trim().is_empty() {
        return serde_json::json!({ "error": "say why: --reason is required" });
    }
    let mut m = match s.stopped.write() {
        Ok(m) => m,
        Err(p) => p.into_inner(),
    };
    m.insert(
        channel.to_owned(),
        crate::state::store::StoppedChannel {
            by: actor.id.clone(),
            reason: reason.to_owned(),
            since_unix_ms: now_millis().0,
        },
    );
    if let Err(e) = s.store.set_stopped_channels(&m) {
        m.remove(channel);
        return serde_json::json!({ "error": format!("not stopped: {e}") });
    }
    publish_stopped(&s.status, &m);
    tracing::warn!(channel, by = %actor.id, reason, "channel stopped");
    serde_json::json!({ "channel": channel, "state": "stopped" })
}

fn start_channel(s: &Shared, channel: &str) -> serde_json::Value {
    {
        let mut m = match s.stopped.write() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        let Some(old) = m.remove(channel) else {
            return serde_json::json!({ "error": format!("channel `{channel}` is not stopped") });
        };
        if let Err(e) = s.store.set_stopped_channels(&m) {
            m.insert(channel.to_owned(), old);
            return serde_json::json!({ "error": format!("not started: {e}") });
        }
        publish_stopped(&s.status, &m);
    }
    match crate::ingress::holds::approvals::release_stopped(s, channel) {
        Ok(n) => {
            tracing::info!(channel, released = n, "channel started");
            serde_json::json!({ "channel": channel, "state": "started", "released": n })
        }
        Err(e) => {
            serde_json::json!({ "error": format!("started, but held packages were not all released: {e}") })
        }
    }
}

/// Reloads the policy; the old one stays in force when the new one is
/// refused. Both outcomes are logged with the policy hash and shown in
/// status.
fn reload_policy(s: &Shared, actor: Actor) -> serde_json::Value {
    let Some(gate) = &s.policy else {
        return serde_json::json!({ "error": "no [policy] configured on this side" });
    };
    let old = gate.current().hash().to_owned();
    match gate.reload() {
        Ok(hash) => {
            tracing::info!(old = %old, new = %hash, "policy reloaded");
            let msg = format!("reloaded: {hash} replaces {old}");
            s.audit.note(
                AuditRecord::new(EventKind::PolicyReloaded, actor, Outcome::Success)
                    .policy_hash(hash.clone())
                    .detail("previous", old.clone()),
            );
            protocol::update(&s.status, |st| {
                st.policy_hash = Some(hash.clone());
                st.policy_reload = Some(msg);
            });
            serde_json::json!({ "reloaded": true, "policy_hash": hash, "previous": old })
        }
        Err(why) => {
            tracing::error!(kept = %old, "policy reload refused, the previous policy stays in force: {why}");
            s.audit.note(
                AuditRecord::new(EventKind::PolicyReloaded, actor, Outcome::Refused)
                    .policy_hash(old.clone())
                    .reason(why.clone()),
            );
            protocol::update(&s.status, |st| {
                st.policy_reload = Some(format!("refused (kept {old}): {why}"));
            });
            serde_json::json!({ "reloaded": false, "policy_hash": old, "error": why })
        }
    }
}

/// Re-queues retained packages under new sequence numbers. The package id
/// stays, so the egress side's ledger delivers each id once.
fn resend(
    s: &Shared,
    packages: &[String],
    seq_range: Option<(u64, u64)>,
) -> Result<serde_json::Value, DaemonError> {
    let all = s.store.list(None)?;
    let mut picked = Vec::new();
    let mut unknown = Vec::new();
    for p in packages {
        match PackageId::from_hex(p) {
            Some(id) if all.iter().any(|(k, _)| *k == id.0) => picked.push(id.0),
            _ => unknown.push(p.clone()),
        }
    }
    if let Some((a, b)) = seq_range {
        for (id, q) in &all {
            if (a..=b).contains(&q.seq) && !picked.contains(id) {
                picked.push(*id);
            }
        }
    }
    let mut requeued = Vec::new();
    let mut busy = Vec::new();
    for id in picked {
        let Some(q) = s.store.get(id)? else { continue };
        if !matches!(q.state, QueueState::Sent { .. }) {
            // Queued or being sent right now: it is on its way already, and
            // re-queuing it here would be overwritten when that send ends.
            busy.push(hex::encode(id));
            continue;
        }
        if !Path::new(&q.path).exists() {
            unknown.push(hex::encode(id));
            continue;
        }
        let _guard = s.lock.lock().map_err(|_| DaemonError::Poisoned)?;
        let seq = requeue(&s.store, id, q)?;
        requeued.push(serde_json::json!({ "package": hex::encode(id), "new_seq": seq }));
    }
    protocol::update(&s.status, |st| st.resent += requeued.len() as u64);
    tracing::info!(count = requeued.len(), "operator resend queued");
    Ok(serde_json::json!({ "requeued": requeued, "not_retained": unknown, "already_queued": busy }))
}
