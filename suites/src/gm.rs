//! The GM crypto suite (SM2, SM3, SM4) through the system OpenSSL 3.
//!
//! It exists so a link can run on the Chinese national algorithms behind
//! the same traits as the `intl` suite next to it ([`ferry_protocol::suite`];
//! the key sets and the key schedule both share are in [`crate::keyring`]
//! and `crate::kdf`):
//! SM2 manifest signatures (GB/T 32918.2, with the signer's distinguishing
//! ID hashed into `Z_A`), SM2 public-key encryption of a fresh package key
//! (GB/T 32918.4), SM4-GCM payload chunks (GB/T 32907 in the GCM mode of
//! NIST SP 800-38D, as RFC 8998 and GB/T 36624 use it), an HMAC-SM3 HKDF
//! (RFC 5869 with SM3, GB/T 32905) for the epoch ratchet and every derived
//! key, and GHASH-then-SM4 datagram tags.
//!
//! This is the suite's payload format 2 (suite byte 3 on the wire). Format
//! 1 sealed chunks with SM4-CTR + HMAC-SM3 and tagged datagrams with
//! HMAC-SM3: three passes over every byte on each side (SM4, the chunk
//! HMAC, the datagram HMAC) besides the SM3 digest, which held a link to
//! 0.4 x OpenSSL's own SM4 speed. GCM folds the chunk MAC into GHASH, a
//! carry-less multiply per block that costs a few percent of SM4, and the
//! datagram tag uses the same GHASH. OpenSSL 3.0 has no SM4-GCM, so the
//! mode is composed here from OpenSSL's SM4-CTR and the `ghash` crate
//! (PCLMULQDQ when the CPU has it), and pinned by RFC 8998's vector.
//!
//! Algorithms are looked up by name at run time (never through OpenSSL's
//! compile-time `OPENSSL_NO_SM*` switches), so this crate builds against an
//! OpenSSL without SM support and [`ensure_available`] refuses it at
//! startup with an operator-readable error instead of failing mid-transfer.
//!
//! Secret keys live in zeroizing buffers or inside OpenSSL key objects
//! (which OpenSSL cleanses when it frees them); `Debug` prints key ids only
//! and no error carries key material. Copies OpenSSL makes internally (hash
//! states, the SM4 key schedule, `DigestBytes` on the stack) are outside
//! this module's reach and are kept as short lived as the hot path allows.

use std::sync::Arc;

use ferry_protocol::manifest::MAX_EPHEMERAL_LEN;
use ferry_protocol::suite::{
    CryptoError, DatagramMac, LinkCrypto, PayloadCipher, PayloadDigest, Secret32, SuiteId,
};
use openssl::bn::{BigNum, BigNumContext};
use openssl::cipher::Cipher;
use openssl::cipher_ctx::CipherCtx;
use openssl::ec::{EcGroup, EcKey, EcPoint, PointConversionForm};
use openssl::error::ErrorStack;
use openssl::hash::{Hasher, MessageDigest};
use openssl::nid::Nid;
use openssl::pkey::{HasPublic, Id, KeyType, PKey, PKeyRef, Private, Public};
use openssl::pkey_ctx::PkeyCtx;
use zeroize::Zeroizing;

use crate::ghash::{Block128, EncipheredGhash, GhashKey};
use crate::kdf::{self, constant_time_eq, Hmac32, Labels, HASH_LEN};
use crate::keyring::{KeyRing, OpeningKeys, SealingKeys, SuiteAlgorithms};

/// The default SM2 distinguishing ID of GB/T 32918 / GM/T 0009, used
/// unless a deployment configures another one on both sides.
pub const DEFAULT_DISTINGUISHING_ID: &[u8] = b"1234567812345678";
/// Longest distinguishing ID: its bit length must fit `ENTL`'s 16 bits.
pub const MAX_DISTINGUISHING_ID_LEN: usize = 8191;
/// Longest DER SM2 signature (two 33-byte INTEGERs in a SEQUENCE).
pub const MAX_SIGNATURE_DER_LEN: usize = 72;
/// Length of the random package key carried SM2-encrypted in the manifest.
pub const PACKAGE_KEY_LEN: usize = 32;
/// Per-chunk overhead: the full 16-byte GCM tag (never truncated; SP
/// 800-38D's short tags are for constrained links, not this one).
pub const CHUNK_TAG_LEN: usize = 16;

/// The labels of the GM key schedule (see `crate::kdf`).
const LABELS: Labels = Labels {
    ratchet_salt: b"ferry/v1/gm/epoch-ratchet",
    ratchet_info: b"next",
    // v2: format 2 derives SM4 and GHASH keys here, not an HMAC key; the
    // new label keeps the two formats' keys apart.
    datagram_mac_info: b"ferry/v2/gm/datagram-mac",
    pairing_salt: b"ferry/v1/gm/pairing",
    pairing_info: b"ferry/v1/gm/epoch0",
};
/// HKDF info prefix (followed by the package context) of the SM4-GCM key
/// (v2: format 1's SM4-CTR key is never reused under GCM).
const PAYLOAD_ENC_INFO: &[u8] = b"ferry/v2/gm/payload-enc";

/// SM3 digest length.
const SM3_LEN: usize = 32;
/// SM3 block length (the HMAC pad length).
const SM3_BLOCK_LEN: usize = 64;
/// SM4 key length.
const SM4_KEY_LEN: usize = 16;
/// SM4 block (and CTR IV) length.
const SM4_BLOCK_LEN: usize = 16;
/// OpenSSL's name of SM4 in counter mode, fetched at run time.
const SM4_CTR_NAME: &str = "SM4-CTR";
/// OpenSSL's name of SM4 on single blocks (the datagram tag's last step).
const SM4_ECB_NAME: &str = "SM4-ECB";
/// GCM nonce length (the 96-bit IV of SP 800-38D, J0 = IV || 0^31 || 1).
const GCM_NONCE_LEN: usize = 12;
/// Longest GCM plaintext (SP 800-38D: 2^39 - 256 bits), where the 32-bit
/// block counter would wrap. OpenSSL's CTR increments all 128 bits, which
/// equals GCM's 32-bit increment only below this length.
const GCM_MAX_LEN: u64 = (1 << 36) - 32;

/// Decodes a fixed-length hex constant at compile time.
const fn hex<const N: usize>(s: &str) -> [u8; N] {
    const fn nibble(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => panic!("not a hex digit"),
        }
    }
    let b = s.as_bytes();
    assert!(b.len() == 2 * N, "hex length");
    let mut out = [0u8; N];
    let mut i = 0;
    while i < N {
        out[i] = nibble(b[2 * i]) << 4 | nibble(b[2 * i + 1]);
        i += 1;
    }
    out
}

/// The SM2 recommended curve (GB/T 32918.5): coefficient `a`.
pub const SM2_A: [u8; 32] = hex("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC");
/// The SM2 recommended curve: coefficient `b`.
pub const SM2_B: [u8; 32] = hex("28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93");
/// The SM2 recommended curve: base point x.
pub const SM2_GX: [u8; 32] =
    hex("32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7");
/// The SM2 recommended curve: base point y.
pub const SM2_GY: [u8; 32] =
    hex("BC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0");

/// GB/T 32905 example 1: SM3("abc").
const SM3_ABC: [u8; 32] = hex("66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0");
/// GB/T 32907 example: key = plaintext.
const SM4_KAT_KEY: [u8; 16] = hex("0123456789abcdeffedcba9876543210");
/// GB/T 32907 example ciphertext of one block.
const SM4_KAT_CIPHERTEXT: [u8; 16] = hex("681edf34d206965e86b3e94f536e4246");
/// GM/T 0042-2015 appendix D.3, second example: key 01..25, 50 x 0xcd.
const HMAC_SM3_KAT: [u8; 32] =
    hex("220bf579ded555393f0159f66c99877822a3ecf610d1552154b41d44b94db3ae");
/// RFC 8998 appendix A.1, SM4-GCM: the key is [`SM4_KAT_KEY`].
const SM4_GCM_KAT_NONCE: [u8; GCM_NONCE_LEN] = hex("00001234567800000000ABCD");
/// RFC 8998 A.1 additional data.
const SM4_GCM_KAT_AAD: [u8; 20] = hex("FEEDFACEDEADBEEFFEEDFACEDEADBEEFABADDAD2");
/// RFC 8998 A.1 plaintext.
const SM4_GCM_KAT_PLAINTEXT: [u8; 64] = hex(concat!(
    "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBBCCCCCCCCCCCCCCCCDDDDDDDDDDDDDDDD",
    "EEEEEEEEEEEEEEEEFFFFFFFFFFFFFFFFEEEEEEEEEEEEEEEEAAAAAAAAAAAAAAAA"
));
/// RFC 8998 A.1 ciphertext.
const SM4_GCM_KAT_CIPHERTEXT: [u8; 64] = hex(concat!(
    "17F399F08C67D5EE19D0DC9969C4BB7D5FD46FD3756489069157B282BB200735",
    "D82710CA5C22F0CCFA7CBF93D496AC15A56834CBCF98C397B4024A2691233B8D"
));
/// RFC 8998 A.1 tag.
const SM4_GCM_KAT_TAG: [u8; 16] = hex("83DE3541E4C2B58177E065A9BF7B62EC");

/// Why the GM suite cannot be used or a GM key or signature was refused.
/// Messages name the thing and say what to do; none carries key material.
#[derive(Debug, thiserror::Error)]
pub enum GmError {
    /// The linked OpenSSL lacks an algorithm of the suite.
    #[error("this OpenSSL build lacks {algorithm}; install an OpenSSL 3 with SM algorithms enabled or use suite = \"intl\" ({library}: {detail})")]
    Unavailable {
        /// `SM2`, `SM3`, `SM4-CTR`, ...
        algorithm: &'static str,
        /// The OpenSSL version string.
        library: &'static str,
        /// What OpenSSL said.
        detail: String,
    },
    /// An algorithm is present but gave a wrong known answer.
    #[error("OpenSSL's {algorithm} gives wrong results in its known-answer self-test ({library}); do not use suite = \"gm\" with this library")]
    SelfTest {
        /// The failing algorithm.
        algorithm: &'static str,
        /// The OpenSSL version string.
        library: &'static str,
    },
    /// Key bytes that do not parse as the expected encoding.
    #[error("{what}: not a valid {encoding} key ({detail}); regenerate it with `openssl genpkey -algorithm SM2` or ferryctl")]
    KeyFormat {
        /// Which key (names the role, never the bytes).
        what: String,
        /// `PKCS#8 DER`, `SPKI DER`, `PEM`.
        encoding: &'static str,
        /// What OpenSSL said.
        detail: String,
    },
    /// A key that parses but is not an SM2 key (another curve or algorithm).
    #[error("{what}: is not an SM2 key (found {found}); the GM suite needs keys on the SM2 curve")]
    NotSm2 {
        /// Which key.
        what: String,
        /// What it is instead.
        found: String,
    },
    /// The distinguishing ID is too long for `ENTL`.
    #[error("SM2 distinguishing ID is {len} bytes; at most {MAX_DISTINGUISHING_ID_LEN} are allowed (the default is \"1234567812345678\")")]
    DistinguishingId {
        /// Its length.
        len: usize,
    },
    /// A key list handed to a constructor is empty.
    #[error("no {what} configured; import at least one")]
    NoKeys {
        /// Which list.
        what: &'static str,
    },
    /// Two keys in one list share an id, so a manifest could not pick one.
    #[error("key id `{id}` appears twice among the {what}; give every key a distinct id")]
    DuplicateKeyId {
        /// The id.
        id: String,
        /// Which list.
        what: &'static str,
    },
    /// An SM2 signature does not verify.
    #[error("SM2 signature does not verify under the given public key and distinguishing ID")]
    BadSignature,
    /// An SM4-GCM tag does not authenticate the ciphertext.
    #[error("SM4-GCM tag does not match: the ciphertext, nonce, additional data or key differ")]
    BadTag,
    /// An OpenSSL operation failed for a reason other than the above.
    #[error("OpenSSL {operation} failed: {detail}")]
    Crypto {
        /// What was attempted.
        operation: &'static str,
        /// What OpenSSL said.
        detail: String,
    },
}

impl GmError {
    fn crypto(operation: &'static str) -> impl FnOnce(ErrorStack) -> GmError {
        move |e| GmError::Crypto {
            operation,
            detail: e.to_string(),
        }
    }
}

impl From<GmError> for CryptoError {
    fn from(e: GmError) -> CryptoError {
        match e {
            GmError::BadSignature => CryptoError::BadSignature,
            other => CryptoError::Signing(other.to_string()),
        }
    }
}

fn unavailable(algorithm: &'static str) -> impl FnOnce(String) -> GmError {
    move |detail| GmError::Unavailable {
        algorithm,
        library: openssl::version::version(),
        detail,
    }
}

fn self_test(algorithm: &'static str) -> GmError {
    GmError::SelfTest {
        algorithm,
        library: openssl::version::version(),
    }
}

/// Checks that the linked OpenSSL provides everything the GM suite uses,
/// by running a known-answer self-test of SM3, HMAC-SM3 and SM4-CTR and a
/// sign/verify, encrypt/decrypt and key agreement round trip on a fresh
/// SM2 key. Call it at startup so a library without SM support fails
/// before any traffic, with an error that says what to install.
pub fn ensure_available() -> Result<(), GmError> {
    // SM3 and HMAC-SM3.
    let md = sm3_md().map_err(unavailable("SM3"))?;
    let digest = Hasher::new(md)
        .and_then(|mut h| {
            h.update(b"abc")?;
            h.finish()
        })
        .map_err(|e| unavailable("SM3")(e.to_string()))?;
    if *digest != SM3_ABC {
        return Err(self_test("SM3"));
    }
    let key: Vec<u8> = (1u8..=0x25).collect();
    let mut tag = [0u8; SM3_LEN];
    HmacSm3::new(&key)
        .and_then(|m| m.mac_into(&[&[0xcd; 50]], &mut tag))
        .map_err(|e| unavailable("HMAC-SM3")(e.to_string()))?;
    if tag != HMAC_SM3_KAT {
        return Err(self_test("HMAC-SM3"));
    }

    // SM4-CTR: the keystream of the first block is E_K(IV), so encrypting
    // zeros under IV = the standard's plaintext yields its ciphertext.
    let cipher = sm4_ctr().map_err(unavailable("SM4-CTR"))?;
    let mut block = [0u8; SM4_BLOCK_LEN];
    ctr_in_place(&cipher, &SM4_KAT_KEY, &SM4_KAT_KEY, &mut block)
        .map_err(|e| unavailable("SM4-CTR")(e.to_string()))?;
    if block != SM4_KAT_CIPHERTEXT {
        return Err(self_test("SM4-CTR"));
    }
    // SM4-GCM as composed here (RFC 8998 A.1), and SM4-ECB, which the
    // datagram tag needs.
    let gcm =
        Sm4Gcm::new(&cipher, &SM4_KAT_KEY).map_err(|e| unavailable("SM4-CTR")(e.to_string()))?;
    let mut data = SM4_GCM_KAT_PLAINTEXT;
    let tag = gcm
        .seal(&SM4_GCM_KAT_NONCE, &SM4_GCM_KAT_AAD, &mut data)
        .map_err(|e| unavailable("SM4-CTR")(e.to_string()))?;
    if data != SM4_GCM_KAT_CIPHERTEXT || tag != SM4_GCM_KAT_TAG {
        return Err(self_test("SM4-GCM"));
    }
    let ecb = sm4_ecb().map_err(unavailable("SM4-ECB"))?;
    let prp =
        Sm4Block::new(&ecb, &SM4_KAT_KEY).map_err(|e| unavailable("SM4-ECB")(e.to_string()))?;
    if prp
        .encrypt(&SM4_KAT_KEY)
        .map_err(|e| unavailable("SM4-ECB")(e.to_string()))?
        != SM4_KAT_CIPHERTEXT
    {
        return Err(self_test("SM4-ECB"));
    }

    // SM2: keygen, sign + verify, encrypt + decrypt, ECDH.
    let sm2 = |e: GmError| match e {
        GmError::Unavailable { .. } | GmError::SelfTest { .. } => e,
        other => unavailable("SM2")(other.to_string()),
    };
    let (private, public) = generate_sm2().map_err(sm2)?;
    let sig = sm2_sign(&private, DEFAULT_DISTINGUISHING_ID, b"self-test").map_err(sm2)?;
    sm2_verify(&public, DEFAULT_DISTINGUISHING_ID, b"self-test", &sig).map_err(sm2)?;
    if sm2_verify(&public, DEFAULT_DISTINGUISHING_ID, b"self-tesT", &sig).is_ok() {
        return Err(self_test("SM2 signature"));
    }
    let recipient = load_public(&public, "self-test public key").map_err(sm2)?;
    let secret = Zeroizing::new([0x5a; PACKAGE_KEY_LEN]);
    let ct = sm2_encrypt(&recipient, &secret[..]).map_err(sm2)?;
    let key = load_private(&private, "self-test private key").map_err(sm2)?;
    let pt = sm2_decrypt(&key, &ct).map_err(sm2)?;
    if pt[..] != secret[..] {
        return Err(self_test("SM2 encryption"));
    }
    let (other_private, other_public) = generate_sm2().map_err(sm2)?;
    let ab = pairing_secret(&private, &other_public, "self-test").map_err(sm2)?;
    let ba = pairing_secret(&other_private, &public, "self-test").map_err(sm2)?;
    if ab != ba {
        return Err(self_test("SM2 key agreement"));
    }
    Ok(())
}

/// SM3 looked up by name, so a library built without it is an error at
/// run time rather than a build failure.
fn sm3_md() -> Result<MessageDigest, String> {
    MessageDigest::from_nid(Nid::SM3).ok_or_else(|| "no SM3 digest".to_owned())
}

/// SM4-CTR fetched from the default provider.
fn sm4_ctr() -> Result<Cipher, String> {
    Cipher::fetch(None, SM4_CTR_NAME, None).map_err(|e| e.to_string())
}

/// SM4-ECB fetched from the default provider.
fn sm4_ecb() -> Result<Cipher, String> {
    Cipher::fetch(None, SM4_ECB_NAME, None).map_err(|e| e.to_string())
}

/// SM4-CTR of `data` in place (encryption and decryption are the same).
fn ctr_in_place(
    cipher: &Cipher,
    key: &[u8; SM4_KEY_LEN],
    iv: &[u8; SM4_BLOCK_LEN],
    data: &mut [u8],
) -> Result<(), ErrorStack> {
    let mut ctx = CipherCtx::new()?;
    ctx.encrypt_init(Some(cipher), Some(key), Some(iv))?;
    let len = data.len();
    // CTR is a stream mode: the output is exactly as long as the input and
    // nothing is held back for a final call.
    ctx.cipher_update_inplace(data, len)?;
    Ok(())
}

/// SM3 of `data` (GB/T 32905).
///
/// # Panics
/// If OpenSSL has no SM3 or fails to hash; [`ensure_available`] rules both
/// out at startup. [`try_sm3`] is the fallible form.
pub fn sm3(data: &[u8]) -> [u8; 32] {
    match sm3_parts(&[data]) {
        Ok(d) => d,
        // SM3 has no failure mode on valid input besides a missing
        // algorithm or no memory.
        Err(e) => panic!("{e}"),
    }
}

/// SM3 of `data`, or [`GmError::Unavailable`] without SM3.
pub fn try_sm3(data: &[u8]) -> Result<[u8; 32], GmError> {
    sm3_parts(&[data])
}

/// HMAC-SM3 of `data` under `key` (GM/T 0042), for other crates and
/// interop checks.
pub fn hmac_sm3(key: &[u8], data: &[u8]) -> Result<[u8; 32], GmError> {
    sm3_md().map_err(unavailable("SM3"))?;
    let mut out = [0u8; SM3_LEN];
    HmacSm3::new(key)
        .and_then(|m| m.mac_into(&[data], &mut out))
        .map_err(GmError::crypto("HMAC-SM3"))?;
    Ok(out)
}

/// SM4-GCM encryption (RFC 8998, GB/T 36624) of `data` in place with a
/// 96-bit nonce; returns the 16-byte tag. What a payload chunk is sealed
/// with, exposed for known-answer and interop checks.
pub fn sm4_gcm_encrypt(
    key: &[u8; SM4_KEY_LEN],
    nonce: &[u8; GCM_NONCE_LEN],
    aad: &[u8],
    data: &mut [u8],
) -> Result<[u8; 16], GmError> {
    let cipher = sm4_ctr().map_err(unavailable("SM4-CTR"))?;
    Sm4Gcm::new(&cipher, key)
        .and_then(|g| g.seal(nonce, aad, data))
        .map_err(GmError::crypto("SM4-GCM encryption"))
}

/// SM4-GCM decryption in place: [`GmError::BadTag`] (and `data` untouched)
/// unless `tag` authenticates `aad` and `data`.
pub fn sm4_gcm_decrypt(
    key: &[u8; SM4_KEY_LEN],
    nonce: &[u8; GCM_NONCE_LEN],
    aad: &[u8],
    data: &mut [u8],
    tag: &[u8],
) -> Result<(), GmError> {
    let cipher = sm4_ctr().map_err(unavailable("SM4-CTR"))?;
    match Sm4Gcm::new(&cipher, key).and_then(|g| g.open(nonce, aad, data, tag)) {
        Ok(true) => Ok(()),
        Ok(false) => Err(GmError::BadTag),
        Err(e) => Err(GmError::crypto("SM4-GCM decryption")(e)),
    }
}

/// SM3 over the concatenation of `parts`.
fn sm3_parts(parts: &[&[u8]]) -> Result<[u8; 32], GmError> {
    let md = sm3_md().map_err(unavailable("SM3"))?;
    let digest = Hasher::new(md)
        .and_then(|mut h| {
            for p in parts {
                h.update(p)?;
            }
            h.finish()
        })
        .map_err(GmError::crypto("SM3"))?;
    let mut out = [0u8; 32];
    out.copy_from_slice(&digest);
    Ok(out)
}

/// HMAC-SM3 (RFC 2104) with the key's inner and outer hash states computed
/// once, so each MAC costs two state copies plus the hashing itself. Used
/// for datagram tags (once per datagram), chunk tags and the HKDF.
struct HmacSm3 {
    inner: Hasher,
    outer: Hasher,
}

impl HmacSm3 {
    fn new(key: &[u8]) -> Result<Self, ErrorStack> {
        // Without SM3 the stack is empty; callers that can meet a library
        // without SM3 check `sm3_md` first for a clear error.
        let md = sm3_md().map_err(|_| ErrorStack::get())?;
        let mut block = Zeroizing::new([0u8; SM3_BLOCK_LEN]);
        if key.len() > SM3_BLOCK_LEN {
            let mut h = Hasher::new(md)?;
            h.update(key)?;
            block[..SM3_LEN].copy_from_slice(&h.finish()?);
        } else {
            block[..key.len()].copy_from_slice(key);
        }
        let mut pad = Zeroizing::new([0u8; SM3_BLOCK_LEN]);
        for (p, k) in pad.iter_mut().zip(block.iter()) {
            *p = k ^ 0x36;
        }
        let mut inner = Hasher::new(md)?;
        inner.update(&pad[..])?;
        for (p, k) in pad.iter_mut().zip(block.iter()) {
            *p = k ^ 0x5c;
        }
        let mut outer = Hasher::new(md)?;
        outer.update(&pad[..])?;
        Ok(Self { inner, outer })
    }

    /// HMAC over the concatenation of `parts`.
    fn mac_into(&self, parts: &[&[u8]], out: &mut [u8; SM3_LEN]) -> Result<(), ErrorStack> {
        let mut h = self.inner.clone();
        for p in parts {
            h.update(p)?;
        }
        let inner = h.finish()?;
        let mut o = self.outer.clone();
        o.update(&inner)?;
        out.copy_from_slice(&o.finish()?);
        Ok(())
    }
}

impl Hmac32 for HmacSm3 {
    type Error = ErrorStack;

    fn new(key: &[u8]) -> Result<Self, ErrorStack> {
        HmacSm3::new(key)
    }

    fn mac(&self, parts: &[&[u8]]) -> Result<[u8; HASH_LEN], ErrorStack> {
        let mut out = [0u8; HASH_LEN];
        self.mac_into(parts, &mut out)?;
        Ok(out)
    }
}

/// HKDF-SM3 (RFC 5869 with SM3) with an output of one hash block (L = 32);
/// see `crate::kdf::hkdf_32`.
fn hkdf_sm3_32(salt: &[u8], ikm: &[u8], info: &[&[u8]]) -> Result<Secret32, ErrorStack> {
    kdf::hkdf_32::<HmacSm3>(salt, ikm, info)
}

/// Link primitives of the GM suite: HKDF-SM3 ratchet, GHASH-then-SM4
/// datagram tags, SM3 digests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct GmLink;

impl LinkCrypto for GmLink {
    fn suite(&self) -> SuiteId {
        SuiteId::Gm
    }

    /// # Panics
    /// If OpenSSL's SM3 fails, which [`ensure_available`] rules out at
    /// startup: returning any fixed value instead would make every later
    /// key predictable.
    fn ratchet(&self, epoch_secret: &Secret32) -> Secret32 {
        match kdf::ratchet::<HmacSm3>(&LABELS, epoch_secret) {
            Ok(next) => next,
            Err(e) => panic!("OpenSSL HMAC-SM3 failed after the startup self-test passed: {e}"),
        }
    }

    /// # Panics
    /// Like [`GmLink::ratchet`], if OpenSSL's SM3 fails.
    fn datagram_mac(&self, epoch_secret: &Secret32) -> Box<dyn DatagramMac> {
        match ghash_sm4_mac(epoch_secret) {
            Ok(mac) => Box::new(mac),
            Err(e) => {
                panic!("OpenSSL HMAC-SM3 or SM4 failed after the startup self-test passed: {e}")
            }
        }
    }

    fn new_digest(&self) -> Box<dyn PayloadDigest> {
        match sm3_md().ok().and_then(|md| Hasher::new(md).ok()) {
            Some(hasher) => Box::new(Sm3Digest::Inline {
                hasher,
                absorbed: 0,
            }),
            None => Box::new(Sm3Digest::Failed),
        }
    }

    fn digest_len(&self) -> usize {
        SM3_LEN
    }
}

/// Bytes of a package hashed on the caller's thread before the rest of its
/// SM3 moves to a thread of its own. Small packages (the many-small-files
/// case) never pay for a thread; a large one pays one spawn per several
/// milliseconds of hashing.
const SM3_OFFLOAD_AFTER_BYTES: u64 = 4 << 20;
/// Plaintext pieces queued for the SM3 thread at most: when it falls
/// behind, `update` waits, so one package holds at most this many pieces
/// (each as long as the receiver's pieces, one payload chunk).
const SM3_QUEUE_PIECES: usize = 4;

/// Incremental SM3 of package plaintext. On the egress side SM3 was the
/// largest cost left on the receive thread (OpenSSL's C SM3, about a third
/// of SM4-GCM's speed), which bounds the whole link, while the other core
/// had room: past [`SM3_OFFLOAD_AFTER_BYTES`] the hashing goes on in a
/// thread of the package's own, fed in order through a bounded queue. The
/// digest is the same either way; only where it is computed changes.
///
/// After an OpenSSL failure (or a lost SM3 thread) `finish` returns an
/// empty digest, which never matches a manifest's 32-byte digest, so the
/// package fails closed.
enum Sm3Digest {
    /// Hashing on the caller's thread.
    Inline {
        hasher: Hasher,
        absorbed: u64,
    },
    /// Hashing on its own thread, which returns the hasher when the queue
    /// closes.
    Offloaded {
        queue: std::sync::mpsc::SyncSender<Vec<u8>>,
        worker: std::thread::JoinHandle<Option<Hasher>>,
    },
    Failed,
}

impl Sm3Digest {
    /// Moves the hashing to a thread; stays inline if no thread starts.
    fn offload(hasher: Hasher, absorbed: u64) -> Sm3Digest {
        let (queue, pieces) = std::sync::mpsc::sync_channel::<Vec<u8>>(SM3_QUEUE_PIECES);
        // The hasher moves into the thread only if the thread starts.
        let slot = std::sync::Arc::new(std::sync::Mutex::new(Some(hasher)));
        let theirs = std::sync::Arc::clone(&slot);
        let spawned = std::thread::Builder::new()
            .name("ferry-sm3".into())
            .spawn(move || {
                let mut hasher = theirs.lock().ok()?.take()?;
                for piece in pieces {
                    hasher.update(&piece).ok()?;
                }
                Some(hasher)
            });
        match spawned {
            Ok(worker) => Sm3Digest::Offloaded { queue, worker },
            // No thread (limits reached): hash here, as before. The thread
            // never ran, so the hasher is still in its slot.
            Err(_) => match slot.lock().ok().and_then(|mut s| s.take()) {
                Some(hasher) => Sm3Digest::Inline { hasher, absorbed },
                None => Sm3Digest::Failed,
            },
        }
    }
}

impl PayloadDigest for Sm3Digest {
    fn update(&mut self, data: &[u8]) {
        let state = std::mem::replace(self, Sm3Digest::Failed);
        *self = match state {
            Sm3Digest::Inline {
                mut hasher,
                absorbed,
            } => {
                if hasher.update(data).is_err() {
                    Sm3Digest::Failed
                } else {
                    let absorbed = absorbed + data.len() as u64;
                    if absorbed < SM3_OFFLOAD_AFTER_BYTES {
                        Sm3Digest::Inline { hasher, absorbed }
                    } else {
                        Sm3Digest::offload(hasher, absorbed)
                    }
                }
            }
            Sm3Digest::Offloaded { queue, worker } => {
                // A closed queue means the thread stopped on an OpenSSL
                // error: the digest has failed.
                if queue.send(data.to_vec()).is_ok() {
                    Sm3Digest::Offloaded { queue, worker }
                } else {
                    Sm3Digest::Failed
                }
            }
            Sm3Digest::Failed => Sm3Digest::Failed,
        };
    }

    fn finish(self: Box<Self>) -> Vec<u8> {
        let hasher = match *self {
            Sm3Digest::Inline { hasher, .. } => Some(hasher),
            Sm3Digest::Offloaded { queue, worker } => {
                drop(queue);
                worker.join().ok().flatten()
            }
            Sm3Digest::Failed => None,
        };
        hasher
            .and_then(|mut h| h.finish().ok())
            .map(|d| d.to_vec())
            .unwrap_or_default()
    }
}

/// SM4-GCM (SP 800-38D with SM4; RFC 8998, GB/T 36624) under one key,
/// composed from SM4 in counter mode and GHASH because OpenSSL 3.0 has no
/// SM4-GCM. The counter mode is [`ferry_hardening::sm4_simd`] (SM4 on the
/// AES instructions, several times OpenSSL's table-driven SM4) where the CPU
/// has AES-NI, else OpenSSL's SM4-CTR; both give the same bytes (tests
/// compare them) and both keep the key schedule from chunk to chunk.
struct Sm4Gcm {
    ctr: Sm4Stream,
    /// GHASH keyed with `H = E_K(0^128)`. Both implementations wipe `H`
    /// when dropped (the `polyval` crate through its `zeroize` feature).
    ghash: GhashKey,
}

/// SM4 in counter mode under one key.
enum Sm4Stream {
    /// SM4 on the AES instructions.
    Simd(ferry_hardening::sm4_simd::Sm4Ctr),
    /// OpenSSL's SM4-CTR. A `RefCell` because [`PayloadCipher`] seals
    /// through `&self` and a package cipher is used by one thread at a time
    /// (it is `Send`, not shared).
    OpenSsl(std::cell::RefCell<CipherCtx>),
}

impl Sm4Stream {
    fn openssl(cipher: &Cipher, key: &[u8; SM4_KEY_LEN]) -> Result<Self, ErrorStack> {
        let mut ctx = CipherCtx::new()?;
        ctx.encrypt_init(Some(cipher), Some(key), Some(&[0u8; SM4_BLOCK_LEN]))?;
        Ok(Sm4Stream::OpenSsl(std::cell::RefCell::new(ctx)))
    }

    /// XORs `first` and then `rest` with the keystream from `counter` on:
    /// `first` takes the first block (GCM's tag mask, or `H`), `rest` the
    /// blocks after it.
    fn apply(
        &self,
        counter: &[u8; SM4_BLOCK_LEN],
        first: &mut [u8; SM4_BLOCK_LEN],
        rest: Option<&mut [u8]>,
    ) -> Result<(), ErrorStack> {
        match self {
            Sm4Stream::Simd(sm4) => {
                sm4.apply_keystream(counter, first);
                if let Some(rest) = rest {
                    let next = u128::from_be_bytes(*counter).wrapping_add(1);
                    sm4.apply_keystream(&next.to_be_bytes(), rest);
                }
                Ok(())
            }
            Sm4Stream::OpenSsl(ctx) => {
                let mut ctx = ctx.try_borrow_mut().map_err(|_| ErrorStack::get())?;
                // No cipher and no key: OpenSSL keeps the key schedule and
                // resets only the IV and the stream position.
                ctx.encrypt_init(None, None, Some(counter))?;
                ctx.cipher_update_inplace(first, SM4_BLOCK_LEN)?;
                if let Some(rest) = rest {
                    let len = rest.len();
                    // CTR is a stream mode: the stream goes on where the
                    // first block left it, and nothing is held back.
                    ctx.cipher_update_inplace(rest, len)?;
                }
                Ok(())
            }
        }
    }
}

impl Sm4Gcm {
    fn new(cipher: &Cipher, key: &[u8; SM4_KEY_LEN]) -> Result<Self, ErrorStack> {
        match ferry_hardening::sm4_simd::Sm4Ctr::new(key) {
            Some(sm4) => Self::with(Sm4Stream::Simd(sm4)),
            None => Self::with(Sm4Stream::openssl(cipher, key)?),
        }
    }

    fn with(ctr: Sm4Stream) -> Result<Self, ErrorStack> {
        // With counter 0 the first keystream block is E_K(0^128) = H.
        let mut h = Zeroizing::new([0u8; SM4_BLOCK_LEN]);
        ctr.apply(&[0u8; SM4_BLOCK_LEN], &mut h, None)?;
        let ghash = GhashKey::new(&h);
        Ok(Self { ctr, ghash })
    }

    /// `J0 = nonce || 0^31 || 1`: its keystream block `E_K(J0)` masks the
    /// tag and the data starts at `inc32(J0)`.
    fn j0(nonce: &[u8; GCM_NONCE_LEN]) -> [u8; SM4_BLOCK_LEN] {
        let mut j0 = [0u8; SM4_BLOCK_LEN];
        j0[..GCM_NONCE_LEN].copy_from_slice(nonce);
        j0[SM4_BLOCK_LEN - 1] = 1;
        j0
    }

    /// `E_K(J0) xor GHASH_H(aad || pad || ciphertext || pad || lengths)`.
    fn tag(&self, mask: &[u8; 16], aad: &[u8], ciphertext: &[u8]) -> [u8; 16] {
        let s = self.ghash.hash(aad, ciphertext);
        let mut tag = [0u8; 16];
        for ((t, a), b) in tag.iter_mut().zip(s.iter()).zip(mask) {
            *t = a ^ b;
        }
        tag
    }

    fn too_long(len: usize) -> Result<(), ErrorStack> {
        if len as u64 > GCM_MAX_LEN || i32::try_from(len).is_err() {
            // An empty stack: callers map any error to their own variant.
            return Err(ErrorStack::get());
        }
        Ok(())
    }

    /// Encrypts `data` in place and returns the tag.
    fn seal(
        &self,
        nonce: &[u8; GCM_NONCE_LEN],
        aad: &[u8],
        data: &mut [u8],
    ) -> Result<[u8; 16], ErrorStack> {
        Self::too_long(data.len())?;
        let mut mask = [0u8; SM4_BLOCK_LEN];
        self.ctr.apply(&Self::j0(nonce), &mut mask, Some(data))?;
        Ok(self.tag(&mask, aad, data))
    }

    /// Checks `tag` over `data` and only then decrypts it in place; on a
    /// wrong tag `data` is left as it was and the result is `Ok(false)`.
    fn open(
        &self,
        nonce: &[u8; GCM_NONCE_LEN],
        aad: &[u8],
        data: &mut [u8],
        tag: &[u8],
    ) -> Result<bool, ErrorStack> {
        Self::too_long(data.len())?;
        let j0 = Self::j0(nonce);
        let mut mask = [0u8; SM4_BLOCK_LEN];
        self.ctr.apply(&j0, &mut mask, None)?;
        if !constant_time_eq(&self.tag(&mask, aad, data), tag) {
            return Ok(false);
        }
        let mut again = [0u8; SM4_BLOCK_LEN];
        self.ctr.apply(&j0, &mut again, Some(data))?;
        Ok(true)
    }
}

/// SM4 on single blocks under one key (an ECB context whose key schedule
/// is computed once).
struct Sm4Block(std::sync::Mutex<CipherCtx>);

impl Sm4Block {
    fn new(ecb: &Cipher, key: &[u8; SM4_KEY_LEN]) -> Result<Self, ErrorStack> {
        let mut ctx = CipherCtx::new()?;
        ctx.encrypt_init(Some(ecb), Some(key), None)?;
        // Whole blocks only: nothing is held back for a final call.
        ctx.set_padding(false);
        Ok(Self(std::sync::Mutex::new(ctx)))
    }
}

impl Block128 for Sm4Block {
    type Error = ErrorStack;

    fn encrypt(&self, block: &[u8; SM4_BLOCK_LEN]) -> Result<[u8; SM4_BLOCK_LEN], ErrorStack> {
        // A poisoned lock only means another thread panicked mid-call; the
        // context holds no partial block (padding is off, input is whole
        // blocks), so it is still good.
        let mut ctx = self.0.lock().unwrap_or_else(|p| p.into_inner());
        // OpenSSL's update wants room for one block more than the input.
        let mut out = Zeroizing::new([0u8; 2 * SM4_BLOCK_LEN]);
        let n = ctx.cipher_update(block, Some(&mut out[..]))?;
        if n != SM4_BLOCK_LEN {
            return Err(ErrorStack::get());
        }
        let mut block = [0u8; SM4_BLOCK_LEN];
        block.copy_from_slice(&out[..SM4_BLOCK_LEN]);
        Ok(block)
    }
}

/// The format-2 datagram tag: `SM4_K(GHASH_H(datagram, lengths))` (see
/// [`EncipheredGhash`] for why), with `K || H` = HKDF-SM3(no salt, ikm = E,
/// info = "ferry/v2/gm/datagram-mac").
fn ghash_sm4_mac(epoch_secret: &Secret32) -> Result<EncipheredGhash<Sm4Block>, ErrorStack> {
    let keys = hkdf_sm3_32(&[], &epoch_secret.0, &[LABELS.datagram_mac_info])?;
    let mut k = Zeroizing::new([0u8; SM4_KEY_LEN]);
    k.copy_from_slice(&keys.0[..SM4_KEY_LEN]);
    let mut h = Zeroizing::new([0u8; 16]);
    h.copy_from_slice(&keys.0[SM4_KEY_LEN..]);
    let ecb = sm4_ecb().map_err(|_| ErrorStack::get())?;
    Ok(EncipheredGhash::new(&h, Sm4Block::new(&ecb, &k)?))
}

/// SM4-GCM chunks under a per-package key. The key is fresh for every
/// package (new random package key), so the chunk position alone makes
/// the nonces unique: chunk `i` uses `i (8 bytes, big-endian) || 0 0 0 ||
/// last (1 byte, 0 or 1)`. Putting the position and the last flag in the
/// nonce binds them to the tag, so a swapped, reordered or cut-short
/// stream fails; the additional data is empty.
struct GmPayloadCipher(Sm4Gcm);

impl GmPayloadCipher {
    fn nonce(index: u64, last: bool) -> [u8; GCM_NONCE_LEN] {
        let mut n = [0u8; GCM_NONCE_LEN];
        n[..8].copy_from_slice(&index.to_be_bytes());
        n[GCM_NONCE_LEN - 1] = u8::from(last);
        n
    }
}

impl PayloadCipher for GmPayloadCipher {
    fn overhead(&self) -> usize {
        CHUNK_TAG_LEN
    }

    fn seal_chunk(&self, index: u64, last: bool, buf: &mut Vec<u8>) -> Result<(), CryptoError> {
        // OpenSSL fails here only without memory; report it against the
        // chunk like the intl suite does.
        let tag = self
            .0
            .seal(&Self::nonce(index, last), &[], buf)
            .map_err(|_| CryptoError::BadChunk { chunk: index })?;
        buf.extend_from_slice(&tag);
        Ok(())
    }

    fn open_chunk(&self, index: u64, last: bool, buf: &mut Vec<u8>) -> Result<(), CryptoError> {
        if buf.len() < CHUNK_TAG_LEN {
            return Err(CryptoError::ShortChunk);
        }
        let ciphertext_len = buf.len() - CHUNK_TAG_LEN;
        let (ciphertext, tag) = buf.split_at_mut(ciphertext_len);
        // `open` verifies before it decrypts: unauthenticated plaintext
        // never exists.
        match self.0.open(&Self::nonce(index, last), &[], ciphertext, tag) {
            Ok(true) => {
                buf.truncate(ciphertext_len);
                Ok(())
            }
            _ => Err(CryptoError::BadChunk { chunk: index }),
        }
    }
}

/// The package cipher: with
/// `ikm = package_key || ephemeral || recipient_spki`, the SM4-GCM key is
/// the first 16 bytes of HKDF-SM3(salt = E, ikm,
/// info = "ferry/v2/gm/payload-enc" || context).
/// Binding the SM2 ciphertext and the recipient key keeps a package key
/// from being replayed under another manifest or key.
fn package_cipher(
    cipher: &Arc<Cipher>,
    epoch_secret: &Secret32,
    package_key: &[u8],
    ephemeral: &[u8],
    recipient_spki: &[u8],
    context: &[u8],
) -> Result<GmPayloadCipher, ErrorStack> {
    let mut ikm = Zeroizing::new(Vec::with_capacity(
        package_key.len() + ephemeral.len() + recipient_spki.len(),
    ));
    ikm.extend_from_slice(package_key);
    ikm.extend_from_slice(ephemeral);
    ikm.extend_from_slice(recipient_spki);
    let enc = hkdf_sm3_32(&epoch_secret.0, &ikm, &[PAYLOAD_ENC_INFO, context])?;
    let mut enc_key = Zeroizing::new([0u8; SM4_KEY_LEN]);
    enc_key.copy_from_slice(&enc.0[..SM4_KEY_LEN]);
    Ok(GmPayloadCipher(Sm4Gcm::new(cipher, &enc_key)?))
}

fn check_id(id: &[u8]) -> Result<(), GmError> {
    if id.len() > MAX_DISTINGUISHING_ID_LEN {
        return Err(GmError::DistinguishingId { len: id.len() });
    }
    Ok(())
}

/// The key's public half as a low-level EC key. OpenSSL 3 gives keys it
/// decodes as SM2 no legacy id and refuses `EVP_PKEY_get1_EC_KEY` on them,
/// so the point is read back from the key's own SPKI encoding.
fn ec_public<T: HasPublic>(key: &PKeyRef<T>) -> Result<EcKey<Public>, ErrorStack> {
    EcKey::public_key_from_der(&key.public_key_to_der()?)
}

/// The key's private half as a low-level EC key (through its SEC1
/// encoding, which carries the curve), for ECDH.
fn ec_private(key: &PKeyRef<Private>) -> Result<EcKey<Private>, ErrorStack> {
    let sec1 = Zeroizing::new(key.private_key_to_der()?);
    EcKey::private_key_from_der(&sec1)
}

/// Refuses a key that is not of OpenSSL type SM2 on the SM2 curve. An EC
/// key on the SM2 curve typed EC (as `openssl genpkey -algorithm EC
/// -pkeyopt ec_paramgen_curve:SM2` makes in memory) would make OpenSSL sign
/// with ECDSA, so it is refused with an explanation.
fn require_sm2<T: HasPublic>(key: &PKeyRef<T>, what: &str) -> Result<(), GmError> {
    let not_sm2 = |found: String| GmError::NotSm2 {
        what: what.to_owned(),
        found,
    };
    let curve = ec_public(key).ok().map(|ec| ec.group().curve_name());
    if key.is_a(KeyType::EC) {
        return Err(not_sm2(match curve {
            Some(Some(Nid::SM2)) => {
                "an EC key on the SM2 curve, typed EC (OpenSSL would use ECDSA with it)".to_owned()
            }
            Some(Some(nid)) => format!(
                "an EC key on {}",
                nid.short_name().unwrap_or("another curve")
            ),
            _ => "an EC key on explicit curve parameters".to_owned(),
        }));
    }
    match curve {
        Some(Some(Nid::SM2)) => Ok(()),
        Some(_) => Err(not_sm2("a key on another curve".to_owned())),
        None => Err(not_sm2(if key.is_a(KeyType::RSA) {
            "an RSA key".to_owned()
        } else if key.is_a(KeyType::ED25519) {
            "an Ed25519 key".to_owned()
        } else {
            "a key that is not on an elliptic curve".to_owned()
        })),
    }
}

fn load_private(pkcs8_der: &[u8], what: &str) -> Result<PKey<Private>, GmError> {
    let key = PKey::private_key_from_pkcs8(pkcs8_der).map_err(|e| GmError::KeyFormat {
        what: what.to_owned(),
        encoding: "PKCS#8 DER",
        detail: e.to_string(),
    })?;
    require_sm2(&key, what)?;
    Ok(key)
}

fn load_public(spki_der: &[u8], what: &str) -> Result<PKey<Public>, GmError> {
    let key = PKey::public_key_from_der(spki_der).map_err(|e| GmError::KeyFormat {
        what: what.to_owned(),
        encoding: "SPKI DER",
        detail: e.to_string(),
    })?;
    require_sm2(&key, what)?;
    Ok(key)
}

/// `Z_A = SM3(ENTL || ID || a || b || xG || yG || xA || yA)` (GB/T 32918.2
/// section 5.5), computed here because the `openssl` crate does not expose
/// `EVP_PKEY_CTX_set1_id`.
fn z_a<T: HasPublic>(key: &PKeyRef<T>, id: &[u8]) -> Result<[u8; 32], GmError> {
    check_id(id)?;
    let ec = ec_public(key).map_err(GmError::crypto("reading the SM2 public point"))?;
    let mut ctx = BigNumContext::new().map_err(GmError::crypto("BN_CTX_new"))?;
    let point = ec
        .public_key()
        .to_bytes(ec.group(), PointConversionForm::UNCOMPRESSED, &mut ctx)
        .map_err(GmError::crypto("encoding the SM2 public point"))?;
    if point.len() != 65 || point[0] != 0x04 {
        return Err(GmError::Crypto {
            operation: "encoding the SM2 public point",
            detail: format!("unexpected {}-byte encoding", point.len()),
        });
    }
    // check_id bounds the length to 8191 bytes, so the bit length fits.
    let entl =
        u16::try_from(id.len() * 8).map_err(|_| GmError::DistinguishingId { len: id.len() })?;
    sm3_parts(&[
        &entl.to_be_bytes(),
        id,
        &SM2_A,
        &SM2_B,
        &SM2_GX,
        &SM2_GY,
        &point[1..],
    ])
}

/// The SM2 signature (DER) of `e = SM3(Z_A || msg)`: OpenSSL 3's SM2
/// signature operation on a 32-byte input signs it as `e` directly.
fn sign_with(key: &PKey<Private>, z: &[u8; 32], msg: &[u8]) -> Result<Vec<u8>, GmError> {
    let e = sm3_parts(&[z, msg])?;
    let mut ctx = PkeyCtx::new(key).map_err(GmError::crypto("SM2 signing"))?;
    ctx.sign_init().map_err(GmError::crypto("SM2 signing"))?;
    let mut sig = Vec::with_capacity(MAX_SIGNATURE_DER_LEN);
    ctx.sign_to_vec(&e, &mut sig)
        .map_err(GmError::crypto("SM2 signing"))?;
    Ok(sig)
}

fn verify_with(key: &PKey<Public>, z: &[u8; 32], msg: &[u8], sig: &[u8]) -> Result<(), GmError> {
    if sig.is_empty() || sig.len() > MAX_SIGNATURE_DER_LEN {
        return Err(GmError::BadSignature);
    }
    let e = sm3_parts(&[z, msg])?;
    let mut ctx = PkeyCtx::new(key).map_err(GmError::crypto("SM2 verification"))?;
    ctx.verify_init()
        .map_err(GmError::crypto("SM2 verification"))?;
    // A malformed DER signature is an OpenSSL error rather than `false`;
    // both mean "does not verify".
    match ctx.verify(&e, sig) {
        Ok(true) => Ok(()),
        _ => Err(GmError::BadSignature),
    }
}

fn sm2_encrypt(recipient: &PKey<Public>, plaintext: &[u8]) -> Result<Vec<u8>, GmError> {
    let mut ctx = PkeyCtx::new(recipient).map_err(GmError::crypto("SM2 encryption"))?;
    ctx.encrypt_init()
        .map_err(GmError::crypto("SM2 encryption"))?;
    let mut out = Vec::new();
    ctx.encrypt_to_vec(plaintext, &mut out)
        .map_err(GmError::crypto("SM2 encryption"))?;
    Ok(out)
}

fn sm2_decrypt(key: &PKey<Private>, ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>, GmError> {
    let mut ctx = PkeyCtx::new(key).map_err(GmError::crypto("SM2 decryption"))?;
    ctx.decrypt_init()
        .map_err(GmError::crypto("SM2 decryption"))?;
    let mut out = Zeroizing::new(Vec::new());
    ctx.decrypt_to_vec(ciphertext, &mut out)
        .map_err(GmError::crypto("SM2 decryption"))?;
    Ok(out)
}

/// A fresh SM2 key pair: `(PKCS#8 DER private key, SPKI DER public key)`.
pub fn generate_sm2() -> Result<(Zeroizing<Vec<u8>>, Vec<u8>), GmError> {
    let key = PkeyCtx::new_id(Id::SM2)
        .and_then(|mut ctx| {
            ctx.keygen_init()?;
            ctx.keygen()
        })
        .map_err(|e| unavailable("SM2")(e.to_string()))?;
    let private = Zeroizing::new(
        key.private_key_to_pkcs8()
            .map_err(GmError::crypto("encoding an SM2 private key"))?,
    );
    let public = key
        .public_key_to_der()
        .map_err(GmError::crypto("encoding an SM2 public key"))?;
    Ok((private, public))
}

/// The SPKI DER public key of an SM2 PKCS#8 DER private key.
pub fn sm2_public_from_private(pkcs8: &[u8]) -> Result<Vec<u8>, GmError> {
    let key = load_private(pkcs8, "SM2 private key")?;
    key.public_key_to_der()
        .map_err(GmError::crypto("encoding an SM2 public key"))
}

/// SM2 signature (DER) of `msg` by the PKCS#8 DER key, with distinguishing
/// ID `id` (for key bundles and other crates).
pub fn sm2_sign(pkcs8: &[u8], id: &[u8], msg: &[u8]) -> Result<Vec<u8>, GmError> {
    let key = load_private(pkcs8, "SM2 signing key")?;
    let z = z_a(&key, id)?;
    sign_with(&key, &z, msg)
}

/// Checks an SM2 signature (DER) of `msg` under the SPKI DER key and
/// distinguishing ID `id`; [`GmError::BadSignature`] if it does not verify.
pub fn sm2_verify(spki: &[u8], id: &[u8], msg: &[u8], sig: &[u8]) -> Result<(), GmError> {
    let key = load_public(spki, "SM2 verifying key")?;
    let z = z_a(&key, id)?;
    verify_with(&key, &z, msg, sig)
}

/// SM2 public-key encryption (GB/T 32918.4, SM3, GM/T 0009 DER
/// ciphertext) of `plaintext` to the SPKI DER key: what a manifest's
/// key-transport field holds, here for interop checks.
pub fn sm2_encrypt_to(spki: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, GmError> {
    let key = load_public(spki, "SM2 encryption key")?;
    sm2_encrypt(&key, plaintext)
}

/// SM2 decryption of a GM/T 0009 DER ciphertext with the PKCS#8 DER key.
pub fn sm2_decrypt_with(pkcs8: &[u8], ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>, GmError> {
    let key = load_private(pkcs8, "SM2 decryption key")?;
    sm2_decrypt(&key, ciphertext)
}

/// `Z_A` of an SPKI DER public key and ID (exposed for interop checks).
pub fn sm2_z(spki: &[u8], id: &[u8]) -> Result<[u8; 32], GmError> {
    let key = load_public(spki, "SM2 public key")?;
    z_a(&key, id)
}

/// The x coordinate of `d_own * P_peer` on the SM2 curve, 32 bytes.
fn ecdh_x(own: &PKey<Private>, peer: &PKey<Public>) -> Result<Zeroizing<Vec<u8>>, ErrorStack> {
    let own = ec_private(own)?;
    let peer = ec_public(peer)?;
    let group = own.group();
    let mut ctx = BigNumContext::new_secure()?;
    let mut product = EcPoint::new(group)?;
    product.mul2(group, peer.public_key(), own.private_key(), &mut ctx)?;
    let mut x = BigNum::new_secure()?;
    let mut y = BigNum::new_secure()?;
    product.affine_coordinates(group, &mut x, &mut y, &mut ctx)?;
    let x = Zeroizing::new(x.to_vec_padded(32)?);
    Ok(x)
}

/// Link pairing in the GM suite: both sides compute the same initial epoch
/// secret E(0) from their one-time SM2 pairing keys:
/// HKDF-SM3(salt = "ferry/v1/gm/pairing", ikm = x(ECDH on the SM2 curve),
/// info = "ferry/v1/gm/epoch0" || link_name).
pub fn pairing_secret(
    own_pairing_pkcs8: &[u8],
    peer_pairing_spki: &[u8],
    link: &str,
) -> Result<Secret32, GmError> {
    let own = load_private(own_pairing_pkcs8, "own SM2 pairing key")?;
    let peer = load_public(peer_pairing_spki, "peer's SM2 pairing key")?;
    // OpenSSL 3.0 offers no key exchange for keys typed SM2 (and types
    // any key on the SM2 curve SM2), so ECDH is done on the points: x of
    // d_own * P_peer. The cofactor is 1; the peer point was checked to be
    // on the curve when its SPKI was decoded, and OpenSSL multiplies a
    // single point by a secret scalar with its constant-time ladder.
    let agreement = GmError::crypto("SM2 key agreement");
    let shared = ecdh_x(&own, &peer).map_err(agreement)?;
    if shared.iter().all(|&b| b == 0) {
        return Err(GmError::Crypto {
            operation: "SM2 key agreement",
            detail: "all-zero shared secret".to_owned(),
        });
    }
    kdf::pairing::<HmacSm3>(&LABELS, &shared, link).map_err(GmError::crypto("HKDF-SM3"))
}

/// Converts an SM2 private key from PEM (`BEGIN PRIVATE KEY`, as written by
/// `openssl genpkey -algorithm SM2`) to PKCS#8 DER.
pub fn sm2_private_pem_to_pkcs8(pem: &[u8]) -> Result<Zeroizing<Vec<u8>>, GmError> {
    let key = PKey::private_key_from_pem(pem).map_err(|e| GmError::KeyFormat {
        what: "SM2 private key".to_owned(),
        encoding: "PEM",
        detail: e.to_string(),
    })?;
    require_sm2(&key, "SM2 private key")?;
    Ok(Zeroizing::new(
        key.private_key_to_pkcs8()
            .map_err(GmError::crypto("encoding an SM2 private key"))?,
    ))
}

/// Converts an SM2 PKCS#8 DER private key to unencrypted PKCS#8 PEM.
pub fn sm2_private_pkcs8_to_pem(pkcs8: &[u8]) -> Result<Zeroizing<Vec<u8>>, GmError> {
    let key = load_private(pkcs8, "SM2 private key")?;
    Ok(Zeroizing::new(
        key.private_key_to_pem_pkcs8()
            .map_err(GmError::crypto("encoding an SM2 private key"))?,
    ))
}

/// Converts an SM2 public key from PEM (`BEGIN PUBLIC KEY`) to SPKI DER.
pub fn sm2_public_pem_to_spki(pem: &[u8]) -> Result<Vec<u8>, GmError> {
    let key = PKey::public_key_from_pem(pem).map_err(|e| GmError::KeyFormat {
        what: "SM2 public key".to_owned(),
        encoding: "PEM",
        detail: e.to_string(),
    })?;
    require_sm2(&key, "SM2 public key")?;
    key.public_key_to_der()
        .map_err(GmError::crypto("encoding an SM2 public key"))
}

/// Converts an SM2 SPKI DER public key to PEM.
pub fn sm2_public_spki_to_pem(spki: &[u8]) -> Result<Vec<u8>, GmError> {
    let key = load_public(spki, "SM2 public key")?;
    key.public_key_to_pem()
        .map_err(GmError::crypto("encoding an SM2 public key"))
}

/// SPKI DER of the SM2 public key with affine coordinates `(x, y)` (for
/// published test vectors and keys handed over as raw coordinates).
pub fn sm2_public_from_coordinates(x: &[u8; 32], y: &[u8; 32]) -> Result<Vec<u8>, GmError> {
    let group =
        EcGroup::from_curve_name(Nid::SM2).map_err(|e| unavailable("SM2")(e.to_string()))?;
    let x = BigNum::from_slice(x).map_err(GmError::crypto("BN_bin2bn"))?;
    let y = BigNum::from_slice(y).map_err(GmError::crypto("BN_bin2bn"))?;
    let ec = EcKey::from_public_key_affine_coordinates(&group, &x, &y).map_err(|e| {
        GmError::KeyFormat {
            what: "SM2 public key coordinates".to_owned(),
            encoding: "SM2 point",
            detail: e.to_string(),
        }
    })?;
    // Encoded as SPKI with the SM2 curve OID and decoded again, so OpenSSL
    // types it SM2 (an EC-typed key would sign and verify with ECDSA).
    let spki = ec
        .public_key_to_der()
        .map_err(GmError::crypto("encoding an SM2 public key"))?;
    load_public(&spki, "SM2 public key coordinates")?;
    Ok(spki)
}

/// An SM2 key with the `Z_A` of its public half and the distinguishing ID,
/// computed once: the ingress side's signing key or a sender's verifying
/// key. Held inside OpenSSL, which cleanses a private key when it frees it.
pub struct Sm2SignatureKey<T> {
    key: PKey<T>,
    z: [u8; 32],
}

/// An SM2 encryption key of the egress side, public (what the ingress side
/// seals to) or private (what opens), with its SPKI (bound into the package
/// key derivation) and the SM4-CTR cipher fetched once.
pub struct Sm2RecipientKey<T> {
    key: PKey<T>,
    spki: Vec<u8>,
    cipher: Arc<Cipher>,
}

impl SuiteAlgorithms for GmLink {
    const SEAL_KEYS_NAME: &'static str = "GmSealKeys";
    const OPEN_KEYS_NAME: &'static str = "GmOpenKeys";
    type SigningKey = Sm2SignatureKey<Private>;
    type VerifyingKey = Sm2SignatureKey<Public>;
    type RecipientPublic = Sm2RecipientKey<Public>;
    type RecipientSecret = Sm2RecipientKey<Private>;

    fn sign(key: &Sm2SignatureKey<Private>, msg: &[u8]) -> Result<Vec<u8>, CryptoError> {
        Ok(sign_with(&key.key, &key.z, msg)?)
    }

    fn verify(
        key: &Sm2SignatureKey<Public>,
        msg: &[u8],
        signature: &[u8],
    ) -> Result<(), CryptoError> {
        verify_with(&key.key, &key.z, msg, signature).map_err(|_| CryptoError::BadSignature)
    }

    fn seal_package(
        recipient: &Sm2RecipientKey<Public>,
        epoch_secret: &Secret32,
        context: &[u8],
    ) -> Result<(Box<dyn PayloadCipher>, Vec<u8>), CryptoError> {
        let mut package_key = Zeroizing::new([0u8; PACKAGE_KEY_LEN]);
        openssl::rand::rand_priv_bytes(&mut package_key[..])
            .map_err(|_| CryptoError::Signing("OpenSSL random generator failed".to_owned()))?;
        let ephemeral =
            sm2_encrypt(&recipient.key, &package_key[..]).map_err(|_| CryptoError::Agreement)?;
        if ephemeral.len() > MAX_EPHEMERAL_LEN {
            // Cannot happen for a 32-byte key (about 140 bytes of DER), but
            // the manifest would refuse it later with a vaguer error.
            return Err(CryptoError::BadEphemeral);
        }
        let cipher = package_cipher(
            &recipient.cipher,
            epoch_secret,
            &package_key[..],
            &ephemeral,
            &recipient.spki,
            context,
        )
        .map_err(|_| CryptoError::Agreement)?;
        Ok((Box::new(cipher), ephemeral))
    }

    fn open_package(
        recipient: &Sm2RecipientKey<Private>,
        epoch_secret: &Secret32,
        ephemeral: &[u8],
        context: &[u8],
    ) -> Result<Box<dyn PayloadCipher>, CryptoError> {
        if ephemeral.is_empty() || ephemeral.len() > MAX_EPHEMERAL_LEN {
            return Err(CryptoError::BadEphemeral);
        }
        // The manifest's signature was checked before this call, so a
        // failing SM2 decryption (C3 check) means the package was sealed
        // to another key under this id: a key agreement failure.
        let package_key =
            sm2_decrypt(&recipient.key, ephemeral).map_err(|_| CryptoError::Agreement)?;
        if package_key.len() != PACKAGE_KEY_LEN {
            return Err(CryptoError::BadEphemeral);
        }
        let cipher = package_cipher(
            &recipient.cipher,
            epoch_secret,
            &package_key,
            ephemeral,
            &recipient.spki,
            context,
        )
        .map_err(|_| CryptoError::Agreement)?;
        Ok(Box::new(cipher))
    }
}

/// SM4-CTR fetched once per key set and shared by its package ciphers.
fn shared_sm4_ctr() -> Result<Arc<Cipher>, GmError> {
    Ok(Arc::new(sm4_ctr().map_err(unavailable("SM4-CTR"))?))
}

/// The ingress side's GM keys: its SM2 signing key and the egress side's
/// SM2 encryption public key.
pub type GmSealKeys = SealingKeys<GmLink>;

impl SealingKeys<GmLink> {
    /// Keys for signing with `signing_private_pkcs8_der` under
    /// `distinguishing_id` and sealing to `recipient_public_spki_der`.
    pub fn new(
        signing_key_id: String,
        signing_private_pkcs8_der: &[u8],
        recipient_key_id: String,
        recipient_public_spki_der: &[u8],
        distinguishing_id: &[u8],
    ) -> Result<Self, GmError> {
        let signing_key = load_private(
            signing_private_pkcs8_der,
            &format!("signing key `{signing_key_id}`"),
        )?;
        let signing_z = z_a(&signing_key, distinguishing_id)?;
        let recipient_key = load_public(
            recipient_public_spki_der,
            &format!("recipient key `{recipient_key_id}`"),
        )?;
        let recipient_spki = recipient_key
            .public_key_to_der()
            .map_err(GmError::crypto("encoding an SM2 public key"))?;
        Ok(Self {
            link: GmLink,
            signing_key_id,
            signing_key: Sm2SignatureKey {
                key: signing_key,
                z: signing_z,
            },
            recipient_key_id,
            recipient_key: Sm2RecipientKey {
                key: recipient_key,
                spki: recipient_spki,
                cipher: shared_sm4_ctr()?,
            },
        })
    }
}

/// The egress side's GM keys: its SM2 decryption keys and the ingress
/// side's SM2 verifying keys, several of each so that packages sealed
/// before and after a rotation both open. A manifest picks keys by id.
pub type GmOpenKeys = OpeningKeys<GmLink>;

impl OpeningKeys<GmLink> {
    /// Keys for verifying manifests signed by any of `senders` (id, SPKI
    /// DER) under `distinguishing_id` and opening packages sealed to any of
    /// `recipients` (id, PKCS#8 DER). The first entry of each list is the
    /// current key (what [`ferry_protocol::OpenKeys::sender_key_id`] and
    /// [`ferry_protocol::OpenKeys::recipient_key_id`] report).
    pub fn new(
        senders: Vec<(String, Vec<u8>)>,
        recipients: Vec<(String, Zeroizing<Vec<u8>>)>,
        distinguishing_id: &[u8],
    ) -> Result<Self, GmError> {
        check_id(distinguishing_id)?;
        if senders.is_empty() {
            return Err(GmError::NoKeys {
                what: "sender verifying keys",
            });
        }
        if recipients.is_empty() {
            return Err(GmError::NoKeys {
                what: "recipient decryption keys",
            });
        }
        let mut sender_keys = KeyRing::new();
        for (id, spki) in senders {
            if sender_keys.contains(&id) {
                return Err(GmError::DuplicateKeyId {
                    id,
                    what: "sender verifying keys",
                });
            }
            let key = load_public(&spki, &format!("sender key `{id}`"))?;
            let z = z_a(&key, distinguishing_id)?;
            sender_keys.push(id, Sm2SignatureKey { key, z });
        }
        let cipher = shared_sm4_ctr()?;
        let mut recipient_keys = KeyRing::new();
        for (id, pkcs8) in recipients {
            if recipient_keys.contains(&id) {
                return Err(GmError::DuplicateKeyId {
                    id,
                    what: "recipient decryption keys",
                });
            }
            let key = load_private(&pkcs8, &format!("recipient key `{id}`"))?;
            let spki = key
                .public_key_to_der()
                .map_err(GmError::crypto("encoding an SM2 public key"))?;
            let cipher = Arc::clone(&cipher);
            recipient_keys.push(id, Sm2RecipientKey { key, spki, cipher });
        }
        Ok(Self {
            link: GmLink,
            senders: sender_keys,
            recipients: recipient_keys,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::{self, Fixture};
    use ferry_protocol::suite::{OpenKeys, SealKeys};
    use openssl::md::Md;
    use openssl::sign::Signer;
    use proptest::prelude::*;

    use crate::ghash::reference_ghash;
    use ferry_protocol::suite::DATAGRAM_TAG_LEN;

    fn fixture() -> Fixture<GmLink> {
        let (sig_priv, sig_pub) = generate_sm2().expect("signing key");
        let (enc_priv, enc_pub) = generate_sm2().expect("encryption key");
        let seal = GmSealKeys::new(
            "sig-1".into(),
            &sig_priv,
            "enc-1".into(),
            &enc_pub,
            DEFAULT_DISTINGUISHING_ID,
        )
        .expect("seal keys");
        let open = GmOpenKeys::new(
            vec![("sig-1".into(), sig_pub)],
            vec![("enc-1".into(), enc_priv)],
            DEFAULT_DISTINGUISHING_ID,
        )
        .expect("open keys");
        Fixture {
            seal,
            open,
            epoch: Secret32([7; 32]),
        }
    }

    #[test]
    fn ensure_available_passes_on_this_openssl() {
        ensure_available().expect("OpenSSL 3 with SM2/SM3/SM4");
    }

    #[test]
    fn unavailable_error_tells_what_to_do() {
        let e = unavailable("SM4-CTR")("unsupported".into()).to_string();
        assert!(e.starts_with("this OpenSSL build lacks SM4-CTR; install an OpenSSL 3 with SM algorithms enabled or use suite = \"intl\""), "{e}");
    }

    #[test]
    fn hmac_matches_openssl_hmac_for_all_key_lengths() {
        let md = MessageDigest::from_nid(Nid::SM3).expect("sm3");
        // OpenSSL's HMAC key refuses an empty key; the HKDF test covers it.
        for key_len in [1usize, 16, 32, 63, 64, 65, 200] {
            let key: Vec<u8> = (0..key_len).map(|i| (i * 7 + 1) as u8).collect();
            for msg_len in [0usize, 1, 55, 56, 64, 1424] {
                let msg: Vec<u8> = (0..msg_len).map(|i| (i * 13) as u8).collect();
                let pkey = PKey::hmac(&key).expect("hmac key");
                let mut signer = Signer::new(md, &pkey).expect("signer");
                signer.update(&msg).expect("update");
                let expected = signer.sign_to_vec().expect("sign");
                let mut ours = [0u8; 32];
                HmacSm3::new(&key)
                    .expect("key")
                    .mac_into(&[&msg], &mut ours)
                    .expect("mac");
                assert_eq!(&ours[..], &expected[..], "key {key_len} msg {msg_len}");
            }
        }
    }

    #[test]
    fn hkdf_matches_openssl_hkdf() {
        let sm3 = Md::fetch(None, "SM3", None).expect("sm3");
        for (salt, ikm, info) in [
            (&b""[..], &[9u8; 32][..], &b"ferry/v1/gm/datagram-mac"[..]),
            (&[1u8; 32][..], &[2u8; 200][..], &b""[..]),
            (LABELS.ratchet_salt, &[3u8; 32][..], LABELS.ratchet_info),
        ] {
            let mut ctx = PkeyCtx::new_id(Id::HKDF).expect("hkdf");
            ctx.derive_init().expect("init");
            ctx.set_hkdf_md(&sm3).expect("md");
            ctx.set_hkdf_key(ikm).expect("key");
            if !salt.is_empty() {
                ctx.set_hkdf_salt(salt).expect("salt");
            }
            ctx.add_hkdf_info(info).expect("info");
            let mut expected = [0u8; 32];
            ctx.derive(Some(&mut expected)).expect("derive");
            assert_eq!(hkdf_sm3_32(salt, ikm, &[info]).expect("hkdf").0, expected);
        }
    }

    #[test]
    fn generated_keys_are_typed_sm2_and_round_trip_der_and_pem() {
        let (private, public) = generate_sm2().expect("generate");
        let key = PKey::private_key_from_pkcs8(&private).expect("pkcs8");
        assert!(!key.is_a(KeyType::EC));
        require_sm2(&key, "generated").expect("typed SM2");
        assert_eq!(sm2_public_from_private(&private).expect("public"), public);
        let pem = sm2_private_pkcs8_to_pem(&private).expect("pem");
        assert!(pem.starts_with(b"-----BEGIN PRIVATE KEY-----"));
        assert_eq!(
            sm2_private_pem_to_pkcs8(&pem).expect("der")[..],
            private[..]
        );
        let pem = sm2_public_spki_to_pem(&public).expect("pem");
        assert_eq!(sm2_public_pem_to_spki(&pem).expect("der"), public);
    }

    #[test]
    fn ec_typed_key_on_sm2_curve_would_do_ecdsa_and_is_refused() {
        // OpenSSL 3.0 types keys decoded from SPKI/PKCS#8 or wrapped from an
        // EC_KEY on the SM2 curve as SM2, but a key generated through the EC
        // key manager on that curve stays EC: the trap.
        let ec_typed = PKey::ec_gen("SM2").expect("EC keygen on the SM2 curve");
        assert!(ec_typed.is_a(KeyType::EC));
        let e = [0x11u8; 32];
        let mut ctx = PkeyCtx::new(&ec_typed).expect("ctx");
        ctx.sign_init().expect("init");
        let mut ecdsa = Vec::new();
        ctx.sign_to_vec(&e, &mut ecdsa).expect("ECDSA sign");
        let spki = ec_typed.public_key_to_der().expect("spki");
        let sm2_public = load_public(&spki, "test").expect("decodes typed SM2");
        let mut ctx = PkeyCtx::new(&sm2_public).expect("ctx");
        ctx.verify_init().expect("init");
        assert!(!ctx.verify(&e, &ecdsa).unwrap_or(false), "ECDSA is not SM2");
        let e_err = require_sm2(&ec_typed, "test key").unwrap_err();
        assert!(e_err.to_string().contains("typed EC"), "{e_err}");
        // Its PKCS#8 encoding decodes typed SM2, which is how keys load.
        let pkcs8 = ec_typed.private_key_to_pkcs8().expect("pkcs8");
        let loaded = load_private(&pkcs8, "k").expect("loads");
        assert!(!loaded.is_a(KeyType::EC));
        // A wrapped EC_KEY on the SM2 curve is typed SM2 too.
        let group = EcGroup::from_curve_name(Nid::SM2).expect("group");
        let wrapped = PKey::from_ec_key(EcKey::generate(&group).expect("key")).expect("pkey");
        require_sm2(&wrapped, "wrapped").expect("typed SM2");
    }

    #[test]
    fn keys_on_other_curves_are_refused() {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("p256");
        let p256 = PKey::from_ec_key(EcKey::generate(&group).expect("key")).expect("pkey");
        let pkcs8 = p256.private_key_to_pkcs8().expect("pkcs8");
        let spki = p256.public_key_to_der().expect("spki");
        let e = GmSealKeys::new("s".into(), &pkcs8, "r".into(), &spki, b"id").unwrap_err();
        assert!(matches!(e, GmError::NotSm2 { .. }), "{e}");
        assert!(e.to_string().contains("signing key `s`"), "{e}");
        let (_, sm2_pub) = generate_sm2().expect("sm2");
        assert!(matches!(
            sm2_verify(&spki, b"id", b"m", &[0x30, 0]),
            Err(GmError::NotSm2 { .. })
        ));
        let e = GmOpenKeys::new(
            vec![("s".into(), sm2_pub)],
            vec![("r".into(), Zeroizing::new(pkcs8))],
            b"id",
        )
        .unwrap_err();
        assert!(e.to_string().contains("recipient key `r`"), "{e}");
        assert!(matches!(
            sm2_sign(b"not der", b"id", b"m"),
            Err(GmError::KeyFormat { .. })
        ));
    }

    #[test]
    fn seal_open_round_trip_over_chunk_sizes() {
        conformance::seal_open_round_trip_over_chunk_sizes(&fixture(), CHUNK_TAG_LEN, |eph| {
            assert!(eph.len() <= MAX_EPHEMERAL_LEN, "{}", eph.len())
        });
    }

    #[test]
    fn chunks_use_distinct_counters() {
        let f = fixture();
        let (sealer, _) = f.seal.new_package(&f.epoch, b"ctx").expect("new package");
        let zeros = vec![0u8; 64];
        let mut a = zeros.clone();
        let mut b = zeros.clone();
        sealer.seal_chunk(0, false, &mut a).expect("seal");
        sealer.seal_chunk(1, false, &mut b).expect("seal");
        // Same plaintext, different index: different keystream.
        assert_ne!(a[..64], b[..64]);
    }

    #[test]
    fn packages_get_fresh_keys() {
        conformance::packages_get_fresh_keys(&fixture());
    }

    #[test]
    fn any_flipped_bit_is_bad_chunk_and_leaves_no_plaintext() {
        let f = fixture();
        let (_, opener, sealed) = f.sealed_chunk(b"one-way payload, forty bytes long.....");
        for pos in 0..sealed.len() {
            for bit in [0u8, 7] {
                let mut buf = sealed.clone();
                buf[pos] ^= 1 << bit;
                let flipped = buf.clone();
                assert_eq!(
                    opener.open_chunk(3, false, &mut buf),
                    Err(CryptoError::BadChunk { chunk: 3 })
                );
                assert_eq!(buf, flipped, "nothing decrypted before the MAC check");
            }
        }
    }

    #[test]
    fn wrong_last_flag_index_or_swap_is_bad_chunk() {
        let (sealer, opener, sealed) =
            conformance::wrong_last_flag_or_index_is_bad_chunk(&fixture());
        // Two chunks presented in each other's place.
        let mut four = b"chunk four".to_vec();
        sealer.seal_chunk(4, false, &mut four).expect("seal");
        let mut at3 = four.clone();
        let mut at4 = sealed.clone();
        assert!(opener.open_chunk(3, false, &mut at3).is_err());
        assert!(opener.open_chunk(4, false, &mut at4).is_err());
        // Truncated: one byte short, and shorter than a tag.
        let mut cut = sealed[..sealed.len() - 1].to_vec();
        assert_eq!(
            opener.open_chunk(3, false, &mut cut),
            Err(CryptoError::BadChunk { chunk: 3 })
        );
        let mut short = vec![0u8; CHUNK_TAG_LEN - 1];
        assert_eq!(
            opener.open_chunk(3, false, &mut short),
            Err(CryptoError::ShortChunk)
        );
    }

    #[test]
    fn wrong_epoch_context_or_recipient_cannot_open() {
        let f = fixture();
        conformance::wrong_epoch_or_context_cannot_open(&f);
        let (_, eph) = f.seal.new_package(&f.epoch, b"ctx").expect("new package");
        // Another private key under the same id: SM2 decryption fails.
        let (sig_priv, sig_pub) = generate_sm2().expect("sig");
        let _ = sig_priv;
        let (other_priv, _) = generate_sm2().expect("other");
        let other = GmOpenKeys::new(
            vec![("sig-1".into(), sig_pub)],
            vec![("enc-1".into(), other_priv)],
            DEFAULT_DISTINGUISHING_ID,
        )
        .expect("open keys");
        assert_eq!(
            other.open_package("enc-1", &f.epoch, &eph, b"ctx").err(),
            Some(CryptoError::Agreement)
        );
    }

    #[test]
    fn open_package_checks_key_id_and_ephemeral() {
        let f = fixture();
        let (_, eph) = f.seal.new_package(&f.epoch, b"ctx").expect("new package");
        assert_eq!(
            f.open.open_package("enc-0", &f.epoch, &eph, b"ctx").err(),
            Some(CryptoError::UnknownKey("enc-0".into()))
        );
        assert_eq!(
            f.open.open_package("enc-1", &f.epoch, &[], b"ctx").err(),
            Some(CryptoError::BadEphemeral)
        );
        assert_eq!(
            f.open
                .open_package("enc-1", &f.epoch, &[0x30; MAX_EPHEMERAL_LEN + 1], b"ctx")
                .err(),
            Some(CryptoError::BadEphemeral)
        );
        let mut bent = eph.clone();
        let last = bent.len() - 1;
        bent[last] ^= 1;
        assert!(f
            .open
            .open_package("enc-1", &f.epoch, &bent, b"ctx")
            .is_err());
        assert!(f
            .open
            .open_package("enc-1", &f.epoch, &eph[..eph.len() - 1], b"ctx")
            .is_err());
    }

    #[test]
    fn a_package_key_of_another_length_is_bad_ephemeral() {
        let f = fixture();
        let spki = &f.open.recipients.get("enc-1").expect("held").spki;
        let recipient = load_public(spki, "r").expect("public");
        let eph = sm2_encrypt(&recipient, &[1u8; 16]).expect("encrypt");
        assert_eq!(
            f.open.open_package("enc-1", &f.epoch, &eph, b"ctx").err(),
            Some(CryptoError::BadEphemeral)
        );
    }

    #[test]
    fn signature_round_trip_and_failures() {
        let f = fixture();
        let sig = conformance::signature_round_trip_and_failures(&f);
        assert!(
            sig.len() <= MAX_SIGNATURE_DER_LEN && sig[0] == 0x30,
            "{}",
            sig.len()
        );
        assert_eq!(
            f.open.verify("sig-1", b"canonical manifest bytes", &[]),
            Err(CryptoError::BadSignature)
        );
    }

    #[test]
    fn distinguishing_id_is_part_of_the_signature() {
        let (private, public) = generate_sm2().expect("key");
        let sig = sm2_sign(&private, b"ALICE123@YAHOO.COM", b"msg").expect("sign");
        sm2_verify(&public, b"ALICE123@YAHOO.COM", b"msg", &sig).expect("same id");
        assert!(matches!(
            sm2_verify(&public, DEFAULT_DISTINGUISHING_ID, b"msg", &sig),
            Err(GmError::BadSignature)
        ));
        let long = vec![b'x'; MAX_DISTINGUISHING_ID_LEN + 1];
        assert!(matches!(
            sm2_sign(&private, &long, b"msg"),
            Err(GmError::DistinguishingId { .. })
        ));
        sm2_sign(&private, &long[..MAX_DISTINGUISHING_ID_LEN], b"msg").expect("longest id");
    }

    #[test]
    fn open_keys_refuse_empty_and_duplicate_lists() {
        let (a_priv, a_pub) = generate_sm2().expect("a");
        let none: Vec<(String, Vec<u8>)> = Vec::new();
        assert!(matches!(
            GmOpenKeys::new(none, vec![("r".into(), a_priv.clone())], b"id"),
            Err(GmError::NoKeys { .. })
        ));
        assert!(matches!(
            GmOpenKeys::new(vec![("s".into(), a_pub.clone())], Vec::new(), b"id"),
            Err(GmError::NoKeys { .. })
        ));
        assert!(matches!(
            GmOpenKeys::new(
                vec![("s".into(), a_pub.clone()), ("s".into(), a_pub.clone())],
                vec![("r".into(), a_priv.clone())],
                b"id"
            ),
            Err(GmError::DuplicateKeyId { .. })
        ));
        assert!(matches!(
            GmOpenKeys::new(
                vec![("s".into(), a_pub)],
                vec![("r".into(), a_priv.clone()), ("r".into(), a_priv)],
                b"id"
            ),
            Err(GmError::DuplicateKeyId { .. })
        ));
    }

    #[test]
    fn ratchet_is_one_way_and_deterministic() {
        conformance::ratchet_is_one_way_and_deterministic(GmLink, SuiteId::Gm);
        let e0 = Secret32([1; 32]);
        assert_eq!(
            GmLink.ratchet(&e0),
            hkdf_sm3_32(LABELS.ratchet_salt, &e0.0, &[LABELS.ratchet_info]).expect("hkdf")
        );
    }

    fn sm4_block(key: &[u8; 16], block: &[u8; 16]) -> [u8; 16] {
        // A fresh ECB context per block, apart from `Sm4Block`'s reuse.
        let ecb = Cipher::fetch(None, "SM4-ECB", None).expect("sm4-ecb");
        let mut c = CipherCtx::new().expect("ctx");
        c.encrypt_init(Some(&ecb), Some(key), None).expect("init");
        c.set_padding(false);
        let mut out = [0u8; 32];
        assert_eq!(c.cipher_update(block, Some(&mut out)).expect("update"), 16);
        out[..16].try_into().expect("16")
    }

    #[test]
    fn sm4_gcm_matches_rfc8998_and_the_reference_ghash() {
        let mut data = SM4_GCM_KAT_PLAINTEXT;
        let tag = sm4_gcm_encrypt(
            &SM4_KAT_KEY,
            &SM4_GCM_KAT_NONCE,
            &SM4_GCM_KAT_AAD,
            &mut data,
        )
        .expect("seal");
        assert_eq!(data, SM4_GCM_KAT_CIPHERTEXT);
        assert_eq!(tag, SM4_GCM_KAT_TAG);
        // The same tag from the bit-by-bit GHASH: E_K(J0) xor GHASH_H.
        let h = sm4_block(&SM4_KAT_KEY, &[0; 16]);
        let mut j0 = [0u8; 16];
        j0[..12].copy_from_slice(&SM4_GCM_KAT_NONCE);
        j0[15] = 1;
        let s = reference_ghash(&h, &SM4_GCM_KAT_AAD, &SM4_GCM_KAT_CIPHERTEXT);
        let mask = sm4_block(&SM4_KAT_KEY, &j0);
        let expected: Vec<u8> = s.iter().zip(mask).map(|(a, b)| a ^ b).collect();
        assert_eq!(&expected[..], &tag[..]);
        sm4_gcm_decrypt(
            &SM4_KAT_KEY,
            &SM4_GCM_KAT_NONCE,
            &SM4_GCM_KAT_AAD,
            &mut data,
            &tag,
        )
        .expect("open");
        assert_eq!(data, SM4_GCM_KAT_PLAINTEXT);
        // A wrong tag, nonce or AAD leaves the ciphertext as it was.
        let mut ct = SM4_GCM_KAT_CIPHERTEXT;
        let mut bad = tag;
        bad[15] ^= 1;
        assert!(matches!(
            sm4_gcm_decrypt(
                &SM4_KAT_KEY,
                &SM4_GCM_KAT_NONCE,
                &SM4_GCM_KAT_AAD,
                &mut ct,
                &bad
            ),
            Err(GmError::BadTag)
        ));
        assert!(matches!(
            sm4_gcm_decrypt(&SM4_KAT_KEY, &SM4_GCM_KAT_NONCE, &[], &mut ct, &tag),
            Err(GmError::BadTag)
        ));
        assert_eq!(ct, SM4_GCM_KAT_CIPHERTEXT);
    }

    #[test]
    fn simd_sm4_and_openssl_sm4_give_the_same_gcm() {
        if !ferry_hardening::sm4_simd::available() {
            eprintln!("no AES-NI: only OpenSSL's SM4 runs here");
            return;
        }
        let cipher = sm4_ctr().expect("sm4-ctr");
        for seed in 0u8..8 {
            let key = [seed.wrapping_mul(37).wrapping_add(1); 16];
            let simd = Sm4Gcm::new(&cipher, &key).expect("simd");
            assert!(matches!(simd.ctr, Sm4Stream::Simd(_)));
            let ossl = Sm4Gcm::with(Sm4Stream::openssl(&cipher, &key).expect("ctx")).expect("gcm");
            for len in [0usize, 1, 16, 63, 64, 65, 1000, 65536 + 5] {
                let plain: Vec<u8> = (0..len).map(|j| (j as u8) ^ seed).collect();
                let nonce =
                    GmPayloadCipher::nonce(u64::from(seed) << 40 | len as u64, seed % 2 == 0);
                let (mut a, mut b) = (plain.clone(), plain.clone());
                let ta = simd.seal(&nonce, b"aad", &mut a).expect("seal");
                let tb = ossl.seal(&nonce, b"aad", &mut b).expect("seal");
                assert_eq!((&a, ta), (&b, tb), "seed {seed} len {len}");
                assert!(ossl.open(&nonce, b"aad", &mut a, &ta).expect("open"));
                assert_eq!(a, plain);
            }
        }
    }

    #[test]
    fn one_context_over_many_chunks_equals_a_fresh_one_per_chunk() {
        // The package cipher keeps one CTR context and only resets its IV;
        // any state carried from one chunk to the next would show here.
        let cipher = sm4_ctr().expect("sm4-ctr");
        let key = [0x42u8; 16];
        let reused = Sm4Gcm::with(Sm4Stream::openssl(&cipher, &key).expect("ctx")).expect("gcm");
        for (i, len) in [0usize, 1, 15, 16, 17, 1000, 65536, 3]
            .into_iter()
            .enumerate()
        {
            let plain: Vec<u8> = (0..len).map(|j| (j * 31 + i) as u8).collect();
            let nonce = GmPayloadCipher::nonce(i as u64, i % 2 == 1);
            let mut a = plain.clone();
            let tag_a = reused.seal(&nonce, b"", &mut a).expect("seal");
            let mut b = plain.clone();
            let tag_b = Sm4Gcm::new(&cipher, &key)
                .expect("gcm")
                .seal(&nonce, b"", &mut b)
                .expect("seal");
            assert_eq!((a.clone(), tag_a), (b, tag_b), "chunk {i} of {len} bytes");
            assert!(reused.open(&nonce, b"", &mut a, &tag_a).expect("open"));
            assert_eq!(a, plain);
        }
    }

    #[test]
    fn datagram_mac_verifies_and_rejects() {
        let (msg, tag) = conformance::datagram_mac_verifies_and_rejects(GmLink);
        // The tag is SM4_K(GHASH_H(msg, lengths)) under K || H derived
        // from the epoch secret, recomputed here from the reference GHASH.
        let keys = hkdf_sm3_32(&[], &[3; 32], &[LABELS.datagram_mac_info]).expect("hkdf");
        let k: [u8; 16] = keys.0[..16].try_into().expect("16");
        let h: [u8; 16] = keys.0[16..].try_into().expect("16");
        let expected = sm4_block(&k, &reference_ghash(&h, &msg, &[]));
        assert_eq!(&expected[..], &tag[..]);
        // Format 1's HMAC-SM3 tag of the same bytes is refused.
        let v1_key = hkdf_sm3_32(&[], &[3; 32], &[b"ferry/v1/gm/datagram-mac"]).expect("hkdf");
        let mut v1 = [0u8; 32];
        HmacSm3::new(&v1_key.0)
            .expect("key")
            .mac_into(&[&msg], &mut v1)
            .expect("mac");
        let mac = GmLink.datagram_mac(&Secret32([3; 32]));
        assert!(!mac.verify(&msg, &v1[..DATAGRAM_TAG_LEN]));
    }

    #[test]
    fn sm3_digest_is_the_same_inline_and_on_its_thread() {
        // Past the offload threshold the hashing moves to a thread; the
        // digest of the whole must still be SM3 of the whole.
        let total = SM3_OFFLOAD_AFTER_BYTES as usize + 3 * 65536 + 17;
        let data: Vec<u8> = (0..total).map(|i| (i * 131 % 251) as u8).collect();
        let mut d = GmLink.new_digest();
        for piece in data.chunks(65536 - 3) {
            d.update(piece);
        }
        assert_eq!(d.finish(), sm3(&data).to_vec());
        // Exactly at the threshold, then nothing more.
        let mut d = GmLink.new_digest();
        d.update(&data[..SM3_OFFLOAD_AFTER_BYTES as usize]);
        assert_eq!(
            d.finish(),
            sm3(&data[..SM3_OFFLOAD_AFTER_BYTES as usize]).to_vec()
        );
    }

    #[test]
    fn sm3_digest_is_incremental() {
        let link = GmLink;
        let mut d = link.new_digest();
        d.update(b"a");
        d.update(b"bc");
        assert_eq!(link.digest_len(), 32);
        assert_eq!(d.finish(), SM3_ABC.to_vec());
        assert_eq!(sm3(b"abc"), SM3_ABC);
    }

    #[test]
    fn pairing_is_symmetric_and_per_link() {
        let (a_priv, a_pub) = generate_sm2().expect("a");
        let (b_priv, b_pub) = generate_sm2().expect("b");
        let ab = pairing_secret(&a_priv, &b_pub, "high-to-low").expect("ab");
        let ba = pairing_secret(&b_priv, &a_pub, "high-to-low").expect("ba");
        assert_eq!(ab, ba);
        assert_ne!(
            ab,
            pairing_secret(&a_priv, &b_pub, "high-to-low-2").expect("other link")
        );
        let (c_priv, _) = generate_sm2().expect("c");
        assert_ne!(
            ab,
            pairing_secret(&c_priv, &b_pub, "high-to-low").expect("c")
        );
        assert!(pairing_secret(&a_priv, b"junk", "l").is_err());
    }

    #[test]
    fn ecdh_on_points_matches_openssl_ecdh_on_ec_typed_keys() {
        let a = PKey::ec_gen("SM2").expect("a");
        let b = PKey::ec_gen("SM2").expect("b");
        let mut d = openssl::derive::Deriver::new(&a).expect("deriver");
        d.set_peer(&b).expect("peer");
        let expected = d.derive_to_vec().expect("ECDH");
        let a_sm2 = load_private(&a.private_key_to_pkcs8().expect("pkcs8"), "a").expect("a");
        let b_sm2 = load_public(&b.public_key_to_der().expect("spki"), "b").expect("b");
        assert_eq!(ecdh_x(&a_sm2, &b_sm2).expect("ours")[..], expected[..]);
    }

    #[test]
    fn debug_shows_ids_not_secrets() {
        let (seal, open) = conformance::debug_shows_ids(&fixture());
        for s in [&seal, &open] {
            assert!(!s.contains("signing_key:") && !s.contains("key:"), "{s}");
            assert!(!s.contains("0x") && !s.contains("PKey"), "{s}");
        }
    }

    #[test]
    fn curve_constants_match_openssl() {
        let group = EcGroup::from_curve_name(Nid::SM2).expect("group");
        let mut p = BigNum::new().expect("bn");
        let mut a = BigNum::new().expect("bn");
        let mut b = BigNum::new().expect("bn");
        let mut ctx = BigNumContext::new().expect("ctx");
        group
            .components_gfp(&mut p, &mut a, &mut b, &mut ctx)
            .expect("components");
        assert_eq!(a.to_vec(), SM2_A.to_vec());
        assert_eq!(b.to_vec(), SM2_B.to_vec());
        let g = group
            .generator_opt()
            .expect("generator")
            .to_bytes(&group, PointConversionForm::UNCOMPRESSED, &mut ctx)
            .expect("g");
        assert_eq!(&g[1..33], &SM2_GX[..]);
        assert_eq!(&g[33..], &SM2_GY[..]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn any_chunk_round_trips_and_any_bit_flip_fails(
            plain in proptest::collection::vec(any::<u8>(), 0..2048),
            index in any::<u64>(),
            last in any::<bool>(),
            flip in any::<proptest::sample::Index>(),
            bit in 0u8..8,
        ) {
            conformance::any_chunk_round_trips_and_any_bit_flip_fails(
                &fixture(), &plain, index, last, flip, bit,
            )?;
        }
    }
}
