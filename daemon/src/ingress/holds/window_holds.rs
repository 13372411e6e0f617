//! Time windows on the ingress side: "time windows from the policy hold
//! packages queued until the window opens". A package the policy allows
//! except that a window is closed is accepted (every other check done,
//! durable, audited), held out of the sequence order like a package under
//! review, and queued by ferryd itself once the window is open, so the
//! sender pushes once and the egress side never sees a gap for it.
//!
//! Packages already queued when their channel's window closes are moved
//! into the same holds by the send loop. Reviewers cannot release these
//! holds. Spool files are not held here: they wait in the spool.

use crate::admin::protocol;
use crate::ingress::queue::queue_package;
use crate::ingress::shared::Shared;
use crate::ops::audit_trail::{Actor, AuditRecord, EventKind, Outcome};
use crate::state::store::{HeldPackage, HoldKind, QueuedPackage};
use crate::{now_millis, DaemonError};
use ferry_policy::{ApprovalRequirement, NoUsage, Policy, Verdict};
use ferry_protocol::manifest::PackageMeta;
use std::path::Path;
use time::OffsetDateTime;

/// How long to wait before looking again when the policy cannot say when
/// a closed window opens (a window that never opens is refused at load,
/// so this is a safety net, not a schedule).
const RECHECK_MS: u64 = 60_000;

/// What to do with a package waiting for its window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Release {
    /// Not yet: look again at this time (ms since the Unix epoch).
    Wait {
        /// When to look again.
        until_unix_ms: u64,
    },
    /// The window is open: queue it.
    Go,
    /// The policy in force now asks for approvals this package never had:
    /// hold it for review first.
    Review(ApprovalRequirement),
    /// The policy in force now refuses it: delete it, never send it.
    Refuse {
        /// In words, for the audit record and the log.
        why: String,
        /// The deciding rule, if any.
        rule_id: Option<String>,
    },
}

/// Milliseconds since the Unix epoch of `t` (0 before 1970).
pub(crate) fn unix_ms(t: OffsetDateTime) -> u64 {
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

/// `ms` since the Unix epoch as RFC 3339 (UTC).
pub(crate) fn rfc3339(ms: u64) -> Option<String> {
    let t = ferry_common::rfc3339::from_unix_ms(i64::try_from(ms).ok()?)?;
    Some(ferry_common::rfc3339::format(t))
}

fn meta_str<'a>(meta: &'a serde_json::Value, key: &str) -> &'a str {
    meta.get(key).and_then(|v| v.as_str()).unwrap_or_default()
}

/// Whether a held package may go at `now` under `policy` (pure: the caller
/// acts). Nothing is decided before the time it waits for. Then the
/// channel must still be on this `link`; a package whose sender is known
/// is decided again inside its windows (deny rules, rules, types, names,
/// sizes; no quotas: it was charged when accepted), and the channel's
/// windows must be open now. A package that was already queued (no
/// sender kept) keeps the decision it was queued under, as every queued
/// package does.
pub(crate) fn release_decision(
    policy: &Policy,
    link: &str,
    h: &HeldPackage,
    now: OffsetDateTime,
) -> Release {
    let now_ms = unix_ms(now);
    if let Some(until) = h.window_until_unix_ms.filter(|&u| now_ms < u) {
        return Release::Wait {
            until_unix_ms: until,
        };
    }
    let meta = h.meta();
    let channel = meta_str(&meta, "channel");
    match policy.channel(channel) {
        None => {
            return Release::Refuse {
                why: format!(
                    "channel `{channel}` is not defined by the policy in force ({})",
                    policy.hash()
                ),
                rule_id: None,
            }
        }
        Some(c) if c.link != link => {
            return Release::Refuse {
                why: format!(
                    "channel `{channel}` is now carried by link `{}`, not by this one (`{link}`)",
                    c.link
                ),
                rule_id: None,
            }
        }
        Some(_) => {}
    }
    if let Some(subject) = &h.subject {
        let d = policy.decide_inside_windows(
            &ferry_policy::Request {
                identity: subject.clone(),
                channel: channel.to_owned(),
                file_name: meta_str(&meta, "file_name").to_owned(),
                content_type: meta_str(&meta, "content_type").to_owned(),
                size_bytes: h.bytes,
                at: now,
            },
            &NoUsage,
        );
        if d.verdict != Verdict::Allow {
            let reasons: Vec<String> = d.reasons.iter().map(|r| r.to_string()).collect();
            return Release::Refuse {
                why: format!("refused by the policy in force: {}", reasons.join("; ")),
                rule_id: d.rule_id,
            };
        }
        if let Some(req) = d.approval {
            if h.reviewers_needed == 0 {
                return Release::Review(req);
            }
        }
    }
    match policy.channel_closed_until(channel, now) {
        Some(next) => Release::Wait {
            until_unix_ms: next.map_or(now_ms.saturating_add(RECHECK_MS), unix_ms),
        },
        None => Release::Go,
    }
}

/// When the windows of `channel` open, if they are closed now (ms since
/// the Unix epoch); `None` when open, or without a policy.
pub(crate) fn closed_until(s: &Shared, channel: &str) -> Option<u64> {
    let gate = s.policy.as_ref()?;
    let now = crate::now_utc();
    let next = gate.current().channel_closed_until(channel, now)?;
    Some(next.map_or(unix_ms(now).saturating_add(RECHECK_MS), unix_ms))
}

fn held_record(id: [u8; 16], channel: &str, until: u64, why: &str) -> AuditRecord {
    let mut r = AuditRecord::new(EventKind::PackageHeld, Actor::system(), Outcome::Success)
        .package(hex::encode(id))
        .channel(channel.to_owned())
        .reason(why.to_owned())
        .detail("hold", "window")
        .detail("until_unix_ms", until.to_string());
    if let Some(t) = rfc3339(until) {
        r = r.detail("opens_at", t);
    }
    r
}

/// Holds an accepted package until `until` (ms since the Unix epoch), when
/// its window opens. Audited before it is stored; `record_pushed` then
/// records the push itself.
pub(crate) fn hold(
    s: &Shared,
    meta: &PackageMeta,
    path: &Path,
    until: u64,
    subject: Option<ferry_policy::Subject>,
) -> Result<(), DaemonError> {
    let why = format!(
        "channel `{}` is outside its time window; queued when it opens",
        meta.channel
    );
    s.audit
        .record(held_record(meta.id.0, &meta.channel, until, &why))?;
    let held = HeldPackage {
        path: path.to_string_lossy().into_owned(),
        meta_json: crate::state::meta::meta_to_json(meta).to_string(),
        bytes: meta.size,
        held_unix_ms: now_millis().0,
        expires_unix_ms: u64::MAX,
        requirement: String::new(),
        reviewers_needed: 0,
        roles: Vec::new(),
        allow_submitter: false,
        reasons: vec![why],
        approvals: Vec::new(),
        channel_stopped: false,
        window_until_unix_ms: Some(until),
        subject,
    };
    s.store.hold_put(meta.id.0, &held)?;
    protocol::update(&s.status, |st| st.awaiting_window += 1);
    Ok(())
}

/// Moves a queued package whose channel's window has closed out of the
/// sequence order (called by the send loop, which alone moves packages out
/// of `Queued`). Held first, then unqueued: a crash in between leaves it
/// queued, and start-up drops the duplicate hold.
pub(crate) fn hold_queued(
    s: &Shared,
    id: [u8; 16],
    q: &QueuedPackage,
    channel: &str,
    until: u64,
) -> Result<(), DaemonError> {
    let why = format!(
        "channel `{channel}` window closed while it was queued; queued again when it opens"
    );
    // Noted, not required: the send loop must not stop over an audit
    // failure, and the package stays on this side either way.
    s.audit.note(held_record(id, channel, until, &why));
    let held = HeldPackage {
        path: q.path.clone(),
        meta_json: q.meta_json.clone(),
        bytes: q.bytes,
        held_unix_ms: now_millis().0,
        expires_unix_ms: u64::MAX,
        requirement: String::new(),
        reviewers_needed: 0,
        roles: Vec::new(),
        allow_submitter: false,
        reasons: vec![why],
        approvals: Vec::new(),
        channel_stopped: false,
        window_until_unix_ms: Some(until),
        subject: None,
    };
    s.store.hold_put(id, &held)?;
    s.store.remove(id)?;
    protocol::update(&s.status, |st| st.awaiting_window += 1);
    tracing::info!(package = %hex::encode(id), channel, "held: its channel's window is closed");
    Ok(())
}

/// After the last approval: `Some(until)` when the package must still wait
/// for its window (it becomes a window hold), `None` when it may be queued.
/// Approvals keep their grant: only the window is asked here.
pub(crate) fn wait_after_approval(s: &Shared, h: &HeldPackage) -> Option<u64> {
    let gate = s.policy.as_ref()?;
    match release_decision(&gate.current(), &s.cfg.link.name, h, crate::now_utc()) {
        Release::Wait { until_unix_ms } => Some(until_unix_ms),
        _ => None,
    }
}

/// Records that an approved package now waits for its window and stores
/// it so (the caller holds the approvals lock).
pub(crate) fn hold_approved(
    s: &Shared,
    id: [u8; 16],
    mut h: HeldPackage,
    until: u64,
) -> Result<(), DaemonError> {
    let channel = meta_str(&h.meta(), "channel").to_owned();
    let why =
        format!("approved; channel `{channel}` is outside its time window; queued when it opens");
    s.audit.record(held_record(id, &channel, until, &why))?;
    h.window_until_unix_ms = Some(until);
    h.expires_unix_ms = u64::MAX;
    h.reasons.push(why);
    s.store.hold_put(id, &h)?;
    protocol::update(&s.status, |st| {
        st.awaiting_approval = st.awaiting_approval.saturating_sub(1);
        st.awaiting_window += 1;
    });
    Ok(())
}

/// Queues every window-held package whose window is open (called every
/// second by the send loop), refuses those the policy in force denies, and
/// hands to reviewers those it now wants approved. Each step is audited
/// before it takes effect; a step that cannot be recorded is tried again
/// on the next tick.
pub(crate) fn release_due(s: &Shared) {
    let Ok(_guard) = s.approvals_lock.lock() else {
        return;
    };
    let now = crate::now_utc();
    let now_ms = unix_ms(now);
    let held = match s.store.hold_list() {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %e, "cannot list held packages");
            return;
        }
    };
    let policy = s.policy.as_ref().map(|g| g.current());
    for (id, h) in held {
        let HoldKind::Window { until_unix_ms } = h.kind() else {
            continue;
        };
        if until_unix_ms > now_ms {
            continue;
        }
        let channel = meta_str(&h.meta(), "channel").to_owned();
        if s.stopped(&channel).is_some() {
            // Nothing leaves a stopped channel; looked at again once started.
            continue;
        }
        let decided = match &policy {
            Some(p) => release_decision(p, &s.cfg.link.name, &h, now),
            // `[policy]` removed: no windows are in force any more.
            None => Release::Go,
        };
        let done = match decided {
            Release::Wait { until_unix_ms } => {
                let mut h = h;
                h.window_until_unix_ms = Some(until_unix_ms);
                s.store.hold_put(id, &h).map_err(DaemonError::from)
            }
            Release::Go => release(s, id, &h, &channel),
            Release::Review(req) => to_review(s, id, h, &req),
            Release::Refuse { why, rule_id } => refuse(s, id, &h, &channel, &why, rule_id),
        };
        if let Err(e) = done {
            tracing::error!(package = %hex::encode(id), error = %e, "a window-held package could not be moved; trying again");
        }
    }
}

fn release(s: &Shared, id: [u8; 16], h: &HeldPackage, channel: &str) -> Result<(), DaemonError> {
    let Some(pkg) = crate::state::meta::meta_from_json(&h.meta()) else {
        return Err(DaemonError::Package {
            id: hex::encode(id),
            what: "held record unreadable".into(),
        });
    };
    s.audit.record(
        AuditRecord::new(
            EventKind::PackageReleased,
            Actor::system(),
            Outcome::Success,
        )
        .package(hex::encode(id))
        .channel(channel.to_owned())
        .reason("its channel's time window is open")
        .detail("hold", "window"),
    )?;
    // Queued first, then the hold removed: a crash in between leaves both,
    // and start-up drops the hold of a package already queued.
    let seq = queue_package(s, &pkg, Path::new(&h.path), &h.meta())?;
    s.store.hold_remove(id)?;
    protocol::update(&s.status, |st| {
        st.awaiting_window = st.awaiting_window.saturating_sub(1)
    });
    tracing::info!(package = %hex::encode(id), seq, channel, "window open; queued");
    Ok(())
}

fn to_review(
    s: &Shared,
    id: [u8; 16],
    mut h: HeldPackage,
    req: &ApprovalRequirement,
) -> Result<(), DaemonError> {
    let why = format!(
        "the policy in force needs {} approval(s) under [approval.{}] before it is sent",
        req.reviewers, req.name
    );
    s.audit.record(
        AuditRecord::new(EventKind::PackageHeld, Actor::system(), Outcome::Success)
            .package(hex::encode(id))
            .reason(why.clone())
            .detail("hold", "approval")
            .detail("approval", req.name.clone()),
    )?;
    h.requirement = req.name.clone();
    h.reviewers_needed = req.reviewers;
    h.roles = req.roles.clone();
    h.allow_submitter = req.allow_submitter;
    h.expires_unix_ms = now_millis()
        .0
        .saturating_add(req.expires_after_s.saturating_mul(1000));
    h.reasons.push(why);
    s.store.hold_put(id, &h)?;
    protocol::update(&s.status, |st| {
        st.awaiting_window = st.awaiting_window.saturating_sub(1);
        st.awaiting_approval += 1;
    });
    tracing::info!(package = %hex::encode(id), approval = %req.name, "window open, but approvals are now required; held for review");
    Ok(())
}

fn refuse(
    s: &Shared,
    id: [u8; 16],
    h: &HeldPackage,
    channel: &str,
    why: &str,
    rule_id: Option<String>,
) -> Result<(), DaemonError> {
    let mut r = AuditRecord::new(EventKind::PolicyDecided, Actor::system(), Outcome::Refused)
        .package(hex::encode(id))
        .channel(channel.to_owned())
        .reason(why.to_owned())
        .detail("verdict", "deny")
        .detail("at", "window release");
    if let Some(p) = &s.policy {
        r = r.policy_hash(p.current().hash().to_owned());
    }
    if let Some(rule) = rule_id {
        r = r.rule(rule);
    }
    s.audit.record(r)?;
    crate::ingress::holds::drop_held(s, id, h)?;
    tracing::warn!(package = %hex::encode(id), channel, "{why}; held package deleted");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    // 2026-11-30 is a Monday.
    const POLICY: &str = r#"
[policy]
time_zone = "UTC"

[identity.feed]
cn = "feed"

[window.night]
from = "22:00"
to = "06:00"

[approval.one]
reviewers = 1
roles = ["reviewer"]
expires_after_s = 3600

[channel.night]
direction = "import"
link = "e2e"
windows = ["night"]

[channel.reviewed]
direction = "import"
link = "e2e"
approval = "one"

[channel.elsewhere]
direction = "import"
link = "other"

[[rule]]
id = "no-exe"
effect = "deny"
identities = ["*"]
channels = ["*"]
names = ["*.exe"]

[[rule]]
id = "feed"
effect = "allow"
identities = ["feed"]
channels = ["night", "reviewed", "elsewhere"]
"#;

    fn policy(text: &str) -> Policy {
        let (p, w) = ferry_policy::parse_str(text, "p.toml").expect("policy");
        assert!(w.is_empty(), "{w:?}");
        p
    }

    fn feed() -> ferry_policy::Subject {
        ferry_policy::Subject {
            subject: "CN=feed".into(),
            common_name: Some("feed".into()),
            ..Default::default()
        }
    }

    fn held(channel: &str, name: &str, until: OffsetDateTime) -> HeldPackage {
        HeldPackage {
            path: "/q/x".into(),
            meta_json: serde_json::json!({
                "channel": channel,
                "file_name": name,
                "content_type": "text/csv",
            })
            .to_string(),
            bytes: 10,
            held_unix_ms: 0,
            expires_unix_ms: u64::MAX,
            requirement: String::new(),
            reviewers_needed: 0,
            roles: Vec::new(),
            allow_submitter: false,
            reasons: Vec::new(),
            approvals: Vec::new(),
            channel_stopped: false,
            window_until_unix_ms: Some(unix_ms(until)),
            subject: Some(feed()),
        }
    }

    const OPENS: OffsetDateTime = datetime!(2026-11-30 22:00 UTC);

    #[test]
    fn waits_for_its_time_then_for_the_channel_then_goes() {
        let p = policy(POLICY);
        let h = held("night", "a.csv", OPENS);
        assert_eq!(
            h.kind(),
            HoldKind::Window {
                until_unix_ms: unix_ms(OPENS)
            }
        );
        // Before the opening nothing is decided.
        assert_eq!(
            release_decision(&p, "e2e", &h, datetime!(2026-11-30 21:59:59 UTC)),
            Release::Wait {
                until_unix_ms: unix_ms(OPENS)
            }
        );
        assert_eq!(release_decision(&p, "e2e", &h, OPENS), Release::Go);
        // Past its time, but the channel is closed again (a late tick, or
        // a reload that moved the window): wait for the next opening.
        assert_eq!(
            release_decision(&p, "e2e", &h, datetime!(2026-12-01 12:00 UTC)),
            Release::Wait {
                until_unix_ms: unix_ms(datetime!(2026-12-01 22:00 UTC))
            }
        );
        // Moved out of the queue (no sender kept): the window alone decides.
        let queued = HeldPackage {
            subject: None,
            ..h.clone()
        };
        assert_eq!(release_decision(&p, "e2e", &queued, OPENS), Release::Go);
    }

    #[test]
    fn the_policy_in_force_refuses_or_asks_for_review() {
        // A reload forbids it: refused with the rule that forbids it.
        let p = policy(POLICY);
        let exe = held("night", "tool.exe", OPENS);
        match release_decision(&p, "e2e", &exe, OPENS) {
            Release::Refuse { why, rule_id } => {
                assert_eq!(rule_id.as_deref(), Some("no-exe"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        // The channel went away, or moved to another link.
        assert!(matches!(
            release_decision(&p, "e2e", &held("gone", "a.csv", OPENS), OPENS),
            Release::Refuse { .. }
        ));
        assert!(matches!(
            release_decision(&p, "e2e", &held("elsewhere", "a.csv", OPENS), OPENS),
            Release::Refuse { .. }
        ));
        // The channel now needs approvals it never had: review first…
        let h = held("reviewed", "a.csv", OPENS);
        match release_decision(&p, "e2e", &h, OPENS) {
            Release::Review(req) => assert_eq!(req.name, "one"),
            other => panic!("{other:?}"),
        }
        // …but a package approved already keeps its approval.
        let approved = HeldPackage {
            requirement: "one".into(),
            reviewers_needed: 1,
            approvals: vec![crate::state::store::ApprovalMark {
                principal: None,
                by: "unix:r (uid 1)".into(),
                uid: 1,
                unix_ms: 0,
                reason: "ok".into(),
            }],
            ..h
        };
        assert_eq!(
            approved.kind(),
            HoldKind::Window {
                until_unix_ms: unix_ms(OPENS)
            }
        );
        assert_eq!(release_decision(&p, "e2e", &approved, OPENS), Release::Go);
    }

    #[test]
    fn old_records_read_as_approval_or_stopped_holds() {
        let old = r#"{"path":"/q/x","meta_json":"{}","bytes":1,"held_unix_ms":1,
            "expires_unix_ms":2,"requirement":"two","reviewers_needed":2,"roles":[],
            "allow_submitter":false,"reasons":[],"approvals":[]}"#;
        let h: HeldPackage = serde_json::from_str(old).expect("old record");
        assert_eq!((h.kind(), h.subject), (HoldKind::Approval, None));
        let stopped = old.replace(
            "\"approvals\":[]",
            "\"approvals\":[],\"channel_stopped\":true",
        );
        let h: HeldPackage = serde_json::from_str(&stopped).expect("old record");
        assert_eq!(h.kind(), HoldKind::ChannelStopped);
    }

    #[test]
    fn times_print_as_rfc3339() {
        assert_eq!(
            rfc3339(unix_ms(OPENS)).as_deref(),
            Some("2026-11-30T22:00:00Z")
        );
    }
}
