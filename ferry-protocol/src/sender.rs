//! The ingress side's state machine: packages in, datagrams out.
//!
//! The caller enqueues a package's description (its bytes stay in the
//! caller's file), then repeatedly calls [`Sender::poll_transmit`], which
//! either writes the next datagram into the caller's buffer, asks for the
//! next plaintext chunk ([`Transmit::NeedPayload`]), or says there is
//! nothing to do until [`Sender::poll_timeout`]. Memory stays bounded by one
//! FEC block per package in transmission, whatever the package size.
//!
//! Each send of a package is: a manifest, the first symbols, a second
//! manifest copy, the remaining symbols, and a trailer manifest that marks
//! the end of the send. Redundant sends repeat this after a spacing, with
//! an incremented attempt number and byte-identical sealed payload.

use crate::epoch::{EpochChain, EpochSchedule};
use crate::fec::{self, BlockEncoder, FecError, Geometry};
use crate::manifest::{self, Manifest, ManifestError, PackageMeta};
use crate::suite::{CryptoError, PayloadCipher, SealKeys, DATAGRAM_TAG_LEN};
use crate::wire::{self, CommonHeader, DataHeader, Heartbeat, Kind, ManifestHeader};
use crate::Millis;
use std::collections::VecDeque;

/// Default plaintext bytes per sealed chunk.
pub const DEFAULT_CHUNK_SIZE: u32 = 64 * 1024;
/// Largest plaintext chunk (bounds the receiver's chunk buffer).
pub const MAX_CHUNK_SIZE: u32 = 1 << 20;
/// Data datagrams sent before the second manifest copy of a send.
pub const SECOND_MANIFEST_AFTER: u32 = 32;

/// How the sender cuts, protects and paces its output.
#[derive(Debug, Clone)]
pub struct SenderConfig {
    /// Link name (its hash tags every datagram).
    pub link_name: String,
    /// Path MTU; datagrams are at most `mtu - 28` bytes.
    pub mtu: usize,
    /// Source symbols per full FEC block.
    pub block_symbols: u16,
    /// Repair symbols as a percentage of source symbols.
    pub repair_overhead_percent: f64,
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
    /// Transient transport errors reported by the caller.
    pub send_errors: u64,
}

struct Package {
    seq: u64,
    manifest: Manifest,
    signed: Vec<u8>,
    cipher: Box<dyn PayloadCipher>,
    geometry: Geometry,
    attempts_done: u8,
    next_attempt_at: Millis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    LeadingManifest,
    Symbols,
    TrailerManifest,
}

/// The send in progress.
struct Active {
    index: usize,
    attempt: u8,
    phase: Phase,
    plain_offset: u64,
    chunk_index: u64,
    awaiting: Option<(u64, usize)>,
    sealed: Vec<u8>,
    sealed_taken: u64,
    block: u64,
    block_ready: bool,
    k: u16,
    r: u16,
    source: Vec<u8>,
    repair: Vec<u8>,
    next_symbol: u32,
    data_sent: u32,
    second_manifest_sent: bool,
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
        let r = fec::repair_symbols(config.block_symbols, config.repair_overhead_percent);
        if !fec::supported(config.block_symbols, r) {
            return Err(SenderError::Config(format!(
                "block_symbols {} with {}% repair needs {} repair symbols, which the FEC code does not support; lower one of them",
                config.block_symbols, config.repair_overhead_percent, r
            )));
        }
        if config.redundancy == 0 {
            return Err(SenderError::Config("redundancy must be at least 1".into()));
        }
        let symbol_size = wire::symbol_size(config.mtu);
        Ok(Sender {
            link_id: wire::link_id(&config.link_name),
            symbol_size,
            config,
            keys,
            epochs,
            packages: VecDeque::new(),
            active: None,
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
        let manifest = Manifest {
            meta,
            suite: link.suite(),
            seq,
            epoch,
            chunk_size: self.config.chunk_size,
            block_symbols: self.config.block_symbols,
            symbol_size: u16::try_from(self.symbol_size)
                .map_err(|_| SenderError::Config("symbol size".into()))?,
            signing_key_id: self.keys.signing_key_id().to_string(),
            recipient_key_id: self.keys.recipient_key_id().to_string(),
            ephemeral,
            first_seq,
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
            sealed_len: manifest.sealed_len(cipher.overhead()),
            symbol_size: self.symbol_size,
            block_symbols: self.config.block_symbols,
        };
        self.last_seq = Some(seq);
        self.packages.push_back(Package {
            seq,
            manifest,
            signed,
            cipher,
            geometry,
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
            active_from_seq: self
                .packages
                .iter()
                .map(|p| p.seq)
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
            match active.phase {
                Phase::LeadingManifest => {
                    active.phase = Phase::Symbols;
                    let c = common(Kind::Manifest, 0);
                    let h = ManifestHeader {
                        seq: pkg.seq,
                        attempt: active.attempt,
                    };
                    let n = wire::write_manifest(out, &c, &h, &pkg.signed);
                    return Ok(Transmit::Datagram(self.finish(out, &c, n)));
                }
                Phase::TrailerManifest => {
                    let c = common(Kind::Manifest, wire::FLAG_TRAILER);
                    let h = ManifestHeader {
                        seq: pkg.seq,
                        attempt: active.attempt,
                    };
                    let n = wire::write_manifest(out, &c, &h, &pkg.signed);
                    self.complete_send(now);
                    return Ok(Transmit::Datagram(self.finish(out, &c, n)));
                }
                Phase::Symbols => {}
            }
            if active.data_sent == SECOND_MANIFEST_AFTER && !active.second_manifest_sent {
                active.second_manifest_sent = true;
                let c = common(Kind::Manifest, 0);
                let h = ManifestHeader {
                    seq: pkg.seq,
                    attempt: active.attempt,
                };
                let n = wire::write_manifest(out, &c, &h, &pkg.signed);
                return Ok(Transmit::Datagram(self.finish(out, &c, n)));
            }
            if !active.block_ready {
                // Gather the block's ciphertext, asking for plaintext chunk
                // by chunk.
                let (_, block_len) = pkg.geometry.block_span(active.block);
                let have = active.sealed.len();
                if have < block_len {
                    let size = pkg.manifest.meta.size;
                    let want = (size - active.plain_offset).min(u64::from(self.config.chunk_size))
                        as usize;
                    if want == 0 && active.chunk_index == 0 {
                        // Empty payload: the single, empty chunk is sealed
                        // without asking the caller for anything.
                        self.provide_inner(Vec::new())?;
                    } else if want == 0 {
                        return Err(SenderError::Config(format!(
                            "internal: package {} sealed {} bytes short of its geometry",
                            pkg.seq,
                            block_len - have
                        )));
                    } else {
                        active.awaiting = Some((active.plain_offset, want));
                    }
                    continue;
                }
                let k = pkg.geometry.k_of(active.block);
                let r = fec::repair_symbols(k, self.config.repair_overhead_percent);
                active.source.clear();
                active.source.extend_from_slice(&active.sealed[..block_len]);
                active.source.resize(usize::from(k) * self.symbol_size, 0);
                active.sealed.drain(..block_len);
                active.sealed_taken += block_len as u64;
                self.encoder
                    .encode(&active.source, k, r, self.symbol_size, &mut active.repair)?;
                active.k = k;
                active.r = r;
                active.next_symbol = 0;
                active.block_ready = true;
            }
            let i = active.next_symbol as usize;
            let s = self.symbol_size;
            let k = usize::from(active.k);
            let symbol = if i < k {
                &active.source[i * s..(i + 1) * s]
            } else {
                self.stats.repair_datagrams += 1;
                &active.repair[(i - k) * s..(i - k + 1) * s]
            };
            let c = common(Kind::Data, 0);
            let h = DataHeader {
                seq: pkg.seq,
                block: u32::try_from(active.block).unwrap_or(u32::MAX),
                index: i as u16,
                k: active.k,
                r: active.r,
                attempt: active.attempt,
            };
            let n = wire::write_data(out, &c, &h, symbol);
            active.next_symbol += 1;
            active.data_sent = active.data_sent.saturating_add(1);
            if active.next_symbol >= u32::from(active.k) + u32::from(active.r) {
                active.block_ready = false;
                active.block += 1;
                if active.block >= pkg.geometry.blocks() {
                    active.phase = Phase::TrailerManifest;
                }
            }
            return Ok(Transmit::Datagram(self.finish(out, &c, n)));
        }
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
                phase: Phase::LeadingManifest,
                plain_offset: 0,
                chunk_index: 0,
                awaiting: None,
                sealed: Vec::new(),
                sealed_taken: 0,
                block: 0,
                block_ready: false,
                k: 0,
                r: 0,
                source: Vec::new(),
                repair: Vec::new(),
                next_symbol: 0,
                data_sent: 0,
                second_manifest_sent: false,
            });
            return true;
        }
    }

    fn complete_send(&mut self, now: Millis) {
        let Some(active) = self.active.take() else {
            return;
        };
        self.stats.sends_completed += 1;
        let spacing = self.config.redundancy_spacing_ms;
        let total = self.config.redundancy;
        let pkg = &mut self.packages[active.index];
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
