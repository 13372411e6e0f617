//! Certificates and identities for ferry's mTLS endpoints (the HTTPS ingest
//! API, admin access, HTTPS delivery downstream).
//!
//! This crate owns the site CA (create, issue, revoke, CRL), the trust store
//! and rustls configurations built from it, and the [`Identity`] read from a
//! verified peer certificate, including its [`Role`]. It never prints or
//! logs private keys, refuses key files other users could read, and leaves
//! chain, expiry and revocation checks to rustls/webpki rather than
//! re-implementing them.
//!
//! Roles travel in a SAN URI `urn:ferry:role:ROLE` (see [`ROLE_URI_PREFIX`]).
#![forbid(unsafe_code, unused_must_use)]
#![deny(missing_docs)]

mod ca;
mod fsutil;
mod identity;
mod inspect;
mod trust;

pub use ca::{
    ca_info, files, init_ca, issue, issue_client, issue_server, list_issued, renew_crl, revoke,
    CaInfo, CertKind, CrlWritten, IssueRequest, Issued, IssuedRecord, Revocation, RevokeReason,
    RevokeTarget, Revoked, Validity, DEFAULT_CA_VALIDITY_DAYS, DEFAULT_CRL_VALIDITY_DAYS,
    DEFAULT_LEAF_VALIDITY_DAYS, MAX_NAME_CHARS, MAX_VALIDITY_DAYS,
};
pub use identity::{
    check_person, fingerprint, normalize_serial, person_of, serial_hex, Identity, Role,
    SubjectAltNames, ID_URI_PREFIX, MAX_PERSON_CHARS, MAX_ROLE_CHARS, PERSON_URI_PREFIX,
    ROLE_URI_PREFIX,
};
pub use inspect::{
    check_expiry_file, expiring_in_dir, expiring_issued, show, CertInfo, CertificateInfo, CrlInfo,
    ExpiryKind, ExpiryNotice, ExpiryState, RevokedEntry, DEFAULT_EXPIRY_WARNING_DAYS,
};
pub use trust::{
    client_config, client_config_without_cert, crypto_provider, rejection_reason, server_config,
    TrustStore,
};

use std::path::PathBuf;

/// Certificate errors. Each names the file or value and says what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Not PEM, truncated, damaged, or without the expected section.
    #[error("{path}: {what}; check the path, or copy the file again from where it was issued")]
    BadPem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// The PEM decodes but the DER is not a valid certificate or CRL, or its
    /// identity is ambiguous.
    #[error("{origin}: {what}")]
    BadCertificate {
        /// The file, or `peer certificate`.
        origin: String,
        /// What is wrong.
        what: String,
    },
    /// A private-key file that group or other users can access, or that
    /// another user owns (the one check and message,
    /// `ferry_common::private_file`).
    #[error(transparent)]
    PrivateFile(#[from] ferry_common::private_file::PrivateFileError),
    /// Refusing to overwrite.
    #[error("{path} already exists; refusing to overwrite it (move it away first, or choose another name or directory)")]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// A CA certificate is past its end.
    #[error("{path}: the CA certificate expired on {not_after}; create a new site CA (`ferryctl certs init-ca`), re-issue the certificates and distribute the new ca.crt")]
    CaExpired {
        /// The CA certificate.
        path: PathBuf,
        /// Its notAfter, RFC 3339.
        not_after: String,
    },
    /// A certificate would outlive the CA that signs it.
    #[error("{path}: the CA is valid until {ca_not_after}, a certificate cannot end later ({requested}); ask for fewer days")]
    ValidityBeyondCa {
        /// The CA certificate.
        path: PathBuf,
        /// CA notAfter.
        ca_not_after: String,
        /// Requested notAfter.
        requested: String,
    },
    /// A file given as a CA does not hold a CA certificate.
    #[error(
        "{path}: not a CA certificate (no basicConstraints CA:TRUE); give the site CA's ca.crt"
    )]
    NotCa {
        /// The file.
        path: PathBuf,
    },
    /// A CRL whose signature no trusted CA verifies.
    #[error("{path}: CRL issued by `{issuer}` is not signed by any trusted CA; use the ca.crl of the CA you trust, or add the CA that signed it")]
    CrlUntrusted {
        /// The CRL file.
        path: PathBuf,
        /// Its issuer, RFC 4514.
        issuer: String,
    },
    /// CRLs were given, but not for this CA.
    #[error("{path}: no CRL given for CA `{subject}`; with revocation checking on, all of its clients would be refused. Add its ca.crl")]
    MissingCrl {
        /// The CA file.
        path: PathBuf,
        /// The CA subject, RFC 4514.
        subject: String,
    },
    /// A serial that the CA index does not know.
    #[error("{index}: no certificate with serial {serial}; check `ferryctl certs list`, or give the certificate file instead")]
    UnknownSerial {
        /// The index file.
        index: PathBuf,
        /// The serial, canonical hex.
        serial: String,
    },
    /// A certificate this CA did not sign.
    #[error("{path}: not issued by this CA ({ca}); revoke it with the CA that issued it")]
    NotIssuedByCa {
        /// The certificate file.
        path: PathBuf,
        /// This CA's subject.
        ca: String,
    },
    /// Revoking twice.
    #[error("serial {serial} is already revoked (since {revoked_at}); nothing to do")]
    AlreadyRevoked {
        /// The serial.
        serial: String,
        /// When it was revoked, RFC 3339.
        revoked_at: String,
    },
    /// The private key does not belong to the certificate.
    #[error("{key} is not the private key of {cert}; give the matching pair")]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// A private key where a certificate was expected.
    #[error("{path} holds a private key; `show` prints certificates and CRLs and never keys (give the .crt)")]
    IsPrivateKey {
        /// The file.
        path: PathBuf,
    },
    /// The CA index cannot be read.
    #[error("{path}: damaged CA index: {what}; restore it from backup")]
    Index {
        /// The index file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// A name, role, date or other value is not acceptable.
    #[error("invalid {what} `{value}`: {rule}")]
    InvalidInput {
        /// What kind of value.
        what: &'static str,
        /// The value (truncated).
        value: String,
        /// What would be acceptable.
        rule: &'static str,
    },
    /// rustls refused to build a configuration.
    #[error("{what}: {detail}")]
    Tls {
        /// What was being built.
        what: String,
        /// rustls's reason.
        detail: String,
    },
    /// The trust store refused a certificate chain.
    #[error("certificate refused: {reason}")]
    Rejected {
        /// webpki's reason (expired, revoked, unknown issuer, …).
        reason: String,
    },
    /// Key or certificate generation failed.
    #[error("certificate generation failed: {0}")]
    Generate(String),
    /// Three-officer separation: the person already holds another officer
    /// role in a valid certificate of this CA.
    #[error("person `{person}` already holds the `{held}` role (certificate `{name}`, serial {serial}); one person holds one officer role, so `{wanted}` is refused. Revoke that certificate first (`ferryctl certs revoke --ca CA_DIR {serial}`) if the person changes role, or issue `{wanted}` to another person")]
    PersonHoldsOtherRole {
        /// The person id.
        person: String,
        /// The role held.
        held: String,
        /// The role asked for.
        wanted: String,
        /// The certificate that holds it.
        name: String,
        /// Its serial.
        serial: String,
    },
}

#[cfg(test)]
mod tests;
