//! The site CA: creating it, issuing server and client certificates,
//! keeping the index of what was issued, revoking and publishing the CRL.
//!
//! A CA directory holds `ca.crt`, `ca.key` (0600), `ca.crl` and
//! `issued.toml`. Every change to the index or the CRL happens under an
//! flock on the directory, so two operators cannot hand out the same CRL
//! number.

use crate::fsutil::{self, io, Replace};
use crate::identity::{self, Identity, Origin, Role, ID_URI_PREFIX, PERSON_URI_PREFIX};
use crate::CertError;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SanType, SerialNumber,
};
use ring::rand::SecureRandom;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::fs;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

/// File names inside a CA directory.
pub mod files {
    /// The CA certificate (PEM), to hand to every party that verifies.
    pub const CA_CERT: &str = "ca.crt";
    /// The CA private key (PEM, PKCS#8, mode 0600).
    pub const CA_KEY: &str = "ca.key";
    /// The current signed CRL (PEM).
    pub const CRL: &str = "ca.crl";
    /// Index of every certificate issued, with revocations and the CRL number.
    pub const INDEX: &str = "issued.toml";
}

/// Default lifetime of a site CA.
pub const DEFAULT_CA_VALIDITY_DAYS: u32 = 3650;
/// Default lifetime of a server or client certificate.
pub const DEFAULT_LEAF_VALIDITY_DAYS: u32 = 365;
/// How long a CRL is valid (its nextUpdate); re-sign it with
/// [`renew_crl`] before then. Twice the expiry warning window
/// ([`crate::DEFAULT_EXPIRY_WARNING_DAYS`]), so a fresh CRL is not reported
/// as expiring and a warning means the renewal stopped.
pub const DEFAULT_CRL_VALIDITY_DAYS: u32 = 60;
/// Upper bound on any validity, to keep date arithmetic sane.
pub const MAX_VALIDITY_DAYS: u32 = 36_500;
/// Longest certificate name (it is also a file name).
pub const MAX_NAME_CHARS: usize = 64;

/// Issued certificates start this much in the past, so a peer whose clock
/// is a little behind does not see them as not yet valid.
const LEAF_BACKDATE: Duration = Duration::minutes(5);
/// The CA starts further back: everything it signs must fall inside it.
const CA_BACKDATE: Duration = Duration::hours(1);
/// Random serial length (RFC 5280 allows up to 20 octets).
const SERIAL_BYTES: usize = 16;

/// What a certificate is for; decides its extended key usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CertKind {
    /// TLS server (serverAuth): ferryd's HTTPS ingest endpoint.
    Server,
    /// TLS client (clientAuth): a pushing system or an administrator.
    Client,
}

/// A certificate's validity window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// Start.
    pub not_before: OffsetDateTime,
    /// End.
    pub not_after: OffsetDateTime,
}

impl Validity {
    /// From a few minutes ago until `days` days from now.
    pub fn days_from_now(days: u32) -> Result<Validity, CertError> {
        check_days(days)?;
        let now = OffsetDateTime::now_utc();
        Ok(Validity {
            not_before: now - LEAF_BACKDATE,
            not_after: now + Duration::days(i64::from(days)),
        })
    }

    /// An explicit window (e.g. one already in the past, to test that
    /// expired certificates are refused). `not_after` must follow
    /// `not_before`.
    pub fn between(
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<Validity, CertError> {
        if not_after <= not_before {
            return Err(CertError::InvalidInput {
                what: "validity",
                value: format!("{} .. {}", rfc3339(not_before), rfc3339(not_after)),
                rule: "not_after must be later than not_before",
            });
        }
        Ok(Validity {
            not_before,
            not_after,
        })
    }
}

fn check_days(days: u32) -> Result<(), CertError> {
    if days == 0 || days > MAX_VALIDITY_DAYS {
        return Err(CertError::InvalidInput {
            what: "validity days",
            value: days.to_string(),
            rule: "between 1 and 36500 days",
        });
    }
    Ok(())
}

pub(crate) use ferry_common::rfc3339::format as rfc3339;

/// The site CA, as `ferryctl certs init-ca` and `show` report it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaInfo {
    /// CA directory.
    pub dir: PathBuf,
    /// `DIR/ca.crt`.
    pub cert_path: PathBuf,
    /// `DIR/ca.key`.
    pub key_path: PathBuf,
    /// `DIR/ca.crl`.
    pub crl_path: PathBuf,
    /// Subject, RFC 4514.
    pub subject: String,
    /// SHA-256 of the CA certificate, lowercase hex: compare it out of band
    /// when installing `ca.crt` on another host.
    pub fingerprint_sha256: String,
    /// Start of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    /// End of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
}

/// Why a certificate was revoked (RFC 5280 reason codes that make sense
/// for a site CA; `certificateHold` is left out because revocation here is
/// final).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RevokeReason {
    /// No reason given.
    Unspecified,
    /// The private key leaked or may have.
    KeyCompromise,
    /// The CA key leaked (then the whole CA must be replaced too).
    CaCompromise,
    /// The holder moved to another organization or duty.
    AffiliationChanged,
    /// Replaced by a new certificate.
    Superseded,
    /// The system or person no longer needs access.
    CessationOfOperation,
    /// The holder lost the right to the role.
    PrivilegeWithdrawn,
}

impl RevokeReason {
    /// Every reason, for CLI help.
    pub const ALL: [RevokeReason; 7] = [
        RevokeReason::Unspecified,
        RevokeReason::KeyCompromise,
        RevokeReason::CaCompromise,
        RevokeReason::AffiliationChanged,
        RevokeReason::Superseded,
        RevokeReason::CessationOfOperation,
        RevokeReason::PrivilegeWithdrawn,
    ];

    /// The name used on the command line and in the index.
    pub fn as_str(self) -> &'static str {
        match self {
            RevokeReason::Unspecified => "unspecified",
            RevokeReason::KeyCompromise => "key-compromise",
            RevokeReason::CaCompromise => "ca-compromise",
            RevokeReason::AffiliationChanged => "affiliation-changed",
            RevokeReason::Superseded => "superseded",
            RevokeReason::CessationOfOperation => "cessation-of-operation",
            RevokeReason::PrivilegeWithdrawn => "privilege-withdrawn",
        }
    }

    fn rcgen(self) -> rcgen::RevocationReason {
        use rcgen::RevocationReason as R;
        match self {
            RevokeReason::Unspecified => R::Unspecified,
            RevokeReason::KeyCompromise => R::KeyCompromise,
            RevokeReason::CaCompromise => R::CaCompromise,
            RevokeReason::AffiliationChanged => R::AffiliationChanged,
            RevokeReason::Superseded => R::Superseded,
            RevokeReason::CessationOfOperation => R::CessationOfOperation,
            RevokeReason::PrivilegeWithdrawn => R::PrivilegeWithdrawn,
        }
    }
}

impl FromStr for RevokeReason {
    type Err = CertError;
    fn from_str(s: &str) -> Result<RevokeReason, CertError> {
        RevokeReason::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| CertError::InvalidInput {
                what: "revocation reason",
                value: s.chars().take(64).collect(),
                rule: "one of unspecified, key-compromise, ca-compromise, affiliation-changed, superseded, cessation-of-operation, privilege-withdrawn",
            })
    }
}

impl fmt::Display for RevokeReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A revocation recorded in the index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revocation {
    /// When the CA recorded it.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Why.
    pub reason: RevokeReason,
}

/// One certificate in the CA index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuedRecord {
    /// Serial, canonical lowercase hex.
    pub serial: String,
    /// Server or client.
    pub kind: CertKind,
    /// The name it was issued to (the subject CN).
    pub name: String,
    /// Role, for client certificates that carry one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The person a client certificate belongs to (`urn:ferry:person:ID`);
    /// absent in records written before persons existed, whose person is
    /// then their `name` (see [`IssuedRecord::person`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person: Option<String>,
    /// SHA-256 of the certificate, lowercase hex.
    pub fingerprint_sha256: String,
    /// Start of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    /// End of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// Set once revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<Revocation>,
}

impl IssuedRecord {
    /// The person this certificate belongs to (lowercase), by the same rule
    /// as [`Identity::person`]: the recorded person id, else the name.
    pub fn person(&self) -> String {
        self.person
            .clone()
            .unwrap_or_else(|| self.name.to_ascii_lowercase())
    }
}

/// `issued.toml`: what this CA issued, and the number of the last CRL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Index {
    /// Number of the last CRL written (RFC 5280 cRLNumber; grows by one per CRL).
    crl_number: u64,
    #[serde(default, rename = "cert")]
    certs: Vec<IssuedRecord>,
}

const INDEX_HEADER: &str =
    "# ferry site CA index, written by ferry-certs under a lock; do not edit.\n\
# Every certificate this CA issued, its revocation if any, and the last CRL number.\n\n";

fn read_index(dir: &Path) -> Result<Index, CertError> {
    let path = dir.join(files::INDEX);
    let bytes = fsutil::read_bounded(&path)?;
    let text = String::from_utf8(bytes).map_err(|_| CertError::Index {
        path: path.clone(),
        what: "not UTF-8 text".into(),
    })?;
    toml::from_str(&text).map_err(|e| CertError::Index {
        path,
        what: e.message().to_string(),
    })
}

fn write_index(dir: &Path, index: &Index, replace: Replace) -> Result<(), CertError> {
    let path = dir.join(files::INDEX);
    let body = toml::to_string(index).map_err(|e| CertError::Index {
        path: path.clone(),
        what: e.to_string(),
    })?;
    fsutil::write_file(
        &path,
        format!("{INDEX_HEADER}{body}").as_bytes(),
        0o600,
        replace,
    )
}

/// The loaded CA: certificate, key and the rcgen issuer built from them.
pub(crate) struct SiteCa {
    pub(crate) dir: PathBuf,
    pub(crate) der: Vec<u8>,
    issuer: rcgen::Certificate,
    key: KeyPair,
    pub(crate) info: CaInfo,
}

fn info_for(dir: &Path, der: &[u8]) -> Result<CaInfo, CertError> {
    let cert_path = dir.join(files::CA_CERT);
    let id = Identity::parse(&Origin::File(&cert_path), der)?;
    Ok(CaInfo {
        dir: dir.to_path_buf(),
        cert_path,
        key_path: dir.join(files::CA_KEY),
        crl_path: dir.join(files::CRL),
        subject: id.subject,
        fingerprint_sha256: id.fingerprint_sha256,
        not_before: id.not_before,
        not_after: id.not_after,
    })
}

/// Describes the CA in `dir` from its certificate alone (the key is not read).
pub fn ca_info(dir: &Path) -> Result<CaInfo, CertError> {
    let path = dir.join(files::CA_CERT);
    let certs = fsutil::read_certs(&path)?;
    info_for(dir, &certs[0])
}

pub(crate) fn load_ca(dir: &Path) -> Result<SiteCa, CertError> {
    let cert_path = dir.join(files::CA_CERT);
    let key_path = dir.join(files::CA_KEY);
    let certs = fsutil::read_certs(&cert_path)?;
    let der = certs[0].clone();
    let origin = Origin::File(&cert_path);
    let x509 = identity::parse_x509(&origin, &der)?;
    if !x509.is_ca() {
        return Err(CertError::NotCa { path: cert_path });
    }
    let info = info_for(dir, &der)?;
    if info.not_after <= OffsetDateTime::now_utc() {
        return Err(CertError::CaExpired {
            path: cert_path,
            not_after: rfc3339(info.not_after),
        });
    }
    // Permission check, then one read; PEM text and DER stay in zeroizing
    // buffers (rcgen's own copy inside `KeyPair` is out of our reach).
    let key_der = fsutil::read_private_key(&key_path)?;
    let key = KeyPair::try_from(key_der.der()).map_err(|e| CertError::BadPem {
        path: key_path.clone(),
        what: format!("not a usable ECDSA/Ed25519 PKCS#8 private key ({e})"),
    })?;
    drop(key_der);
    if key.public_key_der() != x509.public_key().raw {
        return Err(CertError::KeyMismatch {
            cert: cert_path,
            key: key_path,
        });
    }
    let params = CertificateParams::from_ca_cert_der(&der.clone().into()).map_err(|e| {
        CertError::BadCertificate {
            origin: cert_path.display().to_string(),
            what: format!("cannot be used to sign ({e})"),
        }
    })?;
    // rcgen signs with an issuer `Certificate`; re-signing the parsed
    // parameters gives one with the same subject, key and key identifier.
    let issuer = params.self_signed(&key).map_err(gen_err)?;
    Ok(SiteCa {
        dir: dir.to_path_buf(),
        der,
        issuer,
        key,
        info,
    })
}

fn gen_err(e: rcgen::Error) -> CertError {
    CertError::Generate(e.to_string())
}

fn random_serial() -> Result<[u8; SERIAL_BYTES], CertError> {
    let mut s = [0u8; SERIAL_BYTES];
    ring::rand::SystemRandom::new()
        .fill(&mut s)
        .map_err(|_| CertError::Generate("system random generator failed".into()))?;
    // Positive and without a leading zero byte, so the DER integer, the hex
    // text and every tool's rendering of it agree on the same 16 bytes.
    s[0] = (s[0] & 0x7f).max(1);
    Ok(s)
}

/// Creates a site CA in `dir` (created 0700 if missing): an ECDSA P-256
/// key in `ca.key` (0600), a self-signed `ca.crt` valid for
/// `validity_days`, an empty index and an empty signed `ca.crl` (CRL
/// number 1), so verifiers can require a CRL from the first day. Refuses
/// to overwrite any of these files.
pub fn init_ca(dir: &Path, common_name: &str, validity_days: u32) -> Result<CaInfo, CertError> {
    check_days(validity_days)?;
    check_subject_text("common name", common_name)?;
    if !dir.exists() {
        fs::create_dir_all(dir).map_err(io(dir))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
    }
    let _lock = fsutil::lock_dir(dir)?;
    for f in [files::CA_KEY, files::CA_CERT, files::CRL, files::INDEX] {
        let p = dir.join(f);
        if fs::symlink_metadata(&p).is_ok() {
            return Err(CertError::Exists { path: p });
        }
    }
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(gen_err)?;
    let now = OffsetDateTime::now_utc();
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.not_before = now - CA_BACKDATE;
    params.not_after = now + Duration::days(i64::from(validity_days));
    params.serial_number = Some(SerialNumber::from_slice(&random_serial()?));
    // Path length 0: this CA signs servers and clients, never another CA.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.key_identifier_method = KeyIdMethod::Sha256;
    let cert = params.self_signed(&key).map_err(gen_err)?;
    let key_pem = Zeroizing::new(key.serialize_pem());
    fsutil::write_file(
        &dir.join(files::CA_KEY),
        key_pem.as_bytes(),
        0o600,
        Replace::Never,
    )?;
    fsutil::write_file(
        &dir.join(files::CA_CERT),
        cert.pem().as_bytes(),
        0o644,
        Replace::Never,
    )?;
    let index = Index {
        crl_number: 0,
        certs: Vec::new(),
    };
    write_index(dir, &index, Replace::Never)?;
    let ca = load_ca(dir)?;
    write_crl(&ca, index, DEFAULT_CRL_VALIDITY_DAYS)?;
    Ok(ca.info)
}

/// Signs a CRL listing every revoked serial of `index` under the next CRL
/// number, then records that number. CRL first, index second: if the index
/// write fails, the next CRL reuses a number no verifier has seen as final
/// (a higher number always wins, so nothing goes backwards).
fn write_crl(ca: &SiteCa, mut index: Index, validity_days: u32) -> Result<CrlWritten, CertError> {
    check_days(validity_days)?;
    let number = index.crl_number + 1;
    let now = OffsetDateTime::now_utc();
    let mut revoked = Vec::new();
    for r in &index.certs {
        if let Some(rev) = &r.revoked {
            let bytes = hex::decode(&r.serial).map_err(|_| CertError::Index {
                path: ca.dir.join(files::INDEX),
                what: format!("serial `{}` is not hex", r.serial),
            })?;
            revoked.push(RevokedCertParams {
                serial_number: SerialNumber::from_slice(&bytes),
                revocation_time: rev.at,
                reason_code: Some(rev.reason.rcgen()),
                invalidity_date: None,
            });
        }
    }
    let count = revoked.len();
    let next_update = now + Duration::days(i64::from(validity_days));
    let params = CertificateRevocationListParams {
        this_update: now,
        next_update,
        crl_number: SerialNumber::from_slice(&number.to_be_bytes()),
        issuing_distribution_point: None,
        revoked_certs: revoked,
        key_identifier_method: ca.issuer.params().key_identifier_method.clone(),
    };
    let crl = params.signed_by(&ca.issuer, &ca.key).map_err(gen_err)?;
    let pem = crl.pem().map_err(gen_err)?;
    let crl_path = ca.dir.join(files::CRL);
    fsutil::write_file(&crl_path, pem.as_bytes(), 0o644, Replace::Atomically)?;
    index.crl_number = number;
    write_index(&ca.dir, &index, Replace::Atomically)?;
    Ok(CrlWritten {
        path: crl_path,
        number,
        revoked_count: count,
        next_update,
    })
}

/// A CRL just written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrlWritten {
    /// `CA_DIR/ca.crl`.
    pub path: PathBuf,
    /// Its CRL number.
    pub number: u64,
    /// How many serials it lists.
    pub revoked_count: usize,
    /// When it stops being current; run [`renew_crl`] before.
    #[serde(with = "time::serde::rfc3339")]
    pub next_update: OffsetDateTime,
}

/// What to issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueRequest {
    /// Server or client.
    pub kind: CertKind,
    /// Subject CN and file stem (`NAME.crt`, `NAME.key`):
    /// `[A-Za-z0-9][A-Za-z0-9._-]*`, at most 64 characters.
    pub name: String,
    /// DNS SANs (a server needs a DNS name or an IP address).
    pub dns_names: Vec<String>,
    /// IP SANs.
    pub ip_addrs: Vec<IpAddr>,
    /// Role, carried as the SAN URI `urn:ferry:role:ROLE` (clients only).
    pub role: Option<Role>,
    /// The person the certificate belongs to, carried as the SAN URI
    /// `urn:ferry:person:ID` (clients only; see
    /// [`crate::PERSON_URI_PREFIX`]). Without it the person is `name`.
    pub person: Option<String>,
    /// Subject O.
    pub organization: Option<String>,
    /// Subject OU.
    pub org_unit: Option<String>,
    /// Validity window; must end before the CA does.
    pub validity: Validity,
}

impl IssueRequest {
    /// A server certificate request valid for `validity_days`.
    pub fn server(
        name: &str,
        dns_names: &[String],
        ip_addrs: &[IpAddr],
        validity_days: u32,
    ) -> Result<IssueRequest, CertError> {
        Ok(IssueRequest {
            kind: CertKind::Server,
            name: name.to_string(),
            dns_names: dns_names.to_vec(),
            ip_addrs: ip_addrs.to_vec(),
            role: None,
            person: None,
            organization: None,
            org_unit: None,
            validity: Validity::days_from_now(validity_days)?,
        })
    }

    /// A client certificate request valid for `validity_days`.
    pub fn client(
        name: &str,
        role: Option<Role>,
        validity_days: u32,
    ) -> Result<IssueRequest, CertError> {
        Ok(IssueRequest {
            kind: CertKind::Client,
            name: name.to_string(),
            dns_names: Vec::new(),
            ip_addrs: Vec::new(),
            role,
            person: None,
            organization: None,
            org_unit: None,
            validity: Validity::days_from_now(validity_days)?,
        })
    }
}

/// A certificate just issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Issued {
    /// `OUT_DIR/NAME.crt`.
    pub cert_path: PathBuf,
    /// `OUT_DIR/NAME.key` (0600).
    pub key_path: PathBuf,
    /// What the certificate says.
    pub identity: Identity,
}

/// Issues a server certificate (serverAuth) `OUT_DIR/NAME.crt` + `NAME.key`.
pub fn issue_server(
    ca_dir: &Path,
    out_dir: &Path,
    name: &str,
    dns_names: &[String],
    ip_addrs: &[IpAddr],
    validity_days: u32,
) -> Result<Issued, CertError> {
    issue(
        ca_dir,
        out_dir,
        &IssueRequest::server(name, dns_names, ip_addrs, validity_days)?,
    )
}

/// Issues a client certificate (clientAuth) `OUT_DIR/NAME.crt` + `NAME.key`
/// with subject `CN=NAME`, SAN URI `urn:ferry:id:NAME` and, with a role,
/// SAN URI `urn:ferry:role:ROLE`.
pub fn issue_client(
    ca_dir: &Path,
    out_dir: &Path,
    name: &str,
    role: Option<Role>,
    validity_days: u32,
) -> Result<Issued, CertError> {
    issue(
        ca_dir,
        out_dir,
        &IssueRequest::client(name, role, validity_days)?,
    )
}

fn check_name(name: &str) -> Result<(), CertError> {
    let b = name.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= MAX_NAME_CHARS
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'.' || c == b'-' || c == b'_')
        && !name.contains("..");
    if !ok {
        return Err(CertError::InvalidInput {
            what: "certificate name",
            value: name.chars().take(80).collect(),
            rule: "1-64 characters of A-Z a-z 0-9 . - _, starting with a letter or digit (it becomes NAME.crt and NAME.key)",
        });
    }
    Ok(())
}

fn check_dns(name: &str) -> Result<String, CertError> {
    let lower = name.to_ascii_lowercase();
    let body = lower.strip_prefix("*.").unwrap_or(&lower);
    let ok = !body.is_empty()
        && body.len() <= 253
        && body.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
        });
    if !ok {
        return Err(CertError::InvalidInput {
            what: "DNS name",
            value: name.chars().take(80).collect(),
            rule: "dot-separated labels of a-z 0-9 -, optionally starting with `*.`",
        });
    }
    Ok(lower)
}

fn check_subject_text(what: &'static str, s: &str) -> Result<(), CertError> {
    if s.trim().is_empty() || s.chars().count() > 64 || s.chars().any(char::is_control) {
        return Err(CertError::InvalidInput {
            what,
            value: s.chars().take(80).collect(),
            rule: "1-64 printable characters",
        });
    }
    Ok(())
}

fn ia5(s: String) -> Result<rcgen::Ia5String, CertError> {
    rcgen::Ia5String::try_from(s.clone()).map_err(|_| CertError::InvalidInput {
        what: "subject alternative name",
        value: s,
        rule: "ASCII only",
    })
}

/// Issues a certificate from the CA in `ca_dir` into `out_dir`
/// (`NAME.crt` 0644, `NAME.key` 0600, neither may exist) and records its
/// serial in the CA index.
pub fn issue(ca_dir: &Path, out_dir: &Path, req: &IssueRequest) -> Result<Issued, CertError> {
    check_name(&req.name)?;
    let dns: Vec<String> = req
        .dns_names
        .iter()
        .map(|d| check_dns(d))
        .collect::<Result<_, _>>()?;
    if let Some(o) = &req.organization {
        check_subject_text("organization", o)?;
    }
    if let Some(ou) = &req.org_unit {
        check_subject_text("organizational unit", ou)?;
    }
    match req.kind {
        CertKind::Server if dns.is_empty() && req.ip_addrs.is_empty() => {
            return Err(CertError::InvalidInput {
                what: "server certificate",
                value: req.name.clone(),
                rule: "needs at least one DNS name or IP address that clients connect to",
            })
        }
        CertKind::Server if req.role.is_some() => {
            return Err(CertError::InvalidInput {
                what: "server certificate",
                value: req.name.clone(),
                rule: "roles are carried by client certificates only",
            })
        }
        CertKind::Server if req.person.is_some() => {
            return Err(CertError::InvalidInput {
                what: "server certificate",
                value: req.name.clone(),
                rule: "persons are carried by client certificates only",
            })
        }
        _ => {}
    }
    let person = req
        .person
        .as_deref()
        .map(identity::check_person)
        .transpose()?;
    let _lock = fsutil::lock_dir(ca_dir)?;
    let ca = load_ca(ca_dir)?;
    if req.validity.not_after > ca.info.not_after {
        return Err(CertError::ValidityBeyondCa {
            path: ca.info.cert_path.clone(),
            ca_not_after: rfc3339(ca.info.not_after),
            requested: rfc3339(req.validity.not_after),
        });
    }
    let mut index = read_index(ca_dir)?;
    if req.kind == CertKind::Client {
        let me = person
            .clone()
            .unwrap_or_else(|| req.name.to_ascii_lowercase());
        check_one_officer_role(&index, &me, req.role.as_ref())?;
    }
    if !out_dir.exists() {
        fs::create_dir_all(out_dir).map_err(io(out_dir))?;
    }
    let cert_path = out_dir.join(format!("{}.crt", req.name));
    let key_path = out_dir.join(format!("{}.key", req.name));
    for p in [&cert_path, &key_path] {
        if fs::symlink_metadata(p).is_ok() {
            return Err(CertError::Exists { path: p.clone() });
        }
    }
    let serial = loop {
        let s = random_serial()?;
        let text = identity::serial_hex(&s);
        if !index.certs.iter().any(|r| r.serial == text) {
            break s;
        }
    };

    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(gen_err)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, req.name.as_str());
    if let Some(o) = &req.organization {
        dn.push(DnType::OrganizationName, o.as_str());
    }
    if let Some(ou) = &req.org_unit {
        dn.push(DnType::OrganizationalUnitName, ou.as_str());
    }
    params.distinguished_name = dn;
    params.not_before = req.validity.not_before;
    params.not_after = req.validity.not_after;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    let mut sans = Vec::new();
    for d in dns {
        sans.push(SanType::DnsName(ia5(d)?));
    }
    for ip in &req.ip_addrs {
        sans.push(SanType::IpAddress(*ip));
    }
    match req.kind {
        CertKind::Server => {
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        }
        CertKind::Client => {
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            sans.push(SanType::URI(ia5(format!("{ID_URI_PREFIX}{}", req.name))?));
            if let Some(p) = &person {
                sans.push(SanType::URI(ia5(format!("{PERSON_URI_PREFIX}{p}"))?));
            }
            if let Some(role) = &req.role {
                sans.push(SanType::URI(ia5(role.uri())?));
            }
        }
    }
    params.subject_alt_names = sans;
    let cert = params
        .signed_by(&key, &ca.issuer, &ca.key)
        .map_err(gen_err)?;
    let der = cert.der().to_vec();
    let identity = Identity::parse(&Origin::File(&cert_path), &der)?;

    let key_pem = Zeroizing::new(key.serialize_pem());
    fsutil::write_file(&key_path, key_pem.as_bytes(), 0o600, Replace::Never)?;
    if let Err(e) = fsutil::write_file(&cert_path, cert.pem().as_bytes(), 0o644, Replace::Never) {
        // No certificate, no use for its key: do not leave an orphan secret.
        let _ = fs::remove_file(&key_path);
        return Err(e);
    }
    index.certs.push(IssuedRecord {
        serial: identity.serial.clone(),
        kind: req.kind,
        name: req.name.clone(),
        role: req.role.as_ref().map(|r| r.as_str().to_string()),
        fingerprint_sha256: identity.fingerprint_sha256.clone(),
        not_before: identity.not_before,
        not_after: identity.not_after,
        revoked: None,
        person: person.clone(),
    });
    write_index(ca_dir, &index, Replace::Atomically)?;
    Ok(Issued {
        cert_path,
        key_path,
        identity,
    })
}

/// Three-officer separation at the source: a person may hold one officer
/// role (sysadmin, secadmin, auditor, reviewer) in the valid, unrevoked
/// certificates of this CA. Renewing the same role is fine; a second
/// officer role for the same person is refused until the first is revoked
/// or has expired. Non-officer roles (`pusher`) are not restricted here.
fn check_one_officer_role(
    index: &Index,
    person: &str,
    role: Option<&Role>,
) -> Result<(), CertError> {
    let Some(wanted) = role.filter(|r| r.is_officer()) else {
        return Ok(());
    };
    let now = OffsetDateTime::now_utc();
    let clash = index.certs.iter().find(|r| {
        r.kind == CertKind::Client
            && r.revoked.is_none()
            && r.not_after > now
            && r.person() == person
            && r.role
                .as_deref()
                .and_then(|h| Role::new(h).ok())
                .is_some_and(|h| h.is_officer() && h != *wanted)
    });
    match clash {
        Some(r) => Err(CertError::PersonHoldsOtherRole {
            person: person.to_owned(),
            held: r.role.clone().unwrap_or_default(),
            wanted: wanted.as_str().to_owned(),
            name: r.name.clone(),
            serial: r.serial.clone(),
        }),
        None => Ok(()),
    }
}

/// Which certificate to revoke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevokeTarget {
    /// A serial as `show` prints it (hex; colons allowed).
    Serial(String),
    /// A certificate file (PEM) issued by this CA.
    CertFile(PathBuf),
}

impl RevokeTarget {
    /// Reads a command-line argument: an existing file is a certificate,
    /// anything else a serial.
    pub fn from_arg(arg: &str) -> RevokeTarget {
        let p = Path::new(arg);
        if p.is_file() {
            RevokeTarget::CertFile(p.to_path_buf())
        } else {
            RevokeTarget::Serial(arg.to_string())
        }
    }
}

/// A revocation just made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revoked {
    /// The index record, now with its revocation.
    pub record: IssuedRecord,
    /// The CRL written.
    pub crl: CrlWritten,
}

/// Revokes a certificate of this CA and writes a fresh `ca.crl` (next CRL
/// number, nextUpdate in [`DEFAULT_CRL_VALIDITY_DAYS`]). Verifiers see the
/// revocation once they reload the CRL.
///
/// A serial must be in the index. A certificate file must be signed by this
/// CA; if its serial is missing from the index (an index restored from an
/// older backup), it is added so the revocation is not lost.
pub fn revoke(
    ca_dir: &Path,
    target: &RevokeTarget,
    reason: RevokeReason,
) -> Result<Revoked, CertError> {
    let _lock = fsutil::lock_dir(ca_dir)?;
    let ca = load_ca(ca_dir)?;
    let mut index = read_index(ca_dir)?;
    let pos = match target {
        RevokeTarget::Serial(s) => {
            let serial = identity::normalize_serial(s)?;
            index
                .certs
                .iter()
                .position(|r| r.serial == serial)
                .ok_or_else(|| CertError::UnknownSerial {
                    index: ca_dir.join(files::INDEX),
                    serial,
                })?
        }
        RevokeTarget::CertFile(path) => {
            let der = fsutil::read_certs(path)?.swap_remove(0);
            let origin = Origin::File(path);
            let x509 = identity::parse_x509(&origin, &der)?;
            let ca_x509 = identity::parse_x509(&Origin::File(&ca.info.cert_path), &ca.der)?;
            if x509.verify_signature(Some(ca_x509.public_key())).is_err() {
                return Err(CertError::NotIssuedByCa {
                    path: path.clone(),
                    ca: ca.info.subject.clone(),
                });
            }
            let id = Identity::from_x509(&origin, &der, &x509)?;
            match index.certs.iter().position(|r| r.serial == id.serial) {
                Some(p) => p,
                None => {
                    let client = x509
                        .extended_key_usage()
                        .ok()
                        .flatten()
                        .is_some_and(|e| e.value.client_auth);
                    index.certs.push(IssuedRecord {
                        serial: id.serial.clone(),
                        kind: if client {
                            CertKind::Client
                        } else {
                            CertKind::Server
                        },
                        name: id.common_name.clone().unwrap_or_default(),
                        role: id.role.clone(),
                        fingerprint_sha256: id.fingerprint_sha256.clone(),
                        not_before: id.not_before,
                        not_after: id.not_after,
                        revoked: None,
                        person: id.person(),
                    });
                    index.certs.len() - 1
                }
            }
        }
    };
    if let Some(prev) = &index.certs[pos].revoked {
        return Err(CertError::AlreadyRevoked {
            serial: index.certs[pos].serial.clone(),
            revoked_at: rfc3339(prev.at),
        });
    }
    index.certs[pos].revoked = Some(Revocation {
        at: OffsetDateTime::now_utc(),
        reason,
    });
    let record = index.certs[pos].clone();
    let crl = write_crl(&ca, index, DEFAULT_CRL_VALIDITY_DAYS)?;
    Ok(Revoked { record, crl })
}

/// Re-signs `ca.crl` with the same revocations, the next CRL number and a
/// nextUpdate `validity_days` ahead. Run it (e.g. from a timer) well before
/// the current CRL's nextUpdate.
pub fn renew_crl(ca_dir: &Path, validity_days: u32) -> Result<CrlWritten, CertError> {
    let _lock = fsutil::lock_dir(ca_dir)?;
    let ca = load_ca(ca_dir)?;
    let index = read_index(ca_dir)?;
    write_crl(&ca, index, validity_days)
}

/// Every certificate in the CA index, in issue order.
pub fn list_issued(ca_dir: &Path) -> Result<Vec<IssuedRecord>, CertError> {
    Ok(read_index(ca_dir)?.certs)
}
