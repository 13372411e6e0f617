//! The writer thread: owns the outbox and the state store, stages each
//! package, inspects it again, records the delivery (ledger and replay
//! window in one transaction) and renames it into place, or hands it to the
//! forwarder; and finishes at start what a crash interrupted.

use crate::admin::protocol::{self, SharedStatus};
use crate::egress::ledger_memory::LedgerMemory;
use crate::egress::status::{alarm, show_gaps, REFUSED_ALARM_PREFIX};
use crate::ops::activity::PACKAGE_TARGET;
use crate::ops::audit_trail::{Actor, AuditRecord, AuditTrail, EventKind, Outcome};
use crate::state::gaps::{self, GapBook};
use crate::state::outbox::{Outbox, OutboxError, Staging};
use crate::state::store::{LedgerEntry, LedgerState, StateStore};
use crate::{now_millis, DaemonError};
use ferry_protocol::bundle::{MAX_BUNDLE_BYTES, TABLE_BOUND};
use ferry_protocol::Manifest;
use std::collections::HashMap;
use std::sync::mpsc::Receiver as Rx;
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Writer queue depth (messages, each at most one 64 KiB chunk): bounds
/// the memory between the threads to about 64 MiB.
pub(crate) const WRITER_QUEUE: usize = 1024;

pub(crate) enum Write {
    Start {
        seq: u64,
        attempt: u8,
        /// For a bundle, its payload size: it is gathered in memory and
        /// taken apart into its members when complete.
        bundle_size: Option<u64>,
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
    /// A fresh heartbeat: persist its sender time.
    Heartbeat {
        sender_time_ms: u64,
    },
}

pub(crate) struct Staged {
    staging: Option<Staging>,
    /// A bundle's payload (instead of a staging file).
    bundle: Option<Vec<u8>>,
    /// A bundle gathered in `staging` (memory was at its bound).
    bundle_on_disk: bool,
    /// Bytes of [`Writer::bundle_memory`] this one holds.
    held: u64,
    attempt: u8,
}

/// Where the writer puts verified packages.
pub(crate) struct Sinks {
    pub(crate) outbox: Outbox,
    pub(crate) store: Arc<StateStore>,
    /// Tells the forwarder about packages waiting for a downstream endpoint.
    pub(crate) wake: crate::egress::forward::Notifier,
    /// Open gaps, closed here when a delivery fills them.
    pub(crate) gaps: Arc<Mutex<GapBook>>,
}

/// Most packages committed together. Bounds the open staging files and
/// the time before the first of them is delivered.
pub(crate) const MAX_BATCH: usize = 256;

/// A verified package waiting for its batch's commit.
pub(crate) struct Ready {
    seq: u64,
    staging: Staging,
    manifest: Box<Manifest>,
    /// The channel's downstream endpoint; `None` for the outbox.
    destination: Option<String>,
    sidecar: serde_json::Value,
}

/// The share of `max_buffer_bytes` that bundles being gathered may hold in
/// memory, together; a bundle beyond it is gathered in its staging file.
/// Why: several bundles (up to 16 MiB each) may be in flight at once, and
/// the egress side's memory must stay bounded by its configuration.
pub(crate) const BUNDLE_MEMORY_SHARE: u64 = 8;

/// The writer's bounds from the configuration.
pub(crate) struct Limits {
    /// `max_buffer_bytes`: the bundles gathered in memory take a share.
    pub(crate) max_buffer_bytes: u64,
    /// How long the ledger remembers (`ledger_max_age_s`), and the horizon
    /// it was pruned to: read before the writer starts, so that ferryd
    /// refuses to start (not to deliver) when it cannot be read.
    pub(crate) ledger: LedgerMemory,
}

pub(crate) fn writer_loop(
    rx: Rx<Write>,
    sinks: Sinks,
    status: SharedStatus,
    link: String,
    audit: &AuditTrail,
    gate: Option<&crate::inspection::policy_gate::PolicyGate>,
    limits: Limits,
) {
    let mut w = Writer {
        sinks,
        status,
        link,
        audit,
        gate,
        bundle_memory: (limits.max_buffer_bytes / BUNDLE_MEMORY_SHARE, 0),
        staged: HashMap::new(),
        ready: Vec::new(),
        replay: None,
        refused: Default::default(),
        ledger: limits.ledger,
    };
    // Group commit: take what the receive thread has queued (up to a
    // batch), then make all of its completed packages durable together —
    // one file-system sync, one ledger transaction and one audit flush
    // per step instead of per package. A lone package is a batch of one.
    // Between batches, a slice of ledger pruning when one is due.
    loop {
        match rx.recv_timeout(w.ledger.wait(Instant::now())) {
            Ok(msg) => {
                w.handle(msg);
                while w.ready.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(msg) => w.handle(msg),
                        Err(_) => break,
                    }
                }
                w.commit();
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        w.ledger
            .step(&w.sinks.store, &w.status, Instant::now(), now_millis().0);
    }
    w.commit();
}

pub(crate) struct Writer<'a> {
    sinks: Sinks,
    status: SharedStatus,
    link: String,
    audit: &'a AuditTrail,
    gate: Option<&'a crate::inspection::policy_gate::PolicyGate>,
    /// Bytes bundles being gathered may hold in memory, and hold now.
    bundle_memory: (u64, u64),
    staged: HashMap<u64, Staged>,
    ready: Vec<Ready>,
    /// The receiver's replay window after the newest completion of the
    /// batch (the window only grows, so it covers the earlier ones).
    replay: Option<Vec<u8>>,
    /// Packages refused here (by id) and not delivered since: the
    /// `egress refused:` alarm stands until each is delivered (a resend
    /// after the operator fixed the cause), so it neither goes silent
    /// early nor stays after the operator's fix worked.
    refused: std::cell::RefCell<std::collections::BTreeSet<String>>,
    /// How long the ledger remembers, and the horizon it pruned to.
    ledger: LedgerMemory,
}

impl Writer<'_> {
    fn handle(&mut self, msg: Write) {
        let outbox = &self.sinks.outbox;
        match msg {
            Write::Start {
                seq,
                attempt,
                bundle_size,
            } => {
                if let Some(old) = self.staged.remove(&seq) {
                    self.bundle_memory.1 -= old.held;
                    if let Some(st) = old.staging {
                        outbox.abort(st);
                    }
                }
                if let Some(size) = bundle_size {
                    // Bounded before anything is held: a bundle over the
                    // protocol's bound is refused when complete, one past
                    // the memory bound is gathered in a staging file.
                    let (limit, used) = self.bundle_memory;
                    let mut staged = Staged {
                        staging: None,
                        bundle: None,
                        bundle_on_disk: false,
                        held: 0,
                        attempt,
                    };
                    let within_protocol = size <= MAX_BUNDLE_BYTES + TABLE_BOUND;
                    if within_protocol && used.saturating_add(size) <= limit {
                        staged.bundle = Some(Vec::with_capacity(size as usize));
                        staged.held = size;
                        self.bundle_memory.1 += size;
                    } else if within_protocol {
                        protocol::update(&self.status, |s| s.bundles_staged_on_disk += 1);
                        staged.bundle_on_disk = true;
                        match outbox.begin(&format!("{seq}-{attempt}-bundle")) {
                            Ok(st) => staged.staging = Some(st),
                            Err(e) => alarm(&self.status, &format!("outbox: {e}")),
                        }
                    }
                    self.staged.insert(seq, staged);
                    return;
                }
                let staging = match outbox.begin(&format!("{seq}-{attempt}")) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        alarm(&self.status, &format!("outbox: {e}"));
                        None
                    }
                };
                self.staged.insert(
                    seq,
                    Staged {
                        staging,
                        bundle: None,
                        bundle_on_disk: false,
                        held: 0,
                        attempt,
                    },
                );
            }
            Write::Data { seq, data } => {
                let Some(s) = self.staged.get_mut(&seq) else {
                    return;
                };
                if let Some(b) = s.bundle.as_mut() {
                    b.extend_from_slice(&data);
                    return;
                }
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
            Write::Heartbeat { sender_time_ms } => {
                if let Err(e) = gaps::save_newest_heartbeat(&self.sinks.store, sender_time_ms) {
                    alarm(&self.status, &format!("state store: {e}"));
                }
            }
            Write::Failed { seq } => {
                if let Some(old) = self.staged.remove(&seq) {
                    self.bundle_memory.1 -= old.held;
                    if let Some(st) = old.staging {
                        outbox.abort(st);
                    }
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
                let Some(mut s) = self.staged.remove(&seq) else {
                    return;
                };
                self.bundle_memory.1 -= s.held;
                if manifest.bundle_from_seq.is_some() {
                    if s.bundle_on_disk {
                        // Read back whole to be taken apart: one bundle
                        // at a time (this thread), within the protocol's
                        // bound.
                        match s.staging.take().map(|st| outbox.read_back(st)) {
                            Some(Ok(bytes)) => s.bundle = Some(bytes),
                            Some(Err(e)) => alarm(&self.status, &format!("outbox: {e}")),
                            None => {}
                        }
                        if s.bundle.is_none() {
                            self.refuse(
                                seq,
                                &manifest,
                                "received but could not be staged (see the outbox alarm); resend it once the outbox has space",
                            );
                            return;
                        }
                    }
                    self.unbundle(seq, s, &manifest);
                    return;
                }
                let Some(st) = s.staging else {
                    self.refuse(
                        seq,
                        &manifest,
                        "received but could not be staged (see the outbox alarm); resend it once the outbox has space",
                    );
                    return;
                };
                self.verified(seq, s.attempt, st, manifest, None);
            }
        }
    }

    /// A verified package (or bundle member), staged whole: inspected
    /// again, then queued for the batch's commit.
    fn verified(
        &mut self,
        seq: u64,
        attempt: u8,
        mut st: Staging,
        manifest: Box<Manifest>,
        bundle: Option<(ferry_protocol::PackageId, u64)>,
    ) {
        let outbox = &self.sinks.outbox;
        let direct = st.direct_bytes();
        if direct > 0 {
            protocol::update(&self.status, |s| s.outbox_direct_bytes += direct);
        }
        let guard = match reinspect(
            self.gate,
            outbox,
            &mut st,
            &manifest,
            self.audit,
            &self.status,
        ) {
            Ok(g) => g,
            Err(why) => {
                // Never delivered, not even in part.
                outbox.abort(st);
                self.refuse(seq, &manifest, &why);
                return;
            }
        };
        let destination = self.gate.and_then(|g| {
            match &g.current().channel(&manifest.meta.channel)?.destination {
                ferry_policy::Destination::Downstream(url) => Some(url.clone()),
                ferry_policy::Destination::Outbox => None,
            }
        });
        let mut side = sidecar(&self.link, seq, attempt, &manifest);
        if let Some(g) = guard {
            side["egress_guard"] = g;
        }
        if let Some((id, bundle_seq)) = bundle {
            // How it crossed: in this bundle (its own id and
            // number are the package's).
            side["bundle"] = serde_json::json!({
                "id": id.to_hex(),
                "seq": bundle_seq,
            });
        }
        self.ready.push(Ready {
            seq,
            staging: st,
            manifest,
            destination,
            sidecar: side,
        });
    }

    /// A complete bundle: checked against its signed range, then each
    /// member staged, verified by its own digest and handed on like a
    /// package of its own (own ledger entry, inspection, audit record,
    /// atomic delivery; a member delivered before is suppressed alone).
    /// A bundle that does not check out is refused whole, and its
    /// members' numbers are opened as gaps so the operator sees what to
    /// resend: the replay window accepted them with the bundle.
    fn unbundle(&mut self, seq: u64, staged: Staged, bundle: &Manifest) {
        let from = bundle.bundle_from_seq.unwrap_or(seq);
        let members = match staged.bundle.as_deref().map(ferry_protocol::bundle::decode) {
            None => Err(format!(
                "bundle of {} bytes is over the {}-byte bound",
                bundle.meta.size,
                MAX_BUNDLE_BYTES + TABLE_BOUND
            )),
            Some(Err(e)) => Err(e.to_string()),
            Some(Ok(m)) => check_members(&m, from, seq, &bundle.meta.channel).map(|()| m),
        };
        let members = match members {
            Ok(m) => m,
            Err(why) => {
                protocol::update(&self.status, |s| s.bundles_refused += 1);
                self.refuse(
                    seq,
                    bundle,
                    &format!("bundle of sequence numbers {from}..{seq} refused whole: {why}; resend those numbers"),
                );
                self.open_gap(from, seq);
                return;
            }
        };
        protocol::update(&self.status, |s| s.bundles_received += 1);
        let bytes = staged.bundle.unwrap_or_default();
        for (m, range) in members {
            let member = Box::new(Manifest {
                meta: m.meta,
                seq: m.seq,
                first_seq: m.first_seq,
                bundle_from_seq: None,
                ..bundle.clone()
            });
            let body = &bytes[range];
            if suite_digest(bundle.suite, body) != member.meta.digest {
                self.refuse(
                    m.seq,
                    &member,
                    &format!(
                        "its digest does not match its bytes in bundle {} (seq {seq}); resend it",
                        bundle.meta.id
                    ),
                );
                continue;
            }
            let staging = self
                .sinks
                .outbox
                .begin(&format!("{}-{}-m", m.seq, staged.attempt))
                .and_then(|mut st| st.write_all(body).map(|()| st));
            match staging {
                Ok(st) => self.verified(
                    m.seq,
                    staged.attempt,
                    st,
                    member,
                    Some((bundle.meta.id, seq)),
                ),
                Err(e) => {
                    alarm(&self.status, &format!("outbox: {e}"));
                    self.refuse(
                        m.seq,
                        &member,
                        "received but could not be staged (see the outbox alarm); resend it once the outbox has space",
                    );
                }
            }
        }
    }

    /// Opens `first..=last` in the gap book (audited, alarmed).
    fn open_gap(&self, first: u64, last: u64) {
        let Ok(mut book) = self.sinks.gaps.lock() else {
            return;
        };
        let new = book.open(first, last, now_millis().0);
        if new == 0 {
            return;
        }
        if let Err(e) = book.save(&self.sinks.store) {
            alarm(&self.status, &format!("state store: {e}"));
        }
        protocol::update(&self.status, |s| s.gap_seqs_total += new);
        show_gaps(&self.status, &book);
        self.audit.note(
            AuditRecord::new(EventKind::LinkGap, Actor::system(), Outcome::Failure)
                .reason(format!(
                    "sequence numbers {first}..{last} (a refused bundle) not delivered; resend them from the ingress side"
                ))
                .detail("action", "opened")
                .detail("first", first.to_string())
                .detail("last", last.to_string()),
        );
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
            .map(|it| {
                (
                    it.manifest.meta.id.0,
                    &it.entry,
                    it.manifest.meta.created_unix_ms,
                )
            })
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
                    }
                    self.refuse(
                        it.entry.seq,
                        &it.manifest,
                        &format!("could not be placed in the outbox: {e}; resend it once fixed"),
                    );
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
            let finished = match outbox.sync_filesystem() {
                Ok(()) => match store.finish_deliveries(&delivered, now_millis().0) {
                    Ok(()) => true,
                    Err(e) => {
                        alarm(&self.status, &format!("state store: {e}"));
                        false
                    }
                },
                // Left "delivering": the next start makes sure of them.
                Err(e) => {
                    alarm(&self.status, &format!("outbox: {e}"));
                    false
                }
            };
            if !finished {
                // `package.delivered` is written once, when the ledger
                // says the delivery finished: for these, by the start-up
                // recovery that finishes them (never twice).
                for it in items.iter_mut().filter(|it| it.delivered_as.is_some()) {
                    tracing::warn!(seq = it.entry.seq, package = %it.manifest.meta.id, "renamed into the outbox but not recorded as finished; the next start finishes and audits it");
                    it.delivered_as = None;
                }
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
        // One read for the batch's duplicate check.
        let ids: Vec<_> = batch.iter().map(|r| r.manifest.meta.id.0).collect();
        let known: Vec<Result<bool, String>> = match store.ledger_holds(&ids) {
            Ok(held) => held.into_iter().map(Ok).collect(),
            Err(e) => vec![Err(e.to_string()); ids.len()],
        };
        for (
            Ready {
                seq,
                mut staging,
                manifest,
                destination,
                sidecar,
            },
            known,
        ) in batch.into_iter().zip(known)
        {
            let id = manifest.meta.id;
            match known {
                Ok(false) if seen.insert(id.0) => {}
                Ok(_) => {
                    // Delivered before under another sequence number (a
                    // resend or a redundant send): once only.
                    outbox.abort(staging);
                    protocol::update(&self.status, |s| s.duplicates_suppressed += 1);
                    tracing::debug!(target: PACKAGE_TARGET, seq, package = %id, "already delivered; duplicate suppressed");
                    // The package is delivered: whatever gap this send
                    // (or the first send it repeats) left is filled.
                    self.fill_gaps(&[(seq, manifest.first_seq)]);
                    continue;
                }
                Err(e) => {
                    alarm(&self.status, &format!("state store: {e}"));
                    outbox.abort(staging);
                    self.refuse(
                        seq,
                        &manifest,
                        &format!("the delivery ledger could not be read: {e}"),
                    );
                    continue;
                }
            }
            if self.ledger.forgotten(manifest.meta.created_unix_ms) {
                // Not in the ledger, but older than what it remembers: it
                // may be a copy of a package delivered long ago.
                outbox.abort(staging);
                self.refuse(
                    seq,
                    &manifest,
                    &format!(
                        "created at {} ms since the Unix epoch, before the delivery ledger's horizon ({} ms; `ledger_max_age_s`): it may have been delivered already and that record pruned, so it is not delivered again; push it again as a new package if it is still needed",
                        manifest.meta.created_unix_ms,
                        self.ledger.pruned_below()
                    ),
                );
                continue;
            }
            let name = &manifest.meta.file_name;
            // Also for a downstream endpoint: the name travels in a header,
            // and no endpoint is handed a path or a control code.
            if let Err(e) = crate::state::outbox::sanitize_file_name(name) {
                outbox.abort(staging);
                self.refuse(seq, &manifest, &format!("file name refused: {e}"));
                continue;
            }
            if let Err(e) = outbox.write_sidecar(&mut staging, &sidecar) {
                alarm(&self.status, &format!("outbox: {e}"));
                outbox.abort(staging);
                self.refuse(
                    seq,
                    &manifest,
                    &format!("its metadata file could not be written: {e}; resend it once fixed"),
                );
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
                        self.refuse(
                            seq,
                            &manifest,
                            &format!("could not be kept for its downstream endpoint: {e}; resend it once fixed"),
                        );
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
            self.refuse(
                it.entry.seq,
                &it.manifest,
                "received but its delivery could not be made durable (see the alarm); resend it once the alarm is cleared",
            );
        }
        if let Err(e) = self.sinks.store.save_replay(replay) {
            alarm(&self.status, &format!("state store: {e}"));
        }
    }

    /// Step 5: counters, log lines and audit records of a committed batch.
    fn report(&mut self, items: Vec<Item>) {
        let mut records = Vec::with_capacity(items.len());
        let mut forwarding = Vec::new();
        let mut any_delivered = false;
        let mut filled = Vec::new();
        let mut refused_cleared = false;
        for it in items.into_iter().filter(|it| !it.failed) {
            let meta = &it.manifest.meta;
            self.ledger.recorded(meta.created_unix_ms);
            filled.push((it.entry.seq, it.manifest.first_seq));
            {
                let mut r = self.refused.borrow_mut();
                if r.remove(&meta.id.to_hex()) && r.is_empty() {
                    refused_cleared = true;
                }
            }
            let place = match (&it.destination, &it.delivered_as) {
                (Some(url), _) => {
                    forwarding.push(((it.entry.seq, meta.id.0), url.clone()));
                    tracing::debug!(target: PACKAGE_TARGET, seq = it.entry.seq, package = %meta.id, destination = %url, "verified; waiting for the downstream endpoint");
                    format!("waiting for {url}")
                }
                (None, Some(name)) => {
                    any_delivered = true;
                    protocol::count(&self.status, &meta.channel, |c| {
                        c.delivered += 1;
                        c.delivered_bytes += meta.size;
                    });
                    protocol::update(&self.status, |s| {
                        s.delivered += 1;
                        s.delivered_bytes += meta.size;
                    });
                    tracing::debug!(target: PACKAGE_TARGET, seq = it.entry.seq, package = %meta.id, file = %name, size = meta.size, "delivered");
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
            protocol::update(&self.status, |s| {
                s.alarms.retain(|a| !a.starts_with("outbox:"))
            });
        }
        if refused_cleared {
            // Every refused package was delivered since: nothing left to act on.
            protocol::update(&self.status, |s| {
                s.alarms.retain(|a| !a.starts_with(REFUSED_ALARM_PREFIX))
            });
        }
        self.audit.note_all(records);
        self.fill_gaps(&filled);
        if !forwarding.is_empty() {
            self.sinks.wake.added(forwarding);
        }
    }

    /// Closes the gaps that delivered packages fill: their own sequence
    /// number and, for a resend, the one they were first sent under.
    fn fill_gaps(&self, filled: &[(u64, Option<u64>)]) {
        fill_gaps(
            &self.sinks.gaps,
            &self.sinks.store,
            &self.status,
            self.audit,
            filled,
        );
    }

    /// A verified package that is not delivered, for whatever reason:
    /// counted (per channel), audited and alarmed — never only a log line.
    fn refuse(&self, seq: u64, manifest: &Manifest, why: &str) {
        let meta = &manifest.meta;
        protocol::count_rejected(&self.status, &meta.channel);
        tracing::warn!(seq, package = %meta.id, "not delivered: {why}");
        self.audit.note(
            AuditRecord::new(EventKind::PackageFailed, Actor::system(), Outcome::Refused)
                .package(meta.id.to_hex())
                .channel(meta.channel.clone())
                .reason(why.to_owned())
                .detail("seq", seq.to_string())
                .detail("side", "egress"),
        );
        let total = protocol::snapshot(&self.status).rejected;
        let open = {
            let mut r = self.refused.borrow_mut();
            r.insert(meta.id.to_hex());
            r.len()
        };
        let msg = format!(
            "{REFUSED_ALARM_PREFIX} {open} package(s) refused and not delivered since ({total} refusals since start), the last {} (seq {seq}): {why}; the audit log has each one (`ferryctl audit query --event package.failed`); the alarm clears once each is delivered (fix the cause, then resend)",
            meta.id.to_hex()
        );
        protocol::update(&self.status, |s| {
            s.alarms.retain(|a| !a.starts_with(REFUSED_ALARM_PREFIX));
            s.alarms.push(msg);
        });
    }
}

/// A bundle's members must be exactly the numbers its signed manifest
/// names, in order, all on its channel: the range is what the replay
/// window accepted, so a member outside it could be delivered twice and
/// one missing from it would never be reported.
fn check_members(
    members: &[(ferry_protocol::BundleMember, std::ops::Range<usize>)],
    from: u64,
    seq: u64,
    channel: &str,
) -> Result<(), String> {
    let want = seq - from + 1;
    if members.len() as u64 != want {
        return Err(format!(
            "{} members for the {want} sequence numbers it names",
            members.len()
        ));
    }
    for ((m, _), expected) in members.iter().zip(from..=seq) {
        if m.seq != expected {
            return Err(format!(
                "member {} has sequence number {}, expected {expected}",
                m.meta.id, m.seq
            ));
        }
        if m.meta.channel != channel {
            return Err(format!(
                "member {} is on channel `{}`, the bundle on `{channel}`",
                m.meta.id, m.meta.channel
            ));
        }
    }
    Ok(())
}

/// The suite's digest (SHA-256 or SM3) of `data`.
fn suite_digest(suite: ferry_protocol::SuiteId, data: &[u8]) -> Vec<u8> {
    use ferry_protocol::suite::LinkCrypto;
    let mut d = match suite {
        ferry_protocol::SuiteId::Intl => ferry_suites::intl::IntlLink.new_digest(),
        ferry_protocol::SuiteId::Gm => ferry_suites::gm::GmLink.new_digest(),
    };
    d.update(data);
    d.finish()
}

/// Closes the gaps `filled` names (sequence number, and first sequence
/// number of a resend), saves the book when it changed, and audits each
/// closed number.
pub(crate) fn fill_gaps(
    book: &Mutex<GapBook>,
    store: &StateStore,
    status: &SharedStatus,
    audit: &AuditTrail,
    filled: &[(u64, Option<u64>)],
) {
    let Ok(mut b) = book.lock() else {
        return;
    };
    if b.is_empty() {
        return;
    }
    let mut closed = Vec::new();
    for (seq, first) in filled {
        for s in std::iter::once(*seq).chain(*first) {
            if b.close(s) {
                closed.push((s, *seq));
            }
        }
    }
    if closed.is_empty() {
        return;
    }
    if let Err(e) = b.save(store) {
        alarm(status, &format!("state store: {e}"));
    }
    show_gaps(status, &b);
    drop(b);
    audit.note_all(
        closed
            .into_iter()
            .map(|(gap, by)| {
                AuditRecord::new(EventKind::LinkGap, Actor::system(), Outcome::Success)
                    .detail("action", "closed")
                    .detail("seq", gap.to_string())
                    .detail("delivered_as_seq", by.to_string())
            })
            .collect(),
    );
}

/// A package of a batch being committed.
pub(crate) struct Item {
    entry: LedgerEntry,
    manifest: Box<Manifest>,
    destination: Option<String>,
    /// Still in staging (outbox packages until renamed).
    staging: Option<Staging>,
    /// Its name in the outbox once renamed.
    delivered_as: Option<String>,
    failed: bool,
}

/// The second, independent inspection on the egress side under the
/// channel's `egress_profile`: `Ok(sidecar note)` to deliver (a masked
/// copy has replaced the staged data), `Err(why)` to drop. Fails closed:
/// a channel the egress policy does not know, a profile it cannot load, a
/// `review` verdict (there are no reviewers on this side) or an audit log
/// that cannot record the inspection all stop delivery. A package the
/// malware engine could not scan is refused here whatever the profile's
/// `on_unavailable` (nothing can wait on this side); the operator resends
/// it once the engine is back.
pub(crate) fn reinspect(
    gate: Option<&crate::inspection::policy_gate::PolicyGate>,
    outbox: &Outbox,
    staging: &mut Staging,
    manifest: &Manifest,
    audit: &AuditTrail,
    status: &SharedStatus,
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
    let report = crate::inspection::content::inspect_in_place(
        &guard,
        &meta.channel,
        staging.path(),
        (&meta.file_name, &meta.content_type),
        outbox.staging_dir(),
        &id,
    )
    .map_err(|e| e.to_string())?;
    audit
        .record(crate::inspection::content::record(
            EventKind::GuardReinspected,
            Actor::system(),
            &id,
            &meta.channel,
            &report,
        ))
        .map_err(|e| format!("the audit log cannot record the inspection: {e}"))?;
    crate::inspection::malware::note_report(status, &report, &id);
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
    if let Some(first) = m.first_seq {
        // A resend: the sequence number it was first sent under (the gap
        // it fills).
        v["first_seq"] = first.into();
    }
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
/// the rename, and writes their `package.delivered` record: a delivery
/// left "delivering" never had one (the writer records a delivery only
/// once the ledger says it finished), so each gets exactly one.
pub(crate) fn recover(
    store: &StateStore,
    outbox: &Outbox,
    audit: &AuditTrail,
    gap_book: &Mutex<GapBook>,
) -> Result<(), DaemonError> {
    let mut records = Vec::new();
    let mut filled = Vec::new();
    for (id, entry) in store.list_delivering()? {
        if let LedgerState::Delivering {
            staging,
            final_name,
        } = &entry.state
        {
            let mut sidecar = outbox.staged_sidecar(staging).unwrap_or_else(|| {
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
                    records.push(recovered_record(id, entry.seq, &sidecar, &name));
                }
                Ok(None) => {
                    // No staging file: the rename had happened already,
                    // under the first free name (a collision takes
                    // `NAME.1.EXT`), which the sidecar renamed with it
                    // tells, with the package's size and digest for the
                    // record.
                    let name = match outbox.find_delivered(final_name, &hex::encode(id)) {
                        Some((name, found)) => {
                            sidecar = found;
                            name
                        }
                        // Taken by the consumer already: the name asked for.
                        None => final_name.clone(),
                    };
                    store.finish_delivery(id, &name, now_millis().0)?;
                    tracing::info!(package = %hex::encode(id), file = %name, "interrupted delivery finished (renamed before the crash)");
                    records.push(recovered_record(id, entry.seq, &sidecar, &name));
                }
                Err(e) => return Err(e.into()),
            }
            filled.push((entry.seq, sidecar.get("first_seq").and_then(|v| v.as_u64())));
        }
    }
    // Recorded before the daemon takes any new traffic; a failure to
    // record stops the start (the deliveries stay finished, and the next
    // start cannot tell them apart, so it must not go on silently).
    for r in records {
        audit.record(r)?;
    }
    if let Ok(mut b) = gap_book.lock() {
        let mut changed = false;
        for (seq, first) in filled {
            for s in std::iter::once(seq).chain(first) {
                changed |= b.close(s);
            }
        }
        if changed {
            b.save(store)?;
        }
    }
    Ok(())
}

/// The `package.delivered` record of a delivery start-up recovery
/// finished, from what its sidecar says.
pub(crate) fn recovered_record(
    id: [u8; 16],
    seq: u64,
    sidecar: &serde_json::Value,
    name: &str,
) -> AuditRecord {
    let text = |k: &str| {
        sidecar
            .get(k)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    let mut r = AuditRecord::new(
        EventKind::PackageDelivered,
        Actor::system(),
        Outcome::Success,
    )
    .package(hex::encode(id))
    .detail("seq", seq.to_string())
    .detail("destination", format!("outbox: {name}"))
    .detail("recovered_after_crash", "true");
    if let Some(c) = sidecar.get("channel").and_then(|v| v.as_str()) {
        r = r.channel(c.to_owned());
    }
    for (k, field) in [
        ("size", "size"),
        ("digest", "digest"),
        ("sender", "sender_identity"),
        ("signing_key", "signing_key_id"),
    ] {
        let v = match sidecar.get(field) {
            Some(serde_json::Value::Number(n)) => n.to_string(),
            _ => text(field),
        };
        if !v.is_empty() {
            r = r.detail(k, v);
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_protocol::bundle::{self, BundleMember};
    use ferry_protocol::{PackageId, PackageMeta};

    fn members(seqs: &[u64], channels: &[&str]) -> Vec<(BundleMember, std::ops::Range<usize>)> {
        let bodies: Vec<Vec<u8>> = seqs.iter().map(|s| vec![*s as u8; 10]).collect();
        let table: Vec<_> = seqs
            .iter()
            .zip(channels)
            .zip(&bodies)
            .map(|((seq, ch), body)| {
                (
                    BundleMember {
                        meta: PackageMeta {
                            id: PackageId([*seq as u8; 16]),
                            channel: (*ch).into(),
                            size: body.len() as u64,
                            digest: suite_digest(ferry_protocol::SuiteId::Intl, body),
                            file_name: format!("{seq}.csv"),
                            content_type: "text/csv".into(),
                            sender_identity: "CN=t".into(),
                            created_unix_ms: 1,
                            inspection: None,
                        },
                        seq: *seq,
                        first_seq: None,
                    },
                    body.as_slice(),
                )
            })
            .collect();
        bundle::decode(&bundle::encode(&table).expect("encodes")).expect("decodes")
    }

    /// The members must be the signed range, in order, on the bundle's
    /// channel: a table that names another number (which the replay
    /// window never accepted, so it could arrive again), leaves one out
    /// (never reported) or changes channel (another policy) is refused.
    #[test]
    fn a_member_table_that_differs_from_the_signed_range_is_refused() {
        let ok = members(&[5, 6, 7], &["a", "a", "a"]);
        assert_eq!(check_members(&ok, 5, 7, "a"), Ok(()));
        for (m, from, to, ch, why) in [
            (
                members(&[5, 6, 7], &["a", "a", "a"]),
                5,
                8,
                "a",
                "3 members for the 4",
            ),
            (
                members(&[5, 6, 7], &["a", "a", "a"]),
                6,
                7,
                "a",
                "3 members for the 2",
            ),
            (
                members(&[5, 7, 6], &["a", "a", "a"]),
                5,
                7,
                "a",
                "sequence number 7, expected 6",
            ),
            (
                members(&[5, 6, 9], &["a", "a", "a"]),
                5,
                7,
                "a",
                "sequence number 9, expected 7",
            ),
            (
                members(&[5, 6, 7], &["a", "b", "a"]),
                5,
                7,
                "a",
                "on channel `b`",
            ),
        ] {
            let got = check_members(&m, from, to, ch).expect_err("refused");
            assert!(got.contains(why), "{got:?} should say {why:?}");
        }
    }
}
