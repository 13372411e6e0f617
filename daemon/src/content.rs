//! The content guard in the daemon: one compiled [`ferry_guard::Guard`]
//! per `[profile.NAME]` of the policy in force, built when the policy is
//! loaded (a profile whose dirty-word list cannot be read fails the load
//! or the reload, and the old policy stays), and run on every package on
//! the ingress side (the channel's `profile`) and again on the egress side
//! (its `egress_profile`) before delivery.
//!
//! What this module adds to the guard: the audit record of every
//! inspection (verdict, counts, findings by type and location with keyed
//! hashes, digests before and after — never a value), and swapping a
//! masked copy in place of the package so that nothing unmasked goes on.

use crate::DaemonError;
use ferry_audit::{Actor, AuditRecord, EventKind, Outcome};
use ferry_guard::{FsLists, Guard, Profile, Report, Verdict};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Findings written into one audit record (the report's own list is
/// bounded too; the total is always recorded).
const FINDINGS_AUDITED_MAX: usize = 100;

/// The guards of one policy, by profile name.
#[derive(Default)]
pub struct Guards {
    by_profile: HashMap<String, Arc<Guard>>,
}

impl Guards {
    /// Compiles every profile of `policy`, reading its dirty-word lists.
    pub fn build(policy: &ferry_policy::Policy) -> Result<Guards, String> {
        let mut by_profile = HashMap::new();
        for p in policy.profiles() {
            let profile = Profile::from_settings(&p.name, &p.settings, &FsLists)
                .map_err(|e| e.to_string())?;
            by_profile.insert(p.name.clone(), Arc::new(Guard::new(profile)));
        }
        Ok(Guards { by_profile })
    }

    /// The guard of profile `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Guard>> {
        self.by_profile.get(name).cloned()
    }
}

/// The directories of every dirty-word list the policy names, so Landlock
/// can let `ferryd` read them (best effort: an unreadable policy here is
/// reported when ferryd loads it).
pub fn list_dirs(policy_file: &Path) -> Vec<PathBuf> {
    let Ok((policy, _)) = ferry_policy::load(policy_file) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = policy
        .profiles()
        .iter()
        .filter_map(|p| {
            p.settings
                .get("dirty_words")?
                .get("lists")?
                .as_array()
                .cloned()
        })
        .flatten()
        .filter_map(|v| v.as_str().map(PathBuf::from))
        .filter_map(|p| p.parent().map(Path::to_path_buf))
        .collect();
    dirs.sort();
    dirs.dedup();
    dirs
}

/// Runs `guard` on the package at `path` and, when it masked something,
/// replaces `path` with the masked copy (atomically: the guard fsyncs the
/// copy, then it is renamed over the package). `scratch` is a directory on
/// the same filesystem as `path`.
pub fn inspect_in_place(
    guard: &Guard,
    path: &Path,
    declared_name: &str,
    declared_type: &str,
    scratch: &Path,
    id: &str,
) -> Result<Report, DaemonError> {
    let masked = scratch.join(format!(".masked-{id}"));
    let report = guard
        .inspect(path, declared_name, declared_type, &masked)
        .map_err(|e| DaemonError::Package {
            id: id.to_owned(),
            what: format!("content guard: {e}"),
        })?;
    if report.verdict == Verdict::Masked {
        std::fs::rename(&masked, path).map_err(DaemonError::io(path))?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(DaemonError::io(dir))?;
        }
    } else {
        let _ = std::fs::remove_file(&masked);
    }
    Ok(report)
}

/// The manifest's record of an inspection that lets the package go on
/// (`None` for a rejection, which is never sent).
pub fn inspection_of(r: &Report) -> Option<ferry_protocol::Inspection> {
    let verdict = match r.verdict {
        Verdict::Pass => ferry_protocol::InspectionVerdict::Pass,
        Verdict::Masked => ferry_protocol::InspectionVerdict::Masked,
        Verdict::Review => ferry_protocol::InspectionVerdict::Reviewed,
        Verdict::Reject => return None,
    };
    let bytes = |h: &Option<String>| {
        h.as_deref()
            .and_then(|h| hex::decode(h).ok())
            .filter(|d| d.len() <= ferry_protocol::manifest::MAX_INSPECTION_DIGEST_LEN)
            .unwrap_or_default()
    };
    let mut profile = r.profile.clone();
    while profile.len() > ferry_protocol::manifest::MAX_PROFILE_LEN {
        profile.pop();
    }
    Some(ferry_protocol::Inspection {
        profile,
        verdict,
        sha256_before: bytes(&r.digest_before),
        sha256_after: bytes(&r.digest_after),
    })
}

/// The audit record of an inspection: ingress (`guard.inspected`) or
/// egress (`guard.reinspected`).
pub fn record(
    event: EventKind,
    actor: Actor,
    package: &str,
    channel: &str,
    r: &Report,
) -> AuditRecord {
    let outcome = match r.verdict {
        Verdict::Pass | Verdict::Masked => Outcome::Allowed,
        Verdict::Review => Outcome::Failure,
        Verdict::Reject => Outcome::Refused,
    };
    let findings: Vec<&ferry_guard::Finding> =
        r.findings.iter().take(FINDINGS_AUDITED_MAX).collect();
    let mut rec = AuditRecord::new(event, actor, outcome)
        .package(package.to_owned())
        .channel(channel.to_owned())
        .detail("profile", r.profile.clone())
        .detail("verdict", r.verdict.as_str())
        .detail("findings_total", r.findings_total.to_string())
        .detail(
            "findings",
            serde_json::to_string(&findings).unwrap_or_default(),
        )
        .detail("detected_type", r.detected_type.clone().unwrap_or_default());
    if let Some(d) = &r.digest_before {
        rec = rec.detail("sha256_before", d.clone());
    }
    if let Some(d) = &r.digest_after {
        rec = rec.detail("sha256_after", d.clone());
    }
    if !r.reasons.is_empty() {
        rec = rec.reason(r.reasons.join("; "));
    }
    rec
}
