//! Bundles: several small queued packages sent as the payload of one
//! package, under one signed manifest.
//!
//! A 1 KiB package costs the link far more than its bytes: a signature,
//! several manifest copies, an FEC block and, on the egress side, a
//! signature check. A bundle pays those once for up to
//! [`MAX_BUNDLE_MEMBERS`] packages queued one after another. Each member
//! keeps what makes it a package: its own id, sequence number (the bundle
//! manifest's signed `bundle_from_seq..=seq` names them), description,
//! digest, inspection record and, on the egress side, its own ledger entry,
//! policy check, audit record and atomic delivery.
//!
//! The payload is a member table followed by the members' bytes, in table
//! order:
//!
//! ```text
//! magic "FERRYBN1" | count u16 | count × member | payload bytes
//! member: seq u64 | has_first u8 [first_seq u64] | id [16] | size u64 |
//!         created u64 | digest u8-len | channel u8-len | file_name u16-len |
//!         content_type u8-len | sender_identity u16-len |
//!         has_inspection u8 [verdict u8 | profile u8-len |
//!         sha256_before u8-len | sha256_after u8-len]
//! ```
//!
//! The table is authenticated by the bundle's digest and signature like any
//! payload; [`decode`] still bounds every length and refuses anything that
//! does not account for every byte exactly, since a parser on the egress
//! side never trusts a length it did not check.

use crate::manifest::{
    put_inspection, put_u16_len, put_u8_len, read_inspection, ManifestError, PackageId,
    PackageMeta, Reader, MAX_BUNDLE_MEMBERS, MAX_CHANNEL_LEN, MAX_CONTENT_TYPE_LEN, MAX_DIGEST_LEN,
    MAX_FILE_NAME_LEN, MAX_IDENTITY_LEN, MAX_INSPECTION_DIGEST_LEN, MAX_PROFILE_LEN,
};
use std::ops::Range;

/// First bytes of every bundle payload.
pub const BUNDLE_MAGIC: &[u8; 8] = b"FERRYBN1";

/// Largest bundle payload: the egress side reads a bundle whole before
/// delivering its members, so this bounds that memory.
pub const MAX_BUNDLE_BYTES: u64 = 16 << 20;

/// Content type a bundle's own manifest carries (a bundle is never
/// delivered as such; its members are).
pub const BUNDLE_CONTENT_TYPE: &str = "application/vnd.ferry.bundle";

/// Largest member table: magic, count, and [`MAX_BUNDLE_MEMBERS`] members
/// at their longest (with inspection records).
pub const TABLE_BOUND: u64 = 10
    + MAX_BUNDLE_MEMBERS
        * (8 + 9
            + 16
            + 8
            + 8
            + 1
            + MAX_DIGEST_LEN as u64
            + 1
            + MAX_CHANNEL_LEN as u64
            + 2
            + MAX_FILE_NAME_LEN as u64
            + 1
            + MAX_CONTENT_TYPE_LEN as u64
            + 2
            + MAX_IDENTITY_LEN as u64
            + 2
            + 1
            + MAX_PROFILE_LEN as u64
            + 2
            + 2 * MAX_INSPECTION_DIGEST_LEN as u64);

/// One package inside a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleMember {
    /// Its description, as a manifest of its own would carry it.
    pub meta: PackageMeta,
    /// The sequence number it was queued under.
    pub seq: u64,
    /// For a package sent before under another number: the first one, so
    /// the egress side closes the gap that send left.
    pub first_seq: Option<u64>,
}

/// Why bundle bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    /// The payload does not start with [`BUNDLE_MAGIC`].
    #[error("bundle payload does not start with the bundle magic")]
    Magic,
    /// A member count of zero or above the bound.
    #[error("bundle member count {0} is outside 1..={MAX_BUNDLE_MEMBERS}")]
    Count(u64),
    /// More member bytes than [`MAX_BUNDLE_BYTES`].
    #[error("bundle of {0} payload bytes is over the {MAX_BUNDLE_BYTES}-byte bound")]
    TooLarge(u64),
    /// A member-table field.
    #[error("bundle member table: {0}")]
    Table(#[from] ManifestError),
    /// The members' sizes do not add up to the bytes after the table.
    #[error("bundle members declare {declared} payload bytes, {present} follow the table")]
    Length {
        /// Sum of the members' sizes.
        declared: u64,
        /// Bytes after the table.
        present: u64,
    },
    /// A member's bytes are not as long as its description says (encoder).
    #[error("bundle member {index} has {actual} bytes, its description says {declared}")]
    MemberSize {
        /// Position in the bundle.
        index: usize,
        /// Its `meta.size`.
        declared: u64,
        /// Bytes given.
        actual: u64,
    },
}

/// Encodes a bundle: the member table, then each member's bytes.
pub fn encode(members: &[(BundleMember, &[u8])]) -> Result<Vec<u8>, BundleError> {
    let count = members.len() as u64;
    if count == 0 || count > MAX_BUNDLE_MEMBERS {
        return Err(BundleError::Count(count));
    }
    let payload: usize = members.iter().map(|(_, b)| b.len()).sum();
    if payload as u64 > MAX_BUNDLE_BYTES {
        return Err(BundleError::TooLarge(payload as u64));
    }
    let mut out = Vec::with_capacity(16 + members.len() * 160 + payload);
    out.extend_from_slice(BUNDLE_MAGIC);
    out.extend_from_slice(&(count as u16).to_be_bytes());
    for (index, (m, bytes)) in members.iter().enumerate() {
        if m.meta.size != bytes.len() as u64 {
            return Err(BundleError::MemberSize {
                index,
                declared: m.meta.size,
                actual: bytes.len() as u64,
            });
        }
        put_member(&mut out, m)?;
    }
    for (_, bytes) in members {
        out.extend_from_slice(bytes);
    }
    Ok(out)
}

fn put_member(out: &mut Vec<u8>, m: &BundleMember) -> Result<(), ManifestError> {
    let meta = &m.meta;
    out.extend_from_slice(&m.seq.to_be_bytes());
    match m.first_seq {
        Some(f) => {
            out.push(1);
            out.extend_from_slice(&f.to_be_bytes());
        }
        None => out.push(0),
    }
    out.extend_from_slice(&meta.id.0);
    out.extend_from_slice(&meta.size.to_be_bytes());
    out.extend_from_slice(&meta.created_unix_ms.to_be_bytes());
    put_u8_len(out, &meta.digest, MAX_DIGEST_LEN, "digest")?;
    put_u8_len(out, meta.channel.as_bytes(), MAX_CHANNEL_LEN, "channel")?;
    put_u16_len(
        out,
        meta.file_name.as_bytes(),
        MAX_FILE_NAME_LEN,
        "file_name",
    )?;
    put_u8_len(
        out,
        meta.content_type.as_bytes(),
        MAX_CONTENT_TYPE_LEN,
        "content_type",
    )?;
    put_u16_len(
        out,
        meta.sender_identity.as_bytes(),
        MAX_IDENTITY_LEN,
        "sender_identity",
    )?;
    match &meta.inspection {
        Some(i) => {
            out.push(1);
            put_inspection(out, i)?;
        }
        None => out.push(0),
    }
    Ok(())
}

/// Decodes a bundle: each member with the range of `bytes` holding its
/// payload. Every byte is accounted for: the members' sizes add up to
/// exactly what follows the table.
pub fn decode(bytes: &[u8]) -> Result<Vec<(BundleMember, Range<usize>)>, BundleError> {
    if bytes.len() < BUNDLE_MAGIC.len() || &bytes[..BUNDLE_MAGIC.len()] != BUNDLE_MAGIC {
        return Err(BundleError::Magic);
    }
    if bytes.len() as u64 > MAX_BUNDLE_BYTES + TABLE_BOUND {
        return Err(BundleError::TooLarge(bytes.len() as u64));
    }
    let mut r = Reader::new(&bytes[BUNDLE_MAGIC.len()..]);
    let count = u64::from(r.u16("count")?);
    if count == 0 || count > MAX_BUNDLE_MEMBERS {
        return Err(BundleError::Count(count));
    }
    let mut members = Vec::with_capacity(count as usize);
    let mut declared = 0u64;
    for _ in 0..count {
        let m = read_member(&mut r)?;
        declared = declared.saturating_add(m.meta.size);
        members.push(m);
    }
    let table_end = BUNDLE_MAGIC.len() + r.position();
    let present = (bytes.len() - table_end) as u64;
    if declared != present {
        return Err(BundleError::Length { declared, present });
    }
    let mut at = table_end;
    Ok(members
        .into_iter()
        .map(|m| {
            // Cannot overflow: the sizes add up to `present`.
            let end = at + m.meta.size as usize;
            let range = at..end;
            at = end;
            (m, range)
        })
        .collect())
}

fn read_member(r: &mut Reader<'_>) -> Result<BundleMember, ManifestError> {
    let seq = r.u64("member_seq")?;
    let first_seq = match r.u8("has_first_seq")? {
        0 => None,
        1 => Some(r.u64("first_seq")?),
        _ => return Err(ManifestError::Field("has_first_seq")),
    };
    let mut id = [0u8; 16];
    id.copy_from_slice(r.take(16, "package_id")?);
    let size = r.u64("size")?;
    let created_unix_ms = r.u64("created")?;
    let digest = r.u8_len(MAX_DIGEST_LEN, "digest")?.to_vec();
    let channel = r.string8(MAX_CHANNEL_LEN, "channel")?;
    let file_name = r.string16(MAX_FILE_NAME_LEN, "file_name")?;
    let content_type = r.string8(MAX_CONTENT_TYPE_LEN, "content_type")?;
    let sender_identity = r.string16(MAX_IDENTITY_LEN, "sender_identity")?;
    let inspection = match r.u8("has_inspection")? {
        0 => None,
        1 => Some(read_inspection(r)?),
        _ => return Err(ManifestError::Field("has_inspection")),
    };
    Ok(BundleMember {
        meta: PackageMeta {
            id: PackageId(id),
            channel,
            size,
            digest,
            file_name,
            content_type,
            sender_identity,
            created_unix_ms,
            inspection,
        },
        seq,
        first_seq,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Inspection, InspectionVerdict};

    fn member(i: u8, size: u64) -> BundleMember {
        BundleMember {
            meta: PackageMeta {
                id: PackageId([i; 16]),
                channel: "stats".into(),
                size,
                digest: vec![i; 32],
                file_name: format!("f{i}.csv"),
                content_type: "text/csv".into(),
                sender_identity: "CN=registry".into(),
                created_unix_ms: 1_700_000_000_000 + u64::from(i),
                inspection: (i % 2 == 1).then(|| Inspection {
                    profile: "p".into(),
                    verdict: InspectionVerdict::Masked,
                    sha256_before: vec![1; 32],
                    sha256_after: vec![2; 32],
                }),
            },
            seq: 100 + u64::from(i),
            first_seq: i.is_multiple_of(3).then_some(u64::from(i)),
        }
    }

    fn sample() -> (Vec<BundleMember>, Vec<Vec<u8>>) {
        let sizes = [0u64, 1, 1024, 7, 3000];
        let members: Vec<_> = (0u8..5).map(|i| member(i, sizes[usize::from(i)])).collect();
        let bodies = members
            .iter()
            .map(|m| vec![m.meta.id.0[0].wrapping_add(0x40); m.meta.size as usize])
            .collect();
        (members, bodies)
    }

    /// [`sample`] and its encoding.
    fn sample_encoded() -> (Vec<BundleMember>, Vec<Vec<u8>>, Vec<u8>) {
        let (members, bodies) = sample();
        let pairs: Vec<_> = members
            .iter()
            .cloned()
            .zip(bodies.iter().map(|b| b.as_slice()))
            .collect();
        let bytes = encode(&pairs).expect("encodes");
        (members, bodies, bytes)
    }

    #[test]
    fn members_round_trip_with_their_bytes() {
        let (members, bodies, bytes) = sample_encoded();
        let back = decode(&bytes).expect("decodes");
        assert_eq!(back.len(), members.len());
        for ((m, range), (want, body)) in back.iter().zip(members.iter().zip(&bodies)) {
            assert_eq!(m, want);
            assert_eq!(&bytes[range.clone()], body.as_slice());
        }
    }

    #[test]
    fn every_truncation_extension_and_count_is_refused() {
        let (_, _, bytes) = sample_encoded();
        for n in 0..bytes.len() {
            assert!(decode(&bytes[..n]).is_err(), "truncated to {n}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(
            decode(&long).map(|_| ()),
            Err(BundleError::Length {
                declared: 4032,
                present: 4033
            })
        );
        let mut zero = bytes.clone();
        zero[8..10].copy_from_slice(&0u16.to_be_bytes());
        assert_eq!(decode(&zero).map(|_| ()), Err(BundleError::Count(0)));
        let mut many = bytes.clone();
        many[8..10].copy_from_slice(&u16::MAX.to_be_bytes());
        assert_eq!(
            decode(&many).map(|_| ()),
            Err(BundleError::Count(u64::from(u16::MAX)))
        );
        let mut magic = bytes.clone();
        magic[0] ^= 1;
        assert_eq!(decode(&magic).map(|_| ()), Err(BundleError::Magic));
        // A member size that claims more than the bundle holds, with a
        // sum that overflows: refused, no panic.
        let mut huge = bytes.clone();
        let size_at = 8 + 2 + 8 + 1 + 8 + 16; // first member: seq, has_first, first, id
        huge[size_at..size_at + 8].copy_from_slice(&u64::MAX.to_be_bytes());
        assert!(matches!(decode(&huge), Err(BundleError::Length { .. })));
    }

    #[test]
    fn the_encoder_refuses_what_the_decoder_would() {
        let (members, bodies) = sample();
        assert_eq!(encode(&[]).map(|_| ()), Err(BundleError::Count(0)));
        let wrong = [(members[2].clone(), bodies[1].as_slice())];
        assert_eq!(
            encode(&wrong).map(|_| ()),
            Err(BundleError::MemberSize {
                index: 0,
                declared: 1024,
                actual: 1
            })
        );
        let mut long_name = members[1].clone();
        long_name.meta.channel = "c".repeat(MAX_CHANNEL_LEN + 1);
        assert_eq!(
            encode(&[(long_name, bodies[1].as_slice())]).map(|_| ()),
            Err(BundleError::Table(ManifestError::Field("channel")))
        );
    }
}
