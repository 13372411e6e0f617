//! Reading certificate files for people and monitoring: `ferryctl certs
//! show FILE` and the expiry warnings of `status` and metrics.
//!
//! Private keys are recognised and refused, never decoded for display.

use crate::ca::{self, rfc3339};
use crate::fsutil;
use crate::identity::{self, Identity, Origin};
use crate::CertError;
use rustls_pki_types::pem::SectionKind;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};
use time::OffsetDateTime;

/// Warn about certificates expiring within this many days by default.
pub const DEFAULT_EXPIRY_WARNING_DAYS: u32 = 30;

/// One certificate, as `show` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateInfo {
    /// Subject, identity, validity, role.
    pub identity: Identity,
    /// A CA certificate (basicConstraints CA:TRUE).
    pub is_ca: bool,
    /// Extended key usages present: `serverAuth`, `clientAuth`, …
    pub extended_key_usage: Vec<String>,
    /// Public key algorithm, e.g. `EC P-256`.
    pub key_algorithm: String,
}

/// One CRL entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokedEntry {
    /// Serial, canonical hex.
    pub serial: String,
    /// Revocation time.
    #[serde(with = "time::serde::rfc3339")]
    pub revoked_at: OffsetDateTime,
    /// Reason code text, if any.
    pub reason: Option<String>,
}

/// One CRL, as `show` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrlInfo {
    /// Issuer, RFC 4514.
    pub issuer: String,
    /// cRLNumber (decimal), if present.
    pub crl_number: Option<String>,
    /// thisUpdate.
    #[serde(with = "time::serde::rfc3339")]
    pub this_update: OffsetDateTime,
    /// nextUpdate.
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_update: Option<OffsetDateTime>,
    /// Revoked serials.
    pub revoked: Vec<RevokedEntry>,
}

/// One item of a PEM file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum CertInfo {
    /// An X.509 certificate.
    Certificate(Box<CertificateInfo>),
    /// A certificate revocation list.
    Crl(CrlInfo),
}

/// Describes every certificate and CRL in a PEM file. Refuses a file
/// holding a private key (showing it could only leak it) and a file with
/// neither certificate nor CRL.
pub fn show(path: &Path) -> Result<Vec<CertInfo>, CertError> {
    let text = zeroize::Zeroizing::new(fsutil::read_bounded(path)?);
    let sections = fsutil::pem_sections(path, &text)?;
    if sections.iter().any(|s| {
        matches!(
            s.kind,
            SectionKind::PrivateKey | SectionKind::EcPrivateKey | SectionKind::RsaPrivateKey
        )
    }) {
        return Err(CertError::IsPrivateKey {
            path: path.to_path_buf(),
        });
    }
    let mut out = Vec::new();
    for s in &sections {
        match s.kind {
            SectionKind::Certificate => out.push(CertInfo::Certificate(Box::new(
                certificate_info(path, &s.der)?,
            ))),
            SectionKind::Crl => out.push(CertInfo::Crl(crl_info(path, &s.der)?)),
            _ => {}
        }
    }
    if out.is_empty() {
        return Err(CertError::BadPem {
            path: path.to_path_buf(),
            what: "holds neither a certificate nor a CRL".into(),
        });
    }
    Ok(out)
}

fn certificate_info(path: &Path, der: &[u8]) -> Result<CertificateInfo, CertError> {
    let origin = Origin::File(path);
    let x509 = identity::parse_x509(&origin, der)?;
    let identity = Identity::from_x509(&origin, der, &x509)?;
    let mut eku = Vec::new();
    if let Ok(Some(ext)) = x509.extended_key_usage() {
        let e = ext.value;
        for (on, name) in [
            (e.any, "any"),
            (e.server_auth, "serverAuth"),
            (e.client_auth, "clientAuth"),
            (e.code_signing, "codeSigning"),
            (e.email_protection, "emailProtection"),
            (e.time_stamping, "timeStamping"),
            (e.ocsp_signing, "OCSPSigning"),
        ] {
            if on {
                eku.push(name.to_string());
            }
        }
        for oid in &e.other {
            eku.push(oid.to_id_string());
        }
    }
    let key_algorithm = match x509.public_key().parsed() {
        Ok(x509_parser::public_key::PublicKey::EC(p)) => match p.key_size() {
            256 => "EC P-256".to_string(),
            384 => "EC P-384".to_string(),
            n => format!("EC {n}-bit"),
        },
        Ok(x509_parser::public_key::PublicKey::RSA(r)) => format!("RSA {}-bit", r.key_size()),
        _ => x509.public_key().algorithm.algorithm.to_id_string(),
    };
    Ok(CertificateInfo {
        identity,
        is_ca: x509.is_ca(),
        extended_key_usage: eku,
        key_algorithm,
    })
}

fn crl_info(path: &Path, der: &[u8]) -> Result<CrlInfo, CertError> {
    let (_, crl) = x509_parser::parse_x509_crl(der).map_err(|e| CertError::BadCertificate {
        origin: path.display().to_string(),
        what: format!("not an X.509 CRL ({e})"),
    })?;
    Ok(CrlInfo {
        issuer: identity::rfc4514(crl.issuer()),
        crl_number: crl.crl_number().map(|n| n.to_string()),
        this_update: crl.last_update().to_datetime(),
        next_update: crl.next_update().map(|t| t.to_datetime()),
        revoked: crl
            .iter_revoked_certificates()
            .map(|r| RevokedEntry {
                serial: identity::serial_hex(r.raw_serial()),
                revoked_at: r.revocation_date.to_datetime(),
                reason: r.reason_code().map(|(_, c)| c.to_string()),
            })
            .collect(),
    })
}

impl fmt::Display for CertInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertInfo::Certificate(c) => {
                let id = &c.identity;
                writeln!(f, "certificate{}", if c.is_ca { " (CA)" } else { "" })?;
                writeln!(f, "  subject:      {}", id.subject)?;
                writeln!(f, "  issuer:       {}", id.issuer)?;
                writeln!(f, "  serial:       {}", id.serial)?;
                writeln!(f, "  sha256:       {}", id.fingerprint_sha256)?;
                writeln!(f, "  not before:   {}", rfc3339(id.not_before))?;
                writeln!(f, "  not after:    {}", rfc3339(id.not_after))?;
                writeln!(f, "  key:          {}", c.key_algorithm)?;
                if !c.extended_key_usage.is_empty() {
                    writeln!(f, "  usage:        {}", c.extended_key_usage.join(", "))?;
                }
                if let Some(role) = &id.role {
                    writeln!(f, "  role:         {role}")?;
                }
                let san = &id.san;
                for d in &san.dns {
                    writeln!(f, "  SAN DNS:      {d}")?;
                }
                for ip in &san.ip {
                    writeln!(f, "  SAN IP:       {ip}")?;
                }
                for u in &san.uri {
                    writeln!(f, "  SAN URI:      {u}")?;
                }
                for e in &san.email {
                    writeln!(f, "  SAN email:    {e}")?;
                }
                Ok(())
            }
            CertInfo::Crl(c) => {
                writeln!(f, "CRL")?;
                writeln!(f, "  issuer:       {}", c.issuer)?;
                if let Some(n) = &c.crl_number {
                    writeln!(f, "  number:       {n}")?;
                }
                writeln!(f, "  this update:  {}", rfc3339(c.this_update))?;
                if let Some(t) = c.next_update {
                    writeln!(f, "  next update:  {}", rfc3339(t))?;
                }
                writeln!(f, "  revoked:      {}", c.revoked.len())?;
                for r in &c.revoked {
                    writeln!(
                        f,
                        "    {}  {}  {}",
                        r.serial,
                        rfc3339(r.revoked_at),
                        r.reason.as_deref().unwrap_or("-")
                    )?;
                }
                Ok(())
            }
        }
    }
}

/// How close a certificate or CRL is to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExpiryState {
    /// Already past its end (a CRL: past nextUpdate).
    Expired,
    /// Ends within the warning window.
    ExpiresSoon,
}

/// What kind of object is expiring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExpiryKind {
    /// A CA certificate.
    Ca,
    /// A server or client certificate.
    Certificate,
    /// A CRL (its nextUpdate).
    Crl,
}

/// One certificate or CRL that has expired or soon will.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpiryNotice {
    /// The file.
    pub path: PathBuf,
    /// CA, certificate or CRL.
    pub kind: ExpiryKind,
    /// Subject (certificates) or issuer (CRLs), RFC 4514.
    pub name: String,
    /// Serial (certificates only).
    pub serial: Option<String>,
    /// notAfter, or a CRL's nextUpdate.
    #[serde(with = "time::serde::rfc3339")]
    pub ends: OffsetDateTime,
    /// Whole days left (negative once expired).
    pub days_left: i64,
    /// Expired or expiring soon.
    pub state: ExpiryState,
}

impl fmt::Display for ExpiryNotice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            ExpiryKind::Ca => "CA certificate",
            ExpiryKind::Certificate => "certificate",
            ExpiryKind::Crl => "CRL",
        };
        match self.state {
            ExpiryState::Expired => write!(
                f,
                "{}: {what} {} expired on {}",
                self.path.display(),
                self.name,
                rfc3339(self.ends)
            )?,
            ExpiryState::ExpiresSoon => write!(
                f,
                "{}: {what} {} expires on {} ({} days left)",
                self.path.display(),
                self.name,
                rfc3339(self.ends),
                self.days_left
            )?,
        }
        match (self.kind, self.state) {
            (ExpiryKind::Crl, _) => write!(f, "; run `ferryctl certs renew-crl`"),
            (ExpiryKind::Ca, _) => write!(f, "; plan a new site CA and re-issue"),
            (ExpiryKind::Certificate, _) => write!(f, "; issue a replacement"),
        }
    }
}

/// Checks one PEM file: every certificate ending, and every CRL whose
/// nextUpdate falls, before `now + within_days`. Private-key files are
/// skipped (they carry no date).
pub fn check_expiry_file(
    path: &Path,
    within_days: u32,
    now: OffsetDateTime,
) -> Result<Vec<ExpiryNotice>, CertError> {
    let text = zeroize::Zeroizing::new(fsutil::read_bounded(path)?);
    let sections = fsutil::pem_sections(path, &text)?;
    let horizon = now + time::Duration::days(i64::from(within_days));
    let mut out = Vec::new();
    let mut push = |kind, name: String, serial, ends: OffsetDateTime| {
        if ends <= horizon {
            out.push(ExpiryNotice {
                path: path.to_path_buf(),
                kind,
                name,
                serial,
                ends,
                days_left: (ends - now).whole_days(),
                state: if ends <= now {
                    ExpiryState::Expired
                } else {
                    ExpiryState::ExpiresSoon
                },
            });
        }
    };
    for s in &sections {
        match s.kind {
            SectionKind::Certificate => {
                let info = certificate_info(path, &s.der)?;
                let kind = if info.is_ca {
                    ExpiryKind::Ca
                } else {
                    ExpiryKind::Certificate
                };
                push(
                    kind,
                    info.identity.subject,
                    Some(info.identity.serial),
                    info.identity.not_after,
                );
            }
            SectionKind::Crl => {
                let info = crl_info(path, &s.der)?;
                if let Some(next) = info.next_update {
                    push(ExpiryKind::Crl, info.issuer, None, next);
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Checks every `*.crt`, `*.pem` and `*.crl` file directly in `dir` (a CA
/// directory, a server's certificate directory), sorted by end date. A
/// file that cannot be read or parsed is an error naming it: a status page
/// should not silently skip a broken certificate.
pub fn expiring_in_dir(
    dir: &Path,
    within_days: u32,
    now: OffsetDateTime,
) -> Result<Vec<ExpiryNotice>, CertError> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(fsutil::io(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && !p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with('.'))
                && matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("crt" | "pem" | "crl")
                )
        })
        .collect();
    paths.sort();
    let mut out = Vec::new();
    for p in paths {
        out.extend(check_expiry_file(&p, within_days, now)?);
    }
    out.sort_by_key(|n| n.ends);
    Ok(out)
}

/// Notices for the certificates in a CA's index that are not revoked and
/// expired less than a year ago or expire within `within_days`, so the CA
/// host can warn about client certificates whose files live elsewhere.
/// (The CA certificate and CRL themselves: [`expiring_in_dir`] on the CA
/// directory.)
pub fn expiring_issued(
    ca_dir: &Path,
    within_days: u32,
    now: OffsetDateTime,
) -> Result<Vec<ExpiryNotice>, CertError> {
    let horizon = now + time::Duration::days(i64::from(within_days));
    let index_path = ca_dir.join(ca::files::INDEX);
    let mut out: Vec<ExpiryNotice> = ca::list_issued(ca_dir)?
        .into_iter()
        .filter(|r| {
            r.revoked.is_none()
                && r.not_after <= horizon
                && r.not_after > now - time::Duration::days(365)
        })
        .map(|r| ExpiryNotice {
            path: index_path.clone(),
            kind: ExpiryKind::Certificate,
            name: format!(
                "CN={} ({})",
                r.name,
                match r.kind {
                    ca::CertKind::Server => "server",
                    ca::CertKind::Client => "client",
                }
            ),
            serial: Some(r.serial),
            ends: r.not_after,
            days_left: (r.not_after - now).whole_days(),
            state: if r.not_after <= now {
                ExpiryState::Expired
            } else {
                ExpiryState::ExpiresSoon
            },
        })
        .collect();
    out.sort_by_key(|n| n.ends);
    Ok(out)
}
