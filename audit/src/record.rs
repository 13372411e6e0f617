//! What one audit record says: who did what to which package or rule, with
//! which outcome and why. The fields follow what GB/T 22239 level 3/4 asks an
//! audit record to carry (time, subject, object, event type, outcome).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The kinds of event ferry records. The dotted name is what appears in the
/// log, in exports and in `--event` filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum EventKind {
    /// A package was pushed (HTTPS or spool) and authenticated.
    #[serde(rename = "package.pushed")]
    PackagePushed,
    /// The policy decided on a package (allowed or refused, with the rule).
    #[serde(rename = "policy.decided")]
    PolicyDecided,
    /// The content guard inspected a package on the ingress side.
    #[serde(rename = "guard.inspected")]
    GuardInspected,
    /// A human approver approved a package (two-person rule).
    #[serde(rename = "approval.approved")]
    ApprovalApproved,
    /// A human approver rejected a package.
    #[serde(rename = "approval.rejected")]
    ApprovalRejected,
    /// An accepted package was held out of the sequence order until its
    /// channel's time window opens.
    #[serde(rename = "package.held")]
    PackageHeld,
    /// A held package was released into the send queue (its window opened).
    #[serde(rename = "package.released")]
    PackageReleased,
    /// The package was signed and encrypted for the link.
    #[serde(rename = "package.sealed")]
    PackageSealed,
    /// The package was sent over the one-way link.
    #[serde(rename = "package.sent")]
    PackageSent,
    /// The egress side received and opened the package.
    #[serde(rename = "package.received")]
    PackageReceived,
    /// The egress side's content guard inspected the package again.
    #[serde(rename = "guard.reinspected")]
    GuardReinspected,
    /// The package was delivered to its destination.
    #[serde(rename = "package.delivered")]
    PackageDelivered,
    /// The package failed at some step and was not delivered.
    #[serde(rename = "package.failed")]
    PackageFailed,
    /// The policy file was (re)loaded.
    #[serde(rename = "policy.reloaded")]
    PolicyReloaded,
    /// An administrator action (allowed or refused).
    #[serde(rename = "admin.action")]
    AdminAction,
    /// A key was rotated or retired.
    #[serde(rename = "key.rotated")]
    KeyRotated,
    /// The audit officer read, queried, exported, verified or forwarded the log.
    #[serde(rename = "audit.read")]
    AuditRead,
    /// Retention deleted whole expired segments.
    #[serde(rename = "audit.retention")]
    AuditRetention,
    /// The writer found a torn tail after a crash and truncated it.
    #[serde(rename = "audit.recovered")]
    AuditRecovered,
    /// A new audit log was created.
    #[serde(rename = "audit.init")]
    AuditInit,
    /// ferryd started.
    #[serde(rename = "daemon.start")]
    DaemonStart,
    /// ferryd stopped.
    #[serde(rename = "daemon.stop")]
    DaemonStop,
    /// A client (pusher, spool file) was refused before any package
    /// existed: a connection cap, a failed handshake, a bad request or
    /// file name, a revoked certificate.
    #[serde(rename = "client.refused")]
    ClientRefused,
    /// The egress side received authenticated link traffic that was not
    /// fresh (a replayed heartbeat): someone replays captured datagrams, or
    /// the ingress clock stepped back.
    #[serde(rename = "link.replay")]
    LinkReplay,
    /// A gap in the link's sequence numbers was opened, closed by a
    /// delivery, or acknowledged by an administrator as never coming.
    #[serde(rename = "link.gap")]
    LinkGap,
    /// The egress receive spool was full and dropped datagrams: the sender
    /// is paced faster than this side sustains for longer than the spool
    /// holds.
    #[serde(rename = "link.overrun")]
    LinkOverrun,
    /// Datagrams of this link arrived in a suite format this build
    /// retired (the ingress side runs an older ferryd): dropped before any
    /// other work until the ingress side is upgraded.
    #[serde(rename = "link.format")]
    LinkFormat,
    /// A ClamAV signature database that came over the link was verified,
    /// put into clamd's database directory and loaded.
    #[serde(rename = "signatures.applied")]
    SignaturesApplied,
    /// A signature package was refused (name, header, digital signature,
    /// version or a failed test load): nothing of it was used.
    #[serde(rename = "signatures.refused")]
    SignaturesRefused,
}

impl EventKind {
    /// Every kind, in vocabulary order.
    pub const ALL: [EventKind; 29] = [
        EventKind::PackagePushed,
        EventKind::PolicyDecided,
        EventKind::GuardInspected,
        EventKind::ApprovalApproved,
        EventKind::ApprovalRejected,
        EventKind::PackageHeld,
        EventKind::PackageReleased,
        EventKind::PackageSealed,
        EventKind::PackageSent,
        EventKind::PackageReceived,
        EventKind::GuardReinspected,
        EventKind::PackageDelivered,
        EventKind::PackageFailed,
        EventKind::PolicyReloaded,
        EventKind::AdminAction,
        EventKind::KeyRotated,
        EventKind::AuditRead,
        EventKind::AuditRetention,
        EventKind::AuditRecovered,
        EventKind::AuditInit,
        EventKind::DaemonStart,
        EventKind::DaemonStop,
        EventKind::ClientRefused,
        EventKind::LinkReplay,
        EventKind::LinkGap,
        EventKind::LinkOverrun,
        EventKind::LinkFormat,
        EventKind::SignaturesApplied,
        EventKind::SignaturesRefused,
    ];

    /// The dotted name (`package.pushed`).
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::PackagePushed => "package.pushed",
            EventKind::PolicyDecided => "policy.decided",
            EventKind::GuardInspected => "guard.inspected",
            EventKind::ApprovalApproved => "approval.approved",
            EventKind::ApprovalRejected => "approval.rejected",
            EventKind::PackageHeld => "package.held",
            EventKind::PackageReleased => "package.released",
            EventKind::PackageSealed => "package.sealed",
            EventKind::PackageSent => "package.sent",
            EventKind::PackageReceived => "package.received",
            EventKind::GuardReinspected => "guard.reinspected",
            EventKind::PackageDelivered => "package.delivered",
            EventKind::PackageFailed => "package.failed",
            EventKind::PolicyReloaded => "policy.reloaded",
            EventKind::AdminAction => "admin.action",
            EventKind::KeyRotated => "key.rotated",
            EventKind::AuditRead => "audit.read",
            EventKind::AuditRetention => "audit.retention",
            EventKind::AuditRecovered => "audit.recovered",
            EventKind::AuditInit => "audit.init",
            EventKind::DaemonStart => "daemon.start",
            EventKind::DaemonStop => "daemon.stop",
            EventKind::ClientRefused => "client.refused",
            EventKind::LinkReplay => "link.replay",
            EventKind::LinkGap => "link.gap",
            EventKind::LinkOverrun => "link.overrun",
            EventKind::LinkFormat => "link.format",
            EventKind::SignaturesApplied => "signatures.applied",
            EventKind::SignaturesRefused => "signatures.refused",
        }
    }

    /// Parses a dotted name.
    pub fn parse(s: &str) -> Option<EventKind> {
        EventKind::ALL.iter().copied().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The role under which the actor acted (three-officer separation plus the
/// senders, approvers and the service itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// An intranet system pushing packages with a client certificate.
    Sender,
    /// A human approver (two-person rule).
    Approver,
    /// 安全保密管理员: edits and loads the policy.
    SecurityAdmin,
    /// 系统管理员: runs the service.
    SystemAdmin,
    /// 安全审计员: reads and verifies the audit log.
    Auditor,
    /// ferryd itself (link events, deliveries, retention).
    System,
    /// No role: a caller refused because it holds none (the role its
    /// request needed is a detail of the record, not its role).
    None,
}

impl Role {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Sender => "sender",
            Role::Approver => "approver",
            Role::SecurityAdmin => "security_admin",
            Role::SystemAdmin => "system_admin",
            Role::Auditor => "auditor",
            Role::System => "system",
            Role::None => "none",
        }
    }
}

/// Who acted: a certificate identity or an administrator's account, and the role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// Certificate subject / SAN, or the unix user of an administrator.
    pub id: String,
    /// The role under which the action was taken.
    pub role: Role,
}

impl Actor {
    /// Builds an actor.
    pub fn new(id: impl Into<String>, role: Role) -> Self {
        Actor {
            id: id.into(),
            role,
        }
    }

    /// ferryd itself.
    pub fn system() -> Self {
        Actor::new("ferryd", Role::System)
    }
}

/// How the event ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The step succeeded.
    Success,
    /// The step failed (error, not a decision).
    Failure,
    /// A decision allowed the action.
    Allowed,
    /// A decision refused the action.
    Refused,
}

impl Outcome {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Allowed => "allowed",
            Outcome::Refused => "refused",
        }
    }

    /// Parses the lowercase name.
    pub fn parse(s: &str) -> Option<Outcome> {
        [
            Outcome::Success,
            Outcome::Failure,
            Outcome::Allowed,
            Outcome::Refused,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
    }
}

/// One event as the caller hands it to [`crate::AuditLog::append`]. Sequence
/// number and time are assigned by the log. `details` is free-form but must
/// never hold sensitive values: hashes and ids only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// What happened.
    pub event: EventKind,
    /// Who did it.
    pub actor: Actor,
    /// The package concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    /// The channel concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// The policy rule that decided, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Hash of the policy in force, if relevant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_hash: Option<String>,
    /// How it ended.
    pub outcome: Outcome,
    /// Why (refusal reason, error), short and free of secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Extra ids and hashes (digest, size, approver, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, String>,
}

impl AuditRecord {
    /// A record with only the mandatory fields.
    pub fn new(event: EventKind, actor: Actor, outcome: Outcome) -> Self {
        AuditRecord {
            event,
            actor,
            package: None,
            channel: None,
            rule: None,
            policy_hash: None,
            outcome,
            reason: None,
            details: BTreeMap::new(),
        }
    }

    /// Sets the package id.
    pub fn package(mut self, id: impl Into<String>) -> Self {
        self.package = Some(id.into());
        self
    }

    /// Sets the channel.
    pub fn channel(mut self, name: impl Into<String>) -> Self {
        self.channel = Some(name.into());
        self
    }

    /// Sets the rule id.
    pub fn rule(mut self, id: impl Into<String>) -> Self {
        self.rule = Some(id.into());
        self
    }

    /// Sets the policy hash.
    pub fn policy_hash(mut self, hash: impl Into<String>) -> Self {
        self.policy_hash = Some(hash.into());
        self
    }

    /// Sets the reason.
    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// Adds a detail (ids and hashes only).
    pub fn detail(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.details.insert(key.into(), value.into());
        self
    }
}

/// A record as read back from the log, with its sequence number and time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRecord {
    /// Sequence number (1, 2, ... without gaps).
    pub seq: u64,
    /// UTC time the log accepted it, milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// The record.
    #[serde(flatten)]
    pub record: AuditRecord,
}
