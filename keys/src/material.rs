//! Key material per suite: generating key pairs, signing and verifying
//! bundles, pairing, and building the protocol's seal/open key sets.
//!
//! The key store is suite-agnostic: it keeps private keys as opaque bytes
//! (an Ed25519 seed or X25519 secret for `intl`, an SM2 PKCS#8 DER for `gm`)
//! and public keys as bytes, and asks this module what to do with them.

use crate::{KeyError, Purpose, Suite};
use ferry_protocol::suite::{LinkCrypto, OpenKeys, SealKeys, Secret32};
use ferry_suites::{gm, intl};
use zeroize::Zeroizing;

/// Private key bytes, erased on drop.
pub type PrivateBytes = Zeroizing<Vec<u8>>;

static INTL_LINK: intl::IntlLink = intl::IntlLink;
static GM_LINK: gm::GmLink = gm::GmLink;

/// The link primitives of `suite`.
pub fn link_crypto(suite: Suite) -> &'static dyn LinkCrypto {
    match suite {
        Suite::Intl => &INTL_LINK,
        Suite::Gm => &GM_LINK,
    }
}

/// Fails early, with what to do, when `suite` cannot run on this build.
pub fn ensure_suite(suite: Suite) -> Result<(), KeyError> {
    match suite {
        Suite::Intl => Ok(()),
        Suite::Gm => gm::ensure_available().map_err(KeyError::from),
    }
}

/// A fresh key pair for `purpose`: (private bytes, public bytes).
pub fn generate(suite: Suite, purpose: Purpose) -> Result<(PrivateBytes, Vec<u8>), KeyError> {
    match (suite, purpose) {
        (Suite::Intl, Purpose::Signing) => {
            let (seed, public) = intl::generate_signing_key()?;
            Ok((Zeroizing::new(seed.0.to_vec()), public.to_vec()))
        }
        (Suite::Intl, Purpose::Agreement | Purpose::Pairing) => {
            let (secret, public) = intl::generate_agreement_key()?;
            Ok((Zeroizing::new(secret.0.to_vec()), public.to_vec()))
        }
        (Suite::Gm, _) => Ok(gm::generate_sm2()?),
    }
}

/// The public key of `private` (to check a decrypted key against the
/// keyring entry it belongs to).
pub fn public_of(suite: Suite, purpose: Purpose, private: &[u8]) -> Result<Vec<u8>, KeyError> {
    match suite {
        Suite::Intl => {
            let secret = secret32(private)?;
            Ok(match purpose {
                Purpose::Signing => intl::signing_public(&secret)?.to_vec(),
                Purpose::Agreement | Purpose::Pairing => intl::agreement_public(&secret).to_vec(),
            })
        }
        Suite::Gm => Ok(gm::sm2_public_from_private(private)?),
    }
}

/// Signs `msg` with a signing key (bundle self-signatures).
pub fn sign(suite: Suite, private: &[u8], msg: &[u8]) -> Result<Vec<u8>, KeyError> {
    match suite {
        Suite::Intl => Ok(intl::sign_detached(&secret32(private)?, msg)?.to_vec()),
        Suite::Gm => Ok(gm::sm2_sign(private, gm::DEFAULT_DISTINGUISHING_ID, msg)?),
    }
}

/// Whether `sig` is a valid signature of `msg` under `public`.
pub fn verify(suite: Suite, public: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    match suite {
        Suite::Intl => <[u8; 32]>::try_from(public)
            .map(|p| intl::verify_detached(&p, msg, sig).is_ok())
            .unwrap_or(false),
        Suite::Gm => gm::sm2_verify(public, gm::DEFAULT_DISTINGUISHING_ID, msg, sig).is_ok(),
    }
}

/// Whether `public` is well-formed for `suite` (checked on bundle import,
/// so a bad key is refused at the door, not at the first package).
pub fn public_is_valid(suite: Suite, public: &[u8]) -> bool {
    match suite {
        Suite::Intl => public.len() == 32,
        Suite::Gm => gm::sm2_public_spki_to_pem(public).is_ok(),
    }
}

/// The initial epoch secret E(0) from this side's pairing key and the
/// peer's pairing public key.
pub fn pair(
    suite: Suite,
    own_private: &[u8],
    peer_public: &[u8],
    link: &str,
) -> Result<Secret32, KeyError> {
    match suite {
        Suite::Intl => {
            let peer: [u8; 32] = peer_public
                .try_into()
                .map_err(|_| KeyError::Crypto(ferry_protocol::CryptoError::Agreement))?;
            Ok(intl::pair(&secret32(own_private)?, &peer, link)?)
        }
        Suite::Gm => Ok(gm::pairing_secret(own_private, peer_public, link)?),
    }
}

/// A key with its id, as the seal/open builders take them.
pub struct IdKey<'a> {
    /// Key id.
    pub id: &'a str,
    /// Key bytes (private or public, by context).
    pub bytes: &'a [u8],
}

/// The ingress side's sealing keys: sign with `signing`, seal to `recipient`.
pub fn seal_keys(
    suite: Suite,
    signing: IdKey<'_>,
    recipient: IdKey<'_>,
) -> Result<Box<dyn SealKeys>, KeyError> {
    match suite {
        Suite::Intl => {
            let peer: [u8; 32] = recipient
                .bytes
                .try_into()
                .map_err(|_| KeyError::Crypto(ferry_protocol::CryptoError::Agreement))?;
            Ok(Box::new(intl::IntlSealKeys::new(
                &secret32(signing.bytes)?,
                signing.id.to_owned(),
                peer,
                recipient.id.to_owned(),
            )?))
        }
        Suite::Gm => Ok(Box::new(gm::GmSealKeys::new(
            signing.id.to_owned(),
            signing.bytes,
            recipient.id.to_owned(),
            recipient.bytes,
            gm::DEFAULT_DISTINGUISHING_ID,
        )?)),
    }
}

/// The egress side's opening keys: every sender key it accepts and every
/// agreement key it still holds, newest first.
pub fn open_keys(
    suite: Suite,
    senders: &[IdKey<'_>],
    recipients: &[IdKey<'_>],
) -> Result<Box<dyn OpenKeys>, KeyError> {
    match suite {
        Suite::Intl => {
            let bad = || KeyError::Crypto(ferry_protocol::CryptoError::Agreement);
            let (first_r, rest_r) = recipients.split_first().ok_or_else(bad)?;
            let (first_s, rest_s) = senders.split_first().ok_or_else(bad)?;
            let public = |k: &IdKey<'_>| -> Result<[u8; 32], KeyError> {
                k.bytes
                    .try_into()
                    .map_err(|_| KeyError::Crypto(ferry_protocol::CryptoError::BadSignature))
            };
            let mut keys = intl::IntlOpenKeys::new(
                &secret32(first_r.bytes)?,
                first_r.id.to_owned(),
                public(first_s)?,
                first_s.id.to_owned(),
            )?;
            for r in rest_r {
                keys.add_recipient(r.id.to_owned(), &secret32(r.bytes)?);
            }
            for s in rest_s {
                keys.add_sender(s.id.to_owned(), public(s)?);
            }
            Ok(Box::new(keys))
        }
        Suite::Gm => Ok(Box::new(gm::GmOpenKeys::new(
            senders
                .iter()
                .map(|k| (k.id.to_owned(), k.bytes.to_vec()))
                .collect(),
            recipients
                .iter()
                .map(|k| (k.id.to_owned(), Zeroizing::new(k.bytes.to_vec())))
                .collect(),
            gm::DEFAULT_DISTINGUISHING_ID,
        )?)),
    }
}

fn secret32(bytes: &[u8]) -> Result<Secret32, KeyError> {
    let arr: [u8; 32] = bytes.try_into().map_err(|_| {
        KeyError::Crypto(ferry_protocol::CryptoError::Signing(
            "an intl private key must be 32 bytes".into(),
        ))
    })?;
    Ok(Secret32(arr))
}
