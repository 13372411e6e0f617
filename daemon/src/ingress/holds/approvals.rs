//! The two-person rule on the ingress side: a package on a channel whose
//! policy names an `[approval.NAME]` is held until that many distinct
//! reviewers approve it, is rejected by any one of them, or expires.
//!
//! Held packages live in their own redb table, outside the sequence order:
//! a package under review takes a sequence number only once approved, so it
//! never shows up as a gap on the egress side. Every approval, rejection and
//! expiry is written to the audit log before it takes effect.
//!
//! The same table holds packages waiting for a time window
//! ([`crate::ingress::holds::window_holds`]) and those of a stopped channel; reviewers see
//! them but cannot release them. A package that needs approvals and meets
//! a closed window is reviewed first; approved while the window is still
//! closed, it waits for the window.

use crate::admin::protocol::{self, Caller};
use crate::ingress::queue::queue_package;
use crate::ingress::shared::Shared;
use crate::state::store::{ApprovalMark, HeldPackage, HoldKind, StateStore};
use crate::{now_millis, DaemonError};
use ferry_audit::{Actor, AuditRecord, EventKind, Outcome, Role};
use ferry_protocol::manifest::PackageMeta;
use std::io::Read;
use std::path::Path;

/// The role name the admin plane gives reviewers; a policy's
/// `[approval] roles` must include it for them to approve.
const REVIEWER_ROLE: &str = "reviewer";
/// How much of a held package `show` previews.
const PREVIEW_BYTES: usize = 4096;

/// Holds an accepted package for approval; returns when it expires.
/// `window_until_unix_ms` is when the window that was closed at acceptance
/// opens, `subject` the sender as the policy saw it (both for the window
/// check once approved).
pub(crate) fn hold(
    s: &Shared,
    meta: &PackageMeta,
    path: &Path,
    req: &ferry_policy::ApprovalRequirement,
    reasons: Vec<String>,
    window_until_unix_ms: Option<u64>,
    subject: Option<ferry_policy::Subject>,
) -> Result<u64, DaemonError> {
    let now = now_millis().0;
    let expires = now.saturating_add(req.expires_after_s.saturating_mul(1000));
    let held = HeldPackage {
        path: path.to_string_lossy().into_owned(),
        meta_json: crate::state::meta::meta_to_json(meta).to_string(),
        bytes: meta.size,
        held_unix_ms: now,
        expires_unix_ms: expires,
        requirement: req.name.clone(),
        reviewers_needed: req.reviewers,
        roles: req.roles.clone(),
        allow_submitter: req.allow_submitter,
        reasons,
        approvals: Vec::new(),
        channel_stopped: false,
        window_until_unix_ms,
        subject,
    };
    s.store.hold_put(meta.id.0, &held)?;
    protocol::update(&s.status, |st| st.awaiting_approval += 1);
    Ok(expires)
}

/// Moves a queued package of a stopped channel out of the sequence order
/// (called by the send loop, which alone moves packages out of `Queued`).
/// Held first, then unqueued: a crash in between leaves it queued, and
/// start-up drops the duplicate hold.
pub(crate) fn hold_stopped(
    s: &Shared,
    id: [u8; 16],
    q: &crate::state::store::QueuedPackage,
    stop: &crate::state::store::StoppedChannel,
) -> Result<(), DaemonError> {
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
        reasons: vec![format!("channel stopped by {}: {}", stop.by, stop.reason)],
        approvals: Vec::new(),
        channel_stopped: true,
        window_until_unix_ms: None,
        subject: None,
    };
    s.store.hold_put(id, &held)?;
    s.store.remove(id)?;
    tracing::info!(package = %hex::encode(id), "held: its channel is stopped");
    Ok(())
}

/// Queues again, under new sequence numbers, the packages held because
/// `channel` was stopped; returns how many.
pub(crate) fn release_stopped(s: &Shared, channel: &str) -> Result<usize, DaemonError> {
    let _guard = s.approvals_lock.lock().map_err(|_| DaemonError::Poisoned)?;
    let mut n = 0;
    for (id, h) in s.store.hold_list()? {
        if !h.channel_stopped {
            continue;
        }
        let meta = h.meta();
        if meta.get("channel").and_then(|c| c.as_str()) != Some(channel) {
            continue;
        }
        let Some(pkg) = crate::state::meta::meta_from_json(&meta) else {
            return Err(DaemonError::Package {
                id: hex::encode(id),
                what: "held record unreadable".into(),
            });
        };
        queue_package(s, &pkg, Path::new(&h.path), &meta)?;
        s.store.hold_remove(id)?;
        n += 1;
    }
    Ok(n)
}

fn parse_id(id: &str) -> Result<[u8; 16], serde_json::Value> {
    hex::decode(id)
        .ok()
        .and_then(|b| <[u8; 16]>::try_from(b).ok())
        .ok_or_else(|| serde_json::json!({ "error": "a package id is 32 hex digits" }))
}

fn summary(id: &[u8; 16], h: &HeldPackage) -> serde_json::Value {
    let meta = h.meta();
    let kind = h.kind();
    let window_until = match kind {
        HoldKind::Window { until_unix_ms } => Some(until_unix_ms),
        _ => None,
    };
    serde_json::json!({
        "state": kind.state(),
        "hold_until_unix_ms": window_until,
        "hold_until": window_until.and_then(crate::ingress::holds::window_holds::rfc3339),
        "package_id": hex::encode(id),
        "channel": meta.get("channel"),
        "file_name": meta.get("file_name"),
        "content_type": meta.get("content_type"),
        "submitter": meta.get("sender_identity"),
        "size": h.bytes,
        "held_unix_ms": h.held_unix_ms,
        "expires_unix_ms": h.expires_unix_ms,
        "requirement": h.requirement,
        "approvals": h.approvals.len(),
        "needed": h.reviewers_needed,
        "approved_by": h.approvals.iter().map(|a| a.by.clone()).collect::<Vec<_>>(),
        "reasons": h.reasons,
        "channel_stopped": h.channel_stopped,
    })
}

/// `approvals list`.
pub(crate) fn list(s: &Shared) -> serde_json::Value {
    match s.store.hold_list() {
        Ok(v) => serde_json::json!({
            "held": v.iter().map(|(id, h)| summary(id, h)).collect::<Vec<_>>()
        }),
        Err(e) => serde_json::json!({ "error": e.to_string() }),
    }
}

/// `approvals show ID`: the summary, every approval, and a preview of the
/// content when it is text.
pub(crate) fn show(s: &Shared, id: &str) -> serde_json::Value {
    let bytes = match parse_id(id) {
        Ok(b) => b,
        Err(e) => return e,
    };
    let h = match s.store.hold_get(bytes) {
        Ok(Some(h)) => h,
        Ok(None) => return not_held(id),
        Err(e) => return serde_json::json!({ "error": e.to_string() }),
    };
    let mut v = summary(&bytes, &h);
    v["approval_marks"] = serde_json::to_value(&h.approvals).unwrap_or_default();
    v["preview"] = preview(Path::new(&h.path));
    v
}

/// The first bytes as text when they are text (UTF-8, no control
/// characters but tab and line ends), else a note that it is binary.
fn preview(path: &Path) -> serde_json::Value {
    let mut buf = Vec::with_capacity(PREVIEW_BYTES);
    let read =
        std::fs::File::open(path).and_then(|f| f.take(PREVIEW_BYTES as u64).read_to_end(&mut buf));
    if let Err(e) = read {
        return serde_json::json!(format!("(cannot read the held copy: {e})"));
    }
    // A cut through a multi-byte character at the end is not binary.
    let valid = match std::str::from_utf8(&buf) {
        Ok(t) => t,
        Err(e) if e.error_len().is_none() => {
            std::str::from_utf8(&buf[..e.valid_up_to()]).unwrap_or_default()
        }
        Err(_) => return serde_json::json!("(binary content: no preview)"),
    };
    if valid
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    {
        return serde_json::json!("(binary content: no preview)");
    }
    serde_json::json!(valid)
}

fn window_hold(id: &str, until_unix_ms: u64) -> serde_json::Value {
    let when = crate::ingress::holds::window_holds::rfc3339(until_unix_ms)
        .unwrap_or_else(|| format!("{until_unix_ms} ms"));
    serde_json::json!({
        "error": format!("package {id} is not awaiting review: it is accepted and held until its channel's time window opens (at {when}); ferryd queues it then, and no reviewer can send it earlier or reject it")
    })
}

/// The refusal for a hold reviewers may not touch, if it is one.
fn not_for_reviewers(id: &str, h: &HeldPackage) -> Option<serde_json::Value> {
    match h.kind() {
        HoldKind::Approval => None,
        HoldKind::Window { until_unix_ms } => Some(window_hold(id, until_unix_ms)),
        HoldKind::ChannelStopped => Some(stopped_hold(id)),
    }
}

fn stopped_hold(id: &str) -> serde_json::Value {
    serde_json::json!({
        "error": format!("package {id} is held because its channel is stopped, not for review; the system administrator releases it with `ferryctl channel start`")
    })
}

fn not_held(id: &str) -> serde_json::Value {
    serde_json::json!({
        "error": format!("no package {id} is awaiting approval (approved, rejected, expired, or never held); `ferryctl approvals list` shows those that are")
    })
}

/// The `CN=` of a certificate subject as recorded in a package's
/// `sender_identity`, to tell whether a reviewer pushed it.
fn common_name(subject: &str) -> Option<&str> {
    subject
        .split([',', '/'])
        .map(str::trim)
        .find_map(|part| part.strip_prefix("CN="))
        .map(|cn| cn.split(" (").next().unwrap_or(cn).trim())
}

/// The person who pushed a held package: by the same rule as a reviewer's
/// certificate ([`ferry_certs::person_of`]) from the subject the policy saw,
/// else from the CN recorded in `sender_identity` (holds made before the
/// subject was kept).
fn submitter_person(h: &HeldPackage, sender_identity: &str) -> Option<String> {
    match &h.subject {
        Some(sub) if sub.spool.is_none() => {
            let uris: Vec<&str> = sub
                .san
                .iter()
                .filter_map(|s| match s {
                    ferry_policy::San::Uri(u) => Some(u.as_str()),
                    _ => None,
                })
                .collect();
            ferry_certs::person_of(uris.iter().copied(), sub.common_name.as_deref())
        }
        Some(_) => None,
        None => common_name(sender_identity).map(str::to_ascii_lowercase),
    }
}

/// The person behind a reviewer's request: a certificate's person
/// ([`ferry_certs::Identity::person`]), or the account name on the control
/// socket. Both are the same namespace on purpose (documented in
/// operations.md): alice at the console and alice's certificate are one
/// reviewer.
fn reviewer_person(actor: &Actor, caller: &Caller) -> String {
    match &caller.cert {
        Some(c) => c.person.clone(),
        None => account_name(actor).to_ascii_lowercase(),
    }
}

/// The account name in an admin actor id (`unix:alice (uid 1001)`).
fn account_name(actor: &Actor) -> &str {
    actor
        .id
        .strip_prefix("unix:")
        .or_else(|| actor.id.strip_prefix("cert:"))
        .and_then(|rest| rest.split(" (").next())
        .unwrap_or(&actor.id)
}

/// `approvals approve ID --reason R` by a reviewer.
pub(crate) fn approve(
    s: &Shared,
    actor: Actor,
    caller: Caller,
    id: &str,
    reason: &str,
) -> serde_json::Value {
    match approve_inner(s, actor, caller, id, reason) {
        Ok(v) => v,
        Err(e) => serde_json::json!({ "error": e.to_string() }),
    }
}

fn approve_inner(
    s: &Shared,
    actor: Actor,
    caller: Caller,
    id: &str,
    reason: &str,
) -> Result<serde_json::Value, DaemonError> {
    let bytes = match parse_id(id) {
        Ok(b) => b,
        Err(e) => return Ok(e),
    };
    if reason.trim().is_empty() {
        return Ok(serde_json::json!({ "error": "say why: --reason is required" }));
    }
    // One approval at a time: two reviewers approving at once must not
    // both see "one more needed" and queue the package twice.
    let _guard = s.approvals_lock.lock().map_err(|_| DaemonError::Poisoned)?;
    let Some(mut h) = s.store.hold_get(bytes)? else {
        return Ok(not_held(id));
    };
    if let Some(refusal) = not_for_reviewers(id, &h) {
        return Ok(refusal);
    }
    if h.expires_unix_ms <= now_millis().0 {
        drop(_guard);
        expire(s);
        return Ok(not_held(id));
    }
    let refuse = |why: String| -> Result<serde_json::Value, DaemonError> {
        s.audit.note(
            AuditRecord::new(EventKind::ApprovalApproved, actor.clone(), Outcome::Refused)
                .package(id.to_owned())
                .reason(why.clone()),
        );
        Ok(serde_json::json!({ "error": why, "refused": true }))
    };
    if !h.roles.iter().any(|r| r == REVIEWER_ROLE) {
        return refuse(format!(
            "`[approval.{}]` admits roles {:?}; the admin plane's reviewers hold `{REVIEWER_ROLE}`: add it to `roles` in the policy",
            h.requirement, h.roles
        ));
    }
    // Reviewers are persons, not certificates or sessions: a renewed or
    // second certificate of the same person, or the same person at the
    // console and over the admin API, is one reviewer.
    let person = reviewer_person(&actor, &caller);
    let principal = format!("person:{person}");
    let legacy = caller.principal();
    let same = |a: &ApprovalMark| {
        let p = a
            .principal
            .clone()
            .unwrap_or_else(|| format!("uid:{}", a.uid));
        p == principal || p == legacy
    };
    if h.approvals.iter().any(same) {
        return refuse(format!(
            "{person} already approved package {id} (reviewers are counted by person, not by certificate); the two-person rule needs {} different persons",
            h.reviewers_needed
        ));
    }
    let meta = h.meta();
    let submitter = meta
        .get("sender_identity")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    if !h.allow_submitter && submitter_person(&h, submitter).as_deref() == Some(person.as_str()) {
        return refuse(format!(
            "you pushed package {id} ({submitter}); `[approval.{}]` does not let the submitter approve",
            h.requirement
        ));
    }
    let record = AuditRecord::new(EventKind::ApprovalApproved, actor.clone(), Outcome::Allowed)
        .package(id.to_owned())
        .reason(reason.to_owned())
        .detail("approval", h.requirement.clone())
        .detail(
            "count",
            format!("{} of {}", h.approvals.len() + 1, h.reviewers_needed),
        )
        .detail("person", person.clone());
    s.audit.record(record)?;
    h.approvals.push(ApprovalMark {
        by: actor.id.clone(),
        uid: caller.uid,
        principal: Some(principal),
        unix_ms: now_millis().0,
        reason: reason.to_owned(),
    });
    if h.approvals.len() < usize::from(h.reviewers_needed) {
        s.store.hold_put(bytes, &h)?;
        return Ok(serde_json::json!({
            "package_id": id,
            "state": "awaiting_approval",
            "approvals": h.approvals.len(),
            "needed": h.reviewers_needed,
        }));
    }
    let Some(pkg) = crate::state::meta::meta_from_json(&meta) else {
        return Err(DaemonError::Package {
            id: id.to_owned(),
            what: "held record unreadable".into(),
        });
    };
    if let Some(until) = crate::ingress::holds::window_holds::wait_after_approval(s, &h) {
        let approvals = h.approvals.len();
        let needed = h.reviewers_needed;
        crate::ingress::holds::window_holds::hold_approved(s, bytes, h, until)?;
        tracing::info!(package = %id, approvals, "approved; held until its window opens");
        return Ok(serde_json::json!({
            "package_id": id,
            "state": "awaiting_window",
            "hold_until_unix_ms": until,
            "hold_until": crate::ingress::holds::window_holds::rfc3339(until),
            "approvals": approvals,
            "needed": needed,
        }));
    }
    // Queued first, then the hold removed: a crash in between leaves both,
    // and start-up drops the hold of a package already queued.
    let seq = queue_package(s, &pkg, Path::new(&h.path), &meta)?;
    s.store.hold_remove(bytes)?;
    protocol::update(&s.status, |st| {
        st.awaiting_approval = st.awaiting_approval.saturating_sub(1)
    });
    tracing::info!(package = %id, seq, approvals = h.approvals.len(), "approved; queued");
    Ok(serde_json::json!({
        "package_id": id,
        "state": "queued",
        "seq": seq,
        "approvals": h.approvals.len(),
        "needed": h.reviewers_needed,
    }))
}

/// `approvals reject ID --reason R` by a reviewer: the package is deleted
/// and never sent.
pub(crate) fn reject(s: &Shared, actor: Actor, id: &str, reason: &str) -> serde_json::Value {
    let bytes = match parse_id(id) {
        Ok(b) => b,
        Err(e) => return e,
    };
    if reason.trim().is_empty() {
        return serde_json::json!({ "error": "say why: --reason is required" });
    }
    let result = (|| -> Result<serde_json::Value, DaemonError> {
        let _guard = s.approvals_lock.lock().map_err(|_| DaemonError::Poisoned)?;
        let Some(h) = s.store.hold_get(bytes)? else {
            return Ok(not_held(id));
        };
        if let Some(refusal) = not_for_reviewers(id, &h) {
            return Ok(refusal);
        }
        s.audit.record(
            AuditRecord::new(EventKind::ApprovalRejected, actor, Outcome::Success)
                .package(id.to_owned())
                .reason(reason.to_owned())
                .detail("approval", h.requirement.clone()),
        )?;
        crate::ingress::holds::drop_held(s, bytes, &h)?;
        tracing::info!(package = %id, "rejected by a reviewer");
        Ok(serde_json::json!({ "package_id": id, "state": "rejected" }))
    })();
    result.unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }))
}

/// Drops held packages past their expiry (called every second by the send
/// loop); each expiry is audited.
pub(crate) fn expire(s: &Shared) {
    let Ok(_guard) = s.approvals_lock.lock() else {
        return;
    };
    let now = now_millis().0;
    let held = match s.store.hold_list() {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %e, "cannot list held packages");
            return;
        }
    };
    for (id, h) in held
        .into_iter()
        .filter(|(_, h)| h.kind() == HoldKind::Approval && h.expires_unix_ms <= now)
    {
        let why = format!(
            "expired with {} of {} approvals",
            h.approvals.len(),
            h.reviewers_needed
        );
        let record = AuditRecord::new(
            EventKind::ApprovalRejected,
            Actor::new("ferryd", Role::System),
            Outcome::Success,
        )
        .package(hex::encode(id))
        .reason(why.clone())
        .detail("approval", h.requirement.clone());
        // Not recorded, not dropped: the next tick tries again.
        if let Err(e) = s.audit.record(record) {
            tracing::error!(error = %e, "cannot record an approval expiry");
            return;
        }
        if let Err(e) = crate::ingress::holds::drop_held(s, id, &h) {
            tracing::error!(error = %e, "cannot drop an expired package");
            continue;
        }
        tracing::warn!(package = %hex::encode(id), "{why}; dropped");
    }
}

/// Held packages by kind, as the status shows them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HeldCounts {
    /// Waiting for reviewers.
    pub(crate) awaiting_approval: u64,
    /// Waiting for their channel's window.
    pub(crate) awaiting_window: u64,
}

/// At start-up: a package both queued and held was released (approved,
/// its window opened, or moved out of the queue) just before a crash; it
/// is queued, so its hold goes. The count of held packages is published.
pub(crate) fn reconcile(s: &Shared) -> Result<(), DaemonError> {
    let counts = reconcile_store(&s.store)?;
    protocol::update(&s.status, |st| {
        st.awaiting_approval = counts.awaiting_approval;
        st.awaiting_window = counts.awaiting_window;
    });
    Ok(())
}

/// The store's half of [`reconcile`]: drops the hold of every package that
/// is also queued (each path that queues a held package writes the queue
/// entry before it removes the hold, and the send loop holds before it
/// unqueues, so "both" always means "queued wins") and counts the rest.
pub(crate) fn reconcile_store(store: &StateStore) -> Result<HeldCounts, DaemonError> {
    let mut counts = HeldCounts::default();
    for (id, h) in store.hold_list()? {
        if store.get(id)?.is_some() {
            store.hold_remove(id)?;
            tracing::info!(package = %hex::encode(id), "queued before a restart; hold cleared");
            continue;
        }
        match h.kind() {
            HoldKind::Approval => counts.awaiting_approval += 1,
            HoldKind::Window { .. } => counts.awaiting_window += 1,
            HoldKind::ChannelStopped => {}
        }
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_names_from_recorded_subjects() {
        assert_eq!(
            common_name("CN=alice,O=Land Bureau (sha256:0011223344556677)"),
            Some("alice")
        );
        assert_eq!(common_name("O=x, CN=bob (sha256:00)"), Some("bob"));
        assert_eq!(common_name("spool:nightly"), None);
        let a = Actor::new("unix:alice (uid 1001)", Role::Approver);
        assert_eq!(account_name(&a), "alice");
    }

    fn held(reviewers_needed: u8, window: Option<u64>) -> HeldPackage {
        HeldPackage {
            path: "/q/p".into(),
            meta_json: "{}".into(),
            bytes: 3,
            held_unix_ms: 1,
            expires_unix_ms: u64::MAX,
            requirement: "two".into(),
            reviewers_needed,
            roles: vec![REVIEWER_ROLE.into()],
            allow_submitter: false,
            reasons: Vec::new(),
            approvals: Vec::new(),
            channel_stopped: false,
            window_until_unix_ms: window,
            subject: None,
        }
    }

    #[test]
    fn start_up_drops_the_hold_of_a_package_a_crash_left_queued_and_held() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = StateStore::open(&dir.path().join("ferry.redb")).expect("store");
        // The last approval queued the package; the crash came before the
        // hold was removed.
        let approved = [1u8; 16];
        let seq = store.reserve_seqs(1).expect("seq");
        store
            .enqueue(
                approved,
                &crate::state::store::QueuedPackage {
                    seq,
                    path: "/q/p".into(),
                    meta_json: "{}".into(),
                    inline: false,
                    state: crate::state::store::QueueState::Queued,
                    bytes: 3,
                    enqueued_unix_ms: 2,
                },
            )
            .expect("enqueue");
        store.hold_put(approved, &held(2, None)).expect("hold");
        // Still under review, waiting for a window, and a stopped channel's.
        store.hold_put([2u8; 16], &held(2, None)).expect("hold");
        store.hold_put([3u8; 16], &held(0, Some(5))).expect("hold");
        store
            .hold_put(
                [4u8; 16],
                &HeldPackage {
                    channel_stopped: true,
                    ..held(0, None)
                },
            )
            .expect("hold");

        let counts = reconcile_store(&store).expect("reconcile");
        assert_eq!(
            counts,
            HeldCounts {
                awaiting_approval: 1,
                awaiting_window: 1
            }
        );
        assert_eq!(store.hold_get(approved).expect("read"), None);
        let queued = store.list(None).expect("list");
        assert_eq!(queued.len(), 1, "queued exactly once: {queued:?}");
        assert_eq!((queued[0].0, queued[0].1.seq), (approved, seq));
        assert_eq!(store.hold_list().expect("list").len(), 3);
        // Nothing left to repair: a second start-up changes nothing.
        assert_eq!(reconcile_store(&store).expect("reconcile"), counts);
        assert_eq!(store.list(None).expect("list").len(), 1);
    }

    #[test]
    fn previews_text_and_refuses_binary() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = dir.path().join("t");
        std::fs::write(&text, "地块,面积\n1,20\n").expect("write");
        assert_eq!(preview(&text), serde_json::json!("地块,面积\n1,20\n"));
        // A multi-byte character cut by the preview limit is still text.
        let long = dir.path().join("l");
        let mut body = "a".repeat(PREVIEW_BYTES - 1);
        body.push('地');
        std::fs::write(&long, &body).expect("write");
        assert_eq!(
            preview(&long),
            serde_json::json!("a".repeat(PREVIEW_BYTES - 1))
        );
        let bin = dir.path().join("b");
        std::fs::write(&bin, [0x89, b'P', b'N', b'G', 0, 1, 2]).expect("write");
        assert_eq!(
            preview(&bin),
            serde_json::json!("(binary content: no preview)")
        );
    }
}
