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

use crate::config::{AdminPrincipal, Config};
use crate::control::{Caller, Request};
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
#[derive(Debug, Clone)]
pub struct Refusal {
    actor: Actor,
    request: &'static str,
    message: String,
}

impl Refusal {
    /// The audit record of the refusal.
    pub fn record(&self) -> AuditRecord {
        AuditRecord::new(EventKind::AdminAction, self.actor.clone(), Outcome::Refused)
            .reason(self.message.clone())
            .detail("request", self.request)
    }

    /// The answer on the socket.
    pub fn answer(&self) -> serde_json::Value {
        serde_json::json!({ "error": self.message, "refused": true })
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
            let name = if caller.uid == 0 {
                "root".to_owned()
            } else {
                format!("uid:{}", caller.uid)
            };
            let role = needed.unwrap_or(AdminRole::Sysadmin).audit_role();
            let actor = Actor::new(
                format!("unix:{name} (uid {}, roles not separated)", caller.uid),
                role,
            );
            if caller.uid == 0 || caller.uid == self.service_uid {
                return Ok(actor);
            }
            return Err(Refusal {
                actor,
                request,
                message: format!("uid {} may not use this control socket", caller.uid),
            });
        }
        let Some((name, held)) = self.by_uid.get(&caller.uid) else {
            // No role held: recorded under the role the request needed.
            let attempted = needed.unwrap_or(AdminRole::Sysadmin).audit_role();
            return Err(Refusal {
                actor: Actor::new(format!("unix:unknown (uid {})", caller.uid), attempted),
                request,
                message: format!(
                    "uid {} holds no role in [admin]; ask the security administrator to add you",
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
        c: &crate::control::CertCaller,
        needed: Option<AdminRole>,
        request: &'static str,
    ) -> Result<Actor, Refusal> {
        let who = format!(
            "cert:{} (sha256:{})",
            c.common_name,
            c.fingerprint.get(..16).unwrap_or(&c.fingerprint)
        );
        let held = c.role.as_deref().and_then(AdminRole::parse);
        let attempted = needed.unwrap_or(AdminRole::Sysadmin).audit_role();
        let Some(held) = held.filter(|_| self.separated) else {
            return Err(Refusal {
                actor: Actor::new(who, attempted),
                request,
                message: format!(
                    "the certificate of {} carries no administrative role ({}); the admin API takes sysadmin, secadmin, auditor or reviewer certificates",
                    c.common_name,
                    c.role.as_deref().unwrap_or("no role")
                ),
            });
        };
        let actor = Actor::new(who, held.audit_role());
        match needed {
            Some(n) if n != held => Err(Refusal {
                actor,
                request,
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

/// The gate both sides put in front of their request handler: authorize,
/// record, then act. A status read is neither recorded nor refused to a
/// known administrator; everything else is recorded before it runs, and
/// does not run if the record cannot be written.
pub fn gate(
    admin: &AdminPlane,
    audit: &crate::audit_trail::AuditTrail,
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
            audit.note(refusal.record());
            refusal.answer()
        }
        Ok(actor) => {
            if !matches!(req, Request::Status | Request::AuditNote { .. }) {
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
        Caller::certificate(crate::control::CertCaller {
            common_name: cn.into(),
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
