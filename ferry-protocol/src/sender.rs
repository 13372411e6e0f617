//! The ingress side's state machine: packages in, datagrams out.
//!
//! The caller enqueues a package's description (its bytes stay in the
//! caller's file), then repeatedly calls [`Sender::poll_transmit`], which
//! either writes the next datagram into the caller's buffer, asks for the
//! next plaintext chunk ([`Transmit::NeedPayload`]), or says there is
//! nothing to do until [`Sender::poll_timeout`]. Memory stays bounded by two
//! interleaving groups of FEC blocks (each at most `2 · (burst + 1)` blocks)
//! for the package in transmission, whatever the package size: the group
//! being sent, and the next one, assembled (read, sealed, encoded) a block
//! at a time between the current group's datagrams, so a paced link is not
//! idle while a group is prepared.
//!
//! How a package is cut into blocks, how much repair each block gets, how
//! many manifest copies a send carries and in which order the datagrams go
//! is the package's [`SendPlan`], derived from the link's loss budget
//! (`budget.rs`). Each send of a package is: a manifest, the symbols of the
//! package's interleaving groups (round robin across the blocks of a
//! group) with further manifest copies spread evenly among them, and a
//! trailer manifest that marks the end of the send. Redundant sends repeat
//! this after a spacing, with an incremented attempt number and
//! byte-identical sealed payload.

use crate::budget::{LossBudget, PlanError, Planner, SendPlan};
use crate::epoch::{EpochChain, EpochSchedule};
use crate::fec::{BlockEncoder, FecError, Geometry};
use crate::manifest::{self, Manifest, ManifestError, PackageMeta};
use crate::suite::{CryptoError, PayloadCipher, SealKeys, DATAGRAM_TAG_LEN};
use crate::wire::{self, CommonHeader, DataHeader, Heartbeat, Kind, ManifestHeader};
use crate::Millis;
use std::collections::VecDeque;

pub use crate::wire::MAX_CHUNK_SIZE;

/// Default plaintext bytes per sealed chunk.
pub const DEFAULT_CHUNK_SIZE: u32 = 64 * 1024;
/// Data datagrams sent before the second manifest copy of a send when no
/// loss budget is set.
pub const SECOND_MANIFEST_AFTER: u64 = crate::budget::LEGACY_SECOND_MANIFEST_AFTER;

/// How the sender cuts, protects and paces its output.
#[derive(Debug, Clone)]
pub struct SenderConfig {
    /// Link name (its hash tags every datagram).
    pub link_name: String,
    /// Path MTU; datagrams are at most `mtu - 28` bytes.
    pub mtu: usize,
    /// Source symbols per full FEC block (the largest; the plan may cut a
    /// package into smaller blocks to interleave them).
    pub block_symbols: u16,
    /// Repair symbols as a percentage of source symbols: with a loss
    /// budget a floor under what the budget derives, without one the
    /// repair itself.
    pub repair_overhead_percent: f64,
    /// The loss every package must survive (None: fixed repair and two or
    /// three manifest copies, nothing promised).
    pub loss_budget: Option<LossBudget>,
    /// Plaintext bytes per sealed chunk.
    pub chunk_size: u32,
    /// Interval between heartbeats.
    pub heartbeat_interval_ms: u64,
    /// Sends per package (1 = no redundancy).
    pub redundancy: u8,
    /// Pause between two sends of the same package.
    pub redundancy_spacing_ms: u64,
    /// The epoch schedule both sides share.
    pub schedule: EpochSchedule,
}

impl SenderConfig {
    /// A configuration with the documented defaults.
    pub fn new(link_name: &str, schedule: EpochSchedule) -> SenderConfig {
        SenderConfig {
            link_name: link_name.to_string(),
            mtu: 1500,
            block_symbols: 1024,
            repair_overhead_percent: 10.0,
            loss_budget: Some(LossBudget::DEFAULT),
            chunk_size: DEFAULT_CHUNK_SIZE,
            heartbeat_interval_ms: 1000,
            redundancy: 1,
            redundancy_spacing_ms: 1000,
            schedule,
        }
    }
}

/// Why the sender refused something. None of these is caused by the link.
#[derive(Debug, thiserror::Error)]
pub enum SenderError {
    /// The configuration is unusable; the message names the key.
    #[error("sender configuration: {0}")]
    Config(String),
    /// The package description does not fit a manifest.
    #[error("package cannot be described: {0}")]
    Manifest(#[from] ManifestError),
    /// Sealing failed.
    #[error("sealing failed: {0}")]
    Crypto(#[from] CryptoError),
    /// FEC encoding failed.
    #[error("FEC: {0}")]
    Fec(#[from] FecError),
    /// No protection the code supports meets the loss budget.
    #[error("{0}")]
    Budget(#[from] PlanError),
    /// Sequence numbers must increase.
    #[error("sequence number {seq} is not above the last one used ({last})")]
    SeqNotIncreasing {
        /// Offered.
        seq: u64,
        /// Last used.
        last: u64,
    },
    /// `provide_payload` did not answer the outstanding request.
    #[error("payload for seq {seq} at offset {offset} with {len} bytes was not requested")]
    UnexpectedPayload {
        /// Sequence offered.
        seq: u64,
        /// Offset offered.
        offset: u64,
        /// Length offered.
        len: usize,
    },
    /// The caller's buffer is smaller than one datagram.
    #[error("transmit buffer of {0} bytes is smaller than a datagram")]
    BufferTooSmall(usize),
}

/// What [`Sender::poll_transmit`] produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transmit {
    /// A datagram of this many bytes is in the buffer: send it.
    Datagram(usize),
    /// Read `len` bytes of package `seq` at `offset` and pass them to
    /// [`Sender::provide_payload`].
    NeedPayload {
        /// Package.
        seq: u64,
        /// Plaintext offset.
        offset: u64,
        /// Exact number of bytes wanted.
        len: usize,
    },
    /// Nothing to send before [`Sender::poll_timeout`].
    Idle,
}

/// Sender counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SenderStats {
    /// Packages whose first send completed.
    pub packages_sent: u64,
    /// Sends completed, redundant ones included.
    pub sends_completed: u64,
    /// Datagrams produced.
    pub datagrams: u64,
    /// Of which repair symbols.
    pub repair_datagrams: u64,
    /// Heartbeats produced.
    pub heartbeats: u64,
    /// Plaintext bytes sealed.
    pub payload_bytes: u64,
    /// Sends skipped because the package's epoch key was already erased.
    pub expired_sends: u64,
    /// Packages the caller abandoned ([`Sender::abandon`]): their payload
    /// could no longer be read.
    pub abandoned: u64,
    /// Transient transport errors reported by the caller.
    pub send_errors: u64,
    /// The most recent completed send's length in ms, from the time it
    /// started (its leading manifest copy) to its trailer: the sending
    /// phase as the sender saw it, free of anyone's polling interval.
    pub last_send_ms: u64,
    /// Plaintext bytes of the package that send carried.
    pub last_send_bytes: u64,
}

struct Package {
    seq: u64,
    manifest: Manifest,
    signed: Vec<u8>,
    cipher: Box<dyn PayloadCipher>,
    geometry: Geometry,
    plan: SendPlan,
    attempts_done: u8,
    next_attempt_at: Millis,
}

/// The send in progress.
struct Active {
    index: usize,
    attempt: u8,
    plain_offset: u64,
    chunk_index: u64,
    awaiting: Option<(u64, usize)>,
    /// Sealed bytes read but not yet cut into a block.
    sealed: Vec<u8>,
    /// The interleaving group being sent, and its blocks.
    group: u64,
    span: (u64, u64),
    /// Blocks of the group encoded so far (into `Sender::blocks`).
    assembled: usize,
    /// Blocks of the next group encoded ahead (into `Sender::ahead`) while
    /// this group's datagrams go out.
    ahead_assembled: usize,
    /// Data datagrams sent from this group.
    group_sent: u64,
    /// Symbol index being sent across the group, and the next block of the
    /// group to send it from.
    round: u32,
    cursor: usize,
    data_sent: u64,
    /// Manifest copies sent so far, the leading one included.
    copies_sent: u16,
    trailer_due: bool,
    /// When the send started.
    started: Millis,
}

/// Which group [`Sender::assemble`] works on.
#[derive(Debug, Clone, Copy)]
enum Which {
    /// The group being sent.
    Current,
    /// The one after it, assembled ahead.
    Next,
}

/// One encoded block of the group being sent (buffers reused).
#[derive(Default)]
struct BlockBuf {
    block: u64,
    k: u16,
    r: u16,
    source: Vec<u8>,
    repair: Vec<u8>,
}

/// The sans-IO sender of one link.
pub struct Sender {
    config: SenderConfig,
    keys: Box<dyn SealKeys>,
    epochs: EpochChain,
    link_id: u32,
    symbol_size: usize,
    packages: VecDeque<Package>,
    active: Option<Active>,
    planner: Planner,
    /// Bytes a sealed chunk adds, as the suite's ciphers report it (32, the
    /// largest of the suites, until the first package says).
    chunk_overhead: usize,
    blocks: Vec<BlockBuf>,
    /// The next group's blocks, assembled ahead; swapped with `blocks` when
    /// the group being sent ends.
    ahead: Vec<BlockBuf>,
    encoder: BlockEncoder,
    last_seq: Option<u64>,
    next_heartbeat: Millis,
    stats: SenderStats,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("link", &self.config.link_name)
            .field("queued", &self.packages.len())
            .field("stats", &self.stats)
            .finish()
    }
}

impl Sender {
    /// A sender for one link. `epochs` holds the current epoch secret (the
    /// caller restores it from its state and persists it as it advances).
    pub fn new(
        config: SenderConfig,
        keys: Box<dyn SealKeys>,
        epochs: EpochChain,
    ) -> Result<Sender, SenderError> {
        if !(wire::MIN_MTU..=wire::MAX_MTU).contains(&config.mtu) {
            return Err(SenderError::Config(format!(
                "mtu {} outside {}..={}",
                config.mtu,
                wire::MIN_MTU,
                wire::MAX_MTU
            )));
        }
        if config.chunk_size == 0 || config.chunk_size > MAX_CHUNK_SIZE {
            return Err(SenderError::Config(format!(
                "chunk_size {} outside 1..={MAX_CHUNK_SIZE}",
                config.chunk_size
            )));
        }
        if config.block_symbols == 0 || config.block_symbols > wire::MAX_BLOCK_SYMBOLS {
            return Err(SenderError::Config(format!(
                "block_symbols {} outside 1..={}",
                config.block_symbols,
                wire::MAX_BLOCK_SYMBOLS
            )));
        }
        if !(config.repair_overhead_percent >= 0.0 && config.repair_overhead_percent <= 100.0) {
            return Err(SenderError::Config(format!(
                "repair_overhead_percent {} outside 0..=100",
                config.repair_overhead_percent
            )));
        }
        if let Some(budget) = config.loss_budget {
            budget.validate().map_err(SenderError::Config)?;
        }
        if config.redundancy == 0 {
            return Err(SenderError::Config("redundancy must be at least 1".into()));
        }
        let symbol_size = wire::symbol_size(config.mtu);
        let mut planner = Planner::new(
            config.loss_budget,
            config.repair_overhead_percent,
            symbol_size,
            config.block_symbols,
        );
        // A package of many full blocks: if its protection is reachable,
        // every size is (smaller blocks need fewer repair symbols).
        let full = u64::from(config.block_symbols) * symbol_size as u64 * 64;
        planner.plan(full).map_err(|e| {
            SenderError::Config(format!(
                "block_symbols {} with {}% repair: {e}",
                config.block_symbols, config.repair_overhead_percent
            ))
        })?;
        Ok(Sender {
            link_id: wire::link_id(&config.link_name),
            symbol_size,
            config,
            keys,
            epochs,
            packages: VecDeque::new(),
            active: None,
            planner,
            chunk_overhead: 32,
            blocks: Vec::new(),
            ahead: Vec::new(),
            encoder: BlockEncoder::new(),
            last_seq: None,
            next_heartbeat: Millis(0),
            stats: SenderStats::default(),
        })
    }

    /// Counters.
    pub fn stats(&self) -> SenderStats {
        self.stats
    }

    /// The epoch chain (persist its oldest entry when it changes).
    pub fn epochs(&self) -> &EpochChain {
        &self.epochs
    }

    /// Packages queued or being sent (redundant sends pending included).
    pub fn queued(&self) -> usize {
        self.packages.len()
    }

    /// Sequence numbers still queued or in transmission.
    pub fn queued_seqs(&self) -> Vec<u64> {
        self.packages.iter().map(|p| p.seq).collect()
    }

    /// The largest datagram this sender produces.
    pub fn max_datagram_len(&self) -> usize {
        wire::max_datagram_len(self.config.mtu)
    }

    /// The plan a package of `size` plaintext bytes would be sent with
    /// (for status pages and overhead tables).
    pub fn plan_for(&mut self, size: u64) -> Result<SendPlan, SenderError> {
        let sealed = manifest::sealed_len(size, self.config.chunk_size, self.chunk_overhead);
        Ok(self.planner.plan(sealed)?)
    }

    /// Adds transient transport errors to the counters the heartbeats carry.
    pub fn record_send_errors(&mut self, n: u64) {
        self.stats.send_errors += n;
    }

    /// Seals and queues a package under sequence number `seq`, which must
    /// be above every sequence number used before (the caller persists the
    /// counter so this holds across restarts). The package's bytes are
    /// requested later through [`Transmit::NeedPayload`].
    pub fn enqueue(&mut self, now: Millis, seq: u64, meta: PackageMeta) -> Result<(), SenderError> {
        self.enqueue_resend(now, seq, meta, None)
    }

    /// [`Self::enqueue`] for a package sent before under another sequence
    /// number: `first_seq` (the first one) goes into the signed manifest,
    /// so the egress side can close the gap the first send left.
    pub fn enqueue_resend(
        &mut self,
        now: Millis,
        seq: u64,
        meta: PackageMeta,
        first_seq: Option<u64>,
    ) -> Result<(), SenderError> {
        self.enqueue_sealed(now, seq, meta, first_seq, None)
    }

    /// Queues a bundle (its payload made by [`crate::bundle::encode`]) of
    /// the packages queued under `from_seq..=seq`: one manifest, signed
    /// with that range, so the egress side accepts every member's number
    /// with it. `from_seq` must be below `seq` and above the last number
    /// used.
    pub fn enqueue_bundle(
        &mut self,
        now: Millis,
        from_seq: u64,
        seq: u64,
        meta: PackageMeta,
    ) -> Result<(), SenderError> {
        if let Some(last) = self.last_seq {
            if from_seq <= last {
                return Err(SenderError::SeqNotIncreasing {
                    seq: from_seq,
                    last,
                });
            }
        }
        self.enqueue_sealed(now, seq, meta, None, Some(from_seq))
    }

    fn enqueue_sealed(
        &mut self,
        now: Millis,
        seq: u64,
        meta: PackageMeta,
        first_seq: Option<u64>,
        bundle_from_seq: Option<u64>,
    ) -> Result<(), SenderError> {
        let first_seq = first_seq.filter(|f| *f != seq);
        if let Some(last) = self.last_seq {
            if seq <= last {
                return Err(SenderError::SeqNotIncreasing { seq, last });
            }
        }
        let link = self.keys.link();
        self.epochs
            .advance_to(link, self.config.schedule.epoch_at(now));
        let epoch = self.epochs.current();
        let secret = self
            .epochs
            .secret(epoch)
            .ok_or_else(|| SenderError::Config("no epoch secret held".into()))?;
        let context = package_context(&meta, seq);
        let (cipher, ephemeral) = self.keys.new_package(secret, &context)?;
        self.chunk_overhead = cipher.overhead();
        let sealed_len = manifest::sealed_len(meta.size, self.config.chunk_size, cipher.overhead());
        let plan = self.planner.plan(sealed_len)?;
        let manifest = Manifest {
            meta,
            suite: link.suite(),
            seq,
            epoch,
            chunk_size: self.config.chunk_size,
            block_symbols: plan.block_symbols,
            symbol_size: u16::try_from(self.symbol_size)
                .map_err(|_| SenderError::Config("symbol size".into()))?,
            signing_key_id: self.keys.signing_key_id().to_string(),
            recipient_key_id: self.keys.recipient_key_id().to_string(),
            ephemeral,
            first_seq,
            bundle_from_seq,
        };
        let body = manifest.encode_body()?;
        let signature = self.keys.sign(&Manifest::signing_input(&body))?;
        let signed = Manifest::encode_signed(&body, &signature)?;
        if signed.len() > wire::max_manifest_len(self.config.mtu) {
            return Err(SenderError::Manifest(ManifestError::Field(
                "manifest too large for one datagram",
            )));
        }
        let geometry = Geometry {
            sealed_len,
            symbol_size: self.symbol_size,
            block_symbols: plan.block_symbols,
        };
        self.last_seq = Some(seq);
        self.packages.push_back(Package {
            seq,
            manifest,
            signed,
            cipher,
            geometry,
            plan,
            attempts_done: 0,
            next_attempt_at: now,
        });
        Ok(())
    }

    /// When the sender next has something to do on its own (a heartbeat or
    /// a redundant send), if it is idle before then.
    pub fn poll_timeout(&self) -> Millis {
        let mut t = self.next_heartbeat;
        if self.active.is_none() {
            if let Some(p) = self.packages.iter().map(|p| p.next_attempt_at).min() {
                t = t.min(p);
            }
        }
        t
    }

    fn heartbeat(&self, now: Millis) -> Heartbeat {
        let next_seq = self.last_seq.map_or(0, |s| s + 1);
        Heartbeat {
            sender_time_ms: now.0,
            interval_ms: u32::try_from(self.config.heartbeat_interval_ms).unwrap_or(u32::MAX),
            next_seq,
            // A bundle is active from its first member's number: the
            // receiver must not report its members as gaps before the
            // bundle's manifest has told it the range.
            active_from_seq: self
                .packages
                .iter()
                .map(|p| p.manifest.bundle_from_seq.unwrap_or(p.seq))
                .min()
                .unwrap_or(next_seq),
            packages_sent: self.stats.packages_sent,
            datagrams_sent: self.stats.datagrams,
            send_errors: self.stats.send_errors,
        }
    }

    fn finish(&mut self, out: &mut [u8], common: &CommonHeader, auth_len: usize) -> usize {
        let tag = self
            .epochs
            .mac(common.epoch)
            .map(|m| m.tag(&out[..auth_len]))
            .unwrap_or([0u8; DATAGRAM_TAG_LEN]);
        out[auth_len..auth_len + DATAGRAM_TAG_LEN].copy_from_slice(&tag);
        self.stats.datagrams += 1;
        auth_len + DATAGRAM_TAG_LEN
    }

    /// Produces the next datagram into `out` (which must hold
    /// [`Self::max_datagram_len`] bytes), or says what is needed.
    pub fn poll_transmit(&mut self, now: Millis, out: &mut [u8]) -> Result<Transmit, SenderError> {
        if out.len() < self.max_datagram_len() {
            return Err(SenderError::BufferTooSmall(out.len()));
        }
        self.epochs
            .advance_to(self.keys.link(), self.config.schedule.epoch_at(now));
        let suite = self.keys.link().suite().to_wire();
        if now >= self.next_heartbeat {
            self.next_heartbeat = now.plus(self.config.heartbeat_interval_ms);
            let common = CommonHeader {
                kind: Kind::Heartbeat,
                suite,
                flags: 0,
                link_id: self.link_id,
                epoch: self.epochs.current(),
            };
            let hb = self.heartbeat(now);
            let n = wire::write_heartbeat(out, &common, &hb);
            self.stats.heartbeats += 1;
            return Ok(Transmit::Datagram(self.finish(out, &common, n)));
        }
        loop {
            if self.active.is_none() && !self.start_next(now) {
                return Ok(Transmit::Idle);
            }
            if let Some(index) = self.active.as_ref().map(|a| a.index) {
                let pkg = &self.packages[index];
                if self.epochs.mac(pkg.manifest.epoch).is_none() {
                    // The send outlasted its epoch's grace window: its key
                    // is erased, so it cannot be finished (never sent with
                    // a bogus tag). Counted; an operator resend re-seals it.
                    self.stats.expired_sends +=
                        u64::from(self.config.redundancy.saturating_sub(pkg.attempts_done));
                    self.packages.remove(index);
                    self.active = None;
                    continue;
                }
            }
            let Some(active) = self.active.as_mut() else {
                return Ok(Transmit::Idle);
            };
            if let Some((offset, len)) = active.awaiting {
                let seq = self.packages[active.index].seq;
                return Ok(Transmit::NeedPayload { seq, offset, len });
            }
            let pkg = &self.packages[active.index];
            let common = |kind, flags| CommonHeader {
                kind,
                suite,
                flags,
                link_id: self.link_id,
                epoch: pkg.manifest.epoch,
            };
            let manifest_header = ManifestHeader {
                seq: pkg.seq,
                attempt: active.attempt,
            };
            // Manifest copies other than the trailer go before the data
            // datagram the plan names (copy 0 leads the send).
            if active.copies_sent + 1 < pkg.plan.manifest_copies
                && active.data_sent >= pkg.plan.copy_before(active.copies_sent)
            {
                active.copies_sent += 1;
                let c = common(Kind::Manifest, 0);
                let n = wire::write_manifest(out, &c, &manifest_header, &pkg.signed);
                return Ok(Transmit::Datagram(self.finish(out, &c, n)));
            }
            if active.trailer_due {
                let c = common(Kind::Manifest, wire::FLAG_TRAILER);
                let n = wire::write_manifest(out, &c, &manifest_header, &pkg.signed);
                self.complete_send(now);
                return Ok(Transmit::Datagram(self.finish(out, &c, n)));
            }
            let group_len = (active.span.1 - active.span.0) as usize;
            if active.assembled < group_len {
                // Gather the next block's ciphertext, asking for plaintext
                // chunk by chunk, and encode it.
                self.assemble(Which::Current)?;
                continue;
            }
            if self.ahead_due(group_len) {
                self.assemble(Which::Next)?;
                continue;
            }
            let Some(active) = self.active.as_mut() else {
                return Ok(Transmit::Idle);
            };
            let pkg = &self.packages[active.index];
            // Round robin over the group's blocks: symbol `round` of each
            // block that has one, so two symbols of a block are as far apart
            // as the group is wide.
            let group = &self.blocks[..group_len];
            let next = (active.cursor..group_len)
                .find(|&j| active.round < u32::from(group[j].k) + u32::from(group[j].r));
            let Some(j) = next else {
                let longest = group
                    .iter()
                    .map(|b| u32::from(b.k) + u32::from(b.r))
                    .max()
                    .unwrap_or(0);
                active.round += 1;
                active.cursor = 0;
                if active.round >= longest {
                    active.group += 1;
                    if active.group >= pkg.plan.groups {
                        active.trailer_due = true;
                    } else {
                        // The next group, as far as it was assembled ahead.
                        active.span = pkg.plan.group_span(active.group);
                        active.assembled = active.ahead_assembled;
                        active.ahead_assembled = 0;
                        active.round = 0;
                        active.group_sent = 0;
                        std::mem::swap(&mut self.blocks, &mut self.ahead);
                    }
                }
                continue;
            };
            active.cursor = j + 1;
            let buf = &self.blocks[j];
            let i = active.round as usize;
            let s = self.symbol_size;
            let k = usize::from(buf.k);
            let symbol = if i < k {
                &buf.source[i * s..(i + 1) * s]
            } else {
                self.stats.repair_datagrams += 1;
                &buf.repair[(i - k) * s..(i - k + 1) * s]
            };
            let c = common(Kind::Data, 0);
            let h = DataHeader {
                seq: pkg.seq,
                block: u32::try_from(buf.block).unwrap_or(u32::MAX),
                index: i as u16,
                k: buf.k,
                r: buf.r,
                attempt: active.attempt,
            };
            let n = wire::write_data(out, &c, &h, symbol);
            active.data_sent += 1;
            active.group_sent += 1;
            return Ok(Transmit::Datagram(self.finish(out, &c, n)));
        }
    }

    /// Whether to assemble a block of the next group before the next
    /// datagram of this one: its blocks are spread over the first three
    /// quarters of this group's datagrams, so the next group is ready before
    /// this one ends and the pacer never waits for a whole group's sealing
    /// and encoding (which a paced link would lose: its credit is a few
    /// batches, a group takes milliseconds).
    fn ahead_due(&self, group_len: usize) -> bool {
        let Some(active) = self.active.as_ref() else {
            return false;
        };
        let pkg = &self.packages[active.index];
        if active.group + 1 >= pkg.plan.groups || active.awaiting.is_some() {
            return false;
        }
        let (from, to) = pkg.plan.group_span(active.group + 1);
        let next_len = to - from;
        let ahead = active.ahead_assembled as u64;
        if ahead >= next_len {
            return false;
        }
        let total: u64 = self.blocks[..group_len]
            .iter()
            .map(|b| u64::from(b.k) + u64::from(b.r))
            .sum();
        (ahead + 1) * total * 3 <= (active.group_sent + 1) * next_len * 4
    }

    /// One step of assembling a block: of the group being sent (into
    /// `blocks`) or of the next one (into `ahead`). Asks for the next
    /// plaintext chunk (`awaiting`) while the sealed bytes fall short of the
    /// block, else cuts the block from them and encodes it. The sealed
    /// stream is read in order: the next group starts only once this one is
    /// whole.
    fn assemble(&mut self, which: Which) -> Result<(), SenderError> {
        let Some(active) = self.active.as_mut() else {
            return Ok(());
        };
        let pkg = &self.packages[active.index];
        let (group, slot) = match which {
            Which::Current => (active.group, active.assembled),
            Which::Next => (active.group + 1, active.ahead_assembled),
        };
        let block = pkg.plan.group_span(group).0 + slot as u64;
        let (_, block_len) = pkg.geometry.block_span(block);
        let have = active.sealed.len();
        if have < block_len {
            let size = pkg.manifest.meta.size;
            let want = (size - active.plain_offset).min(u64::from(self.config.chunk_size)) as usize;
            if want == 0 && active.chunk_index == 0 {
                // Empty payload: the single, empty chunk is sealed without
                // asking the caller for anything.
                return self.provide_inner(Vec::new());
            }
            if want == 0 {
                return Err(SenderError::Config(format!(
                    "internal: package {} sealed {} bytes short of its geometry",
                    pkg.seq,
                    block_len - have
                )));
            }
            active.awaiting = Some((active.plain_offset, want));
            return Ok(());
        }
        let k = pkg.geometry.k_of(block);
        let r = pkg.plan.repair_of(block);
        let bufs = match which {
            Which::Current => &mut self.blocks,
            Which::Next => &mut self.ahead,
        };
        if bufs.len() <= slot {
            bufs.resize_with(slot + 1, BlockBuf::default);
        }
        let buf = &mut bufs[slot];
        buf.block = block;
        buf.k = k;
        buf.r = r;
        buf.source.clear();
        buf.source.extend_from_slice(&active.sealed[..block_len]);
        buf.source.resize(usize::from(k) * self.symbol_size, 0);
        active.sealed.drain(..block_len);
        self.encoder
            .encode(&buf.source, k, r, self.symbol_size, &mut buf.repair)?;
        match which {
            Which::Current => active.assembled += 1,
            Which::Next => active.ahead_assembled += 1,
        }
        Ok(())
    }

    fn start_next(&mut self, now: Millis) -> bool {
        let total = self.config.redundancy;
        loop {
            let Some(index) = self
                .packages
                .iter()
                .enumerate()
                .filter(|(_, p)| p.next_attempt_at <= now)
                .min_by_key(|(_, p)| p.seq)
                .map(|(i, _)| i)
            else {
                return false;
            };
            let pkg = &self.packages[index];
            if self.epochs.mac(pkg.manifest.epoch).is_none() {
                // The epoch key was erased (the package waited past the
                // grace window): its remaining sends cannot be made.
                self.stats.expired_sends += u64::from(total - pkg.attempts_done);
                self.packages.remove(index);
                continue;
            }
            self.active = Some(Active {
                index,
                attempt: pkg.attempts_done,
                plain_offset: 0,
                chunk_index: 0,
                awaiting: None,
                sealed: Vec::new(),
                group: 0,
                span: pkg.plan.group_span(0),
                assembled: 0,
                ahead_assembled: 0,
                group_sent: 0,
                round: 0,
                cursor: 0,
                data_sent: 0,
                copies_sent: 0,
                trailer_due: false,
                started: now,
            });
            return true;
        }
    }

    fn complete_send(&mut self, now: Millis) {
        let Some(active) = self.active.take() else {
            return;
        };
        self.stats.sends_completed += 1;
        self.stats.last_send_ms = now.since(active.started);
        let spacing = self.config.redundancy_spacing_ms;
        let total = self.config.redundancy;
        let pkg = &mut self.packages[active.index];
        self.stats.last_send_bytes = pkg.manifest.meta.size;
        if pkg.attempts_done == 0 {
            self.stats.packages_sent += 1;
        }
        pkg.attempts_done += 1;
        if pkg.attempts_done >= total {
            // Dropping the package erases its payload key.
            self.packages.remove(active.index);
        } else {
            pkg.next_attempt_at = now.plus(spacing);
        }
    }

    /// Gives up package `seq` (its payload can no longer be read): it
    /// leaves the queue, and if it is being sent, the rest of that send is
    /// not made. Its payload key goes with it. The heartbeats then say the
    /// sender is past it, and the receiver fails the incomplete send after
    /// its trailer grace, as it fails any send that stops. Returns whether
    /// `seq` was queued.
    pub fn abandon(&mut self, seq: u64) -> bool {
        let Some(index) = self.packages.iter().position(|p| p.seq == seq) else {
            return false;
        };
        match self.active.as_mut() {
            Some(a) if a.index == index => self.active = None,
            // Indices after the removed one shift down by one.
            Some(a) if a.index > index => a.index -= 1,
            _ => {}
        }
        self.packages.remove(index);
        self.stats.abandoned += 1;
        true
    }

    /// Answers a [`Transmit::NeedPayload`] with exactly the bytes asked for.
    pub fn provide_payload(
        &mut self,
        seq: u64,
        offset: u64,
        data: &[u8],
    ) -> Result<(), SenderError> {
        let ok = self.active.as_ref().is_some_and(|a| {
            self.packages[a.index].seq == seq && a.awaiting == Some((offset, data.len()))
        });
        if !ok {
            return Err(SenderError::UnexpectedPayload {
                seq,
                offset,
                len: data.len(),
            });
        }
        self.provide_inner(data.to_vec())
    }

    fn provide_inner(&mut self, mut chunk: Vec<u8>) -> Result<(), SenderError> {
        let Some(active) = self.active.as_mut() else {
            return Ok(());
        };
        let pkg = &self.packages[active.index];
        let len = chunk.len() as u64;
        let total_chunks = manifest::chunk_count(pkg.manifest.meta.size, pkg.manifest.chunk_size);
        let last = active.chunk_index + 1 == total_chunks;
        pkg.cipher
            .seal_chunk(active.chunk_index, last, &mut chunk)?;
        active.sealed.extend_from_slice(&chunk);
        active.chunk_index += 1;
        active.plain_offset += len;
        active.awaiting = None;
        if active.attempt == 0 {
            self.stats.payload_bytes += len;
        }
        Ok(())
    }
}

/// Bytes mixed into the payload key: binds it to the package id and
/// sequence number.
pub fn package_context(meta: &PackageMeta, seq: u64) -> Vec<u8> {
    let mut c = Vec::with_capacity(24);
    c.extend_from_slice(&meta.id.0);
    c.extend_from_slice(&seq.to_be_bytes());
    c
}
