//! The on-disk layout of segment files, shared by the writer, the verifier
//! and the readers.
//!
//! A segment is a 96-byte header followed by frames. Every frame carries the
//! chain hash `H_i = SHA-256(H_{i-1} || frame bytes)`; the chain starts at
//! `SHA-256(label || header)` and the header holds the previous segment's
//! last hash, so the chain runs unbroken across segments. Rotated segments
//! are archived as gzip files made of independent members of
//! [`MEMBER_BYTES`] uncompressed bytes each, so a reader can seek into them.

use crate::error::AuditError;
use ring::digest::{Context, SHA256};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Magic at the start of every segment of a v1 log (keyless SHA-256 chain).
pub const SEGMENT_MAGIC: &[u8; 8] = b"FERRYAU1";
/// Magic at the start of every segment of a v2 log (keyed chain: each hash
/// is an HMAC under the writer key, so only the writer can extend the log).
pub const SEGMENT_MAGIC_KEYED: &[u8; 8] = b"FERRYAU2";
/// Size of a segment header.
pub const HEADER_LEN: usize = 96;
/// First byte of every frame.
pub const FRAME_MARKER: u8 = 0xFA;
/// Frame bytes before the payload: marker, kind, seq, time, len.
pub const FRAME_HEAD_LEN: usize = 1 + 1 + 8 + 8 + 4;
/// Largest payload a frame may carry (a record's JSON).
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;
/// Uncompressed bytes per gzip member in archived segments.
pub const MEMBER_BYTES: usize = 1 << 20;
/// Payload length of a seal frame.
pub const SEAL_PAYLOAD_LEN: usize = 8 + 32 + 32;

const CHAIN_LABEL: &[u8] = b"ferry-audit segment v1";

/// Frame kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// An audit record (JSON payload).
    Record,
    /// A seal: epoch, head hash, HMAC.
    Seal,
}

impl FrameKind {
    fn byte(self) -> u8 {
        match self {
            FrameKind::Record => 1,
            FrameKind::Seal => 2,
        }
    }
}

/// A segment header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Segment number (0, 1, ...).
    pub segment_no: u64,
    /// Sequence number of the first record in it.
    pub first_seq: u64,
    /// When the segment was created (ms, UTC).
    pub created_ms: i64,
    /// The log's id.
    pub log_id: [u8; 16],
    /// Id of the verify key (see the key id function of the keys module).
    pub key_id: [u8; 16],
    /// Chain hash at the end of the previous segment (zeros for segment 0).
    pub prev_head: [u8; 32],
    /// The frames are chained with the writer key ([`Chain::Keyed`], magic
    /// `FERRYAU2`) rather than with plain SHA-256 (v1, `FERRYAU1`).
    pub keyed: bool,
}

impl SegmentHeader {
    /// The header's bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[..8].copy_from_slice(if self.keyed {
            SEGMENT_MAGIC_KEYED
        } else {
            SEGMENT_MAGIC
        });
        b[8..16].copy_from_slice(&self.segment_no.to_le_bytes());
        b[16..24].copy_from_slice(&self.first_seq.to_le_bytes());
        b[24..32].copy_from_slice(&self.created_ms.to_le_bytes());
        b[32..48].copy_from_slice(&self.log_id);
        b[48..64].copy_from_slice(&self.key_id);
        b[64..96].copy_from_slice(&self.prev_head);
        b
    }

    /// Parses a header; `None` if the magic is wrong or it is short.
    pub fn decode(b: &[u8]) -> Option<SegmentHeader> {
        if b.len() < HEADER_LEN {
            return None;
        }
        let keyed = match &b[..8] {
            m if m == SEGMENT_MAGIC => false,
            m if m == SEGMENT_MAGIC_KEYED => true,
            _ => return None,
        };
        Some(SegmentHeader {
            segment_no: u64::from_le_bytes(b[8..16].try_into().ok()?),
            first_seq: u64::from_le_bytes(b[16..24].try_into().ok()?),
            created_ms: i64::from_le_bytes(b[24..32].try_into().ok()?),
            log_id: b[32..48].try_into().ok()?,
            key_id: b[48..64].try_into().ok()?,
            prev_head: b[64..96].try_into().ok()?,
            keyed,
        })
    }

    /// The chain hash the first frame of this segment chains on.
    pub fn chain_start(&self) -> [u8; 32] {
        let mut c = Context::new(&SHA256);
        c.update(CHAIN_LABEL);
        c.update(&self.encode());
        to32(c.finish().as_ref())
    }
}

pub(crate) fn to32(b: &[u8]) -> [u8; 32] {
    let mut o = [0u8; 32];
    o.copy_from_slice(&b[..32]);
    o
}

/// How a segment's frames are chained.
///
/// v1 logs chain with plain SHA-256: anyone who can write the files can
/// append a record after the last seal and recompute the chain, and only the
/// next seal would tell. v2 logs chain with HMAC-SHA-256 under the *writer
/// key* (kept with the seal key on the host, derived from the auditor's
/// epoch-0 secret), so a record appended by someone without that key does
/// not verify even before it is sealed.
pub enum Chain {
    /// `SHA-256(prev || body)` (v1 logs).
    Plain,
    /// `HMAC-SHA-256(writer key, prev || body)` (v2 logs). The key bytes are
    /// wiped on drop; the HMAC key schedule is built per use for the same
    /// reason (ring does not wipe its own copies).
    Keyed(zeroize::Zeroizing<[u8; 32]>),
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Chain::Plain => "Chain::Plain",
            Chain::Keyed(_) => "Chain::Keyed(<redacted>)",
        })
    }
}

impl Chain {
    /// The chain hash of a frame body chained on `prev`.
    pub fn hash(&self, prev: &[u8; 32], body: &[u8]) -> [u8; 32] {
        match self {
            Chain::Plain => chain_hash(prev, body),
            Chain::Keyed(k) => {
                let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &k[..]);
                let mut ctx = ring::hmac::Context::with_key(&key);
                ctx.update(prev);
                ctx.update(body);
                to32(ctx.sign().as_ref())
            }
        }
    }

    /// Whether this is the keyed (v2) chain.
    pub fn is_keyed(&self) -> bool {
        matches!(self, Chain::Keyed(_))
    }
}

/// Encodes one frame chained on `prev`, appends it to `out`, returns its hash.
pub fn encode_frame(
    out: &mut Vec<u8>,
    chain: &Chain,
    prev: &[u8; 32],
    kind: FrameKind,
    seq: u64,
    time_ms: i64,
    payload: &[u8],
) -> [u8; 32] {
    let start = out.len();
    out.push(FRAME_MARKER);
    out.push(kind.byte());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&time_ms.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
    let h = chain.hash(prev, &out[start..]);
    out.extend_from_slice(&h);
    h
}

/// `SHA-256(prev || body)`: the keyless chain of v1 logs.
pub fn chain_hash(prev: &[u8; 32], body: &[u8]) -> [u8; 32] {
    let mut c = Context::new(&SHA256);
    c.update(prev);
    c.update(body);
    to32(c.finish().as_ref())
}

/// One frame as found in a segment.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// Byte offset of the frame in the (uncompressed) segment.
    pub offset: usize,
    /// Record or seal.
    pub kind: FrameKind,
    /// Record seq, or for a seal the last seq it covers.
    pub seq: u64,
    /// Time (ms, UTC).
    pub time_ms: i64,
    /// The payload.
    pub payload: &'a [u8],
    /// The bytes covered by the hash (everything but the hash).
    pub body: &'a [u8],
    /// The stored chain hash.
    pub hash: &'a [u8; 32],
}

impl Frame<'_> {
    /// Total length of the frame on disk.
    pub fn len(&self) -> usize {
        self.body.len() + 32
    }

    /// Never empty; here for clippy's sake.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// Why a frame could not be parsed at some offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The data ends inside the frame (a torn tail if it is at the end).
    Incomplete,
    /// The bytes are not a frame (bad marker, kind or length).
    Garbage,
}

/// Parses the frame at `off`.
pub fn parse_frame(data: &[u8], off: usize) -> Result<Frame<'_>, FrameError> {
    let rest = &data[off..];
    if rest.is_empty() {
        return Err(FrameError::Incomplete);
    }
    if rest[0] != FRAME_MARKER {
        return Err(FrameError::Garbage);
    }
    if rest.len() < FRAME_HEAD_LEN {
        return Err(FrameError::Incomplete);
    }
    let kind = match rest[1] {
        1 => FrameKind::Record,
        2 => FrameKind::Seal,
        _ => return Err(FrameError::Garbage),
    };
    let seq = u64::from_le_bytes(rest[2..10].try_into().map_err(|_| FrameError::Garbage)?);
    let time_ms = i64::from_le_bytes(rest[10..18].try_into().map_err(|_| FrameError::Garbage)?);
    let len =
        u32::from_le_bytes(rest[18..22].try_into().map_err(|_| FrameError::Garbage)?) as usize;
    if len > MAX_PAYLOAD_BYTES || (kind == FrameKind::Seal && len != SEAL_PAYLOAD_LEN) {
        return Err(FrameError::Garbage);
    }
    let total = FRAME_HEAD_LEN + len + 32;
    if rest.len() < total {
        return Err(FrameError::Incomplete);
    }
    let hash: &[u8; 32] = rest[FRAME_HEAD_LEN + len..total]
        .try_into()
        .map_err(|_| FrameError::Garbage)?;
    Ok(Frame {
        offset: off,
        kind,
        seq,
        time_ms,
        payload: &rest[FRAME_HEAD_LEN..FRAME_HEAD_LEN + len],
        body: &rest[..FRAME_HEAD_LEN + len],
        hash,
    })
}

/// A seal frame's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealPayload {
    /// The epoch whose key made the MAC.
    pub epoch: u64,
    /// Chain hash of the last record covered.
    pub head: [u8; 32],
    /// HMAC-SHA256.
    pub mac: [u8; 32],
}

impl SealPayload {
    /// Encodes.
    pub fn encode(&self) -> [u8; SEAL_PAYLOAD_LEN] {
        let mut b = [0u8; SEAL_PAYLOAD_LEN];
        b[..8].copy_from_slice(&self.epoch.to_le_bytes());
        b[8..40].copy_from_slice(&self.head);
        b[40..72].copy_from_slice(&self.mac);
        b
    }

    /// Decodes (length was checked by [`parse_frame`]).
    pub fn decode(b: &[u8]) -> Option<SealPayload> {
        if b.len() != SEAL_PAYLOAD_LEN {
            return None;
        }
        Some(SealPayload {
            epoch: u64::from_le_bytes(b[..8].try_into().ok()?),
            head: b[8..40].try_into().ok()?,
            mac: b[40..72].try_into().ok()?,
        })
    }
}

// ---------------------------------------------------------------------------
// Files

/// A segment file in the log directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentFile {
    /// Its number.
    pub no: u64,
    /// Its path.
    pub path: PathBuf,
    /// Archived (gzip).
    pub compressed: bool,
}

/// `seg-0000000000000007.log`.
pub fn segment_name(no: u64) -> String {
    format!("seg-{no:016}.log")
}

/// Lists the segments of a log directory in order. Where both a plain and
/// an archived copy exist (a crash while archiving), the plain one is used.
pub fn list_segments(dir: &Path) -> Result<Vec<SegmentFile>, AuditError> {
    let mut out: Vec<SegmentFile> = Vec::new();
    let rd = fs::read_dir(dir).map_err(|e| AuditError::io("listing", dir, e))?;
    for ent in rd {
        let ent = ent.map_err(|e| AuditError::io("listing", dir, e))?;
        let name = ent.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name.strip_prefix("seg-") else {
            continue;
        };
        let (num, compressed) = if let Some(n) = rest.strip_suffix(".log.gz") {
            (n, true)
        } else if let Some(n) = rest.strip_suffix(".log") {
            (n, false)
        } else {
            continue;
        };
        let Ok(no) = num.parse::<u64>() else { continue };
        out.push(SegmentFile {
            no,
            path: ent.path(),
            compressed,
        });
    }
    out.sort_by_key(|s| (s.no, s.compressed));
    out.dedup_by_key(|s| s.no);
    Ok(out)
}

/// Reads a whole segment, decompressing an archived one.
pub fn read_segment(seg: &SegmentFile) -> Result<Vec<u8>, AuditError> {
    let raw = fs::read(&seg.path).map_err(|e| AuditError::io("reading segment", &seg.path, e))?;
    if !seg.compressed {
        return Ok(raw);
    }
    let mut out = Vec::with_capacity(raw.len() * 4);
    flate2::read::MultiGzDecoder::new(&raw[..])
        .read_to_end(&mut out)
        .map_err(|e| AuditError::corrupt(&seg.path, format!("gzip archive unreadable: {e}")))?;
    Ok(out)
}

/// Compresses `data` as gzip members of [`MEMBER_BYTES`]; returns the bytes
/// and the compressed offset of each member.
pub fn compress_members(data: &[u8]) -> Result<(Vec<u8>, Vec<u64>), std::io::Error> {
    use std::io::Write;
    let mut out = Vec::with_capacity(data.len() / 4);
    let mut offsets = Vec::new();
    for chunk in data.chunks(MEMBER_BYTES) {
        offsets.push(out.len() as u64);
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(chunk)?;
        out.extend_from_slice(&enc.finish()?);
    }
    Ok((out, offsets))
}

/// Finds the compressed offset of each member of an archived segment.
pub fn scan_members(raw: &[u8]) -> Result<Vec<u64>, std::io::Error> {
    let mut offsets = Vec::new();
    let mut pos = 0usize;
    while pos < raw.len() {
        offsets.push(pos as u64);
        let mut dec = flate2::bufread::GzDecoder::new(&raw[pos..]);
        std::io::copy(&mut dec, &mut std::io::sink())?;
        let rest = dec.into_inner().len();
        let used = raw.len() - pos - rest;
        if used == 0 {
            break;
        }
        pos += used;
    }
    Ok(offsets)
}

/// Reads `len` uncompressed bytes at `off` of an archived segment, using
/// the member offsets.
pub fn read_compressed_range(
    raw: &[u8],
    members: &[u64],
    off: usize,
    len: usize,
) -> Result<Vec<u8>, std::io::Error> {
    let first = off / MEMBER_BYTES;
    let last = (off + len).saturating_sub(1) / MEMBER_BYTES;
    let mut buf = Vec::with_capacity((last - first + 1) * MEMBER_BYTES);
    for m in first..=last {
        let Some(&start) = members.get(m) else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "member past the end of the archive",
            ));
        };
        let start = start as usize;
        if start > raw.len() {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        flate2::bufread::GzDecoder::new(&raw[start..]).read_to_end(&mut buf)?;
    }
    let rel = off - first * MEMBER_BYTES;
    if rel + len > buf.len() {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(buf[rel..rel + len].to_vec())
}

/// fsyncs a directory so that creations, renames and removals in it last.
pub fn sync_dir(dir: &Path) -> Result<(), AuditError> {
    ferry_common::durable::sync_dir(dir).map_err(|e| AuditError::io("syncing directory", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_roundtrip_and_torn() {
        let mut out = Vec::new();
        let prev = [3u8; 32];
        let h = encode_frame(
            &mut out,
            &Chain::Plain,
            &prev,
            FrameKind::Record,
            5,
            99,
            b"{}",
        );
        let f = parse_frame(&out, 0).unwrap();
        assert_eq!((f.seq, f.time_ms, f.payload), (5, 99, &b"{}"[..]));
        assert_eq!(f.hash, &h);
        assert_eq!(chain_hash(&prev, f.body), h);
        for cut in 1..out.len() {
            assert_eq!(
                parse_frame(&out[..cut], 0).unwrap_err(),
                FrameError::Incomplete
            );
        }
    }

    #[test]
    fn members_seek() {
        let data: Vec<u8> = (0..(3 * MEMBER_BYTES + 100))
            .map(|i| (i % 251) as u8)
            .collect();
        let (gz, offs) = compress_members(&data).unwrap();
        assert_eq!(offs.len(), 4);
        assert_eq!(scan_members(&gz).unwrap(), offs);
        let off = MEMBER_BYTES - 10;
        let got = read_compressed_range(&gz, &offs, off, 50).unwrap();
        assert_eq!(got, &data[off..off + 50]);
        let mut all = Vec::new();
        flate2::read::MultiGzDecoder::new(&gz[..])
            .read_to_end(&mut all)
            .unwrap();
        assert_eq!(all, data);
    }
}
