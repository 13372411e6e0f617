//! What each side of a link holds, written once for both suites.
//!
//! The ingress side holds one signing key and the egress side's current
//! public key ([`SealingKeys`]); the egress side holds every agreement or
//! decryption key and every sender verifying key still in use, each under
//! its key id, newest first ([`OpeningKeys`]), so that packages sealed
//! before and after a rotation both open until the old key is retired. A
//! suite supplies only its algorithms, through [`SuiteAlgorithms`]: how to sign and
//! verify, how to seal a fresh package key to the recipient and how to open
//! it again. Key lookup by id, the refusal of an unknown id and `Debug`
//! output that names ids but never keys live here.

use ferry_protocol::suite::{CryptoError, LinkCrypto, OpenKeys, PayloadCipher, SealKeys, Secret32};

/// The algorithms of one suite, on top of its link primitives. Implemented
/// by `IntlLink` (in `intl.rs`) and `GmLink` (in `gm.rs`); this leaf names
/// neither by path, so the suites depend on it and never the reverse.
pub trait SuiteAlgorithms: LinkCrypto + Copy + Default + 'static {
    /// Name of the sealing key set in `Debug` output (`IntlSealKeys`).
    const SEAL_KEYS_NAME: &'static str;
    /// Name of the opening key set in `Debug` output (`IntlOpenKeys`).
    const OPEN_KEYS_NAME: &'static str;
    /// The ingress side's manifest signing key.
    type SigningKey: Send + Sync;
    /// A sender's verifying key, held by the egress side.
    type VerifyingKey: Send + Sync;
    /// The egress side's public key that packages are sealed to.
    type RecipientPublic: Send + Sync;
    /// The egress side's private key that opens packages sealed to it.
    type RecipientSecret: Send + Sync;

    /// Signs canonical manifest bytes.
    fn sign(key: &Self::SigningKey, msg: &[u8]) -> Result<Vec<u8>, CryptoError>;
    /// Checks a manifest signature: [`CryptoError::BadSignature`] if it does
    /// not verify.
    fn verify(key: &Self::VerifyingKey, msg: &[u8], signature: &[u8]) -> Result<(), CryptoError>;
    /// A fresh package key sealed to `recipient`, mixed with the epoch
    /// secret and `context`: the cipher and the key-transport bytes for the
    /// manifest.
    fn seal_package(
        recipient: &Self::RecipientPublic,
        epoch_secret: &Secret32,
        context: &[u8],
    ) -> Result<(Box<dyn PayloadCipher>, Vec<u8>), CryptoError>;
    /// The package cipher from a manifest's key-transport bytes.
    fn open_package(
        recipient: &Self::RecipientSecret,
        epoch_secret: &Secret32,
        ephemeral: &[u8],
        context: &[u8],
    ) -> Result<Box<dyn PayloadCipher>, CryptoError>;
}

/// Keys under their ids, newest (current) first. A manifest names the key
/// it needs; an id not held is [`CryptoError::UnknownKey`].
pub struct KeyRing<K> {
    keys: Vec<(String, K)>,
}

impl<K> KeyRing<K> {
    /// An empty ring.
    pub fn new() -> Self {
        Self { keys: Vec::new() }
    }

    /// Adds `key` after those already held (an older key during a
    /// rotation overlap). An id already held keeps its first key.
    pub fn push(&mut self, id: String, key: K) {
        self.keys.push((id, key));
    }

    /// The key named `id`.
    pub fn get(&self, id: &str) -> Result<&K, CryptoError> {
        self.keys
            .iter()
            .find(|(held, _)| held == id)
            .map(|(_, key)| key)
            .ok_or_else(|| CryptoError::UnknownKey(id.to_owned()))
    }

    /// Whether a key named `id` is held.
    pub fn contains(&self, id: &str) -> bool {
        self.keys.iter().any(|(held, _)| held == id)
    }

    /// The current key's id; empty if the ring is.
    pub fn current_id(&self) -> &str {
        self.keys.first().map_or("", |(id, _)| id.as_str())
    }

    /// Ids held, current first.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|(id, _)| id.as_str())
    }
}

impl<K> Default for KeyRing<K> {
    fn default() -> Self {
        Self::new()
    }
}

/// Ids only: a key ring is printed in logs and errors, its keys never are.
impl<K> std::fmt::Debug for KeyRing<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.ids().collect::<Vec<_>>().join(", "))
    }
}

/// The ingress side's keys: its signing key and the egress side's current
/// public key. Each suite names it (`IntlSealKeys`, `GmSealKeys`) and
/// builds it from its own key encodings.
pub struct SealingKeys<S: SuiteAlgorithms> {
    pub(crate) link: S,
    pub(crate) signing_key_id: String,
    pub(crate) signing_key: S::SigningKey,
    pub(crate) recipient_key_id: String,
    pub(crate) recipient_key: S::RecipientPublic,
}

impl<S: SuiteAlgorithms> std::fmt::Debug for SealingKeys<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct(S::SEAL_KEYS_NAME)
            .field("signing_key_id", &self.signing_key_id)
            .field("recipient_key_id", &self.recipient_key_id)
            .finish_non_exhaustive()
    }
}

impl<S: SuiteAlgorithms> SealKeys for SealingKeys<S> {
    fn link(&self) -> &dyn LinkCrypto {
        &self.link
    }

    fn signing_key_id(&self) -> &str {
        &self.signing_key_id
    }

    fn recipient_key_id(&self) -> &str {
        &self.recipient_key_id
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, CryptoError> {
        S::sign(&self.signing_key, msg)
    }

    fn new_package(
        &self,
        epoch_secret: &Secret32,
        context: &[u8],
    ) -> Result<(Box<dyn PayloadCipher>, Vec<u8>), CryptoError> {
        S::seal_package(&self.recipient_key, epoch_secret, context)
    }
}

/// The egress side's keys: its recipient keys and the ingress side's
/// verifying keys, several of each during a rotation overlap. A manifest
/// picks keys by id. Each suite names it (`IntlOpenKeys`, `GmOpenKeys`) and
/// builds it from its own key encodings.
pub struct OpeningKeys<S: SuiteAlgorithms> {
    pub(crate) link: S,
    pub(crate) senders: KeyRing<S::VerifyingKey>,
    pub(crate) recipients: KeyRing<S::RecipientSecret>,
}

impl<S: SuiteAlgorithms> OpeningKeys<S> {
    /// Ids of the sender keys held, current first.
    pub fn sender_key_ids(&self) -> impl Iterator<Item = &str> {
        self.senders.ids()
    }

    /// Ids of the recipient keys held, current first.
    pub fn recipient_key_ids(&self) -> impl Iterator<Item = &str> {
        self.recipients.ids()
    }
}

impl<S: SuiteAlgorithms> std::fmt::Debug for OpeningKeys<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct(S::OPEN_KEYS_NAME)
            .field("recipient_key_ids", &self.recipients)
            .field("sender_key_ids", &self.senders)
            .finish_non_exhaustive()
    }
}

impl<S: SuiteAlgorithms> OpenKeys for OpeningKeys<S> {
    fn link(&self) -> &dyn LinkCrypto {
        &self.link
    }

    fn sender_key_id(&self) -> &str {
        self.senders.current_id()
    }

    fn recipient_key_id(&self) -> &str {
        self.recipients.current_id()
    }

    fn verify(&self, key_id: &str, msg: &[u8], signature: &[u8]) -> Result<(), CryptoError> {
        S::verify(self.senders.get(key_id)?, msg, signature)
    }

    fn open_package(
        &self,
        recipient_key_id: &str,
        epoch_secret: &Secret32,
        ephemeral: &[u8],
        context: &[u8],
    ) -> Result<Box<dyn PayloadCipher>, CryptoError> {
        S::open_package(
            self.recipients.get(recipient_key_id)?,
            epoch_secret,
            ephemeral,
            context,
        )
    }
}
