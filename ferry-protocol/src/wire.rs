//! The datagram byte layout (version 1).
//!
//! Every datagram starts with the same 12-byte header and ends with a
//! 16-byte MAC over everything before it, so a receiver can reject a forged
//! or corrupted datagram after one table lookup and one MAC, before any FEC
//! work or any allocation sized by the datagram's content. Parsing here only
//! checks lengths and fixed fields; it never allocates.
//! `docs/ferry-protocol.md` is the normative description of these bytes.

use crate::suite::DATAGRAM_TAG_LEN;

/// Protocol version carried in byte 0.
pub const VERSION: u8 = 1;
/// Bytes of IPv4 + UDP header that the MTU must leave room for.
pub const IP_UDP_OVERHEAD: usize = 28;
/// Smallest supported MTU (the IPv6 minimum).
pub const MIN_MTU: usize = 1280;
/// Largest supported MTU (jumbo frames).
pub const MAX_MTU: usize = 9216;
/// Common header: version, kind, suite, flags, link id, epoch.
pub const COMMON_HEADER_LEN: usize = 12;
/// Data datagram header: common header + seq, block, index, k, r, attempt, reserved.
pub const DATA_HEADER_LEN: usize = COMMON_HEADER_LEN + 20;
/// Manifest datagram header: common header + seq, attempt, reserved, length.
pub const MANIFEST_HEADER_LEN: usize = COMMON_HEADER_LEN + 12;
/// Heartbeat body after the common header.
pub const HEARTBEAT_BODY_LEN: usize = 8 + 4 + 8 + 8 + 8 + 8 + 8;
/// Largest number of source symbols in one FEC block.
pub const MAX_BLOCK_SYMBOLS: u16 = 16_384;
/// Largest plaintext chunk a manifest may declare (bounds the receiver's
/// chunk buffer).
pub const MAX_CHUNK_SIZE: u32 = 1 << 20;
/// Largest number of repair symbols in one FEC block.
pub const MAX_REPAIR_SYMBOLS: u16 = 16_384;

/// Manifest flag: this copy of the manifest follows the package's last
/// block (the end-of-transmission marker of one attempt).
pub const FLAG_TRAILER: u8 = 0x01;

/// Largest datagram for an MTU.
pub fn max_datagram_len(mtu: usize) -> usize {
    mtu - IP_UDP_OVERHEAD
}

/// FEC symbol size for an MTU: what is left of a datagram after the data
/// header and the tag, rounded down to an even number (the Reed-Solomon
/// codec works on 16-bit words).
pub fn symbol_size(mtu: usize) -> usize {
    (max_datagram_len(mtu) - DATA_HEADER_LEN - DATAGRAM_TAG_LEN) & !1
}

/// Largest signed manifest that fits one datagram at an MTU.
pub fn max_manifest_len(mtu: usize) -> usize {
    max_datagram_len(mtu) - MANIFEST_HEADER_LEN - DATAGRAM_TAG_LEN
}

/// What a datagram carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A signed package manifest.
    Manifest,
    /// One FEC symbol of a package's sealed payload.
    Data,
    /// The sender's liveness and counters.
    Heartbeat,
}

impl Kind {
    fn to_wire(self) -> u8 {
        match self {
            Kind::Manifest => 1,
            Kind::Data => 2,
            Kind::Heartbeat => 3,
        }
    }
    fn from_wire(b: u8) -> Option<Kind> {
        match b {
            1 => Some(Kind::Manifest),
            2 => Some(Kind::Data),
            3 => Some(Kind::Heartbeat),
            _ => None,
        }
    }
}

/// Why a datagram was rejected by the parser. Every variant is counted by
/// the receiver; none is fatal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Shorter than its header plus tag.
    #[error("datagram too short ({len} bytes)")]
    Short {
        /// Received length.
        len: usize,
    },
    /// Longer than the receiver's configured maximum.
    #[error("datagram too long ({len} bytes)")]
    Long {
        /// Received length.
        len: usize,
    },
    /// A protocol version this build does not speak.
    #[error("unsupported protocol version {0}")]
    Version(u8),
    /// An unknown datagram kind.
    #[error("unknown datagram kind {0}")]
    Kind(u8),
    /// A length or count field is inconsistent with the datagram size or a limit.
    #[error("bad field: {0}")]
    Field(&'static str),
}

/// The fixed header every datagram starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommonHeader {
    /// What the datagram carries.
    pub kind: Kind,
    /// Suite wire byte (see [`crate::SuiteId`]).
    pub suite: u8,
    /// Kind-specific flags.
    pub flags: u8,
    /// Identifies the link (hash of its name), so two links never mix.
    pub link_id: u32,
    /// Key epoch whose MAC key authenticates this datagram.
    pub epoch: u32,
}

impl CommonHeader {
    fn write(&self, out: &mut [u8]) {
        out[0] = VERSION;
        out[1] = self.kind.to_wire();
        out[2] = self.suite;
        out[3] = self.flags;
        out[4..8].copy_from_slice(&self.link_id.to_be_bytes());
        out[8..12].copy_from_slice(&self.epoch.to_be_bytes());
    }
}

/// Header of a data datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataHeader {
    /// Link sequence number of the package.
    pub seq: u64,
    /// Block index within the package.
    pub block: u32,
    /// Symbol index within the block: `< k` source, `k..k+r` repair.
    pub index: u16,
    /// Source symbols in this block.
    pub k: u16,
    /// Repair symbols in this block.
    pub r: u16,
    /// Which send of the package this is (redundant sends count up from 0).
    pub attempt: u8,
}

/// Header of a manifest datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ManifestHeader {
    /// Link sequence number of the package.
    pub seq: u64,
    /// Which send of the package this is.
    pub attempt: u8,
}

/// Body of a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Heartbeat {
    /// Sender's clock when the heartbeat was made (ms since Unix epoch).
    pub sender_time_ms: u64,
    /// Interval until the next heartbeat.
    pub interval_ms: u32,
    /// Next sequence number the sender will assign: every seq below it has
    /// been assigned to a package.
    pub next_seq: u64,
    /// Lowest sequence number still being transmitted (or scheduled for a
    /// redundant send); equal to `next_seq` when idle.
    pub active_from_seq: u64,
    /// Packages whose first send completed.
    pub packages_sent: u64,
    /// Datagrams the sender produced.
    pub datagrams_sent: u64,
    /// Transient send errors the sender's transport counted.
    pub send_errors: u64,
}

/// A parsed, length-checked datagram. `body` and the MAC coverage borrow
/// from the input.
#[derive(Debug, Clone, Copy)]
pub struct Parsed<'a> {
    /// The common header.
    pub common: CommonHeader,
    /// Kind-specific content.
    pub body: Body<'a>,
    /// Bytes the MAC covers (everything before the tag).
    pub authenticated: &'a [u8],
    /// The received tag.
    pub tag: &'a [u8],
}

/// Kind-specific content of a datagram.
#[derive(Debug, Clone, Copy)]
pub enum Body<'a> {
    /// A manifest: header and the signed manifest bytes.
    Manifest(ManifestHeader, &'a [u8]),
    /// A data symbol: header and the symbol bytes.
    Data(DataHeader, &'a [u8]),
    /// A heartbeat.
    Heartbeat(Heartbeat),
}

fn be_u16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}
fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn be_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

/// Parses and length-checks a datagram of at most `max_len` bytes. Does not
/// verify the MAC (the caller looks up the epoch key first).
pub fn parse(datagram: &[u8], max_len: usize) -> Result<Parsed<'_>, WireError> {
    let len = datagram.len();
    if len > max_len {
        return Err(WireError::Long { len });
    }
    if len < COMMON_HEADER_LEN + DATAGRAM_TAG_LEN {
        return Err(WireError::Short { len });
    }
    if datagram[0] != VERSION {
        return Err(WireError::Version(datagram[0]));
    }
    let kind = Kind::from_wire(datagram[1]).ok_or(WireError::Kind(datagram[1]))?;
    let common = CommonHeader {
        kind,
        suite: datagram[2],
        flags: datagram[3],
        link_id: be_u32(datagram, 4),
        epoch: be_u32(datagram, 8),
    };
    let (authenticated, tag) = datagram.split_at(len - DATAGRAM_TAG_LEN);
    let body = match kind {
        Kind::Data => {
            if authenticated.len() <= DATA_HEADER_LEN {
                return Err(WireError::Short { len });
            }
            let h = &authenticated[COMMON_HEADER_LEN..];
            let header = DataHeader {
                seq: be_u64(h, 0),
                block: be_u32(h, 8),
                index: be_u16(h, 12),
                k: be_u16(h, 14),
                r: be_u16(h, 16),
                attempt: h[18],
            };
            if h[19] != 0 {
                return Err(WireError::Field("reserved byte not zero"));
            }
            if header.k == 0 || header.k > MAX_BLOCK_SYMBOLS {
                return Err(WireError::Field("source symbol count out of range"));
            }
            if header.r > MAX_REPAIR_SYMBOLS {
                return Err(WireError::Field("repair symbol count out of range"));
            }
            if u32::from(header.index) >= u32::from(header.k) + u32::from(header.r) {
                return Err(WireError::Field("symbol index beyond k + r"));
            }
            let symbol = &authenticated[DATA_HEADER_LEN..];
            if !symbol.len().is_multiple_of(2) {
                return Err(WireError::Field("odd symbol size"));
            }
            Body::Data(header, symbol)
        }
        Kind::Manifest => {
            if authenticated.len() < MANIFEST_HEADER_LEN {
                return Err(WireError::Short { len });
            }
            let h = &authenticated[COMMON_HEADER_LEN..];
            let header = ManifestHeader {
                seq: be_u64(h, 0),
                attempt: h[8],
            };
            if h[9] != 0 {
                return Err(WireError::Field("reserved byte not zero"));
            }
            let mlen = usize::from(be_u16(h, 10));
            let manifest = &authenticated[MANIFEST_HEADER_LEN..];
            if manifest.len() != mlen || mlen == 0 {
                return Err(WireError::Field("manifest length does not match datagram"));
            }
            Body::Manifest(header, manifest)
        }
        Kind::Heartbeat => {
            if authenticated.len() != COMMON_HEADER_LEN + HEARTBEAT_BODY_LEN {
                return Err(WireError::Field("heartbeat length"));
            }
            let h = &authenticated[COMMON_HEADER_LEN..];
            Body::Heartbeat(Heartbeat {
                sender_time_ms: be_u64(h, 0),
                interval_ms: be_u32(h, 8),
                next_seq: be_u64(h, 12),
                active_from_seq: be_u64(h, 20),
                packages_sent: be_u64(h, 28),
                datagrams_sent: be_u64(h, 36),
                send_errors: be_u64(h, 44),
            })
        }
    };
    Ok(Parsed {
        common,
        body,
        authenticated,
        tag,
    })
}

/// Writes a data datagram's header and symbol into `out`, leaving room for
/// the tag; returns the length of the authenticated part. `out` must hold
/// `DATA_HEADER_LEN + symbol.len() + DATAGRAM_TAG_LEN` bytes.
pub fn write_data(
    out: &mut [u8],
    common: &CommonHeader,
    header: &DataHeader,
    symbol: &[u8],
) -> usize {
    common.write(out);
    let h = &mut out[COMMON_HEADER_LEN..DATA_HEADER_LEN];
    h[0..8].copy_from_slice(&header.seq.to_be_bytes());
    h[8..12].copy_from_slice(&header.block.to_be_bytes());
    h[12..14].copy_from_slice(&header.index.to_be_bytes());
    h[14..16].copy_from_slice(&header.k.to_be_bytes());
    h[16..18].copy_from_slice(&header.r.to_be_bytes());
    h[18] = header.attempt;
    h[19] = 0;
    let end = DATA_HEADER_LEN + symbol.len();
    out[DATA_HEADER_LEN..end].copy_from_slice(symbol);
    end
}

/// Writes a manifest datagram (without tag); returns the authenticated length.
pub fn write_manifest(
    out: &mut [u8],
    common: &CommonHeader,
    header: &ManifestHeader,
    manifest: &[u8],
) -> usize {
    common.write(out);
    let h = &mut out[COMMON_HEADER_LEN..MANIFEST_HEADER_LEN];
    h[0..8].copy_from_slice(&header.seq.to_be_bytes());
    h[8] = header.attempt;
    h[9] = 0;
    // The caller guarantees the manifest fits one datagram (checked when the
    // manifest is built), so the length fits in 16 bits.
    let mlen = u16::try_from(manifest.len()).unwrap_or(u16::MAX);
    h[10..12].copy_from_slice(&mlen.to_be_bytes());
    let end = MANIFEST_HEADER_LEN + manifest.len();
    out[MANIFEST_HEADER_LEN..end].copy_from_slice(manifest);
    end
}

/// Writes a heartbeat (without tag); returns the authenticated length.
pub fn write_heartbeat(out: &mut [u8], common: &CommonHeader, hb: &Heartbeat) -> usize {
    common.write(out);
    let h = &mut out[COMMON_HEADER_LEN..COMMON_HEADER_LEN + HEARTBEAT_BODY_LEN];
    h[0..8].copy_from_slice(&hb.sender_time_ms.to_be_bytes());
    h[8..12].copy_from_slice(&hb.interval_ms.to_be_bytes());
    h[12..20].copy_from_slice(&hb.next_seq.to_be_bytes());
    h[20..28].copy_from_slice(&hb.active_from_seq.to_be_bytes());
    h[28..36].copy_from_slice(&hb.packages_sent.to_be_bytes());
    h[36..44].copy_from_slice(&hb.datagrams_sent.to_be_bytes());
    h[44..52].copy_from_slice(&hb.send_errors.to_be_bytes());
    COMMON_HEADER_LEN + HEARTBEAT_BODY_LEN
}

/// A stable 32-bit link identifier from the link's name (FNV-1a), so that
/// datagrams of another link on the same port are dropped before any MAC.
pub fn link_id(name: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in name.as_bytes() {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn common(kind: Kind) -> CommonHeader {
        CommonHeader {
            kind,
            suite: 4,
            flags: 0,
            link_id: 7,
            epoch: 3,
        }
    }

    #[test]
    fn sizes_for_standard_mtus() {
        assert_eq!(max_datagram_len(1500), 1472);
        assert_eq!(symbol_size(1500), 1424);
        assert_eq!(symbol_size(9000), 8924);
        assert!(max_manifest_len(MIN_MTU) >= 1024);
    }

    #[test]
    fn data_round_trip() {
        let mut buf = vec![0u8; 1472];
        let h = DataHeader {
            seq: 42,
            block: 5,
            index: 9,
            k: 10,
            r: 2,
            attempt: 1,
        };
        let sym = vec![0xabu8; 64];
        let n = write_data(&mut buf, &common(Kind::Data), &h, &sym);
        let total = n + DATAGRAM_TAG_LEN;
        let p = parse(&buf[..total], 1472).expect("parses");
        assert_eq!(p.common, common(Kind::Data));
        match p.body {
            Body::Data(got, s) => {
                assert_eq!(got, h);
                assert_eq!(s, &sym[..]);
            }
            other => panic!("wrong body {other:?}"),
        }
        assert_eq!(p.authenticated.len(), n);
    }

    #[test]
    fn rejects_bad_fields() {
        let mut buf = vec![0u8; 200];
        let h = DataHeader {
            seq: 1,
            block: 0,
            index: 12,
            k: 10,
            r: 2,
            attempt: 0,
        };
        let n = write_data(&mut buf, &common(Kind::Data), &h, &[0u8; 100]) + DATAGRAM_TAG_LEN;
        assert!(matches!(parse(&buf[..n], 1472), Err(WireError::Field(_))));
        assert!(matches!(parse(&buf[..n], 100), Err(WireError::Long { .. })));
        assert!(matches!(
            parse(&buf[..20], 1472),
            Err(WireError::Short { .. })
        ));
        buf[0] = 2;
        assert!(matches!(parse(&buf[..n], 1472), Err(WireError::Version(2))));
        buf[0] = VERSION;
        buf[1] = 9;
        assert!(matches!(parse(&buf[..n], 1472), Err(WireError::Kind(9))));
    }

    #[test]
    fn heartbeat_round_trip() {
        let mut buf = vec![0u8; 200];
        let hb = Heartbeat {
            sender_time_ms: 1,
            interval_ms: 2,
            next_seq: 3,
            active_from_seq: 4,
            packages_sent: 5,
            datagrams_sent: 6,
            send_errors: 7,
        };
        let n = write_heartbeat(&mut buf, &common(Kind::Heartbeat), &hb) + DATAGRAM_TAG_LEN;
        match parse(&buf[..n], 1472).expect("parses").body {
            Body::Heartbeat(got) => assert_eq!(got, hb),
            other => panic!("wrong body {other:?}"),
        }
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..2000)) {
            let _ = parse(&bytes, 1472);
        }
    }
}
