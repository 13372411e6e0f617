//! The log's keys: the forward-evolving seal key (the journald FSS idea) that
//! lives on the host, the Ed25519 checkpoint key, and the auditor's verify key
//! (epoch-0 seal secret + checkpoint public key) that is taken off the host.
//!
//! The seal key for epoch e+1 is HMAC(K_e, "evolve"), and K_e is erased from
//! memory and from the key file once the seal made with it is on disk. Each
//! seal's MAC is computed with its own epoch's key *and* names the epoch in
//! the MAC input, so a seal cannot be moved to another epoch (the lesson of
//! journald's CVE-2023-31439, where tags were not bound to their epoch).

use crate::error::AuditError;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use zeroize::{Zeroize, Zeroizing};

const EVOLVE_LABEL: &[u8] = b"ferry-audit seal key evolve v1";
const SEAL_LABEL: &[u8] = b"ferry-audit seal v1";
const KEY_ID_LABEL: &[u8] = b"ferry-audit key id v1";
const CHECKPOINT_LABEL: &[u8] = b"ferry-audit checkpoint v1";

/// A seal key for one epoch. Debug never shows the secret.
pub struct SealKey {
    epoch: u64,
    key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealKey")
            .field("epoch", &self.epoch)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl SealKey {
    /// The epoch-0 key from its 32 secret bytes.
    pub fn from_epoch0(secret: [u8; 32]) -> Self {
        SealKey {
            epoch: 0,
            key: Zeroizing::new(secret),
        }
    }

    /// The epoch this key seals.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Moves to the next epoch; the old key bytes are overwritten.
    pub fn evolve(&mut self) {
        let k = hmac::Key::new(hmac::HMAC_SHA256, &self.key[..]);
        let tag = hmac::sign(&k, EVOLVE_LABEL);
        self.key.copy_from_slice(tag.as_ref());
        self.epoch += 1;
    }

    /// Evolves until `epoch` (no-op if already there or past).
    pub fn evolve_to(&mut self, epoch: u64) {
        while self.epoch < epoch {
            self.evolve();
        }
    }

    /// The seal MAC over (log id, epoch, sealed-through seq, head hash).
    pub fn seal_mac(&self, log_id: &[u8; 16], through_seq: u64, head: &[u8; 32]) -> [u8; 32] {
        let k = hmac::Key::new(hmac::HMAC_SHA256, &self.key[..]);
        let mut ctx = hmac::Context::with_key(&k);
        ctx.update(SEAL_LABEL);
        ctx.update(log_id);
        ctx.update(&self.epoch.to_le_bytes());
        ctx.update(&through_seq.to_le_bytes());
        ctx.update(head);
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.sign().as_ref());
        out
    }

    /// Constant-time check of a seal MAC.
    pub fn check_mac(
        &self,
        log_id: &[u8; 16],
        through_seq: u64,
        head: &[u8; 32],
        mac: &[u8; 32],
    ) -> bool {
        let k = hmac::Key::new(hmac::HMAC_SHA256, &self.key[..]);
        let mut msg = Vec::with_capacity(SEAL_LABEL.len() + 16 + 8 + 8 + 32);
        msg.extend_from_slice(SEAL_LABEL);
        msg.extend_from_slice(log_id);
        msg.extend_from_slice(&self.epoch.to_le_bytes());
        msg.extend_from_slice(&through_seq.to_le_bytes());
        msg.extend_from_slice(head);
        hmac::verify(&k, &msg, mac).is_ok()
    }

    /// A second copy, for the key file write that follows the seal; it is
    /// zeroized on drop like the first.
    pub(crate) fn duplicate(&self) -> SealKey {
        SealKey {
            epoch: self.epoch,
            key: Zeroizing::new(*self.key),
        }
    }

    fn secret(&self) -> &[u8; 32] {
        &self.key
    }
}

/// The id of a verify key, written in every segment header so that `verify`
/// can tell "wrong key" from "tampered log". It is a one-way hash: it does
/// not reveal the epoch-0 secret.
pub fn key_id(epoch0: &[u8; 32], checkpoint_public: &[u8]) -> [u8; 16] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(KEY_ID_LABEL);
    ctx.update(epoch0);
    ctx.update(checkpoint_public);
    let d = ctx.finish();
    let mut out = [0u8; 16];
    out.copy_from_slice(&d.as_ref()[..16]);
    out
}

/// Fills a buffer from the system's secure random source.
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], AuditError> {
    let mut b = [0u8; N];
    SystemRandom::new().fill(&mut b).map_err(|_| {
        AuditError::Usage("the system random source failed; cannot create keys".into())
    })?;
    Ok(b)
}

// ---------------------------------------------------------------------------
// The host's seal key file: two fixed slots written alternately, so a crash
// while writing one leaves the other valid; once the new slot is on disk the
// old one is overwritten with zeros (erasure of the past key).
//
// Version 2 (this one) binds every slot to the log id, so that the writer
// can refuse another log's key file instead of sealing with it, and keeps
// the writer key (the keyed chain's HMAC key) in a third fixed region:
//
//   slot 0, slot 1: "FASEALK2" | epoch u64 | key[32] | log id[16] | SHA-256 of the 64 bytes before
//   writer region:  "FAWRITK2" | log id[16] | writer key[32] | zeros[8] | SHA-256 of the 64 bytes before
//
// The region is all zeros for a v1 (keyless) log. A version 1 file (two
// 64-byte "FASEALK1" slots, no log id) is rewritten as version 2 bound to
// the log that opens it, once (see `migrate_v1`).

const SLOT_LEN_V1: usize = 64;
const SLOT_MAGIC_V1: &[u8; 8] = b"FASEALK1";
const SLOT_LEN: usize = 96;
const SLOT_MAGIC: &[u8; 8] = b"FASEALK2";
const WRITER_MAGIC: &[u8; 8] = b"FAWRITK2";
const FILE_LEN: usize = 3 * SLOT_LEN;
/// Largest verify-key file read (it is one line; a larger file is a wrong path).
const KEY_FILE_MAX_BYTES: u64 = 64 * 1024;
const WRITER_KEY_LABEL: &[u8] = b"ferry-audit writer key v2";

/// The writer key of a v2 log: `HMAC-SHA-256(K_0, label || log id)`. The
/// host keeps it (it must append); the auditor derives it from the verify
/// key; it does not reveal `K_0`.
pub(crate) fn derive_writer_key(epoch0: &[u8; 32], log_id: &[u8; 16]) -> Zeroizing<[u8; 32]> {
    let k = hmac::Key::new(hmac::HMAC_SHA256, epoch0);
    let mut ctx = hmac::Context::with_key(&k);
    ctx.update(WRITER_KEY_LABEL);
    ctx.update(log_id);
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(ctx.sign().as_ref());
    out
}

fn checksum32(b: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, b);
    let mut o = [0u8; 32];
    o.copy_from_slice(d.as_ref());
    o
}

fn encode_slot(key: &SealKey, log_id: &[u8; 16]) -> Zeroizing<[u8; SLOT_LEN]> {
    let mut s = Zeroizing::new([0u8; SLOT_LEN]);
    s[..8].copy_from_slice(SLOT_MAGIC);
    s[8..16].copy_from_slice(&key.epoch.to_le_bytes());
    s[16..48].copy_from_slice(key.secret());
    s[48..64].copy_from_slice(log_id);
    let c = checksum32(&s[..64]);
    s[64..96].copy_from_slice(&c);
    s
}

/// A slot that checks, and the log it is bound to.
fn decode_slot(s: &[u8]) -> Option<(SealKey, [u8; 16])> {
    if s.len() != SLOT_LEN || &s[..8] != SLOT_MAGIC || checksum32(&s[..64])[..] != s[64..96] {
        return None;
    }
    let epoch = u64::from_le_bytes(s[8..16].try_into().ok()?);
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(&s[16..48]);
    Some((SealKey { epoch, key }, s[48..64].try_into().ok()?))
}

fn decode_slot_v1(s: &[u8]) -> Option<SealKey> {
    if s.len() != SLOT_LEN_V1 || &s[..8] != SLOT_MAGIC_V1 {
        return None;
    }
    let d = ring::digest::digest(&ring::digest::SHA256, &s[..48]);
    if d.as_ref()[..16] != s[48..64] {
        return None;
    }
    let epoch = u64::from_le_bytes(s[8..16].try_into().ok()?);
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(&s[16..48]);
    Some(SealKey { epoch, key })
}

fn encode_writer(writer: Option<&[u8; 32]>, log_id: &[u8; 16]) -> Zeroizing<[u8; SLOT_LEN]> {
    let mut s = Zeroizing::new([0u8; SLOT_LEN]);
    if let Some(w) = writer {
        s[..8].copy_from_slice(WRITER_MAGIC);
        s[8..24].copy_from_slice(log_id);
        s[24..56].copy_from_slice(w);
        let c = checksum32(&s[..64]);
        s[64..96].copy_from_slice(&c);
    }
    s
}

/// Refuses a private key file that group or others may read or write.
pub(crate) fn check_private_mode(path: &Path, file: &File) -> Result<(), AuditError> {
    let meta = file
        .metadata()
        .map_err(|e| AuditError::io("reading the mode of", path, e))?;
    // A FIFO or device in the key's place would block or feed the reader
    // without end: only a regular file is a key.
    if !meta.is_file() {
        return Err(AuditError::SealKey {
            path: path.to_path_buf(),
            reason: "not a regular file; put the key file itself at this path".into(),
        });
    }
    ferry_common::private_file::check_mode(path, &meta).map_err(|e| match e {
        ferry_common::private_file::PrivateFileError::LoosePermissions { path, mode } => {
            AuditError::KeyMode { path, mode }
        }
        other => AuditError::SealKey {
            path: path.to_path_buf(),
            reason: other.to_string(),
        },
    })
}

/// What [`SealKeyFile::open`] found.
pub(crate) struct OpenedKeys {
    pub(crate) file: SealKeyFile,
    pub(crate) seal: SealKey,
    /// The writer key; `None` for a v1 (keyless) log.
    pub(crate) writer: Option<Zeroizing<[u8; 32]>>,
}

/// The evolving seal key file on the host, bound to one log.
pub(crate) struct SealKeyFile {
    path: PathBuf,
    file: File,
    log_id: [u8; 16],
}

impl SealKeyFile {
    /// Creates the file holding epoch 0 and, for a v2 log, the writer key
    /// (mode 0600).
    pub(crate) fn create(
        path: &Path,
        key: &SealKey,
        log_id: &[u8; 16],
        writer: Option<&[u8; 32]>,
    ) -> Result<Self, AuditError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| AuditError::io("creating seal key", path, e))?;
        let mut f = SealKeyFile {
            path: path.to_path_buf(),
            file,
            log_id: *log_id,
        };
        f.write_at(0, &file_bytes(key, log_id, writer)[..])?;
        Ok(f)
    }

    /// Opens the file of the log `log_id` and returns the newest valid key
    /// (erasing a stale slot) and the writer key. Refuses a file that others
    /// may read or write, and one bound to another log.
    pub(crate) fn open(path: &Path, log_id: &[u8; 16]) -> Result<OpenedKeys, AuditError> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| AuditError::io("opening seal key", path, e))?;
        check_private_mode(path, &file)?;
        let mut raw = Zeroizing::new(Vec::with_capacity(FILE_LEN));
        file.read_to_end(&mut raw)
            .map_err(|e| AuditError::io("reading seal key", path, e))?;
        let bad = |reason: &str| AuditError::SealKey {
            path: path.to_path_buf(),
            reason: reason.into(),
        };
        if raw.len() == 2 * SLOT_LEN_V1
            && (raw.starts_with(SLOT_MAGIC_V1)
                || raw.get(SLOT_LEN_V1..SLOT_LEN_V1 + 8) == Some(&SLOT_MAGIC_V1[..]))
        {
            drop(file);
            migrate_v1(path, &raw, log_id)?;
            return SealKeyFile::open(path, log_id);
        }
        if raw.len() != FILE_LEN {
            return Err(bad("not a ferry seal key file (wrong length)"));
        }
        let a = decode_slot(&raw[..SLOT_LEN]);
        let b = decode_slot(&raw[SLOT_LEN..2 * SLOT_LEN]);
        for (k, id) in [&a, &b].into_iter().flatten() {
            if id != log_id {
                return Err(AuditError::KeyMismatch {
                    path: path.to_path_buf(),
                    reason: format!(
                        "this seal key (epoch {}) belongs to audit log {}, not to this log {}",
                        k.epoch,
                        hex::encode(id),
                        hex::encode(log_id)
                    ),
                });
            }
        }
        let mut f = SealKeyFile {
            path: path.to_path_buf(),
            file,
            log_id: *log_id,
        };
        let (seal, stale_slot) = match (a, b) {
            (Some((a, _)), Some((b, _))) if a.epoch >= b.epoch => (a, Some(1)),
            (Some(_), Some((b, _))) => (b, Some(0)),
            (Some((a, _)), None) => (a, None),
            (None, Some((b, _))) => (b, None),
            (None, None) => return Err(bad("no valid key slot")),
        };
        if let Some(slot) = stale_slot {
            f.write_at((slot * SLOT_LEN) as u64, &[0u8; SLOT_LEN])?;
        }
        let w = &raw[2 * SLOT_LEN..];
        let writer = if w.iter().all(|b| *b == 0) {
            None
        } else {
            if &w[..8] != WRITER_MAGIC || checksum32(&w[..64])[..] != w[64..96] {
                return Err(bad("the writer key region is damaged"));
            }
            if &w[8..24] != log_id {
                return Err(AuditError::KeyMismatch {
                    path: path.to_path_buf(),
                    reason: format!(
                        "its writer key belongs to audit log {}, not to this log {}",
                        hex::encode(&w[8..24]),
                        hex::encode(log_id)
                    ),
                });
            }
            let mut k = Zeroizing::new([0u8; 32]);
            k.copy_from_slice(&w[24..56]);
            Some(k)
        };
        Ok(OpenedKeys {
            file: f,
            seal,
            writer,
        })
    }

    /// Stores `key` (a later epoch) and erases the previous one.
    pub(crate) fn store(&mut self, key: &SealKey) -> Result<(), AuditError> {
        // The slot for epoch e is e % 2: the new key never overwrites the
        // only valid copy of the current one.
        let slot = (key.epoch % 2) as usize;
        let enc = encode_slot(key, &self.log_id);
        self.write_at((slot * SLOT_LEN) as u64, &enc[..])?;
        self.write_at(((1 - slot) * SLOT_LEN) as u64, &[0u8; SLOT_LEN])
    }

    fn write_at(&mut self, off: u64, bytes: &[u8]) -> Result<(), AuditError> {
        let p = &self.path;
        self.file
            .seek(SeekFrom::Start(off))
            .and_then(|_| self.file.write_all(bytes))
            .and_then(|_| self.file.sync_data())
            .map_err(|e| AuditError::io("writing seal key", p, e))
    }
}

fn file_bytes(
    key: &SealKey,
    log_id: &[u8; 16],
    writer: Option<&[u8; 32]>,
) -> Zeroizing<[u8; FILE_LEN]> {
    let mut buf = Zeroizing::new([0u8; FILE_LEN]);
    let slot = (key.epoch % 2) as usize;
    buf[slot * SLOT_LEN..(slot + 1) * SLOT_LEN].copy_from_slice(&encode_slot(key, log_id)[..]);
    buf[2 * SLOT_LEN..].copy_from_slice(&encode_writer(writer, log_id)[..]);
    buf
}

/// Rewrites a version 1 key file (no log id, no writer key: a v1 log) as
/// version 2 bound to `log_id`, through a temporary file and a rename so a
/// crash leaves one of the two whole. The binding is trust on first use: a
/// v1 file names no log, so the epoch check against the log
/// (`AuditLog::open`) is what catches a foreign one here.
fn migrate_v1(path: &Path, raw: &[u8], log_id: &[u8; 16]) -> Result<(), AuditError> {
    let a = raw.get(..SLOT_LEN_V1).and_then(decode_slot_v1);
    let b = raw
        .get(SLOT_LEN_V1..2 * SLOT_LEN_V1)
        .and_then(decode_slot_v1);
    let key = match (a, b) {
        (Some(a), Some(b)) => {
            if a.epoch >= b.epoch {
                a
            } else {
                b
            }
        }
        (Some(k), None) | (None, Some(k)) => k,
        (None, None) => {
            return Err(AuditError::SealKey {
                path: path.to_path_buf(),
                reason: "no valid key slot".into(),
            })
        }
    };
    ferry_common::durable::write(
        path,
        &file_bytes(&key, log_id, None)[..],
        0o600,
        ferry_common::durable::Replace::Atomically,
    )
    .map_err(AuditError::write)
}

// ---------------------------------------------------------------------------
// Checkpoints

/// A signed statement "the log's head at `seq` is `head`", made at each seal
/// and sent off the host (syslog/journald, the auditor's copy) so that
/// truncation or rewriting of the log is caught against an outside copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The log's random id (hex).
    pub log_id: String,
    /// Sequence number of the last record covered.
    pub seq: u64,
    /// Chain hash after that record (hex).
    pub head: String,
    /// Seal epoch at which it was made.
    pub epoch: u64,
    /// Time it was made, ms since the Unix epoch (UTC).
    pub time_ms: i64,
    /// Ed25519 signature (hex).
    pub sig: String,
}

impl Checkpoint {
    fn signed_bytes(log_id: &str, seq: u64, head: &str, epoch: u64, time_ms: i64) -> Vec<u8> {
        let mut m = Vec::with_capacity(160);
        m.extend_from_slice(CHECKPOINT_LABEL);
        m.extend_from_slice(log_id.as_bytes());
        m.push(0);
        m.extend_from_slice(&seq.to_le_bytes());
        m.extend_from_slice(head.as_bytes());
        m.push(0);
        m.extend_from_slice(&epoch.to_le_bytes());
        m.extend_from_slice(&time_ms.to_le_bytes());
        m
    }

    /// Checks the signature against the checkpoint public key.
    pub fn signature_ok(&self, public: &[u8]) -> bool {
        let Ok(sig) = hex::decode(&self.sig) else {
            return false;
        };
        let msg = Self::signed_bytes(&self.log_id, self.seq, &self.head, self.epoch, self.time_ms);
        UnparsedPublicKey::new(&ED25519, public)
            .verify(&msg, &sig)
            .is_ok()
    }

    /// One RFC 5424 syslog line (without transport framing) for journald/syslog.
    pub fn to_syslog(&self, hostname: &str) -> String {
        format!(
            "<110>1 {} {} ferry-audit - checkpoint [ferryAudit@32473 seq=\"{}\" head=\"{}\" epoch=\"{}\"] {}",
            crate::time_fmt::rfc3339(self.time_ms),
            hostname,
            self.seq,
            self.head,
            self.epoch,
            serde_json::to_string(self).unwrap_or_default()
        )
    }
}

/// The host's Ed25519 checkpoint signer (PKCS#8 in a 0600 file).
pub(crate) struct CheckpointSigner {
    pair: Ed25519KeyPair,
}

impl CheckpointSigner {
    pub(crate) fn generate(path: &Path) -> Result<(Self, Vec<u8>), AuditError> {
        let rng = SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| AuditError::Usage("could not generate the checkpoint key".into()))?;
        let doc = Zeroizing::new(pkcs8.as_ref().to_vec());
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| AuditError::io("creating checkpoint key", path, e))?;
        f.write_all(&doc)
            .and_then(|_| f.sync_all())
            .map_err(|e| AuditError::io("writing checkpoint key", path, e))?;
        let pair = Ed25519KeyPair::from_pkcs8(&doc).map_err(|_| AuditError::SealKey {
            path: path.to_path_buf(),
            reason: "generated checkpoint key does not parse".into(),
        })?;
        let public = pair.public_key().as_ref().to_vec();
        Ok((CheckpointSigner { pair }, public))
    }

    pub(crate) fn load(path: &Path) -> Result<Self, AuditError> {
        let mut file = ferry_regular_file::open_regular(path)
            .map_err(|e| AuditError::io("reading checkpoint key", path, e))?;
        check_private_mode(path, &file)?;
        let mut doc = Zeroizing::new(Vec::new());
        file.read_to_end(&mut doc)
            .map_err(|e| AuditError::io("reading checkpoint key", path, e))?;
        let pair = Ed25519KeyPair::from_pkcs8(&doc).map_err(|_| AuditError::SealKey {
            path: path.to_path_buf(),
            reason: "checkpoint key is not an Ed25519 PKCS#8 document".into(),
        })?;
        Ok(CheckpointSigner { pair })
    }

    pub(crate) fn sign(
        &self,
        log_id: &[u8; 16],
        seq: u64,
        head: &[u8; 32],
        epoch: u64,
        time_ms: i64,
    ) -> Checkpoint {
        let log_id = hex::encode(log_id);
        let head = hex::encode(head);
        let msg = Checkpoint::signed_bytes(&log_id, seq, &head, epoch, time_ms);
        let sig = hex::encode(self.pair.sign(&msg).as_ref());
        Checkpoint {
            log_id,
            seq,
            head,
            epoch,
            time_ms,
            sig,
        }
    }
}

// ---------------------------------------------------------------------------
// The auditor's verify key

/// What the auditor holds to verify a log: the epoch-0 seal secret (keep it
/// offline: whoever has it can forge seals) and the checkpoint public key.
pub struct VerifyKey {
    /// The log this key belongs to.
    pub log_id: [u8; 16],
    epoch0: Zeroizing<[u8; 32]>,
    /// Ed25519 public key of the checkpoints.
    pub checkpoint_public: Vec<u8>,
    /// The log is a v2 log: every segment must be chained with the writer
    /// key (a keyless segment in it is a downgrade, hence tampering).
    keyed: bool,
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyKey")
            .field("log_id", &hex::encode(self.log_id))
            .field("epoch0", &"<redacted>")
            .field("checkpoint_public", &hex::encode(&self.checkpoint_public))
            .field("keyed", &self.keyed)
            .finish()
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyKeyFile {
    format: String,
    log_id: String,
    seal_key_epoch0: String,
    checkpoint_public_key: String,
}

const VERIFY_KEY_FORMAT_V1: &str = "ferry-audit-verify-key-v1";
/// The key of a v2 log (keyed chain).
const VERIFY_KEY_FORMAT: &str = "ferry-audit-verify-key-v2";

impl VerifyKey {
    pub(crate) fn new(
        log_id: [u8; 16],
        epoch0: [u8; 32],
        checkpoint_public: Vec<u8>,
        keyed: bool,
    ) -> Self {
        VerifyKey {
            log_id,
            epoch0: Zeroizing::new(epoch0),
            checkpoint_public,
            keyed,
        }
    }

    /// Whether the log is a v2 log (keyed chain in every segment).
    pub fn keyed(&self) -> bool {
        self.keyed
    }

    /// The keyed chain of this log's v2 segments (the writer key derived
    /// from the epoch-0 secret). Whoever holds the verify key can extend
    /// the log: it stays offline, like the seal secret it contains.
    pub fn chain(&self) -> crate::segment::Chain {
        crate::segment::Chain::Keyed(derive_writer_key(&self.epoch0, &self.log_id))
    }

    /// The writer key (the chain key of a v2 log).
    pub(crate) fn writer_key(&self) -> Zeroizing<[u8; 32]> {
        derive_writer_key(&self.epoch0, &self.log_id)
    }

    /// The key id recorded in segment headers.
    pub fn key_id(&self) -> [u8; 16] {
        key_id(&self.epoch0, &self.checkpoint_public)
    }

    /// The seal key of epoch 0.
    pub fn seal_key(&self) -> SealKey {
        SealKey::from_epoch0(*self.epoch0)
    }

    /// The file text (JSON). Contains the secret: write it to a 0600 file.
    pub fn to_file_text(&self) -> Zeroizing<String> {
        let f = VerifyKeyFile {
            format: if self.keyed {
                VERIFY_KEY_FORMAT
            } else {
                VERIFY_KEY_FORMAT_V1
            }
            .into(),
            log_id: hex::encode(self.log_id),
            seal_key_epoch0: hex::encode(&self.epoch0[..]),
            checkpoint_public_key: hex::encode(&self.checkpoint_public),
        };
        let mut s = serde_json::to_string_pretty(&f).unwrap_or_default();
        s.push('\n');
        let out = Zeroizing::new(s);
        let mut secret = f.seal_key_epoch0;
        secret.zeroize();
        out
    }

    /// Writes the key to `path` (mode 0600, must not exist).
    pub fn write(&self, path: &Path) -> Result<(), AuditError> {
        let text = self.to_file_text();
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| AuditError::io("creating verify key", path, e))?;
        f.write_all(text.as_bytes())
            .and_then(|_| f.sync_all())
            .map_err(|e| AuditError::io("writing verify key", path, e))
    }

    /// Reads a verify key file.
    pub fn read(path: &Path) -> Result<VerifyKey, AuditError> {
        let text = Zeroizing::new(
            ferry_regular_file::read_regular_string(path, KEY_FILE_MAX_BYTES)
                .map_err(|e| AuditError::io("reading verify key", path, e))?,
        );
        let bad = |reason: &str| AuditError::VerifyKey {
            path: path.to_path_buf(),
            reason: reason.into(),
        };
        let mut f: VerifyKeyFile =
            serde_json::from_str(&text).map_err(|_| bad("not a ferry-audit verify key (JSON)"))?;
        let keyed = match f.format.as_str() {
            VERIFY_KEY_FORMAT => true,
            VERIFY_KEY_FORMAT_V1 => false,
            _ => return Err(bad("unknown format")),
        };
        let log_id: [u8; 16] = hex::decode(&f.log_id)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| bad("log_id is not 16 hex bytes"))?;
        let secret = Zeroizing::new(
            hex::decode(&f.seal_key_epoch0).map_err(|_| bad("seal_key_epoch0 is not hex"))?,
        );
        f.seal_key_epoch0.zeroize();
        if secret.len() != 32 {
            return Err(bad("seal_key_epoch0 is not 32 bytes"));
        }
        let mut epoch0 = [0u8; 32];
        epoch0.copy_from_slice(&secret);
        let public = hex::decode(&f.checkpoint_public_key)
            .map_err(|_| bad("checkpoint_public_key is not hex"))?;
        if public.len() != 32 {
            return Err(bad("checkpoint_public_key is not 32 bytes"));
        }
        let k = VerifyKey::new(log_id, epoch0, public, keyed);
        epoch0.zeroize();
        Ok(k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_is_bound_to_its_epoch() {
        let mut k = SealKey::from_epoch0([7u8; 32]);
        let id = [1u8; 16];
        let head = [2u8; 32];
        let mac0 = k.seal_mac(&id, 10, &head);
        assert!(k.check_mac(&id, 10, &head, &mac0));
        k.evolve();
        // The same MAC does not check under epoch 1.
        assert!(!k.check_mac(&id, 10, &head, &mac0));
    }

    #[test]
    fn key_file_keeps_newest_and_erases_old() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("seal.key");
        let mut k = SealKey::from_epoch0([9u8; 32]);
        let id = [4u8; 16];
        let mut f = SealKeyFile::create(&p, &k, &id, Some(&[5u8; 32])).unwrap();
        k.evolve();
        f.store(&k).unwrap();
        let raw = std::fs::read(&p).unwrap();
        // Slot 0 (epoch 0) is zeroed.
        assert!(raw[..SLOT_LEN].iter().all(|b| *b == 0));
        let loaded = SealKeyFile::open(&p, &id).unwrap();
        assert_eq!(loaded.seal.epoch(), 1);
        assert_eq!(loaded.seal.secret(), k.secret());
        assert_eq!(loaded.writer.as_deref(), Some(&[5u8; 32]));
    }

    /// Promise (F25): a seal key file bound to another log is refused, not
    /// used to seal this one.
    #[test]
    fn key_file_of_another_log_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("seal.key");
        let k = SealKey::from_epoch0([9u8; 32]);
        drop(SealKeyFile::create(&p, &k, &[4u8; 16], Some(&[5u8; 32])).unwrap());
        match SealKeyFile::open(&p, &[6u8; 16]) {
            Err(AuditError::KeyMismatch { reason, .. }) => {
                assert!(reason.contains("belongs to audit log 0404"), "{reason}")
            }
            Err(e) => panic!("wrong error: {e}"),
            Ok(_) => panic!("another log's seal key was accepted"),
        }
    }

    /// Promise (F24): a key file others may read is refused.
    #[test]
    fn loose_key_file_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("seal.key");
        drop(SealKeyFile::create(&p, &SealKey::from_epoch0([1u8; 32]), &[4u8; 16], None).unwrap());
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(matches!(
            SealKeyFile::open(&p, &[4u8; 16]),
            Err(AuditError::KeyMode { mode: 0o640, .. })
        ));
    }

    /// A version 1 key file (no log id) is rewritten bound to its log, and
    /// keeps its newest key.
    #[test]
    fn v1_key_file_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("seal.key");
        let mut k = SealKey::from_epoch0([3u8; 32]);
        k.evolve_to(3);
        let mut s = [0u8; SLOT_LEN_V1];
        s[..8].copy_from_slice(SLOT_MAGIC_V1);
        s[8..16].copy_from_slice(&3u64.to_le_bytes());
        s[16..48].copy_from_slice(k.secret());
        let d = ring::digest::digest(&ring::digest::SHA256, &s[..48]);
        s[48..64].copy_from_slice(&d.as_ref()[..16]);
        let mut raw = vec![0u8; 2 * SLOT_LEN_V1];
        raw[SLOT_LEN_V1..].copy_from_slice(&s);
        std::fs::write(&p, &raw).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let o = SealKeyFile::open(&p, &[8u8; 16]).unwrap();
        assert_eq!(o.seal.epoch(), 3);
        assert_eq!(o.seal.secret(), k.secret());
        assert!(o.writer.is_none());
        assert_eq!(std::fs::read(&p).unwrap().len(), FILE_LEN);
        assert!(matches!(
            SealKeyFile::open(&p, &[9u8; 16]),
            Err(AuditError::KeyMismatch { .. })
        ));
    }
}
