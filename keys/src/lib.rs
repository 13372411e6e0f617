//! ferry's key files: generation, loading, permission checks, link pairing
//! and the persisted epoch secret.
//!
//! This crate owns every secret that lives on disk. It must never print or
//! log key material, and it refuses key files that other users could read
//! or that belong to someone else. What exists today is the link's key set
//! (one signing key on the ingress side, one agreement key on the egress
//! side, a one-time pairing key on each side, and the peer's public bundle);
//! passphrase encryption at rest, rotation, the GM suite and certificates
//! are the keys issue's work and are not here yet.
#![forbid(unsafe_code)]

pub mod gm;

use ferry_protocol::intl;
use ferry_protocol::suite::Secret32;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// File names inside a key directory.
pub mod files {
    /// Ed25519 signing seed (ingress).
    pub const SIGNING: &str = "signing.key";
    /// X25519 agreement secret (egress).
    pub const AGREEMENT: &str = "agreement.key";
    /// One-time X25519 pairing secret, erased after the first start.
    pub const PAIRING: &str = "pairing.key";
    /// This side's public bundle, to carry to the other side.
    pub const PUBLIC: &str = "public.toml";
    /// The other side's public bundle, imported.
    pub const PEER: &str = "peer.toml";
    /// The oldest epoch secret held (forward-evolving; rewritten as it moves).
    pub const EPOCH: &str = "epoch.state";
}

/// Which end of a one-way link a key directory belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// Seals and sends.
    Ingress,
    /// Receives and opens.
    Egress,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Ingress => "ingress",
            Side::Egress => "egress",
        }
    }
}

/// Key-file errors. Each names the file and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Group or other users can access the file.
    #[error(
        "{path}: permissions {mode:04o} let other users read a secret; run `chmod 600 {path}`"
    )]
    LoosePermissions {
        /// The file.
        path: PathBuf,
        /// Its mode bits.
        mode: u32,
    },
    /// The file belongs to another user.
    #[error("{path}: owned by uid {owner}, but ferry runs as uid {me}; run `chown {me} {path}`")]
    WrongOwner {
        /// The file.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// The effective uid.
        me: u32,
    },
    /// The content is not a valid key file.
    #[error(
        "{path}: {what}; restore it from backup or re-create the key set with `ferryctl keys init`"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// Refusing to overwrite existing keys.
    #[error("{path} already exists; refusing to overwrite keys (move the directory away first)")]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// The peer bundle does not fit this side.
    #[error("{path}: {what}")]
    WrongPeer {
        /// The bundle.
        path: PathBuf,
        /// What does not fit.
        what: String,
    },
    /// The link was never paired and the pairing key is gone.
    #[error("{dir}: no epoch state and no pairing key; this side cannot derive the link's keys. Re-pair both sides: `ferryctl keys init` on both, exchange the public bundles")]
    Unpaired {
        /// The key directory.
        dir: PathBuf,
    },
    /// A crypto operation failed.
    #[error("{0}")]
    Crypto(#[from] ferry_protocol::CryptoError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretFile {
    kind: String,
    id: String,
    secret: String,
}

/// The public bundle one side gives the other, out of band.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicBundle {
    /// Link name both sides use.
    pub link: String,
    /// Side that made the bundle.
    pub side: Side,
    /// Crypto suite.
    pub suite: String,
    /// Key id of the signing (ingress) or agreement (egress) key.
    pub key_id: String,
    /// Hex public key (Ed25519 on ingress, X25519 on egress).
    pub public: String,
    /// Hex X25519 pairing public key.
    pub pairing_public: String,
}

impl PublicBundle {
    /// SHA-256 over the canonical bundle text, grouped for reading aloud
    /// when the bundle is carried across the air gap.
    pub fn fingerprint(&self) -> String {
        let text = format!(
            "{}|{}|{}|{}|{}|{}",
            self.link,
            self.side.name(),
            self.suite,
            self.key_id,
            self.public,
            self.pairing_public
        );
        let d = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
        hex::encode(&d.as_ref()[..16])
            .as_bytes()
            .chunks(4)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join(":")
    }
}

/// Checks that a secret file is private to the running user.
pub fn check_private(path: &Path) -> Result<(), KeyError> {
    let meta = fs::metadata(path).map_err(io(path))?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyError::LoosePermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    let me = nix_euid();
    if meta.uid() != me {
        return Err(KeyError::WrongOwner {
            path: path.to_path_buf(),
            owner: meta.uid(),
            me,
        });
    }
    Ok(())
}

fn nix_euid() -> u32 {
    // The owner of a file we just created is our effective uid; reading it
    // back from /proc avoids an unsafe libc call in this crate.
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Writes `data` to `path` atomically: temp file (mode 0600), fsync,
/// rename, fsync of the directory. Never leaves a half-written key.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), KeyError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("key")
    ));
    {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .map_err(io(&tmp))?;
        f.write_all(data).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
    }
    fs::rename(&tmp, path).map_err(io(path))?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))?;
    Ok(())
}

fn write_secret(path: &Path, kind: &str, id: &str, secret: &Secret32) -> Result<(), KeyError> {
    let text = Zeroizing::new(
        toml::to_string(&SecretFile {
            kind: kind.into(),
            id: id.into(),
            secret: hex::encode(secret.0),
        })
        .map_err(|e| KeyError::Corrupt {
            path: path.to_path_buf(),
            what: e.to_string(),
        })?,
    );
    write_atomic(path, text.as_bytes(), 0o600)
}

fn read_secret(path: &Path, kind: &str) -> Result<(String, Secret32), KeyError> {
    check_private(path)?;
    let text = Zeroizing::new(fs::read_to_string(path).map_err(io(path))?);
    let corrupt = |what: String| KeyError::Corrupt {
        path: path.to_path_buf(),
        what,
    };
    let f: SecretFile = toml::from_str(&text).map_err(|e| corrupt(e.message().to_string()))?;
    let secret_hex = Zeroizing::new(f.secret);
    if f.kind != kind {
        return Err(corrupt(format!(
            "holds a `{}` key, expected `{kind}`",
            f.kind
        )));
    }
    let bytes = Zeroizing::new(
        hex::decode(secret_hex.as_str()).map_err(|_| corrupt("secret is not hex".into()))?,
    );
    let arr: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| corrupt("secret is not 32 bytes".into()))?;
    Ok((f.id, Secret32(arr)))
}

fn key_id(prefix: &str, public: &[u8; 32]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, public);
    format!("{prefix}-{}", hex::encode(&d.as_ref()[..6]))
}

/// Creates a new key set for one side of `link` in `dir` (created 0700).
/// Refuses to overwrite an existing set. Returns the public bundle.
pub fn init(dir: &Path, link: &str, side: Side) -> Result<PublicBundle, KeyError> {
    fs::create_dir_all(dir).map_err(io(dir))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
    for f in [
        files::SIGNING,
        files::AGREEMENT,
        files::PAIRING,
        files::EPOCH,
    ] {
        let p = dir.join(f);
        if p.exists() {
            return Err(KeyError::Exists { path: p });
        }
    }
    let (secret, public, kind, file, prefix) = match side {
        Side::Ingress => {
            let (s, p) = intl::generate_signing_key()?;
            (s, p, "ed25519-signing", files::SIGNING, "sig")
        }
        Side::Egress => {
            let (s, p) = intl::generate_agreement_key()?;
            (s, p, "x25519-agreement", files::AGREEMENT, "agr")
        }
    };
    let id = key_id(prefix, &public);
    write_secret(&dir.join(file), kind, &id, &secret)?;
    let (pair_secret, pair_public) = intl::generate_agreement_key()?;
    write_secret(
        &dir.join(files::PAIRING),
        "x25519-pairing",
        &key_id("pair", &pair_public),
        &pair_secret,
    )?;
    let bundle = PublicBundle {
        link: link.to_string(),
        side,
        suite: "intl".into(),
        key_id: id,
        public: hex::encode(public),
        pairing_public: hex::encode(pair_public),
    };
    let text = toml::to_string(&bundle).map_err(|e| KeyError::Corrupt {
        path: dir.join(files::PUBLIC),
        what: e.to_string(),
    })?;
    write_atomic(&dir.join(files::PUBLIC), text.as_bytes(), 0o644)?;
    Ok(bundle)
}

/// Reads a public bundle.
pub fn read_bundle(path: &Path) -> Result<PublicBundle, KeyError> {
    let text = fs::read_to_string(path).map_err(io(path))?;
    let b: PublicBundle = toml::from_str(&text).map_err(|e| KeyError::Corrupt {
        path: path.to_path_buf(),
        what: format!("not a ferry public bundle: {}", e.message()),
    })?;
    for (name, v) in [("public", &b.public), ("pairing_public", &b.pairing_public)] {
        if hex::decode(v).map(|x| x.len()) != Ok(32) {
            return Err(KeyError::Corrupt {
                path: path.to_path_buf(),
                what: format!("`{name}` is not a 32-byte hex key"),
            });
        }
    }
    Ok(b)
}

/// Imports the other side's bundle into `dir` after checking it fits.
pub fn import_peer(dir: &Path, bundle_path: &Path) -> Result<PublicBundle, KeyError> {
    let own = read_bundle(&dir.join(files::PUBLIC))?;
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
            "bundle uses suite `{}`, this side uses `{}`",
            peer.suite, own.suite
        )));
    }
    let text = fs::read(bundle_path).map_err(io(bundle_path))?;
    write_atomic(&dir.join(files::PEER), &text, 0o644)?;
    Ok(peer)
}

fn hex32(path: &Path, v: &str) -> Result<[u8; 32], KeyError> {
    hex::decode(v)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
        .ok_or_else(|| KeyError::Corrupt {
            path: path.to_path_buf(),
            what: "key is not 32 bytes of hex".into(),
        })
}

/// Everything one side needs to run the link.
pub struct LinkKeys {
    /// This side's bundle.
    pub own: PublicBundle,
    /// The peer's bundle.
    pub peer: PublicBundle,
    /// The signing seed (ingress) or agreement secret (egress).
    pub secret: Secret32,
    /// Oldest epoch held and its secret.
    pub epoch: (u32, Secret32),
}

impl std::fmt::Debug for LinkKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkKeys")
            .field("own", &self.own.key_id)
            .field("peer", &self.peer.key_id)
            .field("epoch", &self.epoch.0)
            .finish()
    }
}

impl LinkKeys {
    /// Sealing keys (ingress side).
    pub fn seal_keys(&self) -> Result<intl::IntlSealKeys, KeyError> {
        let peer_path = PathBuf::from(files::PEER);
        Ok(intl::IntlSealKeys::new(
            &self.secret,
            self.own.key_id.clone(),
            hex32(&peer_path, &self.peer.public)?,
            self.peer.key_id.clone(),
        )?)
    }

    /// Opening keys (egress side).
    pub fn open_keys(&self) -> Result<intl::IntlOpenKeys, KeyError> {
        let peer_path = PathBuf::from(files::PEER);
        Ok(intl::IntlOpenKeys::new(
            &self.secret,
            self.own.key_id.clone(),
            hex32(&peer_path, &self.peer.public)?,
            self.peer.key_id.clone(),
        )?)
    }
}

/// Loads a side's keys. On the first start after pairing, derives E(0)
/// from the pairing keys, persists it as the epoch state and erases the
/// pairing key, so that later theft of this host's files cannot recompute
/// earlier epoch secrets.
pub fn load(dir: &Path) -> Result<LinkKeys, KeyError> {
    let own = read_bundle(&dir.join(files::PUBLIC))?;
    let peer_path = dir.join(files::PEER);
    if !peer_path.exists() {
        return Err(KeyError::WrongPeer {
            path: peer_path,
            what: "no peer bundle imported; run `ferryctl keys import-peer --dir DIR PEER_public.toml`"
                .into(),
        });
    }
    let peer = read_bundle(&peer_path)?;
    let (file, kind) = match own.side {
        Side::Ingress => (files::SIGNING, "ed25519-signing"),
        Side::Egress => (files::AGREEMENT, "x25519-agreement"),
    };
    let (_, secret) = read_secret(&dir.join(file), kind)?;
    let epoch_path = dir.join(files::EPOCH);
    let epoch = if epoch_path.exists() {
        read_epoch(&epoch_path)?
    } else {
        let pairing_path = dir.join(files::PAIRING);
        if !pairing_path.exists() {
            return Err(KeyError::Unpaired {
                dir: dir.to_path_buf(),
            });
        }
        let (_, pairing) = read_secret(&pairing_path, "x25519-pairing")?;
        let e0 = intl::pair(
            &pairing,
            &hex32(&peer_path, &peer.pairing_public)?,
            &own.link,
        )?;
        save_epoch(dir, 0, &e0)?;
        fs::remove_file(&pairing_path).map_err(io(&pairing_path))?;
        (0, e0)
    };
    Ok(LinkKeys {
        own,
        peer,
        secret,
        epoch,
    })
}

fn read_epoch(path: &Path) -> Result<(u32, Secret32), KeyError> {
    let (id, secret) = read_secret(path, "epoch-secret")?;
    let epoch = id
        .strip_prefix("epoch-")
        .and_then(|e| e.parse().ok())
        .ok_or_else(|| KeyError::Corrupt {
            path: path.to_path_buf(),
            what: "epoch number missing".into(),
        })?;
    Ok((epoch, secret))
}

/// Persists the oldest epoch secret held (call when the chain moves).
pub fn save_epoch(dir: &Path, epoch: u32, secret: &Secret32) -> Result<(), KeyError> {
    write_secret(
        &dir.join(files::EPOCH),
        "epoch-secret",
        &format!("epoch-{epoch}"),
        secret,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair_dirs() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let t = tempfile::tempdir().expect("tempdir");
        let a = t.path().join("in");
        let b = t.path().join("out");
        init(&a, "l1", Side::Ingress).expect("init ingress");
        init(&b, "l1", Side::Egress).expect("init egress");
        import_peer(&a, &b.join(files::PUBLIC)).expect("import");
        import_peer(&b, &a.join(files::PUBLIC)).expect("import");
        (t, a, b)
    }

    #[test]
    fn both_sides_derive_the_same_epoch_and_erase_pairing() {
        let (_t, a, b) = pair_dirs();
        let ka = load(&a).expect("load ingress");
        let kb = load(&b).expect("load egress");
        assert_eq!(ka.epoch.1, kb.epoch.1);
        assert!(!a.join(files::PAIRING).exists());
        assert!(!b.join(files::PAIRING).exists());
        // Second load reads the persisted state.
        assert_eq!(load(&a).expect("reload").epoch.1, ka.epoch.1);
        ka.seal_keys().expect("seal keys");
        kb.open_keys().expect("open keys");
    }

    #[test]
    fn loose_permissions_refused_with_fix() {
        let (_t, a, _b) = pair_dirs();
        let p = a.join(files::SIGNING);
        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).expect("chmod");
        let e = load(&a).expect_err("refused");
        assert!(e.to_string().contains("chmod 600"), "{e}");
    }

    #[test]
    fn refuses_to_overwrite_and_wrong_peer() {
        let (_t, a, b) = pair_dirs();
        assert!(matches!(
            init(&a, "l1", Side::Ingress),
            Err(KeyError::Exists { .. })
        ));
        let e = import_peer(&a, &a.join(files::PUBLIC)).expect_err("same side");
        assert!(matches!(e, KeyError::WrongPeer { .. }));
        let other = b.parent().expect("parent").join("other");
        init(&other, "l2", Side::Egress).expect("init");
        let e = import_peer(&a, &other.join(files::PUBLIC)).expect_err("other link");
        assert!(e.to_string().contains("link `l2`"), "{e}");
    }

    #[test]
    fn corrupt_and_truncated_files_are_named() {
        let (_t, a, _b) = pair_dirs();
        let p = a.join(files::SIGNING);
        write_atomic(
            &p,
            b"kind = \"ed25519-signing\"\nid = \"x\"\nsecret = \"zz\"\n",
            0o600,
        )
        .expect("write");
        let e = load(&a).expect_err("corrupt");
        assert!(e.to_string().contains("signing.key"), "{e}");
        let peer = a.join(files::PEER);
        write_atomic(&peer, b"link = \"l1\"\n", 0o644).expect("write");
        let e = load(&a).expect_err("truncated bundle");
        assert!(e.to_string().contains("peer.toml"), "{e}");
    }

    #[test]
    fn secrets_never_in_debug() {
        let (_t, a, _b) = pair_dirs();
        let k = load(&a).expect("load");
        let dbg = format!("{k:?}");
        assert!(!dbg.contains(&hex::encode(k.secret.0)));
    }
}
