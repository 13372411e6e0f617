//! Spool intake: takes complete files from the spool directories, checks
//! them against the policy, and hands them to admission.
//!
//! A file renamed into the spool is complete by the spool's convention
//! (write `.x`, then rename it to `x`) and is taken at the next scan, which
//! the rename itself wakes (inotify `IN_MOVED_TO`). A file written in place
//! is taken once it has settled: size and mtime unchanged for
//! [`SPOOL_SETTLE_MS`]. Without inotify (a watch limit reached) every file
//! settles.

/// A spool file written in place is taken once its size and mtime stayed
/// the same this long.
pub(crate) const SPOOL_SETTLE_MS: u64 = 500;
/// Longest wait between two scans of the spool.
const SCAN_INTERVAL: Duration = Duration::from_millis(100);

use crate::admin::protocol::{self};
use crate::ingress::admission::{
    admit, decision_record, digest_file, guard_package, rand_id, GuardJob, Guarded,
};
use crate::ingress::shared::{Admitted, Grant, Shared};
use crate::ops::activity::PACKAGE_TARGET;
use crate::ops::audit_trail::{Actor, Role};
use crate::{now_millis, DaemonError};
use ferry_protocol::{PackageId, PackageMeta};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs::File;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

/// Why a spool file was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Complete {
    /// It was renamed into the spool (the writer said it is complete).
    Renamed,
    /// It was written in place and stopped changing.
    Settled,
}

impl Complete {
    fn name(self) -> &'static str {
        match self {
            Complete::Renamed => "rename",
            Complete::Settled => "settle",
        }
    }
}

/// A spool file's inode from the moment it was moved out of the spool.
struct Held {
    file: File,
    len: u64,
    modified: Option<SystemTime>,
}

impl Held {
    fn open(path: &Path) -> Result<Held, DaemonError> {
        let file = File::open(path).map_err(DaemonError::io(path))?;
        let m = file.metadata().map_err(DaemonError::io(path))?;
        Ok(Held {
            len: m.len(),
            modified: m.modified().ok(),
            file,
        })
    }

    /// Whether the file differs from what the policy decided on (`decided`
    /// bytes) or changed since it was moved out of the spool. An
    /// unreadable file counts as changed.
    fn changed(&self, decided: u64) -> bool {
        match self.file.metadata() {
            Ok(m) => {
                m.len() != self.len || m.modified().ok() != self.modified || self.len != decided
            }
            Err(_) => true,
        }
    }

    /// Returns the file to the spool as `spool_path`: the queued name itself
    /// when it is still this inode, otherwise (the guard put a rewritten
    /// copy there) this inode's bytes, copied under a free name, and the
    /// copy in the queue removed. Nothing of the writer's is lost.
    fn put_back(&self, queued: &Path, spool_path: &Path) -> Result<PathBuf, DaemonError> {
        use std::os::unix::fs::MetadataExt;
        let same = match (std::fs::metadata(queued), self.file.metadata()) {
            (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
            _ => false,
        };
        let dir = spool_path.parent().unwrap_or(Path::new("."));
        let name = spool_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "unnamed".into());
        let back = crate::ingress::spool::free_name(dir, &name);
        if same {
            std::fs::rename(queued, &back).map_err(DaemonError::io(&back))?;
            return Ok(back);
        }
        let mut from = &self.file;
        std::io::Seek::rewind(&mut from).map_err(DaemonError::io(queued))?;
        // Copied under a dot name (never scanned), then renamed into place
        // like any complete spool file.
        let tmp = dir.join(format!(".{name}.ferry-back"));
        let mut to = File::create(&tmp).map_err(DaemonError::io(&tmp))?;
        std::io::copy(&mut from, &mut to).map_err(DaemonError::io(&tmp))?;
        to.sync_all().map_err(DaemonError::io(&tmp))?;
        std::fs::rename(&tmp, &back).map_err(DaemonError::io(&back))?;
        std::fs::remove_file(queued).map_err(DaemonError::io(queued))?;
        Ok(back)
    }
}

/// Names renamed into the spool since the last scan.
struct Renames {
    inotify: Option<Inotify>,
    names: HashSet<OsString>,
    /// Names ferryd itself moved back into the spool: their rename event
    /// is not a writer's.
    put_back: HashSet<OsString>,
}

impl Renames {
    fn watch(spool: &Path) -> Renames {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .and_then(|i| i.add_watch(spool, AddWatchFlags::IN_MOVED_TO).map(|_| i));
        let inotify = match inotify {
            Ok(i) => Some(i),
            Err(e) => {
                // Slower, nothing lost: renamed files settle like others.
                tracing::warn!(spool = %spool.display(), error = %e, "cannot watch the spool for renames (raise fs.inotify.max_user_instances or max_user_watches); every file waits to settle");
                None
            }
        };
        Renames {
            inotify,
            names: HashSet::new(),
            put_back: HashSet::new(),
        }
    }

    /// Waits up to `timeout` for a rename into the spool and collects the
    /// names renamed since the last call.
    fn wait(&mut self, timeout: Duration) {
        let Some(inotify) = &self.inotify else {
            std::thread::sleep(timeout);
            return;
        };
        let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(inotify.as_fd(), PollFlags::POLLIN)];
        if poll(&mut fds, PollTimeout::from(ms)).is_err() {
            // EINTR: the caller scans and comes back.
            return;
        }
        // An overflowed queue loses names: those files settle instead.
        while let Ok(events) = inotify.read_events() {
            if events.is_empty() {
                break;
            }
            for name in events.into_iter().filter_map(|e| e.name) {
                if !self.put_back.remove(&name) {
                    self.names.insert(name);
                }
            }
        }
    }
}

pub(crate) fn intake_loop(s: &Shared, spool: &Path) {
    let mut seen: HashMap<PathBuf, (u64, SystemTime, Instant)> = HashMap::new();
    let mut renames = Renames::watch(spool);
    let mut clock = crate::ingress::spool::SpoolClock::default();
    while !s.shutdown.load(Ordering::Relaxed) {
        // The spool's schedule, from the policy in force (a reload may
        // change it).
        let policy = s.policy.as_ref().map(|g| g.current());
        let name = spool_name(s);
        let coll = policy
            .as_ref()
            .and_then(|p| p.spool_collections().iter().find(|c| c.name == name));
        // A package was held because the malware engine could not scan
        // it: leave the spool alone until the back-off has passed, rather
        // than asking a dead engine (and auditing it) several times a
        // second.
        let hold = s.scan_hold_until_ms.load(Ordering::Relaxed);
        if now_millis().0 < hold {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        }
        if !clock.collecting(coll, crate::now_utc(), Instant::now()) {
            // Between collections nothing is watched: a file must settle
            // within the next collection's window.
            seen.clear();
            renames.wait(Duration::ZERO);
            renames.names.clear();
            std::thread::sleep(Duration::from_millis(500));
            continue;
        }
        if let Err(e) = intake_once(s, spool, &mut seen, &mut renames) {
            tracing::error!(error = %e, "spool intake failed; retrying");
            protocol::update(&s.status, |st| {
                let msg = format!("spool intake: {e}");
                if !st.alarms.contains(&msg) {
                    st.alarms.push(msg);
                }
            });
        }
        renames.wait(SCAN_INTERVAL);
    }
}

fn intake_once(
    s: &Shared,
    spool: &Path,
    seen: &mut HashMap<PathBuf, (u64, SystemTime, Instant)>,
    renames: &mut Renames,
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
        if renames.names.remove(&name) {
            seen.remove(&path);
            take(s, &path, Complete::Renamed, &mut renames.put_back)?;
            continue;
        }
        present.push(path.clone());
        let sig = (
            meta.len(),
            meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        );
        match seen.get(&path) {
            Some((len, mtime, since)) if (*len, *mtime) == sig => {
                if now.duration_since(*since) >= Duration::from_millis(SPOOL_SETTLE_MS) {
                    seen.remove(&path);
                    take(s, &path, Complete::Settled, &mut renames.put_back)?;
                }
            }
            _ => {
                seen.insert(path, (sig.0, sig.1, now));
            }
        }
    }
    seen.retain(|p, _| present.contains(p));
    // A name renamed in and gone again (renamed on, or a dot file) is
    // forgotten.
    renames.names.clear();
    Ok(())
}

/// Moves a settled spool file into the queue and records it durably.
/// `put_back` gets the name of a file that changed while it was taken and
/// went back into the spool (its own rename there must not count as a
/// writer's: it settles).
pub(crate) fn take(
    s: &Shared,
    path: &Path,
    complete: Complete,
    put_back: &mut HashSet<OsString>,
) -> Result<(), DaemonError> {
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
    let (channel, mut approval, profile, decided, charged) =
        match spool_verdict(s, path, &file_name)? {
            SpoolVerdict::Take {
                channel,
                approval,
                profile,
                size,
                charged,
            } => (channel, approval, profile, size, charged),
            SpoolVerdict::Leave => return Ok(()),
        };
    let id = PackageId(rand_id()?);
    let dest = s.queue_dir.join(id.to_hex());
    // From here until the package is recorded, the note says where the
    // file went (see `taking`): killed meanwhile, the next start puts it
    // back into the spool.
    let taking = crate::ingress::taking::Taking::begin(&s.store, id.0, &dest, path)?;
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
    // The file as taken, through its own descriptor: however the guard
    // replaces the name, this is what the writer wrote into.
    let held = Held::open(&dest)?;
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
            Ok(Guarded::HeldForScan { why, .. }) => {
                // Back into the spool, untouched: the next collection after
                // the back-off tries again (audited and alarmed already).
                std::fs::rename(&dest, path).map_err(DaemonError::io(path))?;
                refund(s, charged.as_deref());
                s.scan_hold_until_ms.store(
                    now_millis().0 + crate::inspection::malware::HOLD_RETRY_S * 1000,
                    Ordering::Relaxed,
                );
                tracing::warn!(file = %file_name, "{why}");
                return Ok(());
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
                if std::fs::rename(&dest, path).is_ok() {
                    refund(s, charged.as_deref());
                }
                return Err(e);
            }
        }
    }
    // The sender may have left the whole file dirty in the page cache: its
    // write-back runs while the file is digested, and the fsync after the
    // digest waits only for what is left. (A refused hint costs only time.)
    let file = File::open(&dest).map_err(DaemonError::io(&dest))?;
    if let Err(e) = ferry_hardening::writeback::start_writeback(&file, 0, 0) {
        tracing::debug!(path = %dest.display(), error = %e, "write-back hint refused");
    }
    let (size, digest) = digest_file(s.keys.link_crypto(), &dest)?;
    file.sync_all().map_err(DaemonError::io(&dest))?;
    if held.changed(decided) {
        // Still being written (renamed in before its writer was done, or
        // written in place by a writer that paused past the settle time):
        // what was decided on, inspected and digested is not the file. It
        // goes back into the spool untouched and is taken once it settles.
        let back = held.put_back(&dest, path)?;
        if let Some(name) = back.file_name() {
            put_back.insert(name.to_os_string());
        }
        // Decided on again when it is taken again: counted once.
        refund(s, charged.as_deref());
        tracing::warn!(file = %file_name, decided, digested = size, "spool file changed while it was taken (its writer was not done: write `.NAME`, then rename it); back in the spool, taken again once it settles");
        protocol::update(&s.status, |st| st.spool_retakes += 1);
        return Ok(());
    }
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
    taking.taken();
    let (state, seq) = match admitted {
        Admitted::Queued(seq) => {
            tracing::debug!(target: PACKAGE_TARGET, package = %id, seq, file = %file_name, size, after = complete.name(), "taken from spool");
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
            "taken_after": complete.name(),
        });
        crate::ingress::spool::record_done(spool, &dest, &file_name, &receipt);
    }
    Ok(())
}

/// Name of this side's spool as the policy knows it: the `[spool.NAME]`
/// whose directory is `paths.spool_dir`, else the link's name.
pub(crate) fn spool_name(s: &Shared) -> String {
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

pub(crate) enum SpoolVerdict {
    /// Queue it on this channel (held first when approvals are required),
    /// after the content guard under `profile`.
    Take {
        channel: String,
        approval: Option<ferry_policy::ApprovalRequirement>,
        profile: Option<String>,
        /// The size the decision saw.
        size: u64,
        /// What the decision charged to the policy's counters (none
        /// without a policy), taken back if the file is put back.
        charged: Option<Box<Charged>>,
    },
    /// Not now (window closed) or refused (moved aside): leave it.
    Leave,
}

/// A decision that charged a spool file to the policy's rate and quota
/// counters, with the request it answered.
pub(crate) struct Charged {
    request: ferry_policy::Request,
    decision: ferry_policy::Decision,
}

/// Takes back what the decision on a spool file charged, when the file
/// goes back into the spool to be decided on again later.
fn refund(s: &Shared, charged: Option<&Charged>) {
    if let (Some(gate), Some(c)) = (&s.policy, charged) {
        gate.refund(&c.request, &c.decision);
    }
}

/// The one file-name rule of ingest, spool and outbox
/// ([`crate::state::outbox::sanitize_file_name`]) for a spool file: a name the
/// egress side would not deliver (e.g. `x.ferry.json`) is set aside in
/// `SPOOL/.rejected/` with its reason, counted and audited, never sent.
/// True when refused.
pub(crate) fn refuse_spool_name(
    s: &Shared,
    path: &Path,
    file_name: &str,
) -> Result<bool, DaemonError> {
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
pub(crate) fn spool_verdict(
    s: &Shared,
    path: &Path,
    file_name: &str,
) -> Result<SpoolVerdict, DaemonError> {
    let Some(gate) = &s.policy else {
        if s.stopped(&s.cfg.link.name).is_some() {
            return Ok(SpoolVerdict::Leave);
        }
        return Ok(SpoolVerdict::Take {
            channel: s.cfg.link.name.clone(),
            approval: None,
            profile: None,
            size: std::fs::metadata(path)
                .map_err(DaemonError::io(path))?
                .len(),
            charged: None,
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
    let request = ferry_policy::Request {
        identity: ferry_policy::Subject::spool(&name),
        channel: channel.clone(),
        file_name: file_name.to_owned(),
        content_type: "application/octet-stream".into(),
        size_bytes: size,
        at: crate::now_utc(),
    };
    let d = gate.decide_and_charge(&request);
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
                approval: d.approval.clone(),
                profile: d.profile.clone(),
                size,
                charged: Some(Box::new(Charged {
                    request,
                    decision: d,
                })),
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
pub(crate) fn set_aside_refused(
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
