//! The ingress side's wiring: starts its threads and answers its admin
//! requests (status, resend, channel stop/start, policy reload).
//!
//! The threads: spool intake (`intake.rs`: settled files from the spool
//! directories), the HTTPS ingest API (`ingest/`), the sender (`send.rs`:
//! drives `ferry_protocol::Sender`, paces and batches datagrams) and the
//! control socket. Both doors hand a digested package to `admission.rs`,
//! which queues it (`queue.rs`) or holds it (`holds/`). A file is in the
//! queue, with its sequence number, in redb before anything is sent, so a
//! crash at any point either resends it under the same sequence number
//! (the egress side de-duplicates) or never took it from the spool.

pub(crate) mod admission;
pub(crate) mod bundle;
pub(crate) mod holds;
pub(crate) mod ingest;
pub(crate) mod intake;
pub(crate) mod queue;
pub(crate) mod send;
pub(crate) mod shared;
pub(crate) mod spool;
pub(crate) mod taking;

use crate::admin::protocol::{self, Caller, Request, SharedStatus};
use crate::config::Config;
use crate::ingress::intake::intake_loop;
use crate::ingress::queue::{requeue, QUEUE_DIR};
use crate::ingress::send::send_loop;
use crate::ingress::shared::Shared;
use crate::link::keys::{epoch_chain, load_keys, sender_config};
use crate::link::udp::{self, BatchSender};
use crate::ops::audit_trail::{Actor, AuditRecord, AuditTrail, EventKind, Outcome};
use crate::state::store::{QueueState, StateStore};
use crate::{now_millis, DaemonError};
use ferry_protocol::{PackageId, Sender};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Runs the ingress side until `shutdown` is set.
pub fn run(
    cfg: Config,
    shutdown: Arc<AtomicBool>,
    status: SharedStatus,
) -> Result<(), DaemonError> {
    let audit = AuditTrail::open(&cfg)?;
    let mut keys = load_keys(&cfg)?;
    let seal = keys.take_seal_keys()?;
    audit.record(
        AuditRecord::new(EventKind::DaemonStart, Actor::system(), Outcome::Success)
            .detail("role", "ingress")
            .detail("link", cfg.link.name.clone())
            .detail("suite", keys.suite().name()),
    )?;
    let policy = cfg
        .policy
        .as_ref()
        .map(crate::inspection::policy_gate::PolicyGate::load)
        .transpose()?;
    let reload = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, reload.clone())
        .map_err(DaemonError::io(Path::new("SIGHUP handler")))?;
    if let Some(p) = &policy {
        let hash = p.current().hash().to_owned();
        audit.record(
            AuditRecord::new(EventKind::PolicyReloaded, Actor::system(), Outcome::Success)
                .policy_hash(hash.clone())
                .reason("loaded at start"),
        )?;
        protocol::update(&status, |st| st.policy_hash = Some(hash));
    }
    let mut expiry = crate::ops::expiry::ExpiryWatch::new(&cfg, &keys);
    expiry.poll(&status);
    let expiry = Mutex::new(expiry);
    let state_dir = cfg.paths.state_dir.clone();
    std::fs::create_dir_all(&state_dir).map_err(DaemonError::io(&state_dir))?;
    let queue_dir = state_dir.join(QUEUE_DIR);
    std::fs::create_dir_all(&queue_dir).map_err(DaemonError::io(&queue_dir))?;
    let store = Arc::new(StateStore::open(&state_dir.join("ferry.redb"))?);
    let spool = cfg
        .paths
        .spool_dir
        .clone()
        .ok_or_else(|| DaemonError::Config("ingress needs paths.spool_dir".into()))?;
    std::fs::create_dir_all(&spool).map_err(DaemonError::io(&spool))?;

    requeue_interrupted(&store)?;
    let back = crate::ingress::taking::recover(&store, &queue_dir)?;
    if back > 0 {
        tracing::warn!(
            files = back,
            "spool files that were being taken when ferryd stopped are back in the spool"
        );
    }
    let chain = epoch_chain(&cfg, &keys);
    let mut sender = Sender::new(sender_config(&cfg), seal, chain)?;

    let (socket, report) = udp::bind_socket(cfg.link.bind, cfg.link.socket_buffer_bytes)?;
    if report.capped {
        tracing::warn!(
            requested = report.requested,
            got = report.sndbuf,
            "kernel capped the socket send buffer; raise net.core.wmem_max"
        );
    }
    let mut udp = BatchSender::new(socket, cfg.link.peer.clone());
    udp.set_gso_segments(usize::from(cfg.link.udp_gso_segments));
    update_status(&status, &cfg);

    let shared = Arc::new(Shared {
        cfg,
        keys,
        expiry,
        store,
        queue_dir,
        status,
        lock: Arc::new(Mutex::new(())),
        shutdown,
        policy,
        reload,
        audit,
        approvals_lock: Mutex::new(()),
        scan_hold_until_ms: std::sync::atomic::AtomicU64::new(0),
        stopped: std::sync::RwLock::new(BTreeMap::new()),
        send_wake: Default::default(),
    });
    let stopped = shared.store.stopped_channels()?;
    publish_stopped(&shared.status, &stopped);
    if let Ok(mut m) = shared.stopped.write() {
        *m = stopped;
    }
    crate::ingress::holds::approvals::reconcile(&shared)?;
    let intake = {
        let s = shared.clone();
        std::thread::Builder::new()
            .name("ferry-intake".into())
            .spawn(move || intake_loop(&s, &spool))
            .map_err(DaemonError::thread_start("intake"))?
    };
    let ingest = match shared.cfg.ingest.clone() {
        Some(c) => Some(crate::ingress::ingest::spawn(shared.clone(), c)?),
        None => None,
    };
    let control = {
        let s = shared.clone();
        let admin = crate::admin::gate::AdminPlane::from_config(
            &shared.cfg,
            nix::unistd::getuid().as_raw(),
        )?;
        crate::admin::gate::publish(&admin, &shared.cfg, &shared.status);
        let mode = admin.socket_mode();
        let handler: crate::admin::api::Handler = Arc::new(move |caller, req| {
            crate::admin::gate::gate(&admin, &s.audit, caller, req, |actor, caller, req| {
                handle_request(&s, actor, caller, req)
            })
        });
        let note: crate::admin::api::Note = {
            let s = shared.clone();
            Arc::new(move |r| s.audit.note(r))
        };
        crate::admin::api::Planes::start(
            &shared.cfg,
            mode,
            shared.shutdown.clone(),
            handler,
            note,
            shared.status.clone(),
        )?
    };
    let metrics = match shared.cfg.metrics.as_ref() {
        Some(m) => Some(crate::ops::metrics::spawn(
            m.listen,
            shared.status.clone(),
            shared.shutdown.clone(),
        )?),
        None => None,
    };
    let watch = match &shared.policy {
        Some(_) => {
            let s = shared.clone();
            Some(crate::inspection::malware::spawn_watch(
                shared.status.clone(),
                shared.shutdown.clone(),
                move || {
                    s.policy
                        .as_ref()
                        .map(|g| g.malware_profiles())
                        .unwrap_or_default()
                },
            )?)
        }
        None => None,
    };
    let result = send_loop(&shared, &mut sender, &mut udp);
    shared.shutdown.store(true, Ordering::Relaxed);
    if let Some(w) = watch {
        let _ = w.join();
    }
    if let Some(m) = metrics {
        let _ = m.join();
    }
    let _ = intake.join();
    if let Some(i) = ingest {
        let _ = i.join();
    }
    control.join();
    shared.audit.note(
        AuditRecord::new(EventKind::DaemonStop, Actor::system(), Outcome::Success)
            .detail("role", "ingress"),
    );
    if let Ok(s) = Arc::try_unwrap(shared) {
        s.audit.close();
    }
    result
}

/// Packages whose send a crash interrupted are queued again under new
/// sequence numbers: the egress side may hold part of the old send, and a
/// fresh seal under the old number would mix with it. The package id stays,
/// so the egress ledger still delivers it once.
fn requeue_interrupted(store: &StateStore) -> Result<(), DaemonError> {
    for (id, q) in store.list(Some(QueueState::Sending))? {
        let old_seq = q.seq;
        let seq = requeue(store, id, q)?;
        tracing::info!(package = %hex::encode(id), old_seq, seq, "send interrupted by a restart; queued again");
    }
    Ok(())
}

fn update_status(status: &SharedStatus, cfg: &Config) {
    protocol::update(status, |s| {
        s.role = "ingress".into();
        s.link = cfg.link.name.clone();
        s.loss_budget = crate::link::keys::budget_status(cfg);
        s.udp_gso_segments = u64::from(cfg.link.udp_gso_segments);
    });
}

fn handle_request(s: &Shared, actor: Actor, caller: Caller, req: Request) -> serde_json::Value {
    match req {
        Request::Status => serde_json::to_value(protocol::snapshot(&s.status))
            .unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() })),
        Request::Resend {
            packages,
            seq_range,
        } => {
            let v = match resend(s, &packages, seq_range) {
                Ok(v) => v,
                Err(e) => serde_json::json!({ "error": e.to_string() }),
            };
            let outcome = if v.get("error").is_some() {
                Outcome::Failure
            } else {
                Outcome::Success
            };
            s.audit.note(
                AuditRecord::new(EventKind::AdminAction, actor, outcome)
                    .reason("resend")
                    .detail("packages", packages.join(","))
                    .detail(
                        "seq_range",
                        seq_range.map_or(String::new(), |(a, b)| format!("{a}..{b}")),
                    ),
            );
            v
        }
        Request::ReloadPolicy => crate::inspection::policy_gate::reload_policy(
            s.policy.as_ref(),
            &s.audit,
            &s.status,
            actor,
        ),
        Request::AuditNote { record } => crate::admin::gate::audit_note(&s.audit, actor, record),
        Request::SignaturesNote { .. } => serde_json::json!({
            "error": "signature packages are applied on the egress side, where they arrive: ask the egress ferryd"
        }),
        Request::ApprovalsList => crate::ingress::holds::approvals::list(s),
        Request::ApprovalsShow { package } => crate::ingress::holds::approvals::show(s, &package),
        Request::Approve { package, reason } => {
            crate::ingress::holds::approvals::approve(s, actor, caller, &package, &reason)
        }
        Request::Reject { package, reason } => {
            crate::ingress::holds::approvals::reject(s, actor, &package, &reason)
        }
        Request::ChannelStop { channel, reason } => stop_channel(s, &actor, &channel, &reason),
        Request::ChannelStart { channel } => start_channel(s, &channel),
        Request::ForwardRetry { .. } => serde_json::json!({
            "error": "downstream forwarding happens on the egress side: ask the egress ferryd"
        }),
        Request::GapAck { .. } => serde_json::json!({
            "error": "gaps are kept on the egress side: ask the egress ferryd"
        }),
    }
}

/// Shows the stopped channels in the status.
fn publish_stopped(
    status: &SharedStatus,
    m: &BTreeMap<String, crate::state::store::StoppedChannel>,
) {
    let shown = m
        .iter()
        .map(|(c, st)| {
            (
                c.clone(),
                format!(
                    "stopped by {} at {} ms: {}",
                    st.by, st.since_unix_ms, st.reason
                ),
            )
        })
        .collect();
    protocol::update(status, |st| st.stopped_channels = shown);
}

/// Whether `channel` is one this side carries (by the policy, or the
/// link's own name without one).
fn known_channel(s: &Shared, channel: &str) -> bool {
    match &s.policy {
        None => channel == s.cfg.link.name,
        Some(g) => g
            .current()
            .channel(channel)
            .is_some_and(|c| c.link == s.cfg.link.name),
    }
}

fn stop_channel(s: &Shared, actor: &Actor, channel: &str, reason: &str) -> serde_json::Value {
    if !known_channel(s, channel) {
        return serde_json::json!({ "error": format!("this side carries no channel `{channel}`") });
    }
    if reason.trim().is_empty() {
        return serde_json::json!({ "error": "say why: --reason is required" });
    }
    let mut m = match s.stopped.write() {
        Ok(m) => m,
        Err(p) => p.into_inner(),
    };
    m.insert(
        channel.to_owned(),
        crate::state::store::StoppedChannel {
            by: actor.id.clone(),
            reason: reason.to_owned(),
            since_unix_ms: now_millis().0,
        },
    );
    if let Err(e) = s.store.set_stopped_channels(&m) {
        m.remove(channel);
        return serde_json::json!({ "error": format!("not stopped: {e}") });
    }
    publish_stopped(&s.status, &m);
    tracing::warn!(channel, by = %actor.id, reason, "channel stopped");
    serde_json::json!({ "channel": channel, "state": "stopped" })
}

fn start_channel(s: &Shared, channel: &str) -> serde_json::Value {
    {
        let mut m = match s.stopped.write() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        let Some(old) = m.remove(channel) else {
            return serde_json::json!({ "error": format!("channel `{channel}` is not stopped") });
        };
        if let Err(e) = s.store.set_stopped_channels(&m) {
            m.insert(channel.to_owned(), old);
            return serde_json::json!({ "error": format!("not started: {e}") });
        }
        publish_stopped(&s.status, &m);
    }
    match crate::ingress::holds::approvals::release_stopped(s, channel) {
        Ok(n) => {
            tracing::info!(channel, released = n, "channel started");
            serde_json::json!({ "channel": channel, "state": "started", "released": n })
        }
        Err(e) => {
            serde_json::json!({ "error": format!("started, but held packages were not all released: {e}") })
        }
    }
}

/// Re-queues retained packages under new sequence numbers. The package id
/// stays, so the egress side's ledger delivers each id once.
fn resend(
    s: &Shared,
    packages: &[String],
    seq_range: Option<(u64, u64)>,
) -> Result<serde_json::Value, DaemonError> {
    // Only the named packages and the range are read, not the whole
    // retained queue.
    let mut picked = Vec::new();
    let mut unknown = Vec::new();
    for p in packages {
        match PackageId::from_hex(p) {
            Some(id) if s.store.get(id.0)?.is_some() => picked.push(id.0),
            _ => unknown.push(p.clone()),
        }
    }
    if let Some((a, b)) = seq_range {
        for (id, _) in s.store.find_by_seq_range(a, b)? {
            if !picked.contains(&id) {
                picked.push(id);
            }
        }
    }
    let mut requeued = Vec::new();
    let mut busy = Vec::new();
    for id in picked {
        // Read under the lock retention deletes under: a copy it is
        // deleting is either gone from the queue here or not touched yet.
        let _guard = s.lock.lock().map_err(|_| DaemonError::Poisoned)?;
        let Some(q) = s.store.get(id)? else {
            unknown.push(hex::encode(id));
            continue;
        };
        if !matches!(q.state, QueueState::Sent { .. }) {
            // Queued or being sent right now: it is on its way already, and
            // re-queuing it here would be overwritten when that send ends.
            busy.push(hex::encode(id));
            continue;
        }
        // Retained: its body in the store, or its file still there.
        if !q.inline && !Path::new(&q.path).exists() {
            unknown.push(hex::encode(id));
            continue;
        }
        let seq = requeue(&s.store, id, q)?;
        requeued.push(serde_json::json!({ "package": hex::encode(id), "new_seq": seq }));
    }
    if !requeued.is_empty() {
        s.send_wake.queued(requeued.len() as u64);
    }
    protocol::update(&s.status, |st| st.resent += requeued.len() as u64);
    tracing::info!(count = requeued.len(), "operator resend queued");
    Ok(serde_json::json!({ "requeued": requeued, "not_retained": unknown, "already_queued": busy }))
}
