//! The policy in force on the ingress side: loaded (and its signature
//! checked) at start, swapped atomically on SIGHUP or `ferryctl policy
//! reload`, asked for a decision on every push, and the usage counters its
//! rates and quotas are measured against.
//!
//! A reload that fails (invalid file, missing or untrusted signature)
//! leaves the old policy in force and says why. Decisions are owned values,
//! so a package accepted under the old policy keeps what it was granted.

use crate::config::PolicySection;
use crate::DaemonError;
use ferry_policy::{
    Charge, Counter, Decision, Period, Policy, PublicKey, Request, Usage, UsageScope,
};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

/// Fixed windows aligned to UTC minutes and days.
fn period_seconds(p: Period) -> u64 {
    match p {
        Period::Minute => 60,
        Period::Day => 86_400,
    }
}

/// In-memory counters per identity or channel and period. They restart
/// from zero when `ferryd` restarts (documented): the durable record of
/// what was pushed is the queue and the audit log.
#[derive(Default)]
struct UsageCounters {
    /// (scope kind, name, period) → (period index, packages, bytes).
    map: HashMap<(u8, String, u8), (u64, u64, u64)>,
    now_s: u64,
}

fn key(scope: UsageScope<'_>, period: Period) -> (u8, String, u8) {
    let (kind, name) = match scope {
        UsageScope::Identity(n) => (0, n),
        UsageScope::Channel(n) => (1, n),
    };
    (kind, name.to_owned(), period as u8)
}

impl Usage for UsageCounters {
    fn counter(&self, scope: UsageScope<'_>, period: Period) -> Counter {
        let len = period_seconds(period);
        let index = self.now_s / len;
        let resets_at = time::OffsetDateTime::from_unix_timestamp(((index + 1) * len) as i64).ok();
        match self.map.get(&key(scope, period)) {
            Some(&(i, packages, bytes)) if i == index => Counter {
                packages,
                bytes,
                resets_at,
            },
            _ => Counter {
                packages: 0,
                bytes: 0,
                resets_at,
            },
        }
    }
}

impl UsageCounters {
    /// Takes back one package of `bytes` charged at `at_s` to `charges`,
    /// from the counters still in that period (a period that has rolled
    /// over since starts from zero anyway).
    fn refund(&mut self, charges: &[Charge], bytes: u64, at_s: u64) {
        for c in charges {
            let scope = match c {
                Charge::Identity(n) => UsageScope::Identity(n),
                Charge::Channel(n) => UsageScope::Channel(n),
            };
            for period in [Period::Minute, Period::Day] {
                let index = at_s / period_seconds(period);
                if let Some(e) = self.map.get_mut(&key(scope, period)) {
                    if e.0 == index {
                        e.1 = e.1.saturating_sub(1);
                        e.2 = e.2.saturating_sub(bytes);
                    }
                }
            }
        }
    }

    fn charge(&mut self, charges: &[Charge], bytes: u64) {
        for c in charges {
            let scope = match c {
                Charge::Identity(n) => UsageScope::Identity(n),
                Charge::Channel(n) => UsageScope::Channel(n),
            };
            for period in [Period::Minute, Period::Day] {
                let index = self.now_s / period_seconds(period);
                let e = self.map.entry(key(scope, period)).or_insert((index, 0, 0));
                if e.0 != index {
                    *e = (index, 0, 0);
                }
                e.1 += 1;
                e.2 = e.2.saturating_add(bytes);
            }
        }
    }
}

/// The policy in force and its counters.
pub struct PolicyGate {
    path: PathBuf,
    /// `[policy] pseudonym_keys`, read again at every reload.
    pseudonym_keys: Option<PathBuf>,
    signers: Vec<PublicKey>,
    current: RwLock<Arc<Policy>>,
    /// The content guards of the policy in force, swapped with it.
    guards: RwLock<Arc<crate::inspection::content::Guards>>,
    usage: Mutex<UsageCounters>,
}

impl PolicyGate {
    /// Loads the configured policy; with `signers`, only if its detached
    /// signature verifies under one of them.
    pub fn load(cfg: &PolicySection) -> Result<PolicyGate, DaemonError> {
        let signers = cfg
            .signers
            .iter()
            .map(|p| PublicKey::read(p))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| DaemonError::Policy(format!("policy signer key: {e}")))?;
        let policy = read(&cfg.file, &signers).map_err(DaemonError::Config)?;
        let guards =
            crate::inspection::content::Guards::build(&policy, cfg.pseudonym_keys.as_deref())
                .map_err(|e| DaemonError::Policy(format!("policy {}: {e}", cfg.file.display())))?;
        tracing::info!(
            policy = %cfg.file.display(),
            hash = %policy.hash(),
            signed = !signers.is_empty(),
            "policy loaded"
        );
        Ok(PolicyGate {
            path: cfg.file.clone(),
            pseudonym_keys: cfg.pseudonym_keys.clone(),
            signers,
            current: RwLock::new(Arc::new(policy)),
            guards: RwLock::new(Arc::new(guards)),
            usage: Mutex::new(UsageCounters::default()),
        })
    }

    /// The policy in force.
    pub fn current(&self) -> Arc<Policy> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Reads the file again and swaps it in if it is valid (and signed,
    /// when signatures are required). `Ok(new hash)` or `Err(why)`; on
    /// error the old policy stays in force.
    pub fn reload(&self) -> Result<String, String> {
        let policy = read(&self.path, &self.signers)?;
        let guards = Arc::new(crate::inspection::content::Guards::build(
            &policy,
            self.pseudonym_keys.as_deref(),
        )?);
        let hash = policy.hash().to_owned();
        // Guards first: a decision made between the two swaps names a
        // profile of the new policy, which the new guards have.
        match self.guards.write() {
            Ok(mut g) => *g = guards,
            Err(p) => *p.into_inner() = guards,
        }
        match self.current.write() {
            Ok(mut g) => *g = Arc::new(policy),
            Err(p) => *p.into_inner() = Arc::new(policy),
        }
        Ok(hash)
    }

    /// The profiles in force that scan for malware, with their engine
    /// settings (for the engine watch).
    pub fn malware_profiles(&self) -> Vec<(String, ferry_guard::MalwareRules)> {
        self.current()
            .profiles()
            .iter()
            .filter_map(|p| {
                let g = self.guard(&p.name)?;
                let m = g.profile().malware()?.clone();
                Some((p.name.clone(), m))
            })
            .collect()
    }

    /// The guard of content profile `name` in the policy in force.
    pub fn guard(&self, name: &str) -> Option<Arc<ferry_guard::Guard>> {
        let guards = match self.guards.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        };
        guards.get(name)
    }

    /// The decision for `req` against the current counters. An allowed
    /// package is charged to its counters at once, so two concurrent pushes
    /// cannot both take the last unit of a quota.
    pub fn decide_and_charge(&self, req: &Request) -> Decision {
        self.decide_with(req, false)
    }

    /// Like [`PolicyGate::decide_and_charge`] for a sender whose package
    /// is held until a closed window opens instead of being refused (the
    /// ingest API): a `Hold` is checked against the quotas and charged like
    /// an allowed package, since it is accepted now
    /// ([`Policy::decide_holding`]).
    pub fn decide_and_charge_holding(&self, req: &Request) -> Decision {
        self.decide_with(req, true)
    }

    /// Takes back what [`PolicyGate::decide_and_charge`] charged for `req`
    /// under `decision`, for a package that was not taken after all (a
    /// spool file put back to be taken again later), so the next decision
    /// on it does not count it twice.
    pub fn refund(&self, req: &Request, decision: &Decision) {
        let mut usage = match self.usage.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let at_s = req.at.unix_timestamp().max(0) as u64;
        usage.refund(&decision.charges, req.size_bytes, at_s);
    }

    fn decide_with(&self, req: &Request, holding: bool) -> Decision {
        let policy = self.current();
        let mut usage = match self.usage.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        usage.now_s = req.at.unix_timestamp().max(0) as u64;
        let d = if holding {
            policy.decide_holding(req, &*usage)
        } else {
            policy.decide(req, &*usage)
        };
        let accepted = d.is_allowed() || (holding && d.verdict == ferry_policy::Verdict::Hold);
        if accepted {
            usage.charge(&d.charges, req.size_bytes);
        }
        d
    }
}

pub(crate) fn read(path: &std::path::Path, signers: &[PublicKey]) -> Result<Policy, String> {
    let result = if signers.is_empty() {
        ferry_policy::load(path)
    } else {
        ferry_policy::load_signed(path, signers).map(|(p, w, _)| (p, w))
    };
    match result {
        Ok((p, warnings)) => {
            for w in warnings {
                tracing::warn!("{w}");
            }
            Ok(p)
        }
        Err(e) => Err(e.to_string()),
    }
}

/// What `ferryd` reads for a policy beyond its files, read the way
/// `ferryd` reads it: every content profile compiled with its dirty-word
/// lists ([`crate::inspection::content::Guards::build_each`], what [`PolicyGate::load`]
/// and [`PolicyGate::reload`] run). `ferryctl policy check` passes it, so
/// a policy that `ferryd` would refuse fails the check, at the list entry
/// (or profile) that makes it fail.
pub struct DaemonLoad;

impl ferry_policy::Referenced for DaemonLoad {
    fn load_referenced(&self, policy: &Policy) -> Vec<ferry_policy::Diagnostic> {
        let (_, failed) = crate::inspection::content::Guards::build_each(policy, None);
        failed
            .into_iter()
            .map(|(profile, e)| {
                let named = |path: &std::path::Path| {
                    profile
                        .lists
                        .iter()
                        .chain(&profile.rules_files)
                        .find(|(p, _)| p == path)
                        .map(|(_, place)| place)
                };
                let place = match &e {
                    ferry_guard::GuardError::ListUnreadable { path, .. }
                    | ferry_guard::GuardError::ListInvalid { path, .. }
                    | ferry_guard::GuardError::RulesUnreadable { path, .. } => named(path),
                    ferry_guard::GuardError::RulesInvalid {
                        path,
                        line,
                        column,
                        excerpt,
                        message,
                    } => {
                        // At the error in the rules file, naming the
                        // policy entry that made ferryd read it.
                        let by = named(path).unwrap_or(&profile.at);
                        return ferry_policy::Diagnostic {
                            severity: ferry_policy::Severity::Warning,
                            code: "profile-unloadable",
                            file: path.display().to_string(),
                            line: *line,
                            column: *column,
                            message: format!(
                                "ferryd would refuse this policy: {message}; the rules file is named in `yara.rules` of [profile.{}] at {}:{}:{}",
                                profile.name, by.file, by.line, by.column
                            ),
                            excerpt: excerpt.clone(),
                        };
                    }
                    _ => None,
                }
                .unwrap_or(&profile.at);
                place.diagnostic(
                    ferry_policy::Severity::Warning,
                    "profile-unloadable",
                    format!("ferryd would refuse this policy: {e}"),
                )
            })
            .collect()
    }
}

/// The policy's view of a client certificate.
pub fn subject_of(id: &ferry_certs::Identity) -> ferry_policy::Subject {
    let mut san = Vec::new();
    san.extend(
        id.san
            .dns
            .iter()
            .map(|d| ferry_policy::San::Dns(d.to_ascii_lowercase())),
    );
    san.extend(id.san.uri.iter().map(|u| ferry_policy::San::Uri(u.clone())));
    san.extend(
        id.san
            .email
            .iter()
            .map(|e| ferry_policy::San::Email(e.to_ascii_lowercase())),
    );
    san.extend(id.san.ip.iter().map(|i| ferry_policy::San::Ip(*i)));
    ferry_policy::Subject {
        subject: id.subject.clone(),
        common_name: id.common_name.clone(),
        org_units: id.org_units.clone(),
        san,
        fingerprint_sha256: Some(id.fingerprint_sha256.clone()),
        role: id.role.clone(),
        spool: None,
    }
}

/// Answers `ReloadPolicy` (and SIGHUP) on either side: reads the policy
/// again and swaps it in if valid, else keeps the one in force; audits
/// and publishes the outcome either way. One handler, so both sides give
/// the same answer.
pub(crate) fn reload_policy(
    gate: Option<&PolicyGate>,
    audit: &crate::ops::audit_trail::AuditTrail,
    status: &crate::admin::protocol::SharedStatus,
    actor: ferry_audit::Actor,
) -> serde_json::Value {
    use crate::admin::protocol;
    use ferry_audit::{AuditRecord, EventKind, Outcome};
    let Some(gate) = gate else {
        return serde_json::json!({ "error": "no [policy] configured on this side" });
    };
    let old = gate.current().hash().to_owned();
    match gate.reload() {
        Ok(hash) => {
            tracing::info!(old = %old, new = %hash, "policy reloaded");
            let msg = format!("reloaded: {hash} replaces {old}");
            audit.note(
                AuditRecord::new(EventKind::PolicyReloaded, actor, Outcome::Success)
                    .policy_hash(hash.clone())
                    .detail("previous", old.clone()),
            );
            protocol::update(status, |st| {
                st.policy_hash = Some(hash.clone());
                st.policy_reload = Some(msg);
            });
            serde_json::json!({ "reloaded": true, "policy_hash": hash, "previous": old })
        }
        Err(why) => {
            tracing::error!(kept = %old, "policy reload refused, the previous policy stays in force: {why}");
            audit.note(
                AuditRecord::new(EventKind::PolicyReloaded, actor, Outcome::Refused)
                    .policy_hash(old.clone())
                    .reason(why.clone()),
            );
            protocol::update(status, |st| {
                st.policy_reload = Some(format!("refused (kept {old}): {why}"));
            });
            serde_json::json!({ "reloaded": false, "policy_hash": old, "error": why })
        }
    }
}
