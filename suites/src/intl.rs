//! The `intl` crypto suite: Ed25519 manifest signatures, X25519 + HKDF-SHA256
//! package keys, AES-256-GCM payload chunks, GHASH-then-AES-256 datagram
//! tags and SHA-256 payload digests.
//!
//! This is the suite's format 2, suite byte 4 on the wire. Format 1, byte
//! 1, tagged datagrams with a truncated HMAC-SHA256: two SHA-256 passes
//! over every datagram on each side, about a tenth of an egress side's CPU
//! at full speed. Format 2 tags them as the GM suite does, with
//! `AES_K(GHASH_H(datagram))`: carry-less multiplies and one AES block.
//! Nothing else changed: the key schedule, the manifest and the payload
//! are format 1's.
//!
//! It exists so the protocol state machines can stay algorithm-free (they
//! only see the traits in [`ferry_protocol::suite`]); the key sets and the
//! key schedule it shares with the GM suite are in [`crate::keyring`] and
//! `crate::kdf`, so this file holds only the algorithms. Secret keys live only in
//! zeroizing types, `Debug` prints key ids only and no error carries key
//! material. Copies made inside `ring` (the expanded AES, HMAC and Ed25519
//! key schedules) are not zeroized by `ring`; the suite keeps them as short
//! lived as the hot path allows.

use std::convert::Infallible;

use aes::cipher::{BlockCipherEncrypt, KeyInit};
use aes::Aes256;
use ferry_protocol::suite::{
    CryptoError, DatagramMac, LinkCrypto, PayloadCipher, PayloadDigest, Secret32, SuiteId,
};
use ring::rand::{SecureRandom, SystemRandom};
use ring::{aead, digest, hmac, signature};
use x25519_dalek::{PublicKey, SharedSecret, StaticSecret};
use zeroize::Zeroizing;

use crate::ghash::{Block128, EncipheredGhash};
use crate::kdf::{self, Hmac32, Labels, HASH_LEN};
use crate::keyring::{KeyRing, OpeningKeys, SealingKeys, SuiteAlgorithms};

/// The labels of the intl key schedule (see `crate::kdf`).
const LABELS: Labels = Labels {
    ratchet_salt: b"ferry/v1/epoch-ratchet",
    ratchet_info: b"next",
    datagram_mac_info: b"ferry/v2/intl/datagram-mac",
    pairing_salt: b"ferry/v1/pairing",
    pairing_info: b"ferry/v1/epoch0",
};
/// HKDF info of the GHASH key `H` of the datagram tag (the AES key `K` has
/// [`Labels::datagram_mac_info`]).
const DATAGRAM_GHASH_INFO: &[u8] = b"ferry/v2/intl/datagram-ghash";
/// HKDF info prefix (followed by the package context) of a payload key.
const PAYLOAD_INFO: &[u8] = b"ferry/v1/payload";

/// Length of an AES-256-GCM tag, the per-chunk overhead.
const CHUNK_TAG_LEN: usize = 16;
/// Length of an SHA-256 digest.
const SHA256_LEN: usize = 32;
/// Length of an X25519 public key (and of an ephemeral key in a manifest).
const X25519_PUBLIC_LEN: usize = 32;

/// Link primitives of the `intl` suite: HKDF-SHA256 ratchet,
/// GHASH-then-AES-256 datagram tags, SHA-256 digests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct IntlLink;

impl LinkCrypto for IntlLink {
    fn suite(&self) -> SuiteId {
        SuiteId::Intl
    }

    fn ratchet(&self, epoch_secret: &Secret32) -> Secret32 {
        infallible(kdf::ratchet::<HmacSha256>(&LABELS, epoch_secret))
    }

    fn datagram_mac(&self, epoch_secret: &Secret32) -> Box<dyn DatagramMac> {
        Box::new(ghash_aes_mac(epoch_secret))
    }

    fn new_digest(&self) -> Box<dyn PayloadDigest> {
        Box::new(Sha256Digest(digest::Context::new(&digest::SHA256)))
    }

    fn digest_len(&self) -> usize {
        SHA256_LEN
    }
}

/// The format-2 datagram tag: `AES-256_K(GHASH_H(datagram, lengths))` (see
/// [`EncipheredGhash`] for why), with `K` = HKDF-SHA256(no salt, ikm = E,
/// info = "ferry/v2/intl/datagram-mac") and `H` the first 16 bytes of
/// HKDF-SHA256(no salt, ikm = E, info = "ferry/v2/intl/datagram-ghash"):
/// two single-block HKDFs, since `K || H` is longer than one.
fn ghash_aes_mac(epoch_secret: &Secret32) -> EncipheredGhash<Aes256Block> {
    // No salt: the epoch secret is already uniformly random.
    let k = infallible(kdf::hkdf_32::<HmacSha256>(
        &[],
        &epoch_secret.0,
        &[LABELS.datagram_mac_info],
    ));
    let h_full = infallible(kdf::hkdf_32::<HmacSha256>(
        &[],
        &epoch_secret.0,
        &[DATAGRAM_GHASH_INFO],
    ));
    let mut h = Zeroizing::new([0u8; 16]);
    h.copy_from_slice(&h_full.0[..16]);
    EncipheredGhash::new(&h, Aes256Block(Aes256::new((&k.0).into())))
}

/// AES-256 on single blocks (AES-NI when the CPU has it, detected by the
/// `aes` crate; its key schedule is wiped on drop).
struct Aes256Block(Aes256);

impl Block128 for Aes256Block {
    type Error = Infallible;

    fn encrypt(&self, block: &[u8; 16]) -> Result<[u8; 16], Infallible> {
        let mut b = aes::Block::from(*block);
        self.0.encrypt_block(&mut b);
        Ok(b.into())
    }
}

/// HMAC-SHA256 on ring, the key schedule computed once per key.
struct HmacSha256(hmac::Key);

impl Hmac32 for HmacSha256 {
    type Error = Infallible;

    fn new(key: &[u8]) -> Result<Self, Infallible> {
        Ok(Self(hmac::Key::new(hmac::HMAC_SHA256, key)))
    }

    fn mac(&self, parts: &[&[u8]]) -> Result<[u8; HASH_LEN], Infallible> {
        let mut ctx = hmac::Context::with_key(&self.0);
        for part in parts {
            ctx.update(part);
        }
        let mut out = [0u8; HASH_LEN];
        out.copy_from_slice(ctx.sign().as_ref());
        Ok(out)
    }
}

/// The value of a computation on ring's HMAC, which cannot fail.
fn infallible<T>(r: Result<T, Infallible>) -> T {
    match r {
        Ok(v) => v,
        Err(never) => match never {},
    }
}

/// Incremental SHA-256 of package plaintext.
struct Sha256Digest(digest::Context);

impl PayloadDigest for Sha256Digest {
    fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    fn finish(self: Box<Self>) -> Vec<u8> {
        self.0.finish().as_ref().to_vec()
    }
}

/// AES-256-GCM under a per-package key. The key is fresh for every package
/// (new ephemeral X25519 key), so the chunk index alone makes the nonce
/// unique.
struct IntlPayloadCipher {
    key: aead::LessSafeKey,
}

impl IntlPayloadCipher {
    /// `0^32 || index` (big-endian).
    fn nonce(index: u64) -> aead::Nonce {
        let mut nonce = [0u8; aead::NONCE_LEN];
        nonce[aead::NONCE_LEN - 8..].copy_from_slice(&index.to_be_bytes());
        aead::Nonce::assume_unique_for_key(nonce)
    }

    /// `last || index` (big-endian): binding the last flag makes a stream cut
    /// short at a non-last chunk fail to open.
    fn aad(index: u64, last: bool) -> aead::Aad<[u8; 9]> {
        let mut aad = [0u8; 9];
        aad[0] = u8::from(last);
        aad[1..].copy_from_slice(&index.to_be_bytes());
        aead::Aad::from(aad)
    }
}

impl PayloadCipher for IntlPayloadCipher {
    fn overhead(&self) -> usize {
        CHUNK_TAG_LEN
    }

    fn seal_chunk(&self, index: u64, last: bool, buf: &mut Vec<u8>) -> Result<(), CryptoError> {
        self.key
            .seal_in_place_append_tag(Self::nonce(index), Self::aad(index, last), buf)
            // ring refuses only inputs beyond GCM's 64 GiB limit, which no
            // chunk reaches; report it against the chunk all the same.
            .map_err(|_| CryptoError::BadChunk { chunk: index })
    }

    fn open_chunk(&self, index: u64, last: bool, buf: &mut Vec<u8>) -> Result<(), CryptoError> {
        if buf.len() < CHUNK_TAG_LEN {
            return Err(CryptoError::ShortChunk);
        }
        // On failure ring zeroes the unauthenticated plaintext itself.
        let plaintext_len = self
            .key
            .open_in_place(
                Self::nonce(index),
                Self::aad(index, last),
                buf.as_mut_slice(),
            )
            .map_err(|_| CryptoError::BadChunk { chunk: index })?
            .len();
        buf.truncate(plaintext_len);
        Ok(())
    }
}

/// An egress side's X25519 agreement key: the secret and, bound into every
/// package key, its public half.
pub struct IntlRecipient {
    secret: StaticSecret,
    public: [u8; X25519_PUBLIC_LEN],
}

impl SuiteAlgorithms for IntlLink {
    const SEAL_KEYS_NAME: &'static str = "IntlSealKeys";
    const OPEN_KEYS_NAME: &'static str = "IntlOpenKeys";
    /// Kept as the seed (zeroized on drop) and expanded per signature, so
    /// ring's non-zeroizing key pair lives only for one call.
    type SigningKey = Secret32;
    /// An Ed25519 public key.
    type VerifyingKey = [u8; 32];
    /// An X25519 public key.
    type RecipientPublic = [u8; X25519_PUBLIC_LEN];
    type RecipientSecret = IntlRecipient;

    fn sign(seed: &Secret32, msg: &[u8]) -> Result<Vec<u8>, CryptoError> {
        Ok(sign_detached(seed, msg)?.to_vec())
    }

    fn verify(public: &[u8; 32], msg: &[u8], signature: &[u8]) -> Result<(), CryptoError> {
        verify_detached(public, msg, signature)
    }

    fn seal_package(
        recipient_public: &[u8; X25519_PUBLIC_LEN],
        epoch_secret: &Secret32,
        context: &[u8],
    ) -> Result<(Box<dyn PayloadCipher>, Vec<u8>), CryptoError> {
        let ephemeral = random_x25519_secret()?;
        let ephemeral_public = PublicKey::from(&ephemeral);
        let shared = agree(&ephemeral, recipient_public)?;
        drop(ephemeral);
        let cipher = package_cipher(
            epoch_secret,
            &shared,
            ephemeral_public.as_bytes(),
            recipient_public,
            context,
        )?;
        Ok((Box::new(cipher), ephemeral_public.as_bytes().to_vec()))
    }

    fn open_package(
        recipient: &IntlRecipient,
        epoch_secret: &Secret32,
        ephemeral: &[u8],
        context: &[u8],
    ) -> Result<Box<dyn PayloadCipher>, CryptoError> {
        let ephemeral: [u8; X25519_PUBLIC_LEN] = ephemeral
            .try_into()
            .map_err(|_| CryptoError::BadEphemeral)?;
        let shared = agree(&recipient.secret, &ephemeral)?;
        let cipher = package_cipher(
            epoch_secret,
            &shared,
            &ephemeral,
            &recipient.public,
            context,
        )?;
        Ok(Box::new(cipher))
    }
}

/// The ingress side's keys: Ed25519 signing seed and the egress side's X25519
/// public key.
pub type IntlSealKeys = SealingKeys<IntlLink>;

impl SealingKeys<IntlLink> {
    /// Keys for sealing to `recipient_public`. Fails with
    /// [`CryptoError::Agreement`] if the recipient key is a low-order point
    /// (every package sealed to it would be readable by anyone).
    pub fn new(
        signing_seed: &Secret32,
        signing_key_id: String,
        recipient_public: [u8; 32],
        recipient_key_id: String,
    ) -> Result<Self, CryptoError> {
        signing_public(signing_seed)?;
        // A clamped scalar is a multiple of the cofactor, so the product is
        // all-zero exactly when the point has low order; the scalar need not
        // be secret.
        let probe = StaticSecret::from([0x42; 32]);
        agree(&probe, &recipient_public)?;
        Ok(Self {
            link: IntlLink,
            signing_key: signing_seed.clone(),
            signing_key_id,
            recipient_key: recipient_public,
            recipient_key_id,
        })
    }
}

/// The egress side's keys: X25519 agreement secrets and the ingress side's
/// Ed25519 public keys, each under its key id. Several of each are held
/// while a rotation overlaps: packages sealed to the old agreement key, or
/// signed by the old signing key, still open until that key is retired.
pub type IntlOpenKeys = OpeningKeys<IntlLink>;

impl OpeningKeys<IntlLink> {
    /// Keys for opening packages sealed to `agreement_secret` and signed by
    /// `sender_public`.
    pub fn new(
        agreement_secret: &Secret32,
        recipient_key_id: String,
        sender_public: [u8; 32],
        sender_key_id: String,
    ) -> Result<Self, CryptoError> {
        let mut keys = Self {
            link: IntlLink,
            recipients: KeyRing::new(),
            senders: KeyRing::new(),
        };
        keys.add_recipient(recipient_key_id, agreement_secret);
        keys.add_sender(sender_key_id, sender_public);
        Ok(keys)
    }

    /// Also opens packages sealed to this (older) agreement key.
    pub fn add_recipient(&mut self, key_id: String, agreement_secret: &Secret32) {
        let secret = StaticSecret::from(agreement_secret.0);
        let public = PublicKey::from(&secret).to_bytes();
        self.recipients
            .push(key_id, IntlRecipient { secret, public });
    }

    /// Also accepts manifests signed by this (older) signing key.
    pub fn add_sender(&mut self, key_id: String, public: [u8; 32]) {
        self.senders.push(key_id, public);
    }
}

/// A fresh Ed25519 signing key: `(seed, public key)`.
pub fn generate_signing_key() -> Result<(Secret32, [u8; 32]), CryptoError> {
    let seed = random_secret()?;
    let public = signing_public(&seed)?;
    Ok((seed, public))
}

/// A fresh X25519 agreement key: `(secret, public key)`.
pub fn generate_agreement_key() -> Result<(Secret32, [u8; 32]), CryptoError> {
    let secret = random_secret()?;
    let public = agreement_public(&secret);
    Ok((secret, public))
}

/// The Ed25519 public key of `seed`.
pub fn signing_public(seed: &Secret32) -> Result<[u8; 32], CryptoError> {
    let pair = ed25519_pair(seed)?;
    let mut public = [0u8; 32];
    public.copy_from_slice(signature::KeyPair::public_key(&pair).as_ref());
    Ok(public)
}

/// The X25519 public key of `secret`.
pub fn agreement_public(secret: &Secret32) -> [u8; 32] {
    PublicKey::from(&StaticSecret::from(secret.0)).to_bytes()
}

/// Link pairing: both sides compute the same initial epoch secret E(0) from
/// their one-time pairing X25519 keys:
/// HKDF-SHA256(salt = "ferry/v1/pairing", ikm = X25519(own, peer),
/// info = "ferry/v1/epoch0" || link_name).
/// Rejects a non-contributory (all-zero) shared secret with
/// [`CryptoError::Agreement`].
pub fn pair(
    own_pairing_secret: &Secret32,
    peer_pairing_public: &[u8; 32],
    link_name: &str,
) -> Result<Secret32, CryptoError> {
    let own = StaticSecret::from(own_pairing_secret.0);
    let shared = agree(&own, peer_pairing_public)?;
    Ok(infallible(kdf::pairing::<HmacSha256>(
        &LABELS,
        shared.as_bytes(),
        link_name,
    )))
}

/// Ed25519 signature of `msg` by `seed` (for key bundles and other crates).
pub fn sign_detached(seed: &Secret32, msg: &[u8]) -> Result<[u8; 64], CryptoError> {
    let pair = ed25519_pair(seed)?;
    let mut sig = [0u8; 64];
    sig.copy_from_slice(pair.sign(msg).as_ref());
    Ok(sig)
}

/// Checks an Ed25519 signature; [`CryptoError::BadSignature`] if it does not
/// verify (including a malformed key or signature).
pub fn verify_detached(public: &[u8; 32], msg: &[u8], sig: &[u8]) -> Result<(), CryptoError> {
    signature::UnparsedPublicKey::new(&signature::ED25519, public)
        .verify(msg, sig)
        .map_err(|_| CryptoError::BadSignature)
}

fn ed25519_pair(seed: &Secret32) -> Result<signature::Ed25519KeyPair, CryptoError> {
    // ring rejects only a seed of the wrong length, which `Secret32` rules out.
    signature::Ed25519KeyPair::from_seed_unchecked(&seed.0)
        .map_err(|_| CryptoError::Signing("Ed25519 seed rejected".to_owned()))
}

/// X25519 with the peer's key, refusing an all-zero (low-order) result.
fn agree(own: &StaticSecret, peer_public: &[u8; 32]) -> Result<SharedSecret, CryptoError> {
    let shared = own.diffie_hellman(&PublicKey::from(*peer_public));
    if shared.was_contributory() {
        Ok(shared)
    } else {
        Err(CryptoError::Agreement)
    }
}

/// The package cipher: AES-256-GCM keyed with
/// HKDF-SHA256(salt = E, ikm = shared || eph_public || recipient_public,
/// info = "ferry/v1/payload" || context).
fn package_cipher(
    epoch_secret: &Secret32,
    shared: &SharedSecret,
    ephemeral_public: &[u8; 32],
    recipient_public: &[u8; 32],
    context: &[u8],
) -> Result<IntlPayloadCipher, CryptoError> {
    let mut ikm = Zeroizing::new([0u8; 96]);
    ikm[..32].copy_from_slice(shared.as_bytes());
    ikm[32..64].copy_from_slice(ephemeral_public);
    ikm[64..].copy_from_slice(recipient_public);
    let key = hkdf_sha256_32(&epoch_secret.0, &ikm[..], &[PAYLOAD_INFO, context]);
    // ring rejects only a key of the wrong length; ours is always 32 bytes.
    let key =
        aead::UnboundKey::new(&aead::AES_256_GCM, &key.0).map_err(|_| CryptoError::Agreement)?;
    Ok(IntlPayloadCipher {
        key: aead::LessSafeKey::new(key),
    })
}

/// 32 bytes from the operating system's random generator.
fn random_secret() -> Result<Secret32, CryptoError> {
    let mut secret = Secret32([0; 32]);
    SystemRandom::new()
        .fill(&mut secret.0)
        .map_err(|_| CryptoError::Signing("operating system random generator failed".to_owned()))?;
    Ok(secret)
}

/// A fresh X25519 secret from the operating system's random generator.
fn random_x25519_secret() -> Result<StaticSecret, CryptoError> {
    let bytes = Zeroizing::new(random_secret()?.0);
    Ok(StaticSecret::from(*bytes))
}

/// HKDF-SHA256 (RFC 5869) with an output of one hash block (L = 32); see
/// `crate::kdf::hkdf_32`.
fn hkdf_sha256_32(salt: &[u8], ikm: &[u8], info: &[&[u8]]) -> Secret32 {
    infallible(kdf::hkdf_32::<HmacSha256>(salt, ikm, info))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::{self, Fixture};
    use crate::ghash::reference_ghash;
    use ferry_protocol::suite::{OpenKeys, SealKeys, DATAGRAM_TAG_LEN};
    use proptest::prelude::*;

    fn unhex<const N: usize>(s: &str) -> [u8; N] {
        assert_eq!(s.len(), 2 * N, "hex length");
        let mut out = [0u8; N];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex digit");
        }
        out
    }

    fn fixture() -> Fixture<IntlLink> {
        let (signing_seed, signing_pub) = generate_signing_key().expect("signing key");
        let (agreement_secret, agreement_pub) = generate_agreement_key().expect("agreement key");
        let seal = IntlSealKeys::new(
            &signing_seed,
            "sig-1".to_owned(),
            agreement_pub,
            "agr-1".to_owned(),
        )
        .expect("seal keys");
        let open = IntlOpenKeys::new(
            &agreement_secret,
            "agr-1".to_owned(),
            signing_pub,
            "sig-1".to_owned(),
        )
        .expect("open keys");
        Fixture {
            seal,
            open,
            epoch: Secret32([7; 32]),
        }
    }

    #[test]
    fn seal_open_round_trip_over_chunk_sizes() {
        conformance::seal_open_round_trip_over_chunk_sizes(&fixture(), 16, |eph| {
            assert_eq!(eph.len(), 32)
        });
    }

    #[test]
    fn packages_get_fresh_keys() {
        conformance::packages_get_fresh_keys(&fixture());
    }

    #[test]
    fn tampered_ciphertext_byte_is_bad_chunk() {
        let f = fixture();
        let (_, opener, sealed) = f.sealed_chunk(b"one-way payload");
        for pos in [0, 5, sealed.len() - 1] {
            let mut buf = sealed.clone();
            buf[pos] ^= 0x01;
            assert_eq!(
                opener.open_chunk(3, false, &mut buf),
                Err(CryptoError::BadChunk { chunk: 3 })
            );
        }
    }

    #[test]
    fn wrong_last_flag_is_bad_chunk() {
        let f = fixture();
        let (_, opener, sealed) = f.sealed_chunk(b"not the last chunk");
        // A stream cut after this chunk would present it as last.
        let mut buf = sealed.clone();
        assert_eq!(
            opener.open_chunk(3, true, &mut buf),
            Err(CryptoError::BadChunk { chunk: 3 })
        );
        // Unauthenticated plaintext is not left behind.
        assert!(buf.iter().take(buf.len() - 16).all(|&b| b == 0));
    }

    #[test]
    fn wrong_chunk_index_is_bad_chunk() {
        conformance::wrong_last_flag_or_index_is_bad_chunk(&fixture());
    }

    #[test]
    fn rotation_overlap_opens_old_and_new_keys_until_retired() {
        let f = fixture();
        let (new_seed, new_sig_pub) = generate_signing_key().expect("signing key");
        let (new_agr, new_agr_pub) = generate_agreement_key().expect("agreement key");
        let new_seal = IntlSealKeys::new(&new_seed, "sig-2".into(), new_agr_pub, "agr-2".into())
            .expect("seal keys");
        // The receiver holds the new keys first and the old ones beside them.
        let mut open = IntlOpenKeys::new(&new_agr, "agr-2".into(), new_sig_pub, "sig-2".into())
            .expect("open keys");
        let old_agr = f
            .open
            .recipients
            .get("agr-1")
            .expect("held")
            .secret
            .to_bytes();
        open.add_recipient("agr-1".into(), &Secret32(old_agr));
        open.add_sender("sig-1".into(), *f.open.senders.get("sig-1").expect("held"));
        assert_eq!(open.recipient_key_id(), "agr-2");
        for (seal, rid) in [(&f.seal, "agr-1"), (&new_seal, "agr-2")] {
            let sig = seal.sign(b"manifest").expect("sign");
            open.verify(seal.signing_key_id(), b"manifest", &sig)
                .expect("verifies during the overlap");
            let (sealer, eph) = seal.new_package(&f.epoch, b"ctx").expect("package");
            let mut buf = b"payload".to_vec();
            sealer.seal_chunk(0, true, &mut buf).expect("seal");
            let opener = open
                .open_package(rid, &f.epoch, &eph, b"ctx")
                .expect("opens during the overlap");
            opener.open_chunk(0, true, &mut buf).expect("open");
            assert_eq!(buf, b"payload");
        }
        // Only the new keys: the retired ones are named as unknown.
        let retired = IntlOpenKeys::new(&new_agr, "agr-2".into(), new_sig_pub, "sig-2".into())
            .expect("open keys");
        let sig = f.seal.sign(b"m").expect("sign");
        assert_eq!(
            retired.verify("sig-1", b"m", &sig),
            Err(CryptoError::UnknownKey("sig-1".into()))
        );
        let (_, eph) = f.seal.new_package(&f.epoch, b"ctx").expect("package");
        assert!(matches!(
            retired.open_package("agr-1", &f.epoch, &eph, b"ctx"),
            Err(CryptoError::UnknownKey(id)) if id == "agr-1"
        ));
    }

    #[test]
    fn short_chunk_is_rejected() {
        let f = fixture();
        let (_, opener, _) = f.sealed_chunk(b"");
        let mut buf = vec![0u8; 15];
        assert_eq!(
            opener.open_chunk(0, true, &mut buf),
            Err(CryptoError::ShortChunk)
        );
    }

    #[test]
    fn other_recipient_cannot_open() {
        let f = fixture();
        let (sealer, eph) = f.seal.new_package(&f.epoch, b"ctx").expect("new package");
        let mut sealed = b"for agr-1 only".to_vec();
        sealer.seal_chunk(0, true, &mut sealed).expect("seal");

        let (other_secret, _) = generate_agreement_key().expect("agreement key");
        let (_, signing_pub) = generate_signing_key().expect("signing key");
        let other = IntlOpenKeys::new(
            &other_secret,
            "agr-1".to_owned(),
            signing_pub,
            "sig-1".to_owned(),
        )
        .expect("open keys");
        let opener = other
            .open_package("agr-1", &f.epoch, &eph, b"ctx")
            .expect("derives some key");
        let mut buf = sealed.clone();
        assert_eq!(
            opener.open_chunk(0, true, &mut buf),
            Err(CryptoError::BadChunk { chunk: 0 })
        );

        // The right key with the wrong epoch secret or context fails too.
        conformance::wrong_epoch_or_context_cannot_open(&f);
    }

    #[test]
    fn open_package_checks_key_id_and_ephemeral() {
        let f = fixture();
        let (_, eph) = f.seal.new_package(&f.epoch, b"ctx").expect("new package");
        assert_eq!(
            f.open.open_package("agr-0", &f.epoch, &eph, b"ctx").err(),
            Some(CryptoError::UnknownKey("agr-0".to_owned()))
        );
        assert_eq!(
            f.open
                .open_package("agr-1", &f.epoch, &eph[..31], b"ctx")
                .err(),
            Some(CryptoError::BadEphemeral)
        );
        // A low-order ephemeral would make the shared secret public.
        assert_eq!(
            f.open
                .open_package("agr-1", &f.epoch, &[0u8; 32], b"ctx")
                .err(),
            Some(CryptoError::Agreement)
        );
    }

    #[test]
    fn seal_keys_reject_low_order_recipient() {
        let (seed, _) = generate_signing_key().expect("signing key");
        let mut one = [0u8; 32];
        one[0] = 1;
        for low_order in [[0u8; 32], one] {
            assert_eq!(
                IntlSealKeys::new(&seed, "s".to_owned(), low_order, "r".to_owned()).err(),
                Some(CryptoError::Agreement)
            );
        }
    }

    #[test]
    fn signature_round_trip_and_failures() {
        let f = fixture();
        let sig = conformance::signature_round_trip_and_failures(&f);
        assert_eq!(sig.len(), 64);
        assert_eq!(f.seal.signing_key_id(), "sig-1");
    }

    #[test]
    fn ratchet_is_one_way_and_deterministic() {
        conformance::ratchet_is_one_way_and_deterministic(IntlLink, SuiteId::Intl);
    }

    /// HKDF-SHA256 with an empty salt and one block of output, on ring's
    /// own HKDF (not `kdf::hkdf_32`).
    fn ring_hkdf(ikm: &[u8], info: &[u8]) -> [u8; 32] {
        struct Len32;
        impl ring::hkdf::KeyType for Len32 {
            fn len(&self) -> usize {
                32
            }
        }
        let prk = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, &[]).extract(ikm);
        let mut out = [0u8; 32];
        prk.expand(&[info], Len32)
            .expect("expand")
            .fill(&mut out)
            .expect("fill");
        out
    }

    /// AES-256 of one block by OpenSSL, apart from the `aes` crate.
    fn openssl_aes256(key: &[u8; 32], block: &[u8; 16]) -> [u8; 16] {
        let mut c = openssl::symm::Crypter::new(
            openssl::symm::Cipher::aes_256_ecb(),
            openssl::symm::Mode::Encrypt,
            key,
            None,
        )
        .expect("aes-256-ecb");
        c.pad(false);
        let mut out = [0u8; 32];
        assert_eq!(c.update(block, &mut out).expect("update"), 16);
        out[..16].try_into().expect("16")
    }

    #[test]
    fn aes_block_matches_fips_197_and_openssl() {
        // FIPS-197 appendix C.3.
        let key: [u8; 32] =
            unhex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");
        let plain: [u8; 16] = unhex("00112233445566778899aabbccddeeff");
        let aes = Aes256Block(Aes256::new((&key).into()));
        assert_eq!(
            aes.encrypt(&plain),
            Ok(unhex("8ea2b7ca516745bfeafc49904b496089"))
        );
        for i in 0u8..32 {
            let key = [i.wrapping_mul(29) ^ 0x5c; 32];
            let block = [i.wrapping_mul(7); 16];
            let aes = Aes256Block(Aes256::new((&key).into()));
            assert_eq!(aes.encrypt(&block), Ok(openssl_aes256(&key, &block)));
        }
    }

    #[test]
    fn datagram_mac_verifies_and_rejects() {
        let (msg, tag) = conformance::datagram_mac_verifies_and_rejects(IntlLink);
        // Format 2: AES-256_K(GHASH_H(msg, lengths)), recomputed from ring's
        // HKDF, OpenSSL's AES and the bit-by-bit GHASH, the labels written
        // out.
        let k = ring_hkdf(&[3; 32], b"ferry/v2/intl/datagram-mac");
        let h: [u8; 16] = ring_hkdf(&[3; 32], b"ferry/v2/intl/datagram-ghash")[..16]
            .try_into()
            .expect("16");
        let expected = openssl_aes256(&k, &reference_ghash(&h, &msg, &[]));
        assert_eq!(expected, tag);
        // Format 1's truncated HMAC-SHA256 tag of the same bytes is refused.
        let v1_key = ring_hkdf(&[3; 32], b"ferry/v1/datagram-mac");
        let v1 = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &v1_key),
            &msg,
        );
        let mac = IntlLink.datagram_mac(&Secret32([3; 32]));
        assert!(!mac.verify(&msg, &v1.as_ref()[..DATAGRAM_TAG_LEN]));
    }

    #[test]
    fn sha256_digest_matches_fips_vector() {
        let link = IntlLink;
        let mut d = link.new_digest();
        d.update(b"a");
        d.update(b"bc");
        assert_eq!(link.digest_len(), 32);
        assert_eq!(
            d.finish(),
            unhex::<32>("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
    }

    #[test]
    fn pair_agrees_per_link_name() {
        let (a_secret, a_public) = generate_agreement_key().expect("a");
        let (b_secret, b_public) = generate_agreement_key().expect("b");
        let ab = pair(&a_secret, &b_public, "high-to-low").expect("pair a");
        let ba = pair(&b_secret, &a_public, "high-to-low").expect("pair b");
        assert_eq!(ab, ba);
        let other = pair(&a_secret, &b_public, "high-to-low-2").expect("pair other");
        assert_ne!(ab, other);
        assert_eq!(
            pair(&a_secret, &[0u8; 32], "high-to-low"),
            Err(CryptoError::Agreement)
        );
    }

    #[test]
    fn x25519_matches_rfc7748_section_6_1() {
        let alice = Secret32(unhex(
            "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
        ));
        let bob = Secret32(unhex(
            "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb",
        ));
        let alice_pub: [u8; 32] =
            unhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
        let bob_pub: [u8; 32] =
            unhex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
        let k: [u8; 32] = unhex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
        assert_eq!(agreement_public(&alice), alice_pub);
        assert_eq!(agreement_public(&bob), bob_pub);
        let shared = agree(&StaticSecret::from(alice.0), &bob_pub).expect("agree");
        assert_eq!(shared.as_bytes(), &k);

        // pair() is HKDF over exactly that shared secret (checked with ring's
        // own HKDF).
        let salt = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, LABELS.pairing_salt);
        let mut expected = [0u8; 32];
        salt.extract(&k)
            .expand(&[LABELS.pairing_info, b"lnk"], ring::hkdf::HKDF_SHA256)
            .expect("expand")
            .fill(&mut expected)
            .expect("fill");
        assert_eq!(pair(&alice, &bob_pub, "lnk").expect("pair").0, expected);
        assert_eq!(pair(&bob, &alice_pub, "lnk").expect("pair").0, expected);
    }

    #[test]
    fn ed25519_matches_rfc8032_test_1() {
        let seed = Secret32(unhex(
            "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        ));
        let public: [u8; 32] =
            unhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
        let sig: [u8; 64] = unhex(
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
        );
        assert_eq!(signing_public(&seed).expect("public"), public);
        assert_eq!(sign_detached(&seed, b"").expect("sign"), sig);
        verify_detached(&public, b"", &sig).expect("verifies");
    }

    #[test]
    fn hkdf_matches_rfc5869_and_ring() {
        // RFC 5869 A.1: the first 32 bytes of the 42-byte OKM.
        let okm = hkdf_sha256_32(
            &unhex::<13>("000102030405060708090a0b0c"),
            &[0x0b; 22],
            &[&unhex::<10>("f0f1f2f3f4f5f6f7f8f9")],
        );
        assert_eq!(
            okm.0,
            unhex::<32>("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf")
        );
        for (salt, ikm, info) in [
            (&b""[..], &[9u8; 32][..], &b"ferry/v1/datagram-mac"[..]),
            (&[1u8; 32][..], &[2u8; 96][..], &b""[..]),
        ] {
            let mut expected = [0u8; 32];
            ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, salt)
                .extract(ikm)
                .expand(&[info], ring::hkdf::HKDF_SHA256)
                .expect("expand")
                .fill(&mut expected)
                .expect("fill");
            assert_eq!(hkdf_sha256_32(salt, ikm, &[info]).0, expected);
        }
    }

    #[test]
    fn debug_shows_ids_not_secrets() {
        let (seal, open) = conformance::debug_shows_ids(&fixture());
        for s in [&seal, &open] {
            assert!(!s.contains("signing_seed") && !s.contains("agreement_secret"));
            assert!(!s.contains('[') && !s.contains("0x"));
        }
    }

    proptest! {
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
