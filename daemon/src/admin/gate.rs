//! The admin plane: who may ask a running `ferryd` for what.
//!
//! Callers on the control socket are identified by the kernel (the peer
//! credentials of the Unix socket), never by what they claim. With an
//! `[admin]` section each listed user holds exactly one role — system
//! administrator, security administrator, audit officer or reviewer — and a
//! request outside the caller's role is refused. Every request except a
//! status read is written to the audit log with who asked and whether it
//! was allowed, *before* it is carried out: if the log cannot take the
//! record, the action does not happen.
//!
//! Without `[admin]` the socket stays 0600 in the state directory, so only
//! root and the service user can connect; they hold every role and status
//! says the roles are not separated.

use crate::admin::protocol::{Caller, Request};
use crate::config::{AdminPrincipal, Config};
use crate::DaemonError;
use ferry_audit::{Actor, AuditRecord, EventKind, Outcome, Role};
use std::collections::HashMap;

/// An administrative role on the control socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminRole {
    /// 系统管理员: status, resend, keys on disk.
    Sysadmin,
    /// 安全保密管理员: the policy.
    Secadmin,
    /// 安全审计员: the audit log.
    Auditor,
    /// Approver of held packages.
    Reviewer,
}

impl AdminRole {
    /// The name used in `[admin]`.
    pub fn name(self) -> &'static str {
        match self {
            AdminRole::Sysadmin => "sysadmin",
            AdminRole::Secadmin => "secadmin",
            AdminRole::Auditor => "auditor",
            AdminRole::Reviewer => "reviewer",
        }
    }

    /// The role a certificate names (`ferryctl certs issue-client --role`).
    pub fn parse(name: &str) -> Option<AdminRole> {
        [
            AdminRole::Sysadmin,
            AdminRole::Secadmin,
            AdminRole::Auditor,
            AdminRole::Reviewer,
        ]
        .into_iter()
        .find(|r| r.name() == name)
    }

    fn audit_role(self) -> Role {
        match self {
            AdminRole::Sysadmin => Role::SystemAdmin,
            AdminRole::Secadmin => Role::SecurityAdmin,
            AdminRole::Auditor => Role::Auditor,
            AdminRole::Reviewer => Role::Approver,
        }
    }

    fn job(self) -> &'static str {
        match self {
            AdminRole::Sysadmin => "the system administrator's",
            AdminRole::Secadmin => "the security administrator's",
            AdminRole::Auditor => "the audit officer's",
            AdminRole::Reviewer => "a reviewer's",
        }
    }
}

/// The role a request needs; `None` for a status read, which any
/// administrator may make.
pub fn required_role(req: &Request) -> Option<AdminRole> {
    match req {
        Request::Status => None,
        Request::Resend { .. }
        | Request::ChannelStop { .. }
        | Request::ChannelStart { .. }
        | Request::ForwardRetry { .. }
        | Request::GapAck { .. } => Some(AdminRole::Sysadmin),
        Request::ReloadPolicy => Some(AdminRole::Secadmin),
        Request::AuditNote { .. } => Some(AdminRole::Auditor),
        Request::SignaturesNote { .. } => Some(AdminRole::Sysadmin),
        Request::ApprovalsList
        | Request::ApprovalsShow { .. }
        | Request::Approve { .. }
        | Request::Reject { .. } => Some(AdminRole::Reviewer),
    }
}

/// The request's name in audit records and refusals.
pub fn request_name(req: &Request) -> &'static str {
    match req {
        Request::Status => "status",
        Request::Resend { .. } => "resend",
        Request::ReloadPolicy => "reload_policy",
        Request::AuditNote { .. } => "audit_note",
        Request::SignaturesNote { .. } => "signatures_note",
        Request::ApprovalsList => "approvals_list",
        Request::ApprovalsShow { .. } => "approvals_show",
        Request::Approve { .. } => "approve",
        Request::Reject { .. } => "reject",
        Request::ChannelStop { .. } => "channel_stop",
        Request::ChannelStart { .. } => "channel_start",
        Request::ForwardRetry { .. } => "forward_retry",
        Request::GapAck { .. } => "gap_ack",
    }
}

/// Who holds which role, resolved to uids when `ferryd` starts (before
/// Landlock hides `/etc/passwd`).
#[derive(Debug, Clone)]
pub struct AdminPlane {
    separated: bool,
    by_uid: HashMap<u32, (String, AdminRole)>,
    service_uid: u32,
}

/// A refused request: what the caller is told and what the log records.
///
/// The actor is who the caller really is (the account the kernel names,
/// or the certificate) under the role it *holds* (`none` when it holds
/// none); the role the request needed is a detail of its own, so a record
/// never credits a caller with a role it lacks.
#[derive(Debug, Clone)]
pub struct Refusal {
    actor: Actor,
    request: &'static str,
    needed: Option<AdminRole>,
    message: String,
}

impl Refusal {
    /// The audit record of the refusal.
    pub fn record(&self) -> AuditRecord {
        AuditRecord::new(EventKind::AdminAction, self.actor.clone(), Outcome::Refused)
            .reason(self.message.clone())
            .detail("request", self.request)
            .detail(
                "role_needed",
                self.needed
                    .map_or("any administrator role", AdminRole::name),
            )
    }

    /// Who was refused, as recorded.
    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    /// The answer on the socket.
    pub fn answer(&self) -> serde_json::Value {
        serde_json::json!({ "error": self.message, "refused": true })
    }
}

/// Account names by uid, read from `/etc/passwd` by [`remember_accounts`]
/// before the sandbox hides it, so that a refused caller is recorded under
/// its account name even when it holds no role.
/// Refusals on the admin plane since start, by plane and reason label:
/// the gate's (either plane), the admin API's answers before the gate, and
/// its connection-level refusals. Published as `ferry_admin_refusals_total`
/// so that a refusal there is counted, not only logged and audited.
static REFUSALS: std::sync::Mutex<std::collections::BTreeMap<(&'static str, &'static str), u64>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// Counts one admin-plane refusal (`plane`: `control_socket` or
/// `admin_api`; `reason`: a stable label).
pub fn count_refusal(plane: &'static str, reason: &'static str) {
    if let Ok(mut m) = REFUSALS.lock() {
        *m.entry((plane, reason)).or_default() += 1;
    }
}

/// The admin-plane refusals counted so far, by (plane, reason).
pub fn refusal_counts() -> std::collections::BTreeMap<(&'static str, &'static str), u64> {
    REFUSALS.lock().map(|m| m.clone()).unwrap_or_default()
}

static ACCOUNTS: std::sync::OnceLock<HashMap<u32, String>> = std::sync::OnceLock::new();

/// This process's `/proc/self/uid_map`, read by [`remember_accounts`]
/// before the sandbox.
static UID_MAP: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The uid map of a process outside any user namespace: every uid is
/// itself.
const IDENTITY_UID_MAP: &str = "0 0 4294967295";

/// Reads the host's local accounts (`/etc/passwd`) and this process's uid
/// map once, for naming callers and checking the user namespace later;
/// ferryd calls it before Landlock confines it. Accounts from other
/// sources (LDAP through NSS) are looked up when a caller connects, which
/// works where the sandbox allows it.
pub fn remember_accounts() {
    let text = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let _ = ACCOUNTS.set(parse_passwd(&text));
    if let Ok(map) = std::fs::read_to_string("/proc/self/uid_map") {
        let _ = UID_MAP.set(map);
    }
}

/// The uid a peer shows on a Unix socket when its uid has no mapping in
/// the receiver's user namespace (`/proc/sys/kernel/overflowuid`).
pub fn overflow_uid() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/overflowuid")
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(65_534)
}

/// Whether `uid` (a host account) reaches a process with this uid map as
/// itself: some line `INSIDE OUTSIDE COUNT` maps it to the same number.
fn maps_to_itself(uid_map: &str, uid: u32) -> bool {
    uid_map.lines().any(|l| {
        let n: Vec<u64> = l
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        matches!(n.as_slice(), [inside, outside, count]
            if inside == outside && (*outside..outside + count).contains(&u64::from(uid)))
    })
}

/// What is wrong when a daemon with `uid_map` serves these administrators
/// (`(name, uid)`): `None` outside a user namespace or when every one of
/// them is mapped to itself; else the operator-facing finding. In a user
/// namespace (systemd's `PrivateUsers=yes`, a container) the kernel shows a
/// peer whose uid is not mapped as the overflow uid (65534), so those
/// administrators would be refused everything, silently but for the log.
pub fn userns_finding(uid_map: &str, admins: &[(String, u32)]) -> Option<String> {
    let compact = uid_map
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>();
    if compact.is_empty() || compact == [IDENTITY_UID_MAP] {
        return None;
    }
    let lost: Vec<String> = admins
        .iter()
        .filter(|(_, uid)| !maps_to_itself(uid_map, *uid))
        .map(|(name, uid)| format!("{name} (uid {uid})"))
        .collect();
    if lost.is_empty() {
        return None;
    }
    Some(format!(
        "user namespace: ferryd runs in a user namespace (uid_map `{}`) that does not map {}: the kernel shows them on the control socket as uid {} and every request of theirs is refused. Remove `PrivateUsers=yes` from the unit (or the container's user mapping) and restart ferryd",
        compact.join("; "),
        lost.join(", "),
        overflow_uid()
    ))
}

/// The administrators of a configuration as `(name, uid)`: `[admin]`'s
/// accounts when roles are separated, else root (the service user always
/// maps to itself). Names that do not resolve are left out (ferryd refuses
/// to start with them anyway).
pub fn admin_accounts(cfg: &Config) -> Vec<(String, u32)> {
    let Some(a) = &cfg.admin else {
        return vec![("root".to_owned(), 0)];
    };
    [&a.sysadmin, &a.secadmin, &a.auditor, &a.reviewer]
        .into_iter()
        .flatten()
        .filter_map(|p| resolve(p).ok().map(|(uid, name)| (name, uid)))
        .collect()
}

/// Publishes the admin plane in the status: who holds what, and an alarm
/// (also logged at error level) when the daemon's user namespace hides
/// administrators from the control socket.
pub fn publish(
    admin: &AdminPlane,
    cfg: &Config,
    status: &crate::admin::protocol::SharedStatus,
) -> Option<String> {
    let map = UID_MAP
        .get()
        .cloned()
        .or_else(|| std::fs::read_to_string("/proc/self/uid_map").ok())
        .unwrap_or_default();
    let finding = userns_finding(&map, &admin_accounts(cfg));
    if let Some(f) = &finding {
        tracing::error!("{f}");
    }
    crate::admin::protocol::update(status, |s| {
        s.admin_roles = Some(admin.describe());
        if let Some(f) = &finding {
            if !s.alarms.contains(f) {
                s.alarms.push(f.clone());
            }
        }
    });
    finding
}

fn parse_passwd(text: &str) -> HashMap<u32, String> {
    let mut by_uid = HashMap::new();
    for line in text.lines() {
        let mut f = line.split(':');
        let (Some(name), Some(_), Some(uid)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if let (false, Ok(uid)) = (name.is_empty(), uid.parse::<u32>()) {
            // The first entry for a uid is the one getpwuid(3) returns.
            by_uid.entry(uid).or_insert_with(|| name.to_owned());
        }
    }
    by_uid
}

/// The account name of `uid` on this host, as the audit log names a
/// caller: the name from the account database, else `uid:N` (the way
/// `[admin]` names an account by number) when no account has that uid.
pub fn account_name(uid: u32) -> String {
    if let Ok(Some(u)) = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        return u.name;
    }
    match ACCOUNTS.get().and_then(|a| a.get(&uid)) {
        Some(name) => name.clone(),
        None => format!("uid:{uid}"),
    }
}

fn resolve(p: &AdminPrincipal) -> Result<(u32, String), DaemonError> {
    match p {
        AdminPrincipal::Resolved { name, uid } => Ok((*uid, name.clone())),
        AdminPrincipal::Uid(n) => Ok((*n, format!("uid:{n}"))),
        AdminPrincipal::User(name) => match nix::unistd::User::from_name(name) {
            Ok(Some(u)) => Ok((u.uid.as_raw(), name.clone())),
            Ok(None) => Err(DaemonError::Config(format!(
                "[admin]: user `{name}` does not exist on this host; create the account or write \"uid:N\""
            ))),
            Err(e) => Err(DaemonError::Config(format!(
                "[admin]: looking up user `{name}`: {e}"
            ))),
        },
    }
}

impl AdminPlane {
    /// Resolves `[admin]`; `service_uid` is the uid ferryd runs as after
    /// its privilege drop (it holds every role only when roles are not
    /// separated).
    pub fn from_config(cfg: &Config, service_uid: u32) -> Result<AdminPlane, DaemonError> {
        let mut by_uid = HashMap::new();
        if let Some(a) = &cfg.admin {
            for (role, list) in [
                (AdminRole::Sysadmin, &a.sysadmin),
                (AdminRole::Secadmin, &a.secadmin),
                (AdminRole::Auditor, &a.auditor),
                (AdminRole::Reviewer, &a.reviewer),
            ] {
                for p in list {
                    let (uid, name) = resolve(p)?;
                    if let Some((other, r)) = by_uid.get(&uid) {
                        return Err(DaemonError::Config(format!(
                            "[admin]: `{p}` is uid {uid}, which `{other}` already has as {}: one person, one role",
                            AdminRole::name(*r)
                        )));
                    }
                    by_uid.insert(uid, (name, role));
                }
            }
        }
        Ok(AdminPlane {
            separated: cfg.admin.is_some(),
            by_uid,
            service_uid,
        })
    }

    /// Whether roles are enforced (an `[admin]` section exists).
    pub fn separated(&self) -> bool {
        self.separated
    }

    /// The socket's mode: 0660 for the administrators' group when roles
    /// are separated, else 0600.
    pub fn socket_mode(&self) -> u32 {
        if self.separated {
            0o660
        } else {
            0o600
        }
    }

    /// Decides a request from `caller`: the actor to record it under, or
    /// the refusal.
    pub fn authorize(&self, caller: &Caller, req: &Request) -> Result<Actor, Refusal> {
        let needed = required_role(req);
        let request = request_name(req);
        if let Some(c) = &caller.cert {
            return self.authorize_certificate(c, needed, request);
        }
        if !self.separated {
            let name = account_name(caller.uid);
            if caller.uid == 0 || caller.uid == self.service_uid {
                // Root and the service user hold every role: the one
                // needed is the one they act under.
                let role = needed.unwrap_or(AdminRole::Sysadmin).audit_role();
                return Ok(Actor::new(
                    format!("unix:{name} (uid {}, roles not separated)", caller.uid),
                    role,
                ));
            }
            return Err(Refusal {
                actor: Actor::new(
                    format!("unix:{name} (uid {}, roles not separated)", caller.uid),
                    Role::None,
                ),
                request,
                needed,
                message: format!(
                    "{name} (uid {}) may not use this control socket: without [admin] only root and the service user may; ask the security administrator to give you a role in [admin]",
                    caller.uid
                ),
            });
        }
        let Some((name, held)) = self.by_uid.get(&caller.uid) else {
            let name = account_name(caller.uid);
            return Err(Refusal {
                actor: Actor::new(format!("unix:{name} (uid {})", caller.uid), Role::None),
                request,
                needed,
                message: format!(
                    "{name} (uid {}) holds no role in [admin]; ask the security administrator to add you",
                    caller.uid
                ),
            });
        };
        let actor = Actor::new(
            format!("unix:{name} (uid {})", caller.uid),
            held.audit_role(),
        );
        match needed {
            Some(n) if n != *held => Err(Refusal {
                actor,
                request,
                needed,
                message: format!(
                    "`{request}` is {} job ({}); {name} holds {}",
                    n.job(),
                    n.name(),
                    held.name()
                ),
            }),
            _ => Ok(actor),
        }
    }

    /// A caller on the admin API holds the one role its certificate
    /// carries (the site CA issued it, so the CA's operator decides who
    /// holds what), and only with roles separated.
    fn authorize_certificate(
        &self,
        c: &crate::admin::protocol::CertCaller,
        needed: Option<AdminRole>,
        request: &'static str,
    ) -> Result<Actor, Refusal> {
        let who = certificate_actor(c).id;
        let held = c.role.as_deref().and_then(AdminRole::parse);
        let Some(held) = held.filter(|_| self.separated) else {
            return Err(Refusal {
                actor: Actor::new(who, Role::None),
                request,
                needed,
                message: format!(
                    "the certificate of {} carries no administrative role ({}); the admin API takes sysadmin, secadmin, auditor or reviewer certificates",
                    c.common_name,
                    c.role.as_deref().unwrap_or("no role")
                ),
            });
        };
        let actor = Actor::new(who, held.audit_role());
        // One person, one role across both planes: a person who holds a
        // role on the control socket ([admin], by account name) may not act
        // in another role with a certificate.
        if let Some(local) = self
            .by_uid
            .values()
            .find(|(name, r)| name.eq_ignore_ascii_case(&c.person) && *r != held)
        {
            return Err(Refusal {
                actor,
                request,
                needed,
                message: format!(
                    "person {} holds {} on this host ([admin]) and may not act as {} with a certificate: one person, one role; revoke one of the two",
                    c.person,
                    local.1.name(),
                    held.name()
                ),
            });
        }
        match needed {
            Some(n) if n != held => Err(Refusal {
                actor,
                request,
                needed,
                message: format!(
                    "`{request}` is {} job ({}); {} holds {}",
                    n.job(),
                    n.name(),
                    c.common_name,
                    held.name()
                ),
            }),
            _ => Ok(actor),
        }
    }

    /// A line for status: who holds what.
    pub fn describe(&self) -> String {
        if !self.separated {
            return "roles not separated: root and the service user hold every role (add [admin])"
                .to_owned();
        }
        let mut by_role: Vec<String> = Vec::new();
        for role in [
            AdminRole::Sysadmin,
            AdminRole::Secadmin,
            AdminRole::Auditor,
            AdminRole::Reviewer,
        ] {
            let mut names: Vec<&str> = self
                .by_uid
                .values()
                .filter(|(_, r)| *r == role)
                .map(|(n, _)| n.as_str())
                .collect();
            names.sort_unstable();
            by_role.push(format!("{}: {}", role.name(), names.join(", ")));
        }
        by_role.join("; ")
    }
}

/// How the audit log names an admin API caller: `cert:CN (sha256:PREFIX,
/// person ID)`, under the administrative role its certificate carries
/// (`none` for any other).
pub fn certificate_actor(c: &crate::admin::protocol::CertCaller) -> Actor {
    Actor::new(
        format!(
            "cert:{} (sha256:{}, person {})",
            c.common_name,
            c.fingerprint.get(..16).unwrap_or(&c.fingerprint),
            c.person
        ),
        c.role
            .as_deref()
            .and_then(AdminRole::parse)
            .map_or(Role::None, AdminRole::audit_role),
    )
}

/// The gate both sides put in front of their request handler: authorize,
/// record, then act. A status read is neither recorded nor refused to a
/// known administrator; everything else is recorded before it runs, and
/// does not run if the record cannot be written.
pub fn gate(
    admin: &AdminPlane,
    audit: &crate::ops::audit_trail::AuditTrail,
    caller: Caller,
    req: Request,
    handle: impl FnOnce(Actor, Caller, Request) -> serde_json::Value,
) -> serde_json::Value {
    match admin.authorize(&caller, &req) {
        Err(refusal) => {
            tracing::warn!(
                uid = caller.uid,
                pid = caller.pid,
                request = refusal.request,
                "admin request refused: {}",
                refusal.message
            );
            count_refusal(
                if caller.cert.is_some() {
                    "admin_api"
                } else {
                    "control_socket"
                },
                "role",
            );
            audit.note(refusal.record());
            refusal.answer()
        }
        Ok(actor) => {
            if !matches!(
                req,
                Request::Status | Request::AuditNote { .. } | Request::SignaturesNote { .. }
            ) {
                // audit.read records carry their own details; others get
                // the admin.action record here, before the action.
                let record =
                    AuditRecord::new(EventKind::AdminAction, actor.clone(), Outcome::Allowed)
                        .detail("request", request_name(&req));
                let record = match &caller.cert {
                    Some(_) => record.detail("via", "admin_api"),
                    None => record.detail("pid", caller.pid.to_string()),
                };
                if let Err(e) = audit.record(record) {
                    return serde_json::json!({
                        "error": format!("not done: the audit log could not record the request ({e})")
                    });
                }
            }
            handle(actor, caller, req)
        }
    }
}

/// Appends an `audit.read` record handed over the control socket; any
/// other event is refused, so the socket cannot be used to forge history.
///
/// The record is attributed to the caller the kernel identified (`actor`),
/// whatever actor the tool put in it.
pub fn audit_note(
    audit: &crate::ops::audit_trail::AuditTrail,
    actor: ferry_audit::Actor,
    mut record: ferry_audit::AuditRecord,
) -> serde_json::Value {
    record.actor = actor;
    if record.event != ferry_audit::EventKind::AuditRead {
        return serde_json::json!({ "error": "only audit.read records are accepted on the control socket" });
    }
    match audit.record(record) {
        Ok(()) => serde_json::json!({ "recorded": true }),
        Err(e) => serde_json::json!({ "error": e.to_string() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plane(text: &str) -> AdminPlane {
        let base = "[link]\nrole = \"egress\"\nname = \"l\"\nlisten = [\"127.0.0.1:7000\"]\n\n[paths]\nstate_dir = \"/var/lib/ferry\"\nkeys_dir = \"/etc/ferry/keys\"\noutbox_dir = \"/srv/ferry/in\"\n";
        let cfg =
            crate::config::parse(&format!("{base}{text}"), "/etc/ferry/x.toml").expect("config");
        AdminPlane::from_config(&cfg, 999).expect("plane")
    }

    fn caller(uid: u32) -> Caller {
        Caller {
            uid,
            gid: uid,
            pid: 1,
            cert: None,
        }
    }

    fn cert(cn: &str, role: Option<&str>) -> Caller {
        Caller::certificate(crate::admin::protocol::CertCaller {
            common_name: cn.into(),
            person: cn.to_ascii_lowercase(),
            fingerprint: format!("{cn:0>64}"),
            role: role.map(str::to_owned),
        })
    }

    #[test]
    fn certificates_hold_the_role_they_carry_and_only_it() {
        let p = plane("[admin]\nsysadmin = [\"uid:5001\"]\n");
        let stop = Request::ChannelStop {
            channel: "c".into(),
            reason: "r".into(),
        };
        let a = p
            .authorize(&cert("alice", Some("sysadmin")), &stop)
            .expect("sysadmin");
        assert!(a.id.starts_with("cert:alice (sha256:"), "{}", a.id);
        let e = p
            .authorize(&cert("bob", Some("auditor")), &stop)
            .expect_err("an auditor may not stop channels");
        assert!(
            e.answer()["error"]
                .as_str()
                .unwrap_or("")
                .contains("bob holds auditor"),
            "{:?}",
            e.answer()
        );
        let e = p
            .authorize(&cert("feed", Some("pusher")), &Request::Status)
            .expect_err("a pusher is no administrator");
        assert!(
            e.answer()["error"]
                .as_str()
                .unwrap_or("")
                .contains("no administrative role"),
            "{:?}",
            e.answer()
        );
        assert!(p.authorize(&cert("x", None), &Request::Status).is_err());
        assert!(p
            .authorize(&cert("rev", Some("reviewer")), &Request::ApprovalsList)
            .is_ok());
    }

    #[test]
    fn each_role_does_its_job_and_only_its_job() {
        let p = plane("[admin]\nsysadmin = [\"uid:5001\"]\nsecadmin = [\"uid:5002\"]\nauditor = [\"uid:5003\"]\nreviewer = [\"uid:5004\"]\n");
        assert!(p.separated());
        assert_eq!(p.socket_mode(), 0o660);
        let resend = Request::Resend {
            packages: vec![],
            seq_range: None,
        };
        let reload = Request::ReloadPolicy;
        let cases = [(5001, &resend), (5002, &reload)];
        for (uid, req) in cases {
            assert!(p.authorize(&caller(uid), req).is_ok(), "{uid}");
        }
        for uid in [5002, 5003, 5004] {
            let e = p.authorize(&caller(uid), &resend).expect_err("refused");
            assert!(
                e.message.contains("the system administrator's job"),
                "{}",
                e.message
            );
            assert_eq!(e.record().outcome, Outcome::Refused);
        }
        for uid in [5001, 5003, 5004] {
            let e = p.authorize(&caller(uid), &reload).expect_err("refused");
            assert!(
                e.message.contains("security administrator"),
                "{}",
                e.message
            );
        }
        // Any administrator may read the status; strangers and root may not.
        for uid in [5001, 5002, 5003, 5004] {
            assert!(p.authorize(&caller(uid), &Request::Status).is_ok());
        }
        for uid in [0, 999, 4242] {
            let e = p
                .authorize(&caller(uid), &Request::Status)
                .expect_err("stranger");
            assert!(e.message.contains("holds no role"), "{}", e.message);
        }
        let ok = p.authorize(&caller(5001), &resend).expect("ok");
        assert_eq!(ok.role, Role::SystemAdmin);
    }

    #[test]
    fn without_admin_only_root_and_the_service_user() {
        let p = plane("");
        assert!(!p.separated());
        assert_eq!(p.socket_mode(), 0o600);
        assert!(p.authorize(&caller(0), &Request::ReloadPolicy).is_ok());
        assert!(p.authorize(&caller(999), &Request::ReloadPolicy).is_ok());
        assert!(p.authorize(&caller(4242), &Request::Status).is_err());
        assert!(p.describe().contains("not separated"));
    }

    /// Promise: a daemon in a user namespace that hides administrators
    /// says so (this text becomes a log line, an alarm and a selfcheck
    /// failure) instead of refusing them silently.
    #[test]
    fn a_user_namespace_that_hides_administrators_is_named() {
        let admins = vec![("alice".to_owned(), 5001), ("root".to_owned(), 0)];
        assert_eq!(
            userns_finding("         0          0 4294967295\n", &admins),
            None
        );
        assert_eq!(userns_finding("0 0 4294967295", &admins), None);
        // systemd's PrivateUsers=yes: root and the service user only.
        let private = "0 0 1\n999 999 1\n";
        let f = userns_finding(private, &admins).expect("alice is hidden");
        assert!(
            f.contains("alice (uid 5001)") && !f.contains("root (uid 0)"),
            "{f}"
        );
        assert!(
            f.contains("PrivateUsers=yes") && f.contains("uid_map `0 0 1; 999 999 1`"),
            "{f}"
        );
        // A shifted mapping (a rootless container) hides everyone.
        let shifted = "0 100000 65536\n";
        let f = userns_finding(shifted, &admins).expect("shifted");
        assert!(f.contains("root (uid 0)"), "{f}");
        // Everyone mapped to themselves: nothing to say.
        assert_eq!(userns_finding("0 0 1\n5001 5001 1\n", &admins), None);
    }

    /// Promise: a refused caller is recorded under its real account and
    /// the role it holds (`none`), with the role it needed apart.
    #[test]
    fn refusals_name_the_account_and_the_role_held_not_the_role_needed() {
        let p = plane("[admin]\nsysadmin = [\"uid:5001\"]\n");
        let e = p
            .authorize(&caller(0), &Request::ReloadPolicy)
            .expect_err("root holds no role");
        let r = e.record();
        assert_eq!(r.actor.id, "unix:root (uid 0)");
        assert_eq!(r.actor.role, Role::None);
        assert_eq!(
            r.details.get("role_needed").map(String::as_str),
            Some("secadmin")
        );
        // A holder of another role is recorded under the role it holds.
        let e = p
            .authorize(&caller(5001), &Request::ReloadPolicy)
            .expect_err("sysadmin may not reload");
        assert_eq!(e.record().actor.role, Role::SystemAdmin);
        // A certificate without an administrative role holds none.
        let e = p
            .authorize(&cert("feed", Some("pusher")), &Request::ReloadPolicy)
            .expect_err("pusher");
        assert_eq!(e.record().actor.role, Role::None);
        let mut names =
            parse_passwd("root:x:0:0::/root:/bin/sh\nbad\n:x:7:7\nalice:x:5001:5001::/:/bin/sh\n");
        assert_eq!(names.remove(&5001).as_deref(), Some("alice"));
        assert_eq!(names.remove(&0).as_deref(), Some("root"));
        assert!(names.is_empty(), "{names:?}");
    }

    /// Promise: one person, one role across both planes: a person with a
    /// role on the control socket cannot act in another with a certificate.
    #[test]
    fn a_person_with_a_local_role_cannot_act_in_another_by_certificate() {
        let p = plane("[admin]\nsysadmin = [\"root\"]\n");
        let e = p
            .authorize(&cert("Root", Some("reviewer")), &Request::ApprovalsList)
            .expect_err("root is the sysadmin here");
        assert!(e.message.contains("one person, one role"), "{}", e.message);
        assert_eq!(e.record().outcome, Outcome::Refused);
        assert!(p
            .authorize(&cert("root", Some("sysadmin")), &Request::Status)
            .is_ok());
    }

    #[test]
    fn one_person_one_role_in_the_file() {
        let base = "[link]\nrole = \"egress\"\nname = \"l\"\nlisten = [\"127.0.0.1:7000\"]\n\n[paths]\nstate_dir = \"/var/lib/ferry\"\nkeys_dir = \"/etc/ferry/keys\"\noutbox_dir = \"/srv/ferry/in\"\n";
        let e = crate::config::parse(
            &format!("{base}[admin]\nsysadmin = [\"alice\"]\nauditor = [\"bob\", \"alice\"]\n"),
            "/etc/ferry/x.toml",
        )
        .expect_err("overlap");
        let text = e.to_string();
        assert!(text.contains("/etc/ferry/x.toml:12:"), "{text}");
        assert!(text.contains("`alice` already holds `sysadmin`"), "{text}");
        let e = crate::config::parse(
            &format!("{base}[admin]\nsysadmin = [\"uid:x\"]\n"),
            "/etc/ferry/x.toml",
        )
        .expect_err("bad uid");
        assert!(e.to_string().contains("after `uid:` comes a number"), "{e}");
        let e = crate::config::parse(
            &format!("{base}[admin]\nsysadmin = [\"no-such-user-ferry\"]\n"),
            "/etc/ferry/x.toml",
        )
        .expect("syntax is fine");
        let e = AdminPlane::from_config(&e, 999).expect_err("unknown user");
        assert!(e.to_string().contains("does not exist on this host"), "{e}");
    }
}
