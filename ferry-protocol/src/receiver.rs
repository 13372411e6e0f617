//! The egress side's state machine: datagrams in, verified packages out.
//!
//! Every datagram is length-checked, matched to the link and epoch, and
//! authenticated before anything else happens; only then may it allocate
//! (one symbol's worth) or trigger FEC work. Packages are rebuilt block by
//! block, decrypted and digested in order, and handed to the caller as
//! [`Event::PackageData`] pieces; the caller stages them and commits only on
//! [`Event::PackageComplete`], which comes after the digest and signature
//! checks. A package that cannot be rebuilt ends in
//! [`Event::PackageFailed`] and affects no other package.

use crate::epoch::{EpochChain, EpochSchedule};
use crate::fec::{BlockDecoder, Geometry};
use crate::manifest::{self, Manifest, PackageId};
use crate::replay::{ReplayWindow, SeqStatus, WINDOW};
use crate::sender::package_context;
use crate::suite::{CryptoError, OpenKeys, PayloadCipher, PayloadDigest, SuiteId};
use crate::wire::{self, Body, DataHeader, Heartbeat, ManifestHeader};
use crate::Millis;
use reed_solomon_simd::ReedSolomonDecoder;
use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};

/// Failed (seq, attempt) pairs remembered so that the rest of a failed
/// send is dropped cheaply.
const FAILED_MEMORY: usize = 4096;

/// Receiver limits and timings.
#[derive(Debug, Clone)]
pub struct ReceiverConfig {
    /// Link name (must match the sender's).
    pub link_name: String,
    /// Path MTU; longer datagrams are dropped.
    pub mtu: usize,
    /// The epoch schedule both sides share.
    pub schedule: EpochSchedule,
    /// Bytes of symbols and decoded blocks held at most, over all packages.
    pub max_buffer_bytes: usize,
    /// Packages rebuilt concurrently at most.
    pub max_packages_in_flight: usize,
    /// A package that received nothing for this long fails.
    pub package_idle_timeout_ms: u64,
    /// After a send's trailer (or a heartbeat saying the sender moved on),
    /// how long late datagrams may still complete the package.
    pub trailer_grace_ms: u64,
    /// No fresh heartbeat for this long means the link is down (replayed
    /// heartbeats and package datagrams do not count: see
    /// [`Event::HeartbeatReplayed`]).
    pub link_down_after_ms: u64,
}

impl ReceiverConfig {
    /// A configuration with the documented defaults.
    pub fn new(link_name: &str, schedule: EpochSchedule) -> ReceiverConfig {
        ReceiverConfig {
            link_name: link_name.to_string(),
            mtu: 1500,
            schedule,
            max_buffer_bytes: 256 << 20,
            max_packages_in_flight: 64,
            package_idle_timeout_ms: 5000,
            trailer_grace_ms: 300,
            link_down_after_ms: 3500,
        }
    }
}

/// Where decoded blocks that cannot be used yet (an earlier block or the
/// manifest is still missing) wait when memory is short: the daemon gives
/// a file, so a package larger than the memory bound, waiting for a later
/// send to fill one block, is not failed for memory. What is stored is
/// sealed (encrypted) data, authenticated when it is taken back and
/// opened.
pub trait BlockStore: Send {
    /// Keeps `bytes` as block `block` of package `seq`.
    fn put(&mut self, seq: u64, block: u64, bytes: &[u8]) -> std::io::Result<()>;
    /// Gives back (and forgets) block `block` of package `seq`.
    fn take(&mut self, seq: u64, block: u64) -> std::io::Result<Vec<u8>>;
    /// Forgets every block of package `seq`.
    fn forget(&mut self, seq: u64);
}

/// Why a package failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailReason {
    /// A block lacked symbols when the send ended.
    Unrecoverable {
        /// First block that could not be rebuilt.
        block: u64,
        /// Symbols received for it.
        have: usize,
        /// Symbols needed.
        need: usize,
    },
    /// The manifest never arrived (or could not be verified) for a send
    /// whose data did.
    NoManifest,
    /// Nothing arrived for the package within the idle timeout.
    Timeout,
    /// The receive memory bound was reached; this package was dropped.
    MemoryLimit,
    /// The manifest's signature did not verify.
    BadSignature,
    /// The manifest is malformed or inconsistent with its datagrams.
    BadManifest(String),
    /// The payload key could not be derived or a chunk failed to decrypt.
    Crypto(CryptoError),
    /// The plaintext digest differs from the signed one.
    DigestMismatch,
    /// The manifest's key epoch is no longer (or not yet) held.
    EpochUnavailable(u32),
    /// A block put in the block store could not be read back.
    Storage(String),
}

impl std::fmt::Display for FailReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FailReason::Unrecoverable { block, have, need } => write!(
                f,
                "block {block} unrecoverable: {have} of {need} symbols arrived; raise repair overhead or redundancy, or resend"
            ),
            FailReason::NoManifest => f.write_str("manifest never arrived; resend the package"),
            FailReason::Timeout => f.write_str("transfer stalled (idle timeout); resend the package"),
            FailReason::MemoryLimit => {
                f.write_str("receive memory bound reached; raise max_buffer_bytes or lower the send rate")
            }
            FailReason::BadSignature => f.write_str("manifest signature does not verify"),
            FailReason::BadManifest(m) => write!(f, "bad manifest: {m}"),
            FailReason::Crypto(e) => write!(f, "{e}"),
            FailReason::DigestMismatch => f.write_str("payload digest does not match the manifest"),
            FailReason::Storage(e) => write!(
                f,
                "receive block store: {e}; check the disk of the state directory"
            ),
            FailReason::EpochUnavailable(e) => {
                write!(f, "key epoch {e} is not held (erased or clocks apart); check both clocks")
            }
        }
    }
}

/// What the receiver tells its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A verified manifest: start staging this package (truncate any
    /// earlier staging of the same sequence number).
    PackageStarted {
        /// Sequence number.
        seq: u64,
        /// Send number.
        attempt: u8,
        /// The verified manifest.
        manifest: Box<Manifest>,
    },
    /// Verified-so-far plaintext, in order, for staging only.
    PackageData {
        /// Sequence number.
        seq: u64,
        /// Plaintext offset of `data`.
        offset: u64,
        /// The bytes.
        data: Vec<u8>,
    },
    /// Every byte arrived and the digest matches: commit the staging. The
    /// sequence number is now in the replay window.
    PackageComplete {
        /// Sequence number.
        seq: u64,
        /// The verified manifest.
        manifest: Box<Manifest>,
    },
    /// This send of the package failed: discard its staging.
    PackageFailed {
        /// Sequence number.
        seq: u64,
        /// Send number.
        attempt: u8,
        /// Package id, when its manifest was verified.
        id: Option<PackageId>,
        /// Why.
        reason: FailReason,
    },
    /// Sequence numbers the sender finished with that were never accepted:
    /// what an operator should resend.
    Gap {
        /// First missing.
        first: u64,
        /// Last missing (inclusive).
        last: u64,
    },
    /// Fresh heartbeats arrive again.
    LinkUp,
    /// No fresh heartbeat for `link_down_after_ms`.
    LinkDown {
        /// Time since the last fresh heartbeat.
        silent_ms: u64,
    },
    /// Datagrams of this link arrive in a suite format this build retired
    /// (an ingress side not yet upgraded). They are dropped, counted in
    /// [`ReceiverStats::other_link`]; raised once per receiver.
    RetiredFormat {
        /// The suite byte they carry.
        suite_byte: u8,
        /// What that format was and what to do.
        what: &'static str,
    },
    /// A fresh heartbeat arrived: authenticated, and made later (by the
    /// sender's clock) than every heartbeat seen before. Only these are
    /// evidence that the sender is alive.
    Heartbeat(Heartbeat),
    /// An authenticated heartbeat no newer than the newest one already
    /// seen: a captured heartbeat replayed on the link (or a sender clock
    /// stepped back). Never taken as life: counted and reported instead.
    HeartbeatReplayed {
        /// The sender time the replayed heartbeat carries.
        sender_time_ms: u64,
        /// The newest sender time seen before it.
        newest_seen_ms: u64,
    },
}

/// Receiver counters. Every dropped datagram is counted in exactly one of
/// the drop counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReceiverStats {
    /// Datagrams handed in.
    pub datagrams: u64,
    /// Datagrams that passed authentication.
    pub authenticated: u64,
    /// Dropped: bad length, version, kind or field.
    pub malformed: u64,
    /// Dropped: another link's id or suite.
    pub other_link: u64,
    /// Dropped: claims an epoch whose key is not held.
    pub stale_epoch: u64,
    /// Dropped: MAC failed (forged or corrupted).
    pub forged: u64,
    /// Dropped: belongs to an already accepted package (duplicate or replay).
    pub duplicate: u64,
    /// Dropped: older than the replay window.
    pub too_old: u64,
    /// Dropped: belongs to a failed or superseded send, or a finished block.
    pub late: u64,
    /// Dropped: inconsistent with the package's geometry.
    pub inconsistent: u64,
    /// Blocks rebuilt using repair symbols.
    pub blocks_repaired: u64,
    /// Blocks rebuilt.
    pub blocks_decoded: u64,
    /// Packages accepted.
    pub packages_complete: u64,
    /// Package sends failed.
    pub packages_failed: u64,
    /// Fresh heartbeats received (the only evidence of a live link).
    pub heartbeats: u64,
    /// Authenticated heartbeats dropped because they were not newer than
    /// the newest seen: replays (or a sender clock stepped back).
    pub heartbeats_replayed: u64,
    /// Bytes of symbols and blocks currently held.
    pub buffered_bytes: u64,
    /// Decoded blocks put in the block store because memory was short.
    pub blocks_stored: u64,
    /// Blocks the store refused (kept in memory instead).
    pub store_errors: u64,
}

struct Opened {
    manifest: Box<Manifest>,
    cipher: Box<dyn PayloadCipher>,
    digest: Option<Box<dyn PayloadDigest>>,
    geometry: Geometry,
    chunks_total: u64,
}

struct InFlight {
    seq: u64,
    attempt: u8,
    symbol_size: Option<usize>,
    opened: Option<Opened>,
    blocks: BTreeMap<u64, BlockDecoder>,
    decoded: BTreeMap<u64, Vec<u8>>,
    /// Decoded blocks waiting in the block store.
    stored: BTreeSet<u64>,
    next_block: u64,
    carry: Vec<u8>,
    chunk_index: u64,
    plain_offset: u64,
    held: usize,
    last_activity: Millis,
    ending_since: Option<Millis>,
}

impl InFlight {
    fn new(seq: u64, attempt: u8, now: Millis) -> InFlight {
        InFlight {
            seq,
            attempt,
            symbol_size: None,
            opened: None,
            blocks: BTreeMap::new(),
            decoded: BTreeMap::new(),
            stored: BTreeSet::new(),
            next_block: 0,
            carry: Vec::new(),
            chunk_index: 0,
            plain_offset: 0,
            held: 0,
            last_activity: now,
            ending_since: None,
        }
    }
}

/// The sans-IO receiver of one link.
pub struct Receiver {
    config: ReceiverConfig,
    keys: Box<dyn OpenKeys>,
    epochs: EpochChain,
    window: ReplayWindow,
    link_id: u32,
    max_datagram: usize,
    in_flight: Vec<InFlight>,
    failed: HashSet<(u64, u8)>,
    failed_order: VecDeque<(u64, u8)>,
    events: VecDeque<Event>,
    rs: Option<ReedSolomonDecoder>,
    store: Option<Box<dyn BlockStore>>,
    held_total: usize,
    /// When the last fresh heartbeat arrived (receiver's clock).
    last_valid: Option<Millis>,
    /// Sender time of the newest heartbeat seen; persisted by the caller
    /// (see [`Receiver::newest_heartbeat_ms`]) so a restart does not make
    /// old heartbeats fresh again.
    newest_heartbeat_ms: Option<u64>,
    /// Whether [`Event::RetiredFormat`] was raised: once per receiver, since
    /// an old peer sends thousands of datagrams a second.
    retired_format_reported: bool,
    link_up: bool,
    gap_cursor: Option<u64>,
    gap_check: Option<(u64, Millis)>,
    stats: ReceiverStats,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("link", &self.config.link_name)
            .field("in_flight", &self.in_flight.len())
            .field("stats", &self.stats)
            .finish()
    }
}

impl Receiver {
    /// A receiver for one link, resuming from a persisted replay window.
    pub fn new(
        config: ReceiverConfig,
        keys: Box<dyn OpenKeys>,
        epochs: EpochChain,
        window: ReplayWindow,
    ) -> Receiver {
        let gap_cursor = window.top().map(|t| t + 1);
        Receiver {
            link_id: wire::link_id(&config.link_name),
            max_datagram: wire::max_datagram_len(config.mtu.clamp(wire::MIN_MTU, wire::MAX_MTU)),
            config,
            keys,
            epochs,
            window,
            in_flight: Vec::new(),
            failed: HashSet::new(),
            failed_order: VecDeque::new(),
            events: VecDeque::new(),
            rs: None,
            store: None,
            held_total: 0,
            last_valid: None,
            newest_heartbeat_ms: None,
            retired_format_reported: false,
            link_up: false,
            gap_cursor,
            gap_check: None,
            stats: ReceiverStats::default(),
        }
    }

    /// Decoded blocks that must wait go to `store` once half the memory
    /// bound is in use, instead of failing a package at the bound.
    pub fn with_block_store(mut self, store: Box<dyn BlockStore>) -> Receiver {
        self.store = Some(store);
        self
    }

    /// Counters.
    pub fn stats(&self) -> ReceiverStats {
        let mut s = self.stats;
        s.buffered_bytes = self.held_total as u64;
        s
    }

    /// The replay window (persist it with every completed package).
    pub fn replay_window(&self) -> &ReplayWindow {
        &self.window
    }

    /// Resumes heartbeat freshness from a persisted value: heartbeats whose
    /// sender time is not later than `sender_time_ms` are replays.
    pub fn resume_heartbeats_after(&mut self, sender_time_ms: u64) {
        self.newest_heartbeat_ms = Some(
            self.newest_heartbeat_ms
                .map_or(sender_time_ms, |n| n.max(sender_time_ms)),
        );
    }

    /// Sender time of the newest fresh heartbeat (persist it when it
    /// changes; hand it back with [`Receiver::resume_heartbeats_after`]).
    pub fn newest_heartbeat_ms(&self) -> Option<u64> {
        self.newest_heartbeat_ms
    }

    /// The epoch chain (persist its oldest entry when it changes).
    pub fn epochs(&self) -> &EpochChain {
        &self.epochs
    }

    /// Packages currently being rebuilt.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Self::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Millis> {
        let mut t: Option<Millis> = None;
        let mut consider = |m: Millis| t = Some(t.map_or(m, |x| x.min(m)));
        for p in &self.in_flight {
            consider(p.last_activity.plus(self.config.package_idle_timeout_ms));
            if let Some(e) = p.ending_since {
                consider(e.plus(self.config.trailer_grace_ms));
            }
        }
        if let Some((_, due)) = self.gap_check {
            consider(due);
        }
        if self.link_up {
            if let Some(l) = self.last_valid {
                consider(l.plus(self.config.link_down_after_ms));
            }
        }
        t
    }

    /// Advances timers: fails stalled packages, reports gaps and link-down.
    pub fn handle_timeout(&mut self, now: Millis) {
        let link = self.keys.link();
        self.epochs
            .advance_to(link, self.config.schedule.epoch_at(now));
        self.epochs.prepare_lookahead(link);
        let idle = self.config.package_idle_timeout_ms;
        let grace = self.config.trailer_grace_ms;
        let expired: Vec<(u64, FailReason)> = self
            .in_flight
            .iter()
            .filter_map(|p| {
                let ended = p.ending_since.is_some_and(|e| now.since(e) >= grace);
                let stalled = now.since(p.last_activity) >= idle;
                if ended || stalled {
                    let reason = if p.opened.is_none() {
                        FailReason::NoManifest
                    } else if let Some((b, d)) = p.blocks.iter().find(|(b, _)| **b >= p.next_block)
                    {
                        let (k, _, _) = d.shape();
                        FailReason::Unrecoverable {
                            block: *b,
                            have: d.bytes_held() / d.shape().2.max(1),
                            need: usize::from(k),
                        }
                    } else if ended {
                        FailReason::Unrecoverable {
                            block: p.next_block,
                            have: 0,
                            need: 1,
                        }
                    } else {
                        FailReason::Timeout
                    };
                    Some((p.seq, reason))
                } else {
                    None
                }
            })
            .collect();
        for (seq, reason) in expired {
            self.fail(seq, reason);
        }
        if let Some((upto, due)) = self.gap_check {
            if now >= due {
                self.gap_check = None;
                self.report_gaps(upto);
            }
        }
        if self.link_up {
            if let Some(l) = self.last_valid {
                let silent = now.since(l);
                if silent >= self.config.link_down_after_ms {
                    self.link_up = false;
                    self.events.push_back(Event::LinkDown { silent_ms: silent });
                }
            }
        }
    }

    /// Takes one datagram from the link. Never panics, whatever the bytes.
    pub fn handle_datagram(&mut self, now: Millis, datagram: &[u8]) {
        self.stats.datagrams += 1;
        let parsed = match wire::parse(datagram, self.max_datagram) {
            Ok(p) => p,
            Err(_) => {
                self.stats.malformed += 1;
                return;
            }
        };
        let link = self.keys.link();
        if parsed.common.link_id != self.link_id || parsed.common.suite != link.suite().to_wire() {
            self.stats.other_link += 1;
            // Our link, but a suite format this build retired: say so
            // instead of leaving the operator a counter. Nothing in the
            // datagram is read under the current format, and nothing but
            // this header byte is trusted (it is not authenticated; a forger
            // gains one log line per receiver).
            if parsed.common.link_id == self.link_id && !self.retired_format_reported {
                if let Some(what) = SuiteId::retired(parsed.common.suite) {
                    self.retired_format_reported = true;
                    self.events.push_back(Event::RetiredFormat {
                        suite_byte: parsed.common.suite,
                        what,
                    });
                }
            }
            return;
        }
        let Some(mac) = self.epochs.mac(parsed.common.epoch) else {
            self.stats.stale_epoch += 1;
            return;
        };
        if !mac.verify(parsed.authenticated, parsed.tag) {
            self.stats.forged += 1;
            return;
        }
        self.stats.authenticated += 1;
        if parsed.common.epoch > self.epochs.current() {
            // Authenticated traffic from the next epoch: the sender's clock
            // is ahead of ours; move with it.
            self.epochs.advance_to(link, parsed.common.epoch);
            self.epochs.prepare_lookahead(link);
        }
        // Liveness comes from fresh heartbeats only (`on_heartbeat`): an
        // authenticated manifest or symbol may be a capture replayed while
        // the sender is down, so it proves nothing about the link now.
        match parsed.body {
            Body::Heartbeat(hb) => self.on_heartbeat(now, hb),
            Body::Manifest(h, bytes) => self.on_manifest(now, h, bytes),
            Body::Data(h, symbol) => self.on_data(now, h, symbol),
        }
    }

    fn on_heartbeat(&mut self, now: Millis, hb: Heartbeat) {
        // The MAC proves the sender made this heartbeat once, not that it
        // made it now. Freshness is the sender's clock strictly moving on
        // from the newest heartbeat seen (persisted across restarts by the
        // caller); anything else is a replay and changes no state.
        if let Some(newest) = self.newest_heartbeat_ms {
            if hb.sender_time_ms == newest {
                // The newest heartbeat once more: a copy the network made
                // (UDP duplicates), or a replay of it that gains nothing,
                // since it is not life either. Counted as a duplicate
                // datagram, not raised as an attack: an alarm on every
                // duplicated datagram would teach operators to ignore it.
                self.stats.duplicate += 1;
                return;
            }
            if hb.sender_time_ms < newest {
                self.stats.heartbeats_replayed += 1;
                self.events.push_back(Event::HeartbeatReplayed {
                    sender_time_ms: hb.sender_time_ms,
                    newest_seen_ms: newest,
                });
                return;
            }
        }
        self.newest_heartbeat_ms = Some(hb.sender_time_ms);
        self.stats.heartbeats += 1;
        self.last_valid = Some(now);
        if !self.link_up {
            self.link_up = true;
            self.events.push_back(Event::LinkUp);
        }
        // Packages below `active_from_seq` have had all their sends: any
        // still rebuilding get the trailer grace to finish.
        for p in self
            .in_flight
            .iter_mut()
            .filter(|p| p.seq < hb.active_from_seq)
        {
            p.ending_since.get_or_insert(now);
        }
        if self.gap_check.is_none() {
            self.gap_check = Some((hb.active_from_seq, now.plus(self.config.trailer_grace_ms)));
        }
        self.events.push_back(Event::Heartbeat(hb));
    }

    fn report_gaps(&mut self, upto: u64) {
        // With no cursor (first report since an empty start) everything
        // below the sender's active range that we never accepted is missing.
        let start = self.gap_cursor.unwrap_or_default();
        if upto <= start {
            return;
        }
        // Work in ranges, never per sequence number outside the window: a
        // sender far ahead (a fresh receiver, a long outage) must cost the
        // same as one just ahead. The numbers that are *not* missing are the
        // packages being rebuilt and those the window has accepted; the
        // window is at most WINDOW numbers wide, so that scan is bounded.
        // A bundle being rebuilt holds its members' numbers too (at most
        // MAX_BUNDLE_MEMBERS each, so this stays bounded).
        let mut present: Vec<u64> = self
            .in_flight
            .iter()
            .flat_map(|p| {
                let from = p
                    .opened
                    .as_ref()
                    .and_then(|o| o.manifest.bundle_from_seq)
                    .unwrap_or(p.seq);
                from..=p.seq
            })
            .filter(|s| (start..upto).contains(s))
            .collect();
        if let Some(top) = self.window.top() {
            let lo = start.max(top.saturating_sub(WINDOW - 1));
            let hi = upto.min(top.saturating_add(1));
            present.extend((lo..hi).filter(|s| self.window.check(*s) == SeqStatus::Accepted));
        }
        present.sort_unstable();
        present.dedup();
        let mut next = start;
        for s in present {
            if s > next {
                self.events.push_back(Event::Gap {
                    first: next,
                    last: s - 1,
                });
            }
            next = s + 1;
        }
        if next < upto {
            self.events.push_back(Event::Gap {
                first: next,
                last: upto - 1,
            });
        }
        self.gap_cursor = Some(upto);
    }

    /// Checks the replay window and failed set; returns the index of the
    /// package's in-flight state, creating it when needed, or None to drop.
    fn slot(&mut self, now: Millis, seq: u64, attempt: u8) -> Option<usize> {
        match self.window.check(seq) {
            SeqStatus::Accepted => {
                self.stats.duplicate += 1;
                return None;
            }
            SeqStatus::TooOld => {
                self.stats.too_old += 1;
                return None;
            }
            SeqStatus::Fresh => {}
        }
        if self.failed.contains(&(seq, attempt)) {
            self.stats.late += 1;
            return None;
        }
        if let Some(i) = self.in_flight.iter().position(|p| p.seq == seq) {
            let current = self.in_flight[i].attempt;
            if attempt == current {
                return Some(i);
            }
            if attempt < current {
                self.stats.late += 1;
                return None;
            }
            // A later send of the same package: its sealed bytes are
            // identical (same key, same chunk nonces), so its symbols pool
            // with those already held — two lossy sends together rebuild
            // what neither could alone.
            let p = &mut self.in_flight[i];
            p.attempt = attempt;
            p.ending_since = None;
            return Some(i);
        }
        if self.in_flight.len() >= self.config.max_packages_in_flight.max(1) {
            // Keep the newest work: the oldest stalled package is the one
            // least likely to complete.
            if let Some(oldest) = self
                .in_flight
                .iter()
                .min_by_key(|p| p.last_activity)
                .map(|p| p.seq)
            {
                self.fail(oldest, FailReason::MemoryLimit);
            }
        }
        self.in_flight.push(InFlight::new(seq, attempt, now));
        Some(self.in_flight.len() - 1)
    }

    // The trailer flag is not used here: a trailer ends a send, not
    // necessarily the package, since another send may follow. The sender's
    // heartbeats say when it is done with a sequence number
    // (`active_from_seq`), and only that starts the grace after which an
    // incomplete package fails.
    fn on_manifest(&mut self, now: Millis, h: ManifestHeader, bytes: &[u8]) {
        let Some(i) = self.slot(now, h.seq, h.attempt) else {
            return;
        };
        let p = &mut self.in_flight[i];
        p.last_activity = now;
        if p.opened.is_some() {
            // A later copy of a manifest already verified: costs one MAC.
            return;
        }
        let symbol_size = p.symbol_size;
        match self.open_manifest(h.seq, bytes, symbol_size) {
            Ok(opened) => {
                let p = &mut self.in_flight[i];
                let manifest = opened.manifest.clone();
                p.opened = Some(opened);
                self.events.push_back(Event::PackageStarted {
                    seq: h.seq,
                    attempt: h.attempt,
                    manifest,
                });
                self.consume(h.seq);
            }
            Err(reason) => self.fail(h.seq, reason),
        }
    }

    fn open_manifest(
        &self,
        seq: u64,
        bytes: &[u8],
        symbol_size: Option<usize>,
    ) -> Result<Opened, FailReason> {
        let (manifest, body, signature) =
            Manifest::decode_signed(bytes).map_err(|e| FailReason::BadManifest(e.to_string()))?;
        if manifest.seq != seq {
            return Err(FailReason::BadManifest(
                "sequence number differs from its datagram".into(),
            ));
        }
        let link = self.keys.link();
        if manifest.suite != link.suite() {
            return Err(FailReason::BadManifest(
                "suite differs from the link's".into(),
            ));
        }
        self.keys
            .verify(
                &manifest.signing_key_id,
                &Manifest::signing_input(body),
                signature,
            )
            .map_err(|e| match e {
                CryptoError::BadSignature => FailReason::BadSignature,
                other => FailReason::Crypto(other),
            })?;
        let ss = usize::from(manifest.symbol_size);
        if ss > wire::symbol_size(self.config.mtu) || symbol_size.is_some_and(|s| s != ss) {
            return Err(FailReason::BadManifest(
                "symbol size differs from its datagrams or exceeds the MTU".into(),
            ));
        }
        if manifest.meta.digest.len() != link.digest_len() {
            return Err(FailReason::BadManifest("digest length".into()));
        }
        let secret = self
            .epochs
            .secret(manifest.epoch)
            .ok_or(FailReason::EpochUnavailable(manifest.epoch))?;
        let cipher = self
            .keys
            .open_package(
                &manifest.recipient_key_id,
                secret,
                &manifest.ephemeral,
                &package_context(&manifest.meta, seq),
            )
            .map_err(FailReason::Crypto)?;
        let geometry = Geometry {
            sealed_len: manifest.sealed_len(cipher.overhead()),
            symbol_size: ss,
            block_symbols: manifest.block_symbols,
        };
        Ok(Opened {
            chunks_total: manifest::chunk_count(manifest.meta.size, manifest.chunk_size),
            digest: Some(link.new_digest()),
            manifest: Box::new(manifest),
            cipher,
            geometry,
        })
    }

    fn on_data(&mut self, now: Millis, h: DataHeader, symbol: &[u8]) {
        let Some(i) = self.slot(now, h.seq, h.attempt) else {
            return;
        };
        let p = &mut self.in_flight[i];
        p.last_activity = now;
        let block = u64::from(h.block);
        match p.symbol_size {
            None => p.symbol_size = Some(symbol.len()),
            Some(s) if s != symbol.len() => {
                self.stats.inconsistent += 1;
                return;
            }
            Some(_) => {}
        }
        if let Some(o) = &p.opened {
            let g = &o.geometry;
            if block >= g.blocks() || h.k != g.k_of(block) || symbol.len() != g.symbol_size {
                self.stats.inconsistent += 1;
                return;
            }
        }
        if block < p.next_block || p.decoded.contains_key(&block) || p.stored.contains(&block) {
            self.stats.late += 1;
            return;
        }
        let decoder = p
            .blocks
            .entry(block)
            .or_insert_with(|| BlockDecoder::new(h.k, h.r, symbol.len()));
        if decoder.shape() != (h.k, h.r, symbol.len()) {
            self.stats.inconsistent += 1;
            return;
        }
        if !decoder.add(h.index, symbol) {
            self.stats.late += 1;
            return;
        }
        p.held += symbol.len();
        self.held_total += symbol.len();
        if decoder.ready() {
            let Some(d) = p.blocks.remove(&block) else {
                return;
            };
            let held = d.bytes_held();
            let repaired = d.needs_repair();
            p.held -= held;
            self.held_total -= held;
            match d.decode(&mut self.rs) {
                Ok(bytes) => {
                    self.stats.blocks_decoded += 1;
                    if repaired {
                        self.stats.blocks_repaired += 1;
                    }
                    let p = &mut self.in_flight[i];
                    // A block that cannot be used yet goes to the store
                    // once memory is half used; the next one in order is
                    // used at once and never stored.
                    let waits = block != p.next_block || p.opened.is_none();
                    let short = self.held_total + bytes.len() > self.config.max_buffer_bytes / 2;
                    let stored = match self.store.as_mut() {
                        Some(store) if waits && short => match store.put(h.seq, block, &bytes) {
                            Ok(()) => true,
                            Err(_) => {
                                self.stats.store_errors += 1;
                                false
                            }
                        },
                        _ => false,
                    };
                    if stored {
                        self.stats.blocks_stored += 1;
                        p.stored.insert(block);
                    } else {
                        p.held += bytes.len();
                        self.held_total += bytes.len();
                        p.decoded.insert(block, bytes);
                    }
                    self.consume(h.seq);
                }
                Err(e) => {
                    self.fail(h.seq, FailReason::BadManifest(e.to_string()));
                    return;
                }
            }
        }
        if self.held_total > self.config.max_buffer_bytes {
            if let Some(big) = self.in_flight.iter().max_by_key(|p| p.held).map(|p| p.seq) {
                self.fail(big, FailReason::MemoryLimit);
            }
        }
    }

    /// Decrypts decoded blocks in order and emits their plaintext.
    fn consume(&mut self, seq: u64) {
        let Some(i) = self.in_flight.iter().position(|p| p.seq == seq) else {
            return;
        };
        let mut failure = None;
        let mut complete = false;
        {
            let p = &mut self.in_flight[i];
            let Some(o) = p.opened.as_mut() else {
                return;
            };
            loop {
                let mut bytes = if let Some(b) = p.decoded.remove(&p.next_block) {
                    p.held -= b.len();
                    self.held_total -= b.len();
                    b
                } else if p.stored.remove(&p.next_block) {
                    let taken = self.store.as_mut().map(|s| s.take(seq, p.next_block));
                    match taken {
                        Some(Ok(b)) => b,
                        Some(Err(e)) => {
                            failure = Some(FailReason::Storage(e.to_string()));
                            break;
                        }
                        None => {
                            failure = Some(FailReason::Storage("no block store".into()));
                            break;
                        }
                    }
                } else {
                    break;
                };
                let (_, len) = o.geometry.block_span(p.next_block);
                bytes.truncate(len);
                p.next_block += 1;
                let overhead = o.cipher.overhead();
                let chunk = u64::from(o.manifest.chunk_size);
                let size = o.manifest.meta.size;
                // Chunks wholly inside the block are cut straight from it;
                // only a chunk that spans two blocks goes through `carry`.
                let mut pos = 0usize;
                while p.chunk_index < o.chunks_total {
                    let plain = (size - p.chunk_index * chunk).min(chunk) as usize;
                    let sealed = plain + overhead;
                    let mut c = if p.carry.is_empty() {
                        if bytes.len() - pos < sealed {
                            p.carry.extend_from_slice(&bytes[pos..]);
                            break;
                        }
                        pos += sealed;
                        bytes[pos - sealed..pos].to_vec()
                    } else {
                        let take = (sealed - p.carry.len()).min(bytes.len() - pos);
                        p.carry.extend_from_slice(&bytes[pos..pos + take]);
                        pos += take;
                        if p.carry.len() < sealed {
                            break;
                        }
                        std::mem::take(&mut p.carry)
                    };
                    let last = p.chunk_index + 1 == o.chunks_total;
                    if let Err(e) = o.cipher.open_chunk(p.chunk_index, last, &mut c) {
                        failure = Some(FailReason::Crypto(e));
                        break;
                    }
                    if let Some(d) = o.digest.as_mut() {
                        d.update(&c);
                    }
                    let offset = p.plain_offset;
                    p.plain_offset += c.len() as u64;
                    p.chunk_index += 1;
                    if !c.is_empty() {
                        self.events.push_back(Event::PackageData {
                            seq,
                            offset,
                            data: c,
                        });
                    }
                }
                if failure.is_some() {
                    break;
                }
            }
            if failure.is_none() && p.chunk_index == o.chunks_total {
                let digest = o.digest.take().map(|d| d.finish()).unwrap_or_default();
                if digest == o.manifest.meta.digest {
                    complete = true;
                } else {
                    failure = Some(FailReason::DigestMismatch);
                }
            }
        }
        if let Some(reason) = failure {
            self.fail(seq, reason);
            return;
        }
        if complete {
            let p = self.in_flight.swap_remove(i);
            self.held_total -= p.held;
            if !p.stored.is_empty() {
                if let Some(store) = self.store.as_mut() {
                    store.forget(seq);
                }
            }
            // A bundle's members were queued under `from..=seq`: their
            // numbers are accepted with it (the range is signed and
            // bounded), so none is reported as a gap or taken again.
            if let Some(from) = p.opened.as_ref().and_then(|o| o.manifest.bundle_from_seq) {
                for member in from..seq {
                    self.window.accept(member);
                }
            }
            self.window.accept(seq);
            self.stats.packages_complete += 1;
            if let Some(o) = p.opened {
                self.events.push_back(Event::PackageComplete {
                    seq,
                    manifest: o.manifest,
                });
            }
        }
    }

    fn fail(&mut self, seq: u64, reason: FailReason) {
        let Some(i) = self.in_flight.iter().position(|p| p.seq == seq) else {
            return;
        };
        let p = self.in_flight.swap_remove(i);
        self.held_total -= p.held;
        if !p.stored.is_empty() {
            if let Some(store) = self.store.as_mut() {
                store.forget(seq);
            }
        }
        self.stats.packages_failed += 1;
        if self.failed_order.len() >= FAILED_MEMORY {
            if let Some(old) = self.failed_order.pop_front() {
                self.failed.remove(&old);
            }
        }
        self.failed.insert((seq, p.attempt));
        self.failed_order.push_back((seq, p.attempt));
        self.events.push_back(Event::PackageFailed {
            seq,
            attempt: p.attempt,
            id: p.opened.map(|o| o.manifest.meta.id),
            reason,
        });
    }
}
