//! Admission: a complete, digested upload (from the spool or the ingest
//! API) is guarded, queued or held, counted and audited, the same way
//! whichever door it came through.

use crate::admin::protocol::{self};
use crate::ingress::queue::queue;
use crate::ingress::shared::{Admitted, Grant, Shared};
use crate::ops::activity::PACKAGE_TARGET;
use crate::ops::audit_trail::{Actor, AuditRecord, EventKind, Outcome};
use crate::{now_millis, DaemonError};
use ferry_protocol::{PackageId, PackageMeta};
use std::fs::File;
use std::io::Read;
use std::path::Path;

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
pub(crate) fn record_pushed(
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
    /// Not scanned for malware (the engine could not answer) and the
    /// profile says hold: not accepted now, to be tried again later.
    HeldForScan {
        /// The report (verdict `reject`, never passed).
        report: ferry_guard::Report,
        /// One line for the sender.
        why: String,
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
            DaemonError::Policy(format!(
                "content profile `{}` is not loaded; reload the policy",
                job.profile
            ))
        })?;
    let report = crate::inspection::content::inspect_in_place(
        &guard,
        job.channel,
        job.path,
        (job.file_name, job.content_type),
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
    // A clean pass is a success like "accepted": a line per package at
    // `debug` (the audit record has it). A finding is worth a line.
    if report.verdict == ferry_guard::Verdict::Pass {
        tracing::debug!(target: PACKAGE_TARGET, package = %job.id, profile = %job.profile, verdict = report.verdict.as_str(), findings = report.findings_total, "inspected");
    } else {
        tracing::info!(package = %job.id, profile = %job.profile, verdict = report.verdict.as_str(), findings = report.findings_total, "inspected");
    }
    crate::inspection::malware::note_report(&s.status, &report, job.id);
    if report.malware.as_ref().is_some_and(|m| m.hold) {
        return Ok(Guarded::HeldForScan {
            why: format!(
                "the malware engine could not scan the package, and profile `{}` holds such packages (on_unavailable = \"hold\"); nothing was queued, try again in {} s",
                job.profile,
                crate::inspection::malware::HOLD_RETRY_S
            ),
            report,
        });
    }
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

pub(crate) fn rand_id() -> Result<[u8; 16], DaemonError> {
    let mut id = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut id)
        .map_err(|_| DaemonError::Random)?;
    Ok(id)
}

/// Size and digest (the suite's: SHA-256 or SM3) of a file, streamed.
pub(crate) fn digest_file(
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
