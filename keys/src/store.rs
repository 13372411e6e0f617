//! The key directory: keyring, sealed private keys, signed public bundles,
//! rotation and retirement, and loading what a running link needs.
//!
//! On a one-way link the two sides never talk, so every key change travels
//! as a signed public bundle carried by hand. A bundle lists all of a
//! side's keys with their validity and state (active or retired) and is
//! signed by every active signing key in it. Importing a newer bundle is
//! accepted only if it is signed by a signing key the receiver already
//! trusts (continuity), so a rotation needs no second fingerprint check,
//! while a bundle from a stranger is refused unless the operator says it is
//! a new identity.
//!
//! Layout of a key directory (0700):
//! - `keyring.toml`: link, side, suite, Argon2id parameters, every key's id,
//!   purpose, public key, validity and state. No secrets.
//! - `private/ID.key`: each private key, AES-256-GCM under the
//!   passphrase-derived KEK, authenticated with its link, id and purpose.
//! - `epoch.state`: the oldest epoch secret held, sealed the same way.
//! - `public.toml`: this side's current signed bundle.
//! - `peer.toml`: the other side's bundle, as imported.

use crate::material::{self, IdKey, PrivateBytes};
use crate::sealed::{KdfParams, Kek, Passphrase, MIN_PASSPHRASE_CHARS};
use crate::{
    check_private, files, io, now_secs, utc, write_atomic, KeyError, Purpose, Side, Suite,
};
use ferry_protocol::suite::{LinkCrypto, OpenKeys, SealKeys, Secret32};
use serde::{Deserialize, Serialize};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Format version of keyring, bundle and sealed files.
const FORMAT: u32 = 1;
/// Default validity of a new key.
pub const DEFAULT_VALIDITY_DAYS: u64 = 365;
/// Keys expiring within this many days are reported by `list` and status.
pub const EXPIRY_WARNING_DAYS: u64 = 30;
const DAY: u64 = 86_400;

/// Whether a key is still held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    /// Held; usable within its validity window.
    Active,
    /// Private part erased; no longer accepted by the peer.
    Retired,
}

/// One key in the keyring or a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    /// Key id (written into manifests).
    pub id: String,
    /// What it is for.
    pub purpose: Purpose,
    /// Hex public key (32 bytes for intl, SPKI DER for gm).
    pub public: String,
    /// Unix seconds: first use.
    pub not_before: u64,
    /// Unix seconds: no new use after this.
    pub not_after: u64,
    /// Held or retired.
    pub state: KeyState,
    /// Unix seconds the key was retired, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<u64>,
}

impl KeyEntry {
    fn public_bytes(&self, file: &Path) -> Result<Vec<u8>, KeyError> {
        hex::decode(&self.public).map_err(|_| KeyError::Corrupt {
            path: file.to_path_buf(),
            what: format!("public key of `{}` is not hex", self.id),
        })
    }

    fn valid_at(&self, t: u64) -> bool {
        self.state == KeyState::Active && self.not_before <= t && t < self.not_after
    }

    /// Grouped SHA-256 fingerprint of the public key (read aloud when a
    /// bundle crosses the air gap).
    pub fn fingerprint(&self) -> String {
        grouped_sha256(self.public.as_bytes())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Keyring {
    format: u32,
    link: String,
    side: Side,
    suite: Suite,
    kdf: KdfParams,
    #[serde(default, rename = "key")]
    keys: Vec<KeyEntry>,
}

/// A signature over a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleSignature {
    /// The signing key (listed in the same bundle).
    pub key_id: String,
    /// Hex signature over the bundle's canonical text.
    pub signature: String,
}

/// The public bundle one side gives the other, out of band.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicBundle {
    /// Format version.
    pub format: u32,
    /// Link name both sides use.
    pub link: String,
    /// Side that made the bundle.
    pub side: Side,
    /// Crypto suite.
    pub suite: Suite,
    /// Unix seconds the bundle was made; a bundle older than the one
    /// imported is refused (it could bring back a retired key).
    pub created: u64,
    /// Every key of that side.
    #[serde(rename = "key")]
    pub keys: Vec<KeyEntry>,
    /// Self-signatures by every active signing key.
    #[serde(default, rename = "signature")]
    pub signatures: Vec<BundleSignature>,
}

impl PublicBundle {
    /// The bytes the signatures cover: every field but the signatures, in a
    /// fixed order and format.
    fn canonical(&self) -> Vec<u8> {
        let mut t = format!(
            "ferry-public-bundle\nformat={}\nlink={}\nside={}\nsuite={}\ncreated={}\n",
            self.format,
            self.link,
            self.side.name(),
            self.suite.name(),
            self.created
        );
        for k in &self.keys {
            t.push_str(&format!(
                "key={}|{}|{}|{}|{}|{:?}|{}\n",
                k.id,
                k.purpose.name(),
                k.public,
                k.not_before,
                k.not_after,
                k.state,
                k.retired_at.map_or(String::new(), |r| r.to_string()),
            ));
        }
        t.into_bytes()
    }

    /// Grouped SHA-256 over the canonical text: compare it with the other
    /// side's operator (by phone, on paper) before the first import.
    pub fn fingerprint(&self) -> String {
        grouped_sha256(&self.canonical())
    }

    fn key(&self, id: &str) -> Option<&KeyEntry> {
        self.keys.iter().find(|k| k.id == id)
    }

    fn pairing(&self) -> Option<&KeyEntry> {
        self.keys.iter().find(|k| k.purpose == Purpose::Pairing)
    }
}

fn grouped_sha256(data: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, data);
    hex::encode(&d.as_ref()[..16])
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(":")
}

/// Options of `keys init`.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// Link name both sides use.
    pub link: String,
    /// Which side this directory is.
    pub side: Side,
    /// Crypto suite.
    pub suite: Suite,
    /// Validity of the first keys, in days.
    pub validity_days: u64,
    /// Target Argon2id time in milliseconds (0: the floor profile, for
    /// tests and very slow machines).
    pub kdf_target_ms: u64,
}

/// Options of `keys rotate`.
#[derive(Debug, Clone)]
pub struct RotateOptions {
    /// Which key to rotate; default: the side's working key (signing on
    /// ingress, agreement on egress).
    pub purpose: Option<Purpose>,
    /// When the new key takes over (Unix seconds); default now. Give the
    /// other side time to import the new bundle first.
    pub activate_at: Option<u64>,
    /// Validity of the new key in days.
    pub validity_days: u64,
}

impl Default for RotateOptions {
    fn default() -> Self {
        Self {
            purpose: None,
            activate_at: None,
            validity_days: DEFAULT_VALIDITY_DAYS,
        }
    }
}

struct Dir {
    path: PathBuf,
}

impl Dir {
    fn keyring_path(&self) -> PathBuf {
        self.path.join(files::KEYRING)
    }

    fn private_path(&self, id: &str) -> PathBuf {
        self.path.join(files::PRIVATE).join(format!("{id}.key"))
    }

    fn read_keyring(&self) -> Result<Keyring, KeyError> {
        let path = self.keyring_path();
        let text = ferry_regular_file::read_regular_string(&path, crate::KEY_FILE_MAX_BYTES)
            .map_err(io(&path))?;
        let k: Keyring = toml::from_str(&text).map_err(|e| KeyError::Corrupt {
            path: path.clone(),
            what: format!("not a ferry keyring: {}", e.message()),
        })?;
        if k.format != FORMAT {
            return Err(KeyError::Corrupt {
                path,
                what: format!("keyring format {} (this ferry reads {FORMAT})", k.format),
            });
        }
        Ok(k)
    }

    fn write_keyring(&self, k: &Keyring) -> Result<(), KeyError> {
        let path = self.keyring_path();
        let text = toml::to_string(k).map_err(|e| KeyError::Corrupt {
            path: path.clone(),
            what: e.to_string(),
        })?;
        write_atomic(&path, text.as_bytes(), 0o600)
    }

    fn aad(k: &Keyring, id: &str, purpose: Purpose) -> Vec<u8> {
        format!(
            "ferry/v1/private-key|{}|{}|{}|{}",
            k.link,
            k.suite.name(),
            purpose.name(),
            id
        )
        .into_bytes()
    }

    fn write_private(
        &self,
        k: &Keyring,
        kek: &Kek,
        id: &str,
        purpose: Purpose,
        private: &[u8],
    ) -> Result<(), KeyError> {
        let sealed = kek.seal(private, &Self::aad(k, id, purpose))?;
        let text = format!("format = {FORMAT}\nsealed = \"{}\"\n", hex::encode(sealed));
        write_atomic(&self.private_path(id), text.as_bytes(), 0o600)
    }

    fn read_private(
        &self,
        k: &Keyring,
        kek: &Kek,
        entry: &KeyEntry,
    ) -> Result<PrivateBytes, KeyError> {
        let path = self.private_path(&entry.id);
        let sealed = read_sealed_file(&path)?;
        let private = kek
            .open(&sealed, &Self::aad(k, &entry.id, entry.purpose))
            .ok_or_else(|| KeyError::Corrupt {
                path: path.clone(),
                what: format!(
                    "does not open as key `{}` (modified, truncated or swapped with another key file)",
                    entry.id
                ),
            })?;
        let public = material::public_of(k.suite, entry.purpose, &private)?;
        if hex::encode(public) != entry.public {
            return Err(KeyError::Corrupt {
                path,
                what: format!(
                    "private key does not match the public key of `{}` in {}",
                    entry.id,
                    files::KEYRING
                ),
            });
        }
        Ok(private)
    }

    fn erase_private(&self, id: &str) -> Result<(), KeyError> {
        let path = self.private_path(id);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&path)(e)),
        }
        let dir = self.path.join(files::PRIVATE);
        fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&dir))
    }

    fn unlock(&self, k: &Keyring, passphrase: &Passphrase) -> Result<Kek, KeyError> {
        Kek::unlock(passphrase, &k.kdf, &self.keyring_path())
    }

    /// Signs and writes `public.toml` from the keyring.
    fn publish(&self, k: &Keyring, kek: &Kek) -> Result<PublicBundle, KeyError> {
        let mut bundle = PublicBundle {
            format: FORMAT,
            link: k.link.clone(),
            side: k.side,
            suite: k.suite,
            created: now_secs(),
            keys: k.keys.clone(),
            signatures: Vec::new(),
        };
        let msg = bundle.canonical();
        for entry in k
            .keys
            .iter()
            .filter(|e| e.purpose == Purpose::Signing && e.state == KeyState::Active)
        {
            let private = self.read_private(k, kek, entry)?;
            let sig = material::sign(k.suite, &private, &msg)?;
            bundle.signatures.push(BundleSignature {
                key_id: entry.id.clone(),
                signature: hex::encode(sig),
            });
        }
        let path = self.path.join(files::PUBLIC);
        let text = toml::to_string(&bundle).map_err(|e| KeyError::Corrupt {
            path: path.clone(),
            what: e.to_string(),
        })?;
        write_atomic(&path, text.as_bytes(), 0o644)?;
        Ok(bundle)
    }
}

fn read_sealed_file(path: &Path) -> Result<Vec<u8>, KeyError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct SealedFile {
        format: u32,
        sealed: String,
    }
    check_private(path)?;
    let text = ferry_regular_file::read_regular_string(path, crate::KEY_FILE_MAX_BYTES)
        .map_err(io(path))?;
    let corrupt = |what: String| KeyError::Corrupt {
        path: path.to_path_buf(),
        what,
    };
    let f: SealedFile = toml::from_str(&text).map_err(|e| corrupt(e.message().to_owned()))?;
    if f.format != FORMAT {
        return Err(corrupt(format!("format {} (expected {FORMAT})", f.format)));
    }
    hex::decode(&f.sealed).map_err(|_| corrupt("sealed key is not hex".into()))
}

fn key_id(purpose: Purpose, public: &[u8]) -> String {
    let prefix = match purpose {
        Purpose::Signing => "sig",
        Purpose::Agreement => "agr",
        Purpose::Pairing => "pair",
    };
    let d = ring::digest::digest(&ring::digest::SHA256, public);
    format!("{prefix}-{}", hex::encode(&d.as_ref()[..6]))
}

fn new_entry(
    suite: Suite,
    purpose: Purpose,
    not_before: u64,
    validity_days: u64,
) -> Result<(KeyEntry, PrivateBytes), KeyError> {
    let (private, public) = material::generate(suite, purpose)?;
    Ok((
        KeyEntry {
            id: key_id(purpose, &public),
            purpose,
            public: hex::encode(&public),
            not_before,
            not_after: not_before.saturating_add(validity_days.saturating_mul(DAY)),
            state: KeyState::Active,
            retired_at: None,
        },
        private,
    ))
}

fn purposes_for(side: Side) -> &'static [Purpose] {
    // Only the ingress side signs manifests and only the egress side
    // receives package keys, but both sign their own bundles.
    match side {
        Side::Ingress => &[Purpose::Signing, Purpose::Pairing],
        Side::Egress => &[Purpose::Signing, Purpose::Agreement, Purpose::Pairing],
    }
}

/// Creates a new key set in `dir` (created 0700), its private keys sealed
/// under `passphrase`. Refuses to overwrite an existing set. Returns the
/// signed public bundle (also written to `public.toml`).
pub fn init(
    dir: &Path,
    opts: &InitOptions,
    passphrase: &Passphrase,
) -> Result<PublicBundle, KeyError> {
    material::ensure_suite(opts.suite)?;
    if passphrase.chars() < MIN_PASSPHRASE_CHARS {
        return Err(KeyError::WeakPassphrase {
            chars: passphrase.chars(),
            min: MIN_PASSPHRASE_CHARS,
        });
    }
    let d = Dir {
        path: dir.to_path_buf(),
    };
    for p in [d.keyring_path(), dir.join(files::EPOCH)] {
        if p.exists() {
            return Err(KeyError::Exists { path: p });
        }
    }
    fs::create_dir_all(dir.join(files::PRIVATE)).map_err(io(dir))?;
    for p in [dir.to_path_buf(), dir.join(files::PRIVATE)] {
        fs::set_permissions(&p, fs::Permissions::from_mode(0o700)).map_err(io(&p))?;
    }
    let (kek, kdf) = Kek::create(passphrase, opts.kdf_target_ms)?;
    let mut ring = Keyring {
        format: FORMAT,
        link: opts.link.clone(),
        side: opts.side,
        suite: opts.suite,
        kdf,
        keys: Vec::new(),
    };
    let now = now_secs();
    let mut privates = Vec::new();
    for &purpose in purposes_for(opts.side) {
        let (entry, private) = new_entry(opts.suite, purpose, now, opts.validity_days)?;
        privates.push((entry.id.clone(), purpose, private));
        ring.keys.push(entry);
    }
    for (id, purpose, private) in &privates {
        d.write_private(&ring, &kek, id, *purpose, private)?;
    }
    // The keyring goes last: a crash before it leaves no half key set that
    // `init` would refuse to redo.
    d.write_keyring(&ring)?;
    d.publish(&ring, &kek)
}

/// Reads and checks a public bundle file: format, well-formed keys, and
/// every self-signature (at least one, each by an active signing key
/// listed in the bundle).
pub fn read_bundle(path: &Path) -> Result<PublicBundle, KeyError> {
    let text = ferry_regular_file::read_regular_string(path, crate::KEY_FILE_MAX_BYTES)
        .map_err(io(path))?;
    let bad = |what: String| KeyError::WrongPeer {
        path: path.to_path_buf(),
        what,
    };
    let b: PublicBundle = toml::from_str(&text)
        .map_err(|e| bad(format!("not a ferry public bundle: {}", e.message())))?;
    if b.format != FORMAT {
        return Err(bad(format!(
            "bundle format {} (this ferry reads {FORMAT})",
            b.format
        )));
    }
    for k in &b.keys {
        let public = hex::decode(&k.public)
            .map_err(|_| bad(format!("public key of `{}` is not hex", k.id)))?;
        if !material::public_is_valid(b.suite, &public) {
            return Err(bad(format!(
                "public key of `{}` is not a valid {} key",
                k.id,
                b.suite.name()
            )));
        }
        if key_id(k.purpose, &public) != k.id {
            return Err(bad(format!(
                "key id `{}` does not match its public key (edited bundle?)",
                k.id
            )));
        }
    }
    if b.signatures.is_empty() {
        return Err(bad(
            "bundle carries no self-signature; export it again with `ferryctl keys export-public`"
                .into(),
        ));
    }
    let msg = b.canonical();
    for s in &b.signatures {
        let signer = b
            .key(&s.key_id)
            .filter(|k| k.purpose == Purpose::Signing && k.state == KeyState::Active)
            .ok_or_else(|| {
                bad(format!(
                    "signed by `{}`, which is not an active signing key of this bundle",
                    s.key_id
                ))
            })?;
        let public = signer.public_bytes(path)?;
        let sig = hex::decode(&s.signature)
            .map_err(|_| bad(format!("signature by `{}` is not hex", s.key_id)))?;
        if !material::verify(b.suite, &public, &msg, &sig) {
            return Err(bad(format!(
                "self-signature by `{}` does not verify: the bundle was modified or damaged in transit; \
                 ask the other side for a fresh export",
                s.key_id
            )));
        }
    }
    Ok(b)
}

/// What an import did, for the operator.
#[derive(Debug, Clone)]
pub struct ImportReport {
    /// The imported bundle.
    pub bundle: PublicBundle,
    /// A trusted signing key that signed the new bundle (rotation
    /// continuity), or `None` for a first import or a new identity.
    pub continuity: Option<String>,
    /// Key ids new in this bundle.
    pub added: Vec<String>,
    /// Key ids retired by this bundle.
    pub retired: Vec<String>,
}

/// Imports the other side's bundle into `dir` after checking it: the
/// self-signatures, that it is the other side of the same link and suite,
/// and, if a bundle was imported before, that a key already trusted signed
/// this one and that it is not older. `new_identity` allows replacing a
/// peer whose keys share nothing with the old bundle (a re-installed host);
/// it is refused anyway once the link is paired, because the epoch secret
/// would no longer match.
pub fn import_peer(
    dir: &Path,
    bundle_path: &Path,
    new_identity: bool,
) -> Result<ImportReport, KeyError> {
    let d = Dir {
        path: dir.to_path_buf(),
    };
    let own = d.read_keyring()?;
    let peer = read_bundle(bundle_path)?;
    let wrong = |what: String| KeyError::WrongPeer {
        path: bundle_path.to_path_buf(),
        what,
    };
    if peer.side == own.side {
        return Err(wrong(format!(
            "this is an {} bundle and so is this side; import the other side's public.toml",
            peer.side.name()
        )));
    }
    if peer.link != own.link {
        return Err(wrong(format!(
            "bundle is for link `{}`, this side is link `{}`",
            peer.link, own.link
        )));
    }
    if peer.suite != own.suite {
        return Err(wrong(format!(
            "bundle uses suite `{}`, this side uses `{}`; both sides of a link use one suite",
            peer.suite.name(),
            own.suite.name()
        )));
    }
    if peer.pairing().is_none() {
        return Err(wrong("bundle lists no pairing key".into()));
    }
    let peer_path = dir.join(files::PEER);
    let mut report = ImportReport {
        continuity: None,
        added: peer.keys.iter().map(|k| k.id.clone()).collect(),
        retired: Vec::new(),
        bundle: peer.clone(),
    };
    if peer_path.exists() {
        let old = read_bundle(&peer_path)?;
        if peer.created < old.created {
            return Err(wrong(format!(
                "bundle made {} is older than the one imported ({}); an old bundle could bring back a retired key",
                utc(peer.created),
                utc(old.created)
            )));
        }
        let paired = dir.join(files::EPOCH).exists();
        if paired && peer.pairing().map(|k| &k.public) != old.pairing().map(|k| &k.public) {
            return Err(wrong(
                "the peer's pairing key changed: the other side was re-initialised. Re-pair both sides \
                 (new `ferryctl keys init` on both, exchange bundles)"
                    .into(),
            ));
        }
        report.continuity = peer.signatures.iter().find_map(|s| {
            let trusted = old.key(&s.key_id)?;
            (trusted.purpose == Purpose::Signing
                && trusted.state == KeyState::Active
                && Some(&trusted.public) == peer.key(&s.key_id).map(|k| &k.public))
            .then(|| s.key_id.clone())
        });
        if report.continuity.is_none() && !new_identity {
            return Err(wrong(
                "no signing key of the previously imported bundle signed this one. If the other side \
                 rotated and then retired its signing key since your last import, import the bundle it \
                 exported right after the rotation first. If it really has new keys, check the \
                 fingerprint with its operator and import with --new-identity"
                    .into(),
            ));
        }
        report.added = peer
            .keys
            .iter()
            .filter(|k| old.key(&k.id).is_none())
            .map(|k| k.id.clone())
            .collect();
        report.retired = peer
            .keys
            .iter()
            .filter(|k| {
                k.state == KeyState::Retired
                    && k.purpose != Purpose::Pairing
                    && old.key(&k.id).is_some_and(|o| o.state == KeyState::Active)
            })
            .map(|k| k.id.clone())
            .collect();
        // A key retired before stays retired whatever a bundle says.
        for k in &peer.keys {
            if k.state == KeyState::Active
                && old.key(&k.id).is_some_and(|o| o.state == KeyState::Retired)
            {
                return Err(wrong(format!(
                    "key `{}` was retired and this bundle lists it as active again",
                    k.id
                )));
            }
        }
    }
    let text = ferry_regular_file::read_regular(bundle_path, crate::KEY_FILE_MAX_BYTES)
        .map_err(io(bundle_path))?;
    write_atomic(&peer_path, &text, 0o644)?;
    Ok(report)
}

/// Writes this side's current signed bundle to `out` (the file to carry
/// across). Checks its signatures first, so a damaged `public.toml` is not
/// exported.
pub fn export_public(dir: &Path, out: &Path) -> Result<PublicBundle, KeyError> {
    let path = dir.join(files::PUBLIC);
    let bundle = read_bundle(&path)?;
    let text =
        ferry_regular_file::read_regular(&path, crate::KEY_FILE_MAX_BYTES).map_err(io(&path))?;
    write_atomic(out, &text, 0o644)?;
    Ok(bundle)
}

/// A key as `keys list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct KeyListing {
    /// `own` or `peer`.
    pub owner: &'static str,
    /// Key id.
    pub id: String,
    /// Suite name.
    pub suite: &'static str,
    /// Purpose name.
    pub purpose: &'static str,
    /// Fingerprint of the public key.
    pub fingerprint: String,
    /// RFC 3339 UTC.
    pub not_before: String,
    /// RFC 3339 UTC.
    pub not_after: String,
    /// `in use`, `pending`, `superseded`, `expired`, `retired`, `erased`.
    pub state: String,
    /// Days until `not_after` (negative once expired).
    pub expires_in_days: i64,
    /// Expires within [`EXPIRY_WARNING_DAYS`] or already expired, and not
    /// retired.
    pub warning: bool,
}

fn listing(owner: &'static str, suite: Suite, keys: &[KeyEntry], now: u64) -> Vec<KeyListing> {
    keys.iter()
        .map(|k| {
            let newer_in_use =
                k.valid_at(now) && current(keys, k.purpose, now).is_some_and(|c| c.id != k.id);
            let state = match k.state {
                KeyState::Retired if k.purpose == Purpose::Pairing => "erased",
                KeyState::Retired => "retired",
                KeyState::Active if now < k.not_before => "pending",
                KeyState::Active if now >= k.not_after => "expired",
                KeyState::Active if newer_in_use => "superseded",
                KeyState::Active => "in use",
            };
            let expires_in_days = (k.not_after as i64 - now as i64).div_euclid(DAY as i64);
            KeyListing {
                owner,
                id: k.id.clone(),
                suite: suite.name(),
                purpose: k.purpose.name(),
                fingerprint: k.fingerprint(),
                not_before: utc(k.not_before),
                not_after: utc(k.not_after),
                state: state.to_owned(),
                expires_in_days,
                warning: k.state == KeyState::Active
                    && k.purpose != Purpose::Pairing
                    && !newer_in_use
                    && expires_in_days < EXPIRY_WARNING_DAYS as i64,
            }
        })
        .collect()
}

/// Every key of this side and of the imported peer bundle, with its state
/// now. Needs no passphrase.
pub fn list(dir: &Path) -> Result<Vec<KeyListing>, KeyError> {
    let d = Dir {
        path: dir.to_path_buf(),
    };
    let k = d.read_keyring()?;
    let now = now_secs();
    let mut out = listing("own", k.suite, &k.keys, now);
    let peer_path = dir.join(files::PEER);
    if peer_path.exists() {
        let peer = read_bundle(&peer_path)?;
        out.extend(listing("peer", peer.suite, &peer.keys, now));
    }
    Ok(out)
}

/// Adds a new key of `purpose` that takes over at `activate_at`; the old
/// keys stay for opening and verifying until [`retire`]d. Rewrites and
/// re-signs `public.toml` (signed by old and new signing keys, so the
/// peer accepts it by continuity). Returns the new key's id and bundle.
pub fn rotate(
    dir: &Path,
    opts: &RotateOptions,
    passphrase: &Passphrase,
) -> Result<(String, PublicBundle), KeyError> {
    let d = Dir {
        path: dir.to_path_buf(),
    };
    let mut k = d.read_keyring()?;
    let kek = d.unlock(&k, passphrase)?;
    let purpose = opts.purpose.unwrap_or(match k.side {
        Side::Ingress => Purpose::Signing,
        Side::Egress => Purpose::Agreement,
    });
    if !purposes_for(k.side).contains(&purpose) || purpose == Purpose::Pairing {
        return Err(KeyError::BadKeyId {
            dir: dir.to_path_buf(),
            what: format!(
                "the {} side has no {} key to rotate",
                k.side.name(),
                purpose.name()
            ),
        });
    }
    let activate_at = opts.activate_at.unwrap_or_else(now_secs);
    let (entry, private) = new_entry(k.suite, purpose, activate_at, opts.validity_days)?;
    let id = entry.id.clone();
    d.write_private(&k, &kek, &id, purpose, &private)?;
    k.keys.push(entry);
    d.write_keyring(&k)?;
    let bundle = d.publish(&k, &kek)?;
    Ok((id, bundle))
}

/// Retires key `id`: erases its private part and marks it retired in the
/// keyring and the re-signed bundle. Once the peer imports that bundle it
/// refuses packages under the key. The key a side is using now cannot be
/// retired (rotate first), nor the pairing key (erased by itself).
pub fn retire(dir: &Path, id: &str, passphrase: &Passphrase) -> Result<PublicBundle, KeyError> {
    let d = Dir {
        path: dir.to_path_buf(),
    };
    let mut k = d.read_keyring()?;
    let kek = d.unlock(&k, passphrase)?;
    let bad = |what: String| KeyError::BadKeyId {
        dir: dir.to_path_buf(),
        what,
    };
    let now = now_secs();
    let entry = k
        .keys
        .iter()
        .find(|e| e.id == id)
        .ok_or_else(|| {
            bad(format!(
                "no key `{id}` here; `ferryctl keys list` shows the ids"
            ))
        })?
        .clone();
    if entry.purpose == Purpose::Pairing {
        return Err(bad(format!(
            "`{id}` is the pairing key; it is erased by itself at the first start"
        )));
    }
    if entry.state == KeyState::Retired {
        return Err(bad(format!("`{id}` is already retired")));
    }
    if current(&k.keys, entry.purpose, now).is_some_and(|c| c.id == id) {
        return Err(bad(format!(
            "`{id}` is the {} key in use; run `ferryctl keys rotate` first and retire it once the new key is active",
            entry.purpose.name()
        )));
    }
    for e in k.keys.iter_mut().filter(|e| e.id == id) {
        e.state = KeyState::Retired;
        e.retired_at = Some(now);
    }
    // The keyring says "retired" before the file goes, so a crash between
    // the two leaves an orphan file, never a listed key without its secret.
    d.write_keyring(&k)?;
    d.erase_private(id)?;
    d.publish(&k, &kek)
}

/// Everything one side needs to run the link.
pub struct LinkKeys {
    dir: PathBuf,
    link: String,
    side: Side,
    suite: Suite,
    kek: Kek,
    aad_prefix: String,
    /// Oldest epoch held and its secret.
    pub epoch: (u32, Secret32),
    seal: Option<Box<dyn SealKeys>>,
    open: Option<Box<dyn OpenKeys>>,
    warnings: Vec<String>,
}

impl std::fmt::Debug for LinkKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkKeys")
            .field("dir", &self.dir)
            .field("link", &self.link)
            .field("side", &self.side)
            .field("suite", &self.suite)
            .field("epoch", &self.epoch.0)
            .finish_non_exhaustive()
    }
}

impl LinkKeys {
    /// Link name.
    pub fn link(&self) -> &str {
        &self.link
    }

    /// Side of this directory.
    pub fn side(&self) -> Side {
        self.side
    }

    /// Suite of this directory.
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// The suite's link primitives (ratchet, datagram MAC, digest).
    pub fn link_crypto(&self) -> &'static dyn LinkCrypto {
        material::link_crypto(self.suite)
    }

    /// Sealing keys (ingress side); taken once.
    pub fn take_seal_keys(&mut self) -> Result<Box<dyn SealKeys>, KeyError> {
        self.seal.take().ok_or_else(|| KeyError::BadKeyId {
            dir: self.dir.clone(),
            what: "no sealing keys: this is not an ingress key directory".into(),
        })
    }

    /// Opening keys (egress side); taken once.
    pub fn take_open_keys(&mut self) -> Result<Box<dyn OpenKeys>, KeyError> {
        self.open.take().ok_or_else(|| KeyError::BadKeyId {
            dir: self.dir.clone(),
            what: "no opening keys: this is not an egress key directory".into(),
        })
    }

    /// Keys of either side that expire within [`EXPIRY_WARNING_DAYS`], as
    /// sentences for logs and status.
    pub fn expiry_warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Persists the oldest epoch secret held (call when the chain moves).
    pub fn save_epoch(&self, epoch: u32, secret: &Secret32) -> Result<(), KeyError> {
        save_epoch_file(&self.dir, &self.kek, &self.aad_prefix, epoch, secret)
    }
}

fn epoch_aad(prefix: &str) -> Vec<u8> {
    format!("ferry/v1/epoch-state|{prefix}").into_bytes()
}

fn save_epoch_file(
    dir: &Path,
    kek: &Kek,
    prefix: &str,
    epoch: u32,
    secret: &Secret32,
) -> Result<(), KeyError> {
    let mut plain = zeroize::Zeroizing::new(epoch.to_be_bytes().to_vec());
    plain.extend_from_slice(&secret.0);
    let sealed = kek.seal(&plain, &epoch_aad(prefix))?;
    let text = format!("format = {FORMAT}\nsealed = \"{}\"\n", hex::encode(sealed));
    write_atomic(&dir.join(files::EPOCH), text.as_bytes(), 0o600)
}

fn read_epoch_file(dir: &Path, kek: &Kek, prefix: &str) -> Result<(u32, Secret32), KeyError> {
    let path = dir.join(files::EPOCH);
    let sealed = read_sealed_file(&path)?;
    let corrupt = || KeyError::Corrupt {
        path: path.clone(),
        what: "epoch state does not open (modified, truncated or from another link)".into(),
    };
    let plain = kek.open(&sealed, &epoch_aad(prefix)).ok_or_else(corrupt)?;
    if plain.len() != 36 {
        return Err(corrupt());
    }
    let mut e = [0u8; 4];
    e.copy_from_slice(&plain[..4]);
    let mut s = Secret32([0; 32]);
    s.0.copy_from_slice(&plain[4..]);
    Ok((u32::from_be_bytes(e), s))
}

fn no_valid(what: String) -> KeyError {
    KeyError::NoValidKey { what }
}

/// Newest key of `purpose` valid at `now`.
fn current(keys: &[KeyEntry], purpose: Purpose, now: u64) -> Option<&KeyEntry> {
    // Keys are appended as they are made, so on equal start times the later
    // entry is the newer key (`max_by_key` keeps the last maximum).
    keys.iter()
        .filter(|k| k.purpose == purpose && k.valid_at(now))
        .max_by_key(|k| k.not_before)
}

fn describe_window(keys: &[KeyEntry], purpose: Purpose) -> String {
    let held: Vec<String> = keys
        .iter()
        .filter(|k| k.purpose == purpose)
        .map(|k| {
            format!(
                "`{}` {:?} valid {} .. {}",
                k.id,
                k.state,
                utc(k.not_before),
                utc(k.not_after)
            )
        })
        .collect();
    if held.is_empty() {
        "none held".into()
    } else {
        held.join("; ")
    }
}

/// Loads a side's keys with `passphrase`. On the first start after pairing,
/// derives E(0) from the pairing keys, persists it sealed as the epoch
/// state and erases the pairing key, so that later theft of this host's
/// files cannot recompute earlier epoch secrets.
pub fn load(dir: &Path, passphrase: &Passphrase) -> Result<LinkKeys, KeyError> {
    let d = Dir {
        path: dir.to_path_buf(),
    };
    let mut k = d.read_keyring()?;
    material::ensure_suite(k.suite)?;
    let peer_path = dir.join(files::PEER);
    if !peer_path.exists() {
        return Err(KeyError::WrongPeer {
            path: peer_path,
            what: "no peer bundle imported; run `ferryctl keys import-peer --dir DIR PEER_public.toml`"
                .into(),
        });
    }
    let peer = read_bundle(&peer_path)?;
    let kek = d.unlock(&k, passphrase)?;
    let now = now_secs();
    let aad_prefix = format!("{}|{}|{}", k.link, k.side.name(), k.suite.name());

    let (seal, open) = match k.side {
        Side::Ingress => {
            let signing = current(&k.keys, Purpose::Signing, now).ok_or_else(|| {
                no_valid(format!(
                    "{}: no signing key is valid now ({}); run `ferryctl keys rotate --dir {}` and carry the new bundle to the egress side",
                    d.keyring_path().display(),
                    describe_window(&k.keys, Purpose::Signing),
                    dir.display()
                ))
            })?;
            let recipient = current(&peer.keys, Purpose::Agreement, now).ok_or_else(|| {
                no_valid(format!(
                    "{}: the egress side has no agreement key valid now ({}); import its rotated bundle",
                    peer_path.display(),
                    describe_window(&peer.keys, Purpose::Agreement)
                ))
            })?;
            let private = d.read_private(&k, &kek, signing)?;
            let public = recipient.public_bytes(&peer_path)?;
            let seal = material::seal_keys(
                k.suite,
                IdKey {
                    id: &signing.id,
                    bytes: &private,
                },
                IdKey {
                    id: &recipient.id,
                    bytes: &public,
                },
            )?;
            (Some(seal), None)
        }
        Side::Egress => {
            // Every key not retired opens and verifies, even past its
            // window: packages sealed before a rotation still arrive.
            let mut own: Vec<&KeyEntry> = k
                .keys
                .iter()
                .filter(|e| e.purpose == Purpose::Agreement && e.state == KeyState::Active)
                .collect();
            own.sort_by_key(|e| std::cmp::Reverse(e.not_before));
            let mut senders: Vec<&KeyEntry> = peer
                .keys
                .iter()
                .filter(|e| e.purpose == Purpose::Signing && e.state == KeyState::Active)
                .collect();
            senders.sort_by_key(|e| std::cmp::Reverse(e.not_before));
            if own.is_empty() {
                return Err(no_valid(format!(
                    "{}: no agreement key held; run `ferryctl keys rotate --dir {}`",
                    d.keyring_path().display(),
                    dir.display()
                )));
            }
            if senders.is_empty() {
                return Err(no_valid(format!(
                    "{}: the ingress side's bundle has no active signing key; import its current bundle",
                    peer_path.display()
                )));
            }
            let privates = own
                .iter()
                .map(|e| d.read_private(&k, &kek, e))
                .collect::<Result<Vec<_>, _>>()?;
            let publics = senders
                .iter()
                .map(|e| e.public_bytes(&peer_path))
                .collect::<Result<Vec<_>, _>>()?;
            let recipients: Vec<IdKey<'_>> = own
                .iter()
                .zip(&privates)
                .map(|(e, p)| IdKey {
                    id: &e.id,
                    bytes: p,
                })
                .collect();
            let sender_keys: Vec<IdKey<'_>> = senders
                .iter()
                .zip(&publics)
                .map(|(e, p)| IdKey {
                    id: &e.id,
                    bytes: p,
                })
                .collect();
            let open = material::open_keys(k.suite, &sender_keys, &recipients)?;
            (None, Some(open))
        }
    };

    let epoch = if dir.join(files::EPOCH).exists() {
        read_epoch_file(dir, &kek, &aad_prefix)?
    } else {
        let own_pairing = k
            .keys
            .iter()
            .find(|e| e.purpose == Purpose::Pairing && e.state == KeyState::Active)
            .cloned()
            .ok_or_else(|| KeyError::Unpaired {
                dir: dir.to_path_buf(),
            })?;
        let peer_pairing = peer.pairing().ok_or_else(|| KeyError::WrongPeer {
            path: peer_path.clone(),
            what: "bundle lists no pairing key".into(),
        })?;
        let private = d.read_private(&k, &kek, &own_pairing)?;
        let e0 = material::pair(
            k.suite,
            &private,
            &peer_pairing.public_bytes(&peer_path)?,
            &k.link,
        )?;
        save_epoch_file(dir, &kek, &aad_prefix, 0, &e0)?;
        for e in k.keys.iter_mut().filter(|e| e.id == own_pairing.id) {
            e.state = KeyState::Retired;
            e.retired_at = Some(now);
        }
        d.write_keyring(&k)?;
        d.erase_private(&own_pairing.id)?;
        (0, e0)
    };

    let mut warnings = Vec::new();
    for (owner, suite, keys) in [("own", k.suite, &k.keys), ("peer", peer.suite, &peer.keys)] {
        for l in listing(owner, suite, keys, now) {
            if l.warning {
                warnings.push(format!(
                    "{owner} {} key `{}` expires {} ({} days); rotate it",
                    l.purpose, l.id, l.not_after, l.expires_in_days
                ));
            }
        }
    }
    Ok(LinkKeys {
        dir: dir.to_path_buf(),
        link: k.link.clone(),
        side: k.side,
        suite: k.suite,
        kek,
        aad_prefix,
        epoch,
        seal,
        open,
        warnings,
    })
}
