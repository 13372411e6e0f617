//! Detached Ed25519 signatures over the policy hash, so that a system
//! administrator alone cannot change the rules: only a holder of a security
//! administrator's signing key can produce a policy the daemon accepts.
//!
//! The signature covers the policy hash, which covers every included file,
//! so editing an include invalidates the signature just like editing the
//! main file.

use crate::compile::{compile, read_files, FileSet};
use crate::diag::Diagnostic;
use crate::model::Policy;
use crate::PolicyError;
use ferry_common::durable::Replace;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use std::fmt;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

const SIGNING_KEY_HEADER: &str = "ferry-policy-signing-key v1";
const PUBLIC_KEY_HEADER: &str = "ferry-policy-public-key v1 ed25519";
const SIGNATURE_HEADER: &str = "ferry-policy-signature v1";
/// Domain separation: a policy signature can never be replayed as a
/// signature over anything else ferry signs.
const SIGNED_DOMAIN: &[u8] = b"ferry-policy-signature-v1\n";

/// Why signing, verifying or reading a key failed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// A file could not be read or written.
    #[error("{}: {source}; check the path and permissions", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A key or signature file is not in the expected format.
    #[error("{}: not a {what}; use the files `ferryctl policy keygen` and `ferryctl policy sign` write", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What it should be.
        what: &'static str,
    },
    /// keygen refuses to overwrite a key.
    #[error("{}: already exists; keygen never overwrites a key: choose another name or remove the old key deliberately", path.display())]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// The policy changed after it was signed.
    #[error("the policy's SHA-256 is {actual} but the signature covers {signed}: the policy (or an included file) changed after signing; have a security administrator review and re-sign it")]
    HashMismatch {
        /// Hash in the signature file.
        signed: String,
        /// Hash of the files now.
        actual: String,
    },
    /// Signed by a key that is not trusted.
    #[error("the signature is by key {key_id}, which is not among the trusted security-administrator keys")]
    UntrustedKey {
        /// The signer's key id.
        key_id: String,
    },
    /// The signature does not verify.
    #[error("the signature does not verify with trusted key {key_id}: the signature file is corrupt or forged")]
    BadSignature {
        /// The key tried.
        key_id: String,
    },
    /// Signing refused because the policy does not pass `check`.
    #[error("refusing to sign an invalid policy:\n{}", render(.0))]
    InvalidPolicy(Vec<Diagnostic>),
    /// The system random generator failed.
    #[error("cannot generate a key: the system random number generator failed")]
    Random,
}

fn render(d: &[Diagnostic]) -> String {
    d.iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// A security administrator's signing key (PKCS#8). Never printed.
pub struct SigningKey {
    pkcs8: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

/// A trusted public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    bytes: [u8; 32],
}

impl PublicKey {
    /// First 8 bytes of SHA-256 over the key, hex: names the key in
    /// signature files and audit records.
    pub fn key_id(&self) -> String {
        let d = ring::digest::digest(&ring::digest::SHA256, &self.bytes);
        hex::encode(&d.as_ref()[..8])
    }

    /// Reads a public key file written by [`keygen`].
    pub fn read(path: &Path) -> Result<PublicKey, SignError> {
        let text = read_small(path)?;
        let bad = || SignError::Format {
            path: path.to_path_buf(),
            what: "policy public key",
        };
        let hex_part = text
            .trim()
            .strip_prefix(PUBLIC_KEY_HEADER)
            .ok_or_else(bad)?
            .trim();
        let raw = hex::decode(hex_part).map_err(|_| bad())?;
        let bytes: [u8; 32] = raw.try_into().map_err(|_| bad())?;
        Ok(PublicKey { bytes })
    }
}

impl SigningKey {
    /// Reads a signing key file written by [`keygen`].
    pub fn read(path: &Path) -> Result<SigningKey, SignError> {
        let text = Zeroizing::new(read_small(path)?);
        let bad = || SignError::Format {
            path: path.to_path_buf(),
            what: "policy signing key",
        };
        let hex_part = text
            .trim()
            .strip_prefix(SIGNING_KEY_HEADER)
            .ok_or_else(bad)?
            .trim();
        let pkcs8 = Zeroizing::new(hex::decode(hex_part).map_err(|_| bad())?);
        Ed25519KeyPair::from_pkcs8(&pkcs8).map_err(|_| bad())?;
        Ok(SigningKey { pkcs8 })
    }

    fn pair(&self) -> Result<Ed25519KeyPair, SignError> {
        Ed25519KeyPair::from_pkcs8(&self.pkcs8).map_err(|_| SignError::Random)
    }

    /// The matching public key.
    pub fn public_key(&self) -> Result<PublicKey, SignError> {
        let pair = self.pair()?;
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(pair.public_key().as_ref());
        Ok(PublicKey { bytes })
    }
}

fn read_small(path: &Path) -> Result<String, SignError> {
    use std::io::Read;
    let f = crate::files::open_regular(path).map_err(|source| SignError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut s = String::new();
    f.take(64 * 1024)
        .read_to_string(&mut s)
        .map_err(|source| SignError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(s)
}

/// Writes `contents` to `path` with `mode` through the workspace's one
/// durable writer: a crash leaves no half-written key or signature, and
/// with [`Replace::Never`] an existing file is refused and kept.
fn write_durably(
    path: &Path,
    contents: &[u8],
    mode: u32,
    replace: Replace,
) -> Result<(), SignError> {
    use ferry_common::durable::WriteError;
    ferry_common::durable::write(path, contents, mode, replace).map_err(|e| match e {
        WriteError::Exists { path } => SignError::Exists { path },
        WriteError::Io { path, source, .. } => SignError::Io { path, source },
    })
}

/// The public-key file written next to a signing key: `OUT.pub`.
pub fn public_key_path(out: &Path) -> PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push(".pub");
    PathBuf::from(s)
}

/// The detached signature of a policy file: `POLICY.sig`.
pub fn signature_path(policy: &Path) -> PathBuf {
    let mut s = policy.as_os_str().to_owned();
    s.push(".sig");
    PathBuf::from(s)
}

/// Writes a new signing key to `out` (mode 0600) and its public key to
/// `out.pub` (0644). Refuses to overwrite either.
pub fn keygen(out: &Path) -> Result<(PathBuf, PathBuf), SignError> {
    let pub_path = public_key_path(out);
    if pub_path.exists() {
        return Err(SignError::Exists { path: pub_path });
    }
    let doc =
        Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| SignError::Random)?;
    let key = SigningKey {
        pkcs8: Zeroizing::new(doc.as_ref().to_vec()),
    };
    let public = key.public_key()?;
    let text = Zeroizing::new(format!(
        "{SIGNING_KEY_HEADER}\n{}\n",
        hex::encode(&*key.pkcs8)
    ));
    write_durably(out, text.as_bytes(), 0o600, Replace::Never)?;
    write_durably(
        &pub_path,
        format!("{PUBLIC_KEY_HEADER} {}\n", hex::encode(public.bytes)).as_bytes(),
        0o644,
        Replace::Never,
    )?;
    Ok((out.to_path_buf(), pub_path))
}

fn message(hash: &[u8; 32]) -> Vec<u8> {
    let mut m = SIGNED_DOMAIN.to_vec();
    m.extend_from_slice(hash);
    m
}

/// A verified signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Who signed.
    pub key_id: String,
    /// The policy hash the signature covers.
    pub policy_hash: String,
}

/// Signs the policy at `policy` (with its includes) after checking it;
/// writes `POLICY.sig` and returns its path.
pub fn sign(policy: &Path, key: &Path) -> Result<PathBuf, SignError> {
    let key = SigningKey::read(key)?;
    let set = read_files(policy).map_err(|e| match e {
        PolicyError::Io { path, source } => SignError::Io { path, source },
        other => SignError::InvalidPolicy(other.diagnostics().to_vec()),
    })?;
    if let Err(d) = compile(&set) {
        return Err(SignError::InvalidPolicy(d));
    }
    let hash = set.hash();
    let pair = key.pair()?;
    let sig = pair.sign(&message(&hash));
    let public = key.public_key()?;
    let text = format!(
        "{SIGNATURE_HEADER}\npolicy-sha256 {}\nkey-id {}\ned25519 {}\n",
        hex::encode(hash),
        public.key_id(),
        hex::encode(sig.as_ref())
    );
    let path = signature_path(policy);
    // Re-signing replaces the old signature in one step: a reader never
    // sees half a signature.
    write_durably(&path, text.as_bytes(), 0o644, Replace::Atomically)?;
    Ok(path)
}

/// Verifies `sig` against files already read (the same bytes that will be
/// compiled, so nothing can change between the check and the load).
pub(crate) fn verify_set(
    set: &FileSet,
    sig: &Path,
    trusted: &[PublicKey],
) -> Result<Verified, SignError> {
    let text = read_small(sig)?;
    let bad = || SignError::Format {
        path: sig.to_path_buf(),
        what: "policy signature",
    };
    let mut lines = text.lines();
    if lines.next().map(str::trim) != Some(SIGNATURE_HEADER) {
        return Err(bad());
    }
    let mut field = |name: &str| -> Result<String, SignError> {
        lines
            .next()
            .and_then(|l| l.trim().strip_prefix(name))
            .map(|v| v.trim().to_string())
            .ok_or_else(bad)
    };
    let signed_hash = field("policy-sha256 ")?;
    let key_id = field("key-id ")?;
    let sig_bytes = hex::decode(field("ed25519 ")?).map_err(|_| bad())?;
    let actual = hex::encode(set.hash());
    if signed_hash != actual {
        return Err(SignError::HashMismatch {
            signed: signed_hash,
            actual,
        });
    }
    let key = trusted
        .iter()
        .find(|k| k.key_id() == key_id)
        .ok_or_else(|| SignError::UntrustedKey {
            key_id: key_id.clone(),
        })?;
    UnparsedPublicKey::new(&ED25519, key.bytes)
        .verify(&message(&set.hash()), &sig_bytes)
        .map_err(|_| SignError::BadSignature {
            key_id: key_id.clone(),
        })?;
    Ok(Verified {
        key_id,
        policy_hash: actual,
    })
}

/// Verifies `POLICY.sig` (or `sig`) for the policy at `policy`.
pub fn verify(policy: &Path, sig: &Path, trusted: &[PublicKey]) -> Result<Verified, SignError> {
    let set = read_files(policy).map_err(|e| match e {
        PolicyError::Io { path, source } => SignError::Io { path, source },
        other => SignError::InvalidPolicy(other.diagnostics().to_vec()),
    })?;
    verify_set(&set, sig, trusted)
}

/// Loads a policy only if `POLICY.sig` verifies with a trusted key: the
/// daemon's path when signatures are required. Files are read once, so the
/// bytes verified are the bytes compiled.
pub fn load_signed(
    policy: &Path,
    trusted: &[PublicKey],
) -> Result<(Policy, Vec<Diagnostic>, Verified), PolicyError> {
    let set = read_files(policy)?;
    let verified = verify_set(&set, &signature_path(policy), trusted)?;
    let (p, w) = compile(&set).map_err(|diagnostics| PolicyError::Invalid { diagnostics })?;
    Ok((p, w, verified))
}
