//! The package manifest: what a package is, signed by the ingress side.
//!
//! The manifest travels in its own datagrams (several copies per send) and
//! binds the package's identity, size, digest, sequence number, key epoch,
//! FEC geometry and ephemeral key under one signature, so the egress side
//! can refuse anything the ingress side did not seal. The encoding is
//! canonical (fixed field order, explicit lengths, every length bounded), so
//! the signed bytes are exactly the bytes on the wire.

use crate::suite::SuiteId;

/// Manifest encoding version without an inspection record.
pub const MANIFEST_VERSION: u8 = 1;
/// Manifest encoding version with an inspection record (fields 19–22):
/// what the ingress content guard did. A manifest with an inspection is
/// always version 2 and one without is always version 1, so the encoding
/// stays canonical.
pub const MANIFEST_VERSION_INSPECTED: u8 = 2;
/// Added to [`MANIFEST_VERSION`] or [`MANIFEST_VERSION_INSPECTED`] (giving
/// 3 or 4) when the manifest ends with a `first_seq` field (u64): the
/// sequence number the package was first sent under, carried by a resend
/// under a new sequence number so the egress side can close the gap the
/// first send left. A manifest without it keeps versions 1 and 2, so the
/// encoding stays canonical and first sends are unchanged on the wire.
pub const MANIFEST_VERSION_RESENT_OFFSET: u8 = 2;
/// Added to the version (giving 5 to 8) when the manifest ends with a
/// `bundle_from_seq` field (u64, after `first_seq` when both are there):
/// the payload is a bundle of small packages (the `bundle` module) whose
/// members were queued under the sequence numbers `bundle_from_seq..=seq`.
/// The egress side accepts all of them with the bundle, so their numbers
/// are not gaps. A manifest without it keeps versions 1 to 4.
pub const MANIFEST_VERSION_BUNDLE_OFFSET: u8 = 4;
/// Most members in one bundle: bounds the sequence range a bundle manifest
/// may claim, far below the replay window.
pub const MAX_BUNDLE_MEMBERS: u64 = 1024;
/// Longest content-profile name in an inspection record.
pub const MAX_PROFILE_LEN: usize = 64;
/// Longest digest in an inspection record (SHA-256).
pub const MAX_INSPECTION_DIGEST_LEN: usize = 32;
/// Domain-separation prefix of the signed bytes.
pub const SIGNING_CONTEXT: &[u8] = b"ferry/v1/manifest";
/// Longest channel name in bytes.
pub const MAX_CHANNEL_LEN: usize = 64;
/// Longest file name in bytes.
pub const MAX_FILE_NAME_LEN: usize = 255;
/// Longest content type in bytes.
pub const MAX_CONTENT_TYPE_LEN: usize = 127;
/// Longest sender identity in bytes.
pub const MAX_IDENTITY_LEN: usize = 256;
/// Longest key id in bytes.
pub const MAX_KEY_ID_LEN: usize = 64;
/// Longest digest in bytes.
pub const MAX_DIGEST_LEN: usize = 64;
/// Longest key-transport field in bytes: an X25519 public key (intl, 32) or
/// an SM2-encrypted 32-byte package key in DER (gm, at most 141). Bounded so
/// the worst-case manifest still fits one datagram at the minimum MTU.
pub const MAX_EPHEMERAL_LEN: usize = 152;
/// Longest signature in bytes (a DER SM2 signature is at most 72).
pub const MAX_SIGNATURE_LEN: usize = 96;
/// Largest package: 1 TiB. Bounds every size computation.
pub const MAX_PACKAGE_BYTES: u64 = 1 << 40;

/// A package's 128-bit identifier, assigned at ingest and kept across
/// resends (sequence numbers change on resend, the id does not).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PackageId(pub [u8; 16]);

impl PackageId {
    /// Lower-case hex, 32 characters.
    pub fn to_hex(&self) -> String {
        // By table, not `format!` per byte: ids are written into file
        // names, log lines and audit records several times per package.
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut s = String::with_capacity(32);
        for b in self.0 {
            s.push(char::from(DIGITS[usize::from(b >> 4)]));
            s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
        }
        s
    }

    /// Parses 32 hex characters.
    pub fn from_hex(s: &str) -> Option<PackageId> {
        let b = s.as_bytes();
        if b.len() != 32 {
            return None;
        }
        let mut out = [0u8; 16];
        for (i, pair) in b.chunks(2).enumerate() {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            out[i] = u8::try_from(hi * 16 + lo).ok()?;
        }
        Some(PackageId(out))
    }
}

impl std::fmt::Display for PackageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl std::fmt::Debug for PackageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PackageId({})", self.to_hex())
    }
}

/// What the caller knows about a package when it hands it to the sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageMeta {
    /// The package id.
    pub id: PackageId,
    /// Channel name.
    pub channel: String,
    /// Payload size in bytes.
    pub size: u64,
    /// Digest of the plaintext payload under the link's suite (SHA-256 or SM3).
    pub digest: Vec<u8>,
    /// Original file name (the egress side sanitizes it again).
    pub file_name: String,
    /// Declared content type.
    pub content_type: String,
    /// Who pushed it (certificate identity or spool name).
    pub sender_identity: String,
    /// When it was accepted, ms since the Unix epoch.
    pub created_unix_ms: u64,
    /// What the ingress content guard did, when a profile applied.
    pub inspection: Option<Inspection>,
}

/// The ingress content guard's verdict on a package that may go on, with
/// the SHA-256 of the package as received and as sent (equal unless it was
/// masked). Signed with the rest of the manifest, so the egress side and
/// the recipient can tell an original from a masked copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    /// The content profile applied.
    pub profile: String,
    /// What it decided.
    pub verdict: InspectionVerdict,
    /// SHA-256 of the package as received (empty when not computed).
    pub sha256_before: Vec<u8>,
    /// SHA-256 of the package as sent.
    pub sha256_after: Vec<u8>,
}

/// The verdicts a sent package can carry (a rejected one is never sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InspectionVerdict {
    /// Nothing found.
    Pass,
    /// Findings masked; the package sent is the masked copy.
    Masked,
    /// Held for and released by reviewers.
    Reviewed,
}

impl InspectionVerdict {
    pub(crate) fn to_wire(self) -> u8 {
        match self {
            InspectionVerdict::Pass => 0,
            InspectionVerdict::Masked => 1,
            InspectionVerdict::Reviewed => 2,
        }
    }

    pub(crate) fn from_wire(b: u8) -> Option<Self> {
        match b {
            0 => Some(InspectionVerdict::Pass),
            1 => Some(InspectionVerdict::Masked),
            2 => Some(InspectionVerdict::Reviewed),
            _ => None,
        }
    }

    /// `pass`, `masked` or `reviewed`.
    pub fn as_str(self) -> &'static str {
        match self {
            InspectionVerdict::Pass => "pass",
            InspectionVerdict::Masked => "masked",
            InspectionVerdict::Reviewed => "reviewed",
        }
    }
}

/// The full manifest as signed and sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Caller-provided description.
    pub meta: PackageMeta,
    /// Suite of the link.
    pub suite: SuiteId,
    /// Link sequence number.
    pub seq: u64,
    /// Key epoch the payload key mixes in.
    pub epoch: u32,
    /// Plaintext bytes per sealed chunk.
    pub chunk_size: u32,
    /// Source symbols per full FEC block.
    pub block_symbols: u16,
    /// Bytes per FEC symbol.
    pub symbol_size: u16,
    /// Id of the signing key.
    pub signing_key_id: String,
    /// Id of the recipient's agreement key.
    pub recipient_key_id: String,
    /// Ephemeral public key for the payload key agreement.
    pub ephemeral: Vec<u8>,
    /// For a resend under a new sequence number: the sequence number the
    /// package was first sent under (signed, so only the ingress side can
    /// say which gap a package fills).
    pub first_seq: Option<u64>,
    /// For a bundle: the sequence number of its first member (its last
    /// member's is `seq`). Signed, so only the ingress side can say which
    /// numbers a bundle fills.
    pub bundle_from_seq: Option<u64>,
}

/// Why manifest bytes were refused. Authenticated datagrams carry these
/// bytes, so an error here means a sender bug or a key compromise; it is
/// counted and the package is dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// Input ended inside a field.
    #[error("manifest truncated at field `{0}`")]
    Truncated(&'static str),
    /// A field exceeds its limit or holds an invalid value.
    #[error("manifest field `{0}` is invalid or over its limit")]
    Field(&'static str),
    /// Bytes remain after the signature.
    #[error("trailing bytes after manifest signature")]
    Trailing,
    /// A different manifest version.
    #[error("unsupported manifest version {0}")]
    Version(u8),
    /// A suite format this build no longer speaks (see
    /// [`crate::suite::RETIRED_SUITES`]); never read under another format.
    #[error("manifest sealed with the retired {0}")]
    RetiredSuite(&'static str),
}

impl Manifest {
    /// Ciphertext length of the sealed payload for a chunk overhead.
    pub fn sealed_len(&self, overhead: usize) -> u64 {
        sealed_len(self.meta.size, self.chunk_size, overhead)
    }

    /// The canonical bytes the signature covers (without the signature and
    /// without the signing context).
    pub fn encode_body(&self) -> Result<Vec<u8>, ManifestError> {
        let m = &self.meta;
        let mut out = Vec::with_capacity(256);
        let base = if m.inspection.is_some() {
            MANIFEST_VERSION_INSPECTED
        } else {
            MANIFEST_VERSION
        };
        let resent = if self.first_seq.is_some() {
            MANIFEST_VERSION_RESENT_OFFSET
        } else {
            0
        };
        let bundle = match self.bundle_from_seq {
            Some(from) if from >= self.seq || self.seq - from >= MAX_BUNDLE_MEMBERS => {
                return Err(ManifestError::Field("bundle_from_seq"))
            }
            Some(_) => MANIFEST_VERSION_BUNDLE_OFFSET,
            None => 0,
        };
        out.push(base + resent + bundle);
        out.push(self.suite.to_wire());
        out.extend_from_slice(&m.id.0);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.epoch.to_be_bytes());
        if m.size > MAX_PACKAGE_BYTES {
            return Err(ManifestError::Field("size"));
        }
        out.extend_from_slice(&m.size.to_be_bytes());
        out.extend_from_slice(&self.chunk_size.to_be_bytes());
        out.extend_from_slice(&self.block_symbols.to_be_bytes());
        out.extend_from_slice(&self.symbol_size.to_be_bytes());
        out.extend_from_slice(&m.created_unix_ms.to_be_bytes());
        put_u8_len(&mut out, &m.digest, MAX_DIGEST_LEN, "digest")?;
        put_u8_len(&mut out, m.channel.as_bytes(), MAX_CHANNEL_LEN, "channel")?;
        put_u16_len(
            &mut out,
            m.file_name.as_bytes(),
            MAX_FILE_NAME_LEN,
            "file_name",
        )?;
        put_u8_len(
            &mut out,
            m.content_type.as_bytes(),
            MAX_CONTENT_TYPE_LEN,
            "content_type",
        )?;
        put_u16_len(
            &mut out,
            m.sender_identity.as_bytes(),
            MAX_IDENTITY_LEN,
            "sender_identity",
        )?;
        put_u8_len(
            &mut out,
            self.signing_key_id.as_bytes(),
            MAX_KEY_ID_LEN,
            "signing_key_id",
        )?;
        put_u8_len(
            &mut out,
            self.recipient_key_id.as_bytes(),
            MAX_KEY_ID_LEN,
            "recipient_key_id",
        )?;
        put_u8_len(&mut out, &self.ephemeral, MAX_EPHEMERAL_LEN, "ephemeral")?;
        if let Some(i) = &m.inspection {
            put_inspection(&mut out, i)?;
        }
        if let Some(first) = self.first_seq {
            out.extend_from_slice(&first.to_be_bytes());
        }
        if let Some(from) = self.bundle_from_seq {
            out.extend_from_slice(&from.to_be_bytes());
        }
        Ok(out)
    }

    /// The bytes handed to the signer: context prefix plus body.
    pub fn signing_input(body: &[u8]) -> Vec<u8> {
        let mut v = Vec::with_capacity(SIGNING_CONTEXT.len() + body.len());
        v.extend_from_slice(SIGNING_CONTEXT);
        v.extend_from_slice(body);
        v
    }

    /// Body plus length-prefixed signature: what goes in a manifest datagram.
    pub fn encode_signed(body: &[u8], signature: &[u8]) -> Result<Vec<u8>, ManifestError> {
        let mut out = Vec::with_capacity(body.len() + 2 + signature.len());
        out.extend_from_slice(body);
        put_u16_len(&mut out, signature, MAX_SIGNATURE_LEN, "signature")?;
        Ok(out)
    }

    /// Splits signed manifest bytes into the parsed manifest, the body the
    /// signature covers, and the signature. Bounded and allocation-light:
    /// every length is checked against its limit before use.
    pub fn decode_signed(bytes: &[u8]) -> Result<(Manifest, &[u8], &[u8]), ManifestError> {
        let mut r = Reader { b: bytes, at: 0 };
        let version = r.u8("version")?;
        let bundle = version > MANIFEST_VERSION_INSPECTED + MANIFEST_VERSION_RESENT_OFFSET;
        let rest = if bundle {
            version.saturating_sub(MANIFEST_VERSION_BUNDLE_OFFSET)
        } else {
            version
        };
        let resent = rest > MANIFEST_VERSION_INSPECTED;
        let base = if resent {
            rest.saturating_sub(MANIFEST_VERSION_RESENT_OFFSET)
        } else {
            rest
        };
        if base != MANIFEST_VERSION && base != MANIFEST_VERSION_INSPECTED {
            return Err(ManifestError::Version(version));
        }
        let suite_byte = r.u8("suite")?;
        let suite = match SuiteId::from_wire(suite_byte) {
            Some(s) => s,
            None => match SuiteId::retired(suite_byte) {
                Some(what) => return Err(ManifestError::RetiredSuite(what)),
                None => return Err(ManifestError::Field("suite")),
            },
        };
        let mut id = [0u8; 16];
        id.copy_from_slice(r.take(16, "package_id")?);
        let seq = r.u64("seq")?;
        let epoch = r.u32("epoch")?;
        let size = r.u64("size")?;
        if size > MAX_PACKAGE_BYTES {
            return Err(ManifestError::Field("size"));
        }
        let chunk_size = r.u32("chunk_size")?;
        if chunk_size == 0 || chunk_size > crate::wire::MAX_CHUNK_SIZE {
            return Err(ManifestError::Field("chunk_size"));
        }
        let block_symbols = r.u16("block_symbols")?;
        if block_symbols == 0 || block_symbols > crate::wire::MAX_BLOCK_SYMBOLS {
            return Err(ManifestError::Field("block_symbols"));
        }
        let symbol_size = r.u16("symbol_size")?;
        if symbol_size == 0 || symbol_size % 2 != 0 {
            return Err(ManifestError::Field("symbol_size"));
        }
        let created_unix_ms = r.u64("created")?;
        let digest = r.u8_len(MAX_DIGEST_LEN, "digest")?.to_vec();
        let channel = r.string8(MAX_CHANNEL_LEN, "channel")?;
        let file_name = r.string16(MAX_FILE_NAME_LEN, "file_name")?;
        let content_type = r.string8(MAX_CONTENT_TYPE_LEN, "content_type")?;
        let sender_identity = r.string16(MAX_IDENTITY_LEN, "sender_identity")?;
        let signing_key_id = r.string8(MAX_KEY_ID_LEN, "signing_key_id")?;
        let recipient_key_id = r.string8(MAX_KEY_ID_LEN, "recipient_key_id")?;
        let ephemeral = r.u8_len(MAX_EPHEMERAL_LEN, "ephemeral")?.to_vec();
        let inspection = if base == MANIFEST_VERSION_INSPECTED {
            Some(read_inspection(&mut r)?)
        } else {
            None
        };
        let first_seq = if resent {
            Some(r.u64("first_seq")?)
        } else {
            None
        };
        let bundle_from_seq = if bundle {
            let from = r.u64("bundle_from_seq")?;
            // A bundle covers at least two numbers and at most
            // MAX_BUNDLE_MEMBERS, ending at its own.
            if from >= seq || seq - from >= MAX_BUNDLE_MEMBERS {
                return Err(ManifestError::Field("bundle_from_seq"));
            }
            Some(from)
        } else {
            None
        };
        let body_end = r.at;
        let signature = r.u16_len(MAX_SIGNATURE_LEN, "signature")?;
        if r.at != bytes.len() {
            return Err(ManifestError::Trailing);
        }
        let manifest = Manifest {
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
            suite,
            seq,
            epoch,
            chunk_size,
            block_symbols,
            symbol_size,
            signing_key_id,
            recipient_key_id,
            ephemeral,
            first_seq,
            bundle_from_seq,
        };
        Ok((manifest, &bytes[..body_end], signature))
    }
}

/// Ciphertext length of a payload of `size` bytes sealed in chunks of
/// `chunk_size` with `overhead` bytes per chunk. An empty payload is still
/// one (empty, authenticated) chunk, so emptiness itself is authenticated.
pub fn sealed_len(size: u64, chunk_size: u32, overhead: usize) -> u64 {
    let chunks = chunk_count(size, chunk_size);
    size + chunks * overhead as u64
}

/// Number of sealed chunks for a payload (at least one).
pub fn chunk_count(size: u64, chunk_size: u32) -> u64 {
    let c = u64::from(chunk_size.max(1));
    size.div_ceil(c).max(1)
}

/// An inspection record (fields 19–22; also a bundle member's).
pub(crate) fn put_inspection(out: &mut Vec<u8>, i: &Inspection) -> Result<(), ManifestError> {
    out.push(i.verdict.to_wire());
    put_u8_len(out, i.profile.as_bytes(), MAX_PROFILE_LEN, "profile")?;
    put_u8_len(
        out,
        &i.sha256_before,
        MAX_INSPECTION_DIGEST_LEN,
        "sha256_before",
    )?;
    put_u8_len(
        out,
        &i.sha256_after,
        MAX_INSPECTION_DIGEST_LEN,
        "sha256_after",
    )
}

/// Reads what [`put_inspection`] wrote.
pub(crate) fn read_inspection(r: &mut Reader<'_>) -> Result<Inspection, ManifestError> {
    let verdict = InspectionVerdict::from_wire(r.u8("inspection_verdict")?)
        .ok_or(ManifestError::Field("inspection_verdict"))?;
    Ok(Inspection {
        verdict,
        profile: r.string8(MAX_PROFILE_LEN, "profile")?,
        sha256_before: r
            .u8_len(MAX_INSPECTION_DIGEST_LEN, "sha256_before")?
            .to_vec(),
        sha256_after: r
            .u8_len(MAX_INSPECTION_DIGEST_LEN, "sha256_after")?
            .to_vec(),
    })
}

pub(crate) fn put_u8_len(
    out: &mut Vec<u8>,
    v: &[u8],
    max: usize,
    field: &'static str,
) -> Result<(), ManifestError> {
    if v.len() > max || v.len() > usize::from(u8::MAX) {
        return Err(ManifestError::Field(field));
    }
    out.push(v.len() as u8);
    out.extend_from_slice(v);
    Ok(())
}

pub(crate) fn put_u16_len(
    out: &mut Vec<u8>,
    v: &[u8],
    max: usize,
    field: &'static str,
) -> Result<(), ManifestError> {
    let len = u16::try_from(v.len()).map_err(|_| ManifestError::Field(field))?;
    if v.len() > max {
        return Err(ManifestError::Field(field));
    }
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(v);
    Ok(())
}

pub(crate) struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(b: &'a [u8]) -> Reader<'a> {
        Reader { b, at: 0 }
    }
    /// Bytes read so far.
    pub(crate) fn position(&self) -> usize {
        self.at
    }
    pub(crate) fn take(
        &mut self,
        n: usize,
        field: &'static str,
    ) -> Result<&'a [u8], ManifestError> {
        let end = self
            .at
            .checked_add(n)
            .ok_or(ManifestError::Truncated(field))?;
        let s = self
            .b
            .get(self.at..end)
            .ok_or(ManifestError::Truncated(field))?;
        self.at = end;
        Ok(s)
    }
    pub(crate) fn u8(&mut self, f: &'static str) -> Result<u8, ManifestError> {
        Ok(self.take(1, f)?[0])
    }
    pub(crate) fn u16(&mut self, f: &'static str) -> Result<u16, ManifestError> {
        let s = self.take(2, f)?;
        Ok(u16::from_be_bytes([s[0], s[1]]))
    }
    pub(crate) fn u32(&mut self, f: &'static str) -> Result<u32, ManifestError> {
        let s = self.take(4, f)?;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }
    pub(crate) fn u64(&mut self, f: &'static str) -> Result<u64, ManifestError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8, f)?);
        Ok(u64::from_be_bytes(a))
    }
    pub(crate) fn u8_len(
        &mut self,
        max: usize,
        f: &'static str,
    ) -> Result<&'a [u8], ManifestError> {
        let n = usize::from(self.u8(f)?);
        if n > max {
            return Err(ManifestError::Field(f));
        }
        self.take(n, f)
    }
    pub(crate) fn u16_len(
        &mut self,
        max: usize,
        f: &'static str,
    ) -> Result<&'a [u8], ManifestError> {
        let n = usize::from(self.u16(f)?);
        if n > max {
            return Err(ManifestError::Field(f));
        }
        self.take(n, f)
    }
    pub(crate) fn string8(&mut self, max: usize, f: &'static str) -> Result<String, ManifestError> {
        let s = self.u8_len(max, f)?;
        String::from_utf8(s.to_vec()).map_err(|_| ManifestError::Field(f))
    }
    pub(crate) fn string16(
        &mut self,
        max: usize,
        f: &'static str,
    ) -> Result<String, ManifestError> {
        let s = self.u16_len(max, f)?;
        String::from_utf8(s.to_vec()).map_err(|_| ManifestError::Field(f))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn sample() -> Manifest {
        Manifest {
            meta: PackageMeta {
                id: PackageId([7; 16]),
                channel: "stats".into(),
                size: 12345,
                digest: vec![1; 32],
                file_name: "landuse-2026.csv".into(),
                content_type: "text/csv".into(),
                sender_identity: "CN=registry,OU=land".into(),
                created_unix_ms: 1_700_000_000_000,
                inspection: None,
            },
            suite: SuiteId::Intl,
            seq: 99,
            epoch: 4,
            chunk_size: 65536,
            block_symbols: 1024,
            symbol_size: 1424,
            signing_key_id: "sig-1".into(),
            recipient_key_id: "agr-1".into(),
            ephemeral: vec![9; 32],
            first_seq: None,
            bundle_from_seq: None,
        }
    }

    /// [`sample`], with a pass inspection record when `inspected`.
    fn sample_inspected(inspected: bool) -> Manifest {
        let mut m = sample();
        if inspected {
            m.meta.inspection = Some(Inspection {
                profile: "p".into(),
                verdict: InspectionVerdict::Pass,
                sha256_before: vec![1; 32],
                sha256_after: vec![1; 32],
            });
        }
        m
    }

    #[test]
    fn first_seq_round_trips_as_versions_3_and_4() {
        for inspected in [false, true] {
            let mut m = sample_inspected(inspected);
            let plain = m.encode_body().expect("encodes");
            m.first_seq = Some(42);
            let body = m.encode_body().expect("encodes");
            assert_eq!(body[0], plain[0] + MANIFEST_VERSION_RESENT_OFFSET);
            assert_eq!(body.len(), plain.len() + 8);
            let signed = Manifest::encode_signed(&body, &[5u8; 64]).expect("signs");
            let (back, _, _) = Manifest::decode_signed(&signed).expect("decodes");
            assert_eq!(back, m);
            for n in 0..signed.len() {
                assert!(Manifest::decode_signed(&signed[..n]).is_err(), "len {n}");
            }
        }
        let mut bad = sample().encode_body().expect("encodes");
        bad[0] = 9;
        let signed = Manifest::encode_signed(&bad, &[5u8; 64]).expect("signs");
        assert_eq!(
            Manifest::decode_signed(&signed).map(|_| ()),
            Err(ManifestError::Version(9))
        );
    }

    #[test]
    fn a_retired_suite_byte_is_refused_by_name_and_an_unknown_one_as_a_field() {
        let body = sample().encode_body().expect("encodes");
        // intl format 1 (HMAC-SHA256 tags), GM format 1 (SM4-CTR + HMAC-SM3).
        for (byte, named) in [(1u8, "intl suite format 1"), (2, "GM suite format 1")] {
            let mut old = body.clone();
            old[1] = byte;
            let old = Manifest::encode_signed(&old, &[5u8; 64]).expect("signs");
            let e = Manifest::decode_signed(&old).expect_err("retired");
            assert!(matches!(e, ManifestError::RetiredSuite(_)), "{e}");
            let text = e.to_string();
            assert!(text.contains(named), "{text}");
            assert!(
                text.contains("upgrade ferryd on the ingress side"),
                "{text}"
            );
        }
        let mut unknown = body;
        unknown[1] = 0x7f;
        let unknown = Manifest::encode_signed(&unknown, &[5u8; 64]).expect("signs");
        assert_eq!(
            Manifest::decode_signed(&unknown).err(),
            Some(ManifestError::Field("suite"))
        );
    }

    #[test]
    fn round_trip() {
        let m = sample();
        let body = m.encode_body().expect("encodes");
        let signed = Manifest::encode_signed(&body, &[5u8; 64]).expect("signs");
        let (back, b, sig) = Manifest::decode_signed(&signed).expect("decodes");
        assert_eq!(back, m);
        assert_eq!(b, &body[..]);
        assert_eq!(sig, &[5u8; 64][..]);
    }

    #[test]
    fn inspection_round_trips_as_version_2_and_plain_stays_version_1() {
        let plain = sample().encode_body().expect("encodes");
        assert_eq!(plain[0], MANIFEST_VERSION);
        let mut m = sample();
        m.meta.inspection = Some(Inspection {
            profile: "strict-public".into(),
            verdict: InspectionVerdict::Masked,
            sha256_before: vec![1; 32],
            sha256_after: vec![2; 32],
        });
        let body = m.encode_body().expect("encodes");
        assert_eq!(body[0], MANIFEST_VERSION_INSPECTED);
        let signed = Manifest::encode_signed(&body, &[5u8; 64]).expect("signs");
        let (back, _, _) = Manifest::decode_signed(&signed).expect("decodes");
        assert_eq!(back, m);
        for n in 0..signed.len() {
            assert!(Manifest::decode_signed(&signed[..n]).is_err(), "len {n}");
        }
        // An unknown verdict byte and an over-long digest are refused.
        let verdict_at = plain.len();
        let mut bad = signed.clone();
        bad[verdict_at] = 9;
        assert_eq!(
            Manifest::decode_signed(&bad).map(|_| ()),
            Err(ManifestError::Field("inspection_verdict"))
        );
        let mut long = m.clone();
        if let Some(i) = long.meta.inspection.as_mut() {
            i.sha256_after = vec![0; 33];
        }
        assert_eq!(
            long.encode_body(),
            Err(ManifestError::Field("sha256_after"))
        );
        // Version 9 is refused (3 and 4 carry `first_seq`, 5 to 8 a bundle).
        let mut v9 = signed.clone();
        v9[0] = 9;
        assert_eq!(
            Manifest::decode_signed(&v9).map(|_| ()),
            Err(ManifestError::Version(9))
        );
    }

    #[test]
    fn bundle_range_round_trips_as_versions_5_to_8_and_is_bounded() {
        for (inspected, resent) in [(false, false), (true, false), (false, true), (true, true)] {
            let mut m = sample_inspected(inspected);
            if resent {
                m.first_seq = Some(7);
            }
            let plain = m.encode_body().expect("encodes");
            m.bundle_from_seq = Some(m.seq - 3);
            let body = m.encode_body().expect("encodes");
            assert_eq!(body[0], plain[0] + MANIFEST_VERSION_BUNDLE_OFFSET);
            assert!((5..=8).contains(&body[0]));
            assert_eq!(body.len(), plain.len() + 8);
            let signed = Manifest::encode_signed(&body, &[5u8; 64]).expect("signs");
            let (back, _, _) = Manifest::decode_signed(&signed).expect("decodes");
            assert_eq!(back, m);
            for n in 0..signed.len() {
                assert!(Manifest::decode_signed(&signed[..n]).is_err(), "len {n}");
            }
        }
        // A range that is empty, backwards or wider than the bound is
        // refused both ways: by the encoder, and by the decoder when the
        // bytes say so anyway.
        let good = {
            let mut m = sample();
            m.seq = 5000;
            m.bundle_from_seq = Some(m.seq - 1);
            m
        };
        let body = good.encode_body().expect("encodes");
        for from in [good.seq, good.seq + 1, good.seq - MAX_BUNDLE_MEMBERS] {
            let mut m = good.clone();
            m.bundle_from_seq = Some(from);
            assert_eq!(
                m.encode_body(),
                Err(ManifestError::Field("bundle_from_seq"))
            );
            let mut forged = body.clone();
            let at = forged.len() - 8;
            forged[at..].copy_from_slice(&from.to_be_bytes());
            let signed = Manifest::encode_signed(&forged, &[5u8; 64]).expect("signs");
            assert_eq!(
                Manifest::decode_signed(&signed).map(|_| ()),
                Err(ManifestError::Field("bundle_from_seq")),
                "from {from}"
            );
        }
    }

    #[test]
    fn every_truncation_is_an_error() {
        let m = sample();
        let body = m.encode_body().expect("encodes");
        let signed = Manifest::encode_signed(&body, &[5u8; 64]).expect("signs");
        for n in 0..signed.len() {
            assert!(Manifest::decode_signed(&signed[..n]).is_err(), "len {n}");
        }
        let mut long = signed.clone();
        long.push(0);
        assert_eq!(
            Manifest::decode_signed(&long).map(|_| ()),
            Err(ManifestError::Trailing)
        );
    }

    #[test]
    fn over_limit_fields_refused() {
        let mut m = sample();
        m.meta.file_name = "x".repeat(MAX_FILE_NAME_LEN + 1);
        assert_eq!(m.encode_body(), Err(ManifestError::Field("file_name")));
        let mut m = sample();
        m.meta.size = MAX_PACKAGE_BYTES + 1;
        assert_eq!(m.encode_body(), Err(ManifestError::Field("size")));
    }

    #[test]
    fn worst_case_manifest_fits_min_mtu() {
        let mut m = sample();
        m.meta.digest = vec![0; MAX_DIGEST_LEN];
        m.meta.channel = "c".repeat(MAX_CHANNEL_LEN);
        m.meta.file_name = "f".repeat(MAX_FILE_NAME_LEN);
        m.meta.content_type = "t".repeat(MAX_CONTENT_TYPE_LEN);
        m.meta.sender_identity = "i".repeat(MAX_IDENTITY_LEN);
        m.signing_key_id = "k".repeat(MAX_KEY_ID_LEN);
        m.recipient_key_id = "k".repeat(MAX_KEY_ID_LEN);
        m.ephemeral = vec![0; MAX_EPHEMERAL_LEN];
        let body = m.encode_body().expect("encodes");
        let signed =
            Manifest::encode_signed(&body, &[0; MAX_SIGNATURE_LEN]).expect("encodes signed");
        assert!(
            signed.len() <= crate::wire::max_manifest_len(crate::wire::MIN_MTU),
            "{} > {}",
            signed.len(),
            crate::wire::max_manifest_len(crate::wire::MIN_MTU)
        );
        // With an inspection record at its limits it fits an Ethernet MTU
        // (at the minimum MTU the sender refuses such a package by name).
        m.meta.inspection = Some(Inspection {
            profile: "p".repeat(MAX_PROFILE_LEN),
            verdict: InspectionVerdict::Reviewed,
            sha256_before: vec![0; MAX_INSPECTION_DIGEST_LEN],
            sha256_after: vec![0; MAX_INSPECTION_DIGEST_LEN],
        });
        let body = m.encode_body().expect("encodes");
        let signed =
            Manifest::encode_signed(&body, &[0; MAX_SIGNATURE_LEN]).expect("encodes signed");
        assert!(signed.len() <= crate::wire::max_manifest_len(1500));
    }

    #[test]
    fn package_id_hex() {
        let id = PackageId([0xab; 16]);
        assert_eq!(PackageId::from_hex(&id.to_hex()), Some(id));
        // Every byte value, as `{:02x}` writes it.
        for first in (0..=255u8).step_by(16) {
            let id = PackageId(std::array::from_fn(|i| first.wrapping_add(i as u8)));
            let want: String = id.0.iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(id.to_hex(), want);
            assert_eq!(PackageId::from_hex(&want), Some(id));
        }
        assert_eq!(PackageId::from_hex("zz"), None);
        assert_eq!(PackageId::from_hex(&"g".repeat(32)), None);
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1500)) {
            let _ = Manifest::decode_signed(&bytes);
        }
    }
}
