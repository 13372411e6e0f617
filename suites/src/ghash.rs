//! GHASH (NIST SP 800-38D) under one key, shared by both suites: the GM
//! suite's SM4-GCM chunks and both suites' datagram tags, which encipher a
//! GHASH of the datagram with one block of the suite's cipher.

use ferry_protocol::suite::{DatagramMac, DATAGRAM_TAG_LEN};
use ghash::universal_hash::{KeyInit, UniversalHash};
use ghash::GHash;

use crate::kdf::constant_time_eq;

/// A 128-bit block cipher under one key: the last step of a datagram tag.
pub(crate) trait Block128: Send + Sync {
    /// What the library reports when it fails (`Infallible` for AES).
    type Error;
    /// `E_K(block)`.
    fn encrypt(&self, block: &[u8; 16]) -> Result<[u8; 16], Self::Error>;
}

/// The datagram tag of both suites' current formats: `E_K(GHASH_H(datagram,
/// lengths))`, `E` the suite's block cipher (AES-256 or SM4) and `K`, `H`
/// derived from the epoch secret by the suite.
///
/// Why not GMAC: GMAC needs a nonce that never repeats under a key, and a
/// datagram has none the sender can promise (a heartbeat after a restart
/// in the same epoch, a redundant send of the same symbol); one repeat
/// would reveal `H` and let anyone forge. Enciphering the universal hash's
/// output instead of masking it needs no nonce: GHASH with its length
/// block is `(l+1)/2^128`-almost-universal for `l`-block inputs, and an
/// almost-universal hash followed by a block cipher is a PRF (forgery
/// chance about `q^2 (l+1) / 2^128` after `q` tags, plus the cipher's own
/// distinguishing advantage). The cost per 1.4 KB datagram is the GHASH
/// (carry-less multiplies, four blocks per reduction) and one block of the
/// cipher, against two hash passes for an HMAC.
pub(crate) struct EncipheredGhash<P> {
    ghash: GhashKey,
    prp: P,
}

impl<P: Block128> EncipheredGhash<P> {
    /// The tag under hash key `h` and the keyed cipher `prp`.
    pub(crate) fn new(h: &[u8; 16], prp: P) -> Self {
        Self {
            ghash: GhashKey::new(h),
            prp,
        }
    }

    fn full_tag(&self, msg: &[u8]) -> Result<[u8; DATAGRAM_TAG_LEN], P::Error> {
        self.prp.encrypt(&self.ghash.hash(msg, &[]))
    }
}

impl<P: Block128> DatagramMac for EncipheredGhash<P> {
    /// On a library failure the tag is all zeros, which no receiver
    /// accepts: the receiver's own computation fails the same way or gives
    /// another value, so the datagram is dropped as forged (fail closed).
    fn tag(&self, msg: &[u8]) -> [u8; DATAGRAM_TAG_LEN] {
        self.full_tag(msg).unwrap_or([0; DATAGRAM_TAG_LEN])
    }

    fn verify(&self, msg: &[u8], tag: &[u8]) -> bool {
        match self.full_tag(msg) {
            Ok(expected) => constant_time_eq(&expected, tag),
            Err(_) => false,
        }
    }
}

/// GHASH under one key: [`ferry_hardening::ghash_simd`] (four blocks per
/// reduction) where the CPU has PCLMULQDQ, else the `ghash` crate. Both
/// give the same bytes; tests compare them.
pub(crate) enum GhashKey {
    /// PCLMULQDQ, four blocks per reduction.
    Simd(ferry_hardening::ghash_simd::Ghash),
    /// The `ghash` crate (its own CPU detection).
    Soft(GHash),
}

impl GhashKey {
    /// The hash under `h`, on the fastest code this CPU runs.
    pub(crate) fn new(h: &[u8; 16]) -> GhashKey {
        match ferry_hardening::ghash_simd::Ghash::new(h) {
            Some(g) => GhashKey::Simd(g),
            None => GhashKey::soft(h),
        }
    }

    /// The `ghash` crate's GHASH, whatever the CPU has.
    pub(crate) fn soft(h: &[u8; 16]) -> GhashKey {
        GhashKey::Soft(GHash::new(ghash::Key::from_slice(h)))
    }

    /// GHASH of `a`, `c` and their lengths block.
    pub(crate) fn hash(&self, a: &[u8], c: &[u8]) -> [u8; 16] {
        match self {
            GhashKey::Simd(g) => g.hash(a, c),
            GhashKey::Soft(g) => ghash_with_lengths(g.clone(), a, c),
        }
    }
}

/// GHASH over `a` and `c`, each zero-padded to whole blocks, and the block
/// `bitlen(a) (64) || bitlen(c) (64)`, as GCM defines it.
fn ghash_with_lengths(mut g: GHash, a: &[u8], c: &[u8]) -> [u8; 16] {
    g.update_padded(a);
    g.update_padded(c);
    let mut lengths = ghash::Block::default();
    lengths[..8].copy_from_slice(&((a.len() as u64) * 8).to_be_bytes());
    lengths[8..].copy_from_slice(&((c.len() as u64) * 8).to_be_bytes());
    g.update(&[lengths]);
    g.finalize().into()
}

/// GHASH written from SP 800-38D's algorithm 1, bit by bit: a reference
/// for the suites' tests, independent of the `ghash` crate's byte order
/// and of the SIMD code.
#[cfg(test)]
pub(crate) fn reference_ghash(h: &[u8; 16], a: &[u8], c: &[u8]) -> [u8; 16] {
    /// GF(2^128) multiplication of SP 800-38D algorithm 1.
    fn gf128_mul(x: u128, y: u128) -> u128 {
        const R: u128 = 0xe1 << 120;
        let (mut z, mut v) = (0u128, y);
        for i in 0..128 {
            if (x >> (127 - i)) & 1 == 1 {
                z ^= v;
            }
            v = if v & 1 == 1 { (v >> 1) ^ R } else { v >> 1 };
        }
        z
    }
    let h = u128::from_be_bytes(*h);
    let mut y = 0u128;
    let mut absorb = |data: &[u8]| {
        for block in data.chunks(16) {
            let mut b = [0u8; 16];
            b[..block.len()].copy_from_slice(block);
            y = gf128_mul(y ^ u128::from_be_bytes(b), h);
        }
    };
    absorb(a);
    absorb(c);
    let lengths = ((a.len() as u128 * 8) << 64) | (c.len() as u128 * 8);
    gf128_mul(y ^ lengths, h).to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simd_ghash_the_ghash_crate_and_the_reference_agree() {
        let data: Vec<u8> = (0..3000u32).map(|i| (i * 7 + 1) as u8).collect();
        let h = [0x66u8; 16];
        let simd = GhashKey::new(&h);
        let soft = GhashKey::soft(&h);
        if !matches!(simd, GhashKey::Simd(_)) {
            eprintln!("no PCLMULQDQ: only the ghash crate runs here");
        }
        for (a, c) in [(0, 0), (1, 0), (0, 1424), (20, 65536 % 3000), (13, 2999)] {
            let (a, c) = (&data[..a], &data[..c]);
            assert_eq!(simd.hash(a, c), soft.hash(a, c));
            assert_eq!(soft.hash(a, c), reference_ghash(&h, a, c));
        }
    }
}
