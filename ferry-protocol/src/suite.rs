//! Crypto suites: the pluggable part of the protocol.
//!
//! The protocol state machines never name an algorithm. They ask a suite to
//! sign or verify a manifest, to derive a per-package payload cipher, to
//! ratchet the link's epoch secret forward and to authenticate datagrams.
//! The suites themselves live side by side in the `ferry-suites` crate: `intl`
//! (Ed25519, X25519 + HKDF-SHA256, AES-256-GCM, GHASH-then-AES-256) and `gm`
//! (SM2/SM3/SM4), both behind these traits, so this crate depends on no
//! crypto library.

use zeroize::{Zeroize, ZeroizeOnDrop};

/// Length of the truncated datagram authentication tag on the wire.
pub const DATAGRAM_TAG_LEN: usize = 16;

/// Wire identifier of a crypto suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SuiteId {
    /// Ed25519, X25519 + HKDF-SHA256, AES-256-GCM, SHA-256: format 2,
    /// GHASH-then-AES-256 datagram tags.
    Intl,
    /// SM2, SM3, SM4 (GB/T 32918, 32905, 32907): payload format 2,
    /// SM4-GCM chunks and GHASH-then-SM4 datagram tags.
    Gm,
}

/// Suite bytes of formats this build no longer speaks, with what an
/// operator should do about a peer that still sends them. They are never
/// reused for another format, so an old datagram or manifest is refused
/// by name instead of being read under the wrong algorithms.
pub const RETIRED_SUITES: &[(u8, &str)] = &[
    (
        1,
        "intl suite format 1 (HMAC-SHA256 datagram tags, ferry before intl format 2): upgrade ferryd on the ingress side so both sides run intl format 2",
    ),
    (
        2,
        "GM suite format 1 (SM4-CTR + HMAC-SM3, ferry before GM format 2): upgrade ferryd on the ingress side so both sides run GM format 2",
    ),
];

impl SuiteId {
    /// The byte that names this suite on the wire.
    pub fn to_wire(self) -> u8 {
        match self {
            // Bytes 1 and 2 were the formats 1 of intl and GM; see
            // [`RETIRED_SUITES`].
            SuiteId::Intl => 4,
            SuiteId::Gm => 3,
        }
    }

    /// Parses the wire byte; `None` for a suite this build does not know.
    pub fn from_wire(b: u8) -> Option<Self> {
        match b {
            4 => Some(SuiteId::Intl),
            3 => Some(SuiteId::Gm),
            _ => None,
        }
    }

    /// What a retired suite byte was and what to do, or `None` for a byte
    /// that never named a suite.
    pub fn retired(b: u8) -> Option<&'static str> {
        RETIRED_SUITES
            .iter()
            .find(|(byte, _)| *byte == b)
            .map(|(_, what)| *what)
    }

    /// The configuration name (`intl`, `gm`).
    pub fn name(self) -> &'static str {
        match self {
            SuiteId::Intl => "intl",
            SuiteId::Gm => "gm",
        }
    }
}

/// A 32-byte secret (epoch secret, derived key material). Zeroized on drop
/// and never printed: `Debug` shows only that it is redacted.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct Secret32(pub [u8; 32]);

impl std::fmt::Debug for Secret32 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret32(<redacted>)")
    }
}

/// Errors a suite reports. Messages name what failed, never key material.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum CryptoError {
    /// The manifest signature does not verify under the configured sender key.
    #[error("manifest signature does not verify under the sender's public key")]
    BadSignature,
    /// A chunk failed authenticated decryption: the payload was modified.
    #[error("payload chunk {chunk} failed authentication (modified or truncated payload)")]
    BadChunk {
        /// Index of the failing chunk.
        chunk: u64,
    },
    /// The ephemeral public key in a manifest is malformed.
    #[error("malformed ephemeral public key in manifest")]
    BadEphemeral,
    /// Key agreement produced an all-zero or otherwise unusable secret.
    #[error("key agreement failed (low-order or invalid peer key)")]
    Agreement,
    /// Signing failed inside the crypto library.
    #[error("signing failed: {0}")]
    Signing(String),
    /// The manifest names a key this side does not hold (retired, or never
    /// imported).
    #[error("unknown or retired key id `{0}`: import the peer's current public bundle or check rotation")]
    UnknownKey(String),
    /// A ciphertext buffer is shorter than one tag.
    #[error("chunk shorter than its authentication tag")]
    ShortChunk,
}

/// The symmetric half of a suite: link-level primitives both sides share.
pub trait LinkCrypto: Send + Sync {
    /// Which suite this is.
    fn suite(&self) -> SuiteId;
    /// `E(e+1)` from `E(e)`: the one-way epoch ratchet.
    fn ratchet(&self, epoch_secret: &Secret32) -> Secret32;
    /// The datagram authenticator for one epoch's secret.
    fn datagram_mac(&self, epoch_secret: &Secret32) -> Box<dyn DatagramMac>;
    /// A fresh digest of package plaintext (SHA-256 or SM3).
    fn new_digest(&self) -> Box<dyn PayloadDigest>;
    /// Length in bytes of the digest this suite produces.
    fn digest_len(&self) -> usize;
}

/// Authenticates whole datagrams cheaply (a keyed MAC truncated to
/// [`DATAGRAM_TAG_LEN`] bytes).
pub trait DatagramMac: Send + Sync {
    /// The tag over `msg`.
    fn tag(&self, msg: &[u8]) -> [u8; DATAGRAM_TAG_LEN];
    /// Constant-time check of `tag` against `msg`.
    fn verify(&self, msg: &[u8], tag: &[u8]) -> bool;
}

/// Incremental digest of package plaintext.
pub trait PayloadDigest: Send {
    /// Absorbs more plaintext.
    fn update(&mut self, data: &[u8]);
    /// The final digest.
    fn finish(self: Box<Self>) -> Vec<u8>;
}

/// Seals payload chunks of one package. Chunk `i` uses a nonce derived from
/// `i`; the last chunk is bound as last so truncation is detected.
pub trait PayloadCipher: Send {
    /// Bytes a sealed chunk is longer than its plaintext.
    fn overhead(&self) -> usize;
    /// Encrypts `buf` in place and appends the tag.
    fn seal_chunk(&self, index: u64, last: bool, buf: &mut Vec<u8>) -> Result<(), CryptoError>;
    /// Decrypts in place; on success `buf` is truncated to the plaintext.
    fn open_chunk(&self, index: u64, last: bool, buf: &mut Vec<u8>) -> Result<(), CryptoError>;
}

/// What the ingress side holds: its signing key and the egress side's
/// agreement public key.
pub trait SealKeys: Send + Sync {
    /// The link primitives of this suite.
    fn link(&self) -> &dyn LinkCrypto;
    /// Identifier of the signing key (written into manifests).
    fn signing_key_id(&self) -> &str;
    /// Identifier of the recipient's agreement key (written into manifests).
    fn recipient_key_id(&self) -> &str;
    /// Signs canonical manifest bytes.
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, CryptoError>;
    /// A fresh per-package cipher: generates an ephemeral key pair, agrees
    /// with the recipient's static key, and mixes in the epoch secret and
    /// `context` (package id and sequence). Returns the cipher and the
    /// ephemeral public key to put in the manifest.
    fn new_package(
        &self,
        epoch_secret: &Secret32,
        context: &[u8],
    ) -> Result<(Box<dyn PayloadCipher>, Vec<u8>), CryptoError>;
}

/// What the egress side holds: its agreement private key and the ingress
/// side's signing public key.
pub trait OpenKeys: Send + Sync {
    /// The link primitives of this suite.
    fn link(&self) -> &dyn LinkCrypto;
    /// Identifier of the sender key this side trusts.
    fn sender_key_id(&self) -> &str;
    /// Identifier of this side's agreement key.
    fn recipient_key_id(&self) -> &str;
    /// Verifies a manifest signature made by the key named `key_id`.
    fn verify(&self, key_id: &str, msg: &[u8], signature: &[u8]) -> Result<(), CryptoError>;
    /// The per-package cipher for a manifest's ephemeral key, sealed to
    /// this side's agreement key named `recipient_key_id`.
    fn open_package(
        &self,
        recipient_key_id: &str,
        epoch_secret: &Secret32,
        ephemeral: &[u8],
        context: &[u8],
    ) -> Result<Box<dyn PayloadCipher>, CryptoError>;
}
