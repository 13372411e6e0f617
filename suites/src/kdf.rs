//! The key schedule both suites share, written once over the suite's HMAC:
//! a single-block HKDF, the epoch ratchet and link pairing (each suite
//! derives its datagram tag keys with the HKDF). Only the hash (SHA-256 or SM3) and the labels differ between
//! the suites; the constructions, and therefore the bytes on the wire, are
//! the ones each suite always used.

use ferry_protocol::suite::Secret32;
use zeroize::Zeroizing;

/// Length of every HMAC and HKDF output here (SHA-256 and SM3 alike).
pub(crate) const HASH_LEN: usize = 32;

/// HMAC with a 32-byte output under one key.
pub(crate) trait Hmac32: Sized + Send + Sync {
    /// What the library reports when it fails (`Infallible` for ring).
    type Error;
    /// The keyed MAC.
    fn new(key: &[u8]) -> Result<Self, Self::Error>;
    /// HMAC over the concatenation of `parts`.
    fn mac(&self, parts: &[&[u8]]) -> Result<[u8; HASH_LEN], Self::Error>;
}

/// The labels that keep one suite's keys apart from the other's.
pub(crate) struct Labels {
    /// HKDF salt of the epoch ratchet.
    pub(crate) ratchet_salt: &'static [u8],
    /// HKDF info of the epoch ratchet.
    pub(crate) ratchet_info: &'static [u8],
    /// HKDF info deriving the datagram tag's key (the block cipher's,
    /// and in the GM suite also GHASH's) from an epoch secret.
    pub(crate) datagram_mac_info: &'static [u8],
    /// HKDF salt of link pairing.
    pub(crate) pairing_salt: &'static [u8],
    /// HKDF info prefix (followed by the link name) of the initial epoch
    /// secret.
    pub(crate) pairing_info: &'static [u8],
}

/// HKDF (RFC 5869) with an output of exactly one hash block (L = 32), where
/// expand is the single step T(1) = HMAC(PRK, info || 0x01). Written on
/// the suite's HMAC because a general HKDF `expand` is fallible for lengths
/// we never ask for, and the ratchet must not fail. `info` parts are
/// concatenated; an empty salt equals a zero salt.
pub(crate) fn hkdf_32<M: Hmac32>(
    salt: &[u8],
    ikm: &[u8],
    info: &[&[u8]],
) -> Result<Secret32, M::Error> {
    let prk = Zeroizing::new(M::new(salt)?.mac(&[ikm])?);
    let mut parts: Vec<&[u8]> = Vec::with_capacity(info.len() + 1);
    parts.extend_from_slice(info);
    parts.push(&[1]);
    Ok(Secret32(M::new(&prk[..])?.mac(&parts)?))
}

/// `E(e+1)` from `E(e)`: HKDF(salt = ratchet salt, ikm = E(e), info =
/// ratchet info).
pub(crate) fn ratchet<M: Hmac32>(
    labels: &Labels,
    epoch_secret: &Secret32,
) -> Result<Secret32, M::Error> {
    hkdf_32::<M>(labels.ratchet_salt, &epoch_secret.0, &[labels.ratchet_info])
}

/// Link pairing: the initial epoch secret E(0) both sides compute from
/// their one-time pairing keys' shared secret: HKDF(salt = pairing salt,
/// ikm = shared, info = pairing info || link name).
pub(crate) fn pairing<M: Hmac32>(
    labels: &Labels,
    shared: &[u8],
    link_name: &str,
) -> Result<Secret32, M::Error> {
    hkdf_32::<M>(
        labels.pairing_salt,
        shared,
        &[labels.pairing_info, link_name.as_bytes()],
    )
}

/// Compares two slices without an early exit on the first difference. The
/// lengths are public (tag lengths are fixed by the protocol).
///
/// Written here rather than taken from `ring::constant_time`, which is
/// deprecated and slated for removal.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // Keeps the optimiser from turning the fold into an early-exit compare.
    std::hint::black_box(diff) == 0
}
