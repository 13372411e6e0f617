//! ferry's key store: key generation per suite, passphrase encryption at
//! rest, rotation and retirement, signed public bundles exchanged out of
//! band, link pairing and the persisted epoch secret, and the content
//! guard's pseudonym key (`pseudonym`). The suites' algorithms (intl, and GM
//! through the system OpenSSL) live in `ferry-suites`.
//!
//! This crate owns every secret that lives on disk. It must never print or
//! log key material, and it refuses key files that other users could read
//! or that belong to someone else. Certificates for mTLS live in the
//! `ferry-certs` crate.
#![forbid(unsafe_code)]

pub mod material;
pub mod pseudonym;
pub mod sealed;
pub mod store;

pub use sealed::{Passphrase, PASSPHRASE_CREDENTIAL, PASSPHRASE_ENV};
pub use store::{
    export_public, import_peer, init, list, load, read_bundle, retire, rotate, ImportReport,
    InitOptions, KeyListing, LinkKeys, PublicBundle, RotateOptions,
};

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// File names inside a key directory.
pub mod files {
    /// Key metadata, KDF parameters and public keys (no secrets).
    pub const KEYRING: &str = "keyring.toml";
    /// Directory of sealed private keys, one `ID.key` per key.
    pub const PRIVATE: &str = "private";
    /// This side's signed public bundle, to carry to the other side.
    pub const PUBLIC: &str = "public.toml";
    /// The other side's public bundle, imported.
    pub const PEER: &str = "peer.toml";
    /// The oldest epoch secret held, sealed (rewritten as the chain moves).
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
    /// `ingress` or `egress`.
    pub fn name(self) -> &'static str {
        match self {
            Side::Ingress => "ingress",
            Side::Egress => "egress",
        }
    }
}

/// The crypto suite of a key directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Suite {
    /// Ed25519, X25519, AES-256-GCM, SHA-256.
    Intl,
    /// SM2, SM3, SM4.
    Gm,
}

impl Suite {
    /// `intl` or `gm`.
    pub fn name(self) -> &'static str {
        match self {
            Suite::Intl => "intl",
            Suite::Gm => "gm",
        }
    }

    /// The protocol's suite id.
    pub fn id(self) -> ferry_protocol::suite::SuiteId {
        match self {
            Suite::Intl => ferry_protocol::suite::SuiteId::Intl,
            Suite::Gm => ferry_protocol::suite::SuiteId::Gm,
        }
    }
}

impl std::str::FromStr for Suite {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "intl" => Ok(Suite::Intl),
            "gm" => Ok(Suite::Gm),
            other => Err(format!("unknown suite `{other}`: use `intl` or `gm`")),
        }
    }
}

/// What a key is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Purpose {
    /// Signs manifests (ingress) and this side's public bundles (both).
    Signing,
    /// Receives package keys (egress): X25519 agreement or SM2 decryption.
    Agreement,
    /// One-time key for the initial epoch secret, erased after first use.
    Pairing,
}

impl Purpose {
    /// `signing`, `agreement` or `pairing`.
    pub fn name(self) -> &'static str {
        match self {
            Purpose::Signing => "signing",
            Purpose::Agreement => "agreement",
            Purpose::Pairing => "pairing",
        }
    }
}

/// Key-store errors. Each names the file and says what to do.
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
    /// A secret file that group or other users can access, or that another
    /// user owns (the one check and message, `ferry_common::private_file`).
    #[error(transparent)]
    PrivateFile(#[from] ferry_common::private_file::PrivateFileError),
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
    /// The passphrase does not unlock this directory.
    #[error("{path}: wrong passphrase (the key-encryption check value does not open); check the passphrase file, {env} or the systemd credential", env = sealed::PASSPHRASE_ENV)]
    WrongPassphrase {
        /// The keyring.
        path: PathBuf,
    },
    /// No usable passphrase.
    #[error("{what}")]
    NoPassphrase {
        /// What is missing.
        what: String,
    },
    /// The passphrase is too short for a new key directory.
    #[error("the passphrase has {chars} characters; use at least {min} for a new key directory")]
    WeakPassphrase {
        /// Its length.
        chars: usize,
        /// The minimum.
        min: usize,
    },
    /// Argon2 refused its parameters.
    #[error("passphrase key derivation failed: {0}")]
    Kdf(String),
    /// The system random generator failed.
    #[error("the operating system's random generator failed; check /dev/urandom and the kernel's entropy")]
    Random,
    /// Refusing to overwrite existing keys.
    #[error("{path} already exists; refusing to overwrite keys (move the directory away first)")]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// The peer bundle does not fit this side, or fails verification.
    #[error("{path}: {what}")]
    WrongPeer {
        /// The bundle.
        path: PathBuf,
        /// What does not fit.
        what: String,
    },
    /// No key of a purpose is valid now.
    #[error("{what}")]
    NoValidKey {
        /// Which key, its window, and what to do.
        what: String,
    },
    /// A key id that the directory does not hold, or cannot act on.
    #[error("{dir}: {what}")]
    BadKeyId {
        /// The key directory.
        dir: PathBuf,
        /// What is wrong.
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
    /// The GM suite failed (or is unavailable in this OpenSSL).
    #[error("{0}")]
    Gm(#[from] ferry_suites::gm::GmError),
}

/// Largest key, keyring, passphrase or public-bundle file read (they are a
/// few KiB; a larger one is a wrong path).
pub(crate) const KEY_FILE_MAX_BYTES: u64 = 4 * 1024 * 1024;

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` for Unix seconds (key validity in listings and
/// messages), through the workspace's one formatter.
pub fn utc(secs: u64) -> String {
    ferry_common::rfc3339::unix_s(i64::try_from(secs).unwrap_or(i64::MAX))
}

/// Seconds since the Unix epoch now.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Checks that a secret file is private to the running user (mode and
/// owner, as every ferry crate checks its secrets).
pub fn check_private(path: &Path) -> Result<(), KeyError> {
    use ferry_common::private_file::PrivateFileError as E;
    ferry_common::private_file::check(path).map_err(|e| match e {
        E::Io { path, source } => KeyError::Io { path, source },
        other => KeyError::PrivateFile(other),
    })
}

pub use ferry_common::private_file::effective_uid;

/// Writes `data` to `path` with `mode`, durably: after a crash the file is
/// the old or the new one, whole (see [`ferry_common::durable`]). Never
/// leaves a half-written key.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), KeyError> {
    ferry_common::durable::write(path, data, mode, ferry_common::durable::Replace::Atomically)
        .map_err(|e| {
            let (path, source) = e.into_parts();
            KeyError::Io { path, source }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(1_767_225_600), "2026-01-01T00:00:00Z");
        assert_eq!(utc(951_825_599), "2000-02-29T11:59:59Z");
    }
}
