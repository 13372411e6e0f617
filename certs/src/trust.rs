//! The trust store a TLS endpoint verifies peers against, and the rustls
//! configurations built from it.
//!
//! Chain building, expiry and revocation are rustls/webpki's job; this
//! module only makes sure what it hands them is what the operator meant:
//! every CA file really holds a current CA, and every CRL is signed by one
//! of them.

use crate::ca::rfc3339;
use crate::fsutil;
use crate::identity::{self, Identity, Origin};
use crate::CertError;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use time::OffsetDateTime;

/// The crypto provider of every configuration built here: ring, named
/// explicitly rather than taken from a process-wide default that another
/// crate could install.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

struct TrustedCa {
    path: PathBuf,
    der: CertificateDer<'static>,
    subject: String,
}

/// CA certificates and CRLs, checked against each other.
pub struct TrustStore {
    cas: Vec<TrustedCa>,
    crls: Vec<CertificateRevocationListDer<'static>>,
    enforce_crl_expiry: bool,
}

impl std::fmt::Debug for TrustStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustStore")
            .field(
                "cas",
                &self.cas.iter().map(|c| &c.subject).collect::<Vec<_>>(),
            )
            .field("crls", &self.crls.len())
            .field("enforce_crl_expiry", &self.enforce_crl_expiry)
            .finish()
    }
}

impl TrustStore {
    /// Loads CA certificates (PEM, several per file allowed) and CRLs (PEM).
    ///
    /// Refuses: a file that is not PEM or is truncated, a certificate that is
    /// not a CA or has expired, a CRL whose signature no trusted CA
    /// verifies, and — once any CRL is given — a CA without a CRL (webpki
    /// would refuse all of that CA's clients as "unknown revocation status",
    /// which is better said at start-up).
    pub fn load(ca_files: &[&Path], crl_files: &[&Path]) -> Result<TrustStore, CertError> {
        if ca_files.is_empty() {
            return Err(CertError::InvalidInput {
                what: "trust store",
                value: String::new(),
                rule: "needs at least one CA certificate file (the site CA's ca.crt)",
            });
        }
        let now = OffsetDateTime::now_utc();
        let mut cas = Vec::new();
        for path in ca_files {
            for der in fsutil::read_certs(path)? {
                let origin = Origin::File(path);
                let x509 = identity::parse_x509(&origin, &der)?;
                if !x509.is_ca() {
                    return Err(CertError::NotCa {
                        path: path.to_path_buf(),
                    });
                }
                let not_after = x509.validity().not_after.to_datetime();
                if not_after <= now {
                    return Err(CertError::CaExpired {
                        path: path.to_path_buf(),
                        not_after: rfc3339(not_after),
                    });
                }
                let subject = identity::rfc4514(x509.subject());
                cas.push(TrustedCa {
                    path: path.to_path_buf(),
                    der: CertificateDer::from(der.clone()),
                    subject,
                });
            }
        }
        let mut crls = Vec::new();
        let mut covered = vec![false; cas.len()];
        for path in crl_files {
            for der in fsutil::read_crls(path)? {
                let (rest, crl) =
                    x509_parser::parse_x509_crl(&der).map_err(|e| CertError::BadCertificate {
                        origin: path.display().to_string(),
                        what: format!("not an X.509 CRL ({e})"),
                    })?;
                if !rest.is_empty() {
                    return Err(CertError::BadCertificate {
                        origin: path.display().to_string(),
                        what: "stray bytes after the CRL".into(),
                    });
                }
                let issuer = identity::rfc4514(crl.issuer());
                let signer = cas.iter().position(|ca| {
                    // Parsing succeeded above for every CA.
                    x509_parser::parse_x509_certificate(ca.der.as_ref())
                        .map(|(_, c)| {
                            c.subject().as_raw() == crl.issuer().as_raw()
                                && crl.verify_signature(c.public_key()).is_ok()
                        })
                        .unwrap_or(false)
                });
                match signer {
                    Some(i) => covered[i] = true,
                    None => {
                        return Err(CertError::CrlUntrusted {
                            path: path.to_path_buf(),
                            issuer,
                        })
                    }
                }
                crls.push(CertificateRevocationListDer::from(der));
            }
        }
        if !crls.is_empty() {
            if let Some(i) = covered.iter().position(|c| !c) {
                return Err(CertError::MissingCrl {
                    path: cas[i].path.clone(),
                    subject: cas[i].subject.clone(),
                });
            }
        }
        Ok(TrustStore {
            cas,
            crls,
            enforce_crl_expiry: false,
        })
    }

    /// Refuse every client once a CRL is past its nextUpdate (webpki's
    /// `enforce_revocation_expiration`). Off by default: a forgotten
    /// `renew_crl` should raise an expiry warning, not lock every pushing
    /// system out; turn it on where a stale CRL must stop the service.
    pub fn enforce_crl_expiry(mut self, on: bool) -> TrustStore {
        self.enforce_crl_expiry = on;
        self
    }

    /// Subjects (RFC 4514) of the trusted CAs.
    pub fn ca_subjects(&self) -> Vec<String> {
        self.cas.iter().map(|c| c.subject.clone()).collect()
    }

    /// Number of CRLs loaded.
    pub fn crl_count(&self) -> usize {
        self.crls.len()
    }

    fn roots(&self) -> Result<Arc<RootCertStore>, CertError> {
        let mut roots = RootCertStore::empty();
        for ca in &self.cas {
            roots
                .add(ca.der.clone())
                .map_err(|e| CertError::BadCertificate {
                    origin: ca.path.display().to_string(),
                    what: format!("not usable as a trust anchor ({e})"),
                })?;
        }
        Ok(Arc::new(roots))
    }

    /// A client-certificate verifier that requires a certificate chaining
    /// to one of the CAs, within its validity, with the clientAuth usage,
    /// and not revoked by any loaded CRL.
    pub fn client_verifier(&self) -> Result<Arc<dyn ClientCertVerifier>, CertError> {
        let mut b = WebPkiClientVerifier::builder_with_provider(self.roots()?, crypto_provider())
            .with_crls(self.crls.iter().cloned());
        if self.enforce_crl_expiry {
            b = b.enforce_revocation_expiration();
        }
        b.build().map_err(|e| CertError::Tls {
            what: "building the client-certificate verifier".into(),
            detail: e.to_string(),
        })
    }

    /// Verifies a client certificate chain the way the TLS server would,
    /// outside a handshake (e.g. `ferryctl certs verify FILE`), and returns
    /// its identity.
    pub fn verify_client_cert(&self, chain: &[CertificateDer<'_>]) -> Result<Identity, CertError> {
        let Some((leaf, intermediates)) = chain.split_first() else {
            return Err(CertError::InvalidInput {
                what: "certificate chain",
                value: String::new(),
                rule: "needs at least the client certificate",
            });
        };
        let now = rustls_pki_types::UnixTime::now();
        self.client_verifier()?
            .verify_client_cert(leaf, intermediates, now)
            .map_err(|e| CertError::Rejected {
                reason: rejection_reason(&e),
            })?;
        Identity::from_cert_der(leaf.as_ref())
    }
}

/// An operator's reading of why rustls refused a peer certificate, for
/// logs and audit records of a refused handshake.
pub fn rejection_reason(e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::Expired | C::ExpiredContext { .. } => "expired".into(),
            C::NotValidYet | C::NotValidYetContext { .. } => "not valid yet".into(),
            C::Revoked => "revoked (listed in the CA's CRL)".into(),
            C::UnknownIssuer => "not issued by a trusted CA".into(),
            C::UnknownRevocationStatus => "revocation status unknown (no CRL for its CA)".into(),
            C::ExpiredRevocationList | C::ExpiredRevocationListContext { .. } => {
                "the CA's CRL is past its nextUpdate; renew the CRL".into()
            }
            C::BadSignature => "bad signature".into(),
            C::InvalidPurpose | C::InvalidPurposeContext { .. } => {
                "not for this purpose (extended key usage)".into()
            }
            other => format!("invalid certificate ({other:?})"),
        },
        rustls::Error::NoCertificatesPresented => "no client certificate presented".into(),
        other => other.to_string(),
    }
}

fn tls_err(what: &str) -> impl FnOnce(rustls::Error) -> CertError + '_ {
    move |e| CertError::Tls {
        what: what.to_string(),
        detail: e.to_string(),
    }
}

fn load_cert_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let certs = fsutil::read_certs(path)?;
    for der in &certs {
        identity::parse_x509(&Origin::File(path), der)?;
    }
    Ok(certs.into_iter().map(CertificateDer::from).collect())
}

/// A TLS server configuration (TLS 1.2 and 1.3, ring) presenting
/// `server_cert` (PEM chain, leaf first) with `server_key` (PEM, 0600) and
/// requiring a client certificate accepted by `trust`'s verifier. The
/// caller reads the peer identity with
/// [`Identity::from_peer_certificates`]`(conn.peer_certificates())`.
/// Set `alpn_protocols` on a clone if the HTTP stack needs it.
pub fn server_config(
    server_cert: &Path,
    server_key: &Path,
    trust: &TrustStore,
) -> Result<Arc<ServerConfig>, CertError> {
    let chain = load_cert_chain(server_cert)?;
    let key = fsutil::read_private_key(server_key)?;
    let what = format!(
        "building the TLS server config from {} and {}",
        server_cert.display(),
        server_key.display()
    );
    let config = ServerConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(tls_err(&what))?
        .with_client_cert_verifier(trust.client_verifier()?)
        .with_single_cert(chain, key.into_rustls())
        .map_err(|e| key_or_tls(e, server_cert, server_key, &what))?;
    Ok(Arc::new(config))
}

fn key_or_tls(e: rustls::Error, cert: &Path, key: &Path, what: &str) -> CertError {
    match e {
        rustls::Error::InconsistentKeys(_) => CertError::KeyMismatch {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
        },
        other => tls_err(what)(other),
    }
}

fn roots_from(ca: &Path) -> Result<RootCertStore, CertError> {
    let mut roots = RootCertStore::empty();
    for der in fsutil::read_certs(ca)? {
        roots
            .add(CertificateDer::from(der))
            .map_err(|e| CertError::BadCertificate {
                origin: ca.display().to_string(),
                what: format!("not usable as a trust anchor ({e})"),
            })?;
    }
    Ok(roots)
}

/// A TLS client configuration that trusts the CAs in `ca` (PEM) and
/// authenticates with `client_cert` + `client_key`: for tests, and for
/// ferry delivering to a downstream HTTPS endpoint that requires mTLS.
pub fn client_config(
    ca: &Path,
    client_cert: &Path,
    client_key: &Path,
) -> Result<Arc<ClientConfig>, CertError> {
    let chain = load_cert_chain(client_cert)?;
    let key = fsutil::read_private_key(client_key)?;
    let what = format!(
        "building the TLS client config from {} and {}",
        client_cert.display(),
        client_key.display()
    );
    let config = ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(tls_err(&what))?
        .with_root_certificates(roots_from(ca)?)
        .with_client_auth_cert(chain, key.into_rustls())
        .map_err(|e| key_or_tls(e, client_cert, client_key, &what))?;
    Ok(Arc::new(config))
}

/// A TLS client configuration that trusts the CAs in `ca` and presents no
/// client certificate (a downstream endpoint without mTLS; tests).
pub fn client_config_without_cert(ca: &Path) -> Result<Arc<ClientConfig>, CertError> {
    let what = "building the TLS client config";
    let config = ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(tls_err(what))?
        .with_root_certificates(roots_from(ca)?)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
