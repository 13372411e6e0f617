//! The egress side: receive datagrams, rebuild and verify packages, and
//! deliver them atomically into the outbox exactly once.
//!
//! The receive thread owns the sockets and the protocol receiver and does
//! nothing slow; a writer thread owns the outbox and the state store, so a
//! slow disk does not make the receive thread miss datagrams. The writer
//! stages every package in `OUTBOX/.staging`, and on a verified completion
//! records the delivery (ledger entry plus replay window, one redb
//! transaction) before the atomic rename, so a crash between the two is
//! finished at the next start and a package is never delivered twice.

use crate::audit_trail::{Actor, AuditRecord, AuditTrail, EventKind, Outcome};
use crate::config::Config;
use crate::control::{self, Request, SharedStatus};
use crate::ingress::schedule;
use crate::outbox::{Outbox, OutboxError, Staging};
use crate::store::{LedgerEntry, LedgerState, StateStore};
use crate::udp::{self, BatchReceiver, DatagramBatch};
use crate::{now_millis, DaemonError};
use ferry_protocol::receiver::ReceiverStats;
use ferry_protocol::{Event, Manifest, Receiver, ReceiverConfig, ReplayWindow};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver as Rx, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Datagrams per recvmmsg batch.
const BATCH: usize = 64;
/// Writer queue depth (messages, each at most one 64 KiB chunk): bounds
/// the memory between the threads to about 64 MiB.
const WRITER_QUEUE: usize = 1024;
/// Gap ranges kept in the status.
const MAX_GAPS_SHOWN: usize = 32;

/// Test and benchmark knobs that a deployment never sets: random loss
/// injected on the receive path (the loopback has none of its own).
#[derive(Debug, Clone, Copy, Default)]
pub struct EgressOptions {
    /// Datagrams dropped per million, before the protocol sees them.
    pub drop_per_million: u32,
    /// Seed of the drop decisions.
    pub seed: u64,
}

enum Write {
    Start {
        seq: u64,
        attempt: u8,
    },
    Data {
        seq: u64,
        data: Vec<u8>,
    },
    Complete {
        seq: u64,
        manifest: Box<Manifest>,
        replay: Vec<u8>,
    },
    Failed {
        seq: u64,
    },
}

/// Runs the egress side until `shutdown` is set.
pub fn run(
    cfg: Config,
    shutdown: Arc<AtomicBool>,
    status: SharedStatus,
    options: EgressOptions,
) -> Result<(), DaemonError> {
    let audit = Arc::new(AuditTrail::open(&cfg)?);
    let mut keys = crate::ingress::load_keys(&cfg)?;
    let open = keys.take_open_keys()?;
    let mut expiry = crate::expiry::ExpiryWatch::new(&cfg, &keys);
    expiry.poll(&status);
    let state_dir = cfg.paths.state_dir.clone();
    std::fs::create_dir_all(&state_dir).map_err(DaemonError::io(&state_dir))?;
    let store = Arc::new(StateStore::open(&state_dir.join("ferry.redb"))?);
    let outbox_dir = cfg
        .paths
        .outbox_dir
        .clone()
        .ok_or_else(|| DaemonError::Config("egress needs paths.outbox_dir".into()))?;
    let outbox = Outbox::open(&outbox_dir)?;
    recover(&store, &outbox)?;
    outbox.cleanup_staging()?;

    let window = match store.load_replay()? {
        Some(b) => ReplayWindow::from_bytes(&b)?,
        None => ReplayWindow::new(),
    };
    let chain = crate::ingress::epoch_chain(&cfg, &keys);
    let mut rc = ReceiverConfig::new(&cfg.link.name, schedule(&cfg));
    rc.mtu = cfg.link.mtu;
    rc.max_buffer_bytes = cfg.link.max_buffer_bytes;
    rc.package_idle_timeout_ms = cfg.link.package_idle_timeout_ms;
    rc.link_down_after_ms = cfg.link.link_down_after_ms;
    let mut receiver = Receiver::new(rc, open, chain, window);

    let mut sockets = Vec::new();
    for addr in &cfg.link.listen {
        let (sock, report) = udp::bind_socket(*addr, cfg.link.socket_buffer_bytes)?;
        if report.capped {
            tracing::warn!(
                requested = report.requested,
                got = report.rcvbuf,
                "kernel capped the socket receive buffer; raise net.core.rmem_max or expect loss under load"
            );
        }
        sockets.push(sock);
    }
    let max_len = ferry_protocol::wire::max_datagram_len(cfg.link.mtu);
    let mut udp = BatchReceiver::new(sockets, BATCH, max_len)?;

    control::update(&status, |s| {
        s.role = "egress".into();
        s.link = cfg.link.name.clone();
    });
    audit.record(
        AuditRecord::new(EventKind::DaemonStart, Actor::system(), Outcome::Success)
            .detail("role", "egress")
            .detail("link", cfg.link.name.clone())
            .detail("suite", keys.suite().name()),
    )?;
    // The policy, when configured, for the redundant content inspection
    // under each channel's `egress_profile` before delivery.
    let gate = cfg
        .policy
        .as_ref()
        .map(crate::policy_gate::PolicyGate::load)
        .transpose()?
        .map(Arc::new);
    if let (Some(g), None) = (&gate, &cfg.downstream) {
        if let Some(c) = g
            .current()
            .channels()
            .iter()
            .find(|c| matches!(c.destination, ferry_policy::Destination::Downstream(_)))
        {
            return Err(DaemonError::Config(format!(
                "channel `{}` delivers to a downstream HTTPS endpoint, but this configuration has no [downstream] section: add one with the CA of the endpoint (ca), and the client certificate and key ferryd presents (cert, key)",
                c.name
            )));
        }
    }
    let forwarder = crate::forward::spawn(
        cfg.downstream.clone(),
        store.clone(),
        outbox.clone(),
        status.clone(),
        audit.clone(),
        shutdown.clone(),
    )?;
    let (tx, rx) = sync_channel::<Write>(WRITER_QUEUE);
    let writer = {
        let status = status.clone();
        let store = store.clone();
        let link_name = cfg.link.name.clone();
        let audit = audit.clone();
        let gate = gate.clone();
        let wake = forwarder.notifier();
        std::thread::Builder::new()
            .name("ferry-writer".into())
            .spawn(move || {
                writer_loop(
                    rx,
                    Sinks {
                        outbox,
                        store,
                        wake,
                    },
                    status,
                    link_name,
                    &audit,
                    gate.as_deref(),
                )
            })
            .map_err(DaemonError::io(std::path::Path::new("writer thread")))?
    };
    let control = {
        let status = status.clone();
        let audit = audit.clone();
        let store = store.clone();
        let wake = forwarder.notifier();
        let admin = crate::admin::AdminPlane::from_config(&cfg, nix::unistd::getuid().as_raw())?;
        crate::admin::publish(&admin, &cfg, &status);
        let mode = admin.socket_mode();
        let note: crate::admin_api::Note = {
            let audit = audit.clone();
            Arc::new(move |r| audit.note(r))
        };
        let handler: crate::admin_api::Handler = Arc::new(move |caller, req| {
            crate::admin::gate(&admin, &audit, caller, req, |actor, _, req| match req {
                Request::Status => serde_json::to_value(control::snapshot(&status))
                    .unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() })),
                Request::Resend { .. } => serde_json::json!({
                    "error": "resend is an ingress command: run it against the ingress side's configuration"
                }),
                Request::ReloadPolicy => match &gate {
                    None => {
                        serde_json::json!({ "error": "no [policy] configured on this side" })
                    }
                    Some(g) => match g.reload() {
                        Ok(hash) => {
                            audit.note(
                                AuditRecord::new(
                                    EventKind::PolicyReloaded,
                                    actor,
                                    Outcome::Success,
                                )
                                .policy_hash(hash.clone()),
                            );
                            serde_json::json!({ "reloaded": hash })
                        }
                        Err(e) => {
                            audit.note(
                                AuditRecord::new(
                                    EventKind::PolicyReloaded,
                                    actor,
                                    Outcome::Failure,
                                )
                                .reason(e.clone()),
                            );
                            serde_json::json!({ "error": format!("policy not reloaded, the old one stays in force: {e}") })
                        }
                    },
                },
                Request::AuditNote { record } => control::audit_note(&audit, actor, record),
                Request::ApprovalsList
                | Request::ApprovalsShow { .. }
                | Request::Approve { .. }
                | Request::Reject { .. } => serde_json::json!({
                    "error": "approvals happen on the ingress side, before a package is sent: ask the ingress ferryd"
                }),
                Request::ChannelStop { .. } | Request::ChannelStart { .. } => {
                    serde_json::json!({
                        "error": "channels are stopped and started on the ingress side: ask the ingress ferryd"
                    })
                }
                Request::ForwardRetry { package } => {
                    match crate::forward::retry(&store, &status, package.as_deref()) {
                        Ok(v) => {
                            wake.retry_now();
                            v
                        }
                        Err(e) => serde_json::json!({ "error": e.to_string() }),
                    }
                }
            })
        });
        crate::admin_api::Planes::start(&cfg, mode, shutdown.clone(), handler, note)?
    };
    let metrics = match cfg.metrics.as_ref() {
        Some(m) => Some(crate::metrics::spawn(
            m.listen,
            status.clone(),
            shutdown.clone(),
        )?),
        None => None,
    };

    let mut batch = DatagramBatch::new(BATCH, max_len);
    let mut rng = options.seed | 1;
    let mut saved_epoch = receiver.epochs().oldest().map(|(e, _)| e);
    let mut last_status = Instant::now();
    let mut result = Ok(());
    while !shutdown.load(Ordering::Relaxed) {
        let wait = receiver
            .poll_timeout()
            .map(|t| t.since(now_millis()))
            .unwrap_or(100)
            .clamp(1, 100);
        match udp.recv(&mut batch, Duration::from_millis(wait)) {
            Ok(_) => {}
            Err(e) => {
                result = Err(e.into());
                break;
            }
        }
        let now = now_millis();
        for d in batch.iter() {
            if options.drop_per_million > 0 {
                // xorshift64: cheap, seeded, good enough to spread drops.
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                if (rng % 1_000_000) < u64::from(options.drop_per_million) {
                    continue;
                }
            }
            receiver.handle_datagram(now, d);
        }
        receiver.handle_timeout(now);
        if !drain(&mut receiver, &tx, &status, &audit) {
            result = Err(DaemonError::Config("writer thread stopped".into()));
            break;
        }
        if let Some((e, secret)) = receiver.epochs().oldest().map(|(e, s)| (e, s.clone())) {
            if saved_epoch != Some(e) {
                if let Err(err) = keys.save_epoch(e, &secret) {
                    result = Err(err.into());
                    break;
                }
                saved_epoch = Some(e);
            }
        }
        if last_status.elapsed() >= Duration::from_secs(1) {
            last_status = Instant::now();
            expiry.poll(&status);
            audit.tick();
            publish(&status, &cfg, receiver.stats(), receiver.epochs().current());
        }
    }
    drop(tx);
    let _ = writer.join();
    shutdown.store(true, Ordering::Relaxed);
    forwarder.join();
    control.join();
    if let Some(m) = metrics {
        let _ = m.join();
    }
    publish(&status, &cfg, receiver.stats(), receiver.epochs().current());
    audit.note(
        AuditRecord::new(EventKind::DaemonStop, Actor::system(), Outcome::Success)
            .detail("role", "egress"),
    );
    if let Ok(a) = Arc::try_unwrap(audit) {
        a.close();
    }
    result
}

fn publish(status: &SharedStatus, cfg: &Config, stats: ReceiverStats, epoch: u32) {
    control::update(status, |s| {
        s.updated_unix_ms = now_millis().0;
        s.epoch = epoch;
        s.receiver = Some(stats_json(&stats));
    });
    let snap = control::snapshot(status);
    if let Err(e) = control::write_status_file(&cfg.paths.state_dir, &snap) {
        tracing::warn!(error = %e, "could not write status.json");
    }
}

fn stats_json(s: &ReceiverStats) -> serde_json::Value {
    serde_json::json!({
        "datagrams": s.datagrams,
        "authenticated": s.authenticated,
        "malformed": s.malformed,
        "other_link": s.other_link,
        "stale_epoch": s.stale_epoch,
        "forged": s.forged,
        "duplicate": s.duplicate,
        "too_old": s.too_old,
        "late": s.late,
        "inconsistent": s.inconsistent,
        "blocks_decoded": s.blocks_decoded,
        "blocks_repaired": s.blocks_repaired,
        "packages_complete": s.packages_complete,
        "packages_failed": s.packages_failed,
        "heartbeats": s.heartbeats,
        "buffered_bytes": s.buffered_bytes,
    })
}

/// Moves protocol events to the writer and the status. Returns false when
/// the writer is gone.
fn drain(
    receiver: &mut Receiver,
    tx: &SyncSender<Write>,
    status: &SharedStatus,
    audit: &AuditTrail,
) -> bool {
    while let Some(ev) = receiver.poll_event() {
        let msg = match ev {
            Event::PackageStarted {
                seq,
                attempt,
                manifest,
            } => {
                tracing::debug!(seq, attempt, package = %manifest.meta.id, "package started");
                Write::Start { seq, attempt }
            }
            Event::PackageData { seq, data, .. } => Write::Data { seq, data },
            Event::PackageComplete { seq, manifest } => Write::Complete {
                seq,
                manifest,
                replay: receiver.replay_window().to_bytes(),
            },
            Event::PackageFailed {
                seq,
                attempt,
                id,
                reason,
            } => {
                let id = id.map(|i| i.to_hex()).unwrap_or_else(|| "unknown".into());
                tracing::warn!(seq, attempt, package = %id, reason = %reason, "package send failed");
                control::update(status, |s| s.failed += 1);
                audit.note(
                    AuditRecord::new(EventKind::PackageFailed, Actor::system(), Outcome::Failure)
                        .package(id.clone())
                        .reason(reason.to_string())
                        .detail("seq", seq.to_string())
                        .detail("send", attempt.to_string()),
                );
                Write::Failed { seq }
            }
            Event::Gap { first, last } => {
                tracing::warn!(
                    first,
                    last,
                    "sequence numbers missing: resend them from the ingress side (`ferryctl resend --seq {first}..{last}`)"
                );
                control::update(status, |s| {
                    s.gap_seqs_total += last.saturating_sub(first) + 1;
                    s.gaps.push((first, last));
                    let extra = s.gaps.len().saturating_sub(MAX_GAPS_SHOWN);
                    s.gaps.drain(..extra);
                });
                continue;
            }
            Event::LinkUp => {
                tracing::info!("link up");
                control::update(status, |s| s.link_up = true);
                continue;
            }
            Event::LinkDown { silent_ms } => {
                tracing::warn!(silent_ms, "link down: no valid datagram received");
                control::update(status, |s| s.link_up = false);
                continue;
            }
            Event::Heartbeat(hb) => {
                control::update(status, |s| {
                    s.sender_next_seq = Some(hb.next_seq);
                    s.last_heartbeat_unix_ms = Some(now_millis().0);
                });
                continue;
            }
        };
        if tx.send(msg).is_err() {
            return false;
        }
    }
    true
}

struct Staged {
    staging: Option<Staging>,
    attempt: u8,
}

/// Where the writer puts verified packages.
struct Sinks {
    outbox: Outbox,
    store: Arc<StateStore>,
    /// Tells the forwarder about packages waiting for a downstream endpoint.
    wake: crate::forward::Notifier,
}

/// Most packages committed together. Bounds the open staging files and
/// the time before the first of them is delivered.
const MAX_BATCH: usize = 256;

/// A verified package waiting for its batch's commit.
struct Ready {
    seq: u64,
    staging: Staging,
    manifest: Box<Manifest>,
    /// The channel's downstream endpoint; `None` for the outbox.
    destination: Option<String>,
    sidecar: serde_json::Value,
}

fn writer_loop(
    rx: Rx<Write>,
    sinks: Sinks,
    status: SharedStatus,
    link: String,
    audit: &AuditTrail,
    gate: Option<&crate::policy_gate::PolicyGate>,
) {
    let mut w = Writer {
        sinks,
        status,
        link,
        audit,
        gate,
        staged: HashMap::new(),
        ready: Vec::new(),
        replay: None,
    };
    // Group commit: take what the receive thread has queued (up to a
    // batch), then make all of its completed packages durable together —
    // one file-system sync, one ledger transaction and one audit flush
    // per step instead of per package. A lone package is a batch of one.
    while let Ok(msg) = rx.recv() {
        w.handle(msg);
        while w.ready.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(msg) => w.handle(msg),
                Err(_) => break,
            }
        }
        w.commit();
    }
    w.commit();
}

struct Writer<'a> {
    sinks: Sinks,
    status: SharedStatus,
    link: String,
    audit: &'a AuditTrail,
    gate: Option<&'a crate::policy_gate::PolicyGate>,
    staged: HashMap<u64, Staged>,
    ready: Vec<Ready>,
    /// The receiver's replay window after the newest completion of the
    /// batch (the window only grows, so it covers the earlier ones).
    replay: Option<Vec<u8>>,
}

impl Writer<'_> {
    fn handle(&mut self, msg: Write) {
        let outbox = &self.sinks.outbox;
        match msg {
            Write::Start { seq, attempt } => {
                if let Some(old) = self.staged.remove(&seq) {
                    if let Some(st) = old.staging {
                        outbox.abort(st);
                    }
                }
                let staging = match outbox.begin(&format!("{seq}-{attempt}")) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        alarm(&self.status, &format!("outbox: {e}"));
                        None
                    }
                };
                self.staged.insert(seq, Staged { staging, attempt });
            }
            Write::Data { seq, data } => {
                let Some(s) = self.staged.get_mut(&seq) else {
                    return;
                };
                let Some(st) = s.staging.as_mut() else {
                    return;
                };
                if let Err(e) = st.write_all(&data) {
                    // Nothing partial stays: the staging file goes, and this
                    // send of the package is lost (a redundant send or an
                    // operator resend brings it once space returns).
                    alarm(&self.status, &format!("outbox: {e}"));
                    if let Some(st) = s.staging.take() {
                        outbox.abort(st);
                    }
                }
            }
            Write::Failed { seq } => {
                if let Some(Staged {
                    staging: Some(st), ..
                }) = self.staged.remove(&seq)
                {
                    outbox.abort(st);
                }
            }
            Write::Complete {
                seq,
                manifest,
                replay,
            } => {
                // The window moves on whatever becomes of the package, so
                // a failure here is not mistaken for a replay later.
                self.replay = Some(replay);
                let Some(s) = self.staged.remove(&seq) else {
                    return;
                };
                let Some(mut st) = s.staging else {
                    tracing::error!(seq, package = %manifest.meta.id, "package received but could not be staged; resend it once the outbox has space");
                    return;
                };
                let guard = match reinspect(self.gate, outbox, &mut st, &manifest, self.audit) {
                    Ok(g) => g,
                    Err(why) => {
                        // Never delivered, not even in part.
                        outbox.abort(st);
                        control::count_rejected(&self.status, &manifest.meta.channel);
                        tracing::warn!(seq, package = %manifest.meta.id, "not delivered: {why}");
                        return;
                    }
                };
                let destination = self.gate.and_then(|g| {
                    match &g.current().channel(&manifest.meta.channel)?.destination {
                        ferry_policy::Destination::Downstream(url) => Some(url.clone()),
                        ferry_policy::Destination::Outbox => None,
                    }
                });
                let mut side = sidecar(&self.link, seq, s.attempt, &manifest);
                if let Some(g) = guard {
                    side["egress_guard"] = g;
                }
                self.ready.push(Ready {
                    seq,
                    staging: st,
                    manifest,
                    destination,
                    sidecar: side,
                });
            }
        }
    }

    /// Delivers the batch: each package whole or not at all, none twice.
    ///
    /// 1. drop duplicates (the ledger's, and the batch's own) and names
    ///    that cannot be delivered; write each sidecar; move packages for
    ///    a downstream endpoint into the forward area;
    /// 2. one sync of the outbox's file system makes all of that durable;
    /// 3. one ledger transaction records every package (delivering or
    ///    forwarding) with the replay window;
    /// 4. the renames into the outbox, one more sync, and one transaction
    ///    marking them delivered; a crash between 3 and 4 is finished at
    ///    start-up ([`recover`]);
    /// 5. the audit records, appended together and flushed once.
    fn commit(&mut self) {
        let replay = self.replay.take();
        if self.ready.is_empty() {
            if let Some(replay) = replay {
                if let Err(e) = self.sinks.store.save_replay(&replay) {
                    alarm(&self.status, &format!("state store: {e}"));
                }
            }
            return;
        }
        let replay = replay.unwrap_or_default();
        let batch = std::mem::take(&mut self.ready);
        let mut items = self.prepare(batch);
        let (outbox, store) = (&self.sinks.outbox, &self.sinks.store);
        if let Err(e) = outbox.sync_filesystem() {
            alarm(&self.status, &format!("outbox: {e}"));
            self.discard(items, &replay);
            return;
        }
        let entries: Vec<_> = items
            .iter()
            .map(|it| (it.manifest.meta.id.0, &it.entry))
            .collect();
        if let Err(e) = store.begin_deliveries(&entries, &replay) {
            alarm(&self.status, &format!("state store: {e}"));
            self.discard(items, &replay);
            return;
        }
        let mut delivered = Vec::new();
        for it in &mut items {
            let Some(st) = it.staging.take() else {
                continue;
            };
            let id = it.manifest.meta.id;
            match outbox.place_batched(st, &it.manifest.meta.file_name) {
                Ok(path) => {
                    let name = path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    delivered.push((id.0, name.clone()));
                    it.delivered_as = Some(name);
                }
                Err(e) => {
                    if matches!(e, OutboxError::DiskFull { .. }) {
                        alarm(&self.status, &format!("outbox: {e}"));
                    } else {
                        tracing::error!(seq = it.entry.seq, package = %id, error = %e, "delivery failed");
                    }
                    // The ledger says "delivering" with no staging file
                    // left: undo it so a resend can deliver the package.
                    if let Err(e) = store.ledger_remove(id.0) {
                        alarm(&self.status, &format!("state store: {e}"));
                    }
                    it.failed = true;
                }
            }
        }
        if !delivered.is_empty() {
            match outbox.sync_filesystem() {
                Ok(()) => {
                    if let Err(e) = store.finish_deliveries(&delivered, now_millis().0) {
                        alarm(&self.status, &format!("state store: {e}"));
                    }
                }
                // Left "delivering": the next start makes sure of them.
                Err(e) => alarm(&self.status, &format!("outbox: {e}")),
            }
        }
        self.report(items);
    }

    /// Step 1 of [`Writer::commit`]: what of the batch can go on, with its
    /// sidecar written and its ledger entry made.
    fn prepare(&self, batch: Vec<Ready>) -> Vec<Item> {
        let (outbox, store) = (&self.sinks.outbox, &self.sinks.store);
        let mut seen = std::collections::HashSet::new();
        let mut items = Vec::with_capacity(batch.len());
        for Ready {
            seq,
            mut staging,
            manifest,
            destination,
            sidecar,
        } in batch
        {
            let id = manifest.meta.id;
            match store.ledger_get(id.0) {
                Ok(None) if seen.insert(id.0) => {}
                Ok(_) => {
                    // Delivered before under another sequence number (a
                    // resend or a redundant send): once only.
                    outbox.abort(staging);
                    control::update(&self.status, |s| s.duplicates_suppressed += 1);
                    tracing::info!(seq, package = %id, "already delivered; duplicate suppressed");
                    continue;
                }
                Err(e) => {
                    alarm(&self.status, &format!("state store: {e}"));
                    outbox.abort(staging);
                    continue;
                }
            }
            let name = &manifest.meta.file_name;
            // Also for a downstream endpoint: the name travels in a header,
            // and no endpoint is handed a path or a control code.
            if let Err(e) = crate::outbox::sanitize_file_name(name) {
                tracing::error!(seq, package = %id, error = %e, "delivery failed");
                outbox.abort(staging);
                continue;
            }
            if let Err(e) = outbox.write_sidecar(&mut staging, &sidecar) {
                alarm(&self.status, &format!("outbox: {e}"));
                outbox.abort(staging);
                continue;
            }
            let (state, staging) = match &destination {
                None => (
                    LedgerState::Delivering {
                        staging: staging.name().to_owned(),
                        final_name: name.clone(),
                    },
                    Some(staging),
                ),
                Some(url) => {
                    // Out of staging now: the coming sync makes the move
                    // durable with the data. A crash before the ledger
                    // write leaves files no entry names, removed at start.
                    if let Err(e) = outbox.park_for_forward(staging, &id.to_hex()) {
                        alarm(&self.status, &format!("outbox: {e}"));
                        continue;
                    }
                    let state = LedgerState::Forwarding {
                        url: url.clone(),
                        file_name: name.clone(),
                        attempts: 0,
                        last_error: None,
                        parked: None,
                        since_unix_ms: now_millis().0,
                    };
                    (state, None)
                }
            };
            items.push(Item {
                entry: LedgerEntry { seq, state },
                manifest,
                destination,
                staging,
                delivered_as: None,
                failed: false,
            });
        }
        items
    }

    /// Nothing of a batch that could not be made durable is delivered.
    fn discard(&self, items: Vec<Item>, replay: &[u8]) {
        for it in items {
            match it.staging {
                Some(st) => self.sinks.outbox.abort(st),
                None => self
                    .sinks
                    .outbox
                    .forward_done(&it.manifest.meta.id.to_hex()),
            }
            tracing::error!(seq = it.entry.seq, package = %it.manifest.meta.id, "package received but not delivered; resend it once the alarm is cleared");
        }
        if let Err(e) = self.sinks.store.save_replay(replay) {
            alarm(&self.status, &format!("state store: {e}"));
        }
    }

    /// Step 5: counters, log lines and audit records of a committed batch.
    fn report(&self, items: Vec<Item>) {
        let mut records = Vec::with_capacity(items.len());
        let mut forwarding = Vec::new();
        let mut any_delivered = false;
        for it in items.into_iter().filter(|it| !it.failed) {
            let meta = &it.manifest.meta;
            let place = match (&it.destination, &it.delivered_as) {
                (Some(url), _) => {
                    forwarding.push(((it.entry.seq, meta.id.0), url.clone()));
                    tracing::info!(seq = it.entry.seq, package = %meta.id, destination = %url, "verified; waiting for the downstream endpoint");
                    format!("waiting for {url}")
                }
                (None, Some(name)) => {
                    any_delivered = true;
                    control::count(&self.status, &meta.channel, |c| {
                        c.delivered += 1;
                        c.delivered_bytes += meta.size;
                    });
                    control::update(&self.status, |s| {
                        s.delivered += 1;
                        s.delivered_bytes += meta.size;
                    });
                    tracing::info!(seq = it.entry.seq, package = %meta.id, file = %name, size = meta.size, "delivered");
                    format!("outbox: {name}")
                }
                (None, None) => continue,
            };
            let kind = if it.destination.is_some() {
                EventKind::PackageReceived
            } else {
                EventKind::PackageDelivered
            };
            records.push(
                AuditRecord::new(kind, Actor::system(), Outcome::Success)
                    .package(meta.id.to_hex())
                    .channel(meta.channel.clone())
                    .detail("seq", it.entry.seq.to_string())
                    .detail("size", meta.size.to_string())
                    .detail("digest", hex::encode(&meta.digest))
                    .detail("sender", meta.sender_identity.clone())
                    .detail("signing_key", it.manifest.signing_key_id.clone())
                    .detail("destination", place),
            );
        }
        if any_delivered {
            // A delivery went through: outbox alarms (disk full) are
            // over; the log keeps their history.
            control::update(&self.status, |s| {
                s.alarms.retain(|a| !a.starts_with("outbox:"))
            });
        }
        self.audit.note_all(records);
        if !forwarding.is_empty() {
            self.sinks.wake.added(forwarding);
        }
    }
}

/// A package of a batch being committed.
struct Item {
    entry: LedgerEntry,
    manifest: Box<Manifest>,
    destination: Option<String>,
    /// Still in staging (outbox packages until renamed).
    staging: Option<Staging>,
    /// Its name in the outbox once renamed.
    delivered_as: Option<String>,
    failed: bool,
}

fn alarm(status: &SharedStatus, msg: &str) {
    tracing::error!("{msg}");
    control::update(status, |s| {
        if !s.alarms.iter().any(|a| a == msg) {
            s.alarms.push(msg.to_string());
        }
    });
}

/// The second, independent inspection on the egress side under the
/// channel's `egress_profile`: `Ok(sidecar note)` to deliver (a masked
/// copy has replaced the staged data), `Err(why)` to drop. Fails closed:
/// a channel the egress policy does not know, a profile it cannot load, a
/// `review` verdict (there are no reviewers on this side) or an audit log
/// that cannot record the inspection all stop delivery.
fn reinspect(
    gate: Option<&crate::policy_gate::PolicyGate>,
    outbox: &Outbox,
    staging: &mut Staging,
    manifest: &Manifest,
    audit: &AuditTrail,
) -> Result<Option<serde_json::Value>, String> {
    let Some(gate) = gate else { return Ok(None) };
    let meta = &manifest.meta;
    let policy = gate.current();
    let Some(channel) = policy.channel(&meta.channel) else {
        return Err(format!(
            "channel `{}` is not in this side's policy (fail closed)",
            meta.channel
        ));
    };
    let Some(profile) = channel.egress_profile.clone() else {
        return Ok(None);
    };
    let guard = gate
        .guard(&profile)
        .ok_or_else(|| format!("content profile `{profile}` is not loaded"))?;
    staging.sync().map_err(|e| e.to_string())?;
    let id = meta.id.to_hex();
    let report = crate::content::inspect_in_place(
        &guard,
        staging.path(),
        &meta.file_name,
        &meta.content_type,
        outbox.staging_dir(),
        &id,
    )
    .map_err(|e| e.to_string())?;
    audit
        .record(crate::content::record(
            EventKind::GuardReinspected,
            Actor::system(),
            &id,
            &meta.channel,
            &report,
        ))
        .map_err(|e| format!("the audit log cannot record the inspection: {e}"))?;
    match report.verdict {
        ferry_guard::Verdict::Pass | ferry_guard::Verdict::Masked => {
            Ok(Some(serde_json::json!({
                "profile": report.profile,
                "verdict": report.verdict,
                "findings_total": report.findings_total,
                "sha256_before": report.digest_before,
                "sha256_after": report.digest_after,
            })))
        }
        ferry_guard::Verdict::Review => Err(format!(
            "the egress profile `{profile}` asks for review; there are no reviewers on the egress side (fail closed): {}",
            report.reasons.join("; ")
        )),
        ferry_guard::Verdict::Reject => Err(format!(
            "refused by the egress content guard (`{profile}`): {}",
            report.reasons.join("; ")
        )),
    }
}

/// The JSON metadata written next to each delivered file.
pub fn sidecar(link: &str, seq: u64, attempt: u8, m: &Manifest) -> serde_json::Value {
    // The digest is the suite's: SHA-256 (intl) or SM3 (gm).
    let digest_algorithm = match m.suite {
        ferry_protocol::suite::SuiteId::Intl => "sha256",
        ferry_protocol::suite::SuiteId::Gm => "sm3",
    };
    let mut v = serde_json::json!({
        "package_id": m.meta.id.to_hex(),
        "link": link,
        "seq": seq,
        "send": attempt,
        "channel": m.meta.channel,
        "file_name": m.meta.file_name,
        "content_type": m.meta.content_type,
        "size": m.meta.size,
        "digest_algorithm": digest_algorithm,
        "digest": hex::encode(&m.meta.digest),
        "sender_identity": m.meta.sender_identity,
        "created_unix_ms": m.meta.created_unix_ms,
        "delivered_unix_ms": now_millis().0,
        "suite": m.suite.name(),
        "signing_key_id": m.signing_key_id,
        "key_epoch": m.epoch,
    });
    if let Some(i) = &m.meta.inspection {
        // The ingress guard's record, signed in the manifest.
        v["ingress_guard"] = serde_json::json!({
            "profile": i.profile,
            "verdict": i.verdict.as_str(),
            "sha256_before": hex::encode(&i.sha256_before),
            "sha256_after": hex::encode(&i.sha256_after),
        });
    }
    v
}

/// Finishes deliveries a crash interrupted between the ledger write and
/// the rename.
fn recover(store: &StateStore, outbox: &Outbox) -> Result<(), DaemonError> {
    for (id, entry) in store.list_delivering()? {
        if let LedgerState::Delivering {
            staging,
            final_name,
        } = &entry.state
        {
            let sidecar = outbox.staged_sidecar(staging).unwrap_or_else(|| {
                serde_json::json!({
                    "package_id": hex::encode(id),
                    "seq": entry.seq,
                    "recovered_after_crash": true,
                })
            });
            match outbox.recover(staging, final_name, &sidecar) {
                Ok(Some(path)) => {
                    let name = path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    store.finish_delivery(id, &name, now_millis().0)?;
                    tracing::info!(package = %hex::encode(id), file = %name, "interrupted delivery finished");
                }
                Ok(None) => {
                    // No staging file: the rename had happened already.
                    store.finish_delivery(id, final_name, now_millis().0)?;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}
