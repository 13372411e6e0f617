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
use ferry_guard::{Guard, GuardError, Profile, Report, Verdict};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Findings written into one audit record (the report's own list is
/// bounded too; the total is always recorded).
const FINDINGS_AUDITED_MAX: usize = 100;

/// Compiles one profile of the policy, reading its dirty-word lists: what
/// `ferryd` does at load and reload, `ferryctl policy check` and
/// `ferryctl inspect` do through this same function.
pub fn compile_profile(p: &ferry_policy::Profile) -> Result<Profile, GuardError> {
    // The guard's own file reader: a regular file only (a FIFO or device
    // named as a list is refused at once instead of hanging a reload), at
    // most `LIST_MAX_BYTES`.
    Profile::from_settings(&p.name, &p.settings, &ferry_guard::FsLists)
}

/// The guards of one policy, by profile name.
#[derive(Default)]
pub struct Guards {
    by_profile: HashMap<String, Arc<Guard>>,
}

impl Guards {
    /// Compiles every profile of `policy`, reading its dirty-word lists,
    /// with the current pseudonym key of `pseudonym_keys` (`[policy]
    /// pseudonym_keys`); the first profile that fails, or a key directory
    /// that cannot be read, refuses the whole policy.
    pub fn build(
        policy: &ferry_policy::Policy,
        pseudonym_keys: Option<&Path>,
    ) -> Result<Guards, String> {
        let key = match pseudonym_keys {
            None => None,
            Some(dir) => Some(
                ferry_keys::pseudonym::load_current(dir)
                    .map_err(|e| format!("[policy] pseudonym_keys: {e}"))?,
            ),
        };
        let (guards, failed) = Guards::build_each(policy, key.as_ref());
        if let Some((_, e)) = failed.first() {
            return Err(e.to_string());
        }
        for (name, g) in &guards.by_profile {
            if g.profile().pseudonymizes() && key.is_none() {
                // Not an error: the egress side re-inspects pseudonyms the
                // ingress made and needs no key for that. A value still to
                // pseudonymize is refused (fail closed), and says why.
                tracing::warn!(profile = %name, "profile pseudonymizes columns but [policy] pseudonym_keys is not set: packages with values to pseudonymize will be refused");
            }
        }
        Ok(guards)
    }

    /// Compiles every profile of `policy` (with the pseudonym `key`, when
    /// given); the profiles that fail, each with why.
    pub fn build_each<'p>(
        policy: &'p ferry_policy::Policy,
        key: Option<&ferry_keys::pseudonym::PseudonymKey>,
    ) -> (Guards, Vec<(&'p ferry_policy::Profile, GuardError)>) {
        let mut by_profile = HashMap::new();
        let mut failed = Vec::new();
        for p in policy.profiles() {
            match compile_profile(p) {
                Ok(profile) => {
                    let mut guard = Guard::new(profile);
                    if let Some(k) = key {
                        guard = guard.with_pseudonym_key(k.epoch(), k.secret());
                    }
                    by_profile.insert(p.name.clone(), Arc::new(guard));
                }
                Err(e) => failed.push((p, e)),
            }
        }
        (Guards { by_profile }, failed)
    }

    /// The guard of profile `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Guard>> {
        self.by_profile.get(name).cloned()
    }
}

/// The directories of every file the policy makes `ferryd` read (the
/// policy's includes, wherever they are, its dirty-word lists and YARA
/// rules files), so
/// Landlock lets `ferryd` read them on a reload (best effort: an
/// unreadable policy here is reported when ferryd loads it).
pub fn list_dirs(policy_file: &Path) -> Vec<PathBuf> {
    let Ok((policy, _)) = ferry_policy::load(policy_file) else {
        return Vec::new();
    };
    let includes = ferry_policy::check(policy_file, false)
        .files
        .into_iter()
        .map(PathBuf::from);
    let lists = policy.profiles().iter().flat_map(|p| {
        p.lists
            .iter()
            .chain(&p.rules_files)
            .map(|(path, _)| path.clone())
    });
    let mut dirs: Vec<PathBuf> = includes
        .chain(lists)
        .map(|p| std::fs::canonicalize(&p).unwrap_or(p))
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
    channel: &str,
    path: &Path,
    (declared_name, declared_type): (&str, &str),
    scratch: &Path,
    id: &str,
) -> Result<Report, DaemonError> {
    let masked = scratch.join(format!(".masked-{id}"));
    let report = guard
        .inspect_for(channel, path, declared_name, declared_type, &masked)
        .map_err(|e| DaemonError::Package {
            id: id.to_owned(),
            what: format!("content guard: {e}"),
        })?;
    let mut report = report;
    if report.verdict == Verdict::Masked
        && report
            .findings
            .iter()
            .any(|f| f.kind == ferry_guard::FindingKind::Disarm)
    {
        // A stripped copy is a new file written by the guard's own
        // rewriting (an archive's directory, a PDF written again): it is
        // inspected again before it replaces the package, and must come
        // back with nothing left to strip.
        let again = scratch.join(format!(".masked-{id}-again"));
        let second = guard.inspect_for(channel, &masked, declared_name, declared_type, &again);
        let _ = std::fs::remove_file(&again);
        let clean = second.as_ref().is_ok_and(|r| {
            r.verdict <= Verdict::Masked
                && !r
                    .findings
                    .iter()
                    .any(|f| f.kind == ferry_guard::FindingKind::Disarm)
        });
        if clean {
            report
                .reasons
                .push("the stripped copy was inspected again: nothing left to strip".into());
        } else {
            let _ = std::fs::remove_file(&masked);
            let why = match &second {
                Ok(r) => r.reasons.join("; "),
                Err(e) => e.to_string(),
            };
            report.verdict = Verdict::Reject;
            report.digest_after = None;
            report.reasons.push(format!(
                "the stripped copy did not pass a second inspection ({why}); refused rather than passed"
            ));
            return Ok(report);
        }
    }
    if report.verdict == Verdict::Masked {
        std::fs::rename(&masked, path).map_err(DaemonError::io(path))?;
        if let Some(dir) = path.parent() {
            ferry_common::durable::sync_dir(dir).map_err(DaemonError::io(dir))?;
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
    let held = r.malware.as_ref().is_some_and(|m| m.hold);
    let outcome = match r.verdict {
        Verdict::Pass | Verdict::Masked => Outcome::Allowed,
        Verdict::Review => Outcome::Failure,
        // Not scanned and held for another try: not refused (yet).
        Verdict::Reject if held => Outcome::Failure,
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
    if !r.deidentification.is_empty() {
        // Techniques, columns, counts and key epochs: never a value.
        rec = rec.detail(
            "deidentification",
            serde_json::to_string(&r.deidentification).unwrap_or_default(),
        );
    }
    if let Some(m) = &r.malware {
        // The verdict, signature names and the engine's database: never
        // package content.
        rec = rec
            .detail("malware", m.status.as_str())
            .detail("malware_scan", serde_json::to_string(m).unwrap_or_default());
        if let Some(s) = m.detections.first() {
            rec = rec.detail("malware_signature", s.signature.clone());
        }
    }
    if let Some(y) = &r.yara {
        // Rule names, tags, members and the rules files' digests: never
        // what a rule matched.
        rec = rec
            .detail("yara", y.status.as_str())
            .detail("yara_scan", serde_json::to_string(y).unwrap_or_default());
        if !y.matches.is_empty() {
            let mut rules: Vec<&str> = y.matches.iter().map(|m| m.rule.as_str()).collect();
            rules.dedup();
            rec = rec.detail("yara_rules", rules.join(", "));
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Promise: `policy check` and the guard refuse the same masking rules
    /// (the policy crate checks them at FILE:LINE:COL, the guard again at
    /// load); one table in each crate, kept equal here.
    #[test]
    fn policy_and_guard_agree_on_what_a_mask_must_hide() {
        assert_eq!(ferry_policy::MASK_LIMITS, ferry_guard::MASK_LIMITS);
    }

    /// Promise: `policy check` and the guard accept the same `yara`
    /// limits (the policy crate cannot name the guard's constants).
    #[test]
    fn policy_and_guard_agree_on_the_yara_limits() {
        assert_eq!(
            (
                ferry_policy::YARA_TIMEOUT_S_MIN,
                ferry_policy::YARA_TIMEOUT_S_MAX
            ),
            ferry_guard::YARA_TIMEOUT_S_RANGE
        );
        assert_eq!(
            ferry_policy::YARA_MAX_SCAN_BYTES_MAX,
            ferry_guard::YARA_MAX_SCAN_BYTES_MAX
        );
        assert_eq!(
            ferry_policy::YARA_RULES_FILES_MAX,
            ferry_guard::YARA_RULES_FILES_MAX
        );
    }

    /// Promise: Landlock lets ferryd read, on a reload, every file the
    /// policy made it read at start: includes, dirty-word lists and YARA
    /// rules files in other directories too, not only the policy's own
    /// directory.
    #[test]
    fn sandbox_directories_cover_includes_lists_and_rules() {
        let root = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(root.path()).unwrap();
        for d in ["policy", "shared", "words", "rules"] {
            std::fs::create_dir(root.join(d)).unwrap();
        }
        let list = root.join("words/classified.txt");
        std::fs::write(&list, "秘密\n").unwrap();
        std::fs::write(
            root.join("rules/import.yar"),
            "rule R { condition: false }\n",
        )
        .unwrap();
        std::fs::write(
            root.join("shared/ids.toml"),
            "[identity.stats]\ncn = \"stats\"\n",
        )
        .unwrap();
        let main = root.join("policy/policy.toml");
        std::fs::write(
            &main,
            format!(
                "include = [\"../shared/ids.toml\"]\n[profile.p]\ndirty_words = {{ action = \"reject\", lists = [\"{}\"] }}\nyara = {{ rules = [\"../rules/import.yar\"] }}\n[channel.c]\ndirection = \"import\"\nlink = \"l\"\nprofile = \"p\"\n[[rule]]\nid = \"R\"\neffect = \"allow\"\nidentities = [\"stats\"]\nchannels = [\"c\"]\n",
                list.display()
            ),
        )
        .unwrap();
        let dirs = list_dirs(&main);
        for d in ["policy", "shared", "words", "rules"] {
            assert!(dirs.contains(&root.join(d)), "{d} missing from {dirs:?}");
        }
    }
}
