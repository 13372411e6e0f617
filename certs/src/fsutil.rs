//! File handling for certificate material: atomic writes that never clobber,
//! private-key permission checks, PEM decoding with errors that name the
//! file, and the CA directory lock.
//!
//! A certificate directory is edited by hand by operators, so every read
//! assumes the file may be truncated, swapped or world-readable.

use crate::CertError;
use rustls_pki_types::pem::{PemObject, SectionKind};
use std::fs;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Largest PEM file read (certificate chains and CRLs are a few KiB; a bigger
/// file is a wrong path, not a certificate).
pub(crate) const MAX_PEM_FILE_BYTES: u64 = 4 * 1024 * 1024;

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CertError + '_ {
    move |source| CertError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub(crate) use ferry_common::durable::Replace;

/// Writes `data` to `path` with `mode`, durably (the workspace's one
/// writer, [`ferry_common::durable`]): a crash leaves the old state or the
/// complete new file, never a half-written key; with [`Replace::Never`] an
/// existing file is refused and kept.
pub(crate) fn write_file(
    path: &Path,
    data: &[u8],
    mode: u32,
    replace: Replace,
) -> Result<(), CertError> {
    use ferry_common::durable::WriteError;
    ferry_common::durable::write(path, data, mode, replace).map_err(|e| match e {
        WriteError::Exists { path } => CertError::Exists { path },
        WriteError::Io { path, source, .. } => CertError::Io { path, source },
    })
}

/// Refuses a private-key file that group or other users can access, or that
/// belongs to another user (who could then swap it).
pub(crate) fn check_private(path: &Path) -> Result<(), CertError> {
    use ferry_common::private_file::PrivateFileError as E;
    ferry_common::private_file::check(path).map_err(|e| match e {
        E::Io { path, source } => CertError::Io { path, source },
        other => CertError::PrivateFile(other),
    })
}

/// Reads a file of bounded size.
pub(crate) fn read_bounded(path: &Path) -> Result<Vec<u8>, CertError> {
    // Only a regular file: a FIFO or device named by mistake is refused at
    // once instead of blocking the trust-store reload.
    let file = ferry_regular_file::open_regular(path).map_err(io(path))?;
    let meta = file.metadata().map_err(io(path))?;
    if meta.len() > MAX_PEM_FILE_BYTES {
        return Err(CertError::BadPem {
            path: path.to_path_buf(),
            what: format!(
                "file is {} bytes, larger than any certificate file ({MAX_PEM_FILE_BYTES} bytes at most)",
                meta.len()
            ),
        });
    }
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(file, MAX_PEM_FILE_BYTES),
        &mut bytes,
    )
    .map_err(io(path))?;
    Ok(bytes)
}

/// One decoded PEM section.
pub(crate) struct PemSection {
    pub(crate) kind: SectionKind,
    /// Zeroized on drop: a section may be a private key.
    pub(crate) der: Zeroizing<Vec<u8>>,
}

/// Decodes every PEM section of a file. A truncated section (BEGIN without
/// END), bad base64 or a file with no section at all is an error naming
/// the file.
pub(crate) fn pem_sections(path: &Path, text: &[u8]) -> Result<Vec<PemSection>, CertError> {
    let mut out = Vec::new();
    for item in <(SectionKind, Vec<u8>)>::pem_slice_iter(text) {
        let (kind, der) = item.map_err(|e| CertError::BadPem {
            path: path.to_path_buf(),
            what: pem_error_text(&e),
        })?;
        out.push(PemSection {
            kind,
            der: Zeroizing::new(der),
        });
    }
    if out.is_empty() {
        return Err(CertError::BadPem {
            path: path.to_path_buf(),
            what: "no PEM section found (expected `-----BEGIN CERTIFICATE-----`, `X509 CRL` or `PRIVATE KEY`)".into(),
        });
    }
    Ok(out)
}

fn pem_error_text(e: &rustls_pki_types::pem::Error) -> String {
    use rustls_pki_types::pem::Error as E;
    match e {
        E::MissingSectionEnd { .. } => {
            "a PEM section has no END line (the file is truncated)".into()
        }
        E::IllegalSectionStart { .. } => "a malformed `-----BEGIN` line".into(),
        E::Base64Decode(_) => "a PEM section is not valid base64 (the file is damaged)".into(),
        E::NoItemsFound => "no PEM section found".into(),
        other => format!("unreadable PEM: {other:?}"),
    }
}

/// Reads the certificates of a PEM file (other sections are ignored; none
/// at all is an error).
pub(crate) fn read_certs(path: &Path) -> Result<Vec<Vec<u8>>, CertError> {
    let text = read_bounded(path)?;
    let certs: Vec<Vec<u8>> = pem_sections(path, &text)?
        .into_iter()
        .filter(|s| s.kind == SectionKind::Certificate)
        .map(|s| s.der.to_vec())
        .collect();
    if certs.is_empty() {
        return Err(CertError::BadPem {
            path: path.to_path_buf(),
            what: "holds no `-----BEGIN CERTIFICATE-----` section".into(),
        });
    }
    Ok(certs)
}

/// Reads the CRLs of a PEM file.
pub(crate) fn read_crls(path: &Path) -> Result<Vec<Vec<u8>>, CertError> {
    let text = read_bounded(path)?;
    let crls: Vec<Vec<u8>> = pem_sections(path, &text)?
        .into_iter()
        .filter(|s| s.kind == SectionKind::Crl)
        .map(|s| s.der.to_vec())
        .collect();
    if crls.is_empty() {
        return Err(CertError::BadPem {
            path: path.to_path_buf(),
            what: "holds no `-----BEGIN X509 CRL-----` section".into(),
        });
    }
    Ok(crls)
}

/// A private key read from a file; its DER is zeroized on drop.
pub(crate) struct KeyDer(rustls_pki_types::PrivateKeyDer<'static>);

impl KeyDer {
    /// Hands the key to rustls (which keeps its own parsed copy).
    pub(crate) fn into_rustls(self) -> rustls_pki_types::PrivateKeyDer<'static> {
        self.0.clone_key()
    }
}

impl KeyDer {
    pub(crate) fn der(&self) -> &rustls_pki_types::PrivateKeyDer<'static> {
        &self.0
    }
}

impl Drop for KeyDer {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.0.zeroize();
    }
}

/// Reads a private key (PKCS#8, SEC1 or PKCS#1 PEM) after the permission
/// check. The PEM text and the DER stay in zeroizing buffers.
pub(crate) fn read_private_key(path: &Path) -> Result<KeyDer, CertError> {
    use rustls_pki_types::{
        PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
    };
    check_private(path)?;
    let text = Zeroizing::new(read_bounded(path)?);
    for s in pem_sections(path, &text)? {
        let der = s.der.to_vec();
        let key = match s.kind {
            SectionKind::PrivateKey => PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der)),
            SectionKind::EcPrivateKey => PrivateKeyDer::Sec1(PrivateSec1KeyDer::from(der)),
            SectionKind::RsaPrivateKey => PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(der)),
            _ => continue,
        };
        return Ok(KeyDer(key));
    }
    Err(CertError::BadPem {
        path: path.to_path_buf(),
        what: "holds no private key (`-----BEGIN PRIVATE KEY-----`)".into(),
    })
}

/// Holds an exclusive flock(2) on `DIR/.lock` while the CA index and CRL
/// are read and rewritten, so that two concurrent `ferryctl certs` runs
/// cannot hand out the same CRL number or lose an index entry.
pub(crate) struct DirLock {
    _lock: nix::fcntl::Flock<fs::File>,
}

pub(crate) fn lock_dir(dir: &Path) -> Result<DirLock, CertError> {
    let path: PathBuf = dir.join(".lock");
    let f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(io(&path))?;
    let lock =
        nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, errno)| {
            CertError::Io {
                path: path.clone(),
                source: std::io::Error::from(errno),
            }
        })?;
    Ok(DirLock { _lock: lock })
}
