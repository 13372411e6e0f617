//! The send loop: drives `ferry_protocol::Sender`, reads payloads from the
//! queue files, paces and batches datagrams, re-sends what the egress side
//! may have missed, and prunes what it no longer needs.

use crate::admin::protocol::{self};
use crate::ingress::bundle::{self, Candidate, Run};
use crate::ingress::queue::{with_first_seq, FIRST_SEQ_KEY};
use crate::ingress::shared::Shared;
use crate::link::pacer::Pacer;
use crate::link::udp::{BatchSender, DatagramBatch};
use crate::ops::activity::{Activity, PACKAGE_TARGET};
use crate::ops::audit_trail::{Actor, AuditRecord, EventKind, Outcome, Role};
use crate::state::meta::queued_meta_from_text;
use crate::state::store::{QueueRow, QueueState, QueuedPackage, StateChange};
use crate::{now_millis, DaemonError};
use ferry_protocol::{PackageId, Sender, Transmit};
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Datagrams per sendmmsg batch.
pub(crate) const BATCH: usize = 64;

/// Packages handed to the protocol sender at once (each holds one FEC
/// block in memory while being sent).
pub(crate) const SENDER_WINDOW: usize = 4;

/// How often the sender looks for newly queued packages while busy.
pub(crate) const FEED_INTERVAL: Duration = Duration::from_millis(50);

/// Self-healing re-sends consider packages whose sends ended at most this
/// long before they became due; older ones (an ingress that was down, a
/// budget long exhausted) are skipped and counted, never sent in a flood.
pub(crate) const HEAL_WINDOW_MS: u64 = 60_000;

/// Start of the status warning that the kernel refused UDP GSO.
pub(crate) const GSO_WARNING_PREFIX: &str = "udp gso:";

/// Key in a queued package's description: it had its self-healing re-send.
pub(crate) const HEALED_KEY: &str = "heal_resent";

/// A short bundle held back at the end of the queue (`bundle_linger_ms`):
/// under a steady stream of small pushes each wake of the send loop finds
/// only the two or three packages of one commit, and a bundle that small
/// pays its key agreement, signature and transactions for almost nothing.
pub(crate) struct Linger {
    /// When the bundle was first held back.
    since: Instant,
    /// [`crate::ingress::shared::Wake::queued_total`] before the queue was
    /// read, and the members found then.
    seen: u64,
    members: usize,
}

impl Linger {
    /// Still held back: within the linger time and too few packages
    /// queued since to fill the bundle (the queue is not read meanwhile).
    fn holds(&self, s: &Shared, max_packages: u16) -> bool {
        let more = s.send_wake.queued_total().saturating_sub(self.seen);
        self.since.elapsed() < linger_time(s)
            && (self.members as u64).saturating_add(more) < u64::from(max_packages)
    }

    /// Time left of the linger.
    fn left(&self, s: &Shared) -> Duration {
        linger_time(s).saturating_sub(self.since.elapsed())
    }
}

fn linger_time(s: &Shared) -> Duration {
    Duration::from_millis(s.cfg.link.bundle_linger_ms)
}

pub(crate) struct Open {
    id: PackageId,
    source: Source,
    /// For the per-channel counters once the send completes.
    channel: String,
    size: u64,
    /// For a bundle: its members (id, sequence number, size), each
    /// recorded as sent on its own once the bundle's sends complete.
    members: Vec<(PackageId, u64, u64)>,
}

/// Where a package's bytes come from while it is sent.
enum Source {
    /// Its queued copy.
    File(File),
    /// A bundle, built in memory (at most `bundle_max_bytes` plus its
    /// member table), or a body kept in the state store (a small one),
    /// kept until its sends complete.
    Memory(Vec<u8>),
}

impl Open {
    /// Reads payload bytes. `Ok(Err(why))`: the queued copy can no longer
    /// be read (changed by hand or a disk error, after it was opened and
    /// its size checked); the package is abandoned, not the link.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<Result<(), String>, DaemonError> {
        match &self.source {
            Source::File(f) => Ok(f
                .read_exact_at(buf, offset)
                .map_err(|e| format!("reading it at offset {offset} failed: {e}"))),
            Source::Memory(b) => {
                // In memory, its size checked: a short read is a bug.
                let at = usize::try_from(offset).unwrap_or(usize::MAX);
                let src = at
                    .checked_add(buf.len())
                    .and_then(|end| b.get(at..end))
                    .ok_or_else(|| {
                        DaemonError::Internal(format!(
                            "package {}: payload asked past its end ({offset} + {})",
                            self.id.to_hex(),
                            buf.len()
                        ))
                    })?;
                buf.copy_from_slice(src);
                Ok(Ok(()))
            }
        }
    }
}

pub(crate) fn send_loop(
    s: &Shared,
    sender: &mut Sender,
    udp: &mut BatchSender,
) -> Result<(), DaemonError> {
    let max_len = sender.max_datagram_len();
    let mut batch = DatagramBatch::new(BATCH, max_len);
    // Four batches of credit: a sleep that overshoots (timer slack is tens
    // of microseconds) is not lost in full, and 4 × 64 datagrams are far
    // below any receive buffer.
    let burst = (4 * BATCH * max_len) as u64;
    let mut pacer = Pacer::new(s.cfg.link.rate_bytes_per_s, burst);
    let mut open: HashMap<u64, Open> = HashMap::new();
    let mut last_seq: Option<u64> = None;
    let mut payload = Vec::new();
    let mut saved_epoch = sender.epochs().oldest().map(|(e, _)| e);
    let mut last_status = Instant::now();
    let mut activity = Activity::new(&s.status, last_status);
    let mut last_prune = Instant::now();
    let mut last_heal = Instant::now();
    let mut last_feed = Instant::now();
    let mut heal = HealBudget::new(s.cfg.link.heal_resend_max_bytes_per_s, Instant::now());
    let mut linger: Option<Linger> = None;
    while !s.shutdown.load(Ordering::Relaxed) {
        let now = now_millis();
        // The queue is read at most every FEED_INTERVAL while sending (a
        // redb read per batch would cost more than the batch), at once when
        // idle, and not while a short bundle lingers.
        let lingering = linger
            .as_ref()
            .is_some_and(|l| l.holds(s, s.cfg.link.bundle_max_packages));
        if sender.queued() < SENDER_WINDOW
            && (sender.queued() == 0 || last_feed.elapsed() >= FEED_INTERVAL)
            && !lingering
        {
            last_feed = Instant::now();
            feed(s, sender, &mut open, &mut last_seq, &mut linger, now)?;
        }
        let before = sender.queued_seqs();
        batch.clear();
        let mut idle = false;
        while batch.len() < BATCH && !idle {
            let mut need = None;
            let mut failure = None;
            batch.push_with(|buf| match sender.poll_transmit(now, buf) {
                Ok(Transmit::Datagram(n)) => n,
                Ok(Transmit::NeedPayload { seq, offset, len }) => {
                    need = Some((seq, offset, len));
                    0
                }
                Ok(Transmit::Idle) => {
                    idle = true;
                    0
                }
                Err(e) => {
                    failure = Some(e);
                    0
                }
            });
            if let Some(e) = failure {
                return Err(e.into());
            }
            if let Some((seq, offset, len)) = need {
                let Some(o) = open.get(&seq) else {
                    return Err(DaemonError::Internal(format!(
                        "payload for unknown seq {seq}"
                    )));
                };
                payload.resize(len, 0);
                match o.read_at(&mut payload, offset)? {
                    Ok(()) => sender.provide_payload(seq, offset, &payload)?,
                    Err(why) => {
                        // The rest of its send is not made; the egress
                        // side fails the incomplete send.
                        sender.abandon(seq);
                        if let Some(o) = open.remove(&seq) {
                            fail_unreadable(s, &Unreadable::sending(s, seq, &o), &why)?;
                        }
                    }
                }
            }
        }
        if !batch.is_empty() {
            let bytes: u64 = batch.iter().map(|d| d.len() as u64).sum();
            let wait = pacer.delay(Instant::now(), bytes);
            if !wait.is_zero() {
                std::thread::sleep(wait);
            }
            let report = udp.send(&batch);
            sender.record_send_errors(report.transient_errors);
            protocol::update(&s.status, |st| {
                st.datagrams_sent += report.sent as u64;
                st.udp_messages_sent += report.messages as u64;
                st.udp_gso_segments = udp.gso_segments() as u64;
                st.send_dropped += report.dropped as u64;
                st.send_errors += report.transient_errors;
                // Slower from now on, nothing lost: a standing warning, so
                // the operator sees why the link moves less than before.
                if udp.counters().gso_refused > 0
                    && !st
                        .warnings
                        .iter()
                        .any(|w| w.starts_with(GSO_WARNING_PREFIX))
                {
                    st.warnings.push(format!(
                        "{GSO_WARNING_PREFIX} the kernel refused UDP GSO on the link socket, so the link sends one datagram per UDP message (slower, nothing lost); the route's device lacks UDP checksum offload or its MTU is below the link's `mtu`: fix the route, or set `udp_gso_segments = 1` to silence this"
                    ));
                }
            });
        }
        let after = sender.queued_seqs();
        // Every package whose sends completed in this round: one
        // transaction and one audit flush for all of them.
        let mut sent = Vec::new();
        let mut records = Vec::new();
        for seq in before.iter().filter(|q| !after.contains(q)) {
            if let Some(o) = open.remove(seq) {
                record_sent(s, *seq, o, &mut sent, &mut records);
            }
        }
        s.store.set_states(&sent)?;
        s.audit.note_all(records);
        let oldest = sender.epochs().oldest().map(|(e, sec)| (e, sec.clone()));
        if let Some((e, secret)) = oldest {
            if saved_epoch != Some(e) {
                s.keys.save_epoch(e, &secret)?;
                saved_epoch = Some(e);
            }
        }
        if last_status.elapsed() >= Duration::from_secs(1) {
            last_status = Instant::now();
            publish(s, sender, in_sender(&open), first_unsent(last_seq));
            activity.tick(&s.status, last_status);
            if s.reload.swap(false, Ordering::Relaxed) {
                crate::inspection::policy_gate::reload_policy(
                    s.policy.as_ref(),
                    &s.audit,
                    &s.status,
                    Actor::new("SIGHUP", Role::SystemAdmin),
                );
            }
            s.audit.tick();
            crate::ingress::holds::approvals::expire(s);
            crate::ingress::holds::window_holds::release_due(s);
            if let Ok(mut w) = s.expiry.lock() {
                w.poll(&s.status);
            }
        }
        if last_heal.elapsed() >= HEAL_INTERVAL {
            last_heal = Instant::now();
            heal_resend(s, &mut heal)?;
        }
        if last_prune.elapsed() >= PRUNE_INTERVAL {
            last_prune = Instant::now();
            prune(s)?;
        }
        if idle && batch.is_empty() {
            let until = sender.poll_timeout();
            let mut wait = Duration::from_millis(until.since(now_millis()).clamp(1, 20));
            if let Some(l) = &linger {
                wait = wait.min(l.left(s).max(Duration::from_micros(100)));
            }
            s.send_wake.wait(wait);
        }
    }
    publish(s, sender, in_sender(&open), first_unsent(last_seq));
    activity.finish(&s.status, Instant::now());
    Ok(())
}

/// Packages handed to the protocol sender and not yet sent: a bundle
/// counts as its members.
fn in_sender(open: &HashMap<u64, Open>) -> u64 {
    open.values().map(|o| o.members.len().max(1) as u64).sum()
}

/// The lowest sequence number a package waiting to be sent can have: the
/// loop hands the queue over in order and never reads behind what it
/// handed over (every path that queues a package again gives it a new,
/// higher number; a lingering bundle moves `last_seq` back before it).
fn first_unsent(last_seq: Option<u64>) -> u64 {
    last_seq.map_or(0, |l| l.saturating_add(1))
}

/// Publishes the sender's figures and `queued`: the packages waiting from
/// `first_unsent` on, and those in the sender.
pub(crate) fn publish(s: &Shared, sender: &Sender, in_sender: u64, first_unsent: u64) {
    let queued = s.store.count_queued_from(first_unsent).unwrap_or(0);
    let epoch = sender.epochs().current();
    let ss = sender.stats();
    protocol::update(&s.status, |st| {
        st.sender = Some(serde_json::json!({
            "packages_sent": ss.packages_sent,
            "sends_completed": ss.sends_completed,
            "datagrams": ss.datagrams,
            "repair_datagrams": ss.repair_datagrams,
            "heartbeats": ss.heartbeats,
            "payload_bytes": ss.payload_bytes,
            "expired_sends": ss.expired_sends,
            "send_errors": ss.send_errors,
            "last_send_ms": ss.last_send_ms,
            "last_send_bytes": ss.last_send_bytes,
        }));
        st.updated_unix_ms = now_millis().0;
        st.queued = queued + in_sender;
        st.epoch = epoch;
    });
    let snap = protocol::snapshot(&s.status);
    if let Err(e) = protocol::write_status_file(&s.cfg.paths.state_dir, &snap) {
        tracing::warn!(error = %e, "could not write status.json");
    }
}

/// A package (or each member of a bundle) whose sends completed: its
/// queue state, counters, log line and `package.sent` audit record.
fn record_sent(
    s: &Shared,
    seq: u64,
    o: Open,
    sent: &mut Vec<StateChange>,
    records: &mut Vec<AuditRecord>,
) {
    let state = QueueState::Sent {
        times: u32::from(s.cfg.link.redundancy),
        last_unix_ms: now_millis().0,
    };
    let sends = s.cfg.link.redundancy.to_string();
    if o.members.is_empty() {
        sent.push(StateChange {
            id: o.id.0,
            seq,
            state,
        });
        protocol::update(&s.status, |st| st.sent += 1);
        protocol::count(&s.status, &o.channel, |c| {
            c.sent += 1;
            c.sent_bytes += o.size;
        });
        tracing::debug!(target: PACKAGE_TARGET, package = %o.id, seq, "sent");
        records.push(
            AuditRecord::new(EventKind::PackageSent, Actor::system(), Outcome::Success)
                .package(o.id.to_hex())
                .detail("seq", seq.to_string())
                .detail("sends", sends),
        );
        return;
    }
    let n = o.members.len() as u64;
    protocol::update(&s.status, |st| {
        st.sent += n;
        st.bundles_sent += 1;
        st.bundled_packages += n;
    });
    tracing::debug!(target: PACKAGE_TARGET, bundle = %o.id, seq, packages = n, "bundle sent");
    for (id, member_seq, size) in o.members {
        sent.push(StateChange {
            id: id.0,
            seq: member_seq,
            state,
        });
        protocol::count(&s.status, &o.channel, |c| {
            c.sent += 1;
            c.sent_bytes += size;
        });
        records.push(
            AuditRecord::new(EventKind::PackageSent, Actor::system(), Outcome::Success)
                .package(id.to_hex())
                .detail("seq", member_seq.to_string())
                .detail("sends", sends.clone())
                .detail("bundle", o.id.to_hex())
                .detail("bundle_seq", seq.to_string()),
        );
    }
}

/// Hands queued packages to the protocol sender in sequence order: small
/// ones whose numbers follow one another on one channel as bundles (up to
/// `bundle_max_packages` and `bundle_max_bytes`), the rest alone.
pub(crate) fn feed(
    s: &Shared,
    sender: &mut Sender,
    open: &mut HashMap<u64, Open>,
    last_seq: &mut Option<u64>,
    linger: &mut Option<Linger>,
    now: ferry_protocol::Millis,
) -> Result<(), DaemonError> {
    let room = SENDER_WINDOW.saturating_sub(sender.queued());
    if room == 0 {
        return Ok(());
    }
    let (max_packages, max_bytes) = (s.cfg.link.bundle_max_packages, s.cfg.link.bundle_max_bytes);
    let first = last_seq.map_or(0, |l| l.saturating_add(1));
    // Enough records to fill every free slot with a full bundle.
    let limit = room.saturating_mul(usize::from(max_packages.max(1)));
    // Before the read: a package queued after it is counted as new.
    let seen = s.send_wake.queued_total();
    let records = s.store.next_queued(first, limit)?;
    let whole_queue = records.len() < limit;
    // Recorded together once the round is handed over (one transaction).
    let mut sending = Vec::new();
    let mut run = Run::default();
    for (id, q) in records {
        if sender.queued() >= SENDER_WINDOW {
            break;
        }
        let (meta, first_seq) =
            queued_meta_from_text(&q.meta_json).ok_or_else(|| DaemonError::Package {
                id: hex::encode(id),
                what: "queue record unreadable".into(),
            })?;
        if let Some(stop) = s.stopped(&meta.channel) {
            // Its number is skipped (the egress side sees a gap): the
            // package keeps it as its first, to close that gap later.
            hand_over(s, sender, open, &mut sending, run.take(), now)?;
            *last_seq = Some(q.seq);
            if let Some(q) = held_copy(s, id, &q, &meta)? {
                crate::ingress::holds::approvals::hold_stopped(s, id, &q, &stop)?;
            }
            continue;
        }
        if let Some(until) = crate::ingress::holds::window_holds::closed_until(s, &meta.channel) {
            // "Held queued until the window opens": out of the sequence
            // order like a stopped channel's, queued again (new sequence
            // number) when the window opens. A package already handed to
            // the sender finishes its send.
            hand_over(s, sender, open, &mut sending, run.take(), now)?;
            *last_seq = Some(q.seq);
            if let Some(q) = held_copy(s, id, &q, &meta)? {
                crate::ingress::holds::window_holds::hold_queued(s, id, &q, &meta.channel, until)?;
            }
            continue;
        }
        let c = Candidate {
            id,
            seq: q.seq,
            first_seq,
            meta,
            path: q.path,
            inline: q.inline,
        };
        if !run.admits(&c, max_packages, max_bytes) {
            hand_over(s, sender, open, &mut sending, run.take(), now)?;
            if sender.queued() >= SENDER_WINDOW {
                break;
            }
        }
        *last_seq = Some(c.seq);
        if run.admits(&c, max_packages, max_bytes) {
            run.push(c);
        } else {
            hand_over(s, sender, open, &mut sending, vec![c], now)?;
        }
    }
    let tail = run.take();
    // The last bundle at the end of the queue, short of full and with
    // nothing else to send, may wait a little for more members. It stays
    // queued, its numbers unsent: the next read starts at its first.
    let short = !tail.is_empty() && tail.len() < usize::from(max_packages) && max_packages > 1;
    if whole_queue && short && sender.queued() == 0 && s.cfg.link.bundle_linger_ms > 0 {
        let held = linger.get_or_insert(Linger {
            since: Instant::now(),
            seen,
            members: tail.len(),
        });
        held.seen = seen;
        held.members = tail.len();
        if held.since.elapsed() < linger_time(s) {
            *last_seq = tail.first().and_then(|c| c.seq.checked_sub(1));
            s.store.set_states(&sending)?;
            return Ok(());
        }
    }
    *linger = None;
    hand_over(s, sender, open, &mut sending, tail, now)?;
    s.store.set_states(&sending)?;
    Ok(())
}

/// Gives the sender one package, or a bundle of two or more.
fn hand_over(
    s: &Shared,
    sender: &mut Sender,
    open: &mut HashMap<u64, Open>,
    sending: &mut Vec<StateChange>,
    members: Vec<Candidate>,
    now: ferry_protocol::Millis,
) -> Result<(), DaemonError> {
    match members.len() {
        0 => Ok(()),
        1 => {
            let Some(c) = members.into_iter().next() else {
                return Ok(());
            };
            let source = match bundle::open_queued(s, &c)? {
                Ok(bundle::QueuedCopy::File(f)) => Source::File(f),
                Ok(bundle::QueuedCopy::Kept(body)) => Source::Memory(body),
                Err(why) => return fail_unreadable(s, &Unreadable::candidate(&c), &why),
            };
            let (channel, size) = (c.meta.channel.clone(), c.meta.size);
            sender.enqueue_resend(now, c.seq, c.meta, c.first_seq)?;
            sending.push(StateChange {
                id: c.id,
                seq: c.seq,
                state: QueueState::Sending,
            });
            open.insert(
                c.seq,
                Open {
                    id: PackageId(c.id),
                    source,
                    channel,
                    size,
                    members: Vec::new(),
                },
            );
            Ok(())
        }
        _ => {
            let built = match bundle::build(s, &members)? {
                Ok(built) => built,
                Err((i, why)) => {
                    // A bundle's numbers follow one another: the members
                    // before and after the one that fails go as two.
                    let mut before = members;
                    let after = before.split_off(i + 1);
                    if let Some(gone) = before.pop() {
                        fail_unreadable(s, &Unreadable::candidate(&gone), &why)?;
                    }
                    hand_over(s, sender, open, sending, before, now)?;
                    return hand_over(s, sender, open, sending, after, now);
                }
            };
            let (from, to) = match (members.first(), members.last()) {
                (Some(f), Some(l)) => (f.seq, l.seq),
                _ => return Ok(()),
            };
            let (id, channel, size) = (built.meta.id, built.meta.channel.clone(), built.meta.size);
            sender.enqueue_bundle(now, from, to, built.meta)?;
            sending.extend(members.iter().map(|c| StateChange {
                id: c.id,
                seq: c.seq,
                state: QueueState::Sending,
            }));
            open.insert(
                to,
                Open {
                    id,
                    source: Source::Memory(built.payload),
                    channel,
                    size,
                    members: members
                        .iter()
                        .map(|c| (PackageId(c.id), c.seq, c.meta.size))
                        .collect(),
                },
            );
            Ok(())
        }
    }
}

/// A queued package about to be held (its channel stopped, its window
/// closed), as the hold keeps it: its first sequence number recorded and
/// its payload in a file of the queue directory, as held packages are (a
/// body kept in the store is written to the file its record names, durably,
/// before the hold names it). `None`: the body could not be had, and the
/// package failed alone ([`fail_unreadable`]).
fn held_copy(
    s: &Shared,
    id: [u8; 16],
    q: &crate::state::store::QueuedPackage,
    meta: &ferry_protocol::PackageMeta,
) -> Result<Option<crate::state::store::QueuedPackage>, DaemonError> {
    let mut q = with_first_seq(q);
    if !q.inline {
        return Ok(Some(q));
    }
    let unreadable = Unreadable {
        id,
        seq: q.seq,
        channel: meta.channel.clone(),
        file_name: meta.file_name.clone(),
        path: q.path.clone(),
    };
    let body = match bundle::kept_body(s, q.seq, q.bytes)? {
        Ok(body) => body,
        Err(why) => {
            fail_unreadable(s, &unreadable, &why)?;
            return Ok(None);
        }
    };
    let path = std::path::PathBuf::from(&q.path);
    ferry_common::durable::write(
        &path,
        &body,
        0o600,
        ferry_common::durable::Replace::Atomically,
    )
    .map_err(|e| {
        let (at, source) = e.into_parts();
        DaemonError::io(&at)(source)
    })?;
    q.inline = false;
    Ok(Some(q))
}

/// A queued package whose copy cannot be read, as [`fail_unreadable`]
/// names it.
struct Unreadable {
    id: [u8; 16],
    seq: u64,
    channel: String,
    file_name: String,
    path: String,
}

impl Unreadable {
    fn candidate(c: &Candidate) -> Unreadable {
        Unreadable {
            id: c.id,
            seq: c.seq,
            channel: c.meta.channel.clone(),
            file_name: c.meta.file_name.clone(),
            path: c.path.clone(),
        }
    }

    /// One being sent: its name and path from its queue record.
    fn sending(s: &Shared, seq: u64, o: &Open) -> Unreadable {
        let record = s.store.get(o.id.0).ok().flatten();
        let file_name = record
            .as_ref()
            .and_then(|q| queued_meta_from_text(&q.meta_json))
            .map(|(m, _)| m.file_name)
            .unwrap_or_default();
        Unreadable {
            id: o.id.0,
            seq,
            channel: o.channel.clone(),
            file_name,
            path: record.map(|q| q.path).unwrap_or_default(),
        }
    }
}

/// Alarm prefix: queued packages whose copy could not be read.
pub(crate) const UNREADABLE_ALARM_PREFIX: &str = "ingress failed:";

/// A queued package whose copy cannot be read whole (deleted or changed in
/// the queue directory by hand, a disk error) cannot be sent. It leaves the
/// queue, is counted in `failed`, audited as `package.failed` and alarmed,
/// and the link goes on: before, the error ended the send loop and ferryd
/// with it, at every start again. Its number is never sent, so the egress
/// side reports it as a gap; the package must be pushed again.
fn fail_unreadable(s: &Shared, c: &Unreadable, why: &str) -> Result<(), DaemonError> {
    let id = PackageId(c.id);
    s.store.remove(c.id)?;
    let _ = std::fs::remove_file(&c.path);
    tracing::error!(package = %id, seq = c.seq, path = %c.path, file = %c.file_name, reason = why, "a queued package's copy cannot be read: not sent, removed from the queue; push it again");
    s.audit.record(
        AuditRecord::new(EventKind::PackageFailed, Actor::system(), Outcome::Failure)
            .package(id.to_hex())
            .channel(&c.channel)
            .detail("seq", c.seq.to_string())
            .detail("file", c.file_name.clone())
            .detail(
                "reason",
                format!("its queued copy cannot be read ({why}); not sent, push it again"),
            ),
    )?;
    let failed = {
        let mut n = 0;
        protocol::update(&s.status, |st| {
            st.failed += 1;
            n = st.failed;
        });
        n
    };
    let msg = format!(
        "{UNREADABLE_ALARM_PREFIX} {failed} queued package(s) could not be read and were not sent (the latest: {id}, {}, seq {}: {why}); the egress side shows their numbers as gaps: push them again (`ferryctl audit` lists them as package.failed)",
        c.file_name, c.seq
    );
    protocol::update(&s.status, |st| {
        st.alarms
            .retain(|a| !a.starts_with(UNREADABLE_ALARM_PREFIX));
        st.alarms.push(msg);
    });
    Ok(())
}

/// Byte budget of the self-healing re-sends: refilled at the configured
/// rate up to one second's worth; a package may take it below zero (so a
/// package larger than a second's budget is still healed), after which no
/// re-send starts until it has refilled. It also keeps where the next look
/// for due packages starts.
pub(crate) struct HealBudget {
    rate: u64,
    tokens: f64,
    at: Instant,
    /// Every queued package below this sequence number was re-sent,
    /// skipped or found healed already, and is never looked at again: a
    /// look reads the packages sent since the last one, not every retained
    /// package.
    frontier: u64,
}

impl HealBudget {
    fn new(rate: u64, now: Instant) -> HealBudget {
        HealBudget {
            rate,
            tokens: rate as f64,
            at: now,
            frontier: 0,
        }
    }

    fn take(&mut self, now: Instant, bytes: u64) -> bool {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + dt * self.rate as f64).min(self.rate as f64);
        if self.rate == 0 || self.tokens < 0.0 {
            return false;
        }
        self.tokens -= bytes as f64;
        true
    }
}

/// The link heals by itself after an egress crash, without a back channel:
/// every package is sent once more, under a new sequence number (its
/// manifest names the first, so the egress side closes that gap), once
/// `heal_resend_after_ms` has passed since its sends ended — longer than
/// an egress restart takes. The egress ledger drops the copy that was
/// already delivered. Bounded by `heal_resend_max_bytes_per_s`: a package
/// over the budget waits for it, within [`HEAL_WINDOW_MS`]; what leaves
/// the window unsent is skipped and counted (the egress side still lists
/// its gap for an operator resend).
pub(crate) fn heal_resend(s: &Shared, heal: &mut HealBudget) -> Result<(), DaemonError> {
    let l = &s.cfg.link;
    if l.heal_resend_max_bytes_per_s == 0 {
        return Ok(());
    }
    let now = now_millis().0;
    let Some(due_before) = now.checked_sub(l.heal_resend_after_ms) else {
        return Ok(());
    };
    let oldest = due_before.saturating_sub(HEAL_WINDOW_MS);
    let mut tally = HealTally::default();
    let rows = s.store.queue_rows(heal.frontier, HEAL_ROWS_PER_LOOK)?;
    for row in rows {
        let last = match row.state {
            // Not sent (yet), and neither is anything after it: the sender
            // takes the queue in order and finishes packages in that order.
            QueueState::Queued | QueueState::Sending => break,
            QueueState::Sent { last_unix_ms, .. } => last_unix_ms,
        };
        // Not due yet, and neither (give or take a send) is what was sent
        // after it.
        if last > due_before {
            break;
        }
        match heal_one(s, heal, row, last >= oldest, &mut tally)? {
            Healing::Settled => heal.frontier = row.seq.saturating_add(1),
            // Over the budget for now: it stays due and is looked at again
            // by the next looks, until it leaves the window. A large package
            // followed by a burst of small ones (the budget spent on the
            // first) no longer costs the small ones their re-send: they
            // wait for the budget too.
            Healing::OverBudget => break,
        }
    }
    heal_write(s, &mut tally)?;
    let (resent, skipped) = (tally.resend.len() as u64, tally.skip.len() as u64);
    if skipped > 0 {
        tracing::warn!(
            skipped,
            "self-healing re-send skipped packages (due more than 60 s ago: over heal_resend_max_bytes_per_s for that long, or the ingress was down; or their retained copy is gone); an egress crash around their sends needs an operator resend (see the egress side's gaps)"
        );
    }
    protocol::update(&s.status, |st| {
        st.heal_resent += resent;
        st.heal_skipped += skipped;
    });
    Ok(())
}

/// How often the send loop looks for due self-healing re-sends: often, so
/// that each look's work (and the pause it puts in the sending) is small.
const HEAL_INTERVAL: Duration = Duration::from_millis(100);

/// Most rows one look of the self-healing re-send reads. After a long stop
/// every retained package is due at once; the send loop does not stall on
/// them all in one look, the rest are read in the next ones. Ten looks a
/// second read up to 20,480 rows, above what the default budget re-sends
/// in a second (10 MB/s: about 9,800 packages of 1 KiB), so steady
/// traffic of small packages is kept up with.
const HEAL_ROWS_PER_LOOK: usize = 2048;

/// How often retention looks for retained copies to delete. A look that
/// finds nothing reads the front of the queue and the retained totals; at
/// the bytes bound under steady traffic, each look deletes a second's
/// worth.
const PRUNE_INTERVAL: Duration = Duration::from_secs(1);

/// Retained copies deleted per slice (per hold of the queue lock, which
/// the committer of new uploads waits for).
const PRUNE_SLICE: usize = 256;

/// One look's decisions, written together by [`heal_write`].
#[derive(Default)]
struct HealTally {
    resend: Vec<([u8; 16], QueuedPackage)>,
    skip: Vec<([u8; 16], QueuedPackage)>,
}

enum Healing {
    /// Re-sent, skipped, healed before, or gone: never looked at again.
    Settled,
    /// Due, but the budget is spent for now.
    OverBudget,
}

/// One due package: re-sent once under a new sequence number if it is
/// still within the window and its retained copy is there, otherwise
/// skipped; marked healed either way, so each package is re-sent or
/// skipped once.
fn heal_one(
    s: &Shared,
    heal: &mut HealBudget,
    row: QueueRow,
    in_window: bool,
    tally: &mut HealTally,
) -> Result<Healing, DaemonError> {
    let Some(q) = s.store.get(row.id)? else {
        return Ok(Healing::Settled);
    };
    // Taken out or queued again under another number meanwhile: that
    // number is looked at on its own.
    if q.seq != row.seq {
        return Ok(Healing::Settled);
    }
    // One parse of its description: the check, the mark and, for a
    // re-send, the first sequence number (`with_first_seq`).
    let parsed = serde_json::from_str::<serde_json::Value>(&q.meta_json).ok();
    if parsed.as_ref().is_some_and(|v| v.get(HEALED_KEY).is_some()) {
        return Ok(Healing::Settled);
    }
    let can = in_window && (q.inline || Path::new(&q.path).exists());
    if can && !heal.take(Instant::now(), q.bytes) {
        return Ok(Healing::OverBudget);
    }
    let mut q = q;
    if let Some(serde_json::Value::Object(mut m)) = parsed {
        m.insert(HEALED_KEY.into(), true.into());
        if can {
            m.entry(FIRST_SEQ_KEY).or_insert(q.seq.into());
        }
        q.meta_json = serde_json::Value::Object(m).to_string();
    }
    if can {
        q.state = QueueState::Queued;
        tally.resend.push((row.id, q));
    } else {
        tally.skip.push((row.id, q));
    }
    Ok(Healing::Settled)
}

/// Writes one look's decisions, each kind in one transaction: the re-sent
/// packages queued under fresh consecutive numbers, the skipped ones
/// marked. A transaction per package (two for a re-send) held the send
/// loop for most of its time under steady small-package traffic.
fn heal_write(s: &Shared, tally: &mut HealTally) -> Result<(), DaemonError> {
    if tally.resend.is_empty() && tally.skip.is_empty() {
        return Ok(());
    }
    let _guard = s.lock.lock().map_err(|_| DaemonError::Poisoned)?;
    if !tally.skip.is_empty() {
        s.store.enqueue_all(&tally.skip)?;
    }
    if !tally.resend.is_empty() {
        let old: Vec<u64> = tally.resend.iter().map(|(_, q)| q.seq).collect();
        s.store.enqueue_fresh(&mut tally.resend)?;
        for ((id, q), old_seq) in tally.resend.iter().zip(old) {
            tracing::debug!(package = %hex::encode(id), old_seq, seq = q.seq, "self-healing re-send queued");
        }
    }
    Ok(())
}

/// Deletes retained copies beyond the configured bounds: those last sent
/// more than `max_age_s` ago, then, sent longest ago first, as many as
/// bring the retained bytes within `max_bytes`. In slices: each slice is
/// found, its files deleted and its records removed under the queue lock,
/// so a resend (which re-reads the record under that lock) never queues a
/// copy whose file is going, and a slice holds the lock for a few
/// milliseconds, not for all of them. Reads the front of the queue and the
/// retained totals: one row when nothing is due.
///
/// The file goes before the record: a crash in between leaves records
/// whose file is gone (a resend answers "not retained"; the next round
/// removes them), never a file no record names.
pub(crate) fn prune(s: &Shared) -> Result<(), DaemonError> {
    let max_age_ms = s.cfg.retention.max_age_s.saturating_mul(1000);
    let sent_before = now_millis().0.saturating_sub(max_age_ms);
    loop {
        let _guard = s.lock.lock().map_err(|_| DaemonError::Poisoned)?;
        let due = s
            .store
            .retention_due(sent_before, s.cfg.retention.max_bytes, PRUNE_SLICE)?;
        // A body kept in the store goes with its record.
        for path in due.iter().filter_map(|r| r.path.as_ref()) {
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                // Retention must go on (one file it cannot delete would
                // stop it for good): the record goes, the file is named.
                Err(e) => tracing::warn!(
                    path = %path,
                    error = %e,
                    "retention: a retained copy could not be deleted; its record is removed, delete the file by hand"
                ),
            }
        }
        s.store.remove_retained(&due)?;
        if due.len() < PRUNE_SLICE {
            break;
        }
    }
    let (kept, bytes) = s.store.retained();
    protocol::update(&s.status, |st| {
        st.retained = kept;
        st.retained_bytes = bytes;
    });
    Ok(())
}
