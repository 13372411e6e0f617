//! The egress side's wiring: starts the receive thread (`receive.rs`) and
//! the writer thread (`writer.rs`), the forwarder (`forward.rs`) when a
//! channel delivers downstream, and answers its admin requests.
//!
//! Three threads carry a package: the socket thread only reads datagrams
//! into the receive spool (`spool.rs`: memory, then disk); the receive
//! thread runs the protocol receiver on them and hands verified plaintext
//! to the writer; the writer owns the outbox and the state store. A slow
//! disk, fsync or re-inspection makes the writer's queue full and the
//! receive thread wait, and then the spool grows: datagrams wait, they are
//! not dropped. The writer stages every package in `OUTBOX/.staging`, and
//! on a verified completion records the delivery (ledger entry plus replay
//! window, one redb transaction) before the atomic rename, so a crash
//! between the two is finished at the next start and a package is never
//! delivered twice.

pub(crate) mod blocks;
pub(crate) mod forward;
pub(crate) mod ledger_memory;
pub(crate) mod receive;
pub(crate) mod spool;
pub(crate) mod status;
pub(crate) mod writer;

use crate::admin::protocol::{self, Request, SharedStatus};
use crate::config::Config;
use crate::egress::ledger_memory::LedgerMemory;
use crate::egress::receive::{drain, LinkWatch, BATCH};
use crate::egress::spool::Spool;
use crate::egress::status::{
    publish, show_gaps, show_spool, Capacity, OverrunReport, SocketFigures,
};
use crate::egress::writer::{recover, writer_loop, Limits, Sinks, Write, WRITER_QUEUE};
use crate::link::keys::schedule;
use crate::link::udp::{self, BatchReceiver};
use crate::ops::audit_trail::{Actor, AuditRecord, AuditTrail, EventKind, Outcome};
use crate::state::gaps::{self, GapBook};
use crate::state::outbox::Outbox;
use crate::state::store::StateStore;
use crate::{now_millis, DaemonError};
use ferry_protocol::{Receiver, ReceiverConfig, ReplayWindow};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Test and benchmark knobs that a deployment never sets: random loss
/// injected on the receive path (the loopback has none of its own), and a
/// slower processing thread.
#[derive(Debug, Clone, Copy, Default)]
pub struct EgressOptions {
    /// Datagrams dropped per million, before the protocol sees them.
    pub drop_per_million: u32,
    /// Seed of the drop decisions.
    pub seed: u64,
    /// Microseconds the processing thread pauses per batch: an egress
    /// host slower than the sender, made on purpose.
    pub slow_batch_us: u32,
}

/// Runs the egress side until `shutdown` is set.
pub fn run(
    cfg: Config,
    shutdown: Arc<AtomicBool>,
    status: SharedStatus,
    options: EgressOptions,
) -> Result<(), DaemonError> {
    let audit = Arc::new(AuditTrail::open(&cfg)?);
    let mut keys = crate::link::keys::load_keys(&cfg)?;
    let open = keys.take_open_keys()?;
    let mut expiry = crate::ops::expiry::ExpiryWatch::new(&cfg, &keys);
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
    let gap_book = Arc::new(Mutex::new(GapBook::load(&store)?));
    recover(&store, &outbox, &audit, &gap_book)?;
    outbox.cleanup_staging()?;
    if let Ok(b) = gap_book.lock() {
        show_gaps(&status, &b);
    }

    let window = match store.load_replay()? {
        Some(b) => ReplayWindow::from_bytes(&b)?,
        None => ReplayWindow::new(),
    };
    let chain = crate::link::keys::epoch_chain(&cfg, &keys);
    let mut rc = ReceiverConfig::new(&cfg.link.name, schedule(&cfg));
    rc.mtu = cfg.link.mtu;
    rc.max_buffer_bytes = cfg.link.max_buffer_bytes;
    rc.package_idle_timeout_ms = cfg.link.package_idle_timeout_ms;
    rc.link_down_after_ms = cfg.link.link_down_after_ms;
    // Blocks that must wait go to disk, bounded like the receive spool.
    let mut receiver = Receiver::new(rc, open, chain, window).with_block_store(Box::new(
        crate::egress::blocks::FileBlockStore::new(state_dir.clone(), cfg.link.receive_spool_bytes),
    ));
    if let Some(t) = gaps::load_newest_heartbeat(&store)? {
        // Heartbeats made before the last one seen (before this restart)
        // are replays, not life.
        receiver.resume_heartbeats_after(t);
    }

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
    if cfg.link.udp_gro {
        if let Err(e) = udp.enable_gro() {
            // Slower, nothing lost: every datagram still arrives, one per
            // socket buffer.
            tracing::warn!(error = %e, "UDP GRO refused by the kernel; receiving one datagram per message (set udp_gro = false to silence this)");
        }
    }
    let gro = udp.gro();
    let gro_messages = Arc::new(AtomicU64::new(0));
    let kernel_drops = udp.drop_probe();

    protocol::update(&status, |s| {
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
        .map(crate::inspection::policy_gate::PolicyGate::load)
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
    let forwarder = crate::egress::forward::spawn(
        cfg.downstream.clone(),
        store.clone(),
        outbox.clone(),
        status.clone(),
        audit.clone(),
        shutdown.clone(),
    )?;
    let (tx, rx) = sync_channel::<Write>(WRITER_QUEUE);
    let max_buffer_bytes = cfg.link.max_buffer_bytes as u64;
    // Without the horizon the ledger was pruned to, a copy of a forgotten
    // package could be delivered twice: no start without it.
    let ledger = LedgerMemory::open(&store, cfg.link.ledger_max_age_s)?;
    let writer = {
        let status = status.clone();
        let store = store.clone();
        let link_name = cfg.link.name.clone();
        let audit = audit.clone();
        let gate = gate.clone();
        let wake = forwarder.notifier();
        let gap_book = gap_book.clone();
        std::thread::Builder::new()
            .name("ferry-writer".into())
            .spawn(move || {
                writer_loop(
                    rx,
                    Sinks {
                        outbox,
                        store,
                        wake,
                        gaps: gap_book,
                    },
                    status,
                    link_name,
                    &audit,
                    gate.as_deref(),
                    Limits {
                        max_buffer_bytes,
                        ledger,
                    },
                )
            })
            .map_err(DaemonError::thread_start("writer"))?
    };
    let watch = match &gate {
        Some(g) => {
            let g = g.clone();
            Some(crate::inspection::malware::spawn_watch(
                status.clone(),
                shutdown.clone(),
                move || g.malware_profiles(),
            )?)
        }
        None => None,
    };
    let control = {
        let status = status.clone();
        let audit = audit.clone();
        let store = store.clone();
        let wake = forwarder.notifier();
        let gap_book = gap_book.clone();
        let admin =
            crate::admin::gate::AdminPlane::from_config(&cfg, nix::unistd::getuid().as_raw())?;
        crate::admin::gate::publish(&admin, &cfg, &status);
        let mode = admin.socket_mode();
        let plane_status = status.clone();
        let note: crate::admin::api::Note = {
            let audit = audit.clone();
            Arc::new(move |r| audit.note(r))
        };
        let handler: crate::admin::api::Handler = Arc::new(move |caller, req| {
            crate::admin::gate::gate(&admin, &audit, caller, req, |actor, _, req| match req {
                Request::Status => serde_json::to_value(protocol::snapshot(&status))
                    .unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() })),
                Request::Resend { .. } => serde_json::json!({
                    "error": "resend is an ingress command: run it against the ingress side's configuration"
                }),
                Request::ReloadPolicy => crate::inspection::policy_gate::reload_policy(
                    gate.as_deref(),
                    &audit,
                    &status,
                    actor,
                ),
                Request::AuditNote { record } => {
                    crate::admin::gate::audit_note(&audit, actor, record)
                }
                Request::SignaturesNote { record } => {
                    crate::cli::signatures::note(&audit, &status, actor, record)
                }
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
                    match crate::egress::forward::retry(&store, &status, package.as_deref()) {
                        Ok(v) => {
                            wake.retry_now();
                            v
                        }
                        Err(e) => serde_json::json!({ "error": e.to_string() }),
                    }
                }
                Request::GapAck {
                    first,
                    last,
                    reason,
                } => ack_gaps(
                    &gap_book, &store, &status, &audit, actor, first, last, &reason,
                ),
            })
        });
        crate::admin::api::Planes::start(&cfg, mode, shutdown.clone(), handler, note, plane_status)?
    };
    let metrics = match cfg.metrics.as_ref() {
        Some(m) => Some(crate::ops::metrics::spawn(
            m.listen,
            status.clone(),
            shutdown.clone(),
        )?),
        None => None,
    };

    // The socket's own thread: it only moves batches into the spool, so
    // slow processing fills the spool (memory, then disk) instead of the
    // socket buffer.
    let spool = Arc::new(
        Spool::new(
            &state_dir,
            RECEIVE_SPOOL_MEMORY_BYTES,
            cfg.link.receive_spool_bytes,
            BATCH,
            max_len,
        )
        .map_err(DaemonError::io(&state_dir))?,
    );
    let spill_thread = spool
        .spill_thread()
        .map_err(DaemonError::thread_start("receive spool"))?;
    let socket_thread = {
        let spool = spool.clone();
        let shutdown = shutdown.clone();
        std::thread::Builder::new()
            .name("ferry-recv".into())
            .spawn({
                let gro_messages = gro_messages.clone();
                move || receive_into(udp, &spool, &shutdown, &gro_messages)
            })
            .map_err(DaemonError::thread_start("receive"))?
    };
    let mut batch = spool.new_batch();
    let mut rng = options.seed | 1;
    let mut saved_epoch = receiver.epochs().oldest().map(|(e, _)| e);
    let mut last_status = Instant::now();
    let mut activity = crate::ops::activity::Activity::new(&status, last_status);
    let mut result = Ok(());
    let mut link = LinkWatch {
        gaps: gap_book.clone(),
        store: store.clone(),
        replays_unreported: 0,
        last_replay_report: None,
    };
    // The receiver's clock: the arrival time of what it processes while a
    // backlog waits, the wall clock otherwise (never going back).
    let mut clock = now_millis();
    let mut capacity = Capacity::default();
    let mut overrun = OverrunReport::default();
    while !shutdown.load(Ordering::Relaxed) {
        if socket_thread.is_finished() || spill_thread.as_ref().is_some_and(|t| t.is_finished()) {
            break;
        }
        let wait = receiver
            .poll_timeout()
            .map(|t| t.since(now_millis()))
            .unwrap_or(100)
            .clamp(1, 100);
        let taken = spool.take(&mut batch, Duration::from_millis(wait));
        let now = match &taken {
            Some(t) if t.more => t.arrived,
            _ => now_millis(),
        };
        let busy_from = Instant::now();
        let bytes = batch.total_bytes() as u64;
        if let Some(t) = &taken {
            clock = clock.max(t.arrived);
        }
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
            receiver.handle_datagram(clock, d);
        }
        batch.clear();
        if options.slow_batch_us > 0 && bytes > 0 {
            std::thread::sleep(Duration::from_micros(u64::from(options.slow_batch_us)));
        }
        clock = clock.max(now);
        let now = clock;
        receiver.handle_timeout(now);
        if !drain(&mut receiver, &tx, &status, &audit, &mut link) {
            result = Err(DaemonError::ThreadStopped("egress writer"));
            break;
        }
        if bytes > 0 {
            capacity.record(bytes, busy_from.elapsed());
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
            activity.tick(&status, last_status);
            expiry.poll(&status);
            audit.tick();
            publish(&status, &cfg, receiver.stats(), receiver.epochs().current());
            show_spool(
                &status,
                &spool,
                SocketFigures {
                    kernel_dropped: kernel_drops.dropped(),
                    gro,
                    gro_messages: gro_messages.load(Ordering::Relaxed),
                },
                cfg.link.receive_spool_bytes,
                &capacity,
                &mut overrun,
                &audit,
            );
        }
    }
    shutdown.store(true, Ordering::Relaxed);
    spool.close();
    if let Some(t) = spill_thread {
        if t.join().is_err() {
            result = result.and(Err(DaemonError::ThreadStopped("receive spool")));
        }
    }
    match socket_thread.join() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => result = result.and(Err(e)),
        Err(_) => result = result.and(Err(DaemonError::ThreadStopped("egress receive"))),
    }
    drop(tx);
    let _ = writer.join();
    shutdown.store(true, Ordering::Relaxed);
    forwarder.join();
    control.join();
    if let Some(m) = metrics {
        let _ = m.join();
    }
    if let Some(w) = watch {
        let _ = w.join();
    }
    publish(&status, &cfg, receiver.stats(), receiver.epochs().current());
    activity.finish(&status, Instant::now());
    // What dropped since the last overrun record is audited before the
    // stop, whatever the interval.
    overrun.flush();
    show_spool(
        &status,
        &spool,
        SocketFigures {
            kernel_dropped: kernel_drops.dropped(),
            gro,
            gro_messages: gro_messages.load(Ordering::Relaxed),
        },
        cfg.link.receive_spool_bytes,
        &capacity,
        &mut overrun,
        &audit,
    );
    audit.note(
        AuditRecord::new(EventKind::DaemonStop, Actor::system(), Outcome::Success)
            .detail("role", "egress"),
    );
    if let Ok(a) = Arc::try_unwrap(audit) {
        a.close();
    }
    result
}

/// Memory the receive spool holds before it spills to disk.
const RECEIVE_SPOOL_MEMORY_BYTES: usize = 64 << 20;

/// The socket thread: batches from the sockets into the spool until
/// shutdown or a socket error.
fn receive_into(
    mut udp: BatchReceiver,
    spool: &Spool,
    shutdown: &AtomicBool,
    gro_messages: &AtomicU64,
) -> Result<(), DaemonError> {
    let mut batch = spool.new_batch();
    while !shutdown.load(Ordering::Relaxed) {
        udp.recv(&mut batch, Duration::from_millis(100))?;
        spool.push(&mut batch, now_millis());
        gro_messages.store(udp.counters().coalesced, Ordering::Relaxed);
    }
    Ok(())
}

/// An administrator's acknowledgement that `first..=last` will never come:
/// removed from the book (durably), audited with who and why.
#[allow(clippy::too_many_arguments)]
fn ack_gaps(
    book: &Mutex<GapBook>,
    store: &StateStore,
    status: &SharedStatus,
    audit: &AuditTrail,
    actor: Actor,
    first: u64,
    last: u64,
    reason: &str,
) -> serde_json::Value {
    if last < first || reason.trim().is_empty() {
        return serde_json::json!({ "error": "give a range first ≤ last and a reason" });
    }
    let Ok(mut b) = book.lock() else {
        return serde_json::json!({ "error": "internal: gap book unavailable; restart ferryd" });
    };
    let mut trial = b.clone();
    let removed = trial.acknowledge(first, last);
    if removed == 0 {
        return serde_json::json!({
            "error": format!("no open gap in {first}..{last}: see \"gaps\" in `ferryctl status`")
        });
    }
    // Audited before it takes effect: an acknowledgement the log cannot
    // hold is not made.
    if let Err(e) = audit.record(
        AuditRecord::new(EventKind::LinkGap, actor, Outcome::Success)
            .reason(reason.to_owned())
            .detail("action", "acknowledged")
            .detail("first", first.to_string())
            .detail("last", last.to_string())
            .detail("seqs", removed.to_string()),
    ) {
        return serde_json::json!({ "error": format!("not acknowledged: {e}") });
    }
    if let Err(e) = trial.save(store) {
        return serde_json::json!({ "error": format!("not acknowledged: {e}") });
    }
    *b = trial;
    show_gaps(status, &b);
    serde_json::json!({ "acknowledged": removed, "gap_seqs_open": b.seqs_open() })
}
